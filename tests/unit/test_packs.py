"""Packs of candidates (streams/packs.py): grouped by the partition each key goes to, in order, bounded
in size, read back as the records they stand for."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from streams.codec import default_codec
from streams.packs import PACK, PACK_MAX_BYTES, Packer, split, unpack
from streams.partitioner import partition_for

pytestmark = pytest.mark.unit
CODEC = default_codec()


def drained(packer: Packer) -> list[tuple[str, int, list[dict[str, bytes]]]]:
    return [(topic, partition, CODEC.decode(value, PACK)["items"]) for topic, partition, value in packer.drain(CODEC)]


def test_each_pack_holds_the_records_of_one_partition_in_order() -> None:
    packer = Packer(partitions=4)
    sent = [("dedup", f"google|https://x.com/{n}".encode(), f"v{n}".encode()) for n in range(200)]
    sent += [("dedup.urgent", b"meta|https://fb.com/1", b"u1"), ("dedup", b"meta|https://fb.com/1", b"m1")]
    for topic, key, value in sent:
        packer.add(topic, key, value)
    packs = drained(packer)
    assert len(packs) == len({(t, partition_for(k, 4)) for t, k, _ in sent}) <= 5
    for topic, partition, items in packs:
        expected = [{"key": k, "value": v} for t, k, v in sent if t == topic and partition_for(k, 4) == partition]
        assert items == expected
    assert sum(len(items) for _, _, items in packs) == len(sent)
    assert (packer.packs, packer.packed) == (len(packs), len(sent))
    assert drained(packer) == []  # drained once


def test_a_pack_stays_under_its_size_bound_and_a_big_record_goes_alone() -> None:
    items = [{"key": b"k", "value": bytes(100_000)} for _ in range(12)] + [{"key": b"big", "value": bytes(PACK_MAX_BYTES)}]
    items += [{"key": b"k", "value": b"after"}]
    chunks = list(split(items, PACK_MAX_BYTES))
    assert [x for c in chunks for x in c] == items
    assert [len(c) for c in chunks] == [5, 5, 2, 1, 1]
    for chunk in chunks[:3]:
        assert len(CODEC.encode(PACK, {"items": chunk})) <= PACK_MAX_BYTES


def test_unpacked_items_are_addressed_like_their_pack() -> None:
    value = CODEC.encode(PACK, {"items": [{"key": b"a", "value": b"1"}, {"key": b"b", "value": b"2"}]})
    msg = SimpleNamespace(topic="signalement.internal.dedup", partition=2, offset=41, timestamp=1.5, value=value)
    got = unpack(CODEC.decode(value, PACK), msg)
    assert [(p.topic, p.partition, p.offset, p.timestamp, p.key, p.value) for p in got] == [
        ("signalement.internal.dedup", 2, 41, 1.5, b"a", b"1"), ("signalement.internal.dedup", 2, 41, 1.5, b"b", b"2")]


def test_units_of_work_count_the_records_in_packs() -> None:
    """A batch of packs is split so that no unit holds more than max_records records (a pack over
    it alone); plain events count one each; order is kept."""
    from streams.packs import pack_size, units

    def event(value: bytes) -> SimpleNamespace:
        return SimpleNamespace(message=SimpleNamespace(value=value))

    def pack(n: int) -> bytes:
        return CODEC.encode(PACK, {"items": [{"key": b"k", "value": b"v"}] * n})

    assert [pack_size(pack(n), CODEC) for n in (0, 1, 63, 64, 700)] == [0, 1, 63, 64, 700]
    assert pack_size(CODEC.encode("ItemDecided", {"dedup_key": "k", "referral_id": "r", "decided_at": 1}), CODEC) == 0
    events = [event(pack(n)) for n in (200, 200, 200, 700, 10)] + [event(b"tick")] * 3
    got = units(events, CODEC, 500)
    assert [len(u) for u in got] == [2, 1, 1, 4] and [e for u in got for e in u] == events
