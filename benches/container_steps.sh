#!/usr/bin/env bash
# Container step overhead through the real binary: one job of N trivial steps
# in one container (trun starts the container once, then `docker exec`s each
# step through the Engine API) versus N `docker run --rm` of the same command
# (a fresh container per step, the way many CI runners do it). Prints a
# Markdown table of median wall times over RUNS runs.
#
#   benches/container_steps.sh      # N=20, RUNS=5, TRUN=target/release/trun
#   N=50 RUNS=3 TRUN=target/debug/trun benches/container_steps.sh
#
# Needs the test image trun-test/busybox:latest, which the test suite creates
# (cargo test --test docker_cli); IMAGE= overrides it.
set -euo pipefail
N=${N:-20}
RUNS=${RUNS:-5}
IMAGE=${IMAGE:-trun-test/busybox:latest}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
TRUN=${TRUN:-$ROOT/target/release/trun}
[ -x "$TRUN" ] || { echo "build first: cargo build --release (looked for $TRUN)" >&2; exit 2; }
docker image inspect "$IMAGE" >/dev/null 2>&1 ||
  { echo "image $IMAGE missing: run cargo test --test docker_cli once" >&2; exit 2; }
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

{
  echo "name: container-steps"
  echo "jobs:"
  echo "  steps:"
  echo "    container: $IMAGE"
  echo "    steps:"
  for i in $(seq 1 "$N"); do echo "      - run: 'true'"; done
} > "$WORK/trun.yaml"

now() { date +%s%N; }
median() { sort -n | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }'; }

trun_total=() trun_steps=() docker_total=()
for _ in $(seq 1 "$RUNS"); do
  rm -rf "$WORK/.trun"
  t0=$(now)
  (cd "$WORK" && "$TRUN" --progress plain >/dev/null 2>&1)
  t1=$(now)
  trun_total+=($(( (t1 - t0) / 1000000 )))
  # The steps alone (container start and removal excluded), from the state store.
  trun_steps+=($(cd "$WORK" && "$TRUN" show --json |
    grep -o '"duration_ms": [0-9]*' | tail -n "$N" | awk '{ s += $2 } END { print s }'))

  t0=$(now)
  for _ in $(seq 1 "$N"); do docker run --rm "$IMAGE" sh -c true; done
  t1=$(now)
  docker_total+=($(( (t1 - t0) / 1000000 )))
done

tt=$(printf '%s\n' "${trun_total[@]}" | median)
ts=$(printf '%s\n' "${trun_steps[@]}" | median)
dt=$(printf '%s\n' "${docker_total[@]}" | median)
echo "$N trivial steps (\`sh -c true\` in $IMAGE), median of $RUNS runs:"
echo
echo "| variant | wall ms | per step ms |"
echo "|---|---:|---:|"
echo "| trun: one job container, exec per step (whole run) | $tt | $(( tt / N )) |"
echo "| trun: the $N exec steps alone (from \`trun show --json\`) | $ts | $(( ts / N )) |"
echo "| $N x \`docker run --rm\` | $dt | $(( dt / N )) |"
