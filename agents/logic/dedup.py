"""Deduplication of referrals on (operator, normalised URL), with replays and escalation (pure).

An item's state is a plain dict (stored as JSON in the dedup table):
  c     the canonical RoutedReferral as last emitted
  ids   every referral_id merged into the item (a known id is a replay)
  done  the operator has decided it: duplicates no longer escalate it
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from agents.logic.priority import deadlines
from streams.policy import RANK, Policy
from streams.records import DuplicateReferral, RoutedReferral

Item = dict[str, Any]


def dedup_key(operator_id: str | None, normalized_url: str) -> str:
    """The item's identity; unroutable referrals are only guarded against replays."""
    return f"{operator_id}|{normalized_url}" if operator_id else f"~unroutable|{normalized_url}"


@dataclass
class Admission:
    """What one candidate referral changes: state to store and records to send."""

    item: Item | None = None  # new state (None: unchanged)
    route: RoutedReferral | None = None  # to referrals.accepted and one lane
    update: RoutedReferral | None = None  # to referrals.accepted only (a new version)
    duplicate: DuplicateReferral | None = None


def _route_new(candidate: RoutedReferral, now_ms: int, policy: Policy) -> Admission:
    routed: RoutedReferral = {**candidate, "routed_at": now_ms, "co_reporters": [], "escalated": False, "version": 0}
    routed["ack_deadline"], routed["decision_deadline"] = deadlines(policy, routed["priority"], now_ms)
    return Admission(item={"c": routed, "ids": [candidate["referral_id"]], "done": False}, route=routed)


def expired(item: Item, now_ms: int, horizon_ms: int) -> bool:
    """An item older than the dedup horizon is forgotten: the next report of it is new."""
    return now_ms - int(item["c"]["routed_at"]) > horizon_ms


def admit(item: Item | None, candidate: RoutedReferral, now_ms: int, policy: Policy) -> Admission:
    """Route a new item, ignore a replay, or record a duplicate (escalating once if it outranks)."""
    if item is None or expired(item, now_ms, policy.dedup_horizon_ms):
        return _route_new(candidate, now_ms, policy)
    if candidate["referral_id"] in item["ids"]:
        return Admission()
    canonical: RoutedReferral = dict(item["c"])  # type: ignore[assignment]
    reporters = list(canonical["co_reporters"])
    changed = False
    if candidate["reporter_id"] != canonical["reporter_id"] and candidate["reporter_id"] not in reporters:
        reporters.append(candidate["reporter_id"])
        changed = True
    escalate = (RANK[candidate["priority"]] < RANK[canonical["priority"]]
                and not item["done"] and not canonical["escalated"])
    if escalate:
        canonical["priority"] = candidate["priority"]
        canonical["escalated"] = True
        canonical["routed_at"] = now_ms
        canonical["ack_deadline"], canonical["decision_deadline"] = deadlines(policy, candidate["priority"], now_ms)
    if changed or escalate:
        canonical["co_reporters"] = reporters
        canonical["version"] += 1
    duplicate: DuplicateReferral = {
        "referral_id": candidate["referral_id"], "canonical_referral_id": canonical["referral_id"],
        "reporter_id": candidate["reporter_id"], "normalized_url": candidate["normalized_url"],
        "operator_id": candidate["operator_id"] or "", "reported_at": candidate["reported_at"],
        "priority": candidate["priority"], "escalated": escalate, "detected_at": now_ms,
    }
    new_item = {"c": canonical, "ids": [*item["ids"], candidate["referral_id"]], "done": item["done"]}
    return Admission(item=new_item, route=canonical if escalate else None,
                     update=canonical if changed and not escalate else None, duplicate=duplicate)


def mark_decided(item: Item | None) -> Item | None:
    """The operator decided the item: later duplicates are recorded but never escalate it."""
    if item is None or item["done"]:
        return None
    return {**item, "done": True}


def dumps(item: Item) -> bytes:
    return orjson.dumps(item)


def loads(data: bytes) -> Item:
    return orjson.loads(data)  # type: ignore[no-any-return]
