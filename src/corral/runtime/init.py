"""The container's side of `create`: two forked stages, then the user process.

  runtime (create)             bootstrap (fork 1)               init (fork 2, PID 1)
  ----------------             ------------------               --------------------
  cgroup += bootstrap   go ->  setns() into joined namespaces
                               unshare(CLONE_NEWUSER)
  write uid/gid maps  <- usermap
                        ok ->  unshare(other new namespaces)
                               fork ------------------------->  mounts, devices (rootfs.prepare)
  record pid          <- pid   exit
  prestart, createRuntime hooks <------------------------------ hooks
                        ok ----------------------------------> createContainer hooks, pivot_root,
                                                               console, masked/ro paths, sysctl,
                                                               hostname, look up the program
  write state, exit   <------------------------------------- ready
                                                               block on exec.fifo until `start`
                                                               startContainer hooks, ids, caps,
                                                               cwd, close fds, execve

unshare(2) of user and mount namespaces needs a single-threaded process: both
stages are fresh forks of the single-threaded CLI. Everything that runs after
pivot_root is imported before it, because the host's Python library is not
reachable from inside the rootfs.
"""

from __future__ import annotations

import _signal  # the C module: resets dispositions without `signal`'s enum import
import os
import resource  # noqa: F401 - rlimits uses it after pivot_root

from corral.linux import capabilities, rlimits
from corral.linux import syscalls as sc
from corral.oci import fastjson
from corral.runtime import hooks, process, rootfs
from corral.runtime.channel import Channel

NAMESPACE_FLAGS = {
    "user": sc.CLONE_NEWUSER, "pid": sc.CLONE_NEWPID, "network": sc.CLONE_NEWNET,
    "ipc": sc.CLONE_NEWIPC, "uts": sc.CLONE_NEWUTS, "mount": sc.CLONE_NEWNS,
    "cgroup": sc.CLONE_NEWCGROUP, "time": sc.CLONE_NEWTIME,
}
# setns(2) order: the user namespace first (it grants the rights to join the
# others), the mount namespace last (it changes how later paths resolve).
JOIN_ORDER = ("user", "ipc", "uts", "network", "pid", "cgroup", "time", "mount")


class InitSetup:
    """What the runtime hands its children across fork."""

    def __init__(self, config: dict, rootfs_path: str, channel: Channel, fifo_path: str,
                 console_fd: int | None, no_pivot: bool, preserve_fds: int,
                 cgroup_paths: dict[str, str]) -> None:
        self.config = config
        self.rootfs = rootfs_path
        self.channel = channel
        self.fifo_path = fifo_path
        self.fifo_fd = -1  # opened by the bootstrap, before it leaves the host's namespaces
        self.console_fd = console_fd
        self.no_pivot = no_pivot
        self.preserve_fds = preserve_fds
        self.cgroup_paths = cgroup_paths
        self.cgroup_hierarchies: list | None = None  # the host's, as the runtime read them
        self.seccomp = None  # a corral.linux.seccomp.Program, loaded before execve
        self.session_keyring: str | None = None  # `--no-new-keyring` leaves it None
        self.born_in: str | None = None  # the hierarchy clone3 placed the bootstrap in
        self.wait_for_cgroups = True  # does the init wait for the runtime's "go"?


def _fail(channel: Channel, exc: BaseException) -> None:
    message = str(exc) or exc.__class__.__name__
    try:
        channel.send("error", message)
    except OSError:
        os.write(2, f"corral-runtime init: {message}\n".encode())
    os._exit(1)


def join_namespaces(namespaces: dict[str, str | None]) -> None:
    """setns(2) into every namespace given by path, in JOIN_ORDER."""
    fds = []
    try:
        for kind in JOIN_ORDER:
            path = namespaces.get(kind)
            if path:
                try:
                    fds.append((kind, path, os.open(path, os.O_RDONLY | os.O_CLOEXEC)))
                except OSError as exc:
                    raise OSError(exc.errno, f"linux.namespaces {kind}: cannot open {path}: "
                                  f"{exc.strerror}") from None
        for kind, path, fd in fds:
            try:
                sc.setns(fd, NAMESPACE_FLAGS[kind], path)
            except OSError as exc:
                raise OSError(exc.errno, f"linux.namespaces {kind}: cannot join {path}: "
                              f"{exc.strerror}") from None
    finally:
        for _, _, fd in fds:
            os.close(fd)


def bootstrap(setup: InitSetup) -> None:
    """Stage 1: enter or create the namespaces, then fork the container's init."""
    channel = setup.channel
    try:
        # cgroups without the slow cgroup.procs path: v1 hierarchies are joined
        # through `tasks` here (the runtime forked us into the v2 one with clone3).
        # What cannot be done that way is left to the runtime ("pid" message).
        from corral.linux.cgroups import Cgroup

        remaining = [name for name in Cgroup(setup.cgroup_paths).join_self_v1()
                     if name != setup.born_in]
        setup.wait_for_cgroups = bool(remaining)  # else no "go" comes: one round trip less
        # Opened while still the host's root: in a user namespace the state directory
        # (0700 under a private --root) may not be reachable any more.
        setup.fifo_fd = os.open(setup.fifo_path, os.O_PATH | os.O_CLOEXEC)
        namespaces = _namespaces(setup.config)
        join_namespaces(namespaces)
        if "user" in namespaces and namespaces["user"] is None:
            sc.unshare(sc.CLONE_NEWUSER)
            channel.send("usermap")
            channel.expect("ok")
        if "user" in namespaces:
            os.setresgid(0, 0, 0)
            os.setresuid(0, 0, 0)
        flags = 0
        for kind, path in namespaces.items():
            # the init unshares its cgroup namespace itself, once it is in its cgroups
            if path is None and kind not in ("user", "cgroup"):
                flags |= NAMESPACE_FLAGS[kind]
        if flags:
            sc.unshare(flags)
        if flags & sc.CLONE_NEWNET:
            sc.set_loopback_up()
        pid = os.fork()
    except BaseException as exc:  # noqa: BLE001 - any failure goes to the runtime
        _fail(channel, exc)
    if pid == 0:
        container_init(setup, namespaces)
    channel.send("pid", f"{pid} {','.join(remaining)}")
    os._exit(0)


def needs_state(config: dict) -> bool:
    """Does the init need the runtime's state: for hooks (the runtime runs prestart and
    createRuntime ones when asked), or to send with a seccomp listener fd?"""
    hooks_ = config.get("hooks") or {}
    return (any(hooks_.get(kind) for kind in ("prestart", "createRuntime", "createContainer",
                                              "startContainer"))
            or bool(((config.get("linux") or {}).get("seccomp") or {}).get("listenerPath")))


def _namespaces(config: dict) -> dict[str, str | None]:
    return {ns["type"]: ns.get("path") or None
            for ns in (config.get("linux") or {}).get("namespaces") or []}


def container_init(setup: InitSetup, namespaces: dict[str, str | None]) -> None:
    """Stage 2, the container's init (PID 1 in a new PID namespace). Never returns."""
    channel = setup.channel
    config = setup.config
    proc = config["process"]
    try:
        if setup.wait_for_cgroups:
            channel.expect("go")  # in every cgroup now
        if "cgroup" in namespaces and namespaces["cgroup"] is None:
            sc.unshare(sc.CLONE_NEWCGROUP)
        sc.prctl(sc.PR_SET_DUMPABLE, 0)  # hide /proc/self/{exe,fd,mem} from the container
        if setup.session_keyring:
            _join_session_keyring(setup.session_keyring)
        new_mount_ns = "mount" in namespaces and namespaces["mount"] is None
        if new_mount_ns:
            rootfs.prepare(config, setup.rootfs,
                           in_user_namespace="user" in namespaces,
                           new_cgroup_ns="cgroup" in namespaces and namespaces["cgroup"] is None,
                           cgroup_paths=setup.cgroup_paths,
                           cgroup_hierarchies=setup.cgroup_hierarchies)
        if proc.get("terminal"):
            import socket  # noqa: F401 - needed after pivot_root to send the pty master

            from corral.runtime import console  # noqa: F401 - and to open the pty
        if proc.get("apparmorProfile") or proc.get("selinuxLabel"):
            from corral.linux import lsm  # noqa: F401 - finish_and_exec uses it
        fifo_fd = setup.fifo_fd
        state = None
        if needs_state(config):  # else nothing to run or send: no round trip
            channel.send("hooks")
            state = fastjson.loads(channel.expect("ok"))
            hooks.run_all(config, "createContainer", state)
        if new_mount_ns:
            rootfs.pivot(setup.rootfs, no_pivot=setup.no_pivot)
        else:
            os.chroot(setup.rootfs)
            os.chdir("/")
        if proc.get("terminal"):
            _setup_terminal(setup.console_fd, proc.get("consoleSize"))
        # sysctls before finalize: readonlyPaths usually make /proc/sys read-only (as runc)
        _apply_sysctl((config.get("linux") or {}).get("sysctl") or {})
        if new_mount_ns:
            rootfs.finalize(config)
        if config.get("hostname"):
            sc.sethostname(config["hostname"])
        if config.get("domainname"):
            sc.setdomainname(config["domainname"])
        program = process.look_path(proc["args"][0], proc.get("env") or [])
        if proc.get("rlimits"):  # before "ready", so a refused limit fails `create` (as runc)
            rlimits.apply(proc["rlimits"])
        # so is a capability the host lacks (runc: "unable to apply caps")
        capabilities.check_available(proc.get("capabilities"))
        channel.send("ready")
        channel.close()
    except BaseException as exc:  # noqa: BLE001
        _fail(channel, exc)
    # As PID 1 of its namespace the init ignores every signal it has no handler for,
    # even from the host: let TERM and HUP end a created container, as they end runc's
    # init (the Go runtime catches them). execve resets the handlers.
    for number in (1, 15):
        _signal.signal(number, lambda signum, frame: os._exit(128 + signum))
    try:
        fifo = os.open(f"/proc/self/fd/{fifo_fd}", os.O_WRONLY | os.O_CLOEXEC)
        os.write(fifo, b"0")
        os.close(fifo_fd)
        if state is not None:  # (None: no hooks, init.needs_state)
            hooks.run_all(config, "startContainer", state)
        finish_and_exec(program, proc, setup.preserve_fds, setup.seccomp, state)
    except BaseException as exc:  # noqa: BLE001
        os.write(2, f"corral-runtime init: {exc}\n".encode())
        os._exit(127)


def finish_and_exec(program: str, proc: dict, preserve_fds: int, seccomp=None,
                    state: dict | None = None) -> None:
    """The steps shared with `exec`: ids and capabilities, cwd, fds, signals, seccomp,
    execve. Without no_new_privs, installing the seccomp filter needs CAP_SYS_ADMIN: it
    is then loaded before the capabilities are dropped (as runc), else last."""
    if proc.get("apparmorProfile") or proc.get("selinuxLabel"):
        from corral.linux import lsm  # already imported (container_init, exec_process)

        lsm.apply_exec_labels(proc)  # before any seccomp filter: it may refuse the write
    if seccomp is not None and not proc.get("noNewPrivileges"):
        _load_seccomp(seccomp, state)
        seccomp = None
    process.apply_user_and_capabilities(proc)
    process.change_dir(proc.get("cwd") or "/")
    process.close_inherited_fds(2 + preserve_fds)
    # CPython ignores SIGPIPE and SIGXFSZ; an exec'd program must start with defaults.
    for number in (13, 25):
        _signal.signal(number, _signal.SIG_DFL)
    if seccomp is not None:
        _load_seccomp(seccomp, state)
    process.execute(program, proc)


def _load_seccomp(seccomp, state: dict | None) -> None:
    notify_fd = seccomp.load()
    if notify_fd is not None:
        state = state or {}
        seccomp.send_listener_fd(notify_fd, state.get("pid") or os.getpid(), state)


def _setup_terminal_for_exec(console_fd: int | None, size: dict | None) -> None:
    _setup_terminal(console_fd, size, bind_console=False)


def _setup_terminal(console_fd: int | None, size: dict | None, bind_console: bool = True) -> None:
    from corral.runtime import console  # imported before pivot_root or setns

    if console_fd is None:
        raise OSError(22, "process.terminal is true but no --console-socket was given")
    master, slave_path = console.open_pty()
    try:
        console.send_master(console_fd, master, slave_path)
    finally:
        os.close(master)
    if bind_console and os.path.exists("/dev"):
        target = "/dev/console"
        if not os.path.exists(target):
            with open(target, "a"):
                pass
        try:
            sc.mount(slave_path, target, None, sc.MS_BIND)
        except OSError:
            pass  # a read-only /dev: the console bind is a convenience, not required
    console.become_controlling(slave_path, size)


def _join_session_keyring(name: str) -> None:
    """Like runc: the container gets its own session keyring (keyrings(7)) named
    `_ses.<id>`, so it never shares the host session's keys."""
    try:
        sc.join_session_keyring(name)
    except OSError as exc:
        if exc.errno not in (38, 1):  # ENOSYS: no keyrings; EPERM: not permitted here
            raise


def _apply_sysctl(sysctl: dict[str, str]) -> None:
    for key, value in sysctl.items():
        path = "/proc/sys/" + key.replace(".", "/")
        try:
            with open(path, "w") as f:
                f.write(value)
        except OSError as exc:
            raise OSError(exc.errno, f"linux.sysctl {key}: cannot write {path}: "
                          f"{exc.strerror}") from None
