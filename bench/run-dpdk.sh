#!/bin/bash
# bench/run-dpdk.sh: tesgate's DPDK path against its kernel-socket path and
# Postfix's smtp-sink, in one run, for docs/benchmarks.md ("DPDK front end").
#
#   (a) tes-loadgen (DPDK, userspace stack, CPU 1) over net_memif against
#       tesgate io = dpdk (CPU 0), over IPv4 and, for the plain cases, over
#       IPv6 too (the "tesgate-dpdk-v6" rows: the same gateway, its IPv6
#       address, tes-loadgen --server [IPv6]); the v6/v4 ratio of each case
#       follows the table;
#   (b) smtp-source (CPU 1) against tesgate on kernel sockets (CPU 0);
#   (c) smtp-source (CPU 1) against smtp-sink (CPU 0).
#
# Both tesgates: delivery = discard, enforcement on (a tescontrol on CPU 0
# with a tenant whose connectors are the clients' addresses, every message
# carrying the Exchange 2016 header of tests/data/headers/ex2016-tls.hdr, so
# detection and the decision run for every message).  Cases: 1 and 10
# messages per connection, 2 KB and 64 KB, plain and STARTTLS where the
# server and the client support it (smtp-source and smtp-sink have no TLS:
# STARTTLS is measured on the DPDK path only).
#
# Per server core: every server has exactly CPU 0 (tesgate's DPDK worker
# polls it all the time, so its CPU seconds equal the wall time); the table
# gives transactions per wall second and per second of the server's own CPU
# time (/proc/PID/stat utime + stime), and both ratios to smtp-sink.
# Needs root (hugepages, smtp-sink drops privileges), two CPUs, DPDK with
# net_memif, Postfix's smtp-source/smtp-sink, taskset; perf for --perf.
set -euo pipefail

usage()
{
	cat <<EOF
Usage: bench/run-dpdk.sh [options]

Options:
  --builddir DIR   meson build directory (default: build-bench-dpdk, release)
  --quick          a smoke run: seconds, not minutes (small counts, 1 s runs)
  --tls-only       2 KB at 1 message per connection only: smtp-sink (the reference),
                   STARTTLS with full handshakes, and STARTTLS resumed with tickets
  --duration S     seconds per tes-loadgen case (default 5)
  --scale F        multiply smtp-source's message counts by F (default 1)
  --sessions N     smtp-source sessions (default 10)
  --lg-sessions N  tes-loadgen sessions (default 32)
  --keep DIR       copy the logs, JSON summaries and perf data to DIR at the end
  --perf           perf record the DPDK worker (CPU 0) in the first DPDK case
                   and print the top of the profile (PERF_CALLGRAPH=dwarf in the
                   environment records call stacks through libc and DPDK too)
  -h, --help       this text
EOF
}

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
builddir=build-bench-dpdk scale=1 sessions=10 lg_sessions=32 duration=5 quick=0 perf=0 keep=
tls_only=0
while [ $# -gt 0 ]; do
	case $1 in
	--builddir)
		builddir=${2:?--builddir needs a directory}
		shift
		;;
	--quick) quick=1 ;;
	--tls-only) tls_only=1 ;;
	--duration)
		duration=${2:?--duration needs seconds}
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
	--lg-sessions)
		lg_sessions=${2:?--lg-sessions needs a number}
		shift
		;;
	--perf) perf=1 ;;
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
		echo "run-dpdk: unknown option: $1" >&2
		exit 2
		;;
	esac
	shift
done
if [ "$quick" = 1 ]; then
	duration=2 scale=0.05
fi

die() { echo "run-dpdk: $*" >&2; exit 1; }
[ "$(id -u)" = 0 ] || die "needs root (hugepages; smtp-sink drops privileges to nobody)"
for t in smtp-source smtp-sink taskset meson ninja openssl python3 bc curl; do
	command -v "$t" >/dev/null || [ -x "/usr/sbin/$t" ] || die "$t is not installed"
done
[ "$perf" = 0 ] || command -v perf >/dev/null || die "--perf needs perf"
SRC=$(command -v smtp-source || echo /usr/sbin/smtp-source)
SINK=$(command -v smtp-sink || echo /usr/sbin/smtp-sink)
[ "$(nproc)" -ge 2 ] || die "needs two CPUs (servers on 0, clients on 1)"
free_hp=$(awk '/^HugePages_Free:/ {print $2}' /proc/meminfo)
[ "${free_hp:-0}" -ge 160 ] || die "needs 160 free 2 MB hugepages (have ${free_hp:-0})"

cd "$repo"
if [ ! -d "$builddir" ]; then
	meson setup "$builddir" --buildtype=release >/dev/null
fi
ninja -C "$builddir" gateway/tesgate controlplane/tescontrol tools/tesctl \
	bench/loadgen/tes-loadgen >/dev/null
TESGATE=$repo/$builddir/gateway/tesgate
TESCONTROL=$repo/$builddir/controlplane/tescontrol
TESCTL=$repo/$builddir/tools/tesctl
LOADGEN=$repo/$builddir/bench/loadgen/tes-loadgen
HDR=$repo/tests/data/headers/ex2016-tls.hdr

work=$(mktemp -d /dev/shm/tes-bench-dpdk.XXXXXX) # tmpfs: sockets, logs
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
}
trap cleanup EXIT

# shellcheck source=bench/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
TCK=$(getconf CLK_TCK)
GW_IP=198.18.30.1 GW_IP6=fd00:18:30::1 DPORT=2525

echo "== machine"
lscpu | grep -E '^(Model name|CPU\(s\)|Thread|Core|Socket|Hypervisor vendor|L2 cache|L3 cache)' \
	| sed 's/  */ /g'
echo "kernel $(uname -r); $(dpkg-query -W -f='postfix ${Version}' postfix 2>/dev/null || true);" \
	"dpdk $(pkg-config --modversion libdpdk 2>/dev/null || echo ?)"
echo "build: $builddir ($(meson introspect --buildoptions "$builddir" 2>/dev/null |
	python3 -c 'import json,sys; print([o["value"] for o in json.load(sys.stdin) if o["name"]=="buildtype"][0])' 2>/dev/null || echo ?))"
echo "load average: $(cut -d' ' -f1-3 /proc/loadavg); $(date -u +%Y-%m-%dT%H:%MZ)"
echo

# -- tescontrol with a tenant (enforcement on) ---------------------------
start_tescontrol 127.0.0.0/8 198.18.30.0/24 fd00:18:30::/64

openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes \
	-keyout "$work/key.pem" -out "$work/cert.pem" -days 2 -subj /CN=mx.bench.example \
	>/dev/null 2>&1

# -- the servers ----------------------------------------------------------
gw_conf() # name extra-lines...
{
	local name=$1
	shift
	mkdir -p "$work/$name"
	{
		echo "workers = 1"
		echo "log_level = info"
		echo "control_socket = $work/gw.sock"
		echo "gateway_id = bench-$name"
		echo "metrics_listen = ${MLISTEN:-}"
		echo "max_connections_per_source = 0"
		echo "max_messages_per_connection = 1000000"
		echo "delivery = discard"
		echo "i_understand_discard_loses_mail = yes"
		echo "spool_dir = $work/$name/spool"
		echo "tls_cert = $work/cert.pem"
		echo "tls_key = $work/key.pem"
		printf '%s\n' "$@"
	} >"$work/$name/tesgate.conf"
}

# (a) io = dpdk: two lcores, both on CPU 0: the main lcore (which only
# waits for signals) and the worker that polls the memif port.
MEMIF=$work/memif.sock
# its /metrics: the worker's busy time (tes_dpdk_worker_busy_seconds_total)
mport=$(free_port)
MLISTEN=127.0.0.1:$mport gw_conf dpdk "io = dpdk" \
	"dpdk_args = --no-pci --in-memory -m 256 --lcores=0@0,1@0 --file-prefix=benchgw$$ --vdev=net_memif0,role=server,socket=$MEMIF,socket-abstract=no" \
	"dpdk_addr = $GW_IP/24, $GW_IP6/64" "dpdk_port = $DPORT"
taskset -c 0 "$TESGATE" -c "$work/dpdk/tesgate.conf" >"$work/dpdk/tesgate.log" 2>&1 &
dpdk_pid=$!
pids+=("$dpdk_pid")
for _ in $(seq 300); do
	grep -q "listening on" "$work/dpdk/tesgate.log" && [ -S "$MEMIF" ] && break
	kill -0 "$dpdk_pid" 2>/dev/null || { cat "$work/dpdk/tesgate.log" >&2; die "tesgate (dpdk) exited"; }
	sleep 0.1
done
grep -q "listening on" "$work/dpdk/tesgate.log" || die "tesgate (dpdk) did not start"
dpdk_tls=0
grep -q "starttls on" "$work/dpdk/tesgate.log" && dpdk_tls=1
echo "server tesgate-dpdk: taskset -c 0 $TESGATE -c $work/dpdk/tesgate.conf"
sed 's/^/    /' "$work/dpdk/tesgate.conf"

# (b) kernel sockets, one worker on CPU 0.
kport=$(free_port)
gw_conf kernel "cpus = 0"
taskset -c 0 "$TESGATE" -c "$work/kernel/tesgate.conf" --listen "127.0.0.1:$kport" \
	>"$work/kernel/tesgate.log" 2>&1 &
kernel_pid=$!
pids+=("$kernel_pid")
wait_port "$kport"
echo "server tesgate-kernel: taskset -c 0 $TESGATE -c $work/kernel/tesgate.conf --listen 127.0.0.1:$kport"

# (c) smtp-sink.
start_sink "$SINK" "$work/sink.log"
echo

# -- messages for smtp-source: the Exchange header, padded ----------------
make_msg "$HDR" 2048 "$work/msg-2k"
make_msg "$HDR" 65536 "$work/msg-64k"

# -- one smtp-source case: prints "msgs wall_s server_cpu_s" ---------------
run_source() # port pid mpc file count
{
	local port=$1 pid=$2 mpc=$3 file=$4 count=$5 t0 t1 c0 c1
	c0=$(cpu_ticks "$pid")
	t0=$(date +%s.%N)
	source_send "$port" "$mpc" "$file" "$count"
	t1=$(date +%s.%N)
	c1=$(cpu_ticks "$pid")
	echo "$count $(echo "$t1 - $t0" | bc -l) $(echo "($c1 - $c0) / $TCK" | bc -l)"
}

# The DPDK worker spins on its queues when they are empty, so its CPU time is
# the wall time whatever the load; what it spends at work is the time of loop
# iterations that received or sent packets, which it counts itself.
busy_s()
{
	curl -s "http://127.0.0.1:$mport/metrics" |
		awk '/^tes_dpdk_worker_busy_seconds_total\{/ { s += $2 } END { printf "%.6f\n", s }'
}
worker_ticks() # the tes-dp-0 thread's utime + stime
{
	local t
	for t in /proc/"$dpdk_pid"/task/*; do
		[ "$(cat "$t/comm" 2>/dev/null)" = tes-dp-0 ] && awk '{print $14 + $15}' "$t/stat"
	done
}

# -- one tes-loadgen case: prints "ok wall_s server_cpu_s failed p50 p99 work_s" ---
# work_s: the server's CPU time at work over the case: every thread's CPU
# time but the worker's, plus the worker's CPU time in the proportion of its
# busy time to the case's wall time (busy time is counted in wall time, and
# the worker shares CPU 0 with the other threads: preempted, it would count
# their time twice).
lg_n=0
run_lg() # case-number mpc size tls(0/1) [v6(0/1)]
{
	local lg_n=$1 mpc=$2 size=$3 tls=$4 v6=${5:-0} out json extra=() c0 c1 w0 w1 b0 b1 t0 t1 wsec
	local server="$GW_IP:$DPORT" addr="198.18.30.$((10 + lg_n))/24"
	if [ "$v6" = 1 ]; then
		server="[$GW_IP6]:$DPORT" addr="fd00:18:30::$((10 + lg_n))/64"
	fi
	[ "$tls" = 1 ] && extra+=(--starttls)
	[ "$tls" = 2 ] && extra+=(--tls-resume)
	c0=$(cpu_ticks "$dpdk_pid") w0=$(worker_ticks) b0=$(busy_s) t0=$(date +%s.%N)
	# A fresh client address per case: the server keeps the last case's
	# connections in TIME_WAIT for 60 s, and a new process reusing those
	# tuples (a different ISN key) is not always let in (docs/loadgen.md).
	local cmd=("$LOADGEN" --server "$server" --addr "$addr"
		--eal "--no-pci --in-memory -m 256 -l 1 --file-prefix=benchlg$$-$lg_n --vdev=net_memif0,role=client,socket=$MEMIF,socket-abstract=no"
		--sessions "$lg_sessions" --messages-per-conn "$mpc" --size "$size"
		--duration "$duration" --header-file "$HDR" --mail-from sender@contoso.com
		--rcpt rcpt@example.net --json --quiet --timeout 10 --server-pid "$dpdk_pid"
		"${extra[@]}")
	out=$(timeout $((duration + 120)) "${cmd[@]}" 2>"$work/lg-$lg_n.err") || true
	c1=$(cpu_ticks "$dpdk_pid") w1=$(worker_ticks) b1=$(busy_s) t1=$(date +%s.%N)
	wsec=$(echo "hz = $(getconf CLK_TCK); (($c1 - $c0) - ($w1 - $w0)) / hz + \
		($w1 - $w0) / hz * ($b1 - $b0) / ($t1 - $t0)" | bc -l)
	json=$(printf '%s\n' "$out" | tail -1)
	printf '%s\n' "$json" >"$work/lg-$lg_n.json"
	echo "$size, $mpc msg/conn, $(case $tls in 1) echo STARTTLS ;; 2) echo STARTTLS resumed ;; *) echo plain ;; esac)$([ "$v6" = 1 ] && echo ", IPv6")" >"$work/lg-$lg_n.case"
	printf '%s\n' "$json" | python3 -c '
import json, sys
s = json.loads(sys.stdin.read())
t = s["transactions"]
print(t["ok"], s["elapsed_s"], s["server_cpu_s"], 1 if s["failed"] else 0,
      s["latency_us"]["p50"], s["latency_us"]["p99"], sys.argv[1])
' "$wsec" 2>/dev/null || echo "0 1 0 -1 0 0 1"
	if [ "$lg_n" = 1 ]; then
		echo "tes-loadgen command (first case): taskset is by the EAL (-l 1): ${cmd[*]}" >&2
	fi
}

echo "== clients: smtp-source on CPU 1 ($sessions sessions; -s $sessions -m COUNT, 10 msg/conn with -d and"
echo "   -m $((sessions * 10)) repeated); tes-loadgen on lcore 1 ($lg_sessions sessions, --duration $duration)"
echo

printf '%-5s %-4s %-5s %-15s %8s %7s %9s %8s %10s %6s %6s %7s %10s %6s %7s %7s\n' \
	size m/c tls server txns wall_s txn/s cpu_s txn/cpu-s r_wall r_cpu work_s txn/work-s r_work \
	p50_us p99_us
v6ratio=()
sizes="2k 64k" mpcs="1 10" servers="smtp-sink tesgate-kernel tesgate-dpdk tesgate-dpdk-v6 tesgate-dpdk-tls tesgate-dpdk-tlsr"
if [ "$tls_only" = 1 ]; then
	sizes=2k mpcs=1 servers="smtp-sink tesgate-dpdk-tls tesgate-dpdk-tlsr"
fi
for size in $sizes; do
	for mpc in $mpcs; do
		if [ "$size" = 2k ]; then count=$(echo "20000 * $scale / 1" | bc); else count=$(echo "8000 * $scale / 1" | bc); fi
		count=$(((count / (sessions * 10)) * sessions * 10))
		[ "$count" -ge $((sessions * 10)) ] || count=$((sessions * 10))
		declare -A rate=() crate=() wrate=()
		for server in $servers; do
			p50=- p99=- bad=0 wk=
			case $server in
			smtp-sink)
				read -r n wall cpu < <(run_source "$sink_port" "$sink_pid" "$mpc" "$work/msg-$size" "$count") ;;
			tesgate-kernel)
				read -r n wall cpu < <(run_source "$kport" "$kernel_pid" "$mpc" "$work/msg-$size" "$count") ;;
			tesgate-dpdk)
				lg_n=$((lg_n + 1))
				read -r n wall cpu bad p50 p99 wk < <(run_lg "$lg_n" "$mpc" "$size" 0) ;;
			tesgate-dpdk-v6)
				lg_n=$((lg_n + 1))
				read -r n wall cpu bad p50 p99 wk < <(run_lg "$lg_n" "$mpc" "$size" 0 1) ;;
			tesgate-dpdk-tls)
				[ "$dpdk_tls" = 1 ] || continue
				lg_n=$((lg_n + 1))
				read -r n wall cpu bad p50 p99 wk < <(run_lg "$lg_n" "$mpc" "$size" 1) ;;
			tesgate-dpdk-tlsr)
				# STARTTLS resuming with the gateway's session tickets
				[ "$dpdk_tls" = 1 ] || continue
				lg_n=$((lg_n + 1))
				read -r n wall cpu bad p50 p99 wk < <(run_lg "$lg_n" "$mpc" "$size" 2) ;;
			esac
			# smtp-sink and the kernel path sleep when idle: all their CPU time is work
			[ -n "$wk" ] || wk=$cpu
			rate[$server]=$(echo "$n / $wall" | bc -l)
			crate[$server]=$(echo "$n / ($cpu + 0.005)" | bc -l)
			wrate[$server]=$(echo "$n / ($wk + 0.005)" | bc -l)
			r1=$(printf '%.2f' "$(echo "${rate[$server]} / ${rate[smtp-sink]}" | bc -l)")
			r2=$(printf '%.2f' "$(echo "${crate[$server]} / ${crate[smtp-sink]}" | bc -l)")
			r3=$(printf '%.2f' "$(echo "${wrate[$server]} / ${crate[smtp-sink]}" | bc -l)")
			tls=no
			[ "$server" = tesgate-dpdk-tls ] && tls=yes
			[ "$server" = tesgate-dpdk-tlsr ] && tls=res
			label=${server%-tls}
			label=${label%-tlsr}
			printf '%-5s %-4s %-5s %-15s %8d %7.2f %9.0f %8.2f %10.0f %6s %6s %7.2f %10.0f %6s %7s %7s\n' \
				"$size" "$mpc" "$tls" "$label" "$n" "$wall" "${rate[$server]}" "$cpu" \
				"${crate[$server]}" "$r1" "$r2" "$wk" "${wrate[$server]}" "$r3" "$p50" "$p99"
			if ! kill -0 "$dpdk_pid" 2>/dev/null; then
				tail -30 "$work/dpdk/tesgate.log" >&2
				die "tesgate (io = dpdk) died in the case above (its log is above)"
			fi
			[ "$bad" = 0 ] || echo "WARNING: $server: tes-loadgen reports a failed run (failed transactions or connections, or none succeeded: see its JSON below)" >&2
		done
		[ -n "${rate[tesgate-dpdk-v6]:-}" ] && [ -n "${rate[tesgate-dpdk]:-}" ] &&
			v6ratio+=("$size $mpc msg/conn plain: IPv6 $(printf '%.0f' "${rate[tesgate-dpdk-v6]}") txn/s, IPv4 $(printf '%.0f' "${rate[tesgate-dpdk]}") txn/s, v6/v4 $(printf '%.3f' "$(echo "${rate[tesgate-dpdk-v6]} / ${rate[tesgate-dpdk]}" | bc -l)")")
	done
done
echo
if [ "${#v6ratio[@]}" -gt 0 ]; then
	echo "IPv6 against IPv4 on the DPDK path, same gateway, same run (tesgate-dpdk-v6 / tesgate-dpdk):"
	printf '  %s\n' "${v6ratio[@]}"
fi
echo
echo "txn/s: transactions / wall seconds; every server has exactly one core (CPU 0)."
echo "cpu_s: the server process's CPU seconds (utime + stime, all threads) in the case;"
echo "  for tesgate-dpdk read by tes-loadgen --server-pid over its measured window: the"
echo "  worker polls, so it is the wall time less what other processes took of CPU 0."
echo "txn/cpu-s: transactions per second of server CPU time."
echo "r_wall, r_cpu: txn/s and txn/cpu-s over smtp-sink's in the same size and m/c."
echo "work_s: CPU seconds the server spent at work. smtp-sink and tesgate on kernel sockets"
echo "  sleep when idle, so for them it is cpu_s. The DPDK worker spins on empty queues: its"
echo "  work is its CPU time times the share of the case's wall time its loop spent in"
echo "  iterations that received or sent packets (it counts them:"
echo "  tes_dpdk_worker_busy_seconds_total), plus every other thread's CPU time; read over"
echo "  the whole case, start-up and close of the generator's sessions included."
echo "txn/work-s, r_work: transactions per work second, and that over smtp-sink's txn/cpu-s:"
echo "  the server core's capacity when one generator core cannot fill it (the worker idles)."
echo "p50/p99: tes-loadgen's latency, MAIL FROM to the 250 after the data."
[ "$dpdk_tls" = 1 ] || echo "STARTTLS: tesgate io = dpdk did not offer it (log says starttls off): not measured."
echo

set +o pipefail # head closes the pipes below early
if [ "$perf" = 1 ]; then
	# One more tesgate-dpdk case (2k, 1 msg/conn, plain), not in the
	# table: the server's CPU and the client's recorded apart, from 1 s in.
	pdur=$((duration > 3 ? 3 : duration))
	# PERF_CALLGRAPH=dwarf for callers through libc and DPDK (no frame
	# pointers there); the default, fp, costs less and sees our own frames.
	cg="--call-graph=${PERF_CALLGRAPH:-fp}"
	(sleep 1; perf record -C 0 "$cg" -o "$work/perf.data" -- sleep "$pdur" >"$work/perf.log" 2>&1) &
	p0=$!
	(sleep 1; perf record -C 1 "$cg" -o "$work/perf-client.data" -- sleep "$pdur" \
		>"$work/perf-client.log" 2>&1) &
	p1=$!
	lg_n=$((lg_n + 1))
	read -r n wall cpu bad p50 p99 _ < <(run_lg "$lg_n" 1 2k 0)
	wait "$p0" "$p1" || true
	echo "== perf: CPU 0 (tesgate io = dpdk) in an extra case: 2k, 1 msg/conn, plain: $n transactions in $wall s"
	echo "perf record -C 0 $cg -o perf.data -- sleep $pdur; perf report --no-children --sort dso,symbol"
	cat "$work/perf.log"
	perf report -i "$work/perf.data" --no-children --sort dso,symbol --stdio -g none \
		</dev/null >"$work/perf.txt" 2>"$work/perf-report.err" || cat "$work/perf-report.err"
	grep -E '^ +[0-9]' "$work/perf.txt" | head -25
	echo
	echo "== perf: CPU 1 (the client, tes-loadgen) in the same case"
	perf report -i "$work/perf-client.data" --no-children --sort dso,symbol --stdio -g none \
		</dev/null >"$work/perf-client.txt" 2>"$work/perf-report.err" || cat "$work/perf-report.err"
	grep -E '^ +[0-9]' "$work/perf-client.txt" | head -15
	echo
fi

echo "== tes-loadgen JSON summaries"
for i in $(seq 1 "$lg_n"); do
	f=$work/lg-$i.json
	echo "$(basename "$f" .json) ($(sed -n 1p "${f%.json}.case")): $(cat "$f")"
done
echo
# enforcement really ran: the gateways' own counters, and tescontrol's report
echo "tesgate-dpdk sightings (gateway/sightcoal.h): $(curl -s "http://127.0.0.1:$mport/metrics" |
	awk '/^tes_sightings_(sent|coalesced|dropped)_total / { printf "%s=%s ", $1, $2 }')"
for name in dpdk kernel; do
	if [ "$name" = dpdk ]; then p=$dpdk_pid; else p=$kernel_pid; fi
	kill -TERM "$p"
	wait "$p" || true
	echo "tesgate-$name: $(grep -o 'stats .*' "$work/$name/tesgate.log" | tail -1 |
		grep -o 'sessions=[0-9]*\|connections=[0-9]*\|accepted=[0-9]*\|refused=[0-9]*\| exchange=[0-9]*\|stored=[0-9]*' | tr '\n' ' ')"
done
echo "tescontrol sightings counted (every message of both gateways): $("$TESCTL" \
	--socket "$work/adm.sock" --json status | python3 -c \
	'import json,sys; print(json.load(sys.stdin)["counts"]["sightings"])')"
echo "tescontrol report: $("$TESCTL" --socket "$work/adm.sock" --json report |
	python3 -c 'import json,sys; print([(s["fqdn"], s["build"], s["status"]) for s in json.load(sys.stdin)["servers"]])')"
