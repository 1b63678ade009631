//! `evol run`: flags to settings, then the library's run (or, with
//! `--dry-run`, its estimate on stdout).

use crate::cli::RunArgs;
use crate::printer::{signals, Printer};
use crate::settings::{FromArgs, RunSettings};

pub async fn run(args: RunArgs) -> anyhow::Result<()> {
    let settings = RunSettings::from_args(args)?;
    if settings.dry_run {
        return crate::stdout(&evol::jobs::estimate::dry_run(&settings)?);
    }
    let printer = Printer::new(settings.quiet);
    evol::jobs::run(settings, &printer, signals()).await
}
