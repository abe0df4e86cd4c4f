//! Every configured feed's state between refreshes: the IOCs in force, when it was last
//! refreshed, what went wrong, and when it is due again.

use std::fmt;
use std::net::IpAddr;
use std::time::{Duration, Instant, SystemTime};

use super::fetch::{FetchOutcome, Fetcher, Validators};
use super::parse::{parse_feed, FeedEntry, ParsedFeed};
use super::IocSet;
use crate::config::{FeedConfig, ThreatIntelConfig};

/// After a failure a feed is tried again after this, doubled per further failure up to
/// [`MAX_FAILURE_BACKOFF`], and never later than its `refresh`.
pub const FAILURE_BACKOFF: Duration = Duration::from_secs(60);
pub const MAX_FAILURE_BACKOFF: Duration = Duration::from_secs(3600);

/// Why a refresh did not replace a feed's IOCs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeedFailure {
    pub message: String,
    /// the line the parser gave up on (the first bad one when none was usable)
    pub line: Option<usize>,
}

impl fmt::Display for FeedFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(f, "line {line}: {}", self.message),
            None => f.write_str(&self.message),
        }
    }
}

impl std::error::Error for FeedFailure {}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Due {
    Now,
    At(Instant),
    /// fetched once (no `refresh`), until a reload or an explicit refresh
    Never,
}

#[derive(Debug, Clone)]
pub struct FeedState {
    pub id: String,
    /// the last fetch or read, whatever came of it
    pub last_attempt: Option<SystemTime>,
    /// the last time the IOCs in force were confirmed: a body that parsed, or 304
    pub last_refresh: Option<SystemTime>,
    /// the last time a new body replaced the IOCs
    pub last_change: Option<SystemTime>,
    /// entries of the IOCs in force, before min_confidence and deduplication
    pub entries: usize,
    /// bad lines skipped in the body in force
    pub bad_lines: usize,
    /// the first of them: (line, reason)
    pub first_bad_line: Option<(usize, String)>,
    /// the failure of the last refresh; None once one succeeds
    pub last_error: Option<FeedFailure>,
    pub consecutive_failures: u32,
    /// the version of the body in force, sent with the next fetch
    pub validators: Validators,
    /// the IOCs in force; None until a body first parses
    pub parsed: Option<ParsedFeed>,
    due: Due,
}

impl FeedState {
    fn new(id: &str) -> FeedState {
        FeedState {
            id: id.to_owned(),
            last_attempt: None,
            last_refresh: None,
            last_change: None,
            entries: 0,
            bad_lines: 0,
            first_bad_line: None,
            last_error: None,
            consecutive_failures: 0,
            validators: Validators::default(),
            parsed: None,
            due: Due::Now,
        }
    }

    /// When the feed is next refreshed; None when only a reload or an explicit refresh will.
    pub fn next_due(&self, now: Instant) -> Option<Instant> {
        match self.due {
            Due::Now => Some(now),
            Due::At(at) => Some(at),
            Due::Never => None,
        }
    }

    fn is_due(&self, now: Instant) -> bool {
        match self.due {
            Due::Now => true,
            Due::At(at) => at <= now,
            Due::Never => false,
        }
    }
}

/// One feed's refresh, as [`Feeds::refresh_due`] reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refresh {
    /// in `threatintel.feeds`: the feed's kernel id
    pub index: usize,
    pub id: String,
    /// on failure the feed keeps its previous IOCs
    pub outcome: Result<Refreshed, FeedFailure>,
}

impl Refresh {
    /// Whether the merged IOC set may differ because of this refresh.
    pub fn changed(&self) -> bool {
        matches!(self.outcome, Ok(Refreshed::Updated { .. }))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refreshed {
    /// a new body replaced the feed's IOCs
    Updated { entries: usize, bad_lines: usize },
    /// the version in force is still current
    NotModified,
}

/// The configured feeds and their states. See the module documentation for the loop that
/// drives it.
pub struct Feeds {
    config: ThreatIntelConfig,
    fetcher: Fetcher,
    states: Vec<FeedState>,
}

impl Feeds {
    /// Every feed is due at once.
    pub fn new(config: &ThreatIntelConfig, fetcher: Fetcher) -> Feeds {
        Feeds {
            states: config.feeds.iter().map(|f| FeedState::new(&f.id)).collect(),
            config: config.clone(),
            fetcher,
        }
    }

    /// Takes a reloaded config. A feed whose id, source, format and fields are unchanged
    /// keeps its IOCs and validators; every feed is due at once, which costs an unchanged
    /// URL feed a 304 and an unchanged file a stat.
    pub fn reconfigure(&mut self, config: &ThreatIntelConfig) {
        let mut old: Vec<Option<(FeedConfig, FeedState)>> = self
            .config
            .feeds
            .drain(..)
            .zip(self.states.drain(..))
            .map(Some)
            .collect();
        self.states = config
            .feeds
            .iter()
            .map(|feed| {
                let same = old.iter_mut().find(|slot| {
                    slot.as_ref()
                        .is_some_and(|(before, _)| same_content(before, feed))
                });
                match same.and_then(Option::take) {
                    Some((_, mut state)) => {
                        state.due = Due::Now;
                        state
                    }
                    None => FeedState::new(&feed.id),
                }
            })
            .collect();
        self.config = config.clone();
    }

    pub fn config(&self) -> &ThreatIntelConfig {
        &self.config
    }

    /// In `threatintel.feeds` order.
    pub fn states(&self) -> &[FeedState] {
        &self.states
    }

    /// The earliest time a feed is due; None when none will be without a reload.
    pub fn next_due(&self, now: Instant) -> Option<Instant> {
        self.states.iter().filter_map(|s| s.next_due(now)).min()
    }

    /// Fetches and parses every feed that is due, one after the other (blocking). A feed
    /// that fails keeps its previous IOCs and is tried again after a backoff.
    pub fn refresh_due(&mut self, now: Instant) -> Vec<Refresh> {
        let due: Vec<usize> = (0..self.states.len())
            .filter(|&index| self.states[index].is_due(now))
            .collect();
        due.into_iter()
            .map(|index| self.refresh(index, now))
            .collect()
    }

    /// Refreshes every feed now, due or not (an operator's request).
    pub fn refresh_all(&mut self, now: Instant) -> Vec<Refresh> {
        (0..self.states.len())
            .map(|index| self.refresh(index, now))
            .collect()
    }

    /// Refreshes feed `index` (in `threatintel.feeds`) now.
    ///
    /// # Panics
    /// If there is no such feed.
    pub fn refresh(&mut self, index: usize, now: Instant) -> Refresh {
        let feed = &self.config.feeds[index];
        let state = &mut self.states[index];
        let wall = SystemTime::now();
        state.last_attempt = Some(wall);
        // Without IOCs in force a 304 would leave nothing to keep.
        let known = if state.parsed.is_some() {
            state.validators.clone()
        } else {
            Validators::default()
        };
        let outcome = match self.fetcher.fetch(&feed.source, &known) {
            Ok(FetchOutcome::NotModified) => Ok(Refreshed::NotModified),
            Ok(FetchOutcome::Body { text, validators }) => match parse_feed(feed, &text) {
                Ok(parsed) => {
                    let refreshed = Refreshed::Updated {
                        entries: parsed.entries.len(),
                        bad_lines: parsed.bad_lines,
                    };
                    state.entries = parsed.entries.len();
                    state.bad_lines = parsed.bad_lines;
                    state.first_bad_line = parsed.first_error().cloned();
                    state.parsed = Some(parsed);
                    state.last_change = Some(wall);
                    // Only now: had the body been refused, its validators would earn a 304
                    // next time and hide the problem until the feed changes.
                    state.validators = validators;
                    Ok(refreshed)
                }
                Err(error) => Err(FeedFailure {
                    message: error.reason,
                    line: Some(error.line),
                }),
            },
            Err(error) => Err(FeedFailure {
                message: error.to_string(),
                line: None,
            }),
        };
        match &outcome {
            Ok(_) => {
                state.last_refresh = Some(wall);
                state.last_error = None;
                state.consecutive_failures = 0;
                state.due = feed
                    .refresh
                    .map_or(Due::Never, |every| Due::At(now + every));
            }
            Err(failure) => {
                state.last_error = Some(failure.clone());
                state.consecutive_failures = state.consecutive_failures.saturating_add(1);
                let doublings = (state.consecutive_failures - 1).min(16);
                let backoff = FAILURE_BACKOFF
                    .saturating_mul(1 << doublings)
                    .min(MAX_FAILURE_BACKOFF);
                let retry = feed.refresh.map_or(backoff, |every| backoff.min(every));
                state.due = Due::At(now + retry);
            }
        }
        Refresh {
            index,
            id: feed.id.clone(),
            outcome,
        }
    }

    /// The IOCs in force of every feed, merged.
    pub fn merged(&self) -> IocSet {
        let feeds: Vec<(u16, &FeedConfig, &ParsedFeed)> = self
            .config
            .feeds
            .iter()
            .zip(&self.states)
            .enumerate()
            .filter_map(|(index, (feed, state))| {
                Some((u16::try_from(index).ok()?, feed, state.parsed.as_ref()?))
            })
            .collect();
        IocSet::merge(&feeds, self.config.default_action())
    }

    /// Every feed entry whose network contains `addr`, whatever the merge kept: (feed
    /// index, feed id, entry).
    pub fn lookup(&self, addr: IpAddr) -> Vec<(usize, &str, &FeedEntry)> {
        let addr = addr.to_canonical();
        self.states
            .iter()
            .enumerate()
            .filter_map(|(index, state)| Some((index, state.id.as_str(), state.parsed.as_ref()?)))
            .flat_map(|(index, id, parsed)| {
                parsed
                    .entries
                    .iter()
                    .filter(move |entry| entry.net.contains(&addr))
                    .map(move |entry| (index, id, entry))
            })
            .collect()
    }
}

/// Whether two configs of a feed describe the same IOCs, so that parsed ones carry over.
/// Action, confidence threshold and refresh only matter to merging and scheduling.
fn same_content(a: &FeedConfig, b: &FeedConfig) -> bool {
    a.id == b.id
        && a.source == b.source
        && a.format == b.format
        && a.field == b.field
        && a.confidence_field == b.confidence_field
        && a.category_field == b.category_field
}
