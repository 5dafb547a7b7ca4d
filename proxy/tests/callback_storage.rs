//! Server-callback storage under attack (issue 8 item 2), over real HTTP into a real SQLite file:
//! malformed deliveries cost constant disk (counted, a bounded sample kept), well-formed ones are
//! stored once as before, each source is rate-limited on its own (clients bound to 127.0.0.2 and
//! 127.0.0.3 are other sources), the platform's four tries always pass, and old rows are swept.
//!
//! The proxy is configured through the command line (`Cli::proxy_config`), as the binary does;
//! the database is read with plain SQL.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use clap::Parser;
use qys_proxy::cli::Cli;
use qys_proxy::protocol::Action;
use qys_proxy::token::{FlowToken, TokenKey};
use qys_proxy::{proxy, Secret};
use rusqlite::Connection;
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio::task::JoinSet;

const PERSONAL: &str = "/qys/callback/personal-auth";
const COMPANY: &str = "/qys/callback/company-auth";
const FORM: &str = "application/x-www-form-urlencoded";
/// The AppSecret the proxies here derive their token key from.
const SECRET: &str = "s";
/// The receivers' largest body.
const BODY: usize = 16 * 1024;

/// A proxy on an ephemeral loopback port, configured from `args` (flags after `--database`).
struct Proxy {
    url: String,
    db: PathBuf,
    _dir: tempfile::TempDir,
}

impl Proxy {
    async fn start(args: &[&str]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("callbacks.sqlite3");
        Self::start_on(dir, db, args).await
    }

    async fn start_on(dir: tempfile::TempDir, db: PathBuf, args: &[&str]) -> Self {
        let mut argv = vec!["qys-proxy".to_owned(), "--database".into(), db.to_str().unwrap().into()];
        argv.extend(args.iter().map(|a| (*a).to_owned()));
        let cli = Cli::try_parse_from(&argv).unwrap_or_else(|e| panic!("{argv:?}: {e}"));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let bound = listener.local_addr().unwrap();
        let cfg = cli.proxy_config("http://127.0.0.1:1", "t", Secret::new(SECRET), bound, false).unwrap();
        // Served with the peer address, as `spawn_server` does.
        let app = proxy::router(cfg).into_make_service_with_connect_info::<SocketAddr>();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Proxy { url: format!("http://{bound}"), db, _dir: dir }
    }

    /// POSTs `body` to `path_query` as the platform does, through the URL the proxy issued
    /// ([`signed`]), from `client`; (HTTP status, JSON answer, Retry-After).
    async fn post(&self, client: &reqwest::Client, path_query: &str, content_type: Option<&str>, body: Vec<u8>) -> Answer {
        self.post_as_is(client, &signed(path_query), content_type, body).await
    }

    /// [`Self::post`] to `path_query` exactly as given.
    async fn post_as_is(&self, client: &reqwest::Client, path_query: &str, content_type: Option<&str>, body: Vec<u8>) -> Answer {
        let mut request = client.post(format!("{}{path_query}", self.url)).body(body);
        if let Some(ct) = content_type {
            request = request.header("content-type", ct);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let retry_after = response.headers().get("retry-after").map(|v| v.to_str().unwrap().to_owned());
        Answer { status, json: response.json().await.unwrap_or(Value::Null), retry_after }
    }

    fn sql(&self) -> Connection {
        Connection::open(&self.db).unwrap()
    }

    /// One integer from `query`.
    fn int(&self, query: &str) -> i64 {
        self.sql().query_row(query, [], |r| r.get(0)).unwrap_or_else(|e| panic!("{query}: {e}"))
    }

    /// The database's size once the WAL is folded in: page_count × page_size (and the WAL, which
    /// the checkpoint truncates, for completeness).
    fn bytes_on_disk(&self) -> u64 {
        let conn = self.sql();
        let (busy, _, _): (i64, i64, i64) =
            conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?))).unwrap();
        assert_eq!(busy, 0, "checkpoint completed");
        let pages: i64 = conn.query_row("PRAGMA page_count", [], |r| r.get(0)).unwrap();
        let page_size: i64 = conn.query_row("PRAGMA page_size", [], |r| r.get(0)).unwrap();
        let wal = std::fs::metadata(wal_path(&self.db)).map(|m| m.len()).unwrap_or(0);
        (pages * page_size) as u64 + wal
    }
}

/// `path_query` with the `sig` the proxy puts in the callback URLs it hands the platform, under
/// the key of [`Proxy::start`]'s secret.
fn signed(path_query: &str) -> String {
    let (path, query) = path_query.split_once('?').unwrap_or((path_query, ""));
    let param = |name: &str| form_urlencoded::parse(query.as_bytes()).find(|(k, _)| k == name).map(|(_, v)| v.into_owned());
    let kind = path.rsplit('/').next().unwrap();
    let sig = TokenKey::derive_from_secret(SECRET).callback_sig(kind, &param("flow").unwrap_or_default(), &param("t").unwrap_or_default());
    format!("{path_query}{}sig={sig}", if query.is_empty() { "?" } else { "&" })
}

fn wal_path(db: &Path) -> PathBuf {
    let mut wal = db.as_os_str().to_owned();
    wal.push("-wal");
    wal.into()
}

#[derive(Debug)]
struct Answer {
    status: u16,
    json: Value,
    retry_after: Option<String>,
}

/// A client whose connections come from `source` (any 127.0.0.0/8 address is loopback).
fn client_from(source: &str) -> reqwest::Client {
    reqwest::Client::builder().local_address(source.parse::<IpAddr>().unwrap()).build().unwrap()
}

/// A form body starting with `fields`, padded to exactly 16 KiB with an extra field.
fn padded(fields: &str) -> Vec<u8> {
    let mut body = format!("{fields}&pad=").into_bytes();
    assert!(body.len() < BODY);
    body.resize(BODY, b'x');
    body
}

/// Malformed delivery `i` of a flood: (path and query, Content-Type, body, counted class).
fn malformed(i: usize) -> (String, Option<&'static str>, Vec<u8>, &'static str) {
    match i % 4 {
        0 => (format!("{PERSONAL}?flow=flood-{i}"), Some("text/plain"), padded(&format!("mode=FACE&status=1&n={i}")), "content-type"),
        1 => (format!("{COMPANY}?flow=flood-{i}"), None, padded(&format!("n={i}")), "content-type"),
        2 => (format!("{PERSONAL}?flow=flood-{i}"), Some(FORM), padded(&format!("mode=TELEPATHY&status=1&n={i}")), "fields"),
        _ => (format!("{COMPANY}?flow=flood-{i}"), Some(FORM), padded(&format!("status=1&actionEvent=7&n={i}")), "fields"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_malformed_deliveries_cost_constant_disk_and_are_counted() {
    let proxy = Proxy::start(&["--callback-rate", "100000", "--callback-burst", "100000"]).await;
    let client = client_from("127.0.0.1");
    let ok = proxy.post(&client, &format!("{PERSONAL}?flow=warm"), Some(FORM), b"mode=FACE&status=1".to_vec()).await;
    assert_eq!((ok.status, ok.json.clone()), (200, json!({"code": 0})));

    let before = proxy.bytes_on_disk();
    let mut after_ring_full = 0;
    let started = Instant::now();
    for chunk in (0..1000).collect::<Vec<_>>().chunks(8) {
        let mut sent = JoinSet::new();
        for &i in chunk {
            let (proxy_url, client) = (proxy.url.clone(), client.clone());
            sent.spawn(async move {
                let (path, content_type, body, _) = malformed(i);
                let mut request = client.post(format!("{proxy_url}{}", signed(&path))).body(body);
                if let Some(ct) = content_type {
                    request = request.header("content-type", ct);
                }
                let response = request.send().await.unwrap();
                (response.status().as_u16(), response.json::<Value>().await.unwrap())
            });
        }
        while let Some(answer) = sent.join_next().await {
            let (status, json) = answer.unwrap();
            assert_eq!((status, json["code"].clone()), (200, json!(1001)), "{json}");
            assert!(!json["message"].as_str().unwrap().is_empty(), "the reason is answered");
        }
        if chunk[0] == 200 {
            after_ring_full = proxy.bytes_on_disk();
        }
    }
    let after = proxy.bytes_on_disk();
    let per_request = (after as f64 - before as f64) / 1000.0;
    eprintln!(
        "1000 malformed 16 KiB deliveries in {:?}: {before} B before, {after_ring_full} B after 200, {after} B after 1000 \
         ({per_request:.1} B per request; {:.1} B per request after the sample ring filled)",
        started.elapsed(),
        (after as f64 - after_ring_full as f64) / 800.0,
    );
    assert!(after <= before + 512 * 1024, "the whole flood grew the database by {} bytes", after - before);
    assert!(after <= after_ring_full + 16 * 1024, "800 more malformed deliveries grew it by {} bytes", after - after_ring_full);

    assert_eq!(proxy.int("SELECT COUNT(*) FROM callbacks"), 1, "only the well-formed delivery is stored");
    assert_eq!(proxy.int("SELECT SUM(count) FROM malformed_counts"), 1000);
    let today = proxy.int("SELECT CAST(strftime('%s', 'now') AS INTEGER) / 86400");
    assert!(proxy.int("SELECT MIN(day) FROM malformed_counts") >= today - 1, "one row per UTC day");
    assert!(proxy.int("SELECT COUNT(*) FROM malformed_counts") <= 8, "a few counter rows, not one per delivery");
    for (kind, class) in [("personal-auth", "content-type"), ("company-auth", "content-type"), ("personal-auth", "fields"), ("company-auth", "fields")] {
        let count = proxy.int(&format!("SELECT SUM(count) FROM malformed_counts WHERE kind = '{kind}' AND class = '{class}'"));
        assert_eq!(count, 250, "{kind} {class}");
    }
    assert_eq!(proxy.int("SELECT COUNT(*) FROM malformed_samples"), 100, "the sample keeps the last 100");
    assert_eq!(proxy.int("SELECT MIN(seq) FROM malformed_samples"), 901);
    assert_eq!(proxy.int("SELECT MAX(length(body)) FROM malformed_samples"), 2048, "samples are cut to 2 KiB");
    assert_eq!(proxy.int("SELECT MIN(body_len) FROM malformed_samples"), BODY as i64, "with the whole length noted");
    assert_eq!(proxy.int("SELECT COUNT(*) FROM malformed_samples WHERE source = '127.0.0.1'"), 100);
}

/// Forged but well-formed deliveries (issue 8 follow-up): without the `sig` of a callback URL the
/// proxy issued, a plausible callback is counted and sampled like a malformed one — a thousand
/// of them, 16 KiB each, cost constant disk — and a signed one is still stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_well_formed_deliveries_without_the_proxys_sig_cost_constant_disk() {
    let proxy = Proxy::start(&["--callback-rate", "100000", "--callback-burst", "100000"]).await;
    let client = client_from("127.0.0.1");
    let good = signed(&format!("{PERSONAL}?flow=real&t=tok"));
    let ok = proxy.post_as_is(&client, &good, Some(FORM), b"mode=FACE&status=1".to_vec()).await;
    assert_eq!((ok.status, ok.json), (200, json!({"code": 0})), "a delivery through a URL the proxy issued");
    let sig = good.rsplit_once("sig=").unwrap().1.to_owned();
    for (forged, why) in [
        (format!("{PERSONAL}?flow=real&t=tok"), "no sig"),
        (format!("{COMPANY}?flow=real&t=tok&sig={sig}"), "the sig of the other receiver"),
        (format!("{PERSONAL}?flow=other&t=tok&sig={sig}"), "another flow"),
        (format!("{PERSONAL}?flow=real&t=tok2&sig={sig}"), "another token"),
        (format!("{PERSONAL}?flow=real&sig={sig}"), "no token"),
        (format!("{PERSONAL}?flow=real&t=tok&sig={}", &sig[..21]), "a cut sig"),
        (format!("{PERSONAL}?flow=real&t=tok&sig=x{}", &sig[1..]), "an altered sig"),
        (format!("{PERSONAL}?sig={sig}&flow=real&t=tok&sig=x"), "a second sig is not read"),
    ] {
        let body = if forged.starts_with(COMPANY) { "status=1&actionEvent=7&requestId=r" } else { "mode=FACE&status=1" };
        let answer = proxy.post_as_is(&client, &forged, Some(FORM), body.as_bytes().to_vec()).await;
        let expected = if why == "a second sig is not read" { 0 } else { 1001 };
        assert_eq!((answer.status, answer.json["code"].clone()), (200, json!(expected)), "{why}: {answer:?}");
        if expected == 1001 {
            assert!(answer.json["message"].as_str().unwrap().contains("sig"), "{why}: {answer:?}");
        }
    }
    assert_eq!(proxy.int("SELECT COUNT(*) FROM callbacks"), 1, "the signed delivery and its reordered retry only…");
    assert_eq!(proxy.int("SELECT deliveries FROM callbacks"), 2, "…one row: the stored query has no sig");
    assert_eq!(proxy.int("SELECT SUM(count) FROM malformed_counts WHERE class = 'unsigned'"), 7);

    let before = proxy.bytes_on_disk();
    for chunk in (0..1000).collect::<Vec<_>>().chunks(8) {
        let mut sent = JoinSet::new();
        for &i in chunk {
            let (proxy_url, client) = (proxy.url.clone(), client.clone());
            sent.spawn(async move {
                let body = padded(&format!("mode=FACE&status=1&authId=forged-{i}"));
                let response = client
                    .post(format!("{proxy_url}{PERSONAL}?flow=forged-{i}&t=made-up&sig=AAAAAAAAAAAAAAAAAAAAAA"))
                    .header("content-type", FORM)
                    .body(body)
                    .send()
                    .await
                    .unwrap();
                (response.status().as_u16(), response.json::<Value>().await.unwrap())
            });
        }
        while let Some(answer) = sent.join_next().await {
            let (status, json) = answer.unwrap();
            assert_eq!((status, json["code"].clone()), (200, json!(1001)), "{json}");
        }
    }
    let after = proxy.bytes_on_disk();
    eprintln!("1000 forged 16 KiB deliveries: {before} B before, {after} B after");
    assert!(after <= before + 512 * 1024, "the forged flood grew the database by {} bytes", after - before);
    assert_eq!(proxy.int("SELECT COUNT(*) FROM callbacks"), 1, "none of them stored");
    assert_eq!(proxy.int("SELECT SUM(count) FROM malformed_counts WHERE class = 'unsigned'"), 1007);
    assert_eq!(proxy.int("SELECT COUNT(*) FROM malformed_samples WHERE class = 'unsigned'"), 100, "the sample ring holds them");
}

/// The callback URL's flow token (`t`) of an `action` flow with `state`, as a proxy whose
/// AppSecret is `secret` sealed it `age` seconds ago (with the default 1,800 s lifetime).
fn flow_token(secret: &str, action: Action, state: &str, age: u64) -> String {
    let token = FlowToken {
        action,
        state: state.to_owned(),
        target_origin: "https://shop.example".into(),
        subject: if action == Action::EnterpriseAuth { "甲公司".into() } else { String::new() },
        contact: "13700000044".into(),
        expires: qys_proxy::unix_millis() / 1000 - age + 1800,
        return_url: None,
    };
    TokenKey::derive_from_secret(secret).seal(&token)
}

/// Upgrading from the version before sigs (issue 8 follow-up): its callback URLs were
/// `?flow=<state>&t=<flow token>`, and the platform delivers to them long after (a company's
/// manual review, retries). The first sig-aware start records when sigs became required; a
/// delivery without `sig` is stored when its token, of this key, this kind and this `flow`, was
/// issued before that; one minted since is `unsigned`, so nobody can make a new one pass.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callback_urls_issued_before_sigs_were_required_are_still_stored() {
    let started = qys_proxy::unix_millis() as i64;
    let proxy = Proxy::start(&[]).await;
    let since = proxy.int("SELECT value FROM meta WHERE name = 'sigs_required_since'");
    assert!((started..=qys_proxy::unix_millis() as i64).contains(&since), "recorded at the first start: {since}");
    let client = client_from("127.0.0.1");
    let (personal_body, company_body) = (b"mode=FACE&status=1".to_vec(), b"status=1&actionEvent=7&requestId=r-old".to_vec());
    let old_personal = format!("{PERSONAL}?flow=old-personal&t={}", flow_token(SECRET, Action::PersonalAuth, "old-personal", 3600));
    let old_company = format!("{COMPANY}?flow=old-company&t={}", flow_token(SECRET, Action::EnterpriseAuth, "old-company", 3 * 86_400));
    for (path, body) in [(&old_personal, &personal_body), (&old_company, &company_body), (&old_personal, &personal_body)] {
        let ok = proxy.post_as_is(&client, path, Some(FORM), body.clone()).await;
        assert_eq!((ok.status, ok.json), (200, json!({"code": 0})), "{path}");
    }
    assert_eq!(proxy.int("SELECT COUNT(*) FROM callbacks"), 2);
    assert_eq!(proxy.int("SELECT deliveries FROM callbacks WHERE kind = 'personal-auth'"), 2, "a retry");

    let old = flow_token(SECRET, Action::PersonalAuth, "old-personal", 3600);
    let other_key = flow_token("another secret", Action::PersonalAuth, "old-personal", 3600);
    let sig = TokenKey::derive_from_secret(SECRET).callback_sig("personal-auth", "old-personal", &old);
    let wrong_sig = format!("{}{}", if sig.starts_with('A') { 'B' } else { 'A' }, &sig[1..]);
    for (path, why) in [
        (format!("{PERSONAL}?flow=new&t={}", flow_token(SECRET, Action::PersonalAuth, "new", 0)), "a token minted now"),
        (format!("{PERSONAL}?flow=other&t={old}"), "another flow's token"),
        (format!("{COMPANY}?flow=old-personal&t={old}"), "a personal-auth token at the company receiver"),
        (format!("{PERSONAL}?flow=old-personal&t={other_key}"), "another key's token"),
        (format!("{PERSONAL}?flow=old-personal&t={old}&sig={wrong_sig}"), "a wrong sig is not made good by an old token"),
        (format!("{PERSONAL}?flow=old-personal"), "no token"),
    ] {
        let body = if path.starts_with(COMPANY) { company_body.clone() } else { personal_body.clone() };
        let refused = proxy.post_as_is(&client, &path, Some(FORM), body).await;
        assert_eq!((refused.status, refused.json["code"].clone()), (200, json!(1001)), "{why}: {refused:?}");
    }
    assert_eq!(proxy.int("SELECT SUM(count) FROM malformed_counts WHERE class = 'unsigned'"), 6);

    // Later starts keep the first start's moment, so the old URLs keep working.
    let Proxy { db, _dir, .. } = proxy;
    let again = Proxy::start_on(_dir, db, &[]).await;
    assert_eq!(again.int("SELECT value FROM meta WHERE name = 'sigs_required_since'"), since);
    let ok = again.post_as_is(&client, &old_company, Some(FORM), company_body).await;
    assert_eq!((ok.status, ok.json), (200, json!({"code": 0})));
}

/// `qys-proxy callbacks require-sigs --at` moves the moment (a rolling upgrade ends after the
/// first new instance started), and a running instance goes by the moved one at its next delivery.
/// Later by more than `QYS_RETURN_TOKEN_TTL` only with `--force`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn callbacks_require_sigs_moves_the_moment_for_running_instances() {
    let proxy = Proxy::start(&[]).await;
    let require_sigs_with = |db: &Path, at: &str, more: &[&str]| {
        let args = ["qys-proxy", "--database", db.to_str().unwrap(), "callbacks", "require-sigs", "--at", at];
        let cli = Cli::try_parse_from(args.iter().chain(more)).unwrap();
        let Some(qys_proxy::cli::Command::Callbacks(command)) = &cli.command else { panic!("not a callbacks command") };
        let ttl = Duration::from_secs(cli.return_token_ttl);
        qys_proxy::forward::admin::execute(cli.database.open().unwrap().backend().as_ref(), command, ttl)
    };
    let require_sigs = |db: &Path, at: &str| require_sigs_with(db, at, &[]);
    let client = client_from("127.0.0.1");
    let path = format!("{PERSONAL}?flow=hour-old&t={}", flow_token(SECRET, Action::PersonalAuth, "hour-old", 3600));
    let deliver = |n: u32| proxy.post_as_is(&client, &path, Some(FORM), format!("mode=FACE&status=1&n={n}").into_bytes());
    assert_eq!(deliver(1).await.json, json!({"code": 0}), "issued an hour before the first start");

    let two_hours_ago = qys_proxy::store::now() - 7_200_000;
    let moved = require_sigs(&proxy.db, &qys_proxy::forward::admin::iso(two_hours_ago)).unwrap();
    assert!(moved.contains(&format!(" -> {}", qys_proxy::forward::admin::iso(two_hours_ago))), "{moved}");
    assert_eq!(proxy.int("SELECT value FROM meta WHERE name = 'sigs_required_since'"), two_hours_ago);
    assert_eq!(deliver(2).await.json["code"], 1001, "issued after the moved moment");
    let too_far = require_sigs(&proxy.db, "now").unwrap_err();
    assert!(too_far.contains("more than QYS_RETURN_TOKEN_TTL (1800 s) after the recorded moment"), "{too_far}");
    assert!(require_sigs_with(&proxy.db, "now", &["--return-token-ttl", "7000"]).is_err(), "two hours are more than 7,000 s");
    assert_eq!(proxy.int("SELECT value FROM meta WHERE name = 'sigs_required_since'"), two_hours_ago, "left as it was");
    assert_eq!(deliver(3).await.json["code"], 1001);
    require_sigs_with(&proxy.db, "now", &["--force"]).unwrap();
    assert_eq!(deliver(4).await.json, json!({"code": 0}), "before it again");
    let ten_minutes_ago = qys_proxy::store::now() - 600_000;
    require_sigs(&proxy.db, &qys_proxy::forward::admin::iso(ten_minutes_ago)).unwrap();
    require_sigs(&proxy.db, "now").expect("ten minutes later: within QYS_RETURN_TOKEN_TTL");
    require_sigs_with(&proxy.db, &qys_proxy::forward::admin::iso(two_hours_ago), &["--return-token-ttl", "60"]).expect("earlier: always");

    let tomorrow = qys_proxy::forward::admin::iso(qys_proxy::store::now() + 86_400_000);
    assert!(require_sigs(&proxy.db, &tomorrow).unwrap_err().contains("in the future"));
    assert!(require_sigs(&proxy.db, "2026-11-26").unwrap_err().contains("expected YYYY-MM-DDTHH:MM:SS"));
    let fresh = proxy.db.with_file_name("fresh.sqlite3");
    assert!(require_sigs(&fresh, "2026-11-26T08:00:00+08:00").unwrap().starts_with("sigs_required_since: (none) -> 2026-11-26T00:00:00.000Z"));
}

/// A `sig` never expires, so it is not kept anywhere it could leak from (issue 8 follow-up): the
/// stored query (forwarded, listed by `callbacks list/show`) and the malformed samples carry the
/// URL without it; a retry still finds its row.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sig_is_neither_stored_nor_sampled() {
    let proxy = Proxy::start(&[]).await;
    let client = client_from("127.0.0.1");
    for _ in 0..2 {
        let ok = proxy.post(&client, &format!("{PERSONAL}?flow=abc&t=tok"), Some(FORM), b"mode=FACE&status=1".to_vec()).await;
        assert_eq!((ok.status, ok.json), (200, json!({"code": 0})));
    }
    let stored: String = proxy.sql().query_row("SELECT query FROM callbacks", [], |r| r.get(0)).unwrap();
    assert_eq!((stored.as_str(), proxy.int("SELECT deliveries FROM callbacks")), ("flow=abc&t=tok", 2));
    for (query, content_type) in [("flow=abc&t=tok", "text/plain"), ("s%69g=1&flow=abc&t=tok&x=%26sig%3D", FORM)] {
        let bad = proxy.post(&client, &format!("{PERSONAL}?{query}"), Some(content_type), b"mode=FACE".to_vec()).await;
        assert_eq!(bad.json["code"], 1001, "{bad:?}");
    }
    let sampled: Vec<String> =
        proxy.sql().prepare("SELECT query FROM malformed_samples ORDER BY seq").unwrap().query_map([], |r| r.get(0)).unwrap().collect::<Result<_, _>>().unwrap();
    assert_eq!(sampled, ["flow=abc&t=tok", "flow=abc&t=tok&x=%26sig%3D"], "every sig parameter gone, whatever its spelling; the others as sent");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn well_formed_deliveries_are_stored_once_before_the_answer_and_malformed_ones_are_not() {
    let proxy = Proxy::start(&[]).await;
    let client = client_from("127.0.0.1");
    let personal = format!("{PERSONAL}?flow=abc");
    let ok = proxy.post(&client, &personal, Some(FORM), b"mode=FACE&status=1".to_vec()).await;
    assert_eq!((ok.status, ok.json), (200, json!({"code": 0})));
    assert_eq!(proxy.int("SELECT COUNT(*) FROM callbacks WHERE query = 'flow=abc'"), 1, "committed before the answer");
    let retry = proxy.post(&client, &personal, Some("application/x-www-form-urlencoded; charset=UTF-8"), b"mode=FACE&status=1".to_vec()).await;
    assert_eq!((retry.status, retry.json), (200, json!({"code": 0})), "a retry");
    let info = form_urlencoded::Serializer::new(String::new())
        .append_pair("status", "1")
        .append_pair("actionEvent", "7")
        .append_pair("requestId", "r-1")
        .append_pair("authInfo", r#"{"name":"杭州测试","registerNo":"1","legalPerson":"韩"}"#)
        .finish();
    let ok = proxy.post(&client, COMPANY, Some(FORM), info.into_bytes()).await;
    assert_eq!((ok.status, ok.json), (200, json!({"code": 0})));

    for (path, content_type, body, reason) in [
        (personal.clone(), Some(FORM), b"mode=TELEPATHY&status=1".to_vec(), "mode"),
        (COMPANY.to_owned(), Some(FORM), b"status=1&actionEvent=7".to_vec(), "requestId"),
        (personal.clone(), Some("application/json"), br#"{"mode":"FACE","status":"1"}"#.to_vec(), "Content-Type"),
        (format!("{PERSONAL}?flow={}", "q".repeat(3000)), Some(FORM), b"mode=FACE&status=1".to_vec(), "query"),
    ] {
        let bad = proxy.post(&client, &path, content_type, body).await;
        assert_eq!((bad.status, bad.json["code"].clone()), (200, json!(1001)), "{bad:?}");
        assert!(bad.json["message"].as_str().unwrap().contains(reason), "{bad:?}");
    }
    let too_large = proxy.post(&client, &personal, Some(FORM), vec![b'x'; BODY + 1]).await;
    assert_eq!((too_large.status, too_large.json["code"].clone()), (413, json!(41300)));

    assert_eq!(proxy.int("SELECT COUNT(*) FROM callbacks"), 2, "well-formed deliveries only");
    assert_eq!(proxy.int("SELECT deliveries FROM callbacks WHERE query = 'flow=abc'"), 2);
    assert_eq!(proxy.int("SELECT COUNT(*) FROM callbacks WHERE error <> ''"), 0);
    assert_eq!(proxy.int("SELECT COUNT(*) FROM callbacks WHERE kind = 'company-auth' AND body LIKE '%authInfo%'"), 1);
    let classes: Vec<(String, String, i64)> = proxy
        .sql()
        .prepare("SELECT kind, class, count FROM malformed_counts ORDER BY kind, class")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let expected = [("company-auth", "fields", 1), ("personal-auth", "content-type", 1), ("personal-auth", "fields", 1), ("personal-auth", "query", 1), ("personal-auth", "too-large", 1)];
    assert_eq!(classes, expected.map(|(k, c, n)| (k.to_owned(), c.to_owned(), n)));
    assert_eq!(proxy.int("SELECT MAX(length(query)) FROM malformed_samples"), 512, "a long query is cut in the sample");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_source_over_its_rate_gets_429_and_writes_nothing_while_other_sources_pass() {
    let proxy = Proxy::start(&["--callback-rate", "0.01", "--callback-burst", "10"]).await;
    let attacker = client_from("127.0.0.1");
    let mut answers = Vec::new();
    for i in 0..30 {
        let body = format!("mode=FACE&status=1&n={i}").into_bytes();
        answers.push(proxy.post(&attacker, &format!("{PERSONAL}?flow=burst-{i}"), Some(FORM), body).await);
    }
    assert!(answers[..10].iter().all(|a| (a.status, &a.json) == (200, &json!({"code": 0}))), "the burst: {answers:?}");
    for refused in &answers[10..] {
        assert_eq!((refused.status, refused.json["code"].clone()), (429, json!(42900)), "{refused:?}");
        assert!(!refused.json["message"].as_str().unwrap().is_empty());
        assert!(refused.retry_after.as_deref().is_some_and(|s| s.parse::<u64>().unwrap() >= 1), "{refused:?}");
    }
    assert_eq!(proxy.int("SELECT COUNT(*) FROM callbacks"), 10, "nothing stored past the burst");

    // Nothing at all is written for a refused delivery, malformed or not.
    let watcher = proxy.sql();
    let version = |c: &Connection| c.query_row("PRAGMA data_version", [], |r| r.get::<_, i64>(0)).unwrap();
    let (seen, wal) = (version(&watcher), std::fs::metadata(wal_path(&proxy.db)).unwrap().len());
    for i in 0..20 {
        let (path, content_type, body, _) = malformed(i);
        assert_eq!(proxy.post(&attacker, &path, content_type, body).await.status, 429);
    }
    assert_eq!(version(&watcher), seen, "no transaction was committed");
    assert_eq!(std::fs::metadata(wal_path(&proxy.db)).unwrap().len(), wal);
    assert_eq!(proxy.int("SELECT COUNT(*) FROM malformed_counts"), 0);

    // Another source has its own bucket: the platform's four tries of one callback all pass…
    let platform = client_from("127.0.0.2");
    let path = format!("{PERSONAL}?flow=platform");
    for _ in 0..2 {
        let (first, second) = tokio::join!(
            proxy.post(&platform, &path, Some(FORM), b"mode=BANK&status=2".to_vec()),
            proxy.post(&platform, &path, Some(FORM), b"mode=BANK&status=2".to_vec()),
        );
        for answer in [first, second] {
            assert_eq!((answer.status, answer.json), (200, json!({"code": 0})));
        }
    }
    assert_eq!(proxy.int("SELECT deliveries FROM callbacks WHERE query = 'flow=platform'"), 4);
    // …and its malformed deliveries are still counted and answered 1001.
    let (path, content_type, body, _) = malformed(2);
    let bad = proxy.post(&platform, &path, content_type, body).await;
    assert_eq!((bad.status, bad.json["code"].clone()), (200, json!(1001)));
    assert_eq!(proxy.int("SELECT COUNT(*) FROM malformed_samples WHERE source = '127.0.0.2'"), 1);
    assert_eq!(proxy.post(&attacker, &format!("{PERSONAL}?flow=late"), Some(FORM), b"mode=FACE&status=1".to_vec()).await.status, 429);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_platforms_four_tries_are_never_limited() {
    // Defaults: a spike of 25 callbacks from the platform's address, each tried four times with
    // no pause at all (worse than the platform: its last two tries come a minute later).
    let proxy = Proxy::start(&[]).await;
    let platform = client_from("127.0.0.2");
    for n in 0..25 {
        let path = format!("{COMPANY}?flow=spike-{n}");
        let body = format!("status=1&actionEvent=0&requestId=r-{n}").into_bytes();
        for _ in 0..2 {
            let (first, second) = tokio::join!(
                proxy.post(&platform, &path, Some(FORM), body.clone()),
                proxy.post(&platform, &path, Some(FORM), body.clone()),
            );
            for answer in [first, second] {
                assert_eq!((answer.status, answer.json), (200, json!({"code": 0})), "callback {n}");
            }
        }
    }
    assert_eq!(proxy.int("SELECT COUNT(*) FROM callbacks WHERE deliveries = 4"), 25);
    // The defaults do limit: a flood from another address is refused once its burst is spent.
    // Its bucket refills meanwhile (5 a second), by more on a slow machine: what passed is checked
    // against the burst plus the refill of the time the flood took.
    let defaults = qys_proxy::store::RateLimit::default();
    let flood = client_from("127.0.0.3");
    let (sent, flood_started) = (300, Instant::now());
    let mut refused = 0;
    for i in 0..sent {
        let body = format!("mode=FACE&status=1&n={i}").into_bytes();
        if proxy.post(&flood, &format!("{PERSONAL}?flow=flood-{i}"), Some(FORM), body).await.status == 429 {
            refused += 1;
        }
    }
    let took = flood_started.elapsed();
    let allowed = f64::from(defaults.burst) + (defaults.per_second * took.as_secs_f64()).ceil();
    assert!(refused > 0 && (sent - refused) as f64 <= allowed, "{refused} of {sent} refused in {took:?} with the default limit");

    // The smallest burst allowed still holds one callback's four tries, with no refill at all.
    let tight = Proxy::start(&["--callback-rate", "0.0001", "--callback-burst", "4"]).await;
    let path = format!("{PERSONAL}?flow=tight");
    for try_no in 1..=4 {
        let answer = tight.post(&platform, &path, Some(FORM), b"mode=IVS&status=1".to_vec()).await;
        assert_eq!((answer.status, answer.json), (200, json!({"code": 0})), "try {try_no}");
    }
    assert_eq!(tight.post(&platform, &path, Some(FORM), b"mode=IVS&status=1".to_vec()).await.status, 429);
    let db = tight.db.with_file_name("unused.sqlite3");
    let cli = Cli::try_parse_from(["qys-proxy", "--database", db.to_str().unwrap(), "--callback-burst", "3"]).unwrap();
    assert!(cli.callback_store().unwrap_err().contains("at least 4"), "a smaller burst is refused at start");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_retention_sweep_deletes_old_rows_and_keeps_recent_ones() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("callbacks.sqlite3");
    drop(qys_proxy::store::CallbackStore::open(&db).unwrap());
    const DAY: i64 = 86_400_000;
    let now = i64::try_from(qys_proxy::unix_millis()).unwrap();
    let (old, recent) = (now - 31 * DAY, now - 29 * DAY);
    {
        let mut conn = Connection::open(&db).unwrap();
        let tx = conn.transaction().unwrap();
        for (n, at) in (0..1200).map(|n| (n, old)).chain((1200..1210).map(|n| (n, recent))) {
            tx.execute(
                "INSERT INTO callbacks (kind, dedup_key, query, body, error, received_at) VALUES ('personal-auth', ?1, ?2, 'mode=FACE&status=1', '', ?3)",
                rusqlite::params![format!("k{n}"), format!("flow=f{n}"), at],
            )
            .unwrap();
        }
        for (slot, at) in [(1, old), (2, recent)] {
            tx.execute(
                "INSERT INTO malformed_samples (slot, seq, kind, class, reason, source, content_type, query, body, body_len, received_at)
                 VALUES (?1, ?1, 'personal-auth', 'fields', 'mode is required', '192.0.2.1', '', '', x'', 0, ?2)",
                rusqlite::params![slot, at],
            )
            .unwrap();
        }
        for at in [old, recent] {
            tx.execute(
                "INSERT INTO malformed_counts (day, kind, class, count, last_at) VALUES (?1, 'company-auth', 'content-type', 7, ?2)",
                rusqlite::params![at / DAY, at],
            )
            .unwrap();
        }
        tx.commit().unwrap();
    }
    // The proxy sweeps when it starts (then hourly).
    let proxy = Proxy::start_on(dir, db, &["--callback-retention-days", "30"]).await;
    let deadline = Instant::now() + Duration::from_secs(20);
    while proxy.int("SELECT COUNT(*) FROM callbacks") > 10 {
        assert!(Instant::now() < deadline, "old rows were not swept");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let ok = proxy.post(&client_from("127.0.0.1"), &format!("{PERSONAL}?flow=new"), Some(FORM), b"mode=FACE&status=1".to_vec()).await;
    assert_eq!((ok.status, ok.json), (200, json!({"code": 0})));
    let deadline = Instant::now() + Duration::from_secs(20);
    while proxy.int("SELECT COUNT(*) FROM malformed_counts") > 1 {
        assert!(Instant::now() < deadline, "old counters were not swept");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(proxy.int(&format!("SELECT COUNT(*) FROM callbacks WHERE received_at < {}", now - 30 * DAY)), 0);
    assert_eq!(proxy.int(&format!("SELECT COUNT(*) FROM callbacks WHERE received_at = {recent}")), 10, "recent rows kept");
    assert_eq!(proxy.int("SELECT COUNT(*) FROM callbacks WHERE query = 'flow=new'"), 1);
    assert_eq!(proxy.int("SELECT COUNT(*) FROM malformed_samples"), 1);
    assert_eq!(proxy.int("SELECT received_at FROM malformed_samples"), recent);
    assert_eq!(proxy.int("SELECT last_at FROM malformed_counts"), recent);
    let db = proxy.db.with_file_name("unused.sqlite3");
    let cli = Cli::try_parse_from(["qys-proxy", "--database", db.to_str().unwrap(), "--callback-retention-days", "0"]).unwrap();
    assert!(cli.callback_store().unwrap_err().contains("QYS_CALLBACK_RETENTION_DAYS"));
}
