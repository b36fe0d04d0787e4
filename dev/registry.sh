#!/usr/bin/env bash
# Apicurio Registry 3.x from Maven Central, serving the Confluent-compatible API at
# http://127.0.0.1:$REGISTRY_PORT/apis/ccompat/v7. Schemas persist in an H2 file under the stack
# folder, so schema ids survive a restart like the Kafka messages that carry them.
# Usage: registry.sh up|install|down|status
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

HOME_DIR="$STACK_DIR/registry"
APP="$HOME_DIR/app-$APICURIO_VERSION"
LOG="$STACK_DIR/logs/registry.log"
URL="http://127.0.0.1:$REGISTRY_PORT"

install_app() {
  if [[ -f "$APP/quarkus-run.jar" ]]; then return 0; fi
  require_java
  log "resolving Apicurio Registry $APICURIO_VERSION from Maven Central (cached in ~/.m2)"
  local dl="$HOME_DIR/download"
  mkdir -p "$dl" "$APP.tmp"
  mvn -q -B dependency:copy -Dartifact="io.apicurio:apicurio-registry-app:$APICURIO_VERSION:tar.gz:all" \
    -DoutputDirectory="$dl" >"$STACK_DIR/logs/registry-mvn.log" 2>&1 \
    || { show_log_tail maven "$STACK_DIR/logs/registry-mvn.log"; die "could not resolve io.apicurio:apicurio-registry-app:$APICURIO_VERSION:tar.gz:all"; }
  tar xzf "$dl/apicurio-registry-app-$APICURIO_VERSION-all.tar.gz" -C "$APP.tmp"
  rm -rf "$dl" "$APP" && mv "$APP.tmp" "$APP"
}

# Apicurio 3.3 is built for Java 21. Use REGISTRY_JAVA if set, else the newest JDK >= 21 found in
# /usr/lib/jvm (this machine kind ships Temurin beside Debian's OpenJDK 17), else `java` on PATH.
find_java() {
  if [[ -n "${REGISTRY_JAVA:-}" ]]; then echo "$REGISTRY_JAVA"; return 0; fi
  local candidate major best="" best_major=0
  for candidate in /usr/lib/jvm/*/bin/java "$(command -v java || true)"; do
    [[ -x "$candidate" ]] || continue
    major="$("$candidate" -XshowSettings:properties -version 2>&1 | sed -n 's/^ *java.specification.version = //p')"
    major="${major%%.*}"
    if [[ "$major" =~ ^[0-9]+$ ]] && ((major > best_major)); then best="$candidate"; best_major=$major; fi
  done
  ((best_major >= 21)) || die "Apicurio Registry $APICURIO_VERSION needs Java 21 or newer; found at most Java $best_major. Install a JDK 21+ and set REGISTRY_JAVA=/path/to/bin/java"
  echo "$best"
}

ready() {
  pid_alive registry || return 99
  curl -fs -o /dev/null "$URL/apis/ccompat/v7/subjects"
}

up() {
  if pid_alive registry; then log "registry already running at $URL/apis/ccompat/v7"; return 0; fi
  if port_open 127.0.0.1 "$REGISTRY_PORT"; then die "port $REGISTRY_PORT is taken by another process; set REGISTRY_PORT"; fi
  install_app
  local java; java="$(find_java)"
  mkdir -p "$HOME_DIR/data"
  log "starting schema registry"
  : >"$LOG"
  (cd "$APP"
    nohup "$java" -Xms256m -Xmx768m \
      -Dquarkus.http.host=127.0.0.1 -Dquarkus.http.port="$REGISTRY_PORT" \
      -Dapicurio.datasource.url="jdbc:h2:file:$HOME_DIR/data/registry;DB_CLOSE_ON_EXIT=FALSE" \
      -Dquarkus.log.level=INFO \
      -jar quarkus-run.jar >>"$LOG" 2>&1 </dev/null &
    echo $! >"$STACK_DIR/run/registry.pid")
  if ! wait_until "the registry to answer" "$READY_TIMEOUT" ready; then
    show_log_tail registry "$LOG"
    die "schema registry did not become ready within ${READY_TIMEOUT}s"
  fi
  log "registry ready: $URL/apis/ccompat/v7 (Confluent-compatible API), log $LOG"
}

case "${1:-}" in
  up) up ;;
  # The application and the JDK it runs on (for the container stand-in): prints both folders.
  install) install_app && echo "$APP" && dirname "$(dirname "$(readlink -f "$(find_java)")")" ;;
  down) stop_pid registry ;;
  status) if pid_alive registry; then echo "registry: running, $URL/apis/ccompat/v7"; else echo "registry: stopped"; fi ;;
  *) echo "usage: $0 up|install|down|status" >&2; exit 2 ;;
esac
