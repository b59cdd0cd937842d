"""HugeTLB (config-linux.md#huge-page-limits): v1 hugetlb.<size>.limit_in_bytes,
v2 hugetlb.<size>.max, where <size> is the kernel's spelling ("2MB", "1GB")."""

from __future__ import annotations

import os

from corral.linux.cgroups.common import read_int, write

CONTROLLER = "hugetlb"


def needed(resources: dict) -> bool:
    return bool(resources.get("hugepageLimits"))


def set_v1(path: str, resources: dict) -> None:
    for index, entry in enumerate(resources.get("hugepageLimits") or []):
        write(path, f"hugetlb.{entry['pageSize']}.limit_in_bytes", entry["limit"],
              f"hugepageLimits[{index}]")


def set_v2(path: str, resources: dict) -> None:
    for index, entry in enumerate(resources.get("hugepageLimits") or []):
        write(path, f"hugetlb.{entry['pageSize']}.max", entry["limit"],
              f"hugepageLimits[{index}]")


def _sizes(path: str) -> list[str]:
    try:
        names = os.listdir(path)
    except OSError:
        return []
    return sorted({n.split(".")[1] for n in names if n.startswith("hugetlb.") and n.count(".") >= 2
                   and not n.split(".")[1].startswith("rsvd")})


def stats_v1(path: str) -> dict:
    return {size: {"usage": read_int(path, f"hugetlb.{size}.usage_in_bytes"),
                   "max": read_int(path, f"hugetlb.{size}.max_usage_in_bytes"),
                   "failcnt": read_int(path, f"hugetlb.{size}.failcnt")}
            for size in _sizes(path)}


def stats_v2(path: str) -> dict:
    from corral.linux.cgroups.common import flat_keyed, read

    return {size: {"usage": read_int(path, f"hugetlb.{size}.current"),
                   "max": read_int(path, f"hugetlb.{size}.max"),
                   "failcnt": flat_keyed(read(path, f"hugetlb.{size}.events")).get("max", 0)}
            for size in _sizes(path)}
