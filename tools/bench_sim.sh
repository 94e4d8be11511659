#!/usr/bin/env bash
# Simulator speed and memory benchmarks (docs/performance.md). Prints one line per run and the
# median of each case. Needs a Release build: cmake -S . -B build-release -DCMAKE_BUILD_TYPE=Release
#   tools/bench_sim.sh [BUILD_DIR] [REPS]
set -euo pipefail
cd "$(dirname "$0")/.."
build=${1:-build-release}
reps=${2:-5}
bin="$build/racksim"
gb300=examples/mlperf-llama2-70b-offline-gb300-nvl72.yaml
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# run NAME REPS ARGS...: wall seconds (from the JSON), events, peak RSS (from /usr/bin/time)
run() {
  local name=$1 n=$2
  shift 2
  local walls=() rss=() events=0
  for _ in $(seq "$n"); do
    /usr/bin/time -f "%M" -o "$tmp/rss" "$bin" simulate "$@" --json "$tmp/out.json" >/dev/null
    walls+=("$(sed -n 's/.*"wall_s": \([0-9.e-]*\).*/\1/p' "$tmp/out.json")")
    events=$(sed -n 's/.*"events": \([0-9]*\).*/\1/p' "$tmp/out.json")
    rss+=("$(cat "$tmp/rss")")
  done
  local med_wall med_rss
  med_wall=$(printf '%s\n' "${walls[@]}" | sort -g | awk '{a[NR]=$1} END{print a[int((NR+1)/2)]}')
  med_rss=$(printf '%s\n' "${rss[@]}" | sort -g | awk '{a[NR]=$1} END{print a[int((NR+1)/2)]}')
  printf '%-44s reps %d  wall median %8.3f s  (all: %s)  events %d  %.0f events/s  peak RSS %.0f MiB\n' \
    "$name" "$n" "$med_wall" "${walls[*]}" "$events" "$(echo "$events / $med_wall" | bc -l)" "$(echo "$med_rss / 1024" | bc -l)"
}

run "gb300-nvl72 offline 24,576 requests" "$reps" "$gb300"
for n in 100000 1000000 4000000; do
  run "gb300-nvl72 offline $n requests" 3 "$gb300" --set workload.requests=$n
done
# Replicas: the same 1,000,000 requests over 8, 18, 36 and 72 replicas of the rack.
for r in 8 18 36 72; do
  run "gb300-nvl72 offline 1M requests, $r replicas" 3 "$gb300" --set workload.requests=1000000 --set deployment.replicas=$r
done
# The MLPerf-sized run: 11.4 million requests, what a 2,400 s record run sends.
run "gb300-nvl72 offline 11.4M requests" 3 "$gb300" --set workload.requests=11400000
