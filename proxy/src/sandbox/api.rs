//! The sandbox's signed JSON APIs (seeds 000–003 and the page-URL, detail and result APIs).

use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Map, Value};
use std::collections::HashMap;
use std::sync::Arc;

use super::world::{contact_type, Session, SessionKind, Sessions};
use super::{codes, reject, Shared};
use crate::unix_millis;

type ApiResult = Result<Value, (i64, String)>;

fn answer(result: ApiResult) -> Response {
    match result {
        Ok(result) => Json(json!({"code": 0, "message": "SUCCESS", "result": result})).into_response(),
        Err((code, message)) => reject(StatusCode::OK, code, &message),
    }
}

fn json_body(bytes: &[u8]) -> Result<Value, (i64, String)> {
    serde_json::from_slice(bytes).map_err(|_| invalid("the body must be JSON"))
}

fn invalid(message: impl Into<String>) -> (i64, String) {
    (codes::INVALID_PARAM, format!("INVALID PARAM: {}", message.into()))
}

/// Reads fields of a JSON request body with the platform's checks.
struct Body<'a>(&'a Map<String, Value>);

impl<'a> Body<'a> {
    fn of(value: &'a Value) -> Result<Self, (i64, String)> {
        value.as_object().map(Body).ok_or_else(|| invalid("body must be a JSON object"))
    }

    fn str(&self, key: &str) -> Result<Option<&'a str>, (i64, String)> {
        match self.0.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) if s.is_empty() => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(_) => Err(invalid(format!("{key} must be a string"))),
        }
    }

    fn required(&self, key: &str) -> Result<&'a str, (i64, String)> {
        self.str(key)?.ok_or_else(|| invalid(format!("{key} is required")))
    }

    fn one_of(&self, key: &str, allowed: &[&str]) -> Result<Option<&'a str>, (i64, String)> {
        match self.str(key)? {
            Some(v) if !allowed.contains(&v) => Err(invalid(format!("{key} must be one of {}", allowed.join(", ")))),
            other => Ok(other),
        }
    }

    fn list_of(&self, key: &str, allowed: &[&str]) -> Result<(), (i64, String)> {
        match self.0.get(key) {
            None | Some(Value::Null) => Ok(()),
            Some(Value::Array(items)) if items.iter().all(|i| i.as_str().is_some_and(|s| allowed.contains(&s))) => Ok(()),
            Some(_) => Err(invalid(format!("{key} items must be among {}", allowed.join(", ")))),
        }
    }

    fn bool(&self, key: &str) -> Result<Option<bool>, (i64, String)> {
        match self.0.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(_) => Err(invalid(format!("{key} must be a boolean"))),
        }
    }

    /// A `User`/`UserInfo` object: contact required, contactType checked against `types`.
    fn user(&self, key: &str, types: &[&str], type_required: bool) -> Result<&'a str, (i64, String)> {
        let user = match self.0.get(key) {
            Some(Value::Object(u)) => Body(u),
            None | Some(Value::Null) => return Err(invalid(format!("{key} is required"))),
            Some(_) => return Err(invalid(format!("{key} must be an object"))),
        };
        let contact = user.required("contact").map_err(|_| invalid(format!("{key}.contact is required")))?;
        match user.one_of("contactType", types) {
            Ok(None) if type_required => Err(invalid(format!("{key}.contactType is required"))),
            Ok(_) => Ok(contact),
            Err(_) => Err(invalid(format!("{key}.contactType must be one of {}", types.join(", ")))),
        }
    }
}

const CONTRACT_CONTACT_TYPES: &[&str] = &["MOBILE", "EMAIL", "EMPLOYEEID", "NUMBER"];
const AUTH_CONTACT_TYPES: &[&str] = &["MOBILE", "EMAIL"];
const AUTH_MODES: &[&str] = &["DEFAULT", "IVS", "FACE", "ALIPAY", "BANK"];
const OTHER_MODES: &[&str] = &["IVS", "FACE", "ALIPAY", "BANK", "MANUAL"];
const PAPER_TYPES: &[&str] = &["IDCARD", "PASSPORT", "HKMP", "MTPS"];
const MODIFY_FIELDS: &[&str] = &["USERNAME", "IDCARDNO", "BANKNO", "BANKMOBILE"];
const COMPANY_MODIFY_FIELDS: &[&str] = &["corpName", "registerNo", "legalPerson"];
const PAGE_TYPES: &[&str] = &["SIGN", "PRINT", "DIRECT_SIGN"];

impl super::Sandbox {
    /// Opens a session: everything is built before the sessions lock, held for one insert.
    fn open_session(&self, kind: SessionKind, body: &Body<'_>) -> Result<String, (i64, String)> {
        let (ticket, n) = Sessions::new_ticket();
        let now = unix_millis();
        let session = Arc::new(Session {
            kind,
            callback_page: body.str("callbackPage")?.map(Box::from),
            callback_url: body.str("callbackUrl")?.map(Box::from),
            expires_ms: now + self.cfg.session_ttl.as_millis() as u64,
        });
        self.sessions().open(n, session, now);
        Ok(ticket)
    }

    fn page_url(&self, ticket: &str) -> String {
        format!("{}/h5?ticket={ticket}", self.cfg.public_url)
    }

    /// Checks a sign request (seed 002 / page-URL API) and opens a signing session.
    fn sign_session(&self, value: &Value) -> Result<String, (i64, String)> {
        let body = Body::of(value)?;
        let contract_id = body.str("contractId")?;
        let biz_id = body.str("bizId")?;
        if contract_id.is_none() && biz_id.is_none() {
            return Err(invalid("contractId and bizId may not both be empty"));
        }
        body.str("tenantName")?;
        body.bool("allowPasswordSign")?;
        body.one_of("pageType", PAGE_TYPES)?;
        let contact = body.user("user", CONTRACT_CONTACT_TYPES, false)?;
        let id = {
            let world = self.world();
            match world.find_contract(contract_id, biz_id) {
                Some(c) if c.fixture.signatories.iter().any(|s| s.contact == contact) => {
                    if c.fixture.status != "SIGNING" {
                        return Err((codes::INVALID_CONTRACT_STATUS, "INVALID CONTRACT STATUS".into()));
                    }
                    c.id.clone()
                }
                _ => return Err((codes::NO_VIEW_PERMISSION, "NO VIEW PERMISSION".into())),
            }
        };
        self.open_session(SessionKind::Sign { contract_id: id, contact: contact.into() }, &body)
    }

    /// Checks a personal-auth request (seeds 000/001) and opens a session.
    fn personal_auth_session(&self, value: &Value) -> Result<String, (i64, String)> {
        let body = Body::of(value)?;
        body.one_of("mode", AUTH_MODES)?;
        body.one_of("paperType", PAPER_TYPES)?;
        body.user("user", AUTH_CONTACT_TYPES, true)?;
        for key in ["username", "idCardNo", "bankNo", "bankMobile", "callbackUrl", "callbackPage"] {
            body.str(key)?;
        }
        body.list_of("otherModes", OTHER_MODES)?;
        body.list_of("modifyFields", MODIFY_FIELDS)?;
        self.open_session(SessionKind::PersonalAuth(value.clone()), &body)
    }

    /// Checks a company-auth request (seed 003) and opens a session.
    fn company_auth_session(&self, value: &Value) -> Result<(String, String), (i64, String)> {
        let body = Body::of(value)?;
        let name = body.required("companyName")?;
        body.user("applicant", AUTH_CONTACT_TYPES, true)?;
        for key in ["registerNo", "legalPerson", "callbackUrl", "callbackPage"] {
            body.str(key)?;
        }
        body.bool("closeButton")?;
        if let Some(fields) = body.str("modifyFields")? {
            if !fields.split(',').all(|f| COMPANY_MODIFY_FIELDS.contains(&f.trim())) {
                return Err(invalid(format!("modifyFields items must be among {}", COMPANY_MODIFY_FIELDS.join(", "))));
            }
        }
        if self.world().company(name).is_some_and(|c| c.authenticated) {
            return Err((codes::COMPANY_ALREADY_AUTHED, "COMPANY ALREADY AUTHED".into()));
        }
        let request_id = Sessions::new_ticket().0;
        let ticket = self.open_session(
            SessionKind::CompanyAuth { request: Box::new(value.clone()), request_id: request_id.clone() },
            &body,
        )?;
        Ok((ticket, request_id))
    }
}

/// `POST /v2/contract/miniappexchange` (seed 002).
pub async fn contract_ticket(State(sb): State<Shared>, body: Bytes) -> Response {
    answer(json_body(&body).and_then(|b| sb.sign_session(&b)).map(|ticket| json!({"ticket": ticket})))
}

/// `POST /v2/personalauth/miniappexchange` (seeds 000/001).
pub async fn personal_auth_ticket(State(sb): State<Shared>, body: Bytes) -> Response {
    answer(json_body(&body).and_then(|b| sb.personal_auth_session(&b)).map(|ticket| json!({"ticket": ticket})))
}

/// `POST /companyauth/miniappexchange` (seed 003).
pub async fn company_auth_ticket(State(sb): State<Shared>, body: Bytes) -> Response {
    answer(json_body(&body).and_then(|b| sb.company_auth_session(&b)).map(|(ticket, _)| json!({"ticket": ticket})))
}

/// `POST /v2/contract/pageurl`: `{pageUrl}`.
pub async fn contract_page_url(State(sb): State<Shared>, body: Bytes) -> Response {
    answer(json_body(&body).and_then(|b| sb.sign_session(&b)).map(|ticket| json!({"pageUrl": sb.page_url(&ticket)})))
}

/// `POST /v2/personalauth`: `{authUrl, authId}`.
pub async fn personal_auth_page_url(State(sb): State<Shared>, body: Bytes) -> Response {
    answer(
        json_body(&body).and_then(|b| sb.personal_auth_session(&b))
            .map(|ticket| json!({"authUrl": sb.page_url(&ticket), "authId": ticket})),
    )
}

/// `POST /companyauth/h5page`: `{authUrl, requestId}`.
pub async fn company_auth_page_url(State(sb): State<Shared>, body: Bytes) -> Response {
    answer(
        json_body(&body).and_then(|b| sb.company_auth_session(&b))
            .map(|(ticket, request_id)| json!({"authUrl": sb.page_url(&ticket), "requestId": request_id})),
    )
}

/// `GET /v2/contract/detail?contractId=|bizId=`.
pub async fn contract_detail(State(sb): State<Shared>, Query(q): Query<HashMap<String, String>>) -> Response {
    let (id, biz_id) = (q.get("contractId").map(String::as_str), q.get("bizId").map(String::as_str));
    // A reference to the contract under the lock; its JSON is built after.
    let contract = sb.world().find_contract(id, biz_id).cloned();
    let result = match contract {
        Some(contract) => Ok(contract.detail()),
        None if q.contains_key("contractId") || q.contains_key("bizId") => {
            Err((codes::NO_VIEW_PERMISSION, "NO VIEW PERMISSION".into()))
        }
        None => Err(invalid("contractId and bizId may not both be empty")),
    };
    answer(result)
}

/// `GET /v2/personalauth/result?contact=&contactType=` (or `authId=`).
///
/// `realName` and `mode` are the platform's fields; `username`, `idCardNo`, `mobile`, `bankNo`
/// and `bankMobile` are the sandbox's (the public record does not show the platform's names).
pub async fn personal_auth_result(State(sb): State<Shared>, Query(q): Query<HashMap<String, String>>) -> Response {
    let contact = match (q.get("contact"), q.get("authId")) {
        (Some(c), _) => Some(c.clone()),
        (None, Some(id)) => {
            let session = sb.sessions().get(id);
            match session.as_deref().map(|s| &s.kind) {
                Some(SessionKind::PersonalAuth(req)) => req["user"]["contact"].as_str().map(str::to_owned),
                _ => return answer(Err((1604, "INVALID AUTHID".into()))),
            }
        }
        (None, None) => return answer(Err(invalid("authId and contact may not both be empty"))),
    };
    let person = contact.as_deref().and_then(|c| sb.world().persons.get(c).filter(|p| p.real_name).cloned());
    answer(Ok(match person {
        Some(p) if p.real_name => json!({
            "realName": true,
            "mode": p.mode,
            "username": p.username,
            "idCardNo": p.id_card_no,
            "mobile": (contact_type(&p.contact) == "MOBILE").then_some(&p.contact),
            "bankNo": p.bank_no,
            "bankMobile": p.bank_mobile,
        }),
        _ => json!({"realName": false}),
    }))
}

/// `GET /companyauth/result?companyName=|requestId=`: `status` 2 passed, 1 not submitted, -1 no record.
pub async fn company_auth_result(State(sb): State<Shared>, Query(q): Query<HashMap<String, String>>) -> Response {
    let company = match (q.get("companyName"), q.get("requestId")) {
        (Some(name), _) => sb.world().company_named(name).cloned(),
        (None, Some(id)) => sb.world().company_by_request_id(id).cloned(),
        (None, None) => return answer(Err(invalid("requestId and companyName may not both be empty"))),
    };
    answer(Ok(match company {
        Some(c) if c.authenticated => json!({
            "status": 2,
            "requestId": c.request_id,
            "companyName": c.name,
            "registerNo": c.register_no,
            "legalPerson": c.legal_person,
        }),
        Some(_) => json!({"status": 1}),
        None => json!({"status": -1}),
    }))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::super::{Sandbox, SandboxConfig};
    use super::*;
    use crate::Secret;

    fn sandbox(session_ttl: Duration) -> Sandbox {
        let mut cfg = SandboxConfig::new("t".into(), Secret::new("s"), "http://127.0.0.1:9".into());
        cfg.session_ttl = session_ttl;
        Sandbox::new(cfg)
    }

    fn sign_request() -> Value {
        json!({"bizId": "demo-labour-001", "user": {"contact": "13700000044", "contactType": "MOBILE"}})
    }

    #[test]
    fn ten_thousand_expired_sessions_and_one_new_leave_one_session() {
        let sb = sandbox(Duration::ZERO);
        let first = sb.sign_session(&sign_request()).unwrap();
        let mut last = first.clone();
        for _ in 1..10_000 {
            last = sb.sign_session(&sign_request()).unwrap();
        }
        assert!(sb.sessions().get(&last).is_some(), "expired, kept until the next open (the page says so)");
        let new = sb.sign_session(&sign_request()).unwrap();
        assert_eq!(sb.sessions().len(), 1);
        assert!(sb.sessions().get(&first).is_none() && sb.sessions().get(&last).is_none());
        assert!(matches!(sb.sessions().get(&new).as_deref().map(|s| &s.kind),
            Some(SessionKind::Sign { contract_id, .. }) if &**contract_id == "2603417854124281870"));
    }

    #[test]
    fn live_sessions_stay_and_tickets_are_32_lowercase_hex_digits() {
        let sb = sandbox(Duration::from_secs(60));
        let tickets: Vec<String> = (0..100).map(|_| sb.sign_session(&sign_request()).unwrap()).collect();
        assert_eq!(sb.sessions().len(), 100);
        for ticket in &tickets {
            assert!(ticket.len() == 32 && ticket.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')), "{ticket}");
            assert!(sb.sessions().get(ticket).is_some());
            assert!(sb.sessions().get(&ticket.to_uppercase()).is_none(), "tickets match exactly");
            assert!(sb.sessions().get(&format!("{ticket}0")).is_none());
        }
        assert!(sb.sessions().get("").is_none() && sb.sessions().get("+0000000000000000000000000000000").is_none());
    }
}
