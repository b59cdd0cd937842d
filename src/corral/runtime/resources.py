"""`linux.resources` written to cgroup files (config-linux.md#control-groups).

A thin seam kept for callers: the work is done by the cgroup manager of
`corral.linux.cgroups` (v1 or v2, one module per controller).
"""

from __future__ import annotations

from corral.linux.cgroups import Cgroup, manager_for
from corral.linux.cgroups.devices import DEFAULT_ALLOWED

DEFAULT_ALLOWED_DEVICES = tuple(DEFAULT_ALLOWED)


def apply(cgroup: Cgroup, resources: dict, devices: list[dict] | None = None) -> None:
    manager_for(cgroup).apply(resources, devices)
