"""Records sent straight to an aiokafka producer: Kafka's partition computed here, and appended to the
partition's open batch without a future per record.

aiokafka's `send` costs ~9-11 µs of CPU per record on this machine (the metadata wait, the
partitioner, a future made, kept and resolved per record); appending the same record to the
partition's batch that is open (lingering) costs ~2 µs (bench: docs/benchmarks.md, "What was
optimised", 20). Only when such a batch exists: the first record of a partition in a transaction
or after a batch left goes through `send`, which opens the batch and adds the partition to the
transaction (`maybe_add_partition_to_txn`), so a record appended here is always in a batch that
`send` opened in the same transaction. A full or closed batch (being sent, or retried) refuses
the record, and it goes through `send` too.

The record's delivery is its batch's: `Appended` is a view of the batch's future with the record's
own offset, for the callers that look at a send's result (dead-letter counts, changelog offsets).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from streams.partitioner import partition_for


class Appended:
    """One record appended to a batch: its batch's outcome, with the record's own offset."""

    __slots__ = ("batch", "relative")

    def __init__(self, batch: asyncio.Future[Any], relative: int) -> None:
        self.batch, self.relative = batch, relative

    def add_done_callback(self, fn: Callable[[Appended], Any]) -> None:
        self.batch.add_done_callback(lambda _fut: fn(self))

    def done(self) -> bool:
        return self.batch.done()

    def cancelled(self) -> bool:
        return self.batch.cancelled()

    def exception(self) -> BaseException | None:
        return self.batch.exception()

    def result(self) -> Any:
        """The record's RecordMetadata: the batch's, at the record's offset."""
        meta = self.batch.result()
        return meta._replace(offset=meta.offset + self.relative)

    def __await__(self) -> Any:
        yield from self.batch.__await__()
        return self.result()


def append(producer: Any, topic: str, partition: int, key: bytes | None, value: bytes | None) -> Appended | None:
    """Append to the open batch of (topic, partition) in aiokafka `producer`; None: use `send`."""
    acc = producer._message_accumulator
    if acc._exception is not None or acc._closed:
        return None
    pending = acc._batches.get((topic, partition))  # a TopicPartition is this tuple
    if not pending:
        return None
    batch = pending[-1]
    meta = batch._builder.append(timestamp=None, key=key, value=value, headers=[])
    if meta is None:  # full, or closed for sending
        return None
    return Appended(batch.future, meta.offset)


class Straight:
    """Sends straight to an aiokafka producer, for the worker's hot path (`PartitionTransactions.send`
    under exactly_once, `Pipeline.send` under at_least_once).

    A keyed record's partition is Kafka's (streams/partitioner.py; aiokafka hashes in Python one
    byte at a time), from the partition count in the producer's metadata, cached per topic (until
    the producer has metadata for the topic, aiokafka picks)."""

    def __init__(self) -> None:
        self.counts: dict[str, int] = {}

    def partition(self, producer: Any, topic: str, key: bytes) -> int | None:
        count = self.counts.get(topic)
        if not count:
            count = len(producer.client.cluster.partitions_for_topic(topic) or ())
            if not count:
                return None
            self.counts[topic] = count
        return partition_for(key, count)

    async def send(self, producer: Any, topic: str, key: bytes | None, value: bytes | None,
                   partition: int | None = None) -> Any:
        """Send one record; a future (or `Appended`) of its RecordMetadata."""
        if partition is None and key is not None:
            partition = self.partition(producer, topic, key)
        if partition is not None:
            appended = append(producer, topic, partition, key, value)
            if appended is not None:
                return appended
        return await producer.send(topic, value, key=key, partition=partition)
