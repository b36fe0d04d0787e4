#!/usr/bin/env bash
# `make demo-connect`: the seed's Kafka Connect + ksqlDB pipeline with our two binaries, end to
# end, with a verdict.
#
#   generate --into-database -> PostgreSQL tables -> producer table (x2: customers, transactions)
#     -> Kafka -> consumer ledger (PostgreSQL) + consumer lake (Parquet) + consumer view
#
# The generator writes 20 customers and 1,500 transactions (seed 42) while the sources, the
# ledger and the lake already run, so rows stream through as they are inserted. Then three
# reconciliations against the generator's manifest (rows the database confirmed): the source
# table, the ledger (`consumer reconcile`) and the lake (read by DuckDB). Exit 0 only if all match.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

bash dev/stack.sh up >/dev/null
cargo build -q -p producer -p consumer
PG="${DEMO_PG:-postgres://bank:bank@127.0.0.1:5432}"
PY="${PYTHON:-tests/interop/.venv/bin/python}"
run="democonnect$(date +%s)"
dir="dev/.stack/demo-connect/$run"
mkdir -p "$dir"
db="$PG/$run"
manifest="$dir/manifest.json"
psql "$PG/bank" -qAtX -v ON_ERROR_STOP=1 -c "CREATE DATABASE $run"
topics=(-t "$run.transactions" --customers-topic "$run.customers")

pids=()
stop_all() {
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  pids=()
}
trap stop_all EXIT

echo "== source tables in $run (created by the generator's first rows)"
./target/debug/producer generate --into-database "$db" --customers 20 --count 0 --seed 42 --silent 2>/dev/null

echo "== producer table: source_customers and source_transactions -> Kafka (poll 500 ms)"
for table in customers transactions; do
  ./target/debug/producer table --database-url "$db" --table "source_$table" --events "$table" \
    "${topics[@]}" --state-file "$dir/$table.position.json" --rejects "$dir/$table.rejects.jsonl" \
    --http-addr 127.0.0.1:0 --silent 2>"$dir/table-$table.log" &
  pids+=($!)
done

echo "== consumer ledger -> $run (PostgreSQL), consumer lake -> $dir/lake (Parquet)"
./target/debug/consumer ledger "${topics[@]}" -g "$run-ledger" --database-url "$db" \
  --http-addr 127.0.0.1:0 --tuple-log "$dir/tuples.log" 2>"$dir/ledger.log" &
pids+=($!)
./target/debug/consumer lake "${topics[@]}" -g "$run-lake" --lake "$dir/lake" \
  --flush-interval-ms 1000 --http-addr 127.0.0.1:0 2>"$dir/lake.log" &
pids+=($!)

echo "== generate --into-database: 1,500 transactions over 20 customers at 1,000 rows/s"
./target/debug/producer generate --into-database "$db" --customers 20 --count 1500 --seed 42 \
  --rate 1000 --silent --manifest "$manifest" 2>&1 | grep '^rows:'

echo "== consumer view (ksqlDB's select ... emit changes), the first 8 withdrawals over 1,000.00"
./target/debug/consumer view "${topics[@]}" --from earliest --limit 8 \
  --columns account_number,kind,amount,transaction_datetime --where kind=withdrawal \
  --where 'amount>1000.00' --time-format 'yyyy-MM-dd HH:mm:ss.SSS' --idle-timeout-secs 60 2>/dev/null

echo
echo "== reconciliation 1: the source table against the manifest"
"$PY" - "$manifest" "$db" <<'PY'
import json, subprocess, sys
from decimal import Decimal
manifest = json.load(open(sys.argv[1]))["accounts"]
rows = subprocess.run(["psql", sys.argv[2], "-qAtX", "-F", ",", "-c",
    "SELECT account_number, count(*), sum(CASE WHEN kind = 'withdrawal' THEN -amount ELSE amount END) * 100 "
    "FROM source_transactions GROUP BY 1"], check=True, capture_output=True, text=True).stdout.split()
table = {a: (int(n), int(Decimal(s))) for a, n, s in (r.split(",") for r in rows)}
expected = {a: (t["transactions"], t["sum_cents"]) for a, t in manifest.items()}
print(f"   {len(expected)} accounts: {sum(table.get(a) == v for a, v in expected.items())} match")
sys.exit(0 if table == expected else 1)
PY

echo "== reconciliation 2: the ledger against the manifest"
./target/debug/consumer reconcile --manifest "$manifest" --database-url "$db" --wait-secs 120 >"$dir/reconcile.txt"
tail -n 1 "$dir/reconcile.txt" | sed 's/^/   /'

echo "== reconciliation 3: the lake (read by DuckDB) against the manifest"
"$PY" - "$manifest" "$dir/lake" <<'PY'
import json, subprocess, sys, time
expected = {a: (t["transactions"], t["sum_cents"]) for a, t in json.load(open(sys.argv[1]))["accounts"].items()}
total = sum(n for n, _ in expected.values())
deadline = time.time() + 120
while True:
    found = json.loads(subprocess.run([sys.executable, "tests/lake/check.py", sys.argv[2]], check=True,
                                      capture_output=True, text=True).stdout)
    if found["rows"] >= total or time.time() > deadline:
        break
    time.sleep(1)
lake = {a: (v["transactions"], v["sum_cents"]) for a, v in found["accounts"].items()}
print(f"   {found['rows']} rows, {found['distinct']} distinct ids in {found['dates']} dates; "
      f"{len(expected)} accounts: {sum(lake.get(a) == v for a, v in expected.items())} match")
sys.exit(0 if lake == expected and found["rows"] == found["distinct"] == total else 1)
PY
stop_all
echo
echo "demo-connect: source table, ledger and lake all equal the generator's manifest ($dir)"
