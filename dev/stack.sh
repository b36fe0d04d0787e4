#!/usr/bin/env bash
# The native dev stack: Apache Kafka (KRaft), Apicurio Registry (Confluent-compatible API) and
# PostgreSQL, started as plain processes because these machines have no Docker engine.
# Usage: stack.sh up|down|status|env|clean
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

print_env() {
  cat <<ENV
export KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:$KAFKA_PORT
export SCHEMA_REGISTRY_URL=http://127.0.0.1:$REGISTRY_PORT/apis/ccompat/v7
export DATABASE_URL=postgres://$PG_USER:$PG_PASSWORD@127.0.0.1:$PG_PORT/$PG_DATABASE
ENV
}

case "${1:-}" in
  up)
    start=$SECONDS
    bash "$DEV_DIR/postgres.sh" up
    bash "$DEV_DIR/kafka.sh" up
    bash "$DEV_DIR/registry.sh" up
    log "stack up in $((SECONDS - start))s; the services and tests use these defaults:"
    print_env
    ;;
  down)
    bash "$DEV_DIR/registry.sh" down
    bash "$DEV_DIR/kafka.sh" down
    bash "$DEV_DIR/postgres.sh" down
    ;;
  status)
    bash "$DEV_DIR/kafka.sh" status
    bash "$DEV_DIR/registry.sh" status
    bash "$DEV_DIR/postgres.sh" status
    ;;
  env) print_env ;;
  clean)
    "$0" down
    bash "$DEV_DIR/postgres.sh" clean
    log "removing $STACK_DIR (the Maven cache in ~/.m2 is kept)"
    rm -rf "$STACK_DIR"
    ;;
  *) echo "usage: $0 up|down|status|env|clean" >&2; exit 2 ;;
esac
