#!/bin/bash
# bench/ab-dpdk.sh: tesgate's DPDK path at another git revision (the
# baseline) against the working tree, side by side, for claims of the form
# "this change made it N times faster" (docs/benchmarks.md, runs L-R).
#
# The machines are shared VMs whose speed wanders by up to 2x within an
# hour, so the two are run alternately, round after round, and each round
# gives a ratio; the median is the figure.  Both are driven by the working
# tree's tes-loadgen (copied into the baseline's build), so only the server
# differs.  Each side is one `bench/run-dpdk.sh --quick` (2 s per DPDK
# case); the figure compared is 2 KB, 1 message per connection, plain.
set -euo pipefail

usage()
{
	cat <<EOF_USAGE
Usage: bench/ab-dpdk.sh [options] BASE_REVISION

Builds BASE_REVISION (any git revision) in a worktree, build-ab-src/, and
the working tree in build-bench-dpdk (release both), then runs
bench/run-dpdk.sh --quick for each, alternately, and prints per round the
DPDK path's transactions/s (2 KB, 1 msg/conn, plain) and new/base.

Options:
  --rounds N       rounds (default 3)
  --lg-sessions N  tes-loadgen sessions (default 128: the server core busy)
  --keep DIR       keep each run's full output in DIR
  -h, --help       this text
EOF_USAGE
}

rounds=3 lg_sessions=128 keep='' base=''
while [ $# -gt 0 ]; do
	case "$1" in
	--rounds) rounds=${2:?--rounds needs a number}; shift ;;
	--lg-sessions) lg_sessions=${2:?--lg-sessions needs a number}; shift ;;
	--keep) keep=${2:?--keep needs a directory}; shift ;;
	-h | --help) usage; exit 0 ;;
	-*) echo "ab-dpdk: unknown option: $1" >&2; usage >&2; exit 2 ;;
	*) [ -z "$base" ] || { usage >&2; exit 2; }; base=$1 ;;
	esac
	shift
done
[ -n "$base" ] || { usage >&2; exit 2; }
case "$rounds" in '' | *[!0-9]* | 0) echo "ab-dpdk: --rounds must be a positive number" >&2; exit 2 ;; esac

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"
rev=$(git rev-parse --verify --quiet "$base^{commit}") ||
	{ echo "ab-dpdk: not a revision: $base" >&2; exit 2; }
src=build-ab-src
if [ -d "$src" ]; then
	git -C "$src" checkout -q --detach "$rev"
else
	git worktree add -q --detach "$src" "$rev"
fi
# A build of the worktree's sources (meson setup without a source directory
# takes the working directory's: a check, not a hope).
source_of()
{
	python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["directories"]["source"])' \
		"$1/meson-info/meson-info.json" 2>/dev/null || true
}
if [ -d "$src/build-bench-dpdk" ] && [ "$(source_of "$src/build-bench-dpdk")" != "$repo/$src" ]; then
	rm -rf "$src/build-bench-dpdk"
fi
[ -d "$src/build-bench-dpdk" ] ||
	meson setup --buildtype=release "$src/build-bench-dpdk" "$src" >/dev/null
[ "$(source_of "$src/build-bench-dpdk")" = "$repo/$src" ] ||
	{ echo "ab-dpdk: $src/build-bench-dpdk does not build $src" >&2; exit 1; }
[ -d build-bench-dpdk ] || meson setup build-bench-dpdk --buildtype=release >/dev/null
targets="gateway/tesgate controlplane/tescontrol tools/tesctl bench/loadgen/tes-loadgen"
# shellcheck disable=SC2086
ninja -C "$src/build-bench-dpdk" $targets >/dev/null
# shellcheck disable=SC2086
ninja -C build-bench-dpdk $targets >/dev/null
# one generator for both: newer than its inputs, so ninja leaves it be
cp build-bench-dpdk/bench/loadgen/tes-loadgen "$src/build-bench-dpdk/bench/loadgen/tes-loadgen"

out=$(mktemp -d /dev/shm/tes-ab-dpdk.XXXXXX)
trap 'rm -rf "$out"' EXIT
txn()
{
	awk '$1 == "2k" && $2 == 1 && $3 == "no" && $4 == "tesgate-dpdk" { print $7 }' "$1"
}

echo "base: $base ($(git log -1 --format='%h %s' "$rev"))"
echo "new:  working tree at $(git log -1 --format='%h %s' HEAD)$(git diff --quiet HEAD || echo ' (with uncommitted changes)')"
echo "command: bench/run-dpdk.sh --quick --lg-sessions $lg_sessions --builddir {$src/build-bench-dpdk,build-bench-dpdk}"
printf '%-6s %12s %12s %8s\n' round base_txn/s new_txn/s new/base
ratios=()
for i in $(seq 1 "$rounds"); do
	bench/run-dpdk.sh --quick --lg-sessions "$lg_sessions" --builddir "$src/build-bench-dpdk" \
		>"$out/base-$i.log" 2>&1 || { cat "$out/base-$i.log" >&2; exit 1; }
	bench/run-dpdk.sh --quick --lg-sessions "$lg_sessions" --builddir build-bench-dpdk \
		>"$out/new-$i.log" 2>&1 || { cat "$out/new-$i.log" >&2; exit 1; }
	b=$(txn "$out/base-$i.log") n=$(txn "$out/new-$i.log")
	if [ -z "$b" ] || [ -z "$n" ]; then
		echo "ab-dpdk: no 2k/1/plain DPDK row in round $i" >&2
		exit 1
	fi
	r=$(echo "scale=3; $n / $b" | bc)
	ratios+=("$r")
	printf '%-6s %12s %12s %8s\n' "$i" "$b" "$n" "$r"
done
median=$(printf '%s\n' "${ratios[@]}" | sort -n | awk '{ v[NR] = $1 } END {
	if (NR % 2) print v[(NR + 1) / 2]; else printf "%.3f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }')
echo "median new/base: $median"
if [ -n "$keep" ]; then
	mkdir -p "$keep"
	cp "$out"/*.log "$keep"/
fi
