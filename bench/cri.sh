#!/bin/bash
# CRI bench: `corral cri serve` vs containerd 1.6's CRI plugin (Debian's containerd,
# runc v2 shim, overlayfs) in one run, both driven through the same generated gRPC
# client as kubelet would (bench/cri_bench.py): RunPodSandbox → CreateContainer →
# StartContainer (up), StopPodSandbox → RemovePodSandbox (down), busybox `sleep`.
#
#   bench/cri.sh                      # as root; RUNS=10 ROUNDS=3 by default
#   RUNTIME=runc bench/cri.sh         # corral driving runc, as containerd does
#   PARALLEL=8 (default): also the wall time of 8 pods up and down at once
#
# Both get a private store/root, their own CNI bridge network with the same plugin
# list (corral's: bridge + host-local, portmap, firewall, tuning) and the same
# images: corral's busybox and its catatonit pause image, imported into containerd
# with `ctr images import` (no registry needed). containerd is installed from
# Debian if missing. Everything made here is removed on exit.
set -euo pipefail
HERE=$(cd "$(dirname "$0")/.." && pwd)
CORRAL=${CORRAL:-"$HERE/.venv/bin/corral"}  # CORRAL=path: another build
PY="$HERE/.venv/bin/python3"
RUNS=${RUNS:-10}
ROUNDS=${ROUNDS:-3}

if ! command -v containerd >/dev/null; then
  echo "installing containerd (Debian)" >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends containerd >/dev/null
fi

TMP=$(mktemp -d /tmp/corral-bench-cri-XXXX)
TAG=$(od -An -N2 -tx1 /dev/urandom | tr -d ' \n')
CR="$TMP/corral"
NET_C="corral-bench-c$TAG"
NET_D="corral-bench-d$TAG"
BR_C="cbc$TAG"
BR_D="cbd$TAG"
CTD="$TMP/ctd"
C="$CORRAL --root $CR"
CORRAL_PID=""
CTD_PID=""

cleanup() {
  set +e
  [ -n "$CORRAL_PID" ] && kill "$CORRAL_PID" 2>/dev/null && wait "$CORRAL_PID" 2>/dev/null
  $C rm -af >/dev/null 2>&1
  $C network rm -f "$NET_C" >/dev/null 2>&1
  if [ -n "$CTD_PID" ]; then
    kill "$CTD_PID" 2>/dev/null && wait "$CTD_PID" 2>/dev/null
  fi
  grep -o "$TMP[^ ]*" /proc/self/mountinfo 2>/dev/null | sort -r | xargs -r -n1 umount -l 2>/dev/null
  for br in "$BR_C" "$BR_D"; do ip link del "$br" 2>/dev/null; done
  rm -rf "/var/lib/cni/networks/$NET_C" "/var/lib/cni/networks/$NET_D" /tmp/corral-bench-cri-logs
  rm -rf "$TMP"
}
trap cleanup EXIT

# -- images: busybox and the pause image, in corral's store and in containerd's --------
$C image busybox >/dev/null
"$PY" -c "from corral.storage import Store; from corral.cri.pause import ensure; ensure(Store.open('$CR'))"
$C save -o "$TMP/images.tar" busybox localhost/corral/pause:catatonit >/dev/null

# -- networks: a corral network; the same CNI list for containerd on another bridge -----
SUBNET_C=""
for third in $(seq 240 254); do
  if $C network create --interface-name "$BR_C" --subnet "10.99.$third.0/24" "$NET_C" >/dev/null 2>&1; then
    SUBNET_C="10.99.$third.0/24"; break
  fi
done
[ -n "$SUBNET_C" ] || { echo "no free subnet for the corral network" >&2; exit 1; }
mkdir -p "$CTD/net.d"
$C network inspect "$NET_C" | "$PY" -c '
import json, sys, ipaddress
net_d, br_d, out, taken = sys.argv[1:5]
info = json.load(sys.stdin)[0]
conf = info.get("cni_config") or info.get("CNIConfig") or info["config"]
taken = ipaddress.ip_network(taken)
subnet = next(n for n in (ipaddress.ip_network(f"10.99.{t}.0/24") for t in range(254, 200, -1))
              if not n.overlaps(taken))
conf["name"] = net_d
for p in conf["plugins"]:
    if p.get("type") == "bridge":
        p["bridge"] = br_d
        p["ipam"]["ranges"] = [[{"subnet": str(subnet), "gateway": str(subnet.network_address + 1)}]]
        p["ipam"].pop("dataDir", None)
json.dump(conf, open(out, "w"), indent=1)
' "$NET_D" "$BR_D" "$CTD/net.d/10-bench.conflist" "$SUBNET_C"

# -- containerd -------------------------------------------------------------------------
cat >"$CTD/config.toml" <<EOF
version = 2
root = "$CTD/root"
state = "$CTD/state"
[grpc]
  address = "$CTD/containerd.sock"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "localhost/corral/pause:catatonit"
  # this host does not grant CAP_SYS_RESOURCE: kubelet's -998 for the sandbox would fail
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$CTD/net.d"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
EOF
containerd --config "$CTD/config.toml" >"$TMP/containerd.log" 2>&1 &
CTD_PID=$!
for _ in $(seq 100); do [ -S "$CTD/containerd.sock" ] && break; sleep 0.1; done
ctr --address "$CTD/containerd.sock" -n k8s.io images import "$TMP/images.tar" >/dev/null

# -- corral -----------------------------------------------------------------------------
# RUNTIME=runc: corral with runc as its OCI runtime, like containerd (default corral-runtime)
$C ${RUNTIME:+--runtime "$RUNTIME"} cri serve --listen "unix://$TMP/corral.sock" --network "$NET_C" >"$TMP/corral.out" 2>"$TMP/corral.err" &
CORRAL_PID=$!
for _ in $(seq 100); do grep -q "listening on" "$TMP/corral.out" 2>/dev/null && break; sleep 0.1; done

echo "== pod up (RunPodSandbox..StartContainer) and down (Stop+RemovePodSandbox), busybox sleep"
echo "   corral (${RUNTIME:-corral-runtime}) vs containerd $(containerd --version | awk "{print \$3}") (runc)"
"$PY" "$HERE/bench/cri_bench.py" --runs "$RUNS" --rounds "$ROUNDS" --parallel "${PARALLEL:-8}" \
  "corral=unix://$TMP/corral.sock=busybox" \
  "containerd=unix://$CTD/containerd.sock=docker.io/library/busybox:latest"
