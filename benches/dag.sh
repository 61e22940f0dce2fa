#!/usr/bin/env bash
# Scheduling overhead: N jobs of `true` in a DAG, run with -j 2 through trun (which
# records every step in .trun/state.db), through `make -r -j2` with the equivalent
# Makefile, through go-task (`task --concurrency 2`, `run: once`) with the equivalent
# Taskfile.yml, and through a shell loop. Prints a Markdown table of the median wall
# time with its min–max range over RUNS runs, and the ratio of each to make.
#
#   benches/dag.sh            # N=1000, RUNS=5, TRUN=target/release/trun
#   N=200 RUNS=3 benches/dag.sh
#   KEEP=1 benches/dag.sh     # keeps the generated directory (benches/interleaved.sh uses it)
# go-task is `pip install go-task-bin`; it is left out (and said so) when missing.
set -euo pipefail
N=${N:-1000}
RUNS=${RUNS:-5}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
TRUN=${TRUN:-$ROOT/target/release/trun}
[ -x "$TRUN" ] || { echo "build first: cargo build --release (looked for $TRUN)" >&2; exit 2; }
WORK=$(mktemp -d "${TMPDIR:-/tmp}/trun-dag.XXXXXX")
# KEEP=1 keeps the directory (trun.yaml, Makefile, Taskfile.yml side by side) and says where.
cleanup() { if [[ -z ${KEEP:-} ]]; then rm -rf "$WORK"; else echo "kept $WORK" >&2; fi; }
trap cleanup EXIT

# deps I: the jobs job I needs: I-1 and I-7 when they exist, a DAG with real
# ordering constraints and room for two jobs at a time.
deps() {
  local i=$1 d=()
  [ "$i" -gt 1 ] && d+=("j$((i - 1))")
  [ "$i" -gt 7 ] && d+=("j$((i - 7))")
  (IFS=,; echo "${d[*]}")
}

{
  echo "name: dag"
  echo "defaults: { run: { shell: sh } }"
  echo "jobs:"
  for i in $(seq 1 "$N"); do
    echo "  j$i:"
    d=$(deps "$i")
    [ -n "$d" ] && echo "    needs: [$d]"
    echo "    steps: [{ run: 'true' }]"
  done
} >"$WORK/trun.yaml"
{
  printf 'all:'
  for i in $(seq 1 "$N"); do printf ' j%s' "$i"; done
  printf '\n.PHONY: all'
  for i in $(seq 1 "$N"); do printf ' j%s' "$i"; done
  printf '\n'
  for i in $(seq 1 "$N"); do
    printf 'j%s: %s\n\t@true\n' "$i" "$(deps "$i" | tr , ' ')"
  done
} >"$WORK/Makefile"
{
  echo "version: '3'"
  echo "run: once"
  echo "tasks:"
  echo "  default:"
  echo "    deps: [j$N]"
  for i in $(seq 1 "$N"); do
    echo "  j$i:"
    d=$(deps "$i")
    [ -n "$d" ] && echo "    deps: [$d]"
    echo "    cmds: ['true']"
  done
} >"$WORK/Taskfile.yml"

# Every run's wall time and CPU time (user + sys of the tool and its children, what
# to compare on a loaded machine where wall time also measures the other processes),
# in ms, through GNU time.
TIME=/usr/bin/time
[ -x "$TIME" ] || { echo "needs GNU time at /usr/bin/time (apt-get install time)" >&2; exit 2; }
median() { sort -n | awk '{a[NR]=$1} END {print (NR%2==1) ? a[(NR+1)/2] : int((a[NR/2]+a[NR/2+1])/2)}'; }
MAKE_MEDIAN= MAKE_CPU=
time_it() { # label, command...
  local label=$1 walls=() cpus=() med range cpu ratio cpu_ratio w u s
  shift
  for _ in $(seq 1 "$RUNS"); do
    "$TIME" -o "$WORK/time" -f '%e %U %S' "$@" >/dev/null 2>&1 || { echo "$label failed" >&2; exit 1; }
    read -r w u s <"$WORK/time"
    walls+=("$(awk -v w="$w" 'BEGIN {printf "%d", w * 1000}')")
    cpus+=("$(awk -v u="$u" -v s="$s" 'BEGIN {printf "%d", (u + s) * 1000}')")
  done
  med=$(printf '%s\n' "${walls[@]}" | median)
  range=$(printf '%s\n' "${walls[@]}" | sort -n | awk 'NR==1{lo=$1} {hi=$1} END {print lo "–" hi}')
  cpu=$(printf '%s\n' "${cpus[@]}" | median)
  [ "$label" = "make -r -j2" ] && MAKE_MEDIAN=$med MAKE_CPU=$cpu
  ratio=$(awk -v a="$med" -v b="$MAKE_MEDIAN" 'BEGIN {printf "%.2f×", a / b}')
  cpu_ratio=$(awk -v a="$cpu" -v b="$MAKE_CPU" 'BEGIN {printf "%.2f×", a / b}')
  printf '| %s | %s | %s | %s | %s | %s |\n' "$label" "$med" "$range" "$ratio" "$cpu" "$cpu_ratio"
}

cd "$WORK"
echo "machine: $(nproc) cores; uptime at start: $(uptime)"
echo
echo "| $N jobs of \`true\`, -j 2 | wall ms, median ($RUNS runs) | min–max | ÷ make | CPU ms (user + sys), median | ÷ make |"
echo "|---|---:|---:|---:|---:|---:|"
# make first, so the others' ratio to it can be printed.
time_it "make -r -j2" make -r -j2 -s
time_it "trun -j 2 (records every step)" "$TRUN" -j 2 --progress plain -q
if command -v task >/dev/null; then
  time_it "go-task --concurrency 2" task --concurrency 2 --silent
else
  echo "| go-task | not run: not installed (pip install go-task-bin) | | | | |"
fi
time_it "shell loop (sh -c true, sequential)" sh -c "for i in \$(seq 1 $N); do sh -c true; done"
runs=$(sqlite3 .trun/state.db 'select count(*) from steps where status="success"' 2>/dev/null || echo "?")
echo
echo "steps recorded as success in the state store (all runs): $runs"
echo "uptime at end: $(uptime)"
