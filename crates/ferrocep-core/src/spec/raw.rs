//! The raw spec: the YAML or JSON text read into a tree of values ([`RawNode`])
//! that remembers, for YAML, where each value is written.
//!
//! Syntax errors come out of this module with their line and column. Fields,
//! types and values are checked afterwards by `validate`, field by field, so
//! that every error can name its field path (`stages[1].times`) — which
//! `#[serde(deny_unknown_fields)]` structs cannot do — and so that the checks
//! run in the order of the reference implementation (`Spec.java`), which
//! validates a generic JSON tree the same way.
//!
//! Like Jackson's tree model (what the reference reads specs with), a mapping
//! that repeats a key keeps the last value (at the first key's position), and
//! `null` is a value of its own (the validator treats a `null` field as absent).

use std::collections::HashMap;
use std::fmt;
use std::marker::PhantomData;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};

use super::error::{Location, SpecError, SpecErrorKind, Syntax};

/// A value of the spec tree, with its position in the text when known.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct RawNode {
    pub(crate) value: RawValue,
    /// Line and column of the value (YAML only).
    pub(crate) loc: Option<Location>,
    /// Byte offset and length of the value's text (YAML only).
    pub(crate) span: Option<(usize, usize)>,
}

/// The shape of a spec value (a JSON value, as Jackson's tree model has it).
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum RawValue {
    Null,
    Bool(bool),
    /// An integral number (also the ones too large for `i64`).
    Int(i128),
    /// A number with a fraction or an exponent, or too large for `i128`.
    Float(f64),
    Str(String),
    Seq(Vec<RawNode>),
    /// Entries in the order written; keys are unique (the last value wins).
    Map(Vec<(String, RawNode)>),
}

impl RawValue {
    /// How the value is described in error messages: `the number 3`, `a list`, ...
    pub(crate) fn describe(&self) -> String {
        match self {
            RawValue::Null => "null".to_string(),
            RawValue::Bool(b) => format!("the boolean {b}"),
            RawValue::Int(i) => format!("the number {i}"),
            RawValue::Float(x) => format!("the number {x}"),
            RawValue::Str(s) => format!("the string '{s}'"),
            RawValue::Seq(_) => "a list".to_string(),
            RawValue::Map(_) => "a mapping".to_string(),
        }
    }
}

/// Which syntax a spec text is in when its file name does not say: JSON when
/// the first character that is not white space is `{`, YAML otherwise.
pub(crate) fn detect(text: &str) -> Syntax {
    if strip_bom(text).trim_start().starts_with('{') {
        Syntax::Json
    } else {
        Syntax::Yaml
    }
}

fn strip_bom(text: &str) -> &str {
    text.strip_prefix('\u{feff}').unwrap_or(text)
}

/// Reads `text` as `syntax` into a tree.
pub(crate) fn parse(text: &str, syntax: Syntax) -> Result<RawNode, SpecError> {
    let text = strip_bom(text);
    match syntax {
        Syntax::Json => parse_json(text),
        Syntax::Yaml => parse_yaml(text),
    }
}

fn parse_json(text: &str) -> Result<RawNode, SpecError> {
    match serde_json::from_str::<JsonNode>(text) {
        Ok(JsonNode(node)) => Ok(node),
        Err(e) => {
            let location = (e.line() > 0).then(|| Location {
                line: e.line() as u64,
                column: e.column().max(1) as u64,
            });
            // serde_json appends " at line L column C"; the location is kept apart.
            let full = e.to_string();
            let suffix = format!(" at line {} column {}", e.line(), e.column());
            let message = full.strip_suffix(&suffix).unwrap_or(&full).to_string();
            Err(SpecError::new(SpecErrorKind::Syntax {
                syntax: Syntax::Json,
                message,
            })
            .at(location))
        }
    }
}

fn parse_yaml(text: &str) -> Result<RawNode, SpecError> {
    use serde_saphyr::MessageFormatter;
    let options = serde_saphyr::options! {
        duplicate_keys: serde_saphyr::DuplicateKeyPolicy::LastWins,
    };
    match serde_saphyr::from_str_with_options::<YamlNode>(text, options) {
        Ok(YamlNode(node)) => Ok(node),
        Err(e) => {
            let message = match e.without_snippet() {
                serde_saphyr::Error::MultipleDocuments { .. } => {
                    "a spec is a single document, found another one".to_string()
                }
                inner => serde_saphyr::DefaultMessageFormatter
                    .format_message(inner)
                    .into_owned(),
            };
            Err(SpecError::new(SpecErrorKind::Syntax {
                syntax: Syntax::Yaml,
                message,
            })
            .at(e.location().and_then(known_location)))
        }
    }
}

fn known_location(l: serde_saphyr::Location) -> Option<Location> {
    (l.line() > 0).then(|| Location {
        line: l.line(),
        column: l.column(),
    })
}

/// A JSON value (no positions: `serde_json` does not report them for values).
struct JsonNode(RawNode);

impl<'de> Deserialize<'de> for JsonNode {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let value = d.deserialize_any(ValueVisitor::<JsonNode>(PhantomData))?;
        Ok(JsonNode(RawNode {
            value,
            loc: None,
            span: None,
        }))
    }
}

impl From<JsonNode> for RawNode {
    fn from(n: JsonNode) -> RawNode {
        n.0
    }
}

/// A YAML value with its position.
struct YamlNode(RawNode);

/// The value part of a [`YamlNode`], read inside `Spanned`.
struct YamlValue(RawValue);

impl<'de> Deserialize<'de> for YamlValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(ValueVisitor::<YamlNode>(PhantomData))
            .map(YamlValue)
    }
}

impl<'de> Deserialize<'de> for YamlNode {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = serde_saphyr::Spanned::<YamlValue>::deserialize(d)?;
        let at = s.referenced;
        let span = at.span();
        let span = match (span.byte_offset(), span.byte_len()) {
            (Some(o), Some(l)) => usize::try_from(o).ok().zip(usize::try_from(l).ok()),
            _ => None,
        };
        Ok(YamlNode(RawNode {
            value: s.value.0,
            loc: known_location(at),
            span,
        }))
    }
}

impl From<YamlNode> for RawNode {
    fn from(n: YamlNode) -> RawNode {
        n.0
    }
}

/// Reads any value; children are read as `C` (so YAML children keep positions).
struct ValueVisitor<C>(PhantomData<C>);

impl<'de, C> Visitor<'de> for ValueVisitor<C>
where
    C: Deserialize<'de> + Into<RawNode>,
{
    type Value = RawValue;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a value")
    }

    fn visit_unit<E: de::Error>(self) -> Result<RawValue, E> {
        Ok(RawValue::Null)
    }

    fn visit_none<E: de::Error>(self) -> Result<RawValue, E> {
        Ok(RawValue::Null)
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<RawValue, D::Error> {
        d.deserialize_any(self)
    }

    fn visit_newtype_struct<D: Deserializer<'de>>(self, d: D) -> Result<RawValue, D::Error> {
        d.deserialize_any(self)
    }

    fn visit_bool<E: de::Error>(self, b: bool) -> Result<RawValue, E> {
        Ok(RawValue::Bool(b))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<RawValue, E> {
        Ok(RawValue::Int(i128::from(v)))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<RawValue, E> {
        Ok(RawValue::Int(i128::from(v)))
    }

    fn visit_i128<E: de::Error>(self, v: i128) -> Result<RawValue, E> {
        Ok(RawValue::Int(v))
    }

    fn visit_u128<E: de::Error>(self, v: u128) -> Result<RawValue, E> {
        Ok(match i128::try_from(v) {
            Ok(i) => RawValue::Int(i),
            Err(_) => RawValue::Float(v as f64),
        })
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<RawValue, E> {
        Ok(RawValue::Float(v))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<RawValue, E> {
        Ok(RawValue::Str(v.to_string()))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<RawValue, E> {
        Ok(RawValue::Str(v))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<RawValue, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element::<C>()? {
            items.push(item.into());
        }
        Ok(RawValue::Seq(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RawValue, A::Error> {
        let mut entries: Vec<(String, RawNode)> = Vec::new();
        let mut index: HashMap<String, usize> = HashMap::new();
        while let Some(key) = map.next_key::<String>()? {
            let value: RawNode = map.next_value::<C>()?.into();
            match index.get(&key) {
                Some(&i) => entries[i].1 = value,
                None => {
                    index.insert(key.clone(), entries.len());
                    entries.push((key, value));
                }
            }
        }
        Ok(RawValue::Map(entries))
    }
}
