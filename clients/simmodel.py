"""How simulated operators react, when their decisions fall due, and the time-compressed policy (pure).

Reaction times are log-normal (a median and a spread per operator and priority), in simulated
time; `speed` compresses them into wall time: a decision is due at routed_at + delay / speed.
Two operators are "late": their medians exceed the deadlines, so they breach them often.
"""

from __future__ import annotations

import heapq
import itertools
import math
import random
from dataclasses import dataclass, field
from typing import Any

from streams.policy import parse_duration

MIN = 60.0
HOUR = 3600.0
DAY = 86_400.0
REFUSALS = ("Not illegal under the applicable law after review", "Insufficient substantiation of the illegality",
            "Journalistic or documentary context", "Content not found at this URL for this account")


@dataclass(frozen=True)
class OperatorProfile:
    """Median reaction (simulated s) per priority, log-normal sigma, and how decisions split."""

    medians: dict[str, float]
    sigma: float = 0.6
    refuse: float = 0.05
    unavailable: float = 0.03
    disable: float = 0.15
    ack_first: float = 0.5
    late: bool = False


OPERATORS: dict[str, OperatorProfile] = {
    "google": OperatorProfile({"CRITICAL": 25 * MIN, "HIGH": 5 * HOUR, "STANDARD": 30 * HOUR}, 0.6, 0.04, ack_first=0.6),
    "meta": OperatorProfile({"CRITICAL": 35 * MIN, "HIGH": 8 * HOUR, "STANDARD": 2 * DAY}, 0.7, 0.06, ack_first=0.5),
    "microsoft": OperatorProfile({"CRITICAL": 20 * MIN, "HIGH": 3 * HOUR, "STANDARD": 20 * HOUR}, 0.5, 0.03,
                                 ack_first=0.7),
    "twitter": OperatorProfile({"CRITICAL": 95 * MIN, "HIGH": 30 * HOUR, "STANDARD": 6 * DAY}, 0.9, 0.15,
                               ack_first=0.2, late=True),
    "apple": OperatorProfile({"CRITICAL": 70 * MIN, "HIGH": 20 * HOUR, "STANDARD": 8 * DAY}, 0.8, 0.05,
                             ack_first=0.4, late=True),
}
GENERIC_OPERATOR = OperatorProfile({"CRITICAL": 30 * MIN, "HIGH": 6 * HOUR, "STANDARD": 36 * HOUR}, 0.7)


def profile_of(operator_id: str) -> OperatorProfile:
    """The operator's profile, or a generic one for an operator added to the registry later."""
    return OPERATORS.get(operator_id, GENERIC_OPERATOR)


def sample_delay_s(rng: random.Random, profile: OperatorProfile, priority: str) -> float:
    """A reaction time in simulated seconds: log-normal around the profile's median."""
    return rng.lognormvariate(math.log(profile.medians[priority]), profile.sigma)


@dataclass(frozen=True, order=True)
class Planned:
    """One decision to publish at `at_ms` (wall clock)."""

    at_ms: int
    referral_id: str = field(compare=False)
    action: str = field(compare=False)
    reason: str | None = field(compare=False, default=None)


def final_action(rng: random.Random, profile: OperatorProfile) -> tuple[str, str | None]:
    """The final action drawn from the profile's shares (a refusal carries a reason)."""
    draw = rng.random()
    if draw < profile.refuse:
        return "REFUSED", rng.choice(REFUSALS)
    if draw < profile.refuse + profile.unavailable:
        return "ALREADY_UNAVAILABLE", None
    if draw < profile.refuse + profile.unavailable + profile.disable:
        return "DISABLED", "Access disabled in the requesting member state"
    return "REMOVED", None


def plan_reaction(rng: random.Random, profile: OperatorProfile, referral_id: str, priority: str,
                  routed_at_ms: int, speed: float) -> list[Planned]:
    """The decisions of one referral: maybe an acknowledgement first, then the final action."""
    delay_s = sample_delay_s(rng, profile, priority)
    final_at = routed_at_ms + int(delay_s * 1000 / speed)
    action, reason = final_action(rng, profile)
    plan = []
    if rng.random() < profile.ack_first:
        ack_at = routed_at_ms + int(delay_s * rng.uniform(0.05, 0.5) * 1000 / speed)
        plan.append(Planned(ack_at, referral_id, "ACKNOWLEDGED"))
    plan.append(Planned(final_at, referral_id, action, reason))
    return plan


def reaction_rng(seed: int, operator_id: str, referral_id: str) -> random.Random:
    """One generator per (operator, referral): the same referral gets the same reaction whatever the order."""
    return random.Random(f"{seed}:{operator_id}:{referral_id}")


class Schedule:
    """Decisions waiting for their time, earliest first."""

    def __init__(self) -> None:
        self._heap: list[tuple[int, int, str, Planned]] = []
        self._seq = itertools.count()

    def add(self, operator_id: str, planned: Planned) -> None:
        """Schedule one decision of an operator."""
        heapq.heappush(self._heap, (planned.at_ms, next(self._seq), operator_id, planned))

    def due(self, now_ms: int) -> list[tuple[str, Planned]]:
        """Every (operator, decision) due at `now_ms`, in time order, removed from the schedule."""
        out = []
        while self._heap and self._heap[0][0] <= now_ms:
            _, _, operator_id, planned = heapq.heappop(self._heap)
            out.append((operator_id, planned))
        return out

    def __len__(self) -> int:
        return len(self._heap)


# policy keys that are durations of the domain (scaled), and tolerances or intervals of the machinery
# (scaled, but never below a floor: a decision may overtake its referral by the pipeline's lag, whatever the speed)
SCALED = {("dedup", "horizon"), ("windows", "grace")}
FLOORED = {("windows", "emit_interval"): 250, ("overdue", "check_interval"): 250, ("decisions", "unknown_grace"): 30_000}


def _ms(value: Any) -> str:
    return f"{max(1, round(value))}ms"


NOT_DURATIONS = {"urgent"}  # per-priority keys that are not durations


def scale_policy(doc: dict[str, Any], speed: float) -> dict[str, Any]:
    """A copy of a policy document with every duration divided by `speed` (window size stays a multiple of step)."""
    out: dict[str, Any] = {k: dict(v) if isinstance(v, dict) else v for k, v in doc.items()}
    out["priorities"] = {p: {k: v if k in NOT_DURATIONS else _ms(parse_duration(v) / speed) for k, v in d.items()}
                         for p, d in doc["priorities"].items()}
    for section, key in SCALED:
        if key in doc.get(section, {}):
            out[section][key] = _ms(parse_duration(doc[section][key]) / speed)
    for (section, key), floor in FLOORED.items():
        if key in doc.get(section, {}):
            original = parse_duration(doc[section][key])
            out[section][key] = _ms(min(original, max(floor, original / speed)))
    win = doc["windows"]
    size, step = parse_duration(win["size"]), parse_duration(win["step"])
    new_step = max(1, round(step / speed))
    out["windows"]["step"], out["windows"]["size"] = _ms(new_step), _ms(new_step * max(1, size // step))
    return out
