#!/usr/bin/env bash
# The official apache/kafka image's configuration interface, for the stand-in: every KAFKA_*
# variable becomes a server property (KAFKA_LOG_DIRS -> log.dirs; `__` stands for `_` and `___`
# for `-`), the storage is formatted with CLUSTER_ID on first start, then the broker runs as PID 1
# so `docker stop` reaches it. A command (e.g. `bash -ec ...`) runs instead, as in the image.
set -euo pipefail
if (($#)); then exec "$@"; fi
props=/opt/kafka/config/server.properties
: >"$props"
while IFS='=' read -r var _; do
  case "$var" in
    KAFKA_HEAP_OPTS | KAFKA_OPTS | KAFKA_JVM_PERFORMANCE_OPTS | KAFKA_LOG4J_OPTS | KAFKA_VERSION) continue ;;
    KAFKA_*) ;;
    *) continue ;;
  esac
  name="${var#KAFKA_}"
  name="${name,,}"
  name="${name//___/-}"
  name="${name//__/@}"
  name="${name//_/.}"
  name="${name//@/_}"
  printf '%s=%s\n' "$name" "${!var}" >>"$props"
done < <(env)
: "${CLUSTER_ID:?CLUSTER_ID must be set, as for the apache/kafka image}"
java_opts=(${KAFKA_HEAP_OPTS:--Xms512m -Xmx1g} -XX:+UseG1GC -Djava.awt.headless=true
  -Dlog4j2.configurationFile=/opt/kafka/config/log4j2.properties)
java -Xmx256m -cp '/opt/kafka/libs/*' -Dlog4j2.configurationFile=/opt/kafka/config/log4j2.properties \
  kafka.tools.StorageTool format --ignore-formatted --cluster-id="$CLUSTER_ID" --config="$props"
exec java "${java_opts[@]}" -cp '/opt/kafka/libs/*' kafka.Kafka "$props"
