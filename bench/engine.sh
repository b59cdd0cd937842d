#!/bin/bash
# Engine bench: corral vs podman in one run, both with --network none (issue 6).
#  1. `run --rm busybox true`: ROUNDS (5) hyperfine rounds of RUNS (10) runs; medians
#  2. 50 idle containers started (`run -d ... sleep`) then removed: wall time, and memory
#     per idle container = PSS of its conmon (/proc/<pid>/smaps_rollup) + its cgroup's
#     memory.usage_in_bytes (v1) / memory.current (v2)
#  3. `exec CONTAINER true` latency, in rounds as 1.
# Temp stores for both; everything made here is removed on exit.
set -euo pipefail
HERE=$(cd "$(dirname "$0")/.." && pwd)
N=${N:-50}
RUNS=${RUNS:-10}
NAME=engine
. "$HERE/bench/engine_lib.sh"

echo "== run --rm busybox true (${ROUNDS:-5} rounds of $RUNS runs each)"
rounds "run --rm" "$C run --rm --network none busybox true" \
  "$P run --rm --network none localhost/busybox true"

mem_of() {  # $1 = conmon pid, $2 = cgroup memory file -> KiB
  local pss cg
  pss=$(awk '/^Pss:/ {print $2}' /proc/$1/smaps_rollup 2>/dev/null || echo 0)
  cg=$(( $(cat "$2" 2>/dev/null || echo 0) / 1024 ))
  echo "$pss $cg"
}
cg_file() {  # $1 = container pid
  local v1 v2
  v1=$(awk -F: '$2=="memory" {print $3}' /proc/$1/cgroup)
  if [ -n "$v1" ] && [ -f "/sys/fs/cgroup/memory$v1/memory.usage_in_bytes" ]; then
    echo "/sys/fs/cgroup/memory$v1/memory.usage_in_bytes"; return; fi
  v2=$(awk -F: '$1=="0" {print $3}' /proc/$1/cgroup)
  echo "/sys/fs/cgroup$v2/memory.current"
}

idle() {  # $1 = label, $2 = command prefix, $3 = image
  local t0 t1 t2 pss=0 cgm=0 ids=()
  t0=$(date +%s.%N)
  for i in $(seq 1 "$N"); do ids+=("$($2 run -d --network none "$3" sleep 3600)"); done
  t1=$(date +%s.%N)
  for id in "${ids[@]}"; do
    if [ "$1" = corral ]; then
      read -r cpid pid < <($2 inspect --format '{{.State.ConmonPid}} {{.State.Pid}}' "$id")
    else
      read -r cpid pid < <($2 inspect --format '{{.State.ConmonPid}} {{.State.Pid}}' "$id")
    fi
    read -r a b < <(mem_of "$cpid" "$(cg_file "$pid")")
    pss=$((pss + a)); cgm=$((cgm + b))
  done
  $2 rm -f "${ids[@]}" >/dev/null 2>&1 || $2 rm -f -t 0 "${ids[@]}" >/dev/null
  t2=$(date +%s.%N)
  python3 -c "print(f'$1: start {$N} {float($t1)-float($t0):.2f} s  rm {float($t2)-float($t1):.2f} s  per idle container: conmon PSS {$pss/$N/1024:.2f} MiB + cgroup {$cgm/$N/1024:.2f} MiB')"
}
echo "== $N idle containers"
idle corral "$C" busybox
idle podman "$P" localhost/busybox

echo "== exec latency (${ROUNDS:-5} rounds of $RUNS runs each)"
CID=$($C run -d --network none busybox sleep 3600)
PID=$($P run -d --network none localhost/busybox sleep 3600)
rounds "exec" "$C exec $CID true" "$P exec $PID true"
