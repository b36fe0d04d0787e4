# Kafka banking-event pipeline. `make` (or `make help`) lists the targets.
SHELL := /usr/bin/env bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help

CARGO ?= cargo
VENV := tests/interop/.venv
PYTHON ?= python3

# The native stack's addresses; export your own to point the tests elsewhere.
export KAFKA_BOOTSTRAP_SERVERS ?= 127.0.0.1:9092
export SCHEMA_REGISTRY_URL ?= http://127.0.0.1:8081/apis/ccompat/v7

.PHONY: help
help: ## List the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z_-]+:.*## / {printf "  %-14s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

.PHONY: prereqs
prereqs: ## Check (and, as root, install) the Debian packages the build and the stack need
	bash dev/prereqs.sh test

.PHONY: build
build: ## Build the producer and consumer (debug)
	bash dev/prereqs.sh build
	$(CARGO) build --workspace --all-targets

.PHONY: release
release: ## Build optimised binaries into target/release
	$(CARGO) build --workspace --release

.PHONY: lint
lint: ## cargo fmt --check and clippy -D warnings
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

.PHONY: test
test: prereqs build stack-up interop-env ## Start the native stack if needed, run every test against it
	$(CARGO) test --workspace
	$(VENV)/bin/python -m pytest -q tests/interop
	bash dev/lint-deploy.sh

.PHONY: chaos
chaos: stack-up ## The chaos suite at full size: 200,000 transactions per scenario, release build
	CHAOS_TRANSACTIONS=$${CHAOS_TRANSACTIONS:-200000} $(CARGO) test --release -p consumer --test chaos -- --nocapture

.PHONY: bench
bench: bench-producer bench-consumer bench-analytics bench-latency bench-peers bench-table bench-lake ## Every benchmark (release builds, native stack)

.PHONY: bench-producer
bench-producer: stack-up ## 1M transactions: our producer vs Kafka's ProducerPerformance
	$(CARGO) build --release -p producer
	bash bench/producer.sh

.PHONY: bench-consumer
bench-consumer: stack-up ## 1M transactions into PostgreSQL: the ledger vs COPY
	$(CARGO) build --release -p producer -p consumer
	bash bench/consumer.sh

.PHONY: bench-latency
bench-latency: stack-up interop-env ## Kafka timestamp -> row visible in PostgreSQL at 2,000/s and 20,000/s: group commit vs a 200 ms linger
	$(CARGO) build --release -p producer -p consumer
	bash bench/latency.sh

.PHONY: bench-peers
bench-peers: stack-up interop-env ## 200,000 transactions: the ledger vs Kafka Connect's Debezium JDBC sink, a seed-style consumer and COPY; kill -9 + restart of each
	$(CARGO) build --release -p producer -p consumer
	bash bench/peers.sh

.PHONY: bench-table
bench-table: stack-up ## 500,000 rows: producer table from PostgreSQL into Kafka vs COPY TO STDOUT of the same rows
	$(CARGO) build --release -p producer
	bash bench/table.sh

.PHONY: bench-lake
bench-lake: stack-up interop-env ## 1M transactions: consumer lake into local Parquet vs DuckDB rewriting the same rows
	$(CARGO) build --release -p producer -p consumer
	bash bench/lake.sh

.PHONY: fuzz
fuzz: ## Coverage-guided fuzzing (cargo fuzz, nightly): frame decoder + validation, CSV cleaner; FUZZ_SECONDS each (60)
	bash dev/fuzz.sh

.PHONY: bench-analytics
bench-analytics: stack-up ## 5M transactions through summary and limits in 256 MiB cgroups; restart time
	$(CARGO) build --release -p producer -p consumer
	bash bench/analytics.sh

.PHONY: interop-env
interop-env: $(VENV)/.installed ## Python venv with Confluent's client, for the interop tests

$(VENV)/.installed: tests/interop/requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --disable-pip-version-check -r tests/interop/requirements.txt
	touch $@

.PHONY: demo-connect
demo-connect: interop-env ## The seed's Connect + ksqlDB pipeline: generator -> PostgreSQL -> producer table -> Kafka -> ledger + lake + view, reconciled
	bash dev/prereqs.sh stack
	bash dev/demo-connect.sh

.PHONY: demo
demo: ## The main job: stack up, produce 1000 tx / 20 customers, ledger until caught up, reconcile
	bash dev/prereqs.sh stack
	bash dev/demo.sh

.PHONY: roundtrip
roundtrip: stack-up ## Main job (for now): register schemas, produce one event of each kind, consume and print them
	$(CARGO) build -q -p producer -p consumer
	run=roundtrip.$$(date +%s); \
	./target/debug/producer sample -t $$run.transactions --customers-topic $$run.customers && \
	./target/debug/consumer dump --count 2 --idle-timeout-secs 60 -t $$run.transactions --customers-topic $$run.customers

.PHONY: stack-up
stack-up: ## Start Kafka, the schema registry and PostgreSQL natively (idempotent)
	bash dev/prereqs.sh stack
	bash dev/stack.sh up

.PHONY: stack-down
stack-down: ## Stop the native stack (data is kept)
	bash dev/stack.sh down

.PHONY: stack-status
stack-status: ## Show what runs and where
	bash dev/stack.sh status

.PHONY: stack-clean
stack-clean: ## Stop the stack and delete its data (downloads stay cached in ~/.m2)
	bash dev/stack.sh clean

# --- Deployment ---
# Container images, docker compose, and local Kubernetes clusters (kind, minikube):
# docs/deployment.md. `lint-deploy` checks all of it statically, without Docker or a cluster.
# The local tag must match k8s/components/local-images.
IMAGE_TAG := dev
COMPOSE := docker compose -f compose/docker-compose.yml
KIND_CLUSTER ?= bankstream
MINIKUBE_PROFILE ?= bankstream
K8S_NAMESPACE := bankstream
ROLLOUT_TIMEOUT ?= 600s

.PHONY: images
images: ## Build bankstream/{producer,consumer}:dev with any Docker-compatible engine (podman set up if none), print sizes, run them
	bash dev/images.sh

.PHONY: compose-smoke
compose-smoke: ## Start the compose deployment for real (local stand-ins for public images), reconcile, stop cleanly, down -v
	bash dev/compose-smoke.sh

.PHONY: compose-up
compose-up: ## docker compose up: Kafka, registry, PostgreSQL, producer, consumers (COMPOSE_PROFILES=observability,ui for more)
	@test -f compose/.env || { echo "compose-up: compose/.env is missing: cp compose/.env.example compose/.env, then set its passwords" >&2; exit 1; }
	$(COMPOSE) up -d --build
	$(COMPOSE) ps

.PHONY: compose-down
compose-down: ## Stop the compose deployment, every profile (volumes and data are kept)
	$(COMPOSE) --profile observability --profile ui down

.PHONY: kind-up
kind-up: ## kind cluster from k8s/kind-config.yaml, images built and loaded, overlay applied, rollout awaited
	@command -v kind >/dev/null || { echo "kind-up: kind is not installed" >&2; exit 1; }
	@command -v kubectl >/dev/null || { echo "kind-up: kubectl is not installed" >&2; exit 1; }
	kind get clusters 2>/dev/null | grep -qx '$(KIND_CLUSTER)' || kind create cluster --config k8s/kind-config.yaml --name '$(KIND_CLUSTER)' --wait 180s
	$(MAKE) --no-print-directory images
	kind load docker-image --name '$(KIND_CLUSTER)' bankstream/producer:$(IMAGE_TAG) bankstream/consumer:$(IMAGE_TAG)
	$(MAKE) --no-print-directory k8s-apply OVERLAY=kind KUBE_CONTEXT='kind-$(KIND_CLUSTER)'

.PHONY: kind-down
kind-down: ## Delete the kind cluster (and its data)
	kind delete cluster --name '$(KIND_CLUSTER)'

.PHONY: minikube-up
minikube-up: ## minikube profile `bankstream` (2 CPUs, 4 GiB), images built inside it, overlay applied, rollout awaited
	@command -v minikube >/dev/null || { echo "minikube-up: minikube is not installed" >&2; exit 1; }
	@command -v kubectl >/dev/null || { echo "minikube-up: kubectl is not installed" >&2; exit 1; }
	minikube status -p '$(MINIKUBE_PROFILE)' >/dev/null 2>&1 || minikube start -p '$(MINIKUBE_PROFILE)' --cpus=2 --memory=4g
	eval "$$(minikube -p '$(MINIKUBE_PROFILE)' docker-env --shell bash)" && $(MAKE) --no-print-directory images
	$(MAKE) --no-print-directory k8s-apply OVERLAY=minikube KUBE_CONTEXT='$(MINIKUBE_PROFILE)'

.PHONY: minikube-down
minikube-down: ## Delete the minikube profile (and its data)
	minikube delete -p '$(MINIKUBE_PROFILE)'

# Applies k8s/overlays/$(OVERLAY) to $(KUBE_CONTEXT) and waits for every part, in start order.
# The two Jobs are deleted first: a Job's pod template cannot be changed, and re-running the
# seeded producer sends the same events again (the ledger ignores the duplicates).
.PHONY: k8s-apply
k8s-apply:
	kubectl --context '$(KUBE_CONTEXT)' -n $(K8S_NAMESPACE) delete job producer create-topics --ignore-not-found 2>/dev/null || true
	kubectl --context '$(KUBE_CONTEXT)' apply -k k8s/overlays/$(OVERLAY)
	kubectl --context '$(KUBE_CONTEXT)' -n $(K8S_NAMESPACE) rollout status statefulset/kafka --timeout=$(ROLLOUT_TIMEOUT)
	kubectl --context '$(KUBE_CONTEXT)' -n $(K8S_NAMESPACE) rollout status statefulset/postgres --timeout=$(ROLLOUT_TIMEOUT)
	kubectl --context '$(KUBE_CONTEXT)' -n $(K8S_NAMESPACE) rollout status deployment/schema-registry --timeout=$(ROLLOUT_TIMEOUT)
	kubectl --context '$(KUBE_CONTEXT)' -n $(K8S_NAMESPACE) wait --for=condition=complete job/create-topics --timeout=$(ROLLOUT_TIMEOUT)
	for role in ledger summary limits grafana; do \
	  kubectl --context '$(KUBE_CONTEXT)' -n $(K8S_NAMESPACE) rollout status "deployment/$$role" --timeout=$(ROLLOUT_TIMEOUT); \
	done
	kubectl --context '$(KUBE_CONTEXT)' -n $(K8S_NAMESPACE) wait --for=condition=complete job/producer --timeout=$(ROLLOUT_TIMEOUT)
	kubectl --context '$(KUBE_CONTEXT)' -n $(K8S_NAMESPACE) get pods,jobs,pvc

.PHONY: lint-deploy
lint-deploy: ## Check Dockerfile, compose and k8s statically (hadolint, dclint, kustomize, kubernetes-validate, tests/deploy)
	$(CARGO) build -q -p producer -p consumer
	bash dev/lint-deploy.sh
