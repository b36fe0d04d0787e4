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

.PHONY: build
build: ## Build the producer and consumer (debug)
	$(CARGO) build --workspace --all-targets

.PHONY: release
release: ## Build optimised binaries into target/release
	$(CARGO) build --workspace --release

.PHONY: lint
lint: ## cargo fmt --check and clippy -D warnings
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

.PHONY: test
test: build stack-up interop-env ## Start the native stack if needed, run every test against it
	$(CARGO) test --workspace
	$(VENV)/bin/python -m pytest -q tests/interop

.PHONY: interop-env
interop-env: $(VENV)/.installed ## Python venv with Confluent's client, for the interop tests

$(VENV)/.installed: tests/interop/requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --disable-pip-version-check -r tests/interop/requirements.txt
	touch $@

.PHONY: roundtrip
roundtrip: stack-up ## Main job (for now): register schemas, produce one event of each kind, consume and print them
	$(CARGO) build -q -p producer -p consumer
	run=roundtrip.$$(date +%s); \
	./target/debug/producer sample -t $$run.transactions --customers-topic $$run.customers && \
	./target/debug/consumer dump --count 2 --idle-timeout-secs 60 -t $$run.transactions --customers-topic $$run.customers

.PHONY: stack-up
stack-up: ## Start Kafka, the schema registry and PostgreSQL natively (idempotent)
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
