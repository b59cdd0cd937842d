"""CRI `runtime.v1` configs → the engine's `ContainerConfig` (no gRPC, no root needed).

`sandbox_config()` turns a `PodSandboxConfig` into the infra container's config (the
pod's network: a CNI network or the node's, port mappings, DNS, hostname, the node's
PID/IPC/UTS namespaces when asked, the pod cgroup, the pod's /dev/shm, sysctls);
`container_config()` turns a `ContainerConfig` into an app container's config joining
the infra container's namespaces (`network`, `ipc`, `uts` and, when the pod shares it,
`pid` = `container:<infra id>`), under the pod cgroup (`cgroup_parent`), with its
supplemental groups, masked/readonly paths, oom_score_adj, resources, mounts (with
`rro` and mount options) and log path. Everything is an engine option: the engine
builds the OCI spec (`corral.engine.spec.build_spec`); nothing here edits a bundle.

The messages are read by attribute only, so these functions take the generated
protobuf messages or any object with the same fields.
"""

from __future__ import annotations

import os
from typing import Any

from corral.engine.config import ContainerConfig
from corral.errors import InvalidArgument

# NamespaceMode (api.proto)
POD, CONTAINER, NODE, TARGET = 0, 1, 2, 3
# SecurityProfile.ProfileType
RUNTIME_DEFAULT, UNCONFINED, LOCALHOST = 0, 1, 2
# MountPropagation
_PROPAGATION = {0: "rprivate", 1: "rslave", 2: "rshared"}
# Protocol
_PROTOCOL = {0: "tcp", 1: "udp", 2: "sctp"}
#: Mount.mount_options accepted (bind mount flags; each with its opposite)
MOUNT_OPTIONS = {"noexec": "exec", "exec": "noexec", "nosuid": "suid", "suid": "nosuid",
                 "nodev": "dev", "dev": "nodev", "noatime": "atime", "atime": "noatime",
                 "nodiratime": "diratime", "diratime": "nodiratime",
                 "relatime": "norelatime", "norelatime": "relatime",
                 "strictatime": "nostrictatime", "nostrictatime": "strictatime"}

#: labels the engine containers of pods carry (`corral ps --filter label=...`)
LABEL_KIND = "io.corral.cri.kind"          # sandbox | container
LABEL_SANDBOX = "io.corral.cri.sandbox"    # the pod sandbox id
LABEL_NAME = "io.corral.cri.name"          # the CRI metadata name


def _has(message: Any, field: str) -> bool:
    """proto3 `HasField` for message fields; plain attribute objects: not None."""
    has = getattr(message, "HasField", None)
    if has is not None:
        try:
            return bool(has(field))
        except ValueError:
            return bool(getattr(message, field, None))
    return getattr(message, field, None) is not None


def _safe(text: str) -> str:
    """A piece of an engine container name ([a-zA-Z0-9_.-])."""
    return "".join(c if c.isalnum() or c in "_.-" else "-" for c in text) or "x"


def check_sandbox_metadata(config: Any) -> None:
    """PodSandboxConfig.metadata: name, namespace and uid are required."""
    if config is None or not _has(config, "metadata"):
        raise InvalidArgument("PodSandboxConfig.metadata is required")
    md = config.metadata
    missing = [f for f in ("name", "namespace", "uid") if not getattr(md, f)]
    if missing:
        raise InvalidArgument(f"PodSandboxConfig.metadata: {', '.join(missing)} "
                              "required")


def sandbox_name(config: Any) -> str:
    """The infra container's engine name, unique per pod attempt (kubelet's k8s_POD_...)."""
    md = config.metadata
    return "_".join(["k8s", "POD", _safe(md.name), _safe(md.namespace), _safe(md.uid),
                     str(md.attempt)])


def container_name(config: Any, sandbox: Any) -> str:
    """An app container's engine name: k8s_<name>_<pod>_<namespace>_<uid>_<attempt>."""
    md, pod = config.metadata, sandbox.metadata
    return "_".join(["k8s", _safe(md.name), _safe(pod.name), _safe(pod.namespace),
                     _safe(pod.uid), str(md.attempt)])


def namespace_options(linux: Any) -> Any:
    """The NamespaceOption of a Linux(Pod|Container)Config's security context, or None."""
    if linux is None or not _has(linux, "security_context"):
        return None
    sc = linux.security_context
    return sc.namespace_options if _has(sc, "namespace_options") else None


def check_cgroup_parent(parent: str) -> str:
    """LinuxPodSandboxConfig.cgroup_parent: an absolute cgroupfs path (the containers'
    cgroups are `<parent>/corral-<id>`)."""
    if not parent.startswith("/"):
        raise InvalidArgument(f"LinuxPodSandboxConfig.cgroup_parent {parent!r}: the "
                              "cgroupfs driver needs an absolute cgroup path")
    from corral.engine.options import parse_cgroup_parent

    return parse_cgroup_parent(parent, "LinuxPodSandboxConfig.cgroup_parent")


def shm_mount(path: str) -> str:
    """The pod's /dev/shm (a tmpfs on the host) as an engine `--mount`."""
    return f"type=bind,source={path},target=/dev/shm,nosuid,nodev,noexec"


def sandbox_config(config: Any, *, image: str, network: str | None,
                   command: list[str], cgroup_parent: str | None = None,
                   shm_path: str | None = None) -> ContainerConfig:
    """RunPodSandbox: the infra container (pause) holding the pod's namespaces, in the
    pod cgroup `cgroup_parent`, with the pod's /dev/shm `shm_path` (None: the node's
    with hostIPC, else a private one)."""
    check_sandbox_metadata(config)
    linux = config.linux if _has(config, "linux") else None
    ns = namespace_options(linux)
    host_network = ns is not None and ns.network == NODE
    publish = []
    for pm in config.port_mappings:
        if pm.host_port <= 0:
            continue  # containerd: only mappings with a host port are published
        if not 0 < pm.container_port < 65536 or pm.host_port > 65535:
            raise InvalidArgument(f"PortMapping {pm.host_port}->{pm.container_port}: "
                                  "ports must be 1-65535")
        proto = _PROTOCOL.get(pm.protocol, "tcp")
        host = f"{pm.host_ip}:" if pm.host_ip else ""
        if ":" in pm.host_ip:
            host = f"[{pm.host_ip}]:"
        publish.append(f"{host}{pm.host_port}:{pm.container_port}/{proto}")
    if host_network and publish:
        publish = []  # the node's network: ports are the host's already
    dns = config.dns_config if _has(config, "dns_config") else None
    out = ContainerConfig(
        image=image, entrypoint=list(command), command=[],
        hostname=None if host_network else (config.hostname or config.metadata.name),
        network="host" if host_network else "bridge",
        networks=[network] if network and not host_network else [],
        publish=publish,
        dns=list(dns.servers) if dns else [], dns_search=list(dns.searches) if dns else [],
        dns_options=list(dns.options) if dns else [],
        labels={LABEL_KIND: "sandbox", LABEL_NAME: config.metadata.name},
        stop_timeout=0,
        # hostPID/hostIPC: the node's; the node's network: its UTS namespace too (no
        # hostname set). (No oom_score_adj -998 as kubelet's pause gets: lowering it
        # needs CAP_SYS_RESOURCE, which some hosts do not grant.)
        pid="host" if ns is not None and ns.pid == NODE else None,
        ipc="host" if ns is not None and ns.ipc == NODE else None,
        uts="host" if host_network else None,
        cgroup_parent=cgroup_parent or None,
    )
    if shm_path and out.ipc != "host":
        out.mounts.append(shm_mount(shm_path))
    if linux is not None:
        if linux.sysctls:
            out.sysctls = [f"{k}={v}" for k, v in sorted(linux.sysctls.items())]
        sc = linux.security_context if _has(linux, "security_context") else None
        if sc is not None and sc.privileged:
            out.privileged = True
    return out


def _user(sc: Any) -> str | None:
    """run_as_user / run_as_username / run_as_group → the engine's `user` (uid[:gid])."""
    has_uid = _has(sc, "run_as_user")
    if has_uid and sc.run_as_username:
        raise InvalidArgument("LinuxContainerSecurityContext: run_as_user and "
                              "run_as_username are exclusive")
    if _has(sc, "run_as_group") and not (has_uid or sc.run_as_username):
        raise InvalidArgument("LinuxContainerSecurityContext: run_as_group needs "
                              "run_as_user or run_as_username")
    if has_uid and sc.run_as_user.value < 0:
        raise InvalidArgument(f"LinuxContainerSecurityContext.run_as_user "
                              f"{sc.run_as_user.value} is negative")
    if _has(sc, "run_as_group") and sc.run_as_group.value < 0:
        raise InvalidArgument(f"LinuxContainerSecurityContext.run_as_group "
                              f"{sc.run_as_group.value} is negative")
    name = str(sc.run_as_user.value) if has_uid else (sc.run_as_username or None)
    if name is None:
        return None
    if _has(sc, "run_as_group"):
        return f"{name}:{sc.run_as_group.value}"
    return name


def _profile(profile: Any, deprecated: str, what: str) -> str | None:
    """A SecurityProfile → None (runtime default), "unconfined", or a path/name."""
    if profile is not None:
        if profile.profile_type == UNCONFINED:
            return "unconfined"
        if profile.profile_type == LOCALHOST:
            if not profile.localhost_ref:
                raise InvalidArgument(f"{what}: Localhost profile needs localhost_ref")
            return profile.localhost_ref
        if profile.profile_type != RUNTIME_DEFAULT:
            raise InvalidArgument(f"{what}: unknown profile type {profile.profile_type}")
        return None
    if deprecated in ("", "runtime/default", "docker/default"):
        return None
    if deprecated == "unconfined":
        return "unconfined"
    if deprecated.startswith("localhost/"):
        return deprecated.removeprefix("localhost/")
    raise InvalidArgument(f"{what}: unknown profile {deprecated!r}")


def apparmor_enabled() -> bool:
    try:
        with open("/sys/module/apparmor/parameters/enabled") as f:
            return f.read().strip().upper().startswith("Y")
    except OSError:
        return False


def _pid_mode(config: Any, sandbox: Any, sandbox_id: str) -> str | None:
    """The app container's PID namespace: its own (CONTAINER, the default), the pod's
    (POD: the infra's), the node's (NODE, or a hostPID pod), or another container's
    (TARGET: `target_id`)."""
    pod_ns = namespace_options(sandbox.linux if _has(sandbox, "linux") else None)
    ctr_ns = namespace_options(config.linux if _has(config, "linux") else None)
    if pod_ns is not None and pod_ns.pid == NODE:
        return "host"
    mode = ctr_ns.pid if ctr_ns is not None else (pod_ns.pid if pod_ns is not None
                                                  else CONTAINER)
    if mode == NODE:
        return "host"
    if mode == POD:
        return f"container:{sandbox_id}"
    if mode == TARGET:
        target = ctr_ns.target_id if ctr_ns is not None else ""
        if not target:
            raise InvalidArgument("NamespaceOption.pid TARGET needs target_id")
        return f"container:{target}"
    return None


def container_config(config: Any, sandbox: Any, *, sandbox_id: str, image: str,
                     log_path: str | None, cgroup_parent: str | None = None,
                     shm_path: str | None = None) -> ContainerConfig:
    """CreateContainer: the app container joining the infra container's namespaces,
    in the pod cgroup `cgroup_parent`, sharing the pod's /dev/shm `shm_path`."""
    if config is None or not _has(config, "metadata") or not config.metadata.name:
        raise InvalidArgument("ContainerConfig.metadata.name is required")
    if not _has(config, "image") or not config.image.image:
        raise InvalidArgument("ContainerConfig.image.image is required")
    env = []
    for kv in config.envs:
        if not kv.key:
            raise InvalidArgument("ContainerConfig.envs: an entry has an empty key")
        value = kv.value  # KeyValue.value is `bytes` in cri-api's api.proto
        if isinstance(value, bytes):
            value = value.decode("utf-8", "surrogateescape")
        env.append(f"{kv.key}={value}")
    pod_ns = namespace_options(sandbox.linux if _has(sandbox, "linux") else None)
    host_network = pod_ns is not None and pod_ns.network == NODE
    out = ContainerConfig(
        image=image,
        entrypoint=list(config.command) if config.command else None,
        command=list(config.args) if config.args else None,
        workdir=config.working_dir or None, env=env, tty=config.tty,
        interactive=config.stdin,
        network="host" if host_network else f"container:{sandbox_id}",
        labels={LABEL_KIND: "container", LABEL_SANDBOX: sandbox_id,
                LABEL_NAME: config.metadata.name},
        stop_timeout=0,
        # the pod's IPC and UTS namespaces (the node's with hostIPC / hostNetwork)
        ipc="host" if pod_ns is not None and pod_ns.ipc == NODE else
        f"container:{sandbox_id}",
        uts="host" if host_network else f"container:{sandbox_id}",
        pid=_pid_mode(config, sandbox, sandbox_id),
        cgroup_parent=cgroup_parent or None,
        log_path=log_path or None,
    )
    if shm_path and out.ipc != "host":  # POSIX shared memory too: the pod's /dev/shm
        out.mounts.append(shm_mount(shm_path))
    for m in config.mounts:
        if not m.container_path or not os.path.isabs(m.container_path):
            raise InvalidArgument(f"Mount.container_path {m.container_path!r} must be an "
                                  "absolute path")
        if not m.host_path or not os.path.isabs(m.host_path):
            raise InvalidArgument(f"Mount {m.container_path}: host_path {m.host_path!r} "
                                  "must be an absolute path")
        if "," in m.host_path + m.container_path or "=" in m.host_path + m.container_path:
            raise InvalidArgument(f"Mount {m.container_path}: ',' and '=' are not "
                                  "supported in paths")
        if m.recursive_read_only and not (m.readonly and m.propagation == 0):
            raise InvalidArgument(f"Mount {m.container_path}: recursive_read_only needs "
                                  "readonly and PROPAGATION_PRIVATE")
        for option in m.mount_options:
            if option not in MOUNT_OPTIONS:
                raise InvalidArgument(f"Mount {m.container_path}: mount_options {option!r} "
                                      f"is not one of {', '.join(sorted(MOUNT_OPTIONS))}")
        if not os.path.exists(m.host_path):
            # kubelet creates hostPath dirs it needs; containerd makes a missing one
            os.makedirs(m.host_path, exist_ok=True)
        opts = [f"type=bind,source={m.host_path},target={m.container_path}",
                f"bind-propagation={_PROPAGATION.get(m.propagation, 'rprivate')}"]
        if m.readonly:
            opts.append("readonly")
        if m.recursive_read_only:  # every submount read-only too (the runtime's `rro`)
            opts.append("bind-recursive=readonly")
        opts.extend(dict.fromkeys(m.mount_options))  # noexec, nosuid, ...
        out.mounts.append(",".join(opts))
    for d in config.devices:
        if not d.host_path or not d.container_path:
            raise InvalidArgument("Device: host_path and container_path are required")
        out.devices.append(f"{d.host_path}:{d.container_path}:{d.permissions or 'rwm'}")
    linux = config.linux if _has(config, "linux") else None
    if linux is not None and _has(linux, "resources"):
        _resources(out, linux.resources)
    if linux is not None and _has(linux, "security_context"):
        sc = linux.security_context
        out.user = _user(sc)
        out.privileged = sc.privileged
        if sc.privileged and not _sandbox_privileged(sandbox):
            raise InvalidArgument("LinuxContainerSecurityContext.privileged: the pod "
                                  "sandbox is not privileged")
        out.read_only = sc.readonly_rootfs
        out.group_add = [str(g) for g in dict.fromkeys(sc.supplemental_groups)]
        if not sc.privileged and (sc.masked_paths or sc.readonly_paths):
            out.masked_paths = list(sc.masked_paths)  # as given (kubelet's procMount)
            out.readonly_paths = list(sc.readonly_paths)
        if _has(sc, "capabilities"):
            out.cap_add = [_cap(c) for c in sc.capabilities.add_capabilities]
            out.cap_drop = [_cap(c) for c in sc.capabilities.drop_capabilities]
        opts = []
        if sc.no_new_privs:
            opts.append("no-new-privileges")
        seccomp = _profile(sc.seccomp if _has(sc, "seccomp") else None,
                           sc.seccomp_profile_path, "seccomp")
        if seccomp is not None:
            if seccomp != "unconfined" and not os.path.isfile(seccomp):
                raise InvalidArgument(f"seccomp: Localhost profile {seccomp!r} not found")
            opts.append(f"seccomp={seccomp}")
        apparmor = _profile(sc.apparmor if _has(sc, "apparmor") else None,
                            sc.apparmor_profile, "apparmor")
        if apparmor not in (None, "unconfined"):
            if not apparmor_enabled():
                raise InvalidArgument(f"apparmor: profile {apparmor!r} requested but "
                                      "AppArmor is not enabled on this host")
            opts.append(f"apparmor={apparmor}")
        out.security_opt = opts
    return out


def _cap(name: str) -> str:
    name = name.strip().upper()
    if not name:
        raise InvalidArgument("Capability: an empty capability name")
    return name if name == "ALL" or name.startswith("CAP_") else f"CAP_{name}"


def _sandbox_privileged(sandbox: Any) -> bool:
    linux = sandbox.linux if _has(sandbox, "linux") else None
    if linux is None or not _has(linux, "security_context"):
        return False
    return bool(linux.security_context.privileged)


def _resources(out: ContainerConfig, r: Any) -> None:
    """LinuxContainerResources → the engine's resource options."""
    if r.memory_limit_in_bytes < 0 or r.cpu_quota < -1 or r.cpu_period < 0 or \
            r.cpu_shares < 0 or r.memory_swap_limit_in_bytes < 0:
        raise InvalidArgument("LinuxContainerResources: negative limits")
    if r.memory_limit_in_bytes > 0:
        out.memory = str(r.memory_limit_in_bytes)
        if r.memory_swap_limit_in_bytes > 0:  # memory + swap, as the engine's
            out.memory_swap = str(r.memory_swap_limit_in_bytes)
    if r.cpu_quota > 0:
        out.cpu_quota = int(r.cpu_quota)
        out.cpu_period = int(r.cpu_period) or None  # unset: 100 ms
    if r.cpu_shares:
        out.cpu_shares = int(r.cpu_shares)
    out.cpuset_cpus = r.cpuset_cpus or None
    out.cpuset_mems = r.cpuset_mems or None
    if r.oom_score_adj:
        out.oom_score_adj = int(r.oom_score_adj)
    out.cgroup_conf = [f"{k}={v}" for k, v in sorted(r.unified.items())]


def oci_resources(r: Any) -> dict:
    """LinuxContainerResources → OCI `linux.resources` (only the fields that are set)."""
    if r.memory_limit_in_bytes < 0 or r.cpu_quota < -1 or r.cpu_period < 0 or \
            r.cpu_shares < 0:
        raise InvalidArgument("LinuxContainerResources: negative limits")
    out: dict = {}
    memory: dict = {}
    if r.memory_limit_in_bytes:
        memory["limit"] = int(r.memory_limit_in_bytes)
    if r.memory_swap_limit_in_bytes:
        memory["swap"] = int(r.memory_swap_limit_in_bytes)
    cpu: dict = {}
    if r.cpu_shares:
        cpu["shares"] = int(r.cpu_shares)
    if r.cpu_quota:
        cpu["quota"] = int(r.cpu_quota)
    if r.cpu_period:
        cpu["period"] = int(r.cpu_period)
    if r.cpuset_cpus:
        cpu["cpus"] = r.cpuset_cpus
    if r.cpuset_mems:
        cpu["mems"] = r.cpuset_mems
    if memory:
        out["memory"] = memory
    if cpu:
        out["cpu"] = cpu
    if r.unified:
        out["unified"] = dict(r.unified)
    return out


def pod_resources(linux: Any, *, resources: Any = None, overhead: Any = None,
                  what: str = "LinuxPodSandboxConfig") -> dict:
    """The pod cgroup's OCI `linux.resources`: the pod's resources (the sum of its
    containers') plus its overhead, as kubelet sizes a pod cgroup — a limit (memory,
    cpu quota, swap) only when the pod has one, the overhead added to it; cpu shares
    summed; cpusets, hugepages and unified files the pod's. `linux` is a
    LinuxPodSandboxConfig (or None with `resources`/`overhead` given, for
    UpdatePodSandboxResources); {} when neither is set."""
    if linux is not None:
        resources = linux.resources if _has(linux, "resources") else None
        overhead = linux.overhead if _has(linux, "overhead") else None
    for name, r in (("resources", resources), ("overhead", overhead)):
        if r is None:
            continue
        for fld in ("cpu_period", "cpu_quota", "cpu_shares", "memory_limit_in_bytes",
                    "memory_swap_limit_in_bytes"):
            value = getattr(r, fld)
            if value < 0 and not (fld == "cpu_quota" and value == -1):
                raise InvalidArgument(f"{what}.{name}.{fld}: {value} is negative")
        if r.cpu_period and not 1000 <= r.cpu_period <= 1_000_000:
            raise InvalidArgument(f"{what}.{name}.cpu_period: {r.cpu_period} is not "
                                  "within 1000-1000000 (microseconds)")
    r, o = resources, overhead
    out: dict = {}
    memory: dict = {}
    cpu: dict = {}
    if r is not None and r.memory_limit_in_bytes > 0:
        memory["limit"] = int(r.memory_limit_in_bytes) + int(
            o.memory_limit_in_bytes if o is not None else 0)
        if r.memory_swap_limit_in_bytes > 0:
            memory["swap"] = int(r.memory_swap_limit_in_bytes) + (memory["limit"] - int(
                r.memory_limit_in_bytes))
    if r is not None and r.cpu_quota > 0:
        period = int(r.cpu_period or 100_000)
        quota = int(r.cpu_quota)
        if o is not None and o.cpu_quota > 0:
            quota += int(o.cpu_quota * period // (o.cpu_period or 100_000))
        cpu["quota"], cpu["period"] = quota, period
    shares = (r.cpu_shares if r is not None else 0) + (o.cpu_shares if o is not None else 0)
    if shares > 0:
        cpu["shares"] = int(max(2, shares))
    if r is not None:
        if r.cpuset_cpus:
            cpu["cpus"] = r.cpuset_cpus
        if r.cpuset_mems:
            cpu["mems"] = r.cpuset_mems
        if r.hugepage_limits:
            out["hugepageLimits"] = [{"pageSize": h.page_size, "limit": int(h.limit)}
                                     for h in r.hugepage_limits]
        if r.unified:
            out["unified"] = dict(r.unified)
    if memory:
        out["memory"] = memory
    if cpu:
        out["cpu"] = cpu
    return out
