//! One form POST to the proxy (a CORS simple request), aborted after `timeoutMs` or by
//! `destroy()`, and its answer read as (status, JSON body).

use std::cell::Cell;
use std::rc::Rc;

use js_sys::Promise;
use wasm_bindgen::closure::Closure;
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;
use web_sys::{AbortController, Headers, RequestInit, Response};

use super::resources::Timeout;
use super::{destroyed, missing, Inner};
use crate::error::{ErrorKind, QysError};
use crate::value::{decimal, Value};

/// A request in flight.
#[must_use = "the answer is read by `on_answer`"]
pub struct Sent {
    id: u32,
    fetch: Promise,
    timed_out: Rc<Cell<bool>>,
    _timer: Timeout,
}

/// What the proxy answered: the HTTP status and the body, if it was JSON.
pub type Answer = (u16, Option<Value>);

/// What runs once the answer (or the failure to get one) is known.
pub type OnAnswer = Box<dyn FnOnce(&Rc<Inner>, Result<Answer, QysError>)>;

/// Sends `body` (`requestData=…`) to the proxy.
pub fn send(inner: &Inner, body: &str) -> Result<Sent, QysError> {
    let window = web_sys::window().ok_or_else(|| missing("window"))?;
    let controller = AbortController::new().map_err(|_| missing("AbortController"))?;
    let headers = Headers::new().map_err(|_| missing("Headers"))?;
    let _ = headers.set("Content-Type", "application/x-www-form-urlencoded");
    let init = RequestInit::new();
    init.set_method("POST");
    init.set_headers(&headers);
    init.set_body(&JsValue::from_str(body));
    init.set_signal(Some(&controller.signal()));
    let fetch = window.fetch_with_str_and_init(&inner.proxy_url, &init);
    let id = inner.next_id();
    inner.requests.borrow_mut().push((id, controller.clone()));
    let timed_out = Rc::new(Cell::new(false));
    let flag = timed_out.clone();
    let timer = Timeout::new(inner.options.timeout_ms, move || {
        flag.set(true);
        controller.abort();
    });
    Ok(Sent { id, fetch, timed_out, _timer: timer })
}

/// Calls `next` once with the answer, or the `timeout`/`network` error (or the destroyed
/// error, when `destroy()` came first).
/// (Boxed, not generic: one copy of the closure plumbing in the wasm for every caller.)
pub fn on_answer(inner: Rc<Inner>, sent: Sent, next: OnAnswer) {
    // Taken apart so that the closure owns the timer itself (a closure that only named
    // `sent.id` would capture just that field and let the timer drop, cancelled, right here).
    let Sent { id, fetch, timed_out, _timer: timer } = sent;
    on_settled(&fetch, Box::new(move |response| {
        let settle = move |answer: Result<(u16, JsValue), JsValue>| {
            drop(timer);
            inner.requests.borrow_mut().retain(|(request, _)| *request != id);
            let answer = if inner.destroyed.get() {
                Err(destroyed())
            } else {
                answer.map(|(status, text)| (status, Value::parse(&text.as_string().unwrap_or_default()).ok()))
                    .map_err(|e| failure(&inner, timed_out.get(), &e))
            };
            next(&inner, answer);
        };
        let response: Response = match response {
            Ok(response) => response.unchecked_into(),
            Err(e) => return settle(Err(e)),
        };
        match response.text() {
            Ok(text) => on_settled(&text, Box::new(move |text| settle(text.map(|t| (response.status(), t))))),
            Err(e) => settle(Err(e)),
        }
    }));
}

fn failure(inner: &Inner, timed_out: bool, e: &JsValue) -> QysError {
    if timed_out {
        let ms = decimal(u64::from(inner.options.timeout_ms));
        return QysError::new(ErrorKind::Timeout, ["the proxy did not answer within ", &ms, " ms"].concat());
    }
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

/// Settles `promise` into one callback that always runs: `Promise.allSettled([promise])`
/// hands it `{status, value | reason}`, so no closure is left uncalled (and leaked).
fn on_settled(promise: &Promise, next: Box<dyn FnOnce(Result<JsValue, JsValue>)>) {
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
