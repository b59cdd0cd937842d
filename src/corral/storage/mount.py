"""Mount specs returned by drivers (containerd style: the driver describes, the caller mounts).

A `Mount` is what mount(8) would take: a type, a source, options. Overlay mounts whose
option string would not fit in a page use lowerdir paths relative to `cwd`; `mount_all`
then mounts from a forked child that first changes into `cwd` (containers/storage's
`mountFrom`), since mount(2) data is limited to one page.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

from corral.errors import SystemFailure
from corral.records_light import dataclass, field


@dataclass(frozen=True)
class Mount:
    type: str                      # "overlay" or "bind"
    source: str
    options: tuple[str, ...] = field(default_factory=tuple)
    cwd: str | None = None         # relative paths in options resolve here

    def data(self) -> str:
        from corral.linux.mounts import parse_options

        return ",".join(parse_options(list(self.options)).data)

    def to_oci(self) -> dict[str, object]:
        """As an OCI runtime `mounts` entry (without destination)."""
        return {"type": self.type, "source": self.source, "options": list(self.options)}


class MountFailed(SystemFailure):
    """mount(2) or umount(2) failed; the message names the path."""


def mount_all(mounts: list[Mount], target: Path) -> None:
    """Mount each spec on `target` in order."""
    from corral.linux import syscalls as sc
    from corral.linux.mounts import parse_options

    for spec in mounts:
        parsed = parse_options(list(spec.options))
        flags = parsed.flags
        fstype: str | None = spec.type
        if spec.type == "bind":
            flags |= sc.MS_BIND
            fstype = None
        data = ",".join(parsed.data) or None
        if spec.cwd is None:
            try:
                sc.mount(spec.source, str(target), fstype, flags, data)
            except OSError as exc:
                raise MountFailed(f"mounting {spec.type} on {target}: {exc}") from exc
        else:
            _mount_from(spec.cwd, spec.source, str(target), fstype, flags, data)
        if spec.type == "bind" and flags & sc.MS_RDONLY:
            try:
                sc.mount(None, str(target), None, flags | sc.MS_REMOUNT, None)
            except OSError as exc:
                raise MountFailed(f"remounting {target} read-only: {exc}") from exc


def _mount_from(cwd: str, source: str, target: str, fstype: str | None, flags: int,
                data: str | None) -> None:
    from corral.linux import syscalls as sc

    pid = os.fork()
    if pid == 0:  # pragma: no cover - child
        code = 0
        try:
            os.chdir(cwd)
            sc.mount(source, target, fstype, flags, data)
        except OSError as exc:
            code = exc.errno or 1
        except BaseException:  # noqa: BLE001 - the child must _exit, never return
            code = 1
        os._exit(code)
    _, status = os.waitpid(pid, 0)
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        reason = os.strerror(code) if code > 0 else f"signal {-code}"
        raise MountFailed(f"mounting {fstype} on {target} (from {cwd}): {reason}")


def unmount(target: Path, *, lazy: bool = False) -> None:
    """umount2(2); a path that is not mounted is not an error."""
    from corral.linux import syscalls as sc

    try:
        sc.umount(str(target), 2 if lazy else 0)  # MNT_DETACH = 2
    except OSError as exc:
        if exc.errno in (errno.EINVAL, errno.ENOENT):
            return
        raise MountFailed(f"unmounting {target}: {exc}") from exc


def _unescape(field_: str) -> str:
    if "\\" not in field_:
        return field_
    out, i = [], 0
    while i < len(field_):
        if field_[i] == "\\" and i + 4 <= len(field_) and field_[i + 1:i + 4].isdigit():
            out.append(chr(int(field_[i + 1:i + 4], 8)))
            i += 4
        else:
            out.append(field_[i])
            i += 1
    return "".join(out)


def mountpoints() -> list[str]:
    """Mount points of this mount namespace, from /proc/self/mountinfo."""
    points = []
    with open("/proc/self/mountinfo", encoding="utf-8", errors="surrogateescape") as handle:
        for line in handle:
            parts = line.split(" ")
            if len(parts) > 4:
                points.append(_unescape(parts[4]))
    return points


def is_mountpoint(path: Path, points: set[str] | None = None) -> bool:
    """`points`: mountpoints() read once by a caller asking about many paths."""
    target = os.path.realpath(path)
    return target in (points if points is not None else mountpoints())


def mounts_under(root: Path) -> list[str]:
    """Mount points at or below `root`, deepest first (the order to unmount them)."""
    base = os.path.realpath(root)
    found = [p for p in mountpoints() if p == base or p.startswith(base + "/")]
    return sorted(set(found), key=lambda p: p.count("/"), reverse=True)


def unmount_all_under(root: Path) -> None:
    for point in mounts_under(root):
        for _ in range(8):  # stacked mounts on one point
            if point not in mountpoints():
                break
            unmount(Path(point), lazy=True)
