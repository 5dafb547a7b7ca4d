//! The wasm-bindgen layer: `qysSdk` and its four methods. Everything it decides is delegated to
//! the pure core; this file only touches `fetch`, the DOM and `message` events.

mod convert;
mod resources;

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use js_sys::{Function, Promise};
use wasm_bindgen::prelude::*;
use wasm_bindgen::closure::Closure;
use wasm_bindgen::JsCast;
use web_sys::{AbortController, Headers, HtmlIFrameElement, MessageEvent, RequestInit, Response};

use crate::error::{ErrorKind, QysError};
use crate::message::{Event, MessageGate};
use crate::options::Options;
use crate::params::{Action, Params};
use crate::value::{decimal, object, Value};
use crate::wire::{decode_response, form_encode, state_from_random, Envelope, PageGrant};
use convert::{callback, to_js, to_js_error, to_value};
use resources::{EventListener, Timeout};

#[wasm_bindgen(typescript_custom_section)]
const TYPES: &'static str = r#"
/** What went wrong: `code` is the platform's code for `platform` and the HTTP status for `http`. */
export type QysErrorKind = "invalidArgument" | "network" | "timeout" | "http" | "protocol" | "platform";
/** Every rejection of this SDK is an `Error` named `QysError`. */
export interface QysError extends Error {
  name: "QysError";
  kind: QysErrorKind;
  code: number | null;
  /** For `invalidArgument`: the path of the offending argument, e.g. `companyAuthBean.applicant.contact`. */
  param?: string;
}
/** Options of `new qysSdk(proxyUrl, options)`. */
export interface QysSdkOptions {
  /** Sent as query parameters with every request to the proxy (numbers must be integers). */
  query?: Record<string, string | number | boolean | null | undefined>;
  /** Abort the proxy request after this many milliseconds (default 15000). */
  timeoutMs?: number;
  /** Log each step to the console. */
  debug?: boolean;
}
export type ContactType = "MOBILE" | "EMAIL";
/** Callbacks of `personalSign` and `enterpriseSign`. */
export interface SignCallbacks {
  signSuccessCb?: (result: { contractId?: string }) => void;
  authFailCb?: () => void;
}
/** seed 004 §3 userInfo; `bankNo` and `contact` (bank reserved mobile) only after bank auth. */
export interface PersonalUserInfo { username?: string; mobile?: string; cardNo?: string; bankNo?: string; contact?: string }
/** The authenticated company's details. */
export interface CompanyInfo { name?: string; registerNo?: string; legalPerson?: string }
export interface AuthCallbacks<Info> {
  authSuccessCb?: (userInfo: Info) => void;
  authFailCb?: () => void;
}
/** Parameters of `personalAuth` (seed 004 §3). */
export interface PersonalAuthParams {
  mode?: "DEFAULT" | "FACE" | "BANK";
  contact: string;
  contactType?: ContactType;
  username?: string;
  idCardNo?: string;
  bankNo?: string;
  bankMobile?: string;
  manual?: boolean;
  callbackUrl?: string;
  modifyFields?: Array<"USERNAME" | "IDCARDNO" | "BANKNO" | "BANKMOBILE">;
}
/** Parameters of `enterpriseAuth` (seed 004 §6). */
export interface EnterpriseAuthParams {
  companyName: string;
  companyAuthBean: {
    companyName?: string;
    applicant: { name?: string; contact: string; contactType?: ContactType };
    registerNo?: string;
    legalPerson?: string;
    callbackUrl?: string;
    closeButton?: boolean;
    modifyFields?: Array<"corpName" | "registerNo" | "legalPerson">;
  };
}
"#;

/// One open flow. Its `message` listener lives as long as this value and holds the instance, so
/// an open flow keeps working after the page drops its `qysSdk` object.
struct Flow {
    id: u32,
    frame: HtmlIFrameElement,
    /// The iframe has loaded a page, so the page did put it in the document.
    loaded: Rc<Cell<bool>>,
    _messages: EventListener,
    _load: EventListener,
}

impl Flow {
    /// A flow whose iframe the page added and then removed can never finish.
    fn abandoned(&self) -> bool {
        self.loaded.get() && !self.frame.is_connected()
    }
}

struct Inner {
    /// Absolute proxy URL, query included.
    proxy_url: String,
    /// Origin and path of the proxy, for messages (the query may carry tokens).
    proxy_endpoint: String,
    /// Default `returnOrigin`.
    proxy_origin: String,
    options: Options,
    flows: RefCell<Vec<Flow>>,
    /// Requests in flight, aborted by `destroy()`.
    requests: RefCell<Vec<(u32, AbortController)>>,
    next_id: Cell<u32>,
    destroyed: Cell<bool>,
}

impl Inner {
    /// With `debug`, logs `[qys-sdk]` and the parts, joined, to the console.
    fn log(&self, parts: &[&str]) {
        if self.options.debug {
            web_sys::console::log_2(&"[qys-sdk]".into(), &parts.concat().into());
        }
    }

    fn next_id(&self) -> u32 {
        let id = self.next_id.get();
        self.next_id.set(id.wrapping_add(1));
        id
    }

    /// Drops the flow `id`, if given, and every abandoned one, with their listeners
    /// (wasm-bindgen defers freeing a closure that is running).
    fn close_flows(&self, id: Option<u32>) {
        let closed: Vec<Flow> = {
            let mut flows = self.flows.borrow_mut();
            let (closed, open) = flows.drain(..).partition(|f| Some(f.id) == id || f.abandoned());
            *flows = open;
            closed
        };
        drop(closed);
    }
}

/// The SDK instance: `new qysSdk(proxyUrl, { query, timeoutMs, debug })`.
#[wasm_bindgen]
pub struct QysSdk {
    inner: Rc<Inner>,
}

/// Something this page lacks (window, document, crypto, AbortController): the SDK cannot make or
/// show a request here. Reported as `network`, the kind for "the request could not be made".
fn missing(api: &str) -> QysError {
    QysError::new(ErrorKind::Network, [api, " is not available on this page"].concat())
}

/// Resolves `proxy_url` against the page and appends the `query` pairs to its own query, which is
/// kept byte for byte. Returns (URL, origin + path, origin).
fn resolve_proxy_url(proxy_url: &str, query: &[(String, String)]) -> Result<(String, String, String), QysError> {
    let bad = |why: &str| QysError::invalid_at("proxyUrl", &[" \"", proxy_url, "\" ", why]);
    let page = web_sys::window().and_then(|w| w.location().href().ok());
    let url = match page {
        Some(base) => web_sys::Url::new_with_base(proxy_url, &base),
        None => web_sys::Url::new(proxy_url),
    }
    .map_err(|_| bad("is not a URL (a relative URL needs a page to resolve against)"))?;
    if !matches!(url.protocol().as_str(), "http:" | "https:") {
        return Err(bad("must be an http(s) URL"));
    }
    let mut search = url.search();
    for (name, value) in query {
        search.push_str(if search.is_empty() { "?" } else { "&" });
        search.push_str(&form_encode(name));
        search.push('=');
        search.push_str(&form_encode(value));
    }
    url.set_search(&search);
    url.set_hash("");
    Ok((url.href(), [url.origin(), url.pathname()].concat(), url.origin()))
}

fn random_state() -> Result<String, QysError> {
    let crypto = web_sys::window().and_then(|w| w.crypto().ok()).ok_or_else(|| missing("crypto.getRandomValues"))?;
    let mut bytes = [0u8; 16];
    crypto.get_random_values_with_u8_array(&mut bytes).map_err(|_| missing("crypto.getRandomValues"))?;
    Ok(state_from_random(&bytes))
}

/// `JSON.stringify` turns NaN and ±Infinity into `null`; refuse them before it can.
fn finite(js: &JsValue, param: &str) -> Result<(), QysError> {
    match js.as_f64() {
        Some(n) if !n.is_finite() => Err(QysError::invalid_at(param, &[" must be a finite number"])),
        _ => Ok(()),
    }
}

/// The callbacks a flow may fire.
struct Callbacks {
    success: Option<Function>,
    fail: Option<Function>,
}

#[wasm_bindgen]
impl QysSdk {
    /// Creates an instance bound to the integrator's proxy; `proxyUrl` may be relative.
    #[wasm_bindgen(constructor)]
    pub fn new(
        #[wasm_bindgen(js_name = proxyUrl)] proxy_url: String,
        #[wasm_bindgen(unchecked_optional_param_type = "QysSdkOptions")] options: Option<JsValue>,
    ) -> Result<QysSdk, JsValue> {
        let build = || -> Result<QysSdk, QysError> {
            let options = options.unwrap_or(JsValue::UNDEFINED);
            if options.is_object() {
                let get = |key: &str| js_sys::Reflect::get(&options, &key.into()).unwrap_or(JsValue::UNDEFINED);
                finite(&get("timeoutMs"), "timeoutMs")?;
                let query = get("query");
                if query.is_object() {
                    for key in js_sys::Object::keys(query.unchecked_ref::<js_sys::Object>()).iter() {
                        let key = key.as_string().unwrap_or_default();
                        let value = js_sys::Reflect::get(&query, &key.as_str().into()).unwrap_or(JsValue::UNDEFINED);
                        finite(&value, &["query.", &key].concat())?;
                    }
                }
            }
            let options = Options::parse(&to_value(&options, "options")?)?;
            let (proxy_url, proxy_endpoint, proxy_origin) = resolve_proxy_url(&proxy_url, &options.query)?;
            let inner = Inner {
                proxy_url,
                proxy_endpoint,
                proxy_origin,
                options,
                flows: RefCell::default(),
                requests: RefCell::default(),
                next_id: Cell::new(0),
                destroyed: Cell::new(false),
            };
            inner.log(&["ready; proxy ", &inner.proxy_endpoint]);
            Ok(QysSdk { inner: Rc::new(inner) })
        };
        build().map_err(|e| to_js_error(&e))
    }

    /// Personal signing (seed 004 §2). Resolves to the iframe to append.
    #[wasm_bindgen(js_name = personalSign, unchecked_return_type = "Promise<HTMLElement>")]
    pub fn personal_sign(
        &self,
        #[wasm_bindgen(js_name = contractId, unchecked_param_type = "string | number | bigint")] contract_id: JsValue,
        #[wasm_bindgen(unchecked_param_type = "string")] contact: JsValue,
        #[wasm_bindgen(unchecked_optional_param_type = "SignCallbacks")] callbacks: Option<JsValue>,
    ) -> Promise {
        self.sign(Action::PersonalSign, contract_id, contact, callbacks)
    }

    /// Enterprise signing (seed 004 §5). Resolves to the iframe to append.
    #[wasm_bindgen(js_name = enterpriseSign, unchecked_return_type = "Promise<HTMLElement>")]
    pub fn enterprise_sign(
        &self,
        #[wasm_bindgen(js_name = contractId, unchecked_param_type = "string | number | bigint")] contract_id: JsValue,
        #[wasm_bindgen(unchecked_param_type = "string")] contact: JsValue,
        #[wasm_bindgen(unchecked_optional_param_type = "SignCallbacks")] callbacks: Option<JsValue>,
    ) -> Promise {
        self.sign(Action::EnterpriseSign, contract_id, contact, callbacks)
    }

    /// Personal authentication (seed 004 §3). Resolves to the iframe to append.
    #[wasm_bindgen(js_name = personalAuth, unchecked_return_type = "Promise<HTMLElement>")]
    pub fn personal_auth(
        &self,
        #[wasm_bindgen(unchecked_param_type = "PersonalAuthParams")] params: JsValue,
        #[wasm_bindgen(unchecked_optional_param_type = "AuthCallbacks<PersonalUserInfo>")] callbacks: Option<JsValue>,
    ) -> Promise {
        self.auth(Action::PersonalAuth, params, callbacks)
    }

    /// Enterprise authentication (seed 004 §6). Resolves to the iframe to append.
    #[wasm_bindgen(js_name = enterpriseAuth, unchecked_return_type = "Promise<HTMLElement>")]
    pub fn enterprise_auth(
        &self,
        #[wasm_bindgen(unchecked_param_type = "EnterpriseAuthParams")] params: JsValue,
        #[wasm_bindgen(unchecked_optional_param_type = "AuthCallbacks<CompanyInfo>")] callbacks: Option<JsValue>,
    ) -> Promise {
        self.auth(Action::EnterpriseAuth, params, callbacks)
    }

    /// Removes every listener this instance added and aborts its requests; no callback fires
    /// afterwards.
    pub fn destroy(&self) {
        self.inner.destroyed.set(true);
        let requests = std::mem::take(&mut *self.inner.requests.borrow_mut());
        requests.iter().for_each(|(_, controller)| controller.abort());
        let flows = std::mem::take(&mut *self.inner.flows.borrow_mut());
        drop(flows);
        self.inner.log(&["destroyed"]);
    }
}

impl QysSdk {
    fn sign(&self, action: Action, contract_id: JsValue, contact: JsValue, callbacks: Option<JsValue>) -> Promise {
        let callbacks = callbacks.unwrap_or(JsValue::UNDEFINED);
        let prepared = (|| {
            finite(&contract_id, "contractId")?;
            let contract_id = if contract_id.is_bigint() {
                // Exact, unlike a number; the core checks the digits like any string.
                let digits = contract_id.unchecked_ref::<js_sys::BigInt>().to_string(10);
                Value::String(digits.map(String::from).unwrap_or_default())
            } else {
                to_value(&contract_id, "contractId")?
            };
            let params = object([("contractId", contract_id), ("contact", to_value(&contact, "contact")?)]);
            let callbacks = Callbacks {
                success: callback(&callbacks, "signSuccessCb")?,
                fail: callback(&callbacks, "authFailCb")?,
            };
            Ok((Params::parse(action, &params)?, callbacks))
        })();
        self.start(action, prepared)
    }

    fn auth(&self, action: Action, params: JsValue, callbacks: Option<JsValue>) -> Promise {
        let callbacks = callbacks.unwrap_or(JsValue::UNDEFINED);
        let prepared = (|| {
            let params = Params::parse(action, &to_value(&params, "params")?)?;
            let callbacks = Callbacks {
                success: callback(&callbacks, "authSuccessCb")?,
                fail: callback(&callbacks, "authFailCb")?,
            };
            Ok((params, callbacks))
        })();
        self.start(action, prepared)
    }

    fn start(&self, action: Action, prepared: Result<(Params, Callbacks), QysError>) -> Promise {
        let inner = self.inner.clone();
        let mut begun = Some(begin(&inner, action, prepared));
        Promise::new(&mut |resolve, reject| match begun.take().expect("the executor runs once") {
            Ok(call) => await_answer(inner.clone(), call, resolve, reject),
            Err(e) => {
                let _ = reject.call1(&JsValue::UNDEFINED, &fail(&inner, action, &e));
            }
        })
    }
}

/// Settles `promise` into one callback that always runs: `Promise.allSettled([promise])`
/// hands it `{status, value | reason}`, so no closure is left uncalled (and leaked).
fn on_settled(promise: &Promise, next: impl FnOnce(Result<JsValue, JsValue>) + 'static) {
    let settled = Promise::all_settled(&js_sys::Array::of1(promise));
    let handler = Closure::once_into_js(move |outcomes: JsValue| {
        let outcome = js_sys::Reflect::get_u32(&outcomes, 0).unwrap_or(JsValue::UNDEFINED);
        let field = |name: &str| js_sys::Reflect::get(&outcome, &name.into()).unwrap_or(JsValue::UNDEFINED);
        next(if field("status") == "fulfilled" { Ok(field("value")) } else { Err(field("reason")) });
    });
    settled.unchecked_ref::<Thenable>().then(&handler);
}

#[wasm_bindgen]
extern "C" {
    /// A promise seen through `then` with an untyped callback (a self-freeing `once_into_js`
    /// function; js-sys's `then` wants a typed `Closure` that must be kept or leaked).
    type Thenable;
    #[wasm_bindgen(method)]
    fn then(this: &Thenable, callback: &JsValue) -> JsValue;
}

/// Waits for the proxy's response and its body, then settles the call's promise.
fn await_answer(inner: Rc<Inner>, mut call: Call, resolve: Function, reject: Function) {
    let fetch = call.fetch.take().expect("fetch started");
    on_settled(&fetch, move |response| {
        let settle = move |answer: Result<(u16, JsValue), JsValue>| {
            let action = call.action;
            inner.requests.borrow_mut().retain(|(id, _)| *id != call.id);
            match finish(&inner, call, answer) {
                Ok(frame) => resolve.call1(&JsValue::UNDEFINED, &frame),
                Err(e) => reject.call1(&JsValue::UNDEFINED, &fail(&inner, action, &e)),
            }
        };
        let response: Response = match response {
            Ok(response) => response.unchecked_into(),
            Err(e) => return drop(settle(Err(e))),
        };
        match response.text() {
            Ok(text) => on_settled(&text, move |text| drop(settle(text.map(|t| (response.status(), t))))),
            Err(e) => drop(settle(Err(e))),
        }
    });
}

/// One call between its request and the proxy's answer.
struct Call {
    id: u32,
    action: Action,
    state: String,
    callbacks: Callbacks,
    allow_camera: bool,
    fetch: Option<Promise>,
    timed_out: Rc<Cell<bool>>,
    _timer: Timeout,
}

fn destroyed() -> QysError {
    QysError::new(ErrorKind::InvalidArgument, "this qysSdk instance was destroyed")
}

/// Logs a failure (with `debug`) and turns it into the `QysError` the promise rejects with.
fn fail(inner: &Inner, action: Action, e: &QysError) -> JsValue {
    inner.log(&[action.name(), ": ", &e.message, " (", e.kind.as_str(), ")"]);
    to_js_error(e)
}

/// Validates, then sends one form POST to the proxy (a CORS simple request), aborted after `timeoutMs`.
#[inline(never)]
fn begin(inner: &Inner, action: Action, prepared: Result<(Params, Callbacks), QysError>) -> Result<Call, QysError> {
    if inner.destroyed.get() {
        return Err(destroyed());
    }
    let (params, callbacks) = prepared?;
    let allow_camera = match &params {
        Params::PersonalAuth(p) => p.mode != "BANK",
        Params::EnterpriseAuth(_) => false,
        Params::Sign(_) => true,
    };
    let envelope = Envelope { action, state: random_state()?, params };
    let window = web_sys::window().ok_or_else(|| missing("window"))?;
    let controller = AbortController::new().map_err(|_| missing("AbortController"))?;
    let headers = Headers::new().map_err(|_| missing("Headers"))?;
    let _ = headers.set("Content-Type", "application/x-www-form-urlencoded");
    let init = RequestInit::new();
    init.set_method("POST");
    init.set_headers(&headers);
    init.set_body(&JsValue::from_str(&envelope.to_form_body()));
    init.set_signal(Some(&controller.signal()));
    inner.log(&[action.name(), ": requesting a page from the proxy"]);
    let fetch = window.fetch_with_str_and_init(&inner.proxy_url, &init);
    let id = inner.next_id();
    inner.requests.borrow_mut().push((id, controller.clone()));
    let timed_out = Rc::new(Cell::new(false));
    let flag = timed_out.clone();
    let timer = Timeout::new(inner.options.timeout_ms, move || {
        flag.set(true);
        controller.abort();
    });
    Ok(Call { id, action, state: envelope.state, callbacks, allow_camera, fetch: Some(fetch), timed_out, _timer: timer })
}

/// Reads the proxy's answer and, on success, creates the iframe and starts listening.
#[inline(never)]
fn finish(inner: &Rc<Inner>, call: Call, answer: Result<(u16, JsValue), JsValue>) -> Result<JsValue, QysError> {
    if inner.destroyed.get() {
        return Err(destroyed());
    }
    let (status, text) = answer.map_err(|e| {
        if call.timed_out.get() {
            let ms = decimal(u64::from(inner.options.timeout_ms));
            QysError::new(ErrorKind::Timeout, ["the proxy did not answer within ", &ms, " ms"].concat())
        } else {
            let reason = e.dyn_ref::<js_sys::Error>().map(|e| String::from(e.message())).unwrap_or_default();
            let text = [
                "the proxy at ",
                &inner.proxy_endpoint,
                " could not be reached (",
                &reason,
                "); check the URL, the network and the proxy's allowed origins",
            ];
            QysError::new(ErrorKind::Network, text.concat())
        }
    })?;
    let body = Value::parse(&text.as_string().unwrap_or_default()).ok();
    let mut grant = decode_response(status, body.as_ref(), &inner.proxy_origin)?;
    // `event.origin` is always canonical (lowercase host, no default port); so must this be.
    grant.return_origin = web_sys::Url::new(&grant.return_origin)
        .map(|u| u.origin())
        .map_err(|_| QysError::new(ErrorKind::Protocol, "the proxy's answer is not protocol v1: result.returnOrigin"))?;
    inner.log(&[call.action.name(), ": page granted, return origin ", &grant.return_origin]);
    open_frame(inner, call.action, call.state, grant, call.callbacks, call.allow_camera).map(JsValue::from)
}

fn frame_title(action: Action) -> &'static str {
    match action {
        Action::PersonalSign => "契约锁 个人签署",
        Action::EnterpriseSign => "契约锁 企业签署",
        Action::PersonalAuth => "契约锁 个人认证",
        Action::EnterpriseAuth => "契约锁 企业认证",
    }
}

fn open_frame(
    inner: &Rc<Inner>,
    action: Action,
    state: String,
    grant: PageGrant,
    callbacks: Callbacks,
    allow_camera: bool,
) -> Result<HtmlIFrameElement, QysError> {
    let window = web_sys::window().ok_or_else(|| missing("window"))?;
    let document = window.document().ok_or_else(|| missing("document"))?;
    let frame: HtmlIFrameElement =
        document.create_element("iframe").map_err(|_| missing("document.createElement"))?.unchecked_into();
    frame.set_src(&grant.page_url);
    frame.set_title(frame_title(action));
    if allow_camera {
        let _ = frame.set_attribute("allow", "camera");
    }
    let style = frame.style();
    for (name, value) in [("border", "0"), ("width", "100%"), ("height", "100%")] {
        let _ = style.set_property(name, value);
    }

    let id = inner.next_id();
    let gate = RefCell::new(MessageGate::new(action, grant.return_origin, state));
    let owner = inner.clone();
    let watched = frame.clone();
    let messages = EventListener::new(window.into(), "message", move |event| {
        let event: MessageEvent = event.unchecked_into();
        let inner = &owner;
        let origin = event.origin();
        let from_frame = match (event.source(), watched.content_window()) {
            (Some(source), Some(own)) => JsValue::from(source) == JsValue::from(own),
            _ => false,
        };
        // Origin and window first: data from anyone else is never even read.
        let accepted = if gate.borrow().accepts(&origin, from_frame) {
            let data = to_value(&event.data(), "message").unwrap_or(Value::Null);
            gate.borrow_mut().offer(&origin, from_frame, &data)
        } else {
            None
        };
        let Some(accepted) = accepted else {
            inner.log(&[action.name(), ": ignored a message from ", &origin]);
            return;
        };
        let (name, target, argument) = match accepted {
            Event::SignSuccess(result) => ("signSuccess", callbacks.success.clone(), to_js(&result)),
            Event::AuthSuccess(info) => ("authSuccess", callbacks.success.clone(), to_js(&info)),
            Event::AuthFail => ("authFail", callbacks.fail.clone(), JsValue::UNDEFINED),
        };
        inner.log(&[action.name(), ": ", name]);
        // Terminal: drop the listener now (wasm-bindgen frees a running closure after it returns).
        inner.close_flows(Some(id));
        if let Some(f) = target {
            if let Err(thrown) = f.call1(&JsValue::UNDEFINED, &argument) {
                // Report the page's own error without unwinding through wasm.
                let _ = Promise::reject(&thrown);
            }
        }
    });
    let loaded = Rc::new(Cell::new(false));
    let flag = loaded.clone();
    let load = EventListener::new(frame.clone().into(), "load", move |_| flag.set(true));
    inner.close_flows(None);
    inner.flows.borrow_mut().push(Flow { id, frame: frame.clone(), loaded, _messages: messages, _load: load });
    Ok(frame)
}
