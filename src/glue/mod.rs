//! The wasm-bindgen layer: `qysSdk`, its four methods and `resume`. Everything it decides is
//! delegated to the pure core; these files only touch `fetch`, the DOM, storage and events,
//! through the coarse helpers of `js/bridge.js` ([`bridge`]).
//! By job: the instance (here), one proxy request ([`request`]), the three presentations
//! ([`frame`], [`redirect`], [`mini_program`]), JS values ([`convert`]), Rust-owned listeners
//! and requests ([`resources`]) and the TypeScript declarations ([`types`]).

mod bridge;
mod convert;
mod frame;
mod mini_program;
mod redirect;
mod request;
mod resources;
mod types;

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use js_sys::Promise;
use wasm_bindgen::prelude::*;

use crate::error::{ErrorKind, QysError};
use crate::message::Event;
use crate::options::{parse_presentation, Options};
use crate::params::{normalize, Action};
use crate::pending::return_url;
use crate::presentation::{allow_camera, choose, status_text, Environment, Presentation};
use crate::value::{concat, object, Value};
use crate::wire::{
    answer_result, append_query, flow_form_body, page_grant, state_from_random, ticket_grant,
};
use bridge::{call, defer, get, random, set, settle, string, text, ty, typ, window};
use convert::{callback, nullish, to_js_error, to_value};
use resources::{EventListener, Posted};

/// A flow that waits for its end: its listeners live as long as this value.
/// Mini-program flows waiting for their page to be shown again, per instance.
const MAX_WATCHES: usize = 4;

struct Flow {
    id: u32,
    /// An iframe flow's iframe.
    frame: Option<JsValue>,
    _listener: EventListener,
}

impl Flow {
    /// A flow whose iframe the page added and then removed can never finish.
    fn abandoned(&self) -> bool {
        self.frame.as_ref().is_some_and(bridge::gone)
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
    requests: RefCell<Vec<(u32, Posted)>>,
    next_id: Cell<u32>,
    destroyed: Cell<bool>,
}

impl Inner {
    /// With `debug`, logs `[qys-sdk]` and the parts, joined, to the console.
    fn log(&self, parts: &[&str]) {
        if self.options.debug {
            bridge::log(false, "[qys-sdk]", &concat(parts));
        }
    }

    fn next_id(&self) -> u32 {
        let id = self.next_id.get();
        self.next_id.set(id.wrapping_add(1));
        id
    }

    /// Keeps a flow open (and prunes the abandoned ones).
    /// (A mini-program flow whose page never comes back would otherwise stay forever: only the
    /// newest few are kept.)
    fn keep_open(&self, flow: Flow) {
        self.close_flows(None);
        let stale = {
            let mut flows = self.flows.borrow_mut();
            flows.push(flow);
            let watches = flows.iter().filter(|f| f.frame.is_none()).count();
            match flows.iter().position(|f| f.frame.is_none()) {
                Some(oldest) if watches > MAX_WATCHES => Some(flows.remove(oldest)),
                _ => None,
            }
        };
        drop(stale);
    }

    /// Drops the flow `id`, if given, and every abandoned iframe flow, with their listeners
    /// (wasm-bindgen defers freeing a closure that is running; they are dropped after the
    /// borrow ends).
    fn close_flows(&self, id: Option<u32>) {
        let mut closed = Vec::new();
        {
            let mut flows = self.flows.borrow_mut();
            let mut at = 0;
            while at < flows.len() {
                if Some(flows[at].id) == id || flows[at].abandoned() {
                    closed.push(flows.swap_remove(at));
                } else {
                    at += 1;
                }
            }
        }
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
    QysError::new(
        ErrorKind::Network,
        concat(&[api, " is not available on this page"]),
    )
}

fn destroyed() -> QysError {
    QysError::new(
        ErrorKind::InvalidArgument,
        "this qysSdk instance was destroyed",
    )
}

/// Resolves `proxy_url` against the page and appends the `query` pairs to its own query, which is
/// kept byte for byte. Returns (URL, origin + path, origin).
fn resolve_proxy_url(
    proxy_url: &str,
    query: &[(String, String)],
) -> Result<(String, String, String), QysError> {
    let bad = |why: &str| QysError::invalid_at("proxyUrl", &[" \"", proxy_url, "\" ", why]);
    let page = window().map(|w| text(&get(&get(&w, "location"), "href")));
    let url = bridge::url(proxy_url, page.as_deref());
    if typ(&url) != ty::OBJECT {
        return Err(bad(
            "is not a URL (a relative URL needs a page to resolve against)",
        ));
    }
    let part = |name| text(&get(&url, name));
    if !matches!(part("protocol").as_str(), "http:" | "https:") {
        return Err(bad("must be an http(s) URL"));
    }
    set(&url, "search", &append_query(&part("search"), query));
    set(&url, "hash", "");
    let origin = part("origin");
    Ok((part("href"), concat(&[&origin, &part("pathname")]), origin))
}

fn random_state() -> Result<String, QysError> {
    let mut bytes = [0u8; 16];
    if !random(&mut bytes) {
        return Err(missing("crypto.getRandomValues"));
    }
    Ok(state_from_random(&bytes))
}

/// The callbacks a flow may fire.
#[derive(Clone)]
struct Callbacks {
    success: Option<JsValue>,
    fail: Option<JsValue>,
}

/// Calls the callback of a terminal event (what it throws is reported as an unhandled
/// rejection, not unwound through wasm).
fn fire(inner: &Inner, action: Action, callbacks: &Callbacks, event: &Event) {
    inner.log(&[action.name(), ": ", event.name()]);
    match event {
        Event::SignSuccess(data) | Event::AuthSuccess(data) => {
            if let Some(f) = &callbacks.success {
                call(f, Some(&data.to_json()));
            }
        }
        // Seed 004's `authFailCb()` takes no argument: none is passed.
        Event::AuthFail => {
            if let Some(f) = &callbacks.fail {
                call(f, None);
            }
        }
    }
}

/// The element a redirect or mini-program call resolves to: a live status the page may append
/// where it would have put the iframe.
fn status_element(action: Action) -> Result<JsValue, QysError> {
    let element = bridge::status(status_text(action));
    if typ(&element) == ty::UNDEFINED {
        return Err(missing("document"));
    }
    Ok(element)
}

/// What the page is, for the `auto` presentation.
fn choose_presentation(
    requested: Option<Presentation>,
    window: &JsValue,
    action: Action,
    mode: Option<&str>,
) -> Presentation {
    let user_agent = string(&get(&get(window, "navigator"), "userAgent"));
    let flag = string(&get(window, "__wxjs_environment")) == "miniprogram";
    choose(
        requested,
        &Environment {
            user_agent: &user_agent,
            mini_program_flag: flag,
        },
        action,
        mode,
    )
}

/// A call's validated arguments.
struct Prepared {
    /// The canonical wire parameters.
    params: Value,
    callbacks: Callbacks,
    /// The call's own `presentation`, if it set one (`Some(None)` is `auto`).
    presentation: Option<Option<Presentation>>,
}

/// Validates a call's parameters and reads its callbacks (`success` names the success one).
fn prepare(
    action: Action,
    params: &Value,
    callbacks: &JsValue,
    success: &str,
) -> Result<Prepared, QysError> {
    Ok(Prepared {
        params: normalize(action, params)?,
        callbacks: Callbacks {
            success: callback(callbacks, success)?,
            fail: callback(callbacks, "authFailCb")?,
        },
        presentation: call_presentation(callbacks)?,
    })
}

/// The call's `presentation` key of the callbacks object, if present.
fn call_presentation(callbacks: &JsValue) -> Result<Option<Option<Presentation>>, QysError> {
    if typ(callbacks) != ty::OBJECT {
        return Ok(None);
    }
    let value = get(callbacks, "presentation");
    if nullish(&value) {
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
            let options = Options::parse(&to_value(
                &options.unwrap_or(JsValue::UNDEFINED),
                "options",
            )?)?;
            let (proxy_url, proxy_endpoint, proxy_origin) =
                resolve_proxy_url(&proxy_url, &options.query)?;
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
            Ok(QysSdk {
                inner: Rc::new(inner),
            })
        };
        build().map_err(|e| to_js_error(&e))
    }

    /// Personal signing. Resolves to the iframe to append (or, for a redirect or the
    /// mini-program, a status element once the page is on its way).
    #[wasm_bindgen(js_name = personalSign, unchecked_return_type = "Promise<HTMLElement>")]
    pub fn personal_sign(
        &self,
        #[wasm_bindgen(js_name = contractId, unchecked_param_type = "string | number | bigint")]
        contract_id: JsValue,
        #[wasm_bindgen(unchecked_param_type = "string")] contact: JsValue,
        #[wasm_bindgen(unchecked_optional_param_type = "SignCallbacks")] callbacks: Option<JsValue>,
    ) -> Promise {
        self.sign(Action::PersonalSign, contract_id, contact, callbacks)
    }

    /// Enterprise signing. Resolves like `personalSign`.
    #[wasm_bindgen(js_name = enterpriseSign, unchecked_return_type = "Promise<HTMLElement>")]
    pub fn enterprise_sign(
        &self,
        #[wasm_bindgen(js_name = contractId, unchecked_param_type = "string | number | bigint")]
        contract_id: JsValue,
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
        #[wasm_bindgen(unchecked_optional_param_type = "AuthCallbacks<PersonalUserInfo>")]
        callbacks: Option<JsValue>,
    ) -> Promise {
        self.auth(Action::PersonalAuth, params, callbacks)
    }

    /// Enterprise authentication. Resolves like `personalSign`.
    #[wasm_bindgen(js_name = enterpriseAuth, unchecked_return_type = "Promise<HTMLElement>")]
    pub fn enterprise_auth(
        &self,
        #[wasm_bindgen(unchecked_param_type = "EnterpriseAuthParams")] params: JsValue,
        #[wasm_bindgen(unchecked_optional_param_type = "AuthCallbacks<CompanyInfo>")]
        callbacks: Option<JsValue>,
    ) -> Promise {
        self.auth(Action::EnterpriseAuth, params, callbacks)
    }

    /// Call on every page load: when the page is the return of a redirect flow of this tab, asks
    /// the proxy for its confirmed outcome, cleans the URL, fires the one callback and resolves
    /// to `{action, event, data}`; otherwise resolves to `null` and fires nothing.
    #[wasm_bindgen(unchecked_return_type = "Promise<QysResumed | null>")]
    pub fn resume(
        &self,
        #[wasm_bindgen(unchecked_optional_param_type = "ResumeCallbacks")] callbacks: Option<
            JsValue,
        >,
    ) -> Promise {
        let callbacks = callbacks.unwrap_or(JsValue::UNDEFINED);
        let promise = defer();
        let read = (|| {
            if self.inner.destroyed.get() {
                return Err(destroyed());
            }
            Ok([
                callback(&callbacks, "signSuccessCb")?,
                callback(&callbacks, "authSuccessCb")?,
                callback(&callbacks, "authFailCb")?,
            ])
        })();
        match read {
            Ok(callbacks) => redirect::resume(&self.inner, callbacks, promise.clone().into()),
            Err(e) => settle(&promise, false, &to_js_error(&e)),
        }
        promise
    }

    /// Removes every listener this instance added and aborts its requests; no callback fires
    /// afterwards.
    pub fn destroy(&self) {
        self.inner.destroyed.set(true);
        drop(std::mem::take(&mut *self.inner.requests.borrow_mut()));
        drop(std::mem::take(&mut *self.inner.flows.borrow_mut()));
        self.inner.log(&["destroyed"]);
    }
}

impl QysSdk {
    fn sign(
        &self,
        action: Action,
        contract_id: JsValue,
        contact: JsValue,
        callbacks: Option<JsValue>,
    ) -> Promise {
        let callbacks = callbacks.unwrap_or(JsValue::UNDEFINED);
        let prepared = (|| {
            let contract_id = if typ(&contract_id) == ty::BIGINT {
                // Exact, unlike a number; the core checks the digits like any string.
                Value::String(text(&contract_id))
            } else {
                to_value(&contract_id, "contractId")?
            };
            let params = object([
                ("contractId", contract_id),
                ("contact", to_value(&contact, "contact")?),
            ]);
            prepare(action, &params, &callbacks, "signSuccessCb")
        })();
        self.start(action, prepared)
    }

    fn auth(&self, action: Action, params: JsValue, callbacks: Option<JsValue>) -> Promise {
        let callbacks = callbacks.unwrap_or(JsValue::UNDEFINED);
        let prepared = (|| {
            prepare(
                action,
                &to_value(&params, "params")?,
                &callbacks,
                "authSuccessCb",
            )
        })();
        self.start(action, prepared)
    }

    fn start(&self, action: Action, prepared: Result<Prepared, QysError>) -> Promise {
        let inner = &self.inner;
        let promise = defer();
        let settled = promise.clone();
        match begin(inner, action, prepared) {
            Ok((body, call)) => request::send(
                inner,
                &body,
                Box::new(move |inner, answer| {
                    match answer.and_then(|answer| finish(inner, call, answer)) {
                        Ok(element) => settle(&settled, true, &element),
                        Err(e) => settle(&settled, false, &fail(inner, action, &e)),
                    }
                }),
            ),
            Err(e) => settle(&promise, false, &fail(inner, action, &e)),
        }
        promise
    }
}

/// One call between its request and the proxy's answer.
struct Call {
    action: Action,
    state: String,
    callbacks: Callbacks,
    presentation: Presentation,
    allow_camera: bool,
    window: JsValue,
}

/// Logs a failure (with `debug`) and turns it into the `QysError` the promise rejects with.
fn fail(inner: &Inner, action: Action, e: &QysError) -> JsValue {
    inner.log(&[action.name(), ": ", &e.message, " (", e.kind.as_str(), ")"]);
    to_js_error(e)
}

/// Validates, picks the presentation, checks that the page can show it, then builds the
/// request's body.
#[inline(never)]
fn begin(
    inner: &Inner,
    action: Action,
    prepared: Result<Prepared, QysError>,
) -> Result<(String, Call), QysError> {
    if inner.destroyed.get() {
        return Err(destroyed());
    }
    let Prepared {
        params,
        callbacks,
        presentation,
    } = prepared?;
    let window = window().ok_or_else(|| missing("window"))?;
    let mode = params.get("mode").and_then(Value::as_str);
    let presentation = choose_presentation(
        presentation.unwrap_or(inner.options.presentation),
        &window,
        action,
        mode,
    );
    let return_url = match presentation {
        Presentation::Iframe => None,
        Presentation::Redirect => {
            redirect::stored()?;
            Some(return_url(&text(&get(&get(&window, "location"), "href"))))
        }
        Presentation::MiniProgram => {
            mini_program::bridge(&window)?;
            None
        }
    };
    let allow_camera = allow_camera(action, mode);
    let state = random_state()?;
    inner.log(&[
        action.name(),
        ": requesting a page from the proxy (",
        presentation.name(),
        ")",
    ]);
    let body = flow_form_body(action, &state, params, presentation, return_url.as_deref());
    Ok((
        body,
        Call {
            action,
            state,
            callbacks,
            presentation,
            allow_camera,
            window,
        },
    ))
}

/// Reads the proxy's answer and shows the flow the way the call chose.
#[inline(never)]
fn finish(
    inner: &Rc<Inner>,
    call: Call,
    (status, body): request::Answer,
) -> Result<JsValue, QysError> {
    let result = answer_result(status, body.as_ref())?;
    let Call {
        action,
        state,
        callbacks,
        presentation,
        allow_camera,
        window,
    } = call;
    if presentation == Presentation::MiniProgram {
        let grant = ticket_grant(result)?;
        inner.log(&[action.name(), ": ticket granted"]);
        return mini_program::open(inner, &window, action, state, grant, callbacks);
    }
    let mut grant = page_grant(result, &inner.proxy_origin)?;
    if presentation == Presentation::Redirect {
        inner.log(&[action.name(), ": leaving for the platform's page"]);
        return redirect::leave(inner, action, state, grant);
    }
    // `event.origin` is always canonical (lowercase host, no default port); so must this be.
    let url = bridge::url(&grant.return_origin, None);
    if typ(&url) != ty::OBJECT {
        return Err(QysError::new(
            ErrorKind::Protocol,
            "the proxy's answer is not protocol v1: result.returnOrigin",
        ));
    }
    grant.return_origin = text(&get(&url, "origin"));
    inner.log(&[
        action.name(),
        ": page granted, return origin ",
        &grant.return_origin,
    ]);
    frame::open(
        inner,
        &window,
        action,
        state,
        grant,
        callbacks,
        allow_camera,
    )
}
