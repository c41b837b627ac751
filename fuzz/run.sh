#!/usr/bin/env bash
# Builds every fuzz target and runs each for N seconds (default 30) from the committed seeds in
# fuzz/seeds/<target>/ into a scratch corpus. Fails on the first crash, panic, timeout or
# out-of-memory; the input that did it is left in fuzz/artifacts/<target>/.
#
#   fuzz/run.sh [SECONDS]          # FUZZ_SANITIZER=address for an ASan build (slower, see docs/fuzzing.md)
#
# Only stable Rust is installed: cargo-fuzz passes nightly -Z flags (sanitizer coverage
# instrumentation), which RUSTC_BOOTSTRAP=1 lets a stable rustc accept.
set -euo pipefail
cd "$(dirname "$0")"

seconds="${1:-${FUZZ_SECONDS:-30}}"
# Where the instrumented build goes: fuzz/target unless a cache directory is given.
export CARGO_TARGET_DIR="${FUZZ_TARGET_DIR:-$PWD/target}"
sanitizer="${FUZZ_SANITIZER:-none}"
export RUSTC_BOOTSTRAP=1

if ! command -v cargo-fuzz >/dev/null 2>&1; then
  cargo install cargo-fuzz --locked --version 0.13.2
fi

# One build for all targets; `cargo fuzz run` below finds it up to date.
cargo fuzz build --sanitizer "$sanitizer"

scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT
for target in $(cargo fuzz list); do
  echo "fuzz: $target for ${seconds}s"
  mkdir -p "$scratch/$target"
  # New inputs go to the first corpus directory (scratch); the seeds are only read.
  # -timeout: an input taking 10 s is a hang, not slowness. -print_final_stats: exec counts.
  log="$scratch/$target.log"
  if ! cargo fuzz run --sanitizer "$sanitizer" "$target" "$scratch/$target" "seeds/$target" -- \
    -max_total_time="$seconds" -timeout=10 -print_final_stats=1 >"$log" 2>&1; then
    grep -A3 "panicked" "$log" >&2 || true
    grep -E "^(SUMMARY|artifact_prefix|==[0-9]+== ERROR)" "$log" >&2 || true
    echo "fuzz: $target FAILED; reproduce with: (cd fuzz && RUSTC_BOOTSTRAP=1 cargo fuzz run --sanitizer $sanitizer $target artifacts/$target/<file>)" >&2
    exit 1
  fi
  grep -E '^stat::(number_of_executed_units|peak_rss_mb)' "$log" | sed "s/^/fuzz: $target /"
done
echo "fuzz: all targets ran ${seconds}s each without a crash"
