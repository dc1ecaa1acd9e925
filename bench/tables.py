"""A table write as the worker makes it under exactly_once: Faust's path against a staged unit of work.

The worker's own `TransactionalTable` on RocksDB (a pipeline built in-process, nothing started, no
Kafka), inside a unit of work as `Pipeline.work` sets one up: each key is read for update (its
before-image goes to the undo journal) and written (its changelog record queued), `--unit` keys per
unit, then the transaction's journal entries are forgotten as after a commit. Two ways to write:

- **Faust's path** (at_least_once's, and exactly_once's until session 17): each write is a RocksDB
  put of the journal's before-image, then Faust's store put (its serializer registry, its key index,
  one more put), each appending to a RocksDB log;
- **staged** (`streams.eos.Staged`): the unit's writes are held and written at its end, the
  journal's before-images in one batch, then the table partition's in another.

New keys each pass (a new dedup item per new URL); passes alternate between the two ways and the
fastest of each is kept (the machine's noise only adds).
"""

from __future__ import annotations

import argparse
import dataclasses
import tempfile
import time
import weakref
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from bench.common import Result, console


class _Event:
    """The current event as the tables read it (Faust keeps a weak reference to it)."""

    def __init__(self, message: Any) -> None:
        self.message = message


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--keys", type=int, default=20_000, help="keys written per pass (20000)")
    p.add_argument("--unit", type=int, default=100, help="keys per unit of work (100)")
    p.add_argument("--repeat", type=int, default=5, help="passes of each way, fastest kept (5)")


def run(args: argparse.Namespace) -> Result:
    import asyncio

    return asyncio.run(_run(args))


async def _run(args: argparse.Namespace) -> Result:
    from faust.streams import _current_event
    from faust.types import TP

    from streams.app import build_pipeline
    from streams.config import Settings
    from streams.eos import OUTBOX, STAGED, Staged

    result = Result("tables", "A table read-modify-write in the worker: Faust's path against a staged unit",
                    {"keys": args.keys, "unit": args.unit, "repeat": args.repeat})
    with tempfile.TemporaryDirectory(prefix="bench-tables-") as tmp:
        settings = dataclasses.replace(Settings.from_env(), guarantee="exactly_once", worker_dir=Path(tmp))
        pipe = build_pipeline(settings)
        table = pipe.table("bench-tables")
        txns: Any = pipe.app.consumer.transactions
        tp = TP(pipe.names.dedup_items, 0)
        txns._tids[tp] = "bench-tables-0"  # no assignor: nothing is subscribed
        event = _Event(SimpleNamespace(partition=0, tp=tp, topic=tp.topic))
        _current_event.set(weakref.ref(event))  # type: ignore[arg-type]
        value = b'{"u":"' + b"x" * 160 + b'"}'
        passes = iter(range(2 * args.repeat))

        def one_pass(staged: bool) -> float:
            base = next(passes) * args.keys
            keys = [b"google\0https://example.com/item/%d" % (base + i) for i in range(args.keys)]
            started = time.process_time()
            for i in range(0, len(keys), args.unit):
                box: list[Any] = []
                outbox = OUTBOX.set(box)
                stage = Staged(txns.journal) if staged else None
                staging = STAGED.set(stage)
                for key in keys[i:i + args.unit]:
                    table.read_for_update(key)
                    table[key] = value
                STAGED.reset(staging)
                if stage is not None:
                    stage.flush()
                OUTBOX.reset(outbox)
                txns.journal.forget("bench-tables-0")
            return 1e6 * (time.process_time() - started) / len(keys)

        best = {"faust": float("inf"), "staged": float("inf")}
        for _ in range(args.repeat):
            best["faust"] = min(best["faust"], one_pass(False))
            best["staged"] = min(best["staged"], one_pass(True))
        stored = table.data._db_for_partition(0)
        missing = sum(stored.get(b"google\0https://example.com/item/%d" % i) != value
                      for i in range(2 * args.repeat * args.keys))
        txns.journal.close()
    result.add("read-modify-write, Faust's path", round(best["faust"], 1), "µs per key",
               note="journal put + Faust's store put, per key")
    result.add("read-modify-write, staged", round(best["staged"], 1), "µs per key",
               note=f"two batches per unit of {args.unit} keys")
    result.add("saved per key", round(best["faust"] - best["staged"], 1), "µs per key",
               note="a referral writes about two keys (the dedup item, its reaction state)")
    result.add("keys found in RocksDB afterwards", 2 * args.repeat * args.keys - missing, "keys",
               note=f"of {2 * args.repeat * args.keys:,} written")
    console.print(f"  {2 * args.repeat * args.keys:,} keys written, {missing} missing")
    return result
