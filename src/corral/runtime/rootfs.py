"""The container's filesystem view (config.md#root, #mounts; config-linux.md#devices).

Runs inside the container's new mount namespace, in this order:
  1. `prepare`: set the propagation of `/`, bind the rootfs onto itself,
     mount every `mounts[]` entry under it, create devices and /dev symlinks;
  2. `pivot`: pivot_root(2) into it and detach the old root (or, for a rootfs
     on ramfs where pivot_root cannot work, MS_MOVE plus chroot);
  3. `finalize`: maskedPaths, readonlyPaths, `root.readonly`.
Every destination is resolved with `secure_join`, never by plain string joins.
"""

from __future__ import annotations

import os
import stat

from corral.errors import InvalidArgument, SystemFailure
from corral.linux import mounts as mnt
from corral.linux import syscalls as sc

DEFAULT_DEVICES = (
    # path, type, major, minor, mode
    ("/dev/null", "c", 1, 3, 0o666),
    ("/dev/zero", "c", 1, 5, 0o666),
    ("/dev/full", "c", 1, 7, 0o666),
    ("/dev/random", "c", 1, 8, 0o666),
    ("/dev/urandom", "c", 1, 9, 0o666),
    ("/dev/tty", "c", 5, 0, 0o666),
)
DEFAULT_SYMLINKS = (
    ("/proc/self/fd", "/dev/fd"),
    ("/proc/self/fd/0", "/dev/stdin"),
    ("/proc/self/fd/1", "/dev/stdout"),
    ("/proc/self/fd/2", "/dev/stderr"),
)


class MountFailure(SystemFailure):
    pass


def prepare(config: dict, rootfs: str, *, in_user_namespace: bool, new_cgroup_ns: bool,
            cgroup_paths: dict[str, str], cgroup_hierarchies: list | None = None) -> None:
    """`cgroup_hierarchies`: the host's (corral.linux.cgroups.Hierarchy), if the caller
    has them; else a cgroup mount reads /proc/self/mountinfo."""
    linux = config.get("linux") or {}
    propagation = linux.get("rootfsPropagation")
    flag = (mnt.propagation_flag(propagation, "linux.rootfsPropagation") if propagation
            else sc.MS_SLAVE | sc.MS_REC)
    sc.mount(None, "/", None, flag)
    if flag not in (sc.MS_SLAVE | sc.MS_REC, sc.MS_PRIVATE | sc.MS_REC):
        # (after a recursive slave or private, no mount is shared: no mountinfo to read)
        _make_parent_private(rootfs)
    sc.mount(rootfs, rootfs, None, sc.MS_BIND | sc.MS_REC)

    dev_is_bound = False
    for index, entry in enumerate(config.get("mounts") or []):
        _mount_entry(rootfs, entry, index, in_user_namespace=in_user_namespace,
                     new_cgroup_ns=new_cgroup_ns, cgroup_paths=cgroup_paths,
                     cgroup_hierarchies=cgroup_hierarchies,
                     mount_label=linux.get("mountLabel"))
        if entry["destination"].rstrip("/") == "/dev" and entry.get("type") == "bind":
            dev_is_bound = True
    if not dev_is_bound:
        create_devices(rootfs, linux.get("devices") or [], bind=in_user_namespace)
        _create_symlinks(rootfs)
    _create_cwd(rootfs, (config.get("process") or {}).get("cwd") or "/")


def _create_cwd(rootfs: str, cwd: str) -> None:
    """A missing process.cwd is made (0755) before the root can turn read-only, as runc."""
    target = mnt.secure_join(rootfs, cwd)
    if not os.path.isdir(target):
        try:
            os.makedirs(target, 0o755, exist_ok=True)
        except OSError as exc:
            raise InvalidArgument(f"process.cwd: cannot create {cwd!r}: {exc.strerror}") from None


def _make_parent_private(rootfs: str) -> None:
    """pivot_root needs the new root's parent mount not to be shared."""
    path = rootfs
    mounts = _mountinfo()
    while True:
        for mount_point, optional in mounts:
            if mount_point == path:
                if "shared:" in optional:
                    sc.mount(None, path, None, sc.MS_PRIVATE)
                return
        if path == "/":
            return
        path = os.path.dirname(path)


def _mountinfo() -> list[tuple[str, str]]:
    entries = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split()
            separator = fields.index("-")
            entries.append((fields[4].replace("\\040", " "), " ".join(fields[6:separator])))
    return entries


def _mount_entry(rootfs: str, entry: dict, index: int, *, in_user_namespace: bool,
                 new_cgroup_ns: bool, cgroup_paths: dict[str, str],
                 mount_label: str | None = None, cgroup_hierarchies: list | None = None
                 ) -> None:
    field = f"mounts[{index}]"
    kind = entry.get("type") or ""
    source = entry.get("source") or kind or "none"
    options = mnt.parse_options(entry.get("options"))
    target = mnt.secure_join(rootfs, entry["destination"])
    is_bind = bool(options.flags & sc.MS_BIND) or kind == "bind"

    if kind == "cgroup" or kind == "cgroup2":
        _mount_cgroup(target, options, new_cgroup_ns, cgroup_paths, field, cgroup_hierarchies)
        return
    if is_bind:
        if not os.path.exists(source):
            raise InvalidArgument(f"{field}.source: {source!r} does not exist")
        _make_mountpoint(target, directory=os.path.isdir(source), field=field)
        _mount(source, target, None, options.flags & (sc.MS_BIND | sc.MS_REC) | sc.MS_BIND,
               None, field)
        remount_flags = options.flags & ~(sc.MS_BIND | sc.MS_REC | sc.MS_REMOUNT)
        if remount_flags:
            flags = sc.MS_BIND | sc.MS_REMOUNT | remount_flags
            if in_user_namespace:
                flags |= mnt.locked_flags(target)
            _mount(None, target, None, flags, None, field)
    else:
        _make_mountpoint(target, directory=True, field=field)
        if kind == "proc" and os.path.islink(target):
            raise InvalidArgument(f"{field}.destination: proc cannot be mounted on a symlink")
        data = ",".join(options.data) or None
        if mount_label and kind not in ("proc", "sysfs", "mqueue"):
            # linux.mountLabel as a context= option, on the mounts runc labels
            # (checked at create: only reached where SELinux is enabled)
            data = (f"{data}," if data else "") + f'context="{mount_label}"'
        try:
            _mount(source, target, kind, options.flags & ~sc.MS_REMOUNT, data, field)
        except MountFailure:
            if kind == "sysfs" and in_user_namespace:
                # sysfs needs a network namespace owned by our user namespace; like
                # runc, fall back to a read-only recursive bind of the host's /sys.
                _mount("/sys", target, None, sc.MS_BIND | sc.MS_REC, None, field)
                _mount(None, target, None, sc.MS_BIND | sc.MS_REMOUNT | sc.MS_RDONLY
                       | mnt.locked_flags(target), None, field)
            elif kind == "mqueue" and in_user_namespace:
                _mount("/dev/mqueue", target, None, sc.MS_BIND | sc.MS_REC, None, field)
            else:
                raise
    for propagation in options.propagation:
        _mount(None, target, None, propagation, None, field)
    if options.recursive_readonly:
        _recursive_readonly(target, field)


def _recursive_readonly(target: str, field: str) -> None:
    for mount_point, _ in _mountinfo():
        if mount_point == target or mount_point.startswith(target + "/"):
            _mount(None, mount_point, None, sc.MS_BIND | sc.MS_REMOUNT | sc.MS_RDONLY
                   | mnt.locked_flags(mount_point), None, field)


def _mount_cgroup(target: str, options: mnt.MountOptions, new_cgroup_ns: bool,
                  cgroup_paths: dict[str, str], field: str, known: list | None = None
                  ) -> None:
    """Give the container its cgroup tree: the real cgroupfs in a new cgroup namespace,
    otherwise bind mounts of its own cgroup directories (runc's behaviour)."""
    _make_mountpoint(target, directory=True, field=field)
    flags = options.flags & ~(sc.MS_BIND | sc.MS_REC | sc.MS_REMOUNT)
    hierarchies = _host_cgroup_hierarchies(known)
    if list(hierarchies) == ["unified"]:  # pure cgroup v2 host
        if new_cgroup_ns:
            _mount("cgroup2", target, "cgroup2", flags, None, field)
        else:
            source = cgroup_paths.get("unified", "/sys/fs/cgroup")
            _mount(source, target, None, sc.MS_BIND | sc.MS_REC, None, field)
            if flags:
                _mount(None, target, None, sc.MS_BIND | sc.MS_REMOUNT | flags, None, field)
        return
    _mount("tmpfs", target, "tmpfs", flags & ~sc.MS_RDONLY, "mode=755", field)
    for name, (fstype, data) in hierarchies.items():
        sub = os.path.join(target, name)
        os.makedirs(sub, exist_ok=True)
        if new_cgroup_ns:
            _mount("cgroup", sub, fstype, flags, data, field)
        else:
            source = cgroup_paths.get(name) or os.path.join("/sys/fs/cgroup", name)
            _mount(source, sub, None, sc.MS_BIND | sc.MS_REC, None, field)
            if flags:
                _mount(None, sub, None, sc.MS_BIND | sc.MS_REMOUNT | flags, None, field)
    for link in ("cpu", "cpuacct"):
        if "cpu,cpuacct" in hierarchies and not os.path.lexists(os.path.join(target, link)):
            os.symlink("cpu,cpuacct", os.path.join(target, link))
    if flags & sc.MS_RDONLY:
        _mount(None, target, None, sc.MS_REMOUNT | flags, "mode=755", field)


def _host_cgroup_hierarchies(known: list | None = None) -> dict[str, tuple[str, str | None]]:
    """{name under /sys/fs/cgroup: (fstype, mount data)} of the host's cgroup mounts:
    from `known` (the runtime's corral.linux.cgroups.detect()) or mountinfo."""
    found: dict[str, tuple[str, str | None]] = {}
    if known is not None:
        for hierarchy in known:
            if hierarchy.version == 2:
                found[hierarchy.name] = ("cgroup2", None)
            else:
                found[hierarchy.name] = ("cgroup", ",".join(
                    o for o in hierarchy.options.split(",") if o not in ("rw", "ro")))
        return found
    with open("/proc/self/mountinfo") as f:
        for line in f:
            fields = line.split()
            separator = fields.index("-")
            fstype, super_options = fields[separator + 1], fields[separator + 3]
            point = fields[4]
            if not point.startswith("/sys/fs/cgroup"):
                continue
            name = point[len("/sys/fs/cgroup"):].strip("/") or "unified"
            if fstype == "cgroup2":
                found[name] = ("cgroup2", None)
            elif fstype == "cgroup":
                subsystems = [o for o in super_options.split(",") if o not in ("rw", "ro")]
                found[name] = ("cgroup", ",".join(subsystems))
    return found


def _make_mountpoint(target: str, *, directory: bool, field: str) -> None:
    try:
        if directory:
            os.makedirs(target, mode=0o755, exist_ok=True)
        elif not os.path.exists(target):
            os.makedirs(os.path.dirname(target), mode=0o755, exist_ok=True)
            with open(target, "a"):
                pass
    except OSError as exc:
        raise MountFailure(f"{field}.destination: cannot create mount point {target}: "
                           f"{exc.strerror}") from None


def _mount(source: str | None, target: str, fstype: str | None, flags: int,
           data: str | None, field: str) -> None:
    try:
        sc.mount(source, target, fstype, flags, data)
    except OSError as exc:
        raise MountFailure(f"{field}: {exc.strerror}") from None


def create_devices(rootfs: str, devices: list[dict], *, bind: bool) -> None:
    """The default devices plus `linux.devices`: mknod, or bind mounts of the host's
    nodes inside a user namespace, where mknod is not allowed."""
    wanted: dict[str, tuple[str, int, int, int, int, int]] = {}
    for path, kind, major, minor, mode in DEFAULT_DEVICES:
        wanted[path] = (kind, major, minor, mode, 0, 0)
    for index, device in enumerate(devices):
        path = device["path"]
        if not path.startswith("/dev/"):
            raise InvalidArgument(f"linux.devices[{index}].path: {path!r} is not under /dev")
        wanted[path] = (device["type"], device.get("major", 0), device.get("minor", 0),
                        device.get("fileMode", 0o666), device.get("uid", 0), device.get("gid", 0))
    old_umask = os.umask(0)
    try:
        for path, (kind, major, minor, mode, uid, gid) in wanted.items():
            target = mnt.secure_join(rootfs, path)
            os.makedirs(os.path.dirname(target), mode=0o755, exist_ok=True)
            if bind:
                _make_mountpoint(target, directory=False, field=f"device {path}")
                _mount(path, target, None, sc.MS_BIND, None, f"device {path}")
                continue
            if os.path.lexists(target):
                os.unlink(target)
            node_type = {"c": stat.S_IFCHR, "u": stat.S_IFCHR, "b": stat.S_IFBLK,
                         "p": stat.S_IFIFO}[kind]
            try:
                os.mknod(target, node_type | (mode & 0o7777), os.makedev(major, minor))
            except OSError as exc:
                raise MountFailure(f"device {path}: mknod failed: {exc.strerror}") from None
            os.chown(target, uid, gid)
    finally:
        os.umask(old_umask)


def _create_symlinks(rootfs: str) -> None:
    links = list(DEFAULT_SYMLINKS)
    if os.path.exists("/proc/kcore"):
        links.append(("/proc/kcore", "/dev/core"))
    dev = mnt.secure_join(rootfs, "/dev")
    for source, link in links:
        path = os.path.join(dev, os.path.basename(link))
        if not os.path.lexists(path):
            os.symlink(source, path)
    ptmx = os.path.join(dev, "ptmx")
    if os.path.isdir(os.path.join(dev, "pts")):
        if os.path.lexists(ptmx):
            os.unlink(ptmx)
        os.symlink("pts/ptmx", ptmx)


def pivot(rootfs: str, *, no_pivot: bool = False) -> None:
    """Make `rootfs` the root. runc's trick: pivot_root(".", ".") then detach the old
    root stacked beneath, so no directory for it is needed in the image."""
    if not no_pivot:
        old_root = os.open("/", os.O_DIRECTORY | os.O_RDONLY)
        new_root = os.open(rootfs, os.O_DIRECTORY | os.O_RDONLY)
        try:
            os.fchdir(new_root)
            try:
                sc.pivot_root(".", ".")
            except OSError as exc:
                if exc.errno != 22:  # EINVAL: the rootfs is on ramfs/initramfs
                    raise MountFailure(f"root.path: pivot_root into {rootfs}: "
                                       f"{exc.strerror}") from None
                no_pivot = True
            else:
                os.fchdir(old_root)
                sc.mount(None, ".", None, sc.MS_SLAVE | sc.MS_REC)
                sc.umount(".", sc.MNT_DETACH)
        finally:
            os.close(old_root)
            os.close(new_root)
    if no_pivot:
        # The spec's fallback (runtime-linux.md): move the rootfs over / and chroot.
        os.chdir(rootfs)
        sc.mount(rootfs, "/", None, sc.MS_MOVE)
        os.chroot(".")
    os.chdir("/")


def finalize(config: dict) -> None:
    """After pivot_root: masked and read-only paths, then a read-only root."""
    linux = config.get("linux") or {}
    for path in linux.get("readonlyPaths") or []:
        _readonly_path(path)
    for path in linux.get("maskedPaths") or []:
        _mask_path(path, linux.get("mountLabel"))
    if (config.get("root") or {}).get("readonly"):
        sc.mount(None, "/", None, sc.MS_BIND | sc.MS_REMOUNT | sc.MS_RDONLY | mnt.locked_flags("/"))


def _readonly_path(path: str) -> None:
    try:
        sc.mount(path, path, None, sc.MS_BIND | sc.MS_REC)
    except FileNotFoundError:
        return
    except OSError as exc:
        if exc.errno == 2:
            return
        raise
    sc.mount(None, path, None, sc.MS_BIND | sc.MS_REMOUNT | sc.MS_RDONLY | sc.MS_REC
             | mnt.locked_flags(path))


def _mask_path(path: str, mount_label: str | None = None) -> None:
    try:
        is_dir = os.path.isdir(path) and not os.path.islink(path)
        if not os.path.lexists(path):
            return
        if is_dir:
            sc.mount("tmpfs", path, "tmpfs", sc.MS_RDONLY,
                     f'context="{mount_label}"' if mount_label else None)
        else:
            sc.mount("/dev/null", path, None, sc.MS_BIND)
    except OSError as exc:
        if exc.errno not in (2, 20):  # ENOENT, ENOTDIR: nothing to mask
            raise
