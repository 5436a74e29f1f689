//! Command-line definitions and exit codes.
//!
//! ```text
//! ferrocep match --spec SPEC... --input FILE|- [--end-of-input flush|stop] [--strict] [--workers N]
//! ferrocep demo order-timeout [--window DUR] [--interval DUR] [--events N]
//! ferrocep demo login-failures [--window DUR] [--interval DUR] [--events N]
//! ferrocep run --config PIPELINE.yaml [--data-dir DIR] [--workers N]
//! ferrocep validate --config PIPELINE.yaml
//! ```
//!
//! Exit status: 0 on success (bad input lines are reported on stderr and do
//! not change it); 1 when `--strict` meets a bad line or a run fails after it
//! started; 2 for a bad spec, bad
//! usage, a bad config or an I/O error. Messages go to stderr, as `spec error: …`,
//! `error: …`.

use clap::{Parser, Subcommand};

use crate::demo::{LoginFailuresArgs, OrderTimeoutArgs};
use crate::failure::Failure;
use crate::match_cmd::MatchArgs;
use crate::run_cmd::RunArgs;
use crate::validate_cmd::ValidateArgs;

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
    /// Run a pipeline (patterns over a live source, outputs to sinks) until
    /// the input ends or SIGTERM/SIGINT.
    Run(RunArgs),
    /// Check a pipeline config and its patterns without running.
    Validate(ValidateArgs),
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
        Command::Run(args) => crate::run_cmd::run(args),
        Command::Validate(args) => crate::validate_cmd::run(args),
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
}
