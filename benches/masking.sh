#!/usr/bin/env bash
# What masking secrets costs on the log path: one step prints N lines of about
# 100 bytes (every 100th holding a secret's value) and trun logs them, sends
# them as events and renders them (--progress plain, to /dev/null).
#
#   rows: the step's command alone writing to /dev/null (the floor, the peer);
#         TRUN_BASE (a build from before masking, if given) with no secrets;
#         TRUN with no secrets; with 10 secrets that never match; with those
#         and one that matches every 100th line.
# Prints a Markdown table of the median, min and max wall time and CPU time
# (user + sys of trun and the step, from /usr/bin/time) over RUNS runs,
# and `uptime` before and after.
#
#   benches/masking.sh                                   # N=200000, RUNS=5
#   TRUN_BASE=/tmp/trun-old N=100000 RUNS=3 benches/masking.sh
set -euo pipefail
N=${N:-200000}
RUNS=${RUNS:-5}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
TRUN=${TRUN:-$ROOT/target/release/trun}
TRUN_BASE=${TRUN_BASE:-}
[ -x "$TRUN" ] || { echo "build first: cargo build --release (looked for $TRUN)" >&2; exit 2; }
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

PRINT="awk -v n=$N 'BEGIN { for (i = 0; i < n; i++) { if (i % 100 == 0) printf \"line %d token hunter2-secret-value and the rest of the line to pad it out\\n\", i; else printf \"line %d xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx\\n\", i } }'"
cat > "$WORK/trun.yaml" <<EOF
name: masking
defaults: { run: { shell: sh } }
jobs:
  print:
    steps:
      - run: $PRINT
EOF
: > "$WORK/none.env"
for i in $(seq 1 10); do echo "UNUSED_$i=never-printed-value-$i-$RANDOM$RANDOM"; done > "$WORK/unused.env"
{ cat "$WORK/unused.env"; echo "MATCHING=hunter2-secret-value"; } > "$WORK/matching.env"

stats() { sort -n | awk '{a[NR]=$1} END {m = (NR%2==1) ? a[(NR+1)/2] : int((a[NR/2]+a[NR/2+1])/2); printf "%s | %s–%s", m, a[1], a[NR]}'; }
time_it() { # label, command...   wall ms and CPU ms (user + sys, the command included)
  local label=$1; shift
  local walls=() cpus=()
  for _ in $(seq 1 "$RUNS"); do
    rm -rf "$WORK/.trun"
    /usr/bin/time -f '%e %U %S' -o "$WORK/time" "$@" >/dev/null 2>&1 || { echo "$label failed" >&2; exit 1; }
    read -r e u s < "$WORK/time"
    walls+=("$(awk -v e="$e" 'BEGIN { printf "%d", e * 1000 }')")
    cpus+=("$(awk -v u="$u" -v s="$s" 'BEGIN { printf "%d", (u + s) * 1000 }')")
  done
  printf '| %s | %s | %s |\n' "$label" \
    "$(printf '%s\n' "${walls[@]}" | stats)" "$(printf '%s\n' "${cpus[@]}" | stats)"
}

cd "$WORK"
echo "uptime before: $(uptime)"
echo
echo "| $N lines (~$(( N * 100 / 1000000 )) MB) through one step | wall ms median | min–max | CPU ms median | min–max ($RUNS runs) |"
echo "|---|---:|---|---:|---|"
time_it "the command alone, to /dev/null" sh -c "$PRINT"
if [ -n "$TRUN_BASE" ]; then
  time_it "trun before masking, no secrets" "$TRUN_BASE" --progress plain
fi
time_it "trun, no secrets" "$TRUN" --progress plain --secret-file none.env
time_it "trun, 10 secrets, none printed" "$TRUN" --progress plain --secret-file unused.env
time_it "trun, 11 secrets, one on every 100th line" "$TRUN" --progress plain --secret-file matching.env
# The log really was masked.
"$TRUN" --progress plain --secret-file matching.env >/dev/null 2>&1
if grep -rq hunter2-secret-value .trun/logs; then echo "a log holds the secret" >&2; exit 1; fi
echo
echo "uptime after: $(uptime)"
