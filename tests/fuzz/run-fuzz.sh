#!/bin/sh
# run-fuzz.sh MODE TARGET SEEDS SECONDS
#   replay: run every seed once through TARGET (ordinary builds)
#   fuzz:   libFuzzer for SECONDS from the seeds; new inputs go to a scratch
#           directory, never into the source tree
set -eu
mode=$1 target=$2 seeds=$3 secs=$4
[ -d "$seeds" ] || { echo "no seed corpus at $seeds" >&2; exit 1; }
case $mode in
replay) exec "$target" "$seeds" ;;
fuzz)
	work=$(mktemp -d)
	trap 'rm -rf "$work"' EXIT
	"$target" -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 \
		-max_len=65536 -print_final_stats=1 "$work" "$seeds"
	;;
*) echo "unknown mode $mode" >&2; exit 2 ;;
esac
