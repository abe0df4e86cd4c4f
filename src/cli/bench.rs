use std::path::PathBuf;

use anyhow::Result;

use super::Outcome;
use crate::bench;

/// Measure the per-packet cost of the programs with BPF_PROG_TEST_RUN and print each figure
/// next to its ratio to the floor (a program that only returns XDP_PASS) measured in the
/// same run; and the userspace paths around them (reloads, the event consumer).
#[derive(Debug, clap::Args)]
pub struct BenchArgs {
    #[command(subcommand)]
    what: BenchWhat,
    /// Program runs per measurement (each figure is the best of five, alternated with the
    /// floor's).
    #[arg(long, default_value_t = 200_000, global = true)]
    repeat: u32,
    /// Also write the results as JSON here.
    #[arg(long, value_name = "FILE", global = true)]
    json: Option<PathBuf>,
}

#[derive(Debug, clap::Subcommand)]
enum BenchWhat {
    /// Every benchmark below in one run, then the maps' memory at the benchmark sizes and a
    /// daemon's resident set: writes bench.json and bench.md (a Markdown report) to --out.
    All {
        /// Where the report and each benchmark's JSON go.
        #[arg(long, value_name = "DIR", default_value = "target/bench")]
        out: PathBuf,
        /// Largest CIDR-only set of the firewall benchmark.
        #[arg(long, default_value_t = 1_000_000)]
        max_cidrs: usize,
        /// Largest set of tracked sources of the rate-limit benchmark.
        #[arg(long, default_value_t = 1_000_000)]
        max_sources: usize,
        /// Where the real feed files are.
        #[arg(long, value_name = "DIR", default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/data/feeds"))]
        feeds: PathBuf,
    },
    /// xdp_firewall: general-rule scaling and CIDR-only scaling, hot key and spread keys.
    Firewall {
        /// Largest CIDR-only set to measure (1k, 100k and 1M by default).
        #[arg(long, default_value_t = 1_000_000)]
        max_cidrs: usize,
    },
    /// The conntrack fast path: an established flow's reply through xdp_firewall against the
    /// same packet evaluated by 4096 rules, and tc_conntrack's cost per packet.
    Conntrack,
    /// tc_threatintel: loading the shipped feeds and 1M synthetic IOCs, and ns per packet
    /// for a clean packet and an IOC hit against the stage with an empty set.
    Threatintel {
        /// Where the real feed files are.
        #[arg(long, value_name = "DIR", default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/data/feeds"))]
        feeds: PathBuf,
    },
    /// tc_scrub through a harness that restores the frame before every run: a packet with
    /// nothing to change and SYNs needing every rewrite, v4 and v6, against scrub off.
    Scrub,
    /// The whole pipeline on a packet every stage passes (XDP stages, then TC ingress),
    /// configured like `ebpfsentinel test` configures its private copy.
    Pipeline {
        /// Where the real feed files are.
        #[arg(long, value_name = "DIR", default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/data/feeds"))]
        feeds: PathBuf,
    },
    /// tc_dns: loading 100k domains (the shipped lists and synthetic ones), and ns per packet
    /// for a packet that is no DNS query, a 6-label query that matches nothing and one that
    /// matches, against the TC entry program alone.
    Dns {
        /// Where the real list files are.
        #[arg(long, value_name = "DIR", default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/data/feeds"))]
        feeds: PathBuf,
    },
    /// tc_ids: 1k signatures over 100 ports; ns per packet for a port without rules, a clean
    /// payload, a long clean payload and a match, against the TC entry program alone.
    Ids,
    /// Reload time (compile, write the inactive generation, flip, retire the old one) for 100k
    /// and 1M CIDR entries.
    Reload,
    /// Events per second the consumer (decode, JSON, write) sustains without loss, driven by
    /// BPF_PROG_TEST_RUN of a logging rule.
    Events,
    /// xdp_ratelimit chained after xdp_firewall, on passing packets: 1, 10k and 1M tracked
    /// sources, per-source and per-policy keys, hot and spread keys.
    Ratelimit {
        /// Largest set of tracked sources to measure (10k and 1M by default).
        #[arg(long, default_value_t = 1_000_000)]
        max_sources: usize,
    },
    /// xdp_lb chained after xdp_firewall: ns per packet for a VIP hit and a miss against the
    /// chain without it, and Maglev's flow movement when one of N backends is removed.
    Lb,
}

pub fn execute(args: BenchArgs) -> Result<Outcome> {
    let json = args.json.as_deref();
    match args.what {
        BenchWhat::All {
            out,
            max_cidrs,
            max_sources,
            feeds,
        } => bench::all::run(
            args.repeat,
            &bench::all::Sizes {
                max_cidrs,
                max_sources,
                feeds,
            },
            &out,
        )?,
        BenchWhat::Firewall { max_cidrs } => bench::firewall::run(args.repeat, max_cidrs, json)?,
        BenchWhat::Conntrack => bench::conntrack::run(args.repeat, json)?,
        BenchWhat::Threatintel { feeds } => bench::threatintel::run(args.repeat, &feeds, json)?,
        BenchWhat::Scrub => bench::scrub::run(args.repeat, json)?,
        BenchWhat::Pipeline { feeds } => bench::pipeline::run(args.repeat, &feeds, json)?,
        BenchWhat::Dns { feeds } => bench::dns::run(args.repeat, &feeds, json)?,
        BenchWhat::Ids => bench::ids::run(args.repeat, json)?,
        BenchWhat::Reload => bench::reload::run(json)?,
        BenchWhat::Events => bench::events::run(json)?,
        BenchWhat::Ratelimit { max_sources } => {
            bench::ratelimit::run(args.repeat, max_sources, json)?
        }
        BenchWhat::Lb => bench::lb::run(args.repeat, json)?,
    }
    Ok(Outcome::Ok)
}
