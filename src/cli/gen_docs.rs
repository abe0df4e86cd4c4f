use anyhow::Result;

use super::Outcome;

/// Write the man pages and shell completions (used by scripts/build-deb.sh).
#[derive(Debug, clap::Args)]
pub struct GenDocsArgs {}

pub fn execute(_args: GenDocsArgs) -> Result<Outcome> {
    anyhow::bail!("not implemented yet")
}
