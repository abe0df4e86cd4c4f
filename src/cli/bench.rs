use std::collections::{BTreeSet, HashSet};
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result};
use ipnet::{IpNet, Ipv4Net};
use libbpf_rs::skel::{OpenSkel, SkelBuilder};
use libbpf_rs::{MapCore, MapFlags, MapHandle, ProgramInput, ProgramMut};
use serde::Serialize;

use super::Outcome;
use crate::abi::{bench_addr, bytes_of};
use crate::config::{
    Action, AddrMatch, Alias, FirewallConfig, FirewallMode, Location, PortRange, Proto, Rule,
};
use crate::loader::{Dataplane, LoadOptions};
use crate::packet::PacketBuilder;
use crate::ruleset;
use crate::skel::xdp_floor::XdpFloorSkelBuilder;

/// Measure the per-packet cost of the programs with BPF_PROG_TEST_RUN and print each figure
/// next to its ratio to the floor (a program that only returns XDP_PASS) measured in the
/// same run.
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
    /// xdp_firewall: general-rule scaling and CIDR-only scaling, hot key and spread keys.
    Firewall {
        /// Largest CIDR-only set to measure (1k, 100k and 1M by default).
        #[arg(long, default_value_t = 1_000_000)]
        max_cidrs: usize,
    },
}

#[derive(Debug, Serialize)]
struct Row {
    scenario: String,
    keys: &'static str,
    ns_per_packet: f64,
    /// the floor program timed in alternation with this figure
    floor_ns: f64,
    ratio_to_floor: f64,
}

#[derive(Debug, Serialize)]
struct Target {
    what: String,
    measured: f64,
    limit: f64,
    met: bool,
}

#[derive(Debug, Serialize)]
struct Report {
    repeat: u32,
    rows: Vec<Row>,
    targets: Vec<Target>,
}

/// splitmix64: deterministic synthetic rule sets without a dependency.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

fn here() -> Location {
    Location {
        file: PathBuf::from("<bench>"),
        line: 0,
        col: 0,
    }
}

fn rule(id: String, action: Action) -> Rule {
    Rule {
        id,
        location: here(),
        action,
        log: false,
        priority: 100,
        src: None,
        dst: None,
        proto: None,
        src_port: None,
        dst_port: None,
        vlan: None,
        tcp_flags: None,
        icmp_type: None,
        icmp_code: None,
    }
}

fn general_rule_net(i: usize) -> Ipv4Net {
    Ipv4Net::new(Ipv4Addr::new(10, (i / 256) as u8, (i % 256) as u8, 0), 24).expect("valid /24")
}

/// `n` rules that each pass one UDP port from one /24: a packet outside 10.0.0.0/8 or to
/// another port matches none of them.
fn general_rules(n: usize) -> Vec<Rule> {
    (0..n)
        .map(|i| {
            let mut r = rule(format!("g{i}"), Action::Pass);
            r.proto = Some(Proto::Udp);
            r.src = Some(AddrMatch {
                nets: vec![IpNet::V4(general_rule_net(i))],
                aliases: vec![],
            });
            let port = 1024 + i as u16;
            r.dst_port = Some(PortRange { lo: port, hi: port });
            r
        })
        .collect()
}

/// `n` distinct random IPv4 prefixes outside 10.0.0.0/8: `hosts_pct` percent host routes,
/// the rest /16../28.
fn random_cidrs(n: usize, hosts_pct: u64, rng: &mut Rng) -> Vec<Ipv4Net> {
    let mut seen = HashSet::with_capacity(n);
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        let r = rng.next();
        let len = if r % 100 < hosts_pct {
            32
        } else {
            16 + (r >> 8) % 13
        } as u8;
        let addr = Ipv4Addr::from((r >> 32) as u32);
        let net = Ipv4Net::new(addr, len).expect("len <= 32").trunc();
        if u32::from(net.network()) >> 24 == 10 {
            continue;
        }
        if seen.insert(net) {
            out.push(net);
        }
    }
    out
}

fn covered(nets: &[Ipv4Net]) -> impl Fn(Ipv4Addr) -> bool {
    let lengths: BTreeSet<u8> = nets.iter().map(|n| n.prefix_len()).collect();
    let set: HashSet<Ipv4Net> = nets.iter().copied().collect();
    move |a| {
        lengths
            .iter()
            .any(|&l| set.contains(&Ipv4Net::new(a, l).expect("len <= 32").trunc()))
    }
}

fn firewall(rules: Vec<Rule>, cidrs: &[Ipv4Net]) -> FirewallConfig {
    let mut fw = FirewallConfig {
        mode: FirewallMode::Enforce,
        default_policy: Action::Pass,
        malformed: Action::Drop,
        allowlist: vec![],
        aliases: Default::default(),
        rules,
    };
    if !cidrs.is_empty() {
        let entries: Vec<IpNet> = cidrs.iter().map(|n| IpNet::V4(*n)).collect();
        fw.aliases.insert(
            "blocklist".into(),
            Alias {
                name: "blocklist".into(),
                entries: entries.clone(),
                location: here(),
            },
        );
        let mut r = rule("blocklist".into(), Action::Drop);
        r.src = Some(AddrMatch {
            nets: entries,
            aliases: vec!["blocklist".into()],
        });
        r.priority = 50;
        fw.rules.push(r);
    }
    fw
}

fn udp_frame(src: Ipv4Addr, dport: u16) -> Vec<u8> {
    PacketBuilder::new()
        .ipv4(src, Ipv4Addr::new(192, 0, 2, 1))
        .udp(40000, dport)
        .payload(&[0u8; 18])
        .build()
}

fn time_once(prog: &ProgramMut, frame: &[u8], repeat: u32) -> Result<f64> {
    let out = prog
        .test_run(ProgramInput {
            data_in: Some(frame),
            repeat,
            ..Default::default()
        })
        .with_context(|| format!("BPF_PROG_TEST_RUN of {}", prog.name().to_string_lossy()))?;
    Ok(out.duration.as_nanos() as f64)
}

/// Rounds of (stage, floor) pairs per figure; the minimum of each is kept, since interference
/// from the rest of the machine only ever adds time.
const ROUNDS: usize = 5;

/// Times a program and its floor in alternation, so that both see the same machine.
fn time_against_floor(
    prog: &ProgramMut,
    floor: &ProgramMut,
    frame: &[u8],
    repeat: u32,
) -> Result<(f64, f64)> {
    let (mut best, mut best_floor) = (f64::MAX, f64::MAX);
    for _ in 0..ROUNDS {
        best = best.min(time_once(prog, frame, repeat)?);
        best_floor = best_floor.min(time_once(floor, frame, repeat)?);
    }
    Ok((best, best_floor))
}

fn fill_bench_addrs(map: &MapHandle, srcs: &[Ipv4Addr]) -> Result<()> {
    for (i, a) in srcs.iter().enumerate() {
        let mut v = bench_addr::default();
        v.src[..4].copy_from_slice(&a.octets());
        v.dst[..4].copy_from_slice(&[192, 0, 2, 1]);
        map.update(&(i as u32).to_ne_bytes(), bytes_of(&v), MapFlags::ANY)?;
    }
    Ok(())
}

const SPREAD_KEYS: u32 = 65536;

pub fn execute(args: BenchArgs) -> Result<Outcome> {
    let BenchWhat::Firewall { max_cidrs } = args.what;
    let repeat = args.repeat;
    let mut rng = Rng(0x5eed);
    let mut rows: Vec<Row> = Vec::new();

    let storage = Box::leak(Box::new(std::mem::MaybeUninit::uninit()));
    let mut open_floor = XdpFloorSkelBuilder::default().open(storage)?;
    open_floor.maps.bench_addrs.set_max_entries(SPREAD_KEYS)?;
    let floor = open_floor.load().context("loading xdp_floor")?;
    let floor_addrs = MapHandle::try_from(&floor.maps.bench_addrs)?;

    let dp = Dataplane::load(&LoadOptions {
        pin_root: None,
        bench_addrs: Some(SPREAD_KEYS),
    })?;
    let maps = dp.firewall_maps()?;
    let fw_addrs = MapHandle::try_from(&dp.firewall.maps.bench_addrs)?;
    let hot_prog = &dp.firewall.progs.xdp_firewall;
    let spread_prog = &dp.firewall.progs.xdp_firewall_spread;

    let miss = udp_frame(Ipv4Addr::new(192, 0, 2, 77), 33333);
    let floor_hot = &floor.progs.xdp_floor;
    let floor_spread = &floor.progs.xdp_floor_spread;
    let measure = |rows: &mut Vec<Row>,
                   scenario: String,
                   keys: &'static str,
                   prog: &ProgramMut,
                   floor: &ProgramMut,
                   frame: &[u8]|
     -> Result<(f64, f64)> {
        let (ns, floor_ns) = time_against_floor(prog, floor, frame, repeat)?;
        println!(
            "{scenario:<62} {keys:<7} {ns:>8.1} ns {:>6.2}x floor ({floor_ns:.1} ns)",
            ns / floor_ns
        );
        rows.push(Row {
            scenario,
            keys,
            ns_per_packet: ns,
            floor_ns,
            ratio_to_floor: ns / floor_ns,
        });
        Ok((ns, floor_ns))
    };

    let mut general_cost = Vec::new();
    for n in [0usize, 1, 100, 1000, 4096] {
        let rs = ruleset::compile(&firewall(general_rules(n), &[]))?;
        maps.apply(&rs)?;
        let (ns, _) = measure(
            &mut rows,
            format!("firewall: {n} general rules, no match"),
            "hot",
            hot_prog,
            floor_hot,
            &miss,
        )?;
        if n > 0 {
            let last = udp_frame(
                (u32::from(general_rule_net(n - 1).network()) + 7).into(),
                1024 + n as u16 - 1,
            );
            let (ns_last, _) = measure(
                &mut rows,
                format!("firewall: {n} general rules, last rule matches"),
                "hot",
                hot_prog,
                floor_hot,
                &last,
            )?;
            general_cost.push((n, ns, ns_last));
        }
    }

    let mut targets = Vec::new();
    if let (Some(one), Some(full)) = (general_cost.first(), general_cost.last()) {
        for (label, a, b) in [("no match", one.1, full.1), ("last rule", one.2, full.2)] {
            targets.push(Target {
                what: format!("4096 general rules vs 1 rule ({label})"),
                measured: b / a,
                limit: 1.5,
                met: b / a <= 1.5,
            });
        }
    }

    let spread_src: Vec<Ipv4Addr> = (0..SPREAD_KEYS)
        .map(|_| Ipv4Addr::from(rng.next() as u32))
        .collect();
    // 25% host routes is the mix of the FireHOL and Spamhaus feeds; large IP blocklists are
    // host routes only
    let sets = [
        (1_000usize, 25u64),
        (100_000, 25),
        (100_000, 100),
        (1_000_000, 25),
        (1_000_000, 100),
    ];
    for (size, hosts_pct) in sets.into_iter().filter(|&(s, _)| s <= max_cidrs) {
        let cidrs = random_cidrs(size, hosts_pct, &mut rng);
        let label = format!("{size} CIDRs ({hosts_pct}% /32) + 4096 general rules, pass");
        let is_covered = covered(&cidrs);
        let spread: Vec<Ipv4Addr> = spread_src
            .iter()
            .copied()
            .filter(|a| !is_covered(*a) && a.octets()[0] != 10)
            .collect();
        let keys: Vec<Ipv4Addr> = spread
            .iter()
            .copied()
            .cycle()
            .take(SPREAD_KEYS as usize)
            .collect();
        fill_bench_addrs(&fw_addrs, &keys)?;
        fill_bench_addrs(&floor_addrs, &keys)?;

        let t = Instant::now();
        let rs = ruleset::compile(&firewall(general_rules(4096), &cidrs))?;
        let compiled = t.elapsed();
        let t = Instant::now();
        maps.apply(&rs)?;
        let applied = t.elapsed();
        println!(
            "  ({size} CIDRs: compiled in {:.2} s, written in {:.2} s; {} keys outside the set)",
            compiled.as_secs_f64(),
            applied.as_secs_f64(),
            spread.len()
        );
        let (hot, hot_floor) = measure(
            &mut rows,
            format!("firewall: {label}"),
            "hot",
            hot_prog,
            floor_hot,
            &miss,
        )?;
        let (spread_ns, spread_floor) = measure(
            &mut rows,
            format!("firewall: {label}"),
            "spread",
            spread_prog,
            floor_spread,
            &miss,
        )?;
        if size == 100_000 {
            targets.push(Target {
                what: format!(
                    "100k CIDRs ({hosts_pct}% /32) + 4096 rules, pass, hot key, vs floor"
                ),
                measured: hot / hot_floor,
                limit: 4.0,
                met: hot / hot_floor <= 4.0,
            });
            // the harness's own address rewrite is in both spread programs; compare the rest
            let spread_stage = spread_ns - spread_floor + hot_floor;
            targets.push(Target {
                what: format!("100k CIDRs ({hosts_pct}% /32) + 4096 rules, spread keys vs hot key"),
                measured: spread_stage / hot,
                limit: 3.0,
                met: spread_stage / hot <= 3.0,
            });
        }
    }

    println!();
    for t in &targets {
        println!(
            "target {}: {:.2} (limit {:.1}) {}",
            t.what,
            t.measured,
            t.limit,
            if t.met { "met" } else { "MISSED" }
        );
    }
    let report = Report {
        repeat,
        rows,
        targets,
    };
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_vec_pretty(&report)?)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(Outcome::Ok)
}
