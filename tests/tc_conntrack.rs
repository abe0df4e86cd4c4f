//! tc_conntrack and the firewall's conntrack fast path through BPF_PROG_TEST_RUN: packet
//! sequences run through the TC entry programs of the direction they travel (egress: sent by
//! this host, ingress: received), then the table, the counters and xdp_firewall's verdicts are
//! checked. Every sequence runs for IPv4 and IPv6.

mod common;

use std::net::IpAddr;
use std::time::Duration;

use common::{privileged, Firewall, XDP_DROP, XDP_PASS};
use ebpfsentinel::abi::{ct_stat, ct_state, fw_stat};
use ebpfsentinel::config::ConntrackConfig;
use ebpfsentinel::loader::LoadOptions;
use ebpfsentinel::maps::conntrack::{ConntrackMaps, Flow};
use ebpfsentinel::packet::{PacketBuilder, TcpFlags};

/// TC_ACT_UNSPEC: the chain passed the packet on to whatever else is on the hook
const TC_NEXT: i32 = -1;
const TC_SHOT: i32 = 2;

const LOCAL_V4: &str = "10.0.0.1";
const REMOTE_V4: &str = "198.51.100.7";
const LOCAL_V6: &str = "2001:db8:1::1";
const REMOTE_V6: &str = "2001:db8:99::7";

/// MSS 1460, NOP, window scale 7
const SYN_OPTIONS: [u8; 8] = [2, 4, 0x05, 0xb4, 1, 3, 3, 7];

fn families() -> [(IpAddr, IpAddr); 2] {
    [
        (LOCAL_V4.parse().unwrap(), REMOTE_V4.parse().unwrap()),
        (LOCAL_V6.parse().unwrap(), REMOTE_V6.parse().unwrap()),
    ]
}

struct Tracker {
    fw: Firewall,
    ct: ConntrackMaps,
}

const ENABLED: &str = "conntrack:\n  enabled: true\n";

impl Tracker {
    /// A private dataplane with `yaml` applied (which enables conntrack or not).
    fn new(yaml: &str) -> Tracker {
        Self::with(yaml, &LoadOptions::default())
    }

    fn with(yaml: &str, opts: &LoadOptions) -> Tracker {
        let fw = Firewall::load_with(yaml, opts);
        let ct = fw.dp.conntrack_maps().expect("conntrack maps");
        let path = std::path::Path::new("inline.yaml");
        let cfg = ebpfsentinel::config::parse_str(yaml, path).expect("config");
        ct.apply(&cfg.conntrack).expect("apply conntrack");
        Tracker { fw, ct }
    }

    fn settings(&self, cfg: &ConntrackConfig) {
        self.ct.apply(cfg).expect("apply conntrack");
    }

    fn tc(&self, ingress: bool, frame: &[u8]) -> i32 {
        self.fw.tc(ingress, frame).0
    }

    /// Received by this host: xdp_firewall, then (when it passed) TC ingress.
    fn receive(&self, frame: &[u8]) -> u32 {
        let verdict = self.fw.run(frame);
        if verdict == XDP_PASS {
            assert_eq!(self.tc(true, frame), TC_NEXT, "TC ingress");
        }
        verdict
    }

    /// Sent by this host: TC egress.
    fn send(&self, frame: &[u8]) {
        assert_eq!(self.tc(false, frame), TC_NEXT, "TC egress");
    }

    fn flows(&self) -> Vec<Flow> {
        self.ct.flows().expect("flows")
    }

    fn only_flow(&self) -> Flow {
        let flows = self.flows();
        assert_eq!(flows.len(), 1, "{flows:#?}");
        flows.into_iter().next().unwrap()
    }

    fn stat(&self, s: ct_stat) -> u64 {
        self.ct.stats().expect("ct stats")[s.0 as usize]
    }

    fn fw_stat(&self, s: fw_stat) -> u64 {
        self.fw.stats()[s.0 as usize]
    }
}

fn state_of(flow: &Flow) -> ct_state {
    ct_state(u32::from(flow.state.0))
}

struct Seg {
    flags: TcpFlags,
    seq: u32,
    ack: u32,
    win: u16,
    payload: usize,
    options: bool,
}

fn seg(flags: TcpFlags, seq: u32, ack: u32) -> Seg {
    Seg {
        flags,
        seq,
        ack,
        win: 502,
        payload: 0,
        options: false,
    }
}

fn tcp(src: (IpAddr, u16), dst: (IpAddr, u16), s: Seg) -> Vec<u8> {
    let mut b = PacketBuilder::new()
        .ip(src.0, dst.0)
        .tcp(src.1, dst.1, s.flags)
        .tcp_numbers(s.seq, s.ack, s.win)
        .payload(&vec![0x61; s.payload]);
    if s.options {
        b = b.tcp_options(&SYN_OPTIONS);
    }
    b.build()
}

fn syn(seq: u32) -> Seg {
    Seg {
        win: 64240,
        options: true,
        ..seg(TcpFlags::SYN, seq, 0)
    }
}

fn syn_ack(seq: u32, ack: u32) -> Seg {
    Seg {
        win: 65160,
        options: true,
        ..seg(TcpFlags::SYN | TcpFlags::ACK, seq, ack)
    }
}

fn data(seq: u32, ack: u32, len: usize) -> Seg {
    Seg {
        payload: len,
        ..seg(TcpFlags::ACK | TcpFlags::PSH, seq, ack)
    }
}

/// This host connects out: its SYN leaves through TC egress, the answers come in through
/// xdp_firewall and TC ingress. Returns (local, remote) endpoints.
fn handshake_out(t: &Tracker, local: IpAddr, remote: IpAddr) -> ((IpAddr, u16), (IpAddr, u16)) {
    let (l, r) = ((local, 40000), (remote, 80));
    t.send(&tcp(l, r, syn(1000)));
    assert_eq!(state_of(&t.only_flow()), ct_state::CT_TCP_SYN_SENT);
    assert_eq!(t.receive(&tcp(r, l, syn_ack(5000, 1001))), XDP_PASS);
    assert_eq!(state_of(&t.only_flow()), ct_state::CT_TCP_SYN_RECV);
    t.send(&tcp(l, r, seg(TcpFlags::ACK, 1001, 5001)));
    assert_eq!(state_of(&t.only_flow()), ct_state::CT_TCP_ESTABLISHED);
    (l, r)
}

#[test]
fn tcp_handshake_data_and_teardown_from_either_side() {
    if !privileged("tcp_handshake_data_and_teardown_from_either_side") {
        return;
    }
    for (local, remote) in families() {
        // this host opens and closes first: FIN_WAIT, then TIME_WAIT
        let t = Tracker::new(ENABLED);
        let (l, r) = handshake_out(&t, local, remote);
        let before = t.only_flow();
        let (out, back) = (
            tcp(l, r, data(1001, 5001, 100)),
            tcp(r, l, data(5001, 1101, 300)),
        );
        t.send(&out);
        assert_eq!(t.receive(&back), XDP_PASS);
        let f = t.only_flow();
        assert_eq!((f.src, f.src_port, f.dst, f.dst_port), (l.0, l.1, r.0, r.1));
        assert_eq!((f.orig.packets, f.reply.packets), (3, 2), "{f:#?}");
        assert_eq!(f.orig.bytes - before.orig.bytes, out.len() as u64);
        assert_eq!(f.reply.bytes - before.reply.bytes, back.len() as u64);
        assert!(f.seen_reply);
        t.send(&tcp(l, r, seg(TcpFlags::ACK, 1101, 5301)));
        t.send(&tcp(l, r, seg(TcpFlags::FIN | TcpFlags::ACK, 1101, 5301)));
        assert_eq!(state_of(&t.only_flow()), ct_state::CT_TCP_FIN_WAIT);
        t.receive(&tcp(r, l, seg(TcpFlags::ACK, 5301, 1102)));
        t.receive(&tcp(r, l, seg(TcpFlags::FIN | TcpFlags::ACK, 5301, 1102)));
        assert_eq!(state_of(&t.only_flow()), ct_state::CT_TCP_TIME_WAIT);
        t.send(&tcp(l, r, seg(TcpFlags::ACK, 1102, 5302)));
        assert_eq!(state_of(&t.only_flow()), ct_state::CT_TCP_TIME_WAIT);
        assert_eq!(t.stat(ct_stat::CT_STAT_NEW), 1);
        assert_eq!(t.stat(ct_stat::CT_STAT_ESTABLISHED), 1);
        assert_eq!(t.stat(ct_stat::CT_STAT_CLOSED), 1);
        assert_eq!(t.stat(ct_stat::CT_STAT_INVALID), 0);

        // the remote opens (inbound), this host closes first: the responder's FIN is
        // CLOSE_WAIT, then TIME_WAIT
        let t = Tracker::new(ENABLED);
        let (l, r) = ((local, 22), (remote, 51000));
        assert_eq!(t.receive(&tcp(r, l, syn(7000))), XDP_PASS);
        t.send(&tcp(l, r, syn_ack(9000, 7001)));
        assert_eq!(
            t.receive(&tcp(r, l, seg(TcpFlags::ACK, 7001, 9001))),
            XDP_PASS
        );
        let f = t.only_flow();
        assert_eq!(state_of(&f), ct_state::CT_TCP_ESTABLISHED);
        assert_eq!((f.src, f.src_port), (r.0, r.1), "the remote opened it");
        t.send(&tcp(l, r, seg(TcpFlags::FIN | TcpFlags::ACK, 9001, 7001)));
        assert_eq!(state_of(&t.only_flow()), ct_state::CT_TCP_CLOSE_WAIT);
        t.receive(&tcp(r, l, seg(TcpFlags::FIN | TcpFlags::ACK, 7001, 9002)));
        assert_eq!(state_of(&t.only_flow()), ct_state::CT_TCP_TIME_WAIT);
        assert_eq!(t.stat(ct_stat::CT_STAT_CLOSED), 1);
    }
}

#[test]
fn simultaneous_open_reaches_established() {
    if !privileged("simultaneous_open_reaches_established") {
        return;
    }
    for (local, remote) in families() {
        let t = Tracker::new(ENABLED);
        let (l, r) = ((local, 6000), (remote, 6001));
        t.send(&tcp(l, r, syn(100)));
        // the peer's SYN crosses ours
        assert_eq!(t.receive(&tcp(r, l, syn(900))), XDP_PASS);
        assert_eq!(state_of(&t.only_flow()), ct_state::CT_TCP_SYN_RECV);
        t.send(&tcp(l, r, syn_ack(100, 901)));
        t.receive(&tcp(r, l, syn_ack(900, 101)));
        t.send(&tcp(l, r, seg(TcpFlags::ACK, 101, 901)));
        assert_eq!(state_of(&t.only_flow()), ct_state::CT_TCP_ESTABLISHED);
        assert_eq!(t.stat(ct_stat::CT_STAT_INVALID), 0);
    }
}

#[test]
fn rst_closes_and_a_new_syn_reopens() {
    if !privileged("rst_closes_and_a_new_syn_reopens") {
        return;
    }
    for (local, remote) in families() {
        let t = Tracker::new(ENABLED);
        let (l, r) = handshake_out(&t, local, remote);
        t.receive(&tcp(r, l, seg(TcpFlags::RST | TcpFlags::ACK, 5001, 1001)));
        assert_eq!(state_of(&t.only_flow()), ct_state::CT_TCP_CLOSED);
        assert_eq!(t.stat(ct_stat::CT_STAT_CLOSED), 1);
        // data after the reset is invalid and changes nothing
        let invalid = t.stat(ct_stat::CT_STAT_INVALID);
        t.send(&tcp(l, r, data(1001, 5001, 10)));
        assert_eq!(t.stat(ct_stat::CT_STAT_INVALID), invalid + 1);
        // the same ports, a fresh connection
        t.send(&tcp(l, r, syn(77_000)));
        let f = t.only_flow();
        assert_eq!(state_of(&f), ct_state::CT_TCP_SYN_SENT);
        assert_eq!((f.orig.packets, f.reply.packets), (1, 0));
        assert_eq!(t.stat(ct_stat::CT_STAT_NEW), 2);

        // a refused connection: RST+ACK acknowledging the SYN
        let t = Tracker::new(ENABLED);
        let (l, r) = ((local, 40001), (remote, 81));
        t.send(&tcp(l, r, syn(1000)));
        t.receive(&tcp(r, l, seg(TcpFlags::RST | TcpFlags::ACK, 0, 1001)));
        assert_eq!(state_of(&t.only_flow()), ct_state::CT_TCP_CLOSED);
    }
}

#[test]
fn packets_without_a_flow_or_out_of_window_are_invalid() {
    if !privileged("packets_without_a_flow_or_out_of_window_are_invalid") {
        return;
    }
    for (local, remote) in families() {
        let t = Tracker::new(ENABLED);
        let (l, r) = ((local, 40000), (remote, 80));
        // mid-stream ACK, SYN-ACK, FIN without a SYN first: counted, no entry
        t.receive(&tcp(r, l, seg(TcpFlags::ACK, 1, 1)));
        t.receive(&tcp(r, l, syn_ack(1, 1)));
        t.send(&tcp(l, r, seg(TcpFlags::FIN | TcpFlags::ACK, 1, 1)));
        assert!(t.flows().is_empty());
        assert_eq!(t.stat(ct_stat::CT_STAT_INVALID), 3);

        let (l, r) = handshake_out(&t, local, remote);
        let before = t.only_flow();
        // far beyond what the peer's window allows, and acknowledging data never sent
        t.receive(&tcp(r, l, data(5001 + 50_000_000, 1001, 10)));
        t.receive(&tcp(r, l, data(5001, 1001 + 3_000_000, 10)));
        assert_eq!(t.stat(ct_stat::CT_STAT_INVALID), 5);
        let after = t.only_flow();
        assert_eq!(
            after.reply.packets, before.reply.packets,
            "invalid packets are not counted"
        );
        assert_eq!(state_of(&after), ct_state::CT_TCP_ESTABLISHED);
        // a SYN inside an established flow
        t.send(&tcp(l, r, syn(1001)));
        assert_eq!(t.stat(ct_stat::CT_STAT_INVALID), 6);
        // in-window traffic still flows
        t.receive(&tcp(r, l, data(5001, 1001, 1000)));
        assert_eq!(t.stat(ct_stat::CT_STAT_INVALID), 6);
        assert_eq!(t.only_flow().reply.packets, before.reply.packets + 1);
    }
}

#[test]
fn invalid_drop_policy_drops_on_tc() {
    if !privileged("invalid_drop_policy_drops_on_tc") {
        return;
    }
    for (local, remote) in families() {
        let t = Tracker::new("conntrack:\n  enabled: true\n  invalid: drop\n");
        let (l, r) = ((local, 40000), (remote, 80));
        assert_eq!(t.tc(true, &tcp(r, l, seg(TcpFlags::ACK, 1, 1))), TC_SHOT);
        assert_eq!(t.stat(ct_stat::CT_STAT_DROP_INVALID), 1);
        t.send(&tcp(l, r, syn(1000)));
    }
}

fn udp(src: (IpAddr, u16), dst: (IpAddr, u16)) -> Vec<u8> {
    PacketBuilder::new()
        .ip(src.0, dst.0)
        .udp(src.1, dst.1)
        .payload(b"query")
        .build()
}

fn echo(src: IpAddr, dst: IpAddr, request: bool, id: u16) -> Vec<u8> {
    let kind = match (src.is_ipv4(), request) {
        (true, true) => 8,
        (true, false) => 0,
        (false, true) => 128,
        (false, false) => 129,
    };
    PacketBuilder::new()
        .ip(src, dst)
        .icmp_echo(kind, id, 1)
        .payload(b"ping")
        .build()
}

#[test]
fn udp_and_icmp_echo_become_established_on_the_reply() {
    if !privileged("udp_and_icmp_echo_become_established_on_the_reply") {
        return;
    }
    for (local, remote) in families() {
        let t = Tracker::new(ENABLED);
        let (l, r) = ((local, 53000), (remote, 53));
        t.send(&udp(l, r));
        t.send(&udp(l, r));
        assert_eq!(state_of(&t.only_flow()), ct_state::CT_UDP_NEW);
        t.receive(&udp(r, l));
        let f = t.only_flow();
        assert_eq!(state_of(&f), ct_state::CT_UDP_ESTABLISHED);
        assert_eq!((f.orig.packets, f.reply.packets), (2, 1));
        assert_eq!((f.src, f.src_port, f.dst_port), (local, 53000, 53));

        let t = Tracker::new(ENABLED);
        // a reply nobody asked for
        t.receive(&echo(remote, local, false, 77));
        assert!(t.flows().is_empty());
        assert_eq!(t.stat(ct_stat::CT_STAT_INVALID), 1);
        t.send(&echo(local, remote, true, 77));
        assert_eq!(state_of(&t.only_flow()), ct_state::CT_ICMP_NEW);
        t.receive(&echo(remote, local, true, 77));
        assert_eq!(
            t.stat(ct_stat::CT_STAT_INVALID),
            2,
            "a request against the flow"
        );
        t.receive(&echo(remote, local, false, 77));
        let f = t.only_flow();
        assert_eq!(state_of(&f), ct_state::CT_ICMP_ESTABLISHED);
        assert_eq!((f.src, f.src_port, f.dst_port), (local, 77, 77));
        // another identifier is another flow
        t.send(&echo(local, remote, true, 78));
        assert_eq!(t.flows().len(), 2);
    }
}

/// An ICMP error from `from` about `quoted` (a frame this host sent).
fn icmp_error(from: IpAddr, to: IpAddr, quoted: &[u8]) -> Vec<u8> {
    let quote = &quoted[14..(14 + if to.is_ipv4() { 20 } else { 40 } + 8)];
    let b = PacketBuilder::new().ip(from, to);
    if to.is_ipv4() {
        b.icmp(3, 3).payload(quote).build()
    } else {
        b.icmpv6(1, 4).payload(quote).build()
    }
}

#[test]
fn icmp_errors_about_tracked_flows_are_related() {
    if !privileged("icmp_errors_about_tracked_flows_are_related") {
        return;
    }
    for (local, remote) in families() {
        let t = Tracker::new(
            "conntrack:\n  enabled: true\nfirewall:\n  rules:\n    - { id: no-new, action: drop, state: [new, invalid] }\n",
        );
        let (l, r) = ((local, 53001), (remote, 53));
        let query = udp(l, r);
        t.send(&query);
        let router: IpAddr = if local.is_ipv4() {
            "192.0.2.254".parse().unwrap()
        } else {
            "2001:db8:ffff::1".parse().unwrap()
        };
        // port unreachable from the peer, and from a router on the way
        assert_eq!(t.receive(&icmp_error(remote, local, &query)), XDP_PASS);
        assert_eq!(t.receive(&icmp_error(router, local, &query)), XDP_PASS);
        assert_eq!(t.stat(ct_stat::CT_STAT_RELATED), 2);
        assert_eq!(t.fw_stat(fw_stat::FW_STAT_PASS_TRACKED), 2);
        // an error about something this host never sent
        let other = udp((local, 53002), r);
        assert_eq!(t.receive(&icmp_error(remote, local, &other)), XDP_DROP);
        assert_eq!(t.stat(ct_stat::CT_STAT_RELATED), 2);
        // errors create no entry
        assert_eq!(t.flows().len(), 1);
    }
}

#[test]
fn drop_new_inbound_lets_replies_in() {
    if !privileged("drop_new_inbound_lets_replies_in") {
        return;
    }
    let yaml = "conntrack:\n  enabled: true\nfirewall:\n  rules:\n    - { id: no-new-inbound, action: drop, state: [new, invalid] }\n";
    for (local, remote) in families() {
        let t = Tracker::new(yaml);
        let (l, r) = ((local, 40000), (remote, 80));
        // unsolicited: a SYN, a UDP datagram, an echo request, a stray ACK
        assert_eq!(t.receive(&tcp(r, (local, 22), syn(1))), XDP_DROP);
        assert_eq!(t.receive(&udp((remote, 53), (local, 5353))), XDP_DROP);
        assert_eq!(t.receive(&echo(remote, local, true, 5)), XDP_DROP);
        assert_eq!(t.receive(&tcp(r, l, seg(TcpFlags::ACK, 1, 1))), XDP_DROP);
        assert_eq!(t.fw.hits("no-new-inbound"), 4);
        assert!(t.flows().is_empty(), "dropped packets never reach TC");
        // replies to what this host sent
        let fast = t.fw_stat(fw_stat::FW_STAT_PASS_TRACKED);
        assert_eq!(handshake_out(&t, local, remote), (l, r));
        t.send(&tcp(l, r, data(1001, 5001, 50)));
        assert_eq!(t.receive(&tcp(r, l, data(5001, 1051, 500))), XDP_PASS);
        t.send(&udp((local, 5353), (remote, 53)));
        assert_eq!(t.receive(&udp((remote, 53), (local, 5353))), XDP_PASS);
        t.send(&echo(local, remote, true, 5));
        assert_eq!(t.receive(&echo(remote, local, false, 5)), XDP_PASS);
        assert_eq!(t.fw_stat(fw_stat::FW_STAT_PASS_TRACKED), fast + 4);
        assert_eq!(t.stat(ct_stat::CT_STAT_FAST_PATH), fast + 4);
        assert_eq!(t.fw.hits("no-new-inbound"), 4);
        // out of window on an established flow: not on the fast path, dropped as invalid
        assert_eq!(
            t.receive(&tcp(r, l, data(5001 + 90_000_000, 1051, 5))),
            XDP_DROP
        );
    }
}

#[test]
fn rules_match_states_without_the_fast_path() {
    if !privileged("rules_match_states_without_the_fast_path") {
        return;
    }
    let yaml = "conntrack:\n  enabled: true\n  fast_path: false\nfirewall:\n  default_policy: drop\n  rules:\n    - { id: replies, action: pass, state: [established, related] }\n    - { id: ssh-in, action: pass, proto: tcp, dst_port: 22, state: [new] }\n";
    for (local, remote) in families() {
        let t = Tracker::new(yaml);
        let (l, r) = ((local, 22), (remote, 50000));
        assert_eq!(t.receive(&tcp(r, l, syn(1))), XDP_PASS);
        assert_eq!(t.fw.hits("ssh-in"), 1);
        t.send(&tcp(l, r, syn_ack(500, 2)));
        assert_eq!(t.receive(&tcp(r, l, seg(TcpFlags::ACK, 2, 501))), XDP_PASS);
        assert_eq!(t.fw.hits("replies"), 1);
        assert_eq!(t.fw_stat(fw_stat::FW_STAT_PASS_TRACKED), 0);
        // new, but not to port 22
        assert_eq!(t.receive(&tcp(r, (local, 80), syn(1))), XDP_DROP);
    }
}

#[test]
fn tracking_off_leaves_the_table_alone() {
    if !privileged("tracking_off_leaves_the_table_alone") {
        return;
    }
    let t = Tracker::new("conntrack:\n  enabled: false\n");
    for (local, remote) in families() {
        t.send(&udp((local, 1), (remote, 2)));
        assert_eq!(t.receive(&udp((remote, 2), (local, 1))), XDP_PASS);
    }
    assert!(t.flows().is_empty());
    assert_eq!(t.stat(ct_stat::CT_STAT_LOOKUPS), 0);
}

#[test]
fn idle_entries_expire_on_lookup_and_by_sweep() {
    if !privileged("idle_entries_expire_on_lookup_and_by_sweep") {
        return;
    }
    let t = Tracker::new(ENABLED);
    let mut cfg = ConntrackConfig {
        enabled: true,
        ..ConntrackConfig::default()
    };
    cfg.timeouts[ct_state::CT_UDP_NEW.0 as usize] = Duration::from_millis(50);
    t.settings(&cfg);
    let (local, remote): (IpAddr, IpAddr) = (LOCAL_V4.parse().unwrap(), REMOTE_V4.parse().unwrap());
    t.send(&udp((local, 1000), (remote, 53)));
    t.send(&udp((local, 1001), (remote, 53)));
    std::thread::sleep(Duration::from_millis(120));
    // a packet finds its entry expired: removed, and the packet opens a new one
    t.send(&udp((local, 1000), (remote, 53)));
    assert_eq!(t.stat(ct_stat::CT_STAT_EXPIRED), 1);
    assert_eq!(t.stat(ct_stat::CT_STAT_NEW), 3);
    let f = t.flows();
    assert_eq!(f.len(), 2);
    // the other idle entry goes with the sweep
    let report = t.ct.sweep(&cfg).expect("sweep");
    assert_eq!((report.removed, report.live), (1, 1), "{report:?}");
    assert_eq!(t.only_flow().src_port, 1000);
}

#[test]
fn a_full_table_evicts_the_oldest_and_keeps_tracking() {
    if !privileged("a_full_table_evicts_the_oldest_and_keeps_tracking") {
        return;
    }
    const SIZE: u32 = 4096;
    const FLOWS: u16 = 20_000;
    let t = Tracker::with(
        ENABLED,
        &LoadOptions {
            ct_table_size: Some(SIZE),
            ..LoadOptions::default()
        },
    );
    let remote: IpAddr = REMOTE_V6.parse().unwrap();
    let local: IpAddr = LOCAL_V6.parse().unwrap();
    let cfg = ConntrackConfig {
        enabled: true,
        ..ConntrackConfig::default()
    };
    // the eviction estimate counts from its first sample
    t.ct.sweep(&cfg).expect("first sweep");
    for port in 0..FLOWS {
        t.send(&udp((local, 10_000 + port), (remote, 53)));
    }
    let flows = t.flows();
    assert!(
        flows.len() <= SIZE as usize && flows.len() > SIZE as usize / 2,
        "{} entries",
        flows.len()
    );
    assert_eq!(t.stat(ct_stat::CT_STAT_NEW), u64::from(FLOWS));
    // the newest flow is there and still answers
    let last = 10_000 + FLOWS - 1;
    assert!(flows.iter().any(|f| f.src_port == last));
    t.receive(&udp((remote, 53), (local, last)));
    let f = t.flows();
    let newest = f.iter().find(|f| f.src_port == last).unwrap();
    assert_eq!(state_of(newest), ct_state::CT_UDP_ESTABLISHED);
    let report = t.ct.sweep(&cfg).expect("sweep");
    assert_eq!(
        report.evicted,
        u64::from(FLOWS) - report.live as u64,
        "{report:?}"
    );
}
