"""The referral pipeline on the real broker: intake, dedup, priority, routing, lanes."""

from __future__ import annotations

import statistics
import time
from pathlib import Path
from typing import Any

import pytest

from streams.codec import default_codec
from streams.config import Settings
from streams.policy import Policy
from streams.registry import Registry
from streams.topics import Topics
from tests.integration import scenario
from tests.integration.kafka_io import WorkerProcess, produce, read_topics, wait_for_count


@pytest.fixture
def worker(stack: Settings, topic_prefix: str, tmp_path: Path) -> Any:
    w = WorkerProcess.for_prefix(stack, topic_prefix, tmp_path)
    w.start()
    yield w
    w.stop()


def send(settings: Settings, names: Topics, wave: list[tuple[str, bytes]]) -> None:
    by_topic: dict[str, list[tuple[bytes | None, bytes]]] = {}
    for reporter, value in wave:
        by_topic.setdefault(names.reports(reporter), []).append((None, value))
    for topic, items in by_topic.items():
        produce(settings, topic, items)


def lanes(names: Topics, registry: Registry) -> list[str]:
    return [names.lane(op, p) for op in sorted(registry.operators) for p in ("CRITICAL", "HIGH", "STANDARD")]


def test_scenario_lanes_duplicates_rejections(stack: Settings, topic_prefix: str, worker: WorkerProcess) -> None:
    names = Topics(prefix=topic_prefix, partitions=stack.partitions)
    registry = Registry.load(stack.reporters_path, stack.operators_path)
    policy = Policy.load(stack.policy_path)
    sc = scenario.build()
    n_routable = sum(1 for op in sc.operator.values() if op)

    t0 = time.time()
    send(stack, names, sc.waves[0])
    wait_for_count(stack, names.accepted, n_routable, worker=worker)
    elapsed = time.time() - t0
    send(stack, names, sc.waves[1])
    wait_for_count(stack, names.duplicates, len(sc.duplicates), worker=worker)
    wait_for_count(stack, names.rejected, len(sc.bad), worker=worker)

    out = read_topics(stack, [*lanes(names, registry), names.accepted, names.duplicates, names.unroutable,
                              names.rejected])
    # every routable referral is in exactly one lane, the right one, once; nothing else is in a lane
    seen: dict[str, str] = {}
    delays = []
    for lane in lanes(names, registry):
        for m in out[lane]:
            r = m.decode()
            assert r["referral_id"] not in seen, f"{r['referral_id']} twice: {seen[r['referral_id']]} and {lane}"
            seen[r["referral_id"]] = lane
            ref = sc.canonical[r["referral_id"]]
            priority, rejected = scenario.expected_priority(ref)
            assert lane == names.lane(sc.operator[r["referral_id"]] or "", priority)
            assert (r["priority"], r["label_rejected"], r["escalated"]) == (priority, rejected, False)
            d = policy.deadlines[priority]
            assert r["ack_deadline"] - r["routed_at"] == d.ack_ms
            assert r["decision_deadline"] - r["routed_at"] == d.decide_ms
            assert m.key == r["referral_id"].encode()
            delays.append(r["routed_at"] - r["reported_at"])
    assert set(seen) == {rid for rid, op in sc.operator.items() if op}
    # unroutable: exactly the unknown hosts, once each
    unroutable = [m.decode()["referral_id"] for m in out[names.unroutable]]
    assert sorted(unroutable) == sorted(rid for rid, op in sc.operator.items() if op is None)
    # duplicates: each recorded once, against the right canonical referral, never escalating
    dups = {m.decode()["referral_id"]: m.decode() for m in out[names.duplicates]}
    assert len(dups) == len(out[names.duplicates]) == len(sc.duplicates)
    assert {k: v["canonical_referral_id"] for k, v in dups.items()} == sc.duplicates
    assert not any(v["escalated"] for v in dups.values())
    # co-reporters: the latest version of each accepted referral lists the other reporters
    latest: dict[str, dict[str, Any]] = {}
    for m in out[names.accepted]:
        r = m.decode()
        if r["referral_id"] not in latest or r["version"] > latest[r["referral_id"]]["version"]:
            latest[r["referral_id"]] = r
    assert set(latest) == set(seen)
    assert {rid: set(r["co_reporters"]) for rid, r in latest.items()} == {rid: sc.co_reporters[rid] for rid in seen}
    # rejections: the original bytes with the precise code
    rejected = [(m.decode()["value"], m.decode()["error_code"]) for m in out[names.rejected]]
    assert sorted(rejected) == sorted((value, code) for _, value, code in sc.bad)
    rate = n_routable / elapsed
    delays.sort()
    print(f"\nscenario: {n_routable} routed in {elapsed:.1f}s ({rate:.0f}/s incl. start-up); reported->routed "
          f"p50={statistics.median(delays)}ms p99={delays[int(len(delays) * 0.99) - 1]}ms")


def test_escalation_once_and_restart_keeps_dedup_state(stack: Settings, topic_prefix: str,
                                                       worker: WorkerProcess) -> None:
    names = Topics(prefix=topic_prefix, partitions=stack.partitions)
    codec = default_codec()
    url = "https://www.youtube.com/watch?v=escalate-me"
    first = scenario.referral("pointdecontact", url)  # STANDARD
    # reporters may compress: every codec Kafka knows must reach the pipeline
    produce(stack, names.reports("pointdecontact"), [(None, codec.encode("Referral", first))], compression="snappy")
    wait_for_count(stack, names.lane("google", "STANDARD"), 1, worker=worker)
    labelled = scenario.referral("pharos", url + "&utm_campaign=a", label="LABELLED")  # HIGH: escalates
    produce(stack, names.reports("pharos"), [(None, codec.encode("Referral", labelled))], compression="lz4")
    high = wait_for_count(stack, names.lane("google", "HIGH"), 1, worker=worker)
    r = high[0].decode()
    assert (r["referral_id"], r["priority"], r["escalated"], r["co_reporters"]) == (
        first["referral_id"], "HIGH", True, ["pharos"])

    worker.stop()  # a restart must keep the dedup table (RocksDB + changelog)
    worker.start()
    order = scenario.referral("tj-paris", "http://m.youtube.com/watch?v=escalate-me", instrument="REMOVAL_ORDER")
    produce(stack, names.reports("tj-paris"), [(None, codec.encode("Referral", order))], compression="zstd")
    dups = wait_for_count(stack, names.duplicates, 2, worker=worker)
    by_id = {m.decode()["referral_id"]: m.decode() for m in dups}
    assert by_id[labelled["referral_id"]]["escalated"] is True
    assert by_id[order["referral_id"]]["canonical_referral_id"] == first["referral_id"]
    assert by_id[order["referral_id"]]["escalated"] is False  # escalated once only
    time.sleep(2)
    out = read_topics(stack, [names.lane("google", p) for p in ("CRITICAL", "HIGH", "STANDARD")])
    assert [len(out[names.lane("google", p)]) for p in ("CRITICAL", "HIGH", "STANDARD")] == [0, 1, 1]


SHORT_HORIZON = """
priorities:
  CRITICAL: {ack_within: 15m, decide_within: 1h}
  HIGH: {ack_within: 1h, decide_within: 24h}
  STANDARD: {ack_within: 24h, decide_within: 7d}
dedup: {horizon: 2s}
decisions: {unknown_grace: 5m}
windows: {size: 1h, step: 5m, grace: 5m}
overdue: {check_interval: 1s}
"""


def short_horizon_worker(stack: Settings, topic_prefix: str, tmp_path: Path) -> WorkerProcess:
    """A worker started with a dedup horizon (and so a retention) of 2 s, ticks every second."""
    policy = tmp_path / "policy.yaml"
    policy.write_text(SHORT_HORIZON)
    worker = WorkerProcess.for_prefix(stack, topic_prefix, tmp_path, SIGNALEMENT_POLICY=str(policy))
    worker.start()
    return worker


def wait_for_tombstone(stack: Settings, changelog: str, key: bytes, worker: WorkerProcess,
                       timeout_s: float = 30.0) -> list[Any]:
    """The changelog's records once it holds a tombstone for `key` (fails after `timeout_s`)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        records = read_topics(stack, [changelog], idle_s=1.0)[changelog]
        if any(m.key == key and m.value is None for m in records):
            return records
        time.sleep(1)
    raise AssertionError(f"no tombstone for {key!r} in {changelog}\n{worker.log_tail()}")


def test_dedup_items_expire_after_the_horizon(stack: Settings, topic_prefix: str, tmp_path: Path) -> None:
    """The sweep deletes expired items (a tombstone in the changelog); the URL is then new again."""
    worker = short_horizon_worker(stack, topic_prefix, tmp_path)
    try:
        names, codec = Topics(prefix=topic_prefix, partitions=stack.partitions), default_codec()
        first = scenario.referral("pharos", "https://x.com/u/status/expiring")
        produce(stack, names.reports("pharos"), [(None, codec.encode("Referral", first))])
        wait_for_count(stack, names.lane("twitter", "STANDARD"), 1, worker=worker)
        wait_for_tombstone(stack, f"{topic_prefix}app-dedup-items-changelog", b"twitter|https://x.com/u/status/expiring",
                           worker)
        second = scenario.referral("eu-iru", "https://twitter.com/u/status/expiring")
        produce(stack, names.reports("eu-iru"), [(None, codec.encode("Referral", second))])
        lane = wait_for_count(stack, names.lane("twitter", "STANDARD"), 2, worker=worker)
        assert sorted(m.decode()["referral_id"] for m in lane) == sorted([first["referral_id"], second["referral_id"]])
        assert read_topics(stack, [names.duplicates], idle_s=1.0)[names.duplicates] == []
    finally:
        worker.stop()


def test_decided_referrals_are_forgotten_after_the_horizon_open_ones_kept(stack: Settings, topic_prefix: str,
                                                                          tmp_path: Path) -> None:
    """The reactions table forgets a decided referral a horizon after its last change (a tombstone
    in its changelog), so it does not grow with every referral ever routed; an undecided one stays.
    The windows agent forgets the referral's counted events likewise."""
    worker = short_horizon_worker(stack, topic_prefix, tmp_path)
    try:
        names, codec = Topics(prefix=topic_prefix, partitions=stack.partitions), default_codec()
        decided = scenario.referral("pharos", "https://x.com/u/status/decided")
        still_open = scenario.referral("pharos", "https://x.com/u/status/open")
        send(stack, names, [("pharos", codec.encode("Referral", r)) for r in (decided, still_open)])
        routed = wait_for_count(stack, names.lane("twitter", "STANDARD"), 2, worker=worker)
        acted_at = max(m.decode()["routed_at"] for m in routed) + 10
        removal = codec.encode("OperatorDecision", {"referral_id": decided["referral_id"], "operator_id": "twitter",
                                                    "action": "REMOVED", "acted_at": acted_at, "reason": None,
                                                    "operator_ref": None})
        produce(stack, names.decisions("twitter"), [(decided["referral_id"].encode(), removal)])
        wait_for_count(stack, names.reactions, 1, worker=worker)
        changelog = f"{topic_prefix}app-reactions-changelog"
        wait_for_tombstone(stack, changelog, decided["referral_id"].encode(), worker)
        time.sleep(3)  # the open one is past the horizon too by now
        records = read_topics(stack, [changelog], idle_s=1.0)[changelog]
        assert not any(m.key == still_open["referral_id"].encode() and m.value is None for m in records)
        assert any(m.key == still_open["referral_id"].encode() for m in records)
        # the windows agent forgets which of its events it counted, a horizon after the last one
        counted = read_topics(stack, [f"{topic_prefix}app-window-counted-changelog"], idle_s=1.0)
        values = [m.value for m in counted[f"{topic_prefix}app-window-counted-changelog"]
                  if m.key == decided["referral_id"].encode()]
        assert values and values[0] is not None and values[-1] is None, values
    finally:
        worker.stop()


def test_urgent_referrals_do_not_wait_for_the_commit_interval(stack: Settings, topic_prefix: str,
                                                              tmp_path: Path) -> None:
    """Under exactly-once a lane sees a referral once both hops' transactions commit: with commits
    every 30 s only, at least 30 s after it was sent (the second hop's records wait for the commit
    after the first hop's). A CRITICAL referral (policy: urgent) commits at once at each hop and
    arrives well within that; a STANDARD one does not."""
    names = Topics(prefix=topic_prefix, partitions=stack.partitions)
    codec = default_codec()
    w = WorkerProcess.for_prefix(stack, topic_prefix, tmp_path, SIGNALEMENT_COMMIT_INTERVAL="30",
                                 SIGNALEMENT_GUARANTEE="exactly_once")
    lane = names.lane("google", "CRITICAL")

    def order(n: int) -> dict[str, Any]:
        ref = scenario.referral("pharos", f"https://www.youtube.com/watch?v=urgent{n}", instrument="REMOVAL_ORDER")
        assert scenario.expected_priority(ref) == ("CRITICAL", False)
        send(stack, names, [("pharos", codec.encode("Referral", ref))])
        return ref

    w.start()
    try:
        sent = [order(1)["referral_id"]]  # the worker starts meanwhile
        assert [m.decode()["referral_id"] for m in wait_for_count(stack, lane, 1, worker=w)] == sent
        for n in (2, 3):
            sent.append(order(n)["referral_id"])
            got = wait_for_count(stack, lane, n, timeout_s=15.0, worker=w)
            # The lane has several partitions: read back, its records come partition by partition,
            # not in arrival order, so the check is on the set, which must now hold the new one.
            assert sorted(m.decode()["referral_id"] for m in got) == sorted(sent)

        plain = scenario.referral("pointdecontact", "https://www.youtube.com/watch?v=plain1")
        assert scenario.expected_priority(plain) == ("STANDARD", False)
        send(stack, names, [("pointdecontact", codec.encode("Referral", plain))])
        time.sleep(12)
        standard = names.lane("google", "STANDARD")
        assert read_topics(stack, [standard], idle_s=1.0)[standard] == [], "a STANDARD referral did not wait"
        assert w.proc is not None and w.proc.poll() is None, w.log_tail()
    finally:
        w.stop()


def test_a_removal_order_on_the_urgent_topic_passes_the_reporters_own_backlog(
        stack: Settings, topics: Topics, tmp_path: Path) -> None:
    """pharos sends 12,000 referrals, then two removal orders: one on reports.pharos.urgent (its
    client's choice for removal orders), one on reports.pharos, where Kafka serves it after
    everything before it in its partition. The worker starts with all of it waiting: intake takes
    the urgent order before most of the backlog, the other after its partition's share; routing
    then takes both before most of the backlog (urgent candidates have their own agent there)."""
    names, codec, backlog = topics, default_codec(), 12_000
    refs = [scenario.referral("pharos", f"https://www.youtube.com/watch?v=backlog{n}") for n in range(backlog)]
    keyed = [(r["referral_id"].encode(), codec.encode("Referral", r)) for r in refs]  # keyed as reporters do
    produce(stack, names.reports("pharos"), keyed)
    fast, slow = (scenario.referral("pharos", f"https://www.youtube.com/watch?v=order-{kind}",
                                    instrument="REMOVAL_ORDER") for kind in ("fast", "slow"))
    produce(stack, names.reports_urgent("pharos"), [(fast["referral_id"].encode(), codec.encode("Referral", fast))])
    produce(stack, names.reports("pharos"), [(slow["referral_id"].encode(), codec.encode("Referral", slow))])
    standard, critical = names.lane("google", "STANDARD"), names.lane("google", "CRITICAL")
    w = WorkerProcess.for_prefix(stack, names.prefix, tmp_path)
    w.start()
    try:
        wait_for_count(stack, standard, backlog, timeout_s=300.0, worker=w)
        wait_for_count(stack, critical, 2, timeout_s=60.0, worker=w)
        got = read_topics(stack, [standard, critical, *names.candidates], idle_s=1.0)
        packs = read_topics(stack, names.candidates, idle_s=1.0, raw=True)
        assert w.proc is not None and w.proc.poll() is None, w.log_tail()
    finally:
        w.stop()
    # intake: when each candidate was sent on (its record's timestamp in internal.dedup[.urgent])
    intaken = {m.decode()["referral_id"]: m.timestamp for t in names.candidates for m in got[t]}
    routed = {m.decode()["referral_id"]: m.decode()["routed_at"] for m in got[critical]}
    assert set(routed) == {fast["referral_id"], slow["referral_id"]} and len(intaken) == backlog + 2
    # intake packs the candidates of a unit of work by partition (streams/packs.py): far fewer records
    n_packs = sum(len(v) for v in packs.values())
    print(f"\n{backlog + 2:,} candidates in {n_packs:,} records of internal.dedup[.urgent]")
    assert n_packs <= (backlog + 2) // 10, {t: len(v) for t, v in packs.items()}
    backlog_intaken = [intaken[r["referral_id"]] for r in refs]
    backlog_routed = [m.decode()["routed_at"] for m in got[standard]]
    after = {(name, hop): sum(1 for t in times if t > at[r["referral_id"]])
             for name, r in (("urgent topic", fast), ("main topic", slow))
             for hop, times, at in (("intake", backlog_intaken, intaken), ("routing", backlog_routed, routed))}
    print("\nbacklog referrals after the order: " + ", ".join(f"{k[0]} {k[1]} {v:,}" for k, v in after.items()))
    assert after["urgent topic", "intake"] >= backlog // 2, after
    assert after["main topic", "intake"] < after["urgent topic", "intake"], after
    assert after["urgent topic", "routing"] >= backlog // 2, after
