"""The vfs driver: every layer is a full copy of its parent plus its changes.

Works on any filesystem (no overlayfs needed), at the price of disk space and copy
time (containers/storage's vfs driver). `layers/<id>/root/` is the layer's whole
filesystem; a container's rw_dir holds `root/`, a copy of its image's top layer,
and `mounts()` returns a bind mount of it.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from corral.storage.drivers._util import copy_tree, empty_dir, remove_tree, spread_subdirs
from corral.storage.errors import LayerNotFound
from corral.storage.mount import Mount

if TYPE_CHECKING:
    from corral.image.layer_tar import AppliedLayer


class VfsDriver:
    name = "vfs"

    def __init__(self, home: Path):
        self.home = Path(home)
        self.layers = self.home / "layers"
        self.layers.mkdir(parents=True, exist_ok=True)
        spread_subdirs(self.layers)   # each layer in its own block group (ext4)

    def _root(self, layer_id: str) -> Path:
        root = self.layers / layer_id / "root"
        if not root.is_dir():
            raise LayerNotFound(f"vfs layer {layer_id} has no directory at {root}")
        return root

    def exists(self, layer_id: str) -> bool:
        return (self.layers / layer_id / "root").is_dir()

    def _parent(self, layer_id: str) -> str | None:
        path = self.layers / layer_id / "parent"
        return path.read_text().strip() or None if path.exists() else None

    def create(self, layer_id: str, parent_id: str | None) -> None:
        path = self.layers / layer_id
        path.mkdir(exist_ok=True)
        if parent_id is None:
            (path / "root").mkdir(mode=0o755)
        else:
            copy_tree(self._root(parent_id), path / "root")
            (path / "parent").write_text(parent_id)

    def apply(self, layer_id: str, stream: BinaryIO) -> AppliedLayer:
        from corral.image.layer_tar import apply_layer

        return apply_layer(stream, self._root(layer_id), whiteouts="vfs")

    def rename(self, old_id: str, new_id: str) -> None:
        self._root(old_id)
        (self.layers / old_id).rename(self.layers / new_id)

    def remove(self, layer_id: str) -> None:
        remove_tree(self.layers / layer_id)

    def create_rw(self, rw_dir: Path, layer_id: str | None) -> None:
        rw_dir.mkdir(parents=True, exist_ok=True)
        if layer_id is None:
            (rw_dir / "root").mkdir(mode=0o755)
        else:
            copy_tree(self._root(layer_id), rw_dir / "root")

    def remove_rw(self, rw_dir: Path) -> None:
        remove_tree(rw_dir)

    def mounts(self, layer_id: str | None, rw_dir: Path | None) -> list[Mount]:
        if rw_dir is not None:
            return [Mount("bind", str(rw_dir / "root"), ("rbind",))]
        source = self._root(layer_id) if layer_id is not None else empty_dir(self.home)
        return [Mount("bind", str(source), ("rbind", "ro"))]

    def diff(self, layer_id: str | None, rw_dir: Path | None, out: BinaryIO) -> AppliedLayer:
        from corral.image.layer_tar import diff_dirs

        if rw_dir is not None:
            base = self._root(layer_id) if layer_id is not None else empty_dir(self.home)
            return diff_dirs(base, rw_dir / "root", out)
        if layer_id is None:
            return diff_dirs(empty_dir(self.home), empty_dir(self.home), out)
        parent = self._parent(layer_id)
        base = self._root(parent) if parent is not None else empty_dir(self.home)
        return diff_dirs(base, self._root(layer_id), out)


__all__ = ["VfsDriver"]
