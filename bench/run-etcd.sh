#!/bin/bash
# bench/run-etcd.sh: what the etcd client (controlplane/store/etcd, libtesetcd)
# costs against a real 3-member etcd cluster on this machine's loopback, for
# docs/benchmarks.md ("etcd client") and the fleet's write budget.  Prints the
# machine and every command.
#
# Each run starts a fresh cluster (tests/fleet/etcd_harness.py: members on
# loopback ports, data under /tmp, fsync on as etcd does by default) and
# measures, with one client pinned to one member:
#   1. create-if-absent transaction on a new key: p50/p99 over N;
#   2. plain put: p50/p99 over N;
#   3. create-if-absent transactions one client sustains back to back;
#   4. put on one follower -> watch event on the other follower;
#   5. put on the leader -> watch event on a follower.
# A benchmark: run it alone, under the shared lock:
#   flock /tmp/tesgate-priv.lock bench/run-etcd.sh
set -euo pipefail

usage()
{
	cat <<EOF2
Usage: bench/run-etcd.sh [options]   (run it as: flock /tmp/tesgate-priv.lock bench/run-etcd.sh)

Options:
  --builddir DIR   meson build directory (default: build/bench-etcd)
  --runs R         runs, each on a fresh cluster (default: 3)
  --n N            operations per latency figure (default: 1000)
  --seconds S      seconds of the rate measurement (default: 5)
  -h, --help       this text
EOF2
}

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
builddir=build/bench-etcd runs=3 n=1000 seconds=5
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
	-h | --help)
		usage
		exit 0
		;;
	*)
		usage >&2
		echo "run-etcd: unknown option: $1" >&2
		exit 2
		;;
	esac
	shift
done
cd "$repo"
command -v etcd >/dev/null || {
	echo "run-etcd: etcd not found (tools/setup.sh installs etcd-server)" >&2
	exit 1
}

echo "run-etcd: building $builddir (release, -O2)"
wipe=()
[ ! -d "$builddir/meson-private" ] || wipe=(--wipe)
setup_log=$(mktemp)
if ! meson setup "${wipe[@]}" "$builddir" --buildtype=release -Doptimization=2 -Dtests=false \
	-Dfuzz=false >"$setup_log" 2>&1; then
	cat "$setup_log" >&2
	rm -f "$setup_log"
	echo "run-etcd: meson setup failed" >&2
	exit 1
fi
rm -f "$setup_log"
ninja -C "$builddir" bench/etcd_bench >/dev/null
bin=$builddir/bench/etcd_bench

echo "==== machine"
lscpu | grep -E '^(Model name|CPU\(s\)|Thread\(s\) per core|Core\(s\) per socket|Hypervisor vendor):' |
	sed 's/  */ /g'
echo "kernel: $(uname -r); /tmp on: $(findmnt -n -o SOURCE,FSTYPE --target /tmp | tr -s ' ')"
echo "etcd: $(etcd --version | head -1); libcurl: $(pkg-config --modversion libcurl)"
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg); $(date -u '+%Y-%m-%dT%H:%M:%SZ')"
echo "tree: $(git describe --always --dirty 2>/dev/null || echo 'not a git tree'); compiler: $(${CC:-cc} --version | head -1)"

# Inside the harness: TES_ETCD_ENDPOINTS and TES_ETCD_LEADER are set.
# shellcheck disable=SC2016 # expanded by the inner bash
inner='
set -euo pipefail
IFS=, read -r -a eps <<<"$TES_ETCD_ENDPOINTS"
l=$TES_ETCD_LEADER
f1=${eps[$(((l + 1) % 3))]} f2=${eps[$(((l + 2) % 3))]} leader=${eps[$l]}
echo "members: ${eps[*]}; leader: $leader"
echo "command: $0 --put $f1 --watch $f2 --n $1 --seconds $2"
"$0" --put "$f1" --watch "$f2" --n "$1" --seconds "$2"
echo "command: $0 --no-kv --put $leader --watch $f1 --n $1"
"$0" --no-kv --put "$leader" --watch "$f1" --n "$1"
'
for r in $(seq "$runs"); do
	echo
	echo "==== run $r of $runs: 3-member cluster on loopback (tests/fleet/etcd_harness.py run)"
	echo "load average: $(cut -d' ' -f1-3 /proc/loadavg)"
	python3 tests/fleet/etcd_harness.py run --members 3 -- \
		bash -c "$inner" "$bin" "$n" "$seconds"
done
