//! Prometheus export of the dataplane's counters: xdp_firewall's per-CPU `fw_stats` and rule
//! hit counters (summed over CPUs by `FirewallMaps`), how full each map's generation is, and
//! what the daemon counts itself (events written, reloads).
//!
//! The daemon reads a [`Snapshot`] every second and after each reload and hands it to
//! [`Exporter::publish`]; the exporter serves the last published values on `GET /metrics`.
//! Kernel counters are exported as Prometheus counters set to the kernel's value on every
//! publish, never incremented here.
//!
//! Rule counters are per rule id and continue across reloads: a reload resets the kernel's
//! hit counters of the new generation, so on a generation change every rule's running total is
//! folded into a base that the new generation's counts are added to. A rule that vanishes
//! from the ruleset stops being updated (its counter keeps its last value); the `metrics`
//! crate cannot unregister a series, so it stays in the exposition until the process exits.
//! Hits between the last publish before a reload and the flip are lost unless the daemon
//! publishes a snapshot of the old generation, read after the flip with the old rule ids,
//! before the first one of the new generation.
//!
//! Connection tracking is exported only while the snapshot carries a [`Conntrack`] part:
//! the daemon fills `Snapshot::conntrack` with [`Conntrack::read`] when conntrack is
//! enabled, passing its last [`SweepReport`] for the entries gauge. Likewise threat intel
//! ([`ThreatIntel`]: tc_threatintel's counters, IOCs per feed, the feeds' refreshes) and the
//! IPS blacklist ([`Blacklist`]: its size, and the blocks and expiries the daemon counts).

use std::collections::{BTreeMap, HashMap};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::path::Path;
use std::sync::{Mutex, PoisonError};

use anyhow::{bail, Context, Result};
use metrics::{counter, describe_counter, describe_gauge, gauge};
use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use serde::Serialize;

use crate::abi::{self, ct_stat, fw_stat, rl_stat, ti_stat};
use crate::feeds::IocSet;
use crate::maps::blacklist::BlacklistMaps;
use crate::maps::conntrack::{ConntrackMaps, CtState, SweepReport, CT_STATE_COUNT, CT_STAT_COUNT};
use crate::maps::firewall::FirewallMaps;
use crate::maps::threatintel::{
    self, feed_name, read_feeds_status, FeedStatus, FeedsFile, IocCounts, ThreatIntelMaps,
    TI_STAT_COUNT,
};
use crate::ruleset::{CompiledRuleset, FAMILIES};

/// Where the daemon serves `/metrics` unless told otherwise: 127.0.0.1:9669.
pub const DEFAULT_LISTEN: SocketAddr = SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 9669));

const PACKETS: &str = "ebpfsentinel_xdp_firewall_packets_total";
const SEEN: &str = "ebpfsentinel_xdp_firewall_packets_seen_total";
const EVENTS: &str = "ebpfsentinel_events_total";
const EVENTS_DROPPED: &str = "ebpfsentinel_events_dropped_total";
const EVENTS_WRITTEN: &str = "ebpfsentinel_events_written_total";
const RULE_PACKETS: &str = "ebpfsentinel_rule_packets_total";
const RULE_BYTES: &str = "ebpfsentinel_rule_bytes_total";
const MAP_ENTRIES: &str = "ebpfsentinel_map_entries";
const MAP_CAPACITY: &str = "ebpfsentinel_map_capacity";
const GENERATION: &str = "ebpfsentinel_config_generation";
const RELOADS: &str = "ebpfsentinel_config_reloads_total";
const BUILD_INFO: &str = "ebpfsentinel_build_info";
const RL_PACKETS: &str = "ebpfsentinel_xdp_ratelimit_packets_total";
const SYN: &str = "ebpfsentinel_ddos_syn_total";
const CT_EVICTED: &str = "ebpfsentinel_conntrack_evicted_total";
const CT_ENTRIES: &str = "ebpfsentinel_conntrack_entries";
const DNS_PACKETS: &str = "ebpfsentinel_dns_packets_total";
const DNS_EVENTS_DROPPED: &str = "ebpfsentinel_dns_events_dropped_total";
const DNS_ENTRIES: &str = "ebpfsentinel_dns_blocklist_entries";
const DNS_FEED_ERRORS: &str = "ebpfsentinel_dns_feed_errors_total";
const SCRUB_SEEN: &str = "ebpfsentinel_scrub_packets_seen_total";
const SCRUB_REWRITES: &str = "ebpfsentinel_scrub_rewrites_total";
const LB_PACKETS: &str = "ebpfsentinel_lb_packets_total";
const LB_SERVICE_PACKETS: &str = "ebpfsentinel_lb_service_packets_total";
const LB_SERVICE_BYTES: &str = "ebpfsentinel_lb_service_bytes_total";
const LB_SERVICE_NO_BACKEND: &str = "ebpfsentinel_lb_service_no_backend_total";
const LB_BACKENDS: &str = "ebpfsentinel_lb_backends";
const IDS_PACKETS: &str = "ebpfsentinel_ids_packets_total";
const IDS_RULES: &str = "ebpfsentinel_ids_rules";
const TI_PACKETS: &str = "ebpfsentinel_threatintel_packets_total";
const TI_SEEN: &str = "ebpfsentinel_threatintel_packets_seen_total";
const TI_EVENTS_DROPPED: &str = "ebpfsentinel_threatintel_events_dropped_total";
const TI_IOCS: &str = "ebpfsentinel_threatintel_iocs";
const TI_FEED_ENTRIES: &str = "ebpfsentinel_threatintel_feed_entries";
const TI_FEED_ERRORS: &str = "ebpfsentinel_threatintel_feed_errors_total";
const TI_FEED_REFRESHED: &str = "ebpfsentinel_threatintel_feed_last_refresh_timestamp_seconds";
const IPS_ENTRIES: &str = "ebpfsentinel_ips_blacklist_entries";
const IPS_BLOCKS: &str = "ebpfsentinel_ips_blocks_total";
const IPS_EXPIRIES: &str = "ebpfsentinel_ips_expiries_total";

/// The ti_stats slots of which every packet tc_threatintel looks at moves exactly one, in enum
/// order; their [`threatintel::stat_name`] is the `result` label.
pub const TI_RESULT_STATS: [ti_stat; 6] = [
    ti_stat::TI_STAT_BLOOM_NEGATIVE,
    ti_stat::TI_STAT_BLOOM_FALSE_POSITIVE,
    ti_stat::TI_STAT_MATCH_ALERT,
    ti_stat::TI_STAT_MATCH_DROP,
    ti_stat::TI_STAT_MATCH_QUARANTINE,
    ti_stat::TI_STAT_QUARANTINE_FAILED,
];

/// A ct_stats slot: its short name (`status`, `stats`) and its counter.
#[derive(Debug, Clone, Copy)]
pub struct CtCounter {
    pub stat: ct_stat,
    pub name: &'static str,
    pub metric: &'static str,
    pub help: &'static str,
}

/// Every ct_stats slot, in enum order.
pub const CT_COUNTERS: [CtCounter; CT_STAT_COUNT] = {
    const fn c(
        stat: ct_stat,
        name: &'static str,
        metric: &'static str,
        help: &'static str,
    ) -> CtCounter {
        CtCounter {
            stat,
            name,
            metric,
            help,
        }
    }
    [
        c(
            ct_stat::CT_STAT_LOOKUPS,
            "lookups",
            "ebpfsentinel_conntrack_lookups_total",
            "Conntrack table lookups by tc_conntrack (kernel ct_stats, summed over CPUs; xdp_firewall's read-only lookups count as fast_path when they pass a packet).",
        ),
        c(
            ct_stat::CT_STAT_HITS,
            "hits",
            "ebpfsentinel_conntrack_hits_total",
            "Conntrack lookups that found a live entry.",
        ),
        c(
            ct_stat::CT_STAT_NEW,
            "new",
            "ebpfsentinel_conntrack_new_total",
            "Conntrack entries created (flows tc_conntrack saw a first packet of).",
        ),
        c(
            ct_stat::CT_STAT_ESTABLISHED,
            "established",
            "ebpfsentinel_conntrack_established_total",
            "Flows that became established (a reply seen, or the TCP handshake completed).",
        ),
        c(
            ct_stat::CT_STAT_CLOSED,
            "closed",
            "ebpfsentinel_conntrack_closed_total",
            "TCP flows closed by FIN or RST.",
        ),
        c(
            ct_stat::CT_STAT_INVALID,
            "invalid",
            "ebpfsentinel_conntrack_invalid_total",
            "Packets tc_conntrack classed INVALID (no SYN and no entry, out of window, unsolicited reply).",
        ),
        c(
            ct_stat::CT_STAT_RELATED,
            "related",
            "ebpfsentinel_conntrack_related_total",
            "ICMP errors quoting a tracked flow.",
        ),
        c(
            ct_stat::CT_STAT_EXPIRED,
            "expired",
            "ebpfsentinel_conntrack_expired_total",
            "Entries a packet found idle past their timeout and removed (the daemon's sweeps are not counted here).",
        ),
        c(
            ct_stat::CT_STAT_DROP_INVALID,
            "dropped_invalid",
            "ebpfsentinel_conntrack_dropped_invalid_total",
            "Packets tc_conntrack dropped as INVALID (conntrack.invalid: drop).",
        ),
        c(
            ct_stat::CT_STAT_FAST_PATH,
            "fast_path",
            "ebpfsentinel_conntrack_fast_path_total",
            "Packets xdp_firewall passed on the conntrack fast path, before any rule.",
        ),
        c(
            ct_stat::CT_STAT_REUSED,
            "reused",
            "ebpfsentinel_conntrack_reused_total",
            "TIME_WAIT or CLOSED TCP entries replaced by a new connection on the same ports.",
        ),
    ]
};

/// Connection tracking in a [`Snapshot`]; the snapshot has none while conntrack is off.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Conntrack {
    /// counts per enum ct_stat slot, summed over CPUs
    pub stats: [u64; CT_STAT_COUNT],
    /// LRU evictions since the daemon's first sweep, estimated
    /// ([`crate::maps::conntrack::EvictionEstimate`])
    pub evicted: u64,
    /// entries by enum ct_state at the last sweep; None before the first (no gauge then)
    pub entries: Option<[u64; CT_STATE_COUNT]>,
}

impl Conntrack {
    /// Reads the counters; the entries and the eviction estimate come from `last_sweep`, the
    /// daemon's last [`ConntrackMaps::sweep`] (walking the table on every publish would cost
    /// too much). The estimate lives in the `ConntrackMaps` that swept, which may be another
    /// handle than `maps`: the larger of the two is taken.
    pub fn read(maps: &ConntrackMaps, last_sweep: Option<&SweepReport>) -> Result<Conntrack> {
        Ok(Conntrack {
            stats: maps.stats().context("reading ct_stats")?,
            evicted: last_sweep.map_or(0, |r| r.evicted).max(maps.evicted()),
            entries: last_sweep.map(|r| r.live_by_state),
        })
    }

    pub fn stat(&self, stat: ct_stat) -> u64 {
        self.stats.get(stat.0 as usize).copied().unwrap_or(0)
    }
}

/// Threat intel in a [`Snapshot`]; the snapshot has none while threat intel is off.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ThreatIntel {
    /// packets per enum ti_stat slot, summed over CPUs
    pub stats: [u64; TI_STAT_COUNT],
    /// IOCs in the kernel by feed name (after the merge: a network listed by two feeds counts
    /// for the one that won)
    pub iocs: BTreeMap<String, u64>,
    /// the feeds as the daemon last refreshed them
    pub feeds: Vec<FeedStatus>,
}

impl ThreatIntel {
    /// The counters from `maps`, the IOCs of `installed` (what the daemon applied) counted
    /// per feed, named after `feeds` (the daemon's feeds status).
    pub fn read(
        maps: &ThreatIntelMaps,
        installed: &IocSet,
        feeds: Option<&FeedsFile>,
    ) -> Result<ThreatIntel> {
        Ok(ThreatIntel::new(
            maps.stats().context("reading ti_stats")?,
            installed,
            feeds,
        ))
    }

    pub fn new(
        stats: [u64; TI_STAT_COUNT],
        installed: &IocSet,
        feeds: Option<&FeedsFile>,
    ) -> ThreatIntel {
        let mut by_id: BTreeMap<u16, u64> = BTreeMap::new();
        for ioc in installed.iocs.values() {
            *by_id.entry(ioc.feed_id).or_default() += 1;
        }
        let mut iocs: BTreeMap<String, u64> = BTreeMap::new();
        // every configured feed has a gauge, also while it lists nothing
        for f in feeds.map(|f| f.feeds.as_slice()).unwrap_or_default() {
            iocs.insert(f.id.clone(), 0);
        }
        for (id, n) in by_id {
            *iocs.entry(feed_name(feeds, id)).or_default() += n;
        }
        ThreatIntel {
            stats,
            iocs,
            feeds: feeds.map(|f| f.feeds.clone()).unwrap_or_default(),
        }
    }

    pub fn stat(&self, stat: ti_stat) -> u64 {
        self.stats.get(stat.0 as usize).copied().unwrap_or(0)
    }
}

/// tc_scrub in a [`Snapshot`]; the snapshot has none while the `scrub` section is absent.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Scrub {
    /// packets per enum scrub_stat slot, summed over CPUs
    pub stats: [u64; crate::maps::scrub::SCRUB_STAT_COUNT],
}

impl Scrub {
    pub fn read(maps: &crate::maps::scrub::ScrubMaps) -> Result<Scrub> {
        Ok(Scrub {
            stats: maps.stats().context("reading scrub_stats")?,
        })
    }

    pub fn stat(&self, stat: crate::maps::scrub::scrub_stat) -> u64 {
        self.stats.get(stat.0 as usize).copied().unwrap_or(0)
    }
}

/// tc_dns in a [`Snapshot`]; the snapshot has none while the `dns` section is absent.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Dns {
    /// per enum dns_stat slot, summed over CPUs
    pub stats: [u64; crate::maps::dns::DNS_STAT_COUNT],
    /// entries in the kernel after the last sync (None before the first)
    pub entries: Option<u64>,
    pub feed_errors: u64,
}

impl Dns {
    pub fn read(
        maps: &crate::maps::dns::DnsMaps,
        feed_errors: u64,
        last_sync: Option<crate::maps::dns::SyncReport>,
    ) -> Result<Dns> {
        Ok(Dns {
            stats: maps.stats().context("reading dns_stats")?,
            entries: last_sync.map(|r| r.entries as u64),
            feed_errors,
        })
    }

    pub fn stat(&self, stat: crate::maps::dns::dns_stat) -> u64 {
        self.stats.get(stat.0 as usize).copied().unwrap_or(0)
    }
}

/// tc_ids in a [`Snapshot`]; the snapshot has none while the `ids` section is absent.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Ids {
    /// per enum ids_stat slot, summed over CPUs
    pub stats: [u64; crate::abi::IDS_STAT_COUNT],
    /// rules of the active generation
    pub rules: u64,
}

impl Ids {
    pub fn read(maps: &crate::maps::ids::IdsMaps, rules: usize) -> Result<Ids> {
        Ok(Ids {
            stats: maps.stats().context("reading ids_stats")?,
            rules: rules as u64,
        })
    }

    pub fn stat(&self, stat: crate::maps::ids::ids_stat) -> u64 {
        self.stats.get(stat.0 as usize).copied().unwrap_or(0)
    }
}

/// xdp_lb in a [`Snapshot`]; the snapshot has none while no service is configured.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Lb {
    /// packets per enum lb_stat slot, summed over CPUs
    pub stats: [u64; crate::maps::lb::LB_STAT_COUNT],
    pub services: Vec<LbServiceMetrics>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LbServiceMetrics {
    pub id: String,
    pub counters: crate::maps::lb::ServiceCounters,
    /// backends by state: up, down, drained
    pub backends: [u64; 3],
}

impl Lb {
    pub fn read(maps: &crate::maps::lb::LbMaps, state: &crate::lb::LbState) -> Result<Lb> {
        use crate::lb::BackendState;
        let mut services = Vec::new();
        for s in &state.config.services {
            let mut backends = [0u64; 3];
            for b in &s.backends {
                let i = match state.state(&s.id, b.addr) {
                    BackendState::Up => 0,
                    BackendState::Down => 1,
                    BackendState::Drained => 2,
                };
                backends[i] += 1;
            }
            services.push(LbServiceMetrics {
                id: s.id.clone(),
                counters: maps.service_counters(&s.id)?,
                backends,
            });
        }
        Ok(Lb {
            stats: maps.stats().context("reading lb_stats")?,
            services,
        })
    }
}

/// The IPS blacklist in a [`Snapshot`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Blacklist {
    /// entries in the kernel's four maps (expired ones not yet removed included)
    pub entries: u64,
    /// blocks the daemon wrote (IPS decisions) since it started
    pub blocks: u64,
    /// expired entries the daemon removed since it started
    pub expiries: u64,
}

impl Blacklist {
    pub fn read(maps: &BlacklistMaps, blocks: u64, expiries: u64) -> Result<Blacklist> {
        Ok(Blacklist {
            entries: maps.entries().context("counting the blacklist")? as u64,
            blocks,
            expiries,
        })
    }
}

/// Labels (verdict, reason) of each xdp_ratelimit slot, the DDoS guards' included; events
/// have their own metrics.
pub fn rl_stat_label(stat: rl_stat) -> Option<(&'static str, &'static str)> {
    Some(match stat {
        rl_stat::RL_STAT_PASS_UNLIMITED => ("pass", "unlimited"),
        rl_stat::RL_STAT_PASS_NO_POLICY => ("pass", "no_policy"),
        rl_stat::RL_STAT_PASS_IN_RATE => ("pass", "in_rate"),
        rl_stat::RL_STAT_PASS_OVER_RATE => ("pass", "over_rate"),
        rl_stat::RL_STAT_DROP_OVER_RATE => ("drop", "over_rate"),
        rl_stat::RL_STAT_ICMP_PASSED => ("pass", "icmp_guard"),
        rl_stat::RL_STAT_ICMP_DROPPED => ("drop", "icmp_flood"),
        rl_stat::RL_STAT_ICMP_OVERSIZED => ("drop", "icmp_oversized"),
        rl_stat::RL_STAT_AMP_PASSED => ("pass", "amplification_guard"),
        rl_stat::RL_STAT_AMP_DROPPED => ("drop", "amplification"),
        rl_stat::RL_STAT_SYNCOOKIES_SENT => ("tx", "syn_cookie"),
        _ => return None,
    })
}

/// The SYN guard's counters by `what` (SYNs seen and cookie ACKs checked are not verdicts).
pub fn syn_stat_label(stat: rl_stat) -> Option<&'static str> {
    Some(match stat {
        rl_stat::RL_STAT_SYN_RECEIVED => "received",
        rl_stat::RL_STAT_SYNCOOKIES_SENT => "cookies_sent",
        rl_stat::RL_STAT_SYNCOOKIE_ACK_VALID => "cookie_ack_valid",
        rl_stat::RL_STAT_SYNCOOKIE_ACK_INVALID => "cookie_ack_invalid",
        _ => return None,
    })
}

/// The fw_stats slots of which every packet moves exactly one, in enum order.
pub const VERDICT_STATS: [fw_stat; 11] = [
    fw_stat::FW_STAT_PASS_RULE,
    fw_stat::FW_STAT_PASS_DEFAULT,
    fw_stat::FW_STAT_PASS_ALLOWLIST,
    fw_stat::FW_STAT_PASS_NON_IP,
    fw_stat::FW_STAT_PASS_MALFORMED,
    fw_stat::FW_STAT_PASS_MONITOR,
    fw_stat::FW_STAT_PASS_TRACKED,
    fw_stat::FW_STAT_DROP_RULE,
    fw_stat::FW_STAT_DROP_DEFAULT,
    fw_stat::FW_STAT_DROP_MALFORMED,
    fw_stat::FW_STAT_DROP_BLOCKED,
];

/// The (verdict, reason) a fw_stats slot counts, as the metrics, `status` and `stats` name
/// them. Slots that are not a verdict (`seen`, `events_sent`, `events_dropped`) have an empty
/// verdict and their own name as reason.
pub fn stat_label(stat: fw_stat) -> (&'static str, &'static str) {
    match stat {
        fw_stat::FW_STAT_PASS_RULE => ("pass", "rule"),
        fw_stat::FW_STAT_PASS_DEFAULT => ("pass", "default_policy"),
        fw_stat::FW_STAT_PASS_ALLOWLIST => ("pass", "allowlist"),
        fw_stat::FW_STAT_PASS_NON_IP => ("pass", "non_ip"),
        fw_stat::FW_STAT_PASS_MALFORMED => ("pass", "malformed"),
        fw_stat::FW_STAT_PASS_MONITOR => ("pass", "monitor"),
        fw_stat::FW_STAT_PASS_TRACKED => ("pass", "tracked"),
        fw_stat::FW_STAT_DROP_RULE => ("drop", "rule"),
        fw_stat::FW_STAT_DROP_DEFAULT => ("drop", "default_policy"),
        fw_stat::FW_STAT_DROP_MALFORMED => ("drop", "malformed"),
        fw_stat::FW_STAT_DROP_BLOCKED => ("drop", "blocked"),
        fw_stat::FW_STAT_SEEN => ("", "seen"),
        fw_stat::FW_STAT_EVENTS_SENT => ("", "events_sent"),
        fw_stat::FW_STAT_EVENTS_DROPPED => ("", "events_dropped"),
        _ => ("", "unknown"),
    }
}

/// How many entries one map holds for the active generation, and how many one generation
/// may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MapFill {
    pub map: &'static str,
    pub entries: u64,
    pub capacity: u64,
}

/// What the daemon counts in userspace (plain totals since it started).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ConsumerCounters {
    pub events_written: u64,
    pub events_dropped: u64,
    pub reloads_ok: u64,
    pub reloads_failed: u64,
}

/// Hits of one rule in one generation, summed over CPUs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RuleHits {
    pub id: String,
    pub packets: u64,
    pub bytes: u64,
}

/// Everything one publish exports.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Snapshot {
    /// the active ruleset generation the rule hits belong to
    pub generation: u32,
    /// packets per enum fw_stat slot, summed over CPUs
    pub stats: Vec<u64>,
    /// by rank
    pub rules: Vec<RuleHits>,
    pub fill: Vec<MapFill>,
    pub consumer: ConsumerCounters,
    /// packets per enum rl_stat slot (xdp_ratelimit and the DDoS guards), summed over CPUs
    pub ratelimit: Vec<u64>,
    /// None while conntrack is off: no conntrack metrics then
    pub conntrack: Option<Conntrack>,
    /// None while threat intel is off: no threat-intel metrics then
    pub threatintel: Option<ThreatIntel>,
    /// None when the daemon does not read the blacklist: no IPS metrics then
    pub blacklist: Option<Blacklist>,
    /// None while scrubbing is off: no scrub metrics then
    pub scrub: Option<Scrub>,
    /// None while the DNS blocklist is off: no dns metrics then
    pub dns: Option<Dns>,
    /// None while no load-balancer service is configured: no lb metrics then
    pub lb: Option<Lb>,
    /// None while the IDS is off: no IDS metrics then
    pub ids: Option<Ids>,
}

impl Snapshot {
    /// Reads the kernel counters; `rules` are the ids of `generation`'s ruleset by rank.
    pub fn read(
        maps: &FirewallMaps,
        generation: u32,
        rules: &[String],
        fill: &[MapFill],
        consumer: &ConsumerCounters,
    ) -> Result<Snapshot> {
        if generation >= abi::GENERATIONS {
            bail!(
                "ruleset generation {generation} does not exist (there are {})",
                abi::GENERATIONS
            );
        }
        if rules.len() > abi::MAX_RANKS {
            bail!(
                "{} rules, the kernel counts hits of {} at most",
                rules.len(),
                abi::MAX_RANKS
            );
        }
        let stats = maps.stats().context("reading fw_stats")?;
        let hits = maps
            .rule_hits(generation, rules.len())
            .context("reading fw_rule_hits")?;
        Ok(Snapshot {
            generation,
            stats,
            rules: rules
                .iter()
                .zip(hits)
                .map(|(id, (packets, bytes))| RuleHits {
                    id: id.clone(),
                    packets,
                    bytes,
                })
                .collect(),
            fill: fill.to_vec(),
            consumer: *consumer,
            ratelimit: Vec::new(),
            conntrack: None,
            threatintel: None,
            blacklist: None,
            scrub: None,
            dns: None,
            lb: None,
            ids: None,
        })
    }

    /// The value of one fw_stats slot (0 if the snapshot has no such slot).
    pub fn stat(&self, stat: fw_stat) -> u64 {
        self.stats.get(stat.0 as usize).copied().unwrap_or(0)
    }
}

/// The conntrack numbers `stats` and `status` print: what the pinned table holds now and
/// what ct_stats counted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ConntrackSummary {
    pub entries: u64,
    /// protocol -> state -> entries
    pub by_state: BTreeMap<&'static str, BTreeMap<&'static str, u64>>,
    /// by [`CtCounter::name`]
    pub counters: BTreeMap<&'static str, u64>,
}

impl ConntrackSummary {
    pub fn new(census: &[u64; CT_STATE_COUNT], stats: &[u64; CT_STAT_COUNT]) -> Self {
        let mut by_state: BTreeMap<_, BTreeMap<_, _>> = BTreeMap::new();
        for (state, n) in CtState::all().zip(census) {
            by_state
                .entry(state.protocol())
                .or_default()
                .insert(state.name(), *n);
        }
        ConntrackSummary {
            entries: census.iter().sum(),
            by_state,
            counters: CT_COUNTERS
                .iter()
                .map(|c| (c.name, stats[c.stat.0 as usize]))
                .collect(),
        }
    }

    /// None when no conntrack table is pinned under `pin_root`.
    pub fn read_pinned(pin_root: &Path) -> Result<Option<ConntrackSummary>> {
        let probe = pin_root.join("ct_table");
        match std::fs::symlink_metadata(&probe) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e).with_context(|| format!("looking for {}", probe.display())),
            Ok(_) => {}
        }
        let maps = ConntrackMaps::from_pins(pin_root)?;
        let stats = maps.stats().context("reading ct_stats")?;
        let census = maps.census().context("reading ct_table")?;
        Ok(Some(ConntrackSummary::new(&census, &stats)))
    }

    /// (counter name, count) in ct_stat order.
    pub fn counter_lines(&self) -> Vec<(&'static str, u64)> {
        CT_COUNTERS
            .iter()
            .map(|c| (c.name, self.counters.get(c.name).copied().unwrap_or(0)))
            .collect()
    }

    /// "tcp established 3, udp new 2": the states that hold entries.
    pub fn states_text(&self) -> String {
        let parts: Vec<String> = self
            .by_state
            .iter()
            .flat_map(|(proto, states)| {
                states
                    .iter()
                    .filter(|(_, n)| **n > 0)
                    .map(move |(state, n)| format!("{proto} {state} {n}"))
            })
            .collect();
        parts.join(", ")
    }
}

/// Entries each map holds for a generation holding `rs`, with what one generation may use.
/// Maps are named as they are pinned, except `fw_rules`, whose two family halves are reported
/// as `fw_rules_v4` and `fw_rules_v6` because the limit is per family. Both directions of a
/// classifier address dimension in hash mode share `fw_cls_hash_v4`/`_v6`.
pub fn fill_levels(rs: &CompiledRuleset) -> Vec<MapFill> {
    const SUFFIX: [&str; 2] = ["v4", "v6"];
    const ALLOW: [&str; 2] = ["fw_allow_v4", "fw_allow_v6"];
    const LPM: [[&str; 2]; 2] = [
        ["fw_lpm_src_v4", "fw_lpm_dst_v4"],
        ["fw_lpm_src_v6", "fw_lpm_dst_v6"],
    ];
    const EXACT: [[&str; 2]; 2] = [
        ["fw_exact_src_v4", "fw_exact_dst_v4"],
        ["fw_exact_src_v6", "fw_exact_dst_v6"],
    ];
    const CLS: [[&str; 2]; 2] = [
        ["fw_cls_src_v4", "fw_cls_dst_v4"],
        ["fw_cls_src_v6", "fw_cls_dst_v6"],
    ];
    const CLS_HASH: [&str; 2] = ["fw_cls_hash_v4", "fw_cls_hash_v6"];
    const RULES: [&str; 2] = ["fw_rules_v4", "fw_rules_v6"];
    debug_assert_eq!(SUFFIX.len(), FAMILIES.len());

    let fill = |map, entries: usize, capacity: usize| MapFill {
        map,
        entries: entries as u64,
        capacity: capacity as u64,
    };
    let mut out = Vec::new();
    for f in FAMILIES.map(|f| f as usize) {
        out.push(fill(
            ALLOW[f],
            rs.allow[f].len(),
            abi::MAX_ALLOWLIST_PER_GEN,
        ));
    }
    for f in FAMILIES.map(|f| f as usize) {
        for dir in 0..2 {
            let t = &rs.cidr[f][dir];
            out.push(fill(LPM[f][dir], t.lpm.len(), abi::MAX_CIDRS_PER_GEN));
            out.push(fill(EXACT[f][dir], t.exact.len(), abi::MAX_CIDRS_PER_GEN));
        }
    }
    for f in FAMILIES.map(|f| f as usize) {
        let cls = &rs.classifiers[f];
        let mut hashed = 0;
        for (dir, prefixes) in [&cls.src, &cls.dst].into_iter().enumerate() {
            let in_hash = !cls.hash_lens[dir].is_empty();
            if in_hash {
                hashed += prefixes.len();
            }
            let in_trie = if in_hash { 0 } else { prefixes.len() };
            out.push(fill(
                CLS[f][dir],
                in_trie,
                abi::MAX_CLASSIFIER_PREFIXES_PER_GEN,
            ));
        }
        out.push(fill(
            CLS_HASH[f],
            hashed,
            abi::MAX_CLASSIFIER_PREFIXES_PER_GEN,
        ));
    }
    out.push(fill(
        "fw_bitmaps",
        rs.bitmaps.len(),
        abi::BITMAP_POOL_PER_GEN,
    ));
    for f in FAMILIES.map(|f| f as usize) {
        out.push(fill(
            RULES[f],
            rs.classifiers[f].rules.len(),
            abi::MAX_RULES_PER_FAMILY,
        ));
    }
    out
}

fn describe() {
    describe_counter!(
        DNS_PACKETS,
        "Packets to port 53 tc_dns looked at, by result: queries (well-formed queries checked against the blocklist), blocked, alerted, not_query (responses, other opcodes, TCP segments without a message start), malformed (bad labels, compression pointers, over-long names), truncated; `seen` is all of them (kernel dns_stats, summed over CPUs)."
    );
    describe_counter!(
        DNS_EVENTS_DROPPED,
        "DNS blocklist events tc_dns skipped because the event ring was over 3/4 full."
    );
    describe_gauge!(
        DNS_ENTRIES,
        "Domains in the kernel's DNS blocklist after the last sync (config, feeds and runtime blocks)."
    );
    describe_counter!(
        DNS_FEED_ERRORS,
        "DNS blocklist feed refreshes that failed (the feed's previous domains stay)."
    );
    describe_counter!(
        LB_PACKETS,
        "Packets xdp_lb handled, by result: miss (no service, no backend reply), forwarded (rewritten and sent from XDP after the FIB lookup, both directions), forwarded_stack (rewritten, left to the stack: no neighbour yet), no_backend (dropped: no backend of the service up), reply (a backend's reply given the VIP back), reply_local (a backend's answer to this host, left alone), unsupported (fragments to a VIP), mirrored (forwarded packets also copied to the mirror port), steered (packets for the stack sent to a CPU of cpumap.cpus) (kernel lb_stats, summed over CPUs)."
    );
    describe_counter!(
        LB_SERVICE_PACKETS,
        "Packets to a service's VIP sent to a backend (kernel lb_service_stats)."
    );
    describe_counter!(
        LB_SERVICE_BYTES,
        "Bytes to a service's VIP sent to a backend (kernel lb_service_stats)."
    );
    describe_counter!(
        LB_SERVICE_NO_BACKEND,
        "Packets to a service's VIP dropped because none of its backends was up."
    );
    describe_gauge!(
        LB_BACKENDS,
        "Backends of a service by state: up, down (health check), drained (`lb drain`)."
    );
    describe_counter!(
        IDS_PACKETS,
        "Packets by what tc_ids did with them: seen (TCP/UDP looked at), candidate (some rule listed for its ports), payload_truncated (longer than the scanned bytes), match_alert (one per alert rule and packet), match_drop, sampled_out (alerts not reported, ids.sampling), events_sent, events_dropped (ring over 3/4 full), payload_load_failed (kernel ids_stats, summed over CPUs)."
    );
    describe_gauge!(IDS_RULES, "Signatures tc_ids matches (active generation).");
    describe_counter!(
        SCRUB_SEEN,
        "Packets tc_scrub looked at (kernel scrub_stats, summed over CPUs)."
    );
    describe_counter!(
        SCRUB_REWRITES,
        "Header rewrites by tc_scrub, by what: ttl_raised (IPv4 TTL or IPv6 hop limit raised to scrub.min_ttl), mss_clamped (SYN MSS option clamped to scrub.max_mss), df_cleared, ip_id_randomised (kernel scrub_stats, summed over CPUs)."
    );
    for c in CT_COUNTERS {
        describe_counter!(c.metric, c.help);
    }
    describe_counter!(
        TI_PACKETS,
        "Packets tc_threatintel looked at, by result: bloom_negative (no address in the Bloom filter), bloom_false_positive (a positive probe no IOC confirmed), match_alert, match_drop, match_quarantine, quarantine_failed (the VLAN push failed: dropped) (kernel ti_stats, summed over CPUs)."
    );
    describe_counter!(
        TI_SEEN,
        "Packets tc_threatintel looked at: the sum of ebpfsentinel_threatintel_packets_total."
    );
    describe_counter!(
        TI_EVENTS_DROPPED,
        "Threat-intel match events tc_threatintel could not put on the ring buffer (over 3/4 full)."
    );
    describe_gauge!(
        TI_IOCS,
        "IOCs in the kernel by the feed that lists them (after the merge; feed=manual: added by hand)."
    );
    describe_gauge!(
        TI_FEED_ENTRIES,
        "Entries of a feed at its last successful refresh, before the merge."
    );
    describe_counter!(
        TI_FEED_ERRORS,
        "Failed refreshes of a feed (fetch or parse; the feed keeps its previous IOCs)."
    );
    describe_gauge!(
        TI_FEED_REFRESHED,
        "Unix time of a feed's last successful refresh (0: none yet)."
    );
    describe_gauge!(
        IPS_ENTRIES,
        "Entries of the IPS blacklist xdp_firewall drops sources from (addresses and networks)."
    );
    describe_counter!(
        IPS_BLOCKS,
        "Sources the IPS blacklisted after repeated detections."
    );
    describe_counter!(
        IPS_EXPIRIES,
        "Blacklist entries removed because their block ran out."
    );
    describe_counter!(
        CT_EVICTED,
        "Conntrack entries the full LRU table recycled, estimated: created minus expired, swept, flushed and live (since the daemon's first sweep)."
    );
    describe_gauge!(
        CT_ENTRIES,
        "Conntrack entries by protocol and state at the daemon's last sweep."
    );
    describe_counter!(
        SYN,
        "SYN guard: SYNs seen, SYN cookies sent from XDP, cookie ACKs the kernel's check accepted or refused."
    );
    describe_counter!(
        RL_PACKETS,
        "Packets xdp_ratelimit decided, by verdict and reason: policies and the ICMP and amplification guards (kernel rl_stats, summed over CPUs)."
    );
    describe_counter!(
        PACKETS,
        "Packets xdp_firewall decided, by verdict and reason (kernel fw_stats, summed over CPUs)."
    );
    describe_counter!(
        SEEN,
        "Packets xdp_firewall looked at: the sum of ebpfsentinel_xdp_firewall_packets_total."
    );
    describe_counter!(
        EVENTS,
        "Events a program put on the ring buffer (rules with log: true, monitor-mode drops)."
    );
    describe_counter!(
        EVENTS_DROPPED,
        "Events lost: stage=kernel when the ring buffer was over 3/4 full, stage=consumer when the daemon could not write them."
    );
    describe_counter!(EVENTS_WRITTEN, "Events the daemon wrote out.");
    describe_counter!(
        RULE_PACKETS,
        "Packets that matched a rule, by rule id; continued across reloads while the id exists."
    );
    describe_counter!(
        RULE_BYTES,
        "Bytes (whole frames) of the packets that matched a rule, by rule id; continued across reloads while the id exists."
    );
    describe_gauge!(
        MAP_ENTRIES,
        "Entries the active ruleset generation holds in a BPF map."
    );
    describe_gauge!(
        MAP_CAPACITY,
        "Entries one ruleset generation may hold in a BPF map."
    );
    describe_gauge!(
        GENERATION,
        "The active ruleset generation (0 or 1; flips on every reload)."
    );
    describe_counter!(
        RELOADS,
        "Config reloads, by result: ok applied, error rejected with the running ruleset kept."
    );
    describe_gauge!(
        BUILD_INFO,
        "Always 1: the ebpfsentinel version and the kernel release it runs on."
    );
}

fn kernel_release() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "unknown".to_string())
}

/// A rule id's counts: what earlier generations contributed, and the last kernel values of
/// the current one.
#[derive(Debug, Default)]
struct RuleTotal {
    base: (u64, u64),
    last: (u64, u64),
}

impl RuleTotal {
    fn fold(&mut self) {
        self.base.0 += self.last.0;
        self.base.1 += self.last.1;
        self.last = (0, 0);
    }

    fn total(&self) -> (u64, u64) {
        (self.base.0 + self.last.0, self.base.1 + self.last.1)
    }
}

#[derive(Debug)]
struct Publisher {
    described: bool,
    kernel: String,
    generation: Option<u32>,
    rules: HashMap<String, RuleTotal>,
}

impl Publisher {
    fn publish(&mut self, snap: &Snapshot) {
        if !self.described {
            describe();
            self.described = true;
        }
        for stat in VERDICT_STATS {
            let (verdict, reason) = stat_label(stat);
            counter!(PACKETS, "verdict" => verdict, "reason" => reason).absolute(snap.stat(stat));
        }
        counter!(SEEN).absolute(snap.stat(fw_stat::FW_STAT_SEEN));
        for (slot, n) in snap.ratelimit.iter().enumerate() {
            if let Some((verdict, reason)) = rl_stat_label(rl_stat(slot as u32)) {
                counter!(RL_PACKETS, "verdict" => verdict, "reason" => reason).absolute(*n);
            }
            if let Some(what) = syn_stat_label(rl_stat(slot as u32)) {
                counter!(SYN, "what" => what).absolute(*n);
            }
        }
        if let Some(n) = snap.ratelimit.get(rl_stat::RL_STAT_EVENTS_SENT.0 as usize) {
            counter!(EVENTS, "program" => "xdp_ratelimit").absolute(*n);
        }
        if let Some(ct) = &snap.conntrack {
            publish_conntrack(ct);
        }
        if let Some(ti) = &snap.threatintel {
            publish_threatintel(ti);
        }
        if let Some(sc) = &snap.scrub {
            publish_scrub(sc);
        }
        if let Some(dns) = &snap.dns {
            publish_dns(dns);
        }
        if let Some(lb) = &snap.lb {
            publish_lb(lb);
        }
        if let Some(ids) = &snap.ids {
            use crate::maps::ids::{stat_name, IDS_STATS};
            for stat in IDS_STATS {
                counter!(IDS_PACKETS, "what" => stat_name(stat)).absolute(ids.stat(stat));
            }
            gauge!(IDS_RULES).set(ids.rules as f64);
        }
        if let Some(bl) = &snap.blacklist {
            gauge!(IPS_ENTRIES).set(bl.entries as f64);
            counter!(IPS_BLOCKS).absolute(bl.blocks);
            counter!(IPS_EXPIRIES).absolute(bl.expiries);
        }
        counter!(EVENTS, "program" => "xdp_firewall")
            .absolute(snap.stat(fw_stat::FW_STAT_EVENTS_SENT));
        counter!(EVENTS_DROPPED, "stage" => "kernel")
            .absolute(snap.stat(fw_stat::FW_STAT_EVENTS_DROPPED));
        counter!(EVENTS_DROPPED, "stage" => "consumer").absolute(snap.consumer.events_dropped);
        counter!(EVENTS_WRITTEN).absolute(snap.consumer.events_written);
        counter!(RELOADS, "result" => "ok").absolute(snap.consumer.reloads_ok);
        counter!(RELOADS, "result" => "error").absolute(snap.consumer.reloads_failed);
        gauge!(GENERATION).set(f64::from(snap.generation));
        for f in &snap.fill {
            gauge!(MAP_ENTRIES, "map" => f.map).set(f.entries as f64);
            gauge!(MAP_CAPACITY, "map" => f.map).set(f.capacity as f64);
        }
        gauge!(BUILD_INFO, "version" => env!("CARGO_PKG_VERSION"), "kernel" => self.kernel.clone())
            .set(1.0);

        for (id, (packets, bytes)) in self.rule_totals(snap) {
            counter!(RULE_PACKETS, "rule" => id.clone()).absolute(packets);
            counter!(RULE_BYTES, "rule" => id).absolute(bytes);
        }
    }

    /// Continues each rule's counters across reloads: Prometheus counters here only grow
    /// (`absolute` keeps the maximum), while a reload restarts the kernel's counts from zero.
    fn rule_totals(&mut self, snap: &Snapshot) -> Vec<(String, (u64, u64))> {
        if self.generation.is_some_and(|g| g != snap.generation) {
            // Every running total, vanished rules' included, belongs to the old generation.
            for t in self.rules.values_mut() {
                t.fold();
            }
        }
        self.generation = Some(snap.generation);
        snap.rules
            .iter()
            .map(|r| {
                let t = self.rules.entry(r.id.clone()).or_default();
                // Counts going down without a generation change: two reloads between
                // publishes.
                if r.packets < t.last.0 || r.bytes < t.last.1 {
                    t.fold();
                }
                t.last = (r.packets, r.bytes);
                (r.id.clone(), t.total())
            })
            .collect()
    }
}

fn publish_conntrack(ct: &Conntrack) {
    for c in CT_COUNTERS {
        counter!(c.metric).absolute(ct.stat(c.stat));
    }
    counter!(CT_EVICTED).absolute(ct.evicted);
    if let Some(entries) = &ct.entries {
        for (state, n) in CtState::all().zip(entries) {
            gauge!(CT_ENTRIES, "proto" => state.protocol(), "state" => state.name()).set(*n as f64);
        }
    }
}

fn publish_dns(dns: &Dns) {
    use crate::maps::dns::{dns_stat, stat_name, DNS_STATS};
    for stat in DNS_STATS
        .into_iter()
        .filter(|s| *s != dns_stat::DNS_STAT_EVENTS_SENT && *s != dns_stat::DNS_STAT_EVENTS_DROPPED)
    {
        counter!(DNS_PACKETS, "result" => stat_name(stat)).absolute(dns.stat(stat));
    }
    counter!(DNS_EVENTS_DROPPED).absolute(dns.stat(dns_stat::DNS_STAT_EVENTS_DROPPED));
    counter!(DNS_FEED_ERRORS).absolute(dns.feed_errors);
    if let Some(n) = dns.entries {
        gauge!(DNS_ENTRIES).set(n as f64);
    }
}

fn publish_lb(lb: &Lb) {
    use crate::maps::lb::LB_STATS;
    for (stat, name) in LB_STATS
        .into_iter()
        .filter(|(s, _)| *s != crate::abi::lb_stat::LB_STAT_SEEN)
    {
        counter!(LB_PACKETS, "result" => name).absolute(lb.stats[stat.0 as usize]);
    }
    for s in &lb.services {
        let id = s.id.clone();
        counter!(LB_SERVICE_PACKETS, "service" => id.clone()).absolute(s.counters.packets);
        counter!(LB_SERVICE_BYTES, "service" => id.clone()).absolute(s.counters.bytes);
        counter!(LB_SERVICE_NO_BACKEND, "service" => id.clone()).absolute(s.counters.no_backend);
        for (i, state) in ["up", "down", "drained"].into_iter().enumerate() {
            gauge!(LB_BACKENDS, "service" => id.clone(), "state" => state)
                .set(s.backends[i] as f64);
        }
    }
}

fn publish_scrub(sc: &Scrub) {
    use crate::maps::scrub::{scrub_stat, stat_name, SCRUB_STATS};
    counter!(SCRUB_SEEN).absolute(sc.stat(scrub_stat::SCRUB_STAT_SEEN));
    for stat in SCRUB_STATS
        .into_iter()
        .filter(|s| *s != scrub_stat::SCRUB_STAT_SEEN)
    {
        counter!(SCRUB_REWRITES, "what" => stat_name(stat)).absolute(sc.stat(stat));
    }
}

fn publish_threatintel(ti: &ThreatIntel) {
    for stat in TI_RESULT_STATS {
        counter!(TI_PACKETS, "result" => threatintel::stat_name(stat)).absolute(ti.stat(stat));
    }
    counter!(TI_SEEN).absolute(ti.stat(ti_stat::TI_STAT_SEEN));
    counter!(EVENTS, "program" => "tc_threatintel").absolute(ti.stat(ti_stat::TI_STAT_EVENTS_SENT));
    counter!(TI_EVENTS_DROPPED).absolute(ti.stat(ti_stat::TI_STAT_EVENTS_DROPPED));
    for (feed, n) in &ti.iocs {
        gauge!(TI_IOCS, "feed" => feed.clone()).set(*n as f64);
    }
    for f in &ti.feeds {
        gauge!(TI_FEED_ENTRIES, "feed" => f.id.clone()).set(f.entries as f64);
        counter!(TI_FEED_ERRORS, "feed" => f.id.clone()).absolute(f.errors);
        gauge!(TI_FEED_REFRESHED, "feed" => f.id.clone()).set(f.last_refresh.unwrap_or(0) as f64);
    }
}

/// tc_dns as `status` shows it, read from the pins.
#[derive(Debug, Clone, Serialize)]
pub struct DnsSummary {
    pub enabled: bool,
    /// blocklist entries in the kernel (config, feeds, runtime)
    pub entries: u64,
    pub runtime: u64,
    /// by [`crate::maps::dns::stat_name`]
    pub counters: BTreeMap<&'static str, u64>,
    /// empty when no daemon wrote a DNS status
    pub lists: Vec<crate::maps::dns::DnsListStatus>,
}

impl DnsSummary {
    /// None when no DNS maps are pinned under `pin_root`.
    pub fn read_pinned(pin_root: &Path) -> Result<Option<DnsSummary>> {
        use crate::maps::dns::{stat_name, DnsMaps, DNS_STATS, LIST_RUNTIME};
        if !pin_root.join("dns_blocklist").exists() {
            return Ok(None);
        }
        let maps = DnsMaps::from_pins(pin_root)?;
        let entries = maps.entries()?;
        let stats = maps.stats()?;
        Ok(Some(DnsSummary {
            enabled: maps.enabled()?,
            entries: entries.len() as u64,
            runtime: entries
                .iter()
                .filter(|(_, b)| b.list == LIST_RUNTIME)
                .count() as u64,
            counters: DNS_STATS
                .iter()
                .zip(stats)
                .map(|(s, n)| (stat_name(*s), n))
                .collect(),
            lists: crate::maps::dns::read_dns_status(pin_root)
                .map(|f| f.lists)
                .unwrap_or_default(),
        }))
    }

    pub fn headline(&self) -> String {
        format!(
            "{}, {} domains ({} runtime)",
            if self.enabled { "on" } else { "off" },
            self.entries,
            self.runtime
        )
    }
}

/// The threat-intel numbers `stats` and `status` print: the active generation's settings, the
/// IOCs the pinned maps hold, what ti_stats counted, and the daemon's feeds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ThreatIntelSummary {
    pub enabled: bool,
    pub generation: u32,
    pub quarantine_vlan: u16,
    pub iocs: IocCounts,
    /// by [`threatintel::stat_name`]
    pub counters: BTreeMap<&'static str, u64>,
    /// empty when no daemon wrote a feeds status
    pub feeds: Vec<FeedStatus>,
}

impl ThreatIntelSummary {
    /// None when no threat-intel maps are pinned under `pin_root`.
    pub fn read_pinned(pin_root: &Path) -> Result<Option<ThreatIntelSummary>> {
        let probe = pin_root.join("ti_blooms");
        match std::fs::symlink_metadata(&probe) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e).with_context(|| format!("looking for {}", probe.display())),
            Ok(_) => {}
        }
        let maps = ThreatIntelMaps::from_pins(pin_root)?;
        let state = maps.state()?;
        let stats = maps.stats()?;
        Ok(Some(ThreatIntelSummary {
            enabled: state.enabled,
            generation: state.generation,
            quarantine_vlan: state.quarantine_vlan,
            iocs: maps.counts()?,
            counters: (0..TI_STAT_COUNT)
                .map(|i| (threatintel::stat_name(ti_stat(i as u32)), stats[i]))
                .collect(),
            feeds: read_feeds_status(pin_root)
                .map(|f| f.feeds)
                .unwrap_or_default(),
        }))
    }

    /// (counter name, count) in ti_stat order.
    pub fn counter_lines(&self) -> Vec<(&'static str, u64)> {
        (0..TI_STAT_COUNT as u32)
            .map(|i| {
                let name = threatintel::stat_name(ti_stat(i));
                (name, self.counters.get(name).copied().unwrap_or(0))
            })
            .collect()
    }

    /// "on, 1234 IOCs (1000 addresses, 234 networks), generation 1".
    pub fn headline(&self) -> String {
        let i = &self.iocs;
        format!(
            "{}, {} ({}, {}), generation {}",
            if self.enabled { "on" } else { "off" },
            counted(i.total() as u64, "IOC", "IOCs"),
            counted((i.exact_v4 + i.exact_v6) as u64, "address", "addresses"),
            counted((i.cidr_v4 + i.cidr_v6) as u64, "network", "networks"),
            self.generation
        )
    }
}

/// The IPS blacklist as `stats` and `status` print it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BlacklistSummary {
    /// entries blocking now
    pub blocked: u64,
    /// of which networks (the rest are addresses)
    pub networks: u64,
    /// of which until unblocked (the rest expire)
    pub permanent: u64,
}

impl BlacklistSummary {
    pub fn new(list: &[crate::maps::blacklist::Blocked]) -> Self {
        BlacklistSummary {
            blocked: list.len() as u64,
            networks: list
                .iter()
                .filter(|b| b.net.prefix_len() < b.net.max_prefix_len())
                .count() as u64,
            permanent: list.iter().filter(|b| b.expires_in.is_none()).count() as u64,
        }
    }

    /// None when no blacklist is pinned under `pin_root`.
    pub fn read_pinned(pin_root: &Path) -> Result<Option<BlacklistSummary>> {
        let probe = pin_root.join("ips_block_v4");
        match std::fs::symlink_metadata(&probe) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e).with_context(|| format!("looking for {}", probe.display())),
            Ok(_) => {}
        }
        let list = BlacklistMaps::from_pins(pin_root)?.list()?;
        Ok(Some(BlacklistSummary::new(&list)))
    }

    /// "3 blocked (1 network), 2 until unblocked".
    pub fn headline(&self) -> String {
        format!(
            "{} blocked ({}), {} until unblocked",
            self.blocked,
            counted(self.networks, "network", "networks"),
            self.permanent
        )
    }
}

/// "1 network", "2 networks".
fn counted(n: u64, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// The Prometheus endpoint and what was last published to it.
pub struct Exporter {
    handle: PrometheusHandle,
    state: Mutex<Publisher>,
}

impl Exporter {
    fn new(handle: PrometheusHandle) -> Exporter {
        Exporter {
            handle,
            state: Mutex::new(Publisher {
                described: false,
                kernel: kernel_release(),
                generation: None,
                rules: HashMap::new(),
            }),
        }
    }

    /// Serves `GET /metrics` over HTTP on `listen` from a thread of its own (whatever runtime
    /// the caller runs) and installs the process-wide metrics recorder: once per process.
    /// Fails when the address cannot be bound or a recorder is already installed.
    pub fn install(listen: SocketAddr) -> Result<Exporter> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("creating the metrics listener's runtime")?;
        let built = {
            let _in_runtime = runtime.enter();
            PrometheusBuilder::new().with_http_listener(listen).build()
        };
        // Dropping a runtime blocks, which panics when the caller runs on a runtime itself.
        let (recorder, serve) = match built {
            Ok(built) => built,
            Err(e) => {
                runtime.shutdown_background();
                return Err(e)
                    .with_context(|| format!("serving metrics on http://{listen}/metrics"));
            }
        };
        let handle = recorder.handle();
        if let Err(e) = metrics::set_global_recorder(recorder) {
            drop(serve);
            runtime.shutdown_background();
            bail!("installing the metrics recorder: {e}");
        }
        std::thread::Builder::new()
            .name("metrics-http".to_string())
            .spawn(move || {
                if let Err(e) = runtime.block_on(serve) {
                    eprintln!("ebpfsentinel: the metrics listener on {listen} stopped: {e:?}");
                }
            })
            .context("starting the metrics listener thread")?;
        Ok(Exporter::new(handle))
    }

    /// Sets every metric to the snapshot's values. Rule ids absent from it keep their last
    /// values (see the module documentation).
    pub fn publish(&self, snapshot: &Snapshot) {
        self.state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .publish(snapshot);
    }

    /// The exposition `GET /metrics` answers with right now.
    pub fn render(&self) -> String {
        self.handle.render()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeSet, HashSet};

    use metrics_exporter_prometheus::PrometheusRecorder;

    use super::*;
    use crate::config;
    use crate::ruleset;

    fn stats(values: &[(fw_stat, u64)]) -> Vec<u64> {
        let mut v = vec![0; fw_stat::FW_STAT_COUNT.0 as usize];
        for (s, n) in values {
            v[s.0 as usize] = *n;
        }
        v
    }

    fn hits(rules: &[(&str, u64, u64)]) -> Vec<RuleHits> {
        rules
            .iter()
            .map(|&(id, packets, bytes)| RuleHits {
                id: id.to_string(),
                packets,
                bytes,
            })
            .collect()
    }

    fn synthetic() -> Snapshot {
        use fw_stat as S;
        Snapshot {
            ratelimit: Vec::new(),
            generation: 1,
            stats: stats(&[
                (S::FW_STAT_SEEN, 21),
                (S::FW_STAT_PASS_RULE, 1),
                (S::FW_STAT_PASS_DEFAULT, 5),
                (S::FW_STAT_PASS_ALLOWLIST, 2),
                (S::FW_STAT_PASS_NON_IP, 4),
                (S::FW_STAT_PASS_MALFORMED, 0),
                (S::FW_STAT_PASS_MONITOR, 0),
                (S::FW_STAT_DROP_RULE, 6),
                (S::FW_STAT_DROP_DEFAULT, 0),
                (S::FW_STAT_DROP_MALFORMED, 3),
                (S::FW_STAT_EVENTS_SENT, 7),
                (S::FW_STAT_EVENTS_DROPPED, 2),
            ]),
            rules: hits(&[("lan-dns", 1, 60), ("drop-net", 6, 360)]),
            fill: vec![
                MapFill {
                    map: "fw_lpm_src_v4",
                    entries: 3,
                    capacity: 1 << 20,
                },
                MapFill {
                    map: "fw_rules_v4",
                    entries: 1,
                    capacity: 4096,
                },
            ],
            consumer: ConsumerCounters {
                events_written: 6,
                events_dropped: 1,
                reloads_ok: 2,
                reloads_failed: 1,
            },
            conntrack: None,
            threatintel: None,
            blacklist: None,
            scrub: None,
            dns: None,
            lb: None,
            ids: None,
        }
    }

    /// The exposition as blocks (one per metric family, HELP and TYPE first, then the samples
    /// in any order).
    fn families(text: &str) -> Vec<(Vec<String>, BTreeSet<String>)> {
        text.split("\n\n")
            .filter(|b| !b.trim().is_empty())
            .map(|b| {
                let (head, samples): (Vec<&str>, Vec<&str>) =
                    b.lines().partition(|l| l.starts_with('#'));
                (
                    head.into_iter().map(str::to_string).collect(),
                    samples.into_iter().map(str::to_string).collect(),
                )
            })
            .collect()
    }

    fn family<'a>(
        fams: &'a [(Vec<String>, BTreeSet<String>)],
        name: &str,
    ) -> &'a (Vec<String>, BTreeSet<String>) {
        fams.iter()
            .find(|(head, _)| {
                head.iter()
                    .any(|l| l.starts_with(&format!("# TYPE {name} ")))
            })
            .unwrap_or_else(|| panic!("no family {name} in the exposition"))
    }

    fn set(lines: &[&str]) -> BTreeSet<String> {
        lines.iter().map(|l| l.to_string()).collect()
    }

    fn recorder() -> PrometheusRecorder {
        PrometheusBuilder::new().build_recorder()
    }

    fn publish_all(recorder: &PrometheusRecorder, exporter: &Exporter, snaps: &[Snapshot]) {
        metrics::with_local_recorder(recorder, || {
            for s in snaps {
                exporter.publish(s);
            }
        });
    }

    #[test]
    fn exposition_of_a_snapshot() {
        let recorder = recorder();
        let exporter = Exporter::new(recorder.handle());
        publish_all(&recorder, &exporter, &[synthetic()]);
        let text = exporter.render();
        let fams = families(&text);

        let expect = |name: &str, kind: &str, help: &str, samples: &[&str]| {
            let (head, got) = family(&fams, name);
            assert_eq!(
                head,
                &vec![
                    format!("# HELP {name} {help}"),
                    format!("# TYPE {name} {kind}")
                ],
                "{name}"
            );
            assert_eq!(got, &set(samples), "{name}");
        };
        expect(
            "ebpfsentinel_xdp_firewall_packets_total",
            "counter",
            "Packets xdp_firewall decided, by verdict and reason (kernel fw_stats, summed over CPUs).",
            &[
                r#"ebpfsentinel_xdp_firewall_packets_total{verdict="pass",reason="rule"} 1"#,
                r#"ebpfsentinel_xdp_firewall_packets_total{verdict="pass",reason="default_policy"} 5"#,
                r#"ebpfsentinel_xdp_firewall_packets_total{verdict="pass",reason="allowlist"} 2"#,
                r#"ebpfsentinel_xdp_firewall_packets_total{verdict="pass",reason="non_ip"} 4"#,
                r#"ebpfsentinel_xdp_firewall_packets_total{verdict="pass",reason="malformed"} 0"#,
                r#"ebpfsentinel_xdp_firewall_packets_total{verdict="pass",reason="monitor"} 0"#,
                r#"ebpfsentinel_xdp_firewall_packets_total{verdict="pass",reason="tracked"} 0"#,
                r#"ebpfsentinel_xdp_firewall_packets_total{verdict="drop",reason="rule"} 6"#,
                r#"ebpfsentinel_xdp_firewall_packets_total{verdict="drop",reason="default_policy"} 0"#,
                r#"ebpfsentinel_xdp_firewall_packets_total{verdict="drop",reason="malformed"} 3"#,
                r#"ebpfsentinel_xdp_firewall_packets_total{verdict="drop",reason="blocked"} 0"#,
            ],
        );
        expect(
            "ebpfsentinel_xdp_firewall_packets_seen_total",
            "counter",
            "Packets xdp_firewall looked at: the sum of ebpfsentinel_xdp_firewall_packets_total.",
            &["ebpfsentinel_xdp_firewall_packets_seen_total 21"],
        );
        expect(
            "ebpfsentinel_events_total",
            "counter",
            "Events a program put on the ring buffer (rules with log: true, monitor-mode drops).",
            &[r#"ebpfsentinel_events_total{program="xdp_firewall"} 7"#],
        );
        expect(
            "ebpfsentinel_events_dropped_total",
            "counter",
            "Events lost: stage=kernel when the ring buffer was over 3/4 full, stage=consumer when the daemon could not write them.",
            &[
                r#"ebpfsentinel_events_dropped_total{stage="kernel"} 2"#,
                r#"ebpfsentinel_events_dropped_total{stage="consumer"} 1"#,
            ],
        );
        expect(
            "ebpfsentinel_events_written_total",
            "counter",
            "Events the daemon wrote out.",
            &["ebpfsentinel_events_written_total 6"],
        );
        expect(
            "ebpfsentinel_rule_packets_total",
            "counter",
            "Packets that matched a rule, by rule id; continued across reloads while the id exists.",
            &[
                r#"ebpfsentinel_rule_packets_total{rule="lan-dns"} 1"#,
                r#"ebpfsentinel_rule_packets_total{rule="drop-net"} 6"#,
            ],
        );
        expect(
            "ebpfsentinel_rule_bytes_total",
            "counter",
            "Bytes (whole frames) of the packets that matched a rule, by rule id; continued across reloads while the id exists.",
            &[
                r#"ebpfsentinel_rule_bytes_total{rule="lan-dns"} 60"#,
                r#"ebpfsentinel_rule_bytes_total{rule="drop-net"} 360"#,
            ],
        );
        expect(
            "ebpfsentinel_map_entries",
            "gauge",
            "Entries the active ruleset generation holds in a BPF map.",
            &[
                r#"ebpfsentinel_map_entries{map="fw_lpm_src_v4"} 3"#,
                r#"ebpfsentinel_map_entries{map="fw_rules_v4"} 1"#,
            ],
        );
        expect(
            "ebpfsentinel_map_capacity",
            "gauge",
            "Entries one ruleset generation may hold in a BPF map.",
            &[
                r#"ebpfsentinel_map_capacity{map="fw_lpm_src_v4"} 1048576"#,
                r#"ebpfsentinel_map_capacity{map="fw_rules_v4"} 4096"#,
            ],
        );
        expect(
            "ebpfsentinel_config_generation",
            "gauge",
            "The active ruleset generation (0 or 1; flips on every reload).",
            &["ebpfsentinel_config_generation 1"],
        );
        expect(
            "ebpfsentinel_config_reloads_total",
            "counter",
            "Config reloads, by result: ok applied, error rejected with the running ruleset kept.",
            &[
                r#"ebpfsentinel_config_reloads_total{result="ok"} 2"#,
                r#"ebpfsentinel_config_reloads_total{result="error"} 1"#,
            ],
        );
        expect(
            "ebpfsentinel_build_info",
            "gauge",
            "Always 1: the ebpfsentinel version and the kernel release it runs on.",
            &[&format!(
                r#"ebpfsentinel_build_info{{version="{}",kernel="{}"}} 1"#,
                env!("CARGO_PKG_VERSION"),
                kernel_release()
            )],
        );
        assert_eq!(fams.len(), 12, "{text}");
    }

    #[test]
    fn conntrack_metrics_come_with_conntrack() {
        let recorder = recorder();
        let exporter = Exporter::new(recorder.handle());
        publish_all(&recorder, &exporter, &[synthetic()]);
        assert!(!exporter.render().contains("conntrack"));

        let mut stats = [0; CT_STAT_COUNT];
        for (i, v) in stats.iter_mut().enumerate() {
            *v = 10 * i as u64 + 1;
        }
        let mut ct = Conntrack {
            stats,
            evicted: 4,
            entries: None,
        };
        let snap = |ct: &Conntrack| Snapshot {
            conntrack: Some(ct.clone()),
            ..synthetic()
        };
        publish_all(&recorder, &exporter, &[snap(&ct)]);
        let text = exporter.render();
        let fams = families(&text);
        for (i, c) in CT_COUNTERS.iter().enumerate() {
            let (head, samples) = family(&fams, c.metric);
            assert_eq!(head[0], format!("# HELP {} {}", c.metric, c.help));
            assert_eq!(samples, &set(&[&format!("{} {}", c.metric, 10 * i + 1)]));
        }
        assert_eq!(
            &family(&fams, "ebpfsentinel_conntrack_new_total").1,
            &set(&["ebpfsentinel_conntrack_new_total 21"])
        );
        assert_eq!(
            &family(&fams, "ebpfsentinel_conntrack_fast_path_total").1,
            &set(&["ebpfsentinel_conntrack_fast_path_total 91"])
        );
        assert_eq!(
            &family(&fams, CT_EVICTED).1,
            &set(&["ebpfsentinel_conntrack_evicted_total 4"])
        );
        assert!(
            !text.contains(CT_ENTRIES),
            "no gauge before the first sweep"
        );
        assert_eq!(fams.len(), 12 + CT_STAT_COUNT + 1, "{text}");

        let mut entries = [0; CT_STATE_COUNT];
        entries[crate::abi::ct_state::CT_TCP_ESTABLISHED.0 as usize] = 7;
        entries[crate::abi::ct_state::CT_UDP_NEW.0 as usize] = 2;
        ct.entries = Some(entries);
        publish_all(&recorder, &exporter, &[snap(&ct)]);
        let fams = families(&exporter.render());
        let (head, gauges) = family(&fams, CT_ENTRIES);
        assert_eq!(head[1], format!("# TYPE {CT_ENTRIES} gauge"));
        assert_eq!(gauges.len(), CT_STATE_COUNT);
        for line in [
            r#"ebpfsentinel_conntrack_entries{proto="tcp",state="established"} 7"#,
            r#"ebpfsentinel_conntrack_entries{proto="udp",state="new"} 2"#,
            r#"ebpfsentinel_conntrack_entries{proto="icmp",state="established"} 0"#,
            r#"ebpfsentinel_conntrack_entries{proto="tcp",state="close"} 0"#,
        ] {
            assert!(gauges.contains(line), "{line} not in {gauges:#?}");
        }
    }

    #[test]
    fn dns_metrics_come_with_dns() {
        let recorder = recorder();
        let exporter = Exporter::new(recorder.handle());
        publish_all(&recorder, &exporter, &[synthetic()]);
        assert!(!exporter.render().contains("ebpfsentinel_dns"));
        let snap = Snapshot {
            dns: Some(Dns {
                stats: [40, 30, 5, 2, 4, 3, 3, 6, 1],
                entries: Some(17418),
                feed_errors: 2,
            }),
            ..synthetic()
        };
        publish_all(&recorder, &exporter, &[snap]);
        let text = exporter.render();
        let fams = families(&text);
        assert_eq!(
            &family(&fams, DNS_PACKETS).1,
            &set(&[
                "ebpfsentinel_dns_packets_total{result=\"seen\"} 40",
                "ebpfsentinel_dns_packets_total{result=\"queries\"} 30",
                "ebpfsentinel_dns_packets_total{result=\"blocked\"} 5",
                "ebpfsentinel_dns_packets_total{result=\"alerted\"} 2",
                "ebpfsentinel_dns_packets_total{result=\"not_query\"} 4",
                "ebpfsentinel_dns_packets_total{result=\"malformed\"} 3",
                "ebpfsentinel_dns_packets_total{result=\"truncated\"} 3",
            ])
        );
        assert_eq!(
            &family(&fams, DNS_EVENTS_DROPPED).1,
            &set(&["ebpfsentinel_dns_events_dropped_total 1"])
        );
        assert_eq!(
            &family(&fams, DNS_ENTRIES).1,
            &set(&["ebpfsentinel_dns_blocklist_entries 17418"])
        );
        assert_eq!(
            &family(&fams, DNS_FEED_ERRORS).1,
            &set(&["ebpfsentinel_dns_feed_errors_total 2"])
        );
    }

    #[test]
    fn scrub_metrics_come_with_scrub() {
        let recorder = recorder();
        let exporter = Exporter::new(recorder.handle());
        publish_all(&recorder, &exporter, &[synthetic()]);
        assert!(!exporter.render().contains("scrub"));
        let snap = Snapshot {
            scrub: Some(Scrub {
                stats: [50, 1, 2, 3, 4],
            }),
            ..synthetic()
        };
        publish_all(&recorder, &exporter, &[snap]);
        let text = exporter.render();
        let fams = families(&text);
        assert_eq!(
            &family(&fams, SCRUB_SEEN).1,
            &set(&["ebpfsentinel_scrub_packets_seen_total 50"])
        );
        assert_eq!(
            &family(&fams, SCRUB_REWRITES).1,
            &set(&[
                "ebpfsentinel_scrub_rewrites_total{what=\"ttl_raised\"} 1",
                "ebpfsentinel_scrub_rewrites_total{what=\"mss_clamped\"} 2",
                "ebpfsentinel_scrub_rewrites_total{what=\"df_cleared\"} 3",
                "ebpfsentinel_scrub_rewrites_total{what=\"ip_id_randomised\"} 4",
            ])
        );
    }

    #[test]
    fn lb_metrics_come_with_services() {
        let recorder = recorder();
        let exporter = Exporter::new(recorder.handle());
        publish_all(&recorder, &exporter, &[synthetic()]);
        assert!(!exporter.render().contains("_lb_"));
        let snap = Snapshot {
            lb: Some(Lb {
                stats: [100, 1, 2, 3, 4, 5, 6, 7, 8, 9],
                services: vec![LbServiceMetrics {
                    id: "web".into(),
                    counters: crate::maps::lb::ServiceCounters {
                        packets: 10,
                        bytes: 1000,
                        no_backend: 4,
                    },
                    backends: [2, 1, 0],
                }],
            }),
            ..synthetic()
        };
        publish_all(&recorder, &exporter, &[snap]);
        let text = exporter.render();
        let fams = families(&text);
        assert_eq!(
            &family(&fams, LB_PACKETS).1,
            &set(&[
                "ebpfsentinel_lb_packets_total{result=\"miss\"} 1",
                "ebpfsentinel_lb_packets_total{result=\"forwarded\"} 2",
                "ebpfsentinel_lb_packets_total{result=\"forwarded_stack\"} 3",
                "ebpfsentinel_lb_packets_total{result=\"no_backend\"} 4",
                "ebpfsentinel_lb_packets_total{result=\"reply\"} 5",
                "ebpfsentinel_lb_packets_total{result=\"reply_local\"} 6",
                "ebpfsentinel_lb_packets_total{result=\"unsupported\"} 7",
                "ebpfsentinel_lb_packets_total{result=\"mirrored\"} 8",
                "ebpfsentinel_lb_packets_total{result=\"steered\"} 9",
            ])
        );
        assert_eq!(
            &family(&fams, LB_SERVICE_BYTES).1,
            &set(&["ebpfsentinel_lb_service_bytes_total{service=\"web\"} 1000"])
        );
        assert_eq!(
            &family(&fams, LB_BACKENDS).1,
            &set(&[
                "ebpfsentinel_lb_backends{service=\"web\",state=\"up\"} 2",
                "ebpfsentinel_lb_backends{service=\"web\",state=\"down\"} 1",
                "ebpfsentinel_lb_backends{service=\"web\",state=\"drained\"} 0",
            ])
        );
    }

    #[test]
    fn threatintel_and_ips_metrics_come_with_their_parts() {
        use crate::feeds::{Ioc, TiAction};
        use crate::maps::threatintel::MANUAL_FEED;
        let recorder = recorder();
        let exporter = Exporter::new(recorder.handle());
        publish_all(&recorder, &exporter, &[synthetic()]);
        let text = exporter.render();
        assert!(
            !text.contains("threatintel") && !text.contains("ips_"),
            "{text}"
        );

        let mut stats = [0; TI_STAT_COUNT];
        for (i, v) in stats.iter_mut().enumerate() {
            *v = 100 + i as u64;
        }
        let ioc = |net: &str, feed_id| Ioc {
            net: net.parse().unwrap(),
            feed_id,
            confidence: 100,
            category: 0,
            action: TiAction::Drop,
        };
        let installed = IocSet {
            iocs: [
                ioc("192.0.2.1/32", 0),
                ioc("192.0.2.2/32", 0),
                ioc("10.0.0.0/8", 1),
                ioc("2001:db8::/32", MANUAL_FEED),
            ]
            .into_iter()
            .map(|i| (i.net, i))
            .collect(),
            categories: Vec::new(),
        };
        let status = |id: &str, feed_id, entries, errors, last_refresh| FeedStatus {
            id: id.into(),
            feed_id,
            entries,
            errors,
            last_refresh,
            ..Default::default()
        };
        let file = FeedsFile {
            feeds: vec![
                status("feodo", 0, 2, 0, Some(1_700_000_000)),
                status("drop", 1, 1, 3, None),
                status("empty", 2, 0, 1, None),
            ],
            ..Default::default()
        };
        let ti = ThreatIntel::new(stats, &installed, Some(&file));
        assert_eq!(
            ti.iocs,
            BTreeMap::from([
                ("feodo".to_string(), 2),
                ("drop".to_string(), 1),
                ("empty".to_string(), 0),
                ("manual".to_string(), 1),
            ])
        );
        let snap = Snapshot {
            threatintel: Some(ti),
            blacklist: Some(Blacklist {
                entries: 4,
                blocks: 9,
                expiries: 5,
            }),
            ..synthetic()
        };
        publish_all(&recorder, &exporter, &[snap]);
        let text = exporter.render();
        let fams = families(&text);
        let samples = |name: &str| family(&fams, name).1.clone();
        assert_eq!(
            samples(TI_PACKETS),
            set(&[
                r#"ebpfsentinel_threatintel_packets_total{result="bloom_negative"} 101"#,
                r#"ebpfsentinel_threatintel_packets_total{result="bloom_false_positive"} 102"#,
                r#"ebpfsentinel_threatintel_packets_total{result="match_alert"} 103"#,
                r#"ebpfsentinel_threatintel_packets_total{result="match_drop"} 104"#,
                r#"ebpfsentinel_threatintel_packets_total{result="match_quarantine"} 105"#,
                r#"ebpfsentinel_threatintel_packets_total{result="quarantine_failed"} 106"#,
            ])
        );
        assert_eq!(
            samples(TI_SEEN),
            set(&["ebpfsentinel_threatintel_packets_seen_total 100"])
        );
        assert!(
            samples(EVENTS).contains(r#"ebpfsentinel_events_total{program="tc_threatintel"} 107"#)
        );
        assert_eq!(
            samples(TI_EVENTS_DROPPED),
            set(&["ebpfsentinel_threatintel_events_dropped_total 108"])
        );
        assert_eq!(
            samples(TI_IOCS),
            set(&[
                r#"ebpfsentinel_threatintel_iocs{feed="feodo"} 2"#,
                r#"ebpfsentinel_threatintel_iocs{feed="drop"} 1"#,
                r#"ebpfsentinel_threatintel_iocs{feed="empty"} 0"#,
                r#"ebpfsentinel_threatintel_iocs{feed="manual"} 1"#,
            ])
        );
        assert!(samples(TI_FEED_ERRORS)
            .contains(r#"ebpfsentinel_threatintel_feed_errors_total{feed="drop"} 3"#));
        assert!(samples(TI_FEED_ENTRIES)
            .contains(r#"ebpfsentinel_threatintel_feed_entries{feed="feodo"} 2"#));
        assert!(samples(TI_FEED_REFRESHED).contains(
            r#"ebpfsentinel_threatintel_feed_last_refresh_timestamp_seconds{feed="feodo"} 1700000000"#
        ));
        assert_eq!(
            samples(IPS_ENTRIES),
            set(&["ebpfsentinel_ips_blacklist_entries 4"])
        );
        assert_eq!(
            samples(IPS_BLOCKS),
            set(&["ebpfsentinel_ips_blocks_total 9"])
        );
        assert_eq!(
            samples(IPS_EXPIRIES),
            set(&["ebpfsentinel_ips_expiries_total 5"])
        );
        for name in [TI_PACKETS, TI_IOCS, IPS_ENTRIES, IPS_BLOCKS] {
            let (head, _) = family(&fams, name);
            assert!(head[0].starts_with(&format!("# HELP {name} ")), "{head:?}");
        }
        // 12 base families, 10 of threat intel and the IPS (events_total is shared)
        assert_eq!(fams.len(), 12 + 10, "{text}");
    }

    #[test]
    fn every_ti_packet_moves_one_result() {
        let names: BTreeSet<&str> = TI_RESULT_STATS
            .iter()
            .map(|s| threatintel::stat_name(*s))
            .collect();
        assert_eq!(names.len(), TI_RESULT_STATS.len());
        assert!(!TI_RESULT_STATS.contains(&ti_stat::TI_STAT_SEEN));
        assert!(!TI_RESULT_STATS.contains(&ti_stat::TI_STAT_EVENTS_SENT));
    }

    #[test]
    fn threatintel_and_blacklist_summaries() {
        use crate::maps::blacklist::Blocked;
        use std::time::Duration;
        let b = |net: &str, expires_in| Blocked {
            net: net.parse().unwrap(),
            expires_in,
            reason: 0,
        };
        let s = BlacklistSummary::new(&[
            b("192.0.2.1/32", None),
            b("198.51.100.0/24", Some(Duration::from_secs(60))),
            b("2001:db8::/32", None),
        ]);
        assert_eq!((s.blocked, s.networks, s.permanent), (3, 2, 2));
        assert_eq!(s.headline(), "3 blocked (2 networks), 2 until unblocked");
        assert_eq!(
            BlacklistSummary::new(&[b("10.0.0.0/8", None)]).headline(),
            "1 blocked (1 network), 1 until unblocked"
        );
        let mut counters = BTreeMap::new();
        counters.insert("seen", 5);
        let t = ThreatIntelSummary {
            enabled: true,
            generation: 1,
            quarantine_vlan: 0,
            iocs: IocCounts {
                exact_v4: 3,
                exact_v6: 1,
                cidr_v4: 2,
                cidr_v6: 0,
            },
            counters,
            feeds: Vec::new(),
        };
        assert_eq!(
            t.headline(),
            "on, 6 IOCs (4 addresses, 2 networks), generation 1"
        );
        assert_eq!(t.counter_lines().len(), TI_STAT_COUNT);
        assert_eq!(t.counter_lines()[0], ("seen", 5));
        let json = serde_json::to_value(&t).unwrap();
        assert_eq!(json["iocs"]["cidr_v4"], 2);
        assert_eq!(json["counters"]["seen"], 5);
    }

    #[test]
    fn conntrack_summary_for_stats_and_status() {
        use crate::abi::ct_state as C;
        let mut census = [0; CT_STATE_COUNT];
        census[C::CT_TCP_ESTABLISHED.0 as usize] = 3;
        census[C::CT_UDP_NEW.0 as usize] = 2;
        census[C::CT_ICMP_ESTABLISHED.0 as usize] = 1;
        let mut stats = [0; CT_STAT_COUNT];
        stats[ct_stat::CT_STAT_NEW.0 as usize] = 9;
        let s = ConntrackSummary::new(&census, &stats);
        assert_eq!(s.entries, 6);
        assert_eq!(
            s.states_text(),
            "icmp established 1, tcp established 3, udp new 2"
        );
        assert_eq!(s.counter_lines().len(), CT_STAT_COUNT);
        assert_eq!(s.counter_lines()[2], ("new", 9));
        let json = serde_json::to_value(&s).unwrap();
        assert_eq!(json["by_state"]["tcp"]["syn_sent"], 0);
        assert_eq!(json["by_state"]["udp"]["new"], 2);
        assert_eq!(json["counters"]["fast_path"], 0);
        assert_eq!(
            ConntrackSummary::new(&[0; CT_STATE_COUNT], &stats).states_text(),
            ""
        );
    }

    #[test]
    fn every_ct_stat_slot_has_its_counter() {
        for (i, c) in CT_COUNTERS.iter().enumerate() {
            assert_eq!(c.stat.0 as usize, i);
            assert_eq!(c.metric, format!("ebpfsentinel_conntrack_{}_total", c.name));
        }
    }

    #[test]
    fn publishing_again_sets_absolute_values() {
        let recorder = recorder();
        let exporter = Exporter::new(recorder.handle());
        let first = synthetic();
        let mut second = synthetic();
        second.stats[fw_stat::FW_STAT_SEEN.0 as usize] = 30;
        second.consumer.events_written = 9;
        second.rules[1].packets = 8;
        publish_all(&recorder, &exporter, &[first.clone(), first, second]);
        let fams = families(&exporter.render());
        assert!(family(&fams, SEEN)
            .1
            .contains("ebpfsentinel_xdp_firewall_packets_seen_total 30"));
        assert!(family(&fams, EVENTS_WRITTEN)
            .1
            .contains("ebpfsentinel_events_written_total 9"));
        assert!(family(&fams, RULE_PACKETS)
            .1
            .contains(r#"ebpfsentinel_rule_packets_total{rule="drop-net"} 8"#));
    }

    fn rule_lines(exporter: &Exporter) -> BTreeSet<String> {
        let fams = families(&exporter.render());
        let mut out = family(&fams, RULE_PACKETS).1.clone();
        out.extend(family(&fams, RULE_BYTES).1.iter().cloned());
        out
    }

    #[test]
    fn rule_counters_continue_across_reloads_and_vanished_rules_freeze() {
        let recorder = recorder();
        let exporter = Exporter::new(recorder.handle());
        let snap = |generation, rules: &[(&str, u64, u64)]| Snapshot {
            ratelimit: Vec::new(),
            generation,
            rules: hits(rules),
            ..synthetic()
        };
        publish_all(
            &recorder,
            &exporter,
            &[
                snap(0, &[("a", 3, 30), ("b", 5, 50)]),
                // reload: b is gone, c is new, a restarts from zero in generation 1
                snap(1, &[("c", 1, 10), ("a", 0, 0)]),
                snap(1, &[("c", 2, 20), ("a", 4, 40)]),
            ],
        );
        assert_eq!(
            rule_lines(&exporter),
            set(&[
                r#"ebpfsentinel_rule_packets_total{rule="a"} 7"#,
                r#"ebpfsentinel_rule_packets_total{rule="b"} 5"#,
                r#"ebpfsentinel_rule_packets_total{rule="c"} 2"#,
                r#"ebpfsentinel_rule_bytes_total{rule="a"} 70"#,
                r#"ebpfsentinel_rule_bytes_total{rule="b"} 50"#,
                r#"ebpfsentinel_rule_bytes_total{rule="c"} 20"#,
            ])
        );

        publish_all(
            &recorder,
            &exporter,
            &[
                // b comes back after another reload and continues from its total
                snap(0, &[("b", 1, 10)]),
                // two reloads between publishes: same generation, counts went down
                snap(0, &[("b", 0, 0), ("a", 2, 20)]),
            ],
        );
        assert_eq!(
            rule_lines(&exporter),
            set(&[
                r#"ebpfsentinel_rule_packets_total{rule="a"} 9"#,
                r#"ebpfsentinel_rule_packets_total{rule="b"} 6"#,
                r#"ebpfsentinel_rule_packets_total{rule="c"} 2"#,
                r#"ebpfsentinel_rule_bytes_total{rule="a"} 90"#,
                r#"ebpfsentinel_rule_bytes_total{rule="b"} 60"#,
                r#"ebpfsentinel_rule_bytes_total{rule="c"} 20"#,
            ])
        );
    }

    #[test]
    fn old_generation_read_after_the_flip_loses_no_hits() {
        let recorder = recorder();
        let exporter = Exporter::new(recorder.handle());
        let snap = |generation, rules: &[(&str, u64, u64)]| Snapshot {
            ratelimit: Vec::new(),
            generation,
            rules: hits(rules),
            ..synthetic()
        };
        publish_all(
            &recorder,
            &exporter,
            &[
                snap(0, &[("a", 3, 30)]),
                // the old generation's final counts, read after the flip
                snap(0, &[("a", 5, 50)]),
                snap(1, &[("a", 1, 10)]),
            ],
        );
        assert!(rule_lines(&exporter).contains(r#"ebpfsentinel_rule_packets_total{rule="a"} 6"#));
    }

    #[test]
    fn install_on_a_busy_address_fails_cleanly_inside_a_runtime() {
        fn shareable<T: Send + Sync>() {}
        shareable::<Exporter>();
        let busy = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = busy.local_addr().unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let err = rt
            .block_on(async { Exporter::install(addr) })
            .err()
            .expect("the address is taken");
        let msg = format!("{err:#}");
        assert!(
            msg.contains(&format!("serving metrics on http://{addr}/metrics")),
            "{msg}"
        );
    }

    #[test]
    fn every_stat_slot_has_a_distinct_label() {
        let labels: HashSet<(&str, &str)> = (0..fw_stat::FW_STAT_COUNT.0)
            .map(|s| stat_label(fw_stat(s)))
            .collect();
        assert_eq!(labels.len(), fw_stat::FW_STAT_COUNT.0 as usize);
        assert!(!labels.contains(&("", "unknown")));
        for s in VERDICT_STATS {
            let (verdict, reason) = stat_label(s);
            assert!(verdict == "pass" || verdict == "drop", "{s:?}");
            assert!(!reason.is_empty());
        }
        let others = (0..fw_stat::FW_STAT_COUNT.0)
            .map(fw_stat)
            .filter(|s| !VERDICT_STATS.contains(s));
        for s in others {
            assert_eq!(stat_label(s).0, "", "{s:?}");
        }
    }

    fn compile(yaml: &str) -> CompiledRuleset {
        let cfg = config::parse_str(yaml, std::path::Path::new("inline.yaml"))
            .unwrap_or_else(|e| panic!("config:\n{e}"));
        ruleset::compile(&cfg.firewall).expect("compile")
    }

    fn by_map(fill: &[MapFill]) -> HashMap<&'static str, (u64, u64)> {
        fill.iter()
            .map(|f| (f.map, (f.entries, f.capacity)))
            .collect()
    }

    #[test]
    fn fill_levels_count_each_map_of_a_generation() {
        let rs = compile(
            r#"
firewall:
  allowlist: [198.51.100.0/24, 192.0.2.10, "2001:db8::10"]
  rules:
    - { id: nets, action: drop, src: [203.0.113.0/24, 203.0.113.7, 10.0.0.0/8] }
    - { id: to-host, action: drop, dst: "2001:db8::1" }
    - { id: dns, action: pass, proto: udp, src: 10.1.0.0/16, dst_port: 53 }
    - { id: ssh, action: pass, proto: tcp, src: [10.2.0.0/16, 10.3.0.0/24], dst: 192.0.2.0/24, dst_port: 22 }
    - { id: v6-ssh, action: pass, proto: tcp, src: "2001:db8:1::/48", dst_port: 22 }
"#,
        );
        let fill = fill_levels(&rs);
        let m = by_map(&fill);
        assert_eq!(fill.len(), m.len(), "a map reported twice");
        let cidrs = abi::MAX_CIDRS_PER_GEN as u64;
        let cls = abi::MAX_CLASSIFIER_PREFIXES_PER_GEN as u64;
        assert_eq!(m["fw_allow_v4"], (2, abi::MAX_ALLOWLIST_PER_GEN as u64));
        assert_eq!(m["fw_allow_v6"], (1, abi::MAX_ALLOWLIST_PER_GEN as u64));
        assert_eq!(m["fw_lpm_src_v4"], (2, cidrs));
        assert_eq!(m["fw_exact_src_v4"], (1, cidrs));
        assert_eq!(m["fw_exact_dst_v6"], (1, cidrs));
        for idle in [
            "fw_lpm_dst_v4",
            "fw_exact_dst_v4",
            "fw_lpm_src_v6",
            "fw_lpm_dst_v6",
            "fw_exact_src_v6",
        ] {
            assert_eq!(m[idle], (0, cidrs), "{idle}");
        }
        // few prefix lengths: the classifier's address dimensions live in the hashes
        let hashed = |f: usize| {
            let c = &rs.classifiers[f];
            assert!(c.hash_lens.iter().all(|l| !l.is_empty()) || c.dst.is_empty());
            (c.src.len() + c.dst.len()) as u64
        };
        assert!(hashed(0) > 0);
        assert_eq!(m["fw_cls_hash_v4"], (hashed(0), cls));
        assert_eq!(m["fw_cls_hash_v6"], (hashed(1), cls));
        for trie in [
            "fw_cls_src_v4",
            "fw_cls_dst_v4",
            "fw_cls_src_v6",
            "fw_cls_dst_v6",
        ] {
            assert_eq!(m[trie], (0, cls), "{trie}");
        }
        assert_eq!(
            m["fw_bitmaps"],
            (rs.bitmaps.len() as u64, abi::BITMAP_POOL_PER_GEN as u64)
        );
        assert!(!rs.bitmaps.is_empty());
        let rules = abi::MAX_RULES_PER_FAMILY as u64;
        assert_eq!(m["fw_rules_v4"], (2, rules));
        assert_eq!(m["fw_rules_v6"], (1, rules));
    }

    #[test]
    fn fill_levels_of_a_classifier_dimension_in_its_trie() {
        // more distinct source prefix lengths than FW_CLS_HASH_LENS: the trie
        let srcs: Vec<String> = (8..=13).map(|l| format!("10.0.0.0/{l}")).collect();
        let rs = compile(&format!(
            "firewall:\n  rules:\n    - {{ id: many, action: drop, proto: udp, src: [{}] }}\n",
            srcs.join(", ")
        ));
        assert!(rs.classifiers[0].hash_lens[0].is_empty());
        let m = by_map(&fill_levels(&rs));
        let src = rs.classifiers[0].src.len() as u64;
        assert!(src >= 6);
        assert_eq!(m["fw_cls_src_v4"].0, src);
        assert_eq!(m["fw_cls_hash_v4"].0, 0);
        assert_eq!(m["fw_cls_dst_v4"].0, 0);
    }
}
