use std::path::PathBuf;

use anyhow::Result;
use serde::Serialize;

use super::Outcome;
use crate::abi::fw_stat;
use crate::maps::firewall::FirewallMaps;
use crate::state::{self, AttachedInterface};

/// Show whether a daemon runs for a pin root, where it is attached, and its packet counters.
///
/// Exits 1 when no daemon runs and nothing is pinned.
#[derive(Debug, clap::Args)]
pub struct StatusArgs {
    /// The pin root the daemon was started with.
    #[arg(long, default_value = "/sys/fs/bpf/ebpfsentinel", value_name = "DIR")]
    pin_root: PathBuf,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Serialize)]
struct RuleHits {
    id: String,
    packets: u64,
    bytes: u64,
}

#[derive(Debug, Serialize)]
struct Status {
    pin_root: PathBuf,
    daemon_pid: Option<u32>,
    pinned: bool,
    generation: Option<u32>,
    rules: Vec<RuleHits>,
    interfaces: Vec<AttachedInterface>,
    counters: Vec<(String, u64)>,
}

pub fn stat_name(slot: u32) -> &'static str {
    match fw_stat(slot) {
        fw_stat::FW_STAT_SEEN => "seen",
        fw_stat::FW_STAT_PASS_RULE => "pass_rule",
        fw_stat::FW_STAT_PASS_DEFAULT => "pass_default",
        fw_stat::FW_STAT_PASS_ALLOWLIST => "pass_allowlist",
        fw_stat::FW_STAT_PASS_NON_IP => "pass_non_ip",
        fw_stat::FW_STAT_PASS_MALFORMED => "pass_malformed",
        fw_stat::FW_STAT_PASS_MONITOR => "pass_monitor",
        fw_stat::FW_STAT_DROP_RULE => "drop_rule",
        fw_stat::FW_STAT_DROP_DEFAULT => "drop_default",
        fw_stat::FW_STAT_DROP_MALFORMED => "drop_malformed",
        fw_stat::FW_STAT_EVENTS_SENT => "events_sent",
        fw_stat::FW_STAT_EVENTS_DROPPED => "events_dropped",
        _ => "unknown",
    }
}

/// Hit counters need the rule ids the daemon recorded: the kernel only knows ranks.
fn rule_hits(
    maps: Option<&FirewallMaps>,
    generation: Option<u32>,
    ids: Option<&Vec<String>>,
) -> Vec<RuleHits> {
    let (Some(maps), Some(gen), Some(ids)) = (maps, generation, ids) else {
        return Vec::new();
    };
    maps.rule_hits(gen, ids.len())
        .map(|hits| {
            ids.iter()
                .zip(hits)
                .map(|(id, (packets, bytes))| RuleHits {
                    id: id.clone(),
                    packets,
                    bytes,
                })
                .collect()
        })
        .unwrap_or_default()
}

pub fn execute(args: StatusArgs) -> Result<Outcome> {
    let daemon = state::read(&args.pin_root).filter(|s| state::pid_alive(s.pid));
    let maps = FirewallMaps::from_pins(&args.pin_root).ok();
    let generation = maps.as_ref().and_then(|m| m.active_generation().ok());
    let counters = maps
        .as_ref()
        .and_then(|m| m.stats().ok())
        .map(|v| {
            v.into_iter()
                .enumerate()
                .map(|(i, n)| (stat_name(i as u32).to_string(), n))
                .collect()
        })
        .unwrap_or_default();
    let status = Status {
        pin_root: args.pin_root.clone(),
        daemon_pid: daemon.as_ref().map(|d| d.pid),
        pinned: maps.is_some(),
        generation,
        rules: rule_hits(maps.as_ref(), generation, daemon.as_ref().map(|d| &d.rules)),
        interfaces: daemon.map(|d| d.interfaces).unwrap_or_default(),
        counters,
    };
    let found = status.daemon_pid.is_some() || status.pinned;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&status)?);
    } else {
        match status.daemon_pid {
            Some(pid) => println!("daemon: running (pid {pid})"),
            None => println!("daemon: not running"),
        }
        println!(
            "pin root: {} ({})",
            status.pin_root.display(),
            if status.pinned {
                "maps pinned"
            } else {
                "nothing pinned"
            }
        );
        if let Some(g) = status.generation {
            println!("ruleset: generation {g}, {} rules", status.rules.len());
        }
        for i in &status.interfaces {
            println!(
                "interface {} (ifindex {}): xdp {} prog {}",
                i.ifname, i.ifindex, i.mode, i.prog_id
            );
        }
        if !status.counters.is_empty() {
            println!("packets by verdict:");
        }
        for (name, n) in &status.counters {
            println!("  {name:<16} {n}");
        }
        if !status.rules.is_empty() {
            println!("rule hits (packets, bytes):");
        }
        for r in &status.rules {
            println!("  {:<24} {:>12} {:>14}", r.id, r.packets, r.bytes);
        }
    }
    Ok(if found {
        Outcome::Ok
    } else {
        Outcome::Negative
    })
}
