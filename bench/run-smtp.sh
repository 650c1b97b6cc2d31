#!/bin/bash
# bench/run-smtp.sh: Postfix's smtp-source against tesgate on kernel sockets
# (delivery = spool on a tmpfs spool, and delivery = discard) and against
# Postfix's smtp-sink, side by side in one run, for docs/benchmarks.md
# ("Kernel-socket front end").
#
# - every server is pinned to CPU 0 (tesgate: workers = 1, cpus = 0, and the
#   process under taskset -c 0; smtp-sink under taskset -c 0; tescontrol on
#   CPU 0 too, as part of the server side); smtp-source runs on CPU 1;
# - enforcement on: a tescontrol with a tenant whose connector is
#   127.0.0.0/8, and every message carries an Exchange 2016 header
#   (tests/data/headers/ex2016-tls.hdr), so detection and the decision run
#   for every message (report-only stage: every message is accepted);
# - cases: 1 and 10 messages per connection, 2 KB and 64 KB messages
#   (whole message, headers included, sent with smtp-source -F);
# - prints messages/s per server core (messages / wall seconds, the server
#   having exactly one core), the server's own CPU seconds, and the ratio
#   tesgate / smtp-sink.
# Loopback only; every run is bounded (timeout).  Needs root (smtp-sink
# drops privileges), taskset, and two CPUs.
set -euo pipefail

usage()
{
	cat <<EOF
Usage: bench/run-smtp.sh [options]

Options:
  --builddir DIR   meson build directory (default: build/bench-smtp, release)
  --scale F        multiply the message counts by F (default: 1)
  --sessions N     parallel smtp-source sessions (default: 10)
  -h, --help       this text
EOF
}

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
builddir=build/bench-smtp scale=1 sessions=10
while [ $# -gt 0 ]; do
	case $1 in
	--builddir)
		builddir=${2:?--builddir needs a directory}
		shift
		;;
	--scale)
		scale=${2:?--scale needs a number}
		shift
		;;
	--sessions)
		sessions=${2:?--sessions needs a number}
		shift
		;;
	-h | --help)
		usage
		exit 0
		;;
	*)
		usage >&2
		echo "run-smtp: unknown option: $1" >&2
		exit 2
		;;
	esac
	shift
done

die() { echo "run-smtp: $*" >&2; exit 1; }
[ "$(id -u)" = 0 ] || die "needs root (smtp-sink drops privileges to nobody)"
for t in smtp-source smtp-sink taskset meson ninja; do
	command -v "$t" >/dev/null || [ -x "/usr/sbin/$t" ] || die "$t is not installed"
done
SRC=$(command -v smtp-source || echo /usr/sbin/smtp-source)
SINK=$(command -v smtp-sink || echo /usr/sbin/smtp-sink)
[ "$(nproc)" -ge 2 ] || die "needs two CPUs (server on 0, client on 1)"

cd "$repo"
if [ ! -d "$builddir" ]; then
	meson setup "$builddir" --buildtype=release >/dev/null
fi
ninja -C "$builddir" gateway/tesgate controlplane/tescontrol tools/tesctl >/dev/null
TESGATE=$repo/$builddir/gateway/tesgate
TESCONTROL=$repo/$builddir/controlplane/tescontrol
TESCTL=$repo/$builddir/tools/tesctl

work=$(mktemp -d /dev/shm/tes-bench-smtp.XXXXXX) # tmpfs: spool, sockets, logs
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
	rm -rf "$work"
}
trap cleanup EXIT

# shellcheck source=bench/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
TCK=$(getconf CLK_TCK)

echo "== machine"
lscpu | grep -E '^(Model name|CPU\(s\)|Thread|Core|Socket|Hypervisor vendor|L2 cache|L3 cache)' \
	| sed 's/  */ /g'
echo "kernel $(uname -r); $(dpkg-query -W -f='postfix ${Version}' postfix 2>/dev/null || true)"
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg); $(date -u +%Y-%m-%dT%H:%MZ)"
echo

# -- tescontrol with a tenant (enforcement on) ---------------------------
start_tescontrol 127.0.0.0/8

# -- the servers ------------------------------------------------------------
start_tesgate() # name delivery-settings...
{
	local name=$1 port
	shift
	port=$(free_port)
	mkdir -p "$work/$name"
	{
		echo "workers = 1"
		echo "cpus = 0"
		echo "log_level = info"
		echo "control_socket = $work/gw.sock"
		echo "gateway_id = bench-$name"
		echo "max_connections_per_source = 0"
		echo "max_messages_per_connection = 1000000"
		echo "spool_dir = $work/$name/spool"
		printf '%s\n' "$@"
	} >"$work/$name/tesgate.conf"
	taskset -c 0 "$TESGATE" -c "$work/$name/tesgate.conf" --listen "127.0.0.1:$port" \
		>"$work/$name/tesgate.log" 2>&1 &
	pids+=("$!")
	last_pid=$! last_port=$port
	wait_port "$port"
	echo "server $name: taskset -c 0 $TESGATE -c $work/$name/tesgate.conf --listen 127.0.0.1:$port"
	sed 's/^/    /' "$work/$name/tesgate.conf"
}
start_tesgate spool "delivery = spool"
spool_pid=$last_pid spool_port=$last_port
start_tesgate discard "delivery = discard" "i_understand_discard_loses_mail = yes"
discard_pid=$last_pid discard_port=$last_port
start_sink "$SINK" "$work/sink.log"
echo

# -- messages: the Exchange header, padded to the size -------------------
make_msg "$repo/tests/data/headers/ex2016-tls.hdr" 2048 "$work/msg-2k"
make_msg "$repo/tests/data/headers/ex2016-tls.hdr" 65536 "$work/msg-64k"

# -- one case against one server -----------------------------------------
# prints: msgs wall_s server_cpu_s
run_case() # port pid mpc file count
{
	local port=$1 pid=$2 mpc=$3 file=$4 count=$5 t0 t1 c0 c1 c0tc c1tc
	c0=$(cpu_ticks "$pid")
	c0tc=$(cpu_ticks "$tc_pid")
	t0=$(date +%s.%N)
	source_send "$port" "$mpc" "$file" "$count"
	t1=$(date +%s.%N)
	c1=$(cpu_ticks "$pid")
	c1tc=$(cpu_ticks "$tc_pid")
	echo "$count $(echo "$t1 - $t0" | bc -l) $(echo "($c1 - $c0) / $TCK" | bc -l) \
$(echo "($c1tc - $c0tc) / $TCK" | bc -l)"
}

spooled() { find "$work/spool/spool/new" -name '*.eml' 2>/dev/null | wc -l; }

echo "== client commands (smtp-source on CPU 1, $sessions sessions)"
echo "1 message per connection:   taskset -c 1 $SRC -F MSG -M bench.example -f sender@contoso.com -t rcpt@example.net -s $sessions -m COUNT 127.0.0.1:PORT"
echo "10 messages per connection: the same with -d -s $sessions -m $((sessions * 10)), repeated COUNT/$((sessions * 10)) times"
echo "MSG: the Exchange 2016 fixture padded to 2 KB or 64 KB ($(wc -c <"$work/msg-2k") / $(wc -c <"$work/msg-64k") bytes as LF file, +CR per line on the wire)"
echo

printf '%-5s %-6s %-16s %6s %7s %8s %10s %7s %12s %6s %6s\n' size m/conn server msgs wall_s msg/s server_cpu tc_cpu msg/cpu-s ratio1 ratio2
for size in 2k 64k; do
	for mpc in 1 10; do
		if [ "$size" = 2k ]; then count=$(echo "20000 * $scale / 1" | bc); else count=$(echo "8000 * $scale / 1" | bc); fi
		count=$(((count / (sessions * 10)) * sessions * 10))
		declare -A rate=() crate=()
		for server in smtp-sink spool discard; do
			case $server in
			smtp-sink) port=$sink_port pid=$sink_pid ;;
			spool) port=$spool_port pid=$spool_pid ;;
			discard) port=$discard_port pid=$discard_pid ;;
			esac
			before=$(spooled)
			read -r n wall cpu tccpu < <(run_case "$port" "$pid" "$mpc" "$work/msg-$size" "$count")
			if [ "$server" = spool ]; then
				got=$(($(spooled) - before))
				[ "$got" = "$n" ] || echo "WARNING: $got of $n messages in the spool" >&2
				find "$work/spool/spool/new" -type f -delete
			fi
			rate[$server]=$(echo "$n / $wall" | bc -l)
			crate[$server]=$(echo "$n / ($cpu + 0.005)" | bc -l)
			label=$server
			[ "$server" = smtp-sink ] || label=tesgate-$server
			if [ "$server" = smtp-sink ]; then ratio1="1.00" ratio2="1.00"; else
				ratio1=$(printf '%.2f' "$(echo "${rate[$server]} / ${rate[smtp-sink]}" | bc -l)")
				ratio2=$(printf '%.2f' "$(echo "${crate[$server]} / ${crate[smtp-sink]}" | bc -l)"); fi
			printf '%-5s %-6s %-16s %6d %7.2f %8.0f %10.2f %7.2f %12.0f %6s %6s\n' "$size" "$mpc" \
				"$label" "$n" "$wall" "${rate[$server]}" "$cpu" "$tccpu" "${crate[$server]}" \
				"$ratio1" "$ratio2"
		done
	done
done
echo
echo "msg/s: messages / wall seconds, each server on exactly one core (CPU 0); the"
echo "  client (one smtp-source process on CPU 1) may be what limits it."
echo "server_cpu: the server process's CPU seconds (utime + stime) in the case;"
echo "  tc_cpu: tescontrol's.  msg/cpu-s: messages per second of server CPU."
echo "ratio1: msg/s over smtp-sink's; ratio2: msg/cpu-s over smtp-sink's (same case)."
echo
# enforcement really ran: the gateways' own counters, and tescontrol's report
for name in spool discard; do
	if [ "$name" = spool ]; then p=$spool_pid; else p=$discard_pid; fi
	kill -TERM "$p"
	wait "$p" || true
	echo "tesgate-$name: $(grep -o 'stats connections=.*' "$work/$name/tesgate.log" | tail -1 |
		grep -o 'connections=[0-9]*\|accepted=[0-9]*\|refused=[0-9]*\| exchange=[0-9]*\|stored=[0-9]*' | tr '\n' ' ')"
done
echo "tescontrol report: $("$TESCTL" --socket "$work/adm.sock" --json report |
	python3 -c 'import json,sys; print([(s["fqdn"], s["build"], s["status"]) for s in json.load(sys.stdin)["servers"]])')"
