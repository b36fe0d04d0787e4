#!/usr/bin/env bash
# The database roles of bankstream, run by the postgres image when it initialises an empty data
# directory (/docker-entrypoint-initdb.d). One file for both deployments: Kubernetes mounts it
# from the ConfigMap `postgres-initdb` (k8s/base/kustomization.yaml; kustomize reads files only
# below k8s/base, so it lives here), compose bind-mounts this directory.
#
#   postgres      the image's superuser (POSTGRES_USER, POSTGRES_PASSWORD[_FILE]): administration
#                 only; no service connects as it.
#   bank_ledger   LOGIN, not superuser, cannot create databases or roles, no replication, no RLS
#                 bypass. Owner of the database (POSTGRES_DB, `bank`) and of its schema `public`,
#                 so `consumer ledger`/`consumer migrate` can create and alter its tables.
#   bank_reader   LOGIN, read-only: CONNECT on the database, USAGE on `public`, SELECT on every
#                 table there, including the ones bank_ledger creates later (default
#                 privileges), and default_transaction_read_only=on. Grafana's data source.
#
# Passwords: BANK_LEDGER_PASSWORD_FILE and BANK_READER_PASSWORD_FILE name files holding them (a
# compose secret or a mounted Kubernetes Secret); BANK_LEDGER_PASSWORD / BANK_READER_PASSWORD
# are accepted instead, like the image's own POSTGRES_PASSWORD[_FILE]. They are never printed
# and never on a command line (psql gets them in its environment, \getenv, psql 15+).
#
# Works executed or sourced (the image sources *.sh files that are not executable, as a
# ConfigMap's are), and can be run again on an initialised database, e.g. to rotate the
# passwords (docs/deployment.md):
#   docker compose -f compose/docker-compose.yml exec postgres \
#     bash /docker-entrypoint-initdb.d/10-bankstream-roles.sh
# It connects through libpq's defaults (PGHOST/PGPORT, the image's Unix socket) as POSTGRES_USER
# to the database `postgres`. Any failure exits non-zero with the reason on stderr.

bankstream_secret() {
  # Prints the value of $1, or the contents of the file named by ${1}_FILE.
  local name="$1" file_name="${1}_FILE"
  local value="${!name:-}" file="${!file_name:-}"
  if [[ -n "$value" && -n "$file" ]]; then
    echo "bankstream roles: set $name or $file_name, not both" >&2
    return 1
  fi
  if [[ -n "$file" ]]; then
    if [[ ! -f "$file" || ! -r "$file" ]]; then
      echo "bankstream roles: $file_name=$file is not a readable file" >&2
      return 1
    fi
    value="$(<"$file")" || return 1
  fi
  if [[ -z "$value" ]]; then
    echo "bankstream roles: $file_name (or $name) must give a non-empty password" >&2
    return 1
  fi
  printf '%s' "$value"
}

bankstream_roles() {
  local ledger reader database="${POSTGRES_DB:-bank}" admin="${POSTGRES_USER:-postgres}"
  ledger="$(bankstream_secret BANK_LEDGER_PASSWORD)" || return 1
  reader="$(bankstream_secret BANK_READER_PASSWORD)" || return 1
  if [[ "$ledger" == "$reader" ]]; then
    echo "bankstream roles: the bank_ledger and bank_reader passwords must differ" >&2
    return 1
  fi
  if [[ "$admin" == bank_ledger || "$admin" == bank_reader ]]; then
    echo "bankstream roles: POSTGRES_USER=$admin: the superuser must not be a service role" >&2
    return 1
  fi
  BANKSTREAM_LEDGER_PASSWORD="$ledger" BANKSTREAM_READER_PASSWORD="$reader" \
    psql --no-psqlrc --quiet --no-password --set ON_ERROR_STOP=1 \
      --username "$admin" --dbname postgres --set database="$database" <<'SQL' || return 1
-- Statements carrying a password never reach the server log, not even when they fail.
SET log_statement = 'none';
SET log_min_error_statement = 'panic';
\getenv ledger_password BANKSTREAM_LEDGER_PASSWORD
\getenv reader_password BANKSTREAM_READER_PASSWORD

SELECT 'CREATE ROLE bank_ledger'
 WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'bank_ledger') \gexec
ALTER ROLE bank_ledger WITH LOGIN INHERIT NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION
  NOBYPASSRLS PASSWORD :'ledger_password';

SELECT 'CREATE ROLE bank_reader'
 WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'bank_reader') \gexec
ALTER ROLE bank_reader WITH LOGIN INHERIT NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION
  NOBYPASSRLS PASSWORD :'reader_password';
-- Defence in depth: the grants below are what keeps it read-only.
ALTER ROLE bank_reader SET default_transaction_read_only = on;
\unset ledger_password
\unset reader_password

-- The image creates POSTGRES_DB owned by the superuser; create it if absent, hand it over.
SELECT format('CREATE DATABASE %I OWNER bank_ledger', :'database')
 WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = :'database') \gexec
ALTER DATABASE :"database" OWNER TO bank_ledger;
-- Only the owner (and the roles granted here) may connect or create temporary tables.
REVOKE ALL ON DATABASE :"database" FROM PUBLIC;
GRANT CONNECT ON DATABASE :"database" TO bank_reader;

\connect :database
-- PostgreSQL 15+ gives `public` to pg_database_owner (bank_ledger now); say so explicitly, for
-- older servers and for a database created by hand.
ALTER SCHEMA public OWNER TO bank_ledger;
REVOKE ALL ON SCHEMA public FROM PUBLIC;
GRANT USAGE ON SCHEMA public TO bank_reader;
GRANT SELECT ON ALL TABLES IN SCHEMA public TO bank_reader;
ALTER DEFAULT PRIVILEGES FOR ROLE bank_ledger IN SCHEMA public GRANT SELECT ON TABLES TO bank_reader;
SQL
  echo "bankstream roles: bank_ledger owns database $database and its schema public;" \
    "bank_reader reads it; $admin stays the only superuser"
}

bankstream_roles || {
  echo "bankstream roles: FAILED (${BASH_SOURCE[0]:-10-bankstream-roles.sh}); the database is not ready for the ledger" >&2
  exit 1
}
