"""The hostile corpus through the real worker: every bad record dead-lettered whole with its code,
every good one intact in its lane (and in ClickHouse, SQL-looking strings included), RSS flat.

Phases: (1) good referrals, routed, so decisions can be about them; (2) over 10,000 bad referrals
and decisions shuffled with good referrals and good decisions; (3) referrals each followed at once
by another operator's decision about it (held, then refused when the referral arrives).
The corpus is tests/hostile_corpus.py (seeded); tests/unit/test_hostile.py checks it without Kafka.
"""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from clickhouse_driver import Client
from confluent_kafka import Consumer, KafkaError, Producer, TopicPartition

from sinks.clickhouse import ClickHouseSink
from streams.codec import default_codec
from streams.config import Settings
from streams.registry import Registry
from streams.topics import EXTERNAL_MAX_BYTES, Topics
from tests import hostile_corpus as hc
from tests.integration import scenario
from tests.integration.kafka_io import WorkerProcess, read_topics, wait_for_count

SEED = 2026
N_BAD_REPORTS, N_BAD_DECISIONS, N_FLOOD = 9_000, 1_500, 40
N_WARM, N_GOOD, N_RACING = 300, 2_000, 60
HUGE = 1_000_000  # about the largest record the reports topics take (EXTERNAL_MAX_BYTES = 1 MiB)
RSS_GROWTH_LIMIT_MB = 150
POLICY = """
priorities:
  CRITICAL: {ack_within: 15m, decide_within: 1h}
  HIGH: {ack_within: 1h, decide_within: 24h}
  STANDARD: {ack_within: 24h, decide_within: 7d}
dedup: {horizon: 30d}
decisions: {unknown_grace: 4s}
windows: {size: 1h, step: 5m, grace: 5m, emit_interval: 1s}
overdue: {check_interval: 1s}
"""


class RssSampler:
    """VmRSS of one process, every `interval` seconds, in a thread."""

    def __init__(self, pid: int, interval: float = 0.25) -> None:
        self.pid, self.interval = pid, interval
        self.samples: list[tuple[float, int]] = []  # (monotonic time, kB)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
                    if line.startswith("VmRSS:"):
                        self.samples.append((time.monotonic(), int(line.split()[1])))
            except OSError:
                return
            self._stop.wait(self.interval)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(5)

    def between(self, start: float, end: float) -> list[int]:
        return [kb for t, kb in self.samples if start <= t <= end]


@pytest.fixture
def worker(stack: Settings, topic_prefix: str, tmp_path: Path) -> Iterator[WorkerProcess]:
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY)
    w = WorkerProcess.for_prefix(stack, topic_prefix, tmp_path, SIGNALEMENT_POLICY=str(policy))
    w.start()
    yield w
    w.stop()


def big_producer(settings: Settings) -> Producer:
    """Takes records up to 8 MB, so it is the broker (the topic's max.message.bytes) that refuses."""
    return Producer(settings.confluent(**{"partitioner": "murmur2_random", "linger.ms": 5, "enable.idempotence": True,
                                          "message.max.bytes": 8_000_000, "log_level": 0}))


def publish(producer: Producer, names: Topics, cases: list[hc.Case]) -> None:
    errors: list[Any] = []
    for case in cases:
        topic = names.reports(case.owner) if case.topic_kind == "reports" else names.decisions(case.owner)
        while True:
            try:
                producer.produce(topic, value=case.value, key=case.key,
                                 on_delivery=lambda err, _m: err and errors.append(err))
                break
            except BufferError:
                producer.poll(0.1)
        producer.poll(0)
    assert producer.flush(60) == 0
    assert not errors, errors[:5]


def good_case(codec: Any, ref: dict[str, Any]) -> hc.Case:
    return hc.Case("reports", ref["reporter_id"], ref["referral_id"].encode(), codec.encode("Referral", ref), "OK", "good")


def wait_until(check: Callable[[], bool], timeout: float, worker: WorkerProcess, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if worker.proc is not None and worker.proc.poll() is not None:
            raise AssertionError(f"worker died:\n{worker.log_tail()}")
        assert time.monotonic() < deadline, f"{what} after {timeout}s\n{worker.log_tail()}"
        time.sleep(1.0)


class TopicCount:
    """How many records a topic holds so far, read once from the start by one consumer."""

    def __init__(self, settings: Settings, topic: str) -> None:
        self.consumer = Consumer(settings.confluent(**{"group.id": f"count-{time.time_ns()}", "log_level": 0,
                                                       "enable.auto.commit": False}))
        meta = self.consumer.list_topics(topic, timeout=10).topics[topic]
        self.consumer.assign([TopicPartition(topic, p, 0) for p in meta.partitions])
        self.n = 0

    def __call__(self) -> int:
        while batch := self.consumer.consume(5_000, 0.5):
            self.n += sum(1 for m in batch if m.error() is None)
        return self.n

    def close(self) -> None:
        self.consumer.close()


def lanes(names: Topics, registry: Registry) -> list[str]:
    return [names.lane(op, p) for op in sorted(registry.operators) for p in ("CRITICAL", "HIGH", "STANDARD")]


def test_the_5_mb_url_is_refused_by_the_broker(stack: Settings, topics: Topics) -> None:
    """The broker itself refuses a record over the reports topic's cap (the codec-level 5 MB case is a unit test)."""
    codec = default_codec()
    ref = hc.good_referral(random.Random(1), 1, "pharos")
    ref["url"] = "https://www.youtube.com/watch?v=" + "A" * 5_000_000
    producer = Producer(stack.confluent(**{"message.max.bytes": 8_000_000, "log_level": 0}))
    results: list[Any] = []
    for size_ok, value in ((False, codec.encode("Referral", ref)), (True, b"x" * (EXTERNAL_MAX_BYTES - 1_000))):
        producer.produce(topics.reports("pharos"), value=value, on_delivery=lambda err, _m: results.append(err))
        producer.flush(30)
        assert (results[-1] is None) == size_ok, results[-1]
    assert results[0].code() == KafkaError.MSG_SIZE_TOO_LARGE


def test_hostile_corpus_through_the_worker(stack: Settings, topics: Topics, registry: Registry,
                                           worker: WorkerProcess, isolated_settings: Settings,
                                           ch_client: Client) -> None:
    names, codec, rnd = topics, default_codec(), random.Random(SEED)
    assert worker.proc is not None
    producer = big_producer(stack)
    started = time.monotonic()
    with RssSampler(worker.proc.pid) as rss:
        # (1) warm-up: good referrals the hostile decisions will be about
        warm = [hc.good_referral(rnd, i) for i in range(N_WARM)]
        publish(producer, names, [good_case(codec, r) for r in warm])
        wait_for_count(stack, names.accepted, N_WARM, timeout_s=120, worker=worker)
        time.sleep(2)  # let the reactions agent index them
        routed = {r["referral_id"]: hc.operator_of(r) for r in warm}

        # (2) the corpus, shuffled with good referrals and good decisions
        corpus_started = time.monotonic()
        bad = (hc.reports_corpus(codec, N_BAD_REPORTS, SEED)
               + hc.decisions_corpus(codec, N_BAD_DECISIONS, SEED + 1, routed)
               + hc.flood(codec, "meta", N_FLOOD) + hc.huge(codec, rnd, HUGE))
        good = [hc.good_referral(rnd, N_WARM + i) for i in range(N_GOOD)]
        decided = [hc.Case("decisions", op, rid.encode(), codec.encode("OperatorDecision", hc.decision(rid, op)),
                           "OK", "good_decision") for rid, op in routed.items()]
        mixed = bad + [good_case(codec, r) for r in good] + decided
        rnd.shuffle(mixed)
        rejected, n_bad, rss_after = TopicCount(stack, names.rejected), 0, []
        for chunk in (mixed[i::4] for i in range(4)):  # four rounds: RSS after each shows where it levels off
            publish(producer, names, chunk)
            n_bad += sum(1 for c in chunk if c.code not in ("OK", "UNKNOWN_REFERRAL"))  # those wait for the grace
            wait_until(lambda n=n_bad: rejected() >= n, 150, worker, "not every bad record was rejected")
            rss_after.append(rss.samples[-1][1] // 1024)
        wait_until(lambda: rejected() >= len(bad), 60, worker, "not every bad record was rejected")

        # (3) referrals each chased by another operator's decision about it (held, then NOT_YOUR_REFERRAL)
        racing_refs = [hc.good_referral(rnd, N_WARM + N_GOOD + i) for i in range(N_RACING)]
        racing: list[hc.Case] = []
        for ref in racing_refs:
            other = rnd.choice([o for o in hc.OPERATORS if o != hc.operator_of(ref)])
            value = codec.encode("OperatorDecision", hc.decision(ref["referral_id"], other))
            racing += [good_case(codec, ref),
                       hc.Case("decisions", other, ref["referral_id"].encode(), value, "NOT_YOUR_REFERRAL", "racing")]
        publish(producer, names, racing)
        bad += [c for c in racing if c.code != "OK"]
        good += racing_refs

        n_good = N_WARM + len(good)
        try:
            wait_until(lambda: rejected() >= len(bad), 60, worker, "not every racing decision was rejected")
        finally:
            rejected.close()
        wait_for_count(stack, names.accepted, n_good, timeout_s=60, worker=worker)
        wait_for_count(stack, names.reactions, N_WARM, timeout_s=60, worker=worker)
        corpus_done = time.monotonic()
    worker_wall = corpus_done - corpus_started

    out = read_topics(stack, [names.rejected, names.accepted, names.duplicates, names.unroutable, names.reactions,
                              *lanes(names, registry)], idle_s=2.0)

    # every bad record: in referrals.rejected once, with its code, its topic, its original key and bytes
    def topic_of(c: hc.Case) -> str:
        return names.reports(c.owner) if c.topic_kind == "reports" else names.decisions(c.owner)

    expected = Counter((topic_of(c), c.key, c.value or b"", c.code) for c in bad)
    got_rejections = [m.decode() for m in out[names.rejected]]
    got = Counter((r["source_topic"], r["key"], r["value"], r["error_code"]) for r in got_rejections)
    missing, extra = expected - got, got - expected
    assert not missing and not extra, (
        f"{sum(missing.values())} missing, e.g. {[(k[0], k[3], k[2][:40]) for k in list(missing)[:5]]}; "
        f"{sum(extra.values())} extra, e.g. {[(k[0], k[3], k[2][:40]) for k in list(extra)[:5]]}")

    # every good referral: once, in the lane of its operator and priority, every field intact
    all_good = warm + good
    by_id = {r["referral_id"]: r for r in all_good}
    seen: dict[str, str] = {}
    for lane in lanes(names, registry):
        for m in out[lane]:
            r = m.decode()
            rid = r["referral_id"]
            assert rid in by_id, f"{rid} in {lane} is not a good referral"
            assert rid not in seen, f"{rid} in {seen[rid]} and {lane}"
            seen[rid] = lane
            ref = by_id[rid]
            assert lane == names.lane(hc.operator_of(ref), scenario.expected_priority(ref)[0])
            assert {k: r[k] for k in ref if k != "operator_id"} == {k: v for k, v in ref.items() if k != "operator_id"}
            assert m.key == rid.encode()
    assert set(seen) == set(by_id)
    assert out[names.duplicates] == [] and out[names.unroutable] == []

    # every good decision: one reaction, its own; no hostile decision made one
    reactions = [m.decode() for m in out[names.reactions]]
    assert sorted((r["referral_id"], r["operator_id"], r["action"]) for r in reactions) == sorted(
        (rid, op, "REMOVED") for rid, op in routed.items())

    # RSS flat: first quarter of the corpus run against the last
    samples = rss.between(corpus_started, corpus_done)
    quarter = max(1, len(samples) // 4)
    first, last = samples[:quarter], samples[-quarter:]
    growth_mb = (sorted(last)[len(last) // 2] - sorted(first)[len(first) // 2]) / 1024
    assert growth_mb < RSS_GROWTH_LIMIT_MB, (first, last)

    # the SQL-looking and other unfriendly strings, intact in ClickHouse through the sink
    sink = ClickHouseSink(isolated_settings, names, registry, batch_rows=5_000, batch_seconds=0.5)
    try:
        assert sink.run_until(lambda: sink.meter.counts["rows.referrals"] >= n_good, timeout=120), sink.meter.counts
    finally:
        sink.close()
    db = isolated_settings.clickhouse_database
    rows = ch_client.execute(f"SELECT referral_id, reporter_id, external_ref, url, legal_basis, reasons, jurisdiction, "
                             f"language, reported_at FROM {db}.referrals FINAL")
    stored = {row[0]: row[1:] for row in rows}
    fields = ("reporter_id", "external_ref", "url", "legal_basis", "reasons", "jurisdiction", "language", "reported_at")
    assert stored == {rid: tuple(r[f] for f in fields) for rid, r in by_id.items()}
    sql_like = [rid for rid, r in by_id.items() if any(s in r["reasons"] for s in hc.SQL)]
    assert len(sql_like) > N_GOOD // 4
    assert ch_client.execute(f"SELECT count() FROM {db}.referrals FINAL WHERE reasons LIKE %(p)s",
                             {"p": "%DROP TABLE referrals%"})[0][0] == sum(
        "DROP TABLE referrals" in r["reasons"] for r in by_id.values())

    per_code = Counter(c.code for c in bad)
    per_kind = Counter(f"{c.topic_kind}:{c.kind}" for c in bad)
    print(f"\nhostile: {len(bad)} bad ({dict(sorted(per_code.items()))}), {n_good} good, "
          f"{N_WARM} decisions; corpus through the worker in {worker_wall:.1f}s; "
          f"RSS first quarter {sorted(first)[len(first) // 2] / 1024:.0f} MB, last quarter "
          f"{sorted(last)[len(last) // 2] / 1024:.0f} MB (growth {growth_mb:+.1f} MB, max "
          f"{max(samples) / 1024:.0f} MB, {len(samples)} samples); test {time.monotonic() - started:.0f}s")
    print("per kind:", dict(sorted(per_kind.items())))
    print(f"RSS after each quarter of the corpus: {rss_after} MB")
