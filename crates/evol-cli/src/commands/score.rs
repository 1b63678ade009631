//! `evol score IN -o OUT`: flags to settings, the library's scoring job.

use crate::cli::ScoreArgs;
use crate::printer::{signals, Printer};
use crate::settings::FromArgs;

pub async fn score(args: ScoreArgs) -> anyhow::Result<()> {
    let printer = Printer::new(args.quiet);
    let settings = evol::settings::ScoreSettings::from_args(args)?;
    evol::jobs::score(settings, &printer, signals()).await.map(|_report| ())
}
