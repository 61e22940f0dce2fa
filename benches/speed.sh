#!/usr/bin/env bash
# The three speed scenarios side by side in one run, each tool on the same generated
# input: trun / make -r / go-task (method: checksum) for
#   1. the no-op at 10 000 files / 100 jobs   (benches/uptodate.sh, DIRS=100)
#   2. the no-op at 100 000 files / 1 000 jobs (benches/uptodate.sh, DIRS=1000, no-op only)
#   3. 1 000 trivial jobs at -j 2              (benches/dag.sh)
# with `uptime` before and after each.
#
#   cargo build --release && benches/speed.sh      # RUNS=7 by default
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
export RUNS=${RUNS:-7}
echo "## no-op, 10 000 files / 100 jobs"
DIRS=100 CASES=${CASES:-cold noop touch change} "$HERE/uptodate.sh"
echo
echo "## no-op, 100 000 files / 1 000 jobs"
DIRS=1000 CASES=noop "$HERE/uptodate.sh"
echo
echo "## 1 000 trivial jobs, -j 2"
N=1000 "$HERE/dag.sh"
