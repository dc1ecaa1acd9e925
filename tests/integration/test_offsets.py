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


def topic_with_records(conf: dict[str, object], topic: str, partitions: int, records: int) -> AdminClient:
    """A new topic holding `records` records spread over its partitions in turn; returns the admin
    client that made it, for the caller's further admin calls."""
    admin = AdminClient(conf)  # type: ignore[arg-type]
    admin.create_topics([NewTopic(topic, partitions, 1)])[topic].result()
    plain = Producer(conf)  # type: ignore[arg-type]
    for i in range(records):
        plain.produce(topic, b"%d" % i, partition=i % partitions)
    plain.flush()
    return admin


def test_the_next_owner_waits_for_a_transactions_offsets(stack: Settings, topic_prefix: str) -> None:
    conf = stack.confluent()
    topic, group = f"{topic_prefix}offsets", f"{topic_prefix}group"
    admin = topic_with_records(conf, topic, partitions=1, records=3)
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


def test_a_seek_to_committed_offsets_puts_back_a_partition_never_committed(stack: Settings, topic_prefix: str) -> None:
    """aiokafka's `seek_to_committed` leaves a partition without a committed offset where the last
    fetch left it; Faust drops a fetch cut by a rebalance and counts on that seek to read it again,
    so on a fresh topic the first fetch round was skipped (50 reports lost in two-worker runs).
    `reset_uncommitted` puts such a partition back at its start, and leaves committed ones alone."""
    import asyncio

    from aiokafka import AIOKafkaConsumer
    from aiokafka.structs import TopicPartition as AioTP

    from streams.eos import reset_uncommitted

    conf = stack.confluent()
    topic, group = f"{topic_prefix}fresh", f"{topic_prefix}group"
    topic_with_records(conf, topic, partitions=2, records=100)
    committer = Consumer({**conf, "group.id": group, "enable.auto.commit": False})
    committer.commit(offsets=[TopicPartition(topic, 1, 30)], asynchronous=False)  # partition 1: committed at 30
    committer.close()
    fresh, done = AioTP(topic, 0), AioTP(topic, 1)

    async def run() -> tuple[dict[AioTP, int], dict[AioTP, int], list[AioTP]]:
        consumer = AIOKafkaConsumer(bootstrap_servers=stack.bootstrap, group_id=group, enable_auto_commit=False,
                                    auto_offset_reset="earliest", max_poll_records=20)
        await consumer.start()
        try:
            consumer.assign([fresh, done])
            for _ in range(100):  # read past the first records of both partitions
                await consumer.getmany(timeout_ms=500)
                if await consumer.position(fresh) >= 20 and await consumer.position(done) >= 50:
                    break
            committed = await consumer.seek_to_committed()
            after_aiokafka = {tp: await consumer.position(tp) for tp in (fresh, done)}
            reset = await reset_uncommitted(consumer, committed)
            return after_aiokafka, {tp: await consumer.position(tp) for tp in (fresh, done)}, reset
        finally:
            await consumer.stop()

    after_aiokafka, after_reset, reset = asyncio.run(run())
    assert after_aiokafka[fresh] >= 20  # aiokafka kept the fetched-past position: those records would be skipped
    assert after_aiokafka[done] == 30
    assert reset == [fresh]
    assert after_reset == {fresh: 0, done: 30}
