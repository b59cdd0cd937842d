"""`linux.resources` written to cgroup files (config-linux.md#control-groups).

A thin seam kept for callers: the work is done by the cgroup manager of
`corral.linux.cgroups` (v1 or v2, one module per controller).
"""

from __future__ import annotations

from corral.linux.cgroups import Cgroup, manager_for
from corral.linux.cgroups.devices import DEFAULT_ALLOWED

DEFAULT_ALLOWED_DEVICES = tuple(DEFAULT_ALLOWED)


def apply(cgroup: Cgroup, resources: dict, devices: list[dict] | None = None,
          checked: bool = False) -> None:
    """`checked`: corral.linux.cgroups.check_resources has passed for these resources."""
    manager_for(cgroup).apply(resources, devices, checked)
