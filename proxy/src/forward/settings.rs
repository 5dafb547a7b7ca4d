//! `QYS_FORWARD_*`: where callbacks are forwarded and how hard the forwarder tries.

use std::time::Duration;

use super::payload::BUDGET_WAIT;
use crate::cli::{check_base_url, Cli};
use crate::Secret;

/// Shortest `QYS_FORWARD_SECRET`.
pub const MIN_SECRET_LEN: usize = 32;

/// Forwarding settings, flattened into [`Cli`].
#[derive(Debug, Default, clap::Args)]
pub struct ForwardArgs {
    /// The integrator's backend: every well-formed server callback is confirmed with the platform
    /// and POSTed there, signed, until it answers 2xx. Unset: callbacks are only stored.
    #[arg(long, env = "QYS_FORWARD_URL", global = true)]
    pub forward_url: Option<String>,
    /// HMAC-SHA256 key of the forwarded requests' X-Qys-Signature (at least 32 characters);
    /// required with QYS_FORWARD_URL.
    #[arg(long, env = "QYS_FORWARD_SECRET", hide_env_values = true, global = true)]
    pub forward_secret: Option<String>,
    /// First retry delay in milliseconds; doubles per failed attempt (± 25 % jitter).
    #[arg(long, env = "QYS_FORWARD_RETRY_BASE_MS", default_value_t = 2_000, global = true)]
    pub forward_retry_base_ms: u64,
    /// Longest retry delay in milliseconds.
    #[arg(long, env = "QYS_FORWARD_RETRY_CAP_MS", default_value_t = 600_000, global = true)]
    pub forward_retry_cap_ms: u64,
    /// Hours after which an entry still failing is parked as dead (see `qys-proxy callbacks
    /// list --dead`, `replay --dead`); fractions allowed.
    #[arg(long, env = "QYS_FORWARD_GIVE_UP_HOURS", default_value_t = 72.0, global = true)]
    pub forward_give_up_hours: f64,
    /// Milliseconds the backend has to answer one forwarded request (connect included).
    #[arg(long, env = "QYS_FORWARD_TIMEOUT_MS", default_value_t = 10_000, global = true)]
    pub forward_timeout_ms: u64,
    /// Forwarded requests in flight at once, per instance.
    #[arg(long, env = "QYS_FORWARD_CONCURRENCY", default_value_t = 16, global = true)]
    pub forward_concurrency: usize,
}

/// Checked forwarding settings.
#[derive(Debug, Clone)]
pub struct ForwardSettings {
    /// The backend's URL.
    pub url: String,
    /// The signing key.
    pub secret: Secret,
    /// First retry delay.
    pub retry_base: Duration,
    /// Longest retry delay.
    pub retry_cap: Duration,
    /// Age (from enqueueing) after which a failing entry is parked as dead.
    pub give_up: Duration,
    /// Per-request timeout towards the backend.
    pub timeout: Duration,
    /// Requests in flight at once.
    pub concurrency: usize,
    /// How long a claimed entry stays leased to this instance: the wait for the confirmation
    /// budget, one confirmation call, one forwarded request and a margin; renewed right before
    /// the POST. An instance killed mid-attempt holds its entries this long; then any instance
    /// (itself restarted, or another) retries them.
    pub lease: Duration,
}

impl ForwardSettings {
    /// Settings for `url` and `secret` with the defaults (for tests and benchmarks).
    pub fn new(url: impl Into<String>, secret: Secret) -> Self {
        Self {
            url: url.into(),
            secret,
            retry_base: Duration::from_millis(2_000),
            retry_cap: Duration::from_millis(600_000),
            give_up: Duration::from_secs(72 * 3600),
            timeout: Duration::from_millis(10_000),
            concurrency: 16,
            lease: BUDGET_WAIT + Duration::from_millis(10_000 + 15_000 + LEASE_MARGIN_MS),
        }
    }
}

/// Added to the budget wait, the confirmation and forwarding timeouts to make the lease.
pub const LEASE_MARGIN_MS: u64 = 5_000;

impl Cli {
    /// The forwarding settings: `None` without `QYS_FORWARD_URL`.
    pub fn forward_settings(&self) -> Result<Option<ForwardSettings>, String> {
        let f = &self.forward;
        let Some(url) = f.forward_url.as_deref().filter(|u| !u.trim().is_empty()) else {
            return Ok(None);
        };
        let url = check_base_url("QYS_FORWARD_URL", url.trim())?;
        let secret = match f.forward_secret.as_deref() {
            None | Some("") => return Err("QYS_FORWARD_SECRET is required with QYS_FORWARD_URL".into()),
            Some(s) if s.chars().count() < MIN_SECRET_LEN => {
                return Err(format!("QYS_FORWARD_SECRET must be at least {MIN_SECRET_LEN} characters"))
            }
            Some(s) => Secret::new(s),
        };
        if f.forward_retry_base_ms == 0 || f.forward_retry_cap_ms < f.forward_retry_base_ms {
            return Err("QYS_FORWARD_RETRY_BASE_MS must be > 0 and QYS_FORWARD_RETRY_CAP_MS at least as large".into());
        }
        if !(f.forward_give_up_hours.is_finite() && f.forward_give_up_hours > 0.0 && f.forward_give_up_hours <= 24.0 * 365.0)
        {
            return Err("QYS_FORWARD_GIVE_UP_HOURS must be greater than 0 and at most 8760".into());
        }
        if f.forward_timeout_ms == 0 {
            return Err("QYS_FORWARD_TIMEOUT_MS must be greater than 0".into());
        }
        if !(1..=1024).contains(&f.forward_concurrency) {
            return Err("QYS_FORWARD_CONCURRENCY must be between 1 and 1024".into());
        }
        let lease_ms = u64::try_from(BUDGET_WAIT.as_millis())
            .unwrap_or(u64::MAX)
            .saturating_add(self.connect_timeout_ms)
            .saturating_add(self.timeout_ms)
            .saturating_add(f.forward_timeout_ms)
            .saturating_add(LEASE_MARGIN_MS);
        Ok(Some(ForwardSettings {
            url,
            secret,
            retry_base: Duration::from_millis(f.forward_retry_base_ms),
            retry_cap: Duration::from_millis(f.forward_retry_cap_ms),
            give_up: Duration::from_secs_f64(f.forward_give_up_hours * 3600.0),
            timeout: Duration::from_millis(f.forward_timeout_ms),
            concurrency: f.forward_concurrency,
            lease: Duration::from_millis(lease_ms),
        }))
    }
}
