//! Validation of the raw spec tree into the parts of a [`super::Spec`],
//! reproducing the reference's `Spec.java` (`Spec.parse`): the same fields,
//! the same accepted forms and types, the same checks in the same order, so
//! the same specs are accepted and refused.
//!
//! - A field set to `null` counts as absent (Jackson `has()`).
//! - Strings must be strings (`name: 1` in YAML is a number and is refused),
//!   counts must be integers that fit in 32 bits, flags must be booleans.
//! - Durations: a non-negative integer (milliseconds) or a string
//!   `<digits><unit>` with unit `ms`, `s`, `m`, `h`, `d` (none = ms),
//!   white space allowed around and between.
//! - Field paths (`key`, `time.field`) are split at `.`; no segment may be empty.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use crate::expr::{Expr, Fields};
use crate::pattern::{Contiguity, SkipStrategy};
use crate::time::parse_duration_ms;

use super::error::{Location, SpecError, SpecErrorKind};
use super::raw::{RawNode, RawValue};
use super::{CondRef, StageSpec, TimeSpec, TimesSpec};

const ROOT_FIELDS: &[&str] = &["name", "key", "time", "within", "skip", "stages"];
const TIME_FIELDS: &[&str] = &["field", "max_out_of_orderness", "order_by"];
const STAGE_FIELDS: &[&str] = &[
    "name",
    "where",
    "contiguity",
    "times",
    "times_or_more",
    "one_or_more",
    "optional",
    "greedy",
    "consecutive",
    "allow_combinations",
    "until",
    "within",
];
/// The `skip` mapping's flag for Flink's `throwExceptionOnMiss()`.
const THROW_ON_MISS: &str = "throw_exception_on_miss";
const CONTIGUITIES: &[&str] = &[
    "next",
    "followed_by",
    "followed_by_any",
    "not_next",
    "not_followed_by",
];

/// Everything a spec says, checked; the expressions compiled.
pub(crate) struct Validated {
    pub(crate) name: Option<String>,
    pub(crate) key: Option<Vec<String>>,
    pub(crate) time: Option<TimeSpec>,
    pub(crate) within: Option<Duration>,
    pub(crate) skip: SkipStrategy,
    pub(crate) skip_throw: bool,
    pub(crate) stages: Vec<StageSpec>,
    pub(crate) conditions: Vec<Expr>,
    pub(crate) fields: Fields,
    /// Where each field is written (YAML only): `within`, `stages[1]`,
    /// `stages[1].greedy`, ... (to place errors found later, by the Pattern API).
    pub(crate) locations: HashMap<String, Location>,
}

/// Where the field at `path` is written, or else its closest enclosing one.
pub(crate) fn location_of(locations: &HashMap<String, Location>, path: &str) -> Option<Location> {
    let mut p = path;
    loop {
        if let Some(l) = locations.get(p) {
            return Some(*l);
        }
        p = &p[..p.rfind('.')?];
    }
}

/// Checks the tree read from `text` (the text is used to place expression
/// errors precisely).
pub(crate) fn validate(root: &RawNode, text: &str) -> Result<Validated, SpecError> {
    let mut v = Validator {
        text,
        fields: Fields::new(),
        conditions: Vec::new(),
        by_source: HashMap::new(),
        locations: HashMap::new(),
    };
    v.spec(root)
}

struct Validator<'t> {
    text: &'t str,
    fields: Fields,
    conditions: Vec<Expr>,
    /// Index of each distinct expression text (identical expressions share a bit).
    by_source: HashMap<String, usize>,
    locations: HashMap<String, Location>,
}

type Entries = [(String, RawNode)];

fn err(node: &RawNode, path: impl Into<String>, message: impl Into<String>) -> SpecError {
    SpecError::invalid(path, node.loc, message)
}

fn join(path: &str, field: &str) -> String {
    if path.is_empty() {
        field.to_string()
    } else {
        format!("{path}.{field}")
    }
}

/// The value of `field` unless it is absent or `null` (Jackson `has()`).
fn get<'n>(entries: &'n Entries, field: &str) -> Option<&'n RawNode> {
    entries
        .iter()
        .find(|(k, _)| k == field)
        .map(|(_, v)| v)
        .filter(|v| v.value != RawValue::Null)
}

/// Refuses any field not in `allowed` (the first one, in written order).
fn allow_only(entries: &Entries, path: &str, allowed: &[&str]) -> Result<(), SpecError> {
    for (k, v) in entries {
        if !allowed.contains(&k.as_str()) {
            let mut msg = format!(
                "unknown field '{k}' (expected one of: {})",
                allowed.join(", ")
            );
            if let Some(s) = suggest(k, allowed) {
                msg.push_str(&format!("; did you mean '{s}'?"));
            }
            return Err(err(v, join(path, k), msg));
        }
    }
    Ok(())
}

/// The allowed name closest to `k`, when it is a plausible typo.
fn suggest<'a>(k: &str, allowed: &[&'a str]) -> Option<&'a str> {
    let k = k.to_ascii_lowercase().replace('-', "_");
    allowed
        .iter()
        .map(|a| (edit_distance(&k, a), *a))
        .filter(|(d, a)| *d <= 2.max(a.len() / 4))
        .min_by_key(|(d, _)| *d)
        .map(|(_, a)| a)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().take(64).collect();
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.iter().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != cb);
            cur[j + 1] = sub.min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

fn text<'n>(node: &'n RawNode, path: &str) -> Result<&'n str, SpecError> {
    match &node.value {
        RawValue::Str(s) => Ok(s),
        other => Err(err(
            node,
            path,
            format!("expected a string, found {}", other.describe()),
        )),
    }
}

/// A 32-bit integer (Jackson `isIntegralNumber() && canConvertToInt()`).
fn integer(node: &RawNode, path: &str) -> Result<i32, SpecError> {
    match &node.value {
        RawValue::Int(i) => i32::try_from(*i).map_err(|_| {
            err(
                node,
                path,
                format!("expected an integer, found {i}, which is too large"),
            )
        }),
        other => Err(err(
            node,
            path,
            format!("expected an integer, found {}", other.describe()),
        )),
    }
}

/// A count for a Pattern quantifier: Flink refuses negative ones.
fn count(node: &RawNode, path: &str) -> Result<u32, SpecError> {
    let i = integer(node, path)?;
    u32::try_from(i).map_err(|_| {
        err(
            node,
            path,
            format!("expected a positive integer, found {i}"),
        )
    })
}

fn boolean(entries: &Entries, field: &str, path: &str) -> Result<bool, SpecError> {
    match get(entries, field) {
        None => Ok(false),
        Some(n) => match &n.value {
            RawValue::Bool(b) => Ok(*b),
            other => Err(err(
                n,
                join(path, field),
                format!("expected true or false, found {}", other.describe()),
            )),
        },
    }
}

/// Splits a dotted field path (`user.id`); empty segments are refused.
fn split_path(node: &RawNode, p: &str, path: &str) -> Result<Vec<String>, SpecError> {
    let segs: Vec<String> = p.split('.').map(str::to_string).collect();
    if segs.iter().any(String::is_empty) {
        return Err(err(node, path, format!("bad field path '{p}'")));
    }
    Ok(segs)
}

/// `time.order_by`: a field path, or a non-empty list of them (an
/// extension of the spec: Flink's `EventComparator` by fields).
fn order_by(node: &RawNode) -> Result<Vec<Vec<String>>, SpecError> {
    const PATH: &str = "time.order_by";
    match &node.value {
        RawValue::Str(p) => Ok(vec![split_path(node, p, PATH)?]),
        RawValue::Seq(items) if items.is_empty() => Err(err(
            node,
            PATH,
            "must name at least one field (or be left out)",
        )),
        RawValue::Seq(items) => items
            .iter()
            .enumerate()
            .map(|(i, n)| {
                let path = format!("{PATH}[{i}]");
                split_path(n, text(n, &path)?, &path)
            })
            .collect(),
        other => Err(err(
            node,
            PATH,
            format!(
                "expected a field path or a list of them, found {}",
                other.describe()
            ),
        )),
    }
}

/// A [`duration`] (never negative) as a `Duration`.
fn millis(ms: i64) -> Duration {
    Duration::from_millis(u64::try_from(ms).unwrap_or(0))
}

/// Durations: a non-negative integer (milliseconds) or a string with a unit.
pub(crate) fn duration(node: &RawNode, path: &str) -> Result<i64, SpecError> {
    const EXPECTED: &str =
        "expected a duration: integer milliseconds or a number with unit ms, s, m, h or d (e.g. 250ms, 10s, 10m)";
    match &node.value {
        RawValue::Int(i) => match i64::try_from(*i) {
            Ok(ms) if ms >= 0 => Ok(ms),
            _ => Err(err(node, path, format!("{EXPECTED}, found {i}"))),
        },
        RawValue::Str(s) => {
            // The reference's pattern is ASCII-only (`\s`, `\d`).
            let parsed = if s.is_ascii() {
                parse_duration_ms(s).ok()
            } else {
                None
            };
            parsed.ok_or_else(|| err(node, path, format!("{EXPECTED}, found '{s}'")))
        }
        other => Err(err(
            node,
            path,
            format!("{EXPECTED}, found {}", other.describe()),
        )),
    }
}

/// Java `String.trim()`: strips every char up to U+0020.
fn java_trim(s: &str) -> &str {
    s.trim_matches(|c: char| c <= ' ')
}

/// Java regex `\s`.
fn java_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\n' | '\u{0B}' | '\u{0C}' | '\r')
}

/// The string forms `skip_to_first: STAGE`, `skip_to_first(STAGE)` (and
/// `skip_to_last`), as the reference's
/// `^\s*(skip_to_first|skip_to_last)\s*[:(]\s*([^)]*?)\s*\)?\s*$`.
fn skip_with_stage(v: &str) -> Option<(&'static str, &str)> {
    let s = v.trim_start_matches(java_space);
    let (strategy, rest) = if let Some(r) = s.strip_prefix("skip_to_first") {
        ("skip_to_first", r)
    } else if let Some(r) = s.strip_prefix("skip_to_last") {
        ("skip_to_last", r)
    } else {
        return None;
    };
    let rest = rest.trim_start_matches(java_space);
    let rest = rest.strip_prefix(':').or_else(|| rest.strip_prefix('('))?;
    let rest = rest
        .trim_start_matches(java_space)
        .trim_end_matches(java_space);
    let rest = rest.strip_suffix(')').unwrap_or(rest);
    let stage = rest.trim_end_matches(java_space);
    if stage.contains(')') {
        return None;
    }
    Some((strategy, stage))
}

impl Validator<'_> {
    fn locate(&mut self, path: String, node: &RawNode) {
        if let Some(l) = node.loc {
            self.locations.insert(path, l);
        }
    }

    fn spec(&mut self, root: &RawNode) -> Result<Validated, SpecError> {
        let RawValue::Map(entries) = &root.value else {
            return Err(err(
                root,
                "",
                format!(
                    "the spec must be a mapping, found {}",
                    root.value.describe()
                ),
            ));
        };
        allow_only(entries, "", ROOT_FIELDS)?;

        let name = get(entries, "name")
            .map(|n| text(n, "name").map(str::to_string))
            .transpose()?;

        let key = match get(entries, "key") {
            None => None,
            Some(n) => Some(split_path(n, text(n, "key")?, "key")?),
        };

        let time = match get(entries, "time") {
            None => None,
            Some(t) => Some(self.time(t)?),
        };

        let within = match get(entries, "within") {
            None => None,
            Some(n) => {
                self.locate("within".to_string(), n);
                let w = duration(n, "within")?;
                if w <= 0 {
                    return Err(err(n, "within", "must be positive, found 0"));
                }
                Some(millis(w))
            }
        };

        let skip = match get(entries, "skip") {
            None => SkipStrategy::NoSkip,
            Some(n) => self.skip(n)?,
        };
        let skip_throw = match get(entries, "skip").map(|n| &n.value) {
            Some(RawValue::Map(m)) => match m.iter().find(|(k, _)| k == THROW_ON_MISS) {
                Some((_, v)) => match v.value {
                    RawValue::Bool(b) => b,
                    _ => {
                        return Err(err(
                            v,
                            format!("skip.{THROW_ON_MISS}"),
                            format!("expected true or false, found {}", v.value.describe()),
                        ))
                    }
                },
                None => false,
            },
            _ => false,
        };

        let stages_node = entries.iter().find(|(k, _)| k == "stages").map(|(_, v)| v);
        let list = match stages_node.map(|n| &n.value) {
            Some(RawValue::Seq(list)) if !list.is_empty() => list,
            _ => {
                let at = stages_node.unwrap_or(root);
                return Err(err(at, "stages", "a non-empty list of stages is required"));
            }
        };
        let mut names = HashSet::new();
        let mut stages = Vec::with_capacity(list.len());
        for (i, node) in list.iter().enumerate() {
            let path = format!("stages[{i}]");
            let stage = self.stage(node, &path, i == 0)?;
            if !names.insert(stage.name.clone()) {
                let at = match &node.value {
                    RawValue::Map(e) => get(e, "name").unwrap_or(node),
                    _ => node,
                };
                return Err(err(
                    at,
                    format!("{path}.name"),
                    format!("duplicate stage name '{}'", stage.name),
                ));
            }
            stages.push(stage);
        }
        if let Some(stage) = skip.stage_name() {
            if !names.contains(stage) {
                let at = get(entries, "skip").unwrap_or(root);
                return Err(err(at, "skip", format!("no stage named '{stage}'")));
            }
        }

        Ok(Validated {
            name,
            key,
            time,
            within,
            skip,
            skip_throw,
            stages,
            conditions: std::mem::take(&mut self.conditions),
            fields: std::mem::replace(&mut self.fields, Fields::new()),
            locations: std::mem::take(&mut self.locations),
        })
    }

    fn time(&mut self, t: &RawNode) -> Result<TimeSpec, SpecError> {
        let RawValue::Map(entries) = &t.value else {
            return Err(err(
                t,
                "time",
                format!(
                    "must be a mapping with 'field', found {}",
                    t.value.describe()
                ),
            ));
        };
        allow_only(entries, "time", TIME_FIELDS)?;
        let Some(f) = get(entries, "field") else {
            return Err(err(t, "time", "'field' is required"));
        };
        let field = split_path(f, text(f, "time.field")?, "time.field")?;
        let max_out_of_orderness = match get(entries, "max_out_of_orderness") {
            None => 0,
            Some(n) => duration(n, "time.max_out_of_orderness")?,
        };
        let max_out_of_orderness = millis(max_out_of_orderness);
        let order_by = match get(entries, "order_by") {
            None => Vec::new(),
            Some(n) => order_by(n)?,
        };
        Ok(TimeSpec {
            field,
            max_out_of_orderness,
            order_by,
        })
    }

    fn skip(&mut self, n: &RawNode) -> Result<SkipStrategy, SpecError> {
        let (strategy, stage): (String, Option<String>) = match &n.value {
            RawValue::Str(s) => {
                let v = java_trim(s);
                match skip_with_stage(v) {
                    Some((strategy, stage)) => (strategy.to_string(), Some(stage.to_string())),
                    None => (v.to_string(), None),
                }
            }
            // `{skip_to_first: STAGE}`, and beside it (an extension of the
            // spec) `throw_exception_on_miss: true`.
            RawValue::Map(entries)
                if entries.len() == 1
                    || (entries.len() == 2 && entries.iter().any(|(k, _)| k == THROW_ON_MISS)) =>
            {
                let Some((k, v)) = entries.iter().find(|(k, _)| k != THROW_ON_MISS) else {
                    return Err(err(
                        n,
                        "skip",
                        "expected a strategy beside throw_exception_on_miss",
                    ));
                };
                let stage = text(v, &format!("skip.{k}"))?;
                (k.clone(), Some(stage.to_string()))
            }
            other => {
                return Err(err(
                    n,
                    "skip",
                    format!(
                        "expected no_skip, skip_to_next, skip_past_last_event, \
                         {{skip_to_first: STAGE}} or {{skip_to_last: STAGE}}, found {}",
                        other.describe()
                    ),
                ))
            }
        };
        match strategy.as_str() {
            "no_skip" | "skip_to_next" | "skip_past_last_event" => {
                if stage.is_some() {
                    return Err(err(n, "skip", format!("{strategy} takes no stage")));
                }
                Ok(match strategy.as_str() {
                    "no_skip" => SkipStrategy::NoSkip,
                    "skip_to_next" => SkipStrategy::SkipToNext,
                    _ => SkipStrategy::SkipPastLastEvent,
                })
            }
            "skip_to_first" | "skip_to_last" => match stage {
                Some(s) if !s.is_empty() => Ok(if strategy == "skip_to_first" {
                    SkipStrategy::SkipToFirst(s)
                } else {
                    SkipStrategy::SkipToLast(s)
                }),
                _ => Err(err(n, "skip", format!("{strategy} needs a stage name"))),
            },
            _ => Err(err(
                n,
                "skip",
                format!(
                    "unknown strategy '{strategy}' (expected one of: no_skip, skip_to_next, \
                     skip_past_last_event, skip_to_first, skip_to_last)"
                ),
            )),
        }
    }

    fn stage(&mut self, n: &RawNode, path: &str, first: bool) -> Result<StageSpec, SpecError> {
        let RawValue::Map(entries) = &n.value else {
            return Err(err(
                n,
                path,
                format!("a stage must be a mapping, found {}", n.value.describe()),
            ));
        };
        allow_only(entries, path, STAGE_FIELDS)?;
        self.locate(path.to_string(), n);
        for (k, v) in entries {
            self.locate(join(path, k), v);
        }

        let Some(name_node) = get(entries, "name") else {
            return Err(err(n, path, "'name' is required"));
        };
        let name_path = join(path, "name");
        let name = text(name_node, &name_path)?.to_string();
        if name.is_empty() {
            return Err(err(name_node, name_path, "must not be empty"));
        }

        let where_ = get(entries, "where")
            .map(|w| self.condition(w, &join(path, "where")))
            .transpose()?;
        let until = get(entries, "until")
            .map(|u| self.condition(u, &join(path, "until")))
            .transpose()?;

        let contiguity = match get(entries, "contiguity") {
            Some(c) if first => {
                return Err(err(
                    c,
                    join(path, "contiguity"),
                    "not allowed on the first stage",
                ))
            }
            Some(c) => {
                let cpath = join(path, "contiguity");
                let s = text(c, &cpath)?;
                Some(match s {
                    "next" => Contiguity::Strict,
                    "followed_by" => Contiguity::SkipTillNext,
                    "followed_by_any" => Contiguity::SkipTillAny,
                    "not_next" => Contiguity::NotNext,
                    "not_followed_by" => Contiguity::NotFollow,
                    _ => {
                        return Err(err(
                            c,
                            cpath,
                            format!(
                                "unknown contiguity '{s}' (expected one of: {})",
                                CONTIGUITIES.join(", ")
                            ),
                        ))
                    }
                })
            }
            None if first => None,
            None => Some(Contiguity::SkipTillNext),
        };

        let times = match get(entries, "times") {
            None => None,
            Some(t) => {
                let tpath = join(path, "times");
                match &t.value {
                    RawValue::Seq(range) => {
                        if range.len() != 2 {
                            return Err(err(
                                t,
                                tpath,
                                format!(
                                    "a range is [from, to], found a list of {} element(s)",
                                    range.len()
                                ),
                            ));
                        }
                        let from = count(&range[0], &format!("{tpath}[0]"))?;
                        let to = count(&range[1], &format!("{tpath}[1]"))?;
                        Some(TimesSpec::Range { from, to })
                    }
                    _ => Some(TimesSpec::Exactly(count(t, &tpath)?)),
                }
            }
        };
        let times_or_more = get(entries, "times_or_more")
            .map(|t| count(t, &join(path, "times_or_more")))
            .transpose()?;

        let one_or_more = boolean(entries, "one_or_more", path)?;
        let optional = boolean(entries, "optional", path)?;
        let greedy = boolean(entries, "greedy", path)?;
        let consecutive = boolean(entries, "consecutive", path)?;
        let allow_combinations = boolean(entries, "allow_combinations", path)?;
        let within = match get(entries, "within") {
            None => None,
            Some(n) => {
                let wpath = join(path, "within");
                let w = duration(n, &wpath)?;
                if w <= 0 {
                    return Err(err(n, wpath, "must be positive, found 0"));
                }
                Some(millis(w))
            }
        };

        Ok(StageSpec {
            name,
            contiguity,
            where_,
            until,
            times,
            times_or_more,
            one_or_more,
            optional,
            greedy,
            consecutive,
            allow_combinations,
            within,
        })
    }

    /// Compiles a `where`/`until` expression; identical texts share one condition.
    fn condition(&mut self, node: &RawNode, path: &str) -> Result<CondRef, SpecError> {
        let src = text(node, path)?;
        let expr = Expr::parse(src, &mut self.fields).map_err(|e| {
            SpecError::new(SpecErrorKind::Expr {
                path: path.to_string(),
                text: src.to_string(),
                column: e.column,
                message: e.message.clone(),
            })
            .at(self.expr_location(node, src, e.column))
        })?;
        let index = match self.by_source.get(src) {
            Some(&i) => i,
            None => {
                let i = self.conditions.len();
                self.conditions.push(expr);
                self.by_source.insert(src.to_string(), i);
                i
            }
        };
        Ok(CondRef {
            index,
            source: src.to_string(),
        })
    }

    /// Where column `column` of expression `src` is in the spec text: exact for
    /// a single-line YAML scalar written plain or quoted without escapes, the
    /// scalar's position otherwise.
    fn expr_location(&self, node: &RawNode, src: &str, column: usize) -> Option<Location> {
        let loc = node.loc?;
        let Some((off, len)) = node.span else {
            return Some(loc);
        };
        let Some(written) = off.checked_add(len).and_then(|end| self.text.get(off..end)) else {
            return Some(loc);
        };
        let quoted = (written.starts_with('"') || written.starts_with('\''))
            && written.len() >= 2
            && written.get(1..written.len() - 1) == Some(src);
        let shift = if written == src {
            0
        } else if quoted {
            1
        } else {
            return Some(loc);
        };
        if src.contains('\n') {
            return Some(loc);
        }
        let col = loc.column + shift + (column as u64).saturating_sub(1);
        Some(Location {
            line: loc.line,
            column: col,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn skip_forms_follow_the_reference_regex() {
        assert_eq!(
            skip_with_stage("skip_to_first: b"),
            Some(("skip_to_first", "b"))
        );
        assert_eq!(
            skip_with_stage("skip_to_first:b"),
            Some(("skip_to_first", "b"))
        );
        assert_eq!(
            skip_with_stage("skip_to_last(b)"),
            Some(("skip_to_last", "b"))
        );
        assert_eq!(
            skip_with_stage("skip_to_last ( c* ) "),
            Some(("skip_to_last", "c*"))
        );
        assert_eq!(
            skip_with_stage("skip_to_last(b"),
            Some(("skip_to_last", "b"))
        );
        assert_eq!(
            skip_with_stage("skip_to_first: a or c"),
            Some(("skip_to_first", "a or c"))
        );
        assert_eq!(
            skip_with_stage("skip_to_first:"),
            Some(("skip_to_first", ""))
        );
        assert_eq!(
            skip_with_stage("skip_to_first()"),
            Some(("skip_to_first", ""))
        );
        assert_eq!(skip_with_stage("skip_to_first(a))"), None);
        assert_eq!(skip_with_stage("skip_to_first(a)b"), None);
        assert_eq!(skip_with_stage("skip_to_first"), None);
        assert_eq!(skip_with_stage("skip_to_first b"), None);
        assert_eq!(skip_with_stage("no_skip"), None);
    }

    #[test]
    fn suggestions_for_typos() {
        assert_eq!(suggest("contiguty", STAGE_FIELDS), Some("contiguity"));
        assert_eq!(
            suggest("allow-combinations", STAGE_FIELDS),
            Some("allow_combinations")
        );
        assert_eq!(suggest("wehre", STAGE_FIELDS), Some("where"));
        assert_eq!(suggest("zzzzzzzz", STAGE_FIELDS), None);
    }
}
