//! Signed HTTP client of the 契约锁 open platform (real or sandbox).

use std::time::Duration;

use serde_json::Value;

use crate::protocol::codes;
use crate::sign::SignedHeaders;
use crate::Secret;

/// Why a platform call failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PlatformError {
    /// No answer within the connect or total timeout.
    Timeout,
    /// Connection refused, DNS failure or a broken connection.
    Unavailable(String),
    /// The answer was not the platform's JSON envelope.
    BadResponse(String),
    /// The platform answered a non-zero code; passed through unchanged.
    Platform {
        /// The platform's code, e.g. 1110 or 1605.
        code: i64,
        /// The platform's message.
        message: String,
    },
}

impl PlatformError {
    /// The code and message sent back to the SDK.
    pub fn code_and_message(&self) -> (i64, String) {
        match self {
            Self::Timeout => (codes::UPSTREAM_TIMEOUT, "the platform did not answer in time".into()),
            Self::Unavailable(e) => (codes::UPSTREAM_UNAVAILABLE, format!("the platform is unreachable: {e}")),
            Self::BadResponse(e) => (codes::UPSTREAM_BAD_RESPONSE, format!("the platform's answer was not understood: {e}")),
            Self::Platform { code, message } => (*code, message.clone()),
        }
    }
}

/// Client bound to one platform base URL and one credential pair.
#[derive(Clone)]
pub struct Platform {
    base: String,
    token: String,
    secret: Secret,
    http: reqwest::Client,
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
        Self { base: base.trim_end_matches('/').to_owned(), token: token.to_owned(), secret, http }
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
        let response = request.send().await.map_err(classify)?;
        let status = response.status();
        let bytes = response.bytes().await.map_err(classify)?;
        let envelope: Value = serde_json::from_slice(&bytes)
            .map_err(|_| PlatformError::BadResponse(format!("HTTP {status} with a non-JSON body")))?;
        let code = envelope.get("code").and_then(Value::as_i64).ok_or_else(|| {
            PlatformError::BadResponse(format!("HTTP {status} without a numeric code"))
        })?;
        if code != 0 {
            let message = envelope.get("message").and_then(Value::as_str).unwrap_or("").to_owned();
            return Err(PlatformError::Platform { code, message });
        }
        Ok(envelope.get("result").cloned().unwrap_or(Value::Null))
    }
}

fn classify(e: reqwest::Error) -> PlatformError {
    if e.is_timeout() {
        PlatformError::Timeout
    } else {
        // Without the URL: it may carry query values; the error kind is enough to act on.
        PlatformError::Unavailable(e.without_url().to_string())
    }
}
