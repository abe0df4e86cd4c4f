//! `gen-docs` (hidden): the man pages and shell completions that scripts/build-deb.sh
//! packages, generated from the clap definitions so they cannot drift from the binary.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::CommandFactory;
use clap_complete::Shell;
use clap_mangen::Man;

use super::{Cli, Outcome};

/// Man pages are in section 8: ebpfsentinel is a system administration daemon.
const MAN_SECTION: &str = "8";
const MANUAL: &str = "System Administration";

/// Write the man pages and shell completions (used by scripts/build-deb.sh).
///
/// Writes DIR/man/ebpfsentinel.8 plus one ebpfsentinel-SUB.8 per visible subcommand (nested
/// ones as ebpfsentinel-SUB-SUBSUB.8), and DIR/completions/ebpfsentinel.bash,
/// _ebpfsentinel (zsh) and ebpfsentinel.fish. Prints every file written.
#[derive(Debug, clap::Args)]
pub struct GenDocsArgs {
    /// Output directory (created if missing).
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
}

pub fn execute(args: GenDocsArgs) -> Result<Outcome> {
    for path in generate(&args.out)? {
        println!("{}", path.display());
    }
    Ok(Outcome::Ok)
}

/// Writes everything under `out` and returns the paths written.
pub fn generate(out: &Path) -> Result<Vec<PathBuf>> {
    let mut written = man_pages(&out.join("man"))?;
    written.extend(completions(&out.join("completions"))?);
    Ok(written)
}

fn man_pages(dir: &Path) -> Result<Vec<PathBuf>> {
    fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    // Built once from the top so that every subcommand gets its display name
    // (`ebpfsentinel-run`) and bin name (`ebpfsentinel run`); the `help` subcommand has no
    // page of its own, so it must not be listed as one.
    let mut cmd = Cli::command().disable_help_subcommand(true);
    cmd.build();
    let version = cmd.get_version().unwrap_or_default().to_owned();
    let mut written = Vec::new();
    let mut pending = vec![cmd];
    while let Some(cmd) = pending.pop() {
        pending.extend(cmd.get_subcommands().filter(|s| !s.is_hide_set()).cloned());
        let title = cmd
            .get_display_name()
            .unwrap_or_else(|| cmd.get_name())
            .to_uppercase();
        let man = Man::new(cmd)
            .title(title)
            .section(MAN_SECTION)
            .source(format!("ebpfsentinel {version}"))
            .manual(MANUAL);
        let path = dir.join(man.get_filename());
        let mut roff = Vec::new();
        man.render(&mut roff)
            .with_context(|| format!("rendering {}", path.display()))?;
        fs::write(&path, roff).with_context(|| format!("writing {}", path.display()))?;
        written.push(path);
    }
    written.sort();
    Ok(written)
}

fn completions(dir: &Path) -> Result<Vec<PathBuf>> {
    fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut cmd = Cli::command();
    [Shell::Bash, Shell::Zsh, Shell::Fish]
        .into_iter()
        .map(|shell| {
            clap_complete::generate_to(shell, &mut cmd, "ebpfsentinel", dir)
                .with_context(|| format!("writing the {shell} completion into {}", dir.display()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_one_page_per_visible_command_and_three_completions() {
        let dir =
            std::env::temp_dir().join(format!("ebpfsentinel-gen-docs-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let written = generate(&dir).expect("generating the docs");
        let names: Vec<String> = written
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        for expected in [
            "ebpfsentinel.8",
            "ebpfsentinel-run.8",
            "ebpfsentinel-check.8",
            "ebpfsentinel.bash",
            "_ebpfsentinel",
            "ebpfsentinel.fish",
        ] {
            assert!(
                names.iter().any(|n| n == expected),
                "{expected} missing from {names:?}"
            );
        }
        assert!(
            !names
                .iter()
                .any(|n| n.contains("gen-docs") || n.contains("-help")),
            "hidden commands got pages: {names:?}"
        );
        let top = fs::read_to_string(dir.join("man/ebpfsentinel.8")).unwrap();
        assert!(top.starts_with(".TH EBPFSENTINEL 8 "), "{top}");
        assert!(top.contains("ebpfsentinel\\-run(8)"), "{top}");
        let run = fs::read_to_string(dir.join("man/ebpfsentinel-run.8")).unwrap();
        assert!(run.contains("\\-\\-config"), "{run}");
        fs::remove_dir_all(&dir).unwrap();
    }
}
