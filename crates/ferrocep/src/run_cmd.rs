//! `ferrocep run`: the long-running service over a pipeline config
//! (`shared/spec/pipeline-spec.md`), on [`ferrocep_runtime::pipeline`]. This
//! module owns the arguments, logging and exit statuses.

use std::path::PathBuf;
use std::sync::Arc;

use ferrocep_runtime::assemble::{assemble, Overrides};
use ferrocep_runtime::clock::SystemClock;

use crate::failure::Failure;

/// Log line format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines with key=value fields.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// The arguments of `ferrocep run`.
#[derive(Clone, Debug, clap::Args)]
pub struct RunArgs {
    /// The pipeline config (YAML or JSON).
    #[arg(long, value_name = "FILE")]
    pub config: PathBuf,
    /// The data directory (overrides the config's `state.dir`).
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Threads that match, the keys split among them by key group (default
    /// 1). Each reads every event, so more workers pay off when matching
    /// costs more than parsing.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=256))]
    pub workers: Option<u32>,
    /// Log level when `RUST_LOG` is not set: error, warn, info, debug, trace.
    #[arg(long, value_name = "LEVEL", default_value = "info")]
    pub log_level: String,
    /// Log line format.
    #[arg(long, value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// No progress line, even when stderr is a terminal.
    #[arg(long)]
    pub no_progress: bool,
}

/// Runs `ferrocep run` until the input ends or a signal stops it.
pub fn run(args: &RunArgs) -> Result<(), Failure> {
    init_logging(&args.log_level, args.log_format);
    let loaded = ferrocep_runtime::config::load(&args.config).map_err(|e| Failure::config(&e))?;
    if let Some(w) = args.workers.filter(|&w| w > 1) {
        tracing::info!(
            workers = w,
            "run matches on one thread; --workers is ignored"
        );
    }
    let a = assemble(
        &loaded,
        Overrides {
            data_dir: args.data_dir.clone(),
            clock: Arc::new(SystemClock),
            progress: !args.no_progress,
            workers: args.workers.unwrap_or(1) as usize,
        },
    )
    .map_err(|e| Failure::start(e.to_string()))?;
    let result = a.pipeline.run();
    a.server_stop.raise();
    drop(a.lock);
    match result {
        Ok(ended) => {
            tracing::info!(?ended, "stopped");
            Ok(())
        }
        Err(e) => Err(Failure::runtime(e.to_string())),
    }
}

/// Structured logs to stderr: `RUST_LOG` if set, else `level`.
fn init_logging(level: &str, format: LogFormat) {
    use tracing_subscriber::EnvFilter;
    // The store's own progress messages are for its developers.
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(format!("{level},fjall=warn,lsm_tree=warn")))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}
