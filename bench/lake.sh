#!/usr/bin/env bash
# Lake benchmark: `consumer lake` writing 1M transactions from Kafka into local Parquet,
# beside DuckDB rewriting the same rows, read from the lake, into the same Hive layout (a
# mature, multi-threaded Parquet writer on the same disk, with no Kafka).
#
# 1. Pre-produce N transactions (BENCH_LAKE_RECORDS, default 1,000,000) over ACCOUNTS accounts.
# 2. Time `consumer lake` from process start until every record is taken and the SIGTERM that
#    follows has written the last open files (exit 0): rows/s, CPU, peak RSS, files.
# 3. DuckDB: COPY (SELECT * FROM the lake's transactions) TO a directory PARTITION_BY (dt).
# 4. The same lake run into tmpfs (/dev/shm), to show what the disk costs: every file is
#    created, fsynced and renamed into place.
# Target: >= 200,000 transactions/s to local Parquet.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

N="${BENCH_LAKE_RECORDS:-1000000}"
ACCOUNTS="${BENCH_ACCOUNTS:-10000}"
BOOTSTRAP="${KAFKA_BOOTSTRAP_SERVERS:-127.0.0.1:9092}"
REGISTRY="${SCHEMA_REGISTRY_URL:-http://127.0.0.1:8081/apis/ccompat/v7}"
PY="${PYTHON:-tests/interop/.venv/bin/python}"
run="benchlake$(date +%s)"
out="target/bench-lake"
# The previous run's lake is moved aside and deleted only at the end: ext4 makes creating a file
# slow for about half a minute after many deletions (its inode allocator skips recently freed
# inodes), which a lake in service never sees.
old="$out.old.$run"
[[ -d "$out" ]] && mv "$out" "$old"
mkdir -p "$out"
shm="/dev/shm/$run"
trap 'rm -rf "$shm" "$old"' EXIT
port=19094

echo "== pre-producing $N transactions over $ACCOUNTS accounts (3 partitions)"
./target/release/producer generate -b "$BOOTSTRAP" -s "$REGISTRY" \
  -t "$run.transactions" --customers-topic "$run.customers" --branches 3 \
  --customers "$ACCOUNTS" --count "$N" --seed 3 --silent 2>&1 | grep -E '^(throughput|summary)'
total=$((N + ACCOUNTS))

seconds_since() { awk -v s="$1" -v e="$(date +%s.%N)" 'BEGIN { printf "%.3f", e - s }'; }
rate() { awk -v n="$1" -v s="$2" 'BEGIN { printf "%.0f", n / s }'; }

# lake_run DIR: prints "seconds user+sys peak_MiB files running_rows/s" (the last from the
# first batch taken to the last, without start-up and the final SIGTERM).
lake_run() {
  local dir="$1" start pid taken=0 deadline=$((SECONDS + 600)) first_at="" first_taken=0
  start="$(date +%s.%N)"
  /usr/bin/time -f "%U %S %M" -o "$out/time" ./target/release/consumer lake -b "$BOOTSTRAP" -s "$REGISTRY" \
    -t "$run.transactions" --customers-topic "$run.customers" -g "$run-$(basename "$dir")" \
    --lake "$dir" --http-addr "127.0.0.1:$port" 2>"$out/lake.err" &
  pid=$!
  # Every record taken by the writer (rows gathered into open files), then SIGTERM: the stop
  # writes what is open, so the exit is the moment the last row is durable.
  while ((${taken%.*} < total)); do
    sleep 0.1
    taken="$(curl -s "127.0.0.1:$port/metrics" | awk '/^bank_batch_size_sum/ { print $2 }')"
    taken="${taken:-0}"
    if [[ -z "$first_at" && "${taken%.*}" -gt 0 ]]; then first_at="$(date +%s.%N)"; first_taken="${taken%.*}"; fi
    ((SECONDS < deadline)) || { echo "timed out" >&2; kill "$pid"; return 1; }
  done
  local running; running="$(rate "$((total - first_taken))" "$(seconds_since "$first_at")")"
  pkill -TERM -f "^./target/release/consumer lake .* -g $run-$(basename "$dir")"
  wait "$pid"
  local elapsed; elapsed="$(seconds_since "$start")"
  read -r user sys rss <"$out/time"
  echo "$elapsed $(awk -v u="$user" -v s="$sys" 'BEGIN { print u + s }') $((rss / 1024)) $(find "$dir" -name '*.parquet' | wc -l) $running"
}

echo "== consumer lake -> $out/lake (disk)"
read -r disk_s disk_cpu disk_rss disk_files disk_running < <(lake_run "$out/lake")
echo "   $disk_s s, CPU $disk_cpu s, peak RSS $disk_rss MiB, $disk_files files; $disk_running rows/s once running"
echo "== an independent reader (DuckDB) checks the lake"
"$PY" tests/lake/check.py "$out/lake" >"$out/check.json"
"$PY" - "$N" "$out/check.json" <<'PY'
import json, sys
r = json.load(open(sys.argv[2]))
print("   {rows} rows, {distinct} distinct ids, {dates} dates, {customers} customers".format(**r))
sys.exit(0 if r["rows"] == r["distinct"] == int(sys.argv[1]) else 1)
PY

echo "== DuckDB: the same rows rewritten into dt= partitions on the same disk"
duck_s="$("$PY" - "$out" <<'PY'
import sys, time, duckdb
out = sys.argv[1]
db = duckdb.connect()
start = time.time()
db.execute(f"COPY (SELECT * FROM read_parquet('{out}/lake/transactions/**/*.parquet', hive_partitioning = true)) "
           f"TO '{out}/duckdb' (FORMAT parquet, PARTITION_BY (dt))")
print(f"{time.time() - start:.3f}")
PY
)"
echo "   $duck_s s"

echo "== consumer lake -> tmpfs"
read -r shm_s shm_cpu shm_rss shm_files shm_running < <(lake_run "$shm")
echo "   $shm_s s, CPU $shm_cpu s, peak RSS $shm_rss MiB, $shm_files files; $shm_running rows/s once running"

echo
printf '%-58s %14s\n' "" "transactions/s"
printf '%-58s %14s\n' "DuckDB COPY ... PARTITION_BY (dt), same rows, same disk" "$(rate "$N" "$duck_s")"
printf '%-58s %14s\n' "consumer lake, from process start, disk" "$(rate "$N" "$disk_s")"
printf '%-58s %14s\n' "consumer lake, once running, disk" "$disk_running"
printf '%-58s %14s\n' "consumer lake, from process start, tmpfs" "$(rate "$N" "$shm_s")"
awk -v t="$disk_running" 'BEGIN { printf "target: >= 200,000 transactions/s to local Parquet (once running, disk): %s\n", (t >= 200000 ? "met" : "NOT met") }'
