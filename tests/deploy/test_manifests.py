"""The deployment manifests cannot drift from the code.

Every producer/consumer container declared in compose/docker-compose.yml and in the rendered
Kubernetes overlays (k8s/overlays/*) is checked against the binary it runs:

- its subcommand exists and every flag it passes is one `<binary> <subcommand> --help` lists;
- every environment variable it gets (inline, env_file, ConfigMap/Secret envFrom, secretKeyRef)
  is one the subcommand documents (`[env: NAME]` in --help, or "set NAME" for the variables read
  straight from the environment such as SCHEMA_REGISTRY_PASSWORD);
- the ports of its probes, healthcheck, Services, published ports, Prometheus targets and the
  Dockerfile's EXPOSE are the port of its HTTP_ADDR.

Plus the invariants that tie the files together: topics created with as many partitions as the
producer has branches, each database password in one place, the Dockerfile's targets, user and
build command, the restricted Pod Security Standard, least privilege (no client connects as the
PostgreSQL superuser: the ledger as bank_ledger, Grafana as the read-only bank_reader and with
anonymous access off; passwords only in Secrets and compose/.env), and (when the package is
installed) every rendered object against the Kubernetes schemas of kubernetes-validate. The
roles' init script itself runs against a real PostgreSQL in test_postgres_roles.py.

Binaries: $PRODUCER_BIN and $CONSUMER_BIN (default $CARGO_TARGET_DIR/$CARGO_PROFILE_DIR, i.e.
target/debug; build them first). Kubernetes
rendering: $KUSTOMIZE, `kustomize` on PATH or in ~/go/bin, else `kubectl kustomize`; the
Kubernetes checks are skipped, saying so, when none is available (dev/lint-deploy.sh installs
kustomize).
"""

from __future__ import annotations

import base64
import fnmatch
import functools
import json
import os
import re
import shlex
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "compose" / "docker-compose.yml"
PROMETHEUS_FILE = ROOT / "compose" / "prometheus" / "prometheus.yml"
DOCKERFILE = ROOT / "docker" / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
OVERLAYS = ("kind", "minikube")
# Kubernetes versions the rendered objects are validated against (kubernetes-validate bundles
# their schemas): an older one still common on kind/minikube, the one current kind and minikube
# start by default, and the newest the installed kubernetes-validate knows.
K8S_VERSIONS = ("1.30.0", "1.34.0", "latest")

_TARGET = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target")) / os.environ.get(
    "CARGO_PROFILE_DIR", "debug"
)
BINARIES = {
    name: Path(os.environ.get(f"{name.upper()}_BIN", _TARGET / name))
    for name in ("producer", "consumer")
}
# Image repository -> the binary its ENTRYPOINT runs (docker/Dockerfile).
IMAGE_BINARY = {"bankstream/producer": "producer", "bankstream/consumer": "consumer"}
# Our images run as this user (Dockerfile `USER`), and the pods must say so too.
APP_UID = 10001


# --------------------------------------------------------------------------------------------
# What the binaries accept


@dataclass(frozen=True)
class Help:
    command: str
    text: str
    env: frozenset[str]
    flags: frozenset[str]
    env_defaults: dict[str, str]


@functools.cache
def cli_help(binary: str, subcommand: str) -> Help:
    path = BINARIES[binary]
    if not path.is_file():
        pytest.fail(
            f"{path} does not exist: build the binaries first (`make build`), or point "
            f"{binary.upper()}_BIN at them"
        )
    # A clean environment, so clap prints its defaults rather than values of this shell.
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8"}
    proc = subprocess.run(
        [str(path), subcommand, "--help"],
        capture_output=True,
        text=True,
        timeout=30,
        env=env,
    )
    command = f"{binary} {subcommand}"
    if proc.returncode != 0:
        pytest.fail(
            f"`{command}` does not exist in {path}: `{command} --help` exited "
            f"{proc.returncode}: {proc.stderr.strip()}"
        )
    text = proc.stdout
    names = set(re.findall(r"\[env: ([A-Z][A-Z0-9_]*)", text))
    # Variables read straight from the environment, mentioned in a flag's help text,
    # e.g. "File holding the registry password; or set SCHEMA_REGISTRY_PASSWORD".
    names |= set(re.findall(r"\bset ([A-Z][A-Z0-9]*_[A-Z0-9_]*[A-Z0-9])\b", text))
    flags = set()
    for line in text.splitlines():
        match = re.match(r"^\s+(?:(-[A-Za-z0-9]), )?(--[a-z0-9][a-z0-9-]*)", line)
        if match:
            flags.update(flag for flag in match.groups() if flag)
    defaults = dict(re.findall(r"\[env: ([A-Z][A-Z0-9_]*)=?[^\]]*\]\s+\[default: ([^\]]+)\]", text))
    return Help(command, text, frozenset(names), frozenset(flags), defaults)


def port_of(address: str) -> int:
    """The port of a host:port socket address, e.g. 0.0.0.0:9090 or [::]:9090."""
    match = re.fullmatch(r".*:(\d+)", address.strip())
    assert match, f"not a host:port address: {address!r}"
    return int(match.group(1))


# --------------------------------------------------------------------------------------------
# The containers that run our binaries


@dataclass(repr=False)
class Container:
    id: str  # for test ids and messages
    platform: str  # "compose" or "k8s:<overlay>"
    binary: str
    argv: list[str]  # what follows the binary (ENTRYPOINT)
    env: dict[str, str | None]  # name -> value (None: from a secret or the downward API)
    env_sources: dict[str, str] = field(default_factory=dict)  # name -> where it came from
    raw: dict = field(default_factory=dict)  # the compose service or the k8s container
    template_labels: dict = field(default_factory=dict)  # labels of the k8s pod template

    def __repr__(self) -> str:
        return f"<{self.id}: {self.binary} {' '.join(self.argv)}>"

    @property
    def subcommand(self) -> str:
        positional = [arg for arg in self.argv if not arg.startswith("-")]
        assert positional, f"{self.id}: no subcommand in {self.argv}"
        return positional[0]

    def flags(self) -> list[str]:
        return [
            arg.split("=", 1)[0]
            for arg in self.argv
            # A negative number is a value (e.g. after --limit), not a flag.
            if arg.startswith("-") and not re.match(r"^-\d", arg)
        ]


def image_repository(image: str) -> str:
    image = image.split("@", 1)[0]
    last = image.rsplit("/", 1)[-1]
    if ":" in last:
        image = image[: image.rfind(":")]
    return image


def load_yaml(path: Path) -> dict:
    with path.open() as f:
        return yaml.safe_load(f)


IMAGE_VARIABLE = re.compile(r"^\$\{([A-Z][A-Z0-9_]*):-([^}]+)\}$")


@functools.cache
def compose() -> dict:
    """The compose file, with each service's image variable resolved to its default (the public
    image), as `docker compose` resolves it when the variable is unset."""
    doc = load_yaml(COMPOSE_FILE)
    for service in doc.get("services", {}).values():
        match = IMAGE_VARIABLE.match(str(service.get("image", "")))
        if match:
            service["image"] = match.group(2)
    return doc


def parse_env_file(path: Path) -> dict[str, str]:
    values = {}
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#") and "=" in line:
            key, value = line.split("=", 1)
            values[key.removeprefix("export ").strip()] = value
    return values


def compose_containers() -> list[Container]:
    result = []
    for name, service in compose()["services"].items():
        build = service.get("build") or {}
        target = build.get("target") if isinstance(build, dict) else None
        binary = IMAGE_BINARY.get(image_repository(service.get("image", ""))) or (
            target if target in BINARIES else None
        )
        if binary is None:
            continue
        if target is not None:
            assert target == binary, (
                f"compose service {name}: image {service['image']} built from target {target}"
            )
        entrypoint = service.get("entrypoint")
        assert entrypoint is None, (
            f"compose service {name}: keep the image's ENTRYPOINT ({binary}), got {entrypoint}"
        )
        command = service.get("command") or []
        argv = shlex.split(command) if isinstance(command, str) else [str(arg) for arg in command]
        env: dict[str, str | None] = {}
        sources: dict[str, str] = {}
        env_files = service.get("env_file") or []
        for entry in [env_files] if isinstance(env_files, (str, dict)) else env_files:
            relative = entry["path"] if isinstance(entry, dict) else entry
            path = COMPOSE_FILE.parent / relative
            if not path.exists() and Path(f"{path}.example").exists():
                path = Path(f"{path}.example")  # the documented template of a git-ignored file
            assert path.exists(), f"compose service {name}: env_file {relative} not found"
            for key, value in parse_env_file(path).items():
                env[key], sources[key] = value, f"env_file {relative}"
        environment = service.get("environment") or {}
        if isinstance(environment, list):
            environment = dict(
                item.split("=", 1) if "=" in item else (item, None) for item in environment
            )
        for key, value in environment.items():
            env[key], sources[key] = (None if value is None else str(value)), "environment"
        result.append(
            Container(f"compose:{name}", "compose", binary, argv, env, sources, raw=service)
        )
    return result


def find_kustomize() -> list[str] | None:
    explicit = os.environ.get("KUSTOMIZE")
    if explicit:
        if not shutil.which(explicit):
            pytest.fail(f"KUSTOMIZE={explicit} is not an executable")
        return [explicit]
    for candidate in (shutil.which("kustomize"), Path.home() / "go" / "bin" / "kustomize"):
        if candidate and Path(candidate).is_file():
            return [str(candidate)]
    if shutil.which("kubectl"):
        return ["kubectl", "kustomize"]
    return None


@functools.cache
def rendered(overlay: str) -> list[dict]:
    tool = find_kustomize()
    if tool is None:
        pytest.skip(
            "no kustomize: install it (dev/lint-deploy.sh does) or set KUSTOMIZE; the "
            "Kubernetes manifests were NOT checked"
        )
    path = str(ROOT / "k8s" / "overlays" / overlay)
    argv = [*tool, path] if tool == ["kubectl", "kustomize"] else [*tool, "build", path]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, f"kustomize build k8s/overlays/{overlay} failed:\n{proc.stderr}"
    return [doc for doc in yaml.safe_load_all(proc.stdout) if doc]


def pod_spec(obj: dict) -> dict | None:
    kind = obj.get("kind")
    if kind in ("Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job"):
        return obj["spec"]["template"]["spec"]
    if kind == "CronJob":
        return obj["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    if kind == "Pod":
        return obj["spec"]
    return None


def template_labels(obj: dict) -> dict:
    if obj.get("kind") == "Pod":
        return obj["metadata"].get("labels", {})
    if obj.get("kind") == "CronJob":
        return obj["spec"]["jobTemplate"]["spec"]["template"]["metadata"].get("labels", {})
    return obj["spec"]["template"]["metadata"].get("labels", {})


def by_kind_name(docs: list[dict], kind: str, name: str) -> dict:
    for doc in docs:
        if doc.get("kind") == kind and doc["metadata"]["name"] == name:
            return doc
    raise AssertionError(f"{kind} {name} is referenced but not in the rendered manifests")


def secret_data(secret: dict) -> dict[str, str]:
    values = {k: base64.b64decode(v).decode() for k, v in (secret.get("data") or {}).items()}
    values.update(secret.get("stringData") or {})
    return values


def k8s_containers(overlay: str) -> list[Container]:
    docs = rendered(overlay)
    result = []
    for obj in docs:
        spec = pod_spec(obj)
        if spec is None:
            continue
        for containers in (spec.get("containers", []), spec.get("initContainers", [])):
            for c in containers:
                binary = IMAGE_BINARY.get(image_repository(c["image"]))
                if binary is None:
                    continue
                where = f"k8s:{overlay}:{obj['kind']}/{obj['metadata']['name']}/{c['name']}"
                command = [str(a) for a in c.get("command") or []]
                if command:
                    assert Path(command[0]).name == binary, (
                        f"{where}: command {command} does not run {binary}"
                    )
                argv = command[1:] + [str(a) for a in c.get("args") or []]
                env: dict[str, str | None] = {}
                sources: dict[str, str] = {}
                for source in c.get("envFrom") or []:
                    prefix = source.get("prefix", "")
                    if "configMapRef" in source:
                        ref = source["configMapRef"]["name"]
                        data = by_kind_name(docs, "ConfigMap", ref).get("data") or {}
                        origin = f"ConfigMap {ref}"
                    else:
                        ref = source["secretRef"]["name"]
                        data = secret_data(by_kind_name(docs, "Secret", ref))
                        origin = f"Secret {ref}"
                    for key, value in data.items():
                        env[prefix + key], sources[prefix + key] = value, origin
                for var in c.get("env") or []:
                    env[var["name"]], sources[var["name"]] = var.get("value"), "env"
                result.append(
                    Container(
                        where,
                        f"k8s:{overlay}",
                        binary,
                        argv,
                        env,
                        sources,
                        raw=c,
                        template_labels=template_labels(obj),
                    )
                )
    return result


def all_containers() -> list[Container]:
    containers = compose_containers()
    for overlay in OVERLAYS:
        try:
            containers += k8s_containers(overlay)
        except pytest.skip.Exception:
            pass  # reported by test_kubernetes_manifests_render
    return containers


COLLECTION_ERROR: list[str] = []


def container_params():
    try:
        containers = all_containers()
    except Exception as error:  # reported by the tests below (container None), not swallowed
        COLLECTION_ERROR.append(f"{type(error).__name__}: {error}")
        return [pytest.param(None, id="manifests-unreadable")]
    return [pytest.param(c, id=c.id) for c in containers]


CONTAINERS = container_params()


def require(container: Container | None) -> Container:
    if container is None:
        pytest.fail(f"could not read the manifests: {COLLECTION_ERROR[0]}")
    return container


# --------------------------------------------------------------------------------------------
# Per container: subcommand, flags, environment, ports


@pytest.mark.parametrize("container", CONTAINERS)
def test_subcommand_flags_and_environment_are_documented(container: Container):
    container = require(container)
    cli = cli_help(container.binary, container.subcommand)
    unknown_flags = [flag for flag in container.flags() if flag not in cli.flags]
    assert not unknown_flags, (
        f"{container.id}: `{cli.command}` has no flag(s) {unknown_flags} (its --help lists "
        f"{sorted(cli.flags)})"
    )
    unknown_env = {
        name: container.env_sources.get(name, "?") for name in container.env if name not in cli.env
    }
    assert not unknown_env, (
        f"{container.id}: `{cli.command}` does not read {sorted(unknown_env)} "
        f"(set from {unknown_env}); it documents {sorted(cli.env)}"
    )


def http_port(container: Container) -> int | None:
    """The port of the container's HTTP endpoint, or None if its subcommand has none."""
    cli = cli_help(container.binary, container.subcommand)
    if "HTTP_ADDR" not in cli.env:
        return None
    address = container.env.get("HTTP_ADDR") or cli.env_defaults.get("HTTP_ADDR")
    assert address, f"{container.id}: HTTP_ADDR neither set nor defaulted by `{cli.command}`"
    for i, arg in enumerate(container.argv):  # a --http-addr flag wins over the variable
        if arg == "--http-addr":
            address = container.argv[i + 1]
        elif arg.startswith("--http-addr="):
            address = arg.split("=", 1)[1]
    return port_of(address)


def compose_port_targets(service: dict) -> list[int]:
    targets = []
    for entry in service.get("ports") or []:
        if isinstance(entry, dict):
            targets.append(int(entry["target"]))
        else:
            spec = str(entry).split("/", 1)[0]
            targets.append(int(spec.rsplit(":", 1)[-1]))
    return targets


@functools.cache
def prometheus_targets() -> dict[str, list[int]]:
    config = load_yaml(PROMETHEUS_FILE)
    targets: dict[str, list[int]] = {}
    for job in config.get("scrape_configs", []):
        for static in job.get("static_configs", []):
            for target in static.get("targets", []):
                host, port = target.rsplit(":", 1)
                targets.setdefault(host, []).append(int(port))
    return targets


@pytest.mark.parametrize(
    "container", [c for c in CONTAINERS if c.values[0] is None or c.values[0].platform == "compose"]
)
def test_compose_ports_match_http_addr(container: Container):
    container = require(container)
    port = http_port(container)
    service = container.raw
    name = container.id.split(":", 1)[1]
    if port is None:
        assert not service.get("ports") and not service.get("expose"), (
            f"{container.id} has no HTTP endpoint to publish"
        )
        return
    for target in compose_port_targets(service) + [int(p) for p in service.get("expose") or []]:
        assert target == port, (
            f"{container.id}: publishes container port {target}, HTTP_ADDR says {port}"
        )
    test = (service.get("healthcheck") or {}).get("test")
    assert test, f"{container.id}: no healthcheck"
    words = test if isinstance(test, list) else ["CMD-SHELL", test]
    assert Path(words[1]).name == "consumer" and words[2] == "healthcheck", (
        f"{container.id}: the healthcheck should be `consumer healthcheck`, got {words}"
    )
    # `consumer healthcheck` finds the port through the same HTTP_ADDR as the role.
    assert "HTTP_ADDR" in cli_help("consumer", "healthcheck").env
    assert port in prometheus_targets().get(name, []), (
        f"{container.id}: Prometheus ({PROMETHEUS_FILE.relative_to(ROOT)}) does not scrape "
        f"{name}:{port}; it scrapes {prometheus_targets()}"
    )


def resolve_port(container: Container, port: int | str) -> int:
    if isinstance(port, int) or str(port).isdigit():
        return int(port)
    for declared in container.raw.get("ports") or []:
        if declared.get("name") == port:
            return int(declared["containerPort"])
    raise AssertionError(f"{container.id}: no container port named {port!r}")


@pytest.mark.parametrize(
    "container", [c for c in CONTAINERS if c.values[0] is None or c.values[0].platform != "compose"]
)
def test_kubernetes_ports_and_probes_match_http_addr(container: Container):
    container = require(container)
    port = http_port(container)
    c = container.raw
    if port is None:
        assert not c.get("ports") and not c.get("readinessProbe"), (
            f"{container.id} has no HTTP endpoint"
        )
        return
    declared = {p.get("name"): int(p["containerPort"]) for p in c.get("ports") or []}
    assert declared.get("http") == port, (
        f"{container.id}: containerPort `http` is {declared}, HTTP_ADDR says {port}"
    )
    for probe, path in (("readinessProbe", "/readyz"), ("livenessProbe", "/healthz")):
        get = (c.get(probe) or {}).get("httpGet")
        assert get, f"{container.id}: no HTTP {probe}"
        assert get["path"] == path, f"{container.id}: {probe} GETs {get['path']}, expected {path}"
        assert resolve_port(container, get["port"]) == port, (
            f"{container.id}: {probe} port {get['port']} is not {port}"
        )
    overlay = container.platform.split(":", 1)[1]
    services = [
        doc
        for doc in rendered(overlay)
        if doc["kind"] == "Service"
        and doc["spec"].get("selector")
        and all(container.template_labels.get(k) == v for k, v in doc["spec"]["selector"].items())
    ]
    assert services, f"{container.id}: no Service selects its pods"
    for service in services:
        for service_port in service["spec"]["ports"]:
            target = service_port.get("targetPort", service_port["port"])
            name = service["metadata"]["name"]
            assert resolve_port(container, target) == port, (
                f"{container.id}: Service {name} targets {target}, not {port}"
            )


# --------------------------------------------------------------------------------------------
# Compose


def test_compose_topics_are_created_with_the_producers_branches():
    services = compose()["services"]
    creator = services["create-topics"]
    command = (
        " ".join(creator["command"]) if isinstance(creator["command"], list) else creator["command"]
    )
    assert "--partitions" in command and "BRANCHES" in command
    producers = [
        s
        for s in services.values()
        if image_repository(s.get("image", "")) == "bankstream/producer"
    ]
    assert producers
    for producer in producers:
        branches = str(producer["environment"]["BRANCHES"])
        assert branches == str(creator["environment"]["BRANCHES"]), (
            "the producer's BRANCHES and the partitions of create-topics must be one expression"
        )


def test_compose_passwords_are_never_inline():
    example = parse_env_file(COMPOSE_FILE.parent / ".env.example")
    for name, service in compose()["services"].items():
        environment = service.get("environment") or {}
        for key, value in environment.items():
            text = str(value)
            if "PASSWORD" in key and not key.endswith("_FILE"):
                assert text.startswith("${"), (
                    f"compose service {name}: {key} is inline; use compose/.env"
                )
            if key.endswith("_PASSWORD_FILE"):
                assert text.startswith("/run/secrets/"), f"compose service {name}: {key}={text}"
            if key == "DATABASE_URL":
                assert re.match(r"postgres(ql)?://[^:/@]+:\$\{[A-Z_]+_PASSWORD[:?}]", text), (
                    f"compose service {name}: DATABASE_URL must take its password from compose/.env"
                )
    # Every secret comes from a variable of compose/.env, which .env.example documents.
    for secret, source in compose()["secrets"].items():
        assert set(source) == {"environment"}, f"compose secret {secret}: {source}"
        assert source["environment"] in example, (
            f"compose secret {secret}: compose/.env.example must document {source['environment']}"
        )
    # The placeholders of .env.example appear in no deployment file (nothing was pasted in).
    placeholders = {v for k, v in example.items() if "PASSWORD" in k}
    assert placeholders and all(placeholders)
    for path in deployment_files():
        text = path.read_text()
        for value in placeholders:
            assert value not in text, f"{path.relative_to(ROOT)} contains the password {value!r}"


def deployment_files() -> list[Path]:
    """The files compose and kustomize read (k8s dev Secrets excepted: see kustomization.yaml)."""
    files = [COMPOSE_FILE, PROMETHEUS_FILE, INIT_SCRIPT]
    files += sorted((COMPOSE_FILE.parent / "grafana").rglob("*.y*ml"))
    files += sorted((ROOT / "k8s").rglob("*.y*ml"))
    files += sorted((ROOT / "k8s").rglob("*.json"))
    return [f for f in files if f != ROOT / "k8s" / "base" / "kustomization.yaml"]


# --------------------------------------------------------------------------------------------
# Database roles and Grafana (least privilege), compose and Kubernetes alike.
#
# k8s/base/postgres-initdb/10-bankstream-roles.sh creates the roles (tested against a real
# PostgreSQL in test_postgres_roles.py); here: every deployment uses them as intended.

INIT_SCRIPT = ROOT / "k8s" / "base" / "postgres-initdb" / "10-bankstream-roles.sh"
LEDGER_ROLE = "bank_ledger"
READER_ROLE = "bank_reader"
DATABASE = "bank"


@functools.cache
def script_roles() -> dict[str, str]:
    """Role -> the attributes the init script gives it (ALTER ROLE name WITH ...)."""
    text = INIT_SCRIPT.read_text()
    roles = dict(re.findall(r"ALTER ROLE (\w+) WITH ([^;]*?)\s+PASSWORD\b", text, re.DOTALL))
    return {role: " ".join(attributes.split()) for role, attributes in roles.items()}


def test_init_script_roles_are_least_privilege():
    roles = script_roles()
    assert set(roles) == {LEDGER_ROLE, READER_ROLE}, roles
    for role, attributes in roles.items():
        words = set(attributes.split())
        assert {
            "LOGIN",
            "NOSUPERUSER",
            "NOCREATEDB",
            "NOCREATEROLE",
            "NOREPLICATION",
            "NOBYPASSRLS",
        } <= words, f"{role}: {attributes}"
    text = INIT_SCRIPT.read_text()
    assert f'ALTER DATABASE :"database" OWNER TO {LEDGER_ROLE};' in text
    assert f"ALTER SCHEMA public OWNER TO {LEDGER_ROLE};" in text
    assert (
        f"ALTER DEFAULT PRIVILEGES FOR ROLE {LEDGER_ROLE} IN SCHEMA public GRANT SELECT ON TABLES "
        f"TO {READER_ROLE};" in text
    )
    grants = re.findall(rf"GRANT (.+?) TO {READER_ROLE};", text)
    assert grants and all(g.split()[0] in ("CONNECT", "USAGE", "SELECT") for g in grants), grants
    assert f"ALTER ROLE {READER_ROLE} SET default_transaction_read_only = on;" in text
    # Passwords only as psql variables from the environment, never a literal.
    assert not re.search(r"PASSWORD\s+'", text), "a password literal in the init script"
    assert re.findall(r"PASSWORD (\S+);", text) == [":'ledger_password'", ":'reader_password'"]
    assert os.access(INIT_SCRIPT, os.X_OK), "compose bind-mounts the script: keep it executable"


def url_user(url: str) -> str:
    """The user of a postgres:// URL, also one whose password is a ${...} interpolation."""
    match = re.match(r"postgres(?:ql)?://([^:/@]+)[:@]", url)
    assert match, f"no user in the database URL {url.split(':', 1)[0]}://..."
    return match.group(1)


def interpolation_variable(text: str) -> str:
    match = re.fullmatch(r"\$\{([A-Z_][A-Z0-9_]*)(?:[:?-].*)?\}", text, re.DOTALL)
    assert match, f"not a ${{VARIABLE}} interpolation: {text!r}"
    return match.group(1)


def grafana_datasource(path: Path, uid: str = "bankstream-postgres") -> dict:
    for source in load_yaml(path)["datasources"]:
        if source.get("uid") == uid:
            return source
    raise AssertionError(f"{path.relative_to(ROOT)}: no data source {uid}")


def test_compose_no_service_connects_as_the_superuser():
    services = compose()["services"]
    postgres = services["postgres"]
    env = postgres["environment"]
    superuser = env.get("POSTGRES_USER", "postgres")
    assert superuser not in script_roles(), f"POSTGRES_USER={superuser} is a service role"
    assert env["POSTGRES_DB"] == DATABASE
    assert env["POSTGRES_PASSWORD_FILE"] == "/run/secrets/postgres_admin_password"
    # The superuser's password reaches the postgres container only.
    for name, service in services.items():
        has_admin_secret = "postgres_admin_password" in (service.get("secrets") or [])
        assert has_admin_secret == (name == "postgres"), (
            f"compose service {name}: the superuser's secret is for the postgres container only"
        )
    users = {}
    for container in compose_containers():
        url = container.env.get("DATABASE_URL")
        if url and url.startswith("postgres"):
            users[container.id] = url_user(url)
    users["grafana data source"] = grafana_datasource(GRAFANA_DATASOURCES)["user"]
    for who, user in users.items():
        assert user != superuser and user in script_roles(), (
            f"{who} connects as {user!r}: a role of the init script, never the superuser"
        )
    # pg_isready sends no password, but keep the superuser's name out of the checks too.
    test = postgres["healthcheck"]["test"]
    assert test[:2] == ["CMD", "pg_isready"] and test[test.index("-U") + 1] == LEDGER_ROLE
    assert test[test.index("-h") + 1] == "127.0.0.1", "over TCP, so it waits for the init scripts"


def test_compose_ledger_connects_as_bank_ledger():
    # The analytics roles checkpoint into the same database (their default, an SQLite file in
    # the working directory, cannot be written on a read-only root filesystem).
    ledgers = [
        c for c in compose_containers() if c.subcommand in ("ledger", "summary", "limits")
    ]
    assert {c.subcommand for c in ledgers} == {"ledger", "summary", "limits"}
    for ledger in ledgers:
        url = ledger.env["DATABASE_URL"]
        assert re.fullmatch(
            rf"postgres://{LEDGER_ROLE}:\$\{{LEDGER_DB_PASSWORD:\?[^}}]*\}}"
            rf"@postgres:5432/{DATABASE}",
            url,
        ), f"{ledger.id}: DATABASE_URL={url}"
    # The same password reaches the init script as the secret ledger_db_password.
    assert compose()["secrets"]["ledger_db_password"] == {"environment": "LEDGER_DB_PASSWORD"}


def test_compose_postgres_runs_the_roles_script_with_secret_files():
    postgres = compose()["services"]["postgres"]
    volumes = postgres["volumes"]
    assert "../k8s/base/postgres-initdb:/docker-entrypoint-initdb.d:ro" in volumes, volumes
    assert (COMPOSE_FILE.parent / "../k8s/base/postgres-initdb").resolve() == INIT_SCRIPT.parent
    env = postgres["environment"]
    secrets = compose()["secrets"]
    for variable, secret, source in (
        ("BANK_LEDGER_PASSWORD_FILE", "ledger_db_password", "LEDGER_DB_PASSWORD"),
        ("BANK_READER_PASSWORD_FILE", "reader_db_password", "READER_DB_PASSWORD"),
        ("POSTGRES_PASSWORD_FILE", "postgres_admin_password", "POSTGRES_ADMIN_PASSWORD"),
    ):
        assert env[variable] == f"/run/secrets/{secret}", f"postgres: {variable}"
        assert secret in postgres["secrets"]
        assert secrets[secret] == {"environment": source}
        if not variable.startswith("POSTGRES_"):  # the image's own; the others the script's
            assert f"bankstream_secret {variable.removesuffix('_FILE')}" in INIT_SCRIPT.read_text()
    assert not any(k for k in env if k.endswith("_PASSWORD")), "passwords as files only"
    # Three roles, three secrets.
    assert len({secrets[s]["environment"] for s in postgres["secrets"]}) == 3


def test_compose_grafana_reads_as_bank_reader_and_admits_no_anonymous_users():
    grafana = compose()["services"]["grafana"]
    env = {k: str(v) for k, v in grafana["environment"].items()}
    assert env.get("GF_AUTH_ANONYMOUS_ENABLED") == "false", "anonymous access must be off"
    assert "GF_AUTH_ANONYMOUS_ORG_ROLE" not in env
    assert env.get("GF_USERS_ALLOW_SIGN_UP") == "false"
    assert interpolation_variable(env["GF_SECURITY_ADMIN_PASSWORD"]) == "GRAFANA_ADMIN_PASSWORD"
    source = grafana_datasource(GRAFANA_DATASOURCES)
    assert source["user"] == READER_ROLE
    assert source["jsonData"]["database"] == DATABASE
    assert source["url"].split(":")[0] in compose()["services"]
    assert source["secureJsonData"]["password"] == "$__file{/run/secrets/reader_db_password}"
    assert grafana["secrets"] == ["reader_db_password"], "Grafana gets the read-only password only"
    assert compose()["secrets"]["reader_db_password"] == {"environment": "READER_DB_PASSWORD"}


GRAFANA_DATASOURCES = (
    COMPOSE_FILE.parent / "grafana" / "provisioning" / "datasources" / "bankstream.yml"
)
K8S_GRAFANA = ROOT / "k8s" / "base" / "grafana"


def test_kubernetes_dashboard_panels_are_the_compose_ones():
    """k8s has no Prometheus: its dashboard keeps the PostgreSQL panels, unchanged but for place."""
    compose_dashboard = json.loads(
        (COMPOSE_FILE.parent / "grafana/dashboards/bankstream.json").read_text()
    )
    k8s_dashboard = json.loads((K8S_GRAFANA / "dashboards" / "bankstream.json").read_text())
    by_title = {p["title"]: p for p in compose_dashboard["panels"]}
    sql_panels = {t for t, p in by_title.items() if p["datasource"]["uid"] == "bankstream-postgres"}
    titles = {p["title"] for p in k8s_dashboard["panels"]}
    assert sql_panels <= titles, f"the k8s dashboard lacks {sql_panels - titles}"
    for panel in k8s_dashboard["panels"]:
        assert panel["datasource"]["uid"] == "bankstream-postgres", panel["title"]
        if panel["title"] in by_title:
            assert without_place(panel) == without_place(by_title[panel["title"]]), (
                f"panel {panel['title']} drifted"
            )
    assert k8s_dashboard["uid"] == compose_dashboard["uid"]
    k8s_providers = load_yaml(K8S_GRAFANA / "dashboards" / "bankstream.yml")["providers"]
    compose_providers = load_yaml(
        COMPOSE_FILE.parent / "grafana" / "provisioning" / "dashboards" / "bankstream.yml"
    )["providers"]
    assert k8s_providers == compose_providers


def without_place(panel: dict) -> dict:
    return {k: v for k, v in panel.items() if k not in ("gridPos", "id")}


def test_every_prometheus_target_is_a_compose_service():
    services = compose()["services"]
    for host in prometheus_targets():
        assert host in services, f"Prometheus scrapes {host}, which is not a compose service"


# --------------------------------------------------------------------------------------------
# Dockerfile and build context


def dockerfile_stages() -> dict[str, list[str]]:
    """Stage name -> its instructions (continuation lines joined, comments dropped)."""
    stages: dict[str, list[str]] = {}
    current = None
    logical = ""
    for line in DOCKERFILE.read_text().splitlines():
        stripped = line.strip()
        if not logical and (not stripped or stripped.startswith("#")):
            continue
        if stripped.startswith("#"):
            continue
        logical += stripped[:-1] + " " if stripped.endswith("\\") else stripped
        if stripped.endswith("\\"):
            continue
        instruction, logical = logical, ""
        match = re.match(r"FROM\s+\S+\s+AS\s+(\S+)", instruction, re.IGNORECASE)
        if match:
            current = match.group(1)
            stages[current] = [instruction]
        elif current:
            stages[current].append(instruction)
    return stages


def test_dockerfile_targets_run_the_binaries_they_build():
    stages = dockerfile_stages()
    build = [i for i in stages["builder"] if i.startswith("RUN cargo build")]
    assert len(build) == 1, "exactly one `RUN cargo build` in the builder stage (CI runs that line)"
    words = build[0].split()[1:]
    # The image profile (Cargo.toml): the release profile with fat LTO and one codegen unit.
    assert words[:5] == ["cargo", "build", "--profile", "image", "--locked"], build[0]
    built = {words[i + 1] for i, w in enumerate(words) if w == "--bin"}
    assert built == set(BINARIES), (
        f"the build command builds {built}, the images need {set(BINARIES)}"
    )
    for binary in BINARIES:
        stage = " ".join(stages[binary])
        assert f"COPY --from=builder /out/bin/{binary} /usr/local/bin/{binary}" in stage
        assert f'ENTRYPOINT ["/usr/local/bin/{binary}"]' in stage
    runtime = " ".join(stages["runtime"])
    assert f"USER {APP_UID}:{APP_UID}" in runtime, "the runtime user must be numeric (runAsNonRoot)"


def test_dockerfile_consumer_healthcheck_and_expose():
    consumer = " ".join(dockerfile_stages()["consumer"])
    assert 'CMD ["/usr/local/bin/consumer", "healthcheck"]' in consumer
    cli_help("consumer", "healthcheck")  # the subcommand exists
    exposed = {int(p) for p in re.findall(r"EXPOSE\s+(\d+)", consumer)}
    default = port_of(cli_help("consumer", "ledger").env_defaults["HTTP_ADDR"])
    assert exposed == {default}, f"EXPOSE {exposed}, but HTTP_ADDR defaults to port {default}"


def test_dockerignore_keeps_the_build_inputs():
    patterns = [
        line.strip()
        for line in DOCKERIGNORE.read_text().splitlines()
        if line.strip() and not line.strip().startswith("#")
    ]
    manifest = (ROOT / "Cargo.toml").read_text()
    block = re.search(r"^members\s*=\s*\[(.*?)\]", manifest, re.MULTILINE | re.DOTALL)
    assert block, "no workspace members in Cargo.toml"
    members = re.findall(r'"([^"]+)"', block.group(1))
    assert members
    needed = ["Cargo.toml", "Cargo.lock", "proto", *members]
    for path in needed:
        parts = Path(path).parts
        prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
        excluded = False
        for pattern in patterns:
            negate = pattern.startswith("!")
            glob = pattern.lstrip("!").rstrip("/")
            if any(fnmatch.fnmatch(prefix, glob) for prefix in prefixes):
                excluded = not negate
        assert not excluded, f".dockerignore excludes {path}, which the image build needs"


# --------------------------------------------------------------------------------------------
# Kubernetes


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_kubernetes_manifests_render(overlay):
    docs = rendered(overlay)
    kinds = {(d["kind"], d["metadata"]["name"]) for d in docs}
    for expected in [
        ("Namespace", "bankstream"),
        ("StatefulSet", "kafka"),
        ("StatefulSet", "postgres"),
        ("Deployment", "schema-registry"),
        ("Deployment", "ledger"),
        ("Deployment", "summary"),
        ("Deployment", "limits"),
        ("PodDisruptionBudget", "ledger"),
        ("Job", "producer"),
        ("Job", "create-topics"),
        ("Deployment", "grafana"),
        ("Service", "grafana"),
    ]:
        assert expected in kinds, f"{overlay}: {expected} missing from the rendered manifests"
    for doc in docs:
        if doc["kind"] != "Namespace":
            assert doc["metadata"].get("namespace") == "bankstream", (
                f"{doc['kind']}/{doc['metadata']['name']}"
            )


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_kubernetes_local_images(overlay):
    for c in k8s_containers(overlay):
        assert c.raw["image"].endswith(":dev"), (
            f"{c.id}: {c.raw['image']} (the overlay builds and loads :dev)"
        )
        assert c.raw.get("imagePullPolicy") == "IfNotPresent", f"{c.id}: imagePullPolicy"


def by_prefix(docs: list[dict], kind: str, name: str) -> dict:
    """A generated object (kustomize appends a hash to the name) or a plain one."""
    found = [
        d
        for d in docs
        if d["kind"] == kind
        and re.fullmatch(rf"{re.escape(name)}(-[a-z0-9]{{10}})?", d["metadata"]["name"])
    ]
    assert len(found) == 1, f"{kind} {name}: {len(found)} objects"
    return found[0]


def env_entries(container: dict) -> dict[str, dict]:
    return {e["name"]: e for e in container.get("env") or []}


def mounted_secret_file(
    docs: list[dict], spec: dict, container: dict, path: str
) -> tuple[str, str]:
    """(Secret name, key) mounted at `path` in the container: a secret or projected volume."""
    volumes = {v["name"]: v for v in spec.get("volumes") or []}
    for mount in container.get("volumeMounts") or []:
        prefix = mount["mountPath"].rstrip("/") + "/"
        if not path.startswith(prefix):
            continue
        relative = path[len(prefix) :]
        volume = volumes[mount["name"]]
        sources = []
        if "secret" in volume:
            sources = [{"secret": {"name": volume["secret"]["secretName"], **volume["secret"]}}]
        elif "projected" in volume:
            sources = volume["projected"]["sources"]
        for source in sources:
            secret = source.get("secret")
            if not secret:
                continue
            for item in secret.get("items") or []:
                if item["path"] == relative:
                    by_kind_name(docs, "Secret", secret["name"])  # it exists
                    return secret["name"], item["key"]
    raise AssertionError(f"{container['name']}: no Secret key mounted at {path}")


def k8s_postgres(docs: list[dict]) -> tuple[dict, dict]:
    statefulset = by_kind_name(docs, "StatefulSet", "postgres")
    spec = pod_spec(statefulset)
    return spec, spec["containers"][0]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_kubernetes_database_passwords_are_consistent(overlay):
    docs = rendered(overlay)
    spec, postgres = k8s_postgres(docs)
    env = env_entries(postgres)
    ledger_secret = by_prefix(docs, "Secret", "bankstream-ledger-db")
    data = secret_data(ledger_secret)
    url = urlsplit(data["DATABASE_URL"])
    assert url.password == data["PASSWORD"], (
        "DATABASE_URL and PASSWORD of the ledger's Secret disagree"
    )
    assert url.username == LEDGER_ROLE and url.path == f"/{DATABASE}"
    service = by_kind_name(docs, "Service", url.hostname)
    assert url.port in [p["port"] for p in service["spec"]["ports"]]
    assert env["POSTGRES_DB"]["value"] == DATABASE
    # The init script reads each role's password from the Secret the role's client uses.
    passwords = {}
    for variable, secret, role in (
        ("BANK_LEDGER_PASSWORD_FILE", "bankstream-ledger-db", LEDGER_ROLE),
        ("BANK_READER_PASSWORD_FILE", "bankstream-reader-db", READER_ROLE),
    ):
        name, key = mounted_secret_file(docs, spec, postgres, env[variable]["value"])
        assert name == by_prefix(docs, "Secret", secret)["metadata"]["name"] and key == "PASSWORD"
        passwords[role] = secret_data(by_kind_name(docs, "Secret", name))[key]
    admin_ref = env["POSTGRES_PASSWORD"]["valueFrom"]["secretKeyRef"]
    admin = by_kind_name(docs, "Secret", admin_ref["name"])
    passwords["postgres"] = secret_data(admin)[admin_ref["key"]]
    assert len(set(passwords.values())) == 3, "three roles, three passwords"
    assert not [k for k in env if k.endswith("_PASSWORD") and k != "POSTGRES_PASSWORD"]
    # The init script, mounted where the image runs it, is the repository's file.
    initdb = by_prefix(docs, "ConfigMap", "postgres-initdb")
    assert initdb["data"] == {INIT_SCRIPT.name: INIT_SCRIPT.read_text()}
    volumes = {v["name"]: v for v in spec["volumes"]}
    mounts = {m["mountPath"]: m for m in postgres["volumeMounts"]}
    mount = mounts["/docker-entrypoint-initdb.d"]
    assert volumes[mount["name"]]["configMap"]["name"] == initdb["metadata"]["name"]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_kubernetes_no_service_connects_as_the_superuser(overlay):
    docs = rendered(overlay)
    _, postgres = k8s_postgres(docs)
    env = env_entries(postgres)
    superuser = env["POSTGRES_USER"]["value"]
    assert superuser == "postgres" and superuser not in script_roles()
    admin_secret = env["POSTGRES_PASSWORD"]["valueFrom"]["secretKeyRef"]["name"]
    for obj in docs:
        pod = pod_spec(obj)
        if pod is None:
            continue
        text = yaml.safe_dump(pod)
        assert (admin_secret in text) == (obj["metadata"]["name"] == "postgres"), (
            f"{obj['kind']}/{obj['metadata']['name']}: the superuser's Secret is for PostgreSQL"
        )
        for c in pod.get("containers", []) + pod.get("initContainers", []):
            where = f"{obj['kind']}/{obj['metadata']['name']}/{c['name']}"
            var = env_entries(c).get("DATABASE_URL")
            if var:
                ref = var["valueFrom"]["secretKeyRef"]
                url = secret_data(by_kind_name(docs, "Secret", ref["name"]))[ref["key"]]
                assert url_user(url) in script_roles() and url_user(url) != superuser, (
                    f"{where}: connects as {url_user(url)}"
                )
                if c.get("args") == ["ledger"]:
                    assert url_user(url) == LEDGER_ROLE, (
                        f"{where}: the ledger connects as {LEDGER_ROLE}"
                    )
            # pg_isready and psql in commands and probes: never as the superuser either.
            commands = [c.get("command") or [], c.get("args") or []]
            for probe in ("readinessProbe", "livenessProbe", "startupProbe"):
                commands.append(((c.get(probe) or {}).get("exec") or {}).get("command") or [])
            command = " ".join(" ".join(words) for words in commands)
            for user in re.findall(r"(?:-U|--username)[ =](\S+)", command):
                assert user != superuser and user in script_roles(), f"{where}: -U {user}"
    # The analytics roles checkpoint into the ledger's database, with the ledger's Secret.
    ledgers = [
        c for c in k8s_containers(overlay) if c.subcommand in ("ledger", "summary", "limits")
    ]
    assert {c.subcommand for c in ledgers} == {"ledger", "summary", "limits"}
    assert all(c.env_sources.get("DATABASE_URL") == "env" for c in ledgers)
    source = k8s_grafana_datasource(docs)
    assert source["user"] == READER_ROLE != superuser


def k8s_grafana_datasource(docs: list[dict]) -> dict:
    config = by_prefix(docs, "ConfigMap", "grafana-datasources")
    (text,) = config["data"].values()
    for source in yaml.safe_load(text)["datasources"]:
        if source["type"] == "grafana-postgresql-datasource":
            return source
    raise AssertionError("no PostgreSQL data source for Grafana")


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_kubernetes_grafana_reads_as_bank_reader_and_admits_no_anonymous_users(overlay):
    docs = rendered(overlay)
    deployment = by_kind_name(docs, "Deployment", "grafana")
    spec = pod_spec(deployment)
    (grafana,) = spec["containers"]
    assert image_repository(grafana["image"]) == "grafana/grafana"
    assert grafana["image"] == compose()["services"]["grafana"]["image"], "one Grafana version"
    env = env_entries(grafana)
    assert env["GF_AUTH_ANONYMOUS_ENABLED"]["value"] == "false", "anonymous access must be off"
    assert "GF_AUTH_ANONYMOUS_ORG_ROLE" not in env
    assert env["GF_USERS_ALLOW_SIGN_UP"]["value"] == "false"
    admin = env["GF_SECURITY_ADMIN_PASSWORD"]["valueFrom"]["secretKeyRef"]
    assert secret_data(by_kind_name(docs, "Secret", admin["name"]))[admin["key"]]
    source = k8s_grafana_datasource(docs)
    assert source["user"] == READER_ROLE
    assert source["jsonData"]["database"] == DATABASE
    host, port = source["url"].split(":")
    assert int(port) in [p["port"] for p in by_kind_name(docs, "Service", host)["spec"]["ports"]]
    match = re.fullmatch(r"\$__file\{(.+)\}", source["secureJsonData"]["password"])
    assert match, "the data source's password comes from a mounted file"
    name, key = mounted_secret_file(docs, spec, grafana, match.group(1))
    assert name == by_prefix(docs, "Secret", "bankstream-reader-db")["metadata"]["name"]
    assert key == "PASSWORD"
    # Only the read-only role's password reaches Grafana.
    secrets = {v.get("secret", {}).get("secretName") for v in spec.get("volumes") or []} | {
        e["valueFrom"]["secretKeyRef"]["name"] for e in env.values() if "valueFrom" in e
    }
    assert secrets - {None} == {name, admin["name"]}
    # The provisioning ConfigMaps are mounted where Grafana reads them.
    mounts = {m["mountPath"]: m["name"] for m in grafana["volumeMounts"]}
    volumes = {v["name"]: v for v in spec["volumes"]}
    for path, config in (
        ("/etc/grafana/provisioning/datasources", "grafana-datasources"),
        ("/etc/grafana/provisioning/dashboards", "grafana-dashboards"),
        ("/etc/grafana/dashboards", "grafana-dashboard-json"),
    ):
        assert (
            volumes[mounts[path]]["configMap"]["name"]
            == by_prefix(docs, "ConfigMap", config)["metadata"]["name"]
        )
    home = env["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]["value"]
    assert home.rsplit("/", 1)[0] == "/etc/grafana/dashboards"
    assert home.rsplit("/", 1)[1] in by_prefix(docs, "ConfigMap", "grafana-dashboard-json")["data"]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_kubernetes_passwords_live_in_secrets_only(overlay):
    docs = rendered(overlay)
    passwords = set()
    for secret in (d for d in docs if d["kind"] == "Secret"):
        for key, value in secret_data(secret).items():
            if "PASSWORD" in key:
                passwords.add(value)
            elif key == "DATABASE_URL":
                passwords.add(urlsplit(value).password)
    assert len(passwords) == 4, "postgres, bank_ledger, bank_reader, Grafana's admin"
    for doc in docs:
        if doc["kind"] == "Secret":
            continue
        text = yaml.safe_dump(doc)
        for password in passwords:
            assert password not in text, f"{doc['kind']}/{doc['metadata']['name']} holds a password"
        spec = pod_spec(doc)
        for c in (spec or {}).get("containers", []) + (spec or {}).get("initContainers", []):
            for var in c.get("env") or []:
                if (
                    "PASSWORD" in var["name"]
                    and not var["name"].endswith("_FILE")
                    or var["name"] == "DATABASE_URL"
                ):
                    assert "secretKeyRef" in var.get("valueFrom", {}), (
                        f"{doc['metadata']['name']}/{c['name']}: {var['name']} not from a Secret"
                    )


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_kubernetes_partitions_branches_and_ledger_replicas(overlay):
    docs = rendered(overlay)

    def env_of(kind, name):
        obj = by_kind_name(docs, kind, name)
        c = pod_spec(obj)["containers"][0]
        values = {}
        for source in c.get("envFrom") or []:
            if "configMapRef" in source:
                values.update(
                    by_kind_name(docs, "ConfigMap", source["configMapRef"]["name"]).get("data")
                    or {}
                )
        values.update({e["name"]: e.get("value") for e in c.get("env") or []})
        return values

    branches = env_of("Job", "producer")["BRANCHES"]
    assert env_of("Job", "create-topics")["BRANCHES"] == branches
    # A ledger replica beyond the partition count would own nothing and never be ready.
    ledger = by_kind_name(docs, "Deployment", "ledger")
    assert 2 <= ledger["spec"]["replicas"] <= int(branches)
    pdb = by_kind_name(docs, "PodDisruptionBudget", "ledger")
    assert pdb["spec"]["selector"]["matchLabels"].items() <= template_labels(ledger).items()
    assert pdb["spec"]["minAvailable"] < ledger["spec"]["replicas"]


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_kubernetes_pods_meet_the_restricted_pod_security_standard(overlay):
    for obj in rendered(overlay):
        spec = pod_spec(obj)
        if spec is None:
            continue
        where = f"{obj['kind']}/{obj['metadata']['name']}"
        pod = spec.get("securityContext") or {}
        assert (
            not spec.get("hostNetwork") and not spec.get("hostPID") and not spec.get("hostIPC")
        ), where
        assert all("hostPath" not in v for v in spec.get("volumes") or []), where
        assert (pod.get("seccompProfile") or {}).get("type") == "RuntimeDefault", (
            f"{where}: seccomp"
        )
        for c in spec.get("containers", []) + spec.get("initContainers", []):
            sc = c.get("securityContext") or {}
            name = f"{where}/{c['name']}"
            assert sc.get("runAsNonRoot", pod.get("runAsNonRoot")) is True, f"{name}: runAsNonRoot"
            assert sc.get("runAsUser", pod.get("runAsUser")), (
                f"{name}: runAsUser (images with a named USER need it)"
            )
            assert sc.get("allowPrivilegeEscalation") is False, f"{name}: allowPrivilegeEscalation"
            assert sc.get("capabilities", {}).get("drop") == ["ALL"], f"{name}: capabilities"
            assert not sc.get("privileged"), f"{name}: privileged"
            if image_repository(c["image"]) in IMAGE_BINARY:
                assert sc.get("runAsUser", pod.get("runAsUser")) == APP_UID, (
                    f"{name}: the image's user is {APP_UID}"
                )
                assert sc.get("readOnlyRootFilesystem") is True, f"{name}: readOnlyRootFilesystem"
                assert "resources" in c and c["resources"].get("limits"), f"{name}: resources"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_kubernetes_env_references_resolve(overlay):
    """$(VAR) in an env value must name a variable defined earlier in the same container."""
    for obj in rendered(overlay):
        spec = pod_spec(obj)
        if spec is None:
            continue
        for c in spec.get("containers", []) + spec.get("initContainers", []):
            seen = set()
            for var in c.get("env") or []:
                for ref in re.findall(
                    r"(?<!\$)\$\(([A-Za-z_][A-Za-z0-9_]*)\)", var.get("value") or ""
                ):
                    where = f"{obj['kind']}/{obj['metadata']['name']}/{c['name']}"
                    assert ref in seen, f"{where}: {var['name']} uses $({ref}) before it is defined"
                seen.add(var["name"])


@pytest.mark.parametrize("overlay", OVERLAYS)
@pytest.mark.parametrize("version", K8S_VERSIONS)
def test_kubernetes_objects_match_the_api_schemas(overlay, version):
    kubernetes_validate = pytest.importorskip(
        "kubernetes_validate", reason="pip install kubernetes-validate"
    )
    if version == "latest":
        from kubernetes_validate.utils import latest_version

        version = latest_version()
    errors = []
    for doc in rendered(overlay):
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except Exception as error:  # ValidationError, or a kind without a schema
            errors.append(
                f"{doc['kind']}/{doc['metadata']['name']}: {getattr(error, 'message', error)}"
            )
    assert not errors, "\n".join(errors)


def third_party_images(docs: list[dict]) -> set[str]:
    images = set()
    for doc in docs:
        spec = pod_spec(doc)
        for c in (spec or {}).get("containers", []) + (spec or {}).get("initContainers", []):
            if image_repository(c["image"]) not in IMAGE_BINARY:
                images.add(c["image"])
    return images


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_kubernetes_runs_what_the_compose_smoke_test_proves(overlay):
    """`make compose-smoke` proves the compose deployment; Kubernetes, which cannot run here,
    must use the same third-party images (compose's variable defaults), the same registry URL
    and the same health endpoint of our roles."""
    raw = load_yaml(COMPOSE_FILE)
    for name, service in raw["services"].items():
        image = str(service.get("image", ""))
        if image_repository(image) not in IMAGE_BINARY:
            assert IMAGE_VARIABLE.match(image), f"compose service {name}: image {image} is not a ${{VAR:-default}}"
    compose_images = {
        s["image"] for s in compose()["services"].values() if image_repository(s["image"]) not in IMAGE_BINARY
    }
    docs = rendered(overlay)
    k8s_images = third_party_images(docs)
    assert k8s_images, "no third-party images in the overlay"
    assert k8s_images <= compose_images, f"Kubernetes uses {k8s_images - compose_images}, compose does not"
    registry = IMAGE_VARIABLE.match(raw["x-bankstream-env"]["SCHEMA_REGISTRY_URL"])
    assert registry, "compose: SCHEMA_REGISTRY_URL must be a ${VAR:-default}"
    config = by_prefix(docs, "ConfigMap", "bankstream-config")
    assert config["data"]["SCHEMA_REGISTRY_URL"] == registry.group(2)
    for role in ("ledger", "summary", "limits"):
        spec = pod_spec(by_kind_name(docs, "Deployment", role))
        (consumer,) = [c for c in spec["containers"] if image_repository(c["image"]) == "bankstream/consumer"]
        assert consumer["livenessProbe"]["httpGet"]["path"] == "/healthz", role
        assert consumer["securityContext"]["readOnlyRootFilesystem"] is True, role
        assert consumer["securityContext"].get("runAsNonRoot") or spec.get("securityContext", {}).get("runAsNonRoot"), role
    for name in ("consumer-ledger", "consumer-summary", "consumer-limits"):
        service = raw["services"][name]
        assert service["healthcheck"]["test"] == ["CMD", "/usr/local/bin/consumer", "healthcheck"], name
        assert service["read_only"] is True, name
