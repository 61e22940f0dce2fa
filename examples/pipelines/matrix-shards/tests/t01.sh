#!/bin/sh
. "$(dirname "$0")/../lib/slug.sh"
got=$(slugify 'Hello World')
[ "$got" = 'hello-world' ] || { echo "slugify 'Hello World': got '$got', want 'hello-world'"; exit 1; }
