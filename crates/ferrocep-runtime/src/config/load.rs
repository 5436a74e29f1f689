//! Loading a pipeline config: the text is read into a tree (YAML or JSON),
//! each top-level section is deserialized on its own (so that one bad
//! section does not hide the errors of the others), the values are checked
//! (addresses, URLs, durations, the generator's fields, files), and every
//! pattern is loaded and compiled. Every error found is reported, each with
//! its file, line and column when known, and field path.
//!
//! Internally tagged enums (`source`, sinks) are dispatched here on their
//! `type`, into one struct per variant, because serde buffers a tagged enum
//! before reading it and so loses the path of an error inside it.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::{Component, Path, PathBuf};

use ferrocep_core::spec::{Format, Spec, SpecError, SpecErrorKind};
use serde::de::DeserializeOwned;
use serde::Deserialize;

use super::error::{ConfigError, ConfigErrors};
use super::tree::{self, Node, PathText, Seg, Value};
use super::{
    BackoffConfig, Bytes, DelayDistribution, EndOfInputConfig, GeneratorConfig, KafkaSinkConfig,
    KafkaSourceConfig, Millis, OutputsConfig, PatternRef, PipelineConfig, ServerConfig, SinkConfig,
    SourceConfig, StateConfig, TimeConfig, WebhookConfig, Workload, KAFKA_MAX_TOPICS,
};

/// A checked config with its patterns loaded.
#[derive(Debug, Clone)]
pub struct LoadedConfig {
    /// The config as written (defaults filled in).
    pub config: PipelineConfig,
    /// The patterns, in the order of `patterns`, each compiled once already.
    pub patterns: Vec<LoadedPattern>,
    /// The config file (as given).
    pub path: PathBuf,
    /// The directory relative paths in the config are relative to.
    pub dir: PathBuf,
}

impl LoadedConfig {
    /// `p` as the config means it: relative to the config file's directory
    /// unless absolute.
    pub fn resolve(&self, p: &Path) -> PathBuf {
        resolve(&self.dir, p)
    }
}

/// One pattern of a config.
#[derive(Debug, Clone)]
pub struct LoadedPattern {
    /// The spec's `name`, else its file stem; unique in the config.
    pub name: String,
    /// The checked spec (it compiles).
    pub spec: Spec,
    /// Where the spec came from.
    pub source: PatternSource,
    /// The spec's text and format, as read (checkpoints save it, so that a
    /// restart runs the patterns that ran).
    pub text: (std::sync::Arc<str>, Format),
}

/// Where a pattern spec came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PatternSource {
    /// A spec file (the path resolved against the config's directory).
    File(PathBuf),
    /// Written inline in the config.
    Inline,
}

/// Reads, checks and loads the config file at `path`: YAML or JSON by the
/// extension (`.json`, `.yaml`/`.yml`), else JSON if the text starts with
/// `{`. Relative paths in it are relative to its directory.
pub fn load(path: &Path) -> Result<LoadedConfig, ConfigErrors> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        ConfigErrors(vec![ConfigError {
            file: path.to_path_buf(),
            location: None,
            path: String::new(),
            message: format!("cannot read the config: {}", e.to_string().to_lowercase()),
        }])
    })?;
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    parse_str(&text, Format::from_path(path), path, &dir)
}

/// Checks and loads a config given as text. `origin` names the file in
/// messages; relative paths are relative to `base_dir` (pattern files are
/// read, and a file source must exist).
pub fn parse_str(
    text: &str,
    format: Format,
    origin: &Path,
    base_dir: &Path,
) -> Result<LoadedConfig, ConfigErrors> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let json = match format {
        Format::Json => true,
        Format::Yaml => false,
        Format::Auto => text.trim_start().starts_with('{'),
    };
    let parsed = if json {
        tree::parse_json(text)
    } else {
        tree::parse_yaml(text)
    };
    let root = parsed.map_err(|e| {
        ConfigErrors(vec![ConfigError {
            file: origin.to_path_buf(),
            location: e.location,
            path: String::new(),
            message: e.message,
        }])
    })?;
    let mut bad_numbers = Vec::new();
    let root_json = root.to_json(&mut Vec::new(), &mut bad_numbers);
    let mut loader = Loader {
        file: origin,
        dir: base_dir,
        root: &root,
        errors: Vec::new(),
        files: Vec::new(),
    };
    for p in bad_numbers {
        loader.error(&p, "not a finite number");
    }
    let result = loader.config(&root_json);
    let mut errors = loader.errors;
    match result {
        Some((config, patterns)) if errors.is_empty() => Ok(LoadedConfig {
            config,
            patterns,
            path: origin.to_path_buf(),
            dir: base_dir.to_path_buf(),
        }),
        _ => {
            if errors.is_empty() {
                // Not expected: a part is missing only after an error.
                errors.push(ConfigError {
                    file: origin.to_path_buf(),
                    location: None,
                    path: String::new(),
                    message: "the config is incomplete".into(),
                });
            }
            // In the order of the file; errors with no position last.
            errors.sort_by_key(|e| {
                e.location
                    .map(|l| (l.line, l.column))
                    .unwrap_or((u64::MAX, 0))
            });
            Err(ConfigErrors(errors))
        }
    }
}

/// Properties a kafka source sets itself, and why.
const SOURCE_OWN_PROPERTIES: &[(&str, &str)] = &[
    ("bootstrap.servers", "is set from `brokers`"),
    ("group.id", "is set from `group_id`"),
    ("auto.offset.reset", "is set from `start`"),
    (
        "enable.auto.commit",
        "is off: offsets are kept in ferrocep's checkpoints",
    ),
    (
        "enable.auto.offset.store",
        "is off: offsets are kept in ferrocep's checkpoints",
    ),
];

/// Properties a kafka sink sets itself, and why.
const SINK_OWN_PROPERTIES: &[(&str, &str)] = &[
    ("bootstrap.servers", "is set from `brokers`"),
    (
        "transactional.id",
        "is set from `transactional_id` (and `transactional: true`)",
    ),
];

const TOP_FIELDS: &[&str] = &[
    "name", "patterns", "source", "outputs", "time", "state", "server",
];

/// `source` of `type: file`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileSource {
    path: PathBuf,
    #[serde(default)]
    follow: bool,
    #[serde(default)]
    end_of_input: EndOfInputConfig,
}

/// `source` of `type: stdin`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StdinSource {
    #[serde(default)]
    end_of_input: EndOfInputConfig,
}

/// `source` of `type: http`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct HttpSource {
    listen: String,
    #[serde(default = "super::default_http_path")]
    path: String,
    #[serde(default = "super::default_max_body")]
    max_body: Bytes,
    #[serde(default = "super::default_max_backlog")]
    max_backlog: Bytes,
}

/// A sink of `type: file`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileSink {
    path: PathBuf,
    #[serde(default)]
    rotate_bytes: Option<Bytes>,
}

/// A sink with no fields (`stdout`, `stderr`).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NoFields {}

struct Loader<'a> {
    file: &'a Path,
    dir: &'a Path,
    root: &'a Node,
    errors: Vec<ConfigError>,
    /// Files written by sinks (resolved, normalised), with the field that
    /// names each: two sinks must not write one file.
    files: Vec<(PathBuf, Vec<Seg>)>,
}

fn key(k: &str) -> Seg {
    Seg::Key(k.to_string())
}

fn with(path: &[Seg], seg: Seg) -> Vec<Seg> {
    let mut p = path.to_vec();
    p.push(seg);
    p
}

impl Loader<'_> {
    fn error(&mut self, path: &[Seg], message: impl Into<String>) {
        self.errors.push(ConfigError {
            file: self.file.to_path_buf(),
            location: self.root.location_of(path),
            path: PathText(path).to_string(),
            message: message.into(),
        });
    }

    /// Deserializes `json` (the value at `path`) as a `T`, reporting an
    /// error with the path inside it.
    fn section<T: DeserializeOwned>(
        &mut self,
        json: &serde_json::Value,
        path: &[Seg],
    ) -> Option<T> {
        match serde_path_to_error::deserialize::<_, T>(json) {
            Ok(v) => Some(v),
            Err(e) => {
                let mut p = path.to_vec();
                for seg in e.path().iter() {
                    use serde_path_to_error::Segment;
                    match seg {
                        Segment::Seq { index } => p.push(Seg::Index(*index)),
                        Segment::Map { key } => p.push(Seg::Key(key.clone())),
                        Segment::Enum { variant } => p.push(Seg::Key(variant.clone())),
                        Segment::Unknown => {}
                    }
                }
                let message = e.inner().to_string();
                // An unknown field is reported at its parent: name it.
                if let Some(field) = unknown_field(&message) {
                    if p.last() != Some(&Seg::Key(field.to_string())) {
                        p.push(key(field));
                    }
                }
                self.error(&p, message);
                None
            }
        }
    }

    fn config(&mut self, json: &serde_json::Value) -> Option<(PipelineConfig, Vec<LoadedPattern>)> {
        let root = self.root;
        let Value::Map(entries) = &root.value else {
            let found = describe(&root.value);
            self.error(
                &[],
                format!(
                    "a config is a mapping with name, patterns, source and optionally outputs, time, state, server; found {found}"
                ),
            );
            return None;
        };
        for (k, _) in entries {
            if !TOP_FIELDS.contains(&k.as_str()) {
                self.error(
                    &[key(k)],
                    format!("unknown field `{k}`, expected one of {}", ticks(TOP_FIELDS)),
                );
            }
        }
        let field = |k: &str| json.get(k).filter(|v| !v.is_null());
        for required in ["name", "patterns", "source"] {
            if field(required).is_none() {
                self.error(&[], format!("missing field `{required}`"));
            }
        }

        let name = field("name").and_then(|v| self.section::<String>(v, &[key("name")]));
        if let Some(name) = &name {
            self.check_name(name);
        }
        let patterns = field("patterns").and_then(|v| self.patterns(v));
        let source = field("source").and_then(|v| self.source(v));
        let outputs = match field("outputs") {
            None => Some(OutputsConfig::default()),
            Some(v) => self.outputs(v),
        };
        let time = match field("time") {
            None => Some(TimeConfig::default()),
            Some(v) => self.section::<TimeConfig>(v, &[key("time")]),
        };
        if let Some(Millis(ms)) = time.as_ref().and_then(|t| t.idle_timeout) {
            if ms <= 0 {
                self.error(&[key("time"), key("idle_timeout")], "must be more than 0");
            }
        }
        let state = match field("state") {
            None => Some(StateConfig::default()),
            Some(v) => self.section::<StateConfig>(v, &[key("state")]),
        };
        if let Some(state) = &state {
            if state.dir.as_os_str().is_empty() {
                self.error(&[key("state"), key("dir")], "must not be empty");
            }
            if state.checkpoint_interval.0 <= 0 {
                self.error(
                    &[key("state"), key("checkpoint_interval")],
                    "must be more than 0",
                );
            }
        }
        let server = match field("server") {
            None => Some(None),
            Some(v) => self.section::<ServerConfig>(v, &[key("server")]).map(Some),
        };
        if let Some(Some(server)) = &server {
            self.check_listen(&server.listen, &[key("server"), key("listen")]);
            let a = &server.admin;
            let base = [key("server"), key("admin")];
            if a.token_env.is_some() && a.token_file.is_some() {
                self.error(
                    &with(&base, key("token_file")),
                    "give the token by `token_env` or by `token_file`, not both",
                );
            }
            if a.allow_remote && a.token_env.is_none() && a.token_file.is_none() {
                self.error(
                    &with(&base, key("allow_remote")),
                    "changes from other machines need a token: set `token_env` or `token_file`",
                );
            }
            if a.token_env.as_deref().is_some_and(|v| v.trim().is_empty()) {
                self.error(&with(&base, key("token_env")), "must not be empty");
            }
            if a.max_body.0 == 0 {
                self.error(&with(&base, key("max_body")), "must be more than 0");
            }
        }
        self.check_files();

        let (patterns, loaded) = patterns?;
        Some((
            PipelineConfig {
                name: name?,
                patterns,
                source: source?,
                outputs: outputs?,
                time: time?,
                state: state?,
                server: server?,
            },
            loaded,
        ))
    }

    fn check_name(&mut self, name: &str) {
        if name.is_empty() {
            self.error(&[key("name")], "must not be empty");
        } else if let Some(c) = name
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
        {
            self.error(
                &[key("name")],
                format!("'{name}' has the character {c:?}: a name is made of letters, digits, '.', '_' and '-'"),
            );
        }
    }

    fn check_listen(&mut self, listen: &str, path: &[Seg]) {
        if listen.parse::<SocketAddr>().is_err() {
            self.error(
                path,
                format!("not an address to listen on (IP:PORT, e.g. 127.0.0.1:8080): '{listen}'"),
            );
        }
    }

    fn check_positive(&mut self, value: Millis, path: &[Seg]) {
        if value.0 <= 0 {
            self.error(path, "must be more than 0");
        }
    }

    /// `patterns`: each loaded and compiled; names unique.
    fn patterns(
        &mut self,
        json: &serde_json::Value,
    ) -> Option<(Vec<PatternRef>, Vec<LoadedPattern>)> {
        let base = [key("patterns")];
        let Some(items) = json.as_array() else {
            self.error(
                &base,
                "expected a list of pattern specs (file paths or inline specs)",
            );
            return None;
        };
        if items.is_empty() {
            self.error(&base, "at least one pattern is needed");
            return None;
        }
        let mut refs = Vec::new();
        let mut loaded = Vec::new();
        let mut names: HashMap<String, usize> = HashMap::new();
        let mut ok = true;
        for (i, item) in items.iter().enumerate() {
            let path = with(&base, Seg::Index(i));
            let Some(pattern) = self.pattern(item, &path) else {
                ok = false;
                continue;
            };
            if let Err(e) = super::check_pattern_name(&pattern.name) {
                self.error(&path, e.to_string());
                ok = false;
                continue;
            }
            if let Some(first) = names.get(&pattern.name) {
                let message = format!(
                    "duplicate pattern name '{}' (also patterns[{first}]); set a distinct `name` in one of the specs",
                    pattern.name
                );
                self.error(&path, message);
                ok = false;
                continue;
            }
            names.insert(pattern.name.clone(), i);
            refs.push(match &pattern.source {
                PatternSource::File(_) => {
                    PatternRef::Path(PathBuf::from(item.as_str().unwrap_or_default()))
                }
                PatternSource::Inline => PatternRef::Inline(item.clone()),
            });
            loaded.push(pattern);
        }
        ok.then_some((refs, loaded))
    }

    fn pattern(&mut self, item: &serde_json::Value, path: &[Seg]) -> Option<LoadedPattern> {
        match item {
            serde_json::Value::String(file) => {
                if file.trim().is_empty() {
                    self.error(path, "an empty path");
                    return None;
                }
                let resolved = resolve(self.dir, Path::new(file));
                let spec = Spec::from_path(&resolved)
                    .and_then(|spec| spec.compile().map(|_| spec))
                    .map_err(|e| self.error(path, e.to_string()))
                    .ok()?;
                let name = match (&spec.name, resolved.file_stem()) {
                    (Some(n), _) => n.clone(),
                    (None, Some(stem)) => stem.to_string_lossy().into_owned(),
                    (None, None) => {
                        self.error(path, "the spec has no `name` and its path no file name");
                        return None;
                    }
                };
                // Read again for the text; `from_path` read it a moment ago.
                let text = std::fs::read_to_string(&resolved)
                    .map_err(|e| self.error(path, format!("{}: {e}", resolved.display())))
                    .ok()?;
                let format = Format::from_path(&resolved);
                Some(LoadedPattern {
                    name,
                    spec,
                    text: (text.into(), format),
                    source: PatternSource::File(resolved),
                })
            }
            serde_json::Value::Object(_) => {
                let spec = Spec::from_str(&item.to_string(), Format::Json)
                    .and_then(|spec| spec.compile().map(|_| spec))
                    .map_err(|e| self.inline_spec_error(path, &e))
                    .ok()?;
                let Some(name) = spec.name.clone() else {
                    self.error(path, "an inline pattern needs a `name`");
                    return None;
                };
                Some(LoadedPattern {
                    name,
                    spec,
                    source: PatternSource::Inline,
                    text: (item.to_string().into(), Format::Json),
                })
            }
            other => {
                let found = describe_json(other);
                self.error(
                    path,
                    format!(
                        "expected a spec file path or an inline spec (a mapping), found {found}"
                    ),
                );
                None
            }
        }
    }

    /// An inline spec's error, at the spec's own field path inside the config.
    fn inline_spec_error(&mut self, path: &[Seg], e: &SpecError) {
        let mut full = path.to_vec();
        let mut message = e.kind().to_string();
        if let Some(inner) = e.path() {
            full.extend(parse_path(inner));
            let prefix = format!("{inner}: ");
            if let Some(rest) = message.strip_prefix(&prefix) {
                message = rest.to_string();
            }
        } else if matches!(e.kind(), SpecErrorKind::Pattern { .. }) {
            message = format!("the pattern does not compile: {message}");
        }
        self.error(&full, message);
    }

    /// `source`, dispatched on its `type`.
    fn source(&mut self, json: &serde_json::Value) -> Option<SourceConfig> {
        let base = [key("source")];
        let (ty, rest) = self.tagged(json, &base, "file, stdin, http, generator or kafka")?;
        match ty.as_str() {
            "file" => {
                let s: FileSource = self.section(&rest, &base)?;
                self.check_file_source(&s, json.get("end_of_input").is_some());
                Some(SourceConfig::File {
                    path: s.path,
                    follow: s.follow,
                    end_of_input: s.end_of_input,
                })
            }
            "stdin" => {
                let s: StdinSource = self.section(&rest, &base)?;
                Some(SourceConfig::Stdin {
                    end_of_input: s.end_of_input,
                })
            }
            "http" => {
                let s: HttpSource = self.section(&rest, &base)?;
                self.check_listen(&s.listen, &with(&base, key("listen")));
                if !s.path.starts_with('/') {
                    self.error(
                        &with(&base, key("path")),
                        format!("must start with '/': '{}'", s.path),
                    );
                }
                if s.max_body.0 == 0 {
                    self.error(&with(&base, key("max_body")), "must be more than 0");
                }
                if s.max_backlog.0 == 0 {
                    self.error(&with(&base, key("max_backlog")), "must be more than 0");
                }
                Some(SourceConfig::Http {
                    listen: s.listen,
                    path: s.path,
                    max_body: s.max_body,
                    max_backlog: s.max_backlog,
                })
            }
            "generator" => {
                let g: GeneratorConfig = self.section(&rest, &base)?;
                self.check_generator(&g, json);
                Some(SourceConfig::Generator(g))
            }
            "kafka" => {
                let k: KafkaSourceConfig = self.section(&rest, &base)?;
                self.check_kafka_source(&k, &base);
                Some(SourceConfig::Kafka(k))
            }
            other => {
                self.error(
                    &with(&base, key("type")),
                    format!(
                        "unknown source type '{other}', expected file, stdin, http, generator or kafka"
                    ),
                );
                None
            }
        }
    }

    /// The `type` of a tagged mapping at `path`, and the mapping without it.
    fn tagged(
        &mut self,
        json: &serde_json::Value,
        path: &[Seg],
        types: &str,
    ) -> Option<(String, serde_json::Value)> {
        let Some(map) = json.as_object() else {
            let found = describe_json(json);
            self.error(
                path,
                format!("expected a mapping with a `type` ({types}), found {found}"),
            );
            return None;
        };
        let ty = match map.get("type") {
            None | Some(serde_json::Value::Null) => {
                self.error(path, format!("missing field `type` ({types})"));
                return None;
            }
            Some(serde_json::Value::String(t)) => t.clone(),
            Some(other) => {
                let found = describe_json(other);
                self.error(
                    &with(path, key("type")),
                    format!("expected one of {types}, found {found}"),
                );
                return None;
            }
        };
        let mut rest = map.clone();
        rest.remove("type");
        Some((ty, serde_json::Value::Object(rest)))
    }

    fn check_file_source(&mut self, s: &FileSource, has_end_of_input: bool) {
        let base = [key("source")];
        if s.path.as_os_str().is_empty() {
            self.error(&with(&base, key("path")), "must not be empty");
            return;
        }
        if s.follow {
            if has_end_of_input {
                self.error(
                    &with(&base, key("end_of_input")),
                    "applies only without `follow: true` (a followed file does not end)",
                );
            }
            return;
        }
        let resolved = resolve(self.dir, &s.path);
        match std::fs::metadata(&resolved) {
            Ok(m) if m.is_dir() => self.error(
                &with(&base, key("path")),
                format!("'{}' is a directory, not a file", resolved.display()),
            ),
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => self.error(
                &with(&base, key("path")),
                format!(
                    "file not found: '{}' (without `follow: true` the file must exist)",
                    resolved.display()
                ),
            ),
            Err(e) => self.error(
                &with(&base, key("path")),
                format!(
                    "cannot read '{}': {}",
                    resolved.display(),
                    e.to_string().to_lowercase()
                ),
            ),
        }
    }

    fn check_generator(&mut self, g: &GeneratorConfig, json: &serde_json::Value) {
        let base = [key("source")];
        let (workload, allowed): (&str, &[&str]) = match g.workload {
            Workload::Seed => ("seed", &["interval", "events"]),
            Workload::Orders => (
                "orders",
                &[
                    "rate",
                    "pay_ratio",
                    "pay_delay",
                    "out_of_orderness",
                    "seed",
                    "events",
                ],
            ),
        };
        if let Some(map) = json.as_object() {
            for k in map.keys() {
                if k != "type" && k != "workload" && !allowed.contains(&k.as_str()) {
                    self.error(
                        &with(&base, key(k)),
                        format!(
                            "`{k}` does not apply to the {workload} workload (its fields: {})",
                            allowed.join(", ")
                        ),
                    );
                }
            }
        }
        if g.workload == Workload::Seed {
            if let Some(i) = g.interval {
                self.check_positive(i, &with(&base, key("interval")));
            }
            return;
        }
        if let Some(rate) = g.rate {
            if !(rate.is_finite() && rate > 0.0) {
                self.error(
                    &with(&base, key("rate")),
                    format!("must be a finite number more than 0, not {rate}"),
                );
            }
        }
        if let Some(r) = g.pay_ratio {
            if !(0.0..=1.0).contains(&r) {
                self.error(
                    &with(&base, key("pay_ratio")),
                    format!("must be between 0 and 1, not {r}"),
                );
            }
        }
        if let Some(d) = &g.pay_delay {
            let at = with(&base, key("pay_delay"));
            if let Some(mean) = d.mean {
                self.check_positive(mean, &with(&at, key("mean")));
            }
            match d.distribution {
                DelayDistribution::Uniform => match (d.mean, d.max) {
                    (_, None) => self.error(&at, "a uniform delay needs `max`"),
                    (Some(mean), Some(max)) if max < mean => self.error(
                        &with(&at, key("max")),
                        format!(
                            "must be at least `mean` ({} ms) for a uniform delay, not {} ms",
                            mean.0, max.0
                        ),
                    ),
                    _ => {}
                },
                DelayDistribution::Fixed if d.max.is_some() => self.error(
                    &with(&at, key("max")),
                    "does not apply to a fixed delay (always `mean`)",
                ),
                DelayDistribution::Exponential | DelayDistribution::Fixed => {
                    if let Some(max) = d.max {
                        self.check_positive(max, &with(&at, key("max")));
                    }
                }
            }
        }
    }

    /// `outputs`: each kind a list of sinks.
    fn outputs(&mut self, json: &serde_json::Value) -> Option<OutputsConfig> {
        let base = [key("outputs")];
        let Some(map) = json.as_object() else {
            let found = describe_json(json);
            self.error(
                &base,
                format!("expected a mapping of output kinds (match, timeout, late, error) to lists of sinks, found {found}"),
            );
            return None;
        };
        let mut outputs = OutputsConfig::default();
        let mut ok = true;
        // In the order of the file (a JSON map is sorted by key).
        let root = self.root;
        let kinds: Vec<&String> = match root.get("outputs").map(|n| &n.value) {
            Some(Value::Map(entries)) => entries.iter().map(|(k, _)| k).collect(),
            _ => map.keys().collect(),
        };
        for kind in kinds {
            let Some(value) = map.get(kind) else { continue };
            let path = with(&base, key(kind));
            let slot = match kind.as_str() {
                "match" => &mut outputs.r#match,
                "timeout" => &mut outputs.timeout,
                "late" => &mut outputs.late,
                "error" => &mut outputs.error,
                _ => {
                    self.error(
                        &path,
                        format!("unknown output kind `{kind}`, expected one of `match`, `timeout`, `late`, `error`"),
                    );
                    ok = false;
                    continue;
                }
            };
            match value {
                serde_json::Value::Null => {}
                serde_json::Value::Array(items) => {
                    let mut sinks = Vec::new();
                    for (i, item) in items.iter().enumerate() {
                        match self.sink(item, &with(&path, Seg::Index(i))) {
                            Some(s) => sinks.push(s),
                            None => ok = false,
                        }
                    }
                    *slot = Some(sinks);
                }
                other => {
                    let found = describe_json(other);
                    self.error(
                        &path,
                        format!(
                            "expected a list of sinks (`[]` drops these outputs), found {found}"
                        ),
                    );
                    ok = false;
                }
            }
        }
        ok.then_some(outputs)
    }

    fn sink(&mut self, json: &serde_json::Value, path: &[Seg]) -> Option<SinkConfig> {
        let (ty, rest) = self.tagged(json, path, "stdout, stderr, file, webhook or kafka")?;
        match ty.as_str() {
            "stdout" => self
                .section::<NoFields>(&rest, path)
                .map(|_| SinkConfig::Stdout {}),
            "stderr" => self
                .section::<NoFields>(&rest, path)
                .map(|_| SinkConfig::Stderr {}),
            "file" => {
                let s: FileSink = self.section(&rest, path)?;
                let at = with(path, key("path"));
                if s.path.as_os_str().is_empty() {
                    self.error(&at, "must not be empty");
                } else {
                    self.written(&s.path, at);
                }
                if s.rotate_bytes == Some(Bytes(0)) {
                    self.error(&with(path, key("rotate_bytes")), "must be more than 0");
                }
                Some(SinkConfig::File {
                    path: s.path,
                    rotate_bytes: s.rotate_bytes,
                })
            }
            "webhook" => {
                let w: WebhookConfig = self.section(&rest, path)?;
                self.check_webhook(&w, path);
                Some(SinkConfig::Webhook(w))
            }
            "kafka" => {
                let k: KafkaSinkConfig = self.section(&rest, path)?;
                self.check_brokers(&k.brokers, &with(path, key("brokers")));
                self.check_topic(&k.topic, &with(path, key("topic")));
                self.check_kafka_properties(&k.properties, path, SINK_OWN_PROPERTIES);
                if let Some(id) = &k.transactional_id {
                    if id.trim().is_empty() {
                        self.error(
                            &with(path, key("transactional_id")),
                            "a transactional id must not be empty",
                        );
                    }
                }
                Some(SinkConfig::Kafka(k))
            }
            other => {
                self.error(
                    &with(path, key("type")),
                    format!(
                        "unknown sink type '{other}', expected stdout, stderr, file, webhook or kafka"
                    ),
                );
                None
            }
        }
    }

    fn check_webhook(&mut self, w: &WebhookConfig, path: &[Seg]) {
        match reqwest::Url::parse(&w.url) {
            Ok(u)
                if matches!(u.scheme(), "http" | "https")
                    && u.host_str().is_some_and(|h| !h.is_empty()) => {}
            Ok(_) => self.error(
                &with(path, key("url")),
                format!("not an http(s) URL: '{}'", w.url),
            ),
            Err(e) => self.error(
                &with(path, key("url")),
                format!("not an http(s) URL: '{}' ({e})", w.url),
            ),
        }
        for (name, value) in &w.headers {
            let at = with(&with(path, key("headers")), key(name));
            if reqwest::header::HeaderName::from_bytes(name.as_bytes()).is_err() {
                self.error(&at, format!("not a valid header name: '{name}'"));
            } else if ["content-length", "idempotency-key", "transfer-encoding"]
                .contains(&name.to_ascii_lowercase().as_str())
            {
                self.error(&at, format!("'{name}' is set by the sink itself"));
            }
            if reqwest::header::HeaderValue::from_str(value).is_err() {
                self.error(&at, format!("not a valid header value: {value:?}"));
            }
        }
        if w.batch == 0 {
            self.error(&with(path, key("batch")), "must be at least 1");
        }
        self.check_positive(w.timeout, &with(path, key("timeout")));
        let BackoffConfig {
            initial,
            max,
            multiplier,
        } = w.backoff;
        let at = with(path, key("backoff"));
        self.check_positive(initial, &with(&at, key("initial")));
        if max < initial {
            self.error(
                &with(&at, key("max")),
                format!(
                    "must be at least `initial` ({} ms), not {} ms",
                    initial.0, max.0
                ),
            );
        }
        if !(multiplier.is_finite() && multiplier >= 1.0) {
            self.error(
                &with(&at, key("multiplier")),
                format!("must be a finite number of at least 1, not {multiplier}"),
            );
        }
        if let Some(dl) = &w.dead_letter {
            let at = with(path, key("dead_letter"));
            if dl.as_os_str().is_empty() {
                self.error(&at, "must not be empty");
            } else {
                self.written(dl, at);
            }
        }
    }

    fn check_kafka_source(&mut self, k: &KafkaSourceConfig, base: &[Seg]) {
        self.check_brokers(&k.brokers, &with(base, key("brokers")));
        let at = with(base, key("topics"));
        if k.topics.is_empty() {
            self.error(&at, "must name at least one topic");
        } else if k.topics.len() > KAFKA_MAX_TOPICS {
            self.error(
                &at,
                format!(
                    "at most {KAFKA_MAX_TOPICS} topics (an event's position holds its topic's index in 4 bits), not {}",
                    k.topics.len()
                ),
            );
        }
        for (i, t) in k.topics.iter().enumerate() {
            self.check_topic(t, &with(&at, Seg::Index(i)));
            if k.topics[..i].contains(t) {
                self.error(
                    &with(&at, Seg::Index(i)),
                    format!("topic '{t}' is named twice"),
                );
            }
        }
        if k.group_id.as_deref() == Some("") {
            self.error(&with(base, key("group_id")), "must not be empty");
        }
        for (name, field) in [
            ("message_key_field", &k.message_key_field),
            ("record_time_field", &k.record_time_field),
        ] {
            if field.as_deref() == Some("") {
                self.error(&with(base, key(name)), "must not be empty");
            }
        }
        if k.message_key_field.is_some() && k.message_key_field == k.record_time_field {
            self.error(
                &with(base, key("record_time_field")),
                "must differ from `message_key_field`",
            );
        }
        if let Some(t) = &k.changelog_topic {
            let at = with(base, key("changelog_topic"));
            self.check_topic(t, &at);
            if !k.scale_out {
                self.error(&at, "is used with `scale_out: true` only");
            } else if k.topics.contains(t) {
                self.error(&at, format!("'{t}' is also a topic read"));
            }
        }
        self.check_kafka_properties(&k.properties, base, SOURCE_OWN_PROPERTIES);
    }

    fn check_brokers(&mut self, brokers: &str, at: &[Seg]) {
        if brokers.split(',').any(|b| b.trim().is_empty()) {
            self.error(
                at,
                format!("expected host:port[,host:port...], found '{brokers}'"),
            );
        }
    }

    /// Kafka's rule for topic names.
    fn check_topic(&mut self, topic: &str, at: &[Seg]) {
        if topic.is_empty() || topic == "." || topic == ".." {
            self.error(at, format!("not a valid topic name: '{topic}'"));
        } else if topic.len() > 249 {
            self.error(at, "a topic name has at most 249 characters");
        } else if let Some(c) = topic
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
        {
            self.error(
                at,
                format!(
                    "not a valid topic name: '{topic}' ({c:?}: a topic name has only ASCII letters, digits, '.', '_' and '-')"
                ),
            );
        }
    }

    /// Properties go to librdkafka as they are, except those the source or
    /// sink sets itself (its guarantees depend on them).
    fn check_kafka_properties(
        &mut self,
        props: &BTreeMap<String, String>,
        base: &[Seg],
        own: &[(&str, &str)],
    ) {
        let at = with(base, key("properties"));
        for name in props.keys() {
            if name.trim().is_empty() {
                self.error(&at, "a property name must not be empty");
            } else if let Some((_, why)) = own.iter().find(|(p, _)| p == name) {
                self.error(&with(&at, key(name)), format!("'{name}' {why}"));
            }
        }
    }

    /// Records that a sink writes `file` (named at `path`).
    fn written(&mut self, file: &Path, path: Vec<Seg>) {
        self.files.push((normalize(&resolve(self.dir, file)), path));
    }

    /// Two sinks writing one file would interleave their lines and break
    /// each other's committed lengths.
    fn check_files(&mut self) {
        let files = std::mem::take(&mut self.files);
        let mut first: HashMap<&Path, &[Seg]> = HashMap::new();
        for (file, path) in &files {
            match first.get(file.as_path()) {
                Some(other) => {
                    let message = format!(
                        "'{}' is also written by {}: each file has one sink",
                        file.display(),
                        PathText(other)
                    );
                    self.error(path, message);
                }
                None => {
                    first.insert(file, path);
                }
            }
        }
    }
}

/// `p` relative to `dir` unless absolute.
fn resolve(dir: &Path, p: &Path) -> PathBuf {
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        dir.join(p)
    }
}

/// `p` without `.` and with `dir/..` folded (no file system access: the
/// files may not exist yet).
fn normalize(p: &Path) -> PathBuf {
    let mut out: Vec<Component> = Vec::new();
    for c in p.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => match out.last() {
                Some(Component::Normal(_)) => {
                    out.pop();
                }
                Some(Component::RootDir | Component::Prefix(_)) => {}
                _ => out.push(c),
            },
            other => out.push(other),
        }
    }
    out.iter().collect()
}

/// The field named by serde's "unknown field `x`, expected ..." message.
fn unknown_field(message: &str) -> Option<&str> {
    let rest = message.strip_prefix("unknown field `")?;
    rest.find('`').map(|end| &rest[..end])
}

/// A spec's field path (`stages[1].where`) as segments.
fn parse_path(text: &str) -> Vec<Seg> {
    let mut segs = Vec::new();
    for part in text.split('.') {
        let (name, mut indexes) = match part.find('[') {
            Some(i) => (&part[..i], &part[i..]),
            None => (part, ""),
        };
        if !name.is_empty() {
            segs.push(key(name));
        }
        while let Some(rest) = indexes.strip_prefix('[') {
            let Some(end) = rest.find(']') else { break };
            match rest[..end].parse() {
                Ok(i) => segs.push(Seg::Index(i)),
                Err(_) => break,
            }
            indexes = &rest[end + 1..];
        }
    }
    segs
}

fn ticks(names: &[&str]) -> String {
    names
        .iter()
        .map(|n| format!("`{n}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn describe(v: &Value) -> String {
    match v {
        Value::Null => "nothing".into(),
        Value::Bool(b) => format!("the boolean {b}"),
        Value::Int(i) => format!("the number {i}"),
        Value::Float(x) => format!("the number {x}"),
        Value::Str(s) => format!("the string '{s}'"),
        Value::Seq(_) => "a list".into(),
        Value::Map(_) => "a mapping".into(),
    }
}

fn describe_json(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::Null => "null".into(),
        serde_json::Value::Bool(b) => format!("the boolean {b}"),
        serde_json::Value::Number(n) => format!("the number {n}"),
        serde_json::Value::String(s) => format!("the string '{s}'"),
        serde_json::Value::Array(_) => "a list".into(),
        serde_json::Value::Object(_) => "a mapping".into(),
    }
}
