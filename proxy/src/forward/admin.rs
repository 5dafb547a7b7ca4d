//! `qys-proxy callbacks list|show|replay`: the outbox from the command line. Works on the
//! database of `QYS_DATABASE` (SQLite or PostgreSQL) while the proxy runs (a replayed entry is picked up within a
//! second, [`super::POLL`]).

use std::io::Write;

use serde_json::{json, Value};

use crate::cli::Cli;
use crate::store::{now, CallbackBackend, OutboxEntry, OutboxFilter, OutboxState};

/// `qys-proxy callbacks …`.
#[derive(Debug, clap::Subcommand)]
pub enum CallbacksCommand {
    /// Outbox entries by id (all states unless one is given), then the count in each state.
    List {
        /// Only entries parked as dead.
        #[arg(long, conflicts_with_all = ["pending", "delivered"])]
        dead: bool,
        /// Only entries waiting for an attempt.
        #[arg(long, conflicts_with = "delivered")]
        pending: bool,
        /// Only delivered entries.
        #[arg(long)]
        delivered: bool,
        /// Entries with an id above this one (paging).
        #[arg(long, default_value_t = 0)]
        after: i64,
        /// At most this many entries.
        #[arg(long, default_value_t = 100)]
        limit: usize,
        /// One JSON document: {"counts": {...}, "entries": [...]}.
        #[arg(long)]
        json: bool,
    },
    /// One callback's outbox entry in full: the callback, the forwarded body, attempts, last error.
    Show {
        /// The callback's id (first column of `list`).
        id: i64,
    },
    /// Queue again for forwarding at once (same body, same Idempotency-Key; attempts and the
    /// give-up age start over): one callback, or every dead entry.
    Replay {
        /// The callback's id (also one stored while forwarding was off).
        #[arg(required_unless_present = "dead")]
        id: Option<i64>,
        /// Every entry parked as dead.
        #[arg(long, conflicts_with = "id")]
        dead: bool,
    },
}

/// Runs a `callbacks` subcommand against `QYS_DATABASE`, printing to stdout.
pub fn run(cli: &Cli, command: &CallbacksCommand) -> Result<(), String> {
    let store = cli.database.open()?;
    let out = execute(store.backend().as_ref(), command)?;
    let mut stdout = std::io::stdout().lock();
    stdout.write_all(out.as_bytes()).and_then(|()| stdout.flush()).map_err(|e| e.to_string())
}

/// What `command` prints, after doing it.
pub fn execute(backend: &dyn CallbackBackend, command: &CallbacksCommand) -> Result<String, String> {
    let err = |e: crate::store::StoreError| e.to_string();
    match *command {
        CallbacksCommand::List { dead, pending, delivered, after, limit, json } => {
            let filter = match (dead, pending, delivered) {
                (true, _, _) => OutboxFilter::State(OutboxState::Dead),
                (_, true, _) => OutboxFilter::State(OutboxState::Pending),
                (_, _, true) => OutboxFilter::State(OutboxState::Delivered),
                _ => OutboxFilter::All,
            };
            let entries = backend.outbox_list(filter, after, limit).map_err(err)?;
            let c = backend.outbox_counts().map_err(err)?;
            if json {
                let counts = json!({"pending": c.pending, "delivered": c.delivered, "dead": c.dead, "unqueued": c.unqueued});
                let entries: Vec<Value> = entries.iter().map(|e| entry_json(e, false)).collect();
                return Ok(format!("{}\n", json!({"counts": counts, "entries": entries})));
            }
            let mut out = format!(
                "{:>8}  {:<9}  {:>8}  {:<13}  {:<24}  {:<24}  {}\n",
                "id", "state", "attempts", "kind", "received", "next / finished", "last error"
            );
            for e in &entries {
                let when = match e.state {
                    OutboxState::Pending => iso(e.next_at),
                    _ => e.finished_at.map(iso).unwrap_or_default(),
                };
                out += &format!(
                    "{:>8}  {:<9}  {:>8}  {:<13}  {:<24}  {:<24}  {}\n",
                    e.id,
                    e.state,
                    e.attempts,
                    e.kind,
                    iso(e.received_at),
                    when,
                    e.last_error.chars().take(80).collect::<String>()
                );
            }
            out += &format!(
                "pending {}, delivered {}, dead {}, stored without an outbox entry {}\n",
                c.pending, c.delivered, c.dead, c.unqueued
            );
            Ok(out)
        }
        CallbacksCommand::Show { id } => match backend.outbox_get(id).map_err(err)? {
            Some(e) => Ok(format!("{}\n", serde_json::to_string_pretty(&entry_json(&e, true)).unwrap_or_default())),
            None => Err(format!(
                "callback {id} has no outbox entry (unknown id, or stored while forwarding was off: \
                 `qys-proxy callbacks replay {id}` queues such a callback)"
            )),
        },
        CallbacksCommand::Replay { id: Some(id), .. } => {
            if backend.replay(id, now()).map_err(err)? {
                Ok(format!("callback {id} queued for forwarding\n"))
            } else {
                Err(format!("no stored callback {id}"))
            }
        }
        CallbacksCommand::Replay { id: None, .. } => {
            let n = backend.replay_dead(now()).map_err(err)?;
            Ok(format!("{n} dead entries queued for forwarding again\n"))
        }
    }
}

/// An entry as JSON; `full` adds the callback's query and body and the forwarded body.
pub fn entry_json(e: &OutboxEntry, full: bool) -> Value {
    let mut v = json!({
        "id": e.id,
        "key": e.dedup_key,
        "kind": e.kind,
        "state": e.state.as_str(),
        "attempts": e.attempts,
        "receivedAt": e.received_at,
        "deliveries": e.deliveries,
        "enqueuedAt": e.enqueued_at,
        "nextAt": e.next_at,
        "finishedAt": e.finished_at,
        "owner": e.owner,
        "lockedUntil": e.locked_until,
        "lastError": e.last_error,
    });
    if full {
        v["query"] = e.query.clone().into();
        v["body"] = e.body.clone().into();
        v["forwarded"] = match &e.payload {
            Some(p) => serde_json::from_str(p).unwrap_or_else(|_| Value::String(p.clone())),
            None => Value::Null,
        };
    }
    v
}

/// Unix milliseconds as `YYYY-MM-DDTHH:MM:SS.mmmZ` (UTC).
pub fn iso(ms: i64) -> String {
    let (days, rem) = (ms.div_euclid(86_400_000), ms.rem_euclid(86_400_000));
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let (h, m, s, milli) = (rem / 3_600_000, rem / 60_000 % 60, rem / 1000 % 60, rem % 1000);
    format!("{year:04}-{month:02}-{day:02}T{h:02}:{m:02}:{s:02}.{milli:03}Z")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn iso_dates() {
        assert_eq!(iso(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(iso(951_782_400_000), "2000-02-29T00:00:00.000Z");
        assert_eq!(iso(1_795_671_045_123), "2026-11-26T05:30:45.123Z");
    }
}
