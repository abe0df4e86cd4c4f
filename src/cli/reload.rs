use anyhow::{bail, Result};

use super::{Outcome, PinRootArg};
use crate::control;

/// Ask the running daemon to re-read its config (what SIGHUP does) and report the outcome.
///
/// Exits 0 when the new ruleset is active, 2 when the daemon refused the config (it names
/// the errors; the running ruleset stays).
#[derive(Debug, clap::Args)]
pub struct ReloadArgs {
    #[command(flatten)]
    pin_root: PinRootArg,
}

pub fn execute(args: ReloadArgs) -> Result<Outcome> {
    let mut answer = String::new();
    control::request(&args.pin_root.pin_root, "reload", |l| {
        answer.push_str(l);
        answer.push('\n');
        Ok(())
    })?;
    match answer.strip_prefix("ok ") {
        Some(rest) => {
            print!("reloaded: {rest}");
            Ok(Outcome::Ok)
        }
        None => bail!(
            "reload refused: {}",
            answer.strip_prefix("error ").unwrap_or(&answer).trim_end()
        ),
    }
}
