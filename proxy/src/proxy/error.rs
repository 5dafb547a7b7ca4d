//! The proxy's one error type: every refusal and failure its handlers answer, with `?`.

use std::fmt;

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use super::confirm::Unconfirmed;
use super::return_page;
use super::with_cors;
use crate::platform::PlatformError;
use crate::protocol::{codes, ProtocolError};

/// Why the proxy refuses or fails a request. [`IntoResponse`] gives its answer: the JSON
/// `{"code", "message"}` of the SDK endpoint and the callback receivers, or the return page's
/// HTML.
#[derive(Debug)]
pub enum ProxyError {
    /// The request breaks the protocol: its code and message, with 413 for `BODY_TOO_LARGE`,
    /// 415 for `UNSUPPORTED_MEDIA_TYPE`, 403 for `ORIGIN_NOT_ALLOWED`, 400 for any other code.
    Protocol(ProtocolError),
    /// A browser origin that is not allowed: 403 `ORIGIN_NOT_ALLOWED`. The refusal is itself
    /// readable by that origin, so the SDK can say what to fix; nothing else is ever answered to
    /// it.
    OriginNotAllowed(String),
    /// `outcome` with a flow token that is invalid, has expired, or is another flow's or page's:
    /// 400 `FLOW_TOKEN_INVALID`.
    FlowTokenInvalid,
    /// A platform call failed: 504 on a timeout, 502 on transport and format failures, and the
    /// platform's own code passed through with 200.
    Platform(PlatformError),
    /// A server callback could not be stored (the cause, for the log): 500
    /// `CALLBACK_NOT_STORED`, so the platform retries.
    Storage(String),
    /// The return page's link is invalid or has expired, or its `returnUrl` is no longer
    /// allowed: the return page's 400 HTML page.
    ReturnLinkInvalid,
    /// The return page could not confirm the outcome with the platform: its 502 HTML page.
    ReturnUnconfirmed,
    /// `outcome` while this instance's confirmation calls per second are spent: 503
    /// `CONFIRMATIONS_BUSY` with `Retry-After: 1`.
    Busy,
    /// The return page while this instance's confirmation calls per second are spent: its 503
    /// HTML page with `Retry-After: 1`.
    ReturnBusy,
    /// A flow start or `outcome` from a source over `QYS_SDK_RATE`: 429 `RATE_LIMITED` with
    /// `Retry-After` (seconds).
    RateLimited(u64),
    /// The return page for a source over `QYS_SDK_RATE`: its 429 HTML page with `Retry-After`.
    ReturnRateLimited(u64),
    /// A flow start while this instance's `QYS_FLOW_START_RATE` is spent: 429 `RATE_LIMITED`
    /// with `Retry-After` (seconds).
    StartsSpent(u64),
}

impl fmt::Display for ProxyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Protocol(e) => write!(f, "{} {}", e.code, e.message),
            // Debug-escaped: the browser's text, and this may reach a log.
            Self::OriginNotAllowed(origin) => write!(f, "origin {origin:?} is not allowed"),
            Self::FlowTokenInvalid => f.write_str("the flow token is invalid or has expired"),
            Self::Platform(e) => {
                let (code, message) = e.code_and_message();
                write!(f, "{code} {message}")
            }
            Self::Storage(cause) => write!(f, "the callback could not be stored: {cause}"),
            Self::ReturnLinkInvalid => f.write_str("the return link is invalid or has expired"),
            Self::ReturnUnconfirmed => f.write_str("the outcome could not be confirmed with the platform"),
            Self::Busy | Self::ReturnBusy => f.write_str("too many confirmations right now; retry in a moment"),
            Self::RateLimited(_) | Self::ReturnRateLimited(_) => f.write_str("too many requests from this address"),
            Self::StartsSpent(_) => f.write_str("too many flows are being started right now"),
        }
    }
}

impl std::error::Error for ProxyError {}

impl From<ProtocolError> for ProxyError {
    fn from(e: ProtocolError) -> Self {
        Self::Protocol(e)
    }
}

impl From<PlatformError> for ProxyError {
    fn from(e: PlatformError) -> Self {
        Self::Platform(e)
    }
}

/// `outcome`'s answers; the return page answers with its pages instead.
impl From<Unconfirmed> for ProxyError {
    fn from(e: Unconfirmed) -> Self {
        match e {
            Unconfirmed::Platform(e) => Self::Platform(e),
            Unconfirmed::Busy => Self::Busy,
        }
    }
}

impl From<tokio::task::JoinError> for ProxyError {
    fn from(e: tokio::task::JoinError) -> Self {
        Self::Storage(e.to_string())
    }
}

fn error_json(status: StatusCode, code: i64, message: impl Into<String>) -> Response {
    (status, Json(json!({"code": code, "message": message.into()}))).into_response()
}

/// A 429 (42900) saying `what` and when to retry, in the body and in `Retry-After`.
fn too_many(what: &str, retry_after: u64) -> Response {
    let mut limited = error_json(
        StatusCode::TOO_MANY_REQUESTS,
        codes::RATE_LIMITED,
        format!("{what}; retry in {retry_after} s"),
    );
    limited.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(retry_after));
    limited
}

impl IntoResponse for ProxyError {
    fn into_response(self) -> Response {
        match self {
            Self::Protocol(e) => {
                let status = match e.code {
                    codes::ORIGIN_NOT_ALLOWED => StatusCode::FORBIDDEN,
                    codes::BODY_TOO_LARGE => StatusCode::PAYLOAD_TOO_LARGE,
                    codes::UNSUPPORTED_MEDIA_TYPE => StatusCode::UNSUPPORTED_MEDIA_TYPE,
                    _ => StatusCode::BAD_REQUEST,
                };
                error_json(status, e.code, e.message)
            }
            Self::OriginNotAllowed(origin) => {
                let refusal = error_json(
                    StatusCode::FORBIDDEN,
                    codes::ORIGIN_NOT_ALLOWED,
                    format!("origin {origin} is not allowed; add it to QYS_ALLOWED_ORIGINS"),
                );
                with_cors(refusal, Some(&origin))
            }
            Self::FlowTokenInvalid => error_json(
                StatusCode::BAD_REQUEST,
                codes::FLOW_TOKEN_INVALID,
                "the flow token is invalid or has expired",
            ),
            Self::Platform(e) => {
                let (code, message) = e.code_and_message();
                let status = match e {
                    PlatformError::Timeout => StatusCode::GATEWAY_TIMEOUT,
                    PlatformError::Unavailable(_) | PlatformError::BadResponse(_) => StatusCode::BAD_GATEWAY,
                    PlatformError::Platform { .. } => StatusCode::OK,
                };
                error_json(status, code, message)
            }
            Self::Storage(_) => error_json(
                StatusCode::INTERNAL_SERVER_ERROR,
                codes::CALLBACK_NOT_STORED,
                "not stored; retry later",
            ),
            Self::ReturnLinkInvalid => return_page::invalid_link(),
            Self::ReturnUnconfirmed => return_page::unconfirmed(),
            Self::Busy => {
                let mut busy = error_json(
                    StatusCode::SERVICE_UNAVAILABLE,
                    codes::CONFIRMATIONS_BUSY,
                    "too many outcomes are being confirmed right now; retry in a moment",
                );
                busy.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
                busy
            }
            Self::ReturnBusy => return_page::busy(),
            Self::RateLimited(retry_after) => too_many("too many requests from this address", retry_after),
            Self::ReturnRateLimited(retry_after) => return_page::rate_limited(retry_after),
            Self::StartsSpent(retry_after) => too_many("too many flows are being started right now", retry_after),
        }
    }
}
