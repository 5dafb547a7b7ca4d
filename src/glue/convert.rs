//! Conversions between JS values and the core's types.

use wasm_bindgen::JsValue;

use super::bridge::{error, flat, get, ty, typ};
use crate::error::QysError;
use crate::value::Value;

/// Reads a JS value into the core's [`Value`] as `JSON.stringify` sees it, except that NaN and
/// ±Infinity stay numbers for validation to refuse (`undefined` → `Null`);
/// `what` names it in the error.
pub fn to_value(js: &JsValue, what: &str) -> Result<Value, QysError> {
    if typ(js) == ty::UNDEFINED {
        return Ok(Value::Null);
    }
    // Functions, symbols, bigints and cycles have no JSON text.
    flat(js)
        .and_then(|text| Value::from_flat(&text))
        .ok_or_else(|| {
            QysError::invalid_at(
                what,
                &[" must be plain data (no functions, symbols, bigints or cycles)"],
            )
        })
}

/// The JS `Error` named `QysError` with `kind`, `code` and (for bad arguments) `param`.
pub fn to_js_error(e: &QysError) -> JsValue {
    error(
        e.kind.as_str(),
        e.code.map(|c| c as f64),
        e.param.as_deref(),
        &e.message,
    )
}

/// Whether `v` is `undefined` or `null`.
pub fn nullish(v: &JsValue) -> bool {
    typ(v) <= ty::NULL
}

/// The function at `key` of `callbacks`, if any; an error if it is present but not a function.
pub fn callback(callbacks: &JsValue, key: &str) -> Result<Option<JsValue>, QysError> {
    if nullish(callbacks) {
        return Ok(None);
    }
    if typ(callbacks) != ty::OBJECT {
        return Err(QysError::invalid(
            "callbacks",
            "the callbacks argument must be an object",
        ));
    }
    let member = get(callbacks, key);
    if nullish(&member) {
        return Ok(None);
    }
    if typ(&member) != ty::FUNCTION {
        return Err(QysError::invalid_at(key, &[" must be a function"]));
    }
    Ok(Some(member))
}
