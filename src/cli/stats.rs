use anyhow::Result;

use super::Outcome;

/// Print the dataplane's counters, read from the pinned maps (no daemon needed).
#[derive(Debug, clap::Args)]
pub struct StatsArgs {}

pub fn execute(_args: StatsArgs) -> Result<Outcome> {
    anyhow::bail!("not implemented yet")
}
