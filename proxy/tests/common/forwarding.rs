//! Forwarding under test: the settings a forwarding proxy runs with (quick retries, short
//! timeouts), and the backend's side of a forwarded callback's signature, written independently
//! of the proxy's code.
//!
//! Declared from `common/mod.rs`; `tests/postgres.rs` includes it with `#[path]`.
#![allow(dead_code)]

use axum::http::HeaderMap;
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// Whether `headers` carry a valid `X-Qys-Signature` of `body` under `secret`, made now.
pub fn verify(secret: &str, headers: &HeaderMap, body: &[u8]) -> bool {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or("");
    let (timestamp, signature) = (header("x-qys-timestamp"), header("x-qys-signature"));
    let Ok(ms) = timestamp.parse::<u64>() else { return false };
    if ms.abs_diff(qys_proxy::unix_millis()) > 300_000 {
        return false;
    }
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(timestamp.as_bytes());
    mac.update(b".");
    mac.update(body);
    let expected: String = mac.finalize().into_bytes().iter().map(|b| format!("{b:02x}")).collect();
    signature == format!("sha256={expected}")
}

/// `QYS_STATE_KEY` of a forwarding proxy: the tests sign their callback URLs with it.
pub const STATE_KEY: &str = "forwarding-test-state-key-0123456789abcdef";

/// A callback query for `kind` as the proxy hands it to the platform: `query` (its `flow` and
/// `t`) with the `sig` of [`STATE_KEY`] appended.
pub fn signed_query(kind: &str, query: &str) -> String {
    let param = |name: &str| form_urlencoded::parse(query.as_bytes()).find(|(k, _)| k == name).map(|(_, v)| v.into_owned());
    let key = qys_proxy::token::TokenKey::new(STATE_KEY.as_bytes());
    let sig = key.callback_sig(kind, &param("flow").unwrap_or_default(), &param("t").unwrap_or_default());
    format!("{query}&sig={sig}")
}

/// The environment of a proxy storing in `db`, listening on `listen`, forwarding to `receiver`
/// signed with `secret`: no callback rate limit, no confirmation-rate limit (the load tests'
/// thousands of callbacks each ask the platform once; the default 20/s would take minutes),
/// retries from 100 ms up to 800 ms, the token key [`STATE_KEY`].
pub fn forwarding_env<'a>(db: &'a str, listen: &'a str, receiver: &'a str, secret: &'a str) -> Vec<(&'a str, &'a str)> {
    vec![
        ("QYS_DATABASE", db),
        ("QYS_LISTEN", listen),
        ("QYS_SANDBOX_LISTEN", "127.0.0.1:0"),
        ("QYS_CALLBACK_RATE", "0"),
        ("QYS_CONFIRM_RATE", "1000000"),
        ("QYS_STATE_KEY", STATE_KEY),
        ("QYS_FORWARD_URL", receiver),
        ("QYS_FORWARD_SECRET", secret),
        ("QYS_FORWARD_RETRY_BASE_MS", "100"),
        ("QYS_FORWARD_RETRY_CAP_MS", "800"),
        ("QYS_FORWARD_TIMEOUT_MS", "3000"),
        ("QYS_CONNECT_TIMEOUT_MS", "1000"),
        ("QYS_TIMEOUT_MS", "3000"),
    ]
}
