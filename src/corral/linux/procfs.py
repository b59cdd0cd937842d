"""What /proc tells about a process (proc(5))."""

from __future__ import annotations


def start_time(pid: int, *, zombies: bool = False) -> int | None:
    """Field 22 of /proc/<pid>/stat: when the process started, in clock ticks after boot.

    With a pid, it identifies one process even after the pid is recycled. None if the
    process is gone, or (unless `zombies`) is a zombie waiting to be reaped.
    """
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return None
    fields = data[data.rindex(b")") + 2:].split()  # after "(comm)", which may hold spaces
    if not zombies and fields[0] in (b"Z", b"X"):
        return None
    return int(fields[19])
