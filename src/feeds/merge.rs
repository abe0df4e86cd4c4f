//! Merging feeds into one IOC per network, and the difference between two merges, which is
//! all a refresh writes to the kernel.

use std::cmp::{Ordering, Reverse};

use ipnet::IpNet;

use super::{Ioc, IocSet, ParsedFeed, TiAction};
use crate::config::FeedConfig;

/// Index 0 of [`IocSet::categories`].
pub const UNKNOWN_CATEGORY: &str = "unknown";

/// What turns one applied [`IocSet`] into the next.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IocDiff {
    /// new networks and networks whose metadata changed, in network order
    pub added_or_changed: Vec<Ioc>,
    /// in network order
    pub removed: Vec<IpNet>,
}

impl IocDiff {
    pub fn is_empty(&self) -> bool {
        self.added_or_changed.is_empty() && self.removed.is_empty()
    }
}

struct Candidate<'a> {
    net: IpNet,
    confidence: u8,
    feed_id: u16,
    action: TiAction,
    category: Option<&'a str>,
}

impl IocSet {
    /// `feeds` holds each feed's index in `threatintel.feeds` (its kernel id), its config
    /// and its IOCs; `default_action` is `threatintel.action`. Entries below the feed's
    /// `min_confidence` are left out, entries without a confidence count 100. One IOC per
    /// network: the highest confidence wins, then the lower feed id, then the first entry.
    ///
    /// Categories are numbered in name order from 1 (0 is "unknown"); past 255 names the rest
    /// are "unknown", as the kernel keeps a byte.
    pub fn merge(feeds: &[(u16, &FeedConfig, &ParsedFeed)], default_action: TiAction) -> IocSet {
        let mut candidates: Vec<Candidate<'_>> = Vec::new();
        for &(feed_id, feed, parsed) in feeds {
            let action = feed.action.unwrap_or(default_action);
            for entry in &parsed.entries {
                let confidence = entry.confidence.unwrap_or(100);
                if confidence < feed.min_confidence {
                    continue;
                }
                candidates.push(Candidate {
                    net: entry.net.trunc(),
                    confidence,
                    feed_id,
                    action,
                    category: entry.category.as_deref(),
                });
            }
        }
        // Stable, so that among equals the earlier entry comes first.
        candidates.sort_by_key(|c| (c.net, Reverse(c.confidence), c.feed_id));
        candidates.dedup_by(|later, first| later.net == first.net);

        let mut names: Vec<&str> = candidates
            .iter()
            .filter_map(|c| c.category)
            .filter(|name| *name != UNKNOWN_CATEGORY)
            .collect();
        names.sort_unstable();
        names.dedup();
        names.truncate(usize::from(u8::MAX));
        let index = |name: Option<&str>| {
            name.and_then(|name| names.binary_search(&name).ok())
                .and_then(|at| u8::try_from(at + 1).ok())
                .unwrap_or(0)
        };
        let iocs = candidates
            .iter()
            .map(|c| {
                let ioc = Ioc {
                    net: c.net,
                    feed_id: c.feed_id,
                    confidence: c.confidence,
                    category: index(c.category),
                    action: c.action,
                };
                (c.net, ioc)
            })
            .collect();
        let categories = std::iter::once(UNKNOWN_CATEGORY)
            .chain(names.iter().copied())
            .map(str::to_owned)
            .collect();
        IocSet { iocs, categories }
    }

    /// What to write to and delete from the kernel's maps to go from `self` (what they hold)
    /// to `new`.
    pub fn diff(&self, new: &IocSet) -> IocDiff {
        let mut diff = IocDiff::default();
        let mut old = self.iocs.iter().peekable();
        let mut next = new.iocs.iter().peekable();
        loop {
            let order = match (old.peek(), next.peek()) {
                (None, None) => break,
                (Some(_), None) => Ordering::Less,
                (None, Some(_)) => Ordering::Greater,
                (Some((a, _)), Some((b, _))) => a.cmp(b),
            };
            match order {
                Ordering::Less => {
                    if let Some((net, _)) = old.next() {
                        diff.removed.push(*net);
                    }
                }
                Ordering::Greater => {
                    if let Some((_, ioc)) = next.next() {
                        diff.added_or_changed.push(ioc.clone());
                    }
                }
                Ordering::Equal => {
                    if let (Some((_, before)), Some((_, after))) = (old.next(), next.next()) {
                        if before != after {
                            diff.added_or_changed.push(after.clone());
                        }
                    }
                }
            }
        }
        diff
    }

    pub fn len(&self) -> usize {
        self.iocs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.iocs.is_empty()
    }

    /// The name of category `index`, "unknown" when it has none.
    pub fn category_name(&self, index: u8) -> &str {
        self.categories
            .get(usize::from(index))
            .map_or(UNKNOWN_CATEGORY, String::as_str)
    }

    /// The IOC of exactly `net`, after truncating it.
    pub fn get(&self, net: IpNet) -> Option<&Ioc> {
        self.iocs.get(&net.trunc())
    }

    /// Every IOC whose network contains `addr`, most specific first: what the kernel's
    /// exact match and then its LPM trie would find.
    pub fn matching(&self, addr: std::net::IpAddr) -> Vec<&Ioc> {
        let addr = addr.to_canonical();
        (0..=IpNet::from(addr).max_prefix_len())
            .rev()
            .filter_map(|len| IpNet::new(addr, len).ok())
            .filter_map(|net| self.iocs.get(&net.trunc()))
            .collect()
    }
}
