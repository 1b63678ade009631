//! `evol merge OUT1 OUT2 ... -o OUT`: joins the outputs of a sharded run.
//!
//! Each shard is a run directory with its journal or, failing that, an
//! export (the record files and `stats.json`, which names the run's
//! identity). Every shard must be complete and of the same run (identities
//! equal but for the shard), all shards 0..N-1 must be there once, and no
//! seed may be in two shards; the merged journal then holds exactly what one
//! unsharded run would have, and its files are exported from it. Rerunning
//! the unsharded command on a directory merged from journals replays it
//! whole (no call is sent) and rebuilds the full statistics; exports carry
//! no calls, so that only works from journals.

use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail};
use evol_io::output::{import_export, JOURNAL, SEED_ANSWERS, STATS};
use evol_io::OutputDir;
use evol_journal::SqliteJournal;

use crate::cli::MergeArgs;
use crate::commands::run::{IDENTITY, STATE};
use crate::commands::status::identity;

/// One shard, as a journal to absorb.
struct Shard {
    dir: String,
    index: u32,
    count: u32,
    identity: serde_json::Value,
    journal: PathBuf,
    /// The journal rebuilt from an export lives here until the merge ends.
    _rebuilt: Option<tempfile::TempDir>,
}

pub fn merge(args: MergeArgs) -> anyhow::Result<()> {
    let shards: Vec<Shard> = args.shards.iter().map(|dir| open_shard(dir)).collect::<anyhow::Result<_>>()?;
    let first = &shards[0];
    for shard in &shards[1..] {
        if shard.identity != first.identity {
            bail!(
                "`{}` is a shard of another run than `{}` (other seeds, settings, models or templates)",
                shard.dir,
                first.dir
            );
        }
        if shard.count != first.count {
            bail!("`{}` is a shard of {}, `{}` of {}", shard.dir, shard.count, first.dir, first.count);
        }
    }
    for index in 0..first.count {
        let with: Vec<&str> = shards.iter().filter(|s| s.index == index).map(|s| s.dir.as_str()).collect();
        match with.len() {
            0 => bail!("shard {index}/{} is missing", first.count),
            1 => {}
            _ => bail!("shard {index}/{} is given twice: {}", first.count, with.join(", ")),
        }
    }

    let out = OutputDir::prepare(&args.output, false)?;
    if out.has_journal() {
        bail!("`{}` already holds a run; merge into a new directory", args.output.display());
    }
    let merged = SqliteJournal::open(&out.path(JOURNAL))?;
    for shard in &shards {
        merged.absorb(&shard.journal).map_err(|e| anyhow!("merging `{}`: {e}", shard.dir))?;
    }
    let identity = &first.identity;
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
    merged.mark_seeds_loaded()?;
    merged.set_meta(STATE, "completed")?;
    let rows = out.export(&merged, identity["include_seeds"].as_bool().unwrap_or(false))?;
    eprintln!(
        "evol: merged {} shards ({seeds} seeds, {rows} dataset rows) into `{}`",
        first.count,
        args.output.display()
    );
    Ok(())
}

/// Opens a shard's journal, or rebuilds one from its export.
fn open_shard(dir: &Path) -> anyhow::Result<Shard> {
    let name = dir.display().to_string();
    let (mut identity, state, journal, rebuilt) = if dir.join(JOURNAL).is_file() {
        let journal = SqliteJournal::open(&dir.join(JOURNAL))?;
        let state = journal.meta(STATE)?.unwrap_or_default();
        (identity(&journal, dir)?, state, dir.join(JOURNAL), None)
    } else if dir.join(STATS).is_file() {
        let stats: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(dir.join(STATS))?)
            .map_err(|e| anyhow!("`{}`: {e}", dir.join(STATS).display()))?;
        let identity = stats["identity"].clone();
        if !identity.is_object() {
            bail!("`{name}`: its `{STATS}` names no run identity (made by an older evol?); merge its journal instead");
        }
        let answered = identity["settings"]["answer_seeds"].as_bool().unwrap_or(false);
        if identity["include_seeds"] == true && !answered && !dir.join(SEED_ANSWERS).exists() {
            bail!("`{name}`: an export of a run with --include-seeds --no-answer lacks the seeds' instructions; merge its journal instead");
        }
        let run_seed = identity["settings"]["run_seed"].as_u64().unwrap_or(0);
        let tmp = tempfile::tempdir()?;
        let path = tmp.path().join(JOURNAL);
        let journal = SqliteJournal::open(&path)?;
        import_export(dir, &journal, run_seed).map_err(|e| anyhow!("reading the export `{name}`: {e}"))?;
        (identity, stats["state"].as_str().unwrap_or_default().to_string(), path, Some(tmp))
    } else {
        bail!("`{name}` holds neither a run journal (`{JOURNAL}`) nor an export (`{STATS}`)");
    };
    if state != "completed" {
        bail!("`{name}` is not a completed run (state: {state}); finish it first by rerunning its command");
    }
    let shard = identity["shard"].as_str().map(String::from);
    let Some((i, n)) = shard.as_deref().and_then(|s| s.split_once('/')) else {
        bail!("`{name}` is not a shard (it was not run with --shard)");
    };
    let (index, count) = (i.parse()?, n.parse()?);
    identity["shard"] = serde_json::Value::Null;
    Ok(Shard { dir: name, index, count, identity, journal, _rebuilt: rebuilt })
}
