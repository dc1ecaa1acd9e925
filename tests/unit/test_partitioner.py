"""Our murmur2 partitioner must agree with Kafka's (aiokafka's port of the Java one, and known values)."""

from __future__ import annotations

import random

import pytest
from aiokafka.partitioner import murmur2 as aiokafka_murmur2

from streams.partitioner import murmur2, partition_for

pytestmark = pytest.mark.unit


def test_agrees_with_aiokafka_on_every_length_and_random_bytes() -> None:
    rng = random.Random(7)
    for length in range(0, 80):
        for _ in range(50):
            data = bytes(rng.getrandbits(8) for _ in range(length))
            assert murmur2(data) == aiokafka_murmur2(data), data


@pytest.mark.parametrize(("key", "expected"), [
    # Kafka's own test vectors (clients/src/test/.../UtilsTest.java testMurmur2), as unsigned 32-bit values
    (b"21", -973932308 & 0xFFFFFFFF),
    (b"foobar", -790332482 & 0xFFFFFFFF),
    (b"a-little-bit-long-string", -985981536 & 0xFFFFFFFF),
    (b"a-little-bit-longer-string", -1486304829 & 0xFFFFFFFF),
    (b"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8", -58897971 & 0xFFFFFFFF),
    (bytes([ord("a"), ord("b"), ord("c")]), 479470107),
])
def test_kafka_test_vectors(key: bytes, expected: int) -> None:
    assert murmur2(key) == expected


def test_partition_is_positive_hash_modulo_count() -> None:
    for key in (b"", b"x", b"0f8fad5b-d9cb-469f-a165-70867728950e"):
        for count in (1, 4, 7, 12):
            p = partition_for(key, count)
            assert p == (aiokafka_murmur2(key) & 0x7FFFFFFF) % count and 0 <= p < count


def test_repeated_and_alternating_keys_each_get_their_own_partition() -> None:
    a, b = b"0f8fad5b-d9cb-469f-a165-70867728950e", b"7c9e6679-7425-40de-944b-e07fc1f90ae7"
    expected = {k: (aiokafka_murmur2(k) & 0x7FFFFFFF) for k in (a, b)}
    for key in (a, a, b, a, b, b, a):  # each call agrees with aiokafka's hash, whatever came before
        for count in (4, 7):
            assert partition_for(key, count) == expected[key] % count
