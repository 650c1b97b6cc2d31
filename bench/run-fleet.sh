#!/bin/bash
# bench/run-fleet.sh: the fleet (store = etcd, docs/fleet.md) on this
# machine's loopback, for docs/benchmarks.md ("The fleet"): a 3-member etcd
# cluster and three appliances (tescontrol + tesgate on kernel sockets), a
# fresh fleet per run (tests/fleet/fleet_harness.py).  Measures, per run
# (bench/fleet_bench.py says how):
#   1. a first detection on A until B's tesgate refuses the server by it:
#      p50/p99 over --n detections;
#   2. first detections per second the fleet's control planes and etcd
#      sustain (sightings of new names fed to each tescontrol's gateway
#      socket for --seconds);
#   3. etcd writes in steady state per 1000 servers (--servers seen by every
#      appliance, --hours of the test clock), counted by key with a watch.
# Prints the machine and every command.  A benchmark: run it alone, under the
# shared lock:
#   flock /tmp/tesgate-priv.lock bench/run-fleet.sh
set -euo pipefail

usage()
{
	cat <<EOF2
Usage: bench/run-fleet.sh [options]   (run it as: flock /tmp/tesgate-priv.lock bench/run-fleet.sh)

Options:
  --builddir DIR   meson build directory (default: build/bench-fleet, configured
                   release -O2 if it is not a build directory yet)
  --runs R         runs, each on a fresh fleet (default: 3)
  --n N            first detections timed on A -> B (default: 200)
  --seconds S      seconds of the sustained rate (default: 10)
  --servers N      servers of the steady state (default: 1000)
  --hours H        hours of the test clock in the steady state (default: 3;
                   each takes at least 15 s)
  -h, --help       this text
EOF2
}

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
builddir=build/bench-fleet runs=3 n=200 seconds=10 servers=1000 hours=3
while [ $# -gt 0 ]; do
	case $1 in
	--builddir)
		builddir=${2:?--builddir needs a directory}
		shift
		;;
	--runs)
		runs=${2:?--runs needs a number}
		shift
		;;
	--n)
		n=${2:?--n needs a number}
		shift
		;;
	--seconds)
		seconds=${2:?--seconds needs a number}
		shift
		;;
	--servers)
		servers=${2:?--servers needs a number}
		shift
		;;
	--hours)
		hours=${2:?--hours needs a number}
		shift
		;;
	-h | --help)
		usage
		exit 0
		;;
	*)
		usage >&2
		echo "run-fleet: unknown option: $1" >&2
		exit 2
		;;
	esac
	shift
done
cd "$repo"
command -v etcd >/dev/null || {
	echo "run-fleet: etcd not found (tools/setup.sh installs etcd-server)" >&2
	exit 1
}

if [ ! -d "$builddir/meson-private" ]; then
	echo "run-fleet: configuring $builddir (release, -O2)"
	setup_log=$(mktemp)
	if ! meson setup "$builddir" --buildtype=release -Doptimization=2 -Dtests=false \
		-Dfuzz=false >"$setup_log" 2>&1; then
		cat "$setup_log" >&2
		rm -f "$setup_log"
		echo "run-fleet: meson setup failed" >&2
		exit 1
	fi
	rm -f "$setup_log"
fi
ninja -C "$builddir" controlplane/tescontrol tools/tesctl gateway/tesgate >/dev/null
export TESCONTROL=$repo/$builddir/controlplane/tescontrol TESCTL=$repo/$builddir/tools/tesctl
export TES_SRCDIR=$repo
echo "build: $builddir ($(meson introspect --buildoptions "$builddir" |
	python3 -c 'import json,sys; o={x["name"]:x["value"] for x in json.load(sys.stdin)}; print(o["buildtype"], "-O" + str(o["optimization"]), "sanitize=" + str(o["b_sanitize"]))'))"

echo "==== machine"
lscpu | grep -E '^(Model name|CPU\(s\)|Thread\(s\) per core|Core\(s\) per socket|Hypervisor vendor):' |
	sed 's/  */ /g'
echo "kernel: $(uname -r); /tmp on: $(findmnt -n -o SOURCE,FSTYPE --target /tmp | tr -s ' ')"
echo "etcd: $(etcd --version | head -1); libcurl: $(pkg-config --modversion libcurl)"
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg); $(date -u '+%Y-%m-%dT%H:%M:%SZ')"
echo "tree: $(git describe --always --dirty 2>/dev/null || echo 'not a git tree'); compiler: $(${CC:-cc} --version | head -1)"
echo "command: python3 bench/fleet_bench.py $builddir/gateway/tesgate --runs $runs --n $n" \
	"--seconds $seconds --servers $servers --hours $hours"
python3 bench/fleet_bench.py "$builddir/gateway/tesgate" --runs "$runs" --n "$n" \
	--seconds "$seconds" --servers "$servers" --hours "$hours"
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg); $(date -u '+%Y-%m-%dT%H:%M:%SZ')"
