//! Every conformance case (real Flink CEP's output for a spec and an input)
//! through `ferrocep match`, compared as `conformance/check.py` compares
//! them: as multisets of normalised outputs (`util::normalize`).
//!
//! The cases are vendored in the repository's `conformance/cases/`, copied
//! unchanged from the project's shared checkout (`../shared/conformance`), so
//! `cargo test --workspace` needs nothing outside the repository.
//! `FERROCEP_CONFORMANCE_DIR` runs another folder instead (one holding
//! `cases/`, or a folder of case files such as `gen_random.py`'s output).
//! When the shared checkout sits next to the repository, its cases that the
//! vendored copy lacks or holds differently run too
//! (`shared_conformance_extra_cases`); `FERROCEP_NO_SHARED=1` turns that off,
//! to prove the repository stands on its own. `FERROCEP_CONFORMANCE_FILTER`
//! keeps only the cases whose file name contains it. A missing folder or an
//! empty one fails the test: it never passes by running nothing.
//!
//! Each case runs with one worker and with four (`--workers`), the key-
//! partitioned pipeline; `FERROCEP_WORKERS` (e.g. `1` or `1,2,4`) sets the
//! worker counts to run.
//!
//! The repository's own cases (`tests/cases/`, recorded from Flink the same
//! way) run too, with 1 to 5 workers.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use serde_json::value::RawValue;
use serde_json::Value;

use crate::util::{bin, run_with_timeout, same_multiset, TempDir};

/// The vendored cases: `conformance/` at the repository root.
fn vendored_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../conformance")
}

/// The shared checkout's cases next to the repository, when they are there
/// and neither `FERROCEP_CONFORMANCE_DIR` nor `FERROCEP_NO_SHARED` is set.
fn shared_dir() -> Option<PathBuf> {
    if std::env::var_os("FERROCEP_CONFORMANCE_DIR").is_some()
        || std::env::var_os("FERROCEP_NO_SHARED").is_some_and(|v| !v.is_empty() && v != "0")
    {
        return None;
    }
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/conformance/cases");
    dir.is_dir().then_some(dir)
}

/// The folder of cases to run: `FERROCEP_CONFORMANCE_DIR` or the vendored one.
fn conformance_dir() -> PathBuf {
    match std::env::var_os("FERROCEP_CONFORMANCE_DIR") {
        Some(d) => PathBuf::from(d),
        None => vendored_dir(),
    }
}

fn case_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let entries = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("cannot read conformance folder {}: {e}", dir.display()));
    for entry in entries {
        let path = entry.unwrap().path();
        if path.is_dir() {
            case_files(&path, out);
        } else if path.extension().is_some_and(|x| x == "json") {
            out.push(path);
        }
    }
}

/// Re-spaces compact or indented JSON text as Python's `json.dumps(value)`
/// writes it (`", "` and `": "` separators), keeping key order and number
/// text: the events file then holds the very bytes `check.py` would write.
fn python_dumps_layout(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    let mut in_string = false;
    let mut escaped = false;
    for c in raw.chars() {
        if in_string {
            out.push(c);
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_string = false;
            }
            continue;
        }
        match c {
            '"' => {
                in_string = true;
                out.push(c);
            }
            ' ' | '\n' | '\r' | '\t' => {}
            ',' => out.push_str(", "),
            ':' => out.push_str(": "),
            _ => out.push(c),
        }
    }
    out
}

/// The worker counts each case runs with.
fn worker_counts() -> Vec<String> {
    match std::env::var("FERROCEP_WORKERS") {
        Ok(list) => list
            .split(',')
            .map(|w| w.trim().to_string())
            .filter(|w| !w.is_empty())
            .collect(),
        Err(_) => vec!["1".to_string(), "4".to_string()],
    }
}

/// Runs one case with each worker count; `Err` says why it fails.
fn run_case(path: &Path, workers: &[String]) -> Result<(), String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("cannot read: {e}"))?;
    let case: serde_json::Map<String, Value> =
        serde_json::from_str(&text).map_err(|e| format!("not a case file: {e}"))?;
    let raw: std::collections::HashMap<String, &RawValue> =
        serde_json::from_str(&text).map_err(|e| format!("not a case file: {e}"))?;
    let spec = raw.get("spec").ok_or("no spec")?;
    let events: Vec<&RawValue> = serde_json::from_str(raw.get("events").ok_or("no events")?.get())
        .map_err(|e| format!("events: {e}"))?;
    let expected = case
        .get("expected")
        .and_then(Value::as_array)
        .ok_or("no expected outputs")?;
    let end = case
        .get("end_of_input")
        .and_then(Value::as_str)
        .unwrap_or("flush");

    let tmp = TempDir::new("case");
    let spec_path = tmp.file("spec.json", spec.get());
    let mut lines = String::new();
    for e in events {
        lines.push_str(&python_dumps_layout(e.get()));
        lines.push('\n');
    }
    let events_path = tmp.file("events.jsonl", &lines);

    for w in workers {
        let mut cmd = bin();
        cmd.arg("match")
            .arg("--spec")
            .arg(&spec_path)
            .arg("--input")
            .arg(&events_path)
            .arg("--end-of-input")
            .arg(end)
            .arg("--workers")
            .arg(w);
        let run = run_with_timeout(cmd, None, Duration::from_secs(30));
        if run.code != Some(0) {
            let err: String = run.stderr.trim().chars().take(300).collect();
            return Err(format!("--workers {w}: exit {:?}: {err}", run.code));
        }
        same_multiset(expected, &run.stdout).map_err(|e| format!("--workers {w}: {e}"))?;
    }
    Ok(())
}

#[test]
fn flink_conformance_cases() {
    let dir = conformance_dir();
    assert!(
        dir.is_dir(),
        "conformance folder {} is missing (the repository's `conformance/`, or \
         FERROCEP_CONFORMANCE_DIR)",
        dir.display()
    );
    let cases_dir = if dir.join("cases").is_dir() {
        dir.join("cases")
    } else {
        dir.clone()
    };
    run_cases(&cases_dir, &worker_counts());
}

/// The shared checkout's cases that the vendored copy lacks or holds
/// differently (cases added there since the copy); skipped, with a note,
/// when there is no shared checkout or it holds nothing new.
#[test]
fn shared_conformance_extra_cases() {
    let Some(shared) = shared_dir() else {
        println!("shared conformance: not used (no ../shared/conformance, or overridden)");
        return;
    };
    let vendored = vendored_dir().join("cases");
    let mut paths = Vec::new();
    case_files(&shared, &mut paths);
    paths.retain(|p| {
        let rel = p.strip_prefix(&shared).unwrap_or(p);
        std::fs::read(vendored.join(rel)).ok() != std::fs::read(p).ok()
    });
    keep_filtered(&mut paths);
    if paths.is_empty() {
        println!(
            "shared conformance: {} holds no case beyond the vendored copy",
            shared.display()
        );
        return;
    }
    paths.sort();
    run_paths(&shared, paths, &worker_counts());
}

/// This repository's own cases, recorded from real Flink through the oracle
/// (see `tests/cases/README.md`), with 1 to 5 workers: each worker then sees
/// only some keys' events, and must still see every watermark that matters.
#[test]
fn recorded_flink_cases() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/cases");
    let workers: Vec<String> = (1..=5).map(|w| w.to_string()).collect();
    run_cases(&dir, &workers);
}

/// Keeps the paths that contain `FERROCEP_CONFORMANCE_FILTER`, when set.
fn keep_filtered(paths: &mut Vec<PathBuf>) {
    if let Ok(filter) = std::env::var("FERROCEP_CONFORMANCE_FILTER") {
        paths.retain(|p| p.to_string_lossy().contains(&filter));
    }
}

/// Runs every case below `cases_dir` (filtered by
/// `FERROCEP_CONFORMANCE_FILTER`) with each worker count, in parallel.
fn run_cases(cases_dir: &Path, worker_counts: &[String]) {
    let mut paths = Vec::new();
    case_files(cases_dir, &mut paths);
    paths.sort();
    run_paths(cases_dir, paths, worker_counts);
}

/// Runs the case files `paths` (below `cases_dir`, which names them in
/// messages; filtered by `FERROCEP_CONFORMANCE_FILTER`) with each worker
/// count, in parallel.
fn run_paths(cases_dir: &Path, mut paths: Vec<PathBuf>, worker_counts: &[String]) {
    keep_filtered(&mut paths);
    assert!(
        !paths.is_empty(),
        "no conformance case (*.json) under {}",
        cases_dir.display()
    );

    let next = AtomicUsize::new(0);
    let failures = Mutex::new(Vec::new());
    let workers = std::thread::available_parallelism().map_or(2, |n| n.get().min(4));
    std::thread::scope(|s| {
        for _ in 0..workers {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(path) = paths.get(i) else { break };
                if let Err(why) = run_case(path, worker_counts) {
                    let name = path.strip_prefix(cases_dir).unwrap_or(path);
                    failures
                        .lock()
                        .unwrap()
                        .push(format!("FAIL {}: {why}", name.display()));
                }
            });
        }
    });
    let mut failures = failures.into_inner().unwrap();
    failures.sort();
    let summary = format!(
        "conformance: {} passed, {} failed ({}; --workers {})",
        paths.len() - failures.len(),
        failures.len(),
        cases_dir.display(),
        worker_counts.join(", ")
    );
    println!("{summary}");
    assert!(failures.is_empty(), "{}\n{summary}", failures.join("\n"));
}

#[test]
fn python_layout_matches_json_dumps() {
    let raw = "{\n \"k\": \"a, b: c\",\n \"n\": [\n  1,\n  2.50\n ],\n \"q\": \"x\\\"y\"\n}";
    assert_eq!(
        python_dumps_layout(raw),
        r#"{"k": "a, b: c", "n": [1, 2.50], "q": "x\"y"}"#
    );
}

/// `util::normalize` follows check.py's rules on the points where a Rust
/// re-implementation could drift: key order and spacing, falsy `events`,
/// numeric `timeout_at`.
#[test]
fn normalize_follows_check_py() {
    use crate::util::normalize;
    let n = |t: &str| normalize(&serde_json::from_str(t).unwrap());
    assert_eq!(
        n(r#"{"kind":"match","key":{"b":1,"a":2},"events":{"s":[{"y":1,"x":2}]}}"#),
        n(r#"{"events": {"s": [{"x": 2, "y": 1}]}, "key": {"a": 2, "b": 1}, "kind": "match"}"#)
    );
    assert_ne!(
        n(r#"{"kind":"match","key":1,"events":{"s":[{"v":1}]}}"#),
        n(r#"{"kind":"match","key":1,"events":{"s":[{"v":1.0}]}}"#)
    );
    for falsy in ["null", "false", "0", "\"\"", "[]", "{}"] {
        assert_eq!(
            n(&format!(r#"{{"kind":"match","events":{falsy}}}"#)),
            n(r#"{"kind":"match"}"#),
            "{falsy}"
        );
    }
    assert!(n(r#"{"kind":"match","events":[1]}"#).is_err());
    assert_eq!(
        n(r#"{"kind":"timeout","events":{},"timeout_at":5}"#),
        n(r#"{"kind":"timeout","events":{},"timeout_at":5.0}"#)
    );
    assert_eq!(
        n(r#"{"kind":"match","events":{},"timeout_at":5}"#),
        n(r#"{"kind":"match","events":{}}"#)
    );
    assert!(n("[1]").is_err());
}

/// The vendored checker itself, `python3 conformance/check.py BIN DIR`, on
/// the vendored edge cases: the command the README gives works from a clone.
/// Skipped, with a note, where Python 3 is not installed.
#[test]
fn vendored_check_py_runs() {
    let python = std::process::Command::new("python3")
        .arg("--version")
        .output();
    if !python.is_ok_and(|o| o.status.success()) {
        println!("vendored check.py: skipped, no python3");
        return;
    }
    let root = vendored_dir();
    let out = std::process::Command::new("python3")
        .arg(root.join("check.py"))
        .arg(env!("CARGO_BIN_EXE_ferrocep"))
        .arg(root.join("cases/edges"))
        .output()
        .expect("python3 runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("conformance:") && stdout.contains(" 0 failed"),
        "check.py failed: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
