//! A loopback emulation of the 契约锁 open platform: its signed APIs, its hosted H5 pages, the
//! pages of its mini-program plugin and its server callbacks, so every flow runs with no account
//! and no internet.

mod api;
mod deliver;
mod expiry;
mod pages;
pub mod world;

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::json;

use crate::sign::{self, HEADER_NONCE, HEADER_SIGNATURE, HEADER_TIMESTAMP, HEADER_TOKEN};
use crate::{unix_millis, Secret};
use expiry::{Bits128, ExpiringMap};
use world::{Fixtures, Sessions, World};


/// Response codes of the sandbox. Signature-failure codes are the sandbox's own (the platform's
/// are not public, except 442 INVALID TOKEN, seen on the real platform).
pub mod codes {
    /// A signature header is missing or the signature does not match.
    pub const INVALID_SIGNATURE: i64 = 441;
    /// Unknown AppToken.
    pub const INVALID_TOKEN: i64 = 442;
    /// Timestamp missing, unparsable or more than 15 minutes from the sandbox's clock.
    pub const TIMESTAMP_EXPIRED: i64 = 443;
    /// The nonce was already used within 10 minutes.
    pub const NONCE_REUSED: i64 = 444;
    /// A required field is missing or a value is outside its enum.
    pub const INVALID_PARAM: i64 = 1005;
    /// The contract is not in a signable state.
    pub const INVALID_CONTRACT_STATUS: i64 = 1101;
    /// The contact may not view or sign the contract (or the contract does not exist).
    pub const NO_VIEW_PERMISSION: i64 = 1110;
    /// The company has already authenticated.
    pub const COMPANY_ALREADY_AUTHED: i64 = 1605;
}

/// Sandbox settings.
#[derive(Debug, Clone)]
pub struct SandboxConfig {
    /// The AppToken callers must present.
    pub token: String,
    /// The AppSecret the signatures are made with.
    pub secret: Secret,
    /// Base URL of the sandbox (no trailing slash), for the page URLs it issues.
    pub public_url: String,
    /// Initial data.
    pub fixtures: Fixtures,
    /// Pause between the second and third server-callback try (60 s on the platform).
    pub callback_retry_delay: Duration,
    /// Largest accepted clock difference.
    pub max_skew: Duration,
    /// How long a nonce stays used.
    pub nonce_ttl: Duration,
    /// How long tickets and page URLs stay valid.
    pub session_ttl: Duration,
    /// Where the H5 pages may send the browser when they finish (`callbackPage`).
    pub callback_origins: CallbackOrigins,
}

impl SandboxConfig {
    /// Defaults of the platform for everything but credentials and URL.
    pub fn new(token: String, secret: Secret, public_url: String) -> Self {
        Self {
            token,
            secret,
            public_url,
            fixtures: Fixtures::builtin(),
            callback_retry_delay: Duration::from_secs(60),
            max_skew: Duration::from_secs(15 * 60),
            nonce_ttl: Duration::from_secs(10 * 60),
            session_ttl: Duration::from_secs(30 * 60),
            callback_origins: CallbackOrigins::default(),
        }
    }
}

/// The origins a finished H5 page may redirect to: its `callbackPage` is followed only when it is
/// an absolute `http(s)` URL without user-info (WHATWG-parsed) whose origin is allowed here; any
/// other finishes on the sandbox's own page. The default allows `http://` loopback only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallbackOrigins {
    /// `http://` on 127.0.0.0/8, `localhost` or `[::1]`, any port.
    pub loopback: bool,
    /// Exact origins (`scheme://host[:port]`, serialised as WHATWG URL does: lowercase host,
    /// default port omitted).
    pub exact: Vec<String>,
}

impl Default for CallbackOrigins {
    /// Loopback only.
    fn default() -> Self {
        Self { loopback: true, exact: Vec::new() }
    }
}

impl CallbackOrigins {
    /// Exactly `origins` (no loopback), each checked by [`Self::origin_of`].
    pub fn exact<S: AsRef<str>>(origins: impl IntoIterator<Item = S>) -> Result<Self, String> {
        let exact = origins.into_iter().map(|o| Self::origin_of(o.as_ref())).collect::<Result<_, _>>()?;
        Ok(Self { loopback: false, exact })
    }

    /// An exact origin `scheme://host[:port]` (one trailing `/` accepted), checked to be http(s)
    /// and written as WHATWG URL serialises it (lowercase host, no default port), so that the
    /// allow-list compares text.
    pub fn origin_of(text: &str) -> Result<String, String> {
        let url = url::Url::parse(text).map_err(|_| "is not an origin like https://shop.example".to_owned())?;
        if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
            return Err("must be an http(s) origin".into());
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err("must not contain user-info".into());
        }
        let origin = url.origin().ascii_serialization();
        if origin != text.strip_suffix('/').unwrap_or(text) {
            return Err(format!("must be an exact origin scheme://host[:port] without a path, written {origin}"));
        }
        Ok(origin)
    }

    /// `callback_page` as the URL to redirect to (its WHATWG serialisation, which is what was
    /// checked), or why it is refused.
    pub fn check(&self, callback_page: &str) -> Result<url::Url, &'static str> {
        let url = url::Url::parse(callback_page).map_err(|_| "not an absolute URL")?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err("not an http(s) URL");
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err("the URL carries user-info");
        }
        let loopback = url.scheme() == "http"
            && match url.host() {
                Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
                Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
                Some(url::Host::Domain(name)) => name == "localhost",
                None => false,
            };
        let origin = url.origin().ascii_serialization();
        if (self.loopback && loopback) || self.exact.contains(&origin) {
            Ok(url)
        } else {
            Err("its origin is not one of the sandbox's callback origins")
        }
    }
}

/// The sandbox's state. Three locks, each held for a lookup or an insert and never across
/// another: contracts, people and companies; open sessions; used nonces.
struct Sandbox {
    cfg: SandboxConfig,
    world: Mutex<World>,
    sessions: Mutex<Sessions>,
    /// Used nonces until they may be used again.
    nonces: Mutex<ExpiringMap<NonceKey, ()>>,
    http: reqwest::Client,
}

type Shared = Arc<Sandbox>;

/// A used nonce as the nonce table holds it: a UUID in the canonical form (lowercase, hyphenated,
/// as the proxy sends them) as its 16 bytes, any other nonce as its text. Two different nonces
/// never share a key.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum NonceKey {
    Uuid(Bits128),
    Other(Arc<str>),
}

impl NonceKey {
    fn of(nonce: &str) -> Self {
        match uuid::Uuid::try_parse(nonce) {
            Ok(uuid) if *uuid.hyphenated().encode_lower(&mut uuid::Uuid::encode_buffer()) == *nonce => {
                Self::Uuid(uuid.as_u128().into())
            }
            _ => Self::Other(nonce.into()),
        }
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

impl Sandbox {
    fn new(cfg: SandboxConfig) -> Self {
        let world = World::new(cfg.fixtures.clone());
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(10))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("TLS backend initialises");
        Sandbox { cfg, world: Mutex::new(world), sessions: Mutex::default(), nonces: Mutex::default(), http }
    }

    fn world(&self) -> MutexGuard<'_, World> {
        lock(&self.world)
    }

    fn sessions(&self) -> MutexGuard<'_, Sessions> {
        lock(&self.sessions)
    }
}

/// The sandbox's router: signed APIs, the hosted H5 pages and the mini-program plugin's pages.
pub fn router(cfg: SandboxConfig) -> Router {
    let state: Shared = Arc::new(Sandbox::new(cfg));
    let apis = Router::new()
        .route("/v2/contract/miniappexchange", post(api::contract_ticket))
        .route("/v2/personalauth/miniappexchange", post(api::personal_auth_ticket))
        .route("/companyauth/miniappexchange", post(api::company_auth_ticket))
        .route("/v2/contract/pageurl", post(api::contract_page_url))
        .route("/v2/personalauth", post(api::personal_auth_page_url))
        .route("/companyauth/h5page", post(api::company_auth_page_url))
        .route("/v2/contract/detail", get(api::contract_detail))
        .route("/v2/personalauth/result", get(api::personal_auth_result))
        .route("/companyauth/result", get(api::company_auth_result))
        .layer(middleware::from_fn_with_state(state.clone(), verify_signature));
    Router::new()
        .route("/h5", get(pages::h5_show))
        .route("/h5/action", post(pages::h5_act))
        .route("/plugin/action", post(pages::plugin_act))
        .route("/plugin/{page}", get(pages::plugin_show))
        .merge(apis)
        // Its forms and API bodies are a few hundred bytes; axum's default would buffer 2 MB.
        .layer(DefaultBodyLimit::max(BODY_MAX))
        .with_state(state)
}

/// The largest request body the sandbox reads: larger ones get 413.
pub const BODY_MAX: usize = 16 * 1024;

fn reject(status: StatusCode, code: i64, message: &str) -> Response {
    (status, Json(json!({"code": code, "message": message}))).into_response()
}

/// Checks the four signature headers exactly as the platform does, before any API runs.
async fn verify_signature(State(sb): State<Shared>, request: Request, next: Next) -> Response {
    match check_headers(&sb, request.headers()) {
        Ok(()) => next.run(request).await,
        Err((code, message)) => {
            tracing::info!(code, message, "sandbox refused a request signature");
            reject(StatusCode::UNAUTHORIZED, code, message)
        }
    }
}

fn check_headers(sb: &Sandbox, headers: &HeaderMap) -> Result<(), (i64, &'static str)> {
    let get = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let token = get(HEADER_TOKEN).ok_or((codes::INVALID_TOKEN, "INVALID TOKEN: missing x-qys-open-accesstoken"))?;
    if token != sb.cfg.token {
        return Err((codes::INVALID_TOKEN, "INVALID TOKEN"));
    }
    let timestamp = get(HEADER_TIMESTAMP).ok_or((codes::TIMESTAMP_EXPIRED, "TIMESTAMP EXPIRED: missing x-qys-open-timestamp"))?;
    let nonce = get(HEADER_NONCE).ok_or((codes::INVALID_SIGNATURE, "INVALID SIGNATURE: missing x-qys-open-nonce"))?;
    let signature =
        get(HEADER_SIGNATURE).ok_or((codes::INVALID_SIGNATURE, "INVALID SIGNATURE: missing x-qys-open-signature"))?;
    let ts: u64 = timestamp.parse().map_err(|_| (codes::TIMESTAMP_EXPIRED, "TIMESTAMP EXPIRED: not Unix milliseconds"))?;
    let now = unix_millis();
    if now.abs_diff(ts) > sb.cfg.max_skew.as_millis() as u64 {
        return Err((codes::TIMESTAMP_EXPIRED, "TIMESTAMP EXPIRED: more than 15 minutes from the platform clock"));
    }
    if nonce.is_empty() || nonce.len() > 64 {
        return Err((codes::INVALID_SIGNATURE, "INVALID SIGNATURE: bad nonce"));
    }
    let expected = sign::signature(token, sb.cfg.secret.expose(), timestamp, nonce);
    if !constant_time_eq(expected.as_bytes(), signature.as_bytes()) {
        return Err((codes::INVALID_SIGNATURE, "INVALID SIGNATURE"));
    }
    let (key, until) = (NonceKey::of(nonce), now + sb.cfg.nonce_ttl.as_millis() as u64);
    let mut nonces = lock(&sb.nonces);
    if nonces.get(&key).is_some_and(|(until, _)| until > now) {
        return Err((codes::NONCE_REUSED, "NONCE REUSED: a nonce may be used once within 10 minutes"));
    }
    nonces.insert(key, (), until, now);
    Ok(())
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sandbox(nonce_ttl: Duration) -> Sandbox {
        let mut cfg = SandboxConfig::new("t".into(), Secret::new("s"), "http://127.0.0.1:9".into());
        cfg.nonce_ttl = nonce_ttl;
        Sandbox::new(cfg)
    }

    fn signed(nonce: &str) -> HeaderMap {
        let timestamp = unix_millis().to_string();
        let mut headers = HeaderMap::new();
        headers.insert(HEADER_TOKEN, "t".parse().unwrap());
        headers.insert(HEADER_NONCE, nonce.parse().unwrap());
        headers.insert(HEADER_SIGNATURE, sign::signature("t", "s", &timestamp, nonce).parse().unwrap());
        headers.insert(HEADER_TIMESTAMP, timestamp.parse().unwrap());
        headers
    }

    #[test]
    fn loopback_callback_origins_allow_http_loopback_only() {
        let loopback = CallbackOrigins::default();
        for allowed in [
            "http://127.0.0.1:8080/qys/return?t=a.b",
            "http://127.9.8.7/",
            "http://127.1/",
            "http://localhost:3000/r",
            "http://LOCALHOST/r",
            "http://[::1]:8/",
            " http://127.0.0.1/r",
        ] {
            assert!(loopback.check(allowed).is_ok(), "{allowed}");
        }
        assert_eq!(loopback.check(" http://127.1/r").unwrap().as_str(), "http://127.0.0.1/r", "the URL checked is sent");
        for refused in [
            "https://evil.test/",
            "//evil.test",
            "/relative",
            "javascript:alert(1)",
            "data:text/html,x",
            "http://user@127.0.0.1:1/",
            "http://:pass@127.0.0.1/",
            "https://127.0.0.1/",
            "http://localhost.evil.test/",
            "http://127.0.0.1.evil.test/",
            "http:\\\\evil.test",
            "http:evil.test",
            "http://10.0.0.1/",
            "",
        ] {
            assert!(loopback.check(refused).is_err(), "{refused}");
        }
    }

    #[test]
    fn exact_callback_origins_allow_those_origins_only() {
        let exact = CallbackOrigins::exact(["https://shop.example", "http://127.0.0.1:8080/"]).unwrap();
        assert_eq!(exact.exact, ["https://shop.example", "http://127.0.0.1:8080"]);
        for allowed in ["https://shop.example/r?x=1", "https://shop.example:443/r", "https://SHOP.example/", "http://127.0.0.1:8080/"] {
            assert!(exact.check(allowed).is_ok(), "{allowed}");
        }
        for refused in [
            "https://shop.example:444/",
            "http://shop.example/",
            "https://shop.example.evil.test/",
            "https://user@shop.example/",
            "http://127.0.0.1:8081/",
            "http://localhost:8080/",
        ] {
            assert!(exact.check(refused).is_err(), "{refused}");
        }
        for bad in ["https://shop.example/r", "HTTPS://shop.example", "https://shop.example:443", "ftp://x", "*", "https://u@shop.example", "shop.example"] {
            assert!(CallbackOrigins::origin_of(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn ten_thousand_expired_nonces_and_one_new_leave_one_nonce() {
        let sb = sandbox(Duration::ZERO);
        for i in 0..10_000 {
            check_headers(&sb, &signed(&format!("expired-{i}"))).unwrap();
        }
        check_headers(&sb, &signed("new")).unwrap();
        assert_eq!(lock(&sb.nonces).len(), 1);
    }

    #[test]
    fn a_nonce_is_refused_within_its_ttl_only() {
        let sb = sandbox(Duration::from_secs(600));
        check_headers(&sb, &signed("once")).unwrap();
        assert_eq!(check_headers(&sb, &signed("once")).unwrap_err().0, codes::NONCE_REUSED);
        check_headers(&sb, &signed("other")).unwrap();
        assert_eq!(lock(&sb.nonces).len(), 2);

        let sb = sandbox(Duration::ZERO);
        check_headers(&sb, &signed("again")).unwrap();
        check_headers(&sb, &signed("again")).expect("a nonce may be used again once its TTL has passed");
        assert_eq!(lock(&sb.nonces).len(), 1);
    }

    #[test]
    fn canonical_uuid_nonces_are_held_as_numbers_and_other_spellings_stay_distinct() {
        let uuid = "67e55044-10b1-426f-9247-bb680e5fe0c8";
        assert!(matches!(NonceKey::of(uuid), NonceKey::Uuid(_)));
        let others = [
            "67E55044-10B1-426F-9247-BB680E5FE0C8",
            "67e5504410b1426f9247bb680e5fe0c8",
            "{67e55044-10b1-426f-9247-bb680e5fe0c8}",
            "n-1",
        ];
        for other in others {
            assert_eq!(NonceKey::of(other), NonceKey::Other(other.into()), "{other}");
        }
        let sb = sandbox(Duration::from_secs(600));
        check_headers(&sb, &signed(uuid)).unwrap();
        check_headers(&sb, &signed(&uuid.to_uppercase())).expect("another nonce, as the platform compares text");
        assert_eq!(check_headers(&sb, &signed(uuid)).unwrap_err().0, codes::NONCE_REUSED);
    }
}
