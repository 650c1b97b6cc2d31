#!/bin/bash
# tests/run-all.sh: set up the machine and run every test tesgate has.
# This is the README's test command; .ci/run calls it and nothing else.
#
#   setup   tools/setup.sh --strict (packages, hugepages, demo certificate)
#   format  tools/check-format.sh (clang-format-14 on every C file)
#   gcc     build/ci-gcc: gcc, -Werror, -Dxdp=enabled; all suites (unit,
#           integration, privileged, fuzz-smoke replaying the seed corpora,
#           packaging: the Debian packages built, installed, run, purged)
#   asan    build/ci-asan: gcc, -Werror, AddressSanitizer + UBSan; unit,
#           integration, privileged and fuzz-smoke (tests also in suite
#           'no-asan' left out)
#   tsan    build/ci-tsan: ThreadSanitizer over the RCU enforcement state and
#           the other thread-crossing units (tests/concurrency/run-tsan.sh)
#   fuzz    build/ci-fuzz: clang-14 + libFuzzer + ASan/UBSan; fuzz-smoke
#           fuzzes every target for TES_FUZZ_SECONDS (default 30) seconds
#
# After each meson test run, tests/check-skips.py lists what skipped.  When
# this script runs as root and set the machine up (as CI does), every test
# must run: a skip fails the stage, because meson counts it as a pass and the
# DPDK and XDP tests would silently vanish from a green run.
#
# Stops at the first failing stage with a non-zero exit.
# shellcheck disable=SC2317 # stage functions are called through run_stage
set -euo pipefail

usage()
{
	cat <<EOF
Usage: tests/run-all.sh [options]

Set up this machine (root, Debian 12) and run every tesgate test: format
check, gcc -Werror build with all suites, sanitizer build, libFuzzer build.

Options:
  --quick       skip the sanitizer and libFuzzer builds (developer loop)
  --no-setup    skip tools/setup.sh (when the machine is already set up, or
                when not running as root); skipped tests are then listed
                but allowed, unless TES_STRICT_SKIPS=1
  -h, --help    this text

Environment:
  TES_FUZZ_SECONDS  seconds each libFuzzer target runs (default 30)
  TES_STRICT_SKIPS  1: fail on any skipped test even with --no-setup
  TES_HUGEPAGES, TES_STATE_DIR  passed on to tools/setup.sh
EOF
}

quick=0 setup=1
while [ $# -gt 0 ]; do
	case $1 in
	--quick) quick=1 ;;
	--no-setup) setup=0 ;;
	-h | --help)
		usage
		exit 0
		;;
	*)
		usage >&2
		echo "run-all: unknown option: $1" >&2
		exit 2
		;;
	esac
	shift
done

# Every test must run when this script set the machine up as root.
strict_skips=${TES_STRICT_SKIPS:-$setup}
[ "$(id -u)" -eq 0 ] || strict_skips=${TES_STRICT_SKIPS:-0}

fuzz_seconds=${TES_FUZZ_SECONDS:-30}
case $fuzz_seconds in
'' | *[!0-9]* | 0)
	echo "run-all: TES_FUZZ_SECONDS must be a positive number of seconds, not '$fuzz_seconds'" >&2
	exit 2
	;;
esac

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"

# Sanitizer settings for the asan and fuzz stages (and anything they start).
export ASAN_OPTIONS=detect_leaks=1:abort_on_error=1
export UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1
# Symbolized sanitizer reports: Debian installs llvm-symbolizer versioned.
if [ -z "${ASAN_SYMBOLIZER_PATH:-}" ] && [ -x /usr/lib/llvm-14/bin/llvm-symbolizer ]; then
	export ASAN_SYMBOLIZER_PATH=/usr/lib/llvm-14/bin/llvm-symbolizer
fi

# --- stage runner ------------------------------------------------------------

total_start=$(date +%s)
summary=()

hms()
{
	printf '%dm%02ds' $(($1 / 60)) $(($1 % 60))
}

# run_stage NAME FUNCTION: banner, run FUNCTION under set -e in a subshell,
# time it, stop everything on failure.
run_stage()
{
	local name=$1 fn=$2 start rc dur
	printf '\n==== run-all: %s ==== %s\n' "$name" "$(date '+%H:%M:%S')"
	start=$(date +%s)
	set +e
	(
		set -e
		"$fn"
	)
	rc=$?
	set -e
	dur=$(($(date +%s) - start))
	if [ "$rc" -ne 0 ]; then
		summary+=("$name FAILED $(hms "$dur")")
		printf '\n==== run-all: %s FAILED (exit %d) after %s ====\n' "$name" "$rc" "$(hms "$dur")" >&2
		case $name in
		gcc | asan | fuzz)
			printf 'run-all: build and test logs: build/ci-%s/meson-logs/\n' "$name" >&2
			;;
		esac
		finish 1
	fi
	summary+=("$name ok $(hms "$dur")")
	printf '==== run-all: %s ok in %s ====\n' "$name" "$(hms "$dur")"
}

finish()
{
	local status=PASS
	[ "$1" -eq 0 ] || status=FAIL
	local line="" s
	[ "$quick" -eq 0 ] || summary+=("asan, tsan and fuzz skipped (--quick)")
	for s in "${summary[@]}"; do
		line+="${line:+, }$s"
	done
	printf '\nrun-all: %s in %s: %s\n' "$status" "$(hms $(($(date +%s) - total_start)))" "$line"
	exit "$1"
}

# meson_fresh DIR CC [meson options...]: configure DIR from scratch.  The
# ci-* directories belong to this script: wiping them means every run
# builds with exactly these options, whatever a previous run left behind.
meson_fresh()
{
	local dir=$1 cc=$2
	shift 2
	case $dir in
	build/ci-*) ;;
	*)
		echo "run-all: refusing to wipe $dir" >&2
		return 1
		;;
	esac
	rm -rf "$dir"
	CC=$cc meson setup "$dir" "$@"
}

# meson_tests DIR [meson test options...]: run tests, fail if none ran.
meson_tests()
{
	local dir=$1 n
	shift
	n=$(meson test -C "$dir" --list --no-rebuild "$@" 2>/dev/null | grep -c ' / ' || true)
	if [ "$n" -eq 0 ]; then
		echo "run-all: no tests selected in $dir by: $*" >&2
		return 1
	fi
	echo "run-all: running $n tests in $dir"
	meson test -C "$dir" --print-errorlogs --num-processes 2 "$@"
	if [ "$strict_skips" = 1 ]; then
		tests/check-skips.py "$dir" --strict
	else
		tests/check-skips.py "$dir"
	fi
}

# --- stages --------------------------------------------------------------------

stage_setup()
{
	tools/setup.sh --strict
}

stage_format()
{
	tools/check-format.sh
}

stage_gcc()
{
	meson_fresh build/ci-gcc gcc -Dwerror=true -Dtests=true -Dfuzz=false -Dxdp=enabled
	ninja -C build/ci-gcc
	meson_tests build/ci-gcc
}

stage_asan()
{
	meson_fresh build/ci-asan gcc -Dwerror=true -Dtests=true -Dfuzz=false -Dxdp=enabled \
		-Db_sanitize=address,undefined -Db_lundef=false
	ninja -C build/ci-asan
	meson_tests build/ci-asan --suite unit --suite fuzz-smoke --suite integration \
		--suite privileged --suite concurrency --no-suite no-asan
}

stage_tsan()
{
	# the RCU state's readers against its writer, under ThreadSanitizer,
	# plus the control run TSan must catch (run-tsan.sh says why)
	tests/concurrency/run-tsan.sh --builddir build/ci-tsan --seconds 5
}

stage_fuzz()
{
	meson_fresh build/ci-fuzz clang-14 -Dtests=true -Dfuzz=true \
		-Db_sanitize=address,undefined -Db_lundef=false -Dfuzz_seconds="$fuzz_seconds"
	ninja -C build/ci-fuzz
	meson_tests build/ci-fuzz --suite fuzz-smoke
}

echo "run-all: $repo, $(git -C "$repo" describe --always --dirty 2>/dev/null || echo 'not a git tree')"
if [ "$setup" -eq 1 ]; then
	run_stage setup stage_setup
else
	summary+=("setup skipped (--no-setup)")
fi
run_stage format stage_format
run_stage gcc stage_gcc
if [ "$quick" -eq 0 ]; then
	run_stage asan stage_asan
	run_stage tsan stage_tsan
	run_stage fuzz stage_fuzz
fi
finish 0
