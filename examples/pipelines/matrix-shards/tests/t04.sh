#!/bin/sh
. "$(dirname "$0")/../lib/slug.sh"
got=$(slugify 'MiXeD CaSe')
[ "$got" = 'mixed-case' ] || { echo "slugify 'MiXeD CaSe': got '$got', want 'mixed-case'"; exit 1; }
