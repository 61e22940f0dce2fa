#!/usr/bin/env bash
# Up-to-date check benchmark: trun vs make -r vs go-task (checksum), as whole processes.
#
# Builds a synthetic project of DIRS x 100 source files (src/dNNN/sM/fK.txt: DIRS dirs x
# 10 sub-dirs x 10 files; DIRS=100 gives 10 000 files and 100 jobs, DIRS=1000 gives
# 100 000 files and 1 000 jobs) with one job per dir, each with `sources` over its own
# dir and one `generates` stamp, then times up to four cases per tool (CASES):
#   (a) cold      first run, no state
#   (b) no-op     everything up to date
#   (c) touch     one source file's mtime bumped, content unchanged
#   (d) change    one source file's content changed
# and prints a Markdown table of median wall-clock milliseconds with the min–max range
# (plus the CPU time of (b), steadier on a loaded machine), with how many jobs each of
# (b), (c), (d) re-ran
# (stamps rewritten; 0 / 0 / 1 is right for a content-hash tool). The generated
# trun.yaml is checked with `trun validate` first.
#
# Usage: benches/uptodate.sh            (from the repository root)
# Env:   TRUN=path/to/trun (default target/release/trun), RUNS=10, JOBS=2, DIRS=100,
#        CASES="cold noop touch change" (a subset skips the others: CASES=noop),
#        KEEP=1 keeps the temporary directory. Uses hyperfine when installed, else a
#        bash loop. Every tool gets a copy of the same generated tree.
# make is run as `make -r -j $JOBS` (mtime-based, no built-in rules); go-task as
# `task --concurrency $JOBS` with `method: checksum` (`pip install go-task-bin`).
set -euo pipefail

RUNS=${RUNS:-10}
JOBS=${JOBS:-2}
DIRS=${DIRS:-100}
CASES=${CASES:-cold noop touch change}
TRUN=${TRUN:-target/release/trun}
if [[ -x $TRUN ]]; then TRUN=$(cd "$(dirname "$TRUN")" && pwd)/$(basename "$TRUN"); fi

WORK=$(mktemp -d "${TMPDIR:-/tmp}/trun-bench.XXXXXX")
cleanup() { if [[ -z ${KEEP:-} ]]; then rm -rf "$WORK"; else echo "kept $WORK" >&2; fi; }
trap cleanup EXIT

SUBS=10 FILES=10
TOUCHED=src/d042/s3/f7.txt

# --- the synthetic project -------------------------------------------------------
make_tree() {
  local root=$1 d s f dd
  mkdir -p "$root/out"
  for ((d = 0; d < DIRS; d++)); do
    printf -v dd 'd%03d' "$d"
    for ((s = 0; s < SUBS; s++)); do
      mkdir -p "$root/src/$dd/s$s"
      for ((f = 0; f < FILES; f++)); do
        echo "$dd s$s f$f" >"$root/src/$dd/s$s/f$f.txt"
      done
    done
  done
}

jobs_list() { local d; for ((d = 0; d < DIRS; d++)); do printf 'd%03d\n' "$d"; done; }

write_trun() {
  {
    echo "jobs:"
    for j in $(jobs_list); do
      cat <<EOF
  $j:
    steps:
      - run: touch out/$j.stamp
        sources: ["src/$j/**"]
        generates: ["out/$j.stamp"]
EOF
    done
  } >"$1/trun.yaml"
}

write_make() {
  {
    printf 'all:'
    for j in $(jobs_list); do printf ' out/%s.stamp' "$j"; done
    printf '\n.PHONY: all\n'
    for j in $(jobs_list); do
      printf 'out/%s.stamp: $(wildcard src/%s/*/*)\n\ttouch $@\n' "$j" "$j"
    done
  } >"$1/Makefile"
}

write_task() {
  {
    echo "version: '3'"
    echo "method: checksum"
    echo "tasks:"
    echo "  default:"
    printf '    deps: ['
    jobs_list | paste -sd, - | tr -d '\n'
    echo ']'
    for j in $(jobs_list); do
      cat <<EOF
  $j:
    sources: ["src/$j/**/*"]
    generates: ["out/$j.stamp"]
    cmds: ["touch out/$j.stamp"]
EOF
    done
  } >"$1/Taskfile.yml"
}

# --- timing ---------------------------------------------------------------------
# median_ms DIR PREPARE COMMAND...: "WALL CPU", the median wall time and the median CPU
# time (user + system, the tool and its children) of COMMAND over $RUNS runs in DIR, in
# ms, running PREPARE (a shell snippet, untimed) before each. CPU time is what to compare
# on a loaded machine, where wall time also measures the other processes.
median_ms() {
  local dir=$1 prep=$2
  shift 2
  if command -v hyperfine >/dev/null; then
    local json="$WORK/hf.json"
    (cd "$dir" && hyperfine --style none --runs "$RUNS" --prepare "$prep" --export-json "$json" "$*" >/dev/null 2>&1)
    python3 -c 'import json,sys; r=json.load(open(sys.argv[1]))["results"][0]; print("%.1f %.1f %.0f–%.0f" % (r["median"]*1000, (r["user"]+r["system"])*1000/len(r["times"]), r["min"]*1000, r["max"]*1000))' "$json"
    return
  fi
  local walls=() cpus=() i t0 t1 c0 c1
  for ((i = 0; i < RUNS; i++)); do
    (cd "$dir" && bash -c "$prep") >/dev/null 2>&1
    # $EPOCHREALTIME (bash 5) and `times` cost no fork, unlike `date`; the timed part
    # is one fork + exec of the tool, as hyperfine would do.
    children_cpu_us
    c0=$CPU_US
    t0=${EPOCHREALTIME/[.,]/}
    (cd "$dir" && exec "$@" >/dev/null 2>&1) || { echo "FAILED: $* in $dir" >&2; echo "fail fail fail"; return; }
    t1=${EPOCHREALTIME/[.,]/}
    children_cpu_us
    c1=$CPU_US
    walls+=($((t1 - t0)))
    cpus+=($((c1 - c0)))
  done
  echo "$(median "${walls[@]}") $(median "${cpus[@]}") $(range "${walls[@]}")"
}

# range US...: "min–max" of microsecond values, in whole ms.
range() {
  printf '%s\n' "$@" | sort -n | awk 'NR == 1 {lo = $1} {hi = $1} END {printf "%.0f–%.0f", lo / 1000, hi / 1000}'
}

# median US...: the median of microsecond values, in ms.
median() {
  printf '%s\n' "$@" | sort -n | awk '{a[NR] = $1} END {m = (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2; printf "%.1f", m / 1000}'
}

# children_cpu_us: sets CPU_US to the user + system time of this shell's waited-for
# children, in us. `times` must run in this shell, not in a $(...) or pipeline subshell
# (a fork starts with no children), so its output goes through a file.
children_cpu_us() {
  local u s us
  times >"$WORK/times"
  { read -r _; read -r u s; } <"$WORK/times"
  to_us "$u"
  us=$TO_US
  to_us "$s"
  CPU_US=$((us + TO_US))
}
# to_us XmY.YYYs: sets TO_US (no $(...): a fork here would be counted as a child).
to_us() {
  local m=${1%%m*} rest=${1#*m}
  rest=${rest%s}
  local sec=${rest%%[.,]*} frac=${rest#*[.,]}000000
  TO_US=$((10#$m * 60000000 + 10#$sec * 1000000 + 10#${frac:0:6}))
}

# bench TOOL RESET_STATE COMMAND...: the four cases for one tool, as a table row.
bench() {
  local tool=$1 reset=$2
  shift 2
  local dir="$WORK/$tool"
  cp -a "$WORK/tree" "$dir"
  "write_$tool" "$dir"
  if [[ $tool == trun ]]; then
    (cd "$dir" && "$1" validate >/dev/null) || { echo "generated trun.yaml does not validate" >&2; exit 1; }
  fi
  local cold=- noop=- noop_cpu=- touch=- change=- s0 ran_noop=- ran_touch=- ran_change=- t
  # fmt "WALL CPU RANGE": "WALL (RANGE)".
  fmt() { local w=${1%% *} r=${1##* }; echo "$w ($r)"; }
  if has_case cold; then
    t=$(median_ms "$dir" "$reset" "$@")
    cold=$(fmt "$t")
  fi
  (cd "$dir" && bash -c "$reset" && "$@" >/dev/null 2>&1)
  # Which stamps each case rewrote (over all its runs): proves (b) ran nothing, and
  # shows who re-runs a job for a touch.
  if has_case noop; then
    s0=$(stamps "$dir")
    t=$(median_ms "$dir" "true" "$@")
    noop=$(fmt "$t") noop_cpu=${t#* }
    noop_cpu=${noop_cpu%% *}
    ran_noop=$(rewritten "$dir" "$s0")
  fi
  if has_case touch; then
    s0=$(stamps "$dir")
    t=$(median_ms "$dir" "touch $TOUCHED" "$@")
    touch=$(fmt "$t")
    ran_touch=$(rewritten "$dir" "$s0")
  fi
  if has_case change; then
    s0=$(stamps "$dir")
    t=$(median_ms "$dir" "date +%s%N > $TOUCHED" "$@")
    change=$(fmt "$t")
    ran_change=$(rewritten "$dir" "$s0")
  fi
  if [[ $(stamp_count "$dir") != "$DIRS" ]]; then
    echo "$tool: expected $DIRS stamps in out/, found $(stamp_count "$dir")" >&2
  fi
  echo "| $tool | $cold | $noop | $noop_cpu | $touch | $change | $ran_noop / $ran_touch / $ran_change |"
}

has_case() { [[ " $CASES " == *" $1 "* ]]; }

# stamps DIR: every stamp with its mtime (ns), one per line, sorted.
stamps() { (cd "$1" && find out -name '*.stamp' -printf '%p %T@\n' | sort); }
stamp_count() { (cd "$1" && find out -name '*.stamp' | wc -l); }
# rewritten DIR BEFORE: how many stamps changed since BEFORE was taken.
rewritten() { comm -13 <(echo "$2") <(stamps "$1") | grep -c . || true; }

echo "building the synthetic project in $WORK ..." >&2
make_tree "$WORK/tree"

timer="bash loop, $RUNS runs"
command -v hyperfine >/dev/null && timer="hyperfine, $RUNS runs"
echo
echo "$((DIRS * SUBS * FILES)) source files, $DIRS jobs, -j $JOBS; median ms (min–max) ($timer); wall time unless CPU (user + sys)"
echo "machine: $(nproc) cores; uptime at start: $(uptime)"
echo
echo "| tool | (a) cold | (b) no-op | (b) no-op CPU | (c) touch | (d) change | jobs re-run b / c / d |"
echo "|---|---:|---:|---:|---:|---:|---:|"
missing=()
if [[ -x $TRUN ]]; then
  bench trun "rm -rf .trun out && mkdir out" "$TRUN" -j "$JOBS"
else
  missing+=("trun (no executable at $TRUN; build with cargo build --release or set TRUN)")
fi
if command -v make >/dev/null; then
  bench make "rm -rf out && mkdir out" make -r -j "$JOBS"
else
  missing+=("make (not installed)")
fi
if command -v task >/dev/null; then
  bench task "rm -rf .task out && mkdir out" task --concurrency "$JOBS"
else
  missing+=("go-task (not installed: pip install go-task-bin)")
fi
for m in "${missing[@]}"; do echo "| ${m%% *} | not run: ${m#* } | | | | | |"; done
echo
echo "uptime at end: $(uptime)"
