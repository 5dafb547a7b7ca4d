//! The iframe presentation: the platform's page in an `<iframe>` the page appends, and the
//! `message` listener that waits for the return page's one message.

use std::cell::RefCell;
use std::rc::Rc;

use wasm_bindgen::JsValue;

use super::bridge::{get, iframe, same, string, ty, typ};
use super::convert::to_value;
use super::resources::EventListener;
use super::{fire, missing, Callbacks, Flow, Inner};
use crate::error::QysError;
use crate::message::MessageGate;
use crate::params::Action;
use crate::presentation::frame_title;
use crate::value::Value;
use crate::wire::PageGrant;

/// Creates the iframe for `grant` and starts listening for its return message. The listener
/// holds the instance, so an open flow keeps working after the page drops its `qysSdk` object.
pub fn open(
    inner: &Rc<Inner>,
    window: &JsValue,
    action: Action,
    state: String,
    grant: PageGrant,
    callbacks: Callbacks,
    allow_camera: bool,
) -> Result<JsValue, QysError> {
    let frame = iframe(&grant.page_url, frame_title(action), allow_camera);
    if typ(&frame) == ty::UNDEFINED {
        return Err(missing("document"));
    }
    let id = inner.next_id();
    let gate = RefCell::new(MessageGate::new(action, grant.return_origin, state));
    let owner = inner.clone();
    let watched = frame.clone();
    let messages = EventListener::new(vec![(window.clone(), "message")], move |event| {
        let inner = &owner;
        let origin = string(&get(&event, "origin"));
        let from_frame = same(&get(&event, "source"), &get(&watched, "contentWindow"));
        // Origin and window first: data from anyone else is never even read.
        let accepted = if gate.borrow().accepts(&origin, from_frame) {
            let data = to_value(&get(&event, "data"), "message").unwrap_or(Value::Null);
            gate.borrow_mut().offer(&origin, from_frame, &data)
        } else {
            None
        };
        let Some(accepted) = accepted else {
            inner.log(&[action.name(), ": ignored a message from ", &origin]);
            return;
        };
        // Terminal: drop the listener now (wasm-bindgen frees a running closure after it returns).
        let callbacks = callbacks.clone();
        inner.close_flows(Some(id));
        fire(inner, action, &callbacks, &accepted);
    });
    inner.keep_open(Flow {
        id,
        frame: Some(frame.clone()),
        _listener: messages,
    });
    Ok(frame)
}
