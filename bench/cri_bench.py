"""Time a pod's life through the CRI, as kubelet drives it, against one or more CRI
sockets (bench/cri.sh runs it against corral and containerd in one run).

One iteration: RunPodSandbox → CreateContainer (busybox `sleep 3600`) → StartContainer
(the container is running when it returns) = "up"; then StopPodSandbox →
RemovePodSandbox = "down". Rounds alternate which runtime goes first; medians over
all rounds are printed as one line per runtime, then the ratios to the first.

    python3 bench/cri_bench.py --runs 10 --rounds 3 corral=unix:///x.sock \
        containerd=unix:///y.sock
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import uuid

import grpc

from corral.cri._gen import api_pb2 as pb
from corral.cri._gen import api_pb2_grpc as rpc


def one(rt: rpc.RuntimeServiceStub, image: str, tag: str) -> tuple[float, float]:
    pod = pb.PodSandboxConfig(
        metadata=pb.PodSandboxMetadata(name=f"bench-{tag}", namespace="bench",
                                       uid=uuid.uuid4().hex),
        hostname="bench", log_directory=f"/tmp/corral-bench-cri-logs/{tag}",
        linux=pb.LinuxPodSandboxConfig())
    t0 = time.perf_counter()
    sid = rt.RunPodSandbox(pb.RunPodSandboxRequest(config=pod)).pod_sandbox_id
    cid = rt.CreateContainer(pb.CreateContainerRequest(
        pod_sandbox_id=sid, sandbox_config=pod, config=pb.ContainerConfig(
            metadata=pb.ContainerMetadata(name="app"), image=pb.ImageSpec(image=image),
            command=["sleep", "3600"], log_path="app.log",
            linux=pb.LinuxContainerConfig()))).container_id
    rt.StartContainer(pb.StartContainerRequest(container_id=cid))
    t1 = time.perf_counter()
    status = rt.ContainerStatus(pb.ContainerStatusRequest(container_id=cid)).status
    if status.state != pb.CONTAINER_RUNNING:
        raise SystemExit(f"{tag}: container not running after StartContainer: {status}")
    t2 = time.perf_counter()
    rt.StopPodSandbox(pb.StopPodSandboxRequest(pod_sandbox_id=sid))
    rt.RemovePodSandbox(pb.RemovePodSandboxRequest(pod_sandbox_id=sid))
    t3 = time.perf_counter()
    return t1 - t0, t3 - t2


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=10, help="iterations per round")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--parallel", type=int, default=0,
                    help="also time N pods brought up and down at once (wall time)")
    ap.add_argument("targets", nargs="+", metavar="NAME=ADDRESS[=IMAGE]")
    args = ap.parse_args()
    targets = []
    for text in args.targets:
        name, address, *rest = text.split("=")
        rt = rpc.RuntimeServiceStub(grpc.insecure_channel(address))
        targets.append((name, rt, rest[0] if rest else "docker.io/library/busybox:latest"))
    results: dict[str, dict[str, list[float]]] = {n: {"up": [], "down": []}
                                                  for n, _, _ in targets}
    for name, rt, image in targets:
        for _ in range(args.warmup):
            one(rt, image, f"{name}-warm")
    for rnd in range(args.rounds):
        order = targets if rnd % 2 == 0 else list(reversed(targets))
        for name, rt, image in order:
            for i in range(args.runs):
                up, down = one(rt, image, f"{name}-{rnd}-{i}")
                results[name]["up"].append(up)
                results[name]["down"].append(down)
    first = targets[0][0]
    med = {n: {k: statistics.median(v) * 1000 for k, v in r.items()}
           for n, r in results.items()}
    for name, m in med.items():
        total = m["up"] + m["down"]
        line = (f"{name:11s} up {m['up']:7.0f} ms   down {m['down']:7.0f} ms   "
                f"total {total:7.0f} ms")
        if name != first:
            base = med[first]
            line += (f"   {first}/{name}: up {base['up'] / m['up']:.2f} down "
                     f"{base['down'] / m['down']:.2f} total "
                     f"{(base['up'] + base['down']) / total:.2f}")
        print(line)
    n = args.runs * args.rounds
    print(f"(medians of {n} pods each; up = RunPodSandbox..StartContainer returned, "
          "down = StopPodSandbox + RemovePodSandbox)")
    if args.parallel:
        from concurrent.futures import ThreadPoolExecutor

        walls: dict[str, list[float]] = {n: [] for n, _, _ in targets}
        for rnd in range(args.rounds):
            order = targets if rnd % 2 == 0 else list(reversed(targets))
            for name, rt, image in order:
                t0 = time.perf_counter()
                with ThreadPoolExecutor(args.parallel) as pool:
                    list(pool.map(lambda i, rt=rt, image=image, name=name, rnd=rnd: one(
                        rt, image, f"{name}-par-{rnd}-{i}"), range(args.parallel)))
                walls[name].append(time.perf_counter() - t0)
        for name, values in walls.items():
            print(f"{name:11s} {args.parallel} pods at once (up+down): "
                  f"{statistics.median(values) * 1000:7.0f} ms wall")
    return 0


if __name__ == "__main__":
    sys.exit(main())
