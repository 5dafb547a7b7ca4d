//! Protocol v1 between the SDK and the proxy (see `docs/protocol.md`): the proxy's error codes and
//! the mapping of validated SDK requests to the platform's request bodies. Validation itself is
//! the SDK's core (`qys_sdk_wasm::params`), shared by both sides.

use serde_json::{json, Value};

pub use qys_sdk_wasm::params::{
    is_mobile, Action, Contact, EnterpriseAuthParams, Params, PersonalAuthParams, SignParams,
};
pub use qys_sdk_wasm::presentation::Presentation;
pub use qys_sdk_wasm::wire::{Envelope as SdkRequest, EnvelopeError, Request, FLOW_TOKEN_MAX, VERSION};

/// Proxy-side error codes (platform codes such as 1110 and 1605 pass through unchanged).
pub mod codes {
    /// The body is not a form with `requestData`, or `requestData` is not the JSON envelope.
    pub const BAD_REQUEST_DATA: i64 = 40000;
    /// `v` is not 1.
    pub const UNSUPPORTED_VERSION: i64 = 40001;
    /// `action` is not one of the five actions (four flows and `outcome`).
    pub const UNKNOWN_ACTION: i64 = 40002;
    /// A parameter is missing, of the wrong type, too long or outside its enum.
    pub const INVALID_PARAM: i64 = 40003;
    /// `outcome`: the flow token is not ours, altered, expired, or of another flow.
    pub const FLOW_TOKEN_INVALID: i64 = 40004;
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
    /// `outcome`: this instance's confirmation calls per second are spent; retry in a moment.
    pub const CONFIRMATIONS_BUSY: i64 = 50300;
    /// A source over its rate limit (HTTP 429 with `Retry-After`): SDK requests that reach the
    /// platform, return-page confirmations, server callbacks.
    pub const RATE_LIMITED: i64 = 42900;
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

/// Parses and validates the `requestData` JSON text with the SDK's own core, so the proxy and
/// the SDK refuse exactly the same inputs.
pub fn parse_request(request_data: &str) -> Result<Request, ProtocolError> {
    let value = qys_sdk_wasm::value::Value::parse(request_data).map_err(|e| ProtocolError {
        code: codes::BAD_REQUEST_DATA,
        message: format!("requestData is not JSON (at byte {})", e.at),
    })?;
    Request::parse(&value).map_err(|e| {
        let (code, message) = match e {
            EnvelopeError::Malformed(m) => (codes::BAD_REQUEST_DATA, m),
            EnvelopeError::UnsupportedVersion(m) => (codes::UNSUPPORTED_VERSION, m),
            EnvelopeError::UnknownAction(m) => (codes::UNKNOWN_ACTION, m),
            // `returnUrl` is an envelope key; every other parameter lives in `params`.
            EnvelopeError::InvalidParam(e) if e.param.as_deref() == Some("returnUrl") => (codes::INVALID_PARAM, e.into_message()),
            EnvelopeError::InvalidParam(e) => (codes::INVALID_PARAM, format!("params.{}", e.message)),
        };
        ProtocolError { code, message }
    })
}

fn user(contact: &Contact) -> Value {
    json!({"contact": contact.value, "contactType": contact.kind.as_str()})
}

/// The platform's JSON body for the ticket exchange of this request (seeds 000–003).
pub fn ticket_body(params: &Params, callback_url: Option<&str>) -> Value {
    let mut body = match params {
        Params::Sign(p) => json!({"contractId": p.contract_id, "user": user(&p.contact)}),
        Params::PersonalAuth(p) => personal_auth_body(p),
        Params::EnterpriseAuth(p) => company_auth_body(p),
    };
    if let (Some(url), false) = (callback_url, matches!(params, Params::Sign(_))) {
        body["callbackUrl"] = json!(url);
    }
    body
}

fn personal_auth_body(p: &PersonalAuthParams) -> Value {
    let mut body = json!({"mode": p.mode, "user": user(&p.contact)});
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
    let mut applicant = user(&p.applicant);
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
        let request = parse_request(&json!({"v": 1, "action": action, "state": "abcdefghijklmnop", "params": params}).to_string())?;
        match request {
            Request::Flow(envelope) => Ok(*envelope),
            other => panic!("not a flow: {other:?}"),
        }
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
    fn envelope_errors_get_the_proxy_codes() {
        let code = |v: Value| parse_request(&v.to_string()).unwrap_err().code;
        assert_eq!(code(json!([])), codes::BAD_REQUEST_DATA);
        assert_eq!(code(json!({"v": 2, "action": "personalSign", "state": "abcdefghijklmnop", "params": {}})), codes::UNSUPPORTED_VERSION);
        assert_eq!(code(json!({"v": 1, "action": "eval", "state": "abcdefghijklmnop", "params": {}})), codes::UNKNOWN_ACTION);
        let e = request("personalAuth", json!({"contact": "13700000044", "modifyFields": ["MOBILE"]})).unwrap_err();
        assert_eq!(e.code, codes::INVALID_PARAM);
        assert!(e.message.starts_with("params.modifyFields items must be among"), "{}", e.message);
        assert_eq!(parse_request("{").unwrap_err().code, codes::BAD_REQUEST_DATA);
    }

    #[test]
    fn return_url_and_flow_errors_name_their_place_in_the_envelope() {
        let sign = json!({"contractId": "1", "contact": "13700000044"});
        let redirect = json!({"v": 1, "action": "personalSign", "state": "abcdefghijklmnop", "params": sign,
                              "presentation": "redirect", "returnUrl": "https://shop.example/#top"});
        let e = parse_request(&redirect.to_string()).unwrap_err();
        assert_eq!(e.code, codes::INVALID_PARAM);
        assert!(e.message.starts_with("returnUrl "), "an envelope key, not params.returnUrl: {}", e.message);
        let outcome = json!({"v": 1, "action": "outcome", "state": "abcdefghijklmnop", "params": {"flow": ""}});
        let e = parse_request(&outcome.to_string()).unwrap_err();
        assert_eq!(e.code, codes::INVALID_PARAM);
        assert!(e.message.starts_with("params.flow "), "{}", e.message);
    }
}
