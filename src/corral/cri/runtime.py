"""`runtime.v1.RuntimeService` over the engine: pod sandboxes and their containers.

A pod sandbox is an engine container running the pause image (`catatonit -P`) on a
CNI network (or the node's network): it holds the pod's network, IPC and UTS
namespaces. An app container is an engine container with `network`, `ipc`, `uts`
(and, when the pod shares it, `pid`) = `container:<infra>`: engine options, like the
pod cgroup (`cgroup_parent`), the pod's /dev/shm (a bind mount) and the rest
(`translate`); the engine builds every OCI spec. The CRI configs and the sandbox
state live in `records.Records`; everything else (processes, exit codes, logs, CNI
attachments) is the engine's. See docs/design/cri.md.
"""

from __future__ import annotations

import contextlib
import inspect
import os
import secrets
import signal
import subprocess
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from corral.cri import pause, podcgroup, translate
from corral.cri._gen import api_pb2 as pb
from corral.cri._gen import api_pb2_grpc as pb_grpc
from corral.cri.errors import DeadlineExceeded, ExecFailed, grpc_errors
from corral.cri.records import ContainerNotFound, Records, SandboxNotFound, decode, encode
from corral.errors import FailedPrecondition, InvalidArgument, NotFound
from corral.storage.records import read_json, write_json

RUNTIME_NAME = "corral"
CRI_API_VERSION = "v1"
EXEC_OUTPUT_CAP = 16 << 20  # ExecSyncResponse: output capped at 16 MiB (CVE-2022-1708)
STREAM_PAGE = 100  # items per message of the Stream* list calls (KEP-5825)


def _ns(text: str | None) -> int:
    """An engine RFC 3339 timestamp → nanoseconds since the epoch (0 if unset)."""
    if not text:
        return 0
    try:
        from corral.engine.logs import parse_timestamp

        return int(parse_timestamp(text) * 1e9)
    except ValueError:
        try:
            return int(datetime.fromisoformat(text).timestamp() * 1e9)
        except ValueError:
            return 0


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("corral")
    except Exception:  # noqa: BLE001 - not installed as a distribution
        return "0.0.0"


def _labels_match(labels: Any, selector: Any) -> bool:
    return all(labels.get(k) == v for k, v in selector.items())


class RuntimeService(pb_grpc.RuntimeServiceServicer):
    """The CRI runtime service of one store (`engine.root`)."""

    def __init__(self, engine: Any, *, network: str | None = None,
                 cgroup_driver: str = "cgroupfs", streams: Any = None,
                 orphan_grace: float = 60.0, handlers: Any = None,
                 pod_cgroup_root: str | None = None) -> None:
        from corral.cri.handlers import Handlers

        self.engine = engine
        # pods with resources but no cgroup_parent get `<root>/pod-<key>` (podcgroup.py)
        self.pod_cgroup_root = podcgroup.check_root(pod_cgroup_root or podcgroup.OWN_PARENT)
        # runtime handler name -> OCI runtime (handlers.py: detected or the CRI config)
        self.handlers = handlers if handlers is not None else Handlers.load(
            engine.default_runtime)
        self.streams = streams  # streaming.StreamServer: Exec/Attach/PortForward URLs
        self.records = Records(Path(engine.root))
        self.network = network
        self.cgroup_driver = cgroup_driver
        self._locks: dict[str, threading.RLock] = {}  # per pod: its lifecycle changes
        self._locks_guard = threading.Lock()
        from corral.cri.events import EventBus, ExitWatcher

        self.removed_orphans = self._remove_orphans(orphan_grace)
        self.events = EventBus()
        self.exits = ExitWatcher(engine._exit_file, self._exited)
        for record in self.records.all_containers() + self.records.all_sandboxes():
            with contextlib.suppress(Exception):
                if engine.get(record["id"]).status in ("running", "paused"):
                    self.exits.watch(record["id"])
                else:  # exited while no server ran (a no-op when cleaned up already)
                    engine.cleanup(record["id"], from_monitor=False)

    def _pod_lock(self, sandbox_id: str) -> Any:
        """The lock serializing changes to one pod (its containers' create/remove
        against its stop/remove); different pods proceed in parallel."""
        with self._locks_guard:
            return self._locks.setdefault(sandbox_id, threading.RLock())

    def _remove_orphans(self, grace: float) -> list[str]:
        """Engine containers a CRI server made (labelled) but never recorded — it was
        killed between the engine's create and the record — older than `grace`
        seconds (younger ones may belong to another server's call in flight); the
        same for pod shm mounts."""
        from corral.engine.logs import parse_timestamp

        known = {r["id"] for r in self.records.all_sandboxes() + self.records.all_containers()}
        removed: list[str] = []
        from corral.cri import shm

        named = {r.get("shm") or "" for r in self.records.all_sandboxes()}
        for directory in shm.orphans(self.engine.root, named, grace):
            shm.unmount(directory)  # made for a pod that was never recorded
        try:
            candidates = self.engine.list(all=True, filters={"label": [translate.LABEL_KIND]})
        except Exception:  # noqa: BLE001 - a best effort at start-up
            return removed
        now = time.time()
        for c in candidates:
            try:
                age = now - parse_timestamp(c.created)
            except ValueError:
                continue
            if c.id in known or age < grace:
                continue
            with contextlib.suppress(Exception):
                self.engine.remove(c.id, force=True)
                removed.append(c.id)
        return removed

    def _exited(self, ident: str) -> None:
        """A container or infra exited on its own (the watcher saw conmon's exit file):
        the STOPPED event, then the engine's cleanup (runtime delete, unmount, CNI DELs)
        in a thread. This server starts its containers with `monitor_cleanup=False`:
        conmon runs no exit command (no `corral container cleanup` process, a Python
        start-up and the engine's imports, ~100 ms of CPU, nor the exit hook's); exits
        that happen while no server runs are cleaned up when it starts. It is also
        their `rm_client`, for an engine verb (a `corral rm`) that asks."""
        self._event(ident, pb.CONTAINER_STOPPED_EVENT)

        def clean() -> None:
            with contextlib.suppress(Exception):
                self.engine.cleanup(ident, from_monitor=False)

        threading.Thread(target=clean, daemon=True, name="cri-cleanup").start()

    def _event(self, ident: str, kind: Any) -> None:
        """Publish a ContainerEventResponse for a container or sandbox `ident`."""
        def make() -> Any:
            try:
                record = self.records.container(ident)
                sid = record["sandbox_id"]
            except NotFound:
                sid = ident  # a sandbox
            event = pb.ContainerEventResponse(container_id=ident, container_event_type=kind,
                                              created_at=time.time_ns())
            with contextlib.suppress(NotFound):
                event.pod_sandbox_status.CopyFrom(inspect.unwrap(type(self).PodSandboxStatus)(
                    self, pb.PodSandboxStatusRequest(pod_sandbox_id=sid), None).status)
            for rec in self._containers_of(sid):
                with contextlib.suppress(NotFound):
                    event.containers_statuses.append(inspect.unwrap(type(self).ContainerStatus)(
                        self, pb.ContainerStatusRequest(container_id=rec["id"]), None).status)
            return event

        self.events.publish(make)

    def GetContainerEvents(self, request: Any, context: Any) -> Any:
        """GetEventsRequest → a stream of ContainerEventResponse (created, started,
        stopped — also when a container exits by itself — and deleted), each with the
        pod's status and its containers' statuses."""
        return self.events.subscribe(context.is_active)

    # -- runtime ----------------------------------------------------------------------------
    @grpc_errors
    def Version(self, request: Any, context: Any) -> Any:
        """VersionRequest → runtime name/version and the CRI API version."""
        return pb.VersionResponse(version="0.1.0", runtime_name=RUNTIME_NAME,
                                  runtime_version=_version(),
                                  runtime_api_version=CRI_API_VERSION)

    @grpc_errors
    def Status(self, request: Any, context: Any) -> Any:
        """StatusResponse: RuntimeReady (conmon and the OCI runtime found) and
        NetworkReady (the CNI plugins the networks need are installed)."""
        runtime_ok, runtime_why = self._runtime_ready()
        net_ok, net_why = self._network_ready()
        conditions = [
            pb.RuntimeCondition(type="RuntimeReady", status=runtime_ok,
                                reason="" if runtime_ok else "RuntimeNotReady",
                                message=runtime_why),
            pb.RuntimeCondition(type="NetworkReady", status=net_ok,
                                reason="" if net_ok else "NetworkPluginNotReady",
                                message=net_why),
        ]
        info = {}
        if request.verbose:
            import json

            info["config"] = json.dumps({"root": str(self.engine.root),
                                         "network": self.network or "",
                                         "cgroupDriver": self.cgroup_driver,
                                         "runtimeHandlers": self.handlers.as_dict()})
        return pb.StatusResponse(status=pb.RuntimeStatus(conditions=conditions), info=info,
                                 runtime_handlers=self.handlers.runtime_handlers(),
                                 features=pb.RuntimeFeatures(mount_options=True))

    def _runtime_ready(self) -> tuple[bool, str]:
        from corral.engine import conmon
        from corral.engine.oci import resolve_runtime

        try:
            conmon.conmon_path()
            runtime = resolve_runtime(self.engine.default_runtime)
        except Exception as exc:  # noqa: BLE001 - reported in the condition
            return False, str(exc)
        if not (os.path.isabs(runtime) and os.access(runtime, os.X_OK)):
            import shutil

            if shutil.which(runtime) is None:
                return False, f"OCI runtime {runtime!r} not found"
        return True, ""

    def _network_ready(self) -> tuple[bool, str]:
        from corral.engine import networking

        try:
            config = networking._engine_config(self.engine)
            dirs = list(config.cni_plugin_dirs)
        except Exception as exc:  # noqa: BLE001 - reported in the condition
            return False, str(exc)
        for plugin in ("bridge", "host-local", "loopback"):
            if not any(os.access(os.path.join(d, plugin), os.X_OK) for d in dirs):
                return False, (f"CNI plugin {plugin!r} not found in {':'.join(dirs)} "
                               "(apt-get install containernetworking-plugins)")
        return True, ""

    @grpc_errors
    def RuntimeConfig(self, request: Any, context: Any) -> Any:
        """RuntimeConfigResponse.linux.cgroup_driver: CGROUPFS (corral drives cgroupfs)."""
        driver = pb.SYSTEMD if self.cgroup_driver == "systemd" else pb.CGROUPFS
        return pb.RuntimeConfigResponse(
            linux=pb.LinuxRuntimeConfiguration(cgroup_driver=driver))

    @grpc_errors
    def UpdateRuntimeConfig(self, request: Any, context: Any) -> Any:
        """UpdateRuntimeConfigRequest (pod CIDR): accepted; the CNI network has its own."""
        return pb.UpdateRuntimeConfigResponse()

    # -- pod sandboxes ------------------------------------------------------------------------
    @grpc_errors
    def RunPodSandbox(self, request: Any, context: Any) -> Any:
        """RunPodSandboxRequest → the infra container created and started on the pod's
        network. Any failure (CNI ADD included) removes what was made."""
        config = request.config
        translate.check_sandbox_metadata(config if request.HasField("config") else None)
        handler = self.handlers.get(request.runtime_handler)  # NotFound: nothing made
        linux_cfg = config.linux if config.HasField("linux") else None
        # the pod cgroup's path and limits: checked before anything is made
        pod_res = translate.pod_resources(linux_cfg) if linux_cfg is not None else {}
        parent = linux_cfg.cgroup_parent if linux_cfg is not None else ""
        if parent:
            parent = translate.check_cgroup_parent(parent)
        elif pod_res:
            parent = podcgroup.own_path(self.pod_cgroup_root)
        engine = self.engine
        image = pause.ensure(engine.store)
        from corral.cri import shm

        shm_dir = shm.make(engine.root) if _pod_ipc(config) != translate.NODE else None
        try:
            ccfg = translate.sandbox_config(
                config, image=image, network=self.network, command=pause.COMMAND,
                cgroup_parent=parent or None, shm_path=str(shm_dir) if shm_dir else None)
            ccfg.name = translate.sandbox_name(config)
            ccfg.runtime = handler.runtime
            # the start follows at once: the rootfs stays mounted for it (an unmount, an
            # RCU grace period under storage.lock, and a mount saved)
            c = engine.create(ccfg, keep_mounted=True)
        except BaseException:
            shm.unmount(shm_dir)
            raise
        with self._pod_lock(c.id):
            record = {"id": c.id, "created_at": time.time_ns(), "state": "ready",
                      "config": encode(config), "runtime_handler": request.runtime_handler,
                      "runtime": handler.runtime, "cgroup_parent": parent,
                      "pod_cgroup_made": False, "shm": str(shm_dir) if shm_dir else ""}
            try:
                if parent:  # made (if new) and sized before the infra joins it
                    record["pod_cgroup_made"] = podcgroup.apply(parent, pod_res)
                self.records.save_sandbox(record)
                self._event(c.id, pb.CONTAINER_CREATED_EVENT)
                engine.start(c.id, rm_client=os.getpid(), monitor_cleanup=False)  # see _exited
            except BaseException:
                with contextlib.suppress(Exception):
                    engine.remove(c.id, force=True)
                shm.unmount(shm_dir)
                if record["pod_cgroup_made"]:
                    podcgroup.remove(parent)
                self.records.drop_sandbox(c.id)
                raise
        self.exits.watch(c.id)
        self._event(c.id, pb.CONTAINER_STARTED_EVENT)
        return pb.RunPodSandboxResponse(pod_sandbox_id=c.id)

    def _pod_shm(self, sandbox_id: str, record: dict | None = None) -> Path | None:
        """The pod's shm directory: its record's, or (a pod of an older server) the one
        in the infra's bundle."""
        if record is None:
            with contextlib.suppress(SandboxNotFound):
                record = self.records.sandbox(sandbox_id)
        if record and record.get("shm"):
            return Path(record["shm"])
        from corral.cri import shm

        with contextlib.suppress(NotFound):
            return shm.legacy_path(self.engine.store.container_dir(sandbox_id))
        return None

    def _unmount_shm(self, sandbox_id: str, record: dict | None = None) -> None:
        from corral.cri import shm

        shm.unmount(self._pod_shm(sandbox_id, record))

    def _record_resources(self, c: Any, resources: dict) -> None:
        """UpdateContainerResources: the new limits merged into the container's OCI
        spec, which the runtime applied to the running container already (what
        ContainerStatus and a restart then see). The engine has no update verb to do
        this (docs/design/cri.md)."""
        path = c.bundle / "config.json"
        spec = read_json(path, None)
        if spec is None:
            raise NotFound(f"container {c.id}: no OCI spec in its bundle")
        current = spec.setdefault("linux", {}).setdefault("resources", {})
        for key, value in resources.items():
            if isinstance(value, dict):
                current.setdefault(key, {}).update(value)
            else:
                current[key] = value
        write_json(path, spec)

    def _containers_of(self, sandbox_id: str) -> list[dict]:
        return [r for r in self.records.all_containers() if r.get("sandbox_id") == sandbox_id]

    @grpc_errors
    def StopPodSandbox(self, request: Any, context: Any) -> Any:
        """StopPodSandboxRequest: every container of the pod and the infra stopped, the
        pod's network torn down; SANDBOX_NOTREADY. Idempotent (a gone pod is no error)."""
        try:
            sid = self.records.sandbox_id(request.pod_sandbox_id)
        except SandboxNotFound:
            return pb.StopPodSandboxResponse()
        with self._pod_lock(sid):
            # kubelet stopped the containers gracefully already: the rest are killed,
            # all at once (the infra's network goes down in its cleanup)
            ids = [rec["id"] for rec in self._containers_of(sid)] + [sid]
            _each(lambda ident: self._stop(ident, 0), ids)
            self._unmount_shm(sid)  # as containerd: the pod's files go now
            with contextlib.suppress(SandboxNotFound):
                record = self.records.sandbox(sid)
                record["state"] = "notready"
                self.records.save_sandbox(record)
        return pb.StopPodSandboxResponse()

    @grpc_errors
    def RemovePodSandbox(self, request: Any, context: Any) -> Any:
        """RemovePodSandboxRequest: the pod's containers and infra removed (forcibly).
        Idempotent: removing a gone pod is no error."""
        try:
            sid = self.records.sandbox_id(request.pod_sandbox_id)
        except SandboxNotFound:
            return pb.RemovePodSandboxResponse()
        with self._pod_lock(sid):
            recs = self._containers_of(sid)
            sandbox: dict = {}
            with contextlib.suppress(SandboxNotFound):
                sandbox = self.records.sandbox(sid)

            def remove(ident: str) -> None:
                self.exits.forget(ident)
                with contextlib.suppress(NotFound):
                    self.engine.remove(ident, force=True)

            _each(remove, [rec["id"] for rec in recs])
            for rec in recs:
                self.records.drop_container(rec["id"])
                _forget_stats(rec["id"])
            self._unmount_shm(sid, sandbox or None)
            remove(sid)  # last: the containers joined its namespaces
            if sandbox.get("pod_cgroup_made") and sandbox.get("cgroup_parent"):
                podcgroup.remove(sandbox["cgroup_parent"])
            for rec in recs:
                self._event(rec["id"], pb.CONTAINER_DELETED_EVENT)
            self._event(sid, pb.CONTAINER_DELETED_EVENT)
            self.records.drop_sandbox(sid)
        with self._locks_guard:
            self._locks.pop(sid, None)
            _forget_stats(sid)
            _forget_stats(f"pod-{sid}")
        return pb.RemovePodSandboxResponse()

    def _sandbox_state(self, record: dict) -> tuple[Any, Any]:
        """(PodSandboxState, the infra engine container or None)."""
        try:
            c = self.engine.get(record["id"])
        except NotFound:
            return pb.SANDBOX_NOTREADY, None
        ready = record.get("state") == "ready" and c.status == "running"
        return (pb.SANDBOX_READY if ready else pb.SANDBOX_NOTREADY), c

    @grpc_errors
    def PodSandboxStatus(self, request: Any, context: Any) -> Any:
        """PodSandboxStatusRequest → state, pod IP(s), namespaces options; with verbose,
        info["info"] as JSON (the infra container's pid, image, network)."""
        record = self.records.sandbox(request.pod_sandbox_id)
        config = decode(pb.PodSandboxConfig, record["config"])
        state, c = self._sandbox_state(record)
        ips: list[str] = []
        if c is not None and state == pb.SANDBOX_READY:
            for attached in c.state.networks:
                ips.extend(ip.split("/")[0] for ip in attached.get("ips") or [])
        ns = translate.namespace_options(config.linux if config.HasField("linux") else None)
        status = pb.PodSandboxStatus(
            id=record["id"], metadata=config.metadata, state=state,
            created_at=record["created_at"],
            network=pb.PodSandboxNetworkStatus(
                ip=ips[0] if ips else "",
                additional_ips=[pb.PodIP(ip=ip) for ip in ips[1:]]),
            linux=pb.LinuxPodSandboxStatus(namespaces=pb.Namespace(
                options=ns if ns is not None else pb.NamespaceOption())),
            labels=config.labels, annotations=config.annotations,
            runtime_handler=record.get("runtime_handler", ""))
        info = {}
        if request.verbose:
            import json

            info["info"] = json.dumps({
                "pid": (c.state.pid or 0) if c is not None else 0,
                "image": pause.PAUSE_IMAGE, "infraContainer": record["id"],
                "cgroupParent": record.get("cgroup_parent", ""),
                "networks": c.state.networks if c is not None else [],
                "ports": c.state.ports if c is not None else []})
        statuses = []
        for rec in self._containers_of(record["id"]):  # evented PLEG reads them
            with contextlib.suppress(NotFound):
                statuses.append(inspect.unwrap(type(self).ContainerStatus)(
                    self, pb.ContainerStatusRequest(container_id=rec["id"]), None).status)
        return pb.PodSandboxStatusResponse(status=status, info=info,
                                           containers_statuses=statuses,
                                           timestamp=time.time_ns())

    @grpc_errors
    def ListPodSandbox(self, request: Any, context: Any) -> Any:
        """ListPodSandboxRequest.filter: id (or a prefix), state, label_selector."""
        f = request.filter if request.HasField("filter") else None
        items = []
        for record in self.records.all_sandboxes():
            if f is not None and f.id and not record["id"].startswith(f.id):
                continue
            config = decode(pb.PodSandboxConfig, record["config"])
            if f is not None and not _labels_match(config.labels, f.label_selector):
                continue
            state, _c = self._sandbox_state(record)
            if f is not None and f.HasField("state") and f.state.state != state:
                continue
            items.append(pb.PodSandbox(
                id=record["id"], metadata=config.metadata, state=state,
                created_at=record["created_at"], labels=config.labels,
                annotations=config.annotations,
                runtime_handler=record.get("runtime_handler", "")))
        return pb.ListPodSandboxResponse(items=items)

    def StreamPodSandboxes(self, request: Any, context: Any) -> Any:
        """StreamPodSandboxesRequest → ListPodSandbox's items, STREAM_PAGE a message
        (kubelet's CRIListStreaming; errors as ListPodSandbox's)."""
        items = self.ListPodSandbox(filtered(pb.ListPodSandboxRequest, request),
                                    context).items
        yield from pages(items, lambda chunk: pb.StreamPodSandboxesResponse(
            pod_sandboxes=chunk))

    # -- containers ---------------------------------------------------------------------------
    @grpc_errors
    def CreateContainer(self, request: Any, context: Any) -> Any:
        """CreateContainerRequest → an engine container in the pod's namespaces, its log
        at PodSandboxConfig.log_directory/ContainerConfig.log_path."""
        if not request.pod_sandbox_id:
            raise InvalidArgument("CreateContainerRequest.pod_sandbox_id is required")
        record = self.records.sandbox(request.pod_sandbox_id)
        sid = record["id"]
        sandbox = (decode(pb.PodSandboxConfig, record["config"])
                   if not request.HasField("sandbox_config") else request.sandbox_config)
        config = request.config if request.HasField("config") else None
        if config is None or not config.HasField("metadata") or not config.metadata.name:
            raise InvalidArgument("ContainerConfig.metadata.name is required")
        if not config.HasField("image") or not config.image.image:
            raise InvalidArgument("ContainerConfig.image.image is required")
        state, infra = self._sandbox_state(record)
        if state != pb.SANDBOX_READY or infra is None:
            raise FailedPrecondition(f"pod sandbox {sid[:12]} is not ready")
        image = self.engine.store.image(config.image.image)  # NotFound: not pulled
        log_path = None
        if config.log_path:
            if os.path.isabs(config.log_path) or ".." in config.log_path.split("/"):
                raise InvalidArgument(f"ContainerConfig.log_path {config.log_path!r} must be "
                                      "relative to the pod's log_directory")
            if not sandbox.log_directory:
                raise InvalidArgument("ContainerConfig.log_path given but the pod has no "
                                      "log_directory")
            log_path = os.path.join(sandbox.log_directory, config.log_path)
        linux = sandbox.linux if sandbox.HasField("linux") else None
        parent = record.get("cgroup_parent",
                            linux.cgroup_parent if linux is not None else "")
        shm_dir = self._pod_shm(sid, record)
        ccfg = translate.container_config(
            config, sandbox, sandbox_id=sid, image=image.id, log_path=log_path,
            cgroup_parent=parent or None,
            shm_path=str(shm_dir) if shm_dir is not None and os.path.ismount(shm_dir)
            else None)
        ccfg.name = translate.container_name(config, sandbox)
        ccfg.runtime = infra.runtime  # the pod's runtime handler's
        rro = [m.container_path for m in config.mounts if m.recursive_read_only]
        if rro and not self.handlers.rro(infra.runtime):
            raise InvalidArgument(f"Mount {rro[0]}: recursive_read_only is not supported by "
                                  f"the pod's runtime handler "
                                  f"{record.get('runtime_handler', '')!r} "
                                  f"({os.path.basename(infra.runtime)})")
        if config.stop_signal:  # Signal enum: SIGNAL_SIGINT -> SIGINT
            ccfg.stop_signal = pb.Signal.Name(config.stop_signal).removeprefix("SIGNAL_")
        if ccfg.pid and ccfg.pid.startswith("container:") and ccfg.pid != f"container:{sid}":
            target = ccfg.pid.partition(":")[2]
            try:
                target_sid = self.records.container(target).get("sandbox_id")
            except ContainerNotFound:
                target_sid = None
            if target_sid != sid:
                raise InvalidArgument(f"NamespaceOption.target_id {target!r}: not a "
                                      f"container of pod {sid[:12]}")
            ccfg.pid = f"container:{self.records.container_id(target)}"
        if log_path:  # the engine checks the directory exists
            Path(log_path).parent.mkdir(parents=True, exist_ok=True)
        with self._pod_lock(sid):
            if self.records.sandbox(sid).get("state") != "ready":
                raise FailedPrecondition(f"pod sandbox {sid[:12]} is not ready")
            # kubelet's StartContainer follows at once (RemoveContainer unmounts if not)
            c = self.engine.create(ccfg, keep_mounted=True)
            try:
                self.records.save_container({
                    "id": c.id, "sandbox_id": sid, "created_at": time.time_ns(),
                    "config": encode(config), "image_id": image.id,
                    "image": config.image.image, "log_path": log_path or ""})
            except BaseException:
                with contextlib.suppress(Exception):
                    self.engine.remove(c.id, force=True)
                self.records.drop_container(c.id)
                raise
        self._event(c.id, pb.CONTAINER_CREATED_EVENT)
        return pb.CreateContainerResponse(container_id=c.id)

    @grpc_errors
    def StartContainer(self, request: Any, context: Any) -> Any:
        """StartContainerRequest: the created container started (FailedPrecondition when
        it is not in CONTAINER_CREATED)."""
        record = self.records.container(request.container_id)
        c = self.engine.get(record["id"])
        if c.status != "created":
            raise FailedPrecondition(f"container {c.id[:12]} is {c.status}, not created")
        self.engine.start(c.id, rm_client=os.getpid(), monitor_cleanup=False)  # see _exited
        self.exits.watch(c.id)
        self._event(c.id, pb.CONTAINER_STARTED_EVENT)
        return pb.StartContainerResponse()

    @grpc_errors
    def StopContainer(self, request: Any, context: Any) -> Any:
        """StopContainerRequest: stop signal, then SIGKILL after `timeout` seconds.
        Stopping a stopped container is no error."""
        record = self.records.container(request.container_id)
        self._stop(record["id"], max(0, int(request.timeout)))
        return pb.StopContainerResponse()

    def _stop(self, ident: str, timeout: int) -> None:
        """engine.stop; with no grace period, SIGKILL straight away (one runtime call
        fewer than TERM-then-KILL). A gone container is no error. The exit watcher is
        told first: this call cleans up and reports the STOPPED event itself."""
        claimed = self.exits.claim(ident)
        try:
            self._stop_claimed(ident, timeout)
        except BaseException:
            if claimed:
                self.exits.watch(ident)  # still the watcher's to report
            raise
        if claimed:
            self._event(ident, pb.CONTAINER_STOPPED_EVENT)

    def _stop_claimed(self, ident: str, timeout: int) -> None:
        engine = self.engine
        try:
            if timeout > 0:
                engine.stop(ident, timeout=timeout)
                return
            if engine.get(ident).status in ("running", "paused"):
                with contextlib.suppress(Exception):
                    engine.kill(ident, "SIGKILL")
                engine.wait(ident, 30)
            # what engine.stop ends with: the runtime's delete, the network torn down
            # (the watcher's cleanup of a container that exited just before may be doing
            # it already: it takes the same lock)
            engine.cleanup(ident, from_monitor=False)
        except NotFound:
            pass

    @grpc_errors
    def RemoveContainer(self, request: Any, context: Any) -> Any:
        """RemoveContainerRequest: killed if running, then removed. Removing a gone
        container is no error."""
        try:
            cid = self.records.container_id(request.container_id)
        except ContainerNotFound:
            return pb.RemoveContainerResponse()
        sid = self.records.container(cid).get("sandbox_id") or ""
        with self._pod_lock(sid):
            self.exits.forget(cid)  # a kill by the removal is no exit to clean up after
            with contextlib.suppress(NotFound):
                self.engine.remove(cid, force=True)
            self._event(cid, pb.CONTAINER_DELETED_EVENT)
            self.records.drop_container(cid)
            _forget_stats(cid)
        return pb.RemoveContainerResponse()

    def _container_state(self, record: dict) -> tuple[Any, Any]:
        try:
            c = self.engine.get(record["id"])
        except NotFound:
            return pb.CONTAINER_UNKNOWN, None
        return {"created": pb.CONTAINER_CREATED, "running": pb.CONTAINER_RUNNING,
                "paused": pb.CONTAINER_RUNNING, "exited": pb.CONTAINER_EXITED,
                "stopped": pb.CONTAINER_EXITED}.get(c.status, pb.CONTAINER_UNKNOWN), c

    @grpc_errors
    def ListContainers(self, request: Any, context: Any) -> Any:
        """ListContainersRequest.filter: id (or prefix), state, pod_sandbox_id, labels."""
        f = request.filter if request.HasField("filter") else None
        out = []
        for record in self.records.all_containers():
            if f is not None:
                if f.id and not record["id"].startswith(f.id):
                    continue
                if f.pod_sandbox_id and not record["sandbox_id"].startswith(f.pod_sandbox_id):
                    continue
            config = decode(pb.ContainerConfig, record["config"])
            if f is not None and not _labels_match(config.labels, f.label_selector):
                continue
            state, _c = self._container_state(record)
            if f is not None and f.HasField("state") and f.state.state != state:
                continue
            out.append(pb.Container(
                id=record["id"], pod_sandbox_id=record["sandbox_id"],
                metadata=config.metadata, image=pb.ImageSpec(image=record["image"]),
                image_ref=record["image_id"], image_id=record["image_id"], state=state,
                created_at=record["created_at"], labels=config.labels,
                annotations=config.annotations))
        return pb.ListContainersResponse(containers=out)

    def StreamContainers(self, request: Any, context: Any) -> Any:
        """StreamContainersRequest → ListContainers' containers, paged."""
        items = self.ListContainers(filtered(pb.ListContainersRequest, request),
                                    context).containers
        yield from pages(items, lambda chunk: pb.StreamContainersResponse(containers=chunk))

    @grpc_errors
    def ContainerStatus(self, request: Any, context: Any) -> Any:
        """ContainerStatusRequest → state, times, exit code and reason, mounts, log path."""
        record = self.records.container(request.container_id)
        config = decode(pb.ContainerConfig, record["config"])
        state, c = self._container_state(record)
        st = c.state if c is not None else None
        exit_code = (st.exit_code or 0) if st is not None else 0
        reason = message = ""
        if state == pb.CONTAINER_EXITED:
            reason = "Completed" if exit_code == 0 else "Error"
            if st is not None and st.error:
                message = st.error
            if _oom_killed(c):
                reason = "OOMKilled"
        elif state == pb.CONTAINER_CREATED and st is not None and st.error:
            reason, message = "CreateContainerError", st.error
        status = pb.ContainerStatus(
            id=record["id"], metadata=config.metadata, state=state,
            created_at=record["created_at"],
            started_at=_ns(st.started_at) if st is not None else 0,
            finished_at=self._finished_at(c) if state == pb.CONTAINER_EXITED else 0,
            exit_code=exit_code, image=pb.ImageSpec(image=record["image"]),
            image_ref=record["image_id"], image_id=record["image_id"], reason=reason,
            message=message, labels=config.labels, annotations=config.annotations,
            mounts=list(config.mounts), log_path=record.get("log_path", ""),
            stop_signal=config.stop_signal)
        if c is not None:
            _status_from_spec(status, read_json(c.bundle / "config.json", {}) or {})
        info = {}
        if request.verbose and c is not None:
            import json

            info["info"] = json.dumps({"pid": st.pid or 0 if st else 0,
                                       "sandboxID": record["sandbox_id"],
                                       "bundle": str(c.bundle)})
        return pb.ContainerStatusResponse(status=status, info=info)

    def _finished_at(self, c: Any) -> int:
        """The engine records finished_at in its exit path; until that ran, the time
        conmon wrote the exit file — not before started_at: file times come from the
        kernel's coarse clock (up to a tick behind), and a process exiting within a
        millisecond of its start would seem to end before it began."""
        if c.state.finished_at:
            return _ns(c.state.finished_at)
        try:
            mtime = os.stat(self.engine._exit_file(c.id)).st_mtime_ns
        except OSError:
            return 0
        return max(mtime, _ns(c.state.started_at))

    @grpc_errors
    def ReopenContainerLog(self, request: Any, context: Any) -> Any:
        """ReopenContainerLogRequest: conmon reopens the log file (after kubelet's
        rotation); FailedPrecondition unless the container runs."""
        record = self.records.container(request.container_id)
        c = self.engine.get(record["id"])
        if c.status != "running":
            raise FailedPrecondition(f"container {c.id[:12]} is {c.status}, not running")
        ctl = c.bundle / "ctl"
        fd = os.open(ctl, os.O_WRONLY | os.O_NONBLOCK)
        try:
            os.write(fd, b"2 0 0\n")  # conmon's ctl: 2 = reopen the log file
        finally:
            os.close(fd)
        return pb.ReopenContainerLogResponse()

    @grpc_errors
    def UpdateContainerResources(self, request: Any, context: Any) -> Any:
        """UpdateContainerResourcesRequest.linux → the OCI runtime's `update --resources`
        on the running container, and its spec (what a later inspect reports)."""
        record = self.records.container(request.container_id)
        if not request.HasField("linux"):
            return pb.UpdateContainerResourcesResponse()
        c = self.engine.get(record["id"])
        resources = translate.oci_resources(request.linux)
        if c.status in ("running", "paused"):
            path = c.bundle / f"update-{secrets.token_hex(6)}.json"
            write_json(path, resources)
            try:
                result = self.engine._runtime(c).call("update", "--resources", str(path),
                                                      c.id, check=False)
            finally:
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()
            if result.returncode != 0:
                raise InvalidArgument(f"UpdateContainerResources {c.id[:12]}: "
                                      f"{result.stderr.strip()}")

        self._record_resources(c, resources)
        return pb.UpdateContainerResourcesResponse()

    @grpc_errors
    def UpdatePodSandboxResources(self, request: Any, context: Any) -> Any:
        """UpdatePodSandboxResourcesRequest.resources/.overhead → the pod cgroup's limits
        (as at RunPodSandbox: resources + overhead) and the pod's recorded config.
        FailedPrecondition for a pod with no pod cgroup (neither cgroup_parent nor
        resources/overhead at RunPodSandbox) or one that is not ready."""
        if not request.pod_sandbox_id:
            raise InvalidArgument("UpdatePodSandboxResourcesRequest.pod_sandbox_id is "
                                  "required")
        res = translate.pod_resources(
            None, resources=request.resources if request.HasField("resources") else None,
            overhead=request.overhead if request.HasField("overhead") else None,
            what="UpdatePodSandboxResourcesRequest")
        sid = self.records.sandbox_id(request.pod_sandbox_id)
        with self._pod_lock(sid):
            record = self.records.sandbox(sid)
            config = decode(pb.PodSandboxConfig, record["config"])
            parent = record.get("cgroup_parent", config.linux.cgroup_parent)
            if not parent:
                raise FailedPrecondition(f"pod sandbox {sid[:12]} has no pod cgroup (made "
                                         "without cgroup_parent, resources or overhead)")
            state, _c = self._sandbox_state(record)
            if state != pb.SANDBOX_READY:
                raise FailedPrecondition(f"pod sandbox {sid[:12]} is not ready")
            podcgroup.apply(parent, res)
            for name in ("resources", "overhead"):
                if request.HasField(name):
                    getattr(config.linux, name).CopyFrom(getattr(request, name))
            record["config"] = encode(config)
            self.records.save_sandbox(record)
        return pb.UpdatePodSandboxResourcesResponse()

    # -- stats --------------------------------------------------------------------------------
    def _container_stats(self, record: dict) -> tuple[Any, dict]:
        from corral.cri import stats

        config = decode(pb.ContainerConfig, record["config"])
        try:
            c = self.engine.get(record["id"])
        except NotFound:
            c = None
        return stats.container_stats(self.engine, record, config, c)

    @grpc_errors
    def ContainerStats(self, request: Any, context: Any) -> Any:
        """ContainerStatsRequest → cpu (cumulative and nano-cores), memory (working set,
        usage, rss, faults), swap of a container; zero-less empty usage when stopped."""
        record = self.records.container(request.container_id)
        return pb.ContainerStatsResponse(stats=self._container_stats(record)[0])

    @grpc_errors
    def ListContainerStats(self, request: Any, context: Any) -> Any:
        """ListContainerStatsRequest.filter: id, pod_sandbox_id, label_selector; the
        running containers' stats (sampled in parallel)."""
        f = request.filter if request.HasField("filter") else None
        records = []
        for record in self.records.all_containers():
            if f is not None:
                if f.id and not record["id"].startswith(f.id):
                    continue
                if f.pod_sandbox_id and not record["sandbox_id"].startswith(f.pod_sandbox_id):
                    continue
                if f.label_selector and not _labels_match(
                        decode(pb.ContainerConfig, record["config"]).labels, f.label_selector):
                    continue
            records.append(record)
        return pb.ListContainerStatsResponse(
            stats=[s for s, _ in _map(self._container_stats, records)])

    def StreamContainerStats(self, request: Any, context: Any) -> Any:
        """StreamContainerStatsRequest → ListContainerStats' stats, paged."""
        items = self.ListContainerStats(filtered(pb.ListContainerStatsRequest, request),
                                        context).stats
        yield from pages(items, lambda chunk: pb.StreamContainerStatsResponse(
            container_stats=chunk))

    def _sandbox_stats(self, record: dict) -> Any:
        from corral.cri import stats

        config = decode(pb.PodSandboxConfig, record["config"])
        now = time.time_ns()
        out = pb.PodSandboxStats(attributes=pb.PodSandboxAttributes(
            id=record["id"], metadata=config.metadata, labels=config.labels,
            annotations=config.annotations))
        state, infra = self._sandbox_state(record)
        if state != pb.SANDBOX_READY or infra is None:
            return out
        members = self._containers_of(record["id"])
        results = _map(self._container_stats, members + [{
            "id": record["id"], "config": encode(pb.ContainerConfig(
                metadata=pb.ContainerMetadata(name="POD")))}])
        cpu = mem = rss = working = pids = 0
        for (ctr, data), rec in zip(results, members + [None], strict=True):
            if rec is not None:
                out.linux.containers.append(ctr)
            cpu += ctr.cpu.usage_core_nano_seconds.value
            mem += ctr.memory.usage_bytes.value
            rss += ctr.memory.rss_bytes.value
            working += ctr.memory.working_set_bytes.value
            pids += int((data.get("pids") or {}).get("current") or 0)
        out.linux.cpu.CopyFrom(stats.cpu_usage(f"pod-{record['id']}", {
            "cpu": {"usage": {"total": cpu}}}, now))
        out.linux.memory.CopyFrom(pb.MemoryUsage(
            timestamp=now, usage_bytes=pb.UInt64Value(value=mem),
            rss_bytes=pb.UInt64Value(value=rss), working_set_bytes=pb.UInt64Value(value=working)))
        out.linux.process.CopyFrom(pb.ProcessUsage(timestamp=now,
                                                   process_count=pb.UInt64Value(value=pids)))
        out.linux.network.CopyFrom(stats.network_usage(infra.state.pid, now))
        return out

    @grpc_errors
    def PodSandboxStats(self, request: Any, context: Any) -> Any:
        """PodSandboxStatsRequest → the pod's cpu/memory/process totals over its
        containers and infra, its network interfaces, and each container's stats."""
        record = self.records.sandbox(request.pod_sandbox_id)
        return pb.PodSandboxStatsResponse(stats=self._sandbox_stats(record))

    @grpc_errors
    def ListPodSandboxStats(self, request: Any, context: Any) -> Any:
        """ListPodSandboxStatsRequest.filter: id, label_selector."""
        f = request.filter if request.HasField("filter") else None
        records = []
        for record in self.records.all_sandboxes():
            if f is not None:
                if f.id and not record["id"].startswith(f.id):
                    continue
                if f.label_selector and not _labels_match(
                        decode(pb.PodSandboxConfig, record["config"]).labels,
                        f.label_selector):
                    continue
            records.append(record)
        return pb.ListPodSandboxStatsResponse(stats=_map(self._sandbox_stats, records))

    def StreamPodSandboxStats(self, request: Any, context: Any) -> Any:
        """StreamPodSandboxStatsRequest → ListPodSandboxStats' stats, paged."""
        items = self.ListPodSandboxStats(filtered(pb.ListPodSandboxStatsRequest, request),
                                         context).stats
        yield from pages(items, lambda chunk: pb.StreamPodSandboxStatsResponse(
            pod_sandbox_stats=chunk))

    # -- metrics ------------------------------------------------------------------------------
    @grpc_errors
    def ListMetricDescriptors(self, request: Any, context: Any) -> Any:
        """ListMetricDescriptorsRequest → every metric ListPodSandboxMetrics reports
        (cAdvisor's names; a static list, see metrics.py)."""
        from corral.cri import metrics

        return pb.ListMetricDescriptorsResponse(descriptors=metrics.descriptors())

    def _sandbox_metrics(self, record: dict) -> Any:
        """PodSandboxMetrics of a ready pod (None otherwise): each running container's
        cgroup metrics, the pod's network counters."""
        from corral.cri import metrics

        state, infra = self._sandbox_state(record)
        if state != pb.SANDBOX_READY or infra is None or not infra.state.pid:
            return None
        out = pb.PodSandboxMetrics(pod_sandbox_id=record["id"])
        for rec in self._containers_of(record["id"]):
            try:
                c = self.engine.get(rec["id"])
            except NotFound:
                continue
            if c.status not in ("running", "paused") or not c.state.pid:
                continue
            data = metrics.sample(c.state.pid)
            if data is None:
                continue
            name = decode(pb.ContainerConfig, rec["config"]).metadata.name
            out.container_metrics.append(metrics.container_metrics(
                rec["id"], (rec["id"], name, rec.get("image", "")), data,
                _ns(c.state.started_at) // 1_000_000_000))
        config = decode(pb.PodSandboxConfig, record["config"])
        ns = translate.namespace_options(config.linux if config.HasField("linux") else None)
        if ns is None or ns.network != translate.NODE:  # the node's counters are not the pod's
            out.metrics.extend(metrics.network_metrics(
                infra.state.pid, (record["id"], "POD", pause.PAUSE_IMAGE)))
        return out

    @grpc_errors
    def ListPodSandboxMetrics(self, request: Any, context: Any) -> Any:
        """ListPodSandboxMetricsRequest → the metrics of every ready pod, read live
        from the cgroups and the pods' network namespaces."""
        found = _map(self._sandbox_metrics, self.records.all_sandboxes())
        return pb.ListPodSandboxMetricsResponse(pod_metrics=[m for m in found if m is not None])

    def StreamPodSandboxMetrics(self, request: Any, context: Any) -> Any:
        """StreamPodSandboxMetricsRequest → ListPodSandboxMetrics' pods, in one message
        per pod."""
        for record in self.records.all_sandboxes():
            try:
                found = self._sandbox_metrics(record)
            except NotFound:
                continue
            if found is not None:
                yield pb.StreamPodSandboxMetricsResponse(pod_sandbox_metrics=[found])

    # -- streaming ----------------------------------------------------------------------------
    def _stream_url(self, kind: str, request: dict) -> str:
        if self.streams is None:
            from corral.errors import Unavailable

            raise Unavailable("this server has no streaming server")
        return str(self.streams.url(kind, request))

    def _running(self, container_id: str) -> Any:
        record = self.records.container(container_id)
        c = self.engine.get(record["id"])
        if c.status != "running":
            raise FailedPrecondition(f"container {c.id[:12]} is {c.status}, not running")
        return c

    @grpc_errors
    def Exec(self, request: Any, context: Any) -> Any:
        """ExecRequest → a one-time URL of the streaming server (WebSocket channel
        protocol); cmd required, one of stdout/stderr, no stderr with a tty."""
        if not request.cmd:
            raise InvalidArgument("ExecRequest.cmd is required")
        if not (request.stdout or request.stderr or request.stdin):
            raise InvalidArgument("ExecRequest: one of stdin, stdout or stderr must be set")
        if request.tty and request.stderr:
            raise InvalidArgument("ExecRequest: tty and stderr cannot both be set")
        c = self._running(request.container_id)
        return pb.ExecResponse(url=self._stream_url("exec", {
            "container_id": c.id, "cmd": list(request.cmd), "tty": request.tty,
            "stdin": request.stdin, "stdout": request.stdout, "stderr": request.stderr}))

    @grpc_errors
    def Attach(self, request: Any, context: Any) -> Any:
        """AttachRequest → a URL streaming the container's stdio through conmon."""
        if not (request.stdout or request.stderr or request.stdin):
            raise InvalidArgument("AttachRequest: one of stdin, stdout or stderr must be set")
        c = self._running(request.container_id)
        if request.tty != c.config.tty:
            raise InvalidArgument(f"AttachRequest.tty={request.tty} but the container was "
                                  f"created with tty={c.config.tty}")
        return pb.AttachResponse(url=self._stream_url("attach", {
            "container_id": c.id, "tty": request.tty, "stdin": request.stdin,
            "stdout": request.stdout, "stderr": request.stderr}))

    @grpc_errors
    def PortForward(self, request: Any, context: Any) -> Any:
        """PortForwardRequest → a URL forwarding to 127.0.0.1:<port> in the pod's
        network namespace (the ports also come from the URL's `port` query)."""
        record = self.records.sandbox(request.pod_sandbox_id)
        state, infra = self._sandbox_state(record)
        if state != pb.SANDBOX_READY or infra is None or not infra.state.pid:
            raise FailedPrecondition(f"pod sandbox {record['id'][:12]} is not ready")
        for port in request.port:
            if not 0 < port < 65536:
                raise InvalidArgument(f"PortForwardRequest.port {port}: not a TCP port")
        return pb.PortForwardResponse(url=self._stream_url("portforward", {
            "pod_sandbox_id": record["id"], "pid": infra.state.pid,
            "ports": list(request.port)}))

    # -- exec ---------------------------------------------------------------------------------
    @grpc_errors
    def ExecSync(self, request: Any, context: Any) -> Any:
        """ExecSyncRequest → stdout, stderr (each capped at 16 MiB) and the exit code;
        past `timeout` seconds the command is killed and DEADLINE_EXCEEDED returned."""
        if not request.cmd:
            raise InvalidArgument("ExecSyncRequest.cmd is required")
        record = self.records.container(request.container_id)
        stdout, stderr, code = exec_sync(self.engine, record["id"], list(request.cmd),
                                         request.timeout or None)
        return pb.ExecSyncResponse(stdout=stdout, stderr=stderr, exit_code=code)


def filtered(cls: Any, request: Any) -> Any:
    """A List* request carrying the Stream* request's filter (if it has one)."""
    out = cls()
    if request.HasField("filter"):
        out.filter.CopyFrom(request.filter)
    return out


def pages(items: Any, make: Any, size: int = STREAM_PAGE) -> Any:
    """The Stream* calls' messages: `make(chunk)` for every `size` items."""
    items = list(items)
    for start in range(0, len(items), size):
        yield make(items[start:start + size])


def _each(action: Any, items: list[str]) -> None:
    """`action(item)` for every item, in threads when there are several; the first
    error is raised once all are done."""
    if len(items) <= 1:
        for item in items:
            action(item)
        return
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(min(8, len(items)), thread_name_prefix="cri-each") as pool:
        futures = [pool.submit(action, item) for item in items]
    for future in futures:
        future.result()


def _forget_stats(ident: str) -> None:
    from corral.cri import stats

    stats.forget(ident)


def _map(action: Any, items: list) -> list:
    """[action(item) for item in items], in threads when there are several."""
    if len(items) <= 1:
        return [action(item) for item in items]
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(min(8, len(items)), thread_name_prefix="cri-map") as pool:
        return list(pool.map(action, items))


def _status_from_spec(status: Any, spec: dict) -> None:
    """ContainerStatus.resources and .user from the container's OCI spec (what it
    runs with, after UpdateContainerResources too)."""
    res = (spec.get("linux") or {}).get("resources") or {}
    cpu, memory = res.get("cpu") or {}, res.get("memory") or {}
    linux = status.resources.linux
    linux.cpu_period = int(cpu.get("period") or 0)
    linux.cpu_quota = int(cpu.get("quota") or 0)
    linux.cpu_shares = int(cpu.get("shares") or 0)
    linux.cpuset_cpus = str(cpu.get("cpus") or "")
    linux.cpuset_mems = str(cpu.get("mems") or "")
    linux.memory_limit_in_bytes = max(0, int(memory.get("limit") or 0))
    linux.memory_swap_limit_in_bytes = max(0, int(memory.get("swap") or 0))
    linux.oom_score_adj = int((spec.get("process") or {}).get("oomScoreAdj") or 0)
    user = (spec.get("process") or {}).get("user") or {}
    status.user.linux.uid = int(user.get("uid") or 0)
    status.user.linux.gid = int(user.get("gid") or 0)
    status.user.linux.supplemental_groups.extend(int(g) for g in
                                                 user.get("additionalGids") or [])


def _pod_ipc(config: Any) -> int:
    ns = translate.namespace_options(config.linux if config.HasField("linux") else None)
    return ns.ipc if ns is not None else translate.POD


def _oom_killed(c: Any) -> bool:
    """conmon watches the container's cgroup (memory.events oom_kill) and writes `oom`
    in its working directory, the bundle, when the kernel's OOM killer struck."""
    return (c.bundle / "oom").exists() if c is not None else False


def _start_failure(stderr: str, runtime: str) -> str | None:
    """The OCI runtime's own report that the process could not be started (not the
    process's stderr): corral-runtime's `corral-runtime: exec: ...`, runc's
    `exec failed: unable to start container process: ...`."""
    lines = [line for line in stderr.strip().splitlines() if line.strip()]
    if not lines:
        return None
    last = lines[-1]
    name = os.path.basename(runtime)
    if last.startswith(f"{name}: exec: ") or "unable to start container process" in last:
        return last
    return None


def exec_sync(engine: Any, container_id: str, argv: list[str],
              timeout: float | None) -> tuple[bytes, bytes, int]:
    """Run `argv` in the running container through the OCI runtime's `exec`, output
    captured; on timeout the process (its pid from --pid-file) and the runtime are
    killed and DeadlineExceeded raised."""
    c = engine.get(container_id)
    if c.status != "running":
        raise FailedPrecondition(f"container {c.id[:12]} is {c.status}, not running")
    spec = read_json(c.bundle / "config.json", {})
    process = dict(spec.get("process") or {})
    process["args"] = argv
    process["terminal"] = False
    process.pop("consoleSize", None)
    rt = engine._runtime(c)
    token = secrets.token_hex(6)
    pfile = c.bundle / f"exec-{token}.json"
    pidfile = c.bundle / f"exec-{token}.pid"
    write_json(pfile, process)
    try:
        proc = subprocess.Popen(rt.argv("exec", "--process", str(pfile), "--pid-file",
                                        str(pidfile), c.id),
                                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE)
        try:
            out, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(OSError, ValueError):
                os.kill(int(pidfile.read_text().strip()), signal.SIGKILL)
            proc.kill()
            proc.communicate()
            raise DeadlineExceeded(f"ExecSync {argv[0]!r} in {c.id[:12]}: timed out after "
                                   f"{timeout}s") from None
        if proc.returncode != 0 and not out:
            failure = _start_failure(err.decode(errors="replace"), rt.path)
            if failure:
                raise ExecFailed(f"failed to exec in container {c.id[:12]}: {failure}")
        return out[:EXEC_OUTPUT_CAP], err[:EXEC_OUTPUT_CAP], proc.returncode
    finally:
        for path in (pfile, pidfile):
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
