"""Kafka clients from PyPI (confluent-kafka, kafka-python) against Eddy's
Kafka listener: one scenario per command, each printing one JSON line
that the Rust tests in python.rs check.

    python3 clients.py SCENARIO BOOTSTRAP TOPIC [COUNT]
"""

import json
import sys
import time


def admin(bootstrap, topic, _count):
    """confluent-kafka's AdminClient: create, see, create again, delete."""
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import AdminClient, NewTopic

    client = AdminClient({"bootstrap.servers": bootstrap})
    client.create_topics([NewTopic(topic, num_partitions=3, replication_factor=1)])[topic].result(30)
    partitions = len(client.list_topics(timeout=30).topics[topic].partitions)
    try:
        client.create_topics([NewTopic(topic, num_partitions=3, replication_factor=1)])[topic].result(30)
        again = "created twice"
    except KafkaException as e:
        again = e.args[0].name()
    client.delete_topics([topic])[topic].result(30)
    deadline = time.time() + 30
    while topic in client.list_topics(timeout=30).topics and time.time() < deadline:
        time.sleep(0.1)
    gone = topic not in client.list_topics(timeout=30).topics
    print(json.dumps({"partitions": partitions, "again": again, "gone": gone}))


def confluent_produce(bootstrap, topic, count):
    """An idempotent librdkafka producer, acks=all, keys placed as Java does."""
    from confluent_kafka import Producer

    producer = Producer({
        "bootstrap.servers": bootstrap,
        "enable.idempotence": True,
        "acks": "all",
        "compression.type": "none",
        "partitioner": "murmur2_random",
        "linger.ms": 5,
    })
    errors = []
    acked = [0]

    def report(err, _msg):
        if err is not None:
            errors.append(str(err))
        else:
            acked[0] += 1

    for i in range(count):
        while True:
            try:
                producer.produce(topic, key=f"k{i % 10}", value=f"v{i}", on_delivery=report)
                break
            except BufferError:
                producer.poll(0.1)
        producer.poll(0)
    unflushed = producer.flush(60)
    print(json.dumps({"acked": acked[0], "errors": errors[:5], "unflushed": unflushed}))


def confluent_consume(bootstrap, topic, count):
    """A librdkafka consumer assigned every partition from the start."""
    from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

    consumer = Consumer({
        "bootstrap.servers": bootstrap,
        "group.id": "assigned-not-subscribed",
        "enable.auto.commit": False,
    })
    partitions = consumer.list_topics(topic, timeout=30).topics[topic].partitions
    consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in partitions])
    got, errors = [], []
    deadline = time.time() + 60
    while len(got) < count and time.time() < deadline:
        m = consumer.poll(1.0)
        if m is None:
            continue
        if m.error():
            errors.append(str(m.error()))
            continue
        got.append([m.key().decode(), m.value().decode(), m.partition(), m.offset()])
    consumer.close()
    print(json.dumps({"records": got, "errors": errors[:5]}))


def kafka_python(bootstrap, topic, count):
    """kafka-python: an idempotent producer, then a consumer assigned every
    partition."""
    from kafka import KafkaConsumer, KafkaProducer, TopicPartition

    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True)
    sent = [producer.send(topic, key=f"k{i % 10}".encode(), value=f"v{i}".encode()) for i in range(count)]
    producer.flush(60)
    acked = [f.get(30) for f in sent]
    producer.close()
    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=None,
        enable_auto_commit=False,
        consumer_timeout_ms=5000,
    )
    partitions = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic))]
    consumer.assign(partitions)
    consumer.seek_to_beginning()
    got = [[m.key.decode(), m.value.decode(), m.partition, m.offset] for m in consumer]
    consumer.close()
    print(json.dumps({"acked": len(acked), "records": got}))


def confluent_group(bootstrap, topic, count):
    """Three librdkafka consumers of group `readers` share the topic (one
    partition each, range assignor), read COUNT records and commit; one
    leaves, the other two take its partition over and read COUNT more
    without reading anything twice."""
    from confluent_kafka import Consumer, Producer

    def consumer(name):
        c = Consumer({
            "bootstrap.servers": bootstrap,
            "group.id": "readers",
            "client.id": name,
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            "session.timeout.ms": 6000,
            "heartbeat.interval.ms": 500,
            "partition.assignment.strategy": "range",
        })
        c.subscribe([topic])
        return c

    def produce(start, n):
        p = Producer({"bootstrap.servers": bootstrap, "partitioner": "murmur2_random"})
        for i in range(start, start + n):
            p.produce(topic, key=f"k{i % 30}", value=f"v{i}")
        p.flush(30)

    def read(consumers, n, seen):
        deadline = time.time() + 90
        while sum(len(v) for v in seen.values()) < n and time.time() < deadline:
            for name, c in consumers.items():
                for m in c.consume(500, 0.05):
                    if not m.error():
                        seen[name].append(m.value().decode())
        for c in consumers.values():
            c.commit(asynchronous=False)

    produce(0, count)
    consumers = {f"c{i}": consumer(f"c{i}") for i in range(3)}
    first = {name: [] for name in consumers}
    read(consumers, count, first)
    assigned = {name: len(c.assignment()) for name, c in consumers.items()}
    consumers.pop("c2").close()
    # The two left rebalance until they hold all three partitions.
    deadline = time.time() + 60
    while time.time() < deadline:
        for c in consumers.values():
            c.poll(0.1)
        if sum(len(c.assignment()) for c in consumers.values()) == 3:
            break
    after = {name: len(c.assignment()) for name, c in consumers.items()}
    produce(count, count)
    second = {name: [] for name in consumers}
    read(consumers, count, second)
    for c in consumers.values():
        c.close()
    values = [v for vs in list(first.values()) + list(second.values()) for v in vs]
    print(json.dumps({
        "assigned": assigned,
        "after_leave": after,
        "first": sum(len(v) for v in first.values()),
        "second": sum(len(v) for v in second.values()),
        "distinct": len(set(values)),
        "total": len(values),
    }))


SCENARIOS = {
    "confluent-group": confluent_group,
    "admin": admin,
    "confluent-produce": confluent_produce,
    "confluent-consume": confluent_consume,
    "kafka-python": kafka_python,
}

if __name__ == "__main__":
    scenario, bootstrap, topic = sys.argv[1:4]
    count = int(sys.argv[4]) if len(sys.argv) > 4 else 0
    SCENARIOS[scenario](bootstrap, topic, count)
