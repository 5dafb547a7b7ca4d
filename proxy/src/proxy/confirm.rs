//! The platform's confirmation of a flow's outcome, shared by the return page and `outcome`,
//! and what keeps it from spending the AppToken's quota: each instance remembers the answer per
//! flow and caps its confirmation calls per second.
//!
//! - A success is kept for the token's lifetime: the platform's state no longer changes.
//! - Any other answer ("not confirmed" or a failure) is kept for [`ConfirmLimits::recheck`], so
//!   one flow costs at most one platform call per that interval. The user may still finish,
//!   so it is not kept longer, and the first visit of the flow's return page, which the
//!   platform's H5 pages make when the flow ends, drops it.
//! - Requests for one flow share one call: the second waits for the first's answer.
//! - At most [`ConfirmLimits::per_second`] calls per second (bursts as large): beyond that the
//!   answer is "busy" (503) and nothing is kept.
//! - At most [`ConfirmLimits::entries`] flows are remembered; beyond that the least recently
//!   used is forgotten (expired ones first), so an attack cannot grow memory.
//!
//! All of it is per instance, in memory: with several instances behind a balancer, each keeps
//! its own, so one flow may cost a call on each, and the calls per second add up.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::bucket::TokenBucket;
use crate::platform::{plain_text, Platform, PlatformError};
use crate::protocol::{self, Action};
use crate::token::FlowToken;
use crate::unix_millis;

/// The success event and its data as the platform confirms them, or `None` when the platform
/// confirms no success (the return page reports `authFail`, `outcome` reports `pending`).
pub(super) type Confirmed = Option<(&'static str, Value)>;

/// Why there is no confirmation to answer with.
#[derive(Debug)]
pub(super) enum Unconfirmed {
    /// The platform call failed (now, or within the recheck interval for this flow).
    Platform(PlatformError),
    /// The instance's confirmation calls per second are spent: retry in a moment.
    Busy,
}

/// Bounds of one instance's confirmations (`QYS_CONFIRM_*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConfirmLimits {
    /// Flows remembered at most (≥ 1).
    pub entries: usize,
    /// How long an answer other than a success is reused for its flow.
    pub recheck: Duration,
    /// Confirmation calls per second at most, and the largest burst (≥ 1).
    pub per_second: u32,
}

impl Default for ConfirmLimits {
    fn default() -> Self {
        Self { entries: 10_000, recheck: Duration::from_secs(5), per_second: 20 }
    }
}

/// One instance's memory of confirmations and its call budget (see the module documentation).
pub struct Confirmations {
    limits: ConfirmLimits,
    flows: Mutex<Flows>,
    budget: Mutex<Budget>,
}

impl Default for Confirmations {
    fn default() -> Self {
        Self::new(ConfirmLimits::default())
    }
}

impl std::fmt::Debug for Confirmations {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Confirmations").field("limits", &self.limits).finish_non_exhaustive()
    }
}

/// A flow's key: a digest of its token's facts, which the return token and the flow token of
/// one flow share.
type Key = [u8; 32];

/// What one flow's requests share.
#[derive(Default)]
struct Slot {
    /// The flow's return page has been visited.
    returned: AtomicBool,
    /// Drop a kept answer that is not a success before using it (set by the first return).
    stale: AtomicBool,
    /// The kept answer; held across the platform call, so requests for one flow share it.
    answer: tokio::sync::Mutex<Option<Kept>>,
}

enum Kept {
    /// For the token's lifetime (the token is refused after it, so nothing reads it later).
    Success(&'static str, Value),
    /// Until the instant.
    Other(Result<Confirmed, PlatformError>, Instant),
}

/// How many of the least recently used flows are searched for an expired one before the least
/// recently used is forgotten.
const EXPIRED_SCAN: usize = 64;

/// The remembered flows, least recently used first in `order`.
#[derive(Default)]
struct Flows {
    map: HashMap<Key, Entry>,
    /// `Entry::used` → key.
    order: BTreeMap<u64, Key>,
    /// Counts lookups: the `used` of the next one.
    tick: u64,
}

struct Entry {
    slot: Arc<Slot>,
    used: u64,
    /// The token's expiry (Unix seconds): no request reaches the entry after it.
    expires: u64,
}

struct Budget {
    bucket: TokenBucket,
    refused: u64,
    warned: Option<Instant>,
}

impl Confirmations {
    /// Empty, with these bounds.
    pub fn new(limits: ConfirmLimits) -> Self {
        let limits = ConfirmLimits { entries: limits.entries.max(1), per_second: limits.per_second.max(1), ..limits };
        let budget = Budget { bucket: TokenBucket::full(f64::from(limits.per_second), Instant::now()), refused: 0, warned: None };
        Self { limits, flows: Mutex::default(), budget: Mutex::new(budget) }
    }

    /// How many flows are remembered now.
    pub fn len(&self) -> usize {
        self.flows.lock().expect("not poisoned").map.len()
    }

    /// Whether no flow is remembered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn slot(&self, flow: &FlowToken) -> Arc<Slot> {
        let key: Key = Sha256::digest(serde_json::to_vec(flow).expect("token serialises")).into();
        let mut flows = self.flows.lock().expect("not poisoned");
        flows.tick += 1;
        let tick = flows.tick;
        let Flows { map, order, .. } = &mut *flows;
        if let Some(entry) = map.get_mut(&key) {
            order.remove(&entry.used);
            entry.used = tick;
            order.insert(tick, key);
            return entry.slot.clone();
        }
        // Make room: expired ones go from the old end; then, while full, an expired one among the
        // `EXPIRED_SCAN` least recently used, else the least recently used.
        let now = unix_millis() / 1000;
        let expired = |map: &HashMap<Key, Entry>, key: &Key| map.get(key).is_none_or(|entry| entry.expires < now);
        while let Some((&used, oldest)) = order.first_key_value() {
            if !expired(map, oldest) {
                break;
            }
            map.remove(oldest);
            order.remove(&used);
        }
        while map.len() >= self.limits.entries {
            let mut oldest = order.iter().take(EXPIRED_SCAN);
            let Some((&used, &gone)) = oldest.clone().find(|(_, key)| expired(map, key)).or_else(|| oldest.next()) else {
                break;
            };
            map.remove(&gone);
            order.remove(&used);
        }
        let slot = Arc::new(Slot::default());
        map.insert(key, Entry { slot: slot.clone(), used: tick, expires: flow.expires });
        order.insert(tick, key);
        slot
    }

    /// The flow's return page was visited: the first visit makes the next confirmation ask the
    /// platform again unless a success is kept. No platform call.
    pub(super) fn returned(&self, flow: &FlowToken) {
        let slot = self.slot(flow);
        if !slot.returned.swap(true, Ordering::SeqCst) {
            slot.stale.store(true, Ordering::SeqCst);
        }
    }

    /// One platform call's worth of the per-second budget, if there is one left.
    fn spend(&self) -> bool {
        self.spend_at(Instant::now())
    }

    fn spend_at(&self, now: Instant) -> bool {
        let rate = f64::from(self.limits.per_second);
        let mut budget = self.budget.lock().expect("not poisoned");
        if budget.bucket.take(now, rate, rate) {
            return true;
        }
        budget.refused += 1;
        // Once a second at most, or a flood of refusals would flood the log too.
        if budget.warned.is_none_or(|at| now.duration_since(at) >= Duration::from_secs(1)) {
            tracing::warn!(
                per_second = self.limits.per_second,
                refused = budget.refused,
                "confirmation calls over QYS_CONFIRM_RATE: answering busy"
            );
            budget.warned = Some(now);
            budget.refused = 0;
        }
        false
    }

    /// One platform call's worth of the budget for the callback forwarder, waiting for the
    /// refill at most `within`; whether it got one. The forwarder can wait where a person
    /// cannot, so it leaves a reserve of half the burst (rounded down) to the return page and
    /// `outcome`: from a rate of 2 a backlog of callbacks never makes them busy on its own, and
    /// they come first on the refill. At a rate of 1 there is no reserve (one call kept would
    /// leave the forwarder none, and every entry would wait forever): both take the one call a
    /// second as it comes, so while a backlog drains the return page is mostly busy; the command
    /// line runs that rate as 2 with forwarding on. Both share the one `QYS_CONFIRM_RATE` because
    /// both spend the AppToken's quota.
    pub async fn spend_for_forwarding(&self, within: Duration) -> bool {
        let deadline = Instant::now() + within;
        loop {
            let now = Instant::now();
            match self.spend_for_forwarding_at(now) {
                Ok(()) => return true,
                Err(wait) if now + wait <= deadline => tokio::time::sleep(wait).await,
                Err(_) => return false,
            }
        }
    }

    fn spend_for_forwarding_at(&self, now: Instant) -> Result<(), Duration> {
        let rate = f64::from(self.limits.per_second);
        let keep = f64::from(self.limits.per_second / 2);
        self.budget.lock().expect("not poisoned").bucket.take_keeping(now, rate, rate, keep)
    }

    /// The flow's confirmation: kept, or asked of the platform (see the module documentation).
    /// `return_page`: asked by the flow's return page.
    async fn confirm_with(&self, platform: &Platform, flow: &FlowToken, return_page: bool) -> Result<Confirmed, Unconfirmed> {
        let slot = self.slot(flow);
        if return_page && !slot.returned.swap(true, Ordering::SeqCst) {
            slot.stale.store(true, Ordering::SeqCst);
        }
        let mut kept = slot.answer.lock().await;
        if slot.stale.swap(false, Ordering::SeqCst) && matches!(*kept, Some(Kept::Other(..))) {
            *kept = None;
        }
        match &*kept {
            Some(Kept::Success(event, data)) => return Ok(Some((event, data.clone()))),
            Some(Kept::Other(answer, until)) if Instant::now() < *until => {
                return answer.clone().map_err(Unconfirmed::Platform);
            }
            _ => {}
        }
        if !self.spend() {
            return Err(Unconfirmed::Busy);
        }
        let answer = ask(platform, flow).await;
        if let Err(e) = &answer {
            let (code, message) = e.logged();
            tracing::warn!(action = flow.action.name(), code, message = ?message, "could not confirm the outcome");
        }
        *kept = Some(match &answer {
            Ok(Some((event, data))) => Kept::Success(event, data.clone()),
            _ => Kept::Other(answer.clone(), Instant::now() + self.limits.recheck),
        });
        answer.map_err(Unconfirmed::Platform)
    }
}

/// The flow's confirmation for the return page (`return_page`) or `outcome`, through the
/// instance's [`Confirmations`] (the platform client's).
pub(super) async fn confirm(platform: &Platform, flow: &FlowToken, return_page: bool) -> Result<Confirmed, Unconfirmed> {
    platform.confirmations().confirm_with(platform, flow, return_page).await
}

/// Asks the platform (§6.2 of docs/protocol.md).
async fn ask(platform: &Platform, flow: &FlowToken) -> Result<Confirmed, PlatformError> {
    match flow.action {
        Action::PersonalSign | Action::EnterpriseSign => {
            let contract = platform.get("/v2/contract/detail", &[("contractId", &flow.subject)]).await?;
            let tenant_type = if flow.action == Action::PersonalSign { "PERSONAL" } else { "COMPANY" };
            let signed = contract["signatories"].as_array().into_iter().flatten().any(|s| {
                s["tenantType"] == tenant_type
                    && s["receiver"]["contact"] == flow.contact.as_str()
                    && s["status"] == "SIGNED"
            });
            Ok(signed.then(|| ("signSuccess", json!({"contractId": flow.subject}))))
        }
        Action::PersonalAuth => {
            let contact_type = if protocol::is_mobile(&flow.contact) { "MOBILE" } else { "EMAIL" };
            let r = platform
                .get("/v2/personalauth/result", &[("contact", &flow.contact), ("contactType", contact_type)])
                .await?;
            if r["realName"] != true {
                return Ok(None);
            }
            let mut info = json!({
                "username": text(&r["username"]),
                "mobile": text(&r["mobile"]),
                "cardNo": text(&r["idCardNo"]),
            });
            if r["mode"] == "BANK" {
                info["bankNo"] = text(&r["bankNo"]);
                info["contact"] = text(&r["bankMobile"]);
            }
            Ok(Some(("authSuccess", info)))
        }
        Action::EnterpriseAuth => {
            let r = platform.get("/companyauth/result", &[("companyName", &flow.subject)]).await?;
            if r["status"] != 2 {
                return Ok(None);
            }
            Ok(Some(("authSuccess", json!({
                "name": text(&r["companyName"]),
                "registerNo": text(&r["registerNo"]),
                "legalPerson": text(&r["legalPerson"]),
            }))))
        }
    }
}

/// A confirmed field as the page gets it: a string screened like every platform text
/// ([`plain_text`]), anything else `null` (the SDK keeps only strings). It is shown on the
/// integrator's page, so a name cannot carry a 4 MiB string or a bidi override.
fn text(value: &Value) -> Value {
    value.as_str().map_or(Value::Null, |s| Value::String(plain_text(s)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flow(state: &str, expires: u64) -> FlowToken {
        FlowToken {
            action: Action::PersonalAuth,
            state: state.into(),
            target_origin: "https://shop.example".into(),
            subject: String::new(),
            contact: "13700000044".into(),
            expires,
            return_url: None,
        }
    }

    #[test]
    fn remembers_a_bounded_number_of_flows_least_recently_used_out_first() {
        let later = unix_millis() / 1000 + 600;
        let c = Confirmations::new(ConfirmLimits { entries: 3, ..ConfirmLimits::default() });
        let a = c.slot(&flow("a", later));
        c.slot(&flow("b", later));
        c.slot(&flow("c", later));
        assert!(Arc::ptr_eq(&a, &c.slot(&flow("a", later))), "a is now the most recently used");
        c.slot(&flow("d", later));
        assert_eq!(c.len(), 3);
        assert!(Arc::ptr_eq(&a, &c.slot(&flow("a", later))), "b went, not a");
        let b = c.slot(&flow("b", later));
        assert!(!Arc::ptr_eq(&a, &b));
        for i in 0..1_000 {
            c.slot(&flow(&format!("flood-{i}"), later));
        }
        assert_eq!(c.len(), 3, "no growth under a flood of flows");
    }

    #[test]
    fn expired_flows_go_first() {
        let now = unix_millis() / 1000;
        let c = Confirmations::new(ConfirmLimits { entries: 10, ..ConfirmLimits::default() });
        c.slot(&flow("old", now - 1));
        c.slot(&flow("live", now + 600));
        c.slot(&flow("new", now + 600));
        assert_eq!(c.len(), 2, "the expired flow was dropped when the next one came");
    }

    #[test]
    fn when_full_an_expired_flow_goes_before_the_least_recently_used() {
        let now = unix_millis() / 1000;
        let c = Confirmations::new(ConfirmLimits { entries: 3, ..ConfirmLimits::default() });
        let a = c.slot(&flow("a", now + 600));
        c.slot(&flow("old", now - 1));
        let third = c.slot(&flow("c", now + 600));
        c.slot(&flow("d", now + 600));
        assert_eq!(c.len(), 3);
        assert!(Arc::ptr_eq(&a, &c.slot(&flow("a", now + 600))), "the expired flow went, not the least recently used a");
        c.slot(&flow("e", now + 600));
        assert_eq!(c.len(), 3);
        assert!(!Arc::ptr_eq(&third, &c.slot(&flow("c", now + 600))), "then the least recently used, c");
    }

    #[test]
    fn the_budget_refills_at_its_rate() {
        let c = Confirmations::new(ConfirmLimits { per_second: 2, ..ConfirmLimits::default() });
        // Full at construction; refilling is capped at the burst, so a later start sees the same.
        let start = Instant::now();
        assert!(c.spend_at(start) && c.spend_at(start));
        assert!(!c.spend_at(start), "a burst of two at most");
        let later = start + Duration::from_millis(550);
        assert!(c.spend_at(later), "one more after half a second");
        assert!(!c.spend_at(later));
        let much_later = start + Duration::from_secs(60);
        assert!(c.spend_at(much_later) && c.spend_at(much_later), "refilled to the burst");
        assert!(!c.spend_at(much_later), "and no more");
    }

    #[test]
    fn the_forwarder_shares_the_budget_and_leaves_half_the_burst_to_people() {
        let c = Confirmations::new(ConfirmLimits { per_second: 4, ..ConfirmLimits::default() });
        let start = Instant::now();
        assert_eq!(c.spend_for_forwarding_at(start), Ok(()));
        assert_eq!(c.spend_for_forwarding_at(start), Ok(()));
        assert_eq!(c.spend_for_forwarding_at(start), Err(Duration::from_millis(250)), "two are kept for people");
        assert!(c.spend_at(start) && c.spend_at(start), "the return page has them");
        assert!(!c.spend_at(start), "four calls in all, whoever made them");
        let later = start + Duration::from_millis(250);
        assert_eq!(c.spend_for_forwarding_at(later), Err(Duration::from_millis(500)), "the reserve refills first");
        assert!(c.spend_at(later), "people still get the refill");
        let two = Confirmations::new(ConfirmLimits { per_second: 2, ..ConfirmLimits::default() });
        assert_eq!(two.spend_for_forwarding_at(start), Ok(()));
        assert!(two.spend_for_forwarding_at(start).is_err() && two.spend_at(start), "one of two is kept");
    }

    #[test]
    fn at_one_call_a_second_the_forwarder_shares_it_first_come() {
        let one = Confirmations::new(ConfirmLimits { per_second: 1, ..ConfirmLimits::default() });
        let start = Instant::now();
        assert_eq!(one.spend_for_forwarding_at(start), Ok(()), "no reserve: a kept call would leave the forwarder none");
        assert!(!one.spend_at(start), "the one call is spent, whoever asks next");
        assert_eq!(one.spend_for_forwarding_at(start), Err(Duration::from_secs(1)), "the refill");
        let second = start + Duration::from_secs(1);
        assert!(one.spend_at(second), "a person who comes first gets it");
        assert_eq!(one.spend_for_forwarding_at(second), Err(Duration::from_secs(1)));
        let third = second + Duration::from_secs(1);
        assert_eq!(one.spend_for_forwarding_at(third), Ok(()), "and the forwarder the next one");
    }
}
