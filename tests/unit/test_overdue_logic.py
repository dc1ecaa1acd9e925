"""Deadline index (due once, removal, moves, rebuild) and overdue alerts."""

from __future__ import annotations

import random
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agents.logic.overdue import (
    KIND_ACK,
    KIND_DECISION,
    DeadlineIndex,
    alerted_kinds,
    overdue_alert,
    pending_deadlines,
)
from streams.records import Reaction

pytestmark = pytest.mark.unit

T = 1_700_000_000_000
ACK_DL, DEC_DL = T + 900_000, T + 3_600_000


def reaction(acked_at: int | None = None, decided_at: int | None = None, referral_id: str = "r-1") -> Reaction:
    """A CRITICAL reaction routed at T."""
    rec: dict[str, Any] = {
        "referral_id": referral_id, "operator_id": "google", "reporter_id": "pharos", "priority": "CRITICAL",
        "category": "THREAT", "reported_at": T, "routed_at": T, "acked_at": acked_at, "decided_at": decided_at,
        "action": None, "time_to_ack_ms": None, "time_to_decision_ms": None, "ack_on_time": None,
        "decision_on_time": None, "ack_deadline": ACK_DL, "decision_deadline": DEC_DL, "updated_at": T,
    }
    return rec  # type: ignore[return-value]


def test_due_pops_only_passed_deadlines_once() -> None:
    idx = DeadlineIndex(bucket_ms=1000)
    idx.add("a", KIND_ACK, 10_500)
    idx.add("b", KIND_ACK, 10_900)
    idx.add("c", KIND_DECISION, 12_000)
    assert idx.due(10_500) == []  # at the deadline instant it is not missed yet
    assert idx.due(10_501) == [("a", KIND_ACK, 10_500)]
    assert idx.due(10_501) == []
    assert idx.due(20_000) == [("b", KIND_ACK, 10_900), ("c", KIND_DECISION, 12_000)]
    assert idx.due(10**9) == [] and len(idx) == 0


def test_remove_before_due() -> None:
    idx = DeadlineIndex()
    idx.add("a", KIND_ACK, 5000)
    idx.add("a", KIND_DECISION, 9000)
    assert idx.remove("a", KIND_ACK) is True
    assert idx.remove("a", KIND_ACK) is False
    assert idx.due(100_000) == [("a", KIND_DECISION, 9000)]


def test_add_moves_a_deadline() -> None:
    idx = DeadlineIndex(bucket_ms=1000)
    idx.add("a", KIND_DECISION, 50_000)
    idx.add("a", KIND_DECISION, 5_000)  # escalation: earlier
    assert idx.deadline_of("a", KIND_DECISION) == 5_000 and len(idx) == 1
    assert idx.due(6_000) == [("a", KIND_DECISION, 5_000)]
    assert idx.due(60_000) == []


def test_bucket_emptied_and_refilled() -> None:
    idx = DeadlineIndex(bucket_ms=1000)
    idx.add("a", KIND_ACK, 1500)
    idx.remove("a", KIND_ACK)
    idx.add("b", KIND_ACK, 1600)
    assert idx.due(1601) == [("b", KIND_ACK, 1600)]
    assert idx.due(5000) == [] and len(idx._heap) == 0


def test_from_items_and_contains() -> None:
    idx = DeadlineIndex.from_items([("a", KIND_ACK, 10), ("b", KIND_DECISION, 20)], bucket_ms=7)
    assert ("a", KIND_ACK) in idx and ("a", KIND_DECISION) not in idx
    assert idx.due(15) == [("a", KIND_ACK, 10)]


def test_bad_bucket() -> None:
    with pytest.raises(ValueError):
        DeadlineIndex(0)


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 30), st.sampled_from([KIND_ACK, KIND_DECISION]),
                          st.integers(0, 10_000), st.booleans()), max_size=80),
       st.lists(st.integers(0, 12_000), max_size=10), st.integers(1, 3000))
def test_index_matches_a_brute_force_model(ops: list[tuple[int, str, int, bool]], ticks: list[int],
                                           bucket_ms: int) -> None:
    idx = DeadlineIndex(bucket_ms)
    model: dict[tuple[str, str], int] = {}
    for rid, kind, deadline, remove in ops:
        if remove:
            assert idx.remove(str(rid), kind) == ((str(rid), kind) in model)
            model.pop((str(rid), kind), None)
        else:
            idx.add(str(rid), kind, deadline)
            model[(str(rid), kind)] = deadline
    for now in sorted(ticks):
        want = sorted((r, k, d) for (r, k), d in model.items() if d < now)
        assert sorted(idx.due(now)) == want
        for r, k, _ in want:
            del model[(r, k)]
    assert len(idx) == len(model)


def test_due_does_not_scan_future_buckets() -> None:
    idx = DeadlineIndex(bucket_ms=1000)
    rng = random.Random(1)
    for i in range(50_000):
        idx.add(f"r{i}", KIND_DECISION, T + rng.randint(0, 7 * 86_400_000))
    idx.add("due", KIND_ACK, T - 1)
    idx._deadline = _Counting(idx._deadline)  # type: ignore[assignment]
    assert idx.due(T) == [("due", KIND_ACK, T - 1)]
    assert idx._deadline.reads <= 2  # type: ignore[attr-defined]


class _Counting(dict[tuple[str, str], int]):
    """A dict that counts item reads."""

    reads = 0

    def __getitem__(self, key: tuple[str, str]) -> int:
        self.reads += 1
        return super().__getitem__(key)


@pytest.mark.parametrize(
    ("r", "pending"),
    [
        (reaction(), [(KIND_ACK, ACK_DL), (KIND_DECISION, DEC_DL)]),
        (reaction(acked_at=T + 1), [(KIND_DECISION, DEC_DL)]),
        (reaction(acked_at=T + 1, decided_at=T + 2), []),
    ],
)
def test_pending_deadlines(r: Reaction, pending: list[tuple[str, int]]) -> None:
    assert pending_deadlines(r) == pending


def test_track_follows_the_reaction_and_skips_alerted() -> None:
    idx = DeadlineIndex()
    idx.track(reaction())
    assert len(idx) == 2
    idx.track(reaction(acked_at=T + 5))
    assert ("r-1", KIND_ACK) not in idx and ("r-1", KIND_DECISION) in idx
    idx.track(reaction(acked_at=T + 5), alerted={KIND_DECISION})
    assert len(idx) == 0
    idx.track(reaction(), alerted={KIND_ACK})
    assert ("r-1", KIND_ACK) not in idx
    idx.track(reaction(acked_at=T + 5, decided_at=T + 6))
    assert len(idx) == 0


@pytest.mark.parametrize(
    ("r", "kind", "now", "alert"),
    [
        (reaction(), KIND_ACK, ACK_DL, False),  # not passed yet
        (reaction(), KIND_ACK, ACK_DL + 1, True),
        (reaction(acked_at=ACK_DL), KIND_ACK, ACK_DL + 1, False),  # met on the deadline
        (reaction(acked_at=ACK_DL + 1), KIND_ACK, ACK_DL + 5, True),  # met late: still missed
        (reaction(acked_at=T + 1), KIND_DECISION, DEC_DL + 1, True),
        (reaction(acked_at=T + 1, decided_at=DEC_DL), KIND_DECISION, DEC_DL + 1, False),
        (reaction(acked_at=T + 1, decided_at=T + 2), KIND_DECISION, DEC_DL + 99, False),
    ],
)
def test_overdue_alert(r: Reaction, kind: str, now: int, alert: bool) -> None:
    out = overdue_alert(r, kind, now)
    assert (out is not None) is alert
    if out is not None:
        deadline = ACK_DL if kind == KIND_ACK else DEC_DL
        assert out == {"referral_id": "r-1", "operator_id": "google", "priority": "CRITICAL",
                       "deadline_kind": kind, "deadline": deadline, "detected_at": now}


def test_overdue_alert_unknown_kind() -> None:
    with pytest.raises(ValueError):
        overdue_alert(reaction(), "REVIEW", T)


@pytest.mark.parametrize(("mask", "kinds"), [(0, set()), (1, {KIND_ACK}), (2, {KIND_DECISION}),
                                             (3, {KIND_ACK, KIND_DECISION})])
def test_alerted_kinds(mask: int, kinds: set[str]) -> None:
    assert alerted_kinds(mask) == kinds
