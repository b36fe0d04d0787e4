#!/usr/bin/env bash
# `make images`: both targets of docker/Dockerfile, built with whatever Docker-compatible engine
# answers (podman set up by dev/containers.sh when there is none), then checked: each image's
# size against the 40 MB budget, and each binary run inside its image as the image's non-root
# user on a read-only root filesystem, as compose and Kubernetes run them.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source dev/containers.sh
containers_engine
containers_bases

TAG="${IMAGE_TAG:-dev}"
MAX_MB="${IMAGE_MAX_MB:-40}"
revision="$(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
created="$(date -u +%Y-%m-%dT%H:%M:%SZ)"

for target in producer consumer; do
  started=$SECONDS
  echo "images: building bankstream/$target:$TAG"
  # The classic builder prints a deprecation notice on every build; keep the log for failures.
  if ! docker build -f docker/Dockerfile --target "$target" -t "bankstream/$target:$TAG" \
    --build-arg REVISION="$revision" --build-arg CREATED="$created" . >"${TMPDIR:-/tmp}/bankstream-image-$target.log" 2>&1; then
    tail -n 40 "${TMPDIR:-/tmp}/bankstream-image-$target.log" >&2
    echo "images: building $target failed (log: ${TMPDIR:-/tmp}/bankstream-image-$target.log)" >&2
    exit 1
  fi
  echo "images: bankstream/$target:$TAG built in $((SECONDS - started)) s"
done

status=0
for target in producer consumer; do
  image="bankstream/$target:$TAG"
  bytes="$(docker image inspect --format '{{.Size}}' "$image")"
  user="$(docker image inspect --format '{{.Config.User}}' "$image")"
  mb="$(awk -v b="$bytes" 'BEGIN { printf "%.1f", b / 1000000 }')"
  printf 'images: %-28s %6s MB (budget %s MB), user %s\n' "$image" "$mb" "$MAX_MB" "$user"
  if awk -v b="$bytes" -v max="$MAX_MB" 'BEGIN { exit !(b > max * 1000000) }'; then
    # Fatal: a dependency that brings megabytes should be a decision, not a surprise.
    # IMAGE_BUDGET_STRICT=0 only warns (e.g. a base image larger than the local stand-in).
    echo "images: $image is over its $MAX_MB MB budget (README, \"Images\")" >&2
    [[ "${IMAGE_BUDGET_STRICT:-1}" == 0 ]] || status=1
  fi
  case "$user" in
    "" | 0 | 0:* | root | root:*) echo "images: $image runs as root ($user)" >&2; status=1 ;;
  esac
done

# Inside the images, as their own user, read-only: the binaries load (every shared library is
# there) and answer. `id -u` is not available (no shell), so the uid is read by the binary's host
# side: the image config above.
docker run --rm --read-only --cap-drop ALL bankstream/producer:"$TAG" --version
docker run --rm --read-only --cap-drop ALL bankstream/consumer:"$TAG" --help | sed -n 1,3p
docker run --rm --read-only --cap-drop ALL bankstream/consumer:"$TAG" --version
exit "$status"
