//! Slow, idle and too many clients (issue 8): real sockets on 127.0.0.1 against `spawn_server`.
//! Every wait is a read with a deadline: a test ends as soon as the server closes the connection.

mod common;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, Once};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::ConnectInfo;
use axum::routing::{get, post};
use axum::Router;
use clap::Parser;
use common::*;
use qys_proxy::cli::Cli;
use qys_proxy::{spawn_server_with, ServerLimits};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::time::Instant;

/// Size of `/big`: far more than the socket buffers between server and client hold.
const BIG: usize = 16 << 20;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// Latest a connection may be closed in the timeout tests below: a loaded machine may be seconds
/// late, and the next limit that could close them instead is 10 s (or never).
const LATEST: Duration = Duration::from_secs(8);
/// How long those tests read before giving up.
const SLACK_DEADLINE: Duration = Duration::from_secs(9);

/// Limits with short timeouts for these tests.
fn limits(header: u64, request: u64, idle: u64, max_connections: usize) -> ServerLimits {
    ServerLimits { header_timeout: ms(header), request_timeout: ms(request), idle_timeout: ms(idle), max_connections }
}

fn router() -> Router {
    Router::new()
        .route("/", get(|| async { "ok" }))
        .route("/echo", post(|body: Bytes| async move { format!("{} bytes", body.len()) }))
        .route("/peer", get(|ConnectInfo(peer): ConnectInfo<SocketAddr>| async move { peer.to_string() }))
        .route("/big", get(|| async { Body::from(vec![b'x'; BIG]) }))
        .route(
            "/sleep",
            get(|| async {
                tokio::time::sleep(Duration::from_secs(20)).await;
                "late"
            }),
        )
}

async fn start(limits: ServerLimits) -> SocketAddr {
    let (listener, _) = bind().await;
    let addr = listener.local_addr().unwrap();
    spawn_server_with(listener, router(), limits);
    addr
}

/// How a read with a deadline ended.
#[derive(Debug)]
struct Read {
    data: Vec<u8>,
    /// The server closed (EOF or reset) — `false`: still open at the deadline.
    closed: bool,
    elapsed: Duration,
}

impl Read {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.data[..self.data.len().min(200)]).into_owned()
    }
}

/// Reads until the server closes the connection or `within` passes.
async fn read_until_closed(stream: &mut TcpStream, within: Duration) -> Read {
    let start = Instant::now();
    let mut data = Vec::new();
    let mut buf = vec![0; 64 * 1024];
    loop {
        let closed = match tokio::time::timeout_at(start + within, stream.read(&mut buf)).await {
            Err(_) => false,
            Ok(Ok(0)) => true,
            Ok(Ok(n)) => {
                data.extend_from_slice(&buf[..n]);
                continue;
            }
            Ok(Err(e)) if is_closed(&e) => true,
            Ok(Err(e)) => panic!("read: {e}"),
        };
        return Read { data, closed, elapsed: start.elapsed() };
    }
}

fn is_closed(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::*;
    matches!(e.kind(), ConnectionReset | ConnectionAborted | BrokenPipe)
}

/// Reads one whole answer with a body of `Content-Length` bytes; the head and the body.
async fn read_answer(stream: &mut TcpStream) -> (String, Vec<u8>) {
    let mut data = Vec::new();
    let mut buf = [0; 4096];
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        if let Some(end) = data.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&data[..end]).into_owned();
            let length: usize = head
                .lines()
                .find_map(|l| l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().parse().unwrap()))
                .expect("content-length");
            if data.len() >= end + 4 + length {
                return (head, data[end + 4..end + 4 + length].to_vec());
            }
        }
        let n = tokio::time::timeout_at(deadline, stream.read(&mut buf)).await.expect("an answer in time").unwrap();
        assert!(n > 0, "closed before the answer was complete: {:?}", String::from_utf8_lossy(&data));
        data.extend_from_slice(&buf[..n]);
    }
}

async fn connect(addr: SocketAddr) -> TcpStream {
    TcpStream::connect(addr).await.unwrap()
}

/// A connection that sent the start of a request and nothing more.
async fn slow_connection(addr: SocketAddr) -> TcpStream {
    let mut stream = connect(addr).await;
    stream.write_all(b"POST /qys/proxy HTTP/1.1\r\nHost: x\r\n").await.unwrap();
    stream
}

fn assert_closed_between(read: &Read, earliest: Duration, latest: Duration, what: &str) {
    assert!(read.closed, "{what}: still open after {:?}", read.elapsed);
    assert!(
        (earliest..=latest).contains(&read.elapsed),
        "{what}: closed after {:?}, expected {earliest:?}..={latest:?}",
        read.elapsed
    );
}

// (a) Headers.

#[tokio::test]
async fn half_sent_headers_are_cut_at_the_header_timeout() {
    let addr = start(limits(1_000, 5_000, 10_000, 100)).await;
    let mut stream = slow_connection(addr).await;
    let read = read_until_closed(&mut stream, SLACK_DEADLINE).await;
    assert_closed_between(&read, ms(900), LATEST, "half a request");
    eprintln!("half-sent headers: closed after {:?}", read.elapsed);

    let mut stream = connect(addr).await;
    stream.write_all(b"POST /qys/pro").await.unwrap();
    let read = read_until_closed(&mut stream, SLACK_DEADLINE).await;
    assert_closed_between(&read, ms(900), LATEST, "half a request line");
}

#[tokio::test]
async fn trickled_headers_do_not_extend_the_header_timeout() {
    let addr = start(limits(1_000, 5_000, 10_000, 100)).await;
    let (mut reader, mut writer) = connect(addr).await.into_split();
    let trickle = tokio::spawn(async move {
        writer.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nX-Slow: ").await.unwrap();
        for _ in 0..100 {
            tokio::time::sleep(ms(100)).await;
            if writer.write_all(b"a").await.is_err() {
                break;
            }
        }
    });
    let start = Instant::now();
    let mut buf = [0; 1024];
    let n = tokio::time::timeout(SLACK_DEADLINE, reader.read(&mut buf)).await.expect("closed in time");
    assert!(matches!(n, Ok(0)) || matches!(&n, Err(e) if is_closed(e)), "{n:?}");
    let elapsed = start.elapsed();
    assert!((ms(900)..=LATEST).contains(&elapsed), "closed after {elapsed:?}");
    trickle.abort();
}

// (b) Keep-alive.

#[tokio::test]
async fn idle_keep_alive_connection_is_closed_after_the_header_timeout() {
    let addr = start(limits(1_000, 5_000, 10_000, 100)).await;
    let mut stream = connect(addr).await;
    stream.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
    let (head, body) = read_answer(&mut stream).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(!head.to_ascii_lowercase().contains("connection: close"), "{head}");
    assert_eq!(body, b"ok");
    let read = read_until_closed(&mut stream, SLACK_DEADLINE).await;
    assert_closed_between(&read, ms(900), LATEST, "idle keep-alive connection");
    assert!(read.data.is_empty(), "{}", read.text());
    eprintln!("idle keep-alive: closed {:?} after the answer", read.elapsed);
}

// (c) Bodies and answers.

#[tokio::test]
async fn stalled_body_is_answered_408_at_the_header_timeout() {
    // A request timeout well past the bound below: only the header timeout can answer in time.
    let addr = start(limits(1_000, 10_000, 20_000, 100)).await;
    let mut stream = connect(addr).await;
    stream.write_all(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n0123456789").await.unwrap();
    let read = read_until_closed(&mut stream, SLACK_DEADLINE).await;
    assert_closed_between(&read, ms(900), LATEST, "stalled body");
    assert!(read.text().starts_with("HTTP/1.1 408"), "{}", read.text());
    eprintln!("stalled body: 408 and closed after {:?}", read.elapsed);
}

#[tokio::test]
async fn dripped_body_and_slow_handler_are_answered_408_at_the_request_timeout() {
    let addr = start(limits(1_000, 2_000, 10_000, 100)).await;
    // One byte every 300 ms: never a pause of a second, but 100 bytes would take 30 s.
    let (mut reader, mut writer) = connect(addr).await.into_split();
    let drip = tokio::spawn(async move {
        writer.write_all(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n").await.unwrap();
        for _ in 0..100 {
            if writer.write_all(b"a").await.is_err() {
                break;
            }
            tokio::time::sleep(ms(300)).await;
        }
    });
    let start = Instant::now();
    let mut data = Vec::new();
    let n = tokio::time::timeout(SLACK_DEADLINE, reader.read_to_end(&mut data)).await.expect("closed in time");
    assert!(n.is_ok() || n.as_ref().is_err_and(is_closed), "{n:?}");
    assert!(data.starts_with(b"HTTP/1.1 408"), "{}", String::from_utf8_lossy(&data));
    assert!((ms(1_800)..=LATEST).contains(&start.elapsed()), "answered after {:?}", start.elapsed());
    drip.abort();

    let mut stream = connect(addr).await;
    stream.write_all(b"GET /sleep HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
    let read = read_until_closed(&mut stream, SLACK_DEADLINE).await;
    assert_closed_between(&read, ms(1_800), LATEST, "slow handler");
    assert!(read.text().starts_with("HTTP/1.1 408"), "{}", read.text());
}

#[tokio::test]
async fn a_client_that_stops_reading_is_cut_at_the_idle_timeout() {
    let addr = start(limits(1_000, 1_000, 1_500, 100)).await;
    let socket = TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(16 * 1024).unwrap();
    let mut stream = socket.connect(addr).await.unwrap();
    stream.write_all(b"GET /big HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
    // The client reads nothing: the server's writes stall once the socket buffers are full.
    tokio::time::sleep(Duration::from_secs(4)).await;
    let read = read_until_closed(&mut stream, Duration::from_secs(5)).await;
    assert!(read.closed, "still open after reading {} bytes", read.data.len());
    assert!(read.text().starts_with("HTTP/1.1 200"), "{}", read.text());
    assert!(read.data.len() < BIG, "the whole answer came through ({} bytes)", read.data.len());
    eprintln!("stalled reader: cut after {} of {BIG} bytes", read.data.len());
}

// ConnectInfo.

#[tokio::test]
async fn handlers_see_the_peer_address() {
    let addr = start(limits(1_000, 5_000, 10_000, 100)).await;
    let mut stream = connect(addr).await;
    let me = stream.local_addr().unwrap();
    stream.write_all(b"GET /peer HTTP/1.1\r\nHost: x\r\n\r\n").await.unwrap();
    let (head, body) = read_answer(&mut stream).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert_eq!(String::from_utf8(body).unwrap(), me.to_string());
}

// (d) Many slow connections.

/// Raises the soft open-files limit towards `want` (up to the hard limit); the limit it ends at.
#[allow(clippy::useless_conversion)] // `rlim_t` is `u64` here, not on every target
fn raise_open_files_limit(want: u64) -> u64 {
    #[cfg(unix)]
    unsafe {
        let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            return 0;
        }
        if u64::from(limit.rlim_cur) < want {
            limit.rlim_cur = limit.rlim_max.min(libc::rlim_t::try_from(want).unwrap_or(libc::rlim_t::MAX));
            libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
            libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit);
        }
        u64::from(limit.rlim_cur)
    }
    #[cfg(not(unix))]
    want
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_is_served_while_500_slow_connections_are_open() {
    const SLOW: usize = 500;
    // Both ends of every connection live in this process, next to the other tests' sockets.
    let files = raise_open_files_limit(4_096);
    assert!(files >= 2 * SLOW as u64 + 300, "this test needs about 1,300 open files; the limit is {files}");
    let defaults = ServerLimits::default();
    assert!(defaults.max_connections >= 600);
    let stack = Stack::start().await; // the proxy and the sandbox with the default limits
    let proxy: SocketAddr = stack.proxy.strip_prefix("http://").unwrap().parse().unwrap();

    let opened = Instant::now();
    let mut openers = tokio::task::JoinSet::new();
    for _ in 0..5 {
        openers.spawn(async move {
            let mut streams = Vec::new();
            for _ in 0..SLOW / 5 {
                streams.push((Instant::now(), slow_connection(proxy).await));
            }
            streams
        });
    }
    let mut slow = Vec::new();
    while let Some(streams) = openers.join_next().await {
        slow.extend(streams.unwrap());
    }
    assert_eq!(slow.len(), SLOW);
    eprintln!("{SLOW} slow connections opened in {:?}", opened.elapsed());

    let sent = Instant::now();
    let response = sdk_request(
        &stack.client,
        &stack.proxy,
        PAGE_ORIGIN,
        "personalSign",
        &state("slow"),
        json!({"contractId": "2603417854124281870", "contact": "13700000044"}),
    )
    .await;
    assert_eq!(response.status().as_u16(), 200);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["code"], 0, "{body}");
    assert!(body["result"]["pageUrl"].as_str().is_some_and(|u| u.starts_with(&stack.sandbox)), "{body}");
    eprintln!("SDK request answered in {:?} beside {SLOW} slow connections", sent.elapsed());
    assert!(opened.elapsed() < defaults.header_timeout, "too slow to tell: the slow connections may have been closed already");

    // And none of them is kept: each is closed at the header timeout (+ 3 s of slack).
    let mut readers = tokio::task::JoinSet::new();
    for (at, mut stream) in slow {
        let left = (defaults.header_timeout + Duration::from_secs(3)).saturating_sub(at.elapsed());
        readers.spawn(async move {
            let read = read_until_closed(&mut stream, left).await;
            (read.closed, at.elapsed())
        });
    }
    let (mut open, mut latest) = (0, Duration::ZERO);
    while let Some(read) = readers.join_next().await {
        let (closed, after) = read.unwrap();
        open += usize::from(!closed);
        latest = latest.max(after);
    }
    assert_eq!(open, 0, "{open} of {SLOW} slow connections still open {:?} after opening", opened.elapsed());
    eprintln!("all {SLOW} slow connections closed, each within {latest:?} of its opening");
}

// (e) The connection cap.

/// Warnings and errors of this test binary, as text.
fn log() -> Arc<Mutex<Vec<u8>>> {
    static INIT: Once = Once::new();
    static LOG: Mutex<Option<Arc<Mutex<Vec<u8>>>>> = Mutex::new(None);
    INIT.call_once(|| {
        let buffer = Arc::new(Mutex::new(Vec::new()));
        *LOG.lock().unwrap() = Some(buffer.clone());
        let _ = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::WARN)
            .with_ansi(false)
            .with_writer(move || LogWriter(buffer.clone()))
            .try_init();
    });
    LOG.lock().unwrap().clone().unwrap()
}

struct LogWriter(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn log_lines(log: &Mutex<Vec<u8>>, needle: &str) -> Vec<String> {
    let text = String::from_utf8_lossy(&log.lock().unwrap()).into_owned();
    text.lines().filter(|l| l.contains(needle)).map(str::to_owned).collect()
}

#[tokio::test]
async fn connections_past_the_cap_are_refused_with_one_warning() {
    const CAP: usize = 20;
    let log = log();
    let addr = start(limits(10_000, 10_000, 20_000, CAP)).await;
    let mut held = Vec::new();
    for _ in 0..CAP {
        held.push(slow_connection(addr).await);
    }
    // The 21st and a few more: refused at once (a bare 503 at most, then closed), not held until
    // the 10 s header timeout.
    for i in 0..5 {
        let mut stream = connect(addr).await;
        let read = read_until_closed(&mut stream, Duration::from_secs(5)).await;
        assert!(read.closed, "connection {} past the cap is still open after {:?}", CAP + 1 + i, read.elapsed);
        assert!(read.data.is_empty() || read.text().starts_with("HTTP/1.1 503"), "{}", read.text());
    }
    let needle = format!("refusing new connections to {addr}");
    let warnings = log_lines(&log, &needle);
    assert_eq!(warnings.len(), 1, "{warnings:#?}");
    assert!(warnings[0].contains("WARN") && warnings[0].contains(&format!("connection limit reached ({CAP} open)")), "{}", warnings[0]);
    eprintln!("{}", warnings[0]);

    // One slow client leaves: a new connection is served again.
    drop(held.pop());
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let mut stream = connect(addr).await;
        stream.write_all(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").await.unwrap();
        let read = read_until_closed(&mut stream, Duration::from_secs(2)).await;
        if read.text().starts_with("HTTP/1.1 200") {
            break;
        }
        assert!(Instant::now() < deadline, "still refused after a connection closed: {}", read.text());
        tokio::time::sleep(ms(50)).await;
    }
    assert_eq!(log_lines(&log, &needle).len(), 1, "the warning is rate-limited");
}

// Settings.

fn cli(args: &[&str]) -> Cli {
    Cli::try_parse_from(std::iter::once("qys-proxy").chain(args.iter().copied())).unwrap()
}

#[test]
fn limits_are_checked_at_start_up() {
    assert_eq!(cli(&[]).server_limits(), Ok(ServerLimits::default()));
    assert_eq!(
        cli(&["--header-timeout-ms=2000", "--request-timeout-ms=20000", "--idle-timeout-ms=25000", "--max-connections=100"])
            .server_limits(),
        Ok(limits(2_000, 20_000, 25_000, 100))
    );
    let refused = |args: &[&str], variable: &str| {
        let message = cli(args).server_limits().unwrap_err();
        assert!(message.starts_with(variable), "{args:?}: {message}");
    };
    refused(&["--header-timeout-ms=10001"], "QYS_HEADER_TIMEOUT_MS");
    refused(&["--header-timeout-ms=0"], "QYS_HEADER_TIMEOUT_MS");
    // Must leave the platform (QYS_TIMEOUT_MS, default 15 s) time to answer.
    refused(&["--request-timeout-ms=15000"], "QYS_REQUEST_TIMEOUT_MS");
    refused(&["--timeout-ms=40000"], "QYS_REQUEST_TIMEOUT_MS");
    refused(&["--idle-timeout-ms=30000"], "QYS_IDLE_TIMEOUT_MS");
    refused(&["--max-connections=0"], "QYS_MAX_CONNECTIONS");
}
