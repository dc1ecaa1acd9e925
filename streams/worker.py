"""`signalement worker`: create the topics, then run every agent in one Faust worker."""

from __future__ import annotations

import argparse
import logging
from typing import Any

import faust

from streams.app import Pipeline, build_pipeline

log = logging.getLogger("signalement.worker")
REPORTED = ("accepted", "duplicated", "escalated", "unroutable", "rejected", "reactions", "overdue", "windows")


def register_all(pipe: Pipeline) -> None:
    """Wire every agent to the pipeline; order matters only for readability."""
    from agents import intake, reactions, routing, windows

    intake.register(pipe)
    routing.register(pipe)
    reactions.register(pipe)
    windows.register(pipe)

    @pipe.app.timer(60.0, name="signalement.stats")
    async def report_counts() -> None:
        """Say per minute what went where (and reset)."""
        counts = " ".join(f"{k}={pipe.counters.get(k, 0)}" for k in REPORTED)
        codes = " ".join(f"{k}={v}" for k, v in sorted(pipe.counters.items()) if k.startswith("rejected."))
        log.info("last minute: %s %s", counts, codes)
        pipe.counters.clear()


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--loglevel", default="info", help="worker log level (default: info)")


def run(args: argparse.Namespace) -> Any:
    from streams.admin import create_topics

    pipe = build_pipeline()
    created = create_topics(pipe.settings, pipe.registry)
    if created:
        log.info("created %d topics", len(created))
    register_all(pipe)
    if pipe.exactly_once:
        from pathlib import Path

        from streams.eos import restore_committed

        restore_committed(Path(pipe.app.conf.tabledir))
    worker = faust.Worker(pipe.app, loglevel=args.loglevel, quiet=True)
    return worker.execute_from_commandline()
