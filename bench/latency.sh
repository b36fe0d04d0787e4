#!/usr/bin/env bash
# Latency benchmark: the time from a transaction's Kafka timestamp to its row being visible in
# PostgreSQL, at fixed rates, measured from outside the ledger (bench/latency.py polls the stored
# offsets every 2 ms; the Kafka timestamps are read back afterwards).
#
# For each rate in RATES (default 2000 and 20000 transactions/s, SECONDS_EACH = 60 s each): the
# ledger with its defaults (group commit), and the same with `--batch-linger-ms 200` (the
# former fixed linger) as the baseline of the same run. Prints p50/p95/p99/max, the ledger's peak
# RSS and CPU seconds. Targets (defaults): p99 < 100 ms at 2,000/s, < 250 ms at 20,000/s.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

RATES="${BENCH_RATES:-2000 20000}"
SECONDS_EACH="${BENCH_SECONDS:-60}"
BOOTSTRAP="${KAFKA_BOOTSTRAP_SERVERS:-127.0.0.1:9092}"
REGISTRY="${SCHEMA_REGISTRY_URL:-http://127.0.0.1:8081/apis/ccompat/v7}"
PG="${BENCH_PG:-postgres://bank:bank@127.0.0.1:5432}"
PY="${VENV:-tests/interop/.venv}/bin/python"
run="benchl$(date +%s)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

cpu_seconds() {
  awk -v hz="$(getconf CLK_TCK)" '{ printf "%.1f", ($14 + $15) / hz }' "/proc/$1/stat"
}

# wait_stored DB TOPIC COUNT: until the ledger has stored COUNT offsets of TOPIC (bounded).
wait_stored() {
  local deadline=$((SECONDS + 120)) stored=0
  while ((stored < $3)); do
    sleep 0.2
    stored="$(psql "$PG/$1" -qAtX -c "SELECT COALESCE(SUM(next_offset), 0) FROM consumer_offsets WHERE topic = '$2.transactions'")"
    ((SECONDS < deadline)) || { echo "$2: the ledger stored $stored of $3" >&2; return 1; }
  done
}

# one NAME RATE EXTRA_FLAGS...: a fresh topic and database, the ledger, the producer at RATE.
one() {
  local name="$1" rate="$2"; shift 2
  local topic="$run-$name" db="${run}_${name//-/_}"
  psql "$PG/bank" -qAtX -v ON_ERROR_STOP=1 -c "CREATE DATABASE $db"
  ./target/release/consumer ledger -b "$BOOTSTRAP" -s "$REGISTRY" -t "$topic.transactions" \
    --customers-topic "$topic.customers" -g "$db" --database-url "$PG/$db" \
    --http-addr 127.0.0.1:0 --tuple-log "$work/$name.tuples" "$@" \
    >"$work/$name.out" 2>"$work/$name.err" &
  local ledger=$!
  "$PY" bench/latency.py poll "$PG/$db?sslmode=disable" "$db" "$topic.transactions" \
    "$work/$name.visible" "$work/$name.stop" 2 &
  local poller=$!
  # Warm-up: the topics, the customers and one transaction, and the ledger assigned and caught
  # up, so that the figures are those of a running ledger, not of its start (group join).
  ./target/release/producer generate -b "$BOOTSTRAP" -s "$REGISTRY" -t "$topic.transactions" \
    --customers-topic "$topic.customers" --branches 3 --customers 1000 --count 1 \
    --seed 8 --silent >"$work/$name.warmup" 2>&1
  wait_stored "$db" "$topic" 1
  local count=$((rate * SECONDS_EACH)) since; since="$(date +%s.%N)"
  ./target/release/producer generate -b "$BOOTSTRAP" -s "$REGISTRY" -t "$topic.transactions" \
    --customers-topic "$topic.customers" --branches 3 --customers 1000 --count "$count" \
    --rate "$rate" --seed 9 --silent >"$work/$name.producer" 2>&1
  wait_stored "$db" "$topic" $((count + 1))
  local rss; rss="$(awk '/VmHWM/ {printf "%d", $2 / 1024}' "/proc/$ledger/status")"
  local cpu; cpu="$(cpu_seconds "$ledger")"
  touch "$work/$name.stop"
  wait "$poller"
  kill -TERM "$ledger"; wait "$ledger" || true
  "$PY" bench/latency.py report "$BOOTSTRAP" "$topic.transactions" "$work/$name.visible" "$name" "$since" |
    "$PY" -c '
import json, sys
r = json.load(sys.stdin)
print("%-34s %8d tx   p50 %7.1f ms  p95 %7.1f ms  p99 %7.1f ms  max %7.1f ms   peak RSS %s MiB, CPU %s s" % (
    r["label"], r["count"], r["p50_ms"], r["p95_ms"], r["p99_ms"], r["max_ms"], sys.argv[1], sys.argv[2]))' "$rss" "$cpu"
}

for rate in $RATES; do
  echo "== $rate transactions/s for ${SECONDS_EACH}s"
  one "group-commit-$rate" "$rate"
  one "linger-200ms-$rate" "$rate" --batch-linger-ms 200
done
