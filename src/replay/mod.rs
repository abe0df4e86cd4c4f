//! `ebpfsentinel test`: every packet of a capture through the real programs, loaded privately
//! (no pins, no attachment) and configured the way the daemon configures them, with
//! BPF_PROG_TEST_RUN: the XDP entry program first, then, for what it passes, the TC ingress
//! entry program. Maps persist between runs, so conntrack entries and rate-limit buckets carry
//! from one packet to the next.
//!
//! Which stage decided, and by which rule, comes from what the run left behind: the per-stage
//! counters that moved (see [`stages::STAGES`]), the firewall's per-rule hit counters and the
//! events the run put on the ring.

pub mod parse;
pub mod stages;

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::rc::Rc;
use std::time::Instant;

use anyhow::{anyhow, bail, Context, Result};
use libbpf_rs::{MapCore, MapFlags, MapHandle, ProgramInput, RingBuffer, RingBufferBuilder};
use serde::Serialize;

use crate::config::Config;
use crate::events::{self, Clock, EveEvent, RuleSpace};
use crate::feeds::{Feeds, FetchLimits, Fetcher};
use crate::loader::{Dataplane, LoadOptions};
use crate::maps::firewall::FirewallMaps;
use crate::maps::Generations;
use crate::ruleset::ratelimit::CompiledRateLimit;
use crate::ruleset::CompiledRuleset;
use parse::{Parse, Tuple};
use stages::{Hook, Role, Rules, Stage, STAGES};

/// Room for a stage that grows the frame (encapsulation, a pushed VLAN tag).
const OUT_HEADROOM: usize = 512;
const ETH_HLEN: usize = 14;

const XDP_VERDICTS: [&str; 5] = ["aborted", "drop", "pass", "tx", "redirect"];
const TC_ACT_UNSPEC: i32 = -1;
const TC_ACT_OK: i32 = 0;
const TC_ACT_SHOT: i32 = 2;
const TC_ACT_REDIRECT: i32 = 7;

/// One replayed packet, as `--json` prints it.
#[derive(Debug, Serialize)]
pub struct Record {
    /// position in the whole replay, from 0
    pub index: usize,
    pub file: String,
    /// position in its capture, from 0
    pub frame: usize,
    pub timestamp: String,
    pub ts_ns: u64,
    pub link_type: u32,
    pub len: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tuple: Option<Tuple>,
    /// why there is no 5-tuple: not IP, malformed, unsupported link type
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parse_error: Option<String>,
    /// the parse in tcpdump -n notation
    pub explain: String,
    /// pass, drop, tx, redirect, aborted (the kernel's verdict); unsupported or error (no run)
    pub verdict: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stage: Option<&'static str>,
    /// the deciding stage's counter that moved (pass_rule, drop_over_rate, match_drop, ...)
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rule: Option<String>,
    /// the stages that saw the packet, in order
    pub path: Vec<&'static str>,
    /// other counters that moved, as stage:counter (conntrack:established, scrub:mss_clamped)
    pub notes: Vec<String>,
    pub events: Vec<EveEvent>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[derive(Debug, Default, Serialize)]
pub struct Summary {
    pub summary: bool,
    pub files: usize,
    pub packets: usize,
    pub by_verdict: BTreeMap<String, u64>,
    pub by_stage: BTreeMap<String, u64>,
    /// stage:rule -> packets it decided
    pub by_rule: BTreeMap<String, u64>,
    /// link type -> packets not replayed because of it
    pub unsupported_link_types: BTreeMap<u32, u64>,
    /// files that could not be read at all, or stopped early: file -> why (with the byte offset)
    pub file_errors: BTreeMap<String, String>,
    pub elapsed_ms: u64,
}

impl Summary {
    pub fn count(&mut self, r: &Record) {
        self.packets += 1;
        *self.by_verdict.entry(r.verdict.clone()).or_default() += 1;
        if let Some(stage) = r.stage {
            *self.by_stage.entry(stage.to_string()).or_default() += 1;
            if let Some(rule) = &r.rule {
                *self.by_rule.entry(format!("{stage}:{rule}")).or_default() += 1;
            }
        }
    }
}

struct StageStats {
    stage: &'static Stage,
    map: MapHandle,
}

/// The programs, loaded privately and configured, and what attributing a verdict reads.
pub struct Replay {
    dp: Dataplane,
    fw: FirewallMaps,
    fw_generation: u32,
    ruleset: CompiledRuleset,
    ratelimit: CompiledRateLimit,
    feeds: Vec<String>,
    dns_feeds: Vec<String>,
    /// IDS rule ids by rank (one generation: the replay never reloads)
    ids: Vec<String>,
    stats: Vec<StageStats>,
    ring: RingBuffer<'static>,
    pending: Rc<RefCell<Vec<Vec<u8>>>>,
    clock: Clock,
}

fn percpu_slots(map: &MapHandle, count: u32) -> Result<Vec<u64>> {
    (0..count)
        .map(|slot| {
            let per_cpu = map
                .lookup_percpu(&slot.to_ne_bytes(), MapFlags::ANY)?
                .unwrap_or_default();
            Ok(per_cpu
                .iter()
                .filter_map(|v| v.get(..8))
                .map(|b| u64::from_ne_bytes(b.try_into().expect("8 bytes")))
                .sum())
        })
        .collect()
}

/// Threat-intel IOCs from the configured feeds, fetched once (files and URLs alike).
fn load_feeds(cfg: &Config) -> Result<crate::feeds::IocSet> {
    let mut feeds = Feeds::new(&cfg.threatintel, Fetcher::new(FetchLimits::default()));
    for r in feeds.refresh_all(Instant::now()) {
        if let Err(e) = &r.outcome {
            bail!("threat-intel feed {}: {e}", r.id);
        }
    }
    Ok(feeds.merged())
}

/// The DNS blocklist of the config's domains and feeds, fetched once.
fn load_dns_blocklist(dns: &crate::config::DnsConfig) -> Result<crate::maps::dns::Blocklist> {
    let mut feeds = crate::feeds::domain_feeds::DomainFeeds::new(
        &dns.blocklist,
        Fetcher::new(FetchLimits::default()),
    );
    for i in 0..dns.blocklist.feeds.len() {
        let r = feeds.refresh(i, Instant::now());
        if let Err(e) = &r.outcome {
            bail!("dns feed {}: {}", r.id, e.message);
        }
    }
    Ok(feeds.blocklist())
}

impl Replay {
    pub fn new(cfg: &Config) -> Result<Replay> {
        let (ruleset, ratelimit) = crate::daemon::compile(cfg)?;
        let dp = Dataplane::load(&LoadOptions {
            pin_root: None,
            bench_addrs: None,
            ct_table_size: Some(cfg.conntrack.table_size),
        })?;
        let fw = dp.firewall_maps()?;
        let fw_generation = fw.apply(&ruleset)?;
        dp.ratelimit_maps()?.apply(&ratelimit)?;
        dp.set_stage(
            crate::abi::xdp_stage::XDP_STAGE_RATELIMIT,
            ratelimit.enabled(),
        )?;
        if !cfg.loadbalancer.services.is_empty() {
            // no mirror port and no CPU steering offline: only the backend choice and rewrite
            let state = crate::lb::LbState::new(cfg.loadbalancer.clone());
            dp.lb_maps()?.sync(&state.views())?;
            dp.set_stage(crate::abi::xdp_stage::XDP_STAGE_LB, true)?;
        }
        crate::daemon::apply_tc_stages(&dp, &dp.conntrack_maps()?, cfg)?;
        if crate::intel::enabled(&cfg.threatintel) {
            let set = load_feeds(cfg)?;
            dp.threatintel_maps()?.apply(
                &set,
                cfg.threatintel.quarantine_vlan.unwrap_or(0),
                true,
            )?;
        }
        if let Some(dns) = &cfg.dns {
            dp.dns_maps()?.sync(&load_dns_blocklist(dns)?)?;
        }
        let mut ids = Vec::new();
        if let Some((compiled, _reports)) = crate::daemon::compile_ids(cfg)? {
            dp.ids_maps()?.apply(&compiled)?;
            ids = compiled.rules.iter().map(|r| r.id.clone()).collect();
        }
        let stats = STAGES
            .iter()
            .map(|stage| {
                let obj = (stage.object)(&dp);
                let map = obj
                    .maps()
                    .find(|m| m.name() == stage.stats_map)
                    .with_context(|| {
                        format!("stage {} has no map {}", stage.name, stage.stats_map)
                    })?;
                Ok(StageStats {
                    stage,
                    map: MapHandle::try_from(&map)?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let pending: Rc<RefCell<Vec<Vec<u8>>>> = Rc::default();
        let sink = pending.clone();
        let events_map = MapHandle::try_from(&dp.firewall.maps.events)?;
        let mut rb = RingBufferBuilder::new();
        rb.add(&events_map, move |data: &[u8]| {
            sink.borrow_mut().push(data.to_vec());
            0
        })?;
        let ring = rb.build()?;
        Ok(Replay {
            feeds: cfg.threatintel.feeds.iter().map(|f| f.id.clone()).collect(),
            ids,
            dns_feeds: cfg.dns.as_ref().map_or_else(Vec::new, |d| {
                d.blocklist.feeds.iter().map(|f| f.id.clone()).collect()
            }),
            dp,
            fw,
            fw_generation,
            ruleset,
            ratelimit,
            stats,
            ring,
            pending,
            clock: Clock::now(),
        })
    }

    /// The configured programs, for measurements through the same setup (`bench pipeline`).
    pub fn dataplane(&self) -> &Dataplane {
        &self.dp
    }

    fn snapshot(&self) -> Result<(Vec<Vec<u64>>, Vec<u64>)> {
        let stages = self
            .stats
            .iter()
            .map(|s| percpu_slots(&s.map, s.stage.slots_total))
            .collect::<Result<Vec<_>>>()?;
        let hits = self
            .fw
            .rule_hits(self.fw_generation, self.ruleset.ranks.len())?
            .into_iter()
            .map(|(packets, _)| packets)
            .collect();
        Ok((stages, hits))
    }

    fn rule_name(&self, space: RuleSpace, index: u16) -> Option<String> {
        match space {
            RuleSpace::Firewall => self.ruleset.rule_id(index).map(str::to_string),
            RuleSpace::RateLimit => self.ratelimit.ids.get(usize::from(index)).cloned(),
            RuleSpace::Guard => self
                .ratelimit
                .guard_names()
                .into_iter()
                .find(|(rank, _)| *rank == index)
                .map(|(_, n)| n),
            RuleSpace::Feed => self.feeds.get(usize::from(index)).cloned(),
            RuleSpace::DnsFeed => self.dns_feeds.get(usize::from(index)).cloned(),
            RuleSpace::Ids => self.ids.get(usize::from(index)).cloned(),
        }
    }

    fn drain_events(&self) -> Result<Vec<EveEvent>> {
        self.ring.consume().context("reading the event ring")?;
        let raw: Vec<Vec<u8>> = std::mem::take(&mut *self.pending.borrow_mut());
        Ok(raw
            .iter()
            .filter_map(|bytes| {
                events::decode(bytes, &self.clock, |space, _gen, index| {
                    self.rule_name(space, index)
                })
            })
            .collect())
    }

    /// Runs one Ethernet frame through XDP and, if XDP passes it, TC ingress; fills the
    /// verdict fields of `r`.
    pub fn run(&self, frame: &[u8], r: &mut Record) -> Result<()> {
        if frame.len() < ETH_HLEN {
            r.verdict = "error".into();
            r.error = Some(format!(
                "a frame of {} bytes is shorter than an Ethernet header: the kernel runs no program on it",
                frame.len()
            ));
            return Ok(());
        }
        let (before, hits_before) = self.snapshot()?;
        let mut out = vec![0u8; frame.len() + OUT_HEADROOM];
        let xdp = self.dp.firewall_program().test_run(ProgramInput {
            data_in: Some(frame),
            data_out: Some(&mut out),
            ..Default::default()
        });
        let mut verdict = match xdp {
            Err(e) => {
                r.verdict = "error".into();
                r.error = Some(format!(
                    "the kernel refused the XDP test run of this {}-byte frame: {e}",
                    frame.len()
                ));
                return Ok(());
            }
            Ok(res) => {
                let len = res.data.map_or(0, |d| d.len());
                let v = res.return_value;
                out.truncate(len);
                XDP_VERDICTS
                    .get(v as usize)
                    .map_or_else(|| format!("xdp-{v}"), |s| s.to_string())
            }
        };
        if verdict == "pass" {
            let mut tc_out = vec![0u8; out.len() + OUT_HEADROOM];
            match self.dp.conntrack.progs.tc_ingress.test_run(ProgramInput {
                data_in: Some(&out),
                data_out: Some(&mut tc_out),
                ..Default::default()
            }) {
                Ok(res) => {
                    verdict = match res.return_value as i32 {
                        TC_ACT_UNSPEC | TC_ACT_OK => "pass".into(),
                        TC_ACT_SHOT => "drop".into(),
                        TC_ACT_REDIRECT => "redirect".into(),
                        other => format!("tc-{other}"),
                    }
                }
                Err(e) => {
                    verdict = "error".into();
                    r.error = Some(format!(
                        "XDP passed it; the kernel refused the TC test run of this {}-byte \
                         frame (TC test runs take at most about a page): {e}",
                        out.len()
                    ));
                }
            }
        }
        let (after, hits_after) = self.snapshot()?;
        r.events = self.drain_events()?;
        self.attribute(&verdict, &before, &after, &hits_before, &hits_after, r);
        r.verdict = verdict;
        Ok(())
    }

    fn attribute(
        &self,
        verdict: &str,
        before: &[Vec<u64>],
        after: &[Vec<u64>],
        hits_before: &[u64],
        hits_after: &[u64],
        r: &mut Record,
    ) {
        let stages: Vec<&'static Stage> = self.stats.iter().map(|s| s.stage).collect();
        let d = decide(&stages, verdict, before, after);
        r.path = d.path;
        r.notes = d.notes;
        let Some((i, reason)) = d.decider else {
            if d.unattributed {
                r.stage = Some(UNATTRIBUTED);
                r.reason = Some("no_counter");
            }
            return;
        };
        let stage = stages[i];
        r.stage = Some(stage.name);
        r.reason = Some(reason);
        r.rule = match stage.rules {
            Rules::FirewallHits => hits_after
                .iter()
                .zip(hits_before)
                .position(|(a, b)| a > b)
                .and_then(|rank| self.ruleset.rule_id(rank as u16))
                .map(str::to_string),
            Rules::Events => r
                .events
                .iter()
                .filter(|e| stage.event_types.contains(&e.event_type))
                .find_map(|e| e.rule_id.clone()),
        };
    }
}

/// The `stage` of a packet that did not pass although the last stage it reached counted no
/// decision: a stage missing from [`STAGES`] stopped it, or one stopped it without counting.
pub const UNATTRIBUTED: &str = "unattributed";

#[derive(Debug, Default, PartialEq, Eq)]
pub struct Decision {
    /// the stages that saw the packet, in packet-path order
    pub path: Vec<&'static str>,
    pub notes: Vec<String>,
    /// (index into the stage list, counter name)
    pub decider: Option<(usize, &'static str)>,
    /// the verdict is not a pass, yet the last stage reached counted no decision
    pub unattributed: bool,
}

/// Which stage decided, from the stages' counters before and after one packet
/// (`before[i]`/`after[i]` are `stages[i]`'s slots). The deciding stage is the last one,
/// in packet-path order, whose decision counter moved; a packet that did not pass must have
/// been stopped by the last stage it reached, so a decision elsewhere is not taken for it.
pub fn decide(
    stages: &[&'static Stage],
    verdict: &str,
    before: &[Vec<u64>],
    after: &[Vec<u64>],
) -> Decision {
    let moved = |i: usize, slot: u32| {
        let s = slot as usize;
        after[i].get(s).copied().unwrap_or(0) > before[i].get(s).copied().unwrap_or(0)
    };
    let mut d = Decision::default();
    let mut last_seen = None;
    // XDP stages run before TC stages whatever their place in the table.
    let order = [Hook::Xdp, Hook::Tc].into_iter().flat_map(|h| {
        stages
            .iter()
            .enumerate()
            .filter(move |(_, s)| s.hook == h)
            .map(|(i, _)| i)
    });
    for i in order {
        let stage = stages[i];
        let mut saw = moved(i, stage.seen);
        for s in stage.slots {
            if !moved(i, s.slot) {
                continue;
            }
            saw = true;
            match s.role {
                Role::Decides => d.decider = Some((i, s.name)),
                Role::Note => d.notes.push(format!("{}:{}", stage.name, s.name)),
                Role::Hidden => {}
            }
        }
        if saw {
            d.path.push(stage.name);
            last_seen = Some(i);
        }
    }
    if verdict == "error" {
        d.decider = None;
    } else if verdict != "pass" && d.decider.map(|(i, _)| i) != last_seen {
        d.decider = None;
        d.unattributed = true;
    }
    d
}

/// A replay's packets one at a time, whichever link type they were captured on.
pub fn frame_of(p: &crate::pcap::Packet) -> std::result::Result<Vec<u8>, String> {
    crate::pcap::to_ethernet(p.link_type, &p.data)
}

/// Fills the parse fields of a record from the Ethernet frame.
pub fn describe(frame: &[u8], r: &mut Record) {
    let parsed = parse::parse(frame);
    r.explain = parsed.to_string();
    match parsed {
        Parse::Ip(t) => r.tuple = Some(t),
        Parse::NonIp { ethertype } => {
            r.parse_error = Some(format!("not IP (ethertype 0x{ethertype:04x})"))
        }
        Parse::Malformed(why) => r.parse_error = Some(format!("malformed: {why}")),
    }
}

pub fn record(index: usize, file: &str, p: &crate::pcap::Packet) -> Record {
    Record {
        index,
        file: file.to_string(),
        frame: p.index,
        timestamp: events::unix_rfc3339(i128::from(p.timestamp_ns)),
        ts_ns: p.timestamp_ns,
        link_type: p.link_type,
        len: p.data.len(),
        tuple: None,
        parse_error: None,
        explain: String::new(),
        verdict: String::new(),
        stage: None,
        reason: None,
        rule: None,
        path: Vec::new(),
        notes: Vec::new(),
        events: Vec::new(),
        error: None,
    }
}

/// The expected verdicts of `--expect`: `INDEX VERDICT [STAGE [RULE]]` lines (`#` starts a
/// comment, `-` skips a field) or the JSON lines of an earlier `--json` run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Expected {
    pub index: usize,
    pub verdict: String,
    pub stage: Option<String>,
    pub rule: Option<String>,
    pub line: usize,
}

pub fn parse_expect(text: &str, file: &str) -> Result<Vec<Expected>> {
    let mut out = Vec::new();
    for (n, raw) in text.lines().enumerate() {
        let line = raw.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let at = || format!("{file}:{}", n + 1);
        if line.starts_with('{') {
            let v: serde_json::Value =
                serde_json::from_str(line).with_context(|| format!("{}: not JSON", at()))?;
            if v.get("summary").is_some() {
                continue;
            }
            let field = |k: &str| v.get(k).and_then(|x| x.as_str()).map(str::to_string);
            out.push(Expected {
                index: v
                    .get("index")
                    .and_then(|x| x.as_u64())
                    .ok_or_else(|| anyhow!("{}: no \"index\"", at()))?
                    as usize,
                verdict: field("verdict").ok_or_else(|| anyhow!("{}: no \"verdict\"", at()))?,
                stage: field("stage"),
                rule: field("rule"),
                line: n + 1,
            });
            continue;
        }
        let mut words = line.split_whitespace();
        let index = words
            .next()
            .and_then(|w| w.parse().ok())
            .ok_or_else(|| anyhow!("{}: expected `INDEX VERDICT [STAGE [RULE]]`", at()))?;
        let verdict = words
            .next()
            .ok_or_else(|| anyhow!("{}: no verdict after the index", at()))?
            .to_string();
        let opt = |w: Option<&str>| w.filter(|w| *w != "-").map(str::to_string);
        let stage = opt(words.next());
        let rule = opt(words.next());
        if words.next().is_some() {
            bail!("{}: more than INDEX VERDICT STAGE RULE", at());
        }
        out.push(Expected {
            index,
            verdict,
            stage,
            rule,
            line: n + 1,
        });
    }
    Ok(out)
}

/// Differences between what was expected and what the replay gave, one line each.
pub fn compare(
    expected: &[Expected],
    got: &[(usize, String, Option<String>, Option<String>)],
) -> Vec<String> {
    let mut diffs = Vec::new();
    for e in expected {
        let Some((_, verdict, stage, rule)) = got.iter().find(|g| g.0 == e.index) else {
            diffs.push(format!(
                "packet {} (line {}): expected {}, but the capture has no such packet",
                e.index, e.line, e.verdict
            ));
            continue;
        };
        let show = |v: &str, s: &Option<String>, r: &Option<String>| {
            format!(
                "{v} {} {}",
                s.as_deref().unwrap_or("-"),
                r.as_deref().unwrap_or("-")
            )
        };
        let stage_ok = e.stage.is_none() || e.stage == *stage;
        let rule_ok = e.rule.is_none() || e.rule == *rule;
        if e.verdict != *verdict || !stage_ok || !rule_ok {
            diffs.push(format!(
                "packet {} (line {}): expected {}, got {}",
                e.index,
                e.line,
                show(&e.verdict, &e.stage, &e.rule),
                show(verdict, stage, rule)
            ));
        }
    }
    diffs
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Counters before and after a packet that moved `moves` (stage name, slot).
    fn counters(moves: &[(&str, u32)]) -> (Vec<Vec<u64>>, Vec<Vec<u64>>) {
        let before: Vec<Vec<u64>> = STAGES
            .iter()
            .map(|s| vec![5; s.slots_total as usize])
            .collect();
        let mut after = before.clone();
        for (name, slot) in moves {
            let i = STAGES.iter().position(|s| s.name == *name).unwrap();
            after[i][*slot as usize] += 1;
        }
        (before, after)
    }

    fn decided(verdict: &str, moves: &[(&str, u32)]) -> Decision {
        let stages: Vec<&'static Stage> = STAGES.iter().collect();
        let (before, after) = counters(moves);
        decide(&stages, verdict, &before, &after)
    }

    fn name(d: &Decision) -> Option<(&'static str, &'static str)> {
        d.decider.map(|(i, why)| (STAGES[i].name, why))
    }

    use crate::abi::{ct_stat, fw_stat, rl_stat, ti_stat};

    #[test]
    fn the_last_decision_on_the_path_decides() {
        let d = decided(
            "pass",
            &[
                ("firewall", fw_stat::FW_STAT_SEEN.0),
                ("firewall", fw_stat::FW_STAT_PASS_RULE.0),
                ("ratelimit", rl_stat::RL_STAT_SEEN.0),
                ("ratelimit", rl_stat::RL_STAT_PASS_IN_RATE.0),
                ("conntrack", ct_stat::CT_STAT_LOOKUPS.0),
                ("conntrack", ct_stat::CT_STAT_NEW.0),
                ("threatintel", ti_stat::TI_STAT_SEEN.0),
            ],
        );
        assert_eq!(name(&d), Some(("firewall", "pass_rule")));
        assert_eq!(
            d.path,
            ["firewall", "ratelimit", "conntrack", "threatintel"]
        );
        assert_eq!(d.notes, ["ratelimit:pass_in_rate", "conntrack:new"]);

        let alert = decided(
            "pass",
            &[
                ("firewall", fw_stat::FW_STAT_PASS_DEFAULT.0),
                ("threatintel", ti_stat::TI_STAT_SEEN.0),
                ("threatintel", ti_stat::TI_STAT_MATCH_ALERT.0),
            ],
        );
        assert_eq!(name(&alert), Some(("threatintel", "match_alert")));

        let limited = decided(
            "drop",
            &[
                ("firewall", fw_stat::FW_STAT_PASS_DEFAULT.0),
                ("ratelimit", rl_stat::RL_STAT_SEEN.0),
                ("ratelimit", rl_stat::RL_STAT_DROP_OVER_RATE.0),
            ],
        );
        assert_eq!(name(&limited), Some(("ratelimit", "drop_over_rate")));
        assert!(!limited.unattributed);
    }

    #[test]
    fn a_drop_after_the_last_counted_decision_is_unattributed() {
        // conntrack passed it on; whatever dropped it counted nothing the table knows
        let d = decided(
            "drop",
            &[
                ("firewall", fw_stat::FW_STAT_PASS_DEFAULT.0),
                ("conntrack", ct_stat::CT_STAT_LOOKUPS.0),
            ],
        );
        assert_eq!(d.decider, None);
        assert!(d.unattributed);
        assert_eq!(d.path, ["firewall", "conntrack"]);
        let e = decided("error", &[("firewall", fw_stat::FW_STAT_PASS_DEFAULT.0)]);
        assert_eq!((e.decider, e.unattributed), (None, false));
    }

    #[test]
    fn the_stage_table_is_consistent() {
        let mut names: Vec<&str> = STAGES.iter().map(|s| s.name).collect();
        names.dedup();
        assert_eq!(names.len(), STAGES.len());
        for stage in STAGES {
            assert!(stage.seen < stage.slots_total, "{}", stage.name);
            let mut slots: Vec<u32> = stage.slots.iter().map(|s| s.slot).collect();
            slots.push(stage.seen);
            slots.sort_unstable();
            let n = slots.len();
            slots.dedup();
            assert_eq!(slots.len(), n, "{}: a slot twice", stage.name);
            assert!(
                slots.iter().all(|s| *s < stage.slots_total),
                "{}",
                stage.name
            );
            for t in stage.event_types {
                assert_eq!(stages::of_event(t).map(|s| s.name), Some(stage.name));
            }
        }
    }

    #[test]
    fn expect_lines_and_json() {
        let text = "# a comment\n0 drop firewall block-ssh\n3 pass - -  # trailing\n\n\
                    {\"index\":7,\"verdict\":\"drop\",\"stage\":\"ratelimit\"}\n\
                    {\"summary\":true}\n";
        let e = parse_expect(text, "x").unwrap();
        assert_eq!(e.len(), 3);
        assert_eq!((e[0].index, e[0].rule.as_deref()), (0, Some("block-ssh")));
        assert_eq!((e[1].index, e[1].stage.as_deref(), e[1].line), (3, None, 3));
        assert_eq!((e[2].index, e[2].stage.as_deref()), (7, Some("ratelimit")));
        let got = vec![
            (
                0,
                "drop".into(),
                Some("firewall".into()),
                Some("block-ssh".into()),
            ),
            (3, "drop".into(), Some("conntrack".into()), None),
            (
                7,
                "drop".into(),
                Some("ratelimit".into()),
                Some("dns".into()),
            ),
        ];
        assert_eq!(
            compare(&e, &got),
            ["packet 3 (line 3): expected pass - -, got drop conntrack -"]
        );
        assert!(parse_expect("1 drop a b c\n", "f")
            .unwrap_err()
            .to_string()
            .starts_with("f:1:"));
    }
}
