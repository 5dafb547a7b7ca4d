//! The backend's side of a forwarded callback's signature, written independently of the
//! proxy's code: HMAC-SHA256 over `timestamp "." body`, and a timestamp within 5 minutes.
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
