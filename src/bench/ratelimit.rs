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
    p.test_run(ProgramInput {
        data_in: Some(f),
        repeat: r,
        ..Default::default()
    })
    .unwrap()
    .duration
    .as_nanos() as f64
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
    PacketBuilder::new()
        .ipv4(src, Ipv4Addr::new(192, 0, 2, 1))
        .udp(40000, 9)
        .payload(&[0u8; 18])
        .build()
}

fn hist(label: &str, d: &[f64]) {
    let edges = [
        500.0, 1000.0, 1500.0, 2000.0, 3000.0, 4000.0, 5000.0, 7000.0, 10000.0, 1e12,
    ];
    let mut c = vec![0usize; edges.len()];
    for &x in d {
        c[edges.iter().position(|&e| x < e).unwrap()] += 1;
    }
    println!("{label}: {:?}", edges.iter().zip(&c).collect::<Vec<_>>());
}

fn pass2(label: &str, prog: &ProgramMut, floor: &ProgramMut, frames: &[Vec<u8>]) {
    let mut a = Vec::new();
    for f in frames {
        a.push(once(prog, f, 1));
        once(floor, f, 1);
    }
    hist(label, &a);
    stats(label, &mut a);
}

pub fn run(repeat: u32, _json: Option<&Path>) -> Result<()> {
    let mut rng = super::Rng(7);
    let storage = Box::leak(Box::new(std::mem::MaybeUninit::uninit()));
    let mut open_floor = XdpFloorSkelBuilder::default().open(storage)?;
    open_floor.maps.bench_addrs.set_max_entries(65536)?;
    let floor = open_floor.load().context("loading xdp_floor")?;
    let fl = &floor.progs.xdp_floor;
    let dp = Dataplane::load(&LoadOptions {
        pin_root: None,
        bench_addrs: Some(65536),
    })?;
    let maps = dp.firewall_maps()?;
    // validation: firewall spread harness vs per-call
    let cidrs = super::random_cidrs(1000, 25, &mut rng);
    let cov = super::covered(&cidrs);
    let keys: Vec<Ipv4Addr> = std::iter::from_fn(|| Some(Ipv4Addr::from(rng.next_u64() as u32)))
        .filter(|a| !cov(*a) && a.octets()[0] != 10)
        .take(65536)
        .collect();
    let fw_addrs = libbpf_rs::MapHandle::try_from(&dp.firewall.maps.bench_addrs)?;
    let fl_addrs = libbpf_rs::MapHandle::try_from(&floor.maps.bench_addrs)?;
    for m in [&fw_addrs, &fl_addrs] {
        for (i, a) in keys.iter().enumerate() {
            let mut v = crate::abi::bench_addr::default();
            v.src[..4].copy_from_slice(&a.octets());
            v.dst[..4].copy_from_slice(&[192, 0, 2, 1]);
            libbpf_rs::MapCore::update(
                m,
                &(i as u32).to_ne_bytes(),
                crate::abi::bytes_of(&v),
                libbpf_rs::MapFlags::ANY,
            )?;
        }
    }
    maps.apply(&crate::ruleset::compile(&super::firewall(
        super::general_rules(4096),
        &cidrs,
    ))?)?;
    let prog = &dp.firewall.progs.xdp_firewall;
    let miss = PacketBuilder::new()
        .ipv4(Ipv4Addr::new(192, 0, 2, 77), Ipv4Addr::new(192, 0, 2, 1))
        .udp(40000, 33333)
        .payload(&[0u8; 18])
        .build();
    let kf: Vec<Vec<u8>> = keys
        .iter()
        .map(|a| {
            PacketBuilder::new()
                .ipv4(*a, Ipv4Addr::new(192, 0, 2, 1))
                .udp(40000, 33333)
                .payload(&[0u8; 18])
                .build()
        })
        .collect();
    let hotk: Vec<Vec<u8>> = (0..65536).map(|_| kf[0].clone()).collect();
    for _ in 0..2 {
        let mut b = [f64::MAX; 4];
        for _ in 0..5 {
            b[0] = b[0].min(once(prog, &miss, repeat));
            b[1] = b[1].min(once(fl, &miss, repeat));
            b[2] = b[2].min(once(&dp.firewall.progs.xdp_firewall_spread, &miss, repeat));
            b[3] = b[3].min(once(&floor.progs.xdp_floor_spread, &miss, repeat));
        }
        println!(
            "harness: hot {} floor {} spread {} floor_spread {}",
            b[0], b[1], b[2], b[3]
        );
        pass("fw1000 hot R1", prog, fl, &hotk);
        pass("fw1000 spread R1", prog, fl, &kf);
    }
    return Ok(());
    #[allow(unreachable_code)]
    {
        let rl = RateLimitConfig {
            policies: vec![RatePolicy {
                id: "all".into(),
                location: super::here(),
                src: None,
                proto: None,
                dst_port: None,
                rate: 100_000_000,
                burst: 100_000_000,
                action: RateAction::Drop,
                key: RateKey::Source,
            }],
        };
        let rlm = dp.ratelimit_maps()?;
        maps.apply(&crate::ruleset::compile(&super::firewall(vec![], &[]))?)?;
        rlm.apply(&crate::ruleset::ratelimit::compile(&rl)?)?;
        dp.set_stage(crate::abi::xdp_stage::XDP_STAGE_RATELIMIT, true)?;
        let mut k1m: Vec<Vec<u8>> = (0..1_000_000u32)
            .map(|i| frame(Ipv4Addr::from(0x2000_0000 + i * 13)))
            .collect();
        for f in &k1m {
            once(prog, f, 1);
        }
        pass2("1M in fill order", prog, fl, &k1m);
        for i in (1..k1m.len()).rev() {
            let j = (rng.next_u64() % (i as u64 + 1)) as usize;
            k1m.swap(i, j);
        }
        pass2("1M shuffled", prog, fl, &k1m);
        pass2("1M shuffled again", prog, fl, &k1m);
        Ok(())
    }
}
