#!/bin/sh
# Tests for greet, run inside the image: one line per check, exit 1 on any failure.
failures=0
check() {
    if [ "$2" = "$3" ]; then echo "ok   $1"; else echo "FAIL $1: got '$2', want '$3'"; failures=$((failures + 1)); fi
}
check "one name" "$(greet World)" "Hello, World!"
check "two names" "$(greet Ada Linus | tr '\n' ' ')" "Hello, Ada! Hello, Linus! "
check "shouting" "$(greet -u ada)" "HELLO, ADA!"
greet >/dev/null 2>&1; check "no name is a usage error" "$?" "2"
echo "$failures failure(s)"
[ "$failures" -eq 0 ]
