"""An independent model of reactions, windows and overdue alerts, for checking the stream."""

from __future__ import annotations

import math
from collections import defaultdict
from typing import Any

FINAL = {"REMOVED", "DISABLED", "REFUSED", "ALREADY_UNAVAILABLE"}


def reaction(routed: dict[str, Any], decisions: list[tuple[str, int]]) -> dict[str, Any]:
    """First ack-or-final acknowledges, first final decides; times from routed_at, clamped at 0."""
    acked = decided = action = None
    for act, at in decisions:
        if decided is not None:
            break
        if acked is None:
            acked = at
        if act in FINAL:
            decided, action = at, act
    t0 = routed["routed_at"]
    return {"acked_at": acked, "decided_at": decided, "action": action,
            "time_to_ack_ms": None if acked is None else max(0, acked - t0),
            "time_to_decision_ms": None if decided is None else max(0, decided - t0),
            "ack_on_time": None if acked is None else acked <= routed["ack_deadline"],
            "decision_on_time": None if decided is None else decided <= routed["decision_deadline"]}


def nearest_rank(values: list[int], q: float) -> int:
    ordered = sorted(values)
    return ordered[max(1, math.ceil(q * len(ordered) - 1e-9)) - 1]


def windows(reactions: list[dict[str, Any]], size: int, step: int) -> dict[tuple[str, str, int], dict[str, Any]]:
    """Hopping windows over the act times: decisions by decided_at, acks by acked_at."""
    dec: dict[tuple[str, str, int], list[tuple[int, bool]]] = defaultdict(list)
    ack: dict[tuple[str, str, int], list[int]] = defaultdict(list)
    for r in reactions:
        for at, bucket, value in ((r["decided_at"], dec, (r["time_to_decision_ms"], r["decision_on_time"])),
                                  (r["acked_at"], ack, r["time_to_ack_ms"])):
            if at is None:
                continue
            first = (at - size) // step * step + step
            for start in range(first, at + 1, step):
                if start <= at < start + size:
                    bucket[(r["operator_id"], r["priority"], start)].append(value)  # type: ignore[attr-defined]
    out = {}
    for key in set(dec) | set(ack):
        times = [t for t, _ in dec.get(key, [])]
        on_time = sum(1 for _, ok in dec.get(key, []) if ok)
        acks = ack.get(key, [])
        out[key] = {"decided": len(times), "on_time": on_time, "breached": len(times) - on_time,
                    "p50_ms": nearest_rank(times, 0.5) if times else 0,
                    "p90_ms": nearest_rank(times, 0.9) if times else 0,
                    "p99_ms": nearest_rank(times, 0.99) if times else 0,
                    "max_ms": max(times) if times else 0, "acked": len(acks),
                    "ack_p90_ms": nearest_rank(acks, 0.9) if acks else 0}
    return out
