//! The operator runtime: reloads are atomic under traffic, and enforcement outlives the daemon
//! (kill -9, restart with adoption, SIGHUP and `reload`, `events`, metrics, `down`).

mod common;

use ebpfsentinel::maps::Generations;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::daemon::{cli, metric, scrape, Daemon, Scratch};
use common::netns::{veth, Netns};
use common::{compile_yaml, privileged, traffic, Firewall, XDP_DROP, XDP_PASS};
use ebpfsentinel::packet::PacketBuilder;

const PACKETS: u32 = 64;

/// Ruleset A drops packet i by rule a<i>; ruleset B passes it by rule b<i>; both log every
/// match and fall back to the opposite default, so a packet that saw part of a ruleset (a
/// missing entry, a rule of the other one) shows up as a verdict without its event or with
/// the other ruleset's rule.
fn ruleset(which: char) -> String {
    let (action, default) = if which == 'a' {
        ("drop", "pass")
    } else {
        ("pass", "drop")
    };
    let mut y = format!("firewall:\n  default_policy: {default}\n  rules:\n");
    for i in 0..PACKETS {
        // CIDR-only rules for even packets, classifier rules for odd ones: both structures
        // flip together
        if i % 2 == 0 {
            y += &format!(
                "    - {{ id: {which}{i}, action: {action}, src: 10.{i}.0.0/16, log: true }}\n"
            );
        } else {
            y += &format!(
                "    - {{ id: {which}{i}, action: {action}, proto: udp, src: 10.{i}.0.0/16, dst_port: {}, log: true }}\n",
                1000 + i
            );
        }
    }
    // filler that makes every install and retirement take real time
    for j in 0..2000u32 {
        y += &format!(
            "    - {{ id: {which}-filler{j}, action: {action}, src: 172.{}.{}.0/24, priority: 500 }}\n",
            16 + j / 256,
            j % 256
        );
    }
    y
}

fn packet(i: u32) -> Vec<u8> {
    PacketBuilder::new()
        .ipv4(
            format!("10.{i}.1.1").parse().unwrap(),
            "192.0.2.1".parse().unwrap(),
        )
        .udp(5, (1000 + i) as u16)
        .build()
}

#[test]
fn reload_is_atomic_under_traffic() {
    if !privileged("reload_is_atomic_under_traffic") {
        return;
    }
    let a = compile_yaml(&ruleset('a'));
    let b = compile_yaml(&ruleset('b'));
    let fw = Firewall::load(&ruleset('a'));
    let names: [Vec<String>; 2] = [
        a.ranks.iter().map(|r| r.id.clone()).collect(),
        b.ranks.iter().map(|r| r.id.clone()).collect(),
    ];
    let seen = Arc::new(Mutex::new(Vec::new()));
    let sink = seen.clone();
    let mut rb = libbpf_rs::RingBufferBuilder::new();
    rb.add(&fw.dp.firewall.maps.events, move |data: &[u8]| {
        let ev: ebpfsentinel::abi::packet_event = ebpfsentinel::abi::read(data).unwrap();
        sink.lock().unwrap().push(ev.rule_id);
        0
    })
    .unwrap();
    let rb = rb.build().unwrap();
    rb.consume().unwrap();
    seen.lock().unwrap().clear();

    let stop = AtomicBool::new(false);
    let maps = &fw.maps;
    let (a_ref, b_ref) = (&a, &b);
    let mut outcomes = [0u64; 2];
    let flips = std::thread::scope(|s| {
        let reloader = s.spawn(|| {
            let deadline = Instant::now() + Duration::from_secs(6);
            let (mut current, mut flips) = (0, 0u32);
            while Instant::now() < deadline {
                let (next, retiring) = if current == 0 {
                    (b_ref, a_ref)
                } else {
                    (a_ref, b_ref)
                };
                maps.replace(next, true, Some(retiring), Duration::from_millis(20))
                    .unwrap();
                current ^= 1;
                flips += 1;
            }
            stop.store(true, Ordering::Relaxed);
            flips
        });
        let mut i = 0;
        while !stop.load(Ordering::Relaxed) {
            let verdict = fw.run(&packet(i));
            rb.consume().unwrap();
            let events: Vec<u16> = seen.lock().unwrap().drain(..).collect();
            let [rule_id] = events[..] else {
                panic!("packet {i}: verdict {verdict} with events {events:?}: a partial ruleset");
            };
            let (_, rank) = ebpfsentinel::abi::event_rule_parts(rule_id).unwrap();
            let name_a = names[0].get(rank as usize).map(String::as_str);
            let name_b = names[1].get(rank as usize).map(String::as_str);
            let (want_a, want_b) = (format!("a{i}"), format!("b{i}"));
            match verdict {
                XDP_DROP if name_a == Some(&want_a) => outcomes[0] += 1,
                XDP_PASS if name_b == Some(&want_b) => outcomes[1] += 1,
                v => panic!(
                    "packet {i}: verdict {v} with rule rank {rank} ({name_a:?}/{name_b:?}): belongs to neither ruleset"
                ),
            }
            i = (i + 1) % PACKETS;
        }
        reloader.join().unwrap()
    });
    let runs = outcomes[0] + outcomes[1];
    assert!(
        outcomes[0] > 100 && outcomes[1] > 100,
        "both rulesets were seen: {outcomes:?}"
    );
    eprintln!("{runs} packets over {flips} reloads, each wholly one ruleset");
    assert!(flips >= 10, "only {flips} reloads");
}

const LISTED: &str = "1.10.16.5"; // inside 1.10.16.0/20 of the shipped Spamhaus DROP list
const CLEAN: &str = "10.78.0.2";
const ROUTER: &str = "10.78.0.1";

fn addr(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn base_config() -> String {
    format!(
        "interfaces: [eR]\nfirewall:\n  aliases:\n    spamhaus: {{ file: {}/spamhaus_drop.netset }}\n  rules:\n    - {{ id: drop-spamhaus, action: drop, src: \"@spamhaus\", log: true }}\n",
        common::feeds_dir().display()
    )
}

/// Datagrams that reached the router from each source, `count` sent from each.
fn udp_round(client: &Netns, rx: &std::net::UdpSocket, count: usize) -> (usize, usize) {
    let dst = SocketAddr::new(addr(ROUTER), 6000);
    traffic::udp_send(client, addr(CLEAN), dst, count);
    traffic::udp_send(client, addr(LISTED), dst, count);
    let got = traffic::udp_drain(rx);
    (
        got.get(&addr(LISTED)).copied().unwrap_or(0),
        got.get(&addr(CLEAN)).copied().unwrap_or(0),
    )
}

#[test]
fn enforcement_outlives_the_daemon() {
    if !privileged("enforcement_outlives_the_daemon") {
        return;
    }
    let client = Netns::new("rt-client");
    let router = Netns::new("rt-router");
    veth(&client, "eC", &router, "eR");
    client.exec(&["ip", "addr", "add", "10.78.0.2/24", "dev", "eC"]);
    client.exec(&["ip", "addr", "add", "1.10.16.5/32", "dev", "eC"]);
    router.exec(&["ip", "addr", "add", "10.78.0.1/24", "dev", "eR"]);
    router.exec(&["ip", "route", "add", "1.10.16.5/32", "dev", "eR"]);
    let scratch = Scratch::new("rt");
    let pin_root = scratch.pin_root();
    let root = pin_root.to_str().unwrap();
    let config = scratch.dir.join("config.yaml");
    std::fs::write(&config, base_config()).unwrap();
    let rx = traffic::udp_bind(&router, SocketAddr::new(addr(ROUTER), 6000));

    let mut first = Daemon::start(&router, &config, &pin_root, &[]);
    assert!(first.ready.contains("via link"), "{}", first.ready);
    assert_eq!(
        udp_round(&client, &rx, 20),
        (0, 20),
        "listed dropped, clean passes"
    );

    // metrics: the exporter publishes every second
    std::thread::sleep(Duration::from_millis(1500));
    let text = scrape(&router);
    assert_eq!(
        metric(
            &text,
            "ebpfsentinel_rule_packets_total",
            &["rule=\"drop-spamhaus\""]
        ),
        Some(20),
        "{text}"
    );
    assert!(
        metric(
            &text,
            "ebpfsentinel_xdp_firewall_packets_total",
            &["verdict=\"drop\"", "reason=\"rule\""]
        ) == Some(20),
        "{text}"
    );

    // events through the control socket, without a second ring reader
    let events = cli(&["events", "--pin-root", root]);
    assert!(events.status.success(), "{events:?}");
    let lines = String::from_utf8_lossy(&events.stdout);
    assert_eq!(
        lines.lines().filter(|l| l.contains(LISTED)).count(),
        20,
        "{lines}"
    );

    // an invalid config is refused and nothing changes
    std::fs::write(
        &config,
        base_config() + "    - { id: broken, action: maybe }\n",
    )
    .unwrap();
    let refused = cli(&["reload", "--pin-root", root]);
    assert_eq!(refused.status.code(), Some(2), "{refused:?}");
    let why = String::from_utf8_lossy(&refused.stderr);
    assert!(why.contains("config.yaml:7:"), "{why}");
    assert_eq!(udp_round(&client, &rx, 10), (0, 10));

    // a valid one applies: the clean source is blocked too
    std::fs::write(
        &config,
        base_config() + &format!("    - {{ id: drop-clean, action: drop, src: {CLEAN} }}\n"),
    )
    .unwrap();
    let ok = cli(&["reload", "--pin-root", root]);
    assert!(ok.status.success(), "{ok:?}");
    assert_eq!(udp_round(&client, &rx, 10), (0, 0));

    // SIGHUP reloads the same way
    std::fs::write(&config, base_config()).unwrap();
    first.stderr.try_iter().for_each(drop);
    first.signal(libc::SIGHUP);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !first.stderr.try_iter().any(|l| l.contains("reloaded")) {
        assert!(Instant::now() < deadline, "no reload after SIGHUP");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(udp_round(&client, &rx, 10), (0, 10));

    // kill -9: nothing detaches, the listed source stays blocked
    first.signal(libc::SIGKILL);
    first.wait();
    assert_eq!(udp_round(&client, &rx, 10), (0, 10), "after kill -9");
    let status = cli(&["status", "--pin-root", root]);
    let text = String::from_utf8_lossy(&status.stdout);
    assert!(
        status.status.success() && text.contains("not running (enforcement pinned)"),
        "{text}"
    );

    // a new daemon adopts the pins while a flood from the listed source goes on: not one
    // datagram gets through during the handover
    let flooding = AtomicBool::new(true);
    let second = std::thread::scope(|s| {
        s.spawn(|| {
            while flooding.load(Ordering::Relaxed) {
                traffic::udp_send(
                    &client,
                    addr(LISTED),
                    SocketAddr::new(addr(ROUTER), 6000),
                    20,
                );
            }
        });
        let d = Daemon::start(&router, &config, &pin_root, &[]);
        std::thread::sleep(Duration::from_millis(300));
        flooding.store(false, Ordering::Relaxed);
        d
    });
    assert!(second.ready.contains("adopted"), "{}", second.ready);
    let got = traffic::udp_drain(&rx);
    assert_eq!(
        got.get(&addr(LISTED)),
        None,
        "listed datagrams during the handover: {got:?}"
    );
    assert_eq!(udp_round(&client, &rx, 10), (0, 10), "after adoption");

    // SIGTERM stops the daemon and keeps the enforcement
    let mut second = second;
    second.signal(libc::SIGTERM);
    assert!(second.wait().success());
    assert_eq!(udp_round(&client, &rx, 10), (0, 10), "after SIGTERM");

    // down removes everything: plain forwarding again
    let down = cli(&["down", "--pin-root", root]);
    assert!(down.status.success(), "{down:?}");
    assert_eq!(udp_round(&client, &rx, 10), (10, 10), "after down");
    assert!(!pin_root.join("fw_settings").exists(), "maps left pinned");
    let link = std::process::Command::new("ip")
        .args(["-n", &router.name, "link", "show", "eR"])
        .output()
        .unwrap();
    assert!(!String::from_utf8_lossy(&link.stdout).contains("prog/xdp"));
    let again = cli(&["down", "--pin-root", root]);
    assert_eq!(again.status.code(), Some(1), "nothing left to remove");
}
