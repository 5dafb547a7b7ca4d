//! The PostgreSQL backend of the callback store (`QYS_DATABASE=postgres://…`): any number of
//! proxy instances share one database.
//!
//! - **Driver**: `tokio-postgres` (the rust-postgres client: no build-time database, no macros)
//!   with a `deadpool-postgres` pool of [`POOL_SIZE`] connections. The backend owns a small tokio
//!   runtime ([`WORKER_THREADS`] threads) that drives the connections; each blocking
//!   [`CallbackBackend`] method spawns its queries there and waits on a channel, so it may be
//!   called from any thread, an async worker included (it blocks that thread like SQLite's mutex
//!   does), and never panics for want of a runtime. Every call gives up after [`OP_TIMEOUT`]
//!   (a receiver then answers 500 and the platform retries).
//! - **Schema**: the SQL files under `proxy/migrations/postgres/`, applied when the backend
//!   opens, under an advisory lock ([`migrate`]): several instances may start at once on an
//!   empty database.
//! - **Same rules as SQLite**: dedup by `dedup_key` (`INSERT … ON CONFLICT (dedup_key) DO UPDATE
//!   SET deliveries = deliveries + 1`, one statement with the outbox insert, so a retry racing
//!   its first delivery on another instance is counted, not stored twice); malformed counters
//!   per (day, kind, class) and a ring of 100 samples; retention in batches. Differences: bodies
//!   are `BYTEA` (a form body may hold NUL, which `TEXT` refuses); the samples' `seq` comes from a
//!   sequence (instances count concurrently), so after the retention sweep empties the ring the
//!   numbering goes on rather than restarting at 1; NUL in other text (an error message) is
//!   stored as U+FFFD; the retention sweep skips rows another instance is sweeping (`SKIP LOCKED`).
//! - **Outbox**: forwarders claim due entries with `UPDATE … FROM (SELECT … FOR UPDATE SKIP
//!   LOCKED)`: concurrent claims from any number of instances never return one entry twice, and
//!   the lease they set keeps it from being claimed again until it expires. Times are the
//!   callers' (each instance's clock): keep the instances' clocks in sync (NTP); the lease must
//!   exceed a forward attempt's timeout plus the clock skew.

pub mod migrate;

use std::borrow::Cow;
use std::fmt;
use std::future::Future;
use std::str::FromStr;
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Object, Pool, PoolError, RecyclingMethod, Runtime};
use tokio_postgres::{NoTls, Row};

pub use migrate::{migrate, Migrated, MIGRATIONS};

use super::{
    CallbackBackend, Delivery, Malformed, MalformedCount, MalformedSample, OutboxCounts, OutboxEntry, OutboxFilter,
    OutboxState, Recorded, StoreError, StoredCallback, DAY_MS, SAMPLE_SLOTS, UNSIGNED_PER_TOKEN,
};

/// Connections per instance. Receivers and the forwarder wait for one at most [`POOL_WAIT`].
pub const POOL_SIZE: usize = 16;
/// How long a call waits for a free connection.
pub const POOL_WAIT: Duration = Duration::from_secs(5);
/// Connect timeout, unless the URL sets `connect_timeout`.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest a backend call may take, waiting for a connection included.
pub const OP_TIMEOUT: Duration = Duration::from_secs(15);
/// Longest the start-up migration may take (it may wait for another instance's).
pub const MIGRATE_TIMEOUT: Duration = Duration::from_secs(120);
/// Threads of the backend's runtime, which only moves bytes between the pool and the sockets.
pub const WORKER_THREADS: usize = 2;

/// A `postgres://` or `postgresql://` URL (libpq's URI form), parsed. Shown (`Display`, `Debug`)
/// without its password.
#[derive(Clone)]
pub struct PgUrl {
    config: tokio_postgres::Config,
    shown: String,
}

impl PgUrl {
    /// Whether `s` names PostgreSQL rather than a file (it starts with `postgres://` or
    /// `postgresql://`, in any case).
    pub fn is_postgres(s: &str) -> bool {
        let lower = s.get(..13).unwrap_or(s).to_ascii_lowercase();
        lower.starts_with("postgres://") || lower.starts_with("postgresql://")
    }

    /// Parses a URL such as `postgres://qys:secret@db.internal:5432/qys?connect_timeout=5`.
    /// The error never quotes the URL (it may hold a password).
    pub fn parse(s: &str) -> Result<Self, String> {
        if !Self::is_postgres(s) {
            return Err("a PostgreSQL URL starts with postgres:// or postgresql://".into());
        }
        // tokio-postgres wants the scheme in lower case.
        let (_, rest) = s.split_once("://").unwrap_or((s, ""));
        let mut config = tokio_postgres::Config::from_str(&format!("postgresql://{rest}"))
            .map_err(|e| format!("not a valid PostgreSQL URL: {}", describe(&e)))?;
        if config.get_hosts().is_empty() {
            return Err("the PostgreSQL URL names no host".into());
        }
        if config.get_application_name().is_none() {
            config.application_name("qys-proxy");
        }
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(CONNECT_TIMEOUT);
        }
        let hosts: Vec<String> = config
            .get_hosts()
            .iter()
            .map(|h| match h {
                tokio_postgres::config::Host::Tcp(name) => name.clone(),
                #[cfg(unix)]
                tokio_postgres::config::Host::Unix(path) => path.display().to_string(),
            })
            .collect();
        let ports: Vec<String> = config.get_ports().iter().map(u16::to_string).collect();
        let shown = format!(
            "postgres://{}{}{}{}/{}",
            config.get_user().map(|u| format!("{u}@")).unwrap_or_default(),
            hosts.join(","),
            if ports.is_empty() { "" } else { ":" },
            ports.join(","),
            config.get_dbname().unwrap_or(""),
        );
        Ok(Self { config, shown })
    }

    /// The parsed connection settings.
    pub fn config(&self) -> &tokio_postgres::Config {
        &self.config
    }
}

impl fmt::Display for PgUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.shown)
    }
}

impl fmt::Debug for PgUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PgUrl({})", self.shown)
    }
}

/// A driver error as one line: its kind, then its causes (the server's message and SQLSTATE).
pub(crate) fn describe(e: &tokio_postgres::Error) -> String {
    if let Some(db) = e.as_db_error() {
        return format!("{} (SQLSTATE {})", db.message(), db.code().code());
    }
    let mut text = e.to_string();
    let mut cause = std::error::Error::source(e);
    while let Some(c) = cause {
        text.push_str(": ");
        text.push_str(&c.to_string());
        cause = c.source();
    }
    text
}

impl From<tokio_postgres::Error> for StoreError {
    fn from(e: tokio_postgres::Error) -> Self {
        Self::new(format!("PostgreSQL: {}", describe(&e)))
    }
}

impl From<PoolError> for StoreError {
    fn from(e: PoolError) -> Self {
        match e {
            PoolError::Backend(e) => e.into(),
            PoolError::Timeout(_) => Self::new(format!("PostgreSQL: no free connection within {POOL_WAIT:?}")),
            other => Self::new(format!("PostgreSQL pool: {other}")),
        }
    }
}

/// The callback store in a PostgreSQL database shared by any number of instances.
pub struct PostgresBackend {
    pool: Pool,
    /// Taken by `Drop` (shut down without blocking: the last handle may go in an async task).
    rt: Option<tokio::runtime::Runtime>,
    url: PgUrl,
}

impl fmt::Debug for PostgresBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PostgresBackend").field("url", &self.url).finish_non_exhaustive()
    }
}

impl Drop for PostgresBackend {
    fn drop(&mut self) {
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
    }
}

impl PostgresBackend {
    /// Connects to `url` and brings the schema up to date ([`migrate`]). Fails when the database
    /// cannot be reached or migrated.
    pub fn open(url: &PgUrl) -> Result<Self, StoreError> {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(WORKER_THREADS)
            .thread_name("qys-postgres")
            .enable_all()
            .build()
            .map_err(|e| StoreError::new(format!("cannot start the PostgreSQL runtime: {e}")))?;
        let manager = Manager::from_config(
            url.config.clone(),
            NoTls,
            ManagerConfig { recycling_method: RecyclingMethod::Fast },
        );
        let pool = Pool::builder(manager)
            .max_size(POOL_SIZE)
            .runtime(Runtime::Tokio1)
            .wait_timeout(Some(POOL_WAIT))
            .create_timeout(Some(url.config.get_connect_timeout().copied().unwrap_or(CONNECT_TIMEOUT)))
            .recycle_timeout(Some(POOL_WAIT))
            .build()
            .map_err(|e| StoreError::new(format!("cannot build the PostgreSQL pool: {e}")))?;
        let backend = Self { pool, rt: Some(rt), url: url.clone() };
        let migrated = backend.run(MIGRATE_TIMEOUT, |mut client| async move { migrate(&mut client).await })?;
        if !migrated.applied.is_empty() {
            tracing::info!(database = %url, applied = ?migrated.applied, "PostgreSQL schema migrated");
        }
        if !migrated.unknown.is_empty() {
            tracing::warn!(
                database = %url,
                unknown = ?migrated.unknown,
                "the database has migrations this binary does not know (a newer version applied them); carrying on"
            );
        }
        Ok(backend)
    }

    /// The URL it was opened with (no password).
    pub fn url(&self) -> &PgUrl {
        &self.url
    }

    /// Runs `f` with a pooled connection on the backend's runtime and waits for its result, at
    /// most `timeout`.
    fn run<T, F, Fut>(&self, timeout: Duration, f: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(Object) -> Fut + Send + 'static,
        Fut: Future<Output = Result<T, StoreError>> + Send,
    {
        let Some(rt) = &self.rt else { return Err(StoreError::new("the PostgreSQL backend is closed")) };
        let pool = self.pool.clone();
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        rt.spawn(async move {
            let work = async move { f(pool.get().await?).await };
            let result = tokio::time::timeout(timeout, work)
                .await
                .unwrap_or_else(|_| Err(StoreError::new(format!("PostgreSQL: no answer within {timeout:?}"))));
            let _ = tx.send(result);
        });
        rx.recv().unwrap_or_else(|_| Err(StoreError::new("PostgreSQL: the call was dropped")))
    }
}

/// `s` with NUL (which PostgreSQL's `TEXT` refuses) replaced by U+FFFD.
fn text(s: &str) -> Cow<'_, str> {
    if s.contains('\0') {
        Cow::Owned(s.replace('\0', "\u{FFFD}"))
    } else {
        Cow::Borrowed(s)
    }
}

fn limit_i64(limit: usize) -> i64 {
    i64::try_from(limit).unwrap_or(i64::MAX)
}

/// The columns [`entry`] reads: outbox `o` joined with its callback `c`.
const ENTRY_COLUMNS: &str = "o.id, c.dedup_key, c.kind, c.query, c.body, c.received_at, c.deliveries, o.state, \
     o.attempts, o.next_at, o.enqueued_at, o.owner, o.locked_until, o.last_error, o.payload, o.finished_at, o.claims";

fn entry(r: &Row) -> Result<OutboxEntry, StoreError> {
    let state: String = r.try_get(7)?;
    Ok(OutboxEntry {
        id: r.try_get(0)?,
        dedup_key: r.try_get(1)?,
        kind: r.try_get(2)?,
        query: r.try_get(3)?,
        body: String::from_utf8_lossy(r.try_get::<_, &[u8]>(4)?).into_owned(),
        received_at: r.try_get(5)?,
        deliveries: r.try_get(6)?,
        state: OutboxState::parse(&state).ok_or_else(|| StoreError::new(format!("outbox state {state:?}")))?,
        attempts: r.try_get(8)?,
        next_at: r.try_get(9)?,
        enqueued_at: r.try_get(10)?,
        owner: r.try_get(11)?,
        locked_until: r.try_get(12)?,
        last_error: r.try_get(13)?,
        payload: r.try_get(14)?,
        finished_at: r.try_get(15)?,
        claim: r.try_get(16)?,
    })
}

impl CallbackBackend for PostgresBackend {
    fn record(&self, d: &Delivery<'_>) -> Result<Recorded, StoreError> {
        let (kind, key, query) = (d.kind.to_owned(), d.dedup_key.to_owned(), text(d.query).into_owned());
        let (body, at, forward) = (d.body.as_bytes().to_vec(), d.received_at, d.forward);
        let unsigned = d.unsigned.map(str::to_owned);
        self.run(OP_TIMEOUT, move |mut c| async move {
            // One statement: the callback and its outbox entry.
            const RECORD: &str = "WITH c AS (
                     INSERT INTO callbacks (kind, dedup_key, query, body, received_at) VALUES ($1, $2, $3, $4, $5)
                     ON CONFLICT (dedup_key) DO UPDATE SET deliveries = callbacks.deliveries + 1
                     RETURNING id, deliveries
                 ), o AS (
                     INSERT INTO outbox (id, state, next_at, enqueued_at)
                     SELECT id, 'pending', $5, $5 FROM c WHERE $6
                     ON CONFLICT (id) DO NOTHING
                 )
                 SELECT deliveries FROM c";
            let params: [&(dyn tokio_postgres::types::ToSql + Sync); 6] = [&kind, &key, &query, &body, &at, &forward];
            let Some(token) = unsigned else {
                let st = c.prepare_cached(RECORD).await?;
                let deliveries: i64 = c.query_one(&st, &params).await?.try_get(0)?;
                return Ok(if deliveries == 1 { Recorded::New } else { Recorded::Retry });
            };
            // Without `sig`: the token's count in the same transaction, after the insert, so a
            // concurrent identical delivery waits on the insert and becomes a retry, uncounted.
            let tx = c.transaction().await?;
            let st = tx.prepare_cached(RECORD).await?;
            let deliveries: i64 = tx.query_one(&st, &params).await?.try_get(0)?;
            if deliveries == 1 {
                let st = tx
                    .prepare_cached(
                        "INSERT INTO unsigned_tokens (token, stored) VALUES ($1, 1)
                         ON CONFLICT (token) DO UPDATE SET stored = unsigned_tokens.stored + 1
                         WHERE unsigned_tokens.stored < $2
                         RETURNING stored",
                    )
                    .await?;
                if tx.query_opt(&st, &[&token, &UNSIGNED_PER_TOKEN]).await?.is_none() {
                    tx.rollback().await?;
                    return Ok(Recorded::OverCap);
                }
            }
            tx.commit().await?;
            Ok(if deliveries == 1 { Recorded::New } else { Recorded::Retry })
        })
    }

    fn count_malformed(&self, m: &Malformed<'_>, body_len: usize, received_at: i64) -> Result<(), StoreError> {
        let (kind, class) = (m.kind.to_owned(), m.class.as_str());
        let reason = text(m.reason).into_owned();
        let source = m.source.map(|ip| ip.to_string()).unwrap_or_default();
        let (content_type, query, body) = (text(m.content_type).into_owned(), text(m.query).into_owned(), m.body.to_vec());
        let body_len = i64::try_from(body_len).unwrap_or(i64::MAX);
        self.run(OP_TIMEOUT, move |c| async move {
            // The counter and the sample in one statement (one transaction). The sample takes
            // the next number of the sequence; a slow writer never overwrites a newer sample.
            let st = c
                .prepare_cached(
                    "WITH counted AS (
                         INSERT INTO malformed_counts (day, kind, class, count, last_at) VALUES ($1, $2, $3, 1, $4)
                         ON CONFLICT (day, kind, class) DO UPDATE
                             SET count = malformed_counts.count + 1,
                                 last_at = GREATEST(malformed_counts.last_at, excluded.last_at)
                     ), n AS (SELECT nextval('malformed_seq') AS s)
                     INSERT INTO malformed_samples
                         (slot, seq, kind, class, reason, source, content_type, query, body, body_len, received_at)
                     SELECT n.s % $5, n.s, $2, $3, $6, $7, $8, $9, $10, $11, $4 FROM n
                     ON CONFLICT (slot) DO UPDATE SET
                         seq = excluded.seq, kind = excluded.kind, class = excluded.class, reason = excluded.reason,
                         source = excluded.source, content_type = excluded.content_type, query = excluded.query,
                         body = excluded.body, body_len = excluded.body_len, received_at = excluded.received_at
                     WHERE malformed_samples.seq < excluded.seq",
                )
                .await?;
            let day = received_at.div_euclid(DAY_MS);
            c.execute(
                &st,
                &[&day, &kind, &class, &received_at, &SAMPLE_SLOTS, &reason, &source, &content_type, &query, &body, &body_len],
            )
            .await?;
            Ok(())
        })
    }

    fn delete_before(&self, cutoff: i64, limit: usize) -> Result<usize, StoreError> {
        let limit = limit_i64(limit);
        self.run(OP_TIMEOUT, move |mut c| async move {
            let tx = c.transaction().await?;
            // The oldest callbacks no other sweeper holds whose forwarding is finished or was
            // never asked for (the rule of the SQLite backend's `FINISHED_BEFORE`: a pending
            // entry is never swept; a dead one a retention period after it was parked), their
            // outbox entries, then them. The row lock on the callback keeps a concurrent
            // `replay` from creating an entry for it meanwhile (its foreign key check waits);
            // one that re-queues an existing entry is seen by the outbox DELETE, which checks
            // the state again on the row as updated (READ COMMITTED), and the callback then
            // stays (`NOT EXISTS`).
            let st = tx
                .prepare_cached(
                    "SELECT c.id FROM callbacks c LEFT JOIN outbox o ON o.id = c.id
                     WHERE c.received_at < $1
                       AND (o.id IS NULL OR o.state = 'delivered'
                            OR (o.state = 'dead' AND o.finished_at < $1))
                     ORDER BY c.received_at LIMIT $2
                     FOR UPDATE OF c SKIP LOCKED",
                )
                .await?;
            let ids: Vec<i64> = tx.query(&st, &[&cutoff, &limit]).await?.iter().map(|r| r.get(0)).collect();
            let mut deleted = 0i64;
            if !ids.is_empty() {
                let st = tx
                    .prepare_cached(
                        "DELETE FROM outbox WHERE id = ANY($1)
                           AND (state = 'delivered' OR (state = 'dead' AND finished_at < $2))",
                    )
                    .await?;
                deleted += tx.execute(&st, &[&ids, &cutoff]).await? as i64;
                let st = tx
                    .prepare_cached(
                        "DELETE FROM callbacks c WHERE id = ANY($1)
                           AND NOT EXISTS (SELECT 1 FROM outbox o WHERE o.id = c.id)",
                    )
                    .await?;
                deleted += tx.execute(&st, &[&ids]).await? as i64;
            }
            if deleted < limit {
                let st = tx
                    .prepare_cached(
                        "DELETE FROM malformed_samples WHERE slot IN
                             (SELECT slot FROM malformed_samples WHERE received_at < $1 LIMIT $2 FOR UPDATE SKIP LOCKED)",
                    )
                    .await?;
                deleted += tx.execute(&st, &[&cutoff, &(limit - deleted)]).await? as i64;
            }
            if deleted < limit {
                let st = tx
                    .prepare_cached(
                        "DELETE FROM malformed_counts WHERE (day, kind, class) IN
                             (SELECT day, kind, class FROM malformed_counts WHERE day < $1 LIMIT $2 FOR UPDATE SKIP LOCKED)",
                    )
                    .await?;
                deleted += tx.execute(&st, &[&cutoff.div_euclid(DAY_MS), &(limit - deleted)]).await? as i64;
            }
            tx.commit().await?;
            Ok(deleted as usize)
        })
    }

    fn callbacks(&self) -> Result<Vec<StoredCallback>, StoreError> {
        self.run(OP_TIMEOUT, |c| async move {
            let rows =
                c.query("SELECT kind, query, body, received_at, deliveries FROM callbacks ORDER BY id", &[]).await?;
            rows.iter()
                .map(|r| {
                    Ok(StoredCallback {
                        kind: r.try_get(0)?,
                        query: r.try_get(1)?,
                        body: String::from_utf8_lossy(r.try_get::<_, &[u8]>(2)?).into_owned(),
                        error: String::new(),
                        received_at: r.try_get(3)?,
                        deliveries: r.try_get(4)?,
                    })
                })
                .collect()
        })
    }

    fn malformed_counts(&self) -> Result<Vec<MalformedCount>, StoreError> {
        self.run(OP_TIMEOUT, |c| async move {
            let rows = c
                .query("SELECT day, kind, class, count, last_at FROM malformed_counts ORDER BY day, kind, class", &[])
                .await?;
            rows.iter()
                .map(|r| {
                    Ok(MalformedCount {
                        day: r.try_get(0)?,
                        kind: r.try_get(1)?,
                        class: r.try_get(2)?,
                        count: r.try_get(3)?,
                        last_at: r.try_get(4)?,
                    })
                })
                .collect()
        })
    }

    fn malformed_samples(&self) -> Result<Vec<MalformedSample>, StoreError> {
        self.run(OP_TIMEOUT, |c| async move {
            let rows = c
                .query(
                    "SELECT seq, kind, class, reason, source, content_type, query, body, body_len, received_at
                     FROM malformed_samples ORDER BY seq",
                    &[],
                )
                .await?;
            rows.iter()
                .map(|r| {
                    Ok(MalformedSample {
                        seq: r.try_get(0)?,
                        kind: r.try_get(1)?,
                        class: r.try_get(2)?,
                        reason: r.try_get(3)?,
                        source: r.try_get(4)?,
                        content_type: r.try_get(5)?,
                        query: r.try_get(6)?,
                        body: r.try_get(7)?,
                        body_len: r.try_get(8)?,
                        received_at: r.try_get(9)?,
                    })
                })
                .collect()
        })
    }

    fn claim_due(&self, now: i64, limit: usize, owner: &str, lease_ms: i64) -> Result<Vec<OutboxEntry>, StoreError> {
        let (owner, until, limit) = (text(owner).into_owned(), now.saturating_add(lease_ms), limit_i64(limit));
        self.run(OP_TIMEOUT, move |c| async move {
            // SKIP LOCKED: entries another instance is claiming right now are passed over, not
            // waited for; a row changed since this statement's snapshot is re-checked against the
            // WHERE (READ COMMITTED), so an entry just leased elsewhere is not taken.
            let st = c
                .prepare_cached(&format!(
                    "UPDATE outbox o SET owner = $1, locked_until = $2, claims = o.claims + 1
                     FROM (SELECT id FROM outbox
                           WHERE state = 'pending' AND next_at <= $3 AND locked_until <= $3
                           ORDER BY next_at, id LIMIT $4
                           FOR UPDATE SKIP LOCKED) due, callbacks c
                     WHERE o.id = due.id AND c.id = o.id
                     RETURNING {ENTRY_COLUMNS}"
                ))
                .await?;
            let rows = c.query(&st, &[&owner, &until, &now, &limit]).await?;
            let mut entries = rows.iter().map(entry).collect::<Result<Vec<_>, _>>()?;
            entries.sort_by_key(|e| (e.next_at, e.id));
            Ok(entries)
        })
    }

    fn renew_lease(&self, id: i64, owner: &str, claim: i64, now: i64, lease_ms: i64, payload: &str) -> Result<Option<String>, StoreError> {
        let (owner, until, payload) = (text(owner).into_owned(), now.saturating_add(lease_ms), text(payload).into_owned());
        self.run(OP_TIMEOUT, move |c| async move {
            // Evaluated on the row as locked: a claim that committed first (by any instance,
            // this one included) changed the owner or the claim number (nothing changes here);
            // one that comes while this holds the row skips it (SKIP LOCKED), and after it sees
            // the renewed lease. COALESCE: two attempts racing on one entry still leave one body.
            let st = c
                .prepare_cached(
                    "UPDATE outbox SET locked_until = $4, payload = COALESCE(payload, $5)
                     WHERE id = $1 AND state = 'pending' AND owner = $2 AND claims = $3
                     RETURNING payload",
                )
                .await?;
            Ok(c.query_opt(&st, &[&id, &owner, &claim, &until, &payload]).await?.map(|row| row.try_get(0)).transpose()?)
        })
    }

    fn mark_delivered(&self, id: i64, at: i64) -> Result<bool, StoreError> {
        self.run(OP_TIMEOUT, move |c| async move {
            let st = c
                .prepare_cached(
                    "UPDATE outbox SET state = 'delivered', finished_at = $2, attempts = attempts + 1, owner = '',
                         locked_until = 0
                     WHERE id = $1 AND (state = 'pending' OR (state = 'dead' AND starts_with(last_error, $3)))",
                )
                .await?;
            Ok(c.execute(&st, &[&id, &at, &crate::store::ABANDONED]).await? == 1)
        })
    }

    fn mark_failed(&self, id: i64, owner: &str, claim: i64, next_at: i64, error: &str) -> Result<bool, StoreError> {
        let (owner, error) = (text(owner).into_owned(), text(error).into_owned());
        self.run(OP_TIMEOUT, move |c| async move {
            let st = c
                .prepare_cached(
                    "UPDATE outbox SET attempts = attempts + 1, next_at = $4, last_error = $5, owner = '', locked_until = 0
                     WHERE id = $1 AND state = 'pending' AND owner = $2 AND claims = $3",
                )
                .await?;
            Ok(c.execute(&st, &[&id, &owner, &claim, &next_at, &error]).await? == 1)
        })
    }

    fn park_dead(&self, id: i64, owner: &str, claim: i64, at: i64, error: &str) -> Result<bool, StoreError> {
        let (owner, error) = (text(owner).into_owned(), text(error).into_owned());
        self.run(OP_TIMEOUT, move |c| async move {
            let st = c
                .prepare_cached(
                    "UPDATE outbox SET state = 'dead', attempts = attempts + 1, finished_at = $4, last_error = $5,
                         owner = '', locked_until = 0
                     WHERE id = $1 AND state = 'pending' AND owner = $2 AND claims = $3",
                )
                .await?;
            Ok(c.execute(&st, &[&id, &owner, &claim, &at, &error]).await? == 1)
        })
    }

    fn release(&self, owner: &str) -> Result<usize, StoreError> {
        let owner = text(owner).into_owned();
        self.run(OP_TIMEOUT, move |c| async move {
            let st = c
                .prepare_cached("UPDATE outbox SET owner = '', locked_until = 0 WHERE owner = $1 AND state = 'pending'")
                .await?;
            Ok(c.execute(&st, &[&owner]).await? as usize)
        })
    }

    fn replay(&self, id: i64, now: i64) -> Result<bool, StoreError> {
        self.run(OP_TIMEOUT, move |c| async move {
            let st = c
                .prepare_cached(
                    "INSERT INTO outbox (id, state, next_at, enqueued_at)
                     SELECT id, 'pending', $2, $2 FROM callbacks WHERE id = $1
                     ON CONFLICT (id) DO UPDATE SET state = 'pending', attempts = 0, next_at = $2, enqueued_at = $2,
                         owner = '', locked_until = 0, finished_at = NULL",
                )
                .await?;
            Ok(c.execute(&st, &[&id, &now]).await? == 1)
        })
    }

    fn replay_dead(&self, now: i64) -> Result<usize, StoreError> {
        self.run(OP_TIMEOUT, move |c| async move {
            let st = c
                .prepare_cached(
                    "UPDATE outbox SET state = 'pending', attempts = 0, next_at = $1, enqueued_at = $1, owner = '',
                         locked_until = 0, finished_at = NULL
                     WHERE state = 'dead'",
                )
                .await?;
            Ok(c.execute(&st, &[&now]).await? as usize)
        })
    }

    fn abandon(&self, id: Option<i64>, now: i64, limit: usize) -> Result<usize, StoreError> {
        let limit = limit_i64(limit);
        self.run(OP_TIMEOUT, move |c| async move {
            // The outer WHERE is checked again on each row as a concurrent claim left it (READ
            // COMMITTED), so an entry leased meanwhile stays pending.
            let st = c
                .prepare_cached(
                    "UPDATE outbox SET state = 'dead', finished_at = $2, owner = '', locked_until = 0,
                         last_error = CASE WHEN starts_with(last_error, $3::TEXT) THEN last_error
                                           WHEN last_error = '' THEN $3::TEXT ELSE $3::TEXT || '; last error: ' || last_error END
                     WHERE state = 'pending' AND locked_until <= $2::BIGINT - $4::BIGINT
                       AND id IN (SELECT id FROM outbox WHERE state = 'pending' AND locked_until <= $2::BIGINT - $4::BIGINT
                                      AND ($1::BIGINT IS NULL OR id = $1) ORDER BY id LIMIT $5)",
                )
                .await?;
            Ok(c.execute(&st, &[&id, &now, &crate::store::ABANDONED, &crate::store::ABANDON_GRACE_MS, &limit]).await? as usize)
        })
    }

    fn outbox_list(&self, filter: OutboxFilter, after_id: i64, limit: usize) -> Result<Vec<OutboxEntry>, StoreError> {
        let state = match filter {
            OutboxFilter::All => None,
            OutboxFilter::State(state) => Some(state.as_str()),
        };
        let limit = limit_i64(limit);
        self.run(OP_TIMEOUT, move |c| async move {
            let st = c
                .prepare_cached(&format!(
                    "SELECT {ENTRY_COLUMNS} FROM outbox o JOIN callbacks c USING (id)
                     WHERE o.id > $1 AND ($2::text IS NULL OR o.state = $2) ORDER BY o.id LIMIT $3"
                ))
                .await?;
            c.query(&st, &[&after_id, &state, &limit]).await?.iter().map(entry).collect()
        })
    }

    fn outbox_get(&self, id: i64) -> Result<Option<OutboxEntry>, StoreError> {
        self.run(OP_TIMEOUT, move |c| async move {
            let st = c
                .prepare_cached(&format!("SELECT {ENTRY_COLUMNS} FROM outbox o JOIN callbacks c USING (id) WHERE o.id = $1"))
                .await?;
            c.query_opt(&st, &[&id]).await?.as_ref().map(entry).transpose()
        })
    }

    fn outbox_counts(&self) -> Result<OutboxCounts, StoreError> {
        self.run(OP_TIMEOUT, |c| async move {
            let row = c
                .query_one(
                    "SELECT
                         (SELECT count(*) FROM outbox WHERE state = 'pending'),
                         (SELECT count(*) FROM outbox WHERE state = 'delivered'),
                         (SELECT count(*) FROM outbox WHERE state = 'dead'),
                         (SELECT count(*) FROM callbacks c WHERE NOT EXISTS (SELECT 1 FROM outbox o WHERE o.id = c.id))",
                    &[],
                )
                .await?;
            Ok(OutboxCounts { pending: row.try_get(0)?, delivered: row.try_get(1)?, dead: row.try_get(2)?, unqueued: row.try_get(3)? })
        })
    }

    fn next_due(&self) -> Result<Option<i64>, StoreError> {
        self.run(OP_TIMEOUT, |c| async move {
            let st = c
                .prepare_cached("SELECT MIN(GREATEST(next_at, locked_until)) FROM outbox WHERE state = 'pending'")
                .await?;
            Ok(c.query_one(&st, &[]).await?.try_get(0)?)
        })
    }

    fn require_sigs(&self, now: i64) -> Result<i64, StoreError> {
        self.run(OP_TIMEOUT, move |c| async move {
            // Two statements: a concurrent first start's row, committed while the INSERT waited
            // on it, is visible to the second statement's snapshot, not to the first's.
            c.execute(
                "INSERT INTO meta (name, value) VALUES ('sigs_required_since', $1) ON CONFLICT (name) DO NOTHING",
                &[&now],
            )
            .await?;
            Ok(c.query_one("SELECT value FROM meta WHERE name = 'sigs_required_since'", &[]).await?.try_get(0)?)
        })
    }

    fn sigs_required_since(&self) -> Result<Option<i64>, StoreError> {
        self.run(OP_TIMEOUT, |c| async move {
            let st = c.prepare_cached("SELECT value FROM meta WHERE name = 'sigs_required_since'").await?;
            Ok(c.query_opt(&st, &[]).await?.map(|r| r.try_get(0)).transpose()?)
        })
    }

    fn set_sigs_required_since(&self, at: i64) -> Result<Option<i64>, StoreError> {
        self.run(OP_TIMEOUT, move |mut c| async move {
            let tx = c.transaction().await?;
            // The row locked first, so two operators' commands do not both report the same before.
            let before = tx.query_opt("SELECT value FROM meta WHERE name = 'sigs_required_since' FOR UPDATE", &[]).await?;
            let before: Option<i64> = before.map(|r| r.try_get(0)).transpose()?;
            tx.execute(
                "INSERT INTO meta (name, value) VALUES ('sigs_required_since', $1)
                 ON CONFLICT (name) DO UPDATE SET value = excluded.value",
                &[&at],
            )
            .await?;
            tx.commit().await?;
            Ok(before)
        })
    }

    fn clear_unsigned_tokens(&self, limit: usize) -> Result<usize, StoreError> {
        let limit = limit_i64(limit);
        self.run(OP_TIMEOUT, move |c| async move {
            let st = c
                .prepare_cached("DELETE FROM unsigned_tokens WHERE token IN (SELECT token FROM unsigned_tokens LIMIT $1)")
                .await?;
            Ok(usize::try_from(c.execute(&st, &[&limit]).await?).unwrap_or(usize::MAX))
        })
    }

    fn defer(&self, id: i64, owner: &str, claim: i64, next_at: i64, error: &str) -> Result<bool, StoreError> {
        let (owner, error) = (text(owner).into_owned(), text(error).into_owned());
        self.run(OP_TIMEOUT, move |c| async move {
            let st = c
                .prepare_cached(
                    "UPDATE outbox SET next_at = $4, last_error = $5, owner = '', locked_until = 0
                     WHERE id = $1 AND state = 'pending' AND owner = $2 AND claims = $3",
                )
                .await?;
            Ok(c.execute(&st, &[&id, &owner, &claim, &next_at, &error]).await? == 1)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_recognised_and_shown_without_their_password() {
        assert!(PgUrl::is_postgres("postgres://h/db"));
        assert!(PgUrl::is_postgres("PostgreSQL://h/db"));
        assert!(!PgUrl::is_postgres("qys-proxy.sqlite3"));
        assert!(!PgUrl::is_postgres("/var/lib/postgres://x"));
        let url = PgUrl::parse("postgres://qys:s3cr%2Ft@db.internal:6432/callbacks?connect_timeout=3").unwrap();
        assert_eq!(url.to_string(), "postgres://qys@db.internal:6432/callbacks");
        assert!(!format!("{url:?}").contains("s3cr"));
        assert_eq!(url.config().get_password(), Some(&b"s3cr/t"[..]));
        assert_eq!(url.config().get_connect_timeout(), Some(&Duration::from_secs(3)));
        assert_eq!(url.config().get_application_name(), Some("qys-proxy"));
        let two = PgUrl::parse("postgresql://u:pw@a:1,b:2/d?password=other").unwrap();
        assert_eq!(two.to_string(), "postgres://u@a,b:1,2/d");
        for bad in ["postgres://u:hunter2@h:notaport/d", "postgres://u:hunter2@h/d?bogus=1", "postgres:///d"] {
            let e = PgUrl::parse(bad).unwrap_err();
            assert!(!e.contains("hunter2"), "{e}");
        }
        assert!(PgUrl::parse("mysql://h/db").is_err());
    }

    #[test]
    fn nul_is_replaced_in_text() {
        assert_eq!(text("a\0b"), "a\u{FFFD}b");
        assert!(matches!(text("ab"), Cow::Borrowed("ab")));
    }
}
