use std::io::Write;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};

use super::{ConfigArg, Outcome};
use crate::replay::{self, Record, Replay, Summary};

/// Replay a capture through the real programs and print each packet's verdict.
///
/// Loads the programs privately (nothing attached, nothing pinned, nothing shared with a
/// running daemon), applies the config as `run` does (firewall, rate limits and DDoS guards,
/// load-balancer services, conntrack, IDS rules, threat-intel feeds and DNS lists fetched
/// once, scrubbing), then runs every packet of the
/// pcap/pcapng files, in order, with BPF_PROG_TEST_RUN: xdp_firewall and the XDP stages it
/// chains, then, for what XDP passes, the TC ingress pipeline. Maps are kept between packets:
/// conntrack entries and rate-limit buckets carry over.
///
/// Link types: Ethernet, raw IPv4/IPv6 (101, 228, 229, 12, 14), Linux cooked (113, 276) and
/// BSD loopback (0, 108) get an Ethernet header; packets of any other link type are reported
/// as `unsupported` and counted. A file that ends mid-record or holds a corrupt one is
/// replayed up to there and reported with the byte offset (exit status 2).
///
/// Time: the programs read the kernel's clock, which a capture's timestamps cannot set.
/// Without --realtime the whole capture replays within moments, so rate limits see it as one
/// burst and no conntrack entry times out; --realtime sleeps the capture's gaps between
/// packets, so token buckets refill and timeouts expire as they did when it was captured
/// (give or take the replay's own overhead). Packets run as received on one interface
/// (ingress); the events' timestamps are the replay's, the packets' are the capture's.
///
/// Output: a table (index, capture time, 5-tuple or why there is none, verdict, deciding
/// stage and counter, rule, events) and a summary by verdict, stage and rule; --json prints
/// one JSON object per packet and a final object with "summary": true.
///
/// Exit status: 0 done; 1 --expect found a difference; 2 an error (bad config, unreadable or
/// corrupt capture, missing privileges).
#[derive(Debug, clap::Args)]
pub struct TestArgs {
    #[command(flatten)]
    config: ConfigArg,
    /// Capture to replay (pcap or pcapng); repeat to replay several in order through the same
    /// programs (state carries from one file to the next).
    #[arg(long, value_name = "FILE", required = true)]
    pcap: Vec<PathBuf>,
    /// One JSON object per packet, then a summary object.
    #[arg(long)]
    json: bool,
    /// Also print each packet's parse in tcpdump -n notation (`IP 192.0.2.1.1234 >
    /// 198.51.100.2.80: tcp`): the fields the programs match on.
    #[arg(long)]
    explain: bool,
    /// Expected verdicts: lines `INDEX VERDICT [STAGE [RULE]]` (`-` skips a field, `#`
    /// comments) or the JSON lines of an earlier --json run. Any difference: exit status 1.
    #[arg(long, value_name = "FILE")]
    expect: Option<PathBuf>,
    /// Sleep the capture's gaps between packets, so time-based logic sees the capture's pace.
    #[arg(long)]
    realtime: bool,
}

fn words(r: &Record) -> String {
    if let Some(t) = &r.tuple {
        let ports = |a: &std::net::IpAddr, p: Option<u16>| match (a, p) {
            (std::net::IpAddr::V6(_), Some(p)) => format!("[{a}]:{p}"),
            (_, Some(p)) => format!("{a}:{p}"),
            (_, None) => a.to_string(),
        };
        let mut s = format!(
            "{} {} > {}",
            crate::events::proto_name(t.proto),
            ports(&t.src, t.sport),
            ports(&t.dst, t.dport)
        );
        if let (Some(ty), Some(code)) = (t.icmp_type, t.icmp_code) {
            s.push_str(&format!(" type {ty}/{code}"));
        }
        s
    } else {
        r.parse_error.clone().unwrap_or_default()
    }
}

fn clock(ts_ns: u64) -> String {
    let secs = ts_ns / 1_000_000_000;
    format!(
        "{:02}:{:02}:{:02}.{:06}",
        secs / 3600 % 24,
        secs / 60 % 60,
        secs % 60,
        ts_ns % 1_000_000_000 / 1000
    )
}

fn row(out: &mut impl Write, r: &Record, explain: bool, multi: bool) -> Result<()> {
    let decided = match (r.stage, r.reason) {
        (Some(s), Some(why)) => format!("{s}/{why}"),
        _ => "-".into(),
    };
    let events: Vec<String> = r
        .events
        .iter()
        .map(|e| format!("{}:{}", e.event_type, e.action))
        .collect();
    let place = if multi {
        format!("{}#{}", r.file, r.frame)
    } else {
        r.frame.to_string()
    };
    let line = format!(
        "{:>6} {} {:<52} {:<11} {:<26} {:<16} {}",
        place,
        clock(r.ts_ns),
        words(r),
        r.verdict,
        decided,
        r.rule.as_deref().unwrap_or("-"),
        if let Some(e) = &r.error {
            e.clone()
        } else {
            events.join(",")
        }
    );
    writeln!(out, "{}", line.trim_end())?;
    if explain {
        writeln!(out, "       {}", r.explain)?;
    }
    Ok(())
}

fn print_summary(out: &mut impl Write, s: &Summary) -> Result<()> {
    writeln!(
        out,
        "\n{} packets from {} file(s) in {} ms",
        s.packets, s.files, s.elapsed_ms
    )?;
    let line = |out: &mut dyn Write, title: &str, m: Vec<(String, u64)>| -> Result<()> {
        if !m.is_empty() {
            let parts: Vec<String> = m.iter().map(|(k, v)| format!("{k} {v}")).collect();
            writeln!(out, "{title}: {}", parts.join(", "))?;
        }
        Ok(())
    };
    let pairs = |m: &std::collections::BTreeMap<String, u64>| {
        m.iter().map(|(k, v)| (k.clone(), *v)).collect::<Vec<_>>()
    };
    line(out, "by verdict", pairs(&s.by_verdict))?;
    line(out, "by stage", pairs(&s.by_stage))?;
    line(out, "by rule", pairs(&s.by_rule))?;
    line(
        out,
        "unsupported link types (packets)",
        s.unsupported_link_types
            .iter()
            .map(|(k, v)| (k.to_string(), *v))
            .collect(),
    )?;
    for (file, why) in &s.file_errors {
        writeln!(out, "file error: {file}: {why}")?;
    }
    Ok(())
}

pub fn execute(args: TestArgs) -> Result<Outcome> {
    let cfg =
        crate::config::load(&args.config.config).map_err(|e| anyhow!("invalid config:\n{e}"))?;
    let expected = match &args.expect {
        Some(p) => {
            let text =
                std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?;
            Some(replay::parse_expect(&text, &p.display().to_string())?)
        }
        None => None,
    };
    let replay = Replay::new(&cfg)?;
    let started = Instant::now();
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let mut summary = Summary {
        summary: true,
        ..Default::default()
    };
    let multi = args.pcap.len() > 1;
    let mut got = Vec::new();
    let mut index = 0;
    let mut previous_ts: Option<u64> = None;
    if !args.json {
        writeln!(
            out,
            "{:>6} {:<15} {:<52} {:<11} {:<26} {:<16} events",
            "frame", "time", "packet", "verdict", "stage/reason", "rule"
        )?;
    }
    for path in &args.pcap {
        let name = path.display().to_string();
        summary.files += 1;
        let capture = match crate::pcap::read_file(path) {
            Ok(c) => c,
            Err(e) => {
                summary.file_errors.insert(name, e.to_string());
                continue;
            }
        };
        for p in &capture.packets {
            if args.realtime {
                if let Some(prev) = previous_ts {
                    let gap = p.timestamp_ns.saturating_sub(prev);
                    out.flush()?;
                    std::thread::sleep(Duration::from_nanos(gap));
                }
                previous_ts = Some(p.timestamp_ns);
            }
            let mut r = replay::record(index, &name, p);
            index += 1;
            match replay::frame_of(p) {
                Ok(frame) => {
                    replay::describe(&frame, &mut r);
                    replay.run(&frame, &mut r)?;
                }
                Err(why) => {
                    if why.starts_with("unsupported link type") {
                        r.verdict = "unsupported".into();
                        *summary
                            .unsupported_link_types
                            .entry(p.link_type)
                            .or_default() += 1;
                    } else {
                        r.verdict = "error".into();
                    }
                    r.explain = why.clone();
                    r.parse_error = Some(why);
                }
            }
            summary.count(&r);
            if args.json {
                serde_json::to_writer(&mut out, &r)?;
                writeln!(out)?;
            } else {
                row(&mut out, &r, args.explain, multi)?;
            }
            got.push((r.index, r.verdict, r.stage.map(str::to_string), r.rule));
        }
        if let Some(why) = capture.truncated {
            summary.file_errors.insert(name, why);
        }
    }
    summary.elapsed_ms = started.elapsed().as_millis() as u64;
    if args.json {
        serde_json::to_writer(&mut out, &summary)?;
        writeln!(out)?;
    } else {
        print_summary(&mut out, &summary)?;
    }
    out.flush()?;
    let diffs = expected
        .as_deref()
        .map(|e| replay::compare(e, &got))
        .unwrap_or_default();
    for d in &diffs {
        eprintln!("ebpfsentinel: expect: {d}");
    }
    if !summary.file_errors.is_empty() {
        let list: Vec<String> = summary
            .file_errors
            .iter()
            .map(|(f, why)| format!("{f}: {why}"))
            .collect();
        bail!(
            "{} capture(s) could not be replayed whole (the packets before the problem were):\n{}",
            list.len(),
            list.join("\n")
        );
    }
    if !diffs.is_empty() {
        return Ok(Outcome::Negative);
    }
    Ok(Outcome::Ok)
}
