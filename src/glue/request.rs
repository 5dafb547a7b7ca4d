//! One form POST to the proxy (a CORS simple request), aborted after `timeoutMs` or by
//! `destroy()`, and its answer read as (status, JSON body).

use std::rc::Rc;

use wasm_bindgen::closure::Closure;
use wasm_bindgen::JsValue;

use super::bridge::{post, text};
use super::resources::Posted;
use super::{destroyed, Inner};
use crate::error::{ErrorKind, QysError};
use crate::message::Event;
use crate::params::Action;
use crate::value::{concat, decimal, split_once_byte, Value};
use crate::wire::{outcome_answer, Outcome, Request};

/// What the proxy answered: the HTTP status and the body, if it was JSON.
pub type Answer = (u16, Option<Value>);

/// What runs once the answer (or the failure to get one) is known.
pub type OnAnswer = Box<dyn FnOnce(&Rc<Inner>, Result<Answer, QysError>)>;

/// Sends `body` (`requestData=…`) to the proxy; `next` runs once with the answer, or the
/// `timeout`/`network` error (or the destroyed error, when `destroy()` came first).
/// (Boxed, not generic: one copy of the plumbing in the wasm for every caller.)
pub fn send(inner: &Rc<Inner>, body: &str, next: OnAnswer) {
    let id = inner.next_id();
    let owner = inner.clone();
    // The page owns `done` (run once through `take`: one closure type, `FnMut`, for every
    // callback keeps a single set of wasm-bindgen shims).
    let mut once = Some((owner, next));
    let done = Closure::<dyn FnMut(JsValue)>::new(move |outcome: JsValue| {
        let Some((inner, next)) = once.take() else {
            return;
        };
        let posted = {
            let mut requests = inner.requests.borrow_mut();
            requests
                .iter()
                .position(|(r, _)| *r == id)
                .map(|at| requests.swap_remove(at))
        };
        drop(posted);
        let answer = if inner.destroyed.get() {
            Err(destroyed())
        } else {
            read(&inner, &text(&outcome))
        };
        next(&inner, answer);
    })
    .into_js_value();
    let posted = Posted(post(&inner.proxy_url, body, inner.options.timeout_ms, done));
    inner.requests.borrow_mut().push((id, posted));
}

/// What runs once a flow's outcome is known: the event to fire, `None` when the proxy no
/// longer knows the flow, or why it could not be asked.
pub type OnOutcome = Box<dyn FnOnce(&Rc<Inner>, Result<Option<Event>, QysError>)>;

/// Asks the proxy how the flow `flow` of `action`, started with `state`, ended (redirect and
/// mini-program flows). A flow the platform confirms no success for was left: `authFail`.
pub fn ask_outcome(inner: &Rc<Inner>, action: Action, state: &str, flow: &str, then: OnOutcome) {
    send(
        inner,
        &Request::outcome_form_body(state, flow),
        Box::new(move |inner, answer| {
            let event = answer
                .and_then(|(status, body)| outcome_answer(action, status, body.as_ref()))
                .map(|outcome| match outcome {
                    None => {
                        inner.log(&[action.name(), ": the proxy no longer knows this flow"]);
                        None
                    }
                    Some(Outcome::Event(event)) => Some(event),
                    Some(Outcome::Pending) => Some(Event::AuthFail),
                });
            then(inner, event);
        }),
    );
}

/// Reads `post`'s report: `<status>:<body as flat text>`, `T:` or `N:<reason>`.
fn read(inner: &Inner, outcome: &str) -> Result<Answer, QysError> {
    let (head, rest) = split_once_byte(outcome, b':').unwrap_or(("N", ""));
    match head {
        "T" => {
            let ms = decimal(u64::from(inner.options.timeout_ms));
            Err(QysError::new(
                ErrorKind::Timeout,
                concat(&["the proxy did not answer within ", &ms, " ms"]),
            ))
        }
        "N" => Err(QysError::new(
            ErrorKind::Network,
            concat(&[
                "the proxy at ",
                &inner.proxy_endpoint,
                " could not be reached (",
                rest,
                "); check the URL, the network and the proxy's allowed origins",
            ]),
        )),
        status => {
            let status = status
                .bytes()
                .fold(0u16, |n, d| n * 10 + u16::from(d - b'0'));
            Ok((status, Value::from_flat(rest)))
        }
    }
}
