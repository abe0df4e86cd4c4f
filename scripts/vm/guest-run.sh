#!/bin/bash
# pid 1 of a scripts/vmtest.sh guest, after scripts/vm/init chrooted it into the overlay root
# (the host's root, read-only 9p under a tmpfs). Runs from the job share (/run/vmtest):
# finishes the mounts, runs the command with its stdout/stderr on ttyS1/ttyS2, writes its
# exit code to /run/vmtest/rc and resets the machine (qemu runs with -no-reboot, so it exits).
set -u
job=/run/vmtest
# shellcheck disable=SC1091
. "$job/params"

say() { echo "vmtest-guest: $*" >/dev/kmsg; }
finish() {
	echo "$1" >"$job/rc"
	echo "<2>vmtest-guest: exit $1" >/dev/kmsg
	sync
	echo b >/proc/sysrq-trigger
	sleep 60
}
must() { "$@" || { echo "<2>vmtest-guest: failed: $*" >/dev/kmsg; finish 125; }; }

export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
echo "<2>T $(cut -d" " -f1 /proc/uptime) after: export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin" >/dev/kmsg
must mount -t proc proc /proc
echo "<2>T $(cut -d" " -f1 /proc/uptime) after: must mount -t proc proc /proc" >/dev/kmsg
must mount -t sysfs sysfs /sys
echo "<2>T $(cut -d" " -f1 /proc/uptime) after: must mount -t sysfs sysfs /sys" >/dev/kmsg
must mount -t devtmpfs devtmpfs /dev
echo "<2>T $(cut -d" " -f1 /proc/uptime) after: must mount -t devtmpfs devtmpfs /dev" >/dev/kmsg
mkdir -p /dev/pts /dev/shm
must mount -t devpts -o newinstance,ptmxmode=0666,mode=0620 devpts /dev/pts
echo "<2>T $(cut -d" " -f1 /proc/uptime) after: must mount -t devpts -o newinstance,ptmxmode=0666,mode=0620 devpts /dev/pts" >/dev/kmsg
ln -sf pts/ptmx /dev/ptmx 2>/dev/null
must mount -t tmpfs -o mode=1777,nosuid,nodev shm /dev/shm
echo "<2>T $(cut -d" " -f1 /proc/uptime) after: must mount -t tmpfs -o mode=1777,nosuid,nodev shm /dev/shm" >/dev/kmsg
must mount -t tmpfs -o mode=1777,nosuid,nodev tmp /tmp
echo "<2>T $(cut -d" " -f1 /proc/uptime) after: must mount -t tmpfs -o mode=1777,nosuid,nodev tmp /tmp" >/dev/kmsg
must mount -t bpf -o mode=0700 bpf /sys/fs/bpf
echo "<2>T $(cut -d" " -f1 /proc/uptime) after: must mount -t bpf -o mode=0700 bpf /sys/fs/bpf" >/dev/kmsg
must mount -t cgroup2 cgroup2 /sys/fs/cgroup
echo "<2>T $(cut -d" " -f1 /proc/uptime) after: must mount -t cgroup2 cgroup2 /sys/fs/cgroup" >/dev/kmsg
mount -t debugfs debugfs /sys/kernel/debug 2>/dev/null
mount -t tracefs tracefs /sys/kernel/tracing 2>/dev/null
# the guest kernel's modules, from the prepared tree in the host's cache (visible through 9p)
mkdir -p /lib/modules
must mount --bind "$MODDIR" /lib/modules
echo "<2>T $(cut -d" " -f1 /proc/uptime) after: must mount --bind MODDIR /lib/modules" >/dev/kmsg
# `ip netns` keeps its handles in /var/run/netns
if [[ $(readlink /var/run) != /run ]]; then
	rm -rf /var/run && ln -s /run /var/run
fi
mkdir -p /run/lock /run/netns
# the caller's directory, read-write (a stale page cache would hide host writes: no caching)
mkdir -p "$WORKDIR"
must mount -t 9p -o "trans=virtio,version=9p2000.L,msize=$MSIZE,cache=mmap" work "$WORKDIR"
echo "<2>T $(cut -d" " -f1 /proc/uptime) after: must mount -t 9p -o trans=virtio,version=9p2000.L,msize=MSIZE,cache=mmap work WORKDIR" >/dev/kmsg
hostname "$VMHOST"
echo "<2>T $(cut -d" " -f1 /proc/uptime) after: hostname VMHOST" >/dev/kmsg
ip link set lo up
echo "<2>T $(cut -d" " -f1 /proc/uptime) after: ip link set lo up" >/dev/kmsg

# shellcheck disable=SC1091
. "$job/env.sh"
echo "<2>T $(cut -d" " -f1 /proc/uptime) after: . job/env.sh" >/dev/kmsg
cd "$WORKDIR" || finish 125

# ttyS1 = stdout, ttyS2 = stderr, raw (no \n -> \r\n). The command writes into pipes, as it
# would under CI; cat copies them to the serial ports and its close waits for the UART to drain.
mkfifo /run/.vmtest-out /run/.vmtest-err
(exec </dev/ttyS1 >/dev/ttyS1 && stty raw -echo && exec cat /run/.vmtest-out) &
out=$!
(exec </dev/ttyS2 >/dev/ttyS2 && stty raw -echo && exec cat /run/.vmtest-err) &
err=$!
"${cmd[@]}" >/run/.vmtest-out 2>/run/.vmtest-err </dev/null
rc=$?
echo "<2>T $(cut -d" " -f1 /proc/uptime) after: rc=?" >/dev/kmsg
# processes the command left behind may hold the pipes open: give the copies 5 s, then end
# everything but pid 1
for _ in $(seq 50); do
	kill -0 "$out" 2>/dev/null || kill -0 "$err" 2>/dev/null || break
	sleep 0.1
done
if kill -0 "$out" 2>/dev/null || kill -0 "$err" 2>/dev/null; then
	say "processes left running after the command; killing them"
	kill -TERM -1 2>/dev/null
	sleep 1
	kill -KILL -1 2>/dev/null
	sleep 0.5
fi
finish "$rc"
