#!/usr/bin/env bash
# A Docker-compatible engine, Compose v2 and the base images our Dockerfiles start from, on a
# machine that may have none of them and cannot pull from any image registry (../shared/
# containers.md). `make images` and `make compose-smoke` source this file; CI runs them.
#
# Why each step exists:
#   engine   `docker info` answering is enough. Otherwise podman from Debian's packages, with the
#            two settings these machines need (runc, not crun, on cgroup v1 hybrid; ulimits the
#            host already has, as raising them is refused), its Docker API on a Unix socket for
#            the docker CLI and Compose, and a healthcheck loop: podman schedules healthchecks
#            with systemd timers, and without systemd `depends_on: service_healthy` waits forever.
#   compose  Compose v2 as a docker CLI plugin, built from the Go module proxy when missing
#            (Debian's docker-compose 1.29 rejects our top-level `name:`).
#   bases    Local stand-ins, built only when the image is missing, for the public images our
#            Dockerfile names: debian:bookworm-slim (debootstrap), rust:1.95-bookworm (Debian's
#            rustc-web 1.96 on it) and gcr.io/distroless/cc-debian12 (the same Debian packages as
#            distroless, unpacked into a scratch image). A machine with registry access pulls the
#            real ones instead and none of this runs.
#
# Every step is idempotent and cheap when already done. Downloads are cached under
# $CONTAINERS_CACHE (default ~/.cache/bankstream) and Go's module cache.
#
# Usage: bash dev/containers.sh [engine|compose|bases|all]   (default all)
#        source dev/containers.sh; containers_env    # exports DOCKER_HOST when podman serves it
set -euo pipefail

CONTAINERS_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/containers"
CONTAINERS_CACHE="${CONTAINERS_CACHE:-$HOME/.cache/bankstream}"
PODMAN_SOCKET="${PODMAN_SOCKET:-/run/podman/bankstream.sock}"
PODMAN_RUN_DIR="$(dirname "$PODMAN_SOCKET")"
COMPOSE_VERSION="${COMPOSE_VERSION:-v2.29.7}"
DEBIAN_SUITE=bookworm

containers_log() { printf 'containers: %s\n' "$*" >&2; }
containers_die() { printf 'containers: %s\n' "$*" >&2; exit 1; }

engine_answers() { timeout 20 docker info >/dev/null 2>&1; }

# Points the docker CLI at podman's socket when that is the engine we set up and no other answers.
containers_env() {
  if [[ -z "${DOCKER_HOST:-}" && -S "$PODMAN_SOCKET" ]] && ! engine_answers; then
    export DOCKER_HOST="unix://$PODMAN_SOCKET"
  fi
  if [[ "${DOCKER_HOST:-}" == "unix://$PODMAN_SOCKET" ]]; then
    # The classic builder: BuildKit would try to pull moby/buildkit.
    export DOCKER_BUILDKIT=0
  fi
}

install_podman() {
  local packages=(podman buildah runc fuse-overlayfs slirp4netns uidmap netavark aardvark-dns
    containernetworking-plugins iptables catatonit conmon debootstrap)
  local missing=() p
  for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || missing+=("$p")
  done
  if ((${#missing[@]})); then
    ((EUID == 0)) || containers_die "no Docker engine answers and podman is missing; run as root, or: sudo apt-get install -y ${missing[*]}"
    containers_log "installing ${missing[*]} (Debian packages)"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
  local conf=/etc/containers/containers.conf
  if ! grep -qs '^runtime = "runc"' "$conf"; then
    containers_log "writing $conf (runc; the host's ulimits)"
    mkdir -p /etc/containers
    cat >"$conf" <<'EOF'
# Written by bankstream's dev/containers.sh (../shared/containers.md).
[containers]
# Raising rlimits is not permitted here: start containers at the host's limits.
default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]
[engine]
# crun refuses cgroup v1 hybrid mode ("cgroups in hybrid mode not supported").
runtime = "runc"
EOF
  fi
}

pid_running() { [[ -f "$1" ]] && kill -0 "$(cat "$1")" 2>/dev/null; }

start_podman_service() {
  mkdir -p "$PODMAN_RUN_DIR"
  if ! pid_running "$PODMAN_RUN_DIR/service.pid"; then
    rm -f "$PODMAN_SOCKET"
    containers_log "starting podman's Docker API on $PODMAN_SOCKET"
    # From /: a service keeps its working directory, and a deleted one (a CI clone) breaks conmon.
    (cd / && exec setsid nohup podman system service --time=0 "unix://$PODMAN_SOCKET" \
      >"$PODMAN_RUN_DIR/service.log" 2>&1 </dev/null) &
    echo $! >"$PODMAN_RUN_DIR/service.pid"
  fi
  local deadline=$((SECONDS + 30))
  until DOCKER_HOST="unix://$PODMAN_SOCKET" docker version >/dev/null 2>&1; do
    ((SECONDS < deadline)) || containers_die "podman's API did not answer within 30 s: $(tail -n 5 "$PODMAN_RUN_DIR/service.log")"
    sleep 0.5
  done
  if ! pid_running "$PODMAN_RUN_DIR/health.pid"; then
    (cd / && exec setsid nohup bash "$CONTAINERS_DIR/healthchecks.sh" >"$PODMAN_RUN_DIR/health.log" 2>&1 </dev/null) &
    echo $! >"$PODMAN_RUN_DIR/health.pid"
  fi
}

containers_engine() {
  containers_env
  if engine_answers; then return 0; fi
  command -v docker >/dev/null || containers_die "no docker CLI; install Debian's docker.io (the CLI is enough) or Docker"
  install_podman
  start_podman_service
  export DOCKER_HOST="unix://$PODMAN_SOCKET" DOCKER_BUILDKIT=0
  engine_answers || containers_die "docker info fails against podman's socket"
}

containers_compose() {
  if docker compose version >/dev/null 2>&1; then return 0; fi
  command -v go >/dev/null || containers_die "docker compose v2 is missing and there is no Go to build it; install the compose plugin"
  containers_log "building Docker Compose $COMPOSE_VERSION from the Go module proxy (about 4 minutes the first time)"
  local gobin="$CONTAINERS_CACHE/go-bin"
  mkdir -p "$gobin" "$HOME/.docker/cli-plugins"
  if [[ ! -x "$gobin/cmd" ]]; then
    (cd /tmp && GOBIN="$gobin" GOFLAGS=-mod=mod go install "github.com/docker/compose/v2/cmd@$COMPOSE_VERSION")
  fi
  cp "$gobin/cmd" "$HOME/.docker/cli-plugins/docker-compose"
  docker compose version >/dev/null || containers_die "docker compose still does not answer"
}

image_exists() { docker image inspect "$1" >/dev/null 2>&1; }

apt_mirror() {
  local mirror
  mirror="$(awk '/^deb /{print $2; exit}' /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null || true)"
  if [[ -z "$mirror" ]]; then
    mirror="$(awk '/^URIs:/{print $2; exit}' /etc/apt/sources.list.d/*.sources 2>/dev/null || true)"
  fi
  printf '%s' "${mirror:-http://deb.debian.org/debian}"
}

# debian:bookworm-slim: a minbase debootstrap with the slim image's dpkg excludes.
base_image() {
  local image=docker.io/library/debian:bookworm-slim
  image_exists "$image" && return 0
  local tarball="$CONTAINERS_CACHE/debian-$DEBIAN_SUITE-slim.tar"
  if [[ ! -s "$tarball" ]]; then
    local mirror root
    mirror="$(apt_mirror)"
    root="$(mktemp -d)"
    containers_log "debootstrap $DEBIAN_SUITE from $mirror (about 70 s)"
    debootstrap --variant=minbase "$DEBIAN_SUITE" "$root" "$mirror" >"$CONTAINERS_CACHE/debootstrap.log" 2>&1 \
      || containers_die "debootstrap failed: $(tail -n 5 "$CONTAINERS_CACHE/debootstrap.log")"
    cat >"$root/etc/apt/sources.list" <<EOF
deb $mirror $DEBIAN_SUITE main
deb $mirror $DEBIAN_SUITE-updates main
deb ${mirror%/debian*}/debian-security $DEBIAN_SUITE-security main
EOF
    # What the official slim image leaves out: documentation, manuals, locales.
    cat >"$root/etc/dpkg/dpkg.cfg.d/docker-slim" <<'EOF'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
path-include /usr/share/locale/locale.alias
EOF
    cat >"$root/etc/apt/apt.conf.d/docker-clean" <<'EOF'
APT::Install-Recommends "false";
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb || true"; };
EOF
    rm -rf "$root"/usr/share/doc/* "$root"/usr/share/man/* "$root"/usr/share/info/* \
      "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*
    tar -C "$root" --numeric-owner -cf "$tarball.tmp" .
    mv "$tarball.tmp" "$tarball"
    rm -rf "$root"
  fi
  containers_log "importing $image (a local stand-in, from debootstrap)"
  docker import --change 'CMD ["bash"]' "$tarball" "$image" >/dev/null
}

# rust:1.95-bookworm: Debian's rustc-web/cargo-web (1.96) on the base, trusting the host's CA
# bundle, which HTTPS to crates.io needs on machines behind an intercepting proxy.
rust_image() {
  local image=docker.io/library/rust:1.95-bookworm
  image_exists "$image" && return 0
  local context
  context="$(mktemp -d)"
  cp /etc/ssl/certs/ca-certificates.crt "$context/host-ca-certificates.crt"
  containers_log "building $image (a local stand-in: Debian's rustc-web, about 2 minutes)"
  docker build -q -t "$image" -f "$CONTAINERS_DIR/rust.Dockerfile" "$context" >/dev/null
  rm -rf "$context"
}

# gcr.io/distroless/cc-debian12: glibc, libgcc_s, libssl3, CA certificates, /etc/passwd with
# `nonroot`, nothing else (no shell, no package manager), from Debian's packages.
distroless_image() {
  local image=gcr.io/distroless/cc-debian12:latest
  image_exists "$image" && return 0
  containers_log "building $image (a local stand-in from Debian's packages)"
  docker build -q -t "$image" -f "$CONTAINERS_DIR/distroless.Dockerfile" "$CONTAINERS_DIR" >/dev/null
}

containers_bases() {
  mkdir -p "$CONTAINERS_CACHE"
  base_image
  rust_image
  distroless_image
}

containers_main() {
  local what="${1:-all}"
  case "$what" in
    engine) containers_engine ;;
    compose) containers_engine && containers_compose ;;
    bases) containers_engine && containers_bases ;;
    all) containers_engine && containers_compose && containers_bases ;;
    *) containers_die "usage: containers.sh [engine|compose|bases|all]" ;;
  esac
}

if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then
  containers_main "$@"
fi
