//! The subset of Suricata/Snort rule syntax that maps onto tc_ids: `alert|drop tcp|udp`,
//! addresses `any` or variables (not restricted: tc_ids matches ports and payload only),
//! ports as numbers, lists, ranges and the usual port variables, `->` or `<>`, and the
//! options `msg content nocase offset depth startswith fast_pattern flow sid rev` plus
//! metadata that does not change matching. Any other rule is refused with a reason, never
//! loaded in part; a commented-out rule is counted as disabled.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::{origin, parse_content_text, Content, Direction, IdsAction, IdsRule, Ports};

/// Options that only describe a rule.
const METADATA: &[&str] = &[
    "classtype",
    "reference",
    "metadata",
    "priority",
    "gid",
    "target",
    "fast_pattern",
];

/// Port variables with the values Suricata's default suricata.yaml gives them.
const PORT_VARS: &[(&str, u16)] = &[
    ("$HTTP_PORTS", 80),
    ("$SSH_PORTS", 22),
    ("$FTP_PORTS", 21),
    ("$ORACLE_PORTS", 1521),
    ("$DNP3_PORTS", 20000),
    ("$MODBUS_PORTS", 502),
];

#[derive(Debug, Clone, Default)]
pub struct FileReport {
    pub path: PathBuf,
    pub rules: Vec<IdsRule>,
    /// commented-out rules
    pub disabled: usize,
    /// reason -> rules refused for it
    pub refused: BTreeMap<String, usize>,
    /// (line, sid, reason) of each refused rule
    pub refused_rules: Vec<(usize, Option<u32>, String)>,
}

impl FileReport {
    pub fn loaded(&self) -> usize {
        self.rules.len()
    }

    pub fn refused_total(&self) -> usize {
        self.refused.values().sum()
    }

    /// `file: N loaded, N refused, N disabled` and the reasons, most frequent first.
    pub fn summary(&self) -> String {
        let mut out = format!(
            "{}: {} loaded, {} refused, {} disabled",
            self.path.display(),
            self.loaded(),
            self.refused_total(),
            self.disabled
        );
        let mut reasons: Vec<_> = self.refused.iter().collect();
        reasons.sort_by(|a, b| b.1.cmp(a.1).then(a.0.cmp(b.0)));
        for (why, n) in reasons {
            out.push_str(&format!("\n  {n:5}  {why}"));
        }
        out
    }
}

fn is_rule_start(text: &str) -> bool {
    let word = text.split_whitespace().next().unwrap_or("");
    matches!(
        word,
        "alert" | "drop" | "pass" | "reject" | "rejectsrc" | "rejectdst" | "rejectboth"
    ) && text.contains('(')
}

/// Every rule of a file, by the line it starts on.
pub fn parse_file(text: &str, path: &Path, conntrack: bool) -> FileReport {
    let mut report = FileReport {
        path: path.to_path_buf(),
        ..Default::default()
    };
    let mut pending: Option<(usize, String)> = None;
    for (i, raw) in text.lines().enumerate() {
        let line_no = i + 1;
        let line = raw.trim();
        let (start, mut body) = match pending.take() {
            Some((start, mut acc)) => {
                acc.push_str(line);
                (start, acc)
            }
            None => (line_no, line.to_string()),
        };
        if body.ends_with('\\') {
            body.pop();
            pending = Some((start, body));
            continue;
        }
        if body.is_empty() {
            continue;
        }
        if let Some(comment) = body.strip_prefix('#') {
            if is_rule_start(comment.trim_start()) {
                report.disabled += 1;
            }
            continue;
        }
        match parse_rule(&body, path, start, conntrack) {
            Ok(rule) => report.rules.push(rule),
            Err((sid, why)) => {
                *report.refused.entry(why.clone()).or_default() += 1;
                report.refused_rules.push((start, sid, why));
            }
        }
    }
    if let Some((start, body)) = pending {
        *report
            .refused
            .entry("continued past the end of the file".into())
            .or_default() += 1;
        report.refused_rules.push((
            start,
            sid_of(&body),
            "continued past the end of the file".into(),
        ));
    }
    let mut seen = BTreeMap::new();
    let mut kept = Vec::new();
    for rule in std::mem::take(&mut report.rules) {
        match rule.sid.and_then(|sid| seen.insert(sid, ()).map(|_| sid)) {
            Some(sid) => {
                *report.refused.entry("duplicate sid".into()).or_default() += 1;
                let line = rule.origin.rsplit(':').next().and_then(|l| l.parse().ok());
                report
                    .refused_rules
                    .push((line.unwrap_or(0), Some(sid), "duplicate sid".into()));
            }
            None => kept.push(rule),
        }
    }
    report.rules = kept;
    report
}

fn sid_of(body: &str) -> Option<u32> {
    let at = body.find("sid:")?;
    let digits: String = body[at + 4..]
        .trim_start()
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    digits.parse().ok()
}

/// Splits the header on whitespace, keeping `[..]` groups whole.
fn header_tokens(header: &str) -> Vec<String> {
    let mut tokens = Vec::new();
    let mut cur = String::new();
    let mut depth = 0i32;
    for c in header.chars() {
        match c {
            '[' => {
                depth += 1;
                cur.push(c);
            }
            ']' => {
                depth -= 1;
                cur.push(c);
            }
            c if c.is_whitespace() && depth <= 0 => {
                if !cur.is_empty() {
                    tokens.push(std::mem::take(&mut cur));
                }
            }
            c if c.is_whitespace() => {}
            c => cur.push(c),
        }
    }
    if !cur.is_empty() {
        tokens.push(cur);
    }
    tokens
}

/// Splits `key:value;` options on unescaped semicolons outside quotes.
fn options(text: &str) -> Result<Vec<(String, String)>, String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    let mut escaped = false;
    for c in text.chars() {
        if escaped {
            cur.push(c);
            escaped = false;
            continue;
        }
        match c {
            '\\' => {
                cur.push(c);
                escaped = true;
            }
            '"' => {
                cur.push(c);
                quoted = !quoted;
            }
            ';' if !quoted => {
                let opt = std::mem::take(&mut cur);
                let opt = opt.trim();
                if !opt.is_empty() {
                    let (k, v) = match opt.split_once(':') {
                        Some((k, v)) => (k.trim(), v.trim()),
                        None => (opt, ""),
                    };
                    out.push((k.to_ascii_lowercase(), v.to_string()));
                }
            }
            c => cur.push(c),
        }
    }
    if quoted {
        return Err("unterminated quoted string".into());
    }
    if !cur.trim().is_empty() {
        return Err("options do not end with `;`".into());
    }
    Ok(out)
}

fn address_ok(addr: &str) -> Result<(), String> {
    if addr == "any" {
        return Ok(());
    }
    let vars = addr.trim_start_matches('[').trim_end_matches(']');
    if vars
        .split(',')
        .all(|v| v.starts_with('$') && !v.starts_with("!$"))
    {
        return Ok(());
    }
    Err("address restriction (only any and address variables map onto tc_ids)".into())
}

fn port_item(item: &str) -> Result<Vec<(u16, u16)>, String> {
    if let Some(&(_, p)) = PORT_VARS.iter().find(|(name, _)| *name == item) {
        return Ok(vec![(p, p)]);
    }
    if item.starts_with('$') {
        return Err("port variable without a known value".into());
    }
    if item.starts_with('!') {
        return Err("negated port".into());
    }
    let num = |s: &str| s.parse::<u16>().map_err(|_| format!("bad port `{item}`"));
    match item.split_once(':') {
        Some((lo, hi)) => {
            let lo = if lo.is_empty() { 0 } else { num(lo)? };
            let hi = if hi.is_empty() { u16::MAX } else { num(hi)? };
            if lo > hi {
                return Err(format!("bad port range `{item}`"));
            }
            Ok(vec![(lo, hi)])
        }
        None => {
            let p = num(item)?;
            Ok(vec![(p, p)])
        }
    }
}

fn ports(spec: &str) -> Result<Ports, String> {
    if spec == "any" {
        return Ok(None);
    }
    let inner = spec
        .strip_prefix('[')
        .and_then(|s| s.strip_suffix(']'))
        .unwrap_or(spec);
    if inner.contains('[') {
        return Err("nested port list".into());
    }
    let mut out = Vec::new();
    for item in inner.split(',') {
        out.extend(port_item(item.trim())?);
    }
    Ok(Some(out))
}

type Refusal = (Option<u32>, String);

fn parse_rule(body: &str, path: &Path, line: usize, conntrack: bool) -> Result<IdsRule, Refusal> {
    let sid = sid_of(body);
    let no = |why: String| (sid, why);
    let open = body.find('(').ok_or_else(|| no("no option list".into()))?;
    let close = body
        .rfind(')')
        .filter(|&c| c > open)
        .ok_or_else(|| no("option list not closed".into()))?;
    let head = header_tokens(&body[..open]);
    if head.len() != 7 {
        return Err(no(format!(
            "header has {} fields, expected 7 (action proto src sport dir dst dport)",
            head.len()
        )));
    }
    let action = match head[0].as_str() {
        "alert" => IdsAction::Alert,
        "drop" => IdsAction::Drop,
        other => return Err(no(format!("action {other}"))),
    };
    let proto = match head[1].as_str() {
        "tcp" => 6,
        "udp" => 17,
        "ip" | "icmp" => {
            return Err(no(format!(
                "protocol {} (no ports to index by)",
                head[1].as_str()
            )))
        }
        other => return Err(no(format!("app-layer protocol {other}"))),
    };
    address_ok(&head[2]).map_err(no)?;
    address_ok(&head[5]).map_err(no)?;
    let src_ports = ports(&head[3]).map_err(no)?;
    let dst_ports = ports(&head[6]).map_err(no)?;
    let direction = match head[4].as_str() {
        "->" => Direction::ToServer,
        "<>" => Direction::Both,
        other => return Err(no(format!("direction {other}"))),
    };
    let opts = options(&body[open + 1..close]).map_err(no)?;

    let mut rule = IdsRule {
        id: String::new(),
        sid: None,
        rev: None,
        msg: None,
        classtype: None,
        origin: origin(path, line),
        action,
        proto,
        src_ports,
        dst_ports,
        direction,
        established: false,
        contents: Vec::new(),
        imported: true,
    };
    let mut flow_dir: Option<Direction> = None;
    for (key, value) in &opts {
        let last = rule.contents.last_mut();
        let number = |v: &str| {
            v.trim()
                .parse::<u16>()
                .map_err(|_| no(format!("{key}: bad value `{v}`")))
        };
        match key.as_str() {
            "msg" => rule.msg = Some(unquote(value).replace("\\\"", "\"").replace("\\;", ";")),
            "sid" => rule.sid = value.trim().parse().ok(),
            "rev" => rule.rev = value.trim().parse().ok(),
            "classtype" => rule.classtype = Some(value.trim().to_string()),
            k if METADATA.contains(&k) => {}
            "content" => {
                let v = value.trim();
                if v.starts_with('!') {
                    return Err(no("negated content".into()));
                }
                let text = v
                    .strip_prefix('"')
                    .and_then(|v| v.strip_suffix('"'))
                    .ok_or_else(|| no("content without quotes".into()))?;
                let bytes = parse_content_text(text).map_err(no)?;
                rule.contents.push(Content {
                    bytes,
                    nocase: false,
                    offset: 0,
                    depth: 0,
                });
            }
            "nocase" | "offset" | "depth" | "startswith" => {
                let c = last.ok_or_else(|| no(format!("{key} before any content")))?;
                match key.as_str() {
                    "nocase" => {
                        c.nocase = true;
                        c.bytes.make_ascii_lowercase();
                    }
                    "offset" => c.offset = number(value)?,
                    "depth" => c.depth = number(value)?,
                    _ => {
                        c.offset = 0;
                        c.depth = c.bytes.len() as u16;
                    }
                }
            }
            "flow" => {
                for part in value.split(',').map(str::trim) {
                    match part {
                        "established" => rule.established = true,
                        "to_server" | "from_client" => flow_dir = Some(Direction::ToServer),
                        "to_client" | "from_server" => flow_dir = Some(Direction::ToClient),
                        "stateless" => {}
                        other => return Err(no(format!("flow:{other}"))),
                    }
                }
            }
            other => return Err(no(format!("keyword {other}"))),
        }
    }
    let sid = rule.sid.ok_or_else(|| no("no sid".into()))?;
    rule.id = format!("sid:{sid}");
    if rule.established && !conntrack {
        return Err(no(
            "flow:established needs conntrack.enabled (tc_ids takes the state from tc_conntrack)"
                .into(),
        ));
    }
    if rule.contents.is_empty() {
        return Err(no("no content (a port-only signature)".into()));
    }
    for c in &rule.contents {
        super::check_content(c).map_err(no)?;
    }
    if rule.contents.len() > super::MAX_CONTENTS {
        return Err(no(format!("more than {} contents", super::MAX_CONTENTS)));
    }
    let placement = rule.placement().map_err(no)?;
    if let Some(flow) = flow_dir {
        // tc_ids tells client from server by the port the rule names.
        use crate::abi::ids_side;
        let side = placement.keys[0].0;
        let consistent = match (flow, direction) {
            (_, Direction::Both) => true,
            (Direction::ToServer, _) => side == ids_side::IDS_SIDE_DST,
            (Direction::ToClient, _) => side == ids_side::IDS_SIDE_SRC,
            _ => false,
        };
        if !consistent {
            return Err(no(if side == ids_side::IDS_SIDE_ANY {
                "flow direction on a rule without a server port".into()
            } else {
                "flow direction contradicts the rule's ports".into()
            }));
        }
    }
    rule.direction = direction;
    Ok(rule)
}

fn unquote(v: &str) -> &str {
    let v = v.trim();
    v.strip_prefix('"')
        .and_then(|v| v.strip_suffix('"'))
        .unwrap_or(v)
}
