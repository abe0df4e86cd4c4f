//! Every packet of the tcpdump capture corpus (hundreds of real and deliberately malformed
//! captures) through xdp_firewall with BPF_PROG_TEST_RUN, checked against an independent
//! reference parser (tests/common/refparse.rs): no packet may be mis-parsed into a pass of a
//! source that a drop rule covers, and what the kernel reports of a packet must be what the
//! packet holds.

mod common;

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Instant;

use common::refparse::{self, Parsed};
use common::{privileged, Firewall, VERDICT_SLOTS, XDP_DROP, XDP_PASS};
use ebpfsentinel::abi::{self, fw_stat, packet_event};
use ebpfsentinel::events;
use ebpfsentinel::packet::{ExtHeader, PacketBuilder, TcpFlags};
use ebpfsentinel::pcap;
use ipnet::IpNet;
use libbpf_rs::ProgramInput;

const CORPUS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/data/pcap/tcpdump");

/// XDP test runs need a whole Ethernet header: the kernel rejects shorter frames.
const MIN_FRAME: usize = 14;

// Lower bounds on what a run exercises, set a little under what the corpus gave when the test
// was written, so the test fails if the corpus or its reader stops delivering packets.
const MIN_FILES: usize = 820;
const MIN_RUN: usize = 9_000;
const MIN_IP: usize = 4_900;
const MIN_MALFORMED: usize = 300;
const MIN_NON_IP: usize = 3_700;
const MIN_V6: usize = 700;
const MIN_SOURCES: usize = 300;
/// Frames the kernel refused to run: a handful of jumbo frames at most.
const MAX_RUN_ERRORS: usize = 20;

struct Frame {
    file: String,
    index: usize,
    data: Vec<u8>,
    /// the reference parse of what the program sees: the first [`linear_limit`] bytes
    parsed: Parsed,
}

impl Frame {
    fn truncated(&self) -> bool {
        self.data.len() > linear_limit()
    }
}

#[derive(Default)]
struct Corpus {
    files: usize,
    /// files the reader rejected as a whole: reason -> files
    unreadable: BTreeMap<String, usize>,
    /// files whose reader stopped at a corrupt or cut record, keeping the packets before it
    cut_short: usize,
    packets: usize,
    /// packets not converted to Ethernet: reason -> packets
    not_converted: BTreeMap<String, usize>,
    /// converted, but shorter than an Ethernet header
    too_short: usize,
    /// longer than the linear buffer of a test run: checked as cut to it
    truncated: usize,
    /// what gets run, in corpus order
    frames: Vec<Frame>,
}

impl Corpus {
    fn converted(&self) -> usize {
        self.frames.len() + self.too_short
    }
}

/// The reason without its variable parts, so that similar failures count together.
fn reason_class(reason: &str) -> String {
    if reason.starts_with("unsupported link type") {
        return reason.to_string();
    }
    reason
        .chars()
        .map(|c| if c.is_ascii_digit() { '#' } else { c })
        .collect()
}

fn corpus() -> &'static Corpus {
    static CORPUS_CELL: OnceLock<Corpus> = OnceLock::new();
    CORPUS_CELL.get_or_init(|| {
        let mut paths: Vec<PathBuf> = std::fs::read_dir(CORPUS)
            .unwrap_or_else(|e| panic!("{CORPUS}: {e}"))
            .map(|e| e.expect("directory entry").path())
            .filter(|p| {
                matches!(
                    p.extension().and_then(|e| e.to_str()),
                    Some("pcap" | "pcapng")
                )
            })
            .collect();
        paths.sort();
        let mut corpus = Corpus::default();
        for path in &paths {
            corpus.files += 1;
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            let capture = match pcap::read_file(path) {
                Ok(c) => c,
                Err(e) => {
                    *corpus
                        .unreadable
                        .entry(reason_class(&e.to_string()))
                        .or_default() += 1;
                    continue;
                }
            };
            corpus.cut_short += usize::from(capture.truncated.is_some());
            for packet in capture.packets {
                corpus.packets += 1;
                let data = match pcap::to_ethernet(packet.link_type, &packet.data) {
                    Ok(d) => d,
                    Err(e) => {
                        *corpus.not_converted.entry(reason_class(&e)).or_default() += 1;
                        continue;
                    }
                };
                if data.len() < MIN_FRAME {
                    corpus.too_short += 1;
                    continue;
                }
                let visible = data.len().min(linear_limit());
                corpus.truncated += usize::from(visible < data.len());
                let parsed = refparse::parse(&data[..visible]);
                corpus.frames.push(Frame {
                    file: name.clone(),
                    index: packet.index,
                    data,
                    parsed,
                });
            }
        }
        corpus
    })
}

/// Bytes of a frame that xdp_firewall sees in a test run. BPF_PROG_TEST_RUN puts at most a
/// page minus the XDP headroom and the shared info into the linear buffer and the rest into
/// fragments, which a program without `xdp.frags` cannot read: for the program the frame ends
/// there, as it would on a device whose MTU lets a non-frags XDP program attach. Measured once
/// with well-formed UDP frames of growing size (whole: default pass; cut: malformed).
fn linear_limit() -> usize {
    static LIMIT: OnceLock<usize> = OnceLock::new();
    *LIMIT.get_or_init(|| {
        let fw = Firewall::load("firewall:\n  malformed: drop\n");
        let program = fw.dp.firewall_program();
        let whole = |len: usize| {
            let frame = PacketBuilder::new()
                .ipv4(Ipv4Addr::new(192, 0, 2, 1), Ipv4Addr::new(192, 0, 2, 2))
                .udp(1, 2)
                .payload(&vec![0; len - 14 - 20 - 8])
                .build();
            assert_eq!(frame.len(), len);
            assert!(matches!(refparse::parse(&frame), Parsed::Ip { .. }));
            let verdict = program
                .test_run(ProgramInput {
                    data_in: Some(&frame),
                    ..Default::default()
                })
                .unwrap_or_else(|e| panic!("probe of {len} bytes: {e}"))
                .return_value;
            assert!(
                verdict == XDP_PASS || verdict == XDP_DROP,
                "probe: {verdict}"
            );
            verdict == XDP_PASS
        };
        let (mut seen, mut cut) = (64, 16 * 1024);
        assert!(
            whole(seen) && !whole(cut),
            "no linear limit in {seen}..{cut}"
        );
        while cut - seen > 1 {
            let mid = (seen + cut) / 2;
            if whole(mid) {
                seen = mid;
            } else {
                cut = mid;
            }
        }
        assert!(
            (3000..=4096 - 256).contains(&seen),
            "linear buffer of {seen} bytes"
        );
        seen
    })
}

/// The whole frame when short, else its start.
fn hex(bytes: &[u8]) -> String {
    const SHOWN: usize = 512;
    let mut s = bytes[..bytes.len().min(SHOWN)]
        .iter()
        .fold(String::new(), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        });
    if bytes.len() > SHOWN {
        let _ = write!(s, "... ({} more bytes)", bytes.len() - SHOWN);
    }
    s
}

/// What one ring-buffer record says, decoded as the agent decodes it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Event {
    src: IpAddr,
    dst: IpAddr,
    proto: u8,
    src_port: Option<u16>,
    dst_port: Option<u16>,
    icmp: Option<(Option<u8>, Option<u8>)>,
    action: &'static str,
    reason: &'static str,
    rule: Option<String>,
}

/// The event a logged drop of `parsed` must produce. The kernel keeps an absent port or ICMP
/// field at zero and the decoder shows a TCP/UDP/ICMP/ICMPv6 event's fields regardless, so
/// "not parsed" reads as zeros.
fn expected_event(parsed: &Parsed, rule: &str) -> Option<Event> {
    let Parsed::Ip {
        src,
        dst,
        proto,
        ports,
        icmp,
    } = *parsed
    else {
        return None;
    };
    // events carry IPv4 as IPv4-mapped IPv6, which the decoder turns back into IPv4
    let shown = |a: IpAddr| match a {
        IpAddr::V6(v6) => events::addr(v6.octets()),
        v4 => v4,
    };
    let (src_port, dst_port) = match (proto, ports) {
        (_, Some((s, d))) => (Some(s), Some(d)),
        (6 | 17, None) => (Some(0), Some(0)),
        _ => (None, None),
    };
    let icmp = match (proto, icmp) {
        (_, Some((t, c))) => Some((Some(t), Some(c))),
        (1 | 58, None) => Some((Some(0), Some(0))),
        _ => None,
    };
    Some(Event {
        src: shown(src),
        dst: shown(dst),
        proto,
        src_port,
        dst_port,
        icmp,
        action: "drop",
        reason: "rule",
        rule: Some(rule.to_string()),
    })
}

/// What the kernel must do with one frame.
struct Expect {
    verdict: u32,
    slot: fw_stat,
    event: Option<Event>,
}

#[derive(Default)]
struct RunStats {
    run: usize,
    malformed: usize,
    non_ip: usize,
    ip_v4: usize,
    ip_v6: usize,
    dropped_ip: usize,
    passed_ip: usize,
    /// the kernel refused the frame: error -> (frames, shortest, longest)
    run_errors: BTreeMap<String, (usize, usize, usize)>,
    longest_run: usize,
}

impl RunStats {
    fn skipped(&self) -> usize {
        self.run_errors.values().map(|(n, _, _)| n).sum()
    }
}

fn slot_name(slot: usize) -> String {
    VERDICT_SLOTS
        .iter()
        .find(|s| s.0 as usize == slot)
        .map_or_else(|| format!("slot {slot}"), |s| format!("{s:?}"))
}

/// Runs each frame and checks verdict, verdict counter and events against `expect`, consuming
/// the event ring after every frame. Returns the statistics and one message per mismatch.
fn run_frames(
    fw: &Firewall,
    frames: &[Frame],
    expect: impl Fn(&Frame) -> Expect,
) -> (RunStats, Vec<String>) {
    let names: Vec<String> = fw.ruleset.ranks.iter().map(|r| r.id.clone()).collect();
    let clock = events::Clock::now();
    let received: RefCell<Vec<Result<Event, String>>> = RefCell::new(Vec::new());
    let mut builder = libbpf_rs::RingBufferBuilder::new();
    builder
        .add(&fw.dp.firewall.maps.events, |data: &[u8]| {
            let raw: Option<packet_event> = abi::read(data);
            let decoded =
                events::decode(data, &clock, |_, _, r| names.get(usize::from(r)).cloned());
            received.borrow_mut().push(match (raw, decoded) {
                (Some(raw), Some(ev)) => Ok(Event {
                    src: ev.src_ip,
                    dst: ev.dest_ip,
                    proto: raw.protocol,
                    src_port: ev.src_port,
                    dst_port: ev.dest_port,
                    icmp: (ev.icmp_type.is_some() || ev.icmp_code.is_some())
                        .then_some((ev.icmp_type, ev.icmp_code)),
                    action: ev.action,
                    reason: ev.reason,
                    rule: ev.rule_id,
                }),
                _ => Err(format!("undecodable {}-byte record", data.len())),
            });
            0
        })
        .expect("ring buffer callback");
    let ring = builder.build().expect("ring buffer");
    ring.consume().expect("consume");
    received.borrow_mut().clear();

    let program = fw.dp.firewall_program();
    let mut stats = RunStats::default();
    let mut failures: Vec<String> = Vec::new();
    let mut before = fw.stats();
    for frame in frames {
        let want = expect(frame);
        let output = program.test_run(ProgramInput {
            data_in: Some(&frame.data),
            ..Default::default()
        });
        let after = fw.stats();
        ring.consume().expect("consume");
        let got_events = std::mem::take(&mut *received.borrow_mut());
        let delta = |s: fw_stat| after[s.0 as usize] - before[s.0 as usize];
        let moved: Vec<usize> = VERDICT_SLOTS
            .iter()
            .filter(|s| delta(**s) != 0)
            .map(|s| s.0 as usize)
            .collect();
        let seen = delta(fw_stat::FW_STAT_SEEN);
        let (sent, lost) = (
            delta(fw_stat::FW_STAT_EVENTS_SENT),
            delta(fw_stat::FW_STAT_EVENTS_DROPPED),
        );
        before = after;

        let verdict = match output {
            Ok(out) => out.return_value,
            Err(e) => {
                // the program never saw the frame; nothing may have moved
                let (count, shortest, longest) =
                    stats
                        .run_errors
                        .entry(e.to_string())
                        .or_insert((0, usize::MAX, 0));
                *count += 1;
                *shortest = (*shortest).min(frame.data.len());
                *longest = (*longest).max(frame.data.len());
                if seen != 0 || !got_events.is_empty() {
                    failures.push(format!(
                        "{}#{}: test_run failed ({e}) but counters or events moved",
                        frame.file, frame.index
                    ));
                }
                continue;
            }
        };
        stats.run += 1;
        stats.longest_run = stats.longest_run.max(frame.data.len());
        match frame.parsed {
            Parsed::NonIp => stats.non_ip += 1,
            Parsed::Malformed => stats.malformed += 1,
            Parsed::Ip { src, .. } => {
                if src.is_ipv4() {
                    stats.ip_v4 += 1;
                } else {
                    stats.ip_v6 += 1;
                }
                if want.verdict == XDP_DROP {
                    stats.dropped_ip += 1;
                } else {
                    stats.passed_ip += 1;
                }
            }
        }

        let want_events: Vec<Result<Event, String>> =
            want.event.clone().into_iter().map(Ok).collect();
        let ok = verdict == want.verdict
            && seen == 1
            && moved == [want.slot.0 as usize]
            && got_events == want_events
            && sent == want_events.len() as u64
            && lost == 0;
        if !ok {
            let verdict_name = |v: u32| match v {
                XDP_DROP => "DROP".to_string(),
                XDP_PASS => "PASS".to_string(),
                v => format!("action {v}"),
            };
            failures.push(format!(
                "{}#{} ({} bytes{}): reference {:?}\n  want {} via {:?}, events {:?}\n  kernel {} via [{}] (seen {seen}), events {:?} (sent {sent}, lost {lost})\n  frame {}",
                frame.file,
                frame.index,
                frame.data.len(),
                if frame.truncated() {
                    format!(", the program sees {}", linear_limit())
                } else {
                    String::new()
                },
                frame.parsed,
                verdict_name(want.verdict),
                want.slot,
                want_events,
                verdict_name(verdict),
                moved.iter().map(|&s| slot_name(s)).collect::<Vec<_>>().join(", "),
                got_events,
                hex(&frame.data),
            ));
        }
    }

    (stats, failures)
}

/// Runs the whole corpus, prints its summary line, and panics on any mismatch (the first ones
/// in full) or when the corpus is no longer exercised.
fn run_corpus(fw: &Firewall, label: &str, expect: impl Fn(&Frame) -> Expect) -> RunStats {
    let corpus = corpus();
    let started = Instant::now();
    let (stats, failures) = run_frames(fw, &corpus.frames, expect);
    // unsupported link types in one entry, the most frequent named
    let (mut link_types, other): (Vec<_>, Vec<_>) = corpus
        .not_converted
        .iter()
        .partition(|(r, _)| r.starts_with("unsupported link type "));
    link_types.sort_by_key(|(r, n)| (std::cmp::Reverse(**n), r.as_str()));
    let link_type_summary = format!(
        "{} of {} unsupported link types (most: {})",
        link_types.iter().map(|(_, n)| **n).sum::<usize>(),
        link_types.len(),
        link_types
            .iter()
            .take(4)
            .map(|(r, n)| format!("{} {n}", &r["unsupported link type ".len()..]))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let skipped_reasons: Vec<String> = corpus
        .unreadable
        .iter()
        .map(|(r, n)| format!("{n} unreadable files: {r}"))
        .chain(std::iter::once(link_type_summary))
        .chain(other.iter().map(|(r, n)| format!("{n} not converted: {r}")))
        .chain(std::iter::once(format!(
            "{} shorter than {MIN_FRAME} bytes",
            corpus.too_short
        )))
        .chain(stats.run_errors.iter().map(|(r, (n, shortest, longest))| {
            format!("{n} refused by test_run: {r} ({shortest}..={longest} bytes)")
        }))
        .collect();
    eprintln!(
        "pcap corpus [{label}]: {} files ({} cut short), {} packets, {} converted, {} run ({} cut to the {}-byte linear buffer), {} malformed, {} non-IP, {} IP ({} IPv4, {} IPv6; {} dropped, {} passed), longest run {} bytes, skipped {} [{}], {:.1?}",
        corpus.files,
        corpus.cut_short,
        corpus.packets,
        corpus.converted(),
        stats.run,
        corpus.truncated,
        linear_limit(),
        stats.malformed,
        stats.non_ip,
        stats.ip_v4 + stats.ip_v6,
        stats.ip_v4,
        stats.ip_v6,
        stats.dropped_ip,
        stats.passed_ip,
        stats.longest_run,
        corpus.packets - stats.run,
        skipped_reasons.join("; "),
        started.elapsed(),
    );
    report_failures(label, corpus.frames.len(), &failures);
    check_coverage(label, &stats);
    stats
}

fn report_failures(label: &str, frames: usize, failures: &[String]) {
    if !failures.is_empty() {
        panic!(
            "[{label}] {} of {frames} frames disagree with the reference parse:\n{}",
            failures.len(),
            failures
                .iter()
                .take(20)
                .map(String::as_str)
                .collect::<Vec<_>>()
                .join("\n")
        );
    }
}

fn check_coverage(label: &str, stats: &RunStats) {
    let corpus = corpus();
    let at_least = |what: &str, got: usize, min: usize| {
        assert!(
            got >= min,
            "[{label}] only {got} {what} (expected at least {min}): the corpus is no longer exercised"
        );
    };
    at_least("files", corpus.files, MIN_FILES);
    at_least("frames run", stats.run, MIN_RUN);
    at_least("IP frames", stats.ip_v4 + stats.ip_v6, MIN_IP);
    at_least("IPv6 frames", stats.ip_v6, MIN_V6);
    at_least("malformed frames", stats.malformed, MIN_MALFORMED);
    at_least("non-IP frames", stats.non_ip, MIN_NON_IP);
    assert!(
        stats.skipped() <= MAX_RUN_ERRORS,
        "[{label}] test_run refused {} frames: {:?}",
        stats.skipped(),
        stats.run_errors
    );
}

/// Malformed frames are dropped uncounted by any rule, non-IP frames pass: the same in every
/// configuration these tests use.
fn expect_non_rule(parsed: &Parsed) -> Option<Expect> {
    match parsed {
        Parsed::NonIp => Some(Expect {
            verdict: XDP_PASS,
            slot: fw_stat::FW_STAT_PASS_NON_IP,
            event: None,
        }),
        Parsed::Malformed => Some(Expect {
            verdict: XDP_DROP,
            slot: fw_stat::FW_STAT_DROP_MALFORMED,
            event: None,
        }),
        Parsed::Ip { .. } => None,
    }
}

const CATCH_ALL: &str = r#"
firewall:
  mode: enforce
  default_policy: pass
  malformed: drop
  rules:
    - { id: all-v4, action: drop, src: 0.0.0.0/0, log: true }
    - { id: all-v6, action: drop, src: "::/0", log: true }
"#;

/// Under [`CATCH_ALL`] every well-formed IP packet is dropped by its family's rule and logged.
fn expect_catch_all(frame: &Frame) -> Expect {
    expect_non_rule(&frame.parsed).unwrap_or_else(|| {
        let Parsed::Ip { src, .. } = frame.parsed else {
            unreachable!()
        };
        let rule = if src.is_ipv4() { "all-v4" } else { "all-v6" };
        Expect {
            verdict: XDP_DROP,
            slot: fw_stat::FW_STAT_DROP_RULE,
            event: expected_event(&frame.parsed, rule),
        }
    })
}

#[test]
fn corpus_catch_all_drop_logs_what_the_packet_holds() {
    if !privileged("corpus_catch_all_drop_logs_what_the_packet_holds") {
        return;
    }
    let fw = Firewall::load(CATCH_ALL);
    let (v4_hits, v6_hits) = (fw.hits("all-v4"), fw.hits("all-v6"));
    let stats = run_corpus(&fw, "catch-all", expect_catch_all);
    assert_eq!(
        fw.hits("all-v4") - v4_hits,
        stats.ip_v4 as u64,
        "hits of all-v4"
    );
    assert_eq!(
        fw.hits("all-v6") - v6_hits,
        stats.ip_v6 as u64,
        "hits of all-v6"
    );
}

/// Well-formed frames for the header chains and rules the corpus holds few or none of: two
/// tags, IPv4 options and fragments, IPv6 extension chains up to the limit, AH, later IPv6
/// fragments, ICMP of the other family.
fn synthetic_bases() -> Vec<(&'static str, Vec<u8>)> {
    let b = PacketBuilder::new;
    let (a4, b4) = (Ipv4Addr::new(192, 0, 2, 1), Ipv4Addr::new(198, 51, 100, 2));
    let (a6, b6): (Ipv6Addr, Ipv6Addr) = (
        "2001:db8::1".parse().unwrap(),
        "2001:db8::2".parse().unwrap(),
    );
    let udp_header = [0x30, 0x39, 0x00, 0x35, 0x00, 0x0c, 0x00, 0x00];
    // AH with a 12-byte ICV: payload length field 4, (4 + 2) * 4 = 24 bytes
    let ah = |next: u8| {
        let mut h = vec![next, 4, 0, 0, 0, 0, 0x10, 0x01, 0, 0, 0, 7];
        h.extend_from_slice(&[0xa5; 12]);
        h
    };
    let mut ah_udp = ah(17);
    ah_udp.extend_from_slice(&udp_header);
    ah_udp.extend_from_slice(b"abcd");
    let mut ah_icmpv6 = ah(58);
    ah_icmpv6.extend_from_slice(&[128, 0, 0, 0, 0, 1, 0, 1]);
    let mut six = b().ipv6(a6, b6);
    for _ in 0..5 {
        six = six.ipv6_ext(ExtHeader::DestOpts);
    }
    vec![
        (
            "v4 tcp with options",
            b().ipv4(a4, b4)
                .ipv4_options(&[1, 1, 1, 1, 1, 1, 1, 0])
                .tcp(1234, 80, TcpFlags::SYN)
                .payload(b"abcd")
                .build(),
        ),
        (
            "v4 udp in vlan",
            b().vlan(3)
                .ipv4(a4, b4)
                .udp(53, 5353)
                .payload(b"abcd")
                .build(),
        ),
        (
            "v4 icmp in qinq",
            b().qinq(10, 20)
                .ipv4(a4, b4)
                .icmp(8, 0)
                .payload(b"abcd")
                .build(),
        ),
        (
            "v4 carrying icmpv6",
            b().ipv4(a4, b4)
                .proto(58)
                .payload(&[128, 0, 0, 0, 0, 1])
                .build(),
        ),
        (
            "v4 first fragment",
            b().ipv4(a4, b4)
                .fragment(0, true)
                .tcp(1, 443, TcpFlags::ACK)
                .build(),
        ),
        (
            "v4 later fragment",
            b().ipv4(a4, b4)
                .fragment(64, true)
                .proto(17)
                .payload(&[0x11; 16])
                .build(),
        ),
        (
            "v6 tcp",
            b().ipv6(a6, b6)
                .tcp(1, 22, TcpFlags::SYN)
                .payload(b"ab")
                .build(),
        ),
        (
            "v6 icmpv6 in vlan",
            b().vlan(9)
                .ipv6(a6, b6)
                .icmpv6(135, 0)
                .payload(b"abcd")
                .build(),
        ),
        (
            "v6 four extension headers",
            b().ipv6(a6, b6)
                .ipv6_ext(ExtHeader::HopByHop)
                .ipv6_ext(ExtHeader::Routing)
                .ipv6_ext(ExtHeader::Fragment {
                    offset: 0,
                    more: true,
                })
                .ipv6_ext(ExtHeader::DestOpts)
                .udp(1, 2)
                .payload(b"abcd")
                .build(),
        ),
        (
            "v6 six extension headers",
            six.ipv6_ext(ExtHeader::Fragment {
                offset: 0,
                more: true,
            })
            .tcp(7, 8, TcpFlags::ACK)
            .build(),
        ),
        (
            "v6 later fragment",
            b().ipv6(a6, b6)
                .ipv6_ext(ExtHeader::HopByHop)
                .ipv6_ext(ExtHeader::Fragment {
                    offset: 8,
                    more: false,
                })
                .proto(6)
                .payload(&[0x66; 24])
                .build(),
        ),
        (
            "v6 ah udp",
            b().ipv6(a6, b6).proto(51).payload(&ah_udp).build(),
        ),
        (
            "v6 hop-by-hop ah icmpv6",
            b().ipv6(a6, b6)
                .ipv6_ext(ExtHeader::HopByHop)
                .proto(51)
                .payload(&ah_icmpv6)
                .build(),
        ),
        (
            "v6 carrying icmp",
            b().ipv6(a6, b6)
                .proto(1)
                .payload(&[8, 0, 0, 0, 0, 1])
                .build(),
        ),
    ]
}

/// Frames one step past a limit of the contract, malformed as they stand: a third VLAN tag and
/// a seventh IPv6 extension header.
fn synthetic_past_limits() -> Vec<(&'static str, Vec<u8>)> {
    let mut triple = PacketBuilder::new()
        .qinq(1, 2)
        .ipv4(Ipv4Addr::new(192, 0, 2, 1), Ipv4Addr::new(198, 51, 100, 2))
        .udp(1, 2)
        .build();
    // a third tag between the inner tag and the IPv4 ethertype
    triple.splice(20..20, [0x81, 0x00, 0x00, 0x03]);
    let mut seven = PacketBuilder::new().ipv6(
        "2001:db8::1".parse().unwrap(),
        "2001:db8::2".parse().unwrap(),
    );
    for _ in 0..7 {
        seven = seven.ipv6_ext(ExtHeader::DestOpts);
    }
    vec![
        ("three vlan tags", triple),
        ("seven extension headers", seven.udp(1, 2).build()),
    ]
}

/// Every base, every cut of it, it with trailing padding, and every header byte (the first
/// 128 bytes) set to a handful of values: the rules of the contract at their edges.
fn synthetic_frames() -> Vec<Frame> {
    let mut seen = BTreeSet::new();
    let mut frames = Vec::new();
    let mut add = |name: &str, data: Vec<u8>| {
        if data.len() >= MIN_FRAME && seen.insert(data.clone()) {
            frames.push(Frame {
                file: format!("synthetic {name}"),
                index: frames.len(),
                parsed: refparse::parse(&data),
                data,
            });
        }
    };
    let bases = synthetic_bases().into_iter().map(|b| (b, true));
    let past = synthetic_past_limits().into_iter().map(|b| (b, false));
    for ((name, base), well_formed) in bases.chain(past) {
        let parsed = refparse::parse(&base);
        assert_eq!(
            matches!(parsed, Parsed::Ip { .. }),
            well_formed,
            "{name}: {parsed:?}"
        );
        add(name, base.clone());
        for len in MIN_FRAME..base.len() {
            add(&format!("{name} cut at {len}"), base[..len].to_vec());
        }
        let mut padded = base.clone();
        padded.extend_from_slice(&[0xa5; 16]);
        add(&format!("{name} padded"), padded);
        for at in 12..base.len().min(128) {
            let b = base[at];
            for value in [0x00, 0xff, b ^ 0x01, b ^ 0x04, b ^ 0x10, b ^ 0x80] {
                let mut edited = base.clone();
                edited[at] = value;
                add(&format!("{name} byte {at} = {value:#04x}"), edited);
            }
        }
    }
    frames
}

#[test]
fn synthetic_edge_variants_agree_with_the_reference() {
    if !privileged("synthetic_edge_variants_agree_with_the_reference") {
        return;
    }
    let fw = Firewall::load(CATCH_ALL);
    let frames = synthetic_frames();
    let started = Instant::now();
    let (stats, failures) = run_frames(&fw, &frames, expect_catch_all);
    eprintln!(
        "synthetic variants: {} frames, {} run, {} malformed, {} non-IP, {} IP ({} IPv4, {} IPv6), {} refused, {:.1?}",
        frames.len(),
        stats.run,
        stats.malformed,
        stats.non_ip,
        stats.ip_v4 + stats.ip_v6,
        stats.ip_v4,
        stats.ip_v6,
        stats.skipped(),
        started.elapsed()
    );
    report_failures("synthetic", frames.len(), &failures);
    assert_eq!(stats.skipped(), 0, "{:?}", stats.run_errors);
    assert!(
        stats.malformed > 1_000 && stats.non_ip > 100 && stats.ip_v4 > 1_000 && stats.ip_v6 > 1_000
    );
}

/// Spamhaus DROP as the agent ships it, read here independently of the config loader.
fn spamhaus_nets(path: &Path) -> Vec<IpNet> {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .lines()
        .filter_map(|line| {
            let token = line.split([';', '#']).next()?.split_whitespace().next()?;
            Some(
                token
                    .parse::<IpNet>()
                    .or_else(|_| token.parse::<IpAddr>().map(IpNet::from))
                    .unwrap_or_else(|_| panic!("{}: bad entry `{token}`", path.display())),
            )
        })
        .collect()
}

fn last_byte(a: &IpAddr) -> u8 {
    match a {
        IpAddr::V4(v4) => v4.octets()[3],
        IpAddr::V6(v6) => v6.octets()[15],
    }
}

#[test]
fn corpus_alias_membership_decides_the_verdict() {
    if !privileged("corpus_alias_membership_decides_the_verdict") {
        return;
    }
    let corpus = corpus();
    let sources: BTreeSet<IpAddr> = corpus
        .frames
        .iter()
        .filter_map(|f| match f.parsed {
            Parsed::Ip { src, .. } => Some(src),
            _ => None,
        })
        .collect();
    // a deterministic half of the sources: the other half must keep passing
    let seen: BTreeSet<IpAddr> = sources
        .iter()
        .filter(|a| last_byte(a) % 2 == 0)
        .copied()
        .collect();
    assert!(
        sources.len() >= MIN_SOURCES,
        "only {} distinct sources",
        sources.len()
    );
    let spamhaus_path = common::feeds_dir().join("spamhaus_drop.netset");
    let spamhaus = spamhaus_nets(&spamhaus_path);
    assert!(spamhaus.len() > 500, "spamhaus: {} entries", spamhaus.len());

    let mut yaml = format!(
        "firewall:\n  mode: enforce\n  default_policy: pass\n  malformed: drop\n  aliases:\n    listed: {{ file: {} }}\n    seen:\n      entries:\n",
        spamhaus_path.display()
    );
    for a in &seen {
        let _ = writeln!(yaml, "        - \"{a}\"");
    }
    yaml += "  rules:\n    - { id: listed, action: drop, src: \"@listed\" }\n    - { id: seen-drop, action: drop, src: \"@seen\" }\n";
    let fw = Firewall::load(&yaml);

    let in_spamhaus: BTreeSet<IpAddr> = sources
        .iter()
        .filter(|a| spamhaus.iter().any(|n| n.contains(*a)))
        .copied()
        .collect();
    let label = format!(
        "aliases: {} distinct sources, {} in @seen, {} in spamhaus",
        sources.len(),
        seen.len(),
        in_spamhaus.len()
    );
    let hits_before = fw.hits("listed") + fw.hits("seen-drop");
    let stats = run_corpus(&fw, &label, |frame| {
        expect_non_rule(&frame.parsed).unwrap_or_else(|| {
            let Parsed::Ip { src, .. } = frame.parsed else {
                unreachable!()
            };
            let listed = seen.contains(&src) || in_spamhaus.contains(&src);
            Expect {
                verdict: if listed { XDP_DROP } else { XDP_PASS },
                slot: if listed {
                    fw_stat::FW_STAT_DROP_RULE
                } else {
                    fw_stat::FW_STAT_PASS_DEFAULT
                },
                event: None,
            }
        })
    });
    assert_eq!(
        fw.hits("listed") + fw.hits("seen-drop") - hits_before,
        stats.dropped_ip as u64,
        "hits of the alias rules"
    );
    assert!(
        stats.dropped_ip > 0 && stats.passed_ip > 0,
        "both verdicts must occur"
    );
}
