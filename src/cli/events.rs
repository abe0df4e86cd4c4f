use std::io::Write;

use anyhow::Result;

use super::{Outcome, PinRootArg};
use crate::control;

/// Show the daemon's events as JSON lines: the most recent ones, then with --follow every new
/// one as it happens. Read through the daemon's control socket: a second reader of the ring
/// buffer would steal the daemon's records.
#[derive(Debug, clap::Args)]
pub struct EventsArgs {
    #[command(flatten)]
    pin_root: PinRootArg,
    /// Keep streaming new events until interrupted.
    #[arg(short, long)]
    follow: bool,
}

pub fn execute(args: EventsArgs) -> Result<Outcome> {
    let command = if args.follow {
        "events follow"
    } else {
        "events"
    };
    let mut out = std::io::stdout().lock();
    control::request(&args.pin_root.pin_root, command, |l| {
        writeln!(out, "{l}")?;
        if args.follow {
            out.flush()?;
        }
        Ok(())
    })?;
    Ok(Outcome::Ok)
}
