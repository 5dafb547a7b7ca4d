//! Durable storage of the platform's server callbacks, bounded against anyone on the internet.
//!
//! - A **well-formed** delivery is stored in full, once: a retry (same kind, query and body) only
//!   raises its `deliveries` count ([`CallbackStore::record`]).
//! - A **malformed** one costs constant disk ([`CallbackStore::count_malformed`]): a counter per
//!   (UTC day, kind, [`MalformedClass`]) is incremented and one slot of a ring of the last
//!   [`SAMPLE_SLOTS`] malformed deliveries, each cut to [`SAMPLE_BODY_BYTES`], is overwritten.
//! - Every delivery is first charged to its **source** ([`CallbackStore::admit`], a token bucket
//!   per IP address, [`quota`]); a source over its [`RateLimit`] writes nothing.
//! - Rows older than the retention period are deleted in bounded batches
//!   ([`CallbackStore::sweep`], run periodically by [`CallbackStore::spawn_sweeper`]), except
//!   callbacks still to be forwarded.
//!
//! - With forwarding on ([`CallbackStore::with_forwarding`], `QYS_FORWARD_URL`), a well-formed
//!   delivery also gets one **outbox** entry, in the same transaction that stores it; the
//!   forwarder (`crate::forward`) claims due entries, delivers them to the integrator's backend
//!   and records the outcome ([`OutboxEntry`], [`OutboxState`]).
//!
//! [`CallbackStore`] is the handle the proxy holds; where the rows go is a [`CallbackBackend`]
//! (SQLite today, [`sqlite::SqliteBackend`]). A second backend implements that trait only: the
//! dedup key, truncation, rate limit, the sweep's batching and the forwarder's policy (backoff,
//! give-up, confirmation, signing) stay outside it.

pub mod postgres;
pub mod quota;
pub mod sqlite;

use std::fmt;
use std::net::IpAddr;
use std::path::Path;
use std::sync::mpsc::{self, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use sha2::{Digest, Sha256};

pub use quota::{RateLimit, Refused};
use quota::SourceQuota;

/// How many malformed deliveries are kept as samples (the newest ones).
pub const SAMPLE_SLOTS: i64 = 100;
/// Longest body kept in a malformed sample, in bytes.
pub const SAMPLE_BODY_BYTES: usize = 2048;
/// Longest query string kept in a malformed sample, in bytes.
pub const SAMPLE_QUERY_BYTES: usize = 512;
/// Longest `Content-Type` kept in a malformed sample, in bytes.
pub const SAMPLE_CONTENT_TYPE_BYTES: usize = 128;
/// Default retention of stored callbacks, malformed counts and samples, in days.
pub const DEFAULT_RETENTION_DAYS: u32 = 90;
/// Rows deleted per transaction by the retention sweep.
pub const SWEEP_BATCH: usize = 500;
/// How often [`CallbackStore::spawn_sweeper`] sweeps (and once when it starts).
pub const SWEEP_EVERY: Duration = Duration::from_secs(3600);
/// Milliseconds in a (UTC) day: malformed counters are kept per `received_at / DAY_MS`.
pub const DAY_MS: i64 = 86_400_000;
/// What `last_error` of an abandoned entry starts with ([`CallbackBackend::abandon`]).
pub const ABANDONED: &str = "abandoned (qys-proxy callbacks abandon)";
/// How long after its lease ran out an entry is still left alone by [`CallbackBackend::abandon`]:
/// the lease was written by another host's clock, and a stalled database can stretch a forwarder's
/// renewal, POST and record past it.
pub const ABANDON_GRACE_MS: i64 = 120_000;
/// Largest `QYS_UNSIGNED_CALLBACK_DAYS`. Past `sigs_required_since` plus this many days no
/// configuration stores a delivery without `sig`, so the sweep drops `unsigned_tokens`.
pub const MAX_UNSIGNED_CALLBACK_DAYS: u32 = 365;

/// One stored callback delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredCallback {
    /// `personal-auth` or `company-auth`.
    pub kind: String,
    /// The request's query string (it carries the flow id the proxy put in `callbackUrl`).
    pub query: String,
    /// The form body (invalid UTF-8 replaced; retries are matched on the exact bytes).
    pub body: String,
    /// Empty: only well-formed deliveries are stored. (Databases written before issue 8 may hold
    /// malformed rows with their reason here, until the retention sweep removes them.)
    pub error: String,
    /// When it was first received, in Unix milliseconds.
    pub received_at: i64,
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
    /// New, through a callback URL without `sig` whose flow token has stored
    /// [`UNSIGNED_PER_TOKEN`] deliveries already ([`Delivery::unsigned`]): nothing written.
    OverCap,
}

/// Most distinct deliveries stored per flow token through a callback URL without `sig` (an
/// older version's). A genuine flow sends one personal-auth result, or a company-auth callback
/// per status change (seven `actionEvent` codes, at most once each), and a retry does not count;
/// anyone holding such a token (every browser that started a flow before the upgrade) can store
/// no more than this many bodies under it.
pub const UNSIGNED_PER_TOKEN: i64 = 8;

/// Why a delivery is malformed, as counted: a small fixed set, so that the counters stay a few
/// rows per day whatever senders do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MalformedClass {
    /// Not `application/x-www-form-urlencoded`.
    ContentType,
    /// The query string is longer than any `callbackUrl` the proxy hands out.
    Query,
    /// The body is larger than the receivers accept.
    TooLarge,
    /// A required field is missing or has a value outside its rule.
    Fields,
    /// The URL carries no valid `sig`: not a callback URL this proxy handed out.
    Unsigned,
}

impl MalformedClass {
    /// The name stored in the counters and samples.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ContentType => "content-type",
            Self::Query => "query",
            Self::TooLarge => "too-large",
            Self::Fields => "fields",
            Self::Unsigned => "unsigned",
        }
    }
}

impl fmt::Display for MalformedClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A malformed delivery, as the receivers saw it (whole; [`CallbackStore::count_malformed`]
/// cuts what it keeps).
#[derive(Debug, Clone, Copy)]
pub struct Malformed<'a> {
    /// `personal-auth` or `company-auth`.
    pub kind: &'a str,
    /// Why, as counted.
    pub class: MalformedClass,
    /// Why, as answered (`message` of the 1001 answer).
    pub reason: &'a str,
    /// The sender's address, when known: the peer, or the client a trusted reverse proxy names.
    pub source: Option<IpAddr>,
    /// The `Content-Type` header (empty if absent).
    pub content_type: &'a str,
    /// The query string.
    pub query: &'a str,
    /// The body (empty when it was too large to read).
    pub body: &'a [u8],
}

/// A counter of malformed deliveries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MalformedCount {
    /// UTC day: Unix milliseconds / [`DAY_MS`].
    pub day: i64,
    /// `personal-auth` or `company-auth`.
    pub kind: String,
    /// [`MalformedClass::as_str`].
    pub class: String,
    /// How many arrived that day.
    pub count: i64,
    /// When the last one arrived, in Unix milliseconds.
    pub last_at: i64,
}

/// One of the last [`SAMPLE_SLOTS`] malformed deliveries, cut to size.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MalformedSample {
    /// Arrival order among malformed deliveries (1, 2, …).
    pub seq: i64,
    /// `personal-auth` or `company-auth`.
    pub kind: String,
    /// [`MalformedClass::as_str`].
    pub class: String,
    /// The refusal's message.
    pub reason: String,
    /// The peer's IP address, or empty.
    pub source: String,
    /// The first [`SAMPLE_CONTENT_TYPE_BYTES`] of the `Content-Type` header.
    pub content_type: String,
    /// The first [`SAMPLE_QUERY_BYTES`] of the query string.
    pub query: String,
    /// The first [`SAMPLE_BODY_BYTES`] of the body, exact bytes.
    pub body: Vec<u8>,
    /// The whole body's length.
    pub body_len: i64,
    /// When it arrived, in Unix milliseconds.
    pub received_at: i64,
}

/// A well-formed delivery, as handed to a backend.
#[derive(Debug, Clone, Copy)]
pub struct Delivery<'a> {
    /// `personal-auth` or `company-auth`.
    pub kind: &'a str,
    /// Identity of the delivery ([`dedup_key`]): a retry has the same key.
    pub dedup_key: &'a str,
    /// The query string.
    pub query: &'a str,
    /// The body (invalid UTF-8 replaced).
    pub body: &'a str,
    /// Unix milliseconds.
    pub received_at: i64,
    /// Forwarding is on: the callback must have an outbox entry when `record` returns (created
    /// `pending`, due at `received_at`, with a new callback — or with a retry of one stored while
    /// forwarding was off; an existing entry is left as it is).
    pub forward: bool,
    /// Through a callback URL without `sig`: the key of its flow token ([`unsigned_key`]). A new
    /// delivery is then stored only while fewer than [`UNSIGNED_PER_TOKEN`] are stored under it
    /// (counted in `unsigned_tokens`, same transaction), else [`Recorded::OverCap`].
    pub unsigned: Option<&'a str>,
}

/// Where an outbox entry stands.
///
/// ```text
///   record ──▶ pending ──(2xx)──────────────▶ delivered
///               ▲   │ ╲──(failure, young)──▶ pending, next_at later, attempts + 1
///               │   └──(failure, older than give-up)──▶ dead
///               └───────── replay ◀─────────────────── dead | delivered
/// ```
/// A `pending` entry is additionally *leased* while one forwarder works on it (`owner`,
/// `locked_until`); an expired lease (the forwarder died) makes it claimable again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum OutboxState {
    /// Waiting for (another) attempt at `next_at`.
    Pending,
    /// The backend answered 2xx.
    Delivered,
    /// Given up after the give-up age; counted, kept for `replay`.
    Dead,
}

impl OutboxState {
    /// The name stored in the database (`pending`, `delivered`, `dead`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Delivered => "delivered",
            Self::Dead => "dead",
        }
    }

    /// The state stored as `s`.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "pending" => Some(Self::Pending),
            "delivered" => Some(Self::Delivered),
            "dead" => Some(Self::Dead),
            _ => None,
        }
    }
}

impl fmt::Display for OutboxState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One outbox entry with the callback it forwards.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxEntry {
    /// The callback's id (`callbacks.id`); the outbox entry shares it.
    pub id: i64,
    /// The callback's [`dedup_key`]: the `Idempotency-Key` of every attempt.
    pub dedup_key: String,
    /// `personal-auth` or `company-auth`.
    pub kind: String,
    /// The callback's query string.
    pub query: String,
    /// The callback's form body.
    pub body: String,
    /// When the callback was first received (Unix ms).
    pub received_at: i64,
    /// How many times the platform delivered it.
    pub deliveries: i64,
    /// Where the entry stands.
    pub state: OutboxState,
    /// Attempts recorded so far (delivered or failed; an attempt cut short by a crash is not).
    pub attempts: i64,
    /// When the next attempt is due (Unix ms).
    pub next_at: i64,
    /// When the entry was (re)enqueued (Unix ms): the give-up age counts from here.
    pub enqueued_at: i64,
    /// The forwarder holding the lease, or empty.
    pub owner: String,
    /// How many times the entry was claimed: the number of the current (or last) claim. With
    /// `owner`, it names one attempt: an instance that claims again an entry whose earlier attempt
    /// outlived its lease must not let that earlier attempt POST, renew or fail it.
    pub claim: i64,
    /// Until when it holds it (Unix ms; 0 when none).
    pub locked_until: i64,
    /// The last failure (HTTP status and a cut answer, or the transport error), or empty.
    pub last_error: String,
    /// The exact JSON body forwarded, fixed by the first attempt ([`CallbackBackend::renew_lease`])
    /// so that every attempt with one `Idempotency-Key` carries one body; `None` before it.
    pub payload: Option<String>,
    /// When it was delivered or parked as dead (Unix ms).
    pub finished_at: Option<i64>,
}

/// Which outbox entries [`CallbackBackend::outbox_list`] returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutboxFilter {
    /// Every entry.
    All,
    /// Only entries in this state.
    State(OutboxState),
}

/// How many outbox entries are in each state.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OutboxCounts {
    /// Waiting for an attempt (leased ones included).
    pub pending: i64,
    /// Delivered.
    pub delivered: i64,
    /// Parked as dead.
    pub dead: i64,
    /// Stored callbacks without an outbox entry (stored while forwarding was off).
    pub unqueued: i64,
}

/// How many rows a sweep deleted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Swept {
    /// Rows deleted, all tables together.
    pub rows: usize,
    /// Transactions (batches of at most [`SWEEP_BATCH`] rows) it took.
    pub batches: usize,
}

impl Swept {
    /// Runs `batch` (one transaction deleting at most [`SWEEP_BATCH`] rows) until one deletes
    /// fewer, counting; other writers get the lock between batches.
    fn in_batches(&mut self, mut batch: impl FnMut() -> Result<usize, StoreError>) -> Result<(), StoreError> {
        loop {
            let deleted = batch()?;
            self.rows += deleted;
            self.batches += 1;
            if deleted < SWEEP_BATCH {
                return Ok(());
            }
            std::thread::yield_now();
        }
    }
}

/// A storage failure, whatever the backend.
#[derive(Debug)]
pub struct StoreError(String);

impl StoreError {
    /// An error with this description.
    pub fn new(message: impl Into<String>) -> Self {
        Self(message.into())
    }
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for StoreError {}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        Self(e.to_string())
    }
}

/// Where callbacks (and their outbox) are kept. Each method is one durable transaction: when it
/// returns `Ok`, the write survives a crash.
///
/// **Blocking and object-safe, on purpose** (kept so: backends are `Arc<dyn CallbackBackend>`):
/// async callers run every method through `tokio::task::spawn_blocking` (the receivers, the
/// forwarder) or call it directly from a thread (the sweeper, the `callbacks` CLI). A backend
/// over an async driver blocks on its own runtime handle inside the method.
///
/// **Outbox contract** (issue 9). The outbox holds one entry per callback (same id, key
/// `dedup_key`), created by [`record`](Self::record) in the transaction that stores the callback
/// when [`Delivery::forward`] is set. Several forwarders (one per proxy instance, several
/// instances on one PostgreSQL database) share it through leases:
/// - [`claim_due`](Self::claim_due) hands an entry to at most one forwarder at a time: only
///   `pending` entries with `next_at <= now` and `locked_until <= now` (no live lease), oldest
///   `next_at` first, and sets `owner`, `locked_until = now + lease_ms` and `claims + 1` in the
///   same transaction. A lease is (`owner`, [`OutboxEntry::claim`]): the owner alone cannot tell
///   two attempts of one instance apart (its own re-claim after a lease ran out).
///   SQLite: one `IMMEDIATE` transaction (a single writer). PostgreSQL: `UPDATE … WHERE id IN
///   (SELECT id … ORDER BY next_at LIMIT n FOR UPDATE SKIP LOCKED) RETURNING …`.
/// - [`mark_delivered`](Self::mark_delivered) holds whoever reports it (a delivery is a fact even
///   when the lease has meanwhile expired); [`mark_failed`](Self::mark_failed) and
///   [`park_dead`](Self::park_dead) only apply while the lease (`owner`, `claim`) still holds a
///   `pending` entry (else they change nothing and return `false`: another attempt has it now).
/// - [`renew_lease`](Self::renew_lease), right before each POST, extends the lease only while
///   it still holds the `pending` entry (else the caller skips the POST: a pause longer
///   than the lease — a slow confirmation, a stalled process — must not let two instances POST
///   one entry), and fixes the forwarded body: first writer wins, so one key never carries two
///   bodies.
/// - Times are Unix milliseconds given by the caller (the backend does not read a clock), so
///   tests and the forwarder's policy decide them.
///
/// SQLite schema (PostgreSQL: the same columns, `BIGINT`/`TEXT`, `payload`/`finished_at` NULL):
/// ```sql
/// CREATE TABLE outbox (
///     id INTEGER PRIMARY KEY,          -- = callbacks.id
///     state TEXT NOT NULL,             -- 'pending' | 'delivered' | 'dead'
///     attempts INTEGER NOT NULL DEFAULT 0,
///     next_at INTEGER NOT NULL,        -- due (Unix ms)
///     enqueued_at INTEGER NOT NULL,    -- give-up age counts from here; replay resets it
///     owner TEXT NOT NULL DEFAULT '',  -- lease holder ('' = none)
///     locked_until INTEGER NOT NULL DEFAULT 0,
///     claims INTEGER NOT NULL DEFAULT 0, -- +1 per claim: the lease is (owner, claims)
///     last_error TEXT NOT NULL DEFAULT '',
///     payload TEXT,                    -- forwarded JSON body, fixed by the first attempt
///     finished_at INTEGER              -- delivered / dead at
/// );
/// CREATE INDEX outbox_due ON outbox (next_at) WHERE state = 'pending';
/// CREATE INDEX outbox_state ON outbox (state, id);
/// ```
pub trait CallbackBackend: Send + Sync + 'static {
    /// Inserts a well-formed delivery, or, when one with the same `dedup_key` is stored, raises
    /// its `deliveries` count by one. With [`Delivery::forward`], also makes sure its outbox
    /// entry exists (inserted `pending`, `next_at = enqueued_at = received_at`), same transaction.
    fn record(&self, delivery: &Delivery<'_>) -> Result<Recorded, StoreError>;

    /// Counts a malformed delivery and keeps it as a sample, at constant cost: the counter of
    /// (`received_at` / [`DAY_MS`], kind, class) is incremented (created at 1), and the sample
    /// slot `seq % SAMPLE_SLOTS` is overwritten, `seq` being one more than the newest kept
    /// sample's. `m`'s fields are already cut to the sample sizes; `body_len` is the whole
    /// body's length.
    fn count_malformed(&self, m: &Malformed<'_>, body_len: usize, received_at: i64) -> Result<(), StoreError>;

    /// Deletes at most `limit` rows in one transaction, among: callbacks received before `cutoff`
    /// (Unix ms) with their outbox entries — only those without an entry, with a `delivered` one,
    /// or with a `dead` one parked (`finished_at`) before `cutoff`, never a `pending` one (the
    /// backend has not had it yet) —, samples received before `cutoff`, and counters of days that
    /// ended at or before it. Returns how many it deleted (fewer than `limit`: none are left).
    fn delete_before(&self, cutoff: i64, limit: usize) -> Result<usize, StoreError>;

    /// All stored callbacks, oldest first.
    fn callbacks(&self) -> Result<Vec<StoredCallback>, StoreError>;

    /// All malformed counters, by day, kind and class.
    fn malformed_counts(&self) -> Result<Vec<MalformedCount>, StoreError>;

    /// The kept malformed samples, oldest first.
    fn malformed_samples(&self) -> Result<Vec<MalformedSample>, StoreError>;

    // ---- outbox (issue 9) ----

    /// Leases up to `limit` due entries to `owner` until `now + lease_ms`: `pending`,
    /// `next_at <= now`, `locked_until <= now`, by `next_at` then `id`; each entry's `claims`
    /// goes up by one. The returned entries carry the new lease ([`OutboxEntry::claim`]). Two concurrent calls never return the same entry while the lease runs.
    fn claim_due(&self, now: i64, limit: usize, owner: &str, lease_ms: i64) -> Result<Vec<OutboxEntry>, StoreError>;

    /// Right before `owner` POSTs the entry: if its claim number `claim` still holds it
    /// (`pending`, `owner` and `claims` unchanged — even if the lease ran out, nobody claimed it
    /// since, this instance included), extends the lease to
    /// `now + lease_ms`, sets `payload` as the forwarded body if it has none yet, and returns the
    /// body it has now (this one, or the one an earlier attempt fixed). `None`, changing nothing,
    /// when it is no longer `owner`'s (claimed by another forwarder, delivered, replayed, or gone):
    /// the caller must not POST.
    fn renew_lease(&self, id: i64, owner: &str, claim: i64, now: i64, lease_ms: i64, payload: &str) -> Result<Option<String>, StoreError>;

    /// A `pending` entry was delivered at `at`: `delivered`, `finished_at = at`, attempts + 1,
    /// lease cleared, `last_error` kept. Whoever holds the lease. Also an entry abandoned
    /// meanwhile ([`Self::abandon`]): the backend has it, which a later `replay` must not repeat.
    /// `false` if it was neither.
    fn mark_delivered(&self, id: i64, at: i64) -> Result<bool, StoreError>;

    /// An attempt by `owner`'s claim `claim` failed: attempts + 1, `next_at`, `last_error =
    /// error`, lease cleared; stays `pending`. `false` (nothing changed) unless that claim holds
    /// its lease.
    fn mark_failed(&self, id: i64, owner: &str, claim: i64, next_at: i64, error: &str) -> Result<bool, StoreError>;

    /// The last attempt by `owner`'s claim `claim` failed and the entry is too old to retry:
    /// `dead`, attempts + 1, `finished_at = at`, `last_error = error`, lease cleared. `false`
    /// (nothing changed) unless that claim holds its lease.
    fn park_dead(&self, id: i64, owner: &str, claim: i64, at: i64, error: &str) -> Result<bool, StoreError>;

    /// Clears every lease `owner` holds (a forwarder stopping); returns how many.
    fn release(&self, owner: &str) -> Result<usize, StoreError>;

    /// Makes the entry of callback `id` `pending` again, due at `now`: attempts 0,
    /// `enqueued_at = now`, lease and `finished_at` cleared; `payload` and `last_error` kept
    /// (a replay resends the same body under the same key). Creates the entry when the callback
    /// has none. `false` if there is no callback `id`.
    fn replay(&self, id: i64, now: i64) -> Result<bool, StoreError>;

    /// [`replay`](Self::replay) of every `dead` entry; returns how many.
    fn replay_dead(&self, now: i64) -> Result<usize, StoreError>;

    /// An operator gives up on `pending` entries (callback `id`, or at most `limit` of them, by
    /// id): `dead`, `finished_at = now`, [`ABANDONED`] before `last_error` (once), attempts kept;
    /// so the retention sweep takes them a retention period later and `replay` can still queue
    /// them. An entry leased until less than [`ABANDON_GRACE_MS`] before `now` is left alone: a
    /// forwarder may be sending it (another host's clock, a stalled database). Returns how many
    /// changed.
    fn abandon(&self, id: Option<i64>, now: i64, limit: usize) -> Result<usize, StoreError>;

    /// Entries matching `filter` with `id > after_id`, by id, at most `limit`.
    fn outbox_list(&self, filter: OutboxFilter, after_id: i64, limit: usize) -> Result<Vec<OutboxEntry>, StoreError>;

    /// The entry of callback `id`, if it has one.
    fn outbox_get(&self, id: i64) -> Result<Option<OutboxEntry>, StoreError>;

    /// How many entries are in each state (and callbacks without one).
    fn outbox_counts(&self) -> Result<OutboxCounts, StoreError>;

    /// When the earliest `pending` entry becomes claimable: min over `pending` of
    /// `max(next_at, locked_until)`; `None` when none is pending.
    fn next_due(&self) -> Result<Option<i64>, StoreError>;

    // ---- callback URL signatures (issue 8) ----

    /// Records `now` as the moment callback URLs began to need a `sig` (`meta` row
    /// `sigs_required_since`) unless one is recorded, and returns the recorded one: insert if
    /// absent, then read, so instances starting together on one database agree on the first.
    /// Kept for good: it tells the unsigned URLs older versions issued from any minted since.
    fn require_sigs(&self, now: i64) -> Result<i64, StoreError>;

    /// The recorded `sigs_required_since`, if any (read for each delivery without `sig`, so a
    /// moment moved by [`Self::set_sigs_required_since`] holds on every instance at once).
    fn sigs_required_since(&self) -> Result<Option<i64>, StoreError>;

    /// Sets `sigs_required_since` to `at` (inserted if absent); returns the previous value.
    fn set_sigs_required_since(&self, at: i64) -> Result<Option<i64>, StoreError>;

    /// Deletes at most `limit` `unsigned_tokens` rows; returns how many.
    fn clear_unsigned_tokens(&self, limit: usize) -> Result<usize, StoreError>;

    /// The attempt of `owner`'s claim `claim` could not ask the platform because this instance's
    /// confirmation budget is spent: due again at `next_at`, `last_error = error`, lease cleared;
    /// attempts unchanged (nothing was tried). `false` (nothing changed) unless that claim holds
    /// its lease.
    fn defer(&self, id: i64, owner: &str, claim: i64, next_at: i64, error: &str) -> Result<bool, StoreError>;
}

/// The callback store: a backend and the per-source quota in front of it. Cheap to clone, safe
/// to share; clones share the backend and the quota.
#[derive(Clone)]
pub struct CallbackStore {
    inner: Arc<Inner>,
}

impl fmt::Debug for CallbackStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CallbackStore")
            .field("rate_limit", &self.rate_limit())
            .field("forwarding", &self.forwarding())
            .finish_non_exhaustive()
    }
}

struct Inner {
    backend: Arc<dyn CallbackBackend>,
    quota: SourceQuota,
    /// Dropped with the last handle: tells the sweeper threads to stop.
    sweepers: Mutex<Vec<Sender<()>>>,
    /// `record` also enqueues an outbox entry.
    forward: bool,
    /// Woken when `record` stored something while forwarding (shared by handles over one backend
    /// made by [`CallbackStore::with_rate_limit`] / [`CallbackStore::with_forwarding`]).
    enqueued: Arc<tokio::sync::Notify>,
}

impl CallbackStore {
    /// Opens (creating if needed) the SQLite database at `path`, with the default
    /// [`RateLimit`].
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        Ok(Self::new(Arc::new(sqlite::SqliteBackend::open(path)?), RateLimit::default()))
    }

    /// A store over `backend`, charging each source against `limit`.
    pub fn new(backend: Arc<dyn CallbackBackend>, limit: RateLimit) -> Self {
        Self::build(backend, limit, false, Arc::default())
    }

    fn build(backend: Arc<dyn CallbackBackend>, limit: RateLimit, forward: bool, enqueued: Arc<tokio::sync::Notify>) -> Self {
        let sweepers = Mutex::new(Vec::new());
        Self { inner: Arc::new(Inner { backend, quota: SourceQuota::new(limit, limit.burst), sweepers, forward, enqueued }) }
    }

    /// The same backend behind a fresh quota of `limit` (for the handle given to the proxy).
    pub fn with_rate_limit(self, limit: RateLimit) -> Self {
        Self::build(self.inner.backend.clone(), limit, self.inner.forward, self.inner.enqueued.clone())
    }

    /// The same backend and a fresh quota of the same limit; with `forward`, every well-formed
    /// delivery [`record`](Self::record)ed through it gets an outbox entry in its transaction.
    pub fn with_forwarding(self, forward: bool) -> Self {
        Self::build(self.inner.backend.clone(), self.rate_limit(), forward, self.inner.enqueued.clone())
    }

    /// Whether [`record`](Self::record) enqueues outbox entries.
    pub fn forwarding(&self) -> bool {
        self.inner.forward
    }

    /// The backend (the forwarder and the `callbacks` CLI work on it directly).
    pub fn backend(&self) -> Arc<dyn CallbackBackend> {
        self.inner.backend.clone()
    }

    /// Completes after a [`record`](Self::record) with forwarding on, through any handle over
    /// this backend made from this one (one stored permit: a record before the wait counts).
    pub async fn enqueued(&self) {
        self.inner.enqueued.notified().await
    }

    /// The rate limit in force.
    pub fn rate_limit(&self) -> RateLimit {
        self.inner.quota.limit()
    }

    /// Charges one delivery to `source` (`None`: an unknown peer, one shared bucket). `Err`
    /// when the source is over its limit: nothing may be written for that delivery.
    pub fn admit(&self, source: Option<IpAddr>) -> Result<(), Refused> {
        // Every new bucket here starts full (the platform's retries), loopback or not.
        self.inner.quota.admit(source, false)
    }

    /// Stores a well-formed delivery durably, or counts it as a retry of an identical stored one.
    pub fn record(&self, kind: &str, query: &str, body: &[u8]) -> Result<Recorded, StoreError> {
        self.record_as(kind, query, body, None)
    }

    /// [`Self::record`] of a delivery through a callback URL without `sig`, whose flow token is
    /// `t`: at most [`UNSIGNED_PER_TOKEN`] distinct ones per token and kind.
    pub fn record_unsigned(&self, kind: &str, query: &str, body: &[u8], t: &str) -> Result<Recorded, StoreError> {
        self.record_as(kind, query, body, Some(&unsigned_key(kind, t)))
    }

    fn record_as(&self, kind: &str, query: &str, body: &[u8], unsigned: Option<&str>) -> Result<Recorded, StoreError> {
        let key = dedup_key(kind, query, body);
        let body = String::from_utf8_lossy(body);
        let forward = self.inner.forward;
        let delivery = Delivery { kind, dedup_key: &key, query, body: &body, received_at: now(), forward, unsigned };
        let recorded = self.inner.backend.record(&delivery)?;
        if forward && recorded != Recorded::OverCap {
            self.inner.enqueued.notify_one();
        }
        Ok(recorded)
    }

    /// Counts a malformed delivery and keeps it, cut to size, as one of the last
    /// [`SAMPLE_SLOTS`] samples. Constant disk whatever the delivery's size.
    pub fn count_malformed(&self, m: &Malformed<'_>) -> Result<(), StoreError> {
        let cut = Malformed {
            reason: cut_str(m.reason, SAMPLE_QUERY_BYTES),
            content_type: cut_str(m.content_type, SAMPLE_CONTENT_TYPE_BYTES),
            query: cut_str(m.query, SAMPLE_QUERY_BYTES),
            body: &m.body[..m.body.len().min(SAMPLE_BODY_BYTES)],
            ..*m
        };
        self.inner.backend.count_malformed(&cut, m.body.len(), now())
    }

    /// All stored callbacks, oldest first.
    pub fn all(&self) -> Result<Vec<StoredCallback>, StoreError> {
        self.inner.backend.callbacks()
    }

    /// All malformed counters.
    pub fn malformed_counts(&self) -> Result<Vec<MalformedCount>, StoreError> {
        self.inner.backend.malformed_counts()
    }

    /// The kept malformed samples, oldest first.
    pub fn malformed_samples(&self) -> Result<Vec<MalformedSample>, StoreError> {
        self.inner.backend.malformed_samples()
    }

    /// The moment callback URLs began to need a `sig` in this database, recorded now if this is
    /// the first sig-aware proxy to serve on it ([`CallbackBackend::require_sigs`]).
    pub fn require_sigs(&self) -> Result<i64, StoreError> {
        self.inner.backend.require_sigs(now())
    }

    /// The recorded moment callback URLs began to need a `sig`, if any.
    pub fn sigs_required_since(&self) -> Result<Option<i64>, StoreError> {
        self.inner.backend.sigs_required_since()
    }

    /// Deletes everything older than `retention` but callbacks whose forwarding is not finished
    /// ([`CallbackBackend::delete_before`]), in transactions of at most [`SWEEP_BATCH`] rows (the
    /// lock is released between them, so receivers are never held up long); then the per-token
    /// counts of deliveries without `sig`, once no configuration can read them again
    /// ([`MAX_UNSIGNED_CALLBACK_DAYS`] after `sigs_required_since`).
    pub fn sweep(&self, retention: Duration) -> Result<Swept, StoreError> {
        let now = now();
        let cutoff = now.saturating_sub(i64::try_from(retention.as_millis()).unwrap_or(i64::MAX));
        let mut swept = Swept::default();
        swept.in_batches(|| self.inner.backend.delete_before(cutoff, SWEEP_BATCH))?;
        let unsigned_window = i64::from(MAX_UNSIGNED_CALLBACK_DAYS) * DAY_MS;
        if self.sigs_required_since()?.is_some_and(|since| now > since.saturating_add(unsigned_window)) {
            swept.in_batches(|| self.inner.backend.clear_unsigned_tokens(SWEEP_BATCH))?;
        }
        Ok(swept)
    }

    /// Sweeps on a background thread now and then every `every`, until the last handle of this
    /// store is dropped.
    pub fn spawn_sweeper(&self, retention: Duration, every: Duration) -> std::io::Result<std::thread::JoinHandle<()>> {
        let (stop, stopped) = mpsc::channel::<()>();
        self.inner.sweepers.lock().unwrap_or_else(|e| e.into_inner()).push(stop);
        let store: Weak<Inner> = Arc::downgrade(&self.inner);
        std::thread::Builder::new().name("qys-callback-sweep".into()).spawn(move || loop {
            let Some(inner) = store.upgrade() else { return };
            match (CallbackStore { inner }).sweep(retention) {
                Ok(swept) if swept.rows > 0 => {
                    tracing::info!(rows = swept.rows, batches = swept.batches, "expired callback rows deleted")
                }
                Ok(_) => {}
                Err(e) => tracing::error!(error = %e, "callback retention sweep failed"),
            }
            match stopped.recv_timeout(every) {
                Err(RecvTimeoutError::Timeout) => {}
                Ok(()) | Err(RecvTimeoutError::Disconnected) => return,
            }
        })
    }
}

/// Identity of a delivery: hex SHA-256 over kind, query and the body's exact bytes, each as its
/// u64-LE length followed by the bytes.
pub fn dedup_key(kind: &str, query: &str, body: &[u8]) -> String {
    let mut h = Sha256::new();
    for part in [kind.as_bytes(), query.as_bytes(), body] {
        h.update((part.len() as u64).to_le_bytes());
        h.update(part);
    }
    crate::sign::hex(&h.finalize())
}

/// The key a flow token `t` counts under in `unsigned_tokens`: hex SHA-256 of the kind and `t`,
/// length-prefixed (a token is ≈ 1.5 KB at most; the key is 64 characters).
pub fn unsigned_key(kind: &str, t: &str) -> String {
    let mut h = Sha256::new();
    for part in [kind.as_bytes(), t.as_bytes()] {
        h.update((part.len() as u64).to_le_bytes());
        h.update(part);
    }
    crate::sign::hex(&h.finalize())
}

/// Milliseconds since the Unix epoch, as the store's times are kept.
pub fn now() -> i64 {
    i64::try_from(crate::unix_millis()).unwrap_or(i64::MAX)
}

/// The longest prefix of `s` of at most `max` bytes that ends on a character boundary.
fn cut_str(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    const FORM: &str = "application/x-www-form-urlencoded";

    fn malformed<'a>(query: &'a str, body: &'a [u8]) -> Malformed<'a> {
        Malformed {
            kind: "personal-auth",
            class: MalformedClass::Fields,
            reason: "mode is required",
            source: Some("192.0.2.7".parse().unwrap()),
            content_type: FORM,
            query,
            body,
        }
    }

    #[test]
    fn retries_are_counted_not_duplicated_and_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cb.sqlite3");
        let store = CallbackStore::open(&path).unwrap();
        assert_eq!(store.record("personal-auth", "flow=a", b"mode=FACE&status=1").unwrap(), Recorded::New);
        assert_eq!(store.record("personal-auth", "flow=a", b"mode=FACE&status=1").unwrap(), Recorded::Retry);
        assert_eq!(store.record("personal-auth", "flow=b", b"mode=FACE&status=1").unwrap(), Recorded::New);
        drop(store);
        let all = CallbackStore::open(&path).unwrap().all().unwrap();
        assert_eq!(all.len(), 2);
        assert_eq!(all[0].deliveries, 2);
        assert_eq!(all[1].query, "flow=b");
        assert!(all[1].error.is_empty());
    }

    #[test]
    fn malformed_deliveries_are_counted_and_the_last_ones_sampled_cut_to_size() {
        let dir = tempfile::tempdir().unwrap();
        let store = CallbackStore::open(&dir.path().join("cb.sqlite3")).unwrap();
        let big = vec![b'x'; 16 * 1024];
        let long_query = "q=".to_owned() + &"é".repeat(400);
        for i in 0..(SAMPLE_SLOTS + 30) {
            let query = if i == SAMPLE_SLOTS + 29 { long_query.clone() } else { format!("n={i}") };
            store.count_malformed(&malformed(&query, &big)).unwrap();
        }
        store.count_malformed(&Malformed { kind: "company-auth", class: MalformedClass::ContentType, ..malformed("", b"") }).unwrap();
        let counts = store.malformed_counts().unwrap();
        assert_eq!(counts.len(), 2, "{counts:?}");
        let personal = counts.iter().find(|c| c.kind == "personal-auth").unwrap();
        assert_eq!((personal.class.as_str(), personal.count), ("fields", SAMPLE_SLOTS + 30));
        assert_eq!(personal.day, now() / DAY_MS);
        let samples = store.malformed_samples().unwrap();
        assert_eq!(samples.len() as i64, SAMPLE_SLOTS);
        assert_eq!(samples.first().unwrap().seq, 32, "the oldest are overwritten");
        assert_eq!(samples.last().unwrap().class, "content-type");
        let cut = &samples[samples.len() - 2];
        assert_eq!((cut.body.len(), cut.body_len), (SAMPLE_BODY_BYTES, 16 * 1024));
        assert!(cut.query.len() <= SAMPLE_QUERY_BYTES && long_query.starts_with(&cut.query), "cut on a char boundary");
        assert_eq!(cut.source, "192.0.2.7");
        assert!(store.all().unwrap().is_empty(), "malformed deliveries are not stored as callbacks");
    }

    #[test]
    fn the_sweep_deletes_old_rows_in_batches_and_keeps_recent_ones() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cb.sqlite3");
        let store = CallbackStore::open(&path).unwrap();
        store.record("personal-auth", "flow=new", b"mode=FACE&status=1").unwrap();
        let today = now() / DAY_MS;
        store.count_malformed(&malformed("n=new", b"")).unwrap();
        let old = now() - 10 * DAY_MS;
        let conn = rusqlite::Connection::open(&path).unwrap();
        for i in 0..(2 * SWEEP_BATCH + 7) {
            conn.execute(
                "INSERT INTO callbacks (kind, dedup_key, query, body, error, received_at) VALUES ('personal-auth', ?1, '', '', '', ?2)",
                rusqlite::params![format!("old-{i}"), old],
            )
            .unwrap();
        }
        conn.execute("UPDATE malformed_samples SET received_at = ?1", [old]).unwrap();
        conn.execute(
            "INSERT INTO malformed_counts (day, kind, class, count, last_at) VALUES (?1, 'company-auth', 'fields', 3, ?2)",
            rusqlite::params![old / DAY_MS, old],
        )
        .unwrap();
        let swept = store.sweep(Duration::from_secs(5 * 86_400)).unwrap();
        assert_eq!(swept.rows, 2 * SWEEP_BATCH + 7 + 2);
        assert_eq!(swept.batches, 3);
        let kept = store.all().unwrap();
        assert_eq!(kept.len(), 1);
        assert_eq!(kept[0].query, "flow=new");
        assert!(store.malformed_samples().unwrap().is_empty());
        let counts = store.malformed_counts().unwrap();
        assert_eq!(counts.len(), 1, "today's counter stays: {counts:?}");
        // (The test may have run across midnight UTC.)
        assert!((today..=now() / DAY_MS).contains(&counts[0].day), "{counts:?}");
        assert_eq!(store.sweep(Duration::from_secs(5 * 86_400)).unwrap(), Swept { rows: 0, batches: 1 });
    }

    #[test]
    fn the_sweeper_stops_with_the_last_handle() {
        let dir = tempfile::tempdir().unwrap();
        let store = CallbackStore::open(&dir.path().join("cb.sqlite3")).unwrap();
        let thread = store.spawn_sweeper(Duration::from_secs(86_400), Duration::from_secs(3600)).unwrap();
        let clone = store.clone();
        drop(store);
        std::thread::sleep(Duration::from_millis(50));
        assert!(!thread.is_finished(), "a handle is still alive");
        drop(clone);
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while !thread.is_finished() {
            assert!(std::time::Instant::now() < deadline, "the sweeper thread did not stop");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    #[test]
    fn the_outbox_follows_its_states_and_leases() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cb.sqlite3");
        let off = CallbackStore::open(&path).unwrap();
        off.record("personal-auth", "flow=off", b"mode=FACE&status=1").unwrap();
        let store = off.clone().with_forwarding(true);
        store.record("personal-auth", "flow=a", b"mode=FACE&status=1").unwrap();
        store.record("personal-auth", "flow=a", b"mode=FACE&status=1").unwrap();
        store.record("company-auth", "flow=b", b"status=1&actionEvent=0&requestId=r").unwrap();
        let b = store.backend();
        assert_eq!(b.outbox_counts().unwrap(), OutboxCounts { pending: 2, delivered: 0, dead: 0, unqueued: 1 });
        let t = now() + 1000;
        let claimed = b.claim_due(t, 10, "one", 5000).unwrap();
        assert_eq!(claimed.len(), 2, "one entry per callback, retries included");
        assert_eq!(claimed[0].query, "flow=a");
        assert_eq!(claimed[0].deliveries, 2);
        assert_eq!(claimed[0].dedup_key, dedup_key("personal-auth", "flow=a", b"mode=FACE&status=1"));
        assert_eq!((claimed[0].owner.as_str(), claimed[0].locked_until, claimed[0].claim), ("one", t + 5000, 1));
        assert!(b.claim_due(t, 10, "two", 5000).unwrap().is_empty(), "leased entries are not claimed twice");
        assert_eq!(b.next_due().unwrap(), Some(t + 5000));
        let (a, c) = (claimed[0].id, claimed[1].id);
        assert_eq!(b.renew_lease(a, "two", 1, t, 5000, "{\"x\":0}").unwrap(), None, "not the lease holder");
        assert_eq!(b.renew_lease(a, "one", 1, t + 10, 5000, "{\"x\":1}").unwrap().as_deref(), Some("{\"x\":1}"));
        assert_eq!(b.renew_lease(a, "one", 1, t + 20, 5000, "{\"x\":2}").unwrap().as_deref(), Some("{\"x\":1}"), "the first body stays");
        assert_eq!(b.outbox_get(a).unwrap().unwrap().locked_until, t + 20 + 5000, "renewed");
        assert!(!b.mark_failed(a, "two", 1, t + 100, "HTTP 500").unwrap(), "not the lease holder");
        assert!(b.mark_failed(a, "one", 1, t + 100, "HTTP 500").unwrap());
        assert!(b.park_dead(c, "one", 1, t, "HTTP 500").unwrap());
        let e = b.outbox_get(a).unwrap().unwrap();
        assert_eq!((e.state, e.attempts, e.next_at, e.owner.as_str(), e.last_error.as_str()), (OutboxState::Pending, 1, t + 100, "", "HTTP 500"));
        let again = b.claim_due(t + 100, 10, "two", 5000).unwrap();
        assert_eq!(again.iter().map(|e| (e.id, e.claim)).collect::<Vec<_>>(), vec![(a, 2)]);
        assert_eq!(again[0].payload.as_deref(), Some("{\"x\":1}"));
        // An expired lease is claimable by another forwarder; the first one's report then counts
        // only if it is a delivery.
        let stolen = b.claim_due(t + 100 + 5000, 10, "three", 5000).unwrap();
        assert_eq!(stolen.len(), 1);
        assert!(!b.mark_failed(a, "two", 2, t, "late").unwrap());
        assert_eq!(b.renew_lease(a, "two", 2, t + 5200, 5000, "{}").unwrap(), None, "taken over: the old holder must not POST");
        // ... and by the same forwarder: its earlier attempt is not the new one.
        let reclaimed = b.claim_due(t + 100 + 10_000, 10, "three", 5000).unwrap();
        assert_eq!(reclaimed.iter().map(|e| (e.id, e.claim)).collect::<Vec<_>>(), vec![(a, 4)]);
        assert_eq!(b.renew_lease(a, "three", 3, t + 10_200, 5000, "{}").unwrap(), None, "claimed again: the earlier attempt must not POST");
        assert!(!b.mark_failed(a, "three", 3, t + 10_200, "late").unwrap(), "nor fail the entry");
        assert!(!b.park_dead(a, "three", 3, t + 10_200, "late").unwrap(), "nor park it");
        assert_eq!(b.renew_lease(a, "three", 4, t + 10_200, 5000, "{}").unwrap().as_deref(), Some("{\"x\":1}"));
        assert!(b.mark_delivered(a, t + 6000).unwrap());
        assert_eq!(b.renew_lease(a, "three", 4, t + 6000, 5000, "{}").unwrap(), None, "delivered: nothing to POST");
        assert!(!b.mark_delivered(a, t + 6001).unwrap(), "already delivered");
        assert_eq!(b.outbox_counts().unwrap(), OutboxCounts { pending: 0, delivered: 1, dead: 1, unqueued: 1 });
        assert_eq!(b.next_due().unwrap(), None);
        let dead = b.outbox_list(OutboxFilter::State(OutboxState::Dead), 0, 10).unwrap();
        assert_eq!(dead.iter().map(|e| e.id).collect::<Vec<_>>(), vec![c]);
        assert_eq!(b.replay_dead(t + 7000).unwrap(), 1);
        let off_id = off.all().unwrap().len() as i64 - 2; // ids 1.. in arrival order: flow=off is 1
        assert_eq!(off_id, 1);
        assert!(b.outbox_get(1).unwrap().is_none());
        assert!(b.replay(1, t + 7000).unwrap(), "a callback stored while forwarding was off is enqueued");
        assert!(!b.replay(999, t).unwrap());
        assert_eq!(b.outbox_counts().unwrap(), OutboxCounts { pending: 2, delivered: 1, dead: 0, unqueued: 0 });
        let c2 = b.outbox_get(c).unwrap().unwrap();
        assert_eq!((c2.state, c2.attempts, c2.enqueued_at, c2.finished_at), (OutboxState::Pending, 0, t + 7000, None));
        assert_eq!(c2.claim, 1, "a replay keeps the claim number: an attempt from before it cannot act");
        assert_eq!(b.claim_due(t + 7000, 1, "four", 5000).unwrap().len(), 1, "limit");
        assert_eq!(b.release("four").unwrap(), 1);
        assert_eq!(b.claim_due(t + 7000, 10, "five", 5000).unwrap().len(), 2);
        assert_eq!(b.outbox_list(OutboxFilter::All, 1, 10).unwrap().len(), 2, "after_id");
        // The sweep takes finished entries with their callbacks, never pending ones.
        drop((off, store, b));
        let reopened = CallbackStore::open(&path).unwrap();
        assert_eq!(reopened.sweep(Duration::ZERO).unwrap().rows, 2, "the delivered entry and its callback");
        let left = reopened.backend().outbox_counts().unwrap();
        assert_eq!(left, OutboxCounts { pending: 2, delivered: 0, dead: 0, unqueued: 0 });
    }

    #[test]
    fn a_file_from_before_claim_numbers_is_upgraded_when_opened() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cb.sqlite3");
        let old = rusqlite::Connection::open(&path).unwrap();
        old.execute_batch(
            "CREATE TABLE callbacks (id INTEGER PRIMARY KEY, kind TEXT NOT NULL, dedup_key TEXT NOT NULL UNIQUE,
                 query TEXT NOT NULL, body TEXT NOT NULL, error TEXT NOT NULL, received_at INTEGER NOT NULL,
                 deliveries INTEGER NOT NULL DEFAULT 1);
             CREATE TABLE outbox (id INTEGER PRIMARY KEY, state TEXT NOT NULL, attempts INTEGER NOT NULL DEFAULT 0,
                 next_at INTEGER NOT NULL, enqueued_at INTEGER NOT NULL, owner TEXT NOT NULL DEFAULT '',
                 locked_until INTEGER NOT NULL DEFAULT 0, last_error TEXT NOT NULL DEFAULT '', payload TEXT,
                 finished_at INTEGER);
             INSERT INTO callbacks VALUES (1, 'personal-auth', 'k', 'flow=old', 'mode=FACE&status=1', '', 1, 1);
             INSERT INTO outbox (id, state, next_at, enqueued_at, owner, locked_until) VALUES (1, 'pending', 1, 1, 'gone', 2);",
        )
        .unwrap();
        drop(old);
        let b = CallbackStore::open(&path).unwrap().backend();
        let claimed = b.claim_due(now(), 10, "new", 5000).unwrap();
        assert_eq!(claimed.iter().map(|e| (e.query.as_str(), e.claim)).collect::<Vec<_>>(), [("flow=old", 1)]);
        assert!(b.renew_lease(1, "new", 1, now(), 5000, "{}").unwrap().is_some());
        drop(b);
        CallbackStore::open(&path).expect("an upgraded file opens again");
    }

    #[test]
    fn the_moment_sigs_became_required_is_recorded_once() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cb.sqlite3");
        let b = CallbackStore::open(&path).unwrap().backend();
        assert_eq!(b.require_sigs(100).unwrap(), 100);
        assert_eq!(b.require_sigs(200).unwrap(), 100, "the first start's moment stays");
        drop(b);
        assert_eq!(CallbackStore::open(&path).unwrap().backend().require_sigs(300).unwrap(), 100, "across restarts");
    }

    #[test]
    fn cut_str_keeps_whole_characters() {
        assert_eq!(cut_str("abc", 5), "abc");
        assert_eq!(cut_str("aé", 2), "a");
        assert_eq!(cut_str("aé", 3), "aé");
    }
}
