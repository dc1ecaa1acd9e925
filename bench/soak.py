"""Scale-out soak: the same preloaded backlog drained again and again by workers started together,
each run checked for referrals that never came out, and those located by source partition and offset.

Not a rate: a check of the start-up and join rebalances under load, the moment where a fetch is
dropped and must be read again (docs/reliability.md, "Rebalances"). Session 14 found the loss of
item 14 with it: one run in four left the first 50 reports of one partition without any output.
A run is complete when every referral is accounted for (in a lane, unroutable, a duplicate or
rejected); for an incomplete one, every referral id is read back from the reporters' topics and
from the outputs (read_committed), and the missing ones are grouped by the partition they came
from, with their offsets, and whether intake re-keyed them (found in signalement.internal.dedup*).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from bench import kafkaio
from bench.common import Result, console
from bench.load import Generator, Mix
from bench.pipeline import Run
from streams.codec import Codec, default_codec


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--runs", type=int, default=8, help="runs (8)")
    p.add_argument("--n", type=int, default=60_000, help="referrals preloaded per run (60000)")
    p.add_argument("--workers", type=int, default=2, help="worker processes started together (2)")
    p.add_argument("--timeout", type=float, default=120.0, help="a run is incomplete after this many s (120)")
    p.add_argument("--no-sink", action="store_true", help="run without the ClickHouse sink")


@dataclass(frozen=True)
class Gap:
    """Missing referrals of one source partition."""

    topic: str
    partition: int
    first_offset: int
    last_offset: int
    count: int
    rekeyed: int  # of them, found in intake's output (the loss is after intake)


def gaps(sources: Mapping[str, tuple[str, int, int]], out: set[str], rekeyed: set[str]) -> list[Gap]:
    """The ids of `sources` (id -> topic, partition, offset) not in `out`, grouped by source partition."""
    by_tp: dict[tuple[str, int], list[tuple[int, str]]] = {}
    for rid, (topic, partition, offset) in sources.items():
        if rid not in out:
            by_tp.setdefault((topic, partition), []).append((offset, rid))
    return [Gap(topic, partition, min(o for o, _ in v), max(o for o, _ in v), len(v), sum(r in rekeyed for _, r in v))
            for (topic, partition), v in sorted(by_tp.items())]


def ids_of(run: Run, topics: Iterable[str], codec: Codec) -> dict[str, tuple[str, int, int]]:
    """Every referral id in `topics` (read_committed), with where it was first seen (topic unprefixed)."""
    return {rid: (str(m.topic()).removeprefix(run.prefix), int(m.partition() or 0), int(m.offset() or 0))
            for rid, m in kafkaio.first_seen(run.settings, list(topics), codec, timeout=120).items()}


def locate(run: Run) -> list[Gap]:
    codec = default_codec()
    main, urgent = run.names.intake_topics(run.registry.reporters)
    sources = ids_of(run, [*main, *urgent], codec)
    out = set(ids_of(run, run.outputs, codec))
    rekeyed = set(ids_of(run, run.names.candidates, codec))
    return gaps(sources, out, rekeyed)


def run(args: argparse.Namespace) -> Result:
    result = Result("soak", f"Scale-out soak: {args.workers} workers started together on a preloaded backlog",
                    {"runs": args.runs, "n": args.n, "workers": args.workers, "timeout_s": args.timeout,
                     "sink": not args.no_sink})
    complete, failures = 0, []
    for i in range(args.runs):
        with Run("soak", workers=args.workers, sink=not args.no_sink) as run:
            run.preload(Generator(mix=Mix(), seed=3).records(args.n, int(time.time() * 1000)))
            run.open_tally()
            run.start()
            outcome = run.wait_outputs(args.n, args.timeout)
            if outcome.complete:
                complete += 1
                console.print(f"  run {i + 1}: complete in {time.monotonic() - run.started_at:.0f} s")
                continue
            run.stop()
            found = locate(run)
            failures.append({"run": i + 1, "accounted": outcome.accounted,
                             "gaps": [g.__dict__ for g in found]})
            console.print(f"  run {i + 1}: [red]{outcome.accounted:,} of {args.n:,}[/] accounted for; missing: "
                          + "; ".join(f"{g.topic}:{g.partition} offsets {g.first_offset}-{g.last_offset} "
                                      f"({g.count}, {g.rekeyed} re-keyed)" for g in found))
    result.add("runs complete", complete, f"of {args.runs}", f"{args.n:,} referrals each, {args.workers} workers "
               f"started together, {args.timeout:.0f} s allowed")
    result.details["incomplete runs"] = failures
    result.target("every run accounts for every referral", f"{args.runs} of {args.runs}", f"{complete} of {args.runs}",
                  complete == args.runs, "a referral left without output is a loss (docs/reliability.md)")
    return result
