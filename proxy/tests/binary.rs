//! The `qys-proxy` binary as an operator runs it: start-up checks, the stand-alone sandbox with a
//! platform-mode proxy in front, the defaults with nothing but a server URL and credentials,
//! restarts, no secret in any response or log line, and untrusted text escaped in the log.

mod common;

use std::process::{Command, Stdio};

use common::binary::{self, Running};
use common::{click, open, posted_message, state, PAGE_ORIGIN};
use serde_json::{json, Value};

const SECRET: &str = "binary-test-secret-8c1e77a9";
const TOKEN: &str = "binary-test-token";

/// The binary with `RUST_LOG=trace`: every log line is checked for secrets.
fn command(args: &[&str], env: &[(&str, &str)]) -> Command {
    binary::command("trace", args, env)
}

/// Starts the binary and waits for the line announcing `label`; stdout and stderr are collected.
fn start(args: &[&str], env: &[(&str, &str)], label: &str) -> Running {
    binary::start("trace", args, env, label)
}

#[test]
fn misconfiguration_stops_start_up_with_what_to_fix() {
    for (env, needle) in [
        (vec![("QYS_SERVER_URL", "https://openapi.qiyuesuo.cn")], "QYS_ACCESS_TOKEN is required"),
        (
            vec![
                ("QYS_SERVER_URL", "https://openapi.qiyuesuo.cn"),
                ("QYS_ACCESS_TOKEN", "t"),
                ("QYS_ACCESS_SECRET", "s"),
                ("QYS_UPSTREAM_MODE", "ticket"),
            ],
            "QYS_PAGE_URL_TEMPLATE is required with QYS_UPSTREAM_MODE=ticket",
        ),
        (vec![("QYS_UPSTREAM_MODE", "tickets")], "invalid value 'tickets' for '--upstream-mode"),
        (vec![("QYS_PAGE_URL_TEMPLATE", "https://h5.example/sdk")], "must be an absolute URL containing {ticket}"),
        (vec![("QYS_MINIPROGRAM_ENV", "Com")], "QYS_MINIPROGRAM_ENV \"Com\" must be one of com, cn, sandbox"),
        (vec![("QYS_MINIPROGRAM_ENV", "")], "QYS_MINIPROGRAM_ENV \"\" must be one of"),
        (vec![("QYS_MINIPROGRAM_ENV", "test")], "QYS_MINIPROGRAM_ENV \"test\" must be one of"),
        (vec![("QYS_SANDBOX_CALLBACK_ORIGINS", "https://shop.example/r")], "QYS_SANDBOX_CALLBACK_ORIGINS entry"),
        (vec![("QYS_SERVER_URL", "ftp://x")], "QYS_SERVER_URL \"ftp://x\" must be an absolute http(s) URL"),
        (vec![("QYS_ALLOWED_ORIGINS", "*")], "must be an exact origin"),
        (vec![("QYS_ALLOWED_ORIGINS", "https://shop.example/path")], "must be an exact origin"),
        (vec![("QYS_ACCESS_SECRET", "a"), ("QYS_ACCESS_SECRET_FILE", "/nonexistent")], "not both"),
        (vec![("QYS_ACCESS_SECRET_FILE", "/nonexistent/secret")], "cannot read QYS_ACCESS_SECRET_FILE"),
        (vec![("QYS_STATE_KEY", "short")], "at least 32 characters"),
        (vec![("QYS_LISTEN", "not-an-address")], "invalid value 'not-an-address' for '--listen"),
        (vec![("QYS_FLOW_START_RATE", "0")], "QYS_FLOW_START_RATE must be greater than 0"),
        (vec![("QYS_TRUSTED_PROXIES", "10.0.0.1/8")], "QYS_TRUSTED_PROXIES entry \"10.0.0.1/8\" has bits set past its prefix"),
        (vec![("QYS_TRUSTED_PROXIES", "nginx.internal")], "QYS_TRUSTED_PROXIES entry \"nginx.internal\" is not an IP address"),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("db.sqlite3");
        let mut all = env.clone();
        all.extend([
            ("QYS_DATABASE", db.to_str().unwrap()),
            ("QYS_LISTEN", "127.0.0.1:0"),
            ("QYS_SANDBOX_LISTEN", "127.0.0.1:0"),
        ]);
        // A variable given twice: the test's value wins (it comes first in `env`).
        let mut seen = std::collections::HashSet::new();
        all.retain(|(k, _)| seen.insert(*k));
        let out = exit_within(command(&[], &all), std::time::Duration::from_secs(20));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{env:?}: {stderr}");
        assert!(stderr.contains(needle), "{env:?}: {stderr}");
    }
}

/// Runs `cmd` to its end; a binary still running after `limit` (it started instead of
/// refusing) is killed and the test fails, rather than hanging.
fn exit_within(mut cmd: Command, limit: std::time::Duration) -> std::process::Output {
    let mut child = cmd.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let started = std::time::Instant::now();
    while child.try_wait().unwrap().is_none() {
        if started.elapsed() > limit {
            child.kill().unwrap();
            let out = child.wait_with_output().unwrap();
            panic!("still running after {limit:?}: {}", String::from_utf8_lossy(&out.stderr));
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    child.wait_with_output().unwrap()
}

fn post(url: &str, origin: &str, action: &str, tag: &str, params: Value) -> (u16, String) {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let response = common::sdk_request(&common::client(), url, origin, action, &state(tag), params).await;
        let status = response.status().as_u16();
        let headers = format!("{:?}", response.headers());
        (status, format!("{headers}\n{}", response.text().await.unwrap()))
    })
}

fn post_callback(url: &str, body: &str) -> String {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        common::client()
            .post(format!("{url}{}", common::signed_callback(SECRET, "/qys/callback/personal-auth?flow=restart")))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body.to_owned())
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    })
}

#[test]
fn standalone_sandbox_behind_a_platform_mode_proxy_never_shows_the_secret() {
    let dir = tempfile::tempdir().unwrap();
    let secret_file = dir.path().join("secret");
    std::fs::write(&secret_file, format!("{SECRET}\n")).unwrap();
    let db = dir.path().join("callbacks.sqlite3");
    let sandbox = start(
        &["sandbox"],
        &[("QYS_ACCESS_TOKEN", TOKEN), ("QYS_ACCESS_SECRET", SECRET), ("QYS_SANDBOX_LISTEN", "127.0.0.1:0")],
        "sandbox platform: ",
    );
    let template = format!("{}/h5?ticket={{ticket}}&callbackPage={{callbackPage}}", sandbox.url);
    let proxy_env = [
        ("QYS_SERVER_URL", sandbox.url.as_str()),
        ("QYS_ACCESS_TOKEN", TOKEN),
        ("QYS_ACCESS_SECRET_FILE", secret_file.to_str().unwrap()),
        ("QYS_PAGE_URL_TEMPLATE", template.as_str()),
        ("QYS_LISTEN", "127.0.0.1:0"),
        ("QYS_ALLOWED_ORIGINS", PAGE_ORIGIN),
        ("QYS_DATABASE", db.to_str().unwrap()),
    ];
    let proxy = start(&[], &proxy_env, "proxy: ");

    let mut seen = String::new();
    let contact = "13700000044";
    let (status, answer) =
        post(&proxy.url, PAGE_ORIGIN, "personalSign", "bin", json!({"contractId": "2603417854124281870", "contact": contact}));
    assert_eq!(status, 200, "{answer}");
    seen.push_str(&answer);
    let body: Value = serde_json::from_str(answer.lines().last().unwrap()).unwrap();
    let page_url = body["result"]["pageUrl"].as_str().unwrap().to_owned();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let done = rt.block_on(async {
        let client = common::client();
        let page = open(&client, &page_url).await;
        seen.push_str(&page.html);
        click(&client, &page, "sign", &[]).await
    });
    seen.push_str(&done.html);
    let (message, _) = posted_message(&done).expect("return page message");
    assert_eq!(message["event"], "signSuccess");
    // Errors of every kind are answered without the secret too.
    for (origin, action, params) in [
        (PAGE_ORIGIN, "personalSign", json!({"contractId": "1", "contact": "13911112222"})),
        ("http://127.0.0.3:1", "personalSign", json!({})),
        (PAGE_ORIGIN, "uniformapi", json!({})),
        (PAGE_ORIGIN, "personalAuth", json!({"contact": "not a contact"})),
    ] {
        seen.push_str(&post(&proxy.url, origin, action, "err", params).1);
    }
    // Server callbacks survive a restart and a retry after it is still recognised.
    assert_eq!(post_callback(&proxy.url, "mode=FACE&status=1"), "{\"code\":0}");
    // Its log up to the callback's line (logged before the answer; read by another thread).
    let first_run = proxy.log_when(|log| log.contains("server callback stored"));
    drop(proxy);
    let proxy = start(&[], &proxy_env, "proxy: ");
    assert_eq!(post_callback(&proxy.url, "mode=FACE&status=1"), "{\"code\":0}");
    let stored = qys_proxy::store::CallbackStore::open(&db).unwrap().all().unwrap();
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].deliveries, 2);

    let second_run = proxy.log_when(|log| log.contains("server callback stored"));
    let logs = format!("{first_run}{second_run}{}", sandbox.log.lock().unwrap());
    assert!(logs.contains("flow started") || logs.contains("server callback stored"), "trace logs were captured");
    assert!(logs.contains("137****0044"), "contacts are masked in logs");
    for (what, text) in [("responses", &seen), ("logs", &logs)] {
        assert!(!text.contains(SECRET), "the secret appears in {what}");
    }
    assert!(!logs.contains(contact), "a full contact appears in the logs");
}

const CONTRACT: &str = "2603417854124281870";

/// `QYS_SERVER_URL`, `QYS_ACCESS_TOKEN` and `QYS_ACCESS_SECRET` are all an operator must set:
/// browser flows then use the page-URL APIs, which take `callbackPage` themselves.
#[test]
fn server_url_and_credentials_alone_serve_every_action_through_the_page_url_apis() {
    let sandbox = start(
        &["sandbox"],
        &[("QYS_ACCESS_TOKEN", TOKEN), ("QYS_ACCESS_SECRET", SECRET), ("QYS_SANDBOX_LISTEN", "127.0.0.1:0")],
        "sandbox platform: ",
    );
    // Besides the three settings only an ephemeral port, so that tests can run side by side;
    // the database lands in the working directory.
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = command(
        &[],
        &[
            ("QYS_SERVER_URL", sandbox.url.as_str()),
            ("QYS_ACCESS_TOKEN", TOKEN),
            ("QYS_ACCESS_SECRET", SECRET),
            ("QYS_LISTEN", "127.0.0.1:0"),
        ],
    );
    cmd.current_dir(dir.path());
    let proxy = binary::start_command(cmd, "proxy: ");
    // The proxy's own origin is always allowed.
    let origin = proxy.url.as_str();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let client = common::client();
        for (action, params, op, event) in [
            ("personalSign", json!({"contractId": CONTRACT, "contact": "13700000044"}), "sign", "signSuccess"),
            ("enterpriseSign", json!({"contractId": CONTRACT, "contact": "13800000055"}), "sign", "signSuccess"),
            ("personalAuth", json!({"mode": "FACE", "contact": "13900000031", "username": "甲", "idCardNo": "1"}), "submit", "authSuccess"),
            (
                "enterpriseAuth",
                json!({"companyName": "绍兴默认公司", "companyAuthBean": {"applicant": {"contact": "13900000032"},
                       "registerNo": "1", "legalPerson": "乙"}}),
                "submit",
                "authSuccess",
            ),
        ] {
            let answer: Value =
                common::sdk_request(&client, &proxy.url, origin, action, &state(action), params).await.json().await.unwrap();
            assert_eq!(answer["code"], 0, "{action}: {answer}");
            let page_url = answer["result"]["pageUrl"].as_str().unwrap();
            assert!(
                page_url.starts_with(&format!("{}/h5?ticket=", sandbox.url)) && !page_url.contains("callbackPage"),
                "{action}: a page-URL API's page, not a filled template: {page_url}"
            );
            let done = click(&client, &open(&client, page_url).await, op, &[]).await;
            assert!(done.url.starts_with(&format!("{}/qys/return?t=", proxy.url)), "{action} ended on {}", done.url);
            let (message, target) = posted_message(&done).expect("return page message");
            assert_eq!((message["event"].as_str(), target.as_str()), (Some(event), Some(origin)), "{action}");
            let flow = answer["result"]["flow"].as_str().unwrap();
            let outcome = json!({"v": 1, "action": "outcome", "state": state(action), "params": {"flow": flow}});
            let outcome: Value = common::send_envelope(&client, &proxy.url, origin, &outcome).await.json().await.unwrap();
            assert_eq!(outcome["result"]["event"], event, "{action}: {outcome}");
        }
        let mini = json!({"v": 1, "action": "personalAuth", "state": state("mini"), "params": {"contact": "13900000033"},
                          "presentation": "miniProgram"});
        let answer: Value = common::send_envelope(&client, &proxy.url, origin, &mini).await.json().await.unwrap();
        let result = &answer["result"];
        assert!(result["ticket"].is_string() && result["flow"].is_string() && result.get("pageUrl").is_none(), "{answer}");
        assert_eq!(result["env"], "com", "a platform host outside .cn is production's plugin environment");
    });
}

/// Text from browsers goes to the log Debug-escaped, and the platform's is screened (line breaks
/// become spaces, other control characters go): neither can forge lines, and the browser gets
/// the platform's message only so cleaned.
#[test]
fn untrusted_text_reaches_the_log_escaped() {
    use axum::routing::any;
    use axum::{Json, Router};
    const FORGED: &str = "NO VIEW\nforged: INFO qys_proxy: flow started \u{1b}[31m";
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    let upstream = rt.block_on(async {
        let router = Router::new().fallback(any(|| async { Json(json!({"code": 1110, "message": FORGED})) }));
        let (listener, url) = common::bind().await;
        qys_proxy::spawn_server(listener, router);
        url
    });
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("db.sqlite3");
    let proxy = start(
        &[],
        &[
            ("QYS_SERVER_URL", upstream.as_str()),
            ("QYS_ACCESS_TOKEN", TOKEN),
            ("QYS_ACCESS_SECRET", SECRET),
            ("QYS_LISTEN", "127.0.0.1:0"),
            ("QYS_ALLOWED_ORIGINS", PAGE_ORIGIN),
            ("QYS_DATABASE", db.to_str().unwrap()),
        ],
        "proxy: ",
    );
    let answers = rt.block_on(async {
        let client = common::client();
        let mut answers = Vec::new();
        for (action, params) in [
            ("personalSign", json!({"contractId": CONTRACT, "contact": "13700000044"})),
            ("evil\nforged: INFO qys_proxy: outcome confirmed", json!({})),
        ] {
            let response = common::sdk_request(&client, &proxy.url, PAGE_ORIGIN, action, &state("log"), params).await;
            answers.push(response.json::<Value>().await.unwrap());
        }
        answers
    });
    // It holds none of our header values, so it passes, on one line and without the escape code.
    const CLEANED: &str = "NO VIEW forged: INFO qys_proxy: flow started [31m";
    assert_eq!((answers[0]["code"].clone(), answers[0]["message"].as_str()), (json!(1110), Some(CLEANED)), "screened");
    assert_eq!(answers[1]["code"], 40002);
    // The escaped action name is in the last line the requests log.
    let log = proxy.log_when(|log| {
        log.contains("platform call failed") && log.contains(CLEANED) && log.contains(r"evil\\nforged")
    });
    assert!(log.contains("platform call failed") && log.contains("refused SDK request"), "{log}");
    assert!(log.contains(CLEANED), "the platform's message, screened: {log}");
    assert!(log.contains(r"evil\\nforged"), "the browser's action name, escaped: {log}");
    assert!(!log.contains("\nforged") && !log.contains('\u{1b}'), "a forged line or escape code in the log: {log}");
}

/// What an operator must hear about: callbacks still waiting to be forwarded while forwarding is
/// off (kept past the retention period); the trusted list in force; forwarding headers from a
/// peer not in `QYS_TRUSTED_PROXIES` (again in each refusal of it over a rate limit, where it
/// explains why all its users are one address), and from one in it, a value that is not an
/// address (escaped) — not once per request.
#[test]
fn the_operator_is_told_of_unforwarded_callbacks_and_of_unheeded_forwarding_headers_once() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("db.sqlite3");
    let store = qys_proxy::store::CallbackStore::open(&db).unwrap().with_forwarding(true);
    for n in 0..2 {
        store.record("personal-auth", &format!("flow={n}"), b"mode=FACE&status=1").unwrap();
    }
    drop(store);
    let proxy = start(
        &[],
        &[
            ("QYS_LISTEN", "127.0.0.1:0"),
            ("QYS_SANDBOX_LISTEN", "127.0.0.1:0"),
            ("QYS_ALLOWED_ORIGINS", PAGE_ORIGIN),
            ("QYS_DATABASE", db.to_str().unwrap()),
            ("QYS_TRUSTED_PROXIES", "127.0.0.2"),
            ("QYS_SDK_RATE", "0.001"),
            ("QYS_SDK_BURST", "2"),
            ("QYS_CALLBACK_RATE", "0.001"),
            ("QYS_CALLBACK_BURST", "4"),
        ],
        "proxy: ",
    );
    // Both start-up lines (which comes first, and whether the reader thread has read the
    // second yet, is not for the test to assume).
    let log = proxy.log_when(|log| log.contains("waiting to be forwarded") && log.contains("name the client only from"));
    assert!(log.contains("2 stored callbacks are waiting to be forwarded, but QYS_FORWARD_URL is not set"), "{log}");
    assert!(log.contains("name the client only from QYS_TRUSTED_PROXIES: 127.0.0.2/32 "), "the list in force: {log}");
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        // 127.0.0.1 is not in the list; 127.0.0.2 is, and sends a value that is not an address.
        // Each is its own loopback peer, whose bucket starts full: 2 flow starts.
        let requests = [("127.0.0.1", "203.0.113.9", 200), ("127.0.0.1", "203.0.113.10", 200), ("127.0.0.2", "unknown\t\"x\"", 200),
                        ("127.0.0.2", "bad", 200), ("127.0.0.1", "203.0.113.11", 429)];
        for (n, (source, forwarded_for, status)) in requests.into_iter().enumerate() {
            let client = reqwest::Client::builder().local_address(source.parse::<std::net::IpAddr>().unwrap()).build().unwrap();
            let envelope = json!({"v": 1, "action": "personalSign", "state": state(&format!("rp{n}")),
                                  "params": {"contractId": CONTRACT, "contact": "13700000044"}});
            let response = client
                .post(format!("{}/qys/proxy", proxy.url))
                .header("origin", PAGE_ORIGIN)
                .header("x-forwarded-for", forwarded_for)
                .form(&[("requestData", envelope.to_string())])
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), status, "{source} {forwarded_for}");
        }
        // Callbacks from the unlisted peer: its burst of 4, then 429.
        for n in 0..5 {
            let response = reqwest::Client::new()
                .post(format!("{}/qys/callback/personal-auth", proxy.url))
                .header("x-forwarded-for", format!("203.0.113.{}", 20 + n))
                .body("mode=FACE&status=1")
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), if n < 4 { 200 } else { 429 }, "callback {n}");
        }
    });
    // All the answers are in: a hint per request would already be logged.
    let log = proxy.log_when(|log| log.matches("answering 429").count() == 2 && log.contains("not an IP address"));
    let lines = |needle: &str| log.lines().filter(|line| line.contains(needle)).collect::<Vec<_>>();
    let hints = lines("not in QYS_TRUSTED_PROXIES");
    assert_eq!(hints.len(), 3, "the hint, then in the two refusals: {log}");
    assert!(hints.iter().all(|line| line.contains("add it (or its subnet) to QYS_TRUSTED_PROXIES")), "{log}");
    assert_eq!(hints.iter().filter(|line| !line.contains("answering 429")).count(), 1, "hinted once: {log}");
    assert!(hints[0].contains("peer=127.0.0.1"), "{log}");
    let refusals = lines("answering 429");
    assert!(refusals.iter().any(|line| line.contains("QYS_SDK_RATE")) && refusals.iter().any(|line| line.contains("QYS_CALLBACK_RATE")), "{log}");
    assert!(refusals.iter().all(|line| line.contains("source=Some(127.0.0.1)")), "{log}");
    assert!(!log.contains("203.0.113."), "an untrusted header's value: {log}");
    assert_eq!(log.matches("that is not an IP address").count(), 1, "{log}");
    assert!(log.contains(r#"value="unknown\t\"x\"""#) && log.contains("peer=127.0.0.2"), "escaped: {log}");
}

/// `QYS_CONFIRM_RATE=1` with forwarding used to stop start-up: a configuration that started before
/// an upgrade still starts, run as 2 (at 1 the forwarder keeps no call for the return page), and
/// says so.
#[test]
fn confirm_rate_1_with_forwarding_is_run_as_2_and_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("db.sqlite3");
    let proxy = start(
        &[],
        &[
            ("QYS_LISTEN", "127.0.0.1:0"),
            ("QYS_SANDBOX_LISTEN", "127.0.0.1:0"),
            ("QYS_DATABASE", db.to_str().unwrap()),
            ("QYS_CONFIRM_RATE", "1"),
            ("QYS_FORWARD_URL", "http://127.0.0.1:1/callbacks"),
            ("QYS_FORWARD_SECRET", "forward-secret-at-least-32-characters"),
        ],
        "proxy: ",
    );
    let log = proxy.log_when(|log| log.contains("QYS_CONFIRM_RATE=1 is run as 2"));
    assert!(log.contains("Set QYS_CONFIRM_RATE=2 (or more) to silence this warning"), "{log}");
}
