//! A loopback emulation of the 契约锁 open platform: its signed APIs, its hosted H5 pages, the
//! pages of its mini-program plugin and its server callbacks, so every flow runs with no account
//! and no internet.

mod api;
mod deliver;
mod pages;
pub mod world;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::json;

use crate::sign::{self, HEADER_NONCE, HEADER_SIGNATURE, HEADER_TIMESTAMP, HEADER_TOKEN};
use crate::{unix_millis, Secret};
use world::{Fixtures, World};


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
        }
    }
}

struct Sandbox {
    cfg: SandboxConfig,
    world: Mutex<World>,
    nonces: Mutex<HashMap<String, u64>>,
    http: reqwest::Client,
}

type Shared = Arc<Sandbox>;

impl Sandbox {
    fn world(&self) -> std::sync::MutexGuard<'_, World> {
        self.world.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The sandbox's router: signed APIs, the hosted H5 pages and the mini-program plugin's pages.
pub fn router(cfg: SandboxConfig) -> Router {
    let world = World::new(cfg.fixtures.clone());
    let http = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(10))
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("TLS backend initialises");
    let state: Shared = Arc::new(Sandbox { cfg, world: Mutex::new(world), nonces: Mutex::default(), http });
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
        .with_state(state)
}

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
    let mut nonces = sb.nonces.lock().unwrap_or_else(|e| e.into_inner());
    if nonces.get(nonce).is_some_and(|&until| until > now) {
        return Err((codes::NONCE_REUSED, "NONCE REUSED: a nonce may be used once within 10 minutes"));
    }
    if nonces.len() >= 4096 && nonces.len().is_power_of_two() {
        nonces.retain(|_, until| *until > now);
    }
    nonces.insert(nonce.to_owned(), now + sb.cfg.nonce_ttl.as_millis() as u64);
    Ok(())
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
