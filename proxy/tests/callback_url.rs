//! A browser-supplied `callbackUrl` is checked in its normalised (WHATWG) form, and exactly that
//! form reaches the platform (issue 8, item 5). The allow-list entries are normalised the same way
//! at start-up.

mod common;

use std::sync::{Arc, Mutex};

use axum::routing::any;
use axum::{Json, Router};
use common::*;
use qys_proxy::cli::Cli;
use qys_proxy::spawn_server;
use qys_proxy::Secret;
use clap::Parser;
use serde_json::{json, Value};

/// A fake platform that records every body the proxy POSTs and answers with a page URL.
async fn recording_platform() -> (String, Arc<Mutex<Vec<Value>>>) {
    let bodies = Arc::new(Mutex::new(Vec::new()));
    let log = bodies.clone();
    let router = Router::new().fallback(any(move |body: String| {
        let log = log.clone();
        async move {
            log.lock().unwrap().push(serde_json::from_str(&body).unwrap_or(Value::Null));
            let url = "http://127.0.0.1:1/page";
            Json(json!({"code": 0, "message": "SUCCESS", "result": {"pageUrl": url, "authUrl": url, "ticket": "t"}}))
        }
    }));
    let (listener, url) = bind().await;
    spawn_server(listener, router);
    (url, bodies)
}

/// The allow-list of these tests.
const ALLOWLIST: &[&str] = &["http://127.0.0.1:1/callbacks", "https://cb.example/qys/"];

/// `(callbackUrl as the browser sends it, what the platform must receive; None = refused 40003)`.
const TABLE: &[(&str, Option<&str>)] = &[
    // Plain URLs under an entry pass unchanged.
    ("http://127.0.0.1:1/callbacks", Some("http://127.0.0.1:1/callbacks")),
    ("http://127.0.0.1:1/callbacks/x?flow=1&y=..;/%2e", Some("http://127.0.0.1:1/callbacks/x?flow=1&y=..;/%2e")),
    ("https://cb.example/qys/personal", Some("https://cb.example/qys/personal")),
    // Path tricks a server behind might resolve outside the prefix: refused.
    ("http://127.0.0.1:1/callbacks/..;/admin", None),
    ("http://127.0.0.1:1/callbacks/%2e%2e%2fadmin", None),
    ("http://127.0.0.1:1/callbacks/%2E%2E%2Fadmin", None),
    ("http://127.0.0.1:1/callbacks/..%2fadmin", None),
    ("http://127.0.0.1:1/callbacks/%2e%2e%5cadmin", None),
    ("http://127.0.0.1:1/callbacks/x%5C..%5C..%5Cadmin", None),
    ("http://127.0.0.1:1/callbacks/%252e%252e%252fadmin", None),
    ("http://127.0.0.1:1/callbacks/..%3B/admin", None),
    ("http://127.0.0.1:1/callbacks;jsessionid=1/x", None),
    ("http://127.0.0.1:1/callbacks/x;y", None),
    ("http://127.0.0.1:1/callbacks/x%00.json", None),
    // Dot segments and backslashes the parser resolves: checked after resolution.
    ("http://127.0.0.1:1/callbacks/%2e%2e/admin", None),
    ("http://127.0.0.1:1/callbacks/../admin", None),
    ("http://127.0.0.1:1/callbacks\\..\\admin", None),
    ("http://127.0.0.1:1/callbacks/x/%2E%2E/y", Some("http://127.0.0.1:1/callbacks/y")),
    ("http://127.0.0.1:1/callbacks/./x", Some("http://127.0.0.1:1/callbacks/x")),
    ("http://127.0.0.1:1/callbacks\\x", Some("http://127.0.0.1:1/callbacks/x")),
    // Hosts the parser normalises: checked and forwarded as 127.0.0.1.
    ("http://127.1:1/callbacks/x", Some("http://127.0.0.1:1/callbacks/x")),
    ("http://0x7f.1:1/callbacks/x", Some("http://127.0.0.1:1/callbacks/x")),
    ("http://１２７.０.０.１:1/callbacks/x", Some("http://127.0.0.1:1/callbacks/x")),
    ("http://127.0.0.1:01/callbacks/x", Some("http://127.0.0.1:1/callbacks/x")),
    ("https://CB.Example:443/qys/x", Some("https://cb.example/qys/x")),
    ("https://ｃｂ.example/qys/x", Some("https://cb.example/qys/x")),
    ("http://127.0.0.1:1/callbacks/a b", Some("http://127.0.0.1:1/callbacks/a%20b")),
    // Other hosts, ports, schemes, prefixes, user-info and fragments: refused.
    ("http://127.0.0.2:1/callbacks/x", None),
    ("http://127.0.0.1:2/callbacks/x", None),
    ("https://127.0.0.1:1/callbacks/x", None),
    ("http://127.0.0.1:1/callbacks-evil/x", None),
    ("http://127.0.0.1:1/CALLBACKS/x", None),
    ("http://127.0.0.1:1@evil.example/callbacks/x", None),
    ("http://u:p@127.0.0.1:1/callbacks/x", None),
    ("http://evil.example\\@127.0.0.1:1/callbacks/x", None),
    ("http://127.0.0.1:1.evil.example/callbacks/x", None),
    ("https://cb.example./qys/x", None),
    ("https://cb.example/qys", None),
    ("https://cb.example/qys/x#frag", None),
    ("http://127.0.0.1:1/callbacks/x#", None),
];

#[tokio::test(flavor = "multi_thread")]
async fn the_platform_gets_the_normalised_callback_url_that_was_checked() {
    let (platform, bodies) = recording_platform().await;
    let stack = Stack::with(Options {
        platform_url: Some(platform),
        callback_allowlist: ALLOWLIST.iter().map(|s| (*s).to_owned()).collect(),
        ..Options::default()
    })
    .await;
    let mut wrong = Vec::new();
    for (i, &(raw, forwarded)) in TABLE.iter().enumerate() {
        for action in ["personalAuth", "enterpriseAuth"] {
            let before = bodies.lock().unwrap().len();
            let params = match action {
                "personalAuth" => json!({"contact": "13700000044", "callbackUrl": raw}),
                _ => json!({"companyName": "甲公司", "companyAuthBean": {
                    "applicant": {"contact": "13700000044"}, "callbackUrl": raw}}),
            };
            let (status, body) = stack.call(action, &state(&format!("c{i}")), params).await;
            let sent = bodies.lock().unwrap()[before..].to_vec();
            let got = match (status, body["code"].as_i64(), sent.as_slice()) {
                (200, Some(0), [one]) => Some(one["callbackUrl"].as_str().unwrap_or("<none>").to_owned()),
                (400, Some(40003), []) => None,
                _ => {
                    wrong.push(format!("{action} {raw:?}: unexpected {status} {body}, {} platform calls", sent.len()));
                    continue;
                }
            };
            if got.as_deref() != forwarded {
                wrong.push(format!("{action} {raw:?}: platform got {got:?}, want {forwarded:?} ({})", body["message"]));
            }
        }
    }
    // Without a callbackUrl the proxy sends its own receiver, tied to the flow.
    let before = bodies.lock().unwrap().len();
    let (_, body) = stack.call("personalAuth", &state("own"), json!({"contact": "13700000044"})).await;
    assert_eq!(body["code"], 0, "{body}");
    let sent = bodies.lock().unwrap()[before]["callbackUrl"].as_str().unwrap().to_owned();
    let (own, flow_token) = sent.split_once("&t=").expect("the flow's sealed token rides along");
    assert_eq!(own, format!("{}/qys/callback/personal-auth?flow={}", stack.proxy, state("own")));
    assert!(!flow_token.is_empty() && !flow_token.contains("13700000044"), "sealed: {flow_token}");
    assert!(wrong.is_empty(), "\n{}", wrong.join("\n"));
}

/// The allow-list as `proxy_config` validates and keeps it.
fn configured(entries: &str) -> Result<Vec<String>, String> {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("db.sqlite3");
    let args = ["qys-proxy", "--database", db.to_str().unwrap(), "--callback-url-allowlist", entries];
    let cli = Cli::try_parse_from(args).unwrap();
    let bound = "127.0.0.1:1".parse().unwrap();
    cli.proxy_config("https://openapi.example", "t", Secret::new("s"), bound, false).map(|c| c.callback_url_allowlist)
}

#[test]
fn allow_list_entries_are_normalised_at_start_up() {
    // Accepted entries are kept in the form requests are compared in.
    for (entries, kept) in [
        ("http://127.0.0.1:1/callbacks", vec!["http://127.0.0.1:1/callbacks"]),
        ("HTTP://127.1:1/callbacks/", vec!["http://127.0.0.1:1/callbacks/"]),
        ("http://１２７.０.０.１:1/cb", vec!["http://127.0.0.1:1/cb"]),
        ("https://CB.example:443", vec!["https://cb.example/"]),
        ("https://cb.example/a/./b/../c", vec!["https://cb.example/a/c"]),
        (" https://a.example/x , ,https://b.example/y", vec!["https://a.example/x", "https://b.example/y"]),
    ] {
        assert_eq!(configured(entries), Ok(kept.into_iter().map(str::to_owned).collect()), "{entries}");
    }
    // Refused entries name the entry and the reason.
    for (entry, why) in [
        ("ftp://cb.example/x", "absolute http(s) URL"),
        ("/callbacks", "absolute http(s) URL"),
        ("https://user@cb.example/x", "user-info"),
        ("https://cb.example/x;p", "';'"),
        ("https://cb.example/x/%2e%2e%2fy", "%2E"),
        ("https://cb.example/x%5c", "%5C"),
        ("https://cb.example/x?a=1", "query"),
        ("https://cb.example/x#f", "fragment"),
    ] {
        let err = configured(entry).unwrap_err();
        assert!(err.contains("QYS_CALLBACK_URL_ALLOWLIST") && err.contains(why), "{entry}: {err}");
    }
}

/// The proxy's own callback URL for a flow with every SDK input at its limit (64-character state,
/// 128 four-byte characters of company name, a 64-character contact of them) started from a
/// 255-byte origin: the platform's delivery to it is stored, not refused as too long (it used to
/// exceed the receivers' 1 KiB); a flow whose URL would exceed what they take is refused at its
/// start, before any platform call (issue 8 follow-up).
#[tokio::test(flavor = "multi_thread")]
async fn the_proxys_own_callback_url_is_one_its_receiver_takes() {
    let (platform, bodies) = recording_platform().await;
    let origin = |len: usize| format!("http://{}.example", "o".repeat(len - "http://.example".len()));
    let stack = Stack::with(Options {
        platform_url: Some(platform),
        allowed_origins: vec![origin(255), origin(1000)],
        ..Options::default()
    })
    .await;
    let state = "S".repeat(64);
    let company = json!({"companyName": "𠀀".repeat(128), "companyAuthBean": {
        "applicant": {"contact": format!("{}@x.cn", "𠀀".repeat(59))}}});
    let envelope = json!({"v": 1, "action": "enterpriseAuth", "state": state, "params": company});
    let (status, body) = stack.send(&origin(255), envelope.clone()).await;
    assert_eq!((status, body["code"].clone()), (200, json!(0)), "{body}");
    let sent = bodies.lock().unwrap().last().unwrap()["callbackUrl"].as_str().unwrap().to_owned();
    let path_query = sent.strip_prefix(&stack.proxy).expect("the proxy's own receiver");
    assert!(path_query.len() - path_query.find('?').unwrap() > 1500, "a long query: {}", path_query.len());
    let delivered = stack
        .client
        .post(format!("{}{path_query}", stack.proxy))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("status=1&actionEvent=7&requestId=long-1")
        .send()
        .await
        .unwrap();
    assert_eq!(delivered.json::<Value>().await.unwrap(), json!({"code": 0}));
    assert_eq!(stack.store.all().unwrap().len(), 1, "stored");

    let calls = bodies.lock().unwrap().len();
    let (status, body) = stack.send(&origin(1000), envelope).await;
    assert_eq!((status, body["code"].clone()), (400, json!(40003)), "{body}");
    assert!(body["message"].as_str().unwrap().contains("callback URL"), "{body}");
    assert_eq!(bodies.lock().unwrap().len(), calls, "no platform call");
}
