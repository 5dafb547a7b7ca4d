//! Redirect flows across a navigation: what the SDK keeps in `sessionStorage` while the page is
//! away (state, action, the proxy's sealed flow token and endpoint — no contact, no id number),
//! and the `qys_state` query parameter the proxy's return page adds to the calling page's URL.

use crate::params::Action;
use crate::value::{concat, join, object, pieces, split_once_byte, Value};
use crate::wire::{valid_flow_token, valid_state};

/// The `sessionStorage` key of the pending redirect flows.
pub const STORAGE_KEY: &str = "qys-sdk:flows";
/// The query parameter that carries a returning flow's state.
pub const STATE_PARAM: &str = "qys_state";
/// Pending flows kept per tab; the oldest is forgotten first.
pub const MAX_PENDING: usize = 8;

/// A redirect flow waiting for its page to come back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingFlow {
    /// The call's state (also in the return URL).
    pub state: String,
    /// The flow's action.
    pub action: Action,
    /// The proxy's sealed flow token, for `outcome`.
    pub flow: String,
    /// The proxy endpoint (origin and path) that issued the token: only it can answer.
    pub proxy: String,
}

/// Reads the stored list (as read from its JSON); anything malformed is skipped (the storage is
/// the page's, not ours).
pub fn parse_list(list: &Value) -> Vec<PendingFlow> {
    let Value::Array(items) = list else {
        return Vec::new();
    };
    items
        .iter()
        .filter_map(|item| {
            let state = item.get("s")?.as_str().filter(|s| valid_state(s))?;
            let action = Action::from_name(item.get("a")?.as_str()?)?;
            let flow = item.get("f")?.as_str().filter(|f| valid_flow_token(f))?;
            let proxy = item.get("p")?.as_str()?;
            Some(PendingFlow {
                state: state.to_owned(),
                action,
                flow: flow.to_owned(),
                proxy: proxy.to_owned(),
            })
        })
        .collect()
}

/// The list as stored, keeping the newest [`MAX_PENDING`].
pub fn list_json(flows: &[PendingFlow]) -> String {
    let newest = &flows[flows.len().saturating_sub(MAX_PENDING)..];
    Value::Array(
        newest
            .iter()
            .map(|f| {
                object([
                    ("s", f.state.as_str().into()),
                    ("a", f.action.name().into()),
                    ("f", f.flow.as_str().into()),
                    ("p", f.proxy.as_str().into()),
                ])
            })
            .collect(),
    )
    .to_json()
}

/// The returning flow's state in a page's query string (`location.search`, with or without `?`).
pub fn returned_state(search: &str) -> Option<&str> {
    pairs(search)
        .find_map(|pair| pair.strip_prefix(STATE_PARAM)?.strip_prefix("="))
        .filter(|s| valid_state(s))
}

/// `search` without any `qys_state` parameter; everything else, empty segments included, stays
/// byte for byte.
pub fn without_state(search: &str) -> String {
    let query = search.strip_prefix("?").unwrap_or(search);
    if !pieces(query, b'&').any(is_state_pair) {
        return search.to_owned();
    }
    let kept: Vec<&str> = pieces(query, b'&')
        .filter(|pair| !is_state_pair(pair))
        .collect();
    if kept.iter().all(|pair| pair.is_empty()) {
        String::new()
    } else {
        concat(&["?", &join(&kept, "&")])
    }
}

/// The URL the browser comes back to: the page's URL without fragment and without a previous
/// flow's `qys_state`.
pub fn return_url(href: &str) -> String {
    let href = split_once_byte(href, b'#').map_or(href, |(before, _)| before);
    match split_once_byte(href, b'?') {
        Some((base, query)) => concat(&[base, &without_state(&concat(&["?", query]))]),
        None => href.to_owned(),
    }
}

fn pairs(search: &str) -> impl Iterator<Item = &str> {
    pieces(search.strip_prefix("?").unwrap_or(search), b'&').filter(|p| !p.is_empty())
}

fn is_state_pair(pair: &str) -> bool {
    pair == STATE_PARAM
        || pair
            .strip_prefix(STATE_PARAM)
            .is_some_and(|rest| rest.starts_with("="))
}
