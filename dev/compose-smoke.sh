#!/usr/bin/env bash
# `make compose-smoke`: our two images plus Kafka, the schema registry and PostgreSQL started with
# compose/docker-compose.yml for real, and checked (tests/deploy/compose_smoke.py says what).
# Public third-party images cannot be pulled on every machine, so unless SMOKE_PUBLIC_IMAGES=1
# the compose image variables point at local stand-ins (dev/containers/standins.sh).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source dev/containers.sh
containers_engine
containers_compose
bash dev/images.sh
if [[ "${SMOKE_PUBLIC_IMAGES:-0}" != 1 ]]; then
  while IFS='=' read -r name value; do
    [[ -n "$name" ]] && export "$name=$value"
  done < <(bash dev/containers/standins.sh)
fi
exec python3 tests/deploy/compose_smoke.py
