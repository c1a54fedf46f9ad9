#!/usr/bin/env bash
# A load run with wrk (Debian package): the service on the embedded store or
# on Redis (PAYPAGE_STORE), a merchant, then the card page and session
# creation under load from loopback, 10 seconds each.
# Usage: scripts/load.sh [duration]   e.g. PAYPAGE_STORE=redis://127.0.0.1:6379/0 scripts/load.sh 10s
set -euo pipefail
cd "$(dirname "$0")/.."
dur=${1:-10s}
command -v wrk >/dev/null || { echo "wrk is needed: apt-get install wrk"; exit 2; }
work=$(mktemp -d)
trap 'kill $pid 2>/dev/null || true; wait $pid 2>/dev/null || true; rm -rf "$work"' EXIT
go build -o "$work/paypage" ./cmd/paypage
export PAYPAGE_DATA="$work/data" PAYPAGE_ADDR=127.0.0.1:18181 PAYPAGE_LOG_LEVEL=warn
key=$("$work/paypage" merchant add --name "Load test" | sed -n 's/.*"secret_key": "\(.*\)".*/\1/p')
"$work/paypage" serve 2>"$work/serve.log" &
pid=$!
for _ in $(seq 50); do curl -sf "http://$PAYPAGE_ADDR/readyz" >/dev/null && break; sleep 0.1; done
body='{"amount":150000,"currency":"KZT","success_url":"https://shop.example/ok","cancel_url":"https://shop.example/no"}'
url=$(curl -sf "http://$PAYPAGE_ADDR/v1/sessions" -H "Authorization: Bearer $key" -H 'Content-Type: application/json' -d "$body" | sed -n 's/.*"url": "\(.*\)".*/\1/p')
echo "== GET the card page ($url)"
wrk -t2 -c32 -d"$dur" --latency "$url" | sed -n '1,/Requests\/sec/p'
cat >"$work/post.lua" <<LUA
wrk.method = "POST"
wrk.body = '$body'
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer $key"
LUA
echo "== POST /v1/sessions"
wrk -t2 -c32 -d"$dur" --latency -s "$work/post.lua" "http://$PAYPAGE_ADDR/v1/sessions" | sed -n '1,/Requests\/sec/p'
