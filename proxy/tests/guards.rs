//! What the proxy and the sandbox refuse: signatures, actions, origins, sizes, slow upstreams,
//! and how server callbacks are stored and retried.

mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::routing::{any, post};
use axum::{Json, Router};
use common::*;
use md5::{Digest, Md5};
use qys_proxy::proxy::UpstreamMode;
use qys_proxy::spawn_server;
use serde_json::{json, Value};

/// A vector computed outside this code base (coreutils `md5sum` and Python's hashlib agree).
#[test]
fn signature_vector_matches_an_independent_md5() {
    let got = qys_proxy::sign::signature(
        "demo-token",
        "demo-secret",
        "1700000000000",
        "5a1f9a2e-0000-4000-8000-000000000001",
    );
    assert_eq!(got, "6bceac383165ff929b3724caca36feed");
}

fn md5_hex(text: &str) -> String {
    Md5::digest(text.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}

/// Sends a detail request to the sandbox with hand-made headers.
async fn detail(stack: &Stack, headers: &[(&str, String)]) -> Value {
    let mut request = stack.client.get(format!("{}/v2/contract/detail?contractId=2603417854124281870", stack.sandbox));
    for (k, v) in headers {
        request = request.header(*k, v);
    }
    request.send().await.unwrap().json().await.unwrap()
}

fn headers(token: &str, secret: &str, ts: u64, nonce: &str) -> Vec<(&'static str, String)> {
    vec![
        ("x-qys-open-accesstoken", token.to_owned()),
        ("x-qys-open-timestamp", ts.to_string()),
        ("x-qys-open-nonce", nonce.to_owned()),
        ("x-qys-open-signature", md5_hex(&format!("{token}{secret}{ts}{nonce}"))),
    ]
}

#[tokio::test(flavor = "multi_thread")]
async fn sandbox_verifies_signatures_like_the_platform() {
    let stack = Stack::start().await;
    let now = qys_proxy::unix_millis();
    let good = headers(TOKEN, SECRET, now, "nonce-1");
    assert_eq!(detail(&stack, &good).await["code"], 0, "a correct signature passes");
    assert_eq!(detail(&stack, &good).await["code"], 444, "the same nonce again is a replay");
    let wrong = headers(TOKEN, "not-the-secret", now, "nonce-2");
    assert_eq!(detail(&stack, &wrong).await["code"], 441);
    let skewed = headers(TOKEN, SECRET, now - 16 * 60 * 1000, "nonce-3");
    assert_eq!(detail(&stack, &skewed).await["code"], 443);
    let future = headers(TOKEN, SECRET, now + 16 * 60 * 1000, "nonce-4");
    assert_eq!(detail(&stack, &future).await["code"], 443);
    let within = headers(TOKEN, SECRET, now - 14 * 60 * 1000, "nonce-5");
    assert_eq!(detail(&stack, &within).await["code"], 0, "14 minutes of skew is tolerated");
    let mut missing = headers(TOKEN, SECRET, now, "nonce-6");
    missing.retain(|(k, _)| *k != "x-qys-open-signature");
    assert_eq!(detail(&stack, &missing).await["code"], 441);
    assert_eq!(detail(&stack, &headers("other-token", SECRET, now, "nonce-7")).await["code"], 442);
    assert_eq!(detail(&stack, &[]).await["code"], 442);
}

#[tokio::test(flavor = "multi_thread")]
async fn sandbox_checks_required_fields_and_enums() {
    let stack = Stack::start().await;
    let call = |path: &'static str, body: Value| {
        let stack = &stack;
        async move {
            let mut request = stack.client.post(format!("{}{path}", stack.sandbox)).json(&body);
            let nonce = uuid::Uuid::new_v4().to_string();
            for (k, v) in headers(TOKEN, SECRET, qys_proxy::unix_millis(), &nonce) {
                request = request.header(k, v);
            }
            request.send().await.unwrap().json::<Value>().await.unwrap()
        }
    };
    let user = json!({"contact": "13900000001", "contactType": "MOBILE"});
    for (path, body, why) in [
        ("/v2/contract/miniappexchange", json!({"user": user}), "contractId or bizId"),
        ("/v2/contract/miniappexchange", json!({"contractId": "2603417854124281870"}), "user"),
        ("/v2/contract/miniappexchange", json!({"contractId": "2603417854124281870", "user": {"contact": "13700000044", "contactType": "FAX"}}), "contactType"),
        ("/v2/personalauth/miniappexchange", json!({"user": user, "mode": "SMS"}), "mode"),
        ("/v2/personalauth/miniappexchange", json!({"user": user, "paperType": "VISA"}), "paperType"),
        ("/v2/personalauth/miniappexchange", json!({"user": user, "otherModes": ["PHONE"]}), "otherModes"),
        ("/v2/personalauth/miniappexchange", json!({"user": user, "modifyFields": ["MOBILE"]}), "modifyFields"),
        ("/v2/personalauth/miniappexchange", json!({"user": {"contact": "13900000001"}}), "contactType required"),
        ("/companyauth/miniappexchange", json!({"applicant": user}), "companyName"),
        ("/companyauth/miniappexchange", json!({"companyName": "X", "applicant": user, "closeButton": "no"}), "closeButton"),
        ("/companyauth/miniappexchange", json!({"companyName": "X", "applicant": user, "modifyFields": "corpName,address"}), "modifyFields"),
        ("/v2/contract/pageurl", json!({"contractId": "2603417854124281870", "user": user, "pageType": "PDF"}), "pageType"),
    ] {
        let answer = call(path, body).await;
        assert_eq!(answer["code"], 1005, "{why}: {answer}");
    }
    let ok = call("/v2/personalauth/miniappexchange", json!({"user": user, "mode": "IVS", "otherModes": ["MANUAL"], "paperType": "PASSPORT"})).await;
    assert_eq!(ok["code"], 0, "{ok}");
    assert!(ok["result"]["ticket"].is_string());
}

/// A fake upstream that records every request body and answers success after `delay`.
async fn recording_upstream(delay: Duration) -> (String, Arc<Mutex<Vec<String>>>) {
    let bodies = Arc::new(Mutex::new(Vec::new()));
    let log = bodies.clone();
    let router = Router::new().fallback(any(move |body: String| {
        let log = log.clone();
        async move {
            log.lock().unwrap().push(body);
            tokio::time::sleep(delay).await;
            let url = "http://127.0.0.1:1/page";
            Json(json!({"code": 0, "message": "SUCCESS", "result": {"pageUrl": url, "authUrl": url}}))
        }
    }));
    let (listener, url) = bind().await;
    spawn_server(listener, router);
    (url, bodies)
}

#[tokio::test(flavor = "multi_thread")]
async fn only_the_four_actions_reach_the_platform() {
    let (upstream, hits) = recording_upstream(Duration::ZERO).await;
    let stack = Stack::with(Options {
        platform_url: Some(upstream),
        callback_allowlist: vec!["http://127.0.0.1:1/callbacks".into()],
        ..Options::default()
    })
    .await;
    for action in ["uniformapi", "contractDelete", "PersonalSign", ""] {
        let (status, body) = stack.call(action, &state("u"), json!({})).await;
        assert_eq!((status, body["code"].clone()), (400, json!(40002)), "{action}: {body}");
    }
    // Bad inputs of allowed actions are refused before any upstream call too.
    for (params, needle) in [
        (json!({"contractId": 2603417854124281870u64, "contact": "13700000044"}), "already rounded"),
        (json!({"contractId": "26034178541242818701", "contact": "13700000044"}), "1–19 decimal digits"),
        (json!({"contractId": "2603417854124281870", "contact": "137******44"}), "mobile number or an email"),
        (json!({"contractId": "2603417854124281870", "contact": "a@b.cn", "contactType": "MOBILE"}), "looks like EMAIL"),
        (json!({"contact": "13700000044"}), "contractId is required"),
    ] {
        let (status, body) = stack.call("personalSign", &state("p"), params).await;
        assert_eq!((status, body["code"].clone()), (400, json!(40003)), "{body}");
        assert!(body["message"].as_str().unwrap().contains(needle), "{body}");
    }
    let (_, body) = stack.call("personalAuth", &state("m"), json!({"contact": "13700000044", "mode": "ALIPAY"})).await;
    assert_eq!(body["code"], 40003);
    let (_, body) = stack.call("personalAuth", &state("m"), json!({"contact": "13700000044", "callbackUrl": "https://evil.example/cb"})).await;
    assert_eq!(body["code"], 40003, "callbackUrl outside the allowlist: {body}");
    for url in ["https://evil.example/cb", "http://127.0.0.1:1/cb", "http://127.0.0.1:1/callbacks-evil/x",
                "http://127.0.0.1:1@evil.example/callbacks/x", "http://127.0.0.1:1.evil.example/callbacks/x"] {
        let (_, body) = stack.call("personalAuth", &state("m"), json!({"contact": "13700000044", "callbackUrl": url})).await;
        assert_eq!(body["code"], 40003, "{url} is outside http://127.0.0.1:1/callbacks: {body}");
    }
    let (_, body) = stack.call("personalSign", "short", json!({})).await;
    assert_eq!(body["code"], 40000);
    assert_eq!(hits.lock().unwrap().len(), 0, "nothing reached the platform");

    let (_, body) = stack.call("personalSign", &state("ok"), json!({"contractId": "2603417854124281870", "contact": "13700000044"})).await;
    assert_eq!(body["code"], 0);
    assert_eq!(hits.lock().unwrap().len(), 1, "a valid call makes exactly one platform call");
    let (_, body) = stack
        .call("personalAuth", &state("cb"), json!({"contact": "13700000044", "callbackUrl": "http://127.0.0.1:1/callbacks/qys?x=1"}))
        .await;
    assert_eq!(body["code"], 0, "{body}");
    let sent: Value = serde_json::from_str(&hits.lock().unwrap()[1]).unwrap();
    assert_eq!(sent["callbackUrl"], "http://127.0.0.1:1/callbacks/qys?x=1", "an allow-listed callbackUrl is used");
}

#[tokio::test(flavor = "multi_thread")]
async fn cors_only_for_configured_origins() {
    let stack = Stack::start().await;
    let body = [("requestData", json!({"v": 1, "action": "personalSign", "state": state("c"),
        "params": {"contractId": "2603417854124281870", "contact": "13700000044"}}).to_string())];
    let endpoint = format!("{}/qys/proxy", stack.proxy);
    let allowed = stack.client.post(&endpoint).header("origin", PAGE_ORIGIN).form(&body).send().await.unwrap();
    assert_eq!(allowed.headers()["access-control-allow-origin"], PAGE_ORIGIN);
    assert_eq!(allowed.headers()["vary"], "Origin");
    let own = stack.client.post(&endpoint).header("origin", stack.proxy.as_str()).form(&body).send().await.unwrap();
    assert_eq!(own.headers()["access-control-allow-origin"], stack.proxy.as_str());

    // Another origin gets only a readable refusal (so the SDK can say what to fix), no page URL.
    let other = stack.client.post(&endpoint).header("origin", "http://127.0.0.2:9").form(&body).send().await.unwrap();
    assert_eq!(other.status(), 403);
    let refusal = other.json::<Value>().await.unwrap();
    assert_eq!(refusal["code"], 40300);
    assert!(refusal.get("result").is_none());

    let preflight = |origin: &'static str| {
        stack
            .client
            .request(reqwest::Method::OPTIONS, &endpoint)
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .send()
    };
    let ok = preflight(PAGE_ORIGIN).await.unwrap();
    assert_eq!(ok.status(), 204);
    assert_eq!(ok.headers()["access-control-allow-origin"], PAGE_ORIGIN);
    let refused = preflight("null").await.unwrap();
    assert_eq!(refused.status(), 403);
    assert!(refused.headers().get("access-control-allow-methods").is_none(), "no preflight grant");
    assert!(!format!("{:?}", ok.headers()).contains("\"*\""));
}

#[tokio::test(flavor = "multi_thread")]
async fn body_and_field_limits() {
    let stack = Stack::start().await;
    let endpoint = format!("{}/qys/proxy", stack.proxy);
    let huge = "x".repeat(17 * 1024);
    let response = stack.client.post(&endpoint).form(&[("requestData", huge.as_str())]).send().await.unwrap();
    assert_eq!(response.status(), 413);
    assert_eq!(response.json::<Value>().await.unwrap()["code"], 41300);

    let long = |n: usize| "张".repeat(n);
    for (params, field) in [
        (json!({"contact": "13700000044", "username": long(65)}), "username"),
        (json!({"contact": "13700000044", "idCardNo": "1".repeat(33)}), "idCardNo"),
        (json!({"contact": format!("{}@example.com", "a".repeat(60))}), "contact"),
        (json!({"contact": "13700000044", "bankNo": "12ab"}), "bankNo"),
        (json!({"contact": "13700000044", "callbackUrl": format!("https://x/{}", "a".repeat(520))}), "callbackUrl"),
    ] {
        let (status, body) = stack.call("personalAuth", &state("l"), params).await;
        assert_eq!((status, body["code"].clone()), (400, json!(40003)), "{field}: {body}");
        assert!(body["message"].as_str().unwrap().contains(field), "{body}");
    }
    let name = long(129);
    let (_, body) = stack
        .call("enterpriseAuth", &state("l"), json!({"companyName": name, "companyAuthBean": {"applicant": {"contact": "13700000044"}}}))
        .await;
    assert_eq!(body["code"], 40003);
    let text = stack.client.post(&endpoint).header("content-type", "text/plain").body("x").send().await.unwrap();
    assert_eq!(text.status(), 415);
    let json_body = stack
        .client
        .post(&endpoint)
        .json(&json!({"v": 1, "action": "personalAuth", "state": state("j"), "params": {"contact": "13700000044"}}))
        .send()
        .await
        .unwrap();
    assert_eq!(json_body.json::<Value>().await.unwrap()["code"], 0, "application/json is accepted too");
}

#[tokio::test(flavor = "multi_thread")]
async fn hanging_or_absent_upstream_gives_a_timeout_or_unavailable_code() {
    // Accepts connections and never answers.
    let (listener, hanging) = bind().await;
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    let limit = Duration::from_millis(500);
    let stack = Stack::with(Options { platform_url: Some(hanging), timeout: limit, ..Options::default() }).await;
    let started = Instant::now();
    let (status, body) = stack.call("personalAuth", &state("t"), json!({"contact": "13700000044"})).await;
    let took = started.elapsed();
    assert_eq!((status, body["code"].clone()), (504, json!(50400)), "{body}");
    // Well under the default 15 s: this limit applied (a loaded machine may answer late).
    assert!(took >= limit && took < Duration::from_secs(10), "answered after {took:?}");

    let (listener, closed) = bind().await;
    drop(listener);
    let stack = Stack::with(Options { platform_url: Some(closed), ..Options::default() }).await;
    let (status, body) = stack.call("personalAuth", &state("t"), json!({"contact": "13700000044"})).await;
    assert_eq!((status, body["code"].clone()), (502, json!(50200)), "{body}");

    let (garbage, _) = {
        let router = Router::new().fallback(any(|| async { "<html>maintenance</html>" }));
        let (listener, url) = bind().await;
        spawn_server(listener, router);
        (url, ())
    };
    let stack = Stack::with(Options { platform_url: Some(garbage), ..Options::default() }).await;
    let (status, body) = stack.call("personalAuth", &state("g"), json!({"contact": "13700000044"})).await;
    assert_eq!((status, body["code"].clone()), (502, json!(50201)), "{body}");
}

async fn post_callback(stack: &Stack, path: &str, body: &str) -> Value {
    stack
        .client
        .post(format!("{}{path}", stack.proxy))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body.to_owned())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn callbacks_are_stored_once_and_malformed_ones_counted() {
    let stack = Stack::start().await;
    let personal = &signed_callback(SECRET, "/qys/callback/personal-auth?flow=abc");
    assert_eq!(post_callback(&stack, personal, "mode=FACE&status=1").await, json!({"code": 0}));
    assert_eq!(post_callback(&stack, personal, "mode=FACE&status=1").await, json!({"code": 0}), "retry");
    let company = &signed_callback(SECRET, "/qys/callback/company-auth");
    let info = form_urlencoded::Serializer::new(String::new())
        .append_pair("status", "1")
        .append_pair("actionEvent", "7")
        .append_pair("requestId", "r-1")
        .append_pair("authInfo", r#"{"name":"杭州测试","registerNo":"1","legalPerson":"韩"}"#)
        .finish();
    assert_eq!(post_callback(&stack, company, &info).await, json!({"code": 0}));
    let bad = post_callback(&stack, personal, "mode=TELEPATHY&status=1").await;
    assert_eq!(bad["code"], 1001, "{bad}");
    let bad = post_callback(&stack, company, "status=1&actionEvent=7").await;
    assert_eq!(bad["code"], 1001, "{bad}");
    // Only well-formed deliveries are stored; malformed ones are counted and sampled (issue 8).
    let stored = stack.store.all().unwrap();
    assert_eq!(stored.len(), 2);
    assert_eq!((stored[0].deliveries, stored[0].query.as_str()), (2, "flow=abc"), "stored without its sig");
    assert!(stored[1].error.is_empty() && stored[1].body.contains("authInfo"));
    let samples = stack.store.malformed_samples().unwrap();
    assert!(samples[0].reason.contains("mode") && samples[1].reason.contains("requestId"));
    assert_eq!(stack.store.malformed_counts().unwrap().iter().map(|c| c.count).sum::<i64>(), 2);
}

/// A callback receiver that fails `fail_first` times, recording when each try came.
async fn receiver(fail_first: usize) -> (String, Arc<Mutex<Vec<(Instant, String)>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    let router = Router::new().route(
        "/cb",
        post(move |body: String| {
            let log = log.clone();
            async move {
                let mut log = log.lock().unwrap();
                log.push((Instant::now(), body));
                Json(json!({"code": if log.len() <= fail_first { 1001 } else { 0 }}))
            }
        }),
    );
    let (listener, url) = bind().await;
    spawn_server(listener, router);
    (format!("{url}/cb"), seen)
}

async fn wait_for(seen: &Mutex<Vec<(Instant, String)>>, n: usize, limit: Duration) {
    let start = Instant::now();
    while seen.lock().unwrap().len() < n && start.elapsed() < limit {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn sandbox_retries_callbacks_four_times_then_stops() {
    let (always_failing, seen) = receiver(usize::MAX).await;
    let (second_try_ok, seen_ok) = receiver(1).await;
    // Long enough that "at once" (under half of it) and "after the pause" stay apart on a loaded
    // machine.
    let delay = Duration::from_millis(1_500);
    let stack = Stack::with(Options {
        callback_allowlist: vec![always_failing.clone(), second_try_ok.clone()],
        retry_delay: delay,
        mode: UpstreamMode::Ticket { template: String::new() },
        ..Options::default()
    })
    .await;
    for (target, tag) in [(&always_failing, "r1"), (&second_try_ok, "r2")] {
        let url = stack
            .page_url("personalAuth", &state(tag), json!({"mode": "FACE", "contact": "13900000011", "username": "甲",
                "idCardNo": "1", "callbackUrl": target}))
            .await;
        let page = open(&stack.client, &url).await;
        click(&stack.client, &page, "submit", &[]).await;
    }
    wait_for(&seen, 4, Duration::from_secs(30)).await;
    tokio::time::sleep(delay * 2).await;
    let tries = seen.lock().unwrap().clone();
    assert_eq!(tries.len(), 4, "four tries in all, then it stops");
    assert!(tries.iter().all(|(_, body)| body.contains("mode=FACE") && body.contains("status=1")));
    let gap = |a: usize, b: usize| tries[b].0 - tries[a].0;
    assert!(gap(0, 1) < delay / 2, "second try at once: {:?}", gap(0, 1));
    assert!(gap(1, 2) >= delay, "third after the pause: {:?}", gap(1, 2));
    assert!(gap(2, 3) < delay / 2, "fourth at once: {:?}", gap(2, 3));
    assert_eq!(seen_ok.lock().unwrap().len(), 2, "a delivery that succeeds is not retried");
}

/// What a scripted platform answers (`result` of every success) and every request it got (the
/// JSON body, `null` for a GET).
type Script = (Arc<Mutex<Value>>, Arc<Mutex<Vec<Value>>>);

/// A platform answering every call `{"code":0,"result":<script>}`, recording each request.
async fn scripted_platform(result: Value) -> (String, Script) {
    let script: Script = (Arc::new(Mutex::new(result)), Arc::default());
    let (answer, calls) = script.clone();
    let router = Router::new().fallback(any(move |body: axum::body::Bytes| {
        let (answer, calls) = (answer.clone(), calls.clone());
        async move {
            calls.lock().unwrap().push(serde_json::from_slice(&body).unwrap_or(Value::Null));
            Json(json!({"code": 0, "message": "SUCCESS", "result": answer.lock().unwrap().clone()}))
        }
    }));
    let (listener, url) = bind().await;
    spawn_server(listener, router);
    (url, script)
}

/// A client whose connections come from `source` (any 127.0.0.0/8 address is loopback).
fn client_from(source: &str) -> reqwest::Client {
    let address = source.parse::<std::net::IpAddr>().unwrap();
    reqwest::Client::builder().local_address(address).redirect(reqwest::redirect::Policy::none()).build().unwrap()
}

/// Flow starts, `outcome` and return-page confirmations are charged to their source address
/// (`QYS_SDK_RATE` / `QYS_SDK_BURST`): past the burst, 429 / 42900 with `Retry-After` and no
/// platform call, while another address and bad inputs get their usual answers.
#[tokio::test(flavor = "multi_thread")]
async fn one_address_over_its_sdk_rate_gets_429_and_spends_no_platform_quota() {
    let (platform, (_, calls)) = scripted_platform(json!({"pageUrl": "http://127.0.0.1:1/page", "signatories": []})).await;
    let sdk_limit = qys_proxy::proxy::sdk_limit(0.001, 3).unwrap();
    let stack = Stack::with(Options { platform_url: Some(platform), sdk_limit, ..Options::default() }).await;
    let sign = json!({"contractId": "2603417854124281870", "contact": "13700000044"});
    let mut flows = Vec::new();
    for n in 0..2 {
        let (status, body) = stack.call("personalSign", &state(&format!("r{n}")), sign.clone()).await;
        assert_eq!((status, body["code"].clone()), (200, json!(0)), "{body}");
        flows.push(body["result"]["flow"].as_str().unwrap().to_owned());
    }
    let (status, body) = stack.outcome(PAGE_ORIGIN, &state("r0"), &flows[0]).await;
    assert_eq!((status, body["result"]["event"].clone()), (200, json!("pending")), "{body}");
    assert_eq!(calls.lock().unwrap().len(), 3, "the burst: two starts and an outcome");
    // A bad input still gets its own error (checked before the source is charged).
    let (status, body) = stack.call("personalSign", &state("bad"), json!({"contractId": "1", "contact": "x"})).await;
    assert_eq!((status, body["code"].clone()), (400, json!(40003)), "{body}");

    let refused = sdk_request(&stack.client, &stack.proxy, PAGE_ORIGIN, "personalSign", &state("r3"), sign.clone()).await;
    assert_eq!(refused.status(), 429);
    let header = |name: &str| refused.headers().get(name).map(|v| v.to_str().unwrap().to_owned());
    assert_eq!(header("access-control-allow-origin").as_deref(), Some(PAGE_ORIGIN), "the SDK can read the refusal");
    assert!(header("retry-after").is_some_and(|s| s.parse::<u64>().unwrap() >= 1));
    let body: Value = refused.json().await.unwrap();
    assert_eq!(body["code"], 42900, "{body}");
    assert!(body["message"].as_str().unwrap().contains("too many requests from this address"), "{body}");
    let (status, body) = stack.outcome(PAGE_ORIGIN, &state("r1"), &flows[1]).await;
    assert_eq!((status, body["code"].clone()), (429, json!(42900)), "outcome: {body}");
    let callback_page = calls.lock().unwrap()[0]["callbackPage"].as_str().unwrap().to_owned();
    let page = stack.client.get(&callback_page).send().await.unwrap();
    assert_eq!(page.status(), 429, "the return page");
    assert!(page.headers().contains_key("retry-after"));
    assert!(page.text().await.unwrap().contains("Too many requests from this address"));
    assert_eq!(calls.lock().unwrap().len(), 3, "no platform call past the limit");

    // Another address has its own bucket.
    let other = client_from("127.0.0.2");
    let response = sdk_request(&other, &stack.proxy, PAGE_ORIGIN, "personalSign", &state("o1"), sign).await;
    assert_eq!(response.status(), 200);
    assert_eq!(calls.lock().unwrap().len(), 4);

    assert_eq!(qys_proxy::proxy::sdk_limit(0.0, 0), Ok(qys_proxy::store::RateLimit::OFF));
    assert!(qys_proxy::proxy::sdk_limit(2.0, 0).unwrap_err().contains("QYS_SDK_BURST"));
    assert!(qys_proxy::proxy::sdk_limit(-1.0, 9).unwrap_err().contains("QYS_SDK_RATE"));
    assert!(qys_proxy::proxy::sdk_limit(f64::NAN, 9).is_err());
}

/// The platform's text on the success path: a page URL that is not an absolute http(s) URL of
/// at most 4096 bytes without user-info, or a ticket the SDK would refuse, is the platform's bad
/// answer (502 / 50201), not a page handed to the browser; confirmed data reaches `outcome` and
/// the return page as screened strings (no control or bidi characters, at most 256 characters,
/// non-strings null).
#[tokio::test(flavor = "multi_thread")]
async fn platform_text_on_the_success_path_is_checked_and_screened() {
    let (platform, (answer, _)) = scripted_platform(Value::Null).await;
    let stack = Stack::with(Options { platform_url: Some(platform), ..Options::default() }).await;
    let auth = json!({"contact": "13700000044"});
    let long = format!("http://127.0.0.1:1/{}", "a".repeat(4096));
    for bad in ["javascript:alert(1)//", "/relative", "http://user:pw@127.0.0.1:1/p", &long, "data:text/html,<script>"] {
        *answer.lock().unwrap() = json!({"pageUrl": bad, "authUrl": bad});
        let (status, body) = stack.call("personalAuth", &state("u"), auth.clone()).await;
        assert_eq!((status, body["code"].clone()), (502, json!(50201)), "{bad}: {body}");
        assert!(body["message"].as_str().unwrap().contains("result.authUrl is not an absolute http(s) URL"), "{body}");
        assert!(!body.to_string().contains("alert") && !body.to_string().contains("<script"), "{body}");
    }
    // A good one is passed in the form that was checked.
    *answer.lock().unwrap() = json!({"authUrl": "HTTP://127.0.0.1:1/p?n=\u{202e}x"});
    let (_, body) = stack.call("personalAuth", &state("u"), auth.clone()).await;
    assert_eq!(body["result"]["pageUrl"], "http://127.0.0.1:1/p?n=%E2%80%AEx", "{body}");
    for bad in ["t\"><img src=x>", "", &"t".repeat(513), "t 1"] {
        *answer.lock().unwrap() = json!({"ticket": bad});
        let envelope = json!({"v": 1, "action": "personalAuth", "state": state("m"), "params": auth, "presentation": "miniProgram"});
        let (status, body) = stack.send(PAGE_ORIGIN, envelope).await;
        assert_eq!((status, body["code"].clone()), (502, json!(50201)), "{bad:?}: {body}");
        assert!(body["message"].as_str().unwrap().contains("result.ticket"), "{body}");
    }

    // Confirmed data: screened strings.
    *answer.lock().unwrap() = json!({"authUrl": "http://127.0.0.1:1/p"});
    let (_, started) = stack.call("personalAuth", &state("d"), auth.clone()).await;
    let flow = started["result"]["flow"].as_str().unwrap().to_owned();
    *answer.lock().unwrap() = json!({
        "realName": true, "mode": "FACE",
        "username": "王\u{202e}五\n</script><script>alert(1)</script>",
        "mobile": 13700000044u64,
        "idCardNo": "1".repeat(5000),
    });
    let (status, body) = stack.outcome(PAGE_ORIGIN, &state("d"), &flow).await;
    assert_eq!((status, body["result"]["event"].clone()), (200, json!("authSuccess")), "{body}");
    let data = &body["result"]["data"];
    assert_eq!(data["username"], "王五 </script><script>alert(1)</script>", "{data}");
    assert_eq!(data["mobile"], Value::Null, "not a string");
    assert_eq!(data["cardNo"].as_str().unwrap().chars().count(), 257, "256 characters and the cut mark");
}

/// `envelope` POSTed as the SDK does from [`PAGE_ORIGIN`], with one extra header (`None`: none).
async fn sdk_request_with(stack: &Stack, extra: Option<(&str, &str)>, envelope: &Value) -> reqwest::Response {
    let mut request = stack
        .client
        .post(format!("{}/qys/proxy", stack.proxy))
        .header("origin", PAGE_ORIGIN)
        .form(&[("requestData", envelope.to_string())]);
    if let Some((name, value)) = extra {
        request = request.header(name, value);
    }
    request.send().await.unwrap()
}

/// A start of a personalSign flow as the SDK makes it, with one extra header; its status and, on
/// success, its flow token.
async fn start_with(stack: &Stack, extra: Option<(&str, &str)>, tag: &str) -> (u16, Option<String>) {
    let sign = json!({"contractId": "2603417854124281870", "contact": "13700000044"});
    let envelope = json!({"v": 1, "action": "personalSign", "state": state(tag), "params": sign});
    let response = sdk_request_with(stack, extra, &envelope).await;
    let status = response.status().as_u16();
    let body: Value = response.json().await.unwrap();
    (status, body["result"]["flow"].as_str().map(str::to_owned))
}

/// A server callback through the proxy's signed URL, with one extra header; its status.
async fn callback_with(stack: &Stack, extra: Option<(&str, &str)>) -> u16 {
    let mut request = stack
        .client
        .post(format!("{}{}", stack.proxy, signed_callback(SECRET, "/qys/callback/personal-auth?flow=rp")))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("mode=FACE&status=1");
    if let Some((name, value)) = extra {
        request = request.header(name, value);
    }
    request.send().await.unwrap().status().as_u16()
}

/// Behind a reverse proxy in `QYS_TRUSTED_PROXIES` (by default loopback: nginx on the same host)
/// the per-address limits (`QYS_SDK_RATE`, `QYS_CALLBACK_RATE`) charge the client it names: the
/// right-most `X-Forwarded-For` address that is not itself trusted, else `X-Real-IP`. Its clients
/// get a bucket each, and what a client wrote to the left of the reverse proxy's entry changes
/// nothing; a request naming nobody, or nothing that parses, is charged to the reverse proxy.
#[tokio::test(flavor = "multi_thread")]
async fn behind_a_trusted_reverse_proxy_each_client_it_names_has_its_own_limit() {
    let (platform, (_, calls)) = scripted_platform(json!({"pageUrl": "http://127.0.0.1:1/page", "signatories": []})).await;
    let stack = Stack::with(Options {
        platform_url: Some(platform),
        sdk_limit: qys_proxy::proxy::sdk_limit(0.001, 3).unwrap(),
        callback_limit: qys_proxy::store::RateLimit::new(0.001, 4).unwrap(),
        ..Options::default()
    })
    .await;
    // One client: a flow start, its outcome and its return page are its burst of 3.
    let (status, flow) = start_with(&stack, Some(("x-forwarded-for", "203.0.113.9")), "a0").await;
    assert_eq!(status, 200);
    let envelope = json!({"v": 1, "action": "outcome", "state": state("a0"), "params": {"flow": flow.unwrap()}});
    let response = sdk_request_with(&stack, Some(("x-forwarded-for", "203.0.113.9")), &envelope).await;
    assert_eq!(response.status(), 200, "outcome");
    let callback_page = calls.lock().unwrap()[0]["callbackPage"].as_str().unwrap().to_owned();
    let page = stack.client.get(&callback_page).header("x-real-ip", "203.0.113.9").send().await.unwrap();
    assert_eq!(page.status(), 200, "the return page");
    for (n, spoofed) in ["192.0.2.1, 203.0.113.9", "192.0.2.2,203.0.113.9, 127.0.0.5", "203.0.113.9"].into_iter().enumerate() {
        let (status, _) = start_with(&stack, Some(("x-forwarded-for", spoofed)), &format!("a{}", n + 1)).await;
        assert_eq!(status, 429, "{spoofed}: 203.0.113.9, the entry the reverse proxy appended, is spent");
    }
    // Another client behind the same reverse proxy has its own bucket.
    for n in 0..3 {
        let (status, _) = start_with(&stack, Some(("x-forwarded-for", "203.0.113.9, 198.51.100.7")), &format!("b{n}")).await;
        assert_eq!(status, 200, "198.51.100.7's start {n}");
    }
    let (status, _) = start_with(&stack, Some(("x-real-ip", "198.51.100.7")), "b3").await;
    assert_eq!(status, 429, "X-Real-IP names the same client");
    assert_eq!(calls.lock().unwrap().len(), 6, "3 + 3 platform calls, none for a refusal");
    // Naming nobody outside the list, or something that is not an address: the reverse proxy's own.
    for (n, header) in [("x-forwarded-for", "unknown"), ("x-forwarded-for", "127.0.0.9"), ("forwarded", "for=192.0.2.9")].into_iter().enumerate() {
        let (status, _) = start_with(&stack, Some(header), &format!("p{n}")).await;
        assert_eq!(status, 200, "{header:?}: charged to 127.0.0.1");
    }
    let (status, _) = start_with(&stack, None, "p3").await;
    assert_eq!(status, 429, "127.0.0.1's burst is spent");

    // Server callbacks alike (burst 4).
    for _ in 0..4 {
        assert_eq!(callback_with(&stack, Some(("x-forwarded-for", "203.0.113.20"))).await, 200);
    }
    assert_eq!(callback_with(&stack, Some(("x-forwarded-for", "203.0.113.20"))).await, 429, "203.0.113.20 over its limit");
    assert_eq!(callback_with(&stack, Some(("x-forwarded-for", "203.0.113.21"))).await, 200, "another sender is not");
}

/// A peer outside `QYS_TRUSTED_PROXIES` is the client whatever its headers say: a spoofed
/// `X-Forwarded-For` or `X-Real-IP` buys no new bucket. (Loopback stands in for an untrusted peer
/// here, with nothing trusted.)
#[tokio::test(flavor = "multi_thread")]
async fn an_untrusted_peer_is_charged_whatever_its_forwarding_headers_say() {
    let (platform, (_, calls)) = scripted_platform(json!({"pageUrl": "http://127.0.0.1:1/page", "signatories": []})).await;
    let stack = Stack::with(Options {
        platform_url: Some(platform),
        sdk_limit: qys_proxy::proxy::sdk_limit(0.001, 3).unwrap(),
        callback_limit: qys_proxy::store::RateLimit::new(0.001, 4).unwrap(),
        trusted_proxies: qys_proxy::proxy::TrustedProxies::NONE,
        ..Options::default()
    })
    .await;
    let spoofed = [("x-forwarded-for", "203.0.113.1"), ("x-real-ip", "203.0.113.2"), ("x-forwarded-for", "203.0.113.3")];
    for (n, header) in spoofed.into_iter().enumerate() {
        let (status, _) = start_with(&stack, Some(header), &format!("s{n}")).await;
        assert_eq!(status, 200, "{header:?}");
    }
    let (status, _) = start_with(&stack, Some(("x-forwarded-for", "203.0.113.4")), "s3").await;
    assert_eq!(status, 429, "a fourth spoofed address is still 127.0.0.1");
    assert_eq!(calls.lock().unwrap().len(), 3);
    for n in 0..4 {
        let header = format!("203.0.113.{}", 10 + n);
        assert_eq!(callback_with(&stack, Some(("x-forwarded-for", &header))).await, 200);
    }
    assert_eq!(callback_with(&stack, Some(("x-forwarded-for", "203.0.113.99"))).await, 429);
}

/// Only the TCP peer itself on loopback starts with a full bucket: a 127.x address that a
/// trusted peer's header names starts with 10 like any other, since a forwarder on the host that
/// does not append (frpc, stunnel, HAProxy in TCP mode) lets its clients write one.
#[tokio::test(flavor = "multi_thread")]
async fn a_loopback_address_a_header_names_starts_small() {
    let (platform, (_, calls)) = scripted_platform(json!({"pageUrl": "http://127.0.0.1:1/page", "signatories": []})).await;
    let stack = Stack::with(Options {
        platform_url: Some(platform),
        sdk_limit: qys_proxy::proxy::sdk_limit(0.001, 20).unwrap(),
        trusted_proxies: qys_proxy::proxy::TrustedProxies::parse("127.0.0.1").unwrap(),
        ..Options::default()
    })
    .await;
    for (n, named) in ["127.0.0.5", "::1"].into_iter().enumerate() {
        let header = Some(("x-forwarded-for", named));
        for m in 0..10 {
            assert_eq!(start_with(&stack, header, &format!("h{n}-{m}")).await.0, 200, "{named} {m}");
        }
        assert_eq!(start_with(&stack, header, &format!("h{n}-10")).await.0, 429, "{named}: 10 tokens, not 20");
    }
    for m in 0..11 {
        assert_eq!(start_with(&stack, None, &format!("p{m}")).await.0, 200, "127.0.0.1 itself: {m}");
    }
    assert_eq!(calls.lock().unwrap().len(), 31);
}

/// Each address within its own limit, many addresses together could still spend the platform
/// quota on flow starts (the confirmation cap covers only confirmations): so the instance caps
/// its flow starts per second (`QYS_FLOW_START_RATE`) whoever asks, behind a reverse proxy too,
/// with 429 / 42900 and `Retry-After`; `outcome` is not a flow start.
#[tokio::test(flavor = "multi_thread")]
async fn the_instance_caps_its_flow_starts_whatever_their_addresses() {
    let (platform, (_, calls)) = scripted_platform(json!({"pageUrl": "http://127.0.0.1:1/page", "signatories": []})).await;
    let stack = Stack::with(Options {
        platform_url: Some(platform),
        sdk_limit: qys_proxy::store::RateLimit::OFF,
        flow_start_rate: 1,
        ..Options::default()
    })
    .await;
    let sign = json!({"contractId": "2603417854124281870", "contact": "13700000044"});
    let (status, body) = stack.call("personalSign", &state("c0"), sign.clone()).await;
    assert_eq!(status, 200, "{body}");
    let flow = body["result"]["flow"].as_str().unwrap().to_owned();
    // Six more at once, from three addresses, some through a reverse proxy: one token a second.
    let started = Instant::now();
    let attempts = (1..=6).map(|n| {
        let client = client_from(&format!("127.0.0.{}", n % 3 + 1));
        let envelope = json!({"v": 1, "action": "personalSign", "state": state(&format!("c{n}")), "params": sign});
        let endpoint = format!("{}/qys/proxy", stack.proxy);
        async move {
            let mut request = client.post(endpoint).header("origin", PAGE_ORIGIN);
            if n % 2 == 0 {
                request = request.header("x-forwarded-for", "203.0.113.9");
            }
            request.form(&[("requestData", envelope.to_string())]).send().await.unwrap()
        }
    });
    let answers = futures_all(attempts).await;
    let elapsed = started.elapsed();
    let mut granted = 0u32;
    for response in answers {
        if response.status() == 200 {
            granted += 1;
            continue;
        }
        assert_eq!(response.status(), 429);
        let header = |name: &str| response.headers().get(name).map(|v| v.to_str().unwrap().to_owned());
        assert_eq!(header("access-control-allow-origin").as_deref(), Some(PAGE_ORIGIN));
        assert!(header("retry-after").is_some_and(|s| s.parse::<u64>().unwrap() >= 1));
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["code"], 42900, "{body}");
        assert!(body["message"].as_str().unwrap().contains("too many flows are being started"), "{body}");
    }
    // At one a second, the six could only all pass if they took more than five seconds.
    assert!(f64::from(granted) <= elapsed.as_secs_f64().ceil(), "{granted} granted in {elapsed:?}");
    assert!(granted < 6, "the ceiling refused some");
    let starts = calls.lock().unwrap().len();
    assert_eq!(starts, 1 + granted as usize, "no platform call for a refused start");
    let (status, body) = stack.outcome(PAGE_ORIGIN, &state("c0"), &flow).await;
    assert_eq!((status, body["result"]["event"].clone()), (200, json!("pending")), "outcome is not a flow start: {body}");
}

/// Awaits every future, concurrently, in order.
async fn futures_all<F: std::future::Future + Send + 'static>(futures: impl Iterator<Item = F>) -> Vec<F::Output>
where
    F::Output: Send + 'static,
{
    let handles: Vec<_> = futures.map(tokio::spawn).collect();
    let mut out = Vec::new();
    for handle in handles {
        out.push(handle.await.unwrap());
    }
    out
}
