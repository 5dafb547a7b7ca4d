//! JS resources owned by Rust values: dropping one releases it (model: gloo events/timers).

use wasm_bindgen::closure::Closure;
use wasm_bindgen::JsCast;
use web_sys::{Event, EventTarget};

/// An event listener on a target; removed on drop.
#[must_use = "the listener is removed as soon as this value is dropped"]
pub struct EventListener {
    target: EventTarget,
    kind: &'static str,
    callback: Closure<dyn FnMut(Event)>,
}

impl EventListener {
    /// Adds `callback` as a listener for `kind` events on `target`.
    pub fn new(target: EventTarget, kind: &'static str, callback: impl FnMut(Event) + 'static) -> Self {
        let callback = Closure::<dyn FnMut(Event)>::new(callback);
        let _ = target.add_event_listener_with_callback(kind, callback.as_ref().unchecked_ref());
        Self { target, kind, callback }
    }
}

impl Drop for EventListener {
    fn drop(&mut self) {
        let _ = self.target.remove_event_listener_with_callback(self.kind, self.callback.as_ref().unchecked_ref());
    }
}

#[wasm_bindgen::prelude::wasm_bindgen]
extern "C" {
    #[wasm_bindgen(js_name = setTimeout)]
    fn set_timeout(callback: &js_sys::Function, ms: u32) -> JsTimerId;
    #[wasm_bindgen(js_name = clearTimeout)]
    fn clear_timeout(id: &JsTimerId);
    /// A timer handle (a number in browsers, an object in Node).
    pub type JsTimerId;
}

/// A one-shot timer; cancelled on drop.
#[must_use = "the timer is cancelled as soon as this value is dropped"]
pub struct Timeout {
    id: JsTimerId,
    _callback: Closure<dyn FnMut()>,
}

impl Timeout {
    /// Calls `callback` once after `ms` milliseconds.
    pub fn new(ms: u32, callback: impl FnOnce() + 'static) -> Self {
        let callback = Closure::once(callback);
        let id = set_timeout(callback.as_ref().unchecked_ref(), ms);
        Self { id, _callback: callback }
    }
}

impl Drop for Timeout {
    fn drop(&mut self) {
        clear_timeout(&self.id);
    }
}
