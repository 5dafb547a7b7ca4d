//! The sandbox's emulation of the 契约锁 mini-program plugin pages, over real HTTP: tickets from the
//! signed seed 000–003 APIs, `GET /plugin/<page>?ticket=…&env=sandbox&hasCb=true`, its form
//! `POST /plugin/action`, the final page's `#qys-sandbox-plugin-done[data-event]`, and the outcome
//! read back through the platform's result APIs.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::routing::post;
use axum::{Form, Json, Router};
use common::{bind, client, open, Page, SECRET, TOKEN};
use qys_proxy::platform::Platform;
use qys_proxy::sandbox::{self, SandboxConfig};
use qys_proxy::{spawn_server, Secret};
use serde_json::{json, Value};

const CONTRACT: &str = "2603417854124281870";
const SIGNER: &str = "13700000044";
/// Contract whose only signatory (`13900000066`) is not real-named.
const UNNAMED_CONTRACT: &str = "2603417854124281871";
const UNNAMED_SIGNER: &str = "13900000066";

type Received = Arc<Mutex<Vec<Vec<(String, String)>>>>;

/// A sandbox alone, a signing client for its APIs, and a server-callback receiver.
struct Sandbox {
    url: String,
    platform: Platform,
    http: reqwest::Client,
    callback_url: String,
    received: Received,
}

impl Sandbox {
    async fn start() -> Self {
        Self::with_ttl(Duration::from_secs(30 * 60)).await
    }

    async fn with_ttl(session_ttl: Duration) -> Self {
        let (listener, url) = bind().await;
        let mut cfg = SandboxConfig::new(TOKEN.into(), Secret::new(SECRET), url.clone());
        cfg.callback_retry_delay = Duration::from_millis(200);
        cfg.session_ttl = session_ttl;
        spawn_server(listener, sandbox::router(cfg));

        let received = Received::default();
        let sink = received.clone();
        let receiver = Router::new().route(
            "/cb",
            post(move |Form(form): Form<Vec<(String, String)>>| {
                let sink = sink.clone();
                async move {
                    sink.lock().unwrap().push(form);
                    Json(json!({"code": 0}))
                }
            }),
        );
        let (cb_listener, cb_url) = bind().await;
        spawn_server(cb_listener, receiver);

        let platform = Platform::new(&url, TOKEN, Secret::new(SECRET), Duration::from_secs(5), Duration::from_secs(15));
        Sandbox { url, platform, http: client(), callback_url: format!("{cb_url}/cb"), received }
    }

    async fn ticket(&self, path: &str, body: Value) -> String {
        let result = self.platform.post(path, &body).await.unwrap_or_else(|e| panic!("{path}: {e:?}"));
        result["ticket"].as_str().expect("a ticket").to_owned()
    }

    async fn sign_ticket(&self, contract: &str, contact: &str) -> String {
        let body = json!({"contractId": contract, "user": {"contact": contact, "contactType": "MOBILE"}});
        self.ticket("/v2/contract/miniappexchange", body).await
    }

    async fn personal_ticket(&self, contact: &str) -> String {
        let body = json!({
            "mode": "FACE", "username": "韩梅梅", "idCardNo": "110101199404044567",
            "user": {"contact": contact, "contactType": "MOBILE"}, "callbackUrl": self.callback_url
        });
        self.ticket("/v2/personalauth/miniappexchange", body).await
    }

    async fn company_ticket(&self, name: &str) -> String {
        let body = json!({
            "companyName": name, "registerNo": "91330100MA2B000001", "legalPerson": "钱七",
            "applicant": {"name": "孙八", "contact": "13900000009", "contactType": "MOBILE"},
            "callbackUrl": self.callback_url
        });
        self.ticket("/companyauth/miniappexchange", body).await
    }

    /// `GET /plugin/<page>` as the plugin would open it.
    async fn plugin(&self, page: &str, ticket: &str, env: &str) -> Page {
        let query = form_urlencoded::Serializer::new(String::new())
            .append_pair("ticket", ticket)
            .append_pair("env", env)
            .append_pair("hasCb", "true")
            .finish();
        open(&self.http, &format!("{}/plugin/{page}?{query}", self.url)).await
    }

    /// Submits the page's form with the button `op` and `fields`; follows 303s like a browser.
    async fn click(&self, page: &Page, op: &str, fields: &[(&str, &str)]) -> Page {
        let (action, mut form) = form_of(&page.html);
        assert_eq!(action, "/plugin/action", "the plugin page posts to the plugin endpoint: {}", page.html);
        form.push(("op".into(), op.into()));
        form.extend(fields.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())));
        self.post(&action, &form).await
    }

    async fn post(&self, action: &str, form: &[(String, String)]) -> Page {
        let mut url = format!("{}{action}", self.url);
        let mut response = self.http.post(&url).form(form).send().await.unwrap();
        while response.status().as_u16() == 303 {
            let location = response.headers()["location"].to_str().unwrap().to_owned();
            assert!(location.starts_with('/'), "the plugin never leaves the sandbox: {location}");
            url = format!("{}{location}", self.url);
            response = self.http.get(&url).send().await.unwrap();
        }
        let status = response.status().as_u16();
        Page { url, status, html: response.text().await.unwrap() }
    }

    async fn contract_signatory_status(&self, contract: &str, contact: &str) -> String {
        let detail = self.platform.get("/v2/contract/detail", &[("contractId", contract)]).await.unwrap();
        let signatories = detail["signatories"].as_array().unwrap();
        let signatory = signatories.iter().find(|s| s["receiver"]["contact"] == contact).expect("a signatory");
        signatory["status"].as_str().unwrap().to_owned()
    }

    async fn person(&self, contact: &str) -> Value {
        self.platform.get("/v2/personalauth/result", &[("contact", contact), ("contactType", "MOBILE")]).await.unwrap()
    }

    async fn company_status(&self, name: &str) -> Value {
        self.platform.get("/companyauth/result", &[("companyName", name)]).await.unwrap()["status"].clone()
    }

    /// Server callbacks received so far, once `at_least` arrived (the delivery runs in the
    /// background), or after 20 s.
    async fn callbacks(&self, at_least: usize) -> Vec<Vec<(String, String)>> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        while self.received.lock().unwrap().len() < at_least && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        self.received.lock().unwrap().clone()
    }
}

fn between<'a>(s: &'a str, start: &str, end: &str) -> Option<&'a str> {
    let from = s.find(start)? + start.len();
    let rest = &s[from..];
    Some(&rest[..rest.find(end)?])
}

fn unescape(s: &str) -> String {
    s.replace("&quot;", "\"").replace("&#39;", "'").replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")
}

/// The form's action and hidden inputs.
fn form_of(html: &str) -> (String, Vec<(String, String)>) {
    let action = between(html, "<form method=post action=", ">").expect("a form").to_owned();
    let hidden = html
        .split("<input type=hidden ")
        .skip(1)
        .map(|part| {
            let name = between(part, "name=", " ").unwrap().to_owned();
            (name, unescape(between(part, "value=\"", "\"").unwrap()))
        })
        .collect();
    (action, hidden)
}

/// `(data-event, text)` of `#qys-sandbox-plugin-done`.
fn done(page: &Page) -> Option<(String, String)> {
    let at = page.html.find("id=qys-sandbox-plugin-done ")?;
    let element = &page.html[at..];
    let event = between(element, "data-event=", " ")?.to_owned();
    let text = between(element, ">", "</p>")?.to_owned();
    Some((event, text))
}

fn pairs(items: &[(&str, &str)]) -> Vec<(String, String)> {
    items.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect()
}

fn field(form: &[(String, String)], name: &str) -> Option<String> {
    form.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
}

#[tokio::test(flavor = "multi_thread")]
async fn doc_page_signs_and_reports_sign_success_cb() {
    let sb = Sandbox::start().await;
    let ticket = sb.sign_ticket(CONTRACT, SIGNER).await;
    let page = sb.plugin("doc", &ticket, "sandbox").await;
    assert_eq!(page.status, 200, "{}", page.html);
    assert!(page.has("qys-sandbox-sign") && page.has("qys-sandbox-plugin"), "{}", page.html);
    let (_, form) = form_of(&page.html);
    assert_eq!(field(&form, "ticket").as_deref(), Some(ticket.as_str()));
    assert_eq!(field(&form, "page").as_deref(), Some("doc"));
    assert_eq!(field(&form, "env").as_deref(), Some("sandbox"));
    assert_eq!(field(&form, "hasCb").as_deref(), Some("true"));
    assert_eq!(sb.contract_signatory_status(CONTRACT, SIGNER).await, "SIGNING");

    let finished = sb.click(&page, "sign", &[]).await;
    assert_eq!(finished.status, 200, "{}", finished.html);
    assert!(finished.url.ends_with("/plugin/action"), "no redirect: ended on {}", finished.url);
    assert_eq!(done(&finished), Some(("signSuccessCb".into(), "签署成功".into())), "{}", finished.html);
    assert_eq!(sb.contract_signatory_status(CONTRACT, SIGNER).await, "SIGNED");

    // Reopened, the page no longer offers signing.
    let again = sb.plugin("doc", &ticket, "sandbox").await;
    assert!(again.has("qys-sandbox-signed") && !again.has("qys-sandbox-sign"), "{}", again.html);
}

#[tokio::test(flavor = "multi_thread")]
async fn doc_page_runs_the_real_name_step_and_stays_on_the_plugin() {
    let sb = Sandbox::start().await;
    let ticket = sb.sign_ticket(UNNAMED_CONTRACT, UNNAMED_SIGNER).await;
    let page = sb.plugin("doc", &ticket, "sandbox").await;
    assert!(page.has("qys-sandbox-auth-submit") && !page.has("qys-sandbox-sign"), "{}", page.html);

    let signing = sb.click(&page, "auth", &[("username", "王五"), ("idCardNo", "110101199202023456")]).await;
    assert!(signing.url.contains("/plugin/doc?ticket="), "back on the plugin page: {}", signing.url);
    assert!(signing.url.contains("env=sandbox") && signing.url.contains("hasCb=true"), "{}", signing.url);
    assert!(signing.has("qys-sandbox-sign"), "{}", signing.html);
    assert_eq!(sb.person(UNNAMED_SIGNER).await["realName"], true);

    let finished = sb.click(&signing, "sign", &[]).await;
    assert_eq!(done(&finished).map(|d| d.0).as_deref(), Some("signSuccessCb"), "{}", finished.html);
    assert_eq!(sb.contract_signatory_status(UNNAMED_CONTRACT, UNNAMED_SIGNER).await, "SIGNED");
}

#[tokio::test(flavor = "multi_thread")]
async fn personal_auth_submit_reports_auth_success_cb_and_calls_back() {
    let sb = Sandbox::start().await;
    let contact = "13900000021";
    let ticket = sb.personal_ticket(contact).await;
    assert_eq!(sb.person(contact).await["realName"], false);

    let page = sb.plugin("personal-auth", &ticket, "sandbox").await;
    assert_eq!(page.status, 200, "{}", page.html);
    assert!(page.has("qys-sandbox-auth-submit") && page.has("qys-sandbox-exit"), "{}", page.html);
    let finished = sb.click(&page, "submit", &[]).await;
    assert_eq!(done(&finished), Some(("authSuccessCb".into(), "认证成功".into())), "{}", finished.html);

    let person = sb.person(contact).await;
    assert_eq!((person["realName"].clone(), person["mode"].clone()), (json!(true), json!("FACE")), "{person}");
    assert_eq!(person["username"], "韩梅梅");
    let callbacks = sb.callbacks(1).await;
    let expected = vec![
        ("mode".to_owned(), "FACE".to_owned()),
        ("status".to_owned(), "1".to_owned()),
        ("authId".to_owned(), ticket.clone()),
    ];
    assert_eq!(callbacks, vec![expected], "one server callback, as after an H5 flow");
}

#[tokio::test(flavor = "multi_thread")]
async fn exit_reports_auth_fail_cb_and_changes_nothing() {
    let sb = Sandbox::start().await;
    let contact = "13900000022";
    let exited = sb.personal_ticket(contact).await;
    let page = sb.plugin("personal-auth", &exited, "sandbox").await;
    let finished = sb.click(&page, "exit", &[("username", "坏人"), ("idCardNo", "1")]).await;
    assert_eq!(done(&finished), Some(("authFailCb".into(), "已退出认证".into())), "{}", finished.html);
    assert_eq!(sb.person(contact).await, json!({"realName": false}));

    // Exiting the signing page's real-name step: no person, no signature.
    let ticket = sb.sign_ticket(UNNAMED_CONTRACT, UNNAMED_SIGNER).await;
    let page = sb.plugin("doc", &ticket, "sandbox").await;
    let finished = sb.click(&page, "exit", &[("username", "王五"), ("idCardNo", "110101199202023456")]).await;
    assert_eq!(done(&finished).map(|d| d.0).as_deref(), Some("authFailCb"), "{}", finished.html);
    assert_eq!(sb.person(UNNAMED_SIGNER).await["realName"], false);
    assert_eq!(sb.contract_signatory_status(UNNAMED_CONTRACT, UNNAMED_SIGNER).await, "SIGNING");

    // No server callback after an exit: a successful submit on another session, after the exits,
    // calls back; once its callback is in, the receiver must hold that one alone.
    let marker = sb.personal_ticket("13900000024").await;
    let page = sb.plugin("personal-auth", &marker, "sandbox").await;
    assert_eq!(done(&sb.click(&page, "submit", &[]).await).map(|d| d.0).as_deref(), Some("authSuccessCb"));
    let marker_arrived = || sb.received.lock().unwrap().iter().any(|form| field(form, "authId").as_ref() == Some(&marker));
    for _ in 0..500 {
        if marker_arrived() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(marker_arrived(), "the later submit's callback arrived");
    let received = sb.received.lock().unwrap().clone();
    let authids: Vec<_> = received.iter().map(|form| field(form, "authId")).collect();
    assert_eq!(authids, [Some(marker)], "only the submit called back, not the exited {exited}: {received:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn enterprise_auth_submit_reports_auth_success_cb_and_close_reports_auth_fail_cb() {
    let sb = Sandbox::start().await;
    let name = "杭州插件测试有限公司";

    let ticket = sb.company_ticket(name).await;
    let page = sb.plugin("enterprise-auth", &ticket, "sandbox").await;
    assert!(page.has("qys-sandbox-close"), "{}", page.html);
    let closed = sb.click(&page, "close", &[]).await;
    assert_eq!(done(&closed), Some(("authFailCb".into(), "已关闭".into())), "{}", closed.html);
    assert_eq!(sb.company_status(name).await, -1);

    let ticket = sb.company_ticket(name).await;
    let page = sb.plugin("enterprise-auth", &ticket, "sandbox").await;
    let finished = sb.click(&page, "submit", &[]).await;
    assert_eq!(done(&finished), Some(("authSuccessCb".into(), "认证成功".into())), "{}", finished.html);
    assert_eq!(sb.company_status(name).await, 2);

    let callbacks = sb.callbacks(1).await;
    assert_eq!(callbacks.len(), 1, "{callbacks:?}");
    let form = &callbacks[0];
    assert_eq!(field(form, "status").as_deref(), Some("1"));
    assert_eq!(field(form, "actionEvent").as_deref(), Some("7"));
    let auth_info: Value = serde_json::from_str(&field(form, "authInfo").unwrap()).unwrap();
    assert_eq!(auth_info["name"], name);
}

#[tokio::test(flavor = "multi_thread")]
async fn page_must_match_the_ticket() {
    let sb = Sandbox::start().await;
    let sign = sb.sign_ticket(CONTRACT, SIGNER).await;
    let personal = sb.personal_ticket("13900000023").await;
    let company = sb.company_ticket("杭州错页有限公司").await;
    for (page, ticket, right) in [
        ("personal-auth", &sign, "doc"),
        ("enterprise-auth", &sign, "doc"),
        ("doc", &personal, "personal-auth"),
        ("enterprise-auth", &personal, "personal-auth"),
        ("doc", &company, "enterprise-auth"),
        ("personal-auth", &company, "enterprise-auth"),
    ] {
        let shown = sb.plugin(page, ticket, "sandbox").await;
        assert_eq!(shown.status, 400, "{page} with a {right} ticket: {}", shown.html);
        assert!(shown.html.contains(&format!("“{right}”")), "names the right page: {}", shown.html);
        assert!(!shown.html.contains("<form"), "{}", shown.html);
    }

    // A forced POST naming the wrong page is refused too, and signs nothing.
    let form = pairs(&[("ticket", &sign), ("page", "personal-auth"), ("env", "sandbox"), ("op", "sign")]);
    assert_eq!(sb.post("/plugin/action", &form).await.status, 400);
    assert_eq!(sb.contract_signatory_status(CONTRACT, SIGNER).await, "SIGNING");

    // Unknown page names are not plugin pages.
    let unknown = sb.plugin("contract", &sign, "sandbox").await;
    assert_eq!(unknown.status, 404, "{}", unknown.html);
}

#[tokio::test(flavor = "multi_thread")]
async fn env_must_be_sandbox() {
    let sb = Sandbox::start().await;
    let ticket = sb.sign_ticket(CONTRACT, SIGNER).await;
    for env in ["com", "cn", ""] {
        let page = sb.plugin("doc", &ticket, env).await;
        assert_eq!(page.status, 400, "env={env}: {}", page.html);
        assert!(page.html.contains("env=sandbox"), "says which env the sandbox answers to: {}", page.html);
        assert!(!page.has("qys-sandbox-sign"), "{}", page.html);
    }
    let missing = open(&sb.http, &format!("{}/plugin/doc?ticket={ticket}", sb.url)).await;
    assert_eq!(missing.status, 400, "{}", missing.html);
    assert!(missing.html.contains("defaults to com"), "{}", missing.html);

    let form = pairs(&[("ticket", &ticket), ("page", "doc"), ("env", "com"), ("op", "sign")]);
    assert_eq!(sb.post("/plugin/action", &form).await.status, 400);
    assert_eq!(sb.contract_signatory_status(CONTRACT, SIGNER).await, "SIGNING");
}

#[tokio::test(flavor = "multi_thread")]
async fn unknown_and_expired_tickets_answer_as_the_h5_page_does() {
    // Long enough for the first request to come in time on a loaded machine.
    let sb = Sandbox::with_ttl(Duration::from_secs(2)).await;
    let expiring = sb.sign_ticket(CONTRACT, SIGNER).await;
    assert_eq!(sb.plugin("doc", &expiring, "sandbox").await.status, 200);

    let unknown = "0123456789abcdef0123456789abcdef";
    let plugin = sb.plugin("doc", unknown, "sandbox").await;
    let h5 = open(&sb.http, &format!("{}/h5?ticket={unknown}", sb.url)).await;
    assert_eq!((plugin.status, h5.status), (404, 404), "{}", plugin.html);
    assert!(plugin.html.contains("链接无效"), "{}", plugin.html);

    tokio::time::sleep(Duration::from_millis(2_100)).await;
    let plugin = sb.plugin("doc", &expiring, "sandbox").await;
    let h5 = open(&sb.http, &format!("{}/h5?ticket={expiring}", sb.url)).await;
    assert_eq!((plugin.status, h5.status), (410, 410), "{}", plugin.html);
    assert!(plugin.html.contains("链接已过期"), "{}", plugin.html);
}

#[tokio::test(flavor = "multi_thread")]
async fn error_pages_escape_a_hostile_ticket_env_and_page() {
    let sb = Sandbox::start().await;
    let hostile = "\"><script>alert(1)</script>'";
    let escaped = "&quot;&gt;&lt;script&gt;alert(1)&lt;/script&gt;&#39;";

    let bad_env = sb.plugin("doc", "0123456789abcdef0123456789abcdef", hostile).await;
    let bad_ticket = sb.plugin("doc", hostile, "sandbox").await;
    let page_name = form_urlencoded::byte_serialize(hostile.as_bytes()).collect::<String>();
    let bad_page = open(&sb.http, &format!("{}/plugin/{page_name}?ticket=x&env=sandbox", sb.url)).await;
    for (what, page, status) in [("env", bad_env, 400), ("ticket", bad_ticket, 404), ("page", bad_page, 404)] {
        assert_eq!(page.status, status, "{what}: {}", page.html);
        assert!(page.html.contains(escaped), "{what} is shown, escaped: {}", page.html);
        assert!(!page.html.contains("<script>"), "{what} is not markup: {}", page.html);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn h5_page_still_posts_to_h5_and_follows_callback_page() {
    let sb = Sandbox::start().await;
    let ticket = sb.sign_ticket(CONTRACT, SIGNER).await;
    let back = "http://127.0.0.1:9/back?x=1";
    let query = form_urlencoded::Serializer::new(String::new())
        .append_pair("ticket", &ticket)
        .append_pair("callbackPage", back)
        .finish();
    let page = open(&sb.http, &format!("{}/h5?{query}", sb.url)).await;
    assert!(!page.has("qys-sandbox-plugin"), "{}", page.html);
    let (action, mut form) = form_of(&page.html);
    assert_eq!(action, "/h5/action");
    assert_eq!(field(&form, "callbackPage").as_deref(), Some(back));
    form.push(("op".into(), "sign".into()));
    let response = sb.http.post(format!("{}/h5/action", sb.url)).form(&form).send().await.unwrap();
    assert_eq!(response.status(), 303);
    assert_eq!(response.headers()["location"], back);
    assert_eq!(sb.contract_signatory_status(CONTRACT, SIGNER).await, "SIGNED");
}
