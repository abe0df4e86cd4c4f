//! The general-rule classifier of one family. Bit i of every bitmap is the rule of the i-th
//! lowest rank; for each dimension every possible packet value selects the bitmap of rules
//! that accept it, so the kernel ANDs one bitmap per active dimension and takes the lowest bit.

use std::collections::HashMap;

use anyhow::{bail, Result};

use super::prefix::{fold_covering, Prefix};
use super::Family;
use crate::abi::{self, fw_bitmap, fw_dim, fw_dim_layout, fw_rule_ref};
use crate::config::{Proto, Rule, VlanMatch, CT_CLASSES};

#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Bits(pub [u64; abi::BITMAP_WORDS]);

impl Default for Bits {
    fn default() -> Self {
        Bits([0; abi::BITMAP_WORDS])
    }
}

impl std::fmt::Debug for Bits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

impl Bits {
    pub fn set(&mut self, bit: usize) {
        self.0[bit / 64] |= 1 << (bit % 64);
    }

    pub fn clear(&mut self, bit: usize) {
        self.0[bit / 64] &= !(1 << (bit % 64));
    }

    pub fn or(&mut self, other: &Bits) {
        for (a, b) in self.0.iter_mut().zip(other.0.iter()) {
            *a |= b;
        }
    }

    pub fn iter(&self) -> impl Iterator<Item = usize> + '_ {
        (0..abi::MAX_RULES_PER_FAMILY).filter(|&b| self.0[b / 64] & (1 << (b % 64)) != 0)
    }

    pub fn to_kernel(&self) -> fw_bitmap {
        let mut summary = 0u64;
        for (w, word) in self.0.iter().enumerate() {
            if *word != 0 {
                summary |= 1 << w;
            }
        }
        fw_bitmap {
            summary,
            words: self.0,
        }
    }
}

#[derive(Default)]
pub struct BitmapPool {
    index: HashMap<Bits, u32>,
    bitmaps: Vec<Bits>,
}

impl BitmapPool {
    fn intern(&mut self, bits: &Bits) -> u32 {
        if let Some(&i) = self.index.get(bits) {
            return i;
        }
        let i = self.bitmaps.len() as u32;
        self.bitmaps.push(bits.clone());
        self.index.insert(bits.clone(), i);
        i
    }

    pub fn len(&self) -> usize {
        self.bitmaps.len()
    }

    pub fn into_bitmaps(self) -> Vec<Bits> {
        self.bitmaps
    }
}

/// A classifier dimension indexed by a packet field value, laid out in fw_cls_dims.
#[derive(Debug, Clone, Copy)]
pub struct ValueDim {
    pub dim: u32,
    pub offset: u32,
    pub values: u32,
}

// The config names the classes itself; the layout is the kernel's word on how many there are.
const _: () = assert!(
    CT_CLASSES == (fw_dim_layout::FW_DIM_BLOCK.0 - fw_dim_layout::FW_DIM_OFF_CT.0) as usize
);

pub const VALUE_DIMS: [ValueDim; 6] = [
    ValueDim {
        dim: fw_dim::FW_DIM_PROTO.0,
        offset: fw_dim_layout::FW_DIM_OFF_PROTO.0,
        values: 256,
    },
    ValueDim {
        dim: fw_dim::FW_DIM_SPORT.0,
        offset: fw_dim_layout::FW_DIM_OFF_SPORT.0,
        values: fw_dim_layout::FW_DIM_ABSENT_16.0 + 1,
    },
    ValueDim {
        dim: fw_dim::FW_DIM_DPORT.0,
        offset: fw_dim_layout::FW_DIM_OFF_DPORT.0,
        values: fw_dim_layout::FW_DIM_ABSENT_16.0 + 1,
    },
    ValueDim {
        dim: fw_dim::FW_DIM_VLAN.0,
        offset: fw_dim_layout::FW_DIM_OFF_VLAN.0,
        values: fw_dim_layout::FW_DIM_UNTAGGED.0 + 1,
    },
    ValueDim {
        dim: fw_dim::FW_DIM_L4X.0,
        offset: fw_dim_layout::FW_DIM_OFF_L4X.0,
        values: fw_dim_layout::FW_DIM_ABSENT_16.0 + 1,
    },
    ValueDim {
        dim: fw_dim::FW_DIM_CT.0,
        offset: fw_dim_layout::FW_DIM_OFF_CT.0,
        values: CT_CLASSES as u32,
    },
];

#[derive(Debug, Default, Clone)]
pub struct FamilyClassifier {
    /// by bit
    pub rules: Vec<fw_rule_ref>,
    /// bit per enum fw_dim
    pub active_dims: u8,
    pub src: Vec<(Prefix, u32)>,
    pub dst: Vec<(Prefix, u32)>,
    /// [src, dst]: the distinct prefix lengths, longest first, when few enough for one hash
    /// lookup per length; empty keeps the dimension in its trie
    pub hash_lens: [Vec<u8>; 2],
    /// per VALUE_DIMS entry: the pool index of every value, empty when the dimension is inactive
    pub values: [Vec<u32>; VALUE_DIMS.len()],
}

/// Inclusive value ranges a rule accepts in one dimension; None accepts everything.
type Ranges = Option<Vec<(u32, u32)>>;

fn applies_to(rule: &Rule, family: Family) -> bool {
    let side_ok = |side: &Option<crate::config::AddrMatch>| {
        side.as_ref()
            .is_none_or(|m| m.nets.iter().any(|n| Family::of(n) == family))
    };
    let proto_ok = match rule.proto {
        Some(Proto::Icmp) => family == Family::V4,
        Some(Proto::Icmpv6) => family == Family::V6,
        _ => true,
    };
    side_ok(&rule.src) && side_ok(&rule.dst) && proto_ok
}

fn value_ranges(rule: &Rule, dim: u32) -> Ranges {
    let port = |p: &crate::config::PortRange| vec![(u32::from(p.lo), u32::from(p.hi))];
    match fw_dim(dim) {
        fw_dim::FW_DIM_PROTO => rule.proto.map(|p| {
            let n = u32::from(p.number());
            vec![(n, n)]
        }),
        fw_dim::FW_DIM_SPORT => rule.src_port.as_ref().map(port),
        fw_dim::FW_DIM_DPORT => rule.dst_port.as_ref().map(port),
        fw_dim::FW_DIM_VLAN => rule.vlan.map(|v| {
            let n = match v {
                VlanMatch::Id(id) => u32::from(id),
                VlanMatch::Untagged => fw_dim_layout::FW_DIM_UNTAGGED.0,
            };
            vec![(n, n)]
        }),
        fw_dim::FW_DIM_L4X => l4x_ranges(rule),
        fw_dim::FW_DIM_CT => rule.state.map(|states| {
            (0..CT_CLASSES)
                .filter(|&class| states.contains(class))
                .map(|class| (class as u32, class as u32))
                .collect()
        }),
        _ => None,
    }
}

fn l4x_ranges(rule: &Rule) -> Ranges {
    if let Some(f) = rule.tcp_flags {
        let values = (0u32..=255).filter(|v| (*v as u8) & f.mask == f.value);
        return Some(values.map(|v| (v, v)).collect());
    }
    match (rule.icmp_type, rule.icmp_code) {
        (None, None) => None,
        (Some(t), None) => {
            let base = u32::from(t) << 8;
            Some(vec![(base, base | 0xff)])
        }
        (Some(t), Some(c)) => {
            let v = u32::from(t) << 8 | u32::from(c);
            Some(vec![(v, v)])
        }
        (None, Some(c)) => Some(
            (0u32..=255)
                .map(|t| (t << 8 | u32::from(c), t << 8 | u32::from(c)))
                .collect(),
        ),
    }
}

/// Pool index per value of one dimension: a sweep over range starts and ends.
fn build_value_dim(ranges: &[Ranges], values: u32, pool: &mut BitmapPool) -> Vec<u32> {
    let mut changes: Vec<Vec<(usize, i32)>> = vec![Vec::new(); values as usize + 1];
    let mut current = Bits::default();
    for (bit, r) in ranges.iter().enumerate() {
        match r {
            None => current.set(bit),
            Some(list) => {
                for &(lo, hi) in list {
                    changes[lo as usize].push((bit, 1));
                    changes[hi as usize + 1].push((bit, -1));
                }
            }
        }
    }
    let mut depth = vec![0i32; ranges.len()];
    let mut out = Vec::with_capacity(values as usize);
    let mut idx = pool.intern(&current);
    for change in changes.iter().take(values as usize) {
        if !change.is_empty() {
            for &(bit, delta) in change {
                depth[bit] += delta;
                if depth[bit] > 0 {
                    current.set(bit);
                } else {
                    current.clear(bit);
                }
            }
            idx = pool.intern(&current);
        }
        out.push(idx);
    }
    out
}

fn build_addr_dim(
    family: Family,
    sides: &[Option<Vec<Prefix>>],
    pool: &mut BitmapPool,
) -> Vec<(Prefix, u32)> {
    let mut wildcard = Bits::default();
    let mut direct: Vec<(Prefix, Option<usize>)> = Vec::new();
    for (bit, side) in sides.iter().enumerate() {
        match side {
            None => wildcard.set(bit),
            Some(prefixes) => direct.extend(prefixes.iter().map(|p| (*p, Some(bit)))),
        }
    }
    // wildcard rules must match addresses no named prefix covers
    if wildcard != Bits::default() {
        direct.push((Prefix { addr: 0, len: 0 }, None));
    }
    fold_covering(
        direct,
        family.width(),
        || wildcard.clone(),
        |acc, bit| {
            if let Some(b) = bit {
                acc.set(*b);
            }
        },
    )
    .into_iter()
    .map(|(p, bits)| (p, pool.intern(&bits)))
    .collect()
}

/// Longest first; empty when there are more lengths than hash lookups pay off for.
fn hash_lengths(prefixes: &[(Prefix, u32)]) -> Vec<u8> {
    let lens: std::collections::BTreeSet<u8> = prefixes.iter().map(|(p, _)| p.len).collect();
    if lens.len() > abi::CLS_HASH_LENS {
        return Vec::new();
    }
    lens.into_iter().rev().collect()
}

pub fn build(
    family: Family,
    general: &[(u16, &Rule)],
    reference: &dyn Fn(u16, &Rule) -> fw_rule_ref,
    pool: &mut BitmapPool,
) -> Result<FamilyClassifier> {
    let rules: Vec<(u16, &Rule)> = general
        .iter()
        .copied()
        .filter(|(_, r)| applies_to(r, family))
        .collect();
    if rules.len() > abi::MAX_RULES_PER_FAMILY {
        bail!(
            "{} general {} rules (rules matching more than one CIDR or alias), the limit is {}",
            rules.len(),
            family.name(),
            abi::MAX_RULES_PER_FAMILY
        );
    }
    let mut out = FamilyClassifier {
        rules: rules.iter().map(|&(rank, r)| reference(rank, r)).collect(),
        ..Default::default()
    };
    if rules.is_empty() {
        return Ok(out);
    }

    let addr_side = |side: &Option<crate::config::AddrMatch>| {
        side.as_ref().map(|m| {
            m.nets
                .iter()
                .filter(|n| Family::of(n) == family)
                .map(Prefix::of)
                .collect::<Vec<_>>()
        })
    };
    let src: Vec<_> = rules.iter().map(|(_, r)| addr_side(&r.src)).collect();
    let dst: Vec<_> = rules.iter().map(|(_, r)| addr_side(&r.dst)).collect();
    if src.iter().any(Option::is_some) {
        out.active_dims |= 1 << fw_dim::FW_DIM_SRC.0;
        out.src = build_addr_dim(family, &src, pool);
        out.hash_lens[0] = hash_lengths(&out.src);
    }
    if dst.iter().any(Option::is_some) {
        out.active_dims |= 1 << fw_dim::FW_DIM_DST.0;
        out.dst = build_addr_dim(family, &dst, pool);
        out.hash_lens[1] = hash_lengths(&out.dst);
    }
    // hash-mode dimensions of both directions share one hash map per family
    let hashed: usize = [&out.src, &out.dst]
        .iter()
        .zip(&out.hash_lens)
        .filter(|(_, lens)| !lens.is_empty())
        .map(|(p, _)| p.len())
        .sum();
    let prefixes = out.src.len().max(out.dst.len()).max(hashed);
    if prefixes > abi::MAX_CLASSIFIER_PREFIXES_PER_GEN {
        bail!(
            "general {} rules name {} prefixes in one direction, the limit is {}; rules that only name a source or a destination have a larger limit",
            family.name(),
            prefixes,
            abi::MAX_CLASSIFIER_PREFIXES_PER_GEN
        );
    }

    for (slot, vd) in VALUE_DIMS.iter().enumerate() {
        let ranges: Vec<Ranges> = rules.iter().map(|(_, r)| value_ranges(r, vd.dim)).collect();
        if ranges.iter().any(Option::is_some) {
            out.active_dims |= 1 << vd.dim;
            out.values[slot] = build_value_dim(&ranges, vd.values, pool);
        }
    }
    Ok(out)
}
