"""A build's image state between steps, and writing it into the store as an image
(image-spec config.md: rootfs.diff_ids, history with empty_layer; manifest.md).

`State` is the config being built (the whole config JSON), the layer descriptors
of the manifest, the top layer's chain id, an image record with that same root
filesystem (for containers and `COPY --from`), and the cache key of the steps so
far. `write_image` stores config + manifest blobs and an image record; the
layers' blobs are already in the content store.
"""

from __future__ import annotations

import copy
import json
import time
from dataclasses import dataclass, field
from typing import Any

from corral.oci import digest as digests
from corral.oci.image import OCI_CONFIG, OCI_LAYER, Descriptor, Manifest, canonical_json

#: Image-record metadata keys of the build cache.
CACHE_KEY = "corral.build.cache-key"
INTERMEDIATE = "corral.build.intermediate"


def now_rfc3339() -> str:
    t = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int(t % 1 * 1e9):09d}Z"


@dataclass
class State:
    config: dict[str, Any]
    layers: list[Descriptor] = field(default_factory=list)
    top: str | None = None
    image_id: str | None = None
    key: str = ""

    def copy(self) -> State:
        return State(copy.deepcopy(self.config), list(self.layers), self.top, self.image_id,
                     self.key)

    @property
    def c(self) -> dict[str, Any]:
        return self.config.setdefault("config", {})

    def add_history(self, created_by: str, *, empty_layer: bool) -> None:
        entry: dict[str, Any] = {"created": now_rfc3339(), "created_by": created_by}
        if empty_layer:
            entry["empty_layer"] = True
        else:
            entry["comment"] = "corral build"
        self.config["history"] = list(self.config.get("history") or []) + [entry]

    def add_layer(self, desc: Descriptor, diff_id: str, top: str) -> None:
        rootfs = self.config.setdefault("rootfs", {"type": "layers", "diff_ids": []})
        rootfs["diff_ids"] = list(rootfs.get("diff_ids") or []) + [diff_id]
        self.layers.append(desc)
        self.top = top


def scratch_config(os_name: str, arch: str, variant: str | None = None) -> dict[str, Any]:
    config: dict[str, Any] = {"architecture": arch, "os": os_name, "config": {},
                              "rootfs": {"type": "layers", "diff_ids": []}, "history": []}
    if variant:
        config["variant"] = variant
    return config


def state_of_image(store: Any, image_id: str, key: str) -> State:
    """The State of an image in the store (config, manifest layers, top layer)."""
    from corral.oci.image import parse_manifest

    record = store.image(image_id)
    config = json.loads(store.content.read_bytes(record.id, max_size=16 << 20))
    layers: list[Descriptor] = []
    if record.manifest_digest and store.content.exists(record.manifest_digest):
        manifest = parse_manifest(store.content.read_bytes(record.manifest_digest,
                                                           max_size=16 << 20))
        if isinstance(manifest, Manifest):
            layers = list(manifest.layers)
    if len(layers) != len((config.get("rootfs") or {}).get("diff_ids") or []):
        layers = [Descriptor(OCI_LAYER, d, 0) for d in config["rootfs"]["diff_ids"]]
    for key_ in ("container", "container_config", "docker_version", "id", "parent"):
        config.pop(key_, None)
    return State(config, layers, record.top_layer, record.id, key)


def write_image(store: Any, state: State, *, names: list[str] | None = None,
                metadata: dict[str, Any] | None = None, created: str | None = None) -> str:
    """Store `state` as an image (config and manifest blobs, image record); its id."""
    config = copy.deepcopy(state.config)
    config["created"] = created or now_rfc3339()
    c = config.get("config") or {}
    for empty in [k for k, v in c.items() if v is None]:
        del c[empty]
    config_bytes = canonical_json(config)
    config_desc = Descriptor(OCI_CONFIG, digests.of_bytes(config_bytes), len(config_bytes))
    store.content.write_bytes(config_bytes, config_desc.digest)
    manifest_bytes = Manifest(config_desc, list(state.layers)).to_bytes()
    manifest_digest = digests.of_bytes(manifest_bytes)
    store.content.write_bytes(manifest_bytes, manifest_digest)
    store.create_image(config_desc.digest, state.top, names=list(names or []),
                       manifest_digest=manifest_digest, created=config["created"],
                       metadata=dict(metadata or {}))
    return config_desc.digest


def find_cached(store: Any, key: str) -> str | None:
    """The id of the newest image the build cache recorded under `key` (a `--no-cache`
    build records the same keys again: its results win afterwards)."""
    found = [r for r in store.list_images() if (r.metadata or {}).get(CACHE_KEY) == key]
    if not found:
        return None
    return max(found, key=lambda r: r.created or "").id


def chain_key(parent: str, text: str) -> str:
    return digests.of_bytes(f"{parent}\n{text}".encode("utf-8", "surrogateescape"))


__all__ = ["CACHE_KEY", "INTERMEDIATE", "State", "chain_key", "find_cached", "now_rfc3339",
           "scratch_config", "state_of_image", "write_image"]
