//! The HTTP/1.1 server under [`spawn_server`]: one accept loop shared by the proxy and the sandbox,
//! with the limits a server on the open internet needs (issue 8).
//!
//! `axum::serve` sets no timeout at all, so a client that sends half a request line kept its
//! connection (and a file descriptor) forever. Here every phase of a connection is bounded:
//!
//! - **headers**: hyper's `header_read_timeout`. Its timer runs from the connection's start and,
//!   on a keep-alive connection, again from the end of each answer (hyper 1.x re-arms it when the
//!   connection goes idle), so it is also the keep-alive idle limit. Trickling bytes does not
//!   extend it: it bounds the whole head.
//! - **body**: a body that pauses for longer than the header timeout is answered 408.
//! - **request**: from the head to the answer's head (body, handler, platform call) at most the
//!   request timeout, else 408 — with `Connection: close`, so the connection ends too.
//! - **idle**: a connection on which no byte moves in either direction for the idle timeout is
//!   closed — what the others miss, chiefly a client that stops reading an answer.
//! - **count**: at most `max_connections` connections at once; past that a new connection gets a
//!   bare 503 and is closed at once, and one rate-limited warning tells the operator.
//!
//! Handlers see the peer address as [`axum::extract::ConnectInfo<SocketAddr>`].

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{header, HeaderValue, Request, Response, StatusCode};
use axum::Router;
use hyper::body::{Body as HttpBody, Bytes, Frame, Incoming, SizeHint};
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::time::{Instant, Sleep};
use tower::ServiceExt;

/// How long and how many: the limits of one listener. [`Default`] is what `qys-proxy` uses
/// unless configured (`QYS_HEADER_TIMEOUT_MS`, `QYS_REQUEST_TIMEOUT_MS`, `QYS_IDLE_TIMEOUT_MS`,
/// `QYS_MAX_CONNECTIONS`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServerLimits {
    /// Time a client has to send a request line and headers, counted from the connection's start
    /// or from the end of the previous answer (so also how long an idle keep-alive connection
    /// stays open), and the longest pause allowed inside a request body. Default 10 s.
    pub header_timeout: Duration,
    /// Time from a request's headers to its answer's headers, body and platform call included;
    /// past it the answer is 408 and the connection closes. Default 30 s.
    pub request_timeout: Duration,
    /// A connection on which nothing is read or written for this long is closed (a client that
    /// stopped reading an answer). Default 60 s.
    pub idle_timeout: Duration,
    /// Connections open at once; more are closed as soon as they are accepted. Default 768,
    /// well under the usual 1,024 open files.
    pub max_connections: usize,
}

impl Default for ServerLimits {
    fn default() -> Self {
        Self {
            header_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(60),
            max_connections: 768,
        }
    }
}

/// Largest request head (and read buffer) of a connection; larger heads get 431. hyper's default
/// is about 400 KiB, which times 768 slow connections would be 300 MiB.
pub const MAX_HEAD_BYTES: usize = 64 * 1024;

/// At most one warning per this long about refused connections, and one about accept errors.
const REPORT_EVERY: Duration = Duration::from_secs(10);

/// What a refused connection gets before it is closed (written only if the socket takes it at once).
const REFUSAL: &[u8] =
    b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\nconnection: close\r\nretry-after: 1\r\n\r\n";

/// Serves `router` on `listener` with [`ServerLimits::default`] until the process ends; returns
/// the task.
pub fn spawn_server(listener: TcpListener, router: Router) -> tokio::task::JoinHandle<()> {
    spawn_server_with(listener, router, ServerLimits::default())
}

/// Serves `router` on `listener` within `limits` until the process ends; returns the task.
pub fn spawn_server_with(listener: TcpListener, router: Router, limits: ServerLimits) -> tokio::task::JoinHandle<()> {
    tokio::spawn(serve(listener, router, limits))
}

async fn serve(listener: TcpListener, router: Router, limits: ServerLimits) {
    let addr = listener.local_addr().map(|a| a.to_string()).unwrap_or_else(|_| "?".into());
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        .keep_alive(true)
        .max_buf_size(MAX_HEAD_BYTES);
    let permits = Arc::new(Semaphore::new(limits.max_connections));
    let mut refusals = Throttle::default();
    let mut accept_errors = Throttle::default();
    let mut backoff = Backoff::default();
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => {
                backoff.reset();
                accepted
            }
            // The peer gave up before we took it: nothing to do.
            Err(e) if is_peer_error(&e) => continue,
            // EMFILE, ENFILE, ENOBUFS…: wait for connections to end instead of spinning.
            Err(e) => {
                let pause = backoff.next();
                if let Some(n) = accept_errors.hit(Instant::now()) {
                    tracing::error!(
                        "cannot accept connections on {addr}: {e}; retrying in {} ms ({n} failures since the last report)",
                        pause.as_millis()
                    );
                }
                tokio::time::sleep(pause).await;
                continue;
            }
        };
        // Responses go out as written: with Nagle's algorithm the last segment of a larger one
        // (the 55 KB .wasm) waited for the client's delayed ACK, 40 ms on loopback.
        let _ = stream.set_nodelay(true);
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            // Best effort and never waiting: under attack the socket is simply closed.
            let _ = stream.try_write(REFUSAL);
            drop(stream);
            if let Some(n) = refusals.hit(Instant::now()) {
                tracing::warn!(
                    "connection limit reached ({} open); refusing new connections to {addr} \
                     ({n} refused since the last report; the limit is QYS_MAX_CONNECTIONS)",
                    limits.max_connections,
                );
            }
            continue;
        };
        let service = {
            let router = router.clone();
            hyper::service::service_fn(move |req| answer(router.clone(), req, peer, limits))
        };
        let connection = builder.serve_connection(TokioIo::new(IdleIo::new(stream, limits.idle_timeout)), service);
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
            drop(permit);
        });
    }
}

/// Accept errors that concern only the connection being accepted.
fn is_peer_error(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused | io::ErrorKind::ConnectionAborted | io::ErrorKind::ConnectionReset
    )
}

/// Answers one request: the peer address for the handlers, the body pause limit, the request
/// timeout.
async fn answer(
    router: Router,
    req: Request<Incoming>,
    peer: SocketAddr,
    limits: ServerLimits,
) -> Result<Response<Body>, Infallible> {
    let paused = Arc::new(AtomicBool::new(false));
    let (mut parts, body) = req.into_parts();
    parts.extensions.insert(ConnectInfo(peer));
    let body = Body::new(PauseLimit::new(body, limits.header_timeout, paused.clone()));
    let answered = tokio::time::timeout(limits.request_timeout, router.oneshot(Request::from_parts(parts, body))).await;
    Ok(match answered {
        // A handler that met the body's pause answers something (often "bad body"): it was a timeout.
        Ok(Ok(_)) if paused.load(Ordering::Relaxed) => {
            tracing::debug!(%peer, "request body paused too long: 408");
            request_timeout()
        }
        Ok(Ok(response)) => response,
        Ok(Err(never)) => match never {},
        Err(_) => {
            tracing::debug!(%peer, "no answer within the request timeout: 408");
            request_timeout()
        }
    })
}

fn request_timeout() -> Response<Body> {
    let mut response = Response::new(Body::from("request timeout\n"));
    *response.status_mut() = StatusCode::REQUEST_TIMEOUT;
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; charset=utf-8"));
    headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
    response
}

/// A request body that fails once no data has come for `pause`, and says so in `paused`.
struct PauseLimit {
    inner: Incoming,
    pause: Duration,
    /// Made on the first wait only: bodies that arrive with their head need no timer.
    timer: Option<Pin<Box<Sleep>>>,
    /// Whether `timer` runs from the current wait (it is re-armed after each frame).
    armed: bool,
    paused: Arc<AtomicBool>,
}

impl PauseLimit {
    fn new(inner: Incoming, pause: Duration, paused: Arc<AtomicBool>) -> Self {
        Self { inner, pause, timer: None, armed: false, paused }
    }
}

impl HttpBody for PauseLimit {
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = self.get_mut();
        if let Poll::Ready(frame) = Pin::new(&mut this.inner).poll_frame(cx) {
            this.armed = false;
            return Poll::Ready(frame.map(|f| f.map_err(Into::into)));
        }
        let deadline = Instant::now() + this.pause;
        let timer = this.timer.get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
        if !this.armed {
            timer.as_mut().reset(deadline);
            this.armed = true;
        }
        ready!(timer.as_mut().poll(cx));
        this.paused.store(true, Ordering::Relaxed);
        Poll::Ready(Some(Err("the request body paused for longer than the header timeout".into())))
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// A socket that fails with `TimedOut` once nothing has been read or written for `idle`.
struct IdleIo {
    io: TcpStream,
    idle: Duration,
    last: Instant,
    timer: Pin<Box<Sleep>>,
}

impl IdleIo {
    fn new(io: TcpStream, idle: Duration) -> Self {
        let now = Instant::now();
        Self { io, idle, last: now, timer: Box::pin(tokio::time::sleep_until(now + idle)) }
    }

    /// Called after the socket said Pending: an error once the connection has been idle too long.
    fn poll_idle(&mut self, cx: &mut Context<'_>) -> Poll<io::Error> {
        let deadline = self.last + self.idle;
        if self.timer.deadline() != deadline {
            self.timer.as_mut().reset(deadline);
        }
        ready!(self.timer.as_mut().poll(cx));
        Poll::Ready(io::Error::new(io::ErrorKind::TimedOut, "nothing read or written within the idle timeout"))
    }

    /// `polled` with the idle check: progress moves the deadline, a wait may end in the error.
    fn watch<T>(&mut self, cx: &mut Context<'_>, polled: Poll<io::Result<T>>, moved: impl Fn(&T) -> bool) -> Poll<io::Result<T>> {
        match polled {
            Poll::Ready(Ok(value)) => {
                if moved(&value) {
                    self.last = Instant::now();
                }
                Poll::Ready(Ok(value))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => self.poll_idle(cx).map(Err),
        }
    }
}

impl AsyncRead for IdleIo {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.io).poll_read(cx, buf);
        let after = buf.filled().len();
        this.watch(cx, polled, |_| after > before)
    }
}

impl AsyncWrite for IdleIo {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.io).poll_write(cx, buf);
        this.watch(cx, polled, |n| *n > 0)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.io).poll_write_vectored(cx, bufs);
        this.watch(cx, polled, |n| *n > 0)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let polled = Pin::new(&mut this.io).poll_flush(cx);
        this.watch(cx, polled, |_| false)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }
}

/// Counts events and says when to report them: at the first, then at most once per
/// [`REPORT_EVERY`].
#[derive(Default)]
struct Throttle {
    last: Option<Instant>,
    since: u64,
}

impl Throttle {
    /// Counts one event; `Some(events since the last report)` when a report is due.
    fn hit(&mut self, now: Instant) -> Option<u64> {
        self.since += 1;
        if self.last.is_some_and(|last| now.duration_since(last) < REPORT_EVERY) {
            return None;
        }
        self.last = Some(now);
        Some(std::mem::take(&mut self.since))
    }
}

/// Pauses after accept errors: 50 ms, doubling up to 1 s, back to the start after a success.
#[derive(Default)]
struct Backoff {
    failures: u32,
}

impl Backoff {
    fn next(&mut self) -> Duration {
        let pause = Duration::from_millis(50 << self.failures.min(5)).min(Duration::from_secs(1));
        self.failures += 1;
        pause
    }

    fn reset(&mut self) {
        self.failures = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_to_a_second_and_resets() {
        let mut b = Backoff::default();
        let pauses: Vec<u128> = (0..7).map(|_| b.next().as_millis()).collect();
        assert_eq!(pauses, [50, 100, 200, 400, 800, 1000, 1000]);
        b.reset();
        assert_eq!(b.next(), Duration::from_millis(50));
    }

    #[test]
    fn throttle_reports_the_first_then_once_per_period() {
        let start = Instant::now();
        let mut t = Throttle::default();
        assert_eq!(t.hit(start), Some(1));
        assert_eq!(t.hit(start + Duration::from_secs(1)), None);
        assert_eq!(t.hit(start + REPORT_EVERY / 2), None);
        assert_eq!(t.hit(start + REPORT_EVERY), Some(3));
        assert_eq!(t.hit(start + REPORT_EVERY), None);
    }
}
