//! tc_scrub's maps: its settings (one ARRAY slot) and its per-CPU counters.

use std::path::Path;

use anyhow::{Context, Result};
use libbpf_rs::{MapCore, MapFlags, MapHandle, Object};

use super::{open_pinned, percpu_sum_u64};
use crate::abi::{bytes_of, read};
pub use crate::abi::{scrub_flags, scrub_settings, scrub_stat};
use crate::config::ScrubConfig;

/// Every map tc_scrub owns, by the name it is pinned under.
pub const SCRUB_MAP_NAMES: [&str; 2] = ["scrub_settings", "scrub_stats"];

/// Slots of the per-CPU scrub_stats array.
pub const SCRUB_STAT_COUNT: usize = scrub_stat::SCRUB_STAT_COUNT.0 as usize;

/// Every scrub_stats slot, in enum order.
pub const SCRUB_STATS: [scrub_stat; SCRUB_STAT_COUNT] = [
    scrub_stat::SCRUB_STAT_SEEN,
    scrub_stat::SCRUB_STAT_TTL_RAISED,
    scrub_stat::SCRUB_STAT_MSS_CLAMPED,
    scrub_stat::SCRUB_STAT_DF_CLEARED,
    scrub_stat::SCRUB_STAT_IP_ID_RANDOMISED,
];

/// A scrub_stats slot's short name (`stats`, the metric names).
pub fn stat_name(stat: scrub_stat) -> &'static str {
    match stat {
        scrub_stat::SCRUB_STAT_SEEN => "seen",
        scrub_stat::SCRUB_STAT_TTL_RAISED => "ttl_raised",
        scrub_stat::SCRUB_STAT_MSS_CLAMPED => "mss_clamped",
        scrub_stat::SCRUB_STAT_DF_CLEARED => "df_cleared",
        scrub_stat::SCRUB_STAT_IP_ID_RANDOMISED => "ip_id_randomised",
        _ => "unknown",
    }
}

/// The kernel's settings for a `scrub` section; None (no section) is the stage off.
pub fn settings_of(cfg: Option<&ScrubConfig>) -> scrub_settings {
    let mut s = scrub_settings::default();
    let Some(cfg) = cfg else {
        return s;
    };
    let mut flags = scrub_flags::SCRUB_F_ENABLED.0;
    if let Some(ttl) = cfg.min_ttl {
        flags |= scrub_flags::SCRUB_F_MIN_TTL.0;
        s.min_ttl = ttl;
    }
    if let Some(mss) = cfg.max_mss {
        flags |= scrub_flags::SCRUB_F_MAX_MSS.0;
        s.max_mss = mss;
    }
    if cfg.clear_df {
        flags |= scrub_flags::SCRUB_F_CLEAR_DF.0;
    }
    if cfg.random_ip_id {
        flags |= scrub_flags::SCRUB_F_RANDOM_IP_ID.0;
    }
    s.flags = flags;
    s
}

pub struct ScrubMaps {
    settings: MapHandle,
    stats: MapHandle,
}

impl ScrubMaps {
    pub fn from_object(obj: &Object) -> Result<Self> {
        let map = |name: &str| -> Result<MapHandle> {
            let m = obj
                .maps()
                .find(|m| m.name() == name)
                .with_context(|| format!("the scrub object has no map {name}"))?;
            MapHandle::try_from(&m).with_context(|| format!("duplicating map {name}"))
        };
        Ok(ScrubMaps {
            settings: map("scrub_settings")?,
            stats: map("scrub_stats")?,
        })
    }

    pub fn from_pins(pin_root: &Path) -> Result<Self> {
        Ok(ScrubMaps {
            settings: open_pinned(pin_root, "scrub_settings")?,
            stats: open_pinned(pin_root, "scrub_stats")?,
        })
    }

    /// Writes the settings of `cfg` (None: the stage off). The daemon fills or empties the
    /// stage's TC slot alike; an enabled slot with settings off passes packets unchanged.
    pub fn apply(&self, cfg: Option<&ScrubConfig>) -> Result<()> {
        self.write(&settings_of(cfg))
    }

    pub fn write(&self, s: &scrub_settings) -> Result<()> {
        self.settings
            .update(&0u32.to_ne_bytes(), bytes_of(s), MapFlags::ANY)
            .context("writing scrub_settings")
    }

    pub fn settings(&self) -> Result<scrub_settings> {
        let v = self
            .settings
            .lookup(&0u32.to_ne_bytes(), MapFlags::ANY)
            .context("reading scrub_settings")?
            .unwrap_or_default();
        Ok(read(&v).unwrap_or_default())
    }

    /// Packets per scrub_stats slot, summed over CPUs.
    pub fn stats(&self) -> Result<[u64; SCRUB_STAT_COUNT]> {
        let mut out = [0; SCRUB_STAT_COUNT];
        for (slot, v) in out.iter_mut().enumerate() {
            *v = percpu_sum_u64(&self.stats, slot as u32)?;
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_follow_the_section() {
        assert_eq!(settings_of(None).flags, 0);
        let s = settings_of(Some(&ScrubConfig::default()));
        assert_eq!(s.flags, scrub_flags::SCRUB_F_ENABLED.0);
        let s = settings_of(Some(&ScrubConfig {
            min_ttl: Some(64),
            max_mss: Some(1400),
            clear_df: true,
            random_ip_id: true,
        }));
        assert_eq!(s.flags, 0x1f);
        assert_eq!((s.min_ttl, s.max_mss), (64, 1400));
    }
}
