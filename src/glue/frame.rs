//! The iframe presentation: the platform's page in an `<iframe>` the page appends, and the
//! `message` listener that waits for the return page's one message.

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use wasm_bindgen::JsCast;
use web_sys::{HtmlIFrameElement, MessageEvent};

use super::convert::to_value;
use super::resources::EventListener;
use super::{fire, missing, Callbacks, Inner, Open};
use crate::error::QysError;
use crate::message::MessageGate;
use crate::params::Action;
use crate::presentation::frame_title;
use crate::value::Value;
use crate::wire::PageGrant;

/// An open iframe flow. Its `message` listener lives as long as this value and holds the
/// instance, so an open flow keeps working after the page drops its `qysSdk` object.
pub struct FrameFlow {
    frame: HtmlIFrameElement,
    /// The iframe has loaded a page, so the page did put it in the document.
    loaded: Rc<Cell<bool>>,
    _messages: EventListener,
    _load: EventListener,
}

impl FrameFlow {
    /// A flow whose iframe the page added and then removed can never finish.
    pub fn abandoned(&self) -> bool {
        self.loaded.get() && !self.frame.is_connected()
    }
}

/// Creates the iframe for `grant` and starts listening for its return message.
pub fn open(
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
            (Some(source), Some(own)) => wasm_bindgen::JsValue::from(source) == wasm_bindgen::JsValue::from(own),
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
        // Terminal: drop the listener now (wasm-bindgen frees a running closure after it returns).
        let callbacks = callbacks.clone();
        inner.close_flows(Some(id));
        fire(inner, action, &callbacks, &accepted);
    });
    let loaded = Rc::new(Cell::new(false));
    let flag = loaded.clone();
    let load = EventListener::new(frame.clone().into(), "load", move |_| flag.set(true));
    let flow = FrameFlow { frame: frame.clone(), loaded, _messages: messages, _load: load };
    inner.keep_open(id, Open::Frame(flow));
    Ok(frame)
}
