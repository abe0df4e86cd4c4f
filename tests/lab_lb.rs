//! The load balancer end to end: a client namespace, a router namespace running
//! `ebpfsentinel run` with xdp_lb on all its interfaces (generic XDP: veth), and three backend
//! namespaces with TCP servers that answer with their name and close first (so that the
//! client can reuse its source ports and replay the same flows). 300 connections to the VIP
//! all complete and spread by weight; after `lb del` of one backend the same flows reach the
//! same backends except the removed one's; a backend whose server stops is marked down by the
//! health check and gets no new connection; `lb drain` takes one out of the table. A
//! monitor namespace behind `mirror: { to: eslbR9, match: { services: [web] } }` captures
//! copies of web's forwarded packets (both directions, none of web6's) while the connections
//! above complete. `cpumap: { cpus: [1] }` steers what the router's stack gets (health-check answers, first packets before the
//! neighbour is known) to CPU 1: the per-CPU landing counter moves there only. A reload
//! restores the config file's backends, and b2's flows go back to it.

mod common;

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::daemon::{cli, Daemon, Scratch};
use common::netns::{veth, Netns};
use socket2::{Domain, Protocol, SockAddr, Socket, Type};

const VIP: &str = "198.18.100.1:80";
const FLOWS: u16 = 300;

fn sa(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

/// Accepts until `stop`, answering each connection with `name` and closing first.
fn serve(l: TcpListener, name: &'static str, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<()> {
    l.set_nonblocking(true).unwrap();
    std::thread::spawn(move || {
        while !stop.load(Ordering::Relaxed) {
            match l.accept() {
                Ok((mut c, _)) => {
                    c.set_nonblocking(false).unwrap();
                    c.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
                    let mut buf = [0u8; 5];
                    if c.read_exact(&mut buf).is_ok() {
                        let _ = c.write_all(name.as_bytes());
                    }
                }
                Err(_) => std::thread::sleep(Duration::from_millis(2)),
            }
        }
    })
}

/// Counts TCP frames (IPv4, IPv6) to or from port 80 or 8080 seen on `ifname` of `ns` until `stop`.
fn capture(ns: &Netns, ifname: &str, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<(u64, u64)> {
    let ifname = std::ffi::CString::new(ifname).unwrap();
    let fd = ns.run(|| {
        // SAFETY: plain socket calls with valid arguments; the fd is owned below.
        unsafe {
            let proto = (libc::ETH_P_ALL as u16).to_be();
            let fd = libc::socket(
                libc::AF_PACKET,
                libc::SOCK_RAW | libc::SOCK_NONBLOCK,
                i32::from(proto),
            );
            assert!(fd >= 0, "AF_PACKET socket");
            let mut sll: libc::sockaddr_ll = std::mem::zeroed();
            sll.sll_family = libc::AF_PACKET as u16;
            sll.sll_protocol = proto;
            sll.sll_ifindex = libc::if_nametoindex(ifname.as_ptr()) as i32;
            assert!(sll.sll_ifindex > 0, "no capture interface");
            let rc = libc::bind(
                fd,
                &sll as *const libc::sockaddr_ll as *const libc::sockaddr,
                std::mem::size_of::<libc::sockaddr_ll>() as u32,
            );
            assert_eq!(rc, 0, "bind AF_PACKET");
            fd
        }
    });
    std::thread::spawn(move || {
        let (mut v4, mut v6) = (0, 0);
        let mut buf = [0u8; 2048];
        while !stop.load(Ordering::Relaxed) {
            // SAFETY: reading into a buffer of the given size from our own socket.
            let n = unsafe { libc::recv(fd, buf.as_mut_ptr().cast(), buf.len(), 0) };
            if n < 54 {
                std::thread::sleep(Duration::from_millis(1));
                continue;
            }
            let f = &buf[..n as usize];
            let l4 = match (f[12], f[13]) {
                (0x08, 0x00) if f[23] == 6 => 14 + usize::from(f[14] & 0x0f) * 4,
                (0x86, 0xdd) if f[20] == 6 => 54,
                _ => continue,
            };
            if n as usize >= l4 + 4 {
                let ports = [
                    u16::from_be_bytes([f[l4], f[l4 + 1]]),
                    u16::from_be_bytes([f[l4 + 2], f[l4 + 3]]),
                ];
                if ports.iter().any(|p| *p == 80 || *p == 8080) {
                    if f[12] == 0x08 {
                        v4 += 1;
                    } else {
                        v6 += 1;
                    }
                }
            }
        }
        // SAFETY: closing the socket this thread owns.
        unsafe { libc::close(fd) };
        (v4, v6)
    })
}

/// One connection to the VIP from `client:port`; the name of the backend that answered.
fn exchange(client: IpAddr, port: u16) -> Result<String, String> {
    exchange_with(client, port, sa(VIP))
}

fn exchange_with(client: IpAddr, port: u16, vip: SocketAddr) -> Result<String, String> {
    let domain = if vip.is_ipv4() {
        Domain::IPV4
    } else {
        Domain::IPV6
    };
    let s = Socket::new(domain, Type::STREAM, Some(Protocol::TCP)).map_err(|e| e.to_string())?;
    s.set_reuse_address(true).map_err(|e| e.to_string())?;
    s.bind(&SockAddr::from(SocketAddr::new(client, port)))
        .map_err(|e| format!("bind {port}: {e}"))?;
    s.connect_timeout(&SockAddr::from(vip), Duration::from_secs(3))
        .map_err(|e| format!("connect from {port}: {e}"))?;
    let mut c: std::net::TcpStream = s.into();
    c.set_read_timeout(Some(Duration::from_secs(3)))
        .map_err(|e| e.to_string())?;
    c.write_all(b"hello").map_err(|e| e.to_string())?;
    let mut name = String::new();
    c.read_to_string(&mut name)
        .map_err(|e| format!("answer to {port}: {e}"))?;
    if name.is_empty() {
        return Err(format!("no answer to {port}"));
    }
    Ok(name)
}

/// The backend of every flow (by client port); panics if one does not complete.
fn round(client: &Netns, ports: std::ops::Range<u16>) -> HashMap<u16, String> {
    client.run(|| {
        ports
            .map(|p| {
                let name = exchange("10.201.0.2".parse().unwrap(), p)
                    .unwrap_or_else(|e| panic!("connection did not complete: {e}"));
                (p, name)
            })
            .collect()
    })
}

fn counts(r: &HashMap<u16, String>) -> HashMap<String, usize> {
    let mut out = HashMap::new();
    for n in r.values() {
        *out.entry(n.clone()).or_insert(0) += 1;
    }
    out
}

fn lb_list(pin_root: &str) -> Vec<serde_json::Value> {
    let out = cli(&["lb", "--pin-root", pin_root, "list", "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("lb list --json")
}

fn backend_state(list: &[serde_json::Value], addr: &str) -> String {
    list[0]["backends"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["addr"] == addr)
        .map(|b| b["state"].as_str().unwrap().to_string())
        .unwrap_or_default()
}

#[test]
fn load_balancing_lab() {
    if !privileged() {
        return;
    }
    let client = Netns::new("lb-client");
    let router = Netns::new("lb-router");
    veth(&client, "eslbC0", &router, "eslbR0");
    client.exec(&["ip", "addr", "add", "10.201.0.2/24", "dev", "eslbC0"]);
    client.exec(&["ip", "route", "add", "default", "via", "10.201.0.1"]);
    router.exec(&["ip", "addr", "add", "10.201.0.1/24", "dev", "eslbR0"]);
    client.exec(&[
        "ip",
        "-6",
        "addr",
        "add",
        "2001:db8:201::2/64",
        "dev",
        "eslbC0",
        "nodad",
    ]);
    client.exec(&[
        "ip",
        "-6",
        "route",
        "add",
        "default",
        "via",
        "2001:db8:201::1",
    ]);
    router.exec(&[
        "ip",
        "-6",
        "addr",
        "add",
        "2001:db8:201::1/64",
        "dev",
        "eslbR0",
        "nodad",
    ]);
    let names = ["b1", "b2", "b3"];
    let mut backends = Vec::new();
    let stops: Vec<Arc<AtomicBool>> = (0..3).map(|_| Arc::default()).collect();
    let mut servers = Vec::new();
    for (i, name) in names.iter().enumerate() {
        let n = i + 1;
        let ns = Netns::new(&format!("lb-{name}"));
        let (r_if, b_if) = (format!("eslbR{n}"), format!("eslbB{n}"));
        veth(&router, &r_if, &ns, &b_if);
        router.exec(&[
            "ip",
            "addr",
            "add",
            &format!("10.200.{n}.1/24"),
            "dev",
            &r_if,
        ]);
        ns.exec(&[
            "ip",
            "addr",
            "add",
            &format!("10.200.{n}.2/24"),
            "dev",
            &b_if,
        ]);
        ns.exec(&[
            "ip",
            "route",
            "add",
            "default",
            "via",
            &format!("10.200.{n}.1"),
        ]);
        let (r6, b6) = (
            format!("2001:db8:200:{n}::1/64"),
            format!("2001:db8:200:{n}::2/64"),
        );
        router.exec(&["ip", "-6", "addr", "add", &r6, "dev", &r_if, "nodad"]);
        ns.exec(&["ip", "-6", "addr", "add", &b6, "dev", &b_if, "nodad"]);
        ns.exec(&[
            "ip",
            "-6",
            "route",
            "add",
            "default",
            "via",
            &format!("2001:db8:200:{n}::1"),
        ]);
        let l = ns.run(|| TcpListener::bind(sa(&format!("10.200.{n}.2:8080"))).unwrap());
        servers.push(serve(l, name, stops[i].clone()));
        let l6 = ns.run(|| TcpListener::bind(sa(&format!("[2001:db8:200:{n}::2]:8080"))).unwrap());
        servers.push(serve(l6, name, stops[i].clone()));
        backends.push(ns);
    }
    router.exec(&[
        "sysctl",
        "-qw",
        "net.ipv4.conf.all.forwarding=1",
        "net.ipv6.conf.all.forwarding=1",
    ]);
    let monitor = Netns::new("lb-monitor");
    veth(&router, "eslbR9", &monitor, "eslbM0");
    let capture_stop = Arc::new(AtomicBool::new(false));
    let captured = capture(&monitor, "eslbM0", capture_stop.clone());

    let scratch = Scratch::new("lb-lab");
    let config = scratch.dir.join("config.yaml");
    std::fs::write(
        &config,
        r#"
interfaces: [eslbR0, eslbR1, eslbR2, eslbR3]
xdp_mode: generic
metrics: { listen: off }
mirror: { to: eslbR9, match: { services: [web] } }
cpumap: { cpus: [1], queue_size: 2048 }
loadbalancer:
  services:
    - id: web
      vip: 198.18.100.1
      port: 80
      proto: tcp
      backends:
        - { addr: 10.200.1.2, port: 8080, weight: 1 }
        - { addr: 10.200.2.2, port: 8080, weight: 1 }
        - { addr: 10.200.3.2, port: 8080, weight: 2 }
      health: { tcp_connect: true, interval: 1s, timeout: 1s, rise: 1, fall: 2 }
    - id: web6
      vip: "2001:db8:100::1"
      port: 80
      backends:
        - { addr: "2001:db8:200:1::2", port: 8080 }
        - { addr: "2001:db8:200:2::2", port: 8080 }
        - { addr: "2001:db8:200:3::2", port: 8080 }
"#,
    )
    .unwrap();
    let pin_root = scratch.pin_root();
    let pin = pin_root.to_str().unwrap().to_string();
    let daemon = Daemon::start(&router, &config, &pin_root, &["--transient"]);

    // every connection completes, spread by weight (1:1:2) within 10 points of share
    let t0 = Instant::now();
    let first = round(&client, 20000..20000 + FLOWS);
    let elapsed = t0.elapsed();
    let c = counts(&first);
    eprintln!("spread over {FLOWS} connections: {c:?} in {elapsed:?}");
    for (name, weight) in [("b1", 0.25), ("b2", 0.25), ("b3", 0.5)] {
        let share = *c.get(name).unwrap_or(&0) as f64 / f64::from(FLOWS);
        assert!(
            (share - weight).abs() <= 0.10,
            "{name}: share {share:.3}, weight share {weight}"
        );
    }
    // IPv6: every connection completes, over all three backends
    let v6: HashMap<u16, String> = client.run(|| {
        (20000..20060)
            .map(|p| {
                let name = exchange_with(
                    "2001:db8:201::2".parse().unwrap(),
                    p,
                    sa("[2001:db8:100::1]:80"),
                )
                .unwrap_or_else(|e| panic!("IPv6 connection did not complete: {e}"));
                (p, name)
            })
            .collect()
    });
    eprintln!("IPv6 spread over 60 connections: {:?}", counts(&v6));
    assert_eq!(counts(&v6).len(), 3);

    let list = lb_list(&pin);
    assert!(list[0]["packets"].as_u64().unwrap() >= u64::from(FLOWS) * 3);
    // most packets left through XDP itself (redirect after the FIB lookup), replies included
    let stats = ebpfsentinel::maps::lb::LbMaps::from_pins(&pin_root)
        .unwrap()
        .stats()
        .unwrap();
    let stat = |s: ebpfsentinel::abi::lb_stat| stats[s.0 as usize];
    eprintln!("lb_stats: {stats:?}");
    assert!(stat(ebpfsentinel::abi::lb_stat::LB_STAT_FORWARDED) >= u64::from(FLOWS) * 3);
    assert!(stat(ebpfsentinel::abi::lb_stat::LB_STAT_REPLY) >= u64::from(FLOWS) * 3);
    let status = cli(&["status", "--pin-root", &pin]);
    let text = String::from_utf8_lossy(&status.stdout);
    assert!(
        text.contains("load balancer:") && text.contains("forwarded"),
        "status:\n{text}"
    );
    // the match names `web` only: the IPv6 service's packets are forwarded, not mirrored
    let mirrored = stat(ebpfsentinel::abi::lb_stat::LB_STAT_MIRRORED);
    assert!(mirrored < stat(ebpfsentinel::abi::lb_stat::LB_STAT_FORWARDED));
    std::thread::sleep(Duration::from_millis(300));
    capture_stop.store(true, Ordering::Relaxed);
    let (seen, seen_v6) = captured.join().unwrap();
    eprintln!(
        "mirror port captured {seen} frames (IPv6 {seen_v6}), the kernel mirrored {mirrored}"
    );
    assert_eq!(seen_v6, 0, "web6 is not in mirror.match");
    // each connection's forwarded frames both ways (at least SYN, ACK, data, FIN out and
    // SYN-ACK, data, FIN back), copied while the connection itself completed
    assert!(
        seen >= u64::from(FLOWS) * 6 && seen <= mirrored,
        "captured {seen} of {mirrored} mirrored frames"
    );

    let maps = ebpfsentinel::maps::lb::LbMaps::from_pins(&pin_root).unwrap();
    let landed = maps.cpu_landed().unwrap();
    eprintln!("steered packets landed per CPU: {landed:?}");
    assert!(stat(ebpfsentinel::abi::lb_stat::LB_STAT_STEERED) > 0);
    assert!(landed[1] > 0, "nothing landed on CPU 1: {landed:?}");
    assert!(
        landed
            .iter()
            .enumerate()
            .all(|(cpu, n)| cpu == 1 || *n == 0),
        "steered packets landed off the configured CPU: {landed:?}"
    );

    // bad input is refused with the reason, and changes nothing
    for (args, reason) in [
        (
            vec!["del", "web", "10.200.9.9:8080"],
            "has no backend 10.200.9.9:8080",
        ),
        (
            vec!["add", "nosuch", "10.200.9.9:8080"],
            "no service `nosuch`",
        ),
        (vec!["add", "web", "10.200.9.9"], "is not ADDR:PORT"),
        (
            vec!["add", "web", "[2001:db8::9]:80"],
            "not of the VIP's address family",
        ),
        (
            vec!["add", "web", "10.200.9.9:80", "--weight", "0"],
            "is not in 1..=1000",
        ),
    ] {
        let mut full = vec!["lb", "--pin-root", &pin];
        full.extend(args);
        let out = cli(&full);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{full:?}: {err}");
        assert!(err.contains(reason), "{full:?}: {err}");
    }
    assert_eq!(lb_list(&pin)[0]["backends"].as_array().unwrap().len(), 3);

    // removing b2: the same flows again; only b2's move
    let out = cli(&["lb", "--pin-root", &pin, "del", "web", "10.200.2.2:8080"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let second = round(&client, 20000..20000 + FLOWS);
    let mut moved = 0;
    for (port, before) in &first {
        let after = &second[port];
        assert_ne!(after, "b2", "a flow still reached the removed backend");
        if before != after {
            assert_eq!(before, "b2", "flow {port} of {before} moved to {after}");
            moved += 1;
        }
    }
    eprintln!("after lb del: {moved} flows moved, all of them b2's");
    assert_eq!(moved, c["b2"]);

    // the health check marks a dead backend down; its flows go elsewhere
    stops[0].store(true, Ordering::Relaxed);
    let deadline = Instant::now() + Duration::from_secs(15);
    while backend_state(&lb_list(&pin), "10.200.1.2") != "down" {
        assert!(Instant::now() < deadline, "b1 never marked down");
        std::thread::sleep(Duration::from_millis(200));
    }
    let third = round(&client, 21000..21100);
    assert!(third.values().all(|n| n == "b3"), "{:?}", counts(&third));

    // a drain takes the last one out: no backend left, connections fail
    let out = cli(&["lb", "--pin-root", &pin, "drain", "web", "10.200.3.2:8080"]);
    assert!(out.status.success());
    assert_eq!(backend_state(&lb_list(&pin), "10.200.3.2"), "drained");
    let failed = client.run(|| exchange("10.201.0.2".parse().unwrap(), 22000));
    assert!(failed.is_err(), "no backend is up: {failed:?}");
    assert!(lb_list(&pin)[0]["no_backend"].as_u64().unwrap() >= 1);
    let out = cli(&[
        "lb",
        "--pin-root",
        &pin,
        "drain",
        "web",
        "10.200.3.2:8080",
        "--undo",
    ]);
    assert!(out.status.success());
    assert_eq!(round(&client, 22001..22011).len(), 10);

    // a reload re-reads the file: the runtime changes are gone, b2 is back with its flows
    // (b1 is still dead, so the health checks take it out again)
    let out = cli(&["reload", "--pin-root", &pin]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let list = lb_list(&pin);
    assert_eq!(list[0]["backends"].as_array().unwrap().len(), 3, "{list:?}");
    assert_eq!(backend_state(&list, "10.200.2.2"), "up");
    let fourth = round(&client, 20000..20100);
    for (port, name) in &fourth {
        if first[port] == "b2" {
            assert_eq!(name, "b2", "flow {port} went back to b2");
        }
    }

    drop(daemon);
    for s in &stops {
        s.store(true, Ordering::Relaxed);
    }
    for s in servers {
        let _ = s.join();
    }
}

fn privileged() -> bool {
    common::privileged("load_balancing_lab")
}
