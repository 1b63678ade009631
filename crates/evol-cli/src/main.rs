//! The `evol` binary: parses the command line, runs a subcommand, and maps
//! errors to exit codes (0 success, 1 run error, 2 usage error, 3 stopped
//! at a budget cap, 130 interrupted).

mod cli;
mod commands;
mod local;
mod progress;
mod settings;

use std::process::ExitCode;

use clap::Parser;

use crate::cli::{Cli, Command};
use crate::commands::run::{CapStop, Interrupted};
use crate::settings::UsageError;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Run(args) => commands::run::run(*args).await,
            Command::Templates(args) => commands::templates::templates(args),
            Command::Models(command) => commands::models::models(command),
            Command::Serve(args) => commands::serve::serve(*args).await,
            Command::Status(args) => commands::status::status(args),
            Command::Export(args) => commands::export::export(args),
            Command::Merge(args) => commands::merge::merge(args),
            Command::Batch(command) => commands::batch::batch(command).await,
        }
    });
    // Do not wait for calls still in flight after an error or Ctrl-C.
    runtime.shutdown_background();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", chain(&e));
            if e.is::<UsageError>() {
                eprintln!("\nFor more information, try '--help'.");
                ExitCode::from(2)
            } else if e.is::<CapStop>() {
                ExitCode::from(3)
            } else if e.is::<Interrupted>() {
                ExitCode::from(130)
            } else {
                ExitCode::from(1)
            }
        }
    }
}

/// An error and its causes on one line, without repeating a cause that the
/// message above it already includes.
fn chain(e: &anyhow::Error) -> String {
    let mut text = e.to_string();
    for cause in e.chain().skip(1) {
        let c = cause.to_string();
        if !text.contains(&c) {
            text.push_str(": ");
            text.push_str(&c);
        }
    }
    text
}
