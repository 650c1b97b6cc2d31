#!/bin/bash
# bench/run-synflood.sh: legitimate SMTP transactions per second through one
# tesgate DPDK worker with no flood and under a spoofed SYN flood, side by
# side, for docs/benchmarks.md ("SYN flood").
#
# tesgate io = dpdk (one worker; the main lcore and the worker both on
# CPU 0; delivery = discard, no tescontrol) is the net_memif server;
# tes-loadgen (lcore 1 = CPU 1) the client.  Each run is two cases of the
# same length, one after the other: tes-loadgen alone, then tes-loadgen
# with --flood-rate (100 000 spoofed SYNs/s from 198.19.0.0/16 by default)
# on the same port and lcore.  Every transaction is a new connection by
# default (--mpc 1), so under the flood every legitimate handshake goes
# through a SYN cookie.  Prints both rates and their ratio for each run,
# with the flood rate reached and tesgate's cookie counters over the case;
# first, bench/synbench: the stack alone on a spoofed SYN and a handshake.
# Needs root (hugepages), two CPUs, DPDK with net_memif, curl.
set -euo pipefail

usage()
{
	cat <<EOF
Usage: bench/run-synflood.sh [options]

Options:
  --builddir DIR   meson build directory (default: build-bench-synflood, release)
  --runs N         runs of the two cases (default 3)
  --duration S     seconds per case (default 10)
  --flood-rate R   spoofed SYNs per second (default 100000)
  --sessions N     tes-loadgen sessions (default 32)
  --mpc N          messages per connection (default 1)
  --size N         message size (default 2k)
  --quick          one run of 2 s cases (a smoke test)
  --keep DIR       copy the logs and JSON summaries to DIR at the end
  -h, --help       this text
EOF
}

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
builddir=build-bench-synflood runs=3 duration=10 flood=100000 sessions=32 mpc=1 size=2k keep=
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
	--duration)
		duration=${2:?--duration needs seconds}
		shift
		;;
	--flood-rate)
		flood=${2:?--flood-rate needs a rate}
		shift
		;;
	--sessions)
		sessions=${2:?--sessions needs a number}
		shift
		;;
	--mpc)
		mpc=${2:?--mpc needs a number}
		shift
		;;
	--size)
		size=${2:?--size needs a size}
		shift
		;;
	--quick) runs=1 duration=2 ;;
	--keep)
		keep=${2:?--keep needs a directory}
		shift
		;;
	-h | --help)
		usage
		exit 0
		;;
	*)
		usage >&2
		echo "run-synflood: unknown option: $1" >&2
		exit 2
		;;
	esac
	shift
done

die() { echo "run-synflood: $*" >&2; exit 1; }
[ "$(id -u)" = 0 ] || die "needs root (hugepages)"
for t in meson ninja python3 bc curl; do
	command -v "$t" >/dev/null || die "$t is not installed"
done
[ "$(nproc)" -ge 2 ] || die "needs two CPUs (tesgate on 0, tes-loadgen on 1)"
free_hp=$(awk '/^HugePages_Free:/ {print $2}' /proc/meminfo)
[ "${free_hp:-0}" -ge 128 ] || die "needs 128 free 2 MB hugepages (have ${free_hp:-0})"

cd "$repo"
if [ ! -d "$builddir" ]; then
	meson setup "$builddir" --buildtype=release >/dev/null
fi
ninja -C "$builddir" gateway/tesgate bench/loadgen/tes-loadgen bench/synbench >/dev/null
TESGATE=$repo/$builddir/gateway/tesgate
LOADGEN=$repo/$builddir/bench/loadgen/tes-loadgen
SYNBENCH=$repo/$builddir/bench/synbench

work=$(mktemp -d /dev/shm/tes-bench-synflood.XXXXXX)
chmod 755 "$work"
pids=()
cleanup()
{
	local p
	for p in "${pids[@]}"; do
		kill "$p" 2>/dev/null || true
	done
	for p in "${pids[@]}"; do
		wait "$p" 2>/dev/null || true
	done
	if [ -n "$keep" ]; then
		mkdir -p "$keep"
		cp -r "$work"/. "$keep"/ 2>/dev/null || true
	fi
	rm -rf "$work"
	# the EALs leave their runtime directories behind, empty
	rmdir /var/run/dpdk/benchsf$$ /var/run/dpdk/benchsflg$$-* 2>/dev/null || true
}
trap cleanup EXIT

# shellcheck source=bench/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
GW_IP=198.18.34.1 DPORT=2525

echo "== machine"
lscpu | grep -E '^(Model name|CPU\(s\)|Thread|Core|Socket|Hypervisor vendor)' | sed 's/  */ /g'
echo "kernel $(uname -r); dpdk $(pkg-config --modversion libdpdk 2>/dev/null || echo ?)"
echo "build: $builddir; load average: $(cut -d' ' -f1-3 /proc/loadavg); $(date -u +%Y-%m-%dT%H:%MZ)"
echo

echo "== the stack alone (no DPDK): taskset -c 1 $SYNBENCH -n 1000000 -r 5"
taskset -c 1 "$SYNBENCH" -n 1000000 -r 5
echo

MEMIF=$work/memif.sock
mport=$(free_port)
cat >"$work/tesgate.conf" <<EOF
io = dpdk
dpdk_args = --no-pci --in-memory -m 256 --lcores=0@0,1@0 --file-prefix=benchsf$$ --vdev=net_memif0,role=server,socket=$MEMIF,socket-abstract=no
dpdk_addr = $GW_IP/24
dpdk_port = $DPORT
workers = 1
control_socket =
metrics_listen = 127.0.0.1:$mport
max_connections_per_source = 0
max_messages_per_connection = 1000000
delivery = discard
i_understand_discard_loses_mail = yes
spool_dir = $work/spool
log_level = info
EOF
taskset -c 0 "$TESGATE" -c "$work/tesgate.conf" >"$work/tesgate.log" 2>&1 &
gw_pid=$!
pids+=("$gw_pid")
for _ in $(seq 300); do
	grep -q "listening on" "$work/tesgate.log" && [ -S "$MEMIF" ] && break
	kill -0 "$gw_pid" 2>/dev/null || { cat "$work/tesgate.log" >&2; die "tesgate exited"; }
	sleep 0.1
done
[ -S "$MEMIF" ] || die "tesgate did not start"
echo "server: taskset -c 0 $TESGATE -c tesgate.conf (defaults: max_connections 1000, so the"
echo "  stack's half-open cap is 62)"
sed 's/^/    /' "$work/tesgate.conf"
echo

metric() # name: the sum over workers
{
	curl -s "http://127.0.0.1:$mport/metrics" | awk -v n="$1" 'index($0, n "{") == 1 { s += $2 } END { printf "%d\n", s }'
}
sample() # name{labels}: one sample
{
	curl -s "http://127.0.0.1:$mport/metrics" | awk -v n="$1" 'index($0, n " ") == 1 { printf "%d\n", $2 }'
}

# One case: prints "ok txn_per_s failed flood_sent flood_per_s cookies_sent cookies_valid"
n_case=0
run_case() # case-number flood-rate (0: none); runs in a subshell
{
	local n_case=$1 rate=$2 extra=() out json cs0 cv0 cs1 cv1 _
	[ "$rate" = 0 ] || extra+=(--flood-rate "$rate")
	# The last flood's half-open connections (7 s at most under pressure)
	# would send the first handshakes of a case without flood through
	# cookies: it starts once they are gone.
	for _ in $(seq 200); do
		[ "$(sample 'tes_stack_connections{worker="0",state="SYN_RCVD"}')" = 0 ] && break
		sleep 0.1
	done
	cs0=$(metric tes_stack_syn_cookies_sent_total) cv0=$(metric tes_stack_syn_cookies_validated_total)
	# a fresh client address per case: the last case's connections are in
	# the server's TIME_WAIT (docs/loadgen.md)
	local cmd=("$LOADGEN" --server "$GW_IP:$DPORT" --addr "198.18.34.$((10 + n_case))/24"
		--eal "--no-pci --in-memory -m 256 -l 1 --file-prefix=benchsflg$$-$n_case --vdev=net_memif0,role=client,socket=$MEMIF,socket-abstract=no,rsize=12"
		--sessions "$sessions" --messages-per-conn "$mpc" --size "$size" --duration "$duration"
		--json --quiet --timeout 10 "${extra[@]}")
	[ "$n_case" = 1 ] && echo "tes-loadgen (CPU 1 by -l 1): ${cmd[*]} [--flood-rate R]" >&2
	out=$(timeout $((duration + 120)) "${cmd[@]}" 2>"$work/lg-$n_case.err") || true
	cs1=$(metric tes_stack_syn_cookies_sent_total) cv1=$(metric tes_stack_syn_cookies_validated_total)
	json=$(printf '%s\n' "$out" | tail -1)
	printf '%s\n' "$json" >"$work/lg-$n_case.json"
	printf '%s\n' "$json" | python3 -c '
import json, sys
s = json.loads(sys.stdin.read())
t, f = s["transactions"], s["flood"]
print(t["ok"], t["per_s"], 1 if s["failed"] else 0, f["sent"], f["per_s"], *sys.argv[1:])
' "$((cs1 - cs0))" "$((cv1 - cv0))" 2>/dev/null || echo "0 0 1 0 0 0 0"
}

echo "== $runs runs: $sessions sessions, $mpc msg/conn, $size, $duration s per case; flood $flood SYN/s"
printf '%-4s %-9s %8s %9s %7s %11s %9s %12s %13s\n' run case txns txn/s failed flood_sent flood/s \
	cookies_sent cookies_valid
ratios=()
for r in $(seq 1 "$runs"); do
	n_case=$((n_case + 1))
	read -r n0 t0 f0 _ _ c0 v0 < <(run_case "$n_case" 0)
	printf '%-4s %-9s %8d %9.1f %7s %11s %9s %12s %13s\n' "$r" no-flood "$n0" "$t0" "$f0" - - "$c0" "$v0"
	n_case=$((n_case + 1))
	read -r n1 t1 f1 fs fr c1 v1 < <(run_case "$n_case" "$flood")
	printf '%-4s %-9s %8d %9.1f %7s %11s %9.0f %12s %13s\n' "$r" flood "$n1" "$t1" "$f1" "$fs" "$fr" "$c1" "$v1"
	ratio=$(echo "$t1 / $t0" | bc -l)
	ratios+=("$ratio")
	printf 'run %s: ratio %.3f (flooded %.1f txn/s / unflooded %.1f txn/s)\n' "$r" "$ratio" "$t1" "$t0"
	kill -0 "$gw_pid" 2>/dev/null || { tail -30 "$work/tesgate.log" >&2; die "tesgate died"; }
done
echo
printf 'ratios: %s\n' "$(printf '%.3f ' "${ratios[@]}")"
echo "txn/s: tes-loadgen's transactions per second over its run (every transaction a new"
echo "  connection with --mpc 1); flood/s: spoofed SYNs per second tes-loadgen sent;"
echo "  cookies_sent/cookies_valid: tesgate's tes_stack_syn_cookies_{sent,validated}_total"
echo "  over the case (under the flood every handshake, the legitimate ones too, is a cookie's)."
echo "failed: 1 when tes-loadgen reported a failed run (see the JSON below)."
echo
echo "== tes-loadgen JSON summaries"
for i in $(seq 1 "$n_case"); do
	echo "lg-$i: $(cat "$work/lg-$i.json")"
done
kill -TERM "$gw_pid"
wait "$gw_pid" || true
echo "tesgate: $(grep -o 'stats .*' "$work/tesgate.log" | tail -1)"
