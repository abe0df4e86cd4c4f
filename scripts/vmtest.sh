#!/usr/bin/env bash
# Runs one command as root inside a stock Debian kernel booted under qemu (TCG), with this
# machine's root filesystem as the guest's root (read-only 9p + a tmpfs overlay: writes are
# thrown away) and the current directory shared read-write at the same path.
#
# Usage: scripts/vmtest.sh [options] KERNEL -- CMD [ARG...]
#
#   KERNEL  an apt package name (linux-image-6.1.0-56-amd64-unsigned), a series (6.1, 6.12,
#           5.10: the newest generic -amd64-unsigned package of it that apt offers), or a .deb
#           path. Packages apt does not know (5.10 from bullseye, bookworm-backports) come from a
#           private apt config in the cache dir; the system's apt sources are left alone.
#
# Options:
#   -t SECS           give up after SECS (default 600): exit 124
#   -m MEM            guest memory (default 2G)
#   -c CPUS           guest vCPUs (default 2)
#   -v                print the guest console log on exit
#   -q                no "vmtest: booting ..." line on stderr
#   --pc              boot the i440fx machine (SeaBIOS, virtio-pci) instead of microvm
#   --keep-mitigations  boot without mitigations=off
#   --prepare         only download and prepare KERNEL (no CMD), print its package line
#
# CMD runs in the same directory, as root, with PATH, HOME, LANG and the variables named in
# VMTEST_ENV (default "CI RUST_BACKTRACE RUST_LOG") passed in. Its stdout and stderr stream to
# ours; the exit code is CMD's, 124 on timeout, 125 when the harness failed (the last console
# lines are printed then).
#
# The guest has: bpffs on /sys/fs/bpf, tmpfs on /run (/var/run -> /run, so `ip netns` works)
# and /tmp, cgroup2, debugfs, tracefs, lo up, the guest kernel's modules on /lib/modules with
# autoload working (veth, sch_ingress, cls_bpf...), and every host tool (ip, tc, bash...).
# No network but lo.
#
# Environment:
#   VMTEST_CACHE   downloads and prepared kernels (default ${XDG_CACHE_HOME:-/var/cache}/ebpfsentinel-vmtest)
#   VMTEST_APPEND  extra kernel command line arguments
#   VMTEST_ENV     names of host variables passed to CMD
#
# Needs root (installs qemu-system-x86, busybox-static, xz-utils, cpio, kmod when missing).
# KVM is not used: on this machine class /dev/kvm is PVM-backed and cannot boot stock kernels.
set -euo pipefail

readonly SELF_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
readonly VM_DIR=$SELF_DIR/vm
readonly CACHE=${VMTEST_CACHE:-${XDG_CACHE_HOME:-/var/cache}/ebpfsentinel-vmtest}
readonly PACKAGES=(qemu-system-x86 busybox-static xz-utils cpio kmod)
# Modules the initramfs loads itself (and their dependencies): the virtio transports of both
# machine types, 9p and overlayfs. Everything else autoloads from the guest root.
readonly INITRD_MODULES=(virtio_mmio virtio_pci 9pnet_virtio 9p overlay)
readonly MSIZE=262144

die() {
	echo "vmtest: $*" >&2
	exit 125
}

usage() {
	sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}" >&2
	exit 125
}

timeout_s=600 mem=2G cpus=2 verbose=false quiet=false machine=microvm mitigations=off
prepare_only=false
while (($#)); do
	case $1 in
	-t) timeout_s=${2:?}; shift 2 ;;
	-m) mem=${2:?}; shift 2 ;;
	-c) cpus=${2:?}; shift 2 ;;
	-v) verbose=true; shift ;;
	-q) quiet=true; shift ;;
	--pc) machine=pc; shift ;;
	--keep-mitigations) mitigations=on; shift ;;
	--prepare) prepare_only=true; shift ;;
	-h | --help) usage ;;
	--) die "KERNEL missing before --" ;;
	-*) die "unknown option $1 (see --help)" ;;
	*) break ;;
	esac
done
(($# >= 1)) || usage
kernel_arg=$1
shift
if ! $prepare_only; then
	[[ ${1:-} == -- ]] || die "expected -- after KERNEL"
	shift
	(($# >= 1)) || die "no command given after --"
fi
[[ $timeout_s =~ ^[0-9]+$ ]] || die "-t wants seconds"
[[ $EUID -eq 0 ]] || die "must run as root (qemu's 9p export of / and the package installs need it)"

mkdir -p "$CACHE"

# --- host packages -------------------------------------------------------------------------

ensure_packages() {
	local installed missing=() pkg
	installed=$(dpkg-query -W -f='${Package} ${db:Status-Abbrev}\n' "${PACKAGES[@]}" 2>/dev/null || true)
	for pkg in "${PACKAGES[@]}"; do
		grep -qxF "$pkg ii " <<<"$installed" || missing+=("$pkg")
	done
	((${#missing[@]} == 0)) && return
	echo "vmtest: installing ${missing[*]}" >&2
	with_lock apt _ensure_packages "${missing[@]}"
}
_ensure_packages() {
	DEBIAN_FRONTEND=noninteractive apt-get install -qq -y --no-install-recommends "$@" >/dev/null ||
		{ apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -qq -y \
			--no-install-recommends "$@" >/dev/null; } || die "cannot install $*"
}

# with_lock NAME CMD...: CMD under an exclusive lock in the cache dir, so that parallel runs
# neither fight over apt nor prepare the same kernel twice.
with_lock() {
	local name=$1 fd
	shift
	exec {fd}>"$CACHE/.$name.lock"
	flock "$fd"
	"$@"
	local rc=$?
	exec {fd}>&-
	return "$rc"
}

# --- apt: system sources first, then a private config for bullseye / backports ------------

readonly EXTRA_APT=$CACHE/apt-extra
extra_apt() {
	APT_CONFIG=$EXTRA_APT/apt.conf "$@"
}
_setup_extra_apt() {
	if [[ -f $EXTRA_APT/apt.conf && -n $(find "$EXTRA_APT/lists" -maxdepth 1 -name '*_Packages*' -mmin -1440 2>/dev/null) ]]; then
		return
	fi
	mkdir -p "$EXTRA_APT/lists/partial" "$EXTRA_APT/cache/archives/partial"
	local key=/usr/share/keyrings/debian-archive-keyring.gpg
	cat >"$EXTRA_APT/sources.list" <<-EOF
		deb [signed-by=$key] http://deb.debian.org/debian bullseye main
		deb [signed-by=$key] http://deb.debian.org/debian-security bullseye-security main
		deb [signed-by=$key] http://deb.debian.org/debian bookworm-backports main
	EOF
	cat >"$EXTRA_APT/apt.conf" <<-EOF
		Dir::Etc::SourceList "$EXTRA_APT/sources.list";
		Dir::Etc::SourceParts "/dev/null";
		Dir::State::Lists "$EXTRA_APT/lists";
		Dir::Cache "$EXTRA_APT/cache";
		Acquire::Languages "none";
		APT::Sandbox::User "root";
	EOF
	echo "vmtest: apt-get update (private config: bullseye, bullseye-security, bookworm-backports)" >&2
	extra_apt apt-get update -qq >&2 || die "apt-get update with $EXTRA_APT/apt.conf failed"
}
_system_apt_update() {
	echo "vmtest: apt-get update" >&2
	apt-get update -qq >&2 || die "apt-get update failed"
}

# apt-cache with a binary cache of its own: this image's apt config turns the shared one off,
# which makes every apt-cache call re-read all package lists (about a second each)
apt_cache() {
	local bin=$CACHE/apt-pkgcache.bin
	[[ ${1:-} == extra_apt ]] && bin=$EXTRA_APT/pkgcache.bin
	"$@" -o Dir::Cache::pkgcache="$bin" -o Dir::Cache::srcpkgcache=
}

# candidate VERSION of a package for an apt command prefix ("" or extra_apt); empty if none
candidate() {
	local v
	v=$(apt_cache "${@:2}" apt-cache policy "$1" 2>/dev/null | sed -n 's/^  Candidate: //p')
	[[ $v == "(none)" ]] && v=
	echo "$v"
}

# newest generic -amd64-unsigned package of a series (6.1, 6.12, 5.10) with a candidate
newest_of_series() {
	local series=$1 re names n
	re="^linux-image-${series//./\\.}\\.[0-9]+(-[0-9]+|\\+deb[0-9]+)-amd64-unsigned\$"
	names=$(apt_cache "${@:2}" apt-cache pkgnames "linux-image-$series." 2>/dev/null | grep -E "$re" | sort -rV || true)
	for n in $names; do
		[[ -n $(candidate "$n" "${@:2}") ]] && { echo "$n"; return; }
	done
}

# Sets pkg, ver and apt_prefix (the apt command prefix that knows pkg) for a package or series.
resolve_package() {
	local want=$1 updated=false
	apt_prefix=()
	while :; do
		if [[ $want =~ ^[0-9]+\.[0-9]+$ ]]; then
			pkg=$(newest_of_series "$want")
			[[ -z $pkg ]] && pkg=$(with_lock apt _setup_extra_apt && newest_of_series "$want" extra_apt) &&
				[[ -n $pkg ]] && apt_prefix=(extra_apt)
		else
			pkg=$want
			if [[ -z $(candidate "$pkg") ]]; then
				with_lock apt _setup_extra_apt
				[[ -n $(candidate "$pkg" extra_apt) ]] && apt_prefix=(extra_apt)
			fi
		fi
		[[ -n $pkg ]] && ver=$(candidate "$pkg" "${apt_prefix[@]}") && [[ -n $ver ]] && return 0
		$updated && return 1
		updated=true
		with_lock apt _system_apt_update
	done
}

download_deb() {
	local out=$CACHE/debs
	mkdir -p "$out"
	(cd "$out" && "${apt_prefix[@]}" apt-get download -qq -o APT::Sandbox::User=root "$pkg=$ver" >&2)
	deb=$(ls "$out/${pkg}_${ver//:/%3a}_"*.deb 2>/dev/null | head -1)
	[[ -n $deb ]]
}

# --- kernel preparation -------------------------------------------------------------------

# Decompresses a bzImage into the ELF vmlinux that qemu boots through its PVH note (skips
# SeaBIOS and the decompressor: about 2x faster under TCG).
extract_vmlinux() {
	local bz=$1 out=$2 setup_sects off len magic
	setup_sects=$(od -An -tu1 -j $((0x1f1)) -N1 "$bz" | tr -d ' ')
	((setup_sects == 0)) && setup_sects=4
	off=$(od -An -tu4 -j $((0x248)) -N4 "$bz" | tr -d ' ')
	len=$(od -An -tu4 -j $((0x24c)) -N4 "$bz" | tr -d ' ')
	off=$(((setup_sects + 1) * 512 + off))
	magic=$(od -An -tx1 -j "$off" -N6 "$bz" | tr -d ' ')
	local dec
	case $magic in
	fd377a585a00) dec=(xz -dc) ;;
	1f8b*) dec=(gzip -dc) ;;
	28b52ffd*) dec=(zstd -dc) ;;
	*) die "$bz: unknown payload compression (magic $magic)" ;;
	esac
	tail -c +$((off + 1)) "$bz" | head -c "$len" | "${dec[@]}" >"$out" 2>/dev/null || true
	[[ $(od -An -tx1 -N4 "$out" | tr -d ' ') == 7f454c46 ]] || die "$bz: payload is not an ELF vmlinux"
}

# dpkg -x, depmod, vmlinux. The .deb is removed afterwards: the prepared tree is the cache.
_prepare_kernel() {
	local deb=$1 dir=$2 tmp kver moddir
	[[ -f $dir/ready ]] && return
	tmp=$dir.tmp.$$
	rm -rf "$tmp" && mkdir -p "$tmp"
	echo "vmtest: preparing $(basename "$deb")" >&2
	dpkg -x "$deb" "$tmp/root"
	# merged /usr packages put modules in usr/lib/modules; depmod -b and the guest want lib/modules
	if [[ ! -d $tmp/root/lib/modules && -d $tmp/root/usr/lib/modules ]]; then
		mkdir -p "$tmp/root/lib" && mv "$tmp/root/usr/lib/modules" "$tmp/root/lib/modules"
	fi
	kver=$(ls "$tmp/root/lib/modules")
	[[ $kver != *$'\n'* && -n $kver ]] || die "$deb: expected one lib/modules/<version>"
	moddir=$tmp/root/lib/modules/$kver
	# Subsystems that a network dataplane test can never use in this guest: dropping them
	# roughly halves the prepared tree. depmod below indexes what is left.
	rm -rf "$moddir"/kernel/{sound,drivers/{gpu,media,infiniband,net/wireless,staging,usb,scsi,iio,hid,input,bluetooth,isdn,comedi,video,mmc,mtd}}
	rm -rf "$moddir"/kernel/net/{bluetooth,wireless,mac80211}
	depmod -b "$tmp/root" "$kver"
	extract_vmlinux "$(ls "$tmp"/root/boot/vmlinuz-*)" "$tmp/vmlinux"
	rm -f "$tmp"/root/boot/vmlinuz-* "$tmp"/root/boot/System.map-*
	rm -rf "$tmp/root/usr/share"
	{
		echo "package=$(dpkg-deb -f "$deb" Package)"
		echo "version=$(dpkg-deb -f "$deb" Version)"
		echo "kver=$kver"
	} >"$tmp/info"
	touch "$tmp/ready"
	rm -rf "$dir"
	mv "$tmp" "$dir"
}

# A small initramfs: static busybox, the init script, the transport/9p/overlay modules in
# load order (.ko.xz/.ko.zst decompressed: busybox insmod reads plain .ko only). Rebuilt when
# the init script or the module list changes.
_build_initrd() {
	local dir=$1 kver out tmp m line f name
	kver=$(sed -n 's/^kver=//p' "$dir/info")
	out=$dir/initrd-$(cat "$VM_DIR/init" <(printf '%s\n' "${INITRD_MODULES[@]}") /bin/busybox | md5sum | cut -c1-12).cpio
	initrd=$out
	[[ -f $out ]] && return
	rm -f "$dir"/initrd-*.cpio
	tmp=$(mktemp -d)
	mkdir -p "$tmp"/{bin,dev,proc,sys,modules}
	cp /bin/busybox "$tmp/bin/busybox"
	cp "$VM_DIR/init" "$tmp/init"
	chmod 755 "$tmp/init"
	mknod -m 600 "$tmp/dev/console" c 5 1
	: >"$tmp/modules/order"
	for m in "${INITRD_MODULES[@]}"; do
		while read -r line; do
			[[ $line == insmod\ * ]] || continue
			f=${line#insmod }
			f=${f%% *}
			name=$(basename "$f")
			name=${name%.xz}
			name=${name%.zst}
			grep -qxF "$name" "$tmp/modules/order" && continue
			case $f in
			*.xz) xz -dc "$f" >"$tmp/modules/$name" ;;
			*.zst) zstd -qdc "$f" >"$tmp/modules/$name" ;;
			*) cp "$f" "$tmp/modules/$name" ;;
			esac
			echo "$name" >>"$tmp/modules/order"
		done < <(modprobe -d "$dir/root" -S "$kver" --show-depends "$m" 2>/dev/null || true)
	done
	(cd "$tmp" && find . | cpio -o -H newc -R 0:0 --quiet >"$out.tmp") && mv "$out.tmp" "$out"
	rm -rf "$tmp"
}

# Resolves kernel_arg to a prepared directory: kdir, initrd.
prepare_kernel() {
	local deb
	if [[ -f $kernel_arg ]]; then
		deb=$(realpath "$kernel_arg")
		kdir=$CACHE/kernels/$(basename "$deb" .deb)
		with_lock "prep-$(basename "$kdir")" _prepare_kernel "$deb" "$kdir"
	else
		if ! resolve_package "$kernel_arg"; then
			kdir=$(newest_prepared "$kernel_arg")
			[[ -n $kdir ]] || die "no package for '$kernel_arg' in apt (nor in $EXTRA_APT)"
			echo "vmtest: apt has no '$kernel_arg' now; using the prepared $(basename "$kdir")" >&2
		else
			kdir=$CACHE/kernels/${pkg}_${ver//:/%3a}_amd64
			if [[ ! -f $kdir/ready ]]; then
				if with_lock apt download_deb || { with_lock apt _system_apt_update && with_lock apt download_deb; }; then
					with_lock "prep-$(basename "$kdir")" _prepare_kernel "$deb" "$kdir"
					rm -f "$deb"
				else
					local old
					old=$(newest_prepared "$pkg")
					[[ -n $old ]] || die "cannot download $pkg=$ver"
					echo "vmtest: cannot download $pkg=$ver; using the prepared $(basename "$old")" >&2
					kdir=$old
				fi
			fi
		fi
	fi
	with_lock "prep-$(basename "$kdir")" _build_initrd "$kdir"
}

# newest prepared kernel whose package name is NAME or belongs to series NAME (offline fallback)
newest_prepared() {
	local name=$1 d best=
	for d in "$CACHE"/kernels/*/ready; do
		[[ -f $d ]] || continue
		d=$(dirname "$d")
		case $(basename "$d") in
		"${name}"_* | linux-image-"${name}".[0-9]*-amd64-unsigned_*) best=$(printf '%s\n%s\n' "$best" "$d" | sort -V | tail -1) ;;
		esac
	done
	echo "$best"
}

# --- TSC --------------------------------------------------------------------------------

# microvm has no HPET or PM timer: the guest cannot calibrate the TSC and some boots hang.
# Under TCG the guest TSC runs at the host's rate, so tell the guest that rate. Empty if unknown.
host_tsc_khz() {
	local mhz model cached=$CACHE/tsc_khz
	model=$(sed -n 's/^model name[[:space:]]*: //p;T;q' /proc/cpuinfo)
	mhz=$(dmesg 2>/dev/null | sed -n 's/.*tsc: Refined TSC clocksource calibration: \([0-9]*\.[0-9]*\) MHz.*/\1/p' | tail -1)
	[[ -z $mhz ]] && mhz=$(dmesg 2>/dev/null | sed -n 's/.*tsc: Detected \([0-9]*\.[0-9]*\) MHz TSC.*/\1/p' | tail -1)
	[[ -z $mhz ]] && mhz=$(dmesg 2>/dev/null | sed -n 's/.*tsc: Detected \([0-9]*\.[0-9]*\) MHz processor.*/\1/p' | tail -1)
	if [[ -z $mhz ]] && grep -qw tsc_known_freq /proc/cpuinfo; then
		mhz=$(sed -n 's/^cpu MHz[[:space:]]*: \([0-9]*\.[0-9]\{3\}\).*/\1/p;T;q' /proc/cpuinfo)
	fi
	if [[ $mhz =~ ^[0-9]+\.[0-9]{3}$ ]]; then
		local khz=$((10#${mhz/./}))
		printf '%s\t%s\n' "$khz" "$model" >"$cached"
		echo "$khz"
	elif [[ -f $cached && $(cut -f2- "$cached") == "$model" ]]; then
		cut -f1 "$cached"
	fi
}

# --- run ----------------------------------------------------------------------------------

ensure_packages
prepare_kernel
# shellcheck disable=SC1091
. "$kdir/info"
if $prepare_only; then
	echo "$package $version $kver $kdir"
	exit 0
fi

workdir=$(pwd -P)
[[ $workdir != / ]] || die "run it from a directory other than /"

run=$(mktemp -d "${TMPDIR:-/tmp}/vmtest.XXXXXX")
qpid= spid= opid= epid=
cleanup() {
	local rc=$?
	set +e
	trap - EXIT INT TERM
	if [[ -n $qpid ]]; then
		kill -TERM "$qpid" 2>/dev/null
		wait "$qpid" 2>/dev/null
	fi
	[[ -n $spid ]] && kill "$spid" 2>/dev/null
	[[ -n $opid ]] && kill "$opid" 2>/dev/null
	[[ -n $epid ]] && kill "$epid" 2>/dev/null
	rm -rf "$run"
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# single-quoted for the guest's busybox sh
squote() { printf "'%s' " "${1//\'/\'\\\'\'}"; }

# the job, read by the guest from the "vmjob" share
mkdir "$run/job"
cp "$VM_DIR/guest-run.sh" "$run/job/guest-run.sh"
{
	echo "WORKDIR=$(squote "$workdir")"
	echo "MODDIR=$(squote "$(realpath "$kdir/root/lib/modules")")"
	echo "MSIZE=$MSIZE"
	echo "VMHOST=vm-${kver%%-*}"
} >"$run/job/params"
# POSIX-quoted for the guest's busybox sh: set -- VAR=value... CMD ARG...
{
	printf 'set -- '
	for v in PATH HOME LANG LC_ALL TERM ${VMTEST_ENV-CI RUST_BACKTRACE RUST_LOG}; do
		[[ -n ${!v+set} ]] && squote "$v=${!v}"
	done
	# an absolute path: the guest's busybox would run its own applet for a bare "sh" or "ip"
	exe=$1
	[[ $exe == */* ]] || exe=$(type -P -- "$exe") || exe=$1
	squote "$exe"
	for a in "${@:2}"; do squote "$a"; done
	echo
} >"$run/job/env.sh"

# stdout/stderr come out of the guest's ttyS1/ttyS2 into fifos that cat copies to ours
# (qemu opens a file chardev with O_TRUNC: never hand it our own stdout)
mkfifo "$run/out" "$run/err"
cat "$run/out" &
opid=$!
cat "$run/err" >&2 &
epid=$!

append="console=ttyS0 quiet panic=-1 reboot=t cryptomgr.notests rdinit=/init 8250.nr_uarts=4"
[[ $mitigations == off ]] && append+=" mitigations=off"
if [[ $machine == microvm ]]; then
	khz=$(host_tsc_khz)
	if [[ -z $khz ]]; then
		echo "vmtest: host TSC frequency unknown: using -M pc instead of microvm" >&2
		machine=pc
	fi
fi
qemu=(qemu-system-x86_64 -nodefaults -no-user-config -no-reboot -display none
	-accel tcg,thread=multi -cpu max -smp "$cpus" -m "$mem"
	-kernel "$kdir/vmlinux" -initrd "$initrd"
	-monitor "unix:$run/monitor.sock,server=on,wait=off"
	-chardev "file,id=con,path=$run/console.log" -serial chardev:con
	-chardev "file,id=out,path=$run/out" -device isa-serial,chardev=out,index=1
	-chardev "file,id=err,path=$run/err" -device isa-serial,chardev=err,index=2
	-fsdev "local,id=hostroot,path=/,readonly=on,security_model=none,multidevs=remap"
	-fsdev "local,id=vmjob,path=$run/job,security_model=none"
	-fsdev "local,id=work,path=$workdir,security_model=none,multidevs=remap")
if [[ $machine == microvm ]]; then
	append+=" pci=off tsc_early_khz=$khz tsc=reliable"
	qemu+=(-M microvm,acpi=on)
	dev=virtio-9p-device
else
	qemu+=(-M pc)
	dev=virtio-9p-pci
fi
qemu+=(-device "$dev,fsdev=hostroot,mount_tag=hostroot" -device "$dev,fsdev=vmjob,mount_tag=vmjob"
	-device "$dev,fsdev=work,mount_tag=work" -append "$append ${VMTEST_APPEND:-}")

# On a timeout: where each vCPU is, from the qemu monitor (a hung guest is otherwise silent:
# with no timer interrupts even the lockup detectors never fire). Three samples per vCPU.
stuck_rips=
sample_rips() {
	command -v python3 >/dev/null || return 0
	stuck_rips=$(python3 - "$run/monitor.sock" <<-'EOF' 2>/dev/null | sed -n 's/^RIP=\([0-9a-f]*\).*/\1/p'
		import socket, sys, time
		s = socket.socket(socket.AF_UNIX)
		s.connect(sys.argv[1])
		s.settimeout(0.5)
		def drain():
		    out = b""
		    try:
		        while True:
		            d = s.recv(65536)
		            if not d:
		                break
		            out += d
		    except socket.timeout:
		        pass
		    return out.decode(errors="replace")
		drain()
		for _ in range(3):
		    s.sendall(b"info registers -a\n")
		    time.sleep(0.3)
		    print(drain())
	EOF
	) || true
}
# Names the sampled RIPs. Debian's System.map is a placeholder and vmlinux has no symbols, but
# the PVH boot skips KASLR: the text symbols of /proc/kallsyms, taken once from a fresh boot of
# the same kernel, are right for every boot.
report_rips() {
	[[ -n $stuck_rips ]] || return 0
	local syms=$kdir/kallsyms rip line karg=$kernel_arg
	[[ -f $karg ]] && karg=$(realpath "$karg")
	if [[ ! -s $syms ]]; then
		echo "vmtest: booting $kver once more to read its kallsyms (kept in $kdir)" >&2
		(cd "$kdir" && "$SELF_DIR/vmtest.sh" -q -t 120 "$karg" -- \
			sh -c 'awk '\''NF == 3 && ($2 == "t" || $2 == "T")'\'' /proc/kallsyms >kallsyms.tmp && mv kallsyms.tmp kallsyms') >/dev/null 2>&1 || true
	fi
	echo "vmtest: where the guest's vCPUs were at the timeout (3 samples each):" >&2
	local i=0 where
	for rip in $stuck_rips; do
		where=
		if [[ $rip < 8 ]]; then
			where="(user space)"
		elif [[ $rip > ffffffffa0000000 ]]; then
			where="(module space: a module or a JITed BPF program)"
		elif [[ -s $syms ]]; then
			line=$({ cat "$syms"; echo "$rip ~ <rip>"; } | LC_ALL=C sort | grep -B1 ' ~ <rip>$' | head -1)
			[[ $line == *'<rip>' ]] || where="${line##* }+$((16#$rip - 16#${line%% *}))"
		fi
		echo "vmtest:   vCPU $((i % cpus)) RIP $rip $where" >&2
		i=$((i + 1))
	done
}

$quiet || echo "vmtest: booting $package $version ($kver) on $machine, timeout ${timeout_s}s" >&2
# qemu and a sleep for the timeout, whichever ends first: on a timeout the vCPUs are sampled
# before qemu is ended. Our INT/TERM traps (an outer timeout(1), ^C) end qemu through cleanup.
"${qemu[@]}" </dev/null >"$run/qemu.log" 2>&1 &
qpid=$!
sleep "$timeout_s" &
spid=$!
timed_out=false
wait -n "$qpid" "$spid" || true
if kill -0 "$qpid" 2>/dev/null; then
	timed_out=true
	sample_rips
	kill -TERM "$qpid" 2>/dev/null || true
	for _ in 1 2 3 4 5 6 7 8 9 10; do
		kill -0 "$qpid" 2>/dev/null || break
		sleep 0.5
	done
	kill -KILL "$qpid" 2>/dev/null || true
fi
kill "$spid" 2>/dev/null || true
spid=
qrc=0
wait "$qpid" || qrc=$?
qpid=
wait "$opid" "$epid" 2>/dev/null || true
opid= epid=

if $verbose; then
	echo "---- guest console ($kver)" >&2
	cat "$run/console.log" >&2 || true
	echo "----" >&2
fi
if $timed_out; then
	report_rips
	echo "vmtest: timed out after ${timeout_s}s ($kver); last console lines:" >&2
	tail -n 20 "$run/console.log" >&2 || true
	exit 124
fi
if [[ -s $run/job/rc ]]; then
	exit "$(cat "$run/job/rc")"
fi
echo "vmtest: harness failure ($kver): qemu exited $qrc without the command's exit code" >&2
tail -n 5 "$run/qemu.log" >&2 || true
echo "vmtest: last console lines:" >&2
tail -n 20 "$run/console.log" >&2 || true
exit 125
