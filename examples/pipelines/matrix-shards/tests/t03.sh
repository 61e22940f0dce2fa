#!/bin/sh
. "$(dirname "$0")/../lib/slug.sh"
got=$(slugify 'Already-slugged')
[ "$got" = 'already-slugged' ] || { echo "slugify 'Already-slugged': got '$got', want 'already-slugged'"; exit 1; }
