"""The OCI runtime spec's JSON schemas (../shared/specs/oci-runtime-spec/schema) as
jsonschema validators, with every schema file registered so `$ref`s resolve."""

from __future__ import annotations

import json
from pathlib import Path

_SHARED = Path(__file__).resolve().parents[3] / "shared" / "specs" / "oci-runtime-spec" / "schema"
_BUNDLED = Path(__file__).resolve().parents[2] / "src" / "corral" / "oci" / "schemas"
#: the spec's own schema files where this checkout sits beside them, else the copies
#: bundled with corral (the Linux subset; the same files)
SCHEMA_DIR = _SHARED if _SHARED.is_dir() else _BUNDLED


def validator(name: str):
    """A Draft 4 validator for `name` (e.g. "state-schema.json")."""
    import jsonschema
    from referencing import Registry, Resource
    from referencing.jsonschema import DRAFT4

    base = SCHEMA_DIR.as_uri() + "/"
    resources = []
    for path in sorted(SCHEMA_DIR.glob("*.json")):
        contents = json.loads(path.read_text())
        resources.append((base + path.name,
                          Resource.from_contents(contents, default_specification=DRAFT4)))
    registry = Registry().with_resources(resources)
    schema = dict(json.loads((SCHEMA_DIR / name).read_text()), id=base + name)
    return jsonschema.Draft4Validator(schema, registry=registry)
