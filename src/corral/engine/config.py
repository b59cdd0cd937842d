"""What a container was created with: `ContainerConfig` (docs/design/engine.md).

The engine core reads the core fields; `corral.engine.spec.build_spec` (the run-options
builder) reads the rest. JSON round trip keeps unknown keys under `extra`, so records
written by a newer corral still load; keys an older corral kept under `extra`
(`shm_size`, `sysctls`, `cpu_shares`, ...) are lifted into their fields, and fields a
record lacks take their defaults.
"""

from __future__ import annotations

import os
import re

from corral import records_light
from corral.errors import InvalidArgument
from corral.records_light import dataclass, field

TYPE_CHECKING = False  # typing costs ~3 ms to import: annotations only
if TYPE_CHECKING:
    from typing import Any


@dataclass
class ContainerConfig:
    image: str = ""
    command: list[str] | None = None
    entrypoint: list[str] | None = None
    env: list[str] = field(default_factory=list)
    workdir: str | None = None
    user: str | None = None
    tty: bool = False
    interactive: bool = False
    hostname: str | None = None
    network: str = ""  # "": the engine's default (containers.netns of the config file)
    read_only: bool = False
    name: str | None = None
    labels: dict[str, str] = field(default_factory=dict)
    restart: str = "no"
    stop_signal: str | None = None
    stop_timeout: int = 10
    runtime: str | None = None
    auto_remove: bool = False
    annotations: dict[str, str] = field(default_factory=dict)
    # the run-options builder's
    volumes: list[str] = field(default_factory=list)
    tmpfs: list[str] = field(default_factory=list)
    mounts: list[str] = field(default_factory=list)
    cap_add: list[str] = field(default_factory=list)
    cap_drop: list[str] = field(default_factory=list)
    security_opt: list[str] = field(default_factory=list)
    privileged: bool = False
    init: bool = False
    memory: str | None = None
    cpus: str | None = None
    pids_limit: int | None = None
    ulimits: list[str] = field(default_factory=list)
    devices: list[str] = field(default_factory=list)
    env_file: list[str] = field(default_factory=list)
    # networking (docs/design/networking.md): `network` is the mode (none, private,
    # host, bridge, container:<id>); with bridge, `networks` names the CNI networks
    # (empty: the default network)
    networks: list[str] = field(default_factory=list)
    network_aliases: list[str] = field(default_factory=list)
    ip: str | None = None
    mac_address: str | None = None
    publish: list[str] = field(default_factory=list)
    publish_all: bool = False
    dns: list[str] = field(default_factory=list)
    dns_search: list[str] = field(default_factory=list)
    dns_options: list[str] = field(default_factory=list)
    add_hosts: list[str] = field(default_factory=list)
    # namespaces other than the network's (podman's --ipc, --uts, --pid): None or
    # "private" (a new one), "host", "container:<id>" (a running container's; the id
    # resolved at create), "ns:<path>" (a namespace file, e.g. a bind-mounted one)
    ipc: str | None = None
    uts: str | None = None
    pid: str | None = None
    # the cgroup: `cgroup_parent` holds the container's `corral-<id>` (absolute, or
    # relative to the hierarchy root); `cgroup_conf`: cgroup v2 files (KEY=VALUE)
    cgroup_parent: str | None = None
    cgroup_conf: list[str] = field(default_factory=list)
    # resources beyond memory/cpus/pids_limit (docker's/podman's flags)
    memory_swap: str | None = None
    memory_reservation: str | None = None
    cpu_shares: int | None = None
    cpu_period: int | None = None
    cpu_quota: int | None = None
    cpuset_cpus: str | None = None
    cpuset_mems: str | None = None
    oom_score_adj: int | None = None
    sysctls: list[str] = field(default_factory=list)
    shm_size: str | None = None
    # the process: supplementary groups (names from the image's /etc/group, or gids)
    group_add: list[str] = field(default_factory=list)
    init_path: str | None = None
    # masked and read-only paths: None keeps the defaults, a list replaces them
    masked_paths: list[str] | None = None
    readonly_paths: list[str] | None = None
    # the log file conmon writes (None: the container directory's ctr.log)
    log_path: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return records_light.asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ContainerConfig:
        names = {f.name for f in records_light.fields(cls)}
        known = {k: v for k, v in data.items() if k in names}
        extra = dict(known.pop("extra", None) or {})
        extra.update({k: v for k, v in data.items() if k not in names})
        # options older records kept under `extra` that are fields now (a value at the
        # top, written since, wins)
        for key in [k for k in extra if k in names and k != "extra"]:
            value = extra.pop(key)
            known.setdefault(key, value)
        return cls(**known, extra=extra)

    def update(self, values: dict[str, Any]) -> None:
        """Merge a dict of options (unknown keys go to `extra`)."""
        names = {f.name for f in records_light.fields(self)}
        for key, value in values.items():
            if key == "extra":
                self.extra.update(value or {})
            elif key in names:
                setattr(self, key, value)
            else:
                self.extra[key] = value


@dataclass(frozen=True)
class RestartPolicy:
    """`no`, `on-failure[:N]` (N=0: unlimited), `always`, `unless-stopped`."""

    name: str = "no"
    max_retries: int = 0

    @classmethod
    def parse(cls, text: str | None) -> RestartPolicy:
        text = (text or "no").strip()
        m = re.fullmatch(r"(no|always|unless-stopped|on-failure)(?::(\d+))?", text)
        if not m or (m.group(2) is not None and m.group(1) != "on-failure"):
            raise InvalidArgument(f"--restart: invalid restart policy {text!r} (no, "
                                  "on-failure[:max-retries], always, unless-stopped)")
        return cls(m.group(1), int(m.group(2) or 0))

    def should_restart(self, exit_code: int | None, restart_count: int,
                       stopped_by_user: bool) -> bool:
        if stopped_by_user or self.name == "no":
            return False
        if self.name == "on-failure":
            if exit_code == 0:
                return False
            return self.max_retries == 0 or restart_count < self.max_retries
        return True


_NAME = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9_.-]*")


def check_name(name: str | None) -> None:
    if name is not None and not _NAME.fullmatch(name):
        raise InvalidArgument(f"container name {name!r} is not valid "
                              "([a-zA-Z0-9][a-zA-Z0-9_.-]*)")


_LEFT = ("admiring", "bold", "brave", "calm", "eager", "gentle", "happy", "jolly", "keen",
         "lucid", "merry", "nifty", "quirky", "serene", "sharp", "trusting", "vibrant", "zen")
_RIGHT = ("albattani", "babbage", "curie", "darwin", "euler", "fermi", "gauss", "hopper",
          "knuth", "lovelace", "noether", "pascal", "ritchie", "shannon", "turing", "wozniak")


def random_name() -> str:
    """`adjective_scientist_xxxx` from os.urandom (not `secrets`: its import costs more than
    a container's whole spec on the `run` path)."""
    left, right, tail = os.urandom(3), os.urandom(3), os.urandom(2)
    return f"{_LEFT[int.from_bytes(left) % len(_LEFT)]}_" \
        f"{_RIGHT[int.from_bytes(right) % len(_RIGHT)]}_{tail.hex()}"


__all__ = ["ContainerConfig", "RestartPolicy", "check_name", "random_name"]
