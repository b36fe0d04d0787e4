#!/usr/bin/env bash
# Producer benchmark: our producer against Kafka's own ProducerPerformance, same broker, same run.
#
# 1. `producer generate` sends N transactions (protobuf, Confluent framing, registered schemas,
#    acks=all, idempotent) over ACCOUNTS accounts to a fresh 3-partition topic; it reports the
#    acknowledged rate of its send phase and the average value size.
# 2. ProducerPerformance (from the native stack's Kafka jars) sends N records of that same size
#    with acks=all to another fresh 3-partition topic.
# Prints both rates and the ratio. Target: ours >= 80% of Kafka's tool.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

N="${BENCH_RECORDS:-1000000}"
ACCOUNTS="${BENCH_ACCOUNTS:-10000}"
BOOTSTRAP="${KAFKA_BOOTSTRAP_SERVERS:-127.0.0.1:9092}"
REGISTRY="${SCHEMA_REGISTRY_URL:-http://127.0.0.1:8081/apis/ccompat/v7}"
LIBS="dev/.stack/kafka/libs"
run="bench.$(date +%s)"
[[ -d "$LIBS" ]] || { echo "Kafka jars not found in $LIBS: run make stack-up" >&2; exit 1; }

echo "== producer generate: $N transactions over $ACCOUNTS accounts, 3 partitions"
ours_log="$(mktemp)"
/usr/bin/time -f 'peak RSS %M KiB' ./target/release/producer generate \
  -b "$BOOTSTRAP" -s "$REGISTRY" -t "$run.transactions" --customers-topic "$run.customers" \
  --branches 3 --customers "$ACCOUNTS" --count "$N" --seed 1 --silent 2>&1 | tee "$ours_log" | grep -E 'throughput|summary|peak RSS'
ours_rate="$(sed -nE 's/.* = ([0-9]+) transactions\/s.*/\1/p' "$ours_log")"
size="$(sed -nE 's/.*average value ([0-9]+) bytes.*/\1/p' "$ours_log")"

echo "== Kafka ProducerPerformance: $N records of $size bytes, acks=all, 3 partitions"
java -cp "$LIBS/*" org.apache.kafka.tools.TopicCommand --bootstrap-server "$BOOTSTRAP" \
  --create --topic "$run.perf" --partitions 3 --replication-factor 1 >/dev/null
perf_log="$(mktemp)"
java -Xmx1g -cp "$LIBS/*" -Dlog4j2.level=warn org.apache.kafka.tools.ProducerPerformance \
  --topic "$run.perf" --num-records "$N" --record-size "$size" --throughput -1 \
  --producer-props bootstrap.servers="$BOOTSTRAP" acks=all 2>/dev/null | tee "$perf_log" | tail -n 1
perf_rate="$(tail -n 1 "$perf_log" | sed -nE 's/^[0-9]+ records sent, ([0-9.]+) records\/sec.*/\1/p')"

echo
printf '%-28s %12s\n' "producer generate" "$ours_rate/s"
printf '%-28s %12.0f/s\n' "Kafka ProducerPerformance" "$perf_rate"
awk -v a="$ours_rate" -v b="$perf_rate" 'BEGIN { printf "ratio ours/kafka            %11.0f%%  (target >= 80%%)\n", 100 * a / b }'
