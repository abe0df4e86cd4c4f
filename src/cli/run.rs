use std::path::PathBuf;
use std::time::Duration;

use anyhow::{anyhow, Context, Result};
use libbpf_rs::RingBufferBuilder;

use super::{ConfigArg, Outcome};
use crate::config;
use crate::events::{self, Clock};
use crate::loader::{Dataplane, LoadOptions};
use crate::ruleset;
use crate::signals;
use crate::state::{self, AttachedInterface, DaemonState, StateLock};

/// Run the dataplane in the foreground: load the programs, pin the shared maps, apply the
/// config, attach XDP to every interface, and print events as JSON lines until SIGINT or
/// SIGTERM, which detach and unpin everything.
///
/// One line containing `ready` is printed on stderr once every program is attached and the
/// ruleset is active.
#[derive(Debug, clap::Args)]
pub struct RunArgs {
    #[command(flatten)]
    config: ConfigArg,
    /// Interface to attach to (repeatable); replaces the config's `interfaces`.
    #[arg(short, long = "iface", value_name = "IFNAME")]
    ifaces: Vec<String>,
    /// Directory on a bpffs for the pinned maps; replaces the config's `pin_root`. Needed
    /// under `ip netns exec`, which hides the host's /sys/fs/bpf.
    #[arg(long, value_name = "DIR")]
    pin_root: Option<PathBuf>,
}

pub fn execute(args: RunArgs) -> Result<Outcome> {
    let mut cfg = config::load(&args.config.config).map_err(|e| anyhow!("invalid config:\n{e}"))?;
    if !args.ifaces.is_empty() {
        cfg.interfaces = args.ifaces;
    }
    if let Some(root) = args.pin_root {
        cfg.pin_root = root;
    }
    if cfg.interfaces.is_empty() {
        return Err(anyhow!(
            "no interface to attach to: set `interfaces` in {} or pass --iface",
            cfg.path.display()
        ));
    }
    let rs = ruleset::compile(&cfg.firewall)
        .map_err(|e| anyhow!("{}: ruleset does not fit: {e:#}", cfg.path.display()))?;

    crate::loader::ensure_bpffs(&cfg.pin_root)?;
    let lock = StateLock::acquire(&cfg.pin_root)?;
    let mut dp = Dataplane::load(&LoadOptions {
        pin_root: Some(cfg.pin_root.clone()),
        bench_addrs: None,
    })?;
    let maps = dp.firewall_maps()?;
    let generation = maps.apply(&rs).context("applying the ruleset")?;

    let result = serve(&cfg, &rs, &mut dp, &lock, generation);
    let mut problems = dp.detach_all();
    problems.extend(dp.unpin());
    for p in &problems {
        eprintln!("ebpfsentinel: {p}");
    }
    result.map(|_| Outcome::Ok)
}

fn serve(
    cfg: &config::Config,
    rs: &ruleset::CompiledRuleset,
    dp: &mut Dataplane,
    lock: &StateLock,
    generation: u32,
) -> Result<()> {
    signals::install_stop_handlers();
    for ifname in &cfg.interfaces {
        dp.attach_xdp(ifname, cfg.xdp_mode)?;
    }
    let interfaces: Vec<AttachedInterface> = dp
        .attachments()
        .iter()
        .map(|a| AttachedInterface {
            ifname: a.ifname.clone(),
            ifindex: a.ifindex,
            mode: format!("{:?}", a.mode).to_lowercase(),
            prog_id: a.prog_id,
        })
        .collect();
    lock.write(&DaemonState {
        pid: std::process::id(),
        config: cfg.path.clone(),
        pin_root: cfg.pin_root.clone(),
        netns_inode: state::netns_inode(),
        interfaces: interfaces.clone(),
        generation,
        rules: rs.ranks.iter().map(|r| r.id.clone()).collect(),
    })?;

    let clock = Clock::now();
    let names: Vec<String> = rs.ranks.iter().map(|r| r.id.clone()).collect();
    let mut rb = RingBufferBuilder::new();
    rb.add(&dp.firewall.maps.events, move |data: &[u8]| {
        if let Some(ev) = events::decode(data, &clock, |_, rank| names.get(rank as usize).cloned())
        {
            if let Ok(line) = serde_json::to_string(&ev) {
                println!("{line}");
            }
        }
        0
    })?;
    let rb = rb.build()?;

    let summary: Vec<String> = interfaces
        .iter()
        .map(|i| format!("{} ({}, prog {})", i.ifname, i.mode, i.prog_id))
        .collect();
    eprintln!(
        "ebpfsentinel: ready: {} rules active on {}; pins under {}",
        rs.ranks.len(),
        summary.join(", "),
        cfg.pin_root.display()
    );

    while !signals::stop_requested() {
        // EINTR from a stop signal surfaces as an error; the loop condition decides.
        if let Err(e) = rb.poll(Duration::from_millis(200)) {
            if !signals::stop_requested() {
                return Err(e).context("reading the event ring");
            }
        }
    }
    let _ = rb.consume();
    eprintln!("ebpfsentinel: stopping: detaching and unpinning");
    Ok(())
}
