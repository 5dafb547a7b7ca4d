//! How the proxy's refusals and failures are answered.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use crate::platform::PlatformError;
use crate::protocol::{codes, ProtocolError};

pub(super) fn error_json(status: StatusCode, code: i64, message: impl Into<String>) -> Response {
    (status, Json(json!({"code": code, "message": message.into()}))).into_response()
}

pub(super) fn protocol_error(e: ProtocolError) -> Response {
    let status = match e.code {
        codes::ORIGIN_NOT_ALLOWED => StatusCode::FORBIDDEN,
        codes::BODY_TOO_LARGE => StatusCode::PAYLOAD_TOO_LARGE,
        codes::UNSUPPORTED_MEDIA_TYPE => StatusCode::UNSUPPORTED_MEDIA_TYPE,
        _ => StatusCode::BAD_REQUEST,
    };
    error_json(status, e.code, e.message)
}

/// How a failed platform call is answered: timeouts 504, transport and format failures 502,
/// the platform's own codes passed through with 200.
pub(super) fn platform_failure(e: &PlatformError) -> Response {
    let (code, message) = e.code_and_message();
    let status = match e {
        PlatformError::Timeout => StatusCode::GATEWAY_TIMEOUT,
        PlatformError::Unavailable(_) | PlatformError::BadResponse(_) => StatusCode::BAD_GATEWAY,
        PlatformError::Platform { .. } => StatusCode::OK,
    };
    error_json(status, code, message)
}
