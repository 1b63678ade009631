//! `evol merge OUT1 OUT2 ... -o OUT`: the library's merge of a sharded
//! run.

use crate::cli::MergeArgs;
use crate::printer::Printer;
use crate::settings::FromArgs;

pub fn merge(args: MergeArgs) -> anyhow::Result<()> {
    let settings = evol::settings::MergeSettings::from_args(args)?;
    evol::jobs::merge::merge(&settings, &Printer::new(false)).map(|_report| ())
}
