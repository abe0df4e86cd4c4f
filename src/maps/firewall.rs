//! xdp_firewall's maps: writing a compiled ruleset into a generation, flipping the active
//! generation, reading counters.

use std::path::Path;

use anyhow::{Context, Result};
use libbpf_rs::{MapCore, MapFlags, MapHandle, Object};

use super::{delete_keys, delete_where, open_pinned, percpu_sum_u64, put_all, Entries};
use crate::abi::{
    self, bytes_of, fw_cls_v4_key, fw_cls_v6_key, fw_counter, fw_exact_v4_key, fw_exact_v6_key,
    fw_lpm_v4_key, fw_lpm_v6_key, fw_stat,
};
use crate::ruleset::{Bits, CompiledRuleset, Family, Prefix, FAMILIES, VALUE_DIMS};

/// Every map xdp_firewall owns, by the name it is pinned under.
pub const MAP_NAMES: [&str; 26] = [
    "fw_active_gen",
    "fw_settings",
    "fw_stats",
    "fw_rule_hits",
    "fw_allow_v4",
    "fw_allow_v6",
    "fw_lpm_src_v4",
    "fw_lpm_dst_v4",
    "fw_lpm_src_v6",
    "fw_lpm_dst_v6",
    "fw_exact_src_v4",
    "fw_exact_dst_v4",
    "fw_exact_src_v6",
    "fw_exact_dst_v6",
    "fw_cls_src_v4",
    "fw_cls_dst_v4",
    "fw_cls_src_v6",
    "fw_cls_dst_v6",
    "fw_cls_hash_v4",
    "fw_cls_hash_v6",
    "fw_cls_dims",
    "fw_bitmaps",
    "fw_rules",
    "events",
    "xdp_chain",
    "xdp_scratch",
];

/// [family][direction] arrays of maps follow FAMILIES and (Src, Dst).
pub struct FirewallMaps {
    active_gen: MapHandle,
    settings: MapHandle,
    stats: MapHandle,
    rule_hits: MapHandle,
    allow: [MapHandle; 2],
    lpm: [[MapHandle; 2]; 2],
    exact: [[MapHandle; 2]; 2],
    cls_addr: [[MapHandle; 2]; 2],
    cls_hash: [MapHandle; 2],
    cls_dims: MapHandle,
    bitmaps: MapHandle,
    rules: MapHandle,
}

pub(crate) fn lpm_key(family: Family, r#gen: u32, p: Prefix) -> Vec<u8> {
    let prefixlen = 32 + u32::from(p.len);
    match family {
        Family::V4 => bytes_of(&fw_lpm_v4_key {
            prefixlen,
            r#gen,
            addr: p.v4_octets(),
        })
        .to_vec(),
        Family::V6 => bytes_of(&fw_lpm_v6_key {
            prefixlen,
            r#gen,
            addr: p.v6_octets(),
        })
        .to_vec(),
    }
}

fn exact_key(family: Family, r#gen: u32, p: Prefix) -> Vec<u8> {
    match family {
        Family::V4 => bytes_of(&fw_exact_v4_key {
            r#gen,
            addr: p.v4_octets(),
        })
        .to_vec(),
        Family::V6 => bytes_of(&fw_exact_v6_key {
            r#gen,
            addr: p.v6_octets(),
        })
        .to_vec(),
    }
}

fn cls_hash_key(family: Family, gen: u32, dir: u8, p: Prefix) -> Vec<u8> {
    match family {
        Family::V4 => bytes_of(&fw_cls_v4_key {
            r#gen: gen as u8,
            dir,
            len: p.len,
            pad: 0,
            addr: p.v4_octets(),
        })
        .to_vec(),
        Family::V6 => bytes_of(&fw_cls_v6_key {
            r#gen: gen as u8,
            dir,
            len: p.len,
            pad: 0,
            addr: p.v6_octets(),
        })
        .to_vec(),
    }
}

fn key_gen(bytes: &[u8], offset: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(
        bytes.get(offset..offset + 4)?.try_into().ok()?,
    ))
}

impl FirewallMaps {
    fn open(mut get: impl FnMut(&str) -> Result<MapHandle>) -> Result<Self> {
        let mut pair = |a: &str, b: &str| -> Result<[MapHandle; 2]> { Ok([get(a)?, get(b)?]) };
        let allow = pair("fw_allow_v4", "fw_allow_v6")?;
        let lpm = [
            pair("fw_lpm_src_v4", "fw_lpm_dst_v4")?,
            pair("fw_lpm_src_v6", "fw_lpm_dst_v6")?,
        ];
        let exact = [
            pair("fw_exact_src_v4", "fw_exact_dst_v4")?,
            pair("fw_exact_src_v6", "fw_exact_dst_v6")?,
        ];
        let cls_addr = [
            pair("fw_cls_src_v4", "fw_cls_dst_v4")?,
            pair("fw_cls_src_v6", "fw_cls_dst_v6")?,
        ];
        let cls_hash = pair("fw_cls_hash_v4", "fw_cls_hash_v6")?;
        Ok(FirewallMaps {
            cls_hash,
            active_gen: get("fw_active_gen")?,
            settings: get("fw_settings")?,
            stats: get("fw_stats")?,
            rule_hits: get("fw_rule_hits")?,
            allow,
            lpm,
            exact,
            cls_addr,
            cls_dims: get("fw_cls_dims")?,
            bitmaps: get("fw_bitmaps")?,
            rules: get("fw_rules")?,
        })
    }

    pub fn from_object(obj: &Object) -> Result<Self> {
        Self::open(|name| {
            let map = obj
                .maps()
                .find(|m| m.name() == name)
                .with_context(|| format!("the firewall object has no map {name}"))?;
            MapHandle::try_from(&map).with_context(|| format!("duplicating map {name}"))
        })
    }

    pub fn from_pins(pin_root: &Path) -> Result<Self> {
        Self::open(|name| open_pinned(pin_root, name))
    }

    /// The entries of `rs` in generation `gen` for the maps keyed by address (tries and
    /// hashes), which must be emptied when a generation is retired.
    fn keyed_entries(&self, rs: &CompiledRuleset, gen: u32) -> Vec<(&MapHandle, Entries)> {
        let pool_base = gen * abi::BITMAP_POOL_PER_GEN as u32;
        let mut out = Vec::new();
        for family in FAMILIES {
            let f = family as usize;
            let allow = rs.allow[f]
                .iter()
                .map(|p| (lpm_key(family, gen, *p), vec![1u8]))
                .collect();
            out.push((&self.allow[f], allow));
            for dir in 0..2 {
                let table = &rs.cidr[f][dir];
                let exact = table
                    .exact
                    .iter()
                    .map(|(p, r)| (exact_key(family, gen, *p), bytes_of(r).to_vec()))
                    .collect();
                out.push((&self.exact[f][dir], exact));
                let lpm = table
                    .lpm
                    .iter()
                    .map(|(p, r)| (lpm_key(family, gen, *p), bytes_of(r).to_vec()))
                    .collect();
                out.push((&self.lpm[f][dir], lpm));
            }
            let cls = &rs.classifiers[f];
            for (dir, prefixes) in [&cls.src, &cls.dst].into_iter().enumerate() {
                let hashed = !cls.hash_lens[dir].is_empty();
                let entries = prefixes
                    .iter()
                    .map(|(p, idx)| {
                        let key = if hashed {
                            cls_hash_key(family, gen, dir as u8, *p)
                        } else {
                            lpm_key(family, gen, *p)
                        };
                        (key, (pool_base + idx).to_ne_bytes().to_vec())
                    })
                    .collect();
                let map = if hashed {
                    &self.cls_hash[f]
                } else {
                    &self.cls_addr[f][dir]
                };
                out.push((map, entries));
            }
        }
        out
    }

    /// The array slots of `rs` in generation `gen`: overwritten by the next install, never
    /// read past the counts in fw_settings, so never cleared.
    fn array_entries(&self, rs: &CompiledRuleset, gen: u32) -> Vec<(&MapHandle, Entries)> {
        let pool_base = gen * abi::BITMAP_POOL_PER_GEN as u32;
        let all = Bits([!0; abi::BITMAP_WORDS]);
        let bitmaps = rs
            .bitmaps
            .iter()
            .enumerate()
            .map(|(i, b)| (pool_base + i as u32, b))
            .chain(std::iter::once((abi::BITMAP_ALL, &all)))
            .map(|(i, b)| (i.to_ne_bytes().to_vec(), bytes_of(&b.to_kernel()).to_vec()))
            .collect();
        let mut out = vec![(&self.bitmaps, bitmaps)];
        for family in FAMILIES {
            let f = family as usize;
            let cls = &rs.classifiers[f];
            let block_base = (gen * 2 + f as u32) * abi::DIM_BLOCK as u32;
            for (slot, vd) in VALUE_DIMS.iter().enumerate() {
                let entries = cls.values[slot]
                    .iter()
                    .enumerate()
                    .map(|(v, idx)| {
                        (
                            (block_base + vd.offset + v as u32).to_ne_bytes().to_vec(),
                            (pool_base + idx).to_ne_bytes().to_vec(),
                        )
                    })
                    .collect();
                out.push((&self.cls_dims, entries));
            }
            let rules_base = (gen * 2 + f as u32) * abi::MAX_RULES_PER_FAMILY as u32;
            let rules = cls
                .rules
                .iter()
                .enumerate()
                .map(|(bit, r)| {
                    (
                        (rules_base + bit as u32).to_ne_bytes().to_vec(),
                        bytes_of(r).to_vec(),
                    )
                })
                .collect();
            out.push((&self.rules, rules));
        }
        out
    }

    fn reset_rule_hits(&self, gen: u32, ranks: usize) -> Result<()> {
        let zero =
            vec![vec![0u8; std::mem::size_of::<fw_counter>()]; libbpf_rs::num_possible_cpus()?];
        for rank in 0..ranks as u32 {
            let slot = gen * abi::MAX_RANKS as u32 + rank;
            self.rule_hits
                .update_percpu(&slot.to_ne_bytes(), &zero, MapFlags::ANY)
                .context("resetting fw_rule_hits")?;
        }
        Ok(())
    }

    /// Packets per enum fw_stat slot, summed over CPUs.
    pub fn stats(&self) -> Result<Vec<u64>> {
        (0..fw_stat::FW_STAT_COUNT.0)
            .map(|slot| percpu_sum_u64(&self.stats, slot))
            .collect()
    }

    /// (packets, bytes) of each rank of generation `gen`, summed over CPUs.
    pub fn rule_hits(&self, gen: u32, ranks: usize) -> Result<Vec<(u64, u64)>> {
        (0..ranks as u32)
            .map(|rank| {
                let slot = gen * abi::MAX_RANKS as u32 + rank;
                let per_cpu = self
                    .rule_hits
                    .lookup_percpu(&slot.to_ne_bytes(), MapFlags::ANY)?
                    .unwrap_or_default();
                Ok(per_cpu
                    .iter()
                    .filter_map(|v| abi::read::<fw_counter>(v))
                    .fold((0, 0), |(p, b), c| (p + c.packets, b + c.bytes)))
            })
            .collect()
    }
}

impl super::Generations for FirewallMaps {
    type Ruleset = CompiledRuleset;

    fn active_generation(&self) -> Result<u32> {
        let v = self
            .active_gen
            .lookup(&0u32.to_ne_bytes(), MapFlags::ANY)?
            .context("fw_active_gen has no slot 0")?;
        Ok(key_gen(&v, 0).unwrap_or(0) & 1)
    }

    /// Writes `rs` into generation `gen`, which must hold nothing else (see
    /// `clear_generation`). The active generation is untouched: packets keep seeing the old
    /// ruleset until `activate`.
    fn install(&self, rs: &CompiledRuleset, gen: u32) -> Result<()> {
        for (map, entries) in self
            .array_entries(rs, gen)
            .into_iter()
            .chain(self.keyed_entries(rs, gen))
        {
            put_all(map, &entries)?;
        }
        self.reset_rule_hits(gen, rs.ranks.len())?;
        self.settings
            .update(&gen.to_ne_bytes(), bytes_of(&rs.settings), MapFlags::ANY)
            .context("writing fw_settings")?;
        Ok(())
    }

    /// Makes `gen` the ruleset every following packet sees: one aligned 4-byte write.
    fn activate(&self, gen: u32) -> Result<()> {
        self.active_gen
            .update(&0u32.to_ne_bytes(), &gen.to_ne_bytes(), MapFlags::ANY)
            .context("flipping fw_active_gen")
    }

    /// Empties generation `gen` of the address-keyed maps: exactly the keys of `known` when
    /// the caller knows what it installed there, else by walking every key.
    fn clear_generation(&self, gen: u32, known: Option<&CompiledRuleset>) -> Result<()> {
        if let Some(rs) = known {
            for (map, entries) in self.keyed_entries(rs, gen) {
                let keys: Vec<Vec<u8>> = entries.into_iter().map(|(k, _)| k).collect();
                delete_keys(map, &keys)?;
            }
            return Ok(());
        }
        let lpm_gen = |k: &[u8]| key_gen(k, 4) == Some(gen);
        let exact_gen = |k: &[u8]| key_gen(k, 0) == Some(gen);
        for f in 0..2 {
            delete_where(&self.cls_hash[f], |k| k.first() == Some(&(gen as u8)))?;
            delete_where(&self.allow[f], lpm_gen)?;
            for dir in 0..2 {
                delete_where(&self.lpm[f][dir], lpm_gen)?;
                delete_where(&self.cls_addr[f][dir], lpm_gen)?;
                delete_where(&self.exact[f][dir], exact_gen)?;
            }
        }
        Ok(())
    }
}
