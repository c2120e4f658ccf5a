#!/usr/bin/env bash
# Probe cost: one probe round over N endpoints (default 1000), all served by
# one real anvil, repeated R times (default 10). Prints CPU per probe and round latency.
# Usage: scripts/bench-probe.sh [ENDPOINTS] [ROUNDS]
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/install.sh
export PATH="$PWD/.tools/bin:$PATH"
# 1000 keep-alive connections need more than the default 1024 descriptors.
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
cargo build --release -q -p chainfleet-control --example probe_bench
./target/release/examples/probe_bench "${1:-1000}" "${2:-10}"
