"""Intake: reports.<reporter> -> signalement.internal.dedup[.urgent] (keyed by item) | referrals.rejected."""

from __future__ import annotations

import logging
from typing import Any, cast

from agents.logic.dedup import dedup_key
from agents.logic.intake import Intake
from streams.app import BATCH, BATCH_WITHIN_S, Pipeline, now_ms
from streams.errors import RejectedError
from streams.records import Referral

log = logging.getLogger("signalement.intake")


def register(pipe: Pipeline) -> Any:
    """Subscribe to every reporter's topic and re-key valid referrals by their dedup identity."""
    logic = Intake.build(pipe.registry)
    names = pipe.names
    source = pipe.source(*[names.reports(r) for r in sorted(pipe.registry.reporters)])

    @pipe.app.agent(source, name="signalement.intake")
    async def intake(stream: Any) -> None:
        """reports.* -> internal.dedup[.urgent] | referrals.rejected"""
        async for events in stream.take_events(BATCH, BATCH_WITHIN_S):
            await pipe.each_partition(events, take)

    async def take(msg: Any) -> None:
        pipe.arrived(msg)
        try:
            ref = cast(Referral, pipe.codec.decode(msg.value, "Referral"))
            cand = logic.candidate(ref, names.reporter_of(msg.topic) or "", now_ms())
        except RejectedError as exc:
            await pipe.reject(msg, exc.code, exc.message)
            return
        except Exception as exc:  # a bug must cost one record, never the stream
            log.exception("intake failed on %s/%s/%s", msg.topic, msg.partition, msg.offset)
            await pipe.reject(msg, "INTERNAL_ERROR", f"{type(exc).__name__}: {exc}")
            return
        key = dedup_key(cand["operator_id"], cand["normalized_url"]).encode()
        # urgent priorities have their own topic: at routing they pass a backlog of the others, and
        # under exactly-once no transaction of the others holds them back (Topics.dedup_urgent)
        urgent = cand["priority"] in pipe.policy.urgent
        await pipe.send(names.dedup_urgent if urgent else names.dedup_items, key, pipe.codec.encode("RoutedReferral", cand))
        pipe.urgent(cand["priority"])

    return intake
