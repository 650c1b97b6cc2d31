#!/bin/bash
# tests/concurrency/run-tsan.sh: the RCU enforcement state under
# ThreadSanitizer.
#
# Configures a build of its own with -Db_sanitize=thread, builds only what it
# runs, and runs:
#   0. the other thread-crossing units: test_opool, test_sightring,
#      test_log, test_verdictlog;
#   1. test_enfstate (the unit tests) under TSan;
#   2. stress_enfstate: reader threads against the writer for a few seconds;
#   3. a control: stress_enfstate_nogp, whose enfstate.c frees retired
#      entries without waiting for a grace period.  TSan must report it;
#      if it does not, the annotations or suppressions hide real races and
#      the clean result of step 2 means nothing.
# Exit 0 only if 1 and 2 are clean and 3 is caught.
set -euo pipefail

usage()
{
	cat <<EOF
Usage: tests/concurrency/run-tsan.sh [options]

Options:
  --builddir DIR   meson build directory (default: build/tsan); it is
                   reconfigured from scratch on every run
  --seconds N      how long the stress test runs (default: 5)
  --readers N      reader threads (default: 3)
  --no-control     skip the check that TSan catches a missing grace period
  -h, --help       this text

Environment: CC (default gcc).
EOF
}

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
builddir=build/tsan seconds=5 readers=3 control=1
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
	--readers)
		readers=${2:?--readers needs a number}
		shift
		;;
	--no-control) control=0 ;;
	-h | --help)
		usage
		exit 0
		;;
	*)
		usage >&2
		echo "run-tsan: unknown option: $1" >&2
		exit 2
		;;
	esac
	shift
done

cd "$repo"
case $builddir in
/*) ;;
*) builddir=$repo/$builddir ;;
esac
supp=$repo/tests/concurrency/tsan.supp

# halt_on_error: the first report fails the run, with its stacks.
export TSAN_OPTIONS="suppressions=$supp halt_on_error=1 second_deadlock_stack=1"
if [ -z "${TSAN_SYMBOLIZER_PATH:-}" ] && [ -x /usr/lib/llvm-14/bin/llvm-symbolizer ]; then
	export TSAN_SYMBOLIZER_PATH=/usr/lib/llvm-14/bin/llvm-symbolizer
fi

echo "run-tsan: configuring $builddir (${CC:-gcc}, -Db_sanitize=thread)"
wipe=()
[ ! -d "$builddir/meson-private" ] || wipe=(--wipe)
setup_log=$(mktemp)
# -Db_lundef=false: the sanitizer runtime provides symbols at load time.
if ! CC=${CC:-gcc} meson setup "${wipe[@]}" "$builddir" -Db_sanitize=thread -Db_lundef=false \
	-Dtests=true -Dfuzz=false -Dbuildtype=debugoptimized >"$setup_log" 2>&1; then
	cat "$setup_log" >&2
	rm -f "$setup_log"
	echo "run-tsan: meson setup failed" >&2
	exit 1
fi
rm -f "$setup_log"
ninja -C "$builddir" tests/test_enfstate tests/concurrency/stress_enfstate \
	tests/concurrency/stress_enfstate_nogp tests/test_opool tests/test_sightring \
	tests/test_log tests/test_verdictlog

echo "run-tsan: 0/3 test_opool (the spool's per-worker pools, returned from other threads)"
"$builddir/tests/test_opool"
echo "run-tsan: 0/3 test_sightring (a worker's sighting queue, producer and consumer racing)"
"$builddir/tests/test_sightring"

echo "run-tsan: 0/3 test_log (workers' log lines through the ring to the writer thread)"
TES_SRCDIR=$repo "$builddir/tests/test_log"
echo "run-tsan: 0/3 test_verdictlog (per-worker verdict rings and their writer thread)"
TES_SRCDIR=$repo "$builddir/tests/test_verdictlog"

echo "run-tsan: 1/3 test_enfstate"
TES_SRCDIR=$repo "$builddir/tests/test_enfstate"

echo "run-tsan: 2/3 stress_enfstate --readers $readers --seconds $seconds"
"$builddir/tests/concurrency/stress_enfstate" --readers "$readers" --seconds "$seconds"

if [ "$control" -eq 1 ]; then
	echo "run-tsan: 3/3 control: stress_enfstate_nogp must be reported"
	log=$(mktemp)
	trap 'rm -f "$log"' EXIT
	set +e
	"$builddir/tests/concurrency/stress_enfstate_nogp" --readers "$readers" --seconds 3 \
		>"$log" 2>&1
	rc=$?
	set -e
	if [ "$rc" -ne 0 ] && grep -q 'WARNING: ThreadSanitizer: data race' "$log"; then
		echo "run-tsan: control caught (exit $rc):"
		grep -m1 -A8 'WARNING: ThreadSanitizer: data race' "$log" | sed 's/^/    /'
	else
		cat "$log" >&2
		echo "run-tsan: FAIL: TSan did not report freeing without a grace period" >&2
		exit 1
	fi
else
	echo "run-tsan: 3/3 control skipped (--no-control)"
fi
echo "run-tsan: ok"
