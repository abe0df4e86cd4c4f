//! Address parsing shared by the YAML and by alias files, and the netset file reader.

use std::io;
use std::net::IpAddr;
use std::path::Path;

use ipnet::IpNet;

use super::{ConfigError, Location};

/// A feed pointed at the wrong file (a hosts list, a CSV) would otherwise bury the real
/// errors under one line per entry.
const MAX_ERRORS_PER_FILE: usize = 20;

/// Parses an address or CIDR, rejecting host bits: `10.0.0.1/8` is almost always a typo for
/// either `10.0.0.1/32` or `10.0.0.0/8`, and guessing would silently change what matches.
pub(crate) fn parse_net(text: &str) -> Result<IpNet, String> {
    if text.contains('/') {
        let net: IpNet = text.parse().map_err(|_| format!("invalid CIDR `{text}`"))?;
        if net.trunc() != net {
            return Err(format!(
                "`{text}` has host bits set; did you mean `{}`?",
                net.trunc()
            ));
        }
        Ok(net)
    } else {
        text.parse::<IpAddr>()
            .map(IpNet::from)
            .map_err(|_| format!("invalid IP address `{text}`"))
    }
}

/// Collects networks cheaply and removes duplicates once at the end, keeping the first
/// occurrence. Sorting beats hashing here: feeds are usually sorted already, which makes the
/// common case a single linear pass.
#[derive(Default)]
pub(crate) struct NetList(Vec<IpNet>);

impl NetList {
    pub fn push(&mut self, net: IpNet) {
        self.0.push(net);
    }

    pub fn extend(&mut self, nets: &[IpNet]) {
        self.0.extend_from_slice(nets);
    }

    /// Entries so far, duplicates included.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn into_unique(mut self) -> Vec<IpNet> {
        let list = &mut self.0;
        if list.windows(2).all(|pair| pair[0] < pair[1]) {
            return self.0;
        }
        // The index makes every element distinct, so an unstable sort still puts the first
        // occurrence of each network at the head of its run.
        let mut sorted: Vec<(IpNet, usize)> = list.iter().copied().zip(0..).collect();
        sorted.sort_unstable();
        let mut keep = vec![false; list.len()];
        let mut previous = None;
        for &(net, index) in &sorted {
            if previous != Some(net) {
                keep[index] = true;
                previous = Some(net);
            }
        }
        let mut keep = keep.into_iter();
        list.retain(|_| keep.next().unwrap_or(true));
        self.0
    }
}

/// Reads a netset / DROP-style list: one address or CIDR per line, `#` and `;` start comments,
/// anything after the first token is ignored. Line errors are pushed located in the file
/// itself; stops at `limit` entries with an error on the line that crossed it.
pub(crate) fn read_netset(
    path: &Path,
    into: &mut NetList,
    limit: usize,
    errors: &mut Vec<ConfigError>,
) -> io::Result<()> {
    let bytes = std::fs::read(path)?;
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(&bytes);
    let mut bad_lines = 0usize;
    let mut report = |line: usize, col: usize, message: String| {
        bad_lines += 1;
        if bad_lines <= MAX_ERRORS_PER_FILE {
            let location = Location {
                file: path.to_path_buf(),
                line,
                col,
            };
            errors.push(ConfigError {
                location: Some(location),
                message,
            });
        }
    };
    for (index, raw) in bytes.split(|&b| b == b'\n').enumerate() {
        let content = raw
            .split(|&b| b == b'#' || b == b';')
            .next()
            .unwrap_or_default();
        let trimmed = content.trim_ascii_start();
        let Some(token) = trimmed
            .split(u8::is_ascii_whitespace)
            .next()
            .filter(|t| !t.is_empty())
        else {
            continue;
        };
        let line = index + 1;
        // Only ASCII whitespace precedes the token, so its byte offset is also its column.
        let col = content.len() - trimmed.len() + 1;
        let parsed = std::str::from_utf8(token)
            .map_err(|_| "not valid UTF-8".to_owned())
            .and_then(parse_net);
        match parsed {
            Ok(net) => {
                into.push(net);
                if into.len() > limit {
                    report(line, col, format!("more than {limit} entries"));
                    break;
                }
            }
            Err(message) => report(line, col, message),
        }
    }
    if bad_lines > MAX_ERRORS_PER_FILE {
        errors.push(ConfigError {
            location: None,
            message: format!(
                "{}: {} more invalid lines not shown",
                path.display(),
                bad_lines - MAX_ERRORS_PER_FILE
            ),
        });
    }
    Ok(())
}
