//! The page's side of the glue: the coarse helpers of `js/bridge.js`. Each does one job and
//! reports plain facts; what to do with them is decided here in Rust. (A few coarse imports
//! instead of web-sys's fine-grained ones: each import costs a JS shim and a hashed name.)

use wasm_bindgen::prelude::*;

/// What `typ` reports.
pub mod ty {
    pub const UNDEFINED: u8 = 0;
    pub const NULL: u8 = 1;
    pub const TRUE: u8 = 3;
    pub const STRING: u8 = 6;
    pub const BIGINT: u8 = 7;
    pub const FUNCTION: u8 = 9;
    /// An object (not null, not a function).
    pub const OBJECT: u8 = 10;
}

#[wasm_bindgen(module = "/js/bridge.js")]
extern "C" {
    pub fn typ(v: &JsValue) -> u8;
    pub fn get(o: &JsValue, k: &str) -> JsValue;
    pub fn set(o: &JsValue, k: &str, v: &str);
    pub fn text(v: &JsValue) -> String;
    pub fn flat(v: &JsValue) -> Option<String>;
    #[wasm_bindgen(js_name = fromJson)]
    pub fn from_json(s: &str) -> Option<String>;
    pub fn parse(s: &str) -> JsValue;
    pub fn same(a: &JsValue, b: &JsValue) -> bool;
    pub fn win() -> JsValue;
    pub fn url(input: &str, base: Option<&str>) -> JsValue;
    pub fn random(bytes: &mut [u8]) -> bool;
    pub fn store(k: &str, v: Option<&str>) -> Option<String>;
    pub fn replace(search: &str);
    pub fn assign(url: &str) -> bool;
    pub fn navigate(mp: &JsValue, url: &str, complete: JsValue) -> bool;
    pub fn iframe(src: &str, title: &str, camera: bool) -> JsValue;
    pub fn status(text: &str) -> JsValue;
    pub fn gone(frame: &JsValue) -> bool;
    pub fn on(target: &JsValue, kind: &str, f: &JsValue);
    pub fn off(target: &JsValue, kind: &str, f: &JsValue);
    pub fn post(url: &str, body: &str, ms: u32, done: JsValue) -> JsValue;
    pub fn abort(request: &JsValue);
    pub fn defer() -> js_sys::Promise;
    pub fn settle(promise: &JsValue, ok: bool, v: &JsValue);
    pub fn error(kind: &str, code: Option<f64>, param: Option<&str>, message: &str) -> JsValue;
    pub fn call(f: &JsValue, data: Option<&str>);
    pub fn log(error: bool, a: &str, b: &str);
}

/// The string `v` is, or `""`.
pub fn string(v: &JsValue) -> String {
    if typ(v) == ty::STRING {
        text(v)
    } else {
        String::new()
    }
}

/// `window`, if this is a page.
pub fn window() -> Option<JsValue> {
    let w = win();
    (typ(&w) == ty::OBJECT).then_some(w)
}
