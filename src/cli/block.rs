//! `block`, `unblock` and `blocked`: the IPS blacklist xdp_firewall drops sources from, read
//! and written straight in the pinned maps (no daemon needed; a running one sees the change at
//! once, as the kernel does).

use std::path::Path;
use std::time::Duration;

use anyhow::Result;
use ipnet::IpNet;
use serde::Serialize;

use super::{Outcome, PinRootArg};
use crate::ips::{Reasons, REASON_MANUAL};
use crate::maps::blacklist::{BlacklistMaps, Blocked};

/// Block a source address or network: xdp_firewall drops every packet from it before any
/// other check (allowlist and conntrack fast path included), until it expires or is
/// unblocked. Replaces an earlier block of the same address or network.
#[derive(Debug, clap::Args)]
pub struct BlockArgs {
    #[command(flatten)]
    pin_root: PinRootArg,
    /// The source: an address (192.0.2.7, 2001:db8::7) or a network (198.51.100.0/24).
    #[arg(value_name = "IP/CIDR", value_parser = parse_net)]
    net: IpNet,
    /// How long: 90 (seconds), 30s, 10m, 1h, 7d or a sum like 1h30m. Default: until
    /// unblocked.
    #[arg(long = "for", value_name = "DURATION", value_parser = parse_duration)]
    duration: Option<Duration>,
    /// Why, as `blocked` shows it (default: manual).
    #[arg(long, value_name = "TEXT")]
    reason: Option<String>,
}

/// Lift the block of exactly this address or network. Exits 1 when it was not blocked.
#[derive(Debug, clap::Args)]
pub struct UnblockArgs {
    #[command(flatten)]
    pin_root: PinRootArg,
    /// The address or network as it was blocked.
    #[arg(value_name = "IP/CIDR", value_parser = parse_net)]
    net: IpNet,
}

/// The blocked sources: address or network, time left, reason.
#[derive(Debug, clap::Args)]
pub struct BlockedArgs {
    #[command(flatten)]
    pin_root: PinRootArg,
    /// Print one JSON array of {src, expires_in_secs, reason, reason_id}: src is an address
    /// or a CIDR, expires_in_secs null for a block until unblocked.
    #[arg(long)]
    json: bool,
}

/// An address (a host) or a network, its host bits cleared.
pub fn parse_net(s: &str) -> std::result::Result<IpNet, String> {
    crate::feeds::parse::parse_ioc(s).map_err(|_| {
        format!("`{s}` is neither an IP address nor a CIDR (e.g. 192.0.2.7, 198.51.100.0/24)")
    })
}

/// Seconds as a number, or one or more <number><unit> (s, m, h, d): 90, 30s, 1h30m. Zero is
/// refused: such a block would never hold.
pub fn parse_duration(s: &str) -> std::result::Result<Duration, String> {
    let bad = || format!("`{s}` is not a duration: 90 (seconds), 30s, 10m, 1h, 7d or 1h30m");
    let mut secs: u64 = 0;
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
        secs = s.parse().map_err(|_| bad())?;
    } else {
        let mut digits = String::new();
        for c in s.chars() {
            if c.is_ascii_digit() {
                digits.push(c);
                continue;
            }
            let scale = match c {
                's' => 1,
                'm' => 60,
                'h' => 3600,
                'd' => 86_400,
                _ => return Err(bad()),
            };
            let n: u64 = digits.parse().map_err(|_| bad())?;
            digits.clear();
            secs = n
                .checked_mul(scale)
                .and_then(|v| secs.checked_add(v))
                .ok_or_else(bad)?;
        }
        if !digits.is_empty() || s.is_empty() {
            return Err(bad());
        }
    }
    if secs == 0 {
        return Err(format!("`{s}`: a block must last at least a second"));
    }
    Ok(Duration::from_secs(secs))
}

/// 42s, 3m05s, 2h07m, 4d03h.
pub fn short_duration(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        0..=59 => format!("{s}s"),
        60..=3599 => format!("{}m{:02}s", s / 60, s % 60),
        3600..=86_399 => format!("{}h{:02}m", s / 3600, s % 3600 / 60),
        _ => format!("{}d{:02}h", s / 86_400, s % 86_400 / 3600),
    }
}

/// An address alone for a host network, else the CIDR.
pub fn net_text(net: &IpNet) -> String {
    if net.prefix_len() == net.max_prefix_len() {
        net.addr().to_string()
    } else {
        net.to_string()
    }
}

fn open(pin_root: &Path) -> Result<BlacklistMaps> {
    super::require_pin(
        pin_root,
        "ips_block_v4",
        "no IPS blacklist pinned under {}: is `ebpfsentinel run` running there?",
    )?;
    BlacklistMaps::from_pins(pin_root)
}

/// One entry of `blocked --json`.
#[derive(Debug, Serialize)]
struct BlockedJson {
    src: String,
    expires_in_secs: Option<f64>,
    reason: String,
    reason_id: u32,
}

fn json_of(b: &Blocked, reasons: &Reasons) -> BlockedJson {
    BlockedJson {
        src: net_text(&b.net),
        expires_in_secs: b.expires_in.map(|d| d.as_millis() as f64 / 1000.0),
        reason: reasons.name(b.reason),
        reason_id: b.reason,
    }
}

fn table(list: &[Blocked], reasons: &Reasons) -> Vec<String> {
    let rows: Vec<[String; 3]> = list
        .iter()
        .map(|b| {
            [
                net_text(&b.net),
                b.expires_in.map_or("never".into(), short_duration),
                reasons.name(b.reason),
            ]
        })
        .collect();
    let header = ["SOURCE".to_string(), "EXPIRES IN".into(), "REASON".into()];
    let w0 = rows.iter().map(|r| r[0].len()).max().unwrap_or(0).max(6);
    let w1 = rows.iter().map(|r| r[1].len()).max().unwrap_or(0).max(10);
    std::iter::once(&header)
        .chain(&rows)
        .map(|r| format!("{:<w0$}  {:<w1$}  {}", r[0], r[1], r[2]))
        .collect()
}

pub fn block(args: BlockArgs) -> Result<Outcome> {
    let root = &args.pin_root.pin_root;
    let maps = open(root)?;
    let mut reasons = Reasons::load(root);
    let reason = match args.reason.as_deref() {
        None => REASON_MANUAL,
        Some(r) => {
            let id = reasons.id(r);
            if let Err(e) = reasons.save(root) {
                eprintln!("ebpfsentinel: the reason's name is not kept for `blocked`: {e:#}");
            }
            id
        }
    };
    maps.block(args.net, args.duration, reason)?;
    println!(
        "blocked {} {} ({})",
        net_text(&args.net),
        args.duration.map_or("until unblocked".into(), |d| format!(
            "for {}",
            short_duration(d)
        )),
        reasons.name(reason)
    );
    Ok(Outcome::Ok)
}

pub fn unblock(args: UnblockArgs) -> Result<Outcome> {
    let maps = open(&args.pin_root.pin_root)?;
    if maps.unblock(args.net)? {
        println!("unblocked {}", net_text(&args.net));
        return Ok(Outcome::Ok);
    }
    let covering = match args.net {
        n if n.prefix_len() == n.max_prefix_len() => maps.blocked(n.addr())?,
        _ => None,
    };
    match covering {
        Some(b) => println!(
            "{} was not blocked itself; it is inside blocked {} (unblock that)",
            net_text(&args.net),
            net_text(&b.net)
        ),
        None => println!("{} was not blocked", net_text(&args.net)),
    }
    Ok(Outcome::Negative)
}

pub fn blocked(args: BlockedArgs) -> Result<Outcome> {
    let root = &args.pin_root.pin_root;
    let list = open(root)?.list()?;
    let reasons = Reasons::load(root);
    if args.json {
        let out: Vec<BlockedJson> = list.iter().map(|b| json_of(b, &reasons)).collect();
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else if list.is_empty() {
        println!("nothing is blocked");
    } else {
        for line in table(&list, &reasons) {
            println!("{}", line.trim_end());
        }
    }
    Ok(Outcome::Ok)
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Debug, Parser)]
    enum Harness {
        Block(BlockArgs),
        Unblock(UnblockArgs),
        Blocked(BlockedArgs),
    }

    fn parse(args: &[&str]) -> std::result::Result<Harness, String> {
        Harness::try_parse_from(std::iter::once("x").chain(args.iter().copied()))
            .map_err(|e| e.to_string())
    }

    #[test]
    fn durations_parse() {
        let d = |s: &str| parse_duration(s).map(|d| d.as_secs());
        assert_eq!(d("90"), Ok(90));
        assert_eq!(d("30s"), Ok(30));
        assert_eq!(d("10m"), Ok(600));
        assert_eq!(d("1h"), Ok(3600));
        assert_eq!(d("7d"), Ok(7 * 86_400));
        assert_eq!(d("1h30m"), Ok(5400));
        for bad in ["", "h", "1x", "1h30", "-5", "1.5h", "99999999999999999999d"] {
            assert!(d(bad).unwrap_err().contains("is not a duration"), "{bad}");
        }
        assert!(d("0s").unwrap_err().contains("at least a second"));
        assert!(d("0").is_err());
    }

    #[test]
    fn arguments_parse() {
        match parse(&["block", "192.0.2.7", "--for", "1h", "--reason", "port scan"]).unwrap() {
            Harness::Block(a) => {
                assert_eq!(a.net.to_string(), "192.0.2.7/32");
                assert_eq!(a.duration, Some(Duration::from_secs(3600)));
                assert_eq!(a.reason.as_deref(), Some("port scan"));
                assert_eq!(
                    a.pin_root.pin_root,
                    Path::new(crate::config::DEFAULT_PIN_ROOT)
                );
            }
            other => panic!("{other:?}"),
        }
        match parse(&["block", "198.51.100.9/24", "--pin-root", "/tmp/p"]).unwrap() {
            Harness::Block(a) => {
                // host bits cleared
                assert_eq!(a.net.to_string(), "198.51.100.0/24");
                assert_eq!((a.duration, a.reason), (None, None));
                assert_eq!(a.pin_root.pin_root, Path::new("/tmp/p"));
            }
            other => panic!("{other:?}"),
        }
        match parse(&["unblock", "2001:db8::1"]).unwrap() {
            Harness::Unblock(a) => assert_eq!(a.net.to_string(), "2001:db8::1/128"),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            parse(&["blocked", "--json"]).unwrap(),
            Harness::Blocked(BlockedArgs { json: true, .. })
        ));
        assert!(parse(&["block", "example.com"])
            .unwrap_err()
            .contains("neither an IP address nor a CIDR"));
        assert!(parse(&["block", "192.0.2.1", "--for", "soon"])
            .unwrap_err()
            .contains("is not a duration"));
        // unblock and block are no read commands
        assert!(parse(&["unblock", "192.0.2.1", "--json"]).is_err());
    }

    #[test]
    fn listing() {
        let mut reasons = Reasons::default();
        let feed = reasons.id("threat-intel feed drop");
        let list = vec![
            Blocked {
                net: "192.0.2.66/32".parse().unwrap(),
                expires_in: None,
                reason: 0,
            },
            Blocked {
                net: "198.51.100.0/24".parse().unwrap(),
                expires_in: Some(Duration::from_millis(3_552_250)),
                reason: feed,
            },
        ];
        let lines = table(&list, &reasons);
        assert_eq!(
            lines,
            [
                "SOURCE           EXPIRES IN  REASON",
                "192.0.2.66       never       manual",
                "198.51.100.0/24  59m12s      threat-intel feed drop",
            ]
        );
        let v = serde_json::to_value(json_of(&list[1], &reasons)).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"src": "198.51.100.0/24", "expires_in_secs": 3552.25,
                "reason": "threat-intel feed drop", "reason_id": feed})
        );
        let v = serde_json::to_value(json_of(&list[0], &Reasons::default())).unwrap();
        assert_eq!(v["src"], "192.0.2.66");
        assert!(v["expires_in_secs"].is_null());
        assert_eq!(
            short_duration(Duration::from_secs(86_400 * 2 + 3600)),
            "2d01h"
        );
    }

    #[test]
    fn a_missing_pin_names_the_cause() {
        let dir = std::env::temp_dir().join(format!("ebpfsentinel-bl-{}", std::process::id()));
        let err = match open(&dir) {
            Ok(_) => panic!("opened a blacklist that is not there"),
            Err(e) => format!("{e:#}"),
        };
        assert!(err.contains("no IPS blacklist pinned under"), "{err}");
    }
}
