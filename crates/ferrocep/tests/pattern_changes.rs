//! Patterns changed while `ferrocep run` runs: the admin API (`PUT` and
//! `DELETE /patterns/NAME`), SIGHUP, draining, a SIGKILL after a change and
//! a restart in the middle of a drain, through the real binary.

use std::io::{Read, Write};
use std::path::Path;
use std::time::Duration;

use serde_json::Value;

use crate::run::{eventually, free_port, read_lines, Service};
use crate::util::{canon, json_lines, run_match, TempDir};

const SPEC_10S: &str = r#"
name: orders
key: order_id
time:
  field: ts
within: 10s
stages:
  - name: create
    where: type == "create"
  - name: pay
    contiguity: followed_by
    where: type == "pay"
"#;

/// A request over a real TCP connection: status and body.
fn request(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> Option<(u16, String)> {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(60))).ok()?;
    let mut head = format!(
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    s.write_all(head.as_bytes()).ok()?;
    let _ = s.write_all(body);
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    let text = String::from_utf8_lossy(&buf).into_owned();
    let code = text.split_whitespace().nth(1)?.parse().ok()?;
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_string())?;
    Some((code, body))
}

fn get_json(port: u16, path: &str) -> Option<Value> {
    let (code, body) = request(port, "GET", path, &[], b"")?;
    (code == 200)
        .then(|| serde_json::from_str(&body).ok())
        .flatten()
}

/// (name, version, state) of each running version.
fn versions(port: u16) -> Option<Vec<(String, u64, String)>> {
    let v = get_json(port, "/patterns")?;
    let mut list: Vec<(String, u64, String)> = v["patterns"]
        .as_array()?
        .iter()
        .map(|p| {
            (
                p["name"].as_str().unwrap_or("").to_string(),
                p["version"].as_u64().unwrap_or(0),
                p["state"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    list.sort();
    Some(list)
}

fn v(name: &str, version: u64, state: &str) -> (String, u64, String) {
    (name.to_string(), version, state.to_string())
}

fn append(path: &Path, lines: &[String]) {
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(path)
        .unwrap();
    for l in lines {
        writeln!(f, "{l}").unwrap();
    }
    f.sync_all().unwrap();
}

fn creates(from: u64, to: u64) -> Vec<String> {
    (from..to)
        .map(|i| {
            format!(
                "{{\"order_id\":\"o{i}\",\"type\":\"create\",\"ts\":{}}}",
                1_000 * (i + 1)
            )
        })
        .collect()
}

/// The output as `match` prints it: without `pattern`, `id`, `version`.
fn as_match(v: &Value) -> String {
    let mut v = v.clone();
    let o = v.as_object_mut().unwrap();
    for k in ["pattern", "id", "version"] {
        o.remove(k);
    }
    canon(&v)
}

/// The order-timeout window replaced from 10 s to 20 s mid-stream: orders
/// created before the change time out by the old window (version 1),
/// orders created after by the new one (version 2), each side
/// equal to a `match` run of its spec; the change survives a SIGKILL right
/// after its reply and a restart in the middle of the drain; the drained
/// version goes away; `DELETE ?pending=drop` sends pending partial matches
/// to `error`; SIGHUP brings the config's pattern back.
#[test]
fn replace_window_mid_stream_drains_and_survives_sigkill() {
    let dir = TempDir::new("run-change");
    dir.file("orders.yaml", SPEC_10S);
    let events = dir.path().join("events.jsonl");
    std::fs::write(&events, "").unwrap();
    let port = free_port();
    let config = dir.file(
        "pipe.yaml",
        &format!(
            "name: change\npatterns: [orders.yaml]\nsource: {{type: file, path: events.jsonl, follow: true}}\n\
             outputs: {{match: [{{type: file, path: out/match.jsonl}}], timeout: [{{type: file, path: out/timeout.jsonl}}],\n\
               late: [{{type: file, path: out/late.jsonl}}], error: [{{type: file, path: out/error.jsonl}}]}}\n\
             state: {{dir: data, checkpoint_interval: 1h}}\nserver: {{listen: '127.0.0.1:{port}'}}\n"
        ),
    );
    let metric = |name: &str| -> Option<String> {
        let (code, body) = request(port, "GET", "/metrics", &[], b"")?;
        (code == 200 && body.contains(name)).then_some(body)
    };
    let mut s = Service::start(dir.path(), &config, &[]);
    eventually(Duration::from_secs(20), "the server", || versions(port));
    let phase1 = creates(0, 10);
    append(&events, &phase1);
    eventually(Duration::from_secs(20), "phase 1 read", || {
        metric("ferrocep_events_in_total{source=\"file\"} 10")
    });

    // Pending counts are fresh: nine partial matches, and the tenth
    // create waits for the watermark.
    let listed = get_json(port, "/patterns").unwrap();
    assert_eq!(listed["patterns"][0]["pending_keys"], 10, "{listed}");
    assert_eq!(
        listed["patterns"][0]["pending_partial_matches"], 9,
        "{listed}"
    );

    // A bad spec is refused with its field path and changes nothing.
    let (code, body) = request(
        port,
        "PUT",
        "/patterns/orders",
        &[("Content-Type", "application/yaml")],
        SPEC_10S.replace("within: 10s", "within: soon").as_bytes(),
    )
    .unwrap();
    assert_eq!(code, 400, "{body}");
    assert!(body.contains("within"), "{body}");
    let (code, _) = request(
        port,
        "PUT",
        "/patterns/orders",
        &[("Content-Type", "text/csv")],
        b"x",
    )
    .unwrap();
    assert_eq!(code, 415);
    assert_eq!(versions(port).unwrap(), vec![v("orders", 1, "active")]);

    let spec_20s = SPEC_10S.replace("within: 10s", "within: 20s");
    let (code, body) = request(
        port,
        "PUT",
        "/patterns/orders",
        &[("Content-Type", "application/yaml")],
        spec_20s.as_bytes(),
    )
    .unwrap();
    assert_eq!(code, 200, "{body}");
    let done: Value = serde_json::from_str(&body).unwrap();
    let c = &done["changes"][0];
    assert_eq!(
        (
            c["action"].as_str(),
            c["version"].as_u64(),
            c["previous_state"].as_str()
        ),
        (Some("replaced"), Some(2), Some("draining")),
        "{done}"
    );
    assert!(done["checkpoint"].as_u64().is_some(), "{done}");
    // Answered means durable: a SIGKILL now keeps the change.
    s.signal("KILL");
    s.wait(Duration::from_secs(10));
    let mut s = Service::start(dir.path(), &config, &["--workers", "2"]);
    let want = vec![v("orders", 1, "draining"), v("orders", 2, "active")];
    eventually(
        Duration::from_secs(20),
        "both versions after the restart",
        || versions(port).filter(|l| *l == want),
    );

    let phase2 = creates(10, 20);
    append(&events, &phase2);
    // Restart in the middle of the drain.
    eventually(Duration::from_secs(20), "phase 2 read", || {
        metric("ferrocep_events_in_total{source=\"file\"} 10")
    });
    s.signal("TERM");
    assert_eq!(s.wait(Duration::from_secs(20)), Some(0), "{}", s.stderr());
    let mut s = Service::start(dir.path(), &config, &["--workers", "2"]);
    eventually(
        Duration::from_secs(20),
        "both versions after the second restart",
        || versions(port).filter(|l| *l == want),
    );
    // Time moves on: every window ends.
    let end = "{\"order_id\":\"end\",\"type\":\"create\",\"ts\":100000}".to_string();
    append(&events, std::slice::from_ref(&end));
    let timeouts = eventually(Duration::from_secs(20), "20 timeouts", || {
        let t = read_lines(&dir.path().join("out/timeout.jsonl"));
        (t.len() >= 20).then_some(t)
    });
    assert_eq!(timeouts.len(), 20);
    for t in &timeouts {
        let order: u64 = t["key"].as_str().unwrap()[1..].parse().unwrap();
        let created = 1_000 * (order + 1) as i64;
        let (window, version) = if order < 10 { (10_000, 1) } else { (20_000, 2) };
        assert_eq!(t["timeout_at"].as_i64(), Some(created + window), "{t}");
        // Draining, version 1 names itself too.
        assert_eq!(t["version"].as_u64(), Some(version), "{t}");
    }
    // Each side equals `match` with its spec alone.
    let v1_spec = dir.file("v1.yaml", SPEC_10S);
    let v2_spec = dir.file("v2.yaml", &spec_20s);
    let all: Vec<String> = phase1
        .iter()
        .chain(&phase2)
        .chain([&end])
        .cloned()
        .collect();
    let in1 = dir.file("in1.jsonl", &(all.join("\n") + "\n"));
    let in2 = dir.file(
        "in2.jsonl",
        &(phase2
            .iter()
            .chain([&end])
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
            + "\n"),
    );
    let r1 = run_match(&v1_spec, &in1, &["--end-of-input", "stop"]);
    let r2 = run_match(&v2_spec, &in2, &["--end-of-input", "stop"]);
    let first_order = |v: &Value| -> u64 {
        v["key"]
            .as_str()
            .unwrap()
            .trim_start_matches('o')
            .parse()
            .unwrap_or(u64::MAX)
    };
    let mut want: Vec<String> = json_lines(&r1.stdout)
        .iter()
        .filter(|v| first_order(v) < 10)
        .chain(
            json_lines(&r2.stdout)
                .iter()
                .filter(|v| first_order(v) >= 10 && first_order(v) < 20),
        )
        .map(as_match)
        .collect();
    want.sort();
    let mut got: Vec<String> = timeouts.iter().map(as_match).collect();
    got.sort();
    assert_eq!(got, want);

    // The old version has nothing pending: it goes away.
    eventually(
        Duration::from_secs(20),
        "the drained version retired",
        || versions(port).filter(|l| *l == vec![v("orders", 2, "active")]),
    );

    // Removing with pending=drop: the pending `end` order goes to error.
    let (code, body) = request(port, "DELETE", "/patterns/orders?pending=drop", &[], b"").unwrap();
    assert_eq!(code, 200, "{body}");
    let errors = eventually(Duration::from_secs(10), "the dropped partial match", || {
        let e = read_lines(&dir.path().join("out/error.jsonl"));
        (!e.is_empty()).then_some(e)
    });
    assert_eq!(errors[0]["key"], "end");
    assert!(errors[0]["reason"]
        .as_str()
        .unwrap()
        .contains("pending=drop"));
    assert_eq!(versions(port).unwrap(), vec![]);
    let (code, _) = request(port, "DELETE", "/patterns/orders", &[], b"").unwrap();
    assert_eq!(code, 404);
    assert!(metric("ferrocep_pattern_changes_total{action=\"removed\",via=\"api\"} 1").is_some());

    // SIGHUP: the config's pattern again.
    s.signal("HUP");
    eventually(Duration::from_secs(20), "SIGHUP applied", || {
        versions(port).filter(|l| *l == vec![v("orders", 1, "active")])
    });
    s.signal("TERM");
    assert_eq!(s.wait(Duration::from_secs(20)), Some(0), "{}", s.stderr());
}

/// The admin API's guards: a configured token is required, bodies are
/// size-limited, names and query parameters are checked.
#[test]
fn admin_api_requires_the_token() {
    let dir = TempDir::new("run-admin");
    dir.file("orders.yaml", SPEC_10S);
    dir.file("events.jsonl", "");
    dir.file("token", "s3cret\n");
    let port = free_port();
    let config = dir.file(
        "pipe.yaml",
        &format!(
            "name: admin\npatterns: [orders.yaml]\nsource: {{type: file, path: events.jsonl, follow: true}}\n\
             state: {{dir: data}}\nserver: {{listen: '127.0.0.1:{port}', admin: {{token_file: token, max_body: 2KiB}}}}\n"
        ),
    );
    let mut s = Service::start(dir.path(), &config, &[]);
    eventually(Duration::from_secs(20), "the server", || versions(port));
    let yaml = [("Content-Type", "application/yaml")];
    let put = |headers: &[(&str, &str)], path: &str, body: &[u8]| {
        request(port, "PUT", path, headers, body).unwrap().0
    };
    let spec = SPEC_10S.replace("name: orders", "name: big");
    assert_eq!(put(&yaml, "/patterns/big", spec.as_bytes()), 401);
    let auth = [
        ("Content-Type", "application/yaml"),
        ("Authorization", "Bearer wrong"),
    ];
    assert_eq!(put(&auth, "/patterns/big", spec.as_bytes()), 401);
    let auth = [
        ("Content-Type", "application/yaml"),
        ("Authorization", "Bearer s3cret"),
    ];
    assert_eq!(put(&auth, "/patterns/big", &vec![b' '; 4096]), 413);
    assert_eq!(
        put(&auth, "/patterns/other", spec.as_bytes()),
        400,
        "name differs from the path"
    );
    assert_eq!(
        put(&auth, "/patterns/big?pending=later", spec.as_bytes()),
        400
    );
    // `curl -d` sends a form type: the body says it is JSON.
    let form = [
        ("Content-Type", "application/x-www-form-urlencoded"),
        ("Authorization", "Bearer s3cret"),
    ];
    let json = r#"{"name":"big","key":"order_id","time":{"field":"ts"},"within":"5s",
        "stages":[{"name":"create","where":"type == \"create\""}]}"#;
    assert_eq!(put(&form, "/patterns/big", json.as_bytes()), 200);
    // Another window: version 2 (version 1 had nothing pending: gone).
    assert_eq!(put(&auth, "/patterns/big", spec.as_bytes()), 200);
    assert_eq!(
        versions(port).unwrap(),
        vec![v("big", 2, "active"), v("orders", 1, "active")]
    );
    s.signal("TERM");
    assert_eq!(s.wait(Duration::from_secs(20)), Some(0), "{}", s.stderr());
    // The added pattern is in the checkpoint: a restart runs it.
    let mut s = Service::start(dir.path(), &config, &[]);
    eventually(
        Duration::from_secs(20),
        "both patterns after restart",
        || versions(port).filter(|l| *l == vec![v("big", 2, "active"), v("orders", 1, "active")]),
    );
    s.signal("TERM");
    assert_eq!(s.wait(Duration::from_secs(20)), Some(0), "{}", s.stderr());
}
