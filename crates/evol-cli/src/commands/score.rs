//! `evol score IN -o OUT`: flags to settings, the library's scoring job.

use crate::cli::ScoreArgs;
use crate::printer::{signals, Printer};
use crate::settings::FromArgs;

pub async fn score(args: ScoreArgs) -> anyhow::Result<()> {
    let settings = evol::settings::ScoreSettings::from_args(args)?;
    let printer = Printer::new(settings.quiet);
    evol::jobs::score(settings, &printer, signals()).await.map(|_report| ())
}
