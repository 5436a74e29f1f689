//! `ferrocep match`: the command over [`ferrocep_runtime::replay`], which
//! runs specs over a JSON-lines stream as `shared/spec/pattern-spec.md`
//! section 3 says. This module owns only the arguments, opening the input
//! and mapping errors to exit statuses.

use std::fs::File;
use std::io::{self, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use ferrocep_core::spec::{Spec, SpecSet};
use ferrocep_runtime::clock::SystemClock;
use ferrocep_runtime::matcher::Plan;
use ferrocep_runtime::options::{EndOfInput, Options, Stop};

use crate::failure::Failure;

/// What happens when a bounded input ends.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum EndOfInputArg {
    /// The watermark jumps to +infinity: buffered events run and every
    /// windowed partial match times out (what Flink does when a bounded
    /// source ends).
    #[default]
    Flush,
    /// Time stays at the last watermark; nothing more is reported (a source
    /// that stays open and goes quiet).
    Stop,
}

impl From<EndOfInputArg> for EndOfInput {
    fn from(a: EndOfInputArg) -> Self {
        match a {
            EndOfInputArg::Flush => EndOfInput::Flush,
            EndOfInputArg::Stop => EndOfInput::Stop,
        }
    }
}

/// The arguments of `ferrocep match`.
#[derive(Clone, Debug, clap::Args)]
pub struct MatchArgs {
    /// The pattern spec (YAML or JSON). Give several (`--spec A B` or
    /// `--spec A --spec B`) to run them all over the stream, reading it once;
    /// they must share the key and time fields, and each output line then
    /// carries `"pattern":"NAME"` (the spec's `name`, else its file stem).
    #[arg(long, value_name = "SPEC", required = true, num_args = 1..)]
    pub spec: Vec<PathBuf>,
    /// Events, one JSON object per line; `-` reads standard input.
    #[arg(long, value_name = "FILE|-")]
    pub input: PathBuf,
    /// What happens at the end of the input.
    #[arg(long, value_enum, default_value_t = EndOfInputArg::Flush, value_name = "MODE")]
    pub end_of_input: EndOfInputArg,
    /// Stop at the first bad input line (exit status 1) instead of reporting
    /// it and going on.
    #[arg(long)]
    pub strict: bool,
    /// Threads that parse and match, keys partitioned among them (default:
    /// the number of cores). Processing-time specs always use one.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..=256))]
    pub workers: Option<u32>,
}

/// Runs `ferrocep match`, writing outputs to stdout and bad lines to stderr.
pub fn run(args: &MatchArgs) -> Result<(), Failure> {
    // Spec errors name the file, the line and the field themselves.
    let specs = args
        .spec
        .iter()
        .map(|p| Spec::from_path(p).map_err(|e| Failure::spec(e.to_string())))
        .collect::<Result<Vec<_>, _>>()?;
    let labels = pattern_names(&specs)?;
    let set = SpecSet::new(specs).map_err(|e| Failure::spec(e.to_string()))?;
    let plan = Plan::new(&set, &labels).map_err(|e| Failure::spec(e.to_string()))?;
    let (input, live_input): (Box<dyn Read + Send>, bool) = if args.input.as_os_str() == "-" {
        (Box::new(io::stdin()), !stdin_is_file())
    } else {
        let file = open(&args.input)?;
        let live = !file.metadata().is_ok_and(|m| m.is_file());
        (Box::new(file), live)
    };
    let workers = match args.workers {
        Some(n) => n as usize,
        None => std::thread::available_parallelism().map_or(1, |n| n.get()),
    };
    let options = Options {
        end_of_input: args.end_of_input.into(),
        strict: args.strict,
        workers,
        chunk_size: ferrocep_runtime::input::CHUNK,
        live_input,
    };
    // Not locked for the whole run: a worker thread that panics must be able
    // to say so (and the run then fail) rather than wait for the lock.
    let mut errors = BufWriter::new(io::stderr());
    let result = ferrocep_runtime::replay::run_with(
        &set,
        &plan,
        input,
        io::stdout(),
        &mut errors,
        &options,
        &SystemClock,
    );
    let _ = errors.flush();
    result.map_err(|stop| match stop {
        Stop::Strict(..) | Stop::Skip(_) => Failure::data(stop.to_string()),
        _ => Failure::io(stop.to_string()),
    })
}

/// The names that label each spec's output lines when there are several
/// (none for one spec): each spec's `name`, else its file stem. Two specs
/// with the same name are an error.
pub fn pattern_names(specs: &[Spec]) -> Result<Vec<String>, Failure> {
    if specs.len() < 2 {
        return Ok(Vec::new());
    }
    let mut names: Vec<String> = Vec::with_capacity(specs.len());
    for (i, s) in specs.iter().enumerate() {
        let name = s
            .name
            .clone()
            .or_else(|| {
                s.file()
                    .and_then(Path::file_stem)
                    .map(|n| n.to_string_lossy().into_owned())
            })
            .unwrap_or_else(|| format!("spec-{}", i + 1));
        if names.contains(&name) {
            return Err(Failure::usage(format!(
                "two specs are named '{name}': give each a distinct `name`"
            )));
        }
        names.push(name);
    }
    Ok(names)
}

/// Whether standard input is a regular file (redirected from one), which
/// never waits for data.
fn stdin_is_file() -> bool {
    #[cfg(unix)]
    {
        use std::os::fd::AsFd;
        io::stdin()
            .as_fd()
            .try_clone_to_owned()
            .map(File::from)
            .and_then(|f| f.metadata())
            .is_ok_and(|m| m.is_file())
    }
    #[cfg(not(unix))]
    {
        false
    }
}

fn open(path: &Path) -> Result<File, Failure> {
    File::open(path)
        .map_err(|e| Failure::usage(format!("cannot open input '{}': {e}", path.display())))
}
