//! The daemon's threat-intel and IPS worker, on a thread of its own (fetches and map writes
//! block): refreshes the feeds when they are due, applies the merged IOC set to the kernel
//! (only the difference, then a fresh Bloom filter and a generation flip), writes the feeds
//! status file `ti feeds` reads, turns detections into blacklist entries, and removes blocks
//! that expired.

use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Result;
use ipnet::IpNet;

use crate::config::{DnsConfig, IpsConfig, ThreatIntelConfig};
use crate::feeds::domain_feeds::{source_text, DomainFeeds};
use crate::feeds::{Feeds, FetchLimits, Fetcher, Ioc, IocSet};
use crate::ips::{Ips, Reasons};
use crate::maps::blacklist::BlacklistMaps;
use crate::maps::dns::{write_dns_status, Blocklist, DnsListStatus, DnsMaps, DnsStatusFile};
use crate::maps::threatintel::{
    write_feeds_status, ApplyReport, FeedStatus, FeedsFile, ThreatIntelMaps, MANUAL_FEED,
};

/// How often expired blocks are removed (the kernel already ignores them).
const EXPIRY_INTERVAL: Duration = Duration::from_secs(1);

pub enum Msg {
    Reconfigure(ThreatIntelConfig, IpsConfig),
    /// a source an IDS, threat-intel or firewall event accuses
    Detection {
        src: IpAddr,
        reason: String,
    },
    /// the `dns` section (None: the DNS blocklist is off)
    Dns(Option<DnsConfig>),
}

/// What the worker shares with the event reader and the metrics.
#[derive(Default)]
pub struct Shared {
    /// the IOC set in the kernel, to name what a threat-intel event matched
    pub iocs: RwLock<Arc<IocSet>>,
    pub blocks: AtomicU64,
    pub expiries: AtomicU64,
    pub feed_errors: AtomicU64,
    pub last_apply: Mutex<Option<ApplyReport>>,
    pub dns_feed_errors: AtomicU64,
    /// the last DNS blocklist sync
    pub dns_last_sync: Mutex<Option<crate::maps::dns::SyncReport>>,
}

/// The most specific IOC of `iocs` covering `addr`.
pub fn ioc_of(iocs: &IocSet, addr: IpAddr) -> Option<Ioc> {
    iocs.matching(addr)
        .into_iter()
        .max_by_key(|i| i.net.prefix_len())
        .cloned()
}

/// Whether threat intel is on: a config without feeds leaves the stage's slot empty.
pub fn enabled(cfg: &ThreatIntelConfig) -> bool {
    !cfg.feeds.is_empty()
}

pub struct Worker {
    pub tx: mpsc::Sender<Msg>,
    handle: std::thread::JoinHandle<()>,
}

impl Worker {
    pub fn join(self) {
        drop(self.tx);
        let _ = self.handle.join();
    }
}

struct State {
    pin_root: PathBuf,
    ti_cfg: ThreatIntelConfig,
    feeds: Feeds,
    ti: ThreatIntelMaps,
    blacklist: BlacklistMaps,
    ips: Ips,
    reasons: Reasons,
    shared: Arc<Shared>,
    errors: Vec<u64>,
    dns: Option<DnsState>,
}

/// The DNS blocklist's feeds and maps, while the `dns` section exists.
struct DnsState {
    feeds: DomainFeeds,
    maps: DnsMaps,
    errors: Vec<u64>,
}

pub fn spawn(
    pin_root: PathBuf,
    ti_cfg: ThreatIntelConfig,
    ips_cfg: IpsConfig,
    shared: Arc<Shared>,
    stop: Arc<AtomicBool>,
) -> Result<Worker> {
    let ti = ThreatIntelMaps::from_pins(&pin_root)?;
    let blacklist = BlacklistMaps::from_pins(&pin_root)?;
    let (tx, rx) = mpsc::channel();
    let mut state = State {
        feeds: Feeds::new(&ti_cfg, Fetcher::new(FetchLimits::default())),
        errors: vec![0; ti_cfg.feeds.len()],
        reasons: Reasons::load(&pin_root),
        ips: Ips::new(&ips_cfg),
        pin_root,
        ti_cfg,
        ti,
        blacklist,
        shared,
        dns: None,
    };
    let handle = std::thread::Builder::new()
        .name("intel".into())
        .spawn(move || state.run(rx, stop))?;
    Ok(Worker { tx, handle })
}

fn unix(t: Option<SystemTime>) -> Option<u64> {
    t.and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map(|d| d.as_secs())
}

impl State {
    fn run(&mut self, rx: mpsc::Receiver<Msg>, stop: Arc<AtomicBool>) {
        let mut apply_needed = true;
        let mut dns_needed = false;
        let mut next_expiry = Instant::now();
        while !stop.load(Ordering::Relaxed) {
            let now = Instant::now();
            if enabled(&self.ti_cfg) {
                apply_needed |= self.refresh(now);
            }
            if apply_needed {
                self.apply();
                apply_needed = false;
            }
            dns_needed |= self.refresh_dns(now);
            if dns_needed {
                self.apply_dns();
                dns_needed = false;
            }
            if now >= next_expiry {
                self.expire(now);
                next_expiry = now + EXPIRY_INTERVAL;
            }
            let wake = self
                .feeds
                .next_due(now)
                .filter(|_| enabled(&self.ti_cfg))
                .unwrap_or(next_expiry)
                .min(next_expiry)
                .min(
                    self.dns
                        .as_ref()
                        .and_then(|d| d.feeds.next_due())
                        .unwrap_or(next_expiry),
                );
            // short enough that a stop is noticed within a tick of the daemon
            let wait = wake
                .saturating_duration_since(Instant::now())
                .min(Duration::from_millis(200));
            match rx.recv_timeout(wait) {
                Ok(Msg::Reconfigure(ti_cfg, ips_cfg)) => {
                    self.feeds.reconfigure(&ti_cfg);
                    self.errors.resize(ti_cfg.feeds.len(), 0);
                    self.ti_cfg = ti_cfg;
                    self.ips.reconfigure(&ips_cfg);
                    apply_needed = true;
                }
                Ok(Msg::Detection { src, reason }) => self.detect(src, &reason),
                Ok(Msg::Dns(cfg)) => {
                    self.reconfigure_dns(cfg);
                    dns_needed = true;
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
            }
        }
    }

    /// Refreshes the feeds that are due; true when the merged set may have changed.
    fn refresh(&mut self, now: Instant) -> bool {
        let refreshes = self.feeds.refresh_due(now);
        if refreshes.is_empty() {
            return false;
        }
        let mut changed = false;
        for r in &refreshes {
            match &r.outcome {
                Ok(_) => changed |= r.changed(),
                Err(e) => {
                    self.shared.feed_errors.fetch_add(1, Ordering::Relaxed);
                    if let Some(n) = self.errors.get_mut(r.index) {
                        *n += 1;
                    }
                    eprintln!(
                        "ebpfsentinel: threat-intel feed {}: {e} (its previous IOCs stay)",
                        r.id
                    );
                }
            }
        }
        self.write_status();
        changed
    }

    /// Makes the kernel match the feeds' merged set, plus what was added by hand.
    fn apply(&mut self) {
        let mut set = if enabled(&self.ti_cfg) {
            self.feeds.merged()
        } else {
            IocSet::default()
        };
        match self.ti.list() {
            Ok(installed) => {
                for ioc in installed.into_iter().filter(|i| i.feed_id == MANUAL_FEED) {
                    set.iocs.entry(ioc.net).or_insert(ioc);
                }
            }
            Err(e) => eprintln!("ebpfsentinel: reading the IOC maps: {e:#}"),
        }
        let started = Instant::now();
        match self.ti.apply(
            &set,
            self.ti_cfg.quarantine_vlan.unwrap_or(0),
            enabled(&self.ti_cfg),
        ) {
            Ok(report) => {
                if enabled(&self.ti_cfg) {
                    eprintln!(
                        "ebpfsentinel: threat intel: {} IOCs ({} written, {} removed) in {:.1?}, generation {}",
                        report.iocs.total(),
                        report.upserts,
                        report.removed,
                        started.elapsed(),
                        report.generation
                    );
                }
                *self
                    .shared
                    .last_apply
                    .lock()
                    .unwrap_or_else(|p| p.into_inner()) = Some(report);
                *self.shared.iocs.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(set);
            }
            Err(e) => eprintln!(
                "ebpfsentinel: applying threat-intel IOCs failed, the previous set stays: {e:#}"
            ),
        }
        self.write_status();
    }

    fn write_status(&self) {
        let feeds = self
            .ti_cfg
            .feeds
            .iter()
            .zip(self.feeds.states())
            .enumerate()
            .map(|(i, (f, s))| FeedStatus {
                id: f.id.clone(),
                feed_id: i as u16,
                source: match &f.source {
                    crate::config::FeedSource::Url(u) => u.clone(),
                    crate::config::FeedSource::Path(p) => p.display().to_string(),
                },
                entries: s.entries as u64,
                last_refresh: unix(s.last_refresh),
                last_attempt: unix(s.last_attempt),
                last_error: s.last_error.as_ref().map(|e| e.to_string()),
                errors: self.errors.get(i).copied().unwrap_or(0),
            })
            .collect();
        let file = FeedsFile {
            pid: std::process::id(),
            updated: unix(Some(SystemTime::now())).unwrap_or(0),
            iocs: self
                .shared
                .iocs
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .len() as u64,
            feeds,
        };
        if let Err(e) = write_feeds_status(&self.pin_root, &file) {
            eprintln!("ebpfsentinel: {e:#}");
        }
    }

    fn reconfigure_dns(&mut self, cfg: Option<DnsConfig>) {
        match (cfg, &mut self.dns) {
            (None, _) => {
                // what the lists put in the kernel goes; runtime blocks stay for a later section
                if let Some(d) = self.dns.take() {
                    if let Err(e) = d.maps.sync(&Blocklist::default()) {
                        eprintln!("ebpfsentinel: emptying the DNS blocklist: {e:#}");
                    }
                }
            }
            (Some(cfg), Some(d)) => {
                d.feeds.reconfigure(&cfg.blocklist);
                d.errors.resize(cfg.blocklist.feeds.len(), 0);
            }
            (Some(cfg), None) => match DnsMaps::from_pins(&self.pin_root) {
                Ok(maps) => {
                    self.dns = Some(DnsState {
                        errors: vec![0; cfg.blocklist.feeds.len()],
                        feeds: DomainFeeds::new(
                            &cfg.blocklist,
                            Fetcher::new(FetchLimits::default()),
                        ),
                        maps,
                    })
                }
                Err(e) => eprintln!("ebpfsentinel: the DNS blocklist maps: {e:#}"),
            },
        }
    }

    /// Refreshes the DNS feeds that are due; true when the blocklist may have changed.
    fn refresh_dns(&mut self, now: Instant) -> bool {
        let Some(d) = &mut self.dns else {
            return false;
        };
        let refreshes = d.feeds.refresh_due(now);
        let mut changed = false;
        for r in &refreshes {
            match &r.outcome {
                Ok(c) => changed |= c,
                Err(e) => {
                    self.shared.dns_feed_errors.fetch_add(1, Ordering::Relaxed);
                    if let Some(n) = d.errors.get_mut(r.index) {
                        *n += 1;
                    }
                    eprintln!(
                        "ebpfsentinel: DNS feed {}: {e} (its previous domains stay)",
                        r.id
                    );
                }
            }
        }
        if !refreshes.is_empty() && !changed {
            self.write_dns_status();
        }
        changed
    }

    fn apply_dns(&mut self) {
        let Some(d) = &self.dns else {
            return;
        };
        let want = d.feeds.blocklist();
        let started = Instant::now();
        match d.maps.sync(&want) {
            Ok(report) => {
                eprintln!(
                    "ebpfsentinel: dns blocklist: {} domains ({} written, {} removed, {} runtime) in {:.1?}",
                    report.entries,
                    report.written,
                    report.removed,
                    report.runtime,
                    started.elapsed()
                );
                *self
                    .shared
                    .dns_last_sync
                    .lock()
                    .unwrap_or_else(|p| p.into_inner()) = Some(report);
            }
            Err(e) => eprintln!(
                "ebpfsentinel: applying the DNS blocklist failed, the previous one stays: {e:#}"
            ),
        }
        self.write_dns_status();
    }

    fn write_dns_status(&self) {
        let Some(d) = &self.dns else {
            return;
        };
        let cfg = d.feeds.config();
        let mut lists = vec![DnsListStatus {
            list: crate::maps::dns::LIST_CONFIG,
            id: "config".into(),
            source: "dns.blocklist.domains".into(),
            domains: cfg.domains.len() as u64,
            bad_lines: 0,
            first_bad_line: None,
            last_refresh: None,
            last_error: None,
            errors: 0,
        }];
        for (i, (f, s)) in cfg.feeds.iter().zip(d.feeds.states()).enumerate() {
            lists.push(DnsListStatus {
                list: 1 + i as u16,
                id: f.id.clone(),
                source: source_text(&f.source),
                domains: s.parsed.as_ref().map_or(0, |p| p.domains.len() as u64),
                bad_lines: s.parsed.as_ref().map_or(0, |p| p.bad_lines as u64),
                first_bad_line: s
                    .parsed
                    .as_ref()
                    .and_then(|p| p.first_error.as_ref())
                    .map(|(line, why)| format!("{}:{line}: {why}", source_text(&f.source))),
                last_refresh: unix(s.last_refresh),
                last_error: s.last_error.as_ref().map(|e| e.to_string()),
                errors: d.errors.get(i).copied().unwrap_or(0),
            });
        }
        let file = DnsStatusFile {
            pid: std::process::id(),
            updated: unix(Some(SystemTime::now())).unwrap_or(0),
            lists,
        };
        if let Err(e) = write_dns_status(&self.pin_root, &file) {
            eprintln!("ebpfsentinel: {e:#}");
        }
    }

    fn detect(&mut self, src: IpAddr, reason: &str) {
        let Some(block) = self.ips.detect(src, Instant::now()) else {
            return;
        };
        let id = self.reasons.id(reason);
        if let Err(e) = self.reasons.save(&self.pin_root) {
            eprintln!("ebpfsentinel: {e:#}");
        }
        match self
            .blacklist
            .block(IpNet::from(src), Some(block.duration), id)
        {
            Ok(()) => {
                self.shared.blocks.fetch_add(1, Ordering::Relaxed);
                eprintln!(
                    "ebpfsentinel: ips: blocked {src} for {:?} after {} detections ({reason})",
                    block.duration, block.detections
                );
            }
            Err(e) => eprintln!("ebpfsentinel: ips: blocking {src}: {e:#}"),
        }
    }

    fn expire(&mut self, now: Instant) {
        match self.blacklist.expire() {
            Ok(0) => {}
            Ok(n) => {
                self.shared.expiries.fetch_add(n as u64, Ordering::Relaxed);
            }
            Err(e) => eprintln!("ebpfsentinel: expiring blocks: {e:#}"),
        }
        self.ips.prune(now);
    }
}
