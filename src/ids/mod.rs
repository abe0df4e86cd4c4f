//! The signature IDS: rules (from the config and from Suricata/Snort rule files), where they
//! go in tc_ids's (protocol, port) index, and the kernel records they compile to.

pub mod suricata;

#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use crate::abi::{ids_action, ids_content, ids_content_flags, ids_key, ids_limits, ids_rule};
use crate::abi::{ids_rule_flags, ids_side};

pub const MAX_RULES: usize = ids_limits::IDS_MAX_RULES.0 as usize;
pub const MAX_PER_KEY: usize = ids_limits::IDS_MAX_PER_KEY.0 as usize;
pub const MAX_CONTENTS: usize = ids_limits::IDS_MAX_CONTENTS.0 as usize;
pub const MAX_PATTERN: usize = ids_limits::IDS_MAX_PATTERN.0 as usize;
pub const SCAN_BYTES: usize = ids_limits::IDS_SCAN_BYTES.0 as usize;
/// Ports a list or range on the keyed side may expand to; a wider range is a filter.
pub const MAX_PORT_EXPANSION: usize = 64;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdsAction {
    Alert,
    Drop,
}

impl IdsAction {
    pub fn name(self) -> &'static str {
        match self {
            IdsAction::Alert => "alert",
            IdsAction::Drop => "drop",
        }
    }
}

/// Which packets a rule's port specification describes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// as written: source port of the rule = source port of the packet
    ToServer,
    /// the reverse of what is written
    ToClient,
    /// either (Suricata `<>`)
    Both,
}

/// A port specification: None is any port; otherwise inclusive ranges.
pub type Ports = Option<Vec<(u16, u16)>>;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Content {
    /// lowercased when `nocase`
    pub bytes: Vec<u8>,
    pub nocase: bool,
    pub offset: u16,
    /// 0: to the end of the scanned payload
    pub depth: u16,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdsRule {
    /// the config's id, or `sid:N` for imported rules
    pub id: String,
    pub sid: Option<u32>,
    pub rev: Option<u32>,
    pub msg: Option<String>,
    pub classtype: Option<String>,
    /// where it was written: `file:line`
    pub origin: String,
    pub action: IdsAction,
    /// 6 or 17
    pub proto: u8,
    pub src_ports: Ports,
    pub dst_ports: Ports,
    pub direction: Direction,
    pub established: bool,
    pub contents: Vec<Content>,
    /// from a rule file (refusals are reported) rather than the config (refusals are errors)
    pub imported: bool,
}

/// Where a rule sits in the index and what the kernel still checks per packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placement {
    pub keys: Vec<(ids_side, u16)>,
    pub sport: (u16, u16),
    pub dport: (u16, u16),
}

const ANY_RANGE: (u16, u16) = (0, u16::MAX);

fn port_count(ranges: &[(u16, u16)]) -> usize {
    ranges.iter().map(|(lo, hi)| usize::from(hi - lo) + 1).sum()
}

fn expand(ranges: &[(u16, u16)]) -> Vec<u16> {
    let mut ports: Vec<u16> = ranges.iter().flat_map(|&(lo, hi)| lo..=hi).collect();
    ports.sort_unstable();
    ports.dedup();
    ports
}

/// One range as a filter, if the specification is one.
fn as_filter(ports: &Ports) -> Option<(u16, u16)> {
    match ports {
        None => Some(ANY_RANGE),
        Some(r) if r.len() == 1 => Some(r[0]),
        Some(_) => None,
    }
}

/// The placement of packets whose source ports are `src` and destination ports `dst`.
fn place_one(src: &Ports, dst: &Ports) -> Result<Placement, String> {
    let small = |p: &Ports| matches!(p, Some(r) if port_count(r) <= MAX_PORT_EXPANSION);
    let keyed = |side: ids_side, r: &[(u16, u16)]| -> Vec<(ids_side, u16)> {
        expand(r).into_iter().map(|p| (side, p)).collect()
    };
    match (src, dst) {
        (_, Some(d)) if small(dst) => Ok(Placement {
            keys: keyed(ids_side::IDS_SIDE_DST, d),
            sport: as_filter(src).ok_or(
                "source ports: only one range can be checked besides a destination port list",
            )?,
            dport: ANY_RANGE,
        }),
        (Some(s), _) if small(src) => Ok(Placement {
            keys: keyed(ids_side::IDS_SIDE_SRC, s),
            sport: ANY_RANGE,
            dport: as_filter(dst).ok_or(
                "destination ports: only one range can be checked besides a source port list",
            )?,
        }),
        _ => Ok(Placement {
            keys: vec![(ids_side::IDS_SIDE_ANY, 0)],
            sport: as_filter(src).ok_or("source ports: a list wider than 64 ports")?,
            dport: as_filter(dst).ok_or("destination ports: a list wider than 64 ports")?,
        }),
    }
}

impl IdsRule {
    pub fn placement(&self) -> Result<Placement, String> {
        match self.direction {
            Direction::ToServer => place_one(&self.src_ports, &self.dst_ports),
            Direction::ToClient => place_one(&self.dst_ports, &self.src_ports),
            Direction::Both => {
                let fwd = place_one(&self.src_ports, &self.dst_ports)?;
                let rev = place_one(&self.dst_ports, &self.src_ports)?;
                let unfiltered = |p: &Placement| p.sport == ANY_RANGE && p.dport == ANY_RANGE;
                if !unfiltered(&fwd) || !unfiltered(&rev) {
                    return Err("both directions (`<>`) need one side's ports to be any".into());
                }
                let mut keys = fwd.keys;
                for k in rev.keys {
                    if !keys.contains(&k) {
                        keys.push(k);
                    }
                }
                Ok(Placement {
                    keys,
                    sport: ANY_RANGE,
                    dport: ANY_RANGE,
                })
            }
        }
    }

    /// The rule's kernel record (contents already checked by `check_contents`).
    pub fn record(&self, placement: &Placement) -> ids_rule {
        let mut r = ids_rule {
            sport_lo: placement.sport.0,
            sport_hi: placement.sport.1,
            dport_lo: placement.dport.0,
            dport_hi: placement.dport.1,
            ncontents: self.contents.len() as u8,
            action: match self.action {
                IdsAction::Alert => ids_action::IDS_ACTION_ALERT.0 as u8,
                IdsAction::Drop => ids_action::IDS_ACTION_DROP.0 as u8,
            },
            flags: if self.established {
                ids_rule_flags::IDS_R_ESTABLISHED.0 as u8
            } else {
                0
            },
            ..Default::default()
        };
        for (slot, c) in r.contents.iter_mut().zip(&self.contents) {
            *slot = content_record(c);
        }
        r
    }
}

fn content_record(c: &Content) -> ids_content {
    let mut rec = ids_content {
        offset: c.offset,
        depth: c.depth,
        len: c.bytes.len() as u8,
        nwords: c.bytes.len().div_ceil(8) as u8,
        flags: if c.nocase {
            ids_content_flags::IDS_C_NOCASE.0 as u8
        } else {
            0
        },
        ..Default::default()
    };
    for (i, chunk) in c.bytes.chunks(8).enumerate() {
        let mut w = [0u8; 8];
        w[..chunk.len()].copy_from_slice(chunk);
        rec.words[i] = u64::from_le_bytes(w);
        rec.masks[i] = if chunk.len() == 8 {
            u64::MAX
        } else {
            (1u64 << (8 * chunk.len())) - 1
        };
    }
    rec
}

/// Why a content cannot be matched by tc_ids, if it cannot.
pub fn check_content(c: &Content) -> Result<(), String> {
    if c.bytes.is_empty() {
        return Err("empty content".into());
    }
    if c.bytes.len() > MAX_PATTERN {
        return Err(format!("content longer than {MAX_PATTERN} bytes"));
    }
    if c.depth != 0 && usize::from(c.depth) < c.bytes.len() {
        return Err("depth shorter than the content".into());
    }
    if usize::from(c.offset) + c.bytes.len() > SCAN_BYTES {
        return Err(format!(
            "offset beyond the {SCAN_BYTES} payload bytes tc_ids scans"
        ));
    }
    Ok(())
}

/// Parses Suricata content text: `|..|` hex blocks and `\` escapes.
pub fn parse_content_text(text: &str) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        match c {
            '|' => {
                let mut hex = String::new();
                loop {
                    match chars.next() {
                        Some('|') => break,
                        Some(h) => hex.push(h),
                        None => return Err("unterminated |hex| block".into()),
                    }
                }
                let digits: String = hex.chars().filter(|c| !c.is_whitespace()).collect();
                if digits.len() % 2 != 0 || !digits.chars().all(|c| c.is_ascii_hexdigit()) {
                    return Err(format!("bad hex block |{hex}|"));
                }
                for i in (0..digits.len()).step_by(2) {
                    out.push(u8::from_str_radix(&digits[i..i + 2], 16).expect("hex digits"));
                }
            }
            '\\' => match chars.next() {
                Some(e @ ('"' | '\\' | ';' | ':' | '|')) => out.push(e as u8),
                Some(other) => return Err(format!("unknown escape \\{other}")),
                None => return Err("content ends in a backslash".into()),
            },
            c => {
                let mut buf = [0u8; 4];
                out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
            }
        }
    }
    Ok(out)
}

/// `ids` of the config after its rule files were read.
#[derive(Debug, Clone, Default)]
pub struct IdsRuleset {
    pub rules: Vec<IdsRule>,
    pub sampling: f64,
    /// per rule file: what was loaded and refused
    pub reports: Vec<suricata::FileReport>,
}

/// One generation's kernel content.
#[derive(Debug, Clone, Default)]
pub struct CompiledIds {
    /// by rank
    pub rules: Vec<IdsRule>,
    pub records: Vec<ids_rule>,
    /// (proto, side, port) -> ranks
    pub index: BTreeMap<(u8, u32, u16), Vec<u16>>,
    pub sampling: f64,
    /// rules compile could not place, with why
    pub refused: Vec<(IdsRule, String)>,
}

impl CompiledIds {
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    pub fn key(&self, proto: u8, side: u32, port: u16, gen: u32) -> ids_key {
        ids_key {
            port,
            proto,
            side: side as u8,
            gen: (gen & 1) as u8,
            ..Default::default()
        }
    }
}

/// Places every rule; rules that do not fit (placement, contents, a full index entry, the rule
/// limit) are refused with the reason instead of being half-applied.
pub fn compile(rules: &[IdsRule], sampling: f64) -> CompiledIds {
    let mut out = CompiledIds {
        sampling,
        ..Default::default()
    };
    for rule in rules {
        let placed = rule.placement().and_then(|p| {
            for c in &rule.contents {
                check_content(c)?;
            }
            if rule.contents.len() > MAX_CONTENTS {
                return Err(format!("more than {MAX_CONTENTS} contents"));
            }
            if out.rules.len() >= MAX_RULES {
                return Err(format!("more than {MAX_RULES} rules"));
            }
            let full = p.keys.iter().find(|(side, port)| {
                out.index
                    .get(&(rule.proto, side.0, *port))
                    .is_some_and(|v| v.len() >= MAX_PER_KEY)
            });
            if let Some((side, port)) = full {
                return Err(format!(
                    "more than {MAX_PER_KEY} rules on {} {}",
                    side_name(*side),
                    port
                ));
            }
            Ok(p)
        });
        match placed {
            Ok(p) => {
                let rank = out.rules.len() as u16;
                for (side, port) in &p.keys {
                    out.index
                        .entry((rule.proto, side.0, *port))
                        .or_default()
                        .push(rank);
                }
                out.records.push(rule.record(&p));
                out.rules.push(rule.clone());
            }
            Err(why) => out.refused.push((rule.clone(), why)),
        }
    }
    out
}

fn side_name(side: ids_side) -> &'static str {
    match side {
        ids_side::IDS_SIDE_DST => "destination port",
        ids_side::IDS_SIDE_SRC => "source port",
        _ => "any port",
    }
}

/// Reads the config's rules and every Suricata rule file.
pub fn load(cfg: &crate::config::IdsConfig, conntrack: bool) -> anyhow::Result<IdsRuleset> {
    let mut rules = cfg.rules.clone();
    let mut reports = Vec::new();
    for file in &cfg.suricata_rules {
        let text = std::fs::read_to_string(&file.path).map_err(|e| {
            anyhow::anyhow!(
                "{}: ids.suricata_rules: cannot read {}: {e}",
                file.location,
                file.path.display()
            )
        })?;
        let report = suricata::parse_file(&text, &file.path, conntrack);
        rules.extend(report.rules.iter().cloned());
        reports.push(report);
    }
    Ok(IdsRuleset {
        rules,
        sampling: cfg.sampling,
        reports,
    })
}

/// A rule file named by the config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RuleFile {
    pub path: PathBuf,
    pub location: crate::config::Location,
}

/// `file:line` of a rule.
pub fn origin(path: &Path, line: usize) -> String {
    format!("{}:{line}", path.display())
}

impl fmt::Display for IdsRule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.sid, &self.msg) {
            (Some(sid), Some(msg)) => write!(f, "sid {sid} \"{msg}\""),
            (Some(sid), None) => write!(f, "sid {sid}"),
            _ => f.write_str(&self.id),
        }
    }
}
