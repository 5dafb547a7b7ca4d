//! The forwarded body: the callback's fields as received, beside what the platform says.
//!
//! Callbacks carry no signature, so the proxy asks the platform before forwarding (issue 9,
//! docs/protocol.md §8.1). The proxy's own callback URL carries the flow's sealed token (`t`):
//! when it opens with this proxy's key and fits the callback, the platform is asked about the
//! flow's own person or company, as the return page does (`/v2/personalauth/result?contact=`,
//! `/companyauth/result?companyName=`). Without it the platform is asked by the identifier the
//! callback names (`authId`, `requestId`), but the callback cannot be verified: anyone can post
//! a true fact about someone else's `authId`.
//!
//! `verified` is true only when the token ties the callback to a flow of this proxy and the
//! platform agrees with the callback's claim (passed or not passed). `passed` is the platform's
//! own word (`null` when it was not asked).

use std::time::Duration;

use serde_json::{json, Map, Value};

use crate::platform::{Platform, PlatformError};
use crate::protocol::{is_mobile, Action};
use crate::store::OutboxEntry;
use crate::token::{FlowToken, TokenKey};

/// What the platform is asked.
enum Question {
    /// `/v2/personalauth/result?authId=`.
    PersonByAuthId(String),
    /// `/companyauth/result?requestId=`.
    CompanyByRequestId(String),
    /// `/v2/personalauth/result?contact=&contactType=`: the flow's own person.
    PersonByContact(String),
    /// `/companyauth/result?companyName=`: the flow's own company.
    CompanyByName(String),
}

/// The platform's answer, reduced to what the forwarded body carries.
struct Answer {
    by: &'static str,
    passed: bool,
    result: Value,
}

/// Longest a confirmation waits for the instance's confirmation budget (`QYS_CONFIRM_RATE`,
/// shared with the return page: [`crate::proxy::Confirmations::spend_for_forwarding`]); part of
/// the lease.
pub const BUDGET_WAIT: Duration = Duration::from_secs(2);

/// Why the platform gave no answer now; asking later may get one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NotAsked {
    /// The confirmation budget stayed spent for [`BUDGET_WAIT`]: this instance's own limit, not
    /// the platform's silence, so never a reason to give up.
    Busy,
    /// No answer, or one that leaves the question open ([`transient_code`]): why.
    Failed(String),
}

impl NotAsked {
    /// Why, for `last_error` and, at the give-up age, the forwarded body's `reason`.
    pub fn why(&self) -> String {
        match self {
            Self::Busy => "this instance's QYS_CONFIRM_RATE stayed spent (the return pages come first)".into(),
            Self::Failed(why) => why.clone(),
        }
    }
}

/// Whether a non-zero `code` answered with HTTP status `http` leaves the question open, so that
/// asking again may get an answer: the platform's own trouble or rate limit (HTTP 5xx or 429,
/// whatever the code: its rate-limit code is not on public record), or a refusal of the proxy's
/// request rather than of the question — credentials, signature, clock, nonce (441–444) — which
/// the operator's fix or the next request's fresh nonce and timestamp undo. Any other code is the
/// platform's word on this callback (e.g. 1604, an unknown `authId`).
fn transient_code(code: i64, http: u16) -> bool {
    http >= 500 || http == 429 || (441..=444).contains(&code)
}

/// Builds the forwarded body of `entry`. `Err` when the platform gave no answer now: the caller
/// asks again later — after [`super::BUSY_DELAY`] when busy, else with the entry's backoff and,
/// once the entry reaches the give-up age, forwards [`unconfirmed`].
pub async fn build(platform: &Platform, key: &TokenKey, entry: &OutboxEntry) -> Result<String, NotAsked> {
    let fields = form_fields(&entry.body);
    let claimed = fields.get("status").and_then(Value::as_str) == Some("1");
    let flow = own_flow(key, &entry.kind, &entry.query);
    let question = match flow.as_ref().map(|f| Ok(flow_question(f))).unwrap_or_else(|| question(&entry.kind, &fields)) {
        Ok(q) => q,
        Err(reason) => return Ok(body(entry, &fields, None, Some(reason))),
    };
    if !platform.confirmations().spend_for_forwarding(BUDGET_WAIT).await {
        return Err(NotAsked::Busy);
    }
    let answer = match ask(platform, &question).await {
        Ok(answer) => answer,
        Err(PlatformError::Platform { code, logged, http, .. }) if transient_code(code, http) => {
            return Err(NotAsked::Failed(format!("HTTP {http}, code {code} ({logged})")));
        }
        Err(PlatformError::Platform { code, logged, .. }) => {
            let reason = format!("the platform refused the question: code {code} ({logged})");
            return Ok(body(entry, &fields, None, Some(reason)));
        }
        // No answer, or not the platform's envelope (a gateway's error page).
        Err(e) => return Err(NotAsked::Failed(e.logged().1)),
    };
    let status = fields.get("status").and_then(Value::as_str).unwrap_or("");
    let reason = if answer.passed != claimed {
        Some(format!(
            "the callback says status={status} ({}), the platform says {}",
            if claimed { "passed" } else { "not passed" },
            if answer.passed { "passed" } else { "not passed" },
        ))
    } else if flow.is_none() {
        Some("the callback URL carries no flow token of this proxy: the callback is not tied to a flow".to_owned())
    } else {
        None
    };
    Ok(body(entry, &fields, Some(answer), reason))
}

/// The flow behind the callback: the sealed token in the proxy's own callback URL, opened with
/// this proxy's key (authenticity, not age: a callback may be forwarded long after the flow),
/// of the callback's kind and with the `flow=` state beside it.
pub(crate) fn own_flow(key: &TokenKey, kind: &str, query: &str) -> Option<FlowToken> {
    let param = |name: &str| form_urlencoded::parse(query.as_bytes()).find(|(k, _)| k == name).map(|(_, v)| v.into_owned());
    let flow = key.unseal(&param("t")?, 0).ok()?;
    let fits = match kind {
        "personal-auth" => flow.action == Action::PersonalAuth,
        "company-auth" => flow.action == Action::EnterpriseAuth,
        _ => false,
    };
    (fits && param("flow").as_deref() == Some(flow.state.as_str())).then_some(flow)
}

fn flow_question(flow: &FlowToken) -> Question {
    match flow.action {
        Action::EnterpriseAuth => Question::CompanyByName(flow.subject.clone()),
        _ => Question::PersonByContact(flow.contact.clone()),
    }
}

/// The forwarded body when the platform gave no answer until the give-up age:
/// `"verified": false`, `passed` null, `reason` why.
pub fn unconfirmed(entry: &OutboxEntry, why: &str) -> String {
    let fields = form_fields(&entry.body);
    body(entry, &fields, None, Some(format!("the platform could not be asked: {why}")))
}

fn question(kind: &str, fields: &Map<String, Value>) -> Result<Question, String> {
    let field = |k: &str| fields.get(k).and_then(Value::as_str).filter(|v| !v.is_empty()).map(str::to_owned);
    match kind {
        "personal-auth" => field("authId")
            .map(Question::PersonByAuthId)
            .ok_or_else(|| "the callback has no authId to ask the platform about".into()),
        "company-auth" => field("requestId")
            .map(Question::CompanyByRequestId)
            .ok_or_else(|| "the callback has no requestId to ask the platform about".into()),
        other => Err(format!("unknown callback kind {other:?}")),
    }
}

async fn ask(platform: &Platform, question: &Question) -> Result<Answer, PlatformError> {
    match question {
        Question::PersonByAuthId(id) => {
            let r = platform.get("/v2/personalauth/result", &[("authId", id)]).await?;
            Ok(Answer { by: "authId", passed: r["realName"] == true, result: r })
        }
        Question::CompanyByRequestId(id) => {
            let r = platform.get("/companyauth/result", &[("requestId", id)]).await?;
            Ok(Answer { by: "requestId", passed: r["status"] == 2, result: r })
        }
        Question::PersonByContact(contact) => {
            let contact_type = if is_mobile(contact) { "MOBILE" } else { "EMAIL" };
            let r = platform.get("/v2/personalauth/result", &[("contact", contact), ("contactType", contact_type)]).await?;
            Ok(Answer { by: "flow", passed: r["realName"] == true, result: r })
        }
        Question::CompanyByName(name) => {
            let r = platform.get("/companyauth/result", &[("companyName", name)]).await?;
            Ok(Answer { by: "flow", passed: r["status"] == 2, result: r })
        }
    }
}

/// The form's fields as strings; a repeated name keeps its first value (as the receivers check).
fn form_fields(body: &str) -> Map<String, Value> {
    let mut fields = Map::new();
    for (k, v) in form_urlencoded::parse(body.as_bytes()) {
        fields.entry(k.into_owned()).or_insert_with(|| Value::String(v.into_owned()));
    }
    fields
}

/// The query's `flow` (the SDK call's state, in the proxy's own `callbackUrl`), if any.
fn flow_state(query: &str) -> Option<String> {
    form_urlencoded::parse(query.as_bytes()).find(|(k, _)| k == "flow").map(|(_, v)| v.into_owned())
}

fn body(entry: &OutboxEntry, fields: &Map<String, Value>, answer: Option<Answer>, reason: Option<String>) -> String {
    let verified = answer.is_some() && reason.is_none();
    let (passed, by, platform) = match answer {
        Some(a) => (Value::Bool(a.passed), Value::from(a.by), a.result),
        None => (Value::Null, Value::Null, Value::Null),
    };
    json!({
        "id": entry.id,
        // The `Idempotency-Key` header's value, here so that it is signed: a captured request
        // resent with another key in the header cannot make a receiver that deduplicates on
        // this field act twice on one callback, or drop another one as already seen.
        "idempotencyKey": entry.dedup_key,
        "kind": entry.kind,
        "receivedAt": entry.received_at,
        "confirmedAt": crate::store::now(),
        "query": entry.query,
        "callback": fields,
        "flow": flow_state(&entry.query),
        "verified": verified,
        "passed": passed,
        "confirmedBy": by,
        "platform": platform,
        "reason": reason,
    })
    .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_keep_their_first_value_and_decode() {
        let f = form_fields("mode=FACE&status=1&status=2&authId=a%2Bb+c");
        assert_eq!(Value::Object(f), json!({"mode": "FACE", "status": "1", "authId": "a+b c"}));
    }

    #[test]
    fn only_the_platforms_word_on_the_question_is_final() {
        for (code, http) in [(500, 502), (1, 503), (429, 429), (442, 401), (441, 200), (444, 200)] {
            assert!(transient_code(code, http), "{code} with HTTP {http}");
        }
        for (code, http) in [(1604, 200), (1110, 200), (1005, 400), (445, 200), (1, 404)] {
            assert!(!transient_code(code, http), "{code} with HTTP {http}");
        }
    }

    #[test]
    fn an_empty_identifier_is_not_asked() {
        let fields = form_fields("mode=FACE&status=1&authId=");
        assert!(question("personal-auth", &fields).is_err());
        let company = form_fields("status=1&actionEvent=0&requestId=r1");
        assert!(matches!(question("company-auth", &company), Ok(Question::CompanyByRequestId(r)) if r == "r1"));
        assert_eq!(flow_state("a=1&flow=st%2Bx"), Some("st+x".into()));
    }
}
