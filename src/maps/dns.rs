//! tc_dns's maps: the blocklist (domain key -> list and action), the names of runtime
//! blocks, the stage's settings and its per-CPU counters; and the domain key, computed the
//! way the kernel computes it (include/abi/dns.h).

use std::collections::HashMap;
use std::path::Path;

use anyhow::{bail, Context, Result};
use libbpf_rs::{MapCore, MapFlags, MapHandle, Object};

use super::{delete_keys, for_each_entry, open_pinned, percpu_sum_u64, put_all};
use crate::abi::{bytes_of, read};
pub use crate::abi::{dns_action, dns_blocked, dns_limits, dns_name, dns_settings, dns_stat};
use crate::feeds::domains::{normalize_domain, DnsAction};

/// Every map tc_dns owns, by the name it is pinned under.
pub const DNS_MAP_NAMES: [&str; 4] = [
    "dns_blocklist",
    "dns_runtime_names",
    "dns_settings",
    "dns_stats",
];

pub const DNS_STAT_COUNT: usize = dns_stat::DNS_STAT_COUNT.0 as usize;
pub const LIST_CONFIG: u16 = dns_limits::DNS_LIST_CONFIG.0 as u16;
pub const LIST_RUNTIME: u16 = dns_limits::DNS_LIST_RUNTIME.0 as u16;

/// Every dns_stats slot, in enum order.
pub const DNS_STATS: [dns_stat; DNS_STAT_COUNT] = [
    dns_stat::DNS_STAT_SEEN,
    dns_stat::DNS_STAT_QUERIES,
    dns_stat::DNS_STAT_BLOCKED,
    dns_stat::DNS_STAT_ALERTED,
    dns_stat::DNS_STAT_NOT_QUERY,
    dns_stat::DNS_STAT_MALFORMED,
    dns_stat::DNS_STAT_TRUNCATED,
    dns_stat::DNS_STAT_EVENTS_SENT,
    dns_stat::DNS_STAT_EVENTS_DROPPED,
];

pub fn stat_name(stat: dns_stat) -> &'static str {
    match stat {
        dns_stat::DNS_STAT_SEEN => "seen",
        dns_stat::DNS_STAT_QUERIES => "queries",
        dns_stat::DNS_STAT_BLOCKED => "blocked",
        dns_stat::DNS_STAT_ALERTED => "alerted",
        dns_stat::DNS_STAT_NOT_QUERY => "not_query",
        dns_stat::DNS_STAT_MALFORMED => "malformed",
        dns_stat::DNS_STAT_TRUNCATED => "truncated",
        dns_stat::DNS_STAT_EVENTS_SENT => "events_sent",
        dns_stat::DNS_STAT_EVENTS_DROPPED => "events_dropped",
        _ => "unknown",
    }
}

const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;

fn label_hash(label: &[u8]) -> u64 {
    label.iter().fold(FNV_OFFSET, |h, b| {
        (h ^ u64::from(b.to_ascii_lowercase())).wrapping_mul(FNV_PRIME)
    })
}

fn mix(k: u64, label: u64) -> u64 {
    let k = (k ^ label).wrapping_mul(FNV_PRIME);
    k ^ (k >> 32)
}

/// The keys of every suffix of a dotted name, shortest suffix first: (key, labels, suffix).
pub fn suffix_keys(name: &str) -> Vec<(u64, usize, &str)> {
    let mut out = Vec::new();
    let mut key = FNV_OFFSET;
    let mut end = name.len();
    let labels: Vec<&str> = name.split('.').collect();
    for (n, label) in labels.iter().rev().enumerate() {
        key = mix(key, label_hash(label.as_bytes()));
        let start = end - label.len();
        out.push((key, n + 1, &name[start..]));
        end = start.saturating_sub(1);
    }
    out
}

/// The blocklist key of a normalised domain (include/abi/dns.h).
pub fn domain_key(domain: &str) -> u64 {
    suffix_keys(domain).last().map_or(FNV_OFFSET, |k| k.0)
}

/// What the daemon wants in the kernel: every domain of the config and the feeds with its
/// list (`LIST_CONFIG` or 1 + feed index) and action. The first list naming a domain keeps it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Blocklist {
    pub domains: HashMap<String, (u16, DnsAction)>,
}

impl Blocklist {
    pub fn add(&mut self, domain: &str, list: u16, action: DnsAction) {
        self.domains
            .entry(domain.to_string())
            .or_insert((list, action));
    }

    pub fn len(&self) -> usize {
        self.domains.len()
    }

    pub fn is_empty(&self) -> bool {
        self.domains.is_empty()
    }
}

pub fn blocked_of(domain: &str, list: u16, action: DnsAction) -> dns_blocked {
    dns_blocked {
        list,
        action: match action {
            DnsAction::Alert => dns_action::DNS_ACTION_ALERT.0 as u8,
            DnsAction::Drop => dns_action::DNS_ACTION_DROP.0 as u8,
        },
        labels: domain.split('.').count() as u8,
        ..Default::default()
    }
}

pub fn action_of(b: &dns_blocked) -> DnsAction {
    if u32::from(b.action) == dns_action::DNS_ACTION_ALERT.0 {
        DnsAction::Alert
    } else {
        DnsAction::Drop
    }
}

/// What a sync changed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SyncReport {
    pub entries: usize,
    pub written: usize,
    pub removed: usize,
    /// runtime blocks left as they are
    pub runtime: usize,
}

/// The listed suffix that blocks a name.
#[derive(Debug, Clone)]
pub struct Match {
    pub suffix: String,
    pub labels: usize,
    pub entry: dns_blocked,
}

pub struct DnsMaps {
    blocklist: MapHandle,
    names: MapHandle,
    settings: MapHandle,
    stats: MapHandle,
}

fn name_value(domain: &str) -> dns_name {
    let mut v = dns_name::default();
    for (d, s) in v.name.iter_mut().zip(domain.bytes()) {
        *d = s as _;
    }
    v
}

fn name_text(v: &dns_name) -> String {
    let bytes: Vec<u8> = v
        .name
        .iter()
        .map(|c| *c as u8)
        .take_while(|c| *c != 0)
        .collect();
    String::from_utf8_lossy(&bytes).into_owned()
}

impl DnsMaps {
    pub fn from_object(obj: &Object) -> Result<Self> {
        let map = |name: &str| -> Result<MapHandle> {
            let m = obj
                .maps()
                .find(|m| m.name() == name)
                .with_context(|| format!("the tc_dns object has no map {name}"))?;
            MapHandle::try_from(&m).with_context(|| format!("duplicating map {name}"))
        };
        Ok(DnsMaps {
            blocklist: map("dns_blocklist")?,
            names: map("dns_runtime_names")?,
            settings: map("dns_settings")?,
            stats: map("dns_stats")?,
        })
    }

    pub fn from_pins(pin_root: &Path) -> Result<Self> {
        Ok(DnsMaps {
            blocklist: open_pinned(pin_root, "dns_blocklist")?,
            names: open_pinned(pin_root, "dns_runtime_names")?,
            settings: open_pinned(pin_root, "dns_settings")?,
            stats: open_pinned(pin_root, "dns_stats")?,
        })
    }

    /// Turns the stage's lookups on or off; the daemon fills or empties its TC slot alike.
    pub fn set_enabled(&self, enabled: bool) -> Result<()> {
        let s = dns_settings {
            flags: if enabled {
                crate::abi::dns_settings_flags::DNS_SET_ENABLED.0
            } else {
                0
            },
            ..Default::default()
        };
        self.settings
            .update(&0u32.to_ne_bytes(), bytes_of(&s), MapFlags::ANY)
            .context("writing dns_settings")
    }

    pub fn enabled(&self) -> Result<bool> {
        let v = self
            .settings
            .lookup(&0u32.to_ne_bytes(), MapFlags::ANY)
            .context("reading dns_settings")?
            .unwrap_or_default();
        let s: dns_settings = read(&v).unwrap_or_default();
        Ok(s.flags & crate::abi::dns_settings_flags::DNS_SET_ENABLED.0 != 0)
    }

    /// Every (key, entry) in the kernel.
    pub fn entries(&self) -> Result<Vec<(u64, dns_blocked)>> {
        let mut out = Vec::new();
        for_each_entry(&self.blocklist, |k, v| {
            if let (Ok(k), Some(v)) = (<[u8; 8]>::try_from(k), read::<dns_blocked>(v)) {
                out.push((u64::from_ne_bytes(k), v));
            }
        })?;
        Ok(out)
    }

    /// Makes the kernel hold exactly `want` plus the runtime blocks: new and changed entries
    /// are written before stale ones are removed, so a domain in both the old and the new set
    /// is never let through meanwhile. A runtime block of a domain a list also names stays a
    /// runtime block.
    pub fn sync(&self, want: &Blocklist) -> Result<SyncReport> {
        let installed: HashMap<u64, dns_blocked> = self.entries()?.into_iter().collect();
        let mut report = SyncReport {
            runtime: installed
                .values()
                .filter(|b| b.list == LIST_RUNTIME)
                .count(),
            ..Default::default()
        };
        let mut wanted = HashMap::with_capacity(want.len());
        let mut writes = Vec::new();
        for (domain, (list, action)) in &want.domains {
            let key = domain_key(domain);
            let value = blocked_of(domain, *list, *action);
            wanted.insert(key, ());
            match installed.get(&key) {
                Some(old) if old.list == LIST_RUNTIME => continue,
                Some(old) if bytes_of(old) == bytes_of(&value) => continue,
                _ => writes.push((key.to_ne_bytes().to_vec(), bytes_of(&value).to_vec())),
            }
        }
        put_all(&self.blocklist, &writes).context("writing dns_blocklist")?;
        let stale: Vec<Vec<u8>> = installed
            .iter()
            .filter(|(k, b)| b.list != LIST_RUNTIME && !wanted.contains_key(k))
            .map(|(k, _)| k.to_ne_bytes().to_vec())
            .collect();
        delete_keys(&self.blocklist, &stale).context("removing from dns_blocklist")?;
        report.written = writes.len();
        report.removed = stale.len();
        report.entries = wanted
            .keys()
            .filter(|k| installed.get(k).is_none_or(|b| b.list != LIST_RUNTIME))
            .count()
            + report.runtime;
        Ok(report)
    }

    /// Blocks `domain` (and its subdomains) until `unblock`: the entry survives refreshes of
    /// the lists. Returns the normalised name.
    pub fn block(&self, domain: &str, action: DnsAction) -> Result<String> {
        let domain = normalize_domain(domain).map_err(anyhow::Error::msg)?;
        let key = domain_key(&domain).to_ne_bytes();
        self.names
            .update(&key, bytes_of(&name_value(&domain)), MapFlags::ANY)
            .context("writing dns_runtime_names")?;
        let value = blocked_of(&domain, LIST_RUNTIME, action);
        self.blocklist
            .update(&key, bytes_of(&value), MapFlags::ANY)
            .context("writing dns_blocklist")?;
        Ok(domain)
    }

    /// Lifts a runtime block of exactly `domain`. Ok(false): no runtime block of it. A
    /// domain the config or a feed lists cannot be unblocked here: the next refresh would
    /// restore it.
    pub fn unblock(&self, domain: &str) -> Result<bool> {
        let domain = normalize_domain(domain).map_err(anyhow::Error::msg)?;
        let key = domain_key(&domain).to_ne_bytes();
        let entry = self
            .blocklist
            .lookup(&key, MapFlags::ANY)
            .context("reading dns_blocklist")?
            .and_then(|v| read::<dns_blocked>(&v));
        match entry {
            Some(b) if b.list == LIST_RUNTIME => {
                self.blocklist
                    .delete(&key)
                    .context("deleting from dns_blocklist")?;
                let _ = self.names.delete(&key);
                Ok(true)
            }
            Some(b) => bail!(
                "{domain} is listed by {}; remove it there (a runtime unblock would not outlive the next refresh)",
                if b.list == LIST_CONFIG {
                    "dns.blocklist.domains".to_string()
                } else {
                    format!("feed #{}", b.list - 1)
                }
            ),
            None => Ok(false),
        }
    }

    /// The runtime blocks: (name, entry).
    pub fn runtime(&self) -> Result<Vec<(String, dns_blocked)>> {
        let entries: HashMap<u64, dns_blocked> = self.entries()?.into_iter().collect();
        let mut out = Vec::new();
        for_each_entry(&self.names, |k, v| {
            let (Ok(k), Some(v)) = (<[u8; 8]>::try_from(k), read::<dns_name>(v)) else {
                return;
            };
            if let Some(b) = entries.get(&u64::from_ne_bytes(k)) {
                out.push((name_text(&v), *b));
            }
        })?;
        out.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(out)
    }

    /// The listed suffix of `name` the kernel would match first (the shortest), if any.
    pub fn check(&self, name: &str) -> Result<Option<Match>> {
        let name = normalize_domain(name).map_err(anyhow::Error::msg)?;
        for (key, labels, suffix) in suffix_keys(&name) {
            if let Some(v) = self
                .blocklist
                .lookup(&key.to_ne_bytes(), MapFlags::ANY)
                .context("reading dns_blocklist")?
            {
                if let Some(entry) = read::<dns_blocked>(&v) {
                    return Ok(Some(Match {
                        suffix: suffix.to_string(),
                        labels,
                        entry,
                    }));
                }
            }
        }
        Ok(None)
    }

    pub fn stats(&self) -> Result<[u64; DNS_STAT_COUNT]> {
        let mut out = [0; DNS_STAT_COUNT];
        for (slot, v) in out.iter_mut().enumerate() {
            *v = percpu_sum_u64(&self.stats, slot as u32)?;
        }
        Ok(out)
    }
}

/// One list as the daemon last saw it, for `dns list`.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct DnsListStatus {
    /// the kernel's dns_blocked.list
    pub list: u16,
    pub id: String,
    pub source: String,
    pub domains: u64,
    pub bad_lines: u64,
    /// `source:line: why` of the first bad line of the body in force
    pub first_bad_line: Option<String>,
    pub last_refresh: Option<u64>,
    pub last_error: Option<String>,
    pub errors: u64,
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct DnsStatusFile {
    pub pid: u32,
    pub updated: u64,
    pub lists: Vec<DnsListStatus>,
}

/// /run/ebpfsentinel/<pin root mangled>-dns.json, next to the daemon's state file.
pub fn dns_status_path(pin_root: &Path) -> std::path::PathBuf {
    crate::state::side_file_path(pin_root, "dns")
}

pub fn read_dns_status(pin_root: &Path) -> Option<DnsStatusFile> {
    crate::state::read_side_file(&dns_status_path(pin_root))
}

pub fn write_dns_status(pin_root: &Path, file: &DnsStatusFile) -> Result<()> {
    crate::state::write_json_atomically(&dns_status_path(pin_root), file)
}

/// The name of a list number given what the daemon wrote, if anything.
pub fn list_name(file: Option<&DnsStatusFile>, list: u16) -> String {
    match list {
        LIST_CONFIG => "config".into(),
        LIST_RUNTIME => "runtime".into(),
        n => file
            .and_then(|f| f.lists.iter().find(|l| l.list == n))
            .map(|l| l.id.clone())
            .unwrap_or_else(|| format!("feed #{}", n - 1)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suffix_keys_are_the_keys_of_the_suffixes() {
        let keys = suffix_keys("a.b.example.com");
        let suffixes: Vec<&str> = keys.iter().map(|k| k.2).collect();
        assert_eq!(
            suffixes,
            ["com", "example.com", "b.example.com", "a.b.example.com"]
        );
        for (key, labels, suffix) in &keys {
            assert_eq!(*key, domain_key(suffix));
            assert_eq!(*labels, suffix.split('.').count());
        }
        assert_ne!(domain_key("badexample.com"), domain_key("example.com"));
        assert!(!suffix_keys("badexample.com")
            .iter()
            .any(|k| k.0 == domain_key("example.com")));
        // labels are hashed apart: moving a dot changes the key
        assert_ne!(domain_key("ab.c"), domain_key("a.bc"));
        assert_eq!(domain_key("Example.COM"), domain_key("example.com"));
    }

    #[test]
    fn entry_values() {
        let b = blocked_of("ads.example.com", 3, DnsAction::Alert);
        assert_eq!((b.list, b.labels), (3, 3));
        assert_eq!(action_of(&b), DnsAction::Alert);
        assert_eq!(
            action_of(&blocked_of("x", LIST_RUNTIME, DnsAction::Drop)),
            DnsAction::Drop
        );
        assert_eq!(name_text(&name_value("a.example")), "a.example");
    }
}
