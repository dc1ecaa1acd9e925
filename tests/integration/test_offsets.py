"""A transaction's offsets are not the group's committed offsets until the broker has written its
markers, a moment after the producer's commit returns: a partition's next owner waits for them
(`streams.eos.wait_for_stable_offsets`, KIP-447's `require_stable`) before seeking."""

from __future__ import annotations

import threading
import time

from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic
from faust.types import TP

from streams.config import Settings
from streams.eos import wait_for_stable_offsets


def test_the_next_owner_waits_for_a_transactions_offsets(stack: Settings, topic_prefix: str) -> None:
    conf = stack.confluent()
    topic, group = f"{topic_prefix}offsets", f"{topic_prefix}group"
    admin = AdminClient(conf)
    admin.create_topics([NewTopic(topic, 1, 1)])[topic].result()
    plain = Producer(conf)
    for i in range(3):
        plain.produce(topic, b"%d" % i)
    plain.flush()
    owner = Consumer({**conf, "group.id": group, "enable.auto.commit": False})
    owner.subscribe([topic])
    deadline = time.monotonic() + 30
    while not owner.assignment() and time.monotonic() < deadline:
        owner.poll(0.2)
    txn = Producer({**conf, "transactional.id": f"{group}-txn"})
    txn.init_transactions()
    txn.begin_transaction()
    txn.send_offsets_to_transaction([TopicPartition(topic, 0, 3)], owner.consumer_group_metadata())
    txn.produce(topic, b"out")
    txn.flush()
    tps = [TP(topic, 0)]
    try:
        # pending: the wait gives up after its timeout (the fetch would then see the old offsets)
        assert wait_for_stable_offsets(admin, group, tps, timeout_s=0.5) >= 0.5
        # committed while someone waits: the wait ends after the commit, and the offset is then the new one
        committer = threading.Timer(1.0, txn.commit_transaction)
        committer.start()
        started = time.monotonic()
        waited = wait_for_stable_offsets(admin, group, tps, timeout_s=30)
        committer.join()
        assert 1.0 <= waited < 30 and time.monotonic() - started >= 1.0
        reader = Consumer({**conf, "group.id": group, "enable.auto.commit": False})
        try:
            assert reader.committed([TopicPartition(topic, 0)], timeout=10)[0].offset == 3
        finally:
            reader.close()
    finally:
        owner.close()
