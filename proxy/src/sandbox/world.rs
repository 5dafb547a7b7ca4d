//! The sandbox platform's data: contracts, people, companies and open page sessions.

use std::collections::HashMap;
use std::sync::Arc;

use super::expiry::{Bits128, ExpiringMap};

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

/// Initial data, read from a JSON file or the built-in defaults.
#[derive(Debug, Clone, Deserialize)]
pub struct Fixtures {
    /// Contracts with their signatories.
    pub contracts: Vec<ContractFixture>,
    /// People known to the platform.
    #[serde(default)]
    pub persons: Vec<Person>,
    /// Companies known to the platform.
    #[serde(default)]
    pub companies: Vec<Company>,
}

impl Fixtures {
    /// The built-in fixtures (`proxy/fixtures/default.json`).
    pub fn builtin() -> Self {
        serde_json::from_str(include_str!("../../fixtures/default.json")).expect("built-in fixtures parse")
    }
}

/// One contract of the fixtures.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContractFixture {
    /// 19-digit id, as a string.
    pub id: String,
    /// Integrator's business id.
    #[serde(default)]
    pub biz_id: Option<String>,
    /// Title.
    pub subject: String,
    /// `SIGNING` (default) or another contract status.
    #[serde(default = "signing")]
    pub status: String,
    /// Signatories in order.
    pub signatories: Vec<SignatoryFixture>,
}

/// One signatory of the fixtures.
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SignatoryFixture {
    /// `PERSONAL` or `COMPANY`.
    pub tenant_type: String,
    /// The person's or company's name.
    pub tenant_name: String,
    /// Receiver's contact (the person, or the company's operator).
    pub contact: String,
    /// `SIGNING` (default) or `SIGNED`.
    #[serde(default = "signing")]
    pub status: String,
}

fn signing() -> String {
    "SIGNING".into()
}

/// A person and their real-name state.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Person {
    /// Mobile or email.
    pub contact: String,
    /// Real name.
    #[serde(default)]
    pub username: String,
    /// ID card number.
    #[serde(default)]
    pub id_card_no: String,
    /// Bank card (bank mode only).
    #[serde(default)]
    pub bank_no: Option<String>,
    /// Bank reserved mobile (bank mode only).
    #[serde(default)]
    pub bank_mobile: Option<String>,
    /// Whether the person has passed real-name authentication.
    #[serde(default)]
    pub real_name: bool,
    /// How they passed.
    #[serde(default)]
    pub mode: Option<String>,
}

/// A company and its authentication state.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Company {
    /// Registered name.
    pub name: String,
    /// Registration number.
    #[serde(default)]
    pub register_no: String,
    /// Legal representative.
    #[serde(default)]
    pub legal_person: String,
    /// Whether authentication has passed.
    #[serde(default)]
    pub authenticated: bool,
    /// Id of the auth request that authenticated it.
    #[serde(default)]
    pub request_id: Option<String>,
    /// The name the auth request asked for, when the applicant edited it.
    #[serde(default)]
    pub requested_name: Option<String>,
}

/// What an H5 page session is for. Kept small: a session lives as long as its TTL, one per flow.
#[derive(Debug, Clone)]
pub enum SessionKind {
    /// Sign `contract_id` as `contact`.
    Sign {
        /// Contract (shares the contract's [`Contract::id`]).
        contract_id: Arc<str>,
        /// Signatory receiver.
        contact: Box<str>,
    },
    /// Personal auth with the request's JSON body.
    PersonalAuth(Value),
    /// Company auth with the request's JSON body and its request id.
    CompanyAuth {
        /// Request body.
        request: Box<Value>,
        /// `requestId` of this auth request.
        request_id: String,
    },
}

/// A ticket or page-URL session.
#[derive(Debug, Clone)]
pub struct Session {
    /// Purpose and data.
    pub kind: SessionKind,
    /// Where the browser goes when the page finishes (page-URL mode; ticket mode passes it on the URL).
    pub callback_page: Option<Box<str>>,
    /// Where the server callback goes.
    pub callback_url: Option<Box<str>>,
    /// Unix ms after which the session is refused.
    pub expires_ms: u64,
}

/// Open sessions by ticket. A ticket is 32 lowercase hex digits (a UUID v4 in simple form),
/// indexed as the number it spells. Sessions expire after their TTL: each open first drops, from
/// the front of the expiry queue, the sessions that have expired (O(1) amortised), so the table
/// holds the live sessions only, plus those expired since the last open (still answered as
/// expired until then).
#[derive(Debug, Default)]
pub struct Sessions(ExpiringMap<Bits128, Arc<Session>>);

impl Sessions {
    /// Makes a new ticket, as the string callers see and the number it spells.
    pub fn new_ticket() -> (String, Bits128) {
        let n = uuid::Uuid::new_v4().as_u128();
        (format!("{n:032x}"), n.into())
    }

    /// Records `session` under `ticket` (from [`new_ticket`](Self::new_ticket)) after dropping
    /// the sessions expired at `now`.
    pub fn open(&mut self, ticket: Bits128, session: Arc<Session>, now: u64) {
        let expires = session.expires_ms;
        self.0.insert(ticket, session, expires, now);
    }

    /// The session of `ticket`, expired or not.
    pub fn get(&self, ticket: &str) -> Option<Arc<Session>> {
        self.0.get(&Self::parse(ticket)?).map(|(_, s)| s.clone())
    }

    /// Sessions held.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether no session is held.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The number a ticket spells: exactly 32 lowercase hex digits, as tickets are issued.
    fn parse(ticket: &str) -> Option<Bits128> {
        let lower_hex = |b: &u8| b.is_ascii_digit() || (b'a'..=b'f').contains(b);
        if ticket.len() == 32 && ticket.as_bytes().iter().all(lower_hex) {
            u128::from_str_radix(ticket, 16).ok().map(Bits128::from)
        } else {
            None
        }
    }
}

/// Contract state.
#[derive(Debug, Clone)]
pub struct Contract {
    /// Id, shared by the signing sessions of this contract.
    pub id: Arc<str>,
    /// Fixture data, replaced (copy on write) as people sign, so that readers take a reference
    /// under the world lock and render after it.
    pub fixture: Arc<ContractFixture>,
}

impl Contract {
    /// The platform's contract-detail JSON.
    pub fn detail(&self) -> Value {
        let c = &self.fixture;
        let signatories: Vec<Value> = c
            .signatories
            .iter()
            .enumerate()
            .map(|(i, s)| {
                json!({
                    "id": format!("{}{:02}", &c.id[..c.id.len().min(17)], i + 1),
                    "tenantType": s.tenant_type,
                    "tenantName": s.tenant_name,
                    "receiver": {"contact": s.contact, "contactType": contact_type(&s.contact)},
                    "serialNo": i + 1,
                    "status": s.status,
                })
            })
            .collect();
        json!({
            "id": c.id,
            "bizId": c.biz_id,
            "subject": c.subject,
            "status": c.status,
            "signatories": signatories,
        })
    }
}

/// `MOBILE` or `EMAIL` for a contact.
pub fn contact_type(contact: &str) -> &'static str {
    if contact.contains('@') {
        "EMAIL"
    } else {
        "MOBILE"
    }
}

/// Everything the sandbox knows, with an index for each lookup the APIs make.
#[derive(Debug, Default)]
pub struct World {
    /// By id.
    contracts: HashMap<String, Contract>,
    /// Contract id by business id (the first contract of the fixtures with that business id).
    contract_by_biz_id: HashMap<String, String>,
    /// By contact.
    pub persons: HashMap<String, Person>,
    /// By name.
    companies: HashMap<String, Company>,
    /// Names of the companies by the `requestId` that authenticated them.
    company_by_request_id: HashMap<String, Vec<String>>,
    /// Names of the companies by the name their auth request asked for.
    company_by_requested_name: HashMap<String, Vec<String>>,
}

impl World {
    /// Loads fixtures.
    pub fn new(fixtures: Fixtures) -> Self {
        let mut world = Self::default();
        for c in fixtures.contracts {
            if let Some(biz) = &c.biz_id {
                world.contract_by_biz_id.entry(biz.clone()).or_insert_with(|| c.id.clone());
            }
            world.contracts.insert(c.id.clone(), Contract { id: c.id.as_str().into(), fixture: Arc::new(c) });
        }
        world.persons = fixtures.persons.into_iter().map(|p| (p.contact.clone(), p)).collect();
        for c in fixtures.companies {
            world.insert_company(c);
        }
        world
    }

    /// The contract `id`.
    pub fn contract(&self, id: &str) -> Option<&Contract> {
        self.contracts.get(id)
    }

    /// The contract `id`, to sign. Its id and business id are fixed: the index depends on them.
    pub fn contract_mut(&mut self, id: &str) -> Option<&mut Contract> {
        self.contracts.get_mut(id)
    }

    /// Finds a contract by id, else (when no id is given) by business id.
    pub fn find_contract(&self, contract_id: Option<&str>, biz_id: Option<&str>) -> Option<&Contract> {
        match (contract_id, biz_id) {
            (Some(id), _) => self.contracts.get(id),
            (None, Some(biz)) => self.contract_by_biz_id.get(biz).and_then(|id| self.contracts.get(id)),
            (None, None) => None,
        }
    }

    /// The id of the contract [`find_contract`](Self::find_contract) finds.
    pub fn contract_id(&self, contract_id: Option<&str>, biz_id: Option<&str>) -> Option<String> {
        self.find_contract(contract_id, biz_id).map(|c| c.fixture.id.clone())
    }

    /// Whether `contact` has passed real-name authentication.
    pub fn is_real_name(&self, contact: &str) -> bool {
        self.persons.get(contact).is_some_and(|p| p.real_name)
    }

    /// The company registered as `name`.
    pub fn company(&self, name: &str) -> Option<&Company> {
        self.companies.get(name)
    }

    /// The company registered as `name`, else one whose auth request asked for `name`.
    pub fn company_named(&self, name: &str) -> Option<&Company> {
        self.company(name).or_else(|| self.indexed(&self.company_by_requested_name, name))
    }

    /// The company the auth request `request_id` authenticated.
    pub fn company_by_request_id(&self, request_id: &str) -> Option<&Company> {
        self.indexed(&self.company_by_request_id, request_id)
    }

    fn indexed(&self, index: &HashMap<String, Vec<String>>, key: &str) -> Option<&Company> {
        index.get(key).and_then(|names| names.first()).and_then(|name| self.companies.get(name))
    }

    /// Records a company under its name, replacing any company of that name.
    pub fn insert_company(&mut self, company: Company) {
        let name = company.name.clone();
        for (index, key) in [
            (&mut self.company_by_request_id, company.request_id.clone()),
            (&mut self.company_by_requested_name, company.requested_name.clone()),
        ] {
            if let Some(key) = key {
                index.entry(key).or_default().push(name.clone());
            }
        }
        if let Some(old) = self.companies.insert(name.clone(), company) {
            for (index, key) in [
                (&mut self.company_by_request_id, old.request_id),
                (&mut self.company_by_requested_name, old.requested_name),
            ] {
                let Some(key) = key else { continue };
                let Some(names) = index.get_mut(&key) else { continue };
                if let Some(at) = names.iter().position(|n| *n == name) {
                    names.remove(at);
                }
                if names.is_empty() {
                    index.remove(&key);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn company(name: &str, request_id: &str, requested_name: &str) -> Company {
        Company {
            name: name.into(),
            authenticated: true,
            request_id: Some(request_id.into()),
            requested_name: Some(requested_name.into()),
            ..Company::default()
        }
    }

    #[test]
    fn contracts_are_found_by_id_else_by_business_id() {
        let mut fixtures = Fixtures::builtin();
        let mut twin = fixtures.contracts[1].clone();
        (twin.id, twin.biz_id) = ("9".into(), Some("demo-labour-001".into()));
        fixtures.contracts.push(twin);
        let world = World::new(fixtures);
        let labour = "2603417854124281870";
        assert_eq!(world.contract_id(None, Some("demo-labour-001")).as_deref(), Some(labour), "the first one wins");
        assert_eq!(world.contract_id(Some(labour), Some("other")).as_deref(), Some(labour));
        assert_eq!(world.contract_id(Some("2603417854124281871"), None).as_deref(), Some("2603417854124281871"));
        assert_eq!(world.contract_id(Some("missing"), Some("demo-labour-001")), None, "a given id must exist");
        assert_eq!(world.contract_id(None, Some("missing")), None);
        assert_eq!(world.contract_id(None, None), None);
        assert_eq!(world.find_contract(None, Some("demo-labour-001")).unwrap().fixture.subject, "劳动合同(示例)");
    }

    #[test]
    fn companies_are_found_by_name_requested_name_and_request_id() {
        let mut world = World::new(Fixtures::builtin());
        world.insert_company(company("新名公司", "r1", "旧名公司"));
        assert_eq!(world.company("新名公司").unwrap().request_id.as_deref(), Some("r1"));
        assert_eq!(world.company_named("新名公司").unwrap().name, "新名公司");
        assert_eq!(world.company_named("旧名公司").unwrap().name, "新名公司");
        assert_eq!(world.company_by_request_id("r1").unwrap().name, "新名公司");
        assert!(world.company("旧名公司").is_none() && world.company_by_request_id("r2").is_none());

        // A second request authenticates a company of the same name: it replaces the first.
        world.insert_company(company("新名公司", "r2", "另一个名字"));
        assert!(world.company_by_request_id("r1").is_none(), "the first record is gone");
        assert!(world.company_named("旧名公司").is_none());
        assert_eq!(world.company_by_request_id("r2").unwrap().name, "新名公司");
        assert_eq!(world.company_named("另一个名字").unwrap().name, "新名公司");

        // Two companies asked for the same name; either may answer, and each remains found.
        world.insert_company(company("甲公司", "r3", "同一个名字"));
        world.insert_company(company("乙公司", "r4", "同一个名字"));
        world.insert_company(company("甲公司", "r5", "甲公司"));
        assert_eq!(world.company_named("同一个名字").unwrap().name, "乙公司");
        assert_eq!(world.company_by_request_id("r5").unwrap().name, "甲公司");
        assert!(world.company_by_request_id("r3").is_none());
    }

    #[test]
    fn ten_thousand_expired_sessions_and_one_new_leave_one_session() {
        let session = |expires_ms| {
            let kind = SessionKind::Sign { contract_id: "1".into(), contact: "2".into() };
            Arc::new(Session { kind, callback_page: None, callback_url: None, expires_ms })
        };
        let mut sessions = Sessions::default();
        let mut tickets = Vec::new();
        for _ in 0..10_000 {
            let (ticket, n) = Sessions::new_ticket();
            sessions.open(n, session(1_000), 500);
            tickets.push(ticket);
        }
        assert_eq!(sessions.len(), 10_000);
        assert!(sessions.get(&tickets[0]).is_some(), "expired sessions answer as expired until the next open");
        let (ticket, n) = Sessions::new_ticket();
        sessions.open(n, session(3_000), 2_000);
        assert_eq!(sessions.len(), 1);
        assert!(tickets.iter().all(|t| sessions.get(t).is_none()));
        assert_eq!(sessions.get(&ticket).map(|s| s.expires_ms), Some(3_000));
    }

    #[test]
    fn fixture_companies_are_indexed() {
        let mut fixtures = Fixtures::builtin();
        fixtures.companies.push(company("固定公司", "fixture-r", "固定公司旧名"));
        let world = World::new(fixtures);
        assert_eq!(world.company_by_request_id("fixture-r").unwrap().name, "固定公司");
        assert_eq!(world.company_named("固定公司旧名").unwrap().name, "固定公司");
    }
}
