//! The integrator's proxy: the SDK endpoint (four flows and `outcome`), the return page and the
//! server-callback receivers. This module holds the configuration, the router, CORS and the
//! origin and URL allow-lists; each endpoint lives in its own file.

mod callbacks;
mod clients;
mod confirm;
mod error;
mod return_page;
mod sdk;

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::{to_bytes, Body, Bytes};
use axum::extract::{ConnectInfo, Request, State};
use axum::http::{header, Extensions, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use tower_http::services::ServeDir;

use crate::bucket::Ceiling;
use crate::platform::Platform;
use crate::protocol::{codes, ProtocolError};
use crate::store::quota::{SourceQuota, FRESH_SDK_TOKENS};
use crate::store::{CallbackStore, RateLimit};
use crate::token::TokenKey;
use clients::{Client, Unheeded};
use error::ProxyError;

pub use callbacks::{check_company_callback, check_personal_callback};
pub use clients::{BadBlock, TrustedProxies, DEFAULT_TRUSTED_PROXIES};
pub use confirm::{ConfirmLimits, Confirmations};
pub use sdk::fill_template;

/// Largest accepted request body.
pub const MAX_BODY: usize = 16 * 1024;

/// Default `QYS_SDK_RATE`: a flow (a start, a return page, an `outcome` or two) every two
/// seconds from one address, sustained.
pub const DEFAULT_SDK_RATE: f64 = 2.0;
/// Default `QYS_SDK_BURST`: an office behind one address starting many flows at once, and the
/// repository's browser tests (every call from 127.0.0.1), fit in it.
pub const DEFAULT_SDK_BURST: u32 = 300;

/// Default `QYS_FLOW_START_RATE`: flow starts per second one instance makes, whoever asks. A
/// started flow needs a confirmation to finish (`QYS_CONFIRM_RATE`, 20), but many are abandoned
/// before it; 2.5 times that leaves room for them and still bounds what rotating addresses
/// can spend.
pub const DEFAULT_FLOW_START_RATE: u32 = 50;

/// The checked `QYS_SDK_RATE` / `QYS_SDK_BURST`; rate 0 is no limit.
pub fn sdk_limit(per_second: f64, burst: u32) -> Result<RateLimit, String> {
    if !per_second.is_finite() || per_second < 0.0 {
        return Err(format!("QYS_SDK_RATE {per_second} must be a number ≥ 0 (0: no limit)"));
    }
    if per_second == 0.0 {
        return Ok(RateLimit::OFF);
    }
    if burst == 0 {
        return Err("QYS_SDK_BURST must be at least 1".into());
    }
    Ok(RateLimit { per_second, burst })
}

/// How the proxy turns a validated iframe or redirect request into a page URL. (Mini-program
/// flows always exchange a ticket: the plugin opens it.)
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UpstreamMode {
    /// Exchange a ticket (`…/miniappexchange`), then fill the page-URL template
    /// (placeholders `{ticket}` and `{callbackPage}`).
    Ticket {
        /// e.g. `https://h5.example/sdk?ticket={ticket}&callbackPage={callbackPage}`.
        template: String,
    },
    /// Ask the platform's page-URL APIs, which take `callbackPage` directly.
    PageUrl,
}

/// The proxy's URL paths.
#[derive(Debug, Clone)]
pub struct Paths {
    /// SDK endpoint (`POST`), default `/qys/proxy`.
    pub proxy: String,
    /// Return page (`GET`), default `/qys/return`.
    pub return_page: String,
    /// Personal auth server callback (`POST`), default `/qys/callback/personal-auth`.
    pub personal_callback: String,
    /// Company auth server callback (`POST`), default `/qys/callback/company-auth`.
    pub company_callback: String,
}

impl Default for Paths {
    fn default() -> Self {
        Self {
            proxy: "/qys/proxy".into(),
            return_page: "/qys/return".into(),
            personal_callback: "/qys/callback/personal-auth".into(),
            company_callback: "/qys/callback/company-auth".into(),
        }
    }
}

/// Everything the proxy needs, already validated.
pub struct ProxyConfig {
    /// Base URL under which browsers and the platform reach this proxy (no trailing slash).
    pub public_url: String,
    /// The platform client.
    pub platform: Platform,
    /// Ticket or page-URL upstream of iframe and redirect flows.
    pub upstream_mode: UpstreamMode,
    /// The mini-program plugin's environment (`com`, `cn`, `sandbox`), sent with tickets.
    pub miniprogram_env: String,
    /// Page origins allowed to call the SDK endpoint (exact `scheme://host[:port]`).
    pub allowed_origins: Vec<String>,
    /// URL prefixes a browser-supplied `callbackUrl` must start with.
    pub callback_url_allowlist: Vec<String>,
    /// Key of the return and flow tokens.
    pub token_key: TokenKey,
    /// How long a return or flow token stays valid.
    pub token_ttl: Duration,
    /// URL paths.
    pub paths: Paths,
    /// Server-callback store.
    pub store: CallbackStore,
    /// How long after callback URLs began to carry `sig` on this database
    /// ([`CallbackStore::require_sigs`], read per delivery) a delivery without one is still
    /// stored when its flow token was issued before that moment (`QYS_UNSIGNED_CALLBACK_DAYS`;
    /// zero: never).
    pub unsigned_callback_window: Duration,
    /// Per source address: flow starts, `outcome` and return-page confirmations, the requests
    /// that spend the platform quota (`QYS_SDK_RATE`, `QYS_SDK_BURST`).
    pub sdk_limit: RateLimit,
    /// Per instance: flow starts per second, bursts as large, whatever their sources
    /// (`QYS_FLOW_START_RATE`, ≥ 1).
    pub flow_start_rate: u32,
    /// Peers whose `X-Forwarded-For` / `X-Real-IP` name the client (`QYS_TRUSTED_PROXIES`): the
    /// address the per-address limits charge and the log names.
    pub trusted_proxies: TrustedProxies,
    /// Static directories: (mount path, directory), e.g. `("/", "www")`, `("/js", "dist")`.
    pub static_dirs: Vec<(String, PathBuf)>,
}

impl ProxyConfig {
    /// Origin of [`Self::public_url`]: the `returnOrigin` the SDK checks messages against.
    pub fn public_origin(&self) -> String {
        url::Url::parse(&self.public_url)
            .map(|u| u.origin().ascii_serialization())
            .unwrap_or_else(|_| self.public_url.clone())
    }
}

struct App {
    cfg: ProxyConfig,
    public_origin: String,
    /// `QYS_CALLBACK_URL_ALLOWLIST`, normalised by [`callback_allowlist_entry`].
    callback_prefixes: Vec<url::Url>,
    /// The buckets of [`ProxyConfig::sdk_limit`].
    sdk_sources: SourceQuota,
    /// [`ProxyConfig::flow_start_rate`].
    flow_starts: Ceiling,
}

/// The proxy's router.
pub fn router(cfg: ProxyConfig) -> Router {
    let public_origin = cfg.public_origin();
    let paths = cfg.paths.clone();
    let statics = cfg.static_dirs.clone();
    let callback_prefixes = cfg
        .callback_url_allowlist
        .iter()
        .filter_map(|entry| {
            callback_allowlist_entry(entry)
                .inspect_err(|e| tracing::error!(entry = ?entry, error = %e, "QYS_CALLBACK_URL_ALLOWLIST entry ignored"))
                .ok()
        })
        .collect();
    let sdk_sources = SourceQuota::new(cfg.sdk_limit, FRESH_SDK_TOKENS);
    let flow_starts = Ceiling::new(cfg.flow_start_rate);
    let app = Arc::new(App { cfg, public_origin, callback_prefixes, sdk_sources, flow_starts });
    let mut router = Router::new()
        .route(&paths.proxy, post(sdk::sdk_endpoint).options(preflight))
        .route(&paths.return_page, get(return_page::return_page))
        .route(&paths.personal_callback, post(callbacks::personal_callback))
        .route(&paths.company_callback, post(callbacks::company_callback))
        .with_state(app);
    if !statics.is_empty() {
        let mut mounts: Vec<(String, ServeDir)> = statics
            .into_iter()
            .map(|(mount, dir)| {
                (mount.trim_end_matches('/').to_owned(), ServeDir::new(dir).append_index_html_on_directories(true))
            })
            .collect();
        // Longest mount first: `/js/…` is served from `/js`, not from `/`.
        mounts.sort_by_key(|(mount, _)| std::cmp::Reverse(mount.len()));
        let mounts: Arc<[(String, ServeDir)]> = mounts.into();
        router = router.fallback(move |request: Request| static_files(mounts.clone(), request));
    }
    router
}

/// Static files: `mounts` are (path prefix without trailing slash, directory), longest first.
///
/// ServeDir's only `Location` is its redirect of a directory to the same path plus `/`, built
/// from the request's URI as received: `//seed` gave `//seed/` (another host to a browser), an
/// absolute-form target `http://evil.example/seed` gave `http://evil.example/seed/`, and a
/// nested mount lost its prefix. So a path that could read as protocol-relative is not served
/// at all (404), ServeDir sees only the path below the mount, and the redirect's `Location` is
/// rebuilt here from the full path and query alone.
async fn static_files(mounts: Arc<[(String, ServeDir)]>, request: Request) -> Response {
    let path = request.uri().path().to_owned();
    let query = request.uri().query().map(|q| format!("?{q}")).unwrap_or_default();
    if !plain_static_path(&path) {
        tracing::debug!(path = ?path, "static path with an empty segment or a backslash");
        return StatusCode::NOT_FOUND.into_response();
    }
    let mount = mounts.iter().find(|(mount, _)| {
        path.strip_prefix(mount.as_str()).is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
    });
    let Some((mount, serve)) = mount else { return StatusCode::NOT_FOUND.into_response() };
    let below = match &path[mount.len()..] {
        "" => "/",
        below => below,
    };
    let (mut parts, body) = request.into_parts();
    parts.uri = match format!("{below}{query}").parse() {
        Ok(uri) => uri,
        Err(_) => return StatusCode::NOT_FOUND.into_response(),
    };
    let response = match serve.clone().try_call(Request::from_parts(parts, body)).await {
        Ok(response) => response.map(Body::new),
        Err(e) => {
            tracing::error!(error = %e, "could not read a static file");
            return StatusCode::INTERNAL_SERVER_ERROR.into_response();
        }
    };
    if !response.headers().contains_key(header::LOCATION) {
        return response;
    }
    let location = format!("{path}/{query}");
    match HeaderValue::from_str(&location) {
        Ok(value) if same_origin_reference(&location) => {
            let (mut parts, body) = response.into_parts();
            parts.headers.insert(header::LOCATION, value);
            Response::from_parts(parts, body)
        }
        _ => StatusCode::NOT_FOUND.into_response(),
    }
}

/// Whether a static-file request path is plain: it starts with `/` and holds no empty segment
/// (`//`) and no backslash, literally or as `%2F` / `%5C`. Browsers read a reference starting
/// with `//` or `/\` as another host; elsewhere in the path these only ever come from crafted
/// links.
fn plain_static_path(path: &str) -> bool {
    let slashes = path.to_ascii_lowercase().replace("%2f", "/").replace("%5c", "/").replace('\\', "/");
    path.starts_with('/') && !slashes.contains("//")
}

/// Whether a `Location` is a path-absolute reference that a browser resolves on the proxy's own
/// origin (the WHATWG parser, as browsers apply it, decides).
fn same_origin_reference(location: &str) -> bool {
    let base = url::Url::parse("http://proxy.invalid/").expect("a valid base");
    plain_static_path(location.split('?').next().unwrap_or(""))
        && base.join(location).is_ok_and(|u| u.origin() == base.origin())
}

/// The request's TCP peer, when the server runs with connect info (`spawn_server` does).
fn peer(extensions: &Extensions) -> Option<IpAddr> {
    extensions.get::<ConnectInfo<SocketAddr>>().map(|ConnectInfo(peer)| peer.ip())
}

/// Set once the matching hint of [`App::client`] has been logged: once per process, not per
/// request.
static GARBLED_HINTED: AtomicBool = AtomicBool::new(false);
static FORWARDED_HINTED: AtomicBool = AtomicBool::new(false);
/// When the hint of an unlisted private peer's forwarding headers was last logged. It repeats:
/// after an upgrade that leaves a reverse proxy out of `QYS_TRUSTED_PROXIES` all its users share
/// one bucket, and a single line from the start scrolls away.
static UNTRUSTED_HINTED_AT: Mutex<Option<Instant>> = Mutex::new(None);
/// How often that hint is repeated at most.
const UNTRUSTED_HINT_EVERY: Duration = Duration::from_secs(3600);

/// What to do about a peer outside `QYS_TRUSTED_PROXIES` that is not public and sends forwarding
/// headers.
const UNTRUSTED_HINT: &str = "a peer that is not in QYS_TRUSTED_PROXIES sent X-Forwarded-For, X-Real-IP or \
                              Forwarded: its requests are charged to it, whatever the headers say. If it is \
                              your reverse proxy or load balancer, add it (or its subnet) to QYS_TRUSTED_PROXIES";

/// Longest part of a header value a log line quotes.
const LOGGED_HEADER_CHARS: usize = 100;

/// Whether a hint last logged at `*last` is due at `now` (never logged, or `every` ago); if so,
/// `now` is noted.
fn hint_due(last: &Mutex<Option<Instant>>, now: Instant, every: Duration) -> bool {
    let mut last = last.lock().unwrap_or_else(|e| e.into_inner());
    let due = last.is_none_or(|at| now.saturating_duration_since(at) >= every);
    if due {
        *last = Some(now);
    }
    due
}

/// What a refusal's log line adds for `client`: a reverse proxy whose clients are not told apart
/// looks like one busy client.
fn rate_limit_hint(client: &Client) -> String {
    if matches!(client.unheeded, Some(Unheeded::Untrusted(_))) {
        format!("; {UNTRUSTED_HINT}")
    } else if client.ip.is_some_and(|ip| !clients::is_public(ip)) {
        // Trusted or not: a listed reverse proxy that names no client outside the list lands here too.
        "; if this address is a reverse proxy, it must be in QYS_TRUSTED_PROXIES and append the client to X-Forwarded-For".to_owned()
    } else {
        String::new()
    }
}

impl App {
    /// The client a request is charged to and logged as ([`clients::client`]); its `ip` is `None`
    /// without connect info. Forwarding headers it did not use are hinted at, each kind once per
    /// process (an unlisted private peer's once an hour): the operator's list or reverse proxy
    /// needs fixing, not one request.
    fn client(&self, extensions: &Extensions, headers: &HeaderMap) -> Client {
        let client = clients::client(peer(extensions), headers, &self.cfg.trusted_proxies);
        match &client.unheeded {
            Some(Unheeded::Untrusted(ip)) if hint_due(&UNTRUSTED_HINTED_AT, Instant::now(), UNTRUSTED_HINT_EVERY) => {
                tracing::warn!(peer = %ip, "{UNTRUSTED_HINT}")
            }
            Some(Unheeded::Garbled { peer, raw }) if !GARBLED_HINTED.swap(true, Ordering::Relaxed) => {
                let raw: String = raw.chars().take(LOGGED_HEADER_CHARS).collect();
                tracing::warn!(
                    peer = %peer,
                    value = ?raw,
                    "a trusted proxy sent an X-Forwarded-For entry or X-Real-IP that is not an IP address: \
                     such requests are charged to the proxy itself"
                );
            }
            Some(Unheeded::ForwardedOnly(ip)) if !FORWARDED_HINTED.swap(true, Ordering::Relaxed) => tracing::warn!(
                peer = %ip,
                "a trusted proxy sent Forwarded but neither X-Forwarded-For nor X-Real-IP: only those two are \
                 read, so its requests are charged to it. Have it send X-Forwarded-For"
            ),
            _ => {}
        }
        client
    }

    /// Charges a request that may spend platform quota to its client; `Err` is the refusal's
    /// `Retry-After` in seconds. A limited source is logged at most once a minute.
    fn charge(&self, client: &Client, what: &'static str) -> Result<(), u64> {
        let source = client.ip;
        self.sdk_sources.admit(source, client.local).map_err(|refused| {
            if let Some(refused_since) = refused.report {
                let hint = rate_limit_hint(client);
                tracing::warn!(source = ?source, what, refused_since, "SDK requests over the source's rate limit (QYS_SDK_RATE); answering 429{hint}");
            }
            refused.retry_after
        })
    }

    /// One of the instance's flow starts (`QYS_FLOW_START_RATE`), whoever asks: what bounds the
    /// platform calls of many addresses, each within its own limit. `Err` is the refusal's
    /// `Retry-After` in seconds; refusals are logged at most once a second.
    fn start_allowed(&self) -> Result<(), u64> {
        self.flow_starts.take().map_err(|spent| {
            if let Some(refused) = spent.report {
                tracing::warn!(
                    per_second = self.cfg.flow_start_rate,
                    refused,
                    "flow starts over QYS_FLOW_START_RATE: answering 429"
                );
            }
            spent.retry_after
        })
    }

    /// The proxy's own origin or one of `QYS_ALLOWED_ORIGINS`.
    fn origin_allowed(&self, origin: &str) -> bool {
        origin == self.public_origin || self.cfg.allowed_origins.iter().any(|o| o == origin)
    }

    /// `Ok(Some(origin))` for an allowed browser origin, `Ok(None)` without an `Origin` header,
    /// the refusal of any other.
    fn check_origin(&self, headers: &HeaderMap) -> Result<Option<String>, ProxyError> {
        let Some(origin) = headers.get(header::ORIGIN) else { return Ok(None) };
        let origin = origin.to_str().unwrap_or("");
        if self.origin_allowed(origin) {
            Ok(Some(origin.to_owned()))
        } else {
            tracing::warn!(origin = ?origin, "request from an origin that is not allowed");
            Err(ProxyError::OriginNotAllowed(origin.to_owned()))
        }
    }
}

/// A browser-supplied `callbackUrl` in the form the proxy checks and forwards: parsed as browsers
/// parse URLs (WHATWG: `\` is `/`, dot segments, `%2e%2e` included, are resolved, IPv4
/// shorthand such as `127.1` and fullwidth digits become `127.0.0.1`, names are lowercased and
/// IDNA-mapped, a default port is dropped). `url.as_str()` is what goes to the platform.
///
/// Refused: anything but an absolute http(s) URL with a host; user-info; a fragment; and in the
/// path what the parser leaves alone but a server behind may still decode or strip: `;` (path
/// parameters, `..;/` on servlet containers) and percent-encoded `.`, `/`, `\`, `;`, `%` and NUL
/// (`%2e`, `%2f`, `%5c`, `%3b`, `%25`, `%00`, any case).
pub fn normalise_callback_url(raw: &str) -> Result<url::Url, String> {
    let url = url::Url::parse(raw)
        .ok()
        .filter(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some())
        .ok_or("must be an absolute http(s) URL")?;
    if !url.username().is_empty() || url.password().is_some() {
        return Err("must not contain user-info".into());
    }
    if url.fragment().is_some() {
        return Err("must not contain a fragment (#…)".into());
    }
    let path = url.path().to_ascii_lowercase();
    if path.contains(';') {
        return Err("must not contain ';' in its path (path parameters)".into());
    }
    if let Some(bad) = ["%2e", "%2f", "%5c", "%3b", "%25", "%00"].into_iter().find(|b| path.contains(b)) {
        return Err(format!("must not contain {} in its path (an encoded . / \\ ; % or NUL)", bad.to_ascii_uppercase()));
    }
    Ok(url)
}

/// A `QYS_CALLBACK_URL_ALLOWLIST` entry, normalised like [`normalise_callback_url`] (the same
/// rules), and without a query. Start-up validation and the router both use it, so an entry is
/// compared in the form callback URLs are.
pub fn callback_allowlist_entry(raw: &str) -> Result<url::Url, String> {
    let url = normalise_callback_url(raw.trim())?;
    if url.query().is_some() {
        return Err("must not contain a query (?…): an entry is a scheme, host, port and path prefix".into());
    }
    Ok(url)
}

/// Whether the normalised `url` lies under the normalised allow-list entry `prefix`: same
/// scheme, host and port, no user-info, and a path equal to the entry's or below it.
pub fn url_under(url: &url::Url, prefix: &url::Url) -> bool {
    let dir = prefix.path().trim_end_matches('/');
    url.origin() == prefix.origin()
        && url.username().is_empty()
        && url.password().is_none()
        && (url.path() == prefix.path() || url.path().starts_with(&format!("{dir}/")))
}

fn with_cors(mut response: Response, origin: Option<&str>) -> Response {
    if let Some(origin) = origin.and_then(|o| HeaderValue::from_str(o).ok()) {
        let h = response.headers_mut();
        h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
        h.insert(header::VARY, HeaderValue::from_static("Origin"));
    }
    response
}

async fn preflight(State(app): State<Arc<App>>, headers: HeaderMap) -> Result<Response, ProxyError> {
    let origin = app.check_origin(&headers)?;
    let mut response = with_cors(StatusCode::NO_CONTENT.into_response(), origin.as_deref());
    let h = response.headers_mut();
    h.insert(header::ACCESS_CONTROL_ALLOW_METHODS, HeaderValue::from_static("POST"));
    h.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, HeaderValue::from_static("content-type"));
    h.insert(header::ACCESS_CONTROL_MAX_AGE, HeaderValue::from_static("600"));
    Ok(response)
}

/// Reads a body of at most [`MAX_BODY`] bytes.
async fn read_body(body: Body) -> Result<Bytes, ProtocolError> {
    to_bytes(body, MAX_BODY).await.map_err(|_| ProtocolError {
        code: codes::BODY_TOO_LARGE,
        message: format!("the body is larger than {MAX_BODY} bytes"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_repeated_hint_is_due_first_then_once_per_interval() {
        let last = Mutex::new(None);
        let t0 = Instant::now();
        assert!(hint_due(&last, t0, UNTRUSTED_HINT_EVERY));
        assert!(!hint_due(&last, t0, UNTRUSTED_HINT_EVERY));
        assert!(!hint_due(&last, t0 + Duration::from_secs(3599), UNTRUSTED_HINT_EVERY));
        assert!(hint_due(&last, t0 + UNTRUSTED_HINT_EVERY, UNTRUSTED_HINT_EVERY), "an hour on");
        assert!(!hint_due(&last, t0 + UNTRUSTED_HINT_EVERY + Duration::from_secs(1), UNTRUSTED_HINT_EVERY));
    }
}
