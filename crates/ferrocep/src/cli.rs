//! Command-line definitions and exit codes.
//!
//! ```text
//! ferrocep match --spec SPEC... --input FILE|- [--end-of-input flush|stop] [--strict] [--workers N]
//! ferrocep demo order-timeout [--window DUR] [--interval DUR] [--events N]
//! ferrocep demo login-failures [--window DUR] [--interval DUR] [--events N]
//! ```
//!
//! Exit status: 0 on success (bad input lines are reported on stderr and do
//! not change it); 1 when `--strict` meets a bad line; 2 for a bad spec, bad
//! usage or an I/O error. Messages go to stderr, as `spec error: …`,
//! `error: …`.

use clap::{Parser, Subcommand};

use crate::demo::{LoginFailuresArgs, OrderTimeoutArgs};
use crate::match_cmd::MatchArgs;

/// ferrocep: Apache Flink CEP semantics, exactly, in Rust.
#[derive(Debug, Parser)]
#[command(name = "ferrocep", version, about, long_about = None)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a pattern spec over JSON lines; print matches, timeouts and late
    /// events as JSON lines.
    Match(MatchArgs),
    /// Run one of the reference jobs on a live, endless source (processing time).
    #[command(subcommand)]
    Demo(Demo),
}

/// The demos.
#[derive(Debug, Subcommand)]
pub enum Demo {
    /// Orders created and not paid in time (the reference Flink job): user 2
    /// pays in time, user 1 never does.
    OrderTimeout(OrderTimeoutArgs),
    /// Two failed logins in a row within the window raise a warning.
    LoginFailures(LoginFailuresArgs),
}

/// Why a command failed, with the exit status it maps to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// Process exit status.
    pub code: i32,
    /// The message, printed on stderr.
    pub message: String,
}

impl Failure {
    /// The spec cannot be read, parsed or compiled (exit 2).
    pub fn spec(message: impl Into<String>) -> Self {
        Failure {
            code: 2,
            message: format!("spec error: {}", message.into()),
        }
    }

    /// Bad arguments (exit 2).
    pub fn usage(message: impl Into<String>) -> Self {
        Failure {
            code: 2,
            message: format!("error: {}", message.into()),
        }
    }

    /// Reading input or writing output failed (exit 2).
    pub fn io(message: impl Into<String>) -> Self {
        Failure {
            code: 2,
            message: format!("error: {}", message.into()),
        }
    }

    /// A bad input line under `--strict` (exit 1).
    pub fn data(message: impl Into<String>) -> Self {
        Failure {
            code: 1,
            message: format!("error: {}", message.into()),
        }
    }
}

/// Parses a duration argument: `250ms`, `1.5s`, `10s`, `10m`, `2h`, `1d` or
/// integer milliseconds.
pub fn parse_duration(text: &str) -> Result<i64, String> {
    if let Ok(ms) = ferrocep_core::time::parse_duration_ms(text) {
        return Ok(ms);
    }
    // Also accept decimal seconds such as `1.5s`, handy for demo windows.
    if let Some(secs) = text.trim().strip_suffix('s') {
        if let Ok(v) = secs.parse::<f64>() {
            if v.is_finite() && v >= 0.0 && v * 1000.0 < i64::MAX as f64 {
                return Ok((v * 1000.0).round() as i64);
            }
        }
    }
    Err(format!(
        "invalid duration '{text}': expected milliseconds or a number with unit ms, s, m, h or d (e.g. 250ms, 1.5s, 10m)"
    ))
}

/// Runs the command line of this process; returns the exit status.
pub fn main() -> i32 {
    let cli = Cli::parse();
    match run(&cli) {
        Ok(()) => 0,
        Err(f) => {
            eprintln!("{}", f.message);
            f.code
        }
    }
}

/// Runs parsed arguments.
pub fn run(cli: &Cli) -> Result<(), Failure> {
    match &cli.command {
        Command::Match(args) => crate::match_cmd::run(args),
        Command::Demo(Demo::OrderTimeout(args)) => crate::demo::order_timeout(args),
        Command::Demo(Demo::LoginFailures(args)) => crate::demo::login_failures(args),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("1500ms"), Ok(1500));
        assert_eq!(parse_duration("1s"), Ok(1000));
        assert_eq!(parse_duration("1.5s"), Ok(1500));
        assert_eq!(parse_duration("80"), Ok(80));
        assert!(parse_duration("soon").is_err());
        assert!(parse_duration("-1s").is_err());
    }
}
