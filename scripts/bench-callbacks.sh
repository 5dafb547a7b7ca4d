#!/usr/bin/env bash
# Server callbacks stored and forwarded (issue 9), on loopback: qys-proxy (release) with its
# embedded sandbox, forwarding to a backend that answers 204 at once, for SQLite (1 instance) and
# PostgreSQL (1 and 2 instances on one database; a throwaway cluster with fsync on).
# Two runs each: as fast as the proxy acknowledges (callbacks/s stored and forwarded), then paced
# at a rate the forwarders keep up with (receipt → forward p50/p99 without a queue).
# The driver is proxy/examples/bench_callbacks.rs.
# Usage: bash scripts/bench-callbacks.sh [callbacks=5000] [paced callbacks=2000] [rate/s=200]
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-5000}
paced=${2:-2000}
rate=${3:-200}
ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1 \
  || { apt-get update -qq && apt-get install -y -qq --no-install-recommends postgresql >/dev/null; }
cargo build --release --locked -q -p qys-proxy --bin qys-proxy --example bench_callbacks
for setup in "sqlite 1" "postgres 1" "postgres 2"; do
  # shellcheck disable=SC2086
  target/release/examples/bench_callbacks $setup "$n" 32
  # shellcheck disable=SC2086
  target/release/examples/bench_callbacks $setup "$paced" 32 "$rate"
done
