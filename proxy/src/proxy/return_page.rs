//! The return page: where the platform's H5 pages send the browser when a flow ends.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use serde_json::json;

use super::confirm::{confirm, Unconfirmed};
use super::error::ProxyError;
use super::App;
use crate::mask::Masked;
use crate::protocol;
use crate::token::FlowToken;
use crate::{html, unix_millis};

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

/// The page of [`ProxyError::ReturnLinkInvalid`].
pub(super) fn invalid_link() -> Response {
    return_html(
        StatusCode::BAD_REQUEST,
        "链接无效",
        "This return link is invalid or has expired. Start the flow again.",
        None,
    )
}

/// The page of [`ProxyError::ReturnUnconfirmed`].
pub(super) fn unconfirmed() -> Response {
    return_html(
        StatusCode::BAD_GATEWAY,
        "请稍后重试",
        "The result could not be confirmed with the platform yet. Reload this page to try again.",
        None,
    )
}

/// The page of [`ProxyError::ReturnBusy`]: 503 with `Retry-After: 1`.
pub(super) fn busy() -> Response {
    let mut response = return_html(
        StatusCode::SERVICE_UNAVAILABLE,
        "系统繁忙",
        "Too many results are being confirmed right now. Reload this page in a moment.",
        None,
    );
    response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    response
}

/// The page of [`ProxyError::ReturnRateLimited`]: 429 with `Retry-After`.
pub(super) fn rate_limited(retry_after: u64) -> Response {
    let mut response = return_html(
        StatusCode::TOO_MANY_REQUESTS,
        "请求过多",
        &format!("Too many requests from this address. Reload this page in {retry_after} s."),
        None,
    );
    response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(retry_after));
    response
}

/// The origin of `url` when it is an absolute http(s) URL on an origin allowed now (the
/// proxy's own or in `QYS_ALLOWED_ORIGINS`): checked when a token is used, since the allow-list
/// may have changed since the flow started, and a token made with a leaked key must not choose
/// where the page posts or sends the browser.
fn allowed_origin(app: &App, url: &str) -> Option<String> {
    allowed_url(app, url).map(|(_, origin)| origin)
}

/// [`allowed_origin`], with the parsed URL: what is sent is what was checked.
fn allowed_url(app: &App, url: &str) -> Option<(url::Url, String)> {
    let url = url::Url::parse(url).ok().filter(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some())?;
    let origin = url.origin().ascii_serialization();
    app.origin_allowed(&origin).then_some((url, origin))
}

/// A redirect flow's way back: `303` to the calling page with `qys_state`, no platform call —
/// the page asks `outcome` itself, so the one confirmation happens where the answer is used.
fn back_to_page(app: &App, flow: &FlowToken, return_url: &str) -> Result<Response, ProxyError> {
    let Some((mut url, _)) = allowed_url(app, return_url) else {
        let origin = url::Url::parse(return_url).map(|u| u.origin().ascii_serialization()).ok();
        tracing::info!(action = flow.action.name(), origin = ?origin, "return page refused a returnUrl that is no longer allowed");
        return Err(ProxyError::ReturnLinkInvalid);
    };
    // The user is back: `outcome` asks the platform again rather than reuse a "not yet".
    app.cfg.platform.confirmations().returned(flow);
    // Appended to the query as it is (not re-encoded), before any fragment.
    url.query_pairs_mut().append_pair("qys_state", &flow.state);
    let location = HeaderValue::from_str(url.as_str()).map_err(|_| ProxyError::ReturnLinkInvalid)?;
    tracing::info!(action = flow.action.name(), contact = %Masked(&flow.contact), "return page sent the browser back");
    let mut response = locked_down(StatusCode::SEE_OTHER.into_response(), RETURN_CSP);
    response.headers_mut().insert(header::LOCATION, location);
    Ok(response)
}

pub(super) async fn return_page(State(app): State<Arc<App>>, request: Request) -> Result<Response, ProxyError> {
    let query = request.uri().query().unwrap_or_default();
    let token = form_urlencoded::parse(query.as_bytes()).find(|(k, _)| k == "t").map(|(_, v)| v.into_owned());
    // `None`: no token; `Some(why)`: a token refused.
    let flow = token
        .ok_or(None)
        .and_then(|t| {
            // A signed token is `payload.mac`; a redirect's is sealed (no dot).
            let now = unix_millis() / 1000;
            if t.contains('.') { app.cfg.token_key.verify(&t, now) } else { app.cfg.token_key.unseal(&t, now) }.map_err(Some)
        })
        .inspect_err(|reason| tracing::info!(?reason, "return page refused a token"))
        .map_err(|_| ProxyError::ReturnLinkInvalid)?;
    // The message's targetOrigin and the CSP's frame-ancestors: an exact allowed origin, nothing else.
    if allowed_origin(&app, &flow.target_origin).as_deref() != Some(flow.target_origin.as_str()) {
        tracing::info!(action = flow.action.name(), origin = ?flow.target_origin, "return page refused a token whose origin is not an allowed origin");
        return Err(ProxyError::ReturnLinkInvalid);
    }
    if let Some(return_url) = &flow.return_url {
        return back_to_page(&app, &flow, return_url);
    }
    app.charge(&app.client(request.extensions(), request.headers()), "return page").map_err(ProxyError::ReturnRateLimited)?;
    let confirmed = confirm(&app.cfg.platform, &flow, true).await.map_err(|e| match e {
        Unconfirmed::Busy => ProxyError::ReturnBusy,
        Unconfirmed::Platform(_) => ProxyError::ReturnUnconfirmed,
    })?;
    let (event, data) = confirmed.unwrap_or(("authFail", json!({})));
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
    Ok(response)
}
