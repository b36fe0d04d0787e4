"""The database roles' init script against a real PostgreSQL.

k8s/base/postgres-initdb/10-bankstream-roles.sh is what the postgres image runs from
/docker-entrypoint-initdb.d (compose bind-mounts it, Kubernetes mounts it from a ConfigMap).
Here it runs the way the image runs it, against a throwaway cluster: initdb with the superuser
`postgres` and a password file, the database POSTGRES_DB created by the superuser, then the
script, sourced by a `set -Eeo pipefail` bash (as the image does with a non-executable file, like
a ConfigMap's) and, for the re-run, executed (as with compose's executable bind mount), with the
passwords in files named by BANK_LEDGER_PASSWORD_FILE / BANK_READER_PASSWORD_FILE.

The roles are then checked over TCP with password (SCRAM) authentication, each as itself:
bank_ledger creates tables, owns the database and schema `public`, and is no superuser and cannot
create databases or roles; bank_reader reads a table bank_ledger created after the init, and
cannot write, create or drop anything, even with default_transaction_read_only switched off.

PostgreSQL binaries: $PG_BINDIR, else the newest /usr/lib/postgresql/*/bin, else `pg_config
--bindir`; without them the tests are skipped, saying why. As root, the cluster runs as the OS
user `postgres` (initdb refuses root).
"""

from __future__ import annotations

import glob
import os
import pwd
import re
import secrets
import shutil
import socket
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "k8s" / "base" / "postgres-initdb" / "10-bankstream-roles.sh"
DATABASE = "bank"
ADMIN = "postgres"
TIMEOUT = 60  # seconds, for any one command (pg_ctl waits at most this long too)


def find_bindir() -> Path | None:
    explicit = os.environ.get("PG_BINDIR")
    if explicit:
        return Path(explicit)
    candidates = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/initdb"),
        key=lambda p: int(re.search(r"/(\d+)/bin/", p).group(1)),
    )
    if candidates:
        return Path(candidates[-1]).parent
    if shutil.which("pg_config"):
        out = subprocess.run(["pg_config", "--bindir"], capture_output=True, text=True)
        if out.returncode == 0 and (Path(out.stdout.strip()) / "initdb").exists():
            return Path(out.stdout.strip())
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Cluster:
    bindir: Path
    directory: Path
    port: int
    os_user: str | None  # run server-side commands as this user (None: as ourselves)
    passwords: dict[str, str] = field(default_factory=dict, repr=False)

    @property
    def socket_dir(self) -> Path:
        return self.directory / "socket"

    def as_os_user(self, argv: list[str]) -> list[str]:
        return ["runuser", "-u", self.os_user, "--", *argv] if self.os_user else argv

    def run_server_side(self, argv: list[str], env: dict | None = None, stdin: str | None = None):
        environment = {
            "PATH": f"{self.bindir}:{os.environ.get('PATH', '/usr/bin:/bin')}",
            "LANG": "C.UTF-8",
            **(env or {}),
        }
        return subprocess.run(
            self.as_os_user(argv),
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
            env=environment,
            input=stdin,
            cwd=self.directory,
        )

    def write_secret(self, name: str, value: str) -> Path:
        """A password file as the image sees a compose secret or a mounted Secret."""
        path = self.directory / "secrets" / name
        path.parent.mkdir(exist_ok=True)
        path.unlink(missing_ok=True)  # an earlier one is read-only
        path.write_text(value)
        path.chmod(0o400)
        if self.os_user:
            entry = pwd.getpwnam(self.os_user)
            for p in (path.parent, path):
                os.chown(p, entry.pw_uid, entry.pw_gid)
        return path

    def init_env(self, ledger_file: Path | None, reader_file: Path | None) -> dict[str, str]:
        """What the image's entrypoint has in its environment when it runs the init scripts."""
        env = {
            "POSTGRES_USER": ADMIN,
            "POSTGRES_DB": DATABASE,
            "PGHOST": str(self.socket_dir),
            "PGPORT": str(self.port),
        }
        if ledger_file:
            env["BANK_LEDGER_PASSWORD_FILE"] = str(ledger_file)
        if reader_file:
            env["BANK_READER_PASSWORD_FILE"] = str(reader_file)
        return env

    def run_init(self, ledger: str | None, reader: str | None, *, sourced: bool):
        ledger_file = (
            self.write_secret("ledger_db_password", ledger) if ledger is not None else None
        )
        reader_file = (
            self.write_secret("reader_db_password", reader) if reader is not None else None
        )
        if sourced:
            # docker-entrypoint.sh: `set -Eeo pipefail`, then `. "$f"` for a non-executable *.sh.
            argv = [
                "bash",
                "-c",
                'set -Eeo pipefail; . "$0"; echo entrypoint-continued',
                str(SCRIPT),
            ]
        else:
            argv = [str(SCRIPT)]
        return self.run_server_side(argv, self.init_env(ledger_file, reader_file))

    def psql(self, role: str, sql: str, password: str | None = None, read_write: bool = False):
        """Runs sql as `role` over TCP with password authentication; returns the process.

        read_write: connect with default_transaction_read_only=off, as any role may ask."""
        env = {
            "PATH": f"{self.bindir}:{os.environ.get('PATH', '/usr/bin:/bin')}",
            "LANG": "C.UTF-8",
            "PGPASSWORD": password if password is not None else self.passwords[role],
            "PGCONNECT_TIMEOUT": "10",
            **({"PGOPTIONS": "-c default_transaction_read_only=off"} if read_write else {}),
        }
        return subprocess.run(
            [
                str(self.bindir / "psql"),
                "--no-psqlrc",
                "--no-password",
                "--quiet",
                "--tuples-only",
                "--no-align",
                "--set",
                "ON_ERROR_STOP=1",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--username",
                role,
                "--dbname",
                DATABASE,
                "--command",
                sql,
            ],
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
            env=env,
        )

    def ok(self, role: str, sql: str, **kwargs) -> str:
        proc = self.psql(role, sql, **kwargs)
        assert proc.returncode == 0, f"as {role}: {sql!r} failed: {proc.stderr.strip()}"
        return proc.stdout.strip()

    def refused(
        self, role: str, sql: str, reason: str | tuple = "permission denied", **kwargs
    ) -> str:
        """Runs sql as `role`, which must fail with one of the reasons (error message parts)."""
        proc = self.psql(role, sql, **kwargs)
        assert proc.returncode != 0, f"as {role}: {sql!r} succeeded, expected it to be refused"
        reasons = (reason,) if isinstance(reason, str) else reason
        assert any(r in proc.stderr for r in reasons), (
            f"as {role}: {sql!r} failed, but not with {reasons}: {proc.stderr}"
        )
        return proc.stderr


@pytest.fixture(scope="module")
def cluster():
    bindir = find_bindir()
    if bindir is None or not (bindir / "initdb").exists():
        pytest.skip(
            "no PostgreSQL server binaries (initdb, pg_ctl, psql): install the Debian package "
            "postgresql, or set PG_BINDIR; the init script was NOT tested"
        )
    os_user = None
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            pytest.fail("running as root, and there is no OS user `postgres` to run initdb as")
        os_user = "postgres"
    directory = Path(tempfile.mkdtemp(prefix="bankstream-pg-"))
    directory.chmod(0o700)
    if os_user:
        entry = pwd.getpwnam(os_user)
        os.chown(directory, entry.pw_uid, entry.pw_gid)
    cluster = Cluster(bindir, directory, free_port(), os_user)
    cluster.passwords[ADMIN] = secrets.token_hex(16)
    started = False
    try:
        cluster.socket_dir.mkdir()
        if os_user:
            os.chown(cluster.socket_dir, entry.pw_uid, entry.pw_gid)
        pwfile = cluster.write_secret("postgres_admin_password", cluster.passwords[ADMIN])
        # As the image's entrypoint: initdb --username=$POSTGRES_USER --pwfile=...; here the
        # host (TCP) connections need a password even from 127.0.0.1, so the checks below
        # really authenticate as each role.
        proc = cluster.run_server_side(
            [
                str(bindir / "initdb"),
                "--pgdata",
                str(directory / "data"),
                "--username",
                ADMIN,
                "--pwfile",
                str(pwfile),
                "--auth-local=trust",
                "--auth-host=scram-sha-256",
                "--encoding=UTF8",
                "--no-sync",
            ]
        )
        assert proc.returncode == 0, f"initdb failed:\n{proc.stdout}\n{proc.stderr}"
        # pg_ctl -w: returns once the server accepts connections, or fails after -t seconds.
        proc = cluster.run_server_side(
            [
                str(bindir / "pg_ctl"),
                "--pgdata",
                str(directory / "data"),
                "--log",
                str(directory / "server.log"),
                "-w",
                "-t",
                str(TIMEOUT),
                "start",
                "-o",
                f"-p {cluster.port} -k {cluster.socket_dir} -c listen_addresses=127.0.0.1",
            ]
        )
        started = proc.returncode == 0
        log = (directory / "server.log").read_text() if (directory / "server.log").exists() else ""
        assert started, f"pg_ctl start failed:\n{proc.stdout}\n{proc.stderr}\n{log}"
        ready = cluster.run_server_side(
            [str(bindir / "pg_isready"), "-h", "127.0.0.1", "-p", str(cluster.port), "-t", "30"]
        )
        assert ready.returncode == 0, f"pg_isready: {ready.stdout}{ready.stderr}"
        # The image then creates POSTGRES_DB as the superuser (docker_setup_db).
        proc = cluster.run_server_side(
            [
                str(bindir / "psql"),
                "-X",
                "-q",
                "-v",
                "ON_ERROR_STOP=1",
                "-h",
                str(cluster.socket_dir),
                "-p",
                str(cluster.port),
                "-U",
                ADMIN,
                "-d",
                "postgres",
                "-c",
                f'CREATE DATABASE "{DATABASE}"',
            ]
        )
        assert proc.returncode == 0, proc.stderr
        yield cluster
    finally:
        if started:
            cluster.run_server_side(
                [
                    str(bindir / "pg_ctl"),
                    "--pgdata",
                    str(directory / "data"),
                    "-w",
                    "-t",
                    str(TIMEOUT),
                    "-m",
                    "immediate",
                    "stop",
                ]
            )
        shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture(scope="module")
def initialised(cluster: Cluster) -> Cluster:
    ledger, reader = secrets.token_hex(16), secrets.token_hex(16)
    proc = cluster.run_init(ledger, reader, sourced=True)
    assert proc.returncode == 0, (
        f"init script failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
    )
    assert "entrypoint-continued" in proc.stdout, (
        "sourced, the script must return to the entrypoint"
    )
    for password in (ledger, reader):
        assert password not in proc.stdout + proc.stderr, "the init script printed a password"
    log = (cluster.directory / "server.log").read_text()
    assert ledger not in log and reader not in log, "a password reached the server log"
    cluster.passwords.update(bank_ledger=ledger, bank_reader=reader)
    return cluster


def test_ledger_is_no_superuser_and_cannot_create_databases_or_roles(initialised: Cluster):
    c = initialised
    attributes = c.ok(
        "bank_ledger",
        "select rolsuper, rolcreatedb, rolcreaterole, rolreplication, rolbypassrls, rolcanlogin"
        " from pg_roles where rolname = current_user",
    )
    assert attributes == "f|f|f|f|f|t", f"bank_ledger's attributes: {attributes}"
    assert c.ok("bank_ledger", "show is_superuser") == "off"
    c.refused("bank_ledger", "create database bank_other")
    c.refused("bank_ledger", "create role intruder login")
    c.refused("bank_ledger", "alter role bank_reader with password 'x'")
    # PostgreSQL 15 says "must be superuser to alter superuser roles ...", 16+ "permission denied".
    c.refused(
        "bank_ledger",
        "alter role bank_ledger superuser",
        ("must be superuser", "permission denied"),
    )
    # The only superuser is the admin account.
    supers = c.ok(ADMIN, "select string_agg(rolname, ',') from pg_roles where rolsuper")
    assert supers == ADMIN


def test_ledger_owns_the_database_and_schema_and_creates_tables(initialised: Cluster):
    c = initialised
    owners = c.ok(
        "bank_ledger",
        "select pg_get_userbyid(d.datdba), pg_get_userbyid(n.nspowner) from pg_database d,"
        " pg_namespace n where d.datname = current_database() and n.nspname = 'public'",
    )
    assert owners == "bank_ledger|bank_ledger"
    c.ok(
        "bank_ledger",
        "create table public.accounts_probe (id bigint primary key, balance_cents bigint not null);"
        " create index on accounts_probe (balance_cents);"
        " alter table accounts_probe add column note text;"
        " insert into accounts_probe values (1, 100, 'a'), (2, 200, 'b');"
        " update accounts_probe set balance_cents = 150 where id = 1;"
        " delete from accounts_probe where id = 2;",
    )
    assert c.ok("bank_ledger", "select count(*) from accounts_probe") == "1"


def test_reader_reads_tables_the_ledger_creates_after_the_init(initialised: Cluster):
    c = initialised
    c.ok(
        "bank_ledger",
        "create table transactions_probe (id text primary key, amount_cents bigint);"
        " insert into transactions_probe values ('tx-1', 500);",
    )
    assert c.ok("bank_reader", "select id, amount_cents from transactions_probe") == "tx-1|500"
    assert c.ok("bank_reader", "show default_transaction_read_only") == "on"
    attributes = c.ok(
        "bank_reader",
        "select rolsuper, rolcreatedb, rolcreaterole, rolreplication, rolbypassrls"
        " from pg_roles where rolname = current_user",
    )
    assert attributes == "f|f|f|f|f"


@pytest.mark.parametrize(
    "statement",
    [
        "insert into transactions_probe values ('tx-2', 1)",
        "update transactions_probe set amount_cents = 0",
        "delete from transactions_probe",
        "truncate transactions_probe",
        "create table public.reader_table (x int)",
        "create schema reader_schema",
        "create temporary table reader_temp (x int)",
        "alter table transactions_probe add column x int",
        "drop table transactions_probe",
    ],
)
def test_reader_cannot_write_or_create(initialised: Cluster, statement: str):
    c = initialised
    c.ok(
        "bank_ledger",
        "create table if not exists transactions_probe (id text primary key, amount_cents bigint)",
    )
    # With its default (read-only transactions), and with that switched off: the privileges
    # alone refuse it.
    c.refused("bank_reader", statement, "read-only transaction")
    assert c.ok("bank_reader", "show default_transaction_read_only", read_write=True) == "off"
    c.refused(
        "bank_reader",
        statement,
        "must be owner" if statement.startswith(("alter", "drop")) else "permission denied",
        read_write=True,
    )


def test_passwords_are_checked(initialised: Cluster):
    c = initialised
    for role in ("bank_ledger", "bank_reader"):
        c.refused(role, "select 1", "password authentication failed", password="wrong")
    # Each role's password is its own.
    c.refused(
        "bank_ledger",
        "select 1",
        "password authentication failed",
        password=c.passwords["bank_reader"],
    )


@pytest.mark.parametrize(
    "ledger, reader, message",
    [
        (None, "r-" + "1" * 20, "BANK_LEDGER_PASSWORD_FILE"),
        ("l-" + "1" * 20, None, "BANK_READER_PASSWORD_FILE"),
        ("", "r-" + "1" * 20, "must give a non-empty password"),
        ("same-" + "2" * 20, "same-" + "2" * 20, "must differ"),
    ],
    ids=["ledger-missing", "reader-missing", "ledger-empty", "same-passwords"],
)
def test_init_script_fails_loudly(initialised: Cluster, ledger, reader, message):
    c = initialised
    secrets_dir = c.directory / "secrets"
    for name in ("ledger_db_password", "reader_db_password"):
        (secrets_dir / name).unlink(missing_ok=True)
    for sourced in (True, False):
        proc = c.run_init(ledger, reader, sourced=sourced)
        assert proc.returncode != 0, f"sourced={sourced}: the init script accepted bad passwords"
        assert "entrypoint-continued" not in proc.stdout, (
            "sourced, a failure must stop the entrypoint"
        )
        assert message in proc.stderr and "FAILED" in proc.stderr, proc.stderr
        for password in (ledger, reader):
            assert not password or password not in proc.stdout + proc.stderr
    # Nothing changed: the roles still log in with their passwords.
    c.ok("bank_ledger", "select 1")
    c.ok("bank_reader", "select 1")


def test_consumer_migrate_as_bank_ledger_and_reader_sees_its_tables(initialised: Cluster):
    """The real migrations, when a consumer binary is built (optional: skipped otherwise)."""
    c = initialised
    consumer = Path(os.environ.get("CONSUMER_BIN", ROOT / "target" / "debug" / "consumer"))
    if not os.access(consumer, os.X_OK):
        pytest.skip(f"{consumer} is not built; the schema's own migrations were not run")
    url = f"postgres://bank_ledger:{c.passwords['bank_ledger']}@127.0.0.1:{c.port}/{DATABASE}"
    proc = subprocess.run(
        [str(consumer), "migrate"],
        capture_output=True,
        text=True,
        timeout=120,
        env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "DATABASE_URL": url},
    )
    assert proc.returncode == 0, f"consumer migrate as bank_ledger failed:\n{proc.stderr}"
    tables = c.ok(
        "bank_ledger",
        "select string_agg(tablename, ',' order by tablename) from pg_tables"
        " where schemaname = 'public' and tableowner = 'bank_ledger'",
    ).split(",")
    assert "accounts" in tables and "transactions" in tables, tables
    c.ok("bank_reader", "select count(*) from accounts")
    c.ok("bank_reader", "select count(*) from transactions")
    c.refused("bank_reader", "delete from accounts", read_write=True)


def test_init_script_runs_again_executed_and_rotates_passwords(initialised: Cluster):
    """Last: a second run (executed, as compose's bind mount is) keeps data and grants."""
    c = initialised
    c.ok(
        "bank_ledger",
        "create table if not exists rotation_probe (x int); insert into rotation_probe values (7)",
    )
    old = dict(c.passwords)
    ledger, reader = secrets.token_hex(16), secrets.token_hex(16)
    assert os.access(SCRIPT, os.X_OK), f"{SCRIPT} must be executable (compose mounts it as is)"
    proc = c.run_init(ledger, reader, sourced=False)
    assert proc.returncode == 0, f"second run failed:\n{proc.stdout}\n{proc.stderr}"
    c.passwords.update(bank_ledger=ledger, bank_reader=reader)
    c.refused(
        "bank_ledger", "select 1", "password authentication failed", password=old["bank_ledger"]
    )
    c.refused(
        "bank_reader", "select 1", "password authentication failed", password=old["bank_reader"]
    )
    assert c.ok("bank_reader", "select x from rotation_probe") == "7"
    c.ok("bank_ledger", "create table after_rerun (x int); insert into after_rerun values (8)")
    assert c.ok("bank_reader", "select x from after_rerun") == "8"
    acl = c.ok(
        ADMIN,
        "select count(*) from pg_default_acl a join pg_namespace n on n.oid = a.defaclnamespace"
        " where pg_get_userbyid(a.defaclrole) = 'bank_ledger' and n.nspname = 'public'",
        password=c.passwords[ADMIN],
    )
    assert acl == "1", "the re-run must not duplicate the default privileges"
