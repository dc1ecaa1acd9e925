"""One URL reported 28,000 times: the dedup item must not grow past what a changelog record may
hold (1 MiB on this broker), its state must survive a rebuild from that changelog, replays of its
oldest and newest referrals must be recognised, and the referrals after it must still be routed.

Before the item kept only its latest ids (agents/logic/dedup.py, KEEP_IDS), every referral_id
merged into an item lived in its one table value: ~39 bytes each, so past ~27,000 the broker
refused the item's changelog record (MessageSizeTooLarge) and the ones after it; the lanes were
right, but a worker rebuilding the table from the changelog got an old item back, and recorded
replays of the referrals merged since as new duplicates.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from streams.codec import default_codec
from streams.config import Settings
from streams.topics import Topics
from tests.integration import scenario
from tests.integration.kafka_io import WorkerProcess, produce, read_topics, wait_for_count

HOT = 28_000
REPLAYS = 200  # the first and the last referrals again, with their ids
FRESH = 50
URL = "https://twitter.com/hot/status/1"
REPORTERS = ("pointdecontact", "tj-paris", "pharos", "eu-iru", "ctiru")


def send(stack: Settings, names: Topics, refs: list[dict[str, Any]]) -> None:
    codec = default_codec()
    by_topic: dict[str, list[tuple[bytes | None, bytes]]] = {}
    for ref in refs:
        by_topic.setdefault(names.reports(ref["reporter_id"]), []).append((None, codec.encode("Referral", ref)))
    for topic, items in by_topic.items():
        produce(stack, topic, items)


def test_a_url_reported_28000_times(stack: Settings, topic_prefix: str, topics: Topics, tmp_path: Path) -> None:
    names = topics
    refs = [scenario.referral(REPORTERS[i % len(REPORTERS)], URL) for i in range(HOT)]
    (tmp_path / "first").mkdir()
    (tmp_path / "second").mkdir()
    first = WorkerProcess.for_prefix(stack, topic_prefix, tmp_path / "first")
    first.start()
    try:
        send(stack, names, refs)
        wait_for_count(stack, names.duplicates, HOT - 1, timeout_s=240, worker=first)
    finally:
        first.stop()

    # a worker with an empty state folder: the dedup table comes back from its changelog
    second = WorkerProcess.for_prefix(stack, topic_prefix, tmp_path / "second")
    second.start()
    try:
        fresh = [scenario.referral("pointdecontact", f"https://twitter.com/fresh/status/{i}") for i in range(FRESH)]
        send(stack, names, [*refs[:REPLAYS], *refs[-REPLAYS:], *fresh])
        lane = names.lane("twitter", "STANDARD")
        wait_for_count(stack, lane, 1 + FRESH, timeout_s=180, worker=second)
        out = read_topics(stack, [lane, names.duplicates, names.rejected])
    finally:
        second.stop()

    routed = [m.decode() for m in out[lane]]
    fresh_ids = {f["referral_id"] for f in fresh}
    hot = [r["referral_id"] for r in routed if r["referral_id"] not in fresh_ids]
    assert len(hot) == 1, f"the hot URL routed {len(hot)} times"
    assert len(routed) == 1 + FRESH and fresh_ids <= {r["referral_id"] for r in routed}
    dups = [m.decode() for m in out[names.duplicates]]
    ids = [d["referral_id"] for d in dups]
    assert len(ids) - len(set(ids)) == 0, "a replay recorded as a duplicate"
    assert set(ids) == {r["referral_id"] for r in refs} - set(hot)
    assert {d["canonical_referral_id"] for d in dups} == set(hot)
    assert out[names.rejected] == []
