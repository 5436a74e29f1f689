//! `ferrocep validate --config FILE`: exit 0 and a summary for a good
//! config (also the example pipeline); exit 2 with every error on stderr,
//! each line naming the file, the field path and the reason.

use std::time::Duration;

use crate::util::{bin, repo_root, run_with_timeout, Run, TempDir};

const SPEC: &str = "name: order-timeout\nkey: order_id\ntime: {field: ts}\nwithin: 10m\n\
stages:\n  - name: create\n    where: type == \"create\"\n  - name: pay\n    where: type == \"pay\"\n";

fn validate(config: &std::path::Path) -> Run {
    let mut cmd = bin();
    cmd.arg("validate").arg("--config").arg(config);
    run_with_timeout(cmd, None, Duration::from_secs(60))
}

#[test]
fn a_good_config_prints_a_summary() {
    let dir = TempDir::new("validate-good");
    dir.file("order-timeout.yaml", SPEC);
    let config = dir.file(
        "pipe.yaml",
        "name: order-timeout\npatterns: [order-timeout.yaml]\n\
source: {type: http, listen: '127.0.0.1:8080'}\n\
outputs:\n  match: [{type: stdout}]\n  timeout: [{type: webhook, url: 'http://127.0.0.1:9000/notify'}, {type: file, path: out/t.jsonl}]\n  late: []\n",
    );
    let run = validate(&config);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert_eq!(
        run.stdout,
        "ok: order-timeout: 1 pattern (order-timeout), source http 127.0.0.1:8080/events, \
outputs match→stdout timeout→webhook,file late→none error→stderr\n"
    );
    assert_eq!(run.stderr, "");
}

#[test]
fn a_good_json_config() {
    let dir = TempDir::new("validate-json");
    dir.file("order-timeout.yaml", SPEC);
    let config = dir.file(
        "pipe.json",
        r#"{"name": "p", "patterns": ["order-timeout.yaml", {"name": "inline", "stages": [{"name": "a"}]}],
            "source": {"type": "stdin"}, "server": {"listen": "127.0.0.1:9464"}}"#,
    );
    let run = validate(&config);
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert_eq!(
        run.stdout,
        "ok: p: 2 patterns (order-timeout, inline), source stdin, outputs match→stdout \
timeout→stdout late→stderr error→stderr, server 127.0.0.1:9464\n"
    );
}

#[test]
fn the_example_pipeline_validates() {
    let run = validate(&repo_root().join("examples/pipelines/order-timeout.yaml"));
    assert_eq!(run.code, Some(0), "{}", run.stderr);
    assert!(
        run.stdout
            .starts_with("ok: order-timeout: 1 pattern (order-timeout), source generator orders"),
        "{}",
        run.stdout
    );
}

#[test]
fn every_error_names_file_field_and_reason() {
    let dir = TempDir::new("validate-bad");
    dir.file("order-timeout.yaml", SPEC);
    let config = dir.file(
        "pipe.yaml",
        "name: order-timeout\n\
patterns: [order-timeout.yaml, missing.yaml]\n\
source:\n  type: nats\n\
outputs:\n  timeout:\n    - {type: webhook, url: 'ftp://x', batch: 0}\n    - {type: file, path: out/t.jsonl, colour: red}\n\
state: {checkpoint_interval: 0s}\n\
surprise: true\n",
    );
    let run = validate(&config);
    assert_eq!(run.code, Some(2), "{}", run.stdout);
    assert_eq!(run.stdout, "");
    let f = config.display().to_string();
    let lines: Vec<&str> = run.stderr.lines().collect();
    let expect = [
        (
            format!("{f}:2:"),
            "patterns[1]: ",
            "missing.yaml: cannot read the spec",
        ),
        (
            format!("{f}:4:9"),
            "source.type: ",
            "unknown source type 'nats'",
        ),
        (
            format!("{f}:7:"),
            "outputs.timeout[0].url: ",
            "not an http(s) URL: 'ftp://x'",
        ),
        (
            format!("{f}:7:"),
            "outputs.timeout[0].batch: ",
            "must be at least 1",
        ),
        (
            format!("{f}:8:"),
            "outputs.timeout[1].colour: ",
            "unknown field `colour`",
        ),
        (
            format!("{f}:9:"),
            "state.checkpoint_interval: ",
            "must be more than 0",
        ),
        (format!("{f}:10:"), "surprise: ", "unknown field `surprise`"),
    ];
    assert_eq!(lines.len(), expect.len() + 1, "{}", run.stderr);
    for (line, (at, path, reason)) in lines.iter().zip(&expect) {
        assert!(line.starts_with(at.as_str()), "{line} (expected {at})");
        assert!(line.contains(path), "{line} (expected {path})");
        assert!(line.contains(reason), "{line} (expected {reason})");
    }
    assert_eq!(lines[7], format!("error: {f}: 7 errors in the config"));
}

#[test]
fn json_errors_name_file_and_field() {
    let dir = TempDir::new("validate-bad-json");
    dir.file("order-timeout.yaml", SPEC);
    let config = dir.file(
        "pipe.json",
        r#"{"name": "p", "patterns": ["order-timeout.yaml"], "source": {"type": "http", "listen": "nowhere"}}"#,
    );
    let run = validate(&config);
    assert_eq!(run.code, Some(2));
    let f = config.display();
    assert_eq!(
        run.stderr,
        format!(
            "{f}: source.listen: not an address to listen on (IP:PORT, e.g. 127.0.0.1:8080): 'nowhere'\n\
             error: {f}: 1 error in the config\n"
        )
    );
}

#[test]
fn a_missing_or_broken_file() {
    let dir = TempDir::new("validate-missing");
    let run = validate(&dir.path().join("nope.yaml"));
    assert_eq!(run.code, Some(2));
    assert!(
        run.stderr.contains("nope.yaml: cannot read the config"),
        "{}",
        run.stderr
    );
    let config = dir.file("broken.yaml", "name: [\n");
    let run = validate(&config);
    assert_eq!(run.code, Some(2));
    assert!(
        run.stderr.starts_with(&format!("{}:", config.display()))
            && run.stderr.contains("invalid yaml"),
        "{}",
        run.stderr
    );
}

#[test]
fn config_is_required() {
    let mut cmd = bin();
    cmd.arg("validate");
    let run = run_with_timeout(cmd, None, Duration::from_secs(60));
    assert_eq!(run.code, Some(2));
    assert!(run.stderr.contains("--config"), "{}", run.stderr);
}
