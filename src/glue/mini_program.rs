//! The mini-program presentation: inside a WeChat `<web-view>`, the mini-program's host page
//! opens the 契约锁 plugin with the proxy's ticket; when the web-view page is shown again, the
//! SDK asks the proxy how the flow ended and fires the call's own callbacks once.

use std::cell::Cell;
use std::rc::Rc;

use wasm_bindgen::closure::Closure;
use wasm_bindgen::JsValue;

use super::bridge::{get, log, navigate, string, ty, typ};
use super::request::ask_outcome;
use super::resources::EventListener;
use super::{fire, status_element, Callbacks, Flow, Inner};
use crate::error::{ErrorKind, QysError};
use crate::message::Event;
use crate::params::Action;
use crate::presentation::mini_program_url;
use crate::wire::TicketGrant;

/// `wx.miniProgram` of WeChat's JS-SDK, checked before a mini-program flow sends anything.
pub fn bridge(window: &JsValue) -> Result<JsValue, QysError> {
    let wx = get(window, "wx");
    let mp = get(&wx, "miniProgram");
    let object = |v: &JsValue| matches!(typ(v), ty::OBJECT | ty::FUNCTION);
    if object(&wx) && object(&mp) && typ(&get(&mp, "navigateTo")) == ty::FUNCTION {
        return Ok(mp);
    }
    Err(QysError::new(
        ErrorKind::Network,
        "wx.miniProgram is not available: load WeChat's JS-SDK (https://res.wx.qq.com/open/js/jweixin-1.6.0.js) \
         on this page before calling; the mini-program presentation works only in a mini-program web-view",
    ))
}

/// Asks the mini-program to open the plugin page, and watches for the way back.
pub fn open(
    inner: &Rc<Inner>,
    window: &JsValue,
    action: Action,
    state: String,
    grant: TicketGrant,
    callbacks: Callbacks,
) -> Result<JsValue, QysError> {
    let mp = bridge(window)?;
    let document = get(window, "document");
    let element = status_element(action)?;
    let url = mini_program_url(
        &inner.options.mini_program_page,
        action,
        &grant.ticket,
        &grant.env,
    );

    let id = inner.next_id();
    let fail_callback = callbacks.fail.clone();
    // Set once the page was hidden: only a page shown *again* means the plugin is closed.
    let left = Cell::new(false);
    let asking = Rc::new(Cell::new(false));
    let check = {
        let (inner, hidden) = (inner.clone(), document.clone());
        let flow = grant.flow;
        move |event| {
            if string(&get(&event, "type")) == "pagehide"
                || typ(&get(&hidden, "hidden")) == ty::TRUE
            {
                left.set(true);
                return;
            }
            if !left.get() || asking.get() {
                return;
            }
            asking.set(true);
            ask(
                &inner,
                id,
                action,
                &state,
                &flow,
                callbacks.clone(),
                asking.clone(),
            );
        }
    };
    inner.log(&[
        action.name(),
        ": opening the mini-program page ",
        &inner.options.mini_program_page,
    ]);
    // `complete` runs once in WeChat and carries `errMsg`. The page owns the callback (one
    // closure type for every callback: `FnMut`, run once through `take`).
    let weak = Rc::downgrade(inner);
    let mut once = Some((weak, fail_callback));
    let completed = Closure::<dyn FnMut(JsValue)>::new(move |result: JsValue| {
        let Some((weak, fail_callback)) = once.take() else {
            return;
        };
        let why = string(&get(&result, "errMsg"));
        if why.ends_with(":ok") {
            return;
        }
        // WeChat refused to open the host page (not in app.json, wrong path): the flow is over.
        log(
            true,
            "[qys-sdk] wx.miniProgram.navigateTo failed; check miniProgramPage:",
            &why,
        );
        if let Some(inner) = weak.upgrade() {
            inner.close_flows(Some(id));
            if !inner.destroyed.get() {
                fire(
                    &inner,
                    action,
                    &Callbacks {
                        success: None,
                        fail: fail_callback,
                    },
                    &Event::AuthFail,
                );
            }
        }
    })
    .into_js_value();
    if !navigate(&mp, &url, completed) {
        return Err(QysError::new(
            ErrorKind::Network,
            "wx.miniProgram.navigateTo threw; check that WeChat's JS-SDK is loaded and miniProgramPage is in app.json",
        ));
    }
    // Watched only once the mini-program was asked to navigate: a call that failed never fires.
    let on = vec![
        (document, "visibilitychange"),
        (window.clone(), "pageshow"),
        (window.clone(), "pagehide"),
    ];
    inner.keep_open(Flow {
        id,
        frame: None,
        _listener: EventListener::new(on, check),
    });
    Ok(element)
}

/// Asks the proxy for the flow's outcome (shown again without a confirmed success: the user
/// left the plugin); fires once and closes the flow when it is known.
fn ask(
    inner: &Rc<Inner>,
    id: u32,
    action: Action,
    state: &str,
    flow: &str,
    callbacks: Callbacks,
    asking: Rc<Cell<bool>>,
) {
    ask_outcome(
        inner,
        action,
        state,
        flow,
        Box::new(move |inner, event| {
            asking.set(false);
            match event {
                // Kept open: the next time the page is shown, it asks again.
                Err(e) => inner.log(&[action.name(), ": ", &e.message]),
                Ok(event) => {
                    inner.close_flows(Some(id));
                    if let Some(event) = event {
                        fire(inner, action, &callbacks, &event);
                    }
                }
            }
        }),
    );
}
