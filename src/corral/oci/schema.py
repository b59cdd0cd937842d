"""A small JSON Schema (draft-04 subset) validator for the OCI runtime schemas.

The OCI Runtime Spec ships its JSON schemas (schema/config-schema.json and
friends); they use only `type`, `properties`, `items`, `required`, `enum`,
`minimum`/`maximum`, `minItems`, `pattern`, `$ref`, `allOf`/`anyOf`, `additionalProperties`
and `patternProperties`. Importing the `jsonschema` package would cost more than
the rest of `corral-runtime create`, so this walks those keywords directly and
reports the first violation with the JSON path of the field, e.g.
``linux.namespaces[1].type: 'pidd' is not one of ['mount', 'pid', ...]``.
"""

from __future__ import annotations

import os

from corral.errors import InvalidArgument
from corral.oci import fastjson

SCHEMA_DIR = os.path.join(os.path.dirname(__file__), "schemas")

_documents: dict[str, dict] = {}
_patterns: dict[str, object] = {}

_JSON_TYPES = {
    "object": dict,
    "array": list,
    "string": str,
    "boolean": bool,
    "null": type(None),
}


class SchemaError(InvalidArgument):
    """A document does not match its schema; `path` names the field."""

    def __init__(self, path: str, message: str) -> None:
        self.path = path
        super().__init__(f"{path or '(document)'}: {message}")


def _document(name: str) -> dict:
    doc = _documents.get(name)
    if doc is None:
        with open(os.path.join(SCHEMA_DIR, name), "rb") as f:
            doc = fastjson.loads(f.read())
        _documents[name] = doc
    return doc


def _resolve(ref: str, current: str) -> tuple[dict, str]:
    """Follow a `$ref` like ``defs.json#/definitions/Mount``."""
    file_part, _, pointer = ref.partition("#")
    name = file_part or current
    node: dict = _document(name)
    for part in pointer.strip("/").split("/"):
        if part:
            node = node[part]
    return node, name


def _is_type(value: object, kind: str) -> bool:
    if kind == "integer":
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == "number":
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    expected = _JSON_TYPES.get(kind)
    if expected is None:
        return True
    if expected is dict or expected is list or expected is str:
        return isinstance(value, expected)
    return type(value) is expected


def _only(allowed: str):
    return lambda text: all(c in allowed for c in text)


_UPPER = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
# The patterns the OCI schemas use, as plain predicates: checking a config then
# needs no `re` import (a few ms of every create). Others fall back to `re`.
_KNOWN_PATTERNS = {
    "^RLIMIT_[A-Z]+$": lambda t: t.startswith("RLIMIT_") and len(t) > 7 and _only(_UPPER)(t[7:]),
    "^CAP_[A-Z_]+$": lambda t: t.startswith("CAP_") and len(t) > 4 and _only(_UPPER + "_")(t[4:]),
    "^[0-9, -]*$": _only("0123456789, -"),
    "^[cbup]$": lambda t: t in ("c", "b", "u", "p"),
    ".{1,}": lambda t: any(c != "\n" for c in t),
    "^[1-9][0-9]*[KMG]B$": lambda t: (len(t) >= 3 and t[0] in "123456789" and t[-1] == "B"
                                      and t[-2] in "KMG" and (t[1:-2].isdigit() or t[1:-2] == "")),
    "^MB:[^\\n]*$": lambda t: t.startswith("MB:") and "\n" not in t,
}


class _Search:
    __slots__ = ("search",)

    def __init__(self, predicate) -> None:
        self.search = predicate


def _regex(pattern: str):
    compiled = _patterns.get(pattern)
    if compiled is None and pattern in _KNOWN_PATTERNS:
        compiled = _patterns[pattern] = _Search(_KNOWN_PATTERNS[pattern])
    if compiled is None:
        import re  # only configs that use patterned fields pay for `re`

        compiled = _patterns[pattern] = re.compile(pattern)
    return compiled


def _check(value: object, schema: dict, path: str, doc: str) -> None:
    ref = schema.get("$ref")
    if ref is not None:
        target, target_doc = _resolve(ref, doc)
        _check(value, target, path, target_doc)
    kind = schema.get("type")
    if kind is not None:
        kinds = kind if isinstance(kind, list) else [kind]
        if not any(_is_type(value, k) for k in kinds):
            raise SchemaError(path, f"expected {' or '.join(kinds)}, got {_describe(value)}")
    if "enum" in schema and value not in schema["enum"]:
        raise SchemaError(path, f"{value!r} is not one of {schema['enum']}")
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if "minimum" in schema and value < schema["minimum"]:
            raise SchemaError(path, f"{value} is less than the minimum {schema['minimum']}")
        if "maximum" in schema and value > schema["maximum"]:
            raise SchemaError(path, f"{value} is more than the maximum {schema['maximum']}")
    if (isinstance(value, str) and "pattern" in schema
            and not _regex(schema["pattern"]).search(value)):
        raise SchemaError(path, f"{value!r} does not match {schema['pattern']!r}")
    if isinstance(value, dict):
        _check_object(value, schema, path, doc)
    if isinstance(value, list) and len(value) < schema.get("minItems", 0):
        raise SchemaError(path, f"needs at least {schema['minItems']} item(s)")
    if isinstance(value, list) and "items" in schema:
        items = schema["items"]
        for index, item in enumerate(value):
            _check(item, items, f"{path}[{index}]", doc)
    for sub in schema.get("allOf", ()):
        _check(value, sub, path, doc)
    if "anyOf" in schema:
        errors = []
        for sub in schema["anyOf"]:
            try:
                _check(value, sub, path, doc)
                break
            except SchemaError as exc:
                errors.append(exc)
        else:
            raise errors[0]
    if "oneOf" in schema:
        matches = 0
        first_error: SchemaError | None = None
        for sub in schema["oneOf"]:
            try:
                _check(value, sub, path, doc)
                matches += 1
            except SchemaError as exc:
                first_error = first_error or exc
        if matches != 1:
            if first_error is not None and matches == 0:
                raise first_error
            raise SchemaError(path, "matches more than one of the allowed forms")


def _check_object(value: dict, schema: dict, path: str, doc: str) -> None:
    prefix = f"{path}." if path else ""
    for name in schema.get("required", ()):
        if name not in value:
            raise SchemaError(f"{prefix}{name}", "is required")
    properties = schema.get("properties", {})
    pattern_properties = schema.get("patternProperties", {})
    additional = schema.get("additionalProperties")
    for key, item in value.items():
        sub = properties.get(key)
        if sub is not None:
            _check(item, sub, f"{prefix}{key}", doc)
            continue
        matched = False
        for pattern, pattern_schema in pattern_properties.items():
            if _regex(pattern).search(key):
                _check(item, pattern_schema, f"{prefix}{key}", doc)
                matched = True
        if not matched and isinstance(additional, dict):
            _check(item, additional, f"{prefix}{key}", doc)
        elif not matched and additional is False:
            raise SchemaError(f"{prefix}{key}", "is not an allowed field")


def _describe(value: object) -> str:
    for name, kind in (("boolean", bool), ("integer", int), ("number", float), ("string", str),
                       ("array", list), ("object", dict)):
        if isinstance(value, kind):
            return f"{name} {value!r}" if kind in (bool, int, float, str) else name
    return "null"


def validate(document: object, schema_file: str) -> None:
    """Raise SchemaError naming the first field of `document` that violates `schema_file`."""
    _check(document, _document(schema_file), "", schema_file)
