//! DNS blocklist feeds, refreshed the way threat-intel feeds are ([`super::Feeds`]): the same
//! [`Fetcher`] (http(s) with validators, or a file), the same schedule (`refresh`, then a
//! doubling back-off after failures, never later than `refresh`), and a feed that fails keeps
//! the domains of its last good body.

use std::time::{Duration, Instant, SystemTime};

use super::domains::{parse_domains, ParsedDomains};
use super::fetch::{FetchOutcome, Fetcher, Validators};
use super::state::{FeedFailure, FAILURE_BACKOFF, MAX_FAILURE_BACKOFF};
use crate::config::{DnsBlocklistConfig, DnsFeedConfig, FeedSource};
use crate::maps::dns::{Blocklist, LIST_CONFIG};

#[derive(Debug, Clone, Default)]
pub struct DomainFeedState {
    pub last_attempt: Option<SystemTime>,
    pub last_refresh: Option<SystemTime>,
    pub last_error: Option<FeedFailure>,
    pub consecutive_failures: u32,
    pub validators: Validators,
    /// the domains in force; None until a body first parses
    pub parsed: Option<ParsedDomains>,
    /// None: only a reload refreshes it again
    due: Option<Instant>,
}

pub struct DomainFeeds {
    config: DnsBlocklistConfig,
    states: Vec<DomainFeedState>,
    fetcher: Fetcher,
}

/// One feed's refresh: Ok(true) when its domains changed.
pub struct DomainRefresh {
    pub index: usize,
    pub id: String,
    pub outcome: Result<bool, FeedFailure>,
}

impl DomainFeeds {
    pub fn new(config: &DnsBlocklistConfig, fetcher: Fetcher) -> DomainFeeds {
        let now = Instant::now();
        DomainFeeds {
            states: config
                .feeds
                .iter()
                .map(|_| DomainFeedState {
                    due: Some(now),
                    ..Default::default()
                })
                .collect(),
            config: config.clone(),
            fetcher,
        }
    }

    /// A reload: feeds whose id, source and format are unchanged keep their domains and
    /// schedule; the others are fetched at once.
    pub fn reconfigure(&mut self, config: &DnsBlocklistConfig) {
        let now = Instant::now();
        let mut old: Vec<Option<(DnsFeedConfig, DomainFeedState)>> = self
            .config
            .feeds
            .iter()
            .cloned()
            .zip(std::mem::take(&mut self.states))
            .map(Some)
            .collect();
        self.states = config
            .feeds
            .iter()
            .map(|f| {
                old.iter_mut()
                    .find(|o| {
                        o.as_ref().is_some_and(|(c, _)| {
                            c.id == f.id && c.source == f.source && c.format == f.format
                        })
                    })
                    .and_then(Option::take)
                    .map(|(_, s)| s)
                    .unwrap_or(DomainFeedState {
                        due: Some(now),
                        ..Default::default()
                    })
            })
            .collect();
        self.config = config.clone();
    }

    pub fn config(&self) -> &DnsBlocklistConfig {
        &self.config
    }

    pub fn states(&self) -> &[DomainFeedState] {
        &self.states
    }

    pub fn next_due(&self) -> Option<Instant> {
        self.states.iter().filter_map(|s| s.due).min()
    }

    pub fn refresh_due(&mut self, now: Instant) -> Vec<DomainRefresh> {
        (0..self.states.len())
            .filter(|i| self.states[*i].due.is_some_and(|d| d <= now))
            .collect::<Vec<_>>()
            .into_iter()
            .map(|i| self.refresh(i, now))
            .collect()
    }

    pub fn refresh(&mut self, index: usize, now: Instant) -> DomainRefresh {
        let feed = &self.config.feeds[index];
        let state = &mut self.states[index];
        state.last_attempt = Some(SystemTime::now());
        let known = if state.parsed.is_some() {
            state.validators.clone()
        } else {
            Validators::default()
        };
        let outcome = match self.fetcher.fetch(&feed.source, &known) {
            Ok(FetchOutcome::NotModified) => Ok(false),
            Ok(FetchOutcome::Body { text, validators }) => {
                let parsed = parse_domains(&text, feed.format);
                match (&parsed.first_error, parsed.domains.is_empty()) {
                    (Some((line, why)), true) => Err(FeedFailure {
                        message: format!("no domain in {}: {why}", source_text(&feed.source)),
                        line: Some(*line),
                    }),
                    _ => {
                        let changed = state.parsed.as_ref() != Some(&parsed);
                        state.parsed = Some(parsed);
                        state.validators = validators;
                        Ok(changed)
                    }
                }
            }
            Err(e) => Err(FeedFailure {
                message: e.to_string(),
                line: None,
            }),
        };
        match &outcome {
            Ok(_) => {
                state.last_refresh = state.last_attempt;
                state.last_error = None;
                state.consecutive_failures = 0;
                state.due = feed.refresh.map(|every| now + every);
            }
            Err(failure) => {
                state.last_error = Some(failure.clone());
                state.consecutive_failures = state.consecutive_failures.saturating_add(1);
                let doublings = (state.consecutive_failures - 1).min(16);
                let backoff: Duration = FAILURE_BACKOFF
                    .saturating_mul(1 << doublings)
                    .min(MAX_FAILURE_BACKOFF);
                state.due = Some(now + feed.refresh.map_or(backoff, |e| backoff.min(e)));
            }
        }
        DomainRefresh {
            index,
            id: feed.id.clone(),
            outcome,
        }
    }

    /// The config's domains, then every feed's in force, each with its list and action.
    pub fn blocklist(&self) -> Blocklist {
        let mut out = Blocklist::default();
        for d in &self.config.domains {
            out.add(d, LIST_CONFIG, self.config.action);
        }
        for (i, (feed, state)) in self.config.feeds.iter().zip(&self.states).enumerate() {
            let action = feed.action.unwrap_or(self.config.action);
            for d in state.parsed.iter().flat_map(|p| &p.domains) {
                out.add(d, 1 + i as u16, action);
            }
        }
        out
    }
}

pub fn source_text(source: &FeedSource) -> String {
    match source {
        FeedSource::Url(u) => u.clone(),
        FeedSource::Path(p) => p.display().to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Location;
    use crate::feeds::domains::{DnsAction, DomainFormat};
    use crate::feeds::FetchLimits;

    fn feed(id: &str, path: &std::path::Path, format: DomainFormat) -> DnsFeedConfig {
        DnsFeedConfig {
            id: id.into(),
            location: Location {
                file: "config.yaml".into(),
                line: 1,
                col: 1,
            },
            source: FeedSource::Path(path.to_path_buf()),
            format,
            refresh: Some(Duration::from_secs(60)),
            action: None,
        }
    }

    #[test]
    fn refresh_keeps_the_last_good_body_and_merges_in_list_order() {
        let dir = std::env::temp_dir().join(format!("esdns-feeds-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let hosts = dir.join("hosts.txt");
        let plain = dir.join("plain.txt");
        std::fs::write(
            &hosts,
            "127.0.0.1 localhost\n0.0.0.0 ads.example\n0.0.0.0 both.example\n",
        )
        .unwrap();
        std::fs::write(&plain, "both.example\nspam.example\n").unwrap();
        let mut plain_feed = feed("spam", &plain, DomainFormat::Domains);
        plain_feed.action = Some(DnsAction::Alert);
        let cfg = DnsBlocklistConfig {
            action: DnsAction::Drop,
            domains: vec!["badsite.example".into()],
            feeds: vec![feed("ads", &hosts, DomainFormat::Hosts), plain_feed],
        };
        let mut feeds = DomainFeeds::new(&cfg, Fetcher::new(FetchLimits::default()));
        let now = Instant::now();
        let r = feeds.refresh_due(now);
        assert!(r.iter().all(|r| matches!(r.outcome, Ok(true))));
        let b = feeds.blocklist();
        let mut got: Vec<_> = b.domains.iter().map(|(d, v)| (d.as_str(), *v)).collect();
        got.sort();
        assert_eq!(
            got,
            [
                ("ads.example", (1, DnsAction::Drop)),
                ("badsite.example", (0, DnsAction::Drop)),
                ("both.example", (1, DnsAction::Drop)),
                ("spam.example", (2, DnsAction::Alert)),
            ]
        );
        assert!(feeds.refresh_due(now).is_empty());
        assert_eq!(feeds.next_due(), Some(now + Duration::from_secs(60)));
        // a body without a single domain fails with its line; the old domains stay
        std::fs::write(&plain, "# header\nnot a domain list\n").unwrap();
        let r = feeds.refresh(1, now);
        let e = r.outcome.unwrap_err();
        assert_eq!(e.line, Some(2));
        assert!(e.message.contains("one domain per line, then `a`"), "{e}");
        assert_eq!(feeds.blocklist(), b);
        assert_eq!(feeds.states()[1].consecutive_failures, 1);
        // a missing file is a failure too
        std::fs::remove_file(&hosts).unwrap();
        assert!(feeds.refresh(0, now).outcome.is_err());
        assert_eq!(feeds.blocklist(), b);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
