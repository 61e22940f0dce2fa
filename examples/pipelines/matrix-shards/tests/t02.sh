#!/bin/sh
. "$(dirname "$0")/../lib/slug.sh"
got=$(slugify '  padded  ')
[ "$got" = 'padded' ] || { echo "slugify '  padded  ': got '$got', want 'padded'"; exit 1; }
