#!/bin/bash
# bench/run-tls.sh: TLS handshakes per second through the gateway's TLS layer
# (gateway/tls.c) against an OpenSSL client in the same thread, beside
# `openssl speed` for the signature and key exchange they cost, so the
# ratio to the crypto floor is read from one run.  For docs/benchmarks.md
# ("TLS handshakes"); never a test.
set -euo pipefail

usage()
{
	cat <<EOF2
Usage: bench/run-tls.sh [options]

Options:
  --builddir DIR   meson build directory (default: build/bench-release,
                   configured as a release build if missing)
  --seconds S      seconds per case (default: 2)
  -h, --help       this text
EOF2
}

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
builddir=build/bench-release seconds=2
while [ $# -gt 0 ]; do
	case $1 in
	--builddir)
		builddir=${2:?--builddir needs a directory}
		shift
		;;
	--seconds)
		seconds=${2:?--seconds needs a number}
		shift
		;;
	-h | --help)
		usage
		exit 0
		;;
	*)
		usage >&2
		echo "run-tls: unknown option: $1" >&2
		exit 2
		;;
	esac
	shift
done
cd "$repo"
[ -d "$builddir/meson-private" ] || meson setup "$builddir" -Dbuildtype=release -Dtests=false >/dev/null
ninja -C "$builddir" bench/bench_tls_handshake >/dev/null

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj /CN=bench.example \
	-days 2 -keyout "$tmp/ec.key" -out "$tmp/ec.pem" 2>/dev/null
openssl req -x509 -newkey rsa:2048 -nodes -subj /CN=bench.example -days 2 \
	-keyout "$tmp/rsa.key" -out "$tmp/rsa.pem" 2>/dev/null

echo "machine: $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) CPUs; $(date -u '+%Y-%m-%dT%H:%M:%SZ')"
echo "commit:  $(git describe --always --dirty 2>/dev/null || echo unknown)"
echo "command: bench/run-tls.sh --seconds $seconds"
echo
echo "# the crypto floor: openssl speed (1 s each)"
echo
speed=$(openssl speed -seconds 1 ecdsap256 ecdhx25519 rsa2048 2>/dev/null)
echo "$speed" | grep -E '^ *(256 bits ecdsa|253 bits ecdh|rsa 2048)' || true
# The floor of a full TLS 1.3 handshake on the server: one ECDSA P-256
# signature and two X25519 operations (its key share, the shared secret).
floor_us=$(echo "$speed" | awk '/256 bits ecdsa/ {sign = $(NF-1)} /253 bits ecdh/ {dh = $NF}
	END {if (sign > 0 && dh > 0) printf "%.1f", 1e6 / sign + 2e6 / dh}')
echo "floor: ${floor_us:-?} us per full ECDSA handshake (1 sign + 2 X25519)"
echo
echo "# gateway/tls.c server + OpenSSL client, one thread; server time measured apart"
"$builddir/bench/bench_tls_handshake" "$tmp/ec.pem" "$tmp/ec.key" "$tmp/rsa.pem" "$tmp/rsa.key" "$seconds" |
	awk -v floor="${floor_us:-0}" '{print} /server .* us CPU each/ && floor > 0 {
		for (i = 1; i <= NF; i++) if ($i == "us") us = $(i-1);
		printf "    server time / floor: %.2f\n", us / floor}'
