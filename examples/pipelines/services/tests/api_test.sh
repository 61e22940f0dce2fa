#!/bin/sh
# Talks to the `api` service by its name on the job's network.
set -eu
base=${API_URL:-http://api:8080}
health=$(wget -q -O - "$base/health")
[ "$health" = ok ] || { echo "health: got '$health'"; exit 1; }
echo "ok   health"
version=$(wget -q -O - "$base/version.json" | sed 's/.*"version": *"\([^"]*\)".*/\1/')
[ "$version" = 2.0.1 ] || { echo "version: got '$version'"; exit 1; }
echo "ok   version $version"
if wget -q -O - "$base/missing" 2>/dev/null; then echo "missing page served"; exit 1; fi
echo "ok   404 for a missing page"
