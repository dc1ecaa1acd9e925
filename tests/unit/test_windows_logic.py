"""Hopping windows: alignment, what counts, rate-limited emission, closing and late events."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agents.logic.windows import (
    KIND_ACK,
    KIND_DECISION,
    MASK_ACK,
    MASK_DECISION,
    WindowBook,
    WindowEvent,
    WindowState,
    events_of,
    may_emit,
    to_record,
    window_id,
    windows_for,
)
from streams.records import Reaction

pytestmark = pytest.mark.unit

S, M, H = 1000, 60_000, 3_600_000
SIZE, STEP, GRACE, EMIT = H, 5 * M, 5 * M, S
T0 = 1_700_000_000_000 - 1_700_000_000_000 % H  # an hour boundary


@pytest.mark.parametrize(
    ("ts", "size", "step", "starts"),
    [
        (0, H, 5 * M, list(range(-55 * M, 1, 5 * M))),
        (5 * M - 1, H, 5 * M, list(range(-55 * M, 1, 5 * M))),
        (5 * M, H, 5 * M, list(range(-50 * M, 5 * M + 1, 5 * M))),
        (T0 + 7 * M, H, 5 * M, list(range(T0 - 50 * M, T0 + 5 * M + 1, 5 * M))),
        (-1, H, 5 * M, list(range(-H, -5 * M + 1, 5 * M))),
        (10, 10, 10, [10]),  # tumbling: a window is [start, start + size)
        (9, 10, 10, [0]),
        (12, 10, 5, [5, 10]),
        (10, 10, 5, [5, 10]),
        (7, 5, 10, []),  # size < step: the gap belongs to no window
        (3, 5, 10, [0]),
    ],
)
def test_windows_for(ts: int, size: int, step: int, starts: list[int]) -> None:
    assert windows_for(ts, size, step) == starts


@given(st.integers(min_value=-(10**13), max_value=10**13), st.integers(min_value=1, max_value=50),
       st.integers(min_value=1, max_value=50))
def test_windows_for_property(ts: int, size: int, step: int) -> None:
    starts = windows_for(ts, size, step)
    brute = [s for s in range(ts - size - step, ts + step) if s % step == 0 and s <= ts < s + size]
    assert starts == brute


@pytest.mark.parametrize(("size", "step"), [(0, 5), (5, 0), (-5, 5)])
def test_windows_for_refuses_bad_sizes(size: int, step: int) -> None:
    with pytest.raises(ValueError):
        windows_for(0, size, step)


def test_window_id_is_unique_per_window() -> None:
    ids = {window_id(op, p, s, SIZE) for op in ("google", "meta") for p in ("HIGH", "CRITICAL") for s in (0, STEP)}
    assert len(ids) == 8
    assert window_id("google", "HIGH", 300_000, H) == "google/HIGH/3600000/300000"


@pytest.mark.parametrize(("last", "now", "ok"), [(None, 0, True), (1000, 1999, False), (1000, 2000, True)])
def test_may_emit(last: int | None, now: int, ok: bool) -> None:
    assert may_emit(last, now, 1000) is ok


def reaction(acked_at: int | None = None, decided_at: int | None = None, on_time: bool = True,
             routed_at: int = T0, referral_id: str = "r-1", priority: str = "HIGH", operator_id: str = "google",
             ack_on_time: bool = True) -> Reaction:
    """A reaction in the given state (times from routed_at)."""
    rec: dict[str, Any] = {
        "referral_id": referral_id, "operator_id": operator_id, "reporter_id": "pharos", "priority": priority,
        "category": "THREAT", "reported_at": routed_at, "routed_at": routed_at, "acked_at": acked_at,
        "decided_at": decided_at, "action": "REMOVED" if decided_at is not None else None,
        "time_to_ack_ms": None if acked_at is None else acked_at - routed_at,
        "time_to_decision_ms": None if decided_at is None else decided_at - routed_at,
        "ack_on_time": None if acked_at is None else ack_on_time,
        "decision_on_time": None if decided_at is None else on_time,
        "ack_deadline": routed_at + H, "decision_deadline": routed_at + 24 * H, "updated_at": routed_at,
    }
    return rec  # type: ignore[return-value]


def event(at: int, kind: str = KIND_DECISION, elapsed: int = 1000, on_time: bool = True, rid: str = "r-1",
          priority: str = "HIGH", operator_id: str = "google") -> WindowEvent:
    """A window event."""
    return WindowEvent(rid, operator_id, priority, kind, at, elapsed, on_time)


@pytest.mark.parametrize(
    ("r", "counted", "kinds", "mask"),
    [
        (reaction(), 0, [], 0),
        (reaction(acked_at=T0 + 5), 0, [KIND_ACK], MASK_ACK),
        (reaction(acked_at=T0 + 5), MASK_ACK, [], MASK_ACK),
        (reaction(acked_at=T0 + 5, decided_at=T0 + 9), MASK_ACK, [KIND_DECISION], MASK_ACK | MASK_DECISION),
        (reaction(acked_at=T0 + 9, decided_at=T0 + 9), 0, [KIND_ACK, KIND_DECISION], MASK_ACK | MASK_DECISION),
        (reaction(acked_at=T0 + 9, decided_at=T0 + 9), MASK_ACK | MASK_DECISION, [], MASK_ACK | MASK_DECISION),
    ],
    ids=["nothing yet", "ack", "ack replayed", "decision after ack", "final at once", "replayed decision"],
)
def test_events_of(r: Reaction, counted: int, kinds: list[str], mask: int) -> None:
    events, new_mask = events_of(r, counted)
    assert [e.kind for e in events] == kinds
    assert new_mask == mask


def test_events_carry_times_and_flags() -> None:
    events, _ = events_of(reaction(acked_at=T0 + 5, decided_at=T0 + 90, on_time=False))
    ack, dec = events
    assert (ack.at, ack.elapsed_ms, ack.on_time) == (T0 + 5, 5, True)
    assert (dec.at, dec.elapsed_ms, dec.on_time) == (T0 + 90, 90, False)
    assert (dec.referral_id, dec.operator_id, dec.priority) == ("r-1", "google", "HIGH")


def filled_state() -> WindowState:
    """Decisions 1..100 s (10 breached) and acks 1..10 s."""
    state = WindowState()
    for i in range(1, 101):
        state.add_event(event(T0, elapsed=i * S, on_time=i <= 90))
    for i in range(1, 11):
        state.add_event(event(T0, kind=KIND_ACK, elapsed=i * S))
    return state


def test_state_and_record() -> None:
    rec = to_record("google", "HIGH", T0, SIZE, filled_state(), T0 + 7, False)
    assert rec == {
        "operator_id": "google", "priority": "HIGH", "window_start": T0, "window_end": T0 + SIZE,
        "decided": 100, "on_time": 90, "breached": 10, "p50_ms": 50 * S, "p90_ms": 90 * S, "p99_ms": 99 * S,
        "max_ms": 100 * S, "mean_ms": 50.5 * S, "acked": 10, "ack_p90_ms": 9 * S, "updated_at": T0 + 7,
        "closed": False,
    }


def test_record_of_acks_only() -> None:
    state = WindowState()
    state.add_ack(4000)
    rec = to_record("meta", "STANDARD", 0, SIZE, state, 1, True)
    assert (rec["decided"], rec["p50_ms"], rec["p99_ms"], rec["max_ms"], rec["mean_ms"]) == (0, 0, 0, 0, 0.0)
    assert (rec["acked"], rec["ack_p90_ms"], rec["closed"]) == (1, 4000, True)


def test_state_round_trip_and_merge() -> None:
    state = filled_state()
    back = WindowState.from_bytes(state.to_bytes())
    assert to_record("g", "HIGH", 0, SIZE, back, 0, False) == to_record("g", "HIGH", 0, SIZE, state, 0, False)
    back.merge(state)
    rec = to_record("g", "HIGH", 0, SIZE, back, 0, False)
    assert (rec["decided"], rec["on_time"], rec["breached"], rec["acked"], rec["p50_ms"]) == (200, 180, 20, 20, 50 * S)
    assert back.max_ms == 100 * S and back.sum_ms == 2 * sum(i * S for i in range(1, 101))


@pytest.mark.parametrize("data", [b"", b"\x02" + bytes(40), WindowState().to_bytes() + b"x"])
def test_state_from_bad_bytes(data: bytes) -> None:
    with pytest.raises(ValueError):
        WindowState.from_bytes(data)


def book(**kw: Any) -> WindowBook:
    """A book with the default policy's windows."""
    return WindowBook(SIZE, STEP, GRACE, EMIT, **kw)


def test_event_lands_in_all_its_windows_and_is_emitted_once() -> None:
    b = book()
    assert b.add(event(T0 + 7 * M), T0 + 7 * M) == []
    out = b.flush(T0 + 7 * M)
    assert sorted(k[2] for k, _ in out) == windows_for(T0 + 7 * M, SIZE, STEP)
    assert all(r["decided"] == 1 and not r["closed"] for _, r in out) and len(out) == 12
    assert b.flush(T0 + 7 * M + 10 * S) == []


def test_rate_limit_holds_changes_until_interval() -> None:
    b = book()
    now = T0 + 7 * M
    b.add(event(now), now)
    assert len(b.flush(now)) == 12
    b.add(event(now + 1, rid="r-2"), now + 1)
    assert b.flush(now + EMIT - 1) == []
    assert b.pending == 12
    out = b.flush(now + EMIT)
    assert len(out) == 12 and all(r["decided"] == 2 for _, r in out)
    assert b.pending == 0


def test_each_window_rate_limited_separately() -> None:
    b = book()
    b.add(event(T0 + 7 * M, operator_id="google"), T0 + 7 * M)
    b.flush(T0 + 7 * M)
    b.add(event(T0 + 7 * M, operator_id="meta"), T0 + 7 * M + 1)
    out = b.flush(T0 + 7 * M + 2)
    assert len(out) == 12 and {k[0] for k, _ in out} == {"meta"}


def test_closing_with_grace() -> None:
    b = book()
    b.add(event(T0), T0)  # windows [T0 - 55m, T0] .. [T0, T0 + 1h)
    b.flush(T0)
    oldest_end = T0 - 55 * M + SIZE  # = T0 + 5m
    b.add(event(oldest_end + GRACE - 1, operator_id="meta"), T0 + H)
    assert not any(r["closed"] for _, r in b.flush(T0 + H))
    b.add(event(oldest_end + GRACE, operator_id="meta"), T0 + H + 2 * S)
    out = b.flush(T0 + H + 2 * S)
    closed = [(k, r) for k, r in out if r["closed"]]
    assert [k for k, _ in closed] == [("google", "HIGH", T0 - 55 * M)]
    assert closed[0][1]["decided"] == 1
    assert ("google", "HIGH", T0 - 55 * M) not in b.states
    keys = [k for k, _ in out]
    assert len(keys) == len(set(keys))


def test_late_events_ignored_and_returned() -> None:
    b = book()
    b.add(event(T0 + 2 * H), T0 + 2 * H)  # watermark T0 + 2h: windows ending <= T0 + 1h55m closed
    b.flush(T0 + 2 * H)
    late = b.add(event(T0 + H, rid="late"), T0 + 2 * H)  # its windows start T0 + 5m .. T0 + 1h
    assert late == list(range(T0 + 5 * M, T0 + 55 * M + 1, 5 * M))
    assert b.late == 1
    out = b.flush(T0 + 2 * H + EMIT)
    assert [k[2] for k, _ in out] == [T0 + H]  # only the window still open counted it
    assert all(k[2] != T0 + 5 * M for k in b.states)


def test_watermark_never_ahead_of_wall_clock() -> None:
    b = book()
    b.add(event(T0 + 30 * 24 * H), T0)  # an operator clock a month ahead
    assert b.watermark == T0
    assert b.add(event(T0 - M, rid="r-2"), T0) == []


def test_wall_clock_lag_closes_quiet_windows() -> None:
    b = book(wall_clock_lag_ms=M)
    b.add(event(T0), T0)
    b.flush(T0)
    out = b.flush(T0 + H + GRACE + M)  # watermark T0 + 1h + grace: every window ending <= T0 + 1h closes
    assert len(out) == 12 and all(r["closed"] for _, r in out)
    assert b.states == {}


def test_restore_keeps_closed_windows_closed() -> None:
    b = book()
    b.add(event(T0), T0)
    saved = [(k, WindowState.from_bytes(s.to_bytes())) for k, s in b.states.items()]
    again = book()
    again.restore(saved, T0 + 10 * M + GRACE)  # windows ending at T0 + 5m and T0 + 10m are closed
    out = again.flush(T0 + 11 * M)
    assert sorted(k[2] for k, r in out if r["closed"]) == [T0 - 55 * M, T0 - 50 * M]
    assert sum(1 for _, r in out if not r["closed"]) == 10
    assert again.add(event(T0 + 4 * M, rid="late"), T0 + 11 * M) == [T0 - 55 * M, T0 - 50 * M]


def test_dedup_counts_each_referral_once() -> None:
    b = book()
    counted: dict[str, int] = {}
    stream = [
        reaction(acked_at=T0 + M),  # ack
        reaction(acked_at=T0 + M),  # replay of the ack
        reaction(acked_at=T0 + M, decided_at=T0 + 2 * M),  # decision
        reaction(acked_at=T0 + M, decided_at=T0 + 2 * M),  # replay of the decision
        reaction(acked_at=T0 + 3 * M, decided_at=T0 + 3 * M, referral_id="r-2"),  # final at once
    ]
    for r in stream:
        events, counted[r["referral_id"]] = events_of(r, counted.get(r["referral_id"], 0))
        for e in events:
            b.add(e, T0 + 4 * M)
    rec = dict(b.flush(T0 + 4 * M))[("google", "HIGH", T0)]
    assert (rec["decided"], rec["acked"]) == (2, 2)
    assert (rec["p50_ms"], rec["p99_ms"], rec["ack_p90_ms"]) == (2 * M, 3 * M, 3 * M)


def test_escalated_decision_counts_on_its_new_lane() -> None:
    b = book()
    for e in events_of(reaction(acked_at=T0 + M, priority="STANDARD"))[0]:
        b.add(e, T0 + M)
    for e in events_of(reaction(acked_at=T0 + M, decided_at=T0 + 2 * M, priority="CRITICAL"), MASK_ACK)[0]:
        b.add(e, T0 + 2 * M)
    recs = dict(b.flush(T0 + 2 * M))
    assert recs[("google", "STANDARD", T0)]["acked"] == 1 and recs[("google", "STANDARD", T0)]["decided"] == 0
    assert recs[("google", "CRITICAL", T0)]["decided"] == 1 and recs[("google", "CRITICAL", T0)]["acked"] == 0
