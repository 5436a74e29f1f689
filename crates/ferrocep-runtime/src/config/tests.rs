//! Tests of the config loader: the contract's example in YAML and JSON,
//! each class of error with its field path, several errors at once, and
//! random text (never a panic).

use std::path::{Path, PathBuf};

use proptest::prelude::*;

use super::*;

const SPEC: &str = "name: order-timeout\n\
key: order_id\n\
time:\n  field: ts\n  max_out_of_orderness: 5s\n\
within: 10m\n\
stages:\n  - name: create\n    where: type == \"create\"\n  - name: pay\n    where: type == \"pay\"\n";

/// The contract's example (section 2).
const EXAMPLE: &str = r#"name: order-timeout              # names the pipeline
patterns:
  - order-timeout.yaml
source:
  type: http
  listen: 127.0.0.1:8080
outputs:
  match:   [{type: stdout}]
  timeout: [{type: webhook, url: "http://127.0.0.1:9000/notify"}, {type: file, path: out/timeouts.jsonl}]
  late:    [{type: file, path: out/late.jsonl}]
  error:   [{type: file, path: out/errors.jsonl}]
time:
  idle_timeout: 5s
state:
  dir: ./data
  checkpoint_interval: 10s
server:
  listen: 127.0.0.1:9464
"#;

const EXAMPLE_JSON: &str = r#"{
  "name": "order-timeout",
  "patterns": ["order-timeout.yaml"],
  "source": {"type": "http", "listen": "127.0.0.1:8080"},
  "outputs": {
    "match": [{"type": "stdout"}],
    "timeout": [{"type": "webhook", "url": "http://127.0.0.1:9000/notify"}, {"type": "file", "path": "out/timeouts.jsonl"}],
    "late": [{"type": "file", "path": "out/late.jsonl"}],
    "error": [{"type": "file", "path": "out/errors.jsonl"}]
  },
  "time": {"idle_timeout": "5s"},
  "state": {"dir": "./data", "checkpoint_interval": "10s"},
  "server": {"listen": "127.0.0.1:9464"}
}"#;

/// A directory with the spec file `order-timeout.yaml`.
fn dir() -> tempfile::TempDir {
    let d = tempfile::tempdir().unwrap();
    std::fs::write(d.path().join("order-timeout.yaml"), SPEC).unwrap();
    d
}

fn yaml(text: &str, dir: &Path) -> Result<LoadedConfig, ConfigErrors> {
    parse_str(text, Format::Yaml, Path::new("pipe.yaml"), dir)
}

/// The errors of `text` (YAML) as `PATH: MESSAGE` lines.
fn errors(text: &str) -> Vec<ConfigError> {
    let d = dir();
    match yaml(text, d.path()) {
        Ok(_) => panic!("accepted:\n{text}"),
        Err(e) => {
            assert!(!e.is_empty());
            e.0
        }
    }
}

/// A minimal good config with `extra` appended (top-level YAML).
fn with_source(source: &str) -> String {
    format!("name: p\npatterns: [order-timeout.yaml]\nsource:\n{source}")
}

/// Asserts that `text` has exactly one error, at `path`, whose message
/// contains `needle`.
#[track_caller]
fn one_error(text: &str, path: &str, needle: &str) -> ConfigError {
    let errs = errors(text);
    assert_eq!(errs.len(), 1, "{errs:#?}");
    let e = errs.into_iter().next().unwrap();
    assert_eq!(e.path, path, "{e}");
    assert!(e.message.contains(needle), "{e}");
    assert_eq!(e.file, PathBuf::from("pipe.yaml"));
    e
}

const HTTP: &str = "  type: http\n  listen: 127.0.0.1:8080\n";

// ---------------------------------------------------------------- good configs

#[test]
fn the_contract_example_loads_from_yaml_and_json() {
    let d = dir();
    for (text, format) in [(EXAMPLE, Format::Yaml), (EXAMPLE_JSON, Format::Json)] {
        let c = parse_str(text, format, Path::new("pipe"), d.path()).unwrap();
        assert_eq!(c.config.name, "order-timeout");
        assert_eq!(c.patterns.len(), 1);
        assert_eq!(c.patterns[0].name, "order-timeout");
        assert_eq!(
            c.patterns[0].source,
            PatternSource::File(d.path().join("order-timeout.yaml"))
        );
        assert!(c.patterns[0].spec.is_event_time());
        match &c.config.source {
            SourceConfig::Http {
                listen,
                path,
                max_body,
                ..
            } => {
                assert_eq!(listen, "127.0.0.1:8080");
                assert_eq!(path, "/events");
                assert_eq!(*max_body, Bytes(1 << 20));
            }
            other => panic!("{other:?}"),
        }
        let timeout = c.config.outputs.timeout.as_ref().unwrap();
        assert_eq!(timeout.len(), 2);
        match &timeout[0] {
            SinkConfig::Webhook(w) => {
                assert_eq!(w.url, "http://127.0.0.1:9000/notify");
                assert_eq!(w.batch, 1);
                assert_eq!(w.backoff, BackoffConfig::default());
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(
            timeout[1],
            SinkConfig::File {
                path: "out/timeouts.jsonl".into(),
                rotate_bytes: None
            }
        );
        assert_eq!(c.config.outputs.r#match, Some(vec![SinkConfig::Stdout {}]));
        assert_eq!(c.config.time.idle_timeout, Some(Millis(5_000)));
        assert_eq!(c.config.state.checkpoint_interval, Millis(10_000));
        assert_eq!(c.config.server.as_ref().unwrap().listen, "127.0.0.1:9464");
        assert_eq!(c.resolve(&c.config.state.dir), d.path().join("./data"));
        assert_eq!(c.resolve(Path::new("/abs")), PathBuf::from("/abs"));
    }
}

#[test]
fn format_auto_sniffs_json_and_yaml() {
    let d = dir();
    for text in [EXAMPLE, EXAMPLE_JSON] {
        parse_str(text, Format::Auto, Path::new("pipe"), d.path()).unwrap();
    }
}

#[test]
fn load_reads_by_extension_relative_to_the_file() {
    let d = dir();
    let sub = d.path().join("pipelines");
    std::fs::create_dir(&sub).unwrap();
    let json = EXAMPLE_JSON.replace("\"order-timeout.yaml\"", "\"../order-timeout.yaml\"");
    // a .json file that is not YAML-looking still reads as JSON
    let p = sub.join("pipe.json");
    std::fs::write(&p, &json).unwrap();
    let c = load(&p).unwrap();
    assert_eq!(c.dir, sub);
    assert_eq!(c.path, p);
    assert_eq!(
        c.patterns[0].source,
        PatternSource::File(sub.join("../order-timeout.yaml"))
    );
    // YAML in a .json file: a JSON syntax error naming the file
    let p = sub.join("bad.json");
    std::fs::write(&p, EXAMPLE).unwrap();
    let e = load(&p).unwrap_err();
    assert!(
        e.to_string().starts_with(&format!("{}:1:", p.display())),
        "{e}"
    );
    assert!(e.to_string().contains("invalid json"), "{e}");
    // a missing file
    let e = load(&sub.join("nope.yaml")).unwrap_err();
    assert!(e.to_string().contains("cannot read the config"), "{e}");
}

#[test]
fn the_example_pipeline_validates() {
    let p =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/pipelines/order-timeout.yaml");
    let c = load(&p).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(c.config.name, "order-timeout");
    assert_eq!(c.patterns[0].name, "order-timeout");
    assert!(matches!(c.config.source, SourceConfig::Generator(_)));
}

#[test]
fn defaults_when_sections_are_absent_or_null() {
    let d = dir();
    let c = yaml(
        &format!("{}outputs:\ntime: ~\n", with_source(HTTP)),
        d.path(),
    )
    .unwrap();
    assert!(c.config.outputs.r#match.is_none());
    assert!(c.config.time.idle_timeout.is_none());
    assert_eq!(c.config.state.dir, PathBuf::from("data"));
    assert!(c.config.server.is_none());
    // `[]` drops a kind on purpose
    let c = yaml(
        &format!("{}outputs: {{late: []}}\n", with_source(HTTP)),
        d.path(),
    )
    .unwrap();
    assert_eq!(c.config.outputs.late, Some(vec![]));
}

#[test]
fn every_source_type_loads() {
    let d = dir();
    std::fs::write(d.path().join("events.jsonl"), "").unwrap();
    for (source, check) in [
        ("  type: file\n  path: events.jsonl\n  end_of_input: stop\n", "file"),
        ("  type: file\n  path: not-yet.jsonl\n  follow: true\n", "follow"),
        ("  type: stdin\n", "stdin"),
        ("  type: generator\n  workload: seed\n  interval: 100ms\n  events: 9\n", "seed"),
        (
            "  type: generator\n  workload: orders\n  rate: 20.5\n  pay_ratio: 1\n  pay_delay: {distribution: uniform, mean: 1s, max: 2s}\n  out_of_orderness: 0\n  seed: 7\n",
            "orders",
        ),
    ] {
        let c = yaml(&with_source(source), d.path()).unwrap_or_else(|e| panic!("{source}: {e}"));
        let ok = match (&c.config.source, check) {
            (SourceConfig::File { follow: false, end_of_input, .. }, "file") => {
                *end_of_input == EndOfInputConfig::Stop
            }
            (SourceConfig::File { follow: true, .. }, "follow") => true,
            (SourceConfig::Stdin { .. }, "stdin") => true,
            (SourceConfig::Generator(g), "seed") => {
                g.workload == Workload::Seed && g.interval == Some(Millis(100)) && g.events == Some(9)
            }
            (SourceConfig::Generator(g), "orders") => {
                g.workload == Workload::Orders && g.rate == Some(20.5) && g.seed == Some(7)
            }
            _ => false,
        };
        assert!(ok, "{source}: {:?}", c.config.source);
    }
}

#[test]
fn kafka_source_and_sink_load() {
    let d = dir();
    let text = with_source(
        "  type: kafka\n  brokers: 127.0.0.1:9092,127.0.0.1:9093\n  topics: [orders, orders.v2]\n  \
         group_id: g1\n  start: latest\n  message_key_field: order_id\n  record_time_field: ts\n  \
         properties: {security.protocol: SASL_SSL, session.timeout.ms: '6000'}\n\
         outputs:\n  timeout: [{type: kafka, brokers: 'k:9092', topic: timeouts, properties: {linger.ms: '1'}}]\n",
    );
    let c = yaml(&text, d.path()).unwrap_or_else(|e| panic!("{e}"));
    let SourceConfig::Kafka(k) = &c.config.source else {
        panic!("{:?}", c.config.source)
    };
    assert_eq!(k.topics, ["orders", "orders.v2"]);
    assert_eq!(k.group_id.as_deref(), Some("g1"));
    assert_eq!(k.start, KafkaStart::Latest);
    assert_eq!(k.message_key_field.as_deref(), Some("order_id"));
    assert_eq!(k.record_time_field.as_deref(), Some("ts"));
    assert_eq!(k.properties["session.timeout.ms"], "6000");
    let sinks = c.config.outputs.timeout.as_ref().unwrap();
    assert_eq!(
        sinks[0],
        SinkConfig::Kafka(KafkaSinkConfig {
            brokers: "k:9092".into(),
            topic: "timeouts".into(),
            properties: [("linger.ms".to_string(), "1".to_string())].into(),
            transactional: false,
            transactional_id: None,
        })
    );
    // Defaults.
    let c = yaml(
        &with_source("  type: kafka\n  brokers: b:1\n  topics: [t]\n"),
        d.path(),
    )
    .unwrap();
    let SourceConfig::Kafka(k) = &c.config.source else {
        panic!()
    };
    assert_eq!(
        (k.group_id.clone(), k.start, k.message_key_field.clone()),
        (None, KafkaStart::Earliest, None)
    );
    assert!(!k.scale_out && k.changelog_topic.is_none());
    let c = yaml(
        &with_source(
            "  type: kafka\n  brokers: b:1\n  topics: [t]\n  scale_out: true\n  changelog_topic: t-state\n",
        ),
        d.path(),
    )
    .unwrap();
    let SourceConfig::Kafka(k) = &c.config.source else {
        panic!()
    };
    assert!(k.scale_out);
    assert_eq!(k.changelog_topic.as_deref(), Some("t-state"));
}

#[test]
fn kafka_changelog_topic_errors() {
    let src = |extra: &str| {
        with_source(&format!(
            "  type: kafka\n  brokers: b:1\n  topics: [a]\n{extra}"
        ))
    };
    one_error(
        &src("  changelog_topic: c\n"),
        "source.changelog_topic",
        "with `scale_out: true` only",
    );
    one_error(
        &src("  scale_out: true\n  changelog_topic: a\n"),
        "source.changelog_topic",
        "also a topic read",
    );
    one_error(
        &src("  scale_out: true\n  changelog_topic: 'x y'\n"),
        "source.changelog_topic",
        "not a valid topic name",
    );
}

#[test]
fn kafka_errors_name_their_field() {
    let src = |extra: &str| with_source(&format!("  type: kafka\n  brokers: b:1\n{extra}"));
    one_error(&src(""), "source", "missing field `topics`");
    one_error(
        &src("  topics: []\n"),
        "source.topics",
        "at least one topic",
    );
    one_error(
        &src("  topics: [a, 'b c']\n"),
        "source.topics[1]",
        "not a valid topic name: 'b c'",
    );
    one_error(
        &src("  topics: [a, a]\n"),
        "source.topics[1]",
        "named twice",
    );
    let many: Vec<String> = (0..17).map(|i| format!("t{i}")).collect();
    one_error(
        &src(&format!("  topics: [{}]\n", many.join(", "))),
        "source.topics",
        "at most 16 topics",
    );
    one_error(
        &src("  topics: [a]\n  properties: {enable.auto.commit: 'true'}\n"),
        "source.properties.enable.auto.commit",
        "offsets are kept in ferrocep's checkpoints",
    );
    one_error(
        &src("  topics: [a]\n  group_id: ''\n"),
        "source.group_id",
        "must not be empty",
    );
    one_error(
        &src("  topics: [a]\n  start: middle\n"),
        "source.start",
        "unknown variant `middle`",
    );
    one_error(
        &src("  topics: [a]\n  message_key_field: k\n  record_time_field: k\n"),
        "source.record_time_field",
        "must differ",
    );
    one_error(
        &src("  topics: [a]\n  colour: red\n"),
        "source.colour",
        "unknown field `colour`",
    );
    one_error(
        &with_source("  type: kafka\n  brokers: 'a:1,,b:2'\n  topics: [a]\n"),
        "source.brokers",
        "expected host:port",
    );
    one_error(
        &format!(
            "{}outputs: {{match: [{{type: kafka, brokers: 'b:1', topic: 'x/y'}}]}}\n",
            with_source(HTTP)
        ),
        "outputs.match[0].topic",
        "not a valid topic name",
    );
    one_error(
        &format!(
            "{}outputs: {{match: [{{type: kafka, brokers: 'b:1'}}]}}\n",
            with_source(HTTP)
        ),
        "outputs.match[0]",
        "missing field `topic`",
    );
    one_error(
        &format!(
            "{}outputs: {{match: [{{type: kafka, brokers: 'b:1', topic: t, properties: {{bootstrap.servers: x}}}}]}}\n",
            with_source(HTTP)
        ),
        "outputs.match[0].properties.bootstrap.servers",
        "set from `brokers`",
    );
    one_error(
        &format!(
            "{}outputs: {{match: [{{type: kafka, brokers: 'b:1', topic: t, properties: {{transactional.id: x}}}}]}}\n",
            with_source(HTTP)
        ),
        "outputs.match[0].properties.transactional.id",
        "set from `transactional_id`",
    );
    one_error(
        &format!(
            "{}outputs: {{match: [{{type: kafka, brokers: 'b:1', topic: t, transactional_id: ' '}}]}}\n",
            with_source(HTTP)
        ),
        "outputs.match[0].transactional_id",
        "must not be empty",
    );
}

#[test]
fn kafka_sink_transactional_ids() {
    let k = |transactional, id: Option<&str>| KafkaSinkConfig {
        brokers: "b:1".into(),
        topic: "t".into(),
        properties: Default::default(),
        transactional,
        transactional_id: id.map(String::from),
    };
    assert_eq!(
        k(false, None).transactional_id("p", "outputs.match[0]"),
        None
    );
    assert_eq!(
        k(true, None)
            .transactional_id("p", "outputs.match[0]")
            .as_deref(),
        Some("ferrocep-p-outputs.match[0]")
    );
    assert_eq!(
        k(false, Some("mine")).transactional_id("p", "s").as_deref(),
        Some("mine")
    );
}

// ---------------------------------------------------------------- patterns

#[test]
fn inline_and_file_patterns() {
    let d = dir();
    let text = format!(
        "name: p\npatterns:\n  - order-timeout.yaml\n  - name: quick\n    key: id\n    stages: [{{name: a}}, {{name: b, where: 'x > 1'}}]\nsource:\n{HTTP}"
    );
    let c = yaml(&text, d.path()).unwrap();
    let names: Vec<_> = c.patterns.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["order-timeout", "quick"]);
    assert_eq!(c.patterns[1].source, PatternSource::Inline);
    assert!(!c.patterns[1].spec.is_event_time());
    assert!(matches!(c.config.patterns[0], PatternRef::Path(_)));
    match &c.config.patterns[1] {
        PatternRef::Inline(v) => assert_eq!(v["name"], "quick"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_file_pattern_is_named_by_its_stem_without_a_name() {
    let d = dir();
    std::fs::write(
        d.path().join("no-name.yml"),
        "stages: [{name: a}, {name: b}]\n",
    )
    .unwrap();
    let c = yaml(
        &format!("name: p\npatterns: [no-name.yml]\nsource:\n{HTTP}"),
        d.path(),
    )
    .unwrap();
    assert_eq!(c.patterns[0].name, "no-name");
}

#[test]
fn pattern_errors_name_the_pattern_and_the_spec_field() {
    let d = dir();
    std::fs::write(
        d.path().join("bad.yaml"),
        "stages:\n  - name: a\n    where: 'x >'\n",
    )
    .unwrap();
    std::fs::write(
        d.path().join("nocompile.yaml"),
        "stages:\n  - name: a\n  - name: b\n    contiguity: not_followed_by\n",
    )
    .unwrap();
    let text = format!(
        "name: p\npatterns:\n  - bad.yaml\n  - missing.yaml\n  - nocompile.yaml\n  - {{name: i, stages: [{{name: a, where: 'y ==' }}]}}\n  - {{stages: [{{name: a}}]}}\n  - 3\n  - {{name: i2, stages: [{{name: a}}, {{name: b, contiguity: not_followed_by}}]}}\nsource:\n{HTTP}"
    );
    let e = yaml(&text, d.path()).unwrap_err();
    let lines: Vec<String> = e.0.iter().map(|e| e.to_string()).collect();
    assert_eq!(e.len(), 7, "{e}");
    let bad = d.path().join("bad.yaml");
    assert!(
        lines[0].starts_with(&format!("pipe.yaml:3:5: patterns[0]: {}:3:", bad.display())),
        "{}",
        lines[0]
    );
    assert!(
        lines[0].contains(": stages[0].where: expression 'x >'"),
        "{}",
        lines[0]
    );
    assert!(
        lines[1].starts_with("pipe.yaml:4:5: patterns[1]: "),
        "{}",
        lines[1]
    );
    assert!(
        lines[1].contains("missing.yaml: cannot read the spec"),
        "{}",
        lines[1]
    );
    assert!(
        lines[2].starts_with("pipe.yaml:5:5: patterns[2]: "),
        "{}",
        lines[2]
    );
    assert!(lines[2].contains("nocompile.yaml"), "{}", lines[2]);
    assert_eq!(e.0[3].path, "patterns[3].stages[0].where");
    assert!(
        e.0[3].message.starts_with("expression 'y =='"),
        "{}",
        lines[3]
    );
    assert_eq!(e.0[4].path, "patterns[4]");
    assert!(e.0[4].message.contains("needs a `name`"), "{}", lines[4]);
    assert_eq!(e.0[5].path, "patterns[5]");
    assert!(
        e.0[5].message.contains("found the number 3"),
        "{}",
        lines[5]
    );
    assert_eq!(e.0[6].path, "patterns[6]");
    assert!(e.0[6].message.contains("does not compile"), "{}", lines[6]);
}

#[test]
fn pattern_names_are_unique() {
    let e = one_error(
        &format!(
            "name: p\npatterns:\n  - order-timeout.yaml\n  - {{name: order-timeout, stages: [{{name: a}}]}}\nsource:\n{HTTP}"
        ),
        "patterns[1]",
        "duplicate pattern name 'order-timeout' (also patterns[0])",
    );
    assert_eq!(e.location.map(|l| l.line), Some(4));
}

#[test]
fn at_least_one_pattern() {
    one_error(
        &format!("name: p\npatterns: []\nsource:\n{HTTP}"),
        "patterns",
        "at least one pattern",
    );
    one_error(
        &format!("name: p\npatterns: order-timeout.yaml\nsource:\n{HTTP}"),
        "patterns",
        "expected a list",
    );
}

// ---------------------------------------------------------------- structure

#[test]
fn missing_and_unknown_top_level_fields() {
    let errs = errors("nme: p\nsource: {type: stdin}\n");
    let lines: Vec<String> = errs.iter().map(|e| e.to_string()).collect();
    assert_eq!(
        lines,
        [
            "pipe.yaml:1:1: missing field `name`",
            "pipe.yaml:1:1: missing field `patterns`",
            "pipe.yaml:1:6: nme: unknown field `nme`, expected one of `name`, `patterns`, `source`, `outputs`, `time`, `state`, `server`",
        ]
    );
    one_error("- a\n- b\n", "", "a config is a mapping");
}

#[test]
fn unknown_fields_are_named_where_they_are() {
    one_error(
        &format!("{}  lisen: 1\n", with_source(HTTP)),
        "source.lisen",
        "unknown field `lisen`",
    );
    one_error(
        &format!(
            "{}outputs:\n  match: [{{type: stdout, x: 1}}]\n",
            with_source(HTTP)
        ),
        "outputs.match[0].x",
        "unknown field `x`",
    );
    one_error(
        &format!(
            "{}outputs:\n  timeout:\n    - type: webhook\n      url: http://h/\n      backoff: {{initial: 1s, jitter: true}}\n",
            with_source(HTTP)
        ),
        "outputs.timeout[0].backoff.jitter",
        "unknown field `jitter`",
    );
    one_error(
        &format!("{}state: {{dir: d, interval: 1s}}\n", with_source(HTTP)),
        "state.interval",
        "unknown field `interval`",
    );
    one_error(
        &format!("{}outputs: {{matches: []}}\n", with_source(HTTP)),
        "outputs.matches",
        "unknown output kind `matches`",
    );
    one_error(
        &format!(
            "{}server: {{listen: '127.0.0.1:1', token: x}}\n",
            with_source(HTTP)
        ),
        "server.token",
        "unknown field `token`",
    );
}

#[test]
fn wrong_types_name_the_field() {
    let e = one_error(
        &format!("{}time: {{idle_timeout: [1]}}\n", with_source(HTTP)),
        "time.idle_timeout",
        "expected a duration",
    );
    assert_eq!(e.location.map(|l| l.line), Some(6));
    one_error(
        &format!("{}time: {{idle_timeout: 5 sec}}\n", with_source(HTTP)),
        "time.idle_timeout",
        "invalid duration '5 sec'",
    );
    one_error(
        &format!("{}  max_body: lots\n", with_source(HTTP)),
        "source.max_body",
        "invalid size 'lots'",
    );
    one_error(
        &format!(
            "{}outputs: {{match: [{{type: webhook, url: 'http://h/', batch: -1}}]}}\n",
            with_source(HTTP)
        ),
        "outputs.match[0].batch",
        "invalid value",
    );
    one_error(
        &format!(
            "{}outputs: {{match: [{{type: webhook}}]}}\n",
            with_source(HTTP)
        ),
        "outputs.match[0]",
        "missing field `url`",
    );
    one_error(
        &format!(
            "{}outputs: {{match: {{type: stdout}}}}\n",
            with_source(HTTP)
        ),
        "outputs.match",
        "expected a list of sinks",
    );
    one_error(
        &format!(
            "{}outputs: {{match: [{{type: mqtt}}]}}\n",
            with_source(HTTP)
        ),
        "outputs.match[0].type",
        "unknown sink type 'mqtt', expected stdout, stderr, file, webhook or kafka",
    );
    one_error(
        "name: [p]\npatterns: [order-timeout.yaml]\nsource: {type: stdin}\n",
        "name",
        "expected a string",
    );
    one_error(
        &with_source("  type: generator\n  workload: orders\n  rate: .nan\n"),
        "source.rate",
        "not a finite number",
    );
}

#[test]
fn source_types() {
    let e = one_error(
        &with_source("  type: nats\n  brokers: x\n"),
        "source.type",
        "unknown source type 'nats', expected file, stdin, http, generator or kafka",
    );
    assert_eq!(e.location.map(|l| (l.line, l.column)), Some((4, 9)));
    one_error(
        &with_source("  type: mqtt\n"),
        "source.type",
        "unknown source type 'mqtt'",
    );
    one_error(
        &with_source("  listen: 127.0.0.1:1\n"),
        "source",
        "missing field `type`",
    );
    one_error(
        "name: p\npatterns: [order-timeout.yaml]\nsource: stdin\n",
        "source",
        "expected a mapping with a `type`",
    );
}

#[test]
fn syntax_errors_have_a_position() {
    let errs = errors("name: p\npatterns: [a\nsource: x\n");
    assert_eq!(errs.len(), 1);
    assert!(errs[0].message.starts_with("invalid yaml"), "{}", errs[0]);
    assert!(errs[0].location.is_some());
    let errs = errors("name: p\nname: q\n");
    assert!(errs[0].message.contains("name"), "{}", errs[0]);
    let d = dir();
    let e = parse_str(
        "{\"name\": 1,,}",
        Format::Json,
        Path::new("p.json"),
        d.path(),
    )
    .unwrap_err();
    assert_eq!(e.len(), 1);
    assert!(e.to_string().starts_with("p.json:1:"), "{e}");
    let e = parse_str(
        "{\"name\": \"a\", \"name\": \"b\"}",
        Format::Json,
        Path::new("p.json"),
        d.path(),
    )
    .unwrap_err();
    assert!(e.to_string().contains("duplicate key `name`"), "{e}");
    let errs = errors("");
    assert!(
        errs[0].message.contains("a config is a mapping"),
        "{}",
        errs[0]
    );
}

// ---------------------------------------------------------------- values

#[test]
fn names() {
    one_error(
        "name: ''\npatterns: [order-timeout.yaml]\nsource: {type: stdin}\n",
        "name",
        "must not be empty",
    );
    one_error(
        "name: order timeout\npatterns: [order-timeout.yaml]\nsource: {type: stdin}\n",
        "name",
        "has the character ' '",
    );
}

#[test]
fn listen_addresses() {
    one_error(
        &with_source("  type: http\n  listen: localhost:80\n"),
        "source.listen",
        "not an address to listen on",
    );
    one_error(
        &format!("{}server: {{listen: ':9464'}}\n", with_source(HTTP)),
        "server.listen",
        "not an address to listen on",
    );
}

#[test]
fn http_source_values() {
    let errs = errors(&with_source(
        "  type: http\n  listen: '[::1]:8080'\n  path: events\n  max_body: 0\n  max_backlog: 0KiB\n",
    ));
    let paths: Vec<_> = errs.iter().map(|e| e.path.as_str()).collect();
    assert_eq!(
        paths,
        ["source.path", "source.max_body", "source.max_backlog"],
        "{errs:#?}"
    );
    assert!(errs[0].message.contains("must start with '/'"));
}

#[test]
fn webhook_values() {
    let text = format!(
        "{}outputs:\n  timeout:\n    - type: webhook\n      url: ftp://x\n      batch: 0\n      timeout: 0s\n      headers: {{'Bad Name': v, Idempotency-Key: k, X-Ok: \"a\\nb\"}}\n      backoff: {{initial: 0, max: 0, multiplier: 0.5}}\n",
        with_source(HTTP)
    );
    let errs = errors(&text);
    let got: Vec<(String, &str)> = errs
        .iter()
        .map(|e| (e.path.clone(), e.message.as_str()))
        .collect();
    let expect = [
        ("outputs.timeout[0].url", "not an http(s) URL: 'ftp://x'"),
        ("outputs.timeout[0].batch", "must be at least 1"),
        ("outputs.timeout[0].timeout", "must be more than 0"),
        (
            "outputs.timeout[0].headers.Bad Name",
            "not a valid header name",
        ),
        (
            "outputs.timeout[0].headers.Idempotency-Key",
            "set by the sink itself",
        ),
        (
            "outputs.timeout[0].headers.X-Ok",
            "not a valid header value",
        ),
        ("outputs.timeout[0].backoff.initial", "must be more than 0"),
        ("outputs.timeout[0].backoff.multiplier", "at least 1"),
    ];
    assert_eq!(got.len(), expect.len(), "{got:#?}");
    for ((p, m), (ep, em)) in got.iter().zip(expect) {
        assert_eq!(p, ep);
        assert!(m.contains(em), "{p}: {m}");
    }
    assert_eq!(
        errs[0].to_string(),
        "pipe.yaml:9:12: outputs.timeout[0].url: not an http(s) URL: 'ftp://x'"
    );
    one_error(
        &format!(
            "{}outputs: {{match: [{{type: webhook, url: 'http://h', backoff: {{initial: 2s, max: 1s}}}}]}}\n",
            with_source(HTTP)
        ),
        "outputs.match[0].backoff.max",
        "must be at least `initial` (2000 ms)",
    );
    one_error(
        &format!(
            "{}outputs: {{match: [{{type: webhook, url: 'http://'}}]}}\n",
            with_source(HTTP)
        ),
        "outputs.match[0].url",
        "not an http(s) URL",
    );
    one_error(
        &format!(
            "{}outputs: {{match: [{{type: webhook, url: 'not a url'}}]}}\n",
            with_source(HTTP)
        ),
        "outputs.match[0].url",
        "not an http(s) URL: 'not a url' (",
    );
}

#[test]
fn file_sink_values() {
    one_error(
        &format!(
            "{}outputs: {{late: [{{type: file, path: ''}}]}}\n",
            with_source(HTTP)
        ),
        "outputs.late[0].path",
        "must not be empty",
    );
    one_error(
        &format!(
            "{}outputs: {{late: [{{type: file, path: x, rotate_bytes: 0}}]}}\n",
            with_source(HTTP)
        ),
        "outputs.late[0].rotate_bytes",
        "must be more than 0",
    );
}

#[test]
fn two_sinks_writing_one_file() {
    one_error(
        &format!(
            "{}outputs:\n  timeout: [{{type: file, path: out/x.jsonl}}]\n  late: [{{type: file, path: ./out/../out/x.jsonl}}]\n",
            with_source(HTTP)
        ),
        "outputs.late[0].path",
        "is also written by outputs.timeout[0].path",
    );
    one_error(
        &format!(
            "{}outputs:\n  timeout: [{{type: webhook, url: 'http://h', dead_letter: dl.jsonl}}]\n  error: [{{type: file, path: dl.jsonl}}]\n",
            with_source(HTTP)
        ),
        "outputs.error[0].path",
        "is also written by outputs.timeout[0].dead_letter",
    );
}

#[test]
fn time_and_state_values() {
    one_error(
        &format!("{}time: {{idle_timeout: 0s}}\n", with_source(HTTP)),
        "time.idle_timeout",
        "must be more than 0",
    );
    one_error(
        &format!("{}state: {{checkpoint_interval: 0}}\n", with_source(HTTP)),
        "state.checkpoint_interval",
        "must be more than 0",
    );
}

#[test]
fn file_source_must_exist_unless_followed() {
    one_error(
        &with_source("  type: file\n  path: nope.jsonl\n"),
        "source.path",
        "file not found",
    );
    one_error(
        &with_source("  type: file\n  path: .\n"),
        "source.path",
        "is a directory",
    );
    one_error(
        &with_source("  type: file\n  path: nope.jsonl\n  follow: true\n  end_of_input: stop\n"),
        "source.end_of_input",
        "applies only without `follow: true`",
    );
}

#[test]
fn generator_fields_belong_to_their_workload() {
    one_error(
        &with_source("  type: generator\n  workload: seed\n  rate: 10\n"),
        "source.rate",
        "`rate` does not apply to the seed workload",
    );
    one_error(
        &with_source("  type: generator\n  workload: orders\n  interval: 1s\n"),
        "source.interval",
        "`interval` does not apply to the orders workload",
    );
    one_error(
        &with_source("  type: generator\n  workload: seed\n  interval: 0s\n"),
        "source.interval",
        "must be more than 0",
    );
    one_error(
        &with_source("  type: generator\n  workload: trades\n"),
        "source.workload",
        "unknown variant `trades`",
    );
    one_error(
        &with_source("  type: generator\n"),
        "source",
        "missing field `workload`",
    );
}

#[test]
fn generator_orders_values() {
    let errs = errors(&with_source(
        "  type: generator\n  workload: orders\n  rate: -1\n  pay_ratio: 1.5\n  pay_delay: {distribution: uniform, mean: 0s, max: 0s}\n",
    ));
    let paths: Vec<_> = errs.iter().map(|e| e.path.as_str()).collect();
    assert_eq!(
        paths,
        ["source.rate", "source.pay_ratio", "source.pay_delay.mean"],
        "{errs:#?}"
    );
    one_error(
        &with_source("  type: generator\n  workload: orders\n  rate: .inf\n"),
        "source.rate",
        "not a finite number",
    );
    one_error(
        &with_source("  type: generator\n  workload: orders\n  pay_delay: {distribution: uniform, mean: 2s, max: 1s}\n"),
        "source.pay_delay.max",
        "must be at least `mean`",
    );
    one_error(
        &with_source("  type: generator\n  workload: orders\n  pay_delay: {distribution: uniform, mean: 2s}\n"),
        "source.pay_delay",
        "needs `max`",
    );
    one_error(
        &with_source("  type: generator\n  workload: orders\n  pay_delay: {distribution: fixed, mean: 2s, max: 3s}\n"),
        "source.pay_delay.max",
        "does not apply to a fixed delay",
    );
    one_error(
        &with_source(
            "  type: generator\n  workload: orders\n  pay_delay: {distribution: normal}\n",
        ),
        "source.pay_delay.distribution",
        "unknown variant `normal`",
    );
}

// ---------------------------------------------------------------- together

#[test]
fn every_error_is_reported_in_file_order() {
    let text = "name: 'bad name'\n\
patterns: [order-timeout.yaml, missing.yaml]\n\
source:\n  type: http\n  listen: nowhere\n  path: x\n\
outputs:\n  timeout:\n    - {type: webhook, url: 'ftp://x'}\n    - {type: file, path: t.jsonl, colour: red}\n  late: [{type: file, path: t.jsonl}]\n\
time: {idle_timeout: soon}\n\
state: {checkpoint_interval: 0}\n\
server: {listen: 'x'}\n\
extra: 1\n";
    let errs = errors(text);
    let got: Vec<(u64, &str)> = errs
        .iter()
        .map(|e| (e.location.map(|l| l.line).unwrap_or(0), e.path.as_str()))
        .collect();
    assert_eq!(
        got,
        [
            (1, "name"),
            (2, "patterns[1]"),
            (5, "source.listen"),
            (6, "source.path"),
            (9, "outputs.timeout[0].url"),
            (10, "outputs.timeout[1].colour"),
            (12, "time.idle_timeout"),
            (13, "state.checkpoint_interval"),
            (14, "server.listen"),
            (15, "extra"),
        ],
        "{errs:#?}"
    );
    let all = ConfigErrors(errs).to_string();
    assert_eq!(all.lines().count(), 10);
    assert!(all.lines().all(|l| l.starts_with("pipe.yaml:")), "{all}");
}

#[test]
fn json_errors_have_paths_but_no_positions() {
    let d = dir();
    let e = parse_str(
        r#"{"name": "p", "patterns": ["order-timeout.yaml"], "source": {"type": "http", "listen": "x"},
            "outputs": {"timeout": [{"type": "webhook", "url": "ftp://x"}]}}"#,
        Format::Json,
        Path::new("pipe.json"),
        d.path(),
    )
    .unwrap_err();
    assert_eq!(
        e.to_string(),
        "pipe.json: source.listen: not an address to listen on (IP:PORT, e.g. 127.0.0.1:8080): 'x'\n\
         pipe.json: outputs.timeout[0].url: not an http(s) URL: 'ftp://x'"
    );
}

// ---------------------------------------------------------------- robustness

/// Cuts, repeats and replaces parts of a good config.
fn mutate(text: &str, ops: &[(usize, usize, u8)]) -> String {
    let mut bytes = text.as_bytes().to_vec();
    const PIECES: &[&str] = &[
        ":", "- ", "{", "}", "[", "]", "\n", "  ", "type: ", "'", "\"", "~", "0", "-1", "1e999",
        ".nan", "&a ", "*a", "<<: ", "!!str ", "patterns", "kafka", "\u{feff}", "é", "\t",
    ];
    for &(at, len, op) in ops {
        if bytes.is_empty() {
            break;
        }
        let at = at % bytes.len();
        let end = (at + len % 16).min(bytes.len());
        match op % 3 {
            0 => {
                bytes.drain(at..end);
            }
            1 => {
                let piece = PIECES[usize::from(op) % PIECES.len()].as_bytes();
                bytes.splice(at..at, piece.iter().copied());
            }
            _ => {
                let copy = bytes[at..end].to_vec();
                bytes.splice(at..at, copy);
            }
        }
    }
    String::from_utf8_lossy(&bytes).into_owned()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn random_text_never_panics(text in "\\PC{0,200}") {
        let d = dir();
        for format in [Format::Yaml, Format::Json, Format::Auto] {
            let _ = parse_str(&text, format, Path::new("p"), d.path());
        }
    }

    #[test]
    fn mutated_configs_never_panic(
        ops in proptest::collection::vec((any::<usize>(), any::<usize>(), any::<u8>()), 1..8),
        json in any::<bool>(),
    ) {
        let d = dir();
        let (base, format) = if json { (EXAMPLE_JSON, Format::Json) } else { (EXAMPLE, Format::Yaml) };
        let text = mutate(base, &ops);
        match parse_str(&text, format, Path::new("p"), d.path()) {
            Ok(_) => {}
            Err(e) => {
                prop_assert!(!e.is_empty());
                for err in e.errors() {
                    prop_assert!(!err.message.is_empty());
                }
            }
        }
    }
}
