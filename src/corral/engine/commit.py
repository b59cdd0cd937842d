"""`commit`: a container's read-write layer made into a new image on top of its image.

The RW layer's diff (storage's driver diff: an uncompressed OCI layer tar, whiteouts
for deletions) becomes one more layer; the new config is the image's with that diff
id appended, a history entry (`created_by` = the container's command, `comment` =
--message, `author`), `created` now, and `--change` instructions applied (the same
Dockerfile subset as `import`). The image is written through the store transport, so
layers are shared with the parent image and a failure rolls back.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Sequence
from typing import Any, BinaryIO

from corral.errors import InvalidArgument
from corral.image.transports._files import NoClose


class _CommitSource:
    def __init__(self, store: Any, container_id: str, *, changes: Sequence[str],
                 message: str | None, author: str | None, created_by: str,
                 tmpdir: str | None) -> None:
        from corral.image.transports.store import StoreSource
        from corral.image.transports.tarball import apply_changes, now_rfc3339
        from corral.image.transports.types import SourceImage
        from corral.oci import digest as digests
        from corral.oci.image import OCI_CONFIG, OCI_LAYER, Descriptor, Manifest, canonical_json

        record = store.container(container_id)
        if record.image is None:
            raise InvalidArgument(f"container {record.id[:12]} has no image to commit onto")
        self.parent = StoreSource(store, record.image)
        parent = self.parent.images()[0]
        self.tmp = tempfile.TemporaryFile(dir=tmpdir)  # noqa: SIM115
        try:
            hasher = digests.Hasher()

            class _Tee:
                def write(inner, data: bytes) -> int:
                    hasher.update(data)
                    return self.tmp.write(data)

                def flush(inner) -> None:
                    pass

            store.diff(record.id, _Tee())
            self.tmp.flush()
            self.layer = Descriptor(OCI_LAYER, hasher.digest(), hasher.size)
            config = json.loads(json.dumps(parent.config.to_json()))
            created = now_rfc3339()
            config["created"] = created
            if author:
                config["author"] = author
            config.setdefault("rootfs", {"type": "layers", "diff_ids": []})
            config["rootfs"]["diff_ids"] = list(config["rootfs"].get("diff_ids") or []) + \
                [self.layer.digest]
            entry = {"created": created, "created_by": created_by}
            if message:
                entry["comment"] = message
            if author:
                entry["author"] = author
            config["history"] = list(config.get("history") or []) + [entry]
            apply_changes(config, list(changes))
            self.config_bytes = canonical_json(config)
            desc = Descriptor(OCI_CONFIG, digests.of_bytes(self.config_bytes),
                              len(self.config_bytes))
            self.image = SourceImage(Manifest(desc, list(parent.manifest.layers) + [self.layer]),
                                     self.config_bytes, None, ())
        except BaseException:
            self.tmp.close()
            raise

    def images(self) -> list[Any]:
        return [self.image]

    def open_blob(self, desc: Any) -> BinaryIO:
        if desc.digest == self.layer.digest:
            self.tmp.seek(0)
            return NoClose(self.tmp)  # type: ignore[return-value]
        return self.parent.open_blob(desc)

    def close(self) -> None:
        self.tmp.close()


class _CommitReference:
    def __init__(self, source: _CommitSource) -> None:
        self.source = source

    def open_source(self) -> _CommitSource:
        return self.source


def commit(store: Any, container_id: str, name: str | None = None, *,
           changes: Sequence[str] = (), message: str | None = None,
           author: str | None = None, created_by: str | None = None,
           tmpdir: str | None = None) -> str:
    """Commit the container's changes; returns the new image id (`sha256:...`)."""
    from corral.image.transports import copy
    from corral.image.transports.store import StoreReference

    record = store.container(container_id)
    command = record.metadata.get("command") or []
    try:  # the command the container ran: its runtime spec's args
        spec = json.loads((store.container_dir(record.id) / "config.json").read_text())
        command = spec["process"]["args"] or command
    except (OSError, ValueError, KeyError, TypeError):
        pass
    source = _CommitSource(store, record.id, changes=changes, message=message, author=author,
                           created_by=created_by or ("/bin/sh -c #(nop) corral commit "
                                                     + " ".join(command)).strip(),
                           tmpdir=tmpdir)
    copied = copy(_CommitReference(source),  # type: ignore[arg-type]
                  StoreReference(store, name))
    return copied[0].id


__all__ = ["commit"]
