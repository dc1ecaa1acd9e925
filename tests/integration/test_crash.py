"""Crash safety: 100,000 referrals with decisions flowing, the worker SIGKILLed five times.

Whatever the moment of a kill, every valid referral is in exactly one lane exactly once, every
duplicate is recorded once, every decision yields one reaction, every bad record is dead-lettered
once, and ClickHouse (deduplicated as the catalogue reads it) holds the same. Topics are read at
read_committed: records of transactions a kill aborted do not count (streams/eos.py).
SIGNALEMENT_CRASH_N scales the run (default 100,000 referrals).
"""

from __future__ import annotations

import json
import os
import random
import signal
import threading
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

from clickhouse_driver import Client
from confluent_kafka import Consumer, TopicPartition

from sinks.clickhouse import ClickHouseSink
from streams.codec import default_codec
from streams.config import Settings
from streams.topics import Topics
from tests.integration import scenario
from tests.integration.kafka_io import WorkerProcess, produce, read_topics

N = int(os.environ.get("SIGNALEMENT_CRASH_N", "100000"))
KILLS = int(os.environ.get("SIGNALEMENT_CRASH_KILLS", "5"))
SEED = 20261123
# priority class -> (reporter, label, instrument) choices that all give that priority: duplicates
# within an item never outrank it, so no item is re-issued on a higher lane (escalation has its own test)
CLASSES = {
    "STANDARD": [(r, "NONE", "REFERRAL") for r in sorted(scenario.REPORTERS)],
    "HIGH": [(r, "LABELLED", "REFERRAL") for r in ("pharos", "eu-iru", "ctiru")],
    "CRITICAL": [(r, "NONE", "REMOVAL_ORDER") for r in ("pharos", "tj-paris")],
}
HOSTS = [(op, url) for op, url in scenario.HOSTS if op is not None]


class Corpus:
    """N referrals in items (20 % duplicates), 1 % unroutable, plus 1 % malformed records."""

    def __init__(self, n: int, rnd: random.Random) -> None:
        codec = default_codec()
        self.records: list[tuple[str, bytes]] = []  # (reporter topic, value)
        self.item_of: dict[str, int] = {}  # referral_id -> item number
        self.items: dict[int, tuple[str | None, str]] = {}  # item -> (operator, priority)
        self.unroutable: set[str] = set()
        self.bad: list[tuple[str, bytes]] = []
        classes = list(CLASSES)
        n_items = 0
        for i in range(n):
            if i % 100 == 99:  # unroutable host
                ref = scenario.referral("pointdecontact", f"https://unknown-host.example/{uuid.uuid4().hex}")
                self.unroutable.add(ref["referral_id"])
                self.records.append(("pointdecontact", codec.encode("Referral", ref)))
                continue
            if i % 5 == 4 and n_items:  # a duplicate of an earlier item, in its priority class
                item = rnd.randrange(n_items)
            else:
                item, n_items = n_items, n_items + 1
                op = HOSTS[item % len(HOSTS)][0]
                self.items[item] = (op, classes[item % 3])
            op, priority = self.items[item]
            reporter, label, instrument = rnd.choice(CLASSES[priority])
            url = HOSTS[item % len(HOSTS)][1].format(i=f"crash{item}")
            ref = scenario.referral(reporter, url, label=label, instrument=instrument)
            self.item_of[ref["referral_id"]] = item
            self.records.append((reporter, codec.encode("Referral", ref)))
        for i in range(n // 100):  # malformed: truncated Avro, random bytes
            reporter = sorted(scenario.REPORTERS)[i % 5]
            good = self.records[i][1]
            value = good[: len(good) // 2] if i % 2 else rnd.randbytes(40 + i % 200)
            self.bad.append((reporter, value))
        mixed = self.records + self.bad
        rnd.shuffle(mixed)  # duplicates may now come before their original: the first routed wins
        self.mixed = mixed


class Operators:
    """Every operator at once: read the lanes (read_committed), decide each referral once."""

    def __init__(self, settings: Settings, names: Topics, lanes: list[str]) -> None:
        self.settings, self.names, self.lanes = settings, names, lanes
        self.decided: dict[str, str] = {}
        self.error: BaseException | None = None
        self.last_routed_at = 0  # ms: the newest routing seen in a lane
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.codec = default_codec()

    def run(self) -> None:
        try:
            self._run()
        except BaseException as exc:  # the test reports it instead of waiting for nothing
            self.error = exc
            raise

    def _run(self) -> None:
        c = Consumer(self.settings.confluent(**{"group.id": f"ops-{uuid.uuid4().hex}", "auto.offset.reset": "earliest",
                                                "isolation.level": "read_committed"}))
        c.subscribe(self.lanes)
        try:
            while not self.stop.is_set():
                out = []
                for m in c.consume(500, 0.2):
                    if m.error():
                        continue
                    r = self.codec.decode(m.value(), "RoutedReferral")
                    rid, op = r["referral_id"], r["operator_id"]
                    self.last_routed_at = max(self.last_routed_at, r["routed_at"])
                    if rid in self.decided:
                        continue
                    self.decided[rid] = op
                    value = self.codec.encode("OperatorDecision", {
                        "referral_id": rid, "operator_id": op, "action": "REMOVED",
                        "acted_at": time.time_ns() // 1_000_000, "reason": None, "operator_ref": None})
                    out.append((self.names.decisions(op), rid.encode(), value))
                by_topic: dict[str, list[tuple[bytes | None, bytes]]] = {}
                for topic, key, value in out:
                    by_topic.setdefault(topic, []).append((key, value))
                for topic, items in by_topic.items():
                    produce(self.settings, topic, items)
        finally:
            c.close()


def test_five_sigkills_lose_and_repeat_nothing(stack: Settings, topics: Topics, isolated_settings: Settings,
                                               ch_client: Client, tmp_path: Path) -> None:
    names, rnd = topics, random.Random(SEED)
    corpus = Corpus(N, rnd)
    lanes = sorted({names.lane(op, p) for op, p in corpus.items.values() if op})
    worker = WorkerProcess.for_prefix(stack, isolated_settings.topic_prefix, tmp_path)
    ops = Operators(stack, names, lanes)
    sink, sink_stop = ClickHouseSink(isolated_settings, names), threading.Event()
    sink_thread = threading.Thread(target=sink.run, args=(sink_stop,), daemon=True)
    expected_routed = len({corpus.item_of[rid] for rid in corpus.item_of})
    worker.start()
    ops.thread.start()
    sink_thread.start()
    t0 = time.monotonic()
    by_topic: dict[str, list[tuple[bytes | None, bytes]]] = {}
    for reporter, value in corpus.mixed:
        by_topic.setdefault(names.reports(reporter), []).append((None, value))
    for topic, items in by_topic.items():
        for i in range(0, len(items), 20_000):  # within the producer's queue
            produce(stack, topic, items[i:i + 20_000])
    produced_s = time.monotonic() - t0

    # five kills at random moments of the run, each after the worker made progress since the last
    marks = sorted(rnd.uniform(0.05, 0.9) for _ in range(KILLS))
    kills: list[dict[str, float]] = []
    try:
        for mark in marks:
            target = max(int(mark * expected_routed), len(ops.decided) + 50)
            _wait(lambda target=target: len(ops.decided) >= target, 600, worker, f"{target} lane records")
            time.sleep(rnd.uniform(0.0, 1.0))
            os.killpg(worker.proc.pid, signal.SIGKILL)  # type: ignore[union-attr]
            worker.proc.wait(10)  # type: ignore[union-attr]
            seen_at_kill, killed, killed_ms = len(ops.decided), time.monotonic(), time.time_ns() // 1_000_000
            worker.start()
            # resumed: a lane record routed after the kill (not the backlog of before) has arrived
            _wait(lambda t=killed_ms: ops.last_routed_at > t, 300, worker, "a routing after the restart")
            kills.append({"at_lane_records": seen_at_kill, "resume_s": round(time.monotonic() - killed, 1)})
        try:
            _wait(lambda: len(ops.decided) >= expected_routed, 900, worker, f"all {expected_routed} lane records")
        except AssertionError as exc:
            # the diagnosis first: CI shows the head and the tail of a long failure message
            raise AssertionError(f"{_diagnose(stack, names, corpus, ops)}\n{exc}") from None
        drained_s = time.monotonic() - t0
        out = _settle(stack, names, lanes, expected_routed)
    finally:
        ops.stop.set()
        ops.thread.join(30)
        worker.stop()

    # lanes: each item routed exactly once, in its operator's lane for its priority
    routed: dict[str, str] = {}
    for lane in lanes:
        for m in out[lane]:
            r = m.decode()
            assert r["referral_id"] not in routed, f"{r['referral_id']} twice in the lanes"
            routed[r["referral_id"]] = lane
            op, priority = corpus.items[corpus.item_of[r["referral_id"]]]
            assert lane == names.lane(op or "", priority) and not r["escalated"]
    by_item = Counter(corpus.item_of[rid] for rid in routed)
    assert len(routed) == expected_routed and set(by_item.values()) == {1}
    canonical = {corpus.item_of[rid]: rid for rid in routed}
    # duplicates: every other referral of an item recorded once, against the routed one
    dups = [m.decode() for m in out[names.duplicates]]
    dup_ids = Counter(d["referral_id"] for d in dups)
    assert dup_ids and max(dup_ids.values()) == 1, dup_ids.most_common(3)
    assert set(dup_ids) == set(corpus.item_of) - set(routed)
    assert all(d["canonical_referral_id"] == canonical[corpus.item_of[d["referral_id"]]] for d in dups)
    # unroutable and rejected: once each
    unroutable = Counter(m.decode()["referral_id"] for m in out[names.unroutable])
    assert set(unroutable) == corpus.unroutable and set(unroutable.values()) == {1}
    rejected = Counter(m.decode()["value"] for m in out[names.rejected])
    assert sorted(rejected.elements()) == sorted(v for _, v in corpus.bad)
    # accepted: each version of each referral once
    versions = Counter((m.decode()["referral_id"], m.decode()["version"]) for m in out[names.accepted])
    assert set(versions.values()) == {1} and {rid for rid, _ in versions} == set(routed)
    # reactions: one per decision
    assert set(ops.decided) == set(routed)
    reactions = Counter(m.key for m in out[names.reactions])
    assert set(reactions.values()) == {1} and {k.decode() for k in reactions if k} == set(routed)

    # ClickHouse, as the catalogue reads it (FINAL), holds the same
    db = isolated_settings.clickhouse_database
    want = (len(routed) + len(unroutable), len(dup_ids), len(rejected), len(routed), len(routed))
    got: tuple[int, ...] = ()
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        got = _ch_counts(ch_client, db)
        if got == want:
            break
        time.sleep(2)
    sink_stop.set()
    sink_thread.join(60)
    assert got == want, f"ClickHouse (referrals, duplicates, rejections, decisions, reactions) {got} != {want}"
    assert set(r[0] for r in ch_client.execute(f"SELECT referral_id FROM {db}.referrals FINAL WHERE routed = 1")) \
        == set(routed)
    assert set(r[0] for r in ch_client.execute(f"SELECT referral_id FROM {db}.duplicates FINAL")) == set(dup_ids)

    figures = {"referrals": len(corpus.records), "bad": len(corpus.bad), "routed": len(routed),
               "duplicates": len(dup_ids), "decisions": len(ops.decided), "kills": kills,
               "produced_s": round(produced_s, 1), "drained_s": round(drained_s, 1)}
    print("\ncrash test:", json.dumps(figures))
    report = stack.home / "reports" / "crash_test.json"
    report.parent.mkdir(parents=True, exist_ok=True)
    report.write_text(json.dumps(figures, indent=2) + "\n")


def _wait(cond: Any, timeout: float, worker: WorkerProcess, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"no {what} after {timeout}s\n{worker.log_tail()}")
        if worker.proc is not None and worker.proc.poll() is not None:
            raise AssertionError(f"worker died while waiting for {what}:\n{worker.log_tail()}")
        time.sleep(0.2)


def _diagnose(stack: Settings, names: Topics, corpus: Corpus, ops: Operators) -> str:
    """Where the items that never reached a lane are (for a failure message)."""
    out = read_topics(stack, [*names.candidates, names.accepted, names.duplicates], idle_s=3.0)
    routed_items = {corpus.item_of[rid] for rid in ops.decided}
    missing = {item for item in corpus.items if corpus.items[item][0] and item not in routed_items}
    seen: dict[str, list[str]] = {}
    for topic, msgs in out.items():
        for m in msgs:
            rid = m.decode().get("referral_id")
            if rid in corpus.item_of and corpus.item_of[rid] in missing:
                seen.setdefault(rid, []).append(f"{topic.rsplit('.', 1)[-1]}@{m.partition}:{m.offset}")
    # where the worker's group stands on those partitions: past a candidate means committed unhandled
    wanted = {(t, int(loc.split("@")[1].split(":")[0])) for locs in seen.values() for loc in locs
              for t in names.candidates if t.endswith(loc.split("@")[0])}
    committed: dict[str, Any] = {}
    if wanted:
        c = Consumer(stack.confluent(**{"group.id": f"{names.prefix}app", "enable.auto.commit": False}))
        try:
            for tp in c.committed([TopicPartition(t, p) for t, p in sorted(wanted)], timeout=10):
                committed[f"{tp.topic.rsplit('.', 1)[-1]}@{tp.partition}"] = tp.offset
        except Exception as exc:  # a diagnosis must never hide the failure it explains
            committed["unknown"] = repr(exc)
        finally:
            c.close()
    return (f"operators: {len(ops.decided)} decided, error={ops.error!r}; {len(missing)} items never routed; "
            f"their referrals seen: {dict(list(seen.items())[:10])}; the worker's committed offsets there: "
            f"{committed}")


def _settle(stack: Settings, names: Topics, lanes: list[str], expected_routed: int) -> dict[str, list[Any]]:
    """Read every output topic until two reads a few seconds apart agree (reactions lag the lanes)."""
    wanted = [*lanes, names.duplicates, names.unroutable, names.rejected, names.accepted, names.reactions]
    last: dict[str, list[Any]] = {}
    for _ in range(30):
        out = read_topics(stack, wanted, idle_s=3.0, timeout_s=300)
        if last and {t: len(v) for t, v in out.items()} == {t: len(v) for t, v in last.items()} \
                and len(out[names.reactions]) >= expected_routed:
            return out
        last = out
        time.sleep(3)
    return last


def _ch_counts(client: Client, db: str) -> tuple[int, ...]:
    try:
        row = client.execute(
            f"SELECT (SELECT count() FROM {db}.referrals FINAL), (SELECT count() FROM {db}.duplicates FINAL), "
            f"(SELECT count() FROM {db}.rejections FINAL), (SELECT count() FROM {db}.decisions FINAL), "
            f"(SELECT count() FROM {db}.reactions FINAL)")
    except Exception:  # tables not created yet
        return ()
    return tuple(row[0])
