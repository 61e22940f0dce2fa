#!/usr/bin/env bash
# A cold run versus a run restored from a remote cache, through the real
# binary: a pipeline of JOBS jobs, each writing MB megabytes of data and a
# gzip -9 of it (so a cold run does real work and a hit moves real bytes).
# Every run is in a fresh copy of the project (a new machine: no .trun).
#
#   cold            no remote cache: every step runs
#   cold + upload   every step runs and is sent to the cache (an empty one)
#   hit (WebDAV)    nothing runs: outputs fetched from nginx WebDAV
#   hit (serve)     nothing runs: outputs fetched from `trun serve`
#
# Prints a Markdown table: median wall time over RUNS runs, with the range.
#
#   benches/remote_cache.sh                  # JOBS=4 MB=8 RUNS=5, release build
#   RUNS=3 TRUN=target/debug/trun benches/remote_cache.sh
#
# Needs nginx (with the dav module: Debian's nginx) for the WebDAV server, which
# it starts and stops itself unless TRUN_TEST_WEBDAV_URL is set.
set -euo pipefail
JOBS=${JOBS:-4}
MB=${MB:-8}
RUNS=${RUNS:-5}
ROOT=$(cd "$(dirname "$0")/.." && pwd)
TRUN=${TRUN:-$ROOT/target/release/trun}
TRUN=$(realpath "$TRUN" 2>/dev/null || echo "$TRUN")
[ -x "$TRUN" ] || { echo "build first: cargo build --release (looked for $TRUN)" >&2; exit 2; }
WORK=$(mktemp -d)
SERVE_PID=""
DAV_DIR=""
cleanup() {
  [ -n "$SERVE_PID" ] && kill "$SERVE_PID" 2>/dev/null && wait "$SERVE_PID" 2>/dev/null
  [ -n "$DAV_DIR" ] && "$ROOT/.ci/webdav" stop "$DAV_DIR"
  rm -rf "$WORK"
}
trap cleanup EXIT

if [ -z "${TRUN_TEST_WEBDAV_URL:-}" ]; then
  eval "$("$ROOT/.ci/webdav" start)"
  DAV_DIR=$TRUN_TEST_WEBDAV_DIR
fi
DAV=$TRUN_TEST_WEBDAV_URL

# trun serve as the cache, on a port it picks.
mkdir -p "$WORK/server"
echo 'jobs: { noop: { steps: [ { run: "true" } ] } }' > "$WORK/server/trun.yaml"
(cd "$WORK/server" && exec "$TRUN" serve --bind 127.0.0.1:0 --token bench 2> "$WORK/serve.log") &
SERVE_PID=$!
for _ in $(seq 1 100); do grep -q ' on http://' "$WORK/serve.log" 2>/dev/null && break; sleep 0.1; done
SERVE=$(grep -o 'http://[0-9.:]*' "$WORK/serve.log" | head -1)
[ -n "$SERVE" ] || { cat "$WORK/serve.log" >&2; exit 1; }

mkdir -p "$WORK/project/src"
echo "seed" > "$WORK/project/src/seed.txt"
{
  echo "name: remote-cache-bench"
  echo "jobs:"
  for j in $(seq 1 "$JOBS"); do
    echo "  j$j:"
    echo "    steps:"
    echo "      - id: make"
    echo "        sources: [\"src/**\"]"
    echo "        generates: [\"out/j$j\"]"
    echo "        run: |"
    echo "          mkdir -p out/j$j"
    echo "          head -c ${MB}M /dev/urandom > out/j$j/data.bin"
    echo "          gzip -9 -c out/j$j/data.bin > out/j$j/data.bin.gz"
    echo "          echo made j$j"
  done
} > "$WORK/project/trun.yaml"

now() { date +%s%N; }
stats() { sort -n | awk '{ a[NR] = $1 } END { printf "%d | %d–%d", a[int((NR + 1) / 2)], a[1], a[NR] }'; }

# One timed run in a fresh copy; echoes milliseconds. Fails if the run fails.
timed() {
  local dir=$WORK/m$RANDOM$RANDOM
  cp -r "$WORK/project" "$dir"
  local t0 t1
  t0=$(now)
  (cd "$dir" && "$TRUN" --progress plain "$@" >"$dir.log" 2>&1) || { cat "$dir.log" >&2; exit 1; }
  t1=$(now)
  if [ "${EXPECT_HIT:-}" = 1 ] && [ "$(grep -c 'restored from remote cache' "$dir.log")" -lt "$JOBS" ]; then
    echo "expected every step restored from the remote cache:" >&2; cat "$dir.log" >&2; exit 1
  fi
  rm -rf "$dir" "$dir.log"
  echo $(( (t1 - t0) / 1000000 ))
}

cold=() upload=() dav=() serve=()
for i in $(seq 1 "$RUNS"); do
  cold+=("$(timed)")
  # An empty cache each time, so every blob is sent.
  upload+=("$(timed --remote-cache "$DAV/bench-$$-$i")")
  dav+=("$(EXPECT_HIT=1 timed --remote-cache "$DAV/bench-$$-$i")")
  if [ "$i" = 1 ]; then timed --remote-cache "$SERVE/" --remote-cache-token bench >/dev/null; fi
  serve+=("$(EXPECT_HIT=1 timed --remote-cache "$SERVE/" --remote-cache-token bench)")
done

echo "$JOBS jobs, each writing $MB MB of data plus its gzip -9 ($(( JOBS * MB * 2 )) MB of outputs in all);"
echo "fresh workspace every run; median of $RUNS runs, range min–max; $(basename "$TRUN") at $TRUN"
echo
echo "| variant | median ms | range ms |"
echo "|---|---:|---:|"
echo "| cold (no cache) | $(printf '%s\n' "${cold[@]}" | stats) |"
echo "| cold + upload to WebDAV | $(printf '%s\n' "${upload[@]}" | stats) |"
echo "| remote hit, nginx WebDAV | $(printf '%s\n' "${dav[@]}" | stats) |"
echo "| remote hit, trun serve | $(printf '%s\n' "${serve[@]}" | stats) |"
echo
echo "uptime: $(uptime)"
