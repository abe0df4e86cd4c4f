//! The whole pipeline on one packet every stage passes: XDP (firewall with 4096 rules and a
//! 100k-prefix blocklist, rate limiter, DDoS guards, load balancer) and then TC ingress
//! (conntrack, IDS, threat intel with the shipped feeds, DNS blocklist, scrub), configured the
//! way `ebpfsentinel test` configures a private copy, each part and the sum against its floor
//! in the same run.

use std::net::Ipv4Addr;
use std::path::Path;

use anyhow::{bail, Context, Result};
use libbpf_rs::skel::{OpenSkel, SkelBuilder};
use serde::Serialize;

use super::tc::TcHarness;
use super::{firewall, general_rules, random_cidrs, time_against_floor, write_json, Rng, Row};
use crate::packet::PacketBuilder;
use crate::replay::Replay;
use crate::skel::xdp_floor::XdpFloorSkelBuilder;

#[derive(Debug, Serialize)]
struct Report {
    repeat: u32,
    stages: String,
    rows: Vec<Row>,
}

const XDP_PASS: u32 = 2;

fn config(feeds: &Path) -> Result<crate::config::Config> {
    let feeds = feeds.canonicalize().context("the feeds directory")?;
    let yaml = format!(
        r#"
interfaces: [bench0]
ratelimit:
  policies:
    - {{ id: clients, src: 10.0.0.0/8, rate: {rate}, burst: {rate} }}
ddos:
  syn: {{ threshold_pps: 1000 }}
  icmp: {{ rate: 100, burst: 100 }}
  amplification: {{}}
conntrack: {{ enabled: true }}
threatintel:
  feeds:
    - {{ id: firehol, path: {dir}/firehol_level1.netset, format: netset }}
    - {{ id: drop, path: {dir}/spamhaus_drop.netset, format: netset }}
    - {{ id: feodo, path: {dir}/feodo_ipblocklist.csv, format: csv, field: dst_ip }}
scrub: {{ min_ttl: 64, max_mss: 1400, clear_df: true }}
ids:
  rules:
    - {{ id: marker, proto: tcp, dst_port: 80, content: "X-EVIL-MARKER", action: drop }}
dns:
  blocklist:
    domains: [ads.example]
    feeds: [ {{ id: adaway, path: {dir}/adaway_hosts.txt, format: hosts }} ]
loadbalancer:
  services:
    - {{ id: web, vip: 198.18.100.1, port: 80, proto: tcp, backends: [ {{ addr: 10.200.1.2, port: 8080 }} ] }}
"#,
        rate = crate::config::MAX_RATE_PPS,
        dir = feeds.display()
    );
    let mut cfg = crate::config::parse_str(&yaml, Path::new("<bench pipeline>"))
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut rng = Rng(0x919e);
    cfg.firewall = firewall(general_rules(4096), &random_cidrs(100_000, 25, &mut rng));
    Ok(cfg)
}

pub fn run(repeat: u32, feeds: &Path, json: Option<&Path>) -> Result<()> {
    let cfg = config(feeds)?;
    let replay = Replay::new(&cfg)?;
    let dp = replay.dataplane();
    let storage = Box::leak(Box::new(std::mem::MaybeUninit::uninit()));
    let floor = XdpFloorSkelBuilder::default()
        .open(storage)?
        .load()
        .context("loading xdp_floor")?;
    let harness = TcHarness::new(&dp.conntrack.progs.tc_ingress)?;
    // a client behind the router: rate-limited by policy, tracked, not listed anywhere
    let frame = PacketBuilder::new()
        .ipv4(Ipv4Addr::new(10, 255, 1, 2), Ipv4Addr::new(192, 0, 2, 1))
        .udp(40000, 443)
        .payload(&[0u8; 18])
        .build();
    let xdp = &dp.firewall.progs.xdp_firewall;
    let verdict = xdp
        .test_run(libbpf_rs::ProgramInput {
            data_in: Some(&frame),
            ..Default::default()
        })?
        .return_value;
    if verdict != XDP_PASS {
        bail!("the pipeline's XDP part returned {verdict} on the benchmark packet, not XDP_PASS");
    }
    let (xdp_ns, xdp_floor) = time_against_floor(xdp, &floor.progs.xdp_floor, &frame, repeat)?;
    let (tc_ns, tc_floor) = harness.time(&frame, repeat)?;
    let stages = "XDP: firewall (4096 rules + 100k prefixes), ratelimit + DDoS guards, lb (one service, missed); TC ingress: conntrack, ids (no rule on the port), threatintel (shipped feeds), dns (not a query), scrub";
    let rows = vec![
        Row::new(
            "XDP part: firewall, ratelimit, DDoS guards, lb".into(),
            "hot",
            xdp_ns,
            xdp_floor,
        ),
        Row::new(
            "TC ingress part: conntrack, ids, threatintel, dns, scrub".into(),
            "hot",
            tc_ns,
            tc_floor,
        ),
        Row::new(
            "whole pipeline (XDP + TC ingress)".into(),
            "hot",
            xdp_ns + tc_ns,
            xdp_floor + tc_floor,
        ),
    ];
    println!("{stages}");
    for r in &rows {
        println!(
            "{:<48} {:>8.1} ns {:>6.2}x floor ({:.1} ns)",
            r.scenario, r.ns_per_packet, r.ratio_to_floor, r.floor_ns
        );
    }
    write_json(
        json,
        &Report {
            repeat,
            stages: stages.into(),
            rows,
        },
    )
}
