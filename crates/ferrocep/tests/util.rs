//! Helpers shared by the integration tests: running the binary, scratch
//! directories, and `check.py`'s output comparison (multisets of normalised
//! outputs).

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;

/// The `ferrocep` executable under test.
pub fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_ferrocep"))
}

/// The repository root.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// A scratch directory under cargo's test tmpdir, removed on drop.
pub struct TempDir(PathBuf);

impl TempDir {
    pub fn new(label: &str) -> TempDir {
        static N: AtomicU32 = AtomicU32::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        let dir = Path::new(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("ferrocep-{label}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.0
    }

    /// Writes `contents` into `name` and returns its path.
    pub fn file(&self, name: &str, contents: &str) -> PathBuf {
        let p = self.0.join(name);
        std::fs::write(&p, contents).unwrap();
        p
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Output of one run, as text.
#[derive(Debug)]
pub struct Run {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl From<Output> for Run {
    fn from(o: Output) -> Run {
        Run {
            code: o.status.code(),
            stdout: String::from_utf8(o.stdout).expect("stdout is UTF-8"),
            stderr: String::from_utf8(o.stderr).expect("stderr is UTF-8"),
        }
    }
}

/// Runs `cmd` with `stdin` as input, killing it after `timeout`.
pub fn run_with_timeout(mut cmd: Command, stdin: Option<&str>, timeout: Duration) -> Run {
    cmd.stdin(if stdin.is_some() {
        Stdio::piped()
    } else {
        Stdio::null()
    })
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("the ferrocep binary starts");
    if let Some(text) = stdin {
        let mut pipe = child.stdin.take().unwrap();
        let text = text.to_string();
        std::thread::spawn(move || {
            let _ = pipe.write_all(text.as_bytes());
        });
    }
    wait_with_timeout(child, timeout)
}

fn wait_with_timeout(mut child: Child, timeout: Duration) -> Run {
    let mut out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    let out_reader = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = out.read_to_end(&mut v);
        v
    });
    let err_reader = std::thread::spawn(move || {
        let mut v = Vec::new();
        let _ = err.read_to_end(&mut v);
        v
    });
    let start = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if start.elapsed() > timeout {
            let _ = child.kill();
            let _ = child.wait();
            let stdout = String::from_utf8_lossy(&out_reader.join().unwrap()).into_owned();
            panic!("ferrocep did not finish within {timeout:?}; stdout so far:\n{stdout}");
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    Run {
        code: status.code(),
        stdout: String::from_utf8(out_reader.join().unwrap()).expect("stdout is UTF-8"),
        stderr: String::from_utf8(err_reader.join().unwrap()).expect("stderr is UTF-8"),
    }
}

/// `ferrocep match --spec SPEC --input INPUT EXTRA...`.
pub fn run_match(spec: &Path, input: &Path, extra: &[&str]) -> Run {
    let mut cmd = bin();
    cmd.arg("match")
        .arg("--spec")
        .arg(spec)
        .arg("--input")
        .arg(input);
    cmd.args(extra);
    run_with_timeout(cmd, None, Duration::from_secs(60))
}

/// Canonical JSON text: object keys sorted, no spaces (`check.py`'s `canon`).
pub fn canon(v: &Value) -> String {
    let mut s = String::new();
    canon_into(v, &mut s);
    s
}

fn canon_into(v: &Value, s: &mut String) {
    match v {
        Value::Object(m) => {
            let sorted: BTreeMap<&String, &Value> = m.iter().collect();
            s.push('{');
            for (i, (k, v)) in sorted.into_iter().enumerate() {
                if i > 0 {
                    s.push(',');
                }
                s.push_str(&serde_json::to_string(k).unwrap());
                s.push(':');
                canon_into(v, s);
            }
            s.push('}');
        }
        Value::Array(a) => {
            s.push('[');
            for (i, v) in a.iter().enumerate() {
                if i > 0 {
                    s.push(',');
                }
                canon_into(v, s);
            }
            s.push(']');
        }
        other => s.push_str(&serde_json::to_string(other).unwrap()),
    }
}

/// One output, normalised as `check.py` does: (kind, key, stage -> events or
/// the late event, timeout_at).
pub type Norm = (String, String, String, Option<String>);

/// `check.py`'s `normalize` (`conformance/check.py`, the comparison rules
/// of the conformance cases): the kind, the key as canonical JSON, then for
/// `late` the event as canonical JSON, else the stages' events as canonical
/// JSON and, for `timeout`, `timeout_at`. Canonical JSON is `json.dumps`
/// with sorted keys, so key order and spacing do not matter, while `1` and
/// `1.0` inside events and keys differ, as they do for check.py.
pub fn normalize(obj: &Value) -> Result<Norm, String> {
    let Value::Object(m) = obj else {
        return Err(format!("not a JSON object: {obj}"));
    };
    let kind = m.get("kind").map(canon).unwrap_or_else(|| "null".into());
    let key = m.get("key").map(canon).unwrap_or_else(|| "null".into());
    if kind == "\"late\"" {
        let e = m.get("event").map(canon).unwrap_or_else(|| "null".into());
        return Ok((kind, key, e, None));
    }
    // `obj.get("events") or {}`: every falsy value is no events; any other
    // value that is not an object makes check.py fail (`.items()`).
    let events = match m.get("events") {
        None | Some(Value::Null) | Some(Value::Bool(false)) => "{}".to_string(),
        Some(Value::Number(n)) if n.as_f64() == Some(0.0) => "{}".to_string(),
        Some(Value::String(t)) if t.is_empty() => "{}".to_string(),
        Some(Value::Array(a)) if a.is_empty() => "{}".to_string(),
        Some(v @ Value::Object(_)) => canon(v),
        Some(v) => return Err(format!("`events` is not an object: {v}")),
    };
    // check.py keeps `timeout_at` as a Python value, so 5 and 5.0 are equal.
    let timeout_at = if kind == "\"timeout\"" {
        Some(match m.get("timeout_at") {
            None => "null".into(),
            Some(Value::Number(n)) => match n.as_f64() {
                Some(f) if n.is_f64() && f.fract() == 0.0 && f.abs() < 9.0e15 => {
                    (f as i64).to_string()
                }
                _ => n.to_string(),
            },
            Some(v) => canon(v),
        })
    } else {
        None
    };
    Ok((kind, key, events, timeout_at))
}

/// Normalises every non-blank line of a run's stdout.
pub fn normalize_lines(stdout: &str) -> Result<Vec<Norm>, String> {
    stdout
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(n, l)| {
            let v: Value = serde_json::from_str(l)
                .map_err(|e| format!("output line {} is not JSON ({e}): {l}", n + 1))?;
            normalize(&v).map_err(|e| format!("output line {}: {e}", n + 1))
        })
        .collect()
}

/// Compares outputs as multisets; the error lists what is missing and what
/// is unexpected.
pub fn same_multiset(expected: &[Value], stdout: &str) -> Result<(), String> {
    let mut want: BTreeMap<Norm, i64> = BTreeMap::new();
    for v in expected {
        *want.entry(normalize(v)?).or_default() += 1;
    }
    for n in normalize_lines(stdout)? {
        *want.entry(n).or_default() -= 1;
    }
    let missing: Vec<_> = want.iter().filter(|(_, c)| **c > 0).collect();
    let extra: Vec<_> = want.iter().filter(|(_, c)| **c < 0).collect();
    if missing.is_empty() && extra.is_empty() {
        return Ok(());
    }
    let show = |v: &[(&Norm, &i64)]| -> String {
        v.iter()
            .take(3)
            .map(|(n, c)| format!("{}x {n:?}", c.abs()))
            .collect::<Vec<_>>()
            .join("; ")
    };
    let count = |v: &[(&Norm, &i64)]| -> i64 { v.iter().map(|(_, c)| c.abs()).sum() };
    Err(format!(
        "missing {} [{}] | unexpected {} [{}]",
        count(&missing),
        show(&missing),
        count(&extra),
        show(&extra)
    ))
}

/// Parses JSON lines (a file of expected outputs).
pub fn json_lines(text: &str) -> Vec<Value> {
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad JSON line ({e}): {l}")))
        .collect()
}
