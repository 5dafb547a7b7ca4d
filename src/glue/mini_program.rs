//! The mini-program presentation: inside a WeChat `<web-view>`, the mini-program's host page
//! opens the 契约锁 plugin with the proxy's ticket; when the web-view page is shown again, the
//! SDK asks the proxy how the flow ended and fires the call's own callbacks once.

use std::cell::Cell;
use std::rc::Rc;

use js_sys::{Function, Object, Reflect};
use wasm_bindgen::closure::Closure;
use wasm_bindgen::{JsCast, JsValue};
use web_sys::HtmlElement;

use super::request::{on_answer, send};
use super::resources::EventListener;
use super::{fire, missing, status_element, Callbacks, Inner, Open};
use crate::error::{ErrorKind, QysError};
use crate::message::Event;
use crate::params::Action;
use crate::presentation::mini_program_url;
use crate::wire::{outcome_answer, Outcome, Request, TicketGrant};

/// `wx.miniProgram` of WeChat's JS-SDK, checked before a mini-program flow sends anything.
pub fn bridge() -> Result<Object, QysError> {
    let window = web_sys::window().ok_or_else(|| missing("window"))?;
    let get = |target: &JsValue, key: &str| Reflect::get(target, &key.into()).ok().filter(|v| v.is_object() || v.is_function());
    get(&window, "wx")
        .and_then(|wx| get(&wx, "miniProgram"))
        .filter(|mp| get(mp, "navigateTo").is_some_and(|f| f.is_function()))
        .map(JsValue::unchecked_into)
        .ok_or_else(|| {
            QysError::new(
                ErrorKind::Network,
                "wx.miniProgram is not available: load WeChat's JS-SDK (https://res.wx.qq.com/open/js/jweixin-1.6.0.js) \
                 on this page before calling; the mini-program presentation works only in a mini-program web-view",
            )
        })
}

/// An open mini-program flow: listeners for the page being hidden and shown again.
pub struct Watch {
    _listeners: [EventListener; 3],
}

/// Asks the mini-program to open the plugin page, and watches for the way back.
pub fn open(inner: &Rc<Inner>, action: Action, state: String, grant: TicketGrant, callbacks: Callbacks) -> Result<HtmlElement, QysError> {
    let bridge = bridge()?;
    let window = web_sys::window().ok_or_else(|| missing("window"))?;
    let document = window.document().ok_or_else(|| missing("document"))?;
    let element = status_element(action)?;
    let url = mini_program_url(&inner.options.mini_program_page, action, &grant.ticket, &grant.env);

    let id = inner.next_id();
    // Set once the page was hidden: only a page shown *again* means the plugin is closed.
    let left = Rc::new(Cell::new(false));
    let asking = Rc::new(Cell::new(false));
    let on_hide = {
        let left = left.clone();
        move |_| left.set(true)
    };
    let check = {
        let (inner, document, left) = (inner.clone(), document.clone(), left.clone());
        let flow = grant.flow.clone();
        move |_| {
            if document.hidden() {
                left.set(true);
                return;
            }
            if !left.get() || asking.get() {
                return;
            }
            asking.set(true);
            ask(&inner, id, action, &state, &flow, callbacks.clone(), asking.clone());
        }
    };
    let check = Rc::new(std::cell::RefCell::new(check));
    let (a, b) = (check.clone(), check);
    let listeners = [
        EventListener::new(document.into(), "visibilitychange", move |e| (a.borrow_mut())(e)),
        EventListener::new(window.clone().into(), "pageshow", move |e| (b.borrow_mut())(e)),
        EventListener::new(window.into(), "pagehide", on_hide),
    ];
    inner.keep_open(id, Open::MiniProgram { _watch: Watch { _listeners: listeners } });

    let options = Object::new();
    let _ = Reflect::set(&options, &"url".into(), &url.as_str().into());
    let log_owner = inner.clone();
    let failed = Closure::once_into_js(move |error: JsValue| {
        // WeChat refused to open the host page (not in app.json, wrong path): the flow is over.
        let why = Reflect::get(&error, &"errMsg".into()).ok().and_then(|m| m.as_string()).unwrap_or_default();
        web_sys::console::error_2(&"[qys-sdk] wx.miniProgram.navigateTo failed; check miniProgramPage:".into(), &why.into());
        log_owner.close_flows(Some(id));
    });
    let _ = Reflect::set(&options, &"fail".into(), &failed);
    let navigate: Function = Reflect::get(&bridge, &"navigateTo".into()).map_err(|_| missing("wx.miniProgram"))?.unchecked_into();
    inner.log(&[action.name(), ": opening the mini-program page ", &inner.options.mini_program_page]);
    navigate.call1(&bridge, &options).map_err(|_| missing("wx.miniProgram.navigateTo"))?;
    Ok(element)
}

/// Asks the proxy for the flow's outcome; fires once and closes the flow when it is known.
fn ask(inner: &Rc<Inner>, id: u32, action: Action, state: &str, flow: &str, callbacks: Callbacks, asking: Rc<Cell<bool>>) {
    let sent = match send(inner, &Request::outcome_form_body(state, flow)) {
        Ok(sent) => sent,
        Err(e) => {
            asking.set(false);
            return inner.log(&[action.name(), ": ", &e.message]);
        }
    };
    on_answer(inner.clone(), sent, Box::new(move |inner, answer| {
        asking.set(false);
        let event = match answer.and_then(|(status, body)| outcome_answer(action, status, body.as_ref())) {
            Ok(Some(Outcome::Event(event))) => event,
            // Shown again without a confirmed success: the user left the plugin.
            Ok(Some(Outcome::Pending)) => Event::AuthFail,
            Ok(None) => {
                inner.log(&[action.name(), ": the proxy no longer knows this flow"]);
                return inner.close_flows(Some(id));
            }
            // Kept open: the next time the page is shown, it asks again.
            Err(e) => return inner.log(&[action.name(), ": ", &e.message]),
        };
        inner.close_flows(Some(id));
        fire(inner, action, &callbacks, &event);
    }));
}
