//! Bounded benchmark of the sandbox's session and nonce tables (issue 8, item 9).
//!
//! Starts the sandbox in this process on a loopback port and opens signing sessions one after
//! another through its signed API (`POST /v2/contract/miniappexchange`, a fresh nonce each), as
//! the proxy does for every flow. Prints the mean latency of each block of 10,000 opens and the
//! growth of the resident set. Stops at `count` opens or after `max_seconds`, whichever is first.
//! With `ttl_ms`, sessions and nonces expire after that long instead of the platform's 30 and 10
//! minutes, to watch the tables stay bounded.
//!
//! ```text
//! cargo run --release -p qys-proxy --example sandbox_sessions -- [count=200000] [max_seconds=120] [ttl_ms]
//! ```

use std::time::{Duration, Instant};

use qys_proxy::sandbox::{self, SandboxConfig};
use qys_proxy::sign::SignedHeaders;
use qys_proxy::Secret;

const BLOCK: u64 = 10_000;
const TOKEN: &str = "bench-token";
const SECRET: &str = "bench-secret";
const BODY: &str = r#"{"contractId":"2603417854124281870","user":{"contact":"13700000044","contactType":"MOBILE"}}"#;

/// Resident set size in KiB (Linux), 0 elsewhere.
fn rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("VmRSS:")).map(str::to_owned))
        .and_then(|l| l.split_whitespace().nth(1).and_then(|n| n.parse().ok()))
        .unwrap_or(0)
}

async fn open(http: &reqwest::Client, url: &str) {
    let headers = SignedHeaders::now(TOKEN, SECRET);
    let mut request = http.post(url).header("content-type", "application/json").body(BODY);
    for (name, value) in headers.pairs() {
        request = request.header(name, value);
    }
    let answer = request.send().await.expect("sandbox answers").text().await.expect("body");
    assert!(answer.contains("\"code\":0"), "{answer}");
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let args: Vec<u64> = std::env::args().skip(1).map(|a| a.parse().expect("arguments are numbers")).collect();
    let count = args.first().copied().unwrap_or(200_000);
    let max = Duration::from_secs(args.get(1).copied().unwrap_or(120));

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("loopback port");
    let base = format!("http://{}", listener.local_addr().expect("address"));
    let mut cfg = SandboxConfig::new(TOKEN.into(), Secret::new(SECRET), base.clone());
    if let Some(&ttl) = args.get(2) {
        (cfg.session_ttl, cfg.nonce_ttl) = (Duration::from_millis(ttl), Duration::from_millis(ttl));
    }
    let server = qys_proxy::spawn_server(listener, sandbox::router(cfg));
    let http = reqwest::Client::new();
    let url = format!("{base}/v2/contract/miniappexchange");

    // Warm the connection, the allocator and the tables' first growth steps; not counted.
    for _ in 0..1_000 {
        open(&http, &url).await;
    }
    let rss_start = rss_kib();
    let started = Instant::now();
    let mut block_started = Instant::now();
    let mut blocks = Vec::new();
    let mut done = 0;
    while done < count && started.elapsed() < max {
        open(&http, &url).await;
        done += 1;
        if done % BLOCK == 0 {
            let mean_us = block_started.elapsed().as_secs_f64() * 1e6 / BLOCK as f64;
            println!("opens {:>7}-{:<7} mean {mean_us:>7.1} µs  rss {:>7} KiB", done - BLOCK + 1, done, rss_kib());
            blocks.push(mean_us);
            block_started = Instant::now();
        }
    }
    let rss_end = rss_kib();
    let grown = rss_end.saturating_sub(rss_start) * 1024;
    println!(
        "summary: {done} opens in {:.1} s (limit {count} opens, {} s); first block {:.1} µs, last block {:.1} µs; \
rss {rss_start} → {rss_end} KiB, {:.0} B per open",
        started.elapsed().as_secs_f64(),
        max.as_secs(),
        blocks.first().copied().unwrap_or(f64::NAN),
        blocks.last().copied().unwrap_or(f64::NAN),
        grown as f64 / done.max(1) as f64,
    );
    server.abort();
}
