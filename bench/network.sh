#!/bin/bash
# Network bench: corral vs podman in one run (issue 7), `run --rm busybox true` on each
# one's default bridge network (corral: CNI bridge+portmap+firewall+tuning; podman on
# this host: its CNI backend, cni-podman0), then the same with a published port.
# hyperfine, medians. Temp stores; corral's default network here is a bench network
# (corral-bench/corral-bench0/10.99.210.0/24), removed on exit with everything else.
set -euo pipefail
HERE=$(cd "$(dirname "$0")/.." && pwd)
CORRAL="$HERE/.venv/bin/corral"
RUNS=${RUNS:-20}
TMP=$(mktemp -d /tmp/corral-bench-net-XXXX)
CR="$TMP/corral"
PR="$TMP/podman"
cat > "$TMP/corral.conf" <<CONF
[network]
default_network = "corral-bench"
default_subnet = "10.99.210.0/24"
default_bridge = "corral-bench0"
CONF
export CORRAL_CONFIG="$TMP/corral.conf"
C="$CORRAL --root $CR"
P="podman --root $PR/root --runroot $PR/run --storage-driver overlay --events-backend none --cgroup-manager cgroupfs"
cleanup() {
  $C rm -af >/dev/null 2>&1 || true
  $C network rm -f corral-bench >/dev/null 2>&1 || true
  $P rm -af -t 0 >/dev/null 2>&1 || true
  $P system reset -f >/dev/null 2>&1 || true
  grep -o "$TMP[^ ]*" /proc/self/mountinfo 2>/dev/null | sort -r | xargs -r -n1 umount -l 2>/dev/null || true
  rm -rf "$TMP"
}
trap cleanup EXIT

"$HERE/.venv/bin/python3" -m compileall -q "$HERE/src/corral" >/dev/null  # as installed
$C image busybox >/dev/null
$C save -o "$TMP/busybox.tar" busybox >/dev/null
$P load -i "$TMP/busybox.tar" >/dev/null 2>&1
PIMG=$($P images -q | head -1)
$P tag "$PIMG" localhost/busybox:latest >/dev/null 2>&1 || true

ratio() {
python3 - "$1" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))["results"]
c, p = r[0]["median"] * 1000, r[1]["median"] * 1000
print(f"corral {c:.0f} ms   podman {p:.0f} ms   corral/podman {c/p:.2f}")
PY
}

echo "== run --rm busybox true, default bridge network (median of $RUNS)"
hyperfine -N -w 3 -r "$RUNS" --export-json "$TMP/run.json" \
  "$C run --rm busybox true" \
  "$P run --rm localhost/busybox true" >/dev/null 2>&1
ratio "$TMP/run.json"

echo "== run --rm -p 127.0.0.1::80 busybox true (median of $RUNS)"
hyperfine -N -w 3 -r "$RUNS" --export-json "$TMP/port.json" \
  "$C run --rm -p 127.0.0.1::80 busybox true" \
  "$P run --rm -p 127.0.0.1::80 localhost/busybox true" >/dev/null 2>&1
ratio "$TMP/port.json"
