//! Turns a feed's text into networks. Bad lines are skipped and reported with their line
//! numbers: one mangled line must not cost the other hundred thousand. Only a feed whose
//! structure is broken (JSON that does not parse, a CSV without the named column) or of which
//! no line at all is usable fails as a whole, so that the caller keeps the previous IOCs
//! rather than replacing them with nothing.

use std::borrow::Cow;
use std::net::IpAddr;

use ipnet::IpNet;
use serde_json::value::RawValue;
use serde_json::{Map, Value};

use crate::config::{FeedConfig, FeedFormat};

/// A feed pointed at the wrong file (a hosts list, an HTML error page) has one bad line per
/// line; past this many only the count goes on.
pub const MAX_REPORTED_ERRORS: usize = 100;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FeedEntry {
    /// truncated: feeds do list networks with host bits set
    pub net: IpNet,
    /// 0..=100; None when the feed has no confidence for it
    pub confidence: Option<u8>,
    pub category: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ParsedFeed {
    /// feed order, duplicates included (merging removes them)
    pub entries: Vec<FeedEntry>,
    /// (1-based line, reason) of the first [`MAX_REPORTED_ERRORS`] bad lines
    pub errors: Vec<(usize, String)>,
    /// every skipped bad line, including those not in `errors`
    pub bad_lines: usize,
}

/// The feed as a whole is unusable. `line` is 1-based.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {reason}")]
pub struct ParseError {
    pub line: usize,
    pub reason: String,
}

impl ParsedFeed {
    fn bad(&mut self, line: usize, reason: String) {
        self.bad_lines += 1;
        if self.errors.len() < MAX_REPORTED_ERRORS {
            self.errors.push((line, reason));
        }
    }

    /// The first bad line, if any.
    pub fn first_error(&self) -> Option<&(usize, String)> {
        self.errors.first()
    }
}

/// Parses `text` as `feed` says.
pub fn parse_feed(feed: &FeedConfig, text: &str) -> Result<ParsedFeed, ParseError> {
    parse(
        feed.format,
        text,
        feed.field.as_deref(),
        feed.confidence_field.as_deref(),
        feed.category_field.as_deref(),
    )
}

/// `field` names the CSV column or JSON key holding the address or network (JSON arrays of
/// plain strings need none); `confidence_field` and `category_field` optional ones. Netset
/// and Spamhaus text have no fields and ignore all three.
pub fn parse(
    format: FeedFormat,
    text: &str,
    field: Option<&str>,
    confidence_field: Option<&str>,
    category_field: Option<&str>,
) -> Result<ParsedFeed, ParseError> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    if text.trim().is_empty() {
        // An empty body is what a broken download or a server error page without content
        // looks like; a feed that really lists nothing still has its header or banner.
        return Err(ParseError {
            line: 1,
            reason: "the feed is empty".to_owned(),
        });
    }
    let fields = Fields {
        ioc: field,
        confidence: confidence_field,
        category: category_field,
    };
    let parsed = match format {
        FeedFormat::Netset | FeedFormat::Spamhaus => Ok(parse_lines(text)),
        FeedFormat::Csv => parse_csv(text, &fields),
        FeedFormat::Json => parse_json(text, &fields),
        FeedFormat::Ndjson => Ok(parse_ndjson(text, &fields)),
    }?;
    match parsed.errors.first() {
        Some((line, reason)) if parsed.entries.is_empty() => Err(ParseError {
            line: *line,
            reason: format!(
                "no usable entry ({} bad lines), the first: {reason}",
                parsed.bad_lines
            ),
        }),
        _ => Ok(parsed),
    }
}

struct Fields<'a> {
    ioc: Option<&'a str>,
    confidence: Option<&'a str>,
    category: Option<&'a str>,
}

/// An address (a host network) or a network, truncated.
pub fn parse_ioc(text: &str) -> Result<IpNet, String> {
    let text = text.trim();
    if text.contains('/') {
        text.parse::<IpNet>()
            .map(|net| net.trunc())
            .map_err(|_| format!("`{text}` is not a CIDR network"))
    } else {
        text.parse::<IpAddr>()
            .map(|addr| IpNet::from(addr.to_canonical()))
            .map_err(|_| format!("`{text}` is not an IP address or a CIDR network"))
    }
}

/// 0..=100, as an integer or a decimal (rounded); empty is "none".
fn parse_confidence(text: &str) -> Result<Option<u8>, String> {
    let text = text.trim();
    if text.is_empty() {
        return Ok(None);
    }
    let value: f64 = text
        .parse()
        .map_err(|_| format!("confidence `{text}` is not a number"))?;
    if !(0.0..=100.0).contains(&value) {
        return Err(format!("confidence `{text}` is not in 0..100"));
    }
    // In range, so the cast cannot truncate.
    Ok(Some(value.round() as u8))
}

fn category(text: &str) -> Option<String> {
    let text = text.trim();
    (!text.is_empty()).then(|| text.to_owned())
}

/// Netset, plain lists and Spamhaus DROP text: one address or network a line, `#` and `;`
/// start comments (Spamhaus puts the SBL id in one).
fn parse_lines(text: &str) -> ParsedFeed {
    let mut parsed = ParsedFeed::default();
    for (index, raw) in text.split('\n').enumerate() {
        let line = index + 1;
        let content = raw.split(['#', ';']).next().unwrap_or_default().trim();
        if content.is_empty() {
            continue;
        }
        let mut tokens = content.split_ascii_whitespace();
        let first = tokens.next().unwrap_or_default();
        let result = match tokens.next() {
            // `0.0.0.0 ads.example` blocks a name, not 0.0.0.0: reading it as an IOC would
            // turn a hosts file into a list of the sinkhole address.
            Some(_) => Err(format!(
                "expected one address or network per line, found `{content}` (a hosts file?)"
            )),
            None => parse_ioc(first),
        };
        match result {
            Ok(net) => parsed.entries.push(FeedEntry {
                net,
                confidence: None,
                category: None,
            }),
            Err(reason) => parsed.bad(line, reason),
        }
    }
    parsed
}

/// One CSV record on one line: comma-separated, `"` quotes a field and `""` is a quote in
/// one. Feeds never need multi-line fields, and a quote left open is far more likely a cut
/// line than one.
fn split_csv(line: &str) -> Result<Vec<Cow<'_, str>>, String> {
    let mut cells = Vec::new();
    let mut rest = line;
    loop {
        let trimmed = rest.trim_start_matches([' ', '\t']);
        let (cell, after) = if let Some(quoted) = trimmed.strip_prefix('"') {
            let mut value = String::new();
            let mut chars = quoted.char_indices();
            let end = loop {
                match chars.next() {
                    None => return Err("unterminated quoted field".to_owned()),
                    Some((at, '"')) => {
                        if quoted[at + 1..].starts_with('"') {
                            value.push('"');
                            chars.next();
                        } else {
                            break at + 1;
                        }
                    }
                    Some((_, c)) => value.push(c),
                }
            };
            let after = quoted[end..].trim_start_matches([' ', '\t']);
            if !(after.is_empty() || after.starts_with(',')) {
                return Err("text after a closing quote".to_owned());
            }
            (Cow::Owned(value), after)
        } else {
            let end = rest.find(',').unwrap_or(rest.len());
            (Cow::Borrowed(rest[..end].trim()), &rest[end..])
        };
        cells.push(cell);
        match after.strip_prefix(',') {
            Some(next) => rest = next,
            None => return Ok(cells),
        }
    }
}

struct CsvColumns {
    ioc: usize,
    confidence: Option<usize>,
    category: Option<usize>,
}

impl CsvColumns {
    fn find(cells: &[Cow<'_, str>], fields: &Fields<'_>) -> Result<CsvColumns, String> {
        let index = |name: &str| cells.iter().position(|cell| cell.trim() == name);
        let require = |name: &str| {
            index(name).ok_or_else(|| {
                let columns: Vec<&str> = cells.iter().map(|c| c.trim()).collect();
                format!(
                    "no column `{name}` in the header (columns: {})",
                    columns.join(", ")
                )
            })
        };
        let ioc = fields
            .ioc
            .ok_or_else(|| "a CSV feed needs `field`: the column holding the address".to_owned())
            .and_then(require)?;
        Ok(CsvColumns {
            ioc,
            confidence: fields.confidence.map(require).transpose()?,
            category: fields.category.map(require).transpose()?,
        })
    }

    fn entry(&self, cells: &[Cow<'_, str>]) -> Result<FeedEntry, String> {
        let cell = |index: usize| {
            cells.get(index).map(|c| c.as_ref()).ok_or_else(|| {
                format!(
                    "{} columns, the header has more (column {} is needed)",
                    cells.len(),
                    index + 1
                )
            })
        };
        Ok(FeedEntry {
            net: parse_ioc(cell(self.ioc)?)?,
            confidence: match self.confidence {
                Some(index) => parse_confidence(cell(index)?)?,
                None => None,
            },
            category: match self.category {
                Some(index) => category(cell(index)?),
                None => None,
            },
        })
    }
}

/// CSV with a header line. Lines starting with `#` are comments (Feodo's banner and
/// trailer), except that before the header a comment that names `field` as a column is the
/// header: abuse.ch has shipped `# "first_seen_utc","dst_ip",...` as well as the bare line.
fn parse_csv(text: &str, fields: &Fields<'_>) -> Result<ParsedFeed, ParseError> {
    let mut parsed = ParsedFeed::default();
    let mut columns: Option<CsvColumns> = None;
    for (index, raw) in text.split('\n').enumerate() {
        let line = index + 1;
        let content = raw.strip_suffix('\r').unwrap_or(raw);
        if content.trim().is_empty() {
            continue;
        }
        if let Some(comment) = content.trim_start().strip_prefix('#') {
            if columns.is_none() {
                let header = split_csv(comment.trim()).ok().and_then(|cells| {
                    let name = fields.ioc?;
                    cells.iter().any(|c| c.trim() == name).then_some(cells)
                });
                if let Some(cells) = header {
                    columns = Some(
                        CsvColumns::find(&cells, fields)
                            .map_err(|reason| ParseError { line, reason })?,
                    );
                }
            }
            continue;
        }
        let cells = match split_csv(content) {
            Ok(cells) => cells,
            Err(reason) if columns.is_none() => {
                return Err(ParseError {
                    line,
                    reason: format!("bad header: {reason}"),
                })
            }
            Err(reason) => {
                parsed.bad(line, reason);
                continue;
            }
        };
        match &columns {
            None => {
                columns = Some(
                    CsvColumns::find(&cells, fields)
                        .map_err(|reason| ParseError { line, reason })?,
                );
            }
            Some(columns) => match columns.entry(&cells) {
                Ok(entry) => parsed.entries.push(entry),
                Err(reason) => parsed.bad(line, reason),
            },
        }
    }
    Ok(parsed)
}

/// serde_json's message without its " at line L column C": the line is reported apart.
fn json_reason(error: &serde_json::Error) -> String {
    let message = error.to_string();
    match message.rfind(" at line ") {
        Some(at) => message[..at].to_owned(),
        None => message,
    }
}

/// An array element or an NDJSON line; Ok(None) for a record that is not an IOC and says so
/// (Spamhaus ends its NDJSON with `{"type":"metadata",...}`).
fn json_entry(value: Value, fields: &Fields<'_>) -> Result<Option<FeedEntry>, String> {
    match value {
        Value::String(text) => parse_ioc(&text).map(|net| {
            Some(FeedEntry {
                net,
                confidence: None,
                category: None,
            })
        }),
        Value::Object(object) => json_object_entry(&object, fields),
        other => Err(format!(
            "expected an object or a string, found {}",
            json_kind(&other)
        )),
    }
}

fn json_object_entry(
    object: &Map<String, Value>,
    fields: &Fields<'_>,
) -> Result<Option<FeedEntry>, String> {
    let Some(key) = fields.ioc else {
        return Err("an object, but the feed has no `field` naming its address key".to_owned());
    };
    let net = match object.get(key) {
        Some(Value::String(text)) => parse_ioc(text)?,
        Some(other) => return Err(format!("`{key}` is {}, not a string", json_kind(other))),
        None if object.get("type").and_then(Value::as_str) == Some("metadata") => return Ok(None),
        None => return Err(format!("no `{key}` key")),
    };
    let confidence = match fields.confidence.and_then(|key| object.get(key)) {
        None | Some(Value::Null) => None,
        Some(Value::Number(number)) => parse_confidence(&number.to_string())?,
        Some(Value::String(text)) => parse_confidence(text)?,
        Some(other) => return Err(format!("confidence is {}", json_kind(other))),
    };
    let category = match fields.category.and_then(|key| object.get(key)) {
        None | Some(Value::Null) => None,
        Some(Value::String(text)) => self::category(text),
        Some(Value::Number(number)) => Some(number.to_string()),
        Some(other) => return Err(format!("category is {}", json_kind(other))),
    };
    Ok(Some(FeedEntry {
        net,
        confidence,
        category,
    }))
}

fn json_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// One JSON array. Elements are kept raw at first so that each one's line is known.
fn parse_json(text: &str, fields: &Fields<'_>) -> Result<ParsedFeed, ParseError> {
    let elements: Vec<&RawValue> = serde_json::from_str(text).map_err(|error| ParseError {
        line: error.line().max(1),
        reason: json_reason(&error),
    })?;
    let mut parsed = ParsedFeed::default();
    let (mut offset, mut line) = (0usize, 1usize);
    for raw in elements {
        // The raw value borrows from `text`, so its address gives its offset.
        let start = raw.get().as_ptr() as usize - text.as_ptr() as usize;
        line += text.as_bytes()[offset..start]
            .iter()
            .filter(|&&b| b == b'\n')
            .count();
        offset = start;
        let value: Value = match serde_json::from_str(raw.get()) {
            Ok(value) => value,
            Err(error) => {
                parsed.bad(line, json_reason(&error));
                continue;
            }
        };
        match json_entry(value, fields) {
            Ok(Some(entry)) => parsed.entries.push(entry),
            Ok(None) => {}
            Err(reason) => parsed.bad(line, reason),
        }
    }
    Ok(parsed)
}

/// One JSON value a line; a line that does not parse (a cut last line) is a bad line.
fn parse_ndjson(text: &str, fields: &Fields<'_>) -> ParsedFeed {
    let mut parsed = ParsedFeed::default();
    for (index, raw) in text.split('\n').enumerate() {
        let line = index + 1;
        let content = raw.trim();
        if content.is_empty() {
            continue;
        }
        let result = serde_json::from_str(content)
            .map_err(|error| json_reason(&error))
            .and_then(|value| json_entry(value, fields));
        match result {
            Ok(Some(entry)) => parsed.entries.push(entry),
            Ok(None) => {}
            Err(reason) => parsed.bad(line, reason),
        }
    }
    parsed
}
