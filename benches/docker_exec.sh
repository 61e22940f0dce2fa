#!/bin/sh
# Wall time of 20 trivial steps: `docker exec` in one long-lived container (what
# trun does for a job with `container:`) versus 20 `docker run --rm`.
# The trun side (bollard, no CLI) is measured by:
#   cargo test --test docker_layer -- --ignored --nocapture bench_exec_vs_docker_run
# which builds the busybox test image first; this script reuses that image.
set -eu
image=${1:-trun-test/busybox:latest}
docker image inspect "$image" >/dev/null
now() { date +%s%N; }
ms() { echo $(( ($2 - $1) / 1000000 )); }

t0=$(now)
id=$(docker run -d --label trun.run=bench "$image" sh -c 'trap "exit 0" TERM; while :; do sleep 3600 & wait $!; done')
t1=$(now)
i=0; while [ $i -lt 20 ]; do docker exec "$id" sh -c true; i=$((i+1)); done
t2=$(now)
docker rm -f "$id" >/dev/null
i=0; while [ $i -lt 20 ]; do docker run --rm "$image" sh -c true; i=$((i+1)); done
t3=$(now)
echo "| variant | total ms | per step ms |"
echo "|---|---|---|"
echo "| container start (once) | $(ms "$t0" "$t1") | |"
echo "| 20 x docker exec (CLI) | $(ms "$t1" "$t2") | $(( $(ms "$t1" "$t2") / 20 )) |"
echo "| 20 x docker run --rm (CLI) | $(ms "$t2" "$t3") | $(( $(ms "$t2" "$t3") / 20 )) |"
