use std::collections::{BTreeMap, BTreeSet};

use ipnet::IpNet;

use super::{feed_text, net};
use crate::config::FeedFormat;
use crate::feeds::parse::{parse, ParseError, ParsedFeed, MAX_REPORTED_ERRORS};

fn lines(format: FeedFormat, text: &str) -> ParsedFeed {
    parse(format, text, None, None, None).unwrap_or_else(|e| panic!("{e}"))
}

fn fields(
    format: FeedFormat,
    text: &str,
    field: &str,
    confidence: Option<&str>,
    category: Option<&str>,
) -> Result<ParsedFeed, ParseError> {
    parse(format, text, Some(field), confidence, category)
}

fn nets(parsed: &ParsedFeed) -> Vec<IpNet> {
    parsed.entries.iter().map(|e| e.net).collect()
}

#[test]
fn firehol_level1_netset() {
    // grep -vcE '^\s*(#|$)' firehol_level1.netset → 2744 (the header says 2744 too);
    // grep -vE '^\s*(#|$)' firehol_level1.netset | grep -vc / → 403 single addresses
    let parsed = lines(FeedFormat::Netset, &feed_text("firehol_level1.netset"));
    assert_eq!(parsed.entries.len(), 2744);
    assert_eq!(parsed.bad_lines, 0, "{:?}", parsed.errors);
    let hosts = parsed.entries.iter().filter(|e| e.net.prefix_len() == 32);
    assert_eq!(hosts.count(), 403);
    // grep -n -m1 -vE '^\s*(#|$)' → line 34: 0.0.0.0/8
    assert_eq!(parsed.entries[0].net, net("0.0.0.0/8"));
    assert!(parsed.entries.iter().all(|e| e.net == e.net.trunc()));
    assert!(parsed
        .entries
        .iter()
        .all(|e| e.confidence.is_none() && e.category.is_none()));
}

#[test]
fn dshield_and_spamhaus_drop_netsets() {
    // grep -vcE '^\s*(#|$)' → 18 and 926
    let dshield = lines(FeedFormat::Netset, &feed_text("dshield.netset"));
    assert_eq!((dshield.entries.len(), dshield.bad_lines), (18, 0));
    assert_eq!(dshield.entries[0].net, net("45.135.232.0/24"));
    let drop = lines(FeedFormat::Netset, &feed_text("spamhaus_drop.netset"));
    assert_eq!((drop.entries.len(), drop.bad_lines), (926, 0));
    assert_eq!(drop.entries[0].net, net("1.10.16.0/20"));
    // Both line formats are one parser: the same file reads the same either way.
    assert_eq!(
        lines(FeedFormat::Spamhaus, &feed_text("spamhaus_drop.netset")),
        drop
    );
}

#[test]
fn spamhaus_ipv6_drop_text() {
    // grep -vcE '^\s*(;|$)' spamhaus_dropv6.txt → 78, the count SOURCES.md gives
    let parsed = lines(FeedFormat::Spamhaus, &feed_text("spamhaus_dropv6.txt"));
    assert_eq!((parsed.entries.len(), parsed.bad_lines), (78, 0));
    assert!(parsed.entries.iter().all(|e| matches!(e.net, IpNet::V6(_))));
    assert_eq!(parsed.entries[0].net, net("2001:678:6c4::/48"));
    assert_eq!(parsed.entries[77].net, net("2a14:7c3::/32"));
    let lens: BTreeSet<u8> = parsed.entries.iter().map(|e| e.net.prefix_len()).collect();
    assert_eq!(lens.first(), Some(&29));
    assert_eq!(lens.last(), Some(&48));
}

#[test]
fn feodo_csv_with_banner_quoted_header_crlf_and_trailer() {
    let text = feed_text("feodo_ipblocklist.csv");
    let parsed = fields(FeedFormat::Csv, &text, "dst_ip", None, Some("malware")).unwrap();
    // grep -c '^"[0-9]' feodo_ipblocklist.csv → 750 rows ("# END 750 entries");
    // ... | cut -d, -f2 | sort -u | wc -l → 728 distinct addresses
    assert_eq!((parsed.entries.len(), parsed.bad_lines), (750, 0));
    let distinct: BTreeSet<IpNet> = nets(&parsed).into_iter().collect();
    assert_eq!(distinct.len(), 728);
    assert_eq!(parsed.entries[0].net, net("51.178.161.32/32"));
    assert_eq!(parsed.entries[749].net, net("59.6.7.83/32"));
    // ... | cut -d, -f6 | sort | uniq -c
    let mut by_malware: BTreeMap<&str, usize> = BTreeMap::new();
    for entry in &parsed.entries {
        *by_malware
            .entry(entry.category.as_deref().unwrap())
            .or_default() += 1;
    }
    let expected = [
        ("BazarLoader", 192),
        ("Dridex", 148),
        ("Emotet", 56),
        ("QakBot", 169),
        ("TrickBot", 185),
    ];
    assert_eq!(by_malware, BTreeMap::from(expected));
}

#[test]
fn csv_header_may_be_a_comment() {
    // abuse.ch's current layout: `# "first_seen_utc","dst_ip",...` after the banner.
    let text = feed_text("feodo_ipblocklist.csv").replacen(
        "\"first_seen_utc\",",
        "# \"first_seen_utc\",",
        1,
    );
    let parsed = fields(FeedFormat::Csv, &text, "dst_ip", None, None).unwrap();
    assert_eq!((parsed.entries.len(), parsed.bad_lines), (750, 0));
    let unquoted =
        "# banner, dst_ip is below\n# first_seen,dst_ip,port\n2021-01-01,192.0.2.1,443\n";
    let parsed = fields(FeedFormat::Csv, unquoted, "dst_ip", None, None).unwrap();
    assert_eq!(nets(&parsed), [net("192.0.2.1/32")]);
}

#[test]
fn csv_without_the_named_column_fails_at_the_header() {
    let error = fields(
        FeedFormat::Csv,
        &feed_text("feodo_ipblocklist.csv"),
        "ip",
        None,
        None,
    )
    .unwrap_err();
    // line 9: the header, after eight banner lines
    assert_eq!(error.line, 9);
    assert_eq!(error.reason, "no column `ip` in the header (columns: first_seen_utc, dst_ip, dst_port, c2_status, last_online, malware)");
    let error = fields(
        FeedFormat::Csv,
        "ip,score\n192.0.2.1,5\n",
        "ip",
        Some("confidence"),
        None,
    )
    .unwrap_err();
    assert_eq!(error.line, 1);
    assert!(error.reason.contains("no column `confidence`"), "{error}");
}

#[test]
fn csv_bad_rows_are_skipped_with_their_line() {
    let text = "\
ip,confidence,category,note
192.0.2.1,90,c2,\"plain\"
\"192.0.2.2\",\"10\",\"scan\",\"a \"\"quoted\"\", comma\"
not-an-ip,50,x,y

198.51.100.7,500,x,y
198.51.100.8
\"198.51.100.9,1,x,y
2001:db8::1,75.6,,z
# a comment in the middle
203.0.113.0/24,,spam,
";
    let parsed = fields(
        FeedFormat::Csv,
        text,
        "ip",
        Some("confidence"),
        Some("category"),
    )
    .unwrap();
    let got: Vec<(IpNet, Option<u8>, Option<&str>)> = parsed
        .entries
        .iter()
        .map(|e| (e.net, e.confidence, e.category.as_deref()))
        .collect();
    assert_eq!(
        got,
        [
            (net("192.0.2.1/32"), Some(90), Some("c2")),
            (net("192.0.2.2/32"), Some(10), Some("scan")),
            (net("2001:db8::1/128"), Some(76), None),
            (net("203.0.113.0/24"), None, Some("spam")),
        ]
    );
    assert_eq!(parsed.bad_lines, 4);
    let lines: Vec<usize> = parsed.errors.iter().map(|(line, _)| *line).collect();
    assert_eq!(lines, [4, 6, 7, 8]);
    assert_eq!(
        parsed.errors[0].1,
        "`not-an-ip` is not an IP address or a CIDR network"
    );
    assert_eq!(parsed.errors[1].1, "confidence `500` is not in 0..100");
    assert!(
        parsed.errors[2].1.contains("1 columns"),
        "{:?}",
        parsed.errors
    );
    assert_eq!(parsed.errors[3].1, "unterminated quoted field");
}

#[test]
fn truncated_csv_loses_only_the_cut_row() {
    let text = feed_text("feodo_ipblocklist.csv");
    // Cut inside the quoted address of the 101st row (line 110).
    let row = text.split('\n').nth(109).unwrap();
    let at = text.find(row).unwrap() + row.find("\",\"").unwrap() + 6;
    let parsed = fields(FeedFormat::Csv, &text[..at], "dst_ip", None, None).unwrap();
    assert_eq!(parsed.entries.len(), 100);
    assert_eq!(
        parsed.errors,
        [(110, "unterminated quoted field".to_owned())]
    );
}

#[test]
fn spamhaus_ndjson_skips_the_metadata_record() {
    // wc -l → 1382 lines; grep -c '"cidr"' → 1381 records; the last is the metadata one
    let text = feed_text("spamhaus_drop_v4.json");
    let parsed = fields(FeedFormat::Ndjson, &text, "cidr", None, Some("rir")).unwrap();
    assert_eq!((parsed.entries.len(), parsed.bad_lines), (1381, 0));
    assert_eq!(parsed.entries[0].net, net("1.10.16.0/20"));
    assert_eq!(parsed.entries[0].category.as_deref(), Some("apnic"));
    assert_eq!(parsed.entries[1380].net, net("223.254.0.0/16"));
    // The v4 JSON and the netset are different vintages of the same list; most of the
    // netset's networks are in the JSON:
    // (grep -vE '^\s*(#|$)' spamhaus_drop.netset; grep -o '"cidr":"[^"]*"' ... | cut -d'"' -f4)
    //   | sort -u | wc -l → 1710, so 926 + 1381 - 1710 = 597 in both.
    let json: BTreeSet<IpNet> = nets(&parsed).into_iter().collect();
    let netset = lines(FeedFormat::Netset, &feed_text("spamhaus_drop.netset"));
    let both = nets(&netset)
        .iter()
        .filter(|net| json.contains(net))
        .count();
    assert_eq!(both, 597);
}

#[test]
fn truncated_ndjson_reports_the_cut_line() {
    let text = feed_text("spamhaus_drop_v4.json");
    let cut = &text[..text.find("\"SBL434604\"").unwrap()];
    let parsed = fields(FeedFormat::Ndjson, cut, "cidr", None, None).unwrap();
    assert_eq!(parsed.entries.len(), 1);
    assert_eq!(parsed.bad_lines, 1);
    assert_eq!(parsed.errors[0].0, 2);
    assert!(parsed.errors[0].1.contains("EOF"), "{:?}", parsed.errors);
}

#[test]
fn ndjson_garbage_lines() {
    let text = "{\"cidr\":\"192.0.2.0/24\"}\n<html>\n{\"ip\":\"192.0.2.9\"}\n[1]\n\"198.51.100.1\"\n{\"cidr\":7}\n{\"type\":\"metadata\",\"records\":3}\n";
    let parsed = fields(FeedFormat::Ndjson, text, "cidr", None, None).unwrap();
    assert_eq!(nets(&parsed), [net("192.0.2.0/24"), net("198.51.100.1/32")]);
    let errors: Vec<(usize, &str)> = parsed
        .errors
        .iter()
        .map(|(line, reason)| (*line, reason.as_str()))
        .collect();
    assert_eq!(
        errors,
        [
            (2, "expected value"),
            (3, "no `cidr` key"),
            (4, "expected an object or a string, found an array"),
            (6, "`cidr` is a number, not a string"),
        ]
    );
}

#[test]
fn json_array_of_objects_and_of_strings() {
    let text = r#"[
  {"ip": "192.0.2.1", "score": 80, "tags": "c2"},
  {"ip": "10.1.2.3/8", "score": "55"},
  {"ip": "2001:db8::/32", "score": null, "tags": 7},
  {"score": 10},
  {"ip": "nonsense"},
  "198.51.100.0/24",
  {"type": "metadata"}
]"#;
    let parsed = fields(FeedFormat::Json, text, "ip", Some("score"), Some("tags")).unwrap();
    let got: Vec<(IpNet, Option<u8>, Option<&str>)> = parsed
        .entries
        .iter()
        .map(|e| (e.net, e.confidence, e.category.as_deref()))
        .collect();
    assert_eq!(
        got,
        [
            (net("192.0.2.1/32"), Some(80), Some("c2")),
            // host bits are cut off, not refused: feeds are what they are
            (net("10.0.0.0/8"), Some(55), None),
            (net("2001:db8::/32"), None, Some("7")),
            (net("198.51.100.0/24"), None, None),
        ]
    );
    assert_eq!(
        parsed.errors,
        [
            (5, "no `ip` key".to_owned()),
            (
                6,
                "`nonsense` is not an IP address or a CIDR network".to_owned()
            )
        ]
    );
    let strings = parse(
        FeedFormat::Json,
        "[\"192.0.2.1\", \"::ffff:192.0.2.2\"]",
        None,
        None,
        None,
    )
    .unwrap();
    // An IPv4-mapped address is the IPv4 address the kernel sees.
    assert_eq!(nets(&strings), [net("192.0.2.1/32"), net("192.0.2.2/32")]);
}

#[test]
fn broken_json_fails_with_its_line() {
    let text =
        "[\n  {\"ip\": \"192.0.2.1\"},\n  {\"ip\": \"192.0.2.2\"\n  {\"ip\": \"192.0.2.3\"}\n]";
    let error = fields(FeedFormat::Json, text, "ip", None, None).unwrap_err();
    assert_eq!(error.line, 4);
    assert!(error.reason.starts_with("expected"), "{error}");
    let truncated = &text[..30];
    let error = fields(FeedFormat::Json, truncated, "ip", None, None).unwrap_err();
    assert_eq!(error.line, 3);
    let error = fields(
        FeedFormat::Json,
        "{\"ip\": \"192.0.2.1\"}",
        "ip",
        None,
        None,
    )
    .unwrap_err();
    assert_eq!(error.line, 1);
    assert!(error.reason.contains("expected a sequence"), "{error}");
    // The real NDJSON is not one JSON document.
    let error = fields(
        FeedFormat::Json,
        &feed_text("spamhaus_drop_v4.json"),
        "cidr",
        None,
        None,
    )
    .unwrap_err();
    assert_eq!(error.line, 1);
}

#[test]
fn hosts_files_and_domain_lists_are_not_ip_feeds() {
    // sed 's/[#;].*//' FILE | awk 'NF==1' | wc -l → 0 for both hosts files: no line is a
    // lone address, so nothing is usable; the first entry lines are 22 and 9.
    for (file, line) in [("adaway_hosts.txt", 22), ("scamblocklist_hosts.txt", 9)] {
        let error = parse(FeedFormat::Netset, &feed_text(file), None, None, None).unwrap_err();
        assert_eq!(error.line, line, "{file}: {error}");
        assert!(error.reason.contains("a hosts file?"), "{file}: {error}");
    }
    let error = parse(
        FeedFormat::Netset,
        &feed_text("spam404_main-blacklist.txt"),
        None,
        None,
        None,
    )
    .unwrap_err();
    // grep -c . → 8154 domains, all bad
    assert_eq!(error.line, 1);
    assert_eq!(
        error.reason,
        "no usable entry (8154 bad lines), the first: `telechargerdes.com` is not an IP address or a CIDR network"
    );
}

#[test]
fn netset_garbage_lines_and_comments() {
    let text = "\u{feff}# header\r\n192.0.2.1\r\n  198.51.100.0/24   # trailing comment\n\n; spamhaus comment\n10.0.0.1/8 ; SBL1\n0.0.0.0 ads.example\n300.1.2.3\n192.0.2.0/33\n2001:db8::/32\nfe80::1%eth0\n1.2.3.4-1.2.3.9\n";
    let parsed = lines(FeedFormat::Netset, text);
    assert_eq!(
        nets(&parsed),
        [
            net("192.0.2.1/32"),
            net("198.51.100.0/24"),
            net("10.0.0.0/8"),
            net("2001:db8::/32"),
        ]
    );
    let errors: Vec<(usize, &str)> = parsed
        .errors
        .iter()
        .map(|(line, reason)| (*line, reason.as_str()))
        .collect();
    assert_eq!(
        errors,
        [
            (
                7,
                "expected one address or network per line, found `0.0.0.0 ads.example` (a hosts file?)"
            ),
            (8, "`300.1.2.3` is not an IP address or a CIDR network"),
            (9, "`192.0.2.0/33` is not a CIDR network"),
            (11, "`fe80::1%eth0` is not an IP address or a CIDR network"),
            (12, "`1.2.3.4-1.2.3.9` is not an IP address or a CIDR network"),
        ]
    );
}

#[test]
fn bad_lines_past_the_cap_are_counted_not_kept() {
    let mut text = "192.0.2.1\n".to_owned();
    for _ in 0..150 {
        text.push_str("garbage\n");
    }
    let parsed = lines(FeedFormat::Netset, &text);
    assert_eq!(parsed.entries.len(), 1);
    assert_eq!(parsed.bad_lines, 150);
    assert_eq!(parsed.errors.len(), MAX_REPORTED_ERRORS);
    assert_eq!(parsed.first_error().map(|(line, _)| *line), Some(2));
}

#[test]
fn empty_input_fails_but_a_feed_listing_nothing_does_not() {
    for format in [
        FeedFormat::Netset,
        FeedFormat::Spamhaus,
        FeedFormat::Csv,
        FeedFormat::Json,
        FeedFormat::Ndjson,
    ] {
        for text in ["", " \n\r\n", "\u{feff}"] {
            let error = parse(format, text, Some("ip"), None, None).unwrap_err();
            assert_eq!(error.reason, "the feed is empty", "{format:?} {text:?}");
        }
    }
    // Feodo with no C2 online: banner, header and trailer only.
    let feodo = feed_text("feodo_ipblocklist.csv");
    let empty: String = feodo
        .split_inclusive('\n')
        .filter(|line| !line.starts_with("\"2"))
        .collect();
    let parsed = fields(FeedFormat::Csv, &empty, "dst_ip", None, None).unwrap();
    assert_eq!(parsed, ParsedFeed::default());
    assert_eq!(
        lines(FeedFormat::Netset, "# nothing listed today\n"),
        ParsedFeed::default()
    );
    let parsed = fields(FeedFormat::Json, "[]", "ip", None, None).unwrap();
    assert_eq!(parsed, ParsedFeed::default());
}

#[test]
fn ipv6_in_every_format() {
    let v6 = [net("2001:db8::1/128"), net("2001:db8:1::/48")];
    let netset = lines(FeedFormat::Netset, "2001:db8::1\n2001:db8:1::/48 # x\n");
    assert_eq!(nets(&netset), v6);
    let csv = fields(
        FeedFormat::Csv,
        "ip\n\"2001:db8::1\"\n2001:db8:1::5/48\n",
        "ip",
        None,
        None,
    )
    .unwrap();
    assert_eq!(nets(&csv), v6);
    let ndjson = fields(
        FeedFormat::Ndjson,
        "{\"ip\":\"2001:db8::1\"}\n{\"ip\":\"2001:db8:1::/48\"}\n",
        "ip",
        None,
        None,
    )
    .unwrap();
    assert_eq!(nets(&ndjson), v6);
}
