//! Event line tests; expected results are the oracle's (JsonLineSource + Jackson 2.20).

use super::*;
use proptest::prelude::*;

fn p(s: &str) -> Vec<String> {
    s.split('.').map(str::to_string).collect()
}

fn extractor(fields: &[&str], key: Option<&str>, time: Option<&str>) -> Extractor {
    let mut f = Fields::new();
    for x in fields {
        f.slot(&p(x));
    }
    Extractor::new(&f, key.map(p), time.map(p))
}

/// Key text and timestamp, or the error reason.
fn kt(x: &Extractor, line: &str) -> Result<(Option<String>, Option<i64>), String> {
    let mut vals = Vec::new();
    x.extract(line, &mut vals)
        .map(|e| (e.key.map(|k| k.into_owned()), e.timestamp))
        .map_err(|e| e.to_string())
}

fn ts(line_ts: &str) -> Result<Option<i64>, String> {
    let x = extractor(&[], None, Some("ts"));
    kt(&x, &format!("{{\"ts\":{line_ts}}}")).map(|r| r.1)
}

fn key(k: &str) -> Result<Option<String>, String> {
    let x = extractor(&[], Some("k"), None);
    kt(&x, &format!("{{\"k\":{k}}}")).map(|r| r.0)
}

#[test]
fn bad_lines_case() {
    // conformance/cases/edges/bad-lines.json
    let x = extractor(&["type"], Some("k"), Some("ts"));
    let lines = [
        (r#"{"k":"a","type":"create","ts":1700000000000}"#, Ok((Some("\"a\"".to_string()), Some(1_700_000_000_000)))),
        (r#""not an object""#, Err("not a JSON object".to_string())),
        ("[1,2]", Err("not a JSON object".to_string())),
        (r#"{"type":"pay","ts":1700000000002}"#, Err("missing key field 'k'".to_string())),
        (r#"{"k":"a","type":"pay"}"#, Err("missing time field 'ts'".to_string())),
        (
            r#"{"k":"a","type":"pay","ts":"yesterday"}"#,
            Err("time field 'ts' is neither integer epoch milliseconds nor an RFC 3339 string: \"yesterday\"".to_string()),
        ),
        (r#"{"k":null,"type":"pay","ts":1700000000003}"#, Err("missing key field 'k'".to_string())),
        (
            r#"{"k":"a","type":"pay","ts":2.5}"#,
            Err("time field 'ts' is neither integer epoch milliseconds nor an RFC 3339 string: 2.5".to_string()),
        ),
        (r#"{"k":"a","type":"pay","ts":1700000000004}"#, Ok((Some("\"a\"".to_string()), Some(1_700_000_000_004)))),
    ];
    for (line, want) in lines {
        assert_eq!(kt(&x, line), want, "{line}");
    }
}

#[test]
fn line_level_errors() {
    let x = extractor(&["a"], None, None);
    assert_eq!(kt(&x, ""), Err("empty line".into()));
    assert_eq!(kt(&x, " \t\u{1}"), Err("empty line".into()));
    assert_eq!(kt(&x, "null"), Err("not a JSON object".into()));
    assert_eq!(kt(&x, "1"), Err("not a JSON object".into()));
    assert_eq!(kt(&x, " {\"a\":1}\u{1}\r"), Ok((None, None)));
    for bad in [
        "{",
        "{\"a\":1",
        "{\"a\":1}}",
        "{\"a\":1}x",
        "{\"a\":1}{}",
        "[1,2",
        "\"x",
        "{'a':1}",
        "{\"a\":01}",
        "{\"a\":\"\\x\"}",
        "\u{feff}{}",
        "{\"a\":1}\u{a0}",
        "nul",
        "1 2",
        "{\"a\":{\"b\":}",
        "{\"a\":{\"b\":1,}}",
    ] {
        let r = kt(&x, bad);
        assert!(
            matches!(&r, Err(m) if m.starts_with("invalid JSON: ")),
            "{bad:?}: {r:?}"
        );
    }
}

#[test]
fn keys_as_the_oracle_writes_them() {
    let cases = [
        ("1", "1"),
        ("-0", "0"),
        ("1.0", "1.0"),
        ("1.50", "1.50"),
        ("1e2", "1E+2"),
        ("1.7e12", "1.7E+12"),
        ("-0.0", "0.0"),
        ("0.0000001", "1E-7"),
        (
            "123456789012345678901234567890",
            "123456789012345678901234567890",
        ),
        ("\"a\"", "\"a\""),
        ("\"o-1\"", "\"o-1\""),
        (r#""a\/b""#, r#""a/b""#),
        (r#""\u00e9""#, r#""é""#),
        ("\"é\"", "\"é\""),
        (
            r#""\u0001\u001f\b\f\n\r\t\"\\""#,
            r#""\u0001\u001F\b\f\n\r\t\"\\""#,
        ),
        (
            r#"{"a" : 1 , "b":[1, 2.0 ,"x"]}"#,
            r#"{"a":1,"b":[1,2.0,"x"]}"#,
        ),
        (r#"{"a":1,"b":2,"a":3}"#, r#"{"a":3,"b":2}"#),
        ("[ ]", "[]"),
        ("true", "true"),
        ("false", "false"),
        (r#""\ud83d\ude00""#, "\"😀\""),
        (r#""\ud800""#, "\"\\ud800\""),
    ];
    for (raw, want) in cases {
        assert_eq!(key(raw), Ok(Some(want.to_string())), "{raw}");
    }
    assert_eq!(key("null"), Err("missing key field 'k'".into()));
    // borrowed when the text is already what Jackson writes
    let x = extractor(&[], Some("k"), None);
    let mut vals = Vec::new();
    let line = r#"{"k":"o-1"}"#;
    let e = x.extract(line, &mut vals).unwrap_or_else(|e| panic!("{e}"));
    assert!(matches!(e.key, Some(Cow::Borrowed("\"o-1\""))));
    assert_eq!(e.json, line);
}

#[test]
fn nested_and_duplicate_keys() {
    let x = extractor(&[], Some("user.id"), None);
    assert_eq!(kt(&x, r#"{"user":{"id":7}}"#), Ok((Some("7".into()), None)));
    assert_eq!(
        kt(&x, r#"{"user":{"id":7},"user":{"id":8}}"#),
        Ok((Some("8".into()), None))
    );
    assert_eq!(
        kt(&x, r#"{"user":{"id":7},"user":{}}"#),
        Err("missing key field 'user.id'".into())
    );
    assert_eq!(
        kt(&x, r#"{"user":{"id":7,"id":null}}"#),
        Err("missing key field 'user.id'".into())
    );
    assert_eq!(
        kt(&x, r#"{"user":[{"id":7}]}"#),
        Err("missing key field 'user.id'".into())
    );
    assert_eq!(
        kt(&x, r#"{"user":"x"}"#),
        Err("missing key field 'user.id'".into())
    );
    assert_eq!(
        kt(&x, r#"{"\u0075ser":{"i\u0064":1}}"#),
        Ok((Some("1".into()), None))
    );
    let x = extractor(&[], Some("k"), None);
    assert_eq!(
        kt(&x, r#"{"k":"a","k":"b"}"#),
        Ok((Some("\"b\"".into()), None))
    );
    assert_eq!(
        kt(&x, r#"{"k":"a","k":null}"#),
        Err("missing key field 'k'".into())
    );
}

#[test]
fn empty_path_is_the_whole_object() {
    let mut f = Fields::new();
    f.slot(&[]);
    let x = Extractor::new(&f, Some(vec![]), None);
    let mut v = Vec::new();
    let e = x.extract(r#" {"b" : 1.0, "a":[true]} "#, &mut v);
    assert_eq!(
        e.map(|e| e.key.map(Cow::into_owned)),
        Ok(Some(r#"{"b":1.0,"a":[true]}"#.to_string()))
    );
    assert!(matches!(&v[0], Value::Map(m) if m.len() == 2));
}

#[test]
fn line_error_display() {
    let e = LineError::MissingKey {
        field: Some("k".into()),
    };
    assert_eq!(e.to_string(), "missing key field 'k'");
    let x = extractor(&[], None, None);
    let r = kt(&x, r#"{"a":1,}"#);
    assert_eq!(
        r,
        Err("invalid JSON: unexpected character '}', expected a double-quoted field name (column 8)".into())
    );
    assert_eq!(
        kt(&x, "{\"a\":\"x"),
        Err("invalid JSON: unterminated string (column 8)".into())
    );
}

#[test]
fn timestamps() {
    assert_eq!(ts("1700000000000"), Ok(Some(1_700_000_000_000)));
    assert_eq!(ts("1.7e12"), Ok(Some(1_700_000_000_000)));
    assert_eq!(ts("1700000000000.0"), Ok(Some(1_700_000_000_000)));
    assert_eq!(ts("1.7E+12"), Ok(Some(1_700_000_000_000)));
    assert_eq!(ts("-5"), Ok(Some(-5)));
    assert_eq!(ts("-1.5e3"), Ok(Some(-1500)));
    assert_eq!(ts("-0.0"), Ok(Some(0)));
    assert_eq!(ts("0"), Ok(Some(0)));
    assert_eq!(ts("9223372036854775807"), Ok(Some(i64::MAX)));
    assert_eq!(ts("-9223372036854775808"), Ok(Some(i64::MIN)));
    assert_eq!(ts("9.223372036854775807E18"), Ok(Some(i64::MAX)));
    assert_eq!(ts("\"2024-01-01T00:00:00Z\""), Ok(Some(1_704_067_200_000)));
    assert_eq!(
        ts("\"2024-01-01T00:00:01.500+00:00\""),
        Ok(Some(1_704_067_201_500))
    );
    assert_eq!(ts("\"2024-01-01 00:00:00z\""), Ok(Some(1_704_067_200_000)));
    assert_eq!(
        ts("\"2024-01-01T01:00:03+01:00\""),
        Ok(Some(1_704_067_203_000))
    );
    assert_eq!(
        ts("\"\\u0032024-01-01T00:00:00Z\""),
        Ok(Some(1_704_067_200_000))
    );
    assert_eq!(ts("\"1969-12-31T23:59:59.999Z\""), Ok(Some(-1)));
    let bad = |raw: &str, shown: &str| {
        assert_eq!(
            ts(raw),
            Err(format!(
                "time field 'ts' is neither integer epoch milliseconds nor an RFC 3339 string: {shown}"
            )),
            "{raw}"
        )
    };
    bad("2.5", "2.5");
    bad("1e400", "1E+400");
    bad("9223372036854775808", "9223372036854775808");
    bad("-9223372036854775809", "-9223372036854775809");
    bad("\"yesterday\"", "\"yesterday\"");
    bad("\"1700000000000\"", "\"1700000000000\"");
    bad("\"2024-02-30T00:00:00Z\"", "\"2024-02-30T00:00:00Z\"");
    bad("\"2024-01-01T00:00:00\"", "\"2024-01-01T00:00:00\"");
    bad("true", "true");
    bad("[1]", "[1]");
    bad("{\"a\" : 1}", "{\"a\":1}");
    assert_eq!(ts("null"), Err("missing time field 'ts'".into()));
}

fn vals_of<'a>(x: &Extractor, line: &'a str) -> Vec<Value<'a>> {
    let mut v = Vec::new();
    if let Err(e) = x.extract(line, &mut v) {
        panic!("{line}: {e}");
    }
    v
}

#[test]
fn field_values() {
    let x = extractor(
        &["a", "b.c", "s", "e", "n", "big", "l", "m", "missing", "b"],
        None,
        None,
    );
    let line = r#"{"a":1,"b":{"c":"x"},"s":"plain","e":"t\u00e9","n":2.50,"big":99999999999999999999,"l":[1,"y"],"m":{"k":null}}"#;
    let v = vals_of(&x, line);
    assert_eq!(v.len(), 10);
    assert!(matches!(v[0], Value::Int(1)));
    assert!(matches!(&v[1], Value::Str(s) if s.as_str() == Some("x")));
    // borrowed, no escapes
    assert!(matches!(&v[2], Value::Str(s) if s.as_str() == Some("plain")));
    assert!(matches!(&v[3], Value::Str(s) if s.as_str() == Some("té")));
    assert!(
        matches!(&v[4], Value::Dec(d) if d.java_string() == "2.50" && d.canonical_string() == "2.5")
    );
    assert!(matches!(&v[5], Value::Dec(d) if d.java_string() == "99999999999999999999"));
    assert!(matches!(&v[6], Value::List(l) if l.len() == 2));
    assert!(matches!(&v[7], Value::Map(m) if m.len() == 1 && m.contains_key(b"k")));
    assert!(v[8].is_null());
    assert!(matches!(&v[9], Value::Map(m) if m.len() == 1));
}

#[test]
fn many_paths_use_the_heap_table() {
    let names: Vec<String> = (0..50).map(|i| format!("f{i}.x")).collect();
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let x = extractor(&refs, Some("k"), Some("t"));
    let body: Vec<String> = (0..50).map(|i| format!("\"f{i}\":{{\"x\":{i}}}")).collect();
    let line = format!("{{\"k\":1,\"t\":2,{}}}", body.join(","));
    let v = vals_of(&x, &line);
    assert_eq!(v.len(), 50);
    assert!(v
        .iter()
        .enumerate()
        .all(|(i, v)| matches!(v, Value::Int(j) if *j == i as i64)));
}

#[test]
fn shared_prefixes_and_key_time_fields_overlap() {
    let x = extractor(&["user", "user.id", "ts"], Some("user.id"), Some("ts"));
    let line = r#"{"ts":"2024-01-01T00:00:00Z","user":{"id":"u1","n":1}}"#;
    let mut v = Vec::new();
    let e = x.extract(line, &mut v).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(e.key.as_deref(), Some("\"u1\""));
    assert_eq!(e.timestamp, Some(1_704_067_200_000));
    assert!(matches!(&v[0], Value::Map(m) if m.len() == 2));
    assert!(matches!(&v[1], Value::Str(s) if s.as_str() == Some("u1")));
    assert!(matches!(&v[2], Value::Str(_)));
}

#[test]
fn values_vector_reuse() {
    let x = extractor(&["a"], None, None);
    let mut buf: Vec<Value<'static>> = Vec::new();
    for i in 0..3 {
        let line = format!("{{\"a\":\"v{i}\"}}");
        let mut v = recycle_values(buf);
        assert!(x.extract(&line, &mut v).is_ok());
        assert!(matches!(&v[0], Value::Str(s) if s.as_str() == Some(&format!("v{i}"))));
        buf = recycle_values(v);
    }
    // errors leave it empty
    let mut v = recycle_values(buf);
    assert!(x.extract("[]", &mut v).is_err());
    assert!(v.is_empty());
}

#[test]
fn send_sync() {
    fn check<T: Send + Sync>() {}
    check::<Extractor>();
    check::<Value<'static>>();
}

/// A strategy for JSON-ish text around a few valid templates, with random edits.
fn mutated_json() -> impl Strategy<Value = String> {
    let base = prop_oneof![
        Just(
            r#"{"k":"a","ts":1700000000000,"user":{"id":7,"tags":["x",1.5,null]},"m":{"a":true}}"#
                .to_string()
        ),
        Just(
            r#"{"k":{"z":[1,2,{"y":"\u00e9"}]},"ts":"2024-01-01T00:00:00Z","user":[]}"#.to_string()
        ),
        Just(r#"[1,2.5e3,"x",{"k":-0}]"#.to_string()),
    ];
    (
        base,
        prop::collection::vec(
            (
                any::<prop::sample::Index>(),
                "[\\PC{\"}\\[\\],:0-9e.\\\\-]{0,2}",
                0usize..3,
            ),
            0..4,
        ),
    )
        .prop_map(|(mut s, edits)| {
            apply_edits(&mut s, edits);
            s
        })
}

/// Replaces, for each (position, text, length) edit, `length` bytes at the
/// position (both moved to character boundaries) with the text.
pub(crate) fn apply_edits(s: &mut String, edits: Vec<(proptest::sample::Index, String, usize)>) {
    for (at, ins, del) in edits {
        let mut i = at.index(s.len() + 1);
        while !s.is_char_boundary(i) {
            i -= 1;
        }
        let mut j = (i + del).min(s.len());
        while !s.is_char_boundary(j) {
            j += 1;
        }
        s.replace_range(i..j, &ins);
    }
}

proptest! {
    #[test]
    fn extractor_never_panics(line in "\\PC{0,60}") {
        let x = extractor(&["a", "user.id", "k"], Some("k"), Some("ts"));
        let mut v = Vec::new();
        let _ = x.extract(&line, &mut v);
    }

    #[test]
    fn validity_agrees_with_serde_json(line in mutated_json()) {
        // serde_json differs from Jackson only on things these inputs avoid or filter out:
        // lone surrogates, nesting beyond 128, huge exponents (f64 overflow), long numbers.
        let b = line.as_bytes();
        let exponent = b.windows(2).any(|w| (w[0].is_ascii_digit() || w[0] == b'.') && (w[1] | 0x20) == b'e');
        prop_assume!(!line.contains("\\ud") && !exponent);
        let x = extractor(&["user.id", "m", "user.tags"], None, None);
        let mut v = Vec::new();
        let ours = x.extract(&line, &mut v);
        let theirs = serde_json::from_str::<serde_json::Value>(line.trim_matches(|c: char| c <= ' '));
        match (&ours, &theirs) {
            (Ok(_), Ok(t)) => prop_assert!(t.is_object()),
            (Err(e), Ok(t)) => prop_assert!(
                !t.is_object() && *e == LineError::NotAnObject || *e == LineError::Empty,
                "{line:?}: {e}"
            ),
            (Ok(_), Err(t)) => prop_assert!(false, "{line:?} accepted, serde_json: {t}"),
            (Err(e), Err(_)) => prop_assert!(matches!(e, LineError::InvalidJson { .. } | LineError::Empty), "{line:?}: {e}"),
        }
        // and the extracted values agree with serde_json's tree
        if let (Ok(_), Ok(t)) = (&ours, &theirs) {
            let at = |path: &[&str]| -> Option<&serde_json::Value> {
                let mut n = t;
                for s in path {
                    n = n.as_object()?.get(*s)?;
                }
                Some(n)
            };
            for (slot, path) in [(0, &["user", "id"][..]), (1, &["m"][..]), (2, &["user", "tags"][..])] {
                let want = at(path).filter(|n| !n.is_null());
                match (&v[slot], want) {
                    (Value::Null, None) => {}
                    (Value::Bool(b), Some(serde_json::Value::Bool(c))) => prop_assert_eq!(b, c),
                    (Value::Int(i), Some(serde_json::Value::Number(n))) => prop_assert_eq!(Some(*i), n.as_i64()),
                    (Value::Dec(_), Some(serde_json::Value::Number(_))) => {}
                    (Value::Str(s), Some(serde_json::Value::String(t))) => prop_assert_eq!(s.as_str(), Some(t.as_str())),
                    (Value::List(l), Some(serde_json::Value::Array(a))) => prop_assert_eq!(l.len(), a.len()),
                    (Value::Map(m), Some(serde_json::Value::Object(o))) => prop_assert_eq!(m.len(), o.len()),
                    (ours, theirs) => prop_assert!(false, "{line:?} slot {slot}: {ours:?} vs {theirs:?}"),
                }
            }
        }
    }
}
