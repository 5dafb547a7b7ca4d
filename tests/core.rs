//! The SDK's pure core, natively: validation, protocol encoding/decoding, message acceptance.

use qys_sdk_wasm::message::{Event, MessageGate};
use qys_sdk_wasm::options::Options;
use qys_sdk_wasm::params::{contract_id, normalize, Action, Params};
use qys_sdk_wasm::presentation::{self, choose, Environment, Presentation};
use qys_sdk_wasm::value::Value;
use qys_sdk_wasm::wire::{
    answer_result, outcome, page_grant, state_from_random, ticket_grant, valid_state, Envelope,
    EnvelopeError, Outcome, PageGrant, Request, TicketGrant,
};
use qys_sdk_wasm::{ErrorKind, QysError};

/// The iframe grant of an answer, as the SDK reads it.
fn decode_response(status: u16, body: Option<&Value>, origin: &str) -> Result<PageGrant, QysError> {
    page_grant(answer_result(status, body)?, origin)
}

fn v(json: &str) -> Value {
    Value::parse(json).unwrap()
}

#[test]
fn bad_inputs_are_refused_with_their_param_and_an_actionable_message() {
    let table: &[(Action, &str, &str, &str)] = &[
        (
            Action::PersonalSign,
            r#"{"contact":"13700000044"}"#,
            "contractId",
            "contractId is required",
        ),
        (
            Action::PersonalSign,
            r#"{"contractId":"","contact":"13700000044"}"#,
            "contractId",
            "1–19 decimal digits",
        ),
        (
            Action::PersonalSign,
            r#"{"contractId":"26034178541242818701","contact":"13700000044"}"#,
            "contractId",
            "1–19 decimal digits",
        ),
        (
            Action::PersonalSign,
            r#"{"contractId":"9999999999999999999","contact":"13700000044"}"#,
            "contractId",
            "larger than any contract id",
        ),
        (
            Action::PersonalSign,
            r#"{"contractId":"2603-4178","contact":"13700000044"}"#,
            "contractId",
            "decimal digits",
        ),
        (
            Action::PersonalSign,
            r#"{"contractId":2603417854124281870,"contact":"13700000044"}"#,
            "contractId",
            "already rounded",
        ),
        (
            Action::PersonalSign,
            r#"{"contractId":1.5,"contact":"13700000044"}"#,
            "contractId",
            "decimal string, not a number",
        ),
        (
            Action::PersonalSign,
            r#"{"contractId":true,"contact":"13700000044"}"#,
            "contractId",
            "not a boolean",
        ),
        (
            Action::PersonalSign,
            r#"{"contractId":"2603417854124281870"}"#,
            "contact",
            "contact is required",
        ),
        (
            Action::EnterpriseSign,
            r#"{"contractId":"1","contact":"137******44"}"#,
            "contact",
            "mobile number or an email",
        ),
        (
            Action::EnterpriseSign,
            r#"{"contractId":"1","contact":"23700000044"}"#,
            "contact",
            "mobile number or an email",
        ),
        (
            Action::PersonalSign,
            r#"{"contractId":"1","contact":"a@b.cn","contactType":"MOBILE"}"#,
            "contactType",
            "looks like EMAIL",
        ),
        (
            Action::PersonalSign,
            r#"{"contractId":"1","contact":"a@b.cn","contactType":"FAX"}"#,
            "contactType",
            "one of MOBILE, EMAIL",
        ),
        (
            Action::PersonalSign,
            r#"{"contractId":"1","contact":13700000044}"#,
            "contact",
            "must be a string, not a number",
        ),
        (
            Action::PersonalAuth,
            r#"{"contact":"13700000044","mode":"IVS"}"#,
            "mode",
            "one of DEFAULT, FACE, BANK",
        ),
        (
            Action::PersonalAuth,
            r#"{"mode":"FACE"}"#,
            "contact",
            "contact is required",
        ),
        (
            Action::PersonalAuth,
            r#"{"contact":"13700000044","manual":"yes"}"#,
            "manual",
            "must be a boolean",
        ),
        (
            Action::PersonalAuth,
            r#"{"contact":"13700000044","bankNo":"6222 0000"}"#,
            "bankNo",
            "digits only",
        ),
        (
            Action::PersonalAuth,
            r#"{"contact":"13700000044","bankMobile":"12345"}"#,
            "bankMobile",
            "11-digit mobile",
        ),
        (
            Action::PersonalAuth,
            r#"{"contact":"13700000044","modifyFields":"USERNAME"}"#,
            "modifyFields",
            "must be an array",
        ),
        (
            Action::PersonalAuth,
            r#"{"contact":"13700000044","modifyFields":["MOBILE"]}"#,
            "modifyFields",
            "items must be among",
        ),
        (
            Action::PersonalAuth,
            r#"{"contact":"13700000044","callbackUrl":"javascript:alert(1)"}"#,
            "callbackUrl",
            "http(s) URL",
        ),
        (
            Action::PersonalAuth,
            r#"{"contact":"13700000044","username":"a\u0000b"}"#,
            "username",
            "control characters",
        ),
        (
            Action::EnterpriseAuth,
            r#"{"companyAuthBean":{"applicant":{"contact":"13700000044"}}}"#,
            "companyName",
            "companyName is required",
        ),
        (
            Action::EnterpriseAuth,
            r#"{"companyName":"甲"}"#,
            "companyAuthBean",
            "companyAuthBean is required",
        ),
        (
            Action::EnterpriseAuth,
            r#"{"companyName":"甲","companyAuthBean":[]}"#,
            "companyAuthBean",
            "must be an object, not an array",
        ),
        (
            Action::EnterpriseAuth,
            r#"{"companyName":"甲","companyAuthBean":{}}"#,
            "companyAuthBean.applicant",
            "companyAuthBean.applicant is required",
        ),
        (
            Action::EnterpriseAuth,
            r#"{"companyName":"甲","companyAuthBean":{"applicant":{"name":"张三"}}}"#,
            "companyAuthBean.applicant.contact",
            "is required",
        ),
        (
            Action::EnterpriseAuth,
            r#"{"companyName":"甲","companyAuthBean":{"companyName":"乙","applicant":{"contact":"13700000044"}}}"#,
            "companyAuthBean.companyName",
            "differs",
        ),
        (
            Action::EnterpriseAuth,
            r#"{"companyName":"甲","companyAuthBean":{"applicant":{"contact":"13700000044"},"closeButton":1}}"#,
            "companyAuthBean.closeButton",
            "must be a boolean",
        ),
        (
            Action::EnterpriseAuth,
            r#"{"companyName":"甲","companyAuthBean":{"applicant":{"contact":"13700000044"},"modifyFields":["address"]}}"#,
            "companyAuthBean.modifyFields",
            "corpName, registerNo, legalPerson",
        ),
    ];
    for (action, params, param, needle) in table {
        let err = Params::parse(*action, &v(params)).expect_err(params);
        assert_eq!(err.kind, ErrorKind::InvalidArgument, "{params}");
        assert_eq!(err.param.as_deref(), Some(*param), "{params}: {err:?}");
        assert!(
            err.message.contains(needle),
            "{params}: {:?} lacks {needle:?}",
            err.message
        );
    }
    let long_name = format!(
        r#"{{"contact":"13700000044","username":"{}"}}"#,
        "张".repeat(65)
    );
    assert!(Params::parse(Action::PersonalAuth, &v(&long_name))
        .unwrap_err()
        .message
        .contains("longer than 64"));
    let not_object = Params::parse(Action::PersonalAuth, &v("[]")).unwrap_err();
    assert_eq!(not_object.param.as_deref(), Some("params"));
}

#[test]
fn safe_integer_contract_ids_are_taken_as_strings() {
    assert_eq!(
        contract_id(Some(&v("9007199254740991")), "contractId").unwrap(),
        "9007199254740991"
    );
    assert!(contract_id(Some(&v("9007199254740992")), "contractId")
        .unwrap_err()
        .message
        .contains("already rounded"));
    assert!(contract_id(Some(&v("0")), "contractId").is_err());
    assert!(contract_id(Some(&v(r#""0000""#)), "contractId")
        .unwrap_err()
        .message
        .contains("may not be zero"));
}

#[test]
fn envelopes_round_trip_through_the_form_body() {
    let params = Params::parse(
        Action::EnterpriseAuth,
        &v(r#"{"companyName":" 自测JSSDK企业认证x ","companyAuthBean":{"applicant":{"name":"AAA","contact":"15164046497"},
              "closeButton":true,"modifyFields":["corpName","corpName"]}}"#),
    )
    .unwrap();
    let envelope = Envelope {
        action: Action::EnterpriseAuth,
        state: "abcdefghijklmnopqrstuv".into(),
        params,
        presentation: Presentation::Iframe,
        return_url: None,
    };
    let body = envelope.to_form_body();
    assert!(
        body.starts_with("requestData=%7B%22v%22%3A1%2C%22action%22%3A%22enterpriseAuth%22"),
        "{body}"
    );
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
    assert_eq!(
        Request::parse(&v(&fields[0].1)).unwrap(),
        Request::Flow(Box::new(envelope))
    );
}

#[test]
fn redirect_and_outcome_requests_round_trip() {
    let params = Params::parse(
        Action::PersonalAuth,
        &v(r#"{"mode":"FACE","contact":"13900000001"}"#),
    )
    .unwrap();
    let envelope = Envelope {
        action: Action::PersonalAuth,
        state: STATE.into(),
        params,
        presentation: Presentation::Redirect,
        return_url: Some("https://shop.example/pay?x=1&y=%20".into()),
    };
    let decode = |body: &str| {
        let fields: Vec<(String, String)> = serde_urlencoded::from_str(body).unwrap();
        Request::parse(&v(&fields[0].1))
    };
    let json: serde_json::Value = serde_json::from_str(&envelope.to_json()).unwrap();
    assert_eq!(
        (json["presentation"].as_str(), json["returnUrl"].as_str()),
        (Some("redirect"), Some("https://shop.example/pay?x=1&y=%20"))
    );
    assert_eq!(
        decode(&envelope.to_form_body()).unwrap(),
        Request::Flow(Box::new(envelope))
    );
    let outcome = Request::outcome_form_body(STATE, "abc.DEF_-1");
    assert_eq!(
        decode(&outcome).unwrap(),
        Request::Outcome {
            state: STATE.into(),
            flow: "abc.DEF_-1".into()
        }
    );
    let e = |json: &str| Request::parse(&v(json)).unwrap_err();
    let flow = |extra: &str| {
        format!(
            r#"{{"v":1,"action":"personalSign","state":"{STATE}","params":{{"contractId":"1","contact":"13700000044"}}{extra}}}"#
        )
    };
    assert!(
        matches!(e(&flow(r#","presentation":"popup""#)), EnvelopeError::Malformed(m) if m.contains("presentation"))
    );
    for url in [
        "",
        r#","returnUrl":"javascript:alert(1)""#,
        r#","returnUrl":"https://a.example/#frag""#,
        r#","returnUrl":"https://a.example/ x""#,
    ] {
        let refused = e(&flow(&format!(r#","presentation":"redirect"{url}"#)));
        assert!(
            matches!(&refused, EnvelopeError::InvalidParam(q) if q.param.as_deref() == Some("returnUrl")),
            "{url}: {refused:?}"
        );
    }
    let long = format!(
        r#","presentation":"redirect","returnUrl":"https://a.example/{}""#,
        "a".repeat(2048)
    );
    assert!(matches!(e(&flow(&long)), EnvelopeError::InvalidParam(_)));
    // Only redirects carry a return URL.
    match Request::parse(&v(&flow(
        r#","presentation":"miniProgram","returnUrl":"https://a.example/""#,
    )))
    .unwrap()
    {
        Request::Flow(f) => assert_eq!(
            (f.presentation, f.return_url),
            (Presentation::MiniProgram, None)
        ),
        other => panic!("{other:?}"),
    }
    for params in [
        r#"{}"#,
        r#"{"flow":""}"#,
        r#"{"flow":"a b"}"#,
        r#"{"flow":1}"#,
    ] {
        let refused = e(&format!(
            r#"{{"v":1,"action":"outcome","state":"{STATE}","params":{params}}}"#
        ));
        assert!(
            matches!(&refused, EnvelopeError::InvalidParam(q) if q.param.as_deref() == Some("flow")),
            "{params}"
        );
    }
    assert!(matches!(
        e(r#"{"v":1,"action":"outcome","state":"short","params":{"flow":"x"}}"#),
        EnvelopeError::Malformed(_)
    ));
    assert!(
        matches!(e(r#"{"v":1,"action":"Outcome","state":"abcdefghijklmnop","params":{}}"#), EnvelopeError::UnknownAction(m) if m.contains("outcome"))
    );
}

#[test]
fn grants_and_outcomes_decode_or_fail_typed() {
    let ok = |result: &str| v(&format!(r#"{{"code":0,"result":{result}}}"#));
    let body = ok(r#"{"pageUrl":"https://h5.example/x","flow":"f.1"}"#);
    let grant = page_grant(answer_result(200, Some(&body)).unwrap(), ORIGIN).unwrap();
    assert_eq!(grant.flow.as_deref(), Some("f.1"));
    // An iframe never uses the flow token: a malformed one does not fail the grant.
    let odd = ok(r#"{"pageUrl":"https://h5.example/x","flow":"<x>"}"#);
    assert_eq!(
        page_grant(answer_result(200, Some(&odd)).unwrap(), ORIGIN)
            .unwrap()
            .flow,
        None
    );
    let body = ok(r#"{"ticket":"0a1b","env":"cn","flow":"f.2"}"#);
    assert_eq!(
        ticket_grant(answer_result(200, Some(&body)).unwrap()).unwrap(),
        TicketGrant {
            ticket: "0a1b".into(),
            env: "cn".into(),
            flow: "f.2".into()
        }
    );
    for (result, why) in [
        (r#"{"env":"cn","flow":"f"}"#, "ticket"),
        (r#"{"ticket":"a&b=c","env":"cn","flow":"f"}"#, "ticket"),
        (r#"{"ticket":"a","env":"C N","flow":"f"}"#, "env"),
        (r#"{"ticket":"a","env":"cn"}"#, "flow"),
        (r#"{"ticket":"a","env":"cn","flow":"<x>"}"#, "flow"),
    ] {
        let err = ticket_grant(&v(result)).unwrap_err();
        assert_eq!(err.kind, ErrorKind::Protocol);
        assert!(err.message.contains(why), "{result}: {}", err.message);
    }
    let sign = outcome(
        Action::PersonalSign,
        &v(r#"{"event":"signSuccess","data":{"contractId":"7","extra":"x"}}"#),
    )
    .unwrap();
    assert_eq!(
        sign,
        Outcome::Event(Event::SignSuccess(v(r#"{"contractId":"7"}"#)))
    );
    assert_eq!(
        outcome(Action::EnterpriseAuth, &v(r#"{"event":"pending"}"#)).unwrap(),
        Outcome::Pending
    );
    for (action, result) in [
        (Action::PersonalSign, r#"{"event":"authSuccess","data":{}}"#),
        (
            Action::PersonalAuth,
            r#"{"event":"authSuccess","data":{"username":5}}"#,
        ),
        (Action::PersonalAuth, r#"{"data":{}}"#),
    ] {
        assert_eq!(
            outcome(action, &v(result)).unwrap_err().kind,
            ErrorKind::Protocol,
            "{result}"
        );
    }
}

const IOS_WECHAT: &str = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148 MicroMessenger/8.0.50(0x1800323a) NetType/WIFI Language/zh_CN";
const IPAD_WECHAT: &str = "Mozilla/5.0 (iPad; CPU OS 16_6 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148 MicroMessenger/8.0.49(0x18003137) NetType/WIFI Language/zh_CN";
const ANDROID_WECHAT: &str = "Mozilla/5.0 (Linux; Android 14; V2307A Build/UP1A.231005.007; wv) AppleWebKit/537.36 (KHTML, like Gecko) Version/4.0 Chrome/130.0.6723.103 Mobile Safari/537.36 XWEB/1300289 MMWEBSDK/20241103 MMWEBID/2585 MicroMessenger/8.0.55.2780(0x28003737) WeChat/arm64 Weixin NetType/WIFI Language/zh_CN ABI/arm64";
const IOS_MINI_PROGRAM: &str = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148 MicroMessenger/8.0.50(0x1800323a) NetType/WIFI Language/zh_CN miniProgram/wx0123456789abcdef";
const ANDROID_MINI_PROGRAM: &str = "Mozilla/5.0 (Linux; Android 13; PGT-AN10 Build/HONORPGT-AN10; wv) AppleWebKit/537.36 (KHTML, like Gecko) Version/4.0 Chrome/116.0.0.0 Mobile Safari/537.36 XWEB/1160117 MMWEBSDK/20240404 MMWEBID/8150 MicroMessenger/8.0.49.2600(0x28003133) WeChat/arm64 Weixin NetType/WIFI Language/zh_CN ABI/arm64 miniProgram/wx0123456789abcdef";
const IOS_SAFARI: &str = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1";
const DESKTOP_CHROME: &str = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/156.0.0.0 Safari/537.36";
const MAC_WECHAT: &str = "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) MicroMessenger/6.8.0(0x16080000) MacWechat/3.8.7(0x13080712) Safari/605.1.15 NetType/WIFI";

/// Personal auth's mode in canonical wire parameters (what `glue::begin` reads).
fn mode(wire: &Value) -> Option<String> {
    wire.get("mode").and_then(Value::as_str).map(str::to_owned)
}

#[test]
fn auto_picks_the_presentation_from_the_user_agent_the_flag_and_the_flow() {
    // Each call as the rules see it: its action and personal auth's mode, read (as the SDK reads
    // it) from the canonical wire parameters.
    let call =
        |action: Action, params: &str| (action, mode(&normalize(action, &v(params)).unwrap()));
    let sign = call(
        Action::PersonalSign,
        r#"{"contractId":"1","contact":"13700000044"}"#,
    );
    let auth = |mode: &str| {
        call(
            Action::PersonalAuth,
            &format!(r#"{{"mode":"{mode}","contact":"13900000001"}}"#),
        )
    };
    let company = call(
        Action::EnterpriseAuth,
        r#"{"companyName":"X","companyAuthBean":{"applicant":{"contact":"13900000002"}}}"#,
    );
    use Presentation::{Iframe as I, MiniProgram as M, Redirect as R};
    // (user agent, __wxjs_environment flag) → [personalSign, FACE, DEFAULT, BANK, enterpriseAuth]
    let table: &[(&str, bool, [Presentation; 5])] = &[
        (IOS_WECHAT, false, [I, R, R, I, I]),
        (IPAD_WECHAT, false, [I, R, R, I, I]),
        (ANDROID_WECHAT, false, [I, I, I, I, I]),
        (MAC_WECHAT, false, [I, I, I, I, I]),
        (IOS_SAFARI, false, [I, I, I, I, I]),
        (DESKTOP_CHROME, false, [I, I, I, I, I]),
        (IOS_MINI_PROGRAM, false, [M, M, M, M, M]),
        (ANDROID_MINI_PROGRAM, false, [M, M, M, M, M]),
        // WeChat's flag alone (the user agent token can be missing before WeixinJSBridgeReady).
        (ANDROID_WECHAT, true, [M, M, M, M, M]),
        ("", false, [I, I, I, I, I]),
    ];
    for (ua, flag, want) in table {
        let env = Environment {
            user_agent: ua,
            mini_program_flag: *flag,
        };
        let got = [
            &sign,
            &auth("FACE"),
            &auth("DEFAULT"),
            &auth("BANK"),
            &company,
        ]
        .map(|p| choose(None, &env, p.0, p.1.as_deref()));
        assert_eq!(&got, want, "{ua} flag={flag}");
        // A stated presentation always wins.
        for fixed in Presentation::ALL {
            assert_eq!(choose(Some(fixed), &env, sign.0, sign.1.as_deref()), fixed);
        }
    }
}

#[test]
fn presentation_rules_titles_camera_and_the_mini_program_url() {
    let auth = |m: &str| {
        mode(
            &normalize(
                Action::PersonalAuth,
                &v(&format!(r#"{{"mode":"{m}","contact":"13900000001"}}"#)),
            )
            .unwrap(),
        )
    };
    assert!(presentation::allow_camera(
        Action::PersonalAuth,
        auth("FACE").as_deref()
    ));
    assert!(!presentation::allow_camera(
        Action::PersonalAuth,
        auth("BANK").as_deref()
    ));
    assert!(presentation::allow_camera(
        Action::PersonalAuth,
        auth("DEFAULT").as_deref()
    ));
    assert!(presentation::allow_camera(Action::EnterpriseSign, None));
    assert!(!presentation::allow_camera(Action::EnterpriseAuth, None));
    assert_eq!(
        presentation::frame_title(Action::EnterpriseSign),
        "契约锁 企业签署"
    );
    assert_eq!(
        presentation::status_text(Action::PersonalSign),
        "正在打开签署页面…"
    );
    assert_eq!(
        presentation::status_text(Action::EnterpriseAuth),
        "正在打开认证页面…"
    );
    assert_eq!(
        presentation::mini_program_url("/pages/qys/qys", Action::EnterpriseAuth, "ab c", "cn"),
        "/pages/qys/qys?page=enterprise-auth&ticket=ab%20c&env=cn"
    );
    assert_eq!(presentation::plugin_page(Action::PersonalSign), "doc");
    assert_eq!(
        presentation::plugin_page(Action::PersonalAuth),
        "personal-auth"
    );
    for page in ["/pages/qys/qys", "/sub/qys-page/index"] {
        assert!(presentation::is_mini_program_page(page), "{page}");
    }
    for page in [
        "",
        "/",
        "pages/qys",
        "/p?x=1",
        "/p#x",
        "//evil",
        "/p q",
        "/页面",
        "/a/../b",
        "/a/./b",
        "/a/",
        "/..",
    ] {
        assert!(!presentation::is_mini_program_page(page), "{page}");
    }
}

#[test]
fn presentation_options_are_checked() {
    let o = |json: &str| Options::parse(&v(json));
    assert_eq!(o("{}").unwrap().presentation, None);
    assert_eq!(o(r#"{"presentation":"auto"}"#).unwrap().presentation, None);
    assert_eq!(
        o(r#"{"presentation":"redirect"}"#).unwrap().presentation,
        Some(Presentation::Redirect)
    );
    assert_eq!(o("{}").unwrap().mini_program_page, "/pages/qys/qys");
    assert_eq!(
        o(r#"{"miniProgramPage":"/sub/sign/index"}"#)
            .unwrap()
            .mini_program_page,
        "/sub/sign/index"
    );
    for (json, param) in [
        (r#"{"presentation":"popup"}"#, "presentation"),
        (r#"{"presentation":"Redirect"}"#, "presentation"),
        (r#"{"presentation":1}"#, "presentation"),
        (r#"{"miniProgramPage":"pages/qys"}"#, "miniProgramPage"),
        (r#"{"miniProgramPage":"/qys?x=1"}"#, "miniProgramPage"),
    ] {
        let e = o(json).unwrap_err();
        assert_eq!(
            (e.kind, e.param.as_deref()),
            (ErrorKind::InvalidArgument, Some(param)),
            "{json}"
        );
    }
}

#[test]
fn envelope_errors() {
    let e = |json: &str| Request::parse(&v(json)).unwrap_err();
    assert!(matches!(e("[]"), EnvelopeError::Malformed(_)));
    assert!(matches!(
        e(r#"{"v":2,"action":"personalSign","state":"abcdefghijklmnop","params":{}}"#),
        EnvelopeError::UnsupportedVersion(_)
    ));
    assert!(matches!(
        e(r#"{"v":1,"action":"uniformapi","state":"abcdefghijklmnop","params":{}}"#),
        EnvelopeError::UnknownAction(_)
    ));
    assert!(matches!(
        e(r#"{"v":1,"action":"personalSign","state":"short","params":{}}"#),
        EnvelopeError::Malformed(_)
    ));
    assert!(matches!(
        e(r#"{"v":1,"action":"personalSign","state":"abcdefghijklmnop"}"#),
        EnvelopeError::Malformed(_)
    ));
    assert!(matches!(
        e(r#"{"v":1,"action":"personalSign","state":"abcdefghijklmnop","params":{}}"#),
        EnvelopeError::InvalidParam(_)
    ));
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
    let ok = v(
        r#"{"code":0,"message":"SUCCESS","result":{"pageUrl":"http://127.0.0.1:8081/h5?ticket=t","returnOrigin":"http://127.0.0.1:8082"}}"#,
    );
    assert_eq!(
        decode_response(200, Some(&ok), origin).unwrap(),
        PageGrant {
            page_url: "http://127.0.0.1:8081/h5?ticket=t".into(),
            return_origin: "http://127.0.0.1:8082".into(),
            flow: None
        }
    );
    let no_origin = v(r#"{"code":0,"result":{"pageUrl":"https://h5.example/x"}}"#);
    assert_eq!(
        decode_response(200, Some(&no_origin), origin)
            .unwrap()
            .return_origin,
        origin
    );
    let platform = decode_response(
        200,
        Some(&v(r#"{"code":1110,"message":"NO VIEW PERMISSION"}"#)),
        origin,
    )
    .unwrap_err();
    assert_eq!(
        (platform.kind, platform.code, platform.message.as_str()),
        (ErrorKind::Platform, Some(1110), "NO VIEW PERMISSION")
    );
    let http = decode_response(
        403,
        Some(&v(r#"{"code":40300,"message":"origin x is not allowed"}"#)),
        origin,
    )
    .unwrap_err();
    assert_eq!((http.kind, http.code), (ErrorKind::Http, Some(403)));
    assert!(http
        .message
        .contains("origin x is not allowed (proxy code 40300)"));
    // A source over the proxy's per-address limit (QYS_SDK_RATE): retryable, so `http` with
    // the status, and the proxy's code in the message.
    let limited = decode_response(
        429,
        Some(&v(
            r#"{"code":42900,"message":"too many requests from this address; retry in 1 s"}"#,
        )),
        origin,
    )
    .unwrap_err();
    assert_eq!((limited.kind, limited.code), (ErrorKind::Http, Some(429)));
    assert!(limited
        .message
        .contains("too many requests from this address; retry in 1 s (proxy code 42900)"));
    assert_eq!(
        decode_response(500, None, origin).unwrap_err().code,
        Some(500)
    );
    for (body, why) in [
        (None, "not JSON"),
        (Some(v(r#"{"message":"hi"}"#)), "no numeric code"),
        (Some(v(r#"{"code":0}"#)), "no result"),
        (
            Some(v(
                r#"{"code":0,"result":{"pageUrl":"javascript:alert(1)"}}"#,
            )),
            "pageUrl",
        ),
        (
            Some(v(
                r#"{"code":0,"result":{"pageUrl":"https://x/","returnOrigin":"https://x/path"}}"#,
            )),
            "returnOrigin",
        ),
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
    v(&format!(
        r#"{{"type":"qys-sdk","v":1,"state":"{STATE}","event":"{event}","data":{data}}}"#
    ))
}

#[test]
fn messages_are_accepted_only_from_the_frame_origin_and_state_once() {
    let good = msg(
        "signSuccess",
        r#"{"contractId":"2603417854124281870","extra":{"x":1}}"#,
    );
    // Forged origin, wrong source window, wrong state: ignored, and the gate stays open.
    let mut g = gate(Action::PersonalSign);
    assert_eq!(g.offer("http://127.0.0.1:9999", true, &good), None);
    assert_eq!(g.offer(ORIGIN, false, &good), None);
    let wrong_state = v(
        r#"{"type":"qys-sdk","v":1,"state":"zzzzzzzzzzzzzzzzzzzzzz","event":"signSuccess","data":{}}"#,
    );
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
        Some(Event::SignSuccess(v(
            r#"{"contractId":"2603417854124281870"}"#
        )))
    );
    assert!(g.is_done());
    assert_eq!(g.offer(ORIGIN, true, &good), None);
    assert_eq!(g.offer(ORIGIN, true, &msg("authFail", "{}")), None);
}

#[test]
fn auth_events_carry_the_seed_user_info() {
    let mut g = gate(Action::PersonalAuth);
    assert_eq!(
        g.offer(ORIGIN, true, &msg("signSuccess", "{}")),
        None,
        "not an auth event"
    );
    let info = r#"{"username":"李雷","mobile":"13900000003","cardNo":"110","bankNo":"6222","contact":"13900000004","secret":"x"}"#;
    assert_eq!(
        g.offer(ORIGIN, true, &msg("authSuccess", info)),
        Some(Event::AuthSuccess(v(
            r#"{"username":"李雷","mobile":"13900000003","cardNo":"110","bankNo":"6222","contact":"13900000004"}"#
        )))
    );
    let mut g = gate(Action::EnterpriseAuth);
    let company = r#"{"name":"甲","registerNo":"1","legalPerson":"乙","username":"ignored"}"#;
    assert_eq!(
        g.offer(ORIGIN, true, &msg("authSuccess", company)),
        Some(Event::AuthSuccess(v(
            r#"{"name":"甲","registerNo":"1","legalPerson":"乙"}"#
        )))
    );
    let mut g = gate(Action::EnterpriseSign);
    assert_eq!(
        g.offer(ORIGIN, true, &msg("authFail", "null")),
        Some(Event::AuthFail)
    );
}

#[test]
fn options_are_checked() {
    use qys_sdk_wasm::options::Options;
    let o = Options::parse(&v(
        r#"{"query":{"a":1,"token":"ab1234","on":true,"skip":null},"timeoutMs":2000,"debug":true}"#,
    ))
    .unwrap();
    assert_eq!(
        o.query,
        vec![
            ("a".into(), "1".into()),
            ("token".into(), "ab1234".into()),
            ("on".into(), "true".into())
        ]
    );
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
        assert_eq!(
            (err.kind, err.param.as_deref()),
            (ErrorKind::InvalidArgument, Some(param)),
            "{json}"
        );
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
            (Value::Array(a), serde_json::Value::Array(b)) => {
                a.len() == b.len() && a.iter().zip(b).all(|(x, y)| same(x, y))
            }
            (Value::Object(a), serde_json::Value::Object(b)) => {
                let ours_value = Value::Object(a.clone());
                b.iter()
                    .all(|(k, y)| ours_value.get(k).is_some_and(|x| same(x, y)))
                    && a.iter().all(|(k, _)| b.contains_key(k))
            }
            _ => false,
        }
    }
    let deep_ok = format!("{}1{}", "[".repeat(60), "]".repeat(60));
    let docs = [
        "null",
        "true",
        " false ",
        "0",
        "-0",
        "12",
        "-12.5",
        "1e3",
        "1.5E-3",
        "2603417854124281870",
        "123456789012345678901234",
        "9007199254740993",
        r#""a\"b\\c\/d\b\f\n\r\t""#,
        r#""\u00e9\u4e2d\ud83d\ude00""#,
        r#""张三""#,
        r#"{"a":[1,{"b":null}],"c":{}}"#,
        "[]",
        "[ 1 , 2 ]",
        r#"{"k":1,"k":2}"#,
        &deep_ok,
        "01",
        "1.",
        ".5",
        "-",
        "1e",
        "[1,]",
        r#"{"a":1,}"#,
        "{'a':1}",
        "\"\u{1}\"",
        "[1 2]",
        "nul",
        "\"abc",
        r#""\x""#,
        "{\"a\"}",
        "",
        "1 2",
        "NaN",
        "[",
        r#""\ud83d""#,
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
    assert_eq!(
        v(r#"{"k":1,"k":2}"#).get("k"),
        Some(&Value::Number(2.0)),
        "the last duplicate key wins, as in JSON.parse"
    );
    assert_eq!(v("0e999"), Value::Number(0.0));
    for (n, text) in [(0.9999999999, "1"), (1.9999999999, "2"), (-0.5, "-0.5")] {
        assert_eq!(Value::Number(n).to_json(), text);
    }
    assert!(
        Value::parse(&format!("{}{}", "[".repeat(100), "]".repeat(100))).is_err(),
        "nesting is bounded"
    );
    assert_eq!(
        v("2603417854124281870"),
        Value::Number(2603417854124281870.0),
        "rounds like JavaScript"
    );
    for n in [0.0, 1.0, -42.0, 2.5, 0.125, 9007199254740991.0, 1e21] {
        assert_eq!(v(&Value::Number(n).to_json()), Value::Number(n), "{n}");
    }
    let Value::Number(big) = v(&Value::Number(1e300).to_json()) else {
        panic!()
    };
    assert!(
        (big / 1e300 - 1.0).abs() < 1e-12,
        "large numbers are close: {big}"
    );
}

#[test]
fn pending_redirect_flows_survive_only_as_state_action_and_token() {
    use qys_sdk_wasm::pending::{
        list_json, parse_list, return_url, returned_state, without_state, PendingFlow, MAX_PENDING,
    };
    let flow = |i: usize| PendingFlow {
        state: format!("{STATE}{i:02}"),
        action: Action::PersonalAuth,
        flow: format!("tok.{i}"),
        proxy: "https://p.example/qys/proxy".into(),
    };
    let list: Vec<PendingFlow> = (0..MAX_PENDING + 2).map(flow).collect();
    let stored = list_json(&list);
    assert_eq!(
        stored.matches("\"s\"").count(),
        MAX_PENDING,
        "only the newest are kept"
    );
    assert_eq!(parse_list(&v(&stored)), list[2..].to_vec());
    assert!(
        !stored.contains("contact") && !stored.contains("1390"),
        "{stored}"
    );
    // The storage belongs to the page: anything malformed is skipped, never trusted.
    assert_eq!(parse_list(&Value::Null), vec![]);
    assert_eq!(parse_list(&v(r#"{"s":"x"}"#)), vec![]);
    let mixed = format!(
        r#"[{{"s":"short","a":"personalAuth","f":"t","p":"x"}},{{"s":"{STATE}","a":"uniformapi","f":"t","p":"x"}},
            {{"s":"{STATE}","a":"personalSign","f":"t k","p":"x"}},{{"s":"{STATE}","a":"personalSign","f":"t"}},
            {{"s":"{STATE}","a":"personalSign","f":"t","p":"x"}}]"#
    );
    let only = PendingFlow {
        state: STATE.into(),
        action: Action::PersonalSign,
        flow: "t".into(),
        proxy: "x".into(),
    };
    assert_eq!(parse_list(&v(&mixed)), vec![only]);

    assert_eq!(
        returned_state(&format!("?a=1&qys_state={STATE}&b=2")),
        Some(STATE)
    );
    assert_eq!(returned_state(&format!("qys_state={STATE}")), Some(STATE));
    for search in [
        "",
        "?qys_state=",
        "?qys_state=short",
        "?xqys_state=abcdefghijklmnopqrstuv",
        "?qys_state=abcdefghijklmnop%3C",
    ] {
        assert_eq!(returned_state(search), None, "{search}");
    }
    assert_eq!(
        without_state(&format!("?a=%20&qys_state={STATE}&b=+")),
        "?a=%20&b=+"
    );
    assert_eq!(without_state(&format!("?qys_state={STATE}")), "");
    assert_eq!(without_state("?qys_stateful=1"), "?qys_stateful=1");
    assert_eq!(
        without_state(&format!("?a=1&&b&qys_state={STATE}&")),
        "?a=1&&b&",
        "empty segments stay"
    );
    assert_eq!(without_state("?a=1&&b"), "?a=1&&b");
    assert_eq!(without_state(&format!("?&qys_state={STATE}")), "");
    assert_eq!(
        return_url(&format!(
            "https://shop.example/pay?x=1&qys_state={STATE}#top"
        )),
        "https://shop.example/pay?x=1"
    );
    assert_eq!(
        return_url("https://shop.example/pay#top"),
        "https://shop.example/pay"
    );
    assert_eq!(
        return_url("https://shop.example/pay?x=1&&y"),
        "https://shop.example/pay?x=1&&y"
    );
}

#[test]
fn outcome_answers_tell_unknown_flows_from_errors() {
    use qys_sdk_wasm::wire::{append_query, outcome_answer};
    let body = v(r#"{"code":40004,"message":"the flow token is invalid or has expired"}"#);
    assert_eq!(
        outcome_answer(Action::PersonalSign, 400, Some(&body)).unwrap(),
        None
    );
    let http = outcome_answer(
        Action::PersonalSign,
        502,
        Some(&v(r#"{"code":50200,"message":"down"}"#)),
    )
    .unwrap_err();
    assert_eq!((http.kind, http.code), (ErrorKind::Http, Some(502)));
    let pending = v(r#"{"code":0,"result":{"event":"pending"}}"#);
    assert_eq!(
        outcome_answer(Action::PersonalSign, 200, Some(&pending)).unwrap(),
        Some(Outcome::Pending)
    );
    let pairs = [
        ("a b".to_owned(), "1&2".to_owned()),
        ("t".to_owned(), "x".to_owned()),
    ];
    assert_eq!(append_query("", &pairs), "?a+b=1%262&t=x");
    assert_eq!(append_query("?k=%7e", &pairs[1..]), "?k=%7e&t=x");
}

#[test]
fn flat_text_reads_back_every_json_value() {
    let docs = [
        r#"{"a":[1,2.5,-3,1e300,5e-324,true,false,null,"x\"\n\u2028😀"],"b":{"c":"张三","":{}},"":[]}"#,
        "[]",
        r#""""#,
        "0",
        "9007199254740993",
    ];
    for doc in docs {
        let value = v(doc);
        assert_eq!(Value::from_flat(&value.to_flat()), Some(value), "{doc}");
    }
    // Lengths are JavaScript's, in UTF-16 units: an emoji is two, a Chinese character one.
    assert_eq!(Value::from_flat("s2:😀"), Some(Value::String("😀".into())));
    assert_eq!(Value::from_flat("o1:1:张s0:"), Some(v(r#"{"张":""}"#)));
    assert_eq!(
        Value::from_flat("d3ff8000000000000"),
        Some(Value::Number(1.5))
    );
    for bad in [
        "",
        "x",
        "nn",
        "s3:ab",
        "s1:😀",
        "s2:张",
        "d3ff80000",
        "d3ff800000000000g",
        "a2:n",
        "o1:an",
        "o1:1:a",
        "s99999999999999999999999:",
    ] {
        assert_eq!(Value::from_flat(bad), None, "{bad:?}");
    }
    // Nesting is bounded exactly as in the JSON reader.
    let flat = |n: usize| format!("{}n", "a1:".repeat(n));
    let json = |n: usize| format!("{}null{}", "[".repeat(n), "]".repeat(n));
    assert!(Value::from_flat(&flat(64)).is_some() && Value::parse(&json(64)).is_ok());
    assert!(Value::from_flat(&flat(65)).is_none() && Value::parse(&json(65)).is_err());
}

/// The canonical wire parameters of each action, as the SDK sends them (the same text 94ac05c's
/// hand-written validation wrote), and the typed parameters the proxy reads from them.
#[test]
fn normalize_writes_the_canonical_wire_parameters() {
    let cases = [
        (
            Action::PersonalSign,
            r#"{"contractId":9007199254740991,"contact":" a@b.cn ","contactType":"EMAIL","x":1}"#,
            r#"{"contractId":"9007199254740991","contact":"a@b.cn","contactType":"EMAIL"}"#,
        ),
        (
            Action::EnterpriseSign,
            r#"{"contractId":"1","contact":"13700000044"}"#,
            r#"{"contractId":"1","contact":"13700000044","contactType":"MOBILE"}"#,
        ),
        (
            Action::PersonalAuth,
            r#"{"contact":"13900000001","username":"  ","manual":true,"modifyFields":["BANKNO","USERNAME","BANKNO"]}"#,
            r#"{"mode":"DEFAULT","contact":"13900000001","contactType":"MOBILE","manual":true,"modifyFields":["BANKNO","USERNAME"]}"#,
        ),
        (
            Action::PersonalAuth,
            r#"{"mode":"BANK","contact":"13900000001","bankNo":"6222","bankMobile":"13900000002","manual":false,"modifyFields":[],"callbackUrl":" https://x.cn/cb "}"#,
            r#"{"mode":"BANK","contact":"13900000001","contactType":"MOBILE","bankNo":"6222","bankMobile":"13900000002","callbackUrl":"https://x.cn/cb"}"#,
        ),
        (
            Action::EnterpriseAuth,
            r#"{"companyName":" 甲 ","companyAuthBean":{"companyName":"甲","closeButton":false,"applicant":{"name":"张三","contact":"13900000002"},"modifyFields":["corpName"],"registerNo":"91"}}"#,
            r#"{"companyName":"甲","companyAuthBean":{"applicant":{"name":"张三","contact":"13900000002","contactType":"MOBILE"},"registerNo":"91","closeButton":false,"modifyFields":["corpName"]}}"#,
        ),
        (
            Action::EnterpriseAuth,
            r#"{"companyName":"乙","companyAuthBean":{"closeButton":true,"applicant":{"contact":"a@b.cn"}}}"#,
            r#"{"companyName":"乙","companyAuthBean":{"applicant":{"contact":"a@b.cn","contactType":"EMAIL"}}}"#,
        ),
    ];
    for (action, params, sent) in cases {
        let wire = normalize(action, &v(params)).unwrap();
        assert_eq!(wire.to_json(), sent, "{params}");
        assert_eq!(
            normalize(action, &wire).as_ref(),
            Ok(&wire),
            "canonical: {params}"
        );
        assert_eq!(
            Params::parse(action, &v(params)).unwrap().to_value(),
            wire,
            "typed: {params}"
        );
    }
}

#[test]
fn byte_splitting_matches_the_standard_library() {
    use qys_sdk_wasm::value::{pieces, split_once_byte};
    for s in ["", "&", "a", "a&b", "&a&&b&", "张&三&", "a=1&qys_state=x"] {
        assert_eq!(
            pieces(s, b'&').collect::<Vec<_>>(),
            s.split('&').collect::<Vec<_>>(),
            "{s:?}"
        );
        assert_eq!(split_once_byte(s, b'&'), s.split_once('&'), "{s:?}");
    }
}
