"""The pipeline's own code per referral, without Kafka or Faust: what any runtime would still pay.

The realistic mix of `bench.throughput` (bench/load.py) goes through each step the agents take, one
step at a time over the whole list (so the clock is read twice per step, not per record): intake's
decode (with the canonical-form check), validation + normalisation + operator + priority, the dedup
key and the candidate's encoding; routing's decode, the dedup table's read-modify-write on RocksDB
opened as the worker opens it (orjson values, `dedup.admit`), the encoding of what it emits; and the
reactions agent's part for an accepted referral (decode, new reaction, orjson state). Each pass is
repeated and the fastest kept (the machine's noise only adds).

The sum is a floor for the worker's CPU per referral whatever consumes and produces the records:
1e6 / sum is the most referrals/s one core could route if Kafka, Faust and asyncio cost nothing.
Set against the worker's measured CPU per referral (bench/results/throughput.json) it says how much
of the worker is our code and how much the machinery around it.
"""

from __future__ import annotations

import argparse
import gc
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from faust.stores.rocksdb import RocksDBOptions

from bench.common import Result, console, load_result
from bench.load import Generator, Mix
from streams.app import ROCKSDB_OPTIONS

# the throughput target of issue 6, referrals/s on one worker process
TARGET_RATE = 10_000


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--n", type=int, default=30_000, help="referrals of the realistic mix (30000)")
    p.add_argument("--repeat", type=int, default=5, help="passes per step, fastest kept (5)")
    p.add_argument("--hot", type=int, default=25_000, help="reports of the hot item before its timed duplicates (25000)")


@contextmanager
def paused_gc() -> Iterator[None]:
    """The cyclic GC off for a timed step: the step's input and output lists (all 30,000 records,
    kept for the next step) would make its collections cost what the worker, holding a batch at a
    time, does not pay."""
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def timed(fn: Callable[[], Any], repeat: int) -> tuple[float, Any]:
    """Seconds of the fastest of `repeat` calls (GC paused), and the last call's result."""
    best, out = float("inf"), None
    for _ in range(repeat):
        with paused_gc():
            t0 = time.perf_counter()
            out = fn()
            best = min(best, time.perf_counter() - t0)
    return best, out


def run(args: argparse.Namespace) -> Result:
    from agents.logic import dedup, reactions
    from agents.logic.intake import Intake
    from streams.codec import default_codec
    from streams.config import Settings
    from streams.errors import RejectedError
    from streams.policy import Policy
    from streams.registry import Registry

    settings = Settings.from_env()
    registry = Registry.load(settings.reporters_path, settings.operators_path)
    policy, codec, intake = Policy.load(settings.policy_path), default_codec(), Intake.build(registry)
    now = int(time.time() * 1000)
    records = list(Generator(mix=Mix(), seed=6).records(args.n, now - 1_000))
    n = len(records)
    result = Result("logic", "The pipeline's own code per referral (no Kafka, no Faust)",
                    {"n": n, "repeat": args.repeat, "mix": Mix().as_dict()})
    steps: dict[str, float] = {}

    def decode() -> list[Any]:
        out: list[Any] = []
        for r in records:
            try:  # noqa: SIM105  (a context manager per record would be timed with the step)
                out.append((r.reporter, codec.decode(r.value, "Referral")))
            except RejectedError:
                pass
        return out

    steps["intake: decode + canonical-form check"], refs = timed(decode, args.repeat)

    def candidates() -> list[Any]:
        out = []
        for reporter, ref in refs:
            try:  # noqa: SIM105
                out.append(intake.candidate(ref, reporter, now))
            except RejectedError:
                pass
        return out

    steps["intake: validate, normalise, operator, priority"], cands = timed(candidates, args.repeat)

    def encode_candidates() -> list[tuple[bytes, bytes]]:
        return [(dedup.dedup_key(c["operator_id"], c["normalized_url"]).encode(), codec.encode("RoutedReferral", c))
                for c in cands]

    steps["intake: dedup key + encode"], keyed = timed(encode_candidates, args.repeat)
    steps["routing: decode"], decoded = timed(lambda: [(k, codec.decode_any(v)[1]) for k, v in keyed], args.repeat)

    folder = Path(tempfile.mkdtemp(prefix="bench-logic-"))
    try:
        options = RocksDBOptions(**dict(ROCKSDB_OPTIONS))  # type: ignore[arg-type]  # the worker's table options
        admissions: list[Any] = []
        best = float("inf")
        for i in range(args.repeat):  # a fresh table each pass: every pass admits the same items
            db = options.open(folder / f"dedup-{i}.db")
            with paused_gc():
                t0 = time.perf_counter()
                admissions = []
                for key, cand in decoded:
                    raw = db.get(key)
                    adm = dedup.admit(dedup.loads(raw) if raw is not None else None, cand, now, policy)
                    if adm.item is not None:
                        db[key] = dedup.dumps(adm.item)
                    admissions.append(adm)
                best = min(best, time.perf_counter() - t0)
            db.close()
        steps["routing: dedup table get, admit, put (RocksDB)"] = best
        hot_us, hot_bytes = _hot_item(options.open(folder / "hot.db"), cands[0], now, policy, args.hot)
    finally:
        shutil.rmtree(folder, ignore_errors=True)

    def emit() -> list[bytes]:
        out = []
        for adm in admissions:
            if adm.route is not None:
                out.append(codec.encode("RoutedReferral", adm.route))
            if adm.update is not None:
                out.append(codec.encode("RoutedReferral", adm.update))
            if adm.duplicate is not None:
                out.append(codec.encode("DuplicateReferral", adm.duplicate))
        return out

    steps["routing: encode lane / accepted / duplicate records"], emitted = timed(emit, args.repeat)
    accepted = [codec.encode("RoutedReferral", a.route) for a in admissions
                if a.route is not None and a.route["operator_id"] is not None]

    def react() -> int:
        import orjson

        for value in accepted:
            routed = codec.decode(value, "RoutedReferral")
            state = {"r": reactions.new_reaction(routed, now),  # type: ignore[arg-type]
                     "k": dedup.dedup_key(routed["operator_id"], routed["normalized_url"]), "v": routed["version"],
                     "p": 0, "alerts": []}
            orjson.dumps(state)
        return len(accepted)

    steps["reactions: decode accepted, new reaction, state JSON"], _ = timed(react, args.repeat)

    total = 0.0
    for label, seconds in steps.items():
        us = 1e6 * seconds / n
        total += us
        result.add(label, round(us, 1), "µs per referral")
    result.add("our code, total", round(total, 1), "µs per referral")
    ceiling = 1e6 / total
    result.add("our code alone, one core", round(ceiling), "referrals/s",
               note=f"the target is {TARGET_RATE:,}/s, i.e. {1e6 / TARGET_RATE:.0f} µs per referral in all")
    worker = _worker_cpu_us()
    if worker:
        result.add("worker CPU per referral (throughput.json)", worker, "µs per referral",
                   note=f"our code is {100 * total / worker:.0f} % of it; the rest is Kafka clients, Faust, asyncio")
    result.target(f"our code fits {TARGET_RATE:,}/s", f"<= {1e6 / TARGET_RATE:.0f} µs per referral",
                  f"{total:.0f} µs", total <= 1e6 / TARGET_RATE,
                  "our own steps alone" + ("" if total <= 1e6 / TARGET_RATE else " already exceed the budget"))
    result.add(f"routing: a duplicate of an item already reported {args.hot:,} times", round(hot_us, 1),
               "µs per duplicate", note=f"get, admit, put as above; its table value {hot_bytes:,} bytes "
               f"(an item keeps its latest {dedup.KEEP_IDS} ids, older ones on keys of their own; not in the total)")
    result.details["outputs_encoded"] = len(emitted)
    result.details["candidates"] = len(cands)
    console.print(f"  {n:,} records, {len(cands):,} valid candidates, {len(emitted):,} outputs encoded")
    return result


def _hot_item(db: Any, first: Any, now: int, policy: Any, reports: int, timed_n: int = 2_000) -> tuple[float, int]:
    """µs per duplicate of one item after `reports` reports of it (what routing does for each: the
    item's read-modify-write, the spill lookup and write), and the item's table value in bytes.
    Before session 20 the value held every id merged (~39 bytes each): 1.4 ms per duplicate at
    25,000, and a changelog record past the broker's 1 MiB soon after."""
    import uuid

    from agents.logic import dedup

    key = b"twitter|" + first["normalized_url"].encode()

    def one(i: int) -> None:
        raw = db.get(key)
        cand: Any = {**first, "referral_id": str(uuid.UUID(int=i)), "reporter_id": "eu-iru"}
        adm = dedup.admit(dedup.loads(raw) if raw is not None else None, cand, now + i, policy,
                          lambda rid: db.get(dedup.spill_key(key, rid)))
        if adm.item is not None:
            db[key] = dedup.dumps(adm.item)
        if adm.spill is not None:
            db[dedup.spill_key(key, adm.spill[0])] = adm.spill[1]

    try:
        for i in range(reports):
            one(i)
        with paused_gc():
            t0 = time.perf_counter()
            for i in range(reports, reports + timed_n):
                one(i)
            seconds = time.perf_counter() - t0
        return 1e6 * seconds / timed_n, len(db.get(key))
    finally:
        db.close()


def _worker_cpu_us() -> float | None:
    doc = load_result("throughput")
    if not doc:
        return None
    for label, fig in doc.get("figures", {}).items():
        if label.startswith("worker CPU per referral") and isinstance(fig.get("value"), (int, float)):
            return float(fig["value"])
    return None
