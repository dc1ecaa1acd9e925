"""Dedup and routing: internal.dedup -> referrals.accepted (+ internal.routed) + operator.<id>.<lane>,
referrals.duplicates, referrals.unroutable. The dedup table lives on RocksDB."""

from __future__ import annotations

import logging
from typing import Any

from agents.logic import dedup
from agents.sweep import Sweeper
from streams.app import BATCH, Pipeline, now_ms
from streams.packs import PACK, unpack
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
        pipe.urgent(routed["priority"])
        await pipe.send(names.accepted, key, value)
        pipe.send_packed(names.routed, key, value)  # the same, for the reactions agent
        pipe.counters["escalated" if routed["escalated"] else "accepted"] += 1
    if adm.update is not None:
        key, value = adm.update["referral_id"].encode(), codec.encode("RoutedReferral", adm.update)
        await pipe.send(names.accepted, key, value)
        pipe.send_packed(names.routed, key, value)
    if adm.duplicate is not None:
        await pipe.send(names.duplicates, adm.duplicate["canonical_referral_id"].encode(),
                        codec.encode("DuplicateReferral", adm.duplicate))
        pipe.counters["duplicated"] += 1


def register(pipe: Pipeline) -> tuple[Any, Any]:
    """The dedup agents (urgent candidates apart) and their table, keyed by (operator, normalised URL)."""
    from agents.ticks import register_ticks

    table = pipe.table("dedup-items")
    horizon = pipe.policy.dedup_horizon_ms
    sweeper = Sweeper(pipe, table, lambda key, raw, now: dedup.stale(key, raw, now, horizon), horizon)
    names = pipe.names
    register_ticks(pipe)

    @pipe.app.agent(pipe.source(names.dedup_items, names.ticks), name="signalement.routing")
    async def routing(stream: Any) -> None:
        """internal.dedup + ticks -> referrals.accepted + lane | duplicates | unroutable"""
        async for events in stream.take_events(BATCH, pipe.settings.batch_within):
            await pipe.each_partition(events, handle)

    # The urgent candidates have an agent of their own, on the same table (its partitions follow
    # the topics' partition numbers, the same for both agents): in one agent they queued behind
    # the other candidates Faust had already buffered, up to thousands during a backlog. The
    # units of work of both take the app's work lock in turn (Pipeline.work).
    @pipe.app.agent(pipe.source(names.dedup_urgent), name="signalement.routing.urgent")
    async def routing_urgent(stream: Any) -> None:
        """internal.dedup.urgent -> referrals.accepted + lane | duplicates | unroutable"""
        async for events in stream.take_events(BATCH, pipe.settings.batch_within):
            await pipe.each_partition(events, handle)

    async def handle(msg: Any) -> None:
        if msg.topic == names.ticks:
            try:
                sweeper.sweep(msg.partition, now_ms())
            except Exception:  # expiry is housekeeping: it must never stop routing
                log.exception("dedup sweep failed on partition %s", msg.partition)
            return
        try:
            name, record = pipe.codec.decode_any(msg.value)
            items = unpack(record, msg) if name == PACK else [msg]
        except Exception as exc:  # internal records are ours: a bad one is a bug, dead-lettered
            log.exception("routing cannot read %s/%s/%s", msg.topic, msg.partition, msg.offset)
            await pipe.reject(msg, "INTERNAL_ERROR", f"{type(exc).__name__}: {exc}")
            return
        for item in items:
            try:
                await route(item, *((name, record) if item is msg else pipe.codec.decode_any(item.value)))
            except Exception as exc:  # a bug must cost one record (dead-lettered), never the stream
                log.exception("routing failed on %s/%s/%s", item.topic, item.partition, item.offset)
                await pipe.reject(item, "INTERNAL_ERROR", f"{type(exc).__name__}: {exc}")

    async def route(msg: Any, name: str, record: Any) -> None:
        key = msg.key
        raw = table.read_for_update(key)
        item = dedup.loads(raw) if raw is not None else None
        if name == "ItemDecided":
            decided = dedup.mark_decided(item)
            if decided is not None:
                table[key] = dedup.dumps(decided)
            return
        cand: RoutedReferral = record  # type: ignore[assignment]
        adm = dedup.admit(item, cand, now_ms(), pipe.policy, lambda rid: table.read(dedup.spill_key(key, rid)))
        if adm.item is not None:
            table[key] = dedup.dumps(adm.item)
        if adm.spill is not None:
            table[dedup.spill_key(key, adm.spill[0])] = adm.spill[1]
        await _emit(pipe, adm)

    return routing, routing_urgent
