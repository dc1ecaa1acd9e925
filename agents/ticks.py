"""Ticks: a leader timer writes one tick to every partition of internal.ticks, so deadline and
window checks run inside each partition's stream (Faust tables may only change there)."""

from __future__ import annotations

from typing import Any

from streams.app import Pipeline

_registered: set[int] = set()


def register_ticks(pipe: Pipeline) -> Any:
    """Install the tick timer once per app (several agents share the ticks)."""
    if id(pipe.app) in _registered:
        return None
    _registered.add(id(pipe.app))
    interval = pipe.policy.overdue_check_interval_ms / 1000
    topic = pipe.topic(pipe.names.ticks)

    @pipe.app.timer(interval, on_leader=True, name="signalement.ticks")
    async def tick() -> None:
        """internal.ticks: one b'tick' per partition"""
        for partition in range(pipe.settings.partitions):
            await topic.send(key=None, value=b"tick", partition=partition)

    return tick
