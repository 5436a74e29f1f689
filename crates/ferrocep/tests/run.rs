//! `ferrocep run` end to end: the real binary, real files, a real webhook
//! receiver and real HTTP clients on loopback, real signals.

use std::collections::BTreeSet;
use std::io::Write;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::util::{bin, json_lines, repo_root, run_match, TempDir};

/// A `run` in the background, killed on drop.
pub struct Service {
    child: Option<Child>,
    stderr: PathBuf,
}

impl Service {
    /// Starts `ferrocep run --config CONFIG` with stdout and stderr in files
    /// of `dir`.
    pub fn start(dir: &Path, config: &Path, extra: &[&str]) -> Service {
        let stdout = std::fs::File::create(dir.join("stdout.txt")).unwrap();
        let stderr_path = dir.join("stderr.txt");
        let stderr = std::fs::File::create(&stderr_path).unwrap();
        let child = bin()
            .arg("run")
            .arg("--config")
            .arg(config)
            .args(extra)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr)
            .spawn()
            .expect("the ferrocep binary starts");
        Service {
            child: Some(child),
            stderr: stderr_path,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }

    /// Sends `signal` (`TERM`, `INT`, `KILL`).
    pub fn signal(&self, signal: &str) {
        let ok = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.pid().to_string())
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill -{signal} failed");
    }

    /// Waits for the process to exit; its status code.
    pub fn wait(&mut self, timeout: Duration) -> Option<i32> {
        let child = self.child.as_mut().unwrap();
        let start = Instant::now();
        loop {
            if let Some(s) = child.try_wait().unwrap() {
                self.child = None;
                return s.code();
            }
            if start.elapsed() > timeout {
                panic!(
                    "ferrocep run did not exit within {timeout:?}; stderr:\n{}",
                    self.stderr()
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// The seed of the random kill moments: `FERROCEP_TEST_SEED` to replay a
/// failure, else new each run (printed, so a failure says how to replay it).
pub fn test_seed() -> u64 {
    let seed = std::env::var("FERROCEP_TEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(1, |d| d.subsec_nanos() as u64)
        });
    eprintln!("kill moments from seed {seed} (FERROCEP_TEST_SEED={seed} replays them)");
    seed
}

/// A free port on loopback.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Waits until `f` returns `Some`, or panics after `timeout` with `what`.
pub fn eventually<T>(timeout: Duration, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return v;
        }
        if start.elapsed() > timeout {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

pub fn read_lines(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .map(|t| json_lines(&t))
        .unwrap_or_default()
}

/// An output line as `match` prints it: without `pattern` and `id`.
fn as_match(v: &Value) -> String {
    let mut v = v.clone();
    let o = v.as_object_mut().unwrap();
    o.remove("pattern");
    o.remove("id");
    crate::util::canon(&v)
}

const SPEC: &str = r#"
name: orders
key: order_id
time:
  field: ts
  max_out_of_orderness: 1s
within: 10s
stages:
  - name: create
    where: type == "create"
  - name: pay
    contiguity: followed_by
    where: type == "pay"
"#;

/// A file source replayed to its end into file sinks gives `match`'s
/// outputs, each with its pattern and a unique id, and exits 0.
#[test]
fn file_to_file_equals_match() {
    let dir = TempDir::new("run-file");
    let spec = repo_root().join("examples/order-timeout.yaml");
    let input = repo_root().join("examples/order-events.jsonl");
    let config = dir.file(
        "pipe.yaml",
        &format!(
            "name: t\npatterns: [{}]\nsource: {{type: file, path: {}}}\n\
             outputs:\n  match: [{{type: file, path: out/all.jsonl}}]\n  \
             timeout: [{{type: file, path: out/timeouts.jsonl}}]\n  late: [{{type: file, path: out/late.jsonl}}]\n  \
             error: [{{type: file, path: out/errors.jsonl}}]\nstate: {{dir: data}}\n",
            spec.display(),
            input.display()
        ),
    );
    for workers in ["1", "2", "3"] {
        let _ = std::fs::remove_dir_all(dir.path().join("out"));
        let _ = std::fs::remove_dir_all(dir.path().join("data"));
        let mut s = Service::start(dir.path(), &config, &["--workers", workers]);
        assert_eq!(s.wait(Duration::from_secs(30)), Some(0), "{}", s.stderr());
        check_file_outputs(dir.path(), &spec, &input, workers);
    }
}

/// The outputs of `file_to_file_equals_match` against `match`'s.
fn check_file_outputs(dir: &Path, spec: &Path, input: &Path, workers: &str) {
    let out = dir.join("out");
    let mut got: Vec<Value> = Vec::new();
    for f in ["all.jsonl", "timeouts.jsonl", "late.jsonl"] {
        got.extend(read_lines(&out.join(f)));
    }
    let errors = read_lines(&out.join("errors.jsonl"));
    assert_eq!(errors.len(), 1, "--workers {workers}: {errors:?}");
    assert_eq!(errors[0]["raw"], "this line is not JSON");
    assert_eq!(errors[0]["kind"], "error");
    let want = run_match(spec, input, &["--workers", "1"]);
    let mut want: Vec<String> = json_lines(&want.stdout).iter().map(as_match).collect();
    let mut got_m: Vec<String> = got.iter().map(as_match).collect();
    want.sort();
    got_m.sort();
    assert_eq!(got_m, want, "--workers {workers}");
    let ids: BTreeSet<&str> = got.iter().map(|v| v["id"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), got.len(), "ids are unique");
    assert!(got.iter().all(|v| v["pattern"] == "order-timeout"));
}

/// The quiet-stream rule through the binary: a create is appended to a
/// followed file, nothing more arrives, and its timeout reaches the file
/// sink about window + idle_timeout later; SIGTERM then stops with exit 0.
#[test]
fn quiet_stream_timeout_fires_and_sigterm_stops() {
    let dir = TempDir::new("run-quiet");
    dir.file("orders.yaml", SPEC);
    let events = dir.file("events.jsonl", "");
    let config = dir.file(
        "pipe.yaml",
        "name: quiet\npatterns: [orders.yaml]\nsource: {type: file, path: events.jsonl, follow: true}\n\
         outputs: {match: [{type: file, path: out/m.jsonl}], timeout: [{type: file, path: out/t.jsonl}]}\n\
         time: {idle_timeout: 1s}\nstate: {dir: data}\n",
    );
    let mut s = Service::start(dir.path(), &config, &[]);
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&events)
        .unwrap();
    // Event time far from the wall clock: only the idle rule can fire it.
    writeln!(f, r#"{{"order_id":"a","type":"create","ts":1000}}"#).unwrap();
    writeln!(f, r#"{{"order_id":"b","type":"create","ts":2000}}"#).unwrap();
    writeln!(f, r#"{{"order_id":"b","type":"pay","ts":3000}}"#).unwrap();
    let written = Instant::now();
    let matches = eventually(Duration::from_secs(10), "the match", || {
        Some(read_lines(&dir.path().join("out/m.jsonl"))).filter(|v| !v.is_empty())
    });
    assert_eq!(matches[0]["key"], "b");
    // Watermark 1_999 after the events; a's window ends at 11_000: due
    // 1 s (idle) + 9 s of quiet later.
    let timeouts = eventually(Duration::from_secs(30), "the quiet-stream timeout", || {
        Some(read_lines(&dir.path().join("out/t.jsonl"))).filter(|v| !v.is_empty())
    });
    let after = written.elapsed();
    assert_eq!(timeouts.len(), 1);
    assert_eq!(timeouts[0]["key"], "a");
    assert_eq!(timeouts[0]["timeout_at"], 11000);
    assert!(
        after >= Duration::from_secs(9),
        "fired after {after:?}, before the window could end by the idle rule"
    );
    s.signal("TERM");
    assert_eq!(s.wait(Duration::from_secs(20)), Some(0), "{}", s.stderr());
}

/// Processing time: the timeout fires by the wall clock with no more input.
#[test]
fn processing_time_timeout_fires_by_the_wall_clock() {
    let dir = TempDir::new("run-pt");
    dir.file(
        "pt.yaml",
        "name: pt\nkey: order_id\nwithin: 1s\nstages:\n  - {name: create, where: 'type == \"create\"'}\n  - {name: pay, contiguity: followed_by, where: 'type == \"pay\"'}\n",
    );
    let events = dir.file("events.jsonl", "");
    let config = dir.file(
        "pipe.yaml",
        "name: pt\npatterns: [pt.yaml]\nsource: {type: file, path: events.jsonl, follow: true}\n\
         outputs: {timeout: [{type: file, path: out/t.jsonl}]}\n",
    );
    let mut s = Service::start(dir.path(), &config, &[]);
    std::thread::sleep(Duration::from_millis(300));
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&events)
        .unwrap();
    writeln!(f, r#"{{"order_id":"x","type":"create"}}"#).unwrap();
    let t = eventually(
        Duration::from_secs(10),
        "the processing-time timeout",
        || Some(read_lines(&dir.path().join("out/t.jsonl"))).filter(|v| !v.is_empty()),
    );
    assert_eq!(t[0]["key"], "x");
    s.signal("INT");
    assert_eq!(s.wait(Duration::from_secs(20)), Some(0), "{}", s.stderr());
}

/// A webhook receiver on loopback that fails its first requests with 503,
/// then accepts: every timeout arrives (at least once), each request with
/// its `Idempotency-Key` equal to the output id.
#[test]
fn webhook_gets_every_timeout_through_failures() {
    let dir = TempDir::new("run-webhook");
    dir.file("orders.yaml", SPEC);
    let mut input = String::new();
    for i in 0..20 {
        input.push_str(&format!(
            "{{\"order_id\":\"o{i}\",\"type\":\"create\",\"ts\":{}}}\n",
            1000 + i
        ));
    }
    dir.file("events.jsonl", &input);
    let received: Arc<Mutex<Vec<(String, Value)>>> = Arc::default();
    let port = receiver(received.clone(), 3);
    let config = dir.file(
        "pipe.yaml",
        &format!(
            "name: hook\npatterns: [orders.yaml]\nsource: {{type: file, path: events.jsonl}}\n\
             outputs:\n  match: []\n  timeout: [{{type: webhook, url: 'http://127.0.0.1:{port}/notify', \
             backoff: {{initial: 20ms, max: 200ms}}}}]\n"
        ),
    );
    let mut s = Service::start(dir.path(), &config, &[]);
    assert_eq!(s.wait(Duration::from_secs(60)), Some(0), "{}", s.stderr());
    let got = received.lock().unwrap();
    let keys: BTreeSet<&str> = got
        .iter()
        .map(|(_, v)| v["key"].as_str().unwrap())
        .collect();
    assert_eq!(keys.len(), 20, "every order's timeout arrived");
    for (key, v) in got.iter() {
        assert_eq!(key, v["id"].as_str().unwrap());
        assert_eq!(v["kind"], "timeout");
    }
}

/// Starts a webhook receiver that answers 503 to its first `fail` requests.
fn receiver(received: Arc<Mutex<Vec<(String, Value)>>>, fail: usize) -> u16 {
    use axum::http::{HeaderMap, StatusCode};
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let port = listener.local_addr().unwrap().port();
    let count = Arc::new(Mutex::new(0usize));
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let app = axum::Router::new().route(
                "/notify",
                axum::routing::post(move |headers: HeaderMap, body: String| {
                    let received = received.clone();
                    let count = count.clone();
                    async move {
                        let n = {
                            let mut c = count.lock().unwrap();
                            *c += 1;
                            *c
                        };
                        if n <= fail {
                            return StatusCode::SERVICE_UNAVAILABLE;
                        }
                        let key = headers
                            .get("idempotency-key")
                            .and_then(|v| v.to_str().ok())
                            .unwrap_or_default()
                            .to_string();
                        let v: Value = serde_json::from_str(&body).unwrap();
                        received.lock().unwrap().push((key, v));
                        StatusCode::OK
                    }
                }),
            );
            let l = tokio::net::TcpListener::from_std(listener).unwrap();
            axum::serve(l, app).await.unwrap();
        });
    });
    port
}

/// `/healthz`, `/readyz` and `/metrics` of a running pipeline.
#[test]
fn operations_endpoints() {
    let dir = TempDir::new("run-ops");
    dir.file("orders.yaml", SPEC);
    dir.file(
        "events.jsonl",
        "{\"order_id\":\"a\",\"type\":\"create\",\"ts\":1}\nnot json\n{\"order_id\":\"b\",\"type\":\"create\",\"ts\":5000}\n",
    );
    let port = free_port();
    let config = dir.file(
        "pipe.yaml",
        &format!(
            "name: ops\npatterns: [orders.yaml]\nsource: {{type: file, path: events.jsonl, follow: true}}\n\
             outputs: {{error: []}}\nserver: {{listen: '127.0.0.1:{port}'}}\n"
        ),
    );
    let mut s = Service::start(dir.path(), &config, &[]);
    let get = |path: &str| -> Option<(u16, String)> {
        let r = http_get::get(&format!("http://127.0.0.1:{port}{path}"))?;
        Some(r)
    };
    let (code, _) = eventually(Duration::from_secs(10), "/healthz", || get("/healthz"));
    assert_eq!(code, 200);
    let (code, body) = eventually(Duration::from_secs(10), "/readyz ready", || {
        get("/readyz").filter(|(c, _)| *c == 200)
    });
    assert_eq!((code, body.trim()), (200, "ready"));
    // Pending partial matches are counted every 10 s.
    let metrics = eventually(Duration::from_secs(25), "events counted", || {
        get("/metrics").filter(|(_, b)| {
            b.contains("ferrocep_events_in_total{source=\"file\"} 3")
                && b.contains("ferrocep_pending_partial_matches{pattern=\"orders\"} 1")
        })
    })
    .1;
    for name in [
        "ferrocep_pending_partial_matches{pattern=\"orders\"}",
        "ferrocep_outputs_total{pattern=\"orders\",kind=\"error\"} 1",
        "ferrocep_watermark_lag_ms",
        "ferrocep_sink_queue",
    ] {
        assert!(metrics.contains(name), "{name} missing from:\n{metrics}");
    }
    let (code, body) = get("/patterns").unwrap();
    assert_eq!(code, 200);
    let list: Value = serde_json::from_str(&body).unwrap();
    let p = &list["patterns"][0];
    assert_eq!(
        (p["name"].as_str(), p["version"].as_u64()),
        (Some("orders"), Some(1))
    );
    assert_eq!(p["state"], "active");
    assert_eq!(p["pending_partial_matches"], 1);
    assert_eq!(get("/patterns/orders").unwrap().0, 200);
    assert_eq!(get("/patterns/nope").unwrap().0, 404);
    s.signal("TERM");
    assert_eq!(s.wait(Duration::from_secs(20)), Some(0), "{}", s.stderr());
}

/// A bad config stops `run` at start with exit 2 and the field path.
#[test]
fn bad_config_exits_2_naming_the_field() {
    let dir = TempDir::new("run-bad");
    dir.file("orders.yaml", SPEC);
    let config = dir.file(
        "pipe.yaml",
        "name: bad\npatterns: [orders.yaml]\nsource: {type: file, path: nope.jsonl}\n\
         outputs: {timeout: [{type: webhook, url: 'ftp://x'}]}\n",
    );
    let mut s = Service::start(dir.path(), &config, &[]);
    assert_eq!(s.wait(Duration::from_secs(20)), Some(2));
    let err = s.stderr();
    assert!(err.contains("pipe.yaml"), "{err}");
    assert!(err.contains("outputs.timeout[0].url"), "{err}");
    assert!(err.contains("source.path"), "{err}");
}

/// Two runs on one data directory: the second is refused.
#[test]
fn one_run_per_data_directory() {
    let dir = TempDir::new("run-lock");
    dir.file("orders.yaml", SPEC);
    dir.file("events.jsonl", "");
    let config = dir.file(
        "pipe.yaml",
        "name: lock\npatterns: [orders.yaml]\nsource: {type: file, path: events.jsonl, follow: true}\nstate: {dir: data}\n",
    );
    let mut first = Service::start(dir.path(), &config, &[]);
    eventually(Duration::from_secs(10), "the first run's lock", || {
        dir.path().join("data/LOCK").exists().then_some(())
    });
    std::thread::sleep(Duration::from_millis(200));
    let other = TempDir::new("run-lock-2");
    let mut second = Service::start(other.path(), &config, &[]);
    assert_eq!(second.wait(Duration::from_secs(20)), Some(2));
    assert!(second.stderr().contains("in use"), "{}", second.stderr());
    // Its signal handlers are installed once it runs (a loaded machine may
    // still be starting it).
    eventually(Duration::from_secs(20), "the first run running", || {
        first.stderr().contains("running").then_some(())
    });
    first.signal("TERM");
    assert_eq!(first.wait(Duration::from_secs(20)), Some(0));
}

pub mod http_get {
    //! A minimal blocking GET over a real TCP connection (HTTP/1.1), enough
    //! for the operations endpoints.
    use std::io::{Read, Write};
    use std::net::TcpStream;
    use std::time::Duration;

    /// The status and body of `GET url`, or `None` if the server is not up.
    pub fn get(url: &str) -> Option<(u16, String)> {
        let rest = url.strip_prefix("http://")?;
        let (host, path) = rest.split_once('/').map(|(h, p)| (h, format!("/{p}")))?;
        let mut s = TcpStream::connect(host).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
        write!(
            s,
            "GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
        )
        .ok()?;
        let mut buf = String::new();
        s.read_to_string(&mut buf).ok()?;
        let code = buf.split_whitespace().nth(1)?.parse().ok()?;
        let body = buf.split_once("\r\n\r\n").map(|(_, b)| b.to_string())?;
        Some((code, body))
    }
}

/// HTTP ingest through the binary: NDJSON in, 202 with the rejected
/// events named, rejected events on `error`, the contract's 4xx replies,
/// and the quiet-stream timeout of an acknowledged create.
#[test]
fn http_ingest_end_to_end() {
    let dir = TempDir::new("run-http");
    dir.file("orders.yaml", SPEC);
    let port = free_port();
    let config = dir.file(
        "pipe.yaml",
        &format!(
            "name: web\npatterns: [orders.yaml]\nsource: {{type: http, listen: '127.0.0.1:{port}', max_body: 4KiB}}\n\
             outputs:\n  match: [{{type: file, path: out/m.jsonl}}]\n  timeout: [{{type: file, path: out/t.jsonl}}]\n  \
             error: [{{type: file, path: out/e.jsonl}}]\ntime: {{idle_timeout: 500ms}}\nstate: {{dir: data}}\n"
        ),
    );
    let mut s = Service::start(dir.path(), &config, &[]);
    let body = "{\"order_id\":\"a\",\"type\":\"create\",\"ts\":1000}\n\
                {\"order_id\":\"b\",\"type\":\"create\",\"ts\":1500}\n\
                [1,2]\n\
                {\"type\":\"create\",\"ts\":1600}\n\
                {\"order_id\":\"b\",\"type\":\"pay\",\"ts\":2000}\n";
    let (code, reply) = eventually(Duration::from_secs(10), "the ingest endpoint", || {
        http_post(port, "/events", "application/x-ndjson", body.as_bytes())
    });
    assert_eq!(code, 202, "{reply}");
    let reply: Value = serde_json::from_str(&reply).unwrap();
    assert_eq!(reply["accepted"], 3);
    let rejected: Vec<u64> = reply["rejected"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["index"].as_u64().unwrap())
        .collect();
    assert_eq!(rejected, [2, 3]);
    assert_eq!(
        http_post(port, "/events", "application/json", b"{\"a\":")
            .unwrap()
            .0,
        400
    );
    assert_eq!(
        http_post(port, "/events", "text/csv", b"a,b").unwrap().0,
        415
    );
    let big = vec![b' '; 8 * 1024];
    assert_eq!(
        http_post(port, "/events", "application/json", &big)
            .unwrap()
            .0,
        413
    );
    let m = eventually(Duration::from_secs(10), "the match", || {
        Some(read_lines(&dir.path().join("out/m.jsonl"))).filter(|v| !v.is_empty())
    });
    assert_eq!(m[0]["key"], "b");
    let e = eventually(Duration::from_secs(10), "the rejected events", || {
        Some(read_lines(&dir.path().join("out/e.jsonl"))).filter(|v| v.len() >= 2)
    });
    assert!(e
        .iter()
        .all(|v| v["kind"] == "error" && v["reason"].is_string()));
    // a's window ends at 11_000; the watermark is 999 after the batch: the
    // idle rule fires it about 10.5 s after the events arrived.
    let t = eventually(Duration::from_secs(30), "the timeout", || {
        Some(read_lines(&dir.path().join("out/t.jsonl"))).filter(|v| !v.is_empty())
    });
    assert_eq!(t[0]["key"], "a");
    s.signal("TERM");
    assert_eq!(s.wait(Duration::from_secs(20)), Some(0), "{}", s.stderr());
}

/// `POST path` with a body over a real TCP connection: status and body.
fn http_post(port: u16, path: &str, content_type: &str, body: &[u8]) -> Option<(u16, String)> {
    use std::io::Read;
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    write!(
        s,
        "POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .ok()?;
    // The server may reply (413) before it has read the whole body.
    let _ = s.write_all(body);
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    let text = String::from_utf8_lossy(&buf).into_owned();
    let code = text.split_whitespace().nth(1)?.parse().ok()?;
    let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_string())?;
    Some((code, body))
}

/// Orders for the recovery tests: creates, pays (some late, some never),
/// over `n` events, in order of time.
fn orders(n: usize) -> Vec<String> {
    let mut lines = Vec::with_capacity(n);
    let mut i = 0u64;
    while lines.len() < n {
        let ts = 1_000 + i * 50;
        lines.push(format!(
            "{{\"order_id\":\"o{i}\",\"type\":\"create\",\"ts\":{ts}}}"
        ));
        // Pay o(i-40) now: 2 s after its create, within the 10 s window;
        // every 7th order is never paid (a timeout), every 11th is paid
        // after 12 s (a timeout, then a late pay or none).
        if i >= 40 && !(i - 40).is_multiple_of(7) {
            lines.push(format!(
                "{{\"order_id\":\"o{}\",\"type\":\"pay\",\"ts\":{ts}}}",
                i - 40
            ));
        }
        if i >= 240 && (i - 240).is_multiple_of(11) {
            lines.push(format!(
                "{{\"order_id\":\"o{}\",\"type\":\"pay\",\"ts\":{ts}}}",
                i - 240
            ));
        }
        i += 1;
    }
    lines.truncate(n);
    lines
}

/// SIGKILL in the middle of a run, at a random moment (during a checkpoint
/// too), then a restart on the same data directory: the file sinks end up
/// holding exactly the outputs of an uninterrupted run, each once.
#[test]
fn sigkill_then_restart_gives_exactly_once_file_outputs() {
    let dir = TempDir::new("run-kill");
    dir.file("orders.yaml", SPEC);
    let lines = orders(30_000);
    let all: String = lines.iter().map(|l| format!("{l}\n")).collect();
    let full = dir.file("full.jsonl", &all);
    let events = dir.file("events.jsonl", "");
    let config = dir.file(
        "pipe.yaml",
        "name: kill\npatterns: [orders.yaml]\nsource: {type: file, path: events.jsonl, follow: true}\n\
         outputs:\n  match: [{type: file, path: out/m.jsonl}]\n  timeout: [{type: file, path: out/t.jsonl}]\n  \
         late: [{type: file, path: out/l.jsonl}]\nstate: {dir: data, checkpoint_interval: 50ms}\n",
    );
    let append = |from: usize, to: usize| {
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&events)
            .unwrap();
        let text: String = lines[from..to].iter().map(|l| format!("{l}\n")).collect();
        f.write_all(text.as_bytes()).unwrap();
    };
    let count_outputs = || {
        ["m", "t", "l"]
            .iter()
            .map(|f| read_lines(&dir.path().join(format!("out/{f}.jsonl"))).len())
            .sum::<usize>()
    };
    // Two kills at pseudo-random moments, each after some input; each
    // restart with another number of workers (the state is in key groups).
    let mut s = Service::start(dir.path(), &config, &["--workers", "2"]);
    let seed = test_seed() as usize;
    let mut written = 0;
    for (round, kill_after) in [(0, 8_000 + seed % 3_000), (1, 19_000 + seed % 4_000)] {
        while written < kill_after {
            let to = (written + 500).min(kill_after);
            append(written, to);
            written = to;
            std::thread::sleep(Duration::from_millis(15));
        }
        std::thread::sleep(Duration::from_millis((seed % 7 * 23) as u64));
        // On a loaded machine the start may lag: kill once something is out.
        eventually(
            Duration::from_secs(30),
            &format!("round {round}: an output before the kill"),
            || (count_outputs() > 0).then_some(()),
        );
        s.signal("KILL");
        let _ = s.wait(Duration::from_secs(10));
        s = Service::start(dir.path(), &config, &[]);
    }
    append(written, lines.len());
    let want = run_match(
        &dir.path().join("orders.yaml"),
        &full,
        &["--end-of-input", "stop", "--workers", "1"],
    );
    let mut want: Vec<String> = json_lines(&want.stdout).iter().map(as_match).collect();
    want.sort();
    eventually(
        Duration::from_secs(60),
        "every output after the restarts",
        || (count_outputs() >= want.len()).then_some(()),
    );
    // Let a duplicate, if any, show up.
    std::thread::sleep(Duration::from_millis(500));
    s.signal("TERM");
    assert_eq!(s.wait(Duration::from_secs(30)), Some(0), "{}", s.stderr());
    let mut got: Vec<Value> = Vec::new();
    for f in ["m", "t", "l"] {
        got.extend(read_lines(&dir.path().join(format!("out/{f}.jsonl"))));
    }
    let ids: BTreeSet<&str> = got.iter().map(|v| v["id"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), got.len(), "an output was written twice");
    let mut got: Vec<String> = got.iter().map(as_match).collect();
    got.sort();
    assert_eq!(got.len(), want.len());
    assert!(got == want, "the outputs differ from an uninterrupted run");
}

/// A restart whose config changed a pattern applies the change as SIGHUP
/// would: the old version drains (its partial matches restored, never into
/// the new automaton), the new one takes new starts.
#[test]
fn changed_pattern_at_restart_drains_the_old_version() {
    let dir = TempDir::new("run-changed");
    dir.file("orders.yaml", SPEC);
    dir.file("events.jsonl", &orders(100).join("\n"));
    let config = dir.file(
        "pipe.yaml",
        "name: changed\npatterns: [orders.yaml]\nsource: {type: file, path: events.jsonl, end_of_input: stop}\n\
         outputs: {match: [], timeout: []}\nstate: {dir: data}\n",
    );
    let mut s = Service::start(dir.path(), &config, &[]);
    assert_eq!(s.wait(Duration::from_secs(30)), Some(0), "{}", s.stderr());
    dir.file("orders.yaml", &SPEC.replace("within: 10s", "within: 15s"));
    let mut s = Service::start(dir.path(), &config, &[]);
    assert_eq!(s.wait(Duration::from_secs(30)), Some(0), "{}", s.stderr());
    let log = s.stderr();
    assert!(log.contains("pattern change"), "{log}");
    assert!(log.contains("replaced"), "{log}");
}

/// HTTP ingest and SIGKILL: every event acknowledged with 202 before a kill
/// reaches the outputs after the restart (none lost), and the file sinks
/// hold each output once.
#[test]
fn http_acknowledged_events_survive_sigkill() {
    let dir = TempDir::new("run-http-kill");
    dir.file("orders.yaml", SPEC);
    let port = free_port();
    let config = dir.file(
        "pipe.yaml",
        &format!(
            "name: webkill\npatterns: [orders.yaml]\nsource: {{type: http, listen: '127.0.0.1:{port}'}}\n\
             outputs:\n  match: [{{type: file, path: out/m.jsonl}}]\n  timeout: [{{type: file, path: out/t.jsonl}}]\n  \
             late: []\nstate: {{dir: data, checkpoint_interval: 100ms}}\n"
        ),
    );
    let mut s = Service::start(dir.path(), &config, &[]);
    let seed = test_seed();
    let mut acked: Vec<String> = Vec::new();
    let mut next = 0u64;
    for round in 0..3u64 {
        let batches = 10 + (seed + round * 7) % 15;
        for _ in 0..batches {
            // 50 orders a batch: creates, and pays of half of the orders of
            // the batch before.
            let mut body = String::new();
            let mut ids = Vec::new();
            for k in 0..50 {
                let i = next + k;
                body.push_str(&format!(
                    "{{\"order_id\":\"o{i}\",\"type\":\"create\",\"ts\":{}}}\n",
                    1_000 + i * 10
                ));
                ids.push(format!("o{i}"));
                if i >= 50 && i.is_multiple_of(2) {
                    body.push_str(&format!(
                        "{{\"order_id\":\"o{}\",\"type\":\"pay\",\"ts\":{}}}\n",
                        i - 50,
                        1_000 + i * 10
                    ));
                }
            }
            next += 50;
            let reply = eventually(Duration::from_secs(20), "the ingest endpoint", || {
                http_post(port, "/events", "application/x-ndjson", body.as_bytes())
            });
            assert_eq!(reply.0, 202, "{}", reply.1);
            acked.extend(ids);
        }
        s.signal("KILL");
        let _ = s.wait(Duration::from_secs(10));
        s = Service::start(dir.path(), &config, &[]);
    }
    // An event far ahead moves the watermark past every window.
    let last = "{\"order_id\":\"end\",\"type\":\"create\",\"ts\":100000000}\n";
    let reply = eventually(Duration::from_secs(20), "the ingest endpoint", || {
        http_post(port, "/events", "application/x-ndjson", last.as_bytes())
    });
    assert_eq!(reply.0, 202);
    let keys_out = || {
        let mut keys = BTreeSet::new();
        for f in ["m", "t"] {
            for v in read_lines(&dir.path().join(format!("out/{f}.jsonl"))) {
                keys.insert(v["key"].as_str().unwrap_or_default().to_string());
            }
        }
        keys
    };
    eventually(
        Duration::from_secs(30),
        "an output for every acknowledged order",
        || {
            let keys = keys_out();
            acked.iter().all(|k| keys.contains(k)).then_some(())
        },
    );
    assert!(acked.len() >= 1_500, "{} events acknowledged", acked.len());
    eprintln!("{} orders acknowledged across 3 SIGKILLs", acked.len());
    s.signal("TERM");
    assert_eq!(s.wait(Duration::from_secs(30)), Some(0), "{}", s.stderr());
    let mut ids = BTreeSet::new();
    for f in ["m", "t"] {
        for v in read_lines(&dir.path().join(format!("out/{f}.jsonl"))) {
            assert!(
                ids.insert(v["id"].as_str().unwrap().to_string()),
                "{} written twice",
                v["id"]
            );
        }
    }
}

/// The generator's outputs with their timestamps made relative to its
/// schedule's start (the first order's create), which each run takes from
/// the clock.
fn relative(lines: &[Value]) -> Vec<String> {
    fn first_create(v: &Value) -> Option<i64> {
        v["events"]["create"]
            .as_array()?
            .iter()
            .find(|e| e["order_id"] == "o-000001")?["ts"]
            .as_i64()
    }
    let base = lines
        .iter()
        .find_map(first_create)
        .expect("order 1's output");
    fn shift(v: &mut Value, base: i64) {
        match v {
            Value::Object(o) => {
                for (k, x) in o.iter_mut() {
                    if (k == "ts" || k == "timeout_at") && x.is_i64() {
                        *x = Value::from(x.as_i64().unwrap() - base);
                    } else {
                        shift(x, base);
                    }
                }
            }
            Value::Array(a) => a.iter_mut().for_each(|x| shift(x, base)),
            _ => {}
        }
    }
    let mut out: Vec<String> = lines
        .iter()
        .map(|v| {
            let mut v = v.clone();
            shift(&mut v, base);
            crate::util::canon(&v)
        })
        .collect();
    out.sort();
    out
}

/// The generator resumes from its checkpoint with the same events (same
/// timestamps): after SIGKILLs and restarts, the file sinks hold exactly
/// the outputs of an uninterrupted run, ids included.
#[test]
fn generator_replays_the_same_events_after_sigkill() {
    let dir = TempDir::new("run-gen-kill");
    dir.file("orders.yaml", SPEC);
    let pipe = |name: &str, data: &str| {
        format!(
            "name: gen\npatterns: [orders.yaml]\n\
             source: {{type: generator, workload: orders, rate: 4000, pay_ratio: 0.7, \
             pay_delay: {{distribution: uniform, mean: 1s, max: 15s}}, seed: 7, events: 12000}}\n\
             outputs:\n  match: [{{type: file, path: {name}/m.jsonl}}]\n  timeout: [{{type: file, path: {name}/t.jsonl}}]\n  \
             late: [{{type: file, path: {name}/l.jsonl}}]\nstate: {{dir: {data}, checkpoint_interval: 100ms}}\n"
        )
    };
    let reference = dir.file("ref.yaml", &pipe("ref", "ref-data"));
    let mut s = Service::start(dir.path(), &reference, &[]);
    assert_eq!(s.wait(Duration::from_secs(60)), Some(0), "{}", s.stderr());
    let read = |name: &str| {
        let mut v = Vec::new();
        for f in ["m", "t", "l"] {
            v.extend(read_lines(&dir.path().join(format!("{name}/{f}.jsonl"))));
        }
        v
    };
    let want = read("ref");
    assert!(want.len() > 1_000, "{}", want.len());

    let config = dir.file("kill.yaml", &pipe("kill", "kill-data"));
    let seed = test_seed();
    let mut s = Service::start(dir.path(), &config, &[]);
    for round in 0..2u64 {
        std::thread::sleep(Duration::from_millis(400 + (seed + round * 131) % 700));
        s.signal("KILL");
        let _ = s.wait(Duration::from_secs(10));
        s = Service::start(dir.path(), &config, &[]);
    }
    assert_eq!(s.wait(Duration::from_secs(60)), Some(0), "{}", s.stderr());
    let got = read("kill");
    let ids: BTreeSet<&str> = got.iter().map(|v| v["id"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), got.len(), "an output was written twice");
    assert!(
        relative(&got) == relative(&want),
        "the outputs differ from an uninterrupted run"
    );
}

/// A webhook through SIGKILLs: at least once. After de-duplication by id,
/// everything delivered equals an uninterrupted run's outputs.
#[test]
fn webhook_is_at_least_once_through_sigkill() {
    let dir = TempDir::new("run-hook-kill");
    dir.file("orders.yaml", SPEC);
    let lines = orders(12_000);
    let all: String = lines.iter().map(|l| format!("{l}\n")).collect();
    dir.file("full.jsonl", &all);
    let reference = dir.file(
        "ref.yaml",
        "name: hook\npatterns: [orders.yaml]\nsource: {type: file, path: full.jsonl, end_of_input: stop}\n\
         outputs: {match: [{type: file, path: ref/m.jsonl}], timeout: [{type: file, path: ref/t.jsonl}], late: []}\n\
         state: {dir: ref-data}\n",
    );
    let mut s = Service::start(dir.path(), &reference, &[]);
    assert_eq!(s.wait(Duration::from_secs(60)), Some(0), "{}", s.stderr());
    let mut want = BTreeSet::new();
    for f in ["m", "t"] {
        for v in read_lines(&dir.path().join(format!("ref/{f}.jsonl"))) {
            want.insert(v["id"].as_str().unwrap().to_string());
        }
    }
    assert!(want.len() > 1_000);

    let received: Arc<Mutex<Vec<(String, Value)>>> = Arc::default();
    let port = receiver(received.clone(), 0);
    let events = dir.file("events.jsonl", "");
    let config = dir.file(
        "pipe.yaml",
        &format!(
            "name: hook\npatterns: [orders.yaml]\nsource: {{type: file, path: events.jsonl, follow: true}}\n\
             outputs:\n  match: [{{type: webhook, url: 'http://127.0.0.1:{port}/notify'}}]\n  \
             timeout: [{{type: webhook, url: 'http://127.0.0.1:{port}/notify'}}]\n  late: []\n\
             state: {{dir: data, checkpoint_interval: 50ms}}\n"
        ),
    );
    let append = |from: usize, to: usize| {
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&events)
            .unwrap();
        let text: String = lines[from..to].iter().map(|l| format!("{l}\n")).collect();
        f.write_all(text.as_bytes()).unwrap();
    };
    let seed = test_seed() as usize;
    let mut s = Service::start(dir.path(), &config, &[]);
    let mut written = 0;
    for kill_after in [3_000 + seed % 2_000, 7_000 + seed % 3_000] {
        while written < kill_after {
            let to = (written + 400).min(kill_after);
            append(written, to);
            written = to;
            std::thread::sleep(Duration::from_millis(15));
        }
        std::thread::sleep(Duration::from_millis((seed % 5 * 31) as u64));
        s.signal("KILL");
        let _ = s.wait(Duration::from_secs(10));
        s = Service::start(dir.path(), &config, &[]);
    }
    append(written, lines.len());
    let got = eventually(Duration::from_secs(60), "every output delivered", || {
        let ids: BTreeSet<String> = received
            .lock()
            .unwrap()
            .iter()
            .map(|(_, v)| v["id"].as_str().unwrap_or_default().to_string())
            .collect();
        want.is_subset(&ids).then_some(ids)
    });
    s.signal("TERM");
    assert_eq!(s.wait(Duration::from_secs(30)), Some(0), "{}", s.stderr());
    assert_eq!(
        got, want,
        "delivered outputs that an uninterrupted run does not have"
    );
}
