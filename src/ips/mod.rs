//! The IPS engine: detections (IDS alerts, threat-intel matches, firewall drops) counted per
//! source in a sliding window; a source that reaches `ips.threshold` within `ips.window` is to
//! be blacklisted for `ips.block_for`, unless `ips.whitelist` covers it or it is blocked
//! already. Pure logic on the caller's clock: the daemon feeds it events and writes the
//! [`Block`]s it returns into the kernel's blacklist ([`crate::maps::blacklist`]).
//!
//! Memory is bounded: at most `max_sources` sources are tracked (the one whose last detection
//! is oldest makes room for a new one), each with at most `threshold` timestamps, and at most
//! as many blocks are remembered.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use crate::config::IpsConfig;

/// Sources tracked at most by default.
pub const DEFAULT_MAX_SOURCES: usize = 65_536;

/// A source to blacklist.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Block {
    pub src: IpAddr,
    /// `ips.block_for`
    pub duration: Duration,
    /// detections within the window that triggered it
    pub detections: u32,
}

#[derive(Debug)]
struct Track {
    /// detection times within the window, oldest first; at most `threshold`
    hits: VecDeque<Instant>,
    /// its key in `by_age`
    age_key: (Instant, u64),
}

#[derive(Debug)]
pub struct Ips {
    threshold: Option<u32>,
    window: Duration,
    block_for: Duration,
    whitelist: Vec<IpNet>,
    max_sources: usize,
    sources: HashMap<IpAddr, Track>,
    /// (last detection, sequence) -> source: the stalest first
    by_age: BTreeMap<(Instant, u64), IpAddr>,
    /// sources this engine blocked, until when (None: a block_for beyond the clock's range)
    blocked: HashMap<IpAddr, Option<Instant>>,
    seq: u64,
}

impl Ips {
    pub fn new(cfg: &IpsConfig) -> Ips {
        Ips::with_capacity(cfg, DEFAULT_MAX_SOURCES)
    }

    /// An engine tracking at most `max_sources` sources (and remembering as many blocks).
    pub fn with_capacity(cfg: &IpsConfig, max_sources: usize) -> Ips {
        let mut ips = Ips {
            threshold: None,
            window: Duration::ZERO,
            block_for: Duration::ZERO,
            whitelist: Vec::new(),
            max_sources: max_sources.max(1),
            sources: HashMap::new(),
            by_age: BTreeMap::new(),
            blocked: HashMap::new(),
            seq: 0,
        };
        ips.reconfigure(cfg);
        ips
    }

    /// Takes a new config: tracks of sources now whitelisted are dropped, and so is every
    /// track when auto-blocking is off; the rest keep their detections (a shorter window or
    /// a lower threshold applies from the next detection on).
    pub fn reconfigure(&mut self, cfg: &IpsConfig) {
        self.threshold = cfg.threshold.filter(|t| *t > 0);
        self.window = cfg.window;
        self.block_for = cfg.block_for;
        self.whitelist = cfg.whitelist.clone();
        if self.threshold.is_none() {
            self.sources.clear();
            self.by_age.clear();
            return;
        }
        let listed: Vec<IpAddr> = self
            .sources
            .keys()
            .filter(|ip| self.whitelisted(**ip))
            .copied()
            .collect();
        for ip in listed {
            self.drop_track(ip);
        }
        let keep = self.threshold.unwrap_or(1) as usize;
        for t in self.sources.values_mut() {
            while t.hits.len() > keep {
                t.hits.pop_front();
            }
        }
    }

    pub fn whitelisted(&self, ip: IpAddr) -> bool {
        self.whitelist.iter().any(|n| n.contains(&ip))
    }

    /// Sources with detections in the window.
    pub fn tracked(&self) -> usize {
        self.sources.len()
    }

    /// One detection of `src` at `now`: the block to apply when it reached the threshold.
    pub fn detect(&mut self, src: IpAddr, now: Instant) -> Option<Block> {
        let threshold = self.threshold?;
        if self.whitelisted(src) {
            return None;
        }
        if self.is_blocked(src, now) {
            return None;
        }
        self.prune(now);
        if !self.sources.contains_key(&src) && self.sources.len() >= self.max_sources {
            if let Some((_, stalest)) = self.by_age.pop_first() {
                self.sources.remove(&stalest);
            }
        }
        self.seq += 1;
        let key = (now, self.seq);
        let track = self.sources.entry(src).or_insert_with(|| Track {
            hits: VecDeque::new(),
            age_key: key,
        });
        self.by_age.remove(&track.age_key);
        track.age_key = key;
        self.by_age.insert(key, src);
        track.hits.push_back(now);
        let window = self.window;
        while track
            .hits
            .front()
            .is_some_and(|t| now.saturating_duration_since(*t) >= window)
        {
            track.hits.pop_front();
        }
        while track.hits.len() > threshold as usize {
            track.hits.pop_front();
        }
        if track.hits.len() < threshold as usize {
            return None;
        }
        let detections = track.hits.len() as u32;
        self.drop_track(src);
        self.remember_block(src, now);
        Some(Block {
            src,
            duration: self.block_for,
            detections,
        })
    }

    /// Whether this engine blocked `src` and the block still runs at `now`.
    pub fn is_blocked(&mut self, src: IpAddr, now: Instant) -> bool {
        match self.blocked.get(&src) {
            Some(None) => true,
            Some(Some(until)) if now < *until => true,
            Some(_) => {
                self.blocked.remove(&src);
                false
            }
            None => false,
        }
    }

    /// The blacklist entry of `src` went away before its time (`unblock`): it may be blocked
    /// again.
    pub fn unblocked(&mut self, src: IpAddr) {
        self.blocked.remove(&src);
    }

    /// Drops tracks with no detection in the window and blocks that ran out.
    pub fn prune(&mut self, now: Instant) {
        while let Some((&(last, seq), &ip)) = self.by_age.first_key_value() {
            if now.saturating_duration_since(last) < self.window {
                break;
            }
            self.by_age.remove(&(last, seq));
            self.sources.remove(&ip);
        }
        if self.blocked.len() >= self.max_sources {
            self.blocked
                .retain(|_, until| until.is_none_or(|u| now < u));
        }
    }

    fn drop_track(&mut self, ip: IpAddr) {
        if let Some(t) = self.sources.remove(&ip) {
            self.by_age.remove(&t.age_key);
        }
    }

    fn remember_block(&mut self, src: IpAddr, now: Instant) {
        if self.blocked.len() >= self.max_sources {
            self.blocked
                .retain(|_, until| until.is_none_or(|u| now < u));
        }
        if self.blocked.len() >= self.max_sources {
            // Forget the block ending first: at worst it is detected (and blocked) again.
            let first = self
                .blocked
                .iter()
                .filter_map(|(ip, u)| u.map(|u| (u, *ip)))
                .min()
                .map(|(_, ip)| ip);
            if let Some(ip) = first {
                self.blocked.remove(&ip);
            }
        }
        self.blocked.insert(src, now.checked_add(self.block_for));
    }
}

/// The reason of a manual block (`ebpfsentinel block` without --reason).
pub const REASON_MANUAL: u32 = 0;

/// Reasons of blacklist entries: the kernel keeps a u32 per entry, the operator reads a name.
/// An id is derived from its name (FNV-1a, top bit set; 0 is `manual`), so that every process
/// gives a name the same id without asking another and entries pinned by an earlier daemon
/// keep theirs; the names are kept in a file next to the daemon's state file for readers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reasons {
    names: BTreeMap<u32, String>,
}

impl Default for Reasons {
    fn default() -> Self {
        Reasons {
            names: BTreeMap::from([(REASON_MANUAL, "manual".to_string())]),
        }
    }
}

fn fnv1a(s: &str) -> u32 {
    s.bytes().fold(0x811c_9dc5u32, |h, b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    })
}

impl Reasons {
    /// The id of `name`, registering it. Another name with the same hash (unlikely) moves on
    /// to the next free id.
    pub fn id(&mut self, name: &str) -> u32 {
        if name == "manual" {
            return REASON_MANUAL;
        }
        let mut id = fnv1a(name) | 0x8000_0000;
        loop {
            match self.names.get(&id) {
                Some(n) if n == name => return id,
                Some(_) => id = id.wrapping_add(1) | 0x8000_0000,
                None => {
                    self.names.insert(id, name.to_string());
                    return id;
                }
            }
        }
    }

    /// The name of an id; `reason N` for one never registered.
    pub fn name(&self, id: u32) -> String {
        self.names
            .get(&id)
            .cloned()
            .unwrap_or_else(|| format!("reason {id:#x}"))
    }

    /// The name of the reason of a threat-intel feed's matches.
    pub fn feed_reason(feed: &str) -> String {
        format!("threat-intel feed {feed}")
    }

    /// Adds what `other` knows.
    pub fn merge(&mut self, other: &Reasons) {
        for (id, name) in &other.names {
            self.names.entry(*id).or_insert_with(|| name.clone());
        }
    }

    /// The registry a pin root's processes share; empty (manual only) when there is none.
    pub fn load(pin_root: &Path) -> Reasons {
        std::fs::read(reasons_path(pin_root))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default()
    }

    /// Writes the registry with whatever another process wrote meanwhile merged in.
    pub fn save(&self, pin_root: &Path) -> Result<()> {
        let path = reasons_path(pin_root);
        let mut all = Reasons::load(pin_root);
        all.merge(self);
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        let tmp = path.with_extension(format!("tmp{}", std::process::id()));
        std::fs::write(&tmp, serde_json::to_vec_pretty(&all)?)
            .with_context(|| format!("writing {}", tmp.display()))?;
        std::fs::rename(&tmp, &path).with_context(|| format!("writing {}", path.display()))
    }
}

/// /run/ebpfsentinel/<pin root mangled>-reasons.json, next to the daemon's state file.
pub fn reasons_path(pin_root: &Path) -> PathBuf {
    let state = crate::state::state_path(pin_root);
    let stem = state
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    state.with_file_name(format!("{stem}-reasons.json"))
}

#[cfg(test)]
mod tests;
