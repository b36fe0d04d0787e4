# Shared helpers for the native dev stack. Sourced, not run.
#
# Everything the stack writes (jars copied from the Maven cache, data, logs, pid files) lives under
# $STACK_DIR (default dev/.stack, git-ignored). Downloads are cached by Maven in ~/.m2, so a second
# start on the same machine needs no network.

set -euo pipefail

DEV_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
STACK_DIR="${STACK_DIR:-$DEV_DIR/.stack}"
mkdir -p "$STACK_DIR/logs" "$STACK_DIR/run"

KAFKA_VERSION="${KAFKA_VERSION:-4.1.1}"
# 3.1.6, the version first planned, is not on Maven Central; 3.3.3 is the newest 3.x there.
APICURIO_VERSION="${APICURIO_VERSION:-3.3.3}"
KAFKA_PORT="${KAFKA_PORT:-9092}"
KAFKA_CONTROLLER_PORT="${KAFKA_CONTROLLER_PORT:-9093}"
REGISTRY_PORT="${REGISTRY_PORT:-8081}"
PG_PORT="${PG_PORT:-5432}"
PG_CLUSTER="${PG_CLUSTER:-bankstream}"
# Development-only credentials for a database bound to 127.0.0.1; override through the environment.
PG_USER="${PG_USER:-bank}"
PG_PASSWORD="${PG_PASSWORD:-bank}"
PG_DATABASE="${PG_DATABASE:-bank}"
READY_TIMEOUT="${READY_TIMEOUT:-120}"

log() { printf '[stack] %s\n' "$*" >&2; }
die() { printf '[stack] ERROR: %s\n' "$*" >&2; exit 1; }

# port_open HOST PORT: true when something accepts TCP connections there.
port_open() { (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null; }

# wait_until DESCRIPTION TIMEOUT_SECONDS COMMAND...: polls COMMAND every 0.5 s until it succeeds,
# or fails with DESCRIPTION after the timeout.
wait_until() {
  local what="$1" timeout="$2"; shift 2
  local deadline=$((SECONDS + timeout))
  local rc
  while true; do
    rc=0; "$@" || rc=$?
    ((rc == 0)) && return 0
    # 99 means "will never succeed" (the process died): stop waiting at once.
    if ((rc == 99 || SECONDS >= deadline)); then
      return 1
    fi
    sleep 0.5
  done
}

# pid_alive NAME: true when the pid file of NAME names a live process.
pid_alive() {
  local pidfile="$STACK_DIR/run/$1.pid"
  [[ -f "$pidfile" ]] && kill -0 "$(cat "$pidfile")" 2>/dev/null
}

# stop_pid NAME: SIGTERM, wait up to 30 s for a clean exit, then SIGKILL.
stop_pid() {
  local name="$1" pidfile="$STACK_DIR/run/$1.pid"
  if ! pid_alive "$name"; then
    rm -f "$pidfile"
    return 0
  fi
  local pid; pid="$(cat "$pidfile")"
  log "stopping $name (pid $pid)"
  kill "$pid" 2>/dev/null || true
  if ! wait_until "$name to exit" 30 bash -c "! kill -0 $pid 2>/dev/null"; then
    log "$name did not exit within 30 s; killing it"
    kill -9 "$pid" 2>/dev/null || true
  fi
  rm -f "$pidfile"
}

# show_log_tail NAME FILE: the end of a service's log, for error messages.
show_log_tail() {
  log "last lines of $2:"
  tail -n 30 "$2" >&2 || true
}

require_java() {
  command -v java >/dev/null || die "java not found: install a JDK 17+ (Debian: apt-get install -y openjdk-17-jdk-headless)"
  command -v mvn >/dev/null || die "mvn not found: install Maven (Debian: apt-get install -y maven)"
}
