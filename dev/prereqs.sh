#!/usr/bin/env bash
# What a machine must have before `make demo`, `make test` or CI can start, checked in seconds,
# before any long build. The one list of the project's system packages: `make` targets and
# .ci/run both call this script, nobody else keeps a copy.
#
# Debian packages that are missing are installed when we are root and apt-get exists, saying
# which and why; otherwise the script stops with the exact command to run. Toolchains that do
# not come from apt (Rust, a JDK 21+ for the registry) are only checked, with what to do.
#
# Usage: prereqs.sh [build|stack|test]   (default: test, which needs all of them)
#   build  the Rust workspace (C compiler, make, pkg-config, OpenSSL headers)
#   stack  build + the native stack (PostgreSQL, Java 17 + Maven for Kafka, Java 21+ for Apicurio)
#   test   stack + Python venv (interop tests), Go and npm are checked by dev/lint-deploy.sh
set -euo pipefail

scope="${1:-test}"
case "$scope" in build | stack | test) ;; *) echo "usage: $0 [build|stack|test]" >&2; exit 2 ;; esac

say() { printf '[prereqs] %s\n' "$*" >&2; }
fail() { printf '[prereqs] ERROR: %s\n' "$*" >&2; exit 1; }

packages=() reasons=()
# want PACKAGE REASON TEST...: PACKAGE is needed unless TEST succeeds.
want() {
  local package="$1" reason="$2"; shift 2
  "$@" >/dev/null 2>&1 && return 0
  packages+=("$package"); reasons+=("$package: $reason")
}
has() { command -v "$1"; }
header() { [[ -f "/usr/include/$1" || -f "/usr/include/$(uname -m)-linux-gnu/$1" ]]; }
postgres_server() { compgen -G '/usr/lib/postgresql/*/bin/postgres' && has pg_ctlcluster; }
python_venv() { python3 -c 'import ensurepip, venv'; }

# librdkafka is compiled from source with its configure script (no CMake, no libcurl: the
# OAuth/OIDC HTTP client is the one feature left out; SSL and SASL PLAIN/SCRAM/OAUTHBEARER stay).
want gcc "C compiler for librdkafka, zlib and the Rust build" has cc
want make "librdkafka's build" has make
want pkg-config "finds OpenSSL and zlib for the Rust build" has pkg-config
want libssl-dev "TLS to brokers and registries (librdkafka, openssl-sys)" header openssl/ssl.h
want zlib1g-dev "gzip compression in librdkafka" header zlib.h
if [[ "$scope" != build ]]; then
  want postgresql "the native stack's database" postgres_server
  want openjdk-17-jre-headless "Kafka 4.1 runs on Java 17+" has java
  want curl "the stack scripts probe the registry over HTTP" has curl
  want maven "downloads Kafka and Apicurio from Maven Central (cached in ~/.m2)" has mvn
fi
if [[ "$scope" == test ]]; then
  want python3-venv "the venv of the Confluent-client interop tests" python_venv
  want openssl "throwaway certificates for the tests of TLS to the registry" has openssl
fi

if ((${#packages[@]})); then
  command="apt-get install -y ${packages[*]}"
  if ! has apt-get >/dev/null; then
    fail "missing: ${packages[*]}, and this is not a Debian-like machine (no apt-get). Install the equivalent packages, then run make again."
  fi
  if [[ "$(id -u)" != 0 ]]; then
    say "missing Debian packages:"
    printf '  %s\n' "${reasons[@]}" >&2
    fail "not root, so not installing them. Run: sudo $command"
  fi
  say "installing missing Debian packages:"
  printf '  %s\n' "${reasons[@]}" >&2
  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${packages[@]}"; } >/dev/null \
    || fail "'$command' failed (see the output above); fix the package sources and run make again"
  say "installed: ${packages[*]}"
fi

# Not from apt: checked, with what to do.
has cargo >/dev/null || fail "cargo not found: install Rust 1.94+ with rustup (https://rustup.rs), then open a new shell"
rust="$(rustc --version | awk '{print $2}')"
[[ "$(printf '%s\n1.94.0\n' "$rust" | sort -V | head -n1)" == 1.94.0 ]] \
  || fail "Rust $rust is too old; the workspace needs 1.94+: rustup update stable"
if [[ "$scope" != build ]]; then
  java21=""
  for candidate in ${REGISTRY_JAVA:-} /usr/lib/jvm/*/bin/java "$(command -v java || true)"; do
    [[ -x "$candidate" ]] || continue
    major="$("$candidate" -XshowSettings:properties -version 2>&1 | sed -n 's/^ *java.specification.version = //p')"
    if [[ "${major%%.*}" =~ ^[0-9]+$ ]] && ((${major%%.*} >= 21)); then java21="$candidate"; break; fi
  done
  [[ -n "$java21" ]] || fail "the schema registry (Apicurio 3.3) needs Java 21+, and none was found in /usr/lib/jvm or on PATH (Debian 12 ships 17). Install a JDK 21+ (e.g. Temurin) and set REGISTRY_JAVA=/path/to/bin/java"
fi
exit 0
