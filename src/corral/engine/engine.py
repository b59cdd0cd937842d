"""The `Engine` facade: containers' lifecycle over the store, conmon and an OCI runtime.

See docs/design/engine.md for the records, the derived states and the lock order
(per-container lock → storage.lock). No daemon: every call works from the files.
"""

from __future__ import annotations

import contextlib
import os
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from corral import records_light
from corral.engine import conmon
from corral.engine.config import ContainerConfig, RestartPolicy, check_name, random_name
from corral.engine.oci import OCIRuntime, resolve_runtime, runs_in_process, runtime_root
from corral.errors import FailedPrecondition, NotFound
from corral.records_light import dataclass, field
from corral.storage.records import FileLock, now, read_json, sync_file, write_json

TYPE_CHECKING = False  # typing costs ~3 ms to import: annotations only
if TYPE_CHECKING:
    from typing import Any

RUNNING = ("running", "paused")


class ContainerNotRunning(FailedPrecondition):
    """The verb needs a running container."""


class ContainerRunning(FailedPrecondition):
    """The container is running: stop it first (or force)."""


class CommandNotFound(NotFound):
    """The container's command does not exist (exit 127)."""

    exit_status = 127


class CommandNotExecutable(FailedPrecondition):
    """The container's command cannot be run (exit 126)."""

    exit_status = 126


@dataclass
class State:
    status: str = "created"
    pid: int | None = None
    pid_start: str | None = None
    conmon_pid: int | None = None
    exit_code: int | None = None
    started_at: str | None = None
    finished_at: str | None = None
    restart_count: int = 0
    stopped_by_user: bool = False
    rm_client: int | None = None
    monitor_cleanup: bool = True  # False: the starter cleans up exits (conmon runs no hook)
    error: str | None = None
    networks: list = field(default_factory=list)  # CNI attachments (network.manager.Attached)
    ports: list = field(default_factory=list)     # published ports (network.ports.PortMapping)

    @classmethod
    def from_json(cls, data: dict) -> State:
        names = {f.name for f in records_light.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


@dataclass
class Container:
    """A snapshot of one container (`status` is derived, see `Engine.refresh`)."""

    id: str
    name: str
    image: str | None
    image_name: str
    created: str
    config: ContainerConfig
    runtime: str
    bundle: Path
    log_path: Path
    command: list[str] = field(default_factory=list)
    state: State = field(default_factory=State)

    @property
    def status(self) -> str:
        return self.state.status

    @property
    def labels(self) -> dict[str, str]:
        return dict(self.config.labels)


def _proc_start(pid: int) -> str | None:
    """The start time as recorded in state.json (a string), None if gone or a zombie."""
    from corral.linux.procfs import start_time

    value = start_time(pid)
    return None if value is None else str(value)


def _alive(pid: int | None, start: str | None) -> bool:
    if not pid:
        return False
    current = _proc_start(pid)
    return current is not None and (start is None or current == start)


@contextlib.contextmanager
def _alongside(func: Callable[..., Any], *args: Any, **kwargs: Any) -> Iterator[None]:
    """Run `func` in a thread while the body runs; its errors are ignored (best effort)."""
    import threading

    def run() -> None:
        with contextlib.suppress(Exception):
            func(*args, **kwargs)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        yield
    finally:
        thread.join()


#: what a start needs after conmon returns (attach, the runtime's start and delete run in
#: this process): imported while conmon and `runtime create` run, on the other CPU
_AFTER_LAUNCH = ("socket", "corral.runtime.container_start", "corral.runtime.container_delete",
                 "corral.runtime.state")


def _import(names: tuple[str, ...]) -> None:
    import importlib

    for name in names:
        importlib.import_module(name)


#: children `_in_background` started and nobody has reaped yet
_unreaped: list[int] = []


def _in_background(func: Callable[..., Any], *args: Any) -> None:
    """Run `func` in a detached child (its own session) that holds none of this
    process's files: not its stdout (a shell's `$(...)` would wait for it), not its
    locks. Call it with no other thread running.

    One fork, not the classic two (0.5 ms instead of 3: the second copies the page
    tables again and the first must exit and be waited for): the CLI exits moments
    later and init reaps the child; a long-lived caller (the Python API) reaps the
    finished ones at its next call here."""
    for pid in list(_unreaped):
        with contextlib.suppress(ChildProcessError):
            if os.waitpid(pid, os.WNOHANG)[0] == 0:
                continue
        _unreaped.remove(pid)
    pid = os.fork()
    if pid == 0:
        try:
            os.setsid()
            null = os.open(os.devnull, os.O_RDWR)
            for fd in (0, 1, 2):
                os.dup2(null, fd)
            _close_from(3)
            with contextlib.suppress(BaseException):
                func(*args)
        finally:
            os._exit(0)
    _unreaped.append(pid)


def _finish_run_removal(runtime: OCIRuntime, container_id: str, aside: Path | None) -> None:
    """The rest of a `run --rm` removal, in the background: the runtime's delete first
    (its state and cgroups), then the directory set aside (unmount, delete)."""
    try:
        runtime.delete(container_id, force=True)
    finally:
        if aside is not None:
            from corral.storage.containers import finish_removal

            finish_removal(aside)


def _close_from(first: int) -> None:
    """Close every fd from `first` up: close_range(2), else up to the fd limit."""
    from corral.linux import syscalls

    try:
        syscalls.close_range(first)
    except OSError:
        import resource

        os.closerange(first, resource.getrlimit(resource.RLIMIT_NOFILE)[0])


class Engine:
    def __init__(self, root: Path | str | None = None, storage_driver: str | None = None,
                 runtime: str | None = None, store: Any = None) -> None:
        from corral.storage.store import default_root

        self.root = Path(root) if root is not None else default_root()
        self.root.mkdir(parents=True, exist_ok=True)
        self.driver = storage_driver
        self.default_runtime = runtime
        self._store = store
        self.config: Any = None  # EngineConfig; loaded from the files when first needed
        self.dir = self.root / "engine"
        self.exits = conmon.exits_dir(self.root)
        self.locks = self.dir / "locks"
        for d in (self.exits, self.locks):
            d.mkdir(parents=True, exist_ok=True)
        # create(start_next=True) -> start: the launch, and a bridge network's pending ADDs
        self._early_launches: dict[str, tuple[conmon.Launch, Any]] = {}
        self._held_locks: dict[str, tuple[FileLock, Any]] = {}

    @property
    def store(self) -> Any:
        if self._store is None:
            from corral.storage import Store

            self._store = Store.open(self.root, self.driver)
        return self._store

    # -- records -------------------------------------------------------------------------
    @contextlib.contextmanager
    def _lock(self, container_id: str) -> Iterator[None]:
        held = self._held_locks.get(container_id)
        with (held[0] if held else FileLock(self.locks / f"{container_id}.lock")).held():
            yield

    def _hold_lock(self, container_id: str) -> None:
        """Take the container's lock until `_release_lock` (create(start_next=True) of a
        bridge container, until its start: see there). Same thread only."""
        lock = FileLock(self.locks / f"{container_id}.lock")
        context = lock.held()
        context.__enter__()
        self._held_locks[container_id] = (lock, context)

    def _release_lock(self, container_id: str) -> None:
        held = self._held_locks.pop(container_id, None)
        if held is not None:
            held[1].__exit__(None, None, None)

    def _load(self, record: Any) -> Container:
        bundle = self.store.container_dir(record.id)
        data = read_json(bundle / "corral.json", None) or {}
        config = ContainerConfig.from_json(data.get("config") or {
            "image": record.metadata.get("image_name") or record.image or ""})
        state = State.from_json(read_json(bundle / "state.json", {}) or {})
        return Container(
            id=record.id, name=data.get("name") or (record.names[0] if record.names else ""),
            image=record.image, image_name=data.get("image_name") or
            record.metadata.get("image_name") or "", created=record.created, config=config,
            runtime=data.get("runtime") or resolve_runtime(self.default_runtime),
            bundle=bundle, log_path=Path(data.get("log_path") or bundle / "ctr.log"),
            command=list(data.get("command") or record.metadata.get("command") or []),
            state=state)

    def _save_state(self, c: Container) -> None:
        write_json(c.bundle / "state.json", records_light.asdict(c.state), durable=False)

    def _runtime(self, c: Container) -> OCIRuntime:
        return OCIRuntime(c.runtime, runtime_root(self.root, c.runtime))

    def _exit_file(self, container_id: str) -> Path:
        return self.exits / container_id

    def _read_exit(self, container_id: str) -> int | None:
        try:
            text = self._exit_file(container_id).read_text().strip()
        except OSError:
            return None
        try:
            return int(text)
        except ValueError:
            return None

    def refresh(self, c: Container) -> Container:
        """Derive the status from the monitor's exit file and the processes."""
        st = c.state
        if st.status in ("created", "exited", "stopped") and st.pid is None:
            return c
        code = self._read_exit(c.id)
        if code is None and not _alive(st.pid, st.pid_start) and \
                _alive(st.conmon_pid, None):
            self._wait_exit_file(c, 1.0)  # conmon is writing it
            code = self._read_exit(c.id)
        if code is not None:
            st.status, st.exit_code = "exited", code
        elif _alive(st.pid, st.pid_start):
            if st.status not in RUNNING:
                st.status = "running"
        else:
            rs = self._runtime(c).state(c.id) if st.pid is None else None
            if rs and rs.get("status") in ("running", "paused") and _alive(rs.get("pid"), None):
                st.status, st.pid = rs["status"], rs.get("pid")
            else:
                st.status = "stopped"
        return c

    def get(self, ref: str) -> Container:
        return self.refresh(self._load(self.store.container(ref)))

    def list(self, all: bool = False, filters: dict[str, list[str]] | None = None
             ) -> list[Container]:
        out = []
        for record in sorted(self.store.list_containers(), key=lambda r: r.created,
                             reverse=True):
            try:
                c = self.refresh(self._load(record))
            except NotFound:
                continue
            if not all and c.status not in RUNNING and not filters:
                continue
            if filters and not _matches(c, filters):
                continue
            out.append(c)
        return out

    # -- create ----------------------------------------------------------------------------
    def create(self, config: ContainerConfig, *, keep_mounted: bool = False,
               start_next: bool = False, prelaunched: Any = None) -> Container:
        """`keep_mounted`: leave the rootfs mounted for a `start` that follows at once
        (`run`), saving an unmount and a mount; any cleanup or `rm` unmounts it.

        `start_next` (implies keep_mounted; `run` with corral-runtime): the caller's next
        call is `start(id)` with the default monitor cleanup. conmon, and through it
        corral-runtime's `create`, start as soon as the bundle directory exists, so that
        their start-up (two programs, one a Python interpreter: ~20 ms) overlaps the
        rest of this create; the runtime waits for config.json (written atomically, last)
        and `start` takes over the launch.

        On a bridge network, create also makes the netns and starts the CNI ADDs before it
        writes the spec, and holds the container's lock until `start(id)`, which must then
        come from the same thread.

        `prelaunched` (a corral.cli.prelaunch.Prelaunch): conmon was started even earlier,
        for a directory reserved under a chosen id; the record adopts the directory, and
        the launch is used if it fits this container, else undone."""
        keep_mounted = keep_mounted or start_next
        from corral.oci.image import ImageConfig

        check_name(config.name)
        RestartPolicy.parse(config.restart)
        if config.auto_remove and RestartPolicy.parse(config.restart).name != "no":
            from corral.errors import InvalidArgument

            raise InvalidArgument("--rm and --restart (other than no) conflict")
        runtime = resolve_runtime(config.runtime or self.default_runtime)
        store = self.store
        image = store.image(config.image)
        image_config = ImageConfig.from_bytes(store.content.read_bytes(image.id,
                                                                        max_size=16 << 20))
        from corral.engine import networking

        config = networking.prepare_create(self, config, image_config)
        name = config.name
        pre = prelaunched if prelaunched is not None and not prelaunched.adopted else None
        for attempt in range(5):
            try:
                record = store.create_container(
                    image.id, names=[name or random_name()],
                    metadata={"image_name": config.image},
                    container_id=pre.container_id if pre else None, reserved=pre is not None)
                break
            except Exception as exc:
                from corral.errors import AlreadyExists

                if name is None and isinstance(exc, AlreadyExists) and attempt < 4:
                    continue
                if isinstance(exc, AlreadyExists) and name is not None:
                    raise type(exc)(f"the container name {name!r} is already in use: "
                                    "remove that container or choose another name") from exc
                raise
        cid = record.id
        name = record.names[0]
        config = records_light.replace(config, name=name, hostname=config.hostname or cid[:12])
        early: conmon.Launch | None = None
        pending: Any = None
        try:
            bundle = store.container_dir(cid)
            launch_now = start_next and runs_in_process(runtime) and \
                networking.launch_at_create(config)
            bridged = launch_now and (config.network or "bridge") == "bridge"
            if bridged:
                # the netns is made here, before the spec naming it is written: from now
                # until the start, other processes' reconcile must see the container
                # as busy, not as a stopped one whose network is to be torn down
                self._hold_lock(cid)
            if pre is not None:
                pre.adopted = True  # the record owns the directory: undone as any launch
                if launch_now and pre.fits(self.root, runtime, config):
                    early = pre.launch
                else:
                    self._abandon_launch(pre.launch, bundle, pre.runtime, cid)
            if launch_now and early is None:
                early = self._spawn_monitor(cid, name, runtime, bundle, config,
                                            await_config=True)
            rootfs = store.mount(cid)
            try:
                spec = self._build_spec(image_config, config, rootfs, cid, runtime,
                                        starts_now=keep_mounted)
            except BaseException:
                store.unmount(cid, force=True)
                raise
            if not keep_mounted:
                store.unmount(cid, force=True)
            networking.adjust_spec(self, config, spec, cid)
            notes = spec.setdefault("annotations", {})
            notes.update({"io.corral.container.name": name, "io.corral.image": image.id})
            notes.update(config.annotations)
            command = list(spec.get("process", {}).get("args") or [])
            # not fsynced yet: a runtime waiting for it starts at once, and the fsync
            # (0.3 to 8 ms on this VM's disk) happens while it creates the container
            if not bridged:
                write_json(bundle / "config.json", spec, durable=False)
            write_json(bundle / "corral.json", {
                "id": cid, "name": name, "image": image.id, "image_name": config.image,
                "created": record.created, "config": config.to_json(), "runtime": runtime,
                "runtime_name": os.path.basename(runtime),
                "log_path": config.log_path or str(bundle / "ctr.log"), "command": command})
            write_json(bundle / "state.json", records_light.asdict(State()), durable=False)
            if bridged:  # the netns, then the spec that names it; the ADDs run meanwhile
                pending = networking.begin(self, self._load(record))
                write_json(bundle / "config.json", spec, durable=False)
            sync_file(bundle / "config.json")  # its name: corral.json's directory fsync
            store.containers.set_metadata(cid, command=command, durable=False)  # in corral.json
        except BaseException:
            if early is not None:  # the waiting runtime gets a config it refuses, and exits
                self._abandon_launch(early, bundle, runtime, cid)
            if pending is not None:
                pending.abandon()
            self._release_lock(cid)
            with contextlib.suppress(Exception):
                store.remove_container(cid)
            raise
        if early is not None:
            self._early_launches[cid] = (early, pending)
        return self.get(cid)

    def _spawn_monitor(self, cid: str, name: str, runtime: str, bundle: Path,
                       config: ContainerConfig, *, await_config: bool = False,
                       monitor_cleanup: bool = True) -> conmon.Launch:
        """conmon for a container (its exit command: engine/exit_hook.sh, then
        `corral container cleanup ID`, unless `monitor_cleanup` is False)."""
        return conmon.spawn_monitor(
            self.root, cid, name, runtime, bundle, Path(config.log_path or bundle / "ctr.log"),
            tty=config.tty, stdin=config.interactive, await_config=await_config,
            monitor_cleanup=monitor_cleanup)

    def _abandon_launch(self, launch: conmon.Launch, bundle: Path, runtime: str,
                        cid: str) -> None:
        """Undo a launch whose `start` will not happen (conmon.abandon)."""
        conmon.abandon(launch, self.root, bundle, runtime, cid)

    def _build_spec(self, image_config: Any, config: ContainerConfig, rootfs: Path,
                    cid: str, runtime: str, starts_now: bool) -> dict:
        """The spec is validated (schema and semantics) here unless corral-runtime's
        `create` follows at once (`run`): it runs the same validation, with the same
        messages naming the field, a moment later."""
        from corral.engine.spec import build_spec

        validates_soon = starts_now and runs_in_process(runtime)
        return build_spec(image_config, config, rootfs=rootfs, container_id=cid,
                          store=self.store, defaults=self.config,
                          validate=not validates_soon)

    # -- start -----------------------------------------------------------------------------
    def start(self, ref: str, *, before_start: Callable[[Container], None] | None = None,
              rm_client: int | None = None, monitor_cleanup: bool = True) -> Container:
        """`rm_client`: a process that cleans up when the container exits while it lives
        (conmon's exit hook then does nothing). `monitor_cleanup=False`: conmon gets no
        exit command at all — for a long-lived caller that watches the exits itself and
        cleans up after a restart (the CRI server); conmon still writes the exit file."""
        c = self._load(self.store.container(ref))
        try:
            with self._lock(c.id):
                c = self.refresh(self._load(self.store.container(c.id)))
                if c.status in RUNNING:
                    raise ContainerRunning(f"container {c.name} is already {c.status}")
                c.state.restart_count = 0
                c.state.rm_client = rm_client
                c.state.monitor_cleanup = monitor_cleanup
                self._start_locked(c, before_start)
        finally:
            self._release_lock(c.id)  # held since create(start_next=True), if it was
        return c

    def _rejoin_namespaces(self, c: Container) -> None:
        """--ipc/--uts/--pid container:X point at `/proc/<pid>/ns/<type>` of X's init as it
        was when this container was created (or last started); X may have restarted since,
        and that pid may now be anybody's: aim at X's current init, or refuse to start."""
        joins = [(kind, value.partition(":")[2]) for kind in ("ipc", "uts", "pid")
                 if isinstance(value := getattr(c.config, kind, None), str)
                 and value.startswith("container:")]
        if not joins:
            return
        from corral.engine.spec import container_namespace

        spec_file = c.bundle / "config.json"
        spec = read_json(spec_file, {})
        for kind, ref in joins:
            path = container_namespace(self.store, ref, kind, f"--{kind}")
            for ns in (spec.get("linux") or {}).get("namespaces") or []:
                if ns.get("type") == kind:
                    ns["path"] = path
        write_json(spec_file, spec, durable=False)

    def _start_locked(self, c: Container, before_start: Callable[[Container], None] | None
                      = None) -> None:
        st = c.state
        rt = self._runtime(c)
        # create(start_next=True) began the launch, and for a bridge network the ADDs
        early, early_network = self._early_launches.pop(c.id, (None, None))
        if early is not None and not st.monitor_cleanup:  # launched with the default hook
            self._abandon_launch(early, c.bundle, c.runtime, c.id)
            early = None
        if early is None:
            self._rejoin_namespaces(c)
            rt_dir = Path(rt.root)
            if rt_dir.is_dir() and any(p.name.startswith(c.id) for p in rt_dir.iterdir()):
                rt.delete(c.id, force=True)
            with contextlib.suppress(FileNotFoundError):
                self._exit_file(c.id).unlink()
        store = self.store
        from corral.engine import networking

        try:
            store.mount(c.id)
            try:
                if early_network is not None:
                    early_network.c = c  # the ADDs' results go into this state
                    pending, early_network = early_network, None
                else:
                    pending = networking.begin(self, c)  # CNI ADD runs alongside the create
            except BaseException:
                store.unmount(c.id, force=True)
                raise
        except BaseException:
            if early is not None:
                self._abandon_launch(early, c.bundle, c.runtime, c.id)
            if early_network is not None:
                early_network.abandon()
            raise
        try:
            with _alongside(_import, _AFTER_LAUNCH):
                launch = early or self._spawn_monitor(c.id, c.name, c.runtime, c.bundle,
                                                      c.config,
                                                      monitor_cleanup=st.monitor_cleanup)
                pid = launch.wait()
        except conmon.CreateFailed as exc:
            rt.delete(c.id, force=True)
            if pending is not None:
                pending.abandon()
            store.unmount(c.id, force=True)
            st.error = str(exc)
            self._save_state(c)
            raise _command_error(str(exc)) from exc
        except BaseException:
            rt.delete(c.id, force=True)
            if pending is not None:
                pending.abandon()
            store.unmount(c.id, force=True)
            raise
        st.pid, st.pid_start = pid, _proc_start(pid)
        try:
            st.conmon_pid = int((c.bundle / "conmon.pid").read_text().strip())
        except (OSError, ValueError):
            st.conmon_pid = None
        st.status, st.started_at, st.finished_at = "running", now(), None
        st.exit_code, st.stopped_by_user, st.error = None, False, None
        try:
            if pending is not None:
                pending.finish()
                pending = None
            self._save_state(c)
            if before_start is not None:
                before_start(c)
            rt.start(c.id)
        except BaseException as exc:  # noqa: BLE001 - undone, recorded and re-raised below
            rt.delete(c.id, force=True)
            if pending is not None:
                pending.abandon()
            networking.teardown(self, c)
            store.unmount(c.id, force=True)
            st.status, st.pid, st.error = "stopped", None, str(exc)
            self._save_state(c)
            raise _command_error(str(exc)) if not isinstance(exc, conmon.ConmonError) and \
                isinstance(exc, Exception) else exc from None

    # -- stop / kill / wait ----------------------------------------------------------------
    def _wait_gone(self, c: Container, timeout: float | None) -> bool:
        deadline = None if timeout is None else time.monotonic() + timeout
        delay = 0.001
        while True:
            if self._exit_file(c.id).exists() or not _alive(c.state.pid, c.state.pid_start):
                return True
            if deadline is not None and time.monotonic() >= deadline:
                return False
            time.sleep(delay)
            delay = min(delay * 1.5, 0.1)

    def stop(self, ref: str, timeout: int | None = None) -> Container:
        c = self.get(ref)
        if c.status not in RUNNING:
            return c
        from corral.engine.options import parse_signal

        with self._lock(c.id):
            c = self.refresh(self._load(self.store.container(c.id)))
            c.state.stopped_by_user = True
            self._save_state(c)
        rt = self._runtime(c)
        timeout = c.config.stop_timeout if timeout is None else timeout
        signal = str(parse_signal(c.config.stop_signal or "SIGTERM"))
        with contextlib.suppress(Exception):
            if c.status == "paused":
                rt.kill(c.id, signal)
                rt.resume(c.id)
            else:
                rt.kill(c.id, signal)
        if not self._wait_gone(c, timeout):
            with contextlib.suppress(Exception):
                rt.kill(c.id, "9", all_=True)
            self._wait_gone(c, 30)
        self._wait_exit_file(c)
        self.cleanup(c.id, from_monitor=False)
        return self.get(c.id)

    def _wait_exit_file(self, c: Container, timeout: float = 2.0) -> None:
        """Give a live conmon the moment it needs to write the exit file."""
        if not _alive(c.state.conmon_pid, None):
            return
        deadline = time.monotonic() + timeout
        delay = 0.001  # conmon writes it within a few ms of the exit: look often at first
        while not self._exit_file(c.id).exists() and time.monotonic() < deadline:
            if not _alive(c.state.conmon_pid, None):
                return
            time.sleep(delay)
            delay = min(delay * 1.2, 0.02)

    def kill(self, ref: str, signal: str | int = "SIGKILL") -> Container:
        from corral.engine.options import parse_signal

        number = parse_signal(signal)
        c = self.get(ref)
        if c.status not in RUNNING:
            raise ContainerNotRunning(f"container {c.name} is not running")
        self._runtime(c).kill(c.id, str(number))
        return c

    def wait(self, ref: str, timeout: float | None = None) -> int | None:
        c = self.get(ref)
        if c.state.pid is not None:
            self._wait_gone(c, timeout)
            self._wait_exit_file(c)
        code = self._read_exit(c.id)
        if code is None:
            with contextlib.suppress(NotFound):
                code = self.get(c.id).state.exit_code
        return code

    def restart(self, ref: str, timeout: int | None = None) -> Container:
        c = self.stop(ref, timeout)
        return self.start(c.id)

    def pause(self, ref: str) -> Container:
        return self._set_paused(ref, True)

    def unpause(self, ref: str) -> Container:
        return self._set_paused(ref, False)

    def _set_paused(self, ref: str, paused: bool) -> Container:
        c = self.get(ref)
        with self._lock(c.id):
            c = self.refresh(self._load(self.store.container(c.id)))
            want_from = "running" if paused else "paused"
            if c.status != want_from:
                raise ContainerNotRunning(f"container {c.name} is {c.status}, not {want_from}")
            rt = self._runtime(c)
            (rt.pause if paused else rt.resume)(c.id)
            c.state.status = "paused" if paused else "running"
            self._save_state(c)
        return c

    # -- cleanup (conmon's exit command) ------------------------------------------------
    def cleanup(self, container_id: str, from_monitor: bool = True) -> bool:
        """After the container's exit: the runtime's delete, networking, unmount, the
        restart policy, or for `--rm` the removal. True if the container was removed."""
        try:
            record = self.store.container(container_id)
        except NotFound:
            return False
        with self._lock(record.id):
            try:
                c = self._load(self.store.container(record.id))
            except NotFound:
                return False
            st = c.state
            from corral.engine import networking

            if st.pid is None and st.status in ("exited", "stopped", "created"):
                if st.networks:
                    networking.teardown(self, c)
                    self._save_state(c)
                return False  # done already
            code = self._read_exit(c.id)
            if code is None and _alive(st.pid, st.pid_start):
                return False  # still running (a stray call)
            # --rm (no restart policy can apply: refused at create) whose foreground CLI
            # is this process or gone: the container goes now
            remove_now = c.config.auto_remove and not (
                st.rm_client and st.rm_client != os.getpid() and _alive(st.rm_client, None))
            # the runtime's delete, the CNI DELs, the unmount (an RCU grace period or two)
            # and a --rm removal do not depend on each other: they run side by side; a
            # --rm removal takes the record and the name at once and moves the mounted
            # directory aside; the runtime's delete (its state and cgroups: ~10 ms of
            # rmdirs), the unmount and the deletion finish in the background, where nobody
            # waits for things nobody can name any more
            aside: Path | None = None
            unmount = contextlib.nullcontext() if remove_now else \
                _alongside(self.store.unmount, c.id, force=True)
            with networking.teardown_alongside(self, c), unmount:
                if not remove_now:
                    self._runtime(c).delete(c.id, force=True)
                st.status = "exited" if code is not None else "stopped"
                st.exit_code, st.finished_at, st.pid, st.conmon_pid = code, now(), None, None
                if remove_now:
                    aside = self._remove_locked(c, network=False, set_aside=True)
            if remove_now:
                _in_background(_finish_run_removal, self._runtime(c), c.id, aside)
                return True
            self._save_state(c)
            policy = RestartPolicy.parse(c.config.restart)
            if from_monitor and policy.should_restart(code, st.restart_count,
                                                      st.stopped_by_user):
                st.restart_count += 1
                time.sleep(min(0.1 * st.restart_count, 1.0))
                try:
                    self._start_locked(c)
                except Exception as exc:  # noqa: BLE001 - recorded, the container stays down
                    st.error = f"restart failed: {exc}"
                    self._save_state(c)
            return False

    # -- remove -----------------------------------------------------------------------------
    def remove(self, ref: str, force: bool = False) -> str:
        c = self.get(ref)
        if c.status in RUNNING:
            if not force:
                raise ContainerRunning(f"container {c.name} is {c.status}: stop it first "
                                       "or use -f")
            with self._lock(c.id):
                c.state.stopped_by_user = True
                self._save_state(c)
            with contextlib.suppress(Exception):
                self._runtime(c).kill(c.id, "9", all_=True)
            self._wait_gone(c, 30)
        with self._lock(c.id), contextlib.suppress(NotFound):
            self._remove_locked(self._load(self.store.container(c.id)))
        return c.id

    def _remove_locked(self, c: Container, *, network: bool = True,
                       set_aside: bool = False) -> Path | None:
        """`network=False`: the caller tears the networking down itself (alongside).
        `set_aside`: the rootfs is left mounted in a directory moved aside, returned for
        the caller to finish (`storage.containers.finish_removal`)."""
        st = c.state
        if not (st.pid is None and st.status in ("exited", "stopped")):
            # cleanup() records exited/stopped with no pid only after the runtime's
            # delete succeeded (or, for `run --rm`, leaves it to the background finisher):
            # a second `runtime delete` would be a wasted process.
            self._runtime(c).delete(c.id, force=True)
        if _alive(c.state.conmon_pid, None):
            with contextlib.suppress(OSError):
                os.kill(c.state.conmon_pid, 9)  # type: ignore[arg-type]
        if network:
            from corral.engine import networking

            networking.teardown(self, c)
        aside = None
        if set_aside:
            _, aside = self.store.containers.retire(c.id)
        else:
            self.store.remove_container(c.id)
        if c.config.auto_remove:  # --rm: its anonymous volumes go too (docker)
            from corral.engine.volumes import VolumeStore

            VolumeStore.for_store(self.store).remove_anonymous_of(c.id)
        for path in (self._exit_file(c.id), self.locks / f"{c.id}.lock"):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
        conmon.remove_socket_link(conmon.socket_dir(self.root), c.id)
        return aside

    def sweep_runtime_orphans(self) -> list[str]:
        """Delete runtime state (and cgroups) of containers the store no longer has: what
        a killed `run --rm` finisher leaves (its directory aside is swept by the store's
        repair). Each runtime keeps its state under `<root>/runtime[-NAME]`. Also conmon's
        socket links whose container directory is gone (a monitor launched for a `run`
        killed before its record existed: corral.cli.prelaunch)."""
        known = {r.id for r in self.store.list_containers()}
        links = conmon.socket_dir(self.root)
        with contextlib.suppress(OSError):
            for entry in os.scandir(links):
                if entry.is_symlink() and not os.path.exists(entry.path):
                    conmon.remove_socket_link(links, entry.name)
        swept = []
        for rt_dir in sorted(self.root.glob("runtime*")):
            name = "corral-runtime" if rt_dir.name == "runtime" else \
                rt_dir.name.removeprefix("runtime-")
            try:
                entries = [e.name for e in os.scandir(rt_dir) if e.is_dir()]
            except OSError:
                continue
            orphans = [e for e in entries if len(e) == 64 and e not in known
                       and all(ch in "0123456789abcdef" for ch in e)]
            if not orphans:
                continue
            try:
                rt = OCIRuntime(resolve_runtime(name), str(rt_dir))
            except Exception:  # noqa: BLE001, S112 - that runtime is gone from this host
                continue
            for container_id in orphans:
                rt.delete(container_id, force=True)
                swept.append(container_id)
        return swept

    def rename(self, ref: str, new_name: str) -> Container:
        check_name(new_name)
        c = self.get(ref)
        with self._lock(c.id):
            self.store.containers.rename(c.id, new_name)
            data = read_json(c.bundle / "corral.json", {}) or {}
            data["name"] = new_name
            data.setdefault("config", {})["name"] = new_name
            write_json(c.bundle / "corral.json", data)
        return self.get(c.id)

    # -- logs / attach / exec ----------------------------------------------------------------
    def logs(self, ref: str, *, follow: bool = False, since: float | None = None,
             tail: int | None = None) -> Iterator[Any]:
        from corral.engine.logs import read_logs

        c = self.get(ref)

        def running() -> bool:
            """Whether the log may still grow: the container runs, or its conmon (the
            writer) does, which can record the exit before it drains the last output."""
            try:
                now_c = self.get(c.id)
            except NotFound:
                return False
            return now_c.status in RUNNING or _alive(now_c.state.conmon_pid, None)

        return read_logs(str(c.log_path), since=since, tail=tail, follow=follow,
                         running=running)

    def attach_socket(self, c: Container) -> Any:
        return conmon.attach_socket(conmon.socket_dir(self.root), c.id)

    def resize(self, c: Container, rows: int, cols: int) -> None:
        conmon.resize(c.bundle, rows, cols)

    def exec(self, ref: str, argv: list[str], *, tty: bool = False, interactive: bool = False,
             user: str | None = None, env: list[str] | None = None, workdir: str | None = None,
             detach: bool = False, privileged: bool = False,
             stdin_fd: int | None = 0, stdout_fd: int = 1,
             detach_keys: bytes = b"") -> int:
        c = self.get(ref)
        if c.status != "running":
            raise ContainerNotRunning(f"container {c.name} is {c.status}, not running")
        if not argv:
            from corral.errors import InvalidArgument

            raise InvalidArgument("exec: a command is needed")
        spec = read_json(c.bundle / "config.json", {})
        process = dict(spec.get("process") or {})
        process["args"] = list(argv)
        process["terminal"] = bool(tty)
        if env:
            from corral.image.runtime_spec import _merge_env

            process["env"] = _merge_env(process.get("env") or [], env)
        if workdir:
            process["cwd"] = workdir
        if user is not None:
            from corral.image.runtime_spec import resolve_user

            process["user"] = resolve_user(c.bundle / "merged", user)
        process.pop("consoleSize", None)
        rt = self._runtime(c)
        pfile = c.bundle / f"exec-{os.urandom(6).hex()}.json"
        write_json(pfile, process, durable=False)
        try:
            args = ["exec", "--process", str(pfile)]
            if detach:
                result = rt.call(*args, "--detach", c.id, check=False)
                if result.returncode != 0:
                    raise _command_error(result.stderr.strip())
                return 0
            if not tty:
                from corral.engine.forked import single_threaded

                if rt.in_process and single_threaded():  # the CLI; not a threaded embedder
                    returncode, err = rt.run_forked(*args, c.id, stdin_null=not interactive)
                else:
                    import subprocess

                    stdin = None if interactive else subprocess.DEVNULL
                    proc = subprocess.run(rt.argv(*args, c.id), stdin=stdin, check=False,
                                          stderr=subprocess.PIPE)
                    returncode, err = proc.returncode, proc.stderr.decode(errors="replace")
                if returncode != 0 and _looks_like_exec_failure(err):
                    raise _command_error(err.strip())
                if err:
                    sys.stderr.write(err)
                return returncode
            return self._exec_tty(rt, args, c, stdin_fd if interactive else None, stdout_fd,
                                  detach_keys)
        finally:
            with contextlib.suppress(FileNotFoundError):
                pfile.unlink()

    def _exec_tty(self, rt: OCIRuntime, args: list[str], c: Container, stdin_fd: int | None,
                  stdout_fd: int, detach_keys: bytes) -> int:
        import shutil
        import subprocess
        import tempfile

        from corral.engine import attach

        tmp = tempfile.mkdtemp(prefix="cx-", dir=str(conmon.socket_dir(self.root)))
        path = os.path.join(tmp, "c")
        listener = attach.console_listener(path)
        try:
            proc = subprocess.Popen(rt.argv(*args, "--tty", "--console-socket", path, c.id),
                                    stdin=subprocess.DEVNULL, stderr=subprocess.PIPE)
            try:
                master = attach.receive_console(listener)
            except OSError as exc:
                proc.wait()
                err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
                raise _command_error(err.strip() or str(exc)) from exc
            size = attach.window_size(stdin_fd if stdin_fd is not None else stdout_fd)
            if size:
                attach.set_window_size(master, *size)

            def winch() -> None:
                new = attach.window_size(stdin_fd if stdin_fd is not None else stdout_fd)
                if new:
                    attach.set_window_size(master, *new)

            try:
                with attach.raw_terminal(stdin_fd), attach.on_winch(winch):
                    attach.pump_pty(master, stdin_fd=stdin_fd, stdout_fd=stdout_fd,
                                    detach_keys=detach_keys)
            finally:
                os.close(master)
            proc.wait()
            err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
            if proc.returncode != 0 and _looks_like_exec_failure(err):
                raise _command_error(err.strip())
            return proc.returncode
        finally:
            listener.close()
            shutil.rmtree(tmp, ignore_errors=True)

    # -- inspect ------------------------------------------------------------------------------
    def inspect(self, ref: str) -> dict[str, Any]:
        c = self.get(ref)
        st = c.state
        policy = RestartPolicy.parse(c.config.restart)
        return {
            "Id": c.id, "Name": c.name, "Created": c.created, "Path": (c.command or [""])[0],
            "Args": c.command[1:], "Image": c.image, "ImageName": c.image_name,
            "State": {"Status": c.status, "Running": c.status == "running",
                      "Paused": c.status == "paused", "Pid": st.pid or 0,
                      "ConmonPid": st.conmon_pid or 0,
                      "ExitCode": st.exit_code if st.exit_code is not None else 0,
                      "StartedAt": st.started_at or "", "FinishedAt": st.finished_at or "",
                      "Error": st.error or ""},
            "RestartCount": st.restart_count, "OCIRuntime": os.path.basename(c.runtime),
            "RuntimePath": c.runtime, "Bundle": str(c.bundle), "LogPath": str(c.log_path),
            "Config": {"Labels": c.config.labels, "Env": c.config.env, "Cmd": c.command,
                       "Tty": c.config.tty, "OpenStdin": c.config.interactive,
                       "StopSignal": c.config.stop_signal or "SIGTERM",
                       "StopTimeout": c.config.stop_timeout, "Hostname": c.config.hostname,
                       "Image": c.image_name},
            "HostConfig": {"RestartPolicy": {"Name": policy.name,
                                             "MaximumRetryCount": policy.max_retries},
                           "AutoRemove": c.config.auto_remove,
                           "Runtime": os.path.basename(c.runtime),
                           "NetworkMode": c.config.network,
                           "Networks": list(c.config.networks),
                           "PortBindings": list(c.config.publish)},
            "NetworkSettings": _network_settings(c),
            "ContainerConfig": c.config.to_json(),
        }


def _network_settings(c: Container) -> dict[str, Any]:
    from corral.engine.networking import network_settings

    return network_settings(c)


def _looks_like_exec_failure(text: str) -> bool:
    low = text.lower()
    return any(s in low for s in ("executable file not found", "no such file or directory",
                                  "permission denied", "not found in $path"))


def _command_error(message: str) -> Exception:
    low = message.lower()
    if "permission denied" in low or "is a directory" in low or "exec format error" in low:
        return CommandNotExecutable(message)
    if "not found" in low or "no such file or directory" in low:
        return CommandNotFound(message)
    from corral.errors import SystemFailure

    return SystemFailure(message)


def _matches(c: Container, filters: dict[str, list[str]]) -> bool:
    for key, values in filters.items():
        ok = False
        for value in values:
            if key == "name":
                ok = ok or value in c.name
            elif key == "id":
                ok = ok or c.id.startswith(value)
            elif key == "status":
                ok = ok or c.status == value
            elif key == "label":
                k, eq, v = value.partition("=")
                ok = ok or (k in c.config.labels and (not eq or c.config.labels[k] == v))
            elif key == "ancestor":
                ok = ok or value in (c.image_name, c.image)
            else:
                from corral.errors import InvalidArgument

                raise InvalidArgument(f"--filter: unknown filter {key!r} (name, id, status, "
                                      "label, ancestor)")
        if not ok:
            return False
    return True


__all__ = ["CommandNotExecutable", "CommandNotFound", "Container", "ContainerNotRunning",
           "ContainerRunning", "Engine", "State"]
