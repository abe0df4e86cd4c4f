use anyhow::{bail, Result};

use super::{Outcome, PinRootArg};
use crate::control;

/// Show and change the running daemon's load-balancer services. Changes apply at once (the
/// service's Maglev table is rebuilt: only the flows of a removed or drained backend move)
/// and hold until the next reload re-reads the config file.
#[derive(Debug, clap::Args)]
pub struct LbArgs {
    #[command(flatten)]
    pin_root: PinRootArg,
    #[command(subcommand)]
    what: What,
}

#[derive(Debug, clap::Subcommand)]
enum What {
    /// The services, their backends (up, down or drained) and counters.
    List {
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Add a backend to a service, or change its weight.
    Add {
        service: String,
        /// ADDR:PORT ([ADDR]:PORT for IPv6).
        backend: String,
        #[arg(long, default_value_t = 1)]
        weight: u32,
    },
    /// Remove a backend from a service.
    Del { service: String, backend: String },
    /// Take a backend out of the service's table but keep it configured (--undo: back in).
    Drain {
        service: String,
        backend: String,
        #[arg(long)]
        undo: bool,
    },
}

pub fn execute(args: LbArgs) -> Result<Outcome> {
    let command = match &args.what {
        What::List { .. } => "lb list".to_string(),
        What::Add {
            service,
            backend,
            weight,
        } => format!("lb add {service} {backend} {weight}"),
        What::Del { service, backend } => format!("lb del {service} {backend}"),
        What::Drain {
            service,
            backend,
            undo,
        } => {
            let verb = if *undo { "undrain" } else { "drain" };
            format!("lb {verb} {service} {backend}")
        }
    };
    if command.contains('\n') {
        bail!("arguments must not contain newlines");
    }
    let answer = control::ask(&args.pin_root.pin_root, &command)?;
    match args.what {
        What::List { json: true } => print!("{answer}"),
        What::List { json: false } => {
            let rows: Vec<serde_json::Value> = serde_json::from_str(answer.trim())?;
            if rows.is_empty() {
                println!("no load-balancer services");
                return Ok(Outcome::Negative);
            }
            for s in rows {
                println!(
                    "{} {}:{}/{} packets {} bytes {} no_backend {}",
                    s["id"].as_str().unwrap_or(""),
                    s["vip"].as_str().unwrap_or(""),
                    s["port"],
                    s["proto"].as_str().unwrap_or(""),
                    s["packets"],
                    s["bytes"],
                    s["no_backend"]
                );
                for b in s["backends"].as_array().into_iter().flatten() {
                    println!(
                        "  {}:{} weight {} {}",
                        b["addr"].as_str().unwrap_or(""),
                        b["port"],
                        b["weight"],
                        b["state"].as_str().unwrap_or("")
                    );
                }
            }
        }
        _ => print!("{answer}"),
    }
    Ok(Outcome::Ok)
}
