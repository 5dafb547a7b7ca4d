//! The SDK in headless Chromium (wasm-bindgen-test) against a running `qys-proxy` sandbox and a
//! misbehaving server; `scripts/test.sh` starts both on these loopback ports.
#![cfg(target_arch = "wasm32")]

use js_sys::{Promise, Reflect};
use qys_sdk_wasm::QysSdk;
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;
use wasm_bindgen_test::*;
use web_sys::HtmlIFrameElement;

wasm_bindgen_test_configure!(run_in_browser);

const PROXY: &str = match option_env!("QYS_TEST_PROXY") {
    Some(url) => url,
    None => "http://127.0.0.1:18180/qys/proxy",
};
const SANDBOX: &str = match option_env!("QYS_TEST_SANDBOX") {
    Some(url) => url,
    None => "http://127.0.0.1:18181",
};
const FAULTS: &str = match option_env!("QYS_TEST_FAULTS") {
    Some(url) => url,
    None => "http://127.0.0.1:18190",
};

fn js(json: &str) -> JsValue {
    js_sys::JSON::parse(json).unwrap()
}

fn sdk(url: &str, options: &str) -> QysSdk {
    QysSdk::new(url.into(), Some(js(options))).unwrap()
}

async fn frame(promise: Promise) -> HtmlIFrameElement {
    let element = JsFuture::from(promise)
        .await
        .expect("resolves to an element");
    element.dyn_into::<HtmlIFrameElement>().expect("an iframe")
}

/// The rejection's (name, kind, code, message).
async fn rejection(promise: Promise) -> (String, String, JsValue, String) {
    let error = JsFuture::from(promise).await.expect_err("rejects");
    let get = |k: &str| Reflect::get(&error, &k.into()).unwrap();
    (
        get("name").as_string().unwrap(),
        get("kind").as_string().unwrap(),
        get("code"),
        get("message").as_string().unwrap(),
    )
}

/// How many requests the fault server received, and the last one's path and query.
async fn faults_seen() -> (f64, String) {
    let window = web_sys::window().unwrap();
    let response: web_sys::Response =
        JsFuture::from(window.fetch_with_str(&format!("{FAULTS}/count")))
            .await
            .unwrap()
            .unchecked_into();
    let body = JsFuture::from(response.json().unwrap()).await.unwrap();
    let get = |k: &str| Reflect::get(&body, &k.into()).unwrap();
    (
        get("received").as_f64().unwrap(),
        get("last").as_string().unwrap(),
    )
}

async fn faults_received() -> f64 {
    faults_seen().await.0
}

fn check_frame(frame: &HtmlIFrameElement, camera: bool) {
    assert!(
        frame.src().starts_with(&format!("{SANDBOX}/h5?ticket=")),
        "{}",
        frame.src()
    );
    assert!(frame.title().starts_with("契约锁"), "titled");
    assert_eq!(
        frame.get_attribute("allow").as_deref(),
        camera.then_some("camera")
    );
    assert_eq!(frame.style().get_property_value("width").unwrap(), "100%");
    assert_eq!(frame.style().get_property_value("height").unwrap(), "100%");
}

/// The SDK's own byte-wise `memmove`/`memcpy` (src/mem.rs): overlapping copies either way, of
/// every length and offset up to 40 bytes, as the standard library would make them.
#[wasm_bindgen_test]
fn overlapping_copies_are_exact() {
    for len in 0..40usize {
        for shift in 1..8usize {
            let original: Vec<u8> = (0..48u8).collect();
            let mut forward = original.clone();
            forward.copy_within(shift..shift + len, 0);
            assert_eq!(&forward[..len], &original[shift..shift + len]);
            assert_eq!(&forward[len..], &original[len..]);
            let mut backward = original.clone();
            backward.copy_within(0..len, shift);
            assert_eq!(&backward[shift..shift + len], &original[..len]);
            assert_eq!(&backward[..shift], &original[..shift]);
        }
    }
}

#[wasm_bindgen_test]
async fn personal_sign_resolves_to_a_camera_enabled_iframe() {
    let sdk = sdk(PROXY, r#"{"query":{"a":1,"token":"ab1234"}}"#);
    let f =
        frame(sdk.personal_sign("2603417854124281870".into(), "13700000044".into(), None)).await;
    check_frame(&f, true);
}

#[wasm_bindgen_test]
async fn enterprise_sign_resolves_with_a_safe_integer_id_too() {
    let sdk = sdk(PROXY, "{}");
    // 2603417854124281870 as a number would be refused; a safe integer id is accepted and sent as a string.
    let err = rejection(sdk.enterprise_sign(
        JsValue::from_f64(2603417854124281870.0),
        "13800000055".into(),
        None,
    ))
    .await;
    assert_eq!(err.1, "invalidArgument");
    assert!(err.3.contains("already rounded"), "{}", err.3);
    let f =
        frame(sdk.enterprise_sign("2603417854124281870".into(), "13800000055".into(), None)).await;
    check_frame(&f, true);
}

#[wasm_bindgen_test]
async fn personal_auth_resolves_and_bank_mode_needs_no_camera() {
    let sdk = sdk(PROXY, "{}");
    let f = frame(sdk.personal_auth(js(r#"{"mode":"FACE","contact":"13900000001"}"#), None)).await;
    check_frame(&f, true);
    let f = frame(sdk.personal_auth(
        js(r#"{"mode":"BANK","contact":"13900000001","bankNo":"6222"}"#),
        None,
    ))
    .await;
    check_frame(&f, false);
}

#[wasm_bindgen_test]
async fn enterprise_auth_resolves() {
    let sdk = sdk(PROXY, "{}");
    let params = js(
        r#"{"companyName":"自测JSSDK企业认证x","companyAuthBean":{"applicant":{"name":"胡震坤","contact":"15164046497"},"closeButton":true}}"#,
    );
    let f = frame(sdk.enterprise_auth(params, None)).await;
    check_frame(&f, false);
}

#[wasm_bindgen_test]
async fn invalid_arguments_reject_and_send_nothing() {
    let sdk = sdk(&format!("{FAULTS}/status500"), "{}");
    let before = faults_received().await;
    let callbacks = js(r#"{"signSuccessCb":"not a function"}"#);
    let cases = [
        sdk.personal_sign("2603417854124281870".into(), "137******44".into(), None),
        sdk.personal_sign("12ab".into(), "13700000044".into(), None),
        sdk.personal_sign(
            "2603417854124281870".into(),
            "13700000044".into(),
            Some(callbacks),
        ),
        sdk.personal_auth(js(r#"{"mode":"IVS","contact":"13700000044"}"#), None),
        sdk.enterprise_auth(js(r#"{"companyName":"甲"}"#), None),
    ];
    for promise in cases {
        let (name, kind, code, message) = rejection(promise).await;
        assert_eq!(
            (name.as_str(), kind.as_str(), code),
            ("QysError", "invalidArgument", JsValue::NULL),
            "{message}"
        );
    }
    assert_eq!(
        faults_received().await,
        before,
        "nothing reached the network"
    );
    let bad = QysSdk::new(PROXY.into(), Some(js(r#"{"timeoutMs":-1}"#)))
        .err()
        .expect("constructor throws");
    assert_eq!(
        Reflect::get(&bad, &"kind".into()).unwrap(),
        "invalidArgument"
    );
    assert!(QysSdk::new("ftp://x/".into(), None).is_err());
}

/// Arguments are read as `JSON.stringify` sees them (`toJSON`, boxed strings; members that are
/// functions or `undefined` left out); cycles and BigInts are refused as not plain data.
#[wasm_bindgen_test]
async fn arguments_are_read_as_json_sees_them() {
    let make = |body: &str| {
        js_sys::Function::new_no_args(body)
            .call0(&JsValue::NULL)
            .unwrap()
    };
    let sdk = sdk(PROXY, "{}");
    let boxed = make("return new String('13700000044')");
    check_frame(
        &frame(sdk.personal_sign("2603417854124281870".into(), boxed, None)).await,
        true,
    );
    let params = make(
        "return { contact: { toJSON: function () { return '13700000044'; } }, mode: 'BANK', username: undefined, extra: function () {} }",
    );
    frame(sdk.personal_auth(params, None)).await;
    // A lone surrogate reaches the wasm as one U+FFFD: the flat text's UTF-16 lengths still hold.
    frame(sdk.personal_auth(
        make("return { contact: '13700000044', mode: 'BANK', username: 'a\\ud800张😀' }"),
        None,
    ))
    .await;
    for body in [
        "var p = { contact: '13700000044' }; p.self = p; return p",
        "return { contact: '13700000044', manual: BigInt(1) }",
    ] {
        let (_, kind, _, message) = rejection(sdk.personal_auth(make(body), None)).await;
        assert_eq!(kind, "invalidArgument", "{message}");
        assert!(message.contains("plain data"), "{message}");
    }
}

#[wasm_bindgen_test]
async fn unreachable_proxy_is_a_network_error() {
    let sdk = sdk("http://127.0.0.1:9/qys/proxy", "{}");
    let (_, kind, code, message) =
        rejection(sdk.personal_sign("1".into(), "13700000044".into(), None)).await;
    assert_eq!(
        (kind.as_str(), code),
        ("network", JsValue::NULL),
        "{message}"
    );
}

#[wasm_bindgen_test]
async fn a_hanging_proxy_times_out() {
    let sdk = sdk(&format!("{FAULTS}/hang"), r#"{"timeoutMs":300}"#);
    let (_, kind, _, message) =
        rejection(sdk.personal_sign("1".into(), "13700000044".into(), None)).await;
    assert_eq!(kind, "timeout", "{message}");
    assert!(message.contains("300 ms"));
}

#[wasm_bindgen_test]
async fn http_500_and_garbage_bodies() {
    let sdk500 = sdk(&format!("{FAULTS}/status500"), "{}");
    let (_, kind, code, _) =
        rejection(sdk500.personal_sign("1".into(), "13700000044".into(), None)).await;
    assert_eq!((kind.as_str(), code.as_f64()), ("http", Some(500.0)));
    let garbage = sdk(&format!("{FAULTS}/garbage"), "{}");
    let (_, kind, code, message) =
        rejection(garbage.personal_sign("1".into(), "13700000044".into(), None)).await;
    assert_eq!(
        (kind.as_str(), code),
        ("protocol", JsValue::NULL),
        "{message}"
    );
}

#[wasm_bindgen_test]
async fn platform_codes_1110_and_1605() {
    let sdk = sdk(PROXY, "{}");
    let (_, kind, code, message) =
        rejection(sdk.personal_sign("2603417854124281870".into(), "13911112222".into(), None))
            .await;
    assert_eq!(
        (kind.as_str(), code.as_f64()),
        ("platform", Some(1110.0)),
        "{message}"
    );
    let authed = js(
        r#"{"companyName":"上海示例科技有限公司","companyAuthBean":{"applicant":{"contact":"13800000055"}}}"#,
    );
    let (_, kind, code, message) = rejection(sdk.enterprise_auth(authed, None)).await;
    assert_eq!(
        (kind.as_str(), code.as_f64(), message.as_str()),
        ("platform", Some(1605.0), "COMPANY ALREADY AUTHED")
    );
}

#[wasm_bindgen_test]
async fn a_destroyed_instance_refuses_new_calls() {
    let sdk = sdk(PROXY, "{}");
    sdk.destroy();
    let (_, kind, _, message) =
        rejection(sdk.personal_sign("2603417854124281870".into(), "13700000044".into(), None))
            .await;
    assert_eq!(kind, "invalidArgument");
    assert!(message.contains("destroyed"));
}

#[wasm_bindgen_test]
async fn a_bigint_contract_id_is_read_exactly() {
    let sdk = sdk(PROXY, "{}");
    let id = JsValue::bigint_from_str("2603417854124281870");
    let f = frame(sdk.personal_sign(id, "13700000044".into(), None)).await;
    check_frame(&f, true);
}

#[wasm_bindgen_test]
async fn non_finite_numbers_are_refused_not_turned_into_null() {
    let options = js_sys::Object::new();
    Reflect::set(&options, &"timeoutMs".into(), &JsValue::from_f64(f64::NAN)).unwrap();
    let err = QysSdk::new(PROXY.into(), Some(options.into()))
        .err()
        .expect("NaN timeout throws");
    assert_eq!(Reflect::get(&err, &"param".into()).unwrap(), "timeoutMs");
    let sdk = sdk(PROXY, "{}");
    let (_, kind, _, message) =
        rejection(sdk.personal_sign(JsValue::from_f64(f64::INFINITY), "13700000044".into(), None))
            .await;
    assert_eq!(kind, "invalidArgument", "{message}");
}

#[wasm_bindgen_test]
async fn the_proxy_url_keeps_its_own_query_and_gains_the_options_query() {
    let sdk = sdk(
        &format!("{FAULTS}/status500?keep=a%20b~&flag"),
        r#"{"query":{"t":"1 2","n":3}}"#,
    );
    let (_, kind, _, message) =
        rejection(sdk.personal_sign("1".into(), "13700000044".into(), None)).await;
    assert_eq!(kind, "http", "{message}");
    assert_eq!(
        faults_seen().await.1,
        "/status500?keep=a%20b~&flag&t=1+2&n=3"
    );
    assert!(
        !message.contains("t=1"),
        "messages leave the query out: {message}"
    );
}

#[wasm_bindgen_test]
async fn a_non_canonical_return_origin_still_matches_the_browser_origin() {
    // `/grant` answers returnOrigin "HTTP://127.0.0.1:18190" (uppercase scheme) and a page that
    // posts authFail with the call's state; `event.origin` is "http://127.0.0.1:18190".
    let sdk = sdk(&format!("{FAULTS}/grant"), "{}");
    let (fired, resolve) = {
        let mut resolve = None;
        let promise = Promise::new(&mut |r, _| resolve = Some(r));
        (promise, resolve.unwrap())
    };
    let callbacks = js_sys::Object::new();
    Reflect::set(&callbacks, &"authFailCb".into(), &resolve).unwrap();
    let f =
        frame(sdk.personal_sign("1".into(), "13700000044".into(), Some(callbacks.into()))).await;
    web_sys::window()
        .unwrap()
        .document()
        .unwrap()
        .body()
        .unwrap()
        .append_child(&f)
        .unwrap();
    let timeout = Promise::new(&mut |_, reject| {
        web_sys::window()
            .unwrap()
            .set_timeout_with_callback_and_timeout_and_arguments_0(&reject, 30_000)
            .unwrap();
    });
    JsFuture::from(Promise::race(&js_sys::Array::of2(&fired, &timeout)))
        .await
        .expect("authFailCb fired");
    f.remove();
}

#[wasm_bindgen_test]
async fn bad_presentations_and_missing_wechat_reject_and_send_nothing() {
    let sdk = sdk(&format!("{FAULTS}/status500"), "{}");
    let before = faults_received().await;
    let cases = [
        sdk.personal_sign(
            "1".into(),
            "13700000044".into(),
            Some(js(r#"{"presentation":"popup"}"#)),
        ),
        sdk.personal_auth(
            js(r#"{"contact":"13700000044"}"#),
            Some(js(r#"{"presentation":5}"#)),
        ),
    ];
    for promise in cases {
        let (_, kind, _, message) = rejection(promise).await;
        assert_eq!(kind, "invalidArgument", "{message}");
        assert!(
            message
                .starts_with("presentation must be 'auto', 'iframe', 'redirect' or 'miniProgram'"),
            "{message}"
        );
    }
    // No WeChat JS-SDK on this page: the mini-program presentation says what to load.
    let call = sdk.enterprise_sign(
        "1".into(),
        "13700000044".into(),
        Some(js(r#"{"presentation":"miniProgram"}"#)),
    );
    let (name, kind, code, message) = rejection(call).await;
    assert_eq!(
        (name.as_str(), kind.as_str(), code),
        ("QysError", "network", JsValue::NULL)
    );
    assert!(message.contains("load WeChat's JS-SDK"), "{message}");
    assert_eq!(
        faults_received().await,
        before,
        "nothing reached the network"
    );
    for options in [
        r#"{"presentation":"Redirect"}"#,
        r#"{"miniProgramPage":"pages/qys/qys"}"#,
    ] {
        let bad = QysSdk::new(PROXY.into(), Some(js(options)))
            .err()
            .expect("constructor throws");
        assert_eq!(
            Reflect::get(&bad, &"kind".into()).unwrap(),
            "invalidArgument",
            "{options}"
        );
    }
}

#[wasm_bindgen_test]
async fn resume_without_a_returning_flow_resolves_null_and_sends_nothing() {
    let sdk = sdk(&format!("{FAULTS}/status500"), "{}");
    let before = faults_received().await;
    let resumed = JsFuture::from(sdk.resume(None)).await.expect("resolves");
    assert!(resumed.is_null());
    assert_eq!(faults_received().await, before);
    sdk.destroy();
    let (_, kind, _, _) = rejection(sdk.resume(None)).await;
    assert_eq!(kind, "invalidArgument");
}
