//! `qys-proxy`: the reference integrator proxy of qys-sdk-wasm, and a loopback sandbox of the
//! 契约锁 open platform. See `docs/protocol.md` for the wire protocol.

pub mod bucket;
pub mod cli;
pub mod forward;
pub mod html;
pub mod mask;
pub mod platform;
pub mod protocol;
pub mod proxy;
pub mod sandbox;
pub mod server;
pub mod sign;
pub mod store;
pub mod token;

use std::fmt;

pub use server::{spawn_server, spawn_server_with, ServerLimits};

/// A secret string that never prints: `Debug` and `Display` show `***`.
#[derive(Clone)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret.
    pub fn new(secret: impl Into<String>) -> Self {
        Self(secret.into())
    }

    /// The secret itself, for signing only.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// Milliseconds since the Unix epoch.
pub fn unix_millis() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}
