"""The engine's side of networking (docs/design/networking.md): network flags → a mode
and networks, the spec's network namespace, CNI attach at start and detach at cleanup,
published ports, and /etc/hosts of a container and of its peers on shared networks.

Modes: `none`/`private` (a new netns with only `lo`, made by the runtime), `host`,
`container:<id>` (join a running container's netns and its hosts/resolv.conf), and
`bridge` with CNI networks (the default network when none is named). The `corral network`
verbs (connect, disconnect, rm, prune, check) are in `corral.engine.network_verbs`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

from corral import records_light
from corral.errors import FailedPrecondition, InvalidArgument, NotFound

TYPE_CHECKING = False  # typing costs ~3 ms to import: annotations only
if TYPE_CHECKING:
    from typing import Any

LOOPBACK_MODES = ("none", "private")
SIMPLE_MODES = ("none", "private", "host")
DEFAULT_ALIAS = "bridge"  # the default network, by docker's name for it


def parse_network_flags(values: list[str] | tuple[str, ...] | str | None,
                        default_mode: str = "bridge") -> tuple[str, list[str]]:
    """`--network` values (repeatable, comma lists) → (mode, network names)."""
    if isinstance(values, str):
        values = [values]
    items = [item.strip() for value in values or [] for item in value.split(",")]
    items = [item for item in items if item]
    if not items:
        if default_mode in SIMPLE_MODES or default_mode == "bridge":
            return default_mode, []
        return parse_network_flags([default_mode], "bridge")
    special = [i for i in items if i in SIMPLE_MODES or i.startswith("container:")]
    if special:
        if len(items) > 1:
            raise InvalidArgument(f"--network {special[0]} cannot be combined with other "
                                  "networks")
        mode = special[0]
        if mode.startswith("container:") and not mode.partition(":")[2]:
            raise InvalidArgument("--network container: needs a container name or id")
        return mode, []
    names = list(dict.fromkeys(items))
    if names == [DEFAULT_ALIAS]:
        return "bridge", []
    return "bridge", names


def _engine_config(engine: Any) -> Any:
    config = getattr(engine, "config", None)
    if config is None:
        from corral.engine.config_file import load

        config = load()
        engine.config = config
    return config


def manager(engine: Any) -> Any:
    """The engine's NetworkManager (one per Engine)."""
    cached = getattr(engine, "_network_manager", None)
    if cached is None:
        from corral.network.manager import NetworkManager
        from corral.network.networks import NetworkStore

        config = _engine_config(engine)
        store = NetworkStore(Path(engine.root) / "networks",
                             default_name=config.default_network,
                             default_subnet=config.default_subnet,
                             default_bridge=config.default_bridge)
        cached = NetworkManager(Path(engine.root), networks=store,
                                plugin_dirs=config.cni_plugin_dirs)
        engine._network_manager = cached
    return cached


def network_names(engine: Any, config: Any) -> list[str]:
    """The CNI networks of a bridge-mode config (default network if none named)."""
    m = manager(engine)
    names = list(config.networks) or [m.networks.default_name]
    return [m.networks.default_name if n == DEFAULT_ALIAS else n for n in names]


# -- create ---------------------------------------------------------------------------------
def prepare_create(engine: Any, config: Any, image_config: Any) -> Any:
    """Check and resolve the network options before anything is made; returns the config
    with networks resolved to names, `container:` to a full id and `-P` expanded."""
    from corral.network.ports import parse_exposed, parse_publish

    if not config.network:  # the Python API without a mode: the configured default
        mode, names = parse_network_flags([], _engine_config(engine).netns or "bridge")
        config = records_light.replace(config, network=mode,
                                     networks=list(config.networks) or names)
    mode = config.network
    wants_cni = bool(config.publish or config.publish_all or config.ip or config.mac_address
                     or config.network_aliases)
    if mode != "bridge":
        if wants_cni:
            raise InvalidArgument(f"--network {mode}: -p/-P, --ip, --mac-address and "
                                  "--network-alias need a bridge network")
        if mode.startswith("container:"):
            target = engine.get(mode.partition(":")[2])
            return records_light.replace(config, network=f"container:{target.id}")
        if mode not in SIMPLE_MODES:
            raise InvalidArgument(f"--network {mode!r}: unknown mode")
        return config
    m = manager(engine)
    names = []
    for name in network_names(engine, config):
        names.append(m.networks.get(name).name)
    publish = list(config.publish)
    for text in publish:
        parse_publish(text)
    if config.publish_all:
        exposed = getattr(image_config, "exposed_ports", None) or {}
        taken = {(m.container_port, m.protocol) for text in publish
                 for m in parse_publish(text)}
        for mapping in parse_exposed(exposed):
            if (mapping.container_port, mapping.protocol) not in taken:
                publish.append(f"{mapping.container_port}/{mapping.protocol}")
    if config.ip and len(names) > 1:
        raise InvalidArgument("--ip needs exactly one network")
    return records_light.replace(config, networks=names, publish=publish, publish_all=False)


def launch_at_create(config: Any) -> bool:
    """Whether `run`'s create may launch the runtime (Engine.create(start_next=True)):
    its spec is final there for none/private/host, and for a bridge network once create
    has made the netns (`begin`, moved from start to create then); not for `container:`
    (start points the spec at the target's current netns)."""
    return (config.network or "bridge") in (*SIMPLE_MODES, "bridge")


def adjust_spec(engine: Any, config: Any, spec: dict, container_id: str) -> None:
    """Point the spec's network namespace at the container's netns file (bridge), or
    bind the other container's hosts/resolv.conf (container:)."""
    mode = config.network or "bridge"
    namespaces = spec.get("linux", {}).get("namespaces") or []
    if mode == "bridge":
        for ns in namespaces:
            if ns.get("type") == "network":
                ns["path"] = str(manager(engine).netns_path(container_id))
    elif mode.startswith("container:"):
        target_id = mode.partition(":")[2]
        bundle = engine.store.container_dir(target_id)
        taken = {m["destination"] for m in spec.get("mounts") or []}
        for dest, fname in (("/etc/hosts", "hosts"), ("/etc/resolv.conf", "resolv.conf")):
            if dest not in taken:
                spec.setdefault("mounts", []).append(
                    {"destination": dest, "type": "bind", "source": str(bundle / fname),
                     "options": ["bind", "rprivate"]})


# -- start ----------------------------------------------------------------------------------
class Pending:
    """A CNI ADD running in a thread while the runtime creates the container."""

    def __init__(self, engine: Any, c: Any, requests: list[Any], mappings: list[Any]
                 ) -> None:
        import threading

        self.engine, self.c, self.mappings = engine, c, mappings
        self.result: list[Any] = []
        self.error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, args=(requests,), daemon=True)
        self._thread.start()

    def _run(self, requests: list[Any]) -> None:
        try:
            self.result = manager(self.engine).attach(self.c.id, requests)
        except BaseException as exc:  # noqa: BLE001 - re-raised in finish()
            self.error = exc

    def finish(self) -> None:
        """Wait for the ADDs; record them in the state; write hosts files (in place: the
        container's is bind-mounted by now). Raises the ADD's error, all undone."""
        self._thread.join()
        engine, c = self.engine, self.c
        if self.error is not None:
            teardown(engine, c)
            raise self.error
        c.state.networks = [a.to_json() for a in self.result]
        c.state.ports = [p.to_json() for p in self.mappings]
        try:
            publish_names(engine, c)
        except BaseException:
            teardown(engine, c)
            raise

    def abandon(self) -> None:
        """The start failed elsewhere: wait for the ADDs, then undo them."""
        self._thread.join()
        teardown(self.engine, self.c)


def begin(engine: Any, c: Any) -> Pending | None:
    """Before the runtime creates the container: the netns made (bridge) and its CNI
    ADDs started in a thread, or the target's netns path set (container:). Call
    `finish()` on the result before the container starts."""
    mode = c.config.network or "bridge"
    if mode.startswith("container:"):
        _join_container(engine, c, mode.partition(":")[2])
        return None
    if mode != "bridge":
        return None
    from corral.network.manager import Request
    from corral.network.ports import parse_publish

    m = manager(engine)
    with contextlib.suppress(Exception):
        reconcile(engine)
    m.teardown(c.id)  # anything a crash left for this id
    mappings = m.reserve_ports(c.id, [pm for text in c.config.publish
                                      for pm in parse_publish(text)])
    requests = []
    for index, name in enumerate(network_names(engine, c.config)):
        requests.append(Request(network=m.networks.get(name),
                                ip=c.config.ip if index == 0 else None,
                                mac=c.config.mac_address if index == 0 else None,
                                aliases=list(c.config.network_aliases),
                                ports=mappings if index == 0 else []))
    try:
        m.prepare(c.id, requests, clean=False)
    except BaseException:
        m.teardown(c.id)  # the port reservation
        raise
    return Pending(engine, c, requests, mappings)


def setup(engine: Any, c: Any) -> None:
    """`begin` and `finish` in one go (network connect, tests)."""
    pending = begin(engine, c)
    if pending is not None:
        pending.finish()


def _join_container(engine: Any, c: Any, target_id: str) -> None:
    from corral.storage.records import read_json, write_json

    try:
        target = engine.get(target_id)
    except NotFound:
        raise NotFound(f"--network container:{target_id[:12]}: that container is gone") \
            from None
    if target.status != "running" or not target.state.pid:
        raise FailedPrecondition(f"--network container:{target.name}: it is not running")
    path = manager(engine).netns_path(target.id)
    from corral.network.netns import is_netns

    ns_path = str(path) if is_netns(path) else f"/proc/{target.state.pid}/ns/net"
    spec_file = c.bundle / "config.json"
    spec = read_json(spec_file, {})
    for ns in spec.get("linux", {}).get("namespaces") or []:
        if ns.get("type") == "network":
            ns["path"] = ns_path
    write_json(spec_file, spec)


def publish_names(engine: Any, c: Any) -> None:
    """Record the container's names and addresses for /etc/hosts and rewrite its file
    and those of every container sharing a network (`network.hosts.HostsRegistry`)."""
    from corral.engine.spec import parse_add_hosts
    from corral.network.manager import Attached

    m = manager(engine)
    if not c.state.networks:
        m.hosts.leave(c.id)
        return
    networks: dict[str, dict] = {}
    for a in c.state.networks:
        entry = networks.setdefault(a["network"], {"ips": [], "aliases": []})
        entry["ips"] += Attached.from_json(a).addresses
        entry["aliases"] += list(a.get("aliases") or [])
    m.hosts.join(c.id, {"hosts_path": str(c.bundle / "hosts"),
                        "names": [c.config.hostname or c.id[:12], c.name],
                        "networks": networks,
                        "extra": parse_add_hosts(c.config.add_hosts)})


# -- stop -----------------------------------------------------------------------------------
def teardown(engine: Any, c: Any) -> None:
    """DEL the container's attachments, drop its netns, take it out of peers' hosts.
    Idempotent; CNI errors are reported on stderr and retried by a later reconcile."""
    if (c.config.network or "bridge") != "bridge" and not c.state.networks:
        return
    m = manager(engine)
    errors = m.teardown(c.id)
    c.state.networks, c.state.ports = [], []
    for error in errors:
        import sys

        print(f"corral: network cleanup of {c.name}: {error}", file=sys.stderr)


@contextlib.contextmanager
def teardown_alongside(engine: Any, c: Any) -> Iterator[None]:
    """`teardown` in a thread while the body runs (the runtime's delete, the unmount):
    the CNI DELs are the slowest part of a container's cleanup."""
    if (c.config.network or "bridge") != "bridge" and not c.state.networks:
        yield
        return
    import threading

    thread = threading.Thread(target=teardown, args=(engine, c), daemon=True)
    thread.start()
    try:
        yield
    finally:
        thread.join()


def reconcile(engine: Any) -> list[str]:
    """Tear down the networking of containers that are not running (a killed monitor,
    a reboot, a removed container); returns their ids."""
    m = manager(engine)
    ids = m.attached_ids()
    if not ids:
        return []

    def live(container_id: str) -> bool:
        if _busy(engine, container_id):
            return True  # being started or cleaned up right now: its owner decides
        return _running(engine, container_id)

    return m.reconcile(live)


def _running(engine: Any, container_id: str) -> bool:
    """The container's recorded process is alive (its state file and /proc only: cheap
    enough to ask for every attachment on every start)."""
    from corral.engine.engine import _alive
    from corral.storage.records import read_json

    try:
        bundle = engine.store.containers.path(container_id)
    except Exception:  # noqa: BLE001 - not an id of ours: nothing runs under it
        return False
    state = read_json(bundle / "state.json", None)
    if not isinstance(state, dict) or not (bundle / "corral.json").exists():
        return False
    if state.get("status") not in ("running", "paused"):
        return False
    return _alive(state.get("pid"), state.get("pid_start"))


def _busy(engine: Any, container_id: str) -> bool:
    """Another process holds the container's lock (a start or cleanup in progress)."""
    from corral.storage.records import is_locked

    return is_locked(Path(engine.locks) / f"{container_id}.lock")


def port_lines(c: Any) -> list[str]:
    """`corral port` lines: `80/tcp -> 127.0.0.1:8080`."""
    from corral.network.ports import PortMapping

    return [str(PortMapping.from_json(p)) for p in c.state.ports]


def network_settings(c: Any) -> dict[str, Any]:
    """inspect's NetworkSettings (docker's shape, trimmed)."""
    networks = {}
    for a in c.state.networks:
        ip, _, prefix = (a.get("ips") or [""])[0].partition("/")
        networks[a["network"]] = {"IPAddress": ip, "IPPrefixLen": int(prefix or 0),
                                  "Gateway": a.get("gateway") or "",
                                  "MacAddress": a.get("mac") or "",
                                  "Aliases": a.get("aliases") or [],
                                  "InterfaceName": a["ifname"]}
    ports: dict[str, list[dict[str, str]]] = {}
    for p in c.state.ports:
        ports.setdefault(f"{p['container_port']}/{p['protocol']}", []).append(
            {"HostIp": p.get("host_ip") or "", "HostPort": str(p["host_port"])})
    first = next(iter(networks.values()), {})
    return {"Networks": networks, "Ports": ports, "IPAddress": first.get("IPAddress", ""),
            "Gateway": first.get("Gateway", ""), "MacAddress": first.get("MacAddress", "")}
