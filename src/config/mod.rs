//! Loads and fully validates `config.yaml`. Every problem found is reported as
//! `file:line:col: reason`; a `Config` is only returned when there are none.

mod netset;
mod validate;
mod yaml;

#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use ipnet::IpNet;

pub const DEFAULT_PIN_ROOT: &str = "/sys/fs/bpf/ebpfsentinel";
pub const MAX_RULES: usize = 16_384;
pub const MAX_ALIAS_ENTRIES: usize = 1_000_000;
pub const MAX_ALLOWLIST_ENTRIES: usize = 32_768;
pub const MAX_PRIORITY: u32 = 1_000_000;
pub const DEFAULT_PRIORITY: u32 = 100;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    pub file: PathBuf,
    pub line: usize,
    pub col: usize,
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}:{}", self.file.display(), self.line, self.col)
    }
}

/// Errors without a location (unreadable files) carry the path in `message`.
#[derive(Debug, Clone)]
pub struct ConfigError {
    pub location: Option<Location>,
    pub message: String,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.location {
            Some(location) => write!(f, "{location}: {}", self.message),
            None => f.write_str(&self.message),
        }
    }
}

#[derive(Debug, Clone)]
pub struct ConfigErrors(pub Vec<ConfigError>);

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (index, error) in self.0.iter().enumerate() {
            if index > 0 {
                f.write_str("\n")?;
            }
            write!(f, "{error}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

#[derive(Debug, Clone)]
pub struct Config {
    pub path: PathBuf,
    pub interfaces: Vec<String>,
    pub xdp_mode: XdpMode,
    /// `tc_mode`: how the TC entry programs hang on the interfaces
    pub tc_mode: TcMode,
    pub pin_root: PathBuf,
    /// `metrics.listen`: where Prometheus text is served; None when `off`
    pub metrics_listen: Option<SocketAddr>,
    /// `events.path`: JSON lines go here (reopened on SIGHUP), else to stdout
    pub events_path: Option<PathBuf>,
    pub firewall: FirewallConfig,
    pub ratelimit: RateLimitConfig,
    pub ddos: DdosConfig,
    pub conntrack: ConntrackConfig,
    pub threatintel: ThreatIntelConfig,
    pub ips: IpsConfig,
    /// `scrub`: tc_scrub's normalisation; None (no section) keeps the stage off
    pub scrub: Option<ScrubConfig>,
    /// `dns`: tc_dns's blocklist; None (no section) keeps the stage off
    pub dns: Option<DnsConfig>,
    /// `loadbalancer`: xdp_lb's services; none keeps the stage off
    pub loadbalancer: LbConfig,
    /// `mirror`: copies of what xdp_lb forwards go to this interface too
    pub mirror: Option<MirrorConfig>,
    /// `cpumap`: CPUs the packets for the stack are steered to
    pub cpumap: Option<CpumapConfig>,
    /// `ids`: tc_ids's signatures; None (no section) keeps the stage off
    pub ids: Option<IdsConfig>,
}

/// `dns`: what tc_dns checks DNS queries against.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DnsConfig {
    pub blocklist: DnsBlocklistConfig,
}

/// `dns.blocklist`: domains (each blocks itself and its subdomains) from the config and from
/// feeds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DnsBlocklistConfig {
    /// `action`: what feeds that do not say, and `domains`, get (default drop)
    pub action: crate::feeds::domains::DnsAction,
    /// `domains`, normalised (lowercase, no trailing dot)
    pub domains: Vec<String>,
    /// file order; a feed's list number in the kernel is 1 + its index
    pub feeds: Vec<DnsFeedConfig>,
}

/// One `dns.blocklist.feeds` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsFeedConfig {
    pub id: String,
    pub location: Location,
    pub source: FeedSource,
    pub format: crate::feeds::domains::DomainFormat,
    /// None: fetched once at start and on reload
    pub refresh: Option<std::time::Duration>,
    /// None: `dns.blocklist.action`
    pub action: Option<crate::feeds::domains::DnsAction>,
}

/// `ids`: the signature IDS.
#[derive(Debug, Clone, PartialEq)]
pub struct IdsConfig {
    /// `sampling`: the share of alerts reported (0.0..=1.0); drops are never sampled
    pub sampling: f64,
    /// `rules`, file order
    pub rules: Vec<crate::ids::IdsRule>,
    /// `suricata_rules`: rule files, read when the config is applied
    pub suricata_rules: Vec<crate::ids::RuleFile>,
}

impl Default for IdsConfig {
    fn default() -> Self {
        IdsConfig {
            sampling: 1.0,
            rules: Vec::new(),
            suricata_rules: Vec::new(),
        }
    }
}

pub const MAX_FEEDS: usize = 256;
/// Feed servers throttle or ban clients that poll more often; Spamhaus and abuse.ch ask for
/// far less.
pub const MIN_URL_REFRESH: std::time::Duration = std::time::Duration::from_secs(60);
pub const MAX_IPS_THRESHOLD: u32 = 1_000_000;
/// Bounds of the `threatintel` and `ips` durations; the same as conntrack's.
pub const MIN_DURATION: std::time::Duration = MIN_CT_DURATION;
pub const MAX_DURATION: std::time::Duration = MAX_CT_DURATION;

/// `threatintel`: IOC feeds matched by tc_threatintel.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ThreatIntelConfig {
    /// `action`: what feeds that do not say get (default alert)
    pub action: Option<crate::feeds::TiAction>,
    /// `quarantine_vlan`: the 802.1Q VID quarantined packets are tagged with
    pub quarantine_vlan: Option<u16>,
    /// file order; a feed's index is its id in the kernel
    pub feeds: Vec<FeedConfig>,
}

impl ThreatIntelConfig {
    /// What IOCs get when their feed does not say.
    pub fn default_action(&self) -> crate::feeds::TiAction {
        self.action.unwrap_or(crate::feeds::TiAction::Alert)
    }

    pub fn action_of(&self, feed: &FeedConfig) -> crate::feeds::TiAction {
        feed.action.unwrap_or_else(|| self.default_action())
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FeedSource {
    Url(String),
    Path(PathBuf),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FeedFormat {
    /// one IP or CIDR per line, `#` comments (FireHOL netsets, plain lists)
    Netset,
    /// `prefix ; SBL...` (Spamhaus DROP text)
    Spamhaus,
    /// a header line, then rows; `field` names the IOC column
    Csv,
    /// one JSON array of objects (or of strings, which are the IOCs themselves); `field`
    /// names the IOC key
    Json,
    /// one JSON object per line; `field` names the IOC key
    Ndjson,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeedConfig {
    pub id: String,
    pub location: Location,
    pub source: FeedSource,
    pub format: FeedFormat,
    /// CSV column / JSON key holding the IOC
    pub field: Option<String>,
    /// CSV column / JSON key holding a confidence (0..100), if the feed has one
    pub confidence_field: Option<String>,
    /// CSV column / JSON key holding a category, if the feed has one
    pub category_field: Option<String>,
    /// None: fetched once at start and on reload
    pub refresh: Option<std::time::Duration>,
    /// None: `threatintel.action`
    pub action: Option<crate::feeds::TiAction>,
    /// IOCs below this confidence are left out (feeds without confidences count as 100)
    pub min_confidence: u8,
}

/// `ips`: the engine that blacklists sources after repeated detections.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IpsConfig {
    /// detections of one source within `window` that get it blocked; None: no auto-blocking
    pub threshold: Option<u32>,
    pub window: std::time::Duration,
    pub block_for: std::time::Duration,
    /// never blocked, whatever they trigger
    pub whitelist: Vec<IpNet>,
}

impl Default for IpsConfig {
    fn default() -> Self {
        IpsConfig {
            threshold: None,
            window: std::time::Duration::from_secs(60),
            block_for: std::time::Duration::from_secs(3600),
            whitelist: Vec::new(),
        }
    }
}

/// `conntrack`: the connection table tc_conntrack keeps on both TC hooks and xdp_firewall
/// reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConntrackConfig {
    pub enabled: bool,
    /// `table_size`: entries of the LRU table (both families)
    pub table_size: u32,
    /// `fast_path`: ESTABLISHED and RELATED packets pass xdp_firewall before any rule
    pub fast_path: bool,
    /// `invalid`: what tc_conntrack does with packets it classes INVALID
    pub invalid: Action,
    /// `timeouts`: idle time after which an entry is gone, by `enum ct_state`
    pub timeouts: [std::time::Duration; CT_STATES],
    /// `sweep_interval`: how often the daemon removes idle entries nobody looked up
    pub sweep_interval: std::time::Duration,
}

/// `scrub`: what tc_scrub normalises in the packets both TC hooks pass. Every key is
/// optional; a section without any leaves packets as they are (and counts them).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ScrubConfig {
    /// `min_ttl`: IPv4 TTL / IPv6 hop limit below this are raised to it
    pub min_ttl: Option<u8>,
    /// `max_mss`: the MSS option of SYN and SYN-ACK segments is clamped to this
    pub max_mss: Option<u16>,
    /// `clear_df`: clear the IPv4 don't-fragment bit
    pub clear_df: bool,
    /// `random_ip_id`: a random IPv4 ID on every unfragmented packet
    pub random_ip_id: bool,
}

/// Bounds of `scrub.min_ttl` and `scrub.max_mss` (536: the IPv4 default MSS, RFC 1122).
pub const MIN_SCRUB_TTL: u8 = 1;
pub const MIN_SCRUB_MSS: u16 = 536;

/// `enum ct_state` values: one timeout each.
pub const CT_STATES: usize = crate::abi::CT_STATE_COUNT;

pub const MIN_CT_TABLE_SIZE: u32 = 1024;
pub const MAX_CT_TABLE_SIZE: u32 = 16_777_216;
/// Bounds of every `conntrack` duration. Longer than nf_conntrack's longest default (5 days
/// established) with room to spare, and short enough that no deadline computed from it
/// overflows.
pub const MIN_CT_DURATION: std::time::Duration = std::time::Duration::from_secs(1);
pub const MAX_CT_DURATION: std::time::Duration = std::time::Duration::from_secs(30 * 86_400);

/// nf_conntrack's defaults (net.netfilter.nf_conntrack_*_timeout*), by `enum ct_state`.
pub const DEFAULT_CT_TIMEOUTS_SECS: [u64; CT_STATES] = [
    120,    // tcp syn_sent
    60,     // tcp syn_recv
    432000, // tcp established (5 days)
    120,    // tcp fin_wait
    60,     // tcp close_wait
    120,    // tcp time_wait
    10,     // tcp closed (after RST)
    30,     // udp new (one direction seen)
    120,    // udp established (replies seen)
    30,     // icmp new
    30,     // icmp established
];

impl Default for ConntrackConfig {
    fn default() -> Self {
        ConntrackConfig {
            enabled: false,
            table_size: 262_144,
            fast_path: true,
            invalid: Action::Pass,
            timeouts: DEFAULT_CT_TIMEOUTS_SECS.map(std::time::Duration::from_secs),
            sweep_interval: std::time::Duration::from_secs(10),
        }
    }
}

/// `enum ct_class` values: what a packet is to the tracker.
pub const CT_CLASSES: usize = crate::abi::ct_class::CT_CLASS_COUNT.0 as usize;

/// `state:` names, by `enum ct_class`.
pub const CT_CLASS_NAMES: [&str; CT_CLASSES] = ["new", "established", "related", "invalid"];

/// `state:` of a rule: bit `1 << enum ct_class` per accepted class.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CtStates(pub u8);

impl CtStates {
    pub const NEW: CtStates = CtStates(1 << 0);
    pub const ESTABLISHED: CtStates = CtStates(1 << 1);
    pub const RELATED: CtStates = CtStates(1 << 2);
    pub const INVALID: CtStates = CtStates(1 << 3);

    /// Whether packets of `enum ct_class` value `class` are accepted.
    pub fn contains(self, class: usize) -> bool {
        class < CT_CLASSES && self.0 & (1 << class) != 0
    }

    pub fn intersects(self, other: CtStates) -> bool {
        self.0 & other.0 != 0
    }
}

/// The accepted class names, `enum ct_class` order, joined by `,`.
impl fmt::Display for CtStates {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = (0..CT_CLASSES)
            .filter(|&class| self.contains(class))
            .map(|class| CT_CLASS_NAMES[class])
            .collect();
        f.write_str(&names.join(","))
    }
}

/// `ddos`: guards that need no policy.
#[derive(Debug, Clone, Default)]
pub struct DdosConfig {
    /// `ddos.icmp`: per-source ICMP/ICMPv6 rate and echo payload limit
    pub icmp: Option<IcmpGuard>,
    /// `ddos.amplification.ports`: per-source rate of UDP replies from these source ports
    pub amplification: Vec<AmpPort>,
    /// `ddos.syn.threshold_pps`: SYNs per second to one destination above which SYN cookies
    /// answer from XDP
    pub syn_threshold_pps: Option<u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IcmpGuard {
    pub rate: u64,
    pub burst: u64,
    /// echo payload bytes above which an echo is dropped; 0: no limit
    pub max_payload: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AmpPort {
    pub port: u16,
    pub rate: u64,
    pub burst: u64,
}

/// The reflection services abused most (chargen, DNS, NTP, CLDAP, SSDP, memcached) with
/// per-source rates well above what one legitimate server answers one client.
pub const DEFAULT_AMP_PORTS: [(u16, u64); 6] = [
    (19, 10),
    (53, 1000),
    (123, 100),
    (389, 10),
    (1900, 10),
    (11211, 10),
];
pub const MAX_AMP_PORTS: usize = 64;

pub const MAX_RATE_POLICIES: usize = 1024;
pub const MAX_RATE_PPS: u64 = 100_000_000;

/// `ratelimit.policies`, file order.
#[derive(Debug, Clone, Default)]
pub struct RateLimitConfig {
    pub policies: Vec<RatePolicy>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RateAction {
    Drop,
    PassAndLog,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RateKey {
    /// one budget per source address
    Source,
    /// one budget shared by every source the policy covers
    Policy,
}

#[derive(Debug, Clone)]
pub struct RatePolicy {
    pub id: String,
    pub location: Location,
    /// None: every source of both families
    pub src: Option<AddrMatch>,
    pub proto: Option<Proto>,
    pub dst_port: Option<PortRange>,
    /// packets per second
    pub rate: u64,
    /// packets a key may send at once; defaults to one second's worth
    pub burst: u64,
    pub action: RateAction,
    pub key: RateKey,
}

/// Loopback only by default: counters say a lot about a network.
pub const DEFAULT_METRICS_LISTEN: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 9669);

/// TCX links where the kernel has them (6.6+), else clsact filters; or one of them forced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TcMode {
    Auto,
    Tcx,
    Clsact,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum XdpMode {
    Auto,
    Native,
    Generic,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FirewallMode {
    Enforce,
    Monitor,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Pass,
    Drop,
}

#[derive(Debug, Clone)]
pub struct FirewallConfig {
    pub mode: FirewallMode,
    pub default_policy: Action,
    pub malformed: Action,
    pub allowlist: Vec<IpNet>,
    pub aliases: BTreeMap<String, Alias>,
    /// File order; consumers sort stably by `priority`.
    pub rules: Vec<Rule>,
}

impl Default for FirewallConfig {
    fn default() -> Self {
        FirewallConfig {
            mode: FirewallMode::Enforce,
            default_policy: Action::Pass,
            malformed: Action::Drop,
            allowlist: Vec::new(),
            aliases: BTreeMap::new(),
            rules: Vec::new(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Alias {
    pub name: String,
    pub entries: Vec<IpNet>,
    pub location: Location,
}

#[derive(Debug, Clone)]
pub struct Rule {
    pub id: String,
    pub location: Location,
    pub action: Action,
    pub log: bool,
    pub priority: u32,
    pub src: Option<AddrMatch>,
    pub dst: Option<AddrMatch>,
    pub proto: Option<Proto>,
    pub src_port: Option<PortRange>,
    pub dst_port: Option<PortRange>,
    pub vlan: Option<VlanMatch>,
    pub tcp_flags: Option<TcpFlags>,
    pub icmp_type: Option<u8>,
    pub icmp_code: Option<u8>,
    pub state: Option<CtStates>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AddrMatch {
    /// Literal networks plus the members of every referenced alias, deduplicated.
    pub nets: Vec<IpNet>,
    /// Referenced alias names (without `@`), kept for display.
    pub aliases: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proto {
    Tcp,
    Udp,
    Icmp,
    Icmpv6,
    Other(u8),
}

impl Proto {
    pub fn number(&self) -> u8 {
        match self {
            Proto::Tcp => 6,
            Proto::Udp => 17,
            Proto::Icmp => 1,
            Proto::Icmpv6 => 58,
            Proto::Other(number) => *number,
        }
    }

    pub fn from_number(number: u8) -> Proto {
        match number {
            6 => Proto::Tcp,
            17 => Proto::Udp,
            1 => Proto::Icmp,
            58 => Proto::Icmpv6,
            other => Proto::Other(other),
        }
    }
}

impl fmt::Display for Proto {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Proto::Tcp => f.write_str("tcp"),
            Proto::Udp => f.write_str("udp"),
            Proto::Icmp => f.write_str("icmp"),
            Proto::Icmpv6 => f.write_str("icmpv6"),
            Proto::Other(number) => write!(f, "{number}"),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortRange {
    pub lo: u16,
    pub hi: u16,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VlanMatch {
    Id(u16),
    Untagged,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TcpFlags {
    pub value: u8,
    pub mask: u8,
}

pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
    match std::fs::read_to_string(path) {
        Ok(text) => parse_str(&text, path),
        Err(error) => Err(ConfigErrors(vec![ConfigError {
            location: None,
            message: format!("{}: cannot read config: {error}", path.display()),
        }])),
    }
}

/// `path` names the file in messages; relative alias files resolve against its directory.
pub fn parse_str(text: &str, path: &Path) -> Result<Config, ConfigErrors> {
    validate::check(text, path)
}

pub const MAX_LB_SERVICES: usize = crate::abi::lb_limits::LB_MAX_SERVICES.0 as usize;
pub const MAX_LB_BACKENDS: usize = crate::abi::lb_limits::LB_MAX_BACKENDS_PER_SERVICE.0 as usize;
/// Largest (and default) Maglev table: Katran's size, a prime.
pub const MAX_LB_TABLE_SIZE: u32 = crate::abi::lb_limits::LB_RING_STRIDE.0;
pub const MAX_LB_WEIGHT: u32 = 1000;
pub const MAX_HEALTH_THRESHOLD: u32 = 100;

/// `loadbalancer`: services xdp_lb balances over their backends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LbConfig {
    /// `table_size`: slots of each service's Maglev table, a prime
    pub table_size: u32,
    /// file order
    pub services: Vec<LbService>,
}

impl Default for LbConfig {
    fn default() -> Self {
        LbConfig {
            table_size: MAX_LB_TABLE_SIZE,
            services: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LbService {
    pub id: String,
    pub location: Location,
    pub vip: std::net::IpAddr,
    pub port: u16,
    /// tcp or udp
    pub proto: Proto,
    pub backends: Vec<LbBackend>,
    pub health: Option<HealthCheck>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LbBackend {
    pub addr: SocketAddr,
    pub weight: u32,
}

/// `health`: a TCP connect to each backend every `interval`; `fall` failures in a row mark it
/// down, `rise` successes up again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HealthCheck {
    pub interval: std::time::Duration,
    pub timeout: std::time::Duration,
    pub rise: u32,
    pub fall: u32,
}

/// Whether `n` is a prime: Maglev's permutations visit every slot only for a prime size.
pub fn is_prime(n: u32) -> bool {
    n >= 2 && (2..).take_while(|d| d * d <= n).all(|d| n % d != 0)
}

/// `mirror: { to: IFACE, match: { services: [ID, ...] } }`
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MirrorConfig {
    pub to: String,
    /// `match.services`: only these services' traffic; None: every service's
    pub services: Option<Vec<String>>,
}

pub const MAX_CPUMAP_CPUS: u32 = crate::abi::lb_limits::LB_MAX_CPUS.0;
pub const MAX_CPUMAP_QUEUE: u32 = crate::abi::lb_limits::LB_MAX_CPU_QUEUE.0;

/// `cpumap: { cpus: [..], queue_size: N }`
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CpumapConfig {
    /// None: the CPUs of the first interface's NUMA node (all online CPUs without one)
    pub cpus: Option<Vec<u32>>,
    pub queue_size: u32,
}
