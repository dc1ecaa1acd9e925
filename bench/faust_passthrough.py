"""The Faust ceiling: one agent forwarding raw bytes from one topic to another, nothing else.

Run as a process by bench.ceilings: `python -m bench.faust_passthrough <source> <sink> [--batched]`.
Plain: the idiomatic `async for event in stream.events(): await topic.send(...)`. Batched: events
taken 1,000 at a time (`stream.take_events`) and handed to the producer directly, skipping Faust's
per-message send machinery (what the worker's hot paths can do). The app
is built by `streams.app.build_app`, so it has exactly the worker's Faust settings (store,
guarantee, producer and consumer tuning); only the agent differs.
"""

from __future__ import annotations

import sys
from typing import Any

import faust

from streams.app import build_app, install_event_loop
from streams.config import Settings


def main(source_name: str, sink_name: str, batched: bool) -> Any:
    settings = Settings.from_env()
    install_event_loop(settings)  # the worker's loop, so the ceiling and the worker compare
    app = build_app(settings)
    source = app.topic(source_name, key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw")
    sink = app.topic(sink_name, key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw")

    @app.agent(source, name="bench.passthrough")
    async def passthrough(stream: Any) -> None:
        """source -> sink, bytes as they are"""
        if not batched:
            async for event in stream.events():
                await sink.send(key=event.message.key, value=event.message.value)
            return
        producer = app.producer
        async for events in stream.take_events(1000, 0.005):
            for event in events:
                await producer.send(sink_name, event.message.key, event.message.value, None, None, None)

    worker = faust.Worker(app, loglevel="info", quiet=True)
    return worker.execute_from_commandline()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], sys.argv[3:] == ["--batched"])
