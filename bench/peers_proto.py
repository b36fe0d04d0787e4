"""Shared by bench/peers_to_json.py and bench/peers_seed.py: our Transaction class for Python.

The interop tests compile proto/ into tests/interop/gen when pytest starts (conftest.py); the
peer benchmark runs without pytest, so it compiles the same files the same way (grpcio-tools'
bundled protoc) when the generated module is missing, and imports it from there.
"""

import importlib.resources
import pathlib
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]
GENERATED = ROOT / "tests" / "interop" / "gen"
PROTOS = ["bank/v1/transaction.proto", "bank/v1/customer.proto"]


def _generate() -> None:
    from grpc_tools import protoc

    GENERATED.mkdir(parents=True, exist_ok=True)
    well_known = importlib.resources.files("grpc_tools") / "_proto"
    args = ["protoc", f"-I{ROOT / 'proto'}", f"-I{well_known}", f"--python_out={GENERATED}", *PROTOS]
    if protoc.main(args) != 0:
        raise SystemExit("protoc failed on proto/")


def transaction_class():
    """The generated bank.v1.Transaction message class."""
    if not (GENERATED / "bank" / "v1" / "transaction_pb2.py").exists():
        _generate()
    if str(GENERATED) not in sys.path:
        sys.path.insert(0, str(GENERATED))
    from bank.v1 import transaction_pb2

    return transaction_pb2.Transaction


def deserializer():
    """Confluent's protobuf deserializer for our transactions topic (Confluent wire format)."""
    from confluent_kafka.schema_registry.protobuf import ProtobufDeserializer

    return ProtobufDeserializer(transaction_class(), {"use.deprecated.format": False})


def kind_name(tx) -> str:
    """DEPOSIT / WITHDRAWAL, as the ledger stores the kind."""
    return tx.DESCRIPTOR.fields_by_name["kind"].enum_type.values_by_number[tx.kind].name.removeprefix(
        "TRANSACTION_KIND_"
    )
