//! `ferrocep validate --config FILE`: loads a pipeline config and every
//! pattern in it as `run` would at start (`ferrocep_runtime::config::load`),
//! without running anything. Exit 0 with a one-line summary on stdout; exit
//! 2 with every error on stderr, one per line, each naming the file, the
//! field path and the reason.

use std::path::PathBuf;

use ferrocep_runtime::config::{self, LoadedConfig, SinkConfig, SourceConfig, Workload};

use crate::failure::Failure;

/// The arguments of `ferrocep validate`.
#[derive(Clone, Debug, clap::Args)]
pub struct ValidateArgs {
    /// The pipeline config (YAML or JSON).
    #[arg(long, value_name = "PIPELINE.yaml")]
    pub config: PathBuf,
}

/// Runs `ferrocep validate`.
pub fn run(args: &ValidateArgs) -> Result<(), Failure> {
    let loaded = config::load(&args.config).map_err(|e| Failure::config(&e))?;
    println!("{}", summary(&loaded));
    Ok(())
}

/// `ok: NAME: N patterns (A, B), source TYPE ..., outputs KIND→SINKS ...`.
pub fn summary(c: &LoadedConfig) -> String {
    let n = c.patterns.len();
    let names: Vec<&str> = c.patterns.iter().map(|p| p.name.as_str()).collect();
    let source = match &c.config.source {
        SourceConfig::File { path, follow, .. } => format!(
            "file {}{}",
            path.display(),
            if *follow { " (follow)" } else { "" }
        ),
        SourceConfig::Stdin { .. } => "stdin".to_string(),
        SourceConfig::Http { listen, path, .. } => format!("http {listen}{path}"),
        SourceConfig::Generator(g) => match g.workload {
            Workload::Seed => "generator seed".to_string(),
            Workload::Orders => "generator orders".to_string(),
        },
        SourceConfig::Kafka(k) => format!("kafka {} {}", k.brokers, k.topics.join(",")),
    };
    let o = &c.config.outputs;
    let kinds = [
        ("match", &o.r#match, "stdout"),
        ("timeout", &o.timeout, "stdout"),
        ("late", &o.late, "stderr"),
        ("error", &o.error, "stderr"),
    ];
    let outputs: Vec<String> = kinds
        .iter()
        .map(|(kind, sinks, default)| {
            let sinks = match sinks {
                None => default.to_string(),
                Some(s) if s.is_empty() => "none".to_string(),
                Some(s) => s.iter().map(sink_name).collect::<Vec<_>>().join(","),
            };
            format!("{kind}→{sinks}")
        })
        .collect();
    let mut line = format!(
        "ok: {}: {n} pattern{} ({}), source {source}, outputs {}",
        c.config.name,
        if n == 1 { "" } else { "s" },
        names.join(", "),
        outputs.join(" ")
    );
    if let Some(server) = &c.config.server {
        line.push_str(&format!(", server {}", server.listen));
    }
    line
}

fn sink_name(s: &SinkConfig) -> &'static str {
    match s {
        SinkConfig::Stdout {} => "stdout",
        SinkConfig::Stderr {} => "stderr",
        SinkConfig::File { .. } => "file",
        SinkConfig::Webhook(_) => "webhook",
        SinkConfig::Kafka(_) => "kafka",
    }
}
