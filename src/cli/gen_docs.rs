//! `gen-docs` (hidden): the man pages and shell completions that scripts/build-deb.sh
//! packages, generated from the clap definitions so they cannot drift from the binary.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::{Command, CommandFactory};
use clap_complete::Shell;
use clap_mangen::Man;

use super::{Cli, Outcome};

const BIN_NAME: &str = "ebpfsentinel";
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
    /// Date printed in the man pages' footer, YYYY-MM-DD. Default: SOURCE_DATE_EPOCH's day if
    /// set (reproducible builds), else today (UTC).
    #[arg(long, value_name = "YYYY-MM-DD", value_parser = parse_date)]
    date: Option<String>,
}

pub fn execute(args: GenDocsArgs) -> Result<Outcome> {
    let date = match args.date {
        Some(date) => date,
        None => default_date()?,
    };
    for path in generate(&args.out, &date)? {
        println!("{}", path.display());
    }
    Ok(Outcome::Ok)
}

/// Writes everything under `out` and returns the paths written.
pub fn generate(out: &Path, date: &str) -> Result<Vec<PathBuf>> {
    let mut written = man_pages(&out.join("man"), date)?;
    written.extend(completions(&out.join("completions"))?);
    Ok(written)
}

fn man_pages(dir: &Path, date: &str) -> Result<Vec<PathBuf>> {
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
            .date(date)
            .source(format!("ebpfsentinel {version}"))
            .manual(MANUAL);
        let path = dir.join(man.get_filename());
        let mut roff = Vec::new();
        man.render(&mut roff)
            .with_context(|| format!("rendering {}", path.display()))?;
        let roff = title_first(&String::from_utf8(roff).context("man page is not UTF-8")?);
        fs::write(&path, roff).with_context(|| format!("writing {}", path.display()))?;
        written.push(path);
    }
    written.sort();
    Ok(written)
}

/// roff emits its string definitions (`Aq`, the apostrophe) before `.TH`; moving them
/// just after it makes `.TH` the first line, as in hand-written pages, without changing the
/// rendering (the strings are only used further down).
fn title_first(page: &str) -> String {
    let mut preamble = String::new();
    let mut rest = page;
    while !rest.is_empty() && !rest.starts_with(".TH ") {
        let end = rest.find('\n').map_or(rest.len(), |i| i + 1);
        preamble.push_str(&rest[..end]);
        rest = &rest[end..];
    }
    if rest.is_empty() {
        return page.to_owned();
    }
    let end = rest.find('\n').map_or(rest.len(), |i| i + 1);
    format!("{}{preamble}{}", &rest[..end], &rest[end..])
}

fn parse_date(text: &str) -> Result<String, String> {
    let parts: Vec<&str> = text.split('-').collect();
    let valid = parts.len() == 3
        && [4, 2, 2]
            .iter()
            .zip(&parts)
            .all(|(len, part)| part.len() == *len && part.bytes().all(|b| b.is_ascii_digit()));
    if valid {
        Ok(text.to_owned())
    } else {
        Err(format!("`{text}` is not a date in the form YYYY-MM-DD"))
    }
}

fn default_date() -> Result<String> {
    let seconds = match std::env::var("SOURCE_DATE_EPOCH") {
        Ok(text) => text
            .trim()
            .parse::<u64>()
            .with_context(|| format!("SOURCE_DATE_EPOCH=`{text}` is not a number of seconds"))?,
        Err(_) => std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .context("the clock is before 1970")?
            .as_secs(),
    };
    Ok(civil_date(seconds / 86_400))
}

/// Days since 1970-01-01 to YYYY-MM-DD in the proleptic Gregorian calendar (the usual
/// era-of-400-years conversion).
fn civil_date(days: u64) -> String {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}")
}

fn completions(dir: &Path) -> Result<Vec<PathBuf>> {
    fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut cmd = without_hidden_subcommands(&Cli::command());
    [Shell::Bash, Shell::Zsh, Shell::Fish]
        .into_iter()
        .map(|shell| {
            clap_complete::generate_to(shell, &mut cmd, BIN_NAME, dir)
                .with_context(|| format!("writing the {shell} completion into {}", dir.display()))
        })
        .collect()
}

/// clap_complete offers hidden subcommands too, and clap cannot remove a subcommand, so
/// completions are generated from a copy of the top level (name, version, about, its own
/// arguments and settings that shape completion) holding only the visible subcommands.
fn without_hidden_subcommands(full: &Command) -> Command {
    let mut top = Command::new(BIN_NAME)
        .version(env!("CARGO_PKG_VERSION"))
        .subcommand_required(full.is_subcommand_required_set())
        .arg_required_else_help(full.is_arg_required_else_help_set())
        .args(full.get_arguments().cloned())
        .subcommands(full.get_subcommands().filter(|s| !s.is_hide_set()).cloned());
    if let Some(about) = full.get_about() {
        top = top.about(about.clone());
    }
    if let Some(about) = full.get_long_about() {
        top = top.long_about(about.clone());
    }
    top
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_one_page_per_visible_command_and_three_completions() {
        let dir =
            std::env::temp_dir().join(format!("ebpfsentinel-gen-docs-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let written = generate(&dir, "2026-11-26").expect("generating the docs");
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
        let first = top.lines().next().unwrap();
        assert_eq!(
            first,
            format!(
                r#".TH EBPFSENTINEL 8 2026-11-26 "ebpfsentinel {}" "System Administration""#,
                env!("CARGO_PKG_VERSION")
            ),
        );
        assert!(top.contains(".ds Aq"), "{top}");
        assert!(top.contains("ebpfsentinel\\-run(8)"), "{top}");
        for completion in ["ebpfsentinel.bash", "_ebpfsentinel", "ebpfsentinel.fish"] {
            let text = fs::read_to_string(dir.join("completions").join(completion)).unwrap();
            assert!(text.contains("check"), "{completion}: {text}");
            assert!(!text.contains("gen-docs"), "{completion} offers gen-docs");
        }
        let run = fs::read_to_string(dir.join("man/ebpfsentinel-run.8")).unwrap();
        assert!(run.contains("\\-\\-config"), "{run}");
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn civil_dates() {
        assert_eq!(civil_date(0), "1970-01-01");
        assert_eq!(civil_date(59), "1970-03-01");
        assert_eq!(civil_date(11_016), "2000-02-29");
        assert_eq!(civil_date(20_783), "2026-11-26");
        assert_eq!(civil_date(47_541), "2100-03-01");
    }

    #[test]
    fn dates_are_checked() {
        assert!(parse_date("2026-11-26").is_ok());
        for bad in ["2026-1-26", "26-11-2026", "2026/11/26", "", "2026-11-26x"] {
            assert!(parse_date(bad).is_err(), "{bad}");
        }
    }
}
