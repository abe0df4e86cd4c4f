//! Memory at the benchmark sizes: what the kernel charges each map of this process (memlock,
//! from /proc/self/fdinfo), and the resident set of a daemon holding the same sets.

use std::collections::BTreeMap;
use std::os::fd::{AsRawFd, BorrowedFd};

use anyhow::{Context, Result};
use serde::Serialize;

#[derive(Debug, Serialize, Clone)]
pub struct MapMemory {
    pub name: String,
    pub map_type: String,
    pub max_entries: u64,
    pub memlock_bytes: u64,
}

/// Every BPF map this process holds a descriptor of, once each (maps shared between objects
/// through reused descriptors are counted once), largest first.
pub fn maps_of_this_process() -> Result<Vec<MapMemory>> {
    let mut by_id: BTreeMap<u64, MapMemory> = BTreeMap::new();
    for entry in std::fs::read_dir("/proc/self/fd").context("/proc/self/fd")? {
        let entry = entry?;
        let Ok(link) = std::fs::read_link(entry.path()) else {
            continue;
        };
        if link.to_string_lossy() != "anon_inode:bpf-map" {
            continue;
        }
        let fd_name = entry.file_name();
        let Some(fd) = fd_name.to_str().and_then(|s| s.parse::<i32>().ok()) else {
            continue;
        };
        let Ok(info) = std::fs::read_to_string(format!("/proc/self/fdinfo/{fd}")) else {
            continue;
        };
        let field = |key: &str| {
            info.lines()
                .find_map(|l| l.strip_prefix(key))
                .and_then(|v| v.trim().parse::<u64>().ok())
        };
        let (Some(id), Some(memlock)) = (field("map_id:"), field("memlock:")) else {
            continue;
        };
        // SAFETY: the descriptor is open for the whole call: it was just listed and this
        // process closes maps only when their owners drop, which nothing here does.
        let borrowed = unsafe { BorrowedFd::borrow_raw(fd) };
        let (name, map_type) = match libbpf_rs::MapInfo::new(borrowed) {
            Ok(i) => (
                i.name().unwrap_or("?").to_string(),
                format!("{:?}", i.map_type()),
            ),
            Err(_) => ("?".into(), "?".into()),
        };
        debug_assert_eq!(borrowed.as_raw_fd(), fd);
        by_id.entry(id).or_insert(MapMemory {
            name,
            map_type,
            max_entries: field("max_entries:").unwrap_or(0),
            memlock_bytes: memlock,
        });
    }
    let mut maps: Vec<MapMemory> = by_id.into_values().collect();
    maps.sort_by_key(|m| std::cmp::Reverse(m.memlock_bytes));
    Ok(maps)
}

/// VmRSS and VmHWM of a process, in bytes.
pub fn rss_of(pid: u32) -> Result<(u64, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("/proc/{pid}/status"))?;
    let kib = |key: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .map(|k| k * 1024)
            .unwrap_or(0)
    };
    Ok((kib("VmRSS:"), kib("VmHWM:")))
}
