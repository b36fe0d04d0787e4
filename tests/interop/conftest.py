"""Shared fixtures of the interoperability tests: generated Python classes for proto/, the
stack's addresses, and paths to our Rust binaries."""

import importlib.resources
import os
import pathlib
import sys
import uuid

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
GENERATED = pathlib.Path(__file__).resolve().parent / "gen"


def _generate_classes() -> None:
    """Compile proto/ into Python modules with grpcio-tools' bundled protoc."""
    from grpc_tools import protoc

    GENERATED.mkdir(exist_ok=True)
    well_known = importlib.resources.files("grpc_tools") / "_proto"
    files = ["bank/v1/transaction.proto", "bank/v1/customer.proto"]
    status = protoc.main(
        ["protoc", f"-I{ROOT / 'proto'}", f"-I{well_known}", f"--python_out={GENERATED}", *files]
    )
    assert status == 0, f"protoc failed with status {status}"


_generate_classes()
sys.path.insert(0, str(GENERATED))


@pytest.fixture(scope="session")
def bootstrap() -> str:
    return os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092")


@pytest.fixture(scope="session")
def registry_url() -> str:
    return os.environ.get("SCHEMA_REGISTRY_URL", "http://127.0.0.1:8081/apis/ccompat/v7")


@pytest.fixture(scope="session")
def binaries() -> dict:
    target = pathlib.Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target")) / os.environ.get(
        "CARGO_PROFILE_DIR", "debug"
    )
    found = {name: target / name for name in ("producer", "consumer")}
    for name, path in found.items():
        assert path.exists(), f"{path} missing: build the workspace first (make build)"
    return found


@pytest.fixture
def topics() -> tuple:
    suffix = uuid.uuid4().hex
    return f"interop.transactions.{suffix}", f"interop.customers.{suffix}"
