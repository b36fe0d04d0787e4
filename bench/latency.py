"""Latency of the ledger, measured from outside it.

poll:    polls the ledger's consumer_offsets every POLL_MS and writes, each time a partition's
         stored next offset moves, (time, partition, next offset): the instant those rows became
         visible to any reader (they commit in the same transaction as the offset).
report:  reads the transactions topic's Kafka timestamps and prints p50/p95/p99/max of
         visible - timestamp over every transaction sent since the measured run began.

An independent measurement: it trusts neither the ledger's clock nor its histogram.
"""

import bisect
import json
import sys
import time


def poll(dsn: str, group: str, topic: str, out_path: str, stop_path: str, poll_ms: float) -> None:
    import os

    import psycopg

    seen: dict[int, int] = {}
    with psycopg.connect(dsn, autocommit=True) as conn, open(out_path, "w") as out:
        query = "SELECT partition, next_offset FROM consumer_offsets WHERE group_id = %s AND topic = %s"
        while not os.path.exists(stop_path):
            now = time.time()
            for partition, next_offset in conn.execute(query, (group, topic)).fetchall():
                if seen.get(partition) != next_offset:
                    seen[partition] = next_offset
                    out.write(f"{now:.6f} {partition} {next_offset}\n")
            out.flush()
            time.sleep(poll_ms / 1000)


def report(bootstrap: str, topic: str, visible_path: str, label: str, since: float) -> None:
    from confluent_kafka import Consumer, TopicPartition

    moves: dict[int, list[tuple[int, float]]] = {}
    for line in open(visible_path):
        at, partition, next_offset = line.split()
        moves.setdefault(int(partition), []).append((int(next_offset), float(at)))
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"latency-{time.time()}",
                         "enable.auto.commit": False})
    ages = []
    for partition, partition_moves in moves.items():
        partition_moves.sort()
        offsets = [m[0] for m in partition_moves]
        low, high = consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=10)
        consumer.assign([TopicPartition(topic, partition, low)])
        read = low
        while read < high:
            for message in consumer.consume(10000, timeout=5):
                if message.error():
                    continue
                offset = message.offset()
                read = offset + 1
                # The first stored next offset beyond this record: when it became visible.
                i = bisect.bisect_right(offsets, offset)
                _, ts = message.timestamp()
                if i < len(offsets) and ts / 1000 >= since:
                    ages.append(partition_moves[i][1] - ts / 1000)
        consumer.unassign()
    consumer.close()
    ages.sort()
    if not ages:
        raise SystemExit(f"{label}: no transaction became visible")
    pick = lambda q: ages[min(len(ages) - 1, int(q * len(ages)))] * 1000
    print(json.dumps({"label": label, "count": len(ages), "p50_ms": round(pick(0.50), 1),
                      "p95_ms": round(pick(0.95), 1), "p99_ms": round(pick(0.99), 1),
                      "max_ms": round(ages[-1] * 1000, 1)}))


if __name__ == "__main__":
    if sys.argv[1] == "poll":
        poll(sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5], sys.argv[6], float(sys.argv[7]))
    else:
        report(sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5], float(sys.argv[6]))
