//! tc_ids's maps: the (protocol, side, port) index and the rule records of two generations,
//! the settings slot that names the active one, and the per-CPU counters.

use std::path::Path;

use anyhow::{Context, Result};
use libbpf_rs::{MapCore, MapFlags, MapHandle, Object};

use super::{delete_where, open_pinned, percpu_sum_u64, put_all, Generations};
use crate::abi::{bytes_of, ids_bucket, ids_key, ids_rule, read, IDS_STAT_COUNT};
pub use crate::abi::{ids_settings, ids_settings_flags, ids_stat};
use crate::ids::{CompiledIds, MAX_RULES};

/// Every map tc_ids owns, by the name it is pinned under.
pub const IDS_MAP_NAMES: [&str; 4] = ["ids_index", "ids_rules", "ids_settings", "ids_stats"];

/// Every ids_stats slot, in enum order.
pub const IDS_STATS: [ids_stat; IDS_STAT_COUNT] = [
    ids_stat::IDS_STAT_SEEN,
    ids_stat::IDS_STAT_CANDIDATE,
    ids_stat::IDS_STAT_TRUNCATED,
    ids_stat::IDS_STAT_MATCH_ALERT,
    ids_stat::IDS_STAT_MATCH_DROP,
    ids_stat::IDS_STAT_SAMPLED_OUT,
    ids_stat::IDS_STAT_EVENTS_SENT,
    ids_stat::IDS_STAT_EVENTS_DROPPED,
    ids_stat::IDS_STAT_LOAD_FAILED,
];

/// An ids_stats slot's short name (`stats`, the metric names).
pub fn stat_name(stat: ids_stat) -> &'static str {
    match stat {
        ids_stat::IDS_STAT_SEEN => "seen",
        ids_stat::IDS_STAT_CANDIDATE => "candidate",
        ids_stat::IDS_STAT_TRUNCATED => "payload_truncated",
        ids_stat::IDS_STAT_MATCH_ALERT => "match_alert",
        ids_stat::IDS_STAT_MATCH_DROP => "match_drop",
        ids_stat::IDS_STAT_SAMPLED_OUT => "sampled_out",
        ids_stat::IDS_STAT_EVENTS_SENT => "events_sent",
        ids_stat::IDS_STAT_EVENTS_DROPPED => "events_dropped",
        ids_stat::IDS_STAT_LOAD_FAILED => "payload_load_failed",
        _ => "unknown",
    }
}

/// `sampling` as the kernel's threshold: (sample_below, sample_all).
pub fn sample_threshold(sampling: f64) -> (u32, u32) {
    if sampling >= 1.0 {
        (u32::MAX, 1)
    } else {
        ((sampling.max(0.0) * f64::from(u32::MAX)) as u32, 0)
    }
}

pub struct IdsMaps {
    index: MapHandle,
    rules: MapHandle,
    settings: MapHandle,
    stats: MapHandle,
}

impl IdsMaps {
    pub fn from_object(obj: &Object) -> Result<Self> {
        let map = |name: &str| -> Result<MapHandle> {
            let m = obj
                .maps()
                .find(|m| m.name() == name)
                .with_context(|| format!("the ids object has no map {name}"))?;
            MapHandle::try_from(&m).with_context(|| format!("duplicating map {name}"))
        };
        Ok(IdsMaps {
            index: map("ids_index")?,
            rules: map("ids_rules")?,
            settings: map("ids_settings")?,
            stats: map("ids_stats")?,
        })
    }

    pub fn from_pins(pin_root: &Path) -> Result<Self> {
        Ok(IdsMaps {
            index: open_pinned(pin_root, "ids_index")?,
            rules: open_pinned(pin_root, "ids_rules")?,
            settings: open_pinned(pin_root, "ids_settings")?,
            stats: open_pinned(pin_root, "ids_stats")?,
        })
    }

    pub fn settings(&self) -> Result<ids_settings> {
        let v = self
            .settings
            .lookup(&0u32.to_ne_bytes(), MapFlags::ANY)
            .context("reading ids_settings")?
            .unwrap_or_default();
        Ok(read(&v).unwrap_or_default())
    }

    fn write_settings(&self, s: &ids_settings) -> Result<()> {
        self.settings
            .update(&0u32.to_ne_bytes(), bytes_of(s), MapFlags::ANY)
            .context("writing ids_settings")
    }

    /// Turns the stage off (the slot stays as the daemon leaves it).
    pub fn disable(&self) -> Result<()> {
        let mut s = self.settings()?;
        s.flags &= !ids_settings_flags::IDS_SET_ENABLED.0;
        self.write_settings(&s)
    }

    /// Packets per ids_stats slot, summed over CPUs.
    pub fn stats(&self) -> Result<[u64; IDS_STAT_COUNT]> {
        let mut out = [0; IDS_STAT_COUNT];
        for (slot, v) in out.iter_mut().enumerate() {
            *v = percpu_sum_u64(&self.stats, slot as u32)?;
        }
        Ok(out)
    }

    /// Index entries of a generation.
    pub fn index_len(&self, gen: u32) -> Result<usize> {
        let mut n = 0;
        super::for_each_entry(&self.index, |k, _| {
            if read::<ids_key>(k).is_some_and(|k| u32::from(k.gen) == gen & 1) {
                n += 1;
            }
        })?;
        Ok(n)
    }
}

impl Generations for IdsMaps {
    type Ruleset = CompiledIds;

    fn active_generation(&self) -> Result<u32> {
        Ok(self.settings()?.gen & 1)
    }

    fn install(&self, rs: &CompiledIds, gen: u32) -> Result<()> {
        let gen = gen & 1;
        let base = gen * MAX_RULES as u32;
        let records: Vec<(Vec<u8>, Vec<u8>)> = rs
            .records
            .iter()
            .enumerate()
            .map(|(rank, r): (usize, &ids_rule)| {
                (
                    (base + rank as u32).to_ne_bytes().to_vec(),
                    bytes_of(r).to_vec(),
                )
            })
            .collect();
        put_all(&self.rules, &records).context("writing ids_rules")?;
        let index: Vec<(Vec<u8>, Vec<u8>)> = rs
            .index
            .iter()
            .map(|(&(proto, side, port), ranks)| {
                let key = rs.key(proto, side, port, gen);
                let mut b = ids_bucket {
                    count: ranks.len() as u16,
                    ..Default::default()
                };
                b.ranks[..ranks.len()].copy_from_slice(ranks);
                (bytes_of(&key).to_vec(), bytes_of(&b).to_vec())
            })
            .collect();
        put_all(&self.index, &index).context("writing ids_index")
    }

    fn activate(&self, gen: u32) -> Result<()> {
        // settings are only ever written here: the generation and the sampling it was built with
        let mut s = self.settings()?;
        s.gen = gen & 1;
        s.flags |= ids_settings_flags::IDS_SET_ENABLED.0;
        self.write_settings(&s)
    }

    fn clear_generation(&self, gen: u32, _known: Option<&CompiledIds>) -> Result<()> {
        // Rule records need no clearing: only index entries of the generation reach them.
        delete_where(&self.index, |k| {
            read::<ids_key>(k).is_some_and(|k| u32::from(k.gen) == gen & 1)
        })?;
        Ok(())
    }
}

impl IdsMaps {
    /// Installs `rs` in the inactive generation, flips to it with its sampling, and empties
    /// the old one: a packet sees one ruleset or the other. Returns the new generation.
    pub fn apply(&self, rs: &CompiledIds) -> Result<u32> {
        let next = self.active_generation()? ^ 1;
        self.clear_generation(next, None)?;
        self.install(rs, next)?;
        let (below, all) = sample_threshold(rs.sampling);
        let mut s = self.settings()?;
        s.sample_below = below;
        s.sample_all = all;
        s.gen = next;
        s.flags |= ids_settings_flags::IDS_SET_ENABLED.0;
        self.write_settings(&s)?;
        // packets already past the flip finish on the old generation's index entries
        std::thread::sleep(std::time::Duration::from_millis(1));
        self.clear_generation(next ^ 1, None)?;
        Ok(next)
    }
}
