//! Reload time at 100k and 1M CIDR entries: what SIGHUP costs from reading the config to the
//! new ruleset being active, and the retirement of the old generation after it.

use crate::maps::Generations;
use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use serde::Serialize;

use super::{print_targets, random_cidrs, write_json, Rng, Target};
use crate::config;
use crate::loader::{Dataplane, LoadOptions};
use crate::ruleset;

#[derive(Debug, Serialize)]
struct Row {
    entries: usize,
    host_routes_pct: u64,
    parse_s: f64,
    compile_s: f64,
    write_s: f64,
    /// parse + compile + write + flip: SIGHUP to the new ruleset being active
    reload_s: f64,
    /// deleting the old generation's entries afterwards (off the critical path)
    retire_s: f64,
}

#[derive(Debug, Serialize)]
struct Report {
    rows: Vec<Row>,
    targets: Vec<Target>,
}

fn secs(d: Duration) -> f64 {
    d.as_secs_f64()
}

/// A config whose one rule drops an alias read from a netset file of `n` random prefixes.
fn write_config(dir: &Path, n: usize, hosts_pct: u64, rng: &mut Rng) -> Result<std::path::PathBuf> {
    let netset = dir.join(format!("set-{n}-{hosts_pct}.netset"));
    let mut f = std::io::BufWriter::new(std::fs::File::create(&netset)?);
    for net in random_cidrs(n, hosts_pct, rng) {
        writeln!(f, "{net}")?;
    }
    f.flush()?;
    let cfg = dir.join(format!("config-{n}-{hosts_pct}.yaml"));
    std::fs::write(
        &cfg,
        format!(
            "firewall:\n  aliases:\n    big: {{ file: {} }}\n  rules:\n    - {{ id: big, action: drop, src: \"@big\" }}\n",
            netset.display()
        ),
    )?;
    Ok(cfg)
}

pub fn run(json: Option<&Path>) -> Result<()> {
    let dir = std::env::temp_dir().join(format!("ebpfsentinel-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let result = measure(&dir, json);
    let _ = std::fs::remove_dir_all(&dir);
    result
}

fn measure(dir: &Path, json: Option<&Path>) -> Result<()> {
    let dp = Dataplane::load(&LoadOptions::default())?;
    let maps = dp.firewall_maps()?;
    let mut rng = Rng(0x7e10ad);
    let mut rows = Vec::new();
    let mut targets = Vec::new();
    println!(
        "{:>9} {:>7} {:>8} {:>9} {:>8} {:>9} {:>9}",
        "entries", "/32 %", "parse s", "compile s", "write s", "reload s", "retire s"
    );
    for (n, hosts_pct) in [(100_000usize, 25u64), (1_000_000, 25), (1_000_000, 100)] {
        // the running ruleset, then the one the reload brings
        let running = write_config(dir, n, hosts_pct, &mut rng)?;
        let incoming = write_config(dir, n, hosts_pct, &mut rng)?;
        let old = ruleset::compile(
            &config::load(&running)
                .map_err(|e| anyhow::anyhow!("{e}"))?
                .firewall,
        )?;
        maps.apply(&old)?;
        maps.clear_generation(maps.active_generation()? ^ 1, None)?;

        let start = Instant::now();
        let cfg = config::load(&incoming).map_err(|e| anyhow::anyhow!("{e}"))?;
        let parsed = start.elapsed();
        let rs = ruleset::compile(&cfg.firewall).context("compiling")?;
        let compiled = start.elapsed();
        let next = maps.active_generation()? ^ 1;
        maps.install(&rs, next)?;
        let written = start.elapsed();
        maps.activate(next)?;
        let active = start.elapsed();
        let retire_start = Instant::now();
        maps.clear_generation(next ^ 1, Some(&old))?;
        let retired = retire_start.elapsed();

        let row = Row {
            entries: n,
            host_routes_pct: hosts_pct,
            parse_s: secs(parsed),
            compile_s: secs(compiled - parsed),
            write_s: secs(written - compiled),
            reload_s: secs(active),
            retire_s: secs(retired),
        };
        println!(
            "{:>9} {:>7} {:>8.2} {:>9.2} {:>8.2} {:>9.2} {:>9.2}",
            n, hosts_pct, row.parse_s, row.compile_s, row.write_s, row.reload_s, row.retire_s
        );
        if n == 1_000_000 {
            targets.push(Target::at_most(
                format!("reload of 1M CIDR entries ({hosts_pct}% /32), seconds"),
                row.reload_s,
                2.0,
            ));
        }
        rows.push(row);
        maps.clear_generation(next, Some(&rs))?;
    }
    print_targets(&targets);
    write_json(json, &Report { rows, targets })
}
