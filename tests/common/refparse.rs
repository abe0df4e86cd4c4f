//! A reference packet parser written from the documented contract of bpf/lib/parse.bpf.h, not
//! from its code: the tests compare what the kernel makes of a frame with what this says the
//! frame is.
//!
//! The contract, as this module reads it:
//! - Ethernet II header (14 bytes), then at most two 802.1Q / 802.1ad tags of 4 bytes each; a
//!   third tag, or a tag cut short, is malformed.
//! - An ethertype other than IPv4 or IPv6 after the tags is not IP.
//! - IPv4: a 20-byte header with version 4 and IHL >= 5; the total length covers at least the
//!   header and at most the bytes after the L2 header. The transport layer is what the total
//!   length says follows the header. A fragment with a non-zero offset has no transport header.
//! - IPv6: a 40-byte header with version 6 whose payload length fits in the bytes after it. Up
//!   to six extension headers (hop-by-hop, routing, destination options, AH, fragment) are
//!   walked, each inside the payload length; a seventh is malformed. A fragment header with a
//!   non-zero offset ends the walk: its next header is the protocol, with no transport header.
//! - Transport, bounded by what the IP layer says it holds: TCP needs 20 bytes, a data offset of
//!   at least 5 words and no more words than that; UDP needs 8 bytes; ICMP (IPv4 only) and ICMPv6
//!   (IPv6 only) need 4 bytes (type, code, checksum). Other protocols carry nothing to parse.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Parsed {
    NonIp,
    Malformed,
    Ip {
        src: IpAddr,
        dst: IpAddr,
        proto: u8,
        /// TCP or UDP source and destination ports
        ports: Option<(u16, u16)>,
        /// ICMP (in IPv4) or ICMPv6 (in IPv6) type and code
        icmp: Option<(u8, u8)>,
    },
}

const ETHERTYPE_IPV4: u16 = 0x0800;
const ETHERTYPE_IPV6: u16 = 0x86dd;
const ETHERTYPE_8021Q: u16 = 0x8100;
const ETHERTYPE_8021AD: u16 = 0x88a8;

const MAX_VLAN_TAGS: usize = 2;
const MAX_IPV6_EXTENSIONS: usize = 6;

const PROTO_HOPOPTS: u8 = 0;
const PROTO_ICMP: u8 = 1;
const PROTO_TCP: u8 = 6;
const PROTO_UDP: u8 = 17;
const PROTO_ROUTING: u8 = 43;
const PROTO_FRAGMENT: u8 = 44;
const PROTO_AH: u8 = 51;
const PROTO_ICMPV6: u8 = 58;
const PROTO_DSTOPTS: u8 = 60;

/// A header is truncated or inconsistent.
struct Bad;

type Step<T> = Result<T, Bad>;

/// The `n` bytes at `at`, or `Bad` when `bytes` ends first.
fn bytes_at(bytes: &[u8], at: usize, n: usize) -> Step<&[u8]> {
    bytes.get(at..at.checked_add(n).ok_or(Bad)?).ok_or(Bad)
}

fn be16(bytes: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([bytes[at], bytes[at + 1]])
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Family {
    V4,
    V6,
}

/// What the transport header says: (ports, icmp).
type L4 = (Option<(u16, u16)>, Option<(u8, u8)>);

pub fn parse(frame: &[u8]) -> Parsed {
    match parse_frame(frame) {
        Ok(parsed) => parsed,
        Err(Bad) => Parsed::Malformed,
    }
}

fn parse_frame(frame: &[u8]) -> Step<Parsed> {
    let eth = bytes_at(frame, 0, 14)?;
    let mut ethertype = be16(eth, 12);
    let mut at = 14;
    let mut tags = 0;
    while ethertype == ETHERTYPE_8021Q || ethertype == ETHERTYPE_8021AD {
        if tags == MAX_VLAN_TAGS {
            return Err(Bad);
        }
        let tag = bytes_at(frame, at, 4)?;
        ethertype = be16(tag, 2);
        at += 4;
        tags += 1;
    }
    let l3 = &frame[at..];
    match ethertype {
        ETHERTYPE_IPV4 => ipv4(l3),
        ETHERTYPE_IPV6 => ipv6(l3),
        _ => Ok(Parsed::NonIp),
    }
}

fn ipv4(l3: &[u8]) -> Step<Parsed> {
    let header = bytes_at(l3, 0, 20)?;
    let (version, ihl) = (header[0] >> 4, usize::from(header[0] & 0x0f));
    if version != 4 || ihl < 5 {
        return Err(Bad);
    }
    let header_len = ihl * 4;
    let total_len = usize::from(be16(header, 2));
    if total_len < header_len || total_len > l3.len() {
        return Err(Bad);
    }
    let src = IpAddr::V4(Ipv4Addr::new(
        header[12], header[13], header[14], header[15],
    ));
    let dst = IpAddr::V4(Ipv4Addr::new(
        header[16], header[17], header[18], header[19],
    ));
    let proto = header[9];
    let fragment_offset = be16(header, 6) & 0x1fff;
    let (ports, icmp) = if fragment_offset != 0 {
        (None, None)
    } else {
        transport(proto, Family::V4, &l3[header_len..total_len])?
    };
    Ok(Parsed::Ip {
        src,
        dst,
        proto,
        ports,
        icmp,
    })
}

fn ipv6(l3: &[u8]) -> Step<Parsed> {
    let header = bytes_at(l3, 0, 40)?;
    if header[0] >> 4 != 6 {
        return Err(Bad);
    }
    let octets = |at: usize| -> [u8; 16] { header[at..at + 16].try_into().unwrap() };
    let src = IpAddr::V6(Ipv6Addr::from(octets(8)));
    let dst = IpAddr::V6(Ipv6Addr::from(octets(24)));
    let payload_len = usize::from(be16(header, 4));
    // everything below is bounded by the payload length, never by the frame's padding
    let payload = bytes_at(l3, 40, payload_len)?;

    let mut next = header[6];
    let mut at = 0;
    let mut seen = 0;
    loop {
        let is_extension = matches!(
            next,
            PROTO_HOPOPTS | PROTO_ROUTING | PROTO_DSTOPTS | PROTO_AH | PROTO_FRAGMENT
        );
        if !is_extension {
            break;
        }
        if seen == MAX_IPV6_EXTENSIONS {
            return Err(Bad);
        }
        seen += 1;
        let (following, len) = match next {
            PROTO_FRAGMENT => {
                let fragment = bytes_at(payload, at, 8)?;
                if be16(fragment, 2) & 0xfff8 != 0 {
                    // a later fragment: the protocol is known, its header is elsewhere
                    return Ok(Parsed::Ip {
                        src,
                        dst,
                        proto: fragment[0],
                        ports: None,
                        icmp: None,
                    });
                }
                (fragment[0], 8)
            }
            // RFC 4302: the length is in 4-byte words, minus 2
            PROTO_AH => {
                let ext = bytes_at(payload, at, 2)?;
                (ext[0], (usize::from(ext[1]) + 2) * 4)
            }
            // RFC 8200: the length is in 8-byte units, not counting the first
            _ => {
                let ext = bytes_at(payload, at, 2)?;
                (ext[0], (usize::from(ext[1]) + 1) * 8)
            }
        };
        bytes_at(payload, at, len)?;
        at += len;
        next = following;
    }
    let (ports, icmp) = transport(next, Family::V6, &payload[at..])?;
    Ok(Parsed::Ip {
        src,
        dst,
        proto: next,
        ports,
        icmp,
    })
}

/// `l4` is exactly what the IP layer says the transport layer holds.
fn transport(proto: u8, family: Family, l4: &[u8]) -> Step<L4> {
    match (proto, family) {
        (PROTO_TCP, _) => {
            let tcp = bytes_at(l4, 0, 20)?;
            let data_offset = usize::from(tcp[12] >> 4);
            if data_offset < 5 || data_offset * 4 > l4.len() {
                return Err(Bad);
            }
            Ok((Some((be16(tcp, 0), be16(tcp, 2))), None))
        }
        (PROTO_UDP, _) => {
            let udp = bytes_at(l4, 0, 8)?;
            Ok((Some((be16(udp, 0), be16(udp, 2))), None))
        }
        (PROTO_ICMP, Family::V4) | (PROTO_ICMPV6, Family::V6) => {
            let icmp = bytes_at(l4, 0, 4)?;
            Ok((None, Some((icmp[0], icmp[1]))))
        }
        _ => Ok((None, None)),
    }
}
