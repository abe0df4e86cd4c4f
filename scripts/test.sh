#!/usr/bin/env bash
# The test command: prepares the machine (scripts/setup.sh), runs the static gates, then every
# test, and last the VM tier (scripts/vmtest-tier.sh: a smoke subset of the privileged tests on
# Debian's 6.1 and 6.12 kernels under qemu; EBPFSENTINEL_VM_TIER=on|off, on by default under
# CI=true). Run as root: the kernel tiers (BPF_PROG_TEST_RUN tables, netns labs) need CAP_BPF
# and CAP_NET_ADMIN, and with CI=true they fail instead of skipping.
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
scripts/vmtest-tier.sh
