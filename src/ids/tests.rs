use std::path::Path;

use super::suricata::parse_file;
use super::*;

fn one(rule: &str) -> Result<IdsRule, String> {
    let r = parse_file(rule, Path::new("t.rules"), true);
    match (r.rules.first(), r.refused_rules.first()) {
        (Some(rule), None) => Ok(rule.clone()),
        (None, Some((_, _, why))) => Err(why.clone()),
        other => panic!("{other:?}"),
    }
}

fn et_open(file: &str) -> suricata::FileReport {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../shared/data/feeds/et-open")
        .join(file);
    let text = std::fs::read_to_string(&path).expect("et-open rules");
    parse_file(&text, &path, true)
}

#[test]
fn print_et_open() {
    for f in ["botcc.rules", "compromised.rules", "drop.rules", "emerging-dos.rules", "emerging-scan.rules"] {
        let r = et_open(f);
        println!("{}", r.summary());
        let c = compile(&r.rules, 1.0);
        println!("  compile refused {}", c.refused.len());
    }
    let r = parse_file(&std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data/feeds/et-open/emerging-scan.rules")).unwrap(), Path::new("x"), false);
    println!("{}", r.summary());
}
