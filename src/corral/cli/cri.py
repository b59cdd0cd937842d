"""`corral cri serve`: the Kubernetes Container Runtime Interface (runtime.v1) on a unix
socket, for kubelet or crictl:

    corral cri serve [--listen unix:///run/corral/cri.sock] [--network NAME]

Pods get their IPs from the CNI network NAME (default: the engine's default network).
Prints `listening on unix:///...` once the socket is bound, then serves until
SIGINT/SIGTERM. Pods and containers outlive the server (conmon keeps them).
"""

from __future__ import annotations

import argparse
import sys
from typing import Any


def register(commands: Any) -> None:
    cri = commands.add_parser("cri", help="serve the Kubernetes CRI (runtime.v1)")
    sub = cri.add_subparsers(dest="cri_command", metavar="COMMAND", parser_class=type(cri))
    sub.required = True
    serve = sub.add_parser("serve", help="serve RuntimeService and ImageService over gRPC")
    serve.add_argument("--listen", default="unix:///run/corral/cri.sock",
                       help="unix:///PATH of the socket (default unix:///run/corral/cri.sock)")
    serve.add_argument("--network", help="CNI network of pods (default: the default network)")
    serve.add_argument("--workers", type=int, default=16, help="gRPC worker threads")
    serve.add_argument("--stream-address", default="127.0.0.1:0",
                       help="HOST:PORT of the streaming server for Exec/Attach/PortForward "
                            "URLs (default 127.0.0.1, a free port)")
    serve.add_argument("--pod-cgroup-root", default="/corral-pods", metavar="PATH",
                       help="where pods with resources but no cgroup_parent get their "
                            "cgroup (default /corral-pods)")
    serve.add_argument("--log-level", default="warning",
                       choices=("debug", "info", "warning", "error"))
    serve.set_defaults(func=_serve)


def _serve(args: argparse.Namespace, ctx: Any) -> int:
    import logging

    from corral.cri.server import serve
    from corral.engine.engine import Engine

    logging.basicConfig(level=args.log_level.upper(), stream=sys.stderr,
                        format="corral cri: %(levelname)s %(message)s")
    engine = Engine(root=ctx.root, storage_driver=ctx.driver, runtime=ctx.runtime)
    engine.config = getattr(ctx, "config", None)

    def ready(address: str) -> None:
        print(f"listening on {address}", flush=True)

    serve(engine, args.listen, network=args.network, workers=args.workers,
          stream_address=args.stream_address, on_ready=ready,
          pod_cgroup_root=args.pod_cgroup_root)
    return 0
