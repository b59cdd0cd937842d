"""Keep the runtime's interpreter out of a container's reach (the CVE-2019-5736 class).

While corral-runtime sets a container up, a process of its own (the init, an
`exec`) runs inside the container's namespaces, and a program started with
`#!/proc/self/exe` makes the kernel run that same interpreter inside the
container. A container that could open it for writing would replace the
host's interpreter. Two defences, together:
  * the setup processes are non-dumpable (PR_SET_DUMPABLE 0), so the
    container cannot open their /proc/<pid>/exe, fd or mem at all;
  * scripts/setup gives the venv its own copy of the interpreter and marks it
    immutable (FS_IMMUTABLE_FL): the kernel refuses to open it for writing,
    even for root, without CAP_LINUX_IMMUTABLE, which containers never get.
`interpreter_is_sealed` checks the second one; the runtime warns when it is not.
"""

from __future__ import annotations

import os
import sys

FS_IOC_GETFLAGS = 0x80086601
FS_IMMUTABLE_FL = 0x10


def interpreter_is_sealed() -> bool:
    import fcntl

    try:
        fd = os.open("/proc/self/exe", os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return False
    try:
        flags = int.from_bytes(fcntl.ioctl(fd, FS_IOC_GETFLAGS, bytes(8)), sys.byteorder)
    except OSError:
        return False
    finally:
        os.close(fd)
    return bool(flags & FS_IMMUTABLE_FL)


def warning() -> str | None:
    if interpreter_is_sealed():
        return None
    return (f"the interpreter {os.path.realpath('/proc/self/exe')} is not immutable: a "
            "container could overwrite it through /proc/self/exe (CVE-2019-5736); run "
            "scripts/setup, which makes the venv's own immutable copy")
