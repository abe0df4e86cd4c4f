#!/usr/bin/env bash
# The lab demo: builds ebpfsentinel, wires three namespaces (internet -- router -- server)
# with veth pairs, runs ebpfsentinel with examples/lab.yaml on the router's WAN side, sends
# allowed and blocked traffic, and shows what was blocked and passed. Everything it creates
# is removed on exit, Ctrl-C or failure. Run as root on a fresh machine.
#
#   internet ns: client 198.51.100.20, 2001:db8:c11::20; attacker 1.10.16.66 (Spamhaus DROP),
#                2001:db8:bad::66; botnet C2 51.178.161.32 (Feodo Tracker); monitoring host
#                203.0.113.250 (allowlisted)
#   router ns:   wan0 100.64.0.1 (ebpfsentinel's XDP and TC), lan0 10.0.0.1 (the load
#                balancer's reply path); the web service's VIP 198.18.100.1:80
#   server ns:   10.0.0.2, 2001:db8:10::2 with TCP 80 and 23 and UDP 53 and 7 echo services;
#                10.0.0.2 and 10.0.0.3 are the VIP's backends on TCP 8080
set -euo pipefail
cd "$(dirname "$0")/.."

die() {
	echo "lab: $*" >&2
	exit 1
}
[[ $EUID -eq 0 ]] || die "run as root: it creates namespaces and loads BPF programs"

scripts/setup.sh
command -v python3 >/dev/null || {
	echo "installing python3 (the lab's traffic generator)"
	DEBIAN_FRONTEND=noninteractive apt-get install -qq -y --no-install-recommends python3 >/dev/null
}
echo "== building (release)"
cargo build --release --quiet
bin=$PWD/target/release/ebpfsentinel

tag="eslab$$"
inet="$tag-inet" router="$tag-router" server="$tag-server"
work=$(mktemp -d /tmp/ebpfsentinel-lab.XXXXXX)
pins="$work/bpf/ebpfsentinel"
pids=()

cleanup() {
	local rc=$?
	for pid in "${pids[@]}"; do
		kill "$pid" 2>/dev/null || true
		wait "$pid" 2>/dev/null || true
	done
	for ns in "$inet" "$router" "$server"; do
		ip netns del "$ns" 2>/dev/null || true
	done
	umount "$work/bpf" 2>/dev/null || true
	rm -rf "$work"
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

in_ns() {
	local ns=$1
	shift
	ip netns exec "$ns" "$@"
}

echo "== topology"
for ns in "$inet" "$router" "$server"; do
	ip netns add "$ns"
	in_ns "$ns" ip link set lo up
done
ip link add inet0 netns "$inet" type veth peer name wan0 netns "$router"
ip link add lan0 netns "$router" type veth peer name srv0 netns "$server"
in_ns "$inet" ip link set inet0 up
in_ns "$router" ip link set wan0 up
in_ns "$router" ip link set lan0 up
in_ns "$server" ip link set srv0 up
in_ns "$router" sysctl -qw net.ipv4.ip_forward=1 net.ipv6.conf.all.forwarding=1

in_ns "$inet" ip addr add 100.64.0.2/24 dev inet0
for a in 198.51.100.20 1.10.16.66 51.178.161.32 203.0.113.250; do
	in_ns "$inet" ip addr add "$a/32" dev inet0
done
in_ns "$inet" ip -6 addr add 2001:db8:100::2/64 dev inet0 nodad
for a in 2001:db8:c11::20 2001:db8:bad::66; do
	in_ns "$inet" ip -6 addr add "$a/128" dev inet0 nodad
done
in_ns "$inet" ip route add 10.0.0.0/24 via 100.64.0.1
in_ns "$inet" ip route add 198.18.100.0/24 via 100.64.0.1
in_ns "$inet" ip -6 route add 2001:db8:10::/64 via 2001:db8:100::1

in_ns "$router" ip addr add 100.64.0.1/24 dev wan0
in_ns "$router" ip -6 addr add 2001:db8:100::1/64 dev wan0 nodad
in_ns "$router" ip addr add 10.0.0.1/24 dev lan0
in_ns "$router" ip -6 addr add 2001:db8:10::1/64 dev lan0 nodad
for a in 198.51.100.20 1.10.16.66 51.178.161.32 203.0.113.250; do
	in_ns "$router" ip route add "$a/32" via 100.64.0.2
done
for a in 2001:db8:c11::20 2001:db8:bad::66; do
	in_ns "$router" ip -6 route add "$a/128" via 2001:db8:100::2
done

in_ns "$server" ip addr add 10.0.0.2/24 dev srv0
in_ns "$server" ip addr add 10.0.0.3/24 dev srv0
in_ns "$server" ip -6 addr add 2001:db8:10::2/64 dev srv0 nodad
in_ns "$server" ip route add default via 10.0.0.1
in_ns "$server" ip -6 route add default via 2001:db8:10::1
# the server accepts the ACKs of SYN cookies XDP issued on its behalf
in_ns "$server" sysctl -qw net.ipv4.tcp_syncookies=2

# started through ip directly, not in_ns: $! must be the process itself, not a subshell
ip netns exec "$server" python3 scripts/lab-probe.py serve --addr 10.0.0.2 --addr 2001:db8:10::2 \
	--tcp 80 --tcp 23 --udp 53 --udp 7 &
pids+=($!)
ip netns exec "$server" python3 scripts/lab-probe.py serve --addr 10.0.0.2 --addr 10.0.0.3 --tcp 8080 &
pids+=($!)

echo "== starting ebpfsentinel on the router's wan0"
# `ip netns exec` remounts /sys, hiding /sys/fs/bpf: the pins go to a bpffs of our own.
mkdir -p "$work/bpf"
mount -t bpf bpf "$work/bpf"
ip netns exec "$router" "$bin" run -c examples/lab.yaml --pin-root "$pins" --transient \
	>"$work/events.jsonl" 2>"$work/daemon.log" &
pids+=($!)
for _ in $(seq 1 300); do
	grep -q ready "$work/daemon.log" && break
	kill -0 "${pids[-1]}" 2>/dev/null || {
		cat "$work/daemon.log"
		die "ebpfsentinel exited"
	}
	sleep 0.1
done
grep ready "$work/daemon.log" || die "ebpfsentinel never became ready"
# the threat-intel feeds and the DNS blocklist load in the background after "ready"
for _ in $(seq 1 100); do
	"$bin" ti lookup 51.178.161.32 --pin-root "$pins" >/dev/null 2>&1 &&
		"$bin" dns check ariane.abtasty.com --pin-root "$pins" >/dev/null 2>&1 && break
	sleep 0.1
done

echo "== traffic from the internet side"
# label | source | destination | protocol | port | expected
probes=(
	"client web (v4)|198.51.100.20|10.0.0.2|tcp|80|passed"
	"client web (v6)|2001:db8:c11::20|2001:db8:10::2|tcp|80|passed"
	"client dns|198.51.100.20|10.0.0.2|udp|53|passed"
	"client ping|198.51.100.20|10.0.0.2|icmp|0|passed"
	"client telnet (rule no-telnet)|198.51.100.20|10.0.0.2|tcp|23|blocked"
	"monitoring telnet (allowlisted)|203.0.113.250|10.0.0.2|tcp|23|passed"
	"spamhaus-listed web|1.10.16.66|10.0.0.2|tcp|80|blocked"
	"spamhaus-listed dns|1.10.16.66|10.0.0.2|udp|53|blocked"
	"spamhaus-listed ping|1.10.16.66|10.0.0.2|icmp|0|blocked"
	"v6-net web (rule v6-net)|2001:db8:bad::66|2001:db8:10::2|tcp|80|blocked"
	"feodo C2 web (threat intel)|51.178.161.32|10.0.0.2|tcp|80|blocked"
	"client web with X-EVIL-MARKER (IDS)|198.51.100.20|10.0.0.2|tcp|80|blocked|payload=GET / HTTP/1.0 X-EVIL-MARKER"
	"client dns example.org|198.51.100.20|10.0.0.2|udp|53|passed|dns=example.org"
	"client dns x.ads.example (config)|198.51.100.20|10.0.0.2|udp|53|blocked|dns=x.ads.example"
	"client dns ariane.abtasty.com (AdAway)|198.51.100.20|10.0.0.2|udp|53|blocked|dns=ariane.abtasty.com"
)
failures=0
printf '%-34s %-18s %-6s %-9s %s\n' PROBE SOURCE PROTO RESULT EXPECTED
for p in "${probes[@]}"; do
	IFS='|' read -r label src dst proto port expect extra <<<"$p"
	args=()
	case $extra in
	payload=*) args=(--payload "${extra#payload=}") ;;
	dns=*) args=(--dns-name "${extra#dns=}") ;;
	esac
	if in_ns "$inet" python3 scripts/lab-probe.py probe --src "$src" --dst "$dst" \
		--proto "$proto" --port "$port" "${args[@]}"; then
		got=passed
	else
		got=blocked
	fi
	mark=ok
	[[ $got == "$expect" ]] || {
		mark=UNEXPECTED
		failures=$((failures + 1))
	}
	printf '%-34s %-18s %-6s %-9s %s\n' "$label" "$src" "$proto/$port" "$got" "$mark"
done

echo
echo "== floods"
# label | source | destination | kind | port | count | rate/s | expected (passed: all answered)
floods=(
	"UDP echo flood (rate limit 100/s)|198.51.100.20|10.0.0.2|udp|7|1000|1000|limited"
	"SYN flood (cookies above 200/s)|198.51.100.20|10.0.0.2|syn|80|2000|2000|answered"
)
for f in "${floods[@]}"; do
	IFS='|' read -r label src dst kind port count rate expect <<<"$f"
	out=$(in_ns "$inet" python3 scripts/lab-probe.py flood --src "$src" --dst "$dst" \
		--proto "$kind" --port "$port" --count "$count" --rate "$rate") && all=1 || all=0
	case $kind in
	udp) [[ $all == 0 ]] && got=limited || got=passed ;;
	syn)
		# the server answers with cookies of its own too: count the ones XDP sent
		cookies=$("$bin" status --pin-root "$pins" | awk '$1 == "tx/syn_cookie" { print $2 }')
		out="$out, ${cookies:-0} from XDP"
		[[ $all == 1 && ${cookies:-0} -gt 0 ]] && got=answered || got=unanswered
		;;
	esac
	mark=ok
	[[ $got == "$expect" ]] || {
		mark=UNEXPECTED
		failures=$((failures + 1))
	}
	printf '%-34s %-18s %-6s %-9s %s (%s)\n' "$label" "$src" "$kind/$port" "$got" "$mark" "$out"
done
# the flood's source is limited, not banned: a real connection still completes
if in_ns "$inet" python3 scripts/lab-probe.py probe --src 198.51.100.20 --dst 10.0.0.2 \
	--proto tcp --port 80; then
	printf '%-34s %-18s %-6s %-9s %s\n' "client web after the floods" 198.51.100.20 tcp/80 passed ok
else
	printf '%-34s %-18s %-6s %-9s %s\n' "client web after the floods" 198.51.100.20 tcp/80 blocked UNEXPECTED
	failures=$((failures + 1))
fi

echo
echo "== load balancer: 20 connections to the VIP 198.18.100.1:80"
if out=$(in_ns "$inet" python3 scripts/lab-probe.py spread --src 198.51.100.20 \
	--dst 198.18.100.1 --port 80 --count 20); then
	printf '%-34s %-18s %-6s %-9s %s (%s)\n' "web service via the VIP" 198.51.100.20 tcp/80 passed ok "$out"
else
	printf '%-34s %-18s %-6s %-9s %s (%s)\n' "web service via the VIP" 198.51.100.20 tcp/80 failed UNEXPECTED "$out"
	failures=$((failures + 1))
fi
"$bin" lb list --pin-root "$pins" || true

sleep 0.5
echo
echo "== ebpfsentinel status"
"$bin" status --pin-root "$pins" || true
echo
echo "== events (JSON lines from the daemon, first 6)"
head -n 6 "$work/events.jsonl"
echo "($(wc -l <"$work/events.jsonl") events in all)"
echo
if ((failures > 0)); then
	die "$failures probe(s) did not behave as expected"
fi
echo "lab: every probe behaved as the config says"
