#!/usr/bin/env bash
# `make demo`: the whole pipeline natively, end to end, with a verdict.
#
# Starts the native stack, produces 1000 transactions over 20 customers (seed 42) to topics of
# this run, runs the ledger until it has caught up while its (account_number, sum(amount)) tuples
# scroll by, then prints a reconciliation table (expected sum from the producer's manifest,
# persisted balance, match). Exit status 0 only if every account matches.
# Database: an embedded SQLite file of this run, or DATABASE_URL (e.g. the stack's PostgreSQL).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

bash dev/stack.sh up >/dev/null
cargo build -q -p producer -p consumer
run="demo.$(date +%s)"
dir="dev/.stack/demo"
mkdir -p "$dir"
database="${DATABASE_URL:-sqlite://$PWD/$dir/$run.db}"
manifest="$dir/$run.manifest.json"

echo "== producing 1000 transactions over 20 customers (seed 42) to $run.*"
./target/debug/producer generate -t "$run.transactions" --customers-topic "$run.customers" \
  --customers 20 --count 1000 --seed 42 --silent --manifest "$manifest"

echo "== consuming into ${database%%\?*}: (account_number, sum(amount)) as each transaction lands"
./target/debug/consumer ledger -t "$run.transactions" --customers-topic "$run.customers" \
  -g "$run" --database-url "$database" --http-addr 127.0.0.1:0 --tuple-log - &
ledger=$!
trap 'kill -TERM $ledger 2>/dev/null || true' EXIT
status=0
./target/debug/consumer reconcile --manifest "$manifest" --database-url "$database" --wait-secs 120 >"$dir/$run.reconcile" || status=$?
kill -TERM "$ledger"; wait "$ledger" 2>/dev/null || true
trap - EXIT
echo
echo "== reconciliation: producer manifest vs. persisted balances"
cat "$dir/$run.reconcile"
exit "$status"
