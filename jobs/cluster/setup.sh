#!/bin/sh
# Installs what the local test cluster and the scaling plots need (Debian 12):
# Slurm (slurmctld, slurmd, the clients, the PMIx plugin), munge and gnuplot.
# As root or through sudo. On a machine with systemd, Debian enables the system
# munge and slurm services too; jobs/cluster/start.sh does not use them.
set -eu
packages="slurm-wlm munge gnuplot-nox"
if [ "$(id -u)" = 0 ]; then sudo=; else sudo=sudo; fi
command -v apt-get >/dev/null || { echo "cluster setup: no apt-get; install $packages" >&2; exit 1; }
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends $packages >/dev/null
