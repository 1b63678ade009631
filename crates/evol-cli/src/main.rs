//! The `evol` binary: parses the command line, runs a subcommand, and maps
//! errors to exit codes (0 success, 1 run error, 2 usage error, 3 stopped
//! at a budget cap, 4 stopped because no server answered, 5 finished with
//! nothing produced, 130 interrupted).

mod cli;
mod commands;
mod printer;
mod progress;
mod settings;

use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches};

use crate::cli::{Cli, Command};
use crate::settings::UsageError;
use evol::session::{CapStop, Interrupted, NothingProduced, Stalled};
use evol_store::output::{RATINGS, REPORT_JSON, STATS};

fn main() -> ExitCode {
    let matches = Cli::command().get_matches();
    let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            crate::say!("error: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Run(args) => commands::run::run(*args, given(&matches, "run")).await,
            Command::Templates(args) => commands::templates::templates(args),
            Command::Models(command) => commands::models::models(command),
            Command::Serve(args) => commands::serve::serve(*args).await,
            Command::Status(args) => commands::status::status(args),
            Command::Export(args) => commands::export::export(args),
            Command::Merge(args) => commands::merge::merge(args),
            Command::Batch(command) => commands::batch::batch(command).await,
            Command::Dedup(args) => commands::dedup::dedup(args),
            Command::Decontaminate(args) => commands::dedup::decontaminate(args),
            Command::Score(args) => {
                let result = (args.json, args.output.clone());
                commands::score::score(*args).await.and_then(|()| print_result(result, STATS))
            }
            Command::Select(args) => {
                let result = (args.json, args.output.clone());
                commands::select::select(args).await.and_then(|()| print_result(result, STATS))
            }
            Command::Ops(command) => commands::ops::ops(command),
            Command::Optimize(args) => commands::optimize::optimize(*args).await,
            Command::Answer(args) => commands::eval::answer(*args).await,
            Command::Magpie(args) => commands::run::magpie(*args).await,
            Command::Judge(args) => {
                let result = (args.json, args.output.clone());
                commands::eval::judge(*args).await.and_then(|()| print_result(result, REPORT_JSON))
            }
            Command::Arena(args) => {
                let result = (args.json, args.output.clone());
                commands::eval::arena(*args).await.and_then(|()| print_result(result, RATINGS))
            }
            Command::Config(command) => commands::config::config(command),
            Command::Report(args) => commands::report::report(args),
            Command::Completions(args) => completions(args.shell),
        }
    });
    // Do not wait for calls still in flight after an error or Ctrl-C.
    runtime.shutdown_background();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        // The reader of our output went away (`evol status OUT | head -1`):
        // as for any Unix tool, that is not an error.
        Err(e) if is_broken_pipe(&e) => ExitCode::SUCCESS,
        Err(e) => {
            // Errors quote servers, files and seeds: no secret and no
            // control sequence reaches the terminal.
            crate::say!("error: {}", evol_text::shown(&chain(&e)));
            if e.is::<UsageError>() {
                crate::say!("\nFor more information, try '--help'.");
                ExitCode::from(2)
            } else if e.is::<CapStop>() {
                ExitCode::from(3)
            } else if e.is::<Stalled>() {
                ExitCode::from(4)
            } else if e.is::<NothingProduced>() {
                ExitCode::from(5)
            } else if e.is::<Interrupted>() {
                ExitCode::from(130)
            } else {
                ExitCode::from(1)
            }
        }
    }
}

/// The flags a subcommand was given on its command line or through the
/// environment (by their argument ids), not left at their defaults.
fn given(matches: &clap::ArgMatches, subcommand: &str) -> Vec<String> {
    let Some(matches) = matches.subcommand_matches(subcommand) else { return Vec::new() };
    matches
        .ids()
        .filter(|id| {
            matches!(
                matches.value_source(id.as_str()),
                Some(clap::parser::ValueSource::CommandLine | clap::parser::ValueSource::EnvVariable)
            )
        })
        .map(|id| id.as_str().to_string())
        .collect()
}

/// `--json`: the command's result file (what it also wrote to OUT), on
/// stdout, so a script reads results there and logs on stderr.
fn print_result((json, dir): (bool, std::path::PathBuf), file: &str) -> anyhow::Result<()> {
    if !json {
        return Ok(());
    }
    let path = dir.join(file);
    let text = std::fs::read_to_string(&path).map_err(|e| anyhow::anyhow!("cannot read `{}`: {e}", path.display()))?;
    stdout(&format!("{}\n", text.trim_end()))
}

/// `evol completions SHELL`: the completion script, from the same
/// definitions that parse the command line.
fn completions(shell: clap_complete::Shell) -> anyhow::Result<()> {
    use clap::CommandFactory;
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), "evol", &mut script);
    stdout(&String::from_utf8(script)?)
}

/// Writes a command's output to stdout (an error, not a panic, when the
/// reader has gone).
pub fn stdout(text: &str) -> anyhow::Result<()> {
    use std::io::Write;
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())?;
    out.flush()?;
    Ok(())
}

fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| c.downcast_ref::<std::io::Error>().is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe))
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
