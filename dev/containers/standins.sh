#!/usr/bin/env bash
# Local stand-ins for the third-party images of compose/docker-compose.yml, for machines that
# cannot pull them, built from what the native stack already uses: Kafka 4.1.1's jars from Maven
# Central on Debian's JRE, Debian's PostgreSQL, Apicurio's Confluent-compatible registry. Prints
# the compose variables that select them (KAFKA_IMAGE=... lines, for an --env-file). An image
# already present is not rebuilt (STANDINS_REBUILD=1 forces it).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
dev="$(dirname "$here")"
source "$dev/containers.sh"
containers_engine
containers_bases

PREFIX=localhost/bankstream-standin
KAFKA_STANDIN="$PREFIX/kafka:4.1.1"
POSTGRES_STANDIN="$PREFIX/postgres:15"
REGISTRY_STANDIN="$PREFIX/schema-registry:apicurio-3.3.3"

needs_build() { [[ "${STANDINS_REBUILD:-0}" == 1 ]] || ! image_exists "$1"; }

build() { # image dockerfile context
  containers_log "building $1"
  docker build -q -t "$1" -f "$2" "$3" >/dev/null
}

if needs_build "$KAFKA_STANDIN"; then
  ctx="$(mktemp -d)"
  libs="$(bash "$dev/kafka.sh" install | tail -n 1)"
  cp -r "$libs" "$ctx/libs" && rm -f "$ctx/libs/.stamp"
  cp -r "$here/kafka-bin" "$here/kafka-log4j2.properties" "$here/kafka-tools-log4j2.properties" "$ctx/"
  build "$KAFKA_STANDIN" "$here/kafka.Dockerfile" "$ctx"
  rm -rf "$ctx"
fi

if needs_build "$POSTGRES_STANDIN"; then
  build "$POSTGRES_STANDIN" "$here/postgres.Dockerfile" "$here"
fi

if needs_build "$REGISTRY_STANDIN"; then
  ctx="$(mktemp -d)"
  mapfile -t found < <(bash "$dev/registry.sh" install | tail -n 2)
  cp -r "${found[0]}" "$ctx/app"
  cp -r "${found[1]}" "$ctx/jdk"
  rm -rf "$ctx/jdk/jmods" "$ctx/jdk/lib/src.zip" "$ctx/jdk/man"
  build "$REGISTRY_STANDIN" "$here/registry.Dockerfile" "$ctx"
  rm -rf "$ctx"
fi

cat <<VARS
KAFKA_IMAGE=$KAFKA_STANDIN
POSTGRES_IMAGE=$POSTGRES_STANDIN
SCHEMA_REGISTRY_IMAGE=$REGISTRY_STANDIN
SCHEMA_REGISTRY_URL=http://schema-registry:8081/apis/ccompat/v7
VARS
