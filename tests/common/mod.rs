//! Shared by the integration tests: the privilege gate, a private firewall loaded from YAML
//! and driven through BPF_PROG_TEST_RUN, and the netns lab helpers.
#![allow(dead_code)]

pub mod daemon;
pub mod netns;
pub mod refparse;
pub mod traffic;

use ebpfsentinel::maps::Generations;
use std::path::Path;

use ebpfsentinel::config;
use ebpfsentinel::loader::{Dataplane, LoadOptions};
use ebpfsentinel::maps::firewall::FirewallMaps;
use ebpfsentinel::maps::ratelimit::RateLimitMaps;
use ebpfsentinel::ruleset::ratelimit::CompiledRateLimit;
use ebpfsentinel::ruleset::{self, CompiledRuleset};
use libbpf_rs::ProgramInput;

/// Every packet moves exactly one of these fw_stats slots.
#[allow(unused_imports)] // not every test binary counts verdicts
pub use ebpfsentinel::metrics::VERDICT_STATS as VERDICT_SLOTS;

pub const XDP_ABORTED: u32 = 0;
pub const XDP_DROP: u32 = 1;
pub const XDP_PASS: u32 = 2;

const CAP_NET_ADMIN: u32 = 12;
const CAP_SYS_ADMIN: u32 = 21;
const CAP_PERFMON: u32 = 38;
const CAP_BPF: u32 = 39;

fn effective_caps() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("CapEff:"))
                .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        })
        .unwrap_or(0)
}

/// True when this process may load BPF programs and manage interfaces. Without the
/// privileges a test may only be skipped outside CI: under CI=true that is a failure, so a
/// green run never hides tests that did not run.
pub fn privileged(test: &str) -> bool {
    let caps = effective_caps();
    let has = |c: u32| caps & (1 << c) != 0;
    let ok = has(CAP_NET_ADMIN) && (has(CAP_SYS_ADMIN) || (has(CAP_BPF) && has(CAP_PERFMON)));
    if !ok {
        if std::env::var("CI").is_ok_and(|v| v == "true") {
            panic!("{test}: needs root (CAP_BPF, CAP_NET_ADMIN, CAP_PERFMON) and CI=true forbids skipping");
        }
        eprintln!("SKIP {test}: needs root (CAP_BPF, CAP_NET_ADMIN, CAP_PERFMON)");
    }
    ok
}

pub fn feeds_dir() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/data/feeds"))
}

/// xdp_firewall loaded privately (no pins, no attachment) with a ruleset applied.
pub struct Firewall {
    pub dp: Dataplane,
    pub maps: FirewallMaps,
    pub ruleset: CompiledRuleset,
    pub rl_maps: RateLimitMaps,
    pub ratelimit: CompiledRateLimit,
}

pub fn compile_ratelimit(yaml: &str) -> CompiledRateLimit {
    let path = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/inline.yaml"));
    let cfg = config::parse_str(yaml, path).unwrap_or_else(|e| panic!("config:\n{e}"));
    ruleset::ratelimit::compile(&cfg.ratelimit)
        .and_then(|rl| rl.with_guards(&cfg.ddos))
        .expect("compile ratelimit")
}

pub fn compile_yaml(yaml: &str) -> CompiledRuleset {
    let path = Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/inline.yaml"));
    let cfg = config::parse_str(yaml, path).unwrap_or_else(|e| panic!("config:\n{e}"));
    ruleset::compile(&cfg.firewall).expect("compile")
}

impl Firewall {
    pub fn load(yaml: &str) -> Firewall {
        Self::load_with(yaml, &LoadOptions::default())
    }

    /// The firewall and, when the YAML has `ratelimit` policies, the rate limiter chained
    /// after it.
    pub fn load_with(yaml: &str, opts: &LoadOptions) -> Firewall {
        let dp = Dataplane::load(opts).expect("load");
        let mut fw = Firewall {
            maps: dp.firewall_maps().expect("maps"),
            rl_maps: dp.ratelimit_maps().expect("ratelimit maps"),
            dp,
            ruleset: compile_yaml(yaml),
            ratelimit: compile_ratelimit(yaml),
        };
        fw.apply(yaml);
        fw
    }

    pub fn apply(&mut self, yaml: &str) {
        self.ruleset = compile_yaml(yaml);
        self.maps.apply(&self.ruleset).expect("apply");
        self.ratelimit = compile_ratelimit(yaml);
        self.rl_maps
            .apply(&self.ratelimit)
            .expect("apply ratelimit");
        self.dp
            .set_stage(
                ebpfsentinel::abi::xdp_stage::XDP_STAGE_RATELIMIT,
                self.ratelimit.enabled(),
            )
            .expect("chain");
    }

    pub fn run(&self, frame: &[u8]) -> u32 {
        let input = ProgramInput {
            data_in: Some(frame),
            ..Default::default()
        };
        self.dp
            .firewall_program()
            .test_run(input)
            .expect("BPF_PROG_TEST_RUN")
            .return_value
    }

    /// (verdict, output frame) of one frame through the TC entry program of a direction
    /// (ingress: received by this host; egress: sent by it) and the stages it chains.
    pub fn tc(&self, ingress: bool, frame: &[u8]) -> (i32, Vec<u8>) {
        let progs = &self.dp.conntrack.progs;
        let prog = if ingress {
            &progs.tc_ingress
        } else {
            &progs.tc_egress
        };
        let mut out = vec![0u8; frame.len() + 256];
        let res = prog
            .test_run(ProgramInput {
                data_in: Some(frame),
                data_out: Some(&mut out),
                ..Default::default()
            })
            .expect("BPF_PROG_TEST_RUN");
        let (verdict, len) = (res.return_value as i32, res.data.map_or(0, |d| d.len()));
        out.truncate(len);
        (verdict, out)
    }

    pub fn stats(&self) -> Vec<u64> {
        self.maps.stats().expect("stats")
    }

    /// Packets that hit the rule with this id in the active generation.
    pub fn hits(&self, id: &str) -> u64 {
        let rank = self
            .ruleset
            .ranks
            .iter()
            .position(|r| r.id == id)
            .unwrap_or_else(|| panic!("no rule {id}"));
        let gen = self.maps.active_generation().expect("gen");
        self.maps
            .rule_hits(gen, self.ruleset.ranks.len())
            .expect("hits")[rank]
            .0
    }
}
