//! The redirect presentation: the whole page goes to the platform, and `resume()` on the page's
//! next load asks the proxy how the flow ended. Pending flows wait in `sessionStorage`.

use std::cell::RefCell;
use std::rc::Rc;

use wasm_bindgen::JsValue;

use super::bridge::{assign, from_json, get, replace, settle, store, text};
use super::convert::to_js_error;
use super::request::ask_outcome;
use super::{fire, missing, status_element, Callbacks, Inner};
use crate::error::{ErrorKind, QysError};
use crate::message::Event;
use crate::params::Action;
use crate::pending::{self, PendingFlow};
use crate::value::{concat, Value};
use crate::wire::PageGrant;

/// The tab's pending flows as stored; an error when the page has no usable `sessionStorage`
/// (checked before a redirect flow sends anything).
pub fn stored() -> Result<Vec<PendingFlow>, QysError> {
    let text = store(pending::STORAGE_KEY, None).ok_or_else(|| missing("sessionStorage"))?;
    Ok(pending::parse_list(
        &from_json(&text)
            .and_then(|flat| Value::from_flat(&flat))
            .unwrap_or(Value::Null),
    ))
}

fn keep(flows: &[PendingFlow]) -> Option<String> {
    store(pending::STORAGE_KEY, Some(&pending::list_json(flows)))
}

thread_local! {
    /// States being resumed on this page, by any instance (they all share this module): a second
    /// `resume` of the same return waits for nothing and fires nothing.
    static RESUMING: RefCell<Vec<String>> = const { RefCell::new(Vec::new()) };
}

/// Remembers the flow, then sends the top window to the platform's page.
pub fn leave(
    inner: &Inner,
    action: Action,
    state: String,
    grant: PageGrant,
) -> Result<JsValue, QysError> {
    let mut flows = stored()?;
    let flow = grant.flow.ok_or_else(|| {
        QysError::new(
            ErrorKind::Protocol,
            "the proxy's answer is not protocol v1: result.flow is missing or not a flow token",
        )
    })?;
    flows.push(PendingFlow {
        state,
        action,
        flow,
        proxy: inner.proxy_endpoint.clone(),
    });
    keep(&flows).ok_or_else(|| missing("sessionStorage"))?;
    let element = status_element(action)?;
    if !assign(&grant.page_url) {
        return Err(missing("location.assign"));
    }
    Ok(element)
}

/// `resume(callbacks)`: settles `promise` with `{action, event, data}` after firing the one
/// callback, or `null` when this page load is not the return of one of this tab's redirect flows.
pub fn resume(inner: &Rc<Inner>, [sign, auth, fail]: [Option<JsValue>; 3], promise: JsValue) {
    let settle = move |result: Result<JsValue, QysError>| match result {
        Ok(value) => settle(&promise, true, &value),
        Err(e) => settle(&promise, false, &to_js_error(&e)),
    };
    let Some(window) = super::bridge::window() else {
        return settle(Ok(JsValue::NULL));
    };
    let search = move || text(&get(&get(&window, "location"), "search"));
    let Some(state) = pending::returned_state(&search()).map(str::to_owned) else {
        return settle(Ok(JsValue::NULL));
    };
    // The page's URL without the returning flow's `qys_state` (the same history entry).
    let clean_url = move || replace(&pending::without_state(&search()));
    let flows = match stored() {
        Ok(flows) => flows,
        Err(e) => return settle(Err(e)),
    };
    let Some(flow) = flows
        .into_iter()
        .find(|f| f.state == state && f.proxy == inner.proxy_endpoint)
    else {
        // Not a flow of this tab and proxy (forged, replayed, or another tab's): nothing to fire.
        inner.log(&["resume: no pending flow for this return"]);
        clean_url();
        return settle(Ok(JsValue::NULL));
    };
    if RESUMING.with_borrow(|states| states.contains(&state)) {
        // Another instance is asking about this return right now.
        return settle(Ok(JsValue::NULL));
    }
    RESUMING.with_borrow_mut(|states| states.push(state.clone()));
    let action = flow.action;
    let callbacks = Callbacks {
        success: if action.is_sign() { sign } else { auth },
        fail,
    };
    // The platform sent the browser back without a success: the user left.
    ask_outcome(
        inner,
        action,
        &flow.state,
        &flow.flow,
        Box::new(move |inner, event| {
            RESUMING.with_borrow_mut(|states| states.retain(|s| *s != state));
            let event = match event {
                Ok(event) => event,
                // Kept: a reload (or another `resume`) asks again.
                Err(e) => return settle(Err(e)),
            };
            let remaining: Vec<PendingFlow> = stored()
                .unwrap_or_default()
                .into_iter()
                .filter(|f| f.state != state)
                .collect();
            let _ = keep(&remaining);
            clean_url();
            let Some(event) = event else {
                return settle(Ok(JsValue::NULL));
            };
            fire(inner, action, &callbacks, &event);
            let data = match &event {
                Event::SignSuccess(data) | Event::AuthSuccess(data) => data.to_json(),
                Event::AuthFail => "{}".into(),
            };
            let resumed = concat(&[
                r#"{"action":""#,
                action.name(),
                r#"","event":""#,
                event.name(),
                r#"","data":"#,
                &data,
                "}",
            ]);
            settle(Ok(super::bridge::parse(&resumed)));
        }),
    );
}
