#!/usr/bin/env python3
"""`make compose-smoke`: the compose deployment started for real and checked end to end.

Run by dev/compose-smoke.sh, which has set up the engine, built our images and the stand-ins for
the third-party ones, and passes their compose variables in the environment (KAFKA_IMAGE, ...).
Everything here goes through the docker CLI and `docker compose`, as a user would; nothing of the
project's own code judges the result: the topic is read back by a separate one-off container,
the ledger's rows by psql, users and read-only roots from the engine and the host's /proc.

Checks, in order: `up --wait` returns with every service healthy (the one-shot create-topics
exited 0); our containers run as a non-root user on a read-only root filesystem; the producer's
transactions reach the ledger's PostgreSQL; once the producer stops, the ledger equals the topic
exactly (per account and kind: rows, distinct transaction ids, sum of cents) and the dead-letter
topics are empty; `docker compose stop` ends the ledger with exit 0 and its group's committed
offsets at the end of every partition; `down -v` removes everything. Exit status 0 only if all
hold; on a failure the services' logs are printed.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PROJECT = os.environ.get("SMOKE_PROJECT", "bankstream-smoke")
OURS = ("producer", "consumer-ledger", "consumer-summary", "consumer-limits")
ROLES = ("consumer-ledger", "consumer-summary", "consumer-limits")
STAND_IN_VARIABLES = ("KAFKA_IMAGE", "POSTGRES_IMAGE", "SCHEMA_REGISTRY_IMAGE", "SCHEMA_REGISTRY_URL")
UP_TIMEOUT = int(os.environ.get("SMOKE_UP_TIMEOUT", "420"))
MIN_ROWS = int(os.environ.get("SMOKE_MIN_ROWS", "300"))


class SmokeFailure(Exception):
    pass


def say(message: str) -> None:
    print(f"compose-smoke: {message}", flush=True)


def run(args: list[str], *, check: bool = True, timeout: float = 600) -> subprocess.CompletedProcess:
    done = subprocess.run(args, cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    if check and done.returncode != 0:
        raise SmokeFailure(f"{' '.join(args)} exited {done.returncode}:\n{done.stdout[-3000:]}{done.stderr[-3000:]}")
    return done


def wait_until(what: str, timeout: float, probe):
    """Polls probe() until it returns something truthy; fails naming `what` after timeout."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = probe()
        if last:
            return last
        time.sleep(1)
    raise SmokeFailure(f"timed out after {timeout:.0f} s waiting for {what} (last: {last!r})")


def engine_is_podman() -> bool:
    out = run(["docker", "version"], check=False).stdout
    return "podman" in out.lower()


class Compose:
    def __init__(self, env_file: Path):
        self.base = ["docker", "compose", "--env-file", str(env_file), "-p", PROJECT, "-f", "compose/docker-compose.yml"]
        if engine_is_podman():
            self.base += ["-f", "tests/deploy/compose-smoke.override.yml"]

    def __call__(self, *args: str, check: bool = True, timeout: float = 600) -> subprocess.CompletedProcess:
        return run([*self.base, *args], check=check, timeout=timeout)

    def containers(self) -> list[dict]:
        out = self("ps", "--all", "--format", "json").stdout.strip()
        if not out:
            return []
        if out.startswith("["):
            return json.loads(out)
        return [json.loads(line) for line in out.splitlines() if line.strip()]

    def container_id(self, service: str) -> str:
        ids = self("ps", "--all", "-q", service).stdout.split()
        if len(ids) != 1:
            raise SmokeFailure(f"expected one container of {service}, found {ids}")
        return ids[0]

    def psql(self, sql: str) -> list[list[str]]:
        # On the container's Unix socket as the image's superuser: an independent reader.
        out = self("exec", "-T", "postgres", "psql", "-U", "postgres", "-d", "bank", "-tA", "-F", ",", "-c", sql).stdout
        return [line.split(",") for line in out.splitlines() if line.strip()]

    def kafka_tool(self, tool: str, *args: str) -> str:
        # The HOST listener advertises localhost:29092, so inside the broker's container the
        # tools need no name resolution (the container's own DNS name failed once here).
        return self("exec", "-T", "kafka", f"/opt/kafka/bin/{tool}", "--bootstrap-server", "localhost:29092", *args).stdout


def inspect(container: str) -> dict:
    return json.loads(run(["docker", "inspect", container]).stdout)[0]


def write_env_file(directory: Path) -> Path:
    """Fresh passwords for this run only, and the stand-ins' variables from the environment."""
    values = {
        "POSTGRES_ADMIN_PASSWORD": secrets.token_hex(16),
        "LEDGER_DB_PASSWORD": secrets.token_hex(16),
        "READER_DB_PASSWORD": secrets.token_hex(16),
        "GRAFANA_ADMIN_PASSWORD": secrets.token_hex(16),
        "BRANCHES": "3",
        "CUSTOMERS": "20",
        "RATE": os.environ.get("SMOKE_RATE", "100"),
    }
    for name in STAND_IN_VARIABLES:
        if os.environ.get(name):
            values[name] = os.environ[name]
    path = directory / "smoke.env"
    path.write_text("".join(f"{k}={v}\n" for k, v in values.items()))
    path.chmod(0o600)
    return path


def check_healthy(compose: Compose) -> None:
    states = {c["Service"]: c for c in compose.containers()}
    missing = [s for s in (*OURS, "kafka", "postgres", "schema-registry", "create-topics") if s not in states]
    if missing:
        raise SmokeFailure(f"services without a container: {missing}")
    for service, c in sorted(states.items()):
        if service == "create-topics":
            if c.get("State") != "exited" or int(c.get("ExitCode", -1)) != 0:
                raise SmokeFailure(f"create-topics: {c.get('State')} exit {c.get('ExitCode')}")
            continue
        health = c.get("Health") or ""
        if c.get("State") != "running" or health not in ("healthy", ""):
            raise SmokeFailure(f"{service}: state {c.get('State')}, health {health!r}")
        has_check = inspect(c["ID"])["Config"].get("Healthcheck")
        if has_check and health != "healthy":
            raise SmokeFailure(f"{service}: has a healthcheck but is {health!r}")
        say(f"  {service:18} running{', healthy' if health else ' (no healthcheck)'}")


def check_non_root_read_only(compose: Compose) -> None:
    for service in OURS:
        info = inspect(compose.container_id(service))
        user = info["Config"].get("User") or ""
        if user in ("", "0", "root") or user.startswith(("0:", "root:")):
            raise SmokeFailure(f"{service}: runs as {user!r}")
        if not info["HostConfig"].get("ReadonlyRootfs"):
            raise SmokeFailure(f"{service}: the root filesystem is writable")
        pid = info["State"]["Pid"]
        uid_line = next(l for l in Path(f"/proc/{pid}/status").read_text().splitlines() if l.startswith("Uid:"))
        uids = set(uid_line.split()[1:])
        if "0" in uids:
            raise SmokeFailure(f"{service}: process {pid} has uid 0 ({uid_line})")
        say(f"  {service:18} user {user}, process uid {uid_line.split()[1]}, read-only root")


def ledger_rows(compose: Compose) -> int:
    rows = compose.psql("select count(*) from transactions")
    return int(rows[0][0]) if rows else 0


def topic_totals(compose: Compose) -> Counter:
    """Reads bank.transactions from the start in a one-off container of our image (no group)."""
    # Plain `docker run` on the project's network: `compose run` would rebuild (pull_policy: build).
    registry = os.environ.get("SCHEMA_REGISTRY_URL") or "http://schema-registry:8081"
    out = run([
        "docker", "run", "--rm", "--read-only", "--network", f"{PROJECT}_default",
        "-e", "KAFKA_BOOTSTRAP_SERVERS=kafka:9092", "-e", f"SCHEMA_REGISTRY_URL={registry}",
        "bankstream/consumer:dev", "view", "transactions", "--from", "earliest", "--format", "csv",
        "--columns", "transaction_id,account_number,kind,amount_cents", "--idle-timeout-secs", "5",
    ]).stdout
    totals: Counter = Counter()
    ids: dict[tuple[str, str], set[str]] = {}
    lines = [l for l in out.splitlines() if l.strip()]
    if not lines or not lines[0].startswith("transaction_id"):
        raise SmokeFailure(f"view printed no CSV header: {out[:500]!r}")
    for line in lines[1:]:
        tx_id, account, kind, cents = line.split(",")
        key = (account, kind.lower())
        totals[(*key, "rows")] += 1
        totals[(*key, "cents")] += int(cents)
        ids.setdefault(key, set()).add(tx_id)
    for key, seen in ids.items():
        totals[(*key, "distinct")] = len(seen)
    return totals


def ledger_totals(compose: Compose) -> Counter:
    totals: Counter = Counter()
    for account, kind, rows, distinct, cents in compose.psql(
        "select account_number, lower(kind), count(*), count(distinct transaction_id), sum(amount_cents) "
        "from transactions group by 1, 2"
    ):
        totals[(account, kind, "rows")] = int(rows)
        totals[(account, kind, "distinct")] = int(distinct)
        totals[(account, kind, "cents")] = int(cents)
    return totals


def end_offsets(compose: Compose, topic: str) -> dict[int, int]:
    out = compose.kafka_tool("kafka-get-offsets.sh", "--topic", topic, "--time", "-1")
    offsets = {}
    for line in out.split():
        _, partition, offset = line.rsplit(":", 2)
        offsets[int(partition)] = int(offset)
    return offsets


def committed_offsets(compose: Compose, group: str, topic: str) -> dict[int, int]:
    out = compose.kafka_tool("kafka-consumer-groups.sh", "--describe", "--group", group)
    committed = {}
    for line in out.splitlines():
        fields = line.split()
        if len(fields) >= 4 and fields[1] == topic and fields[3].isdigit():
            committed[int(fields[2])] = int(fields[3])
    return committed


def exit_code(compose: Compose, service: str) -> int:
    state = inspect(compose.container_id(service))["State"]
    if state.get("Running"):
        raise SmokeFailure(f"{service} is still running")
    return int(state["ExitCode"])


def smoke(compose: Compose) -> None:
    started = time.monotonic()
    say("docker compose up --wait")
    compose("up", "-d", "--no-build", "--wait", "--wait-timeout", str(UP_TIMEOUT), timeout=UP_TIMEOUT + 60)
    say(f"up in {time.monotonic() - started:.0f} s; every service:")
    check_healthy(compose)
    check_non_root_read_only(compose)

    rows = wait_until(f"{MIN_ROWS} rows in the ledger", 180, lambda: (n := ledger_rows(compose)) >= MIN_ROWS and n)
    say(f"the ledger holds {rows} rows while the producer runs")
    compose("stop", "producer")
    code = exit_code(compose, "producer")
    if code != 0:
        raise SmokeFailure(f"the producer exited {code} on docker compose stop")

    expected = topic_totals(compose)
    sent = sum(v for (_, _, what), v in expected.items() if what == "rows")
    wait_until("the ledger to hold every transaction of the topic", 120, lambda: ledger_rows(compose) >= sent)
    stored = ledger_totals(compose)
    if stored != expected:
        differ = sorted(k for k in set(stored) | set(expected) if stored[k] != expected[k])
        raise SmokeFailure(f"ledger != topic for {len(differ)} figures, e.g. " + ", ".join(
            f"{k}: ledger {stored[k]} topic {expected[k]}" for k in differ[:5]))
    accounts = len({k[0] for k in expected})
    say(f"reconciled: {sent} transactions over {accounts} accounts, ledger == topic (rows, distinct ids, cents)")
    for dlq in ("bank.transactions.dlq", "bank.customers.dlq"):
        if sum(end_offsets(compose, dlq).values()) != 0:
            raise SmokeFailure(f"{dlq} is not empty")

    compose("stop", "consumer-ledger")
    code = exit_code(compose, "consumer-ledger")
    if code != 0:
        raise SmokeFailure(f"the ledger exited {code} on docker compose stop")
    ends = end_offsets(compose, "bank.transactions")
    committed = committed_offsets(compose, "bank-ledger", "bank.transactions")
    if committed != ends:
        raise SmokeFailure(f"bank-ledger's committed offsets {committed} != end offsets {ends}")
    say(f"the ledger stopped with exit 0, committed offsets at the end of every partition {ends}")

    compose("stop")
    for service in ROLES:
        code = exit_code(compose, service)
        if code != 0:
            raise SmokeFailure(f"{service} exited {code} on docker compose stop")
    say("docker compose stop: every role exited 0")


def main() -> int:
    with tempfile.TemporaryDirectory(prefix="compose-smoke-") as tmp:
        compose = Compose(write_env_file(Path(tmp)))
        compose("down", "-v", "--remove-orphans", check=False)
        try:
            smoke(compose)
        except (SmokeFailure, subprocess.TimeoutExpired) as failure:
            print(f"compose-smoke: FAILED: {failure}", file=sys.stderr)
            print(compose("ps", "--all", check=False).stdout, file=sys.stderr)
            print(compose("logs", "--no-color", "--tail", "60", check=False).stdout[-20000:], file=sys.stderr)
            return 1
        finally:
            compose("down", "-v", "--remove-orphans", check=False)
            say("docker compose down -v: done")
    say("passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
