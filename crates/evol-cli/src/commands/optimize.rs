//! `evol optimize SEEDS -o METHOD_DIR`: flags to settings, the library's
//! Auto Evol-Instruct job.

use crate::cli::OptimizeArgs;
use crate::printer::{signals, Printer};
use crate::settings::FromArgs;

pub async fn optimize(args: OptimizeArgs) -> anyhow::Result<()> {
    let printer = Printer::new(args.quiet);
    let settings = evol::settings::OptimizeRunSettings::from_args(args)?;
    evol::jobs::optimize(settings, &printer, signals()).await.map(|_report| ())
}
