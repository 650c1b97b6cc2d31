#!/bin/bash
# tools/quickstart.sh: the README's run command.  Sets the machine up
# (tools/setup.sh), builds tesgate into build/quickstart, and runs it in the
# foreground on its embedded defaults, after saying where it listens, how to
# send it a test message and how to stop it.
set -euo pipefail

usage()
{
	cat <<EOF
Usage: tools/quickstart.sh [options]

Set up this Debian 12 machine (root), build tesgate (release build in
build/quickstart) and run it in the foreground on its embedded defaults,
with messages spooled to \$TES_STATE_DIR/spool and STARTTLS with the demo
certificate from tools/setup.sh when \$TES_STATE_DIR/tls/cert.pem and
key.pem exist and are readable.  tesgate and tescontrol start as root and,
once set up, run as the system users tesgate and tescontrol that
tools/setup.sh creates, with no capabilities (docs/security.md).

Where it can (root, free 2 MB hugepages, /dev/net/tun), tesgate runs on
DPDK: its own TCP/IP stack on a net_tap port named tesgate0, address
$DPDK_ADDR_DEFAULT port PORT, with the kernel side of the tap at
$KERNEL_ADDR_DEFAULT so this machine can send it mail.  One poll-mode
worker then keeps one CPU core busy while it runs: that is how DPDK works.
Otherwise, or with --io kernel, it runs on kernel sockets on
127.0.0.1:PORT, and says so.

Options:
  --port N      SMTP port (default 2525)
  --io MODE     auto (default), dpdk (fail if it cannot) or kernel
  --no-setup    skip tools/setup.sh (the machine is already set up, or you
                are not root)
  -h, --help    this text

Environment:
  TES_STATE_DIR  state directory (default /var/lib/tesgate); the spool is
                 \$TES_STATE_DIR/spool, the demo certificate
                 \$TES_STATE_DIR/tls/{cert.pem,key.pem}
EOF
}

DPDK_ADDR_DEFAULT=198.18.99.2
KERNEL_ADDR_DEFAULT=198.18.99.1
TAP_IFACE=tesgate0

die()
{
	printf 'quickstart: %s\n' "$*" >&2
	exit 1
}

port=2525 setup=1 io=auto
while [ $# -gt 0 ]; do
	case $1 in
	--port)
		[ $# -ge 2 ] || die "--port needs a number"
		port=$2
		shift
		;;
	--port=*) port=${1#--port=} ;;
	--io)
		[ $# -ge 2 ] || die "--io needs auto, dpdk or kernel"
		io=$2
		shift
		;;
	--io=*) io=${1#--io=} ;;
	--no-setup) setup=0 ;;
	-h | --help)
		usage
		exit 0
		;;
	*)
		usage >&2
		die "unknown option: $1"
		;;
	esac
	shift
done
case $io in
auto | dpdk | kernel) ;;
*) die "--io must be auto, dpdk or kernel, not '$io'" ;;
esac
case $port in
'' | *[!0-9]*) die "--port must be a number from 1 to 65535, not '$port'" ;;
esac
if [ "$port" -lt 1 ] || [ "$port" -gt 65535 ]; then
	die "--port must be from 1 to 65535, not $port"
fi

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"

if [ "$setup" -eq 1 ]; then
	[ "$(id -u)" -eq 0 ] || die "run as root (tools/setup.sh installs packages), or pass --no-setup"
	bash tools/setup.sh
fi

# The daemons give up root for these users (tools/setup.sh makes them).
for u in tesgate tescontrol; do
	id "$u" >/dev/null 2>&1 ||
		die "no system user $u: tools/setup.sh creates it (run without --no-setup, as root)"
done

build=build/quickstart
if [ ! -f "$build/build.ninja" ]; then
	# The tests are not built here: tests/run-all.sh builds and runs them.
	meson setup "$build" --buildtype=release -Dtests=false
fi
ninja -C "$build"
tesgate=$repo/$build/gateway/tesgate
tescontrol=$repo/$build/controlplane/tescontrol
tesctl=$repo/$build/tools/tesctl
for b in "$tesgate" "$tescontrol" "$tesctl"; do
	[ -x "$b" ] || die "build did not produce $b"
done

# DPDK on a tap device needs root (the tap, hugepages), free hugepages
# (tools/setup.sh reserves them) and the tun driver.
dpdk_why=""
hp_free=$(awk '/^HugePages_Free:/ {print $2}' /proc/meminfo)
if [ "$(id -u)" -ne 0 ]; then
	dpdk_why="not root"
elif [ "${hp_free:-0}" -lt 64 ]; then
	dpdk_why="only ${hp_free:-0} free 2 MB hugepages (tools/setup.sh reserves 512)"
elif [ ! -c /dev/net/tun ]; then
	dpdk_why="no /dev/net/tun"
elif ip link show dev "$TAP_IFACE" >/dev/null 2>&1; then
	dpdk_why="an interface named $TAP_IFACE exists already (another tesgate?)"
fi
if [ "$io" = dpdk ] && [ -n "$dpdk_why" ]; then
	die "--io dpdk: cannot run on DPDK here: $dpdk_why"
fi
if [ "$io" = auto ]; then
	if [ -n "$dpdk_why" ]; then
		io=kernel
		io_note="FALLING BACK to kernel sockets: DPDK cannot run here ($dpdk_why)"
	else
		io=dpdk
	fi
fi
if [ "$io" = dpdk ]; then
	smtp_addr=$DPDK_ADDR_DEFAULT
	io_line="DPDK: tesgate's own TCP/IP stack on net_tap port $TAP_IFACE (one busy-polling core)"
	from_line="this machine reaches it from $KERNEL_ADDR_DEFAULT, the kernel side of $TAP_IFACE"
else
	smtp_addr=127.0.0.1
	io_line=${io_note:-kernel sockets (--io kernel)}
	from_line="loopback"
fi

state=${TES_STATE_DIR:-/var/lib/tesgate}
spool=$state/spool
mkdir -p "$state"

# STARTTLS with the demo pair tools/setup.sh makes, when it is there and
# this user can read the key (setup.sh makes it 0600, root's).
tls_cert=$state/tls/cert.pem
tls_key=$state/tls/key.pem
tls_args=()
tls_conf=""
tls_check=""
if [ -r "$tls_cert" ] && [ -r "$tls_key" ]; then
	tls_args=(--tls-cert "$tls_cert" --tls-key "$tls_key")
	tls_conf="tls_cert = $tls_cert
tls_key = $tls_key"
	tls_line="STARTTLS with $tls_cert (self-signed demo certificate)"
	tls_check="
Check STARTTLS (the version, the cipher and the certificate; then type
EHLO x and QUIT):

  openssl s_client -starttls smtp -connect $smtp_addr:$port -brief

(add --tls to the swaks lines below to send the test message over TLS)
"
elif [ -e "$tls_cert" ] || [ -e "$tls_key" ]; then
	tls_line="off: $tls_cert or $tls_key is missing or not readable by $(id -un)"
else
	tls_line="off: no demo certificate in $state/tls (tools/setup.sh makes one)"
fi

# The control plane: its state (SQLite) and sockets under the state dir,
# the catalog and policy from the source tree.  One demo tenant owns mail
# from loopback and from the kernel side of the DPDK tap, so the
# enforcement scope (connectors only) covers it.
ctl_dir=$state/control
mkdir -p "$ctl_dir"
ctl_conf=$ctl_dir/tescontrol.conf
{
	echo "# written by tools/quickstart.sh"
	echo "state_dir = $ctl_dir"
	echo "gateway_socket = $ctl_dir/gateway.sock"
	echo "admin_socket = $ctl_dir/admin.sock"
	echo "catalog_file = $repo/data/exchange-builds.csv"
	echo "compliance_file = $repo/data/compliance.conf"
	echo "policy_file = $repo/data/policy.conf"
	# after start-up tescontrol runs as tescontrol; the gateway socket
	# belongs to the group tesgate, whose user tesgate runs as
	echo "user = tescontrol"
	echo "gateway_group = tesgate"
} >"$ctl_conf"
ctl_log=$ctl_dir/tescontrol.log
"$tescontrol" -c "$ctl_conf" >>"$ctl_log" 2>&1 &
ctl_pid=$!
stop_control()
{
	if kill -0 "$ctl_pid" 2>/dev/null; then
		kill -TERM "$ctl_pid" 2>/dev/null || true
		wait "$ctl_pid" 2>/dev/null || true
	fi
}
trap stop_control EXIT
tesctl_cmd="$tesctl --socket $ctl_dir/admin.sock"
ready=0
for _ in $(seq 1 100); do
	if $tesctl_cmd status >/dev/null 2>&1; then
		ready=1
		break
	fi
	kill -0 "$ctl_pid" 2>/dev/null || die "tescontrol did not start; see $ctl_log"
	sleep 0.1
done
[ "$ready" -eq 1 ] || die "tescontrol did not answer in 10 s; see $ctl_log"
$tesctl_cmd tenant show 1 >/dev/null 2>&1 ||
	$tesctl_cmd tenant add 1 demo --connector 127.0.0.0/8 --connector 198.18.99.0/24 >/dev/null ||
	die "could not add the demo tenant; see $ctl_log"

sample=$repo/tests/data/headers/ex2016-tls.hdr
received='Received: from EX16-01.contoso.local (10.1.1.41) by EX16-02.contoso.local (10.1.1.42) with Microsoft SMTP Server (version=TLS1_2, cipher=TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256) id 15.1.2507.35; Thu, 6 Jun 2024 16:59:04 -0500'
version=$("$tesgate" --version)

cat <<EOF

================================================================================
$version, starting in the foreground on its embedded defaults

  SMTP:   $smtp_addr:$port   ($from_line)
  I/O:    $io_line
  TLS:    $tls_line
  spool:  $spool/new/<id>.eml   the message, byte for byte
          $spool/new/<id>.env   its envelope; both written before the 250
  user:   tesgate (started as root, then no capabilities; tescontrol: tescontrol)
  log:    this terminal, one line per event (tescontrol: $ctl_log)
  control: tescontrol, state in $ctl_dir
          (tenant 1 "demo" owns mail from 127.0.0.0/8 and 198.18.99.0/24)
$tls_check
Send a test message as an Exchange 2016 server would (in another terminal):

  swaks --server $smtp_addr --port $port \\
        --from grace.okafor@contoso.com --to ian.hughes@example.net \\
        --helo EX16-02.contoso.local --data @$sample

or any message with just that server's Received header added:

  swaks --server $smtp_addr --port $port --to ian.hughes@example.net \\
        --add-header '$received'

The log then shows a line like
  detect ... server=ex16-02.contoso.local build=15.1.2507.35 family=2016 ... compliant=no
and the reply "250 2.0.0 Ok: queued as <id>" names the files:

  ls -l $spool/new/

The out-of-date server is now in the report (first detected today,
throttled from day 30, blocked from day 60):

  $tesctl_cmd report

Stop: Ctrl-C here (or kill -TERM the tesgate process). Idle clients get
421; messages in flight are finished first; tescontrol stops with it.
================================================================================

EOF

if [ "$io" = kernel ]; then
	# Not exec: tescontrol is stopped when tesgate ends (the EXIT trap).
	"$tesgate" --listen "127.0.0.1:$port" --spool "$spool" --control "$ctl_dir/gateway.sock" \
		--user tesgate "${tls_args[@]}"
	exit $?
fi

# DPDK: the EAL makes the tap from --vdev (never a PCI device: --no-pci);
# once tesgate listens, the kernel side gets its address.
gw_conf=$state/tesgate-dpdk.conf
{
	echo "# written by tools/quickstart.sh"
	echo "io = dpdk"
	echo "dpdk_args = --no-pci --in-memory -l 0-1 --vdev=net_tap0,iface=$TAP_IFACE"
	echo "dpdk_addr = $DPDK_ADDR_DEFAULT/24"
	echo "dpdk_port = $port"
	echo "spool_dir = $spool"
	echo "control_socket = $ctl_dir/gateway.sock"
	echo "user = tesgate"
	echo "$tls_conf"
} >"$gw_conf"
"$tesgate" -c "$gw_conf" &
gw_pid=$!
stop_all()
{
	if kill -0 "$gw_pid" 2>/dev/null; then
		kill -TERM "$gw_pid" 2>/dev/null || true
		wait "$gw_pid" 2>/dev/null || true
	fi
	ip link del dev "$TAP_IFACE" 2>/dev/null || true
	stop_control
}
trap stop_all EXIT
trap 'exit 130' INT TERM
for _ in $(seq 1 300); do
	ip link show dev "$TAP_IFACE" >/dev/null 2>&1 && break
	kill -0 "$gw_pid" 2>/dev/null || die "tesgate did not start on DPDK (see above); --io kernel runs it on kernel sockets"
	sleep 0.1
done
ip link show dev "$TAP_IFACE" >/dev/null 2>&1 || die "no $TAP_IFACE after 30 s"
ip addr add "$KERNEL_ADDR_DEFAULT/24" dev "$TAP_IFACE"
ip link set dev "$TAP_IFACE" up
echo "quickstart: $TAP_IFACE is up; send mail to $DPDK_ADDR_DEFAULT:$port" >&2
wait "$gw_pid"
