use anyhow::{anyhow, Result};

use super::{ConfigArg, Outcome};
use crate::config;

/// Validate a config file and compile its ruleset, touching nothing in the kernel.
///
/// Prints every error as FILE:LINE:COLUMN: REASON and exits 2 if there is any.
#[derive(Debug, clap::Args)]
pub struct CheckArgs {
    #[command(flatten)]
    config: ConfigArg,
    /// Also list every IDS rule a rule file has that was refused: FILE:LINE sid N: REASON.
    #[arg(long)]
    ids_refused: bool,
}

pub fn execute(args: CheckArgs) -> Result<Outcome> {
    let cfg = config::load(&args.config.config).map_err(|e| anyhow!("invalid config:\n{e}"))?;
    let (rs, rl) = crate::daemon::compile(&cfg)?;
    let cidr_only = rs.ranks.iter().filter(|r| r.cidr_only).count();
    println!(
        "{}: ok: {} rules ({} CIDR-only with {} prefixes, {} IPv4 and {} IPv6 general), {} aliases, {} allowlist prefixes, {} match sets, {} rate-limit policies",
        cfg.path.display(),
        rs.ranks.len(),
        cidr_only,
        rs.cidr_entries(),
        rs.classifiers[0].rules.len(),
        rs.classifiers[1].rules.len(),
        cfg.firewall.aliases.len(),
        rs.allow[0].len() + rs.allow[1].len(),
        rs.bitmaps.len(),
        rl.policies.len(),
    );
    if let Some((ids, reports)) = crate::daemon::compile_ids(&cfg)? {
        println!(
            "ids: {} signatures on {} (protocol, port) keys, sampling {}",
            ids.rules.len(),
            ids.index.len(),
            ids.sampling
        );
        for r in &reports {
            println!("{}", r.summary());
            if args.ids_refused {
                for (line, sid, why) in &r.refused_rules {
                    let sid = sid.map_or_else(|| "no sid".to_string(), |s| format!("sid {s}"));
                    println!("{}:{line}: {sid}: {why}", r.path.display());
                }
            }
        }
        for (rule, why) in &ids.refused {
            println!("{}: {} refused: {why}", rule.origin, rule.id);
        }
    }
    Ok(Outcome::Ok)
}
