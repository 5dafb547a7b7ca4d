//! The integrator's proxy: the SDK endpoint (four flows and `outcome`), the return page and the
//! server-callback receivers.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::body::{to_bytes, Body, Bytes};
use axum::extract::{RawQuery, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Value};
use tower_http::services::ServeDir;

use crate::mask::Masked;
use crate::platform::{Platform, PlatformError};
use crate::protocol::{self, codes, Action, Params, Presentation, ProtocolError, Request as SdkMessage, SdkRequest};
use crate::store::{CallbackStore, Recorded};
use crate::token::{FlowToken, TokenKey};
use crate::{html, unix_millis};

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
        .route(&paths.proxy, post(sdk_endpoint).options(preflight))
        .route(&paths.return_page, get(return_page))
        .route(&paths.personal_callback, post(personal_callback))
        .route(&paths.company_callback, post(company_callback))
        .with_state(app);
    for (mount, dir) in statics {
        let serve = ServeDir::new(dir).append_index_html_on_directories(true);
        router = if mount == "/" { router.fallback_service(serve) } else { router.nest_service(&mount, serve) };
    }
    router
}

fn error_json(status: StatusCode, code: i64, message: impl Into<String>) -> Response {
    (status, Json(json!({"code": code, "message": message.into()}))).into_response()
}

fn protocol_error(e: ProtocolError) -> Response {
    let status = match e.code {
        codes::ORIGIN_NOT_ALLOWED => StatusCode::FORBIDDEN,
        codes::BODY_TOO_LARGE => StatusCode::PAYLOAD_TOO_LARGE,
        codes::UNSUPPORTED_MEDIA_TYPE => StatusCode::UNSUPPORTED_MEDIA_TYPE,
        _ => StatusCode::BAD_REQUEST,
    };
    error_json(status, e.code, e.message)
}

impl App {
    /// The proxy's own origin or one of `QYS_ALLOWED_ORIGINS`.
    fn origin_allowed(&self, origin: &str) -> bool {
        origin == self.public_origin || self.cfg.allowed_origins.iter().any(|o| o == origin)
    }

    /// `Ok(Some(origin))` for an allowed browser origin, `Ok(None)` without an `Origin` header,
    /// `Err(origin)` for any other.
    fn check_origin(&self, headers: &HeaderMap) -> Result<Option<String>, String> {
        let Some(origin) = headers.get(header::ORIGIN) else { return Ok(None) };
        let origin = origin.to_str().unwrap_or("");
        if self.origin_allowed(origin) {
            Ok(Some(origin.to_owned()))
        } else {
            tracing::warn!(origin = ?origin, "request from an origin that is not allowed");
            Err(origin.to_owned())
        }
    }

    fn callback_url(&self, requested: Option<&str>, default_path: &str, state: &str) -> Result<String, ProtocolError> {
        match requested {
            None => Ok(format!("{}{default_path}?flow={state}", self.cfg.public_url)),
            Some(url) if self.cfg.callback_url_allowlist.iter().any(|prefix| url_under(url, prefix)) => {
                Ok(url.to_owned())
            }
            Some(_) => Err(ProtocolError {
                code: codes::INVALID_PARAM,
                message: "callbackUrl is not in the proxy's allowlist (QYS_CALLBACK_URL_ALLOWLIST)".into(),
            }),
        }
    }

    /// A redirect's `returnUrl`, normalised to plain ASCII (so it fits a `Location` header):
    /// on the calling page's origin when the request has one, and on an allowed origin, so the
    /// return page can only ever send browsers back to the integrator's own pages.
    fn return_url(&self, requested: &str, origin: Option<&str>) -> Result<String, ProtocolError> {
        let invalid = |message: String| ProtocolError { code: codes::INVALID_PARAM, message };
        let url = url::Url::parse(requested)
            .ok()
            .filter(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some())
            .ok_or_else(|| invalid("returnUrl must be an absolute http(s) URL".into()))?;
        if !url.username().is_empty() || url.password().is_some() {
            return Err(invalid("returnUrl must not contain user-info".into()));
        }
        let url_origin = url.origin().ascii_serialization();
        if let Some(origin) = origin.filter(|o| *o != url_origin) {
            return Err(invalid(format!("returnUrl must be on the calling page's origin {origin}, not {url_origin}")));
        }
        if !self.origin_allowed(&url_origin) {
            return Err(invalid(format!(
                "returnUrl's origin {url_origin} is not allowed; add it to QYS_ALLOWED_ORIGINS"
            )));
        }
        Ok(url.into())
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

/// The refusal of an origin is itself readable by the page, so the SDK can say what to fix;
/// nothing else is ever answered to that origin.
fn refuse_origin(origin: &str) -> Response {
    let refusal = error_json(
        StatusCode::FORBIDDEN,
        codes::ORIGIN_NOT_ALLOWED,
        format!("origin {origin} is not allowed; add it to QYS_ALLOWED_ORIGINS"),
    );
    with_cors(refusal, Some(origin))
}

fn with_cors(mut response: Response, origin: Option<&str>) -> Response {
    if let Some(origin) = origin.and_then(|o| HeaderValue::from_str(o).ok()) {
        let h = response.headers_mut();
        h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
        h.insert(header::VARY, HeaderValue::from_static("Origin"));
    }
    response
}

async fn preflight(State(app): State<Arc<App>>, headers: HeaderMap) -> Response {
    match app.check_origin(&headers) {
        Ok(origin) => {
            let mut response = with_cors(StatusCode::NO_CONTENT.into_response(), origin.as_deref());
            let h = response.headers_mut();
            h.insert(header::ACCESS_CONTROL_ALLOW_METHODS, HeaderValue::from_static("POST"));
            h.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, HeaderValue::from_static("content-type"));
            h.insert(header::ACCESS_CONTROL_MAX_AGE, HeaderValue::from_static("600"));
            response
        }
        Err(refused) => refuse_origin(&refused),
    }
}

/// Reads a body of at most [`MAX_BODY`] bytes.
async fn read_body(body: Body) -> Result<Bytes, ProtocolError> {
    to_bytes(body, MAX_BODY).await.map_err(|_| ProtocolError {
        code: codes::BODY_TOO_LARGE,
        message: format!("the body is larger than {MAX_BODY} bytes"),
    })
}

fn decode_sdk_request(headers: &HeaderMap, body: &[u8]) -> Result<SdkMessage, ProtocolError> {
    let content_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    let mime = content_type.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    let bad = |message: String| ProtocolError { code: codes::BAD_REQUEST_DATA, message };
    match mime.as_str() {
        "application/x-www-form-urlencoded" => {
            let mut request_data = None;
            for (key, value) in form_urlencoded::parse(body) {
                if key == "requestData" {
                    if request_data.is_some() {
                        return Err(bad("requestData appears more than once".into()));
                    }
                    request_data = Some(value.into_owned());
                }
            }
            let request_data = request_data.ok_or_else(|| bad("the form has no requestData field".into()))?;
            protocol::parse_request(&request_data)
        }
        "application/json" => {
            let text = std::str::from_utf8(body).map_err(|_| bad("the body is not UTF-8".into()))?;
            protocol::parse_request(text)
        }
        _ => Err(ProtocolError {
            code: codes::UNSUPPORTED_MEDIA_TYPE,
            message: "send application/x-www-form-urlencoded (requestData=…) or application/json".into(),
        }),
    }
}

async fn sdk_endpoint(State(app): State<Arc<App>>, request: Request) -> Response {
    let headers = request.headers().clone();
    let origin = match app.check_origin(&headers) {
        Ok(origin) => origin,
        Err(refused) => return refuse_origin(&refused),
    };
    let result = async {
        let body = read_body(request.into_body()).await.map_err(protocol_error)?;
        let message = decode_sdk_request(&headers, &body).map_err(|e| {
            tracing::info!(code = e.code, reason = ?e.message, "refused SDK request");
            protocol_error(e)
        })?;
        match message {
            SdkMessage::Flow(sdk) => app.start_flow(*sdk, origin.clone()).await,
            SdkMessage::Outcome { state, flow } => app.outcome(&state, &flow, origin.as_deref()).await,
        }
    }
    .await;
    with_cors(result.unwrap_or_else(|refused| refused), origin.as_deref())
}

/// How a failed platform call is answered: timeouts 504, transport and format failures 502,
/// the platform's own codes passed through with 200.
fn platform_failure(e: &PlatformError) -> Response {
    let (code, message) = e.code_and_message();
    let status = match e {
        PlatformError::Timeout => StatusCode::GATEWAY_TIMEOUT,
        PlatformError::Unavailable(_) | PlatformError::BadResponse(_) => StatusCode::BAD_GATEWAY,
        PlatformError::Platform { .. } => StatusCode::OK,
    };
    error_json(status, code, message)
}

fn success(result: Value) -> Response {
    Json(json!({"code": 0, "message": "SUCCESS", "result": result})).into_response()
}

impl App {
    async fn start_flow(&self, sdk: SdkRequest, origin: Option<String>) -> Result<Response, Response> {
        let started = std::time::Instant::now();
        let (subject, contact) = match &sdk.params {
            Params::Sign(p) => (p.contract_id.clone(), p.contact.value.clone()),
            Params::PersonalAuth(p) => (String::new(), p.contact.value.clone()),
            Params::EnterpriseAuth(p) => (p.company_name.clone(), p.applicant.value.clone()),
        };
        let return_url = match (sdk.presentation, &sdk.return_url) {
            (Presentation::Redirect, Some(url)) => {
                Some(self.return_url(url, origin.as_deref()).map_err(protocol_error)?)
            }
            _ => None,
        };
        let token = FlowToken {
            action: sdk.action,
            state: sdk.state.clone(),
            target_origin: origin.unwrap_or_else(|| self.public_origin.clone()),
            subject,
            contact: contact.clone(),
            expires: unix_millis() / 1000 + self.cfg.token_ttl.as_secs(),
            return_url,
        };
        let flow = self.cfg.token_key.seal(&token);
        if flow.len() > protocol::FLOW_TOKEN_MAX {
            // Only a long returnUrl full of multi-byte characters gets here; the SDK could not
            // take the token back.
            return Err(protocol_error(ProtocolError {
                code: codes::INVALID_PARAM,
                message: format!("returnUrl is too long: the flow token would exceed {} bytes", protocol::FLOW_TOKEN_MAX),
            }));
        }
        let callback_url = match &sdk.params {
            Params::Sign(_) => None,
            Params::PersonalAuth(p) => Some(self.callback_url(
                p.callback_url.as_deref(),
                &self.cfg.paths.personal_callback,
                &sdk.state,
            )),
            Params::EnterpriseAuth(p) => Some(self.callback_url(
                p.callback_url.as_deref(),
                &self.cfg.paths.company_callback,
                &sdk.state,
            )),
        }
        .transpose()
        .map_err(protocol_error)?;
        let granted = match sdk.presentation {
            Presentation::MiniProgram => self
                .ticket(&sdk, callback_url.as_deref())
                .await
                .map(|ticket| json!({"ticket": ticket, "env": self.cfg.miniprogram_env, "flow": flow})),
            Presentation::Iframe | Presentation::Redirect => {
                let callback_page = format!(
                    "{}{}?t={}",
                    self.cfg.public_url,
                    self.cfg.paths.return_page,
                    self.cfg.token_key.sign(&token)
                );
                self.page_url(&sdk, &callback_page, callback_url.as_deref()).await.map(|page_url| {
                    json!({"pageUrl": page_url, "returnOrigin": self.public_origin, "flow": flow})
                })
            }
        };
        let result = granted.map_err(|e| {
            let (code, message) = e.code_and_message();
            tracing::warn!(action = sdk.action.name(), contact = %Masked(&contact), code, message = ?message, "platform call failed");
            platform_failure(&e)
        })?;
        tracing::info!(
            action = sdk.action.name(),
            presentation = sdk.presentation.name(),
            contact = %Masked(&contact),
            elapsed_ms = started.elapsed().as_millis() as u64,
            "flow started"
        );
        Ok(success(result))
    }

    /// `outcome`: the flow token's facts, confirmed with the platform like the return page does.
    async fn outcome(&self, state: &str, flow: &str, origin: Option<&str>) -> Result<Response, Response> {
        let token = match self.cfg.token_key.unseal(flow, unix_millis() / 1000) {
            // The token must be this flow's, asked for by the page that started it.
            Ok(token) if token.state == state && origin.is_none_or(|o| o == token.target_origin) => token,
            refused => {
                let reason = match refused {
                    Ok(_) => "the token belongs to another flow or page".to_owned(),
                    Err(e) => format!("{e:?}"),
                };
                tracing::info!(reason, "outcome refused a flow token");
                return Err(error_json(
                    StatusCode::BAD_REQUEST,
                    codes::FLOW_TOKEN_INVALID,
                    "the flow token is invalid or has expired",
                ));
            }
        };
        let confirmed = confirm(&self.cfg.platform, &token).await.map_err(|e| {
            let (code, message) = e.code_and_message();
            tracing::warn!(action = token.action.name(), code, message = ?message, "could not confirm the outcome");
            platform_failure(&e)
        })?;
        let result = match confirmed {
            Some((event, data)) => json!({"event": event, "data": data}),
            None => json!({"event": "pending"}),
        };
        tracing::info!(action = token.action.name(), contact = %Masked(&token.contact), event = ?result["event"], "outcome confirmed");
        Ok(success(result))
    }

    /// The ticket exchange of seeds 000–003 (mini-program flows, and ticket mode's first step).
    async fn ticket(&self, sdk: &SdkRequest, callback_url: Option<&str>) -> Result<String, PlatformError> {
        let path = match sdk.action {
            Action::PersonalSign | Action::EnterpriseSign => "/v2/contract/miniappexchange",
            Action::PersonalAuth => "/v2/personalauth/miniappexchange",
            Action::EnterpriseAuth => "/companyauth/miniappexchange",
        };
        let result = self.cfg.platform.post(path, &protocol::ticket_body(&sdk.params, callback_url)).await?;
        result_field(&result, "ticket")
    }

    async fn page_url(&self, sdk: &SdkRequest, callback_page: &str, callback_url: Option<&str>) -> Result<String, PlatformError> {
        match &self.cfg.upstream_mode {
            UpstreamMode::Ticket { template } => {
                let ticket = self.ticket(sdk, callback_url).await?;
                Ok(fill_template(template, &ticket, callback_page))
            }
            UpstreamMode::PageUrl => {
                let mut body = protocol::ticket_body(&sdk.params, callback_url);
                body["callbackPage"] = json!(callback_page);
                let (path, name) = match sdk.action {
                    Action::PersonalSign | Action::EnterpriseSign => {
                        body["pageType"] = json!("SIGN");
                        ("/v2/contract/pageurl", "pageUrl")
                    }
                    Action::PersonalAuth => ("/v2/personalauth", "authUrl"),
                    Action::EnterpriseAuth => ("/companyauth/h5page", "authUrl"),
                };
                result_field(&self.cfg.platform.post(path, &body).await?, name)
            }
        }
    }
}

fn result_field(result: &Value, name: &str) -> Result<String, PlatformError> {
    result
        .get(name)
        .and_then(Value::as_str)
        .map(str::to_owned)
        .ok_or_else(|| PlatformError::BadResponse(format!("result.{name} is missing")))
}

/// Fills `{ticket}` and `{callbackPage}`, each URL-encoded.
pub fn fill_template(template: &str, ticket: &str, callback_page: &str) -> String {
    let enc = |s: &str| form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
    template.replace("{ticket}", &enc(ticket)).replace("{callbackPage}", &enc(callback_page))
}

/// The success event and its data as the platform confirms them, or `None` when the platform
/// confirms no success (the return page reports `authFail`, `outcome` reports `pending`).
async fn confirm(platform: &Platform, flow: &FlowToken) -> Result<Option<(&'static str, Value)>, PlatformError> {
    match flow.action {
        Action::PersonalSign | Action::EnterpriseSign => {
            let contract = platform.get("/v2/contract/detail", &[("contractId", &flow.subject)]).await?;
            let tenant_type = if flow.action == Action::PersonalSign { "PERSONAL" } else { "COMPANY" };
            let signed = contract["signatories"].as_array().into_iter().flatten().any(|s| {
                s["tenantType"] == tenant_type
                    && s["receiver"]["contact"] == flow.contact.as_str()
                    && s["status"] == "SIGNED"
            });
            Ok(signed.then(|| ("signSuccess", json!({"contractId": flow.subject}))))
        }
        Action::PersonalAuth => {
            let contact_type = if protocol::is_mobile(&flow.contact) { "MOBILE" } else { "EMAIL" };
            let r = platform
                .get("/v2/personalauth/result", &[("contact", &flow.contact), ("contactType", contact_type)])
                .await?;
            if r["realName"] != true {
                return Ok(None);
            }
            let mut info = json!({
                "username": r["username"],
                "mobile": r["mobile"],
                "cardNo": r["idCardNo"],
            });
            if r["mode"] == "BANK" {
                info["bankNo"] = r["bankNo"].clone();
                info["contact"] = r["bankMobile"].clone();
            }
            Ok(Some(("authSuccess", info)))
        }
        Action::EnterpriseAuth => {
            let r = platform.get("/companyauth/result", &[("companyName", &flow.subject)]).await?;
            if r["status"] != 2 {
                return Ok(None);
            }
            Ok(Some(("authSuccess", json!({
                "name": r["companyName"],
                "registerNo": r["registerNo"],
                "legalPerson": r["legalPerson"],
            }))))
        }
    }
}

/// Headers of every return-page answer: never cached, never leaking the token as a referrer.
fn locked_down(mut response: Response, csp: &str) -> Response {
    let h = response.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    if let Ok(v) = HeaderValue::from_str(csp) {
        h.insert(header::CONTENT_SECURITY_POLICY, v);
    }
    response
}

const RETURN_CSP: &str = "default-src 'none'; style-src 'unsafe-inline'";

fn return_html(status: StatusCode, title: &str, text: &str, script: Option<(&str, &str)>) -> Response {
    let mut body = format!("<p id=qys-return-status>{}</p>", html::escape(text));
    let mut csp = RETURN_CSP.to_owned();
    if let Some((nonce, code)) = script {
        body.push_str(&format!("<script nonce=\"{nonce}\">{code}</script>"));
        csp.push_str(&format!("; script-src 'nonce-{nonce}'"));
    }
    locked_down((status, Html(html::page(title, &body))).into_response(), &csp)
}

fn invalid_link() -> Response {
    return_html(
        StatusCode::BAD_REQUEST,
        "链接无效",
        "This return link is invalid or has expired. Start the flow again.",
        None,
    )
}

/// A redirect flow's way back: `303` to the calling page with `qys_state`, no platform call —
/// the page asks `outcome` itself, so the one confirmation happens where the answer is used.
fn back_to_page(app: &App, flow: &FlowToken, return_url: &str) -> Response {
    // The allow-list may have changed since the flow started.
    let origin = url::Url::parse(return_url).map(|u| u.origin().ascii_serialization());
    if !origin.as_deref().is_ok_and(|o| app.origin_allowed(o)) {
        tracing::info!(action = flow.action.name(), origin = ?origin.ok(), "return page refused a returnUrl that is no longer allowed");
        return invalid_link();
    }
    let separator = if return_url.contains('?') { '&' } else { '?' };
    let state: String = form_urlencoded::byte_serialize(flow.state.as_bytes()).collect();
    let Ok(location) = HeaderValue::from_str(&format!("{return_url}{separator}qys_state={state}")) else {
        return invalid_link();
    };
    tracing::info!(action = flow.action.name(), contact = %Masked(&flow.contact), "return page sent the browser back");
    let mut response = locked_down(StatusCode::SEE_OTHER.into_response(), RETURN_CSP);
    response.headers_mut().insert(header::LOCATION, location);
    response
}

async fn return_page(State(app): State<Arc<App>>, RawQuery(query): RawQuery) -> Response {
    let query = query.unwrap_or_default();
    let token = form_urlencoded::parse(query.as_bytes()).find(|(k, _)| k == "t").map(|(_, v)| v.into_owned());
    let flow = match token.map(|t| app.cfg.token_key.verify(&t, unix_millis() / 1000)) {
        Some(Ok(flow)) => flow,
        other => {
            tracing::info!(reason = ?other.map(|r| r.err()), "return page refused a token");
            return invalid_link();
        }
    };
    if let Some(return_url) = &flow.return_url {
        return back_to_page(&app, &flow, return_url);
    }
    let (event, data) = match confirm(&app.cfg.platform, &flow).await {
        Ok(confirmed) => confirmed.unwrap_or(("authFail", json!({}))),
        Err(e) => {
            let (code, message) = e.code_and_message();
            tracing::warn!(action = flow.action.name(), code, message = ?message, "could not confirm the outcome");
            return return_html(
                StatusCode::BAD_GATEWAY,
                "请稍后重试",
                "The result could not be confirmed with the platform yet. Reload this page to try again.",
                None,
            );
        }
    };
    tracing::info!(action = flow.action.name(), contact = %Masked(&flow.contact), event, "return page confirmed");
    let message = json!({"type": "qys-sdk", "v": protocol::VERSION, "state": flow.state, "event": event, "data": data});
    let script = format!(
        "if(window.parent!==window)window.parent.postMessage({},{});",
        html::script_json(&message),
        html::script_json(&json!(flow.target_origin))
    );
    let nonce = uuid::Uuid::new_v4().simple().to_string();
    let mut response = return_html(StatusCode::OK, "契约锁", "完成,正在返回…", Some((&nonce, &script)));
    let ancestors = format!("; frame-ancestors {}", flow.target_origin);
    if let Some(csp) = response.headers().get(header::CONTENT_SECURITY_POLICY).and_then(|v| v.to_str().ok()) {
        if let Ok(v) = HeaderValue::from_str(&format!("{csp}{ancestors}")) {
            response.headers_mut().insert(header::CONTENT_SECURITY_POLICY, v);
        }
    }
    response
}

/// Checks a callback's form fields; `Err` names what is wrong.
type CallbackCheck = fn(&[(String, String)]) -> Result<(), String>;

/// Checks a personal-auth callback (seed 004 §4); `Err` names what is wrong.
pub fn check_personal_callback(fields: &[(String, String)]) -> Result<(), String> {
    let get = |k: &str| fields.iter().find(|(key, _)| key == k).map(|(_, v)| v.as_str());
    match get("mode") {
        Some("IVS" | "FACE" | "BANK" | "MANUAL") => {}
        Some(_) => return Err("mode must be IVS, FACE, BANK or MANUAL".into()),
        None => return Err("mode is required".into()),
    }
    match get("status") {
        Some("1" | "2" | "3") => Ok(()),
        Some(_) => Err("status must be 1, 2 or 3".into()),
        None => Err("status is required".into()),
    }
}

/// Checks a company-auth callback (seed 004 §7); `Err` names what is wrong.
pub fn check_company_callback(fields: &[(String, String)]) -> Result<(), String> {
    let get = |k: &str| fields.iter().find(|(key, _)| key == k).map(|(_, v)| v.as_str());
    match get("status") {
        Some("0" | "1" | "2") => {}
        Some(_) => return Err("status must be 0, 1 or 2".into()),
        None => return Err("status is required".into()),
    }
    match get("actionEvent") {
        Some("0" | "1" | "2" | "4" | "6" | "7" | "9") => {}
        Some(_) => return Err("actionEvent must be one of 0, 1, 2, 4, 6, 7, 9".into()),
        None => return Err("actionEvent is required".into()),
    }
    match get("requestId") {
        Some(id) if !id.is_empty() => {}
        _ => return Err("requestId is required".into()),
    }
    if let Some(info) = get("authInfo") {
        if !matches!(serde_json::from_str::<Value>(info), Ok(Value::Object(_))) {
            return Err("authInfo must be a JSON object".into());
        }
    }
    Ok(())
}

async fn personal_callback(State(app): State<Arc<App>>, RawQuery(q): RawQuery, request: Request) -> Response {
    receive_callback(&app, "personal-auth", q, request, check_personal_callback).await
}

async fn company_callback(State(app): State<Arc<App>>, RawQuery(q): RawQuery, request: Request) -> Response {
    receive_callback(&app, "company-auth", q, request, check_company_callback).await
}

async fn receive_callback(
    app: &App,
    kind: &'static str,
    query: Option<String>,
    request: Request,
    check: CallbackCheck,
) -> Response {
    let is_form = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.to_ascii_lowercase().starts_with("application/x-www-form-urlencoded"));
    let body = match read_body(request.into_body()).await {
        Ok(body) => body,
        Err(e) => return protocol_error(e),
    };
    let verdict = if is_form {
        let fields: Vec<(String, String)> =
            form_urlencoded::parse(&body).map(|(k, v)| (k.into_owned(), v.into_owned())).collect();
        check(&fields)
    } else {
        Err("Content-Type must be application/x-www-form-urlencoded".into())
    };
    let error = verdict.as_ref().err().cloned().unwrap_or_default();
    let store = app.cfg.store.clone();
    let query = query.unwrap_or_default();
    let stored = tokio::task::spawn_blocking(move || store.record(kind, &query, &body, &error)).await;
    match (stored, verdict) {
        (Ok(Ok(recorded)), Ok(())) => {
            tracing::info!(kind, retry = recorded == Recorded::Retry, "server callback stored");
            Json(json!({"code": 0})).into_response()
        }
        (Ok(Ok(_)), Err(reason)) => {
            tracing::warn!(kind, reason = ?reason, "malformed server callback kept for inspection");
            Json(json!({"code": codes::CALLBACK_MALFORMED, "message": reason})).into_response()
        }
        (stored, _) => {
            tracing::error!(kind, error = ?stored.map(|r| r.err()), "server callback could not be stored");
            error_json(StatusCode::INTERNAL_SERVER_ERROR, codes::CALLBACK_NOT_STORED, "not stored; retry later")
        }
    }
}
