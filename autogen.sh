#!/bin/sh
# Regenerates configure and Makefile.in from configure.ac, Makefile.am and m4/.
set -e
cd "$(dirname "$0")"
autoreconf --install --force
