//! `--workers N`: the key-partitioned pipeline gives the outputs of one
//! worker (as a multiset), the same bad-line reports with the same line
//! numbers, and the same `--strict` and end-of-input behaviour, on streams
//! large enough to span many input chunks, with disorder and late events.

use std::fmt::Write as _;
use std::time::Duration;

use crate::util::{bin, run_match, run_with_timeout, Run, TempDir};

/// Orders keyed by `order_id`, event time with 1 s of out-of-orderness.
const SPEC: &str = r#"{
  "name": "order-timeout",
  "key": "order_id",
  "time": {"field": "ts", "max_out_of_orderness": "1s"},
  "within": "5s",
  "skip": "skip_past_last_event",
  "stages": [
    {"name": "create", "where": "type == \"create\""},
    {"name": "pay", "contiguity": "followed_by", "where": "type == \"pay\" && amount > 0"}
  ]
}"#;

/// A deterministic pseudo-random source (64-bit LCG, high bits).
struct Rng(u64);

impl Rng {
    fn next(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 33) % n.max(1)
    }
}

/// An order stream of about `2 * orders` lines: creates, payments within or
/// after the window, some events delivered up to `disorder_ms` late (so some
/// are behind the watermark), equal timestamps, keys of every shape (short,
/// numeric, longer than the inline key, escaped), and, when `bad` is set,
/// bad lines of every kind now and then.
fn order_stream(orders: u64, seed: u64, disorder_ms: u64, bad: bool) -> String {
    let mut rng = Rng(seed);
    // (delivery time, sequence, line)
    let mut events: Vec<(u64, u64, String)> = Vec::new();
    let mut t: u64 = 1_700_000_000_000;
    for i in 0..orders {
        t += rng.next(40);
        let key = match i % 7 {
            0 => format!("{}", i % 5_000),
            1 => format!("\"a-rather-long-order-identifier-{}\"", i % 3_000),
            2 => format!("\"o\\u00e9-{}\"", i % 2_000),
            _ => format!("\"o-{}\"", i % 10_000),
        };
        let amount = rng.next(500) as i64 - 20;
        let delay = |rng: &mut Rng| {
            if disorder_ms == 0 {
                0
            } else {
                rng.next(disorder_ms + 1)
            }
        };
        let d = delay(&mut rng);
        events.push((
            t + d,
            events.len() as u64,
            format!(r#"{{"order_id": {key}, "type": "create", "ts": {t}, "amount": {amount}.5}}"#),
        ));
        if rng.next(10) < 7 {
            let pay_t = t + rng.next(6_500);
            let d = delay(&mut rng);
            events.push((
                pay_t + d,
                events.len() as u64,
                format!(r#"{{"order_id":{key},"type":"pay","ts":{pay_t},"amount":{amount}}}"#),
            ));
        }
    }
    events.sort();
    let mut out = String::new();
    for (n, (_, _, line)) in events.iter().enumerate() {
        if bad && n % 499 == 250 {
            let junk = [
                "not json",
                "[1, 2]",
                r#"{"type": "pay", "ts": 1700000000000}"#,
                r#"{"order_id": "o-1", "type": "pay"}"#,
                "",
                r#"{"order_id": "o-1", "type": "pay", "ts": "soon"}"#,
            ];
            out.push_str(junk[(n / 499) % junk.len()]);
            out.push('\n');
        }
        let _ = writeln!(out, "{line}");
    }
    out
}

fn sorted_lines(text: &str) -> Vec<&str> {
    let mut v: Vec<&str> = text.lines().collect();
    v.sort_unstable();
    v
}

fn count(run: &Run, kind: &str) -> usize {
    run.stdout
        .lines()
        .filter(|l| l.starts_with(&format!("{{\"kind\":\"{kind}\"")))
        .count()
}

/// Runs `input` with 1, 2 and 4 workers and checks that they agree; returns
/// the one-worker run.
fn agree(label: &str, input: &str, extra: &[&str]) -> Run {
    let tmp = TempDir::new(label);
    let spec = tmp.file("spec.json", SPEC);
    let input = tmp.file("in.jsonl", input);
    let with = |w: &str| {
        let mut args = extra.to_vec();
        args.extend(["--workers", w]);
        run_match(&spec, &input, &args)
    };
    let one = with("1");
    for w in ["2", "4"] {
        let many = with(w);
        assert_eq!(
            many.code, one.code,
            "{label}, --workers {w}: {}",
            many.stderr
        );
        assert_eq!(many.stderr, one.stderr, "{label}, --workers {w}");
        assert!(
            sorted_lines(&many.stdout) == sorted_lines(&one.stdout),
            "{label}, --workers {w}: outputs differ ({} vs {} lines)",
            many.stdout.lines().count(),
            one.stdout.lines().count()
        );
    }
    one
}

#[test]
fn in_order_stream_many_chunks() {
    let input = order_stream(12_000, 1, 0, false);
    assert!(input.len() > 3 * 256 * 1024, "spans several input chunks");
    let one = agree("inorder", &input, &[]);
    assert_eq!(one.code, Some(0));
    assert!(count(&one, "match") > 1_000 && count(&one, "timeout") > 1_000);
}

#[test]
fn disorder_and_late_events_both_end_modes() {
    let input = order_stream(12_000, 2, 1_500, false);
    for end in ["flush", "stop"] {
        let one = agree(&format!("disorder-{end}"), &input, &["--end-of-input", end]);
        assert_eq!(one.code, Some(0), "{}", one.stderr);
        assert!(count(&one, "late") > 100, "the stream has late events");
        assert!(count(&one, "match") > 1_000);
    }
}

#[test]
fn bad_lines_are_reported_alike() {
    let input = order_stream(12_000, 3, 500, true);
    let one = agree("badlines", &input, &[]);
    assert_eq!(one.code, Some(0));
    let reported = one.stderr.lines().count();
    assert!(reported > 20, "{reported} bad lines");
    assert!(one.stderr.lines().all(|l| l.starts_with("line ")));
}

#[test]
fn strict_stops_at_the_same_line() {
    // The first bad line is far into the input, past the first chunk.
    let mut input = order_stream(6_000, 4, 500, false);
    input.push_str("not json\n");
    input.push_str(&order_stream(6_000, 5, 500, false));
    let one = agree("strict", &input, &["--strict"]);
    assert_eq!(one.code, Some(1));
    assert!(
        one.stderr.contains("(stopped by --strict)"),
        "{}",
        one.stderr
    );
    assert!(count(&one, "match") > 100, "outputs before the bad line");
}

#[test]
fn standard_input_with_workers() {
    let input = order_stream(3_000, 6, 500, true);
    let tmp = TempDir::new("stdin-workers");
    let spec = tmp.file("spec.json", SPEC);
    let file = tmp.file("in.jsonl", &input);
    let from_file = run_match(&spec, &file, &["--workers", "1"]);
    let mut cmd = bin();
    cmd.args(["match", "--input", "-", "--workers", "3", "--spec"])
        .arg(&spec);
    let piped = run_with_timeout(cmd, Some(&input), Duration::from_secs(60));
    assert_eq!(piped.code, Some(0), "{}", piped.stderr);
    assert_eq!(piped.stderr, from_file.stderr);
    assert!(sorted_lines(&piped.stdout) == sorted_lines(&from_file.stdout));
}

#[test]
fn one_global_partition_without_key() {
    let spec_text = SPEC.replace("\"key\": \"order_id\",", "");
    let tmp = TempDir::new("nokey-workers");
    let spec = tmp.file("spec.json", &spec_text);
    let input = tmp.file("in.jsonl", &order_stream(2_000, 7, 300, false));
    let one = run_match(&spec, &input, &["--workers", "1"]);
    let four = run_match(&spec, &input, &["--workers", "4"]);
    assert_eq!(one.code, Some(0), "{}", one.stderr);
    assert!(count(&one, "match") > 0);
    assert!(!one.stdout.contains("\"key\""));
    assert!(sorted_lines(&one.stdout) == sorted_lines(&four.stdout));
}

#[test]
fn workers_must_be_positive() {
    let tmp = TempDir::new("workers-zero");
    let spec = tmp.file("spec.json", SPEC);
    let input = tmp.file("in.jsonl", "");
    let run = run_match(&spec, &input, &["--workers", "0"]);
    assert_eq!(run.code, Some(2), "{}", run.stderr);
}

#[test]
fn unreadable_input_exits_2_with_any_worker_count() {
    let tmp = TempDir::new("workers-unreadable");
    let spec = tmp.file("spec.json", SPEC);
    // A directory opens but cannot be read.
    for w in ["1", "4"] {
        let run = run_match(&spec, tmp.path(), &["--workers", w]);
        assert_eq!(run.code, Some(2), "--workers {w}: {}", run.stderr);
        assert!(run.stderr.contains("reading input"), "{}", run.stderr);
        assert_eq!(run.stdout, "");
    }
}

/// A small random keyed spec: one of three shapes (a window that times
/// out, a `not_followed_by` at the end that completes when its window
/// closes, a looping stage), with a random skip strategy, window and
/// out-of-orderness.
fn random_spec(rng: &mut Rng) -> String {
    const SKIPS: [&str; 5] = [
        "\"no_skip\"",
        "\"skip_to_next\"",
        "\"skip_past_last_event\"",
        "{\"skip_to_first\": \"a\"}",
        "{\"skip_to_last\": \"a\"}",
    ];
    let stages = match rng.next(3) {
        0 => {
            r#"[{"name": "a", "where": "type == \"a\""},
                 {"name": "b", "contiguity": "followed_by", "where": "type == \"b\""}]"#
        }
        1 => {
            r#"[{"name": "a", "where": "type == \"c\"", "times_or_more": 2},
                 {"name": "b", "contiguity": "next", "where": "v <= 4"},
                 {"name": "c", "contiguity": "not_followed_by", "where": "v < 2"}]"#
        }
        _ => {
            r#"[{"name": "a", "where": "type != \"b\"", "one_or_more": true},
                 {"name": "b", "contiguity": "followed_by_any", "where": "type == \"b\" && v > 3"}]"#
        }
    };
    format!(
        r#"{{"key": "k", "time": {{"field": "ts", "max_out_of_orderness": {}}},
            "within": {}, "skip": {}, "stages": {stages}}}"#,
        [0, 5, 20][rng.next(3) as usize],
        20 + rng.next(180),
        SKIPS[rng.next(5) as usize],
    )
}

/// Random events of 6 keys: timestamps that start around 0 (a partial match
/// starting at `ts <= 0` has no window timer in Flink), mostly increasing,
/// sometimes going back.
fn random_events(rng: &mut Rng) -> String {
    let mut ts = rng.next(100) as i64 - 60;
    let mut out = String::new();
    for id in 0..30 + rng.next(50) {
        ts += rng.next(40) as i64 - 8;
        let _ = writeln!(
            out,
            r#"{{"id": {id}, "type": "{}", "v": {}, "ts": {ts}, "k": "k{}"}}"#,
            ["a", "b", "c"][rng.next(3) as usize],
            rng.next(10),
            rng.next(6)
        );
    }
    out
}

/// Each worker holds only some keys and must still advance them through the
/// very watermarks of a single-threaded run: random small keyed cases agree
/// with 1, 2, 3 and 5 workers (`scripts/workers-diff.py` runs many more).
#[test]
fn random_keyed_cases_agree() {
    let tmp = TempDir::new("random-keyed");
    let mut rng = Rng(20_261_128);
    for case in 0..150 {
        let spec = tmp.file("spec.json", &random_spec(&mut rng));
        let input = tmp.file("in.jsonl", &random_events(&mut rng));
        let end = if rng.next(2) == 0 { "flush" } else { "stop" };
        let run = |w: &str| run_match(&spec, &input, &["--end-of-input", end, "--workers", w]);
        let one = run("1");
        assert_eq!(one.code, Some(0), "case {case}: {}", one.stderr);
        for w in ["2", "3", "5"] {
            let many = run(w);
            assert!(
                sorted_lines(&many.stdout) == sorted_lines(&one.stdout),
                "case {case}, --workers {w}: outputs differ\nspec: {}\ninput:\n{}",
                std::fs::read_to_string(&spec).unwrap(),
                std::fs::read_to_string(&input).unwrap()
            );
        }
    }
}

/// A live input (a pipe that stays open) shows each match once its
/// watermark has passed, with any number of workers, without waiting for
/// more input or the end.
#[test]
fn a_live_input_shows_matches_as_they_come() {
    use std::io::{BufRead, BufReader, Write};
    use std::process::Stdio;
    use std::sync::mpsc;
    use std::time::Duration;

    let tmp = TempDir::new("live");
    let spec = tmp.file("spec.json", SPEC);
    for workers in ["1", "2", "3"] {
        let mut child = bin()
            .args(["match", "--spec"])
            .arg(&spec)
            .args(["--input", "-", "--workers", workers])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("runs");
        let mut stdin = child.stdin.take().unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        // A paid order, then an event 2 s later: its watermark (1 s of
        // disorder allowed) passes the payment.
        for (i, line) in [
            r#"{"order_id":"a","type":"create","ts":1000}"#,
            r#"{"order_id":"a","type":"pay","ts":2000,"amount":5}"#,
            r#"{"order_id":"b","type":"create","ts":4000}"#,
        ]
        .iter()
        .enumerate()
        {
            writeln!(stdin, "{line}").unwrap();
            stdin.flush().unwrap();
            if i < 2 {
                // Separate reads, as a live source delivers them.
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        let first = rx.recv_timeout(Duration::from_secs(20));
        drop(stdin);
        let _ = child.wait();
        let _ = reader.join();
        let first = first
            .unwrap_or_else(|_| panic!("--workers {workers}: no output while the input was open"));
        assert!(
            first.starts_with("{\"kind\":\"match\""),
            "--workers {workers}: {first}"
        );
    }
}
