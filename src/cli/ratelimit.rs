use anyhow::Result;

use super::{Outcome, PinRootArg};
use crate::control;

/// Show and change the running daemon's rate-limit policies. Changes apply at once (one
/// atomic flip, like a reload) and hold until the next reload re-reads the config file: put
/// policies meant to stay in `ratelimit.policies` there.
#[derive(Debug, clap::Args)]
pub struct RateLimitArgs {
    #[command(flatten)]
    pin_root: PinRootArg,
    #[command(subcommand)]
    what: What,
}

#[derive(Debug, clap::Subcommand)]
enum What {
    /// The policies in force, in order.
    List {
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Add a policy, or replace the one with the same id.
    Set {
        id: String,
        /// Source IP or CIDR (repeatable); every source when absent.
        #[arg(long)]
        src: Vec<String>,
        /// tcp, udp, icmp, icmpv6 or a protocol number.
        #[arg(long)]
        proto: Option<String>,
        /// Destination port or range N-M (TCP or UDP).
        #[arg(long)]
        dst_port: Option<String>,
        /// Packets per second.
        #[arg(long)]
        rate: u64,
        /// Packets a key may send at once (default: one second's worth).
        #[arg(long)]
        burst: Option<u64>,
        /// drop or pass-and-log.
        #[arg(long, default_value = "drop")]
        action: String,
        /// source (a budget per source address) or policy (one budget for all).
        #[arg(long, default_value = "source")]
        key: String,
    },
    /// Remove a policy.
    Del { id: String },
}

/// A YAML flow mapping with the strings quoted, so that the daemon's config parser reads
/// them exactly as it would from a config file (and validates them the same way).
fn flow_mapping(fields: &[(&str, Option<String>)]) -> String {
    let body: Vec<String> = fields
        .iter()
        .filter_map(|(k, v)| v.as_ref().map(|v| format!("{k}: {v}")))
        .collect();
    format!("{{ {} }}", body.join(", "))
}

fn quoted(s: &str) -> String {
    format!("{:?}", s)
}

pub fn execute(args: RateLimitArgs) -> Result<Outcome> {
    let command = match &args.what {
        What::List { .. } => "ratelimit list".to_string(),
        What::Del { id } => format!("ratelimit del {id}"),
        What::Set {
            id,
            src,
            proto,
            dst_port,
            rate,
            burst,
            action,
            key,
        } => {
            let src = (!src.is_empty()).then(|| {
                format!(
                    "[{}]",
                    src.iter().map(|s| quoted(s)).collect::<Vec<_>>().join(", ")
                )
            });
            format!(
                "ratelimit set {}",
                flow_mapping(&[
                    ("id", Some(quoted(id))),
                    ("src", src),
                    ("proto", proto.as_deref().map(quoted)),
                    ("dst_port", dst_port.as_deref().map(quoted)),
                    ("rate", Some(rate.to_string())),
                    ("burst", burst.map(|b| b.to_string())),
                    ("action", Some(quoted(action))),
                    ("key", Some(quoted(key))),
                ])
            )
        }
    };
    let answer = control::ask(&args.pin_root.pin_root, &command)?;
    match args.what {
        What::List { json: true } => print!("{answer}"),
        What::List { json: false } => {
            let rows: Vec<serde_json::Value> = serde_json::from_str(answer.trim())?;
            if rows.is_empty() {
                println!("no rate-limit policies");
                return Ok(Outcome::Negative);
            }
            for r in rows {
                println!(
                    "{:<20} {:>9} pps burst {:>9} {:<13} key {:<7} src {} proto {} dst_port {}",
                    r["id"].as_str().unwrap_or(""),
                    r["rate"],
                    r["burst"],
                    r["action"].as_str().unwrap_or(""),
                    r["key"].as_str().unwrap_or(""),
                    r["src"],
                    r["proto"],
                    r["dst_port"]
                );
            }
        }
        _ => print!("{answer}"),
    }
    Ok(Outcome::Ok)
}
