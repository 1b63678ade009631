//! `evol export OUT`: rewrites a run's record files and dataset from its
//! journal (for instance after a crash). It holds the directory's lock, so
//! it waits for no run and no run starts while it writes.

use evol_store::OutputDir;

use crate::cli::ExportArgs;
use crate::commands::status::identity;

pub fn export(args: ExportArgs) -> anyhow::Result<()> {
    let out = OutputDir::existing(&args.output)?;
    let journal = out.journal()?;
    let identity = identity(&journal, &args.output)?;
    let exported = out.export(&journal, identity.include_seeds, identity.settings.dedup)?;
    let removed = exported.exact_duplicates + exported.near_duplicates;
    let left_out = if removed > 0 { format!(" ({removed} duplicates left out)") } else { String::new() };
    eprintln!(
        "evol: exported {} dataset rows{left_out} and the record files to `{}`",
        exported.rows,
        args.output.display()
    );
    Ok(())
}
