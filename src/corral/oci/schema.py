"""A small JSON Schema (draft-04 subset) validator for the OCI runtime schemas.

The OCI Runtime Spec ships its JSON schemas (schema/config-schema.json and
friends); they use only `type`, `properties`, `items`, `required`, `enum`,
`minimum`/`maximum`, `minItems`, `pattern`, `$ref`, `allOf`/`anyOf`, `additionalProperties`
and `patternProperties`. Importing the `jsonschema` package would cost more than
the rest of `corral-runtime create`, so this checks those keywords directly and
reports the first violation with the JSON path of the field, e.g.
``linux.namespaces[1].type: 'pidd' is not one of ['mount', 'pid', ...]``.

Each schema node is compiled once into a closure (a "validator": value -> None,
raising on the first violation), cached by node identity; `$ref`s are resolved
at compile time. Compilation is lazy: a node's children are compiled the first
time a document reaches them, so a one-shot `validate` compiles only the part
of the schema the document uses. `preload` compiles a whole schema ahead of time.
The checks run in the order of draft-04's keywords as listed in `_build`, so the
violation reported is the one a walk of the document in its own key order meets
first. Field paths are assembled only on failure.
"""

from __future__ import annotations

import os

from corral.errors import InvalidArgument
from corral.oci import fastjson

MYPY = False
if MYPY:  # mypy's own spelling of TYPE_CHECKING: `typing` stays out of the start-up path
    from collections.abc import Callable
    from typing import Any

    Validator = Callable[[object], None]

SCHEMA_DIR = os.path.join(os.path.dirname(__file__), "schemas")

_documents: dict[str, dict] = {}
_patterns: dict[str, object] = {}
_validators: dict[tuple[int, str], Validator] = {}  # (id(node), document name) -> validator
_compiled: list[dict] = []  # the nodes of `_validators`, kept alive so that their ids stay theirs
_building: set[tuple[int, str]] = set()  # nodes being compiled (a recursive $ref meets one)
_preloaded: set[str] = set()
_targets: dict[tuple[str, str], tuple[dict, str]] = {}  # ($ref, its document) -> (node, document)

# The keywords this validator implements; a node with none of them accepts anything.
_KEYWORDS = frozenset({
    "$ref", "type", "enum", "minimum", "maximum", "pattern", "required", "properties",
    "patternProperties", "additionalProperties", "minItems", "items", "allOf", "anyOf", "oneOf",
})
_NOT_REF = _KEYWORDS - {"$ref"}
_CLASSES = {"object": dict, "array": list, "string": str}
# For a node of a single type: the keywords checked between `type` and the step
# that can check the type itself (see `_fused_type`).
_BETWEEN = {
    "integer": frozenset({"enum"}),
    "number": frozenset({"enum"}),
    "object": frozenset({"enum", "minimum", "maximum", "pattern"}),
    "array": frozenset({"enum", "minimum", "maximum", "pattern", "required", "properties",
                        "patternProperties", "additionalProperties"}),
}


class SchemaError(InvalidArgument):
    """A document does not match its schema; `path` names the field."""

    def __init__(self, path: str, message: str) -> None:
        self.path = path
        super().__init__(f"{path or '(document)'}: {message}")


class _Invalid(Exception):
    """A violation on its way up: `parts` is its field path, innermost first."""

    def __init__(self, message: str, part: str | int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.parts: list[str | int] = [] if part is None else [part]


def _path(parts: list[str | int]) -> str:
    """``a.b[0].c`` from the parts of an `_Invalid` (innermost first)."""
    text = ""
    for part in reversed(parts):
        if isinstance(part, int):
            text += f"[{part}]"
        else:
            text = f"{text}.{part}" if text else part
    return text


def _document(name: str) -> dict:
    doc = _documents.get(name)
    if doc is None:
        with open(os.path.join(SCHEMA_DIR, name), "rb") as f:
            doc = fastjson.loads(f.read())
        _documents[name] = doc
    return doc


def _resolve(ref: str, current: str) -> tuple[dict, str]:
    """Follow a `$ref` like ``defs.json#/definitions/Mount``."""
    found = _targets.get((ref, current))
    if found is None:
        file_part, _, pointer = ref.partition("#")
        name = file_part or current
        try:
            node: dict = _document(name)
        except FileNotFoundError:
            # config-schema.json's sections of other platforms (solaris, windows, vm, zos,
            # freebsd) are not shipped: a Linux runtime ignores them, as runc does
            found = _targets[(ref, current)] = ({}, name)
            return found
        for part in pointer.strip("/").split("/"):
            if part:
                node = node[part]
        found = _targets[(ref, current)] = (node, name)
    return found


def _describe(value: object) -> str:
    for name, kind in (("boolean", bool), ("integer", int), ("number", float), ("string", str),
                       ("array", list), ("object", dict)):
        if isinstance(value, kind):
            return f"{name} {value!r}" if kind in (bool, int, float, str) else name
    return "null"


# --- patterns ---------------------------------------------------------------

_UPPER = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"


def _only(allowed: str):
    """A predicate: every character of the text is in `allowed`."""
    return lambda text: not text.lstrip(allowed)


_CAPS = _only(_UPPER)
_CAPS_ = _only(_UPPER + "_")
# The patterns the OCI schemas use, as plain predicates: checking a config then
# needs no `re` import (a few ms of every create). Others fall back to `re`.
_KNOWN_PATTERNS = {
    "^RLIMIT_[A-Z]+$": lambda t: t.startswith("RLIMIT_") and len(t) > 7 and _CAPS(t[7:]),
    "^CAP_[A-Z_]+$": lambda t: t.startswith("CAP_") and len(t) > 4 and _CAPS_(t[4:]),
    "^[0-9, -]*$": _only("0123456789, -"),
    "^[cbup]$": lambda t: t in ("c", "b", "u", "p"),
    ".{1,}": lambda t: bool(t.strip("\n")),
    "^[1-9][0-9]*[KMG]B$": lambda t: (len(t) >= 3 and t[0] in "123456789" and t[-1] == "B"
                                      and t[-2] in "KMG" and (t[1:-2].isdigit() or t[1:-2] == "")),
    "^MB:[^\\n]*$": lambda t: t.startswith("MB:") and "\n" not in t,
}


def _regex(pattern: str):
    """`re.compile(pattern)`, cached; `re` is imported on first need only."""
    compiled = _patterns.get(pattern)
    if compiled is None:
        import re  # only configs that use patterned fields pay for `re`

        compiled = _patterns[pattern] = re.compile(pattern)
    return compiled


def _searcher(pattern: str):
    """A predicate: `pattern` is found in the text."""
    known = _KNOWN_PATTERNS.get(pattern)
    if known is not None:
        return known
    return lambda text: _regex(pattern).search(text) is not None


# --- types ------------------------------------------------------------------

def _is_integer(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


_TYPE_TESTS = {
    "integer": _is_integer,
    "number": _is_number,
    "object": lambda value: isinstance(value, dict),
    "array": lambda value: isinstance(value, list),
    "string": lambda value: isinstance(value, str),
    "boolean": lambda value: type(value) is bool,
    "null": lambda value: value is None,
}


def _type_error(expected: str, value: object) -> _Invalid:
    return _Invalid(f"expected {expected}, got {_describe(value)}")


def _kinds(node: dict) -> list | None:
    """The node's `type` as a list, or None when it does not constrain the type."""
    kind = node.get("type")
    if kind is None:
        return None
    kinds = kind if isinstance(kind, list) else [kind]
    for name in kinds:
        if name not in _TYPE_TESTS:
            return None  # an unknown type name matches anything
    return kinds


def _type_step(kinds: list) -> Validator:
    expected = " or ".join(kinds)
    tests = tuple(_TYPE_TESTS[k] for k in kinds)
    if len(tests) == 1:
        test = tests[0]

        def check_type(value: object) -> None:
            if not test(value):
                raise _type_error(expected, value)
    else:
        def check_type(value: object) -> None:
            if not any(test(value) for test in tests):
                raise _type_error(expected, value)
    return check_type


# --- compilation ------------------------------------------------------------

def _accept(value: object) -> None:
    """The validator of a node without constraints."""


def _compile(node: dict, doc: str, eager: bool = False) -> Validator:
    """The validator of `node` (of document `doc`), compiled once."""
    key = (id(node), doc)
    validator = _validators.get(key)
    if validator is not None:
        return validator
    if key in _building:  # a recursive $ref: bind late, to what the outer call compiles
        return lambda value: _validators[key](value)
    _building.add(key)
    try:
        validator = _build(node, doc, eager)
    finally:
        _building.discard(key)
    _validators[key] = validator
    _compiled.append(node)
    return validator


def _slot(container: Any, key: str | int, node: dict, doc: str, eager: bool) -> None:
    """Put the validator of `node` at ``container[key]``; if it is not compiled yet
    (and not `eager`), a stand-in that compiles it on first use and takes its place."""
    validator = _validators.get((id(node), doc))
    if validator is None and eager:
        try:
            validator = _compile(node, doc, eager)
        except OSError:  # a $ref to a schema file not shipped: fails on use, as before
            validator = None
    if validator is not None:
        container[key] = validator
        return

    def first_use(value: object) -> None:
        compiled = container[key] = _compile(node, doc)
        compiled(value)

    container[key] = first_use


def _build(node: dict, doc: str, eager: bool) -> Validator:
    """Compile `node`: its checks in the order $ref, type, enum, minimum/maximum,
    pattern, object keywords, minItems, items, allOf, anyOf, oneOf."""
    steps: list[Validator] = []
    ref = node.get("$ref")
    if ref is not None:
        target, target_doc = _resolve(ref, doc)
        if _NOT_REF.isdisjoint(node):
            return _compile(target, target_doc, eager)
        steps.append(_compile(target, target_doc, eager))
    kinds = _kinds(node)
    fused = _fused_type(node, kinds)
    if kinds is not None and fused is None:
        steps.append(_type_step(kinds))
    if fused == "string":
        steps.append(_string_step(node))
    elif "enum" in node:
        steps.append(_enum_step(node["enum"]))
    if "minimum" in node or "maximum" in node or fused in ("integer", "number"):
        steps.append(_number_step(node, fused))
    if fused != "string" and "pattern" in node:
        steps.append(_pattern_step(node["pattern"]))
    if fused == "object" or _has_object_keywords(node):
        steps.append(_object_step(node, doc, eager, strict=fused == "object"))
    if fused == "array" or "minItems" in node or "items" in node:
        steps.append(_array_step(node, doc, eager, strict=fused == "array"))
    steps.extend(_compile(sub, doc, eager) for sub in node.get("allOf", ()))
    if "anyOf" in node:
        steps.append(_any_of_step(node["anyOf"], doc, eager))
    if "oneOf" in node:
        steps.append(_one_of_step([_compile(sub, doc, eager) for sub in node["oneOf"]]))
    return _sequence(steps)


def _fused_type(node: dict, kinds: list | None) -> str | None:
    """The single type a later step of `node` may check itself: when no step in
    between could fail first on a value of another type."""
    if kinds is None or len(kinds) != 1:
        return None
    kind = kinds[0]
    if kind == "string":
        return kind  # enum and pattern go into the string step, in order
    between = _BETWEEN.get(kind)
    return kind if between is not None and between.isdisjoint(node) else None


def _sequence(steps: list[Validator]) -> Validator:
    """One validator running `steps` in order."""
    steps = [step for step in steps if step is not _accept]
    if not steps:
        return _accept
    if len(steps) == 1:
        return steps[0]
    run = tuple(steps)

    def check_all(value: object) -> None:
        for step in run:
            step(value)
    return check_all


def _frozen(values: object) -> frozenset | None:
    """`values` as a frozenset when it is a list of hashable values."""
    if not isinstance(values, list):
        return None
    try:
        return frozenset(values)
    except TypeError:
        return None


def _enum_step(values: list) -> Validator:
    fast = _frozen(values)

    def check_enum(value: object) -> None:
        try:
            known = value in fast if fast is not None else value in values
        except TypeError:  # an unhashable value: compare it with each
            known = value in values
        if not known:
            raise _Invalid(f"{value!r} is not one of {values}")
    return check_enum


def _string_step(node: dict) -> Validator:
    """`"type": "string"` with its `enum` and `pattern`, if any."""
    if "enum" not in node and "pattern" not in node:
        def check_string(value: object) -> None:
            if not isinstance(value, str):
                raise _type_error("string", value)
        return check_string
    values = node.get("enum")
    fast = _frozen(values) if values is not None else None
    pattern = node.get("pattern")
    search = _searcher(pattern) if pattern is not None else None

    def check_string_value(value: object) -> None:
        if not isinstance(value, str):
            raise _type_error("string", value)
        if values is not None and value not in (fast if fast is not None else values):
            raise _Invalid(f"{value!r} is not one of {values}")
        if search is not None and not search(value):
            raise _Invalid(f"{value!r} does not match {pattern!r}")
    return check_string_value


def _number_step(node: dict, kind: str | None) -> Validator:
    """`minimum`/`maximum`, with the node's `"type": "integer"` (or number) if `kind`."""
    test = _TYPE_TESTS[kind] if kind is not None else None
    has_min, minimum = "minimum" in node, node.get("minimum", 0)
    has_max, maximum = "maximum" in node, node.get("maximum", 0)

    def check_number(value: object) -> None:
        if test is not None and not test(value):
            raise _type_error(kind, value)  # type: ignore[arg-type]
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            if has_min and value < minimum:
                raise _Invalid(f"{value} is less than the minimum {minimum}")
            if has_max and value > maximum:
                raise _Invalid(f"{value} is more than the maximum {maximum}")
    return check_number


def _pattern_step(pattern: str) -> Validator:
    search = _searcher(pattern)

    def check_pattern(value: object) -> None:
        if isinstance(value, str) and not search(value):
            raise _Invalid(f"{value!r} does not match {pattern!r}")
    return check_pattern


def _has_object_keywords(node: dict) -> bool:
    additional = node.get("additionalProperties")
    return (bool(node.get("required")) or bool(node.get("properties"))
            or bool(node.get("patternProperties"))
            or isinstance(additional, dict) or additional is False)


def _key(key: object) -> str:
    return key if isinstance(key, str) else f"{key}"


def _object_step(node: dict, doc: str, eager: bool, strict: bool) -> Validator:
    """`required`, `properties`, `patternProperties`, `additionalProperties`
    (and `"type": "object"` if `strict`)."""
    required = tuple(node.get("required", ()))
    properties: dict[str, Validator] = {}
    for name, sub in node.get("properties", {}).items():
        if sub is not None:
            _slot(properties, name, sub, doc, eager)
    other = _other_keys(node, doc, eager)

    def check_object(value: object) -> None:
        if not isinstance(value, dict):
            if strict:
                raise _type_error("object", value)
            return
        for name in required:
            if name not in value:
                raise _Invalid("is required", name)
        for key, item in value.items():
            validator = properties.get(key)
            if validator is not None:
                try:
                    validator(item)
                except _Invalid as exc:
                    exc.parts.append(_key(key))
                    raise
            elif other is not None:
                other(key, item)
    return check_object


def _other_keys(node: dict, doc: str, eager: bool) -> Callable[[object, object], None] | None:
    """The check of a field `properties` does not name, or None if any is allowed."""
    patterns = node.get("patternProperties", {})
    additional = node.get("additionalProperties")
    if not patterns and not isinstance(additional, dict) and additional is not False:
        return None
    searchers = [_searcher(pattern) for pattern in patterns]
    validators: list[Validator] = []
    for index, sub in enumerate(patterns.values()):
        validators.append(_accept)
        _slot(validators, index, sub, doc, eager)
    fallback: list[Validator] = [_accept]
    if isinstance(additional, dict):
        _slot(fallback, 0, additional, doc, eager)
    forbidden = additional is False

    def check_other(key: object, item: object) -> None:
        matched = False
        try:
            for index, search in enumerate(searchers):
                if search(key):
                    matched = True
                    validators[index](item)
            if not matched:
                if forbidden:
                    raise _Invalid("is not an allowed field")
                fallback[0](item)
        except _Invalid as exc:
            exc.parts.append(_key(key))
            raise
    return check_other


def _simple_type(node: dict, doc: str) -> tuple[type, str] | None:
    """(class, type name) if `node`, past plain `$ref`s, only says "type": object,
    array or string."""
    for _hop in range(8):
        ref = node.get("$ref")
        if ref is None or not _NOT_REF.isdisjoint(node):
            break
        try:
            node, doc = _resolve(ref, doc)
        except (OSError, LookupError, TypeError):  # reported when an item reaches it
            return None
    kinds = _kinds(node)
    if kinds is None or len(kinds) != 1 or _KEYWORDS.intersection(node) != {"type"}:
        return None
    cls = _CLASSES.get(kinds[0])
    return None if cls is None else (cls, kinds[0])


def _array_step(node: dict, doc: str, eager: bool, strict: bool) -> Validator:
    """`minItems` and `items` (and `"type": "array"` if `strict`)."""
    min_items = node.get("minItems", 0)
    items = node.get("items")
    simple = _simple_type(items, doc) if isinstance(items, dict) else None
    item_check: list[Validator] = [_accept]
    if items is not None and simple is None:
        _slot(item_check, 0, items, doc, eager)

    def check_array(value: object) -> None:
        if not isinstance(value, list):
            if strict:
                raise _type_error("array", value)
            return
        if len(value) < min_items:
            raise _Invalid(f"needs at least {node['minItems']} item(s)")
        if simple is not None:
            cls, name = simple
            for index, item in enumerate(value):
                if not isinstance(item, cls):
                    raise _Invalid(_type_error(name, item).message, index)
            return
        validator = item_check[0]
        if validator is _accept:
            return
        for index, item in enumerate(value):
            try:
                validator(item)
            except _Invalid as exc:
                exc.parts.append(index)
                raise
    return check_array


def _any_of_step(subs: list[dict], doc: str, eager: bool) -> Validator:
    """The first of `subs` that accepts the value wins; they compile on first use."""
    if len(subs) == 1:
        return _compile(subs[0], doc, eager)  # the same decision and the same (first) error
    validators: list[Validator] = []
    for index, sub in enumerate(subs):
        validators.append(_accept)
        _slot(validators, index, sub, doc, eager)

    def check_any_of(value: object) -> None:
        first: _Invalid | None = None
        for validator in validators:
            try:
                validator(value)
                return
            except _Invalid as exc:
                if first is None:
                    first = exc
        raise first  # type: ignore[misc]
    return check_any_of


def _one_of_step(validators: list[Validator]) -> Validator:
    def check_one_of(value: object) -> None:
        matches = 0
        first: _Invalid | None = None
        for validator in validators:
            try:
                validator(value)
                matches += 1
            except _Invalid as exc:
                if first is None:
                    first = exc
        if matches != 1:
            if first is not None and matches == 0:
                raise first
            raise _Invalid("matches more than one of the allowed forms")
    return check_one_of


# --- entry points -----------------------------------------------------------

def preload(name: str = "config-schema.json") -> None:
    """Read schema `name` and the files it references, and compile all its nodes
    now (e.g. while waiting for config.json); a second call costs nothing.
    `validate` does not need it: it compiles what it reaches on first use."""
    if name not in _preloaded:
        _compile(_document(name), name, eager=True)
        _preloaded.add(name)


def validate(document: object, schema_file: str) -> None:
    """Raise SchemaError naming the first field of `document` that violates `schema_file`."""
    validator = _validators.get((id(_documents.get(schema_file)), schema_file))
    if validator is None:
        validator = _compile(_document(schema_file), schema_file)
    try:
        validator(document)
    except _Invalid as exc:
        raise SchemaError(_path(exc.parts), exc.message) from None
