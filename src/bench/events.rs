//! The event path end to end: BPF_PROG_TEST_RUN of a logging rule produces events as fast as
//! the kernel can, paced to a target rate; the daemon's consumer (epoll on the ring, decode,
//! JSON, write) must keep up with no loss in the kernel (ring 3/4 full) or in userspace.

use crate::maps::Generations;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use anyhow::Result;
use libbpf_rs::{MapHandle, ProgramInput};
use serde::Serialize;

use super::{print_targets, write_json, Target};
use crate::abi::fw_stat;
use crate::config::{self, Config};
use crate::daemon::{spawn_event_reader, EventSink, Names};
use crate::loader::{Dataplane, LoadOptions};
use crate::packet::{PacketBuilder, TcpFlags};
use crate::ruleset;

#[derive(Debug, Serialize)]
struct Row {
    target_per_s: u64,
    produced: u64,
    written: u64,
    kernel_dropped: u64,
    consumer_dropped: u64,
    achieved_per_s: f64,
    lossless: bool,
}

#[derive(Debug, Serialize)]
struct Report {
    producer_ns_per_event: f64,
    consumer_drain_per_s: f64,
    rows: Vec<Row>,
    max_lossless_per_s: u64,
    targets: Vec<Target>,
}

const BATCH: u32 = 4000;
const PERIOD: Duration = Duration::from_millis(1500);

fn logging_config() -> Result<Config> {
    config::parse_str(
        "firewall:\n  rules:\n    - { id: logged, action: drop, proto: tcp, dst_port: 23, log: true }\n",
        Path::new("<bench>"),
    )
    .map_err(|e| anyhow::anyhow!("{e}"))
}

fn setup() -> Result<(Dataplane, crate::maps::firewall::FirewallMaps, Names)> {
    let dp = Dataplane::load(&LoadOptions::default())?;
    let maps = dp.firewall_maps()?;
    let rs = ruleset::compile(&logging_config()?.firewall)?;
    let gen = maps.apply(&rs)?;
    let mut names = Names::default();
    names.firewall[gen as usize] = rs.ranks.iter().map(|r| r.id.clone()).collect();
    Ok((dp, maps, names))
}

fn start_reader(
    dp: &Dataplane,
    names: Names,
) -> Result<(Arc<EventSink>, Arc<AtomicBool>, std::thread::JoinHandle<()>)> {
    let sink = Arc::new(EventSink::new(Some(PathBuf::from("/dev/null")))?);
    let stop = Arc::new(AtomicBool::new(false));
    let reader = spawn_event_reader(
        MapHandle::try_from(&dp.firewall.maps.events)?,
        sink.clone(),
        Arc::new(RwLock::new(names)),
        None,
        stop.clone(),
    )?;
    Ok((sink, stop, reader))
}

/// Waits until `written` stops moving; its final value.
fn drained(sink: &EventSink) -> u64 {
    let mut last = u64::MAX;
    loop {
        std::thread::sleep(Duration::from_millis(200));
        let now = sink.written.load(Ordering::Relaxed);
        if now == last {
            return now;
        }
        last = now;
    }
}

pub fn run(json: Option<&Path>) -> Result<()> {
    let frame = PacketBuilder::new()
        .ipv4("192.0.2.1".parse()?, "192.0.2.2".parse()?)
        .tcp(1234, 23, TcpFlags::SYN)
        .build();

    // The consumer alone: fill the ring to just under the producers' 3/4 cut-off with nobody
    // reading, then time the daemon's reader draining it.
    let (dp, maps, names) = setup()?;
    let backlog = (crate::abi::es_limits::EVENTS_RING_BYTES.0 as u64 / 4 * 3)
        / (std::mem::size_of::<crate::abi::packet_event>() as u64 + 8)
        - 64;
    // the kernel's own per-run time: a test run also costs milliseconds of setup here
    let produce_ns = dp
        .firewall_program()
        .test_run(ProgramInput {
            data_in: Some(&frame),
            repeat: backlog as u32,
            ..Default::default()
        })?
        .duration
        .as_nanos() as f64;
    let dropped_filling = maps.stats()?[fw_stat::FW_STAT_EVENTS_DROPPED.0 as usize];
    let t = Instant::now();
    let (sink, stop, reader) = start_reader(&dp, names)?;
    while sink.written.load(Ordering::Relaxed) < backlog {
        if t.elapsed() > Duration::from_secs(30) {
            break;
        }
        std::thread::yield_now();
    }
    let consume_per_s = sink.written.load(Ordering::Relaxed) as f64 / t.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    let _ = reader.join();
    println!(
        "producer: {produce_ns:.0} ns per logged packet (reserve, fill, submit); consumer: drained {backlog} events at {consume_per_s:.0} events/s (decode, JSON, write){}",
        if dropped_filling > 0 { " (ring overflowed while filling)" } else { "" }
    );
    drop(dp);

    // Both together, paced, with the daemon's reader running throughout.
    let (dp, maps, names) = setup()?;
    let (sink, stop, reader) = start_reader(&dp, names)?;
    let prog = dp.firewall_program();
    println!(
        "{:>12} {:>10} {:>10} {:>10} {:>10} {:>12}",
        "target/s", "produced", "written", "k-dropped", "u-dropped", "achieved/s"
    );
    let mut rows = Vec::new();
    for target in [10_000u64, 40_000, 80_000, 160_000, 320_000] {
        let k0 = maps.stats()?[fw_stat::FW_STAT_EVENTS_DROPPED.0 as usize];
        let w0 = sink.written.load(Ordering::Relaxed);
        let d0 = sink.dropped.load(Ordering::Relaxed);
        let start = Instant::now();
        let mut produced = 0u64;
        while start.elapsed() < PERIOD {
            // pace: the batch that makes `produced` match the target rate so far
            let due = (start.elapsed().as_secs_f64() * target as f64) as u64;
            if produced >= due {
                std::thread::sleep(Duration::from_micros(200));
                continue;
            }
            prog.test_run(ProgramInput {
                data_in: Some(&frame),
                repeat: BATCH,
                ..Default::default()
            })?;
            produced += u64::from(BATCH);
        }
        let elapsed = start.elapsed().as_secs_f64();
        let written = drained(&sink) - w0;
        let kernel_dropped = maps.stats()?[fw_stat::FW_STAT_EVENTS_DROPPED.0 as usize] - k0;
        let consumer_dropped = sink.dropped.load(Ordering::Relaxed) - d0;
        let row = Row {
            target_per_s: target,
            produced,
            written,
            kernel_dropped,
            consumer_dropped,
            achieved_per_s: produced as f64 / elapsed,
            lossless: written == produced && kernel_dropped == 0 && consumer_dropped == 0,
        };
        println!(
            "{:>12} {:>10} {:>10} {:>10} {:>10} {:>12.0}{}",
            row.target_per_s,
            row.produced,
            row.written,
            row.kernel_dropped,
            row.consumer_dropped,
            row.achieved_per_s,
            if row.lossless { "" } else { "  (loss)" }
        );
        rows.push(row);
    }
    stop.store(true, Ordering::Relaxed);
    let _ = reader.join();
    let max_lossless_per_s = rows
        .iter()
        .filter(|r| r.lossless)
        .map(|r| r.achieved_per_s as u64)
        .max()
        .unwrap_or(0);
    println!("\nhighest paced rate with no loss: {max_lossless_per_s} events/s");
    // a figure to report, not a target: the issue asks what the consumer sustains
    let targets: Vec<Target> = Vec::new();
    print_targets(&targets);
    write_json(
        json,
        &Report {
            producer_ns_per_event: produce_ns,
            consumer_drain_per_s: consume_per_s,
            rows,
            max_lossless_per_s,
            targets,
        },
    )
}
