use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Result;

use super::{ConfigArg, Outcome};
use crate::daemon::{self, Options, Overrides};

/// Run the dataplane in the foreground: load the programs (taking over maps and links an
/// earlier daemon left pinned), apply the config, attach XDP to every interface, then print
/// events as JSON lines (or write them to `events.path`), serve Prometheus metrics and the
/// control socket. SIGHUP (or `ebpfsentinel reload`) reloads the config atomically; an invalid
/// config is refused and the running ruleset stays.
///
/// SIGTERM and SIGINT stop the daemon but leave the enforcement pinned (`ebpfsentinel down`
/// removes it), so a restart or package upgrade never drops protection. One line containing
/// `ready` is printed on stderr once everything is attached.
#[derive(Debug, clap::Args)]
pub struct RunArgs {
    #[command(flatten)]
    config: ConfigArg,
    /// Interface to attach to (repeatable); replaces the config's `interfaces`.
    #[arg(short, long = "iface", value_name = "IFNAME")]
    ifaces: Vec<String>,
    /// Directory on a bpffs for the pinned maps and links; replaces the config's `pin_root`.
    /// Needed under `ip netns exec`, which hides the host's /sys/fs/bpf.
    #[arg(long, value_name = "DIR")]
    pin_root: Option<PathBuf>,
    /// Address for Prometheus metrics (ADDRESS:PORT); replaces `metrics.listen`.
    #[arg(long, value_name = "ADDR")]
    metrics: Option<SocketAddr>,
    /// Apply the config, attach, and exit, leaving the enforcement pinned (like xdp-loader).
    #[arg(long, conflicts_with = "transient")]
    once: bool,
    /// Detach and unpin everything when stopping (labs and tests).
    #[arg(long)]
    transient: bool,
}

pub fn execute(args: RunArgs) -> Result<Outcome> {
    daemon::run(Options {
        config: args.config.config,
        overrides: Overrides {
            ifaces: args.ifaces,
            pin_root: args.pin_root,
            metrics: args.metrics,
        },
        once: args.once,
        transient: args.transient,
    })?;
    Ok(Outcome::Ok)
}
