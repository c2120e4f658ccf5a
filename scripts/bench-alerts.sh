#!/usr/bin/env bash
# Alert benchmarks: detection time per fault kind with real litecoind nodes at
# default settings (median over RUNS), and CPU cost of health evaluation +
# alerting for NODES nodes per probe round (synthetic snapshots).
# Usage: scripts/bench-alerts.sh [RUNS=10] [NODES=1000]
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/.tools/bin:$PATH"
RUNS="${1:-10}"
NODES="${2:-1000}"
cargo run --quiet --release -p chainfleet-control --example alerts_bench -- "$NODES" 200
cargo run --quiet --release -p chainfleet-control --example alerts_detect_bench -- "$RUNS"
