"""The interface every cgroup backend implements (youki's CgroupManager).

Only for type checkers and readers: the runtime never imports this module at
run time (it would pull in `typing`, which the start-up guard bans).
"""

from __future__ import annotations

from typing import Protocol


class OomWatcher(Protocol):
    def wait(self, timeout: float) -> int:
        """OOM kills since the last call; blocks up to `timeout`; -1 when the cgroup is gone."""

    def close(self) -> None: ...


class Manager(Protocol):
    version: int
    paths: dict[str, str]

    def check(self, resources: dict) -> None:
        """Raise ControllerMissing (naming the field) if the host cannot apply `resources`."""

    def apply(self, resources: dict, device_list: list[dict] | None = None,
              checked: bool = False) -> None:
        """Write the set fields of `resources`; unset ones are left alone (create and update).
        Runs `check` first unless `checked`."""

    def freezer_state_file(self) -> str | None: ...

    def pids(self) -> list[int]: ...

    def kill_all(self, signal_number: int) -> None: ...

    def stats(self) -> dict:
        """runc's stats JSON (types/events.go Stats): cpu, cpuset, memory, pids, blkio, hugetlb."""

    def oom_watcher(self) -> OomWatcher | None: ...
