//! Signed HTTP client of the 契约锁 open platform (real or sandbox).
//!
//! The platform's text is untrusted: the platform, or anything on the way to it, may echo the
//! request's headers. So its `message` (and a transport error's text) leaves this module
//! screened: line breaks become spaces, other control and invisible formatting characters are
//! dropped, it is cut to [`TEXT_MAX`] characters, and a message that holds one of the request's
//! four signing header values (or the secret), plainly, in any letter case, percent-encoded or
//! JSON-escaped, is withheld from the browser, which gets [`our_message`] for the code instead;
//! the log gets it with those values cut out.

use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;

use crate::protocol::codes;
use crate::proxy::{ConfirmLimits, Confirmations};
use crate::sign::SignedHeaders;
use crate::Secret;

/// Longest platform text, in characters, that reaches a JSON answer or a log line.
pub const TEXT_MAX: usize = 256;
/// Largest platform answer read, in bytes; a longer one is [`PlatformError::BadResponse`].
pub const BODY_MAX: usize = 4 << 20;
/// What replaces a signing value in the log.
const REDACTED: &str = "[redacted]";

/// Why a platform call failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PlatformError {
    /// No answer within the connect or total timeout.
    Timeout,
    /// Connection refused, DNS failure or a broken connection (the error's text, screened).
    Unavailable(String),
    /// The answer was not the platform's JSON envelope (our own description of what was wrong).
    BadResponse(String),
    /// The platform answered a non-zero code; the code is passed through unchanged.
    Platform {
        /// The platform's code, e.g. 1110 or 1605.
        code: i64,
        /// The platform's message, screened; `None` when it was empty or held a signing value,
        /// and the browser gets [`our_message`] for the code instead.
        message: Option<String>,
        /// The log's version: the screened message with any signing value cut out.
        logged: String,
        /// The HTTP status it came with: a 5xx or 429 says the platform could not answer now,
        /// whatever the code (the forwarder asks again).
        http: u16,
    },
}

/// The proxy's own text for a platform code, sent when the platform's message cannot be.
pub fn our_message(code: i64) -> String {
    match code {
        1110 => "the platform refused: no permission to view this contract (NO VIEW PERMISSION)".into(),
        1101 => "the platform refused: the contract's status does not allow this (INVALID CONTRACT STATUS)".into(),
        1605 => "the platform refused: the company is already authenticated (COMPANY ALREADY AUTHED)".into(),
        442 => "the platform refused the proxy's credentials (INVALID TOKEN); check QYS_ACCESS_TOKEN".into(),
        _ => format!("the platform refused the request (code {code})"),
    }
}

impl PlatformError {
    /// The code and message sent back to the SDK.
    pub fn code_and_message(&self) -> (i64, String) {
        match self {
            Self::Timeout => (codes::UPSTREAM_TIMEOUT, "the platform did not answer in time".into()),
            Self::Unavailable(e) => (codes::UPSTREAM_UNAVAILABLE, format!("the platform is unreachable: {e}")),
            Self::BadResponse(e) => (codes::UPSTREAM_BAD_RESPONSE, format!("the platform's answer was not understood: {e}")),
            Self::Platform { code, message, .. } => (*code, message.clone().unwrap_or_else(|| our_message(*code))),
        }
    }

    /// The code and message for the log: the platform's own text, with signing values cut out.
    pub fn logged(&self) -> (i64, String) {
        match self {
            Self::Platform { code, logged, .. } => (*code, logged.clone()),
            other => other.code_and_message(),
        }
    }
}

/// Client bound to one platform base URL and one credential pair. Clones share one
/// [`Confirmations`]: this instance's kept confirmations and confirmation-call budget (they
/// live on the client because every confirmation goes through it).
#[derive(Clone)]
pub struct Platform {
    base: String,
    token: String,
    secret: Secret,
    http: reqwest::Client,
    confirmations: Arc<Confirmations>,
}

impl Platform {
    /// Builds a client; `base` is e.g. `https://openapi.qiyuesuo.cn` (no trailing slash needed).
    pub fn new(base: &str, token: &str, secret: Secret, connect_timeout: Duration, timeout: Duration) -> Self {
        let http = reqwest::Client::builder()
            .connect_timeout(connect_timeout)
            .timeout(timeout)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("TLS backend initialises");
        let confirmations = Arc::new(Confirmations::default());
        Self { base: base.trim_end_matches('/').to_owned(), token: token.to_owned(), secret, http, confirmations }
    }

    /// The same client with fresh [`Confirmations`] under `limits` (default: [`ConfirmLimits::default`]).
    pub fn with_confirm_limits(self, limits: ConfirmLimits) -> Self {
        Self { confirmations: Arc::new(Confirmations::new(limits)), ..self }
    }

    /// This instance's confirmations of flow outcomes (see [`Confirmations`]).
    pub fn confirmations(&self) -> &Confirmations {
        &self.confirmations
    }

    /// `POST {base}{path}` with a JSON body; returns the envelope's `result`.
    pub async fn post(&self, path: &str, body: &Value) -> Result<Value, PlatformError> {
        self.send(self.http.post(format!("{}{path}", self.base)).json(body)).await
    }

    /// `GET {base}{path}?{query}`; returns the envelope's `result`.
    pub async fn get(&self, path: &str, query: &[(&str, &str)]) -> Result<Value, PlatformError> {
        self.send(self.http.get(format!("{}{path}", self.base)).query(query)).await
    }

    async fn send(&self, request: reqwest::RequestBuilder) -> Result<Value, PlatformError> {
        let signed = SignedHeaders::now(&self.token, self.secret.expose());
        let mut request = request;
        for (name, value) in signed.pairs() {
            request = request.header(name, value);
        }
        let ours = Ours::new(&signed, self.secret.expose());
        let failed = |e: reqwest::Error| classify(e, &ours);
        let mut response = request.send().await.map_err(failed)?;
        let status = response.status();
        let mut bytes = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(failed)? {
            if bytes.len() + chunk.len() > BODY_MAX {
                return Err(PlatformError::BadResponse(format!("HTTP {status} with a body over {BODY_MAX} bytes")));
            }
            bytes.extend_from_slice(&chunk);
        }
        let envelope: Value = serde_json::from_slice(&bytes)
            .map_err(|_| PlatformError::BadResponse(format!("HTTP {status} with a non-JSON body")))?;
        let code = envelope.get("code").and_then(Value::as_i64).ok_or_else(|| {
            PlatformError::BadResponse(format!("HTTP {status} without a numeric code"))
        })?;
        if code != 0 {
            let text = envelope.get("message").and_then(Value::as_str).unwrap_or("");
            let screened = screen(text, &ours);
            let message = screened.shown.filter(|m| !m.trim().is_empty());
            return Err(PlatformError::Platform { code, message, logged: screened.logged, http: status.as_u16() });
        }
        Ok(envelope.get("result").cloned().unwrap_or(Value::Null))
    }
}

fn classify(e: reqwest::Error, ours: &Ours) -> PlatformError {
    if e.is_timeout() {
        PlatformError::Timeout
    } else {
        // Without the URL: it may carry query values; the error kind is enough to act on.
        let screened = screen(&e.without_url().to_string(), ours);
        PlatformError::Unavailable(screened.shown.unwrap_or_else(|| "the connection failed".into()))
    }
}

/// The values of one request that no platform text may carry to a browser or a log: the four
/// signing header values (the nonce also without its hyphens) and the secret, lowercased.
struct Ours(Vec<String>);

impl Ours {
    fn new(signed: &SignedHeaders, secret: &str) -> Self {
        let values = [&signed.token, &signed.timestamp, &signed.nonce, &signed.nonce.replace('-', ""), &signed.signature, secret];
        Self(values.iter().filter(|v| !v.is_empty()).map(|v| v.to_ascii_lowercase()).collect())
    }
}

/// Platform text made fit for an answer and for the log.
#[derive(Debug, PartialEq, Eq)]
struct Screened {
    /// For the browser: the cleaned text, or `None` if it held one of [`Ours`].
    shown: Option<String>,
    /// For the log: the cleaned text; if it held one of [`Ours`], decoded and with each cut out.
    logged: String,
}

/// Screens platform text (see the module's documentation).
fn screen(text: &str, ours: &Ours) -> Screened {
    // Matching runs on the text without any hidden character (so none can split a value) and
    // on its percent- and JSON-decoded forms, redacting after each decoding step, so the
    // result holds no value in any of these forms.
    let visible: String = text.chars().filter(|&c| !hidden(c)).collect();
    let (mut decoded, mut found) = redact(&visible, ours);
    let steps: [fn(&str) -> String; 3] = [percent_decode, json_unescape, percent_decode];
    for decode in steps {
        let (redacted, hit) = redact(&decode(&decoded), ours);
        decoded = redacted;
        found |= hit;
    }
    if found {
        Screened { shown: None, logged: limit(&clean(&decoded)) }
    } else {
        let cleaned = limit(&clean(text));
        Screened { shown: Some(cleaned.clone()), logged: cleaned }
    }
}

/// Control characters, and the invisible ones that reorder or hide text (bidi controls,
/// zero-width characters, line and paragraph separators).
fn hidden(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{061c}' | '\u{200b}'..='\u{200f}' | '\u{2028}'..='\u{202e}' | '\u{2060}'..='\u{2069}' | '\u{feff}')
}

/// A platform string on its way to a page, a log line or the integrator's callbacks, as every
/// platform text goes: no control or invisible formatting characters, at most [`TEXT_MAX`]
/// characters.
pub fn plain_text(text: &str) -> String {
    limit(&clean(text))
}

/// Line breaks and tabs become spaces; other [`hidden`] characters are dropped.
fn clean(text: &str) -> String {
    text.chars()
        .filter_map(|c| match c {
            '\n' | '\r' | '\t' => Some(' '),
            c if hidden(c) => None,
            c => Some(c),
        })
        .collect()
}

/// At most [`TEXT_MAX`] characters, `…` marking a cut.
fn limit(text: &str) -> String {
    match text.char_indices().nth(TEXT_MAX) {
        Some((end, _)) => format!("{}…", &text[..end]),
        None => text.to_owned(),
    }
}

/// `text` with every occurrence of a value of `ours` (ASCII letter case ignored) replaced, and
/// whether there was one.
fn redact(text: &str, ours: &Ours) -> (String, bool) {
    let lower = text.to_ascii_lowercase();
    let mut cuts: Vec<(usize, usize)> = Vec::new();
    for value in &ours.0 {
        cuts.extend(lower.match_indices(value.as_str()).map(|(at, v)| (at, at + v.len())));
    }
    if cuts.is_empty() {
        return (text.to_owned(), false);
    }
    cuts.sort_unstable();
    // ASCII lowercasing keeps every byte offset, and each value is whole UTF-8, so the cuts
    // fall on character boundaries of `text`.
    let mut out = String::with_capacity(text.len());
    let mut at = 0;
    for (start, end) in cuts {
        if start >= at {
            out.push_str(&text[at..start]);
            out.push_str(REDACTED);
        }
        at = at.max(end);
    }
    out.push_str(&text[at..]);
    (out, true)
}

/// `%XX` sequences decoded (invalid UTF-8 replaced); anything else kept.
fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let (Some(h), Some(l)) = (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// JSON string escapes (`\uXXXX`, `\/`, `\"`, `\\`, `\n`, …) decoded; anything else kept.
fn json_unescape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find('\\') {
        out.push_str(&rest[..at]);
        let after = &rest[at + 1..];
        let mut chars = after.chars();
        let (decoded, used) = match chars.next() {
            Some('u') => match after.get(1..5).and_then(|h| u32::from_str_radix(h, 16).ok()) {
                Some(n) => (Some(char::from_u32(n).unwrap_or('\u{fffd}')), 5),
                None => (None, 0),
            },
            Some(c @ ('"' | '\\' | '/')) => (Some(c), 1),
            Some('n') => (Some('\n'), 1),
            Some('r') => (Some('\r'), 1),
            Some('t') => (Some('\t'), 1),
            Some('b') => (Some('\u{8}'), 1),
            Some('f') => (Some('\u{c}'), 1),
            _ => (None, 0),
        };
        match decoded {
            Some(c) => {
                out.push(c);
                rest = &after[used..];
            }
            None => {
                out.push('\\');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ours() -> Ours {
        let signed = SignedHeaders {
            token: "App-Token-1".into(),
            timestamp: "1700000000000".into(),
            nonce: "5a1f9a2e-0000-4000-8000-000000000001".into(),
            signature: "6bceac383165ff929b3724caca36feed".into(),
        };
        Ours::new(&signed, "demo-secret")
    }

    #[test]
    fn clean_text_passes_cleaned_and_limited() {
        let s = screen("NO VIEW\r\nPERMISSION\u{1b}[31m\u{202e}!", &ours());
        assert_eq!(s.shown.as_deref(), Some("NO VIEW  PERMISSION[31m!"));
        assert_eq!(s.logged, "NO VIEW  PERMISSION[31m!");
        let long = "长".repeat(TEXT_MAX + 10);
        let s = screen(&long, &ours());
        assert_eq!(s.shown.unwrap().chars().count(), TEXT_MAX + 1);
    }

    #[test]
    fn a_signing_value_in_any_form_withholds_the_text() {
        for text in [
            "INVALID TOKEN app-token-1",
            "token=APP-TOKEN-1!",
            "sig 6BCEAC383165FF929B3724CACA36FEED",
            "nonce 5a1f9a2e000040008000000000000001",
            "nonce=5a1f9a2e%2D0000%2d4000-8000-000000000001",
            r"token \u0041pp-Token-1 and \u0061pp\u002dtoken\u002d1",
            r#"{"x-qys-open-accesstoken":"App-Token-1"}"#,
            "split App-To\u{0}ken-1 and App-To\u{200b}ken-1",
            "at 1700000000000",
            "secret DEMO-SECRET",
            "double %25%34%31pp-Token-1",
        ] {
            let s = screen(text, &ours());
            assert_eq!(s.shown, None, "{text}");
            let logged = s.logged.to_ascii_lowercase();
            for value in &ours().0 {
                assert!(!logged.contains(value.as_str()), "{text} → {}", s.logged);
            }
            assert!(s.logged.contains(REDACTED), "{text} → {}", s.logged);
        }
        let s = screen("INVALID TOKEN: App-Token-1 unknown", &ours());
        assert_eq!(s.logged, "INVALID TOKEN: [redacted] unknown");
    }

    #[test]
    fn our_messages_name_the_known_codes() {
        assert!(our_message(1110).contains("NO VIEW PERMISSION"));
        assert!(our_message(1101).contains("INVALID CONTRACT STATUS"));
        assert!(our_message(1605).contains("COMPANY ALREADY AUTHED"));
        assert!(our_message(442).contains("INVALID TOKEN"));
        assert_eq!(our_message(9), "the platform refused the request (code 9)");
        let e = PlatformError::Platform { code: 442, message: None, logged: "INVALID TOKEN [redacted]".into(), http: 401 };
        assert_eq!(e.code_and_message(), (442, our_message(442)));
        assert_eq!(e.logged(), (442, "INVALID TOKEN [redacted]".into()));
    }

    #[test]
    fn decoders_keep_what_they_do_not_understand() {
        assert_eq!(percent_decode("a%2Fb%zz%4"), "a/b%zz%4");
        assert_eq!(json_unescape(r#"a\u0041\/\"\q\u12"#), "aA/\"\\q\\u12");
    }
}
