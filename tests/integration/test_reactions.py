"""Reactions, overdue alerts and windows on the real broker, against an independent model."""

from __future__ import annotations

import threading
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from clickhouse_driver import Client

from sinks import queries
from sinks.clickhouse import ClickHouseSink
from streams.codec import default_codec
from streams.config import Settings
from streams.topics import Topics
from tests.integration import reaction_model as model
from tests.integration import scenario
from tests.integration.kafka_io import WorkerProcess, produce, read_topics, wait_for_count
from tests.integration.test_sink import restart_clickhouse

FAST_POLICY = """
priorities:
  CRITICAL: {ack_within: 3s, decide_within: 6s}
  HIGH: {ack_within: 4s, decide_within: 8s}
  STANDARD: {ack_within: 5s, decide_within: 10s}
dedup: {horizon: 30d}
decisions: {unknown_grace: 3s}
windows: {size: 60s, step: 10s, grace: 2s, emit_interval: 1s}
overdue: {check_interval: 1s}
"""
SIZE, STEP = 60_000, 10_000
OPS = [("google", "https://youtube.com/watch?v=r{i}"), ("meta", "https://facebook.com/p/{i}"),
       ("twitter", "https://x.com/u/status/{i}"), ("microsoft", "https://github.com/o/r{i}")]


@pytest.fixture
def fast_worker(stack: Settings, topic_prefix: str, tmp_path: Path) -> Any:
    policy = tmp_path / "policy.yaml"
    policy.write_text(FAST_POLICY)
    w = WorkerProcess.for_prefix(stack, topic_prefix, tmp_path, SIGNALEMENT_POLICY=str(policy))
    w.start()
    yield w
    w.stop()


def decision(rid: str, op: str, action: str, at: int) -> bytes:
    return default_codec().encode("OperatorDecision", {"referral_id": rid, "operator_id": op, "action": action,
                                                       "acted_at": at, "reason": None, "operator_ref": None})


def plan(i: int, routed: dict[str, Any]) -> list[tuple[str, int]]:
    """Five behaviours: silent, ack then remove, refuse, ack only, late removal (+ a later decision ignored)."""
    t0, late = routed["routed_at"], routed["decision_deadline"] + 1500
    return [[], [("ACKNOWLEDGED", t0 + 300 + 37 * i), ("REMOVED", t0 + 900 + 91 * i)],
            [("REFUSED", t0 + 500 + 53 * i), ("REMOVED", t0 + 2000)], [("ACKNOWLEDGED", t0 + 700 + 11 * i)],
            [("DISABLED", late)]][i % 5]


def test_reactions_overdue_and_windows_match_the_model(stack: Settings, topic_prefix: str, fast_worker: WorkerProcess,
                                                       isolated_settings: Settings, ch_client: Client) -> None:
    names = Topics(prefix=topic_prefix, partitions=stack.partitions)
    codec = default_codec()
    refs = [scenario.referral(["pharos", "eu-iru", "pointdecontact"][i % 3], OPS[i % 4][1].format(i=i),
                              label="LABELLED" if i % 2 else "NONE",
                              instrument="REMOVAL_ORDER" if i % 7 == 0 else "REFERRAL")
            for i in range(40)]
    for r in refs:
        produce(stack, names.reports(r["reporter_id"]), [(None, codec.encode("Referral", r))])
    routed = {m.decode()["referral_id"]: m.decode()
              for m in wait_for_count(stack, names.accepted, len(refs), worker=fast_worker)}
    op_of = {r["referral_id"]: OPS[i % 4][0] for i, r in enumerate(refs)}

    plans = {r["referral_id"]: plan(i, routed[r["referral_id"]]) for i, r in enumerate(refs)}
    for rid, acts in plans.items():
        for action, at in acts:
            produce(stack, names.decisions(op_of[rid]), [(rid.encode(), decision(rid, op_of[rid], action, at))])
    # hostile decisions: someone else's referral, a forged operator id, an unknown referral
    victim = refs[1]["referral_id"]
    thief = "apple"
    unknown = str(uuid.uuid4())
    t_victim = routed[victim]["routed_at"]
    produce(stack, names.decisions(thief), [(victim.encode(), decision(victim, thief, "REMOVED", t_victim + 1)),
                                            (unknown.encode(), decision(unknown, thief, "REMOVED", t_victim))])
    produce(stack, names.decisions("meta"), [(victim.encode(), decision(victim, "google", "REMOVED", t_victim))])
    # a decision that overtakes its referral is held, then applied
    early = scenario.referral("pharos", "https://youtube.com/watch?v=early")
    soon = int(time.time() * 1000) + 1500
    produce(stack, names.decisions("google"), [(early["referral_id"].encode(),
                                                decision(early["referral_id"], "google", "REMOVED", soon))])
    time.sleep(1.0)
    produce(stack, names.reports("pharos"), [(None, codec.encode("Referral", early))])
    wait_for_count(stack, names.accepted, len(refs) + 1, worker=fast_worker)

    # wait for every deadline (+ the overdue check, + the window emit interval)
    last_deadline = max(r["decision_deadline"] for r in routed.values()) + 2000
    time.sleep(max(0.0, (last_deadline - time.time() * 1000) / 1000) + 4)
    out = read_topics(stack, [names.accepted, names.reactions, names.overdue, names.windows, names.rejected])
    routed = {}
    for m in out[names.accepted]:
        r = m.decode()
        routed[r["referral_id"]] = r
    early_decision = [codec.decode_any(m.value)[1] for m in out[names.reactions]
                      if m.key == early["referral_id"].encode()]
    assert early_decision and early_decision[-1]["action"] == "REMOVED"
    plans[early["referral_id"]] = [("REMOVED", early_decision[-1]["decided_at"])]
    op_of[early["referral_id"]] = "google"

    # reactions: the latest per referral equals the model
    latest: dict[str, dict[str, Any]] = {}
    for m in out[names.reactions]:
        r = m.decode()
        if r["referral_id"] not in latest or r["updated_at"] >= latest[r["referral_id"]]["updated_at"]:
            latest[r["referral_id"]] = r
    expected = {rid: model.reaction(routed[rid], acts) for rid, acts in plans.items() if acts}
    assert set(latest) == set(expected)
    for rid, exp in expected.items():
        got = {k: latest[rid][k] for k in exp}
        assert got == exp, rid
    # overdue: exactly the deadlines missed, once each, within 30 s
    alerts = [m.decode() for m in out[names.overdue]]
    keys = [(a["referral_id"], a["deadline_kind"]) for a in alerts]
    assert len(keys) == len(set(keys))
    want = set()
    for rid, r in routed.items():
        exp = model.reaction(r, plans.get(rid, []))
        if exp["acked_at"] is None or exp["acked_at"] > r["ack_deadline"]:
            want.add((rid, "ACK"))
        if exp["decided_at"] is None or exp["decided_at"] > r["decision_deadline"]:
            want.add((rid, "DECISION"))
    assert set(keys) == want
    for a in alerts:
        assert 0 < a["detected_at"] - a["deadline"] <= 30_000
    # rejections: each hostile decision with its code
    codes = sorted(m.decode()["error_code"] for m in out[names.rejected])
    assert codes == ["IDENTITY_MISMATCH", "NOT_YOUR_REFERRAL", "UNKNOWN_REFERRAL"]
    # windows: the last emission of each window equals the model (exact counts, percentiles within 1 %)
    reactions_all = [{**latest[rid], "operator_id": op_of[rid]} for rid in latest]
    want_w = model.windows(reactions_all, SIZE, STEP)
    got_w: dict[tuple[str, str, int], dict[str, Any]] = {}
    for m in out[names.windows]:
        w = m.decode()
        key = (w["operator_id"], w["priority"], w["window_start"])
        if key not in got_w or w["updated_at"] >= got_w[key]["updated_at"]:
            got_w[key] = w
    assert set(got_w) == set(want_w)
    for key, exp in want_w.items():
        got = got_w[key]
        for field in ("decided", "on_time", "breached", "acked", "max_ms"):
            assert got[field] == exp[field], (key, field)
        for field in ("p50_ms", "p90_ms", "p99_ms", "ack_p90_ms"):
            assert abs(got[field] - exp[field]) <= 0.01 * exp[field] + 1, (key, field, got[field], exp[field])

    # ClickHouse: the sink starts while ClickHouse is down for 30 s, then every row arrives once
    db = isolated_settings.clickhouse_database
    sink, stop = ClickHouseSink(isolated_settings, names), threading.Event()
    thread = threading.Thread(target=sink.run, args=(stop,), daemon=True)
    restart_clickhouse(stack, 30.0, thread.start)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        n = ch_client.execute(f"SELECT (SELECT count() FROM {db}.reactions FINAL), "
                              f"(SELECT count() FROM {db}.reaction_windows FINAL), "
                              f"(SELECT count() FROM {db}.overdue FINAL)")[0] if _exists(ch_client, db) else (0, 0, 0)
        if n == (len(latest), len(got_w), len(want)):
            break
        time.sleep(1)
    time.sleep(2)  # anything extra would show now
    stop.set()
    thread.join(30)
    cols = list(next(iter(expected.values())))
    rows = ch_client.execute(f"SELECT referral_id, {', '.join(cols)} FROM {db}.reactions FINAL")
    assert len(rows) == len(expected)
    for row in rows:
        got = dict(zip(cols, row[1:], strict=True))
        exp = {k: (int(v) if isinstance(v, bool) else v) for k, v in expected[row[0]].items()}
        assert got == exp, row[0]
    assert set(ch_client.execute(f"SELECT referral_id, deadline_kind FROM {db}.overdue FINAL")) == want
    fields = ["decided", "on_time", "breached", "p50_ms", "p90_ms", "p99_ms", "max_ms", "acked", "ack_p90_ms"]
    stored = {(r[0], r[1], r[2]): dict(zip(fields, r[3:], strict=True)) for r in ch_client.execute(
        f"SELECT operator_id, priority, window_start, {', '.join(fields)} FROM {db}.reaction_windows FINAL")}
    assert stored == {k: {f: got_w[k][f] for f in fields} for k in got_w}
    # the catalogue's batch recomputation from the reactions table agrees with the stream
    in_db = Client(host=stack.clickhouse_host, port=stack.clickhouse_tcp_port, database=db)
    names_r, rows_r = queries.run(in_db, queries.catalogue()["windows_recomputed"], {"size_ms": SIZE, "step_ms": STEP})
    recomputed = {(r["operator_id"], r["priority"], r["window_start"]): r
                  for r in (dict(zip(names_r, row, strict=True)) for row in rows_r)}
    assert set(recomputed) == set(stored)
    for key, w in stored.items():
        for field in ("decided", "on_time", "breached", "acked", "max_ms"):
            assert recomputed[key][field] == w[field], (key, field)
        for field in ("p50_ms", "p90_ms", "p99_ms", "ack_p90_ms"):
            assert abs(recomputed[key][field] - w[field]) <= 0.01 * recomputed[key][field] + 1, (key, field)


def _exists(client: Client, db: str) -> bool:
    return bool(client.execute("SELECT count() FROM system.tables WHERE database = %(db)s AND name = 'overdue'",
                               {"db": db})[0][0])
