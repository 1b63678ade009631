//! `evol merge OUT1 OUT2 ... -o OUT`: joins the outputs of a sharded run.
//!
//! Every shard must be complete and of the same run (identities equal but
//! for the shard), all shards 0..N-1 must be there once, and no seed may be
//! in two shards; the merged journal then holds exactly what one unsharded
//! run would have, and its files are exported from it. Rerunning the
//! unsharded command on the merged directory replays it whole (no call is
//! sent) and rebuilds the full statistics.

use anyhow::bail;
use evol_io::output::JOURNAL;
use evol_io::OutputDir;
use evol_journal::SqliteJournal;

use crate::cli::MergeArgs;
use crate::commands::run::{IDENTITY, STATE};
use crate::commands::status::{identity, open_journal};

pub fn merge(args: MergeArgs) -> anyhow::Result<()> {
    let mut common: Option<serde_json::Value> = None;
    let mut shards: Vec<(u32, u32, String)> = Vec::new();
    for dir in &args.shards {
        let journal = open_journal(dir)?;
        let mut id = identity(&journal, dir)?;
        let state = journal.meta(STATE)?.unwrap_or_default();
        if state != "completed" {
            bail!(
                "`{}` is not a completed run (state: {state}); finish it first by rerunning its command",
                dir.display()
            );
        }
        let shard = id["shard"].as_str().map(String::from);
        let Some((i, n)) = shard.as_deref().and_then(|s| s.split_once('/')) else {
            bail!("`{}` is not a shard (it was not run with --shard)", dir.display());
        };
        shards.push((i.parse()?, n.parse()?, dir.display().to_string()));
        id["shard"] = serde_json::Value::Null;
        match &common {
            None => common = Some(id),
            Some(c) if *c != id => bail!(
                "`{}` is a shard of another run than `{}` (other seeds, settings, models or templates)",
                dir.display(),
                shards[0].2
            ),
            Some(_) => {}
        }
    }
    let count = shards[0].1;
    if let Some((_, n, dir)) = shards.iter().find(|s| s.1 != count) {
        bail!("`{dir}` is a shard of {n}, `{}` of {count}", shards[0].2);
    }
    for index in 0..count {
        let with: Vec<&str> = shards.iter().filter(|s| s.0 == index).map(|s| s.2.as_str()).collect();
        match with.len() {
            0 => bail!("shard {index}/{count} is missing"),
            1 => {}
            _ => bail!("shard {index}/{count} is given twice: {}", with.join(", ")),
        }
    }

    let out = OutputDir::prepare(&args.output, false)?;
    if out.has_journal() {
        bail!("`{}` already holds a run; merge into a new directory", args.output.display());
    }
    let merged = SqliteJournal::open(&out.path(JOURNAL))?;
    for (_, _, dir) in &shards {
        merged.absorb(&std::path::Path::new(dir).join(JOURNAL))?;
    }
    let identity = common.expect("at least one shard");
    let expected = identity["seed_count"].as_u64().unwrap_or(0);
    let seeds = merged.seed_count()?;
    if seeds != expected {
        bail!("the shards hold {seeds} seeds, the run has {expected}: some are missing");
    }
    let done = merged.seeds_done()?;
    if done != seeds {
        bail!("{} seeds are not done in their shard", seeds - done);
    }
    merged.set_meta(IDENTITY, &identity.to_string())?;
    merged.set_meta("seeds_loaded", &seeds.to_string())?;
    merged.set_meta(STATE, "completed")?;
    let rows = out.export(&merged, identity["include_seeds"].as_bool().unwrap_or(false))?;
    eprintln!("evol: merged {count} shards ({seeds} seeds, {rows} dataset rows) into `{}`", args.output.display());
    Ok(())
}
