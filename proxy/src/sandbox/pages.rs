//! The sandbox's hosted pages: signing (with an auth step), personal auth and company auth, served
//! two ways by one implementation:
//!
//! - the browser H5 page `GET /h5?ticket=…[&callbackPage=…]` (form `POST /h5/action`), which
//!   finishes by redirecting to `callbackPage` when its origin is one of the sandbox's
//!   [`CallbackOrigins`](super::CallbackOrigins), else on a page of its own;
//! - the 契约锁 mini-program plugin's pages `GET /plugin/<page>?ticket=…&env=sandbox[&hasCb=true]`
//!   (`doc`, `personal-auth`, `enterprise-auth`; form `POST /plugin/action`), which finish on a
//!   page whose `#qys-sandbox-plugin-done[data-event]` names the event the plugin would fire
//!   (`signSuccessCb`, `authSuccessCb`, `authFailCb`).
//!
//! Plain forms with stable element ids for tests: `#qys-sandbox-sign`, `#qys-sandbox-auth-submit`,
//! `#qys-sandbox-exit`, `#qys-sandbox-close`.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::{Form, Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use serde_json::{json, Value};

use qys_sdk_wasm::params::Action;
use qys_sdk_wasm::presentation::plugin_page;

use super::world::{Company, Person, Session, SessionKind};
use super::{deliver, Sandbox, Shared};
use crate::html::{escape, page};
use crate::unix_millis;

type Params = HashMap<String, String>;

/// The `env` the sandbox answers to on plugin pages (the real plugin's `com` and `cn` talk to the
/// platform itself).
pub const PLUGIN_ENV: &str = "sandbox";

fn message(status: StatusCode, title: &str, text: &str) -> Response {
    let body = format!("<h1>{}</h1><p id=qys-sandbox-message>{}</p>", escape(title), escape(text));
    (status, Html(page(title, &body))).into_response()
}

/// A refused page request, shown as a [`message`] page.
struct Refusal(StatusCode, &'static str, String);

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        message(self.0, self.1, &self.2)
    }
}

fn session(sb: &Shared, params: &Params) -> Result<(String, Arc<Session>), Refusal> {
    let ticket = params.get("ticket").cloned().unwrap_or_default();
    let found = sb.sessions().get(&ticket);
    match found {
        Some(s) if s.expires_ms > unix_millis() => Ok((ticket, s)),
        Some(_) => Err(Refusal(StatusCode::GONE, "链接已过期", "This page link has expired.".into())),
        None => Err(Refusal(StatusCode::NOT_FOUND, "链接无效", format!("Unknown ticket “{ticket}”."))),
    }
}

/// A page of the 契约锁 mini-program plugin (`plugin://qyssdk-plugin/<page>`), named by the SDK's
/// core ([`plugin_page`]) so that the SDK and the sandbox cannot disagree: `doc` (both signing
/// actions), `personal-auth`, `enterprise-auth`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct PluginPage(&'static str);

impl PluginPage {
    /// Every page, one per action (the two signing actions share `doc`).
    fn all() -> Vec<Self> {
        let mut pages = Vec::new();
        for page in Action::ALL.map(|action| Self(plugin_page(action))) {
            if !pages.contains(&page) {
                pages.push(page);
            }
        }
        pages
    }

    fn parse(name: &str) -> Option<Self> {
        Action::ALL.into_iter().map(plugin_page).find(|page| *page == name).map(Self)
    }

    fn name(self) -> &'static str {
        self.0
    }

    /// The page a session's ticket opens: the page of the session's action.
    fn of(kind: &SessionKind) -> Self {
        let action = match kind {
            // Sessions do not record which signing action asked; both open the same page.
            SessionKind::Sign { .. } => Action::PersonalSign,
            SessionKind::PersonalAuth(_) => Action::PersonalAuth,
            SessionKind::CompanyAuth { .. } => Action::EnterpriseAuth,
        };
        Self(plugin_page(action))
    }
}

/// How a page flow ended.
#[derive(Debug, Clone, Copy)]
enum Finish {
    Signed,
    AuthPassed,
    Exited,
    Closed,
}

impl Finish {
    fn text(self) -> &'static str {
        match self {
            Self::Signed => "签署成功",
            Self::AuthPassed => "认证成功",
            Self::Exited => "已退出认证",
            Self::Closed => "已关闭",
        }
    }

    /// The event the plugin fires to the mini-program.
    fn plugin_event(self) -> &'static str {
        match self {
            Self::Signed => "signSuccessCb",
            Self::AuthPassed => "authSuccessCb",
            Self::Exited | Self::Closed => "authFailCb",
        }
    }
}

/// Where a page is shown: what its form posts, what it carries along and how it finishes.
enum Surface {
    /// `/h5`: finishing redirects to `callbackPage` (the session's, else the page URL's) if its
    /// origin is allowed.
    H5 { callback_page: Option<String> },
    /// `/plugin/<page>`: finishing shows the event the plugin would fire.
    Plugin { page: PluginPage, has_cb: bool },
}

impl Surface {
    fn h5(params: &Params) -> Self {
        Self::H5 { callback_page: params.get("callbackPage").cloned() }
    }

    fn action(&self) -> &'static str {
        match self {
            Self::H5 { .. } => "/h5/action",
            Self::Plugin { .. } => "/plugin/action",
        }
    }

    /// `(name, value)` pairs the form posts back and the page URL carries.
    fn carried(&self, ticket: &str) -> Vec<(&'static str, String)> {
        let mut out = vec![("ticket", ticket.to_owned())];
        match self {
            Self::H5 { callback_page } => out.extend(callback_page.clone().map(|cb| ("callbackPage", cb))),
            Self::Plugin { page, has_cb } => {
                out.push(("page", page.name().to_owned()));
                out.push(("env", PLUGIN_ENV.to_owned()));
                if *has_cb {
                    out.push(("hasCb", "true".to_owned()));
                }
            }
        }
        out
    }

    fn hidden(&self, ticket: &str) -> String {
        self.carried(ticket)
            .iter()
            .map(|(name, value)| format!("<input type=hidden name={name} value=\"{}\">", escape(value)))
            .collect()
    }

    /// The page's own URL (path and query), to come back to after the auth step of signing.
    fn url(&self, ticket: &str) -> String {
        let path = match self {
            Self::H5 { .. } => "/h5".to_owned(),
            Self::Plugin { page, .. } => format!("/plugin/{}", page.name()),
        };
        let query = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(self.carried(ticket).iter().filter(|(name, _)| *name != "page"))
            .finish();
        format!("{path}?{query}")
    }

    fn banner(&self) -> String {
        match self {
            Self::H5 { .. } => String::new(),
            Self::Plugin { page, .. } => format!(
                "<p id=qys-sandbox-plugin data-page={0}>小程序插件页面 plugin://qyssdk-plugin/{0}</p>",
                page.name()
            ),
        }
    }

    fn finish(&self, sb: &Sandbox, session: &Session, how: Finish) -> Response {
        match self {
            Self::H5 { callback_page } => {
                // Page-URL mode keeps callbackPage in the session; ticket mode passes it on the
                // URL, where anyone can put anything: both are checked against the allowed origins.
                let Some(wanted) = session.callback_page.as_deref().or(callback_page.as_deref()) else {
                    return message(StatusCode::OK, "完成", &format!("{}。", how.text()));
                };
                match sb.cfg.callback_origins.check(wanted) {
                    Ok(url) => (StatusCode::SEE_OTHER, [(header::LOCATION, url.as_str())]).into_response(),
                    Err(why) => {
                        tracing::warn!(why, "sandbox did not follow a callbackPage");
                        message(
                            StatusCode::OK,
                            "完成",
                            &format!(
                                "{}。Not redirected to callbackPage: {why} (the sandbox redirects only to the \
proxy's origin with the embedded sandbox, else to QYS_SANDBOX_CALLBACK_ORIGINS, by default http loopback).",
                                how.text()
                            ),
                        )
                    }
                }
            }
            Self::Plugin { has_cb, .. } => {
                let body = format!(
                    "<h1>{0}</h1><p id=qys-sandbox-plugin-done data-event={1} data-has-cb={2}>{0}</p>\
<p>插件将向小程序触发事件 <code>{1}</code>{3}。</p>",
                    how.text(),
                    how.plugin_event(),
                    has_cb,
                    if *has_cb { "" } else { "(未设置 hasCb=true,小程序收不到该事件)" }
                );
                (StatusCode::OK, Html(page(how.text(), &body))).into_response()
            }
        }
    }
}

/// Checks a plugin request: a known page, `env=sandbox`, a live ticket, and the ticket's page.
fn plugin_session(sb: &Shared, name: &str, params: &Params) -> Result<(String, Arc<Session>, Surface), Refusal> {
    let Some(page) = PluginPage::parse(name) else {
        return Err(Refusal(
            StatusCode::NOT_FOUND,
            "页面不存在",
            format!(
                "The plugin has no page “{name}”; its pages are {}.",
                PluginPage::all().iter().map(|p| p.name()).collect::<Vec<_>>().join(", ")
            ),
        ));
    };
    match params.get("env") {
        Some(env) if env == PLUGIN_ENV => {}
        env => {
            let got = env.map_or_else(|| "no env (the plugin defaults to com)".into(), |e| format!("env “{e}”"));
            return Err(Refusal(
                StatusCode::BAD_REQUEST,
                "环境不符",
                format!(
                    "This sandbox answers to env={PLUGIN_ENV} only, not {got}; with env=com or env=cn the real \
plugin talks to the 契约锁 platform, which does not know this sandbox's tickets."
                ),
            ));
        }
    }
    let (ticket, session) = session(sb, params)?;
    let expected = PluginPage::of(&session.kind);
    if expected != page {
        return Err(Refusal(
            StatusCode::BAD_REQUEST,
            "页面与票据不符",
            format!("This ticket opens the plugin page “{}”, not “{}”.", expected.name(), page.name()),
        ));
    }
    let has_cb = params.get("hasCb").is_some_and(|v| v == "true");
    Ok((ticket, session, Surface::Plugin { page, has_cb }))
}

/// `GET /h5?ticket=…[&callbackPage=…]`.
pub async fn h5_show(State(sb): State<Shared>, Query(params): Query<Params>) -> Response {
    match session(&sb, &params) {
        Ok((ticket, session)) => show(&sb, &Surface::h5(&params), &ticket, &session),
        Err(refusal) => refusal.into_response(),
    }
}

/// `POST /h5/action`: the page's buttons (`op` = sign, auth, submit, exit, close).
pub async fn h5_act(State(sb): State<Shared>, Form(params): Form<Params>) -> Response {
    match session(&sb, &params) {
        Ok((ticket, session)) => act(&sb, &Surface::h5(&params), &ticket, &session, &params),
        Err(refusal) => refusal.into_response(),
    }
}

/// `GET /plugin/<page>?ticket=…&env=sandbox[&hasCb=true]`.
pub async fn plugin_show(State(sb): State<Shared>, Path(name): Path<String>, Query(params): Query<Params>) -> Response {
    match plugin_session(&sb, &name, &params) {
        Ok((ticket, session, surface)) => show(&sb, &surface, &ticket, &session),
        Err(refusal) => refusal.into_response(),
    }
}

/// `POST /plugin/action`: as `/h5/action`, with the form's `page`, `env` and `hasCb`.
pub async fn plugin_act(State(sb): State<Shared>, Form(params): Form<Params>) -> Response {
    let Some(name) = params.get("page") else {
        return message(StatusCode::BAD_REQUEST, "缺少页面", "The form must name the plugin page.");
    };
    match plugin_session(&sb, name, &params) {
        Ok((ticket, session, surface)) => act(&sb, &surface, &ticket, &session, &params),
        Err(refusal) => refusal.into_response(),
    }
}

fn field(name: &str, label: &str, value: &str, editable: bool) -> String {
    format!(
        "<label>{} <input id=qys-sandbox-{name} name={name} value=\"{}\"{}></label>",
        escape(label),
        escape(value),
        if editable { "" } else { " readonly" }
    )
}

fn text<'a>(v: &'a Value, key: &str) -> &'a str {
    v[key].as_str().unwrap_or("")
}

/// A personal field the person may fill: listed in `modifyFields`, or not prefilled at all.
fn personal_editable(req: &Value, key: &str, modify: &str) -> bool {
    text(req, key).is_empty() || req["modifyFields"].as_array().is_some_and(|a| a.iter().any(|v| v == modify))
}

/// A company field the applicant may fill: listed in `modifyFields` (a comma list), or empty.
fn company_editable(req: &Value, key: &str, modify: &str) -> bool {
    text(req, key).is_empty() || text(req, "modifyFields").split(',').any(|x| x.trim() == modify)
}

/// The page of a live session.
fn show(sb: &Shared, surface: &Surface, ticket: &str, session: &Session) -> Response {
    let (action, hidden) = (surface.action(), surface.hidden(ticket));
    let form = |inner: String| format!("<form method=post action={action}>{hidden}{inner}</form>");
    let body = match &session.kind {
        SessionKind::Sign { contract_id, contact } => {
            let (contract, real_name) = {
                let world = sb.world();
                let contract = world.contract(contract_id).expect("session contract exists").fixture.clone();
                (contract, world.is_real_name(contact))
            };
            let signatory = contract.signatories.iter().find(|s| *s.contact == **contact);
            let mut out = format!(
                "<h1>签署合同</h1><p id=qys-sandbox-subject>{}</p><p>合同编号 {}</p>",
                escape(&contract.subject),
                escape(&contract.id)
            );
            match signatory {
                Some(s) if s.status == "SIGNED" => {
                    out.push_str("<p id=qys-sandbox-signed>您已签署该合同。</p>");
                }
                Some(s) if s.tenant_type == "PERSONAL" && !real_name => {
                    out.push_str(&form(format!(
                        "<p>签署前请先完成实名认证。</p>{}{}\
<button id=qys-sandbox-auth-submit name=op value=auth>提交认证</button>\
<button id=qys-sandbox-exit name=op value=exit>退出认证</button>",
                        field("username", "姓名", &s.tenant_name, true),
                        field("idCardNo", "身份证号", "", true)
                    )));
                }
                Some(s) => out.push_str(&form(format!(
                    "<p>签署方:{}</p><button id=qys-sandbox-sign name=op value=sign>签署</button>",
                    escape(&s.tenant_name)
                ))),
                None => out.push_str("<p>无权查看该合同。</p>"),
            }
            out
        }
        SessionKind::PersonalAuth(req) => {
            let contact = req["user"]["contact"].as_str().unwrap_or("");
            let known = sb.world().persons.get(contact).filter(|p| p.real_name).cloned();
            let known = known.as_ref();
            let value = |key: &str, platform: Option<&str>| platform.unwrap_or(text(req, key)).to_owned();
            let mode = req["mode"].as_str().unwrap_or("DEFAULT");
            let mode_field = if mode == "DEFAULT" {
                "<label>认证方式 <select id=qys-sandbox-mode name=mode><option>IVS</option><option>FACE</option>\
<option>BANK</option></select></label>"
                    .to_owned()
            } else {
                format!("<p>认证方式 <span id=qys-sandbox-mode>{}</span></p>", escape(mode))
            };
            let mut fields = field(
                "username",
                "姓名",
                &value("username", known.map(|p| p.username.as_str())),
                known.is_none() && personal_editable(req, "username", "USERNAME"),
            );
            fields += &field(
                "idCardNo",
                "身份证号",
                &value("idCardNo", known.map(|p| p.id_card_no.as_str())),
                known.is_none() && personal_editable(req, "idCardNo", "IDCARDNO"),
            );
            if mode == "BANK" || mode == "DEFAULT" {
                fields += &field("bankNo", "银行卡号", text(req, "bankNo"), personal_editable(req, "bankNo", "BANKNO"));
                let mobile_editable = personal_editable(req, "bankMobile", "BANKMOBILE");
                fields += &field("bankMobile", "预留手机号", text(req, "bankMobile"), mobile_editable);
            }
            format!(
                "<h1>个人认证</h1><p>联系方式 {}</p>{}",
                escape(contact),
                form(format!(
                    "{mode_field}{fields}<button id=qys-sandbox-auth-submit name=op value=submit>提交认证</button>\
<button id=qys-sandbox-exit name=op value=exit>退出认证</button>"
                ))
            )
        }
        SessionKind::CompanyAuth { request, .. } => {
            let editable = |key: &str, modify: &str| company_editable(request, key, modify);
            let close = if request["closeButton"] != false {
                "<button id=qys-sandbox-close name=op value=close>关闭</button>"
            } else {
                ""
            };
            format!(
                "<h1>企业认证</h1>{}",
                form(format!(
                    "{}{}{}<p>申请人 {}</p><button id=qys-sandbox-auth-submit name=op value=submit>提交认证</button>{close}",
                    field("corpName", "企业名称", text(request, "companyName"), editable("companyName", "corpName")),
                    field("registerNo", "注册号", text(request, "registerNo"), editable("registerNo", "registerNo")),
                    field("legalPerson", "法定代表人", text(request, "legalPerson"), editable("legalPerson", "legalPerson")),
                    escape(text(&request["applicant"], "name"))
                ))
            )
        }
    };
    Html(page("契约锁沙箱", &format!("{}{body}", surface.banner()))).into_response()
}

/// A button of a live session's page (`op` = sign, auth, submit, exit, close).
fn act(sb: &Shared, surface: &Surface, ticket: &str, session: &Session, params: &Params) -> Response {
    let op = params.get("op").map(String::as_str).unwrap_or("");
    let posted = |k: &str| params.get(k).map(|v| v.trim().to_owned()).unwrap_or_default();
    match (&session.kind, op) {
        (SessionKind::Sign { .. } | SessionKind::PersonalAuth(_), "exit") => surface.finish(sb, session, Finish::Exited),
        (SessionKind::CompanyAuth { request, .. }, "close") if request["closeButton"] != false => {
            surface.finish(sb, session, Finish::Closed)
        }
        (SessionKind::Sign { contact, .. }, "auth") => {
            let (username, id_card_no) = (posted("username"), posted("idCardNo"));
            if username.is_empty() || id_card_no.is_empty() {
                return message(StatusCode::BAD_REQUEST, "信息不完整", "Name and ID card number are required.");
            }
            let person = Person {
                contact: contact.to_string(),
                username,
                id_card_no,
                real_name: true,
                mode: Some("IVS".into()),
                ..Person::default()
            };
            sb.world().persons.insert(contact.to_string(), person);
            (StatusCode::SEE_OTHER, [(header::LOCATION, surface.url(ticket))]).into_response()
        }
        (SessionKind::Sign { contract_id, contact }, "sign") => {
            match sign(sb, contract_id, contact) {
                Ok(()) => surface.finish(sb, session, Finish::Signed),
                Err((status, title, text)) => message(status, title, text),
            }
        }
        (SessionKind::PersonalAuth(req), "submit") => submit_personal(sb, surface, ticket, session, req, params),
        (SessionKind::CompanyAuth { request, request_id }, "submit") => {
            let pick = |form_key: &str, req_key: &str, modify: &str| {
                if company_editable(request, req_key, modify) { posted(form_key) } else { text(request, req_key).to_owned() }
            };
            let company = Company {
                name: pick("corpName", "companyName", "corpName"),
                register_no: pick("registerNo", "registerNo", "registerNo"),
                legal_person: pick("legalPerson", "legalPerson", "legalPerson"),
                authenticated: true,
                request_id: Some(request_id.clone()),
                requested_name: Some(text(request, "companyName").to_owned()),
            };
            if company.name.is_empty() || company.register_no.is_empty() || company.legal_person.is_empty() {
                return message(StatusCode::BAD_REQUEST, "信息不完整", "Name, register number and legal person are required.");
            }
            let auth_info = json!({
                "name": company.name,
                "registerNo": company.register_no,
                "legalPerson": company.legal_person,
                "applicantName": text(&request["applicant"], "name"),
                "applicantPhone": text(&request["applicant"], "contact"),
            });
            sb.world().insert_company(company);
            if let Some(url) = &session.callback_url {
                let form = vec![
                    ("status".to_owned(), "1".to_owned()),
                    ("actionEvent".to_owned(), "7".to_owned()),
                    ("requestId".to_owned(), request_id.clone()),
                    ("authInfo".to_owned(), auth_info.to_string()),
                ];
                deliver::spawn(sb.http.clone(), url.to_string(), form, sb.cfg.callback_retry_delay);
            }
            surface.finish(sb, session, Finish::AuthPassed)
        }
        _ => message(StatusCode::BAD_REQUEST, "无效操作", "This action is not available on this page."),
    }
}

/// Signs `contract_id` as `contact`, under the world lock; the page is rendered after.
fn sign(sb: &Shared, contract_id: &str, contact: &str) -> Result<(), (StatusCode, &'static str, &'static str)> {
    let mut world = sb.world();
    let real_name = world.is_real_name(contact);
    let contract = world.contract_mut(contract_id).expect("session contract exists");
    let Some(at) = contract.fixture.signatories.iter().position(|s| s.contact == contact) else {
        return Err((StatusCode::FORBIDDEN, "无权签署", "Not a signatory."));
    };
    let signatory = &contract.fixture.signatories[at];
    if signatory.status == "SIGNED" || contract.fixture.status != "SIGNING" {
        return Err((StatusCode::CONFLICT, "无法签署", "This contract was already signed by you."));
    }
    if signatory.tenant_type == "PERSONAL" && !real_name {
        return Err((StatusCode::FORBIDDEN, "需要认证", "Authenticate before signing."));
    }
    // Copies the contract only if a page being rendered still holds the old version.
    let fixture = Arc::make_mut(&mut contract.fixture);
    fixture.signatories[at].status = "SIGNED".into();
    if fixture.signatories.iter().all(|s| s.status == "SIGNED") {
        fixture.status = "COMPLETE".into();
    }
    Ok(())
}

fn submit_personal(
    sb: &Shared,
    surface: &Surface,
    ticket: &str,
    session: &Session,
    req: &Value,
    params: &Params,
) -> Response {
    let contact = req["user"]["contact"].as_str().unwrap_or("").to_owned();
    let pick = |key: &str, modify: &str| {
        let value = if personal_editable(req, key, modify) { params.get(key).map(String::as_str) } else { req[key].as_str() };
        value.unwrap_or("").trim().to_owned()
    };
    let requested = req["mode"].as_str().unwrap_or("DEFAULT");
    let mode = if requested == "DEFAULT" {
        match params.get("mode").map(String::as_str) {
            Some(m @ ("IVS" | "FACE" | "BANK")) => m.to_owned(),
            _ => "IVS".to_owned(),
        }
    } else {
        requested.to_owned()
    };
    let mut world = sb.world();
    let person = match world.persons.get(&contact).filter(|p| p.real_name) {
        Some(known) => Person { mode: known.mode.clone().or(Some(mode.clone())), ..known.clone() },
        None => Person {
            contact: contact.clone(),
            username: pick("username", "USERNAME"),
            id_card_no: pick("idCardNo", "IDCARDNO"),
            bank_no: Some(pick("bankNo", "BANKNO")).filter(|_| mode == "BANK"),
            bank_mobile: Some(pick("bankMobile", "BANKMOBILE")).filter(|_| mode == "BANK"),
            real_name: true,
            mode: Some(mode.clone()),
        },
    };
    let missing_bank = mode == "BANK"
        && (person.bank_no.as_deref().unwrap_or("").is_empty() || person.bank_mobile.as_deref().unwrap_or("").is_empty());
    if person.username.is_empty() || person.id_card_no.is_empty() || missing_bank {
        return message(StatusCode::BAD_REQUEST, "信息不完整", "Fill in every field of this authentication mode.");
    }
    world.persons.insert(contact, person);
    drop(world);
    if let Some(url) = &session.callback_url {
        let form = vec![
            ("mode".to_owned(), mode),
            ("status".to_owned(), "1".to_owned()),
            ("authId".to_owned(), ticket.to_owned()),
        ];
        deliver::spawn(sb.http.clone(), url.to_string(), form, sb.cfg.callback_retry_delay);
    }
    surface.finish(sb, session, Finish::AuthPassed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plugin_page_urls_keep_env_and_has_cb_and_name_the_page_in_the_path() {
        let surface = Surface::Plugin { page: PluginPage(plugin_page(Action::PersonalSign)), has_cb: true };
        assert_eq!(surface.url("abc"), "/plugin/doc?ticket=abc&env=sandbox&hasCb=true");
        assert_eq!(surface.action(), "/plugin/action");
        let hidden = surface.hidden("a\"b");
        assert!(hidden.contains("name=ticket value=\"a&quot;b\""), "{hidden}");
        assert!(hidden.contains("name=page value=\"doc\""), "{hidden}");
        let quiet = Surface::Plugin { page: PluginPage(plugin_page(Action::EnterpriseAuth)), has_cb: false };
        assert_eq!(quiet.url("abc"), "/plugin/enterprise-auth?ticket=abc&env=sandbox");
    }

    #[test]
    fn h5_page_urls_carry_an_encoded_callback_page() {
        let surface = Surface::H5 { callback_page: Some("https://p.example/r?t=a&b".into()) };
        assert_eq!(surface.url("abc"), "/h5?ticket=abc&callbackPage=https%3A%2F%2Fp.example%2Fr%3Ft%3Da%26b");
        assert_eq!(surface.action(), "/h5/action");
        assert_eq!(Surface::H5 { callback_page: None }.url("abc"), "/h5?ticket=abc");
    }

    #[test]
    fn plugin_pages_are_the_cores_and_match_session_kinds_and_events_match_outcomes() {
        let names: Vec<_> = PluginPage::all().into_iter().map(PluginPage::name).collect();
        assert_eq!(names, ["doc", "personal-auth", "enterprise-auth"]);
        for name in names {
            assert_eq!(PluginPage::parse(name).map(PluginPage::name), Some(name));
        }
        assert_eq!(PluginPage::parse("h5"), None);
        assert_eq!(PluginPage::parse("Doc"), None);
        let sign = SessionKind::Sign { contract_id: "1".into(), contact: "2".into() };
        assert_eq!(PluginPage::of(&sign).name(), plugin_page(Action::PersonalSign));
        assert_eq!(PluginPage::of(&sign).name(), plugin_page(Action::EnterpriseSign));
        assert_eq!(PluginPage::of(&SessionKind::PersonalAuth(json!({}))).name(), plugin_page(Action::PersonalAuth));
        let company = SessionKind::CompanyAuth { request: Box::new(json!({})), request_id: "r".into() };
        assert_eq!(PluginPage::of(&company).name(), plugin_page(Action::EnterpriseAuth));
        let events: Vec<_> =
            [Finish::Signed, Finish::AuthPassed, Finish::Exited, Finish::Closed].map(Finish::plugin_event).into();
        assert_eq!(events, ["signSuccessCb", "authSuccessCb", "authFailCb", "authFailCb"]);
    }
}
