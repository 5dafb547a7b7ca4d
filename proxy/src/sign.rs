//! Request signing of the 契约锁 open platform: the four `x-qys-open-*` headers.

use md5::{Digest, Md5};

/// Header carrying the AppToken.
pub const HEADER_TOKEN: &str = "x-qys-open-accesstoken";
/// Header carrying the Unix time in milliseconds.
pub const HEADER_TIMESTAMP: &str = "x-qys-open-timestamp";
/// Header carrying a single-use UUID.
pub const HEADER_NONCE: &str = "x-qys-open-nonce";
/// Header carrying the lowercase hex MD5 signature.
pub const HEADER_SIGNATURE: &str = "x-qys-open-signature";

/// Lowercase hex MD5(token + secret + timestamp + nonce).
pub fn signature(token: &str, secret: &str, timestamp: &str, nonce: &str) -> String {
    let mut md5 = Md5::new();
    for part in [token, secret, timestamp, nonce] {
        md5.update(part.as_bytes());
    }
    hex(&md5.finalize())
}

/// The four header values of one signed request.
#[derive(Debug, Clone)]
pub struct SignedHeaders {
    /// AppToken.
    pub token: String,
    /// Unix milliseconds, decimal.
    pub timestamp: String,
    /// Fresh UUID v4.
    pub nonce: String,
    /// [`signature`] over the other three and the secret.
    pub signature: String,
}

impl SignedHeaders {
    /// Signs a request made now with a fresh nonce.
    pub fn now(token: &str, secret: &str) -> Self {
        let timestamp = crate::unix_millis().to_string();
        let nonce = uuid::Uuid::new_v4().to_string();
        let signature = signature(token, secret, &timestamp, &nonce);
        Self { token: token.to_owned(), timestamp, nonce, signature }
    }

    /// The headers as (name, value) pairs.
    pub fn pairs(&self) -> [(&'static str, &str); 4] {
        [
            (HEADER_TOKEN, &self.token),
            (HEADER_TIMESTAMP, &self.timestamp),
            (HEADER_NONCE, &self.nonce),
            (HEADER_SIGNATURE, &self.signature),
        ]
    }
}

/// Lowercase hex of bytes.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
