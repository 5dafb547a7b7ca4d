//! The server-callback receivers. Each delivery is first charged to its source (over the rate
//! limit: 429, nothing written); a well-formed one through a callback URL this proxy issued (a
//! valid `sig`, or none on a URL issued before sigs, within `QYS_UNSIGNED_CALLBACK_DAYS` and
//! [`UNSIGNED_PER_TOKEN`]) is then stored in full, without its `sig`, before `{"code":0}` is
//! answered; any other is only counted and sampled (constant disk) and answered 1001.

use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{RawQuery, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};

use super::error::ProxyError;
use super::clients::Client;
use super::{rate_limit_hint, read_body, App, ProxyConfig, MAX_BODY};
use crate::forward::payload::own_flow;
use crate::protocol::codes;
use crate::store::{CallbackStore, Malformed, MalformedClass, Recorded, Refused, StoreError, UNSIGNED_PER_TOKEN};
use crate::token::FlowToken;

/// Longest query string of a well-formed delivery. The proxy's own `callbackUrl` carries
/// `flow` (the state, ≤ 64 characters), `t` (the sealed flow token: base64url of its JSON plus
/// 28 bytes) and `sig` (22): ≈ 1.7 KB with every SDK input at its limit (128 four-byte
/// characters of company name, a 64-character contact of them) and a 255-byte page origin; a
/// flow whose URL would be longer is refused when it starts (40003), so the platform never gets
/// a URL its deliveries fail here. An allow-listed `callbackUrl` is ≤ 512 characters in all.
pub const MAX_QUERY: usize = 2048;

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
    let store = &app.cfg.store;
    // Without connect info every peer shares one bucket.
    let client = app.client(request.extensions(), request.headers());
    let source = client.ip;
    if let Err(refused) = store.admit(source) {
        return Ok(too_many(kind, &client, refused));
    }
    let raw_query = query.unwrap_or_default();
    let query = without_sig(&raw_query);
    let content_type = request
        .headers()
        .get(header::CONTENT_TYPE)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
        .unwrap_or_default();
    let rejected = |class, reason: String, body: Bytes| Rejected {
        kind,
        class,
        reason,
        source,
        content_type: content_type.clone(),
        query: query.clone(),
        body,
    };
    let body = match read_body(request.into_body()).await {
        Ok(body) => body,
        Err(too_large) => {
            let reason = format!("the body is larger than {MAX_BODY} bytes");
            count_malformed(store, rejected(MalformedClass::TooLarge, reason, Bytes::new())).await;
            return Err(too_large.into());
        }
    };
    let verdict = match check_delivery(app, kind, &raw_query, &content_type, &body, check).await? {
        Ok(unsigned) => record(store.clone(), kind, query.clone(), body.clone(), unsigned)
            .await
            .inspect_err(|e| tracing::error!(kind, error = %e, "server callback could not be stored"))
            .map(|recorded| match recorded {
                Recorded::OverCap => Err((
                    MalformedClass::Unsigned,
                    format!("this callback URL without sig has stored {UNSIGNED_PER_TOKEN} callbacks already"),
                )),
                stored => Ok(stored),
            })?,
        Err(refused) => Err(refused),
    };
    match verdict {
        Ok(recorded) => {
            tracing::info!(kind, retry = recorded == Recorded::Retry, "server callback stored");
            Ok(Json(json!({"code": 0})).into_response())
        }
        Err((class, reason)) => {
            tracing::warn!(kind, %class, reason = ?reason, source = ?source, "malformed server callback counted, not stored");
            count_malformed(store, rejected(class, reason.clone(), body)).await;
            Ok(Json(json!({"code": codes::CALLBACK_MALFORMED, "message": reason})).into_response())
        }
    }
}

/// Why a delivery is not to be stored (its class and reason), or `Ok` with the flow token `t` of
/// a URL without `sig` it may be stored through ([`CallbackStore::record_unsigned`]).
type Verdict = Result<Option<String>, (MalformedClass, String)>;

/// Checks a delivery in order: Content-Type, query length, the URL ([`issued_here`], for a URL
/// without `sig` [`unsigned_refusal`]), the form fields. `Err` only when the store cannot be read.
async fn check_delivery(
    app: &App,
    kind: &str,
    raw_query: &str,
    content_type: &str,
    body: &Bytes,
    check: CallbackCheck,
) -> Result<Verdict, ProxyError> {
    if !content_type.to_ascii_lowercase().starts_with("application/x-www-form-urlencoded") {
        return Ok(Err((MalformedClass::ContentType, "Content-Type must be application/x-www-form-urlencoded".to_owned())));
    }
    if raw_query.len() > MAX_QUERY {
        return Ok(Err((MalformedClass::Query, format!("the query string is longer than {MAX_QUERY} bytes"))));
    }
    let unsigned = match issued_here(&app.cfg, kind, raw_query) {
        Issued::Signed => None,
        Issued::Unsigned { flow, t } => match unsigned_refusal(&app.cfg, kind, &flow).await? {
            None => Some(t),
            Some(reason) => return Ok(Err((MalformedClass::Unsigned, reason))),
        },
        Issued::No => return Ok(Err((MalformedClass::Unsigned, NOT_ISSUED.to_owned()))),
    };
    let fields: Vec<(String, String)> = form_urlencoded::parse(body).map(|(k, v)| (k.into_owned(), v.into_owned())).collect();
    Ok(check(&fields).map(|()| unsigned).map_err(|reason| (MalformedClass::Fields, reason)))
}

/// The reason of a delivery through no URL this proxy issued.
const NOT_ISSUED: &str = "the callback URL is not one this proxy issued (no valid sig)";

/// How a delivery's URL stands.
enum Issued {
    /// Its first `sig` signs its first `flow` and `t` (empty when absent) for the kind.
    Signed,
    /// No `sig`, and `t` is a flow token of this key, of the kind, with `flow` as its state:
    /// perhaps the URL of an older version ([`unsigned_refusal`] decides).
    Unsigned { flow: FlowToken, t: String },
    /// Neither.
    No,
}

fn issued_here(cfg: &ProxyConfig, kind: &str, query: &str) -> Issued {
    let param = |name: &str| form_urlencoded::parse(query.as_bytes()).find(|(k, _)| k == name).map(|(_, v)| v.into_owned());
    let Some(sig) = param("sig") else {
        return match (own_flow(&cfg.token_key, kind, query), param("t")) {
            (Some(flow), Some(t)) => Issued::Unsigned { flow, t },
            _ => Issued::No,
        };
    };
    let (flow, t) = (param("flow").unwrap_or_default(), param("t").unwrap_or_default());
    if cfg.token_key.verify_callback_sig(kind, &flow, &t, &sig) {
        Issued::Signed
    } else {
        Issued::No
    }
}

/// Logged once per process: a URL without `sig` came after `QYS_UNSIGNED_CALLBACK_DAYS`.
static WINDOW_CLOSED_TOLD: AtomicBool = AtomicBool::new(false);

/// Why a delivery through `flow`'s URL without `sig` is not stored, `None` if it may be: the
/// token was issued before sigs became required (the URL of an older version, whose deliveries
/// may come days later; a token issued since cannot pass, so nobody can mint one now), and that
/// moment is less than `QYS_UNSIGNED_CALLBACK_DAYS` ago — every browser that started a flow
/// before the upgrade holds such a token, so the pass must end. The moment is read for each
/// such delivery, so `callbacks require-sigs` holds on every instance at once.
async fn unsigned_refusal(cfg: &ProxyConfig, kind: &str, flow: &FlowToken) -> Result<Option<String>, ProxyError> {
    let store = cfg.store.clone();
    let since = tokio::task::spawn_blocking(move || store.sigs_required_since())
        .await?
        .map_err(|e: StoreError| ProxyError::Storage(e.to_string()))
        .inspect_err(|e| tracing::error!(kind, error = %e, "cannot read when callback URLs began to carry sig"))?;
    let Some(since) = since else { return Ok(Some(NOT_ISSUED.to_owned())) };
    // A token's issue time is its expiry less the token lifetime, in whole seconds.
    let required_since = u64::try_from(since.div_euclid(1000)).unwrap_or(0);
    if flow.expires.saturating_sub(cfg.token_ttl.as_secs()) >= required_since {
        return Ok(Some(NOT_ISSUED.to_owned()));
    }
    let window = i64::try_from(cfg.unsigned_callback_window.as_millis()).unwrap_or(i64::MAX);
    if window > 0 && crate::store::now() < since.saturating_add(window) {
        return Ok(None);
    }
    if !WINDOW_CLOSED_TOLD.swap(true, Ordering::Relaxed) {
        tracing::warn!(
            kind,
            sigs_required_since = %crate::forward::admin::iso(since),
            days = cfg.unsigned_callback_window.as_secs() / 86_400,
            "a callback through a URL without sig (a flow started before sigs were required) was counted, not stored: \
             QYS_UNSIGNED_CALLBACK_DAYS have passed since then. Raise it if the platform still delivers to such URLs"
        );
    }
    Ok(Some("callback URLs without sig are no longer accepted (QYS_UNSIGNED_CALLBACK_DAYS)".to_owned()))
}

/// The query without its `sig` parameters (any spelling of the name), the others byte for byte:
/// what is stored, deduplicated, sampled, listed and forwarded. A `sig` never expires, so a
/// query in a backend's log or on an operator's screen must not be a pass to the receivers; it is
/// fixed per `flow` and `t`, so retries still match.
fn without_sig(query: &str) -> String {
    let is_sig = |part: &&str| form_urlencoded::parse(part.as_bytes()).next().is_some_and(|(name, _)| name == "sig");
    query.split('&').filter(|part| !is_sig(part)).collect::<Vec<_>>().join("&")
}

/// 429 `{"code":42900}` with `Retry-After`; nothing is written. Logged at most once a minute per
/// source.
fn too_many(kind: &str, client: &Client, refused: Refused) -> Response {
    if let Some(refused_since) = refused.report {
        let hint = rate_limit_hint(client);
        tracing::warn!(kind, source = ?client.ip, refused_since, "server callbacks over the source's rate limit (QYS_CALLBACK_RATE); answering 429{hint}");
    }
    let mut response = (
        StatusCode::TOO_MANY_REQUESTS,
        Json(json!({"code": codes::RATE_LIMITED, "message": "too many callbacks from this address; retry later"})),
    )
        .into_response();
    response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(refused.retry_after));
    response
}

/// Stores a well-formed callback, off the async worker threads; `unsigned`: the flow token of the
/// URL without `sig` it came through.
async fn record(store: CallbackStore, kind: &'static str, query: String, body: Bytes, unsigned: Option<String>) -> Result<Recorded, ProxyError> {
    tokio::task::spawn_blocking(move || match unsigned {
        Some(t) => store.record_unsigned(kind, &query, &body, &t),
        None => store.record(kind, &query, &body),
    })
        .await?
        .map_err(|e: StoreError| ProxyError::Storage(e.to_string()))
}

/// A malformed delivery on its way to the counters.
struct Rejected {
    kind: &'static str,
    class: MalformedClass,
    reason: String,
    source: Option<IpAddr>,
    content_type: String,
    query: String,
    body: Bytes,
}

/// Counts a malformed callback and keeps its sample, off the async worker threads. A failure is
/// only logged: the answer is the refusal either way.
async fn count_malformed(store: &CallbackStore, r: Rejected) {
    let store = store.clone();
    let kind = r.kind;
    let counted = tokio::task::spawn_blocking(move || {
        store.count_malformed(&Malformed {
            kind: r.kind,
            class: r.class,
            reason: &r.reason,
            source: r.source,
            content_type: &r.content_type,
            query: &r.query,
            body: &r.body,
        })
    })
    .await
    .map_err(|e| e.to_string())
    .and_then(|counted| counted.map_err(|e| e.to_string()));
    if let Err(error) = counted {
        tracing::error!(kind, %error, "malformed server callback could not be counted");
    }
}
