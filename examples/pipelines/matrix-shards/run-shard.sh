#!/bin/sh
# run-shard.sh SHARD TOTAL NAME RUNNER...: run every TOTAL-th test starting at
# SHARD (1-based) with RUNNER (e.g. `bash --posix`), so TOTAL shards together
# run each test exactly once. One line per test goes to results/NAME.txt.
set -eu
shard=$1 total=$2 name=$3
shift 3
mkdir -p results
out="results/$name.txt"
: > "$out"
n=0 failed=0
for t in tests/t*.sh; do
    n=$((n + 1))
    [ $(( (n - 1) % total + 1 )) -eq "$shard" ] || continue
    if "$@" "$t"; then
        echo "pass $t" >> "$out"
    else
        echo "FAIL $t" >> "$out"
        failed=$((failed + 1))
    fi
done
echo "$name: $(grep -c . "$out") tests, $failed failed"
[ "$failed" -eq 0 ]
