"""RDMA (config-linux.md#rdma): rdma.max lines "DEVICE hca_handle=N hca_object=N",
the same file on v1 and v2."""

from __future__ import annotations

from corral.linux.cgroups.common import write

CONTROLLER = "rdma"


def needed(resources: dict) -> bool:
    return bool(resources.get("rdma"))


def set_any(path: str, resources: dict) -> None:
    for device, limit in resources["rdma"].items():
        parts = [device]
        if limit.get("hcaHandles") is not None:
            parts.append(f"hca_handle={limit['hcaHandles']}")
        if limit.get("hcaObjects") is not None:
            parts.append(f"hca_object={limit['hcaObjects']}")
        if len(parts) > 1:
            write(path, "rdma.max", " ".join(parts), f"rdma.{device}")
