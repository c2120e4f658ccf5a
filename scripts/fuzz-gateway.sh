#!/usr/bin/env bash
# Fuzz the gateway's request parsing and policy evaluation for a bounded time.
#
#   scripts/fuzz-gateway.sh [SECONDS]   (default 60)
#
# Installs cargo-fuzz when missing. Uses the nightly toolchain when rustup has
# one; otherwise stable with RUSTC_BOOTSTRAP=1 (cargo-fuzz needs nightly flags).
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_TO_RUN="${1:-60}"
if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "installing cargo-fuzz..." >&2
  cargo install cargo-fuzz
fi
TOOLCHAIN=()
if rustup toolchain list 2>/dev/null | grep -q '^nightly'; then
  TOOLCHAIN=(+nightly)
else
  echo "no nightly toolchain: using stable with RUSTC_BOOTSTRAP=1" >&2
  export RUSTC_BOOTSTRAP=1
fi
mkdir -p fuzz/corpus/parse_and_judge
cargo "${TOOLCHAIN[@]}" fuzz run parse_and_judge fuzz/corpus/parse_and_judge -- \
  -max_total_time="$SECONDS_TO_RUN" -max_len=65536 -timeout=10
