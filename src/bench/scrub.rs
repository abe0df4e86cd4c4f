//! tc_scrub per packet on TC ingress, through the restoring harness so that every run
//! rewrites: a packet with nothing to change, an IPv4 SYN needing all four rewrites and an
//! IPv6 SYN needing the hop limit and MSS, against the chain with scrub off.

use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::Path;

use anyhow::{bail, Result};
use serde::Serialize;

use super::tc::TcHarness;
use super::{write_json, Row};
use crate::abi::tc_stage;
use crate::config::ScrubConfig;
use crate::loader::{Dataplane, LoadOptions};
use crate::packet::{PacketBuilder, TcpFlags, ETHERNET_HEADER_LEN};

#[derive(Debug, Serialize)]
struct Report {
    repeat: u32,
    rows: Vec<Row>,
    /// ns the stage adds to the chain with it off, per scenario
    stage_ns: Vec<(String, f64)>,
}

const SETTINGS: ScrubConfig = ScrubConfig {
    min_ttl: Some(64),
    max_mss: Some(1400),
    clear_df: true,
    random_ip_id: true,
};

fn mss_option(mss: u16) -> [u8; 4] {
    let [hi, lo] = mss.to_be_bytes();
    [2, 4, hi, lo]
}

/// `frame` with the IPv4 DF bit set and the header checksum recomputed.
fn with_df(mut frame: Vec<u8>) -> Vec<u8> {
    let l3 = ETHERNET_HEADER_LEN;
    frame[l3 + 6] |= 0x40;
    let ihl = usize::from(frame[l3] & 0x0f) * 4;
    frame[l3 + 10..l3 + 12].copy_from_slice(&[0, 0]);
    let sum = !crate::packet::ones_complement_sum(&frame[l3..l3 + ihl]);
    frame[l3 + 10..l3 + 12].copy_from_slice(&sum.to_be_bytes());
    frame
}

pub fn run(repeat: u32, json: Option<&Path>) -> Result<()> {
    let dp = Dataplane::load(&LoadOptions::default())?;
    let scrub = dp.scrub_maps()?;
    let harness = TcHarness::new(&dp.conntrack.progs.tc_ingress)?;
    let (a4, b4) = (Ipv4Addr::new(192, 0, 2, 1), Ipv4Addr::new(198, 51, 100, 2));
    let (a6, b6) = (
        Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1),
        Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 2),
    );
    let untouched = PacketBuilder::new()
        .ipv4(a4, b4)
        .ttl(128)
        .udp(40000, 53)
        .payload(&[0u8; 18])
        .build();
    let syn4 = with_df(
        PacketBuilder::new()
            .ipv4(a4, b4)
            .ttl(3)
            .tcp(40000, 443, TcpFlags::SYN)
            .tcp_options(&mss_option(1460))
            .build(),
    );
    let syn6 = PacketBuilder::new()
        .ipv6(a6, b6)
        .ttl(3)
        .tcp(40000, 443, TcpFlags::SYN)
        .tcp_options(&mss_option(1460))
        .build();
    let no_id = ScrubConfig {
        random_ip_id: false,
        ..SETTINGS
    };
    let scenarios: [(&str, &[u8], ScrubConfig); 3] = [
        ("IPv4 UDP, nothing to change (ID kept)", &untouched, no_id),
        ("IPv4 SYN: TTL, DF, ID and MSS rewritten", &syn4, SETTINGS),
        ("IPv6 SYN: hop limit and MSS rewritten", &syn6, SETTINGS),
    ];

    let mut rows = Vec::new();
    let mut stage_ns = Vec::new();
    for (what, frame, cfg) in scenarios {
        dp.set_tc_stage(tc_stage::TC_STAGE_SCRUB, false)?;
        let (off, floor_off) = harness.time(frame, repeat)?;
        scrub.apply(Some(&cfg))?;
        dp.set_tc_stage(tc_stage::TC_STAGE_SCRUB, true)?;
        let before = scrub.stats()?;
        let (on, floor_on) = harness.time(frame, repeat)?;
        let after = scrub.stats()?;
        let changes: u64 = (1..after.len()).map(|i| after[i] - before[i]).sum();
        let rewrites = what.contains("rewritten");
        if rewrites != (changes > 0) {
            bail!("scrub counted {changes} changes on \"{what}\"");
        }
        println!(
            "tc ingress, {what:<44} scrub off {off:>7.1} ns  on {on:>7.1} ns ({:>5.2}x harness floor {:.1} ns), stage +{:.1} ns",
            on / floor_on,
            floor_on,
            on - off
        );
        rows.push(Row::new(
            format!("TC entry, scrub off: {what}"),
            "hot",
            off,
            floor_off,
        ));
        rows.push(Row::new(
            format!("TC entry + tc_scrub: {what}"),
            "hot",
            on,
            floor_on,
        ));
        stage_ns.push((what.to_string(), on - off));
    }
    write_json(
        json,
        &Report {
            repeat,
            rows,
            stage_ns,
        },
    )
}
