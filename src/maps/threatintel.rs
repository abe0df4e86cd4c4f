//! tc_threatintel's maps: the IOC sets (exact addresses in two hashes, CIDRs in two tries),
//! the Bloom filter of each generation in front of them, the settings and counters; and the
//! feeds status file the daemon keeps for `ti feeds`.
//!
//! A Bloom filter can neither delete nor be emptied from userspace, so a refresh never reuses
//! one: it creates a fresh filter map, swaps it into the inactive generation's slot of the
//! `ti_blooms` map-in-map (no packet looks there), fills it with every IOC of the new set (in
//! the kernel with the object's `ti_bloom_fill` loader where the handle has it, else one
//! syscall per key), writes that generation's settings and flips `ti_active_gen`. The hashes
//! and tries are shared by both generations and change by the diff alone: added and changed
//! IOCs before the flip, removed ones after it.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::{AsFd, AsRawFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use ipnet::{IpNet, Ipv4Net, Ipv6Net};
use libbpf_rs::{ErrorKind, MapCore, MapFlags, MapHandle, MapType, Object};
use serde::{Deserialize, Serialize};

use super::{
    count_entries, delete_keys, for_each_entry, open_pinned, percpu_sum_u64, put_all, Entries,
};
pub use crate::abi::TI_STAT_COUNT;
use crate::abi::{
    self, bytes_of, ti_bloom_fill_ctl, ti_bloom_key, ti_bloom_kind, ti_ioc, ti_limits,
    ti_lpm_v4_key, ti_lpm_v6_key, ti_settings, ti_settings_flags, ti_stat, ti_v4_key, ti_v6_key,
};
use crate::feeds::{Ioc, IocSet, TiAction};

/// Every map tc_threatintel owns, by the name it is pinned under. The filters the object
/// starts with (`ti_bloom_0`, `ti_bloom_1`) are not pinned: `ti_blooms` holds the filters in
/// use, which after the first refresh are other maps, and keeps them alive.
pub const TI_MAP_NAMES: [&str; 8] = [
    "ti_blooms",
    "ti_ioc_v4",
    "ti_ioc_v6",
    "ti_lpm_v4",
    "ti_lpm_v6",
    "ti_active_gen",
    "ti_settings",
    "ti_stats",
];

/// The feed id of IOCs added by hand (`ti add`, `ti load` without `--feed`): no feed of a
/// config has it (a feed's id is its index, below TI_MAX_FEEDS).
pub const MANUAL_FEED: u16 = u16::MAX;

pub const BUCKET_BITS_V4: u8 = ti_limits::TI_BUCKET_BITS_V4.0 as u8;
pub const BUCKET_BITS_V6: u8 = ti_limits::TI_BUCKET_BITS_V6.0 as u8;
/// CIDRs shorter than these are not bucketed: their family's trie is walked for every packet.
pub const MIN_BUCKETED_V4: u8 = ti_limits::TI_MIN_BUCKETED_V4.0 as u8;
pub const MIN_BUCKETED_V6: u8 = ti_limits::TI_MIN_BUCKETED_V6.0 as u8;
/// Entries one generation's filter is sized for (exact IOCs plus buckets).
pub const MAX_BLOOM: usize = ti_limits::TI_MAX_BLOOM.0 as usize;
/// Exact IOCs per family.
pub const MAX_EXACT: usize = ti_limits::TI_MAX_EXACT.0 as usize;
/// CIDR IOCs per family.
pub const MAX_CIDRS: usize = ti_limits::TI_MAX_CIDRS.0 as usize;
pub const BLOOM_HASHES: u32 = ti_limits::TI_BLOOM_HASHES.0;
/// Keys one run of the bulk loader pushes.
const BLOOM_STAGE: usize = ti_limits::TI_BLOOM_STAGE.0 as usize;

/// Entries written between two progress reports.
const PROGRESS_CHUNK: usize = 1 << 18;

/// The kernel's `enum ti_action` value of an action.
pub fn action_code(a: TiAction) -> u8 {
    match a {
        TiAction::Alert => abi::ti_action::TI_ACTION_ALERT.0 as u8,
        TiAction::Drop => abi::ti_action::TI_ACTION_DROP.0 as u8,
        TiAction::Quarantine => abi::ti_action::TI_ACTION_QUARANTINE.0 as u8,
    }
}

/// The action of an `enum ti_action` value; None for one the kernel does not define.
pub fn action_of(code: u8) -> Option<TiAction> {
    match abi::ti_action(u32::from(code)) {
        abi::ti_action::TI_ACTION_ALERT => Some(TiAction::Alert),
        abi::ti_action::TI_ACTION_DROP => Some(TiAction::Drop),
        abi::ti_action::TI_ACTION_QUARANTINE => Some(TiAction::Quarantine),
        _ => None,
    }
}

/// alert, drop or quarantine, any case.
pub fn parse_action(s: &str) -> std::result::Result<TiAction, String> {
    match s.to_ascii_lowercase().as_str() {
        "alert" => Ok(TiAction::Alert),
        "drop" => Ok(TiAction::Drop),
        "quarantine" => Ok(TiAction::Quarantine),
        _ => Err(format!(
            "`{s}` is not a threat-intel action: alert, drop or quarantine"
        )),
    }
}

/// Which of the four address maps (of the IOC sets, and alike of the IPS blacklist) a network
/// lives in: host networks in the hashes, the others in the tries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum AddrMap {
    ExactV4 = 0,
    ExactV6 = 1,
    LpmV4 = 2,
    LpmV6 = 3,
}

impl AddrMap {
    pub const ALL: [AddrMap; 4] = [
        AddrMap::ExactV4,
        AddrMap::ExactV6,
        AddrMap::LpmV4,
        AddrMap::LpmV6,
    ];

    pub fn of(net: &IpNet) -> AddrMap {
        match (net, is_host(net)) {
            (IpNet::V4(_), true) => AddrMap::ExactV4,
            (IpNet::V6(_), true) => AddrMap::ExactV6,
            (IpNet::V4(_), false) => AddrMap::LpmV4,
            (IpNet::V6(_), false) => AddrMap::LpmV6,
        }
    }

    pub fn is_lpm(self) -> bool {
        matches!(self, AddrMap::LpmV4 | AddrMap::LpmV6)
    }

    pub fn is_v4(self) -> bool {
        matches!(self, AddrMap::ExactV4 | AddrMap::LpmV4)
    }
}

/// /32 and /128: one address, an exact IOC.
pub fn is_host(net: &IpNet) -> bool {
    net.prefix_len() == net.max_prefix_len()
}

/// The key of `net` (truncated to its prefix) in its address map.
pub fn addr_key(net: &IpNet) -> (AddrMap, Vec<u8>) {
    let net = net.trunc();
    let map = AddrMap::of(&net);
    let key = match net {
        IpNet::V4(n) if map == AddrMap::ExactV4 => bytes_of(&ti_v4_key {
            addr: n.addr().octets(),
        })
        .to_vec(),
        IpNet::V6(n) if map == AddrMap::ExactV6 => bytes_of(&ti_v6_key {
            addr: n.addr().octets(),
        })
        .to_vec(),
        IpNet::V4(n) => bytes_of(&ti_lpm_v4_key {
            prefixlen: u32::from(n.prefix_len()),
            addr: n.addr().octets(),
        })
        .to_vec(),
        IpNet::V6(n) => bytes_of(&ti_lpm_v6_key {
            prefixlen: u32::from(n.prefix_len()),
            addr: n.addr().octets(),
        })
        .to_vec(),
    };
    (map, key)
}

/// The network a key of `map` stands for; None for bytes that are no such key.
pub fn decode_addr_key(map: AddrMap, key: &[u8]) -> Option<IpNet> {
    match map {
        AddrMap::ExactV4 => {
            let k: ti_v4_key = abi::read(key)?;
            Some(IpNet::V4(Ipv4Net::from(Ipv4Addr::from(k.addr))))
        }
        AddrMap::ExactV6 => {
            let k: ti_v6_key = abi::read(key)?;
            Some(IpNet::V6(Ipv6Net::from(Ipv6Addr::from(k.addr))))
        }
        AddrMap::LpmV4 => {
            let k: ti_lpm_v4_key = abi::read(key)?;
            let len = u8::try_from(k.prefixlen).ok()?;
            Ipv4Net::new(Ipv4Addr::from(k.addr), len)
                .ok()
                .map(|n| IpNet::V4(n.trunc()))
        }
        AddrMap::LpmV6 => {
            let k: ti_lpm_v6_key = abi::read(key)?;
            let len = u8::try_from(k.prefixlen).ok()?;
            Ipv6Net::new(Ipv6Addr::from(k.addr), len)
                .ok()
                .map(|n| IpNet::V6(n.trunc()))
        }
    }
}

/// What the kernel keeps of an IOC.
pub fn ioc_value(ioc: &Ioc) -> ti_ioc {
    ti_ioc {
        feed_id: ioc.feed_id,
        confidence: ioc.confidence,
        category: ioc.category,
        action: action_code(ioc.action),
        pad: [0; 3],
    }
}

/// An IOC as the kernel holds it; None for an action the kernel does not define.
pub fn ioc_of(net: IpNet, v: &ti_ioc) -> Option<Ioc> {
    Some(Ioc {
        net,
        feed_id: v.feed_id,
        confidence: v.confidence,
        category: v.category,
        action: action_of(v.action)?,
    })
}

/// The 16 address bytes of a Bloom key: IPv4 as ::ffff:a.b.c.d.
fn bloom_addr(a: IpAddr) -> [u8; 16] {
    match a {
        IpAddr::V4(v4) => v4.to_ipv6_mapped().octets(),
        IpAddr::V6(v6) => v6.octets(),
    }
}

fn bloom_key(kind: ti_bloom_kind, addr: [u8; 16]) -> ti_bloom_key {
    ti_bloom_key {
        kind: kind.0 as u8,
        pad: [0; 3],
        addr,
    }
}

/// The key an address is probed with as an exact IOC.
pub fn exact_bloom_key(a: IpAddr) -> ti_bloom_key {
    bloom_key(ti_bloom_kind::TI_BLOOM_EXACT, bloom_addr(a))
}

/// The key of the bucket an address falls in: the address masked to TI_BUCKET_BITS_*.
pub fn bucket_bloom_key(a: IpAddr) -> ti_bloom_key {
    let masked = match a {
        IpAddr::V4(v4) => IpAddr::V4(Ipv4Addr::from(
            u32::from(v4) & (u32::MAX << (32 - BUCKET_BITS_V4)),
        )),
        IpAddr::V6(v6) => IpAddr::V6(Ipv6Addr::from(
            u128::from(v6) & (u128::MAX << (128 - BUCKET_BITS_V6)),
        )),
    };
    bloom_key(ti_bloom_kind::TI_BLOOM_BUCKET, bloom_addr(masked))
}

/// How the filter covers one IOC.
#[derive(Debug, Clone)]
pub enum BloomCover {
    /// an exact IOC: its address
    Exact(ti_bloom_key),
    /// a CIDR: every bucket it overlaps
    Buckets(Vec<ti_bloom_key>),
    /// a CIDR too short to bucket: the family's trie is walked for every packet instead
    TrieAlways,
}

impl BloomCover {
    pub fn keys(&self) -> &[ti_bloom_key] {
        match self {
            BloomCover::Exact(k) => std::slice::from_ref(k),
            BloomCover::Buckets(keys) => keys,
            BloomCover::TrieAlways => &[],
        }
    }
}

/// The filter keys of one network (truncated first).
pub fn bloom_cover(net: &IpNet) -> BloomCover {
    let net = net.trunc();
    if is_host(&net) {
        return BloomCover::Exact(exact_bloom_key(net.addr()));
    }
    match net {
        IpNet::V4(n) => {
            let len = n.prefix_len();
            if len < MIN_BUCKETED_V4 {
                return BloomCover::TrieAlways;
            }
            let first = u32::from(n.network()) >> (32 - BUCKET_BITS_V4);
            let count = 1u32 << BUCKET_BITS_V4.saturating_sub(len);
            BloomCover::Buckets(
                (first..first + count)
                    .map(|b| {
                        bucket_bloom_key(IpAddr::V4(Ipv4Addr::from(b << (32 - BUCKET_BITS_V4))))
                    })
                    .collect(),
            )
        }
        IpNet::V6(n) => {
            let len = n.prefix_len();
            if len < MIN_BUCKETED_V6 {
                return BloomCover::TrieAlways;
            }
            let first = u128::from(n.network()) >> (128 - BUCKET_BITS_V6);
            let count = 1u128 << BUCKET_BITS_V6.saturating_sub(len);
            BloomCover::Buckets(
                (first..first + count)
                    .map(|b| {
                        bucket_bloom_key(IpAddr::V6(Ipv6Addr::from(b << (128 - BUCKET_BITS_V6))))
                    })
                    .collect(),
            )
        }
    }
}

/// The `enum ti_settings_flags` bits the CIDRs among `nets` call for: CIDRS_* when a family
/// has one, TRIE_ALWAYS_* when one is too short to bucket.
pub fn cidr_flags<'a>(nets: impl IntoIterator<Item = &'a IpNet>) -> u32 {
    let mut flags = 0;
    for net in nets {
        if is_host(net) {
            continue;
        }
        let (cidrs, always, min) = match net {
            IpNet::V4(_) => (
                ti_settings_flags::TI_SET_CIDRS_V4,
                ti_settings_flags::TI_SET_TRIE_ALWAYS_V4,
                MIN_BUCKETED_V4,
            ),
            IpNet::V6(_) => (
                ti_settings_flags::TI_SET_CIDRS_V6,
                ti_settings_flags::TI_SET_TRIE_ALWAYS_V6,
                MIN_BUCKETED_V6,
            ),
        };
        flags |= cidrs.0;
        if net.prefix_len() < min {
            flags |= always.0;
        }
    }
    flags
}

/// The CIDR bits of the flags of one family.
fn family_cidr_bits(v4: bool) -> u32 {
    if v4 {
        ti_settings_flags::TI_SET_CIDRS_V4.0 | ti_settings_flags::TI_SET_TRIE_ALWAYS_V4.0
    } else {
        ti_settings_flags::TI_SET_CIDRS_V6.0 | ti_settings_flags::TI_SET_TRIE_ALWAYS_V6.0
    }
}

/// What a generation's settings slot holds for an IOC set.
pub fn settings_for<'a>(
    nets: impl IntoIterator<Item = &'a IpNet>,
    enabled: bool,
    quarantine_vlan: u16,
) -> ti_settings {
    let enabled = if enabled {
        ti_settings_flags::TI_SET_ENABLED.0
    } else {
        0
    };
    ti_settings {
        flags: enabled | cidr_flags(nets),
        quarantine_vlan,
        pad: 0,
    }
}

/// Everything one refresh writes, by address map (in [`AddrMap::ALL`] order).
#[derive(Debug, Clone, Default)]
pub struct Plan {
    pub upserts: [Entries; 4],
    pub removals: [Vec<Vec<u8>>; 4],
    /// the new generation's filter, sorted and deduplicated
    pub bloom: Vec<ti_bloom_key>,
    pub settings: ti_settings,
    /// IOCs per address map in the new set
    pub counts: [usize; 4],
}

impl Plan {
    /// The writes that turn `installed` into `desired` (their [`IocSet::diff`], and the whole
    /// of `desired` for the new filter); refuses a set the maps cannot hold.
    pub fn new(
        installed: &IocSet,
        desired: &IocSet,
        enabled: bool,
        quarantine_vlan: u16,
    ) -> Result<Plan> {
        let mut plan = Plan {
            settings: settings_for(desired.iocs.keys(), enabled, quarantine_vlan),
            ..Plan::default()
        };
        let mut bloom: Vec<[u8; 20]> = Vec::with_capacity(desired.len());
        for net in desired.iocs.keys() {
            plan.counts[AddrMap::of(net) as usize] += 1;
            bloom.extend(bloom_cover(net).keys().iter().map(bloom_bytes));
        }
        for m in AddrMap::ALL {
            let (limit, what) = if m.is_lpm() {
                (MAX_CIDRS, "CIDR")
            } else {
                (MAX_EXACT, "single-address")
            };
            if plan.counts[m as usize] > limit {
                bail!(
                    "{} {} {what} IOCs, the kernel holds {limit} at most",
                    plan.counts[m as usize],
                    if m.is_v4() { "IPv4" } else { "IPv6" },
                );
            }
        }
        bloom.sort_unstable();
        bloom.dedup();
        if bloom.len() > MAX_BLOOM {
            bail!(
                "the IOCs need {} Bloom filter entries (addresses and CIDR buckets), a filter is \
                 sized for {MAX_BLOOM}",
                bloom.len()
            );
        }
        plan.bloom = bloom.iter().map(bloom_from_bytes).collect();
        let d = installed.diff(desired);
        for ioc in &d.added_or_changed {
            let (m, key) = addr_key(&ioc.net);
            plan.upserts[m as usize].push((key, bytes_of(&ioc_value(ioc)).to_vec()));
        }
        for net in d.removed {
            let (m, key) = addr_key(&net);
            plan.removals[m as usize].push(key);
        }
        Ok(plan)
    }

    pub fn upsert_count(&self) -> usize {
        self.upserts.iter().map(Vec::len).sum()
    }

    pub fn removal_count(&self) -> usize {
        self.removals.iter().map(Vec::len).sum()
    }
}

fn bloom_bytes(k: &ti_bloom_key) -> [u8; 20] {
    let mut out = [0; 20];
    out.copy_from_slice(bytes_of(k));
    out
}

fn bloom_from_bytes(b: &[u8; 20]) -> ti_bloom_key {
    abi::read(b).unwrap_or_default()
}

/// Progress of a long write: (phase, done, total). Phases: "hash", "trie", "bloom", "delete".
pub type Progress<'a> = &'a mut dyn FnMut(&'static str, usize, usize);

/// Where each generation's Bloom filter is. The one implementation over maps is
/// [`MapInMapBlooms`]; tests fake it.
pub trait BloomSlots: Send + Sync {
    /// Puts a new filter holding exactly `keys` in generation `gen`'s slot.
    fn replace(&self, gen: u32, keys: &[ti_bloom_key], progress: Progress<'_>) -> Result<()>;
    /// Adds keys to the filter in `gen`'s slot.
    fn add(&self, gen: u32, keys: &[ti_bloom_key]) -> Result<()>;
    /// Whether `gen`'s filter may hold `key`; None when the slot has no filter.
    fn probe(&self, gen: u32, key: &ti_bloom_key) -> Result<Option<bool>>;
}

/// `ti_bloom_fill`, the object's bulk loader (never attached), and its maps: it pushes keys
/// staged in an array into a generation's filter in the kernel, one BPF_PROG_TEST_RUN per
/// TI_BLOOM_STAGE keys instead of one syscall per key.
pub struct BulkFiller {
    prog: std::os::fd::OwnedFd,
    stage: MapHandle,
    ctl: MapHandle,
}

impl BulkFiller {
    /// The loader of a loaded tc_threatintel object; None when it has none.
    pub fn from_object(obj: &Object) -> Result<Option<BulkFiller>> {
        let Some(prog) = obj.progs().find(|p| p.name() == "ti_bloom_fill") else {
            return Ok(None);
        };
        let map = |name: &str| -> Result<MapHandle> {
            let m = obj
                .maps()
                .find(|m| m.name() == name)
                .with_context(|| format!("the threat-intel object has no map {name}"))?;
            MapHandle::try_from(&m).with_context(|| format!("duplicating map {name}"))
        };
        Ok(Some(BulkFiller {
            prog: prog
                .as_fd()
                .try_clone_to_owned()
                .context("duplicating ti_bloom_fill")?,
            stage: map("ti_bloom_stage")?,
            ctl: map("ti_bloom_fill_ctl")?,
        }))
    }

    /// Pushes up to TI_BLOOM_STAGE keys into generation `gen`'s filter; returns how many went
    /// in.
    fn run(&self, gen: u32, keys: &[ti_bloom_key]) -> Result<u32> {
        let count = keys.len().min(BLOOM_STAGE);
        let indexes: Vec<u8> = (0..count as u32).flat_map(u32::to_ne_bytes).collect();
        let values: Vec<u8> = keys[..count]
            .iter()
            .flat_map(|k| bytes_of(k).iter().copied())
            .collect();
        if self
            .stage
            .update_batch(
                &indexes,
                &values,
                count as u32,
                MapFlags::ANY,
                MapFlags::ANY,
            )
            .is_err()
        {
            for (i, k) in keys[..count].iter().enumerate() {
                self.stage
                    .update(&(i as u32).to_ne_bytes(), bytes_of(k), MapFlags::ANY)
                    .context("staging Bloom filter keys")?;
            }
        }
        let ctl = ti_bloom_fill_ctl {
            r#gen,
            count: count as u32,
            pushed: 0,
            failed: 0,
        };
        self.ctl
            .update(&0u32.to_ne_bytes(), bytes_of(&ctl), MapFlags::ANY)
            .context("writing ti_bloom_fill_ctl")?;
        // an XDP program runs on a frame: any will do
        let frame = [0u8; 64];
        let mut opts = libbpf_rs::libbpf_sys::bpf_test_run_opts {
            sz: std::mem::size_of::<libbpf_rs::libbpf_sys::bpf_test_run_opts>() as _,
            data_in: frame.as_ptr().cast(),
            data_size_in: frame.len() as u32,
            repeat: 1,
            ..Default::default()
        };
        // SAFETY: `opts` points at `frame`, which outlives the call; no output buffers.
        let rc = unsafe {
            libbpf_rs::libbpf_sys::bpf_prog_test_run_opts(self.prog.as_raw_fd(), &mut opts)
        };
        if rc < 0 {
            return Err(std::io::Error::from_raw_os_error(-rc))
                .context("running ti_bloom_fill (BPF_PROG_TEST_RUN)");
        }
        let done: ti_bloom_fill_ctl = self
            .ctl
            .lookup(&0u32.to_ne_bytes(), MapFlags::ANY)
            .context("reading ti_bloom_fill_ctl")?
            .and_then(|v| abi::read(&v))
            .context("ti_bloom_fill_ctl has no slot 0")?;
        Ok(done.pushed)
    }
}

/// `ti_blooms`: an ARRAY_OF_MAPS of BLOOM_FILTER maps, one slot per generation.
pub struct MapInMapBlooms {
    outer: MapHandle,
    filler: Option<BulkFiller>,
}

impl MapInMapBlooms {
    /// Fills filters with syscalls, or with `filler` where there is one.
    pub fn new(outer: MapHandle, filler: Option<BulkFiller>) -> Self {
        MapInMapBlooms { outer, filler }
    }

    /// The filter in `gen`'s slot, None when the slot is empty.
    fn inner(&self, gen: u32) -> Result<Option<MapHandle>> {
        let Some(id) = self
            .outer
            .lookup(&gen.to_ne_bytes(), MapFlags::ANY)
            .with_context(|| format!("reading ti_blooms[{gen}]"))?
        else {
            return Ok(None);
        };
        let id = u32::from_ne_bytes(
            id.get(..4)
                .and_then(|b| b.try_into().ok())
                .unwrap_or([0; 4]),
        );
        MapHandle::from_map_id(id)
            .with_context(|| format!("opening the Bloom filter of generation {gen} (map id {id})"))
            .map(Some)
    }

    /// A new empty filter shaped like the one in a slot, with its BTF: the kernel refuses an
    /// inner map of another shape, and before Linux 6.2 also one created without the BTF the
    /// object's filters have (their timer offset differs). Shaped as the object declares the
    /// filters when both slots are empty.
    fn create(&self) -> Result<MapHandle> {
        let sys = libbpf_rs::libbpf_sys::bpf_map_create_opts {
            sz: std::mem::size_of::<libbpf_rs::libbpf_sys::bpf_map_create_opts>() as _,
            map_extra: u64::from(BLOOM_HASHES),
            ..Default::default()
        };
        let (mut opts, mut value_size, mut max_entries) = (
            sys,
            std::mem::size_of::<ti_bloom_key>() as u32,
            MAX_BLOOM as u32,
        );
        let mut btf: Option<std::os::fd::OwnedFd> = None;
        for gen in 0..abi::GENERATIONS {
            let Some(m) = self.inner(gen)? else {
                continue;
            };
            let info = m.info().context("reading a Bloom filter's shape")?.info;
            value_size = info.value_size;
            max_entries = info.max_entries;
            opts.map_flags = info.map_flags;
            opts.map_extra = info.map_extra;
            if info.btf_id != 0 {
                // SAFETY: plain syscall wrapper; a non-negative result is a new descriptor we
                // own.
                let fd = unsafe { libbpf_rs::libbpf_sys::bpf_btf_get_fd_by_id(info.btf_id) };
                if fd >= 0 {
                    // SAFETY: `fd` was just returned to us and is owned by nothing else.
                    let owned = unsafe {
                        <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd)
                    };
                    opts.btf_fd = owned.as_raw_fd() as u32;
                    opts.btf_key_type_id = info.btf_key_type_id;
                    opts.btf_value_type_id = info.btf_value_type_id;
                    btf = Some(owned);
                }
            }
            break;
        }
        let created = MapHandle::create(
            MapType::BloomFilter,
            Some("ti_bloom"),
            0,
            value_size,
            max_entries,
            &opts,
        )
        .context("creating a Bloom filter map");
        drop(btf);
        created
    }
}

/// Pushes keys into a filter, spread over the CPUs for large sets (a push only sets bits).
fn fill_bloom(map: &MapHandle, keys: &[ti_bloom_key], progress: Progress<'_>) -> Result<()> {
    let push = |k: &ti_bloom_key| {
        map.update(&[], bytes_of(k), MapFlags::ANY)
            .context("adding to a Bloom filter")
    };
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get());
    if workers < 2 || keys.len() < PROGRESS_CHUNK / 4 {
        keys.iter().try_for_each(push)?;
        progress("bloom", keys.len(), keys.len());
        return Ok(());
    }
    let done = AtomicUsize::new(0);
    let share = keys.len().div_ceil(workers);
    std::thread::scope(|s| {
        let handles: Vec<_> = keys
            .chunks(share)
            .map(|part| {
                let done = &done;
                s.spawn(move || -> Result<()> {
                    for chunk in part.chunks(4096) {
                        chunk.iter().try_for_each(push)?;
                        done.fetch_add(chunk.len(), Ordering::Relaxed);
                    }
                    Ok(())
                })
            })
            .collect();
        while !handles.iter().all(|h| h.is_finished()) {
            progress("bloom", done.load(Ordering::Relaxed), keys.len());
            std::thread::sleep(Duration::from_millis(100));
        }
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(anyhow::anyhow!("Bloom filter writer panicked")))
            })
            .collect::<Result<Vec<()>>>()
    })?;
    progress("bloom", keys.len(), keys.len());
    Ok(())
}

impl BloomSlots for MapInMapBlooms {
    /// The fresh filter goes into the slot first (the generation is not the active one), then
    /// it is filled: by the bulk loader where there is one, which finds it there.
    fn replace(&self, gen: u32, keys: &[ti_bloom_key], progress: Progress<'_>) -> Result<()> {
        let fresh = self.create()?;
        let fd = fresh.as_fd().as_raw_fd() as u32;
        self.outer
            .update(&gen.to_ne_bytes(), &fd.to_ne_bytes(), MapFlags::ANY)
            .with_context(|| format!("swapping a new Bloom filter into ti_blooms[{gen}]"))?;
        let Some(filler) = &self.filler else {
            return fill_bloom(&fresh, keys, progress);
        };
        let mut done = 0;
        for chunk in keys.chunks(BLOOM_STAGE) {
            let pushed = filler.run(gen, chunk)? as usize;
            if pushed < chunk.len() {
                // whatever the loader could not push (a filter not found): one by one
                fill_bloom(&fresh, chunk, &mut |_, _, _| {})?;
            }
            done += chunk.len();
            progress("bloom", done, keys.len());
        }
        if keys.is_empty() {
            progress("bloom", 0, 0);
        }
        Ok(())
        // `fresh` closes here: the slot keeps the filter alive.
    }

    fn add(&self, gen: u32, keys: &[ti_bloom_key]) -> Result<()> {
        match self.inner(gen)? {
            Some(m) => keys.iter().try_for_each(|k| {
                m.update(&[], bytes_of(k), MapFlags::ANY)
                    .context("adding to the active Bloom filter")
            }),
            // No filter: the kernel does not look up this generation.
            None => Ok(()),
        }
    }

    fn probe(&self, gen: u32, key: &ti_bloom_key) -> Result<Option<bool>> {
        match self.inner(gen)? {
            Some(m) => Ok(Some(
                m.lookup_bloom_filter(bytes_of(key))
                    .context("probing a Bloom filter")?,
            )),
            None => Ok(None),
        }
    }
}

/// The active generation's settings as the kernel reads them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct TiState {
    pub generation: u32,
    pub enabled: bool,
    pub quarantine_vlan: u16,
    /// `enum ti_settings_flags`
    pub flags: u32,
}

/// IOCs per address map, in [`AddrMap::ALL`] order.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct IocCounts {
    pub exact_v4: usize,
    pub exact_v6: usize,
    pub cidr_v4: usize,
    pub cidr_v6: usize,
}

impl IocCounts {
    pub fn total(&self) -> usize {
        self.exact_v4 + self.exact_v6 + self.cidr_v4 + self.cidr_v6
    }

    fn from_array(a: [usize; 4]) -> Self {
        IocCounts {
            exact_v4: a[0],
            exact_v6: a[1],
            cidr_v4: a[2],
            cidr_v6: a[3],
        }
    }
}

/// What one [`ThreatIntelMaps::apply`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct ApplyReport {
    /// the generation now active
    pub generation: u32,
    /// IOCs written (new or changed)
    pub upserts: usize,
    pub removed: usize,
    pub iocs: IocCounts,
    /// entries of the new filter
    pub bloom_keys: usize,
    pub flags: u32,
}

/// How `ti add` changed the kernel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Added {
    /// what the network was listed as before, if it was
    pub replaced: Option<Ioc>,
    /// false when threat intel is off in the active generation (stored, not matched)
    pub enabled: bool,
}

pub struct ThreatIntelMaps {
    blooms: Box<dyn BloomSlots>,
    /// in [`AddrMap::ALL`] order
    sets: [MapHandle; 4],
    active_gen: MapHandle,
    settings: MapHandle,
    stats: MapHandle,
    /// what the hashes and tries hold, as far as this process knows; None until first needed
    /// (then read back from the kernel) and after a failed write
    installed: Mutex<Option<IocSet>>,
}

impl ThreatIntelMaps {
    fn open(
        mut get: impl FnMut(&str) -> Result<MapHandle>,
        filler: Option<BulkFiller>,
    ) -> Result<Self> {
        Ok(ThreatIntelMaps {
            blooms: Box::new(MapInMapBlooms::new(get("ti_blooms")?, filler)),
            sets: [
                get("ti_ioc_v4")?,
                get("ti_ioc_v6")?,
                get("ti_lpm_v4")?,
                get("ti_lpm_v6")?,
            ],
            active_gen: get("ti_active_gen")?,
            settings: get("ti_settings")?,
            stats: get("ti_stats")?,
            installed: Mutex::new(None),
        })
    }

    /// The maps of a loaded tc_threatintel object, filling filters with its bulk loader.
    pub fn from_object(obj: &Object) -> Result<Self> {
        Self::open(
            |name| {
                let map = obj
                    .maps()
                    .find(|m| m.name() == name)
                    .with_context(|| format!("the threat-intel object has no map {name}"))?;
                MapHandle::try_from(&map).with_context(|| format!("duplicating map {name}"))
            },
            BulkFiller::from_object(obj)?,
        )
    }

    /// The pinned maps (the bulk loader is not pinned: filters are filled by syscalls).
    pub fn from_pins(pin_root: &Path) -> Result<Self> {
        Self::open(|name| open_pinned(pin_root, name), None)
    }

    fn installed(&self) -> std::sync::MutexGuard<'_, Option<IocSet>> {
        self.installed
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    pub fn active_generation(&self) -> Result<u32> {
        let v = self
            .active_gen
            .lookup(&0u32.to_ne_bytes(), MapFlags::ANY)?
            .context("ti_active_gen has no slot 0")?;
        Ok(u32::from_ne_bytes(v[..4].try_into()?) & 1)
    }

    fn read_settings(&self, gen: u32) -> Result<ti_settings> {
        let v = self
            .settings
            .lookup(&gen.to_ne_bytes(), MapFlags::ANY)
            .with_context(|| format!("reading ti_settings[{gen}]"))?
            .with_context(|| format!("ti_settings has no slot {gen}"))?;
        abi::read(&v).context("ti_settings value too short")
    }

    fn write_settings(&self, gen: u32, s: &ti_settings) -> Result<()> {
        self.settings
            .update(&gen.to_ne_bytes(), bytes_of(s), MapFlags::ANY)
            .with_context(|| format!("writing ti_settings[{gen}]"))
    }

    /// The active generation's settings.
    pub fn state(&self) -> Result<TiState> {
        let generation = self.active_generation()?;
        let s = self.read_settings(generation)?;
        Ok(TiState {
            generation,
            enabled: s.flags & ti_settings_flags::TI_SET_ENABLED.0 != 0,
            quarantine_vlan: s.quarantine_vlan,
            flags: s.flags,
        })
    }

    /// Reads every IOC the hashes and tries hold (category names are the daemon's: none).
    fn read_back(&self) -> Result<IocSet> {
        let mut all = Vec::new();
        for (m, map) in AddrMap::ALL.into_iter().zip(&self.sets) {
            for_each_entry(map, |k, v| {
                let ioc = decode_addr_key(m, k)
                    .zip(abi::read::<ti_ioc>(v))
                    .and_then(|(net, value)| ioc_of(net, &value));
                all.extend(ioc);
            })?;
        }
        all.sort_unstable_by_key(|i| i.net);
        Ok(IocSet {
            iocs: all.into_iter().map(|i| (i.net, i)).collect(),
            categories: Vec::new(),
        })
    }

    /// Forgets what this process believed the kernel holds and reads it again (after other
    /// processes changed the maps: `ti add`, `ti del`, `ti load`).
    pub fn resync(&self) -> Result<usize> {
        let set = self.read_back()?;
        let n = set.iocs.len();
        *self.installed() = Some(set);
        Ok(n)
    }

    /// Makes `set` what tc_threatintel matches: see the module documentation.
    pub fn apply(&self, set: &IocSet, quarantine_vlan: u16, enabled: bool) -> Result<ApplyReport> {
        self.apply_with(set, quarantine_vlan, enabled, &mut |_, _, _| {})
    }

    /// [`Self::apply`], reporting progress.
    pub fn apply_with(
        &self,
        set: &IocSet,
        quarantine_vlan: u16,
        enabled: bool,
        progress: Progress<'_>,
    ) -> Result<ApplyReport> {
        let mut guard = self.installed();
        // Unknown until this write has gone through.
        let installed = match guard.take() {
            Some(s) => s,
            None => self.read_back()?,
        };
        let plan = Plan::new(&installed, set, enabled, quarantine_vlan)?;
        drop(installed);

        // 1. New and changed IOCs: nothing probes for them before the flip but false
        //    positives of the old filter, which then match them a little early.
        let total = plan.upsert_count();
        let mut done = 0;
        for (m, entries) in AddrMap::ALL.into_iter().zip(&plan.upserts) {
            let phase = if m.is_lpm() { "trie" } else { "hash" };
            for chunk in entries.chunks(PROGRESS_CHUNK) {
                put_all(&self.sets[m as usize], chunk)?;
                done += chunk.len();
                progress(phase, done, total);
            }
        }
        // 2. The inactive generation: a fresh filter, then its settings.
        let next = self.active_generation()? ^ 1;
        self.blooms.replace(next, &plan.bloom, progress)?;
        self.write_settings(next, &plan.settings)?;
        // 3. The flip.
        self.active_gen
            .update(&0u32.to_ne_bytes(), &next.to_ne_bytes(), MapFlags::ANY)
            .context("flipping ti_active_gen")?;
        // 4. Removed IOCs.
        let total = plan.removal_count();
        let mut done = 0;
        for (map, keys) in self.sets.iter().zip(&plan.removals) {
            delete_keys(map, keys)?;
            done += keys.len();
            if total > 0 {
                progress("delete", done, total);
            }
        }
        *guard = Some(set.clone());
        Ok(ApplyReport {
            generation: next,
            upserts: plan.upsert_count(),
            removed: plan.removal_count(),
            iocs: IocCounts::from_array(plan.counts),
            bloom_keys: plan.bloom.len(),
            flags: plan.settings.flags,
        })
    }

    /// Adds (or replaces) one IOC at once: its hash or trie entry, its keys in the active
    /// generation's filter, and the CIDR flags it needs there.
    pub fn add(&self, ioc: &Ioc) -> Result<Added> {
        let net = ioc.net.trunc();
        let ioc = Ioc { net, ..ioc.clone() };
        let (m, key) = addr_key(&net);
        let map = &self.sets[m as usize];
        let replaced = map
            .lookup(&key, MapFlags::ANY)
            .context("reading the IOC maps")?
            .and_then(|v| abi::read::<ti_ioc>(&v))
            .and_then(|v| ioc_of(net, &v));
        map.update(&key, bytes_of(&ioc_value(&ioc)), MapFlags::ANY)
            .with_context(|| format!("writing {}", map.name().to_string_lossy()))?;
        let gen = self.active_generation()?;
        self.blooms.add(gen, bloom_cover(&net).keys())?;
        let mut s = self.read_settings(gen)?;
        let flags = s.flags | cidr_flags([&net]);
        if flags != s.flags {
            s.flags = flags;
            self.write_settings(gen, &s)?;
        }
        if let Some(set) = self.installed().as_mut() {
            set.iocs.insert(net, ioc);
        }
        Ok(Added {
            replaced,
            enabled: s.flags & ti_settings_flags::TI_SET_ENABLED.0 != 0,
        })
    }

    /// Removes one IOC from its hash or trie (the filter keeps its keys: they only cost a
    /// confirmation lookup until the next refresh). After the last CIDR of a family, or the
    /// last one too short to bucket, the active generation's flags stop walking that trie.
    /// False when the network was no IOC.
    pub fn del(&self, net: &IpNet) -> Result<bool> {
        let net = net.trunc();
        let (m, key) = addr_key(&net);
        let map = &self.sets[m as usize];
        let removed = match map.delete(&key) {
            Ok(()) => true,
            Err(e) if e.kind() == ErrorKind::NotFound => false,
            Err(e) => {
                return Err(e)
                    .with_context(|| format!("deleting from {}", map.name().to_string_lossy()))
            }
        };
        if let Some(set) = self.installed().as_mut() {
            set.iocs.remove(&net);
        }
        if removed && m.is_lpm() {
            let remaining: Vec<IpNet> = map.keys().filter_map(|k| decode_addr_key(m, &k)).collect();
            let gen = self.active_generation()?;
            let mut s = self.read_settings(gen)?;
            let bits = family_cidr_bits(m.is_v4());
            let flags = (s.flags & !bits) | (cidr_flags(&remaining) & bits);
            if flags != s.flags {
                s.flags = flags;
                self.write_settings(gen, &s)?;
            }
        }
        Ok(removed)
    }

    /// The IOCs an address is: the exact one, then every CIDR containing it, longest first.
    pub fn lookup(&self, ip: IpAddr) -> Result<Vec<Ioc>> {
        let host = IpNet::from(ip);
        let mut out = Vec::new();
        let (m, key) = addr_key(&host);
        let exact = self.sets[m as usize]
            .lookup(&key, MapFlags::ANY)
            .context("reading the IOC hash")?;
        if let Some(ioc) = exact
            .and_then(|v| abi::read::<ti_ioc>(&v))
            .and_then(|v| ioc_of(host, &v))
        {
            out.push(ioc);
        }
        let trie = if ip.is_ipv4() {
            AddrMap::LpmV4
        } else {
            AddrMap::LpmV6
        };
        let mut cidrs = Vec::new();
        for_each_entry(&self.sets[trie as usize], |k, v| {
            let ioc = decode_addr_key(trie, k)
                .filter(|net| net.contains(&ip))
                .zip(abi::read::<ti_ioc>(v))
                .and_then(|(net, value)| ioc_of(net, &value));
            cidrs.extend(ioc);
        })?;
        cidrs.sort_by_key(|i| std::cmp::Reverse(i.net.prefix_len()));
        out.extend(cidrs);
        Ok(out)
    }

    /// Whether the active generation's filter answers positive for the address (exact or
    /// bucket probe); None when the generation has no filter.
    pub fn bloom_positive(&self, ip: IpAddr) -> Result<Option<bool>> {
        let gen = self.active_generation()?;
        let exact = self.blooms.probe(gen, &exact_bloom_key(ip))?;
        let bucket = self.blooms.probe(gen, &bucket_bloom_key(ip))?;
        Ok(match (exact, bucket) {
            (Some(a), Some(b)) => Some(a || b),
            _ => None,
        })
    }

    /// Every IOC the kernel holds now, by network (read from the maps, so that changes of
    /// other processes show; what this handle believes it installed is updated with it).
    pub fn list(&self) -> Result<Vec<Ioc>> {
        let set = self.read_back()?;
        let out = set.iocs.values().cloned().collect();
        *self.installed() = Some(set);
        Ok(out)
    }

    /// The IOCs the kernel holds, per address map.
    pub fn counts(&self) -> Result<IocCounts> {
        if let Some(set) = self.installed().as_ref() {
            let mut a = [0; 4];
            for net in set.iocs.keys() {
                a[AddrMap::of(net) as usize] += 1;
            }
            return Ok(IocCounts::from_array(a));
        }
        let mut a = [0; 4];
        for (n, map) in a.iter_mut().zip(&self.sets) {
            *n = count_entries(map)?;
        }
        Ok(IocCounts::from_array(a))
    }

    /// Packets per enum ti_stat slot, summed over CPUs.
    pub fn stats(&self) -> Result<[u64; TI_STAT_COUNT]> {
        let mut out = [0; TI_STAT_COUNT];
        for (slot, v) in out.iter_mut().enumerate() {
            *v = percpu_sum_u64(&self.stats, slot as u32)?;
        }
        Ok(out)
    }
}

/// A ti_stats slot's short name (`stats`, `status`, the metric's `result` label).
pub fn stat_name(stat: ti_stat) -> &'static str {
    match stat {
        ti_stat::TI_STAT_SEEN => "seen",
        ti_stat::TI_STAT_BLOOM_NEGATIVE => "bloom_negative",
        ti_stat::TI_STAT_BLOOM_FALSE_POSITIVE => "bloom_false_positive",
        ti_stat::TI_STAT_MATCH_ALERT => "match_alert",
        ti_stat::TI_STAT_MATCH_DROP => "match_drop",
        ti_stat::TI_STAT_MATCH_QUARANTINE => "match_quarantine",
        ti_stat::TI_STAT_QUARANTINE_FAILED => "quarantine_failed",
        ti_stat::TI_STAT_EVENTS_SENT => "events_sent",
        ti_stat::TI_STAT_EVENTS_DROPPED => "events_dropped",
        _ => "unknown",
    }
}

/// One feed as the daemon last fetched it, for `ti feeds` and the metrics.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FeedStatus {
    /// the config's `id`
    pub id: String,
    /// its index: the kernel's `ti_ioc.feed_id`
    pub feed_id: u16,
    /// the URL or path
    pub source: String,
    /// IOCs it contributed at its last successful refresh (before the merge)
    pub entries: u64,
    /// Unix seconds of the last successful refresh; None before the first
    pub last_refresh: Option<u64>,
    /// Unix seconds of the last attempt
    pub last_attempt: Option<u64>,
    /// the last attempt's error; None when it went through
    pub last_error: Option<String>,
    /// failed attempts since the daemon started
    pub errors: u64,
}

/// The feeds status file: written by the daemon after every refresh.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FeedsFile {
    pub pid: u32,
    /// Unix seconds of the write
    pub updated: u64,
    /// IOCs in the kernel after the merge
    pub iocs: u64,
    pub feeds: Vec<FeedStatus>,
}

impl FeedsFile {
    /// The name of a feed id: the config's id, `manual`, or `feed N`.
    pub fn feed_name(&self, feed_id: u16) -> String {
        feed_name(Some(self), feed_id)
    }
}

/// The name of a feed id given what the daemon wrote, if anything.
pub fn feed_name(file: Option<&FeedsFile>, feed_id: u16) -> String {
    if feed_id == MANUAL_FEED {
        return "manual".to_string();
    }
    file.and_then(|f| f.feeds.iter().find(|s| s.feed_id == feed_id))
        .map(|s| s.id.clone())
        .unwrap_or_else(|| format!("feed {feed_id}"))
}

/// /run/ebpfsentinel/<pin root mangled>-feeds.json, next to the daemon's state file.
pub fn feeds_status_path(pin_root: &Path) -> PathBuf {
    crate::state::side_file_path(pin_root, "feeds")
}

pub fn read_feeds_status(pin_root: &Path) -> Option<FeedsFile> {
    crate::state::read_side_file(&feeds_status_path(pin_root))
}

pub fn write_feeds_status(pin_root: &Path, file: &FeedsFile) -> Result<()> {
    crate::state::write_json_atomically(&feeds_status_path(pin_root), file)
}

const _: () = assert!(abi::GENERATIONS == 2);

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> IpNet {
        s.parse().unwrap()
    }

    fn ioc(s: &str, feed_id: u16, action: TiAction) -> Ioc {
        Ioc {
            net: net(s),
            feed_id,
            confidence: 90,
            category: 1,
            action,
        }
    }

    fn set(iocs: &[Ioc]) -> IocSet {
        IocSet {
            iocs: iocs.iter().map(|i| (i.net, i.clone())).collect(),
            categories: Vec::new(),
        }
    }

    fn addr_of(k: &ti_bloom_key) -> IpAddr {
        let v6 = Ipv6Addr::from(k.addr);
        match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(v6),
        }
    }

    const EXACT: u8 = ti_bloom_kind::TI_BLOOM_EXACT.0 as u8;
    const BUCKET: u8 = ti_bloom_kind::TI_BLOOM_BUCKET.0 as u8;

    #[test]
    fn ipv4_bloom_keys_are_v4_mapped() {
        let k = exact_bloom_key("192.0.2.7".parse().unwrap());
        assert_eq!(k.kind, EXACT);
        assert_eq!(k.pad, [0; 3]);
        assert_eq!(
            k.addr,
            [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 192, 0, 2, 7]
        );
        // the kernel's bucket probe: the same key with kind BUCKET and the last 16 bits cleared
        let b = bucket_bloom_key("192.0.2.7".parse().unwrap());
        assert_eq!(b.kind, BUCKET);
        assert_eq!(
            b.addr,
            [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 192, 0, 0, 0]
        );
        assert_eq!(bloom_bytes(&k).len(), 20);
        assert_eq!(bloom_bytes(&k)[0], EXACT);
    }

    #[test]
    fn ipv6_bucket_keeps_the_first_32_bits() {
        let b = bucket_bloom_key("2001:db8:1234:5678::1".parse().unwrap());
        let mut want = [0u8; 16];
        want[..4].copy_from_slice(&[0x20, 0x01, 0x0d, 0xb8]);
        assert_eq!((b.kind, b.addr), (BUCKET, want));
        let e = exact_bloom_key("2001:db8::1".parse().unwrap());
        assert_eq!(e.addr, "2001:db8::1".parse::<Ipv6Addr>().unwrap().octets());
    }

    #[test]
    fn cidrs_cover_every_bucket_they_overlap() {
        let keys = |s: &str| match bloom_cover(&net(s)) {
            BloomCover::Buckets(k) => k.iter().map(addr_of).collect::<Vec<_>>(),
            other => panic!("{s}: {other:?}"),
        };
        // inside one bucket
        assert_eq!(keys("198.51.100.0/24"), vec![IpAddr::from([198, 51, 0, 0])]);
        assert_eq!(keys("10.1.0.0/16"), vec![IpAddr::from([10, 1, 0, 0])]);
        // a /14: four /16 buckets
        assert_eq!(
            keys("10.4.0.0/14"),
            (4..8u8)
                .map(|b| IpAddr::from([10, b, 0, 0]))
                .collect::<Vec<_>>()
        );
        // the shortest bucketed v4 CIDR: 256 buckets
        let eight = keys("10.0.0.0/8");
        assert_eq!(eight.len(), 256);
        assert_eq!(eight[255], IpAddr::from([10, 255, 0, 0]));
        // not truncated on input: truncated here
        assert_eq!(keys("10.1.2.3/16"), vec![IpAddr::from([10, 1, 0, 0])]);
        // v6
        assert_eq!(
            keys("2001:db8:ff00::/40"),
            vec!["2001:db8::".parse::<IpAddr>().unwrap()]
        );
        let v6 = keys("2001:db8::/30");
        assert_eq!(v6.len(), 4);
        assert_eq!(v6[3], "2001:dbb::".parse::<IpAddr>().unwrap());
        assert_eq!(keys("2000::/20").len(), 4096);
        // every bucket key is what the kernel probes for an address inside
        for s in ["10.4.0.0/14", "2001:db8::/30", "203.0.113.128/25"] {
            let n = net(s);
            let cover: Vec<[u8; 20]> = bloom_cover(&n).keys().iter().map(bloom_bytes).collect();
            for a in [n.network(), n.broadcast()] {
                assert!(
                    cover.contains(&bloom_bytes(&bucket_bloom_key(a))),
                    "{s} {a}"
                );
            }
        }
    }

    #[test]
    fn hosts_are_exact_and_short_cidrs_walk_the_trie() {
        assert!(
            matches!(bloom_cover(&net("192.0.2.1/32")), BloomCover::Exact(k) if k.kind == EXACT)
        );
        assert!(matches!(
            bloom_cover(&net("2001:db8::1/128")),
            BloomCover::Exact(_)
        ));
        assert!(matches!(
            bloom_cover(&net("10.0.0.0/7")),
            BloomCover::TrieAlways
        ));
        assert!(matches!(
            bloom_cover(&net("0.0.0.0/0")),
            BloomCover::TrieAlways
        ));
        assert!(matches!(
            bloom_cover(&net("2000::/19")),
            BloomCover::TrieAlways
        ));
        assert!(bloom_cover(&net("2000::/19")).keys().is_empty());
    }

    #[test]
    fn flags_follow_the_cidrs() {
        use ti_settings_flags as F;
        let nets = |v: &[&str]| v.iter().map(|s| net(s)).collect::<Vec<_>>();
        assert_eq!(cidr_flags(&nets(&["192.0.2.1/32", "2001:db8::1/128"])), 0);
        assert_eq!(cidr_flags(&nets(&["10.0.0.0/8"])), F::TI_SET_CIDRS_V4.0);
        assert_eq!(
            cidr_flags(&nets(&["10.0.0.0/7", "2001:db8::/32"])),
            F::TI_SET_CIDRS_V4.0 | F::TI_SET_TRIE_ALWAYS_V4.0 | F::TI_SET_CIDRS_V6.0
        );
        assert_eq!(
            cidr_flags(&nets(&["2000::/3"])),
            F::TI_SET_CIDRS_V6.0 | F::TI_SET_TRIE_ALWAYS_V6.0
        );
        let s = settings_for(&nets(&["10.0.0.0/16"]), true, 666);
        assert_eq!(s.flags, F::TI_SET_ENABLED.0 | F::TI_SET_CIDRS_V4.0);
        assert_eq!(s.quarantine_vlan, 666);
        assert_eq!(settings_for(&nets(&[]), false, 0).flags, 0);
    }

    #[test]
    fn keys_round_trip() {
        for s in [
            "192.0.2.7/32",
            "2001:db8::7/128",
            "10.0.0.0/8",
            "2001:db8::/32",
            "0.0.0.0/0",
            "::/0",
        ] {
            let n = net(s);
            let (m, key) = addr_key(&n);
            assert_eq!(decode_addr_key(m, &key), Some(n), "{s}");
        }
        let (m, key) = addr_key(&net("10.1.2.3/8"));
        assert_eq!(m, AddrMap::LpmV4);
        let mut want = 8u32.to_ne_bytes().to_vec();
        want.extend([10, 0, 0, 0]);
        assert_eq!(key, want);
        assert_eq!(addr_key(&net("192.0.2.7/32")).1, vec![192, 0, 2, 7]);
        assert_eq!(
            decode_addr_key(AddrMap::LpmV4, &[33, 0, 0, 0, 1, 2, 3, 4]),
            None
        );
        assert_eq!(decode_addr_key(AddrMap::ExactV6, &[1, 2, 3]), None);
    }

    #[test]
    fn iocs_round_trip_through_the_kernel_value() {
        for action in [TiAction::Alert, TiAction::Drop, TiAction::Quarantine] {
            let i = ioc("203.0.113.0/24", 3, action);
            let v = ioc_value(&i);
            assert_eq!((v.feed_id, v.confidence, v.category), (3, 90, 1));
            assert_eq!(action_of(v.action), Some(action));
            assert_eq!(ioc_of(i.net, &v), Some(i));
        }
        let bad = ti_ioc {
            action: 9,
            ..Default::default()
        };
        assert_eq!(ioc_of(net("192.0.2.1/32"), &bad), None);
        assert_eq!(parse_action("DROP"), Ok(TiAction::Drop));
        assert!(parse_action("block")
            .unwrap_err()
            .contains("alert, drop or quarantine"));
    }

    #[test]
    fn the_plan_writes_the_diff_and_the_whole_filter() {
        let old = set(&[
            ioc("192.0.2.1/32", 0, TiAction::Drop),
            ioc("10.0.0.0/8", 1, TiAction::Alert),
        ]);
        let new = set(&[
            ioc("192.0.2.1/32", 0, TiAction::Drop),
            ioc("198.51.100.0/24", 1, TiAction::Drop),
            ioc("198.51.100.7/32", 1, TiAction::Drop),
            ioc("198.51.0.0/16", 1, TiAction::Drop),
            ioc("2001:db8::5/128", 2, TiAction::Alert),
            ioc("2000::/12", 2, TiAction::Alert),
        ]);
        let plan = Plan::new(&old, &new, true, 100).unwrap();
        // unchanged 192.0.2.1 is not written again
        assert_eq!(plan.upserts[AddrMap::ExactV4 as usize].len(), 1);
        assert_eq!(plan.upserts[AddrMap::ExactV6 as usize].len(), 1);
        assert_eq!(plan.upserts[AddrMap::LpmV4 as usize].len(), 2);
        assert_eq!(plan.upserts[AddrMap::LpmV6 as usize].len(), 1);
        assert_eq!(
            plan.removals[AddrMap::LpmV4 as usize],
            vec![addr_key(&net("10.0.0.0/8")).1]
        );
        assert_eq!((plan.upsert_count(), plan.removal_count()), (5, 1));
        assert_eq!(plan.counts, [2, 1, 2, 1]);
        // the filter holds every IOC, unchanged ones too; the two v4 CIDRs share a bucket
        let exact = |a: &str| bloom_bytes(&exact_bloom_key(a.parse().unwrap()));
        let bytes: Vec<[u8; 20]> = plan.bloom.iter().map(bloom_bytes).collect();
        assert!(bytes.contains(&exact("192.0.2.1")));
        assert!(bytes.contains(&exact("198.51.100.7")));
        assert!(bytes.contains(&exact("2001:db8::5")));
        assert!(bytes.contains(&bloom_bytes(&bucket_bloom_key(
            "198.51.1.1".parse().unwrap()
        ))));
        assert_eq!(plan.bloom.len(), 3 + 1);
        assert!(
            bytes.windows(2).all(|w| w[0] < w[1]),
            "sorted, no duplicates"
        );
        use ti_settings_flags as F;
        assert_eq!(
            plan.settings.flags,
            F::TI_SET_ENABLED.0
                | F::TI_SET_CIDRS_V4.0
                | F::TI_SET_CIDRS_V6.0
                | F::TI_SET_TRIE_ALWAYS_V6.0
        );
        assert_eq!(plan.settings.quarantine_vlan, 100);
        // the written value is the IOC's
        let (k, v) = &plan.upserts[AddrMap::ExactV6 as usize][0];
        assert_eq!(
            decode_addr_key(AddrMap::ExactV6, k),
            Some(net("2001:db8::5/128"))
        );
        assert_eq!(abi::read::<ti_ioc>(v).unwrap().feed_id, 2);
    }

    #[test]
    fn the_plan_refuses_more_than_the_filter_holds() {
        let plan_of = |nets: Vec<IpNet>| {
            let desired: Vec<Ioc> = nets
                .into_iter()
                .map(|n| ioc(&n.to_string(), 0, TiAction::Drop))
                .collect();
            Plan::new(&IocSet::default(), &set(&desired), true, 0)
        };
        // every /8: 65536 buckets
        let eights = (0..=255u8).map(|a| net(&format!("{a}.0.0.0/8"))).collect();
        assert_eq!(plan_of(eights).unwrap().bloom.len(), 65536);
        // 600 IPv6 /20s: 4096 buckets each, more than 2^21 in all
        let twenties = (0..600u32)
            .map(|a| {
                net(&format!(
                    "{:x}:{:x}::/20",
                    0x2000 + (a >> 4),
                    (a & 0xf) << 12
                ))
            })
            .collect();
        let err = plan_of(twenties).unwrap_err().to_string();
        assert!(err.contains("2457600 Bloom filter entries"), "{err}");
    }

    #[test]
    fn feeds_status_names_and_path() {
        let file = FeedsFile {
            feeds: vec![FeedStatus {
                id: "feodo".into(),
                feed_id: 0,
                ..Default::default()
            }],
            ..Default::default()
        };
        assert_eq!(file.feed_name(0), "feodo");
        assert_eq!(file.feed_name(7), "feed 7");
        assert_eq!(feed_name(None, MANUAL_FEED), "manual");
        let p = feeds_status_path(Path::new("/sys/fs/bpf/ebpfsentinel"));
        assert_eq!(
            p,
            Path::new("/run/ebpfsentinel/_sys_fs_bpf_ebpfsentinel-feeds.json")
        );
        let back: FeedsFile = serde_json::from_slice(&serde_json::to_vec(&file).unwrap()).unwrap();
        assert_eq!(back, file);
    }

    #[test]
    fn every_stat_slot_has_a_name() {
        let names: std::collections::HashSet<&str> = (0..TI_STAT_COUNT as u32)
            .map(|s| stat_name(ti_stat(s)))
            .collect();
        assert_eq!(names.len(), TI_STAT_COUNT);
        assert!(!names.contains("unknown"));
    }
}
