//! Prefixes of either family as one comparable value, and resolution of overlapping prefixes:
//! an LPM lookup returns only the longest stored prefix, so whatever applies to a shorter
//! prefix must be folded into every longer one it covers.

use std::net::IpAddr;

use ipnet::IpNet;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Prefix {
    /// Left-aligned in the family's width (IPv4 uses the low 32 bits).
    pub addr: u128,
    pub len: u8,
}

impl Prefix {
    pub fn of(net: &IpNet) -> Prefix {
        let addr = match net.network() {
            IpAddr::V4(a) => u32::from(a) as u128,
            IpAddr::V6(a) => u128::from(a),
        };
        Prefix {
            addr,
            len: net.prefix_len(),
        }
    }

    /// The prefix of length `len` (<= self.len) containing this one, in a family `width` bits wide.
    fn truncate(self, len: u8, width: u8) -> Prefix {
        let host_bits = u32::from(width - len);
        let mask = if host_bits >= 128 {
            0
        } else {
            !0u128 << host_bits
        };
        let family_mask = if width == 128 {
            !0u128
        } else {
            (1u128 << width) - 1
        };
        Prefix {
            addr: self.addr & mask & family_mask,
            len,
        }
    }

    pub fn v4_octets(self) -> [u8; 4] {
        (self.addr as u32).to_be_bytes()
    }

    pub fn v6_octets(self) -> [u8; 16] {
        self.addr.to_be_bytes()
    }
}

impl Prefix {
    fn contains(self, other: Prefix, width: u8) -> bool {
        self.len <= other.len && other.truncate(self.len, width).addr == self.addr
    }
}

/// For every distinct prefix of `entries` (a prefix may appear several times), folds the
/// values of all entries whose prefix covers it (itself included) with `fold`, shortest
/// first. One pass in address order with a stack of the enclosing prefixes: covering prefixes
/// sort before what they cover.
pub fn fold_covering<T, A: Clone>(
    mut entries: Vec<(Prefix, T)>,
    width: u8,
    init: impl Fn() -> A,
    mut fold: impl FnMut(&mut A, &T),
) -> Vec<(Prefix, A)> {
    entries.sort_unstable_by_key(|(p, _)| (p.addr, p.len));
    let mut out: Vec<(Prefix, A)> = Vec::with_capacity(entries.len());
    let mut enclosing: Vec<(Prefix, A)> = Vec::new();
    for (p, v) in &entries {
        if let Some((top, acc)) = enclosing.last_mut().filter(|(top, _)| top == p) {
            fold(acc, v);
            let last = out.last_mut().expect("the top was output");
            debug_assert_eq!(last.0, *top);
            last.1 = acc.clone();
            continue;
        }
        while enclosing
            .last()
            .is_some_and(|(outer, _)| !outer.contains(*p, width))
        {
            enclosing.pop();
        }
        let mut acc = enclosing
            .last()
            .map(|(_, a)| a.clone())
            .unwrap_or_else(&init);
        fold(&mut acc, v);
        out.push((*p, acc.clone()));
        enclosing.push((*p, acc));
    }
    out
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn p(s: &str) -> Prefix {
        Prefix::of(&s.parse().unwrap())
    }

    #[test]
    fn covering_values_fold_into_longer_prefixes() {
        let direct: Vec<(Prefix, u32)> = [
            (p("10.0.0.0/8"), 5),
            (p("10.1.0.0/16"), 9),
            (p("192.0.2.0/24"), 1),
        ]
        .into_iter()
        .collect();
        let folded = fold_covering(direct, 32, || u32::MAX, |acc, v| *acc = (*acc).min(*v));
        let got: HashMap<Prefix, u32> = folded.into_iter().collect();
        assert_eq!(got[&p("10.0.0.0/8")], 5);
        assert_eq!(got[&p("10.1.0.0/16")], 5, "the /8 of rank 5 covers the /16");
        assert_eq!(got[&p("192.0.2.0/24")], 1);
    }

    #[test]
    fn v6_and_default_route_truncate() {
        let direct: Vec<(Prefix, u32)> = [(p("::/0"), 3), (p("2001:db8::/32"), 7)]
            .into_iter()
            .collect();
        let got: HashMap<Prefix, Vec<u32>> =
            fold_covering(direct, 128, Vec::new, |acc, v| acc.push(*v))
                .into_iter()
                .collect();
        assert_eq!(got[&p("2001:db8::/32")], vec![3, 7]);
        assert_eq!(got[&p("::/0")], vec![3]);
        assert_eq!(p("0.0.0.0/0").truncate(0, 32), p("0.0.0.0/0"));
    }
}
