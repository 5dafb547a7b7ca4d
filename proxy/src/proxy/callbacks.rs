//! The server-callback receivers: every callback is stored, well-formed or not.

use std::sync::Arc;

use axum::extract::{RawQuery, Request, State};
use axum::body::Bytes;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};

use super::error::ProxyError;
use super::{read_body, App};
use crate::protocol::codes;
use crate::store::{CallbackStore, Recorded};

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

pub(super) async fn personal_callback(State(app): State<Arc<App>>, RawQuery(q): RawQuery, request: Request) -> Result<Response, ProxyError> {
    receive_callback(&app, "personal-auth", q, request, check_personal_callback).await
}

pub(super) async fn company_callback(State(app): State<Arc<App>>, RawQuery(q): RawQuery, request: Request) -> Result<Response, ProxyError> {
    receive_callback(&app, "company-auth", q, request, check_company_callback).await
}

async fn receive_callback(
    app: &App,
    kind: &'static str,
    query: Option<String>,
    request: Request,
    check: CallbackCheck,
) -> Result<Response, ProxyError> {
    let is_form = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.to_ascii_lowercase().starts_with("application/x-www-form-urlencoded"));
    let body = read_body(request.into_body()).await?;
    let verdict = if is_form {
        let fields: Vec<(String, String)> =
            form_urlencoded::parse(&body).map(|(k, v)| (k.into_owned(), v.into_owned())).collect();
        check(&fields)
    } else {
        Err("Content-Type must be application/x-www-form-urlencoded".into())
    };
    let error = verdict.as_ref().err().cloned().unwrap_or_default();
    let recorded = record(app.cfg.store.clone(), kind, query.unwrap_or_default(), body, error)
        .await
        .inspect_err(|e| tracing::error!(kind, error = %e, "server callback could not be stored"))?;
    Ok(match verdict {
        Ok(()) => {
            tracing::info!(kind, retry = recorded == Recorded::Retry, "server callback stored");
            Json(json!({"code": 0})).into_response()
        }
        Err(reason) => {
            tracing::warn!(kind, reason = ?reason, "malformed server callback kept for inspection");
            Json(json!({"code": codes::CALLBACK_MALFORMED, "message": reason})).into_response()
        }
    })
}

/// Stores a callback, off the async worker threads.
async fn record(
    store: CallbackStore,
    kind: &'static str,
    query: String,
    body: Bytes,
    error: String,
) -> Result<Recorded, ProxyError> {
    Ok(tokio::task::spawn_blocking(move || store.record(kind, &query, &body, &error)).await??)
}
