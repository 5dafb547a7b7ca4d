//! The SDK envelope parser (`qys_sdk_wasm::wire::Request::parse`), on JSON text read by the
//! core's reader (and through the proxy's `protocol::parse_request`), and on structured
//! envelopes built from near-valid field values so that every parameter check is reached.
//!
//! Properties: no panic; the proxy's `parse_request` accepts exactly what the reader and
//! `Request::parse` accept; a flow that parses has a valid state and a `returnUrl` exactly when
//! it is a redirect, and re-encodes (`Envelope::to_json`, and the form body) to text that parses
//! to the same request; likewise an `outcome` through `Request::outcome_form_body`. The SDK's
//! own path (`normalize`, then `flow_form_body`) writes the very body the typed parameters do.
#![no_main]

use arbitrary::{Result, Unstructured};
use libfuzzer_sys::fuzz_target;
use qys_fuzz::{any_value, bool_field, field, list_field, number_field, object, object_field, one_in, string_like};
use qys_sdk_wasm::presentation::Presentation;
use qys_sdk_wasm::value::Value;
use qys_sdk_wasm::params::normalize;
use qys_sdk_wasm::wire::{flow_form_body, valid_flow_token, valid_state, Request};

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else { return };
    if mode < 64 {
        let Ok(text) = std::str::from_utf8(rest) else { return };
        let via_proxy = qys_proxy::protocol::parse_request(text);
        match Value::parse(text) {
            Ok(value) => {
                let request = Request::parse(&value);
                assert_eq!(request.is_ok(), via_proxy.is_ok(), "core {request:?}, proxy {via_proxy:?}");
                check(request, &value);
            }
            Err(_) => assert_eq!(via_proxy.map_err(|e| e.code), Err(qys_proxy::protocol::codes::BAD_REQUEST_DATA)),
        }
    } else {
        let mut u = Unstructured::new(rest);
        let Ok(value) = envelope(&mut u) else { return };
        check(Request::parse(&value), &value);
    }
});

fn check(request: Result<Request, qys_sdk_wasm::wire::EnvelopeError>, value: &Value) {
    let request = match request {
        Ok(request) => request,
        Err(e) => {
            let _ = format!("{e:?}");
            return;
        }
    };
    let (json, body) = match &request {
        Request::Flow(envelope) => {
            assert!(valid_state(&envelope.state), "{envelope:?}");
            assert_eq!(envelope.return_url.is_some(), envelope.presentation == Presentation::Redirect, "{envelope:?}");
            let wire = normalize(envelope.action, value.get("params").unwrap()).expect("the proxy accepted these parameters");
            assert_eq!(wire, envelope.params.to_value(), "{envelope:?}");
            let sdk = flow_form_body(envelope.action, &envelope.state, wire, envelope.presentation, envelope.return_url.as_deref());
            assert_eq!(sdk, envelope.to_form_body());
            (envelope.to_json(), envelope.to_form_body())
        }
        Request::Outcome { state, flow } => {
            assert!(valid_state(state) && valid_flow_token(flow), "{request:?}");
            let body = Request::outcome_form_body(state, flow);
            (request_data(&body), body)
        }
    };
    assert_eq!(request_data(&body), json, "the form body does not carry the JSON");
    let value = Value::parse(&json).unwrap_or_else(|e| panic!("{json:?} does not read (at {})", e.at));
    let again = Request::parse(&value).unwrap_or_else(|e| panic!("{request:?} wrote {json:?}, refused: {e:?}"));
    assert_eq!(again, request, "re-encoded as {json:?}");
}

/// `requestData` of a form body, decoded as the proxy decodes it.
fn request_data(body: &str) -> String {
    let fields: Vec<(String, String)> = form_urlencoded::parse(body.as_bytes()).into_owned().collect();
    assert_eq!(fields.len(), 1, "{body:?}");
    assert_eq!(fields[0].0, "requestData");
    fields[0].1.clone()
}

const ACTIONS: &[&str] = &["personalSign", "enterpriseSign", "personalAuth", "enterpriseAuth", "outcome"];
const STATES: &[&str] = &[
    "abcdefghijklmnopqrstuv",
    "0123456789abcdef",
    "0123456789abcde",
    "Aa0_-Aa0_-Aa0_-Aa0_-Aa0_-Aa0_-Aa0_-Aa0_-Aa0_-Aa0_-Aa0_-Aa0_-Aa0_",
    "Aa0_-Aa0_-Aa0_-Aa0_-Aa0_-Aa0_-Aa0_-Aa0_-Aa0_-Aa0_-Aa0_-Aa0_-Aa0_-",
    "abcdefghijklmnopqrstu+",
];
const RETURN_URLS: &[&str] = &[
    "https://shop.example/pay?order=7",
    "http://127.0.0.1:8080/",
    "HTTPS://SHOP.EXAMPLE/",
    "https://shop.example/pay#done",
    "https://",
    "http:/x",
    "javascript:alert(1)",
    "//shop.example/",
];
const CONTRACT_IDS: &[&str] = &["2603417854124281870", "1", "0", "000", "9223372036854775807", "9223372036854775808", "99999999999999999999", "-1", "1e3", "１２"];
const CONTACTS: &[&str] = &[
    "13700000044", "user@example.com", "a@b.co", "137******44", "23700000044", "1370000004", "a@b", "@b.co", "a@b@c.co", "a@.co", "a@co.", "张三@例子.中国", "a b@c.co",
];
const CONTACT_TYPES: &[&str] = &["MOBILE", "EMAIL", "PHONE", ""];
const NAMES: &[&str] = &["张三", "Zhang San", "", "李"];
const NUMBERS: &[&str] = &["110101199003074477", "6222020200000000000", "91330100MA2XXXXX0X", "6222-0202", "123456789012345678901234567890123"];
const URLS: &[&str] = &["https://shop.example/callback", "http://127.0.0.1:9/cb", "ftp://shop.example/", "https://", "shop.example"];
const COMPANIES: &[&str] = &["契约锁测试公司", "Acme Ltd", "", "A"];

fn envelope(u: &mut Unstructured<'_>) -> Result<Value> {
    let action = string_like(u, ACTIONS)?;
    // Mostly the parameters of the action sent; sometimes another action's.
    let params_of = if !one_in(u, 8)? { action.clone() } else { (*u.choose(ACTIONS)?).to_owned() };
    let params = object_field(u, |u| params(u, &params_of))?;
    let members = vec![
        ("v", number_field(u, &[1.0, 2.0, 0.0], &["1", "v1"])?),
        ("action", if one_in(u, 16)? { field(u, ACTIONS)? } else { Some(Value::String(action)) }),
        ("state", field(u, STATES)?),
        ("params", params),
        ("presentation", if one_in(u, 3)? { None } else { field(u, &["iframe", "redirect", "miniProgram", "Redirect"])? }),
        ("returnUrl", if one_in(u, 3)? { None } else { field(u, RETURN_URLS)? }),
    ];
    let mut value = object(u, members)?;
    if one_in(u, 32)? {
        value = any_value(u, 3)?;
    }
    Ok(value)
}

fn contact(u: &mut Unstructured<'_>) -> Result<[(&'static str, Option<Value>); 2]> {
    Ok([("contact", field(u, CONTACTS)?), ("contactType", if one_in(u, 2)? { None } else { field(u, CONTACT_TYPES)? })])
}

fn params(u: &mut Unstructured<'_>, action: &str) -> Result<Value> {
    let mut members: Vec<(&str, Option<Value>)> = contact(u)?.into();
    match action {
        "personalSign" | "enterpriseSign" => {
            members.push(("contractId", number_field(u, &[2603417854124281870.0, 1.0, 9_007_199_254_740_993.0, 1.5], CONTRACT_IDS)?));
            if one_in(u, 2)? {
                members.push(("contractId", Some(Value::String(string_like(u, CONTRACT_IDS)?))));
            }
        }
        "personalAuth" => {
            members.extend([
                ("mode", field(u, &["DEFAULT", "FACE", "BANK", "IVS", "face"])?),
                ("username", field(u, NAMES)?),
                ("idCardNo", field(u, NUMBERS)?),
                ("bankNo", field(u, NUMBERS)?),
                ("bankMobile", field(u, CONTACTS)?),
                ("manual", bool_field(u)?),
                ("callbackUrl", field(u, URLS)?),
                ("modifyFields", list_field(u, &["USERNAME", "IDCARDNO", "BANKNO", "BANKMOBILE", "corpName", "username"])?),
            ]);
        }
        "enterpriseAuth" => {
            members.clear();
            let company = string_like(u, COMPANIES)?;
            let inner = if one_in(u, 2)? { Some(Value::String(company.clone())) } else { field(u, COMPANIES)? };
            members.push(("companyName", if one_in(u, 10)? { field(u, COMPANIES)? } else { Some(Value::String(company)) }));
            let bean = object_field(u, |u| {
                let applicant = object_field(u, |u| {
                    let mut members: Vec<(&str, Option<Value>)> = contact(u)?.into();
                    members.push(("name", field(u, NAMES)?));
                    object(u, members)
                })?;
                let members = vec![
                    ("companyName", if one_in(u, 2)? { None } else { inner }),
                    ("applicant", applicant),
                    ("registerNo", field(u, NUMBERS)?),
                    ("legalPerson", field(u, NAMES)?),
                    ("callbackUrl", field(u, URLS)?),
                    ("closeButton", bool_field(u)?),
                    ("modifyFields", list_field(u, &["corpName", "registerNo", "legalPerson", "USERNAME"])?),
                ];
                object(u, members)
            })?;
            members.push(("companyAuthBean", bean));
        }
        _ => {
            members.clear();
            let long = "A".repeat(4097);
            let tokens = ["AAECAwQFBgcICQoLEXHgqKMs7TJr", "abc.def", "a b", "", "a+b/c=", &long[..4096], &long];
            members.push(("flow", field(u, &tokens)?));
        }
    }
    object(u, members)
}
