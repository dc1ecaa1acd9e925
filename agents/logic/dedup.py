"""Deduplication of referrals on (operator, normalised URL), with replays and escalation (pure).

An item's state is a plain dict (stored as JSON in the dedup table):
  c     the canonical RoutedReferral as last emitted
  ids   the latest KEEP_IDS referral_ids merged into the item (a known id is a replay)
  done  the operator has decided it: duplicates no longer escalate it
  s, n  once ids have been spilled: when the first one was (the item's spill epoch), and how many

An id pushed out of `ids` is spilled to a key of its own in the same table (`spill_key`: the item's
key, a NUL, the id), whose value names the item's epoch (`spill_value`): a replay of an old id is
one point lookup, made only for items that have spilled. Kept whole, `ids` grew ~39 bytes per
duplicate: a URL reported ~27,000 times made a table value over the 1 MiB a changelog record may
be, and every duplicate of it re-read and re-wrote the whole list (1.4 ms each at 25,000 ids).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson

from agents.logic.priority import deadlines
from streams.policy import RANK, Policy
from streams.records import DuplicateReferral, RoutedReferral

Item = dict[str, Any]
KEEP_IDS = 64  # referral_ids kept in the item itself (~2.5 KB); older ones are spilled
SPILL = b"\x00"  # between an item's key and a spilled id (no key or URL holds a NUL: validate.py)


def dedup_key(operator_id: str | None, normalized_url: str) -> str:
    """The item's identity; unroutable referrals are only guarded against replays."""
    return f"{operator_id}|{normalized_url}" if operator_id else f"~unroutable|{normalized_url}"


def spill_key(key: bytes, referral_id: str) -> bytes:
    """Where a referral_id pushed out of its item's `ids` is remembered."""
    return key + SPILL + referral_id.encode()


def is_spill_key(key: bytes) -> bool:
    return SPILL in key


def spill_value(epoch: int, now_ms: int) -> bytes:
    return orjson.dumps({"s": epoch, "at": now_ms})


def _no_spill(_referral_id: str) -> bytes | None:
    return None


@dataclass
class Admission:
    """What one candidate referral changes: state to store and records to send."""

    item: Item | None = None  # new state (None: unchanged)
    route: RoutedReferral | None = None  # to referrals.accepted and one lane
    update: RoutedReferral | None = None  # to referrals.accepted only (a new version)
    duplicate: DuplicateReferral | None = None
    spill: tuple[str, bytes] | None = None  # (referral_id, value) to store at spill_key(key, referral_id)


def _route_new(candidate: RoutedReferral, now_ms: int, policy: Policy) -> Admission:
    routed: RoutedReferral = {**candidate, "routed_at": now_ms, "co_reporters": [], "escalated": False, "version": 0}
    routed["ack_deadline"], routed["decision_deadline"] = deadlines(policy, routed["priority"], now_ms)
    return Admission(item={"c": routed, "ids": [candidate["referral_id"]], "done": False}, route=routed)


def expired(item: Item, now_ms: int, horizon_ms: int) -> bool:
    """An item older than the dedup horizon is forgotten: the next report of it is new."""
    return now_ms - int(item["c"]["routed_at"]) > horizon_ms


def stale(key: bytes, value: bytes, now_ms: int, horizon_ms: int) -> bool:
    """A table entry the sweeper may delete: an expired item, or a spilled id past any item's life.

    An item lives at most two horizons from its first report (one, renewed once by an escalation),
    so a spilled id older than that belongs to no live item."""
    if is_spill_key(key):
        return now_ms - int(loads(value)["at"]) > 2 * horizon_ms
    return expired(loads(value), now_ms, horizon_ms)


def _spilled(item: Item, referral_id: str, lookup: Callable[[str], bytes | None]) -> bool:
    """Whether `referral_id` was merged into this item and spilled (not into an earlier, expired item
    on the same key: its spilled ids carry another epoch)."""
    if not item.get("n"):
        return False
    raw = lookup(referral_id)
    return raw is not None and loads(raw)["s"] == item["s"]


def admit(item: Item | None, candidate: RoutedReferral, now_ms: int, policy: Policy,
          spilled: Callable[[str], bytes | None] = _no_spill) -> Admission:
    """Route a new item, ignore a replay, or record a duplicate (escalating once if it outranks).

    `spilled(referral_id)` reads the value at the item's spill_key for that id (None: absent)."""
    if item is None or expired(item, now_ms, policy.dedup_horizon_ms):
        return _route_new(candidate, now_ms, policy)
    if candidate["referral_id"] in item["ids"] or _spilled(item, candidate["referral_id"], spilled):
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
    new_item = {**item, "c": canonical, "ids": [*item["ids"], candidate["referral_id"]]}
    spill = None
    if len(new_item["ids"]) > KEEP_IDS:
        oldest = new_item["ids"].pop(0)
        new_item["s"] = item.get("s") or now_ms
        new_item["n"] = item.get("n", 0) + 1
        spill = (oldest, spill_value(new_item["s"], now_ms))
    return Admission(item=new_item, route=canonical if escalate else None,
                     update=canonical if changed and not escalate else None, duplicate=duplicate, spill=spill)


def mark_decided(item: Item | None) -> Item | None:
    """The operator decided the item: later duplicates are recorded but never escalate it."""
    if item is None or item["done"]:
        return None
    return {**item, "done": True}


def dumps(item: Item) -> bytes:
    return orjson.dumps(item)


def loads(data: bytes) -> Item:
    return orjson.loads(data)  # type: ignore[no-any-return]
