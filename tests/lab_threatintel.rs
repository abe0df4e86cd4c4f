//! Threat intel and the IPS end to end: `ebpfsentinel run` on a host's end of a veth pair,
//! with one feed served over HTTP from the host namespace's loopback and the real Spamhaus
//! DROP list read from disk. Traffic from a peer address a feed lists is dropped on TC; a
//! listed address under `alert` gets through, is reported with its feed, and after
//! `ips.threshold` detections is blacklisted and dropped by XDP; a path feed's refresh takes
//! an IOC away; a quarantined destination leaves the host tagged with the quarantine VLAN.

mod common;

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::daemon::{cli, cli_json, wait_for, Daemon, Scratch};
use common::netns::{veth, Netns};
use common::traffic;

const HOST: &str = "10.79.0.1";
const PEER: &str = "10.79.0.2";
/// listed by the HTTP feed (action drop)
const PEER_DROPPED: &str = "10.79.0.20";
/// inside 1.10.16.0/20 of the shipped Spamhaus DROP list (action alert)
const PEER_LISTED: &str = "1.10.16.5";
/// listed by the path feed until it is refreshed away (action drop)
const PEER_REFRESHED: &str = "10.79.0.30";
/// listed by the quarantine feed
const QUARANTINED: &str = "10.79.0.40";

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// Serves `body` to every request, from inside `ns` (its loopback), until `stop`.
fn feed_server(ns: &Netns, body: &'static str, stop: Arc<AtomicBool>) -> SocketAddr {
    let listener = ns.run(|| TcpListener::bind("127.0.0.1:0").unwrap());
    listener.set_nonblocking(true).unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        while !stop.load(Ordering::Relaxed) {
            match listener.accept() {
                Ok((mut c, _)) => {
                    c.set_nonblocking(false).unwrap();
                    c.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
                    let mut req = [0u8; 2048];
                    let _ = c.read(&mut req);
                    let _ = write!(
                        c,
                        "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nETag: \"v1\"\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                        body.len()
                    );
                }
                Err(_) => std::thread::sleep(Duration::from_millis(20)),
            }
        }
    });
    addr
}

fn udp_from(peer: &Netns, host: &Netns, src: &str, port: u16, n: usize) -> usize {
    let rx = traffic::udp_bind(host, SocketAddr::new(ip(HOST), port));
    traffic::udp_send(peer, ip(src), SocketAddr::new(ip(HOST), port), n);
    traffic::udp_drain(&rx).get(&ip(src)).copied().unwrap_or(0)
}

#[test]
fn feeds_block_alert_refresh_quarantine_and_the_ips_blacklists() {
    if !common::privileged("feeds_block_alert_refresh_quarantine_and_the_ips_blacklists") {
        return;
    }
    let peer = Netns::new("ti-peer");
    let host = Netns::new("ti-host");
    veth(&peer, "tP", &host, "tH");
    for a in [PEER, PEER_DROPPED, PEER_LISTED, PEER_REFRESHED] {
        let cidr = if a.starts_with("10.79.") {
            format!("{a}/24")
        } else {
            format!("{a}/32")
        };
        peer.exec(&["ip", "addr", "add", &cidr, "dev", "tP"]);
    }
    host.exec(&["ip", "addr", "add", "10.79.0.1/24", "dev", "tH"]);
    host.exec(&["ip", "route", "add", "1.10.16.5/32", "dev", "tH"]);
    host.exec(&[
        "ip",
        "neigh",
        "add",
        QUARANTINED,
        "lladdr",
        "02:00:00:00:00:40",
        "dev",
        "tH",
    ]);

    let stop = Arc::new(AtomicBool::new(false));
    let http = feed_server(
        &host,
        "# ebpfsentinel lab feed\n10.79.0.20\nnot-an-address\n192.0.2.0/24\n",
        stop.clone(),
    );
    let scratch = Scratch::new("ti");
    let refreshed_feed = scratch.dir.join("local.netset");
    std::fs::write(&refreshed_feed, "10.79.0.30\n").unwrap();
    let quarantine_feed = scratch.dir.join("quarantine.netset");
    std::fs::write(&quarantine_feed, "10.79.0.40/32\n").unwrap();
    let config = scratch.dir.join("config.yaml");
    std::fs::write(
        &config,
        format!(
            r#"
interfaces: [tH]
threatintel:
  action: alert
  quarantine_vlan: 666
  feeds:
    - {{ id: lab, url: "http://{http}/lab.netset", format: netset, refresh: 1h, action: drop }}
    - {{ id: drop, path: {}/spamhaus_drop.netset, format: netset }}
    - {{ id: local, path: {}, format: netset, refresh: 1s, action: drop }}
    - {{ id: quarantine, path: {}, format: netset, action: quarantine }}
ips: {{ threshold: 3, window: 60s, block_for: 1h }}
"#,
            common::feeds_dir().display(),
            refreshed_feed.display(),
            quarantine_feed.display()
        ),
    )
    .unwrap();
    let pin_root = scratch.pin_root();
    let root = pin_root.to_str().unwrap();
    let daemon = Daemon::start(&host, &config, &pin_root, &["--transient"]);
    wait_for("the feeds to load", Duration::from_secs(30), || {
        let out = cli(&["ti", "lookup", PEER_REFRESHED, "--pin-root", root]);
        out.status.success()
    });

    // the feeds as `ti feeds` reports them: the HTTP feed's bad line is named
    let feeds = cli_json(&["ti", "feeds", "--json", "--pin-root", root]);
    let text = feeds.to_string();
    assert!(
        text.contains("\"lab\"") && text.contains("\"drop\""),
        "{feeds:#}"
    );
    let lookup = cli_json(&["ti", "lookup", PEER_LISTED, "--json", "--pin-root", root]);
    assert!(lookup.to_string().contains("drop"), "{lookup:#}");

    // a listed source under `drop`: nothing arrives; a clean one: everything
    assert_eq!(udp_from(&peer, &host, PEER_DROPPED, 6001, 10), 0);
    assert_eq!(udp_from(&peer, &host, PEER, 6002, 10), 10);
    // under `alert`: it arrives and is reported, with its feed; the third detection gets it
    // blacklisted, and from then on XDP drops it
    let first = udp_from(&peer, &host, PEER_LISTED, 6003, 3);
    assert_eq!(first, 3, "alert lets it through");
    wait_for("the IPS block", Duration::from_secs(10), || {
        let b = cli_json(&["blocked", "--json", "--pin-root", root]);
        b.to_string().contains(PEER_LISTED)
    });
    assert_eq!(
        udp_from(&peer, &host, PEER_LISTED, 6004, 5),
        0,
        "blacklisted"
    );
    let blocked = cli_json(&["blocked", "--json", "--pin-root", root]).to_string();
    assert!(blocked.contains("threat-intel feed drop"), "{blocked}");
    let mut events = Vec::new();
    while let Ok(line) = daemon.stdout.recv_timeout(Duration::from_millis(300)) {
        events.push(line);
    }
    let ti_events: Vec<serde_json::Value> = events
        .iter()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|e| e["event_type"] == "threatintel")
        .collect();
    assert!(
        ti_events.iter().any(|e| e["src_ip"] == PEER_LISTED
            && e["threatintel"]["feed"] == "drop"
            && e["threatintel"]["ioc"] == "1.10.16.0/20"
            && e["action"] == "pass"),
        "{ti_events:#?}"
    );
    let text = common::daemon::scrape(&host);
    let metric = |name: &str, labels: &[&str]| {
        common::daemon::metric(&text, name, labels).unwrap_or_else(|| panic!("{name}\n{text}"))
    };
    // three drops by TI, then the IPS blacklist drops the rest in XDP
    assert!(metric("ebpfsentinel_threatintel_packets_total", &["match_drop"]) >= 3);
    assert!(metric("ebpfsentinel_threatintel_packets_total", &["match_alert"]) >= 3);
    assert!(metric("ebpfsentinel_ips_blocks_total", &[]) >= 1);
    assert!(metric("ebpfsentinel_ips_blacklist_entries", &[]) >= 1);
    // the operator lifts the block
    let out = cli(&["unblock", PEER_LISTED, "--pin-root", root]);
    assert!(out.status.success(), "{out:?}");

    // a path feed's refresh takes its IOC away (two drops: under the IPS threshold)
    assert_eq!(udp_from(&peer, &host, PEER_REFRESHED, 6005, 2), 0);
    std::fs::write(&refreshed_feed, "192.0.2.77\n").unwrap();
    wait_for("the refresh", Duration::from_secs(15), || {
        !cli(&["ti", "lookup", PEER_REFRESHED, "--pin-root", root])
            .status
            .success()
    });
    assert_eq!(udp_from(&peer, &host, PEER_REFRESHED, 6006, 5), 5);

    // quarantine: what the host sends there leaves tagged with VLAN 666 (a packet socket on
    // the peer's end sees the tag in its auxiliary data: veth keeps it out of line)
    let capture = peer.run(|| VlanCapture::open("tP"));
    let tx = traffic::udp_bind(&host, SocketAddr::new(ip(HOST), 0));
    for _ in 0..3 {
        tx.send_to(b"to quarantine", SocketAddr::new(ip(QUARANTINED), 9))
            .unwrap();
    }
    let tags = capture.tags_of_frames_to(ip(QUARANTINED), Duration::from_secs(3));
    assert_eq!(
        tags,
        vec![Some(666); 3],
        "quarantined frames carry VLAN 666"
    );
    stop.store(true, Ordering::Relaxed);
}

/// An AF_PACKET socket on one interface that reports each frame's VLAN tag.
struct VlanCapture(std::os::fd::OwnedFd);

impl VlanCapture {
    fn open(ifname: &str) -> VlanCapture {
        use std::os::fd::FromRawFd;
        let proto = (libc::ETH_P_ALL as u16).to_be();
        // SAFETY: plain socket(2); the fd is owned at once.
        let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW, i32::from(proto)) };
        assert!(fd >= 0, "AF_PACKET socket");
        // SAFETY: fd was just created.
        let owned = unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) };
        let on: libc::c_int = 1;
        let name = std::ffi::CString::new(ifname).unwrap();
        // SAFETY: valid fd, option and pointers.
        unsafe {
            assert_eq!(
                libc::setsockopt(
                    fd,
                    libc::SOL_PACKET,
                    libc::PACKET_AUXDATA,
                    (&on as *const libc::c_int).cast(),
                    std::mem::size_of::<libc::c_int>() as u32
                ),
                0
            );
            let mut sll: libc::sockaddr_ll = std::mem::zeroed();
            sll.sll_family = libc::AF_PACKET as u16;
            sll.sll_protocol = proto;
            sll.sll_ifindex = libc::if_nametoindex(name.as_ptr()) as i32;
            assert_eq!(
                libc::bind(
                    fd,
                    (&sll as *const libc::sockaddr_ll).cast(),
                    std::mem::size_of::<libc::sockaddr_ll>() as u32
                ),
                0
            );
            let tv = libc::timeval {
                tv_sec: 0,
                tv_usec: 200_000,
            };
            libc::setsockopt(
                fd,
                libc::SOL_SOCKET,
                libc::SO_RCVTIMEO,
                (&tv as *const libc::timeval).cast(),
                std::mem::size_of::<libc::timeval>() as u32,
            );
        }
        VlanCapture(owned)
    }

    /// The VLAN tag (None: untagged) of every IPv4 frame to `dst` seen within `within`.
    fn tags_of_frames_to(&self, dst: IpAddr, within: Duration) -> Vec<Option<u16>> {
        use std::os::fd::AsRawFd;
        let IpAddr::V4(dst) = dst else {
            panic!("IPv4 only")
        };
        let deadline = Instant::now() + within;
        let mut tags = Vec::new();
        while Instant::now() < deadline {
            let mut buf = [0u8; 2048];
            let mut cbuf = [0u64; 64];
            let mut iov = libc::iovec {
                iov_base: buf.as_mut_ptr().cast(),
                iov_len: buf.len(),
            };
            // SAFETY: a zeroed msghdr pointing at live buffers.
            let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
            msg.msg_iov = &mut iov;
            msg.msg_iovlen = 1;
            msg.msg_control = cbuf.as_mut_ptr().cast();
            msg.msg_controllen = std::mem::size_of_val(&cbuf);
            // SAFETY: valid fd and msghdr.
            let n = unsafe { libc::recvmsg(self.0.as_raw_fd(), &mut msg, 0) };
            if n < 34 || u16::from_be_bytes([buf[12], buf[13]]) != 0x0800 {
                continue;
            }
            if buf[30..34] != dst.octets() {
                continue;
            }
            let mut tag = None;
            // SAFETY: walking the control messages recvmsg filled in.
            unsafe {
                let mut c = libc::CMSG_FIRSTHDR(&msg);
                while !c.is_null() {
                    if (*c).cmsg_level == libc::SOL_PACKET && (*c).cmsg_type == libc::PACKET_AUXDATA
                    {
                        let aux = std::ptr::read_unaligned(
                            libc::CMSG_DATA(c).cast::<libc::tpacket_auxdata>(),
                        );
                        if aux.tp_status & libc::TP_STATUS_VLAN_VALID != 0 {
                            tag = Some(aux.tp_vlan_tci & 0x0fff);
                        }
                    }
                    c = libc::CMSG_NXTHDR(&msg, c);
                }
            }
            tags.push(tag);
        }
        tags
    }
}
