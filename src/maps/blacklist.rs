//! The IPS blacklist xdp_firewall checks before anything else: blocked addresses in two
//! hashes, blocked CIDRs in two tries, each entry with its expiry on the clock of
//! bpf_ktime_get_coarse_ns(), and `ips_settings`, whose flags say which of the four maps hold
//! entries (the kernel does not look into an empty one). A flag is set before the first entry
//! of its map goes in and cleared after the last one went.

use std::net::IpAddr;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result};
use ipnet::IpNet;
use libbpf_rs::{ErrorKind, MapCore, MapFlags, MapHandle, Object};

use super::conntrack::monotonic_ns;
use super::threatintel::{addr_key, decode_addr_key, AddrMap};
use super::{count_entries, for_each_entry, open_pinned, read_all};
use crate::abi::{self, bytes_of, ips_block, ips_settings, ips_settings_flags, ti_limits};

/// Every blacklist map (declared by xdp_firewall), by the name it is pinned under.
pub const BLACKLIST_MAP_NAMES: [&str; 5] = [
    "ips_block_v4",
    "ips_block_v6",
    "ips_block_lpm_v4",
    "ips_block_lpm_v6",
    "ips_settings",
];

/// Blocked addresses per family.
pub const MAX_BLOCKED: usize = ti_limits::IPS_MAX_BLOCKED.0 as usize;
/// Blocked CIDRs per family.
pub const MAX_BLOCKED_CIDRS: usize = ti_limits::IPS_MAX_BLOCKED_CIDRS.0 as usize;

/// One live entry of the blacklist.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Blocked {
    pub net: IpNet,
    /// None: until unblocked
    pub expires_in: Option<Duration>,
    /// an id of [`crate::ips::Reasons`]; 0 manual
    pub reason: u32,
}

/// The `enum ips_settings_flags` bit of an address map.
pub fn flag_of(m: AddrMap) -> u32 {
    match m {
        AddrMap::ExactV4 => ips_settings_flags::IPS_SET_EXACT_V4.0,
        AddrMap::ExactV6 => ips_settings_flags::IPS_SET_EXACT_V6.0,
        AddrMap::LpmV4 => ips_settings_flags::IPS_SET_CIDRS_V4.0,
        AddrMap::LpmV6 => ips_settings_flags::IPS_SET_CIDRS_V6.0,
    }
}

/// The kernel's expiry of a block from `now_ns` for `for_`: 0 (never) for None, else never 0.
pub fn expiry_ns(now_ns: u64, for_: Option<Duration>) -> u64 {
    match for_ {
        None => 0,
        Some(d) => {
            let d = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
            now_ns.saturating_add(d).max(1)
        }
    }
}

/// Whether the kernel still blocks with this entry at `now_ns` (ips_live()).
pub fn live(b: &ips_block, now_ns: u64) -> bool {
    b.expires_ns == 0 || now_ns < b.expires_ns
}

/// A live entry as a [`Blocked`]; None once expired.
pub fn decode(net: IpNet, b: &ips_block, now_ns: u64) -> Option<Blocked> {
    live(b, now_ns).then(|| Blocked {
        net,
        expires_in: (b.expires_ns != 0).then(|| Duration::from_nanos(b.expires_ns - now_ns)),
        reason: b.reason,
    })
}

/// The flags the maps' contents call for: one bit per map that holds something.
pub fn flags_for(nonempty: [bool; 4]) -> u32 {
    AddrMap::ALL
        .into_iter()
        .zip(nonempty)
        .filter(|(_, n)| *n)
        .fold(0, |f, (m, _)| f | flag_of(m))
}

pub struct BlacklistMaps {
    /// in [`AddrMap::ALL`] order
    sets: [MapHandle; 4],
    settings: MapHandle,
}

impl BlacklistMaps {
    fn open(mut get: impl FnMut(&str) -> Result<MapHandle>) -> Result<Self> {
        Ok(BlacklistMaps {
            sets: [
                get("ips_block_v4")?,
                get("ips_block_v6")?,
                get("ips_block_lpm_v4")?,
                get("ips_block_lpm_v6")?,
            ],
            settings: get("ips_settings")?,
        })
    }

    /// The maps of the object that declares them (xdp_firewall).
    pub fn from_object(obj: &Object) -> Result<Self> {
        Self::open(|name| {
            let map = obj
                .maps()
                .find(|m| m.name() == name)
                .with_context(|| format!("the object has no blacklist map {name}"))?;
            MapHandle::try_from(&map).with_context(|| format!("duplicating map {name}"))
        })
    }

    pub fn from_pins(pin_root: &Path) -> Result<Self> {
        Self::open(|name| open_pinned(pin_root, name))
    }

    /// `enum ips_settings_flags` as the kernel reads them.
    pub fn flags(&self) -> Result<u32> {
        let v = self
            .settings
            .lookup(&0u32.to_ne_bytes(), MapFlags::ANY)
            .context("reading ips_settings")?
            .context("ips_settings has no slot 0")?;
        Ok(abi::read::<ips_settings>(&v)
            .context("ips_settings value too short")?
            .flags)
    }

    fn write_flags(&self, flags: u32) -> Result<()> {
        self.settings
            .update(
                &0u32.to_ne_bytes(),
                bytes_of(&ips_settings { flags, pad: 0 }),
                MapFlags::ANY,
            )
            .context("writing ips_settings")
    }

    fn is_empty(&self, m: AddrMap) -> bool {
        self.sets[m as usize].keys().next().is_none()
    }

    /// Sets or clears the flag of `m` after its map changed. An entry another process
    /// inserted right after the emptiness check gets its flag back at once.
    fn settle_flag(&self, m: AddrMap) -> Result<()> {
        let bit = flag_of(m);
        let flags = self.flags()?;
        if self.is_empty(m) {
            if flags & bit != 0 {
                self.write_flags(flags & !bit)?;
                if !self.is_empty(m) {
                    self.write_flags(self.flags()? | bit)?;
                }
            }
        } else if flags & bit == 0 {
            self.write_flags(flags | bit)?;
        }
        Ok(())
    }

    /// Rewrites every flag from what the maps hold (a daemon adopting pins).
    pub fn reconcile_flags(&self) -> Result<u32> {
        let flags = flags_for(AddrMap::ALL.map(|m| !self.is_empty(m)));
        if self.flags()? != flags {
            self.write_flags(flags)?;
        }
        Ok(flags)
    }

    /// Blocks a source address or network, for `for_` or until unblocked; replaces an entry
    /// for the same network.
    pub fn block(&self, net: IpNet, for_: Option<Duration>, reason: u32) -> Result<()> {
        let net = net.trunc();
        let (m, key) = addr_key(&net);
        let bit = flag_of(m);
        let flags = self.flags()?;
        if flags & bit == 0 {
            self.write_flags(flags | bit)?;
        }
        let value = ips_block {
            expires_ns: expiry_ns(monotonic_ns(), for_),
            reason,
            pad: 0,
        };
        let map = &self.sets[m as usize];
        map.update(&key, bytes_of(&value), MapFlags::ANY)
            .map_err(|e| {
                let full = e.kind() == ErrorKind::TooBig;
                anyhow::Error::new(e).context(if full {
                    format!(
                        "the blacklist is full ({} entries per family)",
                        if m.is_lpm() {
                            MAX_BLOCKED_CIDRS
                        } else {
                            MAX_BLOCKED
                        }
                    )
                } else {
                    format!("writing {}", map.name().to_string_lossy())
                })
            })
            .inspect_err(|_| {
                // Nothing went in: leave the flag as the map says.
                let _ = self.settle_flag(m);
            })
    }

    /// Removes the entry of exactly this network; true when it was blocking.
    pub fn unblock(&self, net: IpNet) -> Result<bool> {
        let net = net.trunc();
        let (m, key) = addr_key(&net);
        let map = &self.sets[m as usize];
        let was = map
            .lookup(&key, MapFlags::ANY)
            .context("reading the blacklist")?
            .and_then(|v| abi::read::<ips_block>(&v));
        match map.delete(&key) {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(false),
            Err(e) => {
                return Err(e)
                    .with_context(|| format!("deleting from {}", map.name().to_string_lossy()))
            }
        }
        self.settle_flag(m)?;
        Ok(was.is_some_and(|b| live(&b, monotonic_ns())))
    }

    /// Every entry still blocking, addresses before networks, IPv4 first.
    pub fn list(&self) -> Result<Vec<Blocked>> {
        let now = monotonic_ns();
        let mut out = Vec::new();
        for (m, map) in AddrMap::ALL.into_iter().zip(&self.sets) {
            for (k, v) in read_all(map)? {
                let (Some(net), Some(b)) = (decode_addr_key(m, &k), abi::read::<ips_block>(&v))
                else {
                    continue;
                };
                out.extend(decode(net, &b, now));
            }
        }
        out.sort_by_key(|a| (a.net.addr().is_ipv6(), a.net));
        Ok(out)
    }

    /// Entries in the four maps, expired ones not yet removed included.
    pub fn entries(&self) -> Result<usize> {
        self.sets.iter().map(count_entries).sum()
    }

    /// The entry that blocks an address now, if one does: its own, else the longest live
    /// network containing it.
    pub fn blocked(&self, ip: IpAddr) -> Result<Option<Blocked>> {
        let now = monotonic_ns();
        let host = IpNet::from(ip);
        let (exact, key) = addr_key(&host);
        let own = self.sets[exact as usize]
            .lookup(&key, MapFlags::ANY)
            .context("reading the blacklist")?
            .and_then(|v| abi::read::<ips_block>(&v))
            .and_then(|b| decode(host, &b, now));
        if own.is_some() {
            return Ok(own);
        }
        let trie = if ip.is_ipv4() {
            AddrMap::LpmV4
        } else {
            AddrMap::LpmV6
        };
        let mut best: Option<Blocked> = None;
        for_each_entry(&self.sets[trie as usize], |k, v| {
            let found = decode_addr_key(trie, k)
                .filter(|net| net.contains(&ip))
                .zip(abi::read::<ips_block>(v))
                .and_then(|(net, b)| decode(net, &b, now));
            if let Some(f) = found {
                if best
                    .as_ref()
                    .is_none_or(|b| b.net.prefix_len() < f.net.prefix_len())
                {
                    best = Some(f);
                }
            }
        })?;
        Ok(best)
    }

    /// Removes the entries past their expiry; returns how many this call removed.
    pub fn expire(&self) -> Result<usize> {
        let mut removed = 0;
        for (m, map) in AddrMap::ALL.into_iter().zip(&self.sets) {
            let now = monotonic_ns();
            let stale: Vec<Vec<u8>> = read_all(map)?
                .into_iter()
                .filter(|(_, v)| abi::read::<ips_block>(v).is_some_and(|b| !live(&b, now)))
                .map(|(k, _)| k)
                .collect();
            if stale.is_empty() {
                continue;
            }
            for k in &stale {
                // A block renewed since it was read stays.
                let fresh = map
                    .lookup(k, MapFlags::ANY)
                    .context("reading the blacklist")?
                    .and_then(|v| abi::read::<ips_block>(&v));
                if fresh.is_none_or(|b| live(&b, monotonic_ns())) {
                    continue;
                }
                match map.delete(k) {
                    Ok(()) => removed += 1,
                    Err(e) if e.kind() == ErrorKind::NotFound => {}
                    Err(e) => {
                        return Err(e).with_context(|| {
                            format!("deleting from {}", map.name().to_string_lossy())
                        })
                    }
                }
            }
            self.settle_flag(m)?;
        }
        Ok(removed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 1_000_000_000;

    #[test]
    fn expiry_is_never_zero_and_saturates() {
        assert_eq!(expiry_ns(5 * S, None), 0);
        assert_eq!(expiry_ns(5 * S, Some(Duration::from_secs(60))), 65 * S);
        assert_eq!(expiry_ns(0, Some(Duration::ZERO)), 1);
        assert_eq!(
            expiry_ns(u64::MAX - 1, Some(Duration::from_secs(1))),
            u64::MAX
        );
        assert_eq!(expiry_ns(1, Some(Duration::MAX)), u64::MAX);
    }

    #[test]
    fn liveness_matches_the_kernel() {
        let b = |expires_ns| ips_block {
            expires_ns,
            reason: 3,
            pad: 0,
        };
        assert!(live(&b(0), u64::MAX));
        assert!(live(&b(10 * S), 10 * S - 1));
        assert!(!live(&b(10 * S), 10 * S));
        let net: IpNet = "192.0.2.0/24".parse().unwrap();
        assert_eq!(
            decode(net, &b(10 * S), 4 * S),
            Some(Blocked {
                net,
                expires_in: Some(Duration::from_secs(6)),
                reason: 3
            })
        );
        assert_eq!(decode(net, &b(0), 4 * S).unwrap().expires_in, None);
        assert_eq!(decode(net, &b(4 * S), 4 * S), None);
    }

    #[test]
    fn flags_follow_the_maps_that_hold_entries() {
        assert_eq!(flags_for([false; 4]), 0);
        assert_eq!(
            flags_for([true, false, false, true]),
            ips_settings_flags::IPS_SET_EXACT_V4.0 | ips_settings_flags::IPS_SET_CIDRS_V6.0
        );
        assert_eq!(flags_for([true; 4]), 0b1111);
        let net = |s: &str| s.parse::<IpNet>().unwrap();
        assert_eq!(
            flag_of(AddrMap::of(&net("10.0.0.1/32"))),
            ips_settings_flags::IPS_SET_EXACT_V4.0
        );
        assert_eq!(
            flag_of(AddrMap::of(&net("10.0.0.0/8"))),
            ips_settings_flags::IPS_SET_CIDRS_V4.0
        );
        assert_eq!(
            flag_of(AddrMap::of(&net("2001:db8::1/128"))),
            ips_settings_flags::IPS_SET_EXACT_V6.0
        );
        assert_eq!(
            flag_of(AddrMap::of(&net("2001:db8::/32"))),
            ips_settings_flags::IPS_SET_CIDRS_V6.0
        );
    }
}
