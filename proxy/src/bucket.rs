//! The token bucket behind the proxy's rate limits (callbacks per source, confirmations per
//! instance): `rate` tokens a second, at most `burst` kept.

use std::time::{Duration, Instant};

/// Tokens left and when they were last counted.
#[derive(Debug, Clone, Copy)]
pub struct TokenBucket {
    tokens: f64,
    at: Instant,
}

impl TokenBucket {
    /// A full bucket of `burst` tokens at `now`.
    pub fn full(burst: f64, now: Instant) -> Self {
        Self { tokens: burst, at: now }
    }

    /// Refills for the time since the last count, then takes one token if there is one.
    pub fn take(&mut self, now: Instant, rate: f64, burst: f64) -> bool {
        self.take_keeping(now, rate, burst, 0.0).is_ok()
    }

    /// [`take`](Self::take), but only if `keep` tokens are left after it; else how long until
    /// they would be, at `rate`.
    pub fn take_keeping(&mut self, now: Instant, rate: f64, burst: f64, keep: f64) -> Result<(), Duration> {
        self.tokens = (self.tokens + now.saturating_duration_since(self.at).as_secs_f64() * rate).min(burst);
        self.at = now;
        if self.tokens >= 1.0 + keep {
            self.tokens -= 1.0;
            return Ok(());
        }
        Err(Duration::from_secs_f64((1.0 + keep - self.tokens) / rate))
    }

    /// Whole seconds (≥ 1) until a token is there again, at `rate`.
    pub fn retry_after(&self, rate: f64) -> u64 {
        ((1.0 - self.tokens) / rate).ceil().max(1.0) as u64
    }
}
