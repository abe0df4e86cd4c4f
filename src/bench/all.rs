//! `bench all`: every benchmark in one run, one JSON file and one Markdown report. Each
//! section is a benchmark's own JSON report; the Markdown renders every list of records in
//! it as a table, so a benchmark added later needs no change here beyond its entry.

use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde_json::{json, Map, Value};

use super::memory::{maps_of_this_process, rss_of};
use super::{firewall, general_rules, random_cidrs, Rng};
use crate::loader::{Dataplane, LoadOptions};
use crate::maps::Generations;

pub struct Sizes {
    pub max_cidrs: usize,
    pub max_sources: usize,
    pub feeds: PathBuf,
}

type Section<'a> = (&'static str, Box<dyn Fn(&Path) -> Result<()> + 'a>);

pub fn run(repeat: u32, sizes: &Sizes, out_dir: &Path) -> Result<()> {
    std::fs::create_dir_all(out_dir).with_context(|| format!("{}", out_dir.display()))?;
    let sections: Vec<Section> = vec![
        (
            "firewall",
            Box::new(|p| super::firewall::run(repeat, sizes.max_cidrs, Some(p))),
        ),
        (
            "ratelimit",
            Box::new(|p| super::ratelimit::run(repeat, sizes.max_sources, Some(p))),
        ),
        ("lb", Box::new(|p| super::lb::run(repeat, Some(p)))),
        (
            "conntrack",
            Box::new(|p| super::conntrack::run(repeat, Some(p))),
        ),
        ("ids", Box::new(|p| super::ids::run(repeat, Some(p)))),
        (
            "threatintel",
            Box::new(|p| super::threatintel::run(repeat, &sizes.feeds, Some(p))),
        ),
        (
            "dns",
            Box::new(|p| super::dns::run(repeat, &sizes.feeds, Some(p))),
        ),
        ("scrub", Box::new(|p| super::scrub::run(repeat, Some(p)))),
        (
            "pipeline",
            Box::new(|p| super::pipeline::run(repeat, &sizes.feeds, Some(p))),
        ),
        ("reload", Box::new(|p| super::reload::run(Some(p)))),
        ("events", Box::new(|p| super::events::run(Some(p)))),
    ];
    let started = Instant::now();
    let mut report = Map::new();
    for (name, bench) in &sections {
        println!("\n== bench {name}");
        let path = out_dir.join(format!("{name}.json"));
        let t = Instant::now();
        bench(&path).with_context(|| format!("bench {name}"))?;
        let text = std::fs::read(&path).with_context(|| format!("{}", path.display()))?;
        let mut value: Value = serde_json::from_slice(&text)?;
        if let Value::Object(o) = &mut value {
            o.insert("seconds".into(), json!(t.elapsed().as_secs_f64()));
        }
        report.insert((*name).into(), value);
    }
    println!("\n== memory");
    report.insert("memory".into(), memory(sizes)?);
    let machine = machine();
    let all = json!({
        "machine": machine,
        "repeat": repeat,
        "seconds": started.elapsed().as_secs_f64(),
        "sections": report,
    });
    let json_path = out_dir.join("bench.json");
    std::fs::write(&json_path, serde_json::to_vec_pretty(&all)?)?;
    let md_path = out_dir.join("bench.md");
    std::fs::write(&md_path, markdown(&all))?;
    println!(
        "\nwrote {} and {} ({:.0} s)",
        json_path.display(),
        md_path.display(),
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

fn machine() -> Value {
    let uname = nix_uname();
    json!({
        "kernel": uname,
        "cpus": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
        "version": env!("CARGO_PKG_VERSION"),
    })
}

fn nix_uname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .unwrap_or_default()
}

/// Maps charged at the benchmark sizes (100k CIDRs + 4096 rules, 1M IOCs, the default
/// conntrack and rate-limit tables), and a daemon's resident set holding the shipped feeds
/// and a 100k-prefix alias.
fn memory(sizes: &Sizes) -> Result<Value> {
    let dp = Dataplane::load(&LoadOptions::default())?;
    let mut rng = Rng(0x3e3);
    let cidrs = random_cidrs(100_000, 25, &mut rng);
    dp.firewall_maps()?
        .apply(&crate::ruleset::compile(&firewall(
            general_rules(4096),
            &cidrs,
        ))?)?;
    let iocs = super::threatintel::synthetic(1_000_000, &mut rng);
    dp.threatintel_maps()?
        .apply(&iocs, 0, true)
        .context("1M IOCs")?;
    let maps = maps_of_this_process()?;
    drop(dp);
    let total: u64 = maps.iter().map(|m| m.memlock_bytes).sum();
    println!(
        "maps at benchmark sizes: {:.1} MiB in {} maps",
        total as f64 / (1 << 20) as f64,
        maps.len()
    );
    for m in maps.iter().take(8) {
        println!(
            "  {:<24} {:>10} entries {:>10.1} MiB",
            m.name,
            m.max_entries,
            m.memlock_bytes as f64 / (1 << 20) as f64
        );
    }
    let daemon = match daemon_rss(sizes, &cidrs) {
        Ok(v) => v,
        Err(e) => {
            println!("daemon resident set not measured: {e:#}");
            json!({ "error": format!("{e:#}") })
        }
    };
    Ok(json!({
        "maps_total_bytes": total,
        "maps": maps.iter().filter(|m| m.memlock_bytes >= 1 << 20).collect::<Vec<_>>(),
        "daemon": daemon,
    }))
}

/// A network namespace with a veth pair of its own: nothing outside it is touched.
struct Lab {
    name: String,
}

impl Lab {
    fn new() -> Result<Lab> {
        let name = format!("esbench{}", std::process::id());
        let ip = |args: &[&str]| -> Result<()> {
            let st = Command::new("ip")
                .args(args)
                .status()
                .context("running ip")?;
            if !st.success() {
                bail!("ip {} failed", args.join(" "));
            }
            Ok(())
        };
        ip(&["netns", "add", &name])?;
        let lab = Lab { name };
        ip(&[
            "-n", &lab.name, "link", "add", "bench0", "type", "veth", "peer", "name", "bench1",
        ])?;
        ip(&["-n", &lab.name, "link", "set", "bench0", "up"])?;
        ip(&["-n", &lab.name, "link", "set", "bench1", "up"])?;
        Ok(lab)
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

fn daemon_rss(sizes: &Sizes, cidrs: &[ipnet::Ipv4Net]) -> Result<Value> {
    let lab = Lab::new()?;
    let dir = std::env::temp_dir().join(format!("esbench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let netset = dir.join("100k.netset");
    let text: String = cidrs.iter().map(|c| format!("{c}\n")).collect();
    std::fs::write(&netset, text)?;
    let feeds = sizes.feeds.canonicalize().context("the feeds directory")?;
    let config = dir.join("config.yaml");
    std::fs::write(
        &config,
        format!(
            "interfaces: [bench0]\nxdp_mode: generic\nmetrics: {{ listen: \"off\" }}\n\
             firewall:\n  aliases:\n    big: {{ file: {} }}\n  rules:\n    - {{ id: big, action: drop, src: \"@big\" }}\n\
             conntrack: {{ enabled: true }}\n\
             threatintel:\n  feeds:\n    - {{ id: firehol, path: {}/firehol_level1.netset, format: netset }}\n    - {{ id: drop, path: {}/spamhaus_drop.netset, format: netset }}\n",
            netset.display(),
            feeds.display(),
            feeds.display()
        ),
    )?;
    let pin_root = PathBuf::from(format!("/sys/fs/bpf/esbench-{}", std::process::id()));
    let netns = std::fs::File::open(format!("/run/netns/{}", lab.name))?;
    let mut cmd = Command::new(std::env::current_exe()?);
    cmd.args(["run", "--transient", "-c"])
        .arg(&config)
        .arg("--pin-root")
        .arg(&pin_root)
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    {
        use std::os::fd::AsRawFd;
        let fd = netns.as_raw_fd();
        // SAFETY: setns is async-signal-safe; entering the lab's network namespace in the
        // child only (not `ip netns exec`, which remounts /sys and hides the pins).
        unsafe {
            cmd.pre_exec(move || {
                if libc::setns(fd, libc::CLONE_NEWNET) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
    }
    let mut child = cmd.spawn().context("starting the daemon")?;
    let stderr = child.stderr.take().expect("piped");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut ready = false;
    let mut log = Vec::new();
    while Instant::now() < deadline {
        match rx.recv_timeout(Duration::from_millis(500)) {
            Ok(line) => {
                ready |= line.contains("ready");
                log.push(line);
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        }
        // the feeds load on the intel worker after "ready": wait until they are applied
        if ready
            && log
                .iter()
                .any(|l| l.contains("threat intel") && l.contains("IOC"))
        {
            break;
        }
    }
    std::thread::sleep(Duration::from_secs(1));
    let measured = rss_of(child.id());
    // SAFETY: a plain kill(2) of the child this function started.
    unsafe {
        libc::kill(child.id() as i32, libc::SIGTERM);
    }
    let _ = child.wait();
    let _ = std::fs::remove_dir_all(&dir);
    if !ready {
        bail!(
            "the daemon never became ready: {}",
            log.last().cloned().unwrap_or_default()
        );
    }
    let (rss, hwm) = measured?;
    println!(
        "daemon with a 100k-prefix alias and the FireHOL + Spamhaus feeds: RSS {:.1} MiB (peak {:.1} MiB)",
        rss as f64 / (1 << 20) as f64,
        hwm as f64 / (1 << 20) as f64
    );
    Ok(
        json!({ "rss_bytes": rss, "peak_rss_bytes": hwm, "what": "100k-prefix alias, conntrack, FireHOL level1 + Spamhaus DROP feeds" }),
    )
}

fn cell(v: &Value) -> String {
    match v {
        Value::Number(n) => match (n.as_u64(), n.as_f64()) {
            (Some(u), _) => u.to_string(),
            (None, Some(f)) if f.abs() >= 1000.0 => format!("{f:.0}"),
            (None, Some(f)) if f.abs() >= 10.0 => format!("{f:.1}"),
            (None, Some(f)) => format!("{f:.2}"),
            _ => n.to_string(),
        },
        Value::String(s) => s.replace('|', "\\|"),
        Value::Bool(b) => if *b { "yes" } else { "no" }.into(),
        Value::Null => String::new(),
        other => other.to_string().replace('|', "\\|"),
    }
}

fn table(rows: &[Value]) -> String {
    let mut out = String::new();
    match rows.first() {
        Some(Value::Object(first)) => {
            let cols: Vec<&String> = first.keys().collect();
            out += &format!(
                "| {} |\n",
                cols.iter()
                    .map(|c| c.as_str())
                    .collect::<Vec<_>>()
                    .join(" | ")
            );
            out += &format!("|{}\n", "---|".repeat(cols.len()));
            for r in rows {
                let cells: Vec<String> = cols.iter().map(|c| cell(&r[c.as_str()])).collect();
                out += &format!("| {} |\n", cells.join(" | "));
            }
        }
        Some(Value::Array(first)) => {
            out += &format!(
                "|{}\n|{}\n",
                " |".repeat(first.len()),
                "---|".repeat(first.len())
            );
            for r in rows {
                let cells: Vec<String> = r
                    .as_array()
                    .map_or(vec![], |a| a.iter().map(cell).collect());
                out += &format!("| {} |\n", cells.join(" | "));
            }
        }
        _ => out += &format!("{}\n", rows.iter().map(cell).collect::<Vec<_>>().join(", ")),
    }
    out
}

/// Each section: its scalar figures as a list, then each list of records as a table.
pub fn markdown(all: &Value) -> String {
    let mut out = String::from("# ebpfsentinel benchmark report\n\n");
    let m = &all["machine"];
    out += &format!(
        "Kernel {}, {} CPUs, ebpfsentinel {}, {} runs per BPF_PROG_TEST_RUN figure (best of 5, \
         alternated with the floor measured in the same run), {:.0} s in all.\n",
        cell(&m["kernel"]),
        cell(&m["cpus"]),
        cell(&m["version"]),
        cell(&all["repeat"]),
        all["seconds"].as_f64().unwrap_or(0.0)
    );
    let Some(sections) = all["sections"].as_object() else {
        return out;
    };
    for (name, section) in sections {
        out += &format!("\n## {name}\n\n");
        let Some(fields) = section.as_object() else {
            out += &format!("{}\n", cell(section));
            continue;
        };
        let mut tables = Vec::new();
        for (key, v) in fields {
            match v {
                Value::Array(rows) if !rows.is_empty() => tables.push((key, rows)),
                Value::Array(_) => {}
                Value::Object(o) => {
                    let parts: Vec<String> =
                        o.iter().map(|(k, v)| format!("{k} {}", cell(v))).collect();
                    out += &format!("- {key}: {}\n", parts.join(", "));
                }
                _ => out += &format!("- {key}: {}\n", cell(v)),
            }
        }
        for (key, rows) in tables {
            out += &format!("\n{key}:\n\n{}", table(rows));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markdown_renders_records_as_tables_and_scalars_as_items() {
        let all = json!({
            "machine": { "kernel": "6.18", "cpus": 2, "version": "0.1.0" },
            "repeat": 1000,
            "seconds": 12.5,
            "sections": {
                "demo": {
                    "repeat": 1000,
                    "rows": [
                        { "scenario": "a|b", "ns_per_packet": 123.456, "ratio_to_floor": 3.14359 },
                        { "scenario": "c", "ns_per_packet": 1234.5, "ratio_to_floor": 0.5 }
                    ],
                    "pairs": [["x", 1.5]],
                    "lru": { "inserts": 3 }
                }
            }
        });
        let md = markdown(&all);
        assert!(md.contains("Kernel 6.18, 2 CPUs"), "{md}");
        assert!(md.contains("## demo"), "{md}");
        assert!(md.contains("- repeat: 1000\n"), "{md}");
        assert!(md.contains("- lru: inserts 3\n"), "{md}");
        assert!(
            md.contains("| scenario | ns_per_packet | ratio_to_floor |\n|---|---|---|\n| a\\|b | 123.5 | 3.14 |\n| c | 1234 | 0.50 |\n"),
            "{md}"
        );
        assert!(md.contains("| x | 1.50 |"), "{md}");
    }
}
