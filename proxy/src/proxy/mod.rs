//! The integrator's proxy: the SDK endpoint (four flows and `outcome`), the return page and the
//! server-callback receivers. This module holds the configuration, the router, CORS and the
//! origin and URL allow-lists; each endpoint lives in its own file.

mod callbacks;
mod confirm;
mod error;
mod return_page;
mod sdk;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::body::{to_bytes, Body, Bytes};
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use tower_http::services::ServeDir;

use crate::platform::Platform;
use crate::protocol::{codes, ProtocolError};
use crate::store::CallbackStore;
use crate::token::TokenKey;
use error::ProxyError;

pub use callbacks::{check_company_callback, check_personal_callback};
pub use sdk::fill_template;

/// Largest accepted request body.
pub const MAX_BODY: usize = 16 * 1024;

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
    /// Static directories: (mount path, directory), e.g. `("/", "www")`, `("/pkg", "pkg")`.
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
}

/// The proxy's router.
pub fn router(cfg: ProxyConfig) -> Router {
    let public_origin = cfg.public_origin();
    let paths = cfg.paths.clone();
    let statics = cfg.static_dirs.clone();
    let app = Arc::new(App { cfg, public_origin });
    let mut router = Router::new()
        .route(&paths.proxy, post(sdk::sdk_endpoint).options(preflight))
        .route(&paths.return_page, get(return_page::return_page))
        .route(&paths.personal_callback, post(callbacks::personal_callback))
        .route(&paths.company_callback, post(callbacks::company_callback))
        .with_state(app);
    for (mount, dir) in statics {
        let serve = ServeDir::new(dir).append_index_html_on_directories(true);
        router = if mount == "/" { router.fallback_service(serve) } else { router.nest_service(&mount, serve) };
    }
    router
}

impl App {
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

/// Whether `url` lies under the allow-list entry `prefix`: same scheme, host and port, no
/// user-info, and a path equal to the entry's or below it.
pub fn url_under(url: &str, prefix: &str) -> bool {
    let (Ok(url), Ok(prefix)) = (url::Url::parse(url), url::Url::parse(prefix)) else { return false };
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
