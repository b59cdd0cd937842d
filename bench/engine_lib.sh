# Shared by bench/engine.sh and bench/network.sh (sourced, not run): temp stores for
# corral and podman, removed on exit; corral byte-compiled (as installed); the busybox
# image made by corral and loaded into podman as localhost/busybox; `ratio FILE` prints
# the two medians of a hyperfine --export-json file and corral/podman.
#
# Before sourcing: HERE (the checkout), NAME (the temp dir's tag) and optionally a
# function `extra_cleanup` (run on exit, with C set). After: TMP, C, P.
CORRAL="$HERE/.venv/bin/corral"
TMP=$(mktemp -d "/tmp/corral-bench-$NAME-XXXX")
CR="$TMP/corral"
PR="$TMP/podman"
C="$CORRAL --root $CR"
P="podman --root $PR/root --runroot $PR/run --storage-driver overlay --events-backend none --cgroup-manager cgroupfs"
cleanup() {
  $C rm -af >/dev/null 2>&1 || true
  if declare -F extra_cleanup >/dev/null; then extra_cleanup >/dev/null 2>&1 || true; fi
  $P rm -af -t 0 >/dev/null 2>&1 || true
  $P system reset -f >/dev/null 2>&1 || true
  grep -o "$TMP[^ ]*" /proc/self/mountinfo 2>/dev/null | sort -r | xargs -r -n1 umount -l 2>/dev/null || true
  # conmon's socket directory of this store (/run/corral/s-<hash>), empty by now
  "$HERE/.venv/bin/python3" -c 'import sys; sys.path.insert(0, sys.argv[1])
from pathlib import Path; from corral.engine.conmon import socket_dir
d = socket_dir(Path(sys.argv[2])); [p.unlink() for p in d.iterdir() if p.is_symlink()]; d.rmdir()' \
    "$HERE/src" "$CR" 2>/dev/null || true
  rm -rf "$TMP"
}
trap cleanup EXIT

# podman here needs default_ulimits (the host's nproc hard limit is below podman's default)
if ! grep -qs default_ulimits /etc/containers/containers.conf; then
  (cd "$HERE/tests/interop" && "$HERE/.venv/bin/python3" -c \
    'from conftest import ensure_containers_conf; ensure_containers_conf()')
fi
"$HERE/.venv/bin/python3" -m compileall -q "$HERE/src/corral" >/dev/null
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

# `rounds LABEL CORRAL_CMD PODMAN_CMD`: ROUNDS (default 5) hyperfine runs of RUNS pairs
# each, printing every round's medians and ratio, then the median of the ratios. hyperfine
# times all runs of one command before the other; on a shared VM whose speed drifts,
# short alternating rounds keep a slow spell from landing on one side only.
rounds() {
  local label=$1 i
  : > "$TMP/rounds.txt"
  for i in $(seq 1 "${ROUNDS:-5}"); do
    hyperfine -N -w 2 -r "$RUNS" --export-json "$TMP/round.json" "$2" "$3" >/dev/null 2>&1
    ratio "$TMP/round.json" | tee -a "$TMP/rounds.txt" | sed "s/^/  round $i: /"
  done
  python3 - "$TMP/rounds.txt" "$label" <<'PY'
import statistics, sys
rows = [line.split() for line in open(sys.argv[1])]
c = statistics.median(float(r[1]) for r in rows)
p = statistics.median(float(r[4]) for r in rows)
q = statistics.median(float(r[7]) for r in rows)
print(f"{sys.argv[2]}: median of rounds: corral {c:.0f} ms   podman {p:.0f} ms   "
      f"corral/podman {q:.2f}")
PY
}
