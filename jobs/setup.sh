#!/bin/bash
# Installs furrow's build dependencies (Debian 12 packages; as root, or through
# sudo) and builds furrow in the repository. Extra arguments go to ./configure.
set -euo pipefail
cd "$(dirname "$0")/.."

packages="build-essential autoconf automake pkg-config libopenmpi-dev openmpi-bin
  libhwloc-dev hwloc libhdf5-dev hdf5-tools libjansson-dev libxxhash-dev libpcre2-dev libucx-dev
  ucx-utils
  libmicrohttpd-dev libcurl4-openssl-dev curl python3 python3-jsonschema clang libclang-rt-14-dev libomp-dev"
if [ "$(id -u)" = 0 ]; then sudo=; else sudo=sudo; fi
if command -v apt-get >/dev/null; then
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get update -qq
  $sudo apt-get install -y -qq --no-install-recommends $packages >/dev/null
else
  echo "setup: no apt-get here; install these (or your system's equivalents) first:" $packages >&2
fi

./autogen.sh
[ -f Makefile ] || ./configure "$@"
make -j"$(nproc)"
