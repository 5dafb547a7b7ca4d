#!/usr/bin/env bash
# Load test: qys-proxy (release) against its embedded sandbox, on loopback only.
# Each request is a full SDK call: validate → sign → platform ticket exchange → page URL.
# Usage: bash scripts/bench-proxy.sh [seconds] [connections]
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-10}
conns=${2:-32}
command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq --no-install-recommends wrk; }
cargo build --release --locked -p qys-proxy -q
dir=$(mktemp -d)
trap 'kill $pid 2>/dev/null || true; rm -rf "$dir"' EXIT
QYS_LISTEN=127.0.0.1:18080 QYS_SANDBOX_LISTEN=127.0.0.1:18081 QYS_DATABASE="$dir/db.sqlite3" RUST_LOG=warn \
  target/release/qys-proxy >"$dir/out" 2>&1 &
pid=$!
for _ in $(seq 50); do grep -q '^proxy:' "$dir/out" && break; sleep 0.1; done
cat > "$dir/post.lua" <<'LUA'
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"
wrk.headers["Origin"] = "http://127.0.0.1:18080"
wrk.body = "requestData=" .. ([[{"v":1,"action":"personalSign","state":"benchbenchbench0123456","params":{"contractId":"2603417854124281870","contact":"13700000044"}}]]):gsub("[^%w]", function(c) return string.format("%%%02X", string.byte(c)) end)
done = function(summary, latency, requests)
  io.write(string.format("non-2xx or errors: %d\n", summary.errors.status + summary.errors.connect + summary.errors.read + summary.errors.timeout))
end
LUA
curl -sf -X POST -H 'Origin: http://127.0.0.1:18080' --data-urlencode 'requestData={"v":1,"action":"personalSign","state":"benchbenchbench0123456","params":{"contractId":"2603417854124281870","contact":"13700000044"}}' http://127.0.0.1:18080/qys/proxy | grep -q '"code":0'
wrk -t"$(( conns < 2 ? 1 : 2 ))" -c"$conns" -d"${secs}s" --latency -s "$dir/post.lua" http://127.0.0.1:18080/qys/proxy
