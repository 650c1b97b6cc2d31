#!/bin/bash
# tools/setup.sh: prepare a Debian 12 (bookworm) machine to build, test and
# run tesgate.  Run as root.  Idempotent: a second run changes nothing.
#
#   1. installs the Debian packages that are missing (apt-get update only
#      when something must be installed and the package lists are stale or
#      do not know a package);
#   2. reserves 2 MB hugepages and mounts hugetlbfs at /dev/hugepages
#      (a warning, not an error, where the kernel refuses: the kernel-socket
#      path does not need them);
#   3. creates the system users the daemons run as (tesgate, tescontrol) and
#      the operators' group tesadm, if missing;
#   4. creates a self-signed demo TLS certificate if there is none, its key
#      readable by the group tesgate (a SIGHUP reload runs as tesgate).
set -euo pipefail

PACKAGES=(
	# build
	meson ninja-build pkg-config gcc libc6-dev git
	# libraries (pkg-config names in meson.build)
	libdpdk-dev dpdk liburcu-dev libjemalloc-dev libbpf-dev bpftool
	libssl-dev openssl libsqlite3-dev sqlite3 libjansson-dev
	libmicrohttpd-dev libcmocka-dev libcurl4-openssl-dev
	# clang: BPF programs, libFuzzer and sanitizer runtimes; format check
	clang-14 libclang-rt-14-dev llvm-14 clang-format
	# real peers and tools used by tests and demos (postfix: smtp-sink,
	# smtp-source and temporary Postfix instances the tests start; the
	# system instance is never configured or run, see below)
	python3 swaks libio-socket-inet6-perl iproute2 ca-certificates postfix testssl.sh prometheus strace
	# the fleet store's peer: tests start their own etcd clusters
	etcd-server etcd-client
	# swaks --tls (quickstart suggests it): a Recommends, which
	# --no-install-recommends leaves out
	libnet-ssleay-perl
	# dpdk-telemetry.py, the client of DPDK's telemetry socket (io = dpdk)
	dpdk-dev
	# the benchmark scripts (bench/): arithmetic, /metrics, pinning
	bc curl util-linux
	# the report page's test: headless Chromium loads it (tests/integration/
	# test_report_page.py)
	chromium
	# the Debian packages (debian/, docs/packaging.md): the man pages from
	# docs/*.8.md, dpkg-buildpackage, lintian; the packaging test reads the
	# installed man pages and runs the installed bash completion
	pandoc debhelper dpkg-dev lintian man-db bash-completion
)

usage()
{
	cat <<EOF
Usage: tools/setup.sh [options]

Prepare this Debian 12 machine for tesgate (run as root; safe to run again):
install the missing build and test packages, reserve 2 MB hugepages, mount
hugetlbfs at /dev/hugepages, create the system users tesgate and tescontrol
and the group tesadm, and create a self-signed demo certificate.

Options:
  --no-packages     do not install packages
  --no-hugepages    do not reserve hugepages or mount hugetlbfs
  --no-users        do not create the system users and groups
  --no-cert         do not create the demo certificate
  --update          run apt-get update even if the package lists are fresh
  --strict          fail (instead of warning) when hugepages or hugetlbfs
                    cannot be set up: every test must then be able to run
                    (tests/run-all.sh passes it when it runs as root)
  -h, --help        this text

Environment:
  TES_HUGEPAGES     number of 2 MB pages to have reserved (default 512 = 1 GiB;
                    0 leaves the reservation alone)
  TES_STATE_DIR     state directory (default /var/lib/tesgate); the demo
                    certificate goes to \$TES_STATE_DIR/tls/{cert.pem,key.pem}
EOF
}

say()
{
	printf 'setup: %s\n' "$*"
}

warn()
{
	printf 'setup: WARNING: %s\n' "$*" >&2
}

die()
{
	printf 'setup: ERROR: %s\n' "$*" >&2
	exit 1
}

do_packages=1 do_hugepages=1 do_users=1 do_cert=1 force_update=0 strict=0
while [ $# -gt 0 ]; do
	case $1 in
	--no-packages) do_packages=0 ;;
	--no-hugepages) do_hugepages=0 ;;
	--no-users) do_users=0 ;;
	--no-cert) do_cert=0 ;;
	--update) force_update=1 ;;
	--strict) strict=1 ;;
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

# What this run did, printed at the end.
DONE=()

# --- preconditions ---------------------------------------------------------

[ "$(id -u)" -eq 0 ] || die "must run as root (try: sudo $0)"

[ -r /etc/os-release ] || die "no /etc/os-release: this script needs Debian 12 (bookworm)"
os_id=$(sed -n 's/^ID=//p' /etc/os-release | tr -d '"')
os_like=$(sed -n 's/^ID_LIKE=//p' /etc/os-release | tr -d '"')
os_codename=$(sed -n 's/^VERSION_CODENAME=//p' /etc/os-release | tr -d '"')
case " $os_id $os_like " in
*" debian "*) ;;
*) die "this is '${os_id:-unknown}', not Debian-like: this script needs Debian 12 (bookworm)" ;;
esac
if ! command -v apt-get >/dev/null || ! command -v dpkg-query >/dev/null; then
	die "apt-get/dpkg-query not found: this script needs Debian 12 (bookworm)"
fi
if [ "$os_codename" != bookworm ]; then
	warn "this is ${os_id} ${os_codename:-?}, not Debian 12 (bookworm): package names may differ"
fi

# --- 1. packages -----------------------------------------------------------

is_installed()
{
	local status
	status=$(dpkg-query -W -f='${Status}' "$1" 2>/dev/null) || return 1
	[ "$status" = "install ok installed" ]
}

# True if apt knows an installation candidate for the package.
has_candidate()
{
	local cand
	cand=$(apt-cache policy "$1" 2>/dev/null | awk '/Candidate:/ { print $2 }')
	[ -n "$cand" ] && [ "$cand" != "(none)" ]
}

# True if apt-get update ran less than a day ago.  A list's mtime is the
# server's Last-Modified, so it can be old right after an update; apt-get
# update always works in lists/partial, so that directory's mtime tells when
# it last ran.
lists_fresh()
{
	local l=/var/lib/apt/lists
	[ -n "$(find "$l" -maxdepth 1 -type f -name '*_Packages*' -print -quit 2>/dev/null)" ] ||
		return 1
	[ -n "$(find "$l" -maxdepth 1 -type f -name '*_Packages*' -mmin -1440 \
		-print -quit 2>/dev/null)" ] && return 0
	[ -n "$(find "$l/partial" -maxdepth 0 -mmin -1440 -print 2>/dev/null)" ]
}

if [ "$do_packages" -eq 1 ]; then
	missing=()
	for p in "${PACKAGES[@]}"; do
		is_installed "$p" || missing+=("$p")
	done
	if [ "${#missing[@]}" -eq 0 ]; then
		say "packages: all ${#PACKAGES[@]} present, nothing to install"
		DONE+=("packages: nothing to install (${#PACKAGES[@]} present)")
	else
		say "packages: missing ${#missing[@]}: ${missing[*]}"
		need_update=$force_update
		lists_fresh || need_update=1
		for p in "${missing[@]}"; do
			has_candidate "$p" || need_update=1
		done
		if [ "$need_update" -eq 1 ]; then
			say "packages: apt-get update"
			apt-get -o DPkg::Lock::Timeout=300 update || die "apt-get update failed"
			DONE+=("apt-get update: ran")
		else
			say "packages: package lists are fresh, no apt-get update"
		fi
		for p in "${missing[@]}"; do
			has_candidate "$p" ||
				die "package '$p' is not available from the configured apt sources (is this Debian 12 with 'main' enabled?)"
		done
		# Postfix must not configure or start a system MTA on port 25:
		# the tests start their own instances in temporary directories.
		echo "postfix postfix/main_mailer_type select No configuration" |
			debconf-set-selections
		# No package may start a daemon while we install (Postfix,
		# Prometheus): policy-rc.d says no to every start, then goes.
		policy=/usr/sbin/policy-rc.d
		own_policy=0
		if [ ! -e "$policy" ]; then
			printf '#!/bin/sh\n# tesgate setup: no daemon starts during install\nexit 101\n' >"$policy"
			chmod 755 "$policy"
			own_policy=1
		fi
		rc=0
		DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 \
			install -y --no-install-recommends \
			"${missing[@]}" || rc=$?
		[ "$own_policy" -eq 0 ] || rm -f "$policy"
		[ "$rc" -eq 0 ] || die "apt-get install failed"
		for p in "${missing[@]}"; do
			is_installed "$p" || die "package '$p' is still not installed after apt-get install"
		done
		DONE+=("packages: installed ${#missing[@]}: ${missing[*]}")
	fi
else
	DONE+=("packages: skipped (--no-packages)")
fi

# Whatever installed it, the system Postfix stays stopped: nothing of ours
# may listen on port 25 or deliver mail off this machine.
if command -v postfix >/dev/null 2>&1; then
	if command -v systemctl >/dev/null 2>&1; then
		systemctl disable --now postfix >/dev/null 2>&1 || true
	fi
	postfix status >/dev/null 2>&1 && { postfix stop >/dev/null 2>&1 || true; }
fi

# Prometheus: the tests start their own server (temporary config, storage
# and port); the system service must not run or scrape anything.
if dpkg-query -W -f='${Status}' prometheus 2>/dev/null | grep -q 'ok installed'; then
	if command -v systemctl >/dev/null 2>&1; then
		systemctl disable --now prometheus prometheus-node-exporter >/dev/null 2>&1 || true
	fi
	if [ -x /etc/init.d/prometheus ]; then
		/etc/init.d/prometheus stop >/dev/null 2>&1 || true
	fi
fi

# etcd: the tests start their own members (temporary data directories and
# ports); the system member must not run or hold port 2379.
if dpkg-query -W -f='${Status}' etcd-server 2>/dev/null | grep -q 'ok installed'; then
	if command -v systemctl >/dev/null 2>&1; then
		systemctl disable --now etcd >/dev/null 2>&1 || true
	fi
	if [ -x /etc/init.d/etcd ]; then
		/etc/init.d/etcd stop >/dev/null 2>&1 || true
	fi
fi

# --- 2. hugepages ----------------------------------------------------------

hp_target=${TES_HUGEPAGES:-512}
case $hp_target in
'' | *[!0-9]*) die "TES_HUGEPAGES must be a number of 2 MB pages, not '$hp_target'" ;;
esac
hp_target=$((10#$hp_target))
hp_sys=/sys/kernel/mm/hugepages/hugepages-2048kB/nr_hugepages

# A hugepage set-up problem: a warning (the kernel-socket path works without
# them), or with --strict an error, since the DPDK tests would skip.
hp_problem()
{
	if [ "$strict" -eq 1 ]; then
		die "$* (--strict: the DPDK tests need them)"
	fi
	warn "$@"
}

setup_hugepages()
{
	local have got
	if [ ! -e "$hp_sys" ]; then
		hp_problem "hugepages: this kernel has no 2 MB hugepages ($hp_sys missing);" \
			"DPDK tests that need them will be skipped or fail, the kernel-socket path works without"
		DONE+=("hugepages: not supported by this kernel (warning)")
		return 0
	fi
	have=$(cat "$hp_sys")
	if [ "$have" -ge "$hp_target" ]; then
		say "hugepages: $have x 2 MB reserved (want $hp_target), nothing to do"
		DONE+=("hugepages: $have x 2 MB already reserved")
	elif ! { echo "$hp_target" >"$hp_sys"; } 2>/dev/null; then
		hp_problem "hugepages: the kernel refused to reserve $hp_target x 2 MB (have $have);" \
			"DPDK tests that need them will be skipped or fail, the kernel-socket path works without"
		DONE+=("hugepages: kernel refused (warning), $have reserved")
	else
		got=$(cat "$hp_sys")
		if [ "$got" -lt "$hp_target" ]; then
			hp_problem "hugepages: asked for $hp_target x 2 MB, the kernel reserved only $got" \
				"(memory too fragmented or too small?)"
			DONE+=("hugepages: reserved $got x 2 MB of $hp_target asked (warning; was $have)")
		else
			say "hugepages: reserved $got x 2 MB (was $have)"
			DONE+=("hugepages: reserved $got x 2 MB (was $have)")
		fi
	fi

	if [ -n "$(findmnt -n -t hugetlbfs -M /dev/hugepages 2>/dev/null)" ]; then
		say "hugepages: hugetlbfs already mounted at /dev/hugepages"
		DONE+=("hugetlbfs: already mounted at /dev/hugepages")
	elif mkdir -p /dev/hugepages 2>/dev/null &&
		mount -t hugetlbfs -o pagesize=2M nodev /dev/hugepages 2>/dev/null; then
		say "hugepages: mounted hugetlbfs at /dev/hugepages"
		DONE+=("hugetlbfs: mounted at /dev/hugepages")
	else
		hp_problem "hugepages: could not mount hugetlbfs at /dev/hugepages;" \
			"DPDK will need --no-huge or --in-memory"
		DONE+=("hugetlbfs: mount failed (warning)")
	fi
}

if [ "$do_hugepages" -eq 0 ]; then
	DONE+=("hugepages: skipped (--no-hugepages)")
elif [ "$hp_target" -eq 0 ]; then
	DONE+=("hugepages: skipped (TES_HUGEPAGES=0)")
else
	setup_hugepages
fi

# --- 3. system users ---------------------------------------------------------
# tesgate and tescontrol give up root after start-up and run as these
# (docs/security.md); tesadm is the operators' group (tescontrol's
# admin_group), tesgate also tescontrol's gateway_group.

ensure_group()
{
	if getent group "$1" >/dev/null; then
		return 0
	fi
	groupadd --system "$1" || die "groupadd $1 failed"
	DONE+=("users: created group $1")
}

# ensure_user NAME HOME [SUPPLEMENTARY-GROUP...]
ensure_user()
{
	local name=$1 home=$2 g
	shift 2
	if ! getent passwd "$name" >/dev/null; then
		ensure_group "$name"
		useradd --system --gid "$name" --home-dir "$home" --no-create-home \
			--shell /usr/sbin/nologin --comment "tesgate $name daemon" "$name" ||
			die "useradd $name failed"
		DONE+=("users: created system user $name")
	fi
	for g in "$@"; do
		if ! id -nG "$name" | tr ' ' '\n' | grep -qx "$g"; then
			usermod -a -G "$g" "$name" || die "usermod -a -G $g $name failed"
			DONE+=("users: added $name to group $g")
		fi
	done
}

if [ "$do_users" -eq 1 ]; then
	ensure_group tesadm
	ensure_user tesgate /var/lib/tesgate
	# tescontrol hands its sockets to both groups, so it is in both
	ensure_user tescontrol /var/lib/tescontrol tesgate tesadm
	say "users: tesgate, tescontrol and group tesadm present"
else
	DONE+=("users: skipped (--no-users)")
fi

# --- 4. demo TLS certificate ----------------------------------------------

state_dir=${TES_STATE_DIR:-/var/lib/tesgate}
tls_dir=$state_dir/tls

# The key: root's, readable by the group tesgate when there is one.
key_perms()
{
	if getent group tesgate >/dev/null; then
		chown root:tesgate "$1"
		chmod 0640 "$1"
	else
		chmod 0600 "$1"
	fi
}

make_cert()
{
	local cn san tmp
	cn=$(hostname -f 2>/dev/null || true)
	# A CN must be at most 64 octets; anything odd falls back to localhost.
	case $cn in
	'' | *[!A-Za-z0-9.-]* | -*) cn=localhost ;;
	esac
	[ "${#cn}" -le 64 ] || cn=localhost
	san="DNS:localhost,IP:127.0.0.1"
	[ "$cn" = localhost ] || san="DNS:$cn,$san"

	mkdir -p "$tls_dir"
	chmod 0755 "$tls_dir"
	tmp=$(mktemp -d "$tls_dir/.new.XXXXXX")
	# shellcheck disable=SC2064 # expand now: tmp is local
	trap "rm -rf '$tmp'" EXIT
	(
		umask 077
		openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
			-keyout "$tmp/key.pem" -out "$tmp/cert.pem" -days 825 -sha256 \
			-subj "/CN=$cn" -addext "subjectAltName=$san" \
			-addext "extendedKeyUsage=serverAuth" 2>"$tmp/openssl.log"
	) || {
		cat "$tmp/openssl.log" >&2
		die "openssl could not create the demo certificate"
	}
	key_perms "$tmp/key.pem"
	chmod 0644 "$tmp/cert.pem"
	mv "$tmp/key.pem" "$tls_dir/key.pem"
	mv "$tmp/cert.pem" "$tls_dir/cert.pem"
	rm -rf "$tmp"
	trap - EXIT
	say "tls: created self-signed ECDSA P-256 certificate CN=$cn ($san) in $tls_dir"
	DONE+=("tls: created $tls_dir/cert.pem and key.pem (CN=$cn, $san)")
}

if [ "$do_cert" -eq 0 ]; then
	DONE+=("tls: skipped (--no-cert)")
elif [ -e "$tls_dir/cert.pem" ] && [ -e "$tls_dir/key.pem" ]; then
	say "tls: $tls_dir/cert.pem and key.pem exist, kept"
	DONE+=("tls: kept existing $tls_dir/cert.pem and key.pem")
	# an older setup made the key root's alone: tesgate, no longer root
	# when it reloads on SIGHUP, must be able to read it
	if getent group tesgate >/dev/null &&
		[ "$(stat -c %G:%a "$tls_dir/key.pem")" != "tesgate:640" ] &&
		[ "$(stat -c %U "$tls_dir/key.pem")" = root ]; then
		key_perms "$tls_dir/key.pem"
		DONE+=("tls: $tls_dir/key.pem made readable by the group tesgate (0640)")
	fi
elif [ -e "$tls_dir/cert.pem" ] || [ -e "$tls_dir/key.pem" ]; then
	warn "tls: only one of cert.pem and key.pem exists in $tls_dir; left alone" \
		"(remove it to have a demo pair made)"
	DONE+=("tls: incomplete pair in $tls_dir left alone (warning)")
else
	command -v openssl >/dev/null || die "openssl not found (run without --no-packages)"
	make_cert
fi

# --- summary ---------------------------------------------------------------

say "done:"
for line in "${DONE[@]}"; do
	printf '  - %s\n' "$line"
done
