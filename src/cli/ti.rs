//! `ti`: the IOC sets tc_threatintel matches, read and written straight in the pinned maps
//! (no daemon needed), and the feeds status a running daemon keeps.

use std::io::{IsTerminal, Write};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Result};
use ipnet::IpNet;
use serde::Serialize;

use super::block::{net_text, parse_net, short_duration};
use super::{Outcome, PinRootArg};
use crate::config::{FeedConfig, FeedFormat, FeedSource, Location};
use crate::feeds::{FetchLimits, FetchOutcome, Fetcher, Ioc, IocSet, TiAction, Validators};
use crate::maps::threatintel::{
    self, feed_name, read_feeds_status, FeedsFile, ThreatIntelMaps, MANUAL_FEED,
};

/// Show and change the IOC sets tc_threatintel matches packets against, straight in the
/// pinned maps: no daemon needed. Changes apply at once. A running daemon rebuilds the sets
/// from its feeds on every refresh and reload, keeping what was added with feed `manual`
/// (the default of `add` and `load`); IOCs added under a feed's name last until that feed's
/// next refresh.
#[derive(Debug, clap::Args)]
pub struct TiArgs {
    #[command(subcommand)]
    what: What,
}

#[derive(Debug, clap::Subcommand)]
enum What {
    /// Add an IOC (or replace the one for the same address or network).
    Add {
        #[command(flatten)]
        pin_root: PinRootArg,
        /// An address (203.0.113.7) or a network (203.0.113.0/24).
        #[arg(value_name = "IP/CIDR", value_parser = parse_net)]
        net: IpNet,
        /// What a matching packet gets: alert (reported, passed), drop, or quarantine
        /// (tagged with threatintel.quarantine_vlan).
        #[arg(long, default_value = "alert", value_parser = threatintel::parse_action)]
        action: TiAction,
        /// The feed it is listed under: manual, or the id of one of the daemon's feeds.
        #[arg(long, default_value = "manual", value_name = "NAME")]
        feed: String,
        /// 0..100.
        #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u8).range(0..=100))]
        confidence: u8,
    },
    /// Remove the IOC of exactly this address or network. Exits 1 when there was none.
    Del {
        #[command(flatten)]
        pin_root: PinRootArg,
        #[arg(value_name = "IP/CIDR", value_parser = parse_net)]
        net: IpNet,
    },
    /// Which IOCs (and so which feeds) list an address: its own, and every network holding
    /// it, longest first. Exits 1 when none does.
    Lookup {
        #[command(flatten)]
        pin_root: PinRootArg,
        #[arg(value_name = "IP")]
        ip: IpAddr,
        /// Print {ip, listed, matches: [{ioc, feed, feed_id, action, confidence, category}]}.
        #[arg(long)]
        json: bool,
    },
    /// Every IOC: network, feed, action, confidence.
    List {
        #[command(flatten)]
        pin_root: PinRootArg,
        /// Print one JSON array of {ioc, feed, feed_id, action, confidence, category}.
        #[arg(long)]
        json: bool,
    },
    /// Load a feed file or URL once: its IOCs are added to (or replace, network by network)
    /// those in the maps, with a fresh Bloom filter and one generation flip.
    Load {
        #[command(flatten)]
        pin_root: PinRootArg,
        /// A file, or an http:// or https:// URL.
        #[arg(value_name = "FILE|URL")]
        source: String,
        /// netset, spamhaus, csv, json or ndjson. Default: from the name (.csv, .json,
        /// .ndjson/.jsonl), else netset.
        #[arg(long, value_parser = parse_format)]
        format: Option<FeedFormat>,
        /// The CSV column or JSON key holding the address or network.
        #[arg(long, value_name = "NAME")]
        field: Option<String>,
        /// The CSV column or JSON key holding a confidence (0..100).
        #[arg(long, value_name = "NAME")]
        confidence_field: Option<String>,
        /// Entries with a lower confidence are left out.
        #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u8).range(0..=100))]
        min_confidence: u8,
        #[arg(long, default_value = "alert", value_parser = threatintel::parse_action)]
        action: TiAction,
        /// The feed they are listed under: manual, or the id of one of the daemon's feeds.
        #[arg(long, default_value = "manual", value_name = "NAME")]
        feed: String,
    },
    /// The daemon's feeds: source, entries, last refresh, last error. Exits 1 when no daemon
    /// has written a feeds status for this pin root.
    Feeds {
        #[command(flatten)]
        pin_root: PinRootArg,
        /// Print the status file: {pid, updated, iocs, feeds: [{id, feed_id, source, entries,
        /// last_refresh, last_attempt, last_error, errors}]}, times in Unix seconds.
        #[arg(long)]
        json: bool,
    },
}

pub fn parse_format(s: &str) -> std::result::Result<FeedFormat, String> {
    match s.to_ascii_lowercase().as_str() {
        "netset" => Ok(FeedFormat::Netset),
        "spamhaus" => Ok(FeedFormat::Spamhaus),
        "csv" => Ok(FeedFormat::Csv),
        "json" => Ok(FeedFormat::Json),
        "ndjson" => Ok(FeedFormat::Ndjson),
        _ => Err(format!(
            "`{s}` is not a feed format: netset, spamhaus, csv, json or ndjson"
        )),
    }
}

/// The format a source's name suggests.
fn format_of(source: &str) -> FeedFormat {
    let name = source
        .rsplit('/')
        .next()
        .unwrap_or(source)
        .to_ascii_lowercase();
    let name = name.split(['?', '#']).next().unwrap_or_default();
    if name.ends_with(".csv") {
        FeedFormat::Csv
    } else if name.ends_with(".ndjson") || name.ends_with(".jsonl") {
        FeedFormat::Ndjson
    } else if name.ends_with(".json") {
        FeedFormat::Json
    } else {
        FeedFormat::Netset
    }
}

fn source_of(s: &str) -> FeedSource {
    if s.starts_with("http://") || s.starts_with("https://") {
        FeedSource::Url(s.to_string())
    } else {
        FeedSource::Path(PathBuf::from(s))
    }
}

/// The feed id of `--feed NAME`: `manual`, a feed the daemon reported, or a number.
fn feed_id(name: &str, feeds: Option<&FeedsFile>) -> Result<u16> {
    if name == "manual" {
        return Ok(MANUAL_FEED);
    }
    if let Some(f) = feeds.and_then(|f| f.feeds.iter().find(|s| s.id == name)) {
        return Ok(f.feed_id);
    }
    if let Ok(n) = name.parse::<u16>() {
        return Ok(n);
    }
    let known: Vec<&str> = feeds
        .map(|f| f.feeds.iter().map(|s| s.id.as_str()).collect())
        .unwrap_or_default();
    if known.is_empty() {
        bail!("no feed `{name}`: no daemon reported its feeds for this pin root; use `manual`")
    }
    bail!(
        "no feed `{name}`: the daemon's feeds are {}; or use `manual`",
        known.join(", ")
    )
}

fn open(pin_root: &Path) -> Result<ThreatIntelMaps> {
    super::require_pin(
        pin_root,
        "ti_blooms",
        "no threat-intel maps pinned under {}: is `ebpfsentinel run` running there?",
    )?;
    ThreatIntelMaps::from_pins(pin_root)
}

/// One IOC of `ti list --json` and `ti lookup --json`.
#[derive(Debug, Serialize)]
struct IocJson {
    ioc: String,
    feed: String,
    feed_id: u16,
    action: &'static str,
    confidence: u8,
    category: u8,
}

fn ioc_json(i: &Ioc, feeds: Option<&FeedsFile>) -> IocJson {
    IocJson {
        ioc: i.net.to_string(),
        feed: feed_name(feeds, i.feed_id),
        feed_id: i.feed_id,
        action: i.action.name(),
        confidence: i.confidence,
        category: i.category,
    }
}

#[derive(Debug, Serialize)]
struct LookupJson {
    ip: IpAddr,
    listed: bool,
    matches: Vec<IocJson>,
}

/// Aligned columns: IOC, FEED, ACTION, CONFIDENCE.
fn table(iocs: &[Ioc], feeds: Option<&FeedsFile>) -> Vec<String> {
    let rows: Vec<[String; 4]> = iocs
        .iter()
        .map(|i| {
            [
                i.net.to_string(),
                feed_name(feeds, i.feed_id),
                i.action.name().to_string(),
                i.confidence.to_string(),
            ]
        })
        .collect();
    let header = [
        "IOC".to_string(),
        "FEED".into(),
        "ACTION".into(),
        "CONFIDENCE".into(),
    ];
    let width = |c: usize| {
        std::iter::once(&header)
            .chain(&rows)
            .map(|r| r[c].len())
            .max()
            .unwrap_or(0)
    };
    let (w0, w1, w2) = (width(0), width(1), width(2));
    std::iter::once(&header)
        .chain(&rows)
        .map(|r| format!("{:<w0$}  {:<w1$}  {:<w2$}  {}", r[0], r[1], r[2], r[3]))
        .collect()
}

/// A progress line on stderr while it is a terminal, at most ten updates a second; nothing
/// otherwise.
struct ProgressLine {
    tty: bool,
    shown: bool,
    last: Option<Instant>,
}

impl ProgressLine {
    fn new() -> Self {
        ProgressLine {
            tty: std::io::stderr().is_terminal(),
            shown: false,
            last: None,
        }
    }

    fn text(phase: &str, done: usize, total: usize) -> String {
        let what = match phase {
            "hash" => "writing addresses",
            "trie" => "writing networks",
            "bloom" => "filling the Bloom filter",
            "delete" => "removing IOCs",
            other => other,
        };
        let pct = (done * 100).checked_div(total).unwrap_or(100);
        let width = 24;
        let filled = pct * width / 100;
        format!(
            "{what:<26} [{}{}] {done}/{total} ({pct}%)",
            "#".repeat(filled),
            "-".repeat(width - filled)
        )
    }

    fn update(&mut self, phase: &str, done: usize, total: usize) {
        if !self.tty {
            return;
        }
        let now = Instant::now();
        if done < total
            && self
                .last
                .is_some_and(|l| now - l < Duration::from_millis(100))
        {
            return;
        }
        self.last = Some(now);
        self.shown = true;
        let mut err = std::io::stderr();
        let _ = write!(err, "\r\x1b[2K{}", Self::text(phase, done, total));
        let _ = err.flush();
    }

    fn say(&mut self, what: &str) {
        if self.tty {
            self.shown = true;
            let _ = write!(std::io::stderr(), "\r\x1b[2K{what}");
            let _ = std::io::stderr().flush();
        }
    }

    fn finish(&mut self) {
        if self.shown {
            let _ = write!(std::io::stderr(), "\r\x1b[2K");
            let _ = std::io::stderr().flush();
            self.shown = false;
        }
    }
}

/// "3m ago", "never".
fn ago(unix: Option<u64>, now: u64) -> String {
    match unix {
        None => "never".into(),
        Some(t) => format!(
            "{} ago",
            short_duration(Duration::from_secs(now.saturating_sub(t)))
        ),
    }
}

fn print_feeds(file: &FeedsFile) {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    println!(
        "{} IOCs in the kernel (status of pid {}, written {})",
        file.iocs,
        file.pid,
        ago(Some(file.updated), now)
    );
    for f in &file.feeds {
        println!(
            "{} (feed {}): {} entries, refreshed {}, {} failed attempts",
            f.id,
            f.feed_id,
            f.entries,
            ago(f.last_refresh, now),
            f.errors
        );
        println!("  source: {}", f.source);
        if let Some(e) = &f.last_error {
            println!("  last error ({}): {e}", ago(f.last_attempt, now));
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn load(
    pin_root: &Path,
    source: &str,
    format: Option<FeedFormat>,
    field: Option<String>,
    confidence_field: Option<String>,
    min_confidence: u8,
    action: TiAction,
    feed: &str,
) -> Result<Outcome> {
    let maps = open(pin_root)?;
    let status = read_feeds_status(pin_root);
    let id = feed_id(feed, status.as_ref())?;
    let started = Instant::now();
    let mut progress = ProgressLine::new();
    let src = source_of(source);
    progress.say(&format!("reading {source}"));
    let fetched = Fetcher::new(FetchLimits::default()).fetch(&src, &Validators::default());
    let text = match fetched {
        Ok(FetchOutcome::Body { text, .. }) => text,
        Ok(FetchOutcome::NotModified) => {
            progress.finish();
            bail!("{source}: the server answered 304 Not Modified to a plain request")
        }
        Err(e) => {
            progress.finish();
            return Err(anyhow::Error::new(e).context(format!("reading {source}")));
        }
    };
    let format = format.unwrap_or_else(|| format_of(source));
    progress.say(&format!("parsing {} bytes", text.len()));
    let cfg = FeedConfig {
        id: feed.to_string(),
        location: Location {
            file: PathBuf::from(source),
            line: 0,
            col: 0,
        },
        source: src,
        format,
        field,
        confidence_field,
        category_field: None,
        refresh: None,
        action: Some(action),
        min_confidence,
    };
    let parsed = match crate::feeds::parse_feed(&cfg, &text) {
        Ok(p) => p,
        Err(e) => {
            progress.finish();
            bail!("{source}:{e}")
        }
    };
    drop(text);
    let loaded = IocSet::merge(&[(id, &cfg, &parsed)], action);
    progress.say("reading the IOCs in the kernel");
    let mut set = IocSet {
        iocs: maps.list()?.into_iter().map(|i| (i.net, i)).collect(),
        categories: Vec::new(),
    };
    let new = loaded.iocs.len();
    set.iocs.extend(loaded.iocs);
    let state = maps.state()?;
    let report = maps.apply_with(
        &set,
        state.quarantine_vlan,
        state.enabled,
        &mut |p, d, t| progress.update(p, d, t),
    );
    progress.finish();
    let report = report?;
    if let Some((line, why)) = parsed.first_error() {
        eprintln!(
            "ebpfsentinel: {source}: {} bad lines skipped, the first: line {line}: {why}",
            parsed.bad_lines
        );
    }
    println!(
        "loaded {new} IOCs from {source} as feed {}: {} in the kernel ({} written, {} \
         removed), Bloom filter of {} entries, generation {}, in {:.1?}",
        feed_name(status.as_ref(), id),
        report.iocs.total(),
        report.upserts,
        report.removed,
        report.bloom_keys,
        report.generation,
        started.elapsed()
    );
    if !state.enabled {
        eprintln!(
            "ebpfsentinel: threat intel is off in the running config: the IOCs are stored, \
             not matched"
        );
    }
    Ok(Outcome::Ok)
}

pub fn execute(args: TiArgs) -> Result<Outcome> {
    match args.what {
        What::Add {
            pin_root,
            net,
            action,
            feed,
            confidence,
        } => {
            let root = &pin_root.pin_root;
            let maps = open(root)?;
            let status = read_feeds_status(root);
            let ioc = Ioc {
                net,
                feed_id: feed_id(&feed, status.as_ref())?,
                confidence,
                category: 0,
                action,
            };
            let added = maps.add(&ioc)?;
            let what = format!(
                "{} ({}, feed {}, confidence {confidence})",
                net_text(&net),
                action.name(),
                feed_name(status.as_ref(), ioc.feed_id)
            );
            match added.replaced {
                Some(old) => println!(
                    "replaced {what}; it was {}, feed {}",
                    old.action.name(),
                    feed_name(status.as_ref(), old.feed_id)
                ),
                None => println!("added {what}"),
            }
            if !added.enabled {
                eprintln!(
                    "ebpfsentinel: threat intel is off in the running config: the IOC is \
                     stored, not matched"
                );
            }
            Ok(Outcome::Ok)
        }
        What::Del { pin_root, net } => {
            if open(&pin_root.pin_root)?.del(&net)? {
                println!("removed {}", net_text(&net));
                Ok(Outcome::Ok)
            } else {
                println!("{} was no IOC", net_text(&net));
                Ok(Outcome::Negative)
            }
        }
        What::Lookup { pin_root, ip, json } => {
            let root = &pin_root.pin_root;
            let matches = open(root)?.lookup(ip.to_canonical())?;
            let status = read_feeds_status(root);
            if json {
                let out = LookupJson {
                    ip,
                    listed: !matches.is_empty(),
                    matches: matches
                        .iter()
                        .map(|i| ioc_json(i, status.as_ref()))
                        .collect(),
                };
                println!("{}", serde_json::to_string_pretty(&out)?);
            } else if matches.is_empty() {
                println!("{ip} is listed by no IOC");
            } else {
                println!("{ip} is listed:");
                for line in table(&matches, status.as_ref()) {
                    println!("  {}", line.trim_end());
                }
            }
            Ok(if matches.is_empty() {
                Outcome::Negative
            } else {
                Outcome::Ok
            })
        }
        What::List { pin_root, json } => {
            let root = &pin_root.pin_root;
            let iocs = open(root)?.list()?;
            let status = read_feeds_status(root);
            if json {
                let out: Vec<IocJson> = iocs.iter().map(|i| ioc_json(i, status.as_ref())).collect();
                println!("{}", serde_json::to_string_pretty(&out)?);
            } else if iocs.is_empty() {
                println!("no IOCs");
            } else {
                let out = std::io::stdout();
                let mut out = std::io::BufWriter::new(out.lock());
                for line in table(&iocs, status.as_ref()) {
                    writeln!(out, "{}", line.trim_end())?;
                }
            }
            Ok(Outcome::Ok)
        }
        What::Load {
            pin_root,
            source,
            format,
            field,
            confidence_field,
            min_confidence,
            action,
            feed,
        } => load(
            &pin_root.pin_root,
            &source,
            format,
            field,
            confidence_field,
            min_confidence,
            action,
            &feed,
        ),
        What::Feeds { pin_root, json } => {
            let root = &pin_root.pin_root;
            let Some(file) = read_feeds_status(root) else {
                eprintln!(
                    "ebpfsentinel: no feeds status at {}: no daemon with threat-intel feeds \
                     runs for pin root {}",
                    threatintel::feeds_status_path(root).display(),
                    root.display()
                );
                return Ok(Outcome::Negative);
            };
            if json {
                println!("{}", serde_json::to_string_pretty(&file)?);
            } else {
                print_feeds(&file);
            }
            Ok(Outcome::Ok)
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::maps::threatintel::FeedStatus;

    #[derive(Debug, Parser)]
    struct Harness {
        #[command(flatten)]
        ti: TiArgs,
    }

    fn parse(args: &[&str]) -> std::result::Result<What, String> {
        Harness::try_parse_from(std::iter::once("ti").chain(args.iter().copied()))
            .map(|h| h.ti.what)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn add_and_del_parse() {
        match parse(&["add", "203.0.113.7", "--action", "drop", "--feed", "feodo"]).unwrap() {
            What::Add {
                net,
                action,
                feed,
                confidence,
                ..
            } => {
                assert_eq!(net.to_string(), "203.0.113.7/32");
                assert_eq!(
                    (action, feed.as_str(), confidence),
                    (TiAction::Drop, "feodo", 100)
                );
            }
            other => panic!("{other:?}"),
        }
        match parse(&["add", "2001:db8::/32"]).unwrap() {
            What::Add { action, feed, .. } => {
                assert_eq!((action, feed.as_str()), (TiAction::Alert, "manual"))
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            parse(&["del", "10.0.0.0/8"]).unwrap(),
            What::Del { .. }
        ));
        assert!(parse(&["add", "10.0.0.1", "--action", "block"])
            .unwrap_err()
            .contains("alert, drop or quarantine"));
        assert!(parse(&["add", "10.0.0.1", "--confidence", "101"]).is_err());
        assert!(parse(&["del", "nonsense"])
            .unwrap_err()
            .contains("neither an IP address nor a CIDR"));
        // writes have no --json
        assert!(parse(&["del", "10.0.0.1", "--json"]).is_err());
    }

    #[test]
    fn read_commands_have_json() {
        for args in [
            &["lookup", "192.0.2.1", "--json"][..],
            &["list", "--json"],
            &["feeds", "--json"],
        ] {
            let what = parse(args).unwrap();
            let json = match what {
                What::Lookup { json, .. } | What::List { json, .. } | What::Feeds { json, .. } => {
                    json
                }
                other => panic!("{other:?}"),
            };
            assert!(json, "{args:?}");
        }
        assert!(
            parse(&["lookup", "192.0.2.0/24"]).is_err(),
            "lookup takes an address"
        );
    }

    #[test]
    fn load_parses_and_guesses_the_format() {
        match parse(&[
            "load",
            "https://feodotracker.abuse.ch/downloads/ipblocklist.csv",
            "--field",
            "dst_ip",
            "--action",
            "drop",
            "--pin-root",
            "/tmp/x",
        ])
        .unwrap()
        {
            What::Load {
                source,
                format,
                field,
                action,
                pin_root,
                ..
            } => {
                assert_eq!(format, None);
                assert_eq!(format_of(&source), FeedFormat::Csv);
                assert_eq!(field.as_deref(), Some("dst_ip"));
                assert_eq!(action, TiAction::Drop);
                assert_eq!(pin_root.pin_root, Path::new("/tmp/x"));
            }
            other => panic!("{other:?}"),
        }
        match parse(&["load", "x.txt", "--format", "NDJSON"]).unwrap() {
            What::Load { format, .. } => assert_eq!(format, Some(FeedFormat::Ndjson)),
            other => panic!("{other:?}"),
        }
        assert!(parse(&["load", "x", "--format", "xml"])
            .unwrap_err()
            .contains("netset, spamhaus, csv, json or ndjson"));
        assert_eq!(format_of("/var/lib/drop_v4.json"), FeedFormat::Json);
        assert_eq!(format_of("drop.jsonl"), FeedFormat::Ndjson);
        assert_eq!(format_of("https://x/y.csv?key=1"), FeedFormat::Csv);
        assert_eq!(format_of("firehol_level1.netset"), FeedFormat::Netset);
        assert!(matches!(source_of("https://x/y"), FeedSource::Url(_)));
        assert!(matches!(source_of("./y"), FeedSource::Path(_)));
    }

    #[test]
    fn feed_names_resolve() {
        let file = FeedsFile {
            feeds: vec![FeedStatus {
                id: "feodo".into(),
                feed_id: 2,
                ..Default::default()
            }],
            ..Default::default()
        };
        assert_eq!(feed_id("manual", None).unwrap(), MANUAL_FEED);
        assert_eq!(feed_id("feodo", Some(&file)).unwrap(), 2);
        assert_eq!(feed_id("7", None).unwrap(), 7);
        let e = feed_id("drop", Some(&file)).unwrap_err().to_string();
        assert!(e.contains("the daemon's feeds are feodo"), "{e}");
        assert!(feed_id("drop", None)
            .unwrap_err()
            .to_string()
            .contains("no daemon reported"));
    }

    #[test]
    fn rows_and_json() {
        let file = FeedsFile {
            feeds: vec![FeedStatus {
                id: "drop".into(),
                feed_id: 1,
                ..Default::default()
            }],
            ..Default::default()
        };
        let iocs = vec![
            Ioc {
                net: "1.10.16.0/20".parse().unwrap(),
                feed_id: 1,
                confidence: 100,
                category: 0,
                action: TiAction::Drop,
            },
            Ioc {
                net: "2001:db8::7/128".parse().unwrap(),
                feed_id: MANUAL_FEED,
                confidence: 50,
                category: 2,
                action: TiAction::Quarantine,
            },
        ];
        let lines = table(&iocs, Some(&file));
        assert_eq!(
            lines,
            [
                "IOC              FEED    ACTION      CONFIDENCE",
                "1.10.16.0/20     drop    drop        100",
                "2001:db8::7/128  manual  quarantine  50",
            ]
        );
        let v = serde_json::to_value(ioc_json(&iocs[0], Some(&file))).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"ioc": "1.10.16.0/20", "feed": "drop", "feed_id": 1,
                "action": "drop", "confidence": 100, "category": 0})
        );
        assert_eq!(ioc_json(&iocs[0], None).feed, "feed 1");
    }

    #[test]
    fn progress_text() {
        assert_eq!(
            ProgressLine::text("bloom", 50, 200),
            "filling the Bloom filter   [######------------------] 50/200 (25%)"
        );
        assert!(ProgressLine::text("hash", 0, 0).ends_with("0/0 (100%)"));
        assert_eq!(ago(None, 100), "never");
        assert_eq!(ago(Some(40), 100), "1m00s ago");
    }

    #[test]
    fn a_missing_pin_names_the_cause() {
        let dir = std::env::temp_dir().join(format!("ebpfsentinel-ti-{}", std::process::id()));
        let err = match open(&dir) {
            Ok(_) => panic!("opened maps that are not there"),
            Err(e) => format!("{e:#}"),
        };
        assert!(err.contains("no threat-intel maps pinned under"), "{err}");
    }
}
