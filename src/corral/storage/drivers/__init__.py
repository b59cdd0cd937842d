"""Storage drivers: how a layer's files are kept and how a container's rootfs is mounted.

Every driver implements the `Driver` protocol (containers/storage's graph drivers,
containerd's snapshotters): layers are created on a parent, filled from a layer tar,
and described as a list of `Mount`s that the caller mounts. `overlay` uses kernel
overlayfs (Documentation/filesystems/overlayfs.rst); `vfs` keeps a full copy per layer
and works on any filesystem. `select_driver` picks overlay when a test mount in the
store succeeds.
"""

from __future__ import annotations

import os
from pathlib import Path

from corral.storage.errors import DriverUnavailable, InvalidArgument
from corral.storage.mount import Mount

TYPE_CHECKING = False  # typing costs ~3 ms to import: the protocol is for the checkers
if TYPE_CHECKING:
    from typing import BinaryIO, Protocol

    from corral.image.layer_tar import AppliedLayer
else:
    Protocol = object

NAMES = ("overlay", "vfs")
ENV_VAR = "CORRAL_STORAGE_DRIVER"


class Driver(Protocol):
    """What the layer and container stores need from a driver.

    Layer ids are directory names under `<home>/layers/`. A container's read-write
    layer lives in an `rw_dir` the container store owns; `layer_id` is then the image's
    top layer it sits on (None for a container from scratch).
    """

    name: str
    home: Path

    def create(self, layer_id: str, parent_id: str | None) -> None:
        """An empty layer on `parent_id` (vfs: a copy of the parent)."""

    def apply(self, layer_id: str, stream: BinaryIO) -> AppliedLayer:
        """Extract a (possibly compressed) layer tar into the layer."""

    def rename(self, old_id: str, new_id: str) -> None:
        """Move a (staged) layer to its final id."""

    def remove(self, layer_id: str) -> None:
        """Delete the layer's files (its children must be gone)."""

    def exists(self, layer_id: str) -> bool:
        ...

    def create_rw(self, rw_dir: Path, layer_id: str | None) -> None:
        """A container's read-write layer on `layer_id`."""

    def remove_rw(self, rw_dir: Path) -> None:
        ...

    def mounts(self, layer_id: str | None, rw_dir: Path | None) -> list[Mount]:
        """Mounts that show `layer_id` (read-only) or the container's rootfs (rw_dir given)."""

    def diff(self, layer_id: str | None, rw_dir: Path | None, out: BinaryIO) -> AppliedLayer:
        """An OCI layer tar of the changes: of `rw_dir` over `layer_id`, or of
        `layer_id` over its parent when `rw_dir` is None."""


def overlay_support(home: Path) -> str | None:
    """None if overlayfs works for a store at `home`, else why not (a test mount there)."""
    import shutil
    import tempfile

    from corral.storage.mount import MountFailed, mount_all, unmount

    if os.geteuid() != 0:
        return "overlay needs root"
    home.mkdir(parents=True, exist_ok=True)
    probe = Path(tempfile.mkdtemp(prefix=".overlay-probe-", dir=home))
    try:
        for name in ("l1", "l2", "upper", "work", "merged"):
            (probe / name).mkdir()
        (probe / "l2" / "file").write_bytes(b"")
        spec = Mount("overlay", "overlay", (f"lowerdir={probe / 'l1'}:{probe / 'l2'}",
                                            f"upperdir={probe / 'upper'}",
                                            f"workdir={probe / 'work'}"))
        try:
            mount_all([spec], probe / "merged")
        except MountFailed as exc:
            return str(exc)
        try:
            os.unlink(probe / "merged" / "file")  # makes a whiteout: needs mknod in upper
        except OSError as exc:
            return f"overlay whiteouts do not work on {home}: {exc}"
        finally:
            unmount(probe / "merged")
        return None
    finally:
        shutil.rmtree(probe, ignore_errors=True)


def make_driver(name: str, home: Path, *, probe: bool = True) -> Driver:
    """The driver called `name`; `probe=False` trusts that overlay worked when the store
    was made (the test mount costs tens of ms, on every command otherwise)."""
    if name == "overlay":
        from corral.storage.drivers.overlay import OverlayDriver

        reason = overlay_support(home) if probe else None
        if reason is not None:
            raise DriverUnavailable(f"storage driver overlay unavailable at {home}: {reason}")
        return OverlayDriver(home)
    if name == "vfs":
        from corral.storage.drivers.vfs import VfsDriver

        return VfsDriver(home)
    raise InvalidArgument(f"unknown storage driver {name!r} (known: {', '.join(NAMES)})")


def select_driver(home: Path, requested: str | None = None) -> Driver:
    """The driver asked for (argument, then $CORRAL_STORAGE_DRIVER), else overlay if it works, else vfs."""
    name = requested or os.environ.get(ENV_VAR) or None
    if name:
        return make_driver(name, home)
    if overlay_support(home) is None:
        from corral.storage.drivers.overlay import OverlayDriver

        return OverlayDriver(home)
    from corral.storage.drivers.vfs import VfsDriver

    return VfsDriver(home)


__all__ = ["NAMES", "Driver", "Mount", "make_driver", "overlay_support", "select_driver"]
