#!/usr/bin/env bash
# Release build of the SDK into pkg/: cargo (pinned nightly, WebAssembly MVP) → wasm-bindgen
# (pinned to Cargo.lock) → wasm-opt -Oz with MVP features only.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/tools.sh
. scripts/mvp.env
check_nightly
RUSTFLAGS="$SHIP_RUSTFLAGS" cargo +nightly build --release --locked --target wasm32-unknown-unknown \
  $BUILD_STD -p qys-sdk-wasm --target-dir target/mvp
rm -rf pkg
wasm-bindgen --target web --out-dir pkg --out-name qys_sdk_wasm \
  target/mvp/wasm32-unknown-unknown/release/qys_sdk_wasm.wasm
node_modules/.bin/wasm-opt -Oz $WASM_OPT_FEATURES --strip-debug --strip-producers \
  pkg/qys_sdk_wasm_bg.wasm -o pkg/qys_sdk_wasm_bg.wasm
echo '{ "type": "module" }' > pkg/package.json
# The seed's constructor name, `qysSdk`, next to the class name.
cat > pkg/index.js <<'JS'
export { default, initSync, QysSdk, QysSdk as qysSdk } from './qys_sdk_wasm.js';
JS
cat > pkg/index.d.ts <<'TS'
export * from './qys_sdk_wasm.js';
export { default } from './qys_sdk_wasm.js';
export { QysSdk as qysSdk } from './qys_sdk_wasm.js';
TS
for f in pkg/qys_sdk_wasm_bg.wasm pkg/qys_sdk_wasm.js; do
  printf '%-32s %7d B  gzip -9 %6d B\n' "$f" "$(wc -c <"$f")" "$(gzip -9c "$f" | wc -c)"
done
