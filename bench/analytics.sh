#!/usr/bin/env bash
# Analytics benchmark: `consumer summary` and `consumer limits` over 5,000,000 transactions, each
# in its own 256 MiB memory cgroup, checkpointing into PostgreSQL.
#
# 1. Pre-produce FIRST transactions (default 1,000,000) over ACCOUNTS accounts, 3 partitions.
# 2. Start both roles (release build) in their cgroups; wait until each has checkpointed every
#    offset; note their peak RSS: the baseline, measured in this run.
# 3. Produce the rest (default 4,000,000 more: 5,000,000 in all); wait again; note the peak RSS.
#    A role killed by the cgroup's OOM killer fails the benchmark.
# 4. SIGTERM both, start them again, and time until each answers with its whole state (the
#    summary's /summary counts every transaction; the watcher is ready and its /breaches is what
#    it was before the stop): the restart time, with nothing replayed.
# Memory must not grow with the number of transactions: the peak at 5M is printed beside the
# peak at 1M.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

TOTAL="${BENCH_ANALYTICS_RECORDS:-5000000}"
FIRST="${BENCH_ANALYTICS_FIRST:-1000000}"
ACCOUNTS="${BENCH_ACCOUNTS:-10000}"
LIMIT_MIB="${BENCH_MEMORY_MIB:-256}"
BOOTSTRAP="${KAFKA_BOOTSTRAP_SERVERS:-127.0.0.1:9092}"
REGISTRY="${SCHEMA_REGISTRY_URL:-http://127.0.0.1:8081/apis/ccompat/v7}"
PG="${BENCH_PG:-postgres://bank:bank@127.0.0.1:5432}"
run="bencha$(date +%s)"
db="${run}_analytics"
work="$(mktemp -d)"
poll_psql="$(ls /usr/lib/postgresql/*/bin/psql 2>/dev/null | sort -V | tail -n 1)"
poll_psql="${poll_psql:-psql}"
pids=()
cgroups=()
cleanup() {
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  for cg in "${cgroups[@]}"; do rmdir "$cg" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

# make_cgroup NAME: a memory cgroup limited to LIMIT_MIB (swap included), printed as a directory.
make_cgroup() {
  local bytes=$((LIMIT_MIB * 1024 * 1024)) dir
  if [[ -f /sys/fs/cgroup/cgroup.controllers ]] && grep -qw memory /sys/fs/cgroup/cgroup.controllers; then
    dir="/sys/fs/cgroup/$run-$1"
    mkdir "$dir"
    echo "$bytes" >"$dir/memory.max"
    [[ -f "$dir/memory.swap.max" ]] && echo 0 >"$dir/memory.swap.max"
  elif [[ -d /sys/fs/cgroup/memory ]]; then
    dir="/sys/fs/cgroup/memory/$run-$1"
    mkdir "$dir"
    echo "$bytes" >"$dir/memory.limit_in_bytes"
    [[ -f "$dir/memory.memsw.limit_in_bytes" ]] && echo "$bytes" >"$dir/memory.memsw.limit_in_bytes"
  else
    echo "no memory cgroup controller here (need root and cgroup v1 or v2)" >&2
    return 1
  fi
  cgroups+=("$dir")
  echo "$dir"
}

# start_role NAME PORT ARGS...: starts `consumer ARGS` inside cgroup NAME; sets ROLE_PID.
start_role() {
  local name="$1" port="$2"; shift 2
  local cg="$work/$name.cgroup"
  [[ -f "$cg" ]] || make_cgroup "$name" >"$cg"
  # The shell joins the cgroup, then becomes the consumer: it is limited from its first byte.
  CGROUP="$(cat "$cg")" bash -c 'echo $$ >"$CGROUP/cgroup.procs" && exec "$@"' _ \
    ./target/release/consumer "$@" -b "$BOOTSTRAP" -s "$REGISTRY" -t "$run.transactions" \
    --customers-topic "$run.customers" --database-url "$PG/$db" --http-addr "127.0.0.1:$port" \
    >>"$work/$name.out" 2>>"$work/$name.err" &
  ROLE_PID=$!
  pids+=("$ROLE_PID")
}

# wait_checkpointed GROUP COUNT PID: until GROUP's checkpoint covers COUNT offsets.
wait_checkpointed() {
  local group="$1" want="$2" pid="$3" name="$4" done=0 deadline=$((SECONDS + 1200))
  while ((done < want)); do
    sleep 0.5
    done="$("$poll_psql" "$PG/$db?sslmode=disable" -qAtX -c "SELECT COALESCE(SUM(next_offset), 0) FROM consumer_offsets WHERE group_id = '$group' AND topic = '$run.transactions'" 2>/dev/null || echo 0)"
    ((SECONDS < deadline)) || { echo "$name timed out at $done of $want" >&2; return 1; }
    if ! kill -0 "$pid" 2>/dev/null; then
      echo "$name exited early (killed by the cgroup's OOM killer?)" >&2
      tail -n 20 "$work/$name.err" >&2
      return 1
    fi
  done
}

peak_mib() { awk '/VmHWM/ {printf "%d", $2 / 1024}' "/proc/$1/status"; }

produce() {
  ./target/release/producer generate -b "$BOOTSTRAP" -s "$REGISTRY" \
    -t "$run.transactions" --customers-topic "$run.customers" --branches 3 \
    --customers "$ACCOUNTS" --count "$1" --seed "$2" --silent 2>&1 | grep -E '^(throughput|summary)'
}

psql "$PG/bank" -qAtX -v ON_ERROR_STOP=1 -c "CREATE DATABASE $db"
summary_port="$(free_port)"
limits_port="$(free_port)"
summary_args=(summary -g "$run-summary" --every-ms 1000)
limits_args=(limits -g "$run-limits" --limit -5000.00 --alerts-topic "$run.alerts")

echo "== pre-producing $FIRST transactions over $ACCOUNTS accounts (3 partitions)"
produce "$FIRST" 5
echo "== summary and limits, each in a ${LIMIT_MIB} MiB memory cgroup, checkpointing into PostgreSQL"
start=$(date +%s.%N)
start_role summary "$summary_port" "${summary_args[@]}"; summary_pid=$ROLE_PID
start_role limits "$limits_port" "${limits_args[@]}"; limits_pid=$ROLE_PID
wait_checkpointed "$run-summary" "$FIRST" "$summary_pid" summary
wait_checkpointed "$run-limits" "$FIRST" "$limits_pid" limits
first_time=$(awk -v s="$start" -v e="$(date +%s.%N)" 'BEGIN { printf "%.1f", e - s }')
summary_first="$(peak_mib "$summary_pid")"
limits_first="$(peak_mib "$limits_pid")"
echo "   $FIRST caught up in $first_time s; peak RSS summary $summary_first MiB, limits $limits_first MiB"

rest=$((TOTAL - FIRST))
echo "== producing $rest more ($TOTAL in all)"
produce "$rest" 6
start=$(date +%s.%N)
wait_checkpointed "$run-summary" "$TOTAL" "$summary_pid" summary
wait_checkpointed "$run-limits" "$TOTAL" "$limits_pid" limits
rest_time=$(awk -v s="$start" -v e="$(date +%s.%N)" 'BEGIN { printf "%.1f", e - s }')
summary_total="$(peak_mib "$summary_pid")"
limits_total="$(peak_mib "$limits_pid")"
breaches_before="$(curl -fsS "http://127.0.0.1:$limits_port/breaches")"
echo "   caught up $rest more in $rest_time s"

echo "== restart: SIGTERM both, start again, time until each serves its whole state"
kill -TERM "$summary_pid" "$limits_pid"
wait "$summary_pid" || { echo "summary did not stop cleanly" >&2; exit 1; }
wait "$limits_pid" || { echo "limits did not stop cleanly" >&2; exit 1; }
start=$(date +%s.%N)
start_role summary "$summary_port" "${summary_args[@]}"; summary_pid=$ROLE_PID
start_role limits "$limits_port" "${limits_args[@]}"; limits_pid=$ROLE_PID
summary_ready="" limits_ready="" deadline=$((SECONDS + 300))
while [[ -z "$summary_ready" || -z "$limits_ready" ]]; do
  sleep 0.1
  now=$(date +%s.%N)
  if [[ -z "$summary_ready" ]] &&
    curl -fsS "http://127.0.0.1:$summary_port/summary" 2>/dev/null |
    python3 -c 'import json, sys; s = json.load(sys.stdin); sys.exit(0 if s["deposits"]["count"] + s["withdrawals"]["count"] == int(sys.argv[1]) else 1)' "$TOTAL" 2>/dev/null; then
    summary_ready=$(awk -v s="$start" -v e="$now" 'BEGIN { printf "%.2f", e - s }')
  fi
  if [[ -z "$limits_ready" ]] && curl -fsS "http://127.0.0.1:$limits_port/readyz" >/dev/null 2>&1 &&
    [[ "$(curl -fsS "http://127.0.0.1:$limits_port/breaches")" == "$breaches_before" ]]; then
    limits_ready=$(awk -v s="$start" -v e="$now" 'BEGIN { printf "%.2f", e - s }')
  fi
  ((SECONDS < deadline)) || { echo "restart not complete within 300 s" >&2; exit 1; }
done
counted="$(psql "$PG/$db" -qAtX -c "SELECT group_id, COUNT(*) FROM role_counted GROUP BY 1 ORDER BY 1" | tr '\n' ' ')"

echo
printf 'transactions             %d (%d accounts), caught up at %.0f tx/s after the first %d\n' \
  "$TOTAL" "$ACCOUNTS" "$(awk -v n="$rest" -v t="$rest_time" 'BEGIN { print n / t }')" "$FIRST"
printf 'summary peak RSS         %4d MiB at %d, %4d MiB at %d (limit %d MiB)\n' "$summary_first" "$FIRST" "$summary_total" "$TOTAL" "$LIMIT_MIB"
printf 'limits peak RSS          %4d MiB at %d, %4d MiB at %d (limit %d MiB)\n' "$limits_first" "$FIRST" "$limits_total" "$TOTAL" "$LIMIT_MIB"
printf 'restart to whole state   summary %s s, limits %s s (nothing replayed)\n' "$summary_ready" "$limits_ready"
echo "counted ids per group    $counted"
