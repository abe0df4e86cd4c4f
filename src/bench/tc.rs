//! The TC benchmark harness (bpf/tc_bench.bpf.c): BPF_PROG_TEST_RUN repeats a program on one
//! skb, so a stage that rewrites the packet would see its own output from the second run on.
//! The harness writes the original frame back before every run and tail-calls the TC entry
//! program; its floor does the same write and stops.

use std::mem::MaybeUninit;
use std::os::fd::{AsFd, AsRawFd};

use anyhow::{bail, Context, Result};
use libbpf_rs::skel::{OpenSkel, SkelBuilder};
use libbpf_rs::{MapCore, MapFlags, ProgramInput, ProgramMut};

use super::ROUNDS;
use crate::skel::tc_bench::{TcBenchSkel, TcBenchSkelBuilder};

/// TC_ACT_UNSPEC: every stage passed.
pub const TC_NEXT: i32 = -1;
const FRAME_MAX: usize = 256;

pub struct TcHarness {
    skel: TcBenchSkel<'static>,
}

impl TcHarness {
    /// A harness whose runs end in `entry` (a TC entry program of a loaded dataplane).
    pub fn new(entry: &ProgramMut) -> Result<TcHarness> {
        let storage = Box::leak(Box::new(MaybeUninit::uninit()));
        let skel = TcBenchSkelBuilder::default()
            .open(storage)?
            .load()
            .context("loading tc_bench")?;
        let fd = entry.as_fd().as_raw_fd() as u32;
        skel.maps
            .bench_target
            .update(&0u32.to_ne_bytes(), &fd.to_ne_bytes(), MapFlags::ANY)
            .context("bench_target")?;
        Ok(TcHarness { skel })
    }

    fn set_frame(&self, frame: &[u8]) -> Result<()> {
        if frame.len() > FRAME_MAX {
            bail!("a benchmark frame is at most {FRAME_MAX} bytes");
        }
        let mut value = vec![0u8; 4 + FRAME_MAX];
        value[..4].copy_from_slice(&(frame.len() as u32).to_ne_bytes());
        value[4..4 + frame.len()].copy_from_slice(frame);
        self.skel
            .maps
            .bench_frame
            .update(&0u32.to_ne_bytes(), &value, MapFlags::ANY)
            .context("bench_frame")
    }

    fn run(prog: &ProgramMut, frame: &[u8], repeat: u32) -> Result<(i32, f64)> {
        let out = prog
            .test_run(ProgramInput {
                data_in: Some(frame),
                repeat,
                ..Default::default()
            })
            .context("BPF_PROG_TEST_RUN of the TC harness")?;
        Ok((out.return_value as i32, out.duration.as_nanos() as f64))
    }

    /// Best-of-ROUNDS ns per packet of the chain and of the harness floor on `frame`,
    /// alternated; fails unless every stage passed the packet.
    pub fn time(&self, frame: &[u8], repeat: u32) -> Result<(f64, f64)> {
        self.set_frame(frame)?;
        let (mut best, mut best_floor) = (f64::MAX, f64::MAX);
        for _ in 0..ROUNDS {
            let (verdict, ns) = Self::run(&self.skel.progs.tc_bench_restore, frame, repeat)?;
            if verdict != TC_NEXT {
                bail!("the TC chain returned {verdict}, not TC_ACT_UNSPEC, on the benchmark frame");
            }
            best = best.min(ns);
            let (verdict, ns) = Self::run(&self.skel.progs.tc_bench_floor, frame, repeat)?;
            if verdict != TC_NEXT {
                bail!("the TC harness floor failed ({verdict})");
            }
            best_floor = best_floor.min(ns);
        }
        Ok((best, best_floor))
    }
}
