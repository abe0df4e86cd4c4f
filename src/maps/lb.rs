//! xdp_lb's maps: services, backends, Maglev rings, the reverse mapping for replies, and
//! counters. A change is written so that a packet in between finds either the old or the new
//! backend of its flow, never a missing one: new backends before the ring slots that name
//! them, ring slots before the service key that leads to them, and removals last.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};

use anyhow::{Context, Result};
use libbpf_rs::{MapCore, MapFlags, MapHandle, Object};

use super::{open_pinned, percpu_sum_u64};
use crate::abi::{
    bytes_of, lb_backend, lb_limits, lb_reverse_key, lb_service, lb_service_key, lb_service_stats,
    lb_stat, read,
};
use crate::lb::maglev;
use crate::lb::ServiceView;

/// Every map xdp_lb owns, by the name it is pinned under.
pub const LB_MAP_NAMES: [&str; 20] = [
    "lb_services",
    "lb_backends",
    "lb_ring",
    "lb_reverse",
    "lb_stats",
    "lb_service_stats",
    "lb_mirror_slots",
    "lb_mirror_match",
    "lb_mirror_0",
    "lb_mirror_1",
    "lb_mirror_2",
    "lb_mirror_3",
    "lb_mirror_4",
    "lb_mirror_5",
    "lb_mirror_6",
    "lb_mirror_7",
    "lb_cpus",
    "lb_cpu_set",
    "lb_cpu_count",
    "lb_cpu_landed",
];

/// Egress interfaces whose forwarded packets can be mirrored.
pub const MIRROR_EGRESS: usize = lb_limits::LB_MIRROR_EGRESS.0 as usize;

pub const LB_STAT_COUNT: usize = lb_stat::LB_STAT_COUNT.0 as usize;
const STRIDE: u32 = lb_limits::LB_RING_STRIDE.0;
const PER_SERVICE: u32 = lb_limits::LB_MAX_BACKENDS_PER_SERVICE.0;
const NO_BACKEND: u32 = lb_limits::LB_NO_BACKEND.0;

/// Every lb_stats slot, in enum order, with its short name.
pub const LB_STATS: [(lb_stat, &str); LB_STAT_COUNT] = [
    (lb_stat::LB_STAT_SEEN, "seen"),
    (lb_stat::LB_STAT_MISS, "miss"),
    (lb_stat::LB_STAT_FORWARDED, "forwarded"),
    (lb_stat::LB_STAT_FORWARDED_STACK, "forwarded_stack"),
    (lb_stat::LB_STAT_NO_BACKEND, "no_backend"),
    (lb_stat::LB_STAT_REPLY, "reply"),
    (lb_stat::LB_STAT_REPLY_LOCAL, "reply_local"),
    (lb_stat::LB_STAT_UNSUPPORTED, "unsupported"),
    (lb_stat::LB_STAT_MIRRORED, "mirrored"),
    (lb_stat::LB_STAT_STEERED, "steered"),
];

fn family_and_bytes(ip: IpAddr) -> (u8, [u8; 16]) {
    let mut out = [0u8; 16];
    match ip {
        IpAddr::V4(v4) => {
            out[..4].copy_from_slice(&v4.octets());
            (0, out)
        }
        IpAddr::V6(v6) => (1, v6.octets()),
    }
}

pub fn service_key(vip: IpAddr, port: u16, proto: u8) -> lb_service_key {
    let (family, addr) = family_and_bytes(vip);
    lb_service_key {
        vip: addr,
        port: port.to_be(),
        proto,
        family,
    }
}

pub fn reverse_key(addr: SocketAddr, proto: u8) -> lb_reverse_key {
    let (family, bytes) = family_and_bytes(addr.ip());
    lb_reverse_key {
        addr: bytes,
        port: addr.port().to_be(),
        proto,
        family,
    }
}

/// Counters of one service, summed over CPUs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ServiceCounters {
    pub packets: u64,
    pub bytes: u64,
    pub no_backend: u64,
}

/// What this process wrote for one service.
#[derive(Debug, Clone)]
struct Installed {
    key: lb_service_key,
    index: u32,
    proto: u8,
    /// backend -> its slot within the service
    slots: BTreeMap<SocketAddr, u32>,
    ring: Vec<u32>,
}

pub struct LbMaps {
    services: MapHandle,
    backends: MapHandle,
    ring: MapHandle,
    reverse: MapHandle,
    stats: MapHandle,
    service_stats: MapHandle,
    mirror_slots: MapHandle,
    mirror_match: MapHandle,
    mirrors: Vec<MapHandle>,
    cpus: MapHandle,
    cpu_set: MapHandle,
    cpu_count: MapHandle,
    cpu_landed: MapHandle,
    installed: BTreeMap<String, Installed>,
    /// false until the first sync, which also removes what an earlier daemon left
    synced: bool,
}

impl LbMaps {
    fn open(mut get: impl FnMut(&str) -> Result<MapHandle>) -> Result<Self> {
        Ok(LbMaps {
            services: get("lb_services")?,
            backends: get("lb_backends")?,
            ring: get("lb_ring")?,
            reverse: get("lb_reverse")?,
            stats: get("lb_stats")?,
            service_stats: get("lb_service_stats")?,
            mirror_slots: get("lb_mirror_slots")?,
            mirror_match: get("lb_mirror_match")?,
            mirrors: (0..MIRROR_EGRESS)
                .map(|i| get(&format!("lb_mirror_{i}")))
                .collect::<Result<_>>()?,
            cpus: get("lb_cpus")?,
            cpu_set: get("lb_cpu_set")?,
            cpu_count: get("lb_cpu_count")?,
            cpu_landed: get("lb_cpu_landed")?,
            installed: BTreeMap::new(),
            synced: false,
        })
    }

    pub fn from_object(obj: &Object) -> Result<Self> {
        Self::open(|name| {
            let map = obj
                .maps()
                .find(|m| m.name() == name)
                .with_context(|| format!("the lb object has no map {name}"))?;
            MapHandle::try_from(&map).with_context(|| format!("duplicating map {name}"))
        })
    }

    pub fn from_pins(pin_root: &std::path::Path) -> Result<Self> {
        Self::open(|name| open_pinned(pin_root, name))
    }

    /// Service slot -> backend slot ids an earlier daemon used, so that its rings stay valid
    /// while they are rewritten.
    fn adopt_indexes(&self) -> HashMap<Vec<u8>, u32> {
        let mut out = HashMap::new();
        for key in self.services.keys() {
            if let Ok(Some(v)) = self.services.lookup(&key, MapFlags::ANY) {
                if let Some(svc) = read::<lb_service>(&v) {
                    out.insert(key, svc.index);
                }
            }
        }
        out
    }

    /// Makes the kernel hold exactly `views`. Returns the number of ring slots written.
    pub fn sync(&mut self, views: &[ServiceView]) -> Result<usize> {
        let mut written = 0;
        let adopted = if self.synced {
            HashMap::new()
        } else {
            self.adopt_indexes()
        };
        // Services that left (or whose key changed) first: their slots may be reused below.
        let wanted: HashMap<&str, &ServiceView> =
            views.iter().map(|v| (v.id.as_str(), v)).collect();
        let gone: Vec<String> = self
            .installed
            .iter()
            .filter(|(id, inst)| {
                wanted.get(id.as_str()).is_none_or(|v| {
                    bytes_of(&service_key(v.vip, v.port, v.proto)) != bytes_of(&inst.key)
                })
            })
            .map(|(id, _)| id.clone())
            .collect();
        for id in gone {
            let inst = self.installed.remove(&id).expect("listed");
            let _ = self.services.delete(bytes_of(&inst.key));
            for (addr, slot) in &inst.slots {
                let _ = self
                    .reverse
                    .delete(bytes_of(&reverse_key(*addr, inst.proto)));
                let _ = self
                    .backends
                    .delete(&(inst.index * PER_SERVICE + slot).to_ne_bytes());
            }
        }
        for view in views {
            written += self.sync_service(view, &adopted)?;
        }
        if !self.synced {
            self.remove_strays()?;
            self.synced = true;
        }
        Ok(written)
    }

    fn free_index(&self, preferred: Option<u32>) -> Result<u32> {
        let used: HashSet<u32> = self.installed.values().map(|i| i.index).collect();
        if let Some(p) = preferred.filter(|p| !used.contains(p)) {
            return Ok(p);
        }
        (0..lb_limits::LB_MAX_SERVICES.0)
            .find(|i| !used.contains(i))
            .context("no free service slot")
    }

    fn sync_service(
        &mut self,
        view: &ServiceView,
        adopted: &HashMap<Vec<u8>, u32>,
    ) -> Result<usize> {
        let key = service_key(view.vip, view.port, view.proto);
        let mut inst = match self.installed.remove(&view.id) {
            Some(inst) => inst,
            None => {
                let index = self.free_index(adopted.get(bytes_of(&key)).copied())?;
                let zero = vec![0u8; std::mem::size_of::<lb_service_stats>()];
                let per_cpu = vec![zero; libbpf_rs::num_possible_cpus()?];
                self.service_stats
                    .update_percpu(&index.to_ne_bytes(), &per_cpu, MapFlags::ANY)
                    .context("resetting lb_service_stats")?;
                Installed {
                    key,
                    index,
                    proto: view.proto,
                    slots: BTreeMap::new(),
                    ring: Vec::new(),
                }
            }
        };
        let result = self.write_service(view, &mut inst);
        self.installed.insert(view.id.clone(), inst);
        result
    }

    fn write_service(&self, view: &ServiceView, inst: &mut Installed) -> Result<usize> {
        let wanted: HashSet<SocketAddr> = view.backends.iter().map(|(b, _)| b.addr).collect();
        let removed: Vec<(SocketAddr, u32)> = inst
            .slots
            .iter()
            .filter(|(a, _)| !wanted.contains(a))
            .map(|(a, s)| (*a, *s))
            .collect();
        for (a, _) in &removed {
            inst.slots.remove(a);
        }
        for (b, up) in &view.backends {
            let slot = match inst.slots.get(&b.addr) {
                Some(s) => *s,
                None => {
                    let used: HashSet<u32> = inst.slots.values().copied().collect();
                    let used_by_removed: HashSet<u32> = removed.iter().map(|r| r.1).collect();
                    let s = (0..PER_SERVICE)
                        .find(|s| !used.contains(s) && !used_by_removed.contains(s))
                        .context("no free backend slot")?;
                    inst.slots.insert(b.addr, s);
                    s
                }
            };
            let (family, addr) = family_and_bytes(b.addr.ip());
            let value = lb_backend {
                addr,
                port: b.addr.port().to_be(),
                family,
                up: u8::from(*up),
                service: inst.index,
            };
            self.backends
                .update(
                    &(inst.index * PER_SERVICE + slot).to_ne_bytes(),
                    bytes_of(&value),
                    MapFlags::ANY,
                )
                .context("writing lb_backends")?;
            self.reverse
                .update(
                    bytes_of(&reverse_key(b.addr, view.proto)),
                    bytes_of(&inst.key),
                    MapFlags::ANY,
                )
                .context("writing lb_reverse")?;
        }
        let identities: Vec<(u32, Vec<u8>, u32)> = view
            .backends
            .iter()
            .filter(|(_, up)| *up)
            .map(|(b, _)| {
                (
                    inst.index * PER_SERVICE + inst.slots[&b.addr],
                    b.addr.to_string().into_bytes(),
                    b.weight,
                )
            })
            .collect();
        let entries: Vec<maglev::Entry<'_>> = identities
            .iter()
            .map(|(id, identity, weight)| maglev::Entry {
                id: *id,
                identity,
                weight: *weight,
            })
            .collect();
        let table = maglev::table(&entries, view.table_size, NO_BACKEND);
        let base = inst.index * STRIDE;
        let mut written = 0;
        let mut keys = Vec::new();
        let mut values = Vec::new();
        for (i, id) in table.iter().enumerate() {
            if inst.ring.get(i) != Some(id) || inst.ring.len() != table.len() {
                keys.extend_from_slice(&(base + i as u32).to_ne_bytes());
                values.extend_from_slice(&id.to_ne_bytes());
                written += 1;
            }
        }
        if written > 0 {
            self.ring
                .update_batch(&keys, &values, written as u32, MapFlags::ANY, MapFlags::ANY)
                .context("writing lb_ring")?;
        }
        inst.ring = table;
        let svc = lb_service {
            index: inst.index,
            table_size: view.table_size,
        };
        self.services
            .update(bytes_of(&inst.key), bytes_of(&svc), MapFlags::ANY)
            .context("writing lb_services")?;
        for (addr, slot) in removed {
            let _ = self
                .reverse
                .delete(bytes_of(&reverse_key(addr, view.proto)));
            let _ = self
                .backends
                .delete(&(inst.index * PER_SERVICE + slot).to_ne_bytes());
        }
        Ok(written)
    }

    /// Entries an earlier daemon left that no service of this one names.
    fn remove_strays(&self) -> Result<()> {
        let services: HashSet<Vec<u8>> = self
            .installed
            .values()
            .map(|i| bytes_of(&i.key).to_vec())
            .collect();
        let backends: HashSet<u32> = self
            .installed
            .values()
            .flat_map(|i| i.slots.values().map(move |s| i.index * PER_SERVICE + s))
            .collect();
        let reverse: HashSet<Vec<u8>> = self
            .installed
            .values()
            .flat_map(|i| {
                i.slots
                    .keys()
                    .map(move |a| bytes_of(&reverse_key(*a, i.proto)).to_vec())
            })
            .collect();
        for k in self.services.keys().collect::<Vec<_>>() {
            if !services.contains(&k) {
                let _ = self.services.delete(&k);
            }
        }
        for k in self.reverse.keys().collect::<Vec<_>>() {
            if !reverse.contains(&k) {
                let _ = self.reverse.delete(&k);
            }
        }
        for k in self.backends.keys().collect::<Vec<_>>() {
            let id = u32::from_ne_bytes(k[..4].try_into().unwrap_or([0; 4]));
            if !backends.contains(&id) {
                let _ = self.backends.delete(&k);
            }
        }
        Ok(())
    }

    /// Copies what xdp_lb forwards out of each of `egress` for the installed services in
    /// `services` (None: every one) to the `mirror` interface as well (None: no mirroring).
    /// Interfaces are ifindexes of this namespace.
    pub fn set_mirror(
        &self,
        mirror: Option<u32>,
        egress: &[u32],
        services: Option<&[String]>,
    ) -> Result<()> {
        for index in 0..lb_limits::LB_MAX_SERVICES.0 {
            let on = mirror.is_some()
                && self.installed.iter().any(|(id, inst)| {
                    inst.index == index && services.is_none_or(|s| s.contains(id))
                });
            self.mirror_match
                .update(
                    &index.to_ne_bytes(),
                    &u32::from(on).to_ne_bytes(),
                    MapFlags::ANY,
                )
                .context("writing lb_mirror_match")?;
        }
        if egress.len() > MIRROR_EGRESS {
            anyhow::bail!(
                "mirroring covers at most {MIRROR_EGRESS} interfaces, the config names {}",
                egress.len()
            );
        }
        for k in self.mirror_slots.keys().collect::<Vec<_>>() {
            let _ = self.mirror_slots.delete(&k);
        }
        let Some(mirror) = mirror else {
            return Ok(());
        };
        for (slot, &ifindex) in egress.iter().enumerate() {
            let map = &self.mirrors[slot];
            for (k, v) in [(0u32, ifindex), (1u32, mirror)] {
                map.update(&k.to_ne_bytes(), &v.to_ne_bytes(), MapFlags::ANY)
                    .with_context(|| format!("writing lb_mirror_{slot}"))?;
            }
            self.mirror_slots
                .update(
                    &ifindex.to_ne_bytes(),
                    &(slot as u32).to_ne_bytes(),
                    MapFlags::ANY,
                )
                .context("writing lb_mirror_slots")?;
        }
        Ok(())
    }

    /// Steers the packets xdp_lb leaves to the stack to `cpus` (by flow hash), each with a
    /// queue of `queue_size` packets and `landed` (xdp_lb_cpu) counting on arrival; an empty
    /// set leaves packets where they were received.
    pub fn set_cpus(
        &self,
        cpus: &[u32],
        queue_size: u32,
        landed: std::os::fd::BorrowedFd<'_>,
    ) -> Result<()> {
        use std::os::fd::AsRawFd;
        // Off first: a packet in between stays on its CPU rather than meeting a half-built set.
        self.cpu_count
            .update(&0u32.to_ne_bytes(), &0u32.to_ne_bytes(), MapFlags::ANY)
            .context("writing lb_cpu_count")?;
        for cpu in 0..lb_limits::LB_MAX_CPUS.0 {
            if !cpus.contains(&cpu) {
                let _ = self.cpus.delete(&cpu.to_ne_bytes());
            }
        }
        for (i, &cpu) in cpus.iter().enumerate() {
            let mut val = queue_size.to_ne_bytes().to_vec();
            val.extend_from_slice(&landed.as_raw_fd().to_ne_bytes());
            self.cpus
                .update(&cpu.to_ne_bytes(), &val, MapFlags::ANY)
                .with_context(|| {
                    format!("creating the cpumap queue of CPU {cpu} (is it online?)")
                })?;
            self.cpu_set
                .update(&(i as u32).to_ne_bytes(), &cpu.to_ne_bytes(), MapFlags::ANY)
                .context("writing lb_cpu_set")?;
        }
        self.cpu_count
            .update(
                &0u32.to_ne_bytes(),
                &(cpus.len() as u32).to_ne_bytes(),
                MapFlags::ANY,
            )
            .context("writing lb_cpu_count")
    }

    /// Steered packets that landed on each CPU (index: CPU id).
    pub fn cpu_landed(&self) -> Result<Vec<u64>> {
        let per_cpu = self
            .cpu_landed
            .lookup_percpu(&0u32.to_ne_bytes(), MapFlags::ANY)
            .context("reading lb_cpu_landed")?
            .unwrap_or_default();
        Ok(per_cpu
            .iter()
            .map(|v| u64::from_ne_bytes(v[..8].try_into().unwrap_or([0; 8])))
            .collect())
    }

    /// The backend a ring slot of a service names (tests and `lb list` use it).
    pub fn backend_of(&self, service: &str, id: u32) -> Option<SocketAddr> {
        let inst = self.installed.get(service)?;
        inst.slots
            .iter()
            .find(|(_, s)| inst.index * PER_SERVICE + **s == id)
            .map(|(a, _)| *a)
    }

    /// The Maglev table installed for a service (backend ids), empty when unknown.
    pub fn table(&self, service: &str) -> Vec<u32> {
        self.installed
            .get(service)
            .map(|i| i.ring.clone())
            .unwrap_or_default()
    }

    /// Packets per lb_stats slot, summed over CPUs.
    pub fn stats(&self) -> Result<[u64; LB_STAT_COUNT]> {
        let mut out = [0; LB_STAT_COUNT];
        for (slot, v) in out.iter_mut().enumerate() {
            *v = percpu_sum_u64(&self.stats, slot as u32)?;
        }
        Ok(out)
    }

    /// Counters of an installed service.
    pub fn service_counters(&self, service: &str) -> Result<ServiceCounters> {
        let Some(inst) = self.installed.get(service) else {
            return Ok(ServiceCounters::default());
        };
        let per_cpu = self
            .service_stats
            .lookup_percpu(&inst.index.to_ne_bytes(), MapFlags::ANY)
            .context("reading lb_service_stats")?
            .unwrap_or_default();
        let mut out = ServiceCounters::default();
        for v in per_cpu {
            if let Some(s) = read::<lb_service_stats>(&v) {
                out.packets += s.packets;
                out.bytes += s.bytes;
                out.no_backend += s.no_backend;
            }
        }
        Ok(out)
    }
}
