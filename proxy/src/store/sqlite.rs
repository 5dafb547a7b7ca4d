//! The SQLite backend of the callback store: one file, WAL, `synchronous=FULL`.
//!
//! Tables:
//! - `callbacks(id, kind, dedup_key UNIQUE, query, body, error, received_at, deliveries)`: the
//!   well-formed deliveries (`error` is kept empty; older databases may hold malformed rows);
//! - `malformed_counts(day, kind, class, count, last_at)`, primary key (day, kind, class);
//! - `malformed_samples(slot, seq, kind, class, reason, source, content_type, query, body,
//!   body_len, received_at)`, `slot` = `seq % SAMPLE_SLOTS`;
//! - `outbox(id, state, attempts, next_at, enqueued_at, owner, locked_until, claims, last_error,
//!   payload, finished_at)`, `id` = `callbacks.id` (see [`CallbackBackend`] for the contract). One
//!   connection behind a mutex: every claim is an `IMMEDIATE` transaction, so leases never overlap.
//! - `meta(name, value)`: facts about the database itself (`sigs_required_since`).
//! - `unsigned_tokens(token, stored)`: deliveries stored per flow token through a callback URL
//!   without `sig` ([`super::UNSIGNED_PER_TOKEN`]).
//!
//! The schema is created with `IF NOT EXISTS`; a column added later is added to an older file when
//! it opens ([`upgrade`]).

use std::path::Path;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use rusqlite::{params, Connection, TransactionBehavior};

use rusqlite::{OptionalExtension, Row};

use super::{
    CallbackBackend, Delivery, Malformed, MalformedCount, MalformedSample, OutboxCounts, OutboxEntry, OutboxFilter,
    OutboxState, Recorded, StoreError, StoredCallback, DAY_MS, SAMPLE_SLOTS, UNSIGNED_PER_TOKEN,
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
CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY,
    state TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_at INTEGER NOT NULL,
    enqueued_at INTEGER NOT NULL,
    owner TEXT NOT NULL DEFAULT '',
    locked_until INTEGER NOT NULL DEFAULT 0,
    claims INTEGER NOT NULL DEFAULT 0,
    last_error TEXT NOT NULL DEFAULT '',
    payload TEXT,
    finished_at INTEGER
);
CREATE INDEX IF NOT EXISTS outbox_due ON outbox (next_at) WHERE state = 'pending';
CREATE INDEX IF NOT EXISTS outbox_state ON outbox (state, id);
CREATE TABLE IF NOT EXISTS meta (
    name TEXT PRIMARY KEY,
    value INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS unsigned_tokens (
    token TEXT PRIMARY KEY,
    stored INTEGER NOT NULL
) WITHOUT ROWID;
";

/// The retention sweep's condition on `callbacks c LEFT JOIN outbox o` (`?1`: the cutoff): no
/// outbox entry, or a finished one — delivered, or parked as dead before the cutoff (a dead entry
/// stays a whole retention period after it was parked, for `replay`). A `pending` entry (leased or
/// not) is never swept: that would lose a callback the backend has not had.
const FINISHED_BEFORE: &str = "(o.id IS NULL OR o.state = 'delivered'
     OR (o.state = 'dead' AND o.finished_at < ?1))";

/// The columns of an [`OutboxEntry`], from `outbox o JOIN callbacks c USING (id)`.
const ENTRY_COLUMNS: &str = "o.id, c.dedup_key, c.kind, c.query, c.body, c.received_at, c.deliveries, o.state,
    o.attempts, o.next_at, o.enqueued_at, o.owner, o.locked_until, o.last_error, o.payload, o.finished_at, o.claims";

fn entry(r: &Row<'_>) -> rusqlite::Result<OutboxEntry> {
    let state: String = r.get(7)?;
    Ok(OutboxEntry {
        id: r.get(0)?,
        dedup_key: r.get(1)?,
        kind: r.get(2)?,
        query: r.get(3)?,
        body: r.get(4)?,
        received_at: r.get(5)?,
        deliveries: r.get(6)?,
        state: OutboxState::parse(&state).ok_or_else(|| {
            rusqlite::Error::FromSqlConversionFailure(7, rusqlite::types::Type::Text, format!("outbox state {state:?}").into())
        })?,
        attempts: r.get(8)?,
        next_at: r.get(9)?,
        enqueued_at: r.get(10)?,
        owner: r.get(11)?,
        locked_until: r.get(12)?,
        last_error: r.get(13)?,
        payload: r.get(14)?,
        finished_at: r.get(15)?,
        claim: r.get(16)?,
    })
}

/// Brings a file made by an older version up to [`SCHEMA`]: `outbox.claims` (the lease's claim
/// number) came after the outbox itself. One `IMMEDIATE` transaction, so two processes opening
/// one old file do not both add it.
fn upgrade(conn: &mut Connection) -> Result<(), StoreError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let has_claims: bool =
        tx.query_row("SELECT COUNT(*) > 0 FROM pragma_table_info('outbox') WHERE name = 'claims'", [], |r| r.get(0))?;
    if !has_claims {
        tx.execute_batch("ALTER TABLE outbox ADD COLUMN claims INTEGER NOT NULL DEFAULT 0")?;
    }
    tx.commit()?;
    Ok(())
}

/// The callback store in one SQLite file.
pub struct SqliteBackend {
    conn: Mutex<Connection>,
}

impl SqliteBackend {
    /// Opens (creating if needed) the database at `path` in WAL mode, `synchronous=FULL`.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let mut conn = Connection::open(path)?;
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "FULL")?;
        conn.busy_timeout(Duration::from_secs(5))?;
        conn.execute_batch(SCHEMA)?;
        upgrade(&mut conn)?;
        Ok(Self { conn: Mutex::new(conn) })
    }

    fn conn(&self) -> MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl CallbackBackend for SqliteBackend {
    fn record(&self, d: &Delivery<'_>) -> Result<Recorded, StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let (id, deliveries): (i64, i64) = tx
            .prepare_cached(
                "INSERT INTO callbacks (kind, dedup_key, query, body, error, received_at)
                 VALUES (?1, ?2, ?3, ?4, '', ?5)
                 ON CONFLICT (dedup_key) DO UPDATE SET deliveries = deliveries + 1
                 RETURNING id, deliveries",
            )?
            .query_row(params![d.kind, d.dedup_key, d.query, d.body, d.received_at], |r| Ok((r.get(0)?, r.get(1)?)))?;
        if let (Some(token), 1) = (d.unsigned, deliveries) {
            // No row back: the token's cap is reached; dropping `tx` rolls the insert back.
            let counted: Option<i64> = tx
                .prepare_cached(
                    "INSERT INTO unsigned_tokens (token, stored) VALUES (?1, 1)
                     ON CONFLICT (token) DO UPDATE SET stored = stored + 1 WHERE stored < ?2
                     RETURNING stored",
                )?
                .query_row(params![token, UNSIGNED_PER_TOKEN], |r| r.get(0))
                .optional()?;
            if counted.is_none() {
                return Ok(Recorded::OverCap);
            }
        }
        if d.forward {
            tx.prepare_cached(
                "INSERT INTO outbox (id, state, next_at, enqueued_at) VALUES (?1, 'pending', ?2, ?2)
                 ON CONFLICT (id) DO NOTHING",
            )?
            .execute(params![id, d.received_at])?;
        }
        tx.commit()?;
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
        // The oldest callbacks whose forwarding is finished or was never asked for
        // ([`FINISHED_BEFORE`]), their outbox entries, then them.
        let ids: Vec<i64> = tx
            .prepare_cached(&format!(
                "SELECT c.id FROM callbacks c LEFT JOIN outbox o ON o.id = c.id
                 WHERE c.received_at < ?1 AND {FINISHED_BEFORE} ORDER BY c.received_at LIMIT ?2"
            ))?
            .query_map(params![cutoff, limit], |r| r.get(0))?
            .collect::<Result<_, _>>()?;
        let mut deleted = 0i64;
        {
            let mut outbox = tx.prepare_cached("DELETE FROM outbox WHERE id = ?1")?;
            let mut callbacks = tx.prepare_cached("DELETE FROM callbacks WHERE id = ?1")?;
            for id in ids {
                deleted += (outbox.execute([id])? + callbacks.execute([id])?) as i64;
            }
        }
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

    fn claim_due(&self, now: i64, limit: usize, owner: &str, lease_ms: i64) -> Result<Vec<OutboxEntry>, StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let ids: Vec<i64> = tx
            .prepare_cached(
                "UPDATE outbox SET owner = ?1, locked_until = ?2, claims = claims + 1 WHERE id IN
                     (SELECT id FROM outbox WHERE state = 'pending' AND next_at <= ?3 AND locked_until <= ?3
                      ORDER BY next_at, id LIMIT ?4)
                 RETURNING id",
            )?
            .query_map(params![owner, now.saturating_add(lease_ms), now, i64::try_from(limit).unwrap_or(i64::MAX)], |r| {
                r.get(0)
            })?
            .collect::<Result<_, _>>()?;
        let mut entries = Vec::with_capacity(ids.len());
        {
            let mut stmt =
                tx.prepare_cached(&format!("SELECT {ENTRY_COLUMNS} FROM outbox o JOIN callbacks c USING (id) WHERE o.id = ?1"))?;
            for id in ids {
                entries.push(stmt.query_row([id], entry)?);
            }
        }
        tx.commit()?;
        entries.sort_by_key(|e| (e.next_at, e.id));
        Ok(entries)
    }

    fn renew_lease(&self, id: i64, owner: &str, claim: i64, now: i64, lease_ms: i64, payload: &str) -> Result<Option<String>, StoreError> {
        Ok(self
            .conn()
            .prepare_cached(
                "UPDATE outbox SET locked_until = ?4, payload = COALESCE(payload, ?5)
                 WHERE id = ?1 AND state = 'pending' AND owner = ?2 AND claims = ?3
                 RETURNING payload",
            )?
            .query_row(params![id, owner, claim, now.saturating_add(lease_ms), payload], |r| r.get(0))
            .optional()?)
    }

    fn mark_delivered(&self, id: i64, at: i64) -> Result<bool, StoreError> {
        let changed = self
            .conn()
            .prepare_cached(
                "UPDATE outbox SET state = 'delivered', finished_at = ?2, attempts = attempts + 1, owner = '',
                     locked_until = 0
                 WHERE id = ?1 AND (state = 'pending' OR (state = 'dead' AND substr(last_error, 1, length(?3)) = ?3))",
            )?
            .execute(params![id, at, crate::store::ABANDONED])?;
        Ok(changed == 1)
    }

    fn mark_failed(&self, id: i64, owner: &str, claim: i64, next_at: i64, error: &str) -> Result<bool, StoreError> {
        let changed = self
            .conn()
            .prepare_cached(
                "UPDATE outbox SET attempts = attempts + 1, next_at = ?4, last_error = ?5, owner = '', locked_until = 0
                 WHERE id = ?1 AND state = 'pending' AND owner = ?2 AND claims = ?3",
            )?
            .execute(params![id, owner, claim, next_at, error])?;
        Ok(changed == 1)
    }

    fn park_dead(&self, id: i64, owner: &str, claim: i64, at: i64, error: &str) -> Result<bool, StoreError> {
        let changed = self
            .conn()
            .prepare_cached(
                "UPDATE outbox SET state = 'dead', attempts = attempts + 1, finished_at = ?4, last_error = ?5,
                     owner = '', locked_until = 0
                 WHERE id = ?1 AND state = 'pending' AND owner = ?2 AND claims = ?3",
            )?
            .execute(params![id, owner, claim, at, error])?;
        Ok(changed == 1)
    }

    fn release(&self, owner: &str) -> Result<usize, StoreError> {
        Ok(self
            .conn()
            .prepare_cached("UPDATE outbox SET owner = '', locked_until = 0 WHERE owner = ?1 AND state = 'pending'")?
            .execute([owner])?)
    }

    fn replay(&self, id: i64, now: i64) -> Result<bool, StoreError> {
        let changed = self
            .conn()
            .prepare_cached(
                "INSERT INTO outbox (id, state, next_at, enqueued_at) SELECT id, 'pending', ?2, ?2 FROM callbacks WHERE id = ?1
                 ON CONFLICT (id) DO UPDATE SET state = 'pending', attempts = 0, next_at = ?2, enqueued_at = ?2,
                     owner = '', locked_until = 0, finished_at = NULL",
            )?
            .execute(params![id, now])?;
        Ok(changed == 1)
    }

    fn replay_dead(&self, now: i64) -> Result<usize, StoreError> {
        Ok(self
            .conn()
            .prepare_cached(
                "UPDATE outbox SET state = 'pending', attempts = 0, next_at = ?1, enqueued_at = ?1, owner = '',
                     locked_until = 0, finished_at = NULL
                 WHERE state = 'dead'",
            )?
            .execute([now])?)
    }

    fn abandon(&self, id: Option<i64>, now: i64, limit: usize) -> Result<usize, StoreError> {
        Ok(self
            .conn()
            .prepare_cached(
                "UPDATE outbox SET state = 'dead', finished_at = ?2, owner = '', locked_until = 0,
                     last_error = CASE WHEN substr(last_error, 1, length(?3)) = ?3 THEN last_error
                                       WHEN last_error = '' THEN ?3 ELSE ?3 || '; last error: ' || last_error END
                 WHERE id IN (SELECT id FROM outbox WHERE state = 'pending' AND locked_until <= ?2 - ?4
                                  AND (?1 IS NULL OR id = ?1) ORDER BY id LIMIT ?5)",
            )?
            .execute(params![id, now, crate::store::ABANDONED, crate::store::ABANDON_GRACE_MS, i64::try_from(limit).unwrap_or(i64::MAX)])?)
    }

    fn outbox_list(&self, filter: OutboxFilter, after_id: i64, limit: usize) -> Result<Vec<OutboxEntry>, StoreError> {
        let conn = self.conn();
        let state = match filter {
            OutboxFilter::All => None,
            OutboxFilter::State(state) => Some(state.as_str()),
        };
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT {ENTRY_COLUMNS} FROM outbox o JOIN callbacks c USING (id)
             WHERE o.id > ?1 AND (?2 IS NULL OR o.state = ?2) ORDER BY o.id LIMIT ?3"
        ))?;
        let rows = stmt.query_map(params![after_id, state, i64::try_from(limit).unwrap_or(i64::MAX)], entry)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn outbox_get(&self, id: i64) -> Result<Option<OutboxEntry>, StoreError> {
        let conn = self.conn();
        let mut stmt =
            conn.prepare_cached(&format!("SELECT {ENTRY_COLUMNS} FROM outbox o JOIN callbacks c USING (id) WHERE o.id = ?1"))?;
        Ok(stmt.query_row([id], entry).optional()?)
    }

    fn outbox_counts(&self) -> Result<OutboxCounts, StoreError> {
        let conn = self.conn();
        let mut counts = OutboxCounts::default();
        let mut stmt = conn.prepare_cached("SELECT state, COUNT(*) FROM outbox GROUP BY state")?;
        let mut rows = stmt.query([])?;
        while let Some(row) = rows.next()? {
            let n: i64 = row.get(1)?;
            match OutboxState::parse(&row.get::<_, String>(0)?) {
                Some(OutboxState::Pending) => counts.pending = n,
                Some(OutboxState::Delivered) => counts.delivered = n,
                Some(OutboxState::Dead) => counts.dead = n,
                None => {}
            }
        }
        counts.unqueued = conn
            .prepare_cached("SELECT COUNT(*) FROM callbacks c WHERE NOT EXISTS (SELECT 1 FROM outbox o WHERE o.id = c.id)")?
            .query_row([], |r| r.get(0))?;
        Ok(counts)
    }

    fn next_due(&self) -> Result<Option<i64>, StoreError> {
        Ok(self
            .conn()
            .prepare_cached("SELECT MIN(MAX(next_at, locked_until)) FROM outbox WHERE state = 'pending'")?
            .query_row([], |r| r.get(0))?)
    }

    fn require_sigs(&self, now: i64) -> Result<i64, StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        tx.execute("INSERT INTO meta (name, value) VALUES ('sigs_required_since', ?1) ON CONFLICT (name) DO NOTHING", [now])?;
        let since = tx.query_row("SELECT value FROM meta WHERE name = 'sigs_required_since'", [], |r| r.get(0))?;
        tx.commit()?;
        Ok(since)
    }

    fn sigs_required_since(&self) -> Result<Option<i64>, StoreError> {
        Ok(self
            .conn()
            .prepare_cached("SELECT value FROM meta WHERE name = 'sigs_required_since'")?
            .query_row([], |r| r.get(0))
            .optional()?)
    }

    fn set_sigs_required_since(&self, at: i64) -> Result<Option<i64>, StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let before = tx.query_row("SELECT value FROM meta WHERE name = 'sigs_required_since'", [], |r| r.get(0)).optional()?;
        tx.execute(
            "INSERT INTO meta (name, value) VALUES ('sigs_required_since', ?1) ON CONFLICT (name) DO UPDATE SET value = excluded.value",
            [at],
        )?;
        tx.commit()?;
        Ok(before)
    }

    fn clear_unsigned_tokens(&self, limit: usize) -> Result<usize, StoreError> {
        Ok(self
            .conn()
            .prepare_cached("DELETE FROM unsigned_tokens WHERE token IN (SELECT token FROM unsigned_tokens LIMIT ?1)")?
            .execute([i64::try_from(limit).unwrap_or(i64::MAX)])?)
    }

    fn defer(&self, id: i64, owner: &str, claim: i64, next_at: i64, error: &str) -> Result<bool, StoreError> {
        let changed = self
            .conn()
            .prepare_cached(
                "UPDATE outbox SET next_at = ?4, last_error = ?5, owner = '', locked_until = 0
                 WHERE id = ?1 AND state = 'pending' AND owner = ?2 AND claims = ?3",
            )?
            .execute(params![id, owner, claim, next_at, error])?;
        Ok(changed == 1)
    }
}
