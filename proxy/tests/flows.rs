//! Every action end to end over real HTTP: proxy → sandbox APIs → sandbox H5 pages → return page.

mod common;

use common::*;
use qys_proxy::proxy::UpstreamMode;
use serde_json::{json, Value};

const CONTRACT: &str = "2603417854124281870";
const SIGNER: &str = "13700000044";
const OPERATOR: &str = "13800000055";

async fn finish_message(stack: &Stack, page: &Page, tag: &str) -> Value {
    assert!(page.url.starts_with(&format!("{}/qys/return?t=", stack.proxy)), "ended on {}", page.url);
    assert_eq!(page.status, 200, "{}", page.html);
    let (message, origin) = posted_message(page).expect("return page posts a message");
    assert_eq!(origin, PAGE_ORIGIN, "explicit targetOrigin = the embedding page's origin");
    assert_eq!(message["type"], "qys-sdk");
    assert_eq!(message["v"], 1);
    assert_eq!(message["state"], state(tag));
    message
}

async fn all_four_actions(stack: Stack) {
    let sign = json!({"contractId": CONTRACT, "contact": SIGNER});
    let company_sign = json!({"contractId": CONTRACT, "contact": OPERATOR});
    let person = json!({"mode": "FACE", "contact": "13900000001"});
    let company = json!({"companyName": "杭州新公司", "companyAuthBean": {"applicant": {"name": "AAA", "contact": "13900000002"}}});
    for (action, params) in [
        ("personalSign", sign),
        ("enterpriseSign", company_sign),
        ("personalAuth", person),
        ("enterpriseAuth", company),
    ] {
        let url = stack.page_url(action, &state(action), params).await;
        assert!(url.starts_with(&format!("{}/h5?ticket=", stack.sandbox)), "{url}");
        let page = open(&stack.client, &url).await;
        assert_eq!(page.status, 200, "{action}: {}", page.html);
        assert!(page.has("qys-sandbox-sign") || page.has("qys-sandbox-auth-submit"), "{action}: {}", page.html);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn every_action_in_page_url_mode() {
    all_four_actions(Stack::start().await).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn every_action_in_ticket_mode() {
    all_four_actions(Stack::ticket_mode().await).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn personal_sign_confirms_with_the_platform_and_refuses_a_second_signature() {
    for stack in [Stack::start().await, Stack::ticket_mode().await] {
        let url = stack.page_url("personalSign", &state("ps"), json!({"contractId": CONTRACT, "contact": SIGNER})).await;
        let page = open(&stack.client, &url).await;
        let done = click(&stack.client, &page, "sign", &[]).await;
        let message = finish_message(&stack, &done, "ps").await;
        assert_eq!(message["event"], "signSuccess");
        assert_eq!(message["data"], json!({"contractId": CONTRACT}));

        // The same signer again: the page no longer offers signing and a forced POST is refused.
        let again = stack.page_url("personalSign", &state("ps2"), json!({"contractId": CONTRACT, "contact": SIGNER})).await;
        let page = open(&stack.client, &again).await;
        assert!(page.has("qys-sandbox-signed") && !page.has("qys-sandbox-sign"), "{}", page.html);
        let ticket = url::Url::parse(&again).unwrap().query_pairs().find(|(k, _)| k == "ticket").unwrap().1.into_owned();
        let refused = stack
            .client
            .post(format!("{}/h5/action", stack.sandbox))
            .form(&[("ticket", ticket.as_str()), ("op", "sign")])
            .send()
            .await
            .unwrap();
        assert_eq!(refused.status(), 409);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn enterprise_sign_checks_the_company_signatory() {
    let stack = Stack::ticket_mode().await;
    let url = stack.page_url("enterpriseSign", &state("es"), json!({"contractId": CONTRACT, "contact": OPERATOR})).await;
    let done = click(&stack.client, &open(&stack.client, &url).await, "sign", &[]).await;
    let message = finish_message(&stack, &done, "es").await;
    assert_eq!(message["event"], "signSuccess");

    // personalSign for the company's operator: the PERSONAL signatory is not theirs → no success.
    let url = stack.page_url("personalSign", &state("mix"), json!({"contractId": "2603417854124281872", "contact": OPERATOR})).await;
    let done = click(&stack.client, &open(&stack.client, &url).await, "sign", &[]).await;
    assert_eq!(finish_message(&stack, &done, "mix").await["event"], "authFail");
}

#[tokio::test(flavor = "multi_thread")]
async fn unauthenticated_signer_authenticates_first_or_exits() {
    let stack = Stack::start().await;
    let params = json!({"contractId": "2603417854124281871", "contact": "13900000066"});
    let url = stack.page_url("personalSign", &state("exit"), params.clone()).await;
    let page = open(&stack.client, &url).await;
    assert!(page.has("qys-sandbox-auth-submit") && page.has("qys-sandbox-exit") && !page.has("qys-sandbox-sign"));
    let exited = click(&stack.client, &page, "exit", &[]).await;
    let message = finish_message(&stack, &exited, "exit").await;
    assert_eq!(message["event"], "authFail");
    assert_eq!(message["data"], json!({}));

    let url = stack.page_url("personalSign", &state("auth"), params).await;
    let page = open(&stack.client, &url).await;
    let signing = click(&stack.client, &page, "auth", &[("username", "王五"), ("idCardNo", "110101199202023456")]).await;
    assert!(signing.has("qys-sandbox-sign"), "{}", signing.html);
    let done = click(&stack.client, &signing, "sign", &[]).await;
    assert_eq!(finish_message(&stack, &done, "auth").await["event"], "signSuccess");
}

#[tokio::test(flavor = "multi_thread")]
async fn personal_auth_success_carries_user_info_from_the_platform() {
    let stack = Stack::ticket_mode().await;
    let params = json!({
        "mode": "BANK", "contact": "13900000003", "username": "李雷", "idCardNo": "110101199303033456",
        "bankNo": "6222020000000000", "bankMobile": "13900000004", "modifyFields": ["BANKNO"]
    });
    let url = stack.page_url("personalAuth", &state("pa"), params).await;
    let page = open(&stack.client, &url).await;
    assert!(page.html.contains("id=qys-sandbox-username name=username value=\"李雷\" readonly"), "{}", page.html);
    assert!(page.html.contains("id=qys-sandbox-bankNo name=bankNo value=\"6222020000000000\">"), "bankNo editable");
    // A read-only field edited by hand is ignored; the editable one is taken.
    let done = click(&stack.client, &page, "submit", &[("username", "篡改"), ("bankNo", "6222029999999999")]).await;
    let message = finish_message(&stack, &done, "pa").await;
    assert_eq!(message["event"], "authSuccess");
    assert_eq!(
        message["data"],
        json!({"username": "李雷", "mobile": "13900000003", "cardNo": "110101199303033456",
               "bankNo": "6222029999999999", "contact": "13900000004"})
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn personal_auth_exit_is_auth_fail() {
    let stack = Stack::start().await;
    let url = stack.page_url("personalAuth", &state("pax"), json!({"mode": "FACE", "contact": "x@example.com"})).await;
    let done = click(&stack.client, &open(&stack.client, &url).await, "exit", &[]).await;
    assert_eq!(finish_message(&stack, &done, "pax").await["event"], "authFail");
}

#[tokio::test(flavor = "multi_thread")]
async fn company_auth_success_close_button_and_already_authenticated() {
    let stack = Stack::ticket_mode().await;
    let bean = |name: &str, close: bool| {
        json!({"companyName": name, "companyAuthBean": {"applicant": {"name": "AAA", "contact": "13900000005"},
               "registerNo": "91330100MA2B000001", "legalPerson": "韩梅梅", "closeButton": close}})
    };
    let url = stack.page_url("enterpriseAuth", &state("ca"), bean("杭州测试有限公司", true)).await;
    let page = open(&stack.client, &url).await;
    assert!(page.has("qys-sandbox-close"));
    let done = click(&stack.client, &page, "submit", &[]).await;
    let message = finish_message(&stack, &done, "ca").await;
    assert_eq!(message["event"], "authSuccess");
    assert_eq!(
        message["data"],
        json!({"name": "杭州测试有限公司", "registerNo": "91330100MA2B000001", "legalPerson": "韩梅梅"})
    );

    // Now authenticated: the platform answers 1605, passed through unchanged.
    let (status, body) = stack.call("enterpriseAuth", &state("ca2"), bean("杭州测试有限公司", true)).await;
    assert_eq!((status, body["code"].clone()), (200, json!(1605)), "{body}");

    let url = stack.page_url("enterpriseAuth", &state("cb"), bean("宁波无关闭按钮公司", false)).await;
    let page = open(&stack.client, &url).await;
    assert!(!page.has("qys-sandbox-close"), "closeButton false hides the button");
    assert_eq!(click(&stack.client, &page, "close", &[]).await.status, 400, "and refuses the action");

    // An editable name that the applicant changes is still confirmed (by the requested name).
    let mut editable = bean("苏州原名公司", true);
    editable["companyAuthBean"]["modifyFields"] = json!(["corpName"]);
    let url = stack.page_url("enterpriseAuth", &state("ce"), editable).await;
    let done = click(&stack.client, &open(&stack.client, &url).await, "submit", &[("corpName", "苏州新名公司")]).await;
    let message = finish_message(&stack, &done, "ce").await;
    assert_eq!((message["event"].clone(), message["data"]["name"].clone()), (json!("authSuccess"), json!("苏州新名公司")));

    let url = stack.page_url("enterpriseAuth", &state("cc"), bean("温州关闭公司", true)).await;
    let done = click(&stack.client, &open(&stack.client, &url).await, "close", &[]).await;
    assert_eq!(finish_message(&stack, &done, "cc").await["event"], "authFail");
}

#[tokio::test(flavor = "multi_thread")]
async fn platform_codes_pass_through() {
    let stack = Stack::start().await;
    let (status, body) = stack.call("personalSign", &state("x"), json!({"contractId": CONTRACT, "contact": "13911112222"})).await;
    assert_eq!((status, body["code"].clone()), (200, json!(1110)), "contact may not view: {body}");
    let (_, body) = stack.call("personalSign", &state("y"), json!({"contractId": "2603417854124281873", "contact": SIGNER})).await;
    assert_eq!(body["code"], 1101, "completed contract: {body}");
    let authed = json!({"companyName": "上海示例科技有限公司", "companyAuthBean": {"applicant": {"contact": OPERATOR}}});
    let (_, body) = stack.call("enterpriseAuth", &state("z"), authed).await;
    assert_eq!(body["code"], 1605, "{body}");
}

#[tokio::test(flavor = "multi_thread")]
async fn hand_edited_return_urls_get_no_success() {
    let stack = Stack::ticket_mode().await;
    let url = stack.page_url("personalSign", &state("h"), json!({"contractId": CONTRACT, "contact": SIGNER})).await;
    let callback_page: String = url::Url::parse(&url)
        .unwrap()
        .query_pairs()
        .find(|(k, _)| k == "callbackPage")
        .map(|(_, v)| v.into_owned())
        .unwrap();
    // Not signed yet: the genuine link confirms with the platform and reports authFail.
    let early = open(&stack.client, &callback_page).await;
    assert_eq!(posted_message(&early).unwrap().0["event"], "authFail");
    // A forged token (payload edited, MAC kept) posts nothing.
    let (payload, mac) = callback_page.split_once("t=").unwrap().1.split_once('.').unwrap();
    let forged = format!("{}/qys/return?t={}A.{mac}", stack.proxy, payload);
    let page = open(&stack.client, &forged).await;
    assert_eq!(page.status, 400);
    assert!(posted_message(&page).is_none());
    let page = open(&stack.client, &format!("{}/qys/return?event=signSuccess", stack.proxy)).await;
    assert!(page.status == 400 && posted_message(&page).is_none());
}

#[tokio::test(flavor = "multi_thread")]
async fn return_page_is_locked_down() {
    let stack = Stack::start().await;
    let url = stack.page_url("personalAuth", &state("csp"), json!({"contact": "13900000009"})).await;
    let done = click(&stack.client, &open(&stack.client, &url).await, "exit", &[]).await;
    let response = stack.client.get(&done.url).send().await.unwrap();
    let csp = response.headers()["content-security-policy"].to_str().unwrap().to_owned();
    assert!(csp.contains("default-src 'none'") && csp.contains("script-src 'nonce-"), "{csp}");
    assert!(csp.contains(&format!("frame-ancestors {PAGE_ORIGIN}")), "{csp}");
    assert_eq!(response.headers()["cache-control"], "no-store");
}

#[tokio::test(flavor = "multi_thread")]
async fn default_mode_lets_the_person_choose() {
    let stack = Stack::with(Options { mode: UpstreamMode::PageUrl, ..Options::default() }).await;
    let url = stack.page_url("personalAuth", &state("def"), json!({"contact": "13900000010", "username": "周", "idCardNo": "1"})).await;
    let page = open(&stack.client, &url).await;
    assert!(page.html.contains("<select id=qys-sandbox-mode"));
    let done = click(&stack.client, &page, "submit", &[("mode", "FACE")]).await;
    let message = finish_message(&stack, &done, "def").await;
    assert_eq!(message["data"], json!({"username": "周", "mobile": "13900000010", "cardNo": "1"}));
}

#[tokio::test(flavor = "multi_thread")]
async fn the_platform_calls_back_the_proxy_by_default_and_it_is_stored() {
    let stack = Stack::ticket_mode().await;
    let url = stack.page_url("personalAuth", &state("cbp"), json!({"mode": "FACE", "contact": "13900000020", "username": "丙", "idCardNo": "9"})).await;
    click(&stack.client, &open(&stack.client, &url).await, "submit", &[]).await;
    let company = json!({"companyName": "嘉兴回调公司", "companyAuthBean": {"applicant": {"contact": "13900000021"},
        "registerNo": "1", "legalPerson": "丁"}});
    let url = stack.page_url("enterpriseAuth", &state("cbc"), company).await;
    click(&stack.client, &open(&stack.client, &url).await, "submit", &[]).await;
    // The sandbox calls back in the background: wait for both (bounded).
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(20);
    let mut stored = stack.store.all().unwrap();
    while stored.len() < 2 && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        stored = stack.store.all().unwrap();
    }
    assert_eq!(stored.len(), 2, "{stored:?}");
    let personal = stored.iter().find(|c| c.kind == "personal-auth").unwrap();
    assert!(personal.query.starts_with(&format!("flow={}&t=", state("cbp"))), "{}", personal.query);
    assert!(personal.body.contains("mode=FACE") && personal.body.contains("status=1") && personal.error.is_empty());
    let company = stored.iter().find(|c| c.kind == "company-auth").unwrap();
    assert!(company.body.contains("actionEvent=7") && company.error.is_empty(), "{company:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn fields_that_were_not_prefilled_can_be_filled_in() {
    let stack = Stack::ticket_mode().await;
    let url = stack.page_url("personalAuth", &state("fill"), json!({"mode": "BANK", "contact": "13900000041"})).await;
    let page = open(&stack.client, &url).await;
    assert!(page.html.contains("id=qys-sandbox-username name=username value=\"\">"), "{}", page.html);
    let done = click(
        &stack.client,
        &page,
        "submit",
        &[("username", "林"), ("idCardNo", "3"), ("bankNo", "6222"), ("bankMobile", "13900000042")],
    )
    .await;
    let message = finish_message(&stack, &done, "fill").await;
    assert_eq!(
        message["data"],
        json!({"username": "林", "mobile": "13900000041", "cardNo": "3", "bankNo": "6222", "contact": "13900000042"})
    );
}
