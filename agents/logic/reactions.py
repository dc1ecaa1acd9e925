"""One referral's reaction (ack, decision, their delays) and how operator events change it.

Rules (contract, "Reaction"):

* The clock starts at ``routed_at``. Durations are ``acted_at - routed_at``, clamped to 0
  when an operator's clock is behind ours (``acted_at < routed_at``): a negative reaction time
  means nothing and would poison percentiles. ``acked_at``/``decided_at`` keep the operator's
  ``acted_at`` untouched, and the on-time flags compare that raw time with the deadline
  (``acked_at <= ack_deadline``: the deadline instant itself is on time).
* The first ACKNOWLEDGED or final action (in the order the decisions topic delivers them,
  which is per referral since it is keyed by referral_id) is the acknowledgement.
* The first final action (anything but ACKNOWLEDGED) is the decision; it also acknowledges
  when nothing acknowledged before.
* Once decided, nothing changes any more: later decisions and replays return ``None``.

Escalation (``apply_reissue``): see its docstring.
"""

from __future__ import annotations

from streams.errors import InvalidFieldError, RejectedError
from streams.policy import RANK
from streams.records import OperatorDecision, Reaction, RoutedReferral

ACKNOWLEDGED = "ACKNOWLEDGED"
final_actions: frozenset[str] = frozenset({"REMOVED", "DISABLED", "REFUSED", "ALREADY_UNAVAILABLE"})
FINAL_ACTIONS = final_actions
ACTIONS: frozenset[str] = final_actions | {ACKNOWLEDGED}


def is_final(action: str) -> bool:
    """A final action settles the referral (every action but ACKNOWLEDGED)."""
    return action in final_actions


def elapsed(at_ms: int, routed_at: int) -> int:
    """Reaction time from routing, clamped at 0 so skewed operator clocks never go negative."""
    return at_ms - routed_at if at_ms > routed_at else 0


def new_reaction(routed: RoutedReferral, now_ms: int) -> Reaction:
    """The reaction of a freshly routed referral: its clock runs, nothing acked or decided."""
    operator_id = routed["operator_id"]
    if operator_id is None:
        raise ValueError(f"{routed['referral_id']} has no operator: an unroutable referral has no reaction")
    return {
        "referral_id": routed["referral_id"],
        "operator_id": operator_id,
        "reporter_id": routed["reporter_id"],
        "priority": routed["priority"],
        "category": routed["category"],
        "reported_at": routed["reported_at"],
        "routed_at": routed["routed_at"],
        "acked_at": None,
        "decided_at": None,
        "action": None,
        "time_to_ack_ms": None,
        "time_to_decision_ms": None,
        "ack_on_time": None,
        "decision_on_time": None,
        "ack_deadline": routed["ack_deadline"],
        "decision_deadline": routed["decision_deadline"],
        "updated_at": now_ms,
    }


def _check(reaction: Reaction, decision: OperatorDecision) -> str:
    """Refuse a decision that is not about this reaction or carries no known action."""
    if decision["referral_id"] != reaction["referral_id"]:
        raise ValueError(f"decision for {decision['referral_id']} applied to {reaction['referral_id']}")
    if decision["operator_id"] != reaction["operator_id"]:
        raise RejectedError(
            f"{decision['operator_id']} decided on a referral routed to {reaction['operator_id']}",
            code="NOT_YOUR_REFERRAL",
        )
    action = decision["action"]
    if action not in ACTIONS:
        raise InvalidFieldError(f"unknown action {action!r}")
    return action


def apply_decision(reaction: Reaction, decision: OperatorDecision, now_ms: int) -> Reaction | None:
    """The reaction after this operator event, or None when the event changes nothing."""
    action = _check(reaction, decision)
    final = action in final_actions
    if reaction["decided_at"] is not None or (not final and reaction["acked_at"] is not None):
        return None
    at = decision["acted_at"]
    out = reaction.copy()
    if out["acked_at"] is None:
        out["acked_at"] = at
        out["time_to_ack_ms"] = elapsed(at, out["routed_at"])
        out["ack_on_time"] = at <= out["ack_deadline"]
    if final:
        out["decided_at"] = at
        out["action"] = action
        out["time_to_decision_ms"] = elapsed(at, out["routed_at"])
        out["decision_on_time"] = at <= out["decision_deadline"]
    out["updated_at"] = now_ms
    return out


def apply_reissue(reaction: Reaction, routed: RoutedReferral, now_ms: int | None = None) -> Reaction:
    """The reaction after an escalation; returns ``reaction`` itself (``is``) when nothing changes.

    Rule: the clock keeps the ORIGINAL ``routed_at`` (the operator has held the item since then,
    so reaction times stay comparable and monotonic); the priority becomes the re-issue's and each
    deadline becomes ``min(current, re-issue's)``, the re-issue's being computed by the router
    from its own ``routed_at``: the operator cannot be late on a lane before reaching it, and an
    escalation never grants more time. What is settled stays settled: once acknowledged, the ack
    fields and ``ack_deadline`` are frozen; once decided, the whole reaction is. A re-issue that
    is not more urgent (e.g. a replay) changes nothing.
    """
    if routed["referral_id"] != reaction["referral_id"]:
        raise ValueError(f"re-issue of {routed['referral_id']} applied to {reaction['referral_id']}")
    if reaction["decided_at"] is not None or RANK[routed["priority"]] >= RANK[reaction["priority"]]:
        return reaction
    out = reaction.copy()
    out["priority"] = routed["priority"]
    out["decision_deadline"] = min(reaction["decision_deadline"], routed["decision_deadline"])
    if out["acked_at"] is None:
        out["ack_deadline"] = min(reaction["ack_deadline"], routed["ack_deadline"])
    out["updated_at"] = routed["routed_at"] if now_ms is None else now_ms
    return out


def owed_alerts(reaction: Reaction, alerted: list[str]) -> list[tuple[str, int]]:
    """(kind, deadline) of each overdue alert still owed or possibly owed: its act has not come
    yet or came late, and no alert was sent (`alerted`). What the deadline index holds."""
    out = []
    for kind, done, deadline in (("ACK", reaction["acked_at"], reaction["ack_deadline"]),
                                 ("DECISION", reaction["decided_at"], reaction["decision_deadline"])):
        if kind not in alerted and (done is None or done > deadline):
            out.append((kind, deadline))
    return out


def settled(reaction: Reaction, alerted: list[str], now_ms: int, retention_ms: int) -> bool:
    """Whether a referral's reaction state may be forgotten: decided, no alert owed, and unchanged
    for `retention_ms` (the dedup horizon). Nothing changes a decided reaction any more; a decision
    about it arriving after that is held, then dead-lettered as UNKNOWN_REFERRAL. An undecided
    referral is kept whatever its age: it is still open, and still late."""
    return (reaction["decided_at"] is not None and not owed_alerts(reaction, alerted)
            and now_ms - reaction["updated_at"] > retention_ms)


# How far the referrals.accepted records handled must have moved past the moment a decision was
# held before "no routing event will come" holds: record timestamps of routing transactions of
# several partitions are appended slightly out of order (linger, commit interval, clock skew).
ORDER_MARGIN_MS = 10_000


def held_may_expire(held_at: int, now: int, accepted_seen_until: int, accepted_quiet_since: int,
                    grace_ms: int, margin_ms: int = ORDER_MARGIN_MS) -> bool:
    """Whether a decision held since `held_at` for an unknown referral may be rejected now.

    An operator decides a referral only after reading its lane record, and the referral's
    referrals.accepted record is committed in the same transaction as that lane record: when the
    decision is held, the routing record, if there is one, is already in referrals.accepted, in
    the same partition. It may just not have been handled yet: the reactions agent can lag minutes
    behind routing under a burst (a 100,000-referral run on a slow machine, tests/integration/
    test_crash.py), and a wall-clock grace alone then rejected decisions about referrals that were
    routed. So besides `grace_ms` of waiting, the partition's accepted records must have been read
    past the hold (a record stamped `margin_ms` after it: `accepted_seen_until` is the newest
    record timestamp handled), or have been quiet for a whole grace (nothing left to read)."""
    if now - held_at < grace_ms:
        return False
    margin = min(margin_ms, grace_ms)
    return accepted_seen_until >= held_at + margin or now - accepted_quiet_since >= grace_ms
