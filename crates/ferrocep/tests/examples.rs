//! The spec files in `examples/` on their sample inputs give the outputs
//! recorded next to them (`NAME.expected.jsonl`, recorded with the Flink
//! oracle), and every spec there is covered.

use std::path::Path;

use crate::util::{json_lines, repo_root, run_match, same_multiset};

/// (spec, sample input) under `examples/`; expected output in
/// `examples/<spec stem>.expected.jsonl`.
const EXAMPLES: &[(&str, &str)] = &[
    ("order-timeout.yaml", "order-events.jsonl"),
    ("order-timeout-demo.yaml", "orders-sample.jsonl"),
    ("order-timeout-live.yaml", "orders-live-sample.jsonl"),
    ("login-failures.yaml", "logins-sample.jsonl"),
];

fn check(spec: &str, input: &str) -> String {
    let dir = repo_root().join("examples");
    let stem = Path::new(spec).file_stem().unwrap().to_str().unwrap();
    let expected = std::fs::read_to_string(dir.join(format!("{stem}.expected.jsonl")))
        .unwrap_or_else(|e| panic!("examples/{stem}.expected.jsonl: {e}"));
    let run = run_match(&dir.join(spec), &dir.join(input), &[]);
    assert_eq!(run.code, Some(0), "{spec}: {}", run.stderr);
    if let Err(why) = same_multiset(&json_lines(&expected), &run.stdout) {
        panic!("{spec} on {input}: {why}\n{}", run.stdout);
    }
    run.stderr
}

#[test]
fn production_order_timeout() {
    let stderr = check("order-timeout.yaml", "order-events.jsonl");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.starts_with("line 11: "), "{stderr}");
}

#[test]
fn order_timeout_demo_spec() {
    let stderr = check("order-timeout-demo.yaml", "orders-sample.jsonl");
    assert_eq!(stderr, "");
}

#[test]
fn login_failures_spec() {
    let stderr = check("login-failures.yaml", "logins-sample.jsonl");
    assert_eq!(stderr, "");
}

#[test]
fn order_timeout_live_spec() {
    let stderr = check("order-timeout-live.yaml", "orders-live-sample.jsonl");
    assert_eq!(stderr, "");
}

/// Every pipeline config in `examples/pipelines/` validates.
#[test]
fn example_pipelines_validate() {
    let dir = repo_root().join("examples/pipelines");
    let mut n = 0;
    for e in std::fs::read_dir(&dir).unwrap() {
        let path = e.unwrap().path();
        if path.extension().is_some_and(|x| x == "yaml") {
            let out = crate::util::bin()
                .arg("validate")
                .arg("--config")
                .arg(&path)
                .output()
                .unwrap();
            assert!(
                out.status.success(),
                "{}: {}",
                path.display(),
                String::from_utf8_lossy(&out.stderr)
            );
            n += 1;
        }
    }
    assert!(n >= 2);
}

#[test]
fn every_example_spec_is_checked() {
    let dir = repo_root().join("examples");
    let mut specs: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| n.ends_with(".yaml") || n.ends_with(".yml"))
        .collect();
    specs.sort();
    let mut covered: Vec<String> = EXAMPLES.iter().map(|(s, _)| s.to_string()).collect();
    covered.sort();
    assert_eq!(specs, covered, "add new example specs to EXAMPLES");
}
