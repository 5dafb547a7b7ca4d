//! The four actions and their parameters (seed 004), validated once for both the SDK and the
//! proxy: what fails here is never sent.

use crate::error::QysError;
use crate::value::{char_count, concat, decimal, join, object, Value};

/// The four SDK actions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// A person signs a contract.
    PersonalSign,
    /// A company's operator signs a contract for the company.
    EnterpriseSign,
    /// A person authenticates.
    PersonalAuth,
    /// A company authenticates.
    EnterpriseAuth,
}

impl Action {
    /// All actions, in seed 004's order.
    pub const ALL: [Action; 4] = [Action::PersonalSign, Action::PersonalAuth, Action::EnterpriseSign, Action::EnterpriseAuth];

    /// Parses the wire name.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|a| a.name() == name)
    }

    /// The wire (and JS method) name.
    pub fn name(self) -> &'static str {
        match self {
            Action::PersonalSign => "personalSign",
            Action::EnterpriseSign => "enterpriseSign",
            Action::PersonalAuth => "personalAuth",
            Action::EnterpriseAuth => "enterpriseAuth",
        }
    }

    /// Whether this is one of the two signing flows.
    pub fn is_sign(self) -> bool {
        matches!(self, Action::PersonalSign | Action::EnterpriseSign)
    }
}

/// `MOBILE` or `EMAIL`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContactType {
    /// 11-digit mainland mobile number.
    Mobile,
    /// Email address.
    Email,
}

impl ContactType {
    /// The platform's name.
    pub fn as_str(self) -> &'static str {
        match self {
            ContactType::Mobile => "MOBILE",
            ContactType::Email => "EMAIL",
        }
    }

    /// The type of a contact, if it is a mobile number or an email address.
    pub fn of(contact: &str) -> Option<Self> {
        if is_mobile(contact) {
            Some(ContactType::Mobile)
        } else if is_email(contact) {
            Some(ContactType::Email)
        } else {
            None
        }
    }
}

/// A contact with its inferred type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Contact {
    /// Mobile number or email address.
    pub value: String,
    /// Inferred (and, if stated, confirmed) type.
    pub kind: ContactType,
}

/// `personalSign` / `enterpriseSign` parameters.
#[derive(Debug, Clone, PartialEq)]
pub struct SignParams {
    /// Decimal contract id (1–19 digits, within the platform's 64-bit range).
    pub contract_id: String,
    /// The signatory (a person, or the company's operator).
    pub contact: Contact,
}

/// `personalAuth` parameters (seed 004 §3).
#[derive(Debug, Clone, PartialEq)]
pub struct PersonalAuthParams {
    /// One of [`PERSONAL_AUTH_MODES`].
    pub mode: &'static str,
    /// The person.
    pub contact: Contact,
    /// Prefilled name.
    pub username: Option<String>,
    /// Prefilled ID card number.
    pub id_card_no: Option<String>,
    /// Prefilled bank card number.
    pub bank_no: Option<String>,
    /// Prefilled bank reserved mobile.
    pub bank_mobile: Option<String>,
    /// Allow manual review after a failed attempt.
    pub manual: bool,
    /// Server callback URL (the proxy uses it only if allow-listed).
    pub callback_url: Option<String>,
    /// Fields the person may edit, from [`PERSONAL_MODIFY_FIELDS`].
    pub modify_fields: Vec<&'static str>,
}

/// `enterpriseAuth` parameters (seed 004 §6).
#[derive(Debug, Clone, PartialEq)]
pub struct EnterpriseAuthParams {
    /// The company.
    pub company_name: String,
    /// Applicant's name.
    pub applicant_name: Option<String>,
    /// Applicant, who becomes the company's administrator.
    pub applicant: Contact,
    /// Prefilled registration number.
    pub register_no: Option<String>,
    /// Prefilled legal person.
    pub legal_person: Option<String>,
    /// Server callback URL (the proxy uses it only if allow-listed).
    pub callback_url: Option<String>,
    /// Show the page's close button (default true).
    pub close_button: bool,
    /// Fields the applicant may edit, from [`COMPANY_MODIFY_FIELDS`].
    pub modify_fields: Vec<&'static str>,
}

/// Validated parameters of one action.
#[derive(Debug, Clone, PartialEq)]
pub enum Params {
    /// `personalSign` or `enterpriseSign`.
    Sign(SignParams),
    /// `personalAuth`.
    PersonalAuth(PersonalAuthParams),
    /// `enterpriseAuth`.
    EnterpriseAuth(EnterpriseAuthParams),
}

/// Personal auth modes of seed 004 §3.
pub const PERSONAL_AUTH_MODES: &[&str] = &["DEFAULT", "FACE", "BANK"];
/// Editable personal fields (seeds 000/001 `modifyFields`).
pub const PERSONAL_MODIFY_FIELDS: &[&str] = &["USERNAME", "IDCARDNO", "BANKNO", "BANKMOBILE"];
/// Editable company fields (seed 003 `modifyFields`).
pub const COMPANY_MODIFY_FIELDS: &[&str] = &["corpName", "registerNo", "legalPerson"];
/// Contact types a caller may state.
pub const CONTACT_TYPES: &[&str] = &["MOBILE", "EMAIL"];

/// Maximum lengths, in characters.
pub mod limits {
    /// Contacts.
    pub const CONTACT: usize = 64;
    /// Names of people.
    pub const NAME: usize = 64;
    /// Company names.
    pub const COMPANY_NAME: usize = 128;
    /// ID card, bank card and register numbers.
    pub const NUMBER: usize = 32;
    /// URLs.
    pub const URL: usize = 512;
    /// Contract id digits.
    pub const CONTRACT_ID_DIGITS: usize = 19;
}

/// Whether `s` is a mainland mobile number (11 digits starting with 1).
pub fn is_mobile(s: &str) -> bool {
    s.len() == 11 && s.starts_with('1') && s.bytes().all(|b| b.is_ascii_digit())
}

/// Whether `s` looks like an email address (one `@`, a dotted domain, no spaces).
pub fn is_email(s: &str) -> bool {
    let Some((local, domain)) = s.split_once('@') else { return false };
    !local.is_empty()
        && !domain.contains('@')
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !s.chars().any(|c| c.is_whitespace() || c.is_control())
}

const MAX_SAFE_INTEGER: f64 = 9_007_199_254_740_991.0;

/// Checks a contract id: a string of 1–19 decimal digits within i64, or a JS number that is
/// still exact (`Number.isSafeInteger`). Returns the decimal string.
pub fn contract_id(value: Option<&Value>, param: &str) -> Result<String, QysError> {
    match value {
        Some(Value::String(s)) => {
            if s.is_empty() || s.len() > limits::CONTRACT_ID_DIGITS || !s.bytes().all(|b| b.is_ascii_digit()) {
                return Err(QysError::invalid_at(param, &[" must be a string of 1–19 decimal digits"]));
            }
            if s.len() == limits::CONTRACT_ID_DIGITS && s.as_str() > "9223372036854775807" {
                return Err(QysError::invalid_at(param, &[" is larger than any contract id"]));
            }
            if s.bytes().all(|b| b == b'0') {
                return Err(QysError::invalid_at(param, &[" may not be zero"]));
            }
            Ok(s.clone())
        }
        Some(Value::Number(n)) if n.fract() == 0.0 && *n >= 1.0 && *n <= MAX_SAFE_INTEGER => Ok(decimal(*n as u64)),
        Some(Value::Number(n)) if n.fract() == 0.0 && *n > MAX_SAFE_INTEGER => Err(QysError::invalid_at(
            param,
            &[" is a number above 2^53, not a safe integer: JavaScript has already rounded it; pass the id as a string, e.g. '2603417854124281870'"],
        )),
        None | Some(Value::Null) => Err(QysError::invalid_at(param, &[" is required"])),
        Some(other) => Err(QysError::invalid_at(param, &[" must be a decimal string, not ", other.type_name()])),
    }
}

impl Params {
    /// Validates the parameters object of `action` (the wire shape, seed 004's names).
    pub fn parse(action: Action, params: &Value) -> Result<Self, QysError> {
        let f = Fields::new(params, "")?;
        Ok(match action {
            Action::PersonalSign | Action::EnterpriseSign => Params::Sign(SignParams {
                contract_id: contract_id(params.get("contractId"), "contractId")?,
                contact: f.contact("contact", "contactType")?,
            }),
            Action::PersonalAuth => Params::PersonalAuth(PersonalAuthParams {
                mode: f.enum_opt("mode", PERSONAL_AUTH_MODES)?.unwrap_or("DEFAULT"),
                contact: f.contact("contact", "contactType")?,
                username: f.text_opt("username", limits::NAME)?,
                id_card_no: f.text_opt("idCardNo", limits::NUMBER)?,
                bank_no: f.digits_opt("bankNo", limits::NUMBER)?,
                bank_mobile: f.mobile_opt("bankMobile")?,
                manual: f.bool_opt("manual")?.unwrap_or(false),
                callback_url: f.url_opt("callbackUrl")?,
                modify_fields: f.enum_list("modifyFields", PERSONAL_MODIFY_FIELDS)?,
            }),
            Action::EnterpriseAuth => {
                let company_name = f.text_req("companyName", limits::COMPANY_NAME)?;
                let bean = f.object_req("companyAuthBean")?;
                if let Some(inner) = bean.text_opt("companyName", limits::COMPANY_NAME)? {
                    if inner != company_name {
                        return Err(QysError::invalid(
                            "companyAuthBean.companyName",
                            "companyAuthBean.companyName differs from companyName; give one name",
                        ));
                    }
                }
                let applicant = bean.object_req("applicant")?;
                Params::EnterpriseAuth(EnterpriseAuthParams {
                    company_name,
                    applicant_name: applicant.text_opt("name", limits::NAME)?,
                    applicant: applicant.contact("contact", "contactType")?,
                    register_no: bean.text_opt("registerNo", limits::NUMBER)?,
                    legal_person: bean.text_opt("legalPerson", limits::NAME)?,
                    callback_url: bean.url_opt("callbackUrl")?,
                    close_button: bean.bool_opt("closeButton")?.unwrap_or(true),
                    modify_fields: bean.enum_list("modifyFields", COMPANY_MODIFY_FIELDS)?,
                })
            }
        })
    }

    /// The canonical wire object (what the SDK sends and the proxy parses back).
    pub fn to_value(&self) -> Value {
        let contact = |c: &Contact| -> [(&'static str, Value); 2] {
            [("contact", c.value.as_str().into()), ("contactType", c.kind.as_str().into())]
        };
        let list = |items: &[&str]| {
            if items.is_empty() {
                Value::Null
            } else {
                Value::Array(items.iter().map(|s| Value::from(*s)).collect())
            }
        };
        match self {
            Params::Sign(p) => {
                let [c, t] = contact(&p.contact);
                object([("contractId", p.contract_id.as_str().into()), c, t])
            }
            Params::PersonalAuth(p) => {
                let [c, t] = contact(&p.contact);
                object([
                    ("mode", p.mode.into()),
                    c,
                    t,
                    ("username", p.username.clone().into()),
                    ("idCardNo", p.id_card_no.clone().into()),
                    ("bankNo", p.bank_no.clone().into()),
                    ("bankMobile", p.bank_mobile.clone().into()),
                    ("manual", p.manual.then_some(true).into()),
                    ("callbackUrl", p.callback_url.clone().into()),
                    ("modifyFields", list(&p.modify_fields)),
                ])
            }
            Params::EnterpriseAuth(p) => {
                let [c, t] = contact(&p.applicant);
                let applicant = object([("name", p.applicant_name.clone().into()), c, t]);
                let bean = object([
                    ("applicant", applicant),
                    ("registerNo", p.register_no.clone().into()),
                    ("legalPerson", p.legal_person.clone().into()),
                    ("callbackUrl", p.callback_url.clone().into()),
                    ("closeButton", (!p.close_button).then_some(false).into()),
                    ("modifyFields", list(&p.modify_fields)),
                ]);
                object([("companyName", p.company_name.as_str().into()), ("companyAuthBean", bean)])
            }
        }
    }

    /// The contact the flow is for (signatory, person or applicant).
    pub fn contact(&self) -> &Contact {
        match self {
            Params::Sign(p) => &p.contact,
            Params::PersonalAuth(p) => &p.contact,
            Params::EnterpriseAuth(p) => &p.applicant,
        }
    }
}

/// Typed reads of one object's members, naming the full path in errors.
struct Fields<'a> {
    members: &'a Value,
    prefix: String,
}

impl<'a> Fields<'a> {
    fn new(value: &'a Value, prefix: &str) -> Result<Self, QysError> {
        match value {
            Value::Object(_) => Ok(Self { members: value, prefix: prefix.to_owned() }),
            other => {
                let param = if prefix.is_empty() { "params" } else { prefix.trim_end_matches('.') };
                Err(QysError::invalid_at(param, &[" must be an object, not ", other.type_name()]))
            }
        }
    }

    fn path(&self, key: &str) -> String {
        concat(&[&self.prefix, key])
    }

    fn err(&self, key: &str, what: &[&str]) -> QysError {
        QysError::invalid_at(&self.path(key), what)
    }

    fn object_req(&self, key: &str) -> Result<Fields<'a>, QysError> {
        match self.members.get(key) {
            None | Some(Value::Null) => Err(self.err(key, &[" is required"])),
            Some(v) => Fields::new(v, &concat(&[&self.path(key), "."])),
        }
    }

    fn str_opt(&self, key: &str) -> Result<Option<&'a str>, QysError> {
        match self.members.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(other) => Err(self.err(key, &[" must be a string, not ", other.type_name()])),
        }
    }

    fn text_opt(&self, key: &str, max: usize) -> Result<Option<String>, QysError> {
        let Some(s) = self.str_opt(key)? else { return Ok(None) };
        let s = s.trim();
        if s.is_empty() {
            return Ok(None);
        }
        if char_count(s) > max {
            return Err(self.err(key, &[" is longer than ", &decimal(max as u64), " characters"]));
        }
        // Control characters: C0, DEL and C1 (U+0080–U+009F, encoded C2 80–C2 9F).
        if s.bytes().any(|b| b < 0x20 || b == 0x7f) || s.as_bytes().windows(2).any(|w| w[0] == 0xC2 && w[1] < 0xA0) {
            return Err(self.err(key, &[" contains control characters"]));
        }
        Ok(Some(s.to_owned()))
    }

    fn text_req(&self, key: &str, max: usize) -> Result<String, QysError> {
        self.text_opt(key, max)?.ok_or_else(|| self.err(key, &[" is required"]))
    }

    fn digits_opt(&self, key: &str, max: usize) -> Result<Option<String>, QysError> {
        let v = self.text_opt(key, max)?;
        match &v {
            Some(s) if !s.bytes().all(|b| b.is_ascii_digit()) => Err(self.err(key, &[" must contain digits only"])),
            _ => Ok(v),
        }
    }

    fn mobile_opt(&self, key: &str) -> Result<Option<String>, QysError> {
        let v = self.text_opt(key, limits::CONTACT)?;
        match &v {
            Some(s) if !is_mobile(s) => Err(self.err(key, &[" must be an 11-digit mobile number"])),
            _ => Ok(v),
        }
    }

    fn bool_opt(&self, key: &str) -> Result<Option<bool>, QysError> {
        match self.members.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(other) => Err(self.err(key, &[" must be a boolean, not ", other.type_name()])),
        }
    }

    fn enum_opt(&self, key: &str, allowed: &[&'static str]) -> Result<Option<&'static str>, QysError> {
        let Some(s) = self.str_opt(key)? else { return Ok(None) };
        match allowed.iter().copied().find(|a| *a == s) {
            Some(a) => Ok(Some(a)),
            None => Err(self.err(key, &[" must be one of ", &join(allowed, ", ")])),
        }
    }

    fn enum_list(&self, key: &str, allowed: &[&'static str]) -> Result<Vec<&'static str>, QysError> {
        let items = match self.members.get(key) {
            None | Some(Value::Null) => return Ok(Vec::new()),
            Some(Value::Array(items)) => items,
            Some(other) => return Err(self.err(key, &[" must be an array, not ", other.type_name()])),
        };
        let mut out = Vec::new();
        for item in items {
            match item.as_str().and_then(|s| allowed.iter().copied().find(|a| *a == s)) {
                Some(a) if !out.contains(&a) => out.push(a),
                Some(_) => {}
                None => return Err(self.err(key, &[" items must be among ", &join(allowed, ", ")])),
            }
        }
        Ok(out)
    }

    fn url_opt(&self, key: &str) -> Result<Option<String>, QysError> {
        let v = self.text_opt(key, limits::URL)?;
        match &v {
            Some(s) if !(s.starts_with("https://") || s.starts_with("http://")) => {
                Err(self.err(key, &[" must be an http(s) URL"]))
            }
            _ => Ok(v),
        }
    }

    fn contact(&self, key: &str, type_key: &str) -> Result<Contact, QysError> {
        let value = self.text_opt(key, limits::CONTACT)?.ok_or_else(|| self.err(key, &[" is required"]))?;
        let kind = ContactType::of(&value).ok_or_else(|| {
            self.err(key, &[" must be an 11-digit mobile number or an email address (not a masked one like 137******44)"])
        })?;
        if let Some(stated) = self.enum_opt(type_key, CONTACT_TYPES)? {
            if stated != kind.as_str() {
                return Err(self.err(type_key, &[" is ", stated, " but ", &self.path(key), " looks like ", kind.as_str()]));
            }
        }
        Ok(Contact { value, kind })
    }
}
