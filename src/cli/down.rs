use std::time::{Duration, Instant};

use anyhow::{bail, Result};

use super::{Outcome, PinRootArg};
use crate::{links, loader, state};

/// Remove the enforcement: stop a running daemon, detach every program it attached and unpin
/// every map and link under the pin root. Traffic then flows as if ebpfsentinel never ran.
///
/// Exits 1 when there was nothing to remove.
#[derive(Debug, clap::Args)]
pub struct DownArgs {
    #[command(flatten)]
    pin_root: PinRootArg,
}

pub fn execute(args: DownArgs) -> Result<Outcome> {
    let root = &args.pin_root.pin_root;
    let daemon = state::read(root);
    if let Some(d) = &daemon {
        let by_name = d.interfaces.iter().any(|a| a.hook == links::Hook::Netlink)
            || d.tc
                .iter()
                .any(|a| a.hook == crate::tc_links::TcHookKind::Clsact);
        if by_name && d.netns_inode != state::netns_inode() {
            bail!(
                "the daemon attached netlink XDP programs or clsact filters in another network \
                 namespace (inode {}), where only their interface names find them: run \
                 `ebpfsentinel down --pin-root {}` in that namespace (nothing was removed)",
                d.netns_inode,
                root.display()
            );
        }
    }
    if let Some(d) = daemon.as_ref().filter(|d| state::pid_alive(d.pid)) {
        // SAFETY: signalling a pid the daemon recorded for itself.
        unsafe { libc::kill(d.pid as libc::pid_t, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(10);
        while state::pid_alive(d.pid) {
            if Instant::now() > deadline {
                bail!("daemon pid {} did not stop within 10 s", d.pid);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        println!("stopped daemon pid {}", d.pid);
    }
    let mut found = daemon.is_some();
    for a in daemon.iter().flat_map(|d| &d.interfaces) {
        if a.hook == links::Hook::Netlink {
            links::remove_netlink(a)?;
        }
    }
    for a in daemon.iter().flat_map(|d| &d.tc) {
        if a.hook == crate::tc_links::TcHookKind::Clsact {
            crate::tc_links::remove_clsact(a)?;
        }
    }
    let pinned = links::pinned_interfaces(root);
    found |= !pinned.is_empty() || root.join("fw_settings").exists();
    let problems = loader::remove_pins(root);
    let _ = std::fs::remove_file(state::state_path(root));
    if !problems.is_empty() {
        bail!("{}", problems.join("\n"));
    }
    if !found {
        println!("nothing pinned under {}", root.display());
        return Ok(Outcome::Negative);
    }
    println!(
        "removed: {} (programs detached, maps and links unpinned under {})",
        if pinned.is_empty() {
            "no interfaces".to_string()
        } else {
            pinned.join(", ")
        },
        root.display()
    );
    Ok(Outcome::Ok)
}
