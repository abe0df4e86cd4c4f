//! xdp_firewall with xdp_ratelimit chained after it, on packets that pass: ns/packet with 1,
//! 10k and 1M tracked sources, per-source and per-policy keys, new sources (bucket insert, and
//! LRU eviction once the map is full), each against the floor measured in the same run.
//!
//! Two ways of timing, each figure against xdp_floor timed the same way:
//! - `repeat`: BPF_PROG_TEST_RUN with --repeat, best of ROUNDS alternated with the floor, as
//!   in `bench firewall`. Keys `hot`: one packet, its bucket stays in the cache. Keys `spread`
//!   and `new`: the harness xdp_chain_spread rewrites the addresses from bench_addrs on every
//!   run, then runs xdp_firewall's path with the chain after it (xdp_floor_spread, the same
//!   rewrite then XDP_PASS, is the floor): a stream of packets over many sources.
//! - `per-call`: one BPF_PROG_TEST_RUN per packet with repeat 1, each followed by the floor on
//!   the same packet, over a list of sources in a new random order on every pass; the best
//!   pass of PASSES. Repeat 1 is what makes a million calls affordable: the kernel swaps the
//!   XDP dispatcher (milliseconds) only for repeat > 1, so a call costs microseconds, and it
//!   still times the run alone. Every run starts after a system call, with what that leaves
//!   in the caches and branch predictors: `per-call` figures, floor included, sit above
//!   `repeat` ones, and a cache miss costs more than in a stream of packets. Compare them with
//!   each other (per-call hot against per-call spread), not with `repeat` rows: they are the
//!   pessimistic bound of packets that arrive one at a time.
//!
//! Buckets are filled the way traffic fills them: the program inserts a source's bucket on
//! its first packet. xdp_ratelimit's counters confirm that every packet timed went through a
//! bucket and passed in rate.

use std::net::Ipv4Addr;
use std::path::Path;
use std::time::Instant;

use anyhow::{bail, ensure, Context, Result};
use libbpf_rs::skel::{OpenSkel, SkelBuilder};
use libbpf_rs::{MapCore, MapHandle, ProgramInput, ProgramMut};
use serde::Serialize;

use super::{
    fill_bench_addrs, firewall, time_against_floor, time_once, udp_frame, write_json, Rng, ROUNDS,
};
use crate::abi::{rl_limits, rl_stat, xdp_stage};
use crate::config;
use crate::loader::{Dataplane, LoadOptions};
use crate::maps::ratelimit::RateLimitMaps;
use crate::maps::Generations;
use crate::ruleset;
use crate::skel::xdp_floor::XdpFloorSkelBuilder;

const XDP_PASS: u32 = 2;
const DPORT: u16 = 9;
/// Per-call passes per figure (the best is kept, as with ROUNDS).
const PASSES: usize = 3;
/// Calls per pass when every call has the same packet.
const HOT_CALLS: usize = 10_000;
/// Per-call samples above this many times the pass's median are left out of its mean: an
/// interrupt or a VM exit inside the timed run, microseconds that belong to neither program.
const OUTLIER_FACTOR: u32 = 4;
const SOURCES_10K: usize = 10_000;
const SOURCES_1M: usize = 1_000_000;
/// New sources timed once the bucket map is full.
const OVERFLOW_TIMED: usize = 50_000;
/// High enough that no packet of the benchmark runs out of tokens.
const ALL_POLICY: &str = "{ id: all, rate: 100000000, burst: 100000000";

#[derive(Debug, Serialize)]
struct Row {
    scenario: String,
    /// buckets in rl_buckets while timed (keys `new`: when done)
    tracked: usize,
    /// hot: one source; spread: every source of the tracked set, in random order; new: a
    /// source without a bucket on every packet
    keys: &'static str,
    method: &'static str,
    ns_per_packet: f64,
    /// the floor program timed in alternation with this figure, the same way
    floor_ns: f64,
    ratio_to_floor: f64,
    over_floor_ns: f64,
    /// per-call: samples of the best pass, and those left out as interrupted (both programs)
    #[serde(skip_serializing_if = "Option::is_none")]
    samples: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    outliers: Option<usize>,
}

#[derive(Debug, Serialize)]
struct Lru {
    max_entries: u32,
    /// buckets after one packet from each of 1M sources (all of them, or the LRU evicted)
    after_1m_sources: Option<usize>,
    /// buckets after more new sources than max_entries, and the timed ones, went through
    after_overflow: Option<usize>,
}

#[derive(Debug, Serialize)]
struct Report {
    repeat: u32,
    passes: usize,
    rows: Vec<Row>,
    lru: Lru,
}

/// Sources from 100.64.0.0/10: `i` is the i-th.
fn source(i: usize) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(Ipv4Addr::new(100, 64, 0, 0)) + i as u32)
}

fn sources(range: std::ops::Range<usize>) -> Vec<Ipv4Addr> {
    range.map(source).collect()
}

fn shuffle<T>(items: &mut [T], rng: &mut Rng) {
    for i in (1..items.len()).rev() {
        items.swap(i, (rng.next_u64() % (i as u64 + 1)) as usize);
    }
}

/// One run of `prog` on `frame`: (the kernel's duration in ns, the XDP action).
fn call(prog: &ProgramMut, frame: &[u8]) -> Result<(u32, u32)> {
    let out = prog
        .test_run(ProgramInput {
            data_in: Some(frame),
            repeat: 1,
            ..Default::default()
        })
        .with_context(|| format!("BPF_PROG_TEST_RUN of {}", prog.name().to_string_lossy()))?;
    Ok((
        u32::try_from(out.duration.as_nanos()).unwrap_or(u32::MAX),
        out.return_value,
    ))
}

/// The mean of `samples` without those above OUTLIER_FACTOR times their median, and how
/// many those were.
fn robust_mean(samples: &mut [u32]) -> (f64, usize) {
    let mid = samples.len() / 2;
    let limit = samples
        .select_nth_unstable(mid)
        .1
        .saturating_mul(OUTLIER_FACTOR);
    let (sum, kept) = samples
        .iter()
        .filter(|&&s| s <= limit)
        .fold((0u64, 0usize), |(sum, n), &s| (sum + u64::from(s), n + 1));
    (sum as f64 / kept.max(1) as f64, samples.len() - kept)
}

/// Keeps the calling thread on the CPU it runs on until dropped. A bucket's budget on a CPU
/// is that CPU's share of the key's recent packets: a benchmark moving between CPUs would
/// start over with a sliver of the burst and see drops instead of passes.
struct Pinned(libc::cpu_set_t);

impl Pinned {
    fn here() -> Result<Pinned> {
        let size = std::mem::size_of::<libc::cpu_set_t>();
        // SAFETY: a zeroed cpu_set_t is a valid empty set; the calls only write into sets of
        // the size given, for this thread (pid 0).
        unsafe {
            let mut old: libc::cpu_set_t = std::mem::zeroed();
            if libc::sched_getaffinity(0, size, &mut old) != 0 {
                return Err(std::io::Error::last_os_error()).context("sched_getaffinity");
            }
            let cpu = libc::sched_getcpu();
            ensure!(
                cpu >= 0,
                "sched_getcpu: {}",
                std::io::Error::last_os_error()
            );
            let mut one: libc::cpu_set_t = std::mem::zeroed();
            libc::CPU_SET(cpu as usize, &mut one);
            if libc::sched_setaffinity(0, size, &one) != 0 {
                return Err(std::io::Error::last_os_error()).context("sched_setaffinity");
            }
            Ok(Pinned(old))
        }
    }
}

impl Drop for Pinned {
    fn drop(&mut self) {
        // SAFETY: restores the set sched_getaffinity filled, for this thread.
        unsafe {
            libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &self.0);
        }
    }
}

/// What the rate limiter must have counted since the last check.
#[derive(Clone, Copy, PartialEq)]
enum Stage {
    /// not chained: it saw nothing
    Off,
    /// every packet found its policy and passed in rate
    InRate,
}

/// xdp_chain_spread and xdp_floor_spread, and the address tables they cycle through.
struct Harness<'a> {
    chain: &'a ProgramMut<'static>,
    floor: &'a ProgramMut<'static>,
    addrs: [MapHandle; 2],
}

struct Bench<'a> {
    repeat: u32,
    fw: &'a ProgramMut<'static>,
    floor: &'a ProgramMut<'static>,
    harness: Harness<'a>,
    rl: RateLimitMaps,
    rng: Rng,
    rows: Vec<Row>,
    /// xdp_firewall runs since the last check, and the rate limiter's counters then
    runs: u64,
    counted: Vec<u64>,
}

impl Bench<'_> {
    /// `per_call`: (samples, outliers) of a per-call figure.
    fn row(
        &mut self,
        scenario: &str,
        tracked: usize,
        keys: &'static str,
        method: &'static str,
        (ns, floor_ns): (f64, f64),
        per_call: Option<(usize, usize)>,
    ) {
        println!(
            "{scenario:<50} {tracked:>9} {keys:<6} {method:<8} {ns:>8.1} {floor_ns:>7.1} {:>6.2}x {:>8.1}",
            ns / floor_ns,
            ns - floor_ns
        );
        self.rows.push(Row {
            scenario: scenario.to_string(),
            tracked,
            keys,
            method,
            ns_per_packet: ns,
            floor_ns,
            ratio_to_floor: ns / floor_ns,
            over_floor_ns: ns - floor_ns,
            samples: per_call.map(|p| p.0),
            outliers: per_call.map(|p| p.1),
        });
    }

    fn count(&mut self, prog: &ProgramMut, runs: u64) {
        if std::ptr::eq(prog, self.fw) || std::ptr::eq(prog, self.harness.chain) {
            self.runs += runs;
        }
    }

    /// One packet, --repeat runs per call, best of ROUNDS alternated with the floor.
    fn hot_repeat(&mut self, scenario: &str, tracked: usize, prog: &ProgramMut) -> Result<()> {
        let frame = udp_frame(source(0), DPORT);
        let (ns, floor_ns) = time_against_floor(prog, self.floor, &frame, self.repeat)?;
        self.count(prog, ROUNDS as u64 * u64::from(self.repeat));
        self.row(scenario, tracked, "hot", "repeat", (ns, floor_ns), None);
        Ok(())
    }

    /// Makes the spread harnesses cycle through `srcs`.
    fn spread_over(&self, srcs: &[Ipv4Addr]) -> Result<()> {
        for map in &self.harness.addrs {
            fill_bench_addrs(map, srcs)?;
        }
        Ok(())
    }

    /// The spread harness: the next address of its table on every run, --repeat runs per
    /// call, best of ROUNDS alternated with the floor's harness.
    fn spread(&mut self, scenario: &str, tracked: usize, keys: &'static str) -> Result<()> {
        let frame = udp_frame(source(0), DPORT);
        let (chain, floor) = (self.harness.chain, self.harness.floor);
        let (ns, floor_ns) = time_against_floor(chain, floor, &frame, self.repeat)?;
        self.count(chain, ROUNDS as u64 * u64::from(self.repeat));
        self.row(scenario, tracked, keys, "repeat", (ns, floor_ns), None);
        Ok(())
    }

    /// `runs` untimed runs of the spread harness (the next `runs` addresses of its table).
    fn spread_untimed(&mut self, runs: u32) -> Result<()> {
        time_once(self.harness.chain, &udp_frame(source(0), DPORT), runs)?;
        self.count(self.harness.chain, u64::from(runs));
        Ok(())
    }

    /// One call per packet of `srcs`, each followed by the floor on the same packet, in a new
    /// random order on each of `passes`; the best pass of each.
    fn per_call(
        &mut self,
        scenario: &str,
        tracked: usize,
        keys: &'static str,
        prog: &ProgramMut,
        srcs: &[Ipv4Addr],
        passes: usize,
    ) -> Result<()> {
        ensure!(!srcs.is_empty(), "{scenario}: no packets to time");
        let mut order = srcs.to_vec();
        let (mut best, mut best_floor) = ((f64::MAX, 0), f64::MAX);
        let mut t_prog = Vec::with_capacity(srcs.len());
        let mut t_floor = Vec::with_capacity(srcs.len());
        for _ in 0..passes {
            shuffle(&mut order, &mut self.rng);
            t_prog.clear();
            t_floor.clear();
            for &src in &order {
                let frame = udp_frame(src, DPORT);
                let (ns, action) = call(prog, &frame)?;
                ensure!(
                    action == XDP_PASS,
                    "{scenario}: {src} got XDP action {action}"
                );
                t_prog.push(ns);
                t_floor.push(call(self.floor, &frame)?.0);
            }
            self.count(prog, order.len() as u64);
            let (ns, cut) = robust_mean(&mut t_prog);
            let (floor_ns, cut_floor) = robust_mean(&mut t_floor);
            if ns < best.0 {
                best = (ns, cut + cut_floor);
            }
            best_floor = best_floor.min(floor_ns);
        }
        self.row(
            scenario,
            tracked,
            keys,
            "per-call",
            (best.0, best_floor),
            Some((2 * srcs.len(), best.1)),
        );
        Ok(())
    }

    /// One untimed run of xdp_firewall per source: gives each its bucket.
    fn touch(&mut self, srcs: &[Ipv4Addr]) -> Result<()> {
        for &src in srcs {
            let (_, action) = call(self.fw, &udp_frame(src, DPORT))?;
            ensure!(action == XDP_PASS, "{src} got XDP action {action}");
        }
        self.runs += srcs.len() as u64;
        Ok(())
    }

    /// Fails unless the rate limiter saw exactly the xdp_firewall runs since the last check
    /// (`InRate`: each with a policy, passed in rate), or nothing (`Off`).
    fn check(&mut self, stage: Stage) -> Result<()> {
        let now = self.rl.stats()?;
        let delta = |s: rl_stat| now[s.0 as usize] - self.counted.get(s.0 as usize).unwrap_or(&0);
        let (seen, in_rate) = (
            delta(rl_stat::RL_STAT_SEEN),
            delta(rl_stat::RL_STAT_PASS_IN_RATE),
        );
        let expect = if stage == Stage::InRate { self.runs } else { 0 };
        if seen != expect || in_rate != expect {
            bail!(
                "xdp_ratelimit saw {seen} packets and passed {in_rate} in rate, expected {expect} \
                 of each: the benchmark did not measure what it reports"
            );
        }
        self.counted = now;
        self.runs = 0;
        Ok(())
    }

    fn apply(&mut self, dp: &Dataplane, yaml: &str) -> Result<()> {
        let cfg =
            config::parse_str(yaml, Path::new("<bench>")).map_err(|e| anyhow::anyhow!("{e}"))?;
        let rs = ruleset::ratelimit::compile(&cfg.ratelimit)?.with_guards(&cfg.ddos)?;
        self.rl.apply(&rs)?;
        dp.set_stage(xdp_stage::XDP_STAGE_RATELIMIT, rs.enabled())
    }
}

pub fn run(repeat: u32, max_sources: usize, json: Option<&Path>) -> Result<()> {
    let started = Instant::now();
    let _pinned = Pinned::here()?;
    let table = if max_sources >= SOURCES_1M {
        SOURCES_1M
    } else {
        SOURCES_10K
    };
    let storage = Box::leak(Box::new(std::mem::MaybeUninit::uninit()));
    let mut open_floor = XdpFloorSkelBuilder::default().open(storage)?;
    open_floor.maps.bench_addrs.set_max_entries(table as u32)?;
    let floor_skel = open_floor.load().context("loading xdp_floor")?;
    let dp = Dataplane::load(&LoadOptions {
        pin_root: None,
        bench_addrs: Some(table as u32),
        ct_table_size: None,
    })?;
    dp.firewall_maps()?
        .apply(&ruleset::compile(&firewall(vec![], &[]))?)?;
    let buckets = MapHandle::try_from(&dp.ratelimit.maps.rl_buckets)?;
    let mut b = Bench {
        repeat,
        fw: &dp.firewall.progs.xdp_firewall,
        floor: &floor_skel.progs.xdp_floor,
        harness: Harness {
            chain: &dp.firewall.progs.xdp_chain_spread,
            floor: &floor_skel.progs.xdp_floor_spread,
            addrs: [
                MapHandle::try_from(&dp.firewall.maps.bench_addrs)?,
                MapHandle::try_from(&floor_skel.maps.bench_addrs)?,
            ],
        },
        rl: dp.ratelimit_maps()?,
        rng: Rng(0x5eed),
        rows: Vec::new(),
        runs: 0,
        counted: Vec::new(),
    };
    b.check(Stage::Off)?;
    let (fw, floor) = (b.fw, b.floor);
    let hot = vec![source(0); HOT_CALLS];
    let set_10k = sources(0..SOURCES_10K);
    b.spread_over(&set_10k)?;
    let mut lru = Lru {
        max_entries: rl_limits::RL_MAX_BUCKETS.0,
        after_1m_sources: None,
        after_overflow: None,
    };

    println!(
        "{:<50} {:>9} {:<6} {:<8} {:>8} {:>7} {:>7} {:>8}",
        "scenario (UDP packets that pass)",
        "tracked",
        "keys",
        "method",
        "ns/pkt",
        "floor",
        "ratio",
        "+ns"
    );
    let name = "floor (xdp_floor against itself)";
    b.hot_repeat(name, 0, floor)?;
    b.per_call(name, 0, "hot", floor, &hot, PASSES)?;

    let name = "firewall alone (no rules, no policy)";
    b.hot_repeat(name, 0, fw)?;
    b.per_call(name, 0, "hot", fw, &hot, PASSES)?;
    b.per_call(name, 0, "spread", fw, &set_10k, PASSES)?;
    b.spread(name, 0, "spread")?;
    b.check(Stage::Off)?;

    b.apply(
        &dp,
        &format!("ratelimit:\n  policies:\n    - {ALL_POLICY}, key: policy }}\n"),
    )?;
    let name = "firewall + ratelimit, key policy";
    b.hot_repeat(name, 1, fw)?;
    b.per_call(name, 1, "hot", fw, &hot, PASSES)?;
    b.per_call(name, 1, "spread", fw, &set_10k, PASSES)?;
    b.spread(name, 1, "spread")?;
    b.check(Stage::InRate)?;
    let keys: Vec<Vec<u8>> = buckets.keys().collect();
    ensure!(
        keys.len() == 1,
        "a policy-keyed policy left {} buckets, expected one",
        keys.len()
    );
    buckets.delete(&keys[0])?;

    b.apply(
        &dp,
        &format!("ratelimit:\n  policies:\n    - {ALL_POLICY} }}\n"),
    )?;
    let name = "firewall + ratelimit, key source";
    b.hot_repeat(name, 1, fw)?;
    b.per_call(name, 1, "hot", fw, &hot, PASSES)?;
    b.per_call(
        "firewall + ratelimit, new source (insert)",
        SOURCES_10K,
        "new",
        fw,
        &set_10k[1..],
        1,
    )?;
    b.check(Stage::InRate)?;
    ensure!(
        b.rl.tracked_keys() == SOURCES_10K,
        "expected {SOURCES_10K} buckets"
    );
    b.hot_repeat(name, SOURCES_10K, fw)?;
    b.per_call(name, SOURCES_10K, "spread", fw, &set_10k, PASSES)?;
    b.spread(name, SOURCES_10K, "spread")?;
    b.check(Stage::InRate)?;

    if max_sources >= SOURCES_1M {
        let set_1m = sources(0..SOURCES_1M);
        let t = Instant::now();
        b.spread_over(&set_1m)?;
        // the first 10k have a bucket already
        b.spread(
            "firewall + ratelimit, new source (insert, 99%)",
            SOURCES_1M,
            "new",
        )?;
        // one more cycle through the table whatever --repeat was
        b.spread_untimed(SOURCES_1M as u32)?;
        b.check(Stage::InRate)?;
        let n = b.rl.tracked_keys();
        lru.after_1m_sources = Some(n);
        println!(
            "  ({} more sources in {:.1} s: {n} buckets of {}{})",
            SOURCES_1M - SOURCES_10K,
            t.elapsed().as_secs_f64(),
            lru.max_entries,
            if n == SOURCES_1M {
                ""
            } else {
                ", the LRU evicted some"
            }
        );
        b.hot_repeat(name, n, fw)?;
        b.per_call(name, n, "spread", fw, &set_1m, PASSES)?;
        b.spread(name, n, "spread")?;
        b.check(Stage::InRate)?;

        // past max_entries, every new source takes the least recently used bucket
        let max = lru.max_entries as usize;
        b.touch(&sources(SOURCES_1M..max + 4096))?;
        let timed = sources(max + 4096..max + 4096 + OVERFLOW_TIMED);
        b.per_call(
            "firewall + ratelimit, new source, map full (LRU)",
            max,
            "new",
            fw,
            &timed,
            1,
        )?;
        let fresh = max + 4096 + OVERFLOW_TIMED;
        b.spread_over(&sources(fresh..fresh + SOURCES_1M))?;
        b.spread(
            "firewall + ratelimit, new source, map full (LRU)",
            max,
            "new",
        )?;
        b.check(Stage::InRate)?;
        let n = b.rl.tracked_keys();
        lru.after_overflow = Some(n);
        println!(
            "  ({} sources through a map of {max}: {n} buckets)",
            fresh + (ROUNDS * repeat as usize).min(SOURCES_1M),
        );
    }
    println!(
        "  (repeat: best of {ROUNDS} calls of {repeat} runs; per-call: one run per call, best of \
         {PASSES} passes; ratio and +ns against the floor timed the same way; {:.0} s)",
        started.elapsed().as_secs_f64()
    );
    let report = Report {
        repeat,
        passes: PASSES,
        rows: b.rows,
        lru,
    };
    write_json(json, &report)
}
