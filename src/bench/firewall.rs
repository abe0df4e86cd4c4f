//! xdp_firewall: general-rule scaling and CIDR-only scaling, hot key and spread keys.

use crate::maps::Generations;
use std::net::Ipv4Addr;
use std::path::Path;
use std::time::Instant;

use anyhow::{Context, Result};
use libbpf_rs::skel::{OpenSkel, SkelBuilder};
use libbpf_rs::{MapHandle, ProgramMut};
use serde::Serialize;

use super::{
    covered, fill_bench_addrs, firewall, general_rule_net, general_rules, print_targets,
    random_cidrs, time_against_floor, udp_frame, write_json, Rng, Row, Target,
};
use crate::loader::{Dataplane, LoadOptions};
use crate::ruleset;
use crate::skel::xdp_floor::XdpFloorSkelBuilder;

#[derive(Debug, Serialize)]
struct Report {
    repeat: u32,
    rows: Vec<Row>,
    targets: Vec<Target>,
}

const SPREAD_KEYS: u32 = 65536;

pub fn run(repeat: u32, max_cidrs: usize, json: Option<&Path>) -> Result<()> {
    let mut rng = Rng(0x5eed);
    let mut rows: Vec<Row> = Vec::new();

    let storage = Box::leak(Box::new(std::mem::MaybeUninit::uninit()));
    let mut open_floor = XdpFloorSkelBuilder::default().open(storage)?;
    open_floor.maps.bench_addrs.set_max_entries(SPREAD_KEYS)?;
    let floor = open_floor.load().context("loading xdp_floor")?;
    let floor_addrs = MapHandle::try_from(&floor.maps.bench_addrs)?;

    let dp = Dataplane::load(&LoadOptions {
        pin_root: None,
        bench_addrs: Some(SPREAD_KEYS),
        ct_table_size: None,
    })?;
    let maps = dp.firewall_maps()?;
    let fw_addrs = MapHandle::try_from(&dp.firewall.maps.bench_addrs)?;
    let hot_prog = &dp.firewall.progs.xdp_firewall;
    let spread_prog = &dp.firewall.progs.xdp_firewall_spread;

    let miss = udp_frame(Ipv4Addr::new(192, 0, 2, 77), 33333);
    let floor_hot = &floor.progs.xdp_floor;
    let floor_spread = &floor.progs.xdp_floor_spread;
    let measure = |rows: &mut Vec<Row>,
                   scenario: String,
                   keys: &'static str,
                   prog: &ProgramMut,
                   floor: &ProgramMut,
                   frame: &[u8]|
     -> Result<(f64, f64)> {
        let (ns, floor_ns) = time_against_floor(prog, floor, frame, repeat)?;
        println!(
            "{scenario:<62} {keys:<7} {ns:>8.1} ns {:>6.2}x floor ({floor_ns:.1} ns)",
            ns / floor_ns
        );
        rows.push(Row::new(scenario, keys, ns, floor_ns));
        Ok((ns, floor_ns))
    };

    let mut general_cost = Vec::new();
    for n in [0usize, 1, 100, 1000, 4096] {
        let rs = ruleset::compile(&firewall(general_rules(n), &[]))?;
        maps.apply(&rs)?;
        let (ns, _) = measure(
            &mut rows,
            format!("firewall: {n} general rules, no match"),
            "hot",
            hot_prog,
            floor_hot,
            &miss,
        )?;
        if n > 0 {
            let last = udp_frame(
                (u32::from(general_rule_net(n - 1).network()) + 7).into(),
                1024 + n as u16 - 1,
            );
            let (ns_last, _) = measure(
                &mut rows,
                format!("firewall: {n} general rules, last rule matches"),
                "hot",
                hot_prog,
                floor_hot,
                &last,
            )?;
            general_cost.push((n, ns, ns_last));
        }
    }

    let mut targets = Vec::new();
    if let (Some(one), Some(full)) = (general_cost.first(), general_cost.last()) {
        for (label, a, b) in [("no match", one.1, full.1), ("last rule", one.2, full.2)] {
            targets.push(Target {
                what: format!("4096 general rules vs 1 rule ({label})"),
                measured: b / a,
                limit: 1.5,
                met: b / a <= 1.5,
            });
        }
    }

    let spread_src: Vec<Ipv4Addr> = (0..SPREAD_KEYS)
        .map(|_| Ipv4Addr::from(rng.next_u64() as u32))
        .collect();
    // 25% host routes is the mix of the FireHOL and Spamhaus feeds; large IP blocklists are
    // host routes only
    let sets = [
        (1_000usize, 25u64),
        (100_000, 25),
        (100_000, 100),
        (1_000_000, 25),
        (1_000_000, 100),
    ];
    for (size, hosts_pct) in sets.into_iter().filter(|&(s, _)| s <= max_cidrs) {
        let cidrs = random_cidrs(size, hosts_pct, &mut rng);
        let label = format!("{size} CIDRs ({hosts_pct}% /32) + 4096 general rules, pass");
        let is_covered = covered(&cidrs);
        let spread: Vec<Ipv4Addr> = spread_src
            .iter()
            .copied()
            .filter(|a| !is_covered(*a) && a.octets()[0] != 10)
            .collect();
        let keys: Vec<Ipv4Addr> = spread
            .iter()
            .copied()
            .cycle()
            .take(SPREAD_KEYS as usize)
            .collect();
        fill_bench_addrs(&fw_addrs, &keys)?;
        fill_bench_addrs(&floor_addrs, &keys)?;

        let t = Instant::now();
        let rs = ruleset::compile(&firewall(general_rules(4096), &cidrs))?;
        let compiled = t.elapsed();
        let t = Instant::now();
        maps.apply(&rs)?;
        let applied = t.elapsed();
        println!(
            "  ({size} CIDRs: compiled in {:.2} s, written in {:.2} s; {} keys outside the set)",
            compiled.as_secs_f64(),
            applied.as_secs_f64(),
            spread.len()
        );
        let (hot, hot_floor) = measure(
            &mut rows,
            format!("firewall: {label}"),
            "hot",
            hot_prog,
            floor_hot,
            &miss,
        )?;
        let (spread_ns, spread_floor) = measure(
            &mut rows,
            format!("firewall: {label}"),
            "spread",
            spread_prog,
            floor_spread,
            &miss,
        )?;
        if size == 100_000 {
            targets.push(Target {
                what: format!(
                    "100k CIDRs ({hosts_pct}% /32) + 4096 rules, pass, hot key, vs floor"
                ),
                measured: hot / hot_floor,
                limit: 4.0,
                met: hot / hot_floor <= 4.0,
            });
            // the harness's own address rewrite is in both spread programs; compare the rest
            let spread_stage = spread_ns - spread_floor + hot_floor;
            targets.push(Target {
                what: format!("100k CIDRs ({hosts_pct}% /32) + 4096 rules, spread keys vs hot key"),
                measured: spread_stage / hot,
                limit: 3.0,
                met: spread_stage / hot <= 3.0,
            });
        }
    }

    print_targets(&targets);
    let report = Report {
        repeat,
        rows,
        targets,
    };
    write_json(json, &report)
}
