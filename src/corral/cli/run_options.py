"""The `run`/`create` flags that shape the runtime spec (docker/podman names).

`cli.container` (the engine core's) registers its own flags (-e, -w, -u, --name,
--entrypoint, --hostname, --read-only, --label, --stop-signal, --rm, -d, -i, -t,
--restart, --runtime, --network, ...) and calls:

- `add_run_options(parser)`: these flags;
- `options_from_args(args) -> dict`: their values, checked now (a bad flag fails
  before anything is created) and normalized (relative bind sources and env files
  made absolute), keyed as `ContainerConfig` fields (`volumes`, `tmpfs`, `mounts`,
  `cap_add`, `cap_drop`, `security_opt`, `privileged`, `init`, `memory`, `cpus`,
  `pids_limit`, `ulimits`, `devices`, `env_file`, `memory_swap`,
  `memory_reservation`, `cpu_shares`, `cpu_period`, `cpu_quota`, `cpuset_cpus`,
  `cpuset_mems`, `sysctls`, `shm_size`, `init_path`, `cgroup_parent`, `cgroup_conf`,
  `oom_score_adj`, `group_add`, `ipc`, `uts`, `pid`). `corral.engine.spec.build_spec`
  reads them back. (`--ipc/--uts/--pid` keep argparse dests `*_mode`: `args.pid` is
  not free in every caller.)
"""

from __future__ import annotations

import argparse
import os

from corral.engine import options as opt

TYPE_CHECKING = False  # typing costs ~3 ms to import: annotations only
if TYPE_CHECKING:
    from typing import Any

#: always in the result (a [] or False replaces what the config had)
_TOP = ("volumes", "tmpfs", "mounts", "cap_add", "cap_drop", "security_opt", "privileged",
        "init", "memory", "cpus", "pids_limit", "ulimits", "devices", "env_file")


def add_run_options(parser: argparse.ArgumentParser) -> None:
    a = parser.add_argument
    a("-v", "--volume", dest="volumes", action="append", default=[], metavar="SRC:DST[:OPTS]",
      help="bind mount a host path or mount a named volume (ro, rw, z, Z, propagation)")
    a("--mount", dest="mounts", action="append", default=[],
      metavar="type=bind|volume|tmpfs,...", help="attach a mount (docker syntax)")
    a("--tmpfs", action="append", default=[], metavar="DST[:OPTS]", help="mount a tmpfs")
    a("--env-file", dest="env_file", action="append", default=[], metavar="FILE",
      help="read environment variables from a file")
    a("--cap-add", dest="cap_add", action="append", default=[], metavar="CAP")
    a("--cap-drop", dest="cap_drop", action="append", default=[], metavar="CAP")
    a("--security-opt", dest="security_opt", action="append", default=[], metavar="OPT",
      help="seccomp=unconfined|FILE, no-new-privileges, apparmor=P, mask=, unmask=")
    a("--privileged", action="store_true", help="all capabilities and devices, no seccomp")
    a("--init", action="store_true", help="run an init (catatonit/tini) as PID 1")
    a("--init-path", dest="init_path", metavar="PATH", help="the init binary for --init")
    a("-m", "--memory", metavar="BYTES", help="memory limit (e.g. 512m)")
    a("--memory-swap", dest="memory_swap", metavar="BYTES",
      help="memory plus swap limit (-1: unlimited swap)")
    a("--memory-reservation", dest="memory_reservation", metavar="BYTES")
    a("--cpus", metavar="N", help="number of CPUs (quota over a 100ms period)")
    a("-c", "--cpu-shares", dest="cpu_shares", type=int, metavar="SHARES")
    a("--cpuset-cpus", dest="cpuset_cpus", metavar="LIST")
    a("--pids-limit", dest="pids_limit", type=int, metavar="N",
      help="process limit (default 2048; 0 or -1: unlimited)")
    a("--ulimit", dest="ulimits", action="append", default=[], metavar="NAME=SOFT[:HARD]")
    a("--device", dest="devices", action="append", default=[],
      metavar="HOST[:CONTAINER][:PERMS]")
    a("--sysctl", dest="sysctls", action="append", default=[], metavar="KEY=VALUE")
    a("--shm-size", dest="shm_size", metavar="BYTES", help="size of /dev/shm (default 64m)")
    a("--cpu-period", dest="cpu_period", type=int, metavar="US",
      help="CFS period in microseconds (with --cpu-quota)")
    a("--cpu-quota", dest="cpu_quota", type=int, metavar="US",
      help="CFS quota in microseconds per period (-1: unlimited)")
    a("--cpuset-mems", dest="cpuset_mems", metavar="LIST", help="memory nodes (e.g. 0-1)")
    a("--cgroup-parent", dest="cgroup_parent", metavar="PATH",
      help="the cgroup holding the container's (absolute, or from the hierarchy root)")
    a("--cgroup-conf", dest="cgroup_conf", action="append", default=[], metavar="KEY=VALUE",
      help="a cgroup v2 file to write (e.g. memory.high=1g)")
    a("--oom-score-adj", dest="oom_score_adj", type=int, metavar="N",
      help="the OOM killer's score adjustment (-1000..1000)")
    a("--group-add", dest="group_add", action="append", default=[], metavar="GROUP",
      help="an additional group (name in the image's /etc/group, or gid)")
    for name in ("ipc", "uts", "pid"):
        a(f"--{name}", dest=f"{name}_mode", metavar="MODE",
          help=f"the {name.upper()} namespace: private, host, container:ID or ns:/path"
          + (" (shareable: private)" if name == "ipc" else ""))


def _absolute(path: str) -> str:
    return os.path.normpath(os.path.join(os.getcwd(), path))


def options_from_args(args: argparse.Namespace) -> dict[str, Any]:
    """The flags' values (validated, normalized), keyed for ContainerConfig."""
    values: dict[str, Any] = {}
    volumes = []
    for text in getattr(args, "volumes", []) or []:
        spec = opt.parse_volume(text)
        if spec.type == "bind" and spec.source is not None:
            _head, sep, rest = text.partition(":")
            text = spec.source + sep + rest
        volumes.append(text)
    values["volumes"] = volumes
    mounts = []
    for text in getattr(args, "mounts", []) or []:
        spec = opt.parse_mount(text)
        if spec.type == "bind":
            parts = []
            for item in text.split(","):
                key, eq, value = item.partition("=")
                if key.strip().lower() in ("source", "src") and eq:
                    item = f"{key}={_absolute(value)}"
                parts.append(item)
            text = ",".join(parts)
        mounts.append(text)
    values["mounts"] = mounts
    values["tmpfs"] = list(getattr(args, "tmpfs", []) or [])
    for text in values["tmpfs"]:
        opt.parse_tmpfs(text)
    values["env_file"] = [_absolute(p) for p in getattr(args, "env_file", []) or []]
    for path in values["env_file"]:
        opt.read_env_file(path)
    values["cap_add"] = [opt.normalize_capability(c, "--cap-add")
                         for c in getattr(args, "cap_add", []) or []]
    values["cap_drop"] = [opt.normalize_capability(c, "--cap-drop")
                          for c in getattr(args, "cap_drop", []) or []]
    values["security_opt"] = list(getattr(args, "security_opt", []) or [])
    security = opt.parse_security_opts(values["security_opt"])
    if security.seccomp and security.seccomp != "unconfined":
        from corral.engine.seccomp_default import load

        path = _absolute(security.seccomp)
        load(path)
        values["security_opt"] = [f"seccomp={path}" if s.startswith(("seccomp=", "seccomp:"))
                                  else s for s in values["security_opt"]]
    values["privileged"] = bool(getattr(args, "privileged", False))
    values["init"] = bool(getattr(args, "init", False))
    if getattr(args, "memory", None):
        opt.parse_size(args.memory, "--memory")
        values["memory"] = args.memory
    if getattr(args, "cpus", None):
        opt.parse_cpus(args.cpus)
        values["cpus"] = args.cpus
    if getattr(args, "pids_limit", None) is not None:
        values["pids_limit"] = args.pids_limit
    values["ulimits"] = list(getattr(args, "ulimits", []) or [])
    for text in values["ulimits"]:
        opt.parse_ulimit(text)
    values["devices"] = list(getattr(args, "devices", []) or [])
    for text in values["devices"]:
        opt.parse_device(text)
    if getattr(args, "memory_swap", None):
        if str(args.memory_swap) != "-1":
            opt.parse_size(args.memory_swap, "--memory-swap")
        values["memory_swap"] = args.memory_swap
    if getattr(args, "memory_reservation", None):
        opt.parse_size(args.memory_reservation, "--memory-reservation")
        values["memory_reservation"] = args.memory_reservation
    for name in ("cpu_shares", "cpu_period", "cpu_quota", "cpuset_cpus", "cpuset_mems"):
        if getattr(args, name, None):
            values[name] = getattr(args, name)
    sysctls = list(getattr(args, "sysctls", []) or [])
    if sysctls:
        opt.parse_sysctls(sysctls)
        values["sysctls"] = sysctls
    if getattr(args, "shm_size", None):
        opt.parse_size(args.shm_size, "--shm-size")
        values["shm_size"] = args.shm_size
    if getattr(args, "init_path", None):
        values["init_path"] = _absolute(args.init_path)
    if getattr(args, "cgroup_parent", None) is not None:
        values["cgroup_parent"] = opt.parse_cgroup_parent(args.cgroup_parent)
    values["cgroup_conf"] = list(getattr(args, "cgroup_conf", []) or [])
    opt.parse_cgroup_conf(values["cgroup_conf"])
    if getattr(args, "oom_score_adj", None) is not None:
        values["oom_score_adj"] = opt.parse_oom_score_adj(args.oom_score_adj)
    values["group_add"] = [str(g) for g in getattr(args, "group_add", []) or []]
    for name in ("ipc", "uts", "pid"):
        mode = getattr(args, f"{name}_mode", None)
        if mode is not None:
            opt.parse_namespace(mode, f"--{name}")
            values[name] = mode
    return {k: v for k, v in values.items() if v not in (None, [], False) or k in _TOP}


__all__ = ["add_run_options", "options_from_args"]
