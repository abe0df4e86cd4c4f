use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::time::Duration;

use anyhow::{bail, Result};
use ipnet::IpNet;
use serde::Serialize;

use super::block::short_duration;
use super::{Outcome, PinRootArg};
use crate::events::proto_name;
use crate::maps::conntrack::{self, ConntrackMaps, Flow, FlowFilter};

/// Show, count and remove connection-tracking entries, read straight from the pinned
/// conntrack table: no daemon needed, but one with `conntrack.enabled` must have pinned it.
///
/// A flow reads originator -> responder: `src` is whoever sent the first packet the tracker
/// saw. Filters combine with AND.
#[derive(Debug, clap::Args)]
pub struct CtArgs {
    #[command(subcommand)]
    what: What,
}

#[derive(Debug, clap::Subcommand)]
enum What {
    /// The flows in the table: proto, state, originator -> responder, packets and bytes each
    /// way, idle time.
    List {
        #[command(flatten)]
        pin_root: PinRootArg,
        #[command(flatten)]
        filter: FilterArgs,
        /// Print one JSON array of flows: {src_ip, src_port, dest_ip, dest_port, icmp_id,
        /// proto, state, packets_orig, bytes_orig, packets_reply, bytes_reply, age_secs,
        /// idle_secs, socket_cookie, ifindex}; src_port and dest_port are null for ICMP echo
        /// flows, icmp_id (the echo identifier) for TCP and UDP ones.
        #[arg(long)]
        json: bool,
    },
    /// Remove the flows the filters match (every flow without filters). The next packet of a
    /// removed UDP or ICMP flow starts it over as NEW; of a TCP flow, unless it is a SYN, it
    /// is INVALID (dropped with `conntrack.invalid: drop`), as for any connection the tracker
    /// never saw open.
    Flush {
        #[command(flatten)]
        pin_root: PinRootArg,
        #[command(flatten)]
        filter: FilterArgs,
    },
    /// How many flows the filters match.
    Count {
        #[command(flatten)]
        pin_root: PinRootArg,
        #[command(flatten)]
        filter: FilterArgs,
        /// Print {"count": N}.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, Clone, clap::Args)]
struct FilterArgs {
    /// The originator's address is in this CIDR (or is this address).
    #[arg(long, value_name = "CIDR", value_parser = conntrack::parse_net)]
    src: Option<IpNet>,
    /// The responder's address is in this CIDR (or is this address).
    #[arg(long, value_name = "CIDR", value_parser = conntrack::parse_net)]
    dst: Option<IpNet>,
    /// tcp, udp, icmp, icmpv6 or a protocol number.
    #[arg(long, value_name = "PROTO", value_parser = conntrack::parse_proto)]
    proto: Option<u8>,
    /// Either port of a TCP or UDP flow.
    #[arg(long, value_name = "N", value_parser = conntrack::parse_port)]
    port: Option<u16>,
    /// syn_sent, syn_recv, established, fin_wait, close_wait, time_wait, close or new
    /// (new and established cover UDP and ICMP flows too).
    #[arg(long, value_name = "STATE", value_parser = conntrack::parse_state)]
    state: Option<&'static str>,
}

impl FilterArgs {
    fn filter(&self) -> Result<FlowFilter> {
        if let (Some(port), Some(proto)) = (self.port, self.proto) {
            if !matches!(proto, 6 | 17) {
                bail!(
                    "--port {port} with --proto {}: only TCP and UDP flows have ports",
                    proto_word(proto)
                );
            }
        }
        Ok(FlowFilter {
            src: self.src,
            dst: self.dst,
            proto: self.proto,
            port: self.port,
            state: self.state,
        })
    }
}

/// One flow of `ct list --json`; the names follow the events' EVE records.
#[derive(Debug, Serialize)]
struct FlowJson {
    src_ip: IpAddr,
    src_port: Option<u16>,
    dest_ip: IpAddr,
    dest_port: Option<u16>,
    icmp_id: Option<u16>,
    proto: String,
    state: &'static str,
    packets_orig: u64,
    bytes_orig: u64,
    packets_reply: u64,
    bytes_reply: u64,
    age_secs: f64,
    idle_secs: f64,
    socket_cookie: u64,
    ifindex: u32,
}

fn secs(d: Duration) -> f64 {
    (d.as_millis() as f64) / 1000.0
}

impl From<&Flow> for FlowJson {
    fn from(f: &Flow) -> Self {
        let ports = f.has_ports();
        FlowJson {
            src_ip: f.src,
            src_port: ports.then_some(f.src_port),
            dest_ip: f.dst,
            dest_port: ports.then_some(f.dst_port),
            icmp_id: (!ports && matches!(f.proto, 1 | 58)).then_some(f.src_port),
            proto: proto_name(f.proto),
            state: f.state.name(),
            packets_orig: f.orig.packets,
            bytes_orig: f.orig.bytes,
            packets_reply: f.reply.packets,
            bytes_reply: f.reply.bytes,
            age_secs: secs(f.age),
            idle_secs: secs(f.idle),
            socket_cookie: f.socket_cookie,
            ifindex: f.ifindex,
        }
    }
}

/// tcp, udp, icmp, icmpv6 as `--proto` takes them.
fn proto_word(p: u8) -> String {
    match p {
        6 => "tcp".into(),
        17 => "udp".into(),
        1 => "icmp".into(),
        58 => "icmpv6".into(),
        n => n.to_string(),
    }
}

/// addr:port, [v6]:port; an ICMP endpoint is its address alone.
fn endpoint(addr: IpAddr, port: u16, ports: bool) -> String {
    if ports {
        SocketAddr::new(addr, port).to_string()
    } else {
        addr.to_string()
    }
}

const HEADER: [&str; 10] = [
    "PROTO",
    "STATE",
    "SOURCE",
    "",
    "DESTINATION",
    "ORIG PKTS",
    "ORIG BYTES",
    "REPLY PKTS",
    "REPLY BYTES",
    "IDLE",
];

fn row(f: &Flow) -> Vec<String> {
    let ports = f.has_ports();
    let mut dst = endpoint(f.dst, f.dst_port, ports);
    if !ports && matches!(f.proto, 1 | 58) {
        dst.push_str(&format!(" id {}", f.src_port));
    }
    vec![
        proto_word(f.proto),
        f.state.name().to_string(),
        endpoint(f.src, f.src_port, ports),
        "->".to_string(),
        dst,
        f.orig.packets.to_string(),
        f.orig.bytes.to_string(),
        f.reply.packets.to_string(),
        f.reply.bytes.to_string(),
        short_duration(f.idle),
    ]
}

/// Aligned columns, numbers to the right.
fn table(flows: &[Flow]) -> Vec<String> {
    let mut rows: Vec<Vec<String>> = vec![HEADER.iter().map(|h| h.to_string()).collect()];
    rows.extend(flows.iter().map(row));
    let cols = rows[0].len();
    let width: Vec<usize> = (0..cols)
        .map(|c| rows.iter().map(|r| r[c].len()).max().unwrap_or(0))
        .collect();
    rows.iter()
        .map(|r| {
            let cells: Vec<String> = r
                .iter()
                .enumerate()
                .map(|(c, v)| match c {
                    5..=9 => format!("{v:>w$}", w = width[c]),
                    _ => format!("{v:<w$}", w = width[c]),
                })
                .collect();
            cells.join("  ").trim_end().to_string()
        })
        .collect()
}

fn open(pin_root: &Path) -> Result<ConntrackMaps> {
    super::require_pin(
        pin_root,
        "ct_table",
        "no conntrack table pinned under {}: is `ebpfsentinel run` running with conntrack.enabled?",
    )?;
    ConntrackMaps::from_pins(pin_root)
}

fn matching(maps: &ConntrackMaps, filter: &FlowFilter) -> Result<Vec<Flow>> {
    let mut flows: Vec<Flow> = maps
        .flows()?
        .into_iter()
        .filter(|f| filter.matches(f))
        .collect();
    flows.sort_by(|a, b| {
        (
            a.src.is_ipv6(),
            a.src,
            a.src_port,
            a.dst,
            a.dst_port,
            a.proto,
        )
            .cmp(&(
                b.src.is_ipv6(),
                b.src,
                b.src_port,
                b.dst,
                b.dst_port,
                b.proto,
            ))
    });
    Ok(flows)
}

pub fn execute(args: CtArgs) -> Result<Outcome> {
    match args.what {
        What::List {
            pin_root,
            filter,
            json,
        } => {
            let filter = filter.filter()?;
            let flows = matching(&open(&pin_root.pin_root)?, &filter)?;
            if json {
                let out: Vec<FlowJson> = flows.iter().map(FlowJson::from).collect();
                println!("{}", serde_json::to_string_pretty(&out)?);
            } else if !flows.is_empty() {
                for line in table(&flows) {
                    println!("{line}");
                }
            }
        }
        What::Flush { pin_root, filter } => {
            let filter = filter.filter()?;
            let removed = open(&pin_root.pin_root)?.flush(&filter)?;
            println!(
                "removed {removed} conntrack {}",
                if removed == 1 { "entry" } else { "entries" }
            );
        }
        What::Count {
            pin_root,
            filter,
            json,
        } => {
            let filter = filter.filter()?;
            let maps = open(&pin_root.pin_root)?;
            let count = maps.flows()?.iter().filter(|f| filter.matches(f)).count();
            if json {
                println!("{}", serde_json::json!({ "count": count }));
            } else {
                println!("{count}");
            }
        }
    }
    Ok(Outcome::Ok)
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;
    use crate::maps::conntrack::{Counts, CtState};

    #[derive(Debug, Parser)]
    struct Harness {
        #[command(flatten)]
        ct: CtArgs,
    }

    fn parse(args: &[&str]) -> std::result::Result<CtArgs, String> {
        Harness::try_parse_from(std::iter::once("ct").chain(args.iter().copied()))
            .map(|h| h.ct)
            .map_err(|e| e.to_string())
    }

    fn filter_of(args: &[&str]) -> FlowFilter {
        match parse(args).unwrap().what {
            What::List { filter, .. } | What::Flush { filter, .. } | What::Count { filter, .. } => {
                filter.filter().unwrap()
            }
        }
    }

    #[test]
    fn filters_parse() {
        let f = filter_of(&[
            "list",
            "--src",
            "10.0.0.0/8",
            "--dst",
            "2001:db8::1",
            "--proto",
            "udp",
            "--port",
            "53",
            "--state",
            "NEW",
            "--json",
        ]);
        assert_eq!(f.src.unwrap().to_string(), "10.0.0.0/8");
        assert_eq!(f.dst.unwrap().to_string(), "2001:db8::1/128");
        assert_eq!(
            (f.proto, f.port, f.state),
            (Some(17), Some(53), Some("new"))
        );
        assert_eq!(filter_of(&["flush"]), FlowFilter::default());
        match parse(&["count", "--pin-root", "/tmp/x", "--json"])
            .unwrap()
            .what
        {
            What::Count { pin_root, json, .. } => {
                assert!(json);
                assert_eq!(pin_root.pin_root, Path::new("/tmp/x"));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn bad_arguments_say_why() {
        let err = |args: &[&str]| parse(args).unwrap_err();
        assert!(err(&["list", "--src", "10.0.0.0/40"]).contains("neither an IP address nor a CIDR"));
        assert!(err(&["list", "--proto", "gre"]).contains("tcp, udp, icmp, icmpv6 or a number"));
        assert!(err(&["count", "--port", "0"]).contains("a number 1-65535"));
        assert!(err(&["flush", "--state", "open"]).contains("syn_sent, syn_recv, established"));
        // flush is no read command
        assert!(parse(&["flush", "--json"]).is_err());
        let icmp_port = match parse(&["list", "--proto", "icmp", "--port", "7"])
            .unwrap()
            .what
        {
            What::List { filter, .. } => filter.filter().unwrap_err().to_string(),
            other => panic!("{other:?}"),
        };
        assert!(
            icmp_port.contains("only TCP and UDP flows have ports"),
            "{icmp_port}"
        );
    }

    fn flow(src: &str, sport: u16, dst: &str, dport: u16, proto: u8) -> Flow {
        Flow {
            proto,
            src: src.parse().unwrap(),
            src_port: sport,
            dst: dst.parse().unwrap(),
            dst_port: dport,
            state: CtState(2),
            seen_reply: true,
            orig: Counts {
                packets: 3,
                bytes: 180,
            },
            reply: Counts {
                packets: 2,
                bytes: 1500,
            },
            age: Duration::from_millis(65_250),
            idle: Duration::from_secs(125),
            socket_cookie: 9,
            ifindex: 2,
        }
    }

    #[test]
    fn text_rows() {
        let lines = table(&[
            flow("10.0.0.1", 40000, "10.0.0.2", 22, 6),
            flow("2001:db8::1", 5353, "2001:db8::2", 53, 17),
            flow("192.0.2.1", 7, "192.0.2.2", 7, 1),
        ]);
        assert_eq!(lines.len(), 4);
        assert!(lines[0].starts_with("PROTO"), "{}", lines[0]);
        assert!(
            lines[1].starts_with("tcp    established  10.0.0.1:40000      ->  10.0.0.2:22  "),
            "{}",
            lines[1]
        );
        assert!(lines[1].ends_with("2m05s"), "{}", lines[1]);
        assert!(lines[2].contains("[2001:db8::1]:5353"), "{}", lines[2]);
        assert!(lines[2].starts_with("udp"), "{}", lines[2]);
        assert!(
            lines[3].contains("192.0.2.1           ->  192.0.2.2 id 7 "),
            "{}",
            lines[3]
        );
        let widths: Vec<usize> = lines.iter().map(|l| l.len()).collect();
        assert!(widths.windows(2).all(|w| w[0] == w[1]), "{lines:#?}");
    }

    #[test]
    fn json_fields() {
        let v = serde_json::to_value(FlowJson::from(&flow("10.0.0.1", 40000, "10.0.0.2", 22, 6)))
            .unwrap();
        assert_eq!(
            v,
            serde_json::json!({
                "src_ip": "10.0.0.1", "src_port": 40000, "dest_ip": "10.0.0.2", "dest_port": 22,
                "icmp_id": null, "proto": "TCP", "state": "established",
                "packets_orig": 3, "bytes_orig": 180, "packets_reply": 2, "bytes_reply": 1500,
                "age_secs": 65.25, "idle_secs": 125.0, "socket_cookie": 9, "ifindex": 2
            })
        );
        let icmp =
            serde_json::to_value(FlowJson::from(&flow("192.0.2.1", 7, "192.0.2.2", 7, 1))).unwrap();
        assert_eq!(icmp["icmp_id"], 7);
        assert!(icmp["src_port"].is_null() && icmp["dest_port"].is_null());
    }

    #[test]
    fn durations() {
        let d = |s| short_duration(Duration::from_secs(s));
        assert_eq!(
            [
                d(0),
                d(59),
                d(60),
                d(3599),
                d(3600),
                d(86_399),
                d(86_400 * 5 + 7200)
            ],
            ["0s", "59s", "1m00s", "59m59s", "1h00m", "23h59m", "5d02h"]
        );
    }

    #[test]
    fn a_missing_pin_names_the_cause() {
        let dir = std::env::temp_dir().join(format!("ebpfsentinel-ct-{}", std::process::id()));
        let err = match open(&dir) {
            Ok(_) => panic!("opened a table that is not there"),
            Err(e) => format!("{e:#}"),
        };
        assert_eq!(
            err,
            format!(
                "no conntrack table pinned under {}: is `ebpfsentinel run` running with \
                 conntrack.enabled?",
                dir.display()
            )
        );
    }
}
