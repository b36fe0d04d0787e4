"""A seed-style consumer: what the tutorials this project started from would have us write.

The seeds (shared/seeds: the ZipBank lab's "Kafka consumer in Python with SQLAlchemy", the
streaming-pipeline chapter's `for message in consumer: INSERT; conn.commit()`) store each
transaction the moment it arrives: one ORM object, one INSERT, one database commit per message,
with the Kafka client's auto-commit of offsets (enable.auto.commit, every 5 s by default) left on.
This is that consumer, kept honest but not tuned: Confluent's client and protobuf deserializer
(the same wire format as our topics), SQLAlchemy 2 over psycopg 3, the ledger's table and column
names so that rows compare one for one. It is slow (about a thousand rows per second), so
bench/peers.sh times it for a fixed budget, and its auto-commit means a crash redelivers what was
stored since the last offset commit (duplicates) and may skip a message polled but not stored.

Usage:
  peers_seed.py run BOOTSTRAP DATABASE_URL TOPIC GROUP [MAX_OFFSET_PER_PARTITION]
      consume from the group's committed offsets (earliest at first); with MAX_OFFSET, ignore
      records at or beyond it and exit once every partition has reached it (or its end).
  peers_seed.py slice BOOTSTRAP TOPIC MAX_OFFSET_PER_PARTITION
      print how many records lie below MAX_OFFSET in all partitions: the rows a slice must hold.
"""

import datetime
import sys
import time

from confluent_kafka import Consumer, TopicPartition
from confluent_kafka.serialization import MessageField, SerializationContext
from sqlalchemy import BigInteger, Integer, String, create_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

import peers_proto


class Base(DeclarativeBase):
    pass


class Transaction(Base):
    """The ledger's transactions table, as an ORM class (the table itself exists already)."""

    __tablename__ = "transactions"
    transaction_id: Mapped[str] = mapped_column(String, primary_key=True)
    account_number: Mapped[str] = mapped_column(String)
    transaction_reference: Mapped[str] = mapped_column(String)
    transaction_datetime: Mapped[datetime.datetime | None]
    kind: Mapped[str] = mapped_column(String(16))
    amount_cents: Mapped[int] = mapped_column(BigInteger)
    currency: Mapped[str] = mapped_column(String(3))
    branch_id: Mapped[int] = mapped_column(BigInteger)
    description: Mapped[str] = mapped_column(String)
    source_partition: Mapped[int] = mapped_column(Integer)
    source_offset: Mapped[int] = mapped_column(BigInteger)


def to_row(tx, partition: int, offset: int) -> Transaction:
    when = None
    if tx.HasField("transaction_datetime"):
        when = tx.transaction_datetime.ToDatetime(tzinfo=datetime.timezone.utc)
    return Transaction(
        transaction_id=tx.transaction_id, account_number=tx.account_number,
        transaction_reference=tx.transaction_reference, transaction_datetime=when,
        kind=peers_proto.kind_name(tx), amount_cents=tx.amount_cents, currency=tx.currency,
        branch_id=tx.branch_id, description=tx.description,
        source_partition=partition, source_offset=offset,
    )


def high_watermarks(consumer: Consumer, topic: str) -> dict:
    partitions = consumer.list_topics(topic, timeout=30).topics[topic].partitions
    return {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=30)[1] for p in partitions}


def slice_size(bootstrap: str, topic: str, max_offset: int) -> int:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "peers-slice"})
    size = sum(min(high, max_offset) for high in high_watermarks(consumer, topic).values())
    consumer.close()
    return size


def done(positions: dict, stops: dict) -> bool:
    return bool(stops) and all(positions.get(p, 0) >= stop for p, stop in stops.items())


def run(bootstrap: str, database_url: str, topic: str, group: str, max_offset: int | None) -> None:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group,
                         "auto.offset.reset": "earliest", "enable.auto.commit": True})
    stops = {}
    if max_offset is not None:
        stops = {p: min(high, max_offset) for p, high in high_watermarks(consumer, topic).items()}
    consumer.subscribe([topic])
    decode = peers_proto.deserializer()
    engine = create_engine(database_url)
    positions: dict = {}
    with Session(engine) as session:
        while not done(positions, stops):
            message = consumer.poll(1.0)
            if message is None or message.error():
                continue
            positions[message.partition()] = message.offset() + 1
            if max_offset is not None and message.offset() >= max_offset:
                continue
            tx = decode(message.value(), SerializationContext(topic, MessageField.VALUE))
            session.add(to_row(tx, message.partition(), message.offset()))
            session.commit()
    consumer.close()


def main(argv: list) -> None:
    if len(argv) >= 5 and argv[0] == "run":
        run(argv[1], argv[2], argv[3], argv[4], int(argv[5]) if len(argv) > 5 else None)
    elif len(argv) == 4 and argv[0] == "slice":
        print(slice_size(argv[1], argv[2], int(argv[3])))
    else:
        raise SystemExit(__doc__)


if __name__ == "__main__":
    main(sys.argv[1:])
