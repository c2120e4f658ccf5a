#!/usr/bin/env bash
# Installs what Chainfleet's example fleet and tests need, on Debian:
# node clients and services from Debian, anvil from npm into .tools/.
# Idempotent: when everything is there it only checks, in well under a second.
set -euo pipefail
cd "$(dirname "$0")/.."

ANVIL_VERSION="1.7.1"
# ca-certificates: the system CAs that https channels, references and etcd are checked against.
DEBIAN_PACKAGES=(litecoind monero etcd-server prometheus prometheus-alertmanager sqlite3 curl ca-certificates)
# One command per package, to tell whether it is installed.
DEBIAN_COMMANDS=(litecoind monerod etcd prometheus prometheus-alertmanager sqlite3 curl update-ca-certificates)

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

missing=()
for i in "${!DEBIAN_COMMANDS[@]}"; do
  command -v "${DEBIAN_COMMANDS[$i]}" >/dev/null 2>&1 || missing+=("${DEBIAN_PACKAGES[$i]}")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "install.sh: installing Debian packages: ${missing[*]}"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if ! command -v npm >/dev/null 2>&1; then
  echo "install.sh: installing Node.js and npm for anvil"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends nodejs npm >/dev/null
fi

anvil=".tools/bin/anvil"
if ! "$anvil" --version 2>/dev/null | grep -q "$ANVIL_VERSION"; then
  echo "install.sh: installing anvil $ANVIL_VERSION from npm into .tools/"
  mkdir -p .tools/bin
  npm install --prefix .tools --no-audit --no-fund --loglevel=error "@foundry-rs/anvil@$ANVIL_VERSION" >/dev/null
  # Use the native binary directly: the npm wrapper would sit between us and anvil's signals.
  native=$(find .tools/node_modules/@foundry-rs -path '*/bin/anvil' -type f | head -n1)
  if [ -z "$native" ]; then
    echo "install.sh: the npm package did not ship a native anvil for $(uname -m)" >&2
    exit 1
  fi
  ln -sf "$(pwd)/$native" "$anvil"
  "$anvil" --version | head -n1
fi

for tool in cargo rustfmt cargo-clippy; do
  command -v "$tool" >/dev/null 2>&1 || { echo "install.sh: $tool is missing; install the Rust toolchain (rustup) first" >&2; exit 1; }
done
