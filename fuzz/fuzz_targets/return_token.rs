//! The proxy's token decoders: `qys_proxy::token::TokenKey::verify` (the HMAC-signed return
//! token of the return page) and `TokenKey::unseal` (the ChaCha20-Poly1305-sealed flow token of
//! `outcome`).
//!
//! Three kinds of input:
//! - arbitrary text: no panic; nothing verifies under another key; what verifies is exactly
//!   what the key signs for that token (no second encoding), and what unseals is canonical;
//! - authentic envelopes around arbitrary or near-valid payloads (signed and sealed here with
//!   the documented derivations): the decoders reach the payload reader, and answer exactly
//!   what serde_json reads as a `FlowToken` (`Malformed` otherwise; `Expired` before `now`);
//! - random `FlowToken`s: sign/verify and seal/unseal round trip, expiry is enforced, any
//!   changed character is refused, and neither encoding passes for the other.
#![no_main]

use arbitrary::{Arbitrary, Result, Unstructured};
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use chacha20poly1305::aead::{Aead, KeyInit};
use chacha20poly1305::{ChaCha20Poly1305, Nonce};
use hmac::{Hmac, Mac};
use libfuzzer_sys::fuzz_target;
use qys_fuzz::{one_in, string_like};
use qys_proxy::protocol::Action;
use qys_proxy::token::{FlowToken, TokenError, TokenKey};
use serde_json::{json, Value};
use sha2::Sha256;

/// The key the seed tokens are made with (`fuzz/corpus/return_token/seed-*`).
const KEY: &[u8] = b"qys-fuzz return token key";

fn hmac(key: &[u8], message: &[u8]) -> [u8; 32] {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key).unwrap();
    mac.update(message);
    mac.finalize().into_bytes().into()
}

fuzz_target!(|data: &[u8]| {
    let key = TokenKey::new(KEY);
    let other = TokenKey::new(b"another key");
    let Some((&mode, rest)) = data.split_first() else { return };
    let mut u = Unstructured::new(rest);
    match mode % 4 {
        0 | 1 => {
            let Ok(text) = std::str::from_utf8(rest) else { return };
            for now in [0, 1_700_000_000, u64::MAX] {
                if let Ok(token) = key.verify(text, now) {
                    assert!(token.expires >= now);
                    assert_eq!(key.sign(&token), text, "a second encoding of {token:?} verifies");
                }
                if let Ok(token) = key.unseal(text, now) {
                    assert!(token.expires >= now);
                    assert_eq!(B64.encode(B64.decode(text).unwrap()), text, "a non-canonical flow token unseals");
                }
                assert!(matches!(other.verify(text, now), Err(TokenError::Malformed | TokenError::BadSignature)));
                assert!(matches!(other.unseal(text, now), Err(TokenError::Malformed | TokenError::BadSignature)));
            }
        }
        2 => {
            let Ok((payload, nonce, now)) = authentic_payload(&mut u) else { return };
            let expected = match serde_json::from_slice::<FlowToken>(&payload) {
                Err(_) => Err(TokenError::Malformed),
                Ok(t) if t.expires < now => Err(TokenError::Expired),
                Ok(t) => Ok(t),
            };
            // The documented constructions (token.rs): HMAC-SHA256 with the key as is, and
            // ChaCha20-Poly1305 under HMAC-SHA256(key, "qys-proxy/flow-token/v1").
            let signed = format!("{}.{}", B64.encode(&payload), B64.encode(hmac(KEY, &payload)));
            assert_eq!(key.verify(&signed, now), expected, "return token of {:?}", String::from_utf8_lossy(&payload));
            let seal_key = hmac(KEY, b"qys-proxy/flow-token/v1");
            let sealed = ChaCha20Poly1305::new(&seal_key.into()).encrypt(Nonce::from_slice(&nonce), payload.as_slice()).unwrap();
            let sealed = B64.encode([nonce.as_slice(), &sealed].concat());
            assert_eq!(key.unseal(&sealed, now), expected, "flow token of {:?}", String::from_utf8_lossy(&payload));
            assert_eq!(other.verify(&signed, now), Err(TokenError::BadSignature));
            assert_eq!(other.unseal(&sealed, now), Err(TokenError::BadSignature));
        }
        _ => {
            let Ok((token, now, at, with)) = token_case(&mut u) else { return };
            let expected = if token.expires < now { Err(TokenError::Expired) } else { Ok(token.clone()) };
            let signed = key.sign(&token);
            let sealed = key.seal(&token);
            assert_eq!(key.verify(&signed, now), expected);
            assert_eq!(key.unseal(&sealed, now), expected);
            assert_eq!(other.verify(&signed, now), Err(TokenError::BadSignature));
            assert_eq!(other.unseal(&sealed, now), Err(TokenError::BadSignature));
            assert!(key.verify(&sealed, 0).is_err() && key.unseal(&signed, 0).is_err());
            for text in [&signed, &sealed] {
                let mut chars: Vec<char> = text.chars().collect();
                let at = at % chars.len();
                if chars[at] == with {
                    continue;
                }
                chars[at] = with;
                let changed: String = chars.into_iter().collect();
                assert!(key.verify(&changed, 0).is_err(), "{changed:?} verifies");
                assert!(key.unseal(&changed, 0).is_err(), "{changed:?} unseals");
            }
        }
    }
});

const ACTIONS: &[&str] = &["personalSign", "enterpriseSign", "personalAuth", "enterpriseAuth", "outcome", "PersonalSign"];

/// A payload (arbitrary bytes, or a near-`FlowToken` JSON object), a nonce, and `now`.
fn authentic_payload(u: &mut Unstructured<'_>) -> Result<(Vec<u8>, [u8; 12], u64)> {
    let nonce = <[u8; 12]>::arbitrary(u)?;
    let now = *u.choose(&[0, 1_700_000_000, 1_700_001_800, u64::MAX])?;
    if one_in(u, 4)? {
        return Ok((Vec::<u8>::arbitrary(u)?, nonce, now));
    }
    let mut object = serde_json::Map::new();
    for (name, value) in [
        ("a", Value::String(string_like(u, ACTIONS)?)),
        ("s", Value::String(string_like(u, &["abcdefghijklmnopqrstuv"])?)),
        ("o", Value::String(string_like(u, &["https://shop.example"])?)),
        ("k", Value::String(string_like(u, &["2603417854124281870", ""])?)),
        ("c", Value::String(string_like(u, &["13700000044"])?)),
        ("x", json!(*u.choose(&[1_700_001_800u64, 0, u64::MAX])?)),
        ("r", Value::String(string_like(u, &["https://shop.example/pay?order=7"])?)),
    ] {
        match u.int_in_range(0u8..=9)? {
            6 => {}
            7 => {
                object.insert(name.into(), Value::Null);
            }
            8 => {
                object.insert(name.into(), json!(f64::arbitrary(u)?.to_string()));
            }
            9 => {
                object.insert(name.into(), json!([i64::arbitrary(u)?]));
            }
            _ => {
                object.insert(name.into(), value);
            }
        }
    }
    if one_in(u, 8)? {
        object.insert(String::arbitrary(u)?, json!(bool::arbitrary(u)?));
    }
    let mut payload = serde_json::to_vec(&object).unwrap();
    if one_in(u, 8)? {
        // Text around the object: white space passes, anything else is malformed.
        payload.splice(0..0, Vec::<u8>::arbitrary(u)?.into_iter().take(4));
    }
    Ok((payload, nonce, now))
}

/// A token, `now`, and a character position and replacement to tamper with.
fn token_case(u: &mut Unstructured<'_>) -> Result<(FlowToken, u64, usize, char)> {
    let token = FlowToken {
        action: *u.choose(&Action::ALL)?,
        state: string_like(u, &["abcdefghijklmnopqrstuv"])?,
        target_origin: string_like(u, &["https://shop.example", "http://127.0.0.1:8080"])?,
        subject: string_like(u, &["2603417854124281870", "契约锁测试公司", ""])?,
        contact: string_like(u, &["13700000044", "user@example.com"])?,
        expires: u64::arbitrary(u)?,
        return_url: if bool::arbitrary(u)? { Some(string_like(u, &["https://shop.example/pay?order=7"])?) } else { None },
    };
    let now = if bool::arbitrary(u)? { token.expires.saturating_add(u64::from(u8::arbitrary(u)?)).saturating_sub(128) } else { u64::arbitrary(u)? };
    let with = *u.choose(&['A', 'a', '0', '-', '_', '.', '=', '+', '/', ' ', 'é'])?;
    Ok((token, now, usize::arbitrary(u)?, with))
}
