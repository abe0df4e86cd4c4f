use std::path::Path;

use super::suricata::{parse_file, FileReport};
use super::*;
use crate::abi::ids_side;

fn one(rule: &str) -> Result<IdsRule, String> {
    let r = parse_file(rule, Path::new("t.rules"), true);
    match (r.rules.first(), r.refused_rules.first()) {
        (Some(rule), None) => Ok(rule.clone()),
        (None, Some((_, _, why))) => Err(why.clone()),
        other => panic!("{other:?}"),
    }
}

fn et_open(file: &str, conntrack: bool) -> FileReport {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../shared/data/feeds/et-open")
        .join(file);
    let text = std::fs::read_to_string(&path).expect("et-open rules");
    parse_file(&text, &path, conntrack)
}

#[test]
fn a_rule_of_the_subset_parses_whole() {
    let r = one(r#"alert tcp $EXTERNAL_NET any -> $HOME_NET [80,8080,8000:8002] (msg:"T \"q\" a\;b"; flow:established,to_server; content:"GET |20 2f|"; depth:6; content:"x\|y\"z"; nocase; offset:10; classtype:web-application-attack; reference:url,example.org; sid:123; rev:4; metadata:created_at 2020;)"#).unwrap();
    assert_eq!(r.id, "sid:123");
    assert_eq!((r.sid, r.rev), (Some(123), Some(4)));
    assert_eq!(r.msg.as_deref(), Some("T \"q\" a;b"));
    assert_eq!(r.classtype.as_deref(), Some("web-application-attack"));
    assert_eq!(r.origin, "t.rules:1");
    assert_eq!(
        (r.action, r.proto, r.established),
        (IdsAction::Alert, 6, true)
    );
    assert_eq!(
        r.dst_ports,
        Some(vec![(80, 80), (8080, 8080), (8000, 8002)])
    );
    assert_eq!(r.contents.len(), 2);
    assert_eq!(r.contents[0].bytes, b"GET  /");
    assert_eq!((r.contents[0].offset, r.contents[0].depth), (0, 6));
    assert_eq!(r.contents[1].bytes, b"x|y\"z");
    assert!(r.contents[1].nocase && !r.contents[0].nocase);
    let p = r.placement().unwrap();
    let ports: Vec<u16> = p.keys.iter().map(|(_, port)| *port).collect();
    assert_eq!(ports, [80, 8000, 8001, 8002, 8080]);
    assert!(p.keys.iter().all(|(s, _)| *s == ids_side::IDS_SIDE_DST));
}

#[test]
fn rules_outside_the_subset_are_refused_with_the_reason() {
    let cases = [
        ("alert ip any any -> any any (msg:\"x\"; content:\"a\"; sid:1;)", "protocol ip"),
        ("alert http any any -> any any (content:\"a\"; sid:1;)", "app-layer protocol http"),
        ("pass tcp any any -> any 80 (content:\"a\"; sid:1;)", "action pass"),
        ("alert tcp 10.0.0.0/8 any -> any 80 (content:\"a\"; sid:1;)", "address restriction"),
        ("alert tcp any any -> any !80 (content:\"a\"; sid:1;)", "negated port"),
        ("alert tcp any any -> any $FOO_PORTS (content:\"a\"; sid:1;)", "port variable"),
        ("alert tcp any any -> any 80 (content:\"a\"; pcre:\"/a/\"; sid:1;)", "keyword pcre"),
        ("alert tcp any any -> any 80 (content:\"a\"; content:\"b\"; distance:0; sid:1;)", "keyword distance"),
        ("alert tcp any any -> any 80 (content:!\"a\"; sid:1;)", "negated content"),
        ("alert tcp any any -> any 80 (msg:\"x\"; sid:1;)", "no content"),
        ("alert tcp any any -> any 80 (content:\"a\";)", "no sid"),
        ("alert tcp any any -> any 80 (content:\"a\"; flow:not_established; sid:1;)", "flow:not_established"),
        ("alert tcp any any -> any any (content:\"a\"; flow:to_server; sid:1;)", "without a server port"),
        ("alert tcp any 80 -> any any (content:\"a\"; flow:to_server; sid:1;)", "contradicts"),
        ("alert tcp any any -> any 80 (content:\"|4g|\"; sid:1;)", "bad hex"),
        ("alert tcp any any -> any 80 (content:\"a\"; offset:x; sid:1;)", "offset: bad value"),
        ("alert tcp any any <> any [1:1000] (content:\"a\"; sid:1;)", "both directions"),
        ("alert tcp any [1,3] -> any [1:1000,2000:3000] (content:\"a\"; sid:1;)", "only one range"),
        ("alert tcp any any -> any 80 (content:\"a\"; content:\"b\"; content:\"c\"; content:\"d\"; content:\"e\"; sid:1;)", "more than 4 contents"),
        ("alert tcp any any -> any 80 content:\"a\"; sid:1;", "no option list"),
    ];
    for (rule, why) in cases {
        let got = one(rule).expect_err(rule);
        assert!(got.contains(why), "{rule}: {got}");
    }
    let r = parse_file(
        "alert tcp any any -> any 80 (content:\"a\"; flow:established; sid:1;)",
        Path::new("t.rules"),
        false,
    );
    assert_eq!(
        r.refused_rules[0].2.split(' ').next(),
        Some("flow:established")
    );
}

#[test]
fn wide_ports_become_filters_and_source_ports_keys() {
    let r = one("alert tcp any any -> any 1024: (content:\"a\"; sid:1;)").unwrap();
    let p = r.placement().unwrap();
    assert_eq!(p.keys, [(ids_side::IDS_SIDE_ANY, 0)]);
    assert_eq!(p.dport, (1024, u16::MAX));
    let r = one("alert tcp $HOME_NET 21 -> any any (flow:from_server; content:\"230 \"; sid:2;)")
        .unwrap();
    let p = r.placement().unwrap();
    assert_eq!(p.keys, [(ids_side::IDS_SIDE_SRC, 21)]);
    let r = one("alert udp any any <> any 53 (content:\"a\"; sid:3;)").unwrap();
    assert_eq!(
        r.placement().unwrap().keys,
        [(ids_side::IDS_SIDE_DST, 53), (ids_side::IDS_SIDE_SRC, 53)]
    );
    let r = one("alert tcp any 1:1023 -> any $HTTP_PORTS (content:\"a\"; sid:4;)").unwrap();
    let p = r.placement().unwrap();
    assert_eq!(
        (p.keys.clone(), p.sport),
        (vec![(ids_side::IDS_SIDE_DST, 80)], (1, 1023))
    );
}

#[test]
fn disabled_duplicate_and_continued_rules() {
    let text = "# alert tcp any any -> any 80 (content:\"a\"; sid:1;)\n\
                #alert tcp any any -> any 80 (content:\"a\"; sid:2;)\n\
                # just a comment (with parentheses)\n\
                alert tcp any any -> any 80 (content:\"a\"; \\\n   sid:3;)\n\
                alert tcp any any -> any 81 (content:\"b\"; sid:3;)\n";
    let r = parse_file(text, Path::new("t.rules"), true);
    assert_eq!(r.disabled, 2);
    assert_eq!(r.loaded(), 1);
    assert_eq!(r.rules[0].origin, "t.rules:4");
    assert_eq!(r.refused.get("duplicate sid"), Some(&1));
    assert_eq!(r.refused_rules, [(6, Some(3), "duplicate sid".to_string())]);
}

#[test]
fn content_records_are_words_and_masks() {
    let c = Content {
        bytes: b"0123456789".to_vec(),
        nocase: false,
        offset: 0,
        depth: 0,
    };
    let rec = content_record(&c);
    assert_eq!((rec.len, rec.nwords), (10, 2));
    assert_eq!(rec.words[0], u64::from_le_bytes(*b"01234567"));
    assert_eq!(rec.words[1], u64::from_le_bytes(*b"89\0\0\0\0\0\0"));
    assert_eq!(rec.masks[..3], [u64::MAX, 0xffff, 0]);
}

#[test]
fn a_full_port_refuses_the_rest() {
    let rules: Vec<IdsRule> = (0..MAX_PER_KEY + 2)
        .map(|i| {
            one(&format!(
                "alert tcp any any -> any 80 (content:\"a\"; sid:{};)",
                i + 1
            ))
            .unwrap()
        })
        .collect();
    let c = compile(&rules, 1.0);
    assert_eq!(c.rules.len(), MAX_PER_KEY);
    assert_eq!(c.refused.len(), 2);
    assert!(c.refused[0]
        .1
        .contains("more than 128 rules on destination port 80"));
}

/// The et-open files shipped with the lab: how many rules of each load, and why the others do
/// not. Exact: a parser change that loads or refuses differently must update these.
#[test]
fn et_open_import_counts() {
    let expect: [(&str, usize, usize, usize); 5] = [
        // (file, loaded, refused, disabled)
        ("botcc.rules", 0, 12, 0),
        ("compromised.rules", 0, 9, 0),
        ("drop.rules", 0, 55, 0),
        ("emerging-dos.rules", 0, 58, 55),
        ("emerging-scan.rules", 14, 271, 77),
    ];
    for (file, loaded, refused, disabled) in expect {
        let r = et_open(file, true);
        assert_eq!(
            (r.loaded(), r.refused_total(), r.disabled),
            (loaded, refused, disabled),
            "{}",
            r.summary()
        );
        let c = compile(&r.rules, 1.0);
        assert!(c.refused.is_empty(), "{:?}", c.refused);
    }
    let scan = et_open("emerging-scan.rules", true);
    assert_eq!(scan.refused.get("app-layer protocol http"), Some(&190));
    assert_eq!(scan.refused.get("keyword flags"), Some(&21));
    assert_eq!(
        scan.refused.get("protocol icmp (no ports to index by)"),
        Some(&12)
    );
    // without conntrack, flow:established rules cannot be honoured
    let scan = et_open("emerging-scan.rules", false);
    assert_eq!(scan.loaded(), 9);
    let botcc = et_open("botcc.rules", true);
    assert_eq!(
        botcc.refused.get("protocol ip (no ports to index by)"),
        Some(&12)
    );
}
