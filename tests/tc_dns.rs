//! tc_dns through BPF_PROG_TEST_RUN: queries run through the TC entry programs with the DNS
//! slot filled. Verdict tables (exact domain, subdomains, a name that only ends in the same
//! letters, case, v4 and v6, UDP and TCP, both hooks), malformed and truncated names,
//! responses, the name limits, the events with the name, and exact counters. The domain keys
//! are computed in Rust (maps::dns) and found by the kernel's own walk, so the two hash
//! implementations are checked against each other on every match.

mod common;

use std::cell::RefCell;
use std::net::IpAddr;
use std::rc::Rc;

use common::{privileged, Firewall};
use ebpfsentinel::abi::tc_stage;
use ebpfsentinel::dns::{query, query_raw, wire_name, TYPE_A, TYPE_AAAA};
use ebpfsentinel::events::{self, Clock, EveEvent};
use ebpfsentinel::feeds::domains::DnsAction;
use ebpfsentinel::maps::dns::{dns_stat, Blocklist, DnsMaps, LIST_CONFIG, LIST_RUNTIME};
use ebpfsentinel::packet::{PacketBuilder, TcpFlags};

const TC_NEXT: i32 = -1;
const TC_SHOT: i32 = 2;

struct Dns {
    fw: Firewall,
    maps: DnsMaps,
}

impl Dns {
    /// `domains`: (domain, list, action) as the daemon would install them.
    fn new(domains: &[(&str, u16, DnsAction)]) -> Dns {
        let fw = Firewall::load("firewall: {}\n");
        let maps = fw.dp.dns_maps().expect("dns maps");
        let mut want = Blocklist::default();
        for (d, list, action) in domains {
            want.add(d, *list, *action);
        }
        maps.sync(&want).expect("sync");
        maps.set_enabled(true).expect("settings");
        fw.dp
            .set_tc_stage(tc_stage::TC_STAGE_DNS, true)
            .expect("dns slot");
        Dns { fw, maps }
    }

    fn ingress(&self, frame: &[u8]) -> i32 {
        self.fw.tc(true, frame).0
    }

    fn stats(&self) -> Vec<u64> {
        self.maps.stats().expect("dns stats").to_vec()
    }

    fn stat(&self, s: dns_stat) -> u64 {
        self.stats()[s.0 as usize]
    }
}

fn udp_frame(src: &str, dst: &str, msg: &[u8]) -> Vec<u8> {
    PacketBuilder::new()
        .ip(src.parse().unwrap(), dst.parse().unwrap())
        .udp(40000, 53)
        .payload(msg)
        .build()
}

fn udp4(msg: &[u8]) -> Vec<u8> {
    udp_frame("192.0.2.10", "198.51.100.53", msg)
}

fn tcp_frame(src: &str, dst: &str, msg: &[u8], prefix: Option<u16>) -> Vec<u8> {
    let mut payload = prefix.unwrap_or(msg.len() as u16).to_be_bytes().to_vec();
    payload.extend_from_slice(msg);
    PacketBuilder::new()
        .ip(src.parse().unwrap(), dst.parse().unwrap())
        .tcp(40000, 53, TcpFlags::PSH | TcpFlags::ACK)
        .payload(&payload)
        .build()
}

const BLOCKLIST: &[(&str, u16, DnsAction)] = &[
    ("example.com", LIST_CONFIG, DnsAction::Drop),
    ("ads.tracker.net", 1, DnsAction::Drop),
    ("watch.example.org", 2, DnsAction::Alert),
];

#[test]
fn verdicts_by_name_family_transport_and_hook() {
    if !privileged("verdicts_by_name_family_transport_and_hook") {
        return;
    }
    let t = Dns::new(BLOCKLIST);
    let cases: &[(&str, i32)] = &[
        ("example.com", TC_SHOT),
        ("a.b.example.com", TC_SHOT),
        ("www.example.com", TC_SHOT),
        ("EXAMPLE.com", TC_SHOT),
        ("wWw.ExAmPlE.CoM", TC_SHOT),
        ("badexample.com", TC_NEXT),
        ("example.com.evil.net", TC_NEXT),
        ("example.co", TC_NEXT),
        ("com", TC_NEXT),
        ("tracker.net", TC_NEXT),
        ("ads.tracker.net", TC_SHOT),
        ("x.ads.tracker.net", TC_SHOT),
        ("xads.tracker.net", TC_NEXT),
        ("watch.example.org", TC_NEXT), // alert: passes
        ("example.org", TC_NEXT),
    ];
    for (name, want) in cases {
        for qtype in [TYPE_A, TYPE_AAAA] {
            let msg = query(0x1234, name, qtype);
            let frames = [
                ("udp4", udp4(&msg)),
                ("udp6", udp_frame("2001:db8::10", "2001:db8:53::1", &msg)),
                ("tcp4", tcp_frame("192.0.2.10", "198.51.100.53", &msg, None)),
                (
                    "tcp6",
                    tcp_frame("2001:db8::10", "2001:db8:53::1", &msg, None),
                ),
            ];
            for (what, frame) in &frames {
                for ingress in [true, false] {
                    let got = t.fw.tc(ingress, frame).0;
                    assert_eq!(got, *want, "{name} {what} ingress={ingress}");
                }
            }
        }
    }
    let blocked = cases.iter().filter(|c| c.1 == TC_SHOT).count() as u64;
    let runs = 2 * 4 * 2;
    assert_eq!(t.stat(dns_stat::DNS_STAT_BLOCKED), blocked * runs);
    assert_eq!(t.stat(dns_stat::DNS_STAT_ALERTED), runs);
    assert_eq!(
        t.stat(dns_stat::DNS_STAT_QUERIES),
        cases.len() as u64 * runs
    );
    assert_eq!(t.stat(dns_stat::DNS_STAT_SEEN), cases.len() as u64 * runs);
}

#[test]
fn only_queries_to_port_53_are_looked_at() {
    if !privileged("only_queries_to_port_53_are_looked_at") {
        return;
    }
    let t = Dns::new(BLOCKLIST);
    let msg = query(1, "example.com", TYPE_A);
    let other_port = PacketBuilder::new()
        .ip(
            "192.0.2.10".parse().unwrap(),
            "198.51.100.53".parse().unwrap(),
        )
        .udp(40000, 5353)
        .payload(&msg)
        .build();
    assert_eq!(t.ingress(&other_port), TC_NEXT);
    // the answer comes from port 53: never a query
    let from_53 = PacketBuilder::new()
        .ip(
            "198.51.100.53".parse().unwrap(),
            "192.0.2.10".parse().unwrap(),
        )
        .udp(53, 40000)
        .payload(&msg)
        .build();
    assert_eq!(t.ingress(&from_53), TC_NEXT);
    assert_eq!(t.stats(), vec![0; 9], "nothing counted for other ports");

    // a response (QR=1) to port 53, an update (opcode 5), no question
    let mut response = msg.clone();
    response[2] |= 0x80;
    let mut update = msg.clone();
    update[2] = 5 << 3;
    let mut no_question = msg.clone();
    no_question[5] = 0;
    for m in [&response, &update, &no_question] {
        assert_eq!(t.ingress(&udp4(m)), TC_NEXT);
    }
    // TCP without a message: handshake and a lone length prefix
    let syn = PacketBuilder::new()
        .ip(
            "192.0.2.10".parse().unwrap(),
            "198.51.100.53".parse().unwrap(),
        )
        .tcp(40000, 53, TcpFlags::SYN)
        .build();
    assert_eq!(t.ingress(&syn), TC_NEXT);
    let mut s = vec![0; 9];
    s[dns_stat::DNS_STAT_SEEN.0 as usize] = 4;
    s[dns_stat::DNS_STAT_NOT_QUERY.0 as usize] = 4;
    assert_eq!(t.stats(), s);

    // disabled: the slot stays filled, nothing is looked at
    t.maps.set_enabled(false).unwrap();
    assert_eq!(t.ingress(&udp4(&msg)), TC_NEXT);
    assert_eq!(t.stats(), s);
    t.maps.set_enabled(true).unwrap();
    assert_eq!(t.ingress(&udp4(&msg)), TC_SHOT);
}

#[test]
fn malformed_and_truncated_questions_pass_and_are_counted() {
    if !privileged("malformed_and_truncated_questions_pass_and_are_counted") {
        return;
    }
    let t = Dns::new(BLOCKLIST);
    let good = query(1, "www.example.com", TYPE_A);
    // compression pointer where the name should be, and after a label
    let pointer = query_raw(1, &[0xc0, 12], TYPE_A);
    let label_then_pointer = query_raw(1, &[3, b'w', b'w', b'w', 0xc0, 12], TYPE_A);
    // label types 0x40 and 0x80, and a 64-byte label
    let ext = query_raw(1, &[0x41, b'x', 0], TYPE_A);
    let mut long_label = vec![64u8];
    long_label.extend_from_slice(&[b'a'; 64]);
    long_label.extend_from_slice(&wire_name("example.com"));
    let long_label = query_raw(1, &long_label, TYPE_A);
    // 256 wire bytes: 4 x 63-byte labels and `com`
    let mut too_long = Vec::new();
    for _ in 0..4 {
        too_long.push(63);
        too_long.extend_from_slice(&[b'a'; 63]);
    }
    too_long.extend_from_slice(&wire_name("com"));
    assert!(too_long.len() > 255);
    let too_long = query_raw(1, &too_long, TYPE_A);
    for (what, m) in [
        ("pointer", &pointer),
        ("label then pointer", &label_then_pointer),
        ("label type 0x40", &ext),
        ("64-byte label", &long_label),
        ("256-byte name", &too_long),
    ] {
        assert_eq!(t.ingress(&udp4(m)), TC_NEXT, "{what}");
    }
    assert_eq!(t.stat(dns_stat::DNS_STAT_MALFORMED), 5);

    // cut inside the header, the name, before the type, before the class
    let cuts = [5, 12, 14, good.len() - 5, good.len() - 1];
    for cut in cuts {
        assert_eq!(t.ingress(&udp4(&good[..cut])), TC_NEXT, "cut at {cut}");
    }
    // a TCP length prefix longer than the segment: the question must still be whole
    let tcp_cut = tcp_frame("192.0.2.10", "198.51.100.53", &good[..20], Some(40));
    assert_eq!(t.ingress(&tcp_cut), TC_NEXT);
    assert_eq!(t.stat(dns_stat::DNS_STAT_TRUNCATED), cuts.len() as u64 + 1);
    // a prefix longer than the segment whose question is whole: a query like any other
    let tcp_long = tcp_frame("192.0.2.10", "198.51.100.53", &good, Some(512));
    assert_eq!(t.ingress(&tcp_long), TC_SHOT);
    assert_eq!(t.stat(dns_stat::DNS_STAT_QUERIES), 1);
    assert_eq!(t.stat(dns_stat::DNS_STAT_SEEN), 5 + cuts.len() as u64 + 2);
}

#[test]
fn name_limits() {
    if !privileged("name_limits") {
        return;
    }
    // the longest name there is (253 characters, 255 wire bytes) under a listed domain
    let longest = format!(
        "{}.{}.example.com",
        "a".repeat(63),
        vec!["b".repeat(63); 2].join(".")
    );
    let longest = format!("{}.{longest}", "c".repeat(253 - longest.len() - 1));
    assert_eq!(longest.len(), 253);
    // 16 labels listed, a query 40 labels deep below it
    let deep_listed = (1..=16)
        .map(|i| format!("l{i}"))
        .collect::<Vec<_>>()
        .join(".");
    let t = Dns::new(&[
        ("example.com", LIST_CONFIG, DnsAction::Drop),
        (&deep_listed, LIST_CONFIG, DnsAction::Drop),
    ]);
    assert_eq!(t.ingress(&udp4(&query(1, &longest, TYPE_A))), TC_SHOT);
    let deeper = format!("{}.{deep_listed}", vec!["x"; 24].join("."));
    assert_eq!(t.ingress(&udp4(&query(1, &deeper, TYPE_A))), TC_SHOT);
    assert_eq!(t.ingress(&udp4(&query(1, &deep_listed, TYPE_A))), TC_SHOT);
    // 15 of the 16 labels: not listed
    let shallower = deep_listed.split_once('.').unwrap().1;
    assert_eq!(t.ingress(&udp4(&query(1, shallower, TYPE_A))), TC_NEXT);
    // the root
    assert_eq!(t.ingress(&udp4(&query_raw(1, &[0], TYPE_A))), TC_NEXT);
    assert_eq!(t.stat(dns_stat::DNS_STAT_QUERIES), 5);
    assert_eq!(t.stat(dns_stat::DNS_STAT_BLOCKED), 3);
}

#[test]
fn events_carry_the_name_and_the_list() {
    if !privileged("events_carry_the_name_and_the_list") {
        return;
    }
    let t = Dns::new(BLOCKLIST);
    t.maps
        .block("Runtime.Example.NET", DnsAction::Alert)
        .unwrap();
    let clock = Clock::now();
    let got: Rc<RefCell<Vec<(usize, EveEvent)>>> = Rc::default();
    let sink = got.clone();
    let mut rb = libbpf_rs::RingBufferBuilder::new();
    rb.add(&t.fw.dp.firewall.maps.events, move |data: &[u8]| {
        let named = |_, _, i: u16| (i == 0).then(|| "ads".to_string());
        let ev = events::decode(data, &clock, named).expect("decodable");
        sink.borrow_mut().push((data.len(), ev));
        0
    })
    .unwrap();
    let rb = rb.build().unwrap();
    rb.consume().unwrap();
    got.borrow_mut().clear();

    let msg = query(9, "Deep.A.B.Example.com", TYPE_AAAA);
    assert_eq!(
        t.ingress(&udp_frame("192.0.2.10", "198.51.100.53", &msg)),
        TC_SHOT
    );
    let msg = query(9, "x.ads.tracker.net", TYPE_A);
    assert_eq!(
        t.ingress(&tcp_frame("2001:db8::10", "2001:db8:53::1", &msg, None)),
        TC_SHOT
    );
    let msg = query(9, "host.runtime.example.net", 65);
    assert_eq!(t.ingress(&udp4(&msg)), TC_NEXT);
    rb.consume().unwrap();
    let got = got.borrow();
    assert_eq!(got.len(), 3);
    for (len, _) in got.iter() {
        assert_eq!(*len, 320);
    }
    let summary: Vec<_> = got
        .iter()
        .map(|(_, e)| {
            let d = e.dns.as_ref().expect("dns part");
            (
                e.event_type,
                e.action,
                e.proto.as_str(),
                e.src_ip,
                e.dest_port,
                d.rrname.as_str(),
                d.rrtype.as_str(),
                d.suffix.as_str(),
                d.list.as_str(),
                e.rule_id.as_deref(),
            )
        })
        .collect();
    let ip = |s: &str| s.parse::<IpAddr>().unwrap();
    assert_eq!(
        summary,
        vec![
            (
                "dns",
                "drop",
                "UDP",
                ip("192.0.2.10"),
                Some(53),
                "deep.a.b.example.com",
                "AAAA",
                "example.com",
                "config",
                Some("config")
            ),
            (
                "dns",
                "drop",
                "TCP",
                ip("2001:db8::10"),
                Some(53),
                "x.ads.tracker.net",
                "A",
                "ads.tracker.net",
                "ads",
                Some("ads")
            ),
            (
                "dns",
                "pass",
                "UDP",
                ip("192.0.2.10"),
                Some(53),
                "host.runtime.example.net",
                "HTTPS",
                "runtime.example.net",
                "runtime",
                Some("runtime")
            ),
        ]
    );
    assert_eq!(t.stat(dns_stat::DNS_STAT_EVENTS_SENT), 3);
    assert_eq!(t.stat(dns_stat::DNS_STAT_EVENTS_DROPPED), 0);
}

#[test]
fn runtime_blocks_survive_syncs_and_check_names_the_suffix() {
    if !privileged("runtime_blocks_survive_syncs_and_check_names_the_suffix") {
        return;
    }
    let t = Dns::new(BLOCKLIST);
    let q = |n: &str| udp4(&query(1, n, TYPE_A));
    assert_eq!(t.ingress(&q("www.later.example")), TC_NEXT);
    assert_eq!(
        t.maps.block("Later.Example.", DnsAction::Drop).unwrap(),
        "later.example"
    );
    assert_eq!(t.ingress(&q("www.later.example")), TC_SHOT);
    // a refresh that drops a feed domain keeps the runtime block
    let mut want = Blocklist::default();
    want.add("example.com", LIST_CONFIG, DnsAction::Drop);
    want.add("later.example", 1, DnsAction::Drop);
    let report = t.maps.sync(&want).unwrap();
    assert_eq!((report.removed, report.runtime, report.entries), (2, 1, 2));
    assert_eq!(t.ingress(&q("www.later.example")), TC_SHOT);
    assert_eq!(t.ingress(&q("ads.tracker.net")), TC_NEXT);
    let m = t
        .maps
        .check("A.WWW.later.example")
        .unwrap()
        .expect("blocked");
    assert_eq!(
        (m.suffix.as_str(), m.labels, m.entry.list),
        ("later.example", 2, LIST_RUNTIME)
    );
    let m = t.maps.check("x.example.com").unwrap().expect("blocked");
    assert_eq!(
        (m.suffix.as_str(), m.entry.list),
        ("example.com", LIST_CONFIG)
    );
    assert!(t.maps.check("badexample.com").unwrap().is_none());
    assert_eq!(
        t.maps
            .runtime()
            .unwrap()
            .iter()
            .map(|r| r.0.as_str())
            .collect::<Vec<_>>(),
        ["later.example"]
    );
    // a config domain cannot be unblocked at runtime; a runtime one can, once
    let e = t.maps.unblock("example.com").unwrap_err().to_string();
    assert!(e.contains("listed by dns.blocklist.domains"), "{e}");
    assert!(t.maps.unblock("later.example").unwrap());
    assert!(!t.maps.unblock("later.example").unwrap());
    assert_eq!(t.ingress(&q("www.later.example")), TC_NEXT);
    assert!(t.maps.runtime().unwrap().is_empty());
}
