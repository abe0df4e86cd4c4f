//! xdp_ratelimit's maps: policies and their prefixes by generation, counters.

use anyhow::{Context, Result};
use libbpf_rs::{MapCore, MapFlags, MapHandle, Object};

use super::firewall::lpm_key;
use super::{delete_keys, delete_where, open_pinned, percpu_sum_u64, put_all, Entries};
use crate::abi::{self, bytes_of, rl_amp_key, rl_limits, rl_stat};
use crate::ruleset::ratelimit::CompiledRateLimit;
use crate::ruleset::FAMILIES;

/// Every map xdp_ratelimit owns, by the name it is pinned under.
pub const RL_MAP_NAMES: [&str; 9] = [
    "rl_active_gen",
    "rl_policies",
    "rl_guards",
    "rl_amp_ports",
    "rl_syn_flooded",
    "rl_lpm_v4",
    "rl_lpm_v6",
    "rl_buckets",
    "rl_stats",
];

pub struct RateLimitMaps {
    active_gen: MapHandle,
    policies: MapHandle,
    guards: MapHandle,
    amp: MapHandle,
    lpm: [MapHandle; 2],
    buckets: MapHandle,
    stats: MapHandle,
}

impl RateLimitMaps {
    fn open(mut get: impl FnMut(&str) -> Result<MapHandle>) -> Result<Self> {
        Ok(RateLimitMaps {
            active_gen: get("rl_active_gen")?,
            policies: get("rl_policies")?,
            guards: get("rl_guards")?,
            amp: get("rl_amp_ports")?,
            lpm: [get("rl_lpm_v4")?, get("rl_lpm_v6")?],
            buckets: get("rl_buckets")?,
            stats: get("rl_stats")?,
        })
    }

    pub fn from_object(obj: &Object) -> Result<Self> {
        Self::open(|name| {
            let map = obj
                .maps()
                .find(|m| m.name() == name)
                .with_context(|| format!("the ratelimit object has no map {name}"))?;
            MapHandle::try_from(&map).with_context(|| format!("duplicating map {name}"))
        })
    }

    pub fn from_pins(pin_root: &std::path::Path) -> Result<Self> {
        Self::open(|name| open_pinned(pin_root, name))
    }

    /// Entries of the maps keyed by more than the generation index (cleared on retirement).
    fn keyed_entries(&self, rs: &CompiledRateLimit, gen: u32) -> Vec<(&MapHandle, Entries)> {
        let mut out: Vec<(&MapHandle, Entries)> = FAMILIES
            .iter()
            .map(|&family| {
                let entries = rs.lpm[family as usize]
                    .iter()
                    .map(|(p, m)| (lpm_key(family, gen, *p), bytes_of(m).to_vec()))
                    .collect();
                (&self.lpm[family as usize], entries)
            })
            .collect();
        let amp = rs
            .amp
            .iter()
            .map(|(port, a)| {
                let key = rl_amp_key {
                    r#gen,
                    port: *port,
                    pad: 0,
                };
                (bytes_of(&key).to_vec(), bytes_of(a).to_vec())
            })
            .collect();
        out.push((&self.amp, amp));
        out
    }
}

impl super::Generations for RateLimitMaps {
    type Ruleset = CompiledRateLimit;

    fn active_generation(&self) -> Result<u32> {
        let v = self
            .active_gen
            .lookup(&0u32.to_ne_bytes(), MapFlags::ANY)?
            .context("rl_active_gen has no slot 0")?;
        Ok(u32::from_ne_bytes(v[..4].try_into()?) & 1)
    }

    fn install(&self, rs: &CompiledRateLimit, gen: u32) -> Result<()> {
        let base = gen * rl_limits::RL_MAX_POLICIES.0;
        let policies: Entries = rs
            .policies
            .iter()
            .enumerate()
            .map(|(i, p)| {
                (
                    (base + i as u32).to_ne_bytes().to_vec(),
                    bytes_of(p).to_vec(),
                )
            })
            .collect();
        put_all(&self.policies, &policies)?;
        self.guards
            .update(&gen.to_ne_bytes(), bytes_of(&rs.guards), MapFlags::ANY)
            .context("writing rl_guards")?;
        for (map, entries) in self.keyed_entries(rs, gen) {
            put_all(map, &entries)?;
        }
        Ok(())
    }

    fn activate(&self, gen: u32) -> Result<()> {
        self.active_gen
            .update(&0u32.to_ne_bytes(), &gen.to_ne_bytes(), MapFlags::ANY)
            .context("flipping rl_active_gen")
    }

    fn clear_generation(&self, gen: u32, known: Option<&CompiledRateLimit>) -> Result<()> {
        match known {
            Some(rs) => {
                for (map, entries) in self.keyed_entries(rs, gen) {
                    let keys: Vec<Vec<u8>> = entries.into_iter().map(|(k, _)| k).collect();
                    delete_keys(map, &keys)?;
                }
            }
            None => {
                let gen_at = |k: &[u8], at: usize| {
                    k.get(at..at + 4)
                        .and_then(|b| b.try_into().ok())
                        .map(u32::from_ne_bytes)
                        == Some(gen)
                };
                for map in &self.lpm {
                    delete_where(map, |k| gen_at(k, 4))?;
                }
                delete_where(&self.amp, |k| gen_at(k, 0))?;
            }
        }
        Ok(())
    }
}

impl RateLimitMaps {
    /// Packets per enum rl_stat slot, summed over CPUs.
    pub fn stats(&self) -> Result<Vec<u64>> {
        (0..rl_stat::RL_STAT_COUNT.0)
            .map(|slot| percpu_sum_u64(&self.stats, slot))
            .collect()
    }

    /// Keys (sources, or policies) with a bucket now.
    pub fn tracked_keys(&self) -> usize {
        self.buckets.keys().count()
    }
}

const _: () = assert!(abi::GENERATIONS == 2);
