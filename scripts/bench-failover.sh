#!/usr/bin/env bash
# Producer failover: takeover time from kill -9 of the active litecoind to the
# first block of the next epoch (default TTL 3 s, block interval 1 s), over
# ROUNDS rounds (default 20), then a randomized chaos run (default 30 rounds).
# Usage: scripts/bench-failover.sh [ROUNDS] [CHAOS_ROUNDS] [SEED]
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/install.sh
export PATH="$PWD/.tools/bin:$PATH"
cargo build --release -q -p chainfleet-control --example failover_bench
./target/release/examples/failover_bench takeover "${1:-20}"
./target/release/examples/failover_bench chaos "${2:-30}" ${3:+"$3"}
