//! Forwarding stored server callbacks to the integrator's backend (issue 9): a transactional
//! outbox drained by one forwarder task per instance.
//!
//! With `QYS_FORWARD_URL` set, the receivers store each well-formed callback together with its
//! outbox entry (one transaction, [`crate::store::CallbackBackend::record`]), then answer the
//! platform. The forwarder ([`spawn`]):
//! 1. claims due entries under a lease ([`crate::store::CallbackBackend::claim_due`]);
//! 2. on an entry's first attempt, asks the platform for the result ([`payload::build`]), within
//!    the instance's `QYS_CONFIRM_RATE`, which it shares with the return page (waiting at most
//!    [`payload::BUDGET_WAIT`], else retried later). The platform's word — a result or a refusal
//!    of the question — is final; no answer (timeout, unreachable, HTTP 5xx or 429, the request
//!    itself refused) is asked again with the entry's backoff, and only once the entry reaches
//!    `QYS_FORWARD_GIVE_UP_HOURS` does the body say `"verified": false` and why; the budget
//!    spent is no one's failure: the entry waits [`BUSY_DELAY`], whatever its age, attempts
//!    unchanged;
//! 3. renews the lease if this claim still holds the entry, else leaves it to its new holder —
//!    another instance, or this one claiming it again after the lease ran out
//!    ([`crate::store::CallbackBackend::renew_lease`]), fixing the forwarded body on the first
//!    attempt: every later attempt sends the same bytes under the same `Idempotency-Key`;
//!    then POSTs it, signed ([`signature`]), within `QYS_FORWARD_TIMEOUT_MS`;
//! 4. records the outcome: 2xx → `delivered`; else `pending` again at now + [`backoff`], or, once
//!    the entry is older than `QYS_FORWARD_GIVE_UP_HOURS`, `dead`.
//!
//! Nothing is lost on `kill -9`: an entry exists from the moment the platform got `{"code":0}`,
//! and leaves `pending` only once the backend answered 2xx; an attempt cut short leaves it leased
//! until the lease runs out, then it is retried. So delivery is at least once; duplicates carry
//! the same `Idempotency-Key` and body.

pub mod admin;
pub mod payload;
pub mod settings;

use std::sync::Arc;
use std::time::Duration;

use hmac::{Hmac, Mac};
use sha2::Sha256;
use tokio::task::JoinSet;

use crate::platform::Platform;
use crate::token::TokenKey;
use payload::NotAsked;
use crate::store::{now, CallbackBackend, CallbackStore, OutboxEntry, StoreError};

pub use settings::{ForwardArgs, ForwardSettings};

/// Longest sleep between looks at the outbox (other instances' entries, expired leases, replays
/// from the command line).
pub const POLL: Duration = Duration::from_secs(1);
/// How long an entry waits when the confirmation budget was spent ([`payload::BUDGET_WAIT`]
/// already passed): about the budget's refill of a token at the lowest rate allowed.
pub const BUSY_DELAY: Duration = Duration::from_secs(1);
/// Longest part of a failed answer's body kept in `last_error`.
const ERROR_BODY_MAX: usize = 200;

/// Header: Unix milliseconds when the request was signed.
pub const TIMESTAMP_HEADER: &str = "X-Qys-Timestamp";
/// Header: `sha256=<hex HMAC-SHA256(secret, timestamp + "." + body)>`.
pub const SIGNATURE_HEADER: &str = "X-Qys-Signature";
/// Header: the callback's dedup key, the same on every attempt.
pub const IDEMPOTENCY_HEADER: &str = "Idempotency-Key";
/// Header: which attempt this is (1, 2, …), for the backend's logs.
pub const ATTEMPT_HEADER: &str = "X-Qys-Attempt";

/// `sha256=` + hex HMAC-SHA256 of `timestamp + "." + body` under `secret`.
pub fn signature(secret: &str, timestamp: &str, body: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key length");
    mac.update(timestamp.as_bytes());
    mac.update(b".");
    mac.update(body.as_bytes());
    format!("sha256={}", crate::sign::hex(&mac.finalize().into_bytes()))
}

/// Delay before the retry that follows failed attempt number `failed` (1 = the first):
/// `min(cap, base · 2^(failed-1))`, then ± 25 % jitter (`jitter` in [0, 1) picks where), never
/// above `cap`. A `Retry-After` (seconds) from the backend raises it, still capped.
pub fn backoff(base: Duration, cap: Duration, failed: i64, jitter: f64, retry_after: Option<Duration>) -> Duration {
    let exp = u32::try_from(failed.saturating_sub(1).clamp(0, 40)).unwrap_or(40);
    let plain = base.saturating_mul(2u32.saturating_pow(exp.min(31))).min(cap);
    let factor = 0.75 + 0.5 * jitter.clamp(0.0, 1.0);
    let jittered = plain.mul_f64(factor).min(cap);
    retry_after.map_or(jittered, |after| jittered.max(after.min(cap)))
}

/// A uniform number in [0, 1).
fn jitter() -> f64 {
    let mut bytes = [0u8; 4];
    if getrandom::getrandom(&mut bytes).is_err() {
        return 0.5;
    }
    f64::from(u32::from_le_bytes(bytes)) / (f64::from(u32::MAX) + 1.0)
}

struct Ctx {
    settings: ForwardSettings,
    backend: Arc<dyn CallbackBackend>,
    platform: Platform,
    /// Opens the flow tokens in the proxy's own callback URLs.
    key: TokenKey,
    http: reqwest::Client,
    owner: String,
}

impl Ctx {
    fn lease_ms(&self) -> i64 {
        i64::try_from(self.settings.lease.as_millis()).unwrap_or(i64::MAX)
    }
}

/// Starts this instance's forwarder: it runs until the runtime stops. `store` must be the
/// handle the receivers record through (it wakes the forwarder at once on a new entry).
pub fn spawn(settings: ForwardSettings, store: CallbackStore, platform: Platform, key: TokenKey) -> tokio::task::JoinHandle<()> {
    let http = reqwest::Client::builder()
        .timeout(settings.timeout)
        .connect_timeout(settings.timeout)
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("qys-proxy/", env!("CARGO_PKG_VERSION"), " (callback forwarder)"))
        .build()
        .expect("TLS backend initialises");
    let owner = format!("{}-{}", std::process::id(), uuid::Uuid::new_v4().simple());
    let ctx = Arc::new(Ctx { settings, backend: store.backend(), platform, key, http, owner });
    tracing::info!(
        url = %ctx.settings.url,
        owner = %ctx.owner,
        concurrency = ctx.settings.concurrency,
        "forwarding server callbacks"
    );
    tokio::spawn(run(ctx, store))
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, StoreError> {
    tokio::task::spawn_blocking(f).await.map_err(|e| StoreError::new(e.to_string()))?
}

async fn run(ctx: Arc<Ctx>, store: CallbackStore) {
    let mut in_flight: JoinSet<()> = JoinSet::new();
    let lease_ms = ctx.lease_ms();
    loop {
        while let Some(done) = in_flight.try_join_next() {
            if let Err(e) = done {
                tracing::error!(error = %e, "a forwarding attempt panicked");
            }
        }
        let free = ctx.settings.concurrency.saturating_sub(in_flight.len());
        let mut full_batch = false;
        if free > 0 {
            let c = ctx.clone();
            match blocking(move || c.backend.claim_due(now(), free, &c.owner, lease_ms)).await {
                Ok(entries) => {
                    full_batch = entries.len() == free;
                    for entry in entries {
                        in_flight.spawn(attempt(ctx.clone(), entry));
                    }
                }
                Err(e) => tracing::error!(error = %e, "cannot claim callbacks to forward"),
            }
        }
        if in_flight.len() >= ctx.settings.concurrency {
            // Claim again once a quarter of the slots are free: one claim transaction per few
            // entries rather than per entry.
            while in_flight.len() > ctx.settings.concurrency - ctx.settings.concurrency.div_ceil(4) {
                in_flight.join_next().await;
            }
            continue;
        }
        if full_batch {
            continue;
        }
        let c = ctx.clone();
        let wait = match blocking(move || c.backend.next_due()).await {
            Ok(Some(at)) => Duration::from_millis(u64::try_from(at.saturating_sub(now())).unwrap_or(0)).min(POLL),
            Ok(None) | Err(_) => POLL,
        };
        if wait.is_zero() && in_flight.is_empty() {
            continue;
        }
        tokio::select! {
            Some(_) = in_flight.join_next(), if !in_flight.is_empty() => {}
            () = store.enqueued() => {}
            () = tokio::time::sleep(wait.max(Duration::from_millis(5))) => {}
        }
    }
}

/// One attempt at one claimed entry; every outcome is recorded (or left to the lease).
async fn attempt(ctx: Arc<Ctx>, entry: OutboxEntry) {
    let id = entry.id;
    let body = match entry.payload.clone() {
        Some(payload) => payload,
        None => match payload::build(&ctx.platform, &ctx.key, &entry).await {
            Ok(body) => body,
            // Only this instance's own budget was spent: no failure of anyone's, so never final
            // and never parked, whatever the entry's age (a backlog after forwarding was off for
            // longer than the give-up age must still be confirmed).
            Err(NotAsked::Busy) => {
                deferred(&ctx, &entry, NotAsked::Busy.why()).await;
                return;
            }
            // An outage of hours must not turn real successes into unverified ones: ask again
            // until the give-up age, then let the backend hear, unverified.
            Err(not_asked) if age(&entry, now()) >= ctx.settings.give_up => payload::unconfirmed(&entry, &not_asked.why()),
            Err(not_asked) => {
                failed(&ctx, &entry, format!("confirmation: the platform could not be asked: {}", not_asked.why()), None).await;
                return;
            }
        },
    };
    // The confirmation (or a stall) may have outlasted the lease, and another instance, or this
    // one's run loop, may have claimed the entry since: POST only while this claim still holds
    // it, under a fresh lease.
    let (c, claim) = (ctx.clone(), entry.claim);
    let payload = match blocking(move || c.backend.renew_lease(id, &c.owner, claim, now(), c.lease_ms(), &body)).await {
        Ok(Some(fixed)) => fixed,
        Ok(None) => {
            tracing::warn!(id, claim, "not forwarded by this attempt: the entry is no longer its own (claimed again after the lease ran out, delivered, replayed or abandoned)");
            return;
        }
        Err(e) => {
            // Leased still: retried when the lease runs out.
            tracing::error!(id, error = %e, "cannot renew the lease before forwarding");
            return;
        }
    };
    let timestamp = crate::unix_millis().to_string();
    let signature = signature(ctx.settings.secret.expose(), &timestamp, &payload);
    let sent = ctx
        .http
        .post(&ctx.settings.url)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .header(TIMESTAMP_HEADER, &timestamp)
        .header(SIGNATURE_HEADER, signature)
        .header(IDEMPOTENCY_HEADER, &entry.dedup_key)
        .header(ATTEMPT_HEADER, (entry.attempts + 1).to_string())
        .body(payload)
        .send()
        .await;
    let outcome = match sent {
        Ok(response) if response.status().is_success() => {
            // Read (and drop) the answer so the connection can be reused.
            let _ = read_cut(response).await;
            Ok(())
        }
        Ok(response) => {
            let status = response.status();
            let retry_after = response
                .headers()
                .get(reqwest::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.trim().parse::<u64>().ok())
                .map(Duration::from_secs);
            let text = read_cut(response).await;
            Err((format!("HTTP {}: {}", status.as_u16(), text), retry_after))
        }
        Err(e) if e.is_timeout() => Err((format!("no answer within {} ms", ctx.settings.timeout.as_millis()), None)),
        Err(e) => Err((format!("transport: {}", e.without_url()), None)),
    };
    match outcome {
        Ok(()) => {
            let c = ctx.clone();
            match blocking(move || c.backend.mark_delivered(id, now())).await {
                Ok(true) => tracing::debug!(id, attempts = entry.attempts + 1, "server callback forwarded"),
                Ok(false) => tracing::warn!(id, "server callback forwarded, but its entry was finished already (delivered or parked by another attempt)"),
                // Delivered but not recorded: it will be delivered again (same key) after the lease.
                Err(e) => tracing::error!(id, error = %e, "forwarded, but the delivery could not be recorded"),
            }
        }
        Err((error, retry_after)) => failed(&ctx, &entry, error, retry_after).await,
    }
}

/// Records a failed attempt: retried after [`backoff`], or parked as dead once older than the
/// give-up age.
async fn failed(ctx: &Arc<Ctx>, entry: &OutboxEntry, error: String, retry_after: Option<Duration>) {
    let (id, claim, at) = (entry.id, entry.claim, now());
    let c = ctx.clone();
    if age(entry, at) >= ctx.settings.give_up {
        tracing::error!(id, attempts = entry.attempts + 1, error = %error, "server callback not forwarded; parked as dead");
        let owner = c.owner.clone();
        if let Err(e) = blocking(move || c.backend.park_dead(id, &owner, claim, at, &error)).await {
            tracing::error!(id, error = %e, "cannot park a callback as dead");
        }
        return;
    }
    let delay = backoff(ctx.settings.retry_base, ctx.settings.retry_cap, entry.attempts + 1, jitter(), retry_after);
    let next_at = at.saturating_add(i64::try_from(delay.as_millis()).unwrap_or(i64::MAX));
    tracing::warn!(id, attempts = entry.attempts + 1, retry_in_ms = delay.as_millis() as u64, error = %error, "server callback not forwarded yet");
    let owner = c.owner.clone();
    if let Err(e) = blocking(move || c.backend.mark_failed(id, &owner, claim, next_at, &error)).await {
        tracing::error!(id, error = %e, "cannot record a failed forwarding attempt");
    }
}

/// Puts back an entry whose confirmation found the budget spent: due again after [`BUSY_DELAY`]
/// (± 25 %, so a backlog's entries do not all return at once), its attempts unchanged, so
/// neither the backoff nor parking counts it.
async fn deferred(ctx: &Arc<Ctx>, entry: &OutboxEntry, why: String) {
    let (id, claim, c) = (entry.id, entry.claim, ctx.clone());
    let next_at = now().saturating_add(i64::try_from(BUSY_DELAY.mul_f64(0.75 + 0.5 * jitter()).as_millis()).unwrap_or(i64::MAX));
    tracing::debug!(id, "server callback waits for this instance's confirmation budget");
    let owner = c.owner.clone();
    if let Err(e) = blocking(move || c.backend.defer(id, &owner, claim, next_at, &format!("confirmation: {why}"))).await {
        tracing::error!(id, error = %e, "cannot put back a callback waiting for the confirmation budget");
    }
}

/// How long `entry` has been queued at `at` (the give-up age counts from its (re)enqueueing).
fn age(entry: &OutboxEntry, at: i64) -> Duration {
    Duration::from_millis(u64::try_from(at.saturating_sub(entry.enqueued_at)).unwrap_or(0))
}

/// The first [`ERROR_BODY_MAX`] characters of an answer's body, control characters replaced.
async fn read_cut(mut response: reqwest::Response) -> String {
    let mut bytes = Vec::new();
    while let Ok(Some(chunk)) = response.chunk().await {
        bytes.extend_from_slice(&chunk);
        if bytes.len() >= 4 * ERROR_BODY_MAX {
            break;
        }
    }
    String::from_utf8_lossy(&bytes)
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(ERROR_BODY_MAX)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signature_is_hmac_sha256_of_timestamp_dot_body() {
        // Computed independently: Python's hmac.new(key, b'1764146400000.{"verified":true}', sha256).
        let sig = signature("0123456789abcdef0123456789abcdef", "1764146400000", "{\"verified\":true}");
        assert_eq!(sig, "sha256=698adbf10e8e67f25519935666190b9fb402ae327c78eb925e5c315988252d2e");
        assert_ne!(sig, signature("0123456789abcdef0123456789abcdef", "1764146400001", "{\"verified\":true}"));
    }

    #[test]
    fn backoff_doubles_from_the_base_within_jitter_and_stops_at_the_cap() {
        let (base, cap) = (Duration::from_millis(2_000), Duration::from_millis(600_000));
        assert_eq!(backoff(base, cap, 1, 0.5, None), Duration::from_millis(2_000));
        assert_eq!(backoff(base, cap, 2, 0.5, None), Duration::from_millis(4_000));
        assert_eq!(backoff(base, cap, 1, 0.0, None), Duration::from_millis(1_500));
        assert_eq!(backoff(base, cap, 1, 0.999_999, None).as_millis(), 2_499);
        assert_eq!(backoff(base, cap, 9, 0.5, None), Duration::from_millis(512_000));
        assert_eq!(backoff(base, cap, 10, 0.5, None), cap);
        assert_eq!(backoff(base, cap, 10, 0.99, None), cap, "jitter never exceeds the cap");
        assert_eq!(backoff(base, cap, 1_000_000, 0.0, None), Duration::from_millis(450_000));
        assert_eq!(backoff(base, cap, 1, 0.5, Some(Duration::from_secs(30))), Duration::from_secs(30));
        assert_eq!(backoff(base, cap, 1, 0.5, Some(Duration::from_secs(86_400))), cap);
    }
}
