//! TC attachments that outlive the daemon, one entry program per direction per interface: a
//! TCX bpf_link pinned under the pin root where the kernel has TCX (6.6+), else a clsact
//! cls_bpf filter at a fixed handle and priority, which the kernel keeps by itself. Either is
//! re-pointed at a new program in one step by the next daemon.

use std::fs;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use libbpf_rs::libbpf_sys;
use libbpf_rs::{TcHookBuilder, TC_EGRESS, TC_INGRESS};
use serde::{Deserialize, Serialize};

use crate::config::TcMode;
use crate::links::links_dir;

/// Our clsact filter's handle and priority: another tool's filters keep theirs.
const CLSACT_HANDLE: u32 = 0xe5;
const CLSACT_PRIORITY: u32 = 0xe5;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    Ingress,
    Egress,
}

impl Direction {
    pub const BOTH: [Direction; 2] = [Direction::Ingress, Direction::Egress];

    fn tcx_attach_type(self) -> libbpf_sys::bpf_attach_type {
        match self {
            Direction::Ingress => libbpf_sys::BPF_TCX_INGRESS,
            Direction::Egress => libbpf_sys::BPF_TCX_EGRESS,
        }
    }
}

impl std::fmt::Display for Direction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Direction::Ingress => "ingress",
            Direction::Egress => "egress",
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TcHookKind {
    Tcx,
    Clsact,
}

impl std::fmt::Display for TcHookKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            TcHookKind::Tcx => "tcx",
            TcHookKind::Clsact => "clsact",
        })
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TcAttachment {
    pub ifname: String,
    pub ifindex: i32,
    pub direction: Direction,
    pub hook: TcHookKind,
    pub prog_id: u32,
    /// an earlier daemon's attachment was taken over
    pub adopted: bool,
}

pub struct TcAttached {
    pub info: TcAttachment,
    link: Option<OwnedFd>,
    pin: PathBuf,
}

fn link_pin(pin_root: &Path, ifname: &str, direction: Direction) -> PathBuf {
    links_dir(pin_root).join(format!("tc-{direction}-{ifname}"))
}

fn owned(fd: i32) -> OwnedFd {
    // SAFETY: fd was just returned by the kernel for us and nothing else owns it.
    unsafe { OwnedFd::from_raw_fd(fd) }
}

fn c_path(p: &Path) -> Result<std::ffi::CString> {
    std::ffi::CString::new(p.as_os_str().as_encoded_bytes()).context("path contains a NUL byte")
}

fn errno(rc: i32) -> std::io::Error {
    std::io::Error::from_raw_os_error(-rc)
}

/// Re-points a pinned TCX link at `prog`; None when the pin is missing or its link is dead.
fn adopt_tcx(prog: BorrowedFd<'_>, pin: &Path) -> Result<Option<OwnedFd>> {
    if !pin.exists() {
        return Ok(None);
    }
    let path = c_path(pin)?;
    // SAFETY: path is NUL-terminated.
    let rc = unsafe { libbpf_sys::bpf_obj_get(path.as_ptr()) };
    if rc >= 0 {
        let fd = owned(rc);
        // SAFETY: valid link and program descriptors; no options.
        let rc = unsafe {
            libbpf_sys::bpf_link_update(fd.as_raw_fd(), prog.as_raw_fd(), std::ptr::null())
        };
        if rc == 0 {
            return Ok(Some(fd));
        }
    }
    // The interface went away and came back: that link is dead.
    fs::remove_file(pin).with_context(|| format!("removing stale link pin {}", pin.display()))?;
    Ok(None)
}

fn create_tcx(prog: BorrowedFd<'_>, ifindex: i32, direction: Direction) -> Result<OwnedFd, i32> {
    let opts = libbpf_sys::bpf_link_create_opts {
        sz: std::mem::size_of::<libbpf_sys::bpf_link_create_opts>() as _,
        ..Default::default()
    };
    // SAFETY: valid program fd, ifindex and sized opts (appends after other TCX programs).
    let rc = unsafe {
        libbpf_sys::bpf_link_create(
            prog.as_raw_fd(),
            ifindex,
            direction.tcx_attach_type(),
            &opts,
        )
    };
    if rc < 0 {
        Err(rc)
    } else {
        Ok(owned(rc))
    }
}

fn clsact_hook(prog: BorrowedFd<'_>, ifindex: i32, direction: Direction) -> libbpf_rs::TcHook {
    let mut builder = TcHookBuilder::new(prog);
    builder
        .ifindex(ifindex)
        .replace(true)
        .handle(CLSACT_HANDLE)
        .priority(CLSACT_PRIORITY);
    builder.hook(match direction {
        Direction::Ingress => TC_INGRESS,
        Direction::Egress => TC_EGRESS,
    })
}

/// Hangs `prog` on one direction of an interface: an adopted pinned TCX link, a new pinned
/// TCX link, or (kernels before 6.6, or `tc_mode: clsact`) a clsact filter that replaces ours
/// from an earlier run. Whatever an earlier run left in the other form is removed, so the
/// pipeline never runs twice on a packet.
pub fn attach(
    prog: BorrowedFd<'_>,
    prog_id: u32,
    ifname: &str,
    direction: Direction,
    mode: TcMode,
    pin_root: &Path,
) -> Result<TcAttached> {
    let ifindex = crate::loader::ifindex(ifname)?;
    let pin = link_pin(pin_root, ifname, direction);
    fs::create_dir_all(links_dir(pin_root))?;
    let attachment = |hook, adopted| TcAttachment {
        ifname: ifname.into(),
        ifindex,
        direction,
        hook,
        prog_id,
        adopted,
    };
    if mode != TcMode::Clsact {
        let tcx = match adopt_tcx(prog, &pin)? {
            Some(fd) => Some((fd, true)),
            None => match create_tcx(prog, ifindex, direction) {
                Ok(fd) => {
                    let path = c_path(&pin)?;
                    // SAFETY: valid link fd and NUL-terminated path.
                    let rc = unsafe { libbpf_sys::bpf_obj_pin(fd.as_raw_fd(), path.as_ptr()) };
                    if rc < 0 {
                        return Err(errno(rc))
                            .with_context(|| format!("pinning {}", pin.display()));
                    }
                    Some((fd, false))
                }
                // EINVAL: the kernel does not know the TCX attach types
                Err(rc) if rc == -libc::EINVAL && mode == TcMode::Auto => None,
                Err(rc) => {
                    return Err(errno(rc)).with_context(|| {
                        format!(
                            "attaching the TC {direction} entry program to {ifname} as a TCX \
                             link (kernels before 6.6 have none: tc_mode auto or clsact)"
                        )
                    })
                }
            },
        };
        if let Some((fd, adopted)) = tcx {
            detach_clsact(ifindex, direction)?;
            return Ok(TcAttached {
                info: attachment(TcHookKind::Tcx, adopted),
                link: Some(fd),
                pin,
            });
        }
    }
    let mut hook = clsact_hook(prog, ifindex, direction);
    // EEXIST: the clsact qdisc is there already (ours or another tool's)
    if let Err(e) = quietly(|| hook.create()) {
        if !format!("{e}").contains("exists") && !format!("{e:?}").contains("EEXIST") {
            return Err(e).with_context(|| format!("creating clsact on {ifname}"));
        }
    }
    let adopted = clsact_prog_id(ifindex, direction).is_some();
    hook.attach()
        .with_context(|| format!("attaching a clsact {direction} filter to {ifname}"))?;
    if pin.exists() {
        remove_pinned_link(&pin)?;
    }
    Ok(TcAttached {
        info: attachment(TcHookKind::Clsact, adopted),
        link: None,
        pin,
    })
}

fn libbpf_to_stderr(_level: libbpf_rs::PrintLevel, msg: String) {
    eprint!("{msg}");
}

/// Runs `f` with libbpf's messages off: asking the kernel for a filter that is not there is
/// how we learn it is not there, and its "not found" lines would read as failures.
fn quietly<T>(f: impl FnOnce() -> T) -> T {
    let previous = libbpf_rs::set_print(None);
    let out = f();
    libbpf_rs::set_print(previous.or(Some((libbpf_rs::PrintLevel::Info, libbpf_to_stderr as _))));
    out
}

/// The program id of our clsact filter on an interface, if one is there.
fn clsact_prog_id(ifindex: i32, direction: Direction) -> Option<u32> {
    quietly(|| query_clsact(ifindex, direction))
}

/// The netlink hook and filter of our clsact filter on one direction of an interface.
fn clsact_filter(
    ifindex: i32,
    direction: Direction,
) -> (libbpf_sys::bpf_tc_hook, libbpf_sys::bpf_tc_opts) {
    let hook = libbpf_sys::bpf_tc_hook {
        sz: std::mem::size_of::<libbpf_sys::bpf_tc_hook>() as _,
        ifindex,
        attach_point: match direction {
            Direction::Ingress => libbpf_sys::BPF_TC_INGRESS,
            Direction::Egress => libbpf_sys::BPF_TC_EGRESS,
        },
        ..Default::default()
    };
    let opts = libbpf_sys::bpf_tc_opts {
        sz: std::mem::size_of::<libbpf_sys::bpf_tc_opts>() as _,
        handle: CLSACT_HANDLE,
        priority: CLSACT_PRIORITY,
        ..Default::default()
    };
    (hook, opts)
}

fn query_clsact(ifindex: i32, direction: Direction) -> Option<u32> {
    let (hook, mut opts) = clsact_filter(ifindex, direction);
    // SAFETY: sized hook and opts; bpf_tc_query only fills opts.
    let rc = unsafe { libbpf_sys::bpf_tc_query(&hook, &mut opts) };
    (rc == 0 && opts.prog_id != 0).then_some(opts.prog_id)
}

/// Removes our clsact filter from one direction of an interface (the qdisc stays: other
/// tools' filters may hang on it).
fn detach_clsact(ifindex: i32, direction: Direction) -> Result<()> {
    if clsact_prog_id(ifindex, direction).is_none() {
        return Ok(());
    }
    let (hook, opts) = clsact_filter(ifindex, direction);
    // SAFETY: sized hook and opts naming our filter.
    let rc = unsafe { libbpf_sys::bpf_tc_detach(&hook, &opts) };
    if rc < 0 && rc != -libc::ENOENT {
        return Err(errno(rc)).with_context(|| format!("removing the clsact {direction} filter"));
    }
    Ok(())
}

impl TcAttached {
    /// Detaches now and removes the pin.
    pub fn detach(self) -> Result<()> {
        match self.link {
            Some(fd) => {
                // SAFETY: fd is a valid bpf_link descriptor.
                let rc = unsafe { libbpf_sys::bpf_link_detach(fd.as_raw_fd()) };
                if rc < 0 && rc != -libc::ENOLINK {
                    return Err(errno(rc)).with_context(|| {
                        format!(
                            "detaching the TC {} link of {}",
                            self.info.direction, self.info.ifname
                        )
                    });
                }
                let _ = fs::remove_file(&self.pin);
                Ok(())
            }
            None => detach_clsact(self.info.ifindex, self.info.direction),
        }
    }
}

/// Detaches and unpins every pinned TCX link under the pin root; problems as text.
pub fn remove_pinned(pin_root: &Path) -> Vec<String> {
    remove_pinned_except(pin_root, &[])
}

/// Detaches and unpins the pinned TCX links of every interface but `keep`.
pub fn remove_pinned_except(pin_root: &Path, keep: &[String]) -> Vec<String> {
    let Ok(dir) = fs::read_dir(links_dir(pin_root)) else {
        return Vec::new();
    };
    let mut problems = Vec::new();
    for entry in dir.filter_map(|e| e.ok()) {
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(ifname) = name
            .strip_prefix("tc-ingress-")
            .or_else(|| name.strip_prefix("tc-egress-"))
        else {
            continue;
        };
        if keep.iter().any(|k| k == ifname) {
            continue;
        }
        if let Err(e) = remove_pinned_link(&entry.path()) {
            problems.push(format!("{e:#}"));
        }
    }
    problems
}

/// Detaches a pinned TCX link (whoever else holds it) and removes the pin.
fn remove_pinned_link(pin: &Path) -> Result<()> {
    let path = c_path(pin)?;
    // SAFETY: path is NUL-terminated.
    let rc = unsafe { libbpf_sys::bpf_obj_get(path.as_ptr()) };
    if rc >= 0 {
        let fd = owned(rc);
        // SAFETY: valid link descriptor.
        let rc = unsafe { libbpf_sys::bpf_link_detach(fd.as_raw_fd()) };
        // a link whose interface vanished is already detached
        if rc < 0 && rc != -libc::ENOLINK && rc != -libc::EINVAL {
            return Err(errno(rc)).with_context(|| format!("detaching {}", pin.display()));
        }
    }
    fs::remove_file(pin).with_context(|| format!("removing {}", pin.display()))
}

/// Removes a clsact filter a previous daemon recorded, if its interface still exists.
pub fn remove_clsact(a: &TcAttachment) -> Result<()> {
    match crate::loader::ifindex(&a.ifname) {
        Ok(ifindex) => detach_clsact(ifindex, a.direction),
        Err(_) => Ok(()),
    }
}
