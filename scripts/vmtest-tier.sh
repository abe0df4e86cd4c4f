#!/usr/bin/env bash
# The VM tier: a smoke subset of the privileged tests (BPF_PROG_TEST_RUN verdict tables of every
# program, one netns lab that loads and attaches on a veth pair) on Debian's own kernels, each
# booted under qemu (TCG) by scripts/vmtest.sh. The test binaries are built on the host; the
# guests run them from the shared root, as root, with CI=true and --test-threads=1, one process
# per test. scripts/test.sh runs this last; docs/kernels.md has what the full suite does on
# each kernel.
#
# Usage: scripts/vmtest-tier.sh [--list]
#   --list  print the tests and the kernels, change nothing
#
# Environment:
#   EBPFSENTINEL_VM_TIER      on | off; default on under CI=true, off otherwise. When on, not
#                             being able to run (no qemu, no kernel download) is a failure.
#   EBPFSENTINEL_VM_KERNELS   what scripts/vmtest.sh boots (default "6.1 6.12": the newest
#                             generic -amd64-unsigned package of each series apt offers)
#   EBPFSENTINEL_VM_PARALLEL  1: the kernels one after the other; 2 (default): both at once
#   EBPFSENTINEL_VM_TIMEOUT   seconds per guest, boot included (default 900)
#   EBPFSENTINEL_VM_TEST_TIMEOUT  seconds per test inside the guest (default 300)
#   EBPFSENTINEL_VM_CPUS      guest vCPUs (default 2)
#   EBPFSENTINEL_VM_TESTS     replaces the test list below (same format, lines or ;-separated)
#
# Ends with one line per kernel and test, then "vm-tier: N passed, N failed" (tests; a kernel
# that could not be prepared or booted counts one failure per test it did not run). Exits 1 if
# anything failed. A guest that fails to boot (scripts/vmtest.sh exit 125, before any test
# started) is booted once more; a failed or timed-out test is never retried.
set -euo pipefail
cd "$(dirname "$0")/.."

# The smoke subset. Columns: BINARY TEST [MIN_KERNEL]. TEST is an exact libtest name, or ~ERE
# for every test of the binary whose name matches ERE (for a binary still being written). A
# binary marked ? is optional: skipped, and said so, while its tests/*.rs does not exist.
# MIN_KERNEL: run only on kernels at least that new. Under TCG every test pays ~10 s to create
# the rate limiter's 1M-entry LRU_PERCPU_HASH (each Firewall load), so the set stays small.
# Seconds: time in the guest, measured with both kernels booted at once on this 2-core host
# (6.1 / 6.12; scripts/vmtest-tier.sh prints them each run).
readonly TESTS='
xdp_firewall    spamhaus_example_verdicts
xdp_firewall    every_match_field
xdp_ratelimit   keys_policies_families_and_actions
tc_conntrack    drop_new_inbound_lets_replies_in
tc_conntrack    tcp_handshake_data_and_teardown_from_either_side
?tc_threatintel ~verdicts
lab_conntrack   drop_new_inbound_allow_established_with_clsact
lab_conntrack   drop_new_inbound_allow_established_with_tcx  6.6
'

tier=${EBPFSENTINEL_VM_TIER:-}
if [[ -z $tier ]]; then
	tier=off
	[[ ${CI:-} == true ]] && tier=on
fi
tests=$(tr ';' '\n' <<<"${EBPFSENTINEL_VM_TESTS:-$TESTS}")
read -r -a kernels <<<"${EBPFSENTINEL_VM_KERNELS:-6.1 6.12}"
parallel=${EBPFSENTINEL_VM_PARALLEL:-2}
vm_timeout=${EBPFSENTINEL_VM_TIMEOUT:-900}
test_timeout=${EBPFSENTINEL_VM_TEST_TIMEOUT:-300}
cpus=${EBPFSENTINEL_VM_CPUS:-2}

if [[ ${1:-} == --list ]]; then
	echo "kernels: ${kernels[*]}"
	sed '/^$/d' <<<"$tests"
	exit 0
fi
[[ $# -eq 0 ]] || {
	echo "usage: $0 [--list]" >&2
	exit 2
}
case $tier in
on) ;;
off)
	echo "== vm tier: off (EBPFSENTINEL_VM_TIER=on boots ${kernels[*]} under qemu; on by default under CI=true)"
	echo "vm-tier: 0 passed, 0 failed (off)"
	exit 0
	;;
*)
	echo "EBPFSENTINEL_VM_TIER must be on or off, not '$tier'" >&2
	exit 2
	;;
esac
[[ $parallel =~ ^[12]$ ]] || {
	echo "EBPFSENTINEL_VM_PARALLEL must be 1 or 2" >&2
	exit 2
}

how=" one after the other"
((parallel == 2)) && how=" in parallel"
((${#kernels[@]} > 1)) || how=
echo "== vm tier: ${kernels[*]} under qemu (TCG)${how:+,$how}"
tier_start=$(date +%s)
out=target/vm-tier
rm -rf "$out"
mkdir -p "$out"

# --- the test executables ----------------------------------------------------------------

# After scripts/test.sh's `cargo test --all-targets` this only lists what is already built.
echo "== vm tier: cargo test --no-run --all-targets"
if ! cargo test --no-run --quiet --all-targets --message-format=json >"$out/build.json"; then
	echo "vm tier: cargo test --no-run --all-targets failed (the compiler's messages are in $out/build.json)" >&2
	echo "vm-tier: 0 passed, 1 failed (build)"
	exit 1
fi
# path of the integration-test executable NAME (empty if there is none); cargo prints one JSON
# object per line, target before executable
test_exe() {
	grep -F '"reason":"compiler-artifact"' "$out/build.json" |
		grep -F "\"kind\":[\"test\"],\"crate_types\":[\"bin\"],\"name\":\"$1\"," |
		sed -n 's/.*"executable":"\([^"]*\)".*/\1/p' | tail -1 || true
}

# the selection, resolved on the host: BINARY EXE TEST MIN_KERNEL
: >"$out/selection"
skipped_bins=()
while read -r bin test min; do
	[[ -n $bin ]] || continue
	optional=false
	[[ $bin == \?* ]] && optional=true bin=${bin#\?}
	exe=$(test_exe "$bin")
	if [[ -z $exe ]]; then
		if $optional && [[ ! -f tests/$bin.rs ]]; then
			skipped_bins+=("$bin")
			continue
		fi
		echo "vm tier: cargo built no test executable for $bin" >&2
		exit 1
	fi
	if [[ $test == ~* ]]; then
		names=$("$exe" --list --format=terse 2>/dev/null | sed -n 's/: test$//p' | grep -E -- "${test#\~}" || true)
		[[ -n $names ]] || names="no-test-matches:${test#\~}"
	else
		names=$test
	fi
	while read -r n; do
		printf '%s\t%s\t%s\t%s\n' "$bin" "$exe" "$n" "${min:--}" >>"$out/selection"
	done <<<"$names"
done <<<"$tests"
for b in "${skipped_bins[@]}"; do
	echo "== vm tier: tests/$b.rs does not exist: its tests are skipped"
done
ntests=$(wc -l <"$out/selection")

# --- one kernel -----------------------------------------------------------------------------

series_of() { # 6.1.0-56-amd64 -> 6.1, 6.12.117+deb12-amd64 -> 6.12
	sed -E 's/^([0-9]+\.[0-9]+).*/\1/' <<<"$1"
}
at_least() { # at_least VERSION MIN
	[[ $2 == - || $(printf '%s\n%s\n' "$2" "$1" | sort -V | head -1) == "$2" ]]
}

# Everything for one kernel, in $out/$k: prepared (download, extract), the plan filtered by
# MIN_KERNEL, the guest run (booted once more if the harness failed before any test started).
# Writes "vm" = PACKAGE VERSION KVER PREPARE_SECONDS GUEST_SECONDS GUEST_RC BOOTS.
run_kernel() {
	local k=$1 dir=$out/$1 t0 t1 info pkg=? ver=? kver=? rc boots=0
	mkdir -p "$dir"
	: >"$dir/results"
	t0=$(date +%s)
	for attempt in 1 2; do
		rc=0
		info=$(scripts/vmtest.sh --prepare "$k" 2>>"$dir/log") || rc=$?
		((rc == 0)) && break
		echo "vm tier: preparing $k failed (exit $rc)$( ((attempt == 1)) && echo "; trying once more")" >>"$dir/log"
	done
	t1=$(date +%s)
	if ((rc != 0)); then
		echo "? ? ? $((t1 - t0)) 0 prepare-$rc 0" >"$dir/vm"
		return
	fi
	read -r pkg ver kver _ <<<"$info"
	while IFS=$'\t' read -r bin exe test min; do
		if at_least "$(series_of "$kver")" "$min"; then
			printf '%s\t%s\t%s\n' "$bin" "$exe" "$test" >>"$dir/plan"
		else
			echo "$bin $test skipped 0 (needs $min)" >>"$dir/results"
		fi
	done <"$out/selection"
	while :; do
		boots=$((boots + 1))
		rc=0
		VMTEST_ENV="CI RUST_BACKTRACE EBPFSENTINEL_VM_TEST_TIMEOUT" EBPFSENTINEL_VM_TEST_TIMEOUT=$test_timeout \
			scripts/vmtest.sh -q -t "$vm_timeout" -c "$cpus" "$k" -- \
			scripts/vm/tier-guest.sh "$dir/plan" "$dir/guest-results" "$dir/progress" >>"$dir/log" 2>&1 || rc=$?
		if ((rc == 125 && boots == 1)) && [[ ! -s $dir/progress ]]; then
			echo "vm tier: $k: harness failure before any test started (exit 125): booting once more" >>"$dir/log"
			continue
		fi
		break
	done
	echo "$pkg $ver $kver $((t1 - t0)) $(($(date +%s) - t1)) $rc $boots" >"$dir/vm"
}

# live output, every line prefixed with its kernel
follow() {
	tail -n +1 -F --pid="$2" "$out/$1/log" 2>/dev/null | sed -u "s/^/[$1] /"
}

pids=()
for k in "${kernels[@]}"; do
	mkdir -p "$out/$k"
	: >"$out/$k/log"
	run_kernel "$k" &
	pid=$!
	follow "$k" "$pid" &
	if ((parallel == 2)); then
		pids+=("$pid")
	else
		wait "$pid" || true
		wait
	fi
done
for p in "${pids[@]}"; do wait "$p" || true; done
wait

# --- results --------------------------------------------------------------------------------

passed=0 failed=0 skipped=0
row() { printf '%-6s %-15s %-50s %8s  %s\n' "$@"; }
echo
echo "== vm tier results"
row kernel binary test seconds result
for k in "${kernels[@]}"; do
	dir=$out/$k
	read -r pkg ver kver prep_s guest_s vmrc boots <"$dir/vm"
	echo "-- $k: $pkg $ver ($kver): prepared in ${prep_s}s, guest ${guest_s}s, $boots boot(s)"
	[[ -f $dir/guest-results ]] && cat "$dir/guest-results" >>"$dir/results"
	declare -A seen=()
	while read -r bin test result secs rest; do
		seen["$bin $test"]=1
		case $result in
		ok) passed=$((passed + 1)) ;;
		skipped) skipped=$((skipped + 1)) result="skipped $rest" ;;
		*) failed=$((failed + 1)) ;;
		esac
		row "$k" "$bin" "$test" "$secs" "$result"
	done <"$dir/results"
	# what the guest never reached: the test it was in when the VM died or timed out, the rest
	current=$(tail -n 1 "$dir/progress" 2>/dev/null || true)
	why=
	case $vmrc in
	prepare-*) why="kernel not prepared (scripts/vmtest.sh --prepare exit ${vmrc#prepare-}: download or install failed)" ;;
	124) why="guest timed out after ${vm_timeout}s" ;;
	125) why="harness failure (guest did not boot or died)" ;;
	esac
	while IFS=$'\t' read -r bin exe test min; do
		[[ -z ${seen["$bin $test"]:-} ]] || continue
		[[ $kver == "?" ]] || at_least "$(series_of "$kver")" "$min" || continue
		failed=$((failed + 1))
		if [[ "$bin $test" == "$current" ]]; then
			row "$k" "$bin" "$test" - "FAILED: ${why:-guest exit $vmrc} during this test"
		else
			row "$k" "$bin" "$test" - "NOT RUN: ${why:-guest exit $vmrc}"
		fi
	done <"$out/selection"
	unset seen
	if [[ -n $why ]]; then
		echo "vm tier: $k: $why; the guest's last words (see $dir/log):"
		tail -n 15 "$dir/log" | sed 's/^/    /'
	fi
done
echo "vm tier wall time: $(($(date +%s) - tier_start))s (logs in $out/)"
summary="vm-tier: $passed passed, $failed failed"
((skipped == 0)) || summary+=", $skipped skipped"
((${#skipped_bins[@]} == 0)) || summary+=" (no tests/${skipped_bins[*]}.rs)"
echo "$summary"
((failed == 0 && ntests > 0))
