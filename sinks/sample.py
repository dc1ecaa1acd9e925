"""A small deterministic dataset of contract events, for query tests and report demos.

`sample_events()` returns event dicts per table (as the sink would receive them, including
superseded versions and redelivered copies); sinks.reference computes what every catalogue
query must answer on them.
"""

from __future__ import annotations

import random
from collections import defaultdict
from typing import Any

from sinks import reference, rows

Event = dict[str, Any]
OPERATORS = ("google", "meta", "twitter")
REPORTERS = ("pharos", "iru", "ngo")
DEADLINES = {"CRITICAL": (900_000, 3_600_000), "HIGH": (3_600_000, 86_400_000),
             "STANDARD": (86_400_000, 604_800_000)}
T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z
HOUR = 3_600_000
NOW = T0 + 10 * 24 * HOUR  # the sample's clock


def _referral(i: int, rng: random.Random) -> Event:
    op, reporter = OPERATORS[i % len(OPERATORS)], REPORTERS[i % len(REPORTERS)]
    priority = ("CRITICAL", "HIGH", "STANDARD")[rng.randrange(3)]
    routed_at = T0 + i * 97_000 + rng.randrange(1000)
    ack, decide = DEADLINES[priority]
    return {
        "referral_id": f"00000000-0000-4000-8000-{i:012d}", "reporter_id": reporter, "external_ref": None,
        "instrument": "REFERRAL", "label": "LABELLED" if i % 4 == 0 else "NONE", "emergency": False,
        "category": "TERRORIST_PROPAGANDA", "url": f"https://{op}.example/v/{i}", "operator_id": op,
        "content_hashes": [{"algo": "SHA256", "value": f"{i:064x}"}], "legal_basis": "LCEN 6-1",
        "reasons": "test", "jurisdiction": "FR", "language": "fr", "reported_at": routed_at - 50,
        "normalized_url": f"https://{op}.example/v/{i}", "priority": priority, "label_verified": i % 4 == 0,
        "label_rejected": i % 9 == 0, "routed_at": routed_at, "ack_deadline": routed_at + ack,
        "decision_deadline": routed_at + decide, "co_reporters": [], "escalated": False, "version": 0,
    }


def _reactions(ref: Event, rng: random.Random, now: int) -> list[Event]:
    """The reaction versions of one referral: none, acked, or acked then decided."""
    base: Event = {k: ref[k] for k in ("referral_id", "operator_id", "reporter_id", "priority", "category",
                                         "reported_at", "routed_at", "ack_deadline", "decision_deadline")}
    base.update(acked_at=None, decided_at=None, action=None, time_to_ack_ms=None, time_to_decision_ms=None,
                ack_on_time=None, decision_on_time=None, updated_at=ref["routed_at"])
    fate = rng.random()
    if fate < 0.15:
        return []
    ack_ms = rng.randrange(1, 2 * (ref["ack_deadline"] - ref["routed_at"]))
    acked = {**base, "acked_at": ref["routed_at"] + ack_ms, "action": None, "time_to_ack_ms": ack_ms,
             "ack_on_time": ref["routed_at"] + ack_ms <= ref["ack_deadline"], "updated_at": ref["routed_at"] + ack_ms}
    if fate < 0.3:
        return [acked]
    dec_ms = ack_ms + rng.randrange(0, int(1.3 * (ref["decision_deadline"] - ref["routed_at"])))
    if ref["routed_at"] + dec_ms > now:
        return [acked]
    decided = {**acked, "decided_at": ref["routed_at"] + dec_ms, "action": "REMOVED", "time_to_decision_ms": dec_ms,
               "decision_on_time": ref["routed_at"] + dec_ms <= ref["decision_deadline"],
               "updated_at": ref["routed_at"] + dec_ms}
    return [acked, decided]


def _decision(r: Event, at: int, action: str, topic_operator: str | None = None) -> Event:
    return {"referral_id": r["referral_id"], "operator_id": r["operator_id"], "action": action, "acted_at": at,
            "reason": None, "operator_ref": None, rows.TOPIC_OPERATOR_ID: topic_operator or r["operator_id"]}


def _handled_late(ref: Event, versions: list[Event], i: int, now: int) -> list[Event]:
    """Some acts made in time but handled by the pipeline after their deadline, when a tick had
    already raised the alert: the version's updated_at moves past the deadline (in place) and
    the alert is returned. The act still resolves it."""
    out: list[Event] = []
    for kind, every, act, deadline in (("ACK", 7, "acked_at", "ack_deadline"),
                                       ("DECISION", 5, "decided_at", "decision_deadline")):
        made = [v for v in versions if v[act] is not None]
        if i % every or not made or made[0][act] > made[0][deadline] or made[0][deadline] + 5_000 > now:
            continue
        handled = made[0][deadline] + 5_000
        if any(v["updated_at"] < handled for v in versions[versions.index(made[0]) + 1:]):
            continue  # the versions' order (updated_at) must stay that of the acts
        made[0]["updated_at"] = handled
        out.append({"referral_id": ref["referral_id"], "operator_id": ref["operator_id"], "priority": ref["priority"],
                    "deadline_kind": kind, "deadline": made[0][deadline], "detected_at": made[0][deadline] + 2_000})
    return out


def _overdue(r: Event, latest: Event | None) -> list[Event]:
    out = []
    for kind, deadline, done in (("ACK", r["ack_deadline"], latest and latest["acked_at"]),
                                 ("DECISION", r["decision_deadline"], latest and latest["decided_at"])):
        if done is None or done > deadline:
            out.append({"referral_id": r["referral_id"], "operator_id": r["operator_id"], "priority": r["priority"],
                        "deadline_kind": kind, "deadline": deadline, "detected_at": deadline + 2_000})
    return out


def sample_events(n: int = 300, seed: int = 7, now: int = NOW) -> dict[str, list[Event]]:
    """Events per table; superseded versions first, then some redelivered copies at the end."""
    rng = random.Random(seed)
    out: dict[str, list[Event]] = defaultdict(list)
    for i in range(n):
        ref = _referral(i, rng)
        out["referrals"].append({**ref, rows.ROUTED: 1})
        if i % 11 == 0 and ref["priority"] != "CRITICAL":  # an escalation re-issues a newer version
            out["referrals"].append({**ref, rows.ROUTED: 1, "priority": "CRITICAL", "escalated": True, "version": 1,
                                     "routed_at": ref["routed_at"] + 30_000})
        versions = _reactions(ref, rng, now)
        late = _handled_late(ref, versions, i, now)
        out["reactions"] += versions
        for v in versions:
            action = v["action"] or "ACKNOWLEDGED"
            out["decisions"].append(_decision(v, v["decided_at"] or v["acked_at"], action))
        due = [o for o in _overdue(ref, versions[-1] if versions else None) if o["deadline"] + 2_000 <= now]
        out["overdue"] += due + late
        if i % 5 == 0:
            out["duplicates"].append({"referral_id": f"dup-{i}", "canonical_referral_id": ref["referral_id"],
                                      "reporter_id": REPORTERS[(i + 1) % 3], "normalized_url": ref["normalized_url"],
                                      "operator_id": ref["operator_id"], "reported_at": ref["reported_at"] + 10,
                                      "priority": "STANDARD", "escalated": False, "detected_at": ref["routed_at"] + 20})
    unroutable = {**_referral(n, rng), "operator_id": None, rows.ROUTED: 0, "priority": "STANDARD"}
    out["referrals"].append(unroutable)
    out["decisions"].append(_decision(out["reactions"][0], T0 + 5, "REMOVED", topic_operator="twitter"))
    out["rejections"] = [{"source_topic": "reports.pharos", "source_partition": p, "source_offset": p * 10,
                          "key": None if p else b"k\x00", "value": bytes([0xC3, 0x01, p, 0xFF, 0x00]),
                          "error_code": "BAD_AVRO", "error": "truncated", "rejected_at": T0 + p} for p in range(3)]
    windows = [{**w, "updated_at": now, "closed": True} for w in reference.windows(out, HOUR, 300_000)]
    stale = [{**w, "decided": w["decided"] + 100, "updated_at": now - 1} for w in windows[:5]]
    out["reaction_windows"] = stale + windows
    for table in list(out):  # redeliveries: the last few events of every table once more
        out[table] += out[table][-3:]
    return dict(out)


TEST_PARAMS = {"now_ms": NOW, "at_ms": T0 + 4 * HOUR}


# Parameters other than the defaults worth checking (the sample's referrals are routed in the first
# 8 hours after T0): windows whose size is not a multiple of the step (a pane in fewer windows) or
# shorter than it (gaps), one priority by the hour, a period that starts among the referrals.
VARIANTS: list[tuple[str, dict[str, Any]]] = [
    ("windows_recomputed", {"size_ms": 3_600_000, "step_ms": 420_000}),
    ("windows_recomputed", {"size_ms": 600_000, "step_ms": 900_000, "since_ms": T0 + 4 * HOUR}),
    ("decision_time_trend", {"priority": "HIGH", "bucket_ms": HOUR, "since_ms": T0 + 4 * HOUR}),
    ("compliance_daily", {"days": 9, "now_ms": T0 + 9 * 24 * HOUR + 4 * HOUR}),
    ("forged_labels", {"days": 9, "now_ms": T0 + 9 * 24 * HOUR + 4 * HOUR}),
]


def params_for(declared: dict[str, Any]) -> dict[str, Any]:
    """The catalogue defaults with the sample's clock, for a query declaring `declared`."""
    return {**declared, **{k: v for k, v in TEST_PARAMS.items() if k in declared}}


def sample_rows(**kwargs: Any) -> dict[str, list[rows.Row]]:
    """sample_events() as rows per table, ready for INSERT."""
    return {table: [rows.TABLES[table].row(e) for e in events] for table, events in sample_events(**kwargs).items()}
