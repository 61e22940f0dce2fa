#!/bin/sh
. "$(dirname "$0")/../lib/slug.sh"
got=$(slugify 'a--b')
[ "$got" = 'a-b' ] || { echo "slugify 'a--b': got '$got', want 'a-b'"; exit 1; }
