//! Per-source rate limits: a token bucket per peer address, in memory, for at most
//! [`MAX_SOURCES`] sources. A new or forgotten source starts with the quota's `fresh` tokens (at
//! most the burst) and fills up to the burst at the rate: the callback receivers' start full
//! (forgetting only ever loosens their limit, and never refuses the platform's retries), the SDK
//! endpoint's with [`FRESH_SDK_TOKENS`], so an address that is new, or rotated to, is not worth a
//! whole burst of platform calls. A TCP peer on loopback, charged as itself, starts full: only
//! someone on the host can rotate through 127.0.0.0/8 (not so for an address a header names).
//!
//! When the table is full, a new source takes the place of one of the [`EVICT_SCAN`] least
//! recently seen that loses little by it: any, when sources start full; else one whose bucket has
//! refilled to the burst (idle), else one left with no more than the fresh tokens at its last
//! request (rotated to and spent, so rotating addresses push each other out). Only a source
//! between the two, a busy office NAT, is kept: forgetting it would restart it small. If none may
//! go, new sources share one overflow bucket (the same rate and burst) until one may.
//!
//! A source is an IPv4 address, or an IPv6 /64 (one host usually holds a whole /64); an
//! IPv4-mapped IPv6 address counts as its IPv4 address, and so does one of NAT64's well-known
//! prefix `64:ff9b::/96` (behind a NAT64 or SIIT gateway every IPv4 client is in that one /64).
//! In the local-use range `64:ff9b:1::/48` the whole address is the source: the operator's prefix
//! may be any length from /48 to /96, but whatever it is, the address is that prefix and one IPv4
//! address. An unknown peer (`None`) is one shared source.
//!
//! The callback receivers' limit lives on the store; the SDK endpoint's (`QYS_SDK_RATE`) is a
//! second [`SourceQuota`] in the proxy.

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::bucket::TokenBucket;

/// Default sustained deliveries per second from one source.
pub const DEFAULT_PER_SECOND: f64 = 5.0;
/// Default bucket size: deliveries one source may send at once.
pub const DEFAULT_BURST: u32 = 100;
/// Smallest bucket: the platform's four tries of one callback always fit, even with no refill.
pub const MIN_BURST: u32 = 4;
/// Most sources tracked at once.
pub const MAX_SOURCES: usize = 10_000;
/// Tokens a new or forgotten source starts with under the SDK endpoint's limit: a few flows
/// (a start, a return page and an `outcome` each) at once; the rest of the burst comes at the rate.
pub const FRESH_SDK_TOKENS: u32 = 10;
/// A limited source is reported (logged) at most this often.
pub const REPORT_EVERY: Duration = Duration::from_secs(60);
/// Least recently seen sources looked at for one to forget when the table is full: a bounded
/// cost per new source under the lock, however many arrive.
const EVICT_SCAN: usize = 64;

/// Deliveries allowed per source: `burst` at once, then `per_second` sustained.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateLimit {
    /// Tokens added per second; 0 turns the limit off.
    pub per_second: f64,
    /// Bucket size (≥ [`MIN_BURST`] unless off).
    pub burst: u32,
}

impl Default for RateLimit {
    fn default() -> Self {
        Self { per_second: DEFAULT_PER_SECOND, burst: DEFAULT_BURST }
    }
}

impl RateLimit {
    /// No limit.
    pub const OFF: Self = Self { per_second: 0.0, burst: 0 };

    /// A checked limit; `per_second` 0 is [`Self::OFF`]. `Err` says what is wrong.
    pub fn new(per_second: f64, burst: u32) -> Result<Self, String> {
        if !per_second.is_finite() || per_second < 0.0 {
            return Err(format!("the callback rate {per_second} must be a number ≥ 0 (0: no limit)"));
        }
        if per_second == 0.0 {
            return Ok(Self::OFF);
        }
        if burst < MIN_BURST {
            return Err(format!(
                "the callback burst {burst} must be at least {MIN_BURST} (the platform's tries of one callback)"
            ));
        }
        Ok(Self { per_second, burst })
    }

    /// Whether the limit is off.
    pub fn is_off(&self) -> bool {
        self.per_second <= 0.0
    }
}

/// A delivery refused because its source is over the limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refused {
    /// Whole seconds until the source has a token again (≥ 1), for `Retry-After`.
    pub retry_after: u64,
    /// At most once per [`REPORT_EVERY`] per source: how many of its deliveries were refused
    /// since the last report, this one included (for the log).
    pub report: Option<u64>,
}

type Source = Option<IpAddr>;

/// The buckets of the sources seen recently.
pub(crate) struct SourceQuota {
    limit: RateLimit,
    /// Tokens of a new or forgotten source's bucket (see the module documentation).
    fresh: u32,
    cap: usize,
    sources: Mutex<Sources>,
}

#[derive(Default)]
struct Sources {
    buckets: HashMap<Source, Bucket>,
    /// Last use → source, oldest first.
    by_use: BTreeMap<u64, Source>,
    clock: u64,
    /// Shared by new sources while the table is full and none of its sources may be forgotten.
    overflow: Option<Bucket>,
    /// When the overflow bucket's use was last logged.
    overflow_reported_at: Option<Instant>,
}

struct Bucket {
    tokens: TokenBucket,
    used: u64,
    refused: u64,
    reported_at: Option<Instant>,
}

impl Bucket {
    fn new(tokens: f64, now: Instant) -> Self {
        Self { tokens: TokenBucket::holding(tokens, now), used: 0, refused: 0, reported_at: None }
    }
}

/// NAT64's well-known prefix `64:ff9b::/96` (RFC 6052) and the local-use `64:ff9b:1::/48`
/// (RFC 8215), as (network, prefix length).
const NAT64_WELL_KNOWN: (u128, u32) = (0x0064_ff9b << 96, 96);
const NAT64_LOCAL_USE: (u128, u32) = (0x0064_ff9b_0001 << 80, 48);

/// The source a peer address is charged to (see the module documentation).
fn source_of(ip: Option<IpAddr>) -> Source {
    let within = |bits: u128, (network, len): (u128, u32)| bits >> (128 - len) == network >> (128 - len);
    match ip? {
        IpAddr::V4(v4) => Some(IpAddr::V4(v4)),
        IpAddr::V6(v6) => {
            let bits = u128::from(v6);
            Some(match v6.to_ipv4_mapped() {
                Some(v4) => IpAddr::V4(v4),
                None if within(bits, NAT64_WELL_KNOWN) => IpAddr::V4(Ipv4Addr::from(bits as u32)),
                None if within(bits, NAT64_LOCAL_USE) => IpAddr::V6(v6),
                None => IpAddr::V6(Ipv6Addr::from(bits & !((1u128 << 64) - 1))),
            })
        }
    }
}

impl SourceQuota {
    /// Buckets of `limit`; a new or forgotten source starts with `fresh` tokens (at most the
    /// burst; a `local` source — the TCP peer itself on loopback — with the burst).
    pub(crate) fn new(limit: RateLimit, fresh: u32) -> Self {
        Self::with_cap(limit, fresh, MAX_SOURCES)
    }

    fn with_cap(limit: RateLimit, fresh: u32, cap: usize) -> Self {
        Self { limit, fresh, cap: cap.max(1), sources: Mutex::new(Sources::default()) }
    }

    pub(super) fn limit(&self) -> RateLimit {
        self.limit
    }

    /// Charges one request to `ip`'s source; `local`: `ip` is the TCP peer itself, on loopback,
    /// so a new bucket starts full.
    pub(crate) fn admit(&self, ip: Option<IpAddr>, local: bool) -> Result<(), Refused> {
        self.admit_at(ip, local, Instant::now())
    }

    fn admit_at(&self, ip: Option<IpAddr>, local: bool, now: Instant) -> Result<(), Refused> {
        if self.limit.is_off() {
            return Ok(());
        }
        let (rate, burst) = (self.limit.per_second, f64::from(self.limit.burst));
        let source = source_of(ip);
        let mut guard = self.sources.lock().unwrap_or_else(|e| e.into_inner());
        let sources = &mut *guard;
        sources.clock += 1;
        let tick = sources.clock;
        let fresh = f64::from(self.fresh).min(burst);
        let bucket = if sources.buckets.contains_key(&source) || self.make_room(sources, now) {
            let Sources { buckets, by_use, .. } = sources;
            let bucket = buckets.entry(source).or_insert_with(|| Bucket::new(if local { burst } else { fresh }, now));
            by_use.remove(&bucket.used);
            by_use.insert(tick, source);
            bucket.used = tick;
            bucket
        } else {
            if sources.overflow_reported_at.is_none_or(|at| now.saturating_duration_since(at) >= REPORT_EVERY) {
                sources.overflow_reported_at = Some(now);
                tracing::warn!(
                    tracked = sources.buckets.len(),
                    "the least recently seen sources are all busy (more than their fresh tokens, not refilled): new \
                     sources share one bucket until one of them may be forgotten"
                );
            }
            sources.overflow.get_or_insert_with(|| Bucket::new(fresh, now))
        };
        if bucket.tokens.take(now, rate, burst) {
            return Ok(());
        }
        bucket.refused += 1;
        let due = bucket.reported_at.is_none_or(|at| now.saturating_duration_since(at) >= REPORT_EVERY);
        let report = due.then(|| {
            bucket.reported_at = Some(now);
            std::mem::take(&mut bucket.refused)
        });
        let retry_after = bucket.tokens.retry_after(rate);
        Err(Refused { retry_after, report })
    }

    /// Whether a new source may be tracked, forgetting one of the [`EVICT_SCAN`] least recently
    /// seen if the table is full: any of them when a forgotten source comes back full, else the
    /// first whose bucket has refilled to the burst, else the first that held no more than the
    /// fresh tokens after its last request (see the module documentation). As held then, not
    /// refilled since: a rotated-to address refills past them within seconds, and would be kept.
    fn make_room(&self, sources: &mut Sources, now: Instant) -> bool {
        if sources.buckets.len() < self.cap {
            return true;
        }
        let (rate, burst, fresh) = (self.limit.per_second, f64::from(self.limit.burst), f64::from(self.fresh));
        let comes_back_full = self.fresh >= self.limit.burst;
        let Sources { buckets, by_use, .. } = sources;
        let first = |may_go: &dyn Fn(&Bucket) -> bool| {
            let mut oldest = by_use.iter().take(EVICT_SCAN);
            oldest.find(|(_, source)| buckets.get(*source).is_none_or(may_go)).map(|(&used, &source)| (used, source))
        };
        let idle = first(&|b| comes_back_full || b.tokens.full_at(now, rate, burst));
        let Some((used, gone)) = idle.or_else(|| first(&|b| b.tokens.held() <= fresh)) else { return false };
        by_use.remove(&used);
        buckets.remove(&gone);
        true
    }

    #[cfg(test)]
    fn tracked(&self) -> usize {
        self.sources.lock().unwrap().buckets.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> Option<IpAddr> {
        Some(s.parse().unwrap())
    }

    #[test]
    fn a_source_gets_its_burst_then_its_rate_and_others_are_unaffected() {
        let quota = SourceQuota::new(RateLimit::new(2.0, 5).unwrap(), 5);
        let t0 = Instant::now();
        for _ in 0..5 {
            assert!(quota.admit_at(ip("192.0.2.1"), false, t0).is_ok());
        }
        let refused = quota.admit_at(ip("192.0.2.1"), false, t0).unwrap_err();
        assert_eq!(refused, Refused { retry_after: 1, report: Some(1) });
        assert_eq!(quota.admit_at(ip("192.0.2.1"), false, t0).unwrap_err().report, None, "reported once a minute");
        assert!(quota.admit_at(ip("192.0.2.2"), false, t0).is_ok(), "another source has its own bucket");
        assert!(quota.admit_at(None, false, t0).is_ok(), "unknown peers share one bucket of their own");
        let later = t0 + Duration::from_millis(500);
        assert!(quota.admit_at(ip("192.0.2.1"), false, later).is_ok(), "one token after 1/rate");
        assert!(quota.admit_at(ip("192.0.2.1"), false, later).is_err());
        let minute = t0 + REPORT_EVERY;
        for _ in 0..5 {
            assert!(quota.admit_at(ip("192.0.2.1"), false, minute).is_ok(), "refilled to the burst, not beyond");
        }
        assert_eq!(quota.admit_at(ip("192.0.2.1"), false, minute).unwrap_err().report, Some(3), "refusals since the last report");
    }

    #[test]
    fn sources_are_addresses_and_ipv6_64s() {
        let quota = SourceQuota::new(RateLimit::new(0.001, 4).unwrap(), 4);
        let t0 = Instant::now();
        for host in ["2001:db8:1:2::1", "2001:db8:1:2::2", "2001:db8:1:2:ffff::9", "2001:db8:1:2::3"] {
            assert!(quota.admit_at(ip(host), false, t0).is_ok());
        }
        assert!(quota.admit_at(ip("2001:db8:1:2::77"), false, t0).is_err(), "one /64 is one source");
        assert!(quota.admit_at(ip("2001:db8:1:3::1"), false, t0).is_ok(), "another /64 is another");
        for _ in 0..4 {
            assert!(quota.admit_at(ip("::ffff:198.51.100.4"), false, t0).is_ok());
        }
        assert!(quota.admit_at(ip("198.51.100.4"), false, t0).is_err(), "IPv4-mapped is the IPv4 address");
    }

    #[test]
    fn memory_is_bounded_and_the_least_recently_seen_source_is_forgotten() {
        let quota = SourceQuota::with_cap(RateLimit::new(0.001, 4).unwrap(), 4, 3);
        let t0 = Instant::now();
        for _ in 0..4 {
            assert!(quota.admit_at(ip("10.0.0.1"), false, t0).is_ok());
        }
        assert!(quota.admit_at(ip("10.0.0.1"), false, t0).is_err());
        for n in 2..=3 {
            assert!(quota.admit_at(ip(&format!("10.0.0.{n}")), false, t0).is_ok());
        }
        assert!(quota.admit_at(ip("10.0.0.1"), false, t0).is_err(), "10.0.0.1 was just used: 10.0.0.2 is the oldest");
        assert!(quota.admit_at(ip("10.0.0.4"), false, t0).is_ok());
        assert_eq!(quota.tracked(), 3);
        assert!(quota.admit_at(ip("10.0.0.1"), false, t0).is_err(), "still tracked");
        for n in 5..=1000 {
            let _ = quota.admit_at(ip(&format!("10.0.{}.{}", n / 256, n % 256)), false, t0);
        }
        assert_eq!(quota.tracked(), 3);
        assert!(quota.admit_at(ip("10.0.0.1"), false, t0).is_ok(), "forgotten: a fresh bucket");
    }

    /// The platform tries a callback at t, t (a retry at once), t + 60 s and t + 60 s. With the
    /// defaults, one platform address sending a spike of 25 callbacks at once, then a new one
    /// every second for ten minutes, every one of them failing until its fourth try, is never
    /// limited.
    #[test]
    fn the_default_limit_never_refuses_the_platforms_retry_pattern() {
        let quota = SourceQuota::new(RateLimit::default(), DEFAULT_BURST);
        let t0 = Instant::now();
        let mut tries: Vec<Duration> = Vec::new();
        let starts = std::iter::repeat_n(0, 25).chain(1..=600);
        for t in starts.map(Duration::from_secs) {
            tries.extend([t, t, t + Duration::from_secs(60), t + Duration::from_secs(60)]);
        }
        tries.sort();
        let platform = ip("203.0.113.10");
        for at in &tries {
            assert!(quota.admit_at(platform, false, t0 + *at).is_ok(), "refused at {at:?}");
        }
        let cold = SourceQuota::new(RateLimit::new(0.0001, MIN_BURST).unwrap(), MIN_BURST);
        for _ in 0..4 {
            assert!(cold.admit_at(platform, false, t0).is_ok(), "the smallest burst holds one callback's four tries");
        }
    }

    /// An address rotated to (a new IPv6 /64, another IPv4 address) or forgotten gets a few
    /// platform calls at once, not the whole burst; the burst comes at the rate.
    #[test]
    fn a_new_or_forgotten_source_starts_small_and_fills_up_to_its_burst() {
        let quota = SourceQuota::with_cap(RateLimit::new(2.0, 300).unwrap(), FRESH_SDK_TOKENS, 2);
        let t0 = Instant::now();
        for host in ["203.0.113.7", "2001:db8:7::1"] {
            for _ in 0..FRESH_SDK_TOKENS {
                assert!(quota.admit_at(ip(host), false, t0).is_ok());
            }
            assert_eq!(quota.admit_at(ip(host), false, t0).unwrap_err().retry_after, 1, "{host}: {FRESH_SDK_TOKENS} at first");
        }
        let full = t0 + Duration::from_secs(150);
        for _ in 0..300 {
            assert!(quota.admit_at(ip("203.0.113.7"), false, full).is_ok(), "filled to the burst at the rate");
        }
        assert!(quota.admit_at(ip("203.0.113.7"), false, full).is_err(), "and no further");
        assert!(quota.admit_at(ip("2001:db8:7::1"), false, full).is_ok());
        let back = full + Duration::from_secs(600);
        assert!(quota.admit_at(ip("198.51.100.1"), false, back).is_ok(), "a third source: 203.0.113.7, idle and full, is forgotten");
        for _ in 0..FRESH_SDK_TOKENS {
            assert!(quota.admit_at(ip("203.0.113.7"), false, back).is_ok());
        }
        assert!(quota.admit_at(ip("203.0.113.7"), false, back).is_err(), "forgotten: small again, not a full bucket");
        let small = SourceQuota::new(RateLimit::new(2.0, 5).unwrap(), FRESH_SDK_TOKENS);
        for _ in 0..5 {
            assert!(small.admit_at(ip("203.0.113.8"), false, t0).is_ok());
        }
        assert!(small.admit_at(ip("203.0.113.8"), false, t0).is_err(), "never more than the burst");
    }

    /// Forgetting a busy source would restart it with its fresh tokens: so a full table forgets an
    /// idle source (refilled) or a spent one (no more than its fresh tokens at its last request:
    /// rotated to), and keeps one in between. Rotating addresses push each other out, so a
    /// newcomer still gets tokens of its own.
    #[test]
    fn a_full_table_forgets_idle_or_spent_sources_and_keeps_busy_ones() {
        let quota = SourceQuota::with_cap(RateLimit::new(1.0, 100).unwrap(), 10, 3);
        let t0 = Instant::now();
        let office = ip("198.51.100.1");
        assert!(quota.admit_at(office, false, t0).is_ok());
        let built = t0 + Duration::from_secs(100);
        for _ in 0..50 {
            assert!(quota.admit_at(office, false, built).is_ok(), "its bucket filled to the burst");
        }
        for n in 0..100 {
            let rotated = ip(&format!("2001:db8:{n}::1"));
            for _ in 0..10 {
                assert!(quota.admit_at(rotated, false, built).is_ok(), "{n}: its own fresh tokens");
            }
            assert!(quota.admit_at(rotated, false, built).is_err(), "{n}: spent");
        }
        assert_eq!(quota.tracked(), 3);
        // Seconds later the rotated-to sources have refilled past 10, but held no more at their
        // last request: still forgotten, and each newcomer gets its own tokens, not a shared 10.
        let later = built + Duration::from_secs(30);
        for newcomer in ["2001:db8:ffff::1", "2001:db8:fffe::1"] {
            for _ in 0..10 {
                assert!(quota.admit_at(ip(newcomer), false, later).is_ok(), "{newcomer} gets its own");
            }
            assert!(quota.admit_at(ip(newcomer), false, later).is_err());
        }
        for _ in 0..80 {
            assert!(quota.admit_at(office, false, later).is_ok(), "the office kept its 50, refilled by 30");
        }
        assert!(quota.admit_at(office, false, later).is_err());

        // An idle source goes before a spent one, even a less recently seen one.
        let quota = SourceQuota::with_cap(RateLimit::new(1.0, 100).unwrap(), 10, 2);
        for _ in 0..10 {
            assert!(quota.admit_at(ip("192.0.2.1"), false, t0).is_ok());
        }
        assert!(quota.admit_at(ip("127.0.0.1"), true, t0 + Duration::from_secs(1)).is_ok(), "a local source: 99 of 100");
        let now = t0 + Duration::from_secs(3);
        assert!(quota.admit_at(ip("192.0.2.3"), false, now).is_ok(), "127.0.0.1, refilled, is forgotten");
        for _ in 0..3 {
            assert!(quota.admit_at(ip("192.0.2.1"), false, now).is_ok());
        }
        assert!(quota.admit_at(ip("192.0.2.1"), false, now).is_err(), "192.0.2.1 kept its bucket: 3 s of refill, not 10");

        // With every source busy, new ones share one overflow bucket.
        let quota = SourceQuota::with_cap(RateLimit::new(1.0, 100).unwrap(), 10, 2);
        for busy in ["198.51.100.1", "198.51.100.2"] {
            assert!(quota.admit_at(ip(busy), false, t0).is_ok());
            for _ in 0..50 {
                assert!(quota.admit_at(ip(busy), false, built).is_ok());
            }
        }
        for n in 0..10 {
            assert!(quota.admit_at(ip(&format!("2001:db8:{n}::1")), false, built).is_ok(), "{n}");
        }
        assert!(quota.admit_at(ip("2001:db8:99::1"), false, built).is_err(), "the shared bucket is spent");
        assert_eq!(quota.tracked(), 2);
        for _ in 0..50 {
            assert!(quota.admit_at(office, false, built).is_ok(), "the busy sources kept their tokens");
        }
    }

    #[test]
    fn nat64_addresses_are_the_ipv4_clients_they_embed() {
        for (nat64, source) in [
            ("64:ff9b::198.51.100.1", "198.51.100.1"),
            ("64:ff9b::c633:6402", "198.51.100.2"),
            ("64:ff9b:1::198.51.100.1", "64:ff9b:1::198.51.100.1"),
            // A /48 local-use prefix (RFC 6052 §2.2): 198.51 in bits 48–63, 100.1 in bits 72–87.
            ("64:ff9b:1:c633:64:100::", "64:ff9b:1:c633:64:100::"),
            ("2001:db8:1:2::198.51.100.1", "2001:db8:1:2::"),
            ("64:ff9b:2::1", "64:ff9b:2::"),
        ] {
            assert_eq!(source_of(ip(nat64)), ip(source), "{nat64}");
        }
        let quota = SourceQuota::new(RateLimit::new(0.001, 4).unwrap(), 4);
        let t0 = Instant::now();
        for client in ["64:ff9b::198.51.100.1", "64:ff9b:1:c633:64:100::"] {
            for _ in 0..4 {
                assert!(quota.admit_at(ip(client), false, t0).is_ok(), "{client}");
            }
        }
        assert!(quota.admit_at(ip("198.51.100.1"), false, t0).is_err(), "the same IPv4 client");
        assert!(quota.admit_at(ip("64:ff9b::198.51.100.3"), false, t0).is_ok(), "another client behind the gateway");
        assert!(quota.admit_at(ip("64:ff9b:1:c633:64:200::"), false, t0).is_ok(), "in the same /64, another client");
    }

    /// Only the TCP peer itself on loopback (`local`) starts full: a 127.x address a header named
    /// may be anyone's choice.
    #[test]
    fn a_local_source_starts_full() {
        let quota = SourceQuota::new(RateLimit::new(0.001, 50).unwrap(), 1);
        let t0 = Instant::now();
        for host in ["127.0.0.1", "::1", "::ffff:127.0.0.2"] {
            for _ in 0..50 {
                assert!(quota.admit_at(ip(host), true, t0).is_ok(), "{host}");
            }
            assert!(quota.admit_at(ip(host), true, t0).is_err(), "{host}");
        }
        for host in ["127.0.0.3", "::ffff:127.0.0.4", "10.0.0.1"] {
            assert!(quota.admit_at(ip(host), false, t0).is_ok());
            assert!(quota.admit_at(ip(host), false, t0).is_err(), "{host}: named, not the peer: fresh");
        }
    }

    #[test]
    fn limits_are_checked() {
        assert_eq!(RateLimit::new(0.0, 0), Ok(RateLimit::OFF));
        assert!(RateLimit::new(5.0, 3).unwrap_err().contains("at least 4"));
        assert!(RateLimit::new(-1.0, 10).is_err());
        assert!(RateLimit::new(f64::NAN, 10).is_err());
        let off = SourceQuota::new(RateLimit::OFF, 0);
        for _ in 0..1000 {
            assert!(off.admit(ip("192.0.2.1"), false).is_ok());
        }
    }
}
