//! Real traffic between lab namespaces: sockets are created inside a namespace (they stay
//! bound to it) and then used from any thread.

use std::io::{Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::time::{Duration, Instant};

use socket2::{Domain, Protocol, SockAddr, Socket, Type};

use super::netns::Netns;

pub fn udp_bind(ns: &Netns, addr: SocketAddr) -> UdpSocket {
    ns.run(|| {
        let s = UdpSocket::bind(addr).unwrap_or_else(|e| panic!("bind {addr}: {e}"));
        // Tests queue their datagrams before reading; 6.1's veth with native XDP charges a
        // page per datagram, and 50 of them overflow the default buffer.
        socket2::SockRef::from(&s)
            .set_recv_buffer_size(1 << 20)
            .expect("SO_RCVBUF");
        s.set_read_timeout(Some(Duration::from_millis(300)))
            .unwrap();
        s
    })
}

/// Sends `count` datagrams from `src` (an address of `ns`) to `dst`.
pub fn udp_send(ns: &Netns, src: IpAddr, dst: SocketAddr, count: usize) {
    let s = udp_bind(ns, SocketAddr::new(src, 0));
    for i in 0..count {
        s.send_to(format!("probe {i}").as_bytes(), dst)
            .unwrap_or_else(|e| panic!("send {src} -> {dst}: {e}"));
        // keep well under the veth's queue so that every loss is the firewall's
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// Datagrams per source address until the socket stays quiet.
pub fn udp_drain(s: &UdpSocket) -> std::collections::HashMap<IpAddr, usize> {
    let mut got = std::collections::HashMap::new();
    let mut buf = [0u8; 1500];
    while let Ok((_, from)) = s.recv_from(&mut buf) {
        *got.entry(from.ip()).or_insert(0) += 1;
    }
    got
}

pub fn tcp_listen(ns: &Netns, addr: SocketAddr) -> TcpListener {
    ns.run(|| TcpListener::bind(addr).unwrap_or_else(|e| panic!("listen {addr}: {e}")))
}

/// Serves one echo per connection until `stop` connections were handled or the time is up.
pub fn tcp_echo_server(l: TcpListener, connections: usize) -> std::thread::JoinHandle<usize> {
    l.set_nonblocking(true).unwrap();
    std::thread::spawn(move || {
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut served = 0;
        while served < connections && Instant::now() < deadline {
            match l.accept() {
                Ok((mut c, _)) => {
                    c.set_nonblocking(false).unwrap();
                    let mut buf = [0u8; 64];
                    if let Ok(n) = c.read(&mut buf) {
                        let _ = c.write_all(&buf[..n]);
                        served += 1;
                    }
                }
                Err(_) => std::thread::sleep(Duration::from_millis(10)),
            }
        }
        served
    })
}

/// Connects from `src` and exchanges one message; Err if the handshake or echo failed.
pub fn tcp_exchange(
    ns: &Netns,
    src: IpAddr,
    dst: SocketAddr,
    timeout: Duration,
) -> Result<(), String> {
    ns.run(|| {
        let domain = if dst.is_ipv4() {
            Domain::IPV4
        } else {
            Domain::IPV6
        };
        let s =
            Socket::new(domain, Type::STREAM, Some(Protocol::TCP)).map_err(|e| e.to_string())?;
        s.bind(&SockAddr::from(SocketAddr::new(src, 0)))
            .map_err(|e| e.to_string())?;
        s.connect_timeout(&SockAddr::from(dst), timeout)
            .map_err(|e| format!("connect: {e}"))?;
        let mut c: TcpStream = s.into();
        c.set_read_timeout(Some(timeout))
            .map_err(|e| e.to_string())?;
        c.write_all(b"hello").map_err(|e| e.to_string())?;
        let mut buf = [0u8; 5];
        c.read_exact(&mut buf).map_err(|e| format!("echo: {e}"))?;
        if &buf != b"hello" {
            return Err("echo mismatch".into());
        }
        Ok(())
    })
}

fn checksum(data: &[u8]) -> u16 {
    let mut sum = 0u32;
    for c in data.chunks(2) {
        sum += u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]));
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// One ICMP echo from `src` to `dst` (IPv4); true if the matching reply came back.
pub fn ping4(ns: &Netns, src: IpAddr, dst: IpAddr, id: u16, timeout: Duration) -> bool {
    ns.run(|| {
        let s =
            Socket::new(Domain::IPV4, Type::RAW, Some(Protocol::ICMPV4)).expect("raw icmp socket");
        s.bind(&SockAddr::from(SocketAddr::new(src, 0)))
            .expect("bind");
        s.set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        let mut msg = vec![8u8, 0, 0, 0, (id >> 8) as u8, id as u8, 0, 1];
        msg.extend_from_slice(b"ebpfsentinel");
        let c = checksum(&msg);
        msg[2..4].copy_from_slice(&c.to_be_bytes());
        s.send_to(&msg, &SockAddr::from(SocketAddr::new(dst, 0)))
            .expect("send echo");
        let deadline = Instant::now() + timeout;
        let mut buf = [std::mem::MaybeUninit::<u8>::uninit(); 1500];
        while Instant::now() < deadline {
            if let Ok((n, _)) = s.recv_from(&mut buf) {
                // SAFETY: recv_from initialised the first n bytes.
                let bytes: Vec<u8> = buf[..n]
                    .iter()
                    .map(|b| unsafe { b.assume_init() })
                    .collect();
                let ihl = usize::from(bytes[0] & 0x0f) * 4;
                let icmp = &bytes[ihl..];
                if icmp.len() >= 8 && icmp[0] == 0 && u16::from_be_bytes([icmp[4], icmp[5]]) == id {
                    return true;
                }
            }
        }
        false
    })
}
