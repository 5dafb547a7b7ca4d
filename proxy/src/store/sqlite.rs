//! The SQLite backend of the callback store: one file, WAL, `synchronous=FULL`.
//!
//! Tables:
//! - `callbacks(id, kind, dedup_key UNIQUE, query, body, error, received_at, deliveries)`: the
//!   well-formed deliveries (`error` is kept empty; older databases may hold malformed rows);
//! - `malformed_counts(day, kind, class, count, last_at)`, primary key (day, kind, class);
//! - `malformed_samples(slot, seq, kind, class, reason, source, content_type, query, body,
//!   body_len, received_at)`, `slot` = `seq % SAMPLE_SLOTS`.

use std::path::Path;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use rusqlite::{params, Connection, TransactionBehavior};

use super::{
    CallbackBackend, Delivery, Malformed, MalformedCount, MalformedSample, Recorded, StoreError, StoredCallback, DAY_MS,
    SAMPLE_SLOTS,
};

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS callbacks (
    id INTEGER PRIMARY KEY,
    kind TEXT NOT NULL,
    dedup_key TEXT NOT NULL UNIQUE,
    query TEXT NOT NULL,
    body TEXT NOT NULL,
    error TEXT NOT NULL,
    received_at INTEGER NOT NULL,
    deliveries INTEGER NOT NULL DEFAULT 1
);
CREATE INDEX IF NOT EXISTS callbacks_received_at ON callbacks (received_at);
CREATE TABLE IF NOT EXISTS malformed_counts (
    day INTEGER NOT NULL,
    kind TEXT NOT NULL,
    class TEXT NOT NULL,
    count INTEGER NOT NULL,
    last_at INTEGER NOT NULL,
    PRIMARY KEY (day, kind, class)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS malformed_samples (
    slot INTEGER PRIMARY KEY,
    seq INTEGER NOT NULL,
    kind TEXT NOT NULL,
    class TEXT NOT NULL,
    reason TEXT NOT NULL,
    source TEXT NOT NULL,
    content_type TEXT NOT NULL,
    query TEXT NOT NULL,
    body BLOB NOT NULL,
    body_len INTEGER NOT NULL,
    received_at INTEGER NOT NULL
);
";

/// The callback store in one SQLite file.
pub struct SqliteBackend {
    conn: Mutex<Connection>,
}

impl SqliteBackend {
    /// Opens (creating if needed) the database at `path` in WAL mode, `synchronous=FULL`.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let conn = Connection::open(path)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.busy_timeout(Duration::from_secs(5))?;
        conn.execute_batch(SCHEMA)?;
        Ok(Self { conn: Mutex::new(conn) })
    }

    fn conn(&self) -> MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl CallbackBackend for SqliteBackend {
    fn record(&self, d: &Delivery<'_>) -> Result<Recorded, StoreError> {
        let conn = self.conn();
        let deliveries: i64 = conn
            .prepare_cached(
                "INSERT INTO callbacks (kind, dedup_key, query, body, error, received_at)
                 VALUES (?1, ?2, ?3, ?4, '', ?5)
                 ON CONFLICT (dedup_key) DO UPDATE SET deliveries = deliveries + 1
                 RETURNING deliveries",
            )?
            .query_row(params![d.kind, d.dedup_key, d.query, d.body, d.received_at], |r| r.get(0))?;
        Ok(if deliveries == 1 { Recorded::New } else { Recorded::Retry })
    }

    fn count_malformed(&self, m: &Malformed<'_>, body_len: usize, received_at: i64) -> Result<(), StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        tx.prepare_cached(
            "INSERT INTO malformed_counts (day, kind, class, count, last_at) VALUES (?1, ?2, ?3, 1, ?4)
             ON CONFLICT (day, kind, class) DO UPDATE SET count = count + 1, last_at = excluded.last_at",
        )?
        .execute(params![received_at.div_euclid(DAY_MS), m.kind, m.class.as_str(), received_at])?;
        let source = m.source.map(|ip| ip.to_string()).unwrap_or_default();
        tx.prepare_cached(
            "INSERT INTO malformed_samples
                 (slot, seq, kind, class, reason, source, content_type, query, body, body_len, received_at)
             SELECT s % ?1, s, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10
             FROM (SELECT COALESCE(MAX(seq), 0) + 1 AS s FROM malformed_samples) WHERE true
             ON CONFLICT (slot) DO UPDATE SET
                 seq = excluded.seq, kind = excluded.kind, class = excluded.class, reason = excluded.reason,
                 source = excluded.source, content_type = excluded.content_type, query = excluded.query,
                 body = excluded.body, body_len = excluded.body_len, received_at = excluded.received_at",
        )?
        .execute(params![
            SAMPLE_SLOTS,
            m.kind,
            m.class.as_str(),
            m.reason,
            source,
            m.content_type,
            m.query,
            m.body,
            i64::try_from(body_len).unwrap_or(i64::MAX),
            received_at,
        ])?;
        tx.commit()?;
        Ok(())
    }

    fn delete_before(&self, cutoff: i64, limit: usize) -> Result<usize, StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let mut deleted = tx
            .prepare_cached(
                "DELETE FROM callbacks WHERE id IN
                     (SELECT id FROM callbacks WHERE received_at < ?1 ORDER BY received_at LIMIT ?2)",
            )?
            .execute(params![cutoff, limit])? as i64;
        if deleted < limit {
            deleted += tx
                .prepare_cached(
                    "DELETE FROM malformed_samples WHERE slot IN
                         (SELECT slot FROM malformed_samples WHERE received_at < ?1 LIMIT ?2)",
                )?
                .execute(params![cutoff, limit - deleted])? as i64;
        }
        if deleted < limit {
            deleted += tx
                .prepare_cached(
                    "DELETE FROM malformed_counts WHERE (day, kind, class) IN
                         (SELECT day, kind, class FROM malformed_counts WHERE day < ?1 LIMIT ?2)",
                )?
                .execute(params![cutoff.div_euclid(DAY_MS), limit - deleted])? as i64;
        }
        tx.commit()?;
        Ok(deleted as usize)
    }

    fn callbacks(&self) -> Result<Vec<StoredCallback>, StoreError> {
        let conn = self.conn();
        let mut stmt =
            conn.prepare("SELECT kind, query, body, error, received_at, deliveries FROM callbacks ORDER BY id")?;
        let rows = stmt.query_map([], |r| {
            Ok(StoredCallback {
                kind: r.get(0)?,
                query: r.get(1)?,
                body: r.get(2)?,
                error: r.get(3)?,
                received_at: r.get(4)?,
                deliveries: r.get(5)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn malformed_counts(&self) -> Result<Vec<MalformedCount>, StoreError> {
        let conn = self.conn();
        let mut stmt =
            conn.prepare("SELECT day, kind, class, count, last_at FROM malformed_counts ORDER BY day, kind, class")?;
        let rows = stmt.query_map([], |r| {
            Ok(MalformedCount { day: r.get(0)?, kind: r.get(1)?, class: r.get(2)?, count: r.get(3)?, last_at: r.get(4)? })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn malformed_samples(&self) -> Result<Vec<MalformedSample>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare(
            "SELECT seq, kind, class, reason, source, content_type, query, body, body_len, received_at
             FROM malformed_samples ORDER BY seq",
        )?;
        let rows = stmt.query_map([], |r| {
            Ok(MalformedSample {
                seq: r.get(0)?,
                kind: r.get(1)?,
                class: r.get(2)?,
                reason: r.get(3)?,
                source: r.get(4)?,
                content_type: r.get(5)?,
                query: r.get(6)?,
                body: r.get(7)?,
                body_len: r.get(8)?,
                received_at: r.get(9)?,
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }
}
