//! tc_threatintel and the IPS blacklist through BPF_PROG_TEST_RUN: IOC verdict tables (exact
//! and CIDR, v4 and v6, source and destination, alert / drop / quarantine), the Bloom filter's
//! negatives and false positives, refreshes that flip generations, single adds and deletes,
//! the real Spamhaus DROP list, and xdp_firewall dropping blacklisted sources first.

mod common;

use std::net::IpAddr;
use std::time::Duration;

use common::{privileged, Firewall, XDP_DROP, XDP_PASS};
use ebpfsentinel::abi::{fw_stat, ti_stat};
use ebpfsentinel::feeds::{Ioc, IocSet, TiAction};
use ebpfsentinel::maps::blacklist::BlacklistMaps;
use ebpfsentinel::maps::threatintel::ThreatIntelMaps;
use ebpfsentinel::packet::PacketBuilder;
use ipnet::IpNet;

const TC_NEXT: i32 = -1;
const TC_SHOT: i32 = 2;
const QUARANTINE_VLAN: u16 = 666;

struct Intel {
    fw: Firewall,
    ti: ThreatIntelMaps,
}

fn ioc(net: &str, feed_id: u16, action: TiAction) -> Ioc {
    Ioc {
        net: net.parse::<IpNet>().unwrap().trunc(),
        feed_id,
        confidence: 90,
        category: 0,
        action,
    }
}

fn set(iocs: &[Ioc]) -> IocSet {
    IocSet {
        iocs: iocs.iter().map(|i| (i.net, i.clone())).collect(),
        categories: vec!["unknown".into()],
    }
}

impl Intel {
    fn new(iocs: &[Ioc]) -> Intel {
        let fw = Firewall::load("firewall: {}\n");
        let ti = fw.dp.threatintel_maps().expect("threat-intel maps");
        ti.apply(&set(iocs), QUARANTINE_VLAN, true)
            .expect("apply IOCs");
        Intel { fw, ti }
    }

    fn tc(&self, ingress: bool, frame: &[u8]) -> i32 {
        self.fw.tc(ingress, frame).0
    }

    fn stat(&self, s: ti_stat) -> u64 {
        self.ti.stats().expect("ti stats")[s.0 as usize]
    }
}

fn udp(src: &str, dst: &str) -> Vec<u8> {
    PacketBuilder::new()
        .ip(src.parse().unwrap(), dst.parse().unwrap())
        .udp(40000, 53)
        .payload(b"q")
        .build()
}

#[test]
fn ioc_verdicts_by_action_family_and_side() {
    if !privileged("ioc_verdicts_by_action_family_and_side") {
        return;
    }
    let t = Intel::new(&[
        ioc("203.0.113.5/32", 0, TiAction::Drop),
        ioc("2001:db8:bad::5/128", 1, TiAction::Alert),
        ioc("198.51.100.0/24", 2, TiAction::Quarantine),
        ioc("2001:db8:dead::/48", 3, TiAction::Drop),
        // shorter than a bucket can cover: the trie is walked for every v4 packet
        ioc("100.64.0.0/10", 4, TiAction::Alert),
    ]);
    let local4 = "10.0.0.1";
    // outside the /32 bucket of 2001:db8:dead::/48, or every v6 row would probe positive
    let local6 = "fd00::1";
    // (frame, ingress, verdict, stat that moves)
    let table: Vec<(Vec<u8>, bool, i32, ti_stat)> = vec![
        (
            udp("203.0.113.5", local4),
            true,
            TC_SHOT,
            ti_stat::TI_STAT_MATCH_DROP,
        ),
        (
            udp(local4, "203.0.113.5"),
            false,
            TC_SHOT,
            ti_stat::TI_STAT_MATCH_DROP,
        ),
        (
            udp("203.0.113.6", local4),
            true,
            TC_NEXT,
            ti_stat::TI_STAT_BLOOM_NEGATIVE,
        ),
        (
            udp("2001:db8:bad::5", local6),
            true,
            TC_NEXT,
            ti_stat::TI_STAT_MATCH_ALERT,
        ),
        (
            udp(local6, "2001:db8:bad::5"),
            false,
            TC_NEXT,
            ti_stat::TI_STAT_MATCH_ALERT,
        ),
        (
            udp("198.51.100.77", local4),
            true,
            TC_NEXT,
            ti_stat::TI_STAT_MATCH_QUARANTINE,
        ),
        (
            udp(local4, "198.51.100.1"),
            false,
            TC_NEXT,
            ti_stat::TI_STAT_MATCH_QUARANTINE,
        ),
        // same /16 bucket as the /24, outside it: the filter says maybe, the trie says no
        (
            udp("198.51.7.7", local4),
            true,
            TC_NEXT,
            ti_stat::TI_STAT_BLOOM_FALSE_POSITIVE,
        ),
        (
            udp("2001:db8:dead:beef::1", local6),
            true,
            TC_SHOT,
            ti_stat::TI_STAT_MATCH_DROP,
        ),
        (
            udp(local6, "2001:db8:dead::9"),
            false,
            TC_SHOT,
            ti_stat::TI_STAT_MATCH_DROP,
        ),
        (
            udp("2001:db9:beef::1", local6),
            true,
            TC_NEXT,
            ti_stat::TI_STAT_BLOOM_NEGATIVE,
        ),
        (
            udp("2001:db8:beef::1", local6),
            true,
            TC_NEXT,
            ti_stat::TI_STAT_BLOOM_FALSE_POSITIVE,
        ),
        (
            udp("100.100.1.1", local4),
            true,
            TC_NEXT,
            ti_stat::TI_STAT_MATCH_ALERT,
        ),
    ];
    for (i, (frame, ingress, verdict, moved)) in table.iter().enumerate() {
        let before = t.stat(*moved);
        assert_eq!(t.tc(*ingress, frame), *verdict, "row {i}");
        assert_eq!(t.stat(*moved), before + 1, "row {i}: {moved:?}");
    }
    // every match reported; nothing reported for clean packets
    let matches = t.stat(ti_stat::TI_STAT_MATCH_DROP)
        + t.stat(ti_stat::TI_STAT_MATCH_ALERT)
        + t.stat(ti_stat::TI_STAT_MATCH_QUARANTINE);
    assert_eq!(matches, 9);
    assert_eq!(t.stat(ti_stat::TI_STAT_EVENTS_SENT), matches);
    assert_eq!(t.stat(ti_stat::TI_STAT_SEEN), table.len() as u64);
    let meta = t.ti.lookup("198.51.100.77".parse().unwrap()).unwrap();
    assert_eq!(meta.len(), 1);
    assert_eq!((meta[0].feed_id, meta[0].action), (2, TiAction::Quarantine));
}

#[test]
fn refresh_flips_to_a_fresh_filter_and_single_changes_apply_at_once() {
    if !privileged("refresh_flips_to_a_fresh_filter_and_single_changes_apply_at_once") {
        return;
    }
    let t = Intel::new(&[
        ioc("203.0.113.5/32", 0, TiAction::Drop),
        ioc("203.0.113.6/32", 0, TiAction::Drop),
    ]);
    let gen = t.ti.active_generation().unwrap();
    assert_eq!(t.tc(true, &udp("203.0.113.5", "10.0.0.1")), TC_SHOT);
    // the refresh drops .5 and lists .7
    t.ti.apply(
        &set(&[
            ioc("203.0.113.6/32", 0, TiAction::Drop),
            ioc("203.0.113.7/32", 0, TiAction::Drop),
        ]),
        QUARANTINE_VLAN,
        true,
    )
    .unwrap();
    assert_eq!(t.ti.active_generation().unwrap(), gen ^ 1);
    let negatives = t.stat(ti_stat::TI_STAT_BLOOM_NEGATIVE);
    assert_eq!(t.tc(true, &udp("203.0.113.5", "10.0.0.1")), TC_NEXT);
    assert_eq!(
        t.stat(ti_stat::TI_STAT_BLOOM_NEGATIVE),
        negatives + 1,
        "the new filter no longer knows .5"
    );
    assert_eq!(t.tc(true, &udp("203.0.113.7", "10.0.0.1")), TC_SHOT);
    assert_eq!(t.tc(true, &udp("203.0.113.6", "10.0.0.1")), TC_SHOT);

    // ti add / ti del: at once, without a refresh
    t.ti.add(&ioc("192.0.2.99/32", 5, TiAction::Drop)).unwrap();
    assert_eq!(t.tc(true, &udp("192.0.2.99", "10.0.0.1")), TC_SHOT);
    t.ti.add(&ioc("2001:db8:77::/64", 5, TiAction::Drop))
        .unwrap();
    assert_eq!(t.tc(true, &udp("2001:db8:77::3", "2001:db8:1::1")), TC_SHOT);
    assert!(t.ti.del(&"192.0.2.99/32".parse().unwrap()).unwrap());
    let fp = t.stat(ti_stat::TI_STAT_BLOOM_FALSE_POSITIVE);
    assert_eq!(t.tc(true, &udp("192.0.2.99", "10.0.0.1")), TC_NEXT);
    assert_eq!(
        t.stat(ti_stat::TI_STAT_BLOOM_FALSE_POSITIVE),
        fp + 1,
        "a deleted IOC stays in the filter until the next refresh: it costs a confirmation"
    );
    let hits = t.ti.lookup("2001:db8:77::3".parse().unwrap()).unwrap();
    assert_eq!(hits.len(), 1);
    assert_eq!(hits[0].feed_id, 5);

    // threat intel off: nothing matched, nothing counted
    t.ti.apply(&set(&[ioc("203.0.113.6/32", 0, TiAction::Drop)]), 0, false)
        .unwrap();
    let seen = t.stat(ti_stat::TI_STAT_SEEN);
    assert_eq!(t.tc(true, &udp("203.0.113.6", "10.0.0.1")), TC_NEXT);
    assert_eq!(t.stat(ti_stat::TI_STAT_SEEN), seen);
}

#[test]
fn spamhaus_drop_list_from_the_real_file() {
    if !privileged("spamhaus_drop_list_from_the_real_file") {
        return;
    }
    let text = std::fs::read_to_string(common::feeds_dir().join("spamhaus_drop.netset")).unwrap();
    let iocs: Vec<Ioc> = text
        .lines()
        .map(|l| l.split(['#', ';']).next().unwrap().trim())
        .filter(|l| !l.is_empty())
        .map(|l| ioc(l, 0, TiAction::Drop))
        .collect();
    assert!(iocs.len() > 500, "{} prefixes", iocs.len());
    let t = Intel::new(&iocs);
    // inside 1.10.16.0/20 (listed), and an address no DROP prefix covers
    assert_eq!(t.tc(true, &udp("1.10.16.5", "10.0.0.1")), TC_SHOT);
    assert_eq!(t.tc(true, &udp("9.9.9.9", "10.0.0.1")), TC_NEXT);
    for i in &iocs {
        let IpNet::V4(n) = i.net else { continue };
        let inside: IpAddr = n.hosts().next().unwrap_or(n.addr()).into();
        let frame = PacketBuilder::new()
            .ip(inside, "10.0.0.1".parse().unwrap())
            .udp(1, 2)
            .build();
        assert_eq!(t.tc(true, &frame), TC_SHOT, "{}", i.net);
    }
}

#[test]
fn blacklisted_sources_are_dropped_first_and_blocks_expire() {
    if !privileged("blacklisted_sources_are_dropped_first_and_blocks_expire") {
        return;
    }
    // even an allowlisted source: a block is the operator's (or the IPS's) last word
    let fw = Firewall::load("firewall:\n  allowlist: [192.0.2.0/24]\n");
    let bl: BlacklistMaps = fw.dp.blacklist_maps().expect("blacklist maps");
    let from = |src: &str| udp(src, "10.0.0.1");
    assert_eq!(fw.run(&from("192.0.2.66")), XDP_PASS);
    bl.block("192.0.2.66/32".parse().unwrap(), None, 0).unwrap();
    bl.block("2001:db8:66::/48".parse().unwrap(), None, 0)
        .unwrap();
    bl.block(
        "198.51.100.0/24".parse().unwrap(),
        Some(Duration::from_millis(100)),
        0,
    )
    .unwrap();
    let dropped = fw.stats()[fw_stat::FW_STAT_DROP_BLOCKED.0 as usize];
    assert_eq!(fw.run(&from("192.0.2.66")), XDP_DROP);
    assert_eq!(fw.run(&from("192.0.2.67")), XDP_PASS);
    assert_eq!(fw.run(&udp("2001:db8:66:1::1", "2001:db8:1::1")), XDP_DROP);
    assert_eq!(fw.run(&udp("2001:db8:67::1", "2001:db8:1::1")), XDP_PASS);
    assert_eq!(fw.run(&from("198.51.100.9")), XDP_DROP);
    assert_eq!(
        fw.stats()[fw_stat::FW_STAT_DROP_BLOCKED.0 as usize],
        dropped + 3
    );
    // the kernel stops honouring an expired block before userspace removes it
    std::thread::sleep(Duration::from_millis(150));
    assert_eq!(fw.run(&from("198.51.100.9")), XDP_PASS);
    assert_eq!(bl.expire().unwrap(), 1);
    assert_eq!(bl.list().unwrap().len(), 2);
    assert!(bl.unblock("192.0.2.66/32".parse().unwrap()).unwrap());
    assert!(!bl.unblock("192.0.2.66/32".parse().unwrap()).unwrap());
    assert_eq!(fw.run(&from("192.0.2.66")), XDP_PASS);
    // only the v6 CIDR is left: the v4 maps are not even looked up
    assert_eq!(bl.list().unwrap().len(), 1);
}
