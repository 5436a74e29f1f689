//! Tests of spec reading, validation, pattern building and ingestion.
//!
//! Most specs are written once as a JSON value and run through both syntaxes
//! ([`both`], [`both_err`]), which must agree.

use std::path::PathBuf;
use std::time::Duration;

use serde_json::{json, Value};

use super::*;
use crate::pattern::{Condition, Context, QuantKind, StageBody, Times};

fn json_text(v: &Value) -> String {
    serde_json::to_string_pretty(v).unwrap()
}

fn yaml_text(v: &Value) -> String {
    serde_saphyr::to_string(v).unwrap()
}

/// Parses `v` as JSON and as YAML; both must succeed and agree.
fn both(v: Value) -> Spec {
    let j = Spec::from_str(&json_text(&v), Format::Json)
        .unwrap_or_else(|e| panic!("json: {e}\n{}", json_text(&v)));
    let y = Spec::from_str(&yaml_text(&v), Format::Yaml)
        .unwrap_or_else(|e| panic!("yaml: {e}\n{}", yaml_text(&v)));
    assert_eq!(format!("{j:?}"), format!("{y:?}"));
    j
}

/// Parses `v` as JSON and as YAML; both must fail with the same error kind.
fn both_err(v: Value) -> SpecErrorKind {
    let j = match Spec::from_str(&json_text(&v), Format::Json) {
        Ok(s) => panic!("json accepted: {s:?}\n{}", json_text(&v)),
        Err(e) => e,
    };
    let y = match Spec::from_str(&yaml_text(&v), Format::Yaml) {
        Ok(s) => panic!("yaml accepted: {s:?}\n{}", yaml_text(&v)),
        Err(e) => e,
    };
    assert_eq!(j.kind(), y.kind(), "json and yaml disagree");
    assert!(y.location().is_some(), "yaml errors have a location: {y}");
    j.kind().clone()
}

/// The field path and message of an `Invalid` error.
fn invalid(kind: SpecErrorKind) -> (String, String) {
    match kind {
        SpecErrorKind::Invalid { path, message } => (path, message),
        other => panic!("expected an invalid-field error, got {other:?}"),
    }
}

/// The field path and message of a `Pattern` error.
fn pattern_err(kind: SpecErrorKind) -> (String, String) {
    match kind {
        SpecErrorKind::Pattern { path, error } => (path, error.to_string()),
        other => panic!("expected a pattern error, got {other:?}"),
    }
}

/// A spec with the given stages (no other field).
fn stages(st: Value) -> Value {
    json!({ "stages": st })
}

/// Two stages `a`, `b` where `b` has the extra fields `extra`.
fn ab(extra: Value) -> Value {
    let mut b = json!({"name": "b", "where": "t == \"b\""});
    for (k, v) in extra.as_object().unwrap() {
        b[k] = v.clone();
    }
    stages(json!([{"name": "a", "where": "t == \"a\""}, b]))
}

struct NoCtx;
impl Context<JsonEvent> for NoCtx {
    fn events_for_pattern(&self, _: &str) -> Vec<&JsonEvent> {
        Vec::new()
    }
    fn timestamp(&self) -> i64 {
        0
    }
}

fn holds(c: &Condition<JsonEvent>, bits: &[bool]) -> bool {
    c.eval(&JsonEvent::from_parts("{}", bits), &NoCtx)
}

fn stage_condition(p: &Pattern<JsonEvent>, i: usize) -> Option<Condition<JsonEvent>> {
    match &p.stages[i].body {
        StageBody::Single { condition } => condition.clone(),
        StageBody::Group(_) => panic!("no groups in specs"),
    }
}

// ---------------------------------------------------------------- the whole contract

const FULL_YAML: &str = r#"
name: order-timeout            # optional label
key: order_id
time:
  field: ts
  max_out_of_orderness: 0s
within: 10m
skip: no_skip
stages:
  - name: create
    where: type == "create"
  - name: pay
    contiguity: next
    where: type == "pay"
"#;

#[test]
fn contract_example_yaml() {
    let s = Spec::from_str(FULL_YAML, Format::Yaml).unwrap();
    assert_eq!(s.name.as_deref(), Some("order-timeout"));
    assert_eq!(s.key, Some(vec!["order_id".to_string()]));
    assert_eq!(
        s.time,
        Some(TimeSpec {
            field: vec!["ts".to_string()],
            max_out_of_orderness: Duration::ZERO,
            order_by: Vec::new(),
        })
    );
    assert!(s.is_event_time());
    assert_eq!(s.within, Some(ms(600_000)));
    assert_eq!(s.skip, SkipStrategy::NoSkip);
    assert_eq!(s.stages.len(), 2);
    assert_eq!(s.stages[0].name, "create");
    assert_eq!(s.stages[0].contiguity, None);
    assert_eq!(s.stages[1].contiguity, Some(Contiguity::Strict));
    assert_eq!(
        s.stages[0].where_,
        Some(CondRef {
            index: 0,
            source: r#"type == "create""#.to_string()
        })
    );
    assert_eq!(s.stages[1].where_.as_ref().map(|c| c.index), Some(1));
    assert_eq!(s.condition_count(), 2);
    // Auto detection reads it as YAML too, and `str::parse` is Auto.
    let a: Spec = FULL_YAML.parse().unwrap();
    assert_eq!(format!("{a:?}"), format!("{s:?}"));
}

#[test]
fn contract_example_json_matches_yaml() {
    let v = json!({
        "name": "order-timeout",
        "key": "order_id",
        "time": {"field": "ts", "max_out_of_orderness": "0s"},
        "within": "10m",
        "skip": "no_skip",
        "stages": [
            {"name": "create", "where": "type == \"create\""},
            {"name": "pay", "contiguity": "next", "where": "type == \"pay\""}
        ]
    });
    let j = both(v.clone());
    let y = Spec::from_str(FULL_YAML, Format::Yaml).unwrap();
    assert_eq!(format!("{j:?}"), format!("{y:?}"));
    let auto = Spec::from_str(&json_text(&v), Format::Auto).unwrap();
    assert_eq!(format!("{auto:?}"), format!("{y:?}"));
}

#[test]
fn every_stage_field() {
    let s = both(stages(json!([
        {"name": "a"},
        {"name": "b", "contiguity": "followed_by_any", "where": "t == \"b\"",
         "times_or_more": 2, "optional": true, "consecutive": true, "until": "t == \"x\""},
        {"name": "c", "times": [1, 3], "greedy": true},
        {"name": "d", "times": 2, "allow_combinations": true},
        {"name": "e", "one_or_more": true, "greedy": false, "optional": false},
    ])));
    let b = &s.stages[1];
    assert_eq!(b.contiguity, Some(Contiguity::SkipTillAny));
    assert_eq!(b.times_or_more, Some(2));
    assert!(b.optional && b.consecutive && !b.greedy && !b.allow_combinations);
    assert_eq!(
        b.until.as_ref().map(|u| u.source.as_str()),
        Some("t == \"x\"")
    );
    assert_eq!(s.stages[2].times, Some(TimesSpec::Range { from: 1, to: 3 }));
    assert!(s.stages[2].greedy);
    assert_eq!(s.stages[3].times, Some(TimesSpec::Exactly(2)));
    assert!(s.stages[3].allow_combinations);
    assert!(s.stages[4].one_or_more && !s.stages[4].optional);
    assert_eq!(s.stages[0].where_, None);
    for st in &s.stages[1..] {
        if st.name != "b" {
            assert_eq!(st.contiguity, Some(Contiguity::SkipTillNext), "{}", st.name);
        }
    }
}

#[test]
fn optional_fields_absent_or_null() {
    let s = both(stages(json!([{"name": "only"}])));
    assert_eq!(s.name, None);
    assert_eq!(s.key, None);
    assert_eq!(s.time, None);
    assert!(!s.is_event_time());
    assert_eq!(s.within, None);
    assert_eq!(s.skip, SkipStrategy::NoSkip);
    // null is the same as absent (Jackson `has()`), also for contiguity on the first stage
    let n = both(json!({
        "name": null, "key": null, "time": null, "within": null, "skip": null,
        "stages": [{"name": "only", "contiguity": null, "where": null, "times": null,
                    "optional": null, "until": null}]
    }));
    assert_eq!(format!("{n:?}"), format!("{s:?}"));
}

#[test]
fn key_and_time_paths() {
    let s = both(json!({
        "key": "user.id",
        "time": {"field": "meta.at"},
        "stages": [{"name": "a"}]
    }));
    assert_eq!(s.key, Some(vec!["user".to_string(), "id".to_string()]));
    let t = s.time.unwrap();
    assert_eq!(t.field, vec!["meta".to_string(), "at".to_string()]);
    assert_eq!(t.max_out_of_orderness, Duration::ZERO);

    for bad in ["", "a..b", ".a", "a."] {
        let (path, msg) = invalid(both_err(json!({"key": bad, "stages": [{"name": "a"}]})));
        assert_eq!(path, "key");
        assert_eq!(msg, format!("bad field path '{bad}'"));
        let (path, _) = invalid(both_err(
            json!({"time": {"field": bad}, "stages": [{"name": "a"}]}),
        ));
        assert_eq!(path, "time.field");
    }
    let (path, msg) = invalid(both_err(json!({"key": 7, "stages": [{"name": "a"}]})));
    assert_eq!(
        (path.as_str(), msg.as_str()),
        ("key", "expected a string, found the number 7")
    );
    let (path, msg) = invalid(both_err(json!({"time": "ts", "stages": [{"name": "a"}]})));
    assert_eq!(path, "time");
    assert!(msg.contains("must be a mapping with 'field'"), "{msg}");
    let (path, msg) = invalid(both_err(
        json!({"time": {"max_out_of_orderness": 5}, "stages": [{"name": "a"}]}),
    ));
    assert_eq!(
        (path.as_str(), msg.as_str()),
        ("time", "'field' is required")
    );
    let (path, msg) = invalid(both_err(
        json!({"time": {"field": "ts", "ooo": 5}, "stages": [{"name": "a"}]}),
    ));
    assert_eq!(path, "time.ooo");
    assert!(msg.starts_with("unknown field 'ooo'"), "{msg}");
}

// ---------------------------------------------------------------- durations

#[test]
fn duration_forms() {
    let cases: &[(Value, u64)] = &[
        (json!("250ms"), 250),
        (json!("10s"), 10_000),
        (json!("10m"), 600_000),
        (json!("2h"), 7_200_000),
        (json!("1d"), 86_400_000),
        (json!(1500), 1500),
        (json!("1500"), 1500),
        (json!(" 10 s "), 10_000),
        (json!("0s"), 0),
        (json!(0), 0),
    ];
    for (d, n) in cases {
        let s = both(json!({
            "time": {"field": "ts", "max_out_of_orderness": d},
            "stages": [{"name": "a"}]
        }));
        assert_eq!(s.time.unwrap().max_out_of_orderness, ms(*n), "{d}");
        if *n > 0 {
            let s = both(json!({"within": d, "stages": [{"name": "a"}]}));
            assert_eq!(s.within, Some(ms(*n)), "{d}");
        }
    }
}

#[test]
fn bad_durations() {
    let bad = [
        json!("-5s"),
        json!(-5),
        json!("10y"),
        json!("1.5s"),
        json!(1.5),
        json!(true),
        json!(""),
        json!("s"),
        json!("0x10"),
        json!("10 s s"),
        json!("\u{0661}0s"), // Arabic-Indic digit one
        json!("10s\u{a0}"),  // no-break space: the reference's `\s` is ASCII
        json!("99999999999999999999ms"),
        json!("9999999999999999d"),
        json!([10]),
        json!({"s": 10}),
    ];
    for d in bad {
        let (path, msg) = invalid(both_err(json!({"within": d, "stages": [{"name": "a"}]})));
        assert_eq!(path, "within", "{d}");
        assert!(msg.starts_with("expected a duration"), "{d}: {msg}");
        let (path, _) = invalid(both_err(json!({
            "time": {"field": "ts", "max_out_of_orderness": d},
            "stages": [{"name": "a"}]
        })));
        assert_eq!(path, "time.max_out_of_orderness");
    }
    for zero in [json!(0), json!("0ms"), json!("0d")] {
        let (path, msg) = invalid(both_err(json!({"within": zero, "stages": [{"name": "a"}]})));
        assert_eq!(path, "within");
        assert!(msg.starts_with("must be positive"), "{msg}");
    }
}

// ---------------------------------------------------------------- skip strategies

#[test]
fn skip_strategies() {
    let st = json!([{"name": "a"}, {"name": "b c"}]);
    let cases: Vec<(Value, SkipStrategy)> = vec![
        (json!("no_skip"), SkipStrategy::NoSkip),
        (json!("skip_to_next"), SkipStrategy::SkipToNext),
        (
            json!("skip_past_last_event"),
            SkipStrategy::SkipPastLastEvent,
        ),
        (json!(" skip_to_next "), SkipStrategy::SkipToNext),
        (
            json!({"skip_to_first": "a"}),
            SkipStrategy::SkipToFirst("a".into()),
        ),
        (
            json!({"skip_to_last": "b c"}),
            SkipStrategy::SkipToLast("b c".into()),
        ),
        (
            json!("skip_to_first: a"),
            SkipStrategy::SkipToFirst("a".into()),
        ),
        (
            json!("skip_to_last(b c)"),
            SkipStrategy::SkipToLast("b c".into()),
        ),
        (
            json!("skip_to_last : b c "),
            SkipStrategy::SkipToLast("b c".into()),
        ),
    ];
    for (skip, want) in cases {
        let s = both(json!({"skip": skip, "stages": st}));
        assert_eq!(s.skip, want, "{skip}");
        assert_eq!(s.pattern().skip_strategy(), &want);
    }
}

#[test]
fn bad_skip_strategies() {
    let st = json!([{"name": "a"}, {"name": "b"}]);
    let cases: Vec<(Value, &str, &str)> = vec![
        (json!("skip_all"), "skip", "unknown strategy 'skip_all'"),
        (
            json!("SKIP_TO_NEXT"),
            "skip",
            "unknown strategy 'SKIP_TO_NEXT'",
        ),
        (
            json!("skip_to_first"),
            "skip",
            "skip_to_first needs a stage name",
        ),
        (
            json!("skip_to_last:"),
            "skip",
            "skip_to_last needs a stage name",
        ),
        (
            json!({"skip_to_first": ""}),
            "skip",
            "skip_to_first needs a stage name",
        ),
        (json!({"no_skip": "a"}), "skip", "no_skip takes no stage"),
        (
            json!({"skip_to_next": "a"}),
            "skip",
            "skip_to_next takes no stage",
        ),
        (
            json!({"skip_to_first": 1}),
            "skip.skip_to_first",
            "expected a string, found the number 1",
        ),
        (
            json!({"skip_to_first": null}),
            "skip.skip_to_first",
            "expected a string, found null",
        ),
        (
            json!({"skip_to_first": "zz"}),
            "skip",
            "no stage named 'zz'",
        ),
        (json!("skip_to_last(zz)"), "skip", "no stage named 'zz'"),
        (
            json!({"skip_to_first": "a", "skip_to_last": "b"}),
            "skip",
            "expected no_skip",
        ),
        (json!({}), "skip", "expected no_skip"),
        (json!(3), "skip", "expected no_skip"),
        (json!(["skip_to_next"]), "skip", "expected no_skip"),
    ];
    for (skip, want_path, want_msg) in cases {
        let (path, msg) = invalid(both_err(json!({"skip": skip, "stages": st})));
        assert_eq!(path, want_path, "{skip}");
        assert!(msg.starts_with(want_msg), "{skip}: {msg}");
    }
}

// ---------------------------------------------------------------- contiguity and quantifiers, on the Pattern

#[test]
fn each_contiguity_becomes_its_pattern_call() {
    let cases = [
        (None, Contiguity::SkipTillNext),
        (Some("next"), Contiguity::Strict),
        (Some("followed_by"), Contiguity::SkipTillNext),
        (Some("followed_by_any"), Contiguity::SkipTillAny),
        (Some("not_next"), Contiguity::NotNext),
        (Some("not_followed_by"), Contiguity::NotFollow),
    ];
    for (c, want) in cases {
        let mut b = json!({"name": "b"});
        if let Some(c) = c {
            b["contiguity"] = json!(c);
        }
        let s = both(json!({
            "within": "1s",
            "stages": [{"name": "a"}, b, {"name": "c"}]
        }));
        assert_eq!(s.stages[1].contiguity, Some(want));
        let p = s.pattern();
        assert_eq!(p.stages[0].quantifier.consuming, Contiguity::Strict);
        assert_eq!(p.stages[1].quantifier.consuming, want, "{c:?}");
        assert_eq!(p.stages[2].quantifier.consuming, Contiguity::SkipTillNext);
        assert_eq!(p.stage_names(), vec!["a", "b", "c"]);
        assert!(p.error.is_none());
    }
}

#[test]
fn contiguity_errors() {
    let (path, msg) = invalid(both_err(stages(json!([
        {"name": "a", "contiguity": "next"}, {"name": "b"}
    ]))));
    assert_eq!(path, "stages[0].contiguity");
    assert_eq!(msg, "not allowed on the first stage");
    // checked before the value itself, as the reference does
    let (path, _) = invalid(both_err(stages(json!([{"name": "a", "contiguity": 5}]))));
    assert_eq!(path, "stages[0].contiguity");

    let (path, msg) = invalid(both_err(ab(json!({"contiguity": "strict"}))));
    assert_eq!(path, "stages[1].contiguity");
    assert!(
        msg.starts_with("unknown contiguity 'strict' (expected one of: next, followed_by"),
        "{msg}"
    );
    let (path, msg) = invalid(both_err(ab(json!({"contiguity": true}))));
    assert_eq!(path, "stages[1].contiguity");
    assert_eq!(msg, "expected a string, found the boolean true");
}

#[test]
fn quantifiers_become_their_pattern_calls() {
    let s = both(stages(json!([
        {"name": "s"},
        {"name": "t3", "times": 3},
        {"name": "t13", "times": [1, 3], "consecutive": true},
        {"name": "t02", "times": [0, 2]},
        {"name": "om", "one_or_more": true, "optional": true, "allow_combinations": true,
         "until": "t == \"u\""},
        {"name": "m2", "times_or_more": 2, "greedy": true},
        {"name": "e"},
    ])));
    let p = s.pattern();
    assert!(p.error.is_none(), "{:?}", p.error);
    let q = |i: usize| &p.stages[i].quantifier;
    assert_eq!(q(0).kind, QuantKind::Single);
    assert_eq!(q(1).kind, QuantKind::Times);
    assert_eq!(
        p.stages[1].times,
        Some(Times {
            from: 3,
            to: 3,
            window: None
        })
    );
    assert_eq!(q(2).kind, QuantKind::Times);
    assert_eq!(
        p.stages[2].times,
        Some(Times {
            from: 1,
            to: 3,
            window: None
        })
    );
    assert_eq!(q(2).inner, Contiguity::Strict);
    // times(0, n) is times(1, n).optional() in Flink
    assert_eq!(
        p.stages[3].times,
        Some(Times {
            from: 1,
            to: 2,
            window: None
        })
    );
    assert!(q(3).optional);
    assert_eq!(q(4).kind, QuantKind::Looping);
    assert_eq!(
        p.stages[4].times,
        Some(Times {
            from: 1,
            to: 1,
            window: None
        })
    );
    assert!(q(4).optional && !q(4).greedy);
    assert_eq!(q(4).inner, Contiguity::SkipTillAny);
    assert!(p.stages[4].until.is_some());
    assert_eq!(q(5).kind, QuantKind::Looping);
    assert_eq!(
        p.stages[5].times,
        Some(Times {
            from: 2,
            to: 2,
            window: None
        })
    );
    assert!(q(5).greedy && !q(5).optional);
    assert!(p.stages[5].until.is_none());
    assert_eq!(q(6).kind, QuantKind::Single);
}

#[test]
fn within_goes_on_the_last_stage() {
    let s = both(json!({"within": "2s", "stages": [{"name": "a"}, {"name": "b"}]}));
    let p = s.pattern();
    assert_eq!(p.stages[0].window, None);
    assert_eq!(p.stages[1].window, Some(2000));
    let s = both(stages(json!([{"name": "a"}])));
    assert_eq!(s.pattern().stages[0].window, None);
}

#[test]
fn flink_rejections_name_the_field() {
    // (stage b's extra fields, failing field, message fragment)
    let cases: Vec<(Value, &str, &str)> = vec![
        (json!({"times": [3, 1]}), "stages[1].times", "times(3, 1)"),
        (json!({"times": [0, 0]}), "stages[1].times", "times(0, 0)"),
        (json!({"times": 0}), "stages[1].times", "positive number"),
        (
            json!({"times_or_more": 0}),
            "stages[1].times_or_more",
            "positive number",
        ),
        (
            json!({"times": 2, "one_or_more": true}),
            "stages[1].one_or_more",
            "already applied quantifier",
        ),
        (
            json!({"times": 2, "times_or_more": 2}),
            "stages[1].times_or_more",
            "already applied quantifier",
        ),
        (
            json!({"times_or_more": 2, "one_or_more": true}),
            "stages[1].one_or_more",
            "already applied quantifier",
        ),
        (
            json!({"times": [0, 2], "optional": true}),
            "stages[1].optional",
            "optional already applied",
        ),
        (json!({"greedy": true}), "stages[1].greedy", "singleton"),
        (
            json!({"consecutive": true}),
            "stages[1].consecutive",
            "single-event",
        ),
        (
            json!({"allow_combinations": true}),
            "stages[1].allow_combinations",
            "single-event",
        ),
        (json!({"until": "t == \"x\""}), "stages[1].until", "looping"),
        (
            json!({"times": 2, "until": "t == \"x\""}),
            "stages[1].until",
            "looping",
        ),
        (
            json!({"one_or_more": true, "consecutive": true, "allow_combinations": true}),
            "stages[1].allow_combinations",
            "either combinations or consecutive",
        ),
        (
            json!({"contiguity": "not_next", "times": 2}),
            "stages[1].times",
            "NOT pattern",
        ),
        (
            json!({"contiguity": "not_followed_by", "optional": true}),
            "stages[1].optional",
            "NOT pattern",
        ),
    ];
    for (extra, want_path, want_msg) in cases {
        let (path, msg) = pattern_err(both_err(ab(extra.clone())));
        assert_eq!(path, want_path, "{extra}");
        assert!(msg.contains(want_msg), "{extra}: {msg}");
    }
    // an optional stage right before a negation: reported at the negation's contiguity
    let (path, msg) = pattern_err(both_err(stages(json!([
        {"name": "a", "optional": true},
        {"name": "n", "contiguity": "not_next"},
        {"name": "c"}
    ]))));
    assert_eq!(path, "stages[1].contiguity");
    assert!(msg.contains("optional"), "{msg}");
    // the first failing call wins, in the reference's call order
    let (path, _) = pattern_err(both_err(ab(json!({"greedy": true, "until": "t == \"x\""}))));
    assert_eq!(path, "stages[1].greedy");
}

#[test]
fn accepted_combinations() {
    // accepted by Flink's Pattern API (some are refused later by the NFA compiler, in `compile`)
    for extra in [
        json!({"times": [0, 3]}),
        json!({"times": 2, "optional": true, "greedy": true}),
        json!({"one_or_more": true, "optional": true, "consecutive": true, "greedy": true,
               "until": "t == \"x\""}),
        json!({"times_or_more": 1, "allow_combinations": true, "until": "t == \"x\""}),
        json!({"contiguity": "not_next"}),
        json!({"contiguity": "followed_by_any", "times": 2, "allow_combinations": true}),
    ] {
        let s = both(ab(extra.clone()));
        assert!(s.pattern().error.is_none(), "{extra}");
    }
}

#[test]
fn counts_must_be_integers() {
    let cases: Vec<(Value, &str, &str)> = vec![
        (
            json!({"times": 1.5}),
            "stages[1].times",
            "expected an integer, found the number 1.5",
        ),
        (
            json!({"times": "3"}),
            "stages[1].times",
            "expected an integer, found the string '3'",
        ),
        (
            json!({"times": -1}),
            "stages[1].times",
            "expected a positive integer, found -1",
        ),
        (
            json!({"times": 4_294_967_296_i64}),
            "stages[1].times",
            "expected an integer",
        ),
        (
            json!({"times": 2_147_483_648_i64}),
            "stages[1].times",
            "expected an integer, found 2147483648, which is too large",
        ),
        (
            json!({"times": []}),
            "stages[1].times",
            "a range is [from, to], found a list of 0",
        ),
        (
            json!({"times": [1, 2, 3]}),
            "stages[1].times",
            "a range is [from, to], found a list of 3",
        ),
        (
            json!({"times": [1, "x"]}),
            "stages[1].times[1]",
            "expected an integer",
        ),
        (
            json!({"times": [-2, 1]}),
            "stages[1].times[0]",
            "expected a positive integer",
        ),
        (
            json!({"times": {"from": 1}}),
            "stages[1].times",
            "expected an integer, found a mapping",
        ),
        (
            json!({"times_or_more": true}),
            "stages[1].times_or_more",
            "expected an integer",
        ),
        (
            json!({"one_or_more": "true"}),
            "stages[1].one_or_more",
            "expected true or false, found the string 'true'",
        ),
        (
            json!({"optional": 1}),
            "stages[1].optional",
            "expected true or false",
        ),
        (
            json!({"greedy": []}),
            "stages[1].greedy",
            "expected true or false, found a list",
        ),
        (
            json!({"consecutive": "yes"}),
            "stages[1].consecutive",
            "expected true or false",
        ),
        (
            json!({"allow_combinations": 0}),
            "stages[1].allow_combinations",
            "expected true or false",
        ),
    ];
    for (extra, want_path, want_msg) in cases {
        let (path, msg) = invalid(both_err(ab(extra.clone())));
        assert_eq!(path, want_path, "{extra}");
        assert!(msg.starts_with(want_msg), "{extra}: {msg}");
    }
}

#[test]
fn yaml_scalars_are_typed_as_yaml_says() {
    // like Jackson's YAML reader: `yes`/`on` are booleans, `3` a number, `"3"` a string
    let s = Spec::from_str(
        "stages:\n  - name: a\n  - name: b\n    one_or_more: yes\n    optional: on\n    greedy: True\n",
        Format::Yaml,
    )
    .unwrap();
    assert!(s.stages[1].one_or_more && s.stages[1].optional && s.stages[1].greedy);
    let e = Spec::from_str("stages:\n  - name: 1\n", Format::Yaml).unwrap_err();
    assert_eq!(e.path(), Some("stages[0].name"));
    assert!(
        e.to_string()
            .contains("expected a string, found the number 1"),
        "{e}"
    );
    let s = Spec::from_str("stages:\n  - name: \"1\"\n", Format::Yaml).unwrap();
    assert_eq!(s.stages[0].name, "1");
    let e = Spec::from_str("stages:\n  - name: a\n    where: true\n", Format::Yaml).unwrap_err();
    assert_eq!(e.path(), Some("stages[0].where"));
}

// ---------------------------------------------------------------- structure errors

#[test]
fn unknown_fields_are_refused_with_their_path() {
    let (path, msg) = invalid(both_err(json!({"stages": [{"name": "a"}], "windw": "1s"})));
    assert_eq!(path, "windw");
    assert!(
        msg.starts_with(
            "unknown field 'windw' (expected one of: name, key, time, within, skip, stages)"
        ),
        "{msg}"
    );
    let (path, msg) = invalid(both_err(stages(json!([
        {"name": "a"}, {"name": "b", "contiguty": "next"}
    ]))));
    assert_eq!(path, "stages[1].contiguty");
    assert!(msg.ends_with("did you mean 'contiguity'?"), "{msg}");
    let (path, _) = invalid(both_err(stages(json!([{"name": "a", "windw": "1s"}]))));
    assert_eq!(path, "stages[0].windw");
}

#[test]
fn unknown_fields_are_checked_first() {
    // as `allowOnly` runs before anything else in the reference
    let (path, _) = invalid(both_err(json!({"stages": [], "bad": 1})));
    assert_eq!(path, "bad");
    let (path, _) = invalid(both_err(stages(json!([{"bad": 1}]))));
    assert_eq!(path, "stages[0].bad");
}

#[test]
fn stage_list_and_names() {
    for st in [json!(null), json!([]), json!("a"), json!({"name": "a"})] {
        let (path, msg) = invalid(both_err(json!({"stages": st})));
        assert_eq!(path, "stages");
        assert_eq!(msg, "a non-empty list of stages is required");
    }
    let (path, msg) = invalid(both_err(json!({"name": "x"})));
    assert_eq!(
        (path.as_str(), msg.as_str()),
        ("stages", "a non-empty list of stages is required")
    );

    let (path, msg) = invalid(both_err(stages(json!([{"name": "a"}, "b"]))));
    assert_eq!(path, "stages[1]");
    assert!(msg.starts_with("a stage must be a mapping"), "{msg}");
    let (path, msg) = invalid(both_err(stages(json!([{"where": "t == \"a\""}]))));
    assert_eq!(
        (path.as_str(), msg.as_str()),
        ("stages[0]", "'name' is required")
    );
    let (path, msg) = invalid(both_err(stages(json!([{"name": null}]))));
    assert_eq!(
        (path.as_str(), msg.as_str()),
        ("stages[0]", "'name' is required")
    );
    let (path, msg) = invalid(both_err(stages(json!([{"name": ""}]))));
    assert_eq!(
        (path.as_str(), msg.as_str()),
        ("stages[0].name", "must not be empty")
    );
    let (path, msg) = invalid(both_err(stages(json!([{"name": ["a"]}]))));
    assert_eq!(
        (path.as_str(), msg.as_str()),
        ("stages[0].name", "expected a string, found a list")
    );

    let (path, msg) = invalid(both_err(stages(json!([
        {"name": "a"}, {"name": "b"}, {"name": "a"}
    ]))));
    assert_eq!(path, "stages[2].name");
    assert_eq!(msg, "duplicate stage name 'a'");
    // names are free text otherwise
    let s = both(stages(
        json!([{"name": "a or c"}, {"name": "c*"}, {"name": " "}]),
    ));
    assert_eq!(s.pattern().stage_names(), vec!["a or c", "c*", " "]);

    let (path, msg) = invalid(both_err(json!({"name": 5, "stages": [{"name": "a"}]})));
    assert_eq!(
        (path.as_str(), msg.as_str()),
        ("name", "expected a string, found the number 5")
    );
}

#[test]
fn the_spec_must_be_a_mapping() {
    for (text, format) in [
        ("[1, 2]", Format::Json),
        ("\"x\"", Format::Json),
        ("- a\n- b\n", Format::Yaml),
        ("just text\n", Format::Yaml),
        ("~\n", Format::Yaml),
    ] {
        let e = Spec::from_str(text, format).unwrap_err();
        let (path, msg) = invalid(e.kind().clone());
        assert_eq!(path, "", "{text}");
        assert!(
            msg.starts_with("the spec must be a mapping"),
            "{text}: {msg}"
        );
        assert_eq!(e.path(), None);
    }
    assert!(Spec::from_str("", Format::Yaml).is_err());
    assert!(Spec::from_str("", Format::Json).is_err());
    assert!(Spec::from_str("   \n", Format::Auto).is_err());
}

// ---------------------------------------------------------------- expressions

#[test]
fn conditions_are_bits_of_the_event() {
    let s = both(stages(json!([
        {"name": "a", "where": "t == \"a\""},
        {"name": "b", "where": "t == \"b\"", "one_or_more": true, "until": "t == \"a\""},
        {"name": "c"},
        {"name": "d", "where": "t == \"b\""},
    ])));
    // identical texts share one bit
    assert_eq!(s.condition_count(), 2);
    assert_eq!(s.stages[1].until.as_ref().unwrap().index, 0);
    assert_eq!(s.stages[3].where_.as_ref().unwrap().index, 1);

    let p = s.pattern();
    let a = stage_condition(&p, 0).unwrap();
    assert!(holds(&a, &[true, false]));
    assert!(!holds(&a, &[false, true]));
    let b = stage_condition(&p, 1).unwrap();
    assert!(holds(&b, &[false, true]) && !holds(&b, &[true, false]));
    let until = p.stages[1].until.clone().unwrap();
    assert!(holds(&until, &[true, false]));
    // no `where`: no condition at all (Flink's "true")
    assert!(stage_condition(&p, 2).is_none());
}

/// The expression parser's own error for `src`.
fn expr_error(src: &str) -> crate::expr::ExprError {
    match crate::expr::Expr::parse(src, &mut crate::expr::Fields::new()) {
        Ok(_) => panic!("'{src}' should not parse"),
        Err(e) => e,
    }
}

#[test]
fn bad_expression_names_field_column_and_text() {
    let bad = "t = \"a\"";
    let want = expr_error(bad);
    let kind = both_err(ab(json!({"until": bad, "one_or_more": true})));
    match kind {
        SpecErrorKind::Expr {
            path,
            text,
            column,
            message,
        } => {
            assert_eq!(path, "stages[1].until");
            assert_eq!(text, bad);
            assert_eq!(column, want.column);
            assert_eq!(message, want.message);
        }
        other => panic!("{other:?}"),
    }
    let e = Spec::from_str(&json_text(&ab(json!({"where": bad}))), Format::Json).unwrap_err();
    let shown = e.to_string();
    assert!(
        shown.starts_with(&format!(
            "stages[1].where: expression '{bad}' at column {}: ",
            want.column
        )),
        "{shown}"
    );
}

#[test]
fn yaml_expression_errors_point_into_the_file() {
    let bad = "t = \"a\"";
    let col = expr_error(bad).column as u64;
    // plain scalar: `    where: ` is 11 characters
    let text = format!("stages:\n  - name: a\n    where: {bad}\n");
    let e = Spec::from_str(&text, Format::Yaml).unwrap_err();
    assert_eq!(
        e.location(),
        Some(Location {
            line: 3,
            column: 11 + col
        })
    );
    assert!(
        e.to_string()
            .starts_with(&format!("line 3, column {}: stages[0].where: ", 11 + col)),
        "{e}"
    );
    // single-quoted: one more for the quote
    let text = format!("stages:\n  - name: a\n    where: '{bad}'\n");
    let e = Spec::from_str(&text, Format::Yaml).unwrap_err();
    assert_eq!(
        e.location(),
        Some(Location {
            line: 3,
            column: 12 + col
        })
    );
    // folded block: the scalar's own position
    let text = format!("stages:\n  - name: a\n    where: >\n      {bad}\n");
    let e = Spec::from_str(&text, Format::Yaml).unwrap_err();
    assert_eq!(e.path(), Some("stages[0].where"));
    assert!(e.location().is_some());
    // expression that is not a string
    let e = Spec::from_str("stages:\n  - name: a\n    where: [1]\n", Format::Yaml).unwrap_err();
    assert_eq!(e.path(), Some("stages[0].where"));
    assert_eq!(e.location().map(|l| l.line), Some(3));
}

// ---------------------------------------------------------------- syntax errors, files

#[test]
fn yaml_syntax_errors_have_line_and_column() {
    let e = Spec::from_str("stages:\n  - name: a\n   bad: [1, 2\n", Format::Yaml).unwrap_err();
    assert!(
        matches!(
            e.kind(),
            SpecErrorKind::Syntax {
                syntax: Syntax::Yaml,
                ..
            }
        ),
        "{e:?}"
    );
    let loc = e.location().expect("a location");
    assert!(loc.line >= 2, "{loc:?}");
    let shown = e.to_string();
    assert!(shown.starts_with("line "), "{shown}");
    assert!(shown.contains("invalid yaml: "), "{shown}");
    assert!(!shown.contains('\n'), "one line: {shown}");
}

#[test]
fn json_syntax_errors_have_line_and_column() {
    let e = Spec::from_str(
        "{\n  \"stages\": [\n    {\"name\": \"a\",}\n  ]\n}",
        Format::Json,
    )
    .unwrap_err();
    assert_eq!(
        e.location(),
        Some(Location {
            line: 3,
            column: 18
        })
    );
    match &e.kind() {
        SpecErrorKind::Syntax { syntax, message } => {
            assert_eq!(*syntax, Syntax::Json);
            assert!(!message.contains("line"), "{message}");
        }
        other => panic!("{other:?}"),
    }
    assert!(
        e.to_string()
            .starts_with("line 3, column 18: invalid json: "),
        "{e}"
    );
    // trailing garbage is an error as in the reference (FAIL_ON_TRAILING_TOKENS)
    assert!(Spec::from_str("{\"stages\": [{\"name\": \"a\"}]} x", Format::Json).is_err());
}

#[test]
fn yaml_validation_errors_have_line_and_column() {
    let text = "within: 10m\nstages:\n  - name: a\n  - name: b\n    contiguity: nxt\n";
    let e = Spec::from_str(text, Format::Yaml).unwrap_err();
    assert_eq!(
        e.location(),
        Some(Location {
            line: 5,
            column: 17
        })
    );
    assert_eq!(e.path(), Some("stages[1].contiguity"));
    assert_eq!(
        e.to_string(),
        "line 5, column 17: stages[1].contiguity: unknown contiguity 'nxt' (expected one of: \
         next, followed_by, followed_by_any, not_next, not_followed_by)"
    );
}

#[test]
fn duplicate_keys_keep_the_last_value() {
    // Jackson's tree model, which the reference reads specs with, does the same
    let s = Spec::from_str(
        r#"{"within": "1s", "within": "2s", "stages": [{"name": "a"}]}"#,
        Format::Json,
    )
    .unwrap();
    assert_eq!(s.within, Some(ms(2000)));
    let s = Spec::from_str(
        "within: 1s\nwithin: 2s\nstages:\n  - name: a\n",
        Format::Yaml,
    )
    .unwrap();
    assert_eq!(s.within, Some(ms(2000)));
}

fn temp_file(name: &str, text: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("ferrocep-spec-tests-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

#[test]
fn from_path_reads_by_extension_and_names_the_file() {
    let p = temp_file("ok.yaml", FULL_YAML);
    let s = Spec::from_path(&p).unwrap();
    assert_eq!(s.file(), Some(p.as_path()));
    assert_eq!(s.stages.len(), 2);

    let p = temp_file("ok.json", r#"{"stages": [{"name": "a"}]}"#);
    assert_eq!(Spec::from_path(&p).unwrap().stages[0].name, "a");
    // no telling extension: by content
    let p = temp_file("spec.txt", "\u{feff}  {\"stages\": [{\"name\": \"a\"}]}");
    assert_eq!(Spec::from_path(&p).unwrap().stages[0].name, "a");
    let p = temp_file("spec", "stages:\n  - name: a\n");
    assert_eq!(Spec::from_path(&p).unwrap().stages[0].name, "a");

    let p = temp_file("bad.yaml", "stages:\n  - name: a\n    times: [3, 1]\n");
    let e = Spec::from_path(&p).unwrap_err();
    assert_eq!(e.file(), Some(p.as_path()));
    assert_eq!(e.path(), Some("stages[0].times"));
    // Flink's Pattern errors point at the field whose call failed
    assert!(
        e.to_string()
            .starts_with(&format!("{}:3:12: stages[0].times: ", p.display())),
        "{e}"
    );

    let p = temp_file("bad2.yml", "stages:\n  - name: a\n    optional: maybe\n");
    let e = Spec::from_path(&p).unwrap_err();
    assert!(
        e.to_string()
            .starts_with(&format!("{}:3:15: stages[0].optional: ", p.display())),
        "{e}"
    );
    // a .json file is JSON, even if it would be valid YAML
    let p = temp_file("yaml-in.json", "stages:\n  - name: a\n");
    let e = Spec::from_path(&p).unwrap_err();
    assert!(matches!(
        e.kind(),
        SpecErrorKind::Syntax {
            syntax: Syntax::Json,
            ..
        }
    ));
    assert_eq!(e.file(), Some(p.as_path()));
    assert!(e.location().is_some());

    let missing = p.with_file_name("does-not-exist.yaml");
    let e = Spec::from_path(&missing).unwrap_err();
    assert!(matches!(e.kind(), SpecErrorKind::Io { .. }));
    assert!(
        e.to_string().starts_with(&missing.display().to_string()),
        "{e}"
    );
}

#[test]
fn auto_reads_yaml_flow_mappings() {
    let s = Spec::from_str("{stages: [{name: a, times: 2}], within: 1s}", Format::Auto).unwrap();
    assert_eq!(s.stages[0].times, Some(TimesSpec::Exactly(2)));
    // neither JSON nor YAML: the JSON error, as it looked like JSON
    let e = Spec::from_str("{\"stages\": [}", Format::Auto).unwrap_err();
    assert!(
        matches!(
            e.kind(),
            SpecErrorKind::Syntax {
                syntax: Syntax::Json,
                ..
            }
        ),
        "{e}"
    );
    assert!(Spec::from_str("{stages: [{name: a}]}", Format::Json).is_err());
}

#[test]
fn format_from_path() {
    use std::path::Path;
    assert_eq!(Format::from_path(Path::new("a.json")), Format::Json);
    assert_eq!(Format::from_path(Path::new("a.JSON")), Format::Json);
    assert_eq!(Format::from_path(Path::new("a.yaml")), Format::Yaml);
    assert_eq!(Format::from_path(Path::new("a.yml")), Format::Yaml);
    assert_eq!(Format::from_path(Path::new("a.spec")), Format::Auto);
    assert_eq!(Format::from_path(Path::new("a")), Format::Auto);
}

// ---------------------------------------------------------------- compile

#[test]
fn compile_builds_the_nfa() {
    let s = Spec::from_str(FULL_YAML, Format::Yaml).unwrap();
    let nfa = s.compile().unwrap();
    assert_eq!(nfa.window(), Some(600_000));
}

#[test]
fn compile_errors_are_spec_errors() {
    // accepted by the Pattern API, refused by Flink's NFA compiler
    let p = temp_file(
        "nfb-last.yaml",
        "stages:\n  - name: a\n  - name: b\n    contiguity: not_followed_by\n",
    );
    let s = Spec::from_path(&p).unwrap();
    let e = s
        .compile()
        .err()
        .expect("not_followed_by last needs within");
    assert!(matches!(e.kind(), SpecErrorKind::Pattern { .. }), "{e:?}");
    assert_eq!(e.path(), None);
    assert_eq!(e.file(), Some(p.as_path()));
    assert!(
        e.to_string().starts_with(&format!("{}: ", p.display())),
        "{e}"
    );
}

// ---------------------------------------------------------------- ingest

#[test]
fn ingest_evaluates_every_condition_once() {
    let s = Spec::from_str(
        r#"{"key": "k", "time": {"field": "ts"},
            "stages": [{"name": "a", "where": "t == \"a\""},
                       {"name": "b", "where": "t == \"b\""}]}"#,
        Format::Json,
    )
    .unwrap();
    let i = s
        .ingest("  {\"k\": \"o-1\", \"ts\": 5, \"t\": \"b\"}\r\n")
        .unwrap();
    assert_eq!(i.key.as_deref(), Some("\"o-1\""));
    assert_eq!(i.timestamp, Some(Timestamp::from_millis(5)));
    assert_eq!(i.event.raw(), "{\"k\": \"o-1\", \"ts\": 5, \"t\": \"b\"}");
    assert!(!i.event.cond(0) && i.event.cond(1));
    let mut scratch = Vec::new();
    for t in ["a", "b", "c"] {
        let line = format!("{{\"k\": 7, \"ts\": 9, \"t\": \"{t}\"}}");
        let i = s.ingest_with(&line, &mut scratch).unwrap();
        assert_eq!(i.key.as_deref(), Some("7"));
        assert_eq!((i.event.cond(0), i.event.cond(1)), (t == "a", t == "b"));
        assert!(scratch.is_empty());
    }
    assert!(s.ingest("not json").is_err());
    assert!(s.ingest("[1]").is_err());
    assert!(s.ingest("{\"ts\": 5, \"t\": \"b\"}").is_err(), "no key");
    assert!(s.ingest("{\"k\": 1, \"t\": \"b\"}").is_err(), "no time");
}

#[test]
fn ingest_without_key_or_time() {
    let s = Spec::from_str(
        "stages:\n  - name: a\n    where: t == \"a\"\n",
        Format::Yaml,
    )
    .unwrap();
    let i = s.ingest("{\"t\": \"a\", \"k\": 1}").unwrap();
    assert_eq!(i.key, None);
    assert_eq!(i.timestamp, None);
    assert!(i.event.cond(0));
}

// ---------------------------------------------------------------- reference specs

/// Every spec of the conformance cases (vendored in the repository's
/// `conformance/cases/`) is accepted and compiles (they all ran on Flink).
#[test]
fn conformance_case_specs_are_accepted() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../conformance/cases");
    let folders =
        std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()));
    let mut n = 0;
    for folder in folders.flatten() {
        let Ok(files) = std::fs::read_dir(folder.path()) else {
            continue;
        };
        for f in files.flatten() {
            let path = f.path();
            if path.extension().and_then(|e| e.to_str()) != Some("json") {
                continue;
            }
            let case: Value =
                serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
            let spec = &case["spec"];
            let s = Spec::from_str(&json_text(spec), Format::Json)
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            let y = Spec::from_str(&yaml_text(spec), Format::Yaml)
                .unwrap_or_else(|e| panic!("{} as yaml: {e}", path.display()));
            assert_eq!(format!("{s:?}"), format!("{y:?}"), "{}", path.display());
            if let Err(e) = s.compile() {
                panic!("{}: {e}", path.display());
            }
            n += 1;
        }
    }
    assert!(n > 100, "only {n} cases");
}

// ---------------------------------------------------------------- robustness

#[test]
fn deep_nesting_is_an_error_not_a_stack_overflow() {
    let n = 100_000;
    let texts = [
        ("[".repeat(n), Format::Json),
        (format!("{}1{}", "[".repeat(n), "]".repeat(n)), Format::Json),
        ("{\"a\":".repeat(n), Format::Json),
        ("[".repeat(n), Format::Yaml),
        ("{a: ".repeat(n), Format::Yaml),
        (
            (0..2000)
                .map(|i| format!("{}- x\n", " ".repeat(i * 2)))
                .collect(),
            Format::Yaml,
        ),
        (
            format!(
                "stages:\n  - name: a\n    where: \"{}t == 1{}\"\n",
                "(".repeat(n),
                ")".repeat(n)
            ),
            Format::Yaml,
        ),
    ];
    for (text, format) in texts {
        assert!(Spec::from_str(&text, format).is_err());
    }
}

#[test]
fn specs_can_be_cloned_and_shared() {
    fn shareable<T: Send + Sync + Clone>() {}
    shareable::<Spec>();
    shareable::<JsonEvent>();
    let s = Spec::from_str(FULL_YAML, Format::Yaml).unwrap();
    let c = s.clone();
    assert_eq!(format!("{c:?}"), format!("{s:?}"));
    let line = r#"{"order_id": "o-1", "ts": 1, "type": "pay"}"#;
    assert!(c.ingest(line).unwrap().event.cond(1));
}

mod prop {
    use super::*;
    use proptest::prelude::*;

    const WORDS: &[&str] = &[
        "name",
        "key",
        "time",
        "field",
        "within",
        "skip",
        "stages",
        "where",
        "until",
        "contiguity",
        "times",
        "times_or_more",
        "one_or_more",
        "optional",
        "greedy",
        "consecutive",
        "allow_combinations",
        "next",
        "not_next",
        "skip_to_first:",
        "10s",
        "-",
        ":",
        "{",
        "}",
        "[",
        "]",
        ",",
        "\"",
        "'",
        "\n",
        "  ",
        "- name: a",
        "&a",
        "*a",
        "!!str",
        "~",
        "null",
        "true",
        "1",
        "-1",
        "[3, 1]",
        "t == \"a\"",
        "#",
        "|",
        ">",
        "---",
        "\t",
        "\u{feff}",
        "é",
    ];

    fn spec_like() -> impl Strategy<Value = String> {
        proptest::collection::vec(proptest::sample::select(WORDS), 0..40).prop_map(|w| w.concat())
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        #[test]
        fn arbitrary_text_never_panics(text in any::<String>()) {
            for f in [Format::Yaml, Format::Json, Format::Auto] {
                let _ = Spec::from_str(&text, f);
            }
        }

        #[test]
        fn spec_like_text_never_panics(text in spec_like()) {
            for f in [Format::Yaml, Format::Json, Format::Auto] {
                match Spec::from_str(&text, f) {
                    Ok(s) => {
                        let _ = s.pattern();
                        let _ = format!("{s:?}");
                    }
                    Err(e) => {
                        let _ = e.to_string();
                    }
                }
            }
        }

        #[test]
        fn arbitrary_field_values_never_panic(
            field in proptest::sample::select(&["within", "skip", "times", "name", "where",
                                                 "contiguity", "times_or_more", "key"][..]),
            value in proptest::arbitrary::any::<String>(),
            number in any::<i64>(),
        ) {
            let mut map = serde_json::Map::new();
            map.insert(value.clone(), json!(number));
            for v in [json!(value), json!(number), json!([number, number]), Value::Object(map)] {
                let spec = if ["within", "skip", "key"].contains(&field) {
                    json!({field: v, "stages": [{"name": "a"}, {"name": "b"}]})
                } else {
                    ab(json!({field: v}))
                };
                let _ = Spec::from_str(&json_text(&spec), Format::Json);
                let _ = Spec::from_str(&yaml_text(&spec), Format::Yaml);
            }
        }
    }
}

// ---------------------------------------------------------------- extensions: stage within, throw on miss, order_by

#[test]
fn stage_within_and_throw_exception_on_miss() {
    let s = both(json!({
        "time": {"field": "ts"},
        "within": "10s",
        "skip": {"skip_to_first": "b", "throw_exception_on_miss": true},
        "stages": [
            {"name": "a"},
            {"name": "b", "within": "2s", "optional": true},
            {"name": "c", "within": 500}
        ]
    }));
    assert_eq!(s.within, Some(ms(10_000)));
    let w: Vec<Option<Duration>> = s.stages.iter().map(|st| st.within).collect();
    assert_eq!(w, [None, Some(ms(2_000)), Some(ms(500))]);
    assert_eq!(s.skip, SkipStrategy::SkipToFirst("b".into()));
    assert!(s.skip_throw);
    s.compile().expect("compiles");
    // `false` and absent are alike; the map keeps its strategy.
    for extra in [json!({"throw_exception_on_miss": false}), json!({})] {
        let mut skip = json!({"skip_to_last": "a"});
        skip.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        let s = both(json!({"skip": skip, "stages": [{"name": "a"}, {"name": "b"}]}));
        assert_eq!(s.skip, SkipStrategy::SkipToLast("a".into()));
        assert!(!s.skip_throw);
    }
}

#[test]
fn bad_stage_within_and_throw_exception_on_miss() {
    let ab = |b: Value| json!({"stages": [{"name": "a"}, b]});
    let (path, msg) = invalid(both_err(ab(json!({"name": "b", "within": 0}))));
    assert_eq!(
        (path.as_str(), msg.as_str()),
        ("stages[1].within", "must be positive, found 0")
    );
    let (path, msg) = invalid(both_err(ab(json!({"name": "b", "within": "soon"}))));
    assert_eq!(path, "stages[1].within");
    assert!(msg.starts_with("expected a duration"), "{msg}");
    let skip = |skip: Value| json!({"skip": skip, "stages": [{"name": "a"}, {"name": "b"}]});
    let (path, msg) = invalid(both_err(skip(
        json!({"skip_to_first": "b", "throw_exception_on_miss": "yes"}),
    )));
    assert_eq!(
        (path.as_str(), msg.as_str()),
        (
            "skip.throw_exception_on_miss",
            "expected true or false, found the string 'yes'"
        )
    );
    let (path, msg) = invalid(both_err(skip(json!({"throw_exception_on_miss": true}))));
    assert_eq!(
        (path.as_str(), msg.as_str()),
        ("skip", "expected a strategy beside throw_exception_on_miss")
    );
}

#[test]
fn order_by_fields() {
    let s = both(json!({
        "time": {"field": "ts", "order_by": ["prio", "who.name"]},
        "stages": [{"name": "a"}]
    }));
    let t = s.time.as_ref().unwrap();
    assert_eq!(
        t.order_by,
        [vec!["prio".to_string()], vec!["who".into(), "name".into()]]
    );
    assert!(s.event_comparator().is_some());
    // One field may be written without the list.
    let s = both(json!({"time": {"field": "ts", "order_by": "prio"}, "stages": [{"name": "a"}]}));
    assert_eq!(s.time.unwrap().order_by, [vec!["prio".to_string()]]);
    let s = both(json!({"time": {"field": "ts", "order_by": null}, "stages": [{"name": "a"}]}));
    assert!(s.time.as_ref().unwrap().order_by.is_empty());
    assert!(s.event_comparator().is_none());
}

#[test]
fn bad_order_by() {
    let cases: Vec<(Value, &str, &str)> = vec![
        (
            json!([]),
            "time.order_by",
            "must name at least one field (or be left out)",
        ),
        (
            json!(["a", 1]),
            "time.order_by[1]",
            "expected a string, found the number 1",
        ),
        (json!("a..b"), "time.order_by", "bad field path 'a..b'"),
        (json!(["ok", ""]), "time.order_by[1]", "bad field path ''"),
        (
            json!(5),
            "time.order_by",
            "expected a field path or a list of them, found the number 5",
        ),
    ];
    for (order_by, want_path, want_msg) in cases {
        let (path, msg) = invalid(both_err(json!({
            "time": {"field": "ts", "order_by": order_by},
            "stages": [{"name": "a"}]
        })));
        assert_eq!(
            (path.as_str(), msg.as_str()),
            (want_path, want_msg),
            "{order_by}"
        );
    }
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}
