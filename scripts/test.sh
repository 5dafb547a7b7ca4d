#!/usr/bin/env bash
# `npm test`: every test of the project.
#  1. native: the SDK's pure core and the proxy/sandbox (cargo test)
#  2. the release build of the SDK into pkg/ (npm run build), its size check, and a small run of
#     npm run bench:sdk
#  3. wasm-bindgen-test (MVP build) in Chromium, Firefox ESR and WebKitGTK against a running
#     qys-proxy sandbox + fault server
#  4. Playwright end-to-end flows (demo page, seed 004's pages, classic script, CSP; with WebAssembly
#     and without it, on the wasm2js fallback), the shipping checks (MVP wasm, ES2017 JS, Node 10),
#     the npm consumers (webpack, Vite, tsc)
#  5. the demo flows in Firefox ESR and WebKitGTK through WebDriver
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/tools.sh

echo "== native tests"
cargo test --workspace --locked --all-targets

echo "== build"
bash scripts/build.sh
cargo build --release --locked -p qys-proxy

echo "== size (the shipped .wasm + ES module, gzip -9, against the ceiling in scripts/size.mjs)"
node scripts/size.mjs --check

echo "== bench:sdk smoke (a few loads and calls in Chromium; fails if the benchmark breaks)"
node scripts/bench-sdk.mjs 5 2

echo "== browser tests (wasm-bindgen-test in Chromium, Firefox ESR, WebKitGTK)"
run=$(mktemp -d)
pids=()
cleanup() { kill "${pids[@]}" 2>/dev/null || true; rm -rf "$run"; }
trap cleanup EXIT
runner_addr=127.0.0.1:18100
QYS_LISTEN=127.0.0.1:18180 QYS_SANDBOX_LISTEN=127.0.0.1:18181 QYS_ALLOWED_ORIGINS=http://$runner_addr \
  QYS_DATABASE="$run/callbacks.sqlite3" RUST_LOG=warn target/release/qys-proxy >"$run/proxy.out" 2>&1 &
pids+=($!)
node tests/support/faults.mjs 18190 >"$run/faults.out" 2>&1 &
pids+=($!)
# Up to 30 s: a loaded machine may start them slowly.
for _ in $(seq 300); do
  grep -q '^proxy:' "$run/proxy.out" && grep -q '^faults:' "$run/faults.out" && break
  sleep 0.1
done
grep -q '^proxy:' "$run/proxy.out" || { cat "$run/proxy.out"; exit 1; }
grep -q '^faults:' "$run/faults.out" || { cat "$run/faults.out"; exit 1; }
# On the MVP build, like the shipped package (panics keep their messages here), in each engine.
# The runner picks its driver from the environment: exactly one driver variable per run. It gives
# the whole suite 20 s by default, which a loaded machine (WebKitGTK under Xvfb) can outlast.
. scripts/mvp.env
check_nightly
browser_tests() {
  env WASM_BINDGEN_TEST_ADDRESS=$runner_addr WASM_BINDGEN_TEST_NO_ORIGIN_ISOLATION=1 WASM_BINDGEN_TEST_TIMEOUT=180 \
    RUSTFLAGS="$MVP_RUSTFLAGS" "$@" \
    cargo +"$NIGHTLY" test --locked --target wasm32-unknown-unknown $BUILD_STD -p qys-sdk-wasm \
    --target-dir target/mvp-test --test browser
}
minibrowser=$(find /usr/lib -path '*webkit2gtk*' -name MiniBrowser -type f | head -n 1)
echo "-- Chromium"
browser_tests CHROMEDRIVER=/usr/bin/chromedriver
echo "-- Firefox ESR"
browser_tests GECKODRIVER="$(command -v geckodriver)"
echo "-- WebKitGTK"
browser_tests SAFARIDRIVER=/usr/bin/WebKitWebDriver xvfb-run -a

echo "== end-to-end (Playwright, Chromium), shipping checks, npm consumers"
node --test --test-reporter=tap tests/e2e/*.test.mjs tests/ship/*.test.mjs tests/consumer/*.test.mjs tests/miniprogram/*.test.mjs

echo "== end-to-end in Firefox ESR and WebKitGTK (WebDriver)"
ENGINE=firefox GECKODRIVER="$(command -v geckodriver)" node --test --test-reporter=tap tests/engines/*.test.mjs
ENGINE=webkit SAFARIDRIVER=/usr/bin/WebKitWebDriver MINIBROWSER="$minibrowser" xvfb-run -a node --test --test-reporter=tap tests/engines/*.test.mjs

echo "== fuzz smoke (each cargo-fuzz target 10 s)"
bash scripts/fuzz.sh 10
