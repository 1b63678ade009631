//! `evol run`: flags to settings, then the library's run (or, with
//! `--dry-run`, its estimate on stdout).

use crate::cli::{MagpieArgs, RunArgs};
use crate::printer::{signals, Printer};
use crate::settings::{FromArgs, RunSettings};
use evol::observe::Observer;

pub async fn run(mut args: RunArgs, given: Vec<String>) -> anyhow::Result<()> {
    let printer = Printer::new(args.quiet);
    if let Some(found) = crate::settings::shard_from_scheduler(&mut args.shard)? {
        printer.say(&format!("evol: {found}"));
    }
    let mut settings = RunSettings::from_args(args)?;
    settings.defaulted = crate::settings::defaulted_method_settings(&given);
    settings.command = std::env::args_os().skip(1).map(|a| a.to_string_lossy().into_owned()).collect();
    if settings.dry_run {
        return crate::stdout(&evol::jobs::estimate::dry_run(&settings)?);
    }
    evol::jobs::run(settings, &printer, signals()).await.map(|_report| ())
}

pub async fn magpie(args: MagpieArgs) -> anyhow::Result<()> {
    let printer = Printer::new(args.quiet);
    let settings = evol::settings::MagpieSettings::from_args(args)?;
    evol::jobs::magpie(settings, &printer, signals()).await.map(|_report| ())
}
