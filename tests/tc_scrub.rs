//! tc_scrub through BPF_PROG_TEST_RUN: the TC entry programs run the chain with the scrub slot
//! filled, and every output frame is compared byte for byte with the frame expected (built
//! independently with PacketBuilder), v4 and v6, both hooks; every output's IPv4 header
//! checksum and TCP/UDP checksum is verified from scratch.

mod common;

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use common::{privileged, Firewall};
use ebpfsentinel::abi::tc_stage;
use ebpfsentinel::config::ScrubConfig;
use ebpfsentinel::maps::scrub::{scrub_stat, ScrubMaps};
use ebpfsentinel::packet::{
    ones_complement_sum, pseudo_header, ExtHeader, PacketBuilder, TcpFlags, ETHERNET_HEADER_LEN,
    IPPROTO_TCP, IPPROTO_UDP,
};

const TC_NEXT: i32 = -1;
const L3: usize = ETHERNET_HEADER_LEN;

const SRC4: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
const DST4: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 2);
const SRC6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1);
const DST6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 2);

const FULL: ScrubConfig = ScrubConfig {
    min_ttl: Some(64),
    max_mss: Some(1400),
    clear_df: true,
    random_ip_id: true,
};

struct Scrubber {
    fw: Firewall,
    maps: ScrubMaps,
}

impl Scrubber {
    fn new(cfg: Option<ScrubConfig>) -> Scrubber {
        let fw = Firewall::load("firewall: {}\n");
        let maps = fw.dp.scrub_maps().expect("scrub maps");
        maps.apply(cfg.as_ref()).expect("scrub settings");
        fw.dp
            .set_tc_stage(tc_stage::TC_STAGE_SCRUB, true)
            .expect("scrub slot");
        Scrubber { fw, maps }
    }

    /// (verdict, output frame) of one frame through the entry program of a direction.
    fn run(&self, ingress: bool, frame: &[u8]) -> (i32, Vec<u8>) {
        self.fw.tc(ingress, frame)
    }

    /// Runs `frame` on both hooks; each output must pass (TCX_NEXT), have valid checksums
    /// and be `expected`.
    fn expect(&self, what: &str, frame: &[u8], expected: &[u8]) {
        for ingress in [true, false] {
            let (verdict, out) = self.run(ingress, frame);
            let hook = if ingress { "ingress" } else { "egress" };
            assert_eq!(verdict, TC_NEXT, "{what} ({hook}): verdict");
            verify_checksums(&out).unwrap_or_else(|e| panic!("{what} ({hook}): {e}"));
            assert_eq!(hex(&out), hex(expected), "{what} ({hook}): output frame");
        }
    }

    fn stat(&self, s: scrub_stat) -> u64 {
        self.maps.stats().expect("scrub stats")[s.0 as usize]
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Checks the IPv4 header checksum and, for an unfragmented TCP or UDP packet, the transport
/// checksum over its pseudo-header, as a receiver would. Plain Ethernet frames only.
fn verify_checksums(frame: &[u8]) -> Result<(), String> {
    let ethertype = u16::from_be_bytes([frame[12], frame[13]]);
    let (src, dst, proto, l4, fragment) = match ethertype {
        0x0800 => {
            let ihl = usize::from(frame[L3] & 0x0f) * 4;
            let header = &frame[L3..L3 + ihl];
            if ones_complement_sum(header) != 0xffff {
                return Err(format!("bad IPv4 header checksum: {}", hex(header)));
            }
            let frag = u16::from_be_bytes([header[6], header[7]]);
            let src: [u8; 4] = header[12..16].try_into().unwrap();
            let dst: [u8; 4] = header[16..20].try_into().unwrap();
            let tot = usize::from(u16::from_be_bytes([header[2], header[3]]));
            if tot != frame.len() - L3 {
                return Err(format!(
                    "IPv4 total length {tot} for {} bytes",
                    frame.len() - L3
                ));
            }
            (
                IpAddr::from(src),
                IpAddr::from(dst),
                header[9],
                L3 + ihl,
                frag & 0x3fff != 0,
            )
        }
        0x86dd => {
            let header = &frame[L3..L3 + 40];
            let src: [u8; 16] = header[8..24].try_into().unwrap();
            let dst: [u8; 16] = header[24..40].try_into().unwrap();
            // extension headers (fragments) are not followed here
            let next = header[6];
            (
                IpAddr::from(src),
                IpAddr::from(dst),
                next,
                L3 + 40,
                next == 44,
            )
        }
        other => return Err(format!("ethertype {other:#06x}")),
    };
    if fragment || !(proto == IPPROTO_TCP || proto == IPPROTO_UDP) {
        return Ok(());
    }
    let segment = &frame[l4..];
    let pseudo = pseudo_header(src, dst, proto, segment.len());
    if ones_complement_sum(&[pseudo.as_slice(), segment].concat()) != 0xffff {
        let which = if proto == IPPROTO_TCP { "TCP" } else { "UDP" };
        return Err(format!("bad {which} checksum: {}", hex(segment)));
    }
    Ok(())
}

/// Recomputes the IPv4 header checksum after a test edited the header.
fn fix_ipv4_checksum(frame: &mut [u8]) {
    let ihl = usize::from(frame[L3] & 0x0f) * 4;
    frame[L3 + 10..L3 + 12].copy_from_slice(&[0, 0]);
    let sum = !ones_complement_sum(&frame[L3..L3 + ihl]);
    frame[L3 + 10..L3 + 12].copy_from_slice(&sum.to_be_bytes());
}

/// The frame with the IPv4 DF bit set (PacketBuilder never sets it).
fn with_df(mut frame: Vec<u8>) -> Vec<u8> {
    frame[L3 + 6] |= 0x40;
    fix_ipv4_checksum(&mut frame);
    frame
}

fn ipv4_id(frame: &[u8]) -> u16 {
    u16::from_be_bytes([frame[L3 + 4], frame[L3 + 5]])
}

/// `expected` with the IPv4 ID the kernel chose (taken from `out`), checksum fixed.
fn with_id_of(mut expected: Vec<u8>, out: &[u8]) -> Vec<u8> {
    expected[L3 + 4..L3 + 6].copy_from_slice(&out[L3 + 4..L3 + 6]);
    fix_ipv4_checksum(&mut expected);
    expected
}

fn mss(v: u16) -> [u8; 4] {
    let [a, b] = v.to_be_bytes();
    [2, 4, a, b]
}

fn tcp4(flags: TcpFlags, ttl: u8, options: &[u8]) -> Vec<u8> {
    PacketBuilder::new()
        .ipv4(SRC4, DST4)
        .ttl(ttl)
        .tcp(40000, 443, flags)
        .tcp_numbers(0x1234_5678, 0, 64240)
        .tcp_options(options)
        .build()
}

fn tcp6(flags: TcpFlags, hops: u8, options: &[u8]) -> Vec<u8> {
    PacketBuilder::new()
        .ipv6(SRC6, DST6)
        .ttl(hops)
        .tcp(40000, 443, flags)
        .tcp_numbers(0x1234_5678, 0x9abc_def0, 65535)
        .tcp_options(options)
        .payload(b"x")
        .build()
}

fn udp(v6: bool, ttl: u8) -> Vec<u8> {
    let b = if v6 {
        PacketBuilder::new().ipv6(SRC6, DST6)
    } else {
        PacketBuilder::new().ipv4(SRC4, DST4)
    };
    b.ttl(ttl).udp(5353, 53).payload(b"query").build()
}

fn cat(parts: &[&[u8]]) -> Vec<u8> {
    parts.concat()
}

#[test]
fn ttl_and_hop_limit_raised_to_the_minimum() {
    if !privileged("ttl_and_hop_limit_raised_to_the_minimum") {
        return;
    }
    let s = Scrubber::new(Some(ScrubConfig {
        min_ttl: Some(64),
        ..Default::default()
    }));
    for v6 in [false, true] {
        s.expect("ttl 1 raised", &udp(v6, 1), &udp(v6, 64));
        s.expect("ttl 63 raised", &udp(v6, 63), &udp(v6, 64));
        s.expect("ttl 64 kept", &udp(v6, 64), &udp(v6, 64));
        s.expect("ttl 200 kept", &udp(v6, 200), &udp(v6, 200));
    }
    let syn = TcpFlags::SYN;
    s.expect(
        "v4 tcp",
        &tcp4(syn, 3, &mss(1460)),
        &tcp4(syn, 64, &mss(1460)),
    );
    s.expect(
        "v6 tcp",
        &tcp6(syn, 3, &mss(1460)),
        &tcp6(syn, 64, &mss(1460)),
    );
    // 2 raised udp per family and the two tcp, each on both hooks
    assert_eq!(s.stat(scrub_stat::SCRUB_STAT_TTL_RAISED), 2 * (2 * 2 + 2));
    assert_eq!(s.stat(scrub_stat::SCRUB_STAT_SEEN), 2 * (2 * 4 + 2));
    assert_eq!(s.stat(scrub_stat::SCRUB_STAT_MSS_CLAMPED), 0);
}

#[test]
fn mss_clamped_on_syn_and_syn_ack_only() {
    if !privileged("mss_clamped_on_syn_and_syn_ack_only") {
        return;
    }
    let s = Scrubber::new(Some(ScrubConfig {
        max_mss: Some(1400),
        ..Default::default()
    }));
    let syn = TcpFlags::SYN;
    let syn_ack = TcpFlags::SYN | TcpFlags::ACK;
    let ts: &[u8] = &[8, 10, 1, 2, 3, 4, 0, 0, 0, 0];
    let wscale: &[u8] = &[1, 3, 3, 7];
    let sack_perm: &[u8] = &[4, 2];
    let mut clamped = 0;
    for (what, opts_in, opts_out) in [
        // Linux's SYN: MSS first
        (
            "mss first",
            cat(&[&mss(1460), sack_perm, ts, &[1], &[3, 3, 7]]),
            cat(&[&mss(1400), sack_perm, ts, &[1], &[3, 3, 7]]),
        ),
        // after one NOP the value sits at an odd offset of the segment: the checksum update
        // must count it byte-swapped
        (
            "mss at an odd offset",
            cat(&[&[1], &mss(9000), &[1, 1, 1]]),
            cat(&[&[1], &mss(1400), &[1, 1, 1]]),
        ),
        (
            "mss last",
            cat(&[&[1, 1], ts, wscale, &mss(65535)]),
            cat(&[&[1, 1], ts, wscale, &mss(1400)]),
        ),
        ("mss one above", mss(1401).to_vec(), mss(1400).to_vec()),
    ] {
        s.expect(
            &format!("v4 syn, {what}"),
            &tcp4(syn, 64, &opts_in),
            &tcp4(syn, 64, &opts_out),
        );
        s.expect(
            &format!("v6 syn-ack, {what}"),
            &tcp6(syn_ack, 64, &opts_in),
            &tcp6(syn_ack, 64, &opts_out),
        );
        clamped += 4;
    }
    for (what, flags, opts) in [
        ("mss below the clamp", syn, cat(&[&mss(1200), wscale])),
        ("mss at the clamp", syn_ack, mss(1400).to_vec()),
        ("no mss option", syn, cat(&[wscale, sack_perm, ts])),
        ("no options", syn, Vec::new()),
        ("not a syn", TcpFlags::ACK, mss(1460).to_vec()),
        ("rst", TcpFlags::RST, mss(1460).to_vec()),
        // an option of length 0 ends the walk before the MSS
        ("malformed option first", syn, cat(&[&[5, 0], &mss(1460)])),
        // an MSS option with a wrong length is no MSS option
        ("mss of length 3", syn, vec![2, 3, 0x05, 0xb4]),
        // the MSS after EOL is not an option
        ("mss after eol", syn, cat(&[&[0, 0, 0, 0], &mss(1460)])),
    ] {
        s.expect(
            &format!("v4, {what}"),
            &tcp4(flags, 64, &opts),
            &tcp4(flags, 64, &opts),
        );
        s.expect(
            &format!("v6, {what}"),
            &tcp6(flags, 64, &opts),
            &tcp6(flags, 64, &opts),
        );
    }
    // UDP and a v4 fragment of a SYN are not touched
    s.expect("udp", &udp(false, 64), &udp(false, 64));
    let frag = PacketBuilder::new()
        .ipv4(SRC4, DST4)
        .fragment(8, false)
        .tcp(40000, 443, syn)
        .tcp_options(&mss(1460))
        .build();
    s.expect("non-first fragment", &frag, &frag);
    assert_eq!(s.stat(scrub_stat::SCRUB_STAT_MSS_CLAMPED), clamped);
    assert_eq!(s.stat(scrub_stat::SCRUB_STAT_TTL_RAISED), 0);
}

#[test]
fn df_cleared_and_fragments_keep_their_id() {
    if !privileged("df_cleared_and_fragments_keep_their_id") {
        return;
    }
    let s = Scrubber::new(Some(ScrubConfig {
        min_ttl: Some(32),
        clear_df: true,
        random_ip_id: true,
        ..Default::default()
    }));
    // an unfragmented DF packet: DF cleared, ID randomised
    let plain = udp(false, 64);
    for ingress in [true, false] {
        let (verdict, out) = s.run(ingress, &with_df(plain.clone()));
        assert_eq!(verdict, TC_NEXT);
        verify_checksums(&out).unwrap();
        assert_eq!(hex(&out), hex(&with_id_of(plain.clone(), &out)));
    }
    // fragments keep the ID the reassembly needs; DF is cleared and the TTL raised all the
    // same
    for (offset, more) in [(0, true), (1480, true), (2960, false)] {
        let frag = |ttl| {
            PacketBuilder::new()
                .ipv4(SRC4, DST4)
                .ttl(ttl)
                .fragment(offset, more)
                .udp(5353, 53)
                .payload(b"fragment")
                .build()
        };
        s.expect(
            &format!("fragment at {offset}"),
            &with_df(frag(5)),
            &frag(32),
        );
        let (_, out) = s.run(true, &frag(5));
        assert_eq!(ipv4_id(&out), ipv4_id(&frag(5)), "fragment at {offset}: ID");
    }
    // IPv6 has neither DF nor an ID in its header; a v6 fragment only has its hop limit raised
    s.expect("v6 udp", &udp(true, 64), &udp(true, 64));
    let frag6 = |hops| {
        PacketBuilder::new()
            .ipv6(SRC6, DST6)
            .ttl(hops)
            .ipv6_ext(ExtHeader::Fragment {
                offset: 0,
                more: true,
            })
            .udp(5353, 53)
            .payload(b"fragment")
            .build()
    };
    s.expect("v6 fragment", &frag6(5), &frag6(32));
    // 2 DF packets + 3 DF fragments, both hooks
    assert_eq!(s.stat(scrub_stat::SCRUB_STAT_DF_CLEARED), 2 + 3 * 2);
    // the 2 unfragmented ones only
    assert_eq!(s.stat(scrub_stat::SCRUB_STAT_IP_ID_RANDOMISED), 2);
}

#[test]
fn random_ip_ids_differ_and_checksums_hold() {
    if !privileged("random_ip_ids_differ_and_checksums_hold") {
        return;
    }
    let s = Scrubber::new(Some(ScrubConfig {
        random_ip_id: true,
        ..Default::default()
    }));
    let frame = tcp4(TcpFlags::ACK, 64, &[]);
    let mut ids = std::collections::HashSet::new();
    for i in 0..64 {
        let (verdict, out) = s.run(i % 2 == 0, &frame);
        assert_eq!(verdict, TC_NEXT);
        verify_checksums(&out).unwrap();
        assert_eq!(hex(&out), hex(&with_id_of(frame.clone(), &out)));
        ids.insert(ipv4_id(&out));
    }
    // 64 draws from 65536 values: a handful of collisions at most
    assert!(ids.len() > 48, "only {} distinct IDs", ids.len());
    assert_eq!(s.stat(scrub_stat::SCRUB_STAT_IP_ID_RANDOMISED), 64);
}

#[test]
fn everything_at_once_on_a_syn() {
    if !privileged("everything_at_once_on_a_syn") {
        return;
    }
    let s = Scrubber::new(Some(FULL));
    let opts = cat(&[&mss(1460), &[4, 2, 1, 3, 3, 7]]);
    let input = with_df(tcp4(TcpFlags::SYN, 9, &opts));
    let expected = tcp4(TcpFlags::SYN, 64, &cat(&[&mss(1400), &[4, 2, 1, 3, 3, 7]]));
    for ingress in [true, false] {
        let (verdict, out) = s.run(ingress, &input);
        assert_eq!(verdict, TC_NEXT);
        verify_checksums(&out).unwrap();
        assert_eq!(hex(&out), hex(&with_id_of(expected.clone(), &out)));
    }
    s.expect(
        "v6 syn",
        &tcp6(TcpFlags::SYN, 9, &mss(9000)),
        &tcp6(TcpFlags::SYN, 64, &mss(1400)),
    );
    for (stat, n) in [
        (scrub_stat::SCRUB_STAT_SEEN, 4),
        (scrub_stat::SCRUB_STAT_TTL_RAISED, 4),
        (scrub_stat::SCRUB_STAT_MSS_CLAMPED, 4),
        (scrub_stat::SCRUB_STAT_DF_CLEARED, 2),
        (scrub_stat::SCRUB_STAT_IP_ID_RANDOMISED, 2),
    ] {
        assert_eq!(s.stat(stat), n, "{stat:?}");
    }
}

#[test]
fn off_means_untouched() {
    if !privileged("off_means_untouched") {
        return;
    }
    // the slot filled but no settings (what a missing section writes): packets pass unchanged
    let s = Scrubber::new(None);
    let input = with_df(tcp4(TcpFlags::SYN, 1, &mss(9000)));
    s.expect("settings off", &input, &input);
    assert_eq!(s.stat(scrub_stat::SCRUB_STAT_SEEN), 0);
    // settings on but the slot empty: the stage does not run
    s.maps.apply(Some(&FULL)).unwrap();
    s.fw.dp
        .set_tc_stage(tc_stage::TC_STAGE_SCRUB, false)
        .unwrap();
    s.expect("slot empty", &input, &input);
    assert_eq!(s.stat(scrub_stat::SCRUB_STAT_SEEN), 0);
    // and back on
    s.fw.dp
        .set_tc_stage(tc_stage::TC_STAGE_SCRUB, true)
        .unwrap();
    let (_, out) = s.run(true, &input);
    assert_eq!(out[L3 + 8], 64);
    assert_eq!(s.stat(scrub_stat::SCRUB_STAT_SEEN), 1);
    // a frame the parser refuses (an IPv4 length beyond the frame) is passed as it is
    let mut bad = udp(false, 1);
    bad[L3 + 2..L3 + 4].copy_from_slice(&1000u16.to_be_bytes());
    fix_ipv4_checksum(&mut bad);
    let (verdict, out) = s.run(true, &bad);
    assert_eq!((verdict, hex(&out)), (TC_NEXT, hex(&bad)));
    assert_eq!(s.stat(scrub_stat::SCRUB_STAT_SEEN), 1);
}
