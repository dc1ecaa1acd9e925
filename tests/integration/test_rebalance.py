"""Exactly-once across rebalances: two workers of one group, one joining, leaving, joining again and
being killed while referrals flow.

A graceful rebalance is not a crash: the leaving and the staying worker both hand their partitions
over cleanly, and nothing may be processed twice. A killed worker hands nothing over: the staying
one takes its partitions when its session expires, its open transactions are aborted when the
staying worker's producers take their transactional ids, and nothing may be lost or repeated
either. The strictest witness is intake, which keeps no
state: a report it handles twice is re-keyed twice into the internal dedup topic and, when
malformed, dead-lettered twice; the dedup table downstream would hide the first case from the
lanes. So besides the lanes, duplicates, unroutable and rejected topics, the test counts the
internal topic itself (read_committed). SIGNALEMENT_REBALANCE_N scales the run.
"""

from __future__ import annotations

import os
import random
import signal
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, TopicPartition

from streams.config import Settings
from streams.topics import Topics
from tests.integration.kafka_io import WorkerProcess, produce, read_topics
from tests.integration.test_crash import Corpus

N = int(os.environ.get("SIGNALEMENT_REBALANCE_N", "40000"))
SEED = 20261205
RATE = 500  # records/s while the workers come and go (about what one worker handles): events always in flight


class Feeder:
    """Sends the corpus in its shuffled order, at RATE until `rush` is set, then the rest at once."""

    def __init__(self, settings: Settings, names: Topics, records: list[tuple[str, bytes]]) -> None:
        self.settings, self.names, self.records = settings, names, records
        self.sent = 0
        self.rush = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self) -> None:
        step = RATE // 5
        started = time.monotonic()
        for i in range(0, len(self.records), step):
            by_topic: dict[str, list[tuple[bytes | None, bytes]]] = {}
            for reporter, value in self.records[i:i + step]:
                by_topic.setdefault(self.names.reports(reporter), []).append((None, value))
            for topic, items in by_topic.items():
                produce(self.settings, topic, items)
            self.sent = min(len(self.records), i + step)
            if not self.rush.is_set():
                self.rush.wait(max(0.0, started + self.sent / RATE - time.monotonic()))


def _lane_count(settings: Settings, lanes: list[str]) -> int:
    """Records in the lanes so far, read at read_committed (stops at the first idle second)."""
    c = Consumer(settings.confluent(**{"group.id": f"count-{time.time_ns()}", "enable.auto.commit": False,
                                       "isolation.level": "read_committed"}))
    try:
        parts = [TopicPartition(lane, p, 0) for lane in lanes
                 for p in c.list_topics(lane, timeout=10).topics[lane].partitions]
        ends = {(tp.topic, tp.partition): c.get_watermark_offsets(tp, timeout=10)[1] for tp in parts}
        c.assign(parts)
        n, idle_since = 0, time.monotonic()
        while time.monotonic() - idle_since < 1.0:
            msgs = [m for m in c.consume(1000, 0.2) if not m.error()]
            n += len(msgs)
            if msgs:
                idle_since = time.monotonic()
            if all((c.position([TopicPartition(t, p)])[0].offset or 0) >= end for (t, p), end in ends.items()):
                break  # everything up to the ends taken at the start: later records are the next call's
        return n
    finally:
        c.close()


def _joined(worker: WorkerProcess) -> int:
    """How many times the worker was given partitions (Faust logs it once per assignment)."""
    if not worker.log_path.exists():
        return 0
    return worker.log_path.read_text(errors="replace").count("transactional producers:")


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
        # B joins, leaves (SIGTERM: a graceful hand-over), joins again and is killed (SIGKILL: A takes
        # its partitions when its session expires, and B's open transactions are aborted), each time
        # with records flowing
        _wait(lambda: _lane_count(stack, lanes) > 0, 300, [a, b], "a lane record")

        def kill() -> None:
            b.stop(signal.SIGKILL)

        joins = 0
        for action in (b.start, b.stop, b.start, kill):
            action()
            if action == b.start:  # until B has its partitions (and A has given them up)
                joins += 1
                _wait(lambda joins=joins: _joined(b) >= joins, 120, [a, b], f"B's join #{joins}")
            time.sleep(4)  # A and B work for a while with the new assignment
            lanes_now = _lane_count(stack, lanes)
            print(f"{action.__name__} B: {lanes_now:,} of {expected_routed:,} lane records, {feeder.sent:,} sent")
            assert feeder.sent < len(corpus.mixed), "the corpus was sent before the rebalances: raise N"
        feeder.rush.set()
        feeder.thread.join(120)
        _wait(lambda: _lane_count(stack, lanes) >= expected_routed, 300, [a, b], f"{expected_routed} lane records")
        time.sleep(3)
        out = read_topics(stack, [*lanes, *names.candidates, names.duplicates, names.unroutable,
                                  names.rejected, names.accepted], idle_s=3.0, timeout_s=300)
    finally:
        b.stop()
        a.stop()

    # intake, stateless: each valid report re-keyed into the internal topic exactly once
    candidates = Counter(m.decode()["referral_id"] for topic in names.candidates
                         for m in out[topic])
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
