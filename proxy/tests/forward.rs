//! Forwarding server callbacks to the integrator's backend (issue 9), against the real binary:
//! - 2,000 callbacks, each sent twice (exact retries), concurrently; the proxy is killed with
//!   SIGKILL mid-run and restarted on the same database; a real receiver (axum) verifies every
//!   signature, counts by `Idempotency-Key` and answers 500 to the first tries of a quarter of
//!   the keys → every acknowledged callback forwarded at least once, one key and one body each;
//! - the sandbox's own callbacks (seed 004's four tries, one of them across a proxy restart)
//!   forwarded with `"verified": true`; forged ones with `"verified": false` and why; the
//!   README's Node verifier as the receiver, its Python and Java verifiers on the same deliveries;
//! - entries parked as dead after the give-up age, listed, replayed from the command line.

mod common;

use std::collections::{HashMap, HashSet, VecDeque};
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use base64::Engine;
use common::binary::{self, Running};
use common::forwarding::signed_query;
use common::{open, posted_message, state};
use qys_proxy::forward::{self, ForwardSettings};
use qys_proxy::platform::Platform;
use qys_proxy::proxy::ConfirmLimits;
use qys_proxy::store::{dedup_key, CallbackStore};
use qys_proxy::token::TokenKey;
use serde_json::{json, Value};

/// `QYS_FORWARD_SECRET` of these tests (at least 32 characters).
const SECRET: &str = "forward-test-secret-6b0f2e1c9d8a7f65";
const TOKEN: &str = "forward-test-token";
const APP_SECRET: &str = "forward-test-app-secret-51aa";

/// The repository's root.
fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

// ---- the binary ----

/// The binary with `RUST_LOG=warn`.
fn command(args: &[&str], env: &[(&str, &str)]) -> Command {
    binary::command("warn", args, env)
}

/// Starts the binary and waits for the line announcing `label`; output is collected.
fn start(args: &[&str], env: &[(&str, &str)], label: &str) -> Running {
    binary::start("warn", args, env, label)
}

/// `qys-proxy callbacks …` on `db`; its stdout (it must succeed).
fn callbacks_cli(db: &Path, args: &[&str]) -> String {
    let mut all = vec!["callbacks"];
    all.extend_from_slice(args);
    let out = command(&all, &[("QYS_DATABASE", db.to_str().unwrap())]).output().unwrap();
    assert!(out.status.success(), "callbacks {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

/// The outbox's counts, through the command line.
fn counts(db: &Path) -> Value {
    let listed: Value = serde_json::from_str(&callbacks_cli(db, &["list", "--json", "--limit", "0"])).unwrap();
    listed["counts"].clone()
}

/// Waits (bounded, 30 s) until `n` entries are recorded delivered: the receiver prints its line
/// before the forwarder has its answer, let alone has recorded it.
fn recorded(db: &Path, n: u64) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while counts(db)["delivered"] != n {
        assert!(Instant::now() < deadline, "the deliveries were not recorded: {}", counts(db));
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Waits (bounded) until nothing is pending; the final counts.
fn drained(db: &Path, within: Duration) -> Value {
    let deadline = Instant::now() + within;
    loop {
        let c = counts(db);
        if c["pending"] == 0 {
            return c;
        }
        assert!(Instant::now() < deadline, "the outbox did not drain: {c}");
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// A loopback port kept for a test: bound (`SO_REUSEADDR`) but not listening. The binary binds and
/// listens on it beside this socket; while it is down (killed, not yet restarted), no connection
/// of this machine can be given the port as its own, so the restart finds it free, and
/// connections to it are refused as to any closed port.
fn reserved_port() -> (tokio::net::TcpSocket, u16) {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_reuseaddr(true).unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let port = socket.local_addr().unwrap().port();
    (socket, port)
}

fn forward_env<'a>(db: &'a str, listen: &'a str, receiver: &'a str) -> Vec<(&'a str, &'a str)> {
    common::forwarding::forwarding_env(db, listen, receiver, SECRET)
}

// ---- a backend in Rust: verifies, counts, fails some first tries ----

/// Whether the receiver answers 500 to try `n` (1-based) of `key`.
type FailRule = Box<dyn Fn(&str, usize) -> bool + Send + Sync>;

#[derive(Default)]
struct Seen {
    /// Per Idempotency-Key: each try's answer and body.
    by_key: HashMap<String, Vec<(u16, String)>>,
    /// Requests whose signature or timestamp did not verify.
    bad: usize,
}

struct Backend {
    url: String,
    seen: Arc<Mutex<Seen>>,
    fail: Arc<RwLock<FailRule>>,
}


/// The receiver's state: what it saw, and when it fails.
type HookState = (Arc<Mutex<Seen>>, Arc<RwLock<FailRule>>);

async fn hook(State(b): State<HookState>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let (seen, fail) = b;
    let ok = common::forwarding::verify(SECRET, &headers, &body) && headers.get("content-type").is_some_and(|v| v == "application/json");
    let key = headers.get("idempotency-key").and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
    let mut seen = seen.lock().unwrap();
    if !ok || key.is_empty() {
        seen.bad += 1;
        return StatusCode::UNAUTHORIZED;
    }
    let tries = seen.by_key.entry(key.clone()).or_default();
    let status = if (fail.read().unwrap())(&key, tries.len() + 1) { 500 } else { 204 };
    tries.push((status, String::from_utf8(body.to_vec()).unwrap()));
    StatusCode::from_u16(status).unwrap()
}

async fn backend(fail: FailRule) -> Backend {
    let seen = Arc::new(Mutex::new(Seen::default()));
    let fail = Arc::new(RwLock::new(fail));
    let router = axum::Router::new().route("/hook", axum::routing::post(hook)).with_state((seen.clone(), fail.clone()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    Backend { url, seen, fail }
}

// ---- the platform's side: sending callbacks until acknowledged ----

/// POSTs one callback to the proxy at `base` (re-read on every try: the proxy restarts on another
/// port) until it answers `{"code":0}`; whether it did before `deadline`.
async fn send_until_acked(client: &reqwest::Client, base: &RwLock<String>, kind: &str, query: &str, body: &str, deadline: Instant) -> bool {
    while Instant::now() < deadline {
        let url = format!("{}/qys/callback/{kind}?{}", base.read().unwrap(), signed_query(kind, query));
        let sent = client
            .post(url)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body.to_owned())
            .timeout(Duration::from_secs(10))
            .send()
            .await;
        if let Ok(response) = sent {
            if response.status() == 200 {
                if let Ok(answer) = response.json::<Value>().await {
                    if answer["code"] == 0 {
                        return true;
                    }
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

/// 2,000 callbacks (a quarter company-auth) plus an exact retry of each, 32 at a time; SIGKILL
/// once 800 sends are acknowledged, restart on the same database; drained → each forwarded.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn every_acknowledged_callback_is_forwarded_across_a_sigkill() {
    const N: usize = 2_000;
    // A quarter of the keys (by their first hex digit) get 500 on their first two tries.
    let backend = backend(Box::new(|key: &str, n| key.as_bytes()[0] < b'4' && n <= 2)).await;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("callbacks.sqlite3");
    let db_str = db.to_str().unwrap().to_owned();
    let env: Vec<(String, String)> = forward_env(&db_str, "127.0.0.1:0", &backend.url)
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
    let start_proxy = {
        let env = env.clone();
        move || {
            let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
            start(&[], &env, "proxy: ")
        }
    };
    let proxy = Arc::new(Mutex::new(Some(tokio::task::block_in_place(&start_proxy))));
    let base = Arc::new(RwLock::new(proxy.lock().unwrap().as_ref().unwrap().url.clone()));

    let callbacks: Vec<(&'static str, String, String)> = (0..N)
        .map(|i| {
            if i % 4 == 3 {
                ("company-auth", format!("flow=load-{i:04}"), format!("status=1&actionEvent=7&requestId=load-req-{i}"))
            } else {
                ("personal-auth", format!("flow=load-{i:04}"), format!("mode=FACE&status=1&authId=load-{i}"))
            }
        })
        .collect();
    // Each callback twice: half of the retries right behind the first send (concurrent with it),
    // half at the end.
    let mut jobs: VecDeque<usize> = VecDeque::new();
    for i in 0..N {
        jobs.push_back(i);
        if i % 2 == 0 {
            jobs.push_back(i);
        }
    }
    jobs.extend((0..N).filter(|i| i % 2 == 1));
    let jobs = Arc::new(Mutex::new(jobs));
    let callbacks = Arc::new(callbacks);
    let acked = Arc::new(AtomicUsize::new(0));
    let acked_set = Arc::new(Mutex::new(HashSet::new()));
    let deadline = Instant::now() + Duration::from_secs(240);
    let client = reqwest::Client::builder().pool_max_idle_per_host(64).build().unwrap();
    let started = Instant::now();
    let mut workers = Vec::new();
    for _ in 0..32 {
        let (jobs, callbacks, acked, acked_set, base, client) =
            (jobs.clone(), callbacks.clone(), acked.clone(), acked_set.clone(), base.clone(), client.clone());
        workers.push(tokio::spawn(async move {
            loop {
                let Some(i) = jobs.lock().unwrap().pop_front() else { return };
                let (kind, query, body) = &callbacks[i];
                if send_until_acked(&client, &base, kind, query, body, deadline).await {
                    acked.fetch_add(1, Ordering::Relaxed);
                    acked_set.lock().unwrap().insert(i);
                }
            }
        }));
    }
    // The kill: SIGKILL (Child::kill on Unix) once 800 of the 4,000 sends are acknowledged.
    while acked.load(Ordering::Relaxed) < 800 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let before_kill = {
        let mut guard = proxy.lock().unwrap();
        let mut running = guard.take().unwrap();
        running.child.kill().unwrap();
        running.child.wait().unwrap();
        acked.load(Ordering::Relaxed)
    };
    let forwarded_before_kill = backend.seen.lock().unwrap().by_key.len();
    // What the killed instance left: entries leased to it (retried once the lease runs out).
    let leased_at_kill: i64 = rusqlite::Connection::open(&db)
        .unwrap()
        .query_row(
            "SELECT COUNT(*) FROM outbox WHERE state = 'pending' AND locked_until > ?1",
            [qys_proxy::unix_millis() as i64],
            |r| r.get(0),
        )
        .unwrap();
    let restarted = tokio::task::spawn_blocking(start_proxy).await.unwrap();
    *base.write().unwrap() = restarted.url.clone();
    *proxy.lock().unwrap() = Some(restarted);
    for w in workers {
        w.await.unwrap();
    }
    let sent_in = started.elapsed();
    assert_eq!(acked.load(Ordering::Relaxed), 2 * N, "every send acknowledged before the deadline");
    let db2 = db.clone();
    let c = tokio::task::spawn_blocking(move || drained(&db2, Duration::from_secs(180))).await.unwrap();
    let drained_in = started.elapsed();
    assert_eq!(c, json!({"pending": 0, "delivered": N, "dead": 0, "unqueued": 0}));

    let seen = backend.seen.lock().unwrap();
    assert_eq!(seen.bad, 0, "every request's signature verified");
    let expected: HashMap<String, usize> =
        callbacks.iter().enumerate().map(|(i, (kind, query, body))| (dedup_key(kind, query, body.as_bytes()), i)).collect();
    let mut queries_by_key = HashMap::new();
    let (mut requests, mut duplicates) = (0, 0);
    for (key, tries) in &seen.by_key {
        let i = *expected.get(key).unwrap_or_else(|| panic!("a key the test never sent: {key}"));
        let bodies: HashSet<&String> = tries.iter().map(|(_, body)| body).collect();
        assert_eq!(bodies.len(), 1, "one body per key: {key}");
        let forwarded: Value = serde_json::from_str(&tries[0].1).unwrap();
        assert_eq!(forwarded["idempotencyKey"].as_str(), Some(key.as_str()), "the header's key, signed in the body");
        let (kind, query, body) = &callbacks[i];
        assert_eq!((forwarded["kind"].as_str(), forwarded["query"].as_str()), (Some(*kind), Some(query.as_str())));
        let fields: HashMap<String, String> = form_urlencoded::parse(body.as_bytes()).into_owned().collect();
        assert_eq!(forwarded["callback"], json!(fields), "the callback's fields as received");
        // The sandbox knows none of these ids: never a verified success.
        assert_eq!(forwarded["verified"], false, "{forwarded}");
        assert!(forwarded["reason"].as_str().is_some_and(|r| !r.is_empty()), "{forwarded}");
        assert!(queries_by_key.insert(query.clone(), key.clone()).is_none(), "a callback under two keys: {query}");
        let successes = tries.iter().filter(|(status, _)| *status == 204).count();
        assert!(successes >= 1, "{key}: {tries:?}");
        if key.as_bytes()[0] < b'4' {
            assert!(tries.len() >= 3 && tries[0].0 == 500 && tries[1].0 == 500, "{key}: retried after 500s");
        }
        requests += tries.len();
        duplicates += successes - 1;
    }
    let acked_set = acked_set.lock().unwrap();
    assert_eq!(acked_set.len(), N);
    for i in acked_set.iter() {
        let (kind, query, body) = &callbacks[*i];
        assert!(seen.by_key.contains_key(&dedup_key(kind, query, body.as_bytes())), "acknowledged, never forwarded: {query}");
    }
    eprintln!(
        "{N} callbacks ×2 sent in {:.1} s (SIGKILL after {before_kill} acknowledged sends, {forwarded_before_kill} keys \
         forwarded by then, {leased_at_kill} entries leased to the killed instance); drained at {:.1} s; {requests} requests to the backend, {duplicates} duplicate \
         deliveries (same key and body)",
        sent_in.as_secs_f64(),
        drained_in.as_secs_f64(),
    );
}

// ---- the sandbox's callbacks, forged ones, and the README's verifiers ----

/// The page's hidden inputs and form action, to submit without following the redirect.
fn form_of(html: &str) -> (String, Vec<(String, String)>) {
    let between = |s: &str, a: &str, b: &str| -> String {
        let from = s.find(a).map(|i| i + a.len()).unwrap_or(0);
        let rest = &s[from..];
        rest[..rest.find(b).unwrap_or(rest.len())].to_owned()
    };
    let unescape = |s: String| s.replace("&quot;", "\"").replace("&#39;", "'").replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&");
    let fields = html
        .split("<input type=hidden ")
        .skip(1)
        .map(|part| (between(part, "name=", " "), unescape(between(part, "value=\"", "\""))))
        .collect();
    (between(html, "<form method=post action=", ">"), fields)
}

/// Starts a personalAuth flow through the proxy at `proxy`; (state, sandbox page URL, ticket = authId).
async fn personal_auth(client: &reqwest::Client, proxy: &str, contact: &str, tag: &str) -> (String, String, String) {
    let st = state(tag);
    let params = json!({"mode": "FACE", "contact": contact, "username": "甲", "idCardNo": "110101199001011234"});
    let answer: Value = common::sdk_request(client, proxy, proxy, "personalAuth", &st, params).await.json().await.unwrap();
    assert_eq!(answer["code"], 0, "{answer}");
    let page = answer["result"]["pageUrl"].as_str().unwrap().to_owned();
    let ticket = url::Url::parse(&page).unwrap().query_pairs().find(|(k, _)| k == "ticket").unwrap().1.into_owned();
    (st, page, ticket)
}

/// The Node receiver's lines so far.
type Lines = Arc<Mutex<Vec<Value>>>;

/// A child process killed when the test ends, passed or not.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn node_receiver(fail_first: usize) -> (Killed, String, Lines) {
    let mut child = Command::new("node")
        .arg(root().join("proxy/tests/forward/receiver.mjs"))
        .env("FORWARD_SECRET", SECRET)
        .env("FAIL_FIRST", fail_first.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("node runs (the README's Node verifier is tested with it)");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let first = lines.next().unwrap().unwrap();
    let url = first.strip_prefix("receiver: ").unwrap().to_owned();
    let seen: Lines = Arc::default();
    let sink = seen.clone();
    std::thread::spawn(move || {
        for line in lines.map_while(Result::ok) {
            sink.lock().unwrap().push(serde_json::from_str(&line).unwrap());
        }
    });
    (Killed(child), url, seen)
}

/// Waits (bounded) until the Node receiver accepted (204) a delivery of each of `n` keys.
fn accepted(lines: &Lines, n: usize, within: Duration) -> HashMap<String, Vec<Value>> {
    let deadline = Instant::now() + within;
    loop {
        let mut by_key: HashMap<String, Vec<Value>> = HashMap::new();
        for line in lines.lock().unwrap().iter() {
            by_key.entry(line["key"].as_str().unwrap().to_owned()).or_default().push(line.clone());
        }
        if by_key.values().filter(|tries| tries.iter().any(|t| t["status"] == 204)).count() >= n {
            return by_key;
        }
        assert!(Instant::now() < deadline, "not forwarded in time: {by_key:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn body_of(line: &Value) -> Value {
    let raw = base64::engine::general_purpose::STANDARD.decode(line["body"].as_str().unwrap()).unwrap();
    serde_json::from_slice(&raw).unwrap()
}

/// The snippet between `snippet:start` and `snippet:end` of an example file, de-indented.
fn snippet(file: &str) -> String {
    let text = std::fs::read_to_string(root().join(file)).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let from = lines.iter().position(|l| l.contains("snippet:start")).unwrap() + 1;
    let to = lines.iter().position(|l| l.contains("snippet:end")).unwrap();
    let indent = lines[from..to].iter().filter(|l| !l.trim().is_empty()).map(|l| l.len() - l.trim_start().len()).min().unwrap();
    lines[from..to].iter().map(|l| l.get(indent..).unwrap_or("")).collect::<Vec<_>>().join("\n")
}

/// Runs a verifier on stdin lines; its stdout lines.
fn run_verifier(mut cmd: Command, input: &str) -> Vec<String> {
    let mut child = cmd.env("FORWARD_SECRET", SECRET).stdin(Stdio::piped()).stdout(Stdio::piped()).spawn().unwrap();
    child.stdin.take().unwrap().write_all(input.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stdout).unwrap().lines().map(str::to_owned).collect()
}

#[test]
fn the_sandboxs_callbacks_arrive_verified_and_forged_ones_do_not() {
    let (_node, receiver, lines) = node_receiver(1);
    let sandbox = start(
        &["sandbox"],
        &[
            ("QYS_ACCESS_TOKEN", TOKEN),
            ("QYS_ACCESS_SECRET", APP_SECRET),
            ("QYS_SANDBOX_LISTEN", "127.0.0.1:0"),
            // Seed 004: tries 1 and 2 at once, then a pause (a minute on the platform), 3 and 4.
            ("QYS_SANDBOX_RETRY_DELAY_MS", "6000"),
        ],
        "sandbox platform: ",
    );
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("callbacks.sqlite3");
    // The proxy restarts on the same port (the sandbox calls back the URL it was given).
    let (_reserved, port) = reserved_port();
    let listen = format!("127.0.0.1:{port}");
    let mut env = forward_env(db.to_str().unwrap(), &listen, &receiver);
    env.extend([("QYS_SERVER_URL", sandbox.url.as_str()), ("QYS_ACCESS_TOKEN", TOKEN), ("QYS_ACCESS_SECRET", APP_SECRET)]);
    let mut proxy = start(&[], &env, "proxy: ");
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let client = common::client();

    // 1. A flow finished in the sandbox's page: its callback, forwarded after one 500.
    let (st1, page1, auth1) = rt.block_on(personal_auth(&client, &proxy.url, "13900000061", "fw1"));
    let done = rt.block_on(async { common::click(&client, &open(&client, &page1).await, "submit", &[]).await });
    assert_eq!(posted_message(&done).unwrap().0["event"], "authSuccess");
    accepted(&lines, 1, Duration::from_secs(30));
    recorded(&db, 1);

    // 2. A flow finished while the proxy is down (SIGKILL): the sandbox's first two tries fail,
    //    the proxy restarts on the same port during the pause, the third try is stored.
    let (st2, page2, auth2) = rt.block_on(personal_auth(&client, &proxy.url, "13900000062", "fw2"));
    let page = rt.block_on(open(&client, &page2));
    proxy.child.kill().unwrap();
    proxy.child.wait().unwrap();
    let killed_at = qys_proxy::unix_millis() as i64;
    let (action, mut form) = form_of(&page.html);
    form.push(("op".into(), "submit".into()));
    let submitted = rt.block_on(client.post(format!("{}{action}", sandbox.url)).form(&form).send()).unwrap();
    assert_eq!(submitted.status(), 303, "the page redirects to the (dead) proxy's return page");
    std::thread::sleep(Duration::from_millis(1500));
    let _proxy = start(&[], &env, "proxy: ");
    let proxy_url = _proxy.url.clone();

    // 3. Forged: status passed for a flow the person never finished (the sandbox says not
    //    real-named), and a company request the platform never saw. Without a callback URL the
    //    proxy signed they are only counted (1001); through a signed one (a URL leaked from
    //    the platform's side, say), stored, but never forwarded as verified.
    let (st3, _page3, auth3) = rt.block_on(personal_auth(&client, &proxy_url, "13900000063", "fw3"));
    let post = |kind: &str, query: &str, body: &str| -> Value {
        rt.block_on(async {
            let url = format!("{proxy_url}/qys/callback/{kind}?{query}");
            let sent = client.post(url).header("content-type", "application/x-www-form-urlencoded").body(body.to_owned()).send();
            sent.await.unwrap().json().await.unwrap()
        })
    };
    let unsigned = post("personal-auth", &format!("flow={st3}"), &format!("mode=FACE&status=1&authId={auth3}"));
    assert_eq!(unsigned["code"], 1001, "{unsigned}");
    let forge = |kind: &str, query: &str, body: &str| {
        assert_eq!(post(kind, &signed_query(kind, query), body)["code"], 0, "stored like any well-formed callback");
        dedup_key(kind, query, body.as_bytes())
    };
    let forged_person = forge("personal-auth", &format!("flow={st3}"), &format!("mode=FACE&status=1&authId={auth3}"));
    let forged_company = forge("company-auth", "flow=x", "status=1&actionEvent=7&requestId=forged-request");
    // A true fact about someone else's flow, posted by anyone: the platform agrees, but nothing
    // ties it to a flow of this proxy.
    let replayed_fact = forge("personal-auth", &format!("flow={st1}"), &format!("mode=FACE&status=1&authId={auth1}&x=1"));

    let mut by_key = accepted(&lines, 5, Duration::from_secs(60));
    assert_eq!(by_key.len(), 5, "{by_key:?}");
    recorded(&db, 5);
    let all: Vec<&Value> = by_key.values().flatten().collect();
    assert!(all.iter().all(|t| t["verified"] == true), "the Node verifier accepts every real delivery");
    assert!(all.iter().all(|t| body_of(t)["idempotencyKey"] == t["key"]), "the Idempotency-Key, signed in the body");
    let replayed = body_of(&by_key.remove(&replayed_fact).unwrap()[1]);
    assert_eq!((replayed["verified"].clone(), replayed["passed"].clone()), (json!(false), json!(true)), "{replayed}");
    assert!(replayed["reason"].as_str().unwrap().contains("no flow token of this proxy"), "{replayed}");
    for tries in by_key.values() {
        let statuses: Vec<i64> = tries.iter().map(|t| t["status"].as_i64().unwrap()).collect();
        assert_eq!(statuses[..2], [500, 204], "retried after a 500, under one key");
        assert!(tries.iter().all(|t| t["body"] == tries[0]["body"]), "the same body on every try");
    }
    let by_auth: HashMap<String, Value> = by_key
        .values()
        .map(|tries| body_of(&tries[1]))
        .filter_map(|b| b["callback"]["authId"].as_str().map(|a| (a.to_owned(), b.clone())))
        .collect();
    for (auth, st, contact) in [(&auth1, &st1, "13900000061"), (&auth2, &st2, "13900000062")] {
        let b = &by_auth[auth.as_str()];
        assert_eq!((b["verified"].clone(), b["passed"].clone(), b["reason"].clone()), (json!(true), json!(true), Value::Null), "{b}");
        assert_eq!(b["callback"], json!({"mode": "FACE", "status": "1", "authId": auth}));
        assert_eq!((b["kind"].as_str(), b["flow"].as_str(), b["confirmedBy"].as_str()), (Some("personal-auth"), Some(st.as_str()), Some("flow")));
        assert_eq!((b["platform"]["realName"].clone(), b["platform"]["mobile"].clone()), (json!(true), json!(contact)));
    }
    assert!(by_auth[auth2.as_str()]["receivedAt"].as_i64().unwrap() > killed_at, "stored by the restarted proxy");
    let forged = body_of(&by_key[&forged_person][1]);
    assert_eq!((forged["verified"].clone(), forged["passed"].clone()), (json!(false), json!(false)), "{forged}");
    assert_eq!(forged["reason"], "the callback says status=1 (passed), the platform says not passed");
    let company = body_of(&by_key[&forged_company][1]);
    assert_eq!((company["verified"].clone(), company["passed"].clone()), (json!(false), json!(false)), "{company}");
    assert_eq!(company["platform"]["status"], -1);

    // The command line: listed, shown, replayed (same key and body again).
    let listed = callbacks_cli(&db, &["list"]);
    assert!(listed.contains("pending 0, delivered 5, dead 0"), "{listed}");
    let id = body_of(&by_key[&forged_person][1])["id"].as_i64().unwrap().to_string();
    let shown: Value = serde_json::from_str(&callbacks_cli(&db, &["show", &id])).unwrap();
    assert_eq!((shown["state"].as_str(), shown["key"].as_str()), (Some("delivered"), Some(forged_person.as_str())));
    // The 500 and the 204 at least; a loaded machine may add a retry (a confirmation timeout, a
    // lease run out), so not exactly 2.
    assert!(shown["attempts"].as_i64().is_some_and(|n| n >= 2), "{shown}");
    assert_eq!(shown["forwarded"], forged);
    let tries_of = |key: &str| lines.lock().unwrap().iter().filter(|l| l["key"] == key).cloned().collect::<Vec<_>>();
    let before = tries_of(&forged_person).len();
    assert!(callbacks_cli(&db, &["replay", &id]).contains("queued"));
    let deadline = Instant::now() + Duration::from_secs(20);
    let tries = loop {
        let tries = tries_of(&forged_person);
        if tries[before..].iter().any(|t| t["status"] == 204) || Instant::now() > deadline {
            break tries;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let replayed: Vec<&Value> = tries[before..].iter().collect();
    assert!(replayed.iter().any(|t| t["status"] == 204), "delivered again after the replay: {replayed:?}");
    assert!(replayed.iter().all(|t| t["body"] == tries[0]["body"]), "the same body on the replay");

    // The Node verifier refuses a changed body, a swapped key, a changed timestamp and an old one.
    let real = &by_key[&forged_company][1];
    let raw = base64::engine::general_purpose::STANDARD.decode(real["body"].as_str().unwrap()).unwrap();
    let (ts, sig) = (real["timestamp"].as_str().unwrap(), real["signature"].as_str().unwrap());
    let mut changed = raw.clone();
    let at = changed.iter().position(|&b| b == b'f').unwrap(); // "false" → "ralse"
    changed[at] = b'r';
    // The body's idempotencyKey swapped for another callback's: a receiver that deduplicates on
    // it (the header is not signed) must refuse it.
    let swapped_key = String::from_utf8(raw.clone()).unwrap().replace(forged_company.as_str(), forged_person.as_str()).into_bytes();
    assert_ne!(swapped_key, raw);
    let old = (qys_proxy::unix_millis() - 600_000).to_string();
    let old_sig = qys_proxy::forward::signature(SECRET, &old, std::str::from_utf8(&raw).unwrap());
    let later = (ts.parse::<u64>().unwrap() + 1).to_string();
    for (timestamp, signature, body, expected) in [
        (ts, sig, raw.clone(), 204),
        (ts, sig, changed.clone(), 401),
        (ts, sig, swapped_key.clone(), 401),
        (later.as_str(), sig, raw.clone(), 401),
        (old.as_str(), old_sig.as_str(), raw.clone(), 401),
    ] {
        let status = rt.block_on(async {
            client
                .post(&receiver)
                .header("x-qys-timestamp", timestamp)
                .header("x-qys-signature", signature)
                .header("idempotency-key", forged_company.as_str())
                .body(body)
                .send()
                .await
                .unwrap()
                .status()
        });
        assert_eq!(status.as_u16(), expected, "{timestamp}");
    }

    // The Python and Java verifiers on the same real deliveries, a changed body and a swapped key.
    let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
    let real_lines: Vec<Value> = lines.lock().unwrap().iter().filter(|l| l["status"] != 401).cloned().collect();
    let mut py_in = String::new();
    let mut java_in = String::new();
    for l in &real_lines {
        py_in += &format!("{}\n", json!({"timestamp": l["timestamp"], "signature": l["signature"], "body": l["body"]}));
        java_in += &format!("{} {} {}\n", l["timestamp"].as_str().unwrap(), l["signature"].as_str().unwrap(), l["body"].as_str().unwrap());
    }
    let n = py_in.lines().count();
    assert!(n >= 9, "{n} deliveries");
    for bad in [&changed, &swapped_key] {
        py_in += &format!("{}\n", json!({"timestamp": ts, "signature": sig, "body": b64(bad)}));
        java_in += &format!("{ts} {sig} {}\n", b64(bad));
    }
    let mut expected = vec!["ok".to_owned(); n];
    expected.extend(["bad".to_owned(), "bad".to_owned()]);
    let mut python = Command::new("python3");
    python.arg(root().join("examples/verify_forward.py"));
    assert_eq!(run_verifier(python, &py_in), expected, "Python");
    let mut java = Command::new("java");
    java.arg(root().join("examples/VerifyForward.java"));
    assert_eq!(run_verifier(java, &java_in), expected, "Java");

    // The README quotes the three verifiers exactly as tested here.
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    for file in ["examples/verify-forward.mjs", "examples/verify_forward.py", "examples/VerifyForward.java"] {
        assert!(readme.contains(&snippet(file)), "README.md quotes {file}'s snippet verbatim");
    }
    drop(sandbox);
    let _ = proxy.log;
}

/// Give-up age: a backend that keeps failing gets the entry parked as dead; `list --dead`
/// shows it, `replay --dead` sends it again once the backend is back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_entries_are_parked_dead_then_replayed() {
    let backend = backend(Box::new(|_: &str, _| true)).await;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("callbacks.sqlite3");
    let mut env = forward_env(db.to_str().unwrap(), "127.0.0.1:0", &backend.url);
    env.push(("QYS_FORWARD_GIVE_UP_HOURS", "0.0005")); // 1.8 s
    let proxy = tokio::task::block_in_place(|| start(&[], &env, "proxy: "));
    let base = RwLock::new(proxy.url.clone());
    let client = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    let query = "flow=dead";
    assert!(send_until_acked(&client, &base, "personal-auth", query, "mode=BANK&status=2&authId=gone", deadline).await);
    let key = dedup_key("personal-auth", query, b"mode=BANK&status=2&authId=gone");
    let dead_db = db.clone();
    let listed = tokio::task::spawn_blocking(move || {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let c = counts(&dead_db);
            if c["dead"] == 1 {
                return callbacks_cli(&dead_db, &["list", "--dead"]);
            }
            assert!(Instant::now() < deadline, "not parked: {c}");
            std::thread::sleep(Duration::from_millis(200));
        }
    })
    .await
    .unwrap();
    assert!(listed.contains(" dead ") && listed.contains("HTTP 500"), "{listed}");
    let tries = backend.seen.lock().unwrap().by_key[&key].len();
    assert!(tries >= 3, "retried with backoff before giving up: {tries}");

    *backend.fail.write().unwrap() = Box::new(|_: &str, _| false);
    let replay_db = db.clone();
    let out = tokio::task::spawn_blocking(move || callbacks_cli(&replay_db, &["replay", "--dead"])).await.unwrap();
    assert_eq!(out.trim(), "1 dead entries queued for forwarding again");
    let drained_db = db.clone();
    let c = tokio::task::spawn_blocking(move || drained(&drained_db, Duration::from_secs(20))).await.unwrap();
    assert_eq!(c, json!({"pending": 0, "delivered": 1, "dead": 0, "unqueued": 0}));
    let seen = backend.seen.lock().unwrap();
    let all = &seen.by_key[&key];
    assert_eq!(all.last().unwrap().0, 204);
    assert!(all.iter().all(|(_, body)| body == &all[0].1), "the replay sends the same body under the same key");
    let body: Value = serde_json::from_str(&all[0].1).unwrap();
    // status=2 (failed) and the platform refuses the unknown authId: not verified either way.
    assert_eq!((body["verified"].clone(), body["passed"].clone()), (json!(false), Value::Null), "{body}");
    assert!(body["reason"].as_str().unwrap().starts_with("the platform refused the question: code 1604"), "{body}");
    drop(proxy);
}

// ---- forwarders in this process: leases across instances ----

/// A platform answering personal-auth questions "not real-named"; with `hold_first`, its first
/// request waits for `release` (after telling `asked`): a confirmation that outlasts a lease.
struct FakePlatform {
    url: String,
    asked: Arc<tokio::sync::Notify>,
    release: Arc<tokio::sync::Notify>,
    /// When each request arrived.
    calls: Arc<Mutex<Vec<Instant>>>,
}

async fn fake_platform(hold_first: bool) -> FakePlatform {
    let asked = Arc::new(tokio::sync::Notify::new());
    let release = Arc::new(tokio::sync::Notify::new());
    let held = Arc::new(std::sync::atomic::AtomicBool::new(!hold_first));
    let calls: Arc<Mutex<Vec<Instant>>> = Arc::default();
    let (a, r, c) = (asked.clone(), release.clone(), calls.clone());
    let answer = move || {
        let (asked, release, held) = (a.clone(), r.clone(), held.clone());
        c.lock().unwrap().push(Instant::now());
        async move {
            if !held.swap(true, Ordering::SeqCst) {
                asked.notify_one();
                release.notified().await;
            }
            axum::Json(json!({"code": 0, "message": "SUCCESS", "result": {"realName": false}}))
        }
    };
    let router = axum::Router::new().route("/v2/personalauth/result", axum::routing::get(answer));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    FakePlatform { url, asked, release, calls }
}

/// A client of the platform at `url`, confirmation calls limited to `limits`.
fn platform_client(url: &str, limits: ConfirmLimits) -> Platform {
    Platform::new(url, TOKEN, qys_proxy::Secret::new(APP_SECRET), Duration::from_secs(5), Duration::from_secs(60))
        .with_confirm_limits(limits)
}

/// A forwarder of this process on its own connection to the SQLite file `db` (an instance).
fn forwarder(db: &Path, platform: Platform, receiver: &str, lease: Duration, concurrency: usize) -> (CallbackStore, tokio::task::JoinHandle<()>) {
    let store = CallbackStore::open(db).unwrap().with_forwarding(true);
    let mut settings = ForwardSettings::new(receiver, qys_proxy::Secret::new(SECRET));
    (settings.lease, settings.concurrency) = (lease, concurrency);
    let task = forward::spawn(settings, store.clone(), platform, TokenKey::new(b"forward-test-state-key"));
    (store, task)
}

/// Instance A claims an entry, then its confirmation outlasts its lease; instance B claims the
/// entry and delivers it. When A's confirmation finally comes back, A must not POST it too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forwarder_whose_lease_ran_out_does_not_post_what_another_took_over() {
    let backend = backend(Box::new(|_: &str, _| false)).await;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("callbacks.sqlite3");
    let (slow, quick) = (fake_platform(true).await, fake_platform(false).await);
    // One slot: A takes its next entry only once its first attempt is over.
    let (a, a_task) = forwarder(&db, platform_client(&slow.url, ConfirmLimits::default()), &backend.url, Duration::from_millis(300), 1);
    a.record("personal-auth", "flow=lease-1", b"mode=FACE&status=1&authId=one").unwrap();
    let first = dedup_key("personal-auth", "flow=lease-1", b"mode=FACE&status=1&authId=one");
    tokio::time::timeout(Duration::from_secs(30), slow.asked.notified()).await.expect("A asks the platform");
    // B's lease is short: a claim B had under way when it was aborted below (a blocking task
    // outlives the abort) may take the second callback, which A must then be able to take over.
    let (b, b_task) = forwarder(&db, platform_client(&quick.url, ConfirmLimits::default()), &backend.url, Duration::from_secs(3), 16);
    recorded_delivered(&b, 1).await; // B delivers once A's lease ran out
    b_task.abort();
    // A second callback, which only A is left to forward: its delivery shows that A's first
    // attempt is over.
    a.record("personal-auth", "flow=lease-2", b"mode=FACE&status=1&authId=two").unwrap();
    let second = dedup_key("personal-auth", "flow=lease-2", b"mode=FACE&status=1&authId=two");
    slow.release.notify_one();
    let forwarded = async {
        while !backend.seen.lock().unwrap().by_key.contains_key(&second) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(30), forwarded).await.expect("A forwards the second callback");
    a_task.abort();
    let seen = backend.seen.lock().unwrap();
    assert_eq!(seen.by_key[&first].len(), 1, "the first callback was POSTed by B only, not again by A");
    assert_eq!(seen.bad, 0);
}

/// A backend that holds the first request it gets until `release` (after telling `held`), and
/// answers every request 204; the `Idempotency-Key` of each request, in order.
struct HoldingBackend {
    url: String,
    held: Arc<tokio::sync::Notify>,
    release: Arc<tokio::sync::Notify>,
    keys: Arc<Mutex<Vec<String>>>,
}

async fn holding_backend() -> HoldingBackend {
    let held = Arc::new(tokio::sync::Notify::new());
    let release = Arc::new(tokio::sync::Notify::new());
    let keys: Arc<Mutex<Vec<String>>> = Arc::default();
    let first = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let (h, r, k) = (held.clone(), release.clone(), keys.clone());
    let answer = move |headers: HeaderMap, body: Bytes| {
        let (held, release, keys, first) = (h.clone(), r.clone(), k.clone(), first.clone());
        async move {
            assert!(common::forwarding::verify(SECRET, &headers, &body));
            keys.lock().unwrap().push(headers["idempotency-key"].to_str().unwrap().to_owned());
            if first.swap(false, Ordering::SeqCst) {
                held.notify_one();
                release.notified().await;
            }
            StatusCode::NO_CONTENT
        }
    };
    let router = axum::Router::new().route("/hook", axum::routing::post(answer));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    HoldingBackend { url, held, release, keys }
}

/// One instance, two attempts at one entry: the first one's confirmation outlasts its lease, the
/// instance's own run loop claims the entry again and the second attempt POSTs (held by the
/// backend). When the first attempt's confirmation comes back, it must not POST too: the owner
/// is the same, the claim is not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_attempt_whose_lease_ran_out_does_not_post_what_its_own_instance_claimed_again() {
    let backend = holding_backend().await;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("callbacks.sqlite3");
    let slow = fake_platform(true).await;
    // Two slots: the first attempt (held by the platform) and the second (held by the backend).
    let (a, task) = forwarder(&db, platform_client(&slow.url, ConfirmLimits::default()), &backend.url, Duration::from_millis(300), 2);
    a.record("personal-auth", "flow=again-1", b"mode=FACE&status=1&authId=one").unwrap();
    let first = dedup_key("personal-auth", "flow=again-1", b"mode=FACE&status=1&authId=one");
    tokio::time::timeout(Duration::from_secs(30), slow.asked.notified()).await.expect("the first attempt asks the platform");
    tokio::time::timeout(Duration::from_secs(30), backend.held.notified()).await.expect("the second attempt POSTs");
    // Both slots are taken: the next callback is claimed only once an attempt is over, and the
    // second one stays held below, so its delivery shows that the first attempt is over.
    a.record("personal-auth", "flow=again-2", b"mode=FACE&status=1&authId=two").unwrap();
    let second = dedup_key("personal-auth", "flow=again-2", b"mode=FACE&status=1&authId=two");
    slow.release.notify_one();
    let forwarded = async {
        while !backend.keys.lock().unwrap().contains(&second) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(30), forwarded).await.expect("the second callback is forwarded");
    backend.release.notify_one();
    recorded_delivered(&a, 2).await;
    task.abort();
    let keys = backend.keys.lock().unwrap();
    assert_eq!(keys.iter().filter(|k| **k == first).count(), 1, "the first callback was POSTed once, by the second attempt: {keys:?}");
    let entry = a.backend().outbox_list(qys_proxy::store::OutboxFilter::All, 0, 10).unwrap().remove(0);
    assert_eq!((entry.claim, entry.attempts), (2, 1), "claimed twice, one attempt recorded");
}

/// A platform whose personal-auth result answers `faults` (HTTP status, body) in turn, then, with
/// `forever` the last fault again, else "real-named"; when each request arrived.
async fn faulty_platform(faults: Vec<(u16, &'static str)>, forever: bool) -> (String, Arc<Mutex<Vec<Instant>>>) {
    let calls: Arc<Mutex<Vec<Instant>>> = Arc::default();
    let c = calls.clone();
    let answer = move || {
        let n = {
            let mut calls = c.lock().unwrap();
            calls.push(Instant::now());
            calls.len() - 1
        };
        let fault = faults.get(n).or(faults.last().filter(|_| forever)).copied();
        async move {
            let (status, body) = fault.unwrap_or((200, r#"{"code":0,"message":"SUCCESS","result":{"realName":true}}"#));
            (StatusCode::from_u16(status).unwrap(), body)
        }
    };
    let router = axum::Router::new().route("/v2/personalauth/result", axum::routing::get(answer));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
    (url, calls)
}

/// A personal-auth callback with this proxy's flow token, as the SDK's flows get them: the
/// platform is asked about the token's contact, and can make it `verified`.
fn callback_with_token(store: &CallbackStore, state: &str) -> String {
    let flow = qys_proxy::token::FlowToken {
        action: qys_proxy::protocol::Action::PersonalAuth,
        state: state.to_owned(),
        target_origin: "http://127.0.0.1:1".into(),
        subject: String::new(),
        contact: "13700000044".into(),
        expires: 1,
        return_url: None,
    };
    let token = TokenKey::new(b"forward-test-state-key").seal(&flow);
    let query = format!("flow={state}&t={token}");
    let body = format!("mode=FACE&status=1&authId={state}");
    store.record("personal-auth", &query, body.as_bytes()).unwrap();
    dedup_key("personal-auth", &query, body.as_bytes())
}

/// Quick retries, one slot, the give-up age `give_up`.
fn retrying(receiver: &str, give_up: Duration) -> ForwardSettings {
    let mut settings = ForwardSettings::new(receiver, qys_proxy::Secret::new(SECRET));
    (settings.retry_base, settings.retry_cap, settings.give_up, settings.concurrency) =
        (Duration::from_millis(50), Duration::from_millis(200), give_up, 1);
    settings
}

/// The forwarded body of `key`, once the backend has answered it 204 (bounded wait).
async fn forwarded_body(backend: &Backend, key: &str) -> Value {
    let body = async {
        loop {
            if let Some((_, body)) = backend.seen.lock().unwrap().by_key.get(key).and_then(|tries| tries.iter().find(|(s, _)| *s == 204)) {
                return serde_json::from_str::<Value>(body).unwrap();
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(30), body).await.expect("forwarded")
}

/// Waits (bounded) until `n` entries are recorded delivered: the backend sees the POST before the
/// forwarder records it.
async fn recorded_delivered(store: &CallbackStore, n: i64) {
    let delivered = async {
        while store.backend().outbox_counts().unwrap().delivered < n {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(30), delivered).await.expect("recorded delivered");
}

/// No answer from the platform is not its word: a gateway's page, HTTP 5xx or 429 with any code,
/// the proxy's request refused (442) are asked again, however many times, and the callback
/// arrives verified once the platform answers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_platform_is_asked_again_until_it_answers() {
    let backend = backend(Box::new(|_: &str, _| false)).await;
    let dir = tempfile::tempdir().unwrap();
    let faults = vec![
        (503, "<html>Service Temporarily Unavailable</html>"),
        (502, r#"{"code":500,"message":"系统繁忙"}"#),
        (429, r#"{"code":1,"message":"请求过于频繁"}"#),
        (401, r#"{"code":442,"message":"INVALID TOKEN"}"#),
        (500, r#"{"code":1604,"message":"INVALID AUTHID"}"#),
    ];
    let (url, calls) = faulty_platform(faults, false).await;
    let store = CallbackStore::open(&dir.path().join("callbacks.sqlite3")).unwrap().with_forwarding(true);
    let platform = platform_client(&url, ConfirmLimits::default());
    let task = forward::spawn(retrying(&backend.url, Duration::from_secs(3600)), store.clone(), platform, TokenKey::new(b"forward-test-state-key"));
    let key = callback_with_token(&store, "asked-again");
    let body = forwarded_body(&backend, &key).await;
    recorded_delivered(&store, 1).await;
    task.abort();
    assert_eq!((body["verified"].clone(), body["passed"].clone(), body["reason"].clone()), (json!(true), json!(true), Value::Null), "{body}");
    assert_eq!(calls.lock().unwrap().len(), 6, "five faults, then the answer");
    let entry = store.backend().outbox_list(qys_proxy::store::OutboxFilter::All, 0, 10).unwrap().remove(0);
    assert_eq!(entry.attempts, 6, "each fault failed an attempt");
}

/// A platform that never answers delays the callback until the give-up age, not longer: then it
/// is forwarded `verified: false` with why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_an_answer_the_callback_is_forwarded_unverified_at_the_give_up_age() {
    let backend = backend(Box::new(|_: &str, _| false)).await;
    let dir = tempfile::tempdir().unwrap();
    let (url, calls) = faulty_platform(vec![(503, "<html>Service Temporarily Unavailable</html>")], true).await;
    let store = CallbackStore::open(&dir.path().join("callbacks.sqlite3")).unwrap().with_forwarding(true);
    let platform = platform_client(&url, ConfirmLimits::default());
    let give_up = Duration::from_millis(1500);
    let task = forward::spawn(retrying(&backend.url, give_up), store.clone(), platform, TokenKey::new(b"forward-test-state-key"));
    let key = callback_with_token(&store, "never-answered");
    let body = forwarded_body(&backend, &key).await;
    task.abort();
    assert_eq!((body["verified"].clone(), body["passed"].clone()), (json!(false), Value::Null), "{body}");
    let reason = body["reason"].as_str().unwrap();
    assert!(reason.starts_with("the platform could not be asked: ") && reason.contains("HTTP 503"), "{body}");
    let waited = body["confirmedAt"].as_i64().unwrap() - body["receivedAt"].as_i64().unwrap();
    assert!(waited >= 1500, "forwarded unverified after {waited} ms, before the give-up age");
    assert!(calls.lock().unwrap().len() >= 4, "asked again meanwhile: {}", calls.lock().unwrap().len());
}

/// This instance's spent confirmation budget is not the platform's silence: a backlog already
/// past the give-up age (forwarding turned back on after days off) waits for the budget and is
/// forwarded verified, each entry after one attempt, rather than unverified en masse.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backlog_past_the_give_up_age_waits_for_the_confirmation_budget() {
    let backend = backend(Box::new(|_: &str, _| false)).await;
    let dir = tempfile::tempdir().unwrap();
    let (url, calls) = faulty_platform(Vec::new(), false).await;
    let store = CallbackStore::open(&dir.path().join("callbacks.sqlite3")).unwrap().with_forwarding(true);
    let keys: Vec<String> = (0..10).map(|i| callback_with_token(&store, &format!("backlog-{i}"))).collect();
    // 2 a second, one kept for the return page: the forwarder gets at most 5 calls within the
    // 2 s an attempt waits, so at least 5 of the 10 entries claimed at once find it spent.
    let platform = platform_client(&url, ConfirmLimits { per_second: 2, ..ConfirmLimits::default() });
    let mut settings = retrying(&backend.url, Duration::from_millis(1));
    settings.concurrency = 16;
    let task = forward::spawn(settings, store.clone(), platform, TokenKey::new(b"forward-test-state-key"));
    for key in &keys {
        let body = forwarded_body(&backend, key).await;
        assert_eq!((body["verified"].clone(), body["passed"].clone()), (json!(true), json!(true)), "{body}");
    }
    recorded_delivered(&store, 10).await;
    task.abort();
    assert_eq!(calls.lock().unwrap().len(), 10, "one confirmation each");
    let entries = store.backend().outbox_list(qys_proxy::store::OutboxFilter::All, 0, 20).unwrap();
    assert!(entries.iter().all(|e| e.attempts == 1), "waiting for the budget is no attempt: {entries:?}");
    let waited = entries.iter().filter(|e| e.last_error.contains("QYS_CONFIRM_RATE")).count();
    assert!(waited >= 5, "only {waited} entries found the budget spent");
}

/// The forwarder's confirmation calls spend the instance's `QYS_CONFIRM_RATE`, which the return
/// page and `outcome` use too, and leave them half the burst: at 2 a second the forwarder may make
/// one call at once, then one each 0.5 s, however many callbacks wait.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_forwarders_confirmations_keep_to_the_confirmation_rate() {
    let backend = backend(Box::new(|_: &str, _| false)).await;
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("callbacks.sqlite3");
    let platform = fake_platform(false).await;
    let limits = ConfirmLimits { per_second: 2, ..ConfirmLimits::default() };
    let (store, task) = forwarder(&db, platform_client(&platform.url, limits), &backend.url, Duration::from_secs(30), 16);
    for i in 0..4 {
        store.record("personal-auth", &format!("flow=rate-{i}"), format!("mode=FACE&status=1&authId=r{i}").as_bytes()).unwrap();
    }
    recorded_delivered(&store, 4).await;
    task.abort();
    let calls = platform.calls.lock().unwrap().clone();
    assert!(calls.len() >= 4, "one confirmation per callback: {}", calls.len());
    let span = calls[3] - calls[0];
    assert!(span >= Duration::from_millis(1400), "4 calls within {span:?}: faster than 2/s with 1 kept for the return page");
}

/// Forwarding settings are checked before anything starts; the secret never appears in `--help`.
#[test]
fn forwarding_misconfiguration_stops_start_up() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("callbacks.sqlite3");
    let base = [("QYS_DATABASE", db.to_str().unwrap()), ("QYS_LISTEN", "127.0.0.1:0"), ("QYS_SANDBOX_LISTEN", "127.0.0.1:0")];
    let url = ("QYS_FORWARD_URL", "http://127.0.0.1:9/hook");
    let secret = ("QYS_FORWARD_SECRET", SECRET);
    for (extra, needle) in [
        (vec![url], "QYS_FORWARD_SECRET is required with QYS_FORWARD_URL"),
        (vec![url, ("QYS_FORWARD_SECRET", "too-short")], "QYS_FORWARD_SECRET must be at least 32 characters"),
        (vec![("QYS_FORWARD_URL", "ftp://backend"), secret], "QYS_FORWARD_URL \"ftp://backend\" must be an absolute http(s) URL"),
        (vec![url, secret, ("QYS_FORWARD_RETRY_CAP_MS", "10")], "QYS_FORWARD_RETRY_CAP_MS at least as large"),
        (vec![url, secret, ("QYS_FORWARD_GIVE_UP_HOURS", "0")], "QYS_FORWARD_GIVE_UP_HOURS must be greater than 0"),
        (vec![url, secret, ("QYS_FORWARD_TIMEOUT_MS", "0")], "QYS_FORWARD_TIMEOUT_MS must be greater than 0"),
        (vec![url, secret, ("QYS_FORWARD_CONCURRENCY", "0")], "QYS_FORWARD_CONCURRENCY must be between 1 and 1024"),
    ] {
        let mut env = base.to_vec();
        env.extend(extra.iter().copied());
        let mut child = command(&[], &env).stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        let status = loop {
            if let Some(status) = child.try_wait().unwrap() {
                break status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("{extra:?}: started instead of refusing");
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let mut stderr = String::new();
        child.stderr.take().unwrap().read_to_string(&mut stderr).unwrap();
        assert_eq!(status.code(), Some(2), "{extra:?}: {stderr}");
        assert!(stderr.contains(needle), "{extra:?}: {stderr}");
    }
    let help = command(&["--help"], &[secret]).output().unwrap();
    let help = String::from_utf8_lossy(&help.stdout);
    assert!(help.contains("QYS_FORWARD_SECRET") && !help.contains(SECRET), "{help}");
    // `callbacks` on a database without forwarding: nothing queued, and `replay` queues it.
    let out = callbacks_cli(&db, &["list"]);
    assert!(out.contains("pending 0, delivered 0, dead 0, stored without an outbox entry 0"), "{out}");
    let missing = command(&["callbacks", "show", "7"], &[("QYS_DATABASE", db.to_str().unwrap())]).output().unwrap();
    assert_eq!(missing.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("callback 7 has no outbox entry"));
}

/// Callbacks left pending when forwarding was turned off for good: `callbacks abandon` parks them
/// as dead, so the retention sweep takes them a retention period later and `replay` still queues
/// them. An unknown id is an error, and so is neither an id nor `--pending`.
#[test]
fn callbacks_abandon_parks_pending_entries_as_dead() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("db.sqlite3");
    let store = CallbackStore::open(&db).unwrap().with_forwarding(true);
    for n in 0..3 {
        store.record("personal-auth", &format!("flow={n}"), b"mode=FACE&status=1").unwrap();
    }
    let first = store.backend().outbox_list(qys_proxy::store::OutboxFilter::All, 0, 1).unwrap()[0].id.to_string();
    drop(store);
    let env = [("QYS_DATABASE", db.to_str().unwrap())];
    for (args, says) in [(&["abandon", "999999"][..], "callback 999999 has no pending entry"), (&["abandon"][..], "required arguments were not provided")] {
        let out = command(&[&["callbacks"][..], args].concat(), &env).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success() && stderr.contains(says), "{args:?}: {stderr}");
    }
    assert!(callbacks_cli(&db, &["abandon", &first]).starts_with(&format!("callback {first} abandoned")));
    let rest = callbacks_cli(&db, &["abandon", "--pending"]);
    assert!(rest.starts_with("2 pending entries abandoned") && rest.contains("0 still pending"), "{rest}");
    assert_eq!(counts(&db), json!({"pending": 0, "delivered": 0, "dead": 3, "unqueued": 0}));
    let shown: Value = serde_json::from_str(&callbacks_cli(&db, &["show", &first])).unwrap();
    assert_eq!((shown["state"].as_str(), shown["lastError"].as_str()), (Some("dead"), Some(qys_proxy::store::ABANDONED)), "{shown}");
    assert!(callbacks_cli(&db, &["replay", "--dead"]).starts_with("3 dead entries queued"));
    assert_eq!(counts(&db)["pending"], 3);
}
