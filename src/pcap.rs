//! Packet captures: classic pcap (either byte order, microsecond or nanosecond timestamps) and
//! pcapng, read whole into memory, and conversion of the usual link types to the Ethernet II
//! frames an XDP program sees.
//!
//! The reader never trusts a length field: a record is bounded by [`MAX_CAPLEN`] and by the bytes
//! left in the file, and a capture that ends mid-record or holds a corrupt record keeps the
//! packets read before it ([`Capture::truncated`] says why it stopped).

use std::path::{Path, PathBuf};

use crate::packet::{ETHERNET_HEADER_LEN, ETHERTYPE_IPV4, ETHERTYPE_IPV6};

/// Largest captured length accepted for one packet. Real link types stay far below it (262144 is
/// libpcap's own ceiling), so a record claiming more is corrupt.
pub const MAX_CAPLEN: usize = 256 * 1024;

pub const LINKTYPE_NULL: u32 = 0;
pub const LINKTYPE_ETHERNET: u32 = 1;
/// DLT_RAW as stored by captures written on most BSDs and old libpcap versions.
pub const LINKTYPE_RAW_BSD: u32 = 12;
/// DLT_RAW as stored by captures written on OpenBSD.
pub const LINKTYPE_RAW_OPENBSD: u32 = 14;
pub const LINKTYPE_RAW: u32 = 101;
pub const LINKTYPE_LOOP: u32 = 108;
pub const LINKTYPE_LINUX_SLL: u32 = 113;
pub const LINKTYPE_IPV4: u32 = 228;
pub const LINKTYPE_IPV6: u32 = 229;
pub const LINKTYPE_LINUX_SLL2: u32 = 276;

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Capture {
    pub packets: Vec<Packet>,
    /// Why reading stopped before the end of the file (a record cut short or corrupt).
    pub truncated: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Packet {
    /// Position in the capture, from 0 (Wireshark's frame number minus one).
    pub index: usize,
    /// Since the Unix epoch; 0 for pcapng Simple Packet Blocks, which carry none.
    pub timestamp_ns: u64,
    /// LINKTYPE_* of the interface the packet was captured on.
    pub link_type: u32,
    /// At most the snapshot length the capture declares, as libpcap reads it: fuzzed captures
    /// hold records longer than that.
    pub data: Vec<u8>,
    /// Length on the wire; larger than `data.len()` when the capture cut the packet short.
    pub orig_len: u32,
}

#[derive(Debug, thiserror::Error)]
pub enum PcapError {
    #[error("cannot read {}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("not a pcap or pcapng file (only {len} bytes)")]
    TooShort { len: usize },
    /// `magic` holds the first four bytes in file order.
    #[error("not a pcap or pcapng file (magic 0x{magic:08x})")]
    UnknownMagic { magic: u32 },
    #[error("corrupt {format} file header: {reason}")]
    BadHeader {
        format: &'static str,
        reason: String,
    },
}

pub fn read_file(path: &Path) -> Result<Capture, PcapError> {
    let bytes = std::fs::read(path).map_err(|source| PcapError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    parse(&bytes)
}

pub fn parse(bytes: &[u8]) -> Result<Capture, PcapError> {
    let magic = field::<4>(bytes, 0).ok_or(PcapError::TooShort { len: bytes.len() })?;
    match magic {
        [0xa1, 0xb2, 0xc3, 0xd4] => parse_classic(bytes, ByteOrder::Big, NS_PER_US),
        [0xd4, 0xc3, 0xb2, 0xa1] => parse_classic(bytes, ByteOrder::Little, NS_PER_US),
        [0xa1, 0xb2, 0x3c, 0x4d] => parse_classic(bytes, ByteOrder::Big, 1),
        [0x4d, 0x3c, 0xb2, 0xa1] => parse_classic(bytes, ByteOrder::Little, 1),
        [0x0a, 0x0d, 0x0d, 0x0a] => parse_pcapng(bytes),
        _ => Err(PcapError::UnknownMagic {
            magic: u32::from_be_bytes(magic),
        }),
    }
}

const NS_PER_US: u64 = 1_000;
const NS_PER_SEC: u64 = 1_000_000_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ByteOrder {
    Little,
    Big,
}

impl ByteOrder {
    fn u16(self, bytes: [u8; 2]) -> u16 {
        match self {
            ByteOrder::Little => u16::from_le_bytes(bytes),
            ByteOrder::Big => u16::from_be_bytes(bytes),
        }
    }

    fn u32(self, bytes: [u8; 4]) -> u32 {
        match self {
            ByteOrder::Little => u32::from_le_bytes(bytes),
            ByteOrder::Big => u32::from_be_bytes(bytes),
        }
    }
}

fn field<const N: usize>(bytes: &[u8], at: usize) -> Option<[u8; N]> {
    bytes.get(at..at.checked_add(N)?)?.try_into().ok()
}

/// A header or block body in its file's byte order. Callers check its length first, so a read
/// past the end comes back as 0 instead of failing.
struct Fields<'a> {
    bytes: &'a [u8],
    order: ByteOrder,
}

impl Fields<'_> {
    fn u16(&self, at: usize) -> u16 {
        field(self.bytes, at).map_or(0, |b| self.order.u16(b))
    }

    fn u32(&self, at: usize) -> u32 {
        field(self.bytes, at).map_or(0, |b| self.order.u32(b))
    }
}

/// Data kept of each packet: like libpcap, no more than the snapshot length the capture declares,
/// even when a (fuzzed) record holds more.
fn snapshot_len(snaplen: u32) -> usize {
    match snaplen as usize {
        0 => MAX_CAPLEN,
        len => len.min(MAX_CAPLEN),
    }
}

fn check_caplen(caplen: usize) -> Result<(), String> {
    if caplen > MAX_CAPLEN {
        return Err(format!(
            "captured length {caplen} exceeds the {MAX_CAPLEN}-byte limit"
        ));
    }
    Ok(())
}

const CLASSIC_HEADER_LEN: usize = 24;
const CLASSIC_RECORD_HEADER_LEN: usize = 16;

fn parse_classic(bytes: &[u8], order: ByteOrder, ns_per_tick: u64) -> Result<Capture, PcapError> {
    if bytes.len() < CLASSIC_HEADER_LEN {
        return Err(PcapError::BadHeader {
            format: "pcap",
            reason: format!(
                "{} bytes, the file header alone takes {CLASSIC_HEADER_LEN}",
                bytes.len()
            ),
        });
    }
    let header = Fields { bytes, order };
    let snapshot = snapshot_len(header.u32(16));
    // The upper 16 bits carry FCS information, not the link type.
    let link_type = header.u32(20) & 0xffff;

    let mut capture = Capture::default();
    let mut pos = CLASSIC_HEADER_LEN;
    while pos < bytes.len() {
        let index = capture.packets.len();
        match classic_record(&bytes[pos..], order) {
            Ok((record, len)) => {
                capture.packets.push(Packet {
                    index,
                    timestamp_ns: u64::from(record.seconds) * NS_PER_SEC
                        + u64::from(record.fraction) * ns_per_tick,
                    link_type,
                    data: record.data[..record.data.len().min(snapshot)].to_vec(),
                    orig_len: record.orig_len,
                });
                pos += len;
            }
            Err(reason) => {
                capture.truncated = Some(format!("packet {index} at byte {pos}: {reason}"));
                break;
            }
        }
    }
    Ok(capture)
}

struct ClassicRecord<'a> {
    seconds: u32,
    fraction: u32,
    orig_len: u32,
    data: &'a [u8],
}

/// Returns the record at the start of `rest` and the bytes it takes.
fn classic_record(rest: &[u8], order: ByteOrder) -> Result<(ClassicRecord<'_>, usize), String> {
    if rest.len() < CLASSIC_RECORD_HEADER_LEN {
        return Err(format!(
            "ends mid-record header ({} of {CLASSIC_RECORD_HEADER_LEN} bytes)",
            rest.len()
        ));
    }
    let header = Fields { bytes: rest, order };
    let caplen = header.u32(8) as usize;
    check_caplen(caplen)?;
    let end = CLASSIC_RECORD_HEADER_LEN + caplen;
    let data = rest.get(CLASSIC_RECORD_HEADER_LEN..end).ok_or_else(|| {
        format!(
            "ends mid-record ({} of {caplen} captured bytes)",
            rest.len() - CLASSIC_RECORD_HEADER_LEN
        )
    })?;
    let record = ClassicRecord {
        seconds: header.u32(0),
        fraction: header.u32(4),
        orig_len: header.u32(12),
        data,
    };
    Ok((record, end))
}

const BLOCK_SECTION_HEADER: u32 = 0x0a0d_0d0a;
const BLOCK_INTERFACE_DESCRIPTION: u32 = 1;
const BLOCK_PACKET_OBSOLETE: u32 = 2;
const BLOCK_SIMPLE_PACKET: u32 = 3;
const BLOCK_ENHANCED_PACKET: u32 = 6;
const BYTE_ORDER_MAGIC: u32 = 0x1a2b_3c4d;
/// Block type, total length and the trailing copy of the total length.
const BLOCK_OVERHEAD: usize = 12;
const SECTION_HEADER_BODY_LEN: usize = 16;
const OPTION_END: u16 = 0;
const OPTION_IF_TSRESOL: u16 = 9;

struct Block<'a> {
    kind: u32,
    body: &'a [u8],
    len: usize,
}

struct Interface {
    link_type: u32,
    snapshot: usize,
    ticks_per_second: u128,
}

impl Interface {
    fn timestamp_ns(&self, high: u32, low: u32) -> u64 {
        let ticks = u128::from(high) << 32 | u128::from(low);
        let ns = ticks * u128::from(NS_PER_SEC) / self.ticks_per_second;
        u64::try_from(ns).unwrap_or(u64::MAX)
    }
}

/// Parsing state of one pcapng section: interface ids restart at 0 with every section.
struct Section {
    order: ByteOrder,
    interfaces: Vec<Interface>,
}

fn parse_pcapng(bytes: &[u8]) -> Result<Capture, PcapError> {
    let mut section = Section {
        order: ByteOrder::Little,
        interfaces: Vec::new(),
    };
    let first = read_block(bytes, &mut section.order)
        .and_then(|block| start_section(&block, &mut section).map(|()| block.len))
        .map_err(|reason| PcapError::BadHeader {
            format: "pcapng",
            reason,
        })?;

    let mut capture = Capture::default();
    let mut pos = first;
    while pos < bytes.len() {
        let index = capture.packets.len();
        let result = read_block(&bytes[pos..], &mut section.order).and_then(|block| {
            apply_block(&block, &mut section, &mut capture.packets).map(|()| block.len)
        });
        match result {
            Ok(len) => pos += len,
            Err(reason) => {
                capture.truncated = Some(format!(
                    "block at byte {pos}, after {index} packets: {reason}"
                ));
                break;
            }
        }
    }
    Ok(capture)
}

/// Reads the block at the start of `rest`. A section header block sets `order` for itself and
/// every block after it.
fn read_block<'a>(rest: &'a [u8], order: &mut ByteOrder) -> Result<Block<'a>, String> {
    let head = |at| field::<4>(rest, at).ok_or_else(|| ends_mid_block_header(rest.len()));
    let kind_bytes = head(0)?;
    // The section header's type reads the same in both byte orders; its byte-order magic decides.
    if u32::from_be_bytes(kind_bytes) == BLOCK_SECTION_HEADER {
        let magic = head(8)?;
        *order = if u32::from_le_bytes(magic) == BYTE_ORDER_MAGIC {
            ByteOrder::Little
        } else if u32::from_be_bytes(magic) == BYTE_ORDER_MAGIC {
            ByteOrder::Big
        } else {
            return Err(format!(
                "section header has byte-order magic 0x{:08x}, expected 0x{BYTE_ORDER_MAGIC:08x}",
                u32::from_be_bytes(magic)
            ));
        };
    }
    let kind = order.u32(kind_bytes);
    let len = order.u32(head(4)?) as usize;
    if len < BLOCK_OVERHEAD || len % 4 != 0 {
        return Err(format!("block type {kind} has invalid length {len}"));
    }
    if len > rest.len() {
        return Err(format!(
            "ends mid-block (block type {kind} of {len} bytes, {} left)",
            rest.len()
        ));
    }
    let trailer = order.u32(head(len - 4)?) as usize;
    if trailer != len {
        return Err(format!(
            "block type {kind} has length {len} but its trailer says {trailer}"
        ));
    }
    Ok(Block {
        kind,
        body: &rest[8..len - 4],
        len,
    })
}

fn ends_mid_block_header(left: usize) -> String {
    format!("ends mid-block header ({left} bytes left)")
}

fn apply_block(
    block: &Block,
    section: &mut Section,
    packets: &mut Vec<Packet>,
) -> Result<(), String> {
    let body = Fields {
        bytes: block.body,
        order: section.order,
    };
    let index = packets.len();
    match block.kind {
        BLOCK_SECTION_HEADER => start_section(block, section),
        BLOCK_INTERFACE_DESCRIPTION => {
            let interface = interface_description(&body)
                .map_err(|e| format!("interface {}: {e}", section.interfaces.len()))?;
            section.interfaces.push(interface);
            Ok(())
        }
        BLOCK_ENHANCED_PACKET => {
            let packet = timestamped_packet(&body, body.u32(0), &section.interfaces, index)?;
            packets.push(packet);
            Ok(())
        }
        BLOCK_PACKET_OBSOLETE => {
            let interface_id = u32::from(body.u16(0));
            let packet = timestamped_packet(&body, interface_id, &section.interfaces, index)?;
            packets.push(packet);
            Ok(())
        }
        BLOCK_SIMPLE_PACKET => {
            packets.push(simple_packet(&body, &section.interfaces, index)?);
            Ok(())
        }
        _ => Ok(()),
    }
}

fn start_section(block: &Block, section: &mut Section) -> Result<(), String> {
    if block.kind != BLOCK_SECTION_HEADER {
        return Err(format!(
            "first block has type {}, not a section header",
            block.kind
        ));
    }
    if block.body.len() < SECTION_HEADER_BODY_LEN {
        return Err(format!("section header of {} bytes", block.len));
    }
    let body = Fields {
        bytes: block.body,
        order: section.order,
    };
    let (major, minor) = (body.u16(4), body.u16(6));
    if major != 1 {
        return Err(format!("unsupported pcapng version {major}.{minor}"));
    }
    section.interfaces.clear();
    Ok(())
}

fn interface_description(body: &Fields) -> Result<Interface, String> {
    const FIXED_LEN: usize = 8;
    if body.bytes.len() < FIXED_LEN {
        return Err(format!("description body of {} bytes", body.bytes.len()));
    }
    let mut interface = Interface {
        link_type: u32::from(body.u16(0)),
        snapshot: snapshot_len(body.u32(4)),
        ticks_per_second: 1_000_000,
    };
    let mut pos = FIXED_LEN;
    while pos + 4 <= body.bytes.len() {
        let (code, len) = (body.u16(pos), usize::from(body.u16(pos + 2)));
        if code == OPTION_END {
            break;
        }
        let value = body
            .bytes
            .get(pos + 4..pos + 4 + len)
            .ok_or_else(|| format!("option {code} runs past the block"))?;
        if let (OPTION_IF_TSRESOL, [resolution]) = (code, value) {
            interface.ticks_per_second = ticks_per_second(*resolution)
                .ok_or_else(|| format!("timestamp resolution 0x{resolution:02x} out of range"))?;
        }
        pos += 4 + len.next_multiple_of(4);
    }
    Ok(interface)
}

/// if_tsresol: the high bit selects a power of two instead of a power of ten.
fn ticks_per_second(resolution: u8) -> Option<u128> {
    let exponent = u32::from(resolution & 0x7f);
    let base: u128 = if resolution & 0x80 != 0 { 2 } else { 10 };
    base.checked_pow(exponent)
}

fn find_interface(interfaces: &[Interface], id: u32) -> Result<&Interface, String> {
    interfaces
        .get(id as usize)
        .ok_or_else(|| format!("packet on undeclared interface {id}"))
}

/// Enhanced and obsolete packet blocks share this layout after the interface id: timestamp
/// high and low words, captured length, original length, data.
fn timestamped_packet(
    body: &Fields,
    interface_id: u32,
    interfaces: &[Interface],
    index: usize,
) -> Result<Packet, String> {
    const DATA_AT: usize = 20;
    if body.bytes.len() < DATA_AT {
        return Err(format!("packet block body of {} bytes", body.bytes.len()));
    }
    let interface = find_interface(interfaces, interface_id)?;
    let caplen = body.u32(12) as usize;
    check_caplen(caplen)?;
    let data = body
        .bytes
        .get(DATA_AT..DATA_AT + caplen)
        .ok_or_else(|| format!("captured length {caplen} runs past the block"))?;
    let data = &data[..caplen.min(interface.snapshot)];
    Ok(Packet {
        index,
        timestamp_ns: interface.timestamp_ns(body.u32(4), body.u32(8)),
        link_type: interface.link_type,
        data: data.to_vec(),
        orig_len: body.u32(16),
    })
}

/// A simple packet block has no captured length: the data is the original length, cut to the
/// interface's snapshot length and to the block.
fn simple_packet(body: &Fields, interfaces: &[Interface], index: usize) -> Result<Packet, String> {
    const DATA_AT: usize = 4;
    if body.bytes.len() < DATA_AT {
        return Err(format!(
            "simple packet block body of {} bytes",
            body.bytes.len()
        ));
    }
    let interface = find_interface(interfaces, 0)?;
    let orig_len = body.u32(0);
    let caplen = (orig_len as usize)
        .min(body.bytes.len() - DATA_AT)
        .min(interface.snapshot);
    Ok(Packet {
        index,
        timestamp_ns: 0,
        link_type: interface.link_type,
        data: body.bytes[DATA_AT..DATA_AT + caplen].to_vec(),
        orig_len,
    })
}

const LINUX_SLL_HEADER_LEN: usize = 16;
const LINUX_SLL2_HEADER_LEN: usize = 20;
/// Smallest Ethernet II type; smaller values are 802.3 lengths, and Linux cooked captures use
/// them for non-Ethernet protocols.
const MIN_ETHERTYPE: u16 = 0x0600;
const AF_INET: u32 = 2;
/// NetBSD/OpenBSD, FreeBSD/DragonFly, Darwin.
const AF_INET6_BSDS: [u32; 3] = [24, 28, 30];

/// Turns a packet captured on `link_type` into the Ethernet II frame an XDP program would see for
/// the same traffic. Headers of other link types are replaced by a 14-byte Ethernet header with
/// zero MAC addresses.
pub fn to_ethernet(link_type: u32, data: &[u8]) -> Result<Vec<u8>, String> {
    match link_type {
        LINKTYPE_ETHERNET => Ok(data.to_vec()),
        LINKTYPE_RAW | LINKTYPE_RAW_BSD | LINKTYPE_RAW_OPENBSD | LINKTYPE_IPV4 | LINKTYPE_IPV6 => {
            let ethertype = match data.first().map(|b| b >> 4) {
                Some(4) => ETHERTYPE_IPV4,
                Some(6) => ETHERTYPE_IPV6,
                Some(version) => return Err(format!("raw IP packet with IP version {version}")),
                None => return Err("empty raw IP packet".to_string()),
            };
            Ok(ethernet_frame(ethertype, data))
        }
        LINKTYPE_NULL | LINKTYPE_LOOP => {
            let family = field::<4>(data, 0).ok_or("truncated NULL/LOOP header")?;
            // NULL stores the family in the capturing host's byte order, LOOP in network order;
            // real families fit in the low byte whichever order it is.
            let family = match u32::from_be_bytes(family) {
                small @ 0..=0xffff => small,
                _ => u32::from_le_bytes(family),
            };
            let ethertype = match family {
                AF_INET => ETHERTYPE_IPV4,
                f if AF_INET6_BSDS.contains(&f) => ETHERTYPE_IPV6,
                f => {
                    return Err(format!(
                        "unsupported address family {f} in NULL/LOOP header"
                    ))
                }
            };
            Ok(ethernet_frame(ethertype, &data[4..]))
        }
        LINKTYPE_LINUX_SLL => cooked_to_ethernet(data, LINUX_SLL_HEADER_LEN, 14, "LINUX_SLL"),
        LINKTYPE_LINUX_SLL2 => cooked_to_ethernet(data, LINUX_SLL2_HEADER_LEN, 0, "LINUX_SLL2"),
        _ => match link_type_name(link_type) {
            "" => Err(format!("unsupported link type {link_type}")),
            name => Err(format!("unsupported link type {link_type} ({name})")),
        },
    }
}

fn cooked_to_ethernet(
    data: &[u8],
    header_len: usize,
    protocol_at: usize,
    name: &str,
) -> Result<Vec<u8>, String> {
    let payload = data.get(header_len..).ok_or_else(|| {
        format!(
            "truncated {name} header ({} of {header_len} bytes)",
            data.len()
        )
    })?;
    let protocol = u16::from_be_bytes([data[protocol_at], data[protocol_at + 1]]);
    if protocol < MIN_ETHERTYPE {
        return Err(format!(
            "{name} packet of non-Ethernet protocol 0x{protocol:04x}"
        ));
    }
    Ok(ethernet_frame(protocol, payload))
}

fn ethernet_frame(ethertype: u16, payload: &[u8]) -> Vec<u8> {
    let mut frame = Vec::with_capacity(ETHERNET_HEADER_LEN + payload.len());
    frame.extend_from_slice(&[0; 12]);
    frame.extend_from_slice(&ethertype.to_be_bytes());
    frame.extend_from_slice(payload);
    frame
}

/// The LINKTYPE_ name (without the prefix) of the common link types, "" for the others.
pub fn link_type_name(lt: u32) -> &'static str {
    const USER: [&str; 16] = [
        "USER0", "USER1", "USER2", "USER3", "USER4", "USER5", "USER6", "USER7", "USER8", "USER9",
        "USER10", "USER11", "USER12", "USER13", "USER14", "USER15",
    ];
    match lt {
        LINKTYPE_NULL => "NULL",
        LINKTYPE_ETHERNET => "ETHERNET",
        6 => "IEEE802_5",
        8 => "SLIP",
        9 => "PPP",
        10 => "FDDI",
        LINKTYPE_RAW | LINKTYPE_RAW_BSD | LINKTYPE_RAW_OPENBSD => "RAW",
        50 => "PPP_HDLC",
        51 => "PPP_ETHER",
        100 => "ATM_RFC1483",
        104 => "C_HDLC",
        105 => "IEEE802_11",
        106 => "ATM_CLIP",
        107 => "FRELAY",
        LINKTYPE_LOOP => "LOOP",
        LINKTYPE_LINUX_SLL => "LINUX_SLL",
        117 => "PFLOG",
        119 => "IEEE802_11_PRISM",
        123 => "SUNATM",
        127 => "IEEE802_11_RADIOTAP",
        129 => "ARCNET_LINUX",
        132 => "JUNIPER_ES",
        137 => "JUNIPER_ATM1",
        147..=162 => USER[(lt - 147) as usize],
        163 => "IEEE802_11_AVS",
        164 => "JUNIPER_MONITOR",
        178 => "JUNIPER_ETHER",
        182 => "MFR",
        187 => "BLUETOOTH_HCI_H4",
        189 => "USB_LINUX",
        192 => "PPI",
        195 => "IEEE802_15_4_WITHFCS",
        197 => "ERF",
        220 => "USB_LINUX_MMAPPED",
        226 => "IPNET",
        227 => "CAN_SOCKETCAN",
        LINKTYPE_IPV4 => "IPV4",
        LINKTYPE_IPV6 => "IPV6",
        231 => "DBUS",
        239 => "NFLOG",
        242 => "IPOIB",
        249 => "USBPCAP",
        253 => "NETLINK",
        258 => "PKTAP",
        271 => "VSOCK",
        LINKTYPE_LINUX_SLL2 => "LINUX_SLL2",
        281 => "DSA_TAG_BRCM",
        282 => "DSA_TAG_BRCM_PREPEND",
        284 => "DSA_TAG_DSA",
        285 => "DSA_TAG_EDSA",
        _ => "",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn u16_bytes(order: ByteOrder, v: u16) -> [u8; 2] {
        match order {
            ByteOrder::Little => v.to_le_bytes(),
            ByteOrder::Big => v.to_be_bytes(),
        }
    }

    fn u32_bytes(order: ByteOrder, v: u32) -> [u8; 4] {
        match order {
            ByteOrder::Little => v.to_le_bytes(),
            ByteOrder::Big => v.to_be_bytes(),
        }
    }

    fn classic_header(order: ByteOrder, nanosecond: bool, snaplen: u32, network: u32) -> Vec<u8> {
        let magic = if nanosecond { 0xa1b2_3c4d } else { 0xa1b2_c3d4 };
        let mut out = Vec::new();
        out.extend(u32_bytes(order, magic));
        out.extend(u16_bytes(order, 2));
        out.extend(u16_bytes(order, 4));
        out.extend([0; 8]);
        out.extend(u32_bytes(order, snaplen));
        out.extend(u32_bytes(order, network));
        out
    }

    fn classic_record(
        order: ByteOrder,
        sec: u32,
        frac: u32,
        data: &[u8],
        orig_len: u32,
    ) -> Vec<u8> {
        let mut out = Vec::new();
        for v in [sec, frac, data.len() as u32, orig_len] {
            out.extend(u32_bytes(order, v));
        }
        out.extend(data);
        out
    }

    #[test]
    fn classic_in_both_byte_orders_and_resolutions() {
        for order in [ByteOrder::Little, ByteOrder::Big] {
            for nanosecond in [false, true] {
                let mut file = classic_header(order, nanosecond, 65535, LINKTYPE_ETHERNET);
                file.extend(classic_record(order, 1_700_000_000, 250, b"first", 5));
                file.extend(classic_record(
                    order,
                    1_700_000_001,
                    999_999,
                    b"second!",
                    1500,
                ));
                let capture = parse(&file).unwrap();
                let ns_per_tick = if nanosecond { 1 } else { 1000 };
                assert_eq!(capture.truncated, None);
                assert_eq!(
                    capture.packets,
                    vec![
                        Packet {
                            index: 0,
                            timestamp_ns: 1_700_000_000 * NS_PER_SEC + 250 * ns_per_tick,
                            link_type: LINKTYPE_ETHERNET,
                            data: b"first".to_vec(),
                            orig_len: 5,
                        },
                        Packet {
                            index: 1,
                            timestamp_ns: 1_700_000_001 * NS_PER_SEC + 999_999 * ns_per_tick,
                            link_type: LINKTYPE_ETHERNET,
                            data: b"second!".to_vec(),
                            orig_len: 1500,
                        },
                    ],
                    "{order:?} nanosecond={nanosecond}"
                );
            }
        }
    }

    #[test]
    fn classic_link_type_drops_fcs_bits_and_data_is_cut_to_snaplen() {
        let order = ByteOrder::Little;
        let mut file = classic_header(order, false, 4, 0x1400_0000 | LINKTYPE_RAW);
        file.extend(classic_record(order, 0, 0, b"0123456789", 10));
        file.extend(classic_record(order, 0, 0, b"ab", 2));
        let capture = parse(&file).unwrap();
        assert_eq!(capture.truncated, None);
        let data: Vec<&[u8]> = capture.packets.iter().map(|p| p.data.as_slice()).collect();
        assert_eq!(data, [b"0123".as_slice(), b"ab"]);
        assert!(capture.packets.iter().all(|p| p.link_type == LINKTYPE_RAW));
    }

    #[test]
    fn classic_header_only_is_an_empty_capture() {
        let file = classic_header(ByteOrder::Big, false, 65535, LINKTYPE_ETHERNET);
        assert_eq!(parse(&file).unwrap(), Capture::default());
    }

    #[test]
    fn classic_cut_mid_record_keeps_earlier_packets() {
        let order = ByteOrder::Big;
        let mut file = classic_header(order, false, 65535, LINKTYPE_ETHERNET);
        file.extend(classic_record(order, 1, 2, b"kept", 4));
        let complete = file.len();
        file.extend(classic_record(order, 3, 4, b"cut short", 9));

        let mid_header = parse(&file[..complete + 7]).unwrap();
        assert_eq!(mid_header.packets.len(), 1);
        assert_eq!(
            mid_header.truncated.as_deref(),
            Some("packet 1 at byte 44: ends mid-record header (7 of 16 bytes)")
        );

        let mid_data = parse(&file[..file.len() - 1]).unwrap();
        assert_eq!(mid_data.packets.len(), 1);
        assert_eq!(
            mid_data.truncated.as_deref(),
            Some("packet 1 at byte 44: ends mid-record (8 of 9 captured bytes)")
        );
    }

    #[test]
    fn classic_absurd_caplen_is_corrupt_not_allocated() {
        let order = ByteOrder::Little;
        let mut file = classic_header(order, false, 0, LINKTYPE_ETHERNET);
        file.extend(classic_record(order, 0, 0, b"ok", 2));
        for v in [0, 0, 0xffff_fff0, 0xffff_fff0] {
            file.extend(u32_bytes(order, v));
        }
        let capture = parse(&file).unwrap();
        assert_eq!(capture.packets.len(), 1);
        let reason = capture.truncated.unwrap();
        assert!(
            reason.contains("captured length 4294967280 exceeds"),
            "{reason}"
        );
    }

    #[test]
    fn file_header_errors() {
        assert_eq!(
            parse(b"").unwrap_err().to_string(),
            "not a pcap or pcapng file (only 0 bytes)"
        );
        assert_eq!(
            parse(b"License text").unwrap_err().to_string(),
            "not a pcap or pcapng file (magic 0x4c696365)"
        );
        let header = classic_header(ByteOrder::Little, true, 65535, LINKTYPE_ETHERNET);
        assert_eq!(
            parse(&header[..20]).unwrap_err().to_string(),
            "corrupt pcap file header: 20 bytes, the file header alone takes 24"
        );
        let missing = read_file(Path::new("/nonexistent/capture.pcap")).unwrap_err();
        assert!(
            missing
                .to_string()
                .starts_with("cannot read /nonexistent/capture.pcap: "),
            "{missing}"
        );
    }

    fn padded(data: &[u8]) -> Vec<u8> {
        let mut out = data.to_vec();
        out.resize(data.len().next_multiple_of(4), 0);
        out
    }

    fn block(order: ByteOrder, kind: u32, body: &[u8]) -> Vec<u8> {
        let body = padded(body);
        let len = u32_bytes(order, (BLOCK_OVERHEAD + body.len()) as u32);
        [&u32_bytes(order, kind)[..], &len, &body, &len].concat()
    }

    fn section_header(order: ByteOrder) -> Vec<u8> {
        let body = [
            &u32_bytes(order, BYTE_ORDER_MAGIC)[..],
            &u16_bytes(order, 1),
            &u16_bytes(order, 0),
            &[0xff; 8],
        ]
        .concat();
        block(order, BLOCK_SECTION_HEADER, &body)
    }

    fn interface_block(
        order: ByteOrder,
        link_type: u16,
        snaplen: u32,
        tsresol: Option<u8>,
    ) -> Vec<u8> {
        let mut body = [
            &u16_bytes(order, link_type)[..],
            &[0, 0],
            &u32_bytes(order, snaplen),
        ]
        .concat();
        // An option before if_tsresol checks that options are walked, not just the first read.
        body.extend([&u16_bytes(order, 2)[..], &u16_bytes(order, 3), b"et0\0"].concat());
        if let Some(resolution) = tsresol {
            body.extend(
                [
                    &u16_bytes(order, OPTION_IF_TSRESOL)[..],
                    &u16_bytes(order, 1),
                ]
                .concat(),
            );
            body.extend(padded(&[resolution]));
        }
        body.extend([0; 4]);
        block(order, BLOCK_INTERFACE_DESCRIPTION, &body)
    }

    fn enhanced_packet(
        order: ByteOrder,
        interface: u32,
        ticks: u64,
        data: &[u8],
        orig_len: u32,
    ) -> Vec<u8> {
        let mut body = Vec::new();
        for v in [
            interface,
            (ticks >> 32) as u32,
            ticks as u32,
            data.len() as u32,
            orig_len,
        ] {
            body.extend(u32_bytes(order, v));
        }
        body.extend(padded(data));
        block(order, BLOCK_ENHANCED_PACKET, &body)
    }

    fn obsolete_packet(order: ByteOrder, interface: u16, ticks: u64, data: &[u8]) -> Vec<u8> {
        let mut body = [&u16_bytes(order, interface)[..], &u16_bytes(order, 0)].concat();
        for v in [
            (ticks >> 32) as u32,
            ticks as u32,
            data.len() as u32,
            data.len() as u32,
        ] {
            body.extend(u32_bytes(order, v));
        }
        body.extend(padded(data));
        block(order, BLOCK_PACKET_OBSOLETE, &body)
    }

    fn simple_packet(order: ByteOrder, data: &[u8], orig_len: u32) -> Vec<u8> {
        block(
            order,
            BLOCK_SIMPLE_PACKET,
            &[&u32_bytes(order, orig_len)[..], data].concat(),
        )
    }

    fn summary(capture: &Capture) -> Vec<(usize, u64, u32, &[u8], u32)> {
        capture
            .packets
            .iter()
            .map(|p| {
                (
                    p.index,
                    p.timestamp_ns,
                    p.link_type,
                    p.data.as_slice(),
                    p.orig_len,
                )
            })
            .collect()
    }

    #[test]
    fn pcapng_sections_interfaces_and_packet_blocks() {
        for (first, second) in [
            (ByteOrder::Little, ByteOrder::Big),
            (ByteOrder::Big, ByteOrder::Little),
        ] {
            let file = [
                section_header(first),
                interface_block(first, 1, 0, None),
                interface_block(first, 101, 0, Some(9)),
                interface_block(first, 113, 6, Some(0x8a)),
                enhanced_packet(first, 0, (1 << 32) + 5, b"usec", 60),
                enhanced_packet(first, 1, 123, b"nsec!", 5),
                // Unknown block types (here a name resolution block) are skipped.
                block(first, 4, &[0; 8]),
                enhanced_packet(first, 2, 512, b"2^-10 s", 7),
                obsolete_packet(first, 1, 7, b"old"),
                simple_packet(first, b"simple", 6),
                section_header(second),
                interface_block(second, 229, 3, None),
                simple_packet(second, b"snapped", 100),
                enhanced_packet(second, 0, 2, b"ipv6", 4),
            ]
            .concat();
            let capture = parse(&file).unwrap();
            assert_eq!(capture.truncated, None);
            assert_eq!(
                summary(&capture),
                [
                    (0, ((1 << 32) + 5) * 1000, 1, b"usec".as_slice(), 60),
                    (1, 123, 101, b"nsec!", 5),
                    (2, 500_000_000, 113, b"2^-10 ", 7),
                    (3, 7, 101, b"old", 3),
                    (4, 0, 1, b"simple", 6),
                    (5, 0, 229, b"sna", 100),
                    (6, 2000, 229, b"ipv", 4),
                ],
                "{first:?} then {second:?}"
            );
        }
    }

    fn pcapng_prefix() -> Vec<u8> {
        let order = ByteOrder::Little;
        [
            section_header(order),
            interface_block(order, 1, 0, None),
            enhanced_packet(order, 0, 1, b"kept", 4),
        ]
        .concat()
    }

    fn pcapng_stop_reason(tail: &[u8]) -> String {
        let capture = parse(&[pcapng_prefix(), tail.to_vec()].concat()).unwrap();
        assert_eq!(capture.packets.len(), 1);
        capture.truncated.unwrap()
    }

    #[test]
    fn pcapng_corrupt_blocks_keep_earlier_packets() {
        let order = ByteOrder::Little;
        let at = pcapng_prefix().len();
        let next = enhanced_packet(order, 0, 2, b"next", 4);
        let corrupt_len = |len: u32| [&next[..4], &u32_bytes(order, len), &next[8..]].concat();
        let wrong_trailer = [&next[..next.len() - 4], &u32_bytes(order, 32)].concat();
        let cases = [
            (
                next[..6].to_vec(),
                "ends mid-block header (6 bytes left)".to_string(),
            ),
            (
                next[..next.len() - 1].to_vec(),
                "ends mid-block (block type 6 of 36 bytes, 35 left)".into(),
            ),
            (
                corrupt_len(0xffff_fff0),
                "ends mid-block (block type 6 of 4294967280 bytes, 36 left)".into(),
            ),
            (corrupt_len(38), "block type 6 has invalid length 38".into()),
            (corrupt_len(8), "block type 6 has invalid length 8".into()),
            (
                wrong_trailer,
                "block type 6 has length 36 but its trailer says 32".into(),
            ),
            (
                enhanced_packet(order, 3, 0, b"x", 1),
                "packet on undeclared interface 3".into(),
            ),
            (
                block(order, BLOCK_ENHANCED_PACKET, &[0; 12]),
                "packet block body of 12 bytes".into(),
            ),
            (
                block(
                    order,
                    BLOCK_ENHANCED_PACKET,
                    &[&[0; 12][..], &[0xff; 4], &[0; 4]].concat(),
                ),
                "captured length 4294967295 exceeds the 262144-byte limit".into(),
            ),
            (
                block(
                    order,
                    BLOCK_ENHANCED_PACKET,
                    &[&[0; 12][..], &[9, 0, 0, 0], &[0; 4]].concat(),
                ),
                "captured length 9 runs past the block".into(),
            ),
            (
                block(
                    order,
                    BLOCK_INTERFACE_DESCRIPTION,
                    &[1, 0, 0, 0, 0, 0, 0, 0, 2, 0, 9, 0],
                ),
                "interface 1: option 2 runs past the block".into(),
            ),
            (
                interface_block(order, 1, 0, Some(39)),
                "interface 1: timestamp resolution 0x27 out of range".into(),
            ),
            (
                block(order, BLOCK_SECTION_HEADER, &[1, 2, 3, 4]),
                "section header has byte-order magic 0x01020304, expected 0x1a2b3c4d".into(),
            ),
        ];
        for (tail, reason) in cases {
            assert_eq!(
                pcapng_stop_reason(&tail),
                format!("block at byte {at}, after 1 packets: {reason}")
            );
        }
    }

    #[test]
    fn pcapng_file_header_errors() {
        let order = ByteOrder::Big;
        let mut wrong_version = section_header(order);
        wrong_version[12..14].copy_from_slice(&u16_bytes(order, 2));
        let mut wrong_magic = section_header(order);
        wrong_magic[8] ^= 0xff;
        let cases = [
            (
                section_header(order)[..10].to_vec(),
                "ends mid-block header (10 bytes left)",
            ),
            (wrong_version, "unsupported pcapng version 2.0"),
            (
                wrong_magic,
                "section header has byte-order magic 0xe52b3c4d, expected 0x1a2b3c4d",
            ),
            (
                block(
                    order,
                    BLOCK_SECTION_HEADER,
                    &u32_bytes(order, BYTE_ORDER_MAGIC),
                ),
                "section header of 16 bytes",
            ),
        ];
        for (file, reason) in cases {
            assert_eq!(
                parse(&file).unwrap_err().to_string(),
                format!("corrupt pcapng file header: {reason}")
            );
        }
    }

    /// Every prefix and every single-byte corruption of a valid capture parses without panicking
    /// and never yields more packets than the intact file.
    #[test]
    fn damaged_captures_never_panic() {
        let order = ByteOrder::Big;
        let mut classic = classic_header(order, false, 65535, LINKTYPE_ETHERNET);
        classic.extend(classic_record(order, 1, 2, b"one", 3));
        classic.extend(classic_record(order, 3, 4, b"two", 3));
        let pcapng = [
            section_header(order),
            interface_block(order, 1, 0, Some(6)),
            enhanced_packet(order, 0, 1, b"one", 3),
            simple_packet(order, b"two", 3),
            obsolete_packet(order, 0, 1, b"three"),
        ]
        .concat();
        for file in [classic, pcapng] {
            let full = parse(&file).unwrap().packets.len();
            for cut in 0..file.len() {
                if let Ok(capture) = parse(&file[..cut]) {
                    assert!(capture.packets.len() <= full);
                }
            }
            for at in 0..file.len() {
                for flip in [0x01, 0x80, 0xff] {
                    let mut damaged = file.clone();
                    damaged[at] ^= flip;
                    let _ = parse(&damaged);
                }
            }
        }
    }

    const FRAME_V4: [u8; 4] = [0x45, 0, 0, 20];
    const FRAME_V6: [u8; 4] = [0x60, 0, 0, 0];

    fn ethernet(ethertype: u16, payload: &[u8]) -> Vec<u8> {
        [&[0; 12][..], &ethertype.to_be_bytes(), payload].concat()
    }

    #[test]
    fn raw_ip_link_types_get_an_ethernet_header() {
        for link_type in [
            LINKTYPE_RAW,
            LINKTYPE_RAW_BSD,
            LINKTYPE_RAW_OPENBSD,
            LINKTYPE_IPV4,
            LINKTYPE_IPV6,
        ] {
            assert_eq!(
                to_ethernet(link_type, &FRAME_V4),
                Ok(ethernet(0x0800, &FRAME_V4))
            );
            assert_eq!(
                to_ethernet(link_type, &FRAME_V6),
                Ok(ethernet(0x86dd, &FRAME_V6))
            );
            assert_eq!(
                to_ethernet(link_type, &[]),
                Err("empty raw IP packet".into())
            );
            assert_eq!(
                to_ethernet(link_type, &[0x35, 0]),
                Err("raw IP packet with IP version 3".into())
            );
        }
        assert_eq!(
            to_ethernet(LINKTYPE_ETHERNET, b"as is"),
            Ok(b"as is".to_vec())
        );
    }

    #[test]
    fn null_and_loop_families_in_either_byte_order() {
        for link_type in [LINKTYPE_NULL, LINKTYPE_LOOP] {
            for (family, ethertype) in [(2, 0x0800), (24, 0x86dd), (28, 0x86dd), (30, 0x86dd)] {
                for header in [u32::to_le_bytes(family), u32::to_be_bytes(family)] {
                    let packet = [&header[..], &FRAME_V4].concat();
                    assert_eq!(
                        to_ethernet(link_type, &packet),
                        Ok(ethernet(ethertype, &FRAME_V4))
                    );
                }
            }
            assert_eq!(
                to_ethernet(link_type, &[7, 0, 0, 0, 1]),
                Err("unsupported address family 7 in NULL/LOOP header".into())
            );
            assert_eq!(
                to_ethernet(link_type, &[2, 0, 0]),
                Err("truncated NULL/LOOP header".into())
            );
        }
    }

    #[test]
    fn linux_cooked_captures_keep_their_protocol() {
        let mut sll = vec![0; 14];
        sll.extend([0x86, 0xdd]);
        sll.extend(FRAME_V6);
        assert_eq!(
            to_ethernet(LINKTYPE_LINUX_SLL, &sll),
            Ok(ethernet(0x86dd, &FRAME_V6))
        );
        assert_eq!(
            to_ethernet(LINKTYPE_LINUX_SLL, &sll[..15]),
            Err("truncated LINUX_SLL header (15 of 16 bytes)".into())
        );
        sll[14..16].copy_from_slice(&[0, 4]);
        assert_eq!(
            to_ethernet(LINKTYPE_LINUX_SLL, &sll),
            Err("LINUX_SLL packet of non-Ethernet protocol 0x0004".into())
        );

        let mut sll2 = vec![0x81, 0x00];
        sll2.extend([0; 18]);
        sll2.extend([0, 100, 0x08, 0x00]);
        sll2.extend(FRAME_V4);
        let tagged = [&[0, 100, 0x08, 0x00][..], &FRAME_V4].concat();
        assert_eq!(
            to_ethernet(LINKTYPE_LINUX_SLL2, &sll2),
            Ok(ethernet(0x8100, &tagged))
        );
        assert_eq!(
            to_ethernet(LINKTYPE_LINUX_SLL2, &sll2[..3]),
            Err("truncated LINUX_SLL2 header (3 of 20 bytes)".into())
        );
    }

    #[test]
    fn other_link_types_are_unsupported() {
        assert_eq!(
            to_ethernet(127, &[0; 40]),
            Err("unsupported link type 127 (IEEE802_11_RADIOTAP)".into())
        );
        assert_eq!(
            to_ethernet(60_000, &[0; 40]),
            Err("unsupported link type 60000".into())
        );
        assert_eq!(link_type_name(LINKTYPE_LINUX_SLL2), "LINUX_SLL2");
        assert_eq!(link_type_name(149), "USER2");
        assert_eq!(link_type_name(60_000), "");
    }

    /// tcpdump's test captures: many link types, both formats, fuzzed and deliberately malformed
    /// packets, plus two files that are not captures at all (LICENSE, SOURCE).
    #[test]
    fn tcpdump_corpus() {
        let dir = Path::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../shared/data/pcap/tcpdump"
        ));
        let entries = std::fs::read_dir(dir)
            .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
            .map(|entry| entry.unwrap().path());
        let (mut files, mut with_packets, mut packets, mut as_ethernet, mut errors) =
            (0, 0, 0, 0, 0);
        for path in entries {
            files += 1;
            let Ok(capture) = read_file(&path) else {
                errors += 1;
                continue;
            };
            with_packets += usize::from(!capture.packets.is_empty());
            packets += capture.packets.len();
            as_ethernet += capture
                .packets
                .iter()
                .filter(|p| to_ethernet(p.link_type, &p.data).is_ok())
                .count();
        }
        assert!(files >= 830, "{files} files");
        assert!(with_packets >= 828, "{with_packets} files with packets");
        assert!(packets >= 10_183, "{packets} packets");
        assert!(
            as_ethernet >= 9_369,
            "{as_ethernet} packets convertible to Ethernet"
        );
        assert!(errors <= 2, "{errors} files not read");
    }
}
