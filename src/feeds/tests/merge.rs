use std::collections::BTreeSet;
use std::path::PathBuf;

use ipnet::IpNet;

use super::{feed_config, feed_text, net};
use crate::config::{FeedConfig, FeedFormat, FeedSource};
use crate::feeds::{parse, FeedEntry, Ioc, IocDiff, IocSet, ParsedFeed, TiAction};

fn entry(text: &str, confidence: Option<u8>, category: Option<&str>) -> FeedEntry {
    FeedEntry {
        net: crate::feeds::parse::parse_ioc(text).unwrap(),
        confidence,
        category: category.map(str::to_owned),
    }
}

fn parsed(entries: Vec<FeedEntry>) -> ParsedFeed {
    ParsedFeed {
        entries,
        ..ParsedFeed::default()
    }
}

fn config(id: &str, action: Option<TiAction>, min_confidence: u8) -> FeedConfig {
    let mut feed = feed_config(
        id,
        FeedSource::Path(PathBuf::from(format!("/{id}"))),
        FeedFormat::Csv,
    );
    feed.action = action;
    feed.min_confidence = min_confidence;
    feed
}

fn ioc(text: &str, feed_id: u16, confidence: u8, category: u8, action: TiAction) -> Ioc {
    Ioc {
        net: net(text),
        feed_id,
        confidence,
        category,
        action,
    }
}

#[test]
fn highest_confidence_wins_then_the_lower_feed_id() {
    let a = config("a", None, 0);
    let b = config("b", Some(TiAction::Drop), 50);
    let feed_a = parsed(vec![
        entry("192.0.2.1", Some(60), Some("scan")),
        entry("192.0.2.2", Some(90), None),
        entry("192.0.2.3", None, Some("c2")),
        entry("10.1.0.0/16", Some(40), None),
        // the same network twice in one feed: the first of equals stays
        entry("192.0.2.4", Some(70), Some("first")),
        entry("192.0.2.4", Some(70), Some("second")),
    ]);
    let feed_b = parsed(vec![
        entry("192.0.2.1", Some(80), Some("c2")),
        entry("192.0.2.2", Some(90), Some("spam")),
        entry("192.0.2.3", Some(100), None),
        // below b's min_confidence: left out, whatever a says
        entry("198.51.100.0/24", Some(49), None),
        entry("2001:db8::/32", None, None),
    ]);
    // Feed order in the slice does not matter: b first.
    let set = IocSet::merge(&[(1, &b, &feed_b), (0, &a, &feed_a)], TiAction::Alert);
    // Only the winners' categories: "scan" and "spam" lost.
    assert_eq!(set.categories, ["unknown", "c2", "first"]);
    let c2 = 1;
    let first = 2;
    let got: Vec<Ioc> = set.iocs.values().cloned().collect();
    assert_eq!(
        got,
        [
            ioc("10.1.0.0/16", 0, 40, 0, TiAction::Alert),
            ioc("192.0.2.1/32", 1, 80, c2, TiAction::Drop),
            // equal confidence: feed 0
            ioc("192.0.2.2/32", 0, 90, 0, TiAction::Alert),
            // no confidence counts 100: feed 0 again
            ioc("192.0.2.3/32", 0, 100, c2, TiAction::Alert),
            ioc("192.0.2.4/32", 0, 70, first, TiAction::Alert),
            ioc("2001:db8::/32", 1, 100, 0, TiAction::Drop),
        ]
    );
    assert_eq!(set.category_name(c2), "c2");
    assert_eq!(set.category_name(200), "unknown");
    let default_drop = IocSet::merge(&[(0, &a, &feed_a)], TiAction::Drop);
    assert!(default_drop
        .iocs
        .values()
        .all(|ioc| ioc.action == TiAction::Drop));
}

#[test]
fn min_confidence_filters_per_feed() {
    let entries = parsed(vec![
        entry("192.0.2.1", Some(0), None),
        entry("192.0.2.2", Some(49), None),
        entry("192.0.2.3", Some(50), None),
        entry("192.0.2.4", None, None),
    ]);
    let count =
        |min| IocSet::merge(&[(0, &config("a", None, min), &entries)], TiAction::Alert).len();
    assert_eq!(count(0), 4);
    assert_eq!(count(50), 2);
    assert_eq!(count(100), 1);
}

#[test]
fn categories_past_255_are_unknown() {
    let entries = parsed(
        (0..300u16)
            .map(|i| {
                let name = format!("cat{i:03}");
                entry(&format!("10.0.{}.{}", i / 256, i % 256), None, Some(&name))
            })
            .collect(),
    );
    let set = IocSet::merge(&[(0, &config("a", None, 0), &entries)], TiAction::Alert);
    assert_eq!(set.categories.len(), 256);
    assert_eq!(set.categories[255], "cat254");
    assert_eq!(set.get(net("10.0.0.254/32")).unwrap().category, 255);
    assert_eq!(set.get(net("10.0.0.255/32")).unwrap().category, 0);
}

#[test]
fn diff_holds_only_what_changed() {
    let a = config("a", None, 0);
    let before = parsed(vec![
        entry("192.0.2.1", Some(50), None),
        entry("192.0.2.2", Some(50), None),
        entry("192.0.2.3", Some(50), None),
    ]);
    let after = parsed(vec![
        entry("192.0.2.2", Some(50), None),
        entry("192.0.2.3", Some(60), None),
        entry("192.0.2.4", Some(50), None),
    ]);
    let old = IocSet::merge(&[(0, &a, &before)], TiAction::Alert);
    let new = IocSet::merge(&[(0, &a, &after)], TiAction::Alert);
    assert_eq!(
        old.diff(&new),
        IocDiff {
            added_or_changed: vec![
                ioc("192.0.2.3/32", 0, 60, 0, TiAction::Alert),
                ioc("192.0.2.4/32", 0, 50, 0, TiAction::Alert),
            ],
            removed: vec![net("192.0.2.1/32")],
        }
    );
    assert!(new.diff(&new).is_empty());
    let from_nothing = IocSet::default().diff(&new);
    assert_eq!(from_nothing.added_or_changed.len(), 3);
    assert!(from_nothing.removed.is_empty());
    let to_nothing = new.diff(&IocSet::default());
    assert_eq!(to_nothing.removed.len(), 3);
}

#[test]
fn real_feeds_merge_into_their_union() {
    let firehol = parse(
        FeedFormat::Netset,
        &feed_text("firehol_level1.netset"),
        None,
        None,
        None,
    )
    .unwrap();
    let drop = parse(
        FeedFormat::Netset,
        &feed_text("spamhaus_drop.netset"),
        None,
        None,
        None,
    )
    .unwrap();
    let drop_v4 = parse(
        FeedFormat::Ndjson,
        &feed_text("spamhaus_drop_v4.json"),
        Some("cidr"),
        None,
        None,
    )
    .unwrap();
    let feeds = [
        config("firehol", None, 0),
        config("drop", Some(TiAction::Drop), 0),
        config("dropv4", None, 0),
    ];
    let set = IocSet::merge(
        &[
            (0, &feeds[0], &firehol),
            (1, &feeds[1], &drop),
            (2, &feeds[2], &drop_v4),
        ],
        TiAction::Alert,
    );
    // (entries of the two netsets with /32 added to single addresses, and the JSON's cidr
    // values) | sort -u | wc -l → 3521
    assert_eq!(set.len(), 3521);
    // Everything carries confidence 100, so the lowest feed id listing a network wins.
    // With F, D, J the three sorted lists: comm -13 F D | wc -l → 9 DROP networks
    // firehol_level1 lacks; comm -13 <(sort -u F D) J | wc -l → 768 only in the JSON.
    let by_feed = |id| set.iocs.values().filter(|ioc| ioc.feed_id == id).count();
    assert_eq!(by_feed(0), 2744);
    assert_eq!(by_feed(1), 9);
    assert_eq!(by_feed(2), 768);
    assert!(set
        .iocs
        .values()
        .all(|ioc| (ioc.action == TiAction::Drop) == (ioc.feed_id == 1)));
    let listed: BTreeSet<IpNet> = drop.entries.iter().map(|e| e.net).collect();
    assert_eq!(listed.len(), 926);
    assert!(listed.iter().all(|net| set.iocs.contains_key(net)));
    let hits = set.matching("1.10.16.1".parse().unwrap());
    assert_eq!(hits.len(), 1);
    assert_eq!(hits[0].net, net("1.10.16.0/20"));
}
