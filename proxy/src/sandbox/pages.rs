//! The sandbox's hosted H5 pages: signing (with an auth step), personal auth and company auth.
//! Plain forms with stable element ids for tests: `#qys-sandbox-sign`, `#qys-sandbox-auth-submit`,
//! `#qys-sandbox-exit`, `#qys-sandbox-close`. Finishing redirects to `callbackPage`.

use std::collections::HashMap;

use axum::extract::{Form, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use serde_json::{json, Value};

use super::world::{Company, Person, Session, SessionKind};
use super::{deliver, Shared};
use crate::html::{escape, page};
use crate::unix_millis;

type Params = HashMap<String, String>;

fn message(status: StatusCode, title: &str, text: &str) -> Response {
    let body = format!("<h1>{}</h1><p id=qys-sandbox-message>{}</p>", escape(title), escape(text));
    (status, Html(page(title, &body))).into_response()
}

fn session(sb: &Shared, params: &Params) -> Result<(String, Session), Response> {
    let ticket = params.get("ticket").cloned().unwrap_or_default();
    let found = sb.world().sessions.get(&ticket).cloned();
    match found {
        Some(s) if s.expires_ms > unix_millis() => Ok((ticket, s)),
        Some(_) => Err(message(StatusCode::GONE, "链接已过期", "This page link has expired.")),
        None => Err(message(StatusCode::NOT_FOUND, "链接无效", "Unknown ticket.")),
    }
}

/// Where to go when the page finishes: the session's `callbackPage` (page-URL mode) or the one
/// passed on the page URL (ticket mode); only http(s).
fn callback_page(session: &Session, params: &Params) -> Option<String> {
    session
        .callback_page
        .clone()
        .or_else(|| params.get("callbackPage").cloned())
        .filter(|u| u.starts_with("http://") || u.starts_with("https://"))
}

fn finish(session: &Session, params: &Params, text: &str) -> Response {
    match callback_page(session, params) {
        Some(url) => (StatusCode::SEE_OTHER, [(header::LOCATION, url)]).into_response(),
        None => message(StatusCode::OK, "完成", text),
    }
}

fn hidden(ticket: &str, params: &Params) -> String {
    let mut out = format!("<input type=hidden name=ticket value=\"{}\">", escape(ticket));
    if let Some(cb) = params.get("callbackPage") {
        out.push_str(&format!("<input type=hidden name=callbackPage value=\"{}\">", escape(cb)));
    }
    out
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

/// `GET /h5?ticket=…[&callbackPage=…]`.
pub async fn show(State(sb): State<Shared>, Query(params): Query<Params>) -> Response {
    let (ticket, session) = match session(&sb, &params) {
        Ok(s) => s,
        Err(page) => return page,
    };
    let form = |inner: String| {
        format!("<form method=post action=/h5/action>{}{inner}</form>", hidden(&ticket, &params))
    };
    let world = sb.world();
    let body = match &session.kind {
        SessionKind::Sign { contract_id, contact } => {
            let contract = &world.contracts[contract_id].fixture;
            let signatory = contract.signatories.iter().find(|s| &s.contact == contact);
            let mut out = format!(
                "<h1>签署合同</h1><p id=qys-sandbox-subject>{}</p><p>合同编号 {}</p>",
                escape(&contract.subject),
                escape(&contract.id)
            );
            match signatory {
                Some(s) if s.status == "SIGNED" => {
                    out.push_str("<p id=qys-sandbox-signed>您已签署该合同。</p>");
                }
                Some(s) if s.tenant_type == "PERSONAL" && !world.is_real_name(contact) => {
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
            let known = world.persons.get(contact).filter(|p| p.real_name);
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
    drop(world);
    Html(page("契约锁沙箱", &body)).into_response()
}

/// `POST /h5/action`: the page's buttons (`op` = sign, auth, submit, exit, close).
pub async fn act(State(sb): State<Shared>, Form(params): Form<Params>) -> Response {
    let (ticket, session) = match session(&sb, &params) {
        Ok(s) => s,
        Err(page) => return page,
    };
    let op = params.get("op").map(String::as_str).unwrap_or("");
    let posted = |k: &str| params.get(k).map(|v| v.trim().to_owned()).unwrap_or_default();
    match (&session.kind, op) {
        (SessionKind::Sign { .. } | SessionKind::PersonalAuth(_), "exit") => finish(&session, &params, "已退出认证。"),
        (SessionKind::CompanyAuth { request, .. }, "close") if request["closeButton"] != false => {
            finish(&session, &params, "已关闭。")
        }
        (SessionKind::Sign { contact, .. }, "auth") => {
            let (username, id_card_no) = (posted("username"), posted("idCardNo"));
            if username.is_empty() || id_card_no.is_empty() {
                return message(StatusCode::BAD_REQUEST, "信息不完整", "Name and ID card number are required.");
            }
            let person = Person {
                contact: contact.clone(),
                username,
                id_card_no,
                real_name: true,
                mode: Some("IVS".into()),
                ..Person::default()
            };
            sb.world().persons.insert(contact.clone(), person);
            let mut back = format!("/h5?ticket={ticket}");
            if let Some(cb) = params.get("callbackPage") {
                back.push_str("&callbackPage=");
                back.extend(form_urlencoded::byte_serialize(cb.as_bytes()));
            }
            (StatusCode::SEE_OTHER, [(header::LOCATION, back)]).into_response()
        }
        (SessionKind::Sign { contract_id, contact }, "sign") => {
            let mut world = sb.world();
            let real_name = world.is_real_name(contact);
            let contract = &mut world.contracts.get_mut(contract_id).expect("session contract exists").fixture;
            let Some(signatory) = contract.signatories.iter_mut().find(|s| &s.contact == contact) else {
                return message(StatusCode::FORBIDDEN, "无权签署", "Not a signatory.");
            };
            if signatory.status == "SIGNED" || contract.status != "SIGNING" {
                return message(StatusCode::CONFLICT, "无法签署", "This contract was already signed by you.");
            }
            if signatory.tenant_type == "PERSONAL" && !real_name {
                return message(StatusCode::FORBIDDEN, "需要认证", "Authenticate before signing.");
            }
            signatory.status = "SIGNED".into();
            if contract.signatories.iter().all(|s| s.status == "SIGNED") {
                contract.status = "COMPLETE".into();
            }
            drop(world);
            finish(&session, &params, "签署成功。")
        }
        (SessionKind::PersonalAuth(req), "submit") => submit_personal(&sb, &ticket, &session, req, &params),
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
            sb.world().companies.insert(company.name.clone(), company);
            if let Some(url) = &session.callback_url {
                let form = vec![
                    ("status".to_owned(), "1".to_owned()),
                    ("actionEvent".to_owned(), "7".to_owned()),
                    ("requestId".to_owned(), request_id.clone()),
                    ("authInfo".to_owned(), auth_info.to_string()),
                ];
                deliver::spawn(sb.http.clone(), url.clone(), form, sb.cfg.callback_retry_delay);
            }
            finish(&session, &params, "认证成功。")
        }
        _ => message(StatusCode::BAD_REQUEST, "无效操作", "This action is not available on this page."),
    }
}

fn submit_personal(sb: &Shared, ticket: &str, session: &Session, req: &Value, params: &Params) -> Response {
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
        deliver::spawn(sb.http.clone(), url.clone(), form, sb.cfg.callback_retry_delay);
    }
    finish(session, params, "认证成功。")
}
