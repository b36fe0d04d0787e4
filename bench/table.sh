#!/usr/bin/env bash
# Table source benchmark: `producer table` reading PostgreSQL into Kafka, beside a plain
# `COPY (SELECT ... ORDER BY updated_at, id) TO STDOUT` of the same rows (what reading the
# table costs at all, with no Kafka).
#
# 1. `producer generate --into-database` writes N transactions (BENCH_TABLE_ROWS, default
#    500,000) over ACCOUNTS accounts into a fresh database; its insert rate is printed too.
# 2. COPY of the same rows, in the source's order, to /dev/null.
# 3. `producer table --stop-when-caught-up` (defaults: batches of 10,000, each acknowledged by
#    Kafka before the position moves) from process start to exit: rows/s, CPU, peak RSS.
# Target: >= 50,000 rows/s from PostgreSQL.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

N="${BENCH_TABLE_ROWS:-500000}"
ACCOUNTS="${BENCH_ACCOUNTS:-10000}"
BOOTSTRAP="${KAFKA_BOOTSTRAP_SERVERS:-127.0.0.1:9092}"
REGISTRY="${SCHEMA_REGISTRY_URL:-http://127.0.0.1:8081/apis/ccompat/v7}"
PG="${BENCH_PG:-postgres://bank:bank@127.0.0.1:5432}"
run="benchtable$(date +%s)"
work="$(mktemp -d)"
trap 'rm -rf "$work"; psql "$PG/bank" -qAtX -c "DROP DATABASE IF EXISTS $run" >/dev/null 2>&1 || true' EXIT
psql "$PG/bank" -qAtX -v ON_ERROR_STOP=1 -c "CREATE DATABASE $run"

seconds_since() { awk -v s="$1" -v e="$(date +%s.%N)" 'BEGIN { printf "%.3f", e - s }'; }
rate() { awk -v n="$1" -v s="$2" 'BEGIN { printf "%.0f", n / s }'; }

echo "== generate --into-database: $N transactions over $ACCOUNTS accounts"
start="$(date +%s.%N)"
./target/release/producer generate --into-database "$PG/$run" --customers "$ACCOUNTS" --count "$N" \
  --seed 5 --silent 2>&1 | grep -E '^rows:'
generated="$(seconds_since "$start")"
echo "   $generated s = $(rate "$N" "$generated") rows/s inserted"

echo "== COPY TO STDOUT of the same rows, in the source's order"
start="$(date +%s.%N)"
copied="$(psql "$PG/$run" -qAtX -c "COPY (SELECT * FROM source_transactions ORDER BY updated_at, id) TO STDOUT" | wc -l)"
copy_s="$(seconds_since "$start")"
echo "   $copied rows in $copy_s s = $(rate "$copied" "$copy_s") rows/s"

echo "== producer table, from process start until caught up"
start="$(date +%s.%N)"
/usr/bin/time -f "%U %S %M" -o "$work/time" ./target/release/producer table \
  --database-url "$PG/$run" -b "$BOOTSTRAP" -s "$REGISTRY" \
  -t "$run.transactions" --customers-topic "$run.customers" --http-addr 127.0.0.1:0 \
  --state-file "$work/position.json" --stop-when-caught-up --silent 2>"$work/err" || { cat "$work/err" >&2; exit 1; }
table_s="$(seconds_since "$start")"
grep -E '^table ' "$work/err" | sed 's/^/   /'
read -r user sys rss <"$work/time"
table_rate="$(rate "$N" "$table_s")"
printf '   %s rows in %s s = %s rows/s; CPU %.2f s; peak RSS %d MiB\n' \
  "$N" "$table_s" "$table_rate" "$(awk -v u="$user" -v s="$sys" 'BEGIN { print u + s }')" "$((rss / 1024))"

echo
printf '%-44s %12s\n' "" "rows/s"
printf '%-44s %12s\n' "COPY ... TO STDOUT (no Kafka)" "$(rate "$copied" "$copy_s")"
printf '%-44s %12s\n' "producer table -> Kafka, from process start" "$table_rate"
awk -v t="$table_rate" 'BEGIN { printf "target: >= 50,000 rows/s from PostgreSQL: %s\n", (t >= 50000 ? "met" : "NOT met") }'
