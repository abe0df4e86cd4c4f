//! DNS messages as tc_dns reads them: building queries and answers for the tests, the lab and
//! the bench, and reading the question of a message (the lab's responder).

/// QTYPE A.
pub const TYPE_A: u16 = 1;
pub const TYPE_AAAA: u16 = 28;

/// A name in wire form (labels as given, root label added). No checks: tests build
/// malformed names with it too.
pub fn wire_name(name: &str) -> Vec<u8> {
    let mut out = Vec::new();
    for label in name.split('.').filter(|l| !l.is_empty()) {
        out.push(label.len() as u8);
        out.extend_from_slice(label.as_bytes());
    }
    out.push(0);
    out
}

/// A standard query (RD set) for `name`, one question of class IN.
pub fn query(id: u16, name: &str, qtype: u16) -> Vec<u8> {
    query_raw(id, &wire_name(name), qtype)
}

/// A standard query whose question name is `wire` as is.
pub fn query_raw(id: u16, wire: &[u8], qtype: u16) -> Vec<u8> {
    let mut m = Vec::with_capacity(12 + wire.len() + 4);
    m.extend_from_slice(&id.to_be_bytes());
    m.extend_from_slice(&[0x01, 0x00]); // RD
    m.extend_from_slice(&[0, 1, 0, 0, 0, 0, 0, 0]);
    m.extend_from_slice(wire);
    m.extend_from_slice(&qtype.to_be_bytes());
    m.extend_from_slice(&1u16.to_be_bytes());
    m
}

/// (id, name, qtype) of a query's first question, the name lowercased and dotted; None for
/// anything else (responses, compressed or malformed names).
pub fn parse_query(m: &[u8]) -> Option<(u16, String, u16)> {
    if m.len() < 12 || m[2] & 0x80 != 0 || u16::from_be_bytes([m[4], m[5]]) == 0 {
        return None;
    }
    let mut pos = 12;
    let mut labels = Vec::new();
    loop {
        let len = usize::from(*m.get(pos)?);
        if len == 0 {
            break;
        }
        if len > 63 {
            return None;
        }
        let label = m.get(pos + 1..pos + 1 + len)?;
        labels.push(String::from_utf8_lossy(label).to_ascii_lowercase());
        pos += 1 + len;
    }
    let qtype = u16::from_be_bytes([*m.get(pos + 1)?, *m.get(pos + 2)?]);
    Some((u16::from_be_bytes([m[0], m[1]]), labels.join("."), qtype))
}

/// The answer to `query` (which parse_query accepted): one A record with `addr`, TTL 60.
pub fn answer_a(query: &[u8], addr: std::net::Ipv4Addr) -> Vec<u8> {
    let mut m = query.to_vec();
    m[2] = 0x81; // QR, RD
    m[3] = 0x80; // RA
    m[6..8].copy_from_slice(&1u16.to_be_bytes());
    m.extend_from_slice(&[0xc0, 12]); // the question's name
    m.extend_from_slice(&TYPE_A.to_be_bytes());
    m.extend_from_slice(&1u16.to_be_bytes());
    m.extend_from_slice(&60u32.to_be_bytes());
    m.extend_from_slice(&4u16.to_be_bytes());
    m.extend_from_slice(&addr.octets());
    m
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queries_round_trip() {
        let q = query(7, "Ads.Example.com", TYPE_AAAA);
        assert_eq!(
            parse_query(&q),
            Some((7, "ads.example.com".to_string(), TYPE_AAAA))
        );
        let a = answer_a(&q, std::net::Ipv4Addr::new(192, 0, 2, 1));
        assert_eq!(parse_query(&a), None);
        assert_eq!(&a[a.len() - 4..], &[192, 0, 2, 1]);
        assert_eq!(wire_name("a.bc"), [1, b'a', 2, b'b', b'c', 0]);
    }
}
