//! The return page and `outcome` spend the AppToken's quota sparingly (issue 8, item 7), and the
//! return page trusts no origin a token brings (item 8): real servers, a platform that counts
//! its calls, and tokens made with the key as a thief of the key would make them.

mod common;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::Request;
use axum::routing::any;
use axum::{Json, Router};
use common::*;
use qys_proxy::protocol::Action;
use qys_proxy::proxy::ConfirmLimits;
use qys_proxy::spawn_server;
use qys_proxy::token::{FlowToken, TokenKey};
use serde_json::{json, Value};

const CONTRACT: &str = "2603417854124281870";
const SIGNER: &str = "13700000044";
const RETURN_CSP: &str = "default-src 'none'; style-src 'unsafe-inline'";

/// A platform that counts its calls and keeps the `callbackPage` of every page-URL request.
/// The signer has signed once `signed` is set; confirmations take `delay_ms` (100 ms), so
/// requests overlap.
#[derive(Clone, Default)]
struct CountingPlatform {
    calls: Arc<Mutex<Vec<String>>>,
    callback_pages: Arc<Mutex<Vec<String>>>,
    signed: Arc<AtomicBool>,
    delay_ms: Arc<AtomicU64>,
}

impl CountingPlatform {
    async fn start() -> (String, Self) {
        let platform = Self::default();
        platform.delay_ms.store(100, Ordering::SeqCst);
        let state = platform.clone();
        let router = Router::new().fallback(any(move |request: Request| {
            let state = state.clone();
            async move {
                let path = request.uri().path().to_owned();
                let bytes = axum::body::to_bytes(request.into_body(), 1 << 16).await.unwrap();
                state.calls.lock().unwrap().push(path.clone());
                if path == "/v2/contract/detail" {
                    tokio::time::sleep(Duration::from_millis(state.delay_ms.load(Ordering::SeqCst))).await;
                    let status = if state.signed.load(Ordering::SeqCst) { "SIGNED" } else { "SIGNING" };
                    let signatory = json!({"tenantType": "PERSONAL", "receiver": {"contact": SIGNER}, "status": status});
                    return Json(json!({"code": 0, "message": "SUCCESS", "result": {"signatories": [signatory]}}));
                }
                let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
                if let Some(page) = body["callbackPage"].as_str() {
                    state.callback_pages.lock().unwrap().push(page.to_owned());
                }
                let url = "http://127.0.0.1:1/page";
                Json(json!({"code": 0, "message": "SUCCESS", "result": {"pageUrl": url, "authUrl": url, "ticket": "t-1"}}))
            }
        }));
        let (listener, url) = bind().await;
        spawn_server(listener, router);
        (url, platform)
    }

    fn confirmations(&self) -> usize {
        self.calls.lock().unwrap().iter().filter(|p| *p == "/v2/contract/detail").count()
    }
}

async fn stack(platform: &str, confirm: ConfirmLimits) -> Stack {
    Stack::with(Options { platform_url: Some(platform.to_owned()), confirm, ..Options::default() }).await
}

/// Starts a personalSign flow; `(return link, flow token)`.
async fn start(stack: &Stack, platform: &CountingPlatform, tag: &str, return_url: Option<&str>) -> (String, String) {
    let mut envelope = json!({"v": 1, "action": "personalSign", "state": state(tag),
                              "params": {"contractId": CONTRACT, "contact": SIGNER}});
    if let Some(url) = return_url {
        envelope["presentation"] = json!("redirect");
        envelope["returnUrl"] = json!(url);
    }
    let (status, answer) = stack.send(PAGE_ORIGIN, envelope).await;
    assert_eq!((status, answer["code"].clone()), (200, json!(0)), "{answer}");
    let link = platform.callback_pages.lock().unwrap().last().cloned().unwrap();
    (link, answer["result"]["flow"].as_str().unwrap().to_owned())
}

async fn load(client: &reqwest::Client, url: &str) -> (u16, reqwest::header::HeaderMap, String) {
    let response = client.get(url).send().await.unwrap();
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    (status, headers, response.text().await.unwrap())
}

fn event_of(html: &str) -> Value {
    let page = Page { url: String::new(), status: 200, html: html.to_owned() };
    posted_message(&page).expect("the page posts a message").0["event"].clone()
}

#[tokio::test(flavor = "multi_thread")]
async fn reloads_and_outcome_repeats_cost_one_platform_call_per_flow() {
    let (url, platform) = CountingPlatform::start().await;
    platform.signed.store(true, Ordering::SeqCst);
    let stack = stack(&url, ConfirmLimits::default()).await;
    let (link, flow) = start(&stack, &platform, "one", None).await;

    // 50 loads at once (they share the one call in flight), then 50 one after the other.
    let loads = (0..50).map(|_| {
        let (client, link) = (stack.client.clone(), link.clone());
        tokio::spawn(async move { load(&client, &link).await })
    });
    for handle in loads.collect::<Vec<_>>() {
        let (status, _, html) = handle.await.unwrap();
        assert_eq!((status, event_of(&html)), (200, json!("signSuccess")));
    }
    for _ in 0..50 {
        let (status, _, html) = load(&stack.client, &link).await;
        assert_eq!((status, event_of(&html)), (200, json!("signSuccess")));
    }
    assert_eq!(platform.confirmations(), 1, "100 loads of one return link");

    // `outcome` shares the page's confirmation.
    for _ in 0..20 {
        let (status, body) = stack.outcome(PAGE_ORIGIN, &state("one"), &flow).await;
        assert_eq!((status, body["result"]["event"].clone()), (200, json!("signSuccess")), "{body}");
    }
    assert_eq!(platform.confirmations(), 1, "outcome repeats");

    // Another flow of the same signer and contract is confirmed on its own.
    let (second, second_flow) = start(&stack, &platform, "two", None).await;
    for _ in 0..10 {
        assert_eq!(stack.outcome(PAGE_ORIGIN, &state("two"), &second_flow).await.1["result"]["event"], "signSuccess");
        assert_eq!(event_of(&load(&stack.client, &second).await.2), "signSuccess");
    }
    assert_eq!(platform.confirmations(), 2, "one call for the second flow");

    // Each instance keeps its own: another one (same key) asks once for itself.
    let other = self::stack(&url, ConfirmLimits::default()).await;
    let elsewhere = link.replace(&stack.proxy, &other.proxy);
    for _ in 0..5 {
        assert_eq!(event_of(&load(&other.client, &elsewhere).await.2), "signSuccess");
    }
    assert_eq!(platform.confirmations(), 3, "one more call, on the other instance");
}

#[tokio::test(flavor = "multi_thread")]
async fn not_yet_is_reused_briefly_and_the_first_return_asks_again() {
    let (url, platform) = CountingPlatform::start().await;
    // Long enough that each burst of local requests below fits in it on a loaded CI machine.
    let limits = ConfirmLimits { recheck: Duration::from_millis(3_000), ..ConfirmLimits::default() };
    let stack = stack(&url, limits).await;

    // A redirect flow: the page asks before the user is done.
    let (link, flow) = start(&stack, &platform, "rd", Some(&format!("{PAGE_ORIGIN}/pay"))).await;
    for _ in 0..10 {
        assert_eq!(stack.outcome(PAGE_ORIGIN, &state("rd"), &flow).await.1["result"]["event"], "pending");
    }
    assert_eq!(platform.confirmations(), 1, "one call per flow per recheck interval");
    // The user signs; within the interval the answer is still the kept one…
    platform.signed.store(true, Ordering::SeqCst);
    assert_eq!(stack.outcome(PAGE_ORIGIN, &state("rd"), &flow).await.1["result"]["event"], "pending");
    assert_eq!(platform.confirmations(), 1);
    // …but coming back through the return page (303, no call) makes the next outcome ask.
    let (status, _, _) = load(&stack.client, &link).await;
    assert_eq!((status, platform.confirmations()), (303, 1));
    for _ in 0..5 {
        assert_eq!(stack.outcome(PAGE_ORIGIN, &state("rd"), &flow).await.1["result"]["event"], "signSuccess");
    }
    assert_eq!(platform.confirmations(), 2);
    // Only the first return does that.
    platform.signed.store(false, Ordering::SeqCst);
    let (_, flow2) = start(&stack, &platform, "rd2", Some(&format!("{PAGE_ORIGIN}/pay"))).await;
    let link2 = platform.callback_pages.lock().unwrap().last().cloned().unwrap();
    for _ in 0..5 {
        load(&stack.client, &link2).await;
        assert_eq!(stack.outcome(PAGE_ORIGIN, &state("rd2"), &flow2).await.1["result"]["event"], "pending");
    }
    assert_eq!(platform.confirmations(), 3, "returning again and again asks no more");

    // An iframe flow: the return page's "not confirmed" (authFail) is kept for the interval.
    let (frame, _) = start(&stack, &platform, "ifr", None).await;
    for _ in 0..10 {
        assert_eq!(event_of(&load(&stack.client, &frame).await.2), "authFail");
    }
    assert_eq!(platform.confirmations(), 4);
    tokio::time::sleep(Duration::from_millis(3_100)).await;
    platform.signed.store(true, Ordering::SeqCst);
    assert_eq!(event_of(&load(&stack.client, &frame).await.2), "signSuccess", "asked again after the interval");
    assert_eq!(platform.confirmations(), 5);
}

#[tokio::test(flavor = "multi_thread")]
async fn over_the_rate_confirmations_answer_busy() {
    let (url, platform) = CountingPlatform::start().await;
    // Instant answers, and 1 a second: the budget of one call refills only after a second, far
    // longer than the three local requests below take, even on a loaded machine.
    platform.delay_ms.store(0, Ordering::SeqCst);
    let stack = stack(&url, ConfirmLimits { per_second: 1, ..ConfirmLimits::default() }).await;
    let mut flows = Vec::new();
    for i in 0..3 {
        flows.push(start(&stack, &platform, &format!("busy{i}"), None).await);
    }
    let (status, body) = stack.outcome(PAGE_ORIGIN, &state("busy0"), &flows[0].1).await;
    assert_eq!((status, body["result"]["event"].clone()), (200, json!("pending")), "{body}");
    // The budget of one call is spent: no call, a 503 the SDK retries on.
    let response = send_envelope(
        &stack.client,
        &stack.proxy,
        PAGE_ORIGIN,
        &json!({"v": 1, "action": "outcome", "state": state("busy1"), "params": {"flow": flows[1].1}}),
    )
    .await;
    assert_eq!(response.status(), 503);
    assert_eq!(response.headers()["retry-after"], "1");
    assert_eq!(response.headers()["access-control-allow-origin"], PAGE_ORIGIN);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["code"], 50300, "{body}");
    let (status, headers, html) = load(&stack.client, &flows[2].0).await;
    assert_eq!((status, &headers["retry-after"], &headers["cache-control"]), (503, &"1".parse().unwrap(), &"no-store".parse().unwrap()));
    assert!(html.contains("系统繁忙") && !html.contains("<script"), "{html}");
    assert_eq!(headers["content-security-policy"], RETURN_CSP);
    assert_eq!(platform.confirmations(), 1);
    // A kept answer needs no budget.
    assert_eq!(stack.outcome(PAGE_ORIGIN, &state("busy0"), &flows[0].1).await.0, 200);
    // The budget refills at its rate.
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    assert_eq!(event_of(&load(&stack.client, &flows[2].0).await.2), "authFail");
    assert_eq!(platform.confirmations(), 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn only_a_bounded_number_of_flows_is_kept() {
    let (url, platform) = CountingPlatform::start().await;
    platform.signed.store(true, Ordering::SeqCst);
    let stack = stack(&url, ConfirmLimits { entries: 2, ..ConfirmLimits::default() }).await;
    let mut links = Vec::new();
    for tag in ["lru-a", "lru-b", "lru-c"] {
        let (link, _) = start(&stack, &platform, tag, None).await;
        load(&stack.client, &link).await;
        links.push(link);
    }
    assert_eq!(platform.confirmations(), 3);
    load(&stack.client, &links[2]).await;
    assert_eq!(platform.confirmations(), 3, "c is kept");
    load(&stack.client, &links[0]).await;
    assert_eq!(platform.confirmations(), 4, "a was forgotten when c came");
}

/// A return token made with the key, as whoever stole the key would make one.
fn forged_link(stack: &Stack, target_origin: &str, return_url: Option<&str>) -> String {
    let token = FlowToken {
        action: Action::PersonalSign,
        state: state("forged"),
        target_origin: target_origin.into(),
        subject: CONTRACT.into(),
        contact: SIGNER.into(),
        expires: qys_proxy::unix_millis() / 1000 + 600,
        return_url: return_url.map(str::to_owned),
    };
    let t = TokenKey::derive_from_secret(SECRET).sign(&token);
    format!("{}/qys/return?t={t}", stack.proxy)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_token_whose_origin_is_not_an_allowed_origin_gets_the_invalid_link_page() {
    let (url, platform) = CountingPlatform::start().await;
    platform.signed.store(true, Ordering::SeqCst);
    let stack = stack(&url, ConfirmLimits::default()).await;
    let allowed_page = format!("{PAGE_ORIGIN}/pay");
    for (origin, return_url) in [
        ("javascript:alert(1)", None),
        ("https://evil.example", None),
        ("data:text/html,x", None),
        ("null", None),
        ("", None),
        (&format!("{PAGE_ORIGIN}/"), None),
        (&format!("{PAGE_ORIGIN}/frame"), None),
        (&PAGE_ORIGIN.to_uppercase(), None),
        (&format!("{PAGE_ORIGIN} https://evil.example; script-src *"), None),
        (&format!("{PAGE_ORIGIN}'"), None),
        ("https://evil.example", Some(allowed_page.as_str())),
        // An allowed origin does not make any returnUrl allowed.
        (PAGE_ORIGIN, Some("https://evil.example/x")),
    ] {
        let (status, headers, html) = load(&stack.client, &forged_link(&stack, origin, return_url)).await;
        assert_eq!(status, 400, "{origin:?}: {html}");
        assert!(html.contains("链接无效"), "{origin:?}: {html}");
        assert!(!html.contains("<script") && !html.contains("postMessage"), "{origin:?}: {html}");
        assert_eq!(headers["content-security-policy"], RETURN_CSP, "{origin:?}");
        assert!(headers.get("location").is_none(), "{origin:?}");
    }
    assert_eq!(platform.confirmations(), 0, "no platform call for a refused origin");

    // The page's own allowed origin, and the proxy's own, still get their message.
    for origin in [PAGE_ORIGIN, stack.proxy.as_str()] {
        let (status, headers, html) = load(&stack.client, &forged_link(&stack, origin, None)).await;
        assert_eq!(status, 200, "{html}");
        let page = Page { url: String::new(), status, html };
        assert_eq!(posted_message(&page).unwrap().1, origin);
        let csp = headers["content-security-policy"].to_str().unwrap();
        assert!(csp.ends_with(&format!("; frame-ancestors {origin}")), "{csp}");
    }
    let (status, headers, _) = load(&stack.client, &forged_link(&stack, PAGE_ORIGIN, Some(&allowed_page))).await;
    assert_eq!((status, headers["location"].to_str().unwrap()), (303, format!("{allowed_page}?qys_state={}", state("forged")).as_str()));
}
