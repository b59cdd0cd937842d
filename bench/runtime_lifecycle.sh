#!/usr/bin/env bash
# corral-runtime vs runc on one busybox bundle running `true`, with hyperfine.
#
#   bench/runtime_lifecycle.sh                 # as root, after scripts/setup
#   RUNS=30 ROUNDS=3 WARMUP=3 bench/runtime_lifecycle.sh
#
# Cases, each timed for both runtimes:
#   cycle    create --pid-file, start, wait for the init to go, delete
#            (four separate commands, as an engine like containerd/podman does)
#   run      `run` in the foreground (creates, starts, waits, deletes)
#   version  `--version`: the bare start-up cost of the binary
# Hyperfine runs one command's runs back to back; to keep drift (CPU
# frequency, page cache, other load) from favouring one runtime, the runs are
# split into ROUNDS rounds that alternate the order of the commands, and the
# medians are taken over all rounds.
set -euo pipefail

cd "$(dirname "$0")/.."
CORRAL=${CORRAL:-$PWD/.venv/bin/corral-runtime}
RUNC=${RUNC:-$(command -v runc)}
BUSYBOX=${BUSYBOX:-/bin/busybox}
RUNS=${RUNS:-30}          # runs per command, over all rounds
ROUNDS=${ROUNDS:-3}
WARMUP=${WARMUP:-3}
CASES=${CASES:-"cycle run version"}

for tool in hyperfine "$RUNC" "$CORRAL" "$BUSYBOX"; do
    command -v "$tool" >/dev/null || { echo "bench: $tool not found (scripts/setup)" >&2; exit 1; }
done
[[ $(id -u) == 0 ]] || { echo "bench: needs root" >&2; exit 1; }

WORK=$(mktemp -d /tmp/corral-bench.XXXXXX)
ID=corral-bench-$$
cleanup() {
    "$CORRAL" --root "$WORK/root-corral" delete --force "$ID-corral" >/dev/null 2>&1 || true
    "$RUNC" --root "$WORK/root-runc" delete --force "$ID-runc" >/dev/null 2>&1 || true
    # BENCH_DEBUG=1 keeps the temp dir (bundle, cycle.sh, hyperfine's JSON).
    if [[ -n ${BENCH_DEBUG:-} ]]; then echo "bench: kept $WORK" >&2; else rm -rf "$WORK"; fi
}
trap cleanup EXIT

# --- the bundle: static busybox, config from `corral-runtime spec`, args `true`.
BUNDLE=$WORK/bundle
mkdir -p "$BUNDLE"/rootfs/{bin,proc,sys,dev,tmp}
cp "$BUSYBOX" "$BUNDLE/rootfs/bin/busybox"
for applet in sh true; do ln -s busybox "$BUNDLE/rootfs/bin/$applet"; done
"$CORRAL" spec --bundle "$BUNDLE"
/usr/bin/python3 - "$BUNDLE/config.json" <<'EOF'
import json, sys
with open(sys.argv[1]) as f:
    config = json.load(f)
config["process"]["terminal"] = False
config["process"]["args"] = ["true"]
with open(sys.argv[1], "w") as f:
    json.dump(config, f, indent="\t")
EOF

# --- one lifecycle as separate commands: $1 = runtime, $2 = state root, $3 = id.
# After `start` the init is an orphan (its parent, the create command, is gone)
# and pid 1 reaps it; until then it is a zombie, which `kill -0` would still
# see, so the loop reads the state letter from /proc/<pid>/stat instead.
cat >"$WORK/cycle.sh" <<'EOF'
set -e
rt=$1 root=$2 id=$3 pidfile=$2/$3.pid
"$rt" --root "$root" create --bundle "$BUNDLE" --pid-file "$pidfile" "$id"
read -r pid <"$pidfile" || [ -n "$pid" ]  # no trailing newline
"$rt" --root "$root" start "$id"
while 2>/dev/null read -r _ _ st _ </proc/"$pid"/stat && [ "$st" != Z ]; do :; done
"$rt" --root "$root" delete "$id"
EOF
export BUNDLE

mkdir -p "$WORK/root-corral" "$WORK/root-runc"
command_for() {  # case runtime -> command line
    local case=$1 name=$2 rt root id
    if [[ $name == corral ]]; then rt=$CORRAL; else rt=$RUNC; fi
    root=$WORK/root-$name id=$ID-$name
    case $case in
        cycle) echo "sh $WORK/cycle.sh $rt $root $id" ;;
        run) echo "$rt --root $root run --bundle $BUNDLE $id" ;;
        version) echo "$rt --version" ;;
    esac
}

per_round=$(( (RUNS + ROUNDS - 1) / ROUNDS ))
for round in $(seq 1 "$ROUNDS"); do
    if (( round % 2 )); then order=(corral runc); else order=(runc corral); fi
    args=()
    for case in $CASES; do
        for name in "${order[@]}"; do
            args+=(-n "$case/$name" "$(command_for "$case" "$name")")
        done
    done
    echo "bench: round $round/$ROUNDS ($per_round runs each, order ${order[*]})" >&2
    hyperfine -N --style basic --warmup "$WARMUP" -r "$per_round" \
        --export-json "$WORK/round-$round.json" "${args[@]}" >&2
done

# --- medians over all rounds, and the ratio corral/runc.
/usr/bin/python3 - "$WORK"/round-*.json <<'EOF'
import json, statistics, sys
times = {}
for path in sys.argv[1:]:
    with open(path) as f:
        for result in json.load(f)["results"]:
            times.setdefault(result["command"], []).extend(result["times"])
cases = list(dict.fromkeys(name.split("/")[0] for name in times))
print(f"{'case':<10}{'corral-runtime':>16}{'runc':>12}{'ratio':>9}{'runs':>7}")
for case in cases:
    corral = statistics.median(times[f"{case}/corral"]) * 1000
    runc = statistics.median(times[f"{case}/runc"]) * 1000
    runs = len(times[f"{case}/corral"])
    print(f"{case:<10}{corral:>13.1f} ms{runc:>9.1f} ms{corral / runc:>8.2f}x{runs:>7}")
EOF
