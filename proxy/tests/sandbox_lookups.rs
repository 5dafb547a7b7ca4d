//! The sandbox's indexed lookups and session expiry, over real HTTP: contracts by `bizId`, company
//! auth results by `requestId` and by the name the request asked for, personal auth results by
//! `authId`, and tickets that expire (410 until the next session opens, then unknown: 404).

use std::time::Duration;

use qys_proxy::platform::{Platform, PlatformError};
use qys_proxy::sandbox::{self, SandboxConfig};
use qys_proxy::{spawn_server, Secret};
use serde_json::{json, Value};

const TOKEN: &str = "lookup-token";
const SECRET: &str = "lookup-secret";
const CONTRACT: &str = "2603417854124281870";
const BIZ_ID: &str = "demo-labour-001";
const SIGNER: &str = "13700000044";

struct Sandbox {
    url: String,
    platform: Platform,
    http: reqwest::Client,
}

impl Sandbox {
    async fn start(session_ttl: Duration) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let mut cfg = SandboxConfig::new(TOKEN.into(), Secret::new(SECRET), url.clone());
        cfg.session_ttl = session_ttl;
        spawn_server(listener, sandbox::router(cfg));
        let platform = Platform::new(&url, TOKEN, Secret::new(SECRET), Duration::from_secs(5), Duration::from_secs(15));
        let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
        Sandbox { url, platform, http }
    }

    async fn get(&self, path: &str, query: &[(&str, &str)]) -> Result<Value, i64> {
        self.platform.get(path, query).await.map_err(code)
    }

    async fn post(&self, path: &str, body: Value) -> Result<Value, i64> {
        self.platform.post(path, &body).await.map_err(code)
    }

    /// `(status, html)` of a page.
    async fn page(&self, url: &str) -> (u16, String) {
        let response = self.http.get(url).send().await.unwrap();
        (response.status().as_u16(), response.text().await.unwrap())
    }

    /// Submits a hosted page's form.
    async fn submit(&self, ticket: &str, fields: &[(&str, &str)]) -> (u16, String) {
        let mut form = vec![("ticket", ticket), ("op", "submit")];
        form.extend_from_slice(fields);
        let response = self.http.post(format!("{}/h5/action", self.url)).form(&form).send().await.unwrap();
        (response.status().as_u16(), response.text().await.unwrap())
    }

    async fn company(&self, key: &str, value: &str) -> Value {
        self.get("/companyauth/result", &[(key, value)]).await.unwrap()
    }
}

fn code(e: PlatformError) -> i64 {
    e.code_and_message().0
}

fn ticket_of(url: &str) -> String {
    url.split("ticket=").nth(1).expect("a ticket in the page URL").to_owned()
}

#[tokio::test(flavor = "multi_thread")]
async fn sandbox_contracts_are_found_by_biz_id() {
    let sb = Sandbox::start(Duration::from_secs(60)).await;
    let detail = sb.get("/v2/contract/detail", &[("bizId", BIZ_ID)]).await.unwrap();
    assert_eq!((detail["id"].as_str(), detail["bizId"].as_str()), (Some(CONTRACT), Some(BIZ_ID)));
    assert_eq!(sb.get("/v2/contract/detail", &[("bizId", "unknown")]).await, Err(1110));
    assert_eq!(sb.get("/v2/contract/detail", &[("contractId", "1"), ("bizId", BIZ_ID)]).await, Err(1110));

    let user = json!({"contact": SIGNER, "contactType": "MOBILE"});
    let page = sb.post("/v2/contract/pageurl", json!({"bizId": BIZ_ID, "user": user})).await.unwrap();
    let (status, html) = sb.page(page["pageUrl"].as_str().unwrap()).await;
    assert_eq!(status, 200, "{html}");
    assert!(html.contains("劳动合同(示例)") && html.contains(CONTRACT), "{html}");
    assert_eq!(sb.post("/v2/contract/pageurl", json!({"bizId": "unknown", "user": user})).await, Err(1110));
}

#[tokio::test(flavor = "multi_thread")]
async fn sandbox_company_results_are_found_by_request_id_and_requested_name() {
    let sb = Sandbox::start(Duration::from_secs(60)).await;
    let request = |name: &str| {
        json!({
            "companyName": name, "registerNo": "91330100MA2B000001", "legalPerson": "钱七", "modifyFields": "corpName",
            "applicant": {"name": "孙八", "contact": "13900000009", "contactType": "MOBILE"}
        })
    };
    let first = sb.post("/companyauth/h5page", request("杭州旧名有限公司")).await.unwrap();
    let first_id = first["requestId"].as_str().unwrap();
    assert_eq!(sb.company("requestId", first_id).await["status"], -1, "not submitted yet");
    assert_eq!(sb.company("companyName", "杭州旧名有限公司").await["status"], -1);

    let (status, html) = sb.submit(&ticket_of(first["authUrl"].as_str().unwrap()), &[("corpName", "杭州新名有限公司")]).await;
    assert_eq!(status, 200, "{html}");
    for (key, value) in [("requestId", first_id), ("companyName", "杭州旧名有限公司"), ("companyName", "杭州新名有限公司")] {
        let result = sb.company(key, value).await;
        assert_eq!(result["status"], 2, "{key}={value}: {result}");
        assert_eq!((result["companyName"].as_str(), result["requestId"].as_str()), (Some("杭州新名有限公司"), Some(first_id)));
    }

    // The old name is still free: a second request for it ends as the same company, which it replaces.
    let second = sb.post("/companyauth/h5page", request("杭州旧名有限公司")).await.unwrap();
    let second_id = second["requestId"].as_str().unwrap();
    sb.submit(&ticket_of(second["authUrl"].as_str().unwrap()), &[("corpName", "杭州新名有限公司")]).await;
    assert_eq!(sb.company("requestId", second_id).await["status"], 2);
    assert_eq!(sb.company("requestId", first_id).await["status"], -1, "replaced by the second request");
    assert_eq!(sb.company("companyName", "杭州旧名有限公司").await["requestId"].as_str(), Some(second_id));
    assert_eq!(sb.post("/companyauth/h5page", request("杭州新名有限公司")).await, Err(1605));
}

#[tokio::test(flavor = "multi_thread")]
async fn sandbox_personal_results_are_found_by_auth_id() {
    let sb = Sandbox::start(Duration::from_secs(60)).await;
    let body = json!({"mode": "FACE", "user": {"contact": "13600000077", "contactType": "MOBILE"}});
    let auth = sb.post("/v2/personalauth", body).await.unwrap();
    let auth_id = auth["authId"].as_str().unwrap();
    assert_eq!(sb.get("/v2/personalauth/result", &[("authId", auth_id)]).await.unwrap()["realName"], false);

    let (status, html) = sb.submit(auth_id, &[("username", "韩梅梅"), ("idCardNo", "110101199404044567")]).await;
    assert_eq!(status, 200, "{html}");
    let result = sb.get("/v2/personalauth/result", &[("authId", auth_id)]).await.unwrap();
    assert_eq!((result["realName"].as_bool(), result["username"].as_str()), (Some(true), Some("韩梅梅")), "{result}");
    for unknown in ["0123456789abcdef0123456789abcdef", &auth_id.to_uppercase(), "x"] {
        assert_eq!(sb.get("/v2/personalauth/result", &[("authId", unknown)]).await, Err(1604), "{unknown}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn sandbox_expired_tickets_answer_gone_until_the_next_session_then_unknown() {
    // Long enough for each page to be opened in time on a loaded machine.
    let sb = Sandbox::start(Duration::from_secs(2)).await;
    let user = json!({"contact": SIGNER, "contactType": "MOBILE"});
    let open = || sb.post("/v2/contract/pageurl", json!({"contractId": CONTRACT, "user": user}));
    let expiring = open().await.unwrap()["pageUrl"].as_str().unwrap().to_owned();
    assert_eq!(sb.page(&expiring).await.0, 200);
    tokio::time::sleep(Duration::from_millis(2_100)).await;
    let (status, html) = sb.page(&expiring).await;
    assert_eq!(status, 410, "{html}");
    assert!(html.contains("链接已过期"), "{html}");

    let fresh = open().await.unwrap()["pageUrl"].as_str().unwrap().to_owned();
    assert_eq!(sb.page(&fresh).await.0, 200);
    let (status, html) = sb.page(&expiring).await;
    assert_eq!(status, 404, "dropped when the next session opened: {html}");
}
