#!/usr/bin/env bash
# The official postgres image's entrypoint, the part our deployments use, for the stand-in.
set -euo pipefail

secret() { # $1: variable name; prints its value or the contents of the file ${1}_FILE names
  local name="$1" file_name="${1}_FILE"
  if [[ -n "${!file_name:-}" ]]; then cat "${!file_name}"; else printf '%s' "${!name:-}"; fi
}

if [[ "$(id -u)" == 0 ]]; then
  mkdir -p "$PGDATA" /var/run/postgresql
  chown postgres:postgres "$PGDATA" /var/run/postgresql
  chmod 700 "$PGDATA"
  exec setpriv --reuid=postgres --regid=postgres --init-groups "$0" "$@"
fi

if [[ "${1:-}" != postgres ]]; then exec "$@"; fi

export POSTGRES_USER="${POSTGRES_USER:-postgres}" POSTGRES_DB="${POSTGRES_DB:-${POSTGRES_USER:-postgres}}"
if [[ ! -s "$PGDATA/PG_VERSION" ]]; then
  password="$(secret POSTGRES_PASSWORD)"
  [[ -n "$password" ]] || { echo "postgres: POSTGRES_PASSWORD or POSTGRES_PASSWORD_FILE must be set" >&2; exit 1; }
  initdb --username="$POSTGRES_USER" --pwfile=<(printf '%s\n' "$password") --auth-local=trust \
    --auth-host=scram-sha-256 --encoding=UTF8 -D "$PGDATA" >/dev/null
  printf 'host all all all scram-sha-256\n' >>"$PGDATA/pg_hba.conf"
  # Initialisation on the Unix socket only, so nothing connects before the scripts have run.
  pg_ctl -D "$PGDATA" -o "-c listen_addresses='' -c unix_socket_directories=/var/run/postgresql" -w start >/dev/null
  export PGUSER="$POSTGRES_USER" PGHOST=/var/run/postgresql
  if [[ "$POSTGRES_DB" != postgres ]]; then
    psql -v ON_ERROR_STOP=1 --dbname postgres -q -c "CREATE DATABASE \"$POSTGRES_DB\""
  fi
  for f in /docker-entrypoint-initdb.d/*; do
    case "$f" in
      *.sh) if [[ -x "$f" ]]; then "$f"; else source "$f"; fi ;;
      *.sql) psql -v ON_ERROR_STOP=1 --dbname "$POSTGRES_DB" -q -f "$f" ;;
      *) [[ -e "$f" ]] && echo "postgres: ignoring $f" >&2 ;;
    esac
  done
  unset PGUSER PGHOST
  pg_ctl -D "$PGDATA" -m fast -w stop >/dev/null
  echo "postgres: initialised, database $POSTGRES_DB"
fi
exec postgres -D "$PGDATA" -c listen_addresses='*' -c unix_socket_directories=/var/run/postgresql
