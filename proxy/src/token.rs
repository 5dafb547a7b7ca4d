//! HMAC-signed, expiring tokens that carry a flow's facts inside `callbackPage`, so that any
//! proxy instance sharing the key can serve the return page; no per-flow state in memory.

use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use base64::Engine;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use crate::protocol::Action;

type HmacSha256 = Hmac<Sha256>;

/// What the return page needs to confirm a flow with the platform and tell the right page.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FlowToken {
    /// The flow.
    #[serde(rename = "a", with = "action_name")]
    pub action: Action,
    /// The SDK's per-call state, echoed back in the message.
    #[serde(rename = "s")]
    pub state: String,
    /// Origin of the page that embeds the iframe: the message's targetOrigin.
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

/// Signs and verifies [`FlowToken`]s with one key.
#[derive(Clone)]
pub struct TokenKey(Vec<u8>);

impl std::fmt::Debug for TokenKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenKey(***)")
    }
}

/// Why a token was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenError {
    /// Not `payload.mac` in base64url, or not our JSON.
    Malformed,
    /// The MAC does not match.
    BadSignature,
    /// Past its expiry.
    Expired,
}

impl TokenKey {
    /// Uses `key` as is.
    pub fn new(key: &[u8]) -> Self {
        Self(key.to_vec())
    }

    /// Derives a key from the platform secret, so instances sharing the secret share the key.
    pub fn derive_from_secret(secret: &str) -> Self {
        let mut mac = HmacSha256::new_from_slice(secret.as_bytes()).expect("HMAC takes any key length");
        mac.update(b"qys-proxy/return-token/v1");
        Self(mac.finalize().into_bytes().to_vec())
    }

    fn mac(&self, payload: &[u8]) -> HmacSha256 {
        let mut mac = HmacSha256::new_from_slice(&self.0).expect("HMAC takes any key length");
        mac.update(payload);
        mac
    }

    /// `base64url(json).base64url(hmac)`.
    pub fn sign(&self, token: &FlowToken) -> String {
        let payload = serde_json::to_vec(token).expect("token serialises");
        let tag = self.mac(&payload).finalize().into_bytes();
        format!("{}.{}", B64.encode(&payload), B64.encode(tag))
    }

    /// Verifies the MAC (in constant time) and the expiry against `now` (Unix seconds).
    pub fn verify(&self, text: &str, now: u64) -> Result<FlowToken, TokenError> {
        let (payload, tag) = text.split_once('.').ok_or(TokenError::Malformed)?;
        let payload = B64.decode(payload).map_err(|_| TokenError::Malformed)?;
        let tag = B64.decode(tag).map_err(|_| TokenError::Malformed)?;
        self.mac(&payload).verify_slice(&tag).map_err(|_| TokenError::BadSignature)?;
        let token: FlowToken = serde_json::from_slice(&payload).map_err(|_| TokenError::Malformed)?;
        if token.expires < now {
            return Err(TokenError::Expired);
        }
        Ok(token)
    }
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
}
