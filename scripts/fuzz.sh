#!/usr/bin/env bash
# `npm run fuzz` (or `bash scripts/fuzz.sh [seconds] [target…]`): runs each cargo-fuzz target of
# fuzz/ for `seconds` (default 60) with nightly, and prints its executions and crashes.
# Targets: json_reader (the core's JSON reader and writer), envelope (the SDK envelope parser),
# callback_form (the proxy's server-callback checks), return_token (the proxy's return- and
# flow-token decoders). Each keeps its corpus in fuzz/corpus/<target> (only the seed-* inputs are
# committed); a crash leaves its input in fuzz/artifacts/<target>/, replayed by
#   cargo +nightly fuzz run -s none -a <target> fuzz/artifacts/<target>/crash-…
# Exits non-zero if any target crashed. CI runs `bash scripts/fuzz.sh 10` as a smoke test.
set -euo pipefail
cd "$(dirname "$0")/.."

seconds=${1:-60}
shift || true
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(json_reader envelope callback_form return_token)

rustup toolchain list | grep -q '^nightly' || rustup toolchain install nightly --profile minimal
if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "installing cargo-fuzz"
  # As with wasm-bindgen-cli: --locked can fail on this registry; the unlocked build works.
  cargo install -q cargo-fuzz --locked 2>/dev/null || cargo install -q cargo-fuzz
fi

# Safe Rust throughout: no sanitizer (twice the executions); debug assertions catch overflows.
flags=(--sanitizer none --debug-assertions)
cargo +nightly fuzz build "${flags[@]}"

failed=0
summary=()
for target in "${targets[@]}"; do
  corpus=fuzz/corpus/$target
  artifacts=fuzz/artifacts/$target
  mkdir -p "$corpus" "$artifacts"
  log=$(mktemp)
  marker=$(mktemp)
  rc=0
  echo "== fuzz $target (${seconds} s)"
  cargo +nightly fuzz run "${flags[@]}" "$target" "$corpus" -- \
    -max_total_time="$seconds" -timeout=20 -print_final_stats=1 >"$log" 2>&1 || rc=$?
  executions=$(awk '/^stat::number_of_executed_units:/ { n = $2 } END { print n }' "$log")
  # Without final stats (a crash before them), the last status line's count.
  [ -n "$executions" ] || executions=$(grep -oE '^#[0-9]+' "$log" | tail -n 1 | tr -d '#' || true)
  crashes=$(find "$artifacts" -type f -newer "$marker" \( -name 'crash-*' -o -name 'timeout-*' -o -name 'oom-*' -o -name 'leak-*' \) | wc -l)
  line="$target: ${executions:-0} executions in ${seconds} s, crashes: $crashes"
  if [ "$rc" -ne 0 ] || [ "$crashes" -ne 0 ]; then
    failed=1
    line="$line (exit $rc)"
    grep -E "panicked at|^thread '|SUMMARY|Test unit written|^Error" -A3 "$log" | head -n 40 || tail -n 40 "$log"
  fi
  echo "$line"
  summary+=("$line")
  rm -f "$log" "$marker"
done

echo "== fuzz summary"
printf '%s\n' "${summary[@]}"
exit $failed
