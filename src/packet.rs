//! Ethernet frames with consistent lengths and valid checksums for BPF_PROG_TEST_RUN tests and
//! the benchmark, and the offset of every header in them so tests can cut a frame inside any
//! header.
//!
//! ```ignore
//! let (frame, layout) = PacketBuilder::new()
//!     .vlan(100)
//!     .ipv6(src, dst)
//!     .ipv6_ext(ExtHeader::HopByHop)
//!     .tcp(1234, 80, TcpFlags::SYN)
//!     .payload(b"hello")
//!     .build_with_layout();
//! ```

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::ops::{BitOr, BitOrAssign, Range};

pub const ETHERTYPE_IPV4: u16 = 0x0800;
pub const ETHERTYPE_IPV6: u16 = 0x86dd;
pub const ETHERTYPE_VLAN: u16 = 0x8100;
pub const ETHERTYPE_QINQ: u16 = 0x88a8;
/// IEEE 802 "local experimental" type: carried by frames built without an IP layer, so they
/// are non-IP without meaning any real protocol.
pub const ETHERTYPE_EXPERIMENTAL: u16 = 0x88b5;

pub const IPPROTO_HOPOPTS: u8 = 0;
pub const IPPROTO_ICMP: u8 = 1;
pub const IPPROTO_TCP: u8 = 6;
pub const IPPROTO_UDP: u8 = 17;
pub const IPPROTO_ROUTING: u8 = 43;
pub const IPPROTO_FRAGMENT: u8 = 44;
pub const IPPROTO_ICMPV6: u8 = 58;
/// What the IP header announces when nothing follows it.
pub const IPPROTO_NONE: u8 = 59;
pub const IPPROTO_DSTOPTS: u8 = 60;

/// Locally administered, so they never collide with a real NIC.
pub const SRC_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];
pub const DST_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 0x02];

pub const DEFAULT_TTL: u8 = 64;
const IP_IDENTIFICATION: u16 = 1;
const TCP_SEQ: u32 = 1000;
const TCP_ACK: u32 = 2000;
const TCP_WINDOW: u16 = 65535;

pub const ETHERNET_HEADER_LEN: usize = 14;
pub const VLAN_TAG_LEN: usize = 4;
pub const IPV4_HEADER_LEN: usize = 20;
pub const IPV4_MAX_OPTIONS_LEN: usize = 40;
pub const IPV6_HEADER_LEN: usize = 40;
pub const IPV6_EXT_HEADER_LEN: usize = 8;
pub const TCP_HEADER_LEN: usize = 20;
pub const UDP_HEADER_LEN: usize = 8;
/// Type, code, checksum and the 4-byte rest of header (identifier and sequence for echoes).
pub const ICMP_HEADER_LEN: usize = 8;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TcpFlags(pub u8);

impl TcpFlags {
    pub const FIN: Self = Self(0x01);
    pub const SYN: Self = Self(0x02);
    pub const RST: Self = Self(0x04);
    pub const PSH: Self = Self(0x08);
    pub const ACK: Self = Self(0x10);
    pub const URG: Self = Self(0x20);
    pub const ECE: Self = Self(0x40);
    pub const CWR: Self = Self(0x80);

    pub const fn bits(self) -> u8 {
        self.0
    }

    pub const fn contains(self, other: Self) -> bool {
        self.0 & other.0 == other.0
    }
}

impl BitOr for TcpFlags {
    type Output = Self;

    fn bitor(self, rhs: Self) -> Self {
        Self(self.0 | rhs.0)
    }
}

impl BitOrAssign for TcpFlags {
    fn bitor_assign(&mut self, rhs: Self) {
        self.0 |= rhs.0;
    }
}

/// IPv6 extension headers, each built at its minimum size of 8 bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExtHeader {
    /// One PadN option filling the header.
    HopByHop,
    /// Type 0 with no segments left, which every node skips.
    Routing,
    /// One PadN option filling the header.
    DestOpts,
    /// `offset` in bytes, rounded down to a multiple of 8.
    Fragment { offset: u16, more: bool },
}

impl ExtHeader {
    pub fn protocol(self) -> u8 {
        match self {
            ExtHeader::HopByHop => IPPROTO_HOPOPTS,
            ExtHeader::Routing => IPPROTO_ROUTING,
            ExtHeader::DestOpts => IPPROTO_DSTOPTS,
            ExtHeader::Fragment { .. } => IPPROTO_FRAGMENT,
        }
    }

    fn write(self, next_header: u8, out: &mut Vec<u8>) {
        const PAD_N: u8 = 1;
        const PAD_N_FILL: u8 = (IPV6_EXT_HEADER_LEN - 4) as u8;
        match self {
            ExtHeader::HopByHop | ExtHeader::DestOpts => {
                out.extend([next_header, 0, PAD_N, PAD_N_FILL, 0, 0, 0, 0]);
            }
            ExtHeader::Routing => out.extend([next_header, 0, 0, 0, 0, 0, 0, 0]),
            ExtHeader::Fragment { offset, more } => {
                let offset_and_flag = (offset & !7) | u16::from(more);
                out.extend([next_header, 0]);
                out.extend(offset_and_flag.to_be_bytes());
                out.extend(u32::from(IP_IDENTIFICATION).to_be_bytes());
            }
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Network {
    V4 { src: Ipv4Addr, dst: Ipv4Addr },
    V6 { src: Ipv6Addr, dst: Ipv6Addr },
}

impl Network {
    fn addresses(self) -> (IpAddr, IpAddr) {
        match self {
            Network::V4 { src, dst } => (src.into(), dst.into()),
            Network::V6 { src, dst } => (src.into(), dst.into()),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Transport {
    Tcp {
        sport: u16,
        dport: u16,
        flags: TcpFlags,
    },
    Udp {
        sport: u16,
        dport: u16,
    },
    Icmp {
        kind: u8,
        code: u8,
    },
    Icmpv6 {
        kind: u8,
        code: u8,
    },
    Raw(u8),
}

impl Transport {
    fn protocol(self) -> u8 {
        match self {
            Transport::Tcp { .. } => IPPROTO_TCP,
            Transport::Udp { .. } => IPPROTO_UDP,
            Transport::Icmp { .. } => IPPROTO_ICMP,
            Transport::Icmpv6 { .. } => IPPROTO_ICMPV6,
            Transport::Raw(protocol) => protocol,
        }
    }

    /// Offset of the checksum field inside the header, if the header has one.
    fn checksum_at(self) -> Option<usize> {
        match self {
            Transport::Tcp { .. } => Some(16),
            Transport::Udp { .. } => Some(6),
            Transport::Icmp { .. } | Transport::Icmpv6 { .. } => Some(2),
            Transport::Raw(_) => None,
        }
    }

    /// Writes the header with a zero checksum; `segment_len` counts header and payload.
    fn write(self, segment_len: usize, out: &mut Vec<u8>) {
        match self {
            Transport::Tcp {
                sport,
                dport,
                flags,
            } => {
                let ack = if flags.contains(TcpFlags::ACK) {
                    TCP_ACK
                } else {
                    0
                };
                let data_offset = ((TCP_HEADER_LEN / 4) as u8) << 4;
                out.extend(sport.to_be_bytes());
                out.extend(dport.to_be_bytes());
                out.extend(TCP_SEQ.to_be_bytes());
                out.extend(ack.to_be_bytes());
                out.extend([data_offset, flags.bits()]);
                out.extend(TCP_WINDOW.to_be_bytes());
                out.extend([0; 4]);
            }
            Transport::Udp { sport, dport } => {
                out.extend(sport.to_be_bytes());
                out.extend(dport.to_be_bytes());
                out.extend(saturating_u16(segment_len).to_be_bytes());
                out.extend([0; 2]);
            }
            Transport::Icmp { kind, code } | Transport::Icmpv6 { kind, code } => {
                out.extend([kind, code]);
                out.extend([0; 6]);
            }
            Transport::Raw(_) => {}
        }
    }
}

/// Length fields hold at most 65535; larger packets get a wrong length rather than a panic.
fn saturating_u16(len: usize) -> u16 {
    u16::try_from(len).unwrap_or(u16::MAX)
}

/// The one's-complement sum of big-endian 16-bit words (an odd last byte padded with zero),
/// folded to 16 bits. Data that includes a valid Internet checksum sums to 0xffff.
pub fn ones_complement_sum(data: &[u8]) -> u16 {
    let mut sum: u64 = data
        .chunks(2)
        .map(|pair| {
            u64::from(u16::from_be_bytes([
                pair[0],
                pair.get(1).copied().unwrap_or(0),
            ]))
        })
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    sum as u16
}

/// The TCP/UDP/ICMPv6 pseudo-header for an upper-layer packet of `len` bytes.
pub fn pseudo_header(src: IpAddr, dst: IpAddr, protocol: u8, len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(40);
    match (src, dst) {
        (IpAddr::V4(src), IpAddr::V4(dst)) => {
            out.extend(src.octets());
            out.extend(dst.octets());
            out.extend([0, protocol]);
            out.extend(saturating_u16(len).to_be_bytes());
        }
        _ => {
            out.extend(ipv6_of(src).octets());
            out.extend(ipv6_of(dst).octets());
            out.extend(u32::try_from(len).unwrap_or(u32::MAX).to_be_bytes());
            out.extend([0, 0, 0, protocol]);
        }
    }
    out
}

fn ipv6_of(addr: IpAddr) -> Ipv6Addr {
    match addr {
        IpAddr::V4(v4) => v4.to_ipv6_mapped(),
        IpAddr::V6(v6) => v6,
    }
}

/// Byte offsets of the headers of a built frame. Headers are contiguous: each one ends where the
/// next starts. VLAN tags are split the way Linux parses them: the Ethernet header ends with the
/// first TPID, and each tag is its TCI followed by the next ethertype.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Layout {
    /// Start of each VLAN tag, outermost first.
    pub vlan_tags: Vec<usize>,
    /// Start of the IP header (or of whatever the ethertype announces).
    pub l3: usize,
    /// Start of each IPv6 extension header, in order.
    pub ext_headers: Vec<usize>,
    /// Start of the transport header; equal to `payload` when there is none.
    pub l4: usize,
    pub payload: usize,
    /// Length of the whole frame.
    pub len: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Header {
    Ethernet,
    /// Index into [`Layout::vlan_tags`].
    VlanTag(usize),
    /// The IPv4 header with its options, or the fixed IPv6 header.
    Network,
    /// Index into [`Layout::ext_headers`].
    Extension(usize),
    Transport,
    Payload,
}

impl Layout {
    /// Every non-empty header with the bytes it spans, in frame order.
    pub fn headers(&self) -> Vec<(Header, Range<usize>)> {
        let mut starts = vec![(Header::Ethernet, 0)];
        starts.extend(
            self.vlan_tags
                .iter()
                .enumerate()
                .map(|(i, &at)| (Header::VlanTag(i), at)),
        );
        starts.push((Header::Network, self.l3));
        starts.extend(
            self.ext_headers
                .iter()
                .enumerate()
                .map(|(i, &at)| (Header::Extension(i), at)),
        );
        starts.push((Header::Transport, self.l4));
        starts.push((Header::Payload, self.payload));
        let ends = starts.iter().skip(1).map(|&(_, at)| at).chain([self.len]);
        starts
            .iter()
            .zip(ends)
            .map(|(&(header, start), end)| (header, start..end))
            .filter(|(_, range)| !range.is_empty())
            .collect()
    }

    /// The header holding the byte at `offset`, `None` past the end of the frame.
    pub fn header_at(&self, offset: usize) -> Option<Header> {
        self.headers()
            .into_iter()
            .find(|(_, range)| range.contains(&offset))
            .map(|(header, _)| header)
    }
}

/// Builds one frame: Ethernet, up to any number of VLAN tags, an optional IPv4 or IPv6 layer,
/// an optional transport header and a payload. Lengths and checksums are always filled in;
/// tests that want them wrong edit the built bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PacketBuilder {
    tags: Vec<(u16, u16)>,
    ethertype: Option<u16>,
    network: Option<Network>,
    ttl: u8,
    ipv4_options: Vec<u8>,
    ipv4_fragment: Option<(u16, bool)>,
    ipv6_ext: Vec<ExtHeader>,
    transport: Option<Transport>,
    /// TCP sequence number, acknowledgment number and window, when not the defaults
    tcp_numbers: Option<(u32, u32, u16)>,
    /// TCP options, padded with end-of-list bytes to a multiple of 4
    tcp_options: Vec<u8>,
    /// ICMP bytes 4..8: identifier and sequence of echoes, unused (or MTU) in errors
    icmp_rest: [u8; 4],
    payload: Vec<u8>,
}

impl Default for PacketBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl PacketBuilder {
    pub fn new() -> Self {
        Self {
            tags: Vec::new(),
            ethertype: None,
            network: None,
            ttl: DEFAULT_TTL,
            ipv4_options: Vec::new(),
            ipv4_fragment: None,
            ipv6_ext: Vec::new(),
            transport: None,
            tcp_numbers: None,
            tcp_options: Vec::new(),
            icmp_rest: [0; 4],
            payload: Vec::new(),
        }
    }

    /// Adds an 802.1Q tag inside the ones already added. `tci` is the whole tag control field:
    /// the VLAN id in the low 12 bits, priority and DEI above (0 for a plain `vlan(id)`).
    pub fn vlan(mut self, tci: u16) -> Self {
        self.tags.push((ETHERTYPE_VLAN, tci));
        self
    }

    /// Adds an 802.1ad service tag `outer` and an 802.1Q customer tag `inner`.
    pub fn qinq(mut self, outer: u16, inner: u16) -> Self {
        self.tags.push((ETHERTYPE_QINQ, outer));
        self.tags.push((ETHERTYPE_VLAN, inner));
        self
    }

    /// Overrides the ethertype after the VLAN tags, which otherwise follows the IP layer
    /// ([`ETHERTYPE_EXPERIMENTAL`] without one).
    pub fn ethertype(mut self, ethertype: u16) -> Self {
        self.ethertype = Some(ethertype);
        self
    }

    pub fn ipv4(mut self, src: Ipv4Addr, dst: Ipv4Addr) -> Self {
        self.network = Some(Network::V4 { src, dst });
        self
    }

    pub fn ipv6(mut self, src: Ipv6Addr, dst: Ipv6Addr) -> Self {
        self.network = Some(Network::V6 { src, dst });
        self
    }

    /// IPv4 or IPv6 after the addresses; a mixed pair becomes IPv6 with the IPv4 address mapped.
    pub fn ip(self, src: IpAddr, dst: IpAddr) -> Self {
        match (src, dst) {
            (IpAddr::V4(src), IpAddr::V4(dst)) => self.ipv4(src, dst),
            _ => self.ipv6(ipv6_of(src), ipv6_of(dst)),
        }
    }

    /// IPv4 TTL or IPv6 hop limit.
    pub fn ttl(mut self, ttl: u8) -> Self {
        self.ttl = ttl;
        self
    }

    /// IPv4 options, padded with end-of-options bytes to a multiple of 4 and cut to the 40 bytes
    /// the header length can express. Ignored for IPv6.
    pub fn ipv4_options(mut self, options: &[u8]) -> Self {
        self.ipv4_options = options[..options.len().min(IPV4_MAX_OPTIONS_LEN)].to_vec();
        self.ipv4_options
            .resize(self.ipv4_options.len().next_multiple_of(4), 0);
        self
    }

    /// Makes the IPv4 packet a fragment: `offset` in bytes, rounded down to a multiple of 8, and
    /// the more-fragments flag. IPv6 fragments use [`ExtHeader::Fragment`].
    pub fn fragment(mut self, offset: u16, more: bool) -> Self {
        self.ipv4_fragment = Some((offset, more));
        self
    }

    /// Appends an IPv6 extension header after those already added. Ignored for IPv4.
    pub fn ipv6_ext(mut self, header: ExtHeader) -> Self {
        self.ipv6_ext.push(header);
        self
    }

    pub fn tcp(mut self, sport: u16, dport: u16, flags: TcpFlags) -> Self {
        self.transport = Some(Transport::Tcp {
            sport,
            dport,
            flags,
        });
        self
    }

    /// Sequence number, acknowledgment number and window of the TCP header.
    pub fn tcp_numbers(mut self, seq: u32, ack: u32, window: u16) -> Self {
        self.tcp_numbers = Some((seq, ack, window));
        self
    }

    /// TCP options (at most 40 bytes), padded with end-of-list bytes to a multiple of 4.
    pub fn tcp_options(mut self, options: &[u8]) -> Self {
        self.tcp_options = options.to_vec();
        while self.tcp_options.len() % 4 != 0 {
            self.tcp_options.push(0);
        }
        self
    }

    /// An ICMP or ICMPv6 echo (request or reply, by `kind`) with its identifier and sequence.
    pub fn icmp_echo(mut self, kind: u8, id: u16, seq: u16) -> Self {
        let [a, b] = id.to_be_bytes();
        let [c, d] = seq.to_be_bytes();
        self.icmp_rest = [a, b, c, d];
        match self.network {
            Some(Network::V6 { .. }) => self.icmpv6(kind, 0),
            _ => self.icmp(kind, 0),
        }
    }

    pub fn udp(mut self, sport: u16, dport: u16) -> Self {
        self.transport = Some(Transport::Udp { sport, dport });
        self
    }

    pub fn icmp(mut self, kind: u8, code: u8) -> Self {
        self.transport = Some(Transport::Icmp { kind, code });
        self
    }

    pub fn icmpv6(mut self, kind: u8, code: u8) -> Self {
        self.transport = Some(Transport::Icmpv6 { kind, code });
        self
    }

    /// No transport header: the IP header announces `protocol` and the payload follows it.
    pub fn proto(mut self, protocol: u8) -> Self {
        self.transport = Some(Transport::Raw(protocol));
        self
    }

    pub fn payload(mut self, payload: &[u8]) -> Self {
        self.payload = payload.to_vec();
        self
    }

    pub fn build(&self) -> Vec<u8> {
        self.build_with_layout().0
    }

    pub fn build_with_layout(&self) -> (Vec<u8>, Layout) {
        let transport_header_len = match self.transport {
            Some(Transport::Tcp { .. }) => TCP_HEADER_LEN + self.tcp_options.len(),
            Some(Transport::Udp { .. }) => UDP_HEADER_LEN,
            Some(Transport::Icmp { .. } | Transport::Icmpv6 { .. }) => ICMP_HEADER_LEN,
            Some(Transport::Raw(_)) | None => 0,
        };
        let segment_len = transport_header_len + self.payload.len();
        let protocol = self.transport.map_or(IPPROTO_NONE, Transport::protocol);
        let mut frame = Vec::with_capacity(128 + self.payload.len());
        let mut layout = Layout::default();

        let ethertype = self.ethertype.unwrap_or(match self.network {
            Some(Network::V4 { .. }) => ETHERTYPE_IPV4,
            Some(Network::V6 { .. }) => ETHERTYPE_IPV6,
            None => ETHERTYPE_EXPERIMENTAL,
        });
        frame.extend(DST_MAC);
        frame.extend(SRC_MAC);
        for &(tpid, tci) in &self.tags {
            frame.extend(tpid.to_be_bytes());
            layout.vlan_tags.push(frame.len());
            frame.extend(tci.to_be_bytes());
        }
        frame.extend(ethertype.to_be_bytes());
        layout.l3 = frame.len();

        match self.network {
            Some(Network::V4 { src, dst }) => {
                self.write_ipv4(src, dst, protocol, segment_len, &mut frame)
            }
            Some(Network::V6 { src, dst }) => {
                self.write_ipv6(src, dst, protocol, segment_len, &mut frame, &mut layout)
            }
            None => {}
        }

        layout.l4 = frame.len();
        if let Some(transport) = self.transport {
            transport.write(segment_len, &mut frame);
            let l4 = layout.l4;
            match transport {
                Transport::Tcp { .. } => {
                    if let Some((seq, ack, window)) = self.tcp_numbers {
                        frame[l4 + 4..l4 + 8].copy_from_slice(&seq.to_be_bytes());
                        frame[l4 + 8..l4 + 12].copy_from_slice(&ack.to_be_bytes());
                        frame[l4 + 14..l4 + 16].copy_from_slice(&window.to_be_bytes());
                    }
                    frame[l4 + 12] = (((TCP_HEADER_LEN + self.tcp_options.len()) / 4) as u8) << 4;
                    frame.extend(&self.tcp_options);
                }
                Transport::Icmp { .. } | Transport::Icmpv6 { .. } => {
                    frame[l4 + 4..l4 + 8].copy_from_slice(&self.icmp_rest);
                }
                _ => {}
            }
        }
        layout.payload = frame.len();
        frame.extend(&self.payload);
        layout.len = frame.len();

        if let Some(transport) = self.transport {
            self.fill_transport_checksum(transport, &mut frame, layout.l4);
        }
        (frame, layout)
    }

    fn write_ipv4(
        &self,
        src: Ipv4Addr,
        dst: Ipv4Addr,
        protocol: u8,
        segment_len: usize,
        frame: &mut Vec<u8>,
    ) {
        const MORE_FRAGMENTS: u16 = 0x2000;
        let start = frame.len();
        let header_len = IPV4_HEADER_LEN + self.ipv4_options.len();
        let fragment = self.ipv4_fragment.map_or(0, |(offset, more)| {
            (offset / 8) | if more { MORE_FRAGMENTS } else { 0 }
        });
        frame.extend([0x40 | (header_len / 4) as u8, 0]);
        frame.extend(saturating_u16(header_len + segment_len).to_be_bytes());
        frame.extend(IP_IDENTIFICATION.to_be_bytes());
        frame.extend(fragment.to_be_bytes());
        frame.extend([self.ttl, protocol, 0, 0]);
        frame.extend(src.octets());
        frame.extend(dst.octets());
        frame.extend(&self.ipv4_options);
        let checksum = !ones_complement_sum(&frame[start..]);
        frame[start + 10..start + 12].copy_from_slice(&checksum.to_be_bytes());
    }

    fn write_ipv6(
        &self,
        src: Ipv6Addr,
        dst: Ipv6Addr,
        protocol: u8,
        segment_len: usize,
        frame: &mut Vec<u8>,
        layout: &mut Layout,
    ) {
        let next_headers: Vec<u8> = self
            .ipv6_ext
            .iter()
            .map(|ext| ext.protocol())
            .chain([protocol])
            .collect();
        let payload_len = self.ipv6_ext.len() * IPV6_EXT_HEADER_LEN + segment_len;
        frame.extend([0x60, 0, 0, 0]);
        frame.extend(saturating_u16(payload_len).to_be_bytes());
        frame.extend([next_headers[0], self.ttl]);
        frame.extend(src.octets());
        frame.extend(dst.octets());
        for (ext, &next_header) in self.ipv6_ext.iter().zip(&next_headers[1..]) {
            layout.ext_headers.push(frame.len());
            ext.write(next_header, frame);
        }
    }

    fn fill_transport_checksum(&self, transport: Transport, frame: &mut [u8], l4: usize) {
        let Some(checksum_at) = transport.checksum_at() else {
            return;
        };
        let segment = &frame[l4..];
        let pseudo = match (transport, self.network) {
            (Transport::Icmp { .. }, _) => Vec::new(),
            (_, Some(network)) => {
                let (src, dst) = network.addresses();
                pseudo_header(src, dst, transport.protocol(), segment.len())
            }
            // Without addresses there is no pseudo-header to sum: leave the checksum zero.
            (_, None) => return,
        };
        let mut checksum = !ones_complement_sum(&[pseudo.as_slice(), segment].concat());
        // A zero UDP checksum means "none"; its one's-complement twin says the same sum.
        if checksum == 0 && matches!(transport, Transport::Udp { .. }) {
            checksum = 0xffff;
        }
        frame[l4 + checksum_at..l4 + checksum_at + 2].copy_from_slice(&checksum.to_be_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SRC4: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
    const DST4: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 2);
    const SRC6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1);
    const DST6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 2);

    fn hex(s: &str) -> Vec<u8> {
        let digits: Vec<u8> = s.bytes().filter(u8::is_ascii_hexdigit).collect();
        digits
            .chunks(2)
            .map(|pair| u8::from_str_radix(std::str::from_utf8(pair).unwrap(), 16).unwrap())
            .collect()
    }

    #[test]
    fn udp_over_ipv4_matches_hand_computed_bytes() {
        let frame = PacketBuilder::new()
            .ipv4(SRC4, DST4)
            .udp(1234, 53)
            .payload(b"hello")
            .build();
        // IPv4 checksum: 4500+0021+0001+4011+c000+0201+c633+6402 = 0x27169, folded 0x716b,
        // inverted 0x8e94. UDP: pseudo-header c000 0201 c633 6402 0011 000d plus 04d2 0035 000d
        // and "hello" padded = 0x33539, folded 0x353c, inverted 0xcac3.
        let expected = hex("020000000002 020000000001 0800
             4500 0021 0001 0000 4011 8e94 c0000201 c6336402
             04d2 0035 000d cac3 68656c6c6f");
        assert_eq!(frame, expected);
        assert_eq!(ones_complement_sum(&frame[14..34]), 0xffff);
        let pseudo = pseudo_header(SRC4.into(), DST4.into(), IPPROTO_UDP, 13);
        assert_eq!(
            ones_complement_sum(&[&pseudo[..], &frame[34..]].concat()),
            0xffff
        );
    }

    #[test]
    fn icmp_echo_and_tcp_syn_match_hand_computed_bytes() {
        let echo = PacketBuilder::new().ipv4(SRC4, DST4).icmp(8, 0).build();
        // ICMP sums only its own message: 0x0800, inverted 0xf7ff.
        assert_eq!(&echo[34..], hex("0800 f7ff 0000 0000"));

        let syn = PacketBuilder::new()
            .ipv4(SRC4, DST4)
            .ttl(1)
            .tcp(1234, 80, TcpFlags::SYN)
            .build();
        // IPv4: 4500+0028+0001+0106+c000+0201+c633+6402 = 0x23265, folded 0x3267, inverted 0xcd98.
        // TCP: pseudo c000+0201+c633+6402+0006+0014 = 0x1ec50, header 04d2+0050+03e8+5002+ffff
        // = 0x1590b, total 0x3455b, folded 0x455e, inverted 0xbaa1.
        let expected = hex("4500 0028 0001 0000 0106 cd98 c0000201 c6336402
             04d2 0050 000003e8 00000000 5002 ffff baa1 0000");
        assert_eq!(&syn[14..], expected);
    }

    /// Checks every length, next-header chain and checksum of a built frame against its layout,
    /// and that the layout's headers tile the frame.
    fn verify(frame: &[u8], layout: &Layout) {
        let headers = layout.headers();
        assert_eq!(headers.first().map(|(_, r)| r.start), Some(0));
        assert_eq!(headers.last().map(|(_, r)| r.end), Some(frame.len()));
        for pair in headers.windows(2) {
            assert_eq!(pair[0].1.end, pair[1].1.start, "{headers:?}");
        }
        for (header, range) in &headers {
            assert!(range
                .clone()
                .all(|at| layout.header_at(at) == Some(*header)));
        }
        assert_eq!(layout.header_at(frame.len()), None);
        assert_eq!(layout.len, frame.len());
        let be16 = |at: usize| u16::from_be_bytes([frame[at], frame[at + 1]]);

        assert_eq!(
            layout.vlan_tags.first().map_or(layout.l3, |&t| t),
            ETHERNET_HEADER_LEN
        );
        for (i, &tag) in layout.vlan_tags.iter().enumerate() {
            assert!([ETHERTYPE_VLAN, ETHERTYPE_QINQ].contains(&be16(tag - 2)));
            let end = layout.vlan_tags.get(i + 1).copied().unwrap_or(layout.l3);
            assert_eq!(end - tag, VLAN_TAG_LEN);
        }

        let (protocol, src, dst) = match be16(layout.l3 - 2) {
            ETHERTYPE_IPV4 => {
                let ip = &frame[layout.l3..];
                let header_len = usize::from(ip[0] & 0x0f) * 4;
                assert_eq!(ip[0] >> 4, 4);
                assert_eq!(layout.l3 + header_len, layout.l4);
                assert_eq!(usize::from(be16(layout.l3 + 2)), frame.len() - layout.l3);
                assert_eq!(ones_complement_sum(&ip[..header_len]), 0xffff);
                let src = Ipv4Addr::new(ip[12], ip[13], ip[14], ip[15]);
                let dst = Ipv4Addr::new(ip[16], ip[17], ip[18], ip[19]);
                (ip[9], IpAddr::from(src), IpAddr::from(dst))
            }
            ETHERTYPE_IPV6 => {
                let ip = &frame[layout.l3..];
                assert_eq!(ip[0] >> 4, 6);
                let payload_len = frame.len() - layout.l3 - IPV6_HEADER_LEN;
                assert_eq!(usize::from(be16(layout.l3 + 4)), payload_len);
                assert_eq!(
                    layout.ext_headers.first().map_or(layout.l4, |&e| e),
                    layout.l3 + 40
                );
                let mut next_header = ip[6];
                for (i, &ext) in layout.ext_headers.iter().enumerate() {
                    assert!([0, 43, 44, 60].contains(&next_header));
                    let end = layout.ext_headers.get(i + 1).copied().unwrap_or(layout.l4);
                    assert_eq!(end - ext, IPV6_EXT_HEADER_LEN);
                    next_header = frame[ext];
                }
                let src: [u8; 16] = ip[8..24].try_into().unwrap();
                let dst: [u8; 16] = ip[24..40].try_into().unwrap();
                (next_header, IpAddr::from(src), IpAddr::from(dst))
            }
            _ => {
                // Nothing names the transport protocol of a frame without IP.
                assert_eq!((layout.l3, layout.ext_headers.len()), (layout.l4, 0));
                return;
            }
        };

        let segment = &frame[layout.l4..];
        let header_len = layout.payload - layout.l4;
        match protocol {
            IPPROTO_TCP => {
                assert_eq!(header_len, TCP_HEADER_LEN);
                assert_eq!(usize::from(segment[12] >> 4) * 4, TCP_HEADER_LEN);
            }
            IPPROTO_UDP => {
                assert_eq!(header_len, UDP_HEADER_LEN);
                assert_eq!(usize::from(be16(layout.l4 + 4)), segment.len());
            }
            IPPROTO_ICMP | IPPROTO_ICMPV6 => assert_eq!(header_len, ICMP_HEADER_LEN),
            _ => assert_eq!(header_len, 0),
        }
        match protocol {
            IPPROTO_ICMP => assert_eq!(ones_complement_sum(segment), 0xffff),
            IPPROTO_TCP | IPPROTO_UDP | IPPROTO_ICMPV6 => {
                let pseudo = pseudo_header(src, dst, protocol, segment.len());
                assert_eq!(
                    ones_complement_sum(&[&pseudo[..], segment].concat()),
                    0xffff
                );
            }
            _ => {}
        }
    }

    fn variants() -> Vec<PacketBuilder> {
        let l2 = [
            PacketBuilder::new(),
            PacketBuilder::new().vlan(100),
            PacketBuilder::new().vlan(0x2fff).vlan(7),
            PacketBuilder::new().qinq(10, 20),
        ];
        let l3: [fn(PacketBuilder) -> PacketBuilder; 6] = [
            |b| b,
            |b| b.ipv4(SRC4, DST4),
            |b| b.ipv4(SRC4, DST4).ipv4_options(&[1, 1, 1, 1, 7, 3]).ttl(3),
            |b| b.ipv4(SRC4, DST4).fragment(1480, true),
            |b| b.ipv6(SRC6, DST6),
            |b| {
                b.ipv6(SRC6, DST6)
                    .ipv6_ext(ExtHeader::HopByHop)
                    .ipv6_ext(ExtHeader::Routing)
                    .ipv6_ext(ExtHeader::Fragment {
                        offset: 0,
                        more: true,
                    })
                    .ipv6_ext(ExtHeader::DestOpts)
            },
        ];
        let l4: [fn(PacketBuilder) -> PacketBuilder; 7] = [
            |b| b,
            |b| b.tcp(40000, 443, TcpFlags::SYN | TcpFlags::ACK),
            |b| b.udp(5353, 5353),
            |b| b.icmp(3, 1),
            |b| b.icmpv6(128, 0),
            |b| b.proto(47),
            |b| b.udp(0, 0).payload(&[0xff; 3]),
        ];
        let mut all = Vec::new();
        for base in &l2 {
            for with_l3 in l3 {
                for with_l4 in l4 {
                    all.push(with_l4(with_l3(base.clone())));
                    all.push(with_l4(with_l3(base.clone())).payload(b"odd length payload!"));
                }
            }
        }
        all
    }

    #[test]
    fn every_variant_has_consistent_layout_lengths_and_checksums() {
        for builder in variants() {
            let (frame, layout) = builder.build_with_layout();
            verify(&frame, &layout);
            assert_eq!(builder.build(), frame);
        }
    }

    #[test]
    fn vlan_tags_and_layout_offsets() {
        let (frame, layout) = PacketBuilder::new()
            .qinq(0x0064, 0x2005)
            .ipv6(SRC6, DST6)
            .ipv6_ext(ExtHeader::HopByHop)
            .ipv6_ext(ExtHeader::DestOpts)
            .tcp(1, 2, TcpFlags::RST)
            .payload(b"x")
            .build_with_layout();
        assert_eq!(&frame[12..22], hex("88a8 0064 8100 2005 86dd"));
        assert_eq!(
            layout,
            Layout {
                vlan_tags: vec![14, 18],
                l3: 22,
                ext_headers: vec![62, 70],
                l4: 78,
                payload: 98,
                len: 99,
            }
        );
        assert_eq!(
            layout.headers(),
            vec![
                (Header::Ethernet, 0..14),
                (Header::VlanTag(0), 14..18),
                (Header::VlanTag(1), 18..22),
                (Header::Network, 22..62),
                (Header::Extension(0), 62..70),
                (Header::Extension(1), 70..78),
                (Header::Transport, 78..98),
                (Header::Payload, 98..99),
            ]
        );
        assert_eq!(&frame[62..78], hex("3c00 0104 00000000 0600 0104 00000000"));
        assert_eq!(frame[22 + 6], IPPROTO_HOPOPTS);
    }

    #[test]
    fn fragments() {
        let v4 = PacketBuilder::new()
            .ipv4(SRC4, DST4)
            .fragment(1483, true)
            .proto(IPPROTO_UDP)
            .build();
        // 1483 rounds down to 1480 bytes = 185 units of 8, plus more-fragments.
        assert_eq!(&v4[20..22], hex("20b9"));
        let last = PacketBuilder::new()
            .ipv4(SRC4, DST4)
            .fragment(8, false)
            .build();
        assert_eq!(&last[20..22], hex("0001"));

        let (v6, layout) = PacketBuilder::new()
            .ipv6(SRC6, DST6)
            .ipv6_ext(ExtHeader::Fragment {
                offset: 1480,
                more: false,
            })
            .payload(b"rest")
            .build_with_layout();
        assert_eq!(
            &v6[layout.ext_headers[0]..layout.l4],
            hex("3b00 05c8 00000001")
        );
        assert_eq!(v6[layout.l3 + 6], IPPROTO_FRAGMENT);
    }

    #[test]
    fn options_are_padded_and_capped() {
        let (frame, layout) = PacketBuilder::new()
            .ipv4(SRC4, DST4)
            .ipv4_options(&[7, 3, 4])
            .build_with_layout();
        assert_eq!(frame[14], 0x46);
        assert_eq!(&frame[34..38], [7, 3, 4, 0]);
        assert_eq!(layout.l4 - layout.l3, 24);

        let capped = PacketBuilder::new()
            .ipv4(SRC4, DST4)
            .ipv4_options(&[1; 60])
            .build();
        assert_eq!(capped[14], 0x4f);
    }

    #[test]
    fn frames_without_ip_and_overrides() {
        let (frame, layout) = PacketBuilder::new().payload(b"arp?").build_with_layout();
        assert_eq!(&frame[12..14], ETHERTYPE_EXPERIMENTAL.to_be_bytes());
        assert_eq!(
            (layout.l3, layout.l4, layout.payload, layout.len),
            (14, 14, 14, 18)
        );
        assert_eq!(layout.header_at(13), Some(Header::Ethernet));
        assert_eq!(layout.header_at(14), Some(Header::Payload));

        let mislabelled = PacketBuilder::new()
            .ethertype(ETHERTYPE_IPV6)
            .ipv4(SRC4, DST4)
            .build();
        assert_eq!(&mislabelled[12..14], ETHERTYPE_IPV6.to_be_bytes());

        let mixed = PacketBuilder::new().ip(SRC4.into(), DST6.into()).build();
        assert_eq!(&mixed[12..14], ETHERTYPE_IPV6.to_be_bytes());
        assert_eq!(&mixed[22..38], SRC4.to_ipv6_mapped().octets());
        let v4 = PacketBuilder::new().ip(SRC4.into(), DST4.into()).build();
        assert_eq!(v4, PacketBuilder::new().ipv4(SRC4, DST4).build());
    }

    #[test]
    fn tcp_flags_combine() {
        let all = [
            TcpFlags::FIN,
            TcpFlags::SYN,
            TcpFlags::RST,
            TcpFlags::PSH,
            TcpFlags::ACK,
            TcpFlags::URG,
            TcpFlags::ECE,
            TcpFlags::CWR,
        ];
        let mut combined = TcpFlags::default();
        for flag in all {
            combined |= flag;
        }
        assert_eq!(combined.bits(), 0xff);
        assert!((TcpFlags::SYN | TcpFlags::ACK).contains(TcpFlags::ACK));
        assert!(!TcpFlags::SYN.contains(TcpFlags::ACK));
    }
}
