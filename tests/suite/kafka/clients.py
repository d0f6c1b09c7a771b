"""Kafka clients from PyPI (confluent-kafka, kafka-python) against Eddy's
Kafka listener: one scenario per command, each printing one JSON line
that the Rust tests in python.rs check.

    python3 clients.py SCENARIO BOOTSTRAP TOPIC [COUNT]
"""

import json
import sys
import time


def admin(bootstrap, topic, _count):
    """confluent-kafka's AdminClient: create, see, create again, grow,
    describe the topic's configs and the cluster, delete."""
    from confluent_kafka import KafkaException
    from confluent_kafka.admin import AdminClient, ConfigResource, NewPartitions, NewTopic

    client = AdminClient({"bootstrap.servers": bootstrap})

    def failure(future):
        try:
            future.result(30)
            return "succeeded"
        except KafkaException as e:
            return e.args[0].name()

    new = NewTopic(topic, num_partitions=3, replication_factor=1,
                   config={"cleanup.policy": "compact"})
    client.create_topics([new])[topic].result(30)
    partitions = len(client.list_topics(timeout=30).topics[topic].partitions)
    again = failure(client.create_topics([new])[topic])
    client.create_partitions([NewPartitions(topic, 5)])[topic].result(30)
    grown = len(client.list_topics(timeout=30).topics[topic].partitions)
    shrink = failure(client.create_partitions([NewPartitions(topic, 2)])[topic])
    resource = ConfigResource(ConfigResource.Type.TOPIC, topic)
    entries = client.describe_configs([resource])[resource].result(30)
    configs = {
        name: [entry.value, str(entry.source)]
        for name, entry in entries.items()
    }
    cluster = client.describe_cluster().result(30)
    client.delete_topics([topic])[topic].result(30)
    deadline = time.time() + 30
    while topic in client.list_topics(timeout=30).topics and time.time() < deadline:
        time.sleep(0.1)
    gone = topic not in client.list_topics(timeout=30).topics
    print(json.dumps({
        "partitions": partitions,
        "again": again,
        "grown": grown,
        "shrink": shrink,
        "configs": configs,
        "cluster": {
            "id": cluster.cluster_id,
            "controller": cluster.controller.id if cluster.controller else None,
            "nodes": [[n.id, n.host, n.port] for n in cluster.nodes],
        },
        "gone": gone,
    }))


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
    from confluent_kafka.admin import AdminClient

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
    # What Kafka's admin tools see of the group while its two members read.
    client = AdminClient({"bootstrap.servers": bootstrap})
    listed = {
        g.group_id: getattr(g.state, "name", str(g.state))
        for g in client.list_consumer_groups().result(30).valid
    }
    group = client.describe_consumer_groups(["readers"])["readers"].result(30)
    described = {
        "state": getattr(group.state, "name", str(group.state)),
        "assignor": group.partition_assignor,
        "members": sorted(
            [m.client_id, sorted(tp.partition for tp in m.assignment.topic_partitions)]
            for m in group.members
        ),
    }
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
        "listed": listed,
        "described": described,
    }))


def sasl(bootstrap, topic, count):
    """A user signed in with SASL/SCRAM-SHA-256 (password in
    $KAFKA_PASSWORD; over TLS when $KAFKA_CA names the CA to trust)
    produces idempotently to TOPIC and reads it back in its group; it is
    refused the topic `forbidden`, and a wrong password is refused
    outright."""
    import os

    from confluent_kafka import Consumer, Producer
    from confluent_kafka.admin import AdminClient

    signed_in = {
        "bootstrap.servers": bootstrap,
        "security.protocol": "SASL_PLAINTEXT",
        "sasl.mechanism": "SCRAM-SHA-256",
        "sasl.username": "reader",
        "sasl.password": os.environ["KAFKA_PASSWORD"],
    }
    if os.environ.get("KAFKA_CA"):
        signed_in["security.protocol"] = "SASL_SSL"
        signed_in["ssl.ca.location"] = os.environ["KAFKA_CA"]
    producer = Producer({**signed_in, "enable.idempotence": True, "acks": "all"})
    acked, errors = [0], []

    def report(err, _msg):
        if err is None:
            acked[0] += 1
        else:
            errors.append(err.name())

    for i in range(count):
        producer.produce(topic, value=f"v{i}", on_delivery=report)
    producer.produce("forbidden", value="sneaky", on_delivery=report)
    producer.flush(30)

    consumer = Consumer({
        **signed_in,
        "group.id": "sasl-readers",
        "auto.offset.reset": "earliest",
    })
    consumer.subscribe([topic])
    values = []
    deadline = time.time() + 60
    while len(values) < count and time.time() < deadline:
        for m in consumer.consume(500, 0.2):
            if not m.error():
                values.append(m.value().decode())
    consumer.close()

    # A wrong password: librdkafka reports the failed sign-in to error_cb.
    reported = []
    wrong = AdminClient({
        **signed_in,
        "sasl.password": "not-the-password",
        "error_cb": lambda e: reported.append(e.name()),
    })
    deadline = time.time() + 30
    while not reported and time.time() < deadline:
        wrong.poll(0.1)
    refused = reported[0] if reported else "no error reported"
    print(json.dumps({
        "acked": acked[0],
        "errors": errors,
        "consumed": len(set(values)),
        "wrong_password": refused,
    }))


def compressed(bootstrap, topic, count):
    """Every codec from both clients: an idempotent librdkafka producer
    (acks=all) and a kafka-python producer each write COUNT records per
    codec to TOPIC; a librdkafka consumer reads every one back."""
    from confluent_kafka import Consumer, Producer, TopicPartition
    from kafka import KafkaProducer

    codecs = ["gzip", "snappy", "lz4", "zstd"]
    acked, errors = {}, []
    padding = "x" * 64
    for codec in codecs:
        producer = Producer({
            "bootstrap.servers": bootstrap,
            "enable.idempotence": True,
            "acks": "all",
            "compression.type": codec,
            "linger.ms": 20,
        })
        done = [0]

        def report(err, _msg, done=done):
            if err is None:
                done[0] += 1
            else:
                errors.append(f"{codec}: {err}")

        for i in range(count):
            producer.produce(topic, key=f"k{i % 7}", value=f"confluent {codec} {i} {padding}",
                             on_delivery=report)
        producer.flush(30)
        acked[f"confluent-{codec}"] = done[0]

        producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all",
                                 enable_idempotence=True, compression_type=codec, linger_ms=20)
        futures = [
            producer.send(topic, key=f"k{i % 7}".encode(),
                          value=f"kafka-python {codec} {i} {padding}".encode())
            for i in range(count)
        ]
        producer.flush(30)
        acked[f"kafka-python-{codec}"] = sum(1 for f in futures if f.succeeded())
        errors.extend(f"{codec}: {f.exception}" for f in futures if f.failed())
        producer.close()

    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "compressed-readers",
                         "enable.auto.commit": False})
    partitions = consumer.list_topics(topic, timeout=30).topics[topic].partitions
    consumer.assign([TopicPartition(topic, p, 0) for p in partitions])
    values = []
    deadline = time.time() + 60
    while len(values) < 8 * count and time.time() < deadline:
        for m in consumer.consume(1000, 0.2):
            if not m.error():
                values.append(m.value().decode())
    consumer.close()
    print(json.dumps({
        "acked": acked,
        "errors": errors[:5],
        "consumed": len(values),
        "distinct": len(set(values)),
    }))


def pipeline_feed(bootstrap, topic, count):
    """COUNT JSON readings into TOPIC from an idempotent librdkafka
    producer compressing with lz4: {"n": i, "key": "k<i % 7>"}."""
    from confluent_kafka import Producer

    producer = Producer({
        "bootstrap.servers": bootstrap,
        "enable.idempotence": True,
        "acks": "all",
        "compression.type": "lz4",
        "partitioner": "murmur2_random",
    })
    for i in range(count):
        key = f"k{i % 7}"
        producer.produce(topic, key=key, value=json.dumps({"n": i, "key": key}))
    left = producer.flush(30)
    print(json.dumps({"unflushed": left}))


def pipeline_read(bootstrap, topic, count):
    """A librdkafka consumer of group `pipeline-readers` reads COUNT
    records of TOPIC: [key, value] in the order read."""
    from confluent_kafka import Consumer

    consumer = Consumer({
        "bootstrap.servers": bootstrap,
        "group.id": "pipeline-readers",
        "auto.offset.reset": "earliest",
    })
    consumer.subscribe([topic])
    records = []
    deadline = time.time() + 90
    while len(records) < count and time.time() < deadline:
        for m in consumer.consume(500, 0.2):
            if not m.error():
                records.append([m.key().decode(), m.value().decode()])
    consumer.close()
    print(json.dumps({"records": records}))


def failover_produce(bootstrap, topic, count):
    """An idempotent librdkafka producer (acks=all) sends COUNT records at
    a steady pace while the test kills a partition leader; prints
    `producing` once the first is acknowledged, then what was
    acknowledged ([partition, value]s) and what failed."""
    from confluent_kafka import Producer

    producer = Producer({
        "bootstrap.servers": bootstrap,
        "enable.idempotence": True,
        "acks": "all",
        "linger.ms": 5,
        "message.timeout.ms": 120000,
        "partitioner": "murmur2_random",
    })
    acked, failed = [], []

    def report(err, msg):
        if err is None:
            acked.append([msg.partition(), msg.value().decode()])
        else:
            failed.append(str(err))

    producer.produce(topic, key="k0", value="v0", on_delivery=report)
    producer.flush(30)
    print("producing", flush=True)
    for i in range(1, count):
        producer.produce(topic, key=f"k{i % 30}", value=f"v{i}", on_delivery=report)
        producer.poll(0)
        if i % 50 == 0:
            time.sleep(0.02)
    left = producer.flush(150)
    print(json.dumps({
        "acked": acked,
        "failures": len(failed),
        "failed": failed[:5],
        "unflushed": left,
    }))


def read_all(bootstrap, topic, count):
    """Every record of TOPIC from the start, by a librdkafka consumer
    without a group: the values, in the order read."""
    from confluent_kafka import Consumer, TopicPartition

    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "read-all",
                         "enable.auto.commit": False})
    partitions = consumer.list_topics(topic, timeout=30).topics[topic].partitions
    consumer.assign([TopicPartition(topic, p, 0) for p in partitions])
    values = []
    deadline = time.time() + 90
    while len(values) < count and time.time() < deadline:
        for m in consumer.consume(1000, 0.2):
            if not m.error():
                values.append(m.value().decode())
    # Anything beyond COUNT would be a duplicate: look a little longer.
    quiet = time.time() + 2
    while time.time() < quiet:
        for m in consumer.consume(1000, 0.2):
            if not m.error():
                values.append(m.value().decode())
    consumer.close()
    print(json.dumps({"values": values}))


SCENARIOS = {
    "confluent-group": confluent_group,
    "admin": admin,
    "confluent-produce": confluent_produce,
    "confluent-consume": confluent_consume,
    "kafka-python": kafka_python,
    "sasl": sasl,
    "compressed": compressed,
    "pipeline-feed": pipeline_feed,
    "pipeline-read": pipeline_read,
    "failover-produce": failover_produce,
    "read-all": read_all,
}

if __name__ == "__main__":
    scenario, bootstrap, topic = sys.argv[1:4]
    count = int(sys.argv[4]) if len(sys.argv) > 4 else 0
    SCENARIOS[scenario](bootstrap, topic, count)
