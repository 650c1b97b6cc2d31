#!/bin/bash
# bench/run-xdp.sh: build the XDP benchmark (release, -O2) and run it,
# printing the machine and the command, for docs/benchmarks.md ("XDP").
#
# xdp_bench times the tes_xdp program inside the kernel with
# bpf_prog_test_run (repeat N): nanoseconds per packet for pass and drop,
# IPv4 and IPv6, with 1 and 1 M entries in the exact map of the family, then
# 16 and 1000 ranges in its prefix trie.  A do-nothing XDP program is timed
# in the same run as the baseline.  Root only (BPF).
set -euo pipefail

usage()
{
	cat <<EOF
Usage: bench/run-xdp.sh [options]

Options:
  --builddir DIR   meson build directory (default: build/bench-xdp)
  --repeat N       repetitions per bpf_prog_test_run call (default: 1000000)
  --runs R         calls per figure, median printed (default: 5)
  --entries E      entries in the large exact maps (default: 1000000)
  --cpu C          CPU to run on (default: 0)
  -h, --help       this text
EOF
}

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
builddir=build/bench-xdp repeat=1000000 runs=5 entries=1000000 cpu=0
while [ $# -gt 0 ]; do
	case $1 in
	--builddir)
		builddir=${2:?--builddir needs a directory}
		shift
		;;
	--repeat)
		repeat=${2:?--repeat needs a number}
		shift
		;;
	--runs)
		runs=${2:?--runs needs a number}
		shift
		;;
	--entries)
		entries=${2:?--entries needs a number}
		shift
		;;
	--cpu)
		cpu=${2:?--cpu needs a number}
		shift
		;;
	-h | --help)
		usage
		exit 0
		;;
	*)
		usage >&2
		echo "run-xdp: unknown option: $1" >&2
		exit 2
		;;
	esac
	shift
done
cd "$repo"

if [ "$(id -u)" -ne 0 ]; then
	echo "run-xdp: needs root (loading BPF programs)" >&2
	exit 1
fi

echo "run-xdp: building $builddir (release, -O2)"
wipe=()
[ ! -d "$builddir/meson-private" ] || wipe=(--wipe)
setup_log=$(mktemp)
if ! meson setup "${wipe[@]}" "$builddir" --buildtype=release -Doptimization=2 -Dtests=false \
	-Dfuzz=false -Dxdp=enabled >"$setup_log" 2>&1; then
	cat "$setup_log" >&2
	rm -f "$setup_log"
	echo "run-xdp: meson setup failed" >&2
	exit 1
fi
rm -f "$setup_log"
ninja -C "$builddir" dataplane/xdp/xdp_bench >/dev/null

echo "==== machine"
lscpu | grep -E '^(Model name|CPU\(s\)|Thread\(s\) per core|Core\(s\) per socket|L2 cache|L3 cache|Hypervisor vendor):' |
	sed 's/  */ /g'
echo "kernel: $(uname -r); bpf JIT: $(cat /proc/sys/net/core/bpf_jit_enable 2>/dev/null || echo n/a)"
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg); $(date -u '+%Y-%m-%dT%H:%M:%SZ')"
echo "tree: $(git describe --always --dirty 2>/dev/null || echo 'not a git tree'); BPF compiler: $(clang-14 --version 2>/dev/null | head -1 || echo clang)"

cmd=("$builddir/dataplane/xdp/xdp_bench" -r "$repeat" -n "$runs" -e "$entries" -c "$cpu")
echo
echo "==== ns per packet (bpf_prog_test_run, the kernel's own timing)"
echo "command: ${cmd[*]}"
"${cmd[@]}"
