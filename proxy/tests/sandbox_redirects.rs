//! Where the sandbox's hosted pages send the browser when they finish (issue 8 item 4), over real
//! HTTP: `/h5` follows a `callbackPage` (from the page URL in ticket mode, from the signed API body
//! in page-URL mode) only when its origin is one of the sandbox's callback origins, and then to
//! exactly that URL; anything else finishes on the sandbox's own "完成" page. The real-name step's
//! redirect stays on the sandbox, the plugin pages never redirect, and the binary's embedded
//! sandbox redirects to the proxy alone.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::{bind, client, open, SECRET, TOKEN};
use qys_proxy::platform::Platform;
use qys_proxy::sandbox::world::Fixtures;
use qys_proxy::sandbox::{self, CallbackOrigins, SandboxConfig};
use qys_proxy::{spawn_server, Secret};
use serde_json::{json, Value};

/// The origin the sandbox allows in most tests (nothing listens there: no test follows it).
const ALLOWED_ORIGIN: &str = "http://127.0.0.1:1";
/// A page on it, as a proxy's return page would be.
const ALLOWED: &str = "http://127.0.0.1:1/qys/return?t=abc.def&x=1";

/// callbackPages no sandbox may follow when [`ALLOWED_ORIGIN`] is its only callback origin.
const HOSTILE: &[&str] = &[
    "https://evil.test/",
    "//evil.test",
    "//evil.test/qys/return",
    "javascript:alert(1)",
    "http://user@127.0.0.1:1/",
    "http://:pw@127.0.0.1:1/",
    "http://127.0.0.1:2/qys/return",
    "https://127.0.0.1:1/",
    "http://localhost:1/",
    "http:\\\\evil.test/",
    "/\\evil.test/",
    "data:text/html,<script>alert(1)</script>",
    "http://127.0.0.1:1.evil.test/",
];

/// Contracts with one real-named personal signatory each, so that every case can sign.
const CONTRACTS: usize = 64;
const SIGNER: &str = "13700000044";
const UNNAMED_CONTRACT: &str = "2603417854124281871";
const UNNAMED_SIGNER: &str = "13900000066";

fn contract_id(i: usize) -> String {
    format!("26034178541240{i:05}")
}

fn fixtures() -> Fixtures {
    let mut contracts: Vec<Value> = (0..CONTRACTS)
        .map(|i| {
            json!({"id": contract_id(i), "subject": "测试合同", "signatories": [
                {"tenantType": "PERSONAL", "tenantName": "张三", "contact": SIGNER}
            ]})
        })
        .collect();
    contracts.push(json!({"id": UNNAMED_CONTRACT, "subject": "未实名", "signatories": [
        {"tenantType": "PERSONAL", "tenantName": "王五", "contact": UNNAMED_SIGNER}
    ]}));
    serde_json::from_value(json!({
        "contracts": contracts,
        "persons": [{"contact": SIGNER, "username": "张三", "idCardNo": "110101199001011234", "realName": true}],
    }))
    .unwrap()
}

/// A sandbox alone and a client for its signed APIs.
struct Sandbox {
    url: String,
    platform: Platform,
    http: reqwest::Client,
    next_contract: std::sync::atomic::AtomicUsize,
    next_company: std::sync::atomic::AtomicUsize,
}

/// How a page finished, read without following any redirect.
#[derive(Debug)]
struct Finished {
    status: u16,
    location: Option<String>,
    html: String,
}

impl Finished {
    /// Finished on the sandbox's own page, with the outcome's text and the note.
    fn assert_not_redirected(&self, outcome: &str, case: &str) {
        assert_eq!((self.status, &self.location), (200, &None), "{case}: {}", self.html);
        assert!(self.html.contains("<h1>完成</h1>") && self.html.contains(outcome), "{case}: {}", self.html);
        assert!(self.html.contains("Not redirected to callbackPage"), "{case}: {}", self.html);
    }

    fn assert_redirected_to(&self, url: &str, case: &str) {
        assert_eq!((self.status, self.location.as_deref()), (303, Some(url)), "{case}: {}", self.html);
    }
}

/// The operations that finish a page, each on a new session: `(name, outcome text)`.
const FINISHES: &[(&str, &str)] = &[
    ("sign", "签署成功"),
    ("personal submit", "认证成功"),
    ("personal exit", "已退出认证"),
    ("company submit", "认证成功"),
    ("company close", "已关闭"),
];

impl Sandbox {
    async fn start(origins: CallbackOrigins) -> Self {
        let (listener, url) = bind().await;
        let mut cfg = SandboxConfig::new(TOKEN.into(), Secret::new(SECRET), url.clone());
        cfg.fixtures = fixtures();
        cfg.callback_origins = origins;
        spawn_server(listener, sandbox::router(cfg));
        let platform = Platform::new(&url, TOKEN, Secret::new(SECRET), Duration::from_secs(5), Duration::from_secs(15));
        Sandbox { url, platform, http: client(), next_contract: 0.into(), next_company: 0.into() }
    }

    async fn allowing(origin: &str) -> Self {
        Self::start(CallbackOrigins::exact([origin]).unwrap()).await
    }

    /// A request body for `what`, with `callbackPage` when given.
    fn body(&self, what: &str, callback_page: Option<&str>) -> Value {
        use std::sync::atomic::Ordering::Relaxed;
        let mut body = match what {
            "sign" => {
                let i = self.next_contract.fetch_add(1, Relaxed);
                assert!(i < CONTRACTS, "more signing cases than fixture contracts");
                json!({"contractId": contract_id(i), "user": {"contact": SIGNER, "contactType": "MOBILE"}})
            }
            "unnamed sign" => {
                json!({"contractId": UNNAMED_CONTRACT, "user": {"contact": UNNAMED_SIGNER, "contactType": "MOBILE"}})
            }
            "personal" => json!({
                "mode": "IVS", "username": "韩梅梅", "idCardNo": "110101199404044567",
                "user": {"contact": "13900000021", "contactType": "MOBILE"}
            }),
            "company" => {
                let i = self.next_company.fetch_add(1, Relaxed);
                json!({
                    "companyName": format!("杭州回跳测试{i}有限公司"), "registerNo": "91330100MA2B000001",
                    "legalPerson": "钱七", "applicant": {"name": "孙八", "contact": "13900000009", "contactType": "MOBILE"}
                })
            }
            other => panic!("{other}"),
        };
        if let Some(page) = callback_page {
            body["callbackPage"] = page.into();
        }
        body
    }

    /// Ticket mode: a ticket from the `miniappexchange` API for `what`.
    async fn ticket(&self, what: &str, callback_page: Option<&str>) -> String {
        let path = match what {
            "sign" | "unnamed sign" => "/v2/contract/miniappexchange",
            "personal" => "/v2/personalauth/miniappexchange",
            _ => "/companyauth/miniappexchange",
        };
        let result = self.platform.post(path, &self.body(what, callback_page)).await.unwrap();
        result["ticket"].as_str().unwrap().to_owned()
    }

    /// Page-URL mode: the page URL the API gives for `what`, `callbackPage` in the signed body.
    async fn page_url(&self, what: &str, callback_page: &str) -> String {
        let (path, key) = match what {
            "sign" => ("/v2/contract/pageurl", "pageUrl"),
            "personal" => ("/v2/personalauth", "authUrl"),
            _ => ("/companyauth/h5page", "authUrl"),
        };
        let result = self.platform.post(path, &self.body(what, Some(callback_page))).await.unwrap();
        result[key].as_str().unwrap().to_owned()
    }

    /// The `/h5` URL of a ticket, with `callbackPage` on it as ticket mode passes it.
    fn h5(&self, ticket: &str, callback_page: &str) -> String {
        let query = form_urlencoded::Serializer::new(String::new())
            .append_pair("ticket", ticket)
            .append_pair("callbackPage", callback_page)
            .finish();
        format!("{}/h5?{query}", self.url)
    }

    /// Opens `url`, submits its form with `op` and returns the answer without following it.
    async fn press(&self, url: &str, op: &str) -> Finished {
        let page = open(&self.http, url).await;
        assert_eq!(page.status, 200, "{url}: {}", page.html);
        let (action, mut form) = form_of(&page.html);
        form.push(("op".into(), op.into()));
        let response = self.http.post(format!("{}{action}", self.url)).form(&form).send().await.unwrap();
        let status = response.status().as_u16();
        let location = response.headers().get("location").map(|l| l.to_str().unwrap().to_owned());
        Finished { status, location, html: response.text().await.unwrap() }
    }

    /// Runs the finish `name` on a new ticket-mode session whose page URL carries `callback_page`.
    async fn finish_ticket_mode(&self, name: &str, callback_page: &str) -> Finished {
        let (what, op) = split(name);
        let ticket = self.ticket(what, None).await;
        self.press(&self.h5(&ticket, callback_page), op).await
    }

    /// Runs the finish `name` on a new page-URL-mode session with `callback_page` in its body.
    async fn finish_page_url_mode(&self, name: &str, callback_page: &str) -> Finished {
        let (what, op) = split(name);
        let url = self.page_url(what, callback_page).await;
        self.press(&url, op).await
    }
}

/// `"personal exit"` → `("personal", "exit")`; `"sign"` → `("sign", "sign")`.
fn split(name: &str) -> (&str, &str) {
    name.split_once(' ').unwrap_or((name, name))
}

fn between<'a>(s: &'a str, start: &str, end: &str) -> Option<&'a str> {
    let from = s.find(start)? + start.len();
    let rest = &s[from..];
    Some(&rest[..rest.find(end)?])
}

/// The form's action and hidden inputs.
fn form_of(html: &str) -> (String, Vec<(String, String)>) {
    let action = between(html, "<form method=post action=", ">").expect("a form").to_owned();
    let unescape = |s: &str| {
        s.replace("&quot;", "\"").replace("&#39;", "'").replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")
    };
    let hidden = html
        .split("<input type=hidden ")
        .skip(1)
        .map(|part| (between(part, "name=", " ").unwrap().to_owned(), unescape(between(part, "value=\"", "\"").unwrap())))
        .collect();
    (action, hidden)
}

#[tokio::test(flavor = "multi_thread")]
async fn ticket_mode_follows_only_a_callback_page_on_an_allowed_origin() {
    let sb = Sandbox::allowing(ALLOWED_ORIGIN).await;
    for &(name, outcome) in FINISHES {
        for &hostile in HOSTILE {
            let finished = sb.finish_ticket_mode(name, hostile).await;
            finished.assert_not_redirected(outcome, &format!("{name} with callbackPage {hostile:?}"));
        }
        sb.finish_ticket_mode(name, ALLOWED).await.assert_redirected_to(ALLOWED, name);
        // The scheme in capitals: the URL sent is the one checked, WHATWG-serialised.
        let spelled = "http://127.0.0.1:1/qys/return?t=abc.def";
        sb.finish_ticket_mode(name, "HTTP://127.0.0.1:1/qys/return?t=abc.def").await.assert_redirected_to(spelled, name);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn page_url_mode_checks_the_signed_bodys_callback_page_too() {
    let sb = Sandbox::allowing(ALLOWED_ORIGIN).await;
    for &(name, outcome) in FINISHES {
        for hostile in ["https://evil.test/", "http://user@127.0.0.1:1/", "http://127.0.0.1:2/", "javascript:alert(1)"] {
            let finished = sb.finish_page_url_mode(name, hostile).await;
            finished.assert_not_redirected(outcome, &format!("{name} with callbackPage {hostile:?} in the body"));
        }
        sb.finish_page_url_mode(name, ALLOWED).await.assert_redirected_to(ALLOWED, name);
    }

    // The body's callbackPage wins: an allowed one added to the page URL does not rescue it.
    let url = sb.page_url("personal", "https://evil.test/").await;
    let url = format!("{url}&callbackPage={}", form_urlencoded::byte_serialize(ALLOWED.as_bytes()).collect::<String>());
    sb.press(&url, "exit").await.assert_not_redirected("已退出认证", "body's hostile callbackPage");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_default_allows_http_loopback_only() {
    let default = SandboxConfig::new(TOKEN.into(), Secret::new(SECRET), String::new()).callback_origins;
    assert_eq!(default, CallbackOrigins::default());
    let sb = Sandbox::start(default).await;
    for allowed in ["http://127.0.0.1:1/r?x=1", "http://127.9.9.9:65535/", "http://localhost:8080/qys/return", "http://[::1]:9/"] {
        sb.finish_ticket_mode("personal exit", allowed).await.assert_redirected_to(allowed, allowed);
    }
    for refused in [
        "https://evil.test/",
        "//evil.test",
        "javascript:alert(1)",
        "http://user@127.0.0.1:1/",
        "https://127.0.0.1/",
        "http://localhost.evil.test/",
        "http://10.0.0.1/",
    ] {
        sb.finish_ticket_mode("personal exit", refused).await.assert_not_redirected("已退出认证", refused);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_real_name_steps_redirect_stays_on_the_sandbox() {
    let sb = Sandbox::allowing(ALLOWED_ORIGIN).await;
    let ticket = sb.ticket("unnamed sign", None).await;
    let page = open(&sb.http, &sb.h5(&ticket, "https://evil.test/")).await;
    let (action, mut form) = form_of(&page.html);
    form.extend([("op", "auth"), ("username", "王五"), ("idCardNo", "110101199202023456")].map(|(k, v)| (k.into(), v.into())));
    let response = sb.http.post(format!("{}{action}", sb.url)).form(&form).send().await.unwrap();
    assert_eq!(response.status(), 303);
    let back = response.headers()["location"].to_str().unwrap().to_owned();
    assert!(back.starts_with("/h5?ticket=") && !back.starts_with("//"), "a path on the sandbox: {back}");
    let signing = open(&sb.http, &format!("{}{back}", sb.url)).await;
    assert!(signing.html.contains("id=qys-sandbox-sign"), "{}", signing.html);

    // The callbackPage it carried along is still checked when the page finishes.
    let url = format!("{}{back}", sb.url);
    sb.press(&url, "sign").await.assert_not_redirected("签署成功", "after the real-name step");
}

#[tokio::test(flavor = "multi_thread")]
async fn plugin_pages_never_redirect() {
    let sb = Sandbox::allowing(ALLOWED_ORIGIN).await;
    for (what, page, op) in [
        ("sign", "doc", "sign"),
        ("personal", "personal-auth", "submit"),
        ("personal", "personal-auth", "exit"),
        ("company", "enterprise-auth", "close"),
    ] {
        // Even an allowed callbackPage, in the body and on the URL.
        let ticket = sb.ticket(what, Some(ALLOWED)).await;
        let query = form_urlencoded::Serializer::new(String::new())
            .append_pair("ticket", &ticket)
            .append_pair("env", "sandbox")
            .append_pair("callbackPage", ALLOWED)
            .finish();
        let finished = sb.press(&format!("{}/plugin/{page}?{query}", sb.url), op).await;
        assert_eq!((finished.status, &finished.location), (200, &None), "{page} {op}: {}", finished.html);
        assert!(finished.html.contains("id=qys-sandbox-plugin-done"), "{page} {op}: {}", finished.html);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_large_form_is_refused_before_it_is_read() {
    let sb = Sandbox::allowing(ALLOWED_ORIGIN).await;
    let post = |padding: usize| {
        let form = [("ticket", "t".to_owned()), ("op", "sign".to_owned()), ("pad", "x".repeat(padding))];
        sb.http.post(format!("{}/h5/action", sb.url)).form(&form).send()
    };
    assert_eq!(post(32 * 1024).await.unwrap().status(), 413, "32 KiB");
    let small = post(1024).await.unwrap();
    assert_ne!(small.status(), 413, "a small form is read (and refused for its unknown ticket)");
    assert_eq!(sandbox::BODY_MAX, 16 * 1024);
}

/// The binary's embedded sandbox: it redirects to the proxy's origin, and not to another loopback
/// origin (which the stand-alone sandbox's default would allow).
#[test]
fn the_embedded_sandbox_redirects_to_the_proxy_only() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("db.sqlite3");
    let mut child = Command::new(env!("CARGO_BIN_EXE_qys-proxy"))
        .env_clear()
        .envs([
            ("QYS_ACCESS_TOKEN", TOKEN),
            ("QYS_ACCESS_SECRET", SECRET),
            ("QYS_LISTEN", "127.0.0.1:0"),
            ("QYS_SANDBOX_LISTEN", "127.0.0.1:0"),
            ("QYS_DATABASE", db.to_str().unwrap()),
            ("QYS_WWW_DIR", "/nonexistent"),
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    struct Kill(std::process::Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let stdout = child.stdout.take().unwrap();
    let _child = Kill(child);
    let (mut sandbox_url, mut proxy_url) = (None, None);
    for line in BufReader::new(stdout).lines().map_while(Result::ok) {
        if let Some(url) = line.strip_prefix("sandbox platform: ") {
            sandbox_url = Some(url.to_owned());
        }
        if let Some(rest) = line.strip_prefix("proxy: ") {
            proxy_url = Some(rest.split_whitespace().next().unwrap().to_owned());
            break;
        }
    }
    let (sandbox_url, proxy_url) = (sandbox_url.expect("sandbox announced"), proxy_url.expect("proxy announced"));

    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let platform =
            Platform::new(&sandbox_url, TOKEN, Secret::new(SECRET), Duration::from_secs(5), Duration::from_secs(15));
        let sb = Sandbox { url: sandbox_url, platform, http: client(), next_contract: 0.into(), next_company: 0.into() };
        let to_proxy = format!("{proxy_url}/qys/return?t=abc.def");
        sb.finish_ticket_mode("personal exit", &to_proxy).await.assert_redirected_to(&to_proxy, "the proxy");
        let proxy_port: u16 = proxy_url.rsplit(':').next().unwrap().parse().unwrap();
        let other_port = if proxy_port == 65535 { 65534 } else { proxy_port + 1 };
        for refused in [format!("http://127.0.0.1:{other_port}/qys/return"), "http://localhost/".into(), "https://evil.test/".into()] {
            sb.finish_ticket_mode("personal exit", &refused).await.assert_not_redirected("已退出认证", &refused);
        }
    });
}
