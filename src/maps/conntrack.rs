//! The connection table tc_conntrack keeps on both TC hooks and xdp_firewall reads: its
//! settings, its counters, and its entries decoded into flows oriented by who opened them.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::Path;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use anyhow::{Context, Result};
use ipnet::IpNet;
use libbpf_rs::{ErrorKind, MapCore, MapFlags, MapHandle, Object};

use super::{open_pinned, percpu_sum_u64};
use crate::abi::{
    self, bytes_of, ct_dir, ct_entry, ct_entry_flags, ct_key, ct_settings, ct_stat, ct_state,
    fw_family,
};
pub use crate::abi::{CT_STATE_COUNT, CT_STAT_COUNT};
use crate::config::{Action, ConntrackConfig};

/// Every conntrack map, by the name it is pinned under.
pub const CT_MAP_NAMES: [&str; 3] = ["ct_table", "ct_settings", "ct_stats"];

/// The names `--state` accepts and [`CtState::name`] gives: TCP's states, and `new` and
/// `established`, which UDP and ICMP share with TCP's established.
pub const STATE_NAMES: [&str; 8] = [
    "syn_sent",
    "syn_recv",
    "established",
    "fin_wait",
    "close_wait",
    "time_wait",
    "close",
    "new",
];

/// An entry's `enum ct_state`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CtState(pub u8);

impl CtState {
    pub fn all() -> impl Iterator<Item = CtState> {
        (0..CT_STATE_COUNT as u8).map(CtState)
    }

    /// Its slot in the timeout table, None for a value the kernel does not define.
    pub fn index(self) -> Option<usize> {
        let i = usize::from(self.0);
        (i < CT_STATE_COUNT).then_some(i)
    }

    /// One of [`STATE_NAMES`], or "unknown".
    pub fn name(self) -> &'static str {
        match ct_state(u32::from(self.0)) {
            ct_state::CT_TCP_SYN_SENT => "syn_sent",
            ct_state::CT_TCP_SYN_RECV => "syn_recv",
            ct_state::CT_TCP_ESTABLISHED
            | ct_state::CT_UDP_ESTABLISHED
            | ct_state::CT_ICMP_ESTABLISHED => "established",
            ct_state::CT_TCP_FIN_WAIT => "fin_wait",
            ct_state::CT_TCP_CLOSE_WAIT => "close_wait",
            ct_state::CT_TCP_TIME_WAIT => "time_wait",
            ct_state::CT_TCP_CLOSED => "close",
            ct_state::CT_UDP_NEW | ct_state::CT_ICMP_NEW => "new",
            _ => "unknown",
        }
    }

    /// The protocol family the state belongs to: "tcp", "udp" or "icmp" (ICMPv6 included).
    pub fn protocol(self) -> &'static str {
        match ct_state(u32::from(self.0)) {
            ct_state::CT_UDP_NEW | ct_state::CT_UDP_ESTABLISHED => "udp",
            ct_state::CT_ICMP_NEW | ct_state::CT_ICMP_ESTABLISHED => "icmp",
            s if s.0 < ct_state::CT_UDP_NEW.0 => "tcp",
            _ => "unknown",
        }
    }
}

/// Packets and bytes one side of a flow sent.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    pub packets: u64,
    pub bytes: u64,
}

/// One entry of the table. `src` is the originator (who sent the first packet the tracker
/// saw), `dst` the responder; for ICMP echo both ports are the echo identifier.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Flow {
    pub proto: u8,
    pub src: IpAddr,
    pub src_port: u16,
    pub dst: IpAddr,
    pub dst_port: u16,
    pub state: CtState,
    pub seen_reply: bool,
    /// what the originator sent
    pub orig: Counts,
    /// what the responder sent
    pub reply: Counts,
    pub age: Duration,
    pub idle: Duration,
    /// the local socket's cookie, 0 until a packet with a socket passed
    pub socket_cookie: u64,
    /// the interface the first packet was seen on
    pub ifindex: u32,
}

impl Flow {
    /// Whether the ports are ports (TCP, UDP) rather than an ICMP echo identifier.
    pub fn has_ports(&self) -> bool {
        matches!(self.proto, 6 | 17)
    }
}

/// An address of a key: IPv4 sits in the first 4 bytes in network order.
fn key_addr(family: u8, bytes: &[u8; 16]) -> Option<IpAddr> {
    match fw_family(u32::from(family)) {
        fw_family::FW_FAMILY_V4 => Some(IpAddr::V4(Ipv4Addr::new(
            bytes[0], bytes[1], bytes[2], bytes[3],
        ))),
        fw_family::FW_FAMILY_V6 => Some(IpAddr::V6(Ipv6Addr::from(*bytes))),
        _ => None,
    }
}

/// A table entry as a flow, `now_ns` on the clock of bpf_ktime_get_ns; None for a family the
/// kernel does not write.
pub fn decode(key: &ct_key, entry: &ct_entry, now_ns: u64) -> Option<Flow> {
    let lo = (key_addr(key.family, &key.addr_lo)?, key.port_lo);
    let hi = (key_addr(key.family, &key.addr_hi)?, key.port_hi);
    let origin_hi = u32::from(entry.flags) & ct_entry_flags::CT_F_ORIGIN_HI.0 != 0;
    let ((src, src_port), (dst, dst_port)) = if origin_hi { (hi, lo) } else { (lo, hi) };
    let side = |d: ct_dir| {
        let s = &entry.side[d.0 as usize];
        Counts {
            packets: s.packets,
            bytes: s.bytes,
        }
    };
    Some(Flow {
        proto: key.proto,
        src,
        src_port,
        dst,
        dst_port,
        state: CtState(entry.state),
        seen_reply: u32::from(entry.flags) & ct_entry_flags::CT_F_SEEN_REPLY.0 != 0,
        orig: side(ct_dir::CT_DIR_ORIGINAL),
        reply: side(ct_dir::CT_DIR_REPLY),
        age: Duration::from_nanos(now_ns.saturating_sub(entry.first_seen_ns)),
        idle: Duration::from_nanos(now_ns.saturating_sub(entry.last_seen_ns)),
        socket_cookie: entry.socket_cookie,
        ifindex: entry.ifindex,
    })
}

/// Which flows `ct list`, `ct count` and `ct flush` act on; None matches anything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FlowFilter {
    /// contains the originator's address
    pub src: Option<IpNet>,
    /// contains the responder's address
    pub dst: Option<IpNet>,
    pub proto: Option<u8>,
    /// either port of a TCP or UDP flow
    pub port: Option<u16>,
    /// one of [`STATE_NAMES`]
    pub state: Option<&'static str>,
}

impl FlowFilter {
    pub fn matches(&self, f: &Flow) -> bool {
        self.src.is_none_or(|n| n.contains(&f.src))
            && self.dst.is_none_or(|n| n.contains(&f.dst))
            && self.proto.is_none_or(|p| p == f.proto)
            && self
                .port
                .is_none_or(|p| f.has_ports() && (f.src_port == p || f.dst_port == p))
            && self.state.is_none_or(|s| s == f.state.name())
    }
}

/// An address (a host) or a CIDR.
pub fn parse_net(s: &str) -> std::result::Result<IpNet, String> {
    if let Ok(net) = s.parse::<IpNet>() {
        return Ok(net);
    }
    s.parse::<IpAddr>().map(IpNet::from).map_err(|_| {
        format!("`{s}` is neither an IP address nor a CIDR (e.g. 10.0.0.0/8, 2001:db8::/32)")
    })
}

/// tcp, udp, icmp, icmpv6 or a protocol number.
pub fn parse_proto(s: &str) -> std::result::Result<u8, String> {
    match s.to_ascii_lowercase().as_str() {
        "tcp" => Ok(6),
        "udp" => Ok(17),
        "icmp" => Ok(1),
        "icmpv6" | "ipv6-icmp" => Ok(58),
        other => other.parse::<u8>().map_err(|_| {
            format!("`{s}` is not a protocol: tcp, udp, icmp, icmpv6 or a number 0-255")
        }),
    }
}

pub fn parse_port(s: &str) -> std::result::Result<u16, String> {
    match s.parse::<u16>() {
        Ok(p) if p > 0 => Ok(p),
        _ => Err(format!("`{s}` is not a port: a number 1-65535")),
    }
}

/// One of [`STATE_NAMES`], any case.
pub fn parse_state(s: &str) -> std::result::Result<&'static str, String> {
    let lower = s.to_ascii_lowercase();
    STATE_NAMES
        .iter()
        .find(|n| **n == lower)
        .copied()
        .ok_or_else(|| format!("`{s}` is not a state: one of {}", STATE_NAMES.join(", ")))
}

/// What the kernel reads from ct_settings[0].
pub fn settings_of(cfg: &ConntrackConfig) -> ct_settings {
    ct_settings {
        timeout_ns: timeouts_ns(cfg),
        enabled: u8::from(cfg.enabled),
        fast_path: u8::from(cfg.fast_path),
        drop_invalid: u8::from(cfg.invalid == Action::Drop),
        pad: [0; 5],
    }
}

/// The kernel compares idle time and timeout as signed 64-bit numbers: a timeout past
/// i64::MAX would expire every entry at once.
fn timeouts_ns(cfg: &ConntrackConfig) -> [u64; CT_STATE_COUNT] {
    cfg.timeouts
        .map(|t| u64::try_from(t.as_nanos()).map_or(i64::MAX as u64, |n| n.min(i64::MAX as u64)))
}

/// Whether the kernel would treat the entry as gone: idle past its state's timeout (the
/// comparison of ct_lookup), or in a state it does not know, which it never looks past and
/// never replaces, so that such an entry would block its flow for good.
pub fn expired(entry: &ct_entry, now_ns: u64, timeouts_ns: &[u64; CT_STATE_COUNT]) -> bool {
    match CtState(entry.state).index() {
        Some(i) => (now_ns.wrapping_sub(entry.last_seen_ns) as i64) > timeouts_ns[i] as i64,
        None => true,
    }
}

/// Entries by `enum ct_state` (entries in a state the kernel does not define are left out).
pub fn by_state<'a>(entries: impl IntoIterator<Item = &'a ct_entry>) -> [u64; CT_STATE_COUNT] {
    let mut out = [0; CT_STATE_COUNT];
    for e in entries {
        if let Some(i) = CtState(e.state).index() {
            out[i] += 1;
        }
    }
    out
}

/// The evictions of the LRU table, which the kernel does not count: a full table silently
/// recycles its least recently used entry to make room.
///
/// Every entry ever created (ct_stats NEW) is now live, or was removed by a packet that found
/// it past its timeout (ct_stats EXPIRED), or by userspace (sweeps and flushes: counted
/// here), or evicted; so
///
///   evicted = NEW - EXPIRED - removed - live.
///
/// The sampler reads NEW before the walk that counts the live entries and EXPIRED after it
/// (after its own deletions too): entries created during the walk then lower the sample, and
/// entries removed during it are subtracted at most twice, so a sample never exceeds the true
/// count. The estimate keeps the highest sample, as a counter must never go down.
///
/// The table and its counters outlive the daemon (pins), and what earlier processes removed is
/// unknown: the first sample is the baseline, the estimate counts from there. Overcounted:
/// entries a `ct flush` of another process removed, and TCP entries in TIME_WAIT or CLOSE that
/// a SYN reusing their ports replaced in place (counted NEW, not removed).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EvictionEstimate {
    baseline: Option<i128>,
    removed: u64,
    evicted: u64,
}

impl EvictionEstimate {
    /// Entries this process deleted.
    pub fn removed(&mut self, n: u64) {
        self.removed = self.removed.saturating_add(n);
    }

    /// Takes a sample: `created` (NEW) read before the walk that counted `live`, `expired`
    /// after it. Returns the estimate.
    pub fn sample(&mut self, created: u64, expired: u64, live: u64) -> u64 {
        let unexplained =
            i128::from(created) - i128::from(expired) - i128::from(self.removed) - i128::from(live);
        let base = *self.baseline.get_or_insert(unexplained);
        let since = u64::try_from((unexplained - base).max(0)).unwrap_or(u64::MAX);
        self.evicted = self.evicted.max(since);
        self.evicted
    }

    pub fn evicted(&self) -> u64 {
        self.evicted
    }
}

/// What one sweep found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SweepReport {
    /// entries idle past their state's timeout it deleted
    pub removed: usize,
    /// entries left
    pub live: usize,
    /// entries left by `enum ct_state`
    pub live_by_state: [u64; CT_STATE_COUNT],
    /// [`ConntrackMaps::evicted`] after the sweep
    pub evicted: u64,
}

/// The time of the table's clock (bpf_ktime_get_coarse_ns()).
pub fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // The kernel stamps entries with bpf_ktime_get_coarse_ns(): the same clock at tick
    // resolution. SAFETY: ts is a valid out-pointer; the clock exists since Linux 2.6.32.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC_COARSE, &mut ts) };
    (ts.tv_sec as u64)
        .saturating_mul(1_000_000_000)
        .saturating_add(ts.tv_nsec as u64)
}

/// One entry as read: its key bytes (to delete it by) and what they decode to.
struct Raw {
    key_bytes: Vec<u8>,
    key: ct_key,
    entry: ct_entry,
}

pub struct ConntrackMaps {
    table: MapHandle,
    settings: MapHandle,
    stats: MapHandle,
    evictions: Mutex<EvictionEstimate>,
}

impl ConntrackMaps {
    fn open(mut get: impl FnMut(&str) -> Result<MapHandle>) -> Result<Self> {
        Ok(ConntrackMaps {
            table: get("ct_table")?,
            settings: get("ct_settings")?,
            stats: get("ct_stats")?,
            evictions: Mutex::new(EvictionEstimate::default()),
        })
    }

    /// The maps of an object that declares them (xdp_firewall, tc_conntrack).
    pub fn from_object(obj: &Object) -> Result<Self> {
        Self::open(|name| {
            let map = obj
                .maps()
                .find(|m| m.name() == name)
                .with_context(|| format!("the object has no conntrack map {name}"))?;
            MapHandle::try_from(&map).with_context(|| format!("duplicating map {name}"))
        })
    }

    pub fn from_pins(pin_root: &Path) -> Result<Self> {
        Self::open(|name| open_pinned(pin_root, name))
    }

    /// Writes ct_settings[0]: what every following packet sees.
    pub fn apply(&self, cfg: &ConntrackConfig) -> Result<()> {
        self.settings
            .update(
                &0u32.to_ne_bytes(),
                bytes_of(&settings_of(cfg)),
                MapFlags::ANY,
            )
            .context("writing ct_settings")
    }

    /// Counts per enum ct_stat slot, summed over CPUs.
    pub fn stats(&self) -> Result<[u64; CT_STAT_COUNT]> {
        let mut out = [0; CT_STAT_COUNT];
        for (slot, v) in out.iter_mut().enumerate() {
            *v = percpu_sum_u64(&self.stats, slot as u32)?;
        }
        Ok(out)
    }

    fn stat(&self, stat: ct_stat) -> Result<u64> {
        percpu_sum_u64(&self.stats, stat.0)
    }

    /// Every entry now; an entry that vanishes meanwhile is skipped.
    fn read_all(&self) -> Result<Vec<Raw>> {
        let raw = super::read_all(&self.table).context("reading ct_table")?;
        Ok(raw
            .into_iter()
            .filter_map(|(key_bytes, v)| {
                Some(Raw {
                    key: abi::read(&key_bytes)?,
                    entry: abi::read(&v)?,
                    key_bytes,
                })
            })
            .collect())
    }

    /// Every flow in the table.
    pub fn flows(&self) -> Result<Vec<Flow>> {
        let raw = self.read_all()?;
        let now = monotonic_ns();
        Ok(raw
            .iter()
            .filter_map(|r| decode(&r.key, &r.entry, now))
            .collect())
    }

    /// Entries by `enum ct_state`, deleting nothing.
    pub fn census(&self) -> Result<[u64; CT_STATE_COUNT]> {
        Ok(by_state(self.read_all()?.iter().map(|r| &r.entry)))
    }

    /// Deletes these keys one by one, counting only what this call removed (a batch delete
    /// does not tell how much of a failed batch it did).
    fn delete_counted<'a>(&self, keys: impl IntoIterator<Item = &'a [u8]>) -> Result<usize> {
        let mut n = 0;
        for k in keys {
            match self.table.delete(k) {
                Ok(()) => n += 1,
                Err(e) if e.kind() == ErrorKind::NotFound => {}
                Err(e) => return Err(e).context("deleting from ct_table"),
            }
        }
        self.evictions
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .removed(n as u64);
        Ok(n)
    }

    /// Deletes the flows `filter` matches; returns how many this call removed.
    pub fn flush(&self, filter: &FlowFilter) -> Result<usize> {
        let raw = self.read_all()?;
        let now = monotonic_ns();
        let doomed = raw
            .iter()
            .filter(|r| decode(&r.key, &r.entry, now).is_some_and(|f| filter.matches(&f)));
        self.delete_counted(doomed.map(|r| r.key_bytes.as_slice()))
    }

    /// Deletes the entries idle past their state's timeout in `cfg`, which nothing would
    /// otherwise remove until a packet of their flow comes or the LRU recycles them, and
    /// samples the eviction estimate.
    pub fn sweep(&self, cfg: &ConntrackConfig) -> Result<SweepReport> {
        let timeouts = timeouts_ns(cfg);
        let created = self.stat(ct_stat::CT_STAT_NEW)?;
        let raw = self.read_all()?;
        let now = monotonic_ns();
        let (stale, live): (Vec<&Raw>, Vec<&Raw>) =
            raw.iter().partition(|r| expired(&r.entry, now, &timeouts));
        // A packet may have replaced an expired entry since it was read: look again right
        // before deleting.
        let mut kept = Vec::new();
        let mut doomed = Vec::new();
        for r in stale {
            let fresh = self
                .table
                .lookup(&r.key_bytes, MapFlags::ANY)
                .context("reading ct_table")?
                .and_then(|v| abi::read::<ct_entry>(&v));
            match fresh {
                Some(e) if !expired(&e, now, &timeouts) => kept.push(e),
                Some(_) => doomed.push(r.key_bytes.as_slice()),
                None => {}
            }
        }
        let removed = self.delete_counted(doomed)?;
        let live_by_state = by_state(live.iter().map(|r| &r.entry).chain(&kept));
        let live = live.len() + kept.len();
        // a reused entry was removed and created again in one step: NEW counted it
        let expired_total =
            self.stat(ct_stat::CT_STAT_EXPIRED)? + self.stat(ct_stat::CT_STAT_REUSED)?;
        let evicted = self
            .evictions
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .sample(created, expired_total, live as u64);
        Ok(SweepReport {
            removed,
            live,
            live_by_state,
            evicted,
        })
    }

    /// LRU evictions since this process first swept (see [`EvictionEstimate`]).
    pub fn evicted(&self) -> u64 {
        self.evictions
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .evicted()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const V4: u8 = fw_family::FW_FAMILY_V4.0 as u8;
    const V6: u8 = fw_family::FW_FAMILY_V6.0 as u8;
    const S: u64 = 1_000_000_000;

    fn v4(a: [u8; 4]) -> [u8; 16] {
        let mut b = [0; 16];
        b[..4].copy_from_slice(&a);
        b
    }

    fn key(family: u8, proto: u8, lo: ([u8; 16], u16), hi: ([u8; 16], u16)) -> ct_key {
        ct_key {
            addr_lo: lo.0,
            addr_hi: hi.0,
            port_lo: lo.1,
            port_hi: hi.1,
            proto,
            family,
            pad: [0; 2],
        }
    }

    fn entry(state: ct_state, flags: u8, first: u64, last: u64) -> ct_entry {
        let mut e = ct_entry {
            first_seen_ns: first,
            last_seen_ns: last,
            socket_cookie: 77,
            state: state.0 as u8,
            flags,
            ifindex: 3,
            ..Default::default()
        };
        e.side[0].packets = 5;
        e.side[0].bytes = 500;
        e.side[1].packets = 2;
        e.side[1].bytes = 9000;
        e
    }

    fn tcp_flow(flags: u8) -> Flow {
        let k = key(V4, 6, (v4([10, 1, 2, 3]), 443), (v4([10, 9, 9, 9]), 51000));
        decode(
            &k,
            &entry(ct_state::CT_TCP_ESTABLISHED, flags, S, 5 * S),
            10 * S,
        )
        .unwrap()
    }

    #[test]
    fn ipv4_addresses_decode_in_network_order() {
        let f = tcp_flow(0);
        assert_eq!(f.src.to_string(), "10.1.2.3");
        assert_eq!(f.dst.to_string(), "10.9.9.9");
    }

    #[test]
    fn a_flow_is_oriented_by_its_originator() {
        let lo = tcp_flow(0);
        assert_eq!((lo.src.to_string(), lo.src_port), ("10.1.2.3".into(), 443));
        assert_eq!(
            (lo.dst.to_string(), lo.dst_port),
            ("10.9.9.9".into(), 51000)
        );

        let hi = tcp_flow(ct_entry_flags::CT_F_ORIGIN_HI.0 as u8);
        assert_eq!(
            (hi.src.to_string(), hi.src_port),
            ("10.9.9.9".into(), 51000)
        );
        assert_eq!((hi.dst.to_string(), hi.dst_port), ("10.1.2.3".into(), 443));
        // the sides are by direction already: the originator's counts stay `orig`
        assert_eq!(hi.orig, lo.orig);
        assert_eq!(
            hi.orig,
            Counts {
                packets: 5,
                bytes: 500
            }
        );
        assert_eq!(
            hi.reply,
            Counts {
                packets: 2,
                bytes: 9000
            }
        );
    }

    #[test]
    fn decode_times_flags_and_ipv6() {
        let f = tcp_flow(ct_entry_flags::CT_F_SEEN_REPLY.0 as u8);
        assert!(f.seen_reply);
        assert_eq!(f.age, Duration::from_secs(9));
        assert_eq!(f.idle, Duration::from_secs(5));
        assert_eq!((f.socket_cookie, f.ifindex), (77, 3));
        assert_eq!(f.state.name(), "established");

        let a: Ipv6Addr = "2001:db8::1".parse().unwrap();
        let b: Ipv6Addr = "2001:db8::2".parse().unwrap();
        let k = key(V6, 17, (a.octets(), 53), (b.octets(), 53));
        // last_seen after the clock read: idle 0, not a wrap
        let f = decode(&k, &entry(ct_state::CT_UDP_NEW, 0, 2 * S, 3 * S), S).unwrap();
        assert_eq!((f.src, f.dst), (IpAddr::V6(a), IpAddr::V6(b)));
        assert_eq!((f.age, f.idle), (Duration::ZERO, Duration::ZERO));
        assert_eq!(f.state.name(), "new");
        assert_eq!(f.state.protocol(), "udp");

        let bad = key(7, 6, (v4([1, 2, 3, 4]), 1), (v4([1, 2, 3, 5]), 2));
        assert!(decode(&bad, &ct_entry::default(), S).is_none());
    }

    #[test]
    fn every_state_has_a_filterable_name() {
        for s in CtState::all() {
            assert!(STATE_NAMES.contains(&s.name()), "{s:?}");
            assert_ne!(s.protocol(), "unknown", "{s:?}");
        }
        for n in STATE_NAMES {
            assert!(CtState::all().any(|s| s.name() == n), "{n}");
        }
        assert_eq!(CtState(CT_STATE_COUNT as u8).name(), "unknown");
        assert_eq!(CtState(ct_state::CT_TCP_CLOSED.0 as u8).name(), "close");
        assert_eq!(
            CtState(ct_state::CT_ICMP_ESTABLISHED.0 as u8).protocol(),
            "icmp"
        );
    }

    #[test]
    fn filters() {
        let f = tcp_flow(0); // 10.1.2.3:443 -> 10.9.9.9:51000, tcp established
        let m = |filter: FlowFilter| filter.matches(&f);
        assert!(m(FlowFilter::default()));
        assert!(m(FlowFilter {
            src: Some(parse_net("10.1.0.0/16").unwrap()),
            dst: Some(parse_net("10.9.9.9").unwrap()),
            proto: Some(parse_proto("TCP").unwrap()),
            port: Some(51000),
            state: Some(parse_state("established").unwrap()),
        }));
        // src is the originator only
        assert!(!m(FlowFilter {
            src: Some(parse_net("10.9.9.9").unwrap()),
            ..Default::default()
        }));
        assert!(!m(FlowFilter {
            src: Some(parse_net("::/0").unwrap()),
            ..Default::default()
        }));
        assert!(m(FlowFilter {
            port: Some(443),
            ..Default::default()
        }));
        assert!(!m(FlowFilter {
            port: Some(80),
            ..Default::default()
        }));
        assert!(!m(FlowFilter {
            proto: Some(17),
            ..Default::default()
        }));
        assert!(!m(FlowFilter {
            state: Some("new"),
            ..Default::default()
        }));

        let icmp = decode(
            &key(V4, 1, (v4([192, 0, 2, 1]), 7), (v4([192, 0, 2, 2]), 7)),
            &entry(ct_state::CT_ICMP_ESTABLISHED, 0, S, S),
            S,
        )
        .unwrap();
        // an echo identifier is no port
        assert!(!FlowFilter {
            port: Some(7),
            ..Default::default()
        }
        .matches(&icmp));
        // `established` and `new` cover UDP and ICMP too
        assert!(FlowFilter {
            state: Some("established"),
            proto: Some(1),
            ..Default::default()
        }
        .matches(&icmp));
    }

    #[test]
    fn filter_arguments_and_their_errors() {
        assert_eq!(parse_net("10.0.0.1").unwrap().to_string(), "10.0.0.1/32");
        assert_eq!(
            parse_net("2001:db8::/32").unwrap().to_string(),
            "2001:db8::/32"
        );
        assert!(parse_net("10.0.0.0/33")
            .unwrap_err()
            .contains("neither an IP"));
        assert!(parse_net("example.com").is_err());
        assert_eq!(parse_proto("icmpv6"), Ok(58));
        assert_eq!(parse_proto("udp"), Ok(17));
        assert_eq!(parse_proto("47"), Ok(47));
        assert!(parse_proto("256")
            .unwrap_err()
            .contains("tcp, udp, icmp, icmpv6"));
        assert!(parse_proto("sctp").is_err());
        assert_eq!(parse_port("443"), Ok(443));
        assert!(parse_port("0").unwrap_err().contains("1-65535"));
        assert!(parse_port("65536").is_err());
        assert_eq!(parse_state("TIME_WAIT"), Ok("time_wait"));
        assert!(parse_state("closed")
            .unwrap_err()
            .contains("syn_sent, syn_recv"));
    }

    #[test]
    fn settings_follow_the_config() {
        let mut cfg = ConntrackConfig {
            enabled: true,
            invalid: Action::Drop,
            fast_path: false,
            ..Default::default()
        };
        cfg.timeouts[2] = Duration::from_secs(u64::MAX);
        let s = settings_of(&cfg);
        assert_eq!((s.enabled, s.fast_path, s.drop_invalid), (1, 0, 1));
        assert_eq!(s.timeout_ns[0], 120 * S);
        assert_eq!(s.timeout_ns[2], i64::MAX as u64);
        let off = settings_of(&ConntrackConfig::default());
        assert_eq!((off.enabled, off.fast_path, off.drop_invalid), (0, 1, 0));
    }

    #[test]
    fn expiry_follows_the_state_timeout() {
        let t = timeouts_ns(&ConntrackConfig::default());
        let udp = |last| entry(ct_state::CT_UDP_NEW, 0, 0, last);
        assert!(!expired(&udp(100 * S), 130 * S, &t));
        assert!(expired(&udp(100 * S), 130 * S + 1, &t));
        // touched after the clock was read
        assert!(!expired(&udp(200 * S), 130 * S, &t));
        let est = entry(ct_state::CT_TCP_ESTABLISHED, 0, 0, 100 * S);
        assert!(!expired(&est, 100_000 * S, &t));
        let garbage = ct_entry {
            state: CT_STATE_COUNT as u8,
            last_seen_ns: 100 * S,
            ..Default::default()
        };
        assert!(expired(&garbage, 100 * S, &t));
        let counts = by_state([&est, &udp(0), &udp(1), &garbage]);
        assert_eq!(counts[ct_state::CT_TCP_ESTABLISHED.0 as usize], 1);
        assert_eq!(counts[ct_state::CT_UDP_NEW.0 as usize], 2);
        assert_eq!(counts.iter().sum::<u64>(), 3);
    }

    #[test]
    fn evictions_are_what_creations_leave_unexplained() {
        let mut e = EvictionEstimate::default();
        // pins from an earlier daemon: 1000 created, 100 expired, 300 live, the rest unknown
        assert_eq!(e.sample(1000, 100, 300), 0);
        // 500 more created, 50 expired by packets, 20 swept by us, 30 evicted: 700 live
        e.removed(20);
        assert_eq!(e.sample(1500, 150, 700), 30);
        // a sample racing packets comes out low: the counter holds
        assert_eq!(e.sample(1500, 160, 700), 30);
        assert_eq!(e.evicted(), 30);
        // table full: every creation evicts
        assert_eq!(e.sample(1600, 150, 700), 130);
    }

    #[test]
    fn clock_is_monotonic() {
        let a = monotonic_ns();
        assert!(a > 0 && monotonic_ns() >= a);
    }
}
