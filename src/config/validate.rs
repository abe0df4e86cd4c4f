//! Turns the located YAML tree into a `Config`, collecting every error instead of stopping.

use std::collections::hash_map::Entry;
use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use ipnet::IpNet;

use super::netset::{parse_net, read_netset, NetList};
use super::yaml::{self, duplicate, Node, Pos, Scalar, Value};
use super::{
    Action, AddrMatch, Alias, AmpPort, Config, ConfigError, ConfigErrors, ConntrackConfig,
    CtStates, DdosConfig, FeedConfig, FeedFormat, FeedSource, FirewallConfig, FirewallMode,
    IcmpGuard, IpsConfig, Location, PortRange, Proto, RateAction, RateKey, RateLimitConfig,
    RatePolicy, Rule, TcMode, TcpFlags, ThreatIntelConfig, VlanMatch, XdpMode, CT_CLASS_NAMES,
    DEFAULT_AMP_PORTS, DEFAULT_METRICS_LISTEN, DEFAULT_PIN_ROOT, DEFAULT_PRIORITY,
    MAX_ALIAS_ENTRIES, MAX_ALLOWLIST_ENTRIES, MAX_AMP_PORTS, MAX_CT_DURATION, MAX_CT_TABLE_SIZE,
    MAX_DURATION, MAX_FEEDS, MAX_IPS_THRESHOLD, MAX_PRIORITY, MAX_RATE_POLICIES, MAX_RATE_PPS,
    MAX_RULES, MIN_CT_DURATION, MIN_CT_TABLE_SIZE, MIN_DURATION, MIN_URL_REFRESH,
};
use super::{DnsBlocklistConfig, DnsConfig, DnsFeedConfig};
use super::{ScrubConfig, MIN_SCRUB_MSS, MIN_SCRUB_TTL};
use crate::feeds::domains::{normalize_domain, DnsAction, DomainFormat};
use crate::feeds::TiAction;

mod lb;

const TOP_KEYS: &[&str] = &[
    "interfaces",
    "xdp_mode",
    "tc_mode",
    "pin_root",
    "metrics",
    "events",
    "firewall",
    "ratelimit",
    "ddos",
    "conntrack",
    "threatintel",
    "ips",
    "scrub",
    "dns",
    "loadbalancer",
    "mirror",
    "cpumap",
    "ids",
];
const IDS_KEYS: &[&str] = &["sampling", "rules", "suricata_rules"];
#[rustfmt::skip]
const IDS_RULE_KEYS: &[&str] = &[
    "id", "msg", "sid", "rev", "action", "proto", "src_port", "dst_port", "direction",
    "established", "content", "nocase", "offset", "depth", "contents",
];
const IDS_CONTENT_KEYS: &[&str] = &["content", "nocase", "offset", "depth"];
const IDS_ACTIONS: &[(&str, crate::ids::IdsAction)] = &[
    ("alert", crate::ids::IdsAction::Alert),
    ("drop", crate::ids::IdsAction::Drop),
];
const IDS_PROTOS: &[(&str, u8)] = &[("tcp", 6), ("udp", 17)];
const IDS_DIRECTIONS: &[(&str, crate::ids::Direction)] = &[
    ("to_server", crate::ids::Direction::ToServer),
    ("to_client", crate::ids::Direction::ToClient),
    ("both", crate::ids::Direction::Both),
];
const CONNTRACK_KEYS: &[&str] = &[
    "enabled",
    "table_size",
    "fast_path",
    "invalid",
    "sweep_interval",
    "timeouts",
];
/// `conntrack.timeouts` keys and the `enum ct_state` slots each one sets. UDP and ICMP are
/// named by what an operator sees rather than by state: `udp` is a flow with traffic in one
/// direction only, `udp_stream` one that got replies; ICMP echo needs no such distinction.
const CT_TIMEOUT_KEYS: &[(&str, &[usize])] = &[
    ("tcp_syn_sent", &[0]),
    ("tcp_syn_recv", &[1]),
    ("tcp_established", &[2]),
    ("tcp_fin_wait", &[3]),
    ("tcp_close_wait", &[4]),
    ("tcp_time_wait", &[5]),
    ("tcp_close", &[6]),
    ("udp", &[7]),
    ("udp_stream", &[8]),
    ("icmp", &[9, 10]),
];
const DDOS_KEYS: &[&str] = &["syn", "icmp", "amplification"];
const SYN_GUARD_KEYS: &[&str] = &["threshold_pps"];
const ICMP_GUARD_KEYS: &[&str] = &["rate", "burst", "max_payload"];
const AMP_KEYS: &[&str] = &["ports"];
const AMP_PORT_KEYS: &[&str] = &["port", "rate", "burst"];
const RATELIMIT_KEYS: &[&str] = &["policies"];
const POLICY_KEYS: &[&str] = &[
    "id", "src", "proto", "dst_port", "rate", "burst", "action", "key",
];
const RATE_ACTIONS: &[(&str, RateAction)] = &[
    ("drop", RateAction::Drop),
    ("pass-and-log", RateAction::PassAndLog),
];
const RATE_KEYS: &[(&str, RateKey)] = &[("source", RateKey::Source), ("policy", RateKey::Policy)];
const THREATINTEL_KEYS: &[&str] = &["action", "quarantine_vlan", "feeds"];
#[rustfmt::skip]
const FEED_KEYS: &[&str] = &[
    "id", "url", "path", "format", "field", "confidence_field", "category_field", "refresh",
    "action", "min_confidence",
];
/// Keys naming a column or JSON key, which line-per-entry formats do not have.
const FEED_FIELD_KEYS: &[&str] = &["field", "confidence_field", "category_field"];
const TI_ACTIONS: &[(&str, TiAction)] = &[
    ("alert", TiAction::Alert),
    ("drop", TiAction::Drop),
    ("quarantine", TiAction::Quarantine),
];
const FEED_FORMATS: &[(&str, FeedFormat)] = &[
    ("netset", FeedFormat::Netset),
    ("spamhaus", FeedFormat::Spamhaus),
    ("csv", FeedFormat::Csv),
    ("json", FeedFormat::Json),
    ("ndjson", FeedFormat::Ndjson),
];
const DNS_KEYS: &[&str] = &["blocklist"];
const DNS_BLOCKLIST_KEYS: &[&str] = &["action", "domains", "feeds"];
const DNS_FEED_KEYS: &[&str] = &["id", "url", "path", "format", "refresh", "action"];
const DNS_ACTIONS: &[(&str, DnsAction)] = &[("drop", DnsAction::Drop), ("alert", DnsAction::Alert)];
const DNS_FEED_FORMATS: &[(&str, DomainFormat)] = &[
    ("hosts", DomainFormat::Hosts),
    ("domains", DomainFormat::Domains),
];
/// Lists the kernel numbers: 0 the config's, 1.. the feeds', 0xfffe runtime blocks.
const MAX_DNS_FEEDS: usize = 1024;
const SCRUB_KEYS: &[&str] = &["min_ttl", "max_mss", "clear_df", "random_ip_id"];
const IPS_KEYS: &[&str] = &["threshold", "window", "block_for", "whitelist"];
const METRICS_KEYS: &[&str] = &["listen"];
const EVENTS_KEYS: &[&str] = &["path"];
const FIREWALL_KEYS: &[&str] = &[
    "mode",
    "default_policy",
    "malformed",
    "allowlist",
    "aliases",
    "rules",
];
const ALIAS_KEYS: &[&str] = &["file", "entries"];
#[rustfmt::skip]
const RULE_KEYS: &[&str] = &[
    "id", "action", "log", "priority", "src", "dst", "proto", "src_port", "dst_port", "vlan",
    "tcp_flags", "icmp_type", "icmp_code", "state",
];

const TC_MODES: &[(&str, TcMode)] = &[
    ("auto", TcMode::Auto),
    ("tcx", TcMode::Tcx),
    ("clsact", TcMode::Clsact),
];
const XDP_MODES: &[(&str, XdpMode)] = &[
    ("auto", XdpMode::Auto),
    ("native", XdpMode::Native),
    ("generic", XdpMode::Generic),
];
const FIREWALL_MODES: &[(&str, FirewallMode)] = &[
    ("enforce", FirewallMode::Enforce),
    ("monitor", FirewallMode::Monitor),
];
const ACTIONS: &[(&str, Action)] = &[("pass", Action::Pass), ("drop", Action::Drop)];
const PROTOS: &[(&str, Proto)] = &[
    ("tcp", Proto::Tcp),
    ("udp", Proto::Udp),
    ("icmp", Proto::Icmp),
    ("icmpv6", Proto::Icmpv6),
];

const MAX_INTERFACE_NAME: usize = 15;
const MAX_RULE_ID: usize = 64;
const MAX_VLAN_ID: u16 = 4094;

pub(super) fn check(text: &str, path: &Path) -> Result<Config, ConfigErrors> {
    let (root, yaml_errors) = yaml::parse(text);
    let mut checker = Checker {
        file: path,
        base_dir: path.parent().unwrap_or(Path::new("")),
        errors: Vec::new(),
        state_uses: Vec::new(),
    };
    let fatal = root.is_none() && !yaml_errors.is_empty();
    for error in yaml_errors {
        checker.error(error.pos, error.message);
    }
    if fatal {
        return Err(ConfigErrors(checker.errors));
    }
    let config = checker.config(root.as_ref());
    if checker.errors.is_empty() {
        return Ok(config);
    }
    // Reading order for `check`; errors inside alias files follow, in discovery order.
    let mut errors = checker.errors;
    errors.sort_by_key(|error| match &error.location {
        Some(location) if location.file == path => (false, location.line, location.col),
        _ => (true, 0, 0),
    });
    Err(ConfigErrors(errors))
}

#[derive(Default, Clone, Copy)]
struct Fields<'n> {
    entries: &'n [(Node, Node)],
}

impl<'n> Fields<'n> {
    fn get(&self, key: &str) -> Option<&'n Node> {
        self.entries
            .iter()
            .find(|(k, _)| k.key_text() == key)
            .map(|(_, value)| value)
    }

    /// The key node itself, for errors about the key rather than its value.
    fn key(&self, key: &str) -> Option<&'n Node> {
        self.entries
            .iter()
            .find(|(k, _)| k.key_text() == key)
            .map(|(k, _)| k)
    }

    /// Sections treat an explicit null like an absent key, so that a section whose contents
    /// are all commented out still means "defaults".
    fn section(&self, key: &str) -> Option<&'n Node> {
        self.get(key).filter(|node| !node.is_null())
    }
}

struct Checker<'p> {
    file: &'p Path,
    base_dir: &'p Path,
    errors: Vec<ConfigError>,
    /// Valid rules with `state`, checked against `conntrack` once the whole file is read:
    /// that section may come after `firewall`.
    state_uses: Vec<StateUse>,
}

struct StateUse {
    /// the rule's `state` key
    pos: Pos,
    id: String,
    action: Action,
    states: CtStates,
}

/// `conntrack.enabled` and `conntrack.fast_path` as configured (defaults when absent), None
/// when the value was invalid: that is reported already, and guessing it would add errors
/// about rules that may be fine.
#[derive(Clone, Copy)]
struct CtSwitches {
    enabled: Option<bool>,
    fast_path: Option<bool>,
}

fn lookup<T: Copy>(choices: &[(&str, T)], name: &str) -> Option<T> {
    choices
        .iter()
        .find(|(known, _)| *known == name)
        .map(|&(_, value)| value)
}

fn names<T>(choices: &[(&str, T)]) -> String {
    choices
        .iter()
        .map(|(name, _)| *name)
        .collect::<Vec<_>>()
        .join(" | ")
}

/// `Some("IPv4")` or `Some("IPv6")` when every network is of that family.
fn only_family<'a>(nets: impl IntoIterator<Item = &'a IpNet>) -> Option<&'static str> {
    let (mut v4, mut v6) = (false, false);
    for net in nets {
        match net {
            IpNet::V4(_) => v4 = true,
            IpNet::V6(_) => v6 = true,
        }
    }
    match (v4, v6) {
        (true, false) => Some("IPv4"),
        (false, true) => Some("IPv6"),
        _ => None,
    }
}

/// Whole seconds as an integer, or a string of digits and one unit (s, m, h, d). Values too
/// large for u64 saturate so that the range check, not the syntax, rejects them.
fn parse_duration(scalar: Scalar<'_>) -> Option<Duration> {
    let secs = match scalar {
        Scalar::Int(n) if n >= 0 => u64::try_from(n).unwrap_or(u64::MAX),
        Scalar::Str(text) => {
            let unit = text.chars().last()?;
            let digits = &text[..text.len() - unit.len_utf8()];
            let scale: u64 = match unit {
                's' => 1,
                'm' => 60,
                'h' => 3600,
                'd' => 86_400,
                _ => return None,
            };
            if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            digits
                .bytes()
                .fold(0u64, |n, b| {
                    n.saturating_mul(10).saturating_add(u64::from(b - b'0'))
                })
                .saturating_mul(scale)
        }
        _ => return None,
    };
    Some(Duration::from_secs(secs))
}

/// In the largest unit that divides it exactly, as an operator would write it back.
fn format_duration(duration: Duration) -> String {
    let secs = duration.as_secs();
    let (value, unit) = [(86_400, "d"), (3600, "h"), (60, "m")]
        .into_iter()
        .find(|&(scale, _)| secs != 0 && secs % scale == 0)
        .map_or((secs, "s"), |(scale, unit)| (secs / scale, unit));
    format!("{value}{unit}")
}

fn feed_format_name(format: FeedFormat) -> &'static str {
    FEED_FORMATS
        .iter()
        .find(|&&(_, known)| known == format)
        .map_or("", |&(name, _)| name)
}

fn parse_port_range(text: &str) -> Option<PortRange> {
    let (lo, hi) = text.split_once('-').unwrap_or((text, text));
    let (lo, hi) = (lo.trim().parse().ok()?, hi.trim().parse().ok()?);
    (lo <= hi).then_some(PortRange { lo, hi })
}

fn parse_tcp_flags(text: &str) -> Result<TcpFlags, String> {
    const LETTERS: &str = "FSRPAUEC";
    let bits = |part: &str| {
        part.chars().try_fold(0u8, |bits, letter| {
            LETTERS
                .find(letter.to_ascii_uppercase())
                .map(|bit| bits | (1 << bit))
                .ok_or_else(|| format!("unknown flag `{letter}` (known: F S R P A U E C)"))
        })
    };
    let (value, mask) = match text.split_once('/') {
        Some((set, mask)) => (bits(set)?, bits(mask)?),
        None => {
            let set = bits(text)?;
            (set, set)
        }
    };
    if value & !mask != 0 {
        return Err("flags required to be set must also appear in the mask after `/`".to_owned());
    }
    if mask == 0 {
        return Err("no flags given".to_owned());
    }
    Ok(TcpFlags { value, mask })
}

impl Checker<'_> {
    fn error(&mut self, pos: Pos, message: impl Into<String>) {
        let location = self.location(pos);
        self.errors.push(ConfigError {
            location: Some(location),
            message: message.into(),
        });
    }

    fn location(&self, pos: Pos) -> Location {
        Location {
            file: self.file.to_path_buf(),
            line: pos.line,
            col: pos.col,
        }
    }

    fn mismatch(&mut self, node: &Node, expected: &str) {
        if !matches!(node.value, Value::Reported) {
            self.error(node.pos, format!("expected {expected}, found {node}"));
        }
    }

    fn map_entries<'n>(&mut self, node: &'n Node, what: &str) -> Option<&'n [(Node, Node)]> {
        match &node.value {
            Value::Map(entries) => Some(entries),
            _ => {
                self.mismatch(node, &format!("{what} (a mapping)"));
                None
            }
        }
    }

    fn fields<'n>(&mut self, node: &'n Node, what: &str, allowed: &[&str]) -> Option<Fields<'n>> {
        let entries = self.map_entries(node, what)?;
        for (key, _) in entries {
            let name = key.key_text();
            if !allowed.contains(&name) {
                let allowed = allowed.join(", ");
                self.error(
                    key.pos,
                    format!("unknown key `{name}` in {what}; allowed keys: {allowed}"),
                );
            }
        }
        Some(Fields { entries })
    }

    fn required<'n>(&mut self, fields: Fields<'n>, key: &str, owner: &Node) -> Option<&'n Node> {
        let found = fields.get(key);
        if found.is_none() {
            self.error(owner.pos, format!("missing required key `{key}`"));
        }
        found
    }

    fn typed<'n, T>(
        &mut self,
        node: &'n Node,
        expected: &str,
        convert: impl FnOnce(Scalar<'n>) -> Option<T>,
    ) -> Option<T> {
        let converted = node.scalar().and_then(convert);
        if converted.is_none() {
            self.mismatch(node, expected);
        }
        converted
    }

    fn string<'n>(&mut self, node: &'n Node) -> Option<&'n str> {
        self.typed(node, "a string", |scalar| match scalar {
            Scalar::Str(text) => Some(text),
            _ => None,
        })
    }

    fn boolean(&mut self, node: &Node) -> Option<bool> {
        self.typed(node, "a boolean (true or false)", |scalar| match scalar {
            Scalar::Bool(value) => Some(value),
            _ => None,
        })
    }

    fn number<T>(&mut self, node: &Node, max: T) -> Option<T>
    where
        T: TryFrom<i128> + PartialOrd + fmt::Display + Copy,
    {
        self.typed(
            node,
            &format!("an integer in 0..={max}"),
            |scalar| match scalar {
                Scalar::Int(value) => T::try_from(value).ok().filter(|n| *n <= max),
                _ => None,
            },
        )
    }

    fn keyword<T: Copy>(&mut self, node: &Node, choices: &[(&str, T)]) -> Option<T> {
        self.typed(
            node,
            &format!("one of {}", names(choices)),
            |scalar| match scalar {
                Scalar::Str(name) => lookup(choices, name),
                _ => None,
            },
        )
    }

    /// One string or a list of strings, each with its own position.
    fn strings<'n>(&mut self, node: &'n Node) -> Vec<(Pos, &'n str)> {
        let items = match &node.value {
            Value::Seq(items) => items.as_slice(),
            Value::Scalar { .. } | Value::Reported => std::slice::from_ref(node),
            Value::Map(_) => {
                self.mismatch(node, "a string or a list of strings");
                return Vec::new();
            }
        };
        items
            .iter()
            .filter_map(|item| Some((item.pos, self.string(item)?)))
            .collect()
    }

    fn first_use<'n>(
        &mut self,
        seen: &mut HashMap<&'n str, Pos>,
        name: &'n str,
        pos: Pos,
        what: &str,
    ) -> bool {
        match seen.entry(name) {
            Entry::Occupied(first) => {
                let message = duplicate(what, name, *first.get());
                self.error(pos, message);
                false
            }
            Entry::Vacant(slot) => {
                slot.insert(pos);
                true
            }
        }
    }

    fn config(&mut self, root: Option<&Node>) -> Config {
        let fields = match root {
            Some(root) if !root.is_null() => self
                .fields(root, "the top level", TOP_KEYS)
                .unwrap_or_default(),
            _ => Fields::default(),
        };
        let mut config = Config {
            path: self.file.to_path_buf(),
            interfaces: fields
                .section("interfaces")
                .map(|n| self.interfaces(n))
                .unwrap_or_default(),
            xdp_mode: fields
                .get("xdp_mode")
                .and_then(|n| self.keyword(n, XDP_MODES))
                .unwrap_or(XdpMode::Auto),
            tc_mode: fields
                .get("tc_mode")
                .and_then(|n| self.keyword(n, TC_MODES))
                .unwrap_or(TcMode::Auto),
            pin_root: fields
                .get("pin_root")
                .and_then(|n| self.pin_root(n))
                .unwrap_or_else(|| PathBuf::from(DEFAULT_PIN_ROOT)),
            metrics_listen: match fields.section("metrics") {
                Some(n) => self.metrics(n),
                None => Some(DEFAULT_METRICS_LISTEN),
            },
            events_path: fields.section("events").and_then(|n| self.events(n)),
            firewall: fields
                .section("firewall")
                .map(|n| self.firewall(n))
                .unwrap_or_default(),
            ratelimit: RateLimitConfig::default(),
            ddos: fields
                .section("ddos")
                .map(|n| self.ddos(n))
                .unwrap_or_default(),
            conntrack: ConntrackConfig::default(),
            threatintel: fields
                .section("threatintel")
                .map(|n| self.threatintel(n))
                .unwrap_or_default(),
            ips: IpsConfig::default(),
            scrub: fields.section("scrub").map(|n| self.scrub(n)),
            dns: fields.section("dns").map(|n| self.dns(n)),
            loadbalancer: fields
                .section("loadbalancer")
                .map(|n| self.loadbalancer(n))
                .unwrap_or_default(),
            mirror: fields.section("mirror").and_then(|n| self.mirror(n)),
            cpumap: fields.section("cpumap").and_then(|n| self.cpumap(n)),
            ids: None,
        };
        if let Some(n) = fields.section("ratelimit") {
            config.ratelimit = self.ratelimit(n, &config.firewall.aliases);
        }
        if let (Some(n), Some(_)) = (fields.section("mirror"), &config.mirror) {
            self.mirror_services_exist(n, &config.loadbalancer);
        }
        if let Some(n) = fields.section("ips") {
            config.ips = self.ips(n, &config.firewall.aliases);
        }
        let switches = match fields.section("conntrack") {
            Some(n) => {
                let (conntrack, switches) = self.conntrack(n);
                config.conntrack = conntrack;
                switches
            }
            None => CtSwitches {
                enabled: Some(config.conntrack.enabled),
                fast_path: Some(config.conntrack.fast_path),
            },
        };
        self.state_consistency(switches);
        config.ids = fields
            .section("ids")
            .map(|n| self.ids(n, config.conntrack.enabled));
        config
    }

    fn ids(&mut self, node: &Node, conntrack: bool) -> crate::config::IdsConfig {
        let mut config = crate::config::IdsConfig::default();
        let Some(fields) = self.fields(node, "ids", IDS_KEYS) else {
            return config;
        };
        if let Some(n) = fields.get("sampling") {
            let value = match &n.value {
                Value::Scalar {
                    text,
                    quoted: false,
                } => text.parse::<f64>().ok().filter(|v| (0.0..=1.0).contains(v)),
                _ => None,
            };
            match value {
                Some(v) => config.sampling = v,
                None => self.mismatch(n, "a share of alerts reported, 0.0..=1.0"),
            }
        }
        if let Some(n) = fields.section("suricata_rules") {
            for (pos, text) in self.strings(n) {
                if text.is_empty() {
                    self.error(pos, "rule file path must not be empty");
                    continue;
                }
                config.suricata_rules.push(crate::ids::RuleFile {
                    path: self.base_dir.join(text),
                    location: self.location(pos),
                });
            }
        }
        if let Some(n) = fields.section("rules") {
            let Value::Seq(items) = &n.value else {
                self.mismatch(n, "a list of IDS rules");
                return config;
            };
            if items.len() > crate::ids::MAX_RULES {
                self.error(
                    n.pos,
                    format!(
                        "{} rules exceed the limit of {}",
                        items.len(),
                        crate::ids::MAX_RULES
                    ),
                );
            }
            let mut ids = HashMap::new();
            for item in items {
                if let Some(rule) = self.ids_rule(item, &mut ids, conntrack) {
                    config.rules.push(rule);
                }
            }
        }
        config
    }

    fn ids_rule<'n>(
        &mut self,
        node: &'n Node,
        ids: &mut HashMap<&'n str, Pos>,
        conntrack: bool,
    ) -> Option<crate::ids::IdsRule> {
        use crate::ids::{Content, Direction, IdsAction, IdsRule};
        let errors_before = self.errors.len();
        let fields = self.fields(node, "an IDS rule", IDS_RULE_KEYS)?;
        let id = self
            .required(fields, "id", node)
            .and_then(|n| self.identifier(n, ids, "IDS rule id"));
        let proto = self
            .required(fields, "proto", node)
            .and_then(|n| self.keyword(n, IDS_PROTOS));
        let port = |checker: &mut Self, key: &str| {
            fields
                .get(key)
                .and_then(|n| checker.port(n))
                .map(|r| vec![(r.lo, r.hi)])
        };
        let src_ports = port(self, "src_port");
        let dst_ports = port(self, "dst_port");
        let mut contents = Vec::new();
        if let Some(n) = fields.get("content") {
            contents.extend(self.ids_content(n, fields));
        } else {
            for key in ["nocase", "offset", "depth"] {
                if let Some(k) = fields.key(key) {
                    self.error(
                        k.pos,
                        format!("`{key}` modifies `content`, which is not set"),
                    );
                }
            }
        }
        if let Some(n) = fields.get("contents") {
            match &n.value {
                Value::Seq(items) => {
                    for item in items {
                        if let Some(f) = self.fields(item, "an IDS content", IDS_CONTENT_KEYS) {
                            match f.get("content") {
                                Some(c) => contents.extend(self.ids_content(c, f)),
                                None => self.error(item.pos, "missing required key `content`"),
                            }
                        }
                    }
                }
                _ => self.mismatch(n, "a list of contents"),
            }
        }
        if contents.len() > crate::ids::MAX_CONTENTS {
            self.error(
                node.pos,
                format!(
                    "{} contents exceed the limit of {}",
                    contents.len(),
                    crate::ids::MAX_CONTENTS
                ),
            );
        }
        let established = fields
            .get("established")
            .and_then(|n| self.boolean(n))
            .unwrap_or(false);
        if established && !conntrack {
            if let Some(k) = fields.key("established") {
                self.error(
                    k.pos,
                    "`established` needs conntrack.enabled: tc_ids takes the state from tc_conntrack",
                );
            }
        }
        let rule = IdsRule {
            id: id.unwrap_or_default(),
            sid: fields.get("sid").and_then(|n| self.number(n, u32::MAX)),
            rev: fields.get("rev").and_then(|n| self.number(n, u32::MAX)),
            msg: fields
                .get("msg")
                .and_then(|n| self.string(n))
                .map(str::to_owned),
            classtype: None,
            origin: self.location(node.pos).to_string(),
            action: fields
                .get("action")
                .and_then(|n| self.keyword(n, IDS_ACTIONS))
                .unwrap_or(IdsAction::Alert),
            proto: proto.unwrap_or(6),
            src_ports,
            dst_ports,
            direction: fields
                .get("direction")
                .and_then(|n| self.keyword(n, IDS_DIRECTIONS))
                .unwrap_or(Direction::ToServer),
            established,
            contents,
            imported: false,
        };
        if self.errors.len() != errors_before {
            return None;
        }
        if rule.src_ports.is_none() && rule.dst_ports.is_none() {
            self.error(
                node.pos,
                "an IDS rule needs `dst_port` or `src_port`: tc_ids indexes rules by port",
            );
            return None;
        }
        if let Err(why) = rule.placement() {
            self.error(node.pos, why);
            return None;
        }
        let _: &[Content] = &rule.contents;
        Some(rule)
    }

    /// `content` of a rule or a `contents` item, with the modifiers beside it.
    fn ids_content(&mut self, node: &Node, fields: Fields<'_>) -> Option<crate::ids::Content> {
        let text = self.string(node)?;
        let mut bytes = match crate::ids::parse_content_text(text) {
            Ok(b) => b,
            Err(why) => {
                self.error(node.pos, format!("content: {why}"));
                return None;
            }
        };
        let nocase = fields
            .get("nocase")
            .and_then(|n| self.boolean(n))
            .unwrap_or(false);
        if nocase {
            bytes.make_ascii_lowercase();
        }
        let content = crate::ids::Content {
            bytes,
            nocase,
            offset: fields
                .get("offset")
                .and_then(|n| self.number(n, u16::MAX))
                .unwrap_or(0),
            depth: fields
                .get("depth")
                .and_then(|n| self.number(n, u16::MAX))
                .unwrap_or(0),
        };
        if let Err(why) = crate::ids::check_content(&content) {
            self.error(node.pos, format!("content: {why}"));
            return None;
        }
        Some(content)
    }

    fn conntrack(&mut self, node: &Node) -> (ConntrackConfig, CtSwitches) {
        let mut config = ConntrackConfig::default();
        let Some(fields) = self.fields(node, "conntrack", CONNTRACK_KEYS) else {
            // Nothing is known about the section: do not judge the rules by it.
            let unknown = CtSwitches {
                enabled: None,
                fast_path: None,
            };
            return (config, unknown);
        };
        let switch = |checker: &mut Self, key: &str, default: bool| match fields.get(key) {
            None => Some(default),
            Some(n) => checker.boolean(n),
        };
        let switches = CtSwitches {
            enabled: switch(self, "enabled", config.enabled),
            fast_path: switch(self, "fast_path", config.fast_path),
        };
        config.enabled = switches.enabled.unwrap_or(config.enabled);
        config.fast_path = switches.fast_path.unwrap_or(config.fast_path);
        if let Some(n) = fields.get("table_size") {
            let expected = format!("an integer in {MIN_CT_TABLE_SIZE}..={MAX_CT_TABLE_SIZE}");
            let size = self.typed(n, &expected, |scalar| match scalar {
                Scalar::Int(value) => u32::try_from(value)
                    .ok()
                    .filter(|v| (MIN_CT_TABLE_SIZE..=MAX_CT_TABLE_SIZE).contains(v)),
                _ => None,
            });
            config.table_size = size.unwrap_or(config.table_size);
        }
        if let Some(action) = fields.get("invalid").and_then(|n| self.keyword(n, ACTIONS)) {
            config.invalid = action;
        }
        if let Some(n) = fields.get("sweep_interval") {
            config.sweep_interval = self
                .duration(n, "conntrack.sweep_interval")
                .unwrap_or(config.sweep_interval);
        }
        if let Some(n) = fields.section("timeouts") {
            self.ct_timeouts(n, &mut config.timeouts);
        }
        (config, switches)
    }

    /// Overrides the listed timeouts; the others keep nf_conntrack's defaults.
    fn ct_timeouts(&mut self, node: &Node, timeouts: &mut [Duration]) {
        let allowed: Vec<&str> = CT_TIMEOUT_KEYS.iter().map(|&(name, _)| name).collect();
        let Some(fields) = self.fields(node, "conntrack.timeouts", &allowed) else {
            return;
        };
        for &(name, states) in CT_TIMEOUT_KEYS {
            let Some(n) = fields.get(name) else {
                continue;
            };
            if let Some(timeout) = self.duration(n, &format!("conntrack.timeouts.{name}")) {
                for &state in states {
                    timeouts[state] = timeout;
                }
            }
        }
    }

    fn duration(&mut self, node: &Node, key: &str) -> Option<Duration> {
        self.duration_in(node, key, MIN_CT_DURATION, MAX_CT_DURATION)
    }

    fn duration_in(
        &mut self,
        node: &Node,
        key: &str,
        min: Duration,
        max: Duration,
    ) -> Option<Duration> {
        let expected = format!(
            "a duration for `{key}`: whole seconds (an integer) or a number with a unit s, m, h or d (\"30s\", \"5m\", \"2h\", \"5d\")"
        );
        let duration = self.typed(node, &expected, parse_duration)?;
        if !(min..=max).contains(&duration) {
            self.error(
                node.pos,
                format!(
                    "`{key}` must be from {} to {}, found {}",
                    format_duration(min),
                    format_duration(max),
                    format_duration(duration)
                ),
            );
            return None;
        }
        Some(duration)
    }

    /// Rules whose `state` the conntrack settings make meaningless: without the tracker every
    /// packet is NEW, and the fast path passes established and related packets before a drop
    /// rule could see them.
    fn state_consistency(&mut self, switches: CtSwitches) {
        let tracked = CtStates(CtStates::ESTABLISHED.0 | CtStates::RELATED.0);
        for StateUse {
            pos,
            id,
            action,
            states,
        } in std::mem::take(&mut self.state_uses)
        {
            if switches.enabled == Some(false) {
                self.error(
                    pos,
                    format!("rule `{id}` matches `state`, which needs conntrack.enabled: true"),
                );
            } else if switches.enabled == Some(true)
                && switches.fast_path == Some(true)
                && action == Action::Drop
                && states.intersects(tracked)
            {
                self.error(
                    pos,
                    format!(
                        "drop rule `{id}` matches state {states}, but established and related packets pass before any rule while conntrack.fast_path is true: set fast_path: false to drop them by rule"
                    ),
                );
            }
        }
    }

    fn ddos(&mut self, node: &Node) -> DdosConfig {
        let Some(fields) = self.fields(node, "ddos", DDOS_KEYS) else {
            return DdosConfig::default();
        };
        let icmp = fields.get("icmp").and_then(|n| {
            let f = self.fields(n, "ddos.icmp", ICMP_GUARD_KEYS)?;
            let rate = f
                .get("rate")
                .and_then(|n| self.positive(n, "rate"))
                .unwrap_or(100);
            Some(IcmpGuard {
                rate,
                burst: f
                    .get("burst")
                    .and_then(|n| self.positive(n, "burst"))
                    .unwrap_or(rate),
                max_payload: f
                    .get("max_payload")
                    .and_then(|n| self.number(n, 65535u32))
                    .unwrap_or(0),
            })
        });
        let amplification = match fields.get("amplification") {
            None => Vec::new(),
            Some(n) => self.amplification(n),
        };
        let syn_threshold_pps = fields.get("syn").and_then(|n| {
            let f = self.fields(n, "ddos.syn", SYN_GUARD_KEYS)?;
            let t = self.required(f, "threshold_pps", n)?;
            self.positive(t, "threshold_pps")
        });
        DdosConfig {
            icmp,
            amplification,
            syn_threshold_pps,
        }
    }

    /// A rate or burst: 1..=MAX_RATE_PPS.
    fn positive(&mut self, node: &Node, key: &str) -> Option<u64> {
        let v = self.number(node, MAX_RATE_PPS)?;
        if v == 0 {
            self.error(
                node.pos,
                format!("`{key}` must be at least 1 packet per second"),
            );
            return None;
        }
        Some(v)
    }

    /// `{}` or `{ ports: [...] }`; without `ports` the usual reflectors.
    fn amplification(&mut self, node: &Node) -> Vec<AmpPort> {
        let defaults = || {
            DEFAULT_AMP_PORTS
                .iter()
                .map(|&(port, rate)| AmpPort {
                    port,
                    rate,
                    burst: 2 * rate,
                })
                .collect()
        };
        if node.is_null() {
            return defaults();
        }
        let Some(fields) = self.fields(node, "ddos.amplification", AMP_KEYS) else {
            return Vec::new();
        };
        let Some(list) = fields.get("ports") else {
            return defaults();
        };
        let Value::Seq(items) = &list.value else {
            self.mismatch(list, "a list of { port, rate, burst }");
            return Vec::new();
        };
        if items.len() > MAX_AMP_PORTS {
            self.error(
                list.pos,
                format!(
                    "{} amplification ports exceed the limit of {MAX_AMP_PORTS}",
                    items.len()
                ),
            );
        }
        let mut seen = HashMap::new();
        let mut ports = Vec::new();
        for item in items {
            let Some(f) = self.fields(item, "an amplification port", AMP_PORT_KEYS) else {
                continue;
            };
            let port = self
                .required(f, "port", item)
                .and_then(|n| self.number(n, u16::MAX).map(|p| (p, n.pos)));
            let rate = self
                .required(f, "rate", item)
                .and_then(|n| self.positive(n, "rate"));
            let burst = f.get("burst").and_then(|n| self.positive(n, "burst"));
            if let (Some((port, pos)), Some(rate)) = (port, rate) {
                if let Some(first) = seen.insert(port, pos) {
                    self.error(
                        pos,
                        format!(
                            "port {port} is listed twice (first at line {}, column {})",
                            first.line, first.col
                        ),
                    );
                    continue;
                }
                ports.push(AmpPort {
                    port,
                    rate,
                    burst: burst.unwrap_or(2 * rate),
                });
            }
        }
        ports
    }

    /// `ratelimit.policies`; `src` may name the firewall's aliases.
    fn ratelimit(&mut self, node: &Node, aliases: &BTreeMap<String, Alias>) -> RateLimitConfig {
        let Some(fields) = self.fields(node, "ratelimit", RATELIMIT_KEYS) else {
            return RateLimitConfig::default();
        };
        let Some(list) = fields.section("policies") else {
            return RateLimitConfig::default();
        };
        let Value::Seq(items) = &list.value else {
            self.mismatch(list, "a list of policies");
            return RateLimitConfig::default();
        };
        if items.len() > MAX_RATE_POLICIES {
            self.error(
                list.pos,
                format!(
                    "{} rate-limit policies exceed the limit of {MAX_RATE_POLICIES}",
                    items.len()
                ),
            );
        }
        let mut ids = HashMap::new();
        let policies = items
            .iter()
            .filter_map(|item| self.rate_policy(item, aliases, &mut ids))
            .collect();
        RateLimitConfig { policies }
    }

    fn rate_policy<'n>(
        &mut self,
        node: &'n Node,
        aliases: &BTreeMap<String, Alias>,
        ids: &mut HashMap<&'n str, Pos>,
    ) -> Option<RatePolicy> {
        let errors_before = self.errors.len();
        let fields = self.fields(node, "a rate-limit policy", POLICY_KEYS)?;
        let id = self
            .required(fields, "id", node)
            .and_then(|n| self.rule_id(n, ids));
        let rate = self
            .required(fields, "rate", node)
            .and_then(|n| self.number(n, MAX_RATE_PPS));
        let burst = fields
            .get("burst")
            .and_then(|n| self.number(n, MAX_RATE_PPS));
        let policy = RatePolicy {
            id: id.unwrap_or_default(),
            location: self.location(node.pos),
            src: fields.get("src").and_then(|n| self.addr_match(n, aliases)),
            proto: fields.get("proto").and_then(|n| self.proto(n)),
            dst_port: fields.get("dst_port").and_then(|n| self.port(n)),
            rate: rate.unwrap_or(1),
            burst: burst.or(rate).unwrap_or(1),
            action: fields
                .get("action")
                .and_then(|n| self.keyword(n, RATE_ACTIONS))
                .unwrap_or(RateAction::Drop),
            key: fields
                .get("key")
                .and_then(|n| self.keyword(n, RATE_KEYS))
                .unwrap_or(RateKey::Source),
        };
        for (key, value) in [("rate", policy.rate), ("burst", policy.burst)] {
            if value == 0 {
                if let Some(n) = fields.get(key) {
                    self.error(
                        n.pos,
                        format!("`{key}` must be at least 1 packet per second"),
                    );
                }
            }
        }
        if let (Some(port), Some(proto)) = (fields.get("dst_port"), policy.proto) {
            if !matches!(proto, Proto::Tcp | Proto::Udp) {
                self.error(port.pos, "`dst_port` needs proto tcp or udp (or no proto)");
            }
        }
        (self.errors.len() == errors_before).then_some(policy)
    }

    fn threatintel(&mut self, node: &Node) -> ThreatIntelConfig {
        let Some(fields) = self.fields(node, "threatintel", THREATINTEL_KEYS) else {
            return ThreatIntelConfig::default();
        };
        let vlan_node = fields.get("quarantine_vlan");
        let quarantine_vlan = vlan_node.and_then(|n| {
            let expected = format!("a VLAN id 1..={MAX_VLAN_ID}");
            self.typed(n, &expected, |scalar| match scalar {
                Scalar::Int(id) => u16::try_from(id)
                    .ok()
                    .filter(|id| (1..=MAX_VLAN_ID).contains(id)),
                _ => None,
            })
        });
        // An invalid VLAN is reported already; "not set" on top of it would mislead.
        let vlan_set = vlan_node.is_some();
        let action = fields.get("action").and_then(|n| {
            let action = self.keyword(n, TI_ACTIONS)?;
            self.quarantine_needs_vlan(n, action, vlan_set);
            Some(action)
        });
        let feeds = fields
            .section("feeds")
            .map(|n| self.feeds(n, vlan_set))
            .unwrap_or_default();
        ThreatIntelConfig {
            action,
            quarantine_vlan,
            feeds,
        }
    }

    fn scrub(&mut self, node: &Node) -> ScrubConfig {
        let mut config = ScrubConfig::default();
        let Some(fields) = self.fields(node, "scrub", SCRUB_KEYS) else {
            return config;
        };
        config.min_ttl = fields.get("min_ttl").and_then(|n| {
            let expected = format!("a TTL in {MIN_SCRUB_TTL}..={}", u8::MAX);
            self.typed(n, &expected, |scalar| match scalar {
                Scalar::Int(v) => u8::try_from(v).ok().filter(|v| *v >= MIN_SCRUB_TTL),
                _ => None,
            })
        });
        config.max_mss = fields.get("max_mss").and_then(|n| {
            let expected = format!("an MSS in {MIN_SCRUB_MSS}..={}", u16::MAX);
            self.typed(n, &expected, |scalar| match scalar {
                Scalar::Int(v) => u16::try_from(v).ok().filter(|v| *v >= MIN_SCRUB_MSS),
                _ => None,
            })
        });
        if let Some(n) = fields.get("clear_df") {
            config.clear_df = self.boolean(n).unwrap_or(false);
        }
        if let Some(n) = fields.get("random_ip_id") {
            config.random_ip_id = self.boolean(n).unwrap_or(false);
        }
        config
    }

    fn dns(&mut self, node: &Node) -> DnsConfig {
        let Some(fields) = self.fields(node, "dns", DNS_KEYS) else {
            return DnsConfig::default();
        };
        DnsConfig {
            blocklist: fields
                .section("blocklist")
                .map(|n| self.dns_blocklist(n))
                .unwrap_or_default(),
        }
    }

    fn dns_blocklist(&mut self, node: &Node) -> DnsBlocklistConfig {
        let mut config = DnsBlocklistConfig::default();
        let Some(fields) = self.fields(node, "dns.blocklist", DNS_BLOCKLIST_KEYS) else {
            return config;
        };
        if let Some(action) = fields
            .get("action")
            .and_then(|n| self.keyword(n, DNS_ACTIONS))
        {
            config.action = action;
        }
        if let Some(n) = fields.section("domains") {
            let mut seen: HashMap<String, Pos> = HashMap::new();
            for (pos, text) in self.strings(n) {
                match normalize_domain(text) {
                    Ok(domain) => {
                        if let Some(first) = seen.get(&domain) {
                            let line = first.line;
                            self.error(pos, format!("{domain} is listed already (line {line})"));
                        } else {
                            seen.insert(domain.clone(), pos);
                            config.domains.push(domain);
                        }
                    }
                    Err(why) => self.error(pos, why),
                }
            }
        }
        if let Some(n) = fields.section("feeds") {
            let Value::Seq(items) = &n.value else {
                self.mismatch(n, "a list of feeds");
                return config;
            };
            if items.len() > MAX_DNS_FEEDS {
                self.error(
                    n.pos,
                    format!("{} feeds exceed the limit of {MAX_DNS_FEEDS}", items.len()),
                );
            }
            let mut ids = HashMap::new();
            config.feeds = items
                .iter()
                .filter_map(|item| self.dns_feed(item, &mut ids))
                .collect();
        }
        config
    }

    fn dns_feed<'n>(
        &mut self,
        node: &'n Node,
        ids: &mut HashMap<&'n str, Pos>,
    ) -> Option<DnsFeedConfig> {
        let errors_before = self.errors.len();
        let fields = self.fields(node, "a DNS feed", DNS_FEED_KEYS)?;
        let id = self
            .required(fields, "id", node)
            .and_then(|n| self.identifier(n, ids, "feed id"));
        let source = self.feed_source(fields, node);
        let format = self
            .required(fields, "format", node)
            .and_then(|n| self.keyword(n, DNS_FEED_FORMATS));
        let refresh = fields
            .get("refresh")
            .and_then(|n| self.feed_refresh(n, source.as_ref()));
        let action = fields
            .get("action")
            .and_then(|n| self.keyword(n, DNS_ACTIONS));
        if self.errors.len() != errors_before {
            return None;
        }
        Some(DnsFeedConfig {
            id: id?,
            location: self.location(node.pos),
            source: source?,
            format: format?,
            refresh,
            action,
        })
    }

    fn quarantine_needs_vlan(&mut self, node: &Node, action: TiAction, vlan_set: bool) {
        if action == TiAction::Quarantine && !vlan_set {
            self.error(
                node.pos,
                format!("action quarantine tags packets with `threatintel.quarantine_vlan`, which is not set (a VLAN id 1..={MAX_VLAN_ID})"),
            );
        }
    }

    fn feeds(&mut self, node: &Node, vlan_set: bool) -> Vec<FeedConfig> {
        let Value::Seq(items) = &node.value else {
            self.mismatch(node, "a list of feeds");
            return Vec::new();
        };
        if items.len() > MAX_FEEDS {
            self.error(
                node.pos,
                format!("{} feeds exceed the limit of {MAX_FEEDS}", items.len()),
            );
        }
        let mut ids = HashMap::new();
        items
            .iter()
            .filter_map(|item| self.feed(item, &mut ids, vlan_set))
            .collect()
    }

    fn feed<'n>(
        &mut self,
        node: &'n Node,
        ids: &mut HashMap<&'n str, Pos>,
        vlan_set: bool,
    ) -> Option<FeedConfig> {
        let errors_before = self.errors.len();
        let fields = self.fields(node, "a feed", FEED_KEYS)?;
        let id = self
            .required(fields, "id", node)
            .and_then(|n| self.identifier(n, ids, "feed id"));
        let source = self.feed_source(fields, node);
        let format = self
            .required(fields, "format", node)
            .and_then(|n| self.keyword(n, FEED_FORMATS));
        let mut names = [None, None, None];
        for (slot, key) in names.iter_mut().zip(FEED_FIELD_KEYS) {
            let Some(n) = fields.get(key) else {
                continue;
            };
            match (format, self.string(n)) {
                (Some(FeedFormat::Netset | FeedFormat::Spamhaus), Some(_)) => {
                    let format = format.map_or("", feed_format_name);
                    self.error(
                        n.pos,
                        format!("`{key}` does not apply to format {format}, which lists one address or network per line"),
                    );
                }
                (_, Some("")) => self.error(n.pos, format!("`{key}` must not be empty")),
                (_, Some(name)) => *slot = Some(name.to_owned()),
                (_, None) => {}
            }
        }
        let [field, confidence_field, category_field] = names;
        if let Some(format @ (FeedFormat::Csv | FeedFormat::Json | FeedFormat::Ndjson)) = format {
            if fields.get("field").is_none() {
                let what = match format {
                    FeedFormat::Csv => "the name of the column",
                    _ => "the key",
                };
                self.error(
                    node.pos,
                    format!(
                        "format {} needs `field`: {what} holding the address or network",
                        feed_format_name(format)
                    ),
                );
            }
        }
        let refresh = fields
            .get("refresh")
            .and_then(|n| self.feed_refresh(n, source.as_ref()));
        let action = fields.get("action").and_then(|n| {
            let action = self.keyword(n, TI_ACTIONS)?;
            self.quarantine_needs_vlan(n, action, vlan_set);
            Some(action)
        });
        let min_confidence = fields
            .get("min_confidence")
            .and_then(|n| self.number(n, 100u8))
            .unwrap_or(0);
        if self.errors.len() != errors_before {
            return None;
        }
        Some(FeedConfig {
            id: id?,
            location: self.location(node.pos),
            source: source?,
            format: format?,
            field,
            confidence_field,
            category_field,
            refresh,
            action,
            min_confidence,
        })
    }

    fn feed_url(&mut self, node: &Node) -> Option<String> {
        let text = self.string(node)?;
        let scheme = text.split_once("://").map_or("", |(scheme, _)| scheme);
        let problem = if !["http", "https"]
            .iter()
            .any(|web| scheme.eq_ignore_ascii_case(web))
        {
            Some(format!(
                "feed url must start with http:// or https://, found `{text}`"
            ))
        } else {
            match text.parse::<ureq::http::Uri>() {
                Err(error) => Some(format!("invalid URL `{text}`: {error}")),
                Ok(uri) if uri.host().is_none_or(str::is_empty) => {
                    Some(format!("feed url `{text}` has no host"))
                }
                Ok(_) => None,
            }
        };
        match problem {
            Some(message) => {
                self.error(node.pos, message);
                None
            }
            None => Some(text.to_owned()),
        }
    }
    /// A feed's `refresh`; URL feeds may not poll more often than MIN_URL_REFRESH.
    fn feed_refresh(
        &mut self,
        node: &Node,
        source: Option<&FeedSource>,
    ) -> Option<std::time::Duration> {
        let refresh = self.duration_in(node, "refresh", MIN_DURATION, MAX_DURATION)?;
        if matches!(source, Some(FeedSource::Url(_))) && refresh < MIN_URL_REFRESH {
            self.error(
                node.pos,
                format!(
                    "`refresh` of a URL feed must be at least {}, found {}: feed servers throttle or ban clients that poll more often",
                    format_duration(MIN_URL_REFRESH),
                    format_duration(refresh)
                ),
            );
            return None;
        }
        Some(refresh)
    }

    /// A feed's `url` or `path` (one of them).
    fn feed_source(&mut self, fields: Fields<'_>, node: &Node) -> Option<FeedSource> {
        match (fields.get("url"), fields.get("path")) {
            (Some(url), None) => self.feed_url(url).map(FeedSource::Url),
            (None, Some(path)) => self.feed_path(path).map(FeedSource::Path),
            (Some(_), Some(_)) => {
                if let Some(key) = fields.key("path") {
                    self.error(key.pos, "a feed has `url` or `path`, not both");
                }
                None
            }
            (None, None) => {
                self.error(
                    node.pos,
                    "a feed needs `url` (http:// or https://) or `path` (a file)",
                );
                None
            }
        }
    }

    /// Relative to the config file, like alias files. Not opened here: a feed file may be
    /// written by a downloader after the config is checked, and a missing one is a feed
    /// error the daemon reports and retries, not a reason to refuse the whole config.
    fn feed_path(&mut self, node: &Node) -> Option<PathBuf> {
        let text = self.string(node)?;
        if text.is_empty() {
            self.error(node.pos, "feed path must not be empty");
            return None;
        }
        Some(self.base_dir.join(text))
    }

    /// `ips`; `whitelist` may name the firewall's aliases.
    fn ips(&mut self, node: &Node, aliases: &BTreeMap<String, Alias>) -> IpsConfig {
        let mut config = IpsConfig::default();
        let Some(fields) = self.fields(node, "ips", IPS_KEYS) else {
            return config;
        };
        config.threshold = fields.get("threshold").and_then(|n| {
            let expected = format!("an integer in 1..={MAX_IPS_THRESHOLD}");
            self.typed(n, &expected, |scalar| match scalar {
                Scalar::Int(value) => u32::try_from(value)
                    .ok()
                    .filter(|v| (1..=MAX_IPS_THRESHOLD).contains(v)),
                _ => None,
            })
        });
        for (key, slot) in [
            ("window", &mut config.window),
            ("block_for", &mut config.block_for),
        ] {
            if let Some(n) = fields.get(key) {
                let key = format!("ips.{key}");
                if let Some(duration) = self.duration_in(n, &key, MIN_DURATION, MAX_DURATION) {
                    *slot = duration;
                }
            }
        }
        if let Some(n) = fields.section("whitelist") {
            let nets = self
                .addr_match(n, aliases)
                .map(|m| m.nets)
                .unwrap_or_default();
            if nets.len() > MAX_ALIAS_ENTRIES {
                self.error(
                    n.pos,
                    format!(
                        "ips.whitelist has {} entries after alias expansion; the limit is {MAX_ALIAS_ENTRIES}",
                        nets.len()
                    ),
                );
            }
            config.whitelist = nets;
        }
        config
    }

    /// `listen: ADDR:PORT`, or `off`.
    fn metrics(&mut self, node: &Node) -> Option<SocketAddr> {
        let fields = self.fields(node, "metrics", METRICS_KEYS)?;
        let Some(listen) = fields.get("listen") else {
            return Some(DEFAULT_METRICS_LISTEN);
        };
        let text = self.string(listen)?;
        if text == "off" {
            return None;
        }
        match text.parse::<SocketAddr>() {
            Ok(addr) => Some(addr),
            Err(_) => {
                self.error(
                    listen.pos,
                    format!("metrics.listen must be ADDRESS:PORT (e.g. 127.0.0.1:9669) or `off`, found `{text}`"),
                );
                None
            }
        }
    }

    /// `path: FILE` for JSON lines; stdout when absent.
    fn events(&mut self, node: &Node) -> Option<PathBuf> {
        let fields = self.fields(node, "events", EVENTS_KEYS)?;
        let path = fields.get("path")?;
        let text = self.string(path)?;
        let p = Path::new(text);
        if p.is_absolute() {
            Some(p.to_path_buf())
        } else {
            self.error(
                path.pos,
                format!("events.path must be an absolute path, found `{text}`"),
            );
            None
        }
    }

    fn interfaces(&mut self, node: &Node) -> Vec<String> {
        let mut seen = HashMap::new();
        let mut interfaces = Vec::new();
        for (pos, name) in self.strings(node) {
            let problem = if name.is_empty() || name.len() > MAX_INTERFACE_NAME {
                Some("must be 1 to 15 bytes long")
            } else if name.contains('/') {
                Some("must not contain `/`")
            } else if name.chars().any(char::is_whitespace) {
                Some("must not contain whitespace")
            } else {
                None
            };
            if let Some(problem) = problem {
                self.error(pos, format!("interface name `{name}` {problem}"));
            } else if self.first_use(&mut seen, name, pos, "interface") {
                interfaces.push(name.to_owned());
            }
        }
        interfaces
    }

    fn pin_root(&mut self, node: &Node) -> Option<PathBuf> {
        let path = Path::new(self.string(node)?);
        if path.is_absolute() {
            Some(path.to_path_buf())
        } else {
            self.error(
                node.pos,
                format!(
                    "pin_root must be an absolute path, found `{}`",
                    path.display()
                ),
            );
            None
        }
    }

    fn firewall(&mut self, node: &Node) -> FirewallConfig {
        let defaults = FirewallConfig::default();
        let Some(fields) = self.fields(node, "firewall", FIREWALL_KEYS) else {
            return defaults;
        };
        let aliases = fields
            .section("aliases")
            .map(|n| self.aliases(n))
            .unwrap_or_default();
        FirewallConfig {
            mode: fields
                .get("mode")
                .and_then(|n| self.keyword(n, FIREWALL_MODES))
                .unwrap_or(defaults.mode),
            default_policy: fields
                .get("default_policy")
                .and_then(|n| self.keyword(n, ACTIONS))
                .unwrap_or(defaults.default_policy),
            malformed: fields
                .get("malformed")
                .and_then(|n| self.keyword(n, ACTIONS))
                .unwrap_or(defaults.malformed),
            allowlist: fields
                .section("allowlist")
                .map(|n| self.allowlist(n, &aliases))
                .unwrap_or_default(),
            rules: fields
                .section("rules")
                .map(|n| self.rules(n, &aliases))
                .unwrap_or_default(),
            aliases,
        }
    }

    fn aliases(&mut self, node: &Node) -> BTreeMap<String, Alias> {
        let mut aliases = BTreeMap::new();
        for (key, value) in self.map_entries(node, "aliases").unwrap_or_default() {
            let name = key.key_text();
            let valid_name = !name.is_empty()
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c));
            if !valid_name {
                self.error(
                    key.pos,
                    format!("invalid alias name `{name}`: use letters, digits, `_`, `.` and `-`"),
                );
            }
            // Registered even when broken so that references to it do not add "unknown alias"
            // noise on top of the real error.
            let alias = Alias {
                name: name.to_owned(),
                entries: self.alias_members(name, value),
                location: self.location(key.pos),
            };
            aliases.insert(name.to_owned(), alias);
        }
        aliases
    }

    fn alias_members(&mut self, name: &str, node: &Node) -> Vec<IpNet> {
        let mut nets = NetList::default();
        let Some(fields) = self.fields(node, "an alias", ALIAS_KEYS) else {
            return Vec::new();
        };
        let (file, entries) = (fields.get("file"), fields.get("entries"));
        if file.is_none() && entries.is_none() {
            self.error(
                node.pos,
                format!("alias `{name}` needs `file` and/or `entries`"),
            );
        }
        if let Some(entries) = entries {
            for (pos, text) in self.strings(entries) {
                if text.starts_with('@') {
                    self.error(
                        pos,
                        format!("alias entries cannot reference other aliases (`{text}`)"),
                    );
                } else {
                    match parse_net(text) {
                        Ok(net) => nets.push(net),
                        Err(message) => self.error(pos, message),
                    }
                }
            }
            if nets.len() > MAX_ALIAS_ENTRIES {
                self.error(
                    entries.pos,
                    format!("more than {MAX_ALIAS_ENTRIES} entries"),
                );
            }
        }
        if let Some(file) = file {
            if let Some(relative) = self.string(file) {
                let path = self.base_dir.join(relative);
                if let Err(error) =
                    read_netset(&path, &mut nets, MAX_ALIAS_ENTRIES, &mut self.errors)
                {
                    self.error(
                        file.pos,
                        format!("cannot read alias file {}: {error}", path.display()),
                    );
                }
            }
        }
        nets.into_unique()
    }

    /// `None` when any part of the match is invalid, so that later consistency checks do not
    /// reason about a partial address set.
    fn addr_match(&mut self, node: &Node, aliases: &BTreeMap<String, Alias>) -> Option<AddrMatch> {
        let errors_before = self.errors.len();
        let mut nets = NetList::default();
        let mut names: Vec<String> = Vec::new();
        for (pos, text) in self.strings(node) {
            if let Some(name) = text.strip_prefix('@') {
                match aliases.get(name) {
                    Some(alias) => {
                        nets.extend(&alias.entries);
                        if !names.iter().any(|known| known == name) {
                            names.push(name.to_owned());
                        }
                    }
                    None => {
                        let known = aliases
                            .keys()
                            .map(String::as_str)
                            .collect::<Vec<_>>()
                            .join(", ");
                        let hint = if known.is_empty() {
                            "no aliases are defined".to_owned()
                        } else {
                            format!("defined: {known}")
                        };
                        self.error(pos, format!("unknown alias `{text}` ({hint})"));
                    }
                }
            } else {
                match parse_net(text) {
                    Ok(net) => nets.push(net),
                    Err(message) => self.error(pos, message),
                }
            }
        }
        (self.errors.len() == errors_before).then(|| AddrMatch {
            nets: nets.into_unique(),
            aliases: names,
        })
    }

    fn allowlist(&mut self, node: &Node, aliases: &BTreeMap<String, Alias>) -> Vec<IpNet> {
        let nets = self
            .addr_match(node, aliases)
            .map(|m| m.nets)
            .unwrap_or_default();
        if nets.len() > MAX_ALLOWLIST_ENTRIES {
            self.error(
                node.pos,
                format!(
                    "allowlist has {} entries after alias expansion; the limit is {MAX_ALLOWLIST_ENTRIES}",
                    nets.len()
                ),
            );
        }
        nets
    }

    fn rules(&mut self, node: &Node, aliases: &BTreeMap<String, Alias>) -> Vec<Rule> {
        let Value::Seq(items) = &node.value else {
            self.mismatch(node, "a list of rules");
            return Vec::new();
        };
        if items.len() > MAX_RULES {
            self.error(
                node.pos,
                format!("{} rules exceed the limit of {MAX_RULES}", items.len()),
            );
        }
        let mut ids = HashMap::new();
        items
            .iter()
            .filter_map(|item| self.rule(item, aliases, &mut ids))
            .collect()
    }

    fn rule<'n>(
        &mut self,
        node: &'n Node,
        aliases: &BTreeMap<String, Alias>,
        ids: &mut HashMap<&'n str, Pos>,
    ) -> Option<Rule> {
        let errors_before = self.errors.len();
        let fields = self.fields(node, "a rule", RULE_KEYS)?;
        let id = self
            .required(fields, "id", node)
            .and_then(|n| self.rule_id(n, ids));
        let action = self
            .required(fields, "action", node)
            .and_then(|n| self.keyword(n, ACTIONS));
        let address = |checker: &mut Self, key| {
            let node = fields.get(key)?;
            if matches!(&node.value, Value::Seq(items) if items.is_empty()) {
                checker.error(
                    node.pos,
                    format!("`{key}` must list at least one address or alias"),
                );
                return None;
            }
            checker.addr_match(node, aliases)
        };
        let rule = Rule {
            id: id.unwrap_or_default(),
            location: self.location(node.pos),
            action: action.unwrap_or(Action::Pass),
            log: fields
                .get("log")
                .and_then(|n| self.boolean(n))
                .unwrap_or(false),
            priority: fields
                .get("priority")
                .and_then(|n| self.number(n, MAX_PRIORITY))
                .unwrap_or(DEFAULT_PRIORITY),
            src: address(self, "src"),
            dst: address(self, "dst"),
            proto: fields.get("proto").and_then(|n| self.proto(n)),
            src_port: fields.get("src_port").and_then(|n| self.port(n)),
            dst_port: fields.get("dst_port").and_then(|n| self.port(n)),
            vlan: fields.get("vlan").and_then(|n| self.vlan(n)),
            tcp_flags: fields.get("tcp_flags").and_then(|n| self.tcp_flags(n)),
            icmp_type: fields
                .get("icmp_type")
                .and_then(|n| self.number(n, u8::MAX)),
            icmp_code: fields
                .get("icmp_code")
                .and_then(|n| self.number(n, u8::MAX)),
            state: fields.get("state").and_then(|n| self.states(n)),
        };
        // Consistency checks on a rule that already has errors would mostly echo them.
        if self.errors.len() != errors_before {
            return None;
        }
        self.rule_consistency(&rule, fields);
        if self.errors.len() != errors_before {
            return None;
        }
        if let (Some(states), Some(n)) = (rule.state, fields.key("state")) {
            self.state_uses.push(StateUse {
                pos: n.pos,
                id: rule.id.clone(),
                action: rule.action,
                states,
            });
        }
        Some(rule)
    }

    /// `state: NAME` or a list of names; bit `1 << enum ct_class` each.
    fn states(&mut self, node: &Node) -> Option<CtStates> {
        let known = CT_CLASS_NAMES.join(", ");
        if matches!(&node.value, Value::Seq(items) if items.is_empty()) {
            self.error(
                node.pos,
                format!("`state` must list at least one of {known}"),
            );
            return None;
        }
        let errors_before = self.errors.len();
        let mut seen = HashMap::new();
        let mut bits = 0u8;
        for (pos, name) in self.strings(node) {
            match CT_CLASS_NAMES.iter().position(|class| *class == name) {
                None => self.error(pos, format!("unknown state `{name}` (known: {known})")),
                Some(class) => {
                    if self.first_use(&mut seen, name, pos, "state") {
                        bits |= 1 << class;
                    }
                }
            }
        }
        (self.errors.len() == errors_before).then_some(CtStates(bits))
    }

    fn rule_id<'n>(&mut self, node: &'n Node, ids: &mut HashMap<&'n str, Pos>) -> Option<String> {
        self.identifier(node, ids, "rule id")
    }

    /// A unique name of 1 to MAX_RULE_ID characters that fits in logs, events and CLI
    /// arguments unquoted.
    fn identifier<'n>(
        &mut self,
        node: &'n Node,
        ids: &mut HashMap<&'n str, Pos>,
        what: &str,
    ) -> Option<String> {
        let id = self.string(node)?;
        let valid = id.len() <= MAX_RULE_ID
            && id
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "_.:-".contains(c));
        if id.is_empty() {
            self.error(node.pos, format!("{what} must not be empty"));
        } else if !valid {
            self.error(
                node.pos,
                format!("invalid {what} `{id}`: use 1 to {MAX_RULE_ID} letters, digits, `_`, `.`, `:` or `-`"),
            );
        } else if self.first_use(ids, id, node.pos, what) {
            return Some(id.to_owned());
        }
        None
    }

    fn proto(&mut self, node: &Node) -> Option<Proto> {
        let expected = format!("one of {} or a protocol number 0..=255", names(PROTOS));
        self.typed(node, &expected, |scalar| match scalar {
            Scalar::Str(name) => lookup(PROTOS, name),
            Scalar::Int(number) => u8::try_from(number).ok().map(Proto::from_number),
            _ => None,
        })
    }

    fn port(&mut self, node: &Node) -> Option<PortRange> {
        let expected = "a port 0..=65535 or a range \"N-M\" with N <= M";
        self.typed(node, expected, |scalar| match scalar {
            Scalar::Int(port) => u16::try_from(port)
                .ok()
                .map(|port| PortRange { lo: port, hi: port }),
            Scalar::Str(text) => parse_port_range(text),
            _ => None,
        })
    }

    fn vlan(&mut self, node: &Node) -> Option<VlanMatch> {
        let expected = format!("a VLAN id 0..={MAX_VLAN_ID} or \"untagged\"");
        self.typed(node, &expected, |scalar| match scalar {
            Scalar::Int(id) => u16::try_from(id)
                .ok()
                .filter(|id| *id <= MAX_VLAN_ID)
                .map(VlanMatch::Id),
            Scalar::Str("untagged") => Some(VlanMatch::Untagged),
            _ => None,
        })
    }

    fn tcp_flags(&mut self, node: &Node) -> Option<TcpFlags> {
        let text = self.string(node)?;
        parse_tcp_flags(text)
            .map_err(|reason| self.error(node.pos, format!("invalid tcp_flags `{text}`: {reason}")))
            .ok()
    }

    fn rule_consistency(&mut self, rule: &Rule, fields: Fields<'_>) {
        let side_family =
            |side: &Option<AddrMatch>| side.as_ref().and_then(|m| only_family(&m.nets));
        if let (Some(src), Some(dst)) = (side_family(&rule.src), side_family(&rule.dst)) {
            if src != dst {
                if let Some(node) = fields.get("dst") {
                    self.error(
                        node.pos,
                        format!(
                            "src is {src}-only but dst is {dst}-only: the rule can never match"
                        ),
                    );
                }
            }
        }
        let proto_name = rule
            .proto
            .map_or_else(String::new, |proto| proto.to_string());
        if !matches!(rule.proto, None | Some(Proto::Tcp | Proto::Udp)) {
            for key in ["src_port", "dst_port"] {
                if let Some(node) = fields.get(key) {
                    self.error(
                        node.pos,
                        format!("`{key}` needs proto tcp or udp, but proto is {proto_name}"),
                    );
                }
            }
        }
        if rule.proto != Some(Proto::Tcp) {
            if let Some(node) = fields.get("tcp_flags") {
                self.error(node.pos, "`tcp_flags` needs `proto: tcp`");
            }
        }
        if !matches!(rule.proto, Some(Proto::Icmp | Proto::Icmpv6)) {
            for key in ["icmp_type", "icmp_code"] {
                if let Some(node) = fields.get(key) {
                    self.error(
                        node.pos,
                        format!("`{key}` needs `proto: icmp` or `proto: icmpv6`"),
                    );
                }
            }
        }
        let addresses = rule.src.iter().chain(&rule.dst).flat_map(|m| &m.nets);
        let mismatch = match (rule.proto, only_family(addresses)) {
            (Some(Proto::Icmp), Some("IPv6")) => {
                Some("proto icmp never matches IPv6 addresses; use icmpv6")
            }
            (Some(Proto::Icmpv6), Some("IPv4")) => {
                Some("proto icmpv6 never matches IPv4 addresses; use icmp")
            }
            _ => None,
        };
        if let (Some(message), Some(node)) = (mismatch, fields.get("proto")) {
            self.error(node.pos, message);
        }
    }
}
