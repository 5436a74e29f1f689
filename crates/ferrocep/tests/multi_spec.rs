//! Several `--spec`s over one stream: each output line names its pattern, and
//! the lines of each pattern are exactly those of a run of that spec alone.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::util::{run_match, Run, TempDir};

const CREATE_PAY: &str = r#"{
  "name": "create-pay",
  "key": "k",
  "time": {"field": "ts", "max_out_of_orderness": "1s"},
  "within": "10s",
  "stages": [
    {"name": "create", "where": "type == \"create\""},
    {"name": "pay", "where": "type == \"pay\""}
  ]
}"#;

/// No `name`: labelled by its file stem. Another window, skip strategy and
/// out-of-orderness, and a field the other spec does not read.
const BIG: &str = r#"
key: k
time:
  field: ts
  max_out_of_orderness: 0s
within: 3s
skip: skip_past_last_event
stages:
  - name: big
    where: type == "create" && amount >= 100
  - name: paid
    contiguity: next
    where: type == "pay"
"#;

fn input() -> String {
    let mut s = String::new();
    let mut t = 1_700_000_000_000i64;
    for i in 0..400 {
        t += [0, 7, 300, 1_100][i % 4];
        let k = format!("k{}", i % 13);
        let amount = (i * 37) % 250;
        s.push_str(&format!(
            "{{\"k\":\"{k}\",\"type\":\"create\",\"amount\":{amount},\"ts\":{t}}}\n"
        ));
        if i % 3 != 0 {
            let back = [0, 900, 2_500][i % 3];
            s.push_str(&format!(
                "{{\"k\":\"{k}\",\"type\":\"pay\",\"ts\":{}}}\n",
                t - back + 50
            ));
        }
        if i == 200 {
            s.push_str("not json\n");
        }
    }
    s
}

/// The output lines of each pattern, `pattern` removed, as sorted JSON texts.
fn by_pattern(run: &Run) -> BTreeMap<String, Vec<String>> {
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for line in run.stdout.lines() {
        let after_kind = line.split_once("\",").map_or("", |(_, rest)| rest);
        assert!(
            line.starts_with("{\"kind\":") && after_kind.starts_with("\"pattern\":"),
            "pattern follows kind: {line}"
        );
        let mut v: serde_json::Map<String, Value> = serde_json::from_str(line).unwrap();
        let Some(Value::String(p)) = v.remove("pattern") else {
            panic!("no pattern: {line}")
        };
        out.entry(p)
            .or_default()
            .push(serde_json::to_string(&v).unwrap());
    }
    for lines in out.values_mut() {
        lines.sort();
    }
    out
}

fn alone(run: &Run) -> Vec<String> {
    let mut v: Vec<String> = run
        .stdout
        .lines()
        .map(|l| {
            let v: serde_json::Map<String, Value> = serde_json::from_str(l).unwrap();
            assert!(!v.contains_key("pattern"), "{l}");
            serde_json::to_string(&v).unwrap()
        })
        .collect();
    v.sort();
    v
}

#[test]
fn each_pattern_gives_what_it_gives_alone() {
    let tmp = TempDir::new("multi");
    let a = tmp.file("create-pay.json", CREATE_PAY);
    let b = tmp.file("big.yaml", BIG);
    let events = tmp.file("in.jsonl", &input());
    let alone_a = run_match(&a, &events, &["--workers", "1"]);
    let alone_b = run_match(&b, &events, &["--workers", "1"]);
    assert_eq!(alone_a.code, Some(0));
    assert!(!alone_a.stdout.is_empty() && !alone_b.stdout.is_empty());
    for workers in ["1", "3"] {
        let both = run_match(
            &a,
            &events,
            &["--spec", b.to_str().unwrap(), "--workers", workers],
        );
        assert_eq!(both.code, Some(0), "{}", both.stderr);
        // The bad line is reported once.
        assert_eq!(both.stderr, alone_a.stderr);
        assert_eq!(both.stderr.lines().count(), 1);
        let got = by_pattern(&both);
        assert_eq!(got.len(), 2, "{:?}", got.keys());
        assert!(got["create-pay"] == alone(&alone_a), "--workers {workers}");
        assert!(got["big"] == alone(&alone_b), "--workers {workers}");
    }
}

#[test]
fn one_spec_flag_takes_several_files() {
    let tmp = TempDir::new("multi-args");
    let a = tmp.file("create-pay.json", CREATE_PAY);
    let b = tmp.file("big.yaml", BIG);
    let events = tmp.file("in.jsonl", &input());
    // `--spec A B` and `--spec A --spec B` are the same run.
    let run = run_match(&a, &events, &["--spec", b.to_str().unwrap()]);
    let mut cmd = crate::util::bin();
    cmd.args(["match", "--input"])
        .arg(&events)
        .arg("--spec")
        .arg(&a)
        .arg(&b);
    let run2 = crate::util::run_with_timeout(cmd, None, std::time::Duration::from_secs(60));
    assert_eq!(run2.code, Some(0), "{}", run2.stderr);
    assert_eq!(by_pattern(&run), by_pattern(&run2));
}

#[test]
fn specs_with_different_keys_are_refused() {
    let tmp = TempDir::new("multi-keys");
    let a = tmp.file("create-pay.json", CREATE_PAY);
    let b = tmp.file("other.yaml", &BIG.replace("key: k", "key: user"));
    let events = tmp.file("in.jsonl", &input());
    let run = run_match(&a, &events, &["--spec", b.to_str().unwrap()]);
    assert_eq!(run.code, Some(2));
    assert!(run.stderr.contains("same key"), "{}", run.stderr);
    assert!(run.stdout.is_empty());
}

#[test]
fn specs_with_different_time_fields_are_refused() {
    let tmp = TempDir::new("multi-time");
    let a = tmp.file("create-pay.json", CREATE_PAY);
    let b = tmp.file("other.yaml", &BIG.replace("field: ts", "field: at"));
    let events = tmp.file("in.jsonl", &input());
    let run = run_match(&a, &events, &["--spec", b.to_str().unwrap()]);
    assert_eq!(run.code, Some(2));
    assert!(run.stderr.contains("same time field"), "{}", run.stderr);
}

#[test]
fn two_specs_with_one_name_are_refused() {
    let tmp = TempDir::new("multi-names");
    let a = tmp.file("create-pay.json", CREATE_PAY);
    let b = tmp.file("create-pay.yaml", BIG);
    let events = tmp.file("in.jsonl", &input());
    let run = run_match(&a, &events, &["--spec", b.to_str().unwrap()]);
    assert_eq!(run.code, Some(2));
    assert!(run.stderr.contains("'create-pay'"), "{}", run.stderr);
}
