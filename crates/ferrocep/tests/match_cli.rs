//! The `match` contract, end to end: output lines, bad input lines, `--strict`,
//! bad specs, standard input, end of input, processing time.

use std::time::Duration;

use crate::util::{bin, json_lines, run_match, run_with_timeout, same_multiset, TempDir};

const KEYED_SPEC: &str = r#"{
  "key": "k",
  "time": {"field": "ts"},
  "within": "10s",
  "stages": [
    {"name": "create", "where": "type == \"create\""},
    {"name": "pay", "where": "type == \"pay\""}
  ]
}"#;

const CREATE: &str = r#"{"k": "a", "type": "create", "amount": 100.0, "ts": 1700000000000}"#;
const PAY: &str = r#"{"k":"a","type":"pay","ts":1700000001000}"#;

#[test]
fn match_line_holds_original_event_text() {
    let tmp = TempDir::new("text");
    let spec = tmp.file("spec.json", KEYED_SPEC);
    let input = tmp.file("in.jsonl", &format!("{CREATE}\n{PAY}\n"));
    let run = run_match(&spec, &input, &[]);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert_eq!(
        run.stdout,
        format!("{{\"kind\":\"match\",\"key\":\"a\",\"events\":{{\"create\":[{CREATE}],\"pay\":[{PAY}]}}}}\n")
    );
    assert_eq!(run.stderr, "");
}

#[test]
fn bad_lines_are_reported_with_line_numbers_and_the_run_goes_on() {
    let tmp = TempDir::new("bad");
    let spec = tmp.file("spec.json", KEYED_SPEC);
    let input = [
        CREATE,                                        // 1
        "this is not JSON",                            // 2
        "[1, 2]",                                      // 3
        r#"{"type": "pay", "ts": 1700000000500}"#,     // 4: no key
        r#"{"k": "a", "type": "pay"}"#,                // 5: no time
        "",                                            // 6: empty
        r#"{"k": "a", "type": "pay", "ts": "later"}"#, // 7: bad time
        PAY,                                           // 8
    ]
    .join("\n");
    let input = tmp.file("in.jsonl", &(input + "\n"));
    let run = run_match(&spec, &input, &[]);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    let reported: Vec<&str> = run.stderr.lines().collect();
    assert_eq!(reported.len(), 6, "{}", run.stderr);
    for (line, n) in reported.iter().zip([2, 3, 4, 5, 6, 7]) {
        assert!(line.starts_with(&format!("line {n}: ")), "{}", run.stderr);
    }
    assert_eq!(reported[4], "line 6: empty line");
    assert!(reported[2].contains("key"), "{}", reported[2]);
    assert!(reported[3].contains("time"), "{}", reported[3]);
    let want = json_lines(&format!(
        "{{\"kind\":\"match\",\"key\":\"a\",\"events\":{{\"create\":[{CREATE}],\"pay\":[{PAY}]}}}}"
    ));
    same_multiset(&want, &run.stdout).unwrap();
}

#[test]
fn strict_stops_at_the_first_bad_line() {
    let tmp = TempDir::new("strict");
    let spec = tmp.file("spec.json", KEYED_SPEC);
    let input = tmp.file("in.jsonl", &format!("{CREATE}\nnot json\n{PAY}\n"));
    let run = run_match(&spec, &input, &["--strict"]);
    assert_eq!(run.code, Some(1), "{}", run.stderr);
    assert!(run.stderr.contains("line 2: "), "{}", run.stderr);
    assert_eq!(run.stdout, "", "nothing after the bad line is processed");
}

#[test]
fn bad_spec_exits_2_naming_the_field() {
    let tmp = TempDir::new("spec");
    let input = tmp.file("in.jsonl", &format!("{CREATE}\n"));
    let bad_contiguity = tmp.file(
        "contiguity.yaml",
        "stages:\n  - name: a\n  - name: b\n    contiguity: sometimes\n",
    );
    let run = run_match(&bad_contiguity, &input, &[]);
    assert_eq!(run.code, Some(2), "{}", run.stderr);
    assert!(run.stderr.contains("contiguity"), "{}", run.stderr);
    assert_eq!(run.stdout, "");

    let bad_where = tmp.file(
        "where.yaml",
        "stages:\n  - name: a\n    where: type == == 1\n",
    );
    let run = run_match(&bad_where, &input, &[]);
    assert_eq!(run.code, Some(2), "{}", run.stderr);
    assert!(run.stderr.contains("where"), "{}", run.stderr);

    let bad_within = tmp.file("within.yaml", "within: soon\nstages:\n  - name: a\n");
    let run = run_match(&bad_within, &input, &[]);
    assert_eq!(run.code, Some(2), "{}", run.stderr);
    assert!(run.stderr.contains("within"), "{}", run.stderr);

    let missing = tmp.path().join("no-such-spec.yaml");
    let run = run_match(&missing, &input, &[]);
    assert_eq!(run.code, Some(2), "{}", run.stderr);
    assert!(run.stderr.contains("no-such-spec.yaml"), "{}", run.stderr);
}

#[test]
fn flink_rejected_pattern_exits_2() {
    // `not_followed_by` as the last stage needs `within` (Flink
    // MalformedPatternException).
    let tmp = TempDir::new("flinkbad");
    let input = tmp.file("in.jsonl", &format!("{CREATE}\n"));
    let spec = tmp.file(
        "spec.yaml",
        "stages:\n  - name: a\n  - name: b\n    contiguity: not_followed_by\n",
    );
    let run = run_match(&spec, &input, &[]);
    assert_eq!(run.code, Some(2), "{}", run.stderr);
    assert!(run.stderr.starts_with("spec error"), "{}", run.stderr);
}

#[test]
fn missing_input_file_exits_2() {
    let tmp = TempDir::new("noinput");
    let spec = tmp.file("spec.json", KEYED_SPEC);
    let run = run_match(&spec, &tmp.path().join("nope.jsonl"), &[]);
    assert_eq!(run.code, Some(2), "{}", run.stderr);
    assert!(run.stderr.contains("nope.jsonl"), "{}", run.stderr);
}

#[test]
fn dash_reads_standard_input() {
    let tmp = TempDir::new("stdin");
    let spec = tmp.file("spec.json", KEYED_SPEC);
    let mut cmd = bin();
    cmd.args(["match", "--input", "-", "--spec"]).arg(&spec);
    let run = run_with_timeout(
        cmd,
        Some(&format!("{CREATE}\n{PAY}\n")),
        Duration::from_secs(60),
    );
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert!(
        run.stdout.starts_with("{\"kind\":\"match\""),
        "{}",
        run.stdout
    );
    assert_eq!(run.stdout.lines().count(), 1);
}

#[test]
fn end_of_input_flush_times_out_and_stop_does_not() {
    let tmp = TempDir::new("eoi");
    let spec = tmp.file("spec.json", KEYED_SPEC);
    // A create that never gets paid, and a pay that stays behind the last
    // watermark (max_ts - 0 - 1) under `stop`.
    let create_b = r#"{"k": "b", "type": "create", "ts": 1700000002000}"#;
    let pay_b = r#"{"k": "b", "type": "pay", "ts": 1700000003000}"#;
    let input = tmp.file("in.jsonl", &format!("{CREATE}\n{create_b}\n{pay_b}\n"));

    let flush = run_match(&spec, &input, &[]);
    assert_eq!(flush.code, Some(0), "{}", flush.stderr);
    let want = json_lines(&format!(
        "{{\"kind\":\"timeout\",\"key\":\"a\",\"timeout_at\":1700000010000,\"events\":{{\"create\":[{CREATE}]}}}}\n\
         {{\"kind\":\"match\",\"key\":\"b\",\"events\":{{\"create\":[{create_b}],\"pay\":[{pay_b}]}}}}"
    ));
    same_multiset(&want, &flush.stdout).unwrap();
    let explicit = run_match(&spec, &input, &["--end-of-input", "flush"]);
    assert_eq!(explicit.stdout, flush.stdout);

    let stop = run_match(&spec, &input, &["--end-of-input", "stop"]);
    assert_eq!(stop.code, Some(0), "{}", stop.stderr);
    assert_eq!(
        stop.stdout, "",
        "the pay at the last timestamp is never processed"
    );
}

#[test]
fn late_events_go_to_their_own_lines() {
    let tmp = TempDir::new("late");
    let spec = tmp.file("spec.json", KEYED_SPEC);
    let late = r#"{"k": "a", "type": "pay", "ts": 1699999999000}"#;
    let input = tmp.file("in.jsonl", &format!("{CREATE}\n{late}\n{PAY}\n"));
    let run = run_match(&spec, &input, &[]);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    let want = json_lines(&format!(
        "{{\"kind\":\"late\",\"key\":\"a\",\"event\":{late}}}\n\
         {{\"kind\":\"match\",\"key\":\"a\",\"events\":{{\"create\":[{CREATE}],\"pay\":[{PAY}]}}}}"
    ));
    same_multiset(&want, &run.stdout).unwrap();
    assert!(
        run.stdout.contains(&format!("\"event\":{late}}}")),
        "{}",
        run.stdout
    );
}

#[test]
fn without_key_the_output_has_no_key() {
    let tmp = TempDir::new("nokey");
    let spec = tmp.file(
        "spec.yaml",
        "time:\n  field: ts\nstages:\n  - name: create\n    where: type == \"create\"\n  - name: pay\n    where: type == \"pay\"\n",
    );
    let other = r#"{"k": "zzz", "type": "pay", "ts": 1700000001000}"#;
    let input = tmp.file("in.jsonl", &format!("{CREATE}\n{other}\n"));
    let run = run_match(&spec, &input, &[]);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert_eq!(
        run.stdout,
        format!("{{\"kind\":\"match\",\"events\":{{\"create\":[{CREATE}],\"pay\":[{other}]}}}}\n")
    );
}

#[test]
fn processing_time_matches_on_arrival_and_flush_does_not_time_out() {
    // No `time`: events are stamped with the wall clock; a one-hour window
    // cannot expire during the run, and at the end nothing more happens.
    let tmp = TempDir::new("proctime");
    let spec = tmp.file(
        "spec.yaml",
        "key: k\nwithin: 1h\nstages:\n  - name: create\n    where: type == \"create\"\n  - name: pay\n    where: type == \"pay\"\n",
    );
    let create_b = r#"{"k": "b", "type": "create"}"#;
    let input = tmp.file("in.jsonl", &format!("{CREATE}\n{create_b}\n{PAY}\n"));
    let run = run_match(&spec, &input, &[]);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert_eq!(
        run.stdout,
        format!("{{\"kind\":\"match\",\"key\":\"a\",\"events\":{{\"create\":[{CREATE}],\"pay\":[{PAY}]}}}}\n")
    );
}

#[test]
fn usage_errors_exit_2() {
    let mut cmd = bin();
    cmd.args(["match", "--spec", "x.yaml"]);
    let run = run_with_timeout(cmd, None, Duration::from_secs(30));
    assert_eq!(run.code, Some(2));
    assert!(run.stderr.contains("--input"), "{}", run.stderr);

    let mut cmd = bin();
    cmd.args([
        "match",
        "--spec",
        "x",
        "--input",
        "y",
        "--end-of-input",
        "later",
    ]);
    let run = run_with_timeout(cmd, None, Duration::from_secs(30));
    assert_eq!(run.code, Some(2));
    assert!(run.stderr.contains("flush"), "{}", run.stderr);
}

#[test]
fn crlf_line_ends_and_a_byte_order_mark_are_not_part_of_the_event() {
    let tmp = TempDir::new("crlf");
    let spec = tmp.file("spec.json", KEYED_SPEC);
    let input = tmp.file("in.jsonl", &format!("\u{feff}{CREATE}\r\n{PAY}\r\n"));
    let run = run_match(&spec, &input, &[]);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert_eq!(
        run.stdout,
        format!("{{\"kind\":\"match\",\"key\":\"a\",\"events\":{{\"create\":[{CREATE}],\"pay\":[{PAY}]}}}}\n")
    );
}

/// Line ends and invalid UTF-8 as real Flink reads them (its output for this
/// input is recorded beside it): a lone `\r` ends a line as `\n` and `\r\n`
/// do, and an encoded UTF-16 surrogate (`ED A0 80`, or cut short) is one
/// U+FFFD, not one per byte.
#[test]
fn line_ends_and_invalid_utf8_as_flink_reads_them() {
    let lines = flink_recorded("cr-and-bad-utf8");
    assert_eq!(lines, ["line 3", "line 4", "line 6"]);
}

/// Keys that differ only in lone-surrogate escapes are distinct keys, as
/// Java strings are, though each prints as `?` (Flink's recorded output).
#[test]
fn lone_surrogate_keys_are_told_apart() {
    let lines = flink_recorded("lone-surrogate-keys");
    assert!(lines.is_empty(), "{lines:?}");
}

/// Runs `tests/data/NAME.jsonl` with 1 and 2 workers through a keyed
/// two-stage spec and checks the output against Flink's recorded one
/// (`NAME.flink.jsonl`, line for line in any order); returns the bad-line
/// reports' `line N` parts.
fn flink_recorded(name: &str) -> Vec<String> {
    let data = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data");
    let input = data.join(format!("{name}.jsonl"));
    let flink = std::fs::read_to_string(data.join(format!("{name}.flink.jsonl"))).unwrap();
    let mut reports = Vec::new();
    let tmp = TempDir::new(name);
    let spec = tmp.file(
        "spec.json",
        r#"{"key":"k","time":{"field":"ts"},"within":"10s","stages":[
            {"name":"a","where":"t == \"a\""},
            {"name":"b","contiguity":"followed_by","where":"t == \"b\""}]}"#,
    );
    for workers in ["1", "2"] {
        let run = run_match(&spec, &input, &["--workers", workers]);
        assert_eq!(run.code, Some(0), "{}", run.stderr);
        // As text: serde_json refuses the lone surrogates in these lines.
        let sorted = |t: &str| {
            let mut v: Vec<String> = t.lines().map(str::to_string).collect();
            v.sort();
            v
        };
        assert_eq!(sorted(&run.stdout), sorted(&flink), "--workers {workers}");
        reports = run
            .stderr
            .lines()
            .map(|l| l.split(':').next().unwrap().to_string())
            .collect();
    }
    reports
}

#[test]
fn huge_pages_on_and_off_give_the_same_output() {
    // Enough open keys (40k creates, all pending before the first pay) for
    // the matcher's buffers to pass 1 MiB and get huge-page mappings of their
    // own (crates/ferrocep/src/alloc.rs), grown many times over.
    let tmp = TempDir::new("huge");
    let spec = tmp.file(
        "spec.json",
        r#"{"key": "k", "time": {"field": "ts"}, "within": "10m",
            "stages": [{"name": "create", "where": "type == \"create\""},
                       {"name": "pay", "contiguity": "followed_by", "where": "type == \"pay\""}]}"#,
    );
    let n = 40_000u64;
    let base = 1_700_000_000_000u64;
    let mut input = String::new();
    for i in 0..n {
        input.push_str(&format!(
            "{{\"k\":\"order-{i}\",\"type\":\"create\",\"ts\":{}}}\n",
            base + i
        ));
    }
    for i in (0..n).filter(|i| i % 3 != 0) {
        input.push_str(&format!(
            "{{\"k\":\"order-{i}\",\"type\":\"pay\",\"ts\":{}}}\n",
            base + 50_000 + i
        ));
    }
    let input = tmp.file("in.jsonl", &input);
    let run = |workers: &str, huge: &str| {
        let mut cmd = bin();
        cmd.env("FERROCEP_HUGE_PAGES", huge)
            .args(["match", "--workers", workers, "--spec"])
            .arg(&spec)
            .arg("--input")
            .arg(&input);
        let run = run_with_timeout(cmd, None, Duration::from_secs(120));
        assert_eq!(run.code, Some(0), "{}", run.stderr);
        let mut lines: Vec<String> = run.stdout.lines().map(str::to_string).collect();
        lines.sort_unstable();
        lines
    };
    let off = run("1", "off");
    let kinds = |kind: &str| {
        off.iter()
            .filter(|l| l.starts_with(&format!("{{\"kind\":\"{kind}\"")))
            .count() as u64
    };
    assert_eq!(kinds("match"), n - n.div_ceil(3));
    assert_eq!(kinds("timeout"), n.div_ceil(3));
    assert!(run("1", "on") == off, "one worker, huge pages on");
    assert!(run("2", "on") == off, "two workers, huge pages on");
}

/// Processing time on a live input that goes quiet: the timeout is printed
/// when its timer is due, before the input ends (the reading thread waits
/// for input, the matching thread for the timer).
#[test]
fn processing_time_timeout_fires_on_a_quiet_pipe() {
    use std::io::{BufRead, BufReader, Write};
    use std::process::Stdio;
    use std::time::{Duration, Instant};
    let dir = TempDir::new("pt-quiet");
    let spec = dir.file(
        "pt.yaml",
        "key: id\nwithin: 300ms\nstages:\n  - {name: a, where: 't == \"a\"'}\n  - {name: b, contiguity: followed_by, where: 't == \"b\"'}\n",
    );
    let mut child = bin()
        .args(["match", "--input", "-", "--spec"])
        .arg(&spec)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    writeln!(stdin, r#"{{"id":"x","t":"a"}}"#).unwrap();
    stdin.flush().unwrap();
    let start = Instant::now();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    assert!(line.contains("\"kind\":\"timeout\""), "{line}");
    assert!(start.elapsed() < Duration::from_secs(20));
    // The input is still open: the timeout did not wait for its end.
    assert!(child.try_wait().unwrap().is_none());
    drop(stdin);
    assert!(child.wait().unwrap().success());
}

/// `skip_to_first: b` with `throw_exception_on_miss` over `a b? c`: a match
/// without `b` fails Flink's job, so the run stops with exit 1 and says
/// which pattern, stage and key; what came before it is written.
const THROWING_SPEC: &str = r#"{
  "key": "k",
  "time": {"field": "ts"},
  "skip": {"skip_to_first": "b", "throw_exception_on_miss": true},
  "stages": [
    {"name": "a", "where": "t == \"a\""},
    {"name": "b", "where": "t == \"b\"", "optional": true},
    {"name": "c", "where": "t == \"c\""}
  ]
}"#;

fn throwing_input(with_ts: bool) -> String {
    let rows = [
        ("k2", "a", 1000),
        ("k2", "b", 1100),
        ("k2", "c", 1200),
        ("k1", "a", 2000),
        ("k1", "c", 2100),
        ("k1", "x", 3000),
        ("k3", "a", 4000),
        ("k3", "b", 4100),
        ("k3", "c", 4200),
        ("k3", "x", 5000),
    ];
    rows.iter()
        .map(|(k, t, ts)| {
            if with_ts {
                format!("{{\"k\":\"{k}\",\"t\":\"{t}\",\"ts\":{ts}}}\n")
            } else {
                format!("{{\"k\":\"{k}\",\"t\":\"{t}\"}}\n")
            }
        })
        .collect()
}

#[track_caller]
fn assert_names_the_failure(run: &crate::util::Run) {
    assert_eq!(run.code, Some(1), "{}", run.stderr);
    let err = run.stderr.trim_end();
    assert!(err.starts_with("error: pattern 'skip': "), "{err}");
    assert!(err.contains("stage 'b' is missing"), "{err}");
    assert!(err.contains("for key \"k1\""), "{err}");
    assert!(
        err.ends_with("Could not skip to b. No such element in the found match {a, c}"),
        "{err}"
    );
}

#[test]
fn throw_exception_on_miss_stops_the_run_naming_pattern_stage_and_key() {
    let tmp = TempDir::new("throw");
    let spec = tmp.file("skip.json", THROWING_SPEC);
    let input = tmp.file("in.jsonl", &throwing_input(true));
    let k2 = r#""key":"k2""#;
    for workers in ["1", "3"] {
        let run = run_match(&spec, &input, &["--workers", workers]);
        assert_names_the_failure(&run);
        // The match before the failure is out.
        assert!(
            run.stdout.contains(k2),
            "--workers {workers}: {}",
            run.stdout
        );
        if workers == "1" {
            // Nothing after it ran (with several workers, another worker's
            // keys may run to the end of the failing chunk).
            assert_eq!(run.stdout.lines().count(), 1, "{}", run.stdout);
        }
    }
    // Processing time: the same, event by event.
    let spec = tmp.file(
        "skip.yaml",
        "key: k\nskip: {skip_to_first: b, throw_exception_on_miss: true}\nstages:\n  - {name: a, where: 't == \"a\"'}\n  - {name: b, where: 't == \"b\"', optional: true}\n  - {name: c, where: 't == \"c\"'}\n",
    );
    let input = tmp.file("pt.jsonl", &throwing_input(false));
    let run = run_match(&spec, &input, &[]);
    assert_names_the_failure(&run);
    assert_eq!(run.stdout.lines().count(), 1, "{}", run.stdout);
    assert!(run.stdout.contains(k2), "{}", run.stdout);
}
