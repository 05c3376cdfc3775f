#!/usr/bin/env bash
# Runs every fuzz target in the module for FUZZTIME each (default 60s).
# Not part of the default test run; crashers land in the package's
# testdata/fuzz/<Target>/ and then fail `go test` until fixed.
set -euo pipefail
cd "$(dirname "$0")/.."
FUZZTIME="${FUZZTIME:-60s}"
status=0
while IFS=: read -r file target; do
	pkg="./$(dirname "$file")"
	echo "==> $pkg $target ($FUZZTIME)"
	if ! go test -run '^$' -fuzz "^${target}\$" -fuzztime "$FUZZTIME" "$pkg"; then
		status=1
	fi
done < <(grep -rHoE --include='*_test.go' '^func (Fuzz[A-Za-z0-9_]+)' . | sed -E 's#^\./##; s#:func #:#' | sort -u)
exit $status
