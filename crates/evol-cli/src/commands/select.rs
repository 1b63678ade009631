//! `evol select IN -o OUT --budget K`: flags to settings, the library's
//! selection job.

use crate::cli::SelectArgs;
use crate::printer::{signals, Printer};
use crate::settings::FromArgs;

pub async fn select(args: SelectArgs) -> anyhow::Result<()> {
    let printer = Printer::new(args.quiet);
    let settings = evol::settings::SelectSettings::from_args(args)?;
    evol::jobs::select(settings, &printer, signals()).await.map(|_report| ())
}
