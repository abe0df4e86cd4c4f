//! The DNS blocklist end to end: `ebpfsentinel run` on the resolver's end of a veth pair, a
//! tiny UDP DNS responder (it answers every query with an A record) in the resolver's
//! namespace, and a socket client in the other. A blocked name (from the config or a hosts
//! feed, or any of its subdomains) gets no answer; an allowed one resolves; `dns block` takes
//! effect at once and outlives a feed refresh; `dns unblock` lifts it; the drops are reported
//! as `dns` events with the name and counted in the metrics. Queries over TCP are blocked the
//! same way.

mod common;

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::daemon::{cli, cli_json, wait_for, Daemon, Scratch};
use common::netns::{veth, Netns};
use ebpfsentinel::dns::{answer_a, parse_query, query, TYPE_A};

const RESOLVER: &str = "10.81.0.1";
const CLIENT: &str = "10.81.0.2";
const ANSWER: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 99);

/// Answers every query that reaches it, until `stop`; returns how many it answered.
fn responder(ns: &Netns, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<usize> {
    let sock = ns.run(|| UdpSocket::bind((RESOLVER, 53)).expect("bind :53"));
    sock.set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    std::thread::spawn(move || {
        let mut buf = [0u8; 1500];
        let mut answered = 0;
        while !stop.load(Ordering::Relaxed) {
            if let Ok((n, from)) = sock.recv_from(&mut buf) {
                if parse_query(&buf[..n]).is_some() {
                    let _ = sock.send_to(&answer_a(&buf[..n], ANSWER), from);
                    answered += 1;
                }
            }
        }
        answered
    })
}

/// Answers queries over TCP (2-byte length prefix, RFC 7766), one connection at a time,
/// until `stop`.
fn tcp_responder(ns: &Netns, stop: Arc<AtomicBool>) {
    let listener = ns.run(|| std::net::TcpListener::bind((RESOLVER, 53)).expect("listen :53"));
    listener.set_nonblocking(true).unwrap();
    std::thread::spawn(move || {
        while !stop.load(Ordering::Relaxed) {
            let Ok((mut c, _)) = listener.accept() else {
                std::thread::sleep(Duration::from_millis(20));
                continue;
            };
            c.set_nonblocking(false).unwrap();
            c.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
            let mut len = [0u8; 2];
            if c.read_exact(&mut len).is_err() {
                continue;
            }
            let mut m = vec![0u8; usize::from(u16::from_be_bytes(len))];
            if c.read_exact(&mut m).is_err() || parse_query(&m).is_none() {
                continue;
            }
            let a = answer_a(&m, ANSWER);
            let _ = c.write_all(&(a.len() as u16).to_be_bytes());
            let _ = c.write_all(&a);
        }
    });
}

/// Resolves `name` over TCP; None when no answer came within two seconds.
fn resolve_tcp(ns: &Netns, name: &str) -> Option<Ipv4Addr> {
    let mut c = ns.run(|| {
        std::net::TcpStream::connect_timeout(
            &SocketAddr::new(RESOLVER.parse().unwrap(), 53),
            Duration::from_secs(2),
        )
        .expect("connect :53")
    });
    c.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let q = query(7, name, TYPE_A);
    let mut msg = (q.len() as u16).to_be_bytes().to_vec();
    msg.extend_from_slice(&q);
    c.write_all(&msg).unwrap();
    let mut len = [0u8; 2];
    c.read_exact(&mut len).ok()?;
    let mut m = vec![0u8; usize::from(u16::from_be_bytes(len))];
    c.read_exact(&mut m).ok()?;
    let a: [u8; 4] = m[m.len() - 4..].try_into().unwrap();
    Some(Ipv4Addr::from(a))
}

/// The A record the resolver gave for `name`, or None when no answer came within a second
/// (two tries).
fn resolve(client: &UdpSocket, name: &str) -> Option<Ipv4Addr> {
    let dst = SocketAddr::new(RESOLVER.parse().unwrap(), 53);
    for id in [1u16, 2] {
        client.send_to(&query(id, name, TYPE_A), dst).unwrap();
        let deadline = Instant::now() + Duration::from_millis(500);
        let mut buf = [0u8; 1500];
        while Instant::now() < deadline {
            if let Ok((n, _)) = client.recv_from(&mut buf) {
                let m = &buf[..n];
                if n >= 4 && u16::from_be_bytes([m[0], m[1]]) == id {
                    let a: [u8; 4] = m[n - 4..].try_into().unwrap();
                    return Some(Ipv4Addr::from(a));
                }
            }
        }
    }
    None
}

#[test]
fn blocked_names_get_no_answer_allowed_ones_resolve() {
    if !common::privileged("blocked_names_get_no_answer_allowed_ones_resolve") {
        return;
    }
    let client_ns = Netns::new("dns-cli");
    let resolver_ns = Netns::new("dns-srv");
    veth(&client_ns, "esdnsC", &resolver_ns, "esdnsS");
    client_ns.exec(&["ip", "addr", "add", "10.81.0.2/24", "dev", "esdnsC"]);
    resolver_ns.exec(&["ip", "addr", "add", "10.81.0.1/24", "dev", "esdnsS"]);

    let scratch = Scratch::new("dns");
    let local = scratch.dir.join("local.txt");
    std::fs::write(&local, "# lab list\nlocal-one.example\n").unwrap();
    let config = scratch.dir.join("config.yaml");
    std::fs::write(
        &config,
        format!(
            r#"
interfaces: [esdnsS]
dns:
  blocklist:
    action: drop
    domains: [badsite.example]
    feeds:
      - {{ id: scam, path: {}/scamblocklist_hosts.txt, format: hosts }}
      - {{ id: local, path: {}, format: domains, refresh: 1s }}
"#,
            common::feeds_dir().display(),
            local.display()
        ),
    )
    .unwrap();
    let pin_root = scratch.pin_root();
    let root = pin_root.to_str().unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let answered = responder(&resolver_ns, stop.clone());
    tcp_responder(&resolver_ns, stop.clone());
    let daemon = Daemon::start(&resolver_ns, &config, &pin_root, &["--transient"]);
    wait_for("the lists to load", Duration::from_secs(30), || {
        cli(&["dns", "check", "local-one.example", "--pin-root", root])
            .status
            .success()
    });
    let check = cli_json(&[
        "dns",
        "check",
        "a.1stireland.com",
        "--json",
        "--pin-root",
        root,
    ]);
    assert_eq!(check["suffix"], "1stireland.com", "{check:#}");
    assert_eq!(check["list"], "scam", "{check:#}");
    let out = cli(&["dns", "check", "badexample.com", "--pin-root", root]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");

    let client = client_ns.run(|| {
        let s = UdpSocket::bind((CLIENT, 0)).unwrap();
        s.set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        s
    });
    assert_eq!(resolve(&client, "allowed.example"), Some(ANSWER));
    for blocked in [
        "badsite.example",
        "www.badsite.example",
        "Deep.Sub.BADSITE.example",
        "1stireland.com",
        "www.1stireland.com",
        "local-one.example",
    ] {
        assert_eq!(resolve(&client, blocked), None, "{blocked}");
    }
    assert_eq!(resolve(&client, "notbadsite.example"), Some(ANSWER));
    // over TCP: the query segment is dropped, its retransmissions too
    assert_eq!(resolve_tcp(&client_ns, "tcp.allowed.example"), Some(ANSWER));
    assert_eq!(resolve_tcp(&client_ns, "tcp.badsite.example"), None);

    // a runtime block, at once; it outlives a refresh of the feeds
    assert_eq!(resolve(&client, "later.example"), Some(ANSWER));
    let out = cli(&["dns", "block", "Later.Example", "--pin-root", root]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(resolve(&client, "www.later.example"), None);
    std::fs::write(&local, "local-two.example\n").unwrap();
    wait_for("the refresh", Duration::from_secs(15), || {
        !cli(&["dns", "check", "local-one.example", "--pin-root", root])
            .status
            .success()
    });
    assert_eq!(resolve(&client, "local-one.example"), Some(ANSWER));
    assert_eq!(resolve(&client, "local-two.example"), None);
    assert_eq!(
        resolve(&client, "www.later.example"),
        None,
        "runtime block kept"
    );
    let list = cli_json(&["dns", "list", "--json", "--pin-root", root]);
    assert_eq!(list["runtime"][0]["domain"], "later.example", "{list:#}");
    let scam = list["lists"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["id"] == "scam")
        .unwrap_or_else(|| panic!("{list:#}"));
    assert_eq!(scam["domains"], 2214);
    let out = cli(&["dns", "unblock", "later.example", "--pin-root", root]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(resolve(&client, "www.later.example"), Some(ANSWER));

    // the drops, reported with the name and the list
    let mut events = Vec::new();
    while let Ok(line) = daemon.stdout.recv_timeout(Duration::from_millis(300)) {
        events.push(line);
    }
    let dns_events: Vec<serde_json::Value> = events
        .iter()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|e| e["event_type"] == "dns")
        .collect();
    let ip = |e: &serde_json::Value| e["src_ip"].as_str().map(|s| s.parse::<IpAddr>().unwrap());
    assert!(
        dns_events
            .iter()
            .any(|e| e["dns"]["rrname"] == "deep.sub.badsite.example"
                && e["dns"]["suffix"] == "badsite.example"
                && e["dns"]["list"] == "config"
                && e["dns"]["rrtype"] == "A"
                && e["action"] == "drop"
                && ip(e) == Some(CLIENT.parse().unwrap())),
        "{dns_events:#?}"
    );
    assert!(
        dns_events
            .iter()
            .any(|e| e["dns"]["rrname"] == "www.later.example" && e["dns"]["list"] == "runtime"),
        "{dns_events:#?}"
    );
    let text = common::daemon::scrape(&resolver_ns);
    let metric = |labels: &[&str]| {
        common::daemon::metric(&text, "ebpfsentinel_dns_packets_total", labels)
            .unwrap_or_else(|| panic!("{text}"))
    };
    // every blocked name is asked twice (one retry), over TCP at least once
    assert!(metric(&["\"blocked\""]) > 2 * 8, "{text}");
    assert_eq!(metric(&["\"alerted\""]), 0);
    assert!(metric(&["\"queries\""]) >= 2 * 8 + 6, "{text}");
    stop.store(true, Ordering::Relaxed);
    // five allowed names, each answered at the first try
    assert!(answered.join().unwrap() >= 5);
}
