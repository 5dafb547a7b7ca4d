//! The SDK's pure core, natively: validation, protocol encoding/decoding, message acceptance.

use qys_sdk_wasm::message::{Event, MessageGate};
use qys_sdk_wasm::params::{contract_id, Action, Params};
use qys_sdk_wasm::value::Value;
use qys_sdk_wasm::wire::{decode_response, state_from_random, valid_state, Envelope, EnvelopeError, PageGrant};
use qys_sdk_wasm::ErrorKind;

fn v(json: &str) -> Value {
    Value::parse(json).unwrap()
}

#[test]
fn bad_inputs_are_refused_with_their_param_and_an_actionable_message() {
    let table: &[(Action, &str, &str, &str)] = &[
        (Action::PersonalSign, r#"{"contact":"13700000044"}"#, "contractId", "contractId is required"),
        (Action::PersonalSign, r#"{"contractId":"","contact":"13700000044"}"#, "contractId", "1–19 decimal digits"),
        (Action::PersonalSign, r#"{"contractId":"26034178541242818701","contact":"13700000044"}"#, "contractId", "1–19 decimal digits"),
        (Action::PersonalSign, r#"{"contractId":"9999999999999999999","contact":"13700000044"}"#, "contractId", "larger than any contract id"),
        (Action::PersonalSign, r#"{"contractId":"2603-4178","contact":"13700000044"}"#, "contractId", "decimal digits"),
        (Action::PersonalSign, r#"{"contractId":2603417854124281870,"contact":"13700000044"}"#, "contractId", "already rounded"),
        (Action::PersonalSign, r#"{"contractId":1.5,"contact":"13700000044"}"#, "contractId", "decimal string, not a number"),
        (Action::PersonalSign, r#"{"contractId":true,"contact":"13700000044"}"#, "contractId", "not a boolean"),
        (Action::PersonalSign, r#"{"contractId":"2603417854124281870"}"#, "contact", "contact is required"),
        (Action::EnterpriseSign, r#"{"contractId":"1","contact":"137******44"}"#, "contact", "mobile number or an email"),
        (Action::EnterpriseSign, r#"{"contractId":"1","contact":"23700000044"}"#, "contact", "mobile number or an email"),
        (Action::PersonalSign, r#"{"contractId":"1","contact":"a@b.cn","contactType":"MOBILE"}"#, "contactType", "looks like EMAIL"),
        (Action::PersonalSign, r#"{"contractId":"1","contact":"a@b.cn","contactType":"FAX"}"#, "contactType", "one of MOBILE, EMAIL"),
        (Action::PersonalSign, r#"{"contractId":"1","contact":13700000044}"#, "contact", "must be a string, not a number"),
        (Action::PersonalAuth, r#"{"contact":"13700000044","mode":"IVS"}"#, "mode", "one of DEFAULT, FACE, BANK"),
        (Action::PersonalAuth, r#"{"mode":"FACE"}"#, "contact", "contact is required"),
        (Action::PersonalAuth, r#"{"contact":"13700000044","manual":"yes"}"#, "manual", "must be a boolean"),
        (Action::PersonalAuth, r#"{"contact":"13700000044","bankNo":"6222 0000"}"#, "bankNo", "digits only"),
        (Action::PersonalAuth, r#"{"contact":"13700000044","bankMobile":"12345"}"#, "bankMobile", "11-digit mobile"),
        (Action::PersonalAuth, r#"{"contact":"13700000044","modifyFields":"USERNAME"}"#, "modifyFields", "must be an array"),
        (Action::PersonalAuth, r#"{"contact":"13700000044","modifyFields":["MOBILE"]}"#, "modifyFields", "items must be among"),
        (Action::PersonalAuth, r#"{"contact":"13700000044","callbackUrl":"javascript:alert(1)"}"#, "callbackUrl", "http(s) URL"),
        (Action::PersonalAuth, r#"{"contact":"13700000044","username":"a\u0000b"}"#, "username", "control characters"),
        (Action::EnterpriseAuth, r#"{"companyAuthBean":{"applicant":{"contact":"13700000044"}}}"#, "companyName", "companyName is required"),
        (Action::EnterpriseAuth, r#"{"companyName":"甲"}"#, "companyAuthBean", "companyAuthBean is required"),
        (Action::EnterpriseAuth, r#"{"companyName":"甲","companyAuthBean":[]}"#, "companyAuthBean", "must be an object, not an array"),
        (Action::EnterpriseAuth, r#"{"companyName":"甲","companyAuthBean":{}}"#, "companyAuthBean.applicant", "companyAuthBean.applicant is required"),
        (Action::EnterpriseAuth, r#"{"companyName":"甲","companyAuthBean":{"applicant":{"name":"张三"}}}"#, "companyAuthBean.applicant.contact", "is required"),
        (Action::EnterpriseAuth, r#"{"companyName":"甲","companyAuthBean":{"companyName":"乙","applicant":{"contact":"13700000044"}}}"#, "companyAuthBean.companyName", "differs"),
        (Action::EnterpriseAuth, r#"{"companyName":"甲","companyAuthBean":{"applicant":{"contact":"13700000044"},"closeButton":1}}"#, "companyAuthBean.closeButton", "must be a boolean"),
        (Action::EnterpriseAuth, r#"{"companyName":"甲","companyAuthBean":{"applicant":{"contact":"13700000044"},"modifyFields":["address"]}}"#, "companyAuthBean.modifyFields", "corpName, registerNo, legalPerson"),
    ];
    for (action, params, param, needle) in table {
        let err = Params::parse(*action, &v(params)).expect_err(params);
        assert_eq!(err.kind, ErrorKind::InvalidArgument, "{params}");
        assert_eq!(err.param.as_deref(), Some(*param), "{params}: {err:?}");
        assert!(err.message.contains(needle), "{params}: {:?} lacks {needle:?}", err.message);
    }
    let long_name = format!(r#"{{"contact":"13700000044","username":"{}"}}"#, "张".repeat(65));
    assert!(Params::parse(Action::PersonalAuth, &v(&long_name)).unwrap_err().message.contains("longer than 64"));
    let not_object = Params::parse(Action::PersonalAuth, &v("[]")).unwrap_err();
    assert_eq!(not_object.param.as_deref(), Some("params"));
}

#[test]
fn safe_integer_contract_ids_are_taken_as_strings() {
    assert_eq!(contract_id(Some(&v("9007199254740991")), "contractId").unwrap(), "9007199254740991");
    assert!(contract_id(Some(&v("9007199254740992")), "contractId").unwrap_err().message.contains("already rounded"));
    assert!(contract_id(Some(&v("0")), "contractId").is_err());
    assert!(contract_id(Some(&v(r#""0000""#)), "contractId").unwrap_err().message.contains("may not be zero"));
}

#[test]
fn envelopes_round_trip_through_the_form_body() {
    let params = Params::parse(
        Action::EnterpriseAuth,
        &v(r#"{"companyName":" 自测JSSDK企业认证x ","companyAuthBean":{"applicant":{"name":"AAA","contact":"15164046497"},
              "closeButton":true,"modifyFields":["corpName","corpName"]}}"#),
    )
    .unwrap();
    let envelope = Envelope { action: Action::EnterpriseAuth, state: "abcdefghijklmnopqrstuv".into(), params };
    let body = envelope.to_form_body();
    assert!(body.starts_with("requestData=%7B%22v%22%3A1%2C%22action%22%3A%22enterpriseAuth%22"), "{body}");
    // Decode as a server would (serde_urlencoded is not the code under test).
    let fields: Vec<(String, String)> = serde_urlencoded::from_str(&body).unwrap();
    assert_eq!(fields.len(), 1);
    let json: serde_json::Value = serde_json::from_str(&fields[0].1).unwrap();
    assert_eq!(
        json,
        serde_json::json!({"v": 1, "action": "enterpriseAuth", "state": "abcdefghijklmnopqrstuv", "params": {
            "companyName": "自测JSSDK企业认证x",
            "companyAuthBean": {"applicant": {"name": "AAA", "contact": "15164046497", "contactType": "MOBILE"},
                                "modifyFields": ["corpName"]}}})
    );
    assert_eq!(Envelope::parse(&v(&fields[0].1)).unwrap(), envelope);
}

#[test]
fn envelope_errors() {
    let e = |json: &str| Envelope::parse(&v(json)).unwrap_err();
    assert!(matches!(e("[]"), EnvelopeError::Malformed(_)));
    assert!(matches!(e(r#"{"v":2,"action":"personalSign","state":"abcdefghijklmnop","params":{}}"#), EnvelopeError::UnsupportedVersion(_)));
    assert!(matches!(e(r#"{"v":1,"action":"uniformapi","state":"abcdefghijklmnop","params":{}}"#), EnvelopeError::UnknownAction(_)));
    assert!(matches!(e(r#"{"v":1,"action":"personalSign","state":"short","params":{}}"#), EnvelopeError::Malformed(_)));
    assert!(matches!(e(r#"{"v":1,"action":"personalSign","state":"abcdefghijklmnop"}"#), EnvelopeError::Malformed(_)));
    assert!(matches!(e(r#"{"v":1,"action":"personalSign","state":"abcdefghijklmnop","params":{}}"#), EnvelopeError::InvalidParam(_)));
}

#[test]
fn states_are_22_base64url_characters() {
    let s = state_from_random(&[0xff; 16]);
    assert_eq!(s, "_____________________w");
    assert!(valid_state(&s));
    assert_eq!(state_from_random(&[0; 16]), "AAAAAAAAAAAAAAAAAAAAAA");
    let mixed = state_from_random(&[0xfb, 0xff, 0xbf, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13]);
    assert_eq!(mixed, "-_-_AQIDBAUGBwgJCgsMDQ");
}

#[test]
fn proxy_answers_decode_to_a_grant_or_a_typed_error() {
    let origin = "http://127.0.0.1:8080";
    let ok = v(r#"{"code":0,"message":"SUCCESS","result":{"pageUrl":"http://127.0.0.1:8081/h5?ticket=t","returnOrigin":"http://127.0.0.1:8082"}}"#);
    assert_eq!(
        decode_response(200, Some(&ok), origin).unwrap(),
        PageGrant { page_url: "http://127.0.0.1:8081/h5?ticket=t".into(), return_origin: "http://127.0.0.1:8082".into() }
    );
    let no_origin = v(r#"{"code":0,"result":{"pageUrl":"https://h5.example/x"}}"#);
    assert_eq!(decode_response(200, Some(&no_origin), origin).unwrap().return_origin, origin);
    let platform = decode_response(200, Some(&v(r#"{"code":1110,"message":"NO VIEW PERMISSION"}"#)), origin).unwrap_err();
    assert_eq!((platform.kind, platform.code, platform.message.as_str()), (ErrorKind::Platform, Some(1110), "NO VIEW PERMISSION"));
    let http = decode_response(403, Some(&v(r#"{"code":40300,"message":"origin x is not allowed"}"#)), origin).unwrap_err();
    assert_eq!((http.kind, http.code), (ErrorKind::Http, Some(403)));
    assert!(http.message.contains("origin x is not allowed (proxy code 40300)"));
    assert_eq!(decode_response(500, None, origin).unwrap_err().code, Some(500));
    for (body, why) in [
        (None, "not JSON"),
        (Some(v(r#"{"message":"hi"}"#)), "no numeric code"),
        (Some(v(r#"{"code":0}"#)), "no result"),
        (Some(v(r#"{"code":0,"result":{"pageUrl":"javascript:alert(1)"}}"#)), "pageUrl"),
        (Some(v(r#"{"code":0,"result":{"pageUrl":"https://x/","returnOrigin":"https://x/path"}}"#)), "returnOrigin"),
    ] {
        let err = decode_response(200, body.as_ref(), origin).unwrap_err();
        assert_eq!(err.kind, ErrorKind::Protocol, "{why}");
        assert!(err.message.contains(why), "{why}: {}", err.message);
    }
}

const ORIGIN: &str = "http://127.0.0.1:8080";
const STATE: &str = "abcdefghijklmnopqrstuv";

fn gate(action: Action) -> MessageGate {
    MessageGate::new(action, ORIGIN.into(), STATE.into())
}

fn msg(event: &str, data: &str) -> Value {
    v(&format!(r#"{{"type":"qys-sdk","v":1,"state":"{STATE}","event":"{event}","data":{data}}}"#))
}

#[test]
fn messages_are_accepted_only_from_the_frame_origin_and_state_once() {
    let good = msg("signSuccess", r#"{"contractId":"2603417854124281870","extra":{"x":1}}"#);
    // Forged origin, wrong source window, wrong state: ignored, and the gate stays open.
    let mut g = gate(Action::PersonalSign);
    assert_eq!(g.offer("http://127.0.0.1:9999", true, &good), None);
    assert_eq!(g.offer(ORIGIN, false, &good), None);
    let wrong_state = v(r#"{"type":"qys-sdk","v":1,"state":"zzzzzzzzzzzzzzzzzzzzzz","event":"signSuccess","data":{}}"#);
    assert_eq!(g.offer(ORIGIN, true, &wrong_state), None);
    assert!(!g.is_done());
    // Malformed data: ignored.
    for bad in [
        v(r#""qys-sdk""#),
        v(r#"{"type":"other","v":1,"state":"abcdefghijklmnopqrstuv","event":"signSuccess"}"#),
        v(r#"{"type":"qys-sdk","v":2,"state":"abcdefghijklmnopqrstuv","event":"signSuccess"}"#),
        v(r#"{"type":"qys-sdk","v":1,"state":"abcdefghijklmnopqrstuv","event":"signed"}"#),
        msg("signSuccess", "[1]"),
        msg("signSuccess", r#"{"contractId":42}"#),
        msg("authSuccess", r#"{"username":"x"}"#),
    ] {
        assert_eq!(g.offer(ORIGIN, true, &bad), None, "{bad:?}");
    }
    // The genuine message: accepted, unknown fields dropped; then a replay does nothing.
    assert_eq!(
        g.offer(ORIGIN, true, &good),
        Some(Event::SignSuccess(v(r#"{"contractId":"2603417854124281870"}"#)))
    );
    assert!(g.is_done());
    assert_eq!(g.offer(ORIGIN, true, &good), None);
    assert_eq!(g.offer(ORIGIN, true, &msg("authFail", "{}")), None);
}

#[test]
fn auth_events_carry_the_seed_user_info() {
    let mut g = gate(Action::PersonalAuth);
    assert_eq!(g.offer(ORIGIN, true, &msg("signSuccess", "{}")), None, "not an auth event");
    let info = r#"{"username":"李雷","mobile":"13900000003","cardNo":"110","bankNo":"6222","contact":"13900000004","secret":"x"}"#;
    assert_eq!(
        g.offer(ORIGIN, true, &msg("authSuccess", info)),
        Some(Event::AuthSuccess(v(r#"{"username":"李雷","mobile":"13900000003","cardNo":"110","bankNo":"6222","contact":"13900000004"}"#)))
    );
    let mut g = gate(Action::EnterpriseAuth);
    let company = r#"{"name":"甲","registerNo":"1","legalPerson":"乙","username":"ignored"}"#;
    assert_eq!(
        g.offer(ORIGIN, true, &msg("authSuccess", company)),
        Some(Event::AuthSuccess(v(r#"{"name":"甲","registerNo":"1","legalPerson":"乙"}"#)))
    );
    let mut g = gate(Action::EnterpriseSign);
    assert_eq!(g.offer(ORIGIN, true, &msg("authFail", "null")), Some(Event::AuthFail));
}

#[test]
fn options_are_checked() {
    use qys_sdk_wasm::options::Options;
    let o = Options::parse(&v(r#"{"query":{"a":1,"token":"ab1234","on":true,"skip":null},"timeoutMs":2000,"debug":true}"#)).unwrap();
    assert_eq!(o.query, vec![("a".into(), "1".into()), ("token".into(), "ab1234".into()), ("on".into(), "true".into())]);
    assert_eq!((o.timeout_ms, o.debug), (2000, true));
    assert_eq!(Options::parse(&Value::Null).unwrap().timeout_ms, 15_000);
    for (json, param) in [
        (r#"{"query":"a=1"}"#, "query"),
        (r#"{"query":{"a":{"b":1}}}"#, "query.a"),
        (r#"{"timeoutMs":0}"#, "timeoutMs"),
        (r#"{"timeoutMs":1.5}"#, "timeoutMs"),
        (r#"{"timeoutMs":"5000"}"#, "timeoutMs"),
        (r#"{"debug":1}"#, "debug"),
        ("[]", "options"),
    ] {
        let err = Options::parse(&v(json)).unwrap_err();
        assert_eq!((err.kind, err.param.as_deref()), (ErrorKind::InvalidArgument, Some(param)), "{json}");
    }
}

/// The core's JSON reader agrees with serde_json on what is JSON and what it means.
#[test]
fn json_reader_matches_an_independent_parser() {
    fn same(ours: &Value, theirs: &serde_json::Value) -> bool {
        match (ours, theirs) {
            (Value::Null, serde_json::Value::Null) => true,
            (Value::Bool(a), serde_json::Value::Bool(b)) => a == b,
            (Value::Number(a), serde_json::Value::Number(b)) => {
                let b = b.as_f64().unwrap();
                a == &b || ((a - b) / b).abs() < 1e-12
            }
            (Value::String(a), serde_json::Value::String(b)) => a == b,
            (Value::Array(a), serde_json::Value::Array(b)) => a.len() == b.len() && a.iter().zip(b).all(|(x, y)| same(x, y)),
            (Value::Object(a), serde_json::Value::Object(b)) => {
                let ours_value = Value::Object(a.clone());
                b.iter().all(|(k, y)| ours_value.get(k).is_some_and(|x| same(x, y)))
                    && a.iter().all(|(k, _)| b.contains_key(k))
            }
            _ => false,
        }
    }
    let deep_ok = format!("{}1{}", "[".repeat(60), "]".repeat(60));
    let docs = [
        "null", "true", " false ", "0", "-0", "12", "-12.5", "1e3", "1.5E-3", "2603417854124281870",
        "123456789012345678901234", "9007199254740993", r#""a\"b\\c\/d\b\f\n\r\t""#, r#""\u00e9\u4e2d\ud83d\ude00""#,
        r#""张三""#, r#"{"a":[1,{"b":null}],"c":{}}"#, "[]", "[ 1 , 2 ]", r#"{"k":1,"k":2}"#, &deep_ok,
        "01", "1.", ".5", "-", "1e", "[1,]", r#"{"a":1,}"#, "{'a':1}", "\"\u{1}\"", "[1 2]", "nul", "\"abc",
        r#""\x""#, "{\"a\"}", "", "1 2", "NaN", "[", r#""\ud83d""#,
    ];
    for doc in docs {
        let ours = Value::parse(doc);
        let theirs = serde_json::from_str::<serde_json::Value>(doc);
        match (&ours, &theirs) {
            (Ok(o), Ok(t)) => assert!(same(o, t), "{doc}: {o:?} vs {t}"),
            (Err(_), Err(_)) => {}
            // A lone surrogate: serde_json refuses it, JSON.parse accepts it; we follow JSON.parse.
            (Ok(Value::String(s)), Err(_)) if doc == r#""\ud83d""# => assert_eq!(s, "\u{FFFD}"),
            _ => panic!("{doc}: ours {ours:?}, serde_json {theirs:?}"),
        }
    }
    assert_eq!(v(r#"{"k":1,"k":2}"#).get("k"), Some(&Value::Number(2.0)), "the last duplicate key wins, as in JSON.parse");
    assert_eq!(v("0e999"), Value::Number(0.0));
    for (n, text) in [(0.9999999999, "1"), (1.9999999999, "2"), (-0.5, "-0.5")] {
        assert_eq!(Value::Number(n).to_json(), text);
    }
    assert!(Value::parse(&format!("{}{}", "[".repeat(100), "]".repeat(100))).is_err(), "nesting is bounded");
    assert_eq!(v("2603417854124281870"), Value::Number(2603417854124281870.0), "rounds like JavaScript");
    for n in [0.0, 1.0, -42.0, 2.5, 0.125, 9007199254740991.0, 1e21] {
        assert_eq!(v(&Value::Number(n).to_json()), Value::Number(n), "{n}");
    }
    let Value::Number(big) = v(&Value::Number(1e300).to_json()) else { panic!() };
    assert!((big / 1e300 - 1.0).abs() < 1e-12, "large numbers are close: {big}");
}
