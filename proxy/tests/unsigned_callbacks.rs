//! Callback URLs without `sig` (an older version's, issue 8 follow-up): a browser that started a
//! flow before the upgrade holds a sealed `flow` token the receivers take as such a URL's `t`, so
//! the pass they give ends `QYS_UNSIGNED_CALLBACK_DAYS` after sigs became required, and stores at
//! most `UNSIGNED_PER_TOKEN` distinct deliveries per token.
//!
//! Ageing a real token without waiting: a proxy whose token lifetime is three days longer than
//! the one that sealed it computes its issue time three days earlier (README's upgrade note), and
//! `callbacks require-sigs --at` puts the moment two days back.

mod common;

use std::time::Duration;

use common::*;
use qys_proxy::forward::admin::{self, iso, CallbacksCommand};
use qys_proxy::store::UNSIGNED_PER_TOKEN;
use serde_json::{json, Value};

const DAY: u64 = 86_400;

/// POSTs a personal-auth callback to `stack` through `flow=<state>&t=<token>`, no `sig`.
async fn deliver(stack: &Stack, state: &str, token: &str, body: &str) -> Value {
    let url = format!("{}/qys/callback/personal-auth?flow={state}&t={token}", stack.proxy);
    let response = stack.client.post(url).header("content-type", "application/x-www-form-urlencoded").body(body.to_owned()).send().await.unwrap();
    assert_eq!(response.status(), 200);
    response.json().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_browsers_flow_token_from_before_sigs_passes_only_within_the_window_and_only_so_often() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("callbacks.sqlite3");
    let stack = |ttl: u64, window_days: u64| {
        let database = Some(db.clone());
        let (token_ttl, unsigned_callback_window) = (Duration::from_secs(ttl), Duration::from_secs(window_days * DAY));
        Stack::with(Options { database, token_ttl, unsigned_callback_window, ..Options::default() })
    };
    // A real flow start; the browser's answer carries the sealed token.
    let started = stack(1_800, 14).await;
    let st = state("before-upgrade");
    let (status, answer) = started.call("personalAuth", &st, json!({"mode": "FACE", "contact": "13700000044"})).await;
    assert_eq!((status, answer["code"].clone()), (200, json!(0)), "{answer}");
    let flow = answer["result"]["flow"].as_str().unwrap().to_owned();
    let refused = deliver(&started, &st, &flow, "mode=FACE&status=1").await;
    assert_eq!(refused["code"], 1001, "issued after the moment: not a pass, {refused}");

    let backend = started.store.backend();
    let two_days_ago = qys_proxy::store::now() - 2 * 86_400_000;
    admin::execute(backend.as_ref(), &CallbacksCommand::RequireSigs { at: iso(two_days_ago), force: false }, Duration::from_secs(1_800)).unwrap();
    let aged = 1_800 + 3 * DAY;
    // Two days after the moment: past a one-day window, and never with 0.
    for window_days in [1, 0] {
        let closed = stack(aged, window_days).await;
        let refused = deliver(&closed, &st, &flow, "mode=FACE&status=1").await;
        assert_eq!(refused["code"], 1001, "window of {window_days} days: {refused}");
        assert!(refused["message"].as_str().unwrap().contains("no longer accepted"), "{refused}");
    }
    assert_eq!(started.store.all().unwrap().len(), 0);

    // Within a three-day window: stored, up to the cap of distinct bodies; retries still pass.
    let open = stack(aged, 3).await;
    for n in 0..UNSIGNED_PER_TOKEN {
        let stored = deliver(&open, &st, &flow, &format!("mode=FACE&status=1&n={n}")).await;
        assert_eq!(stored, json!({"code": 0}), "body {n}");
    }
    let over = deliver(&open, &st, &flow, "mode=FACE&status=1&n=over").await;
    assert_eq!(over["code"], 1001, "{over}");
    assert!(over["message"].as_str().unwrap().contains(&format!("stored {UNSIGNED_PER_TOKEN} callbacks already")), "{over}");
    assert_eq!(deliver(&open, &st, &flow, "mode=FACE&status=1&n=0").await, json!({"code": 0}), "a retry");
    let stored = started.store.all().unwrap();
    assert_eq!(stored.len(), UNSIGNED_PER_TOKEN as usize);
    assert_eq!(stored.iter().find(|c| c.body.ends_with("n=0")).unwrap().deliveries, 2);
    let unsigned: i64 = started.store.malformed_counts().unwrap().iter().filter(|c| c.class == "unsigned").map(|c| c.count).sum();
    assert_eq!(unsigned, 4, "after the moment, two closed windows, over the cap");
}
