"""Packs: the records one unit of work sends to one partition of an internal topic, as one record.

Faust delivers each record it consumes through its fetcher, conductor and stream, which costs
more per record than the agents' own work on it. Internal topics carry packs instead: intake's
candidates to signalement.internal.dedup[.urgent] (for routing) and routing's accepted referrals
to signalement.internal.routed (for reactions), one record per destination partition and unit
of work, taken apart by the reader (docs/benchmarks.md, "What was optimised", 17). Each item is
the record it stands for (its key and single-object value) and goes to the partition its key
would: the tables' partitions are still the keys'. Order within a partition is kept, and a pack
belongs to one transaction, like the records it replaces.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from streams.codec import Codec
from streams.partitioner import partition_for

PACK = "RecordPack"
# A pack's encoded items stay under this; topics keep the broker's default max.message.bytes (1 MiB).
PACK_MAX_BYTES = 512 * 1024
ITEM_OVERHEAD = 8  # Avro's length prefixes of an item's key and value, at most


@dataclass(frozen=True)
class Packed:
    """One item of a pack, seen as the record it stands for (what routing and dead letters read)."""

    topic: str
    partition: int
    offset: int
    key: bytes
    value: bytes
    timestamp: float | None


@dataclass
class Packer:
    """Collects a unit of work's records by (topic, partition of their key)."""

    partitions: int
    items: dict[tuple[str, int], list[dict[str, bytes]]] = field(default_factory=dict)
    packs: int = 0  # packs drained so far
    packed: int = 0  # records drained so far, in those packs

    def add(self, topic: str, key: bytes, value: bytes) -> None:
        self.items.setdefault((topic, partition_for(key, self.partitions)), []).append({"key": key, "value": value})

    def drain(self, codec: Codec) -> Iterator[tuple[str, int, bytes]]:
        """(topic, partition, encoded pack) for everything added, in order, then forget it."""
        schema = codec.schema(PACK)
        for (topic, partition), items in self.items.items():
            for chunk in split(items, PACK_MAX_BYTES):
                self.packs += 1
                self.packed += len(chunk)
                yield topic, partition, schema.encode({"items": chunk})
        self.items.clear()


def split(items: list[dict[str, bytes]], max_bytes: int) -> Iterator[list[dict[str, bytes]]]:
    """Consecutive runs of items whose encoded size stays under max_bytes (an item over it alone)."""
    chunk: list[dict[str, bytes]] = []
    size = 0
    for item in items:
        n = len(item["key"]) + len(item["value"]) + ITEM_OVERHEAD
        if chunk and size + n > max_bytes:
            yield chunk
            chunk, size = [], 0
        chunk.append(item)
        size += n
    if chunk:
        yield chunk


def is_pack(value: bytes | None, codec: Codec) -> bool:
    """Whether a record's value is a pack (by its schema fingerprint, without decoding it)."""
    return value is not None and value[2:10] == codec.schema(PACK).header[2:]


def pack_size(value: bytes | None, codec: Codec) -> int:
    """Records in a pack, read from its array's first block count (our encoder writes one block);
    0 if the value is no pack."""
    if value is None or not is_pack(value, codec):
        return 0
    n = shift = 0
    for byte in value[10:20]:  # a zigzag varint
        n |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            break
    return abs((n >> 1) ^ -(n & 1))


def units(events: list[Any], codec: Codec, max_records: int) -> list[list[Any]]:
    """A partition's events in units of work of at most `max_records` records, a pack counting
    its records (one pack at least).

    A batch of hundreds of packs as one unit held the work lock (every agent's) for seconds, and
    removal orders on the urgent path waited behind it (bench crisis, docs/benchmarks.md item 17)."""
    out: list[list[Any]] = []
    unit: list[Any] = []
    weight = 0
    for event in events:
        n = max(1, pack_size(event.message.value, codec))
        if unit and weight + n > max_records:
            out.append(unit)
            unit, weight = [], 0
        unit.append(event)
        weight += n
    if unit:
        out.append(unit)
    return out


def unpack(record: dict[str, Any], message: Any) -> list[Packed]:
    """The items of a decoded pack, each addressed like the pack's record it came in."""
    return [Packed(message.topic, message.partition, message.offset, item["key"], item["value"], message.timestamp)
            for item in record["items"]]
