//! The conntrack fast path: a reply of an established flow through xdp_firewall (one table
//! lookup, no rule) against the same packet evaluated by the full ruleset, and tc_conntrack's
//! own cost per packet on the TC hook.

use std::net::Ipv4Addr;
use std::path::Path;

use anyhow::{bail, Context, Result};
use libbpf_rs::skel::{OpenSkel, SkelBuilder};
use libbpf_rs::ProgramInput;
use serde::Serialize;

use super::{
    firewall, general_rule_net, general_rules, print_targets, time_against_floor, udp_frame,
    write_json, Row, Target,
};
use crate::config::ConntrackConfig;
use crate::loader::{Dataplane, LoadOptions};
use crate::maps::Generations;
use crate::ruleset;
use crate::skel::xdp_floor::XdpFloorSkelBuilder;

#[derive(Debug, Serialize)]
struct Report {
    repeat: u32,
    rules: usize,
    rows: Vec<Row>,
    targets: Vec<Target>,
}

const RULES: usize = 4096;

pub fn run(repeat: u32, json: Option<&Path>) -> Result<()> {
    let storage = Box::leak(Box::new(std::mem::MaybeUninit::uninit()));
    let open_floor = XdpFloorSkelBuilder::default().open(storage)?;
    let floor = open_floor.load().context("loading xdp_floor")?;
    let floor_prog = &floor.progs.xdp_floor;

    let dp = Dataplane::load(&LoadOptions::default())?;
    let maps = dp.firewall_maps()?;
    let ct = dp.conntrack_maps()?;
    maps.apply(&ruleset::compile(&firewall(general_rules(RULES), &[]))?)?;

    // the reply of a flow this host (192.0.2.1) opened, matching the last rule
    let remote = Ipv4Addr::from(u32::from(general_rule_net(RULES - 1).network()) + 7);
    let dport = 1024 + RULES as u16 - 1;
    let reply = udp_frame(remote, dport);
    let request = crate::packet::PacketBuilder::new()
        .ipv4(Ipv4Addr::new(192, 0, 2, 1), remote)
        .udp(dport, 40000)
        .payload(&[0u8; 18])
        .build();

    let xdp = &dp.firewall.progs.xdp_firewall;
    let mut rows = Vec::new();
    let mut measure = |scenario: &str, prog: &libbpf_rs::ProgramMut, floor| -> Result<f64> {
        let (ns, floor_ns) = time_against_floor(prog, floor, &reply, repeat)?;
        println!(
            "{scenario:<64} {ns:>8.1} ns {:>6.2}x floor ({floor_ns:.1} ns)",
            ns / floor_ns
        );
        rows.push(Row::new(scenario.into(), "hot", ns, floor_ns));
        Ok(ns)
    };

    ct.apply(&ConntrackConfig::default())?;
    let rules_only = measure(
        &format!("firewall: {RULES} general rules, last matches (conntrack off)"),
        xdp,
        floor_prog,
    )?;
    let on = ConntrackConfig {
        enabled: true,
        ..ConntrackConfig::default()
    };
    ct.apply(&on)?;
    let untracked = measure(
        &format!("firewall: {RULES} general rules, last matches (no flow: lookup + rules)"),
        xdp,
        floor_prog,
    )?;
    let tc_egress = &dp.conntrack.progs.tc_egress;
    let sent = tc_egress.test_run(ProgramInput {
        data_in: Some(&request),
        ..Default::default()
    })?;
    if sent.return_value as i32 != -1 {
        bail!("tc_egress returned {} for the request", sent.return_value);
    }
    if ct.flows()?.len() != 1 {
        bail!("the request opened no flow");
    }
    let fast = measure(
        "firewall: established flow on the conntrack fast path",
        xdp,
        floor_prog,
    )?;
    // Rule evaluation that walks LPM tries: a 100k-prefix blocklist the reply is not in.
    let mut rng = super::Rng(0xc0ffee);
    let cidrs: Vec<_> = super::random_cidrs(100_000, 25, &mut rng)
        .into_iter()
        .filter(|n| !n.contains(&remote))
        .collect();
    maps.apply(&ruleset::compile(&firewall(general_rules(RULES), &cidrs))?)?;
    ct.apply(&ConntrackConfig::default())?;
    let tries_only = measure(
        &format!(
            "firewall: {} CIDRs + {RULES} rules, last matches (conntrack off)",
            cidrs.len()
        ),
        xdp,
        floor_prog,
    )?;
    ct.apply(&on)?;
    let tries_fast = measure(
        &format!(
            "firewall: {} CIDRs + {RULES} rules, established fast path",
            cidrs.len()
        ),
        xdp,
        floor_prog,
    )?;

    let tc_ingress = &dp.conntrack.progs.tc_ingress;
    // TC's own floor: the entry program with tracking off (parse, chain, no table)
    let mut tc_rows = Vec::new();
    for (label, cfg) in [
        ("tracking off", ConntrackConfig::default()),
        ("tracking on", on.clone()),
    ] {
        ct.apply(&cfg)?;
        let mut best = f64::MAX;
        for _ in 0..super::ROUNDS {
            best = best.min(super::time_once(tc_ingress, &reply, repeat)?);
        }
        println!("tc ingress, established UDP reply, {label:<42} {best:>8.1} ns");
        tc_rows.push(best);
    }
    rows.push(Row::new(
        "tc_conntrack: established UDP reply (floor: TC entry, tracking off)".into(),
        "hot",
        tc_rows[1],
        tc_rows[0],
    ));
    println!(
        "tc_conntrack adds {:.1} ns per packet",
        tc_rows[1] - tc_rows[0]
    );

    let targets = vec![
        Target::at_most(
            "established fast path vs 100k CIDRs + 4096 rules".to_string(),
            tries_fast / tries_only,
            0.8,
        ),
        Target::at_most(
            "conntrack miss lookup + rules vs rules alone".to_string(),
            untracked / rules_only,
            1.5,
        ),
    ];
    // The bitmap classifier costs the same whatever the number of general rules, about what
    // one conntrack lookup costs: the fast path pays off where rule evaluation walks tries.
    println!(
        "established fast path vs {RULES} general rules alone: {:.2}x",
        fast / rules_only
    );
    print_targets(&targets);
    write_json(
        json,
        &Report {
            repeat,
            rules: RULES,
            rows,
            targets,
        },
    )
}
