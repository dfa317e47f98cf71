"""A Kafka peer for the Kafka broker's interop test, with kafka-python (not our code).

consume BOOTSTRAP TOPIC N   reads N records from the start of TOPIC and prints one JSON line per
                            record: partition, key, value, headers, and the partition
                            kafka-python's own partitioner picks for the key.
produce BOOTSTRAP TOPIC N   produces N JSON records with Micro-Id and Content-Type headers.
"""
import json
import sys

from kafka import KafkaConsumer, KafkaProducer
from kafka.partitioner.default import murmur2


def consume(bootstrap, topic, n):
    consumer = KafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest",
                             enable_auto_commit=False, consumer_timeout_ms=20000)
    partitions = len(consumer.partitions_for_topic(topic) or [0]) or 1
    seen = 0
    for record in consumer:
        key = record.key.decode() if record.key is not None else None
        picked = (murmur2(record.key) & 0x7FFFFFFF) % partitions if record.key is not None else None
        print(json.dumps({
            "partition": record.partition,
            "picked": picked,
            "key": key,
            "value": record.value.decode(),
            "headers": {k: v.decode() for k, v in record.headers},
        }), flush=True)
        seen += 1
        if seen >= n:
            break
    consumer.close()


def produce(bootstrap, topic, n):
    producer = KafkaProducer(bootstrap_servers=bootstrap)
    for i in range(n):
        headers = [("Micro-Id", f"py-{i}".encode()), ("Content-Type", b"application/json")]
        producer.send(topic, json.dumps({"from": "python", "i": i}).encode(), headers=headers).get(timeout=20)
    producer.flush()
    producer.close()


if __name__ == "__main__":
    mode, bootstrap, topic, n = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    {"consume": consume, "produce": produce}[mode](bootstrap, topic, n)
