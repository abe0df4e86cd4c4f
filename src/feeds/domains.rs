//! Domain blocklists for tc_dns: one domain name, normalised the way the kernel compares it,
//! and the two list formats feeds come in (hosts files and one domain per line).

use std::fmt;

use crate::abi::dns_limits;

/// Labels of a listed domain: tc_dns looks up the suffixes of a name's rightmost labels only.
pub const MAX_LABELS: usize = dns_limits::DNS_MAX_LABELS.0 as usize;
const MAX_LABEL: usize = dns_limits::DNS_MAX_LABEL.0 as usize;
/// Wire bytes of a name, root label included.
const MAX_WIRE: usize = dns_limits::DNS_MAX_NAME.0 as usize;

/// What a query for a listed name gets (`enum dns_action`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub enum DnsAction {
    Alert,
    #[default]
    Drop,
}

impl DnsAction {
    pub fn name(self) -> &'static str {
        match self {
            DnsAction::Alert => "alert",
            DnsAction::Drop => "drop",
        }
    }

    pub fn from_name(s: &str) -> Option<DnsAction> {
        match s {
            "alert" => Some(DnsAction::Alert),
            "drop" => Some(DnsAction::Drop),
            _ => None,
        }
    }
}

impl fmt::Display for DnsAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// How a domain feed is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DomainFormat {
    /// `0.0.0.0 name [name...]` / `127.0.0.1 name` lines (hosts files of ad and scam lists)
    Hosts,
    /// one domain per line
    Domains,
}

/// `name` lowercased, without a trailing dot, checked against what a DNS name may be and what
/// the kernel can match: non-empty labels of at most 63 bytes, at most 255 bytes in wire form,
/// at most [`MAX_LABELS`] labels, printable ASCII without spaces. A leading `*.` is refused
/// rather than read: a listed domain blocks its subdomains already.
pub fn normalize_domain(name: &str) -> Result<String, String> {
    let name = name.strip_suffix('.').unwrap_or(name);
    if name.is_empty() {
        return Err("an empty domain name".into());
    }
    if let Some(rest) = name.strip_prefix("*.") {
        return Err(format!(
            "`{name}`: no wildcards; `{rest}` blocks itself and every subdomain"
        ));
    }
    if let Some(c) = name.chars().find(|c| !c.is_ascii_graphic()) {
        return Err(format!("`{name}`: {c:?} cannot be in a domain name"));
    }
    let labels: Vec<&str> = name.split('.').collect();
    if labels.iter().any(|l| l.is_empty()) {
        return Err(format!("`{name}`: an empty label"));
    }
    if let Some(l) = labels.iter().find(|l| l.len() > MAX_LABEL) {
        return Err(format!(
            "`{name}`: label `{l}` is {} bytes, more than {MAX_LABEL}",
            l.len()
        ));
    }
    if name.len() + 2 > MAX_WIRE {
        return Err(format!(
            "`{name}` is {} bytes, more than a DNS name holds ({})",
            name.len(),
            MAX_WIRE - 2
        ));
    }
    if labels.len() > MAX_LABELS {
        return Err(format!(
            "`{name}` has {} labels; a listed domain may have at most {MAX_LABELS}",
            labels.len()
        ));
    }
    Ok(name.to_ascii_lowercase())
}

/// The domains of one feed body, in order, duplicates removed; lines that are neither
/// domains nor ignorable are counted and the first one reported (line numbers from 1), as
/// threat-intel feeds are.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ParsedDomains {
    pub domains: Vec<String>,
    pub bad_lines: usize,
    pub first_error: Option<(usize, String)>,
}

/// Names hosts files map to themselves, not blocklist entries.
const HOSTS_IGNORED: &[&str] = &[
    "localhost",
    "localhost.localdomain",
    "local",
    "broadcasthost",
    "ip6-localhost",
    "ip6-loopback",
    "ip6-localnet",
    "ip6-mcastprefix",
    "ip6-allnodes",
    "ip6-allrouters",
    "ip6-allhosts",
    "0.0.0.0",
];

/// The addresses a hosts-format blocklist points names at.
const HOSTS_SINKS: &[&str] = &["0.0.0.0", "127.0.0.1", "::", "::1", "::0"];

pub fn parse_domains(text: &str, format: DomainFormat) -> ParsedDomains {
    let mut out = ParsedDomains::default();
    let mut seen = std::collections::HashSet::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let mut fields = line.split_whitespace();
        let names: Vec<&str> = match format {
            DomainFormat::Domains => {
                let name = fields.next().unwrap_or("");
                if let Some(extra) = fields.next() {
                    out.bad(i + 1, format!("one domain per line, then `{extra}`"));
                    continue;
                }
                vec![name]
            }
            DomainFormat::Hosts => {
                let addr = fields.next().unwrap_or("");
                if !HOSTS_SINKS.contains(&addr) {
                    out.bad(
                        i + 1,
                        format!("`{addr}` is not a blocking address (0.0.0.0, 127.0.0.1, ::, ::1)"),
                    );
                    continue;
                }
                let names: Vec<&str> = fields.collect();
                if names.is_empty() {
                    out.bad(i + 1, format!("`{addr}` without a name"));
                    continue;
                }
                names
            }
        };
        for name in names {
            if format == DomainFormat::Hosts && HOSTS_IGNORED.contains(&name) {
                continue;
            }
            match normalize_domain(name) {
                Ok(d) => {
                    if seen.insert(d.clone()) {
                        out.domains.push(d);
                    }
                }
                Err(e) => out.bad(i + 1, e),
            }
        }
    }
    out
}

impl ParsedDomains {
    fn bad(&mut self, line: usize, reason: String) {
        self.bad_lines += 1;
        if self.first_error.is_none() {
            self.first_error = Some((line, reason));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed(name: &str) -> String {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/data/feeds/");
        std::fs::read_to_string(format!("{path}{name}"))
            .unwrap_or_else(|e| panic!("{path}{name}: {e}"))
    }

    #[test]
    fn names_are_normalised_or_refused_with_why() {
        assert_eq!(
            normalize_domain("Ads.Example.COM.").unwrap(),
            "ads.example.com"
        );
        assert_eq!(
            normalize_domain("xn--bcher-kva.example").unwrap(),
            "xn--bcher-kva.example"
        );
        for (bad, why) in [
            ("", "empty domain"),
            (".", "empty domain"),
            ("a..b", "empty label"),
            (".a", "empty label"),
            (
                "*.malware.example",
                "no wildcards; `malware.example` blocks",
            ),
            ("bad site.example", "' ' cannot be"),
            ("caf\u{e9}.example", "cannot be in a domain name"),
        ] {
            let e = normalize_domain(bad).expect_err(bad);
            assert!(e.contains(why), "{bad:?}: {e}");
        }
        let long_label = format!("{}.example", "a".repeat(64));
        assert!(normalize_domain(&long_label)
            .unwrap_err()
            .contains("is 64 bytes, more than 63"));
        assert!(normalize_domain(&format!("{}.example", "a".repeat(63))).is_ok());
        let labels17 = vec!["a"; 17].join(".");
        assert!(normalize_domain(&labels17)
            .unwrap_err()
            .contains("has 17 labels; a listed domain may have at most 16"));
        assert!(normalize_domain(&vec!["a"; 16].join(".")).is_ok());
        // 4 labels of 63: 255 bytes, 2 more than a name holds
        let too_long = vec!["b".repeat(63); 4].join(".");
        assert!(normalize_domain(&too_long)
            .unwrap_err()
            .contains("more than a DNS name holds (253)"));
        let longest = format!("{}.{}", vec!["b".repeat(63); 3].join("."), "c".repeat(61));
        assert_eq!(longest.len(), 253);
        assert!(normalize_domain(&longest).is_ok());
    }

    #[test]
    fn hosts_lines() {
        let text = "# a list\n\n127.0.0.1  localhost\n::1 localhost ip6-localhost\n\
                    0.0.0.0 Ads.Example.com  # trailing comment\n127.0.0.1 a.example b.example\n\
                    0.0.0.0 ads.example.com\n192.0.2.1 redirect.example\n0.0.0.0\n\
                    0.0.0.0 bad..name\n";
        let p = parse_domains(text, DomainFormat::Hosts);
        assert_eq!(p.domains, ["ads.example.com", "a.example", "b.example"]);
        assert_eq!(p.bad_lines, 3);
        let (line, why) = p.first_error.unwrap();
        assert_eq!(line, 8);
        assert!(
            why.contains("`192.0.2.1` is not a blocking address"),
            "{why}"
        );
    }

    #[test]
    fn domain_lines() {
        let text = "# list\nexample.com\n  Tracker.Example.NET.  \nexample.com\nfoo bar\n\nx..y\n";
        let p = parse_domains(text, DomainFormat::Domains);
        assert_eq!(p.domains, ["example.com", "tracker.example.net"]);
        assert_eq!(p.bad_lines, 2);
        assert_eq!(
            p.first_error,
            Some((5, "one domain per line, then `bar`".to_string()))
        );
    }

    /// Counts measured on the files (comments, blanks and `localhost` lines left out).
    #[test]
    fn the_shipped_lists_parse_exactly() {
        let adaway = parse_domains(&feed("adaway_hosts.txt"), DomainFormat::Hosts);
        assert_eq!((adaway.domains.len(), adaway.bad_lines), (7051, 0));
        assert_eq!(adaway.domains[0], "analytics.163.com");
        let scam = parse_domains(&feed("scamblocklist_hosts.txt"), DomainFormat::Hosts);
        assert_eq!((scam.domains.len(), scam.bad_lines), (2214, 0));
        assert_eq!(scam.domains[0], "1stfinancefirm.wixsite.com");
        let spam = parse_domains(&feed("spam404_main-blacklist.txt"), DomainFormat::Domains);
        assert_eq!((spam.domains.len(), spam.bad_lines), (8154, 0));
        assert_eq!(spam.domains[0], "telechargerdes.com");
        // a hosts file read as a domain list: every data line is a bad one, and says why
        let wrong = parse_domains(&feed("scamblocklist_hosts.txt"), DomainFormat::Domains);
        assert_eq!((wrong.domains.len(), wrong.bad_lines), (0, 2214));
        assert_eq!(
            wrong.first_error,
            Some((
                9,
                "one domain per line, then `1stfinancefirm.wixsite.com`".to_string()
            ))
        );
    }
}
