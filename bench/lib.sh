# shellcheck shell=bash disable=SC2154 # work, repo, TESCONTROL, TESCTL, SRC, sessions: set by the script
# bench/lib.sh: what the benchmark scripts share.  Sourced, not run; the
# script defines die() and the array pids (processes to stop at exit).

# A TCP port nobody listens on now (127.0.0.1).
free_port()
{
	python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# Waits up to 10 s for a listener on 127.0.0.1:$1.
wait_port()
{
	local _
	for _ in $(seq 100); do
		if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then
			return 0
		fi
		sleep 0.1
	done
	die "nothing listens on port $1"
}

# utime + stime of a process, in clock ticks.
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

# Postfix's smtp-sink pinned to CPU 0: sets sink_port and sink_pid.
start_sink() # smtp-sink-binary log-file
{
	sink_port=$(free_port)
	taskset -c 0 "$1" -u nobody "127.0.0.1:$sink_port" 1024 >"$2" 2>&1 &
	sink_pid=$!
	pids+=("$sink_pid")
	wait_port "$sink_port"
	echo "server smtp-sink: taskset -c 0 $1 -u nobody 127.0.0.1:$sink_port 1024"
}

# A message for smtp-source of about size octets: the Exchange header file,
# then body lines (LF: smtp-source sends each line with CRLF).
make_msg() # header-file size out-file
{
	python3 - "$1" "$2" "$3" <<'EOF'
import sys
hdr = open(sys.argv[1], "rb").read().replace(b"\r\n", b"\n")
size, out = int(sys.argv[2]), sys.argv[3]
body, i = b"", 0
while len(hdr) + len(body) + 2 * (hdr.count(b"\n") + body.count(b"\n")) < size - 80:
    body += b"benchmark body line %06d abcdefghijklmnopqrstuvwxyz 0123456789\n" % i
    i += 1
open(out, "wb").write(hdr + body)
EOF
}

# tescontrol on CPU 0 with tenant 1 owning the given ranges, so every
# message is enforced: sets tc_pid.  Uses $work, $repo, $TESCONTROL, $TESCTL.
start_tescontrol() # connector-range...
{
	cat >"$work/tescontrol.conf" <<EOF
state_dir = $work/tc-state
gateway_socket = $work/gw.sock
admin_socket = $work/adm.sock
catalog_file = $repo/data/exchange-builds.csv
compliance_file = $repo/data/compliance.conf
policy_file = $repo/data/policy.conf
log_level = warn
EOF
	taskset -c 0 env -u TES_ALLOW_TEST_CLOCK "$TESCONTROL" -c "$work/tescontrol.conf" \
		>"$work/tescontrol.log" 2>&1 &
	tc_pid=$!
	pids+=("$tc_pid")
	local _ r conns=()
	for _ in $(seq 100); do [ -S "$work/adm.sock" ] && break; sleep 0.1; done
	for r in "$@"; do conns+=(--connector "$r"); done
	"$TESCTL" --socket "$work/adm.sock" tenant add 1 Bench "${conns[@]}" >/dev/null
}

# Sends count messages of file with Postfix's smtp-source on CPU 1, $sessions
# at a time, mpc per connection (-d keeps each session's connection: rounds
# of sessions x mpc messages give mpc per connection).  Uses $SRC, $sessions.
source_send() # port mpc file count
{
	local port=$1 mpc=$2 file=$3 count=$4 rounds r
	local src=(taskset -c 1 timeout 300 "$SRC" -F "$file" -M bench.example -f sender@contoso.com
		-t rcpt@example.net)
	if [ "$mpc" = 1 ]; then
		"${src[@]}" -s "$sessions" -m "$count" "127.0.0.1:$port" >&2
	else
		rounds=$((count / (sessions * mpc)))
		for ((r = 0; r < rounds; r++)); do
			"${src[@]}" -d -s "$sessions" -m $((sessions * mpc)) "127.0.0.1:$port" >&2
		done
	fi
}
