//! JS resources owned by Rust values: dropping one releases it (model: gloo events/timers).
//! One closure type, `FnMut(JsValue)`, serves every callback from the page (each distinct type
//! would cost its own shims).

use wasm_bindgen::closure::Closure;
use wasm_bindgen::JsValue;

use super::bridge::{abort, off};

/// One event listener, for `(target, kind)` pairs; removed from all of them on drop.
#[must_use = "the listener is removed as soon as this value is dropped"]
pub struct EventListener {
    on: Vec<(JsValue, &'static str)>,
    callback: Closure<dyn FnMut(JsValue)>,
}

impl EventListener {
    /// Adds `callback` as a listener for each `kind` of events on its `target`.
    pub fn new(on: Vec<(JsValue, &'static str)>, callback: impl FnMut(JsValue) + 'static) -> Self {
        let callback = Closure::<dyn FnMut(JsValue)>::new(callback);
        for (target, kind) in &on {
            super::bridge::on(target, kind, callback.as_ref());
        }
        Self { on, callback }
    }
}

impl Drop for EventListener {
    fn drop(&mut self) {
        for (target, kind) in &self.on {
            off(target, kind, self.callback.as_ref());
        }
    }
}

/// A request in flight (its timer runs in `post`); aborted on drop, which does nothing once it
/// has settled.
#[must_use = "the request is aborted as soon as this value is dropped"]
pub struct Posted(pub JsValue);

impl Drop for Posted {
    fn drop(&mut self) {
        abort(&self.0);
    }
}
