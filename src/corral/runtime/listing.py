"""`list` and `ps` (runc-list(8), runc-ps(8))."""

from __future__ import annotations

import sys

from corral.linux.cgroups import Cgroup
from corral.runtime.state import Container, list_ids


def list_containers(root: str, fmt: str, quiet: bool) -> None:
    from corral.oci.fastjson import dumps

    containers = []
    for container_id in list_ids(root):
        try:
            containers.append(Container.load(root, container_id))
        except Exception:  # noqa: BLE001, S112 - a container deleted meanwhile
            continue
    if quiet:
        for container in containers:
            print(container.id)
        return
    if fmt == "json":
        entries = []
        for container in containers:
            state = container.runc_state()
            entries.append({"ociVersion": state["ociVersion"], "id": state["id"],
                            "pid": state["pid"], "status": state["status"],
                            "bundle": state["bundle"], "rootfs": state["rootfs"],
                            "created": state["created"], "annotations": state["annotations"],
                            "owner": state["owner"]})
        print(dumps(entries or None))  # runc prints null for no containers
        return
    rows = [("ID", "PID", "STATUS", "BUNDLE", "CREATED", "OWNER")]
    for container in containers:
        state = container.runc_state()
        rows.append((state["id"], str(state["pid"]), state["status"], state["bundle"],
                     state["created"], state["owner"] or "root"))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        sys.stdout.write("   ".join(cell.ljust(widths[i]) for i, cell in enumerate(row))
                         .rstrip() + "\n")


def ps(root: str, container_id: str, fmt: str, ps_args: list[str]) -> int:
    container = Container.load(root, container_id)
    pids = Cgroup(container.data.get("cgroup_paths") or {}).pids()
    if fmt == "json":
        from corral.oci.fastjson import dumps

        print(dumps(pids))
        return 0
    import subprocess

    from corral.errors import InvalidArgument

    argv = ["ps", *(ps_args or ["-ef"])]
    result = subprocess.run(argv, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise InvalidArgument(f"{' '.join(argv)} failed: {result.stderr.strip()}")
    output = result.stdout.splitlines()
    header = output[0] if output else ""
    columns = header.split()
    if "PID" not in columns:
        raise InvalidArgument(f"{' '.join(argv)}: its output has no PID column")
    index = columns.index("PID")
    print(header)
    wanted = set(pids)
    for line in output[1:]:
        fields = line.split()
        if len(fields) > index and fields[index].isdigit() and int(fields[index]) in wanted:
            print(line)
    return 0
