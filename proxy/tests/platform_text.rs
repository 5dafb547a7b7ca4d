//! The platform's text is screened before it reaches a browser or the log (issue 8, item 6): the
//! `qys-proxy` binary in front of a platform that echoes the request's signing headers into its
//! `message`, plainly and encoded, as a platform (or anything on its path) might.

mod common;

use std::sync::{Arc, Mutex};

use axum::extract::Request;
use axum::routing::any;
use axum::{Json, Router};
use common::binary::{self, Running};
use common::{state, PAGE_ORIGIN};
use qys_proxy::platform::{our_message, TEXT_MAX};
use serde_json::{json, Value};

const SECRET: &str = "platform-text-secret-31c9d2";
const TOKEN: &str = "Platform-Text-Token-7f3a";
const CONTRACT: &str = "2603417854124281870";

/// What the echoing platform answers next: `(code, message template)`. The template's
/// `{token}`, `{TOKEN}`, `{timestamp}`, `{nonce}`, `{nonce%}`, `{signature}`, `{SIGNATURE}`,
/// `{token\u}` and `{headers}` become the request's values (as sent, upper-cased,
/// percent-encoded, JSON-escaped, or all four headers as JSON text). Code 0 is a success.
type Reply = Arc<Mutex<(i64, String)>>;

/// Every signing header value the platform received.
type Seen = Arc<Mutex<Vec<String>>>;

async fn echoing_platform() -> (String, Reply, Seen) {
    let reply: Reply = Arc::new(Mutex::new((0, String::new())));
    let seen: Seen = Arc::default();
    let (next, log) = (reply.clone(), seen.clone());
    let router = Router::new().fallback(any(move |request: Request| {
        let (next, log) = (next.clone(), log.clone());
        async move {
            let header = |name: &str| request.headers()[name].to_str().unwrap().to_owned();
            let token = header("x-qys-open-accesstoken");
            let timestamp = header("x-qys-open-timestamp");
            let nonce = header("x-qys-open-nonce");
            let signature = header("x-qys-open-signature");
            log.lock().unwrap().extend([token.clone(), timestamp.clone(), nonce.clone(), signature.clone()]);
            let (code, template) = next.lock().unwrap().clone();
            if code == 0 {
                let url = "http://127.0.0.1:1/page";
                return Json(json!({"code": 0, "message": "SUCCESS", "result": {"pageUrl": url, "authUrl": url, "ticket": "t"}}));
            }
            let escaped: String = token.chars().map(|c| format!("\\u{:04x}", c as u32)).collect();
            let headers = json!({"x-qys-open-accesstoken": token, "x-qys-open-timestamp": timestamp,
                                 "x-qys-open-nonce": nonce, "x-qys-open-signature": signature});
            let message = template
                .replace("{token}", &token)
                .replace("{TOKEN}", &token.to_uppercase())
                .replace("{timestamp}", &timestamp)
                .replace("{nonce%}", &nonce.replace('-', "%2D"))
                .replace("{nonce}", &nonce)
                .replace("{signature}", &signature)
                .replace("{SIGNATURE}", &signature.to_uppercase())
                .replace("{token\\u}", &escaped)
                .replace("{headers}", &headers.to_string());
            Json(json!({"code": code, "message": message}))
        }
    }));
    let (listener, url) = common::bind().await;
    qys_proxy::spawn_server(listener, router);
    (url, reply, seen)
}

/// The binary in front of `platform`, logging everything (`RUST_LOG=trace`) to a buffer.
fn start_proxy(platform: &str) -> Running {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("db.sqlite3");
    let env = [
        ("QYS_SERVER_URL", platform),
        ("QYS_ACCESS_TOKEN", TOKEN),
        ("QYS_ACCESS_SECRET", SECRET),
        ("QYS_LISTEN", "127.0.0.1:0"),
        ("QYS_ALLOWED_ORIGINS", PAGE_ORIGIN),
        ("QYS_DATABASE", db.to_str().unwrap()),
    ];
    binary::start("trace", &[], &env, "proxy: ").keep(dir)
}

/// `(status, body text)` of an SDK request.
async fn sdk(client: &reqwest::Client, proxy: &str, envelope: Value) -> (u16, String) {
    let response = common::send_envelope(client, proxy, PAGE_ORIGIN, &envelope).await;
    (response.status().as_u16(), response.text().await.unwrap())
}

fn sign_flow(tag: &str) -> Value {
    json!({"v": 1, "action": "personalSign", "state": state(tag), "params": {"contractId": CONTRACT, "contact": "13700000044"}})
}

/// Echoes of our headers, as `(code, message template)`.
const ECHOES: [(i64, &str); 6] = [
    (442, "INVALID TOKEN: {token}"),
    (1110, "NO VIEW PERMISSION sig={SIGNATURE} token={TOKEN}"),
    (1101, "INVALID CONTRACT STATUS nonce={nonce%}"),
    (1605, "COMPANY ALREADY AUTHED {token\\u}"),
    (1110, "NO VIEW PERMISSION at {timestamp}"),
    (9999, "request was {headers}"),
];

#[test]
fn the_platform_echoing_our_headers_reaches_neither_the_browser_nor_the_log() {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let (platform, reply, seen) = rt.block_on(echoing_platform());
    let proxy = start_proxy(&platform);
    let set = |code: i64, template: &str| *reply.lock().unwrap() = (code, template.to_owned());
    let mut shown = String::new();
    rt.block_on(async {
        let client = common::client();
        // Flow requests: the browser gets our message for the code, and the code.
        for (i, (code, template)) in ECHOES.iter().enumerate() {
            set(*code, template);
            let (status, body) = sdk(&client, &proxy.url, sign_flow(&format!("echo{i}"))).await;
            let answer: Value = serde_json::from_str(&body).unwrap();
            assert_eq!(status, 200, "{template}");
            assert_eq!(answer, json!({"code": code, "message": our_message(*code)}), "{template}");
            shown.push_str(&body);
        }
        // `outcome`'s confirmations (the return page's too: one code path) likewise.
        for (i, (code, template)) in ECHOES.iter().enumerate() {
            set(0, "");
            let tag = format!("later{i}");
            let (_, body) = sdk(&client, &proxy.url, sign_flow(&tag)).await;
            let flow = serde_json::from_str::<Value>(&body).unwrap()["result"]["flow"].as_str().unwrap().to_owned();
            set(*code, template);
            let outcome = json!({"v": 1, "action": "outcome", "state": state(&tag), "params": {"flow": flow}});
            let (status, body) = sdk(&client, &proxy.url, outcome).await;
            assert_eq!((status, serde_json::from_str::<Value>(&body).unwrap()), (200, json!({"code": code, "message": our_message(*code)})));
            shown.push_str(&body);
        }
        // A plain message still passes, as it was.
        set(1101, "INVALID CONTRACT STATUS");
        let (_, body) = sdk(&client, &proxy.url, sign_flow("plain")).await;
        assert_eq!(serde_json::from_str::<Value>(&body).unwrap(), json!({"code": 1101, "message": "INVALID CONTRACT STATUS"}));
        // Control characters go, and the length is bounded.
        set(1110, &format!("NO VIEW\r\nPERMISSION\u{1b}[2J\u{202e}{}", "长".repeat(5_000)));
        let (_, body) = sdk(&client, &proxy.url, sign_flow("long")).await;
        let message = serde_json::from_str::<Value>(&body).unwrap()["message"].as_str().unwrap().to_owned();
        assert!(message.starts_with("NO VIEW  PERMISSION[2J长长"), "{message}");
        assert!(!message.chars().any(|c| c.is_control() || c == '\u{202e}'), "{message:?}");
        assert_eq!(message.chars().count(), TEXT_MAX + 1, "cut, with …");
    });
    // The last request's line, and the lines asserted on.
    let log = proxy.log_when(|log| {
        log.contains("INVALID TOKEN: [redacted]")
            && log.contains("request was {")
            && log.contains("could not confirm the outcome")
            && log.contains("PERMISSION[2J")
    });
    assert!(log.contains("INVALID TOKEN: [redacted]"), "the log keeps the rest of the platform's text: {log}");
    assert!(log.contains("request was {") && log.contains("could not confirm the outcome"), "{log}");
    let seen = seen.lock().unwrap().clone();
    assert!(seen.len() >= 4 * 3 * ECHOES.len(), "the platform saw our headers");
    for value in seen.iter().map(String::as_str).chain([TOKEN, SECRET]) {
        let value = value.to_ascii_lowercase();
        assert!(!shown.to_ascii_lowercase().contains(&value), "a signing value reached the browser: {value}\n{shown}");
        assert!(!log.to_ascii_lowercase().contains(&value), "a signing value reached the log: {value}\n{log}");
    }
    assert!(!log.contains('\u{1b}') && !log.contains('\u{202e}'), "control characters in the log");
}
