//! Redirect and mini-program presentations, and the `outcome` action, over real HTTP: the proxy,
//! the sandbox's APIs, H5 and plugin pages, a calling page's server, and recording upstreams.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::Request;
use axum::routing::any;
use axum::{Json, Router};
use common::*;
use qys_proxy::proxy::UpstreamMode;
use qys_proxy::spawn_server;
use qys_sdk_wasm::params::Action;
use qys_sdk_wasm::presentation::plugin_page;
use serde_json::{json, Value};

const CONTRACT: &str = "2603417854124281870";
const SIGNER: &str = "13700000044";
const OPERATOR: &str = "13800000055";

/// The integrator's page server: answers every GET with 200, so a browser that comes back lands.
async fn shop() -> String {
    let (listener, url) = bind().await;
    spawn_server(listener, Router::new().fallback(any(|| async { "shop" })));
    url
}

/// A platform that records `(path, body)` of every call and answers success with a ticket,
/// a page URL and an empty result for the confirmation APIs (nothing confirmed).
async fn recording_platform() -> (String, Arc<Mutex<Vec<(String, Value)>>>) {
    let calls = Arc::new(Mutex::new(Vec::new()));
    let log = calls.clone();
    let router = Router::new().fallback(any(move |request: Request| {
        let log = log.clone();
        async move {
            let path = request.uri().path().to_owned();
            let bytes = axum::body::to_bytes(request.into_body(), 1 << 16).await.unwrap();
            log.lock().unwrap().push((path, serde_json::from_slice(&bytes).unwrap_or(Value::Null)));
            let url = "http://127.0.0.1:1/page";
            Json(json!({"code": 0, "message": "SUCCESS", "result": {"ticket": "t-1", "pageUrl": url, "authUrl": url}}))
        }
    }));
    let (listener, url) = bind().await;
    spawn_server(listener, router);
    (url, calls)
}

fn flow_envelope(action: &str, tag: &str, params: Value, presentation: &str, return_url: Option<&str>) -> Value {
    let mut envelope = json!({"v": 1, "action": action, "state": state(tag), "params": params, "presentation": presentation});
    if let Some(url) = return_url {
        envelope["returnUrl"] = json!(url);
    }
    envelope
}

fn query_value(url: &str, name: &str) -> String {
    url::Url::parse(url).unwrap().query_pairs().find(|(k, _)| k == name).unwrap().1.into_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn redirect_comes_back_to_the_calling_page_and_outcome_confirms() {
    let shop = shop().await;
    for mode in [UpstreamMode::PageUrl, UpstreamMode::Ticket { template: String::new() }] {
        let stack = Stack::with(Options { mode, allowed_origins: vec![shop.clone()], ..Options::default() }).await;
        let return_url = format!("{shop}/pay?order=7");
        let envelope = flow_envelope("personalSign", "rd", json!({"contractId": CONTRACT, "contact": SIGNER}), "redirect", Some(&return_url));
        let (status, answer) = stack.send(&shop, envelope).await;
        assert_eq!((status, answer["code"].clone()), (200, json!(0)), "{answer}");
        let result = &answer["result"];
        assert_eq!(result["returnOrigin"], stack.proxy.as_str());
        let flow = result["flow"].as_str().unwrap();
        assert!(!flow.contains(SIGNER), "the flow token is sealed");

        let (_, before) = stack.outcome(&shop, &state("rd"), flow).await;
        assert_eq!(before, json!({"code": 0, "message": "SUCCESS", "result": {"event": "pending"}}));

        let page_url = result["pageUrl"].as_str().unwrap();
        // Ticket mode puts the return link on the page URL: its token hides the calling page's URL.
        let query = |url: &str, key: &str| {
            url::Url::parse(url).unwrap().query_pairs().find(|(k, _)| k == key).map(|(_, v)| v.into_owned())
        };
        if let Some(link) = query(page_url, "callbackPage") {
            use base64::Engine;
            let token = query(&link, "t").unwrap();
            let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(&token).expect("one base64url token, sealed");
            assert!(!String::from_utf8_lossy(&bytes).contains("order=7"), "the return URL is not readable in the link");
        }
        let back = click(&stack.client, &open(&stack.client, page_url).await, "sign", &[]).await;
        assert_eq!(back.url, format!("{return_url}&qys_state={}", state("rd")), "the browser is back on the calling page");
        assert_eq!((back.status, back.html.as_str()), (200, "shop"));

        let (status, after) = stack.outcome(&shop, &state("rd"), flow).await;
        assert_eq!(status, 200);
        assert_eq!(after["result"], json!({"event": "signSuccess", "data": {"contractId": CONTRACT}}));
    }

    // A returnUrl without a query gets `?`; an exit is pending, where the return page says authFail.
    let stack = Stack::with(Options { allowed_origins: vec![shop.clone()], ..Options::default() }).await;
    let return_url = format!("{shop}/auth");
    let envelope = flow_envelope("personalAuth", "ra", json!({"mode": "FACE", "contact": "13900000051"}), "redirect", Some(&return_url));
    let (_, answer) = stack.send(&shop, envelope).await;
    let page_url = answer["result"]["pageUrl"].as_str().unwrap();
    let back = click(&stack.client, &open(&stack.client, page_url).await, "exit", &[]).await;
    assert_eq!(back.url, format!("{return_url}?qys_state={}", state("ra")));
    let (_, outcome) = stack.outcome(&shop, &state("ra"), answer["result"]["flow"].as_str().unwrap()).await;
    assert_eq!(outcome["result"], json!({"event": "pending"}));
}

#[tokio::test(flavor = "multi_thread")]
async fn return_page_sends_redirects_back_without_a_platform_call_while_the_origin_is_allowed() {
    let (platform, calls) = recording_platform().await;
    let opts = || Options {
        mode: UpstreamMode::Ticket { template: "http://127.0.0.1:1/h5?ticket={ticket}&callbackPage={callbackPage}".into() },
        platform_url: Some(platform.clone()),
        ..Options::default()
    };
    let stack = Stack::with(opts()).await;
    let return_url = format!("{PAGE_ORIGIN}/pay/%E6%94%AF?x=1");
    let envelope = flow_envelope("enterpriseSign", "rp", json!({"contractId": CONTRACT, "contact": OPERATOR}), "redirect", Some(&return_url));
    let (_, answer) = stack.send(PAGE_ORIGIN, envelope).await;
    let callback_page = query_value(answer["result"]["pageUrl"].as_str().unwrap(), "callbackPage");
    assert_eq!(calls.lock().unwrap().len(), 1, "the ticket exchange");

    let response = stack.client.get(&callback_page).send().await.unwrap();
    assert_eq!(response.status(), 303);
    let headers = response.headers();
    assert_eq!(headers["location"], format!("{return_url}&qys_state={}", state("rp")).as_str());
    assert_eq!(headers["cache-control"], "no-store");
    assert_eq!(headers["referrer-policy"], "no-referrer");
    assert_eq!(calls.lock().unwrap().len(), 1, "no confirmation call: the page asks outcome");

    // Another instance with the same key whose allow-list no longer has the page's origin.
    let stricter = Stack::with(Options { allowed_origins: Vec::new(), ..opts() }).await;
    let token = callback_page.split_once("?t=").unwrap().1;
    let response = stricter.client.get(format!("{}/qys/return?t={token}", stricter.proxy)).send().await.unwrap();
    assert_eq!(response.status(), 400);
    assert!(response.headers().get("location").is_none());
    assert!(response.text().await.unwrap().contains("链接无效"));
    assert_eq!(calls.lock().unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn return_urls_off_the_calling_page_are_refused_before_the_platform() {
    let (platform, calls) = recording_platform().await;
    let stack = Stack::with(Options { platform_url: Some(platform), ..Options::default() }).await;
    let sign = json!({"contractId": CONTRACT, "contact": SIGNER});
    let other_allowed = format!("{}/pay", stack.proxy);
    for (origin, return_url, needle) in [
        (Some(PAGE_ORIGIN), Some(other_allowed.as_str()), "calling page's origin http://127.0.0.1:9"),
        (None, Some("https://evil.example/pay"), "https://evil.example is not allowed"),
        (Some(PAGE_ORIGIN), Some("http://127.0.0.1:9@evil.example/pay"), "user-info"),
        (Some(PAGE_ORIGIN), Some("http://user@127.0.0.1:9/pay"), "user-info"),
        (Some(PAGE_ORIGIN), Some("http://127.0.0.1:9/pay#done"), "returnUrl must be"),
        (Some(PAGE_ORIGIN), Some("javascript:alert(1)"), "returnUrl must be"),
        (Some(PAGE_ORIGIN), None, "returnUrl must be"),
    ] {
        let envelope = flow_envelope("personalSign", "bad", sign.clone(), "redirect", return_url);
        let mut request = stack.client.post(format!("{}/qys/proxy", stack.proxy));
        if let Some(origin) = origin {
            request = request.header("origin", origin);
        }
        let response = request.form(&[("requestData", envelope.to_string())]).send().await.unwrap();
        let status = response.status().as_u16();
        let body: Value = response.json().await.unwrap();
        assert_eq!((status, body["code"].clone()), (400, json!(40003)), "{return_url:?}: {body}");
        let message = body["message"].as_str().unwrap();
        assert!(message.starts_with("returnUrl") && message.contains(needle), "{return_url:?}: {message}");
    }
    let (status, body) = stack.send(PAGE_ORIGIN, flow_envelope("personalSign", "pop", sign.clone(), "popup", None)).await;
    assert_eq!((status, body["code"].clone()), (400, json!(40000)), "{body}");
    assert_eq!(calls.lock().unwrap().len(), 0, "nothing reached the platform");

    // The proxy's own origin is allowed too, for a page served by the proxy.
    let own = stack.proxy.clone();
    let (_, body) = stack.send(&own, flow_envelope("personalSign", "own", sign.clone(), "redirect", Some(&other_allowed))).await;
    assert_eq!(body["code"], 0, "{body}");
    // An iframe or mini-program request's returnUrl is ignored, whatever it is.
    let (_, body) = stack.send(PAGE_ORIGIN, flow_envelope("personalSign", "ifr", sign, "iframe", Some("https://evil.example/"))).await;
    assert_eq!(body["code"], 0, "{body}");
    assert_eq!(calls.lock().unwrap().len(), 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn outcome_refuses_foreign_altered_and_mismatched_tokens_without_a_platform_call() {
    let (platform, calls) = recording_platform().await;
    let stack = Stack::with(Options { platform_url: Some(platform), ..Options::default() }).await;
    let (_, answer) = stack.call("personalSign", &state("oc"), json!({"contractId": CONTRACT, "contact": SIGNER})).await;
    let flow = answer["result"]["flow"].as_str().unwrap().to_owned();
    assert_eq!(answer["result"]["pageUrl"], "http://127.0.0.1:1/page", "iframe answers carry the flow token too");
    assert_eq!(calls.lock().unwrap().len(), 1);

    let mut altered = flow.clone().into_bytes();
    let last = altered.len() - 5;
    altered[last] = if altered[last] == b'A' { b'B' } else { b'A' };
    let altered = String::from_utf8(altered).unwrap();
    let own = stack.proxy.clone();
    for (origin, tag, token, why) in [
        (PAGE_ORIGIN, "another-flow", flow.as_str(), "another flow's state"),
        (PAGE_ORIGIN, "oc", altered.as_str(), "altered"),
        (PAGE_ORIGIN, "oc", "bm90LWEtdG9rZW4", "not a sealed token"),
        (PAGE_ORIGIN, "oc", "eyJhIjoicGVyc29uYWxTaWduIn0.tp__c29y", "a return token"),
        (own.as_str(), "oc", flow.as_str(), "asked by another page than the one that started the flow"),
    ] {
        let (status, body) = stack.outcome(origin, &state(tag), token).await;
        assert_eq!(
            (status, body),
            (400, json!({"code": 40004, "message": "the flow token is invalid or has expired"})),
            "{why}"
        );
    }
    let (status, body) = stack.outcome(PAGE_ORIGIN, &state("oc"), "").await;
    assert_eq!((status, body["code"].clone()), (400, json!(40003)), "{body}");
    let refused = send_envelope(
        &stack.client,
        &stack.proxy,
        "http://127.0.0.2:9",
        &json!({"v": 1, "action": "outcome", "state": state("oc"), "params": {"flow": flow}}),
    )
    .await;
    assert_eq!(refused.status(), 403, "outcome has the origin check of every SDK request");
    assert_eq!(calls.lock().unwrap().len(), 1, "no platform call for a refused token");

    let response = send_envelope(
        &stack.client,
        &stack.proxy,
        PAGE_ORIGIN,
        &json!({"v": 1, "action": "outcome", "state": state("oc"), "params": {"flow": flow}}),
    )
    .await;
    assert_eq!(response.headers()["access-control-allow-origin"], PAGE_ORIGIN);
    assert_eq!(response.json::<Value>().await.unwrap()["result"], json!({"event": "pending"}));
    let calls = calls.lock().unwrap();
    assert_eq!(calls.len(), 2);
    assert_eq!(calls[1].0, "/v2/contract/detail", "confirmed like the return page");
}

#[tokio::test(flavor = "multi_thread")]
async fn outcome_refuses_an_expired_flow_token() {
    // Expiry is in whole seconds: a 2 s token is valid for more than 2 s (time for the first
    // outcome on a loaded machine), and expired 3 s after it was issued.
    let stack = Stack::with(Options { token_ttl: Duration::from_secs(2), ..Options::default() }).await;
    let (_, answer) = stack.call("personalAuth", &state("exp"), json!({"contact": "13900000052"})).await;
    let flow = answer["result"]["flow"].as_str().unwrap().to_owned();
    assert_eq!(stack.outcome(PAGE_ORIGIN, &state("exp"), &flow).await.1["code"], 0, "valid at first");
    tokio::time::sleep(Duration::from_millis(3_100)).await;
    let (status, body) = stack.outcome(PAGE_ORIGIN, &state("exp"), &flow).await;
    assert_eq!((status, body["code"].clone()), (400, json!(40004)), "{body}");
}

#[tokio::test(flavor = "multi_thread")]
async fn outcome_maps_platform_failures_like_flow_requests() {
    let (platform, _) = recording_platform().await;
    let issuing = Stack::with(Options { platform_url: Some(platform), ..Options::default() }).await;
    let (_, answer) = issuing.call("enterpriseAuth", &state("pf"), json!({"companyName": "甲", "companyAuthBean": {"applicant": {"contact": OPERATOR}}})).await;
    let flow = answer["result"]["flow"].as_str().unwrap().to_owned();
    // Instances sharing the key: one whose platform is down, one whose platform refuses.
    let (listener, closed) = bind().await;
    drop(listener);
    let down = Stack::with(Options { platform_url: Some(closed), ..Options::default() }).await;
    let (status, body) = down.outcome(PAGE_ORIGIN, &state("pf"), &flow).await;
    assert_eq!((status, body["code"].clone()), (502, json!(50200)), "{body}");
    let refusing = {
        let (listener, url) = bind().await;
        let router = Router::new().fallback(any(|| async { Json(json!({"code": 442, "message": "INVALID TOKEN"})) }));
        spawn_server(listener, router);
        Stack::with(Options { platform_url: Some(url), ..Options::default() }).await
    };
    let (status, body) = refusing.outcome(PAGE_ORIGIN, &state("pf"), &flow).await;
    assert_eq!((status, body), (200, json!({"code": 442, "message": "INVALID TOKEN"})));
}

#[tokio::test(flavor = "multi_thread")]
async fn outcome_reports_what_the_return_page_reports_for_every_action() {
    let stack = Stack::start().await;
    for (action, params, op) in [
        ("personalSign", json!({"contractId": CONTRACT, "contact": SIGNER}), "sign"),
        ("enterpriseSign", json!({"contractId": CONTRACT, "contact": OPERATOR}), "sign"),
        ("personalAuth", json!({"mode": "BANK", "contact": "13900000053", "username": "戊", "idCardNo": "5",
                                "bankNo": "6222", "bankMobile": "13900000054"}), "submit"),
        ("enterpriseAuth", json!({"companyName": "台州结果公司", "companyAuthBean": {"applicant": {"contact": "13900000055"},
                                  "registerNo": "7", "legalPerson": "己"}}), "submit"),
    ] {
        let (_, answer) = stack.call(action, &state(action), params).await;
        let flow = answer["result"]["flow"].as_str().unwrap();
        assert_eq!(stack.outcome(PAGE_ORIGIN, &state(action), flow).await.1["result"], json!({"event": "pending"}), "{action}");
        let done = click(&stack.client, &open(&stack.client, answer["result"]["pageUrl"].as_str().unwrap()).await, op, &[]).await;
        let (message, _) = posted_message(&done).expect("return page message");
        let (_, outcome) = stack.outcome(PAGE_ORIGIN, &state(action), flow).await;
        assert_eq!(outcome["result"], json!({"event": message["event"], "data": message["data"]}), "{action}");
        assert_ne!(outcome["result"]["event"], "authFail");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn mini_program_flows_exchange_tickets_the_plugin_opens() {
    // Page-URL mode for browser flows: mini-program flows still exchange tickets.
    let stack = Stack::start().await;
    for (action, params, op, event) in [
        (Action::PersonalSign, json!({"contractId": CONTRACT, "contact": SIGNER}), "sign", "signSuccess"),
        (Action::EnterpriseSign, json!({"contractId": CONTRACT, "contact": OPERATOR}), "sign", "signSuccess"),
        (Action::PersonalAuth, json!({"mode": "FACE", "contact": "13900000056", "username": "庚", "idCardNo": "8"}), "submit", "authSuccess"),
        (Action::EnterpriseAuth, json!({"companyName": "丽水插件公司", "companyAuthBean": {"applicant": {"contact": "13900000057"},
                                        "registerNo": "9", "legalPerson": "辛"}}), "submit", "authSuccess"),
    ] {
        let name = action.name();
        let (status, answer) = stack.send(PAGE_ORIGIN, flow_envelope(name, name, params, "miniProgram", None)).await;
        assert_eq!((status, answer["code"].clone()), (200, json!(0)), "{answer}");
        let result = answer["result"].as_object().unwrap();
        let mut keys: Vec<_> = result.keys().collect();
        keys.sort();
        assert_eq!(keys, ["env", "flow", "ticket"], "{name}");
        assert_eq!(result["env"], "sandbox");
        let (ticket, flow) = (result["ticket"].as_str().unwrap(), result["flow"].as_str().unwrap());
        let plugin = format!("{}/plugin/{}?ticket={ticket}&env=sandbox&hasCb=true", stack.sandbox, plugin_page(action));
        let page = open(&stack.client, &plugin).await;
        assert_eq!(page.status, 200, "{name}: {}", page.html);
        assert_eq!(stack.outcome(PAGE_ORIGIN, &state(name), flow).await.1["result"]["event"], "pending");
        let done = click(&stack.client, &page, op, &[]).await;
        assert!(done.has("qys-sandbox-plugin-done"), "{name}: {}", done.html);
        let (_, outcome) = stack.outcome(PAGE_ORIGIN, &state(name), flow).await;
        assert_eq!(outcome["result"]["event"], event, "{name}: {outcome}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn mini_program_calls_the_ticket_apis_with_callback_urls_and_no_callback_page() {
    let (platform, calls) = recording_platform().await;
    let stack = Stack::with(Options { platform_url: Some(platform), miniprogram_env: "cn".into(), ..Options::default() }).await;
    for (action, params, path) in [
        ("personalSign", json!({"contractId": CONTRACT, "contact": SIGNER}), "/v2/contract/miniappexchange"),
        ("enterpriseSign", json!({"contractId": CONTRACT, "contact": OPERATOR}), "/v2/contract/miniappexchange"),
        ("personalAuth", json!({"contact": "13900000058"}), "/v2/personalauth/miniappexchange"),
        ("enterpriseAuth", json!({"companyName": "甲", "companyAuthBean": {"applicant": {"contact": OPERATOR}}}), "/companyauth/miniappexchange"),
    ] {
        let (_, answer) = stack.send(PAGE_ORIGIN, flow_envelope(action, action, params, "miniProgram", None)).await;
        assert_eq!((answer["result"]["ticket"].as_str(), answer["result"]["env"].as_str()), (Some("t-1"), Some("cn")), "{answer}");
        let (called, body) = calls.lock().unwrap().last().cloned().unwrap();
        assert_eq!(called, path);
        assert!(body.get("callbackPage").is_none(), "{action}: {body}");
        let expected_callback = match action {
            "personalAuth" => Some(format!("{}/qys/callback/personal-auth?flow={}", stack.proxy, state(action))),
            "enterpriseAuth" => Some(format!("{}/qys/callback/company-auth?flow={}", stack.proxy, state(action))),
            _ => None,
        };
        // The proxy's own receiver, with the flow's sealed token after the state.
        let sent = body["callbackUrl"].as_str().map(|u| u.split("&t=").next().unwrap().to_owned());
        assert_eq!(sent, expected_callback, "{action}");
    }
    assert_eq!(calls.lock().unwrap().len(), 4, "one platform call each");
}
