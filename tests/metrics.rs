//! The counters as operators see them: the Prometheus exporter served over HTTP after known
//! traffic through BPF_PROG_TEST_RUN (values exact, rule counters across a reload), and
//! `ebpfsentinel stats` reading maps pinned in a private bpffs, with and without the daemon's
//! state file, and on a pin root with nothing pinned.

mod common;

use ebpfsentinel::maps::Generations;
use std::collections::BTreeSet;
use std::ffi::CString;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::{privileged, Firewall, XDP_DROP, XDP_PASS};
use ebpfsentinel::loader::{Dataplane, LoadOptions};
use ebpfsentinel::metrics::{fill_levels, ConsumerCounters, Exporter, Snapshot};
use ebpfsentinel::packet::{PacketBuilder, TcpFlags};
use ebpfsentinel::state::{DaemonState, StateLock};
use libbpf_rs::ProgramInput;
use serde_json::{json, Value};

const BIN: &str = env!("CARGO_BIN_EXE_ebpfsentinel");

const RULES: &str = r#"
firewall:
  default_policy: pass
  rules:
    - { id: drop-net, action: drop, src: 192.0.2.0/24 }
    - { id: no-telnet, action: drop, proto: tcp, dst_port: 23, log: true }
    - { id: unused, action: drop, proto: udp, dst_port: 9 }
"#;

/// The same rules less drop-net, in another order.
const RELOADED: &str = r#"
firewall:
  default_policy: pass
  rules:
    - { id: unused, action: drop, proto: udp, dst_port: 9 }
    - { id: no-telnet, action: drop, proto: tcp, dst_port: 23, log: true }
"#;

fn v4(s: &str) -> Ipv4Addr {
    s.parse().unwrap()
}

fn udp4(src: &str, dport: u16) -> Vec<u8> {
    PacketBuilder::new()
        .ipv4(v4(src), v4("203.0.113.1"))
        .udp(40000, dport)
        .payload(b"payload")
        .build()
}

fn telnet(src: &str) -> Vec<u8> {
    PacketBuilder::new()
        .ipv4(v4(src), v4("203.0.113.1"))
        .tcp(40000, 23, TcpFlags::SYN)
        .build()
}

fn arp() -> Vec<u8> {
    PacketBuilder::new()
        .ethertype(0x0806)
        .payload(&[0u8; 28])
        .build()
}

/// The traffic both tests send, with the verdict each packet must get.
struct Traffic {
    /// 3 packets, dropped by drop-net
    listed: Vec<Vec<u8>>,
    /// 2 packets, dropped by no-telnet (logged)
    telnet: Vec<Vec<u8>>,
    /// 5 packets, passed by the default policy
    clean: Vec<Vec<u8>>,
    /// 2 ARP frames
    non_ip: Vec<Vec<u8>>,
}

impl Traffic {
    fn new() -> Traffic {
        Traffic {
            listed: (1..=3).map(|i| udp4(&format!("192.0.2.{i}"), 53)).collect(),
            telnet: (1..=2)
                .map(|i| telnet(&format!("198.51.100.{i}")))
                .collect(),
            clean: (1..=5)
                .map(|i| udp4(&format!("198.51.100.{i}"), 53))
                .collect(),
            non_ip: vec![arp(), arp()],
        }
    }

    fn run(&self, run: impl Fn(&[u8]) -> u32) {
        for (frames, verdict) in [
            (&self.listed, XDP_DROP),
            (&self.telnet, XDP_DROP),
            (&self.clean, XDP_PASS),
            (&self.non_ip, XDP_PASS),
        ] {
            for f in frames {
                assert_eq!(run(f), verdict, "verdict of a {}-byte frame", f.len());
            }
        }
    }
}

fn bytes(frames: &[Vec<u8>]) -> usize {
    frames.iter().map(Vec::len).sum()
}

fn free_port() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").expect("binding an ephemeral port");
    l.local_addr().expect("local address")
}

/// A minimal HTTP/1.1 GET: (status line, headers in lower case, body).
fn http_get(addr: SocketAddr, path: &str) -> (String, String, String) {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
        .unwrap_or_else(|e| panic!("connecting to {addr}: {e}"));
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nAccept: text/plain\r\nConnection: close\r\n\r\n"
    )
    .expect("sending the request");
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).expect("reading the response");
    let raw = String::from_utf8(raw).expect("a UTF-8 response");
    let (head, body) = raw.split_once("\r\n\r\n").expect("headers end");
    let (status, headers) = head.split_once("\r\n").unwrap_or((head, ""));
    let headers = headers.to_ascii_lowercase();
    let body = if headers.contains("transfer-encoding: chunked") {
        dechunk(body)
    } else {
        body.to_string()
    };
    (status.to_string(), headers, body)
}

fn dechunk(mut rest: &str) -> String {
    let mut out = String::new();
    loop {
        let (size, after) = rest.split_once("\r\n").expect("chunk size line");
        let size = usize::from_str_radix(size.trim(), 16).expect("hex chunk size");
        if size == 0 {
            return out;
        }
        out.push_str(&after[..size]);
        rest = &after[size + 2..];
    }
}

fn samples(body: &str) -> BTreeSet<String> {
    body.lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_string)
        .collect()
}

fn scrape(addr: SocketAddr) -> BTreeSet<String> {
    let (status, headers, body) = http_get(addr, "/metrics");
    assert_eq!(status, "HTTP/1.1 200 OK", "{headers}\n{body}");
    assert!(headers.contains("content-type: text/plain"), "{headers}");
    for name in [
        "ebpfsentinel_xdp_firewall_packets_total",
        "ebpfsentinel_rule_packets_total",
        "ebpfsentinel_map_entries",
    ] {
        assert!(
            body.contains(&format!("# HELP {name} ")),
            "no HELP for {name}:\n{body}"
        );
    }
    samples(&body)
}

fn assert_has(got: &BTreeSet<String>, want: &[String]) {
    let missing: Vec<&String> = want.iter().filter(|l| !got.contains(*l)).collect();
    assert!(
        missing.is_empty(),
        "missing from /metrics: {missing:#?}\n--- got\n{}",
        got.iter().cloned().collect::<Vec<_>>().join("\n")
    );
}

fn packets_line(verdict: &str, reason: &str, n: usize) -> String {
    format!(
        r#"ebpfsentinel_xdp_firewall_packets_total{{verdict="{verdict}",reason="{reason}"}} {n}"#
    )
}

fn rule_lines(id: &str, packets: usize, bytes: usize) -> [String; 2] {
    [
        format!(r#"ebpfsentinel_rule_packets_total{{rule="{id}"}} {packets}"#),
        format!(r#"ebpfsentinel_rule_bytes_total{{rule="{id}"}} {bytes}"#),
    ]
}

fn ids(fw: &Firewall) -> Vec<String> {
    fw.ruleset.ranks.iter().map(|r| r.id.clone()).collect()
}

#[test]
fn exporter_serves_the_kernel_counters_over_http() {
    if !privileged("exporter_serves_the_kernel_counters_over_http") {
        return;
    }
    let mut fw = Firewall::load(RULES);
    let t = Traffic::new();
    t.run(|f| fw.run(f));

    let consumer = ConsumerCounters {
        events_written: 2,
        events_dropped: 1,
        reloads_ok: 0,
        reloads_failed: 3,
    };
    let generation = fw.maps.active_generation().unwrap();
    let snapshot = Snapshot::read(
        &fw.maps,
        generation,
        &ids(&fw),
        &fill_levels(&fw.ruleset),
        &consumer,
    )
    .expect("snapshot");

    let addr = free_port();
    // The only test of this binary that installs the process-wide recorder.
    let exporter = Exporter::install(addr).expect("installing the exporter");
    exporter.publish(&snapshot);
    let got = scrape(addr);
    assert_eq!(
        got,
        samples(&exporter.render()),
        "HTTP and render() disagree"
    );

    let mut want = vec![
        packets_line("pass", "rule", 0),
        packets_line("pass", "default_policy", 5),
        packets_line("pass", "allowlist", 0),
        packets_line("pass", "non_ip", 2),
        packets_line("pass", "malformed", 0),
        packets_line("pass", "monitor", 0),
        packets_line("drop", "rule", 5),
        packets_line("drop", "default_policy", 0),
        packets_line("drop", "malformed", 0),
        "ebpfsentinel_xdp_firewall_packets_seen_total 12".to_string(),
        r#"ebpfsentinel_events_total{program="xdp_firewall"} 2"#.to_string(),
        r#"ebpfsentinel_events_dropped_total{stage="kernel"} 0"#.to_string(),
        r#"ebpfsentinel_events_dropped_total{stage="consumer"} 1"#.to_string(),
        "ebpfsentinel_events_written_total 2".to_string(),
        r#"ebpfsentinel_config_reloads_total{result="ok"} 0"#.to_string(),
        r#"ebpfsentinel_config_reloads_total{result="error"} 3"#.to_string(),
        format!("ebpfsentinel_config_generation {generation}"),
        r#"ebpfsentinel_map_entries{map="fw_lpm_src_v4"} 1"#.to_string(),
        r#"ebpfsentinel_map_capacity{map="fw_lpm_src_v4"} 1048576"#.to_string(),
        r#"ebpfsentinel_map_entries{map="fw_rules_v4"} 2"#.to_string(),
        r#"ebpfsentinel_map_entries{map="fw_allow_v4"} 0"#.to_string(),
        format!(
            r#"ebpfsentinel_build_info{{version="{}",kernel="{}"}} 1"#,
            env!("CARGO_PKG_VERSION"),
            std::fs::read_to_string("/proc/sys/kernel/osrelease")
                .unwrap()
                .trim()
        ),
    ];
    want.extend(rule_lines("drop-net", 3, bytes(&t.listed)));
    want.extend(rule_lines("no-telnet", 2, bytes(&t.telnet)));
    want.extend(rule_lines("unused", 0, 0));
    assert_has(&got, &want);
    let rule_series = got
        .iter()
        .filter(|l| l.starts_with("ebpfsentinel_rule_"))
        .count();
    assert_eq!(rule_series, 6, "{got:#?}");

    // A reload: drop-net goes, no-telnet moves to another rank of the other generation and
    // its kernel counter restarts at zero; the exported one continues.
    fw.apply(RELOADED);
    let reloaded = fw.maps.active_generation().unwrap();
    assert_ne!(reloaded, generation);
    let more = telnet("198.51.100.9");
    assert_eq!(fw.run(&more), XDP_DROP);
    assert_eq!(fw.run(&t.listed[0]), XDP_PASS, "drop-net is gone");
    let consumer = ConsumerCounters {
        reloads_ok: 1,
        ..consumer
    };
    let snapshot = Snapshot::read(
        &fw.maps,
        reloaded,
        &ids(&fw),
        &fill_levels(&fw.ruleset),
        &consumer,
    )
    .expect("snapshot");
    assert_eq!(snapshot.rules[1].id, "no-telnet");
    assert_eq!(
        snapshot.rules[1].packets, 1,
        "kernel counts since the reload"
    );
    exporter.publish(&snapshot);
    let got = scrape(addr);
    let mut want = vec![
        packets_line("drop", "rule", 6),
        packets_line("pass", "default_policy", 6),
        "ebpfsentinel_xdp_firewall_packets_seen_total 14".to_string(),
        format!("ebpfsentinel_config_generation {reloaded}"),
        r#"ebpfsentinel_config_reloads_total{result="ok"} 1"#.to_string(),
        r#"ebpfsentinel_map_entries{map="fw_lpm_src_v4"} 0"#.to_string(),
    ];
    want.extend(rule_lines("no-telnet", 3, bytes(&t.telnet) + more.len()));
    // gone from the ruleset: no longer updated (the metrics crate cannot unregister it)
    want.extend(rule_lines("drop-net", 3, bytes(&t.listed)));
    want.extend(rule_lines("unused", 0, 0));
    assert_has(&got, &want);

    let (status, _, body) = http_get(addr, "/health");
    assert_eq!(status, "HTTP/1.1 200 OK");
    assert_eq!(body, "OK");
}

// ---- stats ----------------------------------------------------------------------------------

/// A private bpffs mounted on a fresh temp dir; unmounted (pins and all) and removed on drop.
struct Bpffs(PathBuf);

impl Bpffs {
    fn mount(tag: &str) -> Bpffs {
        let dir =
            std::env::temp_dir().join(format!("ebpfsentinel-metrics-{}-{tag}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("creating the mount point");
        let target = CString::new(dir.as_os_str().as_encoded_bytes()).unwrap();
        let bpf = c"bpf";
        // SAFETY: every pointer is a NUL-terminated string that outlives the call; no data.
        let rc = unsafe {
            libc::mount(
                bpf.as_ptr(),
                target.as_ptr(),
                bpf.as_ptr(),
                0,
                std::ptr::null(),
            )
        };
        assert_eq!(
            rc,
            0,
            "mount -t bpf bpf {}: {}",
            dir.display(),
            std::io::Error::last_os_error()
        );
        Bpffs(dir)
    }
}

impl Drop for Bpffs {
    fn drop(&mut self) {
        let target = CString::new(self.0.as_os_str().as_encoded_bytes()).unwrap();
        // SAFETY: a NUL-terminated path that outlives the call.
        unsafe { libc::umount2(target.as_ptr(), libc::MNT_DETACH) };
        let _ = std::fs::remove_dir(&self.0);
    }
}

struct Run {
    code: i32,
    stdout: String,
    stderr: String,
}

fn ebpfsentinel(args: &[&str]) -> Run {
    let out = Command::new(BIN)
        .args(args)
        .output()
        .expect("spawning the binary");
    Run {
        code: out.status.code().expect("exited, not killed"),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

fn stats_json(pin_root: &Path) -> Value {
    let root = pin_root.to_str().unwrap();
    let out = ebpfsentinel(&["stats", "--pin-root", root, "--json"]);
    assert_eq!(
        out.code, 0,
        "stdout:\n{}\nstderr:\n{}",
        out.stdout, out.stderr
    );
    serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", out.stdout))
}

#[test]
fn stats_reads_the_pinned_counters() {
    if !privileged("stats_reads_the_pinned_counters") {
        return;
    }
    let fs = Bpffs::mount("stats");
    let pin_root = fs.0.join("es");
    let dp = Dataplane::load(&LoadOptions {
        pin_root: Some(pin_root.clone()),
        bench_addrs: None,
        ct_table_size: None,
    })
    .expect("loading with pins");
    let maps = dp.firewall_maps().expect("maps");
    let rs = common::compile_yaml(RULES);
    let generation = maps.apply(&rs).expect("apply");
    let t = Traffic::new();
    t.run(|frame| {
        dp.firewall_program()
            .test_run(ProgramInput {
                data_in: Some(frame),
                ..Default::default()
            })
            .expect("BPF_PROG_TEST_RUN")
            .return_value
    });

    let packets = json!({
        "pass": {"rule": 0, "default_policy": 5, "allowlist": 0, "non_ip": 2, "malformed": 0, "monitor": 0, "tracked": 0},
        "drop": {"rule": 5, "default_policy": 0, "malformed": 0, "blocked": 0},
    });

    // No daemon state file: the verdict counters only, and why.
    let s = stats_json(&pin_root);
    assert_eq!(s["generation"], generation);
    assert_eq!(s["packets"], packets);
    assert_eq!(s["seen"], 12);
    assert_eq!(s["events"], json!({"sent": 2, "dropped": 0}));
    assert_eq!(s["rules"], Value::Null);
    assert!(
        s["rules_unavailable"]
            .as_str()
            .is_some_and(|w| w.contains("no daemon state file")),
        "{s:#}"
    );

    // The daemon's state file names the rules by rank.
    let lock = StateLock::acquire(&pin_root).expect("state lock");
    let mut state = DaemonState {
        pid: std::process::id(),
        config: PathBuf::from("/dev/null"),
        pin_root: pin_root.clone(),
        netns_inode: 0,
        interfaces: Vec::new(),
        tc: Vec::new(),
        generation,
        rules: rs.ranks.iter().map(|r| r.id.clone()).collect(),
        maps: Vec::new(),
        metrics_listen: None,
    };
    lock.write(&state).expect("writing the state file");
    let s = stats_json(&pin_root);
    assert_eq!(s["packets"], packets);
    assert_eq!(
        s["rules"],
        json!([
            {"id": "drop-net", "packets": 3, "bytes": bytes(&t.listed)},
            {"id": "no-telnet", "packets": 2, "bytes": bytes(&t.telnet)},
            {"id": "unused", "packets": 0, "bytes": 0},
        ])
    );
    assert!(s.get("rules_unavailable").is_none(), "{s:#}");

    let root = pin_root.to_str().unwrap();
    let text = ebpfsentinel(&["stats", "--pin-root", root]);
    assert_eq!(text.code, 0, "{}", text.stderr);
    for needle in [
        format!("ruleset generation {generation}"),
        "packets seen: 12".to_string(),
        format!("{:<8} {:<16} {:>14}", "drop", "rule", 5),
        format!("{:<8} {:<16} {:>14}", "pass", "non_ip", 2),
        "events: 2 sent, 0 dropped in the kernel".to_string(),
        format!("{:<32} {:>14} {:>16}", "drop-net", 3, bytes(&t.listed)),
    ] {
        assert!(
            text.stdout.contains(&needle),
            "{needle:?} in:\n{}",
            text.stdout
        );
    }

    // A state file of another generation does not name this one's rules.
    state.generation ^= 1;
    lock.write(&state).expect("writing the state file");
    let s = stats_json(&pin_root);
    assert_eq!(s["rules"], Value::Null);
    assert!(
        s["rules_unavailable"]
            .as_str()
            .is_some_and(|w| w.contains("describes generation")),
        "{s:#}"
    );
    drop(lock);
    drop(maps);
    drop(dp);
}

#[test]
fn stats_with_nothing_pinned_exits_1() {
    let empty =
        std::env::temp_dir().join(format!("ebpfsentinel-metrics-{}-empty", std::process::id()));
    std::fs::create_dir_all(&empty).unwrap();
    let missing = empty.join("missing");
    for dir in [&empty, &missing] {
        for json in [false, true] {
            let mut args = vec!["stats", "--pin-root", dir.to_str().unwrap()];
            if json {
                args.push("--json");
            }
            let out = ebpfsentinel(&args);
            assert_eq!(out.code, 1, "{args:?}: {}{}", out.stdout, out.stderr);
            assert!(out.stdout.is_empty(), "{args:?}: {}", out.stdout);
            assert!(
                out.stderr
                    .contains(&format!("nothing is pinned at {}", dir.display())),
                "{args:?}: {}",
                out.stderr
            );
        }
    }
    let _ = std::fs::remove_dir(&empty);
}

#[test]
fn stats_help_says_it_reads_pins_without_a_daemon() {
    let out = ebpfsentinel(&["stats", "--help"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    for needle in [
        "pinned maps",
        "no daemon needed",
        "--pin-root",
        "--json",
        "Exits 1 when nothing is pinned",
    ] {
        assert!(
            out.stdout.contains(needle),
            "{needle:?} in:\n{}",
            out.stdout
        );
    }
}
