#!/usr/bin/env bash
# Peer benchmark: our ledger against what users would pick instead, on the same stack and the
# same transactions, in one run.
#
# Why: bench/consumer.sh compares the ledger with COPY, the physical limit, but nobody replaces
# the ledger with COPY. The realistic alternatives are Kafka Connect with a JDBC sink (here the
# Debezium JDBC sink, from Maven Central, on Apache Kafka's own Connect runtime) and the consumer
# the tutorials teach (one INSERT and one commit per message, offsets auto-committed: the seed
# style, bench/peers_seed.py). This script measures all of them on N pre-produced transactions
# (BENCH_RECORDS, 200,000, over 10,000 accounts, 3 partitions), into the same table (the
# ledger's transactions table: same columns, primary key, indexes and foreign key to a loaded
# customers table), and then kills each one with SIGKILL mid-way and restarts it, to show what
# its delivery guarantee means for the rows. It prints one table, writes it as JSON and CSV
# (target/bench-peers/), and draws the chart (bench/peers_chart.py).
#
# Measured: rows/s from process start (JVM start for Connect) until all N rows are visible, and
# "once running" from the first visible row to the last; the process's CPU seconds and peak RSS
# (VmHWM); PostgreSQL's CPU seconds (every backend, so noisy). Progress is polled from outside:
# the ledger's consumer_offsets (committed with its rows, as bench/consumer.sh), COUNT(*) for
# the others (every 0.5 s). Connect reads a JSON-with-schema copy of the same transactions (no
# protobuf converter is on Maven Central), made untimed by bench/peers_to_json.py.
# Targets (reported, not enforced): ledger >= 3x Connect's steady rate with <= 1/10 of its CPU per
# row, >= 50x the seed-style consumer, >= 85% of COPY into the same table.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

N="${BENCH_RECORDS:-200000}"
ACCOUNTS="${BENCH_ACCOUNTS:-10000}"
SEED_SECONDS="${BENCH_SEED_SECONDS:-30}"    # the seed-style consumer's timed budget
SEED_SLICE="${BENCH_SEED_SLICE:-20000}"     # rows of its kill -9 run
CONNECT_BATCHES="${BENCH_CONNECT_BATCHES:-500 3000}"
STALL="${BENCH_STALL_SECONDS:-30}"          # no progress for this long after a restart: stopped
KILL_AT="${BENCH_KILL_PERCENT:-40}"         # kill -9 once this share of the rows is visible
BOOTSTRAP="${KAFKA_BOOTSTRAP_SERVERS:-127.0.0.1:9092}"
REGISTRY="${SCHEMA_REGISTRY_URL:-http://127.0.0.1:8081/apis/ccompat/v7}"
PG="${BENCH_PG:-postgres://bank:bank@127.0.0.1:5432}"
PG_HOSTPORT="${BENCH_PG_HOSTPORT:-127.0.0.1:5432}"
PG_USER="${BENCH_PG_USER:-bank}" PG_PASSWORD="${BENCH_PG_PASSWORD:-bank}"
PY="${VENV:-tests/interop/.venv}/bin/python"
OUT="${BENCH_PEERS_OUT:-target/bench-peers}"
CONNECT_HOME="$OUT/connect"
run="peers$(date +%s)"
work="$OUT/$run"
mkdir -p "$work"
started=()

# The progress poll runs often: the client binary itself, not Debian's Perl wrapper, and no TLS.
poll_psql="$(printf '%s\n' /usr/lib/postgresql/*/bin/psql | sort -V | tail -n 1)"
[[ -x "$poll_psql" ]] || poll_psql=psql

log() { printf '== %s\n' "$*" >&2; }
die() { printf 'bench-peers: %s\n' "$*" >&2; exit 1; }
psql_db() { local db="$1"; shift; psql "$PG/$db" -qAtX -v ON_ERROR_STOP=1 "$@"; }
now() { date +%s.%N; }

# Every process this script starts is killed on exit, whatever the exit.
cleanup() {
  local pid
  for pid in "${started[@]}"; do kill -9 "$pid" 2>/dev/null || true; done
  if [[ "${BENCH_KEEP:-0}" != 1 ]]; then
    for db in $(psql_db bank -c "SELECT datname FROM pg_database WHERE datname LIKE '${run}\\_%'" 2>/dev/null); do
      psql_db bank -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" 2>/dev/null || true
    done
  fi
}
trap cleanup EXIT

# cpu_seconds PID...: user+system CPU seconds of the given processes so far.
cpu_seconds() {
  local total=0 pid
  for pid in "$@"; do
    [[ -r "/proc/$pid/stat" ]] || continue
    total=$((total + $(awk '{print $14 + $15}' "/proc/$pid/stat" 2>/dev/null || echo 0)))
  done
  awk -v t="$total" -v hz="$(getconf CLK_TCK)" 'BEGIN { printf "%.2f", t / hz }'
}
# db_backend_cpu DB: CPU seconds so far of the PostgreSQL backends connected to DB (the
# contender's connections; not other databases', so another load on the server does not count).
db_backend_cpu() {
  local pids
  pids="$(psql_db "$1" -c "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()")"
  # shellcheck disable=SC2086 # one argument per pid
  cpu_seconds $pids
}
rss_kib() { awk '/VmHWM/ {print $2}' "/proc/$1/status" 2>/dev/null || echo 0; }

# stop PID: SIGTERM, up to 20 s for a clean exit, then SIGKILL.
stop() {
  local pid="$1" deadline=$((SECONDS + 20))
  kill -TERM "$pid" 2>/dev/null || return 0
  while kill -0 "$pid" 2>/dev/null && ((SECONDS < deadline)); do sleep 0.2; done
  kill -9 "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}

# --- Setup ---------------------------------------------------------------------------------

# install_connect: the worker's jars and the sink's plugin folder, from Maven Central (~/.m2),
# re-copied only when a pom changed.
install_connect() {
  local stamp="$CONNECT_HOME/.stamp" want
  want="$(cat bench/connect/pom.xml bench/connect/plugin/pom.xml)"
  [[ -f "$stamp" && "$(cat "$stamp")" == "$want" ]] && return 0
  log "resolving Kafka Connect and the Debezium JDBC sink from Maven Central (cached in ~/.m2)"
  rm -rf "$CONNECT_HOME"
  mkdir -p "$CONNECT_HOME/plugins"
  local abs; abs="$(cd "$CONNECT_HOME" && pwd)"
  mvn -q -B -f bench/connect/pom.xml dependency:copy-dependencies \
    -DoutputDirectory="$abs/libs" >"$CONNECT_HOME/mvn.log" 2>&1 || { tail -n 30 "$CONNECT_HOME/mvn.log" >&2; die "mvn failed (worker)"; }
  mvn -q -B -f bench/connect/plugin/pom.xml dependency:copy-dependencies \
    -DoutputDirectory="$abs/plugins/debezium-jdbc" >>"$CONNECT_HOME/mvn.log" 2>&1 || { tail -n 30 "$CONNECT_HOME/mvn.log" >&2; die "mvn failed (plugin)"; }
  # The worker's Jackson is the one to use: a second copy in the plugin breaks its ServiceLoader
  # ("Jdk8Module not a subtype"). Debezium's extra module (jsr310) links against the worker's.
  rm -f "$CONNECT_HOME"/plugins/debezium-jdbc/jackson-{annotations,core,databind}-*.jar
  printf '%s' "$want" >"$stamp"
}

produce() {
  log "pre-producing $N transactions over $ACCOUNTS accounts (3 partitions)"
  ./target/release/producer generate -b "$BOOTSTRAP" -s "$REGISTRY" \
    -t "$run.transactions" --customers-topic "$run.customers" --branches 3 \
    --customers "$ACCOUNTS" --count "$N" --seed 3 --silent 2>&1 | grep -E '^(throughput|summary)' >&2
}

# capture_schema DB: the ledger's tables (as its migrations made them) and its customers, to
# prepare the peers' databases; the transactions for COPY.
capture_schema() {
  pg_dump -s -t customers -t transactions "$PG/$1" >"$work/schema.sql"
  psql_db "$1" -c "\\copy customers TO '$work/customers.csv' WITH (FORMAT csv)"
  psql_db "$1" -c "\\copy (SELECT * FROM transactions) TO '$work/rows.csv' WITH (FORMAT csv)"
}

# new_db NAME [nopk]: a database with the ledger's customers and an empty transactions table
# (same columns, primary key, indexes, foreign key); with nopk, no primary key on
# transaction_id (the seeds' tables have a surrogate key and nothing unique on the id).
new_db() {
  local db="${run}_$1"
  psql_db bank -c "CREATE DATABASE $db"
  psql_db "$db" -f "$work/schema.sql" >/dev/null
  [[ "${2:-}" == nopk ]] && psql_db "$db" -c "ALTER TABLE transactions DROP CONSTRAINT transactions_pkey"
  psql_db "$db" -c "\\copy customers FROM '$work/customers.csv' WITH (FORMAT csv)"
  echo "$db"
}

# --- Progress ----------------------------------------------------------------------------

count_rows() { "$poll_psql" "$PG/$1?sslmode=disable" -qAtX -c 'SELECT COUNT(*) FROM transactions' 2>/dev/null || echo 0; }
count_distinct() { "$poll_psql" "$PG/$1?sslmode=disable" -qAtX -c 'SELECT COUNT(DISTINCT transaction_id) FROM transactions' 2>/dev/null || echo 0; }
count_committed() {
  "$poll_psql" "$PG/$1?sslmode=disable" -qAtX -c \
    "SELECT COALESCE(SUM(next_offset), 0) FROM consumer_offsets WHERE topic = '$run.transactions'" 2>/dev/null || echo 0
}
never_failed() { return 1; }

# watch PID PROGRESS_FN DB TARGET: polls PROGRESS_FN DB every WATCH_INTERVAL s until it reaches
# TARGET, or the process exits, or WATCH_FAILED PID says it gave up, or no row came within
# WATCH_FIRST_WAIT s, or no progress within WATCH_STALL s after one, or WATCH_BUDGET s passed.
# Sets W_STATUS (done, exited, failed, stalled, budget), W_ROWS, W_FIRST and W_FIRST_ROWS (the
# first poll that saw rows), W_END (the last progress), the process's CPU at the first progress
# (W_CPU_FIRST), and its CPU and peak RSS as of the last poll (W_CPU, W_RSS).
watch() {
  local pid="$1" progress="$2" db="$3" target="$4"
  local interval="${WATCH_INTERVAL:-0.5}" first_wait="${WATCH_FIRST_WAIT:-300}"
  local stall="${WATCH_STALL:-120}" budget="${WATCH_BUDGET:-900}" failed="${WATCH_FAILED:-never_failed}"
  local began; began="$(now)"
  # Progress counts from what is there already: after a restart, the rows written before it.
  local last; last="$("$progress" "$db")"
  local last_at="$began" rows t
  W_FIRST="" W_FIRST_ROWS=0 W_END="$began" W_ROWS="$last" W_STATUS="" W_CPU="" W_CPU_FIRST=""
  while [[ -z "$W_STATUS" ]]; do
    sleep "$interval"
    rows="$("$progress" "$db")" t="$(now)"
    if kill -0 "$pid" 2>/dev/null; then W_CPU="$(cpu_seconds "$pid")" W_RSS="$(rss_kib "$pid")"; fi
    if ((rows > last)); then
      [[ -z "$W_FIRST" ]] && W_FIRST="$t" W_FIRST_ROWS="$rows" W_CPU_FIRST="$W_CPU"
      W_END="$t" last="$rows" last_at="$t"
    fi
    W_ROWS="$rows"
    if ((rows >= target)); then W_STATUS="done"
    elif ! kill -0 "$pid" 2>/dev/null; then W_STATUS=exited
    elif "$failed" "$pid"; then W_STATUS=failed
    elif older "$began" "$budget" "$t"; then W_STATUS=budget
    elif [[ -z "$W_FIRST" ]] && older "$began" "$first_wait" "$t"; then W_STATUS=stalled
    elif [[ -n "$W_FIRST" ]] && older "$last_at" "$stall" "$t"; then W_STATUS=stalled
    fi
  done
}
# older SINCE SECONDS NOW: true when more than SECONDS passed from SINCE to NOW.
older() { awk -v s="$1" -v w="$2" -v t="$3" 'BEGIN { exit !(t - s > w) }'; }

# --- The contenders ------------------------------------------------------------------------

# start_ledger DB LABEL: the ledger with its defaults, tuple log on (to a file). Sets PID.
start_ledger() {
  ./target/release/consumer ledger -b "$BOOTSTRAP" -s "$REGISTRY" \
    -t "$run.transactions" --customers-topic "$run.customers" -g "$1" \
    --database-url "$PG/$1" --http-addr 127.0.0.1:0 --tuple-log "$work/$2.tuples" \
    >>"$work/$2.out" 2>>"$work/$2.err" &
  PID=$!
  started+=("$PID")
}

free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

# connect_config LABEL DB MODE BATCH: worker and connector properties in $work/LABEL/. The worker
# mirrors Kafka's shipped config/connect-standalone.properties (offset.flush.interval.ms=10000).
connect_config() {
  local dir="$work/$1" db="$2" mode="$3" batch="$4"
  mkdir -p "$dir"
  cat >"$dir/worker.properties" <<PROPS
bootstrap.servers=$BOOTSTRAP
key.converter=org.apache.kafka.connect.storage.StringConverter
value.converter=org.apache.kafka.connect.json.JsonConverter
value.converter.schemas.enable=true
offset.storage.file.filename=$dir/connect.offsets
offset.flush.interval.ms=10000
plugin.path=$(cd "$CONNECT_HOME/plugins" && pwd)
listeners=http://127.0.0.1:$(free_port)
connector.client.config.override.policy=All
PROPS
  cat >"$dir/sink.properties" <<PROPS
name=$run-$1
connector.class=io.debezium.connector.jdbc.JdbcSinkConnector
tasks.max=3
topics=$run.json
connection.url=jdbc:postgresql://$PG_HOSTPORT/$db
connection.username=$PG_USER
connection.password=$PG_PASSWORD
insert.mode=$mode
primary.key.mode=record_value
primary.key.fields=transaction_id
schema.evolution=none
collection.name.format=transactions
batch.size=$batch
consumer.override.max.poll.records=$batch
PROPS
  cat >"$dir/log4j2.properties" <<'PROPS'
status = warn
appender.console.type = Console
appender.console.name = STDOUT
appender.console.layout.type = PatternLayout
appender.console.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = info
rootLogger.appenderRef.stdout.ref = STDOUT
PROPS
}

# start_connect LABEL: a standalone worker with the label's sink, the JVM flags of Kafka's
# connect-standalone.sh (heap 256 MiB to 2 GiB, G1). Sets PID.
start_connect() {
  local dir="$work/$1"
  java -Xms256M -Xmx2G -server -XX:+UseG1GC -XX:MaxGCPauseMillis=20 \
    -XX:InitiatingHeapOccupancyPercent=35 -XX:+ExplicitGCInvokesConcurrent -Djava.awt.headless=true \
    -Dlog4j2.configurationFile="$dir/log4j2.properties" -cp "$CONNECT_HOME/libs/*" \
    org.apache.kafka.connect.cli.ConnectStandalone "$dir/worker.properties" "$dir/sink.properties" \
    >>"$dir/connect.log" 2>&1 &
  PID=$!
  started+=("$PID")
  CONNECT_URL="$(sed -n 's/^listeners=//p' "$dir/worker.properties")/connectors/$run-$1/status"
}

# connect_failed PID: every task of the sink is FAILED (Connect keeps the worker up, but a failed
# task stays stopped until someone restarts it). While one task runs, the stall bound decides.
connect_failed() {
  curl -s --max-time 1 "$CONNECT_URL" 2>/dev/null | python3 -c '
import json, sys
try:
    tasks = json.load(sys.stdin).get("tasks", [])
except ValueError:
    sys.exit(1)
sys.exit(0 if tasks and all(t["state"] == "FAILED" for t in tasks) else 1)'
}

# start_seed DB LABEL [MAX_OFFSET]: the seed-style consumer. Sets PID.
start_seed() {
  "$PY" bench/peers_seed.py run "$BOOTSTRAP" "postgresql+psycopg://$PG_USER:$PG_PASSWORD@$PG_HOSTPORT/$1" \
    "$run.transactions" "$1" "${@:3}" >>"$work/$2.out" 2>>"$work/$2.err" &
  PID=$!
  started+=("$PID")
}

# --- Runs ----------------------------------------------------------------------------------

# same_rows DB: yes when DB's transactions equal the ledger's, every column of every row.
same_rows() {
  local q="SELECT md5(string_agg(concat_ws('|', transaction_id, account_number, transaction_reference,
    transaction_datetime, kind, amount_cents, currency, branch_id, description, source_partition,
    source_offset), ',' ORDER BY transaction_id)) FROM transactions"
  [[ "$(psql_db "$1" -c "$q")" == "$(psql_db "$LEDGER_DB" -c "$q")" ]] && echo yes || echo no
}

# result NAME KIND ROWS T0 PG_CPU IDENTICAL NOTE: one line of results.tsv from the last watch.
result() {
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$4" "$W_FIRST" "$W_FIRST_ROWS" \
    "$W_END" "$W_CPU_FIRST" "$W_CPU" "$5" "$W_RSS" "$6" "$7" >>"$work/results.tsv"
  awk -v n="$3" -v s="$4" -v e="$W_END" -v c="$W_CPU" -v p="$5" -v r="$W_RSS" -v name="$1" 'BEGIN {
    printf "   %-22s %7d rows in %6.1f s: %8.0f rows/s, CPU %.1f s (PostgreSQL %.1f s), peak RSS %d MiB\n", name, n, e - s, n / (e - s), c, p, r / 1024
  }' >&2
}

timed_ledger() {
  log "ledger, defaults, tuple log on"
  LEDGER_DB="$(new_db_ledger ledger)"
  local t0; t0="$(now)"
  start_ledger "$LEDGER_DB" ledger
  WATCH_INTERVAL=0.2 watch "$PID" count_committed "$LEDGER_DB" "$N"
  [[ "$W_STATUS" == "done" ]] || die "ledger: $W_STATUS at $W_ROWS of $N (see $work/ledger.err)"
  result ledger ledger "$N" "$t0" "$(db_backend_cpu "$LEDGER_DB")" "-" ""
  stop "$PID"
}

# new_db_ledger NAME: an empty database; the ledger's migrations create its schema at start.
new_db_ledger() { local db="${run}_$1"; psql_db bank -c "CREATE DATABASE $db"; echo "$db"; }

# timed_copy: one psql session COPYs the rows, then reads its own backend's CPU seconds.
timed_copy() {
  log "PostgreSQL COPY of the same rows into the same table (empty, with its foreign key)"
  local db; db="$(new_db copy)"
  local t0; t0="$(now)"
  psql_db "$db" >/dev/null <<SQL
\\copy transactions FROM '$work/rows.csv' WITH (FORMAT csv)
SELECT pg_backend_pid() AS backend \\gset
\\setenv BACKEND :backend
\\! awk '{ print \$14 + \$15 }' "/proc/\$BACKEND/stat" >"$work/copy.ticks"
SQL
  W_FIRST="$t0" W_FIRST_ROWS=0 W_END="$(now)" W_CPU_FIRST="" W_CPU="" W_RSS=""
  local cpu; cpu="$(awk -v hz="$(getconf CLK_TCK)" '{ printf "%.2f", $1 / hz }' "$work/copy.ticks")"
  result copy copy "$(count_rows "$db")" "$t0" "$cpu" "$(same_rows "$db")" "one transaction, one backend"
}

timed_connect() {
  local mode="$1" batch="$2" label="connect_$1_$2"
  log "Kafka Connect standalone, Debezium JDBC sink, $mode mode, batch $batch"
  local db; db="$(new_db "$label")"
  connect_config "$label" "$db" "$mode" "$batch"
  local t0; t0="$(now)"
  start_connect "$label"
  WATCH_FAILED=connect_failed watch "$PID" count_rows "$db" "$N"
  if [[ "$W_STATUS" != "done" ]]; then
    echo "   $label: $W_STATUS at $W_ROWS of $N rows (see $work/$label/connect.log)" >&2
  fi
  local pg; pg="$(db_backend_cpu "$db")"
  stop "$PID"
  result "$label" "connect-$mode" "$W_ROWS" "$t0" "$pg" "$(same_rows "$db")" "$W_STATUS"
}

timed_seed() {
  log "seed-style consumer (SQLAlchemy, one INSERT + commit per message), for ${SEED_SECONDS}s"
  local db; db="$(new_db seed)"
  local t0; t0="$(now)"
  start_seed "$db" seed
  # The budget runs from process start: it counts start-up, as for the others.
  WATCH_BUDGET="$SEED_SECONDS" watch "$PID" count_rows "$db" "$N"
  local pg; pg="$(db_backend_cpu "$db")"
  stop "$PID"
  result seed seed "$W_ROWS" "$t0" "$pg" "-" "fixed budget of ${SEED_SECONDS}s"
}

# --- Kill -9 and restart -------------------------------------------------------------------

# crash_run NAME KIND DB TARGET PROGRESS_FN START_FN ARGS...: starts the contender, kills it
# with SIGKILL once KILL_AT% of TARGET is visible, starts it again, and waits until TARGET, its
# exit, or no progress (90 s for the first, a restart rejoins the group; STALL s after that).
# Appends the final row count and distinct transaction ids to crash.tsv.
crash_run() {
  local name="$1" kind="$2" db="$3" target="$4" progress="$5"; shift 5
  log "kill -9 at ${KILL_AT}% and restart: $name ($target rows)"
  "$@"
  WATCH_INTERVAL=0.2 watch "$PID" "$progress" "$db" $((target * KILL_AT / 100))
  local before="$W_STATUS" at_kill="$W_ROWS"
  kill -9 "$PID" 2>/dev/null || true
  wait "$PID" 2>/dev/null || true
  [[ "$before" == "done" ]] || echo "   $name: $before at $W_ROWS before the kill" >&2
  "$@"
  WATCH_FIRST_WAIT=90 WATCH_STALL="$STALL" watch "$PID" "$progress" "$db" "$target"
  local status="$W_STATUS"
  stop "$PID"
  local counts; counts="$(psql_db "$db" -c 'SELECT COUNT(*), COUNT(DISTINCT transaction_id) FROM transactions')"
  printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$name" "$kind" "$target" "$at_kill" "${counts%|*}" "${counts#*|}" \
    "$status$(crash_note "$name")" >>"$work/crash.tsv"
  echo "   $name: killed at $at_kill, after restart: $status, rows ${counts%|*}, distinct ${counts#*|} of $target" >&2
}

# crash_note NAME: what the contender's own log says about the restart, where it says something.
crash_note() {
  local logfile="$work/$1/connect.log"
  [[ -f "$logfile" ]] && grep -q 'duplicate key value violates unique constraint' "$logfile" && echo ": duplicate key"
  [[ -f "$work/$1.err" ]] && grep -q 'IntegrityError' "$work/$1.err" && echo ": IntegrityError"
  return 0
}

crash_ledger() {
  local db; db="$(new_db_ledger ledger_kill)"
  crash_run ledger_kill ledger "$db" "$N" count_committed start_ledger "$db" ledger_kill
}

crash_connect() {
  local mode="$1" label="connect_${1}_kill"
  local db; db="$(new_db "$label")"
  connect_config "$label" "$db" "$mode" 500
  WATCH_FAILED=connect_failed crash_run "$label" "connect-$mode" "$db" "$N" count_rows start_connect "$label"
}

# The seed-style consumer on a slice (the first SEED_SLICE/3 offsets of each partition), on a
# table without a primary key on transaction_id, like the seeds' own tables (a SERIAL id):
# what it duplicates shows as extra rows instead of a crash on the first duplicate.
crash_seed() {
  local per=$(((SEED_SLICE + 2) / 3))
  local target; target="$("$PY" bench/peers_seed.py slice "$BOOTSTRAP" "$run.transactions" "$per")"
  local db; db="$(new_db seed_kill nopk)"
  crash_run seed_kill seed "$db" "$target" count_distinct start_seed "$db" seed_kill "$per"
}

report() {
  python3 bench/peers_report.py "$work/results.tsv" "$work/crash.tsv" "$OUT/bench-peers" \
    "records=$N" "accounts=$ACCOUNTS" "seed_seconds=$SEED_SECONDS" "seed_slice=$SEED_SLICE" \
    "kill_percent=$KILL_AT" "stall_seconds=$STALL" "run=$run" "date=$(date -u +%Y-%m-%dT%H:%M:%SZ)"
  python3 bench/peers_chart.py "$OUT/bench-peers.json" "$OUT/bench-peers.svg"
  echo "results: $OUT/bench-peers.json, $OUT/bench-peers.csv, chart $OUT/bench-peers.svg; logs in $work"
}

main() {
  [[ -x target/release/producer && -x target/release/consumer ]] || die "release binaries missing: make release"
  [[ -x "$PY" ]] || die "$PY missing: make interop-env"
  install_connect
  produce
  timed_ledger
  capture_schema "$LEDGER_DB"
  log "copying the transactions to a JSON-with-schema topic for Connect (untimed)"
  "$PY" bench/peers_to_json.py "$BOOTSTRAP" "$run.transactions" "$run.json" "$N" >&2
  timed_copy
  local batch
  for batch in $CONNECT_BATCHES; do
    timed_connect insert "$batch"
    timed_connect upsert "$batch"
  done
  timed_seed
  crash_ledger
  crash_connect insert
  crash_connect upsert
  crash_seed
  rm -f "$work/rows.csv" "$work"/*.tuples
  report
}

main
