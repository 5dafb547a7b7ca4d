//! The proxy's server-callback checks (`qys_proxy::proxy::check_personal_callback` and
//! `check_company_callback`) over the form decoding the receivers use
//! (`form_urlencoded::parse` of the body), on raw bodies and on bodies built from near-valid
//! fields (so that `authInfo`'s JSON check is reached).
//!
//! Properties: no panic; each verdict is seed 004's rule for the first occurrence of each field
//! (personal: `mode` ∈ IVS FACE BANK MANUAL and `status` ∈ 1 2 3; company: `status` ∈ 0 1 2,
//! `actionEvent` ∈ 0 1 2 4 6 7 9, a non-empty `requestId`, and `authInfo`, when present, a JSON
//! object); a refusal names the field; the fields re-encoded as a form decode to the same fields.
#![no_main]

use arbitrary::{Arbitrary, Result, Unstructured};
use libfuzzer_sys::fuzz_target;
use qys_fuzz::{one_in, string_like};
use qys_proxy::proxy::{check_company_callback, check_personal_callback};

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else { return };
    let body = if mode < 96 {
        rest.to_vec()
    } else {
        let Ok(body) = structured(&mut Unstructured::new(rest)) else { return };
        body
    };
    // As `receive_callback` decodes a form body.
    let fields: Vec<(String, String)> =
        form_urlencoded::parse(&body).map(|(k, v)| (k.into_owned(), v.into_owned())).collect();

    let first = |k: &str| fields.iter().find(|(key, _)| key == k).map(|(_, v)| v.as_str());
    let personal = check_personal_callback(&fields);
    let personal_rule = matches!(first("mode"), Some("IVS" | "FACE" | "BANK" | "MANUAL")) && matches!(first("status"), Some("1" | "2" | "3"));
    assert_eq!(personal.is_ok(), personal_rule, "personal {personal:?} for {fields:?}");
    if let Err(why) = &personal {
        assert!(why.starts_with("mode ") || why.starts_with("status "), "{why}");
    }

    let company = check_company_callback(&fields);
    let info_ok = first("authInfo").is_none_or(|info| matches!(serde_json::from_str(info), Ok(serde_json::Value::Object(_))));
    let company_rule = matches!(first("status"), Some("0" | "1" | "2"))
        && matches!(first("actionEvent"), Some("0" | "1" | "2" | "4" | "6" | "7" | "9"))
        && first("requestId").is_some_and(|id| !id.is_empty())
        && info_ok;
    assert_eq!(company.is_ok(), company_rule, "company {company:?} for {fields:?}");
    if let Err(why) = &company {
        assert!(["status ", "actionEvent ", "requestId ", "authInfo "].iter().any(|f| why.starts_with(f)), "{why}");
    }

    let encoded = form_urlencoded::Serializer::new(String::new()).extend_pairs(&fields).finish();
    let decoded: Vec<(String, String)> = form_urlencoded::parse(encoded.as_bytes()).into_owned().collect();
    assert_eq!(decoded, fields, "re-encoded as {encoded:?}");
});

const KEYS: &[&str] = &["mode", "status", "actionEvent", "requestId", "authInfo", "contact", "companyName", "Mode", "status "];
const VALUES: &[&str] = &["IVS", "FACE", "BANK", "MANUAL", "0", "1", "2", "3", "4", "6", "7", "9", "", "8f2c", "ivs", "01"];
const INFOS: &[&str] = &[
    r#"{"companyName":"契约锁测试公司","registerNo":"91330100MA2XXXXX0X"}"#,
    "{}",
    "[]",
    "null",
    r#"{"a":1e999}"#,
    r#"{"a":"\ud800"}"#,
    r#"{"a":{"b":[1,2,{"c":null}]}}"#,
];

/// A form body from near-valid fields, encoded like a browser or the platform would, with
/// some raw junk mixed in.
fn structured(u: &mut Unstructured<'_>) -> Result<Vec<u8>> {
    let mut form = form_urlencoded::Serializer::new(String::new());
    let mut raw = Vec::new();
    for _ in 0..u.int_in_range(0..=8)? {
        let key = string_like(u, KEYS)?;
        let json = if key == "authInfo" { !one_in(u, 4)? } else { one_in(u, 8)? };
        let value = match json {
            true => {
                let info = string_like(u, INFOS)?;
                if one_in(u, 8)? {
                    let depth = u.int_in_range(1..=300)?;
                    ["[".repeat(depth), "]".repeat(depth)].concat()
                } else {
                    info
                }
            }
            false => string_like(u, VALUES)?,
        };
        if one_in(u, 8)? {
            raw.extend_from_slice(&Vec::<u8>::arbitrary(u)?);
            raw.push(b'&');
        }
        form.append_pair(&key, &value);
    }
    let mut body = form.finish().into_bytes();
    if !raw.is_empty() {
        let at = if body.is_empty() { 0 } else { u.int_in_range(0..=body.len())? };
        body.splice(at..at, raw);
    }
    Ok(body)
}
