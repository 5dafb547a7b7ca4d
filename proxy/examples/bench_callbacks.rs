//! Callbacks benchmark (issue 9): server callbacks per second stored (acknowledged `{"code":0}`)
//! and forwarded (answered 2xx by the integrator's backend), and the time from receipt to forward
//! (p50 / p99 / max), for SQLite or PostgreSQL with one or more `qys-proxy` instances on one
//! database.
//!
//! ```text
//! cargo build --release -p qys-proxy --bin qys-proxy --example bench_callbacks
//! target/release/examples/bench_callbacks <sqlite|postgres> [instances=1] [callbacks=5000] [senders=32] [rate/s=0]
//! ```
//!
//! Everything runs on loopback: the release binary (`QYS_PROXY_BIN` to use another), each with
//! its embedded sandbox (the forwarder's confirmation call goes there), a backend in this process
//! that answers 204 at once and reads `receivedAt` from each forwarded body, and for PostgreSQL a
//! throwaway cluster with fsync on (`tests/common/pg.rs`; SQLite runs with `synchronous=FULL`).
//! `senders` concurrent senders post each callback once, round-robin over the instances: as fast
//! as they are acknowledged (throughput; receipt → forward is then mostly time in the queue), or
//! paced at `rate` per second (receipt → forward under a load the forwarders keep up with).

#[path = "../tests/common/pg.rs"]
mod pg;

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use qys_proxy::token::TokenKey;

const SECRET: &str = "bench-callbacks-forward-secret-3f9a0c1e";
/// `QYS_STATE_KEY` of the instances: the callback URLs carry its `sig`, as the proxy's own do.
const STATE_KEY: &str = "bench-callbacks-state-key-8d2b6e0f4a17c953";

struct Instance {
    child: Child,
    url: String,
}

impl Drop for Instance {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start(bin: &str, env: &[(&str, String)]) -> Instance {
    let mut cmd = Command::new(bin);
    cmd.env_clear().env("RUST_LOG", "warn");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.stdout(Stdio::piped()).stderr(Stdio::inherit()).spawn().unwrap_or_else(|e| panic!("{bin}: {e}"));
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let url = loop {
        match lines.next() {
            Some(Ok(line)) => {
                if let Some(rest) = line.strip_prefix("proxy: ") {
                    break rest.split_whitespace().next().unwrap().to_owned();
                }
            }
            _ => panic!("qys-proxy stopped before listening"),
        }
    };
    std::thread::spawn(move || lines.map_while(Result::ok).for_each(drop));
    Instance { child, url }
}

/// Per forwarded key: receipt → forward, in ms (the first 2xx only).
type Seen = Arc<Mutex<HashMap<String, i64>>>;

async fn hook(State(seen): State<Seen>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let now = i64::try_from(qys_proxy::unix_millis()).unwrap_or(i64::MAX);
    let key = headers.get("idempotency-key").and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
    let received_at = serde_json::from_slice::<serde_json::Value>(&body).ok().and_then(|v| v["receivedAt"].as_i64());
    if let Some(at) = received_at {
        seen.lock().unwrap().entry(key).or_insert(now - at);
    }
    StatusCode::NO_CONTENT
}

fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let fields: Vec<&str> = stat.rsplit(')').next().unwrap_or("").split_whitespace().collect();
    let ticks: f64 = fields.get(11..13).map_or(0.0, |f| f.iter().filter_map(|t| t.parse::<f64>().ok()).sum());
    ticks / 100.0
}

fn percentile(sorted: &[i64], p: f64) -> i64 {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

/// Posts callbacks `range` (a callback `i` to instance `i % n`), `senders` at a time, each until
/// acknowledged; with a `rate` (per second), callback `i` is not sent before `i / rate` s.
async fn send(urls: Arc<Vec<String>>, tag: &'static str, range: std::ops::Range<usize>, senders: usize, rate: f64) {
    let start = tokio::time::Instant::now();
    let next = Arc::new(AtomicUsize::new(range.start));
    let client = reqwest::Client::builder().pool_max_idle_per_host(senders).build().unwrap();
    let mut tasks = Vec::new();
    for _ in 0..senders {
        let (urls, next, client, end, first) = (urls.clone(), next.clone(), client.clone(), range.end, range.start);
        tasks.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= end {
                    return;
                }
                if rate > 0.0 {
                    tokio::time::sleep_until(start + Duration::from_secs_f64((i - first) as f64 / rate)).await;
                }
                let flow = format!("{tag}-{i}");
                let sig = TokenKey::new(STATE_KEY.as_bytes()).callback_sig("personal-auth", &flow, "");
                let url = format!("{}/qys/callback/personal-auth?flow={flow}&sig={sig}", urls[i % urls.len()]);
                for _ in 0..100 {
                    let sent = client
                        .post(&url)
                        .header("content-type", "application/x-www-form-urlencoded")
                        .body(format!("mode=FACE&status=1&authId={tag}-{i}"))
                        .send()
                        .await;
                    if let Ok(r) = sent {
                        if r.status() == 200 && r.text().await.is_ok_and(|t| t.contains("\"code\":0")) {
                            break;
                        }
                    }
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
}

async fn wait_forwarded(seen: &Seen, n: usize, within: Duration) {
    let deadline = Instant::now() + within;
    while seen.lock().unwrap().len() < n {
        assert!(Instant::now() < deadline, "only {} of {n} forwarded within {within:?}", seen.lock().unwrap().len());
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let backend = args.first().map(String::as_str).unwrap_or("sqlite").to_owned();
    let instances: usize = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(1);
    let n: usize = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(5_000);
    let senders: usize = args.get(3).and_then(|a| a.parse().ok()).unwrap_or(32);
    let rate: f64 = args.get(4).and_then(|a| a.parse().ok()).unwrap_or(0.0);
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf();
    let bin = std::env::var("QYS_PROXY_BIN").unwrap_or_else(|_| root.join("target/release/qys-proxy").display().to_string());

    let seen: Seen = Arc::default();
    let router = axum::Router::new().route("/hook", axum::routing::post(hook)).with_state(seen.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let receiver = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });

    let dir = tempfile::tempdir().unwrap();
    let mut cluster = None;
    let database = match backend.as_str() {
        "sqlite" => {
            assert_eq!(instances, 1, "SQLite is one instance's store");
            dir.path().join("callbacks.sqlite3").display().to_string()
        }
        "postgres" => {
            let c = pg::PgCluster::start_with(true);
            let url = c.create_db();
            cluster = Some(c);
            url
        }
        other => panic!("unknown backend {other:?}: sqlite or postgres"),
    };
    let env: Vec<(&str, String)> = vec![
        ("QYS_DATABASE", database.clone()),
        ("QYS_LISTEN", "127.0.0.1:0".into()),
        ("QYS_SANDBOX_LISTEN", "127.0.0.1:0".into()),
        ("QYS_CALLBACK_RATE", "0".into()),
        // Each callback's confirmation spends the confirmation budget: measure the store and the
        // forwarder, not the 20/s default.
        ("QYS_CONFIRM_RATE", "1000000".into()),
        ("QYS_STATE_KEY", STATE_KEY.into()),
        ("QYS_FORWARD_URL", receiver.clone()),
        ("QYS_FORWARD_SECRET", SECRET.into()),
    ];
    // One at a time: the first creates the schema.
    let running: Vec<Instance> = (0..instances).map(|_| start(&bin, &env)).collect();
    let urls = Arc::new(running.iter().map(|i| i.url.clone()).collect::<Vec<_>>());

    // Warm-up (connections, statement caches), not counted.
    let warm = 200.min(n);
    send(urls.clone(), "warm", 0..warm, senders, 0.0).await;
    wait_forwarded(&seen, warm, Duration::from_secs(60)).await;
    seen.lock().unwrap().clear();

    let cpu_before: f64 = running.iter().map(|i| cpu_seconds(i.child.id())).sum();
    let t0 = Instant::now();
    send(urls.clone(), "load", 0..n, senders, rate).await;
    let stored_in = t0.elapsed();
    wait_forwarded(&seen, n, Duration::from_secs(600)).await;
    let forwarded_in = t0.elapsed();
    let cpu = running.iter().map(|i| cpu_seconds(i.child.id())).sum::<f64>() - cpu_before;

    let mut latencies: Vec<i64> = seen.lock().unwrap().values().copied().collect();
    latencies.sort_unstable();
    println!(
        "{backend}, {instances} instance{}: {n} callbacks from {senders} senders{}; stored {:.0}/s (all acknowledged in {:.2} s); \
         forwarded {:.0}/s (all in {:.2} s); receipt → forward p50 {} ms, p99 {} ms, max {} ms; proxies' CPU {:.2} s ({:.0} µs per callback)",
        if instances == 1 { "" } else { "s" },
        if rate > 0.0 { format!(" at {rate}/s") } else { " as fast as acknowledged".into() },
        n as f64 / stored_in.as_secs_f64(),
        stored_in.as_secs_f64(),
        n as f64 / forwarded_in.as_secs_f64(),
        forwarded_in.as_secs_f64(),
        percentile(&latencies, 0.50),
        percentile(&latencies, 0.99),
        latencies.last().unwrap(),
        cpu,
        cpu / n as f64 * 1e6,
    );
    drop(running);
    drop(cluster);
}
