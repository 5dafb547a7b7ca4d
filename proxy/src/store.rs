//! Durable storage of the platform's server callbacks in SQLite (WAL).

use std::path::Path;
use std::sync::{Arc, Mutex};

use rusqlite::{params, Connection};
use sha2::{Digest, Sha256};

/// One stored callback delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredCallback {
    /// `personal-auth` or `company-auth`.
    pub kind: String,
    /// The request's query string (it carries the flow id the proxy put in `callbackUrl`).
    pub query: String,
    /// The form body (invalid UTF-8 replaced; retries are matched on the exact bytes).
    pub body: String,
    /// Empty when well-formed, else why it was refused.
    pub error: String,
    /// How many times the same delivery arrived.
    pub deliveries: i64,
}

/// Whether a delivery was new or a retry of a stored one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recorded {
    /// First time seen; stored.
    New,
    /// Same kind, query and body as a stored delivery; its count was raised.
    Retry,
}

/// The callback store; cheap to clone, safe to share.
#[derive(Clone)]
pub struct CallbackStore {
    conn: Arc<Mutex<Connection>>,
}

impl CallbackStore {
    /// Opens (creating if needed) the database at `path` in WAL mode.
    pub fn open(path: &Path) -> rusqlite::Result<Self> {
        let conn = Connection::open(path)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        conn.execute_batch(
            "CREATE TABLE IF NOT EXISTS callbacks (
                id INTEGER PRIMARY KEY,
                kind TEXT NOT NULL,
                dedup_key TEXT NOT NULL UNIQUE,
                query TEXT NOT NULL,
                body TEXT NOT NULL,
                error TEXT NOT NULL,
                received_at INTEGER NOT NULL,
                deliveries INTEGER NOT NULL DEFAULT 1
            );",
        )?;
        Ok(Self { conn: Arc::new(Mutex::new(conn)) })
    }

    /// Stores a delivery durably, or counts it as a retry of an identical stored one.
    /// `error` is empty for a well-formed callback, else the reason it was refused.
    pub fn record(&self, kind: &str, query: &str, body: &[u8], error: &str) -> rusqlite::Result<Recorded> {
        let key = dedup_key(kind, query, body);
        let body = String::from_utf8_lossy(body);
        let conn = self.conn.lock().unwrap_or_else(|e| e.into_inner());
        let inserted = conn.execute(
            "INSERT INTO callbacks (kind, dedup_key, query, body, error, received_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT(dedup_key) DO NOTHING",
            params![kind, key, query, body, error, crate::unix_millis() as i64],
        )?;
        if inserted == 1 {
            return Ok(Recorded::New);
        }
        conn.execute("UPDATE callbacks SET deliveries = deliveries + 1 WHERE dedup_key = ?1", params![key])?;
        Ok(Recorded::Retry)
    }

    /// All stored callbacks, oldest first.
    pub fn all(&self) -> rusqlite::Result<Vec<StoredCallback>> {
        let conn = self.conn.lock().unwrap_or_else(|e| e.into_inner());
        let mut stmt =
            conn.prepare("SELECT kind, query, body, error, deliveries FROM callbacks ORDER BY id")?;
        let rows = stmt.query_map([], |r| {
            Ok(StoredCallback {
                kind: r.get(0)?,
                query: r.get(1)?,
                body: r.get(2)?,
                error: r.get(3)?,
                deliveries: r.get(4)?,
            })
        })?;
        rows.collect()
    }
}

/// Identity of a delivery: kind, query and the body's exact bytes.
fn dedup_key(kind: &str, query: &str, body: &[u8]) -> String {
    let mut h = Sha256::new();
    for part in [kind.as_bytes(), query.as_bytes(), body] {
        h.update((part.len() as u64).to_le_bytes());
        h.update(part);
    }
    crate::sign::hex(&h.finalize())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_are_counted_not_duplicated_and_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cb.sqlite3");
        let store = CallbackStore::open(&path).unwrap();
        assert_eq!(store.record("personal-auth", "flow=a", b"mode=FACE&status=1", "").unwrap(), Recorded::New);
        assert_eq!(store.record("personal-auth", "flow=a", b"mode=FACE&status=1", "").unwrap(), Recorded::Retry);
        assert_eq!(store.record("personal-auth", "flow=b", b"mode=FACE&status=1", "").unwrap(), Recorded::New);
        drop(store);
        let all = CallbackStore::open(&path).unwrap().all().unwrap();
        assert_eq!(all.len(), 2);
        assert_eq!(all[0].deliveries, 2);
        assert_eq!(all[1].query, "flow=b");
    }
}
