#!/bin/sh
. "$(dirname "$0")/../lib/slug.sh"
got=$(slugify '2024 Release Notes!')
[ "$got" = '2024-release-notes' ] || { echo "slugify '2024 Release Notes!': got '$got', want '2024-release-notes'"; exit 1; }
