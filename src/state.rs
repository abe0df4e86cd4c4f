//! What a running daemon tells `status`: a JSON file per pin root under /run, guarded by an
//! exclusive lock so that two daemons never manage the same pins.

use std::fs::{self, File, OpenOptions};
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};

use crate::links::XdpAttachment;
use crate::metrics::MapFill;

/// A map's fill level as the daemon last wrote it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MapLevel {
    pub map: String,
    pub entries: u64,
    pub capacity: u64,
}

impl From<&MapFill> for MapLevel {
    fn from(f: &MapFill) -> MapLevel {
        MapLevel {
            map: f.map.to_string(),
            entries: f.entries,
            capacity: f.capacity,
        }
    }
}

const STATE_DIR: &str = "/run/ebpfsentinel";

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DaemonState {
    pub pid: u32,
    pub config: PathBuf,
    pub pin_root: PathBuf,
    pub netns_inode: u64,
    pub interfaces: Vec<XdpAttachment>,
    /// the TC entry programs (clsact filters are not pinned: `down` finds them here)
    #[serde(default)]
    pub tc: Vec<crate::tc_links::TcAttachment>,
    pub generation: u32,
    /// rule ids by rank, so readers can name the kernel's per-rule counters
    pub rules: Vec<String>,
    /// fill levels of the active generation
    pub maps: Vec<MapLevel>,
    pub metrics_listen: Option<SocketAddr>,
}

pub fn state_path(pin_root: &Path) -> PathBuf {
    let name: String = pin_root
        .to_string_lossy()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    Path::new(STATE_DIR).join(format!("{name}.json"))
}

/// /run/ebpfsentinel/<pin root mangled>-<what>.json: a status file the daemon writes next to
/// its state file (feeds, DNS lists) for the CLI to read without asking it.
pub fn side_file_path(pin_root: &Path, what: &str) -> PathBuf {
    let state = state_path(pin_root);
    let stem = state
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    state.with_file_name(format!("{stem}-{what}.json"))
}

/// A side file, None when missing or unreadable (the daemon may not have written it yet).
pub fn read_side_file<T: serde::de::DeserializeOwned>(path: &Path) -> Option<T> {
    let bytes = fs::read(path).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// Replaces the file at once (written aside, then renamed): readers never see half of it.
pub fn write_json_atomically(path: &Path, value: &impl Serialize) -> Result<()> {
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    let tmp = path.with_extension("tmp");
    fs::write(&tmp, serde_json::to_vec_pretty(value)?)
        .with_context(|| format!("writing {}", tmp.display()))?;
    fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))
}

pub fn netns_inode() -> u64 {
    use std::os::unix::fs::MetadataExt;
    fs::metadata("/proc/self/ns/net")
        .map(|m| m.ino())
        .unwrap_or(0)
}

/// Held for the daemon's lifetime; dropping it removes the state file.
pub struct StateLock {
    _lock: File,
    path: PathBuf,
    lock_path: PathBuf,
}

impl StateLock {
    pub fn acquire(pin_root: &Path) -> Result<StateLock> {
        fs::create_dir_all(STATE_DIR).with_context(|| format!("creating {STATE_DIR}"))?;
        let path = state_path(pin_root);
        let lock_path = path.with_extension("lock");
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .with_context(|| format!("opening {}", lock_path.display()))?;
        // SAFETY: flock on a valid open descriptor.
        let rc = unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if rc != 0 {
            let owner = read(pin_root)
                .map(|s| format!(" (pid {})", s.pid))
                .unwrap_or_default();
            bail!(
                "another ebpfsentinel daemon{owner} manages pin root {}",
                pin_root.display()
            );
        }
        Ok(StateLock {
            _lock: lock,
            path,
            lock_path,
        })
    }

    pub fn write(&self, state: &DaemonState) -> Result<()> {
        let tmp = self.path.with_extension("tmp");
        fs::write(&tmp, serde_json::to_vec_pretty(state)?)
            .with_context(|| format!("writing {}", tmp.display()))?;
        fs::rename(&tmp, &self.path).with_context(|| format!("writing {}", self.path.display()))
    }
}

impl Drop for StateLock {
    fn drop(&mut self) {
        // Unlinked while still held: a daemon starting now either failed on our lock or
        // creates a fresh file.
        let _ = fs::remove_file(&self.path);
        let _ = fs::remove_file(&self.lock_path);
    }
}

pub fn read(pin_root: &Path) -> Option<DaemonState> {
    let bytes = fs::read(state_path(pin_root)).ok()?;
    serde_json::from_slice(&bytes).ok()
}

pub fn pid_alive(pid: u32) -> bool {
    // SAFETY: signal 0 only checks that the process exists.
    unsafe { libc::kill(pid as libc::pid_t, 0) == 0 }
}
