#!/usr/bin/env bash
# The performance figures of the README, in one run on this machine: the
# floor server (../shared/perf/floor), redis-benchmark GET and SET, then
# paypage on Redis and on the embedded store, each hot path with
# "paypage load" at the same concurrency, every figure a share of the floor
# measured in the same run. Everything runs on loopback in a temporary
# directory and is stopped at the end.
#
# Usage: scripts/perf.sh [duration]     e.g. scripts/perf.sh 30s
#   CONC=64          concurrent clients
#   FLOOR_DIR=...    the floor server's source (default ../shared/perf/floor)
#   STORES="redis bolt"  SCENARIOS="detokenize sessions sessions+idempotency page pay challenge refund sale"
#   SOAK=10m         also run the sale mix this long on each store (memory over time)
#   PROFILE=1        a CPU profile of each scenario (OUT/store-scenario.pprof; go tool pprof -top bin/paypage FILE)
#   OUT=DIR          keep the JSON reports there (default: the temporary directory, removed)
set -euo pipefail
cd "$(dirname "$0")/.."
dur=${1:-30s}
conc=${CONC:-64}
floor_dir=${FLOOR_DIR:-../shared/perf/floor}
stores=${STORES:-redis bolt}
scenarios=${SCENARIOS:-detokenize sessions sessions+idempotency page pay challenge refund sale}
warm=5s
work=$(mktemp -d)
out=${OUT:-$work/reports}
mkdir -p "$out"
pids=()
cleanup() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
	rm -rf "$work"
}
trap cleanup EXIT
command -v redis-server >/dev/null || { echo "redis-server is needed: make deps"; exit 2; }
[ -d "$floor_dir" ] || { echo "no floor server at $floor_dir (set FLOOR_DIR)"; exit 2; }

go build -o "$work/paypage" ./cmd/paypage
(cd "$floor_dir" && go build -o "$work/floor-server" .)
pp="$work/paypage"

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_for() { for _ in $(seq 100); do curl -sf "$1" >/dev/null 2>&1 && return 0; sleep 0.1; done; echo "nothing answers at $1"; exit 1; }

echo "# $(date -u +%FT%TZ) on $(nproc) cores; load average: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "# $(go version | cut -d' ' -f3), redis $(redis-server --version | sed 's/.*v=\([^ ]*\).*/\1/'), $conc concurrent clients, $dur measured after $warm"

floor_port=$(free_port)
"$work/floor-server" -addr "127.0.0.1:$floor_port" & pids+=($!)
sleep 0.3
# floor NAME [DURATION]: the floor's throughput now (every row is a share of
# the floor measured just before it, so a machine busier at one time than
# another moves both)
floor() {
	"$pp" load --scenario floor --target "http://127.0.0.1:$floor_port" --concurrency "$conc" --duration "${2:-$dur}" --warmup 2s \
		--metrics off --json "$out/floor-$1.json" >/dev/null 2>"$work/floor.log"
	jq -r '.total.per_second' "$out/floor-$1.json"
}
floor_rate=$(floor start)
echo "floor: $floor_rate/s, p99 $(jq -r .total.p99_ms "$out/floor-start.json") ms"

redis_port=$(free_port)
redis-server --port "$redis_port" --bind 127.0.0.1 --dir "$work" --save "" --appendonly yes --appendfsync everysec \
	--logfile "$work/redis.log" & pids+=($!)
wait_for_redis() { for _ in $(seq 50); do redis-cli -p "$redis_port" ping >/dev/null 2>&1 && return 0; sleep 0.1; done; exit 1; }
wait_for_redis
redis-benchmark -p "$redis_port" -c "$conc" -n 1000000 -t get,set --csv 2>/dev/null | tr -d '"' |
	awk -F, -v c="$conc" '$1=="GET"||$1=="SET" {printf "redis-benchmark %s at %d clients: %.0f/s, p99 %s ms\n", $1, c, $2, $7}'


# start NAME: a fresh service on the store NAME (a new data directory, an
# emptied Redis), its merchant and processor; stop: stop it.
start() {
	local name=$1
	addr=127.0.0.1:$(free_port)
	metrics=127.0.0.1:$(free_port)
	rm -rf "$work/data"
	export PAYPAGE_ADDR=$addr PAYPAGE_METRICS_ADDR=$metrics PAYPAGE_DATA=$work/data PAYPAGE_LOG_LEVEL=warn
	if [ "$name" = redis ]; then
		redis-cli -p "$redis_port" flushall >/dev/null
		export PAYPAGE_STORE=redis://127.0.0.1:$redis_port/0
	else
		export PAYPAGE_STORE=bolt
	fi
	# The operator commands below run before the service: they need its key.
	export PAYPAGE_MASTER_KEY_FILE=$work/master.key
	"$pp" merchant add --name "Load test" >"$work/merchant.json"
	# The processor keeps a detokenize rate, far above the load: the limit is spent and checked on every call.
	"$pp" processor add --name "Load test" --merchants "$(jq -r .id "$work/merchant.json")" --rate 1000000 >"$work/processor.json"
	"$pp" serve --limit-client-per-hour 0 --limit-card-per-day 0 --limit-merchant-per-minute 0 --limit-global-per-minute 0 --pprof \
		2>>"$work/serve-$name.log" & pids+=($!)
	wait_for "http://$addr/readyz"
}
stop() {
	kill "${pids[-1]}"
	wait "${pids[-1]}" 2>/dev/null || true
	unset 'pids[-1]'
}
openssl rand -hex 32 >"$work/master.key"
chmod 600 "$work/master.key"

# run NAME SCENARIO: one row of the table, on a fresh service.
run() {
	local name=$1 s=$2 extra=() load
	case $s in
	sessions+idempotency) extra=(--idempotency) ;;
	refund) extra=(--pool 4096) ;; # a few refunds each, as payments have: a payment's record holds its refunds
	esac
	start "$name"
	floor_rate=$(floor "$name-$s" 10s)
	"$pp" load --scenario "${s%+idempotency}" "${extra[@]}" --concurrency "$conc" --duration "$dur" --warmup "$warm" --floor-rate "$floor_rate" \
		--merchant "$work/merchant.json" --processor "$work/processor.json" --json "$out/$name-$s.json" >/dev/null 2>"$work/load-$name-$s.log" &
	load=$!
	if [ -n "${PROFILE:-}" ]; then # a CPU profile of the measured time's first half, once set-up and warm-up are over
		until grep -q "load: measuring" "$work/load-$name-$s.log" || ! kill -0 "$load" 2>/dev/null; do sleep 0.2; done
		curl -sf -o "$out/$name-$s.pprof" "http://$metrics/debug/pprof/profile?seconds=$(( ${dur%s} / 2 ))" || true
	fi
	wait "$load" || { cat "$work/load-$name-$s.log"; exit 1; }
	stop
	jq -r --arg store "$name" --arg s "$s" --arg load "$(cut -d' ' -f1 /proc/loadavg)" '"| \($s) | \($store) | \(.total.per_second) | \(.floor_share*1000|round/10)% of \(.floor_rate|round) | \($load) | \(.total.p50_ms) | \(.total.p99_ms) | \(.total.p99_9_ms) | \(.total.errors) | \(.server.cpu_per_op_us|round) µs | \(.server.resident_max_mb|round) MB (\(.server.go_sys_max_mb|round) MB) |"' "$out/$name-$s.json"
}

# soak NAME: the sale mix for SOAK on a fresh service, memory sampled every 30 s.
soak() {
	local name=$1
	start "$name"
	"$pp" load --scenario sale --concurrency "$conc" --duration "$SOAK" --warmup "$warm" --sample 30s \
		--merchant "$work/merchant.json" --processor "$work/processor.json" --json "$out/$name-soak.json" >/dev/null 2>>"$work/load.log"
	stop
	jq -r --arg store "$name" '"soak \($store): the sale mix for \(.seconds|round) s, \(.total.per_second)/s; resident memory \(.server.resident_start_mb|round) MB at the start, \(.server.resident_end_mb|round) MB at the end, \(.server.resident_max_mb|round) MB at most, \(.server.resident_slope_mb_per_min*100|round/100) MB a minute; the Go runtime \(.server.go_sys_max_mb|round) MB at most"' "$out/$name-soak.json"
}

echo "| scenario | store | per second | of the floor just before | load average after | p50 ms | p99 ms | p99.9 ms | errors | server CPU an op | resident at most (Go runtime's) |"
echo "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"
for st in $stores; do
	for sc in $scenarios; do run "$st" "$sc"; done
done
if [ -n "${SOAK:-}" ]; then
	for st in $stores; do soak "$st"; done
fi
floor_end=$(floor end)
echo "floor again at the end: $floor_end/s; load average: $(cut -d' ' -f1-3 /proc/loadavg)"
[ -n "${OUT:-}" ] && echo "reports in $out"
exit 0
