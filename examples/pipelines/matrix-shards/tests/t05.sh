#!/bin/sh
. "$(dirname "$0")/../lib/slug.sh"
got=$(slugify 'dots.and_underscores')
[ "$got" = 'dots-and-underscores' ] || { echo "slugify 'dots.and_underscores': got '$got', want 'dots-and-underscores'"; exit 1; }
