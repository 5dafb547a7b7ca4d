//! The `qys-proxy` binary as an operator runs it: start-up checks, the stand-alone sandbox with a
//! platform-mode proxy in front, restarts, and no secret in any response or log line.

mod common;

use std::io::{BufRead, BufReader, Read};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};

use common::{click, open, posted_message, state, PAGE_ORIGIN};
use serde_json::{json, Value};

const SECRET: &str = "binary-test-secret-8c1e77a9";
const TOKEN: &str = "binary-test-token";

struct Running {
    child: Child,
    url: String,
    log: Arc<Mutex<String>>,
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn command(args: &[&str], env: &[(&str, &str)]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_qys-proxy"));
    cmd.args(args).env_clear().env("RUST_LOG", "trace");
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd
}

/// Starts the binary and waits for the line announcing `label`; stdout and stderr are collected.
fn start(args: &[&str], env: &[(&str, &str)], label: &str) -> Running {
    let mut child = command(args, env).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let log = Arc::new(Mutex::new(String::new()));
    let mut stderr = child.stderr.take().unwrap();
    let err_log = log.clone();
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = stderr.read(&mut buf) {
            if n == 0 {
                break;
            }
            err_log.lock().unwrap().push_str(&String::from_utf8_lossy(&buf[..n]));
        }
    });
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let url = loop {
        let line = lines.next().expect("binary announces its URLs").unwrap();
        log.lock().unwrap().push_str(&line);
        if let Some(rest) = line.strip_prefix(label) {
            break rest.split_whitespace().next().unwrap().to_owned();
        }
    };
    let out_log = log.clone();
    std::thread::spawn(move || {
        for line in lines.map_while(Result::ok) {
            out_log.lock().unwrap().push_str(&line);
        }
    });
    Running { child, url, log }
}

#[test]
fn misconfiguration_stops_start_up_with_what_to_fix() {
    for (env, needle) in [
        (vec![("QYS_SERVER_URL", "https://openapi.qiyuesuo.cn")], "QYS_ACCESS_TOKEN is required"),
        (
            vec![("QYS_SERVER_URL", "https://openapi.qiyuesuo.cn"), ("QYS_ACCESS_TOKEN", "t"), ("QYS_ACCESS_SECRET", "s")],
            "QYS_PAGE_URL_TEMPLATE is required",
        ),
        (vec![("QYS_SERVER_URL", "ftp://x")], "QYS_SERVER_URL \"ftp://x\" must be an absolute http(s) URL"),
        (vec![("QYS_ALLOWED_ORIGINS", "*")], "must be an exact origin"),
        (vec![("QYS_ALLOWED_ORIGINS", "https://shop.example/path")], "must be an exact origin"),
        (vec![("QYS_ACCESS_SECRET", "a"), ("QYS_ACCESS_SECRET_FILE", "/nonexistent")], "not both"),
        (vec![("QYS_ACCESS_SECRET_FILE", "/nonexistent/secret")], "cannot read QYS_ACCESS_SECRET_FILE"),
        (vec![("QYS_STATE_KEY", "short")], "at least 32 characters"),
        (vec![("QYS_LISTEN", "not-an-address")], "invalid value 'not-an-address' for '--listen"),
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
        let out = command(&[], &all).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{env:?}: {stderr}");
        assert!(stderr.contains(needle), "{env:?}: {stderr}");
    }
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
            .post(format!("{url}/qys/callback/personal-auth?flow=restart"))
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
    std::thread::sleep(std::time::Duration::from_millis(200));
    let first_run = proxy.log.lock().unwrap().clone();
    drop(proxy);
    let proxy = start(&[], &proxy_env, "proxy: ");
    assert_eq!(post_callback(&proxy.url, "mode=FACE&status=1"), "{\"code\":0}");
    let stored = qys_proxy::store::CallbackStore::open(&db).unwrap().all().unwrap();
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].deliveries, 2);

    std::thread::sleep(std::time::Duration::from_millis(200));
    let logs = format!("{first_run}{}{}", proxy.log.lock().unwrap(), sandbox.log.lock().unwrap());
    assert!(logs.contains("page URL issued") || logs.contains("server callback stored"), "trace logs were captured");
    assert!(logs.contains("137****0044"), "contacts are masked in logs");
    for (what, text) in [("responses", &seen), ("logs", &logs)] {
        assert!(!text.contains(SECRET), "the secret appears in {what}");
    }
    assert!(!logs.contains(contact), "a full contact appears in the logs");
}
