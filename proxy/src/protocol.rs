//! Protocol v1 between the SDK and the proxy (see `docs/protocol.md`): the request envelope,
//! the four allowed actions with their validated parameters, and the proxy's own error codes.

use serde::Deserialize;
use serde_json::{json, Map, Value};

/// The only protocol version this proxy speaks.
pub const VERSION: u32 = 1;

/// Proxy-side error codes (platform codes such as 1110 and 1605 pass through unchanged).
pub mod codes {
    /// The body is not a form with `requestData`, or `requestData` is not the JSON envelope.
    pub const BAD_REQUEST_DATA: i64 = 40000;
    /// `v` is not 1.
    pub const UNSUPPORTED_VERSION: i64 = 40001;
    /// `action` is not one of the four SDK actions.
    pub const UNKNOWN_ACTION: i64 = 40002;
    /// A parameter is missing, of the wrong type, too long or outside its enum.
    pub const INVALID_PARAM: i64 = 40003;
    /// The page's origin is not in the allowed origins.
    pub const ORIGIN_NOT_ALLOWED: i64 = 40300;
    /// The body is larger than 16 KiB.
    pub const BODY_TOO_LARGE: i64 = 41300;
    /// The content type is neither a form nor JSON.
    pub const UNSUPPORTED_MEDIA_TYPE: i64 = 41500;
    /// The platform could not be reached.
    pub const UPSTREAM_UNAVAILABLE: i64 = 50200;
    /// The platform answered something that is not its JSON envelope.
    pub const UPSTREAM_BAD_RESPONSE: i64 = 50201;
    /// The platform did not answer within the configured timeouts.
    pub const UPSTREAM_TIMEOUT: i64 = 50400;
    /// A server callback could not be stored; the platform should retry.
    pub const CALLBACK_NOT_STORED: i64 = 50000;
    /// A server callback lacks a field or has a value outside its enum.
    pub const CALLBACK_MALFORMED: i64 = 1001;
}

/// A rejected request: the code and a message a person can act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProtocolError {
    /// One of [`codes`].
    pub code: i64,
    /// Human-readable explanation naming the offending field.
    pub message: String,
}

impl ProtocolError {
    fn new(code: i64, message: impl Into<String>) -> Self {
        Self { code, message: message.into() }
    }

    fn param(message: impl Into<String>) -> Self {
        Self::new(codes::INVALID_PARAM, message)
    }
}

/// The four actions the SDK may ask for; nothing else reaches the platform.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub enum Action {
    /// Personal signatory signs a contract.
    PersonalSign,
    /// Company operator signs a contract for the company.
    EnterpriseSign,
    /// A person authenticates.
    PersonalAuth,
    /// A company authenticates.
    EnterpriseAuth,
}

impl Action {
    /// Parses the wire name.
    pub fn from_name(name: &str) -> Option<Self> {
        Some(match name {
            "personalSign" => Self::PersonalSign,
            "enterpriseSign" => Self::EnterpriseSign,
            "personalAuth" => Self::PersonalAuth,
            "enterpriseAuth" => Self::EnterpriseAuth,
            _ => return None,
        })
    }

    /// The wire name.
    pub fn name(self) -> &'static str {
        match self {
            Self::PersonalSign => "personalSign",
            Self::EnterpriseSign => "enterpriseSign",
            Self::PersonalAuth => "personalAuth",
            Self::EnterpriseAuth => "enterpriseAuth",
        }
    }
}

/// A validated SDK request.
#[derive(Debug, Clone, PartialEq)]
pub struct SdkRequest {
    /// Which flow.
    pub action: Action,
    /// The SDK's per-call random value, echoed in the return message.
    pub state: String,
    /// The flow's validated parameters.
    pub params: Params,
}

/// Validated parameters of one action.
#[derive(Debug, Clone, PartialEq)]
pub enum Params {
    /// `personalSign` / `enterpriseSign`.
    Sign(SignParams),
    /// `personalAuth`.
    PersonalAuth(PersonalAuthParams),
    /// `enterpriseAuth`.
    EnterpriseAuth(EnterpriseAuthParams),
}

/// A contact and its type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Contact {
    /// Mobile number or email address.
    pub value: String,
    /// `MOBILE` or `EMAIL`.
    pub kind: &'static str,
}

impl Contact {
    /// The platform's `User`/`UserInfo` object.
    pub fn to_user(&self) -> Value {
        json!({"contact": self.value, "contactType": self.kind})
    }
}

/// Parameters of both sign actions.
#[derive(Debug, Clone, PartialEq)]
pub struct SignParams {
    /// Decimal contract id (≤ 19 digits), kept as a string.
    pub contract_id: String,
    /// The signatory.
    pub contact: Contact,
}

/// Parameters of `personalAuth` (seed 004 §3).
#[derive(Debug, Clone, PartialEq)]
pub struct PersonalAuthParams {
    /// `DEFAULT`, `FACE` or `BANK`.
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
    /// Browser-supplied server callback URL (used only if allow-listed).
    pub callback_url: Option<String>,
    /// Fields the person may edit.
    pub modify_fields: Vec<&'static str>,
}

/// Parameters of `enterpriseAuth` (seed 004 §6).
#[derive(Debug, Clone, PartialEq)]
pub struct EnterpriseAuthParams {
    /// The company to authenticate.
    pub company_name: String,
    /// The applicant's name.
    pub applicant_name: Option<String>,
    /// The applicant, who becomes the company's administrator.
    pub applicant: Contact,
    /// Prefilled registration number.
    pub register_no: Option<String>,
    /// Prefilled legal person.
    pub legal_person: Option<String>,
    /// Browser-supplied server callback URL (used only if allow-listed).
    pub callback_url: Option<String>,
    /// Show the page's close button (default true).
    pub close_button: bool,
    /// Fields the applicant may edit (`corpName`, `registerNo`, `legalPerson`).
    pub modify_fields: Vec<&'static str>,
}

/// Personal auth modes of seed 004 §3.
pub const PERSONAL_AUTH_MODES: &[&str] = &["DEFAULT", "FACE", "BANK"];
/// Editable personal fields (seeds 000/001 `modifyFields`).
pub const PERSONAL_MODIFY_FIELDS: &[&str] = &["USERNAME", "IDCARDNO", "BANKNO", "BANKMOBILE"];
/// Editable company fields (seed 003 `modifyFields`).
pub const COMPANY_MODIFY_FIELDS: &[&str] = &["corpName", "registerNo", "legalPerson"];
/// Contact types the SDK may state explicitly.
pub const CONTACT_TYPES: &[&str] = &["MOBILE", "EMAIL"];

/// Maximum lengths, in characters.
pub mod limits {
    /// `state`.
    pub const STATE: usize = 64;
    /// Minimum `state` length (128 bits in base64url ≈ 22 chars; we accept 16+).
    pub const STATE_MIN: usize = 16;
    /// `contact`.
    pub const CONTACT: usize = 64;
    /// Names of people.
    pub const NAME: usize = 64;
    /// Company names.
    pub const COMPANY_NAME: usize = 128;
    /// ID card, bank card and register numbers.
    pub const NUMBER: usize = 32;
    /// `callbackUrl`.
    pub const URL: usize = 512;
    /// `contractId` digits.
    pub const CONTRACT_ID_DIGITS: usize = 19;
}

/// Parses and validates the `requestData` JSON text.
pub fn parse_request(request_data: &str) -> Result<SdkRequest, ProtocolError> {
    let value: Value = serde_json::from_str(request_data)
        .map_err(|e| ProtocolError::new(codes::BAD_REQUEST_DATA, format!("requestData is not JSON: {e}")))?;
    parse_envelope(value)
}

/// Validates an already-decoded envelope object.
pub fn parse_envelope(value: Value) -> Result<SdkRequest, ProtocolError> {
    let Value::Object(mut obj) = value else {
        return Err(ProtocolError::new(codes::BAD_REQUEST_DATA, "requestData must be a JSON object"));
    };
    match obj.get("v") {
        Some(v) if v.as_u64() == Some(u64::from(VERSION)) => {}
        Some(v) => {
            return Err(ProtocolError::new(
                codes::UNSUPPORTED_VERSION,
                format!("protocol version {v} is not supported; this proxy speaks v{VERSION}"),
            ))
        }
        None => return Err(ProtocolError::new(codes::BAD_REQUEST_DATA, "requestData.v is required")),
    }
    let action_name = match obj.get("action") {
        Some(Value::String(s)) => s.clone(),
        _ => return Err(ProtocolError::new(codes::BAD_REQUEST_DATA, "requestData.action must be a string")),
    };
    let action = Action::from_name(&action_name).ok_or_else(|| {
        ProtocolError::new(
            codes::UNKNOWN_ACTION,
            format!(
                "action {:?} is not allowed; allowed: personalSign, enterpriseSign, personalAuth, enterpriseAuth",
                truncate(&action_name, 40)
            ),
        )
    })?;
    let state = match obj.get("state") {
        Some(Value::String(s)) if valid_state(s) => s.clone(),
        _ => {
            return Err(ProtocolError::new(
                codes::BAD_REQUEST_DATA,
                format!(
                    "requestData.state must be {}–{} characters of A–Z a–z 0–9 _ -",
                    limits::STATE_MIN,
                    limits::STATE
                ),
            ))
        }
    };
    let params = match obj.remove("params") {
        Some(Value::Object(p)) => p,
        _ => return Err(ProtocolError::new(codes::BAD_REQUEST_DATA, "requestData.params must be an object")),
    };
    let mut fields = Fields { obj: &params, prefix: "params" };
    let params = match action {
        Action::PersonalSign | Action::EnterpriseSign => Params::Sign(SignParams {
            contract_id: fields.contract_id("contractId")?,
            contact: fields.contact("contact", "contactType")?,
        }),
        Action::PersonalAuth => Params::PersonalAuth(PersonalAuthParams {
            mode: fields.enum_opt("mode", PERSONAL_AUTH_MODES)?.unwrap_or("DEFAULT"),
            contact: fields.contact("contact", "contactType")?,
            username: fields.text_opt("username", limits::NAME)?,
            id_card_no: fields.text_opt("idCardNo", limits::NUMBER)?,
            bank_no: fields.digits_opt("bankNo", limits::NUMBER)?,
            bank_mobile: fields.mobile_opt("bankMobile")?,
            manual: fields.bool_opt("manual")?.unwrap_or(false),
            callback_url: fields.url_opt("callbackUrl")?,
            modify_fields: fields.enum_list("modifyFields", PERSONAL_MODIFY_FIELDS)?,
        }),
        Action::EnterpriseAuth => {
            let company_name = fields.text_req("companyName", limits::COMPANY_NAME)?;
            let bean = match params.get("companyAuthBean") {
                Some(Value::Object(b)) => b,
                None => return Err(ProtocolError::param("params.companyAuthBean is required")),
                Some(_) => return Err(ProtocolError::param("params.companyAuthBean must be an object")),
            };
            fields = Fields { obj: bean, prefix: "params.companyAuthBean" };
            if let Some(inner) = fields.text_opt("companyName", limits::COMPANY_NAME)? {
                if inner != company_name {
                    return Err(ProtocolError::param(
                        "params.companyAuthBean.companyName differs from params.companyName; give one name",
                    ));
                }
            }
            let applicant = match bean.get("applicant") {
                Some(Value::Object(a)) => a,
                None => return Err(ProtocolError::param("params.companyAuthBean.applicant is required")),
                Some(_) => return Err(ProtocolError::param("params.companyAuthBean.applicant must be an object")),
            };
            let app = Fields { obj: applicant, prefix: "params.companyAuthBean.applicant" };
            Params::EnterpriseAuth(EnterpriseAuthParams {
                company_name,
                applicant_name: app.text_opt("name", limits::NAME)?,
                applicant: app.contact("contact", "contactType")?,
                register_no: fields.text_opt("registerNo", limits::NUMBER)?,
                legal_person: fields.text_opt("legalPerson", limits::NAME)?,
                callback_url: fields.url_opt("callbackUrl")?,
                close_button: fields.bool_opt("closeButton")?.unwrap_or(true),
                modify_fields: fields.enum_list("modifyFields", COMPANY_MODIFY_FIELDS)?,
            })
        }
    };
    Ok(SdkRequest { action, state, params })
}

fn valid_state(s: &str) -> bool {
    (limits::STATE_MIN..=limits::STATE).contains(&s.len())
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

fn truncate(s: &str, max: usize) -> String {
    s.chars().take(max).collect()
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

/// Reads typed fields of one JSON object, naming the full path in errors.
struct Fields<'a> {
    obj: &'a Map<String, Value>,
    prefix: &'static str,
}

impl Fields<'_> {
    fn path(&self, key: &str) -> String {
        format!("{}.{}", self.prefix, key)
    }

    fn str_opt(&self, key: &str) -> Result<Option<&str>, ProtocolError> {
        match self.obj.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(_) => Err(ProtocolError::param(format!("{} must be a string", self.path(key)))),
        }
    }

    fn text_opt(&self, key: &str, max: usize) -> Result<Option<String>, ProtocolError> {
        let Some(s) = self.str_opt(key)? else { return Ok(None) };
        let s = s.trim();
        if s.is_empty() {
            return Ok(None);
        }
        if s.chars().count() > max {
            return Err(ProtocolError::param(format!("{} is longer than {max} characters", self.path(key))));
        }
        if s.chars().any(char::is_control) {
            return Err(ProtocolError::param(format!("{} contains control characters", self.path(key))));
        }
        Ok(Some(s.to_owned()))
    }

    fn text_req(&self, key: &str, max: usize) -> Result<String, ProtocolError> {
        self.text_opt(key, max)?
            .ok_or_else(|| ProtocolError::param(format!("{} is required", self.path(key))))
    }

    fn digits_opt(&self, key: &str, max: usize) -> Result<Option<String>, ProtocolError> {
        let v = self.text_opt(key, max)?;
        if let Some(s) = &v {
            if !s.bytes().all(|b| b.is_ascii_digit()) {
                return Err(ProtocolError::param(format!("{} must contain digits only", self.path(key))));
            }
        }
        Ok(v)
    }

    fn mobile_opt(&self, key: &str) -> Result<Option<String>, ProtocolError> {
        let v = self.text_opt(key, limits::CONTACT)?;
        if let Some(s) = &v {
            if !is_mobile(s) {
                return Err(ProtocolError::param(format!("{} must be an 11-digit mobile number", self.path(key))));
            }
        }
        Ok(v)
    }

    fn bool_opt(&self, key: &str) -> Result<Option<bool>, ProtocolError> {
        match self.obj.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(_) => Err(ProtocolError::param(format!("{} must be a boolean", self.path(key)))),
        }
    }

    fn enum_opt(&self, key: &str, allowed: &[&'static str]) -> Result<Option<&'static str>, ProtocolError> {
        let Some(s) = self.str_opt(key)? else { return Ok(None) };
        allowed.iter().copied().find(|a| *a == s).map(Some).ok_or_else(|| {
            ProtocolError::param(format!("{} must be one of {}", self.path(key), allowed.join(", ")))
        })
    }

    fn enum_list(&self, key: &str, allowed: &[&'static str]) -> Result<Vec<&'static str>, ProtocolError> {
        let items = match self.obj.get(key) {
            None | Some(Value::Null) => return Ok(Vec::new()),
            Some(Value::Array(items)) => items,
            Some(_) => return Err(ProtocolError::param(format!("{} must be an array", self.path(key)))),
        };
        let mut out = Vec::new();
        for item in items {
            let found = item.as_str().and_then(|s| allowed.iter().copied().find(|a| *a == s));
            match found {
                Some(a) if !out.contains(&a) => out.push(a),
                Some(_) => {}
                None => {
                    return Err(ProtocolError::param(format!(
                        "{} items must be among {}",
                        self.path(key),
                        allowed.join(", ")
                    )))
                }
            }
        }
        Ok(out)
    }

    fn url_opt(&self, key: &str) -> Result<Option<String>, ProtocolError> {
        let v = self.text_opt(key, limits::URL)?;
        if let Some(s) = &v {
            if !(s.starts_with("https://") || s.starts_with("http://")) {
                return Err(ProtocolError::param(format!("{} must be an http(s) URL", self.path(key))));
            }
        }
        Ok(v)
    }

    fn contract_id(&self, key: &str) -> Result<String, ProtocolError> {
        let path = self.path(key);
        match self.obj.get(key) {
            Some(Value::String(s))
                if !s.is_empty()
                    && s.len() <= limits::CONTRACT_ID_DIGITS
                    && s.bytes().all(|b| b.is_ascii_digit()) =>
            {
                Ok(s.clone())
            }
            None | Some(Value::Null) => Err(ProtocolError::param(format!("{path} is required"))),
            Some(Value::Number(_)) => Err(ProtocolError::param(format!(
                "{path} must be a decimal string: a JSON number may already have lost digits"
            ))),
            Some(_) => Err(ProtocolError::param(format!(
                "{path} must be a string of 1–{} decimal digits",
                limits::CONTRACT_ID_DIGITS
            ))),
        }
    }

    fn contact(&self, key: &str, type_key: &str) -> Result<Contact, ProtocolError> {
        let value = self
            .text_opt(key, limits::CONTACT)?
            .ok_or_else(|| ProtocolError::param(format!("{} is required", self.path(key))))?;
        let inferred = if is_mobile(&value) {
            "MOBILE"
        } else if is_email(&value) {
            "EMAIL"
        } else {
            return Err(ProtocolError::param(format!(
                "{} must be an 11-digit mobile number or an email address",
                self.path(key)
            )));
        };
        if let Some(stated) = self.enum_opt(type_key, CONTACT_TYPES)? {
            if stated != inferred {
                return Err(ProtocolError::param(format!(
                    "{} is {stated} but {} looks like {inferred}",
                    self.path(type_key),
                    self.path(key)
                )));
            }
        }
        Ok(Contact { value, kind: inferred })
    }
}

/// The platform's JSON body for the ticket exchange of this request (seeds 000–003).
pub fn ticket_body(params: &Params, callback_url: Option<&str>) -> Value {
    let mut body = match params {
        Params::Sign(p) => json!({"contractId": p.contract_id, "user": p.contact.to_user()}),
        Params::PersonalAuth(p) => personal_auth_body(p),
        Params::EnterpriseAuth(p) => company_auth_body(p),
    };
    if let (Some(url), false) = (callback_url, matches!(params, Params::Sign(_))) {
        body["callbackUrl"] = json!(url);
    }
    body
}

fn personal_auth_body(p: &PersonalAuthParams) -> Value {
    let mut body = json!({"mode": p.mode, "user": p.contact.to_user()});
    for (key, value) in [
        ("username", &p.username),
        ("idCardNo", &p.id_card_no),
        ("bankNo", &p.bank_no),
        ("bankMobile", &p.bank_mobile),
    ] {
        if let Some(v) = value {
            body[key] = json!(v);
        }
    }
    if p.manual {
        body["otherModes"] = json!(["MANUAL"]);
    }
    if !p.modify_fields.is_empty() {
        body["modifyFields"] = json!(p.modify_fields);
    }
    body
}

fn company_auth_body(p: &EnterpriseAuthParams) -> Value {
    let mut applicant = p.applicant.to_user();
    if let Some(name) = &p.applicant_name {
        applicant["name"] = json!(name);
    }
    let mut body = json!({"companyName": p.company_name, "applicant": applicant, "closeButton": p.close_button});
    if let Some(v) = &p.register_no {
        body["registerNo"] = json!(v);
    }
    if let Some(v) = &p.legal_person {
        body["legalPerson"] = json!(v);
    }
    if !p.modify_fields.is_empty() {
        body["modifyFields"] = json!(p.modify_fields.join(","));
    }
    body
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(action: &str, params: Value) -> Result<SdkRequest, ProtocolError> {
        parse_request(&json!({"v": 1, "action": action, "state": "abcdefghijklmnop", "params": params}).to_string())
    }

    #[test]
    fn maps_js_params_to_the_platform_fields_of_the_seeds() {
        let sign = request("enterpriseSign", json!({"contractId": "2603417854124281870", "contact": "a@b.cn"})).unwrap();
        assert_eq!(
            ticket_body(&sign.params, Some("http://ignored")),
            json!({"contractId": "2603417854124281870", "user": {"contact": "a@b.cn", "contactType": "EMAIL"}})
        );
        let auth = request(
            "personalAuth",
            json!({"mode": "BANK", "contact": "13700000044", "manual": true, "bankNo": "6222",
                   "modifyFields": ["BANKNO", "BANKNO", "USERNAME"]}),
        )
        .unwrap();
        assert_eq!(
            ticket_body(&auth.params, Some("http://cb")),
            json!({"mode": "BANK", "user": {"contact": "13700000044", "contactType": "MOBILE"}, "bankNo": "6222",
                   "otherModes": ["MANUAL"], "modifyFields": ["BANKNO", "USERNAME"], "callbackUrl": "http://cb"})
        );
        let company = request(
            "enterpriseAuth",
            json!({"companyName": "甲公司", "companyAuthBean": {"companyName": "甲公司",
                   "applicant": {"name": "张三", "contact": "13700000044", "contactType": "MOBILE"},
                   "closeButton": false, "modifyFields": ["corpName", "legalPerson"]}}),
        )
        .unwrap();
        assert_eq!(
            ticket_body(&company.params, None),
            json!({"companyName": "甲公司", "applicant": {"name": "张三", "contact": "13700000044", "contactType": "MOBILE"},
                   "closeButton": false, "modifyFields": "corpName,legalPerson"})
        );
    }

    #[test]
    fn refuses_bad_envelopes_and_params_with_a_code() {
        let cases: &[(Value, i64, &str)] = &[
            (json!([]), codes::BAD_REQUEST_DATA, "object"),
            (json!({"v": 2, "action": "personalSign", "state": "abcdefghijklmnop", "params": {}}), codes::UNSUPPORTED_VERSION, "v1"),
            (json!({"v": 1, "action": "eval", "state": "abcdefghijklmnop", "params": {}}), codes::UNKNOWN_ACTION, "not allowed"),
            (json!({"v": 1, "action": "personalSign", "state": "abc", "params": {}}), codes::BAD_REQUEST_DATA, "state"),
            (json!({"v": 1, "action": "personalSign", "state": "abcdefghijklmnop!", "params": {}}), codes::BAD_REQUEST_DATA, "state"),
            (json!({"v": 1, "action": "personalSign", "state": "abcdefghijklmnop"}), codes::BAD_REQUEST_DATA, "params"),
            (json!({"v": 1, "action": "enterpriseAuth", "state": "abcdefghijklmnop", "params": {"companyName": "甲"}}), codes::INVALID_PARAM, "companyAuthBean is required"),
            (json!({"v": 1, "action": "enterpriseAuth", "state": "abcdefghijklmnop", "params": {"companyName": "甲",
                "companyAuthBean": {"companyName": "乙", "applicant": {"contact": "13700000044"}}}}), codes::INVALID_PARAM, "differs"),
            (json!({"v": 1, "action": "enterpriseAuth", "state": "abcdefghijklmnop", "params": {"companyName": "甲",
                "companyAuthBean": {"applicant": {"contact": "13700000044"}, "closeButton": "yes"}}}), codes::INVALID_PARAM, "closeButton must be a boolean"),
            (json!({"v": 1, "action": "personalAuth", "state": "abcdefghijklmnop", "params": {"contact": "13700000044",
                "modifyFields": ["MOBILE"]}}), codes::INVALID_PARAM, "modifyFields"),
            (json!({"v": 1, "action": "personalAuth", "state": "abcdefghijklmnop", "params": {"contact": "13700000044",
                "bankMobile": "12345"}}), codes::INVALID_PARAM, "bankMobile"),
            (json!({"v": 1, "action": "personalAuth", "state": "abcdefghijklmnop", "params": {"contact": "13700000044",
                "username": "a\u{0}b"}}), codes::INVALID_PARAM, "control"),
        ];
        for (value, code, needle) in cases {
            let err = parse_envelope(value.clone()).unwrap_err();
            assert_eq!(err.code, *code, "{value}: {err:?}");
            assert!(err.message.contains(needle), "{value}: {err:?}");
        }
        assert_eq!(parse_request("{").unwrap_err().code, codes::BAD_REQUEST_DATA);
    }

    #[test]
    fn contacts() {
        assert!(is_mobile("13700000044") && !is_mobile("137******44") && !is_mobile("23700000044"));
        assert!(is_email("a.b@c.cn") && !is_email("a@b") && !is_email("a b@c.cn") && !is_email("@c.cn"));
    }
}
