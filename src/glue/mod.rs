//! The wasm-bindgen layer: `qysSdk`, its four methods and `resume`. Everything it decides is
//! delegated to the pure core; these files only touch `fetch`, the DOM, storage and events.
//! By job: the instance (here), one proxy request ([`request`]), the three presentations
//! ([`frame`], [`redirect`], [`mini_program`]), JS values ([`convert`]), Rust-owned listeners
//! and timers ([`resources`]) and the TypeScript declarations ([`types`]).

mod convert;
mod frame;
mod mini_program;
mod redirect;
mod request;
mod resources;
mod types;

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use js_sys::{Function, Promise};
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use web_sys::{AbortController, HtmlElement};

use crate::error::{ErrorKind, QysError};
use crate::message::Event;
use crate::options::{parse_presentation, Options};
use crate::params::{Action, Params};
use crate::pending::return_url;
use crate::presentation::{allow_camera, choose, status_text, Environment, Presentation};
use crate::value::{object, Value};
use crate::wire::{answer_result, append_query, page_grant, state_from_random, ticket_grant, Envelope};
use convert::{callback, to_js, to_js_error, to_value};

/// A flow that waits for its end: its listeners live as long as this value.
enum Open {
    Frame(frame::FrameFlow),
    MiniProgram { _watch: mini_program::Watch },
}

struct Inner {
    /// Absolute proxy URL, query included.
    proxy_url: String,
    /// Origin and path of the proxy, for messages (the query may carry tokens).
    proxy_endpoint: String,
    /// Default `returnOrigin`.
    proxy_origin: String,
    options: Options,
    flows: RefCell<Vec<(u32, Open)>>,
    /// Requests in flight, aborted by `destroy()`.
    requests: RefCell<Vec<(u32, AbortController)>>,
    /// States of the redirect flows `resume` is asking about.
    resuming: RefCell<Vec<String>>,
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

    /// Keeps a flow open (and prunes the abandoned ones).
    fn keep_open(&self, id: u32, open: Open) {
        self.close_flows(None);
        self.flows.borrow_mut().push((id, open));
    }

    /// Drops the flow `id`, if given, and every abandoned iframe flow, with their listeners
    /// (wasm-bindgen defers freeing a closure that is running).
    fn close_flows(&self, id: Option<u32>) {
        let closed: Vec<(u32, Open)> = {
            let mut flows = self.flows.borrow_mut();
            let (closed, open) = flows.drain(..).partition(|(flow_id, open)| {
                Some(*flow_id) == id || matches!(open, Open::Frame(f) if f.abandoned())
            });
            *flows = open;
            closed
        };
        drop(closed);
    }
}

/// The SDK instance: `new qysSdk(proxyUrl, { query, timeoutMs, debug, presentation, miniProgramPage })`.
#[wasm_bindgen]
pub struct QysSdk {
    inner: Rc<Inner>,
}

/// Something this page lacks (window, document, crypto, sessionStorage…): the SDK cannot make
/// or show a request here. Reported as `network`, the kind for "the request could not be made".
fn missing(api: &str) -> QysError {
    QysError::new(ErrorKind::Network, [api, " is not available on this page"].concat())
}

fn destroyed() -> QysError {
    QysError::new(ErrorKind::InvalidArgument, "this qysSdk instance was destroyed")
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
    url.set_search(&append_query(&url.search(), query));
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
#[derive(Clone)]
struct Callbacks {
    success: Option<Function>,
    fail: Option<Function>,
}

/// Calls the callback of a terminal event, without unwinding through wasm if it throws.
fn fire(inner: &Inner, action: Action, callbacks: &Callbacks, event: &Event) {
    inner.log(&[action.name(), ": ", event.name()]);
    let called = match event {
        Event::SignSuccess(data) | Event::AuthSuccess(data) => callbacks.success.as_ref().map(|f| f.call1(&JsValue::UNDEFINED, &to_js(data))),
        // Seed 004's `authFailCb()` takes no argument: none is passed.
        Event::AuthFail => callbacks.fail.as_ref().map(|f| f.call0(&JsValue::UNDEFINED)),
    };
    if let Some(Err(thrown)) = called {
        // Report the page's own error as an unhandled rejection.
        let _ = Promise::reject(&thrown);
    }
}

/// The element a redirect or mini-program call resolves to: a live status the page may append
/// where it would have put the iframe.
fn status_element(action: Action) -> Result<HtmlElement, QysError> {
    let document = web_sys::window().and_then(|w| w.document()).ok_or_else(|| missing("document"))?;
    let element: HtmlElement = document.create_element("div").map_err(|_| missing("document.createElement"))?.unchecked_into();
    let _ = element.set_attribute("role", "status");
    let _ = element.set_attribute("aria-live", "polite");
    element.set_text_content(Some(status_text(action)));
    Ok(element)
}

/// What the page is, for the `auto` presentation.
fn choose_presentation(requested: Option<Presentation>, params: &Params) -> Presentation {
    let window = web_sys::window();
    let user_agent = window.as_ref().and_then(|w| w.navigator().user_agent().ok()).unwrap_or_default();
    let flag = window
        .as_ref()
        .and_then(|w| js_sys::Reflect::get(w, &"__wxjs_environment".into()).ok())
        .is_some_and(|v| v == "miniprogram");
    choose(requested, &Environment { user_agent: &user_agent, mini_program_flag: flag }, params)
}

/// A call's validated arguments.
struct Prepared {
    params: Params,
    callbacks: Callbacks,
    /// The call's own `presentation`, if it set one (`Some(None)` is `auto`).
    presentation: Option<Option<Presentation>>,
}

/// The call's `presentation` key of the callbacks object, if present.
fn call_presentation(callbacks: &JsValue) -> Result<Option<Option<Presentation>>, QysError> {
    if !callbacks.is_object() {
        return Ok(None);
    }
    let value = js_sys::Reflect::get(callbacks, &"presentation".into()).unwrap_or(JsValue::UNDEFINED);
    if value.is_undefined() || value.is_null() {
        return Ok(None);
    }
    parse_presentation(&to_value(&value, "presentation")?, "presentation").map(Some)
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
                resuming: RefCell::default(),
                next_id: Cell::new(0),
                destroyed: Cell::new(false),
            };
            inner.log(&["ready; proxy ", &inner.proxy_endpoint]);
            Ok(QysSdk { inner: Rc::new(inner) })
        };
        build().map_err(|e| to_js_error(&e))
    }

    /// Personal signing. Resolves to the iframe to append (or, for a redirect or the
    /// mini-program, a status element once the page is on its way).
    #[wasm_bindgen(js_name = personalSign, unchecked_return_type = "Promise<HTMLElement>")]
    pub fn personal_sign(
        &self,
        #[wasm_bindgen(js_name = contractId, unchecked_param_type = "string | number | bigint")] contract_id: JsValue,
        #[wasm_bindgen(unchecked_param_type = "string")] contact: JsValue,
        #[wasm_bindgen(unchecked_optional_param_type = "SignCallbacks")] callbacks: Option<JsValue>,
    ) -> Promise {
        self.sign(Action::PersonalSign, contract_id, contact, callbacks)
    }

    /// Enterprise signing. Resolves like `personalSign`.
    #[wasm_bindgen(js_name = enterpriseSign, unchecked_return_type = "Promise<HTMLElement>")]
    pub fn enterprise_sign(
        &self,
        #[wasm_bindgen(js_name = contractId, unchecked_param_type = "string | number | bigint")] contract_id: JsValue,
        #[wasm_bindgen(unchecked_param_type = "string")] contact: JsValue,
        #[wasm_bindgen(unchecked_optional_param_type = "SignCallbacks")] callbacks: Option<JsValue>,
    ) -> Promise {
        self.sign(Action::EnterpriseSign, contract_id, contact, callbacks)
    }

    /// Personal authentication. Resolves like `personalSign`.
    #[wasm_bindgen(js_name = personalAuth, unchecked_return_type = "Promise<HTMLElement>")]
    pub fn personal_auth(
        &self,
        #[wasm_bindgen(unchecked_param_type = "PersonalAuthParams")] params: JsValue,
        #[wasm_bindgen(unchecked_optional_param_type = "AuthCallbacks<PersonalUserInfo>")] callbacks: Option<JsValue>,
    ) -> Promise {
        self.auth(Action::PersonalAuth, params, callbacks)
    }

    /// Enterprise authentication. Resolves like `personalSign`.
    #[wasm_bindgen(js_name = enterpriseAuth, unchecked_return_type = "Promise<HTMLElement>")]
    pub fn enterprise_auth(
        &self,
        #[wasm_bindgen(unchecked_param_type = "EnterpriseAuthParams")] params: JsValue,
        #[wasm_bindgen(unchecked_optional_param_type = "AuthCallbacks<CompanyInfo>")] callbacks: Option<JsValue>,
    ) -> Promise {
        self.auth(Action::EnterpriseAuth, params, callbacks)
    }

    /// Call on every page load: when the page is the return of a redirect flow of this tab, asks
    /// the proxy for its confirmed outcome, cleans the URL, fires the one callback and resolves
    /// to `{action, event, data}`; otherwise resolves to `null` and fires nothing.
    #[wasm_bindgen(unchecked_return_type = "Promise<QysResumed | null>")]
    pub fn resume(
        &self,
        #[wasm_bindgen(unchecked_optional_param_type = "ResumeCallbacks")] callbacks: Option<JsValue>,
    ) -> Promise {
        let callbacks = callbacks.unwrap_or(JsValue::UNDEFINED);
        let read = (|| {
            if self.inner.destroyed.get() {
                return Err(destroyed());
            }
            Ok([callback(&callbacks, "signSuccessCb")?, callback(&callbacks, "authSuccessCb")?, callback(&callbacks, "authFailCb")?])
        })();
        let inner = self.inner.clone();
        let mut read = Some(read);
        Promise::new(&mut |resolve, reject| match read.take().expect("the executor runs once") {
            Ok([sign, auth, fail]) => redirect::resume(&inner, sign, auth, fail, resolve, reject),
            Err(e) => {
                let _ = reject.call1(&JsValue::UNDEFINED, &to_js_error(&e));
            }
        })
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
            let params = Params::parse(action, &params)?;
            Ok(Prepared {
                params,
                callbacks: Callbacks { success: callback(&callbacks, "signSuccessCb")?, fail: callback(&callbacks, "authFailCb")? },
                presentation: call_presentation(&callbacks)?,
            })
        })();
        self.start(action, prepared)
    }

    fn auth(&self, action: Action, params: JsValue, callbacks: Option<JsValue>) -> Promise {
        let callbacks = callbacks.unwrap_or(JsValue::UNDEFINED);
        let prepared = (|| {
            let params = Params::parse(action, &to_value(&params, "params")?)?;
            Ok(Prepared {
                params,
                callbacks: Callbacks { success: callback(&callbacks, "authSuccessCb")?, fail: callback(&callbacks, "authFailCb")? },
                presentation: call_presentation(&callbacks)?,
            })
        })();
        self.start(action, prepared)
    }

    fn start(&self, action: Action, prepared: Result<Prepared, QysError>) -> Promise {
        let inner = self.inner.clone();
        let mut begun = Some(begin(&inner, action, prepared));
        Promise::new(&mut |resolve, reject| match begun.take().expect("the executor runs once") {
            Ok((sent, call)) => request::on_answer(inner.clone(), sent, Box::new(move |inner, answer| {
                let _ = match answer.and_then(|answer| finish(inner, call, answer)) {
                    Ok(element) => resolve.call1(&JsValue::UNDEFINED, &element),
                    Err(e) => reject.call1(&JsValue::UNDEFINED, &fail(inner, action, &e)),
                };
            })),
            Err(e) => {
                let _ = reject.call1(&JsValue::UNDEFINED, &fail(&inner, action, &e));
            }
        })
    }
}

/// One call between its request and the proxy's answer.
struct Call {
    action: Action,
    state: String,
    callbacks: Callbacks,
    presentation: Presentation,
    allow_camera: bool,
}

/// Logs a failure (with `debug`) and turns it into the `QysError` the promise rejects with.
fn fail(inner: &Inner, action: Action, e: &QysError) -> JsValue {
    inner.log(&[action.name(), ": ", &e.message, " (", e.kind.as_str(), ")"]);
    to_js_error(e)
}

/// Validates, picks the presentation, checks that the page can show it, then sends the request.
#[inline(never)]
fn begin(inner: &Inner, action: Action, prepared: Result<Prepared, QysError>) -> Result<(request::Sent, Call), QysError> {
    if inner.destroyed.get() {
        return Err(destroyed());
    }
    let Prepared { params, callbacks, presentation } = prepared?;
    let presentation = choose_presentation(presentation.unwrap_or(inner.options.presentation), &params);
    let window = web_sys::window().ok_or_else(|| missing("window"))?;
    let return_url = match presentation {
        Presentation::Iframe => None,
        Presentation::Redirect => {
            redirect::storage(&window)?;
            Some(return_url(&window.location().href().map_err(|_| missing("location"))?))
        }
        Presentation::MiniProgram => {
            mini_program::bridge()?;
            None
        }
    };
    let allow_camera = allow_camera(&params);
    let envelope = Envelope { action, state: random_state()?, params, presentation, return_url };
    inner.log(&[action.name(), ": requesting a page from the proxy (", presentation.name(), ")"]);
    let sent = request::send(inner, &envelope.to_form_body())?;
    Ok((sent, Call { action, state: envelope.state, callbacks, presentation, allow_camera }))
}

/// Reads the proxy's answer and shows the flow the way the call chose.
#[inline(never)]
fn finish(inner: &Rc<Inner>, call: Call, (status, body): request::Answer) -> Result<JsValue, QysError> {
    let result = answer_result(status, body.as_ref())?;
    let Call { action, state, callbacks, presentation, allow_camera } = call;
    if presentation == Presentation::MiniProgram {
        let grant = ticket_grant(result)?;
        inner.log(&[action.name(), ": ticket granted"]);
        return mini_program::open(inner, action, state, grant, callbacks).map(JsValue::from);
    }
    let mut grant = page_grant(result, &inner.proxy_origin)?;
    if presentation == Presentation::Redirect {
        inner.log(&[action.name(), ": leaving for the platform's page"]);
        return redirect::leave(action, state, grant).map(JsValue::from);
    }
    // `event.origin` is always canonical (lowercase host, no default port); so must this be.
    grant.return_origin = web_sys::Url::new(&grant.return_origin)
        .map(|u| u.origin())
        .map_err(|_| QysError::new(ErrorKind::Protocol, "the proxy's answer is not protocol v1: result.returnOrigin"))?;
    inner.log(&[action.name(), ": page granted, return origin ", &grant.return_origin]);
    frame::open(inner, action, state, grant, callbacks, allow_camera).map(JsValue::from)
}
