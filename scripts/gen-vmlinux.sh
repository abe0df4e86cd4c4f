#!/usr/bin/env bash
# Regenerates vmlinux/<arch>/vmlinux.h from the running kernel's BTF. CO-RE relocates field
# offsets at load time, so the header only needs regenerating to use types or fields that the
# committed one lacks.
set -euo pipefail

readonly BTF=/sys/kernel/btf/vmlinux

die() {
	echo "gen-vmlinux: $*" >&2
	exit 1
}

# Named like Rust's target_arch, which build.rs uses to pick the directory.
case "$(uname -m)" in
x86_64) arch=x86_64 ;;
aarch64) arch=aarch64 ;;
*) die "unsupported architecture $(uname -m)" ;;
esac
[[ -r $BTF ]] || die "$BTF not readable: the kernel lacks CONFIG_DEBUG_INFO_BTF"
command -v bpftool >/dev/null || die "bpftool not found (scripts/setup.sh installs it)"

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
out=$root/vmlinux/$arch/vmlinux.h
mkdir -p "$(dirname "$out")"
# Written beside the target and renamed, so a failed dump never leaves a truncated header.
tmp=$(mktemp "$out.XXXXXX")
trap 'rm -f "$tmp"' EXIT
bpftool btf dump file "$BTF" format c >"$tmp"
chmod 644 "$tmp"
mv "$tmp" "$out"
echo "wrote ${out#"$root"/} from kernel $(uname -r)"
