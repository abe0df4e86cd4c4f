#!/usr/bin/env bash
# Formats the BPF C sources and the headers they share with userspace per .clang-format.
#
# Usage: scripts/fmt-bpf.sh [--check]
#   --check  change nothing; list unformatted code and exit non-zero if there is any
# CLANG_FORMAT overrides the binary; other versions than 19 may format differently.
set -euo pipefail

clang_format=${CLANG_FORMAT:-clang-format-19}
case "${1:-}" in
'') mode=(-i) ;;
--check) mode=(--dry-run -Werror) ;;
*)
	echo "usage: $0 [--check]" >&2
	exit 2
	;;
esac
if ! command -v "$clang_format" >/dev/null; then
	echo "fmt-bpf: $clang_format not found (scripts/setup.sh installs it)" >&2
	exit 1
fi

cd "$(dirname "${BASH_SOURCE[0]}")/.."
shopt -s nullglob
files=(bpf/*.c bpf/lib/*.h include/*.h include/abi/*.h)
((${#files[@]} > 0)) || exit 0
"$clang_format" "${mode[@]}" "${files[@]}"
