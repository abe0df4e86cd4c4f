//! experiment
use std::net::Ipv4Addr;
use std::path::Path;
use std::time::Instant;

use anyhow::{Context, Result};
use libbpf_rs::skel::{OpenSkel, SkelBuilder};
use libbpf_rs::{ProgramInput, ProgramMut};

use crate::config::{RateAction, RateKey, RateLimitConfig, RatePolicy};
use crate::loader::{Dataplane, LoadOptions};
use crate::maps::Generations;
use crate::packet::PacketBuilder;
use crate::skel::xdp_floor::XdpFloorSkelBuilder;

fn once(p: &ProgramMut, f: &[u8], r: u32) -> f64 {
    p.test_run(ProgramInput { data_in: Some(f), repeat: r, ..Default::default() }).unwrap().duration.as_nanos() as f64
}

fn stats(label: &str, d: &mut [f64]) {
    d.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let n = d.len();
    let mean = d.iter().sum::<f64>() / n as f64;
    let med = d[n / 2];
    let trim: Vec<f64> = d.iter().copied().filter(|&x| x <= 4.0 * med).collect();
    let tmean = trim.iter().sum::<f64>() / trim.len() as f64;
    println!("{label:<40} mean {mean:7.1} tmean {tmean:7.1} ({} cut) p1 {:5} p50 {med:5} p90 {:5} p99 {:5} p99.9 {:6} max {:6}", n - trim.len(), d[n/100], d[n*9/10], d[n*99/100], d[n*999/1000], d[n-1]);
}

fn pass(label: &str, prog: &ProgramMut, floor: &ProgramMut, frames: &[Vec<u8>]) {
    let t = Instant::now();
    let mut a = Vec::new();
    let mut b = Vec::new();
    for f in frames {
        a.push(once(prog, f, 1));
        b.push(once(floor, f, 1));
    }
    let w = t.elapsed().as_secs_f64();
    stats(&format!("{label} prog"), &mut a);
    stats(&format!("{label} floor"), &mut b);
    println!("   wall {:.2}s", w);
}

fn frame(src: Ipv4Addr) -> Vec<u8> {
    PacketBuilder::new().ipv4(src, Ipv4Addr::new(192,0,2,1)).udp(40000, 9).payload(&[0u8;18]).build()
}

pub fn run(repeat: u32, _json: Option<&Path>) -> Result<()> {
    let storage = Box::leak(Box::new(std::mem::MaybeUninit::uninit()));
    let open_floor = XdpFloorSkelBuilder::default().open(storage)?;
    let floor = open_floor.load().context("loading xdp_floor")?;
    let fl = &floor.progs.xdp_floor;
    let dp = Dataplane::load(&LoadOptions { pin_root: None, bench_addrs: Some(1) })?;
    let maps = dp.firewall_maps()?;
    maps.apply(&crate::ruleset::compile(&super::firewall(vec![], &[]))?)?;
    let rl = RateLimitConfig { policies: vec![RatePolicy { id: "all".into(), location: super::here(), src: None, proto: None, dst_port: None, rate: 100_000_000, burst: 100_000_000, action: RateAction::Drop, key: RateKey::Source }] };
    let rlm = dp.ratelimit_maps()?;
    let prog = &dp.firewall.progs.xdp_firewall;
    let hot = frame(Ipv4Addr::new(11,0,0,1));
    let hotk: Vec<Vec<u8>> = (0..10_000).map(|_| hot.clone()).collect();
    let k10: Vec<Vec<u8>> = (0..10_000u32).map(|i| frame(Ipv4Addr::from(0x0b00_0000 + i * 7))).collect();
    let k1m: Vec<Vec<u8>> = (0..1_000_000u32).map(|i| frame(Ipv4Addr::from(0x2000_0000 + i * 13))).collect();
    pass("floor-only hot", fl, fl, &hotk);
    pass("fw alone hot", prog, fl, &hotk);
    pass("fw alone 10k", prog, fl, &k10);
    println!("fw hot R={repeat}: {} floor {}", once(prog, &hot, repeat), once(fl, &hot, repeat));
    rlm.apply(&crate::ruleset::ratelimit::compile(&rl)?)?;
    dp.set_stage(crate::abi::xdp_stage::XDP_STAGE_RATELIMIT, true)?;
    pass("rl hot", prog, fl, &hotk);
    pass("rl 10k first", prog, fl, &k10);
    pass("rl 10k", prog, fl, &k10);
    pass("rl 10k", prog, fl, &k10);
    pass("rl hot", prog, fl, &hotk);
    println!("rl hot R={repeat}: {} floor {}", once(prog, &hot, repeat), once(fl, &hot, repeat));
    let t = Instant::now();
    for f in &k1m { once(prog, f, 1); }
    println!("fill 1M {:.2}s tracked {}", t.elapsed().as_secs_f64(), rlm.tracked_keys());
    pass("rl 1M/1M", prog, fl, &k1m);
    pass("rl 100k/1M", prog, fl, &k1m[..100_000]);
    pass("rl 100k/1M again", prog, fl, &k1m[..100_000]);
    pass("rl hot", prog, fl, &hotk);
    println!("rl hot R={repeat}: {} floor {}", once(prog, &hot, repeat), once(fl, &hot, repeat));
    println!("tracked {}", rlm.tracked_keys());
    Ok(())
}
