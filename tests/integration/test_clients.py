"""Clients on the real broker: strict lane priority, commit after the handler, `signalement submit`."""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import replace
from pathlib import Path
from typing import Any

from confluent_kafka import Producer

from agents.logic.priority import claims_urgency
from clients.kafka import now_ms, producer_config
from clients.operator import OperatorClient
from streams.codec import default_codec
from streams.config import ROOT, Settings
from streams.topics import Topics
from tests.integration.kafka_io import produce, read_topics

OP = "google"


def routed(priority: str, n: int = 0) -> dict[str, Any]:
    """A RoutedReferral as the pipeline writes it to a lane."""
    t = now_ms()
    return {
        "referral_id": str(uuid.uuid4()), "reporter_id": "pharos", "external_ref": f"T-{n}", "instrument": "REFERRAL",
        "label": "LABELLED", "emergency": priority == "CRITICAL", "category": "TERRORIST_PROPAGANDA",
        "url": f"https://www.youtube.com/watch?v=v{n}", "operator_id": OP, "content_hashes": [],
        "legal_basis": "LCEN art. 6-1", "reasons": "test", "jurisdiction": "FR", "language": "fr", "reported_at": t,
        "normalized_url": f"https://youtube.com/watch?v=v{n}", "priority": priority, "label_verified": True,
        "label_rejected": False, "routed_at": t, "ack_deadline": t + 60_000, "decision_deadline": t + 3_600_000,
        "co_reporters": [], "escalated": False, "version": 0,
    }


def fill(settings: Settings, topics: Topics, priority: str, count: int) -> list[str]:
    """Publish `count` referrals to one lane; their ids in order."""
    codec = default_codec()
    refs = [routed(priority, i) for i in range(count)]
    produce(settings, topics.lane(OP, priority),
            ((r["referral_id"].encode(), codec.encode("RoutedReferral", r)) for r in refs))
    return [r["referral_id"] for r in refs]


def settings_for(stack: Settings, topics: Topics) -> Settings:
    return replace(stack, topic_prefix=topics.prefix)


def test_strict_priority(stack: Settings, topics: Topics) -> None:
    """Critical first, then high, then standard; a critical published meanwhile jumps the queue."""
    settings = settings_for(stack, topics)
    n = 300
    standard, high, critical = fill(settings, topics, "STANDARD", n), fill(settings, topics, "HIGH", n), \
        fill(settings, topics, "CRITICAL", 5)
    seen: list[tuple[str, str]] = []
    late: list[str] = []

    def handler(ref: dict[str, Any]) -> None:
        seen.append((ref["priority"], ref["referral_id"]))
        if len(seen) == 5 + n + 100:  # well inside the standard lane
            late.extend(fill(settings, topics, "CRITICAL", 1))
            seen.append(("PUBLISHED", late[0]))
        if len(seen) == 2 * n + 7:
            client.stop()

    client = OperatorClient(settings, OP, handler, topics=topics)
    try:
        client.run(timeout=120)
    finally:
        client.close()
    order = [p for p, _ in seen]
    assert order[:5] == ["CRITICAL"] * 5 and {r for _, r in seen[:5]} == set(critical)
    assert order[5:5 + n] == ["HIGH"] * n and {r for _, r in seen[5:5 + n]} == set(high)
    published = order.index("PUBLISHED")
    after = order[published + 1:]
    jump = after.index("CRITICAL")
    print(f"\ncritical published during the standard lane was handled after {jump} more standard message(s)")
    assert jump <= 5, after[:jump + 1]
    got_standard = {r for p, r in seen if p == "STANDARD"}
    assert got_standard == set(standard) and len(got_standard) == n


def _produce_on(settings: Settings, topic: str, partition: int, refs: list[dict[str, Any]]) -> None:
    p = Producer(producer_config(settings))
    for r in refs:
        p.produce(topic, key=r["referral_id"].encode(), value=default_codec().encode("RoutedReferral", r),
                  partition=partition)
    assert p.flush(30) == 0


def test_commit_after_handler(stack: Settings, topics: Topics) -> None:
    """A referral whose handler raised is delivered again after a restart; nothing before it is."""
    settings = settings_for(stack, topics)
    refs = [routed("STANDARD", i) for i in range(10)]
    _produce_on(settings, topics.lane(OP, "STANDARD"), 0, refs)
    bad = refs[5]["referral_id"]
    first: list[str] = []
    attempts = 0

    def failing(ref: dict[str, Any]) -> None:
        nonlocal attempts
        if ref["referral_id"] == bad:
            attempts += 1
            if attempts == 3:
                client.stop()
            raise RuntimeError("ticketing system down")
        first.append(ref["referral_id"])

    client = OperatorClient(settings, OP, failing, topics=topics)
    client.run(timeout=60)
    client.close()
    assert first == [r["referral_id"] for r in refs[:5]] and attempts == 3
    second: list[str] = []
    again = OperatorClient(settings, OP, lambda ref: second.append(ref["referral_id"]), topics=topics)
    again.run(max_messages=5, timeout=60)
    again.close()
    assert second == [r["referral_id"] for r in refs[5:]]


def test_critical_latency_under_backlog(stack: Settings, topics: Topics) -> None:
    """Measure (printed, not asserted): a critical referral while the standard lane holds 100k messages."""
    settings = settings_for(stack, topics)
    fill(settings, topics, "STANDARD", 100_000)
    latencies: list[float] = []
    sent_at: dict[str, float] = {}
    handled = 0
    producer = Producer(producer_config(settings))

    def publish() -> None:
        for _ in range(10):
            while handled < 200 + 100 * len(sent_at):
                time.sleep(0.01)
            ref = routed("CRITICAL")
            sent_at[ref["referral_id"]] = time.perf_counter()
            producer.produce(topics.lane(OP, "CRITICAL"), key=ref["referral_id"].encode(),
                             value=default_codec().encode("RoutedReferral", ref))
            producer.flush(10)

    def handler(ref: dict[str, Any]) -> None:
        nonlocal handled
        handled += 1
        if ref["priority"] == "CRITICAL":
            latencies.append(time.perf_counter() - sent_at[ref["referral_id"]])
            if len(latencies) == 10:
                client.stop()

    client = OperatorClient(settings, OP, handler, topics=topics, commit_every=100)
    thread = threading.Thread(target=publish, daemon=True)
    thread.start()
    try:
        client.run(timeout=120)
        backlog = client.backlog()
    finally:
        client.close()
    ms = sorted(x * 1000 for x in latencies)
    print(f"\ncritical under a standard backlog of {backlog['STANDARD']}: n={len(ms)} "
          f"median={statistics.median(ms):.1f} ms max={ms[-1]:.1f} ms (produce call to handler)")
    assert len(ms) == 10


def _submit(settings: Settings, path: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "SIGNALEMENT_TOPIC_PREFIX": settings.topic_prefix, "SIGNALEMENT_BOOTSTRAP": settings.bootstrap,
           "SIGNALEMENT_HOME": str(settings.home)}
    return subprocess.run([sys.executable, "-m", "streams.cli", "submit", "--reporter", "pharos", str(path)],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)


GOOD = [str(uuid.UUID(int=i + 1)) for i in range(3)]
JSONL = "\n".join([
    f'{{"referral_id": "{GOOD[0]}", "url": "https://www.youtube.com/watch?v=a", "category": "THREAT"}}',
    '{"url": "https://x.com/a", ',                                                          # 2: bad JSON
    f'{{"referral_id": "{GOOD[1]}", "url": "https://x.com/b", "instrument": "REMOVAL_ORDER",'
    ' "reported_at": "2025-06-01T10:00:00+02:00", "label": "LABELLED", "emergency": true}',
    '{"category": "THREAT"}',                                                               # 4: no url
    '{"url": "https://x.com/c", "category": "PIRACY"}',                                     # 5: bad enum
    '{"url": "https://x.com/d", "reported_at": "last tuesday"}',                            # 6: bad time
    "",
    f'{{"referral_id": "{GOOD[2]}", "url": "https://github.com/x/y", "content_hashes":'
    f' [{{"algo": "SHA256", "value": "{"ab" * 32}"}}], "reported_at": 1767225600000}}',
]) + "\n"
CSV = (
    "referral_id,url,category,instrument,emergency,reported_at,content_hashes\n"
    f"{GOOD[0]},https://www.youtube.com/watch?v=a,THREAT,REFERRAL,false,,\n"
    ",https://x.com/a,PIRACY,,,,\n"                                                         # 3: bad enum
    f"{GOOD[1]},https://x.com/b,INCITEMENT,REMOVAL_ORDER,yes,2025-06-01T10:00:00Z,\n"
    ",,THREAT,,,,\n"                                                                        # 5: no url
    ",https://x.com/d,THREAT,,,noon,\n"                                                     # 6: bad time
    f"{GOOD[2]},https://github.com/x/y,OTHER,NOTICE,0,1767225600000,md5:{'c' * 32};sha256:{'d' * 64}\n"
)


def _check_submit(settings: Settings, topics: Topics, path: Path, bad_lines: list[int]) -> None:
    result = _submit(settings, path)
    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    for line in bad_lines:
        assert f"line {line}:" in output, output
    # the removal order (GOOD[1]) on pharos's urgent topic, the others on its main topic
    got = read_topics(settings, [topics.reports("pharos"), topics.reports_urgent("pharos")])
    for topic, ids in ((topics.reports("pharos"), [GOOD[0], GOOD[2]]), (topics.reports_urgent("pharos"), [GOOD[1]])):
        assert sorted(m.key.decode() for m in got[topic] if m.key) == ids, output
        assert sorted(m.decode()["referral_id"] for m in got[topic]) == ids


def test_submit_jsonl(stack: Settings, topics: Topics, tmp_path: Path) -> None:
    path = tmp_path / "referrals.jsonl"
    path.write_text(JSONL)
    _check_submit(settings_for(stack, topics), topics, path, [2, 4, 5, 6])


def test_submit_csv(stack: Settings, topics: Topics, tmp_path: Path) -> None:
    path = tmp_path / "referrals.csv"
    path.write_text(CSV)
    _check_submit(settings_for(stack, topics), topics, path, [3, 5, 6])


def test_simulate_writes_each_reporter_to_its_own_topic(stack: Settings, topics: Topics) -> None:
    """A short seeded run without operators: every record lands on its reporter's topic, keyed."""
    from clients.simulate import SimConfig, simulate

    settings = settings_for(stack, topics)
    summary = simulate(settings, SimConfig(duration=3, rate=40, seed=3, crisis_size=30, operators=(), topics=topics))
    reporters = ("pharos", "eu-iru", "ctiru", "tj-paris", "pointdecontact")
    main, urgent = topics.intake_topics(reporters)
    got = read_topics(settings, [*main, *urgent])
    for reporter in summary.sent:
        records = [m.decode() for t in (topics.reports(reporter), topics.reports_urgent(reporter)) for m in got[t]
                   if m.value[:2] == b"\xc3\x01" and m.key]
        assert sum(1 for r in records if r["reporter_id"] == reporter) >= summary.sent[reporter]
    # removal orders and emergencies on the urgent topics, nothing else there
    for reporter in reporters:
        assert all(claims_urgency(m.decode()) for m in got[topics.reports_urgent(reporter)])
    assert any(got[t] for t in urgent), "the simulation sent no removal order"
    total = sum(len(v) for v in got.values())
    assert total == sum(summary.sent.values()) + sum(summary.malformed.values()) and summary.crisis >= 30
