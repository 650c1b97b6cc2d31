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
build/quickstart) and run it in the foreground on its embedded defaults:
SMTP on 127.0.0.1:PORT, messages spooled to \$TES_STATE_DIR/spool, and
STARTTLS with the demo certificate from tools/setup.sh when
\$TES_STATE_DIR/tls/cert.pem and key.pem exist and are readable.

Options:
  --port N      SMTP port on 127.0.0.1 (default 2525)
  --no-setup    skip tools/setup.sh (the machine is already set up, or you
                are not root)
  -h, --help    this text

Environment:
  TES_STATE_DIR  state directory (default /var/lib/tesgate); the spool is
                 \$TES_STATE_DIR/spool, the demo certificate
                 \$TES_STATE_DIR/tls/{cert.pem,key.pem}
EOF
}

die()
{
	printf 'quickstart: %s\n' "$*" >&2
	exit 1
}

port=2525 setup=1
while [ $# -gt 0 ]; do
	case $1 in
	--port)
		[ $# -ge 2 ] || die "--port needs a number"
		port=$2
		shift
		;;
	--port=*) port=${1#--port=} ;;
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

build=build/quickstart
if [ ! -f "$build/build.ninja" ]; then
	# The tests are not built here: tests/run-all.sh builds and runs them.
	meson setup "$build" --buildtype=release -Dtests=false
fi
ninja -C "$build"
tesgate=$repo/$build/gateway/tesgate
[ -x "$tesgate" ] || die "build did not produce $tesgate"

state=${TES_STATE_DIR:-/var/lib/tesgate}
spool=$state/spool
mkdir -p "$state"

# STARTTLS with the demo pair tools/setup.sh makes, when it is there and
# this user can read the key (setup.sh makes it 0600, root's).
tls_cert=$state/tls/cert.pem
tls_key=$state/tls/key.pem
tls_args=()
tls_check=""
if [ -r "$tls_cert" ] && [ -r "$tls_key" ]; then
	tls_args=(--tls-cert "$tls_cert" --tls-key "$tls_key")
	tls_line="STARTTLS with $tls_cert (self-signed demo certificate)"
	tls_check="
Check STARTTLS (the version, the cipher and the certificate; then type
EHLO x and QUIT):

  openssl s_client -starttls smtp -connect 127.0.0.1:$port -brief

(add --tls to the swaks lines below to send the test message over TLS)
"
elif [ -e "$tls_cert" ] || [ -e "$tls_key" ]; then
	tls_line="off: $tls_cert or $tls_key is missing or not readable by $(id -un)"
else
	tls_line="off: no demo certificate in $state/tls (tools/setup.sh makes one)"
fi

sample=$repo/tests/data/headers/ex2016-tls.hdr
received='Received: from EX16-01.contoso.local (10.1.1.41) by EX16-02.contoso.local (10.1.1.42) with Microsoft SMTP Server (version=TLS1_2, cipher=TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256) id 15.1.2507.35; Thu, 6 Jun 2024 16:59:04 -0500'
version=$("$tesgate" --version)

cat <<EOF

================================================================================
$version, starting in the foreground on its embedded defaults

  SMTP:   127.0.0.1:$port
  TLS:    $tls_line
  spool:  $spool/new/<id>.eml   the message, byte for byte
          $spool/new/<id>.env   its envelope; both written before the 250
  log:    this terminal, one line per event
$tls_check
Send a test message as an Exchange 2016 server would (in another terminal):

  swaks --server 127.0.0.1 --port $port \\
        --from grace.okafor@contoso.com --to ian.hughes@example.net \\
        --helo EX16-02.contoso.local --data @$sample

or any message with just that server's Received header added:

  swaks --server 127.0.0.1 --port $port --to ian.hughes@example.net \\
        --add-header '$received'

The log then shows a line like
  detect ... server=ex16-02.contoso.local build=15.1.2507.35 family=2016 ... compliant=no
and the reply "250 2.0.0 Ok: queued as <id>" names the files:

  ls -l $spool/new/

Stop: Ctrl-C here (or kill -TERM the tesgate process). Idle clients get
421; messages in flight are finished first.
================================================================================

EOF

exec "$tesgate" --listen "127.0.0.1:$port" --spool "$spool" "${tls_args[@]}"
