//! Opening, loading, pinning and attaching the programs.

use std::fs;
use std::mem::MaybeUninit;
use std::os::fd::{AsFd, AsRawFd};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use libbpf_rs::skel::{OpenSkel, Skel, SkelBuilder};
use libbpf_rs::{MapCore, OpenObject, ProgramMut};

use crate::config::XdpMode;
use crate::links::{self, Attached, XdpAttachment};
use crate::maps::blacklist::{BlacklistMaps, BLACKLIST_MAP_NAMES};
use crate::maps::conntrack::{ConntrackMaps, CT_MAP_NAMES};
use crate::maps::dns::{DnsMaps, DNS_MAP_NAMES};
use crate::maps::firewall::{FirewallMaps, MAP_NAMES};
use crate::maps::ids::{IdsMaps, IDS_MAP_NAMES};
use crate::maps::lb::{LbMaps, LB_MAP_NAMES};
use crate::maps::ratelimit::{RateLimitMaps, RL_MAP_NAMES};
use crate::maps::scrub::{ScrubMaps, SCRUB_MAP_NAMES};
use crate::maps::threatintel::{ThreatIntelMaps, TI_MAP_NAMES};
use crate::skel::tc_conntrack::{TcConntrackSkel, TcConntrackSkelBuilder};
use crate::skel::tc_dns::{TcDnsSkel, TcDnsSkelBuilder};
use crate::skel::tc_ids::{TcIdsSkel, TcIdsSkelBuilder};
use crate::skel::tc_scrub::{TcScrubSkel, TcScrubSkelBuilder};
use crate::skel::tc_threatintel::{TcThreatintelSkel, TcThreatintelSkelBuilder};
use crate::skel::xdp_firewall::{XdpFirewallSkel, XdpFirewallSkelBuilder};
use crate::skel::xdp_lb::{XdpLbSkel, XdpLbSkelBuilder};
use crate::skel::xdp_ratelimit::{XdpRatelimitSkel, XdpRatelimitSkelBuilder};
use crate::tc_links::{self, Direction, TcAttached, TcAttachment};

/// The TC chains, pinned so that a restarted daemon fills the slots the attached entry
/// programs already use.
pub const TC_MAP_NAMES: [&str; 2] = ["tc_chain_ingress", "tc_chain_egress"];

const BPF_FS_MAGIC: i64 = 0xcafe4a11;

#[derive(Debug, Default, Clone)]
pub struct LoadOptions {
    /// Pin the shared maps here (a directory on a bpffs); None keeps everything private.
    pub pin_root: Option<PathBuf>,
    /// Addresses the spread-key benchmark harness cycles through; None leaves it unloaded.
    pub bench_addrs: Option<u32>,
    /// Entries of the conntrack table; None: the compiled-in default. A table pinned by an
    /// earlier daemon keeps its size (and its flows) until `down`.
    pub ct_table_size: Option<u32>,
}

pub struct Dataplane {
    pub firewall: XdpFirewallSkel<'static>,
    pub ratelimit: XdpRatelimitSkel<'static>,
    pub lb: XdpLbSkel<'static>,
    pub conntrack: TcConntrackSkel<'static>,
    pub threatintel: TcThreatintelSkel<'static>,
    pub scrub: TcScrubSkel<'static>,
    pub dns: TcDnsSkel<'static>,
    pub ids: TcIdsSkel<'static>,
    pin_root: Option<PathBuf>,
    /// the maps were taken over from pins an earlier daemon left
    pub adopted: bool,
    /// what the conntrack table holds, when it differs from what was asked
    pub ct_table_note: Option<String>,
    attachments: Vec<Attached>,
    tc_attachments: Vec<TcAttached>,
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

/// max_entries of a pinned map, None when nothing is pinned there.
fn pinned_max_entries(path: &Path) -> Option<u32> {
    let map = libbpf_rs::MapHandle::from_pinned_path(path).ok()?;
    map.info().ok().map(|info| info.info.max_entries)
}

/// Takes over the maps an earlier daemon pinned under `root` (those of `names` that exist);
/// true if any was.
fn adopt_pins(open: &mut libbpf_rs::OpenObject, root: &Path, names: &[&str]) -> Result<bool> {
    let mut adopted = false;
    for mut map in open.maps_mut() {
        let name = map.name().to_string_lossy().into_owned();
        let path = root.join(&name);
        if names.contains(&name.as_str()) && path.exists() {
            map.reuse_pinned_map(&path).with_context(|| {
                format!(
                    "the map pinned at {} does not fit this version of ebpfsentinel: run \
                     `ebpfsentinel down --pin-root {}` to remove the old enforcement first",
                    path.display(),
                    root.display()
                )
            })?;
            adopted = true;
        }
    }
    Ok(adopted)
}

/// Pins every map of `names` not pinned yet (adopted maps already are).
fn pin_maps(obj: &mut libbpf_rs::Object, root: &Path, names: &[&str]) -> Result<()> {
    fs::create_dir_all(root).with_context(|| format!("creating pin root {}", root.display()))?;
    for mut map in obj.maps_mut() {
        let name = map.name().to_string_lossy().into_owned();
        if !names.contains(&name.as_str()) || map.is_pinned() {
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

fn load_error(program: &str) -> impl FnOnce(libbpf_rs::Error) -> anyhow::Error + '_ {
    move |e| {
        anyhow::anyhow!(
            "loading {program} into the kernel failed: {e} (EPERM: missing CAP_BPF/CAP_NET_ADMIN or root; EACCES/EINVAL: the verifier or a map definition refused it, see the libbpf log above)"
        )
    }
}

impl Dataplane {
    pub fn load(opts: &LoadOptions) -> Result<Dataplane> {
        if let Some(root) = &opts.pin_root {
            ensure_bpffs(root)?;
        }
        let kernel = crate::features::probe();
        let mut needs = crate::features::FIREWALL_NEEDS.to_vec();
        needs.extend(crate::features::CONNTRACK_NEEDS);
        needs.extend(crate::features::THREATINTEL_NEEDS);
        needs.extend(crate::features::LATER_STAGES_NEEDS);
        let missing = kernel.missing(&needs);
        if !missing.is_empty() {
            bail!(
                "kernel {} lacks what ebpfsentinel's programs need: {} (Debian 12's 6.1 or newer has all of it)",
                kernel.kernel,
                missing.join(", ")
            );
        }
        // Each skeleton borrows its object storage for as long as the programs live: one small
        // allocation per load, kept for the process lifetime.
        let storage: &'static mut MaybeUninit<OpenObject> =
            Box::leak(Box::new(MaybeUninit::uninit()));
        let mut open = XdpFirewallSkelBuilder::default()
            .open(storage)
            .context("opening the xdp_firewall object")?;
        let mut adopted = false;
        let mut ct_table_note = None;
        let mut ct_size = opts
            .ct_table_size
            .unwrap_or(crate::abi::ct_limits::CT_DEFAULT_TABLE_SIZE.0);
        if let Some(root) = &opts.pin_root {
            if let Some(pinned) = pinned_max_entries(&root.join("ct_table")) {
                if pinned != ct_size {
                    ct_table_note = Some(format!(
                        "the pinned conntrack table holds {pinned} entries, not the configured \
                         {ct_size}: its flows are kept; `ebpfsentinel down` and a restart resize it"
                    ));
                    ct_size = pinned;
                }
            }
        }
        open.maps
            .ct_table
            .set_max_entries(ct_size)
            .context("sizing ct_table")?;
        if let Some(root) = &opts.pin_root {
            adopted |= adopt_pins(open.open_object_mut(), root, &MAP_NAMES)?;
            adopted |= adopt_pins(open.open_object_mut(), root, &CT_MAP_NAMES)?;
            adopted |= adopt_pins(open.open_object_mut(), root, &BLACKLIST_MAP_NAMES)?;
        }
        match opts.bench_addrs {
            Some(n) => open
                .maps
                .bench_addrs
                .set_max_entries(n.max(1))
                .context("sizing bench_addrs")?,
            None => {
                open.progs.xdp_firewall_spread.set_autoload(false);
                open.progs.xdp_chain_spread.set_autoload(false);
            }
        }
        let mut firewall = open.load().map_err(load_error("xdp_firewall"))?;

        // Later stages share the firewall's ring, chain and scratch maps.
        let storage: &'static mut MaybeUninit<OpenObject> =
            Box::leak(Box::new(MaybeUninit::uninit()));
        let mut open_rl = XdpRatelimitSkelBuilder::default()
            .open(storage)
            .context("opening the xdp_ratelimit object")?;
        open_rl.maps.events.reuse_fd(firewall.maps.events.as_fd())?;
        open_rl
            .maps
            .xdp_chain
            .reuse_fd(firewall.maps.xdp_chain.as_fd())?;
        open_rl
            .maps
            .xdp_scratch
            .reuse_fd(firewall.maps.xdp_scratch.as_fd())?;
        if let Some(rodata) = open_rl.maps.rodata_data.as_deref_mut() {
            let cpus = libbpf_rs::num_possible_cpus()? as u32;
            rodata.rl_nr_cpus = cpus.min(crate::abi::rl_limits::RL_MAX_CPUS.0);
        }
        if let Some(root) = &opts.pin_root {
            adopted |= adopt_pins(open_rl.open_object_mut(), root, &RL_MAP_NAMES)?;
        }
        let mut ratelimit = open_rl.load().map_err(load_error("xdp_ratelimit"))?;

        // The load balancer is the last XDP stage: the firewall's ring, chain and scratch.
        let storage: &'static mut MaybeUninit<OpenObject> =
            Box::leak(Box::new(MaybeUninit::uninit()));
        let mut open_lb = XdpLbSkelBuilder::default()
            .open(storage)
            .context("opening the xdp_lb object")?;
        open_lb.maps.events.reuse_fd(firewall.maps.events.as_fd())?;
        open_lb
            .maps
            .xdp_chain
            .reuse_fd(firewall.maps.xdp_chain.as_fd())?;
        open_lb
            .maps
            .xdp_scratch
            .reuse_fd(firewall.maps.xdp_scratch.as_fd())?;
        if let Some(root) = &opts.pin_root {
            adopted |= adopt_pins(open_lb.open_object_mut(), root, &LB_MAP_NAMES)?;
        }
        let mut lb = open_lb.load().map_err(load_error("xdp_lb"))?;

        // The TC pipeline shares the firewall's conntrack maps.
        let storage: &'static mut MaybeUninit<OpenObject> =
            Box::leak(Box::new(MaybeUninit::uninit()));
        let mut open_ct = TcConntrackSkelBuilder::default()
            .open(storage)
            .context("opening the tc_conntrack object")?;
        open_ct
            .maps
            .ct_table
            .reuse_fd(firewall.maps.ct_table.as_fd())?;
        open_ct
            .maps
            .ct_settings
            .reuse_fd(firewall.maps.ct_settings.as_fd())?;
        open_ct
            .maps
            .ct_stats
            .reuse_fd(firewall.maps.ct_stats.as_fd())?;
        if let Some(root) = &opts.pin_root {
            adopted |= adopt_pins(open_ct.open_object_mut(), root, &TC_MAP_NAMES)?;
        }
        let mut conntrack = open_ct.load().map_err(load_error("tc_conntrack"))?;

        // Threat intel is a TC stage: the TC chains and scratch of tc_conntrack, the ring of
        // the firewall.
        let storage: &'static mut MaybeUninit<OpenObject> =
            Box::leak(Box::new(MaybeUninit::uninit()));
        let mut open_ti = TcThreatintelSkelBuilder::default()
            .open(storage)
            .context("opening the tc_threatintel object")?;
        open_ti.maps.events.reuse_fd(firewall.maps.events.as_fd())?;
        open_ti
            .maps
            .xdp_chain
            .reuse_fd(firewall.maps.xdp_chain.as_fd())?;
        open_ti
            .maps
            .xdp_scratch
            .reuse_fd(firewall.maps.xdp_scratch.as_fd())?;
        open_ti
            .maps
            .tc_chain_ingress
            .reuse_fd(conntrack.maps.tc_chain_ingress.as_fd())?;
        open_ti
            .maps
            .tc_chain_egress
            .reuse_fd(conntrack.maps.tc_chain_egress.as_fd())?;
        open_ti
            .maps
            .tc_scratch
            .reuse_fd(conntrack.maps.tc_scratch.as_fd())?;
        if let Some(root) = &opts.pin_root {
            adopted |= adopt_pins(open_ti.open_object_mut(), root, &TI_MAP_NAMES)?;
        }
        let mut threatintel = open_ti.load().map_err(load_error("tc_threatintel"))?;

        // The DNS blocklist: the TC chains and scratch of tc_conntrack, the firewall's ring.
        let storage: &'static mut MaybeUninit<OpenObject> =
            Box::leak(Box::new(MaybeUninit::uninit()));
        let mut open_dns = TcDnsSkelBuilder::default()
            .open(storage)
            .context("opening the tc_dns object")?;
        open_dns
            .maps
            .events
            .reuse_fd(firewall.maps.events.as_fd())?;
        open_dns
            .maps
            .xdp_chain
            .reuse_fd(firewall.maps.xdp_chain.as_fd())?;
        open_dns
            .maps
            .xdp_scratch
            .reuse_fd(firewall.maps.xdp_scratch.as_fd())?;
        open_dns
            .maps
            .tc_chain_ingress
            .reuse_fd(conntrack.maps.tc_chain_ingress.as_fd())?;
        open_dns
            .maps
            .tc_chain_egress
            .reuse_fd(conntrack.maps.tc_chain_egress.as_fd())?;
        open_dns
            .maps
            .tc_scratch
            .reuse_fd(conntrack.maps.tc_scratch.as_fd())?;
        if let Some(root) = &opts.pin_root {
            adopted |= adopt_pins(open_dns.open_object_mut(), root, &DNS_MAP_NAMES)?;
        }
        let mut dns = open_dns.load().map_err(load_error("tc_dns"))?;

        // Scrubbing is the last TC stage: the TC chains and scratch of tc_conntrack.
        let storage: &'static mut MaybeUninit<OpenObject> =
            Box::leak(Box::new(MaybeUninit::uninit()));
        let mut open_scrub = TcScrubSkelBuilder::default()
            .open(storage)
            .context("opening the tc_scrub object")?;
        open_scrub
            .maps
            .tc_chain_ingress
            .reuse_fd(conntrack.maps.tc_chain_ingress.as_fd())?;
        open_scrub
            .maps
            .tc_chain_egress
            .reuse_fd(conntrack.maps.tc_chain_egress.as_fd())?;
        open_scrub
            .maps
            .tc_scratch
            .reuse_fd(conntrack.maps.tc_scratch.as_fd())?;
        if let Some(root) = &opts.pin_root {
            adopted |= adopt_pins(open_scrub.open_object_mut(), root, &SCRUB_MAP_NAMES)?;
        }
        let mut scrub = open_scrub.load().map_err(load_error("tc_scrub"))?;

        // The IDS is a TC stage: the TC chains and scratch of tc_conntrack, the firewall's ring.
        let storage: &'static mut MaybeUninit<OpenObject> =
            Box::leak(Box::new(MaybeUninit::uninit()));
        let mut open_ids = TcIdsSkelBuilder::default()
            .open(storage)
            .context("opening the tc_ids object")?;
        open_ids
            .maps
            .events
            .reuse_fd(firewall.maps.events.as_fd())?;
        open_ids
            .maps
            .xdp_chain
            .reuse_fd(firewall.maps.xdp_chain.as_fd())?;
        open_ids
            .maps
            .xdp_scratch
            .reuse_fd(firewall.maps.xdp_scratch.as_fd())?;
        open_ids
            .maps
            .tc_chain_ingress
            .reuse_fd(conntrack.maps.tc_chain_ingress.as_fd())?;
        open_ids
            .maps
            .tc_chain_egress
            .reuse_fd(conntrack.maps.tc_chain_egress.as_fd())?;
        open_ids
            .maps
            .tc_scratch
            .reuse_fd(conntrack.maps.tc_scratch.as_fd())?;
        if let Some(root) = &opts.pin_root {
            adopted |= adopt_pins(open_ids.open_object_mut(), root, &IDS_MAP_NAMES)?;
        }
        let mut ids = open_ids.load().map_err(load_error("tc_ids"))?;

        if let Some(root) = &opts.pin_root {
            pin_maps(firewall.object_mut(), root, &MAP_NAMES)?;
            pin_maps(firewall.object_mut(), root, &CT_MAP_NAMES)?;
            pin_maps(ratelimit.object_mut(), root, &RL_MAP_NAMES)?;
            pin_maps(lb.object_mut(), root, &LB_MAP_NAMES)?;
            pin_maps(conntrack.object_mut(), root, &TC_MAP_NAMES)?;
            pin_maps(firewall.object_mut(), root, &BLACKLIST_MAP_NAMES)?;
            pin_maps(threatintel.object_mut(), root, &TI_MAP_NAMES)?;
            pin_maps(scrub.object_mut(), root, &SCRUB_MAP_NAMES)?;
            pin_maps(dns.object_mut(), root, &DNS_MAP_NAMES)?;
            pin_maps(ids.object_mut(), root, &IDS_MAP_NAMES)?;
        }
        let dataplane = Dataplane {
            firewall,
            ratelimit,
            lb,
            conntrack,
            threatintel,
            scrub,
            dns,
            ids,
            pin_root: opts.pin_root.clone(),
            adopted,
            ct_table_note,
            attachments: Vec::new(),
            tc_attachments: Vec::new(),
        };
        // Each stage is a no-op until its settings enable it; the daemon empties the slots of
        // disabled stages.
        dataplane.set_tc_stage(crate::abi::tc_stage::TC_STAGE_CONNTRACK, true)?;
        dataplane.set_tc_stage(crate::abi::tc_stage::TC_STAGE_THREATINTEL, true)?;
        Ok(dataplane)
    }

    /// Fills (or empties, to disable) a stage's slot in both TC chains.
    pub fn set_tc_stage(&self, stage: crate::abi::tc_stage, enabled: bool) -> Result<()> {
        use libbpf_rs::MapFlags;
        let slot = stage.0.to_ne_bytes();
        let prog = match stage {
            crate::abi::tc_stage::TC_STAGE_CONNTRACK => &self.conntrack.progs.tc_conntrack,
            crate::abi::tc_stage::TC_STAGE_THREATINTEL => &self.threatintel.progs.tc_threatintel,
            crate::abi::tc_stage::TC_STAGE_DNS => &self.dns.progs.tc_dns,
            crate::abi::tc_stage::TC_STAGE_SCRUB => &self.scrub.progs.tc_scrub,
            crate::abi::tc_stage::TC_STAGE_IDS => &self.ids.progs.tc_ids,
            other => bail!("no program for TC stage {}", other.0),
        };
        let fd = (prog.as_fd().as_raw_fd() as u32).to_ne_bytes();
        for chain in [
            &self.conntrack.maps.tc_chain_ingress,
            &self.conntrack.maps.tc_chain_egress,
        ] {
            if enabled {
                chain
                    .update(&slot, &fd, MapFlags::ANY)
                    .context("filling the TC chain")?;
            } else {
                let _ = chain.delete(&slot);
            }
        }
        Ok(())
    }

    pub fn conntrack_maps(&self) -> Result<ConntrackMaps> {
        ConntrackMaps::from_object(self.firewall.object())
    }

    pub fn threatintel_maps(&self) -> Result<ThreatIntelMaps> {
        ThreatIntelMaps::from_object(self.threatintel.object())
    }

    pub fn dns_maps(&self) -> Result<DnsMaps> {
        DnsMaps::from_object(self.dns.object())
    }

    pub fn scrub_maps(&self) -> Result<ScrubMaps> {
        ScrubMaps::from_object(self.scrub.object())
    }

    pub fn ids_maps(&self) -> Result<IdsMaps> {
        IdsMaps::from_object(self.ids.object())
    }

    pub fn blacklist_maps(&self) -> Result<BlacklistMaps> {
        BlacklistMaps::from_object(self.firewall.object())
    }

    pub fn tc_attachments(&self) -> impl Iterator<Item = &TcAttachment> {
        self.tc_attachments.iter().map(|a| &a.info)
    }

    /// Hangs the TC entry programs on both directions of an interface.
    pub fn attach_tc(&mut self, ifname: &str, mode: crate::config::TcMode) -> Result<()> {
        let root = self
            .pin_root
            .clone()
            .context("attaching needs a pin root: links are pinned under it")?;
        for direction in Direction::BOTH {
            let prog = match direction {
                Direction::Ingress => &self.conntrack.progs.tc_ingress,
                Direction::Egress => &self.conntrack.progs.tc_egress,
            };
            let prog_id = libbpf_rs::Program::id_from_fd(prog.as_fd())?;
            let attached = tc_links::attach(prog.as_fd(), prog_id, ifname, direction, mode, &root)?;
            self.tc_attachments.push(attached);
        }
        Ok(())
    }

    /// Removes the TC entry programs from an interface (it left the config).
    pub fn detach_tc(&mut self, ifname: &str) -> Result<()> {
        let (gone, kept) = self
            .tc_attachments
            .drain(..)
            .partition(|a| a.info.ifname == ifname);
        self.tc_attachments = kept;
        for a in gone {
            a.detach()?;
        }
        Ok(())
    }

    /// Fills (or empties, to disable) a stage's slot in the XDP chain.
    pub fn set_stage(&self, stage: crate::abi::xdp_stage, enabled: bool) -> Result<()> {
        use libbpf_rs::MapFlags;
        let slot = stage.0.to_ne_bytes();
        let chain = &self.firewall.maps.xdp_chain;
        let prog = match stage {
            crate::abi::xdp_stage::XDP_STAGE_RATELIMIT => &self.ratelimit.progs.xdp_ratelimit,
            crate::abi::xdp_stage::XDP_STAGE_LB => &self.lb.progs.xdp_lb,
            other => bail!("no program for XDP stage {}", other.0),
        };
        if enabled {
            let fd = prog.as_fd().as_raw_fd() as u32;
            chain
                .update(&slot, &fd.to_ne_bytes(), MapFlags::ANY)
                .context("filling the XDP chain")
        } else {
            // an empty slot already is what we want
            let _ = chain.delete(&slot);
            Ok(())
        }
    }

    pub fn firewall_maps(&self) -> Result<FirewallMaps> {
        FirewallMaps::from_object(self.firewall.object())
    }

    pub fn ratelimit_maps(&self) -> Result<RateLimitMaps> {
        RateLimitMaps::from_object(self.ratelimit.object())
    }

    pub fn lb_maps(&self) -> Result<LbMaps> {
        LbMaps::from_object(self.lb.object())
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
        problems.extend(
            self.tc_attachments
                .drain(..)
                .filter_map(|a| a.detach().err().map(|e| format!("{e:#}"))),
        );
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
    problems.extend(tc_links::remove_pinned(root));
    let _ = fs::remove_dir(links::links_dir(root));
    for name in MAP_NAMES
        .iter()
        .chain(&RL_MAP_NAMES)
        .chain(&LB_MAP_NAMES)
        .chain(&CT_MAP_NAMES)
        .chain(&TC_MAP_NAMES)
        .chain(&BLACKLIST_MAP_NAMES)
        .chain(&TI_MAP_NAMES)
        .chain(&SCRUB_MAP_NAMES)
        .chain(&DNS_MAP_NAMES)
        .chain(&IDS_MAP_NAMES)
    {
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
