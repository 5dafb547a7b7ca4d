//! `qys-proxy callbacks list|show|replay|abandon|require-sigs`: the outbox from the command line. Works
//! on the database of `QYS_DATABASE` (SQLite or PostgreSQL) while the proxy runs (a replayed
//! entry is picked up within a second, [`super::POLL`]; a moved `sigs_required_since` holds for
//! the next delivery).

use std::io::Write;
use std::time::Duration;

use serde_json::{json, Value};

use crate::cli::Cli;
use crate::store::{now, CallbackBackend, OutboxEntry, OutboxFilter, OutboxState, SWEEP_BATCH};

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
    /// Give up on pending entries (one callback, or every pending one): parked as dead, so the
    /// retention sweep removes them a retention period later and `replay` can still queue them.
    /// An entry a forwarder leased in the last 2 minutes is left alone; one it delivers anyway is
    /// recorded as delivered. For callbacks left pending when forwarding was turned off for good
    /// (kept until then, however old).
    Abandon {
        /// The callback's id.
        #[arg(required_unless_present = "pending")]
        id: Option<i64>,
        /// Every pending entry.
        #[arg(long, conflicts_with = "id")]
        pending: bool,
    },
    /// Set the moment callback URLs began to need a `sig`: callbacks through URLs without one
    /// are stored only for flows started before it, for QYS_UNSIGNED_CALLBACK_DAYS after it. Run
    /// it with `--at now` once the last instance of a version without `sig` has stopped (a
    /// rolling upgrade).
    RequireSigs {
        /// `now`, or an RFC 3339 time no later than now, e.g. 2026-11-26T08:00:00Z.
        #[arg(long)]
        at: String,
        /// Move the moment later than the recorded one by more than QYS_RETURN_TOKEN_TTL.
        #[arg(long)]
        force: bool,
    },
}

/// Runs a `callbacks` subcommand against `QYS_DATABASE`, printing to stdout.
pub fn run(cli: &Cli, command: &CallbacksCommand) -> Result<(), String> {
    let store = cli.database.open()?;
    let out = execute(store.backend().as_ref(), command, Duration::from_secs(cli.return_token_ttl))?;
    let mut stdout = std::io::stdout().lock();
    stdout.write_all(out.as_bytes()).and_then(|()| stdout.flush()).map_err(|e| e.to_string())
}

/// What `command` prints, after doing it. `token_ttl`: `QYS_RETURN_TOKEN_TTL`, how far
/// `require-sigs` moves the moment later without `--force`.
pub fn execute(backend: &dyn CallbackBackend, command: &CallbacksCommand, token_ttl: Duration) -> Result<String, String> {
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
        CallbacksCommand::Abandon { id: Some(id), .. } => match backend.abandon(Some(id), now(), 1).map_err(err)? {
            0 => Err(format!(
                "callback {id} has no pending entry that is free to abandon (unknown id, not pending, or leased by a \
                 forwarder in the last 2 minutes: try again later)"
            )),
            _ => Ok(format!("callback {id} abandoned: parked as dead (`qys-proxy callbacks replay {id}` queues it again)\n")),
        },
        CallbacksCommand::Abandon { id: None, .. } => {
            // In batches, as the sweep deletes, with a pause between them for the running proxy's
            // writers; at most as many as the entries pending now need, even while more arrive.
            let batches = usize::try_from(backend.outbox_counts().map_err(err)?.pending).unwrap_or(0) / SWEEP_BATCH + 1;
            let mut n = 0;
            for _ in 0..batches {
                let changed = backend.abandon(None, now(), SWEEP_BATCH).map_err(err)?;
                n += changed;
                if changed < SWEEP_BATCH {
                    break;
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let left = backend.outbox_counts().map_err(err)?.pending;
            Ok(format!(
                "{n} pending entries abandoned: parked as dead (`qys-proxy callbacks replay --dead` queues them again); \
                 {left} still pending (leased by a forwarder in the last 2 minutes, or queued since: run it again for \
                 those)\n"
            ))
        }
        CallbacksCommand::RequireSigs { ref at, force } => {
            let at = match at.as_str() {
                "now" => now(),
                text => parse_rfc3339(text).map_err(|why| format!("--at {text:?}: {why}"))?,
            };
            // A later moment would let flow tokens minted until then, which every browser gets,
            // pass as an older version's.
            if at > now() {
                return Err(format!("--at {} is in the future: give `now` or an earlier time", iso(at)));
            }
            // Moving it later does the same for the tokens minted since the recorded moment, for
            // another window: a rolling upgrade needs minutes, so a longer move is taken for a
            // mistake (a run repeated days later) unless forced.
            let ttl = i64::try_from(token_ttl.as_millis()).unwrap_or(i64::MAX);
            match backend.sigs_required_since().map_err(err)? {
                Some(recorded) if !force && at > recorded.saturating_add(ttl) => {
                    return Err(format!(
                        "--at {} is more than QYS_RETURN_TOKEN_TTL ({} s) after the recorded moment {}: every flow \
                         token minted in between, the ones browsers hold included, would pass as an older version's \
                         for QYS_UNSIGNED_CALLBACK_DAYS more. A rolling upgrade needs a shorter move; give --force to \
                         move it anyway",
                        iso(at),
                        token_ttl.as_secs(),
                        iso(recorded)
                    ));
                }
                _ => {}
            }
            let before = backend.set_sigs_required_since(at).map_err(err)?;
            Ok(format!(
                "sigs_required_since: {} -> {}: callbacks through URLs without sig are stored for flows started \
                 before it, for QYS_UNSIGNED_CALLBACK_DAYS after it\n",
                before.map_or_else(|| "(none)".to_owned(), iso),
                iso(at)
            ))
        }
    }
}

/// An RFC 3339 date-time (`YYYY-MM-DDTHH:MM:SS[.fraction](Z|±HH:MM)`) as Unix milliseconds.
/// Every field within its range (no leap second: the clock the moment is compared with has none).
pub fn parse_rfc3339(text: &str) -> Result<i64, String> {
    const FORM: &str = "expected YYYY-MM-DDTHH:MM:SS[.fff](Z|+HH:MM|-HH:MM)";
    let b = text.as_bytes();
    let num = |part: Option<&str>| -> Result<i64, String> {
        let part = part.filter(|p| !p.is_empty() && p.bytes().all(|c| c.is_ascii_digit())).ok_or(FORM)?;
        part.parse().map_err(|_| FORM.to_owned())
    };
    let sep = |i: usize, allowed: &[u8]| b.get(i).is_some_and(|c| allowed.contains(c));
    if b.len() < 20 || !(sep(4, b"-") && sep(7, b"-") && sep(10, b"Tt") && sep(13, b":") && sep(16, b":")) {
        return Err(FORM.into());
    }
    let field = |from: usize, to: usize| num(text.get(from..to));
    let (year, month, day, h, m, s) = (field(0, 4)?, field(5, 7)?, field(8, 10)?, field(11, 13)?, field(14, 16)?, field(17, 19)?);
    let mut rest = &text[19..];
    let mut milli = 0;
    if let Some(fraction) = rest.strip_prefix('.') {
        let digits = fraction.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return Err(FORM.into());
        }
        milli = num(Some(&format!("{:0<3}", &fraction[..digits.min(3)])))?;
        rest = &fraction[digits..];
    }
    let offset = match rest.as_bytes() {
        [b'Z' | b'z'] => 0,
        [sign @ (b'+' | b'-'), _, _, b':', _, _] => {
            let (oh, om) = (num(rest.get(1..3))?, num(rest.get(4..6))?);
            if oh > 23 || om > 59 {
                return Err("no such offset".into());
            }
            let minutes = oh * 60 + om;
            if *sign == b'-' { -minutes } else { minutes }
        }
        _ => return Err(FORM.into()),
    };
    let leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0);
    let days_in_month = [31, if leap { 29 } else { 28 }, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];
    if !(1..=12).contains(&month) || day < 1 || day > days_in_month[(month - 1) as usize] || h > 23 || m > 59 || s > 59 {
        return Err("no such date or time".into());
    }
    // Days since 1970-01-01 from a civil date (Howard Hinnant's algorithm, the inverse of `iso`).
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * (if month > 2 { month - 3 } else { month + 9 }) + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Ok(((days * 86_400 + h * 3_600 + m * 60 + s - offset * 60) * 1000) + milli)
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

    #[test]
    fn rfc3339_times_are_read_back() {
        for ms in [0, 951_782_400_000, 1_795_671_045_123, -86_400_000] {
            assert_eq!(parse_rfc3339(&iso(ms)), Ok(ms), "{}", iso(ms));
        }
        assert_eq!(parse_rfc3339("2026-11-26T13:30:45+08:00"), Ok(1_795_671_045_000));
        assert_eq!(parse_rfc3339("2026-11-26t05:30:45.1234z"), Ok(1_795_671_045_123));
        assert_eq!(parse_rfc3339("2026-11-25T23:00:45-06:30"), Ok(1_795_671_045_000));
        for bad in ["2026-11-26", "2026-11-26T05:30:45", "2026-02-29T00:00:00Z", "2026-11-26T24:00:00Z", "2026-11-26T05:30:45.Z",
            "2026-11-26T05:30:45+0800", "２026-11-26T05:30:45Z", "2026-11-26 05:30:45Z", "now"] {
            assert!(parse_rfc3339(bad).is_err(), "{bad}");
        }
        assert_eq!(parse_rfc3339("2026-11-26T05:30:45-23:59"), Ok(1_795_671_045_000 + 86_340_000));
        assert_eq!(parse_rfc3339("2026-11-26T05:30:45-00:00"), Ok(1_795_671_045_000), "RFC 3339's unknown local offset");
        for bad in ["2026-11-26T05:30:45+24:00", "2026-11-26T05:30:45+99:99", "2026-11-26T05:30:45-00:60", "2026-11-26T05:30:45+05:+3",
            "2026-13-01T00:00:00Z", "2026-00-01T00:00:00Z", "2026-04-31T00:00:00Z", "2026-11-00T00:00:00Z", "2026-11-26T05:60:00Z",
            "2026-11-26T05:30:60Z"] {
            assert!(parse_rfc3339(bad).is_err(), "{bad}");
        }
        assert_eq!(parse_rfc3339("2026-11-26T05:30:45+99:99"), Err("no such offset".into()));
        assert_eq!(parse_rfc3339("2024-02-29T00:00:00Z").map(iso), Ok("2024-02-29T00:00:00.000Z".into()), "a leap day");
    }
}
