//! `ferrocep`: run CEP pattern specs over event streams. The command line
//! lives in this binary; the engine and the runtime it drives are the
//! `ferrocep` library.
//!
//! - [`alloc`]: the process's allocator (large buffers on huge pages);
//! - [`cli`]: argument definitions (clap), dispatch to the commands;
//! - [`failure`]: why a command failed, and its exit status;
//! - [`args`]: argument values shared by several commands;
//! - [`match_cmd`]: `ferrocep match`, over `ferrocep::runtime::replay`;
//! - [`run_cmd`]: `ferrocep run`, over `ferrocep::runtime::pipeline`;
//! - [`validate_cmd`]: `ferrocep validate`, over `ferrocep::runtime::config`;
//! - [`demo`]: `ferrocep demo`, the reference Flink jobs (order timeout, login
//!   failures) on live processing-time sources.

mod alloc;
mod args;
mod cli;
mod demo;
mod failure;
mod match_cmd;
mod run_cmd;
mod validate_cmd;

#[global_allocator]
static GLOBAL: alloc::Allocator = alloc::Allocator;

fn main() {
    if std::env::var_os("FERROCEP_HUGE_PAGES").is_some_and(|v| v == "off") {
        alloc::disable();
    }
    std::process::exit(cli::main());
}
