"""The catalogue's answers recomputed in plain Python from event lists, to test the SQL.

Each function mirrors one query of sinks/queries/ (same rules, same column names) over the
events of sinks.sample (latest version wins, redelivered copies collapse), so a test can run a
query on any ClickHouse and compare. Times stay in ms; dates are ISO strings.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from typing import Any

Event = dict[str, Any]
DAY, WEEK = 86_400_000, 604_800_000


def latest(events: Iterable[Event], key: Callable[[Event], Any], version: str | None) -> list[Event]:
    """One event per key: the highest version, the last inserted on ties (ReplacingMergeTree)."""
    out: dict[Any, Event] = {}
    for e in events:
        k = key(e)
        if k not in out or version is None or e[version] >= out[k][version]:
            out[k] = e
    return list(out.values())


def rank(sorted_values: list[int], q: int) -> int:
    """Nearest-rank percentile q (in %) of a sorted list; 0 when empty."""
    return sorted_values[max(1, -(-len(sorted_values) * q // 100)) - 1] if sorted_values else 0


def day_of(ms: int) -> str:
    return datetime.fromtimestamp(ms // 1000, UTC).date().isoformat()


def monday_of(ms: int) -> str:
    d = datetime.fromtimestamp(ms // 1000, UTC).date()
    return (d - timedelta(days=d.weekday())).isoformat()


def _reactions(ev: dict[str, list[Event]]) -> dict[str, Event]:
    return {r["referral_id"]: r for r in latest(ev["reactions"], lambda e: e["referral_id"], "updated_at")}


def compliance(ev: dict[str, list[Event]], now: int, days: int = 30, by_day: bool = False) -> list[Event]:
    reactions = _reactions(ev)
    groups: dict[tuple[Any, ...], Event] = {}
    for ref in latest(ev["referrals"], lambda e: e["referral_id"], "version"):
        if not ref["routed"]:
            continue
        r = reactions.get(ref["referral_id"])
        src = r or ref
        if src["routed_at"] < now - days * DAY:
            continue
        key = ((day_of(src["routed_at"]),) if by_day else ()) + (ref["operator_id"], src["priority"])
        g = groups.setdefault(key, {"routed": 0, "decided": 0, "on_time": 0, "breached": 0, "pending": 0})
        decided = r is not None and r["decided_at"] is not None
        g["routed"] += 1
        g["decided"] += decided
        g["on_time"] += bool(r and r["decision_on_time"] is True)
        g["breached"] += bool((r and r["decision_on_time"] is False) or (not decided and src["decision_deadline"] < now))
        g["pending"] += bool(not decided and src["decision_deadline"] >= now)
    names = (["day"] if by_day else []) + ["operator_id", "priority"]
    out = []
    for key, g in sorted(groups.items()):
        due = g["on_time"] + g["breached"]
        out.append({**dict(zip(names, key, strict=True)), **g,
                    "compliance": 1.0 if due == 0 else round(g["on_time"] / due, 4)})
    return out


def _decided(ev: dict[str, list[Event]]) -> list[Event]:
    return [r for r in _reactions(ev).values() if r["decided_at"] is not None and r["time_to_decision_ms"] is not None]


def decision_time_weekly(ev: dict[str, list[Event]], now: int, weeks: int = 12) -> list[Event]:
    groups: dict[tuple[str, str, str], list[int]] = defaultdict(list)
    for r in _decided(ev):
        if r["decided_at"] >= now - weeks * WEEK:
            groups[(monday_of(r["decided_at"]), r["operator_id"], r["priority"])].append(r["time_to_decision_ms"])
    out = []
    for (week, op, prio), values in sorted(groups.items()):
        s = sorted(values)
        out.append({"week": week, "operator_id": op, "priority": prio, "decided": len(s), "p50_ms": rank(s, 50),
                    "p90_ms": rank(s, 90), "p99_ms": rank(s, 99), "max_ms": s[-1],
                    "mean_ms": round(sum(s) / len(s), 1)})
    return out


def decision_time_trend(ev: dict[str, list[Event]], bucket_ms: int = DAY, priority: str = "",
                        since_ms: int = 0) -> list[Event]:
    groups: dict[tuple[int, str], list[int]] = defaultdict(list)
    for r in _decided(ev):
        if r["decided_at"] >= since_ms and priority in ("", r["priority"]):
            groups[(r["decided_at"] // bucket_ms * bucket_ms, r["operator_id"])].append(r["time_to_decision_ms"])
    return [{"bucket_start": b, "operator_id": op, "decided": len(v), "p50_ms": rank(sorted(v), 50),
             "p90_ms": rank(sorted(v), 90)} for (b, op), v in sorted(groups.items())]


def windows(ev: dict[str, list[Event]], size_ms: int = 3_600_000, step_ms: int = 300_000,
            since_ms: int = 0) -> list[Event]:
    """windows_recomputed: hopping windows over the latest reactions, exact nearest rank."""
    groups: dict[tuple[str, str, int], dict[str, list[tuple[int, bool]]]] = defaultdict(lambda: defaultdict(list))
    for r in _reactions(ev).values():
        for kind, at, ms, ok in (("d", r["decided_at"], r["time_to_decision_ms"], r["decision_on_time"]),
                                 ("a", r["acked_at"], r["time_to_ack_ms"], r["ack_on_time"])):
            if at is None or ms is None or at < since_ms:
                continue
            start = at - at % step_ms
            while start > at - size_ms:
                groups[(r["operator_id"], r["priority"], start)][kind].append((ms, bool(ok)))
                start -= step_ms
    return [_window(key, g, size_ms) for key, g in sorted(groups.items())]


def _window(key: tuple[str, str, int], g: dict[str, list[tuple[int, bool]]], size: int) -> Event:
    d, a = sorted(ms for ms, _ in g["d"]), sorted(ms for ms, _ in g["a"])
    return {"operator_id": key[0], "priority": key[1], "window_start": key[2], "window_end": key[2] + size,
            "decided": len(d), "on_time": sum(1 for _, ok in g["d"] if ok),
            "breached": sum(1 for _, ok in g["d"] if not ok), "p50_ms": rank(d, 50), "p90_ms": rank(d, 90),
            "p99_ms": rank(d, 99), "max_ms": d[-1] if d else 0, "mean_ms": sum(d) / len(d) if d else 0.0,
            "acked": len(a), "ack_p90_ms": rank(a, 90)}


def live_windows(ev: dict[str, list[Event]], at_ms: int) -> list[Event]:
    """Per operator and priority, the earliest-starting stored window containing at_ms."""
    keep = latest(ev["reaction_windows"], lambda w: (w["operator_id"], w["priority"], w["window_start"]),
                  "updated_at")
    best: dict[tuple[str, str], Event] = {}
    for w in sorted(keep, key=lambda w: w["window_start"], reverse=True):
        if w["window_start"] <= at_ms < w["window_end"]:
            best[(w["operator_id"], w["priority"])] = w
    return [best[k] for k in sorted(best)]


def open_overdue(ev: dict[str, list[Event]]) -> list[Event]:
    reactions = _reactions(ev)
    out = []
    for o in latest(ev["overdue"], lambda e: (e["referral_id"], e["deadline_kind"]), None):
        r = reactions.get(o["referral_id"])
        done = r and (r["acked_at"] if o["deadline_kind"] == "ACK" else r["decided_at"])
        if done is None:
            out.append(o)
    return sorted(out, key=lambda o: (o["deadline"], o["referral_id"], o["deadline_kind"]))


def duplicate_rate(ev: dict[str, list[Event]], now: int, days: int = 30) -> list[Event]:
    counts: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for i, table in enumerate(("referrals", "duplicates")):
        for e in latest(ev[table], lambda e: e["referral_id"], "version" if i == 0 else None):
            if e["reported_at"] >= now - days * DAY:
                counts[e["reporter_id"]][i] += 1
    out = [{"reporter_id": rep, "referrals": k, "duplicates": d, "duplicate_rate": round(d / (k + d), 4)}
           for rep, (k, d) in counts.items()]
    return sorted(out, key=lambda x: (-x["duplicate_rate"], x["reporter_id"]))


def forged_labels(ev: dict[str, list[Event]], now: int, days: int = 30) -> list[Event]:
    groups: dict[str, Event] = {}
    for e in latest(ev["referrals"], lambda e: e["referral_id"], "version"):
        if e["reported_at"] < now - days * DAY:
            continue
        g = groups.setdefault(e["reporter_id"], {"reporter_id": e["reporter_id"], "referrals": 0, "label_claims": 0,
                                                 "removal_orders": 0, "labels_rejected": 0})
        g["referrals"] += 1
        g["label_claims"] += e["label"] == "LABELLED"
        g["removal_orders"] += e["instrument"] == "REMOVAL_ORDER"
        g["labels_rejected"] += bool(e["label_rejected"])
    out = [{**g, "rejected_share": round(g["labels_rejected"] / g["referrals"], 4)} for g in groups.values()]
    return sorted(out, key=lambda x: (-x["labels_rejected"], x["reporter_id"]))


EXPECTED: dict[str, Callable[[dict[str, list[Event]], dict[str, Any]], list[Event]]] = {
    "compliance_daily": lambda ev, p: compliance(ev, p["now_ms"], p["days"], by_day=True),
    "compliance_by_operator": lambda ev, p: compliance(ev, p["now_ms"], p["days"]),
    "decision_time_weekly": lambda ev, p: decision_time_weekly(ev, p["now_ms"], p["weeks"]),
    "decision_time_trend": lambda ev, p: decision_time_trend(ev, p["bucket_ms"], p["priority"], p["since_ms"]),
    "windows_recomputed": lambda ev, p: windows(ev, p["size_ms"], p["step_ms"], p["since_ms"]),
    "live_windows": lambda ev, p: live_windows(ev, p["at_ms"]),
    "open_overdue": lambda ev, p: open_overdue(ev),
    "duplicate_rate": lambda ev, p: duplicate_rate(ev, p["now_ms"], p["days"]),
    "forged_labels": lambda ev, p: forged_labels(ev, p["now_ms"], p["days"]),
}


def _norm(value: Any) -> Any:
    """Engine-neutral value: dates as ISO strings, numbers as float (JSON and native agree)."""
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S")
    if hasattr(value, "isoformat"):
        return value.isoformat()
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str) and value.lstrip("-").isdigit():
        return float(value)  # 64-bit integers quoted by a JSON format
    return value


def mismatches(columns: list[str], result: list[tuple[Any, ...]], expected: list[Event]) -> list[str]:
    """Differences between a query result and the reference, on the columns both have, row by row."""
    problems = []
    if len(result) != len(expected):
        problems.append(f"{len(result)} rows, expected {len(expected)}")
    for i, (row, want) in enumerate(zip(result, expected, strict=False)):
        got = dict(zip(columns, row, strict=True))
        for col in columns:
            if col not in want:
                continue
            a, b = _norm(got[col]), _norm(want[col])
            if a != b and not (isinstance(a, float) and isinstance(b, float) and abs(a - b) <= 1e-6 * max(1, abs(b))):
                problems.append(f"row {i} {col}: got {got[col]!r}, expected {want[col]!r}")
    return problems[:20]
