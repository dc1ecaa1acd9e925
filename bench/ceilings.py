"""Ceilings: how fast this broker and machine move the same Avro referrals with no pipeline at all.

(a) raw: one confluent-kafka consumer and producer in a Python loop (consume a batch, produce each
    message, serve delivery callbacks), the project's producer settings (idempotent, acks=all,
    murmur2, linger 5 ms);
(b) faust: one Faust agent forwarding raw bytes (`bench.faust_passthrough`, the worker's own
    Faust settings), in its own process like the worker.

Both read the same preloaded topic (same payloads, same partitions) and write a fresh topic;
the rate is messages / (last - first output timestamp). Every other throughput is also given
as a ratio to these two.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

from confluent_kafka import Consumer, Producer

from bench import kafkaio, procs
from bench.common import Result, console, stack_settings, unique, with_prefix
from bench.load import Generator
from clients.kafka import producer_config
from streams.admin import admin_client, create_specs, delete_topics
from streams.config import Settings
from streams.topics import TopicSpec

RAW = "raw confluent-kafka pass-through"
FAUST = "Faust agent pass-through"
FAUST_BATCHED = "Faust agent pass-through, batched"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--n", type=int, default=100_000, help="referrals forwarded by each pass-through (100000)")
    p.add_argument("--timeout", type=float, default=240.0, help="give up on a pass-through after this many s")


def _wait(tally: kafkaio.Tally, topic: str, n: int, timeout: float, proc: procs.Proc | None = None) -> None:
    end = time.monotonic() + timeout
    while tally.by_topic[topic].count < n:
        if time.monotonic() > end:
            raise RuntimeError(f"{topic}: {tally.by_topic[topic].count} of {n} after {timeout}s")
        if proc is not None and not proc.alive():
            raise RuntimeError(f"pass-through died:\n{proc.log_tail()}")
        tally.poll(1.0)


def raw_passthrough(settings: Settings, source: str, sink: str, n: int, timeout: float) -> float:
    """Consume -> produce in one Python loop; returns wall seconds from first consume to last delivery."""
    c = Consumer(settings.confluent(**{"group.id": f"{settings.app_id}-raw", "auto.offset.reset": "earliest",
                                       "enable.auto.commit": True, "log_level": 0}))
    p = Producer(producer_config(settings))
    c.subscribe([source])
    moved, started, end = 0, 0.0, time.monotonic() + timeout
    try:
        while moved < n and time.monotonic() < end:
            msgs = c.consume(1000, 0.5)
            if msgs and not started:
                started = time.monotonic()
            for m in msgs:
                if m.error():
                    continue
                kafkaio.produce(p, sink, m.key(), m.value())
                moved += 1
            p.poll(0)
        p.flush(60)
        return time.monotonic() - started
    finally:
        c.close()


def faust_passthrough(settings: Settings, tally: kafkaio.Tally, source: str, sink: str, args: argparse.Namespace,
                      tmp: Path, batched: bool) -> tuple[float, float]:
    """Run bench.faust_passthrough as a process (own consumer group) until it forwarded args.n; (rate, CPU s)."""
    group = f"{settings.app_id}-{'batched' if batched else 'plain'}"
    proc = procs.Proc([sys.executable, "-m", "bench.faust_passthrough", source, sink, *(["--batched"] if batched else [])],
                      procs.env_for(settings, SIGNALEMENT_APP_ID=group,
                                    SIGNALEMENT_WORKER_DIR=str(tmp / group)), tmp / f"{group}.log").start()
    try:
        _wait(tally, sink, args.n, args.timeout, proc)
        cpu = proc.cpu_seconds()
    finally:
        proc.stop()
    first, last = tally.span([sink])
    assert first is not None and last is not None
    return args.n / max(1e-3, (last - first) / 1000), cpu


def faust_ceiling(n: int, timeout: float = 240.0) -> tuple[float, float]:
    """The Faust pass-through alone over `n` fresh referrals: (msg/s, CPU s). Another benchmark
    measures it right before its own run, so the two meet the same moment of the machine."""
    base = stack_settings()
    prefix = unique("ceil")
    tmp = Path(tempfile.mkdtemp(prefix="bench-ceiling-"))
    settings = with_prefix(base, prefix, tmp)
    source, sink = f"{prefix}source", f"{prefix}faust"
    create_specs(admin_client(settings), [TopicSpec(t, "Referral", settings.partitions) for t in (source, sink)])
    try:
        p = kafkaio.fast_producer(settings)
        for rec in Generator(seed=11).records(n, int(time.time() * 1000)):
            kafkaio.produce(p, source, rec.key, rec.value)
        p.flush(120)
        tally = kafkaio.Tally(settings, [sink])
        try:
            return faust_passthrough(settings, tally, source, sink, argparse.Namespace(n=n, timeout=timeout), tmp,
                                     batched=False)
        finally:
            tally.close()
    finally:
        delete_topics(base, [prefix])
        shutil.rmtree(tmp, ignore_errors=True)


def run(args: argparse.Namespace) -> Result:
    base = stack_settings()
    prefix = unique("ceil")
    tmp = Path(tempfile.mkdtemp(prefix="bench-ceilings-"))
    settings = with_prefix(base, prefix, tmp)
    source, raw_sink, faust_sink, batched_sink = (f"{prefix}{t}" for t in ("source", "raw", "faust", "batched"))
    create_specs(admin_client(settings), [TopicSpec(t, "Referral", settings.partitions) for t in
                                          (source, raw_sink, faust_sink, batched_sink)])
    result = Result("ceilings", "Ceilings: the same Avro referrals through no pipeline",
                    {"n": args.n, "partitions": settings.partitions, "guarantee": settings.guarantee})
    try:
        gen = Generator(seed=11)
        p = kafkaio.fast_producer(settings)
        t = time.monotonic()
        for rec in gen.records(args.n, int(time.time() * 1000)):
            kafkaio.produce(p, source, rec.key, rec.value)
        p.flush(120)
        console.print(f"  preloaded {args.n:,} referrals in {time.monotonic() - t:.1f} s")
        tally = kafkaio.Tally(settings, [raw_sink, faust_sink, batched_sink])
        try:
            wall = raw_passthrough(settings, source, raw_sink, args.n, args.timeout)
            _wait(tally, raw_sink, args.n, 60)
            first, last = tally.span([raw_sink])
            assert first is not None and last is not None
            raw_rate = args.n / max(1e-3, (last - first) / 1000)
            result.add(RAW, round(raw_rate), "msg/s", f"{args.n:,} messages, {wall:.1f} s wall, one Python loop")
            faust_rate = 0.0
            for label, sink, batched in ((FAUST, faust_sink, False), (FAUST_BATCHED, batched_sink, True)):
                rate, cpu = faust_passthrough(settings, tally, source, sink, args, tmp, batched)
                faust_rate = faust_rate or rate
                result.add(label, round(rate), "msg/s", f"{args.n:,} messages; process CPU {cpu:.1f} s "
                           f"({cpu * 1e6 / args.n:.0f} µs/msg incl. start-up)")
            result.add("Faust / raw", round(faust_rate / raw_rate, 3), "ratio")
        finally:
            tally.close()
    finally:
        delete_topics(base, [prefix])
        shutil.rmtree(tmp, ignore_errors=True)
    return result
