//! Maglev consistent hashing (Eisenbud et al., NSDI 2016), weighted by filling turns as
//! Katran does. Each backend's preference list (a permutation of the table's slots) comes
//! from two hashes of its identity, never of its position in a list: removing one backend
//! leaves every other backend's preferences as they were, so mostly the removed backend's
//! slots change hands.

/// One backend as the table sees it: `id` is what the slots hold, `identity` what its
/// preferences derive from (its address and port).
#[derive(Debug, Clone, Copy)]
pub struct Entry<'a> {
    pub id: u32,
    pub identity: &'a [u8],
    pub weight: u32,
}

fn fnv1a(seed: u64, data: &[u8]) -> u64 {
    let mut h = 0xcbf2_9ce4_8422_2325u64 ^ seed;
    for &b in data {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    // splitmix64's finaliser: FNV's low bits alone correlate for similar identities
    h ^= h >> 30;
    h = h.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h ^= h >> 27;
    h = h.wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^ (h >> 31)
}

fn gcd(a: u32, b: u32) -> u32 {
    if b == 0 {
        a
    } else {
        gcd(b, a % b)
    }
}

/// The table of `size` slots (a prime larger than the number of backends) over `backends`,
/// each slot holding a backend id; `empty` everywhere when there is no backend (or no weight).
pub fn table(backends: &[Entry<'_>], size: u32, empty: u32) -> Vec<u32> {
    let m = u64::from(size);
    let mut out = vec![empty; size as usize];
    let live: Vec<&Entry<'_>> = backends.iter().filter(|b| b.weight > 0).collect();
    if live.is_empty() || size < 2 {
        return out;
    }
    // Sorting by identity makes the table a function of the set, not of the list order.
    let mut live = live;
    live.sort_by(|a, b| a.identity.cmp(b.identity));
    let g = live.iter().fold(0, |g, b| gcd(g, b.weight));
    let turns: Vec<u32> = live.iter().map(|b| b.weight / g).collect();
    let params: Vec<(u64, u64)> = live
        .iter()
        .map(|b| {
            let offset = fnv1a(0x6d61_676c_6576_3031, b.identity) % m;
            let skip = fnv1a(0x6d61_676c_6576_3032, b.identity) % (m - 1) + 1;
            (offset, skip)
        })
        .collect();
    let mut next = vec![0u64; live.len()];
    let mut filled = 0u64;
    'fill: loop {
        for (i, b) in live.iter().enumerate() {
            for _ in 0..turns[i] {
                let (offset, skip) = params[i];
                loop {
                    let slot = ((offset + next[i] * skip) % m) as usize;
                    next[i] += 1;
                    if out[slot] == empty {
                        out[slot] = b.id;
                        filled += 1;
                        break;
                    }
                }
                if filled == m {
                    break 'fill;
                }
            }
        }
    }
    out
}

/// Fraction of slots whose backend differs between two tables of one size: the share of
/// flows that move.
pub fn moved(before: &[u32], after: &[u32]) -> f64 {
    let changed = before.iter().zip(after).filter(|(a, b)| a != b).count();
    changed as f64 / before.len().max(1) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    const M: u32 = 65537;

    fn identities(n: usize) -> Vec<Vec<u8>> {
        (0..n)
            .map(|i| format!("10.200.{}.2:8080", i + 1).into_bytes())
            .collect()
    }

    fn entries(ids: &[Vec<u8>], weights: &[u32]) -> Vec<Entry<'static>> {
        ids.iter()
            .zip(weights)
            .enumerate()
            .map(|(i, (id, &weight))| Entry {
                id: i as u32,
                identity: Box::leak(id.clone().into_boxed_slice()),
                weight,
            })
            .collect()
    }

    fn shares(t: &[u32], n: usize) -> Vec<f64> {
        let mut counts = vec![0usize; n];
        for &s in t {
            counts[s as usize] += 1;
        }
        counts.iter().map(|&c| c as f64 / t.len() as f64).collect()
    }

    #[test]
    fn removing_one_of_n_moves_little_more_than_its_share() {
        for n in 2..=10usize {
            let ids = identities(n);
            let all = entries(&ids, &vec![1; n]);
            let before = table(&all, M, u32::MAX);
            for removed in 0..n {
                let rest: Vec<Entry<'_>> = all
                    .iter()
                    .filter(|e| e.id != removed as u32)
                    .copied()
                    .collect();
                let after = table(&rest, M, u32::MAX);
                let frac = moved(&before, &after);
                let bound = 1.0 / n as f64 + 0.02;
                assert!(
                    frac <= bound,
                    "n={n} removing {removed}: {frac:.4} of flows moved, bound {bound:.4}"
                );
                // every slot of the removed backend moved, or the table would still name it
                assert!(after.iter().all(|&s| s != removed as u32));
            }
        }
    }

    #[test]
    fn slots_follow_the_weights() {
        let ids = identities(3);
        let t = table(&entries(&ids, &[1, 2, 3]), M, u32::MAX);
        let s = shares(&t, 3);
        for (i, want) in [1.0 / 6.0, 2.0 / 6.0, 3.0 / 6.0].iter().enumerate() {
            assert!(
                (s[i] - want).abs() <= 0.02,
                "backend {i}: share {:.4}, want {want:.4}",
                s[i]
            );
        }
        let t = table(&entries(&identities(2), &[1, 1]), M, u32::MAX);
        let s = shares(&t, 2);
        assert!((s[0] - 0.5).abs() <= 0.01, "equal weights: {s:?}");
    }

    #[test]
    fn the_table_depends_on_the_set_not_the_order() {
        let ids = identities(4);
        let mut e = entries(&ids, &[1; 4]);
        let a = table(&e, 251, u32::MAX);
        e.reverse();
        assert_eq!(a, table(&e, 251, u32::MAX));
    }

    #[test]
    fn no_backend_leaves_every_slot_empty() {
        assert!(table(&[], 13, 7).iter().all(|&s| s == 7));
        let ids = identities(1);
        assert!(table(&entries(&ids, &[0]), 13, 7).iter().all(|&s| s == 7));
        assert!(table(&entries(&ids, &[1]), 13, 7).iter().all(|&s| s == 0));
    }
}
