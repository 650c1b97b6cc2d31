#!/bin/bash
# bench/run-lookup.sh: build the RCU lookup microbenchmark (release, -O2)
# and run it, printing the machine and every command, for
# docs/benchmarks.md ("RCU lookup").
#
# Runs, each as its own process:
#   1. uniform keys over all N servers (every lookup cold: the worst case);
#   2. a hot set of 1000 keys (what a gateway mostly sees);
#   3, 4. the same two with glibc's malloc on transparent huge pages
#      (GLIBC_TUNABLES=glibc.malloc.hugetlb=1), which cuts TLB misses;
#   5. the hot set with liburcu inlined (_LGPL_SOURCE), to price the
#      licence-safe build (compare with run 2).
# Each reports baseline and 10 k updates/s side by side, so noise on this
# shared machine hits both alike; compare ratios, not runs.
set -euo pipefail

usage()
{
	cat <<EOF
Usage: bench/run-lookup.sh [options]

Options:
  --builddir DIR   meson build directory (default: build/bench-release)
  --servers N      servers loaded (default: 1000000)
  --seconds S      seconds per measurement pass (default: 1.5)
  --rounds R       rounds of baseline + writer (default: 3)
  --quick          runs 1 and 2 only
  -h, --help       this text
EOF
}

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
builddir=build/bench-release servers=1000000 seconds=1.5 rounds=3 quick=0
while [ $# -gt 0 ]; do
	case $1 in
	--builddir)
		builddir=${2:?--builddir needs a directory}
		shift
		;;
	--servers)
		servers=${2:?--servers needs a number}
		shift
		;;
	--seconds)
		seconds=${2:?--seconds needs a number}
		shift
		;;
	--rounds)
		rounds=${2:?--rounds needs a number}
		shift
		;;
	--quick) quick=1 ;;
	-h | --help)
		usage
		exit 0
		;;
	*)
		usage >&2
		echo "run-lookup: unknown option: $1" >&2
		exit 2
		;;
	esac
	shift
done
cd "$repo"

echo "run-lookup: building $builddir (release, -O2)"
wipe=()
[ ! -d "$builddir/meson-private" ] || wipe=(--wipe)
setup_log=$(mktemp)
if ! meson setup "${wipe[@]}" "$builddir" --buildtype=release -Doptimization=2 -Dtests=false \
	-Dfuzz=false >"$setup_log" 2>&1; then
	cat "$setup_log" >&2
	rm -f "$setup_log"
	echo "run-lookup: meson setup failed" >&2
	exit 1
fi
rm -f "$setup_log"
ninja -C "$builddir" bench/bench_lookup bench/bench_lookup_lgpl >/dev/null

echo "==== machine"
lscpu | grep -E '^(Model name|CPU\(s\)|Thread\(s\) per core|Core\(s\) per socket|L2 cache|L3 cache|Hypervisor vendor):' |
	sed 's/  */ /g'
echo "kernel: $(uname -r); THP: $(cat /sys/kernel/mm/transparent_hugepage/enabled 2>/dev/null || echo n/a)"
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg); $(date -u '+%Y-%m-%dT%H:%M:%SZ')"
echo "tree: $(git describe --always --dirty 2>/dev/null || echo 'not a git tree'); compiler: $(${CC:-cc} --version | head -1)"

common=(--servers "$servers" --seconds "$seconds" --rounds "$rounds" --reader-cpu 0 --writer-cpu 1)
bin=$builddir/bench/bench_lookup
lgpl=$builddir/bench/bench_lookup_lgpl

run()
{
	echo
	echo "==== $1"
	shift
	echo "command: $*"
	"$@"
}

run "1. uniform keys over all servers" "$bin" "${common[@]}"
run "2. hot set of 1000 keys" "$bin" "${common[@]}" --hot 1000
if [ "$quick" -eq 0 ]; then
	run "3. uniform keys, malloc on transparent huge pages" \
		env GLIBC_TUNABLES=glibc.malloc.hugetlb=1 "$bin" "${common[@]}" --ops server,source
	run "4. hot set of 1000 keys, malloc on transparent huge pages" \
		env GLIBC_TUNABLES=glibc.malloc.hugetlb=1 "$bin" "${common[@]}" --hot 1000 \
		--ops server,source
	run "5. hot set, liburcu inlined (_LGPL_SOURCE; compare with 2)" \
		"$lgpl" "${common[@]}" --hot 1000 --ops server,source
fi
