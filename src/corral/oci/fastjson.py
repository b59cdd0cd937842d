"""JSON loads/dumps on CPython's C accelerator (`_json`), without importing `json`.

`import json` compiles regular expressions at import time (json.decoder and
json.encoder import `re`, which imports `enum`): about 5 ms, a fifth of a
runc-speed container start. The parsing and encoding themselves are done by
`_json`'s C scanner and encoder in both cases; this module only builds them
directly. The output is identical to `json.loads` and `json.dumps(obj,
separators=(",", ":"))`. If `_json` is missing, it falls back to `json`.
"""

from __future__ import annotations

MYPY = False
if MYPY:  # mypy's own spelling of TYPE_CHECKING: `typing` stays out of the start-up path
    from typing import Any

try:
    import _json
except ImportError:  # pragma: no cover - CPython always has it
    _json = None  # type: ignore[assignment]

_WHITESPACE = " \t\n\r"


def _constant(name: str) -> float:
    return {"-Infinity": float("-inf"), "Infinity": float("inf"), "NaN": float("nan")}[name]


class _Context:
    """The attributes `_json.make_scanner` reads from a JSONDecoder."""

    strict = True
    object_hook = None
    object_pairs_hook = None
    parse_float = float
    parse_int = int
    parse_constant = staticmethod(_constant)
    memo: dict = {}  # noqa: RUF012 - unused by the C scanner, which keeps its own


_scanner = _json.make_scanner(_Context()) if _json else None  # type: ignore[arg-type]


def loads(text: str | bytes) -> Any:
    """Parse a JSON document; ValueError (with the offset) if it is not JSON."""
    if _scanner is None:
        import json

        return json.loads(text)
    if isinstance(text, (bytes, bytearray)):
        # utf-8-sig without its codec module's import: drop a leading BOM, then utf-8
        raw = bytes(text)
        text = (raw[3:] if raw.startswith(b"\xef\xbb\xbf") else raw).decode("utf-8")
    start = 0
    end = len(text)
    while start < end and text[start] in _WHITESPACE:
        start += 1
    try:
        value, index = _scanner(text, start)
    except StopIteration as exc:
        raise ValueError(f"Expecting value: char {exc.value}") from None
    except SystemError:
        # _json raises its syntax errors as json.decoder.JSONDecodeError, looked up in
        # sys.modules only: unimported, it returns NULL. Parse again with json for the error.
        import json

        json.loads(text)
        raise
    finally:
        _Context.memo.clear()
    while index < end and text[index] in _WHITESPACE:
        index += 1
    if index != end:
        raise ValueError(f"Extra data: char {index}")
    return value


def _reject(value: object) -> object:
    raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")


_encoder = (_json.make_encoder(None, _reject, _json.encode_basestring_ascii, None, ":", ",",
                               False, False, True) if _json else None)


def dumps(value: object) -> str:
    """Compact JSON, as json.dumps(value, separators=(",", ":"))."""
    if _encoder is None:
        import json

        return json.dumps(value, separators=(",", ":"))
    return "".join(_encoder(value, 0))
