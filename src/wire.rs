//! Protocol v1 between the SDK and the proxy (`docs/protocol.md`): the request envelope, its
//! form encoding, and the proxy's answer.

use crate::error::{ErrorKind, QysError};
use crate::message::{accept, Event};
use crate::params::{Action, Params};
use crate::presentation::Presentation;
use crate::value::{concat, decimal, object, Value};

/// The protocol version.
pub const VERSION: u32 = 1;
/// Shortest accepted `state`.
pub const STATE_MIN: usize = 16;
/// Longest accepted `state`.
pub const STATE_MAX: usize = 64;

/// A validated flow request: one of the four actions.
#[derive(Debug, Clone, PartialEq)]
pub struct Envelope {
    /// Which flow.
    pub action: Action,
    /// The SDK's per-call random value.
    pub state: String,
    /// Validated parameters.
    pub params: Params,
    /// How the page will show the platform's page.
    pub presentation: Presentation,
    /// For [`Presentation::Redirect`]: the calling page's URL, where the browser comes back.
    pub return_url: Option<String>,
}

/// Any request of protocol v1: a flow, or the question how a flow ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Request {
    /// Start one of the four flows (boxed: an envelope is far larger than an outcome question).
    Flow(Box<Envelope>),
    /// `outcome`: the confirmed result of the flow `flow` (the proxy's flow token), started with `state`.
    Outcome {
        /// The flow's state, which the token must carry.
        state: String,
        /// The proxy's opaque flow token (`result.flow` of the flow's answer).
        flow: String,
    },
}

/// Why the proxy refuses an envelope.
#[derive(Debug, Clone, PartialEq)]
pub enum EnvelopeError {
    /// Not the JSON envelope (bad JSON, missing or mistyped `v`, `action`, `state`, `params`).
    Malformed(String),
    /// `v` is not 1.
    UnsupportedVersion(String),
    /// `action` is not one of the five.
    UnknownAction(String),
    /// A parameter failed validation.
    InvalidParam(QysError),
}

/// The wire name of the outcome action.
pub const OUTCOME: &str = "outcome";
/// Longest accepted `returnUrl`, in bytes.
pub const RETURN_URL_MAX: usize = 2048;
/// Longest accepted flow token, in bytes.
pub const FLOW_TOKEN_MAX: usize = 4096;

fn envelope_json(
    action: &str,
    state: &str,
    params: Value,
    presentation: Option<&str>,
    return_url: Option<&str>,
) -> String {
    object([
        ("v", Value::Number(f64::from(VERSION))),
        ("action", action.into()),
        ("state", state.into()),
        ("params", params),
        ("presentation", presentation.into()),
        ("returnUrl", return_url.into()),
    ])
    .to_json()
}

/// `requestData=<json>`, the `application/x-www-form-urlencoded` body.
fn form_body(json: &str) -> String {
    concat(&["requestData=", &form_encode(json)])
}

/// The form body of a flow request whose parameters are already canonical ([`normalize`]'s
/// output): what [`Envelope::to_form_body`] writes, without typed parameters.
///
/// [`normalize`]: crate::params::normalize
pub fn flow_form_body(
    action: Action,
    state: &str,
    params: Value,
    presentation: Presentation,
    return_url: Option<&str>,
) -> String {
    form_body(&flow_json(action, state, params, presentation, return_url))
}

/// `presentation` is written only when it is not `iframe`.
fn flow_json(
    action: Action,
    state: &str,
    params: Value,
    presentation: Presentation,
    return_url: Option<&str>,
) -> String {
    let presentation = (presentation != Presentation::Iframe).then_some(presentation.name());
    envelope_json(action.name(), state, params, presentation, return_url)
}

impl Envelope {
    /// The `requestData` JSON text; `presentation` is written only when it is not `iframe`.
    pub fn to_json(&self) -> String {
        flow_json(
            self.action,
            &self.state,
            self.params.to_value(),
            self.presentation,
            self.return_url.as_deref(),
        )
    }

    /// The `application/x-www-form-urlencoded` body: `requestData=<json>`.
    pub fn to_form_body(&self) -> String {
        form_body(&self.to_json())
    }
}

impl Request {
    /// The form body of an `outcome` request.
    pub fn outcome_form_body(state: &str, flow: &str) -> String {
        let params = object([("flow", flow.into())]);
        form_body(&envelope_json(OUTCOME, state, params, None, None))
    }

    /// Validates a decoded `requestData` value (proxy side).
    pub fn parse(value: &Value) -> Result<Self, EnvelopeError> {
        let Value::Object(_) = value else {
            return Err(EnvelopeError::Malformed(
                "requestData must be a JSON object".into(),
            ));
        };
        match value.get("v") {
            Some(Value::Number(n)) if *n == f64::from(VERSION) => {}
            None | Some(Value::Null) => {
                return Err(EnvelopeError::Malformed("requestData.v is required".into()))
            }
            Some(other) => {
                return Err(EnvelopeError::UnsupportedVersion(format!(
                    "protocol version {} is not supported; this proxy speaks v{VERSION}",
                    other.to_json()
                )))
            }
        }
        let name = value.get("action").and_then(Value::as_str).ok_or_else(|| {
            EnvelopeError::Malformed("requestData.action must be a string".into())
        })?;
        let action = match Action::from_name(name) {
            Some(action) => Some(action),
            None if name == OUTCOME => None,
            None => {
                let shown: String = name.chars().take(40).collect();
                return Err(EnvelopeError::UnknownAction(format!(
                    "action {shown:?} is not allowed; allowed: personalSign, enterpriseSign, personalAuth, enterpriseAuth, outcome"
                )));
            }
        };
        let state = match value.get("state").and_then(Value::as_str) {
            Some(s) if valid_state(s) => s.to_owned(),
            _ => {
                return Err(EnvelopeError::Malformed(format!(
                "requestData.state must be {STATE_MIN}–{STATE_MAX} characters of A–Z a–z 0–9 _ -"
            )))
            }
        };
        let params = match value.get("params") {
            Some(p @ Value::Object(_)) => p,
            _ => {
                return Err(EnvelopeError::Malformed(
                    "requestData.params must be an object".into(),
                ))
            }
        };
        let Some(action) = action else {
            return match params.get("flow").and_then(Value::as_str) {
                Some(flow) if valid_flow_token(flow) => Ok(Request::Outcome {
                    state,
                    flow: flow.to_owned(),
                }),
                _ => Err(EnvelopeError::InvalidParam(QysError::invalid_at(
                    "flow",
                    &[" must be the flow token of the flow's answer"],
                ))),
            };
        };
        let params = Params::parse(action, params).map_err(EnvelopeError::InvalidParam)?;
        let presentation = match value.get("presentation") {
            None | Some(Value::Null) => Presentation::Iframe,
            Some(p) => p
                .as_str()
                .and_then(Presentation::from_name)
                .ok_or_else(|| {
                    EnvelopeError::Malformed(
                        "requestData.presentation must be iframe, redirect or miniProgram".into(),
                    )
                })?,
        };
        let return_url = match (presentation, value.get("returnUrl").and_then(Value::as_str)) {
            (Presentation::Redirect, Some(url)) if valid_return_url(url) => Some(url.to_owned()),
            (Presentation::Redirect, _) => {
                return Err(EnvelopeError::InvalidParam(QysError::invalid_at(
                    "returnUrl",
                    &[" must be the calling page's absolute http(s) URL without a fragment, at most 2048 bytes"],
                )))
            }
            _ => None,
        };
        Ok(Request::Flow(Box::new(Envelope {
            action,
            state,
            params,
            presentation,
            return_url,
        })))
    }
}

/// Whether `url` can be a redirect flow's `returnUrl`: absolute http(s), no fragment, no
/// spaces or control characters, at most [`RETURN_URL_MAX`] bytes.
pub fn valid_return_url(url: &str) -> bool {
    http_scheme(url).is_some()
        && url.len() <= RETURN_URL_MAX
        && !url.bytes().any(|b| b == b'#' || b <= b' ' || b == 0x7f)
}

/// Whether `s` can be a flow token: 1–4096 bytes of base64url and dots.
pub fn valid_flow_token(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= FLOW_TOKEN_MAX
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
}

/// Whether `s` is a well-formed state: 16–64 characters of base64url.
pub fn valid_state(s: &str) -> bool {
    (STATE_MIN..=STATE_MAX).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// A state from 16 random bytes: 22 characters of unpadded base64url.
pub fn state_from_random(bytes: &[u8; 16]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::with_capacity(22);
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |acc, (i, b)| acc | u32::from(*b) << (16 - 8 * i));
        for i in 0..=chunk.len() {
            out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
        }
    }
    out
}

/// `application/x-www-form-urlencoded` encoding of one value (space as `+`).
pub fn form_encode(text: &str) -> String {
    percent_encode(text, b"*-._", true)
}

/// `encodeURIComponent`-style encoding of one value (space as `%20`), for URLs read by code
/// that decodes with `decodeURIComponent` (a mini-program page's `onLoad` options).
pub fn uri_encode(text: &str) -> String {
    percent_encode(text, b"-._~", false)
}

fn percent_encode(text: &str, keep: &[u8], space_as_plus: bool) -> String {
    let mut out = String::with_capacity(text.len() * 3 / 2);
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || keep.contains(&b) {
            out.push(b as char);
        } else if b == b' ' && space_as_plus {
            out.push('+');
        } else {
            out.push('%');
            out.push(
                char::from_digit(u32::from(b >> 4), 16)
                    .unwrap()
                    .to_ascii_uppercase(),
            );
            out.push(
                char::from_digit(u32::from(b & 15), 16)
                    .unwrap()
                    .to_ascii_uppercase(),
            );
        }
    }
    out
}

/// What the proxy grants for an iframe or a redirect: the page, the origin its return page
/// posts from, and the flow token to ask for the outcome with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageGrant {
    /// The platform page to load in the iframe or the top window.
    pub page_url: String,
    /// The origin the return message must come from.
    pub return_origin: String,
    /// The proxy's flow token, if well-formed (required for redirects; iframes ignore it).
    pub flow: Option<String>,
}

/// What the proxy grants for the mini-program plugin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TicketGrant {
    /// The plugin page's ticket (seeds 000–003).
    pub ticket: String,
    /// The plugin's platform environment: `com`, `cn`, or the sandbox's.
    pub env: String,
    /// The proxy's flow token.
    pub flow: String,
}

/// How a flow ended, as the proxy confirmed it with the platform.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// A confirmed terminal event.
    Event(Event),
    /// The platform confirms no success (yet).
    Pending,
}

/// Whether `s` is a serialised origin: `http(s)://host[:port]` with nothing after.
/// (The scheme may be in any case; the SDK canonicalises the origin before comparing.)
pub fn is_origin(s: &str) -> bool {
    let Some(scheme) = http_scheme(s) else {
        return false;
    };
    let rest = &s.as_bytes()[scheme..];
    !rest.is_empty() && !rest.iter().any(|b| b"/?#@ \\".contains(b))
}

/// The length of `s`'s `https://` or `http://` prefix, in any case.
fn http_scheme(s: &str) -> Option<usize> {
    let b = s.as_bytes();
    if b.len() >= 8 && b[..8].eq_ignore_ascii_case(b"https://") {
        Some(8)
    } else if b.len() >= 7 && b[..7].eq_ignore_ascii_case(b"http://") {
        Some(7)
    } else {
        None
    }
}

fn protocol(what: &str) -> QysError {
    QysError::new(
        ErrorKind::Protocol,
        concat(&["the proxy's answer is not protocol v1: ", what]),
    )
}

/// Reads the proxy's answer up to its `result`. `body` is the parsed JSON, or `None` if it was
/// not JSON.
pub fn answer_result(status: u16, body: Option<&Value>) -> Result<&Value, QysError> {
    let message = body
        .and_then(|b| b.get("message"))
        .and_then(Value::as_str)
        .unwrap_or("");
    let code = body.and_then(|b| b.get("code")).and_then(|c| match c {
        Value::Number(n) if n.fract() == 0.0 => Some(*n as i64),
        _ => None,
    });
    if !(200..300).contains(&status) {
        let status_text = decimal(u64::from(status));
        let mut text = concat(&["the proxy answered HTTP ", &status_text]);
        if let (Some(code), false) = (code, message.is_empty()) {
            let sign = if code < 0 { "-" } else { "" };
            text = concat(&[
                &text,
                ": ",
                message,
                " (proxy code ",
                sign,
                &decimal(code.unsigned_abs()),
                ")",
            ]);
        }
        return Err(QysError::with_code(
            ErrorKind::Http,
            i64::from(status),
            text,
        ));
    }
    let body = body.ok_or_else(|| protocol("the body is not JSON"))?;
    match code {
        Some(0) => {}
        Some(code) => {
            let shown = if message.is_empty() {
                "the platform refused the request"
            } else {
                message
            };
            return Err(QysError::with_code(ErrorKind::Platform, code, shown));
        }
        None => return Err(protocol("no numeric code")),
    }
    body.get("result").ok_or_else(|| protocol("no result"))
}

/// The answer's flow token, if it carries a well-formed one. Iframe flows never use it, so
/// its absence or shape is checked only where a flow needs it.
fn flow_token(result: &Value) -> Option<String> {
    result
        .get("flow")
        .and_then(Value::as_str)
        .filter(|f| valid_flow_token(f))
        .map(str::to_owned)
}

/// The page of an iframe or redirect answer; `proxy_origin` is the default `returnOrigin`.
pub fn page_grant(result: &Value, proxy_origin: &str) -> Result<PageGrant, QysError> {
    let page_url = match result.get("pageUrl").and_then(Value::as_str) {
        Some(u) if (u.starts_with("https://") || u.starts_with("http://")) && u.len() <= 4096 => {
            u.to_owned()
        }
        _ => return Err(protocol("result.pageUrl is not an http(s) URL")),
    };
    let return_origin = match result.get("returnOrigin") {
        None | Some(Value::Null) => proxy_origin.to_owned(),
        Some(Value::String(o)) if is_origin(o) => o.clone(),
        Some(_) => return Err(protocol("result.returnOrigin is not an origin")),
    };
    Ok(PageGrant {
        page_url,
        return_origin,
        flow: flow_token(result),
    })
}

/// The ticket of a mini-program answer.
pub fn ticket_grant(result: &Value) -> Result<TicketGrant, QysError> {
    let text =
        |key: &str, max: usize, ok: fn(u8) -> bool| match result.get(key).and_then(Value::as_str) {
            Some(s) if !s.is_empty() && s.len() <= max && s.bytes().all(ok) => Some(s.to_owned()),
            _ => None,
        };
    let ticket = text("ticket", 512, |b| {
        b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~')
    })
    .ok_or_else(|| protocol("result.ticket is not a ticket"))?;
    let env = text("env", 32, |b| {
        b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-'
    })
    .ok_or_else(|| protocol("result.env is not an environment name"))?;
    let flow =
        flow_token(result).ok_or_else(|| protocol("result.flow is missing or not a flow token"))?;
    Ok(TicketGrant { ticket, env, flow })
}

/// The outcome of `action` from an `outcome` answer's result; data is checked like a return
/// message's (listed fields are strings, the rest dropped).
pub fn outcome(action: Action, result: &Value) -> Result<Outcome, QysError> {
    match result.get("event").and_then(Value::as_str) {
        Some("pending") => Ok(Outcome::Pending),
        Some(event) => accept(action, event, result.get("data"))
            .map(Outcome::Event)
            .ok_or_else(|| protocol("result.event does not fit the flow")),
        None => Err(protocol("result.event is missing")),
    }
}

/// The proxy's code for a flow token it cannot accept (bad, expired, or another flow's).
pub const FLOW_TOKEN_INVALID: i64 = 40004;

/// Reads an `outcome` answer: `Ok(None)` when the proxy does not accept the flow token, so the
/// flow is unknown and nothing fires.
pub fn outcome_answer(
    action: Action,
    status: u16,
    body: Option<&Value>,
) -> Result<Option<Outcome>, QysError> {
    let code = body.and_then(|b| b.get("code"));
    if status == 400 && matches!(code, Some(Value::Number(c)) if *c == FLOW_TOKEN_INVALID as f64) {
        return Ok(None);
    }
    outcome(action, answer_result(status, body)?).map(Some)
}

/// A query string (`location.search` form, `?` included when non-empty) with `pairs` appended,
/// form-encoded; the existing query is kept byte for byte.
pub fn append_query(search: &str, pairs: &[(String, String)]) -> String {
    let mut out = String::from(search);
    for (name, value) in pairs {
        out.push_str(if out.is_empty() { "?" } else { "&" });
        out.push_str(&form_encode(name));
        out.push('=');
        out.push_str(&form_encode(value));
    }
    out
}
