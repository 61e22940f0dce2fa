#!/bin/sh
# Upper-cases standard input.
tr a-z A-Z
