#!/bin/sh
# Every C file in the repository follows .clang-format.  Exit 1 and name
# the offenders otherwise.  Fix with: tools/check-format.sh --fix
set -eu
cd "$(dirname "$0")/.."
cf=$(command -v clang-format-14 || command -v clang-format) || {
	echo "clang-format not found (apt-get install clang-format)" >&2
	exit 1
}
files=$(git ls-files --cached --others --exclude-standard '*.c' '*.h')
[ -n "$files" ] || exit 0
if [ "${1:-}" = "--fix" ]; then
	echo "$files" | xargs "$cf" -i
	exit 0
fi
echo "$files" | xargs "$cf" --dry-run --Werror
echo "format: $(echo "$files" | wc -l) files clean"
