#!/usr/bin/env bash
# PostgreSQL from Debian's packages, as a cluster of its own ("bankstream") whose data directory is
# under the stack folder, managed with pg_ctlcluster. Creates role $PG_USER and database
# $PG_DATABASE. Usage: postgres.sh up|down|status|clean
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

DATA="$STACK_DIR/postgres/data"

pg_version() {
  ls /usr/lib/postgresql 2>/dev/null | sort -V | tail -n 1
}

install_server() {
  if [[ -n "$(pg_version)" ]] && command -v pg_ctlcluster >/dev/null; then return 0; fi
  log "installing PostgreSQL from Debian packages"
  [[ "$(id -u)" == 0 ]] || die "PostgreSQL is not installed; run: sudo apt-get install -y postgresql"
  apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null \
    || die "apt-get install postgresql failed"
}

cluster_exists() { pg_lsclusters -h 2>/dev/null | awk '{print $1" "$2}' | grep -qx "$(pg_version) $PG_CLUSTER"; }
cluster_online() { pg_lsclusters -h 2>/dev/null | awk -v c="$PG_CLUSTER" '$2==c {print $4}' | grep -q online; }

psql_admin() { runuser -u postgres -- psql -p "$PG_PORT" -h /var/run/postgresql -v ON_ERROR_STOP=1 -qAt "$@"; }

cluster_data_dir() { pg_lsclusters -h 2>/dev/null | awk -v c="$PG_CLUSTER" '$2==c {print $6}'; }

up() {
  install_server
  local version; version="$(pg_version)"
  # The cluster is registered machine-wide; if it belongs to another checkout (or its data was
  # deleted), replace it with one whose data lives in this checkout's stack folder.
  if cluster_exists && [[ "$(cluster_data_dir)" != "$DATA" || ! -f "$DATA/PG_VERSION" ]]; then
    log "cluster '$PG_CLUSTER' points at $(cluster_data_dir); recreating it in $DATA"
    cluster_online && pg_ctlcluster "$version" "$PG_CLUSTER" stop -m fast || true
    pg_dropcluster "$version" "$PG_CLUSTER" || die "pg_dropcluster failed"
  fi
  if ! cluster_exists; then
    log "creating PostgreSQL $version cluster '$PG_CLUSTER' in $DATA"
    mkdir -p "$(dirname "$DATA")"
    chown postgres:postgres "$(dirname "$DATA")"
    pg_createcluster "$version" "$PG_CLUSTER" -p "$PG_PORT" -d "$DATA" --start-conf=manual \
      -- --auth-local=peer --auth-host=scram-sha-256 >"$STACK_DIR/logs/postgres-create.log" 2>&1 \
      || { show_log_tail create "$STACK_DIR/logs/postgres-create.log"; die "pg_createcluster failed"; }
    # Tests and benchmarks create throwaway databases; durability per commit is kept (fsync on).
    cat >>"/etc/postgresql/$version/$PG_CLUSTER/postgresql.conf" <<CONF
listen_addresses = '127.0.0.1'
max_connections = 200
shared_buffers = 512MB
CONF
  fi
  if ! cluster_online; then
    if port_open 127.0.0.1 "$PG_PORT"; then die "port $PG_PORT is taken by another process (another PostgreSQL cluster?); set PG_PORT"; fi
    log "starting PostgreSQL cluster '$PG_CLUSTER'"
    pg_ctlcluster "$version" "$PG_CLUSTER" start || die "pg_ctlcluster start failed; see /var/log/postgresql/"
  fi
  wait_until "postgres to accept connections" "$READY_TIMEOUT" bash -c "$(declare -f psql_admin); PG_PORT=$PG_PORT psql_admin -d postgres -c 'select 1' >/dev/null 2>&1" \
    || die "PostgreSQL did not accept connections within ${READY_TIMEOUT}s"
  if [[ "$(psql_admin -d postgres -c "select 1 from pg_roles where rolname = '$PG_USER'")" != 1 ]]; then
    psql_admin -d postgres -c "create role \"$PG_USER\" login createdb password '$PG_PASSWORD'"
  fi
  if [[ "$(psql_admin -d postgres -c "select 1 from pg_database where datname = '$PG_DATABASE'")" != 1 ]]; then
    psql_admin -d postgres -c "create database \"$PG_DATABASE\" owner \"$PG_USER\""
  fi
  log "postgres ready: postgres://$PG_USER:***@127.0.0.1:$PG_PORT/$PG_DATABASE"
}

down() {
  [[ -n "$(pg_version)" ]] || return 0
  if cluster_exists && cluster_online; then
    log "stopping PostgreSQL cluster '$PG_CLUSTER'"
    pg_ctlcluster "$(pg_version)" "$PG_CLUSTER" stop -m fast
  fi
}

clean() {
  down
  if cluster_exists; then pg_dropcluster "$(pg_version)" "$PG_CLUSTER"; fi
}

case "${1:-}" in
  up) up ;;
  down) down ;;
  clean) clean ;;
  status) if cluster_exists && cluster_online; then echo "postgres: running, 127.0.0.1:$PG_PORT/$PG_DATABASE"; else echo "postgres: stopped"; fi ;;
  *) echo "usage: $0 up|down|status|clean" >&2; exit 2 ;;
esac
