use crate::maps::Generations;
use std::path::PathBuf;

use anyhow::Result;
use serde::Serialize;

use super::{Outcome, PinRootArg};
use crate::abi::{fw_stat, rl_stat};
use crate::links::{self, XdpAttachment};
use crate::maps::firewall::FirewallMaps;
use crate::maps::ratelimit::RateLimitMaps;
use crate::metrics::{self, BlacklistSummary, ConntrackSummary, ThreatIntelSummary};
use crate::state::{self, MapLevel};

/// Show what enforces traffic under a pin root: the daemon (or "not running (enforcement
/// pinned)"), every interface with its attach mode and program id, the ruleset generation,
/// map fill levels, packets by verdict, hits per rule, the conntrack table's entries and
/// counters when one is pinned, threat intel (IOCs, counters, feeds) and the IPS blacklist.
///
/// Exits 1 when no daemon runs and nothing is pinned.
#[derive(Debug, clap::Args)]
pub struct StatusArgs {
    #[command(flatten)]
    pin_root: PinRootArg,
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
struct InterfaceStatus {
    #[serde(flatten)]
    recorded: XdpAttachment,
    /// what the kernel reports now: (mode, program id), None when nothing is attached
    attached_now: Option<(links::AttachMode, u32)>,
    /// the daemon runs in another network namespace: its ifindexes mean nothing here
    other_netns: bool,
}

#[derive(Debug, Serialize)]
struct Status {
    pin_root: PathBuf,
    daemon_pid: Option<u32>,
    pinned: bool,
    generation: Option<u32>,
    rules: Vec<RuleHits>,
    interfaces: Vec<InterfaceStatus>,
    maps: Vec<MapLevel>,
    counters: Vec<(String, u64)>,
    ratelimit: Vec<(String, u64)>,
    /// xdp_lb's counters by result (empty when its maps are not pinned)
    lb: Vec<(String, u64)>,
    /// null when no conntrack table is pinned
    conntrack: Option<ConntrackSummary>,
    /// null when no threat-intel maps are pinned
    threatintel: Option<ThreatIntelSummary>,
    /// tc_ids's counters; null when its maps are not pinned or the stage is off
    ids: Option<IdsSummary>,
    /// tc_scrub's settings and counters; null when its maps are not pinned or the stage is off
    scrub: Option<ScrubSummary>,
    /// null when no blacklist is pinned
    blacklist: Option<BlacklistSummary>,
    /// null when no DNS blocklist is pinned
    dns: Option<crate::metrics::DnsSummary>,
    kernel: crate::features::Features,
}

/// "drop/rule", "pass/default_policy", "seen": the labels the metrics carry.
fn counter_name(stat: fw_stat) -> String {
    match metrics::stat_label(stat) {
        ("", what) => what.to_string(),
        (verdict, reason) => format!("{verdict}/{reason}"),
    }
}

/// The metrics' labels: "drop/over_rate", "tx/syn_cookie", "syn/received".
fn rl_counter_name(stat: rl_stat) -> String {
    match stat {
        rl_stat::RL_STAT_SEEN => "seen".into(),
        rl_stat::RL_STAT_EVENTS_SENT => "events_sent".into(),
        rl_stat::RL_STAT_EVENTS_DROPPED => "events_dropped".into(),
        _ => match (metrics::rl_stat_label(stat), metrics::syn_stat_label(stat)) {
            (Some((verdict, reason)), _) => format!("{verdict}/{reason}"),
            (None, Some(what)) => format!("syn/{what}"),
            (None, None) => format!("slot {}", stat.0),
        },
    }
}

/// Hit counters need the rule ids the daemon recorded: the kernel only knows ranks.
fn rule_hits(maps: &FirewallMaps, gen: u32, ids: &[String]) -> Vec<RuleHits> {
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
    let root = &args.pin_root.pin_root;
    let recorded = state::read(root);
    let daemon_pid = recorded
        .as_ref()
        .map(|s| s.pid)
        .filter(|&pid| state::pid_alive(pid));
    let maps = FirewallMaps::from_pins(root).ok();
    let generation = maps.as_ref().and_then(|m| m.active_generation().ok());
    let counters = maps
        .as_ref()
        .and_then(|m| m.stats().ok())
        .map(|v| {
            v.into_iter()
                .enumerate()
                .map(|(i, n)| (counter_name(fw_stat(i as u32)), n))
                .collect()
        })
        .unwrap_or_default();
    let rules = match (&maps, generation, &recorded) {
        (Some(m), Some(g), Some(r)) => rule_hits(m, g, &r.rules),
        _ => Vec::new(),
    };
    let (interfaces, map_levels) = match recorded {
        Some(r) => {
            let other_netns = r.netns_inode != state::netns_inode();
            (
                r.interfaces
                    .into_iter()
                    .map(|a| InterfaceStatus {
                        attached_now: if other_netns {
                            None
                        } else {
                            links::query(a.ifindex)
                        },
                        other_netns,
                        recorded: a,
                    })
                    .collect(),
                r.maps,
            )
        }
        None => (Vec::new(), Vec::new()),
    };
    let status = Status {
        pin_root: root.clone(),
        daemon_pid,
        pinned: maps.is_some(),
        generation,
        rules,
        interfaces,
        maps: map_levels,
        counters,
        ratelimit: RateLimitMaps::from_pins(root)
            .and_then(|m| m.stats())
            .map(|v| {
                v.into_iter()
                    .enumerate()
                    .map(|(i, n)| (rl_counter_name(rl_stat(i as u32)).to_string(), n))
                    .collect()
            })
            .unwrap_or_default(),
        lb: crate::maps::lb::LbMaps::from_pins(root)
            .and_then(|m| m.stats())
            .map(|v| {
                crate::maps::lb::LB_STATS
                    .iter()
                    .map(|(s, name)| (name.to_string(), v[s.0 as usize]))
                    .collect()
            })
            .unwrap_or_default(),
        conntrack: ConntrackSummary::read_pinned(root).ok().flatten(),
        threatintel: ThreatIntelSummary::read_pinned(root).ok().flatten(),
        ids: IdsSummary::read_pinned(root).ok().flatten(),
        scrub: ScrubSummary::read_pinned(root).ok().flatten(),
        blacklist: BlacklistSummary::read_pinned(root).ok().flatten(),
        dns: crate::metrics::DnsSummary::read_pinned(root).ok().flatten(),
        kernel: crate::features::probe(),
    };
    let found = status.daemon_pid.is_some() || status.pinned;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&status)?);
    } else {
        print_text(&status);
    }
    Ok(if found {
        Outcome::Ok
    } else {
        Outcome::Negative
    })
}

fn print_text(status: &Status) {
    match (status.daemon_pid, status.pinned) {
        (Some(pid), _) => println!("daemon: running (pid {pid})"),
        (None, true) => println!("daemon: not running (enforcement pinned)"),
        (None, false) => println!("daemon: not running"),
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
        let a = &i.recorded;
        let now = match i.attached_now {
            _ if i.other_netns => "in another network namespace".into(),
            Some((mode, id)) if id == a.prog_id => format!("attached ({mode})"),
            Some((_, id)) => format!("now runs another program (id {id})"),
            None => "nothing attached now".into(),
        };
        println!(
            "interface {} (ifindex {}): xdp {} via {}, prog {}: {now}",
            a.ifname, a.ifindex, a.mode, a.hook, a.prog_id
        );
    }
    if !status.maps.is_empty() {
        println!("map fill (active generation):");
    }
    for m in &status.maps {
        println!("  {:<18} {:>9} / {}", m.map, m.entries, m.capacity);
    }
    if !status.counters.is_empty() {
        println!("packets by verdict:");
    }
    for (name, n) in &status.counters {
        println!("  {name:<24} {n}");
    }
    if !status.ratelimit.is_empty() {
        println!("rate limiter:");
    }
    for (name, n) in &status.ratelimit {
        println!("  {name:<24} {n}");
    }
    if status.lb.iter().any(|(_, n)| *n > 0) {
        println!("load balancer:");
        for (name, n) in &status.lb {
            println!("  {name:<24} {n}");
        }
    }
    if let Some(ct) = &status.conntrack {
        match ct.states_text() {
            states if states.is_empty() => println!("conntrack: {} entries", ct.entries),
            states => println!("conntrack: {} entries ({states})", ct.entries),
        }
        for (name, n) in ct.counter_lines() {
            println!("  {name:<24} {n}");
        }
    }
    if let Some(ti) = &status.threatintel {
        println!("threat intel: {}", ti.headline());
        for (name, n) in ti.counter_lines() {
            println!("  {name:<24} {n}");
        }
        for f in &ti.feeds {
            match &f.last_error {
                Some(e) => println!("  feed {:<19} {} entries, last error: {e}", f.id, f.entries),
                None => println!("  feed {:<19} {} entries", f.id, f.entries),
            }
        }
    }
    if let Some(ids) = &status.ids {
        println!(
            "ids: generation {}, {} index keys, sampling {:.3}",
            ids.generation, ids.index_keys, ids.sampling
        );
        for (name, n) in &ids.counters {
            println!("  {name:<24} {n}");
        }
    }
    if let Some(sc) = &status.scrub {
        println!("scrub: {}", sc.settings);
        for (name, n) in &sc.counters {
            println!("  {name:<24} {n}");
        }
    }
    if let Some(bl) = &status.blacklist {
        println!("ips blacklist: {}", bl.headline());
    }
    if let Some(dns) = &status.dns {
        println!("dns blocklist: {}", dns.headline());
        for (name, n) in &dns.counters {
            println!("  {name:<24} {n}");
        }
        for l in &dns.lists {
            match &l.last_error {
                Some(e) => println!("  list {:<19} {} domains, last error: {e}", l.id, l.domains),
                None => println!("  list {:<19} {} domains", l.id, l.domains),
            }
        }
    }
    if !status.rules.is_empty() {
        println!("rule hits (packets, bytes):");
    }
    for r in &status.rules {
        println!("  {:<24} {:>12} {:>14}", r.id, r.packets, r.bytes);
    }
    let k = &status.kernel;
    let missing: Vec<String> = k
        .features
        .iter()
        .filter(|f| f.available == Some(false))
        .map(|f| format!("{} (Linux {})", f.name, f.since))
        .collect();
    let unprobed = k.features.iter().all(|f| f.available.is_none());
    println!(
        "kernel {}: BTF {}; {}",
        k.kernel,
        if k.btf { "yes" } else { "no" },
        if unprobed {
            "BPF features not probed (needs CAP_BPF)".to_string()
        } else if missing.is_empty() {
            "every probed BPF feature is available".to_string()
        } else {
            format!("missing: {}", missing.join(", "))
        }
    );
}

/// tc_scrub as its pinned maps show it.
#[derive(Debug, serde::Serialize)]
struct ScrubSummary {
    /// what it rewrites, as the config says it: "min_ttl 64, max_mss 1400, clear_df"
    settings: String,
    counters: Vec<(String, u64)>,
}

impl ScrubSummary {
    fn read_pinned(root: &std::path::Path) -> anyhow::Result<Option<ScrubSummary>> {
        use crate::maps::scrub::{scrub_flags, stat_name, ScrubMaps, SCRUB_STATS};
        if !root.join("scrub_settings").exists() {
            return Ok(None);
        }
        let maps = ScrubMaps::from_pins(root)?;
        let s = maps.settings()?;
        if s.flags & scrub_flags::SCRUB_F_ENABLED.0 == 0 {
            return Ok(None);
        }
        let mut what = Vec::new();
        if s.flags & scrub_flags::SCRUB_F_MIN_TTL.0 != 0 {
            what.push(format!("min_ttl {}", s.min_ttl));
        }
        if s.flags & scrub_flags::SCRUB_F_MAX_MSS.0 != 0 {
            what.push(format!("max_mss {}", s.max_mss));
        }
        if s.flags & scrub_flags::SCRUB_F_CLEAR_DF.0 != 0 {
            what.push("clear_df".into());
        }
        if s.flags & scrub_flags::SCRUB_F_RANDOM_IP_ID.0 != 0 {
            what.push("random_ip_id".into());
        }
        let stats = maps.stats()?;
        Ok(Some(ScrubSummary {
            settings: what.join(", "),
            counters: SCRUB_STATS
                .iter()
                .map(|st| (stat_name(*st).to_string(), stats[st.0 as usize]))
                .collect(),
        }))
    }
}

/// tc_ids as its pinned maps show it.
#[derive(Debug, serde::Serialize)]
struct IdsSummary {
    generation: u32,
    /// (protocol, side, port) entries of the active generation
    index_keys: usize,
    /// share of alerts reported
    sampling: f64,
    counters: Vec<(String, u64)>,
}

impl IdsSummary {
    fn read_pinned(root: &std::path::Path) -> anyhow::Result<Option<IdsSummary>> {
        use crate::maps::ids::{ids_settings_flags, stat_name, IdsMaps, IDS_STATS};
        if !root.join("ids_settings").exists() {
            return Ok(None);
        }
        let maps = IdsMaps::from_pins(root)?;
        let s = maps.settings()?;
        if s.flags & ids_settings_flags::IDS_SET_ENABLED.0 == 0 {
            return Ok(None);
        }
        let stats = maps.stats()?;
        Ok(Some(IdsSummary {
            generation: s.gen,
            index_keys: maps.index_len(s.gen)?,
            sampling: if s.sample_all != 0 {
                1.0
            } else {
                f64::from(s.sample_below) / f64::from(u32::MAX)
            },
            counters: IDS_STATS
                .iter()
                .map(|st| (stat_name(*st).to_string(), stats[st.0 as usize]))
                .collect(),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_rate_limiter_slot_has_a_name() {
        let names: Vec<String> = (0..rl_stat::RL_STAT_COUNT.0)
            .map(|i| rl_counter_name(rl_stat(i)))
            .collect();
        for (i, n) in names.iter().enumerate() {
            assert!(!n.starts_with("slot "), "rl_stats slot {i} has no name");
        }
        let unique: std::collections::HashSet<_> = names.iter().collect();
        assert_eq!(unique.len(), names.len(), "{names:?}");
        assert!(names.contains(&"tx/syn_cookie".to_string()), "{names:?}");
        assert!(names.contains(&"syn/received".to_string()), "{names:?}");
    }
}
