"""The local stack itself: a real broker carries our Avro, a real ClickHouse stores rows, topics are idempotent."""

from __future__ import annotations

import time
import uuid
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from clickhouse_driver import Client
from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import OffsetSpec

from streams.admin import admin_client, create_topics
from streams.codec import default_codec
from streams.config import Settings
from streams.registry import Registry
from streams.stack.manager import ensure_up, status
from streams.topics import Topics


def _referral() -> dict[str, Any]:
    return {
        "referral_id": str(uuid.uuid4()), "reporter_id": "pharos", "external_ref": "PH-2026-000042",
        "instrument": "REFERRAL", "label": "LABELLED", "emergency": False, "category": "TERRORIST_PROPAGANDA",
        "url": "https://www.youtube.com/watch?v=abc", "operator_id": None,
        "content_hashes": [{"algo": "SHA256", "value": "ab" * 32}], "legal_basis": "LCEN art. 6-1",
        "reasons": "apology of terrorism", "jurisdiction": "FR", "language": "fr",
        "reported_at": int(time.time() * 1000),
    }


def _decision(referral_id: str) -> dict[str, Any]:
    return {"referral_id": referral_id, "operator_id": "google", "action": "REMOVED",
            "acted_at": int(time.time() * 1000), "reason": None, "operator_ref": "G-1"}


def _consume(settings: Settings, topic: str, count: int, timeout: float = 30.0) -> list[Any]:
    consumer = Consumer(settings.confluent(**{"group.id": f"test-{uuid.uuid4().hex[:8]}",
                                              "auto.offset.reset": "earliest", "enable.auto.commit": False}))
    consumer.subscribe([topic])
    out: list[Any] = []
    deadline = time.monotonic() + timeout
    try:
        while len(out) < count and time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is not None and msg.error() is None:
                out.append(msg)
    finally:
        consumer.close()
    return out


def test_avro_events_round_trip_through_the_broker(stack: Settings, topics: Topics) -> None:
    codec = default_codec()
    referral = _referral()
    decision = _decision(referral["referral_id"])
    sent = {topics.reports("pharos"): ("Referral", referral), topics.decisions("google"): ("OperatorDecision", decision)}
    producer = Producer(stack.confluent())
    for topic, (schema, record) in sent.items():
        producer.produce(topic, key=record["referral_id"].encode(), value=codec.encode(schema, record))
    assert producer.flush(15) == 0

    for topic, (schema, record) in sent.items():
        [msg] = _consume(stack, topic, 1)
        assert msg.key().decode() == record["referral_id"]
        assert codec.decode_any(msg.value()) == (schema, record)


def test_rows_round_trip_through_clickhouse(ch_client: Client, ch_database: str) -> None:
    table = f"{ch_database}.events"
    ch_client.execute(f"CREATE TABLE {table} (id String, operator_id String, at DateTime('UTC'), ms UInt64, "
                      "action Nullable(String)) ENGINE = MergeTree ORDER BY (operator_id, id)")
    rows = [(f"r{i}", ["google", "meta"][i % 2], 1_790_000_000 + i, i * 1000, None if i % 3 else "REMOVED")
            for i in range(100)]
    ch_client.execute(f"INSERT INTO {table} (id, operator_id, at, ms, action) VALUES",
                      [(i, op, datetime.fromtimestamp(at, UTC), ms, a) for i, op, at, ms, a in rows])
    back = ch_client.execute(f"SELECT id, operator_id, toUInt32(at), ms, action FROM {table} ORDER BY ms")
    assert back == rows
    per_op = dict(ch_client.execute(f"SELECT operator_id, count() FROM {table} GROUP BY operator_id"))
    assert per_op == {"google": 50, "meta": 50}


def test_topics_create_is_idempotent(stack: Settings, topic_prefix: str, registry: Registry) -> None:
    settings = replace(stack, topic_prefix=topic_prefix)
    expected = [spec.name for spec in Topics(prefix=topic_prefix).catalogue(registry)]
    assert create_topics(settings, registry) == expected
    assert create_topics(settings, registry) == []
    assert expected[0].startswith(topic_prefix)


def test_new_topics_are_served_when_create_returns(stack: Settings, topic_prefix: str, registry: Registry) -> None:
    """Every partition answers at once: a producer writing right after `topics create` cannot lose its first
    records (streams/admin.py). Without the wait, 137 of 140 partitions did not answer yet."""
    created = create_topics(replace(stack, topic_prefix=topic_prefix), registry)
    admin = admin_client(stack)
    asked = {TopicPartition(name, p): OffsetSpec.latest() for name in created for p in range(stack.partitions)}
    not_served = []
    for tp, future in admin.list_offsets(asked, request_timeout=10).items():
        try:
            future.result(10)
        except KafkaException as exc:
            not_served.append((tp.topic, tp.partition, exc.args[0].name()))
    assert created and not_served == [], not_served[:5]


def test_ensure_up_is_idempotent_and_status_reports_both_healthy(stack: Settings) -> None:
    assert ensure_up(stack) == stack
    rows = {row.name: row for row in status(stack, show=False)}
    assert set(rows) == {"Kafka", "ClickHouse"}
    for row in rows.values():
        assert row.alive and row.healthy and row.pid is not None, row
    assert rows["Kafka"].version == "3.9.2"
    assert rows["ClickHouse"].version[:1].isdigit()
    assert rows["Kafka"].ports["kafka"] == stack.kafka_port
