"""The ClickHouse sink against the real stack (Kafka 3.9 + ClickHouse 18.16).

* every event of sinks.sample lands in its table, exactly once under FINAL, and the query
  catalogue answers on 18.16 what sinks.reference computes (the chdb test does it on a
  current ClickHouse);
* a bad decision value is skipped and counted, not fatal;
* ClickHouse stopped in the middle (the stack's own server, restarted with ensure_up): every
  row arrives, none is visible twice.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
from clickhouse_driver import Client

from sinks import queries, reference, rows, sample
from sinks.clickhouse import ClickHouseSink
from sinks.migrate import load_migrations, migrate
from streams.codec import default_codec
from streams.config import Settings
from streams.registry import Registry
from streams.stack.clickhouse import ClickHouse
from streams.stack.manager import ensure_up, locked
from streams.topics import Topics
from tests.integration.kafka_io import produce

KEYS: dict[str, tuple[tuple[str, ...], str | None]] = {  # identity and version column per table
    "referrals": (("referral_id",), "version"),
    "duplicates": (("referral_id",), None),
    "rejections": (("source_topic", "source_partition", "source_offset"), None),
    "decisions": (("referral_id", "operator_id", "acted_at", "action"), None),
    "overdue": (("referral_id", "deadline_kind"), None),
    "reactions": (("referral_id",), "updated_at"),
    "reaction_windows": (("operator_id", "priority", "window_start"), "updated_at"),
}


def topic_of(topics: Topics, table: str, event: dict[str, Any]) -> str:
    if table == "referrals":
        return topics.accepted if event[rows.ROUTED] else topics.unroutable
    if table == "decisions":
        return topics.decisions(event[rows.TOPIC_OPERATOR_ID])
    return {"duplicates": topics.duplicates, "rejections": topics.rejected, "overdue": topics.overdue,
            "reactions": topics.reactions, "reaction_windows": topics.windows}[table]


def produce_events(settings: Settings, topics: Topics, events: dict[str, list[dict[str, Any]]]) -> None:
    codec, by_topic = default_codec(), dict[str, list[tuple[bytes, bytes]]]()
    for table, evs in events.items():
        for e in evs:
            key = str(e.get("referral_id") or e.get("source_offset") or e.get("window_start")).encode()
            value = codec.encode(rows.SCHEMA_OF[table], e)
            by_topic.setdefault(topic_of(topics, table, e), []).append((key, value))
    for topic, items in by_topic.items():
        produce(settings, topic, items)


def inserted(sink: ClickHouseSink, want: dict[str, int]) -> Callable[[], bool]:
    """Every table got at least `want` rows from the sink (counting the sink's inserts: background
    merges of a ReplacingMergeTree shrink a plain count())."""
    return lambda: all(sink.meter.counts[f"rows.{t}"] >= n for t, n in want.items())


def final_count(client: Client, db: str, table: str) -> int:
    return int(client.execute(f"SELECT count() FROM {db}.{table} FINAL")[0][0])


def normalised(row: tuple[Any, ...]) -> tuple[Any, ...]:
    return tuple(int(v) if isinstance(v, bool) else v for v in row)


def test_sink_writes_every_event_once(isolated_settings: Settings, topics: Topics, registry: Registry,
                                      ch_client: Client) -> None:
    db, events = isolated_settings.clickhouse_database, sample.sample_events()
    produce_events(isolated_settings, topics, events)
    produce(isolated_settings, topics.decisions("google"), [(b"junk", b"\xc3\x01not avro at all")])
    sink = ClickHouseSink(isolated_settings, topics, registry, batch_rows=500, batch_seconds=0.3)
    want = {t: len(evs) for t, evs in events.items()}
    assert sink.run_until(inserted(sink, want), timeout=120), str((sink.meter.counts, want))
    sink.close()
    assert sink.meter.counts["skipped.decisions"] == 1
    assert {t: sink.meter.counts[f"rows.{t}"] for t in want} == want  # each message inserted once

    for table, (key, version) in KEYS.items():
        spec = rows.TABLES[table]
        cols = ", ".join(f"hex({c})" if table == "rejections" and c in ("key", "value") else f"`{c}`"
                         for c in spec.columns)
        got = sorted(map(normalised, ch_client.execute(f"SELECT {cols} FROM {db}.{table} FINAL")), key=repr)
        latest = reference.latest(events[table], lambda e, k=key: tuple(e[c] for c in k), version)  # type: ignore[misc]
        expect = [spec.row(e) for e in latest]
        if table == "rejections":
            expect = [(*r[:3], r[3].hex().upper() if r[3] else None, r[4].hex().upper(), *r[5:]) for r in expect]
        assert got == sorted(map(normalised, expect), key=repr), table


@pytest.mark.parametrize("backfilled", [False, True], ids=["views", "backfill"])
def test_catalogue_on_18_16_matches_the_reference(stack: Settings, ch_client: Client, ch_database: str,
                                                  backfilled: bool) -> None:
    """The catalogue on the stack's ClickHouse, over sample rows inserted directly: all after the
    migrations (the query tables fed by their materialized views), or half before the query tables'
    migration (which backfills them) and half after."""
    events = sample.sample_events()
    migrate(ch_client, ch_database, [m for m in load_migrations() if m.version < "0003"] if backfilled else None)
    for part in (0, 1):
        if part:
            migrate(ch_client, ch_database)
        for table, evs in events.items():
            half = evs[:len(evs) // 2] if part == 0 else evs[len(evs) // 2:]
            ch_client.execute(rows.TABLES[table].insert_sql(ch_database), [rows.TABLES[table].row(e) for e in half])
    client = Client(stack.clickhouse_host, port=stack.clickhouse_tcp_port, database=ch_database)
    try:
        catalogue = queries.catalogue()
        runs = [(name, {}) for name in catalogue] + sample.VARIANTS
        for name, given in runs:
            query = catalogue[name]
            params = {**sample.params_for(query.params), **given}
            columns, result = queries.run(client, query, params)
            expected = reference.EXPECTED[name](events, params)
            assert expected and reference.mismatches(columns, result, expected) == [], (name, given)
    finally:
        client.disconnect()


def reactions(n: int, start: int) -> list[tuple[bytes, bytes]]:
    """n referrals, each acknowledged then decided: two versions per referral_id."""
    codec, out = default_codec(), []
    for i in range(start, start + n):
        base: dict[str, Any] = {
                "referral_id": f"ref-{i:07d}", "operator_id": "meta", "reporter_id": "pharos", "priority": "HIGH",
                "category": "THREAT", "reported_at": sample.T0, "routed_at": sample.T0 + i, "acked_at": None,
                "decided_at": None, "action": None, "time_to_ack_ms": None, "time_to_decision_ms": None,
                "ack_on_time": None, "decision_on_time": None, "ack_deadline": sample.T0 + 3_600_000,
                "decision_deadline": sample.T0 + 86_400_000, "updated_at": sample.T0 + i}
        acked = {**base, "acked_at": sample.T0 + i + 10, "time_to_ack_ms": 10, "ack_on_time": True,
                 "updated_at": sample.T0 + i + 10}
        decided = {**acked, "decided_at": sample.T0 + i + 500, "action": "REMOVED", "time_to_decision_ms": 500,
                   "decision_on_time": True, "updated_at": sample.T0 + i + 500}
        out += [(base["referral_id"].encode(), codec.encode("Reaction", v)) for v in (acked, decided)]
    return out


def restart_clickhouse(stack: Settings, down_for: float, meanwhile: Callable[[], object]) -> None:
    with locked(stack):
        assert ClickHouse(stack).stop(), "the stack's ClickHouse was not running"
    started = time.monotonic()
    meanwhile()
    time.sleep(max(0.0, down_for - (time.monotonic() - started)))
    ensure_up(stack)


def test_sink_survives_clickhouse_restart(stack: Settings, isolated_settings: Settings, topics: Topics,
                                          registry: Registry, ch_client: Client) -> None:
    db, half = isolated_settings.clickhouse_database, 10_000
    produce(isolated_settings, topics.reactions, reactions(half, 0))
    sink = ClickHouseSink(isolated_settings, topics, registry, batch_rows=1_000, batch_seconds=0.2, max_backoff=1.0)
    stop = threading.Event()
    thread = threading.Thread(target=sink.run, args=(stop,), daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 60
        while not inserted(sink, {"reactions": 2_000})():
            assert time.monotonic() < deadline and thread.is_alive(), "the sink inserted nothing"
            time.sleep(0.05)
        ch_client.disconnect()
        restart_clickhouse(stack, 3.0, lambda: produce(isolated_settings, topics.reactions, reactions(half, half)))
        deadline = time.monotonic() + 120
        while not inserted(sink, {"reactions": 4 * half})():
            assert time.monotonic() < deadline and thread.is_alive(), str(sink.meter.counts)
            time.sleep(0.2)
    finally:
        stop.set()
        thread.join(30)
        sink.close()
    assert sink.writer.retries > 0, "ClickHouse went away but no insert was retried"
    final = ch_client.execute(f"SELECT count(), uniqExact(referral_id), countIf(decided_at IS NULL) "
                              f"FROM {db}.reactions FINAL")
    assert final == [(2 * half, 2 * half, 0)]
    twice = ch_client.execute(f"SELECT referral_id FROM {db}.reactions FINAL GROUP BY referral_id "
                              "HAVING count() > 1 LIMIT 5")
    assert twice == []
