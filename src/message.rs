//! Which `message` events the SDK believes: the return page's protocol v1 messages, from the
//! right origin and window, for this call's state, once.

use crate::params::Action;
use crate::value::{char_count, Value};

/// A terminal event of a flow.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// The signature is confirmed. Payload: `{contractId}`.
    SignSuccess(Value),
    /// Authentication is confirmed. Payload: the `userInfo` of seed 004.
    AuthSuccess(Value),
    /// The user left authentication.
    AuthFail,
}

impl Event {
    /// The event's wire name, which is also the callback's name without `Cb`.
    pub fn name(&self) -> &'static str {
        match self {
            Event::SignSuccess(_) => "signSuccess",
            Event::AuthSuccess(_) => "authSuccess",
            Event::AuthFail => "authFail",
        }
    }

    /// The callback's argument (`{}` for `authFail`, which passes none).
    pub fn data(&self) -> Value {
        match self {
            Event::SignSuccess(v) | Event::AuthSuccess(v) => v.clone(),
            Event::AuthFail => Value::Object(Vec::new()),
        }
    }
}

/// Accepts at most one message for one call.
#[derive(Debug, Clone)]
pub struct MessageGate {
    action: Action,
    origin: String,
    state: String,
    done: bool,
}

/// `userInfo` fields for personal auth (seed 004 §3).
const PERSONAL_INFO: &[&str] = &["username", "mobile", "cardNo", "bankNo", "contact"];
/// `userInfo` fields for company auth (the platform's CorpAuthDetail).
const COMPANY_INFO: &[&str] = &["name", "registerNo", "legalPerson"];

impl MessageGate {
    /// A gate for `action`, expecting messages from `origin` carrying `state`.
    pub fn new(action: Action, origin: String, state: String) -> Self {
        Self {
            action,
            origin,
            state,
            done: false,
        }
    }

    /// Whether a terminal event was accepted (all later messages are ignored).
    pub fn is_done(&self) -> bool {
        self.done
    }

    /// Whether a message from `origin`, and from this call's iframe or not, could be accepted;
    /// checked before the message's data is read at all.
    pub fn accepts(&self, origin: &str, from_our_frame: bool) -> bool {
        !self.done && from_our_frame && origin == self.origin
    }

    /// Offers one `message` event: its origin, whether its source is this call's iframe window,
    /// and its data. Returns the event to act on, or `None` to ignore it.
    pub fn offer(&mut self, origin: &str, from_our_frame: bool, data: &Value) -> Option<Event> {
        if !self.accepts(origin, from_our_frame) {
            return None;
        }
        let event = self.parse(data)?;
        self.done = true;
        Some(event)
    }

    fn parse(&self, data: &Value) -> Option<Event> {
        if data.get("type")?.as_str()? != "qys-sdk"
            || !matches!(data.get("v")?, Value::Number(v) if *v == 1.0)
        {
            return None;
        }
        if data.get("state")?.as_str()? != self.state {
            return None;
        }
        accept(self.action, data.get("event")?.as_str()?, data.get("data"))
    }
}

/// The terminal event `event` with payload `data` of a flow of `action`, if it fits: the event
/// belongs to the action, and the listed fields of `data` are strings (others are dropped).
/// Used for return messages and for the proxy's `outcome` answers alike.
pub fn accept(action: Action, event: &str, data: Option<&Value>) -> Option<Event> {
    let payload = match data {
        None | Some(Value::Null) => None,
        Some(v @ Value::Object(_)) => Some(v),
        Some(_) => return None,
    };
    match (event, action.is_sign()) {
        ("signSuccess", true) => Some(Event::SignSuccess(strings(payload, &["contractId"])?)),
        ("authSuccess", false) => {
            let fields = if action == Action::PersonalAuth {
                PERSONAL_INFO
            } else {
                COMPANY_INFO
            };
            Some(Event::AuthSuccess(strings(payload, fields)?))
        }
        ("authFail", _) => Some(Event::AuthFail),
        _ => None,
    }
}

/// Copies the listed members that are strings; `None` if any listed member is neither a string
/// nor null/absent (malformed).
fn strings(payload: Option<&Value>, keys: &[&str]) -> Option<Value> {
    let mut members = Vec::new();
    for key in keys {
        match payload.and_then(|p| p.get(key)) {
            None | Some(Value::Null) => {}
            Some(Value::String(s)) if char_count(s) <= 256 => {
                members.push(((*key).to_owned(), Value::String(s.clone())))
            }
            Some(_) => return None,
        }
    }
    Some(Value::Object(members))
}
