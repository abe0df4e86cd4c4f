//! What the programs' parser (bpf/lib/parse.bpf.h) makes of an Ethernet frame, in userspace and
//! with a reason for every refusal: the 5-tuple `ebpfsentinel test` prints and `--explain`
//! writes in tcpdump's notation.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use serde::Serialize;

const ETHERTYPE_IPV4: u16 = 0x0800;
const ETHERTYPE_IPV6: u16 = 0x86dd;
const ETHERTYPE_VLAN: [u16; 2] = [0x8100, 0x88a8];
/// The programs accept an outer and an inner tag, nothing deeper.
const MAX_TAGS: usize = 2;
/// The programs walk this many IPv6 extension headers, then give up.
const MAX_EXTENSIONS: usize = 6;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Tuple {
    pub src: IpAddr,
    pub dst: IpAddr,
    pub proto: u8,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sport: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dport: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub icmp_type: Option<u8>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub icmp_code: Option<u8>,
    /// a fragment other than the first: its transport header is in another packet
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub later_fragment: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parse {
    Ip(Tuple),
    NonIp { ethertype: u16 },
    Malformed(String),
}

pub fn parse(frame: &[u8]) -> Parse {
    match ethernet(frame) {
        Ok(p) => p,
        Err(why) => Parse::Malformed(why),
    }
}

type Step<T> = Result<T, String>;

fn get<'a>(bytes: &'a [u8], at: usize, n: usize, what: &str) -> Step<&'a [u8]> {
    bytes.get(at..at + n).ok_or_else(|| {
        format!(
            "{what} cut short ({} of {n} bytes)",
            bytes.len().saturating_sub(at)
        )
    })
}

fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}

fn ethernet(frame: &[u8]) -> Step<Parse> {
    let eth = get(frame, 0, 14, "Ethernet header")?;
    let mut ethertype = be16(eth, 12);
    let mut at = 14;
    for depth in 0.. {
        if !ETHERTYPE_VLAN.contains(&ethertype) {
            break;
        }
        if depth == MAX_TAGS {
            return Err(format!("more than {MAX_TAGS} VLAN tags"));
        }
        ethertype = be16(get(frame, at, 4, "VLAN tag")?, 2);
        at += 4;
    }
    let l3 = &frame[at..];
    match ethertype {
        ETHERTYPE_IPV4 => ipv4(l3),
        ETHERTYPE_IPV6 => ipv6(l3),
        other => Ok(Parse::NonIp { ethertype: other }),
    }
}

fn ipv4(l3: &[u8]) -> Step<Parse> {
    let h = get(l3, 0, 20, "IPv4 header")?;
    if h[0] >> 4 != 4 {
        return Err(format!("IPv4 ethertype with IP version {}", h[0] >> 4));
    }
    let hlen = usize::from(h[0] & 0xf) * 4;
    if hlen < 20 {
        return Err(format!("IPv4 header length {hlen} below 20"));
    }
    let total = usize::from(be16(h, 2));
    if total < hlen {
        return Err(format!(
            "IPv4 total length {total} shorter than its header ({hlen})"
        ));
    }
    if total > l3.len() {
        return Err(format!(
            "IPv4 total length {total} beyond the {} bytes captured",
            l3.len()
        ));
    }
    let mut t = Tuple {
        src: IpAddr::V4(Ipv4Addr::new(h[12], h[13], h[14], h[15])),
        dst: IpAddr::V4(Ipv4Addr::new(h[16], h[17], h[18], h[19])),
        proto: h[9],
        sport: None,
        dport: None,
        icmp_type: None,
        icmp_code: None,
        later_fragment: be16(h, 6) & 0x1fff != 0,
    };
    if !t.later_fragment {
        transport(&mut t, false, &l3[hlen..total])?;
    }
    Ok(Parse::Ip(t))
}

fn ipv6(l3: &[u8]) -> Step<Parse> {
    let h = get(l3, 0, 40, "IPv6 header")?;
    if h[0] >> 4 != 6 {
        return Err(format!("IPv6 ethertype with IP version {}", h[0] >> 4));
    }
    let addr = |at: usize| {
        let mut a = [0u8; 16];
        a.copy_from_slice(&h[at..at + 16]);
        IpAddr::V6(Ipv6Addr::from(a))
    };
    let plen = usize::from(be16(h, 4));
    let payload = l3.get(40..40 + plen).ok_or_else(|| {
        format!(
            "IPv6 payload length {plen} beyond the {} bytes captured",
            l3.len() - 40
        )
    })?;
    let mut t = Tuple {
        src: addr(8),
        dst: addr(24),
        proto: h[6],
        sport: None,
        dport: None,
        icmp_type: None,
        icmp_code: None,
        later_fragment: false,
    };
    let mut at = 0;
    let mut walked = 0;
    while matches!(t.proto, 0 | 43 | 44 | 51 | 60) {
        if walked == MAX_EXTENSIONS {
            return Err(format!("more than {MAX_EXTENSIONS} IPv6 extension headers"));
        }
        walked += 1;
        let (next, len) = if t.proto == 44 {
            let frag = get(payload, at, 8, "IPv6 fragment header")?;
            if be16(frag, 2) >> 3 != 0 {
                t.proto = frag[0];
                t.later_fragment = true;
                return Ok(Parse::Ip(t));
            }
            (frag[0], 8)
        } else {
            let ext = get(payload, at, 2, "IPv6 extension header")?;
            let len = if t.proto == 51 {
                (usize::from(ext[1]) + 2) * 4
            } else {
                (usize::from(ext[1]) + 1) * 8
            };
            (ext[0], len)
        };
        get(payload, at, len, "IPv6 extension header")?;
        at += len;
        t.proto = next;
    }
    transport(&mut t, true, &payload[at..])?;
    Ok(Parse::Ip(t))
}

/// `l4` ends where the IP header says the packet ends, never at the frame's padding.
fn transport(t: &mut Tuple, v6: bool, l4: &[u8]) -> Step<()> {
    match (t.proto, v6) {
        (6, _) => {
            let tcp = get(l4, 0, 20, "TCP header")?;
            let doff = usize::from(tcp[12] >> 4) * 4;
            if doff < 20 || doff > l4.len() {
                return Err(format!(
                    "TCP data offset {doff} outside 20..={} bytes",
                    l4.len()
                ));
            }
            (t.sport, t.dport) = (Some(be16(tcp, 0)), Some(be16(tcp, 2)));
        }
        (17, _) => {
            let udp = get(l4, 0, 8, "UDP header")?;
            (t.sport, t.dport) = (Some(be16(udp, 0)), Some(be16(udp, 2)));
        }
        (1, false) | (58, true) => {
            let icmp = get(l4, 0, 4, "ICMP header")?;
            (t.icmp_type, t.icmp_code) = (Some(icmp[0]), Some(icmp[1]));
        }
        _ => {}
    }
    Ok(())
}

fn proto_word(p: u8) -> String {
    match p {
        1 => "icmp".into(),
        6 => "tcp".into(),
        17 => "udp".into(),
        58 => "icmp6".into(),
        n => format!("ip-proto-{n}"),
    }
}

/// tcpdump -n's notation for the fields the programs match on: `IP 192.0.2.1.1234 >
/// 198.51.100.2.80: tcp`, `IP6 2001:db8::1 > 2001:db8::2: icmp6 type 128 code 0`.
impl fmt::Display for Parse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Parse::Ip(t) => {
                let family = if t.src.is_ipv4() { "IP" } else { "IP6" };
                match (t.sport, t.dport) {
                    (Some(s), Some(d)) => write!(f, "{family} {}.{s} > {}.{d}: ", t.src, t.dst)?,
                    _ => write!(f, "{family} {} > {}: ", t.src, t.dst)?,
                }
                f.write_str(&proto_word(t.proto))?;
                if let (Some(ty), Some(code)) = (t.icmp_type, t.icmp_code) {
                    write!(f, " type {ty} code {code}")?;
                }
                if t.later_fragment {
                    f.write_str(" (fragment)")?;
                }
                Ok(())
            }
            Parse::NonIp { ethertype } => write!(f, "ethertype 0x{ethertype:04x} (not IP)"),
            Parse::Malformed(why) => write!(f, "malformed: {why}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::packet::{PacketBuilder, TcpFlags};

    #[test]
    fn tuples_in_tcpdump_notation() {
        let frame = PacketBuilder::new()
            .ipv4(Ipv4Addr::new(192, 0, 2, 1), Ipv4Addr::new(198, 51, 100, 2))
            .tcp(1234, 80, TcpFlags::SYN)
            .build();
        assert_eq!(
            parse(&frame).to_string(),
            "IP 192.0.2.1.1234 > 198.51.100.2.80: tcp"
        );
        let frame = PacketBuilder::new()
            .vlan(7)
            .ipv6(
                "2001:db8::1".parse().unwrap(),
                "2001:db8::2".parse().unwrap(),
            )
            .icmpv6(128, 0)
            .build();
        assert_eq!(
            parse(&frame).to_string(),
            "IP6 2001:db8::1 > 2001:db8::2: icmp6 type 128 code 0"
        );
    }

    #[test]
    fn refusals_say_why() {
        let mut frame = PacketBuilder::new()
            .ipv4(Ipv4Addr::new(192, 0, 2, 1), Ipv4Addr::new(198, 51, 100, 2))
            .udp(1, 2)
            .build();
        frame.truncate(14 + 20 + 4);
        let Parse::Malformed(why) = parse(&frame) else {
            panic!("not malformed")
        };
        assert!(why.contains("total length"), "{why}");
        assert_eq!(
            parse(&[0; 10]),
            Parse::Malformed("Ethernet header cut short (10 of 14 bytes)".into())
        );
        let arp = PacketBuilder::new().ethertype(0x0806).build();
        assert_eq!(parse(&arp), Parse::NonIp { ethertype: 0x0806 });
    }
}
