//! The run journal: one SQLite database (bundled SQLite, WAL mode) in the
//! output directory that holds every committed model call and the facts of
//! the run it belongs to.
//!
//! Each call is committed in its own transaction before the run acts on it,
//! so a run killed at any instant loses at most the calls that were in
//! flight; rerunning the same command replays the committed ones (see
//! `evol_core::journal`) and sends only the rest.

use std::path::Path;
use std::sync::Mutex;

use evol_core::journal::{CallRecord, Journal, JournalError};
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
             CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);",
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
        let conn = self.conn.lock().unwrap();
        conn.query_row("SELECT COUNT(*) FROM calls", [], |row| row.get(0))
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
            usage: Usage { prompt_tokens: 3, completion_tokens: 4 },
            retries: 2,
            error: None,
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
}
