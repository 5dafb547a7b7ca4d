#!/usr/bin/env bash
# Release build of the SDK into pkg/: cargo (pinned nightly, WebAssembly MVP) → wasm-bindgen
# (pinned to Cargo.lock) → one-letter import/export names (scripts/short-names.mjs) → wasm-opt -Oz
# with MVP features only; then dist/: the wasm2js fallback (scripts/wasm2js.mjs) and the bundled
# entries.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/tools.sh build
. scripts/mvp.env
check_nightly
RUSTFLAGS="$SHIP_RUSTFLAGS" cargo +"$NIGHTLY" build --release --locked --target wasm32-unknown-unknown \
  $BUILD_STD -p qys-sdk-wasm --target-dir target/mvp
rm -rf pkg
# No default .wasm URL in the glue: both entries pass their own.
wasm-bindgen --target web --omit-default-module-path --out-dir pkg --out-name qys_sdk_wasm \
  target/mvp/wasm32-unknown-unknown/release/qys_sdk_wasm.wasm
node scripts/short-names.mjs pkg/qys_sdk_wasm_bg.wasm pkg/qys_sdk_wasm.js
# --converge: the whole list of passes again until nothing changes; the list: -Oz, control flow
# rebuilt (--flatten --rereloop), -Oz twice (−0.35 KB gzip against a single -Oz).
node_modules/.bin/wasm-opt -Oz --converge --flatten --rereloop -Oz -Oz $WASM_OPT_FEATURES --strip-debug --strip-producers \
  pkg/qys_sdk_wasm_bg.wasm -o pkg/qys_sdk_wasm_bg.wasm
# The shipped files (dist/): the ES module entry with lazy instantiation, the classic drop-in
# script, the .wasm next to both, and their types. Transpiled for Chrome 57 / Safari 11
# (esbuild flags Safari 11 destructuring for edge cases of its test suite; the plain object
# destructuring the glue uses runs there, so it is declared supported).
rm -rf dist && mkdir dist
# --- wasm2js fallback (issue 10): exports the glue's two instantiation internals, and writes
# dist/qys_sdk_wasm2js.js, the .wasm as JS for pages without WebAssembly (see the script).
node scripts/wasm2js.mjs
# --- end of the wasm2js fallback
esbuild=node_modules/.bin/esbuild
$esbuild js/index.js --bundle --format=esm --target=chrome61,safari11 --supported:import-meta=true --supported:destructuring=true \
  --minify --legal-comments=none --log-level=warning --outfile=dist/qys-sdk.mjs
# The glue's default wasm URL (import.meta.url) is never used: classic.js passes its own.
$esbuild js/classic.js --bundle --format=iife --target=chrome57,safari11 --supported:destructuring=true \
  --define:import.meta.url=undefined --minify --legal-comments=none --log-level=warning --outfile=dist/index.js
cp pkg/qys_sdk_wasm_bg.wasm dist/
# Types: wasm-bindgen's, without `[Symbol.dispose]` (the wrappers have it only where the engine
# does, and declaring it fails in projects without TypeScript's esnext.disposable lib: TS2550),
# and the entries' own from js/.
grep -v '^ *\[Symbol\.dispose\](): void;$' pkg/qys_sdk_wasm.d.ts > dist/qys_sdk_wasm.d.ts
cp js/qys-sdk.d.ts dist/qys-sdk.d.ts
cp js/classic.d.ts dist/index.d.ts
for f in dist/qys_sdk_wasm_bg.wasm dist/qys-sdk.mjs dist/index.js; do
  printf '%-32s %7d B  gzip -9 %6d B\n' "$f" "$(wc -c <"$f")" "$(gzip -9c "$f" | wc -c)"
done
