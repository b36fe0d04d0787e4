#!/usr/bin/env bash
# Runs the healthchecks of running podman containers, which podman leaves to systemd timers: on a
# machine without systemd a container's health would stay `starting` forever and compose's
# `depends_on: condition: service_healthy` and `up --wait` would never return. Started by
# dev/containers.sh. A container still starting (or unhealthy) is checked every 2 s, a healthy one
# every 15 s; one check per container at a time, so a slow check never piles up.
set -uo pipefail
declare -A last running
while true; do
  now=$SECONDS
  # `podman ps` shows the health in the status, e.g. "Up 5 seconds ago (starting)"; containers
  # without a healthcheck show none and are skipped.
  while read -r id status; do
    case "$status" in
      *"(healthy)") period=15 ;;
      *"(starting)" | *"(unhealthy)") period=2 ;;
      *) continue ;;
    esac
    if [[ -n "${running[$id]:-}" ]] && kill -0 "${running[$id]}" 2>/dev/null; then continue; fi
    if [[ -z "${last[$id]:-}" ]] || ((now - last[$id] >= period)); then
      last[$id]=$now
      podman healthcheck run "$id" >/dev/null 2>&1 &
      running[$id]=$!
    fi
  done < <(podman ps --format '{{.ID}} {{.Status}}' 2>/dev/null)
  sleep 2
done
