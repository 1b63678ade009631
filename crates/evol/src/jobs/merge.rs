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
//! no calls, so that only works from journals. Each shard directory and the
//! output are locked while the merge runs.

use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail};
use evol_store::journal::FILE as JOURNAL;
use evol_store::output::{import_export, SEED_ANSWERS, STATS};
use evol_store::{DirLock, OutputDir, RunIdentity, RunState, SqliteJournal};

use crate::observe::Observer;
use crate::results::RunReport;
use crate::settings::MergeSettings;

/// A run's identity, or an error saying the run never started.
fn identity(journal: &SqliteJournal, dir: &Path) -> anyhow::Result<RunIdentity> {
    journal.identity()?.ok_or_else(|| anyhow!("`{}`: the run never started", dir.display()))
}

/// One shard, as a journal to absorb.
struct Shard {
    dir: String,
    index: u32,
    count: u32,
    /// The run's identity without the shard.
    identity: RunIdentity,
    journal: PathBuf,
    /// The journal rebuilt from an export lives here until the merge ends.
    _rebuilt: Option<tempfile::TempDir>,
}

/// What a merge made.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct MergeReport {
    /// How many shards the run was cut into (each merged once).
    pub shards: u32,
    /// The run's seeds, all done.
    pub seeds: u64,
    /// The dataset and record files exported from the merged journal.
    pub dataset: evol_store::Exported,
}

/// Joins the shards of a run (their journals, or their exports) into one
/// run directory, checked to be exactly what one unsharded run holds.
pub fn merge(settings: &MergeSettings, observer: &dyn Observer) -> anyhow::Result<MergeReport> {
    let args = settings;
    // Each shard directory is locked (once, however often it is named) for
    // as long as the merge reads it.
    let mut locks = std::collections::BTreeMap::new();
    for dir in &args.shards {
        if !dir.is_dir() {
            bail!("`{}` is not a directory", dir.display());
        }
        let key = dir.canonicalize().map_err(|e| anyhow!("`{}`: {e}", dir.display()))?;
        if let std::collections::btree_map::Entry::Vacant(slot) = locks.entry(key) {
            slot.insert(DirLock::acquire(dir)?);
        }
    }
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

    let out = OutputDir::prepare(&args.output, false, evol_store::JobKind::Run)?;
    if out.has_journal() {
        bail!("`{}` already holds a run; merge into a new directory", args.output.display());
    }
    let merged = out.journal()?;
    let journals: Vec<&Path> = shards.iter().map(|s| s.journal.as_path()).collect();
    merged.absorb_all(&journals).map_err(|e| anyhow!("merging the shards: {e}"))?;
    let identity = &first.identity;
    let expected = identity.seed_count;
    let seeds = merged.seed_count()?;
    if seeds != expected {
        bail!("the shards hold {seeds} seeds, the run has {expected}: some are missing");
    }
    let done = merged.seeds_done()?;
    if done != seeds {
        bail!("{} seeds are not done in their shard", seeds - done);
    }
    merged.set_identity(identity)?;
    merged.mark_seeds_loaded()?;
    merged.set_state(RunState::Completed)?;
    let exported = out.export(&merged, identity.include_seeds, identity.settings.dedup)?;
    observer.say(&format!(
        "evol: merged {} shards ({seeds} seeds, {} dataset rows) into `{}`",
        first.count,
        exported.rows,
        args.output.display()
    ));
    Ok(MergeReport { shards: first.count, seeds, dataset: exported })
}

/// Opens a shard's journal, or rebuilds one from its export.
fn open_shard(dir: &Path) -> anyhow::Result<Shard> {
    let name = dir.display().to_string();
    let (identity, state, journal, rebuilt) = if dir.join(JOURNAL).is_file() {
        let journal = SqliteJournal::open(&dir.join(JOURNAL))?;
        let state = journal.state()?;
        (identity(&journal, dir)?, state, dir.join(JOURNAL), None)
    } else if dir.join(STATS).is_file() {
        let stats = RunReport::read(dir)
            .map_err(|e| anyhow!("{e}; merge the shard's journal instead"))?
            .ok_or_else(|| anyhow!("`{name}`: its `{STATS}` is gone"))?;
        let identity = stats.identity;
        let answered = identity.settings.answer_seeds;
        if identity.include_seeds && !answered && !dir.join(SEED_ANSWERS).exists() {
            bail!("`{name}`: an export of a run with --include-seeds --no-answer lacks the seeds' instructions; merge its journal instead");
        }
        let tmp = tempfile::tempdir()?;
        let path = tmp.path().join(JOURNAL);
        let journal = SqliteJournal::open(&path)?;
        import_export(dir, &journal, identity.settings.run_seed)
            .map_err(|e| anyhow!("reading the export `{name}`: {e}"))?;
        let state = Some(stats.state);
        (identity, state, path, Some(tmp))
    } else {
        bail!("`{name}` holds neither a run journal (`{JOURNAL}`) nor an export (`{STATS}`)");
    };
    if state != Some(RunState::Completed) {
        let state = state.map_or("unknown".to_string(), |s| s.to_string());
        bail!("`{name}` is not a completed run (state: {state}); finish it first by rerunning its command");
    }
    let Some(shard) = identity.shard else {
        bail!("`{name}` is not a shard (it was not run with --shard)");
    };
    Ok(Shard {
        dir: name,
        index: shard.index,
        count: shard.count,
        identity: identity.unsharded(),
        journal,
        _rebuilt: rebuilt,
    })
}
