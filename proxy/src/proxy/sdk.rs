//! The SDK endpoint: body decoding, the four flows and `outcome`, and the platform's ticket and
//! page-URL calls.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};

use super::callbacks::MAX_QUERY;
use super::clients::Client;
use super::confirm::confirm;
use super::error::ProxyError;
use super::{normalise_callback_url, read_body, url_under, with_cors, App, UpstreamMode};
use crate::mask::Masked;
use crate::platform::PlatformError;
use crate::protocol::{self, codes, Action, Params, Presentation, ProtocolError, Request as SdkMessage, SdkRequest};
use crate::token::FlowToken;
use crate::unix_millis;

impl App {
    /// The `callbackUrl` sent to the platform: the proxy's own receiver, or a browser-supplied
    /// one under an allow-list entry, forwarded exactly in the normalised form that was checked
    /// (never the raw text, which the platform or a server behind it might read otherwise).
    /// The proxy's own receiver carries the flow's state and its sealed flow token (`t`): the
    /// forwarder verifies a callback through that token, so a callback nobody sent through a
    /// flow of this proxy can never be forwarded as verified (issue 9). Its `sig` (an HMAC of
    /// the kind, state and token that no browser sees) is what the receiver stores a delivery
    /// for; one without it is only counted. A query longer than the receiver takes is refused
    /// here: the platform's deliveries to it would all be dropped as malformed.
    fn callback_url(&self, requested: Option<&str>, kind: &str, receiver: &str, state: &str, flow: &str) -> Result<String, ProtocolError> {
        let invalid = |message: String| ProtocolError { code: codes::INVALID_PARAM, message };
        let Some(requested) = requested else {
            let sig = self.cfg.token_key.callback_sig(kind, state, flow);
            let query = format!("flow={state}&t={flow}&sig={sig}");
            if query.len() > MAX_QUERY {
                return Err(invalid(format!(
                    "this flow's callback URL would have a {}-byte query, more than the {MAX_QUERY} its receiver accepts: \
                     shorten the company name or the contact (or the page's origin)",
                    query.len()
                )));
            }
            return Ok(format!("{}{receiver}?{query}", self.cfg.public_url));
        };
        let url = normalise_callback_url(requested).map_err(|why| invalid(format!("callbackUrl {why}")))?;
        if !self.callback_prefixes.iter().any(|prefix| url_under(&url, prefix)) {
            return Err(invalid("callbackUrl is not in the proxy's allowlist (QYS_CALLBACK_URL_ALLOWLIST)".into()));
        }
        // Deliveries there would carry no `sig` and only be counted; without a callbackUrl the
        // platform gets the receiver's signed URL.
        if self.is_own_receiver(&url) {
            return Err(invalid("callbackUrl is this proxy's own callback receiver: leave callbackUrl out to use it".into()));
        }
        Ok(url.into())
    }

    /// Whether `url` (normalised) names one of the proxy's callback receivers, whatever its query.
    fn is_own_receiver(&self, url: &url::Url) -> bool {
        [&self.cfg.paths.personal_callback, &self.cfg.paths.company_callback].into_iter().any(|path| {
            normalise_callback_url(&format!("{}{path}", self.cfg.public_url))
                .is_ok_and(|own| own.origin() == url.origin() && own.path() == url.path())
        })
    }

    /// A redirect's `returnUrl`, normalised to plain ASCII (so it fits a `Location` header):
    /// on the calling page's origin when the request has one, and on an allowed origin, so the
    /// return page can only ever send browsers back to the integrator's own pages.
    fn return_url(&self, requested: &str, origin: Option<&str>) -> Result<String, ProtocolError> {
        let invalid = |message: String| ProtocolError { code: codes::INVALID_PARAM, message };
        let url = url::Url::parse(requested)
            .ok()
            .filter(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some())
            .ok_or_else(|| invalid("returnUrl must be an absolute http(s) URL".into()))?;
        if !url.username().is_empty() || url.password().is_some() {
            return Err(invalid("returnUrl must not contain user-info".into()));
        }
        let url_origin = url.origin().ascii_serialization();
        if let Some(origin) = origin.filter(|o| *o != url_origin) {
            return Err(invalid(format!("returnUrl must be on the calling page's origin {origin}, not {url_origin}")));
        }
        if !self.origin_allowed(&url_origin) {
            return Err(invalid(format!(
                "returnUrl's origin {url_origin} is not allowed; add it to QYS_ALLOWED_ORIGINS"
            )));
        }
        Ok(url.into())
    }
}

fn decode_sdk_request(headers: &HeaderMap, body: &[u8]) -> Result<SdkMessage, ProtocolError> {
    let content_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    let mime = content_type.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    let bad = |message: String| ProtocolError { code: codes::BAD_REQUEST_DATA, message };
    match mime.as_str() {
        "application/x-www-form-urlencoded" => {
            let mut request_data = None;
            for (key, value) in form_urlencoded::parse(body) {
                if key == "requestData" {
                    if request_data.is_some() {
                        return Err(bad("requestData appears more than once".into()));
                    }
                    request_data = Some(value.into_owned());
                }
            }
            let request_data = request_data.ok_or_else(|| bad("the form has no requestData field".into()))?;
            protocol::parse_request(&request_data)
        }
        "application/json" => {
            let text = std::str::from_utf8(body).map_err(|_| bad("the body is not UTF-8".into()))?;
            protocol::parse_request(text)
        }
        _ => Err(ProtocolError {
            code: codes::UNSUPPORTED_MEDIA_TYPE,
            message: "send application/x-www-form-urlencoded (requestData=…) or application/json".into(),
        }),
    }
}

/// The SDK endpoint: every answer to an allowed origin, refusals included, carries its CORS
/// headers.
pub(super) async fn sdk_endpoint(State(app): State<Arc<App>>, request: Request) -> Result<Response, ProxyError> {
    let origin = app.check_origin(request.headers())?;
    let answer = app.answer(request, origin.as_deref()).await;
    Ok(with_cors(answer.into_response(), origin.as_deref()))
}

fn success(result: Value) -> Response {
    Json(json!({"code": 0, "message": "SUCCESS", "result": result})).into_response()
}

impl App {
    async fn answer(&self, request: Request, origin: Option<&str>) -> Result<Response, ProxyError> {
        let (parts, body) = request.into_parts();
        let client = self.client(&parts.extensions, &parts.headers);
        let body = read_body(body).await?;
        let message = decode_sdk_request(&parts.headers, &body)
            .inspect_err(|e| tracing::info!(code = e.code, reason = ?e.message, "refused SDK request"))?;
        match message {
            SdkMessage::Flow(sdk) => self.start_flow(*sdk, origin, &client).await,
            SdkMessage::Outcome { state, flow } => self.outcome(&state, &flow, origin, &client).await,
        }
    }

    /// Every input is checked before the source is charged, so a bad one gets its own error; the
    /// source's limit comes before the instance's, so one address over its own limit spends none of
    /// the instance's flow starts.
    async fn start_flow(&self, sdk: SdkRequest, origin: Option<&str>, client: &Client) -> Result<Response, ProxyError> {
        let started = std::time::Instant::now();
        let (subject, contact) = match &sdk.params {
            Params::Sign(p) => (p.contract_id.clone(), p.contact.value.clone()),
            Params::PersonalAuth(p) => (String::new(), p.contact.value.clone()),
            Params::EnterpriseAuth(p) => (p.company_name.clone(), p.applicant.value.clone()),
        };
        let return_url = match (sdk.presentation, &sdk.return_url) {
            (Presentation::Redirect, Some(url)) => Some(self.return_url(url, origin)?),
            _ => None,
        };
        let token = FlowToken {
            action: sdk.action,
            state: sdk.state.clone(),
            target_origin: origin.unwrap_or(&self.public_origin).to_owned(),
            subject,
            contact: contact.clone(),
            expires: unix_millis() / 1000 + self.cfg.token_ttl.as_secs(),
            return_url,
        };
        let flow = self.cfg.token_key.seal(&token);
        if flow.len() > protocol::FLOW_TOKEN_MAX {
            // Only a long returnUrl full of multi-byte characters gets here; the SDK could not
            // take the token back.
            return Err(ProtocolError {
                code: codes::INVALID_PARAM,
                message: format!("returnUrl is too long: the flow token would exceed {} bytes", protocol::FLOW_TOKEN_MAX),
            }
            .into());
        }
        // The callback URL's own token leaves out the return URL: it stays short (callback
        // queries are ≤ MAX_QUERY) and tells the platform nothing about the calling page.
        let callback_flow = self.cfg.token_key.seal(&FlowToken { return_url: None, ..token.clone() });
        let callback_url = match &sdk.params {
            Params::Sign(_) => None,
            Params::PersonalAuth(p) => Some(self.callback_url(
                p.callback_url.as_deref(),
                "personal-auth",
                &self.cfg.paths.personal_callback,
                &sdk.state,
                &callback_flow,
            )),
            Params::EnterpriseAuth(p) => Some(self.callback_url(
                p.callback_url.as_deref(),
                "company-auth",
                &self.cfg.paths.company_callback,
                &sdk.state,
                &callback_flow,
            )),
        }
        .transpose()?;
        self.charge(client, "flow start").map_err(ProxyError::RateLimited)?;
        self.start_allowed().map_err(ProxyError::StartsSpent)?;
        let granted = match sdk.presentation {
            Presentation::MiniProgram => self
                .ticket(&sdk, callback_url.as_deref())
                .await
                .map(|ticket| json!({"ticket": ticket, "env": self.cfg.miniprogram_env, "flow": flow})),
            Presentation::Iframe | Presentation::Redirect => {
                // A redirect's return link carries the calling page's URL: sealed, so the
                // platform (which sees the link) cannot read it; an iframe's is only signed.
                let link_token = if token.return_url.is_some() { flow.clone() } else { self.cfg.token_key.sign(&token) };
                let callback_page =
                    format!("{}{}?t={}", self.cfg.public_url, self.cfg.paths.return_page, link_token);
                self.page_url(&sdk, &callback_page, callback_url.as_deref()).await.map(|page_url| {
                    json!({"pageUrl": page_url, "returnOrigin": self.public_origin, "flow": flow})
                })
            }
        };
        let result = granted.inspect_err(|e| {
            let (code, message) = e.logged();
            tracing::warn!(action = sdk.action.name(), contact = %Masked(&contact), code, message = ?message, "platform call failed");
        })?;
        tracing::info!(
            action = sdk.action.name(),
            presentation = sdk.presentation.name(),
            contact = %Masked(&contact),
            elapsed_ms = started.elapsed().as_millis() as u64,
            "flow started"
        );
        Ok(success(result))
    }

    /// `outcome`: the flow token's facts, confirmed with the platform like the return page does.
    async fn outcome(&self, state: &str, flow: &str, origin: Option<&str>, client: &Client) -> Result<Response, ProxyError> {
        let token = self
            .cfg
            .token_key
            .unseal(flow, unix_millis() / 1000)
            .map_err(|e| format!("{e:?}"))
            // The token must be this flow's, asked for by the page that started it.
            .and_then(|token| {
                let ours = token.state == state && origin.is_none_or(|o| o == token.target_origin);
                ours.then_some(token).ok_or_else(|| "the token belongs to another flow or page".to_owned())
            })
            .inspect_err(|reason| tracing::info!(reason, "outcome refused a flow token"))
            .map_err(|_| ProxyError::FlowTokenInvalid)?;
        self.charge(client, "outcome").map_err(ProxyError::RateLimited)?;
        let confirmed = confirm(&self.cfg.platform, &token, false).await?;
        let result = match confirmed {
            Some((event, data)) => json!({"event": event, "data": data}),
            None => json!({"event": "pending"}),
        };
        tracing::info!(action = token.action.name(), contact = %Masked(&token.contact), event = ?result["event"], "outcome confirmed");
        Ok(success(result))
    }

    /// The ticket exchange of seeds 000–003 (mini-program flows, and ticket mode's first step).
    async fn ticket(&self, sdk: &SdkRequest, callback_url: Option<&str>) -> Result<String, PlatformError> {
        let path = match sdk.action {
            Action::PersonalSign | Action::EnterpriseSign => "/v2/contract/miniappexchange",
            Action::PersonalAuth => "/v2/personalauth/miniappexchange",
            Action::EnterpriseAuth => "/companyauth/miniappexchange",
        };
        let result = self.cfg.platform.post(path, &protocol::ticket_body(&sdk.params, callback_url)).await?;
        let ticket = result_field(&result, "ticket")?;
        // The SDK's rule for a ticket: the plugin gets it as is, ticket mode puts it in a URL.
        let plain = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~');
        if ticket.is_empty() || ticket.len() > TICKET_MAX || !ticket.bytes().all(plain) {
            return Err(PlatformError::BadResponse(format!(
                "result.ticket is not 1–{TICKET_MAX} characters of A–Z a–z 0–9 - _ . ~"
            )));
        }
        Ok(ticket)
    }

    async fn page_url(&self, sdk: &SdkRequest, callback_page: &str, callback_url: Option<&str>) -> Result<String, PlatformError> {
        match &self.cfg.upstream_mode {
            UpstreamMode::Ticket { template } => {
                let ticket = self.ticket(sdk, callback_url).await?;
                Ok(fill_template(template, &ticket, callback_page))
            }
            UpstreamMode::PageUrl => {
                let mut body = protocol::ticket_body(&sdk.params, callback_url);
                body["callbackPage"] = json!(callback_page);
                let (path, name) = match sdk.action {
                    Action::PersonalSign | Action::EnterpriseSign => {
                        body["pageType"] = json!("SIGN");
                        ("/v2/contract/pageurl", "pageUrl")
                    }
                    Action::PersonalAuth => ("/v2/personalauth", "authUrl"),
                    Action::EnterpriseAuth => ("/companyauth/h5page", "authUrl"),
                };
                checked_page_url(&result_field(&self.cfg.platform.post(path, &body).await?, name)?, name)
            }
        }
    }
}

/// Longest ticket and page URL passed on: the SDK's own limits.
const TICKET_MAX: usize = 512;
const PAGE_URL_MAX: usize = 4096;

/// The platform's page URL as the browser will get it: an absolute http(s) URL without
/// user-info, in its WHATWG serialisation (what was checked is what is sent), at most
/// [`PAGE_URL_MAX`] bytes. Anything else is the platform's bad answer (50201), not a page the
/// SDK would refuse after the flow was started.
fn checked_page_url(raw: &str, name: &str) -> Result<String, PlatformError> {
    url::Url::parse(raw)
        .ok()
        .filter(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some())
        .filter(|u| u.username().is_empty() && u.password().is_none() && u.as_str().len() <= PAGE_URL_MAX)
        .map(String::from)
        .ok_or_else(|| {
            PlatformError::BadResponse(format!("result.{name} is not an absolute http(s) URL of at most {PAGE_URL_MAX} bytes"))
        })
}

fn result_field(result: &Value, name: &str) -> Result<String, PlatformError> {
    result
        .get(name)
        .and_then(Value::as_str)
        .map(str::to_owned)
        .ok_or_else(|| PlatformError::BadResponse(format!("result.{name} is missing")))
}

/// Fills `{ticket}` and `{callbackPage}`, each URL-encoded.
pub fn fill_template(template: &str, ticket: &str, callback_page: &str) -> String {
    let enc = |s: &str| form_urlencoded::byte_serialize(s.as_bytes()).collect::<String>();
    template.replace("{ticket}", &enc(ticket)).replace("{callbackPage}", &enc(callback_page))
}
