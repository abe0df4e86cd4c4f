#!/usr/bin/env bash
# Benchmarks through BPF_PROG_TEST_RUN (release build): every figure is printed with its ratio
# to the floor program measured in the same run. Results also go to target/bench/*.json.
# Usage: scripts/bench.sh [all|firewall|ratelimit|conntrack|threatintel|scrub|reload|events] [extra `ebpfsentinel bench` flags]
# `all` (the default) writes target/bench/bench.json and the Markdown report target/bench/bench.md.
set -euo pipefail
cd "$(dirname "$0")/.."
[[ $EUID -eq 0 ]] || {
	echo "bench: run as root (BPF_PROG_TEST_RUN needs CAP_BPF)" >&2
	exit 1
}
scripts/setup.sh
cargo build --release --quiet
mkdir -p target/bench
what=${1:-all}
shift || true
if [[ $what == all ]]; then
	exec target/release/ebpfsentinel bench all --out target/bench "$@"
fi
exec target/release/ebpfsentinel bench "$what" --json "target/bench/$what.json" "$@"
