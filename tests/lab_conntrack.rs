//! Connection tracking end to end: `ebpfsentinel run` on a host's end of a veth pair with the
//! policy "drop new inbound, allow established" (plus neighbour discovery). Real TCP, UDP
//! and ICMP from the host's sockets come back in; the same unsolicited from the other side
//! are dropped; `ct list` shows the host's connection ESTABLISHED with the right direction and
//! counters. Runs once with TCX links and once with clsact filters, each time behind a tc
//! filter of another tool that must keep seeing every packet (the pipeline never ends the
//! hook by accident).

mod common;

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::process::Command;
use std::time::Duration;

use common::daemon::{cli, metric, scrape, Daemon, Scratch};
use common::netns::{veth, Netns};
use common::traffic;

const HOST_V4: &str = "10.78.0.1";
const PEER_V4: &str = "10.78.0.2";
const HOST_V6: &str = "2001:db8:78::1";
const PEER_V6: &str = "2001:db8:78::2";

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// Packets the other tool's mirror filter on `dev`'s ingress has seen.
fn other_tool_packets(ns: &Netns, dev: &str) -> u64 {
    let out = Command::new("ip")
        .args([
            "netns", "exec", &ns.name, "tc", "-s", "filter", "show", "dev", dev, "ingress",
        ])
        .output()
        .expect("tc");
    let text = String::from_utf8_lossy(&out.stdout);
    // "Sent 1234 bytes 17 pkt" of the mirred action
    text.lines()
        .filter_map(|l| {
            let l = l.trim();
            let rest = l.strip_prefix("Sent ")?;
            let mut words = rest.split_whitespace();
            let _bytes = words.next()?;
            words.next()?;
            words.next()?.parse::<u64>().ok()
        })
        .max()
        .unwrap_or(0)
}

fn flows(pin_root: &std::path::Path, filter: &[&str]) -> Vec<serde_json::Value> {
    let mut args = vec![
        "ct",
        "list",
        "--json",
        "--pin-root",
        pin_root.to_str().unwrap(),
    ];
    args.extend_from_slice(filter);
    let out = cli(&args);
    assert!(
        out.status.success(),
        "ct list: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice::<Vec<serde_json::Value>>(&out.stdout).expect("ct list --json")
}

fn lab(tc_mode: &str) {
    let peer = Netns::new(&format!("ct-peer-{tc_mode}"));
    let host = Netns::new(&format!("ct-host-{tc_mode}"));
    veth(&peer, "cP", &host, "cH");
    peer.exec(&["ip", "addr", "add", "10.78.0.2/24", "dev", "cP"]);
    host.exec(&["ip", "addr", "add", "10.78.0.1/24", "dev", "cH"]);
    peer.exec(&[
        "ip",
        "-6",
        "addr",
        "add",
        "2001:db8:78::2/64",
        "dev",
        "cP",
        "nodad",
    ]);
    host.exec(&[
        "ip",
        "-6",
        "addr",
        "add",
        "2001:db8:78::1/64",
        "dev",
        "cH",
        "nodad",
    ]);
    // another tool's filter on the host's ingress, there before ebpfsentinel: a monitoring
    // mirror of everything to a tap namespace
    let tap = Netns::new(&format!("ct-tap-{tc_mode}"));
    veth(&host, "mH", &tap, "mT");
    host.exec(&["tc", "qdisc", "add", "dev", "cH", "clsact"]);
    host.exec(&[
        "tc", "filter", "add", "dev", "cH", "ingress", "pref", "60000", "protocol", "all", "u32",
        "match", "u32", "0", "0", "action", "mirred", "egress", "mirror", "dev", "mH",
    ]);

    let scratch = Scratch::new(&format!("ct-{tc_mode}"));
    let config = scratch.dir.join("config.yaml");
    std::fs::write(
        &config,
        format!(
            r#"
interfaces: [cH]
tc_mode: {tc_mode}
conntrack:
  enabled: true
firewall:
  rules:
    - {{ id: neighbour-discovery, action: pass, proto: icmpv6, icmp_type: 135 }}
    - {{ id: neighbour-advert, action: pass, proto: icmpv6, icmp_type: 136 }}
    - {{ id: no-new-inbound, action: drop, state: [new, invalid] }}
"#
        ),
    )
    .unwrap();
    let pin_root = scratch.pin_root();
    let _daemon = Daemon::start(&host, &config, &pin_root, &["--transient"]);
    let state = ebpfsentinel::state::read(&pin_root).expect("daemon state");
    let hooks: Vec<String> = state
        .tc
        .iter()
        .map(|a| format!("{} {} {}", a.ifname, a.direction, a.hook))
        .collect();
    assert_eq!(
        hooks,
        [
            format!("cH ingress {tc_mode}"),
            format!("cH egress {tc_mode}")
        ]
    );

    // The host opens a TCP connection to the peer and keeps it open.
    // one echo, then the peer holds the connection until the host closes it
    let listener = traffic::tcp_listen(&peer, SocketAddr::new(ip(PEER_V4), 8080));
    let server = std::thread::spawn(move || {
        let (mut c, _) = listener.accept().expect("accept");
        let mut buf = [0u8; 5];
        c.read_exact(&mut buf).expect("request");
        c.write_all(&buf).expect("echo");
        let _ = c.read(&mut buf);
    });
    let mut conn = host.run(|| {
        TcpStream::connect_timeout(&SocketAddr::new(ip(PEER_V4), 8080), Duration::from_secs(3))
            .expect("outbound connection through the drop-new-inbound policy")
    });
    conn.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    conn.write_all(b"hello").unwrap();
    let mut echo = [0u8; 5];
    conn.read_exact(&mut echo).expect("the echo comes back in");
    assert_eq!(&echo, b"hello");
    let local_port = conn.local_addr().unwrap().port();

    let listed = flows(&pin_root, &["--proto", "tcp", "--port", "8080"]);
    assert_eq!(listed.len(), 1, "{listed:#?}");
    let f = &listed[0];
    assert_eq!(f["state"], "established", "{f:#}");
    assert_eq!(f["src_ip"], HOST_V4, "the host opened it: {f:#}");
    assert_eq!(f["src_port"], local_port, "{f:#}");
    assert_eq!(f["dest_ip"], PEER_V4, "{f:#}");
    assert_eq!(f["dest_port"], 8080, "{f:#}");
    // SYN, ACK, data (+ maybe an ACK) out; SYN-ACK, ACK/echo back
    assert!(f["packets_orig"].as_u64().unwrap() >= 3, "{f:#}");
    assert!(f["packets_reply"].as_u64().unwrap() >= 2, "{f:#}");
    assert!(f["bytes_orig"].as_u64().unwrap() > f["packets_orig"].as_u64().unwrap() * 54);
    assert_ne!(
        f["socket_cookie"].as_u64().unwrap(),
        0,
        "egress had the socket: {f:#}"
    );
    // filters: by originator, by state
    assert_eq!(
        flows(&pin_root, &["--src", "10.78.0.0/24", "--port", "8080"]).len(),
        1
    );
    assert_eq!(
        flows(&pin_root, &["--src", "10.78.0.2/32", "--port", "8080"]).len(),
        0
    );
    assert_eq!(
        flows(&pin_root, &["--state", "syn_sent", "--port", "8080"]).len(),
        0
    );
    drop(conn);
    server.join().unwrap();

    // IPv6 and UDP, host first: the replies come in
    let rx = traffic::udp_bind(&peer, SocketAddr::new(ip(PEER_V6), 5353));
    let tx = traffic::udp_bind(&host, SocketAddr::new(ip(HOST_V6), 0));
    tx.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    tx.send_to(b"query", SocketAddr::new(ip(PEER_V6), 5353))
        .unwrap();
    let mut buf = [0u8; 64];
    let (n, from) = rx.recv_from(&mut buf).expect("query reaches the peer");
    rx.send_to(&buf[..n], from).unwrap();
    tx.recv_from(&mut buf).expect("the UDP reply comes in");
    assert!(traffic::ping4(
        &host,
        ip(HOST_V4),
        ip(PEER_V4),
        41,
        Duration::from_secs(2)
    ));

    // Unsolicited from the peer: TCP, UDP, ICMP are dropped
    let listener = traffic::tcp_listen(&host, SocketAddr::new(ip(HOST_V4), 2222));
    listener.set_nonblocking(true).unwrap();
    let inbound = traffic::tcp_exchange(
        &peer,
        ip(PEER_V4),
        SocketAddr::new(ip(HOST_V4), 2222),
        Duration::from_millis(800),
    );
    assert!(inbound.is_err(), "an inbound connection got through");
    assert!(listener.accept().is_err(), "nothing reached the listener");
    let rx_host = traffic::udp_bind(&host, SocketAddr::new(ip(HOST_V6), 7000));
    traffic::udp_send(&peer, ip(PEER_V6), SocketAddr::new(ip(HOST_V6), 7000), 5);
    assert!(traffic::udp_drain(&rx_host).is_empty());
    assert!(!traffic::ping4(
        &peer,
        ip(PEER_V4),
        ip(HOST_V4),
        42,
        Duration::from_millis(800)
    ));

    // the other tool's filter saw what reached TC ingress: every packet ebpfsentinel passed
    assert!(
        other_tool_packets(&host, "cH") >= 4,
        "the TC pipeline ended the hook: {}",
        other_tool_packets(&host, "cH")
    );

    let text = scrape(&host);
    assert!(
        metric(&text, "ebpfsentinel_conntrack_new_total", &[]).unwrap() >= 3,
        "{text}"
    );
    assert!(metric(&text, "ebpfsentinel_conntrack_established_total", &[]).unwrap() >= 3);
    assert!(metric(&text, "ebpfsentinel_conntrack_fast_path_total", &[]).unwrap() >= 4);

    // ct count / flush
    let out = cli(&["ct", "count", "--pin-root", pin_root.to_str().unwrap()]);
    assert!(out.status.success());
    let count: usize = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
    assert!(count >= 3, "{count}");
    let out = cli(&[
        "ct",
        "flush",
        "--proto",
        "udp",
        "--pin-root",
        pin_root.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(flows(&pin_root, &["--proto", "udp"]).is_empty());
    assert!(!flows(&pin_root, &["--proto", "tcp"]).is_empty());
}

#[test]
fn drop_new_inbound_allow_established_with_tcx() {
    if !common::privileged("drop_new_inbound_allow_established_with_tcx") {
        return;
    }
    lab("tcx");
}

#[test]
fn drop_new_inbound_allow_established_with_clsact() {
    if !common::privileged("drop_new_inbound_allow_established_with_clsact") {
        return;
    }
    lab("clsact");
}

/// A TCP handshake from `from` (in `ns`) to `to`, where a listener waits; true if it completed.
fn connects(ns: &Netns, from: &str, to: SocketAddr, timeout: Duration) -> bool {
    ns.run(|| {
        let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        s.bind(&SocketAddr::new(ip(from), 0).into()).unwrap();
        s.connect_timeout(&to.into(), timeout).is_ok()
    })
}

/// Inbound TCP from the peer to a listener of the host.
fn inbound_connects(peer: &Netns, host: &Netns) -> bool {
    let _listener = traffic::tcp_listen(host, SocketAddr::new(ip(HOST_V4), 2222));
    connects(
        peer,
        PEER_V4,
        SocketAddr::new(ip(HOST_V4), 2222),
        Duration::from_millis(800),
    )
}

/// Outbound TCP from the host to a listener of the peer on `port`.
fn outbound_connects(host: &Netns, peer: &Netns, port: u16) -> bool {
    let _listener = traffic::tcp_listen(peer, SocketAddr::new(ip(PEER_V4), port));
    connects(
        host,
        HOST_V4,
        SocketAddr::new(ip(PEER_V4), port),
        Duration::from_secs(2),
    )
}

fn tracking_outlives_the_daemon(tc_mode: &str) {
    let peer = Netns::new(&format!("ctr-peer-{tc_mode}"));
    let host = Netns::new(&format!("ctr-host-{tc_mode}"));
    veth(&peer, "rP", &host, "rH");
    peer.exec(&["ip", "addr", "add", "10.78.0.2/24", "dev", "rP"]);
    host.exec(&["ip", "addr", "add", "10.78.0.1/24", "dev", "rH"]);
    let scratch = Scratch::new(&format!("ctr-{tc_mode}"));
    let config = scratch.dir.join("config.yaml");
    std::fs::write(
        &config,
        format!(
            "interfaces: [rH]\ntc_mode: {tc_mode}\nconntrack:\n  enabled: true\nfirewall:\n  rules:\n    - {{ id: no-new-inbound, action: drop, state: [new, invalid] }}\n"
        ),
    )
    .unwrap();
    let pin_root = scratch.pin_root();
    let root = pin_root.to_str().unwrap();

    let first = Daemon::start(&host, &config, &pin_root, &[]);
    assert!(outbound_connects(&host, &peer, 9001));
    assert!(!inbound_connects(&peer, &host));
    first.signal(libc::SIGKILL);
    drop(first);

    // nobody manages the pins: the policy and the tracking go on
    assert!(
        outbound_connects(&host, &peer, 9002),
        "replies tracked without a daemon"
    );
    assert!(!inbound_connects(&peer, &host));
    let ports: Vec<u64> = flows(&pin_root, &["--proto", "tcp"])
        .iter()
        .filter_map(|f| f["dest_port"].as_u64())
        .collect();
    assert!(ports.contains(&9001) && ports.contains(&9002), "{ports:?}");

    // a new daemon adopts the table and the hooks
    let second = Daemon::start(&host, &config, &pin_root, &[]);
    let state = ebpfsentinel::state::read(&pin_root).expect("daemon state");
    if tc_mode == "tcx" {
        assert!(state.tc.iter().all(|a| a.adopted), "{:?}", state.tc);
    }
    assert!(
        flows(&pin_root, &["--port", "9001"]).len() == 1,
        "the table survived"
    );
    assert!(outbound_connects(&host, &peer, 9003));
    assert!(!inbound_connects(&peer, &host));
    drop(second);

    // clsact filters are found by interface name: outside the daemon's namespace `down`
    // refuses rather than leave them behind
    let down = cli(&["down", "--pin-root", root]);
    if tc_mode == "clsact" {
        assert_eq!(down.status.code(), Some(2), "{down:?}");
        assert!(
            String::from_utf8_lossy(&down.stderr).contains("network namespace"),
            "{down:?}"
        );
        host.run(|| {
            let down = cli(&["down", "--pin-root", root]);
            assert!(down.status.success(), "{down:?}");
        });
    } else {
        assert!(down.status.success(), "{down:?}");
    }
    // plain forwarding: nothing hangs on the hooks any more
    assert!(
        inbound_connects(&peer, &host),
        "down left a TC or XDP program"
    );
    let out = Command::new("ip")
        .args([
            "netns", "exec", &host.name, "tc", "filter", "show", "dev", "rH", "ingress",
        ])
        .output()
        .unwrap();
    assert!(
        !String::from_utf8_lossy(&out.stdout).contains("tc_ingress"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

#[test]
fn tracking_outlives_the_daemon_with_tcx() {
    if !common::privileged("tracking_outlives_the_daemon_with_tcx") {
        return;
    }
    tracking_outlives_the_daemon("tcx");
}

#[test]
fn tracking_outlives_the_daemon_with_clsact() {
    if !common::privileged("tracking_outlives_the_daemon_with_clsact") {
        return;
    }
    tracking_outlives_the_daemon("clsact");
}
