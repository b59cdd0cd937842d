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


# --- compiled validators: exact first violations, recursion, preload ---------------------------

def _podman_like() -> dict:
    """The spec template plus a small seccomp section."""
    document = json.loads(json.dumps(template(False)))
    document["linux"]["seccomp"] = {
        "defaultAction": "SCMP_ACT_ERRNO",
        "syscalls": [
            {"names": ["read", "write"], "action": "SCMP_ACT_ALLOW"},
            {"names": ["ptrace"], "action": "SCMP_ACT_ALLOW",
             "args": [{"index": 0, "value": 1, "op": "SCMP_CMP_EQ"}]},
        ],
    }
    return document


def _set(document: dict, path: tuple, value) -> dict:
    node = document
    for part in path[:-1]:
        node = node[part]
    node[path[-1]] = value
    return document


NAMESPACES = "['mount', 'pid', 'network', 'uts', 'ipc', 'user', 'cgroup', 'time']"
OPERATORS = ("['SCMP_CMP_NE', 'SCMP_CMP_LT', 'SCMP_CMP_LE', 'SCMP_CMP_EQ', 'SCMP_CMP_GE', "
             "'SCMP_CMP_GT', 'SCMP_CMP_MASKED_EQ']")
# (where to put what, the exact error): the messages of the interpreting validator these
# compiled ones replaced, recorded from it.
EXACT = [
    (("linux", "namespaces", 1, "type"), "pidd",  # an array inside anyOf
     f"linux.namespaces[1].type: 'pidd' is not one of {NAMESPACES}"),
    (("linux", "seccomp", "syscalls", 1, "names", 0), 7,
     "linux.seccomp.syscalls[1].names[0]: expected string, got integer 7"),
    (("linux", "seccomp", "syscalls", 1, "args", 0, "op"), "EQ",
     f"linux.seccomp.syscalls[1].args[0].op: 'EQ' is not one of {OPERATORS}"),
    (("process", "rlimits", 0, "type"), "NOFILE",
     "process.rlimits[0].type: 'NOFILE' does not match '^RLIMIT_[A-Z]+$'"),
    (("mounts", 3, "options", 2), None, "mounts[3].options[2]: expected string, got null"),
    (("linux", "resources"), {"blockIO": {"weightDevice": [{"major": 8, "minor": 0,
                                                            "weight": "x"}]}},  # allOf
     "linux.resources.blockIO.weightDevice[0].weight: expected integer, got string 'x'"),
    (("annotations",), {"ok": "v", "\n": "v", "bad": 1},  # patternProperties
     "annotations.bad: expected string, got integer 1"),
    (("linux", "netDevices"), {"eth0": {"name": 5}},  # additionalProperties
     "linux.netDevices.eth0.name: expected string, got integer 5"),
    (("linux", "uidMappings"), [{"containerID": 0, "hostID": 1000, "size": 1.5}],
     "linux.uidMappings[0].size: expected integer, got number 1.5"),
    (("process", "user", "uid"), -1, "process.user.uid: -1 is less than the minimum 0"),
]


@pytest.mark.parametrize("where,value,message", EXACT, ids=[_fmt(case[0]) for case in EXACT])
def test_first_violation_is_exact(where, value, message, reference):
    document = _set(_podman_like(), where, value)
    with pytest.raises(schema.SchemaError) as info:
        schema.validate(document, "config-schema.json")
    assert str(info.value) == message
    assert info.value.path == message.partition(": ")[0]
    _agree(document, reference)


def test_first_violation_in_document_order():
    """Two bad fields: the one met first in the document's key order is reported."""
    document = _podman_like()
    document["process"]["user"]["uid"] = -1
    document["hostname"] = 3
    with pytest.raises(schema.SchemaError) as info:
        schema.validate(document, "config-schema.json")
    assert info.value.path == "process.user.uid"


@pytest.fixture
def scratch(monkeypatch):
    """Empty caches, and a way to register a schema document by name."""
    for name in ("_validators", "_targets"):
        monkeypatch.setattr(schema, name, {})
    monkeypatch.setattr(schema, "_compiled", [])
    monkeypatch.setattr(schema, "_preloaded", set())
    monkeypatch.setattr(schema, "_documents", dict(schema._documents))
    return lambda name, document: schema._documents.__setitem__(name, document)


TREE = {
    "$ref": "#/definitions/node",
    "definitions": {
        "node": {
            "type": "object",
            "required": ["name"],
            "properties": {
                "name": {"type": "string"},
                "children": {"type": "array", "items": {"$ref": "#/definitions/node"}},
            },
        },
    },
}


@pytest.mark.parametrize("preloaded", [False, True], ids=["lazy", "preloaded"])
def test_recursive_ref(preloaded, scratch):
    scratch("tree.json", TREE)
    if preloaded:
        schema.preload("tree.json")
    good = {"name": "a", "children": [{"name": "b"}, {"name": "c", "children": [{"name": "d"}]}]}
    schema.validate(good, "tree.json")
    bad = copy.deepcopy(good)
    bad["children"][1]["children"][0]["name"] = 5
    with pytest.raises(schema.SchemaError, match=r"^children\[1\]\.children\[0\]\.name: "
                                                 r"expected string, got integer 5$"):
        schema.validate(bad, "tree.json")
    del bad["children"][1]["children"][0]["name"]
    with pytest.raises(schema.SchemaError, match=r"^children\[1\]\.children\[0\]\.name: "
                                                 r"is required$"):
        schema.validate(bad, "tree.json")


CHOICES = {
    "type": "object",
    "properties": {
        "any": {"anyOf": [{"type": "array", "items": {"type": "integer"}}, {"type": "string"}]},
        "one": {"oneOf": [{"type": "integer"}, {"minimum": 0}]},
        "closed": {"type": "object", "additionalProperties": False,
                   "properties": {"a": {"type": "boolean"}}},
    },
}


@pytest.mark.parametrize("document,message", [
    ({"any": [1, "x"]}, "any[1]: expected integer, got string 'x'"),  # the first branch's error
    ({"any": {}}, "any: expected array, got object"),
    ({"one": 5}, "one: matches more than one of the allowed forms"),
    ({"one": -1.5}, "one: expected integer, got number -1.5"),
    ({"closed": {"a": True, "b": 1}}, "closed.b: is not an allowed field"),
    ([], "(document): expected object, got array"),
], ids=["anyOf-array", "anyOf-type", "oneOf-two", "oneOf-none", "closed", "root"])
def test_combinators(document, message, scratch):
    scratch("choices.json", CHOICES)
    with pytest.raises(schema.SchemaError) as info:
        schema.validate(document, "choices.json")
    assert str(info.value) == message
    schema.validate({"any": "x", "one": -1, "closed": {"a": False}}, "choices.json")
    schema.validate({"any": [1, 2], "one": 1.5}, "choices.json")


def test_validate_needs_no_preload(scratch):
    schema.validate(_podman_like(), "config-schema.json")
    with pytest.raises(schema.SchemaError, match="^process.user.uid: "):
        schema.validate(_set(_podman_like(), ("process", "user", "uid"), -1),
                        "config-schema.json")
    assert schema._preloaded == set()


def test_preload_is_idempotent(scratch):
    schema.preload()
    compiled = len(schema._validators)
    assert compiled > 100  # the whole schema, not just the root
    schema.preload()
    schema.preload("config-schema.json")
    assert len(schema._validators) == compiled
    schema.validate(_podman_like(), "config-schema.json")
    assert len(schema._validators) == compiled  # nothing left to compile on first use
    with pytest.raises(schema.SchemaError, match=r"^linux\.namespaces\[1\]\.type: 'pidd'"):
        schema.validate(_set(_podman_like(), ("linux", "namespaces", 1, "type"), "pidd"),
                        "config-schema.json")


def test_preload_and_validate_import_nothing():
    """No `re` (nor anything else) for the shipped schemas: create's start-up path."""
    code = (
        "import sys, json\n"
        "from corral.oci import schema\n"
        "document = json.loads(open(sys.argv[1]).read())\n"
        "before = set(sys.modules)\n"
        "schema.preload()\n"
        "schema.validate(document, 'config-schema.json')\n"
        "print(sorted(set(sys.modules) - before))\n"
    )
    import subprocess
    import sys

    result = subprocess.run([sys.executable, "-c", code, str(DATA / "good" / "spec-example.json")],
                            capture_output=True, text=True, check=True, timeout=60)
    assert result.stdout.strip() == "[]"


def test_sections_of_other_platforms_are_ignored_as_runc_does():
    """config-schema.json refers to config-windows.json and others, which a Linux runtime
    does not ship: a config with such a section is valid (runc ignores it), not a crash."""
    from corral.oci import schema

    doc = {"ociVersion": "1.0.2", "root": {"path": "rootfs"},
           "windows": {"layerFolders": ["C:\\\\x"]}, "solaris": {"anet": "x"}}
    schema.validate(doc, "config-schema.json")
    with pytest.raises(schema.SchemaError, match="ociVersion"):
        schema.validate({**doc, "ociVersion": 1}, "config-schema.json")
