#!/usr/bin/env bash
# Scheduling overhead: N jobs of `true` in a DAG, run with -j 2 through trun,
# through `make -r -j2` with the equivalent Makefile, and through a shell
# loop. Prints a Markdown table of median wall times over RUNS runs.
#
#   benches/dag.sh            # N=1000, RUNS=5, TRUN=target/release/trun
#   N=200 RUNS=3 benches/dag.sh
set -euo pipefail
N=${N:-1000}
RUNS=${RUNS:-5}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
TRUN=${TRUN:-$ROOT/target/release/trun}
[ -x "$TRUN" ] || { echo "build first: cargo build --release (looked for $TRUN)" >&2; exit 2; }
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

# Job i needs job i-1 and i-7 when they exist: a DAG with real ordering
# constraints and room for two jobs at a time.
{
  echo "name: dag"
  echo "defaults: { run: { shell: sh } }"
  echo "jobs:"
  for i in $(seq 1 "$N"); do
    echo "  j$i:"
    deps=()
    [ "$i" -gt 1 ] && deps+=("j$((i - 1))")
    [ "$i" -gt 7 ] && deps+=("j$((i - 7))")
    if [ ${#deps[@]} -gt 0 ]; then echo "    needs: [$(IFS=,; echo "${deps[*]}")]"; fi
    echo "    steps: [{ run: 'true' }]"
  done
} > "$WORK/trun.yaml"
{
  printf 'all:'
  for i in $(seq 1 "$N"); do printf ' j%s' "$i"; done
  printf '\n.PHONY: all'
  for i in $(seq 1 "$N"); do printf ' j%s' "$i"; done
  printf '\n'
  for i in $(seq 1 "$N"); do
    deps=""
    [ "$i" -gt 1 ] && deps="j$((i - 1))"
    [ "$i" -gt 7 ] && deps="$deps j$((i - 7))"
    printf 'j%s: %s\n\t@true\n' "$i" "$deps"
  done
} > "$WORK/Makefile"

now_ms() { date +%s%N | cut -c1-13; }
median() { sort -n | awk '{a[NR]=$1} END {print (NR%2==1) ? a[(NR+1)/2] : int((a[NR/2]+a[NR/2+1])/2)}'; }
time_it() { # label, command...
  local label=$1; shift
  local times=()
  for _ in $(seq 1 "$RUNS"); do
    local t0; t0=$(now_ms)
    "$@" >/dev/null 2>&1 || { echo "$label failed" >&2; exit 1; }
    times+=($(( $(now_ms) - t0 )))
  done
  printf '| %s | %s |\n' "$label" "$(printf '%s\n' "${times[@]}" | median)"
}

cd "$WORK"
echo "| $N jobs of \`true\`, -j 2 | median ms ($RUNS runs) |"
echo "|---|---|"
time_it "trun -j 2 (records every step in .trun/state.db)" "$TRUN" -j 2 --progress plain -q
time_it "make -r -j2" make -r -j2 -s
time_it "shell loop (sh -c true, sequential)" sh -c "for i in \$(seq 1 $N); do sh -c true; done"
runs=$(sqlite3 .trun/state.db 'select count(*) from steps where status="success"' 2>/dev/null || echo "?")
echo
echo "steps recorded as success in the state store: $runs"
