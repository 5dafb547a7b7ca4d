//! The token bucket behind the proxy's rate limits (callbacks and SDK requests per source,
//! confirmations and flow starts per instance): `rate` tokens a second, at most `burst` kept.

use std::sync::Mutex;
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
        Self::holding(burst, now)
    }

    /// A bucket of `tokens` at `now` (it fills up to whatever burst [`take`](Self::take) is given).
    pub fn holding(tokens: f64, now: Instant) -> Self {
        Self { tokens, at: now }
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

    /// Whether the bucket has refilled to `burst` by `now`, at `rate`.
    pub fn full_at(&self, now: Instant, rate: f64, burst: f64) -> bool {
        self.tokens + now.saturating_duration_since(self.at).as_secs_f64() * rate >= burst
    }

    /// Tokens at the last count, without the refill since.
    pub fn held(&self) -> f64 {
        self.tokens
    }

    /// Whole seconds (≥ 1) until a token is there again, at `rate`.
    pub fn retry_after(&self, rate: f64) -> u64 {
        ((1.0 - self.tokens) / rate).ceil().max(1.0) as u64
    }
}

/// A ceiling one instance keeps whoever asks (`QYS_FLOW_START_RATE`): `per_second` tokens a
/// second, bursts as large.
pub struct Ceiling {
    rate: f64,
    state: Mutex<CeilingState>,
}

struct CeilingState {
    bucket: TokenBucket,
    /// Refusals since the last report.
    refused: u64,
    reported_at: Option<Instant>,
}

/// A refusal of [`Ceiling::take`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Spent {
    /// Whole seconds (≥ 1) until there is a token again, for `Retry-After`.
    pub retry_after: u64,
    /// At most once a second: the refusals since the last report, this one included (for the log:
    /// a flood of refusals must not flood it too).
    pub report: Option<u64>,
}

impl Ceiling {
    /// Full, `per_second` (≥ 1) tokens.
    pub fn new(per_second: u32) -> Self {
        let rate = f64::from(per_second.max(1));
        let state = CeilingState { bucket: TokenBucket::full(rate, Instant::now()), refused: 0, reported_at: None };
        Self { rate, state: Mutex::new(state) }
    }

    /// One token, if there is one.
    pub fn take(&self) -> Result<(), Spent> {
        self.take_at(Instant::now())
    }

    fn take_at(&self, now: Instant) -> Result<(), Spent> {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if state.bucket.take(now, self.rate, self.rate) {
            return Ok(());
        }
        state.refused += 1;
        let due = state.reported_at.is_none_or(|at| now.saturating_duration_since(at) >= Duration::from_secs(1));
        let report = due.then(|| {
            state.reported_at = Some(now);
            std::mem::take(&mut state.refused)
        });
        Err(Spent { retry_after: state.bucket.retry_after(self.rate), report })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ceiling_gives_its_burst_then_its_rate_and_reports_refusals_once_a_second() {
        let ceiling = Ceiling::new(4);
        let t0 = Instant::now();
        for _ in 0..4 {
            assert_eq!(ceiling.take_at(t0), Ok(()));
        }
        assert_eq!(ceiling.take_at(t0), Err(Spent { retry_after: 1, report: Some(1) }));
        assert_eq!(ceiling.take_at(t0), Err(Spent { retry_after: 1, report: None }), "reported once a second");
        let later = t0 + Duration::from_millis(250);
        assert_eq!(ceiling.take_at(later), Ok(()), "one token after 1/rate");
        assert!(ceiling.take_at(later).is_err());
        let second = t0 + Duration::from_secs(1);
        assert_eq!(ceiling.take_at(second), Ok(()));
        let minute = t0 + Duration::from_secs(60);
        for _ in 0..4 {
            assert_eq!(ceiling.take_at(minute), Ok(()), "refilled to the burst");
        }
        assert_eq!(ceiling.take_at(minute), Err(Spent { retry_after: 1, report: Some(3) }), "refusals since the last report");
    }
}
