"""The overlay driver: kernel overlayfs (Documentation/filesystems/overlayfs.rst).

Layout under `<home>` (containers/storage's overlay driver):

    layers/<id>/diff/    the layer's own changes, whiteouts in overlay form
                         (0:0 char devices, `trusted.overlay.opaque=y` directories)
    layers/<id>/link     the layer's short name: `l/<link>` -> `../layers/<id>/diff`
    layers/<id>/lower    its parents' short names, nearest first: `l/A:l/B`
    l/<link>             short symlinks, so deep stacks fit mount(2)'s one-page data

A container's rw_dir holds `upper/` and `work/`. `mounts()` lists lowerdirs top
first; when the option string would exceed a page it switches to the short
`<home>/l/<link>` paths, and past that to paths relative to `<home>` (the caller
mounts from there; see corral.storage.mount).
"""

from __future__ import annotations

import os
from pathlib import Path

from corral.storage.drivers._util import empty_dir, remove_tree, spread_subdirs
from corral.storage.errors import InvalidArgument, LayerNotFound
from corral.storage.mount import Mount

TYPE_CHECKING = False  # typing costs ~3 ms to import: annotations only
if TYPE_CHECKING:
    from typing import BinaryIO

    from corral.image.layer_tar import AppliedLayer

PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")


def _new_link() -> str:

    import base64

    return base64.b32encode(os.urandom(16)).decode().rstrip("=")  # 26 chars


class OverlayDriver:
    name = "overlay"

    def __init__(self, home: Path):
        self.home = Path(home)
        self.layers = self.home / "layers"
        self.links = self.home / "l"
        self.layers.mkdir(parents=True, exist_ok=True)
        spread_subdirs(self.layers)   # each layer in its own block group (ext4)
        self.links.mkdir(parents=True, exist_ok=True)

    # -- layers -----------------------------------------------------------------
    def _dir(self, layer_id: str) -> Path:
        return self.layers / layer_id

    def _require(self, layer_id: str) -> Path:
        path = self._dir(layer_id)
        if not (path / "diff").is_dir():
            raise LayerNotFound(f"overlay layer {layer_id} has no directory at {path / 'diff'}")
        return path

    def exists(self, layer_id: str) -> bool:
        return (self._dir(layer_id) / "diff").is_dir()

    def create(self, layer_id: str, parent_id: str | None) -> None:
        path = self._dir(layer_id)
        lower = ""
        if parent_id is not None:
            parent = self._require(parent_id)
            parent_lower = (parent / "lower").read_text().strip() if (parent / "lower").exists() else ""
            lower = f"l/{(parent / 'link').read_text().strip()}"
            if parent_lower:
                lower += ":" + parent_lower
        path.mkdir(exist_ok=True)
        (path / "diff").mkdir(mode=0o755)
        link = _new_link()
        (path / "link").write_text(link)
        if lower:
            (path / "lower").write_text(lower)
        os.symlink(f"../layers/{layer_id}/diff", self.links / link)

    def apply(self, layer_id: str, stream: BinaryIO) -> AppliedLayer:
        from corral.image.layer_tar import apply_layer

        return apply_layer(stream, self._require(layer_id) / "diff", whiteouts="overlay")

    def rename(self, old_id: str, new_id: str) -> None:
        old = self._require(old_id)
        link = (old / "link").read_text().strip()
        os.rename(old, self._dir(new_id))
        tmp = self.links / f".{link}.tmp"
        os.symlink(f"../layers/{new_id}/diff", tmp)
        os.replace(tmp, self.links / link)

    def remove(self, layer_id: str) -> None:
        path = self._dir(layer_id)
        try:
            link = (path / "link").read_text().strip()
        except OSError:
            link = ""
        if link and "/" not in link and link not in (".", ".."):
            try:
                os.unlink(self.links / link)
            except FileNotFoundError:
                pass
        remove_tree(path)

    def prune_links(self) -> None:
        """Remove short links whose layer is gone (crash debris)."""
        for entry in os.scandir(self.links):
            if entry.is_symlink() and not os.path.exists(entry.path):
                os.unlink(entry.path)

    def _chain(self, layer_id: str) -> list[str]:
        """Short names of the layer and its parents, top first."""
        path = self._require(layer_id)
        chain = [f"l/{(path / 'link').read_text().strip()}"]
        if (path / "lower").exists():
            lower = (path / "lower").read_text().strip()
            if lower:
                chain.extend(lower.split(":"))
        return chain

    def lower_dirs(self, layer_id: str | None) -> list[Path]:
        """The diff directories of the layer and its parents, top first."""
        if layer_id is None:
            return []
        return [Path(os.path.realpath(self.home / short)) for short in self._chain(layer_id)]

    # -- containers -------------------------------------------------------------
    def create_rw(self, rw_dir: Path, layer_id: str | None) -> None:
        if layer_id is not None:
            self._require(layer_id)
        (rw_dir / "upper").mkdir(parents=True, mode=0o755)
        (rw_dir / "work").mkdir(mode=0o700)

    def remove_rw(self, rw_dir: Path) -> None:
        remove_tree(rw_dir)

    def mounts(self, layer_id: str | None, rw_dir: Path | None) -> list[Mount]:
        if layer_id is None:
            lowers_full = [str(empty_dir(self.home))]
            chain: list[str] = []
        else:
            lowers_full = [str(p) for p in self.lower_dirs(layer_id)]
            chain = self._chain(layer_id)
        if rw_dir is None:
            if len(lowers_full) == 1:  # overlay needs two lowers without an upper
                return [Mount("bind", lowers_full[0], ("bind", "ro"))]
            tail: tuple[str, ...] = ("ro",)
        else:
            # redirect_dir and metacopy off: a container's upper dir must hold plain
            # copies and whiteouts only, the forms layer_diff can turn into a layer tar.
            tail = (f"upperdir={rw_dir / 'upper'}", f"workdir={rw_dir / 'work'}",
                    "redirect_dir=off", "metacopy=off")

        def fits(lower: str) -> bool:
            data = ",".join((f"lowerdir={lower}",) + tuple(t for t in tail if t != "ro"))
            return len(data) < PAGE_SIZE

        lower = ":".join(lowers_full)
        if fits(lower) or not chain:
            return [Mount("overlay", "overlay", (f"lowerdir={lower}",) + tail)]
        lower = ":".join(str(self.home / short) for short in chain)
        if fits(lower):
            return [Mount("overlay", "overlay", (f"lowerdir={lower}",) + tail)]
        lower = ":".join(chain)
        if not fits(lower):
            raise InvalidArgument(f"layer {layer_id} has {len(chain)} layers under it: too many "
                                  f"for one overlay mount (its options exceed {PAGE_SIZE} bytes)")
        return [Mount("overlay", "overlay", (f"lowerdir={lower}",) + tail, cwd=str(self.home))]

    def diff(self, layer_id: str | None, rw_dir: Path | None, out: BinaryIO) -> AppliedLayer:
        from corral.image.layer_tar import diff_layer

        if rw_dir is not None:
            return diff_layer(self.lower_dirs(layer_id), rw_dir / "upper", out)
        if layer_id is None:
            return diff_layer([], empty_dir(self.home), out)
        dirs = self.lower_dirs(layer_id)
        return diff_layer(dirs[1:], dirs[0], out)


__all__ = ["OverlayDriver"]
