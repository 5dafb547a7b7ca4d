//! Expiring tokens that carry a flow's facts, so that any proxy instance sharing the key can
//! serve the return page and answer `outcome`; no per-flow state in memory.
//!
//! Two encodings of the same [`FlowToken`]:
//! - the return token inside `callbackPage`, HMAC-signed: the platform and the browser see it,
//!   and it holds nothing the page does not already know;
//! - the flow token (`result.flow`), sealed with ChaCha20-Poly1305: it lives in the page's
//!   `sessionStorage` across a redirect, so the contact in it must not be readable there.

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use chacha20poly1305::aead::{Aead, KeyInit};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use crate::protocol::Action;

type HmacSha256 = Hmac<Sha256>;

/// Length of the flow token's random nonce.
const NONCE_LEN: usize = 12;
/// Length of the Poly1305 tag.
const TAG_LEN: usize = 16;

/// What the return page and `outcome` need to confirm a flow with the platform and tell the
/// right page.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FlowToken {
    /// The flow.
    #[serde(rename = "a", with = "action_name")]
    pub action: Action,
    /// The SDK's per-call state, echoed back in the message.
    #[serde(rename = "s")]
    pub state: String,
    /// Origin of the calling page: the message's targetOrigin.
    #[serde(rename = "o")]
    pub target_origin: String,
    /// Contract id for sign flows, company name for company auth; empty otherwise.
    #[serde(rename = "k")]
    pub subject: String,
    /// The signatory, person or applicant.
    #[serde(rename = "c")]
    pub contact: String,
    /// Unix seconds after which the token is refused.
    #[serde(rename = "x")]
    pub expires: u64,
    /// Redirect flows: where the return page sends the browser back. Omitted otherwise, so
    /// iframe tokens stay byte for byte what they were.
    #[serde(rename = "r", default, skip_serializing_if = "Option::is_none")]
    pub return_url: Option<String>,
}

/// (De)serialises an [`Action`] by its wire name.
mod action_name {
    use super::Action;
    use serde::{de::Error, Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(action: &Action, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(action.name())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Action, D::Error> {
        let name = String::deserialize(d)?;
        Action::from_name(&name).ok_or_else(|| D::Error::custom("unknown action"))
    }
}

/// Signs, verifies, seals and unseals [`FlowToken`]s with one key, and signs the proxy's own
/// callback URLs.
#[derive(Clone)]
pub struct TokenKey {
    mac: Vec<u8>,
    seal: Key,
    callback: [u8; 32],
}

/// Bytes of a callback URL's `sig` (before base64url: 22 characters).
const CALLBACK_SIG_LEN: usize = 16;

impl std::fmt::Debug for TokenKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenKey(***)")
    }
}

/// Why a token was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenError {
    /// Not base64url of the expected shape, or not our JSON.
    Malformed,
    /// The MAC or the AEAD tag does not match: another key, or the token was altered.
    BadSignature,
    /// Past its expiry.
    Expired,
}

fn hmac_sha256(key: &[u8], message: &[u8]) -> [u8; 32] {
    let mut mac = <HmacSha256 as Mac>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(message);
    mac.finalize().into_bytes().into()
}

impl TokenKey {
    /// Uses `key` as is for return tokens; the flow-token key is derived from it, so one
    /// setting (`QYS_STATE_KEY`) covers both.
    pub fn new(key: &[u8]) -> Self {
        let seal = hmac_sha256(key, b"qys-proxy/flow-token/v1");
        let callback = hmac_sha256(key, b"qys-proxy/callback-url/v1");
        Self { mac: key.to_vec(), seal: seal.into(), callback }
    }

    /// Derives a key from the platform secret, so instances sharing the secret share the key.
    pub fn derive_from_secret(secret: &str) -> Self {
        Self::new(&hmac_sha256(secret.as_bytes(), b"qys-proxy/return-token/v1"))
    }

    fn mac(&self, payload: &[u8]) -> HmacSha256 {
        let mut mac = <HmacSha256 as Mac>::new_from_slice(&self.mac).expect("HMAC takes any key length");
        mac.update(payload);
        mac
    }

    /// The return token: `base64url(json).base64url(hmac)`.
    pub fn sign(&self, token: &FlowToken) -> String {
        let payload = serde_json::to_vec(token).expect("token serialises");
        let tag = self.mac(&payload).finalize().into_bytes();
        format!("{}.{}", B64.encode(&payload), B64.encode(tag))
    }

    /// Verifies a return token's MAC (in constant time) and expiry against `now` (Unix seconds).
    pub fn verify(&self, text: &str, now: u64) -> Result<FlowToken, TokenError> {
        let (payload, tag) = text.split_once('.').ok_or(TokenError::Malformed)?;
        let payload = B64.decode(payload).map_err(|_| TokenError::Malformed)?;
        let tag = B64.decode(tag).map_err(|_| TokenError::Malformed)?;
        self.mac(&payload).verify_slice(&tag).map_err(|_| TokenError::BadSignature)?;
        parse_unexpired(&payload, now)
    }

    /// The flow token: `base64url(nonce || ChaCha20-Poly1305(json))` with a fresh random nonce.
    pub fn seal(&self, token: &FlowToken) -> String {
        let mut nonce = [0u8; NONCE_LEN];
        getrandom::getrandom(&mut nonce).expect("the OS provides random bytes");
        self.seal_with_nonce(token, nonce)
    }

    fn seal_with_nonce(&self, token: &FlowToken, nonce: [u8; NONCE_LEN]) -> String {
        let payload = serde_json::to_vec(token).expect("token serialises");
        let sealed = ChaCha20Poly1305::new(&self.seal)
            .encrypt(Nonce::from_slice(&nonce), payload.as_slice())
            .expect("ChaCha20-Poly1305 seals any payload under 256 GiB");
        B64.encode([nonce.as_slice(), &sealed].concat())
    }

    /// The `sig` of a callback URL the proxy hands the platform: an HMAC of the receiver's kind
    /// (`personal-auth`, `company-auth`) and the URL's `flow` and `t` values (`t` empty when
    /// absent). Only the platform ever sees it (browsers get `flow`, never this), so a delivery
    /// that carries a valid one comes through a URL this proxy issued.
    pub fn callback_sig(&self, kind: &str, flow: &str, t: &str) -> String {
        B64.encode(&self.callback_mac(kind, flow, t).finalize().into_bytes()[..CALLBACK_SIG_LEN])
    }

    /// Whether `sig` is [`Self::callback_sig`] of these values (compared in constant time).
    pub fn verify_callback_sig(&self, kind: &str, flow: &str, t: &str, sig: &str) -> bool {
        let Ok(sig) = B64.decode(sig) else { return false };
        sig.len() == CALLBACK_SIG_LEN && self.callback_mac(kind, flow, t).verify_truncated_left(&sig).is_ok()
    }

    /// Each part length-prefixed, so no two splits of the same bytes sign alike.
    fn callback_mac(&self, kind: &str, flow: &str, t: &str) -> HmacSha256 {
        let mut mac = <HmacSha256 as Mac>::new_from_slice(&self.callback).expect("HMAC takes any key length");
        for part in [kind, flow, t] {
            mac.update(&(part.len() as u64).to_be_bytes());
            mac.update(part.as_bytes());
        }
        mac
    }

    /// Opens a flow token and checks its expiry against `now` (Unix seconds).
    pub fn unseal(&self, text: &str, now: u64) -> Result<FlowToken, TokenError> {
        let bytes = B64.decode(text).map_err(|_| TokenError::Malformed)?;
        if bytes.len() < NONCE_LEN + TAG_LEN {
            return Err(TokenError::Malformed);
        }
        let (nonce, sealed) = bytes.split_at(NONCE_LEN);
        let payload = ChaCha20Poly1305::new(&self.seal)
            .decrypt(Nonce::from_slice(nonce), sealed)
            .map_err(|_| TokenError::BadSignature)?;
        parse_unexpired(&payload, now)
    }
}

fn parse_unexpired(payload: &[u8], now: u64) -> Result<FlowToken, TokenError> {
    let token: FlowToken = serde_json::from_slice(payload).map_err(|_| TokenError::Malformed)?;
    if token.expires < now {
        return Err(TokenError::Expired);
    }
    Ok(token)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> FlowToken {
        FlowToken {
            action: Action::PersonalSign,
            state: "abcdefghijklmnopqrstuv".into(),
            target_origin: "http://127.0.0.1:8080".into(),
            subject: "2603417854124281870".into(),
            contact: "13700000044".into(),
            expires: 1_000,
            return_url: None,
        }
    }

    #[test]
    fn round_trips_and_refuses_tampering_expiry_and_other_keys() {
        let key = TokenKey::derive_from_secret("s3cret");
        let text = key.sign(&sample());
        assert_eq!(key.verify(&text, 999), Ok(sample()));
        assert_eq!(key.verify(&text, 1_001), Err(TokenError::Expired));
        assert_eq!(TokenKey::derive_from_secret("other").verify(&text, 0), Err(TokenError::BadSignature));
        let mut forged = sample();
        forged.action = Action::PersonalAuth;
        let forged_payload = B64.encode(serde_json::to_vec(&forged).unwrap());
        let tag = text.split_once('.').unwrap().1;
        assert_eq!(key.verify(&format!("{forged_payload}.{tag}"), 0), Err(TokenError::BadSignature));
        assert_eq!(key.verify("nodot", 0), Err(TokenError::Malformed));
    }

    /// The vector of docs/protocol.md §6: a token without `r` is unchanged by the new field.
    #[test]
    fn return_token_matches_the_documented_vector() {
        let token = FlowToken {
            target_origin: "https://shop.example".into(),
            expires: 1_700_001_800,
            ..sample()
        };
        assert_eq!(
            TokenKey::derive_from_secret("demo-secret").sign(&token),
            "eyJhIjoicGVyc29uYWxTaWduIiwicyI6ImFiY2RlZmdoaWprbG1ub3BxcnN0dXYiLCJvIjoiaHR0cHM6Ly9zaG9wLmV4YW1wbGUiLCJrIjoiMjYwMzQxNzg1NDEyNDI4MTg3MCIsImMiOiIxMzcwMDAwMDA0NCIsIngiOjE3MDAwMDE4MDB9.tp__c29y-1I9AySixNuMcRSNpHd5Di-saT73VrS1TGA"
        );
    }

    #[test]
    fn flow_token_round_trips_with_the_return_url() {
        let key = TokenKey::derive_from_secret("s3cret");
        let token = FlowToken { return_url: Some("https://shop.example/pay?x=1".into()), ..sample() };
        let sealed = key.seal(&token);
        assert_eq!(key.unseal(&sealed, 1_000), Ok(token.clone()));
        assert_ne!(key.seal(&token), sealed, "a fresh nonce each time");
        // A return token is not a flow token, nor the other way round.
        assert!(key.unseal(&key.sign(&token), 0).is_err());
        assert!(key.verify(&sealed, 0).is_err());
    }

    #[test]
    fn flow_token_hides_the_contact() {
        let key = TokenKey::derive_from_secret("s3cret");
        let bytes = B64.decode(key.seal(&sample())).unwrap();
        let text = String::from_utf8_lossy(&bytes);
        assert!(!text.contains("13700000044") && !text.contains("2603417854124281870"), "{text}");
    }

    #[test]
    fn flow_token_refuses_tampering_expiry_other_keys_and_junk() {
        let key = TokenKey::derive_from_secret("s3cret");
        let sealed = key.seal(&sample());
        assert_eq!(key.unseal(&sealed, 1_001), Err(TokenError::Expired));
        assert_eq!(TokenKey::derive_from_secret("other").unseal(&sealed, 0), Err(TokenError::BadSignature));
        assert_eq!(TokenKey::new(&[7; 32]).unseal(&sealed, 0), Err(TokenError::BadSignature));
        let bytes = B64.decode(&sealed).unwrap();
        for at in [0, NONCE_LEN, bytes.len() - 1] {
            let mut flipped = bytes.clone();
            flipped[at] ^= 1;
            assert_eq!(key.unseal(&B64.encode(&flipped), 0), Err(TokenError::BadSignature), "bit flipped at {at}");
        }
        assert_eq!(key.unseal(&B64.encode(&bytes[..bytes.len() - 1]), 0), Err(TokenError::BadSignature));
        assert_eq!(key.unseal(&B64.encode([0u8; NONCE_LEN + TAG_LEN - 1]), 0), Err(TokenError::Malformed));
        assert_eq!(key.unseal("not base64!", 0), Err(TokenError::Malformed));
        // Authentic but not a FlowToken.
        let junk = ChaCha20Poly1305::new(&key.seal).encrypt(Nonce::from_slice(&[0; NONCE_LEN]), b"[]".as_slice()).unwrap();
        assert_eq!(key.unseal(&B64.encode([[0; NONCE_LEN].as_slice(), &junk].concat()), 0), Err(TokenError::Malformed));
    }

    #[test]
    fn callback_sigs_bind_kind_flow_and_token() {
        let key = TokenKey::derive_from_secret("s3cret");
        let sig = key.callback_sig("personal-auth", "st", "tok");
        assert_eq!(sig.len(), 22);
        assert!(key.verify_callback_sig("personal-auth", "st", "tok", &sig));
        for (kind, flow, t) in [("company-auth", "st", "tok"), ("personal-auth", "st2", "tok"), ("personal-auth", "st", ""), ("personal-auth", "stt", "ok")] {
            assert!(!key.verify_callback_sig(kind, flow, t, &sig), "{kind} {flow} {t}");
        }
        assert!(!TokenKey::derive_from_secret("other").verify_callback_sig("personal-auth", "st", "tok", &sig));
        assert!(!key.verify_callback_sig("personal-auth", "st", "tok", &sig[..21]), "a shorter sig");
        assert!(!key.verify_callback_sig("personal-auth", "st", "tok", ""));
        assert!(!key.verify_callback_sig("personal-auth", "st", "tok", "not base64!"));
    }

    /// Computed independently with Python's `cryptography` (ChaCha20Poly1305) and `hmac`,
    /// from the documented key derivation and a fixed nonce 00 01 … 0b.
    #[test]
    fn flow_token_matches_an_independent_implementation() {
        let key = TokenKey::derive_from_secret("demo-secret");
        let token = FlowToken {
            action: Action::PersonalAuth,
            target_origin: "https://shop.example".into(),
            subject: String::new(),
            expires: 1_700_001_800,
            return_url: Some("https://shop.example/pay?order=7".into()),
            ..sample()
        };
        let expected = "AAECAwQFBgcICQoLEXHgqKMs7TJrULLDNTsDYWWvt-JQ6ykmyJBKlJppporYFJgw9vNgfEyU7-TZXX9lKjapo7-PiNwN_qlx2M2jQgljrRpwUPrFrOjbHAbD1UV8MT6hbddr6rq91AiZW9CprNv501ShuATe5GF3NX567VoGwtsCgPK5qeqNIg_rL-DBfbFyEcQPvSByDnKQgVXVDyAuJlPGzy5m0IX42qeSdEUsrLVXL5m7Mg5V";
        let nonce: [u8; NONCE_LEN] = std::array::from_fn(|i| i as u8);
        assert_eq!(key.seal_with_nonce(&token, nonce), expected);
        assert_eq!(key.unseal(expected, 0), Ok(token));
    }
}
