#!/usr/bin/env bash
# Control-plane memory: RSS of `chainfleet up` with N nodes (default 100 real
# anvil nodes) registered and probed every 2 s. Prints the peak over 10 s.
# Usage: scripts/bench-memory.sh [NODES]
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/install.sh
export PATH="$PWD/.tools/bin:$PATH"
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"
nodes="${1:-100}"
cargo build --release -q --bin chainfleet
work=$(mktemp -d)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
api="http://127.0.0.1:$port"
{
  echo "apiVersion: chainfleet.dev/v1alpha1"
  echo "kind: Fleet"
  echo "instances:"
  for i in $(seq 1 "$nodes"); do
    printf '  - {name: eth%d, chain: ethereum, network: devnet, client: {binary: anvil, args: ["--silent"]}}\n' "$i"
  done
} > "$work/fleet.yaml"
./target/release/chainfleet up -f "$work/fleet.yaml" --state-dir "$work/state" --listen "127.0.0.1:$port" 2>"$work/up.log" &
cp_pid=$!
cleanup() { CHAINFLEET_API="$api" ./target/release/chainfleet down >/dev/null 2>&1 || kill "$cp_pid" 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT
echo "waiting for $nodes healthy nodes..."
for _ in $(seq 1 240); do
  healthy=$(CHAINFLEET_API="$api" ./target/release/chainfleet status --json 2>/dev/null | grep -c '"state": "healthy"' || true)
  [ "$healthy" -ge "$nodes" ] && break
  sleep 0.5
done
echo "healthy nodes: $healthy"
peak=0
for _ in $(seq 1 20); do
  rss=$(awk '/VmRSS/ {print $2}' "/proc/$cp_pid/status")
  [ "$rss" -gt "$peak" ] && peak=$rss
  sleep 0.5
done
echo "nodes=$nodes control_plane_rss_peak_mb=$(awk "BEGIN {printf \"%.1f\", $peak/1024}")"
