"""corral.oci.schema against the spec's own test vectors and the `jsonschema` package.

corral-runtime validates config.json with a small hand-written draft-04
validator (importing jsonschema would dominate its start-up). These tests hold
it to the reference implementation: same accept/reject decision on the spec's
good/bad vectors and on thousands of mutated configs, and an error that names
a field jsonschema also blames.
"""

from __future__ import annotations

import copy
import json
import os
from pathlib import Path

import pytest

from corral.oci import schema
from corral.runtime.spec_template import template

jsonschema = pytest.importorskip("jsonschema", reason="jsonschema (the [test] extra) missing")
referencing = pytest.importorskip("referencing", reason="referencing (jsonschema's) missing")
from referencing.jsonschema import DRAFT4

DATA = Path(__file__).parent / "data" / "oci-config"
GOOD = sorted((DATA / "good").glob("*.json"))
BAD = sorted(p for p in (DATA / "bad").glob("*.json") if p.name != "invalid-json.json")


@pytest.fixture(scope="module")
def reference():
    """A jsonschema Draft-4 validator over the same schema files corral ships."""
    resources = []
    for name in os.listdir(schema.SCHEMA_DIR):
        with open(os.path.join(schema.SCHEMA_DIR, name)) as f:
            resources.append((name, DRAFT4.create_resource(json.load(f))))
    registry = referencing.Registry().with_resources(resources)
    return jsonschema.Draft4Validator(registry.contents("config-schema.json"),
                                      registry=registry)


def _fmt(path) -> str:
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else part)
    return text


def _blamed(errors) -> set[str]:
    """Field paths jsonschema blames, in corral's `a.b[0].c` notation."""
    paths: set[str] = set()
    for error in errors:
        base = list(error.absolute_path)
        if error.validator == "required":
            paths |= {_fmt([*base, name]) for name in error.validator_value
                      if isinstance(error.instance, dict) and name not in error.instance}
        elif error.validator == "additionalProperties":
            allowed = error.schema.get("properties", {})
            paths |= {_fmt([*base, key]) for key in error.instance if key not in allowed}
        else:
            paths.add(_fmt(base))
        paths |= _blamed(error.context or [])
    return paths


def _ours(document) -> str | None:
    try:
        schema.validate(document, "config-schema.json")
    except schema.SchemaError as exc:
        return exc.path
    return None


def _agree(document, reference) -> None:
    ours = _ours(document)
    errors = list(reference.iter_errors(document))
    if not errors:
        assert ours is None, f"corral rejects at {ours!r}; jsonschema accepts"
    else:
        blamed = _blamed(errors)
        assert ours is not None, f"corral accepts; jsonschema rejects at {sorted(blamed)}"
        assert ours in blamed, f"corral blames {ours!r}; jsonschema {sorted(blamed)}"


def test_vectors_present():
    assert {p.name for p in GOOD} >= {"minimal.json", "spec-example.json"}
    assert BAD


@pytest.mark.parametrize("path", GOOD, ids=lambda p: p.name)
def test_good_vectors_pass(path, reference):
    document = json.loads(path.read_text())
    schema.validate(document, "config-schema.json")
    assert list(reference.iter_errors(document)) == []


@pytest.mark.parametrize("path", BAD, ids=lambda p: p.name)
def test_bad_vectors_fail_like_jsonschema(path, reference):
    document = json.loads(path.read_text())
    with pytest.raises(schema.SchemaError):
        schema.validate(document, "config-schema.json")
    _agree(document, reference)


def test_invalid_json_vector_is_a_config_error():
    from corral.oci.runtime_config import ConfigError, parse

    with pytest.raises(ConfigError, match="not valid JSON"):
        parse((DATA / "bad" / "invalid-json.json").read_bytes())


def _minimal() -> dict:
    return json.loads((DATA / "good" / "minimal.json").read_text())


def _with(path: str, value) -> dict:
    """minimal.json plus a process, with `value` set at dotted `path`."""
    document = _minimal()
    document["process"] = {"cwd": "/", "args": ["sh"], "user": {"uid": 0, "gid": 0}}
    node = document
    parts = path.split(".")
    for part in parts[:-1]:
        node = node.setdefault(part, {})
    node[parts[-1]] = value
    return document


# (field path to set, bad value, field path the error must name, words of the message)
HAND_MADE = [
    ("process.args", "sh -c true", "process.args", "expected array"),
    ("process.args", ["sh", 1], "process.args[1]", "expected string"),
    ("process.cwd", 7, "process.cwd", "expected string"),
    ("process.user.uid", -1, "process.user.uid", "minimum"),
    ("process.user.gid", 4294967296, "process.user.gid", "maximum"),
    ("process.terminal", "yes", "process.terminal", "expected boolean"),
    ("process.env", ["A=1", None], "process.env[1]", "expected string"),
    ("process.capabilities.bounding", "CAP_KILL", "process.capabilities.bounding",
     "expected array"),
    ("process.rlimits", [{"type": "RLIMIT_NOFILE", "soft": 1}], "process.rlimits[0].hard",
     "required"),
    ("process.consoleSize", {"height": 10}, "process.consoleSize.width", "required"),
    ("hostname", 5, "hostname", "expected string"),
    ("root.path", ["rootfs"], "root.path", "expected string"),
    ("root.readonly", "true", "root.readonly", "expected boolean"),
    ("mounts", [{"source": "proc", "type": "proc"}], "mounts[0].destination", "required"),
    ("mounts", [{"destination": "/p", "options": "ro"}], "mounts[0].options", "expected array"),
    ("annotations", {"a": 1}, "annotations.a", "expected string"),
    ("linux.namespaces", [{"type": "pidd"}], "linux.namespaces[0].type", "not one of"),
    ("linux.uidMappings", [{"containerID": 0, "hostID": 0, "size": "1"}],
     "linux.uidMappings[0].size", "expected integer"),
    ("linux.resources.memory", {"limit": "1G"}, "linux.resources.memory.limit",
     "expected integer"),
    ("linux.resources.hugepageLimits", [{"pageSize": "2mB", "limit": 1}],
     "linux.resources.hugepageLimits[0].pageSize", "does not match"),
    ("linux.seccomp", {"defaultAction": "SCMP_ACT_MAYBE"}, "linux.seccomp.defaultAction",
     "not one of"),
    ("linux.seccomp", {"defaultAction": "SCMP_ACT_ALLOW",
                       "syscalls": [{"names": [], "action": "SCMP_ACT_ERRNO"}]},
     "linux.seccomp.syscalls[0].names", "at least"),
    ("hooks.prestart", [{"args": ["x"]}], "hooks.prestart[0].path", "required"),
]


@pytest.mark.parametrize("field,value,blamed,words", HAND_MADE,
                         ids=[f"{case[0]}={case[1]!r}"[:60] for case in HAND_MADE])
def test_hand_made_bad_configs(field, value, blamed, words, reference):
    document = _with(field, value)
    with pytest.raises(schema.SchemaError) as info:
        schema.validate(document, "config-schema.json")
    assert info.value.path == blamed
    assert str(info.value).startswith(f"{blamed}: ")
    assert words in str(info.value)
    _agree(document, reference)


def test_missing_oci_version_is_named():
    document = _minimal()
    del document["ociVersion"]
    with pytest.raises(schema.SchemaError, match=r"^ociVersion: is required"):
        schema.validate(document, "config-schema.json")


@pytest.mark.parametrize("rootless", [False, True], ids=["root", "rootless"])
def test_spec_template_validates(rootless, reference):
    document = json.loads(json.dumps(template(rootless)))
    schema.validate(document, "config-schema.json")
    assert list(reference.iter_errors(document)) == []


def _leaves(node, path=()):
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _leaves(value, (*path, key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from _leaves(value, (*path, index))
    if path:
        yield path


def test_mutations_of_spec_example_agree_with_jsonschema(reference):
    """Every field of spec-example.json, replaced by values of the wrong type or range."""
    base = json.loads((DATA / "good" / "spec-example.json").read_text())
    disagreements = []
    cases = 0
    for path in _leaves(base):
        for value in ("x", -1, 1.5, None, [], {"k": 1}, 4294967296):
            document = copy.deepcopy(base)
            node = document
            for part in path[:-1]:
                node = node[part]
            node[path[-1]] = value
            cases += 1
            try:
                _agree(document, reference)
            except AssertionError as exc:
                disagreements.append(f"{_fmt(path)}={value!r}: {exc}")
    assert cases > 1000
    assert disagreements == [], "\n".join(disagreements[:20])
