//! The rule compiler on configs parsed from YAML: rank order, the CIDR-only split and its
//! overlap resolution, aliases and the allowlist, the classifier's dimensions, family
//! applicability, the limits, and the generation settings. No kernel involved.

use std::collections::HashMap;
use std::path::Path;

use super::*;
use crate::abi::{fw_dim, fw_dim_layout, fw_family_flags};
use crate::config;

const PATH: &str = "t.yaml";
const DROP: u8 = fw_action::FW_ACTION_DROP.0 as u8;
const PASS: u8 = fw_action::FW_ACTION_PASS.0 as u8;
const LOG: u8 = fw_rule_flags::FW_RULE_LOG.0 as u8;
const ABSENT: u32 = fw_dim_layout::FW_DIM_ABSENT_16.0;
const UNTAGGED: u32 = fw_dim_layout::FW_DIM_UNTAGGED.0;
const V4: Family = Family::V4;
const V6: Family = Family::V6;

fn parse(yaml: &str) -> config::Config {
    config::parse_str(yaml, Path::new(PATH)).unwrap_or_else(|e| panic!("config:\n{e}"))
}

fn compile_yaml(yaml: &str) -> CompiledRuleset {
    compile(&parse(yaml).firewall).unwrap_or_else(|e| panic!("compile: {e:#}"))
}

fn compile_error(yaml: &str) -> String {
    match compile(&parse(yaml).firewall) {
        Ok(rs) => panic!(
            "expected the ruleset not to fit; got {} ranks and {} bitmaps",
            rs.ranks.len(),
            rs.bitmaps.len()
        ),
        Err(e) => format!("{e:#}"),
    }
}

/// A config whose firewall section only lists these flow-style rules.
fn with_rules(rules: &[&str]) -> String {
    let mut yaml = String::from("firewall:\n  rules:\n");
    for rule in rules {
        yaml.push_str("    - ");
        yaml.push_str(rule);
        yaml.push('\n');
    }
    yaml
}

fn compile_rules(rules: &[&str]) -> CompiledRuleset {
    compile_yaml(&with_rules(rules))
}

fn p(text: &str) -> Prefix {
    Prefix::of(&text.parse().expect("test prefix literal"))
}

fn rank(rs: &CompiledRuleset, id: &str) -> u16 {
    rs.ranks
        .iter()
        .position(|r| r.id == id)
        .unwrap_or_else(|| panic!("no rule {id}")) as u16
}

fn ids(rs: &CompiledRuleset) -> Vec<&str> {
    rs.ranks.iter().map(|r| r.id.as_str()).collect()
}

/// (rank, action, flags) of a rule reference, for comparisons.
fn triple(r: &fw_rule_ref) -> (u16, u8, u8) {
    (r.rank, r.action, r.flags)
}

/// The (rank, action, flags) stored for one prefix of a CIDR list.
fn lookup(list: &[(Prefix, fw_rule_ref)], prefix: &str) -> (u16, u8, u8) {
    let prefix = p(prefix);
    list.iter()
        .find(|(p, _)| *p == prefix)
        .map(|(_, r)| triple(r))
        .unwrap_or_else(|| panic!("{prefix:?} is not stored"))
}

fn table(rs: &CompiledRuleset, family: Family, dir: Direction) -> &CidrTable {
    &rs.cidr[family as usize][dir as usize]
}

/// The entries of one CIDR list as (prefix, rule id, action, flags), sorted by prefix.
fn entries<'a>(
    rs: &'a CompiledRuleset,
    list: &[(Prefix, fw_rule_ref)],
) -> Vec<(Prefix, &'a str, u8, u8)> {
    let mut out: Vec<_> = list
        .iter()
        .map(|(prefix, r)| {
            let id = rs.rule_id(r.rank).expect("reference to a known rank");
            (*prefix, id, r.action, r.flags)
        })
        .collect();
    out.sort_unstable_by_key(|e| e.0);
    out
}

fn classifier(rs: &CompiledRuleset, family: Family) -> &FamilyClassifier {
    &rs.classifiers[family as usize]
}

/// The rule ids of a family's classifier, in bit order.
fn classifier_ids(rs: &CompiledRuleset, family: Family) -> Vec<&str> {
    classifier(rs, family)
        .rules
        .iter()
        .map(|r| rs.rule_id(r.rank).expect("known rank"))
        .collect()
}

/// The classifier bit of a rule in one family.
fn bit(rs: &CompiledRuleset, family: Family, id: &str) -> usize {
    let rank = rank(rs, id);
    classifier(rs, family)
        .rules
        .iter()
        .position(|r| r.rank == rank)
        .unwrap_or_else(|| panic!("{id} is not a general {} rule", family.name()))
}

fn bits_of(rs: &CompiledRuleset, index: u32) -> Vec<usize> {
    rs.bitmaps[index as usize].iter().collect()
}

/// Rule ids of a pool bitmap, in bit order.
fn ids_of(rs: &CompiledRuleset, family: Family, index: u32) -> Vec<&str> {
    let rules = &classifier(rs, family).rules;
    bits_of(rs, index)
        .into_iter()
        .map(|b| rs.rule_id(rules[b].rank).expect("known rank"))
        .collect()
}

fn slot(dim: fw_dim) -> usize {
    VALUE_DIMS
        .iter()
        .position(|v| v.dim == dim.0)
        .expect("a value dimension")
}

fn value_index(rs: &CompiledRuleset, family: Family, dim: fw_dim, value: u32) -> u32 {
    let values = &classifier(rs, family).values[slot(dim)];
    assert!(
        !values.is_empty(),
        "dimension {dim:?} is inactive in {}",
        family.name()
    );
    values[value as usize]
}

/// The rules accepting `value` in one value dimension.
fn value_ids(rs: &CompiledRuleset, family: Family, dim: fw_dim, value: u32) -> Vec<&str> {
    ids_of(rs, family, value_index(rs, family, dim, value))
}

fn addr_dim(rs: &CompiledRuleset, family: Family, dir: Direction) -> &[(Prefix, u32)] {
    let c = classifier(rs, family);
    match dir {
        Direction::Src => &c.src,
        Direction::Dst => &c.dst,
    }
}

/// The rules accepting addresses under `prefix` (a stored prefix) in one address dimension.
fn addr_ids<'a>(
    rs: &'a CompiledRuleset,
    family: Family,
    dir: Direction,
    prefix: &str,
) -> Option<Vec<&'a str>> {
    let prefix = p(prefix);
    addr_dim(rs, family, dir)
        .iter()
        .find(|(p, _)| *p == prefix)
        .map(|&(_, index)| ids_of(rs, family, index))
}

fn dims(list: &[fw_dim]) -> u8 {
    list.iter().fold(0, |acc, d| acc | 1 << d.0)
}

// ---- ranks ----------------------------------------------------------------------------------

#[test]
fn ranks_follow_priority_then_file_order() {
    let rs = compile_rules(&[
        "{ id: a, action: pass, proto: tcp }",
        "{ id: b, action: drop, proto: udp, priority: 10 }",
        "{ id: c, action: pass, src: 192.0.2.0/24 }",
        "{ id: d, action: drop, proto: tcp, dst_port: 22, priority: 10, log: true }",
        "{ id: e, action: drop, dst: 198.51.100.1, priority: 5 }",
        "{ id: f, action: pass, proto: udp, priority: 1000000 }",
        "{ id: g, action: pass, proto: udp, priority: 0 }",
    ]);
    assert_eq!(ids(&rs), ["g", "e", "b", "d", "a", "c", "f"]);
    let cidr_only: Vec<bool> = rs.ranks.iter().map(|r| r.cidr_only).collect();
    assert_eq!(cidr_only, [false, true, false, false, false, true, false]);
    let d = &rs.ranks[3];
    assert_eq!((d.action, d.log), (Action::Drop, true));
    let a = &rs.ranks[4];
    assert_eq!((a.action, a.log), (Action::Pass, false));
    assert_eq!(rs.rule_id(0), Some("g"));
    assert_eq!(rs.rule_id(6), Some("f"));
    assert_eq!(rs.rule_id(7), None);
}

#[test]
fn equal_priorities_keep_file_order() {
    let rules: Vec<String> = ["z", "y", "x", "w"]
        .iter()
        .map(|id| format!("{{ id: {id}, action: drop, proto: tcp, priority: 7 }}"))
        .collect();
    let refs: Vec<&str> = rules.iter().map(String::as_str).collect();
    let rs = compile_rules(&refs);
    assert_eq!(ids(&rs), ["z", "y", "x", "w"]);
    // Bits follow ranks as well.
    assert_eq!(classifier_ids(&rs, V4), ["z", "y", "x", "w"]);
    let ranks: Vec<u16> = classifier(&rs, V4).rules.iter().map(|r| r.rank).collect();
    assert_eq!(ranks, [0, 1, 2, 3]);
}

// ---- CIDR-only split ------------------------------------------------------------------------

#[test]
fn cidr_only_rules_split_by_family_direction_and_length() {
    let rs = compile_rules(&[
        "{ id: s32, action: drop, src: 192.0.2.1 }",
        "{ id: s24, action: drop, src: 192.0.2.0/24, log: true }",
        "{ id: s-list, action: pass, src: [203.0.113.9/32, 203.0.113.128/25] }",
        "{ id: d128, action: drop, dst: \"2001:db8::1\" }",
        "{ id: d48, action: pass, dst: \"2001:db8:1::/48\" }",
        "{ id: s6, action: drop, src: \"2001:db8:2::/64\" }",
        "{ id: d4, action: drop, dst: 198.51.100.0/24 }",
        // Not CIDR-only: both sides, or a second field.
        "{ id: both, action: drop, src: 10.0.0.0/8, dst: 10.1.0.0/16 }",
        "{ id: src-proto, action: drop, src: 10.2.0.1, proto: tcp }",
        "{ id: dst-port, action: drop, dst: 10.3.0.0/16, proto: udp, dst_port: 53 }",
        "{ id: dst-vlan, action: drop, dst: 10.4.0.1, vlan: 7 }",
        "{ id: src-sport, action: drop, src: 10.5.0.0/16, src_port: 1000 }",
    ]);
    let cidr_only: Vec<(&str, bool)> = rs
        .ranks
        .iter()
        .map(|r| (r.id.as_str(), r.cidr_only))
        .collect();
    assert_eq!(
        cidr_only,
        [
            ("s32", true),
            ("s24", true),
            ("s-list", true),
            ("d128", true),
            ("d48", true),
            ("s6", true),
            ("d4", true),
            ("both", false),
            ("src-proto", false),
            ("dst-port", false),
            ("dst-vlan", false),
            ("src-sport", false),
        ]
    );

    let v4_src = table(&rs, V4, Direction::Src);
    assert_eq!(
        entries(&rs, &v4_src.exact),
        [
            (p("192.0.2.1/32"), "s32", DROP, 0),
            (p("203.0.113.9/32"), "s-list", PASS, 0),
        ]
    );
    assert_eq!(
        entries(&rs, &v4_src.lpm),
        [
            (p("192.0.2.0/24"), "s24", DROP, LOG),
            (p("203.0.113.128/25"), "s-list", PASS, 0),
        ]
    );
    let v4_dst = table(&rs, V4, Direction::Dst);
    assert!(v4_dst.exact.is_empty(), "{:?}", v4_dst.exact);
    assert_eq!(
        entries(&rs, &v4_dst.lpm),
        [(p("198.51.100.0/24"), "d4", DROP, 0)]
    );
    let v6_src = table(&rs, V6, Direction::Src);
    assert!(v6_src.exact.is_empty(), "{:?}", v6_src.exact);
    assert_eq!(
        entries(&rs, &v6_src.lpm),
        [(p("2001:db8:2::/64"), "s6", DROP, 0)]
    );
    let v6_dst = table(&rs, V6, Direction::Dst);
    assert_eq!(
        entries(&rs, &v6_dst.exact),
        [(p("2001:db8::1/128"), "d128", DROP, 0)]
    );
    assert_eq!(
        entries(&rs, &v6_dst.lpm),
        [(p("2001:db8:1::/48"), "d48", PASS, 0)]
    );
    assert_eq!(rs.cidr_entries(), 8);

    // The general rules are all IPv4 and none of them reaches a CIDR table.
    assert_eq!(
        classifier_ids(&rs, V4),
        ["both", "src-proto", "dst-port", "dst-vlan", "src-sport"]
    );
    assert!(classifier_ids(&rs, V6).is_empty());
    for t in rs.cidr.iter().flatten() {
        for (prefix, r) in t.exact.iter().chain(&t.lpm) {
            assert!(
                rs.ranks[r.rank as usize].cidr_only,
                "{prefix:?} refers to general rule {}",
                rs.ranks[r.rank as usize].id
            );
        }
    }
}

#[test]
fn a_cidr_only_prefix_named_twice_keeps_the_lowest_rank() {
    let rs = compile_rules(&[
        "{ id: late, action: pass, src: [192.0.2.0/24, 192.0.2.5] }",
        "{ id: early, action: drop, src: [192.0.2.0/24, 192.0.2.5], priority: 1, log: true }",
        "{ id: later, action: pass, src: 192.0.2.0/24, priority: 500 }",
    ]);
    let t = table(&rs, V4, Direction::Src);
    assert_eq!(
        entries(&rs, &t.exact),
        [(p("192.0.2.5/32"), "early", DROP, LOG)]
    );
    assert_eq!(
        entries(&rs, &t.lpm),
        [(p("192.0.2.0/24"), "early", DROP, LOG)]
    );
    assert_eq!(
        lookup(&t.lpm, "192.0.2.0/24"),
        (rank(&rs, "early"), DROP, LOG),
        "the reference carries rank, action and log flag"
    );
}

// ---- overlap resolution ---------------------------------------------------------------------

#[test]
fn covering_prefix_with_a_better_rank_wins_inside_longer_prefixes() {
    let rs = compile_rules(&[
        "{ id: a, action: drop, src: 10.0.0.0/8, priority: 50, log: true }",
        "{ id: b, action: pass, src: 10.1.0.0/16, priority: 60 }",
        "{ id: c, action: pass, src: 10.1.2.3, priority: 10 }",
        "{ id: d, action: pass, src: 10.9.9.9, priority: 90 }",
    ]);
    assert_eq!(ids(&rs), ["c", "a", "b", "d"]);
    let t = table(&rs, V4, Direction::Src);
    assert_eq!(
        entries(&rs, &t.lpm),
        [
            (p("10.0.0.0/8"), "a", DROP, LOG),
            (p("10.1.0.0/16"), "a", DROP, LOG),
        ],
        "the /16 of b (priority 60) lies inside the /8 of a (priority 50)"
    );
    assert_eq!(
        entries(&rs, &t.exact),
        [
            (p("10.1.2.3/32"), "c", PASS, 0),
            (p("10.9.9.9/32"), "a", DROP, LOG),
        ],
        "c outranks a; d (priority 90) is hidden by a"
    );
    assert_eq!(lookup(&t.lpm, "10.1.0.0/16"), (1, DROP, LOG));
    assert_eq!(lookup(&t.exact, "10.1.2.3/32"), (0, PASS, 0));
}

#[test]
fn longer_prefix_with_a_better_rank_keeps_its_rule() {
    let rs = compile_rules(&[
        "{ id: wide, action: drop, dst: 10.0.0.0/8, priority: 50 }",
        "{ id: narrow, action: pass, dst: 10.1.0.0/16, priority: 20 }",
        "{ id: host, action: drop, dst: 10.1.2.3, priority: 30 }",
        "{ id: v6-wide, action: drop, dst: \"2001:db8::/32\", priority: 50 }",
        "{ id: v6-narrow, action: pass, dst: \"2001:db8:1::/48\", priority: 40 }",
        "{ id: v6-host, action: drop, dst: \"2001:db8:1::7\", priority: 45 }",
    ]);
    let t = table(&rs, V4, Direction::Dst);
    assert_eq!(
        entries(&rs, &t.lpm),
        [
            (p("10.0.0.0/8"), "wide", DROP, 0),
            (p("10.1.0.0/16"), "narrow", PASS, 0),
        ]
    );
    assert_eq!(
        entries(&rs, &t.exact),
        [(p("10.1.2.3/32"), "narrow", PASS, 0)],
        "the host lies inside narrow, which outranks it"
    );
    let t6 = table(&rs, V6, Direction::Dst);
    assert_eq!(
        entries(&rs, &t6.lpm),
        [
            (p("2001:db8::/32"), "v6-wide", DROP, 0),
            (p("2001:db8:1::/48"), "v6-narrow", PASS, 0),
        ]
    );
    assert_eq!(
        entries(&rs, &t6.exact),
        [(p("2001:db8:1::7/128"), "v6-narrow", PASS, 0)]
    );
    // Source tables are untouched by destination rules.
    assert!(table(&rs, V4, Direction::Src).lpm.is_empty());
    assert!(table(&rs, V6, Direction::Src).exact.is_empty());
}

#[test]
fn default_route_folds_into_every_prefix_it_outranks() {
    let rs = compile_rules(&[
        "{ id: all, action: drop, src: [0.0.0.0/0, \"::/0\"], priority: 5 }",
        "{ id: net, action: pass, src: 192.0.2.0/24 }",
        "{ id: host6, action: pass, src: \"2001:db8::1\", priority: 1 }",
    ]);
    let t4 = table(&rs, V4, Direction::Src);
    assert_eq!(
        entries(&rs, &t4.lpm),
        [
            (p("0.0.0.0/0"), "all", DROP, 0),
            (p("192.0.2.0/24"), "all", DROP, 0),
        ]
    );
    let t6 = table(&rs, V6, Direction::Src);
    assert_eq!(entries(&rs, &t6.lpm), [(p("::/0"), "all", DROP, 0)]);
    assert_eq!(
        entries(&rs, &t6.exact),
        [(p("2001:db8::1/128"), "host6", PASS, 0)]
    );
}

// ---- aliases and allowlist ------------------------------------------------------------------

#[test]
fn aliases_with_both_families_fill_both_families() {
    let rs = compile_yaml(
        "firewall:
  allowlist: [198.51.100.0/24, \"@mon\", 198.51.100.7, \"2001:db8:f::/48\"]
  aliases:
    mixed: { entries: [192.0.2.0/24, \"2001:db8::/32\", 192.0.2.7, \"2001:db8:1::9\"] }
    mon: { entries: [198.51.100.0/24, 203.0.113.1, \"2001:db8:f::/48\"] }
  rules:
    - { id: cidr, action: drop, src: \"@mixed\" }
    - { id: general, action: drop, dst: \"@mixed\", proto: tcp, dst_port: 443 }
",
    );
    let v4 = table(&rs, V4, Direction::Src);
    assert_eq!(
        entries(&rs, &v4.lpm),
        [(p("192.0.2.0/24"), "cidr", DROP, 0)]
    );
    assert_eq!(
        entries(&rs, &v4.exact),
        [(p("192.0.2.7/32"), "cidr", DROP, 0)]
    );
    let v6 = table(&rs, V6, Direction::Src);
    assert_eq!(
        entries(&rs, &v6.lpm),
        [(p("2001:db8::/32"), "cidr", DROP, 0)]
    );
    assert_eq!(
        entries(&rs, &v6.exact),
        [(p("2001:db8:1::9/128"), "cidr", DROP, 0)]
    );

    assert_eq!(classifier_ids(&rs, V4), ["general"]);
    assert_eq!(classifier_ids(&rs, V6), ["general"]);
    let dst4: Vec<Prefix> = addr_dim(&rs, V4, Direction::Dst)
        .iter()
        .map(|e| e.0)
        .collect();
    assert_eq!(dst4, [p("192.0.2.0/24"), p("192.0.2.7/32")]);
    let dst6: Vec<Prefix> = addr_dim(&rs, V6, Direction::Dst)
        .iter()
        .map(|e| e.0)
        .collect();
    assert_eq!(dst6, [p("2001:db8::/32"), p("2001:db8:1::9/128")]);

    // Sorted by prefix and deduplicated across literals and aliases.
    assert_eq!(
        rs.allow[0],
        [
            p("198.51.100.0/24"),
            p("198.51.100.7/32"),
            p("203.0.113.1/32")
        ]
    );
    assert_eq!(rs.allow[1], [p("2001:db8:f::/48")]);
    let allow = fw_family_flags::FW_FAM_ALLOWLIST.0 as u8;
    assert_eq!(rs.settings.family_flags[0] & allow, allow);
    assert_eq!(rs.settings.family_flags[1] & allow, allow);
}

#[test]
fn allowlist_is_deduplicated_per_family_by_the_compiler_too() {
    // The config layer deduplicates already; the compiler must not rely on it.
    let mut fw = parse("firewall:\n  allowlist: [10.0.0.0/8, \"2001:db8::/32\"]\n").firewall;
    let dup = fw.allowlist.clone();
    fw.allowlist.extend(dup);
    fw.allowlist.push("9.9.9.9/32".parse().unwrap());
    let rs = compile(&fw).expect("compile");
    assert_eq!(rs.allow[0], [p("9.9.9.9/32"), p("10.0.0.0/8")]);
    assert_eq!(rs.allow[1], [p("2001:db8::/32")]);
}

// ---- classifier -----------------------------------------------------------------------------

#[test]
fn destination_ports_select_exactly_their_rules() {
    let rs = compile_rules(&[
        "{ id: ssh, action: pass, proto: tcp, dst_port: 22, priority: 10 }",
        "{ id: alt, action: drop, proto: tcp, dst_port: \"8000-8080\", priority: 20, log: true }",
        "{ id: udp, action: drop, proto: udp, priority: 30 }",
        "{ id: web, action: pass, proto: tcp, dst_port: 80, priority: 40 }",
        "{ id: low, action: drop, proto: tcp, dst_port: \"0-22\", priority: 50 }",
    ]);
    let want = dims(&[fw_dim::FW_DIM_PROTO, fw_dim::FW_DIM_DPORT]);
    for family in FAMILIES {
        let c = classifier(&rs, family);
        assert_eq!(c.active_dims, want, "{}", family.name());
        assert_eq!(rs.settings.active_dims[family as usize], want);
        assert!(c.src.is_empty() && c.dst.is_empty());
        assert_eq!(c.values[slot(fw_dim::FW_DIM_PROTO)].len(), 256);
        assert_eq!(c.values[slot(fw_dim::FW_DIM_DPORT)].len(), 65537);
        for dim in [
            fw_dim::FW_DIM_SPORT,
            fw_dim::FW_DIM_VLAN,
            fw_dim::FW_DIM_L4X,
            fw_dim::FW_DIM_CT,
        ] {
            assert!(c.values[slot(dim)].is_empty(), "{dim:?} must be inactive");
        }
    }
    assert_eq!(classifier_ids(&rs, V4), ["ssh", "alt", "udp", "web", "low"]);
    let refs: Vec<_> = classifier(&rs, V4).rules.iter().map(triple).collect();
    assert_eq!(
        refs,
        [
            (0, PASS, 0),
            (1, DROP, LOG),
            (2, DROP, 0),
            (3, PASS, 0),
            (4, DROP, 0)
        ]
    );

    let dport = fw_dim::FW_DIM_DPORT;
    let idx = |v| value_index(&rs, V4, dport, v);
    assert_eq!(bits_of(&rs, idx(22)), [0, 2, 4]);
    assert_eq!(bits_of(&rs, idx(80)), [2, 3]);
    assert_eq!(bits_of(&rs, idx(0)), [2, 4]);
    assert_eq!(bits_of(&rs, idx(21)), [2, 4]);
    assert_eq!(value_ids(&rs, V4, dport, 23), ["udp"]);
    for v in [8000, 8001, 8079, 8080] {
        assert_eq!(value_ids(&rs, V4, dport, v), ["alt", "udp"], "port {v}");
    }
    // Every other port shares one wildcard-only bitmap, as does the absent slot.
    let wildcard = idx(23);
    assert_eq!(bits_of(&rs, wildcard), [2]);
    for v in [23, 79, 81, 443, 7999, 8081, 65535, ABSENT] {
        assert_eq!(idx(v), wildcard, "port {v}");
    }
    // Same pool entries for IPv6 (the pool is shared).
    for v in [0, 22, 80, 8000, ABSENT] {
        assert_eq!(value_index(&rs, V6, dport, v), idx(v));
    }

    let proto = fw_dim::FW_DIM_PROTO;
    assert_eq!(value_ids(&rs, V4, proto, 6), ["ssh", "alt", "web", "low"]);
    assert_eq!(value_ids(&rs, V4, proto, 17), ["udp"]);
    assert!(value_ids(&rs, V4, proto, 1).is_empty());
    assert!(value_ids(&rs, V4, proto, 255).is_empty());
}

#[test]
fn absent_port_slot_holds_only_rules_without_a_port() {
    let rs = compile_rules(&[
        "{ id: sport, action: drop, proto: udp, src_port: \"1024-65535\" }",
        "{ id: any, action: drop, proto: udp }",
        "{ id: icmp, action: pass, proto: icmp }",
        "{ id: all, action: pass, proto: tcp, src_port: \"0-65535\" }",
    ]);
    let c = classifier(&rs, V4);
    assert_eq!(
        c.active_dims,
        dims(&[fw_dim::FW_DIM_PROTO, fw_dim::FW_DIM_SPORT])
    );
    let sport = fw_dim::FW_DIM_SPORT;
    assert_eq!(value_ids(&rs, V4, sport, ABSENT), ["any", "icmp"]);
    assert_eq!(value_ids(&rs, V4, sport, 0), ["any", "icmp", "all"]);
    assert_eq!(value_ids(&rs, V4, sport, 1023), ["any", "icmp", "all"]);
    assert_eq!(
        value_ids(&rs, V4, sport, 1024),
        ["sport", "any", "icmp", "all"]
    );
    assert_eq!(
        value_ids(&rs, V4, sport, 65535),
        ["sport", "any", "icmp", "all"]
    );
    // icmp is IPv4 only.
    assert_eq!(classifier_ids(&rs, V6), ["sport", "any", "all"]);
    assert_eq!(value_ids(&rs, V6, sport, ABSENT), ["any"]);
}

#[test]
fn vlan_ids_and_untagged() {
    let rs = compile_rules(&[
        "{ id: v10, action: drop, vlan: 10 }",
        "{ id: plain, action: drop, vlan: untagged }",
        "{ id: v0, action: pass, vlan: 0 }",
        "{ id: any, action: pass, proto: udp }",
    ]);
    let c = classifier(&rs, V4);
    assert_eq!(
        c.active_dims,
        dims(&[fw_dim::FW_DIM_PROTO, fw_dim::FW_DIM_VLAN])
    );
    let vlan = fw_dim::FW_DIM_VLAN;
    assert_eq!(c.values[slot(vlan)].len(), 4097);
    assert_eq!(value_ids(&rs, V4, vlan, 10), ["v10", "any"]);
    assert_eq!(value_ids(&rs, V4, vlan, UNTAGGED), ["plain", "any"]);
    assert_eq!(UNTAGGED, 4096);
    assert_eq!(value_ids(&rs, V4, vlan, 0), ["v0", "any"]);
    for v in [1, 9, 11, 4094, 4095] {
        assert_eq!(value_ids(&rs, V4, vlan, v), ["any"], "vlan {v}");
    }
    // Rules without a protocol accept every protocol value.
    let proto = fw_dim::FW_DIM_PROTO;
    assert_eq!(value_ids(&rs, V4, proto, 17), ["v10", "plain", "v0", "any"]);
    assert_eq!(value_ids(&rs, V4, proto, 6), ["v10", "plain", "v0"]);
}

#[test]
fn tcp_flags_accept_exactly_the_matching_flag_bytes() {
    const FIN: u32 = 0x01;
    const SYN: u32 = 0x02;
    const RST: u32 = 0x04;
    const ACK: u32 = 0x10;
    let rs = compile_rules(&[
        "{ id: syn, action: drop, proto: tcp, tcp_flags: S/SA }",
        "{ id: rst, action: drop, proto: tcp, tcp_flags: R }",
        "{ id: tcp, action: pass, proto: tcp }",
    ]);
    let c = classifier(&rs, V4);
    assert_eq!(
        c.active_dims,
        dims(&[fw_dim::FW_DIM_PROTO, fw_dim::FW_DIM_L4X])
    );
    let l4x = fw_dim::FW_DIM_L4X;
    let (syn, rst, tcp) = (
        bit(&rs, V4, "syn"),
        bit(&rs, V4, "rst"),
        bit(&rs, V4, "tcp"),
    );
    let mut syn_values = 0;
    for v in 0u32..=255 {
        let got = bits_of(&rs, value_index(&rs, V4, l4x, v));
        let mut want = Vec::new();
        if v & SYN != 0 && v & ACK == 0 {
            want.push(syn);
            syn_values += 1;
        }
        if v & RST != 0 {
            want.push(rst);
        }
        want.push(tcp);
        assert_eq!(got, want, "flags byte {v:#04x}");
    }
    assert_eq!(syn_values, 64);
    assert_eq!(
        value_ids(&rs, V4, l4x, SYN | FIN),
        ["syn", "tcp"],
        "other flags are free"
    );
    assert_eq!(value_ids(&rs, V4, l4x, SYN | ACK), ["tcp"]);
    // Beyond the flags byte, and absent: only the rule without flags.
    for v in [256, 0x0802, 65535, ABSENT] {
        assert_eq!(value_ids(&rs, V4, l4x, v), ["tcp"], "value {v:#x}");
    }
}

#[test]
fn icmp_type_and_code_ranges() {
    let rs = compile_rules(&[
        "{ id: echo, action: drop, proto: icmp, icmp_type: 8 }",
        "{ id: code3, action: drop, proto: icmp, icmp_code: 3 }",
        "{ id: frag, action: pass, proto: icmp, icmp_type: 3, icmp_code: 4 }",
        "{ id: echo6, action: drop, proto: icmpv6, icmp_type: 128 }",
    ]);
    let l4x = fw_dim::FW_DIM_L4X;
    let (echo, code3, frag) = (
        bit(&rs, V4, "echo"),
        bit(&rs, V4, "code3"),
        bit(&rs, V4, "frag"),
    );
    assert_eq!(classifier_ids(&rs, V4), ["echo", "code3", "frag"]);
    assert_eq!(classifier_ids(&rs, V6), ["echo6"]);
    let values = &classifier(&rs, V4).values[slot(l4x)];
    assert_eq!(values.len(), 65537);
    // Decoding a 4096-bit bitmap per value is slow in debug builds: once per pool entry.
    let mut decoded: HashMap<u32, Vec<usize>> = HashMap::new();
    for (v, &index) in values.iter().enumerate() {
        let v = v as u32;
        let mut want = Vec::new();
        if (8 << 8..=8 << 8 | 255).contains(&v) {
            want.push(echo);
        }
        if v < ABSENT && v & 0xff == 3 {
            want.push(code3);
        }
        if v == 3 << 8 | 4 {
            want.push(frag);
        }
        let got = decoded.entry(index).or_insert_with(|| bits_of(&rs, index));
        assert_eq!(*got, want, "type/code {v:#06x}");
    }
    assert_eq!(value_ids(&rs, V4, l4x, 8 << 8), ["echo"]);
    assert_eq!(value_ids(&rs, V4, l4x, 8 << 8 | 3), ["echo", "code3"]);
    assert_eq!(value_ids(&rs, V4, l4x, 3 << 8 | 3), ["code3"]);
    assert_eq!(value_ids(&rs, V4, l4x, 255 << 8 | 3), ["code3"]);
    assert_eq!(value_ids(&rs, V4, l4x, 3 << 8 | 4), ["frag"]);
    assert_eq!(value_ids(&rs, V6, l4x, 128 << 8 | 77), ["echo6"]);
    assert!(value_ids(&rs, V6, l4x, 129 << 8).is_empty());
    assert_eq!(value_ids(&rs, V4, fw_dim::FW_DIM_PROTO, 1).len(), 3);
    assert!(value_ids(&rs, V4, fw_dim::FW_DIM_PROTO, 58).is_empty());
    assert_eq!(value_ids(&rs, V6, fw_dim::FW_DIM_PROTO, 58), ["echo6"]);
}

// ---- connection state -----------------------------------------------------------------------

/// Conntrack on and the fast path off, so that drop rules may name every class.
fn with_conntrack(rules: &[&str]) -> String {
    format!(
        "conntrack: {{ enabled: true, fast_path: false }}\n{}",
        with_rules(rules)
    )
}

const CT_NEW: u32 = 0;
const CT_ESTABLISHED: u32 = 1;
const CT_RELATED: u32 = 2;
const CT_INVALID: u32 = 3;

#[test]
fn connection_states_select_their_rules_by_class() {
    let rs = compile_yaml(&with_conntrack(&[
        "{ id: tracked, action: pass, state: [established, related] }",
        "{ id: bad, action: drop, state: invalid, log: true }",
        "{ id: new-ssh, action: pass, state: new, proto: tcp, dst_port: 22 }",
        "{ id: new-from-net, action: drop, state: new, src: 192.0.2.0/24 }",
        "{ id: udp, action: drop, proto: udp }",
    ]));
    // A lone `src` would make a CIDR-only rule; with `state` it needs the classifier.
    assert!(rs.ranks.iter().all(|r| !r.cidr_only));
    assert_eq!(rs.cidr_entries(), 0);
    assert_eq!(
        classifier_ids(&rs, V4),
        ["tracked", "bad", "new-ssh", "new-from-net", "udp"]
    );
    assert_eq!(
        classifier_ids(&rs, V6),
        ["tracked", "bad", "new-ssh", "udp"]
    );
    let ct = fw_dim::FW_DIM_CT;
    let values = dims(&[fw_dim::FW_DIM_PROTO, fw_dim::FW_DIM_DPORT, ct]);
    assert_eq!(
        rs.settings.active_dims,
        [values | dims(&[fw_dim::FW_DIM_SRC]), values]
    );
    for family in FAMILIES {
        let c = classifier(&rs, family);
        assert_eq!(c.active_dims, rs.settings.active_dims[family as usize]);
        assert_eq!(c.values[slot(ct)].len(), 4, "{}", family.name());
    }

    assert_eq!(
        value_ids(&rs, V4, ct, CT_NEW),
        ["new-ssh", "new-from-net", "udp"]
    );
    assert_eq!(value_ids(&rs, V4, ct, CT_ESTABLISHED), ["tracked", "udp"]);
    assert_eq!(value_ids(&rs, V4, ct, CT_RELATED), ["tracked", "udp"]);
    assert_eq!(value_ids(&rs, V4, ct, CT_INVALID), ["bad", "udp"]);
    assert_eq!(
        bits_of(&rs, value_index(&rs, V4, ct, CT_INVALID)),
        [1, 4],
        "the bits of bad and udp"
    );
    assert_eq!(
        value_index(&rs, V4, ct, CT_ESTABLISHED),
        value_index(&rs, V4, ct, CT_RELATED),
        "classes with one rule set share a pool entry"
    );
    assert_eq!(value_ids(&rs, V6, ct, CT_NEW), ["new-ssh", "udp"]);
    assert_eq!(value_ids(&rs, V6, ct, CT_INVALID), ["bad", "udp"]);
    let bad = &classifier(&rs, V4).rules[bit(&rs, V4, "bad")];
    assert_eq!(triple(bad), (1, DROP, LOG));
}

#[test]
fn a_ruleset_without_state_leaves_the_ct_dimension_inactive() {
    let rules = [
        "{ id: ssh, action: pass, proto: tcp, dst_port: 22, src: 10.0.0.0/8 }",
        "{ id: syn, action: drop, proto: tcp, tcp_flags: S/SA, vlan: 7 }",
        "{ id: ping, action: drop, proto: icmpv6, icmp_type: 128 }",
        "{ id: everything, action: drop, src_port: 53 }",
    ];
    // Enabling the tracker alone changes nothing in the classifier.
    for yaml in [with_rules(&rules), with_conntrack(&rules)] {
        let rs = compile_yaml(&yaml);
        for family in FAMILIES {
            let c = classifier(&rs, family);
            let ct = 1 << fw_dim::FW_DIM_CT.0;
            assert_ne!(c.active_dims, 0, "{}", family.name());
            assert_eq!(c.active_dims & ct, 0, "{}", family.name());
            assert_eq!(rs.settings.active_dims[family as usize] & ct, 0);
            assert!(c.values[slot(fw_dim::FW_DIM_CT)].is_empty());
        }
    }
}

#[test]
fn value_dimensions_tile_the_kernel_block() {
    let mut end = 0;
    for vd in VALUE_DIMS {
        assert_eq!(
            vd.offset, end,
            "dimension {} starts where the last ended",
            vd.dim
        );
        end = vd.offset + vd.values;
    }
    assert_eq!(end as usize, abi::DIM_BLOCK);
    let ct = VALUE_DIMS[slot(fw_dim::FW_DIM_CT)];
    assert_eq!((ct.offset, ct.values), (fw_dim_layout::FW_DIM_OFF_CT.0, 4));
}

/// The first rule, in rank order, whose proto, dst_port and state accept the packet: the
/// config's meaning, evaluated without the classifier.
fn reference_match(
    fw: &config::FirewallConfig,
    proto: u8,
    dport: Option<u16>,
    class: u32,
) -> Option<&str> {
    let mut order: Vec<&config::Rule> = fw.rules.iter().collect();
    order.sort_by_key(|r| r.priority);
    order
        .into_iter()
        .find(|r| {
            r.proto.is_none_or(|p| p.number() == proto)
                && r.dst_port
                    .is_none_or(|range| dport.is_some_and(|d| (range.lo..=range.hi).contains(&d)))
                && r.state.is_none_or(|s| s.contains(class as usize))
        })
        .map(|r| r.id.as_str())
}

/// What xdp_firewall does for a packet without address dimensions: AND the bitmap of every
/// active value dimension, lowest bit wins.
fn classifier_match<'a>(
    rs: &'a CompiledRuleset,
    family: Family,
    packet: &[(fw_dim, u32)],
) -> Option<&'a str> {
    let c = classifier(rs, family);
    let mut acc = [!0u64; abi::BITMAP_WORDS];
    for (slot, vd) in VALUE_DIMS.iter().enumerate() {
        if c.active_dims & 1 << vd.dim == 0 {
            continue;
        }
        let &(_, value) = packet
            .iter()
            .find(|(dim, _)| dim.0 == vd.dim)
            .unwrap_or_else(|| panic!("the packet lacks active dimension {}", vd.dim));
        let bits = &rs.bitmaps[c.values[slot][value as usize] as usize];
        for (a, b) in acc.iter_mut().zip(bits.0.iter()) {
            *a &= b;
        }
    }
    let first = Bits(acc).iter().next()?;
    let rule = c.rules.get(first)?;
    rs.rule_id(rule.rank)
}

#[test]
fn state_verdicts_agree_with_the_rules_read_directly() {
    let yaml = with_conntrack(&[
        "{ id: tracked, action: pass, state: [established, related], priority: 1 }",
        "{ id: bad, action: drop, state: invalid, priority: 2 }",
        "{ id: new-ssh, action: pass, state: new, proto: tcp, dst_port: 22 }",
        "{ id: dns, action: pass, proto: udp, dst_port: 53, state: [new, established] }",
        "{ id: web, action: pass, proto: tcp, dst_port: \"80-443\" }",
        "{ id: new-tcp, action: drop, proto: tcp, state: new, priority: 200 }",
        "{ id: ping, action: pass, proto: icmp, state: [new, related], priority: 300 }",
    ]);
    let config = parse(&yaml);
    let rs = compile(&config.firewall).expect("compile");
    let mut matched = std::collections::HashSet::new();
    for proto in [6u8, 17, 1, 47] {
        for dport in [None, Some(22), Some(53), Some(80), Some(443), Some(8080)] {
            if dport.is_some() && !matches!(proto, 6 | 17) {
                continue;
            }
            for class in CT_NEW..=CT_INVALID {
                let dport_value = dport.map_or(ABSENT, u32::from);
                let packet = [
                    (fw_dim::FW_DIM_PROTO, u32::from(proto)),
                    (fw_dim::FW_DIM_DPORT, dport_value),
                    (fw_dim::FW_DIM_CT, class),
                ];
                let want = reference_match(&config.firewall, proto, dport, class);
                let got = classifier_match(&rs, V4, &packet);
                assert_eq!(got, want, "proto {proto}, dport {dport:?}, class {class}");
                matched.extend(got);
            }
        }
    }
    assert_eq!(
        matched.len(),
        7,
        "every rule decides some packet: {matched:?}"
    );
}

#[test]
fn address_dimension_folds_covering_prefixes() {
    let rs = compile_rules(&[
        "{ id: wide, action: drop, src: 10.0.0.0/8, proto: tcp }",
        "{ id: narrow, action: pass, src: 10.1.0.0/16, proto: tcp, priority: 200 }",
    ]);
    let c = classifier(&rs, V4);
    assert_eq!(
        c.active_dims,
        dims(&[fw_dim::FW_DIM_SRC, fw_dim::FW_DIM_PROTO])
    );
    assert_eq!(
        addr_ids(&rs, V4, Direction::Src, "10.0.0.0/8"),
        Some(vec!["wide"])
    );
    assert_eq!(
        addr_ids(&rs, V4, Direction::Src, "10.1.0.0/16"),
        Some(vec!["wide", "narrow"])
    );
    assert_eq!(addr_ids(&rs, V4, Direction::Src, "0.0.0.0/0"), None);
    assert_eq!(c.src.len(), 2);
    assert!(c.dst.is_empty());
    // Both rules are IPv4 only.
    assert!(classifier_ids(&rs, V6).is_empty());
    assert_eq!(classifier(&rs, V6).active_dims, 0);

    // A rule without a source adds the default route, and its bit to every prefix.
    let rs = compile_rules(&[
        "{ id: wide, action: drop, src: 10.0.0.0/8, proto: tcp }",
        "{ id: narrow, action: pass, src: 10.1.0.0/16, proto: tcp, priority: 200 }",
        "{ id: anywhere, action: drop, proto: udp, priority: 300 }",
        "{ id: to-net, action: drop, dst: 192.0.2.0/24, proto: udp, priority: 400 }",
    ]);
    let c = classifier(&rs, V4);
    assert_eq!(
        c.active_dims,
        dims(&[fw_dim::FW_DIM_SRC, fw_dim::FW_DIM_DST, fw_dim::FW_DIM_PROTO])
    );
    let src = |prefix| addr_ids(&rs, V4, Direction::Src, prefix);
    assert_eq!(src("0.0.0.0/0"), Some(vec!["anywhere", "to-net"]));
    assert_eq!(src("10.0.0.0/8"), Some(vec!["wide", "anywhere", "to-net"]));
    assert_eq!(
        src("10.1.0.0/16"),
        Some(vec!["wide", "narrow", "anywhere", "to-net"])
    );
    assert_eq!(c.src.len(), 3);
    let dst = |prefix| addr_ids(&rs, V4, Direction::Dst, prefix);
    assert_eq!(dst("0.0.0.0/0"), Some(vec!["wide", "narrow", "anywhere"]));
    assert_eq!(
        dst("192.0.2.0/24"),
        Some(vec!["wide", "narrow", "anywhere", "to-net"])
    );
    assert_eq!(c.dst.len(), 2);

    // IPv6 only sees `anywhere`; no rule names an IPv6 address there, so no address dimension.
    assert_eq!(classifier_ids(&rs, V6), ["anywhere"]);
    let c6 = classifier(&rs, V6);
    assert_eq!(c6.active_dims, dims(&[fw_dim::FW_DIM_PROTO]));
    assert!(c6.src.is_empty() && c6.dst.is_empty());
}

#[test]
fn an_explicit_default_route_is_not_the_wildcard() {
    let rs = compile_rules(&[
        "{ id: everything, action: drop, src: 0.0.0.0/0, proto: tcp }",
        "{ id: net, action: drop, src: 192.0.2.0/24, proto: tcp }",
    ]);
    assert_eq!(
        addr_ids(&rs, V4, Direction::Src, "0.0.0.0/0"),
        Some(vec!["everything"])
    );
    assert_eq!(
        addr_ids(&rs, V4, Direction::Src, "192.0.2.0/24"),
        Some(vec!["everything", "net"])
    );
}

// ---- family applicability -------------------------------------------------------------------

#[test]
fn rules_apply_to_the_families_they_can_match() {
    let rs = compile_rules(&[
        "{ id: ping4, action: drop, proto: icmp }",
        "{ id: ping6, action: drop, proto: icmpv6 }",
        "{ id: v6-src, action: drop, src: \"2001:db8::/32\", proto: tcp }",
        "{ id: v4-dst, action: drop, dst: 192.0.2.0/24, proto: tcp }",
        "{ id: anywhere, action: pass, proto: tcp, dst_port: 443 }",
        "{ id: mixed, action: pass, src: [10.0.0.0/8, \"2001:db8::/32\"], proto: udp }",
        "{ id: mixed-v6-dst, action: pass, src: [10.0.0.0/8, \"fd00::/8\"], dst: \"2001:db8::1\" }",
        "{ id: raw, action: drop, proto: 47 }",
    ]);
    assert_eq!(
        classifier_ids(&rs, V4),
        ["ping4", "v4-dst", "anywhere", "mixed", "raw"]
    );
    assert_eq!(
        classifier_ids(&rs, V6),
        [
            "ping6",
            "v6-src",
            "anywhere",
            "mixed",
            "mixed-v6-dst",
            "raw"
        ]
    );
    assert_eq!(rs.settings.general_rules, [5, 6]);
    // Bits are dense per family: the v4 bit of `anywhere` is 2, the v6 one 2 as well.
    assert_eq!(bit(&rs, V4, "anywhere"), 2);
    assert_eq!(bit(&rs, V6, "mixed"), 3);
    assert_eq!(
        addr_ids(&rs, V6, Direction::Src, "fd00::/8"),
        Some(vec!["ping6", "anywhere", "mixed-v6-dst", "raw"])
    );
    assert_eq!(
        addr_ids(&rs, V6, Direction::Src, "2001:db8::/32"),
        Some(vec!["ping6", "v6-src", "anywhere", "mixed", "raw"])
    );
    assert_eq!(
        addr_ids(&rs, V6, Direction::Src, "::/0"),
        Some(vec!["ping6", "anywhere", "raw"])
    );
    assert_eq!(
        addr_ids(&rs, V4, Direction::Src, "10.0.0.0/8"),
        Some(vec!["ping4", "v4-dst", "anywhere", "mixed", "raw"])
    );
    assert_eq!(value_ids(&rs, V4, fw_dim::FW_DIM_PROTO, 47), ["raw"]);
    assert_eq!(
        value_ids(&rs, V6, fw_dim::FW_DIM_PROTO, 47),
        ["mixed-v6-dst", "raw"]
    );
}

// ---- limits ---------------------------------------------------------------------------------

fn many_rules(n: usize, rule: impl Fn(usize) -> String) -> String {
    let rules: Vec<String> = (0..n).map(rule).collect();
    let refs: Vec<&str> = rules.iter().map(String::as_str).collect();
    with_rules(&refs)
}

#[test]
fn at_most_4096_general_rules_per_family() {
    let v4 = |i: usize| format!("{{ id: r{i}, action: drop, src: 10.0.0.0/8, proto: tcp }}");
    let rs = compile_yaml(&many_rules(4096, v4));
    assert_eq!(rs.settings.general_rules, [4096, 0]);
    let err = compile_error(&many_rules(4097, v4));
    assert!(err.contains("4097 general IPv4 rules"), "{err}");
    assert!(err.contains("the limit is 4096"), "{err}");

    let v6 = |i: usize| format!("{{ id: r{i}, action: drop, dst: \"2001:db8::/32\", proto: udp }}");
    let err = compile_error(&many_rules(4097, v6));
    assert!(err.contains("4097 general IPv6 rules"), "{err}");

    // CIDR-only rules do not count.
    let mut text = many_rules(4096, v4);
    for i in 0..100 {
        text.push_str(&format!(
            "    - {{ id: c{i}, action: drop, src: 10.9.{i}.0/24 }}\n"
        ));
    }
    let rs = compile_yaml(&text);
    assert_eq!(rs.ranks.len(), 4196);
    assert_eq!(rs.settings.general_rules, [4096, 0]);
}

#[test]
fn at_most_16384_ranks() {
    // The config layer caps the rule count at the same figure; the compiler checks anyway.
    let mut fw = parse(&with_rules(&["{ id: r, action: drop, src: 10.0.0.1 }"])).firewall;
    let template = fw.rules[0].clone();
    fw.rules = (0..=abi::MAX_RANKS)
        .map(|i| {
            let mut r = template.clone();
            r.id = format!("r{i}");
            r
        })
        .collect();
    let err = format!("{:#}", compile(&fw).expect_err("too many ranks"));
    assert!(err.contains("16385 firewall rules"), "{err}");
    assert!(err.contains("the limit is 16384"), "{err}");
}

/// `n` IPv4 rules whose match sets are all distinct across dimensions: rule i accepts
/// destination ports i..=i+n (prefixes {0..=p} and suffixes {k..n-1} of the rules: 2n-1
/// sets), source ports i..=i+3 (windows of four: n-5 new sets) and one source host
/// (singletons: n-2 new sets), plus the empty set: 4n-7 bitmaps.
fn distinct_sets(n: usize) -> String {
    many_rules(n, |i| {
        format!(
            "{{ id: r{i}, action: drop, src: 10.{}.{}.1, src_port: \"{i}-{}\", dst_port: \"{i}-{}\" }}",
            i / 256,
            i % 256,
            i + 3,
            i + n
        )
    })
}

#[test]
fn match_sets_are_counted_exactly() {
    let rs = compile_yaml(&distinct_sets(10));
    assert_eq!(rs.bitmaps.len(), 33);
    let c = classifier(&rs, V4);
    assert_eq!(
        c.active_dims,
        dims(&[
            fw_dim::FW_DIM_SRC,
            fw_dim::FW_DIM_SPORT,
            fw_dim::FW_DIM_DPORT
        ])
    );
    let dport = fw_dim::FW_DIM_DPORT;
    assert_eq!(bits_of(&rs, value_index(&rs, V4, dport, 3)), [0, 1, 2, 3]);
    assert_eq!(bits_of(&rs, value_index(&rs, V4, dport, 17)), [7, 8, 9]);
    assert!(bits_of(&rs, value_index(&rs, V4, dport, 20)).is_empty());
    let sport = fw_dim::FW_DIM_SPORT;
    assert_eq!(bits_of(&rs, value_index(&rs, V4, sport, 6)), [3, 4, 5, 6]);
    assert_eq!(
        addr_ids(&rs, V4, Direction::Src, "10.0.4.1/32"),
        Some(vec!["r4"])
    );
    // Every pool entry is distinct.
    let unique: std::collections::HashSet<&Bits> = rs.bitmaps.iter().collect();
    assert_eq!(unique.len(), rs.bitmaps.len());
}

#[test]
fn more_distinct_match_sets_than_the_pool_holds_fail() {
    assert_eq!(abi::BITMAP_POOL_PER_GEN, 8191);
    let rs = compile_yaml(&distinct_sets(2049));
    assert_eq!(rs.bitmaps.len(), 8189);
    let err = compile_error(&distinct_sets(2050));
    assert!(
        err.contains("the general rules need 8193 distinct match sets, the limit is 8191"),
        "{err}"
    );
}

// ---- settings -------------------------------------------------------------------------------

#[test]
fn empty_config_settings() {
    let rs = compile_yaml("firewall:\n");
    let s = rs.settings;
    assert_eq!(
        (s.default_action, s.malformed_action, s.flags),
        (PASS, DROP, 0)
    );
    assert_eq!(s.family_flags, [0, 0]);
    assert_eq!(s.general_rules, [0, 0]);
    assert_eq!(s.active_dims, [0, 0]);
    assert!(rs.ranks.is_empty() && rs.bitmaps.is_empty());
    assert_eq!(rs.cidr_entries(), 0);
    assert!(rs.allow.iter().all(Vec::is_empty));
}

#[test]
fn settings_carry_policies_monitor_mode_and_family_flags() {
    let rs = compile_yaml(
        "firewall:
  mode: monitor
  default_policy: drop
  malformed: pass
  allowlist: [198.51.100.0/24]
  rules:
    - { id: s4, action: drop, src: 192.0.2.1 }
    - { id: d4, action: drop, dst: 192.0.2.0/24 }
    - { id: s6, action: drop, src: \"2001:db8::/32\" }
    - { id: d6, action: drop, dst: \"2001:db8::1\" }
    - { id: g, action: drop, proto: tcp, dst_port: 25 }
    - { id: g6, action: drop, proto: icmpv6 }
",
    );
    let s = rs.settings;
    assert_eq!(s.default_action, DROP);
    assert_eq!(s.malformed_action, PASS);
    assert_eq!(s.flags, fw_settings_flags::FW_SET_MONITOR.0 as u8);
    let f = |bits: &[fw_family_flags]| bits.iter().fold(0u8, |acc, b| acc | b.0 as u8);
    assert_eq!(
        s.family_flags[0],
        f(&[
            fw_family_flags::FW_FAM_ALLOWLIST,
            fw_family_flags::FW_FAM_SRC_EXACT,
            fw_family_flags::FW_FAM_DST_LPM,
        ])
    );
    assert_eq!(
        s.family_flags[1],
        f(&[
            fw_family_flags::FW_FAM_SRC_LPM,
            fw_family_flags::FW_FAM_DST_EXACT,
        ])
    );
    assert_eq!(s.general_rules, [1, 2]);
    let ports = dims(&[fw_dim::FW_DIM_PROTO, fw_dim::FW_DIM_DPORT]);
    assert_eq!(s.active_dims, [ports, ports]);

    let enforce = compile_yaml("firewall:\n  mode: enforce\n  default_policy: pass\n");
    assert_eq!(enforce.settings.flags, 0);
    assert_eq!(enforce.settings.default_action, PASS);
}

#[test]
fn a_rule_without_match_fields_is_a_general_rule_of_both_families() {
    let rs = compile_rules(&["{ id: everything, action: drop, log: true }"]);
    assert!(!rs.ranks[0].cidr_only);
    assert_eq!(rs.cidr_entries(), 0);
    for family in FAMILIES {
        let c = classifier(&rs, family);
        assert_eq!(classifier_ids(&rs, family), ["everything"]);
        assert_eq!(triple(&c.rules[0]), (0, DROP, LOG));
        // No dimension to look up: the kernel ANDs only FW_BITMAP_ALL and takes bit 0.
        assert_eq!(c.active_dims, 0);
        assert!(c.src.is_empty() && c.dst.is_empty());
        assert!(c.values.iter().all(Vec::is_empty));
    }
    assert_eq!(rs.settings.general_rules, [1, 1]);
    assert!(rs.bitmaps.is_empty());

    // Next to constrained rules it is a wildcard in every active dimension.
    let rs = compile_rules(&[
        "{ id: ssh, action: pass, proto: tcp, dst_port: 22, src: 10.0.0.0/8 }",
        "{ id: everything, action: drop }",
    ]);
    assert_eq!(
        value_ids(&rs, V4, fw_dim::FW_DIM_DPORT, 22),
        ["ssh", "everything"]
    );
    assert_eq!(
        value_ids(&rs, V4, fw_dim::FW_DIM_DPORT, ABSENT),
        ["everything"]
    );
    assert_eq!(value_ids(&rs, V4, fw_dim::FW_DIM_PROTO, 17), ["everything"]);
    assert_eq!(
        addr_ids(&rs, V4, Direction::Src, "0.0.0.0/0"),
        Some(vec!["everything"])
    );
    assert_eq!(classifier_ids(&rs, V6), ["everything"]);
    assert_eq!(classifier(&rs, V6).active_dims, 0);
}
