#!/usr/bin/env bash
# Gateway benchmark, all on 127.0.0.1, bounded in time (about 1 minute).
#
#   scripts/bench-gateway.sh [SECONDS_PER_RUN]   (default 10)
#
# Upstream: nginx returning a fixed JSON-RPC body. Four paths at 64 connections
# with wrk --latency:
#   (a) the upstream directly,
#   (b) nginx proxy_pass to the upstream (keep-alive to it),
#   (c) the Chainfleet gateway with auth (Bearer key, SHA-256 lookup), policy,
#       per-key limits and metrics on, forwarding eth_blockNumber,
#   (d) the gateway answering an immutable call (eth_chainId) from its cache,
#   (g) hyper answering a fixed body with no gateway logic (the ceiling).
# Then a real node, where the cache earns its keep: anvil answering
# eth_getBlockByHash(genesis) (e) directly and (f) through the gateway's cache,
# and litecoind answering getblock GENESIS 0 (h) directly and (i) cached.
# Then the gateway's RSS with 1,000 idle keep-alive connections.
# Installs nginx and wrk from Debian when missing.
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION="${1:-10}"
CONNS=64

need() { command -v "$1" >/dev/null 2>&1; }
if ! need nginx || ! need wrk; then
  echo "installing nginx and wrk from Debian..." >&2
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq nginx-light wrk >/dev/null 2>&1 \
    || DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq nginx wrk >/dev/null
fi
NGINX="$(command -v nginx || echo /usr/sbin/nginx)"

echo "building the benchmark harness (release)..." >&2
cargo build --release -q -p chainfleet-gateway --example bench_gateway
HARNESS="${CARGO_TARGET_DIR:-target}/release/examples/bench_gateway"

WORK="$(mktemp -d)"
PIDS=()
cleanup() {
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
  [ -f "$WORK/nginx.pid" ] && kill "$(cat "$WORK/nginx.pid")" 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'; }
UP=$(free_port); PROXY=$(free_port); GW=$(free_port); ANVIL=$(free_port); CEIL=$(free_port); LTC=$(free_port)
ANVIL_BIN="$(command -v anvil || echo .tools/bin/anvil)"
[ -x "$ANVIL_BIN" ] || { echo "anvil is missing; run scripts/install.sh" >&2; exit 1; }
"$ANVIL_BIN" --host 127.0.0.1 --port "$ANVIL" --silent > "$WORK/anvil.log" 2>&1 &
PIDS+=("$!")

cat > "$WORK/nginx.conf" <<CONF
worker_processes auto;
pid $WORK/nginx.pid;
error_log $WORK/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  upstream fixed { server 127.0.0.1:$UP; keepalive 128; }
  server {
    listen 127.0.0.1:$UP;
    location / { default_type application/json; return 200 '{"jsonrpc":"2.0","id":1,"result":"0x10"}'; }
  }
  server {
    listen 127.0.0.1:$PROXY;
    location / {
      proxy_pass http://fixed;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
    }
  }
}
CONF
"$NGINX" -p "$WORK" -c "$WORK/nginx.conf" -e "$WORK/error.log"

mkdir -p "$WORK/state"
# litecoind with enough RPC threads and queue for 64 connections.
mkdir -p "$WORK/ltc"
litecoind -regtest -datadir="$WORK/ltc" -rpcport="$LTC" -rpcuser=bench -rpcpassword=bench \
  -rpcthreads=16 -rpcworkqueue=1024 -listen=0 -server -daemon=0 -printtoconsole=0 > "$WORK/ltc.log" 2>&1 &
PIDS+=("$!")
"$HARNESS" "127.0.0.1:$GW" "$UP" "$WORK/state" "$ANVIL" "$LTC" bench bench > "$WORK/key" 2> "$WORK/gateway.log" &
GW_PID=$!; PIDS+=("$GW_PID")
for _ in $(seq 1 100); do [ "$(wc -l < "$WORK/key")" -ge 3 ] && break; sleep 0.1; done
KEY="$(sed -n 1p "$WORK/key")"; ANVIL_KEY="$(sed -n 2p "$WORK/key")"; LTC_KEY="$(sed -n 3p "$WORK/key")"
[ -n "$KEY" ] || { echo "the gateway harness did not start:"; cat "$WORK/gateway.log"; exit 1; }

script() { # METHOD [PARAMS_JSON [AUTHORIZATION]] -> lua file
  local file="$WORK/$1-$RANDOM.lua"
  cat > "$file" <<LUA
wrk.method = "POST"
wrk.body = '{"jsonrpc":"2.0","id":1,"method":"$1","params":${2:-[]}}'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "${3:-Bearer $KEY}"
LUA
  echo "$file"
}

# Prints "RPS P99_MS NON2XX".
run() { # URL METHOD [PARAMS_JSON [AUTHORIZATION]]
  local out
  out="$(wrk -t2 -c"$CONNS" -d"${DURATION}s" --latency -s "$(script "$2" "${3:-[]}" "${4:-Bearer $KEY}")" "$1")"
  echo "$out" > "$WORK/last.txt"
  local rps p99 non2xx
  rps="$(awk '/Requests\/sec/ {print $2}' <<<"$out")"
  p99="$(awk '$1=="99%" {v=$2; if (v ~ /us$/) {sub(/us/,"",v); v=v/1000} else if (v ~ /ms$/) {sub(/ms/,"",v)} else if (v ~ /s$/) {sub(/s/,"",v); v=v*1000}; print v}' <<<"$out")"
  non2xx="$(awk '/Non-2xx/ {print $5}' <<<"$out")"
  echo "$rps $p99 ${non2xx:-0}"
}

# Warm up every path briefly (connections, pools, cache).
for url in "http://127.0.0.1:$UP/" "http://127.0.0.1:$PROXY/" "http://127.0.0.1:$GW/rpc/bench"; do
  wrk -t2 -c"$CONNS" -d2s -s "$(script eth_chainId)" "$url" >/dev/null
done

read -r A_RPS A_P99 A_BAD < <(run "http://127.0.0.1:$UP/" eth_blockNumber)
read -r B_RPS B_P99 B_BAD < <(run "http://127.0.0.1:$PROXY/" eth_blockNumber)
read -r C_RPS C_P99 C_BAD < <(run "http://127.0.0.1:$GW/rpc/bench" eth_blockNumber)
read -r D_RPS D_P99 D_BAD < <(run "http://127.0.0.1:$GW/rpc/bench" eth_chainId)

# The real node: a block by hash, which can never change.
for _ in $(seq 1 50); do
  GENESIS="$(curl -s -H 'content-type: application/json' \
    -d '{"jsonrpc":"2.0","id":1,"method":"eth_getBlockByNumber","params":["0x0",false]}' \
    "http://127.0.0.1:$ANVIL/" | python3 -c 'import json,sys; print(json.load(sys.stdin)["result"]["hash"])' 2>/dev/null)" && break
  sleep 0.2
done
[ -n "${GENESIS:-}" ] || { echo "anvil did not start:"; cat "$WORK/anvil.log"; exit 1; }
BY_HASH="[\"$GENESIS\",false]"
wrk -t2 -c"$CONNS" -d2s -s "$(script eth_getBlockByHash "$BY_HASH" "Bearer $ANVIL_KEY")" "http://127.0.0.1:$GW/rpc/anvil" >/dev/null
read -r E_RPS E_P99 E_BAD < <(run "http://127.0.0.1:$ANVIL/" eth_getBlockByHash "$BY_HASH")
# litecoind: the genesis block by hash as raw hex (content-addressed: cached at once).
LTC_AUTH="Basic $(printf bench:bench | base64)"
for _ in $(seq 1 100); do
  LTC_GENESIS="$(curl -s -u bench:bench -d '{"jsonrpc":"1.0","id":1,"method":"getblockhash","params":[0]}' \
    "http://127.0.0.1:$LTC/" | python3 -c 'import json,sys; print(json.load(sys.stdin)["result"])' 2>/dev/null)" && break
  sleep 0.2
done
[ -n "${LTC_GENESIS:-}" ] || { echo "litecoind did not start:"; cat "$WORK/ltc.log"; exit 1; }
RAW_BLOCK="[\"$LTC_GENESIS\",0]"
wrk -t2 -c"$CONNS" -d2s -s "$(script getblock "$RAW_BLOCK" "Bearer $LTC_KEY")" "http://127.0.0.1:$GW/rpc/ltc" >/dev/null
read -r H_RPS H_P99 H_BAD < <(run "http://127.0.0.1:$LTC/" getblock "$RAW_BLOCK" "$LTC_AUTH")
read -r I_RPS I_P99 I_BAD < <(run "http://127.0.0.1:$GW/rpc/ltc" getblock "$RAW_BLOCK" "Bearer $LTC_KEY")
# The ceiling: hyper answering a fixed body with no gateway logic at all.
"$HARNESS" ceiling "127.0.0.1:$CEIL" > "$WORK/ceiling" 2>&1 &
PIDS+=("$!")
for _ in $(seq 1 50); do [ -s "$WORK/ceiling" ] && break; sleep 0.1; done
read -r G_RPS G_P99 G_BAD < <(run "http://127.0.0.1:$CEIL/" eth_chainId)
read -r F_RPS F_P99 F_BAD < <(run "http://127.0.0.1:$GW/rpc/anvil" eth_getBlockByHash "$BY_HASH" "Bearer $ANVIL_KEY")

# Check that (c) really forwarded and (d) really came from the cache.
METRICS="$(curl -s "http://127.0.0.1:$GW/metrics")"
FORWARDED="$(awk '/^chainfleet_gateway_calls_total\{.*method="eth_blockNumber".*outcome="ok"/ {print $2}' <<<"$METRICS")"
CACHED="$(awk '/^chainfleet_gateway_cache_hits_total/ {s+=$2} END {print s+0}' <<<"$METRICS")"

# RSS with 1,000 idle keep-alive connections (each made one request first).
python3 - "$GW" "$KEY" "$GW_PID" > "$WORK/rss" <<'PY'
import socket, sys, time
port, key, pid = int(sys.argv[1]), sys.argv[2], sys.argv[3]
def rss():
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
before = rss()
body = b'{"jsonrpc":"2.0","id":1,"method":"eth_chainId","params":[]}'
req = (b"POST /rpc/bench HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nAuthorization: Bearer "
       + key.encode() + b"\r\nContent-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
socks = []
for _ in range(1000):
    s = socket.create_connection(("127.0.0.1", port))
    s.sendall(req)
    s.recv(4096)
    socks.append(s)
time.sleep(1.0)
print(f"{before:.1f} {rss():.1f}")
PY
read -r RSS_BEFORE RSS_IDLE < "$WORK/rss"

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "n/a" }'; }
added() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a - b }'; }

echo
echo "Gateway benchmark: $CONNS connections, ${DURATION}s per run, wrk -t2, $(nproc) cores, $(date -u +%F)"
printf "%-44s %12s %10s %8s\n" "path" "req/s" "p99 ms" "non-2xx"
printf "%-44s %12s %10s %8s\n" "(a) nginx fixed answer, direct" "$A_RPS" "$A_P99" "$A_BAD"
printf "%-44s %12s %10s %8s\n" "(b) nginx proxy_pass" "$B_RPS" "$B_P99" "$B_BAD"
printf "%-44s %12s %10s %8s\n" "(c) chainfleet gateway (auth+policy+limits)" "$C_RPS" "$C_P99" "$C_BAD"
printf "%-44s %12s %10s %8s\n" "(d) chainfleet gateway, cached answer" "$D_RPS" "$D_P99" "$D_BAD"
printf "%-44s %12s %10s %8s\n" "(e) anvil eth_getBlockByHash, direct" "$E_RPS" "$E_P99" "$E_BAD"
printf "%-44s %12s %10s %8s\n" "(f) gateway, same call cached from anvil" "$F_RPS" "$F_P99" "$F_BAD"
printf "%-44s %12s %10s %8s\n" "(g) hyper fixed answer, no gateway logic" "$G_RPS" "$G_P99" "$G_BAD"
printf "%-44s %12s %10s %8s\n" "(h) litecoind getblock HASH 0, direct" "$H_RPS" "$H_P99" "$H_BAD"
printf "%-44s %12s %10s %8s\n" "(i) gateway, same call cached from litecoind" "$I_RPS" "$I_P99" "$I_BAD"
echo
echo "throughput  gateway/nginx-proxy = $(ratio "$C_RPS" "$B_RPS")   (target >= 1)"
echo "throughput  gateway/direct      = $(ratio "$C_RPS" "$A_RPS");  nginx-proxy/direct = $(ratio "$B_RPS" "$A_RPS")"
echo "throughput  cached/direct       = $(ratio "$D_RPS" "$A_RPS")   (target >= 3; nginx's fixed answer is this machine's ceiling)"
echo "throughput  cached/anvil direct = $(ratio "$F_RPS" "$E_RPS")   (target >= 3, against a real node)"
echo "throughput  cached/litecoind direct = $(ratio "$I_RPS" "$H_RPS")   (target >= 3, against a real node)"
echo "throughput  cached/hyper ceiling = $(ratio "$D_RPS" "$G_RPS")   (what the gateway's own work costs a cached answer)"
echo "added p99   gateway = $(added "$C_P99" "$A_P99") ms, nginx proxy = $(added "$B_P99" "$A_P99") ms   (target: gateway <= nginx)"
echo "gateway RSS idle = ${RSS_BEFORE} MB; with 1,000 idle connections = ${RSS_IDLE} MB   (target < 64 MB)"
echo "check: forwarded eth_blockNumber calls = ${FORWARDED:-0}, cache hits = ${CACHED}"
