#!/usr/bin/env bash
# Load test on loopback: qys-proxy (release) in front of the sandbox platform, each in its own
# process (`qys-proxy sandbox` stands in for the platform), so the proxy's own CPU is measured.
# Each request is a full SDK call: validate → sign → platform page-URL API → answer.
# Usage: bash scripts/bench-proxy.sh [seconds] [connections...]   (default: 10 s at 1 and 32)
set -euo pipefail
cd "$(dirname "$0")/.."
secs=${1:-10}
shift || true
conns_list=("$@")
[ ${#conns_list[@]} -gt 0 ] || conns_list=(1 32)
command -v wrk >/dev/null || { apt-get update -qq && apt-get install -y -qq --no-install-recommends wrk; }
cargo build --release --locked -p qys-proxy -q
dir=$(mktemp -d)
pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true; rm -rf "$dir"' EXIT
export QYS_ACCESS_TOKEN=bench-token QYS_ACCESS_SECRET=bench-secret RUST_LOG=warn
QYS_SANDBOX_LISTEN=127.0.0.1:18081 target/release/qys-proxy sandbox >"$dir/sandbox.out" 2>&1 &
pids+=($!)
# wrk is one address starting flows as fast as it can: QYS_SDK_RATE=0 and a QYS_FLOW_START_RATE
# out of reach, or it would measure the limits' 429s.
QYS_SERVER_URL=http://127.0.0.1:18081 QYS_LISTEN=127.0.0.1:18080 QYS_DATABASE="$dir/db.sqlite3" QYS_SDK_RATE=0 \
  QYS_FLOW_START_RATE=1000000 \
  target/release/qys-proxy >"$dir/proxy.out" 2>&1 &
proxy_pid=$!
pids+=("$proxy_pid")
for _ in $(seq 50); do grep -q '^proxy:' "$dir/proxy.out" && grep -q '^sandbox' "$dir/sandbox.out" && break; sleep 0.1; done
body='requestData={"v":1,"action":"personalSign","state":"benchbenchbench0123456","params":{"contractId":"2603417854124281870","contact":"13700000044"}}'
curl -sf -X POST -H 'Origin: http://127.0.0.1:18080' --data-urlencode "$body" http://127.0.0.1:18080/qys/proxy | grep -q '"code":0' \
  || { echo "the proxy did not answer a flow; see $dir" >&2; cat "$dir"/*.out >&2; exit 1; }
cat > "$dir/post.lua" <<'LUA'
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"
wrk.headers["Origin"] = "http://127.0.0.1:18080"
wrk.body = "requestData=" .. ([[{"v":1,"action":"personalSign","state":"benchbenchbench0123456","params":{"contractId":"2603417854124281870","contact":"13700000044"}}]]):gsub("[^%w]", function(c) return string.format("%%%02X", string.byte(c)) end)
done = function(summary, latency, requests)
  io.write(string.format("requests: %d\nnon-2xx or errors: %d\n", summary.requests,
    summary.errors.status + summary.errors.connect + summary.errors.read + summary.errors.timeout))
end
LUA
# CPU time (user + system, in clock ticks) the process has used so far.
cpu_ticks() { awk '{ print $14 + $15 }' "/proc/$1/stat"; }
hz=$(getconf CLK_TCK)
for conns in "${conns_list[@]}"; do
  echo "== $conns connection(s), ${secs} s"
  before=$(cpu_ticks "$proxy_pid")
  wrk -t"$(( conns < 2 ? 1 : 2 ))" -c"$conns" -d"${secs}s" --latency -s "$dir/post.lua" http://127.0.0.1:18080/qys/proxy \
    | tee "$dir/wrk.out"
  after=$(cpu_ticks "$proxy_pid")
  requests=$(awk '/^requests:/ { print $2 }' "$dir/wrk.out")
  awk -v t=$((after - before)) -v hz="$hz" -v n="$requests" -v s="$secs" 'BEGIN {
    printf "proxy CPU: %.2f s over %d requests = %.1f µs per request (%.2f of a core)\n", t / hz, n, t / hz / n * 1e6, t / hz / s }'
done
