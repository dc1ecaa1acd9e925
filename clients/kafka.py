"""What every confluent-kafka client of the project shares: producer settings and the clock.

librdkafka's default partitioner is CRC32, unlike Java, Faust and aiokafka (murmur2): every
producer here sets `murmur2_random`, so a referral_id lands on the same partition number in
every topic, whoever wrote it.
"""

from __future__ import annotations

import time
from typing import Any

from streams.config import Settings
from streams.registry import Registry

PRODUCER_DEFAULTS: dict[str, Any] = {
    "enable.idempotence": True,
    "acks": "all",
    "partitioner": "murmur2_random",
    "linger.ms": 5,
    # no compression: the pipeline's consumer (aiokafka) reads gzip only without extra libraries, and
    # a batch it cannot decompress stops its fetcher (lz4, snappy and zstd need python packages)
    "compression.type": "none",
}


def now_ms() -> int:
    """Wall-clock UTC ms, the unit of every time in the contract."""
    return time.time_ns() // 1_000_000


def producer_config(settings: Settings, **extra: Any) -> dict[str, Any]:
    """Idempotent, acks=all, murmur2: the only producer settings the project's clients use."""
    conf = settings.confluent(**PRODUCER_DEFAULTS)
    conf.update(extra)
    return conf


def load_registry(settings: Settings) -> Registry | None:
    """The registry if its files are readable (a reporter outside the project may have none)."""
    if not (settings.reporters_path.exists() and settings.operators_path.exists()):
        return None
    return Registry.load(settings.reporters_path, settings.operators_path)
