//! The run journal: one SQLite database (bundled SQLite, WAL mode) in the
//! output directory, the source of truth of a run. It holds
//!
//! - `seeds`: the run's seeds, loaded once from the seed file, each with its
//!   place in the file and whether its chain is done;
//! - `calls`: every committed model call (see `evol_core::journal`);
//! - `records`: every decided record (accepted, rejected, seed answer), by
//!   id, from which the output files are exported;
//! - `meta`: facts about the run (its identity, its state).
//!
//! Each call is committed in its own transaction before the run acts on it,
//! so a run killed at any instant loses at most the calls that were in
//! flight; rerunning the same command replays the committed ones and sends
//! only the rest. Readers (`evol status`, `evol export`) may open the file
//! while a run writes it.

use std::path::Path;
use std::sync::Mutex;

use evol_core::journal::{CallRecord, Journal, JournalError};
use evol_core::Seed;
use rusqlite::{params, Connection, OptionalExtension};

/// The journal's file name in an output directory.
pub const FILE: &str = "journal.sqlite";

/// A journal that cannot be opened or read.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("cannot open the journal `{path}`: {source}")]
    Sqlite {
        path: String,
        #[source]
        source: rusqlite::Error,
    },
}

/// The SQLite journal.
pub struct SqliteJournal {
    conn: Mutex<Connection>,
}

impl SqliteJournal {
    /// Opens (creating if needed) the journal at `path`.
    pub fn open(path: &Path) -> Result<SqliteJournal, OpenError> {
        let error = |source| OpenError::Sqlite { path: path.display().to_string(), source };
        let conn = Connection::open(path).map_err(error)?;
        conn.pragma_update(None, "journal_mode", "WAL").map_err(error)?;
        // In WAL mode, NORMAL survives a crash of the process (the case
        // that matters here); only a power loss can drop the last commits.
        conn.pragma_update(None, "synchronous", "NORMAL").map_err(error)?;
        conn.busy_timeout(std::time::Duration::from_secs(10)).map_err(error)?;
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS calls (key TEXT PRIMARY KEY, record TEXT NOT NULL);
             CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
             CREATE TABLE IF NOT EXISTS seeds (
                 pos INTEGER PRIMARY KEY, id TEXT NOT NULL UNIQUE, instruction TEXT NOT NULL,
                 place TEXT NOT NULL, order_key INTEGER NOT NULL, done INTEGER NOT NULL DEFAULT 0);
             CREATE TABLE IF NOT EXISTS records (
                 id TEXT PRIMARY KEY, kind TEXT NOT NULL, body TEXT NOT NULL, order_key INTEGER NOT NULL);
             CREATE INDEX IF NOT EXISTS records_by_kind ON records (kind, id);
             CREATE TABLE IF NOT EXISTS batches (id TEXT PRIMARY KEY, settled INTEGER NOT NULL DEFAULT 0);",
        )
        .map_err(error)?;
        Ok(SqliteJournal { conn: Mutex::new(conn) })
    }

    /// A fact about the run (its fingerprint, say).
    pub fn meta(&self, key: &str) -> Result<Option<String>, rusqlite::Error> {
        let conn = self.conn.lock().unwrap();
        conn.query_row("SELECT value FROM meta WHERE key = ?1", params![key], |row| row.get(0)).optional()
    }

    pub fn set_meta(&self, key: &str, value: &str) -> Result<(), rusqlite::Error> {
        let conn = self.conn.lock().unwrap();
        conn.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?1, ?2)", params![key, value])?;
        Ok(())
    }

    /// How many calls are committed.
    pub fn calls(&self) -> Result<u64, rusqlite::Error> {
        self.count("SELECT COUNT(*) FROM calls")
    }

    fn count(&self, sql: &str) -> Result<u64, rusqlite::Error> {
        let conn = self.conn.lock().unwrap();
        conn.query_row(sql, [], |row| row.get(0))
    }

    /// Records a provider batch created by the run.
    pub fn batch_submitted(&self, id: &str) -> Result<(), rusqlite::Error> {
        let conn = self.conn.lock().unwrap();
        conn.execute("INSERT OR IGNORE INTO batches (id) VALUES (?1)", params![id])?;
        Ok(())
    }

    /// The batches whose results are not all known to be committed.
    pub fn unsettled_batches(&self) -> Result<Vec<String>, rusqlite::Error> {
        let conn = self.conn.lock().unwrap();
        let mut query = conn.prepare("SELECT id FROM batches WHERE settled = 0 ORDER BY rowid")?;
        let rows = query.query_map([], |r| r.get(0))?;
        rows.collect()
    }

    /// Marks every batch settled (once the run has committed all results).
    pub fn settle_batches(&self) -> Result<(), rusqlite::Error> {
        let conn = self.conn.lock().unwrap();
        conn.execute("UPDATE batches SET settled = 1", [])?;
        Ok(())
    }

    /// Totals over the committed calls.
    pub fn call_totals(&self) -> Result<CallTotals, rusqlite::Error> {
        let conn = self.conn.lock().unwrap();
        conn.query_row(
            "SELECT COUNT(*),
                    COALESCE(SUM(json_extract(record, '$.error') IS NOT NULL), 0),
                    COALESCE(SUM(json_extract(record, '$.retries')), 0),
                    COALESCE(SUM(json_extract(record, '$.usage.prompt_tokens')), 0),
                    COALESCE(SUM(json_extract(record, '$.usage.completion_tokens')), 0)
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
        )
    }

    /// Loads the run's seeds in one transaction: all of them or, on any
    /// error, none. A seed id used twice is an error naming both places.
    /// Seeds already there (from an attempt that stopped before its first
    /// call) are replaced.
    pub fn load_seeds<E>(&self, rows: impl Iterator<Item = Result<SeedRow, E>>) -> Result<u64, LoadError<E>> {
        let mut conn = self.conn.lock().unwrap();
        let tx = conn.transaction()?;
        tx.execute("DELETE FROM seeds", [])?;
        let mut n = 0;
        {
            let mut insert = tx.prepare(
                "INSERT INTO seeds (pos, id, instruction, place, order_key) VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (id) DO NOTHING",
            )?;
            let mut first = tx.prepare("SELECT place FROM seeds WHERE id = ?1")?;
            for row in rows {
                let row = row.map_err(LoadError::Input)?;
                let inserted =
                    insert.execute(params![row.pos, row.seed.id, row.seed.instruction, row.place, row.order_key])?;
                if inserted == 0 {
                    let first: String = first.query_row(params![row.seed.id], |r| r.get(0))?;
                    return Err(LoadError::DuplicateId { id: row.seed.id, place: row.place, first });
                }
                n += 1;
            }
        }
        tx.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?1, ?2)", params![SEEDS_LOADED, n])?;
        tx.commit()?;
        Ok(n)
    }

    /// Whether the seeds were loaded (by an earlier attempt of the run).
    pub fn seeds_loaded(&self) -> Result<bool, rusqlite::Error> {
        Ok(self.meta(SEEDS_LOADED)?.is_some())
    }

    /// Records that the seeds are loaded (for a journal filled by other
    /// means than [`SqliteJournal::load_seeds`], such as a merge).
    pub fn mark_seeds_loaded(&self) -> Result<(), rusqlite::Error> {
        let n = self.seed_count()?;
        self.set_meta(SEEDS_LOADED, &n.to_string())
    }

    /// Up to `limit` seeds after the file position `after`, in file order.
    pub fn seeds_after(&self, after: i64, limit: usize) -> Result<Vec<(i64, Seed)>, rusqlite::Error> {
        let conn = self.conn.lock().unwrap();
        let mut query =
            conn.prepare_cached("SELECT pos, id, instruction FROM seeds WHERE pos > ?1 ORDER BY pos LIMIT ?2")?;
        let rows = query.query_map(params![after, limit as i64], |r| {
            Ok((r.get(0)?, Seed { id: r.get(1)?, instruction: r.get(2)? }))
        })?;
        rows.collect()
    }

    /// The seeds, in file order, in pages: flat memory for any number.
    pub fn seeds(self: &std::sync::Arc<Self>) -> SeedPages {
        SeedPages { journal: self.clone(), after: i64::MIN, page: Vec::new().into_iter(), error: Default::default() }
    }

    pub fn seed_count(&self) -> Result<u64, rusqlite::Error> {
        self.count("SELECT COUNT(*) FROM seeds")
    }

    pub fn seeds_done(&self) -> Result<u64, rusqlite::Error> {
        self.count("SELECT COUNT(*) FROM seeds WHERE done = 1")
    }

    /// Marks every seed's chain done (for runs rebuilt from exports).
    pub fn mark_all_done(&self) -> Result<(), rusqlite::Error> {
        let conn = self.conn.lock().unwrap();
        conn.execute("UPDATE seeds SET done = 1", [])?;
        Ok(())
    }

    /// Marks a seed's chain done.
    pub fn mark_done(&self, id: &str) -> Result<(), rusqlite::Error> {
        let conn = self.conn.lock().unwrap();
        conn.prepare_cached("UPDATE seeds SET done = 1 WHERE id = ?1")?.execute(params![id])?;
        Ok(())
    }

    /// Stores a decided record (replacing an earlier one of the same id).
    pub fn put_record(&self, kind: Kind, id: &str, body: &str, order_key: i64) -> Result<(), rusqlite::Error> {
        let conn = self.conn.lock().unwrap();
        conn.prepare_cached("INSERT OR REPLACE INTO records (id, kind, body, order_key) VALUES (?1, ?2, ?3, ?4)")?
            .execute(params![id, kind.as_str(), body, order_key])?;
        Ok(())
    }

    /// How many records of a kind there are.
    pub fn record_count(&self, kind: Kind) -> Result<u64, rusqlite::Error> {
        let conn = self.conn.lock().unwrap();
        conn.query_row("SELECT COUNT(*) FROM records WHERE kind = ?1", params![kind.as_str()], |r| r.get(0))
    }

    /// Calls `f` with the JSON of every record of `kind`, in id order.
    pub fn for_each_record<E: From<rusqlite::Error>>(
        &self,
        kind: Kind,
        mut f: impl FnMut(&str) -> Result<(), E>,
    ) -> Result<(), E> {
        let conn = self.conn.lock().unwrap();
        let mut query = conn.prepare("SELECT body FROM records WHERE kind = ?1 ORDER BY id")?;
        let mut rows = query.query(params![kind.as_str()])?;
        while let Some(row) = rows.next()? {
            f(row.get_ref(0)?.as_str().map_err(rusqlite::Error::from)?)?;
        }
        Ok(())
    }

    /// Calls `f` with the rows of the dataset in their final order (by
    /// order key): each accepted evolution's JSON and, with `seeds`, each
    /// seed with its answer's JSON when it has one.
    pub fn for_each_dataset_row<E: From<rusqlite::Error>>(
        &self,
        seeds: bool,
        mut f: impl FnMut(DatasetSource<'_>) -> Result<(), E>,
    ) -> Result<(), E> {
        let conn = self.conn.lock().unwrap();
        let mut sql = String::from("SELECT order_key, id, 0, body, NULL FROM records WHERE kind = 'evolved'");
        if seeds {
            sql.push_str(
                " UNION ALL SELECT s.order_key, s.id, 1, s.instruction, r.body FROM seeds s
                  LEFT JOIN records r ON r.id = s.id AND r.kind = 'seed_answer'",
            );
        }
        sql.push_str(" ORDER BY 1, 2");
        let mut query = conn.prepare(&sql)?;
        let mut rows = query.query([])?;
        while let Some(row) = rows.next()? {
            let is_seed: i64 = row.get(2)?;
            let body = row.get_ref(3)?.as_str().map_err(rusqlite::Error::from)?;
            let answer = row.get_ref(4)?.as_str_or_null().map_err(rusqlite::Error::from)?;
            f(if is_seed == 1 {
                DatasetSource::Seed { instruction: body, answer }
            } else {
                DatasetSource::Evolved(body)
            })?;
        }
        Ok(())
    }

    /// Copies everything of another journal (a shard of the same run) into
    /// this one. A seed present in both is an error.
    pub fn absorb(&self, other: &Path) -> Result<(), AbsorbError> {
        let mut conn = self.conn.lock().unwrap();
        conn.execute("ATTACH DATABASE ?1 AS other", params![other.display().to_string()])?;
        let result = (|| {
            let tx = conn.transaction()?;
            let doubled: Option<String> = tx
                .query_row("SELECT id FROM other.seeds WHERE id IN (SELECT id FROM main.seeds) LIMIT 1", [], |r| {
                    r.get(0)
                })
                .optional()?;
            if let Some(id) = doubled {
                return Err(AbsorbError::Doubled(id));
            }
            tx.execute_batch(
                "INSERT INTO main.seeds SELECT * FROM other.seeds;
                 INSERT OR REPLACE INTO main.calls SELECT * FROM other.calls;
                 INSERT OR REPLACE INTO main.records SELECT * FROM other.records;",
            )?;
            tx.commit()?;
            Ok(())
        })();
        conn.execute("DETACH DATABASE other", [])?;
        result
    }
}

/// Totals over a journal's calls.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
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

/// Why seeds could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError<E> {
    #[error(transparent)]
    Input(E),
    #[error("{place}: the id `{id}` was already used at {first}")]
    DuplicateId { id: String, place: String, first: String },
    #[error("the journal failed: {0}")]
    Sqlite(#[from] rusqlite::Error),
}

/// Why a shard's journal could not be merged.
#[derive(Debug, thiserror::Error)]
pub enum AbsorbError {
    #[error("the seed `{0}` is in more than one shard")]
    Doubled(String),
    #[error(transparent)]
    Sqlite(#[from] rusqlite::Error),
}

/// The kinds of records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Evolved,
    Rejected,
    SeedAnswer,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Evolved => "evolved",
            Kind::Rejected => "rejected",
            Kind::SeedAnswer => "seed_answer",
        }
    }
}

/// Where a dataset row comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DatasetSource<'a> {
    /// An accepted evolution's JSON.
    Evolved(&'a str),
    /// A seed's instruction, with its answer's JSON if it was answered.
    Seed { instruction: &'a str, answer: Option<&'a str> },
}

/// Seeds read from the journal a page at a time.
pub struct SeedPages {
    journal: std::sync::Arc<SqliteJournal>,
    after: i64,
    page: std::vec::IntoIter<(i64, Seed)>,
    error: std::sync::Arc<Mutex<Option<rusqlite::Error>>>,
}

/// Seeds fetched per page.
const PAGE: usize = 1024;

impl SeedPages {
    /// Where an error that ends the iteration early is left (the pages
    /// are an iterator of seeds, which has no room for errors).
    pub fn error_slot(&self) -> std::sync::Arc<Mutex<Option<rusqlite::Error>>> {
        self.error.clone()
    }
}

impl Iterator for SeedPages {
    type Item = Seed;
    fn next(&mut self) -> Option<Seed> {
        if let Some((pos, seed)) = self.page.next() {
            self.after = pos;
            return Some(seed);
        }
        match self.journal.seeds_after(self.after, PAGE) {
            Ok(page) if page.is_empty() => None,
            Ok(page) => {
                self.page = page.into_iter();
                self.next()
            }
            Err(e) => {
                *self.error.lock().unwrap() = Some(e);
                None
            }
        }
    }
}

impl Journal for SqliteJournal {
    fn lookup(&self, key: &str) -> Result<Option<CallRecord>, JournalError> {
        let conn = self.conn.lock().unwrap();
        let text: Option<String> =
            conn.query_row("SELECT record FROM calls WHERE key = ?1", params![key], |row| row.get(0)).optional()?;
        Ok(match text {
            Some(text) => Some(serde_json::from_str(&text)?),
            None => None,
        })
    }

    fn commit(&self, key: &str, record: &CallRecord) -> Result<(), JournalError> {
        let text = serde_json::to_string(record)?;
        let conn = self.conn.lock().unwrap();
        conn.execute("INSERT OR REPLACE INTO calls (key, record) VALUES (?1, ?2)", params![key, text])?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use evol_llm::{FinishReason, Usage};

    #[test]
    fn commits_survive_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(FILE);
        let record = CallRecord {
            text: Some("reply".into()),
            finish_reason: Some(FinishReason::Other("weird".into())),
            usage: Usage { prompt_tokens: 3, completion_tokens: 4, cached_tokens: 1 },
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
        assert!(err.to_string().contains("cannot open the journal"), "{err}");
    }

    fn row(pos: i64, id: &str) -> Result<SeedRow, String> {
        Ok(SeedRow {
            pos,
            seed: Seed { id: id.into(), instruction: format!("q {id}") },
            place: format!("line {pos}"),
            order_key: -pos,
        })
    }

    #[test]
    fn seeds_load_whole_or_not_at_all_and_read_back_in_pages() {
        let dir = tempfile::tempdir().unwrap();
        let j = std::sync::Arc::new(SqliteJournal::open(&dir.path().join(FILE)).unwrap());
        let err = j.load_seeds([row(1, "a"), row(2, "b"), row(3, "a")].into_iter()).unwrap_err();
        assert_eq!(err.to_string(), "line 3: the id `a` was already used at line 1");
        let err = j.load_seeds([row(1, "a"), Err("bad line".to_string())].into_iter()).unwrap_err();
        assert_eq!(err.to_string(), "bad line");
        assert_eq!(j.seed_count().unwrap(), 0, "a failed load leaves nothing");
        assert!(!j.seeds_loaded().unwrap());

        // Seeds of an attempt that never started are replaced, not added to.
        j.load_seeds((1..=3).map(|i| row(i, &format!("old{i}")))).unwrap();
        let n = 2500;
        j.load_seeds((1..=n).map(|i| row(i * 2, &format!("s{i}")))).unwrap();
        assert!(j.seeds_loaded().unwrap());
        let ids: Vec<String> = j.seeds().map(|s| s.id).collect();
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
        j.put_record(Kind::Evolved, "a.r1", "{\"e\":\"a\"}", 9).unwrap(); // replaces the rejection
        j.put_record(Kind::SeedAnswer, "b", "{\"answer\":\"b\"}", 0).unwrap();
        let mut evolved = vec![];
        j.for_each_record(Kind::Evolved, |b| {
            evolved.push(b.to_string());
            Ok::<_, rusqlite::Error>(())
        })
        .unwrap();
        assert_eq!(evolved, ["{\"e\":\"a\"}", "{\"e\":\"b\"}"]);
        assert_eq!(j.record_count(Kind::Rejected).unwrap(), 0);
        let mut rows = vec![];
        j.for_each_dataset_row(true, |r| {
            rows.push(format!("{r:?}"));
            Ok::<_, rusqlite::Error>(())
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
        let shard = |name: &str, rows: Vec<Result<SeedRow, String>>| {
            let path = dir.path().join(name);
            let j = SqliteJournal::open(&path).unwrap();
            j.load_seeds(rows.into_iter()).unwrap();
            j.commit(
                &format!("[{name}]"),
                &CallRecord {
                    text: None,
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
    }
}
