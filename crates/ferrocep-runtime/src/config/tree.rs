//! The config text read into a tree of values that remembers, for YAML,
//! where each value is written; and field paths into it.
//!
//! The loader reads the whole document this way first, then deserializes
//! each section on its own, so that one bad section does not hide the
//! errors of the others, and so that every error, also one found after
//! deserialization, can point at its line and column.

use std::collections::HashSet;
use std::fmt;
use std::marker::PhantomData;

use ferrocep_core::spec::Location;
use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};

/// A value with its position in the text when known (YAML only).
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Node {
    pub(crate) value: Value,
    pub(crate) loc: Option<Location>,
}

/// The shape of a value.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Value {
    Null,
    Bool(bool),
    /// An integral number (also the ones too large for `i64`).
    Int(i128),
    /// A number with a fraction or an exponent.
    Float(f64),
    Str(String),
    Seq(Vec<Node>),
    /// Entries in the order written; keys are unique (a repeated key is a
    /// syntax error).
    Map(Vec<(String, Node)>),
}

impl Node {
    /// The value of `key` if this is a mapping that has it.
    pub(crate) fn get(&self, key: &str) -> Option<&Node> {
        match &self.value {
            Value::Map(entries) => entries.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    /// The position of the deepest node along `path` that exists.
    pub(crate) fn location_of(&self, path: &[Seg]) -> Option<Location> {
        let mut node = self;
        let mut loc = self.loc;
        for seg in path {
            let next = match (seg, &node.value) {
                (Seg::Key(k), Value::Map(_)) => node.get(k),
                (Seg::Index(i), Value::Seq(items)) => items.get(*i),
                _ => None,
            };
            match next {
                Some(n) => {
                    node = n;
                    loc = n.loc.or(loc);
                }
                None => break,
            }
        }
        loc
    }

    /// The value as JSON. A number JSON cannot hold (`.nan`, `.inf` in
    /// YAML) becomes `null` and is reported through `bad` with its path.
    pub(crate) fn to_json(
        &self,
        path: &mut Vec<Seg>,
        bad: &mut Vec<Vec<Seg>>,
    ) -> serde_json::Value {
        use serde_json::Value as J;
        match &self.value {
            Value::Null => J::Null,
            Value::Bool(b) => J::Bool(*b),
            Value::Int(i) => {
                if let Ok(v) = i64::try_from(*i) {
                    J::from(v)
                } else if let Ok(v) = u64::try_from(*i) {
                    J::from(v)
                } else {
                    float_json(*i as f64, path, bad)
                }
            }
            Value::Float(x) => float_json(*x, path, bad),
            Value::Str(s) => J::String(s.clone()),
            Value::Seq(items) => J::Array(
                items
                    .iter()
                    .enumerate()
                    .map(|(i, n)| {
                        path.push(Seg::Index(i));
                        let v = n.to_json(path, bad);
                        path.pop();
                        v
                    })
                    .collect(),
            ),
            Value::Map(entries) => J::Object(
                entries
                    .iter()
                    .map(|(k, n)| {
                        path.push(Seg::Key(k.clone()));
                        let v = n.to_json(path, bad);
                        path.pop();
                        (k.clone(), v)
                    })
                    .collect(),
            ),
        }
    }
}

fn float_json(x: f64, path: &[Seg], bad: &mut Vec<Vec<Seg>>) -> serde_json::Value {
    match serde_json::Number::from_f64(x) {
        Some(n) => serde_json::Value::Number(n),
        None => {
            bad.push(path.to_vec());
            serde_json::Value::Null
        }
    }
}

/// One step of a field path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Seg {
    /// A mapping key.
    Key(String),
    /// A list index.
    Index(usize),
}

/// Writes `path` as `outputs.timeout[0].url`.
pub(crate) struct PathText<'a>(pub(crate) &'a [Seg]);

impl fmt::Display for PathText<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, seg) in self.0.iter().enumerate() {
            match seg {
                Seg::Key(k) if i == 0 => f.write_str(k)?,
                Seg::Key(k) => write!(f, ".{k}")?,
                Seg::Index(n) => write!(f, "[{n}]")?,
            }
        }
        Ok(())
    }
}

/// A syntax error: the parser's message and, when known, where.
#[derive(Debug)]
pub(crate) struct SyntaxError {
    pub(crate) message: String,
    pub(crate) location: Option<Location>,
}

/// Reads `text` as JSON.
pub(crate) fn parse_json(text: &str) -> Result<Node, SyntaxError> {
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
            Err(SyntaxError {
                message: format!("invalid json: {message}"),
                location,
            })
        }
    }
}

/// Reads `text` as YAML (a repeated key is an error: in a config it is
/// almost surely a mistake).
pub(crate) fn parse_yaml(text: &str) -> Result<Node, SyntaxError> {
    use serde_saphyr::MessageFormatter;
    // `.nan` and `.inf` pass as numbers, so that the error that JSON cannot
    // hold them (`Node::to_json`) names their field.
    let options = serde_saphyr::options! {
        non_finite_float_policy: serde_saphyr::NonFiniteFloatPolicy::PassThrough,
    };
    match serde_saphyr::from_str_with_options::<YamlNode>(text, options) {
        Ok(YamlNode(node)) => Ok(node),
        Err(e) => {
            let message = match e.without_snippet() {
                serde_saphyr::Error::MultipleDocuments { .. } => {
                    "a config is a single document, found another one".to_string()
                }
                inner => serde_saphyr::DefaultMessageFormatter
                    .format_message(inner)
                    .into_owned(),
            };
            Err(SyntaxError {
                message: format!("invalid yaml: {message}"),
                location: e.location().and_then(known_location),
            })
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
struct JsonNode(Node);

impl<'de> Deserialize<'de> for JsonNode {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let value = d.deserialize_any(ValueVisitor::<JsonNode>(PhantomData))?;
        Ok(JsonNode(Node { value, loc: None }))
    }
}

impl From<JsonNode> for Node {
    fn from(n: JsonNode) -> Node {
        n.0
    }
}

/// A YAML value with its position.
struct YamlNode(Node);

/// The value part of a [`YamlNode`], read inside `Spanned`.
struct YamlValue(Value);

impl<'de> Deserialize<'de> for YamlValue {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(ValueVisitor::<YamlNode>(PhantomData))
            .map(YamlValue)
    }
}

impl<'de> Deserialize<'de> for YamlNode {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = serde_saphyr::Spanned::<YamlValue>::deserialize(d)?;
        Ok(YamlNode(Node {
            value: s.value.0,
            loc: known_location(s.referenced),
        }))
    }
}

impl From<YamlNode> for Node {
    fn from(n: YamlNode) -> Node {
        n.0
    }
}

/// Reads any value; children are read as `C` (so YAML children keep positions).
struct ValueVisitor<C>(PhantomData<C>);

impl<'de, C> Visitor<'de> for ValueVisitor<C>
where
    C: Deserialize<'de> + Into<Node>,
{
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a value")
    }

    fn visit_unit<E: de::Error>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_none<E: de::Error>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }

    fn visit_newtype_struct<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        d.deserialize_any(self)
    }

    fn visit_bool<E: de::Error>(self, b: bool) -> Result<Value, E> {
        Ok(Value::Bool(b))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Int(i128::from(v)))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Value, E> {
        Ok(Value::Int(i128::from(v)))
    }

    fn visit_i128<E: de::Error>(self, v: i128) -> Result<Value, E> {
        Ok(Value::Int(v))
    }

    fn visit_u128<E: de::Error>(self, v: u128) -> Result<Value, E> {
        Ok(match i128::try_from(v) {
            Ok(i) => Value::Int(i),
            Err(_) => Value::Float(v as f64),
        })
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Value, E> {
        Ok(Value::Float(v))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Value, E> {
        Ok(Value::Str(v.to_string()))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Value, E> {
        Ok(Value::Str(v))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element::<C>()? {
            items.push(item.into());
        }
        Ok(Value::Seq(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut entries: Vec<(String, Node)> = Vec::new();
        let mut seen = HashSet::new();
        while let Some(key) = map.next_key::<String>()? {
            // serde_json keeps the last of repeated keys silently; YAML
            // already rejects them. The same rule for both: an error.
            if !seen.insert(key.clone()) {
                return Err(de::Error::custom(format!("duplicate key `{key}`")));
            }
            let value: Node = map.next_value::<C>()?.into();
            entries.push((key, value));
        }
        Ok(Value::Map(entries))
    }
}
