"""Reaction state: what the first ack, the first final action and later events do."""

from __future__ import annotations

from typing import Any

import pytest

from agents.logic.reactions import (
    ACKNOWLEDGED,
    apply_decision,
    apply_reissue,
    final_actions,
    is_final,
    new_reaction,
)
from streams.errors import InvalidFieldError, RejectedError
from streams.records import OperatorDecision, Reaction, RoutedReferral

pytestmark = pytest.mark.unit

ROUTED_AT = 1_700_000_000_000
ACK_MS = 15 * 60_000
DECIDE_MS = 3_600_000


def routed(priority: str = "CRITICAL", routed_at: int = ROUTED_AT, ack_ms: int = ACK_MS,
           decide_ms: int = DECIDE_MS, **extra: Any) -> RoutedReferral:
    """A routed referral with the given lane and deadlines."""
    rec: dict[str, Any] = {
        "referral_id": "r-1", "reporter_id": "pharos", "external_ref": None, "instrument": "REMOVAL_ORDER",
        "label": "LABELLED", "emergency": False, "category": "TERRORIST_PROPAGANDA", "url": "https://x.example/a",
        "operator_id": "google", "content_hashes": [], "legal_basis": "LCEN 6-1", "reasons": "r",
        "jurisdiction": "FR", "language": "fr", "reported_at": routed_at - 50, "normalized_url": "https://x.example/a",
        "priority": priority, "label_verified": True, "label_rejected": False, "routed_at": routed_at,
        "ack_deadline": routed_at + ack_ms, "decision_deadline": routed_at + decide_ms, "co_reporters": [],
        "escalated": False, "version": 1,
    }
    rec.update(extra)
    return rec  # type: ignore[return-value]


def decision(action: str, acted_at: int, referral_id: str = "r-1", operator_id: str = "google") -> OperatorDecision:
    """An operator's event."""
    return {"referral_id": referral_id, "operator_id": operator_id, "action": action, "acted_at": acted_at,
            "reason": None, "operator_ref": None}


def run(*events: tuple[str, int]) -> tuple[Reaction, list[bool]]:
    """Apply events in order; returns the final reaction and which events changed it."""
    reaction = new_reaction(routed(), ROUTED_AT)
    changed = []
    for i, (action, at) in enumerate(events):
        out = apply_decision(reaction, decision(action, at), ROUTED_AT + 10_000 + i)
        changed.append(out is not None)
        reaction = out or reaction
    return reaction, changed


def test_new_reaction_copies_identity_and_deadlines() -> None:
    r = new_reaction(routed(), 42)
    identity = (r["referral_id"], r["operator_id"], r["reporter_id"], r["priority"])
    assert identity == ("r-1", "google", "pharos", "CRITICAL")
    assert r["routed_at"] == ROUTED_AT and r["reported_at"] == ROUTED_AT - 50
    assert (r["ack_deadline"], r["decision_deadline"]) == (ROUTED_AT + ACK_MS, ROUTED_AT + DECIDE_MS)
    assert all(r[f] is None for f in ("acked_at", "decided_at", "action", "time_to_ack_ms", "time_to_decision_ms",  # type: ignore[literal-required]
                                      "ack_on_time", "decision_on_time"))
    assert r["updated_at"] == 42


def test_new_reaction_needs_an_operator() -> None:
    with pytest.raises(ValueError):
        new_reaction(routed(operator_id=None), 0)


T = ROUTED_AT
CASES: list[tuple[str, list[tuple[str, int]], list[bool], dict[str, Any]]] = [
    ("ack only", [("ACKNOWLEDGED", T + 1000)], [True],
     {"acked_at": T + 1000, "time_to_ack_ms": 1000, "ack_on_time": True, "decided_at": None, "action": None}),
    ("first ack wins", [("ACKNOWLEDGED", T + 1000), ("ACKNOWLEDGED", T + 500)], [True, False],
     {"acked_at": T + 1000, "time_to_ack_ms": 1000}),
    ("final acknowledges", [("REMOVED", T + 2000)], [True],
     {"acked_at": T + 2000, "time_to_ack_ms": 2000, "ack_on_time": True, "decided_at": T + 2000,
      "action": "REMOVED", "time_to_decision_ms": 2000, "decision_on_time": True}),
    ("ack then final", [("ACKNOWLEDGED", T + 1000), ("DISABLED", T + 5000)], [True, True],
     {"acked_at": T + 1000, "time_to_ack_ms": 1000, "decided_at": T + 5000, "action": "DISABLED",
      "time_to_decision_ms": 5000}),
    ("later decisions ignored", [("REMOVED", T + 10), ("REFUSED", T + 20), ("ACKNOWLEDGED", T + 30)],
     [True, False, False], {"action": "REMOVED", "decided_at": T + 10, "acked_at": T + 10}),
    ("replayed decision ignored", [("REMOVED", T + 10), ("REMOVED", T + 10)], [True, False],
     {"action": "REMOVED"}),
    ("REFUSED is final", [("REFUSED", T + 7)], [True], {"action": "REFUSED", "decided_at": T + 7}),
    ("ALREADY_UNAVAILABLE is final", [("ALREADY_UNAVAILABLE", T + 7)], [True],
     {"action": "ALREADY_UNAVAILABLE", "decided_at": T + 7, "acked_at": T + 7}),
    ("ack on the deadline is on time", [("ACKNOWLEDGED", T + ACK_MS)], [True], {"ack_on_time": True}),
    ("ack 1 ms late", [("ACKNOWLEDGED", T + ACK_MS + 1)], [True], {"ack_on_time": False}),
    ("decision on the deadline is on time", [("ACKNOWLEDGED", T), ("REMOVED", T + DECIDE_MS)], [True, True],
     {"decision_on_time": True, "ack_on_time": True}),
    ("decision 1 ms late", [("REMOVED", T + DECIDE_MS + 1)], [True],
     {"decision_on_time": False, "ack_on_time": False, "time_to_decision_ms": DECIDE_MS + 1}),
    ("late ack, final in time still late ack", [("ACKNOWLEDGED", T + ACK_MS + 1), ("REMOVED", T + ACK_MS + 2)],
     [True, True], {"ack_on_time": False, "decision_on_time": True}),
    ("acted before routing: clamped to 0", [("REMOVED", T - 5000)], [True],
     {"acked_at": T - 5000, "decided_at": T - 5000, "time_to_ack_ms": 0, "time_to_decision_ms": 0,
      "ack_on_time": True, "decision_on_time": True}),
    ("acted at routing", [("ACKNOWLEDGED", T)], [True], {"time_to_ack_ms": 0}),
]


@pytest.mark.parametrize(("events", "changed", "expect"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_apply_decision(events: list[tuple[str, int]], changed: list[bool], expect: dict[str, Any]) -> None:
    reaction, got_changed = run(*events)
    assert got_changed == changed
    assert {k: reaction[k] for k in expect} == expect  # type: ignore[literal-required]


def test_apply_decision_does_not_mutate_and_stamps_update() -> None:
    before = new_reaction(routed(), 1)
    snapshot = dict(before)
    after = apply_decision(before, decision("REMOVED", T + 1), 99)
    assert dict(before) == snapshot
    assert after is not None and after["updated_at"] == 99


@pytest.mark.parametrize(
    ("dec", "error"),
    [
        (decision("REMOVED", T, operator_id="meta"), RejectedError),
        (decision("DELETED", T), InvalidFieldError),
        (decision("REMOVED", T, referral_id="r-2"), ValueError),
    ],
    ids=["other operator", "unknown action", "other referral"],
)
def test_apply_decision_refuses(dec: OperatorDecision, error: type[Exception]) -> None:
    with pytest.raises(error):
        apply_decision(new_reaction(routed(), 0), dec, 0)


def test_not_your_referral_code() -> None:
    with pytest.raises(RejectedError) as info:
        apply_decision(new_reaction(routed(), 0), decision("REMOVED", T, operator_id="meta"), 0)
    assert info.value.code == "NOT_YOUR_REFERRAL"


@pytest.mark.parametrize("action", sorted(final_actions))
def test_final_actions_are_final(action: str) -> None:
    assert is_final(action)


def test_ack_is_not_final() -> None:
    assert not is_final(ACKNOWLEDGED)
    assert final_actions == {"REMOVED", "DISABLED", "REFUSED", "ALREADY_UNAVAILABLE"}


HOUR, DAY = 3_600_000, 86_400_000


def standard() -> Reaction:
    """A STANDARD reaction (ack 24 h, decide 7 d)."""
    return new_reaction(routed("STANDARD", ack_ms=DAY, decide_ms=7 * DAY), T)


def test_reissue_tightens_deadlines_and_keeps_the_clock() -> None:
    t1 = T + 2 * HOUR
    out = apply_reissue(standard(), routed("HIGH", routed_at=t1, ack_ms=HOUR, decide_ms=DAY, escalated=True), t1 + 5)
    assert out["priority"] == "HIGH"
    assert out["routed_at"] == T
    assert (out["ack_deadline"], out["decision_deadline"]) == (t1 + HOUR, t1 + DAY)
    assert out["updated_at"] == t1 + 5
    done = apply_decision(out, decision("REMOVED", t1 + 30 * 60_000), t1)
    assert done is not None
    assert done["time_to_decision_ms"] == 2 * HOUR + 30 * 60_000 and done["decision_on_time"] is True


def test_reissue_never_loosens_a_deadline() -> None:
    t1 = T + DAY - 10 * 60_000  # escalated 10 min before the STANDARD ack deadline
    out = apply_reissue(standard(), routed("HIGH", routed_at=t1, ack_ms=HOUR, decide_ms=DAY))
    assert out["ack_deadline"] == T + DAY
    assert out["decision_deadline"] == t1 + DAY
    assert out["updated_at"] == t1


def test_reissue_after_ack_keeps_ack_fields() -> None:
    acked = apply_decision(standard(), decision("ACKNOWLEDGED", T + 2 * HOUR), T)
    assert acked is not None
    out = apply_reissue(acked, routed("CRITICAL", routed_at=T + 3 * HOUR))
    assert out["ack_deadline"] == T + DAY and out["ack_on_time"] is True and out["acked_at"] == T + 2 * HOUR
    assert out["decision_deadline"] == T + 3 * HOUR + DECIDE_MS and out["priority"] == "CRITICAL"


@pytest.mark.parametrize("priority", ["STANDARD", "HIGH"])
def test_reissue_not_more_urgent_changes_nothing(priority: str) -> None:
    high = new_reaction(routed("HIGH"), T)
    assert apply_reissue(high, routed(priority, routed_at=T + 5)) is high


def test_reissue_after_decision_changes_nothing() -> None:
    done = apply_decision(standard(), decision("REFUSED", T + 5), T)
    assert done is not None
    assert apply_reissue(done, routed("CRITICAL", routed_at=T + 6)) is done


def test_reissue_of_other_referral_refused() -> None:
    with pytest.raises(ValueError):
        apply_reissue(standard(), routed("CRITICAL", referral_id="r-9"))


@pytest.mark.parametrize(("now", "seen_until", "quiet_since", "expire"), [
    (1_030_000, 1_500_000, 1_000_000, False),  # within the grace: never
    (1_070_000, 1_000_000, 1_069_000, False),  # grace over, accepted records still from before the hold
    (1_070_000, 1_009_999, 1_069_000, False),  # ... or within the ordering margin of it
    (1_070_000, 1_010_000, 1_069_000, True),  # read past the hold by the margin
    (1_070_000, 0, 1_010_000, True),  # nothing read at all for a whole grace: nothing left to read
])
def test_held_may_expire(now: int, seen_until: int, quiet_since: int, expire: bool) -> None:
    from agents.logic.reactions import held_may_expire

    assert held_may_expire(1_000_000, now, seen_until, quiet_since, grace_ms=60_000, margin_ms=10_000) is expire
