use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use ipnet::IpNet;

use super::yaml::{self, Scalar};
use super::*;

const CONFIG_PATH: &str = "/etc/ebpfsentinel/config.yaml";
const FEEDS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/data/feeds");

/// Marks the position an error must point at; removed before parsing.
const HERE: char = '»';

const EXAMPLE: &str = r#"interfaces: [wan0]
xdp_mode: auto               # auto | native | generic
pin_root: /sys/fs/bpf/ebpfsentinel
firewall:
  mode: enforce              # enforce | monitor
  default_policy: pass       # pass | drop
  malformed: drop            # drop | pass
  allowlist: [198.51.100.0/24, "@monitoring"]
  aliases:
    spamhaus: { file: /work/shared/data/feeds/spamhaus_drop.netset }
    monitoring: { entries: [192.0.2.10, "2001:db8::10"] }
  rules:
    - { id: drop-spamhaus, action: drop, src: "@spamhaus" }
    - { id: no-telnet, action: drop, proto: tcp, dst_port: 23, log: true }
    - { id: lan-dns, action: pass, proto: udp, src: 10.0.0.0/8, dst_port: "53", priority: 10 }
    - { id: v6-net, action: drop, src: "2001:db8:bad::/48" }
"#;

fn example() -> String {
    EXAMPLE.replace("/work/shared/data/feeds", FEEDS)
}

fn parse(text: &str) -> Result<Config, ConfigErrors> {
    parse_str(text, Path::new(CONFIG_PATH))
}

fn net(text: &str) -> IpNet {
    text.parse().expect("test network literal")
}

fn nets(texts: &[&str]) -> Vec<IpNet> {
    texts.iter().map(|text| net(text)).collect()
}

fn errors_of(text: &str) -> Vec<ConfigError> {
    match parse(text) {
        Ok(config) => panic!("expected errors, got {config:#?}"),
        Err(ConfigErrors(errors)) => errors,
    }
}

/// Strips the `HERE` marker and returns the text with the marker's 1-based line and column.
fn strip_marker(marked: &str) -> (String, usize, usize) {
    let offset = marked.find(HERE).expect("test text has a » marker");
    let before = &marked[..offset];
    let line = before.matches('\n').count() + 1;
    let col = before[before.rfind('\n').map_or(0, |nl| nl + 1)..]
        .chars()
        .count()
        + 1;
    (marked.replacen(HERE, "", 1), line, col)
}

/// Asserts that parsing fails with an error located exactly at the `»` marker whose message
/// contains `needle`.
fn assert_error(marked: &str, needle: &str) {
    let (text, line, col) = strip_marker(marked);
    let errors = errors_of(&text);
    let expected = Location {
        file: PathBuf::from(CONFIG_PATH),
        line,
        col,
    };
    assert!(
        errors
            .iter()
            .any(|e| e.location.as_ref() == Some(&expected) && e.message.contains(needle)),
        "no error at {expected} containing {needle:?}; got:\n{}",
        ConfigErrors(errors.clone())
    );
}

/// Wraps one rule in a firewall section; the rule sits on line 3.
fn with_rule(rule: &str) -> String {
    format!("firewall:\n  rules:\n    - {rule}\n")
}

fn parse_ok(text: &str) -> Config {
    parse(text).unwrap_or_else(|errors| panic!("unexpected errors:\n{errors}"))
}

fn single_rule(rule: &str) -> Rule {
    let mut rules = parse_ok(&with_rule(rule)).firewall.rules;
    assert_eq!(rules.len(), 1);
    rules.remove(0)
}

struct TempFile(PathBuf);

impl TempFile {
    fn new(name: &str, contents: &str) -> TempFile {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let unique = format!(
            "ebpfsentinel-config-{}-{}-{name}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        let path = std::env::temp_dir().join(unique);
        std::fs::write(&path, contents).expect("write temp file");
        TempFile(path)
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn feed_alias(file: &str) -> Alias {
    let text = format!("firewall:\n  aliases:\n    feed: {{ file: {FEEDS}/{file} }}\n");
    parse_ok(&text)
        .firewall
        .aliases
        .remove("feed")
        .expect("alias feed")
}

#[test]
fn example_config_parses() {
    let config = parse_ok(&example());
    assert_eq!(config.path, PathBuf::from(CONFIG_PATH));
    assert_eq!(config.interfaces, ["wan0"]);
    assert_eq!(config.xdp_mode, XdpMode::Auto);
    assert_eq!(config.pin_root, PathBuf::from("/sys/fs/bpf/ebpfsentinel"));
    let fw = &config.firewall;
    assert_eq!(fw.mode, FirewallMode::Enforce);
    assert_eq!(fw.default_policy, Action::Pass);
    assert_eq!(fw.malformed, Action::Drop);
    assert_eq!(
        fw.allowlist,
        nets(&["198.51.100.0/24", "192.0.2.10/32", "2001:db8::10/128"])
    );

    assert_eq!(
        fw.aliases.keys().collect::<Vec<_>>(),
        ["monitoring", "spamhaus"]
    );
    let spamhaus = &fw.aliases["spamhaus"];
    assert_eq!(spamhaus.entries.len(), 926);
    assert_eq!(spamhaus.entries[0], net("1.10.16.0/20"));
    assert_eq!((spamhaus.location.line, spamhaus.location.col), (10, 5));
    assert_eq!(
        fw.aliases["monitoring"].entries,
        nets(&["192.0.2.10/32", "2001:db8::10/128"])
    );

    let ids: Vec<&str> = fw.rules.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(ids, ["drop-spamhaus", "no-telnet", "lan-dns", "v6-net"]);
    let [spam, telnet, dns, v6] = &fw.rules[..] else {
        panic!("four rules")
    };

    assert_eq!((spam.location.line, spam.location.col), (13, 7));
    assert_eq!(spam.action, Action::Drop);
    assert!(!spam.log);
    assert_eq!(spam.priority, DEFAULT_PRIORITY);
    let spam_src = spam.src.as_ref().expect("src");
    assert_eq!(spam_src.aliases, ["spamhaus"]);
    assert_eq!(spam_src.nets, spamhaus.entries);
    assert_eq!((spam.dst.as_ref(), spam.proto), (None, None));

    assert_eq!(telnet.proto, Some(Proto::Tcp));
    assert_eq!(telnet.dst_port, Some(PortRange { lo: 23, hi: 23 }));
    assert_eq!(telnet.src_port, None);
    assert!(telnet.log);

    assert_eq!(dns.action, Action::Pass);
    assert_eq!(dns.proto, Some(Proto::Udp));
    assert_eq!(
        dns.src,
        Some(AddrMatch {
            nets: nets(&["10.0.0.0/8"]),
            aliases: vec![]
        })
    );
    assert_eq!(dns.dst_port, Some(PortRange { lo: 53, hi: 53 }));
    assert_eq!(dns.priority, 10);

    assert_eq!(
        v6.src.as_ref().map(|m| m.nets.clone()),
        Some(nets(&["2001:db8:bad::/48"]))
    );
    assert_eq!(
        (v6.vlan, v6.tcp_flags, v6.icmp_type, v6.icmp_code),
        (None, None, None, None)
    );
}

#[test]
fn empty_documents_and_sections_mean_defaults() {
    for text in [
        "",
        "# nothing yet\n",
        "firewall:\n",
        "firewall:\n  rules:\n  aliases:\n",
    ] {
        let config = parse_ok(text);
        assert!(config.interfaces.is_empty());
        assert_eq!(config.xdp_mode, XdpMode::Auto);
        assert_eq!(config.pin_root, PathBuf::from(DEFAULT_PIN_ROOT));
        assert_eq!(config.firewall.mode, FirewallMode::Enforce);
        assert_eq!(config.firewall.default_policy, Action::Pass);
        assert_eq!(config.firewall.malformed, Action::Drop);
        assert!(config.firewall.rules.is_empty() && config.firewall.aliases.is_empty());
    }
}

#[test]
fn keywords_are_mapped() {
    let config = parse_ok(
        "xdp_mode: generic\nfirewall:\n  mode: monitor\n  default_policy: drop\n  malformed: pass\n",
    );
    assert_eq!(config.xdp_mode, XdpMode::Generic);
    assert_eq!(config.firewall.mode, FirewallMode::Monitor);
    assert_eq!(config.firewall.default_policy, Action::Drop);
    assert_eq!(config.firewall.malformed, Action::Pass);
    assert_eq!(parse_ok("xdp_mode: native\n").xdp_mode, XdpMode::Native);
}

#[test]
fn error_display_formats() {
    let location = Location {
        file: PathBuf::from("/a/c.yaml"),
        line: 3,
        col: 7,
    };
    assert_eq!(location.to_string(), "/a/c.yaml:3:7");
    let located = ConfigError {
        location: Some(location),
        message: "bad".into(),
    };
    let unlocated = ConfigError {
        location: None,
        message: "/a/c.yaml: unreadable".into(),
    };
    assert_eq!(located.to_string(), "/a/c.yaml:3:7: bad");
    assert_eq!(
        ConfigErrors(vec![located, unlocated]).to_string(),
        "/a/c.yaml:3:7: bad\n/a/c.yaml: unreadable"
    );

    let errors = parse("xdp_mode: fast\npin_root: relative\n").expect_err("two errors");
    assert_eq!(
        errors.to_string(),
        "/etc/ebpfsentinel/config.yaml:1:11: expected one of auto | native | generic, found string \"fast\"\n\
         /etc/ebpfsentinel/config.yaml:2:11: pin_root must be an absolute path, found `relative`"
    );
}

#[test]
fn load_reads_files_and_reports_io_errors() {
    let file = TempFile::new("config.yaml", "interfaces: [eth0]\n");
    assert_eq!(load(&file.0).expect("valid config").interfaces, ["eth0"]);

    let missing = Path::new("/nonexistent/ebpfsentinel/config.yaml");
    let ConfigErrors(errors) = load(missing).expect_err("missing file");
    assert_eq!(errors.len(), 1);
    assert!(errors[0].location.is_none());
    assert!(errors[0]
        .message
        .starts_with("/nonexistent/ebpfsentinel/config.yaml: cannot read config"));
}

#[test]
fn every_error_is_collected() {
    // The duplicate key is found while reading the YAML, before everything else, yet it is
    // listed in reading order.
    let text = "xdp_mode: fast\nfirewall:\n  mode: loud\n  rules:\n    - { id: a, action: drop, log: 1 }\n    - { id: a, action: maybe }\nxdp_mode: auto\n";
    let errors = errors_of(text);
    let positions: Vec<(usize, usize)> = errors
        .iter()
        .filter_map(|e| e.location.as_ref().map(|l| (l.line, l.col)))
        .collect();
    assert_eq!(
        positions,
        [(1, 11), (3, 9), (5, 35), (6, 13), (6, 24), (7, 1)]
    );
}

#[test]
fn unknown_keys_name_the_key_and_list_allowed_ones() {
    assert_error("interfaces: []\n»iface: eth0\n", "unknown key `iface` in the top level; allowed keys: interfaces, xdp_mode, tc_mode, pin_root, metrics, events, firewall, ratelimit, ddos, conntrack, threatintel, ips");
    assert_error("firewall:\n  »policy: drop\n", "unknown key `policy` in firewall; allowed keys: mode, default_policy, malformed, allowlist, aliases, rules");
    assert_error(
        &with_rule("{ id: a, action: drop, »port: 80 }"),
        "unknown key `port` in a rule; allowed keys: id, action, log, priority, src, dst",
    );
    assert_error(
        "firewall:\n  aliases:\n    x: { entries: [10.0.0.0/8], »url: y }\n",
        "unknown key `url` in an alias; allowed keys: file, entries",
    );
}

#[test]
fn duplicate_mapping_keys_are_rejected_everywhere() {
    assert_error(
        "xdp_mode: auto\n»xdp_mode: native\n",
        "duplicate key `xdp_mode` (first defined at line 1, column 1)",
    );
    assert_error(
        &with_rule("{ id: a, action: drop, »action: pass }"),
        "duplicate key `action` (first defined at line 3, column 16)",
    );
    assert_error("firewall:\n  aliases:\n    a: { entries: [10.0.0.0/8] }\n    »a: { entries: [10.0.0.0/8] }\n", "duplicate key `a`");
}

#[test]
fn anchors_aliases_tags_and_complex_keys_are_rejected() {
    assert_error(
        "xdp_mode: &mode »auto\n",
        "YAML anchors (&name) are not supported",
    );
    assert_error("xdp_mode: auto\npin_root: »*mode\n", "YAML syntax error");
    assert_error(
        "xdp_mode: &m auto\nfirewall:\n  mode: »*m\n",
        "YAML aliases (*name) are not supported",
    );
    assert_error("xdp_mode: !!str »auto\n", "YAML tags are not supported");
    assert_error("? »[a, b]\n: c\n", "mapping keys must be plain strings");
    let ConfigErrors(errors) =
        parse("firewall:\n  mode: &m monitor\n  default_policy: *m\n").expect_err("alias");
    assert_eq!(
        errors.len(),
        2,
        "the alias is not also reported as a wrong type"
    );
}

#[test]
fn syntax_errors_and_extra_documents_are_reported() {
    assert_error("firewall:\n  rules: [\n»", "YAML syntax error");
    assert_error(
        "xdp_mode: auto\n»---\nxdp_mode: native\n",
        "only one YAML document is allowed",
    );
    assert_error(
        "»- a\n- b\n",
        "expected the top level (a mapping), found a list",
    );
    // The top-level mapping plus 63 lists is the deepest accepted.
    let nested = |depth: usize| format!("interfaces: {}{}\n", "[".repeat(depth), "]".repeat(depth));
    assert!(parse(&nested(63)).is_err_and(|e| !e.to_string().contains("nesting")));
    let too_deep = format!("interfaces: {}»[{}\n", "[".repeat(63), "]".repeat(64));
    assert_error(&too_deep, "YAML nesting deeper than 64 levels");
}

#[test]
fn wrong_types_say_what_was_expected() {
    assert_error(
        &with_rule("{ id: a, action: drop, log: »\"yes\" }"),
        "expected a boolean (true or false), found string \"yes\"",
    );
    assert_error(
        &with_rule("{ id: a, action: drop, log: »yes }"),
        "expected a boolean (true or false), found string \"yes\"",
    );
    assert_error(
        &with_rule("{ id: a, action: drop, priority: »-1 }"),
        "expected an integer in 0..=1000000, found integer -1",
    );
    assert_error(
        &with_rule("{ id: a, action: drop, priority: »1000001 }"),
        "expected an integer in 0..=1000000",
    );
    assert_error(
        &with_rule("{ id: a, action: drop, priority: »1.5 }"),
        "found float 1.5",
    );
    assert_error(
        "firewall:\n  rules: »{ id: a }\n",
        "expected a list of rules, found a mapping",
    );
    assert_error(
        "firewall:\n  rules:\n    - »just-a-string\n",
        "expected a rule (a mapping), found string \"just-a-string\"",
    );
    assert_error(
        "firewall: »[]\n",
        "expected firewall (a mapping), found a list",
    );
    assert_error(
        "interfaces: »{ a: b }\n",
        "expected a string or a list of strings, found a mapping",
    );
    assert_error("interfaces: [»7]\n", "expected a string, found integer 7");
    assert_error(
        "firewall:\n  mode: »true\n",
        "expected one of enforce | monitor, found boolean true",
    );
    assert_error(
        "firewall:\n  default_policy: »reject\n",
        "expected one of pass | drop",
    );
    assert_error(
        "firewall:\n  »malformed:\n",
        "expected one of pass | drop, found null",
    );
    assert_error(
        &with_rule("{ id: a, action: »deny }"),
        "expected one of pass | drop, found string \"deny\"",
    );
    assert_error(
        &with_rule("{ »id: , action: drop }"),
        "expected a string, found null",
    );
    assert_error(
        &with_rule("{ id: a, action: drop, icmp_type: »256, proto: icmp }"),
        "expected an integer in 0..=255",
    );
}

#[test]
fn missing_required_rule_keys() {
    assert_error(&with_rule("»{ id: a }"), "missing required key `action`");
    assert_error(&with_rule("»{ action: drop }"), "missing required key `id`");
    assert_error(
        "firewall:\n  rules:\n    - »id: a\n      log: true\n",
        "missing required key `action`",
    );
}

#[test]
fn rule_ids_are_unique_and_well_formed() {
    assert_error(
        "firewall:\n  rules:\n    - { id: a, action: drop }\n    - { id: »a, action: pass }\n",
        "duplicate rule id `a` (first defined at line 3, column 13)",
    );
    assert_error(
        &with_rule("{ id: »\"\", action: drop }"),
        "rule id must not be empty",
    );
    assert_error(
        &with_rule("{ id: »\"has space\", action: drop }"),
        "invalid rule id `has space`",
    );
    let long = "x".repeat(65);
    assert_error(
        &with_rule(&format!("{{ id: »{long}, action: drop }}")),
        "invalid rule id",
    );
    assert_eq!(
        single_rule(&format!("{{ id: \"{}\", action: drop }}", &long[1..]))
            .id
            .len(),
        64
    );
    assert_eq!(
        single_rule("{ id: \"a_b.c:d-9\", action: drop }").id,
        "a_b.c:d-9"
    );
}

#[test]
fn bad_addresses_are_rejected_with_hints() {
    assert_error(
        &with_rule("{ id: a, action: drop, src: »10.0.0.1/8 }"),
        "`10.0.0.1/8` has host bits set; did you mean `10.0.0.0/8`?",
    );
    assert_error(
        &with_rule("{ id: a, action: drop, dst: [10.0.0.0/8, »\"2001:db8::1/32\"] }"),
        "did you mean `2001:db8::/32`?",
    );
    assert_error(
        &with_rule("{ id: a, action: drop, src: »10.0.0.0/33 }"),
        "invalid CIDR `10.0.0.0/33`",
    );
    assert_error(
        &with_rule("{ id: a, action: drop, src: »300.1.1.1 }"),
        "invalid IP address `300.1.1.1`",
    );
    assert_error(
        &with_rule("{ id: a, action: drop, src: »[] }"),
        "`src` must list at least one address or alias",
    );
    assert_error(
        "firewall:\n  allowlist: [»example.com]\n",
        "invalid IP address `example.com`",
    );
    assert_error(
        "firewall:\n  aliases:\n    x: { entries: [»10.1.1.1/16] }\n",
        "did you mean `10.1.0.0/16`?",
    );
}

#[test]
fn addresses_accept_hosts_cidrs_and_lists() {
    let rule = single_rule(
        "{ id: a, action: drop, src: 1.2.3.4, dst: [1.2.3.4/32, 5.6.0.0/16, 1.2.3.4] }",
    );
    assert_eq!(rule.src.expect("src").nets, nets(&["1.2.3.4/32"]));
    assert_eq!(
        rule.dst.expect("dst").nets,
        nets(&["1.2.3.4/32", "5.6.0.0/16"])
    );
    let mixed = single_rule(
        "{ id: a, action: drop, src: [10.0.0.0/8, \"fd00::/8\"], dst: \"2001:db8::1\" }",
    );
    assert_eq!(mixed.dst.expect("dst").nets, nets(&["2001:db8::1/128"]));
}

#[test]
fn ports_single_and_ranges() {
    let rule = single_rule("{ id: a, action: drop, src_port: \"1024-65535\", dst_port: 0 }");
    assert_eq!(
        rule.src_port,
        Some(PortRange {
            lo: 1024,
            hi: 65535
        })
    );
    assert_eq!(rule.dst_port, Some(PortRange { lo: 0, hi: 0 }));
    assert_eq!(
        single_rule("{ id: a, action: drop, dst_port: \"80 - 81\" }").dst_port,
        Some(PortRange { lo: 80, hi: 81 })
    );
    let expected = "expected a port 0..=65535 or a range \"N-M\" with N <= M";
    for bad in [
        "70000",
        "-1",
        "\"90-80\"",
        "\"http\"",
        "\"1-70000\"",
        "[80]",
    ] {
        assert_error(
            &with_rule(&format!("{{ id: a, action: drop, dst_port: »{bad} }}")),
            expected,
        );
    }
}

#[test]
fn protocols_by_name_and_number() {
    assert_eq!(
        single_rule("{ id: a, action: drop, proto: 6 }").proto,
        Some(Proto::Tcp)
    );
    assert_eq!(
        single_rule("{ id: a, action: drop, proto: 17 }").proto,
        Some(Proto::Udp)
    );
    assert_eq!(
        single_rule("{ id: a, action: drop, proto: 58 }").proto,
        Some(Proto::Icmpv6)
    );
    assert_eq!(
        single_rule("{ id: a, action: drop, proto: icmp }").proto,
        Some(Proto::Icmp)
    );
    let gre = single_rule("{ id: a, action: drop, proto: 47 }")
        .proto
        .expect("proto");
    assert_eq!((gre, gre.number()), (Proto::Other(47), 47));
    assert_eq!(
        [Proto::Tcp, Proto::Udp, Proto::Icmp, Proto::Icmpv6].map(|p| p.number()),
        [6, 17, 1, 58]
    );
    assert_error(
        &with_rule("{ id: a, action: drop, proto: »256 }"),
        "expected one of tcp | udp | icmp | icmpv6 or a protocol number 0..=255, found integer 256",
    );
    assert_error(
        &with_rule("{ id: a, action: drop, proto: »sctp }"),
        "found string \"sctp\"",
    );
}

#[test]
fn vlan_ids_and_untagged() {
    assert_eq!(
        single_rule("{ id: a, action: drop, vlan: 4094 }").vlan,
        Some(VlanMatch::Id(4094))
    );
    assert_eq!(
        single_rule("{ id: a, action: drop, vlan: untagged }").vlan,
        Some(VlanMatch::Untagged)
    );
    assert_error(
        &with_rule("{ id: a, action: drop, vlan: »4095 }"),
        "expected a VLAN id 0..=4094 or \"untagged\", found integer 4095",
    );
    assert_error(
        &with_rule("{ id: a, action: drop, vlan: »tagged }"),
        "expected a VLAN id",
    );
}

#[test]
fn tcp_flags_value_and_mask() {
    let flags = |spec: &str| {
        single_rule(&format!(
            "{{ id: a, action: drop, proto: tcp, tcp_flags: \"{spec}\" }}"
        ))
        .tcp_flags
    };
    assert_eq!(
        flags("S/SA"),
        Some(TcpFlags {
            value: 0x02,
            mask: 0x12
        })
    );
    assert_eq!(
        flags("sa"),
        Some(TcpFlags {
            value: 0x12,
            mask: 0x12
        })
    );
    assert_eq!(
        flags("/FSRPAUEC"),
        Some(TcpFlags {
            value: 0,
            mask: 0xff
        })
    );
    assert_eq!(
        flags("R"),
        Some(TcpFlags {
            value: 0x04,
            mask: 0x04
        })
    );
    let bad = |spec: &str, needle: &str| {
        assert_error(
            &with_rule(&format!(
                "{{ id: a, action: drop, proto: tcp, tcp_flags: »\"{spec}\" }}"
            )),
            needle,
        );
    };
    bad("SX", "invalid tcp_flags `SX`: unknown flag `X`");
    bad("SA/A", "must also appear in the mask");
    bad("S/", "must also appear in the mask");
    bad("", "no flags given");
    assert_error(
        &with_rule("{ id: a, action: drop, proto: tcp, tcp_flags: »2 }"),
        "expected a string, found integer 2",
    );
}

#[test]
fn missing_alias_references() {
    assert_error(
        &with_rule("{ id: a, action: drop, src: »\"@nope\" }"),
        "unknown alias `@nope` (no aliases are defined)",
    );
    assert_error(
        "firewall:\n  aliases:\n    b: { entries: [10.0.0.0/8] }\n    a: { entries: [10.0.0.0/8] }\n  allowlist: [»\"@c\"]\n",
        "unknown alias `@c` (defined: a, b)",
    );
    assert_error(
        "firewall:\n  aliases:\n    a: { entries: [10.0.0.0/8] }\n  rules:\n    - { id: r, action: drop, dst: [\"@a\", »\"@b\"] }\n",
        "unknown alias `@b`",
    );
}

#[test]
fn alias_definitions_are_checked() {
    assert_error("firewall:\n  aliases:\n    x: { entries: [10.0.0.0/8, »\"@y\"] }\n    y: { entries: [10.0.0.0/8] }\n", "alias entries cannot reference other aliases (`@y`)");
    assert_error(
        "firewall:\n  aliases:\n    x: »{}\n",
        "alias `x` needs `file` and/or `entries`",
    );
    assert_error(
        "firewall:\n  aliases:\n    »\"bad name\": { entries: [10.0.0.0/8] }\n",
        "invalid alias name `bad name`",
    );
    assert_error(
        "firewall:\n  aliases:\n    x: »[10.0.0.0/8]\n",
        "expected an alias (a mapping), found a list",
    );
    assert_error(
        "firewall:\n  aliases: »[x]\n",
        "expected aliases (a mapping), found a list",
    );
    assert_error(
        "firewall:\n  aliases:\n    x: { file: »missing.netset }\n",
        "cannot read alias file /etc/ebpfsentinel/missing.netset",
    );
}

#[test]
fn alias_references_expand_and_deduplicate() {
    let text = "firewall:\n  aliases:\n    a: { entries: [10.0.0.0/8, 192.0.2.1] }\n    b: { entries: [\"192.0.2.1/32\", 198.51.100.0/24] }\n  allowlist: [\"@a\", \"@b\", 10.0.0.0/8]\n  rules:\n    - { id: r, action: drop, src: [\"@b\", \"@a\", \"@b\"] }\n";
    let config = parse_ok(text);
    assert_eq!(
        config.firewall.allowlist,
        nets(&["10.0.0.0/8", "192.0.2.1/32", "198.51.100.0/24"])
    );
    let src = config.firewall.rules[0].src.clone().expect("src");
    assert_eq!(src.aliases, ["b", "a"]);
    assert_eq!(
        src.nets,
        nets(&["192.0.2.1/32", "198.51.100.0/24", "10.0.0.0/8"])
    );
}

#[test]
fn alias_files_skip_comments_and_locate_bad_lines() {
    let feed = TempFile::new(
        "mixed.netset",
        "# header\n\n; drop list\n1.2.3.0/24 ; SBL123\r\n  10.0.0.1   # host\n2001:db8::/32\n1.2.3.0/24\n\tnot-an-ip here\n10.9.9.9/8\n",
    );
    let dir = feed.0.parent().expect("temp dir");
    let name = feed
        .0
        .file_name()
        .and_then(|n| n.to_str())
        .expect("utf-8 name");
    let text = format!("firewall:\n  aliases:\n    f: {{ file: {name} }}\n");
    let errors = parse_str(&text, &dir.join("config.yaml")).expect_err("bad lines");
    let rendered: Vec<String> = errors.0.iter().map(ToString::to_string).collect();
    assert_eq!(
        rendered,
        [
            format!("{}:8:2: invalid IP address `not-an-ip`", feed.0.display()),
            format!(
                "{}:9:1: `10.9.9.9/8` has host bits set; did you mean `10.0.0.0/8`?",
                feed.0.display()
            ),
        ]
    );

    let good = TempFile::new(
        "good.netset",
        "# header\n1.2.3.0/24 ; SBL123\r\n  10.0.0.1   # host\n2001:db8::/32\n1.2.3.0/24",
    );
    let name = good
        .0
        .file_name()
        .and_then(|n| n.to_str())
        .expect("utf-8 name");
    let text = format!(
        "firewall:\n  aliases:\n    f: {{ file: {name}, entries: [192.0.2.0/24, 10.0.0.1] }}\n"
    );
    let config = parse_str(&text, &dir.join("config.yaml")).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        config.firewall.aliases["f"].entries,
        nets(&["192.0.2.0/24", "10.0.0.1/32", "1.2.3.0/24", "2001:db8::/32"])
    );
}

#[test]
fn alias_files_cap_reported_lines() {
    let feed = TempFile::new("hosts.txt", &"0.0.0.0 ok\nexample.com\n".repeat(30));
    let text = format!(
        "firewall:\n  aliases:\n    f: {{ file: {} }}\n",
        feed.0.display()
    );
    let ConfigErrors(errors) = parse(&text).expect_err("hosts file is not a netset");
    assert_eq!(errors.len(), 21);
    assert_eq!(
        errors[0].location.as_ref().map(|l| (l.line, l.col)),
        Some((2, 1))
    );
    assert_eq!(
        errors[20].message,
        format!("{}: 10 more invalid lines not shown", feed.0.display())
    );
}

#[test]
fn real_feeds_load_completely() {
    // Counts of non-comment lines, checked with `grep -v '^[#;]' FILE | grep -vc '^$'`.
    let drop = feed_alias("spamhaus_drop.netset");
    assert_eq!(drop.entries.len(), 926);
    let firehol = feed_alias("firehol_level1.netset");
    assert_eq!(firehol.entries.len(), 2744);
    // 403 of them are bare addresses (`grep -v '^#' FILE | grep -vc /`).
    assert_eq!(
        firehol
            .entries
            .iter()
            .filter(|n| n.prefix_len() == 32)
            .count(),
        403
    );
    assert!(firehol.entries.contains(&net("0.0.0.0/8")));
    assert_eq!(feed_alias("dshield.netset").entries.len(), 18);
    let v6 = feed_alias("spamhaus_dropv6.txt");
    assert_eq!(v6.entries.len(), 78);
    assert_eq!(v6.entries[0], net("2001:678:6c4::/48"));
    assert!(v6.entries.iter().all(|n| matches!(n, IpNet::V6(_))));
}

#[test]
fn rules_with_disjoint_address_families_are_rejected() {
    assert_error(
        &with_rule("{ id: a, action: drop, src: 10.0.0.0/8, dst: »\"2001:db8::/32\" }"),
        "src is IPv4-only but dst is IPv6-only: the rule can never match",
    );
    assert_error(
        &with_rule("{ id: a, action: drop, src: \"::/0\", dst: »[1.1.1.1, 2.2.2.2] }"),
        "src is IPv6-only but dst is IPv4-only",
    );
    single_rule("{ id: a, action: drop, src: [10.0.0.0/8, \"::/0\"], dst: \"2001:db8::/32\" }");
}

#[test]
fn protocol_specific_fields_need_their_protocol() {
    assert_error(
        &with_rule("{ id: a, action: drop, proto: icmp, dst_port: »80 }"),
        "`dst_port` needs proto tcp or udp, but proto is icmp",
    );
    assert_error(
        &with_rule("{ id: a, action: drop, proto: 47, src_port: »80 }"),
        "`src_port` needs proto tcp or udp, but proto is 47",
    );
    assert_error(
        &with_rule("{ id: a, action: drop, tcp_flags: »S }"),
        "`tcp_flags` needs `proto: tcp`",
    );
    assert_error(
        &with_rule("{ id: a, action: drop, proto: udp, tcp_flags: »S }"),
        "`tcp_flags` needs `proto: tcp`",
    );
    assert_error(
        &with_rule("{ id: a, action: drop, proto: tcp, icmp_type: »8 }"),
        "`icmp_type` needs `proto: icmp` or `proto: icmpv6`",
    );
    assert_error(
        &with_rule("{ id: a, action: drop, icmp_code: »0 }"),
        "`icmp_code` needs `proto: icmp` or `proto: icmpv6`",
    );
    assert_error(
        &with_rule("{ id: a, action: drop, proto: »icmp, src: \"2001:db8::/32\" }"),
        "proto icmp never matches IPv6 addresses; use icmpv6",
    );
    assert_error(
        &with_rule("{ id: a, action: drop, proto: »icmpv6, dst: 192.0.2.0/24 }"),
        "proto icmpv6 never matches IPv4 addresses; use icmp",
    );

    let ping = single_rule(
        "{ id: a, action: drop, proto: icmpv6, icmp_type: 128, icmp_code: 0, src: \"::/0\" }",
    );
    assert_eq!((ping.icmp_type, ping.icmp_code), (Some(128), Some(0)));
    assert_eq!(
        single_rule("{ id: a, action: drop, dst_port: 53 }").proto,
        None
    );
}

#[test]
fn interface_names_are_validated() {
    assert_error(
        "interfaces: [eth0, »\"0123456789abcdef\"]\n",
        "interface name `0123456789abcdef` must be 1 to 15 bytes long",
    );
    assert_error("interfaces: [»\"\"]\n", "must be 1 to 15 bytes long");
    assert_error("interfaces: [»a/b]\n", "must not contain `/`");
    assert_error("interfaces: [»\"a b\"]\n", "must not contain whitespace");
    assert_error(
        "interfaces:\n  - eth0\n  - »eth0\n",
        "duplicate interface `eth0` (first defined at line 2, column 5)",
    );
    assert_eq!(
        parse_ok("interfaces: [\"0123456789abcde\", lo]\n").interfaces,
        ["0123456789abcde", "lo"]
    );
}

#[test]
fn pin_root_must_be_absolute() {
    assert_error("pin_root: »bpf/x\n", "pin_root must be an absolute path");
    assert_eq!(
        parse_ok("pin_root: /sys/fs/bpf/other\n").pin_root,
        PathBuf::from("/sys/fs/bpf/other")
    );
}

#[test]
fn rule_count_limit() {
    let rules: Vec<String> = (0..=MAX_RULES)
        .map(|i| format!("    - {{ id: r{i}, action: drop }}\n"))
        .collect();
    let at_limit = format!("firewall:\n  rules:\n{}", rules[..MAX_RULES].concat());
    assert_eq!(parse_ok(&at_limit).firewall.rules.len(), MAX_RULES);
    let over = format!("firewall:\n  rules:\n    »{}", rules.concat().trim_start());
    assert_error(&over, "16385 rules exceed the limit of 16384");
}

#[test]
fn allowlist_limit_counts_expanded_entries() {
    let entries: String = (0..=MAX_ALLOWLIST_ENTRIES as u32)
        .map(|i| format!("{}\n", std::net::Ipv4Addr::from(0x0a00_0000 + i)))
        .collect();
    let feed = TempFile::new("allow.netset", &entries);
    let text = format!(
        "firewall:\n  aliases:\n    many: {{ file: {} }}\n  allowlist: »[\"@many\"]\n",
        feed.0.display()
    );
    assert_error(
        &text,
        "allowlist has 32769 entries after alias expansion; the limit is 32768",
    );
}

#[test]
fn alias_entry_limit() {
    let mut entries = String::with_capacity(15 * (MAX_ALIAS_ENTRIES + 2));
    for i in 0..=MAX_ALIAS_ENTRIES as u32 {
        entries.push_str(&format!("{}\n", std::net::Ipv4Addr::from(0x0a00_0000 + i)));
    }
    let feed = TempFile::new("huge.netset", &entries);
    let text = format!(
        "firewall:\n  aliases:\n    huge: {{ file: {} }}\n",
        feed.0.display()
    );
    let ConfigErrors(errors) = parse(&text).expect_err("over the limit");
    assert_eq!(errors.len(), 1);
    let expected = Location {
        file: feed.0.clone(),
        line: MAX_ALIAS_ENTRIES + 1,
        col: 1,
    };
    assert_eq!(errors[0].location, Some(expected));
    assert_eq!(errors[0].message, "more than 1000000 entries");
}

/// `cargo test --release --lib config -- --ignored --nocapture` to time a million-line feed.

#[test]
fn plain_scalars_follow_the_yaml_core_schema() {
    let resolve = |text: &str| {
        let (root, errors) = yaml::parse(text);
        assert!(errors.is_empty());
        let root = root.expect("document");
        format!("{:?}", root.scalar().expect("scalar"))
    };
    assert_eq!(resolve("~"), format!("{:?}", Scalar::Null));
    assert_eq!(resolve("True"), format!("{:?}", Scalar::Bool(true)));
    assert_eq!(resolve("yes"), format!("{:?}", Scalar::Str("yes")));
    assert_eq!(resolve("0x1F"), format!("{:?}", Scalar::Int(31)));
    assert_eq!(resolve("0o17"), format!("{:?}", Scalar::Int(15)));
    assert_eq!(resolve("-12"), format!("{:?}", Scalar::Int(-12)));
    assert_eq!(
        resolve("99999999999999999999999999999999999999999"),
        format!("{:?}", Scalar::Int(i128::MAX))
    );
    for float in ["1.5", "1e3", ".5", "-.inf", ".NaN", "6."] {
        assert_eq!(resolve(float), format!("{:?}", Scalar::Float), "{float}");
    }
    for string in ["1.2.3.4", "inf", "0x", "1e", "1-2", "\"12\"", "'true'"] {
        assert!(resolve(string).starts_with("Str("), "{string}");
    }
}

#[test]
fn metrics_and_events_sections() {
    let c = parse_ok("metrics: { listen: \"[::1]:9100\" }\nevents: { path: /var/log/es.json }\n");
    assert_eq!(c.metrics_listen, Some("[::1]:9100".parse().unwrap()));
    assert_eq!(c.events_path, Some(PathBuf::from("/var/log/es.json")));
    let off = parse_ok("metrics: { listen: \"off\" }\n");
    assert_eq!(off.metrics_listen, None);
    let defaults = parse_ok("interfaces: [eth0]\n");
    assert_eq!(defaults.metrics_listen, Some(super::DEFAULT_METRICS_LISTEN));
    assert_eq!(defaults.events_path, None);
    assert_error(
        "metrics: { listen: »\"localhost\" }\n",
        "metrics.listen must be ADDRESS:PORT",
    );
    assert_error(
        "events: { path: »relative.json }\n",
        "events.path must be an absolute path",
    );
    assert_error("metrics: { »port: 9 }\n", "unknown key `port`");
}

#[test]
fn ddos_guards() {
    let c = parse_ok("ddos:\n  icmp: { rate: 50, max_payload: 512 }\n  amplification: {}\n");
    let icmp = c.ddos.icmp.unwrap();
    assert_eq!((icmp.rate, icmp.burst, icmp.max_payload), (50, 50, 512));
    assert_eq!(c.ddos.amplification.len(), super::DEFAULT_AMP_PORTS.len());
    assert_eq!(c.ddos.amplification[1].port, 53);
    let custom = parse_ok("ddos:\n  amplification:\n    ports: [ { port: 123, rate: 5 } ]\n");
    assert_eq!(
        custom.ddos.amplification[0].burst, 10,
        "burst defaults to twice the rate"
    );
    assert!(parse_ok("interfaces: [eth0]\n").ddos.icmp.is_none());
    assert_eq!(
        parse_ok("ddos:\n  syn: { threshold_pps: 20 }\n")
            .ddos
            .syn_threshold_pps,
        Some(20)
    );
    assert_error("ddos:\n  syn: »{}\n", "threshold_pps");
    assert_error(
        "ddos:\n  amplification:\n    ports: [ { port: 53, rate: 5 }, { port: »53, rate: 6 } ]\n",
        "port 53 is listed twice",
    );
    assert_error("ddos:\n  icmp: { »rates: 5 }\n", "unknown key `rates`");
    assert_error(
        "ddos:\n  icmp: { rate: »0 }\n",
        "at least 1 packet per second",
    );
}

#[test]
fn ratelimit_policies() {
    let c = parse_ok(
        "ratelimit:\n  policies:\n    - { id: a, src: 10.0.0.0/8, proto: udp, dst_port: 53, rate: 10, action: pass-and-log, key: policy }\n",
    );
    let p = &c.ratelimit.policies[0];
    assert_eq!((p.rate, p.burst), (10, 10));
    assert_eq!(p.action, super::RateAction::PassAndLog);
    assert_eq!(p.key, super::RateKey::Policy);
    assert_error(
        "ratelimit:\n  policies:\n    - { id: a, proto: icmp, dst_port: »53, rate: 1 }\n",
        "`dst_port` needs proto tcp or udp",
    );
    assert_error(
        "ratelimit:\n  policies:\n    - { id: a, rate: 1, action: »block }\n",
        "expected one of drop | pass-and-log",
    );
    assert_error(
        "ratelimit:\n  policies:\n    - { id: a, rate: 1 }\n    - { id: »a, rate: 2 }\n",
        "duplicate",
    );
}

#[test]
fn conntrack_section_with_every_key() {
    let c = parse_ok(
        "conntrack:
  enabled: true
  table_size: 1048576
  fast_path: false
  invalid: drop
  sweep_interval: 30s
  timeouts:
    tcp_syn_sent: 1m
    tcp_syn_recv: 30
    tcp_established: 2d
    tcp_fin_wait: \"90s\"
    tcp_close_wait: 45s
    tcp_time_wait: 2m
    tcp_close: 5s
    udp: 20s
    udp_stream: 3m
    icmp: 15s
",
    )
    .conntrack;
    assert!(c.enabled && !c.fast_path);
    assert_eq!(c.table_size, 1 << 20);
    assert_eq!(c.invalid, Action::Drop);
    assert_eq!(c.sweep_interval, Duration::from_secs(30));
    let secs: Vec<u64> = c.timeouts.iter().map(Duration::as_secs).collect();
    assert_eq!(
        secs,
        [60, 30, 172_800, 90, 45, 120, 5, 20, 180, 15, 15],
        "by enum ct_state; icmp sets both ICMP states"
    );
}

#[test]
fn conntrack_defaults_and_partial_timeouts() {
    for text in [
        "interfaces: [eth0]\n",
        "conntrack:\n",
        "conntrack: {}\n",
        "conntrack:\n  timeouts:\n",
    ] {
        assert_eq!(
            parse_ok(text).conntrack,
            ConntrackConfig::default(),
            "{text:?}"
        );
    }
    let d = ConntrackConfig::default();
    assert!(!d.enabled && d.fast_path);
    assert_eq!((d.table_size, d.invalid), (262_144, Action::Pass));
    assert_eq!(d.sweep_interval, Duration::from_secs(10));
    assert_eq!(d.timeouts.map(|t| t.as_secs()), DEFAULT_CT_TIMEOUTS_SECS);

    let c =
        parse_ok("conntrack:\n  enabled: true\n  timeouts: { udp: 1h, tcp_close: 1 }\n").conntrack;
    let mut want = DEFAULT_CT_TIMEOUTS_SECS;
    want[7] = 3600;
    want[6] = 1;
    assert_eq!(c.timeouts.map(|t| t.as_secs()), want);
    assert!(c.enabled);
}

#[test]
fn conntrack_durations_take_seconds_or_a_unit() {
    let sweep = |value: &str| {
        parse_ok(&format!("conntrack: {{ sweep_interval: {value} }}\n"))
            .conntrack
            .sweep_interval
            .as_secs()
    };
    assert_eq!(sweep("1"), 1);
    assert_eq!(sweep("45s"), 45);
    assert_eq!(sweep("5m"), 300);
    assert_eq!(sweep("2h"), 7200);
    assert_eq!(sweep("\"1d\""), 86_400);
    assert_eq!(sweep("30d"), 30 * 86_400);
    assert_eq!(sweep("2592000"), 30 * 86_400);

    let expected = "expected a duration for `conntrack.sweep_interval`: whole seconds (an integer) or a number with a unit s, m, h or d (\"30s\", \"5m\", \"2h\", \"5d\")";
    for (bad, found) in [
        ("10 s", "string \"10 s\""),
        ("5w", "string \"5w\""),
        ("1.5h", "string \"1.5h\""),
        ("h", "string \"h\""),
        ("-5", "integer -5"),
        ("\"30\"", "string \"30\""),
        ("1.5", "float 1.5"),
        ("true", "boolean true"),
    ] {
        assert_error(
            &format!("conntrack:\n  sweep_interval: »{bad}\n"),
            &format!("{expected}, found {found}"),
        );
    }
    assert_error(
        "conntrack:\n  sweep_interval: »0s\n",
        "`conntrack.sweep_interval` must be from 1s to 30d, found 0s",
    );
    assert_error(
        "conntrack:\n  timeouts:\n    tcp_established: »31d\n",
        "`conntrack.timeouts.tcp_established` must be from 1s to 30d, found 31d",
    );
    assert_error(
        "conntrack:\n  timeouts:\n    udp: »2592001\n",
        "`conntrack.timeouts.udp` must be from 1s to 30d, found 2592001s",
    );
    assert_error(
        "conntrack:\n  timeouts:\n    icmp: »99999999999999999999999d\n",
        "`conntrack.timeouts.icmp` must be from 1s to 30d",
    );
    assert_error(
        "conntrack:\n  timeouts:\n    udp_stream: »0\n",
        "`conntrack.timeouts.udp_stream` must be from 1s to 30d, found 0s",
    );
    assert_error(
        "conntrack:\n  timeouts:\n    tcp_syn_sent: »[1m]\n",
        "expected a duration for `conntrack.timeouts.tcp_syn_sent`",
    );
}

#[test]
fn conntrack_bad_values_and_keys() {
    assert_error(
        "conntrack:\n  »size: 1024\n",
        "unknown key `size` in conntrack; allowed keys: enabled, table_size, fast_path, invalid, sweep_interval, timeouts",
    );
    assert_error(
        "conntrack:\n  timeouts:\n    »tcp_closed: 5s\n",
        "unknown key `tcp_closed` in conntrack.timeouts; allowed keys: tcp_syn_sent, tcp_syn_recv, tcp_established, tcp_fin_wait, tcp_close_wait, tcp_time_wait, tcp_close, udp, udp_stream, icmp",
    );
    assert_error(
        "firewall:\n»conntrak: {}\n",
        "unknown key `conntrak` in the top level; allowed keys: interfaces, xdp_mode, tc_mode, pin_root, metrics, events, firewall, ratelimit, ddos, conntrack, threatintel, ips",
    );
    assert_error(
        "conntrack: »[enabled]\n",
        "expected conntrack (a mapping), found a list",
    );
    assert_error(
        "conntrack:\n  timeouts: »30s\n",
        "expected conntrack.timeouts (a mapping), found string \"30s\"",
    );
    assert_error(
        "conntrack:\n  enabled: »yes\n",
        "expected a boolean (true or false), found string \"yes\"",
    );
    assert_error(
        "conntrack:\n  fast_path: »1\n",
        "expected a boolean (true or false), found integer 1",
    );
    for bad in ["1023", "16777217", "-1", "\"1m\""] {
        assert_error(
            &format!("conntrack:\n  table_size: »{bad}\n"),
            "expected an integer in 1024..=16777216",
        );
    }
    assert_eq!(
        parse_ok("conntrack: { table_size: 1024 }\n")
            .conntrack
            .table_size,
        1024
    );
    assert_eq!(
        parse_ok("conntrack: { table_size: 16777216 }\n")
            .conntrack
            .table_size,
        16_777_216
    );
    assert_error(
        "conntrack:\n  invalid: »reject\n",
        "expected one of pass | drop, found string \"reject\"",
    );
    // Every bad value is reported, not only the first.
    let errors =
        errors_of("conntrack:\n  enabled: 2\n  table_size: 0\n  timeouts: { udp: 0s, icmp: x }\n");
    let positions: Vec<(usize, usize)> = errors
        .iter()
        .filter_map(|e| e.location.as_ref().map(|l| (l.line, l.col)))
        .collect();
    assert_eq!(positions, [(2, 12), (3, 15), (4, 20), (4, 30)]);
}

/// Conntrack settings followed by one rule on line 5.
fn ct_rule(conntrack: &str, rule: &str) -> String {
    format!("conntrack: {conntrack}\nfirewall:\n  rules:\n    - {{ id: r, action: pass }}\n    - {rule}\n")
}

#[test]
fn rule_state_names_one_or_more_classes() {
    let on = "{ enabled: true }";
    let state = |value: &str| {
        let text = ct_rule(on, &format!("{{ id: a, action: pass, state: {value} }}"));
        parse_ok(&text).firewall.rules[1].state.expect("state")
    };
    assert_eq!(state("new"), CtStates::NEW);
    assert_eq!(state("[new]"), CtStates(1));
    assert_eq!(state("[established, related]"), CtStates(0b0110));
    assert_eq!(
        state("[invalid, new, related, established]"),
        CtStates(0b1111)
    );
    assert_eq!(state("invalid"), CtStates::INVALID);
    assert_eq!(state("[related, new]").to_string(), "new,related");
    assert!(state("[established]").contains(1) && !state("[established]").contains(0));
    assert_eq!(
        parse_ok(&ct_rule(on, "{ id: a, action: drop }"))
            .firewall
            .rules[1]
            .state,
        None
    );

    let bad = |value: &str, needle: &str| {
        assert_error(
            &ct_rule(on, &format!("{{ id: a, action: pass, state: {value} }}")),
            needle,
        );
    };
    bad(
        "»NEW",
        "unknown state `NEW` (known: new, established, related, invalid)",
    );
    bad(
        "[new, »untracked]",
        "unknown state `untracked` (known: new, established, related, invalid)",
    );
    bad(
        "»[]",
        "`state` must list at least one of new, established, related, invalid",
    );
    bad(
        "[new, established, »new]",
        "duplicate state `new` (first defined at line 5, column 38)",
    );
    bad("[»1]", "expected a string, found integer 1");
    bad(
        "»{ new: true }",
        "expected a string or a list of strings, found a mapping",
    );
}

#[test]
fn rule_state_needs_conntrack_enabled() {
    let needs = "rule `a` matches `state`, which needs conntrack.enabled: true";
    assert_error(&with_rule("{ id: a, action: pass, »state: new }"), needs);
    // The section may follow the firewall: judged once both are read.
    assert_error(
        "firewall:\n  rules:\n    - { id: a, action: drop, »state: invalid }\nconntrack:\n  enabled: false\n",
        needs,
    );
    assert_error(
        "conntrack: { table_size: 4096 }\nfirewall:\n  rules:\n    - { id: a, action: pass, »state: [new] }\n",
        needs,
    );
    let ok = parse_ok(
        "firewall:\n  rules:\n    - { id: a, action: drop, state: [new, invalid], proto: tcp }\nconntrack:\n  enabled: true\n",
    );
    assert_eq!(ok.firewall.rules[0].state, Some(CtStates(0b1001)));
    assert!(ok.conntrack.enabled);

    // An invalid `enabled` is reported once, not again on every rule with `state`.
    let errors = errors_of(&ct_rule(
        "{ enabled: maybe }",
        "{ id: a, action: pass, state: new }",
    ));
    assert_eq!(errors.len(), 1, "{}", ConfigErrors(errors.clone()));
    assert!(errors[0].message.contains("expected a boolean"));
}

#[test]
fn drop_rules_on_established_or_related_need_the_fast_path_off() {
    let fast_path = "established and related packets pass before any rule while conntrack.fast_path is true: set fast_path: false to drop them by rule";
    let on = "{ enabled: true }";
    assert_error(
        &ct_rule(on, "{ id: a, action: drop, »state: established }"),
        &format!("drop rule `a` matches state established, but {fast_path}"),
    );
    assert_error(
        &ct_rule(on, "{ id: a, action: drop, »state: [new, related] }"),
        &format!("drop rule `a` matches state new,related, but {fast_path}"),
    );
    assert_error(
        "firewall:\n  rules:\n    - { id: a, action: drop, proto: tcp, »state: [related] }\nconntrack: { enabled: true, fast_path: true }\n",
        fast_path,
    );
    // Pass rules on those classes are merely redundant with the fast path; drops of new and
    // invalid packets see every rule.
    for rule in [
        "{ id: a, action: pass, state: [established, related] }",
        "{ id: a, action: drop, state: [new, invalid] }",
    ] {
        parse_ok(&ct_rule(on, rule));
    }
    let off = "{ enabled: true, fast_path: false }";
    let rules = parse_ok(&ct_rule(
        off,
        "{ id: a, action: drop, state: [established, related] }",
    ))
    .firewall
    .rules;
    assert_eq!(rules[1].state, Some(CtStates(0b0110)));
    // With conntrack off only that is reported.
    let errors = errors_of(&ct_rule(
        "{ enabled: false }",
        "{ id: a, action: drop, state: established }",
    ));
    assert_eq!(errors.len(), 1, "{}", ConfigErrors(errors.clone()));
    assert!(errors[0].message.contains("needs conntrack.enabled: true"));
}

#[test]
fn the_shipped_conntrack_example_shows_the_defaults() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/config.yaml");
    let text = std::fs::read_to_string(path).expect("examples/config.yaml");
    let section: String = text
        .lines()
        .skip_while(|line| *line != "# conntrack:")
        .map_while(|line| line.strip_prefix("# ").or((line == "#").then_some("")))
        .map(|line| format!("{line}\n"))
        .collect();
    assert!(section.contains("timeouts:"), "{section}");
    assert_eq!(parse_ok(&section).conntrack, ConntrackConfig::default());
}

const THREATINTEL_EXAMPLE: &str = r#"threatintel:
  action: alert
  feeds:
    - { id: feodo, url: "https://feodotracker.abuse.ch/downloads/ipblocklist.csv", format: csv, field: dst_ip, refresh: 1h, action: drop }
    - { id: drop, path: /var/lib/ebpfsentinel/spamhaus_drop.netset, format: netset, action: drop }
    - { id: dropv4, url: "https://www.spamhaus.org/drop/drop_v4.json", format: ndjson, field: cidr, refresh: 12h }
ips: { threshold: 3, window: 60s, block_for: 1h, whitelist: [192.0.2.0/24] }
"#;

#[test]
fn threatintel_and_ips_example_from_the_issue() {
    let config = parse_ok(THREATINTEL_EXAMPLE);
    let ti = &config.threatintel;
    assert_eq!(ti.action, Some(crate::feeds::TiAction::Alert));
    assert_eq!(ti.quarantine_vlan, None);
    let location = |line| Location {
        file: PathBuf::from(CONFIG_PATH),
        line,
        col: 7,
    };
    assert_eq!(
        ti.feeds,
        [
            FeedConfig {
                id: "feodo".to_owned(),
                location: location(4),
                source: FeedSource::Url(
                    "https://feodotracker.abuse.ch/downloads/ipblocklist.csv".to_owned()
                ),
                format: FeedFormat::Csv,
                field: Some("dst_ip".to_owned()),
                confidence_field: None,
                category_field: None,
                refresh: Some(Duration::from_secs(3600)),
                action: Some(crate::feeds::TiAction::Drop),
                min_confidence: 0,
            },
            FeedConfig {
                id: "drop".to_owned(),
                location: location(5),
                source: FeedSource::Path(PathBuf::from(
                    "/var/lib/ebpfsentinel/spamhaus_drop.netset"
                )),
                format: FeedFormat::Netset,
                field: None,
                confidence_field: None,
                category_field: None,
                refresh: None,
                action: Some(crate::feeds::TiAction::Drop),
                min_confidence: 0,
            },
            FeedConfig {
                id: "dropv4".to_owned(),
                location: location(6),
                source: FeedSource::Url("https://www.spamhaus.org/drop/drop_v4.json".to_owned()),
                format: FeedFormat::Ndjson,
                field: Some("cidr".to_owned()),
                confidence_field: None,
                category_field: None,
                refresh: Some(Duration::from_secs(12 * 3600)),
                action: None,
                min_confidence: 0,
            },
        ]
    );
    assert_eq!(ti.action_of(&ti.feeds[2]), crate::feeds::TiAction::Alert);
    assert_eq!(
        config.ips,
        IpsConfig {
            threshold: Some(3),
            window: Duration::from_secs(60),
            block_for: Duration::from_secs(3600),
            whitelist: nets(&["192.0.2.0/24"]),
        }
    );
}

#[test]
fn threatintel_and_ips_defaults() {
    for text in ["", "threatintel:\n", "threatintel: {}\nips: {}\n", "ips:\n"] {
        let config = parse_ok(text);
        assert_eq!(config.threatintel, ThreatIntelConfig::default(), "{text:?}");
        assert_eq!(config.ips, IpsConfig::default(), "{text:?}");
    }
    assert_eq!(
        ThreatIntelConfig::default().default_action(),
        crate::feeds::TiAction::Alert
    );
    let config = parse_ok(
        "threatintel:
  action: quarantine
  quarantine_vlan: 4094
  feeds:
    - id: scored
      path: feeds/scored.csv
      format: csv
      field: ip
      confidence_field: score
      category_field: kind
      refresh: 300
      min_confidence: 75
    - { id: plain, path: /x.json, format: json, field: ip, refresh: 2s }
",
    );
    let ti = config.threatintel;
    assert_eq!(ti.quarantine_vlan, Some(4094));
    let scored = &ti.feeds[0];
    // Relative paths are the config file's neighbours, like alias files.
    assert_eq!(
        scored.source,
        FeedSource::Path(PathBuf::from("/etc/ebpfsentinel/feeds/scored.csv"))
    );
    assert_eq!(scored.confidence_field.as_deref(), Some("score"));
    assert_eq!(scored.category_field.as_deref(), Some("kind"));
    assert_eq!(scored.refresh, Some(Duration::from_secs(300)));
    assert_eq!(scored.min_confidence, 75);
    assert_eq!(ti.action_of(scored), crate::feeds::TiAction::Quarantine);
    // Files have no server to spare: any refresh from 1s.
    assert_eq!(ti.feeds[1].refresh, Some(Duration::from_secs(2)));
}

#[test]
fn ips_whitelist_takes_aliases_and_addresses() {
    let config = parse_ok(
        "firewall:
  aliases:
    mgmt: { entries: [198.51.100.0/24, \"2001:db8::1\"] }
ips:
  threshold: 1000000
  window: 5m
  block_for: 30d
  whitelist: [\"@mgmt\", 10.0.0.1, 198.51.100.0/24]
",
    );
    assert_eq!(
        config.ips,
        IpsConfig {
            threshold: Some(1_000_000),
            window: Duration::from_secs(300),
            block_for: Duration::from_secs(30 * 86_400),
            whitelist: nets(&["198.51.100.0/24", "2001:db8::1/128", "10.0.0.1/32"]),
        }
    );
}

#[test]
fn threatintel_errors_point_at_the_value() {
    let feed = |body: &str| format!("threatintel:\n  feeds:\n    - {body}\n");
    let cases: &[(&str, &str)] = &[
        (
            "threatintel:\n  »mode: block\n",
            "unknown key `mode` in threatintel; allowed keys: action, quarantine_vlan, feeds",
        ),
        (
            "threatintel:\n  action: »block\n",
            "expected one of alert | drop | quarantine, found string \"block\"",
        ),
        (
            "threatintel:\n  quarantine_vlan: »4095\n",
            "expected a VLAN id 1..=4094, found integer 4095",
        ),
        (
            "threatintel:\n  quarantine_vlan: »0\n",
            "expected a VLAN id 1..=4094, found integer 0",
        ),
        (
            "threatintel:\n  action: »quarantine\n",
            "action quarantine tags packets with `threatintel.quarantine_vlan`, which is not set (a VLAN id 1..=4094)",
        ),
        (
            "threatintel:\n  feeds: »{ id: a }\n",
            "expected a list of feeds, found a mapping",
        ),
        (
            "threatintel:\n  feeds:\n    - { id: a, path: /a, format: netset, »ip_field: x }\n",
            "unknown key `ip_field` in a feed; allowed keys: id, url, path, format, field, confidence_field, category_field, refresh, action, min_confidence",
        ),
        (
            "threatintel:\n  feeds:\n    - »{ path: /a, format: netset }\n",
            "missing required key `id`",
        ),
        (
            "threatintel:\n  feeds:\n    - { id: »\"a b\", path: /a, format: netset }\n",
            "invalid feed id `a b`: use 1 to 64 letters, digits, `_`, `.`, `:` or `-`",
        ),
        (
            "threatintel:\n  feeds:\n    - { id: a, path: /a, format: netset }\n    - { id: »a, path: /b, format: netset }\n",
            "duplicate feed id `a` (first defined at line 3, column 13)",
        ),
        (
            "threatintel:\n  feeds:\n    - »{ id: a, format: netset }\n",
            "a feed needs `url` (http:// or https://) or `path` (a file)",
        ),
        (
            "threatintel:\n  feeds:\n    - { id: a, url: \"http://x/a\", »path: /a, format: netset }\n",
            "a feed has `url` or `path`, not both",
        ),
        (
            "threatintel:\n  feeds:\n    - { id: a, url: »\"file:///etc/feed\", format: netset }\n",
            "feed url must start with http:// or https://, found `file:///etc/feed`",
        ),
        (
            "threatintel:\n  feeds:\n    - { id: a, url: »\"ftp://x/a\", format: netset }\n",
            "feed url must start with http:// or https://, found `ftp://x/a`",
        ),
        (
            "threatintel:\n  feeds:\n    - { id: a, url: »\"https://bad host/a\", format: netset }\n",
            "invalid URL `https://bad host/a`",
        ),
        (
            "threatintel:\n  feeds:\n    - { id: a, url: »feeds.example/a, format: netset }\n",
            "feed url must start with http:// or https://, found `feeds.example/a`",
        ),
        (
            "threatintel:\n  feeds:\n    - { id: a, path: »\"\", format: netset }\n",
            "feed path must not be empty",
        ),
        (
            "threatintel:\n  feeds:\n    - »{ id: a, path: /a }\n",
            "missing required key `format`",
        ),
        (
            "threatintel:\n  feeds:\n    - { id: a, path: /a, format: »plain }\n",
            "expected one of netset | spamhaus | csv | json | ndjson, found string \"plain\"",
        ),
        (
            "threatintel:\n  feeds:\n    - »{ id: a, path: /a, format: csv }\n",
            "format csv needs `field`: the name of the column holding the address or network",
        ),
        (
            "threatintel:\n  feeds:\n    - »{ id: a, path: /a, format: ndjson }\n",
            "format ndjson needs `field`: the key holding the address or network",
        ),
        (
            "threatintel:\n  feeds:\n    - { id: a, path: /a, format: netset, field: »ip }\n",
            "`field` does not apply to format netset, which lists one address or network per line",
        ),
        (
            "threatintel:\n  feeds:\n    - { id: a, path: /a, format: spamhaus, category_field: »sbl }\n",
            "`category_field` does not apply to format spamhaus",
        ),
        (
            "threatintel:\n  feeds:\n    - { id: a, path: /a, format: csv, field: »\"\" }\n",
            "`field` must not be empty",
        ),
        (
            "threatintel:\n  feeds:\n    - { id: a, url: \"https://x/a\", format: netset, refresh: »30s }\n",
            "`refresh` of a URL feed must be at least 1m, found 30s: feed servers throttle or ban clients that poll more often",
        ),
        (
            "threatintel:\n  feeds:\n    - { id: a, path: /a, format: netset, refresh: »0 }\n",
            "`refresh` must be from 1s to 30d, found 0s",
        ),
        (
            "threatintel:\n  feeds:\n    - { id: a, path: /a, format: netset, refresh: »31d }\n",
            "`refresh` must be from 1s to 30d, found 31d",
        ),
        (
            "threatintel:\n  feeds:\n    - { id: a, path: /a, format: netset, refresh: »1w }\n",
            "expected a duration for `refresh`: whole seconds (an integer) or a number with a unit s, m, h or d",
        ),
        (
            "threatintel:\n  feeds:\n    - { id: a, path: /a, format: netset, action: »quarantine }\n",
            "action quarantine tags packets with `threatintel.quarantine_vlan`, which is not set",
        ),
        (
            "threatintel:\n  feeds:\n    - { id: a, path: /a, format: netset, action: »pass }\n",
            "expected one of alert | drop | quarantine, found string \"pass\"",
        ),
        (
            "threatintel:\n  feeds:\n    - { id: a, path: /a, format: netset, min_confidence: »101 }\n",
            "expected an integer in 0..=100, found integer 101",
        ),
    ];
    for (marked, needle) in cases {
        assert_error(marked, needle);
    }
    // A bad VLAN is one error, not two.
    let errors = errors_of(
        "threatintel:\n  action: quarantine\n  quarantine_vlan: 5000\n  feeds:\n    - { id: a, path: /a, format: netset, action: quarantine }\n",
    );
    assert_eq!(errors.len(), 1, "{}", ConfigErrors(errors.clone()));
    // Every feed is checked, not just the first bad one.
    let errors = errors_of(&feed(
        "{ id: a, path: /a, format: csv }\n    - { id: b, path: /b, format: netset, field: x }",
    ));
    assert_eq!(errors.len(), 2, "{}", ConfigErrors(errors.clone()));
}

#[test]
fn at_most_256_feeds() {
    let feeds: String = (0..257)
        .map(|i| format!("    - {{ id: f{i}, path: /f{i}, format: netset }}\n"))
        .collect();
    let text = format!("threatintel:\n  feeds:\n{feeds}");
    let errors = errors_of(&text);
    assert_eq!(errors.len(), 1, "{}", ConfigErrors(errors.clone()));
    assert_eq!(errors[0].message, "257 feeds exceed the limit of 256");
    assert_eq!(errors[0].location.as_ref().map(|l| l.line), Some(3));
    let feeds: String = (0..256)
        .map(|i| format!("    - {{ id: f{i}, path: /f{i}, format: netset }}\n"))
        .collect();
    let config = parse_ok(&format!("threatintel:\n  feeds:\n{feeds}"));
    assert_eq!(config.threatintel.feeds.len(), 256);
}

#[test]
fn ips_errors_point_at_the_value() {
    let cases: &[(&str, &str)] = &[
        (
            "ips:\n  »auto_blacklist_threshold: 3\n",
            "unknown key `auto_blacklist_threshold` in ips; allowed keys: threshold, window, block_for, whitelist",
        ),
        (
            "ips:\n  threshold: »0\n",
            "expected an integer in 1..=1000000, found integer 0",
        ),
        (
            "ips:\n  threshold: »1000001\n",
            "expected an integer in 1..=1000000, found integer 1000001",
        ),
        (
            "ips:\n  threshold: »\"3\"\n",
            "expected an integer in 1..=1000000, found string \"3\"",
        ),
        (
            "ips:\n  window: »0s\n",
            "`ips.window` must be from 1s to 30d, found 0s",
        ),
        (
            "ips:\n  block_for: »forever\n",
            "expected a duration for `ips.block_for`",
        ),
        (
            "ips:\n  block_for: »60d\n",
            "`ips.block_for` must be from 1s to 30d, found 60d",
        ),
        (
            "ips:\n  whitelist: [192.0.2.0/24, »10.0.0.1/8]\n",
            "`10.0.0.1/8` has host bits set; did you mean `10.0.0.0/8`?",
        ),
        (
            "ips:\n  whitelist: [»\"@office\"]\n",
            "unknown alias `@office` (no aliases are defined)",
        ),
        ("ips: »[3]\n", "expected ips (a mapping), found a list"),
    ];
    for (marked, needle) in cases {
        assert_error(marked, needle);
    }
}

#[test]
fn the_shipped_threatintel_and_ips_examples_parse() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/config.yaml");
    let text = std::fs::read_to_string(path).expect("examples/config.yaml");
    let section = |first: &str| -> String {
        text.lines()
            .skip_while(|line| *line != first)
            .map_while(|line| line.strip_prefix("# ").or((line == "#").then_some("")))
            .map(|line| format!("{line}\n"))
            .collect()
    };
    let config = parse_ok(&(section("# threatintel:") + &section("# ips:")));
    let feeds = &config.threatintel.feeds;
    let ids: Vec<&str> = feeds.iter().map(|feed| feed.id.as_str()).collect();
    assert_eq!(ids, ["feodo", "dropv4", "local"]);
    assert_eq!(config.threatintel.quarantine_vlan, Some(666));
    assert_eq!(feeds[2].min_confidence, 50);
    assert_eq!(
        config.ips,
        IpsConfig {
            threshold: Some(3),
            whitelist: nets(&["192.0.2.0/24"]),
            ..IpsConfig::default()
        }
    );
}

#[test]
fn scrub_section() {
    for text in ["", "scrub:\n"] {
        assert_eq!(parse_ok(text).scrub, None, "{text:?}");
    }
    assert_eq!(parse_ok("scrub: {}\n").scrub, Some(ScrubConfig::default()));
    let config =
        parse_ok("scrub: { min_ttl: 64, max_mss: 1400, clear_df: true, random_ip_id: true }\n");
    assert_eq!(
        config.scrub,
        Some(ScrubConfig {
            min_ttl: Some(64),
            max_mss: Some(1400),
            clear_df: true,
            random_ip_id: true,
        })
    );
    let config = parse_ok("scrub:\n  min_ttl: 255\n  max_mss: 65535\n");
    let scrub = config.scrub.expect("scrub");
    assert_eq!((scrub.min_ttl, scrub.max_mss), (Some(255), Some(65535)));
    assert!(!scrub.clear_df && !scrub.random_ip_id);
    let scrub = parse_ok("scrub: { min_ttl: 1, max_mss: 536 }\n")
        .scrub
        .expect("scrub");
    assert_eq!((scrub.min_ttl, scrub.max_mss), (Some(1), Some(536)));
}

#[test]
fn scrub_errors_are_located() {
    assert_error("scrub: { min_ttl: »0 }\n", "a TTL in 1..=255");
    assert_error("scrub:\n  min_ttl: »256\n", "a TTL in 1..=255");
    assert_error("scrub:\n  max_mss: »535\n", "an MSS in 536..=65535");
    assert_error("scrub:\n  max_mss: »65536\n", "an MSS in 536..=65535");
    assert_error("scrub:\n  max_mss: »big\n", "an MSS in 536..=65535");
    assert_error("scrub:\n  clear_df: »yes please\n", "a boolean");
    assert_error(
        "scrub:\n  »min_hops: 3\n",
        "unknown key `min_hops` in scrub",
    );
    assert_error("scrub: »[1]\n", "scrub (a mapping)");
}

#[test]
fn dns_section() {
    use crate::feeds::domains::{DnsAction, DomainFormat};
    for text in ["", "dns:\n"] {
        assert_eq!(parse_ok(text).dns, None, "{text:?}");
    }
    assert_eq!(parse_ok("dns: {}\n").dns, Some(DnsConfig::default()));
    let text = format!(
        "dns:\n  blocklist:\n    action: alert\n    domains: [BadSite.Example., tracker.example.net]\n    feeds:\n      - {{ id: ads, path: {FEEDS}/adaway_hosts.txt, format: hosts, refresh: 6h }}\n      - {{ id: spam, url: https://example.org/list.txt, format: domains, action: drop }}\n"
    );
    let dns = parse_ok(&text).dns.expect("dns");
    let b = &dns.blocklist;
    assert_eq!(b.action, DnsAction::Alert);
    assert_eq!(b.domains, ["badsite.example", "tracker.example.net"]);
    assert_eq!(b.feeds.len(), 2);
    assert_eq!(
        (
            b.feeds[0].id.as_str(),
            b.feeds[0].format,
            b.feeds[0].refresh,
            b.feeds[0].action
        ),
        (
            "ads",
            DomainFormat::Hosts,
            Some(Duration::from_secs(6 * 3600)),
            None
        )
    );
    assert_eq!(b.feeds[0].location.line, 6);
    assert_eq!(
        b.feeds[1].source,
        FeedSource::Url("https://example.org/list.txt".into())
    );
    assert_eq!(
        (b.feeds[1].format, b.feeds[1].action),
        (DomainFormat::Domains, Some(DnsAction::Drop))
    );
    let one = parse_ok("dns: { blocklist: { domains: badsite.example } }\n");
    let one = one.dns.expect("dns").blocklist;
    assert_eq!(
        (one.action, one.domains),
        (DnsAction::Drop, vec!["badsite.example".to_string()])
    );
}

#[test]
fn dns_errors_are_located() {
    assert_error(
        "dns:\n  »blocklists: {}\n",
        "unknown key `blocklists` in dns",
    );
    assert_error(
        "dns:\n  blocklist:\n    action: »block\n",
        "expected one of drop | alert, found string \"block\"",
    );
    assert_error(
        "dns:\n  blocklist:\n    domains: [ok.example, »\"*.malware.example\"]\n",
        "no wildcards; `malware.example` blocks itself and every subdomain",
    );
    assert_error(
        "dns:\n  blocklist:\n    domains:\n      - a.example\n      - »A.example.\n",
        "a.example is listed already (line 4)",
    );
    assert_error(
        "dns:\n  blocklist:\n    domains: [»a..example]\n",
        "`a..example`: an empty label",
    );
    assert_error(
        "dns:\n  blocklist:\n    feeds:\n      - { id: x, path: /tmp/x, format: »csv }\n",
        "expected one of hosts | domains",
    );
    assert_error(
        "dns:\n  blocklist:\n    feeds:\n      - »{ id: x, format: hosts }\n",
        "a feed needs `url` (http:// or https://) or `path` (a file)",
    );
    assert_error(
        "dns:\n  blocklist:\n    feeds:\n      - { id: x, url: \"https://e.org/l\", format: hosts, refresh: »30s }\n",
        "`refresh` of a URL feed must be at least",
    );
    assert_error(
        "dns:\n  blocklist:\n    feeds:\n      - { id: x, path: /tmp/x, format: hosts, »confidence: 3 }\n",
        "unknown key `confidence` in a DNS feed",
    );
}

#[test]
fn the_shipped_dns_example_parses() {
    use crate::feeds::domains::{DnsAction, DomainFormat};
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/config.yaml");
    let text = std::fs::read_to_string(path).expect("examples/config.yaml");
    let section: String = text
        .lines()
        .skip_while(|line| *line != "# dns:")
        .map_while(|line| line.strip_prefix("# ").or((line == "#").then_some("")))
        .map(|line| format!("{line}\n"))
        .collect();
    let dns = parse_ok(&section).dns.expect("dns");
    let b = dns.blocklist;
    assert_eq!(b.domains, ["badsite.example"]);
    let feeds: Vec<_> = b
        .feeds
        .iter()
        .map(|f| (f.id.as_str(), f.format, f.action))
        .collect();
    assert_eq!(
        feeds,
        [
            ("ads", DomainFormat::Hosts, None),
            ("scam", DomainFormat::Hosts, Some(DnsAction::Alert))
        ]
    );
}

const LB: &str = r#"loadbalancer:
  services:
    - id: web
      vip: 198.18.100.1
      port: 80
      proto: tcp
      backends: [ { addr: 10.200.1.2, port: 8080, weight: 1 }, { addr: 10.200.2.2, port: 8080, weight: 3 } ]
      health: { tcp_connect: true, interval: 2s }
    - id: web6
      vip: "2001:db8:100::1"
      port: 443
      backends:
        - { addr: "2001:db8:200::2", port: 443 }
"#;

#[test]
fn loadbalancer_section() {
    assert!(parse_ok("").loadbalancer.services.is_empty());
    let lb = parse_ok(LB).loadbalancer;
    assert_eq!(lb.table_size, MAX_LB_TABLE_SIZE);
    assert_eq!(lb.services.len(), 2);
    let web = &lb.services[0];
    assert_eq!(
        (web.id.as_str(), web.vip, web.port, web.proto),
        ("web", "198.18.100.1".parse().unwrap(), 80, Proto::Tcp)
    );
    assert_eq!(web.backends[1].addr, "10.200.2.2:8080".parse().unwrap());
    assert_eq!(web.backends[1].weight, 3);
    assert_eq!(
        web.health,
        Some(HealthCheck {
            interval: Duration::from_secs(2),
            timeout: Duration::from_secs(1),
            rise: 2,
            fall: 2,
        })
    );
    let web6 = &lb.services[1];
    assert_eq!(web6.proto, Proto::Tcp);
    assert_eq!(web6.backends[0].weight, 1);
    assert_eq!(web6.health, None);
    assert_eq!(
        parse_ok("loadbalancer: { table_size: 251 }\n")
            .loadbalancer
            .table_size,
        251
    );
}

#[test]
fn loadbalancer_errors_are_located() {
    assert_error(
        "loadbalancer: { table_size: »1000 }\n",
        "a prime in 7..=65537",
    );
    assert_error(
        "loadbalancer:\n  »vips: []\n",
        "unknown key `vips` in loadbalancer",
    );
    let svc = |body: &str| format!("loadbalancer:\n  services:\n    - {body}\n");
    let ok_backends = "backends: [ { addr: 10.0.0.2, port: 80 } ]";
    assert_error(
        &svc(&format!(
            "{{ id: a, vip: »10.0.0.300, port: 80, {ok_backends} }}"
        )),
        "an IPv4 or IPv6 address",
    );
    assert_error(
        &svc(&format!(
            "{{ id: a, vip: 10.0.0.1, port: »0, {ok_backends} }}"
        )),
        "a port in 1..=65535",
    );
    assert_error(
        &svc(&format!(
            "{{ id: a, vip: 10.0.0.1, port: 80, proto: »icmp, {ok_backends} }}"
        )),
        "one of tcp | udp",
    );
    assert_error(
        &svc("»{ id: a, vip: 10.0.0.1, port: 80 }"),
        "missing required key `backends`",
    );
    assert_error(
        &svc("{ id: a, vip: 10.0.0.1, port: 80, backends: »[] }"),
        "at least one backend",
    );
    assert_error(
        &svc("{ id: a, vip: 10.0.0.1, port: 80, backends: [ »{ addr: \"2001:db8::2\", port: 80 } ] }"),
        "not of the VIP's address family",
    );
    assert_error(
        &svc("{ id: a, vip: 10.0.0.1, port: 80, backends: [ { addr: 10.0.0.2, port: 80, weight: »0 } ] }"),
        "a weight in 1..=1000",
    );
    assert_error(
        &svc("{ id: a, vip: 10.0.0.1, port: 80, backends: [ { addr: 10.0.0.2, port: 80 }, »{ addr: 10.0.0.2, port: 80 } ] }"),
        "listed twice",
    );
    assert_error(
        &svc(&format!("{{ id: a, vip: 10.0.0.1, port: 80, {ok_backends}, health: {{ tcp_connect: »false }} }}")),
        "tcp_connect: false",
    );
    assert_error(
        &svc(&format!("{{ id: a, vip: 10.0.0.1, port: 80, {ok_backends}, health: {{ interval: 1s, timeout: »2s }} }}")),
        "must not exceed health.interval",
    );
    // the same backend behind two services: replies could not be mapped back
    assert_error(
        &format!(
            "loadbalancer:\n  services:\n    - {{ id: a, vip: 10.0.0.1, port: 80, {ok_backends} }}\n    - »{{ id: b, vip: 10.0.0.1, port: 81, {ok_backends} }}\n"
        ),
        "also serves `a`",
    );
    assert_error(
        &format!(
            "loadbalancer:\n  services:\n    - {{ id: a, vip: 10.0.0.1, port: 80, {ok_backends} }}\n    - »{{ id: b, vip: 10.0.0.1, port: 80, backends: [ {{ addr: 10.0.0.3, port: 80 }} ] }}\n"
        ),
        "has the VIP 10.0.0.1:80/tcp",
    );
    assert_error(
        &format!(
            "loadbalancer:\n  services:\n    - {{ id: a, vip: 10.0.0.1, port: 80, {ok_backends} }}\n    - {{ id: »a, vip: 10.0.0.2, port: 80, backends: [ {{ addr: 10.0.0.3, port: 80 }} ] }}\n"
        ),
        "duplicate service id",
    );
}

#[test]
fn mirror_and_cpumap_sections() {
    let config = parse_ok("mirror: { to: mon0 }\ncpumap: { cpus: [0, 1], queue_size: 4096 }\n");
    assert_eq!(
        config.mirror,
        Some(MirrorConfig {
            to: "mon0".into(),
            services: None
        })
    );
    let text = format!("{LB}mirror: {{ to: mon0, match: {{ services: [web6] }} }}\n");
    assert_eq!(
        parse_ok(&text).mirror.unwrap().services,
        Some(vec!["web6".to_string()])
    );
    let text = format!("{LB}mirror: {{ to: mon0, match: {{ services: [web, »nope] }} }}\n");
    assert_error(&text, "mirror.match names no service `nope`");
    assert_eq!(
        config.cpumap,
        Some(CpumapConfig {
            cpus: Some(vec![0, 1]),
            queue_size: 4096
        })
    );
    let config = parse_ok("cpumap: {}\n");
    assert_eq!(
        config.cpumap,
        Some(CpumapConfig {
            cpus: None,
            queue_size: 2048
        })
    );
    assert_eq!(parse_ok("").cpumap, None);
    assert_error(
        "mirror: { to: m, match: { »ports: [80] } }\n",
        "unknown key `ports` in mirror.match",
    );
    assert_error("mirror: »{}\n", "missing required key `to`");
    assert_error("cpumap: { cpus: [0, »64] }\n", "a CPU number in 0..64");
    assert_error("cpumap: { cpus: [1, »1] }\n", "CPU 1 is listed twice");
    assert_error("cpumap: { cpus: »[] }\n", "at least one CPU");
    assert_error("cpumap: { queue_size: »0 }\n", "a queue size in 1..=16384");
}

#[test]
fn ids_section() {
    assert_eq!(parse_ok("").ids, None);
    assert_eq!(parse_ok("ids: {}\n").ids, Some(IdsConfig::default()));
    let config = parse_ok(
        r#"ids:
  sampling: 0.25
  rules:
    - { id: evil, proto: tcp, dst_port: 7777, content: "X-EVIL-MARKER", action: drop }
    - { id: dns, proto: udp, dst_port: 53, content: "|03|Evil", nocase: true, offset: 12, depth: 40, msg: "evil domain", sid: 7, direction: both }
  suricata_rules: [rules/local.rules]
"#,
    );
    let ids = config.ids.expect("ids");
    assert_eq!(ids.sampling, 0.25);
    assert_eq!(ids.rules.len(), 2);
    let evil = &ids.rules[0];
    assert_eq!((evil.id.as_str(), evil.proto), ("evil", 6));
    assert_eq!(evil.action, crate::ids::IdsAction::Drop);
    assert_eq!(evil.dst_ports, Some(vec![(7777, 7777)]));
    assert_eq!(evil.contents[0].bytes, b"X-EVIL-MARKER");
    assert_eq!(evil.origin, format!("{CONFIG_PATH}:4:7"));
    let dns = &ids.rules[1];
    assert_eq!(dns.action, crate::ids::IdsAction::Alert);
    assert_eq!(dns.direction, crate::ids::Direction::Both);
    assert_eq!(dns.contents[0].bytes, b"\x03evil");
    assert!(dns.contents[0].nocase);
    assert_eq!((dns.contents[0].offset, dns.contents[0].depth), (12, 40));
    assert_eq!(
        (dns.sid, dns.msg.as_deref()),
        (Some(7), Some("evil domain"))
    );
    assert_eq!(
        ids.suricata_rules[0].path,
        Path::new("/etc/ebpfsentinel/rules/local.rules")
    );
}

#[test]
fn ids_errors_are_located() {
    assert_error("ids:\n  sampling: »1.5\n", "0.0..=1.0");
    assert_error("ids:\n  »bogus: 1\n", "unknown key `bogus` in ids");
    assert_error(
        "ids:\n  rules:\n    - { id: a, proto: »icmp, dst_port: 1, content: x }\n",
        "one of tcp | udp",
    );
    assert_error(
        "ids:\n  rules:\n    - { id: a, proto: tcp, dst_port: 1, content: »\"|4|\" }\n",
        "bad hex block",
    );
    assert_error(
        &format!(
            "ids:\n  rules:\n    - {{ id: a, proto: tcp, dst_port: 1, content: »\"{}\" }}\n",
            "x".repeat(65)
        ),
        "content longer than 64 bytes",
    );
    assert_error(
        "ids:\n  rules:\n    - { id: a, proto: tcp, dst_port: 1, content: »x, offset: 1024 }\n",
        "offset beyond the 1024 payload bytes",
    );
    assert_error(
        "ids:\n  rules:\n    - { id: a, proto: tcp, dst_port: 1, »nocase: true }\n",
        "`nocase` modifies `content`",
    );
    assert_error(
        "ids:\n  rules:\n    - »{ id: a, proto: tcp, content: x }\n",
        "needs `dst_port` or `src_port`",
    );
    assert_error(
        "ids:\n  rules:\n    - { id: a, proto: tcp, dst_port: 1, content: x, »established: true }\n",
        "needs conntrack.enabled",
    );
    assert_error(
        "ids:\n  rules:\n    - { id: a, proto: tcp, dst_port: 1, content: x }\n    - { id: »a, proto: tcp, dst_port: 2, content: y }\n",
        "duplicate IDS rule id",
    );
}
