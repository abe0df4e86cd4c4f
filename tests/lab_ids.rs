//! The IDS end to end: `ebpfsentinel run` on a host's end of a veth pair with the issue's
//! drop rule. A TCP payload carrying the marker never reaches the server while a clean one
//! does; the drop is reported as an EVE alert with its rule, and with `ips` configured the
//! source ends up blacklisted (then XDP drops even its clean traffic).

mod common;

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::time::Duration;

use common::daemon::{cli, wait_for, Daemon, Scratch};
use common::netns::{veth, Netns};
use common::traffic;
use socket2::{Domain, Protocol, SockAddr, Socket, Type};

const HOST: &str = "10.81.0.1";
const PEER: &str = "10.81.0.2";
const CLEAN_PEER: &str = "10.81.0.3";
const PORT: u16 = 7777;

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// Connects from `src`, sends `payload` and waits for its echo.
fn exchange(ns: &Netns, src: &str, payload: &'static [u8]) -> Result<(), String> {
    let dst = SocketAddr::new(ip(HOST), PORT);
    let src = ip(src);
    ns.run(move || {
        let s = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP))
            .map_err(|e| e.to_string())?;
        s.bind(&SockAddr::from(SocketAddr::new(src, 0)))
            .map_err(|e| e.to_string())?;
        s.connect_timeout(&SockAddr::from(dst), Duration::from_secs(2))
            .map_err(|e| format!("connect: {e}"))?;
        let mut c: TcpStream = s.into();
        c.set_read_timeout(Some(Duration::from_secs(2)))
            .map_err(|e| e.to_string())?;
        c.write_all(payload).map_err(|e| e.to_string())?;
        let mut buf = vec![0u8; payload.len()];
        c.read_exact(&mut buf).map_err(|e| format!("echo: {e}"))?;
        Ok(())
    })
}

#[test]
fn the_marker_is_dropped_reported_and_its_source_blacklisted() {
    if !common::privileged("the_marker_is_dropped_reported_and_its_source_blacklisted") {
        return;
    }
    let peer = Netns::new("esids-peer");
    let host = Netns::new("esids-host");
    veth(&peer, "esidsP", &host, "esidsH");
    for a in [PEER, CLEAN_PEER] {
        peer.exec(&["ip", "addr", "add", &format!("{a}/24"), "dev", "esidsP"]);
    }
    host.exec(&["ip", "addr", "add", &format!("{HOST}/24"), "dev", "esidsH"]);

    let scratch = Scratch::new("esids");
    let config = scratch.dir.join("config.yaml");
    std::fs::write(
        &config,
        r#"
interfaces: [esidsH]
ids:
  sampling: 1.0
  rules:
    - { id: evil, proto: tcp, dst_port: 7777, content: "X-EVIL-MARKER", action: drop, sid: 1000777, msg: "lab marker" }
ips: { threshold: 2, window: 60s, block_for: 1h }
"#,
    )
    .unwrap();
    let pin_root = scratch.pin_root();
    let root = pin_root.to_str().unwrap();
    let daemon = Daemon::start(&host, &config, &pin_root, &["--transient"]);
    let server = traffic::tcp_echo_server(
        traffic::tcp_listen(&host, SocketAddr::new(ip(HOST), PORT)),
        3,
    );

    exchange(&peer, PEER, b"GET / HTTP/1.0\r\nX-Clean: yes\r\n\r\n").expect("a clean payload");
    exchange(&peer, CLEAN_PEER, b"hello, clean").expect("another source, clean");
    // (the one-at-a-time echo server waits on this connection until the client gives up)
    let err = exchange(&peer, PEER, b"GET / HTTP/1.0\r\nX-EVIL-MARKER: 1\r\n\r\n")
        .expect_err("the marker must not reach the server");
    assert!(err.starts_with("echo"), "{err}");

    // the retransmitted marker segments are detections: the source gets blacklisted
    wait_for("the IPS block", Duration::from_secs(10), || {
        let out = cli(&["blocked", "--json", "--pin-root", root]);
        String::from_utf8_lossy(&out.stdout).contains(PEER)
    });
    let blocked = String::from_utf8_lossy(&cli(&["blocked", "--json", "--pin-root", root]).stdout)
        .to_string();
    assert!(blocked.contains("ids sid 1000777"), "{blocked}");
    assert!(!blocked.contains(CLEAN_PEER), "{blocked}");
    assert!(
        exchange(&peer, PEER, b"clean, but blacklisted").is_err(),
        "XDP drops a blacklisted source"
    );

    let mut alerts = Vec::new();
    while let Ok(line) = daemon.stdout.recv_timeout(Duration::from_millis(300)) {
        if let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) {
            if v["event_type"] == "alert" {
                alerts.push(v);
            }
        }
    }
    assert!(!alerts.is_empty(), "no alert event");
    for a in &alerts {
        assert_eq!(a["src_ip"], PEER, "{a:#}");
        assert_eq!(a["dest_port"], PORT, "{a:#}");
        assert_eq!(a["action"], "drop", "{a:#}");
        assert_eq!(a["rule_id"], "evil", "{a:#}");
        assert_eq!(a["alert"]["signature_id"], 1000777, "{a:#}");
        assert_eq!(a["alert"]["signature"], "lab marker", "{a:#}");
        assert_eq!(a["alert"]["action"], "blocked", "{a:#}");
    }
    let text = common::daemon::scrape(&host);
    let drops = common::daemon::metric(
        &text,
        "ebpfsentinel_ids_packets_total",
        &["what=\"match_drop\""],
    );
    assert!(drops.unwrap_or(0) >= 1, "{text}");
    // the server thread stays blocked on the marker's connection (its data never arrives)
    drop(server);
}
