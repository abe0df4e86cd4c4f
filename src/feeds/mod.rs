//! Threat-intelligence feeds: parsing the formats feeds come in, fetching them, and merging
//! them into one deduplicated IOC set that the threat-intel maps take as a diff.
//!
//! The daemon's refresh loop, in full:
//!
//! ```text
//! let mut feeds = Feeds::new(&config.threatintel, Fetcher::new(FetchLimits::default()));
//! let mut applied = IocSet::default();
//! loop {
//!     let reports = feeds.refresh_due(Instant::now());   // blocking: run it off the runtime
//!     for report in &reports { log / count report.outcome }     // errors carry a line number
//!     if reports.iter().any(Refresh::changed) {
//!         let merged = feeds.merged();
//!         apply(applied.diff(&merged));                     // only the difference hits the maps
//!         applied = merged;
//!     }
//!     sleep until feeds.next_due()
//! }
//! ```
//!
//! A feed that fails to fetch or parse keeps the IOCs of its last good body: [`Feeds`] keeps
//! each feed's [`ParsedFeed`] in its [`FeedState`] and only replaces it with one that parsed,
//! so `merged()` after a failure is what it was before.

pub mod domain_feeds;
pub mod domains;
pub mod fetch;
mod merge;
pub mod parse;
mod state;

#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::fmt;

use ipnet::IpNet;

pub use fetch::{FetchError, FetchErrorKind, FetchLimits, FetchOutcome, Fetcher, Validators};
pub use merge::IocDiff;
pub use parse::{parse, parse_feed, FeedEntry, ParseError, ParsedFeed};
pub use state::{FeedFailure, FeedState, Feeds, Refresh, Refreshed};

/// What a matching packet gets (`enum ti_action`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TiAction {
    Alert,
    Drop,
    /// tagged with `threatintel.quarantine_vlan` and passed
    Quarantine,
}

impl TiAction {
    /// The config's and the CLI's name.
    pub fn name(self) -> &'static str {
        match self {
            TiAction::Alert => "alert",
            TiAction::Drop => "drop",
            TiAction::Quarantine => "quarantine",
        }
    }
}

impl fmt::Display for TiAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One indicator: an address or a network some feed lists.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ioc {
    /// host networks (/32, /128) are exact IOCs, the rest CIDR IOCs; always truncated
    pub net: IpNet,
    /// index of the feed in `threatintel.feeds` (the kernel's `ti_ioc.feed_id`)
    pub feed_id: u16,
    /// 0..=100
    pub confidence: u8,
    /// index into [`IocSet::categories`]; 0 is "unknown"
    pub category: u8,
    pub action: TiAction,
}

/// Every feed's IOCs merged: one entry per network, the highest confidence wins (then the
/// lower feed id, so that merging is deterministic).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IocSet {
    pub iocs: BTreeMap<IpNet, Ioc>,
    /// category names by index; index 0 is "unknown"
    pub categories: Vec<String>,
}
