#!/bin/sh
. "$(dirname "$0")/../lib/slug.sh"
got=$(slugify 'trailing!!!')
[ "$got" = 'trailing' ] || { echo "slugify 'trailing!!!': got '$got', want 'trailing'"; exit 1; }
