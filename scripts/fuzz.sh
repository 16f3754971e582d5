#!/usr/bin/env bash
# Runs every fuzz target in the module for $FUZZTIME each (default 5s).
# go test -fuzz takes one target per run, so the targets are found by name.
set -euo pipefail
cd "$(dirname "$0")/.."
fuzztime=${FUZZTIME:-5s}
found=0
while IFS=: read -r file name; do
	dir=$(dirname "$file")
	found=$((found + 1))
	echo "fuzz $dir $name ($fuzztime)"
	go test -run '^$' -fuzz "^${name}\$" -fuzztime "$fuzztime" "./$dir"
done < <(git ls-files '*_test.go' | xargs grep -o '^func Fuzz[A-Za-z0-9_]*' | sed 's/func //' | sort)
echo "$found fuzz targets passed"
