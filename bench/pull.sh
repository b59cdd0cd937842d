#!/usr/bin/env bash
# Pull of the Debian image (debootstrap minbase bookworm, one ~93 MB gzipped
# layer) from a local docker-registry, including unpack into the store:
# `corral pull` vs `podman pull` (private store, overlay, --tls-verify=false)
# with hyperfine, in one run. Goal: corral under a third of podman's time.
#
#   bench/pull.sh                   # as root; needs bench/layer_unpack.sh's cache
#   RUNS=10 ROUNDS=3 bench/pull.sh
#
# The image is the OCI layout bench/layer_unpack.sh caches in $CACHE
# (/var/tmp/corral-bench-debian/oci), pushed once per run by corral's copy
# routine to Debian's docker-registry on 127.0.0.1:<free port> (storage in a
# temporary directory, stopped on exit). Before every pull the tool's previous
# store is moved aside and `sync` flushes dirty pages (--prepare), so every pull
# downloads, verifies and unpacks everything into an empty store. Rounds rotate
# the order; medians are over all rounds. hyperfine's reports go to stderr, the
# medians and ratio to stdout.
#
# Stores are moved aside, not deleted, until the end (~300 MB a pull, ~11 GB
# for the defaults): on this VM's ext4 (no journal) the inode allocator skips
# inodes freed in the last minute one by one (ialloc.c recently_deleted), so
# creating files right after `rm -rf` of a store costs seconds of kernel time
# that grows with each run and swamps both tools. CLEAN=rm deletes the previous
# store before every pull instead (the method of the first measurements).
# Corral runs as installed, from byte-compiled modules (compileall first).
set -euo pipefail

cd "$(dirname "$0")/.."
ROOT=$PWD
PY=${PY:-$ROOT/.venv/bin/python}
CORRAL=${CORRAL:-$ROOT/.venv/bin/corral}
CACHE=${CACHE:-/var/tmp/corral-bench-debian}
RUNS=${RUNS:-5}
ROUNDS=${ROUNDS:-3}
WARMUP=${WARMUP:-1}
DRIVER=${DRIVER:-overlay}
CLEAN=${CLEAN:-move}

[[ $(id -u) == 0 ]] || { echo "pull.sh: run as root" >&2; exit 1; }
for tool in hyperfine podman docker-registry "$PY"; do
    command -v "$tool" >/dev/null || { echo "pull.sh: needs $tool (scripts/setup)" >&2; exit 1; }
done
[[ -e $CACHE/oci/index.json ]] || RUNS=1 ROUNDS=1 WARMUP=0 CACHE=$CACHE bench/layer_unpack.sh >/dev/null || true
[[ -e $CACHE/oci/index.json ]] || { echo "pull.sh: no $CACHE/oci; run bench/layer_unpack.sh first" >&2; exit 1; }

"$PY" -m compileall -q "$ROOT/src/corral" >/dev/null

WORK=$(mktemp -d /var/tmp/corral-bench-pull.XXXXXX)
mkdir "$WORK/old"
if [[ $CLEAN != rm ]]; then    # ~350 MB a store, kept until the end
    need=$(( (RUNS + WARMUP) * ROUNDS * 2 * 350 ))
    free=$(df -Pm "$WORK" | awk 'NR == 2 {print $4}')
    (( free > need + 2048 )) || { echo "pull.sh: $need MB needed in $WORK, $free MB free (or CLEAN=rm)" >&2; rm -rf "$WORK"; exit 1; }
fi
REG_PID=
cleanup() {
    [[ -n $REG_PID ]] && kill "$REG_PID" 2>/dev/null && wait "$REG_PID" 2>/dev/null || true
    [[ -n ${BENCH_DEBUG:-} ]] || rm -rf "$WORK"
}
trap cleanup EXIT

PORT=$("$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
HOST=127.0.0.1:$PORT
cat >"$WORK/registry.yml" <<YAML
version: 0.1
log:
  level: error
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: $WORK/registry
http:
  addr: $HOST
YAML
docker-registry serve "$WORK/registry.yml" >"$WORK/registry.log" 2>&1 &
REG_PID=$!
for _ in $(seq 100); do
    "$PY" -c "import urllib.request; urllib.request.urlopen('http://$HOST/v2/', timeout=1)" 2>/dev/null && break
    sleep 0.1
done
IMAGE=$HOST/bench/debian:bookworm
"$PY" - "$CACHE/oci" "$IMAGE" <<'PYEOF'
import sys
from corral.image import transports
from corral.registry.client.config import RegistryOptions
src, dest = sys.argv[1:]
transports.copy(transports.parse(f"oci:{src}:bench"),
                transports.parse(f"docker://{dest}", registry=RegistryOptions()))
PYEOF
SIZE=$(du -h "$CACHE/layer.tar.gz" | cut -f1)
echo "image: $IMAGE (one layer, $SIZE gzipped), driver $DRIVER" >&2

declare -A CMD PREP
CMD[corral]="$CORRAL --root $WORK/corral --storage-driver $DRIVER pull -q $IMAGE"
PODMAN="podman --root $WORK/podman --runroot $WORK/podman-run --storage-driver $DRIVER --cgroup-manager cgroupfs --events-backend file"
CMD[podman]="$PODMAN pull -q --tls-verify=false $IMAGE"
if [[ $CLEAN == rm ]]; then
    PREP[corral]="rm -rf $WORK/corral && sync"
    PREP[podman]="$PODMAN rmi -af >/dev/null 2>&1 || true; rm -rf $WORK/podman $WORK/podman-run && sync"
else
    aside() { for d in "$@"; do echo "if [ -e $WORK/$d ]; then mv $WORK/$d \$(mktemp -d $WORK/old/$d.XXXXXX)/; fi"; done; }
    PREP[corral]="$(aside corral); sync"
    PREP[podman]="$(aside podman podman-run); sync"
fi
echo "clean: $CLEAN, load: $(cut -d' ' -f1-3 /proc/loadavg)" >&2
ORDER=(corral podman)

for ((round = 0; round < ROUNDS; round++)); do
    args=()
    for ((i = 0; i < ${#ORDER[@]}; i++)); do
        name=${ORDER[$(((i + round) % ${#ORDER[@]}))]}
        args+=(--prepare "${PREP[$name]}" -n "$name" "${CMD[$name]}")
    done
    hyperfine --style basic --warmup "$WARMUP" -r "$RUNS" \
        --export-json "$WORK/round-$round.json" "${args[@]}" >&2
done

"$PY" - "$WORK"/round-*.json <<'PYEOF'
import json, statistics, sys
times: dict[str, list[float]] = {}
for path in sys.argv[1:]:
    with open(path) as f:
        for result in json.load(f)["results"]:
            times.setdefault(result["command"], []).extend(result["times"])
med = {name: statistics.median(t) for name, t in times.items()}
for name in ("corral", "podman"):
    print(f"{name:7s} median {med[name]:6.3f} s  ({len(times[name])} runs, min {min(times[name]):.3f} s)")
print(f"corral/podman {med['corral'] / med['podman']:.2f}x   (goal: < 0.33)")
PYEOF
