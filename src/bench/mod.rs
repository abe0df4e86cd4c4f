//! Benchmarks through BPF_PROG_TEST_RUN and the userspace paths around the kernel: every
//! per-packet figure comes with the floor program measured in the same run.

pub mod all;
pub mod conntrack;
pub mod dns;
pub mod events;
pub mod firewall;
pub mod ids;
pub mod lb;
pub mod memory;
pub mod pipeline;
pub mod ratelimit;
pub mod reload;
pub mod scrub;
pub mod tc;
pub mod threatintel;

use std::collections::{BTreeSet, HashSet};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use ipnet::{IpNet, Ipv4Net};
use libbpf_rs::{ProgramInput, ProgramMut};
use serde::Serialize;

use crate::config::{
    Action, AddrMatch, Alias, FirewallConfig, FirewallMode, Location, PortRange, Proto, Rule,
};

#[derive(Debug, Serialize)]
pub struct Target {
    pub what: String,
    pub measured: f64,
    pub limit: f64,
    pub met: bool,
}

impl Target {
    pub fn at_most(what: impl Into<String>, measured: f64, limit: f64) -> Target {
        Target {
            what: what.into(),
            measured,
            limit,
            met: measured <= limit,
        }
    }
}

/// One figure of a benchmark report.
#[derive(Debug, Serialize)]
pub struct Row {
    pub scenario: String,
    /// hot: one packet; spread: addresses rewritten on every run
    pub keys: &'static str,
    pub ns_per_packet: f64,
    /// the floor program timed in alternation with this figure
    pub floor_ns: f64,
    pub ratio_to_floor: f64,
}

impl Row {
    pub fn new(scenario: String, keys: &'static str, ns: f64, floor_ns: f64) -> Row {
        Row {
            scenario,
            keys,
            ns_per_packet: ns,
            floor_ns,
            ratio_to_floor: ns / floor_ns,
        }
    }
}

pub fn print_targets(targets: &[Target]) {
    println!();
    for t in targets {
        println!(
            "target {}: {:.2} (limit {:.1}) {}",
            t.what,
            t.measured,
            t.limit,
            if t.met { "met" } else { "MISSED" }
        );
    }
}

pub fn write_json(path: Option<&Path>, report: &impl Serialize) -> Result<()> {
    if let Some(path) = path {
        std::fs::write(path, serde_json::to_vec_pretty(report)?)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

/// A minimum-size UDP frame (60 bytes before the FCS) from `src` to 192.0.2.1.
pub fn udp_frame(src: Ipv4Addr, dport: u16) -> Vec<u8> {
    crate::packet::PacketBuilder::new()
        .ipv4(src, Ipv4Addr::new(192, 0, 2, 1))
        .udp(40000, dport)
        .payload(&[0u8; 18])
        .build()
}

/// The kernel's average duration per run of `repeat` runs of `prog` on `frame`, in ns.
pub fn time_once(prog: &ProgramMut, frame: &[u8], repeat: u32) -> Result<f64> {
    let out = prog
        .test_run(ProgramInput {
            data_in: Some(frame),
            repeat,
            ..Default::default()
        })
        .with_context(|| format!("BPF_PROG_TEST_RUN of {}", prog.name().to_string_lossy()))?;
    Ok(out.duration.as_nanos() as f64)
}

/// Writes `srcs` (to 192.0.2.1), cycled, into every slot of a spread harness's bench_addrs.
pub fn fill_bench_addrs(map: &libbpf_rs::MapHandle, srcs: &[Ipv4Addr]) -> Result<()> {
    use libbpf_rs::{MapCore, MapFlags};
    const CHUNK: usize = 65536;
    let slots = map.max_entries() as usize;
    let (mut keys, mut values) = (Vec::new(), Vec::new());
    for (i, a) in srcs.iter().cycle().take(slots).enumerate() {
        let mut v = crate::abi::bench_addr::default();
        v.src[..4].copy_from_slice(&a.octets());
        v.dst[..4].copy_from_slice(&[192, 0, 2, 1]);
        keys.extend_from_slice(&(i as u32).to_ne_bytes());
        values.extend_from_slice(crate::abi::bytes_of(&v));
        if keys.len() == 4 * CHUNK || i + 1 == slots {
            let n = (keys.len() / 4) as u32;
            map.update_batch(&keys, &values, n, MapFlags::ANY, MapFlags::ANY)
                .context("writing bench_addrs")?;
            keys.clear();
            values.clear();
        }
    }
    Ok(())
}

/// Rounds of (stage, floor) pairs per figure; the minimum of each is kept, since interference
/// from the rest of the machine only ever adds time.
pub const ROUNDS: usize = 5;

/// Times a program and its floor in alternation, so that both see the same machine.
pub fn time_against_floor(
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

/// splitmix64: deterministic synthetic rule sets without a dependency.
pub struct Rng(pub u64);

impl Rng {
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

pub fn here() -> Location {
    Location {
        file: PathBuf::from("<bench>"),
        line: 0,
        col: 0,
    }
}

pub fn rule(id: String, action: Action) -> Rule {
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
        state: None,
    }
}

pub fn general_rule_net(i: usize) -> Ipv4Net {
    Ipv4Net::new(Ipv4Addr::new(10, (i / 256) as u8, (i % 256) as u8, 0), 24).expect("valid /24")
}

/// `n` rules that each pass one UDP port from one /24: a packet outside 10.0.0.0/8 or to
/// another port matches none of them.
pub fn general_rules(n: usize) -> Vec<Rule> {
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
pub fn random_cidrs(n: usize, hosts_pct: u64, rng: &mut Rng) -> Vec<Ipv4Net> {
    let mut seen = HashSet::with_capacity(n);
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        let r = rng.next_u64();
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

pub fn covered(nets: &[Ipv4Net]) -> impl Fn(Ipv4Addr) -> bool {
    let lengths: BTreeSet<u8> = nets.iter().map(|n| n.prefix_len()).collect();
    let set: HashSet<Ipv4Net> = nets.iter().copied().collect();
    move |a| {
        lengths
            .iter()
            .any(|&l| set.contains(&Ipv4Net::new(a, l).expect("len <= 32").trunc()))
    }
}

pub fn firewall(rules: Vec<Rule>, cidrs: &[Ipv4Net]) -> FirewallConfig {
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
