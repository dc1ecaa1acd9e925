"""`signalement worker`: create the topics, then run every agent in one Faust worker."""

from __future__ import annotations

import argparse
import asyncio
import logging
from typing import Any

import faust

from streams.app import Pipeline, build_pipeline, install_event_loop
from streams.config import Settings
from streams.gctune import GcClock, tune

log = logging.getLogger("signalement.worker")
GC_CLOCK = GcClock()
REPORTED = ("accepted", "duplicated", "escalated", "unroutable", "rejected", "reactions", "overdue", "windows",
            "packs", "packed", "changelog_coalesced")


def register_all(pipe: Pipeline) -> None:
    """Wire every agent to the pipeline; order matters only for readability."""
    from agents import intake, reactions, routing, windows

    intake.register(pipe)
    routing.register(pipe)
    reactions.register(pipe)
    windows.register(pipe)

    @pipe.app.task
    async def say_loop() -> None:
        """Name the event loop the worker runs on (SIGNALEMENT_EVENT_LOOP) once it runs."""
        loop = type(asyncio.get_running_loop())
        log.info("event loop: %s.%s", loop.__module__, loop.__qualname__)

    @pipe.app.timer(60.0, name="signalement.stats")
    async def report_counts() -> None:
        """Say per minute what went where (and reset)."""
        counts = " ".join(f"{k}={pipe.counters.get(k, 0)}" for k in REPORTED)
        codes = " ".join(f"{k}={v}" for k, v in sorted(pipe.counters.items()) if k.startswith("rejected."))
        log.info("last minute: %s %s %s", counts, GC_CLOCK.take(), codes)
        pipe.counters.clear()


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--loglevel", default="info", help="worker log level (default: info)")


def run(args: argparse.Namespace) -> Any:
    from streams.admin import create_topics

    settings = Settings.from_env()
    install_event_loop(settings)  # before anything asks asyncio for a loop
    pipe = build_pipeline(settings)
    created = create_topics(pipe.settings, pipe.registry)
    if created:
        log.info("created %d topics", len(created))
    register_all(pipe)
    if pipe.exactly_once:
        from pathlib import Path

        from streams.eos import restore_committed

        restore_committed(Path(pipe.app.conf.tabledir))
    GC_CLOCK.install()
    tune(settings.gc_threshold)
    worker = faust.Worker(pipe.app, loglevel=args.loglevel, quiet=True)
    return worker.execute_from_commandline()
