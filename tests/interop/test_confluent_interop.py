"""Interoperability with Confluent's official Python client, the reference implementation of the
Confluent protobuf wire format: it must read what our Rust producer writes, and our Rust consumer
must read what it writes, with schemas going through the real registry both ways."""

import json
import subprocess
import time
import uuid

from confluent_kafka import Consumer, Producer
from confluent_kafka.schema_registry import SchemaRegistryClient, topic_subject_name_strategy
from confluent_kafka.schema_registry.protobuf import ProtobufDeserializer, ProtobufSerializer
from confluent_kafka.serialization import MessageField, SerializationContext
from google.protobuf import json_format
from google.protobuf.timestamp_pb2 import Timestamp

from bank.v1 import customer_pb2, transaction_pb2

TIMEOUT_S = 60


def as_dict(message) -> dict:
    """proto3 JSON with proto field names and defaults: the shape our Rust tools print."""
    return json_format.MessageToDict(
        message, preserving_proto_field_name=True, always_print_fields_with_no_presence=True
    )


def consume(bootstrap: str, topics: list, count: int) -> list:
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"interop-{uuid.uuid4().hex}",
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
        }
    )
    consumer.subscribe(topics)
    messages, deadline = [], time.monotonic() + TIMEOUT_S
    try:
        while len(messages) < count and time.monotonic() < deadline:
            msg = consumer.poll(1.0)
            if msg is None:
                continue
            assert msg.error() is None, msg.error()
            messages.append(msg)
    finally:
        consumer.close()
    assert len(messages) == count, f"got {len(messages)} of {count} messages in {TIMEOUT_S}s"
    return messages


def test_confluent_client_reads_what_rust_produced(bootstrap, registry_url, binaries, topics):
    tx_topic, customer_topic = topics
    run = subprocess.run(
        [binaries["producer"], "sample", "--json", "-b", bootstrap, "-s", registry_url,
         "-t", tx_topic, "--customers-topic", customer_topic],
        capture_output=True, text=True, timeout=TIMEOUT_S,
    )
    assert run.returncode == 0, run.stderr
    sent = {line["topic"]: line["value"] for line in map(json.loads, run.stdout.splitlines())}

    # The deserializers get no registry client: given one, Confluent's deserializer asks for the
    # writer schema with ?format=serialized, which Apicurio 3.3 answers with raw descriptor bytes
    # instead of base64 (Confluent's own registry answers base64). The registry half is checked
    # below instead: the schema id in every value is the one registered under the topic's subject.
    registry = SchemaRegistryClient({"url": registry_url, "timeout": 30})
    deserializers = {
        tx_topic: ProtobufDeserializer(transaction_pb2.Transaction, {"use.deprecated.format": False}),
        customer_topic: ProtobufDeserializer(customer_pb2.Customer, {"use.deprecated.format": False}),
    }
    for msg in consume(bootstrap, [tx_topic, customer_topic], 2):
        ctx = SerializationContext(msg.topic(), MessageField.VALUE)
        decoded = deserializers[msg.topic()](msg.value(), ctx)
        assert as_dict(decoded) == sent[msg.topic()]
        assert msg.key().decode() == sent[msg.topic()]["account_number"]
        registered = registry.get_latest_version(f"{msg.topic()}-value")
        assert msg.value()[0] == 0 and int.from_bytes(msg.value()[1:5], "big") == registered.schema_id
        assert registered.schema.schema_type == "PROTOBUF"


def test_rust_reads_what_confluent_client_produced(bootstrap, registry_url, binaries, topics):
    tx_topic, customer_topic = topics
    # A bounded timeout: a registry that never answers fails the test instead of hanging it.
    registry = SchemaRegistryClient({"url": registry_url, "timeout": 30})
    created = Timestamp(seconds=1_700_000_000, nanos=250_000_000)
    customer = customer_pb2.Customer(
        account_number="PY-0001", first_name="Guido", last_name="van Rossum",
        email="guido@example.com", created_at=created, branch_id=3,
    )
    transaction = transaction_pb2.Transaction(
        transaction_id=str(uuid.uuid4()), account_number="PY-0001", transaction_reference="PY-REF",
        transaction_datetime=created, kind=transaction_pb2.TRANSACTION_KIND_WITHDRAWAL,
        amount_cents=123_456_789_012, currency="GBP", branch_id=3, description="",
    )
    producer = Producer({"bootstrap.servers": bootstrap, "enable.idempotence": True})
    for topic, message in ((customer_topic, customer), (tx_topic, transaction)):
        # TopicNameStrategy, as our services use. Left to its default, confluent-kafka 2.16 first
        # asks the registry for "associations" (a Confluent Cloud API), which Apicurio once left
        # unanswered here until the test timed out.
        serializer = ProtobufSerializer(
            type(message),
            registry,
            {"use.deprecated.format": False, "subject.name.strategy": topic_subject_name_strategy},
        )
        value = serializer(message, SerializationContext(topic, MessageField.VALUE))
        producer.produce(topic, key=message.account_number.encode(), value=value)
    assert producer.flush(TIMEOUT_S) == 0, "python producer did not deliver"

    run = subprocess.run(
        [binaries["consumer"], "dump", "--json", "-n", "2", "--idle-timeout-secs", str(TIMEOUT_S),
         "-b", bootstrap, "-s", registry_url, "-t", tx_topic, "--customers-topic", customer_topic],
        capture_output=True, text=True, timeout=TIMEOUT_S + 30,
    )
    assert run.returncode == 0, run.stderr
    got = {line["topic"]: line["value"] for line in map(json.loads, run.stdout.splitlines())}
    assert got == {tx_topic: as_dict(transaction), customer_topic: as_dict(customer)}, run.stderr
