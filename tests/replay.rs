//! `ebpfsentinel test`: crafted captures replayed through the real programs (verdicts,
//! deciding stage and rule, conntrack state carried between packets, rate limits, threat
//! intel from a local feed), `--expect`, the tcpdump corpus, `--explain` against the reference
//! parser, and a running daemon left alone by a replay.

mod common;

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::daemon::{Daemon, Scratch, BIN};
use common::netns::Netns;
use common::privileged;
use common::refparse::{self, Parsed};
use ebpfsentinel::packet::{PacketBuilder, TcpFlags};
use serde_json::Value;

const CORPUS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/data/pcap/tcpdump");

const CONFIG: &str = "\
conntrack:
  enabled: true
  invalid: drop
firewall:
  rules:
    - { id: block-ssh, action: drop, proto: tcp, dst_port: 22, log: true }
    - { id: allow-web, action: pass, proto: tcp, dst_port: 80 }
ratelimit:
  policies:
    - { id: dns-limit, src: 10.0.0.0/8, proto: udp, dst_port: 53, rate: 1, burst: 2 }
threatintel:
  feeds:
    - { id: local-bad, path: FEED, format: netset, action: drop }
";

struct Dir(PathBuf);

impl Dir {
    fn new(tag: &str) -> Dir {
        let d = std::env::temp_dir().join(format!("es-replay-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        Dir(d)
    }

    fn file(&self, name: &str, bytes: &[u8]) -> PathBuf {
        let p = self.0.join(name);
        std::fs::write(&p, bytes).unwrap();
        p
    }

    fn config(&self) -> PathBuf {
        let feed = self.file("bad.netset", b"# local IOCs\n203.0.113.66\n");
        self.file(
            "config.yaml",
            CONFIG
                .replace("FEED", &feed.display().to_string())
                .as_bytes(),
        )
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A classic little-endian microsecond pcap of Ethernet frames, one second apart.
fn pcap(frames: &[Vec<u8>]) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&0xa1b2c3d4u32.to_le_bytes());
    out.extend_from_slice(&2u16.to_le_bytes());
    out.extend_from_slice(&4u16.to_le_bytes());
    out.extend_from_slice(&[0; 8]);
    out.extend_from_slice(&65535u32.to_le_bytes());
    out.extend_from_slice(&1u32.to_le_bytes());
    for (i, f) in frames.iter().enumerate() {
        out.extend_from_slice(&(1_700_000_000 + i as u32).to_le_bytes());
        out.extend_from_slice(&250u32.to_le_bytes());
        out.extend_from_slice(&(f.len() as u32).to_le_bytes());
        out.extend_from_slice(&(f.len() as u32).to_le_bytes());
        out.extend_from_slice(f);
    }
    out
}

fn v4(s: &str) -> Ipv4Addr {
    s.parse().unwrap()
}

fn tcp(
    src: &str,
    sport: u16,
    dst: &str,
    dport: u16,
    flags: TcpFlags,
    seq: u32,
    ack: u32,
) -> Vec<u8> {
    PacketBuilder::new()
        .ipv4(v4(src), v4(dst))
        .tcp(sport, dport, flags)
        .tcp_numbers(seq, ack, 502)
        .build()
}

fn udp(src: &str, sport: u16, dst: &str, dport: u16) -> Vec<u8> {
    PacketBuilder::new()
        .ipv4(v4(src), v4(dst))
        .udp(sport, dport)
        .payload(b"query")
        .build()
}

fn run(args: &[&str]) -> Output {
    let out = Command::new(BIN)
        .args(args)
        .output()
        .expect("running ebpfsentinel");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!err.contains("panicked"), "{err}");
    out
}

/// The packet objects and the summary of a --json run.
fn json_run(args: &[&str]) -> (Vec<Value>, Value, Output) {
    let out = run(args);
    let mut lines: Vec<Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    let summary = lines.pop().expect("a summary line");
    assert_eq!(summary["summary"], true);
    (lines, summary, out)
}

fn field(v: &Value, k: &str) -> String {
    v[k].as_str().unwrap_or("-").to_string()
}

/// (verdict, stage, reason, rule) of each packet.
fn decisions(packets: &[Value]) -> Vec<(String, String, String, String)> {
    packets
        .iter()
        .map(|p| {
            (
                field(p, "verdict"),
                field(p, "stage"),
                field(p, "reason"),
                field(p, "rule"),
            )
        })
        .collect()
}

fn notes(p: &Value) -> Vec<String> {
    p["notes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n.as_str().unwrap().to_string())
        .collect()
}

fn crafted() -> Vec<Vec<u8>> {
    let (client, server) = ("10.0.0.5", "192.0.2.10");
    vec![
        // 0: a rule drops it
        tcp(client, 40000, server, 22, TcpFlags::SYN, 100, 0),
        // 1..=3: a handshake the web rule lets in; the reply and the ACK are tracked
        tcp(client, 40001, server, 80, TcpFlags::SYN, 1000, 0),
        tcp(
            server,
            80,
            client,
            40001,
            TcpFlags(TcpFlags::SYN.0 | TcpFlags::ACK.0),
            5000,
            1001,
        ),
        tcp(client, 40001, server, 80, TcpFlags::ACK, 1001, 5001),
        // 4: an ACK of no connection: invalid, and conntrack drops invalid packets
        tcp("10.0.0.6", 50000, server, 80, TcpFlags::ACK, 1, 1),
        // 5..=7: a burst of 2, then over the rate
        udp("10.0.0.7", 5353, "192.0.2.53", 53),
        udp("10.0.0.7", 5353, "192.0.2.53", 53),
        udp("10.0.0.7", 5353, "192.0.2.53", 53),
        // 8: a source on the local threat-intel feed
        udp("203.0.113.66", 4444, server, 9999),
        // 9: not IP
        PacketBuilder::new()
            .ethertype(0x0806)
            .payload(&[0; 28])
            .build(),
    ]
}

#[test]
fn verdicts_stages_and_rules_of_a_crafted_capture() {
    if !privileged("verdicts_stages_and_rules_of_a_crafted_capture") {
        return;
    }
    let dir = Dir::new("crafted");
    let cfg = dir.config();
    let cap = dir.file("crafted.pcap", &pcap(&crafted()));
    let (packets, summary, out) = json_run(&[
        "test",
        "-c",
        cfg.to_str().unwrap(),
        "--pcap",
        cap.to_str().unwrap(),
        "--json",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let s = |a: &str, b: &str, c: &str, d: &str| (a.into(), b.into(), c.into(), d.into());
    assert_eq!(
        decisions(&packets),
        vec![
            s("drop", "firewall", "drop_rule", "block-ssh"),
            s("pass", "firewall", "pass_rule", "allow-web"),
            // the reply finds the SYN's entry: conntrack's fast path, no rule consulted
            s("pass", "firewall", "pass_tracked", "-"),
            s("pass", "firewall", "pass_tracked", "-"),
            s("drop", "conntrack", "drop_invalid", "-"),
            s("pass", "firewall", "pass_default", "-"),
            s("pass", "firewall", "pass_default", "-"),
            s("drop", "ratelimit", "drop_over_rate", "dns-limit"),
            s("drop", "threatintel", "match_drop", "local-bad"),
            s("pass", "firewall", "pass_non_ip", "-"),
        ]
    );
    let all_notes: Vec<Vec<String>> = packets.iter().map(notes).collect();
    let n = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    assert_eq!(
        all_notes,
        vec![
            n(&[]),
            n(&["conntrack:new"]),
            n(&["conntrack:fast_path"]),
            // the handshake's last ACK establishes the flow
            n(&["conntrack:established", "conntrack:fast_path"]),
            n(&["conntrack:invalid"]),
            n(&["ratelimit:pass_in_rate", "conntrack:new"]),
            n(&["ratelimit:pass_in_rate"]),
            n(&[]),
            n(&["conntrack:new"]),
            n(&[]),
        ]
    );
    let path = |i: usize| packets[i]["path"].as_array().unwrap().len();
    // dropped in XDP, TC never runs; the invalid ACK stops at conntrack
    assert_eq!([path(0), path(1), path(4), path(7)], [1, 4, 3, 2]);
    // the logged rule and the over-rate source leave their events
    assert_eq!(packets[0]["events"][0]["rule_id"], "block-ssh");
    assert_eq!(packets[7]["events"][0]["event_type"], "ratelimit");
    assert_eq!(packets[8]["events"][0]["rule_id"], "local-bad");
    assert_eq!(
        packets[0]["explain"],
        "IP 10.0.0.5.40000 > 192.0.2.10.22: tcp"
    );
    assert_eq!(packets[9]["parse_error"], "not IP (ethertype 0x0806)");
    assert_eq!(summary["packets"], 10);
    assert_eq!(summary["by_verdict"]["drop"], 4);
    assert_eq!(summary["by_verdict"]["pass"], 6);
    assert_eq!(summary["by_stage"]["firewall"], 7);
    assert_eq!(summary["by_stage"]["conntrack"], 1);
    assert_eq!(summary["by_rule"]["ratelimit:dns-limit"], 1);
    assert_eq!(summary["by_rule"]["firewall:block-ssh"], 1);

    // the human table carries the same decisions
    let out = run(&[
        "test",
        "-c",
        cfg.to_str().unwrap(),
        "--pcap",
        cap.to_str().unwrap(),
        "--explain",
    ]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success());
    assert!(text.contains("firewall/drop_rule"), "{text}");
    assert!(
        text.contains("IP 10.0.0.5.40001 > 192.0.2.10.80: tcp"),
        "{text}"
    );
    assert!(
        text.contains("by rule: firewall:allow-web 1, firewall:block-ssh 1"),
        "{text}"
    );
}

#[test]
fn expect_files_pass_and_fail() {
    if !privileged("expect_files_pass_and_fail") {
        return;
    }
    let dir = Dir::new("expect");
    let cfg = dir.config();
    let cap = dir.file("crafted.pcap", &pcap(&crafted()));
    let base = [
        "test",
        "-c",
        cfg.to_str().unwrap(),
        "--pcap",
        cap.to_str().unwrap(),
    ];
    let good = dir.file(
        "good.txt",
        b"# index verdict stage rule\n0 drop firewall block-ssh\n3 pass firewall\n4 drop conntrack -\n7 drop - dns-limit\n",
    );
    let out = run(&[&base[..], &["--expect", good.to_str().unwrap()]].concat());
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let bad = dir.file("bad.txt", b"0 pass\n7 drop ratelimit other-rule\n42 pass\n");
    let out = run(&[&base[..], &["--expect", bad.to_str().unwrap()]].concat());
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("packet 0 (line 1): expected pass - -, got drop firewall block-ssh"),
        "{err}"
    );
    assert!(err.contains("packet 7 (line 2)"), "{err}");
    assert!(err.contains("packet 42 (line 3)"), "{err}");

    // a --json run is its own expectation
    let out = run(&[&base[..], &["--json"]].concat());
    let recorded = dir.file("recorded.json", &out.stdout);
    let out = run(&[&base[..], &["--expect", recorded.to_str().unwrap()]].concat());
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let broken = dir.file("broken.txt", b"zero drop\n");
    let out = run(&[&base[..], &["--expect", broken.to_str().unwrap()]].concat());
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("broken.txt:1"));
}

#[test]
fn corrupt_captures_stop_with_the_offset_after_what_was_replayed() {
    if !privileged("corrupt_captures_stop_with_the_offset_after_what_was_replayed") {
        return;
    }
    let dir = Dir::new("corrupt");
    let cfg = dir.config();
    let mut bytes = pcap(&crafted()[..2]);
    bytes.extend_from_slice(&[1, 2, 3, 4, 5, 6, 7]);
    let cut = dir.file("cut.pcap", &bytes);
    let garbage = dir.file("garbage.pcap", b"this is not a capture at all");
    let (packets, summary, out) = json_run(&[
        "test",
        "-c",
        cfg.to_str().unwrap(),
        "--pcap",
        cut.to_str().unwrap(),
        "--pcap",
        garbage.to_str().unwrap(),
        "--json",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(packets.len(), 2);
    let err = String::from_utf8_lossy(&out.stderr);
    let at = 24 + 2 * 16 + crafted()[..2].iter().map(Vec::len).sum::<usize>();
    assert!(
        err.contains(&format!(
            "cut.pcap: packet 2 at byte {at}: ends mid-record header (7 of 16 bytes)"
        )),
        "{err}"
    );
    assert!(
        err.contains("garbage.pcap: not a pcap or pcapng file (magic 0x74686973)"),
        "{err}"
    );
    assert_eq!(summary["file_errors"].as_object().unwrap().len(), 2);
}

#[test]
fn realtime_pacing_refills_the_rate_limit() {
    if !privileged("realtime_pacing_refills_the_rate_limit") {
        return;
    }
    let dir = Dir::new("realtime");
    let cfg = dir.config();
    // burst 2 at 1 packet/s; the capture's packets are a second apart
    let query = udp("10.0.0.7", 5353, "192.0.2.53", 53);
    let cap = dir.file("dns.pcap", &pcap(&[query.clone(), query.clone(), query]));
    let base = [
        "test",
        "-c",
        cfg.to_str().unwrap(),
        "--pcap",
        cap.to_str().unwrap(),
        "--json",
    ];
    let verdicts = |packets: &[Value]| -> Vec<String> {
        packets.iter().map(|p| field(p, "verdict")).collect()
    };
    let (burst, _, _) = json_run(&base);
    assert_eq!(verdicts(&burst), ["pass", "pass", "drop"]);
    let started = std::time::Instant::now();
    let (paced, _, _) = json_run(&[&base[..], &["--realtime"]].concat());
    assert!(started.elapsed() >= std::time::Duration::from_secs(2));
    assert_eq!(verdicts(&paced), ["pass", "pass", "pass"]);
}

fn block(kind: u32, body: &[u8]) -> Vec<u8> {
    let mut body = body.to_vec();
    while body.len() % 4 != 0 {
        body.push(0);
    }
    let len = (body.len() + 12) as u32;
    [
        &kind.to_le_bytes()[..],
        &len.to_le_bytes(),
        &body,
        &len.to_le_bytes(),
    ]
    .concat()
}

/// pcapng: a section of interfaces of different link types and timestamp resolutions.
fn pcapng(interfaces: &[(u16, Option<u8>)], packets: &[(u32, u64, Vec<u8>)]) -> Vec<u8> {
    let mut out = block(
        0x0a0d_0d0a,
        &[
            &0x1a2b_3c4du32.to_le_bytes()[..],
            &1u16.to_le_bytes(),
            &0u16.to_le_bytes(),
            &(-1i64).to_le_bytes(),
        ]
        .concat(),
    );
    for (link_type, tsresol) in interfaces {
        let mut body = [
            &link_type.to_le_bytes()[..],
            &0u16.to_le_bytes(),
            &0u32.to_le_bytes(),
        ]
        .concat();
        if let Some(r) = tsresol {
            body.extend_from_slice(&[9, 0, 1, 0, *r, 0, 0, 0, 0, 0, 0, 0]);
        }
        out.extend(block(1, &body));
    }
    for (interface, ticks, data) in packets {
        let body = [
            &interface.to_le_bytes()[..],
            &((ticks >> 32) as u32).to_le_bytes(),
            &(*ticks as u32).to_le_bytes(),
            &(data.len() as u32).to_le_bytes(),
            &(data.len() as u32).to_le_bytes(),
            data,
        ]
        .concat();
        out.extend(block(6, &body));
    }
    out
}

#[test]
fn pcapng_link_types_and_resolutions() {
    if !privileged("pcapng_link_types_and_resolutions") {
        return;
    }
    let dir = Dir::new("pcapng");
    let cfg = dir.config();
    let frame = tcp("10.0.0.5", 40000, "192.0.2.10", 22, TcpFlags::SYN, 1, 0);
    let ip = frame[14..].to_vec();
    let mut sll2 = vec![0x08, 0x00, 0, 0, 0, 0, 0, 2, 0, 1, 0, 6];
    sll2.extend_from_slice(&[0; 8]);
    sll2.extend_from_slice(&ip);
    let null = [&2u32.to_le_bytes()[..], &ip].concat();
    let web = udp("10.0.0.9", 1000, "192.0.2.10", 8080);
    let cap = dir.file(
        "mixed.pcapng",
        &pcapng(
            &[
                (1, None),
                (276, Some(9)),
                (0, None),
                (101, None),
                (127, None),
            ],
            &[
                (0, 1_700_000_000_000_001, web),
                (1, 1_700_000_001_000_000_123, sll2),
                (2, 1_700_000_002_000_000, null),
                (3, 1_700_000_003_000_000, ip),
                (4, 1_700_000_004_000_000, vec![0; 40]),
            ],
        ),
    );
    let (packets, summary, out) = json_run(&[
        "test",
        "-c",
        cfg.to_str().unwrap(),
        "--pcap",
        cap.to_str().unwrap(),
        "--json",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let got: Vec<(String, String, u64)> = packets
        .iter()
        .map(|p| {
            (
                field(p, "verdict"),
                field(p, "explain"),
                p["ts_ns"].as_u64().unwrap(),
            )
        })
        .collect();
    let ssh = "IP 10.0.0.5.40000 > 192.0.2.10.22: tcp".to_string();
    assert_eq!(
        got,
        vec![
            (
                "pass".into(),
                "IP 10.0.0.9.1000 > 192.0.2.10.8080: udp".into(),
                1_700_000_000_000_001_000
            ),
            ("drop".into(), ssh.clone(), 1_700_000_001_000_000_123),
            ("drop".into(), ssh.clone(), 1_700_000_002_000_000_000),
            ("drop".into(), ssh, 1_700_000_003_000_000_000),
            (
                "unsupported".into(),
                "unsupported link type 127 (IEEE802_11_RADIOTAP)".into(),
                1_700_000_004_000_000_000
            ),
        ]
    );
    assert_eq!(packets[1]["timestamp"], "2023-11-14T22:13:21.000000Z");
    assert_eq!(summary["unsupported_link_types"]["127"], 1);
    assert_eq!(summary["by_rule"]["firewall:block-ssh"], 3);
}

fn corpus_files() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(CORPUS)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.file_name().is_some_and(|n| n != "LICENSE"))
        .collect();
    files.sort();
    files
}

fn tuple_of(p: &Value) -> Option<Parsed> {
    if let Some(t) = p.get("tuple") {
        let ip = |k: &str| t[k].as_str().unwrap().parse::<IpAddr>().unwrap();
        let n = |k: &str| t.get(k).and_then(Value::as_u64);
        return Some(Parsed::Ip {
            src: ip("src"),
            dst: ip("dst"),
            proto: n("proto").unwrap() as u8,
            ports: n("sport")
                .zip(n("dport"))
                .map(|(s, d)| (s as u16, d as u16)),
            icmp: n("icmp_type")
                .zip(n("icmp_code"))
                .map(|(t, c)| (t as u8, c as u8)),
        });
    }
    let why = p.get("parse_error")?.as_str()?;
    if why.starts_with("not IP") {
        Some(Parsed::NonIp)
    } else if why.starts_with("malformed") {
        Some(Parsed::Malformed)
    } else {
        None
    }
}

#[test]
fn the_tcpdump_corpus_replays_whole() {
    if !privileged("the_tcpdump_corpus_replays_whole") {
        return;
    }
    let dir = Dir::new("corpus");
    let cfg = dir.config();
    let files = corpus_files();
    let mut args: Vec<String> = vec![
        "test".into(),
        "-c".into(),
        cfg.display().to_string(),
        "--json".into(),
    ];
    for f in &files {
        args.push("--pcap".into());
        args.push(f.display().to_string());
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let started = std::time::Instant::now();
    let (packets, summary, out) = json_run(&args);
    eprintln!(
        "corpus: {} files, {} packets in {:.1?}: {}",
        files.len(),
        packets.len(),
        started.elapsed(),
        summary
    );
    // SOURCE (the corpus's provenance notes) is the one file that is no capture
    assert_eq!(out.status.code(), Some(2));
    let errors = summary["file_errors"].as_object().unwrap();
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(errors.keys().next().unwrap().ends_with("/SOURCE"));
    assert_eq!(files.len(), 831);
    assert_eq!(packets.len(), 10_183);
    let unsupported: u64 = summary["unsupported_link_types"]
        .as_object()
        .unwrap()
        .values()
        .map(|v| v.as_u64().unwrap())
        .sum();
    assert_eq!(unsupported, 810);
    assert_eq!(
        summary["unsupported_link_types"].as_object().unwrap().len(),
        29
    );
    assert_eq!(summary["by_verdict"]["unsupported"], 810);
    // every packet a program ran on has its deciding stage, none unattributed
    let by_stage = summary["by_stage"].as_object().unwrap();
    assert!(!by_stage.contains_key("unattributed"), "{by_stage:?}");
    let attributed: u64 = by_stage.values().map(|v| v.as_u64().unwrap()).sum();
    let ran = summary["by_verdict"]["pass"].as_u64().unwrap()
        + summary["by_verdict"]["drop"].as_u64().unwrap();
    assert_eq!(attributed, ran);
    // no program runs on these: frames shorter than an Ethernet header, raw "IP" of version 3;
    // the rest of the errors are frames the kernel's test runs refuse for their size
    let error_of = |p: &&Value| field(p, "error") + &field(p, "parse_error");
    let errors: Vec<String> = packets
        .iter()
        .filter(|p| p["verdict"] == "error")
        .map(|p| error_of(&p))
        .collect();
    let count = |needle: &str| errors.iter().filter(|e| e.contains(needle)).count();
    assert_eq!(count("shorter than an Ethernet header"), 45);
    assert_eq!(count("raw IP packet with IP version 3"), 4);
    assert_eq!(
        count("the kernel refused"),
        errors.len() - 49,
        "{errors:#?}"
    );
    assert!(errors.len() - 49 <= 20, "{errors:#?}");
    let link_types: BTreeMap<u64, u64> = packets
        .iter()
        .filter(|p| p["verdict"] == "unsupported")
        .fold(BTreeMap::new(), |mut m, p| {
            *m.entry(p["link_type"].as_u64().unwrap()).or_default() += 1;
            m
        });
    assert_eq!(link_types[&127], 211, "802.11 radiotap");
    assert!(packets
        .iter()
        .filter(|p| p["verdict"] == "unsupported")
        .all(|p| field(p, "parse_error").starts_with("unsupported link type ")));

    // every parse agrees with the reference parser on what it holds
    let mut compared = 0;
    let mut by_file: BTreeMap<&str, Vec<&Value>> = BTreeMap::new();
    for p in &packets {
        by_file
            .entry(p["file"].as_str().unwrap())
            .or_default()
            .push(p);
    }
    for (file, ps) in by_file {
        let capture = ebpfsentinel::pcap::read_file(Path::new(file)).unwrap();
        for p in ps {
            let raw = &capture.packets[p["frame"].as_u64().unwrap() as usize];
            let Ok(frame) = ebpfsentinel::pcap::to_ethernet(raw.link_type, &raw.data) else {
                continue;
            };
            let reference = refparse::parse(&frame);
            assert_eq!(
                tuple_of(p),
                Some(reference),
                "{file}#{}: {}",
                p["frame"],
                p["explain"]
            );
            compared += 1;
        }
    }
    assert_eq!(compared, 10_183 - 810 - 4);
    compare_with_tcpdump(&packets);
}

/// `--explain` against `tcpdump -tqnr` where tcpdump is installed (it is optional): the text
/// before the first ": " (family, addresses, ports) must be the same, except where tcpdump
/// decodes more than the programs do (DCCP and SCTP ports, IPv6 routing headers).
fn compare_with_tcpdump(packets: &[Value]) {
    if Command::new("tcpdump").arg("--version").output().is_err() {
        eprintln!("tcpdump is not installed: --explain not compared with it");
        return;
    }
    let mut by_file: BTreeMap<&str, Vec<&Value>> = BTreeMap::new();
    for p in packets {
        by_file
            .entry(p["file"].as_str().unwrap())
            .or_default()
            .push(p);
    }
    let known = ["dccp", "isup", "ipv6-routing-header", "ipv6-srh"];
    let (mut same, mut differ, mut skipped) = (0, 0, 0);
    for (file, ps) in by_file {
        let out = Command::new("tcpdump")
            .args(["-tqnr", file])
            .output()
            .unwrap();
        let lines: Vec<String> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(str::to_string)
            .collect();
        // tcpdump prints nothing, or more than a line, for some damaged packets
        if lines.len() != ps.len() {
            skipped += 1;
            continue;
        }
        for (p, line) in ps.iter().zip(&lines) {
            let Some(t) = p.get("tuple") else { continue };
            if t.get("later_fragment").is_some() {
                continue;
            }
            let ours = p["explain"].as_str().unwrap().split(": ").next().unwrap();
            let theirs = line.split(": ").next().unwrap();
            if ours == theirs {
                same += 1;
            } else {
                assert!(
                    known.iter().any(|k| file.contains(k)),
                    "{file}#{}: explain `{ours}`, tcpdump `{theirs}`",
                    p["frame"]
                );
                differ += 1;
            }
        }
    }
    eprintln!("tcpdump: {same} packets agree, {differ} known differences, {skipped} files skipped");
    assert_eq!((same, differ, skipped), (4_639, 51, 14));
}

/// The pin root's entries with their inode numbers: a replay must neither add, remove nor
/// replace one.
fn pins(root: &Path) -> BTreeMap<String, u64> {
    use std::os::unix::fs::MetadataExt;
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            let m = e.metadata().unwrap();
            if m.is_dir() {
                stack.push(e.path());
            }
            out.insert(e.path().display().to_string(), m.ino());
        }
    }
    out
}

fn pinned_counter(root: &Path, map: &str, slot: u32) -> u64 {
    use libbpf_rs::{MapCore, MapFlags, MapHandle};
    let m = MapHandle::from_pinned_path(root.join(map)).unwrap();
    m.lookup_percpu(&slot.to_ne_bytes(), MapFlags::ANY)
        .unwrap()
        .unwrap()
        .iter()
        .map(|v| u64::from_ne_bytes(v[..8].try_into().unwrap()))
        .sum()
}

#[test]
fn a_replay_leaves_a_running_daemon_alone() {
    if !privileged("a_replay_leaves_a_running_daemon_alone") {
        return;
    }
    let ns = Netns::new("replay");
    // links left down: no neighbour discovery moves the daemon's counters meanwhile
    ns.exec(&[
        "ip", "link", "add", "rp0", "type", "veth", "peer", "name", "rp1",
    ]);
    let scratch = Scratch::new("replay");
    let dir = Dir::new("daemon");
    let cfg = dir.config();
    let daemon_cfg = dir.file(
        "daemon.yaml",
        format!(
            "{}interfaces: [rp0]\nmetrics:\n  listen: \"off\"\n",
            std::fs::read_to_string(&cfg).unwrap()
        )
        .as_bytes(),
    );
    let root = scratch.pin_root();
    let mut daemon = Daemon::start(&ns, &daemon_cfg, &root, &["--transient"]);
    let before = pins(&root);
    assert!(
        before.keys().any(|k| k.ends_with("/fw_stats")),
        "{before:?}"
    );
    let seen = pinned_counter(&root, "fw_stats", 0);
    let lookups = pinned_counter(&root, "ct_stats", 0);
    let max_ranks = ebpfsentinel::abi::MAX_RANKS as u32;
    let block_ssh_hits = |root: &Path| {
        pinned_counter(root, "fw_rule_hits", 0) + pinned_counter(root, "fw_rule_hits", max_ranks)
    };
    let rule_hits = block_ssh_hits(&root);

    let cap = dir.file("crafted.pcap", &pcap(&crafted()));
    let out = run(&[
        "test",
        "-c",
        cfg.to_str().unwrap(),
        "--pcap",
        cap.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    assert_eq!(pins(&root), before);
    assert_eq!(pinned_counter(&root, "fw_stats", 0), seen);
    assert_eq!(pinned_counter(&root, "ct_stats", 0), lookups);
    assert_eq!(block_ssh_hits(&root), rule_hits);
    daemon.signal(libc::SIGTERM);
    assert!(daemon.wait().success());
}
