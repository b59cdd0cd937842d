"""`start`: release a created container's init (runtime.md#start).

Opening exec.fifo for reading unblocks the init, which writes one byte and
goes on to exec the user process; the fifo is then removed, which is how
every later command knows the container has started. poststart hooks run
after that, in the runtime's namespace.
"""

from __future__ import annotations

import os
import select

from corral.errors import FailedPrecondition
from corral.runtime import hooks
from corral.runtime.state import Container


def start(root: str, container_id: str) -> Container:
    container = Container.load(root, container_id)
    status = container.status()
    if status != "created":
        raise FailedPrecondition(f"container {container_id!r} is {status}, not created: "
                                 "cannot start it")
    fd = os.open(container.fifo_path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        poller = select.poll()
        poller.register(fd, select.POLLIN | select.POLLHUP)
        while True:
            if poller.poll(100):
                data = os.read(fd, 1)
                if data:
                    break
            if not container.init_alive():
                raise FailedPrecondition(f"container {container_id!r}: its init exited "
                                         "before it could start")
        config = container.data.get("config") or {}
        poststart = (config.get("hooks") or {}).get("poststart")
        if poststart:
            # poststart hooks run once the user process has started (runtime.md): the
            # init holds the fifo open close-on-exec, so EOF means execve happened
            # (after its startContainer hooks) or the init died.
            while container.init_alive():
                if poller.poll(100) and not os.read(fd, 512):
                    break
    finally:
        os.close(fd)
    os.unlink(container.fifo_path)
    if poststart:
        try:
            hooks.run_all(config, "poststart", container.oci_state())
        except hooks.HookFailed as exc:
            # runtime.md: a poststart failure is logged, the container keeps running.
            os.write(2, f"warning: {exc}\n".encode())
    return container
