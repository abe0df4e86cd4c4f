//! Typed managers of the kernel maps: the only code that touches raw key and value bytes.

pub mod blacklist;
pub mod conntrack;
pub mod dns;
pub mod firewall;
pub mod ids;
pub mod lb;
pub mod ratelimit;
pub mod scrub;
pub mod threatintel;

use std::collections::HashSet;
use std::os::fd::{AsFd, AsRawFd};
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

/// Entries per batch lookup to start with: far more than one hash bucket holds (the kernel
/// refuses a batch smaller than a bucket, and the batch grows when one does).
const LOOKUP_BATCH: u32 = 4096;

/// Hands every (key, value) of a map to `each`, read by batch lookups resumed across partial
/// batches (a hash answers bucket by bucket, and a batch ends early where the next bucket does
/// not fit); false, having handed nothing, when the kernel has no batch lookup for the map's
/// type.
fn for_each_batched(map: &MapHandle, mut each: impl FnMut(&[u8], &[u8])) -> Result<bool> {
    let key_size = map.key_size() as usize;
    let value_size = map.value_size() as usize;
    let mut batch = LOOKUP_BATCH as usize;
    let mut keys = vec![0u8; key_size * batch];
    let mut values = vec![0u8; value_size * batch];
    // the resume token: a bucket index for hashes, a key for the generic walk
    let token_size = key_size.max(8);
    let mut in_token = vec![0u8; token_size];
    let mut out_token = vec![0u8; token_size];
    let mut first = true;
    loop {
        let mut count = batch as u32;
        let opts = libbpf_rs::libbpf_sys::bpf_map_batch_opts {
            sz: std::mem::size_of::<libbpf_rs::libbpf_sys::bpf_map_batch_opts>() as _,
            ..Default::default()
        };
        let in_ptr = if first {
            std::ptr::null_mut()
        } else {
            in_token.as_mut_ptr().cast()
        };
        // SAFETY: the buffers hold `count` keys and values of the map's sizes, the tokens
        // at least a key or a u32; the kernel writes no more than that.
        let rc = unsafe {
            libbpf_rs::libbpf_sys::bpf_map_lookup_batch(
                map.as_fd().as_raw_fd(),
                in_ptr,
                out_token.as_mut_ptr().cast(),
                keys.as_mut_ptr().cast(),
                values.as_mut_ptr().cast(),
                &mut count,
                &opts,
            )
        };
        let errno = if rc < 0 { -rc } else { 0 };
        if errno == 0 || errno == libc::ENOENT {
            let count = (count as usize).min(batch);
            for (k, v) in keys
                .chunks_exact(key_size)
                .zip(values.chunks_exact(value_size))
                .take(count)
            {
                each(k, v);
            }
        }
        match errno {
            0 => {
                in_token.copy_from_slice(&out_token);
                first = false;
            }
            libc::ENOENT => return Ok(true),
            // one bucket holds more than a batch: a larger batch
            libc::ENOSPC if batch < (1 << 20) => {
                batch *= 2;
                keys.resize(key_size * batch, 0);
                values.resize(value_size * batch, 0);
            }
            // EINVAL, EOPNOTSUPP, ENOTSUPP (524): no batch operations for this map type
            libc::EINVAL | libc::EOPNOTSUPP | 524 if first => return Ok(false),
            e => {
                return Err(std::io::Error::from_raw_os_error(e))
                    .with_context(|| format!("batch lookup in {}", map.name().to_string_lossy()))
            }
        }
    }
}

/// Hands every (key, value) of a hash or trie to `each`: batch lookups where the kernel has
/// them, else a walk of the keys (a key deleted meanwhile is skipped).
pub fn for_each_entry(map: &MapHandle, mut each: impl FnMut(&[u8], &[u8])) -> Result<()> {
    if for_each_batched(map, &mut each)? {
        return Ok(());
    }
    let mut seen = HashSet::new();
    for k in map.keys() {
        if !seen.insert(k.clone()) {
            continue;
        }
        if let Some(v) = map
            .lookup(&k, MapFlags::ANY)
            .with_context(|| format!("reading {}", map.name().to_string_lossy()))?
        {
            each(&k, &v);
        }
    }
    Ok(())
}

/// Every (key, value) of a hash or trie.
pub fn read_all(map: &MapHandle) -> Result<Entries> {
    let mut out = Vec::new();
    for_each_entry(map, |k, v| out.push((k.to_vec(), v.to_vec())))?;
    Ok(out)
}

/// Entries of a map, counted.
pub fn count_entries(map: &MapHandle) -> Result<usize> {
    let mut n = 0;
    for_each_entry(map, |_, _| n += 1)?;
    Ok(n)
}
