//! `evol answer`, `evol judge`, `evol arena`: flags to settings, the job
//! run by the library, its result printed.

use crate::cli::{AnswerArgs, ArenaArgs, JudgeArgs};
use crate::printer::{signals, Printer};
use crate::settings::FromArgs;

pub async fn answer(args: AnswerArgs) -> anyhow::Result<()> {
    let printer = Printer::new(args.quiet);
    let settings = evol::settings::AnswerSettings::from_args(args)?;
    evol::jobs::answer(settings, &printer, signals()).await.map(|_report| ())
}

pub async fn judge(args: JudgeArgs) -> anyhow::Result<()> {
    let printer = Printer::new(args.quiet);
    let settings = evol::settings::JudgeSettings::from_args(args)?;
    evol::jobs::judge(settings, &printer, signals()).await.map(|_report| ())
}

pub async fn arena(args: ArenaArgs) -> anyhow::Result<()> {
    let printer = Printer::new(args.quiet);
    let settings = evol::settings::ArenaSettings::from_args(args)?;
    evol::jobs::arena(settings, &printer, signals()).await.map(|_report| ())
}
