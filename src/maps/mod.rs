//! Typed managers of the kernel maps: the only code that touches raw key and value bytes.

pub mod firewall;

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
