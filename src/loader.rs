//! Opening, loading, pinning and attaching the programs.

use std::fs;
use std::mem::MaybeUninit;
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use libbpf_rs::skel::{OpenSkel, Skel, SkelBuilder};
use libbpf_rs::{MapCore, OpenObject, ProgramMut};

use crate::config::XdpMode;
use crate::links::{self, Attached, XdpAttachment};
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

pub struct Dataplane {
    pub firewall: XdpFirewallSkel<'static>,
    pin_root: Option<PathBuf>,
    /// the maps were taken over from pins an earlier daemon left
    pub adopted: bool,
    attachments: Vec<Attached>,
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
        let kernel = crate::features::probe();
        let missing = kernel.missing(&crate::features::FIREWALL_NEEDS);
        if !missing.is_empty() {
            bail!(
                "kernel {} lacks what xdp_firewall needs: {}",
                kernel.kernel,
                missing.join(", ")
            );
        }
        // The skeleton borrows its object storage for as long as the programs live: one small
        // allocation per load, kept for the process lifetime.
        let storage: &'static mut MaybeUninit<OpenObject> =
            Box::leak(Box::new(MaybeUninit::uninit()));
        let mut open = XdpFirewallSkelBuilder::default()
            .open(storage)
            .context("opening the xdp_firewall object")?;
        let mut adopted = false;
        if let Some(root) = &opts.pin_root {
            for mut map in open.open_object_mut().maps_mut() {
                let name = map.name().to_string_lossy().into_owned();
                let path = root.join(&name);
                if MAP_NAMES.contains(&name.as_str()) && path.exists() {
                    map.reuse_pinned_map(&path).with_context(|| {
                        format!(
                            "the map pinned at {} does not fit this version of ebpfsentinel: \
                             run `ebpfsentinel down --pin-root {}` to remove the old \
                             enforcement first",
                            path.display(),
                            root.display()
                        )
                    })?;
                    adopted = true;
                }
            }
        }
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
            pin_root: opts.pin_root.clone(),
            adopted,
            attachments: Vec::new(),
        };
        if let Some(root) = &opts.pin_root {
            dp.pin(root)?;
        }
        Ok(dp)
    }

    /// Pins every map not pinned yet (adopted maps already are).
    fn pin(&mut self, root: &Path) -> Result<()> {
        fs::create_dir_all(root)
            .with_context(|| format!("creating pin root {}", root.display()))?;
        for mut map in self.firewall.object_mut().maps_mut() {
            let name = map.name().to_string_lossy().into_owned();
            if !MAP_NAMES.contains(&name.as_str()) || map.is_pinned() {
                continue;
            }
            let path = root.join(&name);
            if path.exists() {
                fs::remove_file(&path)
                    .with_context(|| format!("removing stale pin {}", path.display()))?;
            }
            map.pin(&path)
                .with_context(|| format!("pinning {}", path.display()))?;
        }
        Ok(())
    }

    pub fn firewall_maps(&self) -> Result<FirewallMaps> {
        FirewallMaps::from_object(self.firewall.object())
    }

    pub fn firewall_program(&self) -> &ProgramMut<'static> {
        &self.firewall.progs.xdp_firewall
    }

    pub fn attachments(&self) -> impl Iterator<Item = &XdpAttachment> {
        self.attachments.iter().map(|a| &a.info)
    }

    /// Attaches xdp_firewall to an interface, taking over a pinned link an earlier daemon left.
    pub fn attach_xdp(&mut self, ifname: &str, mode: XdpMode) -> Result<&XdpAttachment> {
        let root = self
            .pin_root
            .clone()
            .context("attaching needs a pin root: links are pinned under it")?;
        let prog = &self.firewall.progs.xdp_firewall;
        let prog_id = libbpf_rs::Program::id_from_fd(prog.as_fd())?;
        let attached = links::attach(prog.as_fd(), prog_id, ifname, mode, &root)?;
        self.attachments.push(attached);
        Ok(&self.attachments.last().expect("just pushed").info)
    }

    /// Detaches one interface now (it left the config).
    pub fn detach_xdp(&mut self, ifname: &str) -> Result<()> {
        if let Some(i) = self
            .attachments
            .iter()
            .position(|a| a.info.ifname == ifname)
        {
            self.attachments.remove(i).detach()?;
        }
        Ok(())
    }

    /// Detaches everything this process attached and removes every pin: what `down` and a
    /// transient `run` leave behind is plain forwarding.
    pub fn teardown(&mut self) -> Vec<String> {
        let mut problems: Vec<String> = self
            .attachments
            .drain(..)
            .filter_map(|a| a.detach().err().map(|e| format!("{e:#}")))
            .collect();
        if let Some(root) = &self.pin_root {
            problems.extend(remove_pins(root));
        }
        problems
    }
}

/// Unpins every map and link ebpfsentinel pins under `root`; problems as text.
pub fn remove_pins(root: &Path) -> Vec<String> {
    let mut problems = Vec::new();
    for ifname in links::pinned_interfaces(root) {
        if let Err(e) = links::remove_pinned(root, &ifname) {
            problems.push(format!("{e:#}"));
        }
    }
    let _ = fs::remove_dir(links::links_dir(root));
    for name in MAP_NAMES {
        let path = root.join(name);
        if path.exists() {
            if let Err(e) = fs::remove_file(&path) {
                problems.push(format!("unpinning {}: {e}", path.display()));
            }
        }
    }
    let _ = fs::remove_dir(root);
    problems
}
