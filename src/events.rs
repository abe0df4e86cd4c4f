//! Decoding `struct packet_event` records into EVE-like JSON lines.

use std::net::{IpAddr, Ipv6Addr};

use serde::Serialize;

use crate::abi::{self, dns_query_event, event_action, event_kind, packet_event};

/// Converts the kernel's boot-time clock to wall-clock time.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    realtime_minus_boottime_ns: i128,
}

fn clock_ns(id: libc::clockid_t) -> i128 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: ts is a valid out-pointer; both clock ids exist on every supported kernel.
    unsafe { libc::clock_gettime(id, &mut ts) };
    i128::from(ts.tv_sec) * 1_000_000_000 + i128::from(ts.tv_nsec)
}

impl Clock {
    pub fn now() -> Clock {
        Clock {
            realtime_minus_boottime_ns: clock_ns(libc::CLOCK_REALTIME)
                - clock_ns(libc::CLOCK_BOOTTIME),
        }
    }

    pub fn rfc3339(&self, boot_ns: u64) -> String {
        let ns = (i128::from(boot_ns) + self.realtime_minus_boottime_ns).max(0);
        unix_rfc3339(ns)
    }
}

/// Nanoseconds since the Unix epoch as RFC 3339 UTC with microseconds.
pub fn unix_rfc3339(ns: i128) -> String {
    let ns = ns.max(0);
    let secs = (ns / 1_000_000_000) as i64;
    let frac = (ns % 1_000_000_000) as u32;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:06}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        frac / 1000
    )
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian (H. Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

pub fn addr(bytes: [u8; 16]) -> IpAddr {
    let v6 = Ipv6Addr::from(bytes);
    match v6.to_ipv4_mapped() {
        Some(v4) => IpAddr::V4(v4),
        None => IpAddr::V6(v6),
    }
}

pub fn proto_name(p: u8) -> String {
    match p {
        1 => "ICMP".into(),
        6 => "TCP".into(),
        17 => "UDP".into(),
        58 => "IPv6-ICMP".into(),
        n => n.to_string(),
    }
}

/// Interface names change rarely and events come by the thousand: one lookup per interface
/// every few seconds instead of one syscall per event.
fn cached_ifname(ifindex: u32) -> String {
    use std::cell::RefCell;
    use std::collections::HashMap;
    use std::time::{Duration, Instant};
    const TTL: Duration = Duration::from_secs(5);
    thread_local! {
        static CACHE: RefCell<HashMap<u32, (String, Instant)>> = RefCell::new(HashMap::new());
    }
    CACHE.with(|c| {
        let mut c = c.borrow_mut();
        match c.get(&ifindex) {
            Some((name, at)) if at.elapsed() < TTL => name.clone(),
            _ => {
                let name = ifname(ifindex).unwrap_or_else(|| ifindex.to_string());
                c.insert(ifindex, (name.clone(), Instant::now()));
                name
            }
        }
    })
}

pub fn ifname(ifindex: u32) -> Option<String> {
    let mut buf = [0u8; libc::IF_NAMESIZE];
    // SAFETY: buf has IF_NAMESIZE bytes as if_indextoname requires.
    let p = unsafe { libc::if_indextoname(ifindex, buf.as_mut_ptr().cast()) };
    if p.is_null() {
        return None;
    }
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    Some(String::from_utf8_lossy(&buf[..end]).into_owned())
}

#[derive(Debug, Serialize)]
pub struct EveEvent {
    pub timestamp: String,
    pub event_type: &'static str,
    pub src_ip: IpAddr,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub src_port: Option<u16>,
    pub dest_ip: IpAddr,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dest_port: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub icmp_type: Option<u8>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub icmp_code: Option<u8>,
    pub proto: String,
    pub action: &'static str,
    pub reason: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rule_id: Option<String>,
    pub in_iface: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub vlan: Option<u16>,
    pub cpu: u8,
    /// threat-intel events: the indicator that matched (the daemon fills it from its IOC set)
    #[serde(skip_serializing_if = "Option::is_none")]
    pub threatintel: Option<TiMatch>,
    /// DNS blocklist events: the query and what listed it
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dns: Option<DnsQuery>,
    /// IDS alerts: the signature (filled from the rule table of the event's generation)
    #[serde(skip_serializing_if = "Option::is_none")]
    pub alert: Option<IdsAlert>,
}

/// What a DNS blocklist event carries.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct DnsQuery {
    /// the queried name, lowercase, no trailing dot
    pub rrname: String,
    /// A, AAAA, ... or the number
    pub rrtype: String,
    /// the listed domain that matched (the name itself or one of its parent domains)
    pub suffix: String,
    /// which list: `config`, `runtime` or the feed's id
    pub list: String,
    pub action: &'static str,
}

/// The usual mnemonic of a QTYPE, else its number.
pub fn rrtype_name(t: u16) -> String {
    match t {
        1 => "A".into(),
        2 => "NS".into(),
        5 => "CNAME".into(),
        6 => "SOA".into(),
        12 => "PTR".into(),
        15 => "MX".into(),
        16 => "TXT".into(),
        28 => "AAAA".into(),
        33 => "SRV".into(),
        64 => "SVCB".into(),
        65 => "HTTPS".into(),
        255 => "ANY".into(),
        n => n.to_string(),
    }
}

/// What an IDS event matched, as Suricata's EVE `alert` object names it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct IdsAlert {
    /// `allowed` (alert rule) or `blocked` (drop rule)
    pub action: &'static str,
    /// the rule's sid, 0 when it has none
    pub signature_id: u32,
    pub rev: u32,
    /// the rule's msg, else its id
    pub signature: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub category: Option<String>,
    /// the config id, or `sid:N` for imported rules
    pub rule: String,
    /// where the rule was written (file:line)
    pub origin: String,
}

impl IdsAlert {
    pub fn of(rule: &crate::ids::IdsRule, action: &str) -> IdsAlert {
        IdsAlert {
            action: if action == "drop" {
                "blocked"
            } else {
                "allowed"
            },
            signature_id: rule.sid.unwrap_or(0),
            rev: rule.rev.unwrap_or(0),
            signature: rule.msg.clone().unwrap_or_else(|| rule.id.clone()),
            category: rule.classtype.clone(),
            rule: rule.id.clone(),
            origin: rule.origin.clone(),
        }
    }
}

/// What a threat-intel event matched.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct TiMatch {
    /// the listed network (a host address for exact indicators)
    pub ioc: String,
    /// which address of the packet it is: "src" or "dest"
    pub side: &'static str,
    pub feed: String,
    pub confidence: u8,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub category: Option<String>,
}

/// Which list an event's rule_id indexes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RuleSpace {
    /// firewall rules by rank
    Firewall,
    /// rate-limit policies by index
    RateLimit,
    /// the DDoS guards' bucket keys
    Guard,
    /// threat-intel feeds by id
    Feed,
    /// DNS blocklist feeds by index (the list minus one); config and runtime lists are named
    /// by the decoder itself
    DnsFeed,
    /// IDS rules by rank
    Ids,
}

/// `rule_name` resolves the kernel's (space, generation, index) to the operator's id.
pub fn decode(
    bytes: &[u8],
    clock: &Clock,
    rule_name: impl Fn(RuleSpace, u32, u16) -> Option<String>,
) -> Option<EveEvent> {
    let ev: packet_event = abi::read(bytes)?;
    let icmp = matches!(ev.protocol, 1 | 58);
    let has_ports = matches!(ev.protocol, 6 | 17);
    let (event_type, space, reason) = match event_kind(u32::from(ev.kind)) {
        event_kind::EVENT_FW_RULE => ("firewall", RuleSpace::Firewall, "rule"),
        event_kind::EVENT_FW_DEFAULT_POLICY => ("firewall", RuleSpace::Firewall, "default_policy"),
        event_kind::EVENT_FW_MALFORMED => ("firewall", RuleSpace::Firewall, "malformed"),
        event_kind::EVENT_RL_OVER_RATE => ("ratelimit", RuleSpace::RateLimit, "over_rate"),
        event_kind::EVENT_DDOS_ICMP => ("ddos", RuleSpace::Guard, "icmp_flood"),
        event_kind::EVENT_DDOS_AMP => ("ddos", RuleSpace::Guard, "amplification"),
        event_kind::EVENT_TI_MATCH => ("threatintel", RuleSpace::Feed, "ioc"),
        event_kind::EVENT_DNS_QUERY => ("dns", RuleSpace::DnsFeed, "blocklist"),
        event_kind::EVENT_IDS_ALERT => ("alert", RuleSpace::Ids, "signature"),
        _ => ("unknown", RuleSpace::Firewall, "unknown"),
    };
    let action = match event_action(u32::from(ev.action)) {
        event_action::EVENT_ACTION_PASS => "pass",
        event_action::EVENT_ACTION_DROP => "drop",
        event_action::EVENT_ACTION_WOULD_DROP => "would_drop",
        event_action::EVENT_ACTION_QUARANTINE => "quarantine",
        _ => "unknown",
    };
    let dns = (event_kind(u32::from(ev.kind)) == event_kind::EVENT_DNS_QUERY)
        .then(|| dns_query(bytes, action, &rule_name))
        .flatten();
    let rule_id = if event_kind(u32::from(ev.kind)) == event_kind::EVENT_DNS_QUERY {
        dns.as_ref().map(|d| d.list.clone())
    } else {
        abi::event_rule_parts(ev.rule_id)
            .map(|(gen, i)| rule_name(space, gen, i).unwrap_or_else(|| format!("#{i}")))
    };
    Some(EveEvent {
        timestamp: clock.rfc3339(ev.timestamp_ns),
        event_type,
        src_ip: addr(ev.src_addr),
        src_port: has_ports.then_some(ev.src_port),
        dest_ip: addr(ev.dst_addr),
        dest_port: has_ports.then_some(ev.dst_port),
        icmp_type: icmp.then_some(ev.src_port as u8),
        icmp_code: icmp.then_some(ev.dst_port as u8),
        proto: proto_name(ev.protocol),
        action,
        reason,
        rule_id,
        in_iface: cached_ifname(ev.ifindex),
        vlan: (ev.vlan_id != 0).then_some(ev.vlan_id),
        cpu: ev.cpu,
        threatintel: None,
        alert: None,
        dns,
    })
}

/// A wire-form name (as tc_dns parsed it: no compression) dotted and lowercased; bytes
/// outside printable ASCII are escaped as \DDD (RFC 4343 presentation format).
fn dotted(wire: &[u8]) -> String {
    let mut out = String::new();
    let mut pos = 0;
    while let Some(&len) = wire.get(pos) {
        let len = usize::from(len);
        if len == 0 || len > 63 {
            break;
        }
        if !out.is_empty() {
            out.push('.');
        }
        for &b in wire.iter().skip(pos + 1).take(len) {
            match b.to_ascii_lowercase() {
                c @ (b'!'..=b'~') if c != b'.' && c != b'\\' => out.push(c as char),
                c => out.push_str(&format!("\\{c:03}")),
            }
        }
        pos += 1 + len;
    }
    out
}

/// The DNS part of a `struct dns_query_event` record; None when the record is too short.
fn dns_query(
    bytes: &[u8],
    action: &'static str,
    rule_name: &impl Fn(RuleSpace, u32, u16) -> Option<String>,
) -> Option<DnsQuery> {
    if bytes.len() < std::mem::size_of::<dns_query_event>() {
        return None;
    }
    let ev: dns_query_event = abi::read(bytes)?;
    let wire: Vec<u8> = ev.name[..usize::from(ev.name_len).min(ev.name.len())]
        .iter()
        .map(|c| *c as u8)
        .collect();
    let rrname = dotted(&wire);
    let labels: Vec<&str> = rrname.split('.').collect();
    let keep = usize::from(ev.matched_labels).min(labels.len());
    let suffix = labels[labels.len() - keep..].join(".");
    let list = match ev.ev.rule_id {
        crate::maps::dns::LIST_CONFIG => "config".to_string(),
        crate::maps::dns::LIST_RUNTIME => "runtime".to_string(),
        n => rule_name(RuleSpace::DnsFeed, 0, n - 1).unwrap_or_else(|| format!("feed #{}", n - 1)),
    };
    Some(DnsQuery {
        rrname,
        rrtype: rrtype_name(ev.qtype),
        suffix,
        list,
        action,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_names_come_out_dotted_and_lowercase() {
        assert_eq!(
            dotted(&crate::dns::wire_name("WWW.Example.com")),
            "www.example.com"
        );
        assert_eq!(dotted(&[0]), "");
        assert_eq!(dotted(&[3, b'a', b'.', 0xff, 1, b'b', 0]), "a\\046\\255.b");
        // cut short: what is there
        assert_eq!(dotted(&[3, b'a', b'b']), "ab");
    }

    #[test]
    fn civil_dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(20_454), (2026, 1, 1));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
    }

    #[test]
    fn v4_mapped_addresses_decode_as_v4() {
        let mut b = [0u8; 16];
        b[10] = 0xff;
        b[11] = 0xff;
        b[12..].copy_from_slice(&[192, 0, 2, 1]);
        assert_eq!(addr(b), "192.0.2.1".parse::<IpAddr>().unwrap());
        let v6: Ipv6Addr = "2001:db8::1".parse().unwrap();
        assert_eq!(addr(v6.octets()), IpAddr::V6(v6));
    }
}
