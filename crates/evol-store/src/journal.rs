//! The run journal: one SQLite database (bundled SQLite, WAL mode) in the
//! run directory, the source of truth of a run. It holds
//!
//! - `seeds`: the run's seeds, loaded once from the seed file, each with its
//!   place in the file and whether its chain is done;
//! - `calls`: every committed model call (see `evol_core::journal`);
//! - `records`: every decided record, keyed by its space and id: a step's
//!   record (accepted or rejected, replaced when a retried step changes its
//!   fate) and a seed's own answer never share a key, whatever ids users
//!   choose;
//! - `batches`: provider batches and whether their results are settled;
//! - `meta`: the run's identity and state.
//!
//! Each call is committed in its own transaction before the run acts on it,
//! so a run killed at any instant loses at most the calls that were in
//! flight. Readers (`evol status`) may open the file while a run writes it.
//!
//! The schema has a version (`PRAGMA user_version`). Opening a journal
//! migrates an older schema forward in one transaction, and refuses a
//! newer one without touching it. A writer marks the journal open while it
//! holds it; a journal still marked when opened for writing was left by a
//! process that did not close it (killed, or the machine stopped), and is
//! checked first (`PRAGMA quick_check`: a damaged file is refused with what
//! to do). A journal closed cleanly opens without reading it whole;
//! [`SqliteJournal::check_integrity`] reads every page on request.

use std::path::Path;
use std::sync::Mutex;

use evol_core::journal::{CallRecord, Journal, JournalError};
use evol_core::Seed;
use rusqlite::{params, Connection, OpenFlags, OptionalExtension};

use crate::codec::{key_digest, Codec, Dictionary};
use crate::identity::{RunIdentity, RunState};
use crate::StoreError;

/// The journal's file name in a run directory.
pub const FILE: &str = "journal.sqlite";

/// The schema this release writes. 0: evol 0.1.0 (unversioned); 1: records
/// keyed by space and id, the identity's operations as definitions; 2: the
/// `embeddings` table; 3: a seed's conversation turns (`seeds.turns`); 4:
/// call records and record bodies compressed (`crate::codec`), with the
/// `dictionaries` they need; calls keyed by a digest of their key, their
/// totals in columns; both tables without rowids.
pub const SCHEMA_VERSION: i64 = 4;

/// A call: its key's digest, the dictionary and zstd frame of its record's
/// JSON, and what `evol status` totals (so totals read no record).
const CALLS: &str = "
    CREATE TABLE IF NOT EXISTS calls (
        key BLOB PRIMARY KEY, dictionary INTEGER NOT NULL, record BLOB NOT NULL,
        failed INTEGER NOT NULL, retries INTEGER NOT NULL,
        prompt_tokens INTEGER NOT NULL, completion_tokens INTEGER NOT NULL) WITHOUT ROWID;
    CREATE TABLE IF NOT EXISTS dictionaries (id INTEGER PRIMARY KEY, stream TEXT NOT NULL, bytes BLOB NOT NULL);";

/// A decided record: its space and id, its kind, the dictionary and zstd
/// frame of its JSON, its place in the dataset.
const RECORDS: &str = "
    CREATE TABLE IF NOT EXISTS records (
        space TEXT NOT NULL, id TEXT NOT NULL, kind TEXT NOT NULL, dictionary INTEGER NOT NULL, body BLOB NOT NULL,
        order_key INTEGER NOT NULL, PRIMARY KEY (space, id)) WITHOUT ROWID;";

const SCHEMA: &str = "
    CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
    CREATE TABLE IF NOT EXISTS seeds (
        pos INTEGER PRIMARY KEY, id TEXT NOT NULL UNIQUE, instruction TEXT NOT NULL,
        place TEXT NOT NULL, order_key INTEGER NOT NULL, done INTEGER NOT NULL DEFAULT 0, turns TEXT);
    CREATE INDEX IF NOT EXISTS records_by_kind ON records (kind, id);
    CREATE TABLE IF NOT EXISTS batches (id TEXT PRIMARY KEY, settled INTEGER NOT NULL DEFAULT 0);
    CREATE TABLE IF NOT EXISTS embeddings (
        model TEXT NOT NULL, digest TEXT NOT NULL, vector BLOB NOT NULL, PRIMARY KEY (model, digest));";

const IDENTITY: &str = "identity";
/// The meta key a writer holds while it has the journal open: the process
/// id, removed on a clean close.
const WRITER_OPEN: &str = "writer_open";
const STATE: &str = "state";
const BATCH_SERVER: &str = "batch_server";

/// The SQLite journal.
pub struct SqliteJournal {
    conn: Mutex<Connection>,
    /// Compresses and expands call records and record bodies. Taken
    /// before `conn` when both are held, never after.
    codecs: Mutex<Codecs>,
    /// Opened for writing: it holds the open mark until dropped.
    writer: bool,
}

impl Drop for SqliteJournal {
    /// A clean close takes the open mark away (a failure to do so only
    /// means a check at the next open).
    fn drop(&mut self) {
        if self.writer {
            if let Ok(conn) = self.conn.lock() {
                let _ = conn.execute("DELETE FROM meta WHERE key = ?1", params![WRITER_OPEN]);
            }
        }
    }
}

/// The server of a `--batch-api` run, for `evol batch cancel`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct BatchServer {
    pub url: String,
    pub api_key_env: String,
}

impl SqliteJournal {
    /// Opens (creating if needed) the journal at `path`: checks it for
    /// damage and brings its schema to this release's.
    pub fn open(path: &Path) -> Result<SqliteJournal, StoreError> {
        let shown = || path.display().to_string();
        let open_error = |e: rusqlite::Error| StoreError::Open { path: shown(), message: e.to_string() };
        let conn = Connection::open(path).map_err(open_error)?;
        conn.busy_timeout(std::time::Duration::from_secs(10)).map_err(open_error)?;
        conn.pragma_update(None, "journal_mode", "WAL").map_err(|e| damaged_or(e, path))?;
        // In WAL mode, NORMAL survives a crash of the process (the case
        // that matters here); only a power loss can drop the last commits.
        conn.pragma_update(None, "synchronous", "NORMAL").map_err(open_error)?;
        // Left open by a process that did not close it: checked first.
        let has_meta: bool = conn
            .query_row("SELECT COUNT(*) > 0 FROM sqlite_master WHERE name = 'meta'", [], |r| r.get(0))
            .map_err(|e| damaged_or(e, path))?;
        let marked: bool = has_meta
            && conn
                .query_row("SELECT COUNT(*) > 0 FROM meta WHERE key = ?1", params![WRITER_OPEN], |r| r.get(0))
                .map_err(|e| damaged_or(e, path))?;
        if marked {
            check(&conn, path)?;
        }
        let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0)).map_err(open_error)?;
        if version > SCHEMA_VERSION {
            return Err(StoreError::Newer { path: shown(), found: version, supported: SCHEMA_VERSION });
        }
        if version < SCHEMA_VERSION {
            migrate(&conn, version).map_err(|e| StoreError::Open {
                path: shown(),
                message: format!("upgrading its schema from version {version} failed: {e}"),
            })?;
        }
        conn.execute(
            "INSERT OR REPLACE INTO meta (key, value) VALUES (?1, ?2)",
            params![WRITER_OPEN, std::process::id().to_string()],
        )
        .map_err(open_error)?;
        let codecs = Codecs::open(&conn).map_err(|e| StoreError::Open { path: shown(), message: e.to_string() })?;
        Ok(SqliteJournal { conn: Mutex::new(conn), codecs: Mutex::new(codecs), writer: true })
    }

    /// Reads every page of the journal and checks every index against its
    /// table (`PRAGMA integrity_check`): what `evol status --check` runs.
    /// Opening checks only a journal left open by a process that did not
    /// close it.
    pub fn check_integrity(&self) -> Result<(), StoreError> {
        let conn = self.conn.lock().unwrap();
        let path = conn.path().map(std::path::PathBuf::from).unwrap_or_default();
        check_with(&conn, &path, "integrity_check")
    }

    /// Opens the journal of the run directory `dir`, refusing a directory
    /// without one (opening would make an empty journal).
    pub fn open_existing(dir: &Path) -> Result<SqliteJournal, StoreError> {
        let path = dir.join(FILE);
        if !path.is_file() {
            return Err(StoreError::NoJournal { path: dir.display().to_string() });
        }
        SqliteJournal::open(&path)
    }

    /// Opens the journal of the directory `dir` for reading only (`evol
    /// status`, `evol report`, an export's snapshot): it needs no write
    /// access and changes nothing, while a run may go on writing it. A
    /// journal of an older schema is opened as [`SqliteJournal::open`] does
    /// (upgrading it needs write access once).
    pub fn open_read_only(dir: &Path) -> Result<SqliteJournal, StoreError> {
        let path = dir.join(FILE);
        if !path.is_file() {
            return Err(StoreError::NoJournal { path: dir.display().to_string() });
        }
        let shown = || path.display().to_string();
        let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX | OpenFlags::SQLITE_OPEN_URI;
        let open = |immutable: bool| -> Result<(Connection, i64), rusqlite::Error> {
            let conn = match immutable {
                false => Connection::open_with_flags(&path, flags)?,
                // No writer can be at work where the journal's side files
                // cannot even be made (a read-only directory): read the file
                // as it stands.
                true => {
                    let mut uri = url_path(&path);
                    uri.push_str("?immutable=1");
                    Connection::open_with_flags(uri, flags)?
                }
            };
            conn.busy_timeout(std::time::Duration::from_secs(10))?;
            let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
            Ok((conn, version))
        };
        let (conn, version) = match open(false) {
            Ok(opened) => opened,
            Err(first) => open(true).map_err(|_| damaged_or(first, &path))?,
        };
        if version > SCHEMA_VERSION {
            return Err(StoreError::Newer { path: shown(), found: version, supported: SCHEMA_VERSION });
        }
        if version < SCHEMA_VERSION {
            drop(conn);
            return SqliteJournal::open(&path);
        }
        let codecs = Codecs::open(&conn).map_err(|e| StoreError::Open { path: shown(), message: e.to_string() })?;
        Ok(SqliteJournal { conn: Mutex::new(conn), codecs: Mutex::new(codecs), writer: false })
    }

    fn meta(&self, key: &str) -> Result<Option<String>, StoreError> {
        let conn = self.conn.lock().unwrap();
        Ok(conn.query_row("SELECT value FROM meta WHERE key = ?1", params![key], |row| row.get(0)).optional()?)
    }

    fn set_meta(&self, key: &str, value: &str) -> Result<(), StoreError> {
        let conn = self.conn.lock().unwrap();
        conn.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?1, ?2)", params![key, value])?;
        Ok(())
    }

    /// The cached embeddings of `model` for the texts of these digests.
    pub fn embeddings(
        &self,
        model: &str,
        digests: &[String],
    ) -> Result<std::collections::HashMap<String, Vec<f32>>, StoreError> {
        let conn = self.conn.lock().unwrap();
        let mut query = conn.prepare_cached("SELECT vector FROM embeddings WHERE model = ?1 AND digest = ?2")?;
        let mut found = std::collections::HashMap::new();
        for digest in digests {
            let vector: Option<Vec<u8>> = query.query_row(params![model, digest], |r| r.get(0)).optional()?;
            if let Some(bytes) = vector {
                let v = bytes.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect();
                found.insert(digest.clone(), v);
            }
        }
        Ok(found)
    }

    /// Caches embeddings of `model` by text digest, in one transaction.
    pub fn put_embeddings(&self, model: &str, items: &[(String, Vec<f32>)]) -> Result<(), StoreError> {
        let mut conn = self.conn.lock().unwrap();
        let tx = conn.transaction()?;
        {
            let mut insert =
                tx.prepare_cached("INSERT OR REPLACE INTO embeddings (model, digest, vector) VALUES (?1, ?2, ?3)")?;
            for (digest, vector) in items {
                let bytes: Vec<u8> = vector.iter().flat_map(|x| x.to_le_bytes()).collect();
                insert.execute(params![model, digest, bytes])?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// A fact a command keeps under its own name (for instance the
    /// identity of an `evol score` job), as text.
    pub fn fact(&self, key: &str) -> Result<Option<String>, StoreError> {
        self.meta(&format!("fact:{key}"))
    }

    pub fn set_fact(&self, key: &str, value: &str) -> Result<(), StoreError> {
        self.set_meta(&format!("fact:{key}"), value)
    }

    /// The run's identity, once a run has started.
    pub fn identity(&self) -> Result<Option<RunIdentity>, StoreError> {
        self.meta_json(IDENTITY)
    }

    /// A fact stored as JSON.
    fn meta_json<T: serde::de::DeserializeOwned>(&self, key: &str) -> Result<Option<T>, StoreError> {
        Ok(self.meta(key)?.map(|text| serde_json::from_str(&text)).transpose()?)
    }

    pub fn set_identity(&self, identity: &RunIdentity) -> Result<(), StoreError> {
        self.set_meta(IDENTITY, &serde_json::to_string(identity)?)
    }

    /// Where the run stands (none before it started).
    pub fn state(&self) -> Result<Option<RunState>, StoreError> {
        // A state this release does not know is an error, not a guess.
        let unknown = |s: &str| StoreError::Journal(format!("the journal names an unknown run state `{s}`"));
        self.meta(STATE)?.map(|s| RunState::parse(&s).ok_or_else(|| unknown(&s))).transpose()
    }

    pub fn set_state(&self, state: RunState) -> Result<(), StoreError> {
        self.set_meta(STATE, state.as_str())
    }

    pub fn batch_server(&self) -> Result<Option<BatchServer>, StoreError> {
        self.meta_json(BATCH_SERVER)
    }

    pub fn set_batch_server(&self, server: &BatchServer) -> Result<(), StoreError> {
        self.set_meta(BATCH_SERVER, &serde_json::to_string(server)?)
    }

    /// How many calls are committed.
    pub fn calls(&self) -> Result<u64, StoreError> {
        self.count("SELECT COUNT(*) FROM calls")
    }

    fn count(&self, sql: &str) -> Result<u64, StoreError> {
        let conn = self.conn.lock().unwrap();
        Ok(conn.query_row(sql, [], |row| row.get(0))?)
    }

    /// Records a provider batch created by the run.
    pub fn batch_submitted(&self, id: &str) -> Result<(), StoreError> {
        let conn = self.conn.lock().unwrap();
        conn.execute("INSERT OR IGNORE INTO batches (id) VALUES (?1)", params![id])?;
        Ok(())
    }

    /// The batches whose results are not all known to be committed.
    pub fn unsettled_batches(&self) -> Result<Vec<String>, StoreError> {
        let conn = self.conn.lock().unwrap();
        let mut query = conn.prepare("SELECT id FROM batches WHERE settled = 0 ORDER BY rowid")?;
        let rows = query.query_map([], |r| r.get(0))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Marks every batch settled (once the run has committed all results).
    pub fn settle_batches(&self) -> Result<(), StoreError> {
        let conn = self.conn.lock().unwrap();
        conn.execute("UPDATE batches SET settled = 1", [])?;
        Ok(())
    }

    /// Totals over the committed calls.
    pub fn call_totals(&self) -> Result<CallTotals, StoreError> {
        let conn = self.conn.lock().unwrap();
        Ok(conn.query_row(
            "SELECT COUNT(*), COALESCE(SUM(failed), 0), COALESCE(SUM(retries), 0),
                    COALESCE(SUM(prompt_tokens), 0), COALESCE(SUM(completion_tokens), 0)
             FROM calls",
            [],
            |r| {
                Ok(CallTotals {
                    calls: r.get(0)?,
                    failed: r.get(1)?,
                    retries: r.get(2)?,
                    prompt_tokens: r.get(3)?,
                    completion_tokens: r.get(4)?,
                })
            },
        )?)
    }

    /// Loads the run's seeds in one transaction: all of them or, on any
    /// error, none. A seed id used twice is an error naming both places.
    /// Seeds already there (from an attempt that stopped before its first
    /// call) are replaced.
    pub fn load_seeds(&self, rows: impl Iterator<Item = Result<SeedRow, StoreError>>) -> Result<u64, StoreError> {
        let mut conn = self.conn.lock().unwrap();
        let tx = conn.transaction()?;
        tx.execute("DELETE FROM seeds", [])?;
        let mut n = 0;
        {
            let mut insert = tx.prepare(
                "INSERT INTO seeds (pos, id, instruction, place, order_key, turns) VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                 ON CONFLICT (id) DO NOTHING",
            )?;
            let mut first = tx.prepare("SELECT place FROM seeds WHERE id = ?1")?;
            for row in rows {
                let row = row?;
                let turns = match row.seed.turns.is_empty() {
                    true => None,
                    false => Some(serde_json::to_string(&row.seed.turns)?),
                };
                let inserted = insert.execute(params![
                    row.pos,
                    row.seed.id,
                    row.seed.instruction,
                    row.place,
                    row.order_key,
                    turns
                ])?;
                if inserted == 0 {
                    let first: String = first.query_row(params![row.seed.id], |r| r.get(0))?;
                    return Err(StoreError::DuplicateId { id: row.seed.id, place: row.place, first });
                }
                n += 1;
            }
        }
        tx.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?1, ?2)", params![SEEDS_LOADED, n])?;
        tx.commit()?;
        Ok(n)
    }

    /// Whether the run has begun: its identity is recorded and a call was
    /// committed or a batch sent. A run killed before that (seeds loaded,
    /// nothing asked) is started afresh by the next command.
    pub fn has_begun(&self) -> Result<bool, StoreError> {
        Ok(self.identity()?.is_some() && (self.calls()? > 0 || !self.unsettled_batches()?.is_empty()))
    }

    /// Whether the seeds were loaded (by an earlier attempt of the run).
    pub fn seeds_loaded(&self) -> Result<bool, StoreError> {
        Ok(self.meta(SEEDS_LOADED)?.is_some())
    }

    /// Records that the seeds are loaded (for a journal filled by other
    /// means than [`SqliteJournal::load_seeds`], such as a merge).
    pub fn mark_seeds_loaded(&self) -> Result<(), StoreError> {
        let n = self.seed_count()?;
        self.set_meta(SEEDS_LOADED, &n.to_string())
    }

    /// Up to `limit` seeds after the file position `after`, in file order.
    pub fn seeds_after(&self, after: i64, limit: usize) -> Result<Vec<(i64, Seed)>, StoreError> {
        let conn = self.conn.lock().unwrap();
        let mut query =
            conn.prepare_cached("SELECT pos, id, instruction, turns FROM seeds WHERE pos > ?1 ORDER BY pos LIMIT ?2")?;
        let rows = query.query_map(params![after, limit as i64], |r| {
            Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?, r.get::<_, String>(2)?, r.get::<_, Option<String>>(3)?))
        })?;
        let mut seeds = Vec::new();
        for row in rows {
            let (pos, id, instruction, turns) = row?;
            let turns = match turns {
                Some(text) => serde_json::from_str(&text)
                    .map_err(|e| StoreError::Journal(format!("the turns of seed `{id}`: {e}")))?,
                None => Vec::new(),
            };
            seeds.push((pos, Seed { id, instruction, turns }));
        }
        Ok(seeds)
    }

    /// The seeds, in file order, in pages: flat memory for any number. A
    /// page that cannot be read is an error item, after which none follow.
    pub fn seeds(self: &std::sync::Arc<Self>) -> SeedPages {
        SeedPages { journal: self.clone(), after: i64::MIN, page: Vec::new().into_iter(), failed: false }
    }

    pub fn seed_count(&self) -> Result<u64, StoreError> {
        self.count("SELECT COUNT(*) FROM seeds")
    }

    pub fn seeds_done(&self) -> Result<u64, StoreError> {
        self.count("SELECT COUNT(*) FROM seeds WHERE done = 1")
    }

    /// Marks every seed's chain done (for runs rebuilt from exports).
    pub fn mark_all_done(&self) -> Result<(), StoreError> {
        let conn = self.conn.lock().unwrap();
        conn.execute("UPDATE seeds SET done = 1", [])?;
        Ok(())
    }

    /// Marks a seed's chain done.
    pub fn mark_done(&self, id: &str) -> Result<(), StoreError> {
        let conn = self.conn.lock().unwrap();
        conn.prepare_cached("UPDATE seeds SET done = 1 WHERE id = ?1")?.execute(params![id])?;
        Ok(())
    }

    /// Stores a decided record, replacing an earlier one of the same id in
    /// the same space (a step's fate, a seed's answer).
    /// Returns whether the record is new or changed (a replayed record,
    /// the same as the one kept, changes nothing).
    pub fn put_record(&self, kind: Kind, id: &str, body: &str, order_key: i64) -> Result<bool, StoreError> {
        let mut codecs = self.codecs.lock().unwrap();
        let conn = self.conn.lock().unwrap();
        // Compared as text: the same body may have been compressed with
        // another dictionary (before the journal had one).
        let kept: Option<(String, i64, Vec<u8>, i64)> = conn
            .prepare_cached("SELECT kind, dictionary, body, order_key FROM records WHERE space = ?1 AND id = ?2")?
            .query_row(params![kind.space(), id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
            .optional()?;
        if let Some((kept_kind, dictionary, frame, kept_order)) = kept {
            if kept_kind == kind.as_str() && kept_order == order_key {
                let what = || format!("the record `{id}` ({})", kind.as_str());
                if unpack(&mut codecs.records, &conn, dictionary, &frame, what)? == body.as_bytes() {
                    return Ok(false);
                }
            }
        }
        let (dictionary, frame) = pack(&mut codecs.records, &conn, Stream::Records, body.as_bytes())?;
        conn.prepare_cached(
            "INSERT OR REPLACE INTO records (space, id, kind, dictionary, body, order_key) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        )?
        .execute(params![kind.space(), id, kind.as_str(), dictionary, frame, order_key])?;
        Ok(true)
    }

    /// How many records of a kind there are.
    pub fn record_count(&self, kind: Kind) -> Result<u64, StoreError> {
        let conn = self.conn.lock().unwrap();
        Ok(conn.query_row("SELECT COUNT(*) FROM records WHERE kind = ?1", params![kind.as_str()], |r| r.get(0))?)
    }

    /// Calls `f` with the JSON of every record of `kind`, in id order.
    pub fn for_each_record<E: From<StoreError>>(
        &self,
        kind: Kind,
        mut f: impl FnMut(&str) -> Result<(), E>,
    ) -> Result<(), E> {
        let mut codecs = self.codecs.lock().unwrap();
        let conn = self.conn.lock().unwrap();
        let sql = |e: rusqlite::Error| E::from(StoreError::from(e));
        let mut query =
            conn.prepare("SELECT id, dictionary, body FROM records WHERE kind = ?1 ORDER BY id").map_err(sql)?;
        let mut rows = query.query(params![kind.as_str()]).map_err(sql)?;
        while let Some(row) = rows.next().map_err(sql)? {
            let id = row.get_ref(0).map_err(sql)?.as_str().map_err(|e| sql(e.into()))?;
            let dictionary: i64 = row.get(1).map_err(sql)?;
            let frame = row.get_ref(2).map_err(sql)?.as_bytes().map_err(|e| sql(e.into()))?;
            let what = || format!("the record `{id}` ({})", kind.as_str());
            f(&unpack_text(&mut codecs.records, &conn, dictionary, frame, what)?)?;
        }
        Ok(())
    }

    /// Calls `f` with the rows of the dataset in their final order (by
    /// order key): each accepted evolution's JSON and, with `seeds`, each
    /// seed with its answer's JSON when it has one.
    /// The ids of every accepted evolution (`SEED.rROUND`), in no order.
    pub fn evolved_ids(&self) -> Result<Vec<String>, StoreError> {
        let conn = self.conn.lock().unwrap();
        let mut query = conn.prepare("SELECT id FROM records WHERE kind = 'evolved'")?;
        let ids = query.query_map([], |row| row.get::<_, String>(0))?.collect::<Result<Vec<_>, _>>()?;
        Ok(ids)
    }

    pub fn for_each_dataset_row<E: From<StoreError>>(
        &self,
        seeds: bool,
        mut f: impl FnMut(DatasetSource<'_>) -> Result<(), E>,
    ) -> Result<(), E> {
        let mut codecs = self.codecs.lock().unwrap();
        let conn = self.conn.lock().unwrap();
        let sql = |e: rusqlite::Error| E::from(StoreError::from(e));
        let mut text = String::from(
            "SELECT order_key, id, 0, NULL, dictionary, body, NULL, NULL, NULL, NULL, NULL FROM records WHERE kind = 'evolved'",
        );
        if seeds {
            text.push_str(
                " UNION ALL SELECT s.order_key, s.id, 1, s.instruction, NULL, NULL, r.dictionary, r.body,
                      q.dictionary, q.body, s.turns FROM seeds s
                  LEFT JOIN records r ON r.space = 'seed' AND r.id = s.id
                  LEFT JOIN records q ON q.space = 'seed_score' AND q.id = s.id",
            );
        }
        text.push_str(" ORDER BY 1, 2, 3");
        let mut query = conn.prepare(&text).map_err(sql)?;
        let mut rows = query.query([]).map_err(sql)?;
        // A compressed body (dictionary and frame in columns `at` and
        // `at + 1`), as text; none where the column is NULL.
        let mut body = |row: &rusqlite::Row<'_>, at: usize, id: &str, kind: &str| -> Result<Option<String>, E> {
            let frame = row.get_ref(at + 1).map_err(sql)?.as_bytes_or_null().map_err(|e| sql(e.into()))?;
            let Some(frame) = frame else { return Ok(None) };
            let dictionary: i64 = row.get(at).map_err(sql)?;
            let what = || format!("the record `{id}` ({kind})");
            Ok(Some(unpack_text(codecs.of(Stream::Records), &conn, dictionary, frame, what)?))
        };
        while let Some(row) = rows.next().map_err(sql)? {
            let is_seed: i64 = row.get(2).map_err(sql)?;
            let id = row.get_ref(1).map_err(sql)?.as_str().map_err(|e| sql(e.into()))?;
            if is_seed == 1 {
                let instruction = row.get_ref(3).map_err(sql)?.as_str().map_err(|e| sql(e.into()))?;
                let answer = body(row, 6, id, Kind::SeedAnswer.as_str())?;
                let score = body(row, 8, id, Kind::SeedScore.as_str())?;
                let turns = row.get_ref(10).map_err(sql)?.as_str_or_null().map_err(|e| sql(e.into()))?;
                f(DatasetSource::Seed { id, instruction, answer: answer.as_deref(), score: score.as_deref(), turns })?;
            } else {
                let evolved = body(row, 4, id, Kind::Evolved.as_str())?.ok_or_else(|| {
                    E::from(StoreError::Unreadable(format!("the record `{id}` (evolved) has no body")))
                })?;
                f(DatasetSource::Evolved(&evolved))?;
            }
        }
        Ok(())
    }

    /// Adds the seeds, calls and records of other journals (the shards of
    /// one run) to this one, in one transaction, refusing a seed found
    /// twice (in two of them, or in one and this journal). The others must
    /// be at this release's schema: open each with [`SqliteJournal::open`]
    /// first, which checks and upgrades it (a merge opens every shard
    /// anyway).
    ///
    /// Linear in the rows: each journal is appended to unindexed staging
    /// tables, then every table is filled once in its key's order, so its
    /// b-trees grow at their ends. (Inserting shard after shard into the
    /// indexed tables dirtied pages all over them at every shard: 64 shards
    /// of 10,000 seeds took 28 s against 1.2 s for 8.)
    pub fn absorb_all(&self, others: &[&Path]) -> Result<(), StoreError> {
        let mut conn = self.conn.lock().unwrap();
        conn.execute_batch(
            "CREATE TEMP TABLE stage_seeds AS SELECT * FROM main.seeds WHERE 0;
             CREATE TEMP TABLE stage_calls AS SELECT * FROM main.calls WHERE 0;
             CREATE TEMP TABLE stage_records AS SELECT * FROM main.records WHERE 0;",
        )?;
        let result = (|| {
            for other in others {
                conn.execute("ATTACH DATABASE ?1 AS other", params![other.display().to_string()])?;
                let copied = conn.execute_batch(
                    "INSERT INTO temp.stage_seeds SELECT * FROM other.seeds;
                     INSERT INTO temp.stage_calls SELECT * FROM other.calls;
                     INSERT OR IGNORE INTO main.dictionaries SELECT * FROM other.dictionaries;
                     INSERT INTO temp.stage_records SELECT * FROM other.records;",
                );
                conn.execute("DETACH DATABASE other", [])?;
                copied?;
            }
            let tx = conn.transaction()?;
            let doubled: Option<String> = tx
                .query_row(
                    "SELECT id FROM (SELECT id FROM temp.stage_seeds UNION ALL SELECT id FROM main.seeds)
                     GROUP BY id HAVING COUNT(*) > 1 LIMIT 1",
                    [],
                    |r| r.get(0),
                )
                .optional()?;
            if let Some(id) = doubled {
                return Err(StoreError::Doubled(id));
            }
            tx.execute_batch(
                "INSERT INTO main.seeds SELECT * FROM temp.stage_seeds ORDER BY pos;
                 INSERT OR REPLACE INTO main.calls SELECT * FROM temp.stage_calls ORDER BY key;
                 INSERT OR REPLACE INTO main.records SELECT * FROM temp.stage_records ORDER BY space, id;",
            )?;
            tx.commit()?;
            Ok(())
        })();
        conn.execute_batch("DROP TABLE temp.stage_seeds; DROP TABLE temp.stage_calls; DROP TABLE temp.stage_records;")?;
        result
    }

    /// [`SqliteJournal::absorb_all`] of one journal.
    pub fn absorb(&self, other: &Path) -> Result<(), StoreError> {
        self.absorb_all(&[other])
    }
}

/// What a dictionary is trained on and used for: a journal trains one for
/// call records and one for record bodies.
#[derive(Debug, Clone, Copy)]
enum Stream {
    Calls,
    Records,
}

impl Stream {
    fn as_str(self) -> &'static str {
        match self {
            Stream::Calls => "calls",
            Stream::Records => "records",
        }
    }
}

/// The codecs of an open journal.
struct Codecs {
    calls: Codec,
    records: Codec,
}

impl Codecs {
    /// New frames use a dictionary the journal holds for their stream (a
    /// resumed run's), if any.
    fn open(conn: &Connection) -> Result<Codecs, StoreError> {
        let mut codecs =
            Codecs { calls: Codec::new().map_err(codec_error)?, records: Codec::new().map_err(codec_error)? };
        for stream in [Stream::Calls, Stream::Records] {
            let first: Option<(i64, Vec<u8>)> = conn
                .query_row(
                    "SELECT id, bytes FROM dictionaries WHERE stream = ?1 ORDER BY id LIMIT 1",
                    params![stream.as_str()],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .optional()?;
            if let Some((id, bytes)) = first {
                let dictionary = Dictionary { id, bytes };
                let codec = codecs.of(stream);
                codec.use_dictionary(&dictionary).map_err(codec_error)?;
            }
        }
        Ok(codecs)
    }

    fn of(&mut self, stream: Stream) -> &mut Codec {
        match stream {
            Stream::Calls => &mut self.calls,
            Stream::Records => &mut self.records,
        }
    }
}

fn codec_error(e: std::io::Error) -> StoreError {
    StoreError::Journal(format!("zstd: {e}"))
}

/// Compresses `bytes` for `stream`: the dictionary used and the frame. A
/// dictionary trained on the way is stored before any frame needs it.
fn pack(codec: &mut Codec, conn: &Connection, stream: Stream, bytes: &[u8]) -> Result<(i64, Vec<u8>), StoreError> {
    let packed = codec.compress(bytes).map_err(codec_error)?;
    if let Some(trained) = codec.train() {
        conn.execute(
            "INSERT OR IGNORE INTO dictionaries (id, stream, bytes) VALUES (?1, ?2, ?3)",
            params![trained.id, stream.as_str(), trained.bytes],
        )?;
        codec.use_dictionary(&trained).map_err(codec_error)?;
    }
    Ok(packed)
}

/// Expands a frame of `what`, reading its dictionary from the journal the
/// first time it is met. What cannot be expanded is an error naming it.
fn unpack(
    codec: &mut Codec,
    conn: &Connection,
    dictionary: i64,
    frame: &[u8],
    what: impl Fn() -> String,
) -> Result<Vec<u8>, StoreError> {
    if !codec.knows(dictionary) {
        let stored: Option<Vec<u8>> = conn
            .query_row("SELECT bytes FROM dictionaries WHERE id = ?1", params![dictionary], |r| r.get(0))
            .optional()?;
        if let Some(bytes) = stored {
            codec.learn(&Dictionary { id: dictionary, bytes }).map_err(codec_error)?;
        }
    }
    codec.expand(dictionary, frame).map_err(|e| StoreError::Unreadable(format!("{} ({e})", what())))
}

/// [`unpack`] of a record body, as text.
fn unpack_text(
    codec: &mut Codec,
    conn: &Connection,
    dictionary: i64,
    frame: &[u8],
    what: impl Fn() -> String,
) -> Result<String, StoreError> {
    String::from_utf8(unpack(codec, conn, dictionary, frame, &what)?)
        .map_err(|e| StoreError::Unreadable(format!("{} ({e})", what())))
}

/// An open error that means the file is not a sound database.
fn damaged_or(e: rusqlite::Error, path: &Path) -> StoreError {
    let message = e.to_string();
    if matches!(e.sqlite_error_code(), Some(rusqlite::ErrorCode::DatabaseCorrupt | rusqlite::ErrorCode::NotADatabase)) {
        return StoreError::Damaged { path: path.display().to_string(), detail: message };
    }
    StoreError::Open { path: path.display().to_string(), message }
}

/// A path as a `file:` URI, for SQLite's URI parameters.
fn url_path(path: &Path) -> String {
    let absolute = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    let mut uri = String::from("file:");
    for byte in absolute.to_string_lossy().bytes() {
        match byte {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'/' | b'-' | b'_' | b'.' | b'~' => uri.push(byte as char),
            other => uri.push_str(&format!("%{other:02X}")),
        }
    }
    uri
}

/// `PRAGMA quick_check`: the b-trees and pages are sound (it reads every
/// page once).
fn check(conn: &Connection, path: &Path) -> Result<(), StoreError> {
    check_with(conn, path, "quick_check")
}

/// One of SQLite's checks (`quick_check`, `integrity_check`), its first
/// five findings the error's detail.
fn check_with(conn: &Connection, path: &Path, pragma: &str) -> Result<(), StoreError> {
    let mut query = conn.prepare(&format!("PRAGMA {pragma}(5)")).map_err(|e| damaged_or(e, path))?;
    let findings: Vec<String> =
        query.query_map([], |r| r.get(0)).and_then(|rows| rows.collect()).map_err(|e| damaged_or(e, path))?;
    if findings.len() == 1 && findings[0] == "ok" {
        return Ok(());
    }
    Err(StoreError::Damaged { path: path.display().to_string(), detail: findings.join("; ") })
}

/// Brings a journal of schema `from` to [`SCHEMA_VERSION`], in one
/// transaction. A journal whose calls were compressed is then vacuumed, so
/// that the file shrinks to what it holds (once, when first opened).
fn migrate(conn: &Connection, from: i64) -> Result<(), StoreError> {
    conn.execute_batch("BEGIN IMMEDIATE")?;
    let result = (|| {
        if from == 0 && has_table(conn, "calls")? {
            migrate_0_to_1(conn)?;
        }
        // 2 -> 3: a seed's turns, none for the seeds already loaded.
        if has_table(conn, "seeds")? && !has_column(conn, "seeds", "turns")? {
            conn.execute_batch("ALTER TABLE seeds ADD COLUMN turns TEXT")?;
        }
        // 3 -> 4: calls compressed, keyed by digest.
        let converted = has_table(conn, "calls")? && !has_column(conn, "calls", "dictionary")?;
        if converted {
            migrate_calls_3_to_4(conn)?;
        }
        if has_table(conn, "records")? && !has_column(conn, "records", "dictionary")? {
            migrate_records_3_to_4(conn)?;
        }
        conn.execute_batch(CALLS)?;
        conn.execute_batch(RECORDS)?;
        // 1 -> 2: the `embeddings` table, which the schema creates.
        conn.execute_batch(SCHEMA)?;
        conn.pragma_update(None, "user_version", SCHEMA_VERSION)?;
        Ok(converted)
    })();
    match result {
        Ok(converted) => {
            conn.execute_batch("COMMIT")?;
            // Only space is at stake: a journal that cannot be vacuumed
            // (no room for the copy) is upgraded all the same, its freed
            // pages reused as it grows.
            if converted {
                let _ = conn.execute_batch("VACUUM");
            }
            Ok(())
        }
        Err(e) => {
            let _ = conn.execute_batch("ROLLBACK");
            Err(e)
        }
    }
}

fn has_table(conn: &Connection, table: &str) -> Result<bool, rusqlite::Error> {
    conn.query_row("SELECT COUNT(*) > 0 FROM sqlite_master WHERE name = ?1", params![table], |r| r.get(0))
}

fn has_column(conn: &Connection, table: &str, column: &str) -> Result<bool, rusqlite::Error> {
    conn.query_row("SELECT COUNT(*) > 0 FROM pragma_table_info(?1) WHERE name = ?2", params![table, column], |r| {
        r.get(0)
    })
}

/// 0.1.0 -> 1: records keyed by (space, id) instead of the bare id; the
/// identity's `ops` (names of built-in operations) become `operations`
/// (their definitions).
fn migrate_0_to_1(conn: &Connection) -> Result<(), StoreError> {
    conn.execute_batch(
        "CREATE TABLE records_1 (
             space TEXT NOT NULL, id TEXT NOT NULL, kind TEXT NOT NULL, body TEXT NOT NULL,
             order_key INTEGER NOT NULL, PRIMARY KEY (space, id));
         INSERT INTO records_1 SELECT CASE kind WHEN 'seed_answer' THEN 'seed' ELSE 'step' END,
             id, kind, body, order_key FROM records;
         DROP TABLE records;
         ALTER TABLE records_1 RENAME TO records;",
    )?;
    let identity: Option<String> =
        conn.query_row("SELECT value FROM meta WHERE key = ?1", params![IDENTITY], |r| r.get(0)).optional()?;
    if let Some(text) = identity {
        let mut value: serde_json::Value = serde_json::from_str(&text)?;
        crate::identity::upgrade_v0(&mut value).map_err(|e| StoreError::Journal(format!("the run's identity: {e}")))?;
        conn.execute("UPDATE meta SET value = ?1 WHERE key = ?2", params![value.to_string(), IDENTITY])?;
    }
    Ok(())
}

/// 3 -> 4: each call's record, as it was written, compressed (a
/// dictionary trained on the first of them, as a run does), keyed by its
/// key's digest, with its totals in columns. A record that is not the JSON
/// of a call is kept as it was (a lookup reports it) and totals nothing.
fn migrate_calls_3_to_4(conn: &Connection) -> Result<(), StoreError> {
    conn.execute_batch(&format!("ALTER TABLE calls RENAME TO calls_3; {CALLS}"))?;
    let mut codec = Codec::new().map_err(codec_error)?;
    let mut select = conn.prepare("SELECT key, record FROM calls_3")?;
    let mut insert = conn.prepare(
        "INSERT OR REPLACE INTO calls (key, dictionary, record, failed, retries, prompt_tokens, completion_tokens)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )?;
    let mut rows = select.query([])?;
    while let Some(row) = rows.next()? {
        let key: String = row.get(0)?;
        let text: String = row.get(1)?;
        let record = serde_json::from_str::<CallRecord>(&text).ok();
        let (dictionary, frame) = pack(&mut codec, conn, Stream::Calls, text.as_bytes())?;
        insert.execute(params![
            &key_digest(&key)[..],
            dictionary,
            frame,
            record.as_ref().is_some_and(|r| r.error.is_some()),
            record.as_ref().map_or(0, |r| r.retries),
            record.as_ref().map_or(0, |r| r.usage.prompt_tokens),
            record.as_ref().map_or(0, |r| r.usage.completion_tokens),
        ])?;
    }
    drop(rows);
    conn.execute_batch("DROP TABLE calls_3")?;
    Ok(())
}

/// 3 -> 4: each record's body compressed, in a table without rowids (its
/// index is made again by the schema).
fn migrate_records_3_to_4(conn: &Connection) -> Result<(), StoreError> {
    conn.execute_batch(&format!("ALTER TABLE records RENAME TO records_3; {RECORDS}"))?;
    let mut codec = Codec::new().map_err(codec_error)?;
    let mut select = conn.prepare("SELECT space, id, kind, body, order_key FROM records_3 ORDER BY space, id")?;
    let mut insert = conn.prepare(
        "INSERT INTO records (space, id, kind, dictionary, body, order_key) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?;
    let mut rows = select.query([])?;
    while let Some(row) = rows.next()? {
        let (space, id, kind, body, order_key): (String, String, String, String, i64) =
            (row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?, row.get(4)?);
        let (dictionary, frame) = pack(&mut codec, conn, Stream::Records, body.as_bytes())?;
        insert.execute(params![space, id, kind, dictionary, frame, order_key])?;
    }
    drop(rows);
    conn.execute_batch("DROP TABLE records_3")?;
    Ok(())
}

/// Totals over a journal's calls.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CallTotals {
    pub calls: u64,
    pub failed: u64,
    pub retries: u64,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
}

/// The meta key that says the seeds are loaded (and how many).
const SEEDS_LOADED: &str = "seeds_loaded";

/// A seed to load: its position in the file (unique across shards), the
/// seed, its place in words, and its key in the dataset's order.
#[derive(Debug, Clone)]
pub struct SeedRow {
    pub pos: i64,
    pub seed: Seed,
    pub place: String,
    pub order_key: i64,
}

/// The kinds of records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Evolved,
    Rejected,
    SeedAnswer,
    SeedScore,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Evolved => "evolved",
            Kind::Rejected => "rejected",
            Kind::SeedAnswer => "seed_answer",
            Kind::SeedScore => "seed_score",
        }
    }

    /// The key space: a step's accepted and rejected records share one (a
    /// retried step replaces its record); a seed's answer has its own.
    fn space(self) -> &'static str {
        match self {
            Kind::Evolved | Kind::Rejected => "step",
            Kind::SeedAnswer => "seed",
            Kind::SeedScore => "seed_score",
        }
    }
}

/// Where a dataset row comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DatasetSource<'a> {
    /// An accepted evolution's JSON.
    Evolved(&'a str),
    /// A seed's id and instruction, with its answer's JSON if it was
    /// answered, and its turns' JSON if it is a conversation.
    Seed { id: &'a str, instruction: &'a str, answer: Option<&'a str>, score: Option<&'a str>, turns: Option<&'a str> },
}

/// Seeds read from the journal a page at a time.
pub struct SeedPages {
    journal: std::sync::Arc<SqliteJournal>,
    after: i64,
    page: std::vec::IntoIter<(i64, Seed)>,
    failed: bool,
}

/// Seeds fetched per page.
const PAGE: usize = 1024;

impl Iterator for SeedPages {
    type Item = Result<Seed, StoreError>;
    fn next(&mut self) -> Option<Result<Seed, StoreError>> {
        if let Some((pos, seed)) = self.page.next() {
            self.after = pos;
            return Some(Ok(seed));
        }
        if self.failed {
            return None;
        }
        match self.journal.seeds_after(self.after, PAGE) {
            Ok(page) if page.is_empty() => None,
            Ok(page) => {
                self.page = page.into_iter();
                self.next()
            }
            Err(e) => {
                self.failed = true;
                Some(Err(e))
            }
        }
    }
}

impl Journal for SqliteJournal {
    fn lookup(&self, key: &str) -> Result<Option<CallRecord>, JournalError> {
        let mut codecs = self.codecs.lock().unwrap();
        let conn = self.conn.lock().unwrap();
        let found: Option<(i64, Vec<u8>)> = conn
            .prepare_cached("SELECT dictionary, record FROM calls WHERE key = ?1")?
            .query_row(params![&key_digest(key)[..]], |row| Ok((row.get(0)?, row.get(1)?)))
            .optional()?;
        let Some((dictionary, frame)) = found else { return Ok(None) };
        let what = || format!("the call {key}");
        let json = unpack(&mut codecs.calls, &conn, dictionary, &frame, what)?;
        let record = serde_json::from_slice(&json).map_err(|e| StoreError::Unreadable(format!("{} ({e})", what())))?;
        Ok(Some(record))
    }

    fn commit(&self, key: &str, record: &CallRecord) -> Result<(), JournalError> {
        let json = serde_json::to_vec(record)?;
        let mut codecs = self.codecs.lock().unwrap();
        let conn = self.conn.lock().unwrap();
        let (dictionary, frame) = pack(&mut codecs.calls, &conn, Stream::Calls, &json)?;
        conn.prepare_cached(
            "INSERT OR REPLACE INTO calls (key, dictionary, record, failed, retries, prompt_tokens, completion_tokens)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        )?
        .execute(params![
            &key_digest(key)[..],
            dictionary,
            frame,
            record.error.is_some(),
            record.retries,
            record.usage.prompt_tokens,
            record.usage.completion_tokens
        ])?;
        Ok(())
    }

    fn vectors(
        &self,
        model: &str,
        digests: &[String],
    ) -> Result<std::collections::HashMap<String, Vec<f32>>, JournalError> {
        Ok(self.embeddings(model, digests)?)
    }

    fn commit_vectors(&self, model: &str, items: &[(String, Vec<f32>)]) -> Result<(), JournalError> {
        Ok(self.put_embeddings(model, items)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use evol_llm::{FinishReason, Usage};

    #[test]
    fn a_read_only_journal_reads_while_a_writer_holds_it_and_writes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let writer = SqliteJournal::open(&dir.path().join(FILE)).unwrap();
        writer.set_state(RunState::Running).unwrap();
        let reader = SqliteJournal::open_read_only(dir.path()).unwrap();
        assert_eq!(reader.state().unwrap(), Some(RunState::Running));
        // What the writer commits next is seen; the reader cannot write.
        writer.set_state(RunState::Completed).unwrap();
        assert_eq!(reader.state().unwrap(), Some(RunState::Completed));
        let refused = reader.set_state(RunState::Failed).unwrap_err().to_string();
        assert!(refused.contains("readonly") || refused.contains("read-only"), "{refused}");
        drop((writer, reader));
        // Closed, its side files gone: read as it stands.
        let reader = SqliteJournal::open_read_only(dir.path()).unwrap();
        assert_eq!(reader.state().unwrap(), Some(RunState::Completed));
        assert!(matches!(SqliteJournal::open_read_only(&dir.path().join("none")), Err(StoreError::NoJournal { .. })));
    }

    #[test]
    fn embeddings_are_cached_by_model_and_digest() {
        let dir = tempfile::tempdir().unwrap();
        let j = SqliteJournal::open(&dir.path().join("j.sqlite")).unwrap();
        j.put_embeddings("m", &[("d1".into(), vec![0.5, -1.25]), ("d2".into(), vec![3.0, 0.0])]).unwrap();
        let found = j.embeddings("m", &["d1".into(), "d3".into()]).unwrap();
        assert_eq!(found.len(), 1);
        assert_eq!(found["d1"], [0.5, -1.25]);
        assert!(j.embeddings("other", &["d1".into()]).unwrap().is_empty(), "another model's are not used");
        drop(j);
        let j = SqliteJournal::open(&dir.path().join("j.sqlite")).unwrap();
        assert_eq!(j.embeddings("m", &["d2".into()]).unwrap()["d2"], [3.0, 0.0], "kept across opens");
    }

    #[test]
    fn commits_survive_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(FILE);
        let record = CallRecord {
            text: Some("reply".into()),
            reasoning: Some("思考：先读题。".into()),
            finish_reason: Some(FinishReason::Other("weird".into())),
            usage: Usage { prompt_tokens: 3, completion_tokens: 4, cached_tokens: 1, reasoning_tokens: 2 },
            retries: 2,
            error: None,
            prompt: "digest".into(),
            attempt: 1,
        };
        {
            let j = SqliteJournal::open(&path).unwrap();
            assert_eq!(j.lookup("k").unwrap(), None);
            j.commit("k", &record).unwrap();
            j.set_meta("fingerprint", "abc").unwrap();
        }
        let j = SqliteJournal::open(&path).unwrap();
        assert_eq!(j.lookup("k").unwrap(), Some(record));
        assert_eq!(j.meta("fingerprint").unwrap().as_deref(), Some("abc"));
        assert_eq!(j.meta("other").unwrap(), None);
        assert_eq!(j.calls().unwrap(), 1);
    }

    #[test]
    fn a_file_that_is_not_a_database_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(FILE);
        std::fs::write(&path, "not sqlite at all, just text that is long enough to be read").unwrap();
        let err = SqliteJournal::open(&path).err().expect("refused");
        assert!(err.to_string().contains("is damaged"), "{err}");
        assert!(err.to_string().contains("--fresh"), "{err}");
    }

    fn row(pos: i64, id: &str) -> Result<SeedRow, StoreError> {
        Ok(SeedRow { pos, seed: Seed::new(id, format!("q {id}")), place: format!("line {pos}"), order_key: -pos })
    }

    #[test]
    fn seeds_load_whole_or_not_at_all_and_read_back_in_pages() {
        let dir = tempfile::tempdir().unwrap();
        let j = std::sync::Arc::new(SqliteJournal::open(&dir.path().join(FILE)).unwrap());
        let err = j.load_seeds([row(1, "a"), row(2, "b"), row(3, "a")].into_iter()).unwrap_err();
        assert_eq!(err.to_string(), "line 3: the id `a` was already used at line 1");
        let err = j.load_seeds([row(1, "a"), Err(StoreError::Journal("bad line".into()))].into_iter()).unwrap_err();
        assert!(err.to_string().ends_with("bad line"), "{err}");
        assert_eq!(j.seed_count().unwrap(), 0, "a failed load leaves nothing");
        assert!(!j.seeds_loaded().unwrap());

        // Seeds of an attempt that never started are replaced, not added to.
        j.load_seeds((1..=3).map(|i| row(i, &format!("old{i}")))).unwrap();
        let n = 2500;
        j.load_seeds((1..=n).map(|i| row(i * 2, &format!("s{i}")))).unwrap();
        assert!(j.seeds_loaded().unwrap());
        let ids: Vec<String> = j.seeds().map(|s| s.unwrap().id).collect();
        assert_eq!(ids.len(), n as usize);
        assert_eq!(ids[0], "s1");
        assert_eq!(ids[2499], "s2500");
        j.mark_done("s7").unwrap();
        assert_eq!(j.seeds_done().unwrap(), 1);
    }

    #[test]
    fn records_export_in_id_order_and_dataset_in_key_order() {
        let dir = tempfile::tempdir().unwrap();
        let j = SqliteJournal::open(&dir.path().join(FILE)).unwrap();
        j.load_seeds([row(1, "a"), row(2, "b")].into_iter()).unwrap();
        j.put_record(Kind::Evolved, "b.r1", "{\"e\":\"b\"}", 5).unwrap();
        j.put_record(Kind::Rejected, "a.r1", "{\"r\":1}", 0).unwrap();
        assert!(j.put_record(Kind::Evolved, "a.r1", "{\"e\":\"a\"}", 9).unwrap(), "replaces the rejection");
        assert!(!j.put_record(Kind::Evolved, "a.r1", "{\"e\":\"a\"}", 9).unwrap(), "a replay changes nothing");
        assert!(j.put_record(Kind::SeedAnswer, "b", "{\"answer\":\"b\"}", 0).unwrap(), "new");
        let mut evolved = vec![];
        j.for_each_record(Kind::Evolved, |b| {
            evolved.push(b.to_string());
            Ok::<_, StoreError>(())
        })
        .unwrap();
        assert_eq!(evolved, ["{\"e\":\"a\"}", "{\"e\":\"b\"}"]);
        assert_eq!(j.record_count(Kind::Rejected).unwrap(), 0);
        let mut rows = vec![];
        j.for_each_dataset_row(true, |r| {
            rows.push(format!("{r:?}"));
            Ok::<_, StoreError>(())
        })
        .unwrap();
        // Order keys: b = -2, a = -1, b.r1 = 5, a.r1 = 9.
        assert_eq!(rows.len(), 4);
        assert!(rows[0].contains("q b") && rows[0].contains("answer"), "{rows:?}");
        assert!(rows[1].contains("q a") && rows[1].contains("None"), "{rows:?}");
        assert!(rows[2].contains("Evolved") && rows[3].contains("\\\"a\\\""), "{rows:?}");
    }

    #[test]
    fn shards_merge_and_doubled_seeds_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let shard = |name: &str, rows: Vec<Result<SeedRow, StoreError>>| {
            let path = dir.path().join(name);
            let j = SqliteJournal::open(&path).unwrap();
            j.load_seeds(rows.into_iter()).unwrap();
            j.commit(
                &format!("[{name}]"),
                &CallRecord {
                    text: None,
                    reasoning: None,
                    finish_reason: None,
                    usage: Default::default(),
                    retries: 0,
                    error: None,
                    prompt: String::new(),
                    attempt: 0,
                },
            )
            .unwrap();
            path
        };
        let one = shard("one.sqlite", vec![row(1, "a")]);
        let two = shard("two.sqlite", vec![row(2, "b")]);
        let three = shard("three.sqlite", vec![row(3, "a")]);
        let merged = SqliteJournal::open(&dir.path().join("merged.sqlite")).unwrap();
        merged.absorb(&one).unwrap();
        merged.absorb(&two).unwrap();
        assert_eq!(merged.seed_count().unwrap(), 2);
        assert_eq!(merged.calls().unwrap(), 2);
        let err = merged.absorb(&three).unwrap_err();
        assert_eq!(err.to_string(), "the seed `a` is in more than one shard");
        assert_eq!(merged.seed_count().unwrap(), 2);
        // All at once: the same rows, the same refusal, nothing half done.
        let all = SqliteJournal::open(&dir.path().join("all.sqlite")).unwrap();
        let err = all.absorb_all(&[&one, &two, &three]).unwrap_err();
        assert_eq!(err.to_string(), "the seed `a` is in more than one shard");
        assert_eq!((all.seed_count().unwrap(), all.calls().unwrap()), (0, 0));
        all.absorb_all(&[&two, &one]).unwrap();
        assert_eq!((all.seed_count().unwrap(), all.calls().unwrap()), (2, 2));
    }

    #[test]
    fn a_seed_answer_and_a_step_of_the_same_id_are_both_kept() {
        let dir = tempfile::tempdir().unwrap();
        let j = SqliteJournal::open(&dir.path().join(FILE)).unwrap();
        // Seed `a.r1`'s answer and seed `a`'s first round share an id.
        j.put_record(Kind::SeedAnswer, "a.r1", "{\"answer\":1}", 0).unwrap();
        j.put_record(Kind::Evolved, "a.r1", "{\"evolved\":1}", 1).unwrap();
        assert_eq!(j.record_count(Kind::SeedAnswer).unwrap(), 1);
        assert_eq!(j.record_count(Kind::Evolved).unwrap(), 1);
        // A retried step still replaces its own record.
        j.put_record(Kind::Rejected, "a.r1", "{\"rejected\":1}", 1).unwrap();
        assert_eq!(j.record_count(Kind::Evolved).unwrap(), 0);
        assert_eq!(j.record_count(Kind::SeedAnswer).unwrap(), 1);
    }

    /// The schema of version 2, as that release made it.
    const SCHEMA_2: &str = "
        CREATE TABLE calls (key TEXT PRIMARY KEY, record TEXT NOT NULL);
        CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
        CREATE TABLE seeds (
            pos INTEGER PRIMARY KEY, id TEXT NOT NULL UNIQUE, instruction TEXT NOT NULL,
            place TEXT NOT NULL, order_key INTEGER NOT NULL, done INTEGER NOT NULL DEFAULT 0);
        CREATE TABLE records (
            space TEXT NOT NULL, id TEXT NOT NULL, kind TEXT NOT NULL, body TEXT NOT NULL,
            order_key INTEGER NOT NULL, PRIMARY KEY (space, id));
        CREATE INDEX records_by_kind ON records (kind, id);
        CREATE TABLE batches (id TEXT PRIMARY KEY, settled INTEGER NOT NULL DEFAULT 0);
        CREATE TABLE embeddings (
            model TEXT NOT NULL, digest TEXT NOT NULL, vector BLOB NOT NULL, PRIMARY KEY (model, digest));
        INSERT INTO seeds VALUES (1, 'old', 'An old seed', 'line 1', 5, 1);
        INSERT INTO meta VALUES ('seeds_loaded', '1');
        PRAGMA user_version = 2;";

    #[test]
    fn a_journal_of_schema_2_opens_with_its_seeds_and_takes_conversations() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(FILE);
        Connection::open(&path).unwrap().execute_batch(SCHEMA_2).unwrap();
        let j = SqliteJournal::open(&path).unwrap();
        let version: i64 = j.conn.lock().unwrap().query_row("PRAGMA user_version", [], |r| r.get(0)).unwrap();
        assert_eq!(version, SCHEMA_VERSION);
        assert_eq!(j.seeds_after(i64::MIN, 10).unwrap(), vec![(1, Seed::new("old", "An old seed"))]);
        assert_eq!(j.seeds_done().unwrap(), 1, "what was done stays done");
        // A seed that is a conversation keeps its turns.
        let turns = vec![
            evol_llm::Message::user("Hallo"),
            evol_llm::Message::assistant("Hallo! Wie kann ich helfen?"),
            evol_llm::Message::user("Erkläre Photosynthese."),
        ];
        let seed = Seed { turns: turns.clone(), ..Seed::new("chat", "Hallo") };
        let row = SeedRow { pos: 2, seed: seed.clone(), place: "line 2".into(), order_key: 3 };
        j.load_seeds([Ok(row)].into_iter()).unwrap();
        assert_eq!(j.seeds_after(i64::MIN, 10).unwrap(), vec![(2, seed)]);
        let mut seen = Vec::new();
        j.for_each_dataset_row::<StoreError>(true, |r| {
            if let DatasetSource::Seed { turns, .. } = r {
                seen.push(turns.map(|t| serde_json::from_str::<Vec<evol_llm::Message>>(t).unwrap()));
            }
            Ok(())
        })
        .unwrap();
        assert_eq!(seen, vec![Some(turns)]);
    }

    /// A call record of a job: replies in several scripts, some failed.
    fn call(i: usize) -> (String, CallRecord) {
        let place = ["Mumbai", "मुंबई", "東京", "القاهرة", "กรุงเทพ"][i % 5];
        let record = CallRecord {
            text: (!i.is_multiple_of(13))
                .then(|| format!("Describe how a city like {place} plans its water supply for {i} years.")),
            reasoning: (i.is_multiple_of(3)).then(|| format!("思考 {i}: the rewrite must stay answerable.")),
            finish_reason: Some(if i.is_multiple_of(13) { FinishReason::Length } else { FinishReason::Stop }),
            usage: Usage {
                prompt_tokens: 100 + i as u64 % 17,
                completion_tokens: 30 + i as u64 % 11,
                ..Default::default()
            },
            retries: i.is_multiple_of(7) as u32,
            error: (i.is_multiple_of(29)).then(|| format!("the server answered 500 ({i})")),
            prompt: format!("{:032x}", (i as u128).wrapping_mul(0x9e37_79b9_7f4a_7c15_f39c_c060_5ced_c835)),
            attempt: 0,
        };
        (evol_core::journal::call_key(&format!("seed-{i}"), 1, "evolve"), record)
    }

    /// The tables of schema `version` (1 to 3) as those releases made them.
    fn schema_of(version: i64) -> String {
        let mut schema = SCHEMA_2.replace("INSERT INTO seeds VALUES (1, 'old', 'An old seed', 'line 1', 5, 1);", "");
        match version {
            1 => {
                let start = schema.find("CREATE TABLE embeddings").unwrap();
                let end = start + schema[start..].find(';').unwrap() + 1;
                schema.replace_range(start..end, "");
            }
            3 => {
                schema =
                    schema.replace("done INTEGER NOT NULL DEFAULT 0)", "done INTEGER NOT NULL DEFAULT 0, turns TEXT)")
            }
            _ => {}
        }
        schema.replace("PRAGMA user_version = 2;", &format!("PRAGMA user_version = {version};"))
    }

    #[test]
    fn journals_of_every_earlier_schema_keep_every_call_and_its_totals() {
        let calls: Vec<(String, CallRecord)> = (0..crate::codec::TRAIN_AFTER + 300).map(call).collect();
        let expected = CallTotals {
            calls: calls.len() as u64 + 1,
            failed: calls.iter().filter(|(_, r)| r.error.is_some()).count() as u64,
            retries: calls.iter().map(|(_, r)| r.retries as u64).sum(),
            prompt_tokens: calls.iter().map(|(_, r)| r.usage.prompt_tokens).sum(),
            completion_tokens: calls.iter().map(|(_, r)| r.usage.completion_tokens).sum(),
        };
        let bodies: Vec<String> = calls
            .iter()
            .map(|(key, record)| serde_json::json!({"key": key, "instruction": record.text}).to_string())
            .collect();
        for version in 1..=3 {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join(FILE);
            {
                let conn = Connection::open(&path).unwrap();
                conn.execute_batch(&schema_of(version)).unwrap();
                for (key, record) in &calls {
                    conn.execute(
                        "INSERT INTO calls VALUES (?1, ?2)",
                        params![key, serde_json::to_string(record).unwrap()],
                    )
                    .unwrap();
                }
                conn.execute("INSERT INTO calls VALUES ('[\"torn\",1,\"evolve\"]', '{\"text\":\"half')", []).unwrap();
                for (i, body) in bodies.iter().enumerate() {
                    conn.execute(
                        "INSERT INTO records (space, id, kind, body, order_key) VALUES ('step', ?1, 'evolved', ?2, ?3)",
                        params![format!("seed-{i:05}.r1"), body, -(i as i64)],
                    )
                    .unwrap();
                }
            }
            let j = SqliteJournal::open(&path).unwrap();
            let found: i64 = j.conn.lock().unwrap().query_row("PRAGMA user_version", [], |r| r.get(0)).unwrap();
            assert_eq!(found, SCHEMA_VERSION, "from {version}");
            for (key, record) in &calls {
                assert_eq!(j.lookup(key).unwrap().as_ref(), Some(record), "from {version}: {key}");
            }
            // What could not be read before cannot now, and says which call.
            let err = j.lookup(r#"["torn",1,"evolve"]"#).unwrap_err().to_string();
            assert!(err.contains(r#"["torn",1,"evolve"]"#), "{err}");
            assert_eq!(j.call_totals().unwrap(), expected, "from {version}");
            let dictionaries: i64 =
                j.conn.lock().unwrap().query_row("SELECT COUNT(*) FROM dictionaries", [], |r| r.get(0)).unwrap();
            assert_eq!(dictionaries, 2, "one for calls and one for records, trained while migrating");
            // Every record reads back, in id order and in the dataset's.
            let mut read = Vec::new();
            j.for_each_record::<StoreError>(Kind::Evolved, |body| {
                read.push(body.to_string());
                Ok(())
            })
            .unwrap();
            assert_eq!(read, bodies, "from {version}");
            let mut rows = Vec::new();
            j.for_each_dataset_row::<StoreError>(false, |row| {
                if let DatasetSource::Evolved(body) = row {
                    rows.push(body.to_string());
                }
                Ok(())
            })
            .unwrap();
            assert_eq!(rows, bodies.iter().rev().cloned().collect::<Vec<_>>(), "from {version}");
            // A record replayed as it was is no change, whichever dictionary
            // it was kept with; another body is.
            for (i, body) in bodies.iter().enumerate().step_by(97) {
                let id = format!("seed-{i:05}.r1");
                assert!(!j.put_record(Kind::Evolved, &id, body, -(i as i64)).unwrap(), "from {version}: {id}");
                assert!(j.put_record(Kind::Evolved, &id, "{}", -(i as i64)).unwrap());
            }
            // It takes new calls, compressed with that dictionary.
            let (key, record) = call(99_999);
            j.commit(&key, &record).unwrap();
            drop(j);
            let j = SqliteJournal::open(&path).unwrap();
            assert_eq!(j.lookup(&key).unwrap(), Some(record));
            assert_eq!(j.calls().unwrap(), calls.len() as u64 + 2);
        }
    }

    #[test]
    fn calls_compressed_with_a_shards_dictionaries_read_back_merged() {
        let dir = tempfile::tempdir().unwrap();
        let calls: Vec<(String, CallRecord)> = (0..2 * crate::codec::TRAIN_AFTER + 100).map(call).collect();
        let (first, second) = calls.split_at(calls.len() / 2);
        let shard = |name: &str, calls: &[(String, CallRecord)]| {
            let path = dir.path().join(name);
            let j = SqliteJournal::open(&path).unwrap();
            for (key, record) in calls {
                j.commit(key, record).unwrap();
            }
            path
        };
        let one = shard("one.sqlite", first);
        let two = shard("two.sqlite", second);
        let merged = SqliteJournal::open(&dir.path().join("merged.sqlite")).unwrap();
        merged.absorb_all(&[&one, &two]).unwrap();
        let dictionaries: i64 =
            merged.conn.lock().unwrap().query_row("SELECT COUNT(*) FROM dictionaries", [], |r| r.get(0)).unwrap();
        assert_eq!(dictionaries, 2, "each shard trained its own");
        for (key, record) in &calls {
            assert_eq!(merged.lookup(key).unwrap().as_ref(), Some(record), "{key}");
        }
        assert_eq!(merged.calls().unwrap(), calls.len() as u64);
    }

    #[test]
    fn a_newer_schema_is_refused_untouched() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(FILE);
        drop(SqliteJournal::open(&path).unwrap());
        {
            let conn = Connection::open(&path).unwrap();
            conn.pragma_update(None, "user_version", SCHEMA_VERSION + 1).unwrap();
        }
        let err = SqliteJournal::open(&path).err().expect("refused");
        assert!(err.to_string().contains("newer evol"), "{err}");
        let conn = Connection::open(&path).unwrap();
        let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0)).unwrap();
        assert_eq!(version, SCHEMA_VERSION + 1, "not rewritten");
    }

    /// A journal of 2000 records with pages in its middle overwritten;
    /// `killed`: its writer never closed it.
    fn damaged(path: &Path, killed: bool) {
        let j = SqliteJournal::open(path).unwrap();
        for i in 0..2000 {
            j.put_record(Kind::Evolved, &format!("s{i}.r1"), &"x".repeat(200), i).unwrap();
        }
        j.conn.lock().unwrap().execute_batch("PRAGMA wal_checkpoint(TRUNCATE)").unwrap();
        match killed {
            true => {
                // As a killed process leaves it: the mark stays.
                let conn = std::mem::replace(&mut *j.conn.lock().unwrap(), Connection::open_in_memory().unwrap());
                std::mem::forget(j);
                drop(conn);
            }
            false => drop(j),
        }
        let mut bytes = std::fs::read(path).unwrap();
        assert!(bytes.len() > 40 * 4096, "{}", bytes.len());
        for b in &mut bytes[20 * 4096..24 * 4096] {
            *b = 0x5a;
        }
        std::fs::write(path, bytes).unwrap();
    }

    #[test]
    fn a_journal_left_open_is_checked_on_open_and_any_on_request() {
        let dir = tempfile::tempdir().unwrap();
        // Left open by a killed writer: refused on open.
        let path = dir.path().join("killed.sqlite");
        damaged(&path, true);
        let err = SqliteJournal::open(&path).err().expect("refused");
        assert!(err.to_string().contains("is damaged"), "{err}");
        // Closed cleanly, then damaged on disk: opening does not read it
        // whole; the full check finds it.
        let path = dir.path().join("closed.sqlite");
        damaged(&path, false);
        let j = SqliteJournal::open(&path).unwrap();
        let err = j.check_integrity().unwrap_err();
        assert!(err.to_string().contains("is damaged"), "{err}");
        // A sound journal passes; its mark comes and goes with its writer.
        let path = dir.path().join("sound.sqlite");
        let j = SqliteJournal::open(&path).unwrap();
        j.check_integrity().unwrap();
        assert!(j.meta(WRITER_OPEN).unwrap().is_some());
        drop(j);
        let conn = Connection::open(&path).unwrap();
        let marked: i64 =
            conn.query_row("SELECT COUNT(*) FROM meta WHERE key = 'writer_open'", [], |r| r.get(0)).unwrap();
        assert_eq!(marked, 0, "a clean close takes the mark away");
    }
}
