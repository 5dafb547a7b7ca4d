//! The redirect presentation: the whole page goes to the platform, and `resume()` on the page's
//! next load asks the proxy how the flow ended. Pending flows wait in `sessionStorage`.

use std::rc::Rc;

use js_sys::Function;
use wasm_bindgen::JsValue;
use web_sys::{HtmlElement, Storage, Window};

use super::convert::to_js;
use super::request::{on_answer, send};
use super::{fire, missing, status_element, Callbacks, Inner};
use crate::error::{ErrorKind, QysError};
use crate::message::Event;
use crate::params::Action;
use crate::pending::{self, PendingFlow};
use crate::value::object;
use crate::wire::{outcome_answer, Outcome, PageGrant, Request};

/// The tab's `sessionStorage`; checked before a redirect flow sends anything.
pub fn storage(window: &Window) -> Result<Storage, QysError> {
    window.session_storage().ok().flatten().ok_or_else(|| missing("sessionStorage"))
}

fn stored(storage: &Storage) -> Vec<PendingFlow> {
    pending::parse_list(&storage.get_item(pending::STORAGE_KEY).ok().flatten().unwrap_or_default())
}

/// Remembers the flow, then sends the top window to the platform's page.
pub fn leave(action: Action, state: String, grant: PageGrant) -> Result<HtmlElement, QysError> {
    let window = web_sys::window().ok_or_else(|| missing("window"))?;
    let storage = storage(&window)?;
    let flow = grant.flow.ok_or_else(|| {
        QysError::new(ErrorKind::Protocol, "the proxy's answer is not protocol v1: result.flow is missing")
    })?;
    let mut flows = stored(&storage);
    flows.push(PendingFlow { state, action, flow });
    storage.set_item(pending::STORAGE_KEY, &pending::list_json(&flows)).map_err(|_| missing("sessionStorage"))?;
    let element = status_element(action)?;
    window.location().assign(&grant.page_url).map_err(|_| missing("location.assign"))?;
    Ok(element)
}

/// The page's URL without a returning flow's `qys_state`; `history.replaceState` keeps the
/// page's own history entry.
fn clean_url(window: &Window) {
    let location = window.location();
    let (Ok(path), Ok(search), Ok(hash)) = (location.pathname(), location.search(), location.hash()) else { return };
    let url = [path.as_str(), &pending::without_state(&search), &hash].concat();
    if let Ok(history) = window.history() {
        let _ = history.replace_state_with_url(&history.state().unwrap_or(JsValue::NULL), "", Some(&url));
    }
}

/// `resume(callbacks)`: settles with `{action, event, data}` after firing the one callback, or
/// `null` when this page load is not the return of one of this tab's redirect flows.
pub fn resume(inner: &Rc<Inner>, sign: Option<Function>, auth: Option<Function>, fail: Option<Function>, resolve: Function, reject: Function) {
    let settle = move |result: Result<JsValue, QysError>| {
        let _ = match result {
            Ok(value) => resolve.call1(&JsValue::UNDEFINED, &value),
            Err(e) => reject.call1(&JsValue::UNDEFINED, &super::convert::to_js_error(&e)),
        };
    };
    let Some(window) = web_sys::window() else { return settle(Ok(JsValue::NULL)) };
    let search = window.location().search().unwrap_or_default();
    let Some(state) = pending::returned_state(&search).map(str::to_owned) else { return settle(Ok(JsValue::NULL)) };
    let storage = match storage(&window) {
        Ok(storage) => storage,
        Err(e) => return settle(Err(e)),
    };
    let Some(flow) = stored(&storage).into_iter().find(|f| f.state == state) else {
        // Not a flow of this tab (forged, replayed, or another tab's): nothing to fire.
        inner.log(&["resume: no pending flow for this return"]);
        clean_url(&window);
        return settle(Ok(JsValue::NULL));
    };
    if inner.resuming.borrow().contains(&state) {
        return settle(Ok(JsValue::NULL));
    }
    inner.resuming.borrow_mut().push(state.clone());
    let sent = match send(inner, &Request::outcome_form_body(&flow.state, &flow.flow)) {
        Ok(sent) => sent,
        Err(e) => {
            inner.resuming.borrow_mut().retain(|s| *s != state);
            return settle(Err(e));
        }
    };
    let action = flow.action;
    let callbacks = Callbacks { success: if action.is_sign() { sign } else { auth }, fail };
    on_answer(inner.clone(), sent, Box::new(move |inner, answer| {
        inner.resuming.borrow_mut().retain(|s| *s != state);
        let outcome = match answer.and_then(|(status, body)| outcome_answer(action, status, body.as_ref())) {
            Ok(outcome) => outcome,
            // Kept: a reload (or another `resume`) asks again.
            Err(e) => return settle(Err(e)),
        };
        let remaining: Vec<PendingFlow> = stored(&storage).into_iter().filter(|f| f.state != state).collect();
        let _ = storage.set_item(pending::STORAGE_KEY, &pending::list_json(&remaining));
        clean_url(&window);
        let event = match outcome {
            None => {
                inner.log(&[action.name(), ": the proxy no longer knows this flow"]);
                return settle(Ok(JsValue::NULL));
            }
            Some(Outcome::Event(event)) => event,
            // The platform sent the browser back without a success: the user left.
            Some(Outcome::Pending) => Event::AuthFail,
        };
        fire(inner, action, &callbacks, &event);
        let resumed = object([("action", action.name().into()), ("event", event.name().into()), ("data", event.data())]);
        settle(Ok(to_js(&resumed)));
    }));
}
