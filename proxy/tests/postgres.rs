//! The PostgreSQL backend of the callback store (issue 9), against a throwaway cluster
//! (`common/pg.rs`): migrations raced by several instances on an empty database, the same
//! observable behaviour as SQLite (dedup, malformed counters and samples, retention, the outbox
//! contract), and instances sharing one database (dedup across them, claims never handed out twice).

#[path = "common/binary.rs"]
mod binary;
#[path = "common/forwarding.rs"]
mod forwarding;
#[path = "common/pg.rs"]
mod pg;

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Barrier, Mutex};
use std::time::Duration;

use pg::PgCluster;
use qys_proxy::store::postgres::{PgUrl, PostgresBackend, MIGRATIONS};
use qys_proxy::store::sqlite::SqliteBackend;
use qys_proxy::store::{
    dedup_key, now, CallbackBackend, CallbackStore, Delivery, Malformed, MalformedClass, OutboxFilter, OutboxState, RateLimit, Recorded,
    ABANDON_GRACE_MS, DAY_MS, MAX_UNSIGNED_CALLBACK_DAYS, SAMPLE_BODY_BYTES, SAMPLE_SLOTS, SWEEP_BATCH, UNSIGNED_PER_TOKEN,
};

fn open_pg(url: &str) -> Arc<PostgresBackend> {
    Arc::new(PostgresBackend::open(&PgUrl::parse(url).unwrap()).unwrap_or_else(|e| panic!("open {url}: {e}")))
}

fn store(backend: Arc<dyn CallbackBackend>) -> CallbackStore {
    CallbackStore::new(backend, RateLimit::default())
}

fn malformed<'a>(query: &'a str, body: &'a [u8]) -> Malformed<'a> {
    Malformed {
        kind: "personal-auth",
        class: MalformedClass::Fields,
        reason: "mode is required",
        source: Some("192.0.2.7".parse().unwrap()),
        content_type: "application/x-www-form-urlencoded",
        query,
        body,
    }
}

// ---- migrations ----

#[test]
fn four_instances_starting_at_once_on_an_empty_database_make_one_schema() {
    let cluster = PgCluster::shared();
    // Several rounds: the race is in the first milliseconds of each.
    for _ in 0..5 {
        let url = cluster.create_db();
        let start = Arc::new(Barrier::new(4));
        let opened: Vec<_> = (0..4)
            .map(|_| {
                let (url, start) = (url.clone(), start.clone());
                std::thread::spawn(move || {
                    start.wait();
                    PostgresBackend::open(&PgUrl::parse(&url).unwrap()).map(Arc::new)
                })
            })
            .collect();
        let backends: Vec<_> = opened.into_iter().map(|t| t.join().unwrap().expect("every instance starts")).collect();
        let versions = cluster.query(&url, "SELECT string_agg(version::text, ',' ORDER BY version) FROM schema_migrations");
        let all: Vec<String> = MIGRATIONS.iter().map(|m| m.version.to_string()).collect();
        assert_eq!(versions, all.join(","), "each migration recorded once");
        let tables = cluster.query(&url, "SELECT string_agg(tablename, ',' ORDER BY tablename) FROM pg_tables WHERE schemaname = 'public'");
        assert_eq!(tables, "callbacks,malformed_counts,malformed_samples,meta,outbox,schema_migrations,unsigned_tokens");
        // And they all work on it.
        for (i, b) in backends.iter().enumerate() {
            store(b.clone()).record("personal-auth", &format!("flow={i}"), b"mode=FACE&status=1").unwrap();
        }
        assert_eq!(store(backends[0].clone()).all().unwrap().len(), 4);
    }
}

/// Instances starting together on one database (a database of an older version, say) agree on
/// when callback URLs began to need `sig`: the first to record it, whoever it was; later starts
/// keep it.
#[test]
fn instances_starting_at_once_record_one_moment_sigs_became_required() {
    let cluster = PgCluster::shared();
    for _ in 0..5 {
        let url = cluster.create_db();
        let backends: Vec<_> = (0..4).map(|_| open_pg(&url)).collect();
        let start = Arc::new(Barrier::new(4));
        let recorded: Vec<i64> = backends
            .iter()
            .enumerate()
            .map(|(i, b)| {
                let (b, start) = (b.clone(), start.clone());
                std::thread::spawn(move || {
                    start.wait();
                    b.require_sigs(1000 + i as i64).unwrap()
                })
            })
            .collect::<Vec<_>>()
            .into_iter()
            .map(|t| t.join().unwrap())
            .collect();
        assert!((1000..1004).contains(&recorded[0]), "{recorded:?}");
        assert!(recorded.iter().all(|r| *r == recorded[0]), "one moment: {recorded:?}");
        assert_eq!(open_pg(&url).require_sigs(5000).unwrap(), recorded[0], "a later start keeps it");
    }
}

#[test]
fn an_applied_migration_edited_afterwards_stops_the_start_and_a_newer_one_is_tolerated() {
    let cluster = PgCluster::shared();
    let url = cluster.create_db();
    drop(open_pg(&url));
    drop(open_pg(&url)); // a second start applies nothing
    assert_eq!(cluster.query(&url, "SELECT count(*) FROM schema_migrations"), MIGRATIONS.len().to_string());
    cluster.query(&url, "INSERT INTO schema_migrations (version, name, checksum) VALUES (999, '0999_future', 'x')");
    drop(open_pg(&url));
    cluster.query(&url, "UPDATE schema_migrations SET checksum = 'edited' WHERE version = 1");
    let e = PostgresBackend::open(&PgUrl::parse(&url).unwrap()).unwrap_err().to_string();
    assert!(e.contains("0001_callbacks") && e.contains("must not be edited"), "{e}");
}

/// A database migrated by the version before claim numbers, with an entry leased by an instance
/// of that version, gets `outbox.claims` when a newer instance starts; the old lease's holder can
/// no longer act once the entry is claimed again.
#[test]
fn a_database_from_before_claim_numbers_is_migrated_at_start() {
    let cluster = PgCluster::shared();
    let url = cluster.create_db();
    drop(open_pg(&url));
    cluster.query(&url, "ALTER TABLE outbox DROP COLUMN claims; DELETE FROM schema_migrations WHERE version = 3");
    cluster.query(
        &url,
        "INSERT INTO callbacks (kind, dedup_key, query, body, received_at) VALUES ('personal-auth', 'k', 'flow=old', 'x', 1);
         INSERT INTO outbox (id, state, next_at, enqueued_at, owner, locked_until)
             SELECT id, 'pending', 1, 1, 'old', 2 FROM callbacks",
    );
    let backend = open_pg(&url);
    assert_eq!(cluster.query(&url, "SELECT count(*) FROM schema_migrations WHERE version = 3"), "1", "applied again");
    let claimed = backend.claim_due(now(), 10, "new", 30_000).unwrap();
    assert_eq!(claimed.iter().map(|e| (e.query.as_str(), e.claim)).collect::<Vec<_>>(), [("flow=old", 1)]);
    assert_eq!(backend.renew_lease(claimed[0].id, "old", 0, now(), 30_000, "{}").unwrap(), None);
    assert!(backend.renew_lease(claimed[0].id, "new", 1, now(), 30_000, "{}").unwrap().is_some());
}

#[test]
fn an_unreachable_database_fails_the_start_without_showing_the_password() {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let url = PgUrl::parse(&format!("postgres://qys:hunter2@127.0.0.1:{port}/qys?connect_timeout=2")).unwrap();
    let e = PostgresBackend::open(&url).unwrap_err().to_string();
    assert!(e.contains("connect") || e.contains("refused"), "{e}");
    assert!(!e.contains("hunter2"), "{e}");
}

// ---- parity with SQLite ----

/// Dedup, malformed counters and samples through the store's API, as observed.
fn dedup_and_malformed(store: &CallbackStore) -> Vec<String> {
    let mut seen = Vec::new();
    let nul_body: &[u8] = b"mode=FACE&status=1&x=\0\xff";
    for (query, body) in [("flow=a", &b"mode=FACE&status=1"[..]), ("flow=a", b"mode=FACE&status=1"), ("flow=b", nul_body), ("flow=b", nul_body)] {
        seen.push(format!("{:?}", store.record("personal-auth", query, body).unwrap()));
    }
    for c in store.all().unwrap() {
        seen.push(format!("{} {} {:?} {:?} {}", c.kind, c.query, c.body, c.error, c.deliveries));
    }
    // Without sig: at most UNSIGNED_PER_TOKEN distinct bodies per token and kind; retries pass.
    for (kind, n) in [("personal-auth", 0), ("personal-auth", 0), ("company-auth", 0)].into_iter().chain((1..=UNSIGNED_PER_TOKEN).map(|n| ("personal-auth", n))) {
        let recorded = store.record_unsigned(kind, "flow=u&t=tok", format!("status=1&n={n}").as_bytes(), "tok").unwrap();
        seen.push(format!("unsigned {kind} {n} {recorded:?}"));
    }
    let b = store.backend();
    seen.push(format!("moment {:?} {:?}", b.sigs_required_since().unwrap(), b.set_sigs_required_since(5).unwrap()));
    seen.push(format!("moment {:?} {:?}", b.set_sigs_required_since(7).unwrap(), b.sigs_required_since().unwrap()));
    // The per-token counts go once no configuration reads them again: MAX_UNSIGNED_CALLBACK_DAYS
    // after the moment. Then the token counts from zero.
    let ten_years = Duration::from_secs(3650 * 86_400);
    b.set_sigs_required_since(now() - i64::from(MAX_UNSIGNED_CALLBACK_DAYS) * DAY_MS + 600_000).unwrap();
    seen.push(format!("sweep within the window {:?}", store.sweep(ten_years).unwrap()));
    b.set_sigs_required_since(7).unwrap();
    seen.push(format!("sweep after it {:?}", store.sweep(ten_years).unwrap()));
    seen.push(format!("counted again {:?}", store.record_unsigned("personal-auth", "flow=u&t=tok", b"status=1&n=after", "tok").unwrap()));
    let big = vec![b'x'; 16 * 1024];
    let long_query = "q=".to_owned() + &"é".repeat(400);
    for i in 0..(SAMPLE_SLOTS + 30) {
        let query = if i == SAMPLE_SLOTS + 29 { long_query.clone() } else { format!("n={i}") };
        store.count_malformed(&malformed(&query, &big)).unwrap();
    }
    store.count_malformed(&Malformed { kind: "company-auth", class: MalformedClass::ContentType, ..malformed("", b"\0") }).unwrap();
    let today = now() / DAY_MS;
    for c in store.malformed_counts().unwrap() {
        // The day the deliveries were counted: today, or yesterday when midnight UTC passed since.
        assert!(c.day == today || c.day == today - 1, "{} {today}", c.day);
        seen.push(format!("count {} {} {}", c.kind, c.class, c.count));
    }
    let samples = store.malformed_samples().unwrap();
    assert_eq!(samples.len() as i64, SAMPLE_SLOTS);
    for s in [&samples[0], &samples[samples.len() - 2], &samples[samples.len() - 1]] {
        seen.push(format!(
            "sample {} {} {} {:?} {} {} {} {} {:?}",
            s.seq, s.kind, s.class, s.reason, s.source, s.content_type, s.query.len(), s.body_len, &s.body[..s.body.len().min(4)]
        ));
        assert!(s.body.len() <= SAMPLE_BODY_BYTES);
    }
    seen
}

#[test]
fn dedup_counters_and_samples_match_sqlite() {
    let cluster = PgCluster::shared();
    let dir = tempfile::tempdir().unwrap();
    let sqlite = dedup_and_malformed(&store(Arc::new(SqliteBackend::open(&dir.path().join("cb.sqlite3")).unwrap())));
    let postgres = dedup_and_malformed(&store(open_pg(&cluster.create_db())));
    assert_eq!(postgres, sqlite);
    assert_eq!(sqlite[..4], ["New", "Retry", "New", "Retry"]);
    let over = format!("unsigned personal-auth {UNSIGNED_PER_TOKEN} OverCap");
    assert!(sqlite.contains(&over) && sqlite.contains(&"unsigned personal-auth 0 Retry".to_owned()), "{sqlite:?}");
    assert!(sqlite.contains(&"moment None None".to_owned()) && sqlite.contains(&"moment Some(5) Some(7)".to_owned()), "{sqlite:?}");
    for line in ["sweep within the window Swept { rows: 0, batches: 1 }", "sweep after it Swept { rows: 2, batches: 2 }", "counted again New"] {
        assert!(sqlite.contains(&line.to_owned()), "{line}: {sqlite:?}");
    }
    assert!(sqlite.iter().any(|l| l.starts_with("sample 32 ")), "{sqlite:?}");
}

#[test]
fn the_sweep_deletes_old_rows_in_batches_and_keeps_recent_ones() {
    let cluster = PgCluster::shared();
    let url = cluster.create_db();
    let store = store(open_pg(&url)).with_forwarding(true);
    store.record("personal-auth", "flow=new", b"mode=FACE&status=1").unwrap();
    store.count_malformed(&malformed("n=new", b"")).unwrap();
    let old = now() - 10 * DAY_MS;
    let n = 2 * SWEEP_BATCH + 7;
    cluster.query(
        &url,
        &format!(
            "INSERT INTO callbacks (kind, dedup_key, query, body, received_at)
             SELECT 'personal-auth', 'old-' || g, '', '', {old} FROM generate_series(1, {n}) g;
             INSERT INTO outbox (id, state, next_at, enqueued_at)
             SELECT id, 'delivered', {old}, {old} FROM callbacks WHERE dedup_key LIKE 'old-%' LIMIT 10;
             UPDATE malformed_samples SET received_at = {old};
             INSERT INTO malformed_counts (day, kind, class, count, last_at) VALUES ({}, 'company-auth', 'fields', 3, {old})",
            old / DAY_MS
        ),
    );
    let swept = store.sweep(Duration::from_secs(5 * 86_400)).unwrap();
    assert_eq!(swept.rows, n + 10 + 2, "callbacks, their outbox entries, the sample and the old counter");
    assert!(swept.batches >= 3, "{swept:?}");
    let kept = store.all().unwrap();
    assert_eq!(kept.len(), 1);
    assert_eq!(kept[0].query, "flow=new");
    assert_eq!(cluster.query(&url, "SELECT count(*) FROM outbox"), "1", "the new callback's entry stays");
    assert!(store.malformed_samples().unwrap().is_empty());
    let counts = store.malformed_counts().unwrap();
    assert_eq!(counts.len(), 1, "today's counter stays: {counts:?}");
    assert_eq!(store.sweep(Duration::from_secs(5 * 86_400)).unwrap().rows, 0);
}

/// The retention sweep on entries in every state, all received 10 days ago, with a 5-day
/// retention: what is left, by query and state, and how many rows went.
fn sweep_keeps_unfinished(backend: Arc<dyn CallbackBackend>) -> Vec<String> {
    let t = now();
    let old = t - 10 * DAY_MS;
    let body = "mode=FACE&status=1";
    for (query, forward) in
        [("leased", true), ("pending", true), ("failed-once", true), ("delivered", true), ("dead-long-ago", true), ("dead-lately", true), ("unqueued", false)]
    {
        let key = dedup_key("personal-auth", query, body.as_bytes());
        let delivery = Delivery { kind: "personal-auth", dedup_key: &key, query, body, received_at: old, forward, unsigned: None };
        backend.record(&delivery).unwrap();
    }
    let id: BTreeMap<String, i64> =
        backend.outbox_list(OutboxFilter::All, 0, 100).unwrap().into_iter().map(|e| (e.query, e.id)).collect();
    assert_eq!(backend.claim_due(old + 1, 100, "A", 1_000).unwrap().len(), 6);
    assert!(backend.mark_delivered(id["delivered"], old + 2).unwrap());
    assert!(backend.park_dead(id["dead-long-ago"], "A", 1, old + 3, "gone").unwrap());
    assert!(backend.park_dead(id["dead-lately"], "A", 1, t - DAY_MS, "gone").unwrap());
    assert!(backend.mark_failed(id["failed-once"], "A", 1, t + DAY_MS, "HTTP 500").unwrap());
    assert_eq!(backend.release("A").unwrap(), 2);
    // Leased now, by another forwarder (the oldest due: "leased", recorded first).
    let leased = backend.claim_due(t, 1, "B", 60_000).unwrap();
    assert_eq!(leased.iter().map(|e| e.query.as_str()).collect::<Vec<_>>(), ["leased"]);
    let swept = store(backend.clone()).sweep(Duration::from_secs(5 * 86_400)).unwrap();
    let mut lines = vec![format!("swept {}", swept.rows)];
    let left: Vec<String> = store(backend.clone()).all().unwrap().into_iter().map(|c| c.query).collect();
    for query in left {
        let entry = id.get(&query).and_then(|&i| backend.outbox_get(i).unwrap());
        lines.push(format!("{query}: {}", entry.map(|e| format!("{} {:?}", e.state, e.owner)).unwrap_or("no entry".into())));
    }
    lines
}

#[test]
fn the_sweep_never_deletes_a_callback_still_to_be_forwarded() {
    let cluster = PgCluster::shared();
    let dir = tempfile::tempdir().unwrap();
    let sqlite = sweep_keeps_unfinished(Arc::new(SqliteBackend::open(&dir.path().join("cb.sqlite3")).unwrap()));
    let expected = [
        "swept 5", // delivered and dead-long-ago with their entries, unqueued
        "leased: pending \"B\"",
        "pending: pending \"\"",
        "failed-once: pending \"\"",
        "dead-lately: dead \"\"",
    ];
    assert_eq!(sqlite, expected, "SQLite");
    assert_eq!(sweep_keeps_unfinished(open_pg(&cluster.create_db())), expected, "PostgreSQL");
}

/// The outbox contract, step by step, as a transcript (entries named by their query, not their
/// id: PostgreSQL's identity skips numbers on conflicts).
fn outbox_transcript(backend: Arc<dyn CallbackBackend>) -> Vec<String> {
    let mut t = Vec::new();
    let plain = store(backend.clone());
    let fwd = plain.clone().with_forwarding(true);
    plain.record("personal-auth", "flow=off", b"mode=FACE&status=1").unwrap();
    for i in 0..5 {
        fwd.record("personal-auth", &format!("flow={i}"), b"mode=FACE&status=1").unwrap();
    }
    fwd.record("personal-auth", "flow=0", b"mode=FACE&status=1").unwrap(); // a retry: still one entry
    let counts = backend.outbox_counts().unwrap();
    t.push(format!("{counts:?}"));
    let t0 = now();
    let name = |id: i64| backend.outbox_get(id).unwrap().map(|e| e.query).unwrap_or_else(|| format!("none {id}"));
    let a = backend.claim_due(t0 + 1000, 2, "A", 30_000).unwrap();
    let b = backend.claim_due(t0 + 1000, 10, "B", 30_000).unwrap();
    t.push(format!("A {:?}", a.iter().map(|e| (&e.query, &e.owner, e.locked_until - t0, e.deliveries, e.claim)).collect::<Vec<_>>()));
    t.push(format!("B {:?}", b.iter().map(|e| e.query.clone()).collect::<Vec<_>>()));
    t.push(format!("again {}", backend.claim_due(t0 + 1000, 10, "C", 30_000).unwrap().len()));
    t.push(format!("next_due {:?}", backend.next_due().unwrap().map(|d| d - t0)));
    let (a0, a1, b0) = (a[0].id, a[1].id, b[0].id);
    t.push(format!("payload {:?}", backend.renew_lease(a0, "A", 1, t0 + 1500, 30_000, "{\"first\":1}").unwrap()));
    t.push(format!("payload {:?}", backend.renew_lease(a0, "A", 1, t0 + 1600, 30_000, "{\"second\":2}").unwrap()));
    t.push(format!("renewed until {}", backend.outbox_get(a0).unwrap().unwrap().locked_until - t0));
    t.push(format!("renewed by B {:?}", backend.renew_lease(a0, "B", 1, t0 + 1600, 30_000, "{}").unwrap()));
    t.push(format!("renewed by A's claim 0 {:?}", backend.renew_lease(a0, "A", 0, t0 + 1600, 30_000, "{}").unwrap()));
    t.push(format!("payload of none {:?}", backend.renew_lease(-5, "A", 1, t0, 30_000, "{}").unwrap()));
    t.push(format!("failed by B {}", backend.mark_failed(a0, "B", 1, t0 + 5000, "503").unwrap()));
    t.push(format!("failed by A's claim 2 {}", backend.mark_failed(a0, "A", 2, t0 + 5000, "503").unwrap()));
    t.push(format!("failed by A {}", backend.mark_failed(a0, "A", 1, t0 + 5000, "503 Service\0Unavailable").unwrap()));
    t.push(format!("dead by B {}", backend.park_dead(a1, "B", 1, t0 + 2000, "gone").unwrap()));
    t.push(format!("dead by A's claim 0 {}", backend.park_dead(a1, "A", 0, t0 + 2000, "gone").unwrap()));
    t.push(format!("dead by A {}", backend.park_dead(a1, "A", 1, t0 + 2000, "gone").unwrap()));
    t.push(format!("delivered when dead {}", backend.mark_delivered(a1, t0 + 2001).unwrap()));
    t.push(format!("delivered {}", backend.mark_delivered(b0, t0 + 3000).unwrap()));
    t.push(format!("delivered twice {}", backend.mark_delivered(b0, t0 + 3000).unwrap()));
    t.push(format!("released B {}", backend.release("B").unwrap()));
    t.push(format!("{:?}", backend.outbox_counts().unwrap()));
    let due = backend.claim_due(t0 + 1000, 10, "D", 30_000).unwrap();
    t.push(format!("D {:?}", due.iter().map(|e| e.query.clone()).collect::<Vec<_>>()));
    let later = backend.claim_due(t0 + 40_000, 10, "E", 30_000).unwrap();
    t.push(format!("E after the leases {:?}", later.iter().map(|e| (e.query.clone(), e.attempts, e.last_error.clone(), e.payload.clone())).collect::<Vec<_>>()));
    // E's attempt outlives its lease and E itself claims the entry again: one owner, two claims.
    let again = backend.claim_due(t0 + 80_000, 1, "E", 30_000).unwrap();
    let (first, second) = (&later[0], &again[0]);
    t.push(format!("E again {} claim {} after {}", second.id == first.id, second.claim, first.claim));
    t.push(format!("E's earlier claim: renewed {:?}", backend.renew_lease(first.id, "E", first.claim, t0 + 80_001, 30_000, "{}").unwrap()));
    t.push(format!("E's earlier claim: failed {}", backend.mark_failed(first.id, "E", first.claim, t0 + 80_001, "late").unwrap()));
    t.push(format!("E's earlier claim: dead {}", backend.park_dead(first.id, "E", first.claim, t0 + 80_001, "late").unwrap()));
    t.push(format!("E's new claim: renewed {:?}", backend.renew_lease(first.id, "E", second.claim, t0 + 80_001, 30_000, "{}").unwrap()));
    t.push(format!("E's new claim: failed {}", backend.mark_failed(first.id, "E", second.claim, t0 + 80_002, "HTTP 502").unwrap()));
    // The confirmation budget spent: put back by the claim that holds it, attempts unchanged.
    let f = backend.claim_due(t0 + 200_000, 1, "F", 30_000).unwrap().remove(0);
    t.push(format!("F deferred by its earlier claim {}", backend.defer(f.id, "F", f.claim - 1, t0 + 200_001, "busy").unwrap()));
    t.push(format!("F deferred {}", backend.defer(f.id, "F", f.claim, t0 + 201_000, "busy").unwrap()));
    let e = backend.outbox_get(f.id).unwrap().unwrap();
    t.push(format!("F {} {} {} {:?} {:?}", e.state, e.attempts - f.attempts, e.next_at - t0, e.last_error, e.owner));
    t.push(format!("replay dead {}", backend.replay_dead(t0 + 50_000).unwrap()));
    let off = backend.outbox_list(OutboxFilter::All, 0, 100).unwrap().len();
    let unqueued_id = plain.all().unwrap().len(); // not an id; find it through the list below
    let _ = unqueued_id;
    let all_ids: Vec<i64> = backend.outbox_list(OutboxFilter::All, 0, 100).unwrap().iter().map(|e| e.id).collect();
    t.push(format!("listed {off} {:?}", all_ids.iter().map(|&id| name(id)).collect::<Vec<_>>()));
    t.push(format!("replay of none {}", backend.replay(-5, t0).unwrap()));
    let delivered = backend.outbox_list(OutboxFilter::State(OutboxState::Delivered), 0, 100).unwrap();
    t.push(format!("delivered {:?}", delivered.iter().map(|e| (e.query.clone(), e.finished_at.map(|f| f - t0), e.attempts)).collect::<Vec<_>>()));
    t.push(format!("replay delivered {}", backend.replay(delivered[0].id, t0 + 60_000).unwrap()));
    let e = backend.outbox_get(delivered[0].id).unwrap().unwrap();
    t.push(format!("{} {} {} {:?} {:?}", e.state, e.attempts, e.next_at - t0, e.finished_at, e.owner));
    let page = backend.outbox_list(OutboxFilter::All, all_ids[1], 2).unwrap();
    t.push(format!("page {:?}", page.iter().map(|e| e.query.clone()).collect::<Vec<_>>()));
    t.push(format!("{:?}", backend.outbox_counts().unwrap()));
    // An operator gives up on pending entries: not one a forwarder holds, then the rest in
    // batches; the held one goes once its lease has run out by the grace, and its holder can no
    // longer send it, but a delivery it made anyway is recorded. Abandoned again after a replay,
    // the marker is not repeated.
    let held = backend.claim_due(t0 + 400_000, 1, "G", 30_000).unwrap().remove(0);
    t.push(format!("abandon held {}", backend.abandon(Some(held.id), t0 + 400_001, 1).unwrap()));
    t.push(format!("abandon the rest {}", backend.abandon(None, t0 + 400_002, 3).unwrap()));
    t.push(format!("abandon the rest {}", backend.abandon(None, t0 + 400_002, 3).unwrap()));
    t.push(format!("abandon none {}", backend.abandon(Some(-5), t0 + 400_002, 1).unwrap()));
    t.push(format!("held {}", backend.outbox_get(held.id).unwrap().unwrap().state));
    t.push(format!("abandon held just after its lease {}", backend.abandon(Some(held.id), t0 + 440_000, 1).unwrap()));
    let past_grace = t0 + 430_000 + ABANDON_GRACE_MS;
    t.push(format!("abandon held past the grace {}", backend.abandon(Some(held.id), past_grace, 1).unwrap()));
    t.push(format!("G renews {:?}", backend.renew_lease(held.id, "G", held.claim, past_grace + 1, 30_000, "{}").unwrap()));
    t.push(format!("G delivered anyway {}", backend.mark_delivered(held.id, past_grace + 2).unwrap()));
    t.push(format!("G delivered twice {}", backend.mark_delivered(held.id, past_grace + 3).unwrap()));
    let failed = backend.outbox_list(OutboxFilter::State(OutboxState::Dead), 0, 100).unwrap();
    let failed = failed.iter().find(|e| e.last_error.ends_with("HTTP 502")).unwrap().id;
    t.push(format!("replayed {}", backend.replay(failed, past_grace + 4).unwrap()));
    t.push(format!("abandon again {}", backend.abandon(Some(failed), past_grace + 5, 1).unwrap()));
    let dead = backend.outbox_list(OutboxFilter::State(OutboxState::Dead), 0, 100).unwrap();
    t.push(format!(
        "dead {:?}",
        dead.iter().map(|e| (e.query.clone(), e.attempts, e.finished_at.map(|f| f - t0), e.last_error.clone())).collect::<Vec<_>>()
    ));
    t.push(format!("{:?}", backend.outbox_counts().unwrap()));
    t
}

#[test]
fn the_outbox_behaves_as_on_sqlite() {
    let cluster = PgCluster::shared();
    let dir = tempfile::tempdir().unwrap();
    let sqlite = outbox_transcript(Arc::new(SqliteBackend::open(&dir.path().join("cb.sqlite3")).unwrap()));
    let postgres = outbox_transcript(open_pg(&cluster.create_db()));
    if std::env::var_os("SHOW_TRANSCRIPT").is_some() {
        eprintln!("{}", postgres.join("\n"));
    }
    for (s, p) in sqlite.iter().zip(&postgres) {
        // NUL is stored as U+FFFD in PostgreSQL's TEXT; SQLite keeps it.
        assert_eq!(p, &s.replace('\0', "\u{FFFD}").replace("\\0", "\u{FFFD}"), "sqlite vs postgres");
    }
    assert_eq!(postgres.len(), sqlite.len());
    assert!(sqlite[0].contains("pending: 5") && sqlite[0].contains("unqueued: 1"), "{}", sqlite[0]);
    let reclaimed: Vec<&str> = sqlite.iter().filter(|l| l.starts_with("E again") || l.starts_with("E's")).map(String::as_str).collect();
    assert_eq!(reclaimed.len(), 6, "{sqlite:#?}");
    assert!(reclaimed[0].starts_with("E again true claim ") && reclaimed[1..4] == ["E's earlier claim: renewed None", "E's earlier claim: failed false", "E's earlier claim: dead false"], "{reclaimed:?}");
    assert!(reclaimed[4].starts_with("E's new claim: renewed Some(") && reclaimed[5] == "E's new claim: failed true", "{reclaimed:?}");
    let deferred: Vec<&str> = sqlite.iter().filter(|l| l.starts_with("F ")).map(String::as_str).collect();
    assert_eq!(deferred, ["F deferred by its earlier claim false", "F deferred true", "F pending 0 201000 \"busy\" \"\""]);
    assert!(sqlite.contains(&"delivered when dead false".to_owned()), "only an abandoned dead entry can be delivered: {sqlite:#?}");
    let abandoned: Vec<&str> = sqlite.iter().skip_while(|l| !l.starts_with("abandon held")).map(String::as_str).collect();
    assert_eq!(
        abandoned[..12],
        ["abandon held 0", "abandon the rest 3", "abandon the rest 1", "abandon none 0", "held pending", "abandon held just after its lease 0",
         "abandon held past the grace 1", "G renews None", "G delivered anyway true", "G delivered twice false", "replayed true", "abandon again 1"]
    );
    assert!(abandoned[12].contains("\"abandoned (qys-proxy callbacks abandon); last error: HTTP 502\")"), "{:?}", abandoned[12]);
    assert_eq!(abandoned[12].matches("abandoned (").count(), 4, "three others and the one abandoned twice, marked once: {:?}", abandoned[12]);
    assert!(abandoned[13].contains("pending: 0, delivered: 1, dead: 4"), "{:?}", abandoned[13]);
}

// ---- several instances on one database ----

#[test]
fn one_delivery_racing_on_two_instances_is_stored_once_and_counted() {
    let cluster = PgCluster::shared();
    let url = cluster.create_db();
    let instances = [open_pg(&url), open_pg(&url)];
    let start = Arc::new(Barrier::new(8));
    let results = Arc::new(Mutex::new(Vec::new()));
    let threads: Vec<_> = (0..8)
        .map(|i| {
            let s = store(instances[i % 2].clone()).with_forwarding(true);
            let (start, results) = (start.clone(), results.clone());
            std::thread::spawn(move || {
                start.wait();
                for n in 0..25 {
                    // Every thread sends flows 0..25: each flow arrives 8 times at once.
                    let r = s.record("company-auth", &format!("flow={n}"), b"status=1&actionEvent=0&requestId=r").unwrap();
                    results.lock().unwrap().push((n, r));
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let results = results.lock().unwrap();
    for n in 0..25 {
        let new = results.iter().filter(|(m, r)| *m == n && *r == Recorded::New).count();
        assert_eq!(new, 1, "flow={n} is new exactly once");
    }
    let all = store(instances[0].clone()).all().unwrap();
    assert_eq!(all.len(), 25);
    assert!(all.iter().all(|c| c.deliveries == 8), "{all:?}");
    assert_eq!(cluster.query(&url, "SELECT count(*) FROM outbox"), "25");
}

#[test]
fn concurrent_claims_from_two_instances_never_hand_out_one_entry_twice() {
    let cluster = PgCluster::shared();
    let url = cluster.create_db();
    let instances = [open_pg(&url), open_pg(&url)];
    let fwd = store(instances[0].clone()).with_forwarding(true);
    for i in 0..400 {
        fwd.record("personal-auth", &format!("flow={i}"), b"mode=FACE&status=1").unwrap();
    }
    let t0 = now() + 1000;
    // Every thread claims once before any claims again, so all six take part however the machine
    // schedules them (one thread alone could otherwise claim everything).
    let (start, first_claimed) = (Arc::new(Barrier::new(6)), Arc::new(Barrier::new(6)));
    let threads: Vec<_> = (0..6)
        .map(|i| {
            let (backend, start, first_claimed) = (instances[i % 2].clone(), start.clone(), first_claimed.clone());
            std::thread::spawn(move || {
                start.wait();
                let mut mine = Vec::new();
                loop {
                    let got = backend.claim_due(t0, 7, &format!("owner-{i}"), 60_000).unwrap();
                    if mine.is_empty() {
                        first_claimed.wait();
                    }
                    if got.is_empty() {
                        return mine;
                    }
                    assert!(got.iter().all(|e| e.owner == format!("owner-{i}")));
                    mine.extend(got.into_iter().map(|e| e.id));
                }
            })
        })
        .collect();
    let mut owners: BTreeMap<i64, usize> = BTreeMap::new();
    let mut per_thread = Vec::new();
    for t in threads {
        let ids = t.join().unwrap();
        per_thread.push(ids.len());
        for id in ids {
            *owners.entry(id).or_default() += 1;
        }
    }
    assert_eq!(owners.len(), 400, "every entry claimed");
    assert!(owners.values().all(|&n| n == 1), "no entry claimed twice while leased");
    assert!(per_thread.iter().all(|&n| n >= 7), "the work was shared: {per_thread:?}");
    // Once the leases run out, the entries are claimable again (a dead forwarder's work resumes).
    let again: HashSet<i64> = instances[1].claim_due(t0 + 60_000, 1000, "late", 60_000).unwrap().iter().map(|e| e.id).collect();
    assert_eq!(again.len(), 400);
}

#[test]
fn the_backend_is_usable_from_an_async_worker_and_dropped_there() {
    let cluster = PgCluster::shared();
    let url = cluster.create_db();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async move {
        let s = store(open_pg(&url));
        // Called on the async thread itself (not spawn_blocking): it blocks, it does not panic.
        assert_eq!(s.record("personal-auth", "flow=x", b"mode=FACE&status=1").unwrap(), Recorded::New);
        drop(s); // the backend's runtime is shut down without blocking
    });
}

// ---- QYS_DATABASE ----

#[test]
fn qys_database_takes_a_postgres_url_and_never_shows_its_password() {
    use clap::Parser;
    use qys_proxy::cli::Cli;
    let cluster = PgCluster::shared();
    let url = cluster.create_db();
    // trust authentication ignores the password; it must still appear nowhere.
    let with_password = url.replace("postgres@", "postgres:hunter2@");
    let cli = Cli::try_parse_from(["qys-proxy", "--database", &with_password]).unwrap();
    assert!(!format!("{cli:?}").contains("hunter2"));
    assert_eq!(cli.database.display(), url);
    let store = cli.callback_store().expect("the proxy's store on PostgreSQL");
    store.record("personal-auth", "flow=cli", b"mode=FACE&status=1").unwrap();
    assert_eq!(cluster.query(&url, "SELECT query FROM callbacks"), "flow=cli");
    // postgresql:// too, in any case.
    let upper = with_password.replace("postgres://", "PostgreSQL://");
    assert_eq!(Cli::try_parse_from(["qys-proxy", "--database", &upper]).unwrap().database.open().unwrap().all().unwrap().len(), 1);
    // Unreachable or malformed: the start fails, naming the database without the password.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    for bad in [format!("postgres://qys:hunter2@127.0.0.1:{port}/qys"), "postgres://qys:hunter2@h:port/qys".into()] {
        let e = Cli::try_parse_from(["qys-proxy", "--database", &bad]).unwrap().callback_store().unwrap_err();
        assert!(e.contains("QYS_DATABASE") && !e.contains("hunter2"), "{e}");
    }
    // A path is still SQLite.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cb.sqlite3");
    let cli = Cli::try_parse_from(["qys-proxy", "--database", path.to_str().unwrap()]).unwrap();
    cli.callback_store().unwrap().record("personal-auth", "flow=file", b"mode=FACE&status=1").unwrap();
    assert!(path.exists());
}

// ---- the binary on PostgreSQL: load, SIGKILL, two instances ----

mod load {
    use std::collections::{HashMap, HashSet, VecDeque};
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::{Arc, Mutex, RwLock};
    use std::time::{Duration, Instant};

    use axum::body::Bytes;
    use axum::extract::State;
    use axum::http::{HeaderMap, StatusCode};
    use qys_proxy::store::dedup_key;
    use serde_json::Value;

    use crate::binary::{self, Running};
    use crate::forwarding::signed_query;

    /// `QYS_FORWARD_SECRET` of these tests.
    pub const SECRET: &str = "postgres-test-forward-secret-0c9e7d51a3";

    /// Starts `qys-proxy` (cargo's, or `QYS_PROXY_BIN`'s) with `env` only; waits for its
    /// `proxy: <url>` line.
    pub fn start(env: &[(String, String)]) -> Running {
        let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        binary::start("warn", &[], &env, "proxy: ")
    }

    pub fn env(database: &str, receiver: &str) -> Vec<(String, String)> {
        crate::forwarding::forwarding_env(database, "127.0.0.1:0", receiver, SECRET)
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect()
    }

    /// One request as the receiver saw it.
    #[derive(Debug, Clone)]
    pub struct Hit {
        /// Milliseconds since the receiver started, when the request arrived and when it answered.
        pub start: u128,
        pub end: u128,
        pub status: u16,
        pub body: String,
    }

    #[derive(Default)]
    pub struct Seen {
        pub by_key: HashMap<String, Vec<Hit>>,
        /// Requests whose signature, timestamp or key did not verify.
        pub bad: usize,
    }

    pub struct Receiver {
        pub url: String,
        pub seen: Arc<Mutex<Seen>>,
    }


    type Shared = (Arc<Mutex<Seen>>, Instant, Duration);

    /// A request being answered: recorded when it ends, answered or cut off (a killed proxy's
    /// connection drops the handler; status 0 then), so that its interval counts too.
    struct Open {
        seen: Arc<Mutex<Seen>>,
        epoch: Instant,
        key: String,
        start: u128,
        status: u16,
        body: String,
    }

    impl Drop for Open {
        fn drop(&mut self) {
            let hit = Hit { start: self.start, end: self.epoch.elapsed().as_millis(), status: self.status, body: std::mem::take(&mut self.body) };
            self.seen.lock().unwrap_or_else(|e| e.into_inner()).by_key.entry(std::mem::take(&mut self.key)).or_default().push(hit);
        }
    }

    async fn hook(State((seen, epoch, work)): State<Shared>, headers: HeaderMap, body: Bytes) -> StatusCode {
        let start = epoch.elapsed().as_millis();
        let key = headers.get("idempotency-key").and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
        if !crate::forwarding::verify(SECRET, &headers, &body) || key.is_empty() {
            seen.lock().unwrap().bad += 1;
            return StatusCode::UNAUTHORIZED;
        }
        // A quarter of the keys fail their first try (500): retried by whichever instance claims.
        let first = !seen.lock().unwrap().by_key.contains_key(&key);
        let answer = if key.as_bytes()[0] < b'4' && first { 500 } else { 204 };
        let mut open = Open { seen, epoch, key, start, status: 0, body: String::from_utf8_lossy(&body).into_owned() };
        // The backend's work: long enough that two deliveries of one key at once would overlap.
        tokio::time::sleep(work).await;
        open.status = answer;
        StatusCode::from_u16(answer).unwrap()
    }

    pub async fn receiver(work: Duration) -> Receiver {
        let seen = Arc::new(Mutex::new(Seen::default()));
        let router =
            axum::Router::new().route("/hook", axum::routing::post(hook)).with_state((seen.clone(), Instant::now(), work));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
        Receiver { url, seen }
    }

    /// POSTs one callback to `base` until it answers `{"code":0}`; whether it did by `deadline`.
    async fn send_until_acked(client: &reqwest::Client, base: &RwLock<String>, c: &(String, String, String), deadline: Instant) -> bool {
        while Instant::now() < deadline {
            let url = format!("{}/qys/callback/{}?{}", base.read().unwrap(), c.0, signed_query(&c.0, &c.1));
            let sent = client
                .post(url)
                .header("content-type", "application/x-www-form-urlencoded")
                .body(c.2.clone())
                .timeout(Duration::from_secs(10))
                .send()
                .await;
            if let Ok(response) = sent {
                if response.status() == 200 && response.json::<Value>().await.is_ok_and(|a| a["code"] == 0) {
                    return true;
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        false
    }

    /// Ends the whole test process if a load test is still running after `limit` (a hang must
    /// fail the run, not hold CI).
    pub fn watchdog(name: &'static str, limit: Duration) {
        std::thread::spawn(move || {
            std::thread::sleep(limit);
            eprintln!("{name}: still running after {limit:?}; giving up");
            std::process::exit(101);
        });
    }

    pub fn callbacks(n: usize, tag: &str) -> Vec<(String, String, String)> {
        (0..n)
            .map(|i| {
                if i % 4 == 3 {
                    ("company-auth".into(), format!("flow={tag}-{i:04}"), format!("status=1&actionEvent=7&requestId={tag}-req-{i}"))
                } else {
                    ("personal-auth".into(), format!("flow={tag}-{i:04}"), format!("mode=FACE&status=1&authId={tag}-{i}"))
                }
            })
            .collect()
    }

    /// Sends every callback and an exact retry of it, 32 at a time, to the instances whose URLs
    /// `bases` holds (a send goes to `bases[i % len]`, its retry to the next one, half of the
    /// retries at once, half at the end). Once `kill_after` sends are acknowledged, `on_kill`
    /// runs (it kills an instance and repoints `bases`). Returns the acknowledged indexes.
    pub async fn send_all(
        callbacks: Arc<Vec<(String, String, String)>>,
        bases: Arc<Vec<RwLock<String>>>,
        kill_after: usize,
        on_kill: impl FnOnce() + Send + 'static,
    ) -> HashSet<usize> {
        let n = callbacks.len();
        let mut jobs: VecDeque<(usize, usize)> = VecDeque::new();
        for i in 0..n {
            jobs.push_back((i, i));
            if i % 2 == 0 {
                jobs.push_back((i, i + 1));
            }
        }
        jobs.extend((0..n).filter(|i| i % 2 == 1).map(|i| (i, i + 1)));
        let jobs = Arc::new(Mutex::new(jobs));
        let acked = Arc::new(AtomicUsize::new(0));
        let acked_set = Arc::new(Mutex::new(HashSet::new()));
        let deadline = Instant::now() + Duration::from_secs(240);
        let client = reqwest::Client::builder().pool_max_idle_per_host(64).build().unwrap();
        let mut workers = Vec::new();
        for _ in 0..32 {
            let (jobs, callbacks, acked, acked_set, bases, client) =
                (jobs.clone(), callbacks.clone(), acked.clone(), acked_set.clone(), bases.clone(), client.clone());
            workers.push(tokio::spawn(async move {
                loop {
                    let Some((i, to)) = jobs.lock().unwrap().pop_front() else { return };
                    if send_until_acked(&client, &bases[to % bases.len()], &callbacks[i], deadline).await {
                        acked.fetch_add(1, Ordering::Relaxed);
                        acked_set.lock().unwrap().insert(i);
                    }
                }
            }));
        }
        while acked.load(Ordering::Relaxed) < kill_after {
            assert!(Instant::now() < deadline, "only {} sends acknowledged", acked.load(Ordering::Relaxed));
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        tokio::task::spawn_blocking(on_kill).await.unwrap();
        for w in workers {
            w.await.unwrap();
        }
        assert_eq!(acked.load(Ordering::Relaxed), 2 * n, "every send acknowledged before the deadline");
        let set = acked_set.lock().unwrap().clone();
        set
    }

    /// The receiver's record checked: signatures valid, every acknowledged callback forwarded
    /// (a 2xx answered), one key per callback and one body per key, and no key delivered twice
    /// at once (its requests' [start, end] intervals never overlap). Returns (requests, keys
    /// delivered more than once).
    pub fn check(seen: &Seen, callbacks: &[(String, String, String)], acked: &HashSet<usize>) -> (usize, usize) {
        assert_eq!(seen.bad, 0, "every request's signature verified");
        let expected: HashMap<String, usize> =
            callbacks.iter().enumerate().map(|(i, (k, q, b))| (dedup_key(k, q, b.as_bytes()), i)).collect();
        let mut key_of_query: HashMap<&str, &str> = HashMap::new();
        let (mut requests, mut twice) = (0, 0);
        for (key, hits) in &seen.by_key {
            let i = *expected.get(key).unwrap_or_else(|| panic!("a key never sent: {key}"));
            let bodies: HashSet<&str> = hits.iter().map(|h| h.body.as_str()).collect();
            assert_eq!(bodies.len(), 1, "one body per key: {key}");
            let forwarded: Value = serde_json::from_str(&hits[0].body).unwrap();
            assert_eq!(forwarded["query"].as_str(), Some(callbacks[i].1.as_str()));
            assert_eq!(forwarded["idempotencyKey"].as_str(), Some(key.as_str()), "the header's key, signed in the body");
            assert!(key_of_query.insert(&callbacks[i].1, key).is_none(), "a callback under two keys");
            let mut by_start: Vec<&Hit> = hits.iter().collect();
            by_start.sort_by_key(|h| h.start);
            for pair in by_start.windows(2) {
                assert!(pair[1].start >= pair[0].end, "{key} delivered twice at once: {:?}", pair);
            }
            let ok = hits.iter().filter(|h| h.status == 204).count(); // 0: cut off by a kill
            assert!(ok >= 1, "{key}: {hits:?}");
            requests += hits.len();
            twice += usize::from(ok > 1);
        }
        for i in acked {
            let (k, q, b) = &callbacks[*i];
            assert!(seen.by_key.contains_key(&dedup_key(k, q, b.as_bytes())), "acknowledged, never forwarded: {q}");
        }
        (requests, twice)
    }
}

/// (callbacks stored, their deliveries counted).
fn stored_and_deliveries(cluster: &PgCluster, url: &str) -> (usize, usize) {
    let row = cluster.query(url, "SELECT count(*), sum(deliveries) FROM callbacks");
    let (a, b) = row.split_once('|').unwrap();
    (a.parse().unwrap(), b.parse().unwrap())
}

/// Waits (bounded) until the outbox has nothing pending; its counts then.
fn drained(backend: &PostgresBackend, within: Duration) -> qys_proxy::store::OutboxCounts {
    let deadline = std::time::Instant::now() + within;
    loop {
        let c = backend.outbox_counts().unwrap();
        if c.pending == 0 {
            return c;
        }
        assert!(std::time::Instant::now() < deadline, "the outbox did not drain: {c:?}");
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// 2,000 callbacks plus an exact retry of each, 32 at a time, to one proxy on PostgreSQL; SIGKILL
/// once 800 sends are acknowledged; restarted on the same database → every acknowledged callback
/// forwarded, signed, under one key and one body, never twice at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_acknowledged_callback_is_forwarded_across_a_sigkill_on_postgres() {
    const N: usize = 2_000;
    load::watchdog("every_acknowledged_callback_is_forwarded_across_a_sigkill_on_postgres", Duration::from_secs(600));
    let cluster = PgCluster::shared();
    let url = cluster.create_db();
    let receiver = load::receiver(Duration::from_millis(5)).await;
    let env = load::env(&url, &receiver.url);
    let first = load::start(&env);
    let bases = Arc::new(vec![std::sync::RwLock::new(first.url.clone())]);
    let callbacks = Arc::new(load::callbacks(N, "kill"));
    let started = std::time::Instant::now();
    let restarted = Arc::new(Mutex::new(None));
    let (b, r, e) = (bases.clone(), restarted.clone(), env.clone());
    let acked = load::send_all(callbacks.clone(), bases.clone(), 800, move || {
        let mut first = first;
        first.child.kill().unwrap(); // SIGKILL
        first.child.wait().unwrap();
        let again = load::start(&e);
        *b[0].write().unwrap() = again.url.clone();
        *r.lock().unwrap() = Some(again);
    })
    .await;
    let sent_in = started.elapsed();
    let backend = open_pg(&url);
    let counts = tokio::task::spawn_blocking(move || drained(&backend, Duration::from_secs(180))).await.unwrap();
    assert_eq!((counts.pending, counts.delivered, counts.dead, counts.unqueued), (0, N as i64, 0, 0));
    let (requests, twice) = load::check(&receiver.seen.lock().unwrap(), &callbacks, &acked);
    // Each callback stored once; its deliveries counted (≥ 2: a send cut off by the kill is sent again).
    let (stored, deliveries) = stored_and_deliveries(&cluster, &url);
    assert!(stored == N && deliveries >= 2 * N, "{stored} stored, {deliveries} deliveries");
    eprintln!(
        "postgres, 1 instance: {N} callbacks ×2 sent in {:.1} s with a SIGKILL and a restart; drained at {:.1} s; \
         {requests} requests, {twice} keys delivered twice (same key and body)",
        sent_in.as_secs_f64(),
        started.elapsed().as_secs_f64()
    );
    drop(restarted);
}

/// Two proxies on one database under the same load (a callback to one, its retry to the other);
/// one SIGKILLed once 800 sends are acknowledged and not restarted → the survivor forwards the
/// rest, its leases included: nothing lost, and no key delivered by both at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_instances_on_one_database_one_killed_lose_nothing_and_never_deliver_one_key_twice_at_once() {
    const N: usize = 2_000;
    load::watchdog("two_instances_on_one_database_one_killed_lose_nothing_and_never_deliver_one_key_twice_at_once", Duration::from_secs(600));
    let cluster = PgCluster::shared();
    let url = cluster.create_db();
    // 20 ms of work per delivery: two deliveries of one key at once could not hide.
    let receiver = load::receiver(Duration::from_millis(20)).await;
    let env = load::env(&url, &receiver.url);
    let (a, b) = std::thread::scope(|s| {
        let a = s.spawn(|| load::start(&env));
        let b = s.spawn(|| load::start(&env));
        (a.join().unwrap(), b.join().unwrap())
    });
    let bases = Arc::new(vec![std::sync::RwLock::new(a.url.clone()), std::sync::RwLock::new(b.url.clone())]);
    let callbacks = Arc::new(load::callbacks(N, "two"));
    let started = std::time::Instant::now();
    let seen = receiver.seen.clone();
    let forwarded_at_kill = Arc::new(Mutex::new(0));
    let (bs, fk, b_url) = (bases.clone(), forwarded_at_kill.clone(), b.url.clone());
    let acked = load::send_all(callbacks.clone(), bases.clone(), 800, move || {
        let mut a = a;
        a.child.kill().unwrap(); // SIGKILL: its leased entries wait for their lease to run out
        a.child.wait().unwrap();
        *bs[0].write().unwrap() = b_url;
        *fk.lock().unwrap() = seen.lock().unwrap().by_key.len();
    })
    .await;
    let sent_in = started.elapsed();
    let backend = open_pg(&url);
    let counts = tokio::task::spawn_blocking(move || drained(&backend, Duration::from_secs(180))).await.unwrap();
    assert_eq!((counts.pending, counts.delivered, counts.dead, counts.unqueued), (0, N as i64, 0, 0), "{}", b.log.lock().unwrap());
    let (requests, twice) = load::check(&receiver.seen.lock().unwrap(), &callbacks, &acked);
    // Each callback stored once; its deliveries counted (≥ 2: a send cut off by the kill is sent again).
    let (stored, deliveries) = stored_and_deliveries(&cluster, &url);
    assert!(stored == N && deliveries >= 2 * N, "{stored} stored, {deliveries} deliveries");
    eprintln!(
        "postgres, 2 instances: {N} callbacks ×2 sent in {:.1} s, one instance SIGKILLed ({} keys forwarded by then); \
         drained at {:.1} s; {requests} requests, {twice} keys delivered twice (never at once)",
        sent_in.as_secs_f64(),
        forwarded_at_kill.lock().unwrap(),
        started.elapsed().as_secs_f64()
    );
}
