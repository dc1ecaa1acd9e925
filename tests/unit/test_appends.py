"""Records appended straight into aiokafka's open batch: the same bytes, offsets and outcome as `send`,
and `send` whenever no open batch takes them (streams/appends.py)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaTimeoutError
from aiokafka.record.default_records import DefaultRecordBatch
from aiokafka.structs import TopicPartition

from streams.appends import Appended, Straight, append
from streams.partitioner import partition_for

pytestmark = pytest.mark.unit
TP = TopicPartition("lane", 2)


@contextmanager
def unstarted(**config: Any) -> Iterator[AIOKafkaProducer]:
    """An aiokafka producer never started (no broker needed to fill and resolve its batches)."""
    producer = AIOKafkaProducer(bootstrap_servers="127.0.0.1:1", **config)
    try:
        yield producer
    finally:
        producer._closed = True  # nothing to stop; its batches are never sent


def records_of(batch: Any) -> list[tuple[int, bytes | None, bytes | None]]:
    """(offset delta, key, value) of each record in a built batch, as the broker would read them."""
    return [(r.offset, r.key, r.value) for r in DefaultRecordBatch(bytes(batch._builder._build()))]


class Sent:
    """A producer stand-in for `Straight`: records what reached `send` (the append path needs a real one)."""

    def __init__(self, producer: AIOKafkaProducer, partitions: int) -> None:
        self.real, self.partitions = producer, partitions
        self.sent: list[tuple[str, bytes | None, bytes | None, int | None]] = []
        self._message_accumulator = producer._message_accumulator
        self.client = self
        self.cluster = self

    def partitions_for_topic(self, topic: str) -> set[int]:
        return set(range(self.partitions))

    async def send(self, topic: str, value: bytes | None, *, key: bytes | None, partition: int | None) -> str:
        self.sent.append((topic, key, value, partition))
        return "sent"


def test_appends_to_the_open_batch_with_each_records_offset_and_the_batchs_outcome() -> None:
    async def scenario() -> None:
        with unstarted() as producer:
            acc = producer._message_accumulator
            assert append(producer, TP.topic, TP.partition, b"k0", b"v0") is None  # no open batch: `send`'s job
            batch = acc._append_batch(acc.create_builder(), TP)  # as `send` opens it
            first = batch.append(b"k0", b"v0", None)  # a record through `send`'s own path
            got = [append(producer, "lane", 2, b"k%d" % i, b"v%d" % i) for i in (1, 2)]
            assert all(isinstance(a, Appended) for a in got)
            assert [a.relative for a in got if a] == [1, 2]
            assert append(producer, "lane", 3, b"k", b"v") is None  # another partition's batch is not open
            seen: list[int] = []
            for a in got:
                assert a is not None
                a.add_done_callback(lambda f: seen.append(f.result().offset))
            assert records_of(batch) == [(0, b"k0", b"v0"), (1, b"k1", b"v1"), (2, b"k2", b"v2")]
            assert append(producer, "lane", 2, b"k3", b"v3") is None  # built (being sent): closed to appends
            batch.done(base_offset=100)
            assert (await first).offset == 100
            assert [(await a).offset for a in got if a] == [101, 102]
            await asyncio.sleep(0)
            assert seen == [101, 102]
            assert got[0] is not None and got[0].result().topic_partition == TP

    asyncio.run(scenario())


def test_a_failed_batch_fails_every_record_appended_to_it() -> None:
    async def scenario() -> None:
        with unstarted() as producer:
            acc = producer._message_accumulator
            batch = acc._append_batch(acc.create_builder(), TP)
            a = append(producer, "lane", 2, b"k", b"v")
            assert a is not None and not a.done()
            batch.failure(KafkaTimeoutError())
            batch._drain_waiter.exception()  # the sender's waiter (no sender here): retrieved, as it would
            assert a.done() and not a.cancelled() and isinstance(a.exception(), KafkaTimeoutError)
            with pytest.raises(KafkaTimeoutError):
                await a

    asyncio.run(scenario())


def test_a_full_batch_or_a_failed_producer_sends_instead() -> None:
    async def scenario() -> None:
        with unstarted(max_batch_size=1024) as producer:
            acc = producer._message_accumulator
            acc._append_batch(acc.create_builder(), TP)
            assert append(producer, "lane", 2, b"k", b"x" * 600) is not None
            assert append(producer, "lane", 2, b"k", b"x" * 600) is None  # would pass max_batch_size
            acc._exception = KafkaTimeoutError()
            assert append(producer, "lane", 2, b"k", b"x") is None

    asyncio.run(scenario())


def test_straight_picks_kafkas_partition_and_appends_or_sends() -> None:
    async def scenario() -> None:
        with unstarted() as producer:
            stand_in, straight = Sent(producer, 4), Straight()
            key = b"0f8fad5b-d9cb-469f-a165-70867728950e"
            part = partition_for(key, 4)
            assert await straight.send(stand_in, "lane", key, b"v1") == "sent"  # no open batch: sent
            assert stand_in.sent == [("lane", key, b"v1", part)]
            acc = producer._message_accumulator
            acc._append_batch(acc.create_builder(), TopicPartition("accepted", part))
            appended = await straight.send(stand_in, "accepted", key, b"v2")  # the same key, its batch open
            assert isinstance(appended, Appended) and len(stand_in.sent) == 1
            elsewhere = (part + 1) % 4  # a partition whose batch is not open
            assert await straight.send(stand_in, "accepted", None, b"v3", partition=elsewhere) == "sent"
            assert stand_in.sent[-1] == ("accepted", None, b"v3", elsewhere)
            other = b"another key"
            assert straight.partition(stand_in, "lane", other) == partition_for(other, 4)
            stand_in.partitions = 0
            assert straight.partition(stand_in, "unknown", key) is None  # no metadata yet: aiokafka picks

    asyncio.run(scenario())
