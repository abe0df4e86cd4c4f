#!/usr/bin/env bash
# The test command: prepares the machine (scripts/setup.sh), runs the static gates, then every
# test. Run as root: the kernel tiers (BPF_PROG_TEST_RUN tables, netns labs) need CAP_BPF and
# CAP_NET_ADMIN, and with CI=true they fail instead of skipping.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/setup.sh
echo "== cargo fmt --check"
cargo fmt --check
echo "== clang-format (bpf/, include/)"
scripts/fmt-bpf.sh --check
echo "== cargo clippy --all-targets -- -D warnings"
cargo clippy --quiet --all-targets -- -D warnings
echo "== cargo test"
cargo test --all-targets
