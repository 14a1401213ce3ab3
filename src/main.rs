//! The `routecert` binary: a thin shell over the library's `cli` module.

use clap::Parser;
use routecert::cli::{Cli, run};
use std::process::ExitCode;

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("routecert: {e}");
            ExitCode::from(2)
        }
    }
}
