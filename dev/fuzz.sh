#!/usr/bin/env bash
# Runs every cargo-fuzz target (fuzz/fuzz_targets) for a bounded time: FUZZ_SECONDS each
# (default 60). The committed corpus (fuzz/corpus/TARGET) is read, never written: new inputs go
# to a scratch directory, so a run leaves the checkout clean. A crash, a panic or an assertion
# leaves its input under fuzz/artifacts/TARGET and fails the run (reproduce it with
# `cargo +nightly fuzz run TARGET fuzz/artifacts/TARGET/crash-...`).
#
# Needs a nightly toolchain (libFuzzer's instrumentation flags) and cargo-fuzz from crates.io;
# both are installed when missing.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
seconds="${FUZZ_SECONDS:-60}"
# Pinned, so that CI fuzzes with what was tested here.
CARGO_FUZZ_VERSION=0.13.2

if ! rustup run nightly rustc --version >/dev/null 2>&1; then
  echo "fuzz: installing the nightly toolchain (cargo fuzz needs it)"
  rustup toolchain install nightly --profile minimal || {
    echo "fuzz: no nightly toolchain and it cannot be installed here; run: rustup toolchain install nightly" >&2
    exit 1
  }
fi
if [[ "$(cargo fuzz --version 2>/dev/null)" != "cargo-fuzz $CARGO_FUZZ_VERSION" ]]; then
  echo "fuzz: installing cargo-fuzz $CARGO_FUZZ_VERSION from crates.io"
  cargo install cargo-fuzz --locked --version "$CARGO_FUZZ_VERSION"
fi

targets=(frame_decode csv_row)
scratch="$(mktemp -d)"
trap 'rm -rf "$scratch"' EXIT
# One build of every target first (the runs below then only link-check).
(cd fuzz && cargo +nightly fuzz build --target-dir ../target/fuzz)
for target in "${targets[@]}"; do
  echo "== fuzzing $target for ${seconds}s"
  mkdir -p "$scratch/$target"
  log="$scratch/$target.log"
  if ! (cd fuzz && cargo +nightly fuzz run --target-dir ../target/fuzz "$target" \
    "$scratch/$target" "corpus/$target" -- \
    -max_total_time="$seconds" -rss_limit_mb=2048 -max_len=65536 -print_final_stats=1) >"$log" 2>&1; then
    tail -n 60 "$log" >&2
    echo "fuzz: $target failed; its input is under fuzz/artifacts/$target" >&2
    exit 1
  fi
  grep -E '^(stat::number_of_executed_units|stat::peak_rss_mb)|INFO: seed corpus|DONE' "$log" || true
done
echo "fuzz: ${targets[*]}: no failure in ${seconds}s each"
