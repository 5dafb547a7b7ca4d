//! The four actions and their parameters (seed 004), validated once for both the SDK and the
//! proxy: what fails here is never sent.

use crate::error::QysError;
use crate::value::{char_count, concat, decimal, join, object, split_once_byte, Value};

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
    pub const ALL: [Action; 4] = [
        Action::PersonalSign,
        Action::PersonalAuth,
        Action::EnterpriseSign,
        Action::EnterpriseAuth,
    ];

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
    s.len() == 11 && s.starts_with("1") && s.bytes().all(|b| b.is_ascii_digit())
}

/// Whether `s` looks like an email address (one `@`, a dotted domain, no spaces).
pub fn is_email(s: &str) -> bool {
    let Some((local, domain)) = split_once_byte(s, b'@') else {
        return false;
    };
    !local.is_empty()
        && !domain.bytes().any(|b| b == b'@')
        && domain.bytes().any(|b| b == b'.')
        && !domain.starts_with(".")
        && !domain.ends_with(".")
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

/// How one member of the parameters is checked and written on the wire. The four actions'
/// parameters are tables of these ([`SIGN`], …), read by one small interpreter ([`check`]):
/// a table is a fraction of the code that hand-written validation of each field was.
#[derive(Debug, Clone, Copy)]
enum Rule {
    /// [`contract_id`].
    ContractId,
    /// A required mobile number or email address, and its optional stated type at `<key>Type`;
    /// both are written.
    Contact,
    /// Trimmed text of at most this many characters, without control characters; empty text
    /// counts as absent.
    Text(usize),
    /// Required [`Rule::Text`].
    Required(usize),
    /// Text of decimal digits.
    Digits(usize),
    /// An 11-digit mobile number.
    Mobile,
    /// An http(s) URL.
    Url,
    /// A boolean, written only when it is not the default.
    Flag(bool),
    /// One of these names (not trimmed), else the default.
    OneOf(&'static [&'static str], &'static str),
    /// A list of these names, each once; written only when not empty.
    List(&'static [&'static str]),
    /// A required object, checked against its own table.
    Object(&'static [(&'static str, Rule)]),
    /// The company name again (`companyAuthBean.companyName`): checked, must equal the
    /// top-level `companyName`, not written.
    SameCompanyName,
}

const SIGN: &[(&str, Rule)] = &[("contractId", Rule::ContractId), ("contact", Rule::Contact)];
const PERSONAL_AUTH: &[(&str, Rule)] = &[
    ("mode", Rule::OneOf(PERSONAL_AUTH_MODES, "DEFAULT")),
    ("contact", Rule::Contact),
    ("username", Rule::Text(limits::NAME)),
    ("idCardNo", Rule::Text(limits::NUMBER)),
    ("bankNo", Rule::Digits(limits::NUMBER)),
    ("bankMobile", Rule::Mobile),
    ("manual", Rule::Flag(false)),
    ("callbackUrl", Rule::Url),
    ("modifyFields", Rule::List(PERSONAL_MODIFY_FIELDS)),
];
const APPLICANT: &[(&str, Rule)] = &[
    ("name", Rule::Text(limits::NAME)),
    ("contact", Rule::Contact),
];
const COMPANY_AUTH_BEAN: &[(&str, Rule)] = &[
    ("companyName", Rule::SameCompanyName),
    ("applicant", Rule::Object(APPLICANT)),
    ("registerNo", Rule::Text(limits::NUMBER)),
    ("legalPerson", Rule::Text(limits::NAME)),
    ("callbackUrl", Rule::Url),
    ("closeButton", Rule::Flag(true)),
    ("modifyFields", Rule::List(COMPANY_MODIFY_FIELDS)),
];
const ENTERPRISE_AUTH: &[(&str, Rule)] = &[
    ("companyName", Rule::Required(limits::COMPANY_NAME)),
    ("companyAuthBean", Rule::Object(COMPANY_AUTH_BEAN)),
];

/// Validates the parameters object of `action` (seed 004's names) and returns its canonical
/// wire object: what the SDK sends and the proxy reads back (trimmed text, the contact's type,
/// defaults that matter written, the rest left out).
pub fn normalize(action: Action, params: &Value) -> Result<Value, QysError> {
    let rules = match action {
        Action::PersonalSign | Action::EnterpriseSign => SIGN,
        Action::PersonalAuth => PERSONAL_AUTH,
        Action::EnterpriseAuth => ENTERPRISE_AUTH,
    };
    let mut out = Vec::new();
    check(params, "", rules, params, &mut out)?;
    Ok(Value::Object(out))
}

/// Checks `object` (at `prefix`, `""` or ending in `.`) against `rules`, in order, pushing the
/// wire members onto `out`.
fn check(
    object: &Value,
    prefix: &str,
    rules: &[(&str, Rule)],
    root: &Value,
    out: &mut Vec<(String, Value)>,
) -> Result<(), QysError> {
    if !matches!(object, Value::Object(_)) {
        let param = if prefix.is_empty() {
            "params"
        } else {
            prefix.strip_suffix(".").unwrap_or(prefix)
        };
        return Err(QysError::invalid_at(
            param,
            &[" must be an object, not ", object.type_name()],
        ));
    }
    for &(key, rule) in rules {
        let path = concat(&[prefix, key]);
        let member = object.get(key).filter(|v| !matches!(v, Value::Null));
        let err = |what: &[&str]| QysError::invalid_at(&path, what);
        let wire = match rule {
            Rule::ContractId => Value::String(contract_id(member, &path)?),
            Rule::Contact => {
                let value =
                    text(member, &path, limits::CONTACT)?.ok_or_else(|| err(&[" is required"]))?;
                let kind = ContactType::of(&value).ok_or_else(|| {
                    err(&[" must be an 11-digit mobile number or an email address (not a masked one like 137******44)"])
                })?;
                let type_key = concat(&[key, "Type"]);
                let type_path = concat(&[prefix, &type_key]);
                if let Some(stated) = one_of(object.get(&type_key), &type_path, CONTACT_TYPES)? {
                    if stated != kind.as_str() {
                        return Err(QysError::invalid_at(
                            &type_path,
                            &[
                                " is ",
                                stated,
                                " but ",
                                &path,
                                " looks like ",
                                kind.as_str(),
                            ],
                        ));
                    }
                }
                out.push((key.to_owned(), Value::String(value)));
                out.push((type_key, kind.as_str().into()));
                continue;
            }
            Rule::Text(max) => text(member, &path, max)?.into(),
            Rule::Required(max) => {
                Value::String(text(member, &path, max)?.ok_or_else(|| err(&[" is required"]))?)
            }
            Rule::Digits(max) => {
                let value = text(member, &path, max)?;
                if value
                    .as_ref()
                    .is_some_and(|s| !s.bytes().all(|b| b.is_ascii_digit()))
                {
                    return Err(err(&[" must contain digits only"]));
                }
                value.into()
            }
            Rule::Mobile => {
                let value = text(member, &path, limits::CONTACT)?;
                if value.as_deref().is_some_and(|s| !is_mobile(s)) {
                    return Err(err(&[" must be an 11-digit mobile number"]));
                }
                value.into()
            }
            Rule::Url => {
                let value = text(member, &path, limits::URL)?;
                if value
                    .as_deref()
                    .is_some_and(|s| !(s.starts_with("https://") || s.starts_with("http://")))
                {
                    return Err(err(&[" must be an http(s) URL"]));
                }
                value.into()
            }
            Rule::Flag(default) => match member {
                None => Value::Null,
                Some(Value::Bool(b)) => (*b != default).then_some(*b).into(),
                Some(other) => return Err(err(&[" must be a boolean, not ", other.type_name()])),
            },
            Rule::OneOf(allowed, default) => {
                one_of(member, &path, allowed)?.unwrap_or(default).into()
            }
            Rule::List(allowed) => {
                let items = match member {
                    None => &[][..],
                    Some(Value::Array(items)) => items,
                    Some(other) => {
                        return Err(err(&[" must be an array, not ", other.type_name()]))
                    }
                };
                let mut names: Vec<Value> = Vec::new();
                for item in items {
                    let name = item.as_str().filter(|s| allowed.contains(s));
                    let Some(name) = name else {
                        return Err(err(&[" items must be among ", &join(allowed, ", ")]));
                    };
                    if !names.iter().any(|n| n.as_str() == Some(name)) {
                        names.push(name.into());
                    }
                }
                if names.is_empty() {
                    Value::Null
                } else {
                    Value::Array(names)
                }
            }
            Rule::Object(rules) => {
                let member = member.ok_or_else(|| err(&[" is required"]))?;
                let mut members = Vec::new();
                check(member, &concat(&[&path, "."]), rules, root, &mut members)?;
                Value::Object(members)
            }
            Rule::SameCompanyName => {
                let outer = root
                    .get("companyName")
                    .and_then(Value::as_str)
                    .map(str::trim);
                if text(member, &path, limits::COMPANY_NAME)?
                    .is_some_and(|inner| Some(inner.as_str()) != outer)
                {
                    return Err(QysError::invalid(
                        &*path,
                        "companyAuthBean.companyName differs from companyName; give one name",
                    ));
                }
                continue;
            }
        };
        if !matches!(wire, Value::Null) {
            out.push((key.to_owned(), wire));
        }
    }
    Ok(())
}

/// A string member, if present (not trimmed).
fn string<'a>(member: Option<&'a Value>, path: &str) -> Result<Option<&'a str>, QysError> {
    match member {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(other) => Err(QysError::invalid_at(
            path,
            &[" must be a string, not ", other.type_name()],
        )),
    }
}

/// [`Rule::Text`]: trimmed, `None` when absent or empty.
fn text(member: Option<&Value>, path: &str, max: usize) -> Result<Option<String>, QysError> {
    let Some(s) = string(member, path)? else {
        return Ok(None);
    };
    let s = s.trim();
    if s.is_empty() {
        return Ok(None);
    }
    if char_count(s) > max {
        return Err(QysError::invalid_at(
            path,
            &[" is longer than ", &decimal(max as u64), " characters"],
        ));
    }
    // Control characters: C0, DEL and C1 (U+0080–U+009F, encoded C2 80–C2 9F).
    if s.bytes().any(|b| b < 0x20 || b == 0x7f)
        || s.as_bytes().windows(2).any(|w| w[0] == 0xC2 && w[1] < 0xA0)
    {
        return Err(QysError::invalid_at(
            path,
            &[" contains control characters"],
        ));
    }
    Ok(Some(s.to_owned()))
}

/// [`Rule::OneOf`] without its default.
fn one_of(
    member: Option<&Value>,
    path: &str,
    allowed: &[&'static str],
) -> Result<Option<&'static str>, QysError> {
    let Some(s) = string(member, path)? else {
        return Ok(None);
    };
    match allowed.iter().find(|a| **a == s) {
        Some(a) => Ok(Some(a)),
        None => Err(QysError::invalid_at(
            path,
            &[" must be one of ", &join(allowed, ", ")],
        )),
    }
}

impl Params {
    /// Validates the parameters object of `action` ([`normalize`]) into typed parameters.
    pub fn parse(action: Action, params: &Value) -> Result<Self, QysError> {
        Ok(Self::from_wire(action, &normalize(action, params)?))
    }

    /// The typed parameters of a canonical wire object ([`normalize`]'s output).
    fn from_wire(action: Action, wire: &Value) -> Self {
        let text = |v: &Value, key: &str| v.get(key).and_then(Value::as_str).map(str::to_owned);
        let contact = |v: &Value| Contact {
            value: text(v, "contact").unwrap_or_default(),
            kind: if text(v, "contactType").as_deref() == Some("MOBILE") {
                ContactType::Mobile
            } else {
                ContactType::Email
            },
        };
        let names = |v: &Value, allowed: &[&'static str]| match v.get("modifyFields") {
            Some(Value::Array(items)) => items
                .iter()
                .filter_map(|item| allowed.iter().copied().find(|a| item.as_str() == Some(*a)))
                .collect(),
            _ => Vec::new(),
        };
        match action {
            Action::PersonalSign | Action::EnterpriseSign => Params::Sign(SignParams {
                contract_id: text(wire, "contractId").unwrap_or_default(),
                contact: contact(wire),
            }),
            Action::PersonalAuth => Params::PersonalAuth(PersonalAuthParams {
                mode: PERSONAL_AUTH_MODES
                    .iter()
                    .find(|m| wire.get("mode").and_then(Value::as_str) == Some(**m))
                    .unwrap_or(&"DEFAULT"),
                contact: contact(wire),
                username: text(wire, "username"),
                id_card_no: text(wire, "idCardNo"),
                bank_no: text(wire, "bankNo"),
                bank_mobile: text(wire, "bankMobile"),
                manual: wire.get("manual") == Some(&Value::Bool(true)),
                callback_url: text(wire, "callbackUrl"),
                modify_fields: names(wire, PERSONAL_MODIFY_FIELDS),
            }),
            Action::EnterpriseAuth => {
                let bean = wire.get("companyAuthBean").unwrap_or(&Value::Null);
                let applicant = bean.get("applicant").unwrap_or(&Value::Null);
                Params::EnterpriseAuth(EnterpriseAuthParams {
                    company_name: text(wire, "companyName").unwrap_or_default(),
                    applicant_name: text(applicant, "name"),
                    applicant: contact(applicant),
                    register_no: text(bean, "registerNo"),
                    legal_person: text(bean, "legalPerson"),
                    callback_url: text(bean, "callbackUrl"),
                    close_button: bean.get("closeButton") != Some(&Value::Bool(false)),
                    modify_fields: names(bean, COMPANY_MODIFY_FIELDS),
                })
            }
        }
    }

    /// The canonical wire object ([`normalize`]'s output for these parameters).
    pub fn to_value(&self) -> Value {
        let contact = |c: &Contact| -> [(&'static str, Value); 2] {
            [
                ("contact", c.value.as_str().into()),
                ("contactType", c.kind.as_str().into()),
            ]
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
                object([
                    ("companyName", p.company_name.as_str().into()),
                    ("companyAuthBean", bean),
                ])
            }
        }
    }
}
