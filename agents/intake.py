"""Intake: reports.<reporter>[.urgent] -> signalement.internal.dedup[.urgent] (packed by the items' partitions,
streams/packs.py) | referrals.rejected."""

from __future__ import annotations

import logging
from typing import Any

from agents.logic.dedup import dedup_key
from agents.logic.intake import Intake
from agents.logic.priority import claims_urgency
from streams.app import BATCH, Pipeline, now_ms
from streams.errors import RejectedError

log = logging.getLogger("signalement.intake")


def register(pipe: Pipeline) -> tuple[Any, Any]:
    """Two agents, one per kind of reporter topic, re-keying valid referrals by their dedup identity.

    The urgent topics (removal orders and emergencies, Topics.reports_urgent) have their own agent:
    Faust feeds each agent its own buffer and stops fetching only the partitions whose buffer is
    full, so a backlog on the reporters' main topics never queues in front of them."""
    logic = Intake.build(pipe.registry)
    names = pipe.names
    main, urgent_topics = names.intake_topics(pipe.registry.reporters)

    @pipe.app.agent(pipe.source(*main), name="signalement.intake")
    async def intake(stream: Any) -> None:
        """reports.* -> internal.dedup[.urgent] | referrals.rejected"""
        async for events in stream.take_events(BATCH, pipe.settings.batch_within):
            await pipe.each_partition(events, take)

    @pipe.app.agent(pipe.source(*urgent_topics), name="signalement.intake.urgent")
    async def intake_urgent(stream: Any) -> None:
        """reports.*.urgent -> internal.dedup[.urgent] | referrals.rejected"""
        async for events in stream.take_events(BATCH, pipe.settings.batch_within):
            await pipe.each_partition(events, take_urgent)

    async def take_urgent(msg: Any) -> None:
        await take(msg, fast=True)

    async def take(msg: Any, fast: bool = False) -> None:
        pipe.arrived(msg, fast)
        try:
            ref, cand, value = logic.take(pipe.codec, msg.value, names.reporter_of(msg.topic) or "", now_ms())
        except RejectedError as exc:
            await pipe.reject(msg, exc.code, exc.message)
            return
        except Exception as exc:  # a bug must cost one record, never the stream
            log.exception("intake failed on %s/%s/%s", msg.topic, msg.partition, msg.offset)
            await pipe.reject(msg, "INTERNAL_ERROR", f"{type(exc).__name__}: {exc}")
            return
        if fast and not claims_urgency(ref):  # handled all the same; counted, the reporter's client misfiles
            pipe.counters["misfiled_urgent"] += 1
        key = dedup_key(cand["operator_id"], cand["normalized_url"]).encode()
        # urgent priorities have their own topic: at routing they pass a backlog of the others, and
        # under exactly-once no transaction of the others holds them back (Topics.dedup_urgent)
        urgent = cand["priority"] in pipe.policy.urgent
        pipe.send_packed(names.dedup_urgent if urgent else names.dedup_items, key, value)
        pipe.urgent(cand["priority"])

    return intake, intake_urgent
