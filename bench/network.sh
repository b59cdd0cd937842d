#!/bin/bash
# Network bench: corral vs podman in one run (issue 7), `run --rm busybox true` on each
# one's default bridge network (corral: the CNI bridge plugin, plus portmap when ports are
# published; podman on this host: its CNI backend with bridge, portmap, firewall, tuning),
# then the same with a published port.
# hyperfine, medians. Temp stores; corral's default network here is a bench network
# (corral-bench/corral-bench0/10.99.210.0/24), removed on exit with everything else.
set -euo pipefail
HERE=$(cd "$(dirname "$0")/.." && pwd)
RUNS=${RUNS:-20}
CONF=$(mktemp /tmp/corral-bench-net-conf-XXXX)
cat > "$CONF" <<CONF
[network]
default_network = "corral-bench"
default_subnet = "10.99.210.0/24"
default_bridge = "corral-bench0"
CONF
export CORRAL_CONFIG="$CONF"
NAME=net
extra_cleanup() { $C network rm -f corral-bench; rm -f "$CONF"; }
. "$HERE/bench/engine_lib.sh"

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
