//! tc_ids through BPF_PROG_TEST_RUN: frames run through the TC entry programs with the IDS
//! slot filled; verdicts, the stage's counters and the events it emits are checked exactly.

mod common;

use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::Path;

use common::{privileged, Firewall};
use ebpfsentinel::abi::tc_stage;
use ebpfsentinel::ids;
use ebpfsentinel::maps::ids::{ids_stat, IdsMaps};
use ebpfsentinel::packet::{PacketBuilder, TcpFlags};

const TC_NEXT: i32 = -1;
const TC_SHOT: i32 = 2;

const SRC4: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
const DST4: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 2);
const SRC6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1);
const DST6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 2);

struct Ids {
    fw: Firewall,
    maps: IdsMaps,
    compiled: ids::CompiledIds,
}

fn config(yaml: &str) -> ebpfsentinel::config::Config {
    let path = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/inline.yaml"));
    ebpfsentinel::config::parse_str(yaml, path).unwrap_or_else(|e| panic!("config:\n{e}"))
}

impl Ids {
    /// tc_ids with the `ids` section of `yaml`.
    fn new(yaml: &str) -> Ids {
        let fw = Firewall::load("firewall: {}\n");
        let maps = fw.dp.ids_maps().expect("ids maps");
        fw.dp
            .set_tc_stage(tc_stage::TC_STAGE_IDS, true)
            .expect("ids slot");
        let mut ids = Ids {
            fw,
            maps,
            compiled: ids::CompiledIds::default(),
        };
        ids.apply(yaml);
        ids
    }

    fn apply(&mut self, yaml: &str) {
        let cfg = config(yaml);
        let section = cfg.ids.expect("an ids section");
        let rs = ids::load(&section, cfg.conntrack.enabled).expect("rule files");
        self.compiled = ids::compile(&rs.rules, rs.sampling);
        assert!(
            self.compiled.refused.is_empty(),
            "{:?}",
            self.compiled.refused
        );
        self.maps.apply(&self.compiled).expect("apply");
    }

    fn verdict(&self, frame: &[u8]) -> i32 {
        self.fw.tc(true, frame).0
    }

    fn stat(&self, s: ids_stat) -> u64 {
        self.maps.stats().expect("stats")[s.0 as usize]
    }
}

fn tcp(v6: bool, sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
    let b = if v6 {
        PacketBuilder::new().ipv6(SRC6, DST6)
    } else {
        PacketBuilder::new().ipv4(SRC4, DST4)
    };
    b.tcp(sport, dport, TcpFlags(TcpFlags::ACK.0 | TcpFlags::PSH.0))
        .payload(payload)
        .build()
}

fn udp4(dport: u16, payload: &[u8]) -> Vec<u8> {
    PacketBuilder::new()
        .ipv4(SRC4, DST4)
        .udp(40000, dport)
        .payload(payload)
        .build()
}

/// `pattern` at `at` in `len` filler bytes.
fn at(len: usize, at: usize, pattern: &[u8]) -> Vec<u8> {
    let mut p = vec![b'.'; len];
    p[at..at + pattern.len()].copy_from_slice(pattern);
    p
}

fn tcp4(dport: u16, payload: &[u8]) -> Vec<u8> {
    PacketBuilder::new()
        .ipv4(SRC4, DST4)
        .tcp(40000, dport, TcpFlags(TcpFlags::ACK.0 | TcpFlags::PSH.0))
        .payload(payload)
        .build()
}

const EVIL: &str = r#"
ids:
  sampling: 1.0
  rules:
    - { id: evil, proto: tcp, dst_port: 7777, content: "X-EVIL-MARKER", action: drop }
"#;

#[test]
fn drops_the_marker_and_passes_the_rest() {
    if !privileged("drops_the_marker_and_passes_the_rest") {
        return;
    }
    let ids = Ids::new(EVIL);
    assert_eq!(
        ids.verdict(&tcp4(7777, b"GET / X-EVIL-MARKER\r\n")),
        TC_SHOT
    );
    assert_eq!(
        ids.verdict(&tcp4(7777, b"GET / X-GOOD-MARKER\r\n")),
        TC_NEXT
    );
    assert_eq!(
        ids.verdict(&tcp4(7778, b"GET / X-EVIL-MARKER\r\n")),
        TC_NEXT
    );
    assert_eq!(ids.stat(ids_stat::IDS_STAT_SEEN), 3);
    assert_eq!(ids.stat(ids_stat::IDS_STAT_CANDIDATE), 2);
    assert_eq!(ids.stat(ids_stat::IDS_STAT_MATCH_DROP), 1);
}

/// Events on the shared ring, decoded as the daemon does: the rule named from the compiled
/// table of the event's generation.
struct Events {
    rb: libbpf_rs::RingBuffer<'static>,
    seen: std::sync::Arc<std::sync::Mutex<Vec<serde_json::Value>>>,
}

impl Events {
    fn new(ids: &Ids, tables: std::sync::Arc<std::sync::Mutex<[Vec<ids::IdsRule>; 2]>>) -> Events {
        let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let sink = seen.clone();
        let clock = ebpfsentinel::events::Clock::now();
        let mut rb = libbpf_rs::RingBufferBuilder::new();
        rb.add(&ids.fw.dp.firewall.maps.events, move |data: &[u8]| {
            let tables = tables.lock().unwrap();
            let mut ev = ebpfsentinel::events::decode(data, &clock, |_, g, r| {
                tables[g as usize & 1].get(r as usize).map(|r| r.id.clone())
            })
            .expect("56-byte record");
            let rec: ebpfsentinel::abi::packet_event = ebpfsentinel::abi::read(data).unwrap();
            if let Some((g, r)) = ebpfsentinel::abi::event_rule_parts(rec.rule_id) {
                ev.alert = tables[g as usize & 1]
                    .get(r as usize)
                    .map(|rule| ebpfsentinel::events::IdsAlert::of(rule, ev.action));
            }
            sink.lock()
                .unwrap()
                .push(serde_json::to_value(&ev).unwrap());
            0
        })
        .unwrap();
        let rb = rb.build().unwrap();
        rb.consume().unwrap();
        seen.lock().unwrap().clear();
        Events { rb, seen }
    }

    fn take(&self) -> Vec<serde_json::Value> {
        self.rb.consume().unwrap();
        std::mem::take(&mut *self.seen.lock().unwrap())
    }
}

fn tables_of(ids: &Ids) -> std::sync::Arc<std::sync::Mutex<[Vec<ids::IdsRule>; 2]>> {
    let gen = ids.maps.settings().unwrap().gen as usize & 1;
    let mut t: [Vec<ids::IdsRule>; 2] = Default::default();
    t[gen] = ids.compiled.rules.clone();
    std::sync::Arc::new(std::sync::Mutex::new(t))
}

#[test]
fn both_families_and_udp() {
    if !privileged("both_families_and_udp") {
        return;
    }
    let ids = Ids::new(
        r#"
ids:
  rules:
    - { id: t, proto: tcp, dst_port: 7777, content: "X-EVIL-MARKER", action: drop }
    - { id: u, proto: udp, dst_port: 53, content: "|03|evil|03|com|00|", action: drop }
"#,
    );
    for v6 in [false, true] {
        assert_eq!(
            ids.verdict(&tcp(v6, 40000, 7777, b"..X-EVIL-MARKER..")),
            TC_SHOT,
            "v6 {v6}"
        );
        assert_eq!(
            ids.verdict(&tcp(v6, 40000, 7777, b"..X-EVIL-MARKEr..")),
            TC_NEXT,
            "v6 {v6}"
        );
    }
    assert_eq!(
        ids.verdict(&udp4(
            53,
            b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x03evil\x03com\x00\x00\x01\x00\x01"
        )),
        TC_SHOT
    );
    assert_eq!(
        ids.verdict(&udp4(
            53,
            b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x04good\x03com\x00\x00\x01\x00\x01"
        )),
        TC_NEXT
    );
    // a TCP packet to the UDP rule's port is not a candidate
    assert_eq!(
        ids.verdict(&tcp(false, 40000, 53, b"\x03evil\x03com\x00")),
        TC_NEXT
    );
    assert_eq!(ids.stat(ids_stat::IDS_STAT_SEEN), 7);
    assert_eq!(ids.stat(ids_stat::IDS_STAT_CANDIDATE), 6);
    assert_eq!(ids.stat(ids_stat::IDS_STAT_MATCH_DROP), 3);
    assert_eq!(ids.stat(ids_stat::IDS_STAT_MATCH_ALERT), 0);
}

#[test]
fn offset_and_depth_bound_where_a_content_may_start_and_end() {
    if !privileged("offset_and_depth_bound_where_a_content_may_start_and_end") {
        return;
    }
    // the content must lie within bytes 4..12 of the payload
    let ids = Ids::new(
        r#"
ids:
  rules:
    - { id: w, proto: tcp, dst_port: 80, content: "ABCD", offset: 4, depth: 8, action: drop }
"#,
    );
    let cases = [
        (4, TC_SHOT), // first byte of the window
        (8, TC_SHOT), // ends on its last byte
        (3, TC_NEXT), // starts before the offset
        (9, TC_NEXT), // ends past offset + depth
        (0, TC_NEXT),
    ];
    for (pos, verdict) in cases {
        assert_eq!(
            ids.verdict(&tcp4(80, &at(40, pos, b"ABCD"))),
            verdict,
            "at {pos}"
        );
    }
    // shorter than the window: the payload end bounds it
    assert_eq!(ids.verdict(&tcp4(80, b"....ABCD")), TC_SHOT);
    assert_eq!(ids.verdict(&tcp4(80, b"....ABC")), TC_NEXT);
    assert_eq!(ids.stat(ids_stat::IDS_STAT_MATCH_DROP), 3);
}

#[test]
fn nocase_folds_ascii_letters_only() {
    if !privileged("nocase_folds_ascii_letters_only") {
        return;
    }
    let ids = Ids::new(
        r#"
ids:
  rules:
    - { id: nc, proto: tcp, dst_port: 80, content: "User-Agent: EviL[1]", nocase: true, action: drop }
    - { id: cs, proto: tcp, dst_port: 81, content: "Exact", action: drop }
    - { id: one, proto: tcp, dst_port: 82, content: "Z", nocase: true, action: drop }
    - { id: two, proto: tcp, dst_port: 83, content: "ab", action: drop }
"#,
    );
    // one-byte contents, and a first byte that repeats just before the match
    assert_eq!(ids.verdict(&tcp4(82, b"......z")), TC_SHOT);
    assert_eq!(ids.verdict(&tcp4(82, b"......y")), TC_NEXT);
    assert_eq!(ids.verdict(&tcp4(83, b"aaaaaaaaab")), TC_SHOT);
    assert_eq!(ids.verdict(&tcp4(83, b"aaaaaaaaaa")), TC_NEXT);
    assert_eq!(
        ids.verdict(&tcp4(80, b"GET /\r\nuser-agent: eVIl[1]\r\n")),
        TC_SHOT
    );
    assert_eq!(
        ids.verdict(&tcp4(80, b"GET /\r\nUSER-AGENT: EVIL[1]\r\n")),
        TC_SHOT
    );
    // '[' and '{' differ by 0x20 too, but are not letters
    assert_eq!(
        ids.verdict(&tcp4(80, b"GET /\r\nuser-agent: evil{1]\r\n")),
        TC_NEXT
    );
    assert_eq!(ids.verdict(&tcp4(81, b"xxExactxx")), TC_SHOT);
    assert_eq!(ids.verdict(&tcp4(81, b"xxexactxx")), TC_NEXT);
}

#[test]
fn every_content_of_a_rule_is_required() {
    if !privileged("every_content_of_a_rule_is_required") {
        return;
    }
    let ids = Ids::new(
        r#"
ids:
  rules:
    - id: multi
      proto: tcp
      dst_port: 8080
      action: drop
      contents:
        - { content: "POST " , offset: 0, depth: 5 }
        - { content: "cmd=" }
        - { content: "|2f|bin|2f|sh" }
"#,
    );
    assert_eq!(
        ids.verdict(&tcp4(8080, b"POST /x HTTP/1.1\r\n\r\ncmd=/bin/sh")),
        TC_SHOT
    );
    // any two of three
    assert_eq!(
        ids.verdict(&tcp4(8080, b"POST /x HTTP/1.1\r\n\r\ncmd=/bin/ls")),
        TC_NEXT
    );
    assert_eq!(
        ids.verdict(&tcp4(8080, b"GET /x HTTP/1.1\r\n\r\ncmd=/bin/sh")),
        TC_NEXT
    );
    assert_eq!(
        ids.verdict(&tcp4(8080, b"POST /x HTTP/1.1\r\n\r\nexe=/bin/sh")),
        TC_NEXT
    );
    // order is not a condition (no distance/within in the subset)
    assert_eq!(ids.verdict(&tcp4(8080, b"POST /bin/sh?cmd=1")), TC_SHOT);
}

#[test]
fn direction_picks_the_port_side() {
    if !privileged("direction_picks_the_port_side") {
        return;
    }
    let ids = Ids::new(
        r#"
ids:
  rules:
    - { id: req, proto: tcp, dst_port: 80, content: "REQ", action: drop }
    - { id: resp, proto: tcp, dst_port: 81, direction: to_client, content: "RESP", action: drop }
    - { id: both, proto: tcp, dst_port: 82, direction: both, content: "BOTH", action: drop }
    - { id: pinned, proto: tcp, src_port: 5000, dst_port: 83, content: "PIN", action: drop }
"#,
    );
    assert_eq!(ids.verdict(&tcp(false, 40000, 80, b"REQ")), TC_SHOT);
    assert_eq!(ids.verdict(&tcp(false, 80, 40000, b"REQ")), TC_NEXT);
    assert_eq!(ids.verdict(&tcp(false, 81, 40000, b"RESP")), TC_SHOT);
    assert_eq!(ids.verdict(&tcp(false, 40000, 81, b"RESP")), TC_NEXT);
    assert_eq!(ids.verdict(&tcp(true, 40000, 82, b"BOTH")), TC_SHOT);
    assert_eq!(ids.verdict(&tcp(true, 82, 40000, b"BOTH")), TC_SHOT);
    assert_eq!(ids.verdict(&tcp(false, 5000, 83, b"PIN")), TC_SHOT);
    assert_eq!(ids.verdict(&tcp(false, 5001, 83, b"PIN")), TC_NEXT);
}

#[test]
fn the_scanned_window_ends_at_scan_bytes() {
    if !privileged("the_scanned_window_ends_at_scan_bytes") {
        return;
    }
    let n = ids::SCAN_BYTES;
    let ids = Ids::new(
        r#"
ids:
  rules:
    - { id: tail, proto: tcp, dst_port: 80, content: "TAILMARK", action: drop }
"#,
    );
    // ends on the last scanned byte
    assert_eq!(
        ids.verdict(&tcp4(80, &at(1400, n - 8, b"TAILMARK"))),
        TC_SHOT
    );
    // straddles the end: not seen
    assert_eq!(
        ids.verdict(&tcp4(80, &at(1400, n - 4, b"TAILMARK"))),
        TC_NEXT
    );
    assert_eq!(
        ids.verdict(&tcp4(80, &at(1400, n + 100, b"TAILMARK"))),
        TC_NEXT
    );
    // a payload of exactly n bytes is not truncated
    assert_eq!(ids.verdict(&tcp4(80, &at(n, n - 8, b"TAILMARK"))), TC_SHOT);
    assert_eq!(ids.stat(ids_stat::IDS_STAT_TRUNCATED), 3);
    assert_eq!(ids.stat(ids_stat::IDS_STAT_MATCH_DROP), 2);
    // a first byte that repeats in every lane: every position is a candidate
    assert_eq!(ids.verdict(&tcp4(80, &at(1000, 990, b"TAILMARK"))), TC_SHOT);
    // every alignment against the 16-byte scan steps
    for pos in 0..48 {
        assert_eq!(
            ids.verdict(&tcp4(80, &at(64, pos, b"TAILMARK"))),
            TC_SHOT,
            "at {pos}"
        );
        assert_eq!(
            ids.verdict(&tcp4(80, &at(64, pos, b"TAILMARX"))),
            TC_NEXT,
            "at {pos}"
        );
    }
    let mut ts = vec![b'T'; 1000];
    ts[500..508].copy_from_slice(b"TAILMARK");
    assert_eq!(ids.verdict(&tcp4(80, &ts)), TC_SHOT);
    ts[500..508].copy_from_slice(b"TAILMARx");
    assert_eq!(ids.verdict(&tcp4(80, &ts)), TC_NEXT);
}

#[test]
fn sampling_thins_alerts_never_drops() {
    if !privileged("sampling_thins_alerts_never_drops") {
        return;
    }
    let rules = r#"
  rules:
    - { id: a, proto: tcp, dst_port: 80, content: "ALERTME", action: alert }
    - { id: d, proto: tcp, dst_port: 80, content: "DROPME", action: drop }
"#;
    let mut ids = Ids::new(&format!("ids:\n  sampling: 0.0\n{rules}"));
    let events = Events::new(&ids, tables_of(&ids));
    for _ in 0..20 {
        assert_eq!(ids.verdict(&tcp4(80, b"ALERTME")), TC_NEXT);
    }
    assert_eq!(ids.verdict(&tcp4(80, b"DROPME")), TC_SHOT);
    assert_eq!(ids.stat(ids_stat::IDS_STAT_MATCH_ALERT), 20);
    assert_eq!(ids.stat(ids_stat::IDS_STAT_SAMPLED_OUT), 20);
    assert_eq!(ids.stat(ids_stat::IDS_STAT_EVENTS_SENT), 1);
    let got = events.take();
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0]["action"], "drop");

    ids.apply(&format!("ids:\n  sampling: 1.0\n{rules}"));
    for _ in 0..20 {
        assert_eq!(ids.verdict(&tcp4(80, b"ALERTME")), TC_NEXT);
    }
    assert_eq!(ids.stat(ids_stat::IDS_STAT_MATCH_ALERT), 40);
    assert_eq!(ids.stat(ids_stat::IDS_STAT_SAMPLED_OUT), 20);
    assert_eq!(ids.stat(ids_stat::IDS_STAT_EVENTS_SENT), 21);
    assert_eq!(events.take().len(), 20);
}

#[test]
fn imported_rules_alert_with_sid_and_msg() {
    if !privileged("imported_rules_alert_with_sid_and_msg") {
        return;
    }
    let dir = std::env::temp_dir().join(format!("esids-rules-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("local.rules");
    std::fs::write(
        &file,
        concat!(
            "# a comment\n",
            "alert tcp $EXTERNAL_NET any -> $HOME_NET 8000 (msg:\"LOCAL probe \\\"x\\\"\"; content:\"probe|3a 20|\"; nocase; depth:16; classtype:attempted-recon; sid:9000001; rev:3;)\n",
            "drop tcp any any -> any [8001,8002] (msg:\"LOCAL kill\"; content:\"KILL\"; sid:9000002; rev:1;)\n",
            "# alert tcp any any -> any 8003 (msg:\"disabled\"; content:\"x\"; sid:9000003;)\n",
            "alert tcp any any -> any 8004 (msg:\"regex\"; pcre:\"/x+/\"; sid:9000004;)\n",
        ),
    )
    .unwrap();
    let yaml = format!("ids:\n  suricata_rules: [{}]\n", file.display());
    let ids = Ids::new(&yaml);
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(ids.compiled.rules.len(), 2);
    let events = Events::new(&ids, tables_of(&ids));
    assert_eq!(ids.verdict(&tcp4(8000, b"PROBE: hello")), TC_NEXT);
    assert_eq!(ids.verdict(&tcp4(8002, b"..KILL..")), TC_SHOT);
    assert_eq!(ids.verdict(&tcp4(8003, b"x")), TC_NEXT);
    let got = events.take();
    assert_eq!(got.len(), 2, "{got:?}");
    assert_eq!(got[0]["event_type"], "alert");
    assert_eq!(got[0]["action"], "pass");
    assert_eq!(got[0]["dest_port"], 8000);
    assert_eq!(got[0]["rule_id"], "sid:9000001");
    assert_eq!(got[0]["alert"]["signature_id"], 9000001);
    assert_eq!(got[0]["alert"]["rev"], 3);
    assert_eq!(got[0]["alert"]["signature"], "LOCAL probe \"x\"");
    assert_eq!(got[0]["alert"]["category"], "attempted-recon");
    assert_eq!(got[0]["alert"]["action"], "allowed");
    assert_eq!(got[1]["action"], "drop");
    assert_eq!(got[1]["alert"]["signature_id"], 9000002);
    assert_eq!(got[1]["alert"]["signature"], "LOCAL kill");
    assert_eq!(got[1]["alert"]["action"], "blocked");
    assert_eq!(ids.stat(ids_stat::IDS_STAT_MATCH_ALERT), 1);
    assert_eq!(ids.stat(ids_stat::IDS_STAT_MATCH_DROP), 1);
    assert_eq!(ids.stat(ids_stat::IDS_STAT_EVENTS_SENT), 2);
}

#[test]
fn a_reload_switches_generation_and_events_name_the_right_rule() {
    if !privileged("a_reload_switches_generation_and_events_name_the_right_rule") {
        return;
    }
    let mut ids = Ids::new(
        r#"
ids:
  rules:
    - { id: first, proto: tcp, dst_port: 80, content: "ONE", action: alert }
    - { id: second, proto: tcp, dst_port: 80, content: "TWO", action: alert }
"#,
    );
    let tables = tables_of(&ids);
    let events = Events::new(&ids, tables.clone());
    let gen0 = ids.maps.settings().unwrap().gen;
    assert_eq!(ids.verdict(&tcp4(80, b"TWO")), TC_NEXT);
    // the same rule at another rank, a rule gone
    ids.apply(
        r#"
ids:
  rules:
    - { id: second, proto: tcp, dst_port: 80, content: "TWO", action: alert }
    - { id: third, proto: tcp, dst_port: 443, content: "THREE", action: drop }
"#,
    );
    let gen1 = ids.maps.settings().unwrap().gen;
    assert_eq!(gen1, gen0 ^ 1);
    tables.lock().unwrap()[gen1 as usize] = ids.compiled.rules.clone();
    assert_eq!(ids.verdict(&tcp4(80, b"TWO")), TC_NEXT);
    assert_eq!(ids.verdict(&tcp4(80, b"ONE")), TC_NEXT);
    assert_eq!(ids.verdict(&tcp4(443, b"THREE")), TC_SHOT);
    // the old generation's index entries are gone
    assert_eq!(ids.maps.index_len(gen0).unwrap(), 0);
    let got: Vec<String> = events
        .take()
        .iter()
        .map(|e| e["rule_id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(got, ["second", "second", "third"]);
}
