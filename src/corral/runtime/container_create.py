"""`create`: build the container and leave its init waiting (runtime.md#create).

The runtime process forks the bootstrap stage (see `corral.runtime.init`),
answers its requests, runs the prestart and createRuntime hooks, records the
state and exits, while the init stays blocked opening exec.fifo until `start`.
Any failure undoes everything made so far: the init is killed, the cgroup and
the state directory removed.
"""

from __future__ import annotations

import os

from corral.errors import CorralError, InvalidArgument, SystemFailure
from corral.linux.cgroups import Cgroup, check_resources
from corral.oci import fastjson, runtime_config
from corral.runtime import hooks
from corral.runtime.channel import Channel, ChannelClosed, ChildError, pair
from corral.runtime.state import Container, process_start_time, timestamp


class CreateFailed(SystemFailure):
    pass


class CreateOptions:
    __slots__ = ("bundle", "config", "console_fd", "console_socket", "no_new_keyring",
                 "no_pivot", "pid_file", "preserve_fds", "subreaper")

    def __init__(self, bundle: str, pid_file: str | None = None,
                 console_socket: str | None = None, no_pivot: bool = False,
                 preserve_fds: int = 0, subreaper: bool = False) -> None:
        self.bundle = os.path.abspath(bundle)
        self.pid_file = pid_file
        self.console_socket = console_socket
        self.no_pivot = no_pivot
        self.no_new_keyring = False
        self.config: dict | None = None  # already loaded by the caller (`run` peeks at it)
        self.preserve_fds = preserve_fds
        self.subreaper = subreaper
        self.console_fd: int | None = None  # an already connected console (run -t)


def _check_lsm(config: dict) -> None:
    process, linux = config.get("process") or {}, config.get("linux") or {}
    if (process.get("apparmorProfile") or process.get("selinuxLabel")
            or linux.get("mountLabel")):
        from corral.linux import lsm  # only for configs that name an LSM

        lsm.check(process, linux)


def load_config(bundle: str) -> dict:
    config = runtime_config.load_bundle(bundle)
    if "process" not in config:
        raise InvalidArgument(f"{bundle}/config.json: process: is required to create a "
                              "container")
    kinds = runtime_config.namespaces(config)
    if "mount" not in kinds:
        raise InvalidArgument(f"{bundle}/config.json: linux.namespaces: a mount namespace is "
                              "required")
    return config


def preload(ready) -> None:
    """What `create` needs whatever the config says, done ahead: the runtime runs this
    while it waits for config.json (corral.runtime.AWAIT_CONFIG_ENV). Every step is
    work `create` does anyway; `ready()` (has the config come?) is asked between steps,
    so that a config which arrives early waits for one step at most."""
    for step in _PRELOAD_STEPS:
        if ready():
            return
        step()


def _preload_init() -> None:
    from corral.runtime import init  # noqa: F401 - and the modules it needs (rootfs, ...)


def _preload_cgroups() -> None:
    from corral.linux import cgroups
    from corral.linux.cgroups import devices, pids, validate  # noqa: F401 - podman sets them

    if cgroups.is_unified_only(cgroups.preload()):
        from corral.linux.cgroups import v2  # noqa: F401 - manager_for's
    else:
        from corral.linux.cgroups import v1  # noqa: F401
    from corral.runtime import resources  # noqa: F401


def _preload_process() -> None:
    from corral.linux import capabilities
    from corral.linux import syscalls as sc

    capabilities.last_cap()
    sc.prepare_fork_into_cgroup()


def _preload_seccomp() -> None:
    from corral.linux import seccomp  # noqa: F401
    from corral.oci import digest  # noqa: F401 - the compiled programs' cache key


def _preload_schema() -> None:
    from corral.oci import schema

    schema.preload()  # read and compiled: validating the config is then ~0.1 ms


_PRELOAD_STEPS = (_preload_init, _preload_cgroups, _preload_process, _preload_seccomp,
                  _preload_schema)


def create(root: str, container_id: str, options: CreateOptions) -> Container:
    container = Container(root, container_id)
    config = options.config or load_config(options.bundle)
    rootfs = runtime_config.rootfs_path(config, options.bundle)
    if not os.path.isdir(rootfs):
        raise InvalidArgument(f"root.path: {rootfs} is not a directory")
    # linux.resources are checked before anything exists too: a bad value leaves nothing
    planned = Cgroup.for_config((config.get("linux") or {}).get("cgroupsPath"), container_id)
    check_resources(planned, (config.get("linux") or {}).get("resources"))
    _check_lsm(config)  # an AppArmor/SELinux field the host cannot honour: refuse now
    seccomp_filter = _compile_seccomp(config, root)  # before anything exists: bad input leaves nothing
    try:
        container.make_dir()
    except BaseException:
        if seccomp_filter is not None:
            seccomp_filter.release()
        raise
    cgroup: Cgroup | None = None
    init_pid = 0
    try:
        os.mkfifo(container.fifo_path, 0o600)
        _chown_to_container_root(container.fifo_path, config.get("linux") or {})
        linux = config.get("linux") or {}
        joined_cgroup_ns = runtime_config.namespaces(config).get("cgroup")
        cgroup = planned
        cgroup.create(linux.get("resources"))
        if linux.get("resources"):
            from corral.runtime import resources

            resources.apply(cgroup, linux["resources"], linux.get("devices"), checked=True)
        init_pid, init_start_time = _spawn(container, config, rootfs, cgroup, options,
                                           joined_cgroup_ns, seccomp_filter)
        container.data = {
            "ociVersion": config.get("ociVersion", runtime_config.OCI_VERSION),
            "id": container_id,
            "pid": init_pid,
            "init_start_time": init_start_time,
            "bundle": options.bundle,
            "rootfs": rootfs,
            "created": timestamp(),
            "owner": "",
            "annotations": config.get("annotations") or {},
            "cgroup_paths": cgroup.paths,
            "freezer_state_file": cgroup.freezer_state_file(),
            "config": config,
        }
        container.save()
        if options.pid_file:
            write_pid_file(options.pid_file, init_pid)
    except BaseException:
        if init_pid:
            try:
                os.kill(init_pid, 9)
            except ProcessLookupError:
                pass
        if cgroup is not None:
            for pid in cgroup.pids():
                try:
                    os.kill(pid, 9)
                except ProcessLookupError:
                    pass
            cgroup.destroy()
        container.remove_dir()
        raise
    finally:
        if seccomp_filter is not None:
            seccomp_filter.release()
    return container


def seccomp_cache(root: str) -> str:
    """Where generated seccomp programs are kept: inside the runtime's root (root-only)."""
    return os.path.join(root, ".seccomp")


def _compile_seccomp(config: dict, root: str):
    """linux.seccomp as a BPF program, generated in the runtime process: the container's
    processes inherit it across fork and only load it (corral.linux.seccomp)."""
    section = (config.get("linux") or {}).get("seccomp")
    if section is None:
        return None
    from corral.linux import seccomp

    compiled = seccomp.compile(section, cache_dir=seccomp_cache(root))
    try:
        compiled.connect_listener()
    except BaseException:
        compiled.release()
        raise
    return compiled


def _spawn(container: Container, config: dict, rootfs: str, cgroup: Cgroup,
           options: CreateOptions, joined_cgroup_ns: str | None, seccomp_filter=None
           ) -> tuple[int, int | None]:
    """Fork the bootstrap stage and serve its requests until the init is ready; returns
    the init's pid and start time."""
    from corral.runtime import init

    process = config["process"]
    console_fd = None
    if process.get("terminal"):
        from corral.runtime import console

        console_fd = (os.dup(options.console_fd) if options.console_fd is not None
                      else console.connect(options.console_socket or ""))
        os.set_inheritable(console_fd, True)
    (parent_read, parent_write), (child_read, child_write) = pair()
    if options.preserve_fds:
        parent_read, parent_write, child_read, child_write = (
            _move_above(fd, 3 + options.preserve_fds)
            for fd in (parent_read, parent_write, child_read, child_write))
    if options.subreaper:
        from corral.linux import syscalls as sc

        sc.prctl(sc.PR_SET_CHILD_SUBREAPER, 1)
    bootstrap_pid, born_in = _fork_into_v2_cgroup(cgroup)
    if bootstrap_pid == 0:
        os.close(parent_read)
        os.close(parent_write)
        setup = init.InitSetup(config, rootfs, Channel(child_read, child_write),
                               container.fifo_path, console_fd, options.no_pivot,
                               options.preserve_fds, cgroup.paths)
        setup.seccomp = seccomp_filter
        setup.born_in = born_in
        setup.cgroup_hierarchies = cgroup.hierarchies
        if not options.no_new_keyring:
            setup.session_keyring = f"_ses.{container.id}"
        init.bootstrap(setup)
        os._exit(1)  # bootstrap never returns
    os.close(child_read)
    os.close(child_write)
    if console_fd is not None:
        os.close(console_fd)
    channel = Channel(parent_read, parent_write)
    init_pid = 0
    init_start_time = None
    try:
        while True:
            tag, payload = channel.receive()
            if tag == "usermap":
                write_id_maps(bootstrap_pid, config.get("linux") or {})
                channel.send("ok")
            elif tag == "pid":
                pid_text, _, remaining = payload.partition(" ")
                init_pid = int(pid_text)
                os.waitpid(bootstrap_pid, 0)
                bootstrap_pid = 0
                init_start_time = process_start_time(init_pid)
                names = [name for name in remaining.split(",") if name]  # born_in's left out
                if names:  # the init waits for "go" only then (init.bootstrap)
                    cgroup.add(init_pid, names)
                    channel.send("go")
                if "oomScoreAdj" in process:
                    from corral.runtime.process import set_oom_score_adj

                    set_oom_score_adj(init_pid, process["oomScoreAdj"])
            elif tag == "hooks":
                state = {"ociVersion": config.get("ociVersion", runtime_config.OCI_VERSION),
                         "id": container.id, "status": "creating", "pid": init_pid,
                         "bundle": options.bundle,
                         "annotations": config.get("annotations") or {}}
                hooks.run_all(config, "prestart", state)
                hooks.run_all(config, "createRuntime", state)
                state["status"] = "created"
                channel.send("ok", fastjson.dumps(state))
            elif tag == "ready":
                return init_pid, init_start_time
            elif tag == "error":
                raise CreateFailed(payload)
            else:
                raise CreateFailed(f"unexpected message {tag!r} from the container's init")
    except ChannelClosed:
        raise CreateFailed("the container's init exited before it was ready") from None
    except ChildError as exc:
        raise CreateFailed(str(exc)) from None
    except BaseException:
        if init_pid:
            try:
                os.kill(init_pid, 9)
            except ProcessLookupError:
                pass
        raise
    finally:
        channel.close()
        if bootstrap_pid:
            try:
                os.kill(bootstrap_pid, 9)
            except ProcessLookupError:
                pass
            os.waitpid(bootstrap_pid, 0)


def _chown_to_container_root(path: str, linux: dict) -> None:
    """In a new user namespace the init opens exec.fifo as the host ids mapped to the
    container's root, so the fifo belongs to them (as runc's createExecFifo does)."""
    ids = [-1, -1]
    for index, kind in enumerate(("uid", "gid")):
        for m in linux.get(f"{kind}Mappings") or []:
            if m["containerID"] <= 0 < m["containerID"] + m["size"]:
                ids[index] = m["hostID"] - m["containerID"]
    if ids != [-1, -1]:
        os.chown(path, *ids)


def _fork_into_v2_cgroup(cgroup: Cgroup) -> tuple[int, str | None]:
    """fork, with the child born into the container's cgroup v2 directory if possible.

    clone3(CLONE_INTO_CGROUP) avoids cgroup.procs' wait for an RCU grace period.
    It is tried here, in the runtime's own namespaces, where a failure (old kernel,
    no v2 hierarchy) only means a plain fork: after unshare(CLONE_NEWPID) a failed
    first fork would leave the new PID namespace unable to fork at all.
    """
    path = cgroup.paths.get("unified")
    if path is not None:
        from corral.linux import syscalls as sc

        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            return sc.fork_into_cgroup(fd), "unified"
        except OSError:
            pass
        finally:
            os.close(fd)  # in the child too: it is the parent's copy
    return os.fork(), None


def _move_above(fd: int, lowest: int) -> int:
    import fcntl

    if fd >= lowest:
        return fd
    moved = fcntl.fcntl(fd, fcntl.F_DUPFD, lowest)
    os.close(fd)
    return moved


def write_id_maps(pid: int, linux: dict) -> None:
    """Write /proc/<pid>/{uid,gid}_map from linux.uidMappings/gidMappings."""
    for kind in ("uid", "gid"):
        mappings = linux.get(f"{kind}Mappings") or []
        if not mappings:
            continue
        text = "".join(f"{m['containerID']} {m['hostID']} {m['size']}\n" for m in mappings)
        try:
            with open(f"/proc/{pid}/{kind}_map", "w") as f:
                f.write(text)
        except OSError as exc:
            raise CorralError(f"linux.{kind}Mappings: the kernel refused {text.strip()!r}: "
                              f"{exc.strerror}") from None


def write_pid_file(path: str, pid: int) -> None:
    """Written to a temporary name and renamed, so readers never see it empty."""
    temporary = os.path.join(os.path.dirname(os.path.abspath(path)),
                             f".{os.path.basename(path)}.tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o666)
    try:
        os.write(fd, str(pid).encode())
    finally:
        os.close(fd)
    os.replace(temporary, path)
