//! Compiles a validated firewall config into the entries of xdp_firewall's maps, independent
//! of any generation: the allowlist, CIDR-only rules (resolved per prefix, split into exact
//! hash and trie), and per family the general-rule classifier (one bitmap of accepting rules
//! per field value, deduplicated into a shared pool).

mod classifier;
mod prefix;
pub mod ratelimit;

use anyhow::{bail, Result};
use ipnet::IpNet;

use crate::abi::{self, fw_action, fw_rule_flags, fw_rule_ref, fw_settings, fw_settings_flags};
use crate::config::{Action, FirewallConfig, FirewallMode, Rule};
pub use classifier::{Bits, FamilyClassifier, ValueDim, VALUE_DIMS};
pub use prefix::Prefix;

pub const FAMILIES: [Family; 2] = [Family::V4, Family::V6];

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Family {
    V4 = 0,
    V6 = 1,
}

impl Family {
    pub fn of(net: &IpNet) -> Family {
        match net {
            IpNet::V4(_) => Family::V4,
            IpNet::V6(_) => Family::V6,
        }
    }

    pub fn width(self) -> u8 {
        match self {
            Family::V4 => 32,
            Family::V6 => 128,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Family::V4 => "IPv4",
            Family::V6 => "IPv6",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    Src = 0,
    Dst = 1,
}

/// What the kernel reports as rule_id, resolved back for operators.
#[derive(Debug, Clone)]
pub struct RankedRule {
    pub id: String,
    pub action: Action,
    pub log: bool,
    /// Lives in the CIDR tries/hashes rather than the classifier.
    pub cidr_only: bool,
}

/// CIDR-only rules of one (family, direction): each stored prefix carries the lowest-rank
/// rule among those covering it.
#[derive(Debug, Default, Clone)]
pub struct CidrTable {
    /// host prefixes (/32, /128): the hash tried before the trie
    pub exact: Vec<(Prefix, fw_rule_ref)>,
    pub lpm: Vec<(Prefix, fw_rule_ref)>,
}

#[derive(Debug, Clone)]
pub struct CompiledRuleset {
    /// generation-independent settings; the writer only fills in nothing more
    pub settings: fw_settings,
    pub ranks: Vec<RankedRule>,
    /// allowlisted source prefixes by family
    pub allow: [Vec<Prefix>; 2],
    /// [family][direction]
    pub cidr: [[CidrTable; 2]; 2],
    pub classifiers: [FamilyClassifier; 2],
    /// the bitmap pool the classifiers index (local to this ruleset)
    pub bitmaps: Vec<Bits>,
}

impl CompiledRuleset {
    pub fn rule_id(&self, rank: u16) -> Option<&str> {
        self.ranks.get(rank as usize).map(|r| r.id.as_str())
    }

    pub fn cidr_entries(&self) -> usize {
        self.cidr
            .iter()
            .flatten()
            .map(|t| t.exact.len() + t.lpm.len())
            .sum()
    }
}

fn fw_action_of(a: Action) -> u8 {
    match a {
        Action::Pass => fw_action::FW_ACTION_PASS.0 as u8,
        Action::Drop => fw_action::FW_ACTION_DROP.0 as u8,
    }
}

fn is_cidr_only(r: &Rule) -> bool {
    r.src.is_some() != r.dst.is_some()
        && r.proto.is_none()
        && r.src_port.is_none()
        && r.dst_port.is_none()
        && r.vlan.is_none()
        && r.tcp_flags.is_none()
        && r.icmp_type.is_none()
        && r.icmp_code.is_none()
        && r.state.is_none()
}

pub fn compile(fw: &FirewallConfig) -> Result<CompiledRuleset> {
    if fw.rules.len() > abi::MAX_RANKS {
        bail!(
            "{} firewall rules, the limit is {}",
            fw.rules.len(),
            abi::MAX_RANKS
        );
    }
    let mut order: Vec<usize> = (0..fw.rules.len()).collect();
    order.sort_by_key(|&i| (fw.rules[i].priority, i));
    let ranked: Vec<(u16, &Rule)> = order
        .iter()
        .enumerate()
        .map(|(rank, &i)| (rank as u16, &fw.rules[i]))
        .collect();

    let reference = |rank: u16, r: &Rule| fw_rule_ref {
        rank,
        action: fw_action_of(r.action),
        flags: if r.log {
            fw_rule_flags::FW_RULE_LOG.0 as u8
        } else {
            0
        },
    };

    let mut cidr: [[CidrTable; 2]; 2] = Default::default();
    for family in FAMILIES {
        for dir in [Direction::Src, Direction::Dst] {
            let mut direct: Vec<(Prefix, fw_rule_ref)> = Vec::new();
            for &(rank, rule) in ranked.iter().filter(|(_, r)| is_cidr_only(r)) {
                let side = if dir == Direction::Src {
                    &rule.src
                } else {
                    &rule.dst
                };
                let Some(side) = side else { continue };
                let r = reference(rank, rule);
                direct.extend(
                    side.nets
                        .iter()
                        .filter(|n| Family::of(n) == family)
                        .map(|n| (Prefix::of(n), r)),
                );
            }
            let table = &mut cidr[family as usize][dir as usize];
            let resolved = prefix::fold_covering(
                direct,
                family.width(),
                || None::<fw_rule_ref>,
                |best, cand| {
                    if best.is_none_or(|b| cand.rank < b.rank) {
                        *best = Some(*cand);
                    }
                },
            );
            for (p, r) in resolved {
                let r = r.expect("every named prefix covers itself");
                if p.len == family.width() {
                    table.exact.push((p, r));
                } else {
                    table.lpm.push((p, r));
                }
            }
            if table.exact.len() > abi::MAX_CIDRS_PER_GEN
                || table.lpm.len() > abi::MAX_CIDRS_PER_GEN
            {
                bail!(
                    "CIDR-only {} {} rules name {} host and {} network prefixes, the limit is {} each",
                    family.name(),
                    if dir == Direction::Src { "source" } else { "destination" },
                    table.exact.len(),
                    table.lpm.len(),
                    abi::MAX_CIDRS_PER_GEN
                );
            }
        }
    }

    let mut pool = classifier::BitmapPool::default();
    let general: Vec<(u16, &Rule)> = ranked
        .iter()
        .copied()
        .filter(|(_, r)| !is_cidr_only(r))
        .collect();
    let classifiers = [
        classifier::build(Family::V4, &general, &reference, &mut pool)?,
        classifier::build(Family::V6, &general, &reference, &mut pool)?,
    ];
    if pool.len() > abi::BITMAP_POOL_PER_GEN {
        bail!(
            "the general rules need {} distinct match sets, the limit is {} (fewer distinct ports, prefixes or VLANs per rule set help)",
            pool.len(),
            abi::BITMAP_POOL_PER_GEN
        );
    }

    let mut allow: [Vec<Prefix>; 2] = Default::default();
    for net in &fw.allowlist {
        allow[Family::of(net) as usize].push(Prefix::of(net));
    }
    for a in &mut allow {
        a.sort_unstable();
        a.dedup();
        if a.len() > abi::MAX_ALLOWLIST_PER_GEN {
            bail!(
                "the allowlist has {} prefixes of one family, the limit is {}",
                a.len(),
                abi::MAX_ALLOWLIST_PER_GEN
            );
        }
    }

    let mut settings = fw_settings {
        default_action: fw_action_of(fw.default_policy),
        malformed_action: fw_action_of(fw.malformed),
        flags: if fw.mode == FirewallMode::Monitor {
            fw_settings_flags::FW_SET_MONITOR.0 as u8
        } else {
            0
        },
        ..Default::default()
    };
    for family in FAMILIES {
        let f = family as usize;
        let mut flags = 0u32;
        let set = |cond: bool, bit: abi::fw_family_flags| if cond { bit.0 } else { 0 };
        flags |= set(!allow[f].is_empty(), abi::fw_family_flags::FW_FAM_ALLOWLIST);
        flags |= set(
            !cidr[f][0].exact.is_empty(),
            abi::fw_family_flags::FW_FAM_SRC_EXACT,
        );
        flags |= set(
            !cidr[f][0].lpm.is_empty(),
            abi::fw_family_flags::FW_FAM_SRC_LPM,
        );
        flags |= set(
            !cidr[f][1].exact.is_empty(),
            abi::fw_family_flags::FW_FAM_DST_EXACT,
        );
        flags |= set(
            !cidr[f][1].lpm.is_empty(),
            abi::fw_family_flags::FW_FAM_DST_LPM,
        );
        settings.family_flags[f] = flags as u8;
        settings.general_rules[f] = classifiers[f].rules.len() as u16;
        settings.active_dims[f] = classifiers[f].active_dims;
        for (dir, lens) in classifiers[f].hash_lens.iter().enumerate() {
            let slot = &mut settings.cls_lens[f][dir];
            *slot = [abi::LEN_NONE; abi::CLS_HASH_LENS];
            slot[..lens.len()].copy_from_slice(lens);
        }
    }

    let ranks = ranked
        .iter()
        .map(|&(_, r)| RankedRule {
            id: r.id.clone(),
            action: r.action,
            log: r.log,
            cidr_only: is_cidr_only(r),
        })
        .collect();

    Ok(CompiledRuleset {
        settings,
        ranks,
        allow,
        cidr,
        classifiers,
        bitmaps: pool.into_bitmaps(),
    })
}

#[cfg(test)]
mod tests;
