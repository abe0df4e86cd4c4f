//! The command line: one file per subcommand.

mod bench;
mod block;
mod check;
mod ct;
mod dns;
mod down;
mod events;
mod gen_docs;
mod lb;
mod ratelimit;
mod reload;
mod run;
mod stats;
mod status;
mod test;
mod ti;

use std::path::PathBuf;

use anyhow::Result;
use clap::{Parser, Subcommand};

pub const DEFAULT_CONFIG: &str = "/etc/ebpfsentinel/config.yaml";

/// In-kernel network-security dataplane: XDP firewall with LPM-trie CIDR rules, IP-set
/// aliases and a rule classifier, managed from one binary.
///
/// Exit codes: 0 ok, 1 a negative answer (e.g. `status` finds nothing running), 2 an error.
#[derive(Debug, Parser)]
#[command(name = "ebpfsentinel", version)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    Run(run::RunArgs),
    Check(check::CheckArgs),
    Reload(reload::ReloadArgs),
    Events(events::EventsArgs),
    Down(down::DownArgs),
    Ratelimit(ratelimit::RateLimitArgs),
    Lb(lb::LbArgs),
    Ct(ct::CtArgs),
    Block(block::BlockArgs),
    Unblock(block::UnblockArgs),
    Blocked(block::BlockedArgs),
    Ti(ti::TiArgs),
    Dns(dns::DnsArgs),
    Status(status::StatusArgs),
    Stats(stats::StatsArgs),
    Bench(bench::BenchArgs),
    Test(test::TestArgs),
    #[command(hide = true)]
    GenDocs(gen_docs::GenDocsArgs),
}

/// What a command found, as opposed to failing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Ok,
    Negative,
}

impl Cli {
    pub fn execute(self) -> Result<Outcome> {
        if !matches!(self.command, Command::Run(_)) {
            // `ebpfsentinel status | head`: a reader that goes away ends a report quietly, as it
            // does any other CLI tool; the daemon keeps SIGPIPE ignored and handles EPIPE on
            // its event output instead of dying with enforcement half-applied.
            // SAFETY: signal(2) with SIG_DFL before any thread is started.
            unsafe {
                libc::signal(libc::SIGPIPE, libc::SIG_DFL);
            }
        }
        match self.command {
            Command::Run(a) => run::execute(a),
            Command::Check(a) => check::execute(a),
            Command::Reload(a) => reload::execute(a),
            Command::Events(a) => events::execute(a),
            Command::Down(a) => down::execute(a),
            Command::Ratelimit(a) => ratelimit::execute(a),
            Command::Lb(a) => lb::execute(a),
            Command::Ct(a) => ct::execute(a),
            Command::Block(a) => block::block(a),
            Command::Unblock(a) => block::unblock(a),
            Command::Blocked(a) => block::blocked(a),
            Command::Ti(a) => ti::execute(a),
            Command::Dns(a) => dns::execute(a),
            Command::Status(a) => status::execute(a),
            Command::Stats(a) => stats::execute(a),
            Command::Bench(a) => bench::execute(a),
            Command::Test(a) => test::execute(a),
            Command::GenDocs(a) => gen_docs::execute(a),
        }
    }
}

/// The pin root of the daemon a command talks to or reads.
#[derive(Debug, clap::Args)]
pub struct PinRootArg {
    /// The pin root the daemon was started with.
    #[arg(long, default_value = crate::config::DEFAULT_PIN_ROOT, value_name = "DIR", global = true)]
    pub pin_root: PathBuf,
}

/// The config file every subcommand that needs one reads.
#[derive(Debug, clap::Args)]
pub struct ConfigArg {
    /// Config file (YAML).
    #[arg(short, long, default_value = DEFAULT_CONFIG, value_name = "FILE")]
    pub config: PathBuf,
}

/// Fails with `missing` (its `{}` replaced by the pin root) unless `name` is pinned there:
/// the usual cause is no daemon, which says more than libbpf's "No such file".
pub fn require_pin(pin_root: &std::path::Path, name: &str, missing: &str) -> anyhow::Result<()> {
    use anyhow::Context;
    let probe = pin_root.join(name);
    match std::fs::symlink_metadata(&probe) {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(anyhow::anyhow!(
            "{}",
            missing.replace("{}", &pin_root.display().to_string())
        )),
        Err(e) => Err(e).with_context(|| {
            format!(
                "looking for {} (reading bpffs pins needs root)",
                probe.display()
            )
        }),
    }
}
