//! The sandbox platform's data: contracts, people, companies and open page sessions.

use std::collections::HashMap;

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

/// What an H5 page session is for.
#[derive(Debug, Clone)]
pub enum SessionKind {
    /// Sign `contract_id` as `contact`.
    Sign {
        /// Contract.
        contract_id: String,
        /// Signatory receiver.
        contact: String,
    },
    /// Personal auth with the request's JSON body.
    PersonalAuth(Value),
    /// Company auth with the request's JSON body and its request id.
    CompanyAuth {
        /// Request body.
        request: Value,
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
    pub callback_page: Option<String>,
    /// Where the server callback goes.
    pub callback_url: Option<String>,
    /// Unix ms after which the session is refused.
    pub expires_ms: u64,
}

/// Contract state.
#[derive(Debug, Clone)]
pub struct Contract {
    /// Fixture data, mutated as people sign.
    pub fixture: ContractFixture,
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

/// Everything the sandbox knows.
#[derive(Debug, Default)]
pub struct World {
    /// By id.
    pub contracts: HashMap<String, Contract>,
    /// By contact.
    pub persons: HashMap<String, Person>,
    /// By name.
    pub companies: HashMap<String, Company>,
    /// By ticket.
    pub sessions: HashMap<String, Session>,
}

impl World {
    /// Loads fixtures.
    pub fn new(fixtures: Fixtures) -> Self {
        Self {
            contracts: fixtures
                .contracts
                .into_iter()
                .map(|c| (c.id.clone(), Contract { fixture: c }))
                .collect(),
            persons: fixtures.persons.into_iter().map(|p| (p.contact.clone(), p)).collect(),
            companies: fixtures.companies.into_iter().map(|c| (c.name.clone(), c)).collect(),
            sessions: HashMap::new(),
        }
    }

    /// Finds a contract by id or business id.
    pub fn contract_id(&self, contract_id: Option<&str>, biz_id: Option<&str>) -> Option<String> {
        match (contract_id, biz_id) {
            (Some(id), _) if self.contracts.contains_key(id) => Some(id.to_owned()),
            (None, Some(biz)) => self
                .contracts
                .values()
                .find(|c| c.fixture.biz_id.as_deref() == Some(biz))
                .map(|c| c.fixture.id.clone()),
            _ => None,
        }
    }

    /// Whether `contact` has passed real-name authentication.
    pub fn is_real_name(&self, contact: &str) -> bool {
        self.persons.get(contact).is_some_and(|p| p.real_name)
    }
}
