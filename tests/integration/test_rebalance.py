"""Exactly-once across rebalances: two workers of one group, one joining, leaving and joining again
while referrals flow.

A graceful rebalance is not a crash: the leaving and the staying worker both hand their partitions
over cleanly, and nothing may be processed twice. The strictest witness is intake, which keeps no
state: a report it handles twice is re-keyed twice into the internal dedup topic and, when
malformed, dead-lettered twice; the dedup table downstream would hide the first case from the
lanes. So besides the lanes, duplicates, unroutable and rejected topics, the test counts the
internal topic itself (read_committed). SIGNALEMENT_REBALANCE_N scales the run.
"""

from __future__ import annotations

import os
import random
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

from streams.config import Settings
from streams.topics import Topics
from tests.integration.kafka_io import WorkerProcess, produce, read_topics
from tests.integration.test_crash import Corpus

N = int(os.environ.get("SIGNALEMENT_REBALANCE_N", "12000"))
SEED = 20261205
RATE = 400  # records/s: the run lasts ~30 s, long enough for three rebalances while records flow


class Feeder:
    """Sends the corpus at RATE in a thread, in its shuffled order."""

    def __init__(self, settings: Settings, names: Topics, records: list[tuple[str, bytes]]) -> None:
        self.settings, self.names, self.records = settings, names, records
        self.sent = 0
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self) -> None:
        step = RATE // 5
        for i in range(0, len(self.records), step):
            by_topic: dict[str, list[tuple[bytes | None, bytes]]] = {}
            for reporter, value in self.records[i:i + step]:
                by_topic.setdefault(self.names.reports(reporter), []).append((None, value))
            for topic, items in by_topic.items():
                produce(self.settings, topic, items)
            self.sent = min(len(self.records), i + step)
            time.sleep(0.2)


def _lane_count(settings: Settings, lanes: list[str]) -> int:
    return sum(len(v) for v in read_topics(settings, lanes, idle_s=1.0).values())


def _wait(cond: Any, timeout: float, workers: list[WorkerProcess], what: str) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            tails = "\n".join(w.log_tail(30) for w in workers)
            raise AssertionError(f"no {what} after {timeout}s\n{tails}")
        time.sleep(0.5)


def test_join_leave_join_processes_every_record_once(stack: Settings, topics: Topics, isolated_settings: Settings,
                                                      tmp_path: Path) -> None:
    names, rnd = topics, random.Random(SEED)
    corpus = Corpus(N, rnd)
    lanes = sorted({names.lane(op, p) for op, p in corpus.items.values() if op})
    prefix = isolated_settings.topic_prefix
    a = WorkerProcess.for_prefix(stack, prefix, tmp_path / "a")
    b = WorkerProcess.for_prefix(stack, prefix, tmp_path / "b")
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    expected_routed = len({corpus.item_of[rid] for rid in corpus.item_of})
    feeder = Feeder(stack, names, corpus.mixed)
    a.start()
    feeder.thread.start()
    try:
        # B joins, leaves (SIGTERM: a graceful hand-over) and joins again, each time with records flowing
        for share, action in ((0.15, b.start), (0.4, b.stop), (0.6, b.start)):
            _wait(lambda share=share: feeder.sent >= share * len(corpus.mixed), 120, [a, b], f"{share:.0%} sent")
            _wait(lambda: _lane_count(stack, lanes) > 0, 120, [a, b], "a lane record")
            action()
            time.sleep(3)
        feeder.thread.join(120)
        _wait(lambda: _lane_count(stack, lanes) >= expected_routed, 300, [a, b], f"{expected_routed} lane records")
        time.sleep(3)
        out = read_topics(stack, [*lanes, names.dedup_items, names.duplicates, names.unroutable, names.rejected,
                                  names.accepted], idle_s=3.0, timeout_s=300)
    finally:
        b.stop()
        a.stop()

    # intake, stateless: each valid report re-keyed into the internal topic exactly once
    candidates = Counter(m.decode()["referral_id"] for m in out[names.dedup_items])
    twice = [rid for rid, n in candidates.items() if n > 1]
    assert not twice, f"{len(twice)} reports went through intake twice, e.g. {twice[:3]}"
    assert set(candidates) == set(corpus.item_of) | corpus.unroutable
    rejected = Counter(m.decode()["value"] for m in out[names.rejected])
    assert sorted(rejected.elements()) == sorted(v for _, v in corpus.bad), "dead letters lost or written twice"
    # lanes: each item once; duplicates and unroutable once each
    routed = Counter(m.decode()["referral_id"] for lane in lanes for m in out[lane])
    assert set(routed.values()) == {1} and len(routed) == expected_routed
    assert set(Counter(corpus.item_of[rid] for rid in routed).values()) == {1}
    dup_ids = Counter(m.decode()["referral_id"] for m in out[names.duplicates])
    assert set(dup_ids.values()) == {1} and set(dup_ids) == set(corpus.item_of) - set(routed)
    unroutable = Counter(m.decode()["referral_id"] for m in out[names.unroutable])
    assert set(unroutable) == corpus.unroutable and set(unroutable.values()) == {1}
    versions = Counter((m.decode()["referral_id"], m.decode()["version"]) for m in out[names.accepted])
    assert set(versions.values()) == {1}
