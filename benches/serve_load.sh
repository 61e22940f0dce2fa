#!/usr/bin/env bash
# Load benchmark of `trun serve`: RUNS runs (default 1000) of a 3-job workflow
# created by CLIENTS concurrent clients (default 50) over HTTP on 127.0.0.1.
# Checks that no run is lost, none runs twice (store run ids and job records)
# and every run finishes; prints create latency p50/p99 and finished runs/s,
# with `uptime` before and after. Not a test: run it by hand.
#
#   benches/serve_load.sh                 # uses target/release/trun (built if missing)
#   TRUN=target/debug/trun RUNS=200 benches/serve_load.sh
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${RUNS:-1000}
CLIENTS=${CLIENTS:-50}
TRUN=${TRUN:-target/release/trun}
if [[ ! -x $TRUN ]]; then
    cargo build --release
fi
TRUN=$(realpath "$TRUN")
work=$(mktemp -d)
trap 'kill "$server" 2>/dev/null || true; wait "$server" 2>/dev/null || true; rm -rf "$work"' EXIT
cat > "$work/trun.yaml" <<'YAML'
name: load
jobs:
  fetch:
    steps:
      - run: echo fetched
  build:
    needs: fetch
    steps:
      - run: echo built
  test:
    needs: build
    steps:
      - run: echo tested
YAML
echo "uptime: $(uptime)"
echo "trun:   $TRUN ($("$TRUN" --version))"
"$TRUN" serve --root "$work" --bind 127.0.0.1:0 -j 4 2>"$work/server.log" &
server=$!
for _ in $(seq 100); do
    addr=$(sed -n 's/.* on http:\/\/\(.*\)$/\1/p' "$work/server.log" | head -1)
    [[ -n $addr ]] && break
    sleep 0.1
done
[[ -n ${addr:-} ]] || { cat "$work/server.log"; exit 1; }
python3 benches/serve_load.py "http://$addr" "$RUNS" "$CLIENTS" trun.yaml
echo "uptime: $(uptime)"
