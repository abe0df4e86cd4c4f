//! Opening, loading, pinning and attaching the programs.

use std::fs;
use std::mem::MaybeUninit;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use libbpf_rs::skel::{OpenSkel, Skel, SkelBuilder};
use libbpf_rs::{MapCore, OpenObject, ProgramMut, Xdp, XdpFlags};

use crate::config::XdpMode;
use crate::maps::firewall::{FirewallMaps, MAP_NAMES};
use crate::skel::xdp_firewall::{XdpFirewallSkel, XdpFirewallSkelBuilder};

const BPF_FS_MAGIC: i64 = 0xcafe4a11;

#[derive(Debug, Default, Clone)]
pub struct LoadOptions {
    /// Pin the shared maps here (a directory on a bpffs); None keeps everything private.
    pub pin_root: Option<PathBuf>,
    /// Addresses the spread-key benchmark harness cycles through; None leaves it unloaded.
    pub bench_addrs: Option<u32>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AttachMode {
    Native,
    Generic,
}

impl AttachMode {
    fn flags(self) -> XdpFlags {
        match self {
            AttachMode::Native => XdpFlags::DRV_MODE,
            AttachMode::Generic => XdpFlags::SKB_MODE,
        }
    }
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct XdpAttachment {
    pub ifname: String,
    pub ifindex: i32,
    pub mode: AttachMode,
    pub prog_id: u32,
}

pub struct Dataplane {
    pub firewall: XdpFirewallSkel<'static>,
    pinned: Vec<PathBuf>,
    attachments: Vec<XdpAttachment>,
}

/// Fails unless `dir` (or its nearest existing ancestor) is on a bpffs.
pub fn ensure_bpffs(dir: &Path) -> Result<()> {
    let mut probe = dir;
    while !probe.exists() {
        probe = probe.parent().unwrap_or(Path::new("/"));
    }
    let c_path = std::ffi::CString::new(probe.as_os_str().as_encoded_bytes())
        .context("pin root contains a NUL byte")?;
    let mut st = MaybeUninit::<libc::statfs>::uninit();
    // SAFETY: c_path is NUL-terminated and st is a valid out-pointer for statfs.
    let rc = unsafe { libc::statfs(c_path.as_ptr(), st.as_mut_ptr()) };
    if rc != 0 {
        return Err(std::io::Error::last_os_error())
            .with_context(|| format!("statfs {}", probe.display()));
    }
    // SAFETY: statfs returned 0, so it filled st.
    let magic = unsafe { st.assume_init() }.f_type;
    if magic != BPF_FS_MAGIC {
        bail!(
            "pin root {} is not on a bpffs ({} has filesystem magic {magic:#x}): mount one with \
             `mount -t bpf bpf /sys/fs/bpf` or pass --pin-root DIR on a mounted bpffs (under \
             `ip netns exec`, /sys is remounted and /sys/fs/bpf is empty)",
            dir.display(),
            probe.display()
        );
    }
    Ok(())
}

pub fn ifindex(ifname: &str) -> Result<i32> {
    let c = std::ffi::CString::new(ifname).context("interface name contains a NUL byte")?;
    // SAFETY: c is a valid NUL-terminated string.
    let idx = unsafe { libc::if_nametoindex(c.as_ptr()) };
    if idx == 0 {
        bail!("no interface named {ifname} in this network namespace");
    }
    Ok(idx as i32)
}

impl Dataplane {
    pub fn load(opts: &LoadOptions) -> Result<Dataplane> {
        if let Some(root) = &opts.pin_root {
            ensure_bpffs(root)?;
        }
        // The skeleton borrows its object storage for as long as the programs live: one small
        // allocation per load, kept for the process lifetime.
        let storage: &'static mut MaybeUninit<OpenObject> =
            Box::leak(Box::new(MaybeUninit::uninit()));
        let mut open = XdpFirewallSkelBuilder::default()
            .open(storage)
            .context("opening the xdp_firewall object")?;
        match opts.bench_addrs {
            Some(n) => open
                .maps
                .bench_addrs
                .set_max_entries(n.max(1))
                .context("sizing bench_addrs")?,
            None => open.progs.xdp_firewall_spread.set_autoload(false),
        }
        let firewall = open.load().map_err(|e| {
            anyhow::anyhow!(
                "loading xdp_firewall into the kernel failed: {e} (EPERM: missing CAP_BPF/CAP_NET_ADMIN or root; EACCES/EINVAL: the verifier or a map definition refused it, see the libbpf log above)"
            )
        })?;
        let mut dp = Dataplane {
            firewall,
            pinned: Vec::new(),
            attachments: Vec::new(),
        };
        if let Some(root) = &opts.pin_root {
            dp.pin(root)?;
        }
        Ok(dp)
    }

    fn pin(&mut self, root: &Path) -> Result<()> {
        fs::create_dir_all(root)
            .with_context(|| format!("creating pin root {}", root.display()))?;
        for name in MAP_NAMES {
            let path = root.join(name);
            if path.exists() {
                fs::remove_file(&path)
                    .with_context(|| format!("removing stale pin {}", path.display()))?;
            }
            let mut map = self
                .firewall
                .object_mut()
                .maps_mut()
                .find(|m| m.name() == name)
                .with_context(|| format!("no map {name} to pin"))?;
            map.pin(&path)
                .with_context(|| format!("pinning {}", path.display()))?;
            self.pinned.push(path);
        }
        Ok(())
    }

    pub fn firewall_maps(&self) -> Result<FirewallMaps> {
        FirewallMaps::from_object(self.firewall.object())
    }

    pub fn firewall_program(&self) -> &ProgramMut<'static> {
        &self.firewall.progs.xdp_firewall
    }

    pub fn attachments(&self) -> &[XdpAttachment] {
        &self.attachments
    }

    /// Attaches xdp_firewall without replacing a program someone else attached.
    pub fn attach_xdp(&mut self, ifname: &str, mode: XdpMode) -> Result<&XdpAttachment> {
        let ifindex = ifindex(ifname)?;
        let prog = &self.firewall.progs.xdp_firewall;
        let xdp = Xdp::new(prog.as_fd());
        let try_mode = |m: AttachMode| xdp.attach(ifindex, m.flags() | XdpFlags::UPDATE_IF_NOEXIST);
        let mode = match mode {
            XdpMode::Native => try_mode(AttachMode::Native)
                .map(|_| AttachMode::Native)
                .with_context(|| format!("attaching XDP in native mode to {ifname}"))?,
            XdpMode::Generic => try_mode(AttachMode::Generic)
                .map(|_| AttachMode::Generic)
                .with_context(|| format!("attaching XDP in generic mode to {ifname}"))?,
            XdpMode::Auto => match try_mode(AttachMode::Native) {
                Ok(()) => AttachMode::Native,
                Err(native) => try_mode(AttachMode::Generic)
                    .map(|_| AttachMode::Generic)
                    .with_context(|| {
                        format!("attaching XDP to {ifname} (native mode failed too: {native})")
                    })?,
            },
        };
        let prog_id = xdp.query_id(ifindex, mode.flags()).unwrap_or(0);
        self.attachments.push(XdpAttachment {
            ifname: ifname.to_string(),
            ifindex,
            mode,
            prog_id,
        });
        Ok(self.attachments.last().expect("just pushed"))
    }

    /// Detaches what this process attached, only where our program is still the one there.
    pub fn detach_all(&mut self) -> Vec<String> {
        let mut errors = Vec::new();
        let prog = &self.firewall.progs.xdp_firewall;
        let xdp = Xdp::new(prog.as_fd());
        for a in self.attachments.drain(..) {
            let current = xdp.query_id(a.ifindex, a.mode.flags()).unwrap_or(0);
            if current != a.prog_id {
                continue;
            }
            if let Err(e) = xdp.detach(a.ifindex, a.mode.flags()) {
                errors.push(format!("detaching XDP from {}: {e}", a.ifname));
            }
        }
        errors
    }

    pub fn unpin(&mut self) -> Vec<String> {
        self.pinned
            .drain(..)
            .filter_map(|p| {
                fs::remove_file(&p)
                    .err()
                    .map(|e| format!("unpinning {}: {e}", p.display()))
            })
            .collect()
    }
}

impl Drop for Dataplane {
    fn drop(&mut self) {
        // A netlink XDP attachment outlives the process; never leave one behind by accident.
        for e in self.detach_all() {
            eprintln!("{e}");
        }
    }
}
