//! Expression tests: every expected outcome below is what the oracle's `Expr.java` gives
//! (checked against it with a differential harness).

use super::*;
use crate::event::Extractor;
use proptest::prelude::*;

fn compile(src: &str) -> (Expr, Fields) {
    let mut f = Fields::new();
    match Expr::parse(src, &mut f) {
        Ok(e) => (e, f),
        Err(e) => panic!("{src:?} does not parse: {e}"),
    }
}

/// Evaluates `src` over the JSON object `json`.
fn run(src: &str, json: &str) -> Outcome {
    let (e, f) = compile(src);
    let x = Extractor::new(&f, None, None);
    let mut vals = Vec::new();
    if let Err(err) = x.extract(json, &mut vals) {
        panic!("bad test line {json}: {err}");
    }
    e.evaluate(&vals)
}

fn perr(src: &str) -> (usize, String) {
    let mut f = Fields::new();
    match Expr::parse(src, &mut f) {
        Ok(_) => panic!("{src:?} parses"),
        Err(e) => (e.column, e.message),
    }
}

use Outcome::{Error as E, False as F, Other as O, True as T};

fn check(cases: &[(&str, &str, Outcome)]) {
    for (src, json, want) in cases {
        assert_eq!(run(src, json), *want, "{src}  over  {json}");
    }
}

#[test]
fn numbers_compare_exactly() {
    check(&[
        ("a == 3.0", r#"{"a":3}"#, T),
        ("a == 3", r#"{"a":3.00}"#, T),
        ("1e2 == 100", "{}", T),
        ("a == 1e2", r#"{"a":100}"#, T),
        ("a == 100", r#"{"a":1E+2}"#, T),
        ("a == 0.1", r#"{"a":0.10}"#, T),
        ("a > 9223372036854775807", r#"{"a":9223372036854775808}"#, T),
        (
            "a == 9223372036854775808",
            r#"{"a":9223372036854775808.0}"#,
            T,
        ),
        (
            "a == -9223372036854775808",
            r#"{"a":-9223372036854775808}"#,
            T,
        ),
        ("a > 9007199254740992", r#"{"a":9007199254740993}"#, T),
        ("a == 9007199254740992.0", r#"{"a":9007199254740993}"#, F),
        ("a >= 100", r#"{"a":99.999999999999999999}"#, F),
        ("a < 0.3", r#"{"a":0.29999999999999999999}"#, T),
        ("a == 0", r#"{"a":-0.0}"#, T),
        ("a == -0", r#"{"a":0e7}"#, T),
        ("a == .5", r#"{"a":0.5}"#, T),
        ("a == 5.", r#"{"a":5}"#, T),
        ("a == 007", r#"{"a":7}"#, T),
        ("a == 1.e1", r#"{"a":10}"#, T),
        ("a == -5", r#"{"a":-5}"#, T),
        ("a == - 5.0", r#"{"a":-5}"#, T),
        ("a > -0.5", r#"{"a":0}"#, T),
        ("a == \u{661}\u{662}", r#"{"a":12}"#, T),
        ("a == 1E-400", r#"{"a":1e-400}"#, T),
        ("a > 0", r#"{"a":1e-400}"#, T),
        ("a < 1e400", r#"{"a":9223372036854775807}"#, T),
        ("amount >= 100", r#"{"amount":59.90}"#, F),
        ("amount >= 100", r#"{"amount":150}"#, T),
    ]);
}

#[test]
fn strings() {
    check(&[
        ("a == 'x'", r#"{"a":"x"}"#, T),
        ("a == \"x\"", r#"{"a":"\u0078"}"#, T),
        ("a == 'é'", r#"{"a":"\u00e9"}"#, T),
        ("a == \"\\u00e9\"", r#"{"a":"é"}"#, T),
        ("a == 'it\\'s'", r#"{"a":"it's"}"#, T),
        ("a == \"q\\\"q\"", r#"{"a":"q\"q"}"#, T),
        ("a == '\\u+041'", r#"{"a":"A"}"#, T),
        ("a == '\\u-000'", r#"{"a":"\u0000"}"#, T),
        ("a == '\\uＦＦＦＦ'", r#"{"a":"\uffff"}"#, T),
        ("a == '\\`\\?\\n\\t\\r\\\\'", r#"{"a":"`?\n\t\r\\"}"#, T),
        ("a == '\\uD83D\\uDE00'", r#"{"a":"😀"}"#, T),
        ("a == '😀'", r#"{"a":"\ud83d\ude00"}"#, T),
        ("a == '\\uD800'", r#"{"a":"\ud800"}"#, T),
        ("a == '\\uD800'", r#"{"a":"\ud801"}"#, F),
        ("a < '\\uE000'", r#"{"a":"\ud800"}"#, T),
        ("a > '\\uD7FF'", r#"{"a":"\ud800"}"#, T),
        ("a < 'b'", r#"{"a":"a"}"#, T),
        ("'a' < 'B'", "{}", F),
        ("'ab' > 'a'", "{}", T),
        ("'' < 'a'", "{}", T),
        // code point order, not UTF-16 order
        ("'\\uFFFF' < '😀'", "{}", T),
        ("'\u{FFFF}' < '\u{10000}'", "{}", T),
        ("a == 'x'", r#"{"a":["x"]}"#, F),
        ("a != 'x'", r#"{"a":1}"#, T),
    ]);
}

#[test]
fn null_missing_and_types() {
    check(&[
        ("a == null", "{}", T),
        ("a == null", r#"{"a":null}"#, T),
        ("a == null", r#"{"a":0}"#, F),
        ("a != null", "{}", F),
        ("null == null", "{}", T),
        ("a < 1", "{}", E),
        ("a <= null", "{}", E),
        ("a == 1", r#"{"a":"1"}"#, F),
        ("a != 1", r#"{"a":"1"}"#, T),
        ("a == true", r#"{"a":1}"#, F),
        ("a < '1'", r#"{"a":1}"#, E),
        ("true > false", "{}", T),
        ("a >= false", r#"{"a":false}"#, T),
        ("true < 1", "{}", E),
        ("a < b", r#"{"a":[1],"b":[2]}"#, E),
        ("a < b", r#"{"a":{},"b":{}}"#, E),
        ("a", r#"{"a":true}"#, T),
        ("a", r#"{"a":1}"#, O),
        ("a", "{}", O),
        ("'x'", "{}", O),
        ("[1]", "{}", O),
    ]);
}

#[test]
fn boolean_operators_absorb_errors() {
    check(&[
        ("!a", r#"{"a":true}"#, F),
        ("!a", r#"{"a":false}"#, T),
        ("!a", r#"{"a":"x"}"#, E),
        ("!a", "{}", E),
        ("!!a", r#"{"a":true}"#, T),
        ("false && x < 1", "{}", F),
        ("x < 1 && false", "{}", F),
        ("true && x < 1", "{}", E),
        ("x < 1 && true", "{}", E),
        ("true || x < 1", "{}", T),
        ("x < 1 || true", "{}", T),
        ("x < 1 || false", "{}", E),
        ("false || false", "{}", F),
        ("true && true && true", "{}", T),
        ("true && 'x' && false", "{}", F),
        ("true && 'x'", "{}", E),
        ("'x' || false", "{}", E),
        ("'x' || true", "{}", T),
        ("(x < 1 || true) && (false || true)", "{}", T),
        ("!(x < 1)", "{}", E),
        ("!(x < 1) || true", "{}", T),
        ("(x < 1) == (y < 1)", "{}", E),
    ]);
}

#[test]
fn precedence() {
    check(&[
        ("true || false && false", "{}", T),
        ("(true || false) && false", "{}", F),
        ("false && false || true", "{}", T),
        ("!true == false", "{}", T),
        ("!(true == false)", "{}", T),
        ("1 < 2 == true", "{}", T),
        ("1 == 1 == true", "{}", T),
        ("a == 1 && b == 2 || c", r#"{"a":1,"b":2}"#, T),
        ("a == 1 && (b == 2 || c)", r#"{"a":1,"b":3,"c":true}"#, T),
        ("a in [1] == true", r#"{"a":1}"#, T),
        (
            "kind == 'refund' && amount == 3.0 || (flag && !(amount < 0))",
            r#"{"amount":1,"flag":true}"#,
            T,
        ),
        (
            "kind == 'refund' && amount == 3.0 || (flag && !(amount < 0))",
            r#"{"kind":"refund","amount":3}"#,
            T,
        ),
        (
            "kind == 'refund' && amount == 3.0 || (flag && !(amount < 0))",
            r#"{"kind":"refund","amount":120.0}"#,
            E,
        ),
    ]);
}

#[test]
fn specialised_comparisons_keep_semantics() {
    check(&[
        ("100 <= a", r#"{"a":100.0}"#, T),
        ("100 < a", r#"{"a":100.0}"#, F),
        ("100 < a", r#"{"a":"x"}"#, E),
        ("a > 1", r#"{"a":true}"#, E),
        ("a >= 1", "{}", E),
        ("5 == a", r#"{"a":"5"}"#, F),
        ("5 != a", "{}", T),
        ("a == 1", r#"{"a":[1]}"#, F),
        ("a != 1.0", r#"{"a":1}"#, F),
        ("-2.5 > a", r#"{"a":-3}"#, T),
        ("'x' == a", r#"{"a":"x"}"#, T),
        ("'x' != a", r#"{"a":1}"#, T),
        ("a != 'x'", "{}", T),
        ("a == 'x'", r#"{"a":null}"#, F),
        ("a in ['x', 'y']", r#"{"a":["x"]}"#, F),
        ("a in ['x', 'y']", r#"{"a":"y"}"#, T),
        ("a in ['x']", "{}", F),
        ("a in ['x', 1]", r#"{"a":1.0}"#, T),
        ("'x' in a", r#"{"a":["x"]}"#, T),
        ("'x' in a", r#"{"a":"x"}"#, E),
        (
            "a in ['k','j','i','h','g','f','e','d','c','b','a','a']",
            r#"{"a":"a"}"#,
            T,
        ),
        (
            "a in ['k','j','i','h','g','f','e','d','c','b','a']",
            r#"{"a":"e"}"#,
            T,
        ),
        (
            "a in ['k','j','i','h','g','f','e','d','c','b','a']",
            r#"{"a":"z"}"#,
            F,
        ),
        (
            "a in ['k','j','i','h','g','f','e','d','c','b','a']",
            r#"{"a":1}"#,
            F,
        ),
    ]);
}

#[test]
fn membership() {
    check(&[
        ("a in [1, 2]", r#"{"a":2.0}"#, T),
        ("a in [1, 2]", r#"{"a":3}"#, F),
        ("a in ['x']", r#"{"a":null}"#, F),
        ("null in [null]", "{}", T),
        ("a in []", r#"{"a":1}"#, F),
        ("currency in [\"EUR\", \"USD\"]", r#"{"currency":"USD"}"#, T),
        ("'k' in m", r#"{"m":{"k":1}}"#, T),
        ("'z' in m", r#"{"m":{"k":1}}"#, F),
        ("1 in m", r#"{"m":{"1":1}}"#, F),
        ("a in m", r#"{"a":"k","m":{"k":null}}"#, T),
        ("a in 5", r#"{"a":1}"#, E),
        ("a in 'abc'", r#"{"a":"a"}"#, E),
        ("a in x", r#"{"a":1}"#, E),
        ("a in l", r#"{"a":1,"l":[0,1.0]}"#, T),
        ("[1] in l", r#"{"l":[[1.0],2]}"#, T),
        ("a in [b, c]", r#"{"a":2,"b":1,"c":2}"#, T),
        ("a in [b, !c]", r#"{"a":1,"b":1,"c":"x"}"#, E),
        ("a in [b, !c] || true", r#"{"a":1,"b":1}"#, T),
        ("[a] in [[1], [2]]", r#"{"a":2}"#, T),
        ("a in [[1], [b]]", r#"{"a":[2],"b":2}"#, T),
    ]);
}

#[test]
fn lists_and_maps() {
    check(&[
        ("a == [1, 'x', [true]]", r#"{"a":[1.0,"x",[true]]}"#, T),
        ("a == [1]", r#"{"a":[1,2]}"#, F),
        ("a == []", r#"{"a":[]}"#, T),
        ("a == [1,]", r#"{"a":[1]}"#, T),
        ("[a, b] == [1, 2]", r#"{"a":1,"b":2}"#, T),
        ("[a, b] == l", r#"{"a":1,"b":2,"l":[1,2]}"#, T),
        ("[a, [b]] == [1, [2]]", r#"{"a":1,"b":2}"#, T),
        ("[a] != [1]", r#"{"a":1}"#, F),
        ("[!a] == [true]", r#"{"a":"x"}"#, E),
        ("[!a] == [true] || true", r#"{"a":"x"}"#, T),
        ("a < [1]", r#"{"a":1}"#, E),
        ("a == [1]", r#"{"a":1}"#, F),
        ("a == null", r#"{"a":[]}"#, F),
        (
            "m == n",
            r#"{"m":{"a":1,"b":[2]},"n":{"b":[2.0],"a":1.0}}"#,
            T,
        ),
        ("m == n", r#"{"m":{"a":1},"n":{"a":1,"b":2}}"#, F),
        ("m == n", r#"{"m":{"a":1,"a":2},"n":{"a":2}}"#, T),
        ("m == n", r#"{"m":{"a":null},"n":{"b":null}}"#, F),
        ("m == l", r#"{"m":{},"l":[]}"#, F),
        ("m != n", r#"{"m":{"a":[1]},"n":{"a":[1]}}"#, F),
    ]);
}

#[test]
fn paths() {
    check(&[
        ("user.id == 7", r#"{"user":{"id":7}}"#, T),
        ("user.id == null", r#"{"user":5}"#, T),
        ("user.id == null", r#"{"user":{"id":7},"user":{}}"#, T),
        ("user.id == 8", r#"{"user":{"id":7},"user":{"id":8}}"#, T),
        ("user.id == 7", r#"{"user":{"id":7},"user":null}"#, F),
        ("a.b.c == 1", r#"{"a":{"b":{"c":1}}}"#, T),
        ("a.b.c == 1", r#"{"a":{"b":[{"c":1}]}}"#, F),
        ("`odd-name` == 1", r#"{"odd-name":1}"#, T),
        ("`a.b` == 1", r#"{"a.b":1}"#, T),
        ("`a`.`b` == 1", r#"{"a":{"b":1}}"#, T),
        ("`` == 1", r#"{"":1}"#, T),
        ("`in` == 1", r#"{"in":1}"#, T),
        ("`true`.x == 1", r#"{"true":{"x":1}}"#, T),
        ("_x1 == 1", r#"{"_x1":1}"#, T),
        ("é == 1", r#"{"é":1}"#, T),
        ("a.b == 1 && a == c", r#"{"a":{"b":1},"c":{"b":1.0}}"#, T),
        ("\u{5b57} == 1", "{\"\u{5b57}\":1}", T),
        ("a == 1", r#"{"\u0061":1}"#, T),
    ]);
}

#[test]
fn fields_registry() {
    let mut f = Fields::new();
    let e1 = Expr::parse("a == 1 && user.id == b", &mut f);
    assert!(e1.is_ok());
    assert_eq!(f.names(), ["a", "user.id", "b"]);
    assert!(Expr::parse("c == (", &mut f).is_err());
    assert_eq!(f.len(), 3, "a failed parse registers nothing");
    assert!(Expr::parse("b == `user.id` && c", &mut f).is_ok());
    assert_eq!(f.names(), ["a", "user.id", "b", "c"]);
    assert_eq!(f.paths()[1], ["user", "id"]);
    assert_eq!(f.slot(&["user".to_string(), "id".to_string()]), 1);
    assert_eq!(f.slot(&["d".to_string()]), 4);
    assert!(!f.is_empty());
}

#[test]
fn parse_errors_like_the_oracle() {
    let cases: &[(&str, usize, &str)] = &[
        ("", 1, "unexpected end of expression"),
        ("a ==", 5, "unexpected end of expression"),
        ("a = 1", 3, "'=' is not an operator; use '=='"),
        ("a =", 3, "'=' is not an operator; use '=='"),
        ("a == 'x", 6, "unterminated string"),
        ("'x\\", 1, "unterminated string"),
        ("f(x)", 2, "function calls are not supported"),
        ("a.b(x)", 4, "function calls are not supported"),
        (
            "-a",
            2,
            "unary minus is only supported before a number literal",
        ),
        (
            "--1",
            2,
            "unary minus is only supported before a number literal",
        ),
        (
            "-",
            2,
            "unary minus is only supported before a number literal",
        ),
        ("a & b", 3, "unexpected character '&'"),
        ("a | b", 3, "unexpected character '|'"),
        ("a + 1", 3, "unexpected character '+'"),
        ("{}", 1, "unexpected character '{'"),
        ("(a", 3, "expected ')' but found end of expression"),
        ("[1 2]", 4, "expected ']' but found '2'"),
        ("a b", 3, "unexpected 'b'"),
        ("1x", 1, "bad number"),
        ("1e", 1, "bad number"),
        ("1e+", 1, "bad number"),
        ("1_000", 1, "bad number"),
        ("1.5.2 == 1", 4, "unexpected '.2'"),
        ("a.1", 2, "unexpected '.1'"),
        ("'\\q'", 2, "unsupported escape \\q"),
        ("'\\u12'", 4, "bad \\u escape"),
        ("'\\uzzzz'", 4, "bad \\u escape"),
        ("'\\u+'", 4, "bad \\u escape"),
        ("'\\u+-12'", 4, "bad \\u escape"),
        ("`abc", 1, "unterminated `quoted` field name"),
        ("a.", 3, "expected a field name after '.'"),
        ("a.true", 3, "expected a field name after '.'"),
        ("a.in", 3, "expected a field name after '.'"),
        ("a.'x'", 3, "expected a field name after '.'"),
        ("[,]", 2, "unexpected ','"),
        ("[1,,]", 4, "unexpected ','"),
        ("in", 1, "unexpected 'in'"),
        ("a in", 5, "unexpected end of expression"),
        ("()", 2, "unexpected ')'"),
        (")", 1, "unexpected ')'"),
        (") 'abc", 3, "unterminated string"),
        ("a == 1 )", 8, "unexpected ')'"),
        ("true.x", 5, "unexpected '.'"),
        ("a $ b", 3, "unexpected character '$'"),
        ("'😀' = 1", 5, "'=' is not an operator; use '=='"),
        ("\u{a0}a", 1, "unexpected character '\u{a0}'"),
        ("1e2147483648", 1, "bad number"),
    ];
    for (src, col, msg) in cases {
        assert_eq!(perr(src), (*col, msg.to_string()), "{src:?}");
    }
    let e = ExprError {
        column: 3,
        message: "x".into(),
    };
    assert_eq!(e.to_string(), "x at column 3");
}

#[test]
fn java_whitespace_and_letters() {
    // U+2003 EM SPACE is Java whitespace, U+00A0 is not (above); \u{1F} is
    check(&[("\u{2003}a\u{1F}==\t1\n", r#"{"a":1}"#, T)]);
    // a supplementary letter is two surrogates, not a letter for Java
    assert_eq!(perr("\u{1D49C} == 1").1, "unexpected character '?'");
}

#[test]
fn nesting_limits() {
    let deep = format!("{}true{}", "(".repeat(100), ")".repeat(100));
    assert_eq!(run(&deep, "{}"), T);
    let too_deep = format!("{}true{}", "(".repeat(10_000), ")".repeat(10_000));
    assert_eq!(perr(&too_deep).1, "expression nested too deeply");
    assert_eq!(perr(&"!".repeat(10_000)).1, "expression nested too deeply");
    assert_eq!(perr(&"[".repeat(10_000)).1, "expression nested too deeply");
    let chain = vec!["a == 1"; 5000].join(" || ");
    assert_eq!(run(&chain, r#"{"a":1}"#), T);
    let chain = vec!["a"; 1000].join(" == ");
    assert_eq!(perr(&chain).1, "expression nested too deeply");
}

#[test]
fn source_and_display() {
    let (e, _) = compile(" a == 1 ");
    assert_eq!(e.source(), " a == 1 ");
    assert_eq!(e.to_string(), " a == 1 ");
    fn send_sync<T: Send + Sync>() {}
    send_sync::<Expr>();
    send_sync::<Fields>();
}

#[test]
fn test_with_short_values_reads_null() {
    let (e, _) = compile("a == null && b == null");
    assert!(e.test(&[]));
}

#[test]
fn parse_path_segments() {
    let p = |s: &str| parse_path(s).map_err(|e| (e.column, e.message));
    assert_eq!(p("user.id"), Ok(vec!["user".to_string(), "id".to_string()]));
    assert_eq!(p("k"), Ok(vec!["k".to_string()]));
    assert_eq!(p("order-id"), Ok(vec!["order-id".to_string()]));
    assert_eq!(
        p("`odd-name`.x"),
        Ok(vec!["odd-name".to_string(), "x".to_string()])
    );
    assert_eq!(p("`a.b`"), Ok(vec!["a.b".to_string()]));
    assert_eq!(
        p("a.`b.c`.d"),
        Ok(vec!["a".to_string(), "b.c".to_string(), "d".to_string()])
    );
    assert!(p("").is_err());
    assert!(p("a.").is_err());
    assert!(p(".a").is_err());
    assert!(p("a..b").is_err());
    assert!(p("`a").is_err());
    assert!(p("`a`b").is_err());
}

#[test]
fn expressions_case_end_to_end() {
    // conformance/cases/edges/expressions.json, from the line to the outcome
    let p = |s: &str| s.split('.').map(str::to_string).collect::<Vec<_>>();
    let mut f = Fields::new();
    let big = Expr::parse(
        "amount >= 100 && currency in [\"EUR\", \"USD\"] && coupon == null",
        &mut f,
    );
    let refund = Expr::parse(
        "kind == 'refund' && amount == 3.0 || (flag && !(amount < 0))",
        &mut f,
    );
    let (Ok(big), Ok(refund)) = (big, refund) else {
        panic!("parse")
    };
    let x = Extractor::new(&f, Some(p("user.id")), Some(p("at")));
    let lines = [
        (
            r#"{"user":{"id":7},"amount":150,"currency":"EUR","at":"2024-01-01T00:00:00Z"}"#,
            "7",
            1_704_067_200_000,
            true,
            false,
        ),
        (
            r#"{"user":{"id":7},"amount":3,"kind":"refund","at":"2024-01-01T00:00:01.500+00:00"}"#,
            "7",
            1_704_067_201_500,
            false,
            true,
        ),
        (
            r#"{"user":{"id":8},"amount":100.0,"currency":"USD","coupon":"X","at":"2024-01-01T00:00:02Z"}"#,
            "8",
            1_704_067_202_000,
            false,
            false,
        ),
        (
            r#"{"user":{"id":8},"amount":120.0,"currency":"USD","at":"2024-01-01T01:00:03+01:00"}"#,
            "8",
            1_704_067_203_000,
            true,
            false,
        ),
        (
            r#"{"user":{"id":8},"amount":1,"flag":true,"at":"2024-01-01T00:00:04Z"}"#,
            "8",
            1_704_067_204_000,
            false,
            true,
        ),
    ];
    for (line, k, t, b, r) in lines {
        let mut v = Vec::new();
        let e = x.extract(line, &mut v).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(e.key.as_deref(), Some(k));
        assert_eq!(e.timestamp, Some(t));
        assert_eq!(big.test(&v), b, "{line}");
        assert_eq!(refund.test(&v), r, "{line}");
    }
}

fn expr_strategy() -> impl Strategy<Value = String> {
    let atom = prop_oneof![
        Just("a".to_string()),
        Just("b.c".to_string()),
        Just("`x y`".to_string()),
        Just("null".to_string()),
        Just("true".to_string()),
        Just("false".to_string()),
        Just("'s'".to_string()),
        Just("\"t\\u00e9\"".to_string()),
        any::<i64>().prop_map(|i| i.to_string()),
        "-?[0-9]{1,3}\\.[0-9]{0,3}(e-?[0-9])?",
    ];
    atom.prop_recursive(4, 32, 4, |inner| {
        prop_oneof![
            (
                inner.clone(),
                prop_oneof!["==", "!=", "<", "<=", ">", ">=", "in", "&&", "||"],
                inner.clone()
            )
                .prop_map(|(a, op, b)| format!("{a} {op} {b}")),
            inner.clone().prop_map(|a| format!("!({a})")),
            inner.clone().prop_map(|a| format!("({a})")),
            prop::collection::vec(inner, 0..4).prop_map(|v| format!("[{}]", v.join(", "))),
        ]
    })
}

fn json_strategy() -> impl Strategy<Value = String> {
    let leaf = prop_oneof![
        Just("null".to_string()),
        Just("true".to_string()),
        Just("1".to_string()),
        Just("1.0".to_string()),
        Just("-2.5e1".to_string()),
        Just("\"s\"".to_string()),
        Just("\"t\\u00e9\"".to_string()),
        Just("[]".to_string()),
        Just("{}".to_string()),
    ];
    let val = leaf.prop_recursive(3, 16, 3, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..3).prop_map(|v| format!("[{}]", v.join(","))),
            inner.prop_map(|v| format!("{{\"c\":{v},\"s\":1}}")),
        ]
    });
    (val.clone(), val.clone(), val)
        .prop_map(|(a, b, x)| format!("{{\"a\":{a},\"b\":{b},\"x y\":{x}}}"))
}

proptest! {
    #[test]
    fn parser_never_panics(src in "\\PC{0,40}") {
        let mut f = Fields::new();
        let _ = Expr::parse(&src, &mut f);
    }

    #[test]
    fn parser_never_panics_on_operator_soup(src in "[ab. ()\\[\\],!=<>&|'\"`\\\\u0-9e+-]{0,30}") {
        let mut f = Fields::new();
        let _ = Expr::parse(&src, &mut f);
    }

    #[test]
    fn evaluation_never_panics_and_is_consistent(src in expr_strategy(), json in json_strategy()) {
        let mut f = Fields::new();
        if let Ok(e) = Expr::parse(&src, &mut f) {
            let x = Extractor::new(&f, None, None);
            let mut vals = Vec::new();
            prop_assert!(x.extract(&json, &mut vals).is_ok());
            let out = e.evaluate(&vals);
            prop_assert_eq!(e.test(&vals), out == Outcome::True);
            // x == x never errs, and != is its negation
            let eq = Expr::parse(&format!("({src}) == ({src})"), &mut f.clone());
            let ne = Expr::parse(&format!("({src}) != ({src})"), &mut f.clone());
            if let (Ok(eq), Ok(ne)) = (eq, ne) {
                let (a, b) = (eq.evaluate(&vals), ne.evaluate(&vals));
                if out != Outcome::Error {
                    prop_assert_eq!(a, Outcome::True);
                    prop_assert_eq!(b, Outcome::False);
                }
            }
        }
    }
}
