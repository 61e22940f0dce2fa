#!/bin/sh
# slugify TEXT: lower-case, runs of non-alphanumerics become one dash, no dash at the ends.
slugify() {
    printf '%s' "$1" | tr '[:upper:]' '[:lower:]' | tr -cs 'a-z0-9' '-' | sed 's/^-*//; s/-*$//'
}
