//! JS resources owned by Rust values: dropping one releases it (model: gloo events/timers).
//! One closure type, `FnMut(JsValue)`, serves every callback from the page (each distinct type
//! would cost its own shims).

use wasm_bindgen::closure::Closure;
use wasm_bindgen::JsValue;

use super::bridge::{abort, off, on};

/// An event listener on a target; removed on drop.
#[must_use = "the listener is removed as soon as this value is dropped"]
pub struct EventListener {
    target: JsValue,
    kind: &'static str,
    callback: Closure<dyn FnMut(JsValue)>,
}

impl EventListener {
    /// Adds `callback` as a listener for `kind` events on `target`.
    pub fn new(target: &JsValue, kind: &'static str, callback: impl FnMut(JsValue) + 'static) -> Self {
        let callback = Closure::<dyn FnMut(JsValue)>::new(callback);
        on(target, kind, callback.as_ref());
        Self { target: target.clone(), kind, callback }
    }
}

impl Drop for EventListener {
    fn drop(&mut self) {
        off(&self.target, self.kind, self.callback.as_ref());
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
