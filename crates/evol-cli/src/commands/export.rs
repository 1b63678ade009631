//! `evol export OUT`: rewrites a run's record files and dataset from its
//! journal (for instance after a crash). It holds the directory's lock, so
//! it waits for no run and no run starts while it writes.

use evol_store::OutputDir;

use crate::cli::ExportArgs;
use crate::commands::status::identity;

pub fn export(args: ExportArgs) -> anyhow::Result<()> {
    let out = OutputDir::existing(&args.output)?;
    let journal = out.journal()?;
    let include_seeds = identity(&journal, &args.output)?.include_seeds;
    let rows = out.export(&journal, include_seeds)?;
    eprintln!("evol: exported {rows} dataset rows and the record files to `{}`", args.output.display());
    Ok(())
}
