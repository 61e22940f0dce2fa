#!/bin/sh
# The student's unit tests. Writes JUnit XML to $TRUN_OUT/junit.xml (./junit.xml outside
# trun) and exits non-zero when a test fails, like pytest or cargo test would.
out="${TRUN_OUT:-.}/junit.xml"
cases=""
failed=0
check() {
    name=$1
    expected=$2
    shift 2
    actual=$("$@" 2>&1)
    if [ "$actual" = "$expected" ]; then
        cases="$cases  <testcase classname=\"calc\" name=\"$name\"/>
"
    else
        failed=$((failed + 1))
        cases="$cases  <testcase classname=\"calc\" name=\"$name\"><failure message=\"expected $expected, got $actual\"/></testcase>
"
    fi
}
check sub 4 ./calc sub 7 3
check mul 42 ./calc mul 6 7
check div 3.5 ./calc div 7 2
check div-by-zero "division by zero" ./calc div 1 0
printf '<?xml version="1.0" encoding="UTF-8"?>\n<testsuite name="calc" tests="4" failures="%s">\n%s</testsuite>\n' "$failed" "$cases" > "$out"
[ "$failed" -eq 0 ]
