#!/usr/bin/env bash
# Consumer benchmark: the ledger against PostgreSQL's own COPY of the same rows.
#
# 1. Pre-produce N transactions over ACCOUNTS accounts to a fresh 3-partition topic.
# 2. Time `consumer ledger` (release build, as users run it: tuple log on, written to a file)
#    from process start until every transaction's offset is committed in PostgreSQL.
# 3. The same with --no-tuple-log, to show what the log costs.
# 4. COPY the persisted rows into an empty copy of the transactions table (same columns,
#    primary key, indexes and foreign key to customers): the physical limit of this machine
#    for the same table. Also without the foreign key, the bare bulk-load ceiling.
# 5. Large records: LARGE transactions with 8 KiB descriptions (BENCH_LARGE, default 100,000)
#    through the same ledger; its peak RSS must stay within 20% of step 2's (the byte budget
#    of batches and of records in flight, --max-batch-bytes, is what bounds it).
# Prints rows/s for each, the ratios, the consumer's peak RSS, and the CPU seconds spent by
# the consumer and by PostgreSQL (what limits it), and the ledger's rate once running (from the
# first rows committed: without process start, group join and customers, as bench-peers counts
# it). Targets: >= 85% of COPY (performance issue), peak RSS <= 64 MiB, 8 KiB within 20%.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

N="${BENCH_RECORDS:-1000000}"
LARGE="${BENCH_LARGE:-100000}"
ACCOUNTS="${BENCH_ACCOUNTS:-10000}"
# Unset: the consumer's own defaults (--batch-size, --writers), as users run it.
BATCH="${BENCH_BATCH:-}"
WRITERS="${BENCH_WRITERS:-}"
tuning=()
[[ -n "$BATCH" ]] && tuning+=(--batch-size "$BATCH")
[[ -n "$WRITERS" ]] && tuning+=(--writers "$WRITERS")
BOOTSTRAP="${KAFKA_BOOTSTRAP_SERVERS:-127.0.0.1:9092}"
REGISTRY="${SCHEMA_REGISTRY_URL:-http://127.0.0.1:8081/apis/ccompat/v7}"
PG="${BENCH_PG:-postgres://bank:bank@127.0.0.1:5432}"
run="bench$(date +%s)"
work="$(mktemp -d)"
psql_bank() { psql "$PG/bank" -qAtX -v ON_ERROR_STOP=1 "$@"; }
# The progress poll runs every 0.2 s: call the client binary itself, not Debian's Perl wrapper,
# and skip TLS, so that polling does not take CPU from what is measured.
poll_psql="$(ls /usr/lib/postgresql/*/bin/psql 2>/dev/null | sort -V | tail -n 1)"
poll_psql="${poll_psql:-psql}"

echo "== pre-producing $N transactions over $ACCOUNTS accounts (3 partitions)"
./target/release/producer generate -b "$BOOTSTRAP" -s "$REGISTRY" \
  -t "$run.transactions" --customers-topic "$run.customers" --branches 3 \
  --customers "$ACCOUNTS" --count "$N" --seed 3 --silent 2>&1 | grep -E '^(throughput|summary)'

# cpu_seconds PID...: user+system CPU seconds of the given processes so far.
cpu_seconds() {
  local total=0 pid
  for pid in "$@"; do
    [[ -r "/proc/$pid/stat" ]] || continue
    total=$((total + $(awk '{print $14 + $15}' "/proc/$pid/stat")))
  done
  awk -v t="$total" -v hz="$(getconf CLK_TCK)" 'BEGIN { printf "%.1f", t / hz }'
}

# ledger_run NAME EXTRA_FLAGS...: times one ledger run of $count transactions from the topics
# $topics.* into a fresh database; prints rows/s, keeps the peak RSS (KiB) in $work/NAME.rss.
topics="$run"
count="$N"
ledger_run() {
  local name="$1"; shift
  local N="$count"
  local db="${run}_${name}"
  psql_bank -c "CREATE DATABASE $db"
  local pg_before; pg_before="$(cpu_seconds $(pgrep -x postgres))"
  local start; start="$(date +%s.%N)"
  ./target/release/consumer ledger -b "$BOOTSTRAP" -s "$REGISTRY" \
    -t "$topics.transactions" --customers-topic "$topics.customers" -g "$db" \
    --database-url "$PG/$db" --http-addr 127.0.0.1:0 "${tuning[@]}" "$@" \
    >"$work/$name.out" 2>"$work/$name.err" &
  local pid=$!
  local deadline=$((SECONDS + 900)) committed=0 first_at="" first_n=0
  while ((committed < N)); do
    sleep 0.2
    committed="$("$poll_psql" "$PG/$db?sslmode=disable" -qAtX -c "SELECT COALESCE(SUM(next_offset), 0) FROM consumer_offsets WHERE topic = '$topics.transactions'" 2>/dev/null || echo 0)"
    # "Once running": from the first poll that sees rows committed, past the start-up (process
    # start, group join, the customers), as bench-peers counts it.
    if [[ -z "$first_at" ]] && ((committed > 0)); then
      first_at="$(date +%s.%N)" first_n="$committed"
    fi
    ((SECONDS < deadline)) || { echo "timed out at $committed of $N" >&2; kill "$pid"; return 1; }
    kill -0 "$pid" 2>/dev/null || { echo "ledger exited early" >&2; cat "$work/$name.err" >&2; return 1; }
  done
  local end; end="$(date +%s.%N)"
  local rss; rss="$(awk '/VmHWM/ {print $2}' "/proc/$pid/status")"
  echo "$rss" >"$work/$name.rss"
  local consumer_cpu; consumer_cpu="$(cpu_seconds "$pid")"
  local pg_after; pg_after="$(cpu_seconds $(pgrep -x postgres))"
  kill -TERM "$pid"; wait "$pid" || true
  local rows; rows="$(psql "$PG/$db" -qAtX -c 'SELECT COUNT(*) FROM transactions')"
  [[ "$rows" == "$N" ]] || { echo "expected $N rows, found $rows" >&2; return 1; }
  awk -v n="$N" -v s="$start" -v e="$end" -v rss="$rss" -v c="$consumer_cpu" -v p0="$pg_before" -v p1="$pg_after" -v name="$name" \
    'BEGIN { t = e - s; printf "%-26s %9.0f rows/s  (%.2f s, peak RSS %d MiB, CPU: consumer %.1f s, postgres %.1f s)\n", name, n / t, t, rss / 1024, c, p1 - p0; print n / t > "/dev/stderr" }' 2>"$work/$name.rate"
  # Once running; the start-up is 0 when the first poll already saw every row.
  awk -v n="$N" -v f="$first_n" -v s="$first_at" -v e="$end" \
    'BEGIN { t = e - s; print (t > 0 && n > f) ? (n - f) / t : 0 }' >"$work/$name.steady"
  LAST_DB="$db"
}

echo "== consumer ledger, tuple log on (to a file), ${tuning[*]:-default batch size and writers}"
ledger_run "ledger_tuple_log" --tuple-log "$work/tuples.log"
with_log="$(cat "$work/ledger_tuple_log.rate")"
with_log_steady="$(cat "$work/ledger_tuple_log.steady")"
echo "   tuple log: $(wc -l <"$work/tuples.log") lines"
echo "== consumer ledger, --no-tuple-log"
ledger_run "ledger_no_log" --no-tuple-log
without_log="$(cat "$work/ledger_no_log.rate")"

echo "== PostgreSQL COPY of the same $N rows into an empty copy of the table"
psql "$PG/$LAST_DB" -qAtX -c "\\copy (SELECT * FROM transactions) TO '$work/rows.csv' WITH (FORMAT csv)"
# copy_run NAME FOREIGN_KEY(yes|no): COPYs the rows into a fresh copy of the table; prints rows/s.
copy_run() {
  local table="transactions_$1"
  psql "$PG/$LAST_DB" -qAtX -c "CREATE TABLE $table (LIKE transactions INCLUDING ALL)"
  if [[ "$2" == yes ]]; then
    psql "$PG/$LAST_DB" -qAtX -c "ALTER TABLE $table ADD FOREIGN KEY (account_number) REFERENCES customers (account_number)"
  fi
  local start; start="$(date +%s.%N)"
  psql "$PG/$LAST_DB" -qAtX -c "\\copy $table FROM '$work/rows.csv' WITH (FORMAT csv)"
  local end; end="$(date +%s.%N)"
  awk -v n="$N" -v s="$start" -v e="$end" 'BEGIN { print n / (e - s) }'
}
copy_rate="$(copy_run copy yes)"
printf '%-26s %9.0f rows/s\n' "COPY (same table)" "$copy_rate"
copy_bare_rate="$(copy_run copy_bare no)"
printf '%-26s %9.0f rows/s\n' "COPY (no foreign key)" "$copy_bare_rate"

echo "== large records: $LARGE transactions with 8 KiB descriptions, tuple log on"
./target/release/producer generate -b "$BOOTSTRAP" -s "$REGISTRY" \
  -t "$run-large.transactions" --customers-topic "$run-large.customers" --branches 3 \
  --customers "$ACCOUNTS" --count "$LARGE" --seed 4 --description-bytes 8192 --silent 2>&1 | grep -E '^(throughput|summary)'
topics="$run-large" count="$LARGE" ledger_run "ledger_8k_descriptions" --tuple-log "$work/tuples-large.log"
ordinary_rss="$(cat "$work/ledger_tuple_log.rss")"
large_rss="$(cat "$work/ledger_8k_descriptions.rss")"

echo
awk -v o="$ordinary_rss" -v l="$large_rss" 'BEGIN {
  printf "peak RSS, ordinary records    %4d MiB (target: <= 64 MiB at full throughput)\n", o / 1024
  printf "peak RSS, 8 KiB descriptions %4d MiB vs %d MiB with ordinary ones: %+.1f%% (target: within 20%%)\n", l / 1024, o / 1024, 100 * (l - o) / o
}'
awk -v a="$with_log" -v b="$without_log" -v c="$copy_rate" -v d="$copy_bare_rate" -v r="$with_log_steady" 'BEGIN {
  printf "ledger (tuple log on)      %9.0f rows/s   %5.1f%% of COPY   (from process start; target: >= 85%%)\n", a, 100 * a / c
  printf "  once running             %9.0f rows/s   %5.1f%% of COPY   (from the first rows committed)\n", r, 100 * r / c
  printf "ledger (tuple log off)     %9.0f rows/s   %5.1f%% of COPY   tuple log costs %.1f%%\n", b, 100 * b / c, 100 * (1 - a / b)
  printf "COPY (same table)          %9.0f rows/s\n", c
  printf "COPY (no foreign key)      %9.0f rows/s   ledger with tuple log = %.1f%% of it\n", d, 100 * a / d
}'
rm -rf "$work"
