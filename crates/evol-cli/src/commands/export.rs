//! `evol export OUT`: rewrites a run's record files and dataset from its
//! journal (for instance after a crash, or while the run goes on).

use evol_io::OutputDir;

use crate::cli::ExportArgs;
use crate::commands::status::{identity, open_journal};

pub fn export(args: ExportArgs) -> anyhow::Result<()> {
    let journal = open_journal(&args.output)?;
    let include_seeds = identity(&journal, &args.output)?["include_seeds"].as_bool().unwrap_or(false);
    let out = OutputDir::prepare(&args.output, false)?;
    let rows = out.export(&journal, include_seeds)?;
    eprintln!("evol: exported {rows} dataset rows and the record files to `{}`", args.output.display());
    Ok(())
}
