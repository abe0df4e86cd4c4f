//! Typed managers of the kernel maps: the only code that touches raw key and value bytes.

pub mod blacklist;
pub mod conntrack;
pub mod firewall;
pub mod ratelimit;
pub mod threatintel;

use std::path::Path;

use anyhow::{Context, Result};
use libbpf_rs::{MapCore, MapFlags, MapHandle};

/// Update batches stay well below what the kernel copies in one call.
const BATCH: usize = 16384;

pub fn open_pinned(pin_root: &Path, name: &str) -> Result<MapHandle> {
    let path = pin_root.join(name);
    MapHandle::from_pinned_path(&path)
        .with_context(|| format!("opening pinned map {}", path.display()))
}

/// Maps that hold two generations of a ruleset and flip between them.
pub trait Generations {
    type Ruleset;

    fn active_generation(&self) -> Result<u32>;
    /// Writes `rs` into generation `gen`, which must hold nothing else.
    fn install(&self, rs: &Self::Ruleset, gen: u32) -> Result<()>;
    /// Makes `gen` what every following packet sees.
    fn activate(&self, gen: u32) -> Result<()>;
    /// Empties `gen`: exactly `known`'s entries when the caller knows them, else by walking.
    fn clear_generation(&self, gen: u32, known: Option<&Self::Ruleset>) -> Result<()>;

    /// A reload: installs `rs` in the inactive generation (cleared first unless the caller
    /// knows it is empty), flips to it, waits `grace` for packets still on the old generation,
    /// then empties the old one (exactly `retiring`'s keys when known). Returns the new
    /// generation.
    fn replace(
        &self,
        rs: &Self::Ruleset,
        inactive_clean: bool,
        retiring: Option<&Self::Ruleset>,
        grace: std::time::Duration,
    ) -> Result<u32> {
        let old = self.active_generation()?;
        let next = old ^ 1;
        if !inactive_clean {
            self.clear_generation(next, None)?;
        }
        self.install(rs, next)?;
        self.activate(next)?;
        std::thread::sleep(grace);
        self.clear_generation(old, retiring)?;
        Ok(next)
    }

    /// Clears the inactive generation, installs `rs` there and activates it (one-shot users;
    /// the given-up generation keeps its entries).
    fn apply(&self, rs: &Self::Ruleset) -> Result<u32> {
        let next = self.active_generation()? ^ 1;
        self.clear_generation(next, None)?;
        self.install(rs, next)?;
        self.activate(next)?;
        Ok(next)
    }
}

/// (key, value) byte records for one map.
pub type Entries = Vec<(Vec<u8>, Vec<u8>)>;

/// Writes (key, value) byte records in batches, spread over the CPUs for large sets (the
/// kernel's hash and trie updates take per-bucket or per-map locks, and most of the time goes
/// to allocating elements); falls back to single updates where a map type has no batching.
pub fn put_all(map: &MapHandle, entries: &[(Vec<u8>, Vec<u8>)]) -> Result<()> {
    let workers = std::thread::available_parallelism().map_or(1, |n| n.get());
    if workers < 2 || entries.len() < 4 * BATCH {
        return put_serial(map, entries);
    }
    let share = entries.len().div_ceil(workers);
    std::thread::scope(|s| {
        let handles: Vec<_> = entries
            .chunks(share)
            .map(|part| s.spawn(move || put_serial(map, part)))
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(anyhow::anyhow!("map writer panicked")))
            })
            .collect::<Result<Vec<()>>>()
            .map(|_| ())
    })
}

fn put_serial(map: &MapHandle, entries: &[(Vec<u8>, Vec<u8>)]) -> Result<()> {
    for chunk in entries.chunks(BATCH) {
        let keys: Vec<u8> = chunk.iter().flat_map(|(k, _)| k.iter().copied()).collect();
        let values: Vec<u8> = chunk.iter().flat_map(|(_, v)| v.iter().copied()).collect();
        let batched = map.update_batch(
            &keys,
            &values,
            chunk.len() as u32,
            MapFlags::ANY,
            MapFlags::ANY,
        );
        if batched.is_err() {
            for (k, v) in chunk {
                map.update(k, v, MapFlags::ANY)
                    .with_context(|| format!("updating map {}", map.name().to_string_lossy()))?;
            }
        }
    }
    Ok(())
}

/// Deletes every key for which `doomed` holds.
pub fn delete_where(map: &MapHandle, doomed: impl Fn(&[u8]) -> bool) -> Result<usize> {
    let keys: Vec<Vec<u8>> = map.keys().filter(|k| doomed(k)).collect();
    delete_keys(map, &keys)?;
    Ok(keys.len())
}

/// Deletes these keys in batches; a key already gone is fine.
pub fn delete_keys(map: &MapHandle, keys: &[Vec<u8>]) -> Result<()> {
    for chunk in keys.chunks(BATCH) {
        let flat: Vec<u8> = chunk.iter().flatten().copied().collect();
        if map
            .delete_batch(&flat, chunk.len() as u32, MapFlags::ANY, MapFlags::ANY)
            .is_err()
        {
            for k in chunk {
                // A key gone since it was listed is what we wanted anyway.
                let _ = map.delete(k);
            }
        }
    }
    Ok(())
}

/// Sums a per-CPU u64 array slot over all CPUs.
pub fn percpu_sum_u64(map: &MapHandle, index: u32) -> Result<u64> {
    let per_cpu = map
        .lookup_percpu(&index.to_ne_bytes(), MapFlags::ANY)
        .with_context(|| format!("reading {}[{index}]", map.name().to_string_lossy()))?
        .unwrap_or_default();
    Ok(per_cpu
        .iter()
        .filter_map(|v| {
            v.get(..8)
                .map(|b| u64::from_ne_bytes(b.try_into().unwrap_or([0; 8])))
        })
        .sum())
}
