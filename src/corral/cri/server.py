"""The CRI gRPC server: `runtime.v1` RuntimeService and ImageService on a unix socket.

grpc and the generated stubs (`corral.cri._gen`, made by scripts/gen-cri) are imported
here only, so no other corral command pays for them at start-up.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from corral.errors import InvalidArgument, Unavailable

DEFAULT_LISTEN = "unix:///run/corral/cri.sock"


def socket_path(listen: str) -> Path:
    """`unix:///path` (or a bare absolute path) → the socket's path."""
    if listen.startswith("unix://"):
        path = listen.removeprefix("unix://")
    elif listen.startswith("/"):
        path = listen
    else:
        raise InvalidArgument(f"--listen {listen!r}: expected unix:///PATH")
    if not path.startswith("/"):
        raise InvalidArgument(f"--listen {listen!r}: the socket path must be absolute")
    return Path(path)


def build(engine: Any, *, network: str | None = None, workers: int = 16,
          streams: Any = None, handlers: Any = None, pod_cgroup_root: str | None = None
          ) -> Any:
    """A grpc.Server with both services registered (not started, no port yet).
    `handlers` (handlers.Handlers): the runtime handlers; default: the CRI config file's
    or the runtimes found on the host."""
    try:
        import grpc

        from corral.cri._gen import api_pb2_grpc as pb_grpc
    except ImportError as exc:
        raise Unavailable(f"the CRI server needs grpcio and the generated stubs "
                          f"(run scripts/setup): {exc}") from None
    from concurrent import futures

    from corral.cri.images import ImageService
    from corral.cri.runtime import RuntimeService

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=workers,
                                                    thread_name_prefix="cri"),
                         options=[("grpc.max_send_message_length", 64 << 20),
                                  ("grpc.max_receive_message_length", 64 << 20)])
    pb_grpc.add_RuntimeServiceServicer_to_server(
        RuntimeService(engine, network=network, streams=streams, handlers=handlers,
                       pod_cgroup_root=pod_cgroup_root), server)
    pb_grpc.add_ImageServiceServicer_to_server(ImageService(engine), server)
    return server


def serve(engine: Any, listen: str = DEFAULT_LISTEN, *, network: str | None = None,
          workers: int = 16, stream_address: str = "127.0.0.1:0",
          on_ready: Callable[[str], None] | None = None, handlers: Any = None,
          pod_cgroup_root: str | None = None) -> None:
    """Serve until SIGTERM/SIGINT; a stale socket file is replaced. The streaming
    server (Exec/Attach/PortForward URLs) listens on `stream_address` (HOST:PORT)."""
    path = socket_path(listen)
    if handlers is None:  # a bad CRI config fails here, before the socket is made
        from corral.cri.handlers import Handlers

        handlers = Handlers.load(engine.default_runtime)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.exists() or path.is_symlink():
        path.unlink()
    engine.store  # noqa: B018 - open (or make) the store before the first request
    from corral.cri.streaming import StreamServer

    host, _, port = stream_address.rpartition(":")
    if not host or not port.isdigit():
        raise InvalidArgument(f"--stream-address {stream_address!r}: expected HOST:PORT")
    streams = StreamServer(engine, host.strip("[]"), int(port))
    server = build(engine, network=network, workers=workers, streams=streams,
                   handlers=handlers, pod_cgroup_root=pod_cgroup_root)
    if server.add_insecure_port(f"unix://{path}") == 0:
        raise Unavailable(f"cannot listen on {path}")
    os.chmod(path, 0o660)
    server.start()
    stopped = threading.Event()

    def stop(signum: int, frame: Any) -> None:
        stopped.set()

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, stop)
    if on_ready is not None:
        on_ready(f"unix://{path}")
    logging.getLogger("corral.cri").info("serving CRI on unix://%s", path)
    stopped.wait()
    server.stop(grace=5).wait()
    streams.close()
    with_suppress_unlink(path)


def with_suppress_unlink(path: Path) -> None:
    try:
        path.unlink()
    except FileNotFoundError:
        pass
