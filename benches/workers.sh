#!/usr/bin/env bash
# Jobs spread over `trun worker`s: JOBS independent jobs of `sleep 1`, queued
# by one `trun run --dispatch` and run by 1, 2 and 4 workers (-j 1 each) on
# this machine, through a throwaway PostgreSQL (.ci/postgres) and `trun serve`
# as the cache. Prints, per worker count, the run's wall time (median and range
# over RUNS runs), its speed-up over one worker, and the claim latency: for
# each attempt, from the moment the job was queued and its worker was free
# (whichever came later) to the claim, p50 and p99 over every attempt of
# every run. Ends with `uptime`: on a small machine the scaling flattens when
# the workers and the coordinator outnumber the cores.
#
#   benches/workers.sh                       # JOBS=200, RUNS=3, WORKERS="1 2 4"
#   JOBS=40 RUNS=1 TRUN=target/debug/trun benches/workers.sh
set -euo pipefail
JOBS=${JOBS:-200}
RUNS=${RUNS:-3}
WORKERS=${WORKERS:-"1 2 4"}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
TRUN=${TRUN:-$ROOT/target/release/trun}
[ -x "$TRUN" ] || { echo "build first: cargo build --release (looked for $TRUN)" >&2; exit 2; }
TRUN=$(realpath "$TRUN")
export PGOPTIONS="-c client_min_messages=warning"
command -v psql >/dev/null || PATH=$PATH:$(ls -d /usr/lib/postgresql/*/bin | sort -Vr | head -1)
WORK=$(mktemp -d)
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  [ -n "${TRUN_TEST_POSTGRES_DIR:-}" ] && "$ROOT/.ci/postgres" stop "$TRUN_TEST_POSTGRES_DIR"
  rm -rf "$WORK"
}
trap cleanup EXIT
eval "$("$ROOT/.ci/postgres" start)"
BASE=${TRUN_TEST_DATABASE_URL%/*}

# The cache server.
mkdir -p "$WORK/cache"
echo "jobs: { noop: { steps: [ { run: 'true' } ] } }" > "$WORK/cache/trun.yaml"
(cd "$WORK/cache" && exec "$TRUN" serve --bind 127.0.0.1:0 2> "$WORK/cache.log") &
PIDS+=($!)
for _ in $(seq 100); do grep -q ' on http://' "$WORK/cache.log" && break; sleep 0.1; done
CACHE=$(sed -n 's/.* on \(http:[^ ]*\).*/\1/p' "$WORK/cache.log" | head -1)

mkdir -p "$WORK/project"
{
  echo "name: workers-bench"
  echo "jobs:"
  for i in $(seq 1 "$JOBS"); do
    printf '  j%03d:\n    steps:\n      - run: sleep 1\n' "$i"
  done
} > "$WORK/project/trun.yaml"

now() { date +%s%N; }
median() { sort -n | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }'; }
range() { sort -n | awk 'NR == 1 { lo = $1 } { hi = $1 } END { printf "%s-%s", lo, hi }'; }

declare -A WALL LAT
run_once() { # workers, run number
  local n=$1 r=$2 db="bench_${1}_${2}" pids=()
  psql -q "$BASE/postgres" -c "DROP DATABASE IF EXISTS $db" -c "CREATE DATABASE $db"
  local url="$BASE/$db"
  for w in $(seq 1 "$n"); do
    mkdir -p "$WORK/w$w"
    (cd "$WORK/w$w" && exec "$TRUN" worker --db "$url" --remote-cache "$CACHE" \
      --workdir work --name "w$w" 2> "$WORK/w$w.log") &
    pids+=($!)
  done
  for w in $(seq 1 "$n"); do
    for _ in $(seq 100); do grep -q 'waiting for jobs' "$WORK/w$w.log" && break; sleep 0.1; done
  done
  rm -rf "$WORK/project/.trun"
  local t0 t1
  t0=$(now)
  (cd "$WORK/project" && "$TRUN" run --progress plain -j "$JOBS" --db "$url" \
    --remote-cache "$CACHE" --dispatch > /dev/null 2> "$WORK/run.log") ||
    { tail -20 "$WORK/run.log" >&2; exit 1; }
  t1=$(now)
  WALL[$n]+="$(( (t1 - t0) / 1000000 )) "
  # Claim latency per attempt, in ms: from max(queued, the worker's previous
  # job finished) to the claim.
  LAT[$n]+="$(psql -qAt "$url" -c "
    SELECT claimed_at - GREATEST(enqueued_at, COALESCE(LAG(finished_at) OVER
             (PARTITION BY worker ORDER BY claimed_at), enqueued_at))
    FROM job_queue" | tr '\n' ' ')"
  for p in "${pids[@]}"; do kill -TERM "$p"; done
  for p in "${pids[@]}"; do wait "$p" || true; done
}

for r in $(seq 1 "$RUNS"); do
  for n in $WORKERS; do run_once "$n" "$r"; done
done

pct() { # p, values...
  local p=$1; shift
  printf '%s\n' "$@" | sort -n | awk -v p="$p" '{ a[NR] = $1 } END {
    i = int(p / 100 * NR + 0.999999); if (i < 1) i = 1; if (i > NR) i = NR; print a[i] }'
}
echo
echo "$JOBS jobs of \`sleep 1\`, $RUNS run(s) each; $TRUN"
echo
echo "| workers | wall (s), median | range (s) | speed-up | claim p50 (ms) | claim p99 (ms) |"
echo "|---|---|---|---|---|---|"
one=""
for n in $WORKERS; do
  # shellcheck disable=SC2086
  med=$(printf '%s\n' ${WALL[$n]} | median)
  rng=$(printf '%s\n' ${WALL[$n]} | range)
  [ -z "$one" ] && one=$med
  # shellcheck disable=SC2086
  printf "| %s | %.1f | %s | %.2fx | %s | %s |\n" "$n" "$(echo "$med / 1000" | bc -l)" \
    "$(echo "$rng" | awk -F- '{ printf "%.1f-%.1f", $1 / 1000, $2 / 1000 }')" \
    "$(echo "$one / $med" | bc -l)" "$(pct 50 ${LAT[$n]})" "$(pct 99 ${LAT[$n]})"
done
echo
uptime
