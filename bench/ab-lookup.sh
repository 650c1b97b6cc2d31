#!/bin/bash
# bench/ab-lookup.sh: the enforcement lookup of this tree against a baseline
# revision, side by side in one run (docs/benchmarks.md, "RCU lookup").
#
# Builds bench_lookup (release, -O2) from this tree and from BASE (a git
# revision, exported with git archive into the build directory, so no
# worktree is touched), then runs them in alternation, base first, RUNS
# times for each key set (uniform over all servers, and a hot set), each
# process --rounds 1: so the machine's noise at any moment hits both.  The
# new tree also runs the burst ops (server8, source8), which the baseline
# does not have.  Prints every summary line and the command.
set -euo pipefail

usage()
{
	cat <<EOF
Usage: bench/ab-lookup.sh [options]

Options:
  --base REV       baseline revision (default: main)
  --builddir DIR   where both builds go (default: build/ab-lookup)
  --servers N      servers loaded (default: 1000000)
  --seconds S      seconds per measurement pass (default: 1)
  --runs R         processes per tree and key set (default: 3)
  --hot H          the hot set (default: 1000)
  -h, --help       this text
EOF
}

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
base=main builddir=build/ab-lookup servers=1000000 seconds=1 runs=3 hot=1000
while [ $# -gt 0 ]; do
	case $1 in
	--base) base=${2:?}; shift ;;
	--builddir) builddir=${2:?}; shift ;;
	--servers) servers=${2:?}; shift ;;
	--seconds) seconds=${2:?}; shift ;;
	--runs) runs=${2:?}; shift ;;
	--hot) hot=${2:?}; shift ;;
	-h | --help) usage; exit 0 ;;
	*) usage >&2; exit 2 ;;
	esac
	shift
done
cd "$repo"
mkdir -p "$builddir"
builddir=$(cd "$builddir" && pwd)
baserev=$(git rev-parse --short "$base")

build()
{ # build SRC OUT
	local log
	log=$(mktemp)
	if ! meson setup "$2" "$1" --buildtype=release -Doptimization=2 -Dtests=false \
		-Dfuzz=false >"$log" 2>&1 && ! meson setup --wipe "$2" "$1" --buildtype=release \
		-Doptimization=2 -Dtests=false -Dfuzz=false >"$log" 2>&1; then
		cat "$log" >&2
		rm -f "$log"
		exit 1
	fi
	rm -f "$log"
	ninja -C "$2" bench/bench_lookup >/dev/null
}

echo "ab-lookup: building base $baserev and this tree ($(git describe --always --dirty))"
rm -rf "$builddir/base-src"
mkdir -p "$builddir/base-src"
git archive "$base" | tar -x -C "$builddir/base-src"
build "$builddir/base-src" "$builddir/base"
build "$repo" "$builddir/new"

echo "==== machine"
lscpu | grep -E '^(Model name|CPU\(s\)|L2 cache|L3 cache|Hypervisor vendor):' | sed 's/  */ /g'
echo "kernel: $(uname -r); THP: $(cat /sys/kernel/mm/transparent_hugepage/enabled 2>/dev/null || echo n/a)"
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg); $(date -u '+%Y-%m-%dT%H:%M:%SZ')"

common=(--servers "$servers" --seconds "$seconds" --rounds 1 --reader-cpu 0 --writer-cpu 1)
for keys in uniform hot; do
	extra=()
	[ "$keys" = uniform ] || extra=(--hot "$hot")
	for r in $(seq 1 "$runs"); do
		for side in base new; do
			ops=server,source,decide
			[ $side = base ] || ops=server,source,decide,server8,source8
			cmd=("$builddir/$side/bench/bench_lookup" "${common[@]}" "${extra[@]}" --ops "$ops")
			echo
			echo "==== $keys run $r $side ($([ $side = base ] && echo "$baserev" || echo tree)); load $(cut -d' ' -f1 /proc/loadavg)"
			echo "command: ${cmd[*]}"
			"${cmd[@]}" | grep -E '^(resident|[a-z0-9]+ +summary)'
		done
	done
done
