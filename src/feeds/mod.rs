//! Threat-intelligence feeds: parsing the formats feeds come in, fetching them, and merging
//! them into one deduplicated IOC set that the threat-intel maps take as a diff.

use std::collections::BTreeMap;

use ipnet::IpNet;

/// What a matching packet gets (`enum ti_action`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TiAction {
    Alert,
    Drop,
    /// tagged with `threatintel.quarantine_vlan` and passed
    Quarantine,
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
