"""A container's `run`/`create` options turned into its OCI runtime spec.

`build_spec(image_config, config, rootfs=, container_id=, store=)` starts from
`corral.image.runtime_spec.spec_for` (process args/env/cwd/user from the image and
`--entrypoint`/`-e`/`--env-file`/`-w`/`-u`, podman's default mounts, namespaces,
masked and read-only paths) and applies everything else the flags mean, as podman's
`pkg/specgen/generate` does:

- capabilities: the configured defaults (podman's list) with `--cap-add/--cap-drop`
  (ALL supported); a non-root user gets only the added ones in its effective,
  permitted and ambient sets (bounding keeps the whole list), as podman;
- `--privileged`: every capability this host grants (CapBnd of this process), every
  host device, all devices allowed, no seccomp, no masked/read-only paths, /sys and
  the cgroup mount read-write;
- seccomp: containers/common's default profile (`seccomp_default`) resolved for the
  final capability set; `--security-opt seccomp=unconfined|FILE`,
  `no-new-privileges`, `apparmor=`, `mask=`/`unmask=`;
- mounts: `-v` binds (a missing source is an error, as docker) and named volumes
  (created on first use, image content copied up), anonymous volumes for `-v DST`
  and the image's VOLUMEs, `--tmpfs`, `--mount type=bind|volume|tmpfs`, /dev/shm
  (`--shm-size`), tmpfs on /run /tmp /var/tmp with `--read-only`, /etc/hosts,
  /etc/hostname and /etc/resolv.conf bind-mounted from files in the container's
  directory, `--init` (catatonit or tini from the host at /run/corral-init, made
  PID 1 before the command); a user mount replaces a default one at the same path;
  mounts are ordered parents first;
- resources: `--memory`, `--memory-swap` (default twice the memory where the host
  accounts swap; -1 unlimited), `--cpus` (quota over a 100 ms period),
  `--cpu-shares`, `--pids-limit` (default 2048; 0/-1 unlimited), `--device` (node +
  cgroup rule), `--ulimit` (over the configured defaults), `--sysctl` (over the
  configured defaults; only namespaced ones, as runc allows);
- namespaces: `--ipc/--uts/--pid` host (dropped; --ipc host binds the host's
  /dev/shm), `container:ID` (joined at `/proc/<pid>/ns/<type>` of that running
  container), `ns:/path`; a joined UTS namespace keeps its hostname; IPC sysctls
  need a private IPC namespace;
- cgroup: `--cgroup-parent` → `linux.cgroupsPath = <parent>/corral-<id>`,
  `--cgroup-conf` → `resources.unified`, `--cpu-period/--cpu-quota`,
  `--cpuset-mems`;
- process: `--group-add` (gids or the image's group names), `--oom-score-adj`;
  `masked_paths`/`readonly_paths` (a list replaces the defaults); bind mounts keep
  `rro` and the mount flags given; `log_path` is checked (conmon writes it);
- annotations: `--label`s, the stop signal (`io.corral.stopSignal`), and the
  volumes used (`io.corral.volumes`).

Configuration defaults come from `corral.engine.config_file` (containers.conf-like);
host facts (capabilities, swap accounting, architecture) from `HostInfo`, which tests
replace to get stable golden specs. The result is validated (JSON schema + semantics).
"""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Sequence
from pathlib import Path

from corral.engine import options as opt
from corral.errors import InvalidArgument, NotFound
from corral.records_light import dataclass, field

TYPE_CHECKING = False  # typing costs ~3 ms to import: annotations only
if TYPE_CHECKING:
    from typing import Any

INIT_DESTINATION = "/run/corral-init"
INIT_CANDIDATES = ("/usr/libexec/podman/catatonit", "/usr/bin/catatonit",
                   "/usr/bin/tini-static", "/usr/bin/tini", "/sbin/tini")
ANNOTATION_VOLUMES = "io.corral.volumes"
ANNOTATION_STOP_SIGNAL = "io.corral.stopSignal"
ANNOTATION_INIT = "io.corral.init"
CPU_PERIOD = 100_000
#: /dev/shm size when neither --shm-size nor the config says (podman: 64 MiB)
DEFAULT_SHM = 64 << 20
#: devices the runtime always creates: skipped when --privileged lists the host's
_RUNTIME_DEVICES = {"/dev/null", "/dev/zero", "/dev/full", "/dev/random", "/dev/urandom",
                    "/dev/tty", "/dev/console", "/dev/ptmx"}
#: sysctls a container may set (runc's namespaced list), and the namespace each needs
_IPC_SYSCTLS = {"kernel.msgmax", "kernel.msgmnb", "kernel.msgmni", "kernel.sem",
                "kernel.shmall", "kernel.shmmax", "kernel.shmmni", "kernel.shm_rmid_forced"}


class BindSourceNotFound(NotFound):
    """A -v/--mount bind source does not exist on the host."""


@dataclass(frozen=True)
class HostInfo:
    """What the spec depends on about this host; `HostInfo.detect()` reads it."""
    capabilities: tuple[str, ...]
    swap_limit: bool = True
    machine: str = "x86_64"
    kernel: str = "6.1.0"
    nofile_hard: int = 1048576
    resolv_conf: str = ""
    hosts: str = ""
    devices: tuple[dict, ...] = field(default=(), compare=False)

    @classmethod
    def detect(cls) -> HostInfo:
        import resource

        from corral.linux.capabilities import NAMES

        bounding = 0
        try:
            with open("/proc/self/status") as f:
                for line in f:
                    if line.startswith("CapBnd:"):
                        bounding = int(line.split()[1], 16)
        except OSError:
            pass
        caps = tuple(name for number, name in enumerate(NAMES) if bounding >> number & 1)
        hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
        nofile = 1048576 if hard == resource.RLIM_INFINITY else min(1048576, hard)
        return cls(capabilities=caps, swap_limit=_swap_accounting(),
                   machine=os.uname().machine, kernel=os.uname().release, nofile_hard=nofile,
                   resolv_conf=_read("/etc/resolv.conf"), hosts=_read("/etc/hosts"))


def _read(path: str) -> str:
    try:
        with open(path, errors="replace") as f:
            return f.read(1 << 20)
    except OSError:
        return ""


def _swap_accounting() -> bool:
    if os.path.exists("/sys/fs/cgroup/cgroup.controllers"):
        # cgroup v2: memory.swap.max exists in non-root cgroups when swap is accounted
        try:
            for entry in os.scandir("/sys/fs/cgroup"):
                if entry.is_dir() and os.path.exists(os.path.join(entry.path,
                                                                  "memory.swap.max")):
                    return True
        except OSError:
            return False
        return False
    return os.path.exists("/sys/fs/cgroup/memory/memory.memsw.limit_in_bytes")


# -- reading ContainerConfig (or a dict) ---------------------------------------------------


def _get(config: Any, name: str, default: Any = None) -> Any:
    """A field of the ContainerConfig, else its `extra`, else `default` (dicts work too).
    An unset (None) or empty list/dict field falls back to `extra`."""
    if isinstance(config, dict):
        value = config.get(name, None)
        extra = config.get("extra") or {}
    else:
        value = getattr(config, name, None)
        extra = getattr(config, "extra", None) or {}
    if value is None or (isinstance(value, (list, dict)) and not value and name in extra):
        value = extra.get(name, value)
    return default if value is None else value


def _list(config: Any, name: str) -> list:
    value = _get(config, name, [])
    if isinstance(value, (str, bytes)):
        return [value]
    return list(value)


# -- the builder -----------------------------------------------------------------------------


def build_spec(image_config: Any, config: Any, *, rootfs: Path | str,
               container_id: str, store: Any = None, container_dir: Path | str | None = None,
               volumes: Any = None, defaults: Any = None, host: HostInfo | None = None,
               validate: bool = True) -> dict:
    """The OCI runtime spec (root.path "merged") for a container of `image_config` with
    the options in `config` (a ContainerConfig or a dict of the same keys).

    `rootfs`: the container's mounted RW layer (users, groups, volume copy-up).
    `store`: gives the container directory and the volume store unless `container_dir`
    / `volumes` are given. `defaults`: an `EngineConfig` (default: the config files).
    """
    from corral.image.runtime_spec import spec_for

    rootfs = Path(rootfs)
    host = host or HostInfo.detect()
    if defaults is None:
        from corral.engine.config_file import load

        defaults = load()
    if container_dir is None:
        if store is None:
            raise InvalidArgument("build_spec: need a store or a container_dir")
        container_dir = store.container_dir(container_id)
    container_dir = Path(container_dir)
    if volumes is None and store is not None:
        from corral.engine.volumes import VolumeStore

        volumes = VolumeStore.for_store(store)

    privileged = bool(_get(config, "privileged", False))
    security = opt.parse_security_opts(_list(config, "security_opt"))
    network = _get(config, "network", None) or defaults.netns or "private"
    hostname = _get(config, "hostname", None) or container_id[:12]
    name = _get(config, "name", None)

    # -- process: args, env, cwd, user (image_spec) --------------------------------------
    env = []
    for path in _list(config, "env_file"):
        env.extend(opt.read_env_file(path))
    env.extend(_list(config, "env"))
    entrypoint = _get(config, "entrypoint", None)
    if isinstance(entrypoint, str):
        entrypoint = [entrypoint] if entrypoint else []
    command = _get(config, "command", None)
    spec = spec_for(image_config, rootfs, command=list(command) if command else None,
                    entrypoint=entrypoint, env=env, workdir=_get(config, "workdir", None),
                    user=_get(config, "user", None), terminal=bool(_get(config, "tty", False)),
                    hostname=hostname, root_path="merged",
                    readonly=bool(_get(config, "read_only", False)),
                    network="host" if network == "host" else "private")
    process = spec["process"]
    linux = spec["linux"]
    namespaces = _apply_namespaces(spec, config, store)
    cgroup_parent = _get(config, "cgroup_parent", None)
    if cgroup_parent:
        linux["cgroupsPath"] = f"{opt.parse_cgroup_parent(cgroup_parent)}/corral-{container_id}"
    _check_log_path(_get(config, "log_path", None))
    group_add = _list(config, "group_add")
    if group_add:
        gids = list(process["user"].get("additionalGids") or [])
        process["user"]["additionalGids"] = list(dict.fromkeys(
            gids + _group_ids(group_add, rootfs)))
    oom = _get(config, "oom_score_adj", None)
    if oom is not None and oom != "":
        process["oomScoreAdj"] = opt.parse_oom_score_adj(oom)
    annotations: dict[str, str] = dict(spec.get("annotations") or {})
    annotations.update({str(k): str(v) for k, v in
                        (_get(config, "annotations", {}) or {}).items()})

    # -- capabilities --------------------------------------------------------------------
    all_caps = list(host.capabilities)
    base = all_caps if privileged else list(defaults.default_capabilities)
    caps = opt.merge_capabilities(base, _list(config, "cap_add"), _list(config, "cap_drop"),
                                  all_caps)
    process["capabilities"] = _capability_sets(caps, process["user"], config)

    # -- security options ----------------------------------------------------------------
    process["noNewPrivileges"] = security.no_new_privileges
    if security.apparmor and security.apparmor != "unconfined" and not privileged:
        process["apparmorProfile"] = security.apparmor
    seccomp_choice = security.seccomp or defaults.seccomp_profile or None
    if not privileged and seccomp_choice != "unconfined":
        from corral.engine import seccomp_default as sd

        profile = sd.load(seccomp_choice) if seccomp_choice else sd.default_source()
        linux["seccomp"] = sd.to_oci(profile, caps, machine=host.machine, kernel=host.kernel)
    given_masked = _get(config, "masked_paths", None)
    given_readonly = _get(config, "readonly_paths", None)
    masked = list(linux.get("maskedPaths") or []) if given_masked is None else \
        opt.check_paths(given_masked, "masked_paths")
    readonly_paths = list(linux.get("readonlyPaths") or []) if given_readonly is None \
        else opt.check_paths(given_readonly, "readonly_paths")
    if privileged:
        masked, readonly_paths = [], []
    if "ALL" in security.unmask:
        masked, readonly_paths = [], []
    else:
        masked = [p for p in masked if p not in security.unmask]
        readonly_paths = [p for p in readonly_paths if p not in security.unmask]
    masked += [p for p in security.mask if p not in masked]
    linux["maskedPaths"] = masked
    linux["readonlyPaths"] = readonly_paths

    # -- resources -------------------------------------------------------------------------
    resources = linux.setdefault("resources", {})
    _apply_resources(resources, config, defaults, host)

    # -- devices -----------------------------------------------------------------------------
    devices: list[dict] = []
    if privileged:
        devices.extend(_host_devices(host))
        resources["devices"] = [{"allow": True, "access": "rwm"}]
    for text in _list(config, "devices"):
        device = opt.parse_device(text) if isinstance(text, str) else text
        for entry in _device_entries(device):
            devices.append(entry)
            if not privileged:
                resources["devices"].append({"allow": True, "type": entry["type"],
                                             "major": entry["major"], "minor": entry["minor"],
                                             "access": device.permissions})
    if devices:
        seen: dict[str, dict] = {}
        for entry in devices:
            seen[entry["path"]] = entry
        linux["devices"] = list(seen.values())

    # -- rlimits -----------------------------------------------------------------------------
    rlimits: dict[str, tuple[int, int]] = {"RLIMIT_NOFILE": (host.nofile_hard,
                                                             host.nofile_hard)}
    for text in list(defaults.default_ulimits) + _list(config, "ulimits"):
        kind, soft, hard = opt.parse_ulimit(text)
        rlimits[kind] = (soft, hard)
    process["rlimits"] = [{"type": k, "soft": s, "hard": h} for k, (s, h) in rlimits.items()]

    # -- sysctls -----------------------------------------------------------------------------
    sysctls: dict[str, str] = {}
    for text in defaults.default_sysctls:
        key, _, value = text.partition("=")
        if network == "host" and key.startswith("net."):
            continue  # podman: the defaults never touch the host's network namespace
        sysctls[key.strip()] = value.strip()
    for key, value in opt.parse_sysctls(_list(config, "sysctls")).items():
        _check_sysctl(key, network, namespaces)
        sysctls[key] = value
    if sysctls:
        linux["sysctl"] = sysctls

    # -- mounts --------------------------------------------------------------------------------
    mounts: list[dict] = list(spec["mounts"])
    if privileged:
        for m in mounts:
            if m["destination"] in ("/sys", "/sys/fs/cgroup"):
                m["options"] = [o for o in m["options"] if o != "ro"] + ["rw"]
    shm = _get(config, "shm_size", None)
    shm_size = opt.parse_size(shm, "--shm-size") if shm is not None else defaults.shm_size
    for m in mounts:
        if m["destination"] == "/dev/shm":
            m["options"] = [o for o in m["options"] if not o.startswith("size=")] + \
                [f"size={shm_size}"]
            if namespaces["ipc"].kind == "host":  # podman: the host's IPC, its /dev/shm
                m.update({"type": "bind", "source": "/dev/shm",
                          "options": ["rbind", "nosuid", "noexec", "nodev", "rw"]})
    init_path = _find_init(_get(config, "init_path", None) or defaults.init_path) \
        if _get(config, "init", False) else None
    user_mounts, used_volumes = _user_mounts(config, image_config, rootfs, container_id,
                                             volumes)
    taken = {m["destination"] for m in user_mounts}
    if spec["root"]["readonly"] and defaults.read_only_tmpfs and \
            _get(config, "read_only_tmpfs", True):
        for dest in ("/run", "/tmp", "/var/tmp"):
            if dest not in taken:
                user_mounts.append({"destination": dest, "type": "tmpfs", "source": "tmpfs",
                                    "options": ["rw", "nosuid", "nodev"]})
                taken.add(dest)
    etc = write_etc_files(container_dir, hostname=hostname, name=name, network=network,
                          host=host, dns=_list(config, "dns"),
                          dns_search=_list(config, "dns_search"),
                          dns_options=_list(config, "dns_options"),
                          add_hosts=_list(config, "add_hosts"))
    if network.startswith("container:"):
        etc = {}  # the engine binds the other container's files
    for dest, source in etc.items():
        if dest not in taken:
            user_mounts.append({"destination": dest, "type": "bind", "source": str(source),
                                "options": ["bind", "rprivate"]})
    if init_path is not None:
        user_mounts.append({"destination": INIT_DESTINATION, "type": "bind",
                            "source": init_path, "options": ["bind", "ro", "rprivate"]})
        process["args"] = [INIT_DESTINATION, "--"] + process["args"]
        annotations[ANNOTATION_INIT] = init_path
    mounts = [m for m in mounts if m["destination"] not in taken] + user_mounts
    spec["mounts"] = _order_mounts(mounts)

    # -- annotations -----------------------------------------------------------------------------
    for key, value in (_get(config, "labels", {}) or {}).items():
        annotations[str(key)] = str(value)
    stop_signal = _get(config, "stop_signal", None) or image_config.stop_signal
    if stop_signal:
        opt.parse_signal(stop_signal)
        annotations[ANNOTATION_STOP_SIGNAL] = str(stop_signal)
    if used_volumes:
        annotations[ANNOTATION_VOLUMES] = ",".join(used_volumes)
    if annotations:
        spec["annotations"] = annotations
    if validate:
        from corral.image.runtime_spec import validate as check

        check(spec)
    return spec


def _capability_sets(caps: list[str], user: dict, config: Any) -> dict:
    if user.get("uid", 0) == 0:
        return {"bounding": list(caps), "effective": list(caps), "permitted": list(caps)}
    # podman: a non-root process keeps only what was explicitly added (and is bounded)
    added = [c for c in (opt.normalize_capability(a, "--cap-add")
                         for a in _list(config, "cap_add")) if c in caps]
    if "ALL" in [a.upper() for a in _list(config, "cap_add")]:
        added = list(caps)
    return {"bounding": list(caps), "effective": list(added), "permitted": list(added),
            "inheritable": list(added), "ambient": list(added)}


def _apply_resources(resources: dict, config: Any, defaults: Any, host: HostInfo) -> None:
    memory = _get(config, "memory", None)
    swap = _get(config, "memory_swap", None)
    mem: dict[str, int] = {}
    if memory is not None and memory != "":
        limit = opt.parse_size(memory, "--memory")
        if limit < 6 << 20:
            raise InvalidArgument("--memory: the minimum allowed memory limit is 6MB")
        mem["limit"] = limit
    if swap is not None and swap != "":
        if "limit" not in mem:
            raise InvalidArgument("--memory-swap: set --memory too (the swap limit is memory "
                                  "plus swap)")
        total = -1 if str(swap).strip() == "-1" else opt.parse_size(swap, "--memory-swap")
        if total != -1 and total < mem["limit"]:
            raise InvalidArgument("--memory-swap: must be at least --memory (it is memory "
                                  "plus swap)")
        if host.swap_limit:
            mem["swap"] = total
    elif "limit" in mem and host.swap_limit:
        mem["swap"] = 2 * mem["limit"]
    reservation = _get(config, "memory_reservation", None)
    if reservation:
        mem["reservation"] = opt.parse_size(reservation, "--memory-reservation")
    if mem:
        resources["memory"] = mem
    cpu: dict[str, Any] = {}
    cpus = _get(config, "cpus", None)
    quota = _get(config, "cpu_quota", None)
    period = _get(config, "cpu_period", None)
    if cpus not in (None, "", 0):
        if quota not in (None, "", 0) or period not in (None, "", 0):
            raise InvalidArgument("--cpus conflicts with --cpu-period and --cpu-quota (it "
                                  "sets both)")
        value = opt.parse_cpus(cpus)
        cpu["quota"] = int(value * CPU_PERIOD)
        cpu["period"] = CPU_PERIOD
    if period not in (None, "", 0):
        cpu["period"] = opt.parse_int(period, "--cpu-period", 1000, 1_000_000)
    if quota not in (None, "", 0):
        cpu["quota"] = opt.parse_int(quota, "--cpu-quota", -1)
        if cpu["quota"] != -1 and cpu["quota"] < 1000:
            raise InvalidArgument("--cpu-quota: must be -1 (unlimited) or at least 1000 "
                                  "(microseconds)")
        cpu.setdefault("period", CPU_PERIOD)
    shares = _get(config, "cpu_shares", None)
    if shares not in (None, "", 0):
        try:
            cpu["shares"] = int(shares)
        except (TypeError, ValueError):
            raise InvalidArgument(f"--cpu-shares: {shares!r} is not a number") from None
        if not 2 <= cpu["shares"] <= 262144:
            raise InvalidArgument("--cpu-shares: must be between 2 and 262144")
    for name, key, flag in (("cpuset_cpus", "cpus", "--cpuset-cpus"),
                            ("cpuset_mems", "mems", "--cpuset-mems")):
        cpuset = _get(config, name, None)
        if cpuset:
            if not re.fullmatch(r"\d+(-\d+)?(,\d+(-\d+)?)*", str(cpuset).strip()):
                raise InvalidArgument(f"{flag} {cpuset!r}: expected a list like 0-3,5")
            cpu[key] = str(cpuset).strip()
    if cpu:
        resources["cpu"] = cpu
    unified = opt.parse_cgroup_conf(_list(config, "cgroup_conf"))
    if unified:
        resources["unified"] = unified
    pids = _get(config, "pids_limit", None)
    if pids is None or pids == "":
        pids = defaults.pids_limit
    try:
        pids = int(pids)
    except (TypeError, ValueError):
        raise InvalidArgument(f"--pids-limit: {pids!r} is not a number") from None
    if pids > 0:
        resources["pids"] = {"limit": pids}
    elif pids < -1:
        raise InvalidArgument("--pids-limit: use a positive number, or 0 / -1 for unlimited")


def _check_sysctl(key: str, network: str, namespaces: dict[str, opt.NamespaceMode]
                  ) -> None:
    if key in _IPC_SYSCTLS or key.startswith("fs.mqueue."):
        if namespaces["ipc"].kind != "private":
            raise InvalidArgument(f"--sysctl {key}: only with a private IPC namespace "
                                  "(not with --ipc host, container: or ns:)")
        return
    if key.startswith("net."):
        if network == "host":
            raise InvalidArgument(f"--sysctl {key}: not allowed with the host's network")
        return
    if key in ("kernel.hostname", "kernel.domainname"):
        raise InvalidArgument(f"--sysctl {key}: use --hostname instead")
    raise InvalidArgument(f"--sysctl {key}: not a namespaced sysctl (only net.*, "
                          "fs.mqueue.* and the IPC kernel.* ones can be set per container)")


_NAMESPACE_FLAGS = (("ipc", "--ipc", "ipc"), ("uts", "--uts", "uts"),
                    ("pid", "--pid", "pid"))


def _apply_namespaces(spec: dict, config: Any, store: Any) -> dict[str, opt.NamespaceMode]:
    """--ipc/--uts/--pid: the namespace dropped (host), kept (private) or joined by path
    (`/proc/<pid>/ns/<type>` of a running container, or a namespace file). A UTS
    namespace that is not the container's own keeps its hostname: the spec sets none."""
    modes: dict[str, opt.NamespaceMode] = {}
    namespaces = spec["linux"]["namespaces"]
    for field_name, flag, kind in _NAMESPACE_FLAGS:
        mode = opt.parse_namespace(_get(config, field_name, None), flag)
        modes[field_name] = mode
        if mode.kind == "private":
            continue
        if mode.kind == "host":
            namespaces[:] = [n for n in namespaces if n.get("type") != kind]
        else:
            path = mode.target if mode.kind == "path" else \
                container_namespace(store, mode.target, kind, flag)
            if mode.kind == "path" and not os.path.exists(path):
                raise NotFound(f"{flag} ns:{path}: no such namespace file")
            for n in namespaces:
                if n.get("type") == kind:
                    n["path"] = path
        if kind == "uts":
            spec.pop("hostname", None)
    return modes


def container_namespace(store: Any, ref: str, kind: str, flag: str) -> str:
    """`/proc/<pid>/ns/<kind>` of the running container `ref` (name, id or prefix)."""
    if store is None:
        raise InvalidArgument(f"{flag} container:{ref}: needs the store")
    from corral.engine.engine import Engine
    from corral.errors import FailedPrecondition

    try:
        target = Engine(store.root, store=store).get(ref)
    except NotFound:
        raise NotFound(f"{flag} container:{ref}: no such container") from None
    if target.status != "running" or not target.state.pid:
        raise FailedPrecondition(f"{flag} container:{ref}: container {target.name} is "
                                 f"{target.status}, not running")
    return f"/proc/{target.state.pid}/ns/{kind}"


def _group_ids(groups: list[str], rootfs: Path) -> list[int]:
    """--group-add: gids, or group names looked up in the image's /etc/group."""
    from corral.image.runtime_spec import _entries, _read_in_root

    table = None
    out = []
    for group in groups:
        text = str(group).strip()
        if text.isdigit():
            if int(text) >= 2**32 - 1:
                raise InvalidArgument(f"--group-add {text}: not a valid gid")
            out.append(int(text))
            continue
        if not text or text == "keep-groups":
            raise InvalidArgument(f"--group-add {text!r}: expected a group name or gid")
        if table is None:
            table = _entries(_read_in_root(rootfs, "/etc/group"), 4)
        gid = next((e[2] for e in table if e[0] == text), None)
        if gid is None or not gid.isdigit():
            raise NotFound(f"--group-add {text}: no such group in the image's /etc/group")
        out.append(int(gid))
    return out


def _check_log_path(path: Any) -> None:
    if path is None or path == "":
        return
    if not isinstance(path, str) or not os.path.isabs(path):
        raise InvalidArgument(f"log_path {path!r}: must be an absolute path")
    if os.path.isdir(path):
        raise InvalidArgument(f"log_path {path}: is a directory")
    if not os.path.isdir(os.path.dirname(path)):
        raise NotFound(f"log_path {path}: the directory {os.path.dirname(path)} does "
                       "not exist")


def _device_entries(device: opt.DeviceSpec) -> list[dict]:
    """linux.devices entries for a --device (a directory: every device under it)."""
    try:
        st = os.stat(device.host)
    except FileNotFoundError:
        raise NotFound(f"--device {device.host}: no such file or directory") from None
    if stat.S_ISDIR(st.st_mode):
        out = []
        for dirpath, _dirs, files in os.walk(device.host):
            for fname in sorted(files):
                path = os.path.join(dirpath, fname)
                rel = os.path.relpath(path, device.host)
                try:
                    out.extend(_device_entries(opt.DeviceSpec(
                        path, os.path.join(device.container, rel), device.permissions)))
                except InvalidArgument:
                    continue
        return out
    if stat.S_ISCHR(st.st_mode):
        kind = "c"
    elif stat.S_ISBLK(st.st_mode):
        kind = "b"
    else:
        raise InvalidArgument(f"--device {device.host}: not a character or block device")
    return [{"path": device.container, "type": kind, "major": os.major(st.st_rdev),
             "minor": os.minor(st.st_rdev), "fileMode": stat.S_IMODE(st.st_mode),
             "uid": st.st_uid, "gid": st.st_gid}]


def _host_devices(host: HostInfo) -> list[dict]:
    if host.devices:
        return [dict(d) for d in host.devices]
    out = []
    for dirpath, dirs, files in os.walk("/dev"):
        dirs[:] = [d for d in dirs if os.path.join(dirpath, d) not in
                   ("/dev/pts", "/dev/shm", "/dev/mqueue", "/dev/.lxc", "/dev/hugepages")]
        for fname in sorted(files):
            path = os.path.join(dirpath, fname)
            if path in _RUNTIME_DEVICES:
                continue
            try:
                st = os.lstat(path)
            except OSError:
                continue
            if not (stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode)):
                continue
            out.append({"path": path, "type": "c" if stat.S_ISCHR(st.st_mode) else "b",
                        "major": os.major(st.st_rdev), "minor": os.minor(st.st_rdev),
                        "fileMode": stat.S_IMODE(st.st_mode), "uid": st.st_uid,
                        "gid": st.st_gid})
    return out


def _find_init(configured: str | None) -> str:
    candidates = [configured] if configured else list(INIT_CANDIDATES)
    for path in candidates:
        if path and os.path.isfile(path) and os.access(path, os.X_OK):
            return path
    if configured:
        raise NotFound(f"--init: the init binary {configured} does not exist "
                       "(containers.init_path in the config file)")
    raise NotFound("--init: no init binary found (install Debian's catatonit or tini, or "
                   "set containers.init_path)")


def _mount_specs(config: Any) -> list[opt.MountSpec]:
    specs: list[opt.MountSpec] = []
    for text in _list(config, "volumes"):
        specs.append(opt.parse_volume(text) if isinstance(text, str) else text)
    for text in _list(config, "mounts"):
        specs.append(opt.parse_mount(text) if isinstance(text, str) else text)
    for text in _list(config, "tmpfs"):
        specs.append(opt.parse_tmpfs(text) if isinstance(text, str) else text)
    seen: dict[str, str] = {}
    for m in specs:
        if m.destination in seen:
            raise InvalidArgument(f"{m.origin}: duplicate mount destination {m.destination} "
                                  f"(also from {seen[m.destination]})")
        seen[m.destination] = m.origin
    return specs


def _user_mounts(config: Any, image_config: Any, rootfs: Path, container_id: str,
                 volumes: Any) -> tuple[list[dict], list[str]]:
    from corral.linux.mounts import secure_join

    out: list[dict] = []
    used: list[str] = []
    specs = _mount_specs(config)
    taken = {m.destination for m in specs}
    # the image's VOLUMEs not covered by a user mount: anonymous volumes (docker, podman)
    for dest in sorted(getattr(image_config, "volumes", None) or []):
        norm = os.path.normpath(dest) if dest.startswith("/") else None
        if norm and norm != "/" and norm not in taken:
            specs.append(opt.MountSpec("volume", norm, None, origin="image VOLUME"))
            taken.add(norm)
    for m in specs:  # every check before any volume is made: a failure leaves none behind
        if m.type == "bind" and not os.path.exists(m.source or ""):
            raise BindSourceNotFound(f"{m.origin}: bind source path does not exist: "
                                     f"{m.source}")
        if m.type == "volume" and volumes is None:
            raise InvalidArgument(f"{m.origin}: named volumes need the store")
    for m in specs:
        if m.type == "bind":
            assert m.source is not None
            options = ["bind" if "bind" in m.options else "rbind"]
            options.append("ro" if m.readonly else "rw")
            rest = [o for o in m.options if o not in ("bind", "rbind")]
            if not any(o in rest for o in ("shared", "rshared", "slave", "rslave", "private",
                                           "rprivate", "unbindable", "runbindable")):
                rest.append("rprivate")
            out.append({"destination": m.destination, "type": "bind", "source": m.source,
                        "options": options + rest})
        elif m.type == "volume":
            copy_from = Path(secure_join(str(rootfs), m.destination))
            volume = volumes.acquire(m.source, container_id, copy_from=copy_from,
                                     nocopy=m.nocopy)
            used.append(volume.name)
            options = ["rbind", "ro" if m.readonly else "rw", "nosuid", "nodev"]
            rest = list(m.options)
            if not any(o in rest for o in ("shared", "rshared", "slave", "rslave", "private",
                                           "rprivate")):
                rest.append("rprivate")
            out.append({"destination": m.destination, "type": "bind",
                        "source": volume.mountpoint,
                        "options": options + [o for o in rest if o not in options]})
        else:
            flags = list(m.options)
            defaults = []
            for flag, opposite in (("noexec", "exec"), ("nosuid", "suid"), ("nodev", "dev")):
                if flag not in flags and opposite not in flags:
                    defaults.append(flag)
            out.append({"destination": m.destination, "type": "tmpfs", "source": "tmpfs",
                        "options": ["ro" if m.readonly else "rw"] + defaults + flags})
    return out, used


def _order_mounts(mounts: Sequence[dict]) -> list[dict]:
    """Parents before children (stable): /data before /data/sub, whatever the flags' order."""
    def depth(m: dict) -> int:
        return len([p for p in m["destination"].split("/") if p])

    first = [m for m in mounts if m["destination"] in ("/proc", "/dev")]
    rest = [m for m in mounts if m not in first]
    return first + sorted(rest, key=depth)


def write_etc_files(container_dir: Path, *, hostname: str, name: str | None, network: str,
                    host: HostInfo, dns: list[str] | tuple[str, ...] = (),
                    dns_search: list[str] | tuple[str, ...] = (),
                    dns_options: list[str] | tuple[str, ...] = (),
                    add_hosts: list[str] | tuple[str, ...] = ()) -> dict[str, Path]:
    """`hosts`, `hostname`, `resolv.conf` in the container's directory (written atomically);
    returns {container path: host file}. `--dns*` replace the host's resolver settings;
    `--add-host NAME:IP` lines are appended to hosts. A CNI network rewrites `hosts` with
    the container's addresses when it starts (`corral.engine.networking`)."""
    container_dir.mkdir(parents=True, exist_ok=True)
    names = " ".join(dict.fromkeys(n for n in (hostname, name) if n))
    if network == "host":
        hosts = host.hosts or "127.0.0.1\tlocalhost\n::1\tlocalhost\n"
        if not hosts.endswith("\n"):
            hosts += "\n"
        hosts += f"127.0.1.1\t{names}\n"
    else:
        from corral.network.hosts import LOCALHOST

        hosts = LOCALHOST + f"127.0.1.1\t{names}\n"
    hosts += "".join(f"{ip}\t{hname}\n" for hname, ip in parse_add_hosts(add_hosts))
    resolv_lines = resolv_conf_lines(host.resolv_conf, network=network, dns=dns,
                                     dns_search=dns_search, dns_options=dns_options)
    files = {"/etc/hosts": ("hosts", hosts), "/etc/hostname": ("hostname", hostname + "\n"),
             "/etc/resolv.conf": ("resolv.conf", "\n".join(resolv_lines) + "\n")}
    out = {}
    for dest, (fname, text) in files.items():
        path = container_dir / fname
        tmp = container_dir / f".{fname}.tmp"
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o644)
        try:
            os.fchmod(fd, 0o644)  # whatever the umask
            os.write(fd, text.encode())
        finally:
            os.close(fd)
        os.replace(tmp, path)
        out[dest] = path
    return out


def parse_add_hosts(values: list[str] | tuple[str, ...]) -> list[tuple[str, str]]:
    """`--add-host NAME:IP` (IPv6 as `NAME:[::1]` or `NAME:::1`) → (name, ip) pairs."""
    import ipaddress

    out = []
    for text in values:
        name, sep, ip = text.partition(":")
        ip = ip.strip("[]")
        if not sep or not name or not ip:
            raise InvalidArgument(f"--add-host {text!r}: expected NAME:IP")
        try:
            ipaddress.ip_address(ip)
        except ValueError:
            raise InvalidArgument(f"--add-host {text!r}: {ip!r} is not an IP address") \
                from None
        out.append((name, ip))
    return out


def resolv_conf_lines(host_resolv: str, *, network: str, dns: list[str] | tuple[str, ...] = (),
                      dns_search: list[str] | tuple[str, ...] = (),
                      dns_options: list[str] | tuple[str, ...] = ()) -> list[str]:
    """The container's resolv.conf: the host's, minus loopback resolvers outside the host
    network, with `--dns`, `--dns-search`, `--dns-option` replacing their kind of line."""
    import ipaddress

    for server in dns:
        try:
            ipaddress.ip_address(server)
        except ValueError:
            raise InvalidArgument(f"--dns {server!r} is not an IP address") from None
    lines = []
    for line in host_resolv.splitlines():
        parts = line.split()
        kind = parts[0] if parts else ""
        if kind == "nameserver" and (dns or (
                network != "host" and len(parts) >= 2 and
                (parts[1].startswith("127.") or parts[1] == "::1"))):
            continue  # replaced, or the host's loopback resolver (unreachable from a netns)
        if kind in ("search", "domain") and dns_search:
            continue
        if kind == "options" and dns_options:
            continue
        lines.append(line)
    if dns_search and dns_search != ["."]:
        lines.append("search " + " ".join(dns_search))
    lines.extend(f"nameserver {server}" for server in dns)
    if dns_options:
        lines.append("options " + " ".join(dns_options))
    return lines


__all__ = [
    "ANNOTATION_INIT",
    "ANNOTATION_STOP_SIGNAL",
    "ANNOTATION_VOLUMES",
    "INIT_DESTINATION",
    "BindSourceNotFound",
    "HostInfo",
    "build_spec",
    "write_etc_files",
]
