//! Conversions between JS values and the core's types.

use js_sys::{Error, Reflect, JSON};
use wasm_bindgen::{JsCast, JsValue};

use crate::error::QysError;
use crate::value::Value;

/// Reads a JS value into the core's [`Value`] through `JSON.stringify` (`undefined` → `Null`);
/// `what` names it in the error.
pub fn to_value(js: &JsValue, what: &str) -> Result<Value, QysError> {
    if js.is_undefined() {
        return Ok(Value::Null);
    }
    let unreadable = || QysError::invalid_at(what, &[" must be plain data (no functions, symbols, bigints or cycles)"]);
    if js.is_function() || js.is_symbol() {
        return Err(unreadable());
    }
    let text = JSON::stringify(js).map_err(|_| unreadable())?;
    Value::parse(&String::from(text)).map_err(|_| unreadable())
}

/// Builds a plain JS object from a core [`Value`].
pub fn to_js(value: &Value) -> JsValue {
    JSON::parse(&value.to_json()).unwrap_or(JsValue::NULL)
}

/// The JS `Error` named `QysError` with `kind`, `code` and (for bad arguments) `param`.
pub fn to_js_error(error: &QysError) -> JsValue {
    let js = Error::new(&error.message);
    js.set_name("QysError");
    let code = error.code.map_or(JsValue::NULL, |c| JsValue::from_f64(c as f64));
    let _ = Reflect::set(&js, &"kind".into(), &error.kind.as_str().into());
    let _ = Reflect::set(&js, &"code".into(), &code);
    if let Some(param) = &error.param {
        let _ = Reflect::set(&js, &"param".into(), &param.into());
    }
    js.into()
}

/// The function at `key` of `callbacks`, if any; an error if it is present but not a function.
pub fn callback(callbacks: &JsValue, key: &str) -> Result<Option<js_sys::Function>, QysError> {
    if callbacks.is_undefined() || callbacks.is_null() {
        return Ok(None);
    }
    if !callbacks.is_object() {
        return Err(QysError::invalid("callbacks", "the callbacks argument must be an object"));
    }
    let member = Reflect::get(callbacks, &key.into()).unwrap_or(JsValue::UNDEFINED);
    if member.is_undefined() || member.is_null() {
        return Ok(None);
    }
    member
        .dyn_into::<js_sys::Function>()
        .map(Some)
        .map_err(|_| QysError::invalid_at(key, &[" must be a function"]))
}
