//! tc_dns: loading the shipped domain lists plus synthetic domains (100k in all), and the
//! per-packet cost on TC of a packet that is no DNS query, of a 6-label query that matches
//! nothing and of one that matches, against the TC entry program alone in the same run.

use std::net::Ipv4Addr;
use std::path::Path;
use std::time::Instant;

use anyhow::{Context, Result};
use serde::Serialize;

use super::{print_targets, time_once, write_json, Rng, Target, ROUNDS};
use crate::abi::tc_stage;
use crate::dns::{query, TYPE_A};
use crate::feeds::domains::{parse_domains, DnsAction, DomainFormat};
use crate::loader::{Dataplane, LoadOptions};
use crate::maps::dns::Blocklist;
use crate::packet::PacketBuilder;

#[derive(Debug, Serialize)]
struct PacketRow {
    scenario: String,
    ns_per_packet: f64,
}

#[derive(Debug, Serialize)]
struct Report {
    repeat: u32,
    domains: usize,
    load_seconds: f64,
    packets: Vec<PacketRow>,
    targets: Vec<Target>,
}

const LISTS: [(&str, DomainFormat); 3] = [
    ("adaway_hosts.txt", DomainFormat::Hosts),
    ("scamblocklist_hosts.txt", DomainFormat::Hosts),
    ("spam404_main-blacklist.txt", DomainFormat::Domains),
];

const DOMAINS: usize = 100_000;

fn blocklist(dir: &Path, rng: &mut Rng) -> Result<Blocklist> {
    let mut b = Blocklist::default();
    for (i, (file, format)) in LISTS.iter().enumerate() {
        let path = dir.join(file);
        let text = std::fs::read_to_string(&path).with_context(|| format!("{}", path.display()))?;
        for d in parse_domains(&text, *format).domains {
            b.add(&d, 1 + i as u16, DnsAction::Drop);
        }
    }
    while b.len() < DOMAINS {
        let n = rng.next_u64();
        b.add(
            &format!("h{:x}.s{}.example", n >> 16, n & 0xff),
            0,
            DnsAction::Drop,
        );
    }
    Ok(b)
}

fn udp(dport: u16, payload: &[u8]) -> Vec<u8> {
    PacketBuilder::new()
        .ipv4(Ipv4Addr::new(10, 1, 2, 3), Ipv4Addr::new(10, 0, 0, 53))
        .udp(40000, dport)
        .payload(payload)
        .build()
}

pub fn run(repeat: u32, feeds_dir: &Path, json: Option<&Path>) -> Result<()> {
    let dp = Dataplane::load(&LoadOptions::default())?;
    let dns = dp.dns_maps()?;
    let tc = &dp.conntrack.progs.tc_ingress;
    // the floor is the entry program and nothing else on the chain
    dp.set_tc_stage(tc_stage::TC_STAGE_CONNTRACK, false)?;
    dp.set_tc_stage(tc_stage::TC_STAGE_THREATINTEL, false)?;
    let mut rng = Rng(0xd25);
    let mut packets = Vec::new();
    let mut time = |scenario: &str, frame: &[u8]| -> Result<f64> {
        let mut best = f64::MAX;
        for _ in 0..ROUNDS {
            best = best.min(time_once(tc, frame, repeat)?);
        }
        println!("tc ingress: {scenario:<60} {best:>8.1} ns");
        packets.push(PacketRow {
            scenario: scenario.into(),
            ns_per_packet: best,
        });
        Ok(best)
    };

    let other = udp(4000, &[0u8; 40]);
    // six labels: under a listed two-label domain, and not
    let miss = udp(53, &query(1, "a.b.c.d.nowhere-listed.org", TYPE_A));
    let hit = udp(53, &query(1, "a.b.c.d.doubleclick.net", TYPE_A));
    let floor = time("entry program alone, DNS query", &miss)?;
    dns.set_enabled(true)?;
    dp.set_tc_stage(tc_stage::TC_STAGE_DNS, true)?;
    let other_ns = time("dns on, not a DNS packet (UDP 4000)", &other)?;
    time(
        "dns on, empty blocklist, root query (no label)",
        &udp(53, &crate::dns::query_raw(1, &[0], TYPE_A)),
    )?;
    time(
        "dns on, empty blocklist, 1-label query",
        &udp(53, &query(1, "org", TYPE_A)),
    )?;
    let empty = time("dns on, empty blocklist, 6-label query", &miss)?;

    let list = blocklist(feeds_dir, &mut rng)?;
    let started = Instant::now();
    dns.sync(&list)?;
    let load_seconds = started.elapsed().as_secs_f64();
    println!(
        "load: {} domains {load_seconds:.2} s ({:.0} domains/s)",
        list.len(),
        list.len() as f64 / load_seconds
    );
    anyhow::ensure!(
        dns.check("a.b.c.d.doubleclick.net")?.is_some()
            && dns.check("nowhere-listed.org")?.is_none(),
        "the benchmark's names are not what they should be"
    );
    let miss_ns = time("100k domains, 6-label query, no match", &miss)?;
    let hit_ns = time(
        "100k domains, 6-label query, match (drop; events skipped when full)",
        &hit,
    )?;
    println!(
        "dns on TC: not DNS +{:.1} ns, miss +{:.1} ns, match +{:.1} ns over the entry program ({:.2}x, {:.2}x, {:.2}x)",
        other_ns - floor,
        miss_ns - floor,
        hit_ns - floor,
        other_ns / floor,
        miss_ns / floor,
        hit_ns / floor,
    );
    let targets = vec![
        Target::at_most(
            "not a DNS packet vs the entry program",
            other_ns / floor,
            1.2,
        ),
        Target::at_most(
            "6-label miss with 100k domains vs an empty blocklist",
            miss_ns / empty,
            1.3,
        ),
        Target::at_most("100k domains loaded, seconds", load_seconds, 2.0),
    ];
    print_targets(&targets);
    write_json(
        json,
        &Report {
            repeat,
            domains: list.len(),
            load_seconds,
            packets,
            targets,
        },
    )
}
