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
#   EBPFSENTINEL_VM_PARALLEL  guests booted at once (default: one per host CPU, at most one per
#                             kernel; 1 runs the kernels one after the other)
#   EBPFSENTINEL_VM_CPUS      vCPUs per guest (default: the host CPUs shared out among the
#                             parallel guests, 1 or 2). Under TCG each vCPU is a host thread.
#                             Measured on this 2-CPU host: both kernels at once with 1 vCPU
#                             each 304 s, with 2 vCPUs each 309 s; one after the other (2 vCPUs,
#                             before tc_scrub joined the list) 454 s.
#   EBPFSENTINEL_VM_TIMEOUT   seconds per guest, boot included (default 900)
#   EBPFSENTINEL_VM_TEST_TIMEOUT  seconds per test inside the guest (default 300)
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
# MIN_KERNEL: run only on kernels at least that new (TCX came with 6.6).
# Under TCG every Firewall load pays ~10 s to create the rate limiter's 1M-entry
# LRU_PERCPU_HASH, so the set stays small: one verdict table per program and one lab.
# Seconds in the guest, both kernels at once with 1 vCPU each on this 2-CPU host (6.1 / 6.12):
#   xdp_firewall   spamhaus_example_verdicts                            25 / 26
#   xdp_firewall   every_match_field                                    25 / 32
#   xdp_ratelimit  keys_policies_families_and_actions                   20 / 20
#   tc_conntrack   drop_new_inbound_lets_replies_in (2 loads)           39 / 34
#   tc_conntrack   tcp_handshake_data_and_teardown_... (4 loads)        71 / 70
#   tc_threatintel ioc_verdicts_by_action_family_and_side               21 / 16
#   tc_scrub       everything_at_once_on_a_syn                          19 / 16
#   lab_conntrack  drop_new_inbound_allow_established_with_clsact       34 / 33
#   lab_conntrack  drop_new_inbound_allow_established_with_tcx           - / 40
# Guests 270 s / 303 s; the whole tier about 5 minutes, 15 s more when both kernels must be
# downloaded and prepared first.
readonly TESTS='
xdp_firewall    spamhaus_example_verdicts
xdp_firewall    every_match_field
xdp_ratelimit   keys_policies_families_and_actions
tc_conntrack    drop_new_inbound_lets_replies_in
tc_conntrack    tcp_handshake_data_and_teardown_from_either_side
?tc_threatintel ioc_verdicts_by_action_family_and_side
tc_scrub        everything_at_once_on_a_syn
tc_ids          drops_the_marker_and_passes_the_rest
tc_dns          verdicts_by_name_family_transport_and_hook
xdp_lb          vip_hits_go_to_a_backend_with_valid_checksums
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
host_cpus=$(nproc)
parallel=${EBPFSENTINEL_VM_PARALLEL:-$((host_cpus < ${#kernels[@]} ? host_cpus : ${#kernels[@]}))}
vm_timeout=${EBPFSENTINEL_VM_TIMEOUT:-900}
test_timeout=${EBPFSENTINEL_VM_TEST_TIMEOUT:-300}

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
[[ $parallel =~ ^[1-9][0-9]*$ ]] || {
	echo "EBPFSENTINEL_VM_PARALLEL must be a positive number" >&2
	exit 2
}
cpus=${EBPFSENTINEL_VM_CPUS:-$((host_cpus / parallel >= 2 ? 2 : 1))}

echo "== vm tier: ${kernels[*]} under qemu (TCG), $parallel guest(s) at a time, $cpus vCPU(s) each"
out=target/vm-tier
# one tier run at a time in this tree: a second one would share $out and halve the CPU
mkdir -p target
exec {lock}>target/vm-tier.lock
if ! flock -n "$lock"; then
	echo "== vm tier: waiting for the other scripts/vmtest-tier.sh run in this tree"
	flock "$lock"
fi
tier_start=$(date +%s)
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
			echo "$bin $test skipped - (needs $min)" >>"$dir/results"
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

# A TERM or INT for this script alone (a CI runner's timeout may send it to one pid) ends the
# guests too: every descendant of the kernel jobs, deepest first (scripts/vmtest.sh's own traps
# then end its qemu and clean up).
kill_tree() {
	local f line rest ppid
	for f in /proc/[0-9]*/stat; do
		read -r line 2>/dev/null <"$f" || continue
		rest=${line##*) }
		read -r _ ppid _ <<<"$rest"
		((ppid == $1)) || continue
		f=${f#/proc/}
		kill_tree "${f%/stat}"
	done
	kill -TERM "$1" 2>/dev/null || true
}
active=()
stop() {
	trap - INT TERM
	echo "vm tier: stopped: ending the guests" >&2
	for p in "${active[@]}"; do kill_tree "$p"; done
	wait
	exit "$1"
}
trap 'stop 130' INT
trap 'stop 143' TERM
for k in "${kernels[@]}"; do
	# at most $parallel guests at once
	while :; do
		still=()
		for p in "${active[@]}"; do
			kill -0 "$p" 2>/dev/null && still+=("$p")
		done
		active=("${still[@]}")
		((${#active[@]} < parallel)) && break
		sleep 1
	done
	mkdir -p "$out/$k"
	: >"$out/$k/log"
	run_kernel "$k" &
	active+=("$!")
	follow "$k" "$!" &
done
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
	declare -A result=() secs=()
	while read -r bin test r t rest; do
		result["$bin $test"]="$r${rest:+ $rest}" secs["$bin $test"]=$t
	done < <(cat "$dir/results" "$dir/guest-results" 2>/dev/null)
	# a test without a result: the one the guest was in when it died or timed out, or one
	# it never reached
	current=$(tail -n 1 "$dir/progress" 2>/dev/null || true)
	why=
	case $vmrc in
	prepare-*) why="kernel not prepared (scripts/vmtest.sh --prepare exit ${vmrc#prepare-}: download or install failed)" ;;
	124) why="guest timed out after ${vm_timeout}s" ;;
	125) why="harness failure (the guest did not boot, or died)" ;;
	esac
	while IFS=$'\t' read -r bin exe test min; do
		key="$bin $test"
		r=${result[$key]:-}
		if [[ -z $r ]]; then
			failed=$((failed + 1))
			if [[ $key == "$current" ]]; then
				row "$k" "$bin" "$test" - "FAILED: ${why:-guest exit $vmrc} during this test"
			else
				row "$k" "$bin" "$test" - "NOT RUN: ${why:-guest exit $vmrc}"
			fi
			continue
		fi
		case $r in
		ok) passed=$((passed + 1)) ;;
		skipped*) skipped=$((skipped + 1)) ;;
		*) failed=$((failed + 1)) ;;
		esac
		row "$k" "$bin" "$test" "${secs[$key]}" "$r"
	done <"$out/selection"
	unset result secs
	if [[ -n $why ]]; then
		echo "vm tier: $k: $why; the end of its log ($dir/log):"
		tail -n 15 "$dir/log" | sed 's/^/    /'
	fi
done
echo "vm tier wall time: $(($(date +%s) - tier_start))s (logs in $out/)"
summary="vm-tier: $passed passed, $failed failed"
((skipped == 0)) || summary+=", $skipped skipped"
((${#skipped_bins[@]} == 0)) || summary+=" (no tests/${skipped_bins[*]}.rs)"
echo "$summary"
((failed == 0 && ntests > 0))
