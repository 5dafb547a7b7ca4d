//! Protocol v1 between the SDK and the proxy (`docs/protocol.md`): the request envelope, its
//! form encoding, and the proxy's answer.

use crate::error::{ErrorKind, QysError};
use crate::params::{Action, Params};
use crate::value::{decimal, object, Value};

/// The protocol version.
pub const VERSION: u32 = 1;
/// Shortest accepted `state`.
pub const STATE_MIN: usize = 16;
/// Longest accepted `state`.
pub const STATE_MAX: usize = 64;

/// A validated request.
#[derive(Debug, Clone, PartialEq)]
pub struct Envelope {
    /// Which flow.
    pub action: Action,
    /// The SDK's per-call random value.
    pub state: String,
    /// Validated parameters.
    pub params: Params,
}

/// Why the proxy refuses an envelope.
#[derive(Debug, Clone, PartialEq)]
pub enum EnvelopeError {
    /// Not the JSON envelope (bad JSON, missing or mistyped `v`, `action`, `state`, `params`).
    Malformed(String),
    /// `v` is not 1.
    UnsupportedVersion(String),
    /// `action` is not one of the four.
    UnknownAction(String),
    /// A parameter failed validation.
    InvalidParam(QysError),
}

impl Envelope {
    /// The `requestData` JSON text.
    pub fn to_json(&self) -> String {
        object([
            ("v", Value::Number(f64::from(VERSION))),
            ("action", self.action.name().into()),
            ("state", self.state.as_str().into()),
            ("params", self.params.to_value()),
        ])
        .to_json()
    }

    /// The `application/x-www-form-urlencoded` body: `requestData=<json>`.
    pub fn to_form_body(&self) -> String {
        ["requestData=", &form_encode(&self.to_json())].concat()
    }

    /// Validates a decoded `requestData` value (proxy side).
    pub fn parse(value: &Value) -> Result<Self, EnvelopeError> {
        let Value::Object(_) = value else {
            return Err(EnvelopeError::Malformed("requestData must be a JSON object".into()));
        };
        match value.get("v") {
            Some(Value::Number(n)) if *n == f64::from(VERSION) => {}
            None | Some(Value::Null) => return Err(EnvelopeError::Malformed("requestData.v is required".into())),
            Some(other) => {
                return Err(EnvelopeError::UnsupportedVersion(format!(
                    "protocol version {} is not supported; this proxy speaks v{VERSION}",
                    other.to_json()
                )))
            }
        }
        let name = value
            .get("action")
            .and_then(Value::as_str)
            .ok_or_else(|| EnvelopeError::Malformed("requestData.action must be a string".into()))?;
        let action = Action::from_name(name).ok_or_else(|| {
            let shown: String = name.chars().take(40).collect();
            EnvelopeError::UnknownAction(format!(
                "action \"{shown}\" is not allowed; allowed: personalSign, enterpriseSign, personalAuth, enterpriseAuth"
            ))
        })?;
        let state = match value.get("state").and_then(Value::as_str) {
            Some(s) if valid_state(s) => s.to_owned(),
            _ => {
                return Err(EnvelopeError::Malformed(format!(
                    "requestData.state must be {STATE_MIN}–{STATE_MAX} characters of A–Z a–z 0–9 _ -"
                )))
            }
        };
        let params = match value.get("params") {
            Some(p @ Value::Object(_)) => Params::parse(action, p).map_err(EnvelopeError::InvalidParam)?,
            _ => return Err(EnvelopeError::Malformed("requestData.params must be an object".into())),
        };
        Ok(Envelope { action, state, params })
    }
}

/// Whether `s` is a well-formed state: 16–64 characters of base64url.
pub fn valid_state(s: &str) -> bool {
    (STATE_MIN..=STATE_MAX).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// A state from 16 random bytes: 22 characters of unpadded base64url.
pub fn state_from_random(bytes: &[u8; 16]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::with_capacity(22);
    for chunk in bytes.chunks(3) {
        let n = chunk.iter().enumerate().fold(0u32, |acc, (i, b)| acc | u32::from(*b) << (16 - 8 * i));
        for i in 0..=chunk.len() {
            out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
        }
    }
    out
}

/// `application/x-www-form-urlencoded` encoding of one value (space as `+`).
pub fn form_encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len() * 3 / 2);
    for b in text.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'*' | b'-' | b'.' | b'_' => out.push(b as char),
            b' ' => out.push('+'),
            _ => {
                out.push('%');
                out.push(char::from_digit(u32::from(b >> 4), 16).unwrap().to_ascii_uppercase());
                out.push(char::from_digit(u32::from(b & 15), 16).unwrap().to_ascii_uppercase());
            }
        }
    }
    out
}

/// What the proxy grants: the page to frame and the origin its return page posts from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PageGrant {
    /// The platform page to load in the iframe.
    pub page_url: String,
    /// The origin the return message must come from.
    pub return_origin: String,
}

/// Whether `s` is a serialised origin: `http(s)://host[:port]` with nothing after.
/// (The scheme may be in any case; the SDK canonicalises the origin before comparing.)
pub fn is_origin(s: &str) -> bool {
    let lower = s.to_ascii_lowercase();
    let Some(rest) = lower.strip_prefix("https://").or_else(|| lower.strip_prefix("http://")) else { return false };
    !rest.is_empty() && !rest.contains(['/', '?', '#', '@', ' ', '\\'])
}

/// Reads the proxy's answer. `body` is the parsed JSON, or `None` if it was not JSON;
/// `proxy_origin` is the default `returnOrigin`.
pub fn decode_response(status: u16, body: Option<&Value>, proxy_origin: &str) -> Result<PageGrant, QysError> {
    let message = body.and_then(|b| b.get("message")).and_then(Value::as_str).unwrap_or("");
    let code = body.and_then(|b| b.get("code")).and_then(|c| match c {
        Value::Number(n) if n.fract() == 0.0 => Some(*n as i64),
        _ => None,
    });
    if !(200..300).contains(&status) {
        let status_text = decimal(u64::from(status));
        let mut text = ["the proxy answered HTTP ", &status_text].concat();
        if let (Some(code), false) = (code, message.is_empty()) {
            let sign = if code < 0 { "-" } else { "" };
            text = [&text, ": ", message, " (proxy code ", sign, &decimal(code.unsigned_abs()), ")"].concat();
        }
        return Err(QysError::with_code(ErrorKind::Http, i64::from(status), text));
    }
    let protocol = |what: &str| QysError::new(ErrorKind::Protocol, ["the proxy's answer is not protocol v1: ", what].concat());
    let body = body.ok_or_else(|| protocol("the body is not JSON"))?;
    match code {
        Some(0) => {}
        Some(code) => {
            let shown = if message.is_empty() { "the platform refused the request" } else { message };
            return Err(QysError::with_code(ErrorKind::Platform, code, shown));
        }
        None => return Err(protocol("no numeric code")),
    }
    let result = body.get("result").ok_or_else(|| protocol("no result"))?;
    let page_url = match result.get("pageUrl").and_then(Value::as_str) {
        Some(u) if (u.starts_with("https://") || u.starts_with("http://")) && u.len() <= 4096 => u.to_owned(),
        _ => return Err(protocol("result.pageUrl is not an http(s) URL")),
    };
    let return_origin = match result.get("returnOrigin") {
        None | Some(Value::Null) => proxy_origin.to_owned(),
        Some(Value::String(o)) if is_origin(o) => o.clone(),
        Some(_) => return Err(protocol("result.returnOrigin is not an origin")),
    };
    Ok(PageGrant { page_url, return_origin })
}
