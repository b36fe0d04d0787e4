"""Copies our protobuf transactions topic to a JSON-with-schema topic, for Kafka Connect.

Maven Central has no protobuf converter for Kafka Connect (Confluent's lives in Confluent's own
repository), so the Connect peers of `make bench-peers` read the same transactions as
Apache Kafka's own JsonConverter expects them with schemas.enable=true: every value an envelope
{"schema": ..., "payload": ...}. The struct is flat, with the ledger's column names and types
(the Debezium JDBC sink cannot map a nested google.protobuf.Timestamp): the timestamp as a
Connect Timestamp (epoch milliseconds), the amount as int64 cents, the kind as the ledger's text,
and the record's partition and offset in the source topic as source_partition/source_offset,
as the ledger records them. Each record keeps its key and its partition, so the copy has the
same order per partition. Runs once, untimed, before the measured runs.

Usage: peers_to_json.py BOOTSTRAP SOURCE_TOPIC TARGET_TOPIC COUNT
"""

import json
import sys
import time

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic
from confluent_kafka.serialization import MessageField, SerializationContext

import peers_proto

FIELDS = [
    ("transaction_id", "string", None),
    ("account_number", "string", None),
    ("transaction_reference", "string", None),
    ("transaction_datetime", "int64", "org.apache.kafka.connect.data.Timestamp"),
    ("kind", "string", None),
    ("amount_cents", "int64", None),
    ("currency", "string", None),
    ("branch_id", "int64", None),
    ("description", "string", None),
    ("source_partition", "int32", None),
    ("source_offset", "int64", None),
]


def schema() -> dict:
    fields = []
    for name, kind, logical in FIELDS:
        field = {"field": name, "type": kind, "optional": logical is not None}
        if logical:
            field.update(name=logical, version=1)
        fields.append(field)
    return {"type": "struct", "name": "bank.v1.Transaction", "optional": False, "fields": fields}


def payload(tx, partition: int, offset: int) -> dict:
    when = tx.transaction_datetime
    millis = when.seconds * 1000 + when.nanos // 1_000_000 if tx.HasField("transaction_datetime") else None
    return {
        "transaction_id": tx.transaction_id,
        "account_number": tx.account_number,
        "transaction_reference": tx.transaction_reference,
        "transaction_datetime": millis,
        "kind": peers_proto.kind_name(tx),
        "amount_cents": tx.amount_cents,
        "currency": tx.currency,
        "branch_id": tx.branch_id,
        "description": tx.description,
        "source_partition": partition,
        "source_offset": offset,
    }


def create_topic(bootstrap: str, topic: str, partitions: int) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    for future in admin.create_topics([NewTopic(topic, partitions, 1)]).values():
        future.result(timeout=30)


def source_partitions(consumer: Consumer, topic: str) -> dict:
    """partition -> high watermark of the source topic."""
    meta = consumer.list_topics(topic, timeout=30).topics[topic]
    return {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=30)[1] for p in meta.partitions}


def produce(producer: Producer, topic: str, value: bytes, key: bytes, partition: int) -> None:
    """Produce, waiting for the local queue to drain when it is full."""
    while True:
        try:
            producer.produce(topic, value, key=key, partition=partition)
            producer.poll(0)
            return
        except BufferError:
            producer.poll(0.5)


def copy(bootstrap: str, source: str, target: str, count: int) -> None:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"peers-json-{time.time()}",
                         "enable.auto.commit": False, "auto.offset.reset": "earliest"})
    highs = source_partitions(consumer, source)
    create_topic(bootstrap, target, len(highs))
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 20, "compression.type": "lz4",
                         "acks": "all", "enable.idempotence": True})
    decode = peers_proto.deserializer()
    envelope_schema = schema()
    consumer.assign([TopicPartition(source, p, 0) for p in highs])
    copied, deadline = 0, time.monotonic() + 600
    while copied < count:
        if time.monotonic() > deadline:
            raise SystemExit(f"copied only {copied} of {count} in 600 s")
        for message in consumer.consume(5000, timeout=1):
            if message.error():
                raise SystemExit(f"consume: {message.error()}")
            tx = decode(message.value(), SerializationContext(source, MessageField.VALUE))
            value = {"schema": envelope_schema, "payload": payload(tx, message.partition(), message.offset())}
            produce(producer, target, json.dumps(value, separators=(",", ":")).encode(),
                    message.key(), message.partition())
            copied += 1
    if producer.flush(60) != 0:
        raise SystemExit("producer flush timed out")
    consumer.close()
    print(f"copied {copied} transactions from {source} to {target} as JSON with schema")


if __name__ == "__main__":
    if len(sys.argv) != 5:
        raise SystemExit(__doc__)
    copy(sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]))
