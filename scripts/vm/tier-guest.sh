#!/bin/bash
# Runs inside a scripts/vmtest.sh guest for scripts/vmtest-tier.sh: the tests listed in PLAN,
# one process per test (`BINARY --exact TEST --test-threads=1`), as root with CI=true (a test
# that cannot get its privileges fails instead of skipping). Each test's output streams
# through. Before a test starts, PROGRESS gets "BINARY TEST"; when it ends, RESULTS gets
# "BINARY TEST RESULT SECONDS", RESULT one of ok, FAILED, TIMEOUT, NOT-RUN (the filter matched
# no test: renamed or removed). Exits 1 if any test did not pass.
#
# Usage: tier-guest.sh PLAN RESULTS PROGRESS
#   PLAN lines: BINARY<TAB>EXECUTABLE<TAB>TEST
# Environment: EBPFSENTINEL_VM_TEST_TIMEOUT seconds per test (default 300)
set -uo pipefail
plan=$1 results=$2 progress=$3
: >"$results"
: >"$progress"
export CI=true RUST_BACKTRACE=${RUST_BACKTRACE:-1}
per_test=${EBPFSENTINEL_VM_TEST_TIMEOUT:-300}
echo "== guest: kernel $(uname -r), $(nproc) vCPUs, $(awk '/MemTotal/ { print int($2 / 1024) }' /proc/meminfo) MiB"
bad=0
while IFS=$'\t' read -r bin exe test; do
	[[ -n $bin ]] || continue
	echo "== $bin $test ($(uname -r))"
	echo "$bin $test" >>"$progress"
	log=/tmp/tier-$bin-$test.log
	start=$(date +%s.%N)
	timeout -k 10 "$per_test" "$exe" --exact --test-threads=1 "$test" 2>&1 | tee "$log"
	rc=${PIPESTATUS[0]}
	secs=$(awk -v s="$start" -v e="$(date +%s.%N)" 'BEGIN { printf "%.1f", e - s }')
	if ((rc == 124 || rc == 137)); then
		result=TIMEOUT
		echo "== $bin $test: timed out after ${per_test}s"
	elif ((rc != 0)); then
		result=FAILED
	elif grep -qE '^test result: ok\. 1 passed' "$log"; then
		result=ok
	else
		result=NOT-RUN
		echo "== $bin $test: no such test in $exe"
	fi
	[[ $result == ok ]] || bad=1
	echo "$bin $test $result $secs" >>"$results"
done <"$plan"
exit "$bad"
