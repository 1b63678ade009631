//! The run store: everything `evol` keeps of a run, in its run directory.
//!
//! - [`dir`]: the directory's lock (one writing command at a time).
//! - [`journal`]: the SQLite journal, the run's source of truth: seeds,
//!   committed calls, decided records, provider batches, the run's
//!   identity and state. Its schema is versioned (`PRAGMA user_version`)
//!   and migrated forward on open; a journal of a newer schema is refused,
//!   never rewritten; a damaged one is refused with what to do.
//! - `codec`: how the journal keeps call records and record bodies small
//!   (zstd frames, with dictionaries trained on the journal's own rows).
//! - [`identity`]: the typed [`RunIdentity`] and [`RunState`].
//! - [`ingest`]: the seed file streamed into the journal (the one reading
//!   of seeds that a run, a resume check and a dry run share).
//! - [`output`]: the output directory: the run's sink (journal first, then
//!   the JSONL files), the export of record files and dataset, the import
//!   of an exported shard for a merge.
//!
//! SQLite's types and errors stay inside this crate: callers see
//! [`StoreError`].

mod codec;
pub mod dir;
pub mod identity;
pub mod ingest;
pub mod journal;
pub mod output;

pub use dir::DirLock;
pub use identity::{RunIdentity, RunState};
pub use journal::{BatchServer, CallTotals, DatasetSource, Kind, SqliteJournal, SCHEMA_VERSION};
pub use output::{DatasetEntry, DuplicateLine, Exported, JobKind, OutputDir, RunSink};

/// Anything that goes wrong with a run directory, naming the place.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("`{path}`: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("`{path}` is in use by {holder} (one command at a time may write a run directory; wait for it to end, or stop it)")]
    Locked { path: String, holder: String },
    #[error("`{path}` is not a directory")]
    NotADirectory { path: String },
    #[error("`{path}` already holds the output of a run without a journal (`{file}`); pass --fresh to replace it, or choose another directory")]
    NotEmpty { path: String, file: String },
    #[error("`{path}` holds {holds}; {wanted} does not write into it, with or without --fresh (its files and journal, with every call paid for, stay as they are): choose another directory")]
    OtherJob { path: String, holds: String, wanted: String },
    #[error("`{path}` holds no run journal (`{}`): is it the output directory of `evol run`?", journal::FILE)]
    NoJournal { path: String },
    #[error("cannot open the journal `{path}`: {message}")]
    Open { path: String, message: String },
    #[error("the journal `{path}` is damaged ({detail})\nhint: rerun with --fresh to start the run over, or restore a copy of the directory")]
    Damaged { path: String, detail: String },
    #[error("the journal is damaged ({0})\nhint: `evol status --check DIR` checks it whole; rerun with --fresh to start the run over, or restore a copy of the directory")]
    DamagedPage(String),
    #[error("the journal `{path}` was made by a newer evol (schema {found}; this evol reads up to {supported}); use that release, or rerun with --fresh to start over")]
    Newer { path: String, found: i64, supported: i64 },
    #[error("the journal failed: {0}")]
    Journal(String),
    #[error("the journal holds an unreadable record: {0}")]
    Record(#[from] serde_json::Error),
    #[error("the journal holds an unreadable record: {0}")]
    Unreadable(String),
    #[error("`{path}` line {line}: {message}")]
    Corrupt { path: String, line: usize, message: String },
    #[error("{place}: the id `{id}` was already used at {first}")]
    DuplicateId { id: String, place: String, first: String },
    #[error("the seed `{0}` is in more than one shard")]
    Doubled(String),
    #[error(transparent)]
    Seeds(#[from] evol_io::SeedError),
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> StoreError {
        // A damaged page found by a read (opening reads the journal whole
        // only after an unclean stop).
        if matches!(
            e.sqlite_error_code(),
            Some(rusqlite::ErrorCode::DatabaseCorrupt | rusqlite::ErrorCode::NotADatabase)
        ) {
            return StoreError::DamagedPage(e.to_string());
        }
        StoreError::Journal(e.to_string())
    }
}
