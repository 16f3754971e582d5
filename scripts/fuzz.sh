#!/usr/bin/env bash
# Runs every fuzz target in the module for $FUZZTIME each (default 5s).
# go test -fuzz takes one target per run, so the targets are found by name.
#
# Each new interesting input is minimized before fuzzing goes on, for up to
# -fuzzminimizetime (Go's default is 60s), and the executions spent on it are
# reported only when it ends. Inputs grown from the .sse transcripts take long
# to minimize, so with the default a 5s run could end mid-minimization with a
# few dozen executions (FuzzSSEParser from an empty cache: 11). The bound is
# $FUZZMINIMIZETIME (default 1s), so short runs spend their time fuzzing.
#
# Go 1.26's fuzz coordinator can still end a run that found nothing with a
# bare "context deadline exceeded": when -fuzztime expires, the coordinator
# may see the deadline before the workers' context is cancelled
# (golang/go#75804, fixed in Go 1.27), however busy the workers are. Such a
# run, with no failing input written, is run again, up to twice; any other
# failure fails at once.
set -euo pipefail
cd "$(dirname "$0")/.."
fuzztime=${FUZZTIME:-5s}
minimizetime=${FUZZMINIMIZETIME:-1s}
found=0
log=$(mktemp)
trap 'rm -f "$log"' EXIT
while IFS=: read -r file name; do
	dir=$(dirname "$file")
	found=$((found + 1))
	for try in 1 2 3; do
		echo "fuzz $dir $name ($fuzztime)"
		if go test -run '^$' -fuzz "^${name}\$" -fuzztime "$fuzztime" -fuzzminimizetime "$minimizetime" "./$dir" 2>&1 | tee "$log"; then
			break
		fi
		if [ "$try" -lt 3 ] && grep -q '^    context deadline exceeded$' "$log" && ! grep -q 'Failing input written' "$log"; then
			echo "fuzz $dir $name: the coordinator's deadline race (golang/go#75804), no input found; running again"
			continue
		fi
		exit 1
	done
done < <(git ls-files '*_test.go' | xargs grep -o '^func Fuzz[A-Za-z0-9_]*' | sed 's/func //' | sort)
echo "$found fuzz targets passed"
