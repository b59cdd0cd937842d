#!/bin/bash
# Build bench (issue 8): `corral build` vs `buildah bud --layers`, the same Dockerfile
# and context, in one hyperfine run each for cold (--no-cache) and warm (all cached).
#   FROM a Debian minbase image; 3 RUN steps; COPY of a 50 MB directory; ENV; CMD.
# Both use overlay storage in temp roots and the host network for RUN.
# The Debian image is made once with `corral image debian` (debootstrap) and cached
# as a docker-archive in $CACHE; both tools load it from there.
# Runs are split into ROUNDS that alternate which tool goes first; medians are over all.
# Env: RUNS (5 per round), ROUNDS (2), WARMUP (1), CACHE (/var/tmp/corral-bench-build),
# BENCH_DEBUG=1 keeps TMP.
set -euo pipefail
HERE=$(cd "$(dirname "$0")/.." && pwd)
CORRAL="$HERE/.venv/bin/corral"
RUNS=${RUNS:-5}
ROUNDS=${ROUNDS:-2}
WARMUP=${WARMUP:-1}
CACHE=${CACHE:-/var/tmp/corral-bench-build}
TMP=$(mktemp -d /tmp/corral-bench-build-XXXX)
C="$CORRAL --root $TMP/corral --storage-driver overlay"
B="buildah --root $TMP/buildah/root --runroot $TMP/buildah/run --storage-driver overlay"
IMAGE=localhost/corral-bench-debian:latest
cleanup() {
  $B rm -a >/dev/null 2>&1 || true
  $B rmi -af >/dev/null 2>&1 || true
  grep -o "$TMP[^ ]*" /proc/self/mountinfo 2>/dev/null | sort -r | xargs -r -n1 umount -l 2>/dev/null || true
  if [ -z "${BENCH_DEBUG:-}" ]; then rm -rf "$TMP"; else echo "kept $TMP" >&2; fi
}
trap cleanup EXIT
command -v buildah >/dev/null || { echo "buildah is not installed (apt-get install buildah)" >&2; exit 1; }

mkdir -p "$CACHE"
if [ ! -s "$CACHE/debian.tar" ]; then
  echo "making the Debian base image (debootstrap, once) ..." >&2
  $CORRAL --root "$CACHE/store" image debian "$IMAGE" >/dev/null
  $CORRAL --root "$CACHE/store" save -o "$CACHE/debian.tar.tmp" "$IMAGE"
  mv "$CACHE/debian.tar.tmp" "$CACHE/debian.tar"
fi
$C load -q -i "$CACHE/debian.tar" >/dev/null
$C tag "$($C images -q | head -1)" "$IMAGE" >/dev/null
$B pull -q "docker-archive:$CACHE/debian.tar" >/dev/null 2>&1
$B tag "$($B images -q | head -1)" "$IMAGE" >/dev/null

CTX="$TMP/ctx"
mkdir -p "$CTX/data"
for i in $(seq 1 100); do head -c 524288 /dev/urandom > "$CTX/data/f$i.bin"; done
cat > "$CTX/Dockerfile" <<EOF
FROM $IMAGE
RUN echo one > /one.txt
RUN mkdir -p /app && echo two > /app/two.txt
RUN useradd -m app && ls /home
COPY data /app/data
ENV APP_HOME=/app MODE=bench
CMD ["ls", "/app"]
EOF

CB="$C build -q --network host -t corral-bench-out"
BB="$B bud --layers -q --network host -t corral-bench-out"
bench() {  # $1 = label, $2 = extra flags; hyperfine rounds alternating the order
  local r a b
  for r in $(seq 1 "$ROUNDS"); do
    a="$CB $2 $CTX"; b="$BB $2 $CTX"
    if ((r % 2 == 0)); then a="$BB $2 $CTX"; b="$CB $2 $CTX"; fi
    hyperfine -N -w "$WARMUP" -r "$RUNS" --export-json "$TMP/$1-$r.json" "$a" "$b" >&2
  done
}
echo "== cold: --no-cache ($ROUNDS rounds of $RUNS)"
bench cold --no-cache
echo "== warm: every step cached ($ROUNDS rounds of $RUNS)"
$CB "$CTX" >/dev/null; $BB "$CTX" >/dev/null 2>&1
bench warm ""
python3 - "$TMP" "$ROUNDS" <<'PY'
import glob, json, statistics, sys
tmp, rounds = sys.argv[1], int(sys.argv[2])
for label in ("cold", "warm"):
    times = {"corral": [], "buildah": []}
    for path in glob.glob(f"{tmp}/{label}-*.json"):
        for result in json.load(open(path))["results"]:
            tool = "buildah" if " bud " in result["command"] else "corral"
            times[tool] += result["times"]
    c, b = statistics.median(times["corral"]), statistics.median(times["buildah"])
    print(f"{label}: corral {c:.2f} s   buildah {b:.2f} s   corral/buildah {c/b:.2f}")
PY
