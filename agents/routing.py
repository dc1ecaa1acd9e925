"""Dedup and routing: internal.dedup -> referrals.accepted + operator.<id>.<lane>,
referrals.duplicates, referrals.unroutable. The dedup table lives on RocksDB."""

from __future__ import annotations

import logging
from typing import Any

from agents.logic import dedup
from streams.app import Pipeline, now_ms
from streams.records import RoutedReferral

log = logging.getLogger("signalement.routing")


async def _emit(pipe: Pipeline, adm: dedup.Admission) -> None:
    names, codec = pipe.names, pipe.codec
    if adm.route is not None:
        routed = adm.route
        key, value = routed["referral_id"].encode(), codec.encode("RoutedReferral", routed)
        if routed["operator_id"] is None:
            await pipe.send(names.unroutable, key, value)
            pipe.counters["unroutable"] += 1
            return
        await pipe.send(names.lane(routed["operator_id"], routed["priority"]), key, value)
        await pipe.send(names.accepted, key, value)
        pipe.counters["escalated" if routed["escalated"] else "accepted"] += 1
    if adm.update is not None:
        await pipe.send(names.accepted, adm.update["referral_id"].encode(), codec.encode("RoutedReferral", adm.update))
    if adm.duplicate is not None:
        await pipe.send(names.duplicates, adm.duplicate["canonical_referral_id"].encode(),
                        codec.encode("DuplicateReferral", adm.duplicate))
        pipe.counters["duplicated"] += 1


def register(pipe: Pipeline) -> Any:
    """The dedup agent and its table, keyed by (operator, normalised URL)."""
    table = pipe.table("dedup-items")
    source = pipe.topic(pipe.names.dedup_items)

    @pipe.app.agent(source, name="signalement.routing")
    async def routing(stream: Any) -> None:
        """internal.dedup -> referrals.accepted + lane | duplicates | unroutable"""
        async for event in stream.events():
            key = event.message.key
            name, record = pipe.codec.decode_any(event.message.value)
            raw = table.get(key)
            item = dedup.loads(raw) if raw is not None else None
            if name == "ItemDecided":
                decided = dedup.mark_decided(item)
                if decided is not None:
                    table[key] = dedup.dumps(decided)
                continue
            cand: RoutedReferral = record  # type: ignore[assignment]
            adm = dedup.admit(item, cand, now_ms(), pipe.policy)
            if adm.item is not None:
                table[key] = dedup.dumps(adm.item)
            await _emit(pipe, adm)

    return routing
