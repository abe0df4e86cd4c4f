//! xdp_firewall through BPF_PROG_TEST_RUN: verdict tables (packet in, verdict and counter
//! deltas out) for every match field, priorities across the CIDR tries and the classifier,
//! aliases, allowlist, default policy, monitor mode, events, and malformed packets.

mod common;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use common::{privileged, Firewall, VERDICT_SLOTS, XDP_DROP, XDP_PASS};
use ebpfsentinel::abi::fw_stat;
use ebpfsentinel::packet::{ExtHeader, PacketBuilder, TcpFlags};

struct Case {
    name: &'static str,
    frame: Vec<u8>,
    verdict: u32,
    slot: fw_stat,
    /// the rule whose hit counter must move
    rule: Option<&'static str>,
}

fn case(name: &'static str, frame: Vec<u8>, slot: fw_stat, rule: Option<&'static str>) -> Case {
    let drops = [
        fw_stat::FW_STAT_DROP_RULE,
        fw_stat::FW_STAT_DROP_DEFAULT,
        fw_stat::FW_STAT_DROP_MALFORMED,
    ];
    Case {
        name,
        frame,
        verdict: if drops.contains(&slot) {
            XDP_DROP
        } else {
            XDP_PASS
        },
        slot,
        rule,
    }
}

/// Runs each case and checks the verdict, that exactly one verdict slot moved (the expected
/// one) and that the expected rule's hit counter moved by one.
fn run_table(fw: &Firewall, cases: &[Case]) {
    for c in cases {
        let before = fw.stats();
        let hits_before = c.rule.map(|r| fw.hits(r));
        let verdict = fw.run(&c.frame);
        let after = fw.stats();
        assert_eq!(verdict, c.verdict, "{}: verdict", c.name);
        let delta = |s: fw_stat| after[s.0 as usize] - before[s.0 as usize];
        assert_eq!(delta(fw_stat::FW_STAT_SEEN), 1, "{}: seen", c.name);
        for s in VERDICT_SLOTS {
            let want = u64::from(s == c.slot);
            assert_eq!(delta(s), want, "{}: counter {:?}", c.name, s);
        }
        if let (Some(r), Some(b)) = (c.rule, hits_before) {
            assert_eq!(fw.hits(r) - b, 1, "{}: hits of {r}", c.name);
        }
    }
}

fn v4(s: &str) -> Ipv4Addr {
    s.parse().unwrap()
}

fn v6(s: &str) -> Ipv6Addr {
    s.parse().unwrap()
}

fn udp4(src: &str, dst: &str, sport: u16, dport: u16) -> Vec<u8> {
    PacketBuilder::new()
        .ipv4(v4(src), v4(dst))
        .udp(sport, dport)
        .payload(b"x")
        .build()
}

fn tcp4(src: &str, dst: &str, dport: u16, flags: TcpFlags) -> Vec<u8> {
    PacketBuilder::new()
        .ipv4(v4(src), v4(dst))
        .tcp(40000, dport, flags)
        .build()
}

fn tcp6(src: &str, dst: &str, dport: u16) -> Vec<u8> {
    PacketBuilder::new()
        .ipv6(v6(src), v6(dst))
        .tcp(40000, dport, TcpFlags::SYN)
        .build()
}

fn spamhaus_yaml() -> String {
    format!(
        r#"
firewall:
  allowlist: [198.51.100.0/24, "@monitoring"]
  aliases:
    spamhaus: {{ file: {}/spamhaus_drop.netset }}
    monitoring: {{ entries: [192.0.2.10, "2001:db8::10"] }}
  rules:
    - {{ id: drop-spamhaus, action: drop, src: "@spamhaus" }}
    - {{ id: no-telnet, action: drop, proto: tcp, dst_port: 23, log: true }}
    - {{ id: lan-dns, action: pass, proto: udp, src: 10.0.0.0/8, dst_port: "53", priority: 10 }}
    - {{ id: v6-net, action: drop, src: "2001:db8:bad::/48" }}
"#,
        common::feeds_dir().display()
    )
}

#[test]
fn spamhaus_example_verdicts() {
    if !privileged("spamhaus_example_verdicts") {
        return;
    }
    let fw = Firewall::load(&spamhaus_yaml());
    use fw_stat as S;
    run_table(
        &fw,
        &[
            // 1.10.16.0/20 and 223.254.0.0/16 are in the capture of Spamhaus DROP we ship
            case(
                "listed source, first prefix",
                udp4("1.10.16.9", "192.0.2.1", 5, 53),
                S::FW_STAT_DROP_RULE,
                Some("drop-spamhaus"),
            ),
            case(
                "listed source, last byte",
                udp4("1.10.31.255", "192.0.2.1", 5, 9),
                S::FW_STAT_DROP_RULE,
                Some("drop-spamhaus"),
            ),
            case(
                "just outside a listed prefix",
                udp4("1.10.32.0", "192.0.2.1", 5, 9),
                S::FW_STAT_PASS_DEFAULT,
                None,
            ),
            case(
                "clean source",
                udp4("192.0.2.99", "192.0.2.1", 5, 9),
                S::FW_STAT_PASS_DEFAULT,
                None,
            ),
            case(
                "telnet v4",
                tcp4("192.0.2.99", "192.0.2.1", 23, TcpFlags::SYN),
                S::FW_STAT_DROP_RULE,
                Some("no-telnet"),
            ),
            case(
                "telnet v6",
                tcp6("2001:db8:1::1", "2001:db8:2::1", 23),
                S::FW_STAT_DROP_RULE,
                Some("no-telnet"),
            ),
            case(
                "telnet over udp passes",
                udp4("192.0.2.99", "192.0.2.1", 5, 23),
                S::FW_STAT_PASS_DEFAULT,
                None,
            ),
            case(
                "lan dns",
                udp4("10.1.2.3", "192.0.2.1", 5, 53),
                S::FW_STAT_PASS_RULE,
                Some("lan-dns"),
            ),
            case(
                "v6 net",
                tcp6("2001:db8:bad:1::5", "2001:db8::1", 443),
                S::FW_STAT_DROP_RULE,
                Some("v6-net"),
            ),
            case(
                "v6 next to the net",
                tcp6("2001:db8:bae::5", "2001:db8::1", 443),
                S::FW_STAT_PASS_DEFAULT,
                None,
            ),
            case(
                "allowlisted cidr to telnet",
                tcp4("198.51.100.7", "192.0.2.1", 23, TcpFlags::SYN),
                S::FW_STAT_PASS_ALLOWLIST,
                None,
            ),
            case(
                "allowlisted alias member",
                tcp4("192.0.2.10", "192.0.2.1", 23, TcpFlags::SYN),
                S::FW_STAT_PASS_ALLOWLIST,
                None,
            ),
            case(
                "allowlisted v6 alias member",
                tcp6("2001:db8::10", "2001:db8::1", 23),
                S::FW_STAT_PASS_ALLOWLIST,
                None,
            ),
            case(
                "arp is not ip",
                PacketBuilder::new()
                    .ethertype(0x0806)
                    .payload(&[0u8; 28])
                    .build(),
                S::FW_STAT_PASS_NON_IP,
                None,
            ),
        ],
    );
}

#[test]
fn priority_holds_across_tries_hashes_and_classifier() {
    if !privileged("priority_holds_across_tries_hashes_and_classifier") {
        return;
    }
    let fw = Firewall::load(
        r#"
firewall:
  rules:
    - { id: big-drop, action: drop, src: 10.0.0.0/8, priority: 50 }
    - { id: small-pass, action: pass, src: 10.1.0.0/16, priority: 60 }
    - { id: general-dns, action: pass, proto: udp, dst_port: 53, priority: 10 }
    - { id: host-pass, action: pass, src: 10.9.9.9, priority: 5 }
    - { id: dst-drop, action: drop, dst: 192.0.2.0/24, priority: 70 }
    - { id: first-of-equals, action: pass, src: 172.16.0.0/12, priority: 80 }
    - { id: second-of-equals, action: drop, src: 172.16.0.0/16, priority: 80 }
    - { id: late-general, action: pass, proto: tcp, dst_port: 80, priority: 90 }
"#,
    );
    use fw_stat as S;
    run_table(
        &fw,
        &[
            case(
                "lower priority number beats longer prefix",
                udp4("10.1.2.3", "203.0.113.1", 5, 9),
                S::FW_STAT_DROP_RULE,
                Some("big-drop"),
            ),
            case(
                "general rule beats CIDR rule by priority",
                udp4("10.1.2.3", "203.0.113.1", 5, 53),
                S::FW_STAT_PASS_RULE,
                Some("general-dns"),
            ),
            case(
                "host route in the exact hash wins",
                udp4("10.9.9.9", "203.0.113.1", 5, 53),
                S::FW_STAT_PASS_RULE,
                Some("host-pass"),
            ),
            case(
                "destination rule",
                udp4("203.0.113.5", "192.0.2.8", 5, 9),
                S::FW_STAT_DROP_RULE,
                Some("dst-drop"),
            ),
            case(
                "source rule beats destination rule",
                udp4("10.1.2.3", "192.0.2.8", 5, 9),
                S::FW_STAT_DROP_RULE,
                Some("big-drop"),
            ),
            case(
                "equal priority keeps file order",
                udp4("172.16.5.5", "203.0.113.1", 5, 9),
                S::FW_STAT_PASS_RULE,
                Some("first-of-equals"),
            ),
            case(
                "CIDR rule beats later general rule",
                tcp4("10.2.0.1", "203.0.113.1", 80, TcpFlags::SYN),
                S::FW_STAT_DROP_RULE,
                Some("big-drop"),
            ),
            case(
                "general rule alone",
                tcp4("203.0.113.9", "203.0.113.1", 80, TcpFlags::SYN),
                S::FW_STAT_PASS_RULE,
                Some("late-general"),
            ),
        ],
    );
}

#[test]
fn every_match_field() {
    if !privileged("every_match_field") {
        return;
    }
    let fw = Firewall::load(
        r#"
firewall:
  aliases:
    bad: { entries: [192.0.2.0/28, "2001:db8:1::/64"] }
  rules:
    - { id: gre, action: drop, proto: 47 }
    - { id: sport-range, action: drop, proto: udp, src_port: "1000-1999" }
    - { id: dport, action: drop, proto: tcp, dst_port: 8443 }
    - { id: vlan100, action: drop, vlan: 100 }
    - { id: untagged-ntp, action: drop, vlan: untagged, proto: udp, dst_port: 123 }
    - { id: syn-only, action: drop, proto: tcp, tcp_flags: "S/SA", dst_port: 8080 }
    - { id: echo4, action: drop, proto: icmp, icmp_type: 8 }
    - { id: unreach-port, action: drop, proto: icmp, icmp_type: 3, icmp_code: 3 }
    - { id: echo6, action: drop, proto: icmpv6, icmp_type: 128 }
    - { id: alias-ssh, action: drop, proto: tcp, dst_port: 22, src: "@bad" }
    - { id: src-and-dst, action: drop, src: 198.18.0.0/15, dst: 198.51.100.0/24 }
    - { id: frag-net, action: drop, src: 203.0.113.0/24 }
"#,
    );
    use fw_stat as S;
    let b = || PacketBuilder::new();
    let pass = S::FW_STAT_PASS_DEFAULT;
    let drop = S::FW_STAT_DROP_RULE;
    run_table(
        &fw,
        &[
            case(
                "gre",
                b().ipv4(v4("192.0.2.200"), v4("192.0.2.1"))
                    .proto(47)
                    .payload(&[0; 8])
                    .build(),
                drop,
                Some("gre"),
            ),
            case(
                "gre v6",
                b().ipv6(v6("2001:db8:9::1"), v6("2001:db8::1"))
                    .proto(47)
                    .payload(&[0; 8])
                    .build(),
                drop,
                Some("gre"),
            ),
            case(
                "sport low edge",
                udp4("192.0.2.200", "192.0.2.1", 1000, 9),
                drop,
                Some("sport-range"),
            ),
            case(
                "sport high edge",
                udp4("192.0.2.200", "192.0.2.1", 1999, 9),
                drop,
                Some("sport-range"),
            ),
            case(
                "sport above",
                udp4("192.0.2.200", "192.0.2.1", 2000, 9),
                pass,
                None,
            ),
            case(
                "sport below",
                udp4("192.0.2.200", "192.0.2.1", 999, 9),
                pass,
                None,
            ),
            case(
                "dport",
                tcp4("192.0.2.200", "192.0.2.1", 8443, TcpFlags::ACK),
                drop,
                Some("dport"),
            ),
            case(
                "dport other",
                tcp4("192.0.2.200", "192.0.2.1", 8444, TcpFlags::ACK),
                pass,
                None,
            ),
            case(
                "vlan 100",
                b().vlan(100)
                    .ipv4(v4("192.0.2.200"), v4("192.0.2.1"))
                    .udp(1, 2)
                    .build(),
                drop,
                Some("vlan100"),
            ),
            case(
                "vlan 100 with priority bits",
                b().vlan(0xe000 | 100)
                    .ipv4(v4("192.0.2.200"), v4("192.0.2.1"))
                    .udp(1, 2)
                    .build(),
                drop,
                Some("vlan100"),
            ),
            case(
                "vlan 101",
                b().vlan(101)
                    .ipv4(v4("192.0.2.200"), v4("192.0.2.1"))
                    .udp(1, 2)
                    .build(),
                pass,
                None,
            ),
            case(
                "qinq outer 100",
                b().qinq(100, 5)
                    .ipv6(v6("2001:db8:9::1"), v6("2001:db8::1"))
                    .udp(1, 2)
                    .build(),
                drop,
                Some("vlan100"),
            ),
            case(
                "qinq inner 100 only",
                b().qinq(5, 100)
                    .ipv4(v4("192.0.2.200"), v4("192.0.2.1"))
                    .udp(1, 2)
                    .build(),
                pass,
                None,
            ),
            case(
                "untagged ntp",
                udp4("192.0.2.200", "192.0.2.1", 5, 123),
                drop,
                Some("untagged-ntp"),
            ),
            case(
                "tagged ntp",
                b().vlan(7)
                    .ipv4(v4("192.0.2.200"), v4("192.0.2.1"))
                    .udp(5, 123)
                    .build(),
                pass,
                None,
            ),
            case(
                "syn",
                tcp4("192.0.2.200", "192.0.2.1", 8080, TcpFlags::SYN),
                drop,
                Some("syn-only"),
            ),
            case(
                "syn+ack",
                tcp4(
                    "192.0.2.200",
                    "192.0.2.1",
                    8080,
                    TcpFlags::SYN | TcpFlags::ACK,
                ),
                pass,
                None,
            ),
            case(
                "syn+ece",
                tcp4(
                    "192.0.2.200",
                    "192.0.2.1",
                    8080,
                    TcpFlags::SYN | TcpFlags::ECE,
                ),
                drop,
                Some("syn-only"),
            ),
            case(
                "echo request",
                b().ipv4(v4("192.0.2.200"), v4("192.0.2.1"))
                    .icmp(8, 0)
                    .build(),
                drop,
                Some("echo4"),
            ),
            case(
                "echo reply",
                b().ipv4(v4("192.0.2.200"), v4("192.0.2.1"))
                    .icmp(0, 0)
                    .build(),
                pass,
                None,
            ),
            case(
                "port unreachable",
                b().ipv4(v4("192.0.2.200"), v4("192.0.2.1"))
                    .icmp(3, 3)
                    .build(),
                drop,
                Some("unreach-port"),
            ),
            case(
                "host unreachable",
                b().ipv4(v4("192.0.2.200"), v4("192.0.2.1"))
                    .icmp(3, 1)
                    .build(),
                pass,
                None,
            ),
            case(
                "icmpv6 echo",
                b().ipv6(v6("2001:db8:9::1"), v6("2001:db8::1"))
                    .icmpv6(128, 0)
                    .build(),
                drop,
                Some("echo6"),
            ),
            case(
                "icmpv6 type 8 is not icmp echo",
                b().ipv6(v6("2001:db8:9::1"), v6("2001:db8::1"))
                    .icmpv6(8, 0)
                    .build(),
                pass,
                None,
            ),
            case(
                "alias member ssh",
                tcp4("192.0.2.5", "192.0.2.1", 22, TcpFlags::SYN),
                drop,
                Some("alias-ssh"),
            ),
            case(
                "alias non-member ssh",
                tcp4("192.0.2.17", "192.0.2.1", 22, TcpFlags::SYN),
                pass,
                None,
            ),
            case(
                "alias v6 member ssh",
                tcp6("2001:db8:1::77", "2001:db8::1", 22),
                drop,
                Some("alias-ssh"),
            ),
            case(
                "alias v6 member through extension headers",
                b().ipv6(v6("2001:db8:1::77"), v6("2001:db8::1"))
                    .ipv6_ext(ExtHeader::HopByHop)
                    .ipv6_ext(ExtHeader::DestOpts)
                    .ipv6_ext(ExtHeader::Routing)
                    .tcp(1, 22, TcpFlags::SYN)
                    .build(),
                drop,
                Some("alias-ssh"),
            ),
            case(
                "src and dst",
                udp4("198.19.3.4", "198.51.100.9", 1, 2),
                drop,
                Some("src-and-dst"),
            ),
            case(
                "src without dst",
                udp4("198.19.3.4", "198.51.101.9", 1, 2),
                pass,
                None,
            ),
            case(
                "first fragment keeps ports",
                b().ipv4(v4("192.0.2.200"), v4("192.0.2.1"))
                    .fragment(0, true)
                    .tcp(1, 8443, TcpFlags::ACK)
                    .build(),
                drop,
                Some("dport"),
            ),
            case(
                "later fragment has no ports",
                b().ipv4(v4("192.0.2.200"), v4("192.0.2.1"))
                    .fragment(64, false)
                    .proto(6)
                    .payload(&[0; 24])
                    .build(),
                pass,
                None,
            ),
            case(
                "later fragment still meets address rules",
                b().ipv4(v4("203.0.113.7"), v4("192.0.2.1"))
                    .fragment(64, false)
                    .proto(17)
                    .payload(&[0; 24])
                    .build(),
                drop,
                Some("frag-net"),
            ),
            case(
                "v6 later fragment has no ports",
                b().ipv6(v6("2001:db8:1::77"), v6("2001:db8::1"))
                    .ipv6_ext(ExtHeader::Fragment {
                        offset: 8,
                        more: false,
                    })
                    .proto(6)
                    .payload(&[0; 24])
                    .build(),
                pass,
                None,
            ),
        ],
    );
}

#[test]
fn default_drop_and_monitor_mode() {
    if !privileged("default_drop_and_monitor_mode") {
        return;
    }
    let yaml = |mode: &str| {
        format!(
            r#"
firewall:
  mode: {mode}
  default_policy: drop
  rules:
    - {{ id: web, action: pass, proto: tcp, dst_port: 443 }}
    - {{ id: noisy, action: drop, src: 192.0.2.66, priority: 50 }}
"#
        )
    };
    use fw_stat as S;
    let mut fw = Firewall::load(&yaml("enforce"));
    run_table(
        &fw,
        &[
            case(
                "allowed",
                tcp4("192.0.2.1", "192.0.2.2", 443, TcpFlags::SYN),
                S::FW_STAT_PASS_RULE,
                Some("web"),
            ),
            case(
                "default drop",
                udp4("192.0.2.1", "192.0.2.2", 1, 443),
                S::FW_STAT_DROP_DEFAULT,
                None,
            ),
            case(
                "rule drop",
                tcp4("192.0.2.66", "192.0.2.2", 443, TcpFlags::SYN),
                S::FW_STAT_DROP_RULE,
                Some("noisy"),
            ),
        ],
    );

    fw.apply(&yaml("monitor"));
    let events_before = fw.stats()[S::FW_STAT_EVENTS_SENT.0 as usize];
    run_table(
        &fw,
        &[
            case(
                "allowed",
                tcp4("192.0.2.1", "192.0.2.2", 443, TcpFlags::SYN),
                S::FW_STAT_PASS_RULE,
                Some("web"),
            ),
            case(
                "default drop only counted",
                udp4("192.0.2.1", "192.0.2.2", 1, 443),
                S::FW_STAT_PASS_MONITOR,
                None,
            ),
            case(
                "rule drop only counted",
                tcp4("192.0.2.66", "192.0.2.2", 443, TcpFlags::SYN),
                S::FW_STAT_PASS_MONITOR,
                Some("noisy"),
            ),
        ],
    );
    assert_eq!(
        fw.stats()[S::FW_STAT_EVENTS_SENT.0 as usize] - events_before,
        2,
        "monitor mode logs each would-be drop"
    );
}

#[test]
fn log_flag_emits_a_decodable_event() {
    if !privileged("log_flag_emits_a_decodable_event") {
        return;
    }
    let fw = Firewall::load(
        r#"
firewall:
  rules:
    - { id: quiet, action: drop, proto: udp, dst_port: 9 }
    - { id: logged, action: drop, proto: tcp, dst_port: 23, log: true }
    - { id: logged-pass, action: pass, src: "2001:db8::/32", log: true }
"#,
    );
    let events = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let sink = events.clone();
    let names: Vec<String> = fw.ruleset.ranks.iter().map(|r| r.id.clone()).collect();
    let clock = ebpfsentinel::events::Clock::now();
    let mut rb = libbpf_rs::RingBufferBuilder::new();
    rb.add(&fw.dp.firewall.maps.events, move |data: &[u8]| {
        let ev =
            ebpfsentinel::events::decode(data, &clock, |_, _, r| names.get(r as usize).cloned())
                .expect("56-byte record");
        sink.lock()
            .unwrap()
            .push(serde_json::to_value(&ev).unwrap());
        0
    })
    .unwrap();
    let rb = rb.build().unwrap();
    rb.consume().unwrap();
    events.lock().unwrap().clear();

    assert_eq!(fw.run(&udp4("192.0.2.1", "192.0.2.2", 4, 9)), XDP_DROP);
    assert_eq!(
        fw.run(
            &PacketBuilder::new()
                .vlan(42)
                .ipv4(v4("192.0.2.1"), v4("192.0.2.2"))
                .tcp(1234, 23, TcpFlags::SYN)
                .build()
        ),
        XDP_DROP
    );
    assert_eq!(fw.run(&tcp6("2001:db8::5", "2001:db8::6", 80)), XDP_PASS);
    rb.consume().unwrap();
    let got = events.lock().unwrap().clone();
    assert_eq!(got.len(), 2, "only logged rules report: {got:?}");
    let ev = &got[0];
    assert_eq!(ev["event_type"], "firewall");
    assert_eq!(ev["action"], "drop");
    assert_eq!(ev["rule_id"], "logged");
    assert_eq!(ev["src_ip"], "192.0.2.1");
    assert_eq!(ev["dest_ip"], "192.0.2.2");
    assert_eq!(ev["src_port"], 1234);
    assert_eq!(ev["dest_port"], 23);
    assert_eq!(ev["proto"], "TCP");
    assert_eq!(ev["vlan"], 42);
    assert!(ev["timestamp"].as_str().unwrap().starts_with("20"));
    let ev6 = &got[1];
    assert_eq!(ev6["action"], "pass");
    assert_eq!(ev6["rule_id"], "logged-pass");
    assert_eq!(ev6["src_ip"], "2001:db8::5");
}

/// Well-formed base packets, one per header chain the parser walks.
fn malformed_bases() -> Vec<(&'static str, Vec<u8>, ebpfsentinel::packet::Layout)> {
    let b = || PacketBuilder::new();
    let mut out = Vec::new();
    let mut add = |name, builder: PacketBuilder| {
        let (frame, layout) = builder.build_with_layout();
        out.push((name, frame, layout));
    };
    add(
        "v4 tcp with options",
        b().ipv4(v4("192.0.2.1"), v4("192.0.2.2"))
            .ipv4_options(&[1, 1, 1, 1, 1, 1, 1, 0])
            .tcp(1, 2, TcpFlags::SYN)
            .payload(b"abcd"),
    );
    add(
        "v4 udp in vlan",
        b().vlan(3)
            .ipv4(v4("192.0.2.1"), v4("192.0.2.2"))
            .udp(1, 2)
            .payload(b"abcd"),
    );
    add(
        "v4 icmp in qinq",
        b().qinq(10, 20)
            .ipv4(v4("192.0.2.1"), v4("192.0.2.2"))
            .icmp(8, 0)
            .payload(b"abcd"),
    );
    add(
        "v6 ext udp",
        b().ipv6(v6("2001:db8::1"), v6("2001:db8::2"))
            .ipv6_ext(ExtHeader::HopByHop)
            .ipv6_ext(ExtHeader::Routing)
            .ipv6_ext(ExtHeader::Fragment {
                offset: 0,
                more: true,
            })
            .ipv6_ext(ExtHeader::DestOpts)
            .udp(1, 2)
            .payload(b"abcd"),
    );
    add(
        "v6 icmpv6 in vlan",
        b().vlan(9)
            .ipv6(v6("2001:db8::1"), v6("2001:db8::2"))
            .icmpv6(128, 0)
            .payload(b"abcd"),
    );
    add(
        "v6 tcp",
        b().ipv6(v6("2001:db8::1"), v6("2001:db8::2"))
            .tcp(1, 2, TcpFlags::ACK),
    );
    out
}

#[test]
fn every_truncation_point_is_malformed() {
    if !privileged("every_truncation_point_is_malformed") {
        return;
    }
    let yaml = |malformed: &str| {
        format!("firewall:\n  malformed: {malformed}\n  rules:\n    - {{ id: all-v4, action: pass, src: 0.0.0.0/0 }}\n    - {{ id: all-v6, action: pass, src: \"::/0\" }}\n")
    };
    let mut fw = Firewall::load(&yaml("drop"));
    for (malformed, slot) in [
        ("drop", fw_stat::FW_STAT_DROP_MALFORMED),
        ("pass", fw_stat::FW_STAT_PASS_MALFORMED),
    ] {
        fw.apply(&yaml(malformed));
        let mut cases = Vec::new();
        for (name, frame, layout) in malformed_bases() {
            // the intact packet passes by its rule
            cases.push(case(name, frame.clone(), fw_stat::FW_STAT_PASS_RULE, None));
            // XDP test runs need a whole Ethernet header; shorter frames never reach XDP
            for len in 14..frame.len() {
                let header = layout.header_at(len).expect("inside the frame");
                let name: &'static str =
                    Box::leak(format!("{name} cut at {len} ({header:?})").into_boxed_str());
                cases.push(case(name, frame[..len].to_vec(), slot, None));
            }
        }
        run_table(&fw, &cases);
    }
}

#[test]
fn inconsistent_headers_are_malformed() {
    if !privileged("inconsistent_headers_are_malformed") {
        return;
    }
    let fw =
        Firewall::load("firewall:\n  rules:\n    - { id: all, action: pass, src: 0.0.0.0/0 }\n");
    let base = tcp4("192.0.2.1", "192.0.2.2", 80, TcpFlags::SYN);
    let edit = |off: usize, v: u8| {
        let mut f = base.clone();
        f[off] = v;
        f
    };
    let s = fw_stat::FW_STAT_DROP_MALFORMED;
    let b = || PacketBuilder::new();
    let mut seven = b().ipv6(v6("2001:db8::1"), v6("2001:db8::2"));
    for _ in 0..7 {
        seven = seven.ipv6_ext(ExtHeader::DestOpts);
    }
    let mut triple = b()
        .qinq(1, 2)
        .ipv4(v4("192.0.2.1"), v4("192.0.2.2"))
        .udp(1, 2)
        .build();
    // turn the encapsulated ethertype of the inner tag into a third tag
    triple.splice(20..20, [0x81, 0x00, 0x00, 0x03]);
    run_table(
        &fw,
        &[
            case("ihl 4", edit(14, 0x44), s, None),
            case("version 6 in an IPv4 frame", edit(14, 0x65), s, None),
            case("total length beyond the frame", edit(17, 0xff), s, None),
            case(
                "total length shorter than the header",
                edit(17, 10),
                s,
                None,
            ),
            case("tcp data offset 4", edit(14 + 20 + 12, 0x40), s, None),
            case(
                "tcp data offset beyond the frame",
                edit(14 + 20 + 12, 0xf0),
                s,
                None,
            ),
            case("seven extension headers", seven.udp(1, 2).build(), s, None),
            case("three vlan tags", triple, s, None),
        ],
    );
}

#[test]
fn reload_flips_the_whole_ruleset() {
    if !privileged("reload_flips_the_whole_ruleset") {
        return;
    }
    let a = "firewall:\n  rules:\n    - { id: a, action: drop, src: 192.0.2.0/24 }\n";
    let b = "firewall:\n  default_policy: drop\n  rules:\n    - { id: b, action: pass, src: 192.0.2.0/24 }\n";
    let mut fw = Firewall::load(a);
    let pkt = udp4("192.0.2.9", "198.51.100.1", 1, 2);
    let other = udp4("203.0.113.9", "198.51.100.1", 1, 2);
    for round in 0..4 {
        let (drop_pkt, drop_other) = if round % 2 == 0 {
            (XDP_DROP, XDP_PASS)
        } else {
            (XDP_PASS, XDP_DROP)
        };
        assert_eq!(fw.run(&pkt), drop_pkt, "round {round}");
        assert_eq!(fw.run(&other), drop_other, "round {round}");
        fw.apply(if round % 2 == 0 { b } else { a });
    }
}

#[test]
fn four_thousand_general_rules_per_family() {
    if !privileged("four_thousand_general_rules_per_family") {
        return;
    }
    let mut yaml = String::from("firewall:\n  rules:\n");
    for i in 0..4096u32 {
        yaml += &format!(
            "    - {{ id: v4-{i}, action: drop, proto: udp, src: 10.{}.{}.0/24, dst_port: {} }}\n",
            i / 256,
            i % 256,
            1024 + i
        );
        yaml += &format!(
            "    - {{ id: v6-{i}, action: drop, proto: udp, src: \"2001:db8:{i:x}::/48\", dst_port: {} }}\n",
            1024 + i
        );
    }
    let fw = Firewall::load(&yaml);
    use fw_stat as S;
    run_table(
        &fw,
        &[
            case(
                "first v4",
                udp4("10.0.0.1", "192.0.2.1", 1, 1024),
                S::FW_STAT_DROP_RULE,
                Some("v4-0"),
            ),
            case(
                "last v4",
                udp4("10.15.255.1", "192.0.2.1", 1, 1024 + 4095),
                S::FW_STAT_DROP_RULE,
                Some("v4-4095"),
            ),
            case(
                "v4 port of another rule",
                udp4("10.15.255.1", "192.0.2.1", 1, 1024 + 4094),
                S::FW_STAT_PASS_DEFAULT,
                None,
            ),
            case(
                "last v6",
                PacketBuilder::new()
                    .ip(
                        IpAddr::V6(v6("2001:db8:fff::1")),
                        IpAddr::V6(v6("2001:db8::1")),
                    )
                    .udp(1, 1024 + 4095)
                    .build(),
                S::FW_STAT_DROP_RULE,
                Some("v6-4095"),
            ),
        ],
    );

    yaml +=
        "    - { id: one-too-many, action: drop, proto: udp, src: 10.200.0.0/24, dst_port: 9 }\n";
    let cfg = ebpfsentinel::config::parse_str(&yaml, std::path::Path::new("x.yaml")).unwrap();
    let err = ebpfsentinel::ruleset::compile(&cfg.firewall)
        .unwrap_err()
        .to_string();
    assert!(err.contains("4097 general IPv4 rules"), "{err}");
}

/// The same matches whether a classifier address dimension is kept as one hash per prefix
/// length (few lengths) or in the trie (more than FW_CLS_HASH_LENS lengths).
#[test]
fn classifier_addresses_in_hash_and_trie_mode() {
    if !privileged("classifier_addresses_in_hash_and_trie_mode") {
        return;
    }
    let few = "[10.0.0.0/8, 192.0.2.0/24, 198.51.100.7]";
    let many =
        "[10.0.0.0/8, 172.16.0.0/12, 192.0.2.0/24, 198.51.100.0/28, 198.51.100.7, 203.0.113.0/25]";
    for (label, members, hashed) in [("hash", few, true), ("trie", many, false)] {
        let fw = Firewall::load(&format!(
            r#"
firewall:
  aliases:
    nets: {{ entries: {members} }}
    v6: {{ entries: ["2001:db8::/32", "2001:db8:1::/48", "2001:db8:1:2::/64", "2001:db8:1:2::9", "2001:db8:1:2::/120"] }}
  rules:
    - {{ id: to-ssh, action: drop, proto: tcp, dst_port: 22, src: "@nets" }}
    - {{ id: from-any-to-nets, action: drop, proto: udp, dst: "@nets" }}
    - {{ id: v6-ssh, action: drop, proto: tcp, dst_port: 22, src: "@v6" }}
"#
        ));
        let lens = &fw.ruleset.classifiers[0].hash_lens;
        assert_eq!(
            !lens[0].is_empty(),
            hashed,
            "{label}: v4 source dimension mode"
        );
        assert!(
            fw.ruleset.classifiers[1].hash_lens[0].is_empty(),
            "v6 has 5 lengths: trie"
        );
        use fw_stat as S;
        let (drop, pass) = (S::FW_STAT_DROP_RULE, S::FW_STAT_PASS_DEFAULT);
        run_table(
            &fw,
            &[
                case(
                    "inside the /8",
                    tcp4("10.200.1.1", "192.0.2.1", 22, TcpFlags::SYN),
                    drop,
                    Some("to-ssh"),
                ),
                case(
                    "inside the /24",
                    tcp4("192.0.2.77", "192.0.2.1", 22, TcpFlags::SYN),
                    drop,
                    Some("to-ssh"),
                ),
                case(
                    "the host",
                    tcp4("198.51.100.7", "192.0.2.1", 22, TcpFlags::SYN),
                    drop,
                    Some("to-ssh"),
                ),
                case(
                    "next to the host",
                    tcp4("198.51.100.6", "192.0.2.1", 22, TcpFlags::SYN),
                    if hashed { pass } else { drop },
                    if hashed { None } else { Some("to-ssh") },
                ),
                case(
                    "outside",
                    tcp4("11.0.0.1", "192.0.2.1", 22, TcpFlags::SYN),
                    pass,
                    None,
                ),
                case(
                    "destination member",
                    udp4("11.0.0.1", "10.1.2.3", 5, 9),
                    drop,
                    Some("from-any-to-nets"),
                ),
                case(
                    "destination non-member",
                    udp4("11.0.0.1", "11.1.2.3", 5, 9),
                    pass,
                    None,
                ),
                case(
                    "v6 host",
                    tcp6("2001:db8:1:2::9", "2001:db8::1", 22),
                    drop,
                    Some("v6-ssh"),
                ),
                case(
                    "v6 /32",
                    tcp6("2001:db8:ffff::1", "2001:db8::1", 22),
                    drop,
                    Some("v6-ssh"),
                ),
                case(
                    "v6 outside",
                    tcp6("2001:db9::1", "2001:db8::1", 22),
                    pass,
                    None,
                ),
            ],
        );
    }
}
