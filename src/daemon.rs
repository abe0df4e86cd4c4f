//! `ebpfsentinel run`: load (adopting what an earlier daemon pinned), apply the config, attach,
//! then serve events, metrics and the control socket until told to stop. Stopping leaves the
//! enforcement pinned unless the run is transient.

use crate::maps::Generations;
use std::collections::VecDeque;
use std::fs::OpenOptions;
use std::io::Write;
use std::net::SocketAddr;
use std::os::fd::AsFd;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use libbpf_rs::{MapHandle, RingBufferBuilder};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::{broadcast, mpsc, oneshot};

use crate::abi::xdp_stage;
use crate::config::{self, Config};
use crate::control;
use crate::events::{self, Clock};
use crate::intel;
use crate::lb::{self, LbState};
use crate::loader::{self, Dataplane, LoadOptions};
use crate::maps::conntrack::{ConntrackMaps, SweepReport};
use crate::maps::firewall::FirewallMaps;
use crate::maps::lb::LbMaps;
use crate::maps::ratelimit::RateLimitMaps;
use crate::metrics::{self, ConsumerCounters, Exporter, Snapshot};
use crate::ruleset::ratelimit::CompiledRateLimit;
use crate::ruleset::{self, CompiledRuleset};
use crate::state::{self, DaemonState, StateLock};

/// The longest an event waits in the ring when few are produced (see EVENTS_WAKEUP_BYTES).
const EVENT_DRAIN_INTERVAL: Duration = Duration::from_millis(50);
/// Recent events `ebpfsentinel events` shows without --follow.
const RECENT_EVENTS: usize = 1000;
/// Packets in flight when a generation is retired finish long before this (XDP runs with
/// preemption off); only then are the old generation's entries deleted.
const RETIRE_GRACE: Duration = Duration::from_millis(100);

#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub ifaces: Vec<String>,
    pub pin_root: Option<PathBuf>,
    pub metrics: Option<SocketAddr>,
}

#[derive(Debug, Clone)]
pub struct Options {
    pub config: PathBuf,
    pub overrides: Overrides,
    /// apply, attach and exit, leaving the enforcement pinned
    pub once: bool,
    /// detach and unpin everything on exit
    pub transient: bool,
}

fn load_config(path: &Path, o: &Overrides) -> Result<Config> {
    let mut cfg = config::load(path).map_err(|e| anyhow!("invalid config:\n{e}"))?;
    if !o.ifaces.is_empty() {
        cfg.interfaces = o.ifaces.clone();
    }
    if let Some(root) = &o.pin_root {
        cfg.pin_root = root.clone();
    }
    if o.metrics.is_some() {
        cfg.metrics_listen = o.metrics;
    }
    if cfg.interfaces.is_empty() {
        bail!(
            "no interface to attach to: set `interfaces` in {} or pass --iface",
            cfg.path.display()
        );
    }
    Ok(cfg)
}

/// The config's firewall ruleset and rate-limit stage, or why they do not fit the maps.
pub fn compile(cfg: &Config) -> Result<(CompiledRuleset, CompiledRateLimit)> {
    let rs = ruleset::compile(&cfg.firewall)
        .map_err(|e| anyhow!("{}: ruleset does not fit: {e:#}", cfg.path.display()))?;
    let rl = ruleset::ratelimit::compile(&cfg.ratelimit)
        .and_then(|rl| rl.with_guards(&cfg.ddos))
        .map_err(|e| {
            anyhow!(
                "{}: rate-limit policies or DDoS guards do not fit: {e:#}",
                cfg.path.display()
            )
        })?;
    Ok((rs, rl))
}

/// The config's IDS signatures (its own rules and its rule files) placed for tc_ids, with the
/// import report of each file; None without an `ids` section. A config rule that does not
/// fit is an error; an imported one is refused and reported.
pub fn compile_ids(
    cfg: &Config,
) -> Result<
    Option<(
        crate::ids::CompiledIds,
        Vec<crate::ids::suricata::FileReport>,
    )>,
> {
    let Some(section) = &cfg.ids else {
        return Ok(None);
    };
    let rs = crate::ids::load(section, cfg.conntrack.enabled)?;
    let compiled = crate::ids::compile(&rs.rules, rs.sampling);
    if let Some((rule, why)) = compiled.refused.iter().find(|(r, _)| !r.imported) {
        bail!("{}: IDS rule {}: {why}", rule.origin, rule.id);
    }
    Ok(Some((compiled, rs.reports)))
}

/// Rule and policy ids by generation, so that events decode with the ruleset that produced
/// them.
#[derive(Debug, Default)]
pub(crate) struct Names {
    pub firewall: [Vec<String>; 2],
    pub ratelimit: [Vec<String>; 2],
    /// (rule_id rank, name) of the DDoS guards
    pub guards: [Vec<(u16, String)>; 2],
    /// threat-intel feed ids by index (the kernel's feed_id)
    pub feeds: Vec<String>,
    /// DNS blocklist feed ids by index (the kernel's list minus one)
    pub dns_feeds: Vec<String>,
    /// IDS rules by rank
    pub ids: [Arc<Vec<crate::ids::IdsRule>>; 2],
}

pub(crate) type RuleNames = Arc<RwLock<Names>>;

/// Where decoded events go: stdout or the events file, subscribers of the control socket, and
/// a short history.
pub(crate) struct EventSink {
    out: Mutex<Box<dyn Write + Send>>,
    path: Option<PathBuf>,
    subscribers: broadcast::Sender<Arc<str>>,
    recent: Mutex<VecDeque<Arc<str>>>,
    pub(crate) written: AtomicU64,
    pub(crate) dropped: AtomicU64,
}

/// Buffered: the reader flushes once per drained batch, not once per event.
fn open_events(path: &Option<PathBuf>) -> Result<Box<dyn Write + Send>> {
    Ok(match path {
        Some(p) => Box::new(std::io::BufWriter::new(
            OpenOptions::new()
                .create(true)
                .append(true)
                .open(p)
                .with_context(|| format!("opening events file {}", p.display()))?,
        )),
        None => Box::new(std::io::BufWriter::new(std::io::stdout())),
    })
}

impl EventSink {
    pub(crate) fn new(path: Option<PathBuf>) -> Result<EventSink> {
        Ok(EventSink {
            out: Mutex::new(open_events(&path)?),
            path,
            subscribers: broadcast::channel(4096).0,
            recent: Mutex::new(VecDeque::with_capacity(RECENT_EVENTS)),
            written: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
        })
    }

    fn emit(&self, line: String) {
        let line: Arc<str> = line.into();
        {
            let mut out = self.out.lock().unwrap_or_else(|p| p.into_inner());
            if writeln!(out, "{line}").is_ok() {
                self.written.fetch_add(1, Ordering::Relaxed);
            } else {
                self.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
        let mut recent = self.recent.lock().unwrap_or_else(|p| p.into_inner());
        if recent.len() == RECENT_EVENTS {
            recent.pop_front();
        }
        recent.push_back(line.clone());
        drop(recent);
        // No subscriber is the normal case, not a loss.
        let _ = self.subscribers.send(line);
    }

    /// logrotate moved the file away: start a new one.
    fn reopen(&self) -> Result<()> {
        let fresh = open_events(&self.path)?;
        let mut out = self.out.lock().unwrap_or_else(|p| p.into_inner());
        let _ = out.flush();
        *out = fresh;
        Ok(())
    }

    fn flush(&self) {
        let mut out = self.out.lock().unwrap_or_else(|p| p.into_inner());
        if out.flush().is_err() {
            self.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// The one consumer of the shared ring buffer: a thread blocked in epoll (RingBuffer::poll).
/// Where decoded events go besides the sink: the threat-intel metadata of what matched, and
/// the IPS engine's detections.
#[derive(Clone)]
pub(crate) struct EventTaps {
    pub intel: Arc<intel::Shared>,
    pub detections: std::sync::mpsc::Sender<intel::Msg>,
}

impl EventTaps {
    fn tap(&self, ev: &mut events::EveEvent) {
        match (ev.event_type, ev.action) {
            ("threatintel", _) => {
                let iocs = self
                    .intel
                    .iocs
                    .read()
                    .unwrap_or_else(|p| p.into_inner())
                    .clone();
                let (side, addr, ioc) = match intel::ioc_of(&iocs, ev.src_ip) {
                    Some(ioc) => ("src", ev.src_ip, ioc),
                    None => match intel::ioc_of(&iocs, ev.dest_ip) {
                        Some(ioc) => ("dest", ev.dest_ip, ioc),
                        None => return,
                    },
                };
                let feed = ev.rule_id.clone().unwrap_or_default();
                ev.threatintel = Some(events::TiMatch {
                    ioc: ioc.net.to_string(),
                    side,
                    feed: feed.clone(),
                    confidence: ioc.confidence,
                    category: (ioc.category != 0)
                        .then(|| iocs.category_name(ioc.category).to_string()),
                });
                // the listed address is the offender, whichever side it is on
                let _ = self.detections.send(intel::Msg::Detection {
                    src: addr,
                    reason: crate::ips::Reasons::feed_reason(&feed),
                });
            }
            ("alert", _) => {
                let what = match &ev.alert {
                    Some(a) if a.signature_id != 0 => format!("sid {}", a.signature_id),
                    Some(a) => a.rule.clone(),
                    None => ev.rule_id.clone().unwrap_or_default(),
                };
                let _ = self.detections.send(intel::Msg::Detection {
                    src: ev.src_ip,
                    reason: format!("ids {what}"),
                });
            }
            ("firewall", "drop") => {
                let _ = self.detections.send(intel::Msg::Detection {
                    src: ev.src_ip,
                    reason: format!(
                        "firewall rule {}",
                        ev.rule_id.as_deref().unwrap_or(ev.reason)
                    ),
                });
            }
            _ => {}
        }
    }
}

/// The signature an IDS event names, from the rule table of the event's generation.
pub(crate) fn ids_alert(names: &RuleNames, data: &[u8], action: &str) -> Option<events::IdsAlert> {
    let ev: crate::abi::packet_event = crate::abi::read(data)?;
    let (gen, rank) = crate::abi::event_rule_parts(ev.rule_id)?;
    let names = names.read().unwrap_or_else(|p| p.into_inner());
    let rule = names.ids[(gen & 1) as usize].get(usize::from(rank))?;
    Some(events::IdsAlert::of(rule, action))
}

pub(crate) fn spawn_event_reader(
    events_map: MapHandle,
    sink: Arc<EventSink>,
    names: RuleNames,
    taps: Option<EventTaps>,
    stop: Arc<AtomicBool>,
) -> Result<std::thread::JoinHandle<()>> {
    let clock = Clock::now();
    let flush_sink = sink.clone();
    let mut rb = RingBufferBuilder::new();
    rb.add(&events_map, move |data: &[u8]| {
        let named = |space: events::RuleSpace, gen: u32, index: u16| {
            let names = names.read().unwrap_or_else(|p| p.into_inner());
            let g = (gen & 1) as usize;
            match space {
                events::RuleSpace::Firewall => names.firewall[g].get(usize::from(index)).cloned(),
                events::RuleSpace::RateLimit => names.ratelimit[g].get(usize::from(index)).cloned(),
                events::RuleSpace::Guard => names.guards[g]
                    .iter()
                    .find(|(rank, _)| *rank == index)
                    .map(|(_, n)| n.clone()),
                events::RuleSpace::Feed => names.feeds.get(usize::from(index)).cloned(),
                events::RuleSpace::DnsFeed => names.dns_feeds.get(usize::from(index)).cloned(),
                events::RuleSpace::Ids => {
                    names.ids[g].get(usize::from(index)).map(|r| r.id.clone())
                }
            }
        };
        let decoded = events::decode(data, &clock, named).map(|mut ev| {
            if ev.event_type == "alert" {
                ev.alert = ids_alert(&names, data, ev.action);
            }
            if let Some(taps) = &taps {
                taps.tap(&mut ev);
            }
            ev
        });
        match decoded.and_then(|ev| serde_json::to_string(&ev).ok()) {
            Some(line) => sink.emit(line),
            None => {
                sink.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
        0
    })?;
    let rb = rb.build()?;
    Ok(std::thread::Builder::new()
        .name("events".into())
        .spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                if let Err(e) = rb.poll(EVENT_DRAIN_INTERVAL) {
                    if e.kind() != libbpf_rs::ErrorKind::Interrupted {
                        eprintln!("ebpfsentinel: reading the event ring: {e}");
                        std::thread::sleep(EVENT_DRAIN_INTERVAL);
                    }
                }
                // Producers skip the wakeup until EVENTS_WAKEUP_BYTES are pending: what sits
                // below that is collected here, at the latest one interval late.
                let _ = rb.consume();
                flush_sink.flush();
            }
            let _ = rb.consume();
        })?)
}

/// The conntrack sweeper's view, shared with its thread: the settings it applies, what it
/// found last.
#[derive(Default)]
pub(crate) struct Sweeper {
    cfg: RwLock<config::ConntrackConfig>,
    last: Mutex<Option<SweepReport>>,
}

/// Removes idle entries nobody looked up (a packet only expires the entry it finds) on its own
/// thread: a walk of a large table must not stall the event loop.
fn spawn_sweeper(
    pin_root: PathBuf,
    sweeper: Arc<Sweeper>,
    stop: Arc<AtomicBool>,
) -> Result<std::thread::JoinHandle<()>> {
    let maps = ConntrackMaps::from_pins(&pin_root)?;
    Ok(std::thread::Builder::new()
        .name("ct-sweep".into())
        .spawn(move || {
            let mut next = std::time::Instant::now();
            while !stop.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(100));
                let cfg = sweeper
                    .cfg
                    .read()
                    .unwrap_or_else(|p| p.into_inner())
                    .clone();
                if !cfg.enabled || std::time::Instant::now() < next {
                    continue;
                }
                next = std::time::Instant::now() + cfg.sweep_interval;
                match maps.sweep(&cfg) {
                    Ok(report) => {
                        *sweeper.last.lock().unwrap_or_else(|p| p.into_inner()) = Some(report)
                    }
                    Err(e) => eprintln!("ebpfsentinel: conntrack sweep: {e:#}"),
                }
            }
        })?)
}

/// The TC stages' settings and chain slots for `full` (attaching is the caller's): shared by
/// the daemon and `ebpfsentinel test`, so that a replay runs the pipeline the daemon would.
pub fn apply_tc_stages(dp: &Dataplane, ct: &ConntrackMaps, full: &Config) -> Result<()> {
    ct.apply(&full.conntrack)?;
    dp.set_tc_stage(
        crate::abi::tc_stage::TC_STAGE_CONNTRACK,
        full.conntrack.enabled,
    )?;
    dp.set_tc_stage(crate::abi::tc_stage::TC_STAGE_IDS, full.ids.is_some())?;
    dp.set_tc_stage(
        crate::abi::tc_stage::TC_STAGE_THREATINTEL,
        intel::enabled(&full.threatintel),
    )?;
    dp.scrub_maps()?.apply(full.scrub.as_ref())?;
    dp.set_tc_stage(crate::abi::tc_stage::TC_STAGE_SCRUB, full.scrub.is_some())?;
    // The blocklist itself is the intel worker's, like threat intel's IOCs.
    dp.dns_maps()?.set_enabled(full.dns.is_some())?;
    dp.set_tc_stage(crate::abi::tc_stage::TC_STAGE_DNS, full.dns.is_some())?;
    Ok(())
}

/// Whether any TC stage is on: the entry programs hang on the interfaces only then.
fn tc_wanted(cfg: &Config) -> bool {
    cfg.conntrack.enabled
        || intel::enabled(&cfg.threatintel)
        || cfg.scrub.is_some()
        || cfg.dns.is_some()
        || cfg.ids.is_some()
}

struct Daemon {
    opts: Options,
    cfg: Config,
    dp: Dataplane,
    ct: ConntrackMaps,
    sweeper: Arc<Sweeper>,
    intel: Arc<intel::Shared>,
    ti: crate::maps::threatintel::ThreatIntelMaps,
    ids: crate::maps::ids::IdsMaps,
    /// rules of tc_ids's active generation
    ids_rules: usize,
    bl: crate::maps::blacklist::BlacklistMaps,
    /// the intel worker's inbox, once it runs
    intel_tx: Option<std::sync::mpsc::Sender<intel::Msg>>,
    fw: Staged<FirewallMaps>,
    rl: Staged<RateLimitMaps>,
    lb: LbState,
    lb_maps: LbMaps,
    /// what the health checker probes; replaced on reload and `lb add|del`
    health_targets: Arc<Mutex<Vec<lb::health::Target>>>,
    /// the firewall's active generation (what status and metrics report)
    generation: u32,
    names: RuleNames,
    lock: StateLock,
    reloads_ok: u64,
    reloads_failed: u64,
}

impl Daemon {
    fn start(opts: Options) -> Result<Daemon> {
        let cfg = load_config(&opts.config, &opts.overrides)?;
        let (rs, rl) = compile(&cfg)?;
        let ids = compile_ids(&cfg)?;
        loader::ensure_bpffs(&cfg.pin_root)?;
        let lock = StateLock::acquire(&cfg.pin_root)?;
        let dp = Dataplane::load(&LoadOptions {
            pin_root: Some(cfg.pin_root.clone()),
            bench_addrs: None,
            ct_table_size: Some(cfg.conntrack.table_size),
        })?;
        if let Some(note) = &dp.ct_table_note {
            eprintln!("ebpfsentinel: {note}");
        }
        let fw = Staged::new(dp.firewall_maps()?)?;
        let rl_stage = Staged::new(dp.ratelimit_maps()?)?;
        let ct = dp.conntrack_maps()?;
        let lb_maps = dp.lb_maps()?;
        let lb_state = LbState::new(cfg.loadbalancer.clone());
        let mut d = Daemon {
            opts,
            cfg,
            ct,
            sweeper: Arc::default(),
            intel: Arc::default(),
            ti: dp.threatintel_maps()?,
            ids: dp.ids_maps()?,
            ids_rules: 0,
            bl: dp.blacklist_maps()?,
            intel_tx: None,
            dp,
            fw,
            rl: rl_stage,
            lb: lb_state,
            lb_maps,
            health_targets: Arc::default(),
            generation: 0,
            names: Arc::new(RwLock::new(Names::default())),
            lock,
            reloads_ok: 0,
            reloads_failed: 0,
        };
        // Tracking runs before the ruleset that may match its states is activated.
        let cfg = d.cfg.clone();
        d.apply_ids(ids)?;
        d.apply_tc(&cfg, &[])?;
        // What an earlier daemon left in the inactive generation is unknown: clear it whole.
        let adopted = d.dp.adopted;
        d.activate(rs, rl, !adopted)?;
        d.apply_lb()?;
        let wanted = d.cfg.interfaces.clone();
        for ifname in &wanted {
            d.dp.attach_xdp(ifname, d.cfg.xdp_mode)?;
        }
        // TC entry programs an earlier daemon left on interfaces this config no longer names
        // (or with tracking now off).
        let tc_wanted: &[String] = if tc_wanted(&d.cfg) { &wanted } else { &[] };
        for p in crate::tc_links::remove_pinned_except(&d.cfg.pin_root, tc_wanted) {
            eprintln!("ebpfsentinel: {p}");
        }
        // Interfaces an earlier daemon attached that this config no longer names.
        for stale in crate::links::pinned_interfaces(&d.cfg.pin_root) {
            if !wanted.contains(&stale) {
                crate::links::remove_pinned(&d.cfg.pin_root, &stale)?;
            }
        }
        d.write_state()?;
        Ok(d)
    }

    /// Writes the conntrack settings, fills or empties the TC stages' slots, and hangs the TC
    /// entry programs on every interface while a TC stage is on (`previous`: the interfaces
    /// they hang on now). Threat intel's IOCs and settings are the intel worker's.
    fn apply_tc(&mut self, full: &Config, previous: &[String]) -> Result<()> {
        let cfg = &full.conntrack;
        apply_tc_stages(&self.dp, &self.ct, full)?;
        let mut names = self.names.write().unwrap_or_else(|p| p.into_inner());
        names.feeds = full
            .threatintel
            .feeds
            .iter()
            .map(|f| f.id.clone())
            .collect();
        names.dns_feeds = full.dns.as_ref().map_or_else(Vec::new, |d| {
            d.blocklist.feeds.iter().map(|f| f.id.clone()).collect()
        });
        drop(names);
        let wanted: Vec<String> = if tc_wanted(full) {
            self.cfg.interfaces.clone()
        } else {
            Vec::new()
        };
        for ifname in &wanted {
            if !previous.contains(ifname) || self.dp.tc_attachments().all(|a| &a.ifname != ifname) {
                self.dp.attach_tc(ifname, self.cfg.tc_mode)?;
            }
        }
        for ifname in previous {
            if !wanted.contains(ifname) {
                self.dp.detach_tc(ifname)?;
            }
        }
        *self.sweeper.cfg.write().unwrap_or_else(|p| p.into_inner()) = cfg.clone();
        Ok(())
    }

    /// Installs the signatures in tc_ids's inactive generation and flips to it (events of the
    /// new generation are named first), or turns the stage off.
    fn apply_ids(
        &mut self,
        ids: Option<(
            crate::ids::CompiledIds,
            Vec<crate::ids::suricata::FileReport>,
        )>,
    ) -> Result<()> {
        let Some((compiled, reports)) = ids else {
            self.ids_rules = 0;
            return self.ids.disable();
        };
        for r in &reports {
            eprintln!("ebpfsentinel: ids: {}", r.summary());
        }
        let next = (self.ids.active_generation()? ^ 1) as usize;
        self.names.write().unwrap_or_else(|p| p.into_inner()).ids[next] =
            Arc::new(compiled.rules.clone());
        self.ids.apply(&compiled)?;
        self.ids_rules = compiled.rules.len();
        Ok(())
    }

    /// Applies a compiled config: firewall first, then the rate limiter and its chain slot.
    /// Events are named before each flip: the first ones of a generation follow at once.
    fn activate(
        &mut self,
        rs: CompiledRuleset,
        rl: CompiledRateLimit,
        inactive_clean: bool,
    ) -> Result<()> {
        self.names
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .firewall[(self.fw.generation ^ 1) as usize] =
            rs.ranks.iter().map(|r| r.id.clone()).collect();
        self.fw.activate(rs, inactive_clean)?;
        self.generation = self.fw.generation;
        self.activate_ratelimit(rl, inactive_clean)
    }

    fn activate_ratelimit(&mut self, rl: CompiledRateLimit, inactive_clean: bool) -> Result<()> {
        {
            let next = (self.rl.generation ^ 1) as usize;
            let mut names = self.names.write().unwrap_or_else(|p| p.into_inner());
            names.ratelimit[next] = rl.ids.clone();
            names.guards[next] = rl.guard_names();
        }
        let enabled = rl.enabled();
        self.rl.activate(rl, inactive_clean)?;
        self.dp.set_stage(xdp_stage::XDP_STAGE_RATELIMIT, enabled)
    }

    /// `ratelimit set|del|list` on the running system: the change holds until the next reload
    /// re-reads the config file.
    fn ratelimit_command(&mut self, command: &str) -> Result<String> {
        let mut policies = self.cfg.ratelimit.clone();
        if command == "list" {
            let rows: Vec<serde_json::Value> = policies
                .policies
                .iter()
                .map(|p| {
                    serde_json::json!({
                        "id": p.id,
                        "src": p.src.as_ref().map(|m| m.nets.iter().map(|n| n.to_string()).collect::<Vec<_>>()),
                        "proto": p.proto.map(|x| x.to_string()),
                        "dst_port": p.dst_port.map(|r| if r.lo == r.hi { r.lo.to_string() } else { format!("{}-{}", r.lo, r.hi) }),
                        "rate": p.rate,
                        "burst": p.burst,
                        "action": match p.action { config::RateAction::Drop => "drop", config::RateAction::PassAndLog => "pass-and-log" },
                        "key": match p.key { config::RateKey::Source => "source", config::RateKey::Policy => "policy" },
                    })
                })
                .collect();
            return Ok(serde_json::to_string(&rows)?);
        }
        if let Some(id) = command.strip_prefix("del ") {
            let before = policies.policies.len();
            policies.policies.retain(|p| p.id != id.trim());
            if policies.policies.len() == before {
                bail!("no rate-limit policy `{}`", id.trim());
            }
        } else if let Some(mapping) = command.strip_prefix("set ") {
            let text = format!("ratelimit:\n  policies:\n    - {mapping}\n");
            let parsed = config::parse_str(&text, Path::new("<ratelimit set>"))
                .map_err(|e| anyhow!("{e}"))?;
            let policy = parsed
                .ratelimit
                .policies
                .into_iter()
                .next()
                .context("no policy given")?;
            match policies.policies.iter_mut().find(|p| p.id == policy.id) {
                Some(existing) => *existing = policy,
                None => policies.policies.push(policy),
            }
        } else {
            bail!("unknown ratelimit command `{command}`");
        }
        let rl = ruleset::ratelimit::compile(&policies)?.with_guards(&self.cfg.ddos)?;
        self.activate_ratelimit(rl, true)?;
        self.cfg.ratelimit = policies;
        Ok(format!("ok {} policies", self.cfg.ratelimit.policies.len()))
    }

    fn active(&self) -> &CompiledRuleset {
        self.fw.active()
    }

    /// Writes the services with the backends that take flows, then fills or empties the
    /// stage's slot.
    fn apply_lb(&mut self) -> Result<()> {
        self.lb_maps.sync(&self.lb.views())?;
        let mirror = match &self.cfg.mirror {
            Some(m) => Some(loader::ifindex(&m.to).context("the mirror port")? as u32),
            None => None,
        };
        let egress = self
            .cfg
            .interfaces
            .iter()
            .map(|i| loader::ifindex(i).map(|x| x as u32))
            .collect::<Result<Vec<_>>>()?;
        let services = self.cfg.mirror.as_ref().and_then(|m| m.services.as_deref());
        self.lb_maps.set_mirror(mirror, &egress, services)?;
        let (cpus, queue_size) = match &self.cfg.cpumap {
            Some(c) => {
                let cpus = match &c.cpus {
                    Some(cpus) => cpus.clone(),
                    None => match self.cfg.interfaces.first() {
                        Some(i) => lb::numa_local_cpus(i)?,
                        None => Vec::new(),
                    },
                };
                (cpus, c.queue_size)
            }
            None => (Vec::new(), 0),
        };
        self.lb_maps
            .set_cpus(&cpus, queue_size, self.dp.lb.progs.xdp_lb_cpu.as_fd())?;
        *self
            .health_targets
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = lb::health::targets(&self.lb.config);
        let wanted = !self.lb.config.services.is_empty() || !cpus.is_empty();
        self.dp.set_stage(xdp_stage::XDP_STAGE_LB, wanted)
    }

    fn lb_health(&mut self, (service, addr, up): lb::health::Verdict) {
        if !self.lb.set_health(&service, addr, up) {
            return;
        }
        eprintln!(
            "ebpfsentinel: lb: backend {addr} of `{service}` is {}",
            if up { "up" } else { "down" }
        );
        if let Err(e) = self.apply_lb() {
            eprintln!("ebpfsentinel: lb: rebuilding the tables: {e:#}");
        }
    }

    /// `lb list|add|del|drain|undrain` on the running system: changes hold until the next
    /// reload re-reads the config file.
    fn lb_command(&mut self, command: &str) -> Result<String> {
        let words: Vec<&str> = command.split_whitespace().collect();
        let backend = |w: Option<&&str>| -> Result<std::net::SocketAddr> {
            let w = w.context("missing the backend ADDR:PORT")?;
            w.parse()
                .with_context(|| format!("`{w}` is not ADDR:PORT (IPv6: [ADDR]:PORT)"))
        };
        let service = words.get(1).copied().unwrap_or_default();
        match words.first().copied() {
            Some("list") => {
                let mut rows = self.lb.to_json();
                if let Some(list) = rows.as_array_mut() {
                    for row in list {
                        let id = row["id"].as_str().unwrap_or_default().to_string();
                        let c = self.lb_maps.service_counters(&id)?;
                        row["packets"] = c.packets.into();
                        row["bytes"] = c.bytes.into();
                        row["no_backend"] = c.no_backend.into();
                    }
                }
                return Ok(serde_json::to_string(&rows)?);
            }
            Some("add") => {
                let addr = backend(words.get(2))?;
                let weight = match words.get(3) {
                    Some(w) => w
                        .parse::<u32>()
                        .ok()
                        .filter(|w| (1..=config::MAX_LB_WEIGHT).contains(w))
                        .with_context(|| {
                            format!("weight `{w}` is not in 1..={}", config::MAX_LB_WEIGHT)
                        })?,
                    None => 1,
                };
                self.lb
                    .add_backend(service, config::LbBackend { addr, weight })?;
            }
            Some("del") => self.lb.del_backend(service, backend(words.get(2))?)?,
            Some("drain") => self.lb.drain(service, backend(words.get(2))?, true)?,
            Some("undrain") => self.lb.drain(service, backend(words.get(2))?, false)?,
            _ => bail!("unknown lb command `{command}`"),
        }
        self.apply_lb()?;
        Ok(format!("ok {}", words.join(" ")))
    }

    fn reload(&mut self) -> Result<u32> {
        let cfg = load_config(&self.opts.config, &self.opts.overrides)?;
        if cfg.pin_root != self.cfg.pin_root {
            bail!(
                "pin_root changed ({} -> {}): that needs a restart",
                self.cfg.pin_root.display(),
                cfg.pin_root.display()
            );
        }
        let (rs, rl) = compile(&cfg)?;
        let ids = compile_ids(&cfg)?;
        if cfg.conntrack.table_size != self.cfg.conntrack.table_size {
            eprintln!(
                "ebpfsentinel: conntrack.table_size changed ({} -> {}): the table keeps its size \
                 and its flows until `ebpfsentinel down` and a restart",
                self.cfg.conntrack.table_size, cfg.conntrack.table_size
            );
        }
        if cfg.tc_mode != self.cfg.tc_mode {
            eprintln!(
                "ebpfsentinel: tc_mode changed ({:?} -> {:?}): attachments keep their form until \
                 a restart",
                self.cfg.tc_mode, cfg.tc_mode
            );
        }
        for ifname in &cfg.interfaces {
            if !self.cfg.interfaces.contains(ifname) {
                self.dp.attach_xdp(ifname, cfg.xdp_mode)?;
            }
        }
        let tracked: Vec<String> = if tc_wanted(&self.cfg) {
            self.cfg.interfaces.clone()
        } else {
            Vec::new()
        };
        let old_interfaces = std::mem::replace(&mut self.cfg.interfaces, cfg.interfaces.clone());
        self.lb.replace(cfg.loadbalancer.clone());
        self.cfg.mirror = cfg.mirror.clone();
        self.cfg.cpumap = cfg.cpumap.clone();
        self.apply_lb()?;
        self.apply_ids(ids)?;
        // States matched by the new ruleset are tracked before it is active; a ruleset that
        // stops matching them is active before tracking goes.
        if cfg.conntrack.enabled {
            self.apply_tc(&cfg, &tracked)?;
            self.activate(rs, rl, true)?;
        } else {
            self.activate(rs, rl, true)?;
            self.apply_tc(&cfg, &tracked)?;
        }
        if let Some(tx) = &self.intel_tx {
            let _ = tx.send(intel::Msg::Reconfigure(
                cfg.threatintel.clone(),
                cfg.ips.clone(),
            ));
            let _ = tx.send(intel::Msg::Dns(cfg.dns.clone()));
        }
        for ifname in &old_interfaces {
            if !cfg.interfaces.contains(ifname) {
                self.dp.detach_xdp(ifname)?;
            }
        }
        self.cfg = cfg;
        self.write_state()?;
        Ok(self.generation)
    }

    /// A reload as operators see it: logged, counted, and with the old ruleset's counters
    /// published first so that no hit between two publishes is lost with its generation.
    fn reload_and_report(
        &mut self,
        sink: &EventSink,
        exporter: Option<&Exporter>,
    ) -> Result<u32, String> {
        if let Some(exporter) = exporter {
            if let Ok(s) = self.snapshot(sink) {
                exporter.publish(&s);
            }
        }
        let outcome = self.reload().map_err(|e| format!("{e:#}"));
        match &outcome {
            Ok(gen) => {
                self.reloads_ok += 1;
                eprintln!("ebpfsentinel: reloaded: generation {gen}");
            }
            Err(e) => {
                self.reloads_failed += 1;
                eprintln!("ebpfsentinel: reload refused, the running ruleset stays: {e}");
            }
        }
        if let (Some(exporter), Ok(s)) = (exporter, self.snapshot(sink)) {
            exporter.publish(&s);
        }
        outcome
    }

    fn write_state(&self) -> Result<()> {
        self.lock.write(&DaemonState {
            pid: std::process::id(),
            config: self.cfg.path.clone(),
            pin_root: self.cfg.pin_root.clone(),
            netns_inode: state::netns_inode(),
            interfaces: self.dp.attachments().cloned().collect(),
            tc: self.dp.tc_attachments().cloned().collect(),
            generation: self.generation,
            rules: self.active().ranks.iter().map(|r| r.id.clone()).collect(),
            maps: metrics::fill_levels(self.active())
                .iter()
                .map(Into::into)
                .collect(),
            metrics_listen: self.cfg.metrics_listen,
        })
    }

    fn snapshot(&self, sink: &EventSink) -> Result<Snapshot> {
        let consumer = ConsumerCounters {
            events_written: sink.written.load(Ordering::Relaxed),
            events_dropped: sink.dropped.load(Ordering::Relaxed),
            reloads_ok: self.reloads_ok,
            reloads_failed: self.reloads_failed,
        };
        let rules: Vec<String> = self.active().ranks.iter().map(|r| r.id.clone()).collect();
        let mut snapshot = Snapshot::read(
            &self.fw.maps,
            self.generation,
            &rules,
            &metrics::fill_levels(self.active()),
            &consumer,
        )?;
        snapshot.ratelimit = self.rl.maps.stats()?;
        if self.cfg.conntrack.enabled {
            let last = self.sweeper.last.lock().unwrap_or_else(|p| p.into_inner());
            snapshot.conntrack = Some(metrics::Conntrack::read(&self.ct, last.as_ref())?);
        }
        if intel::enabled(&self.cfg.threatintel) {
            let installed = self
                .intel
                .iocs
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .clone();
            let feeds = crate::maps::threatintel::read_feeds_status(&self.cfg.pin_root);
            snapshot.threatintel = Some(metrics::ThreatIntel::read(
                &self.ti,
                &installed,
                feeds.as_ref(),
            )?);
        }
        if self.cfg.scrub.is_some() {
            snapshot.scrub = Some(metrics::Scrub::read(&self.dp.scrub_maps()?)?);
        }
        if self.cfg.dns.is_some() {
            snapshot.dns = Some(metrics::Dns::read(
                &self.dp.dns_maps()?,
                self.intel.dns_feed_errors.load(Ordering::Relaxed),
                *self
                    .intel
                    .dns_last_sync
                    .lock()
                    .unwrap_or_else(|p| p.into_inner()),
            )?);
        }
        if !self.lb.config.services.is_empty() {
            snapshot.lb = Some(metrics::Lb::read(&self.lb_maps, &self.lb)?);
        }
        if self.cfg.ids.is_some() {
            snapshot.ids = Some(metrics::Ids::read(&self.ids, self.ids_rules)?);
        }
        snapshot.blacklist = Some(metrics::Blacklist::read(
            &self.bl,
            self.intel.blocks.load(Ordering::Relaxed),
            self.intel.expiries.load(Ordering::Relaxed),
        )?);
        Ok(snapshot)
    }
}

/// A ruleset's two generations as this process knows them.
struct Staged<M: Generations> {
    maps: M,
    installed: [Option<M::Ruleset>; 2],
    generation: u32,
}

impl<M: Generations> Staged<M> {
    fn new(maps: M) -> Result<Self> {
        let generation = maps.active_generation()?;
        Ok(Staged {
            maps,
            installed: [None, None],
            generation,
        })
    }

    /// Installs `rs` in the inactive generation, flips to it, then retires the old one.
    fn activate(&mut self, rs: M::Ruleset, inactive_clean: bool) -> Result<()> {
        let retiring = self.installed[self.generation as usize].take();
        self.generation =
            self.maps
                .replace(&rs, inactive_clean, retiring.as_ref(), RETIRE_GRACE)?;
        self.installed[self.generation as usize] = Some(rs);
        Ok(())
    }

    fn active(&self) -> &M::Ruleset {
        self.installed[self.generation as usize]
            .as_ref()
            .expect("the active generation was installed by this process")
    }
}

enum Request {
    Reload(oneshot::Sender<Result<u32, String>>),
    RateLimit(String, oneshot::Sender<Result<String, String>>),
    Lb(String, oneshot::Sender<Result<String, String>>),
}

async fn serve_client(
    stream: UnixStream,
    sink: Arc<EventSink>,
    requests: mpsc::Sender<Request>,
) -> Result<()> {
    let (read, mut write) = stream.into_split();
    let mut line = String::new();
    BufReader::new(read).read_line(&mut line).await?;
    match line.trim() {
        "reload" => {
            let (tx, rx) = oneshot::channel();
            requests
                .send(Request::Reload(tx))
                .await
                .map_err(|_| anyhow!("daemon stopping"))?;
            let answer = match rx.await? {
                Ok(gen) => format!("ok generation {gen}\n"),
                Err(e) => format!("error {}\n", e.replace('\n', "\n      ")),
            };
            write.write_all(answer.as_bytes()).await?;
        }
        cmd if cmd.starts_with("ratelimit ") || cmd.starts_with("lb ") => {
            let (tx, rx) = oneshot::channel();
            let request = match cmd.strip_prefix("lb ") {
                Some(rest) => Request::Lb(rest.to_string(), tx),
                None => Request::RateLimit(cmd["ratelimit ".len()..].to_string(), tx),
            };
            requests
                .send(request)
                .await
                .map_err(|_| anyhow!("daemon stopping"))?;
            let answer = match rx.await? {
                Ok(text) => format!("{text}\n"),
                Err(e) => format!("error {}\n", e.replace('\n', "\n      ")),
            };
            write.write_all(answer.as_bytes()).await?;
        }
        cmd @ ("events" | "events follow") => {
            // Subscribe before copying the history so that nothing falls in between.
            let mut live = sink.subscribers.subscribe();
            let recent: Vec<Arc<str>> = sink
                .recent
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .iter()
                .cloned()
                .collect();
            for l in recent {
                write.write_all(l.as_bytes()).await?;
                write.write_all(b"\n").await?;
            }
            if cmd == "events follow" {
                loop {
                    match live.recv().await {
                        Ok(l) => {
                            write.write_all(l.as_bytes()).await?;
                            write.write_all(b"\n").await?;
                        }
                        Err(broadcast::error::RecvError::Lagged(n)) => {
                            sink.dropped.fetch_add(n, Ordering::Relaxed);
                        }
                        Err(broadcast::error::RecvError::Closed) => break,
                    }
                }
            }
        }
        other => {
            write
                .write_all(format!("error unknown command `{other}`\n").as_bytes())
                .await?
        }
    }
    Ok(())
}

fn bind_control(pin_root: &Path) -> Result<UnixListener> {
    let path = control::socket_path(pin_root);
    let _ = std::fs::remove_file(&path);
    let listener =
        UnixListener::bind(&path).with_context(|| format!("binding {}", path.display()))?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
    Ok(listener)
}

pub fn run(opts: Options) -> Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(serve(opts))
}

async fn serve(opts: Options) -> Result<()> {
    let once = opts.once;
    let transient = opts.transient;
    let mut d = Daemon::start(opts)?;
    let summary: Vec<String> =
        d.dp.attachments()
            .map(|a| {
                format!(
                    "{} ({} via {}, prog {}{})",
                    a.ifname,
                    a.mode,
                    a.hook,
                    a.prog_id,
                    if a.adopted { ", adopted" } else { "" }
                )
            })
            .collect();
    let mut tc_hooks: Vec<String> = Vec::new();
    for a in d.dp.tc_attachments() {
        let name = format!("{} via {}", a.ifname, a.hook);
        if !tc_hooks.contains(&name) {
            tc_hooks.push(name);
        }
    }
    if !tc_hooks.is_empty() {
        let stages: Vec<&str> = [
            ("conntrack", d.cfg.conntrack.enabled),
            ("threatintel", intel::enabled(&d.cfg.threatintel)),
            ("ids", d.cfg.ids.is_some()),
            ("scrub", d.cfg.scrub.is_some()),
            ("dns", d.cfg.dns.is_some()),
        ]
        .iter()
        .filter(|(_, on)| *on)
        .map(|(name, _)| *name)
        .collect();
        eprintln!(
            "ebpfsentinel: TC pipeline ({}) on ingress and egress of {}",
            stages.join(", "),
            tc_hooks.join(", ")
        );
    }
    if once {
        eprintln!(
            "ebpfsentinel: applied generation {} on {}; enforcement stays pinned under {}",
            d.generation,
            summary.join(", "),
            d.cfg.pin_root.display()
        );
        return Ok(());
    }

    let sink = Arc::new(EventSink::new(d.cfg.events_path.clone())?);
    let stop = Arc::new(AtomicBool::new(false));
    let events_map = MapHandle::try_from(&d.dp.firewall.maps.events)?;
    let worker = intel::spawn(
        d.cfg.pin_root.clone(),
        d.cfg.threatintel.clone(),
        d.cfg.ips.clone(),
        d.intel.clone(),
        stop.clone(),
    )?;
    d.intel_tx = Some(worker.tx.clone());
    let _ = worker.tx.send(intel::Msg::Dns(d.cfg.dns.clone()));
    let taps = EventTaps {
        intel: d.intel.clone(),
        detections: worker.tx.clone(),
    };
    let reader = spawn_event_reader(
        events_map,
        sink.clone(),
        d.names.clone(),
        Some(taps),
        stop.clone(),
    )?;
    let sweeper = spawn_sweeper(d.cfg.pin_root.clone(), d.sweeper.clone(), stop.clone())?;
    let exporter = match d.cfg.metrics_listen {
        Some(addr) => Some(Exporter::install(addr)?),
        None => None,
    };
    let (health_tx, mut health_rx) = mpsc::unbounded_channel::<lb::health::Verdict>();
    let health = lb::health::spawn(
        d.health_targets.clone(),
        move |v| {
            let _ = health_tx.send(v);
        },
        stop.clone(),
    )?;
    let listener = bind_control(&d.cfg.pin_root)?;
    let (req_tx, mut req_rx) = mpsc::channel::<Request>(8);
    let mut hup = signal(SignalKind::hangup())?;
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let mut tick = tokio::time::interval(Duration::from_secs(1));

    eprintln!(
        "ebpfsentinel: ready: generation {} with {} rules on {}; pins under {}{}",
        d.generation,
        d.active().ranks.len(),
        summary.join(", "),
        d.cfg.pin_root.display(),
        d.cfg
            .metrics_listen
            .map(|a| format!("; metrics on http://{a}/metrics"))
            .unwrap_or_default()
    );

    let result: Result<()> = loop {
        tokio::select! {
            _ = term.recv() => break Ok(()),
            _ = int.recv() => break Ok(()),
            _ = hup.recv() => {
                if let Err(e) = sink.reopen() {
                    eprintln!("ebpfsentinel: {e:#}");
                }
                let _ = d.reload_and_report(&sink, exporter.as_ref());
            }
            Some(request) = req_rx.recv() => match request {
                Request::Reload(reply) => {
                    let _ = reply.send(d.reload_and_report(&sink, exporter.as_ref()));
                }
                Request::RateLimit(command, reply) => {
                    let outcome = d.ratelimit_command(&command).map_err(|e| format!("{e:#}"));
                    if let Ok(text) = &outcome {
                        if !command.starts_with("list") {
                            eprintln!("ebpfsentinel: ratelimit {command}: {text}");
                        }
                    }
                    let _ = reply.send(outcome);
                }
                Request::Lb(command, reply) => {
                    let outcome = d.lb_command(&command).map_err(|e| format!("{e:#}"));
                    if let Ok(text) = &outcome {
                        if !command.starts_with("list") {
                            eprintln!("ebpfsentinel: lb {command}: {text}");
                        }
                    }
                    let _ = reply.send(outcome);
                }
            },
            Some(verdict) = health_rx.recv() => d.lb_health(verdict),
            accepted = listener.accept() => {
                if let Ok((stream, _)) = accepted {
                    let (sink, tx) = (sink.clone(), req_tx.clone());
                    tokio::spawn(async move {
                        // A client that goes away mid-stream is not the daemon's problem.
                        let _ = serve_client(stream, sink, tx).await;
                    });
                }
            }
            _ = tick.tick() => {
                if let Some(exporter) = &exporter {
                    match d.snapshot(&sink) {
                        Ok(s) => exporter.publish(&s),
                        Err(e) => eprintln!("ebpfsentinel: reading counters: {e:#}"),
                    }
                }
            }
        }
    };

    stop.store(true, Ordering::Relaxed);
    let _ = reader.join();
    let _ = sweeper.join();
    let _ = health.join();
    d.intel_tx = None;
    worker.join();
    let _ = std::fs::remove_file(control::socket_path(&d.cfg.pin_root));
    if transient {
        eprintln!("ebpfsentinel: stopping: detaching and unpinning (transient run)");
        for p in d.dp.teardown() {
            eprintln!("ebpfsentinel: {p}");
        }
    } else {
        eprintln!(
            "ebpfsentinel: stopping; enforcement stays pinned under {} (`ebpfsentinel down` removes it)",
            d.cfg.pin_root.display()
        );
    }
    result
}
