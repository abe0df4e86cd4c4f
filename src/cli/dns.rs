//! `dns`: tc_dns's blocklist, read and written straight in the pinned maps (no daemon needed;
//! a running one sees the change at once, as the kernel does).

use std::path::Path;

use anyhow::Result;
use serde::Serialize;

use super::{Outcome, PinRootArg};
use crate::feeds::domains::DnsAction;
use crate::maps::dns::{
    action_of, list_name, read_dns_status, DnsMaps, DnsStatusFile, LIST_RUNTIME,
};

/// Show and change the DNS blocklist tc_dns checks queries against. A listed domain blocks
/// itself and every subdomain. `block` adds a runtime entry: it outlives refreshes of the
/// daemon's feeds and reloads, until `unblock`. Domains from the config or a feed are the
/// daemon's: remove them there.
#[derive(Debug, clap::Args)]
pub struct DnsArgs {
    #[command(subcommand)]
    what: What,
}

fn parse_action(s: &str) -> std::result::Result<DnsAction, String> {
    DnsAction::from_name(s).ok_or_else(|| format!("`{s}` is not an action: drop or alert"))
}

#[derive(Debug, clap::Subcommand)]
enum What {
    /// Block queries for a domain and all its subdomains until unblocked.
    Block {
        #[command(flatten)]
        pin_root: PinRootArg,
        /// The domain (badsite.example); case and a trailing dot do not matter.
        #[arg(value_name = "DOMAIN")]
        domain: String,
        /// drop (the query is dropped) or alert (reported, passed).
        #[arg(long, default_value = "drop", value_parser = parse_action)]
        action: DnsAction,
    },
    /// Lift a runtime block of exactly this domain. Exits 1 when there was none.
    Unblock {
        #[command(flatten)]
        pin_root: PinRootArg,
        #[arg(value_name = "DOMAIN")]
        domain: String,
    },
    /// The runtime blocks, and the lists the daemon keeps in the kernel with their sizes.
    List {
        #[command(flatten)]
        pin_root: PinRootArg,
        /// Print {entries, runtime: [{domain, action}], lists: [{list, id, source, domains,
        /// ...}]}.
        #[arg(long)]
        json: bool,
    },
    /// Whether a query for NAME is blocked, and by which listed domain and list. Exits 1
    /// when it is not.
    Check {
        #[command(flatten)]
        pin_root: PinRootArg,
        #[arg(value_name = "NAME")]
        name: String,
        /// Print {name, blocked, suffix, list, action}.
        #[arg(long)]
        json: bool,
    },
}

fn open(pin_root: &Path) -> Result<DnsMaps> {
    super::require_pin(
        pin_root,
        "dns_blocklist",
        "no DNS blocklist pinned under {}: is `ebpfsentinel run` running there?",
    )?;
    DnsMaps::from_pins(pin_root)
}

#[derive(Debug, Serialize)]
struct RuntimeJson {
    domain: String,
    action: &'static str,
}

#[derive(Debug, Serialize)]
struct ListJson {
    entries: usize,
    runtime: Vec<RuntimeJson>,
    lists: Vec<crate::maps::dns::DnsListStatus>,
}

#[derive(Debug, Serialize)]
struct CheckJson {
    name: String,
    blocked: bool,
    suffix: Option<String>,
    list: Option<String>,
    action: Option<&'static str>,
}

pub fn execute(args: DnsArgs) -> Result<Outcome> {
    match args.what {
        What::Block {
            pin_root,
            domain,
            action,
        } => {
            let maps = open(&pin_root.pin_root)?;
            let domain = maps.block(&domain, action)?;
            println!("blocked {domain} and its subdomains ({action})");
            Ok(Outcome::Ok)
        }
        What::Unblock { pin_root, domain } => {
            let maps = open(&pin_root.pin_root)?;
            if maps.unblock(&domain)? {
                println!("unblocked {}", domain.trim_end_matches('.').to_lowercase());
                Ok(Outcome::Ok)
            } else {
                eprintln!("{domain}: no runtime block");
                Ok(Outcome::Negative)
            }
        }
        What::List { pin_root, json } => {
            let maps = open(&pin_root.pin_root)?;
            let entries = maps.entries()?.len();
            let runtime = maps.runtime()?;
            let status = read_dns_status(&pin_root.pin_root);
            let lists = status.map(|s: DnsStatusFile| s.lists).unwrap_or_default();
            if json {
                let out = ListJson {
                    entries,
                    runtime: runtime
                        .iter()
                        .map(|(d, b)| RuntimeJson {
                            domain: d.clone(),
                            action: action_of(b).name(),
                        })
                        .collect(),
                    lists,
                };
                println!("{}", serde_json::to_string_pretty(&out)?);
                return Ok(Outcome::Ok);
            }
            println!("{entries} domains in the kernel");
            for l in &lists {
                let err = l
                    .last_error
                    .as_ref()
                    .map(|e| format!(", last error: {e}"))
                    .unwrap_or_default();
                println!("  {:<16} {:>8} domains  {}{err}", l.id, l.domains, l.source);
            }
            if !runtime.is_empty() {
                println!("runtime blocks:");
            }
            for (d, b) in &runtime {
                println!("  {d} ({})", action_of(b));
            }
            Ok(Outcome::Ok)
        }
        What::Check {
            pin_root,
            name,
            json,
        } => {
            let maps = open(&pin_root.pin_root)?;
            let found = maps.check(&name)?;
            let status = read_dns_status(&pin_root.pin_root);
            let name = name.trim_end_matches('.').to_ascii_lowercase();
            if json {
                let out = CheckJson {
                    name: name.clone(),
                    blocked: found.is_some(),
                    suffix: found.as_ref().map(|m| m.suffix.clone()),
                    list: found
                        .as_ref()
                        .map(|m| list_name(status.as_ref(), m.entry.list)),
                    action: found.as_ref().map(|m| action_of(&m.entry).name()),
                };
                println!("{}", serde_json::to_string_pretty(&out)?);
            } else {
                match &found {
                    Some(m) => println!(
                        "{name}: blocked ({}) by {} in list {}{}",
                        action_of(&m.entry),
                        m.suffix,
                        list_name(status.as_ref(), m.entry.list),
                        if m.entry.list == LIST_RUNTIME {
                            " (dns block)"
                        } else {
                            ""
                        }
                    ),
                    None => println!("{name}: not blocked"),
                }
            }
            Ok(if found.is_some() {
                Outcome::Ok
            } else {
                Outcome::Negative
            })
        }
    }
}
