use crate::maps::Generations;
use std::collections::BTreeMap;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use serde::Serialize;

use super::Outcome;
use crate::abi::fw_stat;
use crate::maps::firewall::FirewallMaps;
use crate::metrics::{
    stat_label, BlacklistSummary, ConntrackSummary, ConsumerCounters, RuleHits, Snapshot,
    ThreatIntelSummary, VERDICT_STATS,
};
use crate::state;

/// Print the dataplane's counters, read straight from the pinned maps: no daemon needed.
///
/// Opens the maps pinned under --pin-root on bpffs and prints what the kernel counted, summed
/// over CPUs, under the names of the Prometheus metrics: packets by verdict and reason, packets
/// seen, events sent and dropped, and the hits of each rule of the active ruleset generation.
/// It works whether or not a daemon runs (pins outlive it) and changes nothing.
///
/// Rule ids come from the state file a running daemon keeps in /run/ebpfsentinel; without it
/// the number of rules of the active generation is unknown, so only the verdict counters are
/// printed. Verdict counters count since the maps were created, rule hits since the active
/// ruleset was applied.
///
/// When a conntrack table is pinned too, it adds its entries by protocol and state and the
/// conntrack counters; when threat-intel maps are, the IOCs they hold, tc_threatintel's
/// counters and the daemon's feeds; and the IPS blacklist's size.
///
/// Exits 1 when nothing is pinned at the pin root.
#[derive(Debug, clap::Args)]
pub struct StatsArgs {
    /// The directory on bpffs the maps are pinned in (the daemon's pin root).
    #[arg(long, default_value = "/sys/fs/bpf/ebpfsentinel", value_name = "DIR")]
    pin_root: PathBuf,
    /// Print one JSON object: {generation, packets: {verdict: {reason: n}}, seen, events:
    /// {sent, dropped}, rules: [{id, packets, bytes}], conntrack: {entries, by_state: {proto:
    /// {state: n}}, counters: {name: n}}, threatintel: {enabled, generation, quarantine_vlan,
    /// iocs: {exact_v4, exact_v6, cidr_v4, cidr_v6}, counters: {name: n}, feeds: [...]},
    /// blacklist: {blocked, networks, permanent}}; rules is null when the ids are unknown,
    /// conntrack, threatintel and blacklist absent when their maps are not pinned.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Serialize)]
struct Events {
    sent: u64,
    dropped: u64,
}

#[derive(Debug, Serialize)]
struct Stats {
    generation: u32,
    packets: BTreeMap<&'static str, BTreeMap<&'static str, u64>>,
    seen: u64,
    events: Events,
    rules: Option<Vec<RuleHits>>,
    /// why `rules` is null
    #[serde(skip_serializing_if = "Option::is_none")]
    rules_unavailable: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    conntrack: Option<ConntrackSummary>,
    #[serde(skip_serializing_if = "Option::is_none")]
    threatintel: Option<ThreatIntelSummary>,
    #[serde(skip_serializing_if = "Option::is_none")]
    blacklist: Option<BlacklistSummary>,
}

/// The rule ids of `generation`, by rank, or why they are unknown.
fn rule_ids(pin_root: &Path, generation: u32) -> std::result::Result<Vec<String>, String> {
    let path = state::state_path(pin_root);
    let Some(daemon) = state::read(pin_root) else {
        return Err(format!(
            "no daemon state file {}: without it the number of rules of the active generation \
             and their ids are unknown (hit counters past the last rule may still hold counts \
             of an earlier ruleset)",
            path.display()
        ));
    };
    if daemon.generation != generation {
        return Err(format!(
            "the daemon state file {} describes generation {} but generation {generation} is \
             active (a reload in progress, or a file left by another dataplane)",
            path.display(),
            daemon.generation
        ));
    }
    Ok(daemon.rules)
}

fn read(pin_root: &Path, maps: &FirewallMaps) -> Result<Stats> {
    // A reload between reading the generation, the ids and the counters mixes two
    // rulesets: read again until the generation held still.
    let mut attempts = 0;
    let (snap, ids) = loop {
        let generation = maps.active_generation()?;
        let ids = rule_ids(pin_root, generation);
        let names: &[String] = ids.as_deref().unwrap_or(&[]);
        let snap = Snapshot::read(maps, generation, names, &[], &ConsumerCounters::default())?;
        attempts += 1;
        if maps.active_generation()? == generation || attempts == 3 {
            break (snap, ids);
        }
    };

    let mut packets: BTreeMap<&str, BTreeMap<&str, u64>> = BTreeMap::new();
    for stat in VERDICT_STATS {
        let (verdict, reason) = stat_label(stat);
        packets
            .entry(verdict)
            .or_default()
            .insert(reason, snap.stat(stat));
    }
    let (rules, rules_unavailable) = match ids {
        Ok(_) => (Some(snap.rules.clone()), None),
        Err(why) => (None, Some(why)),
    };
    Ok(Stats {
        generation: snap.generation,
        packets,
        seen: snap.stat(fw_stat::FW_STAT_SEEN),
        events: Events {
            sent: snap.stat(fw_stat::FW_STAT_EVENTS_SENT),
            dropped: snap.stat(fw_stat::FW_STAT_EVENTS_DROPPED),
        },
        rules,
        rules_unavailable,
        conntrack: None,
        threatintel: None,
        blacklist: None,
    })
}

fn print_text(pin_root: &Path, s: &Stats) {
    println!(
        "pin root {}: ruleset generation {}",
        pin_root.display(),
        s.generation
    );
    println!("packets seen: {}", s.seen);
    println!("{:<8} {:<16} {:>14}", "verdict", "reason", "packets");
    for stat in VERDICT_STATS {
        let (verdict, reason) = stat_label(stat);
        let n = s.packets[verdict][reason];
        println!("{verdict:<8} {reason:<16} {n:>14}");
    }
    println!(
        "events: {} sent, {} dropped in the kernel (ring buffer over 3/4 full)",
        s.events.sent, s.events.dropped
    );
    match (&s.rules, &s.rules_unavailable) {
        (Some(rules), _) => {
            println!(
                "rule hits since generation {} was applied: {} rules",
                s.generation,
                rules.len()
            );
            if !rules.is_empty() {
                println!("{:<32} {:>14} {:>16}", "rule", "packets", "bytes");
            }
            for r in rules {
                println!("{:<32} {:>14} {:>16}", r.id, r.packets, r.bytes);
            }
        }
        (None, why) => println!(
            "rule hits: not shown: {}",
            why.as_deref().unwrap_or("unknown rule ids")
        ),
    }
    if let Some(ct) = &s.conntrack {
        print_conntrack(ct);
    }
    if let Some(ti) = &s.threatintel {
        print_threatintel(ti);
    }
    if let Some(bl) = &s.blacklist {
        println!("ips blacklist: {}", bl.headline());
    }
}

fn print_threatintel(ti: &ThreatIntelSummary) {
    println!("threat intel: {}", ti.headline());
    println!("{:<25} {:>14}", "threat-intel counter", "count");
    for (name, n) in ti.counter_lines() {
        println!("{name:<25} {n:>14}");
    }
    for f in &ti.feeds {
        match &f.last_error {
            Some(e) => println!("feed {}: {} entries, last error: {e}", f.id, f.entries),
            None => println!("feed {}: {} entries", f.id, f.entries),
        }
    }
}

fn print_conntrack(ct: &ConntrackSummary) {
    let states = ct.states_text();
    if states.is_empty() {
        println!("conntrack: {} entries", ct.entries);
    } else {
        println!("conntrack: {} entries ({states})", ct.entries);
    }
    println!("{:<25} {:>14}", "conntrack counter", "count");
    for (name, n) in ct.counter_lines() {
        println!("{name:<25} {n:>14}");
    }
}

pub fn execute(args: StatsArgs) -> Result<Outcome> {
    // fw_active_gen stands for the whole set: FirewallMaps::from_pins names the first map
    // missing when only some are pinned.
    let probe = args.pin_root.join("fw_active_gen");
    match std::fs::symlink_metadata(&probe) {
        Ok(_) => {}
        Err(e) if e.kind() == ErrorKind::NotFound => {
            eprintln!(
                "ebpfsentinel: nothing is pinned at {} (no {}): no dataplane has pinned its \
                 maps there, or they have been removed",
                args.pin_root.display(),
                probe.display()
            );
            return Ok(Outcome::Negative);
        }
        Err(e) => {
            return Err(e).with_context(|| {
                format!(
                    "looking for pinned maps at {} (reading bpffs pins needs root)",
                    args.pin_root.display()
                )
            })
        }
    }
    let maps = FirewallMaps::from_pins(&args.pin_root)?;
    let mut stats = read(&args.pin_root, &maps)?;
    stats.conntrack = ConntrackSummary::read_pinned(&args.pin_root)?;
    stats.threatintel = ThreatIntelSummary::read_pinned(&args.pin_root)?;
    stats.blacklist = BlacklistSummary::read_pinned(&args.pin_root)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&stats)?);
    } else {
        print_text(&args.pin_root, &stats);
    }
    Ok(Outcome::Ok)
}
