//! XDP attachments that outlive the daemon: bpf_links pinned under the pin root, adopted and
//! re-pointed at the new program by the next daemon (one atomic bpf_link_update, no moment
//! without a program), and a netlink attachment where the kernel has no XDP links.

use std::ffi::CString;
use std::fs;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use libbpf_rs::libbpf_sys;
use serde::{Deserialize, Serialize};

use crate::config::XdpMode;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AttachMode {
    Native,
    Generic,
}

impl AttachMode {
    fn flags(self) -> u32 {
        match self {
            AttachMode::Native => libbpf_sys::XDP_FLAGS_DRV_MODE,
            AttachMode::Generic => libbpf_sys::XDP_FLAGS_SKB_MODE,
        }
    }
}

/// How the program hangs on the interface.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Hook {
    /// a bpf_link pinned under the pin root
    Link,
    /// the legacy netlink attachment (kernels without XDP links); it outlives the process too
    Netlink,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct XdpAttachment {
    pub ifname: String,
    pub ifindex: i32,
    pub mode: AttachMode,
    pub hook: Hook,
    pub prog_id: u32,
    /// true when an earlier daemon's attachment was taken over
    pub adopted: bool,
}

impl std::fmt::Display for AttachMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            AttachMode::Native => "native",
            AttachMode::Generic => "generic",
        })
    }
}

impl std::fmt::Display for Hook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Hook::Link => "link",
            Hook::Netlink => "netlink",
        })
    }
}

pub fn links_dir(pin_root: &Path) -> PathBuf {
    pin_root.join("links")
}

fn link_pin(pin_root: &Path, ifname: &str) -> PathBuf {
    links_dir(pin_root).join(format!("xdp-{ifname}"))
}

fn c_path(p: &Path) -> Result<CString> {
    CString::new(p.as_os_str().as_encoded_bytes()).context("path contains a NUL byte")
}

/// libbpf returns -errno.
fn check(rc: i32, what: impl FnOnce() -> String) -> Result<i32> {
    if rc < 0 {
        return Err(std::io::Error::from_raw_os_error(-rc)).with_context(what);
    }
    Ok(rc)
}

fn owned(fd: i32) -> OwnedFd {
    // SAFETY: fd was just returned by the kernel for us and nothing else owns it.
    unsafe { OwnedFd::from_raw_fd(fd) }
}

/// (attach mode, program id) currently on the interface, None when nothing is attached.
pub fn query(ifindex: i32) -> Option<(AttachMode, u32)> {
    let mut opts = libbpf_sys::bpf_xdp_query_opts {
        sz: std::mem::size_of::<libbpf_sys::bpf_xdp_query_opts>() as _,
        ..Default::default()
    };
    // SAFETY: opts is a valid, sized bpf_xdp_query_opts.
    let rc = unsafe { libbpf_sys::bpf_xdp_query(ifindex, 0, &mut opts) };
    if rc < 0 || opts.prog_id == 0 {
        return None;
    }
    let mode = match u32::from(opts.attach_mode) {
        libbpf_sys::XDP_ATTACHED_SKB => AttachMode::Generic,
        _ => AttachMode::Native,
    };
    Some((mode, opts.prog_id))
}

fn create_link(prog: BorrowedFd<'_>, ifindex: i32, mode: AttachMode) -> Result<OwnedFd> {
    let opts = libbpf_sys::bpf_link_create_opts {
        sz: std::mem::size_of::<libbpf_sys::bpf_link_create_opts>() as _,
        flags: mode.flags(),
        ..Default::default()
    };
    // SAFETY: valid program fd, ifindex and sized opts.
    let rc = unsafe {
        libbpf_sys::bpf_link_create(prog.as_raw_fd(), ifindex, libbpf_sys::BPF_XDP, &opts)
    };
    check(rc, || format!("creating an XDP link ({mode:?})")).map(owned)
}

fn modes(mode: XdpMode) -> &'static [AttachMode] {
    match mode {
        XdpMode::Native => &[AttachMode::Native],
        XdpMode::Generic => &[AttachMode::Generic],
        XdpMode::Auto => &[AttachMode::Native, AttachMode::Generic],
    }
}

/// An attachment this process holds; dropping it closes the fd, which leaves a pinned link
/// (and a netlink attachment) in place.
pub struct Attached {
    pub info: XdpAttachment,
    link: Option<OwnedFd>,
    pin: PathBuf,
}

impl Attached {
    /// Detaches now, whoever else holds the link, and removes its pin.
    pub fn detach(self) -> Result<()> {
        match self.link {
            Some(fd) => {
                // SAFETY: fd is a valid bpf_link descriptor.
                let rc = unsafe { libbpf_sys::bpf_link_detach(fd.as_raw_fd()) };
                check(rc, || {
                    format!("detaching the XDP link of {}", self.info.ifname)
                })?;
                let _ = fs::remove_file(&self.pin);
            }
            None => detach_netlink(self.info.ifindex, self.info.mode, self.info.prog_id)?,
        }
        Ok(())
    }
}

fn detach_netlink(ifindex: i32, mode: AttachMode, prog_id: u32) -> Result<()> {
    // Only our program: someone may have replaced it since.
    if query(ifindex).map(|(_, id)| id) != Some(prog_id) {
        return Ok(());
    }
    // SAFETY: detaching by ifindex with no program (-1) and the mode's flags.
    let rc = unsafe { libbpf_sys::bpf_xdp_detach(ifindex, mode.flags(), std::ptr::null()) };
    check(rc, || format!("detaching XDP from ifindex {ifindex}"))?;
    Ok(())
}

fn linked(
    ifname: &str,
    ifindex: i32,
    mode: AttachMode,
    prog_id: u32,
    adopted: bool,
    link: OwnedFd,
    pin: PathBuf,
) -> Attached {
    Attached {
        info: XdpAttachment {
            ifname: ifname.into(),
            ifindex,
            mode,
            hook: Hook::Link,
            prog_id,
            adopted,
        },
        link: Some(link),
        pin,
    }
}

/// Points the interface's XDP hook at `prog`: re-points an adopted pinned link, or creates and
/// pins a new one (native first in auto mode), or falls back to netlink when the kernel has no
/// XDP links. A program someone else attached is never replaced.
pub fn attach(
    prog: BorrowedFd<'_>,
    prog_id: u32,
    ifname: &str,
    mode: XdpMode,
    pin_root: &Path,
) -> Result<Attached> {
    let ifindex = crate::loader::ifindex(ifname)?;
    let pin = link_pin(pin_root, ifname);
    fs::create_dir_all(links_dir(pin_root))?;

    if pin.exists() {
        let path = c_path(&pin)?;
        // SAFETY: path is NUL-terminated.
        let fd = check(unsafe { libbpf_sys::bpf_obj_get(path.as_ptr()) }, || {
            format!("opening pinned link {}", pin.display())
        })
        .map(owned)?;
        // SAFETY: valid link and program descriptors; no options.
        let rc = unsafe {
            libbpf_sys::bpf_link_update(fd.as_raw_fd(), prog.as_raw_fd(), std::ptr::null())
        };
        match (rc, query(ifindex)) {
            (0, Some((attached_mode, id))) if id == prog_id => {
                return Ok(linked(
                    ifname,
                    ifindex,
                    attached_mode,
                    prog_id,
                    true,
                    fd,
                    pin,
                ));
            }
            // The interface went away and came back: that link is dead.
            _ => fs::remove_file(&pin)
                .with_context(|| format!("removing stale link pin {}", pin.display()))?,
        }
    }

    if let Some((_, id)) = query(ifindex) {
        bail!(
            "{ifname} already has an XDP program (id {id}) that ebpfsentinel did not attach: \
             remove it first (ip link set dev {ifname} xdp off)"
        );
    }

    let mut errors = Vec::new();
    for &m in modes(mode) {
        match create_link(prog, ifindex, m) {
            Ok(fd) => {
                let path = c_path(&pin)?;
                // SAFETY: valid link fd and NUL-terminated path.
                let rc = unsafe { libbpf_sys::bpf_obj_pin(fd.as_raw_fd(), path.as_ptr()) };
                check(rc, || format!("pinning link {}", pin.display()))?;
                let (attached_mode, id) = query(ifindex).unwrap_or((m, prog_id));
                return Ok(linked(ifname, ifindex, attached_mode, id, false, fd, pin));
            }
            Err(e) => errors.push(format!("{m:?}: {e:#}")),
        }
    }

    // Kernels before 5.9 have no XDP links: the netlink attachment persists on its own.
    for &m in modes(mode) {
        // SAFETY: valid program fd; flags refuse to replace an existing program.
        let rc = unsafe {
            libbpf_sys::bpf_xdp_attach(
                ifindex,
                prog.as_raw_fd(),
                m.flags() | libbpf_sys::XDP_FLAGS_UPDATE_IF_NOEXIST,
                std::ptr::null(),
            )
        };
        if rc == 0 {
            return Ok(Attached {
                info: XdpAttachment {
                    ifname: ifname.into(),
                    ifindex,
                    mode: m,
                    hook: Hook::Netlink,
                    prog_id,
                    adopted: false,
                },
                link: None,
                pin,
            });
        }
        errors.push(format!(
            "netlink {m:?}: {}",
            std::io::Error::from_raw_os_error(-rc)
        ));
    }
    bail!("attaching XDP to {ifname} failed: {}", errors.join("; "))
}

/// Interfaces with a pinned link under the pin root, by name.
pub fn pinned_interfaces(pin_root: &Path) -> Vec<String> {
    let Ok(dir) = fs::read_dir(links_dir(pin_root)) else {
        return Vec::new();
    };
    let mut names: Vec<String> = dir
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            e.file_name()
                .to_str()
                .and_then(|n| n.strip_prefix("xdp-"))
                .map(String::from)
        })
        .collect();
    names.sort();
    names
}

/// Detaches and unpins the pinned link of an interface (for `down` and for interfaces that
/// left the config).
pub fn remove_pinned(pin_root: &Path, ifname: &str) -> Result<()> {
    let pin = link_pin(pin_root, ifname);
    let path = c_path(&pin)?;
    // SAFETY: path is NUL-terminated.
    let rc = unsafe { libbpf_sys::bpf_obj_get(path.as_ptr()) };
    if rc >= 0 {
        let fd = owned(rc);
        // SAFETY: valid link descriptor.
        let rc = unsafe { libbpf_sys::bpf_link_detach(fd.as_raw_fd()) };
        // A link whose interface vanished is already detached.
        if rc < 0 && rc != -libc::ENOLINK && rc != -libc::EINVAL {
            check(rc, || format!("detaching {}", pin.display()))?;
        }
    }
    fs::remove_file(&pin).with_context(|| format!("removing {}", pin.display()))
}

/// Removes a netlink attachment a previous daemon recorded, if that program is still there.
pub fn remove_netlink(a: &XdpAttachment) -> Result<()> {
    match crate::loader::ifindex(&a.ifname) {
        Ok(ifindex) => detach_netlink(ifindex, a.mode, a.prog_id),
        Err(_) => Ok(()),
    }
}
