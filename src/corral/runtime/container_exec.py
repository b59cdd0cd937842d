"""`exec`: run a new process inside a running container (runc-exec(8)).

The process joins every namespace of the container's init (setns(2) through
/proc/<init>/ns/*, the user namespace first), the container's cgroup, and then
goes through the same final steps as the init: ids, capabilities, cwd, fds.
The process description comes from `-p process.json` or from the container's
own `process` with the command line's arguments and flags laid over it.
"""

from __future__ import annotations

import os

from corral.errors import FailedPrecondition, InvalidArgument
from corral.linux import syscalls as sc
from corral.linux.cgroups import Cgroup
from corral.oci import fastjson, schema
from corral.runtime.channel import Channel, ChannelClosed, pair
from corral.runtime.state import Container

NS_FILES = {"user": "user", "ipc": "ipc", "uts": "uts", "network": "net", "pid": "pid",
            "cgroup": "cgroup", "time": "time", "mount": "mnt"}


class ExecOptions:
    __slots__ = ("console_socket", "detach", "pid_file", "preserve_fds", "process")

    def __init__(self, process: dict, console_socket: str | None = None,
                 pid_file: str | None = None, detach: bool = False,
                 preserve_fds: int = 0) -> None:
        self.process = process
        self.console_socket = console_socket
        self.pid_file = pid_file
        self.detach = detach
        self.preserve_fds = preserve_fds


def load_process_file(path: str) -> dict:
    try:
        with open(path, "rb") as f:
            process = fastjson.loads(f.read())
    except OSError as exc:
        raise InvalidArgument(f"--process {path!r}: {exc.strerror}") from None
    except ValueError as exc:
        raise InvalidArgument(f"--process {path!r}: not valid JSON: {exc}") from None
    try:
        schema.validate({"ociVersion": "1.0.0", "process": process}, "config-schema.json")
    except InvalidArgument as exc:
        raise InvalidArgument(f"--process {path!r}: {exc}") from None
    if not process.get("args"):
        raise InvalidArgument(f"--process {path!r}: process.args: must not be empty")
    return process


def process_from_flags(container: Container, args: list[str], *, env: list[str],
                       cwd: str | None, user: str | None, tty: bool,
                       capabilities: list[str], no_new_privs: bool,
                       additional_gids: list[int], apparmor: str | None = None,
                       process_label: str | None = None) -> dict:
    """runc's rule: start from the container's `process`, then apply the flags."""
    base = fastjson.loads(fastjson.dumps((container.data.get("config") or {}).get("process") or {}))
    if not args:
        raise InvalidArgument("exec: give the command to run, or --process FILE")
    base["args"] = args
    base["terminal"] = tty
    base.pop("consoleSize", None)
    if env:
        merged = {item.partition("=")[0]: item for item in base.get("env") or []}
        merged.update({item.partition("=")[0]: item for item in env})
        base["env"] = list(merged.values())
    if cwd:
        base["cwd"] = cwd
    if user:
        uid, _, gid = user.partition(":")
        try:
            base["user"] = {"uid": int(uid), "gid": int(gid or 0)}
        except ValueError:
            raise InvalidArgument(f"--user {user!r}: expected UID[:GID] numbers") from None
    if additional_gids:
        base.setdefault("user", {})["additionalGids"] = additional_gids
    if capabilities:
        from corral.linux import capabilities as caps

        caps.mask(capabilities, "--cap")
        sets = base.setdefault("capabilities", {})
        for name in ("bounding", "effective", "permitted", "ambient"):
            sets[name] = list(dict.fromkeys((sets.get(name) or []) + capabilities))
    if no_new_privs:
        base["noNewPrivileges"] = True
    if apparmor:
        base["apparmorProfile"] = apparmor
    if process_label:
        base["selinuxLabel"] = process_label
    return base


def exec_process(root: str, container_id: str, options: ExecOptions) -> int:
    """Start the process; returns its pid (detached) or its exit code (foreground)."""
    from corral.runtime import init

    container = Container.load(root, container_id)
    status = container.status()
    if status not in ("created", "running"):
        raise FailedPrecondition(f"container {container_id!r} is {status}: cannot exec in it")
    process = options.process
    config = container.data.get("config") or {}
    from corral.linux import capabilities as caps

    caps.validate(process.get("capabilities"))
    if process.get("apparmorProfile") or process.get("selinuxLabel"):
        from corral.linux import lsm

        lsm.check(process, None)
    console_fd = None
    if process.get("terminal"):
        from corral.runtime import console

        console_fd = console.connect(options.console_socket or "")
    namespaces = {}
    for ns in (config.get("linux") or {}).get("namespaces") or []:
        namespaces[ns["type"]] = f"/proc/{container.pid}/ns/{NS_FILES[ns['type']]}"
    cgroup = Cgroup(container.data.get("cgroup_paths") or {})
    seccomp_filter = None
    if (config.get("linux") or {}).get("seccomp") is not None:
        # the container's filter applies to exec'd processes too (as runc); built here,
        # on the host, where libseccomp.so is reachable
        from corral.linux import seccomp
        from corral.runtime.container_create import seccomp_cache

        seccomp_filter = seccomp.compile(config["linux"]["seccomp"], seccomp_cache(root))
        seccomp_filter.connect_listener()
    (parent_read, parent_write), (child_read, child_write) = pair()
    if not options.detach:
        sc.prctl(sc.PR_SET_CHILD_SUBREAPER, 1)
    first = os.fork()
    if first == 0:
        os.close(parent_read)
        os.close(parent_write)
        _child(Channel(child_read, child_write), namespaces, process, console_fd,
               options.preserve_fds, init, cgroup.paths, seccomp_filter, container)
    if seccomp_filter is not None:
        seccomp_filter.release()
    os.close(child_read)
    os.close(child_write)
    if console_fd is not None:
        os.close(console_fd)
    channel = Channel(parent_read, parent_write)
    pid = 0
    try:
        cgroup.add(first, [name for name in channel.expect("cgroups").split(",") if name])
        channel.send("go")
        pid = int(channel.expect("pid"))
        os.waitpid(first, 0)
        first = 0
        if options.pid_file:
            from corral.runtime.container_create import write_pid_file

            write_pid_file(options.pid_file, pid)
        try:
            tag, payload = channel.receive()
        except ChannelClosed:
            tag, payload = "exec", ""  # the pipe closed on execve: the program runs
        if tag == "error":
            raise FailedPrecondition(payload)
    except BaseException:
        if pid:
            try:
                os.kill(pid, 9)
            except ProcessLookupError:
                pass
        raise
    finally:
        channel.close()
        if first:
            try:
                os.kill(first, 9)
            except ProcessLookupError:
                pass
            os.waitpid(first, 0)
    if options.detach:
        return pid
    from corral.runtime.foreground import wait_forwarding_signals

    return wait_forwarding_signals(pid)


def _child(channel: Channel, namespaces: dict[str, str], process: dict,
           console_fd: int | None, preserve_fds: int, init_module,
           cgroup_paths: dict[str, str], seccomp_filter=None,
           container: Container | None = None) -> None:
    try:
        from corral.linux.cgroups import Cgroup

        channel.send("cgroups", ",".join(Cgroup(cgroup_paths).join_self_v1()))
        channel.expect("go")
        init_module.join_namespaces(namespaces)
        if "user" in namespaces:
            os.setresgid(0, 0, 0)
            os.setresuid(0, 0, 0)
        pid = os.fork()
    except BaseException as exc:  # noqa: BLE001
        init_module._fail(channel, exc)
    if pid:
        channel.send("pid", str(pid))
        os._exit(0)
    try:
        sc.prctl(sc.PR_SET_DUMPABLE, 0)
        if process.get("terminal"):
            import socket  # noqa: F401

            init_module._setup_terminal_for_exec(console_fd, process.get("consoleSize"))
        from corral.runtime import process as proc_module

        program = proc_module.look_path(process["args"][0], process.get("env") or [])
        if "oomScoreAdj" in process:
            proc_module.set_oom_score_adj("self", process["oomScoreAdj"])
        os.close(channel.read_fd)
        state = None
        if (seccomp_filter is not None and seccomp_filter.listener is not None
                and container is not None):
            state = _listener_state(container)
        init_module.finish_and_exec(program, process, preserve_fds, seccomp_filter, state)
    except BaseException as exc:  # noqa: BLE001
        init_module._fail(channel, exc)


def _listener_state(container: Container) -> dict:
    """The state sent with a SCMP_ACT_NOTIFY listener fd. The exec'd process cannot see
    its own pid outside the container's pid namespace, so `pid` is the init's."""
    config = container.data.get("config") or {}
    return {"ociVersion": container.data.get("ociVersion", "1.2.0"), "id": container.id,
            "status": "running", "pid": container.pid,
            "bundle": container.data.get("bundle", ""),
            "annotations": config.get("annotations") or {}}
