//! `ferrocep run` with the Flink CEP features beyond the contract: a skip
//! strategy that throws on a miss (`throw_exception_on_miss`: where Flink
//! fails the job, the service sends the match to the `error` output, logs
//! it, and goes on), and `time.order_by` (Flink's `EventComparator`).

use std::time::Duration;

use crate::run::Service;
use crate::util::{json_lines, TempDir};

const SPEC: &str = r#"
name: skip
key: k
time: {field: ts}
skip: {skip_to_first: b, throw_exception_on_miss: true}
stages:
  - {name: a, where: 't == "a"'}
  - {name: b, where: 't == "b"', optional: true}
  - {name: c, where: 't == "c"'}
"#;

#[test]
fn a_missed_skip_goes_to_error_and_the_service_goes_on() {
    let dir = TempDir::new("run-parity-skip");
    dir.file("skip.yaml", SPEC);
    let rows = [
        ("k1", "a", 1000),
        ("k1", "c", 1100),
        ("k2", "a", 2000),
        ("k2", "b", 2100),
        ("k2", "c", 2200),
        ("k3", "a", 3000),
        ("k3", "c", 3100),
        ("k9", "x", 9000),
    ];
    let events: String = rows
        .iter()
        .map(|(k, t, ts)| format!("{{\"k\":\"{k}\",\"t\":\"{t}\",\"ts\":{ts}}}\n"))
        .collect();
    dir.file("events.jsonl", &events);
    let config = dir.file(
        "pipe.yaml",
        "name: skip\npatterns: [skip.yaml]\nsource: {type: file, path: events.jsonl}\n\
         outputs: {match: [{type: file, path: out/m.jsonl}], error: [{type: file, path: out/e.jsonl}]}\n\
         state: {dir: data}\n",
    );
    for workers in ["1", "2"] {
        let _ = std::fs::remove_dir_all(dir.path().join("out"));
        let _ = std::fs::remove_dir_all(dir.path().join("data"));
        let mut s = Service::start(dir.path(), &config, &["--workers", workers]);
        assert_eq!(s.wait(Duration::from_secs(30)), Some(0), "{}", s.stderr());
        let read = |f: &str| {
            json_lines(&std::fs::read_to_string(dir.path().join("out").join(f)).unwrap_or_default())
        };
        // The match after the first failure is there: the service went on.
        let matches = read("m.jsonl");
        assert_eq!(matches.len(), 1, "--workers {workers}: {matches:?}");
        assert_eq!(matches[0]["key"], "k2");
        let mut errors = read("e.jsonl");
        errors.sort_by_key(|e| e["key"].as_str().unwrap_or_default().to_string());
        assert_eq!(errors.len(), 2, "--workers {workers}: {errors:?}");
        for (e, key) in errors.iter().zip(["k1", "k3"]) {
            assert_eq!(e["kind"], "error");
            assert_eq!(e["pattern"], "skip");
            assert_eq!(e["key"], key);
            assert_eq!(e["stage"], "b");
            let reason = e["reason"].as_str().unwrap();
            assert!(
                reason.contains("Could not skip to b. No such element in the found match {a, c}"),
                "{reason}"
            );
            assert_eq!(e["events"]["a"].as_array().map(Vec::len), Some(1), "{e}");
            assert_eq!(e["events"]["c"].as_array().map(Vec::len), Some(1), "{e}");
            assert!(e["id"].as_str().unwrap().starts_with("skip:error:"), "{e}");
        }
        assert_ne!(errors[0]["id"], errors[1]["id"]);
        let log = s.stderr();
        assert!(
            log.contains("pattern 'skip', key \"k1\"") && log.contains("stage 'b'"),
            "{log}"
        );
    }
}

/// `time.order_by` sorts ties before matching in `run` too: `a` (p 1)
/// before `b` (p 2) at one timestamp, so `next` matches for `x` only.
#[test]
fn order_by_sorts_ties_in_run() {
    let dir = TempDir::new("run-parity-order");
    dir.file(
        "ties.yaml",
        "name: ties\nkey: k\ntime: {field: ts, order_by: [p]}\nstages:\n  - {name: a, where: 't == \"a\"'}\n  - {name: b, contiguity: next, where: 't == \"b\"'}\n",
    );
    dir.file(
        "events.jsonl",
        concat!(
            "{\"k\":\"x\",\"t\":\"b\",\"p\":2,\"ts\":10}\n",
            "{\"k\":\"x\",\"t\":\"a\",\"p\":1,\"ts\":10}\n",
            "{\"k\":\"y\",\"t\":\"b\",\"p\":1,\"ts\":10}\n",
            "{\"k\":\"y\",\"t\":\"a\",\"p\":2,\"ts\":10}\n",
            "{\"k\":\"x\",\"t\":\"z\",\"ts\":20}\n",
        ),
    );
    let config = dir.file(
        "pipe.yaml",
        "name: ties\npatterns: [ties.yaml]\nsource: {type: file, path: events.jsonl}\n\
         outputs: {match: [{type: file, path: out/m.jsonl}]}\nstate: {dir: data}\n",
    );
    for workers in ["1", "2"] {
        let _ = std::fs::remove_dir_all(dir.path().join("out"));
        let _ = std::fs::remove_dir_all(dir.path().join("data"));
        let mut s = Service::start(dir.path(), &config, &["--workers", workers]);
        assert_eq!(s.wait(Duration::from_secs(30)), Some(0), "{}", s.stderr());
        let out = std::fs::read_to_string(dir.path().join("out/m.jsonl")).unwrap_or_default();
        let m = json_lines(&out);
        assert_eq!(m.len(), 1, "--workers {workers}: {out}");
        assert_eq!(m[0]["key"], "x");
        assert_eq!(m[0]["events"]["a"][0]["p"], 1);
    }
}
