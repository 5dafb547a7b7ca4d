//! The core's JSON reader (`qys_sdk_wasm::value::Value::parse`) and writer (`to_json`).
//!
//! Properties, on any UTF-8 input:
//! - no panic, and the depth limit holds: more than 65 nested containers never parse;
//! - the reader accepts only JSON (serde_json's grammar check agrees), and every JSON text
//!   nested at most 64 deep;
//! - what it reads is what serde_json reads (strings exactly; numbers within the documented
//!   approximation; objects by the last of repeated keys, like `JSON.parse`), except where
//!   serde_json refuses by design: numbers beyond f64 (the reader gives ±infinity) and lone
//!   surrogates (the reader gives U+FFFD);
//! - `to_json()` writes JSON that reads back to the same value (numbers as the writer documents:
//!   nine decimals below 1e19, 17 significant digits above; ±infinity as `null`);
//! - the flat text the page hands the wasm (`Value::from_flat`) reads any input without panic,
//!   and reads every value back exactly.
#![no_main]

use libfuzzer_sys::fuzz_target;
use qys_fuzz::{close, nesting};
use qys_sdk_wasm::value::Value;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let _ = Value::from_flat(text);
    let ours = Value::parse(text);
    let grammar = serde_json::from_str::<serde::de::IgnoredAny>(text).is_ok();
    let depth = nesting(text);

    if depth > 65 {
        assert!(ours.is_err(), "accepted {depth} nested containers");
    }
    match &ours {
        Ok(_) => assert!(grammar, "accepted text that is not JSON: {text:?}"),
        Err(e) => {
            assert!(e.at <= text.len(), "error offset {} past the end", e.at);
            assert!(!grammar || depth > 64, "refused JSON at byte {}: {text:?}", e.at);
        }
    }
    let Ok(value) = ours else { return };

    match serde_json::from_str::<serde_json::Value>(text) {
        Ok(theirs) => assert!(same_as_serde(&value, &theirs), "read {value:?}, serde_json read {theirs:?}"),
        Err(e) => {
            let why = e.to_string();
            assert!(
                why.contains("number out of range") || why.contains("surrogate") || why.contains("end of hex escape"),
                "serde_json refused what the reader accepted ({why}): {text:?}"
            );
        }
    }

    assert_eq!(Value::from_flat(&value.to_flat()).as_ref(), Some(&value), "flat text of {value:?}");

    let written = value.to_json();
    let back = Value::parse(&written).unwrap_or_else(|e| panic!("the writer's {written:?} does not read back (at {})", e.at));
    assert!(written_back(&value, &back), "{value:?} wrote {written:?}, read back as {back:?}");
    assert!(serde_json::from_str::<serde::de::IgnoredAny>(&written).is_ok(), "the writer's {written:?} is not JSON");
});

/// The reader's value against serde_json's: numbers correctly rounded there, within a few ulps
/// here; below about 1e-290 the reader may give 0 (`10f64.powi` underflows first).
fn same_as_serde(ours: &Value, theirs: &serde_json::Value) -> bool {
    use serde_json::Value as J;
    match (ours, theirs) {
        (Value::Null, J::Null) => true,
        (Value::Bool(a), J::Bool(b)) => a == b,
        (Value::Number(a), J::Number(b)) => {
            let b = b.as_f64().expect("serde_json numbers are f64-representable");
            close(*a, b, 1e-12, 1e-289) || (a.is_infinite() && b.abs() > 1e308 && a.signum() == b.signum())
        }
        (Value::String(a), J::String(b)) => a == b,
        (Value::Array(a), J::Array(b)) => a.len() == b.len() && a.iter().zip(b).all(|(x, y)| same_as_serde(x, y)),
        (Value::Object(members), J::Object(map)) => {
            let mut keys: Vec<&str> = members.iter().map(|(k, _)| k.as_str()).collect();
            keys.sort_unstable();
            keys.dedup();
            keys.len() == map.len()
                && map.iter().all(|(k, v)| ours.get(k).is_some_and(|mine| same_as_serde(mine, v)))
        }
        _ => false,
    }
}

/// A value against its written-and-read-back copy.
fn written_back(before: &Value, after: &Value) -> bool {
    match (before, after) {
        (Value::Number(n), Value::Null) => !n.is_finite(),
        (Value::Number(a), Value::Number(b)) => close(*a, *b, 1e-12, 1e-9),
        (Value::Array(a), Value::Array(b)) => a.len() == b.len() && a.iter().zip(b).all(|(x, y)| written_back(x, y)),
        (Value::Object(a), Value::Object(b)) => {
            a.len() == b.len() && a.iter().zip(b).all(|((ka, va), (kb, vb))| ka == kb && written_back(va, vb))
        }
        (a, b) => a == b,
    }
}
