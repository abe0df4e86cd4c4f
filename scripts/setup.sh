#!/usr/bin/env bash
# Makes a Debian 12 machine (root, Rust toolchain already installed) ready to build and test
# ebpfsentinel: clang-19 compiles the BPF programs, libelf/zlib/pkg-config/make/gcc build the
# vendored libbpf, iproute2/bpftool/tcpdump drive and inspect the tests, and bpffs holds pinned
# maps. Safe to rerun: it only acts on what is missing.
#
# Usage: scripts/setup.sh [--check]
#   --check  report what is missing, change nothing, exit 1 if anything is (needs no root)
set -euo pipefail

readonly PACKAGES=(clang-19 clang-format-19 libelf-dev zlib1g-dev pkg-config make gcc iproute2
	bpftool tcpdump)
readonly BPFFS=/sys/fs/bpf

die() {
	echo "setup: $*" >&2
	exit 1
}

check_only=false
case "${1:-}" in
'') ;;
--check) check_only=true ;;
*)
	echo "usage: $0 [--check]" >&2
	exit 2
	;;
esac

command -v dpkg-query >/dev/null || die "dpkg-query not found: this script targets Debian 12"
if ! $check_only && [[ $EUID -ne 0 ]]; then
	die "must run as root (it installs packages and mounts bpffs); --check works without"
fi

# One dpkg-query for all packages keeps the no-op run fast. Unknown packages make it exit 1,
# which only means they are missing.
installed=$(dpkg-query -W -f='${Package} ${db:Status-Abbrev}\n' "${PACKAGES[@]}" 2>/dev/null || true)
missing=()
for pkg in "${PACKAGES[@]}"; do
	grep -qxF "$pkg ii " <<<"$installed" || missing+=("$pkg")
done

bpffs_mounted() {
	[[ -d $BPFFS && "$(stat -f -c %T "$BPFFS")" == bpf_fs ]]
}

if $check_only; then
	status=0
	for pkg in "${missing[@]}"; do
		echo "missing package: $pkg"
		status=1
	done
	if ! bpffs_mounted; then
		echo "bpffs not mounted on $BPFFS"
		status=1
	fi
	((status == 0)) && echo "setup: nothing missing"
	exit "$status"
fi

acted=false
if ((${#missing[@]} > 0)); then
	acted=true
	echo "apt-get update"
	apt-get update -qq
	echo "installing ${missing[*]}"
	DEBIAN_FRONTEND=noninteractive apt-get install -qq -y --no-install-recommends "${missing[@]}" \
		>/dev/null
fi

if ! bpffs_mounted; then
	acted=true
	echo "mounting bpffs on $BPFFS"
	mkdir -p "$BPFFS"
	mount -t bpf bpf "$BPFFS" || die "cannot mount bpffs on $BPFFS (a container without CAP_SYS_ADMIN?)"
fi

$acted || echo "setup: nothing to do"
