//! A small YAML tree whose nodes remember their 1-based source position, built from
//! yaml-rust2's event stream so that every later error can point at the offending text.

use std::collections::HashMap;
use std::fmt;

use yaml_rust2::parser::{Event, Parser, Tag};
use yaml_rust2::scanner::{Marker, TScalarStyle};

/// Deeper nesting has no meaning in the config; the cap keeps hostile input from exhausting
/// the stack when the tree is dropped.
const MAX_DEPTH: usize = 64;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct Pos {
    pub line: usize,
    pub col: usize,
}

impl From<Marker> for Pos {
    fn from(mark: Marker) -> Self {
        // yaml-rust2 markers have 1-based lines but 0-based columns.
        Pos {
            line: mark.line(),
            col: mark.col() + 1,
        }
    }
}

#[derive(Debug)]
pub(crate) struct Node {
    pub pos: Pos,
    pub value: Value,
}

#[derive(Debug)]
pub(crate) enum Value {
    /// `quoted` covers every non-plain style (quotes, block scalars): those are always strings.
    Scalar {
        text: String,
        quoted: bool,
    },
    Seq(Vec<Node>),
    Map(Vec<(Node, Node)>),
    /// Stands in for an unsupported construct that was already reported, so that checks on
    /// the value do not add a second, misleading error.
    Reported,
}

/// A scalar resolved with the YAML 1.2 core schema (so `yes`/`on` are strings, not booleans).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum Scalar<'a> {
    Null,
    Bool(bool),
    /// Saturated: magnitudes beyond i128 only ever need to fail a range check.
    Int(i128),
    Float,
    Str(&'a str),
}

#[derive(Debug)]
pub(crate) struct YamlError {
    pub pos: Pos,
    pub message: String,
}

impl YamlError {
    fn at(pos: Pos, message: impl Into<String>) -> Self {
        YamlError {
            pos,
            message: message.into(),
        }
    }
}

impl Node {
    pub fn scalar(&self) -> Option<Scalar<'_>> {
        match &self.value {
            Value::Scalar { text, quoted: true } => Some(Scalar::Str(text)),
            Value::Scalar {
                text,
                quoted: false,
            } => Some(resolve_plain(text)),
            _ => None,
        }
    }

    pub fn is_null(&self) -> bool {
        self.scalar() == Some(Scalar::Null)
    }

    /// The key text when this node is used as a mapping key.
    pub fn key_text(&self) -> &str {
        match &self.value {
            Value::Scalar { text, .. } => text,
            _ => "",
        }
    }
}

/// Describes a node for "expected X, found Y" messages.
impl fmt::Display for Node {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.value {
            Value::Seq(_) => f.write_str("a list"),
            Value::Reported => f.write_str("an unsupported value"),
            Value::Map(_) => f.write_str("a mapping"),
            Value::Scalar { text, .. } => match self.scalar() {
                Some(Scalar::Null) => f.write_str("null"),
                Some(Scalar::Bool(_)) => write!(f, "boolean {text}"),
                Some(Scalar::Int(_)) => write!(f, "integer {text}"),
                Some(Scalar::Float) => write!(f, "float {text}"),
                _ => write!(f, "string {text:?}"),
            },
        }
    }
}

fn resolve_plain(text: &str) -> Scalar<'_> {
    match text {
        "" | "~" | "null" | "Null" | "NULL" => Scalar::Null,
        "true" | "True" | "TRUE" => Scalar::Bool(true),
        "false" | "False" | "FALSE" => Scalar::Bool(false),
        _ => {
            if let Some(value) = parse_core_int(text) {
                Scalar::Int(value)
            } else if is_core_float(text) {
                Scalar::Float
            } else {
                Scalar::Str(text)
            }
        }
    }
}

fn parse_core_int(text: &str) -> Option<i128> {
    let (negative, radix, digits) = if let Some(hex) = text.strip_prefix("0x") {
        (false, 16, hex)
    } else if let Some(octal) = text.strip_prefix("0o") {
        (false, 8, octal)
    } else if let Some(rest) = text.strip_prefix('-') {
        (true, 10, rest)
    } else {
        (false, 10, text.strip_prefix('+').unwrap_or(text))
    };
    if digits.is_empty() {
        return None;
    }
    let mut magnitude: i128 = 0;
    for c in digits.chars() {
        let digit = c.to_digit(radix)?;
        magnitude = magnitude
            .saturating_mul(i128::from(radix))
            .saturating_add(i128::from(digit));
    }
    Some(if negative { -magnitude } else { magnitude })
}

fn is_core_float(text: &str) -> bool {
    let unsigned = text.strip_prefix(['-', '+']).unwrap_or(text);
    if matches!(unsigned, ".inf" | ".Inf" | ".INF") || matches!(text, ".nan" | ".NaN" | ".NAN") {
        return true;
    }
    let (mantissa, exponent) = match unsigned.find(['e', 'E']) {
        Some(at) => (&unsigned[..at], Some(&unsigned[at + 1..])),
        None => (unsigned, None),
    };
    let all_digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    let (whole, fraction) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let mantissa_ok =
        !(whole.is_empty() && fraction.is_empty()) && all_digits(whole) && all_digits(fraction);
    let exponent_ok = exponent.is_none_or(|e| {
        let e = e.strip_prefix(['-', '+']).unwrap_or(e);
        !e.is_empty() && all_digits(e)
    });
    mantissa_ok && exponent_ok
}

pub(crate) fn duplicate(what: &str, name: &str, first: Pos) -> String {
    format!(
        "duplicate {what} `{name}` (first defined at line {}, column {})",
        first.line, first.col
    )
}

enum Frame {
    Seq { pos: Pos, items: Vec<Node> },
    Map(MapFrame),
}

struct MapFrame {
    pos: Pos,
    entries: Vec<(Node, Node)>,
    /// The key waiting for its value, and whether the entry is kept (duplicates are dropped).
    pending_key: Option<(Node, bool)>,
    first_seen: HashMap<String, Pos>,
}

impl Frame {
    fn into_node(self) -> Node {
        match self {
            Frame::Seq { pos, items } => Node {
                pos,
                value: Value::Seq(items),
            },
            Frame::Map(map) => Node {
                pos: map.pos,
                value: Value::Map(map.entries),
            },
        }
    }
}

impl MapFrame {
    fn accept(&mut self, mut node: Node, errors: &mut Vec<YamlError>) {
        match self.pending_key.take() {
            Some((key, keep)) => {
                // yaml-rust2 places an omitted value (`key:` and nothing else) at the next
                // token, often on a later line; the key is where the operator should look.
                if matches!(&node.value, Value::Scalar { text, quoted: false } if text.is_empty()) {
                    node.pos = key.pos;
                }
                if keep {
                    self.entries.push((key, node));
                }
            }
            None => self.accept_key(node, errors),
        }
    }

    fn accept_key(&mut self, key: Node, errors: &mut Vec<YamlError>) {
        // Block mappings report their start at the first key's `:`; the key itself is the
        // position an operator expects.
        if self.entries.is_empty() && key.pos < self.pos {
            self.pos = key.pos;
        }
        let keep = match &key.value {
            Value::Scalar { text, .. } => match self.first_seen.get(text) {
                Some(first) => {
                    errors.push(YamlError::at(key.pos, duplicate("key", text, *first)));
                    false
                }
                None => {
                    self.first_seen.insert(text.clone(), key.pos);
                    true
                }
            },
            _ => {
                errors.push(YamlError::at(key.pos, "mapping keys must be plain strings"));
                false
            }
        };
        self.pending_key = Some((key, keep));
    }
}

fn unsupported(anchor: usize, tag: Option<&Tag>, pos: Pos, errors: &mut Vec<YamlError>) {
    if anchor != 0 {
        errors.push(YamlError::at(pos, "YAML anchors (&name) are not supported"));
    }
    if let Some(tag) = tag {
        let message = format!(
            "YAML tags are not supported (found `{}{}`)",
            tag.handle, tag.suffix
        );
        errors.push(YamlError::at(pos, message));
    }
}

/// Parses a single-document YAML text. A syntax error stops parsing (it is the only error
/// returned); unsupported features and duplicate keys are collected and the tree still built.
pub(crate) fn parse(text: &str) -> (Option<Node>, Vec<YamlError>) {
    let mut parser = Parser::new_from_str(text);
    let mut errors = Vec::new();
    let mut stack: Vec<Frame> = Vec::new();
    let mut root = None;
    let mut documents = 0;
    loop {
        let (event, mark) = match parser.next_token() {
            Ok(next) => next,
            Err(scan) => {
                let message = format!("YAML syntax error: {}", scan.info());
                return (
                    None,
                    vec![YamlError::at(Pos::from(*scan.marker()), message)],
                );
            }
        };
        let pos = Pos::from(mark);
        let node = match event {
            Event::StreamEnd => break,
            Event::DocumentStart => {
                documents += 1;
                if documents > 1 {
                    let message = "only one YAML document is allowed";
                    return (None, vec![YamlError::at(pos, message)]);
                }
                continue;
            }
            Event::Alias(_) => {
                errors.push(YamlError::at(pos, "YAML aliases (*name) are not supported"));
                Node {
                    pos,
                    value: Value::Reported,
                }
            }
            Event::Scalar(text, style, anchor, tag) => {
                unsupported(anchor, tag.as_ref(), pos, &mut errors);
                Node {
                    pos,
                    value: Value::Scalar {
                        text,
                        quoted: style != TScalarStyle::Plain,
                    },
                }
            }
            Event::SequenceStart(anchor, ref tag) | Event::MappingStart(anchor, ref tag) => {
                unsupported(anchor, tag.as_ref(), pos, &mut errors);
                if stack.len() >= MAX_DEPTH {
                    let message = format!("YAML nesting deeper than {MAX_DEPTH} levels");
                    return (None, vec![YamlError::at(pos, message)]);
                }
                stack.push(if matches!(event, Event::SequenceStart(..)) {
                    Frame::Seq {
                        pos,
                        items: Vec::new(),
                    }
                } else {
                    Frame::Map(MapFrame {
                        pos,
                        entries: Vec::new(),
                        pending_key: None,
                        first_seen: HashMap::new(),
                    })
                });
                continue;
            }
            Event::SequenceEnd | Event::MappingEnd => match stack.pop() {
                Some(frame) => frame.into_node(),
                None => continue,
            },
            Event::StreamStart | Event::DocumentEnd | Event::Nothing => continue,
        };
        match stack.last_mut() {
            None => root = Some(node),
            Some(Frame::Seq { items, .. }) => items.push(node),
            Some(Frame::Map(map)) => map.accept(node, &mut errors),
        }
    }
    (root, errors)
}
