use std::net::IpAddr;
use std::time::{Duration, Instant};

use super::{feed_config, net, TempDir};
use crate::config::{FeedFormat, FeedSource, ThreatIntelConfig};
use crate::feeds::state::{FAILURE_BACKOFF, MAX_FAILURE_BACKOFF};
use crate::feeds::{FeedFailure, Feeds, FetchLimits, Fetcher, Refreshed, TiAction};

fn fetcher() -> Fetcher {
    Fetcher::with_proxy(
        FetchLimits {
            attempts: 1,
            timeout: Duration::from_secs(5),
            ..FetchLimits::default()
        },
        None,
    )
}

/// Two file feeds in `dir`: `a` (netset, refreshed every 10 minutes) and `b` (CSV, read
/// once).
fn two_feeds(dir: &TempDir) -> ThreatIntelConfig {
    let mut a = feed_config(
        "a",
        FeedSource::Path(dir.0.join("a.netset")),
        FeedFormat::Netset,
    );
    a.refresh = Some(Duration::from_secs(600));
    let mut b = feed_config("b", FeedSource::Path(dir.0.join("b.csv")), FeedFormat::Csv);
    b.field = Some("ip".to_owned());
    b.action = Some(TiAction::Drop);
    ThreatIntelConfig {
        action: None,
        quarantine_vlan: None,
        feeds: vec![a, b],
    }
}

#[test]
fn a_failing_feed_keeps_its_previous_iocs() {
    let dir = TempDir::new("state");
    let config = two_feeds(&dir);
    let a_path = dir.0.join("a.netset");
    std::fs::write(&a_path, "192.0.2.1\n198.51.100.0/24\nbogus\n").unwrap();
    std::fs::write(dir.0.join("b.csv"), "ip,x\n192.0.2.1,1\n203.0.113.9,2\n").unwrap();
    let mut feeds = Feeds::new(&config, fetcher());
    let t0 = Instant::now();
    assert_eq!(feeds.next_due(t0), Some(t0));

    let reports = feeds.refresh_due(t0);
    let outcomes: Vec<_> = reports.iter().map(|r| r.outcome.clone()).collect();
    assert_eq!(
        outcomes,
        [
            Ok(Refreshed::Updated {
                entries: 2,
                bad_lines: 1
            }),
            Ok(Refreshed::Updated {
                entries: 2,
                bad_lines: 0
            }),
        ]
    );
    assert!(reports.iter().all(|r| r.changed()));
    let a = &feeds.states()[0];
    assert_eq!(
        a.first_bad_line,
        Some((
            3,
            "`bogus` is not an IP address or a CIDR network".to_owned()
        ))
    );
    assert!(a.last_refresh.is_some() && a.last_error.is_none());
    let merged = feeds.merged();
    assert_eq!(merged.len(), 3);
    // Both list 192.0.2.1 with no confidence: feed 0 (a) wins, with the default action.
    let shared = merged.get(net("192.0.2.1/32")).unwrap();
    assert_eq!((shared.feed_id, shared.action), (0, TiAction::Alert));
    assert_eq!(
        merged.get(net("203.0.113.9/32")).unwrap().action,
        TiAction::Drop
    );
    let addr: IpAddr = "192.0.2.1".parse().unwrap();
    let listed: Vec<&str> = feeds.lookup(addr).iter().map(|(_, id, _)| *id).collect();
    assert_eq!(listed, ["a", "b"]);

    // a every 10 minutes, b never again.
    assert_eq!(feeds.next_due(t0), Some(t0 + Duration::from_secs(600)));
    assert!(feeds.refresh_due(t0 + Duration::from_secs(599)).is_empty());
    let t1 = t0 + Duration::from_secs(600);
    let reports = feeds.refresh_due(t1);
    assert_eq!(reports.len(), 1);
    assert_eq!(reports[0].outcome, Ok(Refreshed::NotModified));
    assert!(!reports[0].changed());

    // Garbage replaces the file: the refresh fails and the old IOCs stay.
    std::fs::write(&a_path, "<html>\n<body>error</body>\n").unwrap();
    let t2 = t1 + Duration::from_secs(600);
    let reports = feeds.refresh_due(t2);
    let failure = FeedFailure {
        message: "no usable entry (2 bad lines), the first: `<html>` is not an IP address or a CIDR network".to_owned(),
        line: Some(1),
    };
    assert_eq!(reports[0].outcome, Err(failure.clone()));
    assert_eq!(
        failure.to_string(),
        "line 1: no usable entry (2 bad lines), the first: `<html>` is not an IP address or a CIDR network"
    );
    let a = &feeds.states()[0];
    assert_eq!(a.last_error, Some(failure));
    assert_eq!((a.consecutive_failures, a.entries), (1, 2));
    assert_eq!(feeds.merged(), merged);
    // Retried after the backoff, not after the full refresh period.
    assert_eq!(feeds.next_due(t2), Some(t2 + FAILURE_BACKOFF));
    // The broken file is reread (its version was never accepted) and fails again.
    let t3 = t2 + FAILURE_BACKOFF;
    let reports = feeds.refresh_due(t3);
    assert!(reports[0].outcome.is_err());
    assert_eq!(feeds.states()[0].consecutive_failures, 2);
    assert_eq!(feeds.next_due(t3), Some(t3 + 2 * FAILURE_BACKOFF));

    // Fixed: back to normal.
    std::fs::write(&a_path, "192.0.2.1\n").unwrap();
    let t4 = t3 + 2 * FAILURE_BACKOFF;
    let reports = feeds.refresh_due(t4);
    assert!(reports[0].changed());
    let a = &feeds.states()[0];
    assert_eq!((a.consecutive_failures, a.entries, a.bad_lines), (0, 1, 0));
    assert!(a.last_error.is_none() && a.first_bad_line.is_none());
    let diff = merged.diff(&feeds.merged());
    assert_eq!(diff.removed, [net("198.51.100.0/24")]);
    assert!(diff.added_or_changed.is_empty());
}

#[test]
fn failure_backoff_doubles_up_to_the_refresh_period() {
    let dir = TempDir::new("backoff");
    let mut config = two_feeds(&dir);
    config.feeds.truncate(1);
    config.feeds[0].refresh = Some(Duration::from_secs(6 * 3600));
    let mut feeds = Feeds::new(&config, fetcher());
    let mut now = Instant::now();
    let mut delays = Vec::new();
    for _ in 0..9 {
        let reports = feeds.refresh_due(now);
        assert_eq!(reports.len(), 1);
        let message = &reports[0].outcome.as_ref().unwrap_err().message;
        assert!(message.contains("a.netset: No such file"), "{message}");
        let next = feeds.next_due(now).unwrap();
        delays.push((next - now).as_secs() / 60);
        now = next;
    }
    assert_eq!(delays, [1, 2, 4, 8, 16, 32, 60, 60, 60]);
    assert_eq!(MAX_FAILURE_BACKOFF, Duration::from_secs(3600));
    // A feed refreshed more often than the backoff is retried at its own pace.
    config.feeds[0].refresh = Some(Duration::from_secs(90));
    let mut feeds = Feeds::new(&config, fetcher());
    for _ in 0..3 {
        feeds.refresh_due(now);
        let next = feeds.next_due(now).unwrap();
        assert!(next - now <= Duration::from_secs(90));
        now = next;
    }
    assert_eq!(feeds.states()[0].consecutive_failures, 3);
    assert!(feeds.merged().is_empty());
}

#[test]
fn reconfigure_keeps_unchanged_feeds() {
    let dir = TempDir::new("reconfigure");
    let config = two_feeds(&dir);
    std::fs::write(dir.0.join("a.netset"), "192.0.2.1\n").unwrap();
    std::fs::write(dir.0.join("b.csv"), "ip\n192.0.2.2\n").unwrap();
    let mut feeds = Feeds::new(&config, fetcher());
    let now = Instant::now();
    feeds.refresh_due(now);
    assert_eq!(feeds.next_due(now), Some(now + Duration::from_secs(600)));

    // b's action changes (merging only), a's field set changes (a new feed to parse), and
    // the order is swapped.
    let mut next = config.clone();
    next.feeds.swap(0, 1);
    next.feeds[0].action = Some(TiAction::Alert);
    next.feeds[1].format = FeedFormat::Spamhaus;
    feeds.reconfigure(&next);
    let ids: Vec<&str> = feeds.states().iter().map(|s| s.id.as_str()).collect();
    assert_eq!(ids, ["b", "a"]);
    assert_eq!(feeds.states()[0].entries, 1);
    assert!(feeds.states()[0].parsed.is_some());
    assert!(feeds.states()[1].parsed.is_none());
    // Everything is due again after a reload; b (read once) included.
    assert_eq!(feeds.next_due(now), Some(now));
    let merged = feeds.merged();
    assert_eq!(merged.len(), 1);
    let ioc = merged.get(net("192.0.2.2/32")).unwrap();
    assert_eq!((ioc.feed_id, ioc.action), (0, TiAction::Alert));
    let reports = feeds.refresh_due(now);
    assert_eq!(reports[0].outcome, Ok(Refreshed::NotModified));
    assert!(reports[1].changed());
    assert_eq!(feeds.merged().len(), 2);
}
