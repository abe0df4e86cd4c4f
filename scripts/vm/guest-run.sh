# pid 1 of a scripts/vmtest.sh guest (busybox sh, copied to /run/.vmtest by scripts/vm/init,
# which chrooted it into the overlay root: the host's root, read-only 9p under a tmpfs).
# Finishes the mounts, runs the job's command with its stdout/stderr on ttyS1/ttyS2, writes its
# exit code to /run/vmtest/rc and resets the machine (qemu runs with -no-reboot, so it exits).
# Everything here is a busybox applet run from tmpfs: under TCG every exec of a dynamically
# linked program from the 9p root costs a few hundred milliseconds.
BB=/run/.vmtest/busybox
job=/run/vmtest
. "$job/params"

finish() {
	echo "$1" >"$job/rc"
	echo "<2>vmtest-guest: exit $1" >/dev/kmsg
	$BB sync
	echo b >/proc/sysrq-trigger
	$BB sleep 60
}
must() {
	"$@" && return
	echo "<2>vmtest-guest: failed: $*" >/dev/kmsg
	finish 125
}

must $BB mount -t proc proc /proc
must $BB mount -t sysfs sysfs /sys
must $BB mount -t devtmpfs devtmpfs /dev
$BB mkdir -p /dev/pts /dev/shm
must $BB mount -t devpts -o newinstance,ptmxmode=0666,mode=0620,gid=5 devpts /dev/pts
$BB ln -sf pts/ptmx /dev/ptmx
must $BB mount -t tmpfs -o mode=1777,nosuid,nodev shm /dev/shm
must $BB mount -t tmpfs -o mode=1777,nosuid,nodev tmp /tmp
must $BB mount -t bpf -o mode=0700 bpf /sys/fs/bpf
must $BB mount -t cgroup2 cgroup2 /sys/fs/cgroup
$BB mount -t debugfs debugfs /sys/kernel/debug 2>/dev/null
$BB mount -t tracefs tracefs /sys/kernel/tracing 2>/dev/null
# the guest kernel's modules, from the prepared tree in the host's cache (visible through 9p)
$BB mkdir -p /lib/modules
must $BB mount -o bind "$MODDIR" /lib/modules
# `ip netns` keeps its handles in /var/run/netns
if [ "$($BB readlink /var/run)" != /run ]; then
	$BB rm -rf /var/run && $BB ln -s /run /var/run
fi
$BB mkdir -p /run/lock /run/netns
# the caller's directory, read-write; no caching, so host-side writes show at once
$BB mkdir -p "$WORKDIR"
must $BB mount -t 9p -o "trans=virtio,version=9p2000.L,msize=$MSIZE,cache=mmap" work "$WORKDIR"
$BB hostname "$VMHOST"
$BB ip link set lo up
cd "$WORKDIR" || finish 125

# ttyS1 = stdout, ttyS2 = stderr, raw (no \n -> \r\n). The command writes into pipes as it
# would under CI; cat copies them to the serial ports, and its close waits for the UART to drain.
$BB stty -F /dev/ttyS1 raw -echo
$BB stty -F /dev/ttyS2 raw -echo
$BB mkfifo /run/.vmtest/out /run/.vmtest/err
$BB cat /run/.vmtest/out >/dev/ttyS1 &
out=$!
$BB cat /run/.vmtest/err >/dev/ttyS2 &
err=$!

# env.sh: set -- VAR=value... CMD ARG...
. "$job/env.sh"
$BB env -i "$@" >/run/.vmtest/out 2>/run/.vmtest/err </dev/null
rc=$?

# processes the command left behind may hold the pipes open: give the copies 5 s, then end
# everything but pid 1
(
	trap '' TERM
	$BB sleep 5
	echo "<2>vmtest-guest: processes left running after the command; killing them" >/dev/kmsg
	$BB kill -TERM -1
	$BB sleep 1
	$BB kill -KILL -1
) &
watchdog=$!
wait "$out" "$err"
kill -KILL "$watchdog" 2>/dev/null
finish "$rc"
