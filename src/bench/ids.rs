//! tc_ids: ns per packet on TC for 1k signatures spread over 100 ports, against the TC entry
//! program with the stage off in the same run: a packet to a port no rule names, a clean
//! payload on a port with ten rules (every content scanned in full), a 1400-byte clean
//! payload (the scan stops at IDS_SCAN_BYTES) and a match.

use std::net::Ipv4Addr;
use std::path::Path;

use anyhow::Result;
use serde::Serialize;

use super::{print_targets, time_once, write_json, Target, ROUNDS};
use crate::abi::tc_stage;
use crate::ids::{compile, Content, Direction, IdsAction, IdsRule};
use crate::loader::{Dataplane, LoadOptions};
use crate::packet::{PacketBuilder, TcpFlags};

#[derive(Debug, Serialize)]
struct PacketRow {
    scenario: String,
    ns_per_packet: f64,
    vs_floor: f64,
}

#[derive(Debug, Serialize)]
struct Report {
    repeat: u32,
    rules: usize,
    ports: usize,
    packets: Vec<PacketRow>,
    targets: Vec<Target>,
}

pub const RULES: usize = 1000;
pub const PORTS: u16 = 100;
pub const FIRST_PORT: u16 = 8000;

/// `RULES` signatures over `PORTS` ports: one content each (every third nocase, every fifth
/// anchored in the first 64 bytes), every seventh with a second content.
pub fn rules() -> Vec<IdsRule> {
    (0..RULES)
        .map(|i| {
            let mut contents = vec![Content {
                bytes: format!("sig-{i:05}-evil").into_bytes(),
                nocase: i % 3 == 0,
                offset: 0,
                depth: if i % 5 == 0 { 64 } else { 0 },
            }];
            if i % 7 == 0 {
                contents.push(Content {
                    bytes: b"User-Agent: ".to_vec(),
                    nocase: true,
                    offset: 0,
                    depth: 0,
                });
            }
            IdsRule {
                id: format!("bench-{i}"),
                sid: Some(1_000_000 + i as u32),
                rev: Some(1),
                msg: None,
                classtype: None,
                origin: "bench".into(),
                action: IdsAction::Alert,
                proto: 6,
                src_ports: None,
                dst_ports: Some(vec![(
                    FIRST_PORT + (i as u16 % PORTS),
                    FIRST_PORT + (i as u16 % PORTS),
                )]),
                direction: Direction::ToServer,
                established: false,
                contents,
                imported: false,
            }
        })
        .collect()
}

fn http(len: usize, marker: Option<&[u8]>) -> Vec<u8> {
    let mut p = b"GET /static/site.css HTTP/1.1\r\nHost: www.example.com\r\nUser-Agent: Mozilla/5.0 (X11; Linux x86_64) \
Gecko/20100101 Firefox/128.0\r\nAccept: text/css,*/*;q=0.1\r\nAccept-Language: en-US,en;q=0.5\r\n\
Accept-Encoding: gzip, deflate, br\r\nConnection: keep-alive\r\nReferer: https://www.example.com/\r\n\
Sec-Fetch-Dest: style\r\nSec-Fetch-Mode: no-cors\r\nSec-Fetch-Site: same-origin\r\n"
        .to_vec();
    while p.len() < len {
        p.extend_from_slice(b"X-Padding: session-state-token-0123456789abcdef\r\n");
    }
    p.truncate(len);
    if let Some(m) = marker {
        let at = len - m.len() - 2;
        p[at..at + m.len()].copy_from_slice(m);
    }
    p
}

fn frame(dport: u16, payload: &[u8]) -> Vec<u8> {
    PacketBuilder::new()
        .ipv4(Ipv4Addr::new(10, 1, 2, 3), Ipv4Addr::new(10, 0, 0, 1))
        .tcp(40000, dport, TcpFlags(TcpFlags::ACK.0 | TcpFlags::PSH.0))
        .payload(payload)
        .build()
}

pub fn run(repeat: u32, json: Option<&Path>) -> Result<()> {
    let dp = Dataplane::load(&LoadOptions::default())?;
    let ids = dp.ids_maps()?;
    let tc = &dp.conntrack.progs.tc_ingress;
    let compiled = compile(&rules(), 1.0);
    anyhow::ensure!(compiled.refused.is_empty(), "bench rules refused");
    let mut packets = Vec::new();
    let mut time = |scenario: &str, frame: &[u8], floor: f64| -> Result<f64> {
        let mut best = f64::MAX;
        for _ in 0..ROUNDS {
            best = best.min(time_once(tc, frame, repeat)?);
        }
        let ratio = if floor > 0.0 { best / floor } else { 1.0 };
        println!("tc ingress: {scenario:<64} {best:>8.1} ns  {ratio:>5.2}x");
        packets.push(PacketRow {
            scenario: scenario.into(),
            ns_per_packet: best,
            vs_floor: ratio,
        });
        Ok(best)
    };
    let rule_port = FIRST_PORT + 42;
    let clean = frame(rule_port, &http(512, None));
    dp.set_tc_stage(tc_stage::TC_STAGE_IDS, false)?;
    let floor = time("entry program, IDS off (floor)", &clean, 0.0)?;
    dp.set_tc_stage(tc_stage::TC_STAGE_IDS, true)?;
    ids.apply(&compiled)?;
    let other = time(
        "1k rules, port without rules, 512 B",
        &frame(9999, &http(512, None)),
        floor,
    )?;
    let miss = time("1k rules, 10 rules on the port, 512 B clean", &clean, floor)?;
    let miss_long = time(
        "1k rules, 10 rules on the port, 1400 B clean (1024 scanned)",
        &frame(rule_port, &http(1400, None)),
        floor,
    )?;
    // rule 42 is on this port: its content near the end of the payload
    let hit = time(
        "1k rules, 10 rules on the port, 512 B with a match (alert)",
        &frame(rule_port, &http(512, Some(b"sig-00042-evil"))),
        floor,
    )?;
    println!(
        "ids on TC: +{:.1} ns for a port without rules, +{:.1} ns to scan 512 B against 10 rules, +{:.1} ns for 1024 B, +{:.1} ns for a match",
        other - floor,
        miss - floor,
        miss_long - floor,
        hit - floor
    );
    let targets = vec![
        Target::at_most("port without rules vs the floor", other / floor, 2.5),
        Target::at_most(
            "512 B clean against 10 rules vs the floor",
            miss / floor,
            100.0,
        ),
    ];
    print_targets(&targets);
    write_json(
        json,
        &Report {
            repeat,
            rules: RULES,
            ports: PORTS as usize,
            packets,
            targets,
        },
    )
}
