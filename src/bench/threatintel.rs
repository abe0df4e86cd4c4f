//! tc_threatintel: loading the real feeds and 1M synthetic IOCs into the hash, tries and a
//! fresh Bloom filter (seconds, entries/s), and the per-packet cost on TC of a clean packet
//! (the filter says no) and of an IOC hit, against the stage with an empty IOC set and the
//! TC entry program alone.

use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::time::Instant;

use anyhow::{Context, Result};
use ipnet::{IpNet, Ipv4Net};
use serde::Serialize;

use super::{print_targets, time_once, write_json, Rng, Target, ROUNDS};
use crate::config::FeedFormat;
use crate::feeds::{parse, Ioc, IocSet, TiAction};
use crate::loader::{Dataplane, LoadOptions};
use crate::maps::threatintel::ThreatIntelMaps;
use crate::packet::PacketBuilder;

#[derive(Debug, Serialize)]
struct Load {
    what: String,
    iocs: usize,
    seconds: f64,
    iocs_per_second: f64,
}

#[derive(Debug, Serialize)]
struct PacketRow {
    scenario: String,
    ns_per_packet: f64,
}

#[derive(Debug, Serialize)]
struct Report {
    repeat: u32,
    loads: Vec<Load>,
    packets: Vec<PacketRow>,
    targets: Vec<Target>,
}

/// The shipped feeds with their formats and IOC fields.
const REAL_FEEDS: [(&str, FeedFormat, Option<&str>); 5] = [
    ("firehol_level1.netset", FeedFormat::Netset, None),
    ("spamhaus_drop.netset", FeedFormat::Netset, None),
    ("spamhaus_drop_v4.json", FeedFormat::Ndjson, Some("cidr")),
    ("spamhaus_dropv6.txt", FeedFormat::Spamhaus, None),
    ("feodo_ipblocklist.csv", FeedFormat::Csv, Some("dst_ip")),
];

fn ioc(net: IpNet, feed_id: u16, action: TiAction) -> Ioc {
    Ioc {
        net,
        feed_id,
        confidence: 100,
        category: 0,
        action,
    }
}

fn real_feeds(dir: &Path) -> Result<IocSet> {
    let mut set = IocSet::default();
    for (i, (file, format, field)) in REAL_FEEDS.iter().enumerate() {
        let path = dir.join(file);
        let text = std::fs::read_to_string(&path).with_context(|| format!("{}", path.display()))?;
        let parsed = parse(*format, &text, *field, None, None)
            .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        for e in parsed.entries {
            set.iocs
                .entry(e.net)
                .or_insert_with(|| ioc(e.net, i as u16, TiAction::Alert));
        }
    }
    Ok(set)
}

/// `n` distinct random /32s outside 10.0.0.0/8 (where the benchmark's clean packets live).
pub(crate) fn synthetic(n: usize, rng: &mut Rng) -> IocSet {
    let mut set = IocSet::default();
    while set.iocs.len() < n {
        let a = Ipv4Addr::from((rng.next_u64() >> 32) as u32);
        if a.octets()[0] == 10 {
            continue;
        }
        let net = IpNet::V4(Ipv4Net::new(a, 32).expect("/32"));
        set.iocs.insert(net, ioc(net, 0, TiAction::Alert));
    }
    set
}

fn timed_apply(
    ti: &ThreatIntelMaps,
    what: &str,
    set: &IocSet,
    loads: &mut Vec<Load>,
) -> Result<()> {
    let started = Instant::now();
    let mut last_phase = "";
    ti.apply_with(set, 0, true, &mut |phase, done, total| {
        if phase != last_phase || done == total {
            if std::env::var_os("EBPFSENTINEL_BENCH_PHASES").is_some() {
                eprintln!(
                    "  {:>7.2} s {phase} {done}/{total}",
                    started.elapsed().as_secs_f64()
                );
            }
            last_phase = phase;
        }
    })?;
    let seconds = started.elapsed().as_secs_f64();
    println!(
        "load: {what:<48} {:>8} IOCs {seconds:>7.2} s {:>10.0} IOCs/s",
        set.len(),
        set.len() as f64 / seconds
    );
    loads.push(Load {
        what: what.into(),
        iocs: set.len(),
        seconds,
        iocs_per_second: set.len() as f64 / seconds,
    });
    Ok(())
}

pub fn run(repeat: u32, feeds_dir: &Path, json: Option<&Path>) -> Result<()> {
    let dp = Dataplane::load(&LoadOptions::default())?;
    let ti = dp.threatintel_maps()?;
    let ct = dp.conntrack_maps()?;
    ct.apply(&crate::config::ConntrackConfig::default())?;
    let tc = &dp.conntrack.progs.tc_ingress;
    let mut rng = Rng(0x7171);
    let mut loads = Vec::new();
    let mut packets = Vec::new();

    let clean = PacketBuilder::new()
        .ipv4(Ipv4Addr::new(10, 1, 2, 3), Ipv4Addr::new(10, 0, 0, 1))
        .udp(40000, 53)
        .payload(&[0u8; 18])
        .build();
    let mut time = |scenario: &str, frame: &[u8]| -> Result<f64> {
        let mut best = f64::MAX;
        for _ in 0..ROUNDS {
            best = best.min(time_once(tc, frame, repeat)?);
        }
        println!("tc ingress: {scenario:<58} {best:>8.1} ns");
        packets.push(PacketRow {
            scenario: scenario.into(),
            ns_per_packet: best,
        });
        Ok(best)
    };

    ti.apply(&IocSet::default(), 0, false)?;
    let floor = time("entry program, threat intel off", &clean)?;
    ti.apply(&IocSet::default(), 0, true)?;
    let empty = time("threat intel on, no IOC", &clean)?;

    let real = real_feeds(feeds_dir)?;
    timed_apply(&ti, "the shipped feeds (merged)", &real, &mut loads)?;
    let real_clean = time("shipped feeds, clean packet", &clean)?;

    let million = synthetic(1_000_000, &mut rng);
    timed_apply(&ti, "1M synthetic /32 (first load)", &million, &mut loads)?;
    let mut refreshed = million.clone();
    let drop: Vec<IpNet> = refreshed.iocs.keys().step_by(100).copied().collect();
    for net in drop {
        refreshed.iocs.remove(&net);
    }
    refreshed = {
        let extra = synthetic(10_000, &mut rng);
        refreshed.iocs.extend(extra.iocs);
        refreshed
    };
    timed_apply(&ti, "1M refresh (1% out, 1% in)", &refreshed, &mut loads)?;
    let million_clean = time("1M IOCs, clean packet (filter says no)", &clean)?;
    let hit_addr = match refreshed.iocs.keys().next() {
        Some(IpNet::V4(n)) => IpAddr::V4(n.addr()),
        _ => anyhow::bail!("no IOC to hit"),
    };
    let hit = PacketBuilder::new()
        .ip(hit_addr, IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)))
        .udp(40000, 53)
        .payload(&[0u8; 18])
        .build();
    let million_hit = time("1M IOCs, IOC hit (alert, event skipped when full)", &hit)?;
    println!(
        "threat intel on TC: empty set +{:.1} ns over the entry program; 1M IOCs clean {:.2}x, hit {:.2}x of the empty set",
        empty - floor,
        million_clean / empty,
        million_hit / empty
    );

    let million_load = loads
        .iter()
        .find(|l| l.what.starts_with("1M synthetic"))
        .map_or(f64::MAX, |l| l.seconds);
    let targets = vec![
        Target::at_most("1M IOCs loaded, seconds", million_load, 3.0),
        Target::at_most(
            "clean packet with 1M IOCs vs the stage with an empty set",
            million_clean / empty,
            1.3,
        ),
        Target::at_most(
            "clean packet with the shipped feeds vs the stage with an empty set",
            real_clean / empty,
            1.3,
        ),
    ];
    print_targets(&targets);
    write_json(
        json,
        &Report {
            repeat,
            loads,
            packets,
            targets,
        },
    )
}
