//! xdp_lb chained after xdp_firewall (empty ruleset): ns per packet for a VIP hit (Maglev
//! lookup, rewrite with checksum updates, FIB lookup) and a miss, measured with the spread
//! harness (xdp_chain_spread rewrites the addresses on every run, which also restores the
//! VIP a hit rewrote; the bench service's backends listen on the VIP's port, so the port
//! stays too) against its floor and against the same chain with the LB slot empty. Plus
//! the Maglev figures: the share of flows that move when one of N backends is removed, and
//! the spread of table slots by weight.
//!
//! The FIB answer depends on the namespace the bench runs in (its routes and neighbours):
//! the lb_stats counters after the hit runs say whether packets left with a redirect or went
//! to the stack. The TTL of the reused test packet is not restored between runs, so most hit
//! runs take the "TTL expired, let the stack answer" exit after the rewrite.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;

use anyhow::{Context, Result};
use libbpf_rs::skel::{OpenSkel, SkelBuilder};
use libbpf_rs::MapHandle;
use serde::Serialize;

use super::{
    fill_bench_addrs, print_targets, time_against_floor, udp_frame, write_json, Row, Target,
};
use crate::abi::xdp_stage;
use crate::config::{LbBackend, LbConfig, LbService, Proto, MAX_LB_TABLE_SIZE};
use crate::lb::{maglev, LbState};
use crate::loader::{Dataplane, LoadOptions};
use crate::maps::lb::LB_STATS;
use crate::maps::Generations;
use crate::skel::xdp_floor::XdpFloorSkelBuilder;

#[derive(Debug, Serialize)]
struct Movement {
    backends: usize,
    /// worst over which backend is removed
    moved_max: f64,
    moved_mean: f64,
    bound: f64,
}

#[derive(Debug, Serialize)]
struct Report {
    repeat: u32,
    rows: Vec<Row>,
    /// ns the LB stage adds to the chain, hit and miss
    lb_hit_ns: f64,
    lb_miss_ns: f64,
    movement: Vec<Movement>,
    /// weights 1:2:3: each backend's share of slots against its weight's share
    weight_shares: Vec<(f64, f64)>,
    targets: Vec<Target>,
}

const CLIENTS: u32 = 4096;
/// The VIP is the spread harness's fixed destination.
const VIP: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
const HIT_PORT: u16 = 53;
const MISS_PORT: u16 = 54;

fn bench_config() -> LbConfig {
    LbConfig {
        table_size: MAX_LB_TABLE_SIZE,
        services: vec![LbService {
            id: "bench".into(),
            location: super::here(),
            vip: IpAddr::V4(VIP),
            port: HIT_PORT,
            proto: Proto::Udp,
            backends: (1..=4)
                .map(|i| LbBackend {
                    addr: SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 200, i, 2)), HIT_PORT),
                    weight: 1,
                })
                .collect(),
            health: None,
        }],
    }
}

fn movement() -> (Vec<Movement>, Vec<(f64, f64)>) {
    let m = MAX_LB_TABLE_SIZE;
    let mut out = Vec::new();
    for n in 2..=10usize {
        let ids: Vec<Vec<u8>> = (0..n)
            .map(|i| format!("10.200.{}.2:8080", i + 1).into_bytes())
            .collect();
        let all: Vec<maglev::Entry<'_>> = ids
            .iter()
            .enumerate()
            .map(|(i, identity)| maglev::Entry {
                id: i as u32,
                identity,
                weight: 1,
            })
            .collect();
        let before = maglev::table(&all, m, u32::MAX);
        let fracs: Vec<f64> = (0..n)
            .map(|removed| {
                let rest: Vec<_> = all
                    .iter()
                    .filter(|e| e.id != removed as u32)
                    .copied()
                    .collect();
                maglev::moved(&before, &maglev::table(&rest, m, u32::MAX))
            })
            .collect();
        out.push(Movement {
            backends: n,
            moved_max: fracs.iter().copied().fold(0.0, f64::max),
            moved_mean: fracs.iter().sum::<f64>() / n as f64,
            bound: 1.0 / n as f64 + 0.02,
        });
    }
    let ids: Vec<Vec<u8>> = (0..3)
        .map(|i| format!("10.200.{}.2:8080", i + 1).into_bytes())
        .collect();
    let weighted: Vec<maglev::Entry<'_>> = ids
        .iter()
        .enumerate()
        .map(|(i, identity)| maglev::Entry {
            id: i as u32,
            identity,
            weight: i as u32 + 1,
        })
        .collect();
    let t = maglev::table(&weighted, m, u32::MAX);
    let shares = (0..3)
        .map(|i| {
            let got = t.iter().filter(|&&s| s == i).count() as f64 / f64::from(m);
            (got, f64::from(i + 1) / 6.0)
        })
        .collect();
    (out, shares)
}

pub fn run(repeat: u32, json: Option<&Path>) -> Result<()> {
    let storage = Box::leak(Box::new(std::mem::MaybeUninit::uninit()));
    let mut open_floor = XdpFloorSkelBuilder::default().open(storage)?;
    open_floor.maps.bench_addrs.set_max_entries(CLIENTS)?;
    let floor_skel = open_floor.load().context("loading xdp_floor")?;
    let floor = &floor_skel.progs.xdp_floor_spread;
    let dp = Dataplane::load(&LoadOptions {
        bench_addrs: Some(CLIENTS),
        ..LoadOptions::default()
    })?;
    dp.firewall_maps()?.apply(&crate::ruleset::compile(
        &crate::config::FirewallConfig::default(),
    )?)?;
    let clients: Vec<Ipv4Addr> = (0..CLIENTS)
        .map(|i| Ipv4Addr::from(0x0a01_0000 + i))
        .collect();
    for map in [
        MapHandle::try_from(&dp.firewall.maps.bench_addrs)?,
        MapHandle::try_from(&floor_skel.maps.bench_addrs)?,
    ] {
        fill_bench_addrs(&map, &clients)?;
    }
    let mut lb = dp.lb_maps()?;
    lb.sync(&LbState::new(bench_config()).views())?;
    let chain = &dp.firewall.progs.xdp_chain_spread;

    let mut rows = Vec::new();
    let mut measure = |scenario: &str, port: u16| -> Result<f64> {
        let frame = udp_frame(Ipv4Addr::new(10, 1, 0, 0), port);
        let (ns, floor_ns) = time_against_floor(chain, floor, &frame, repeat)?;
        println!(
            "{scenario:<56} {ns:>8.1} ns {:>6.2}x floor ({floor_ns:.1} ns)",
            ns / floor_ns
        );
        rows.push(Row::new(scenario.into(), "spread", ns, floor_ns));
        Ok(ns)
    };
    dp.set_stage(xdp_stage::XDP_STAGE_LB, false)?;
    let off = measure("chain, LB slot empty (VIP packet)", HIT_PORT)?;
    dp.set_stage(xdp_stage::XDP_STAGE_LB, true)?;
    let miss = measure("chain + xdp_lb: miss (no service, no backend)", MISS_PORT)?;
    let hit = measure("chain + xdp_lb: VIP hit (Maglev, rewrite, FIB)", HIT_PORT)?;
    let stats = lb.stats()?;
    let counters: Vec<String> = LB_STATS
        .iter()
        .filter(|(s, _)| stats[s.0 as usize] > 0)
        .map(|(s, name)| format!("{name} {}", stats[s.0 as usize]))
        .collect();
    println!("lb_stats after the runs: {}", counters.join(", "));
    let (lb_hit_ns, lb_miss_ns) = (hit - off, miss - off);
    println!("xdp_lb adds {lb_hit_ns:.1} ns per hit, {lb_miss_ns:.1} ns per miss");

    let (movement, weight_shares) = movement();
    println!("\nMaglev, {MAX_LB_TABLE_SIZE} slots: flows moved when one of N backends is removed");
    for m in &movement {
        println!(
            "  N={:<2} worst {:.4} mean {:.4} (bound 1/N + 2% = {:.4})",
            m.backends, m.moved_max, m.moved_mean, m.bound
        );
    }
    for (i, (got, want)) in weight_shares.iter().enumerate() {
        println!(
            "  weight {}: {:.4} of the slots, weight share {want:.4}",
            i + 1,
            got
        );
    }
    let mut targets: Vec<Target> = movement
        .iter()
        .map(|m| {
            Target::at_most(
                format!("flows moved removing 1 of {}", m.backends),
                m.moved_max,
                m.bound,
            )
        })
        .collect();
    targets.push(Target::at_most(
        "weight share error (largest)",
        weight_shares
            .iter()
            .map(|(g, w)| (g - w).abs())
            .fold(0.0, f64::max),
        0.02,
    ));
    print_targets(&targets);
    write_json(
        json,
        &Report {
            repeat,
            rows,
            lb_hit_ns,
            lb_miss_ns,
            movement,
            weight_shares,
            targets,
        },
    )
}
