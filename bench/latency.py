"""Latency: reported_at -> arrival in the lane, at 10 %, 50 % and 80 % of the sustained throughput, and for
critical referrals while the standard lane holds a backlog.

A paced producer (the reporters' settings: idempotent, acks=all, linger 5 ms) sends the realistic
mix with reported_at = the moment it hands the record to librdkafka. A reader (read_committed,
fetch.wait.max.ms 10) notes when each lane record becomes visible: "visible" latency is that
moment - reported_at; "produced" latency uses the timestamp the worker's producer put on the lane
record. The sustained throughput is the 1-worker figure of bench/results/throughput.json.

Critical under backlog: the pipeline routes a backlog into google's standard lane first; then an
operator client for google (clients.operator, strict lane priority, in its own process:
bench.operator_probe) works through it slowly (a few ms per standard referral) while the mix keeps
flowing at 50 % (--background) and critical removal orders for google arrive; a critical referral's latency ends
when the operator's handler receives it.

Then, unless --no-other-guarantee, the levels again with a worker at at_least_once: under
exactly-once a lane record is visible only when the transactions of its two hops commit.
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from bench import kafkaio, procs
from bench.common import Result, console, load_result
from bench.load import Generator, Mix
from bench.pipeline import Run
from clients.kafka import producer_config

LEVELS = (0.1, 0.5, 0.8)
SUSTAINED = "sustained referrals/s, 1 worker"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--seconds", type=float, default=25.0, help="seconds of paced load per level (25)")
    p.add_argument("--rate", type=float, default=0.0,
                   help="sustained referrals/s the levels are fractions of (default: bench/results/throughput.json)")
    p.add_argument("--backlog", type=int, default=10_000, help="standard referrals queued in google's lane (10000)")
    p.add_argument("--critical-rate", type=float, default=10.0, help="critical referrals/s under backlog (10)")
    p.add_argument("--background", type=float, default=0.5,
                   help="the mix flowing meanwhile, as a fraction of the sustained rate (0.5)")
    p.add_argument("--standard-ms", type=float, default=5.0,
                   help="operator's handling time per standard referral, ms (5: the backlog outlasts the phase)")
    p.add_argument("--no-sink", action="store_true", help="run without the ClickHouse sink")
    p.add_argument("--no-other-guarantee", dest="other_guarantee", action="store_false",
                   help="skip the levels again under at_least_once (run by default after exactly_once)")


def now_ms() -> int:
    return time.time_ns() // 1_000_000


@dataclass
class Pacer:
    """Sends a generator's records at `rate`/s for `seconds` in a thread; remembers reported_at per key."""

    run: Run
    gen: Generator
    rate: float
    seconds: float
    fast_path: bool = True  # urgent records on reports.<id>.urgent, as the reporter's client sends them
    sent: dict[bytes, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.producer = kafkaio.Producer(producer_config(self.run.settings, log_level=0))
        self.thread = threading.Thread(target=self._loop, daemon=True)
        self.achieved = 0.0

    def start(self) -> Pacer:
        self.thread.start()
        return self

    def _loop(self) -> None:
        start = time.monotonic()
        n = 0
        while (elapsed := time.monotonic() - start) < self.seconds:
            due = int(elapsed * self.rate) + 1
            while n < due:
                at = now_ms()
                rec = self.gen.next(at)
                kafkaio.produce(self.producer, kafkaio.topic_for(self.run.names, rec, self.fast_path), rec.key, rec.value)
                if rec.kind != "malformed":
                    self.sent[rec.key] = at
                n += 1
            self.producer.poll(0)
            time.sleep(0.002)
        self.producer.flush(30)
        self.achieved = n / max(1e-3, time.monotonic() - start)

    def join(self) -> None:
        self.thread.join()


def percentiles(values: Sequence[float]) -> dict[str, float | int | None]:
    """n, nearest-rank p50 / p90 / p99 and max of `values` (None when empty)."""
    if not values:
        return {"n": 0, "p50": None, "p90": None, "p99": None, "max": None}
    v = sorted(values)

    def rank(q: float) -> float:
        return v[max(0, min(len(v) - 1, -(-int(q * 1000) * len(v) // 1000) - 1))]

    return {"n": len(v), "p50": rank(0.5), "p90": rank(0.9), "p99": rank(0.99), "max": v[-1]}


class Arrivals:
    """Lane arrivals of the keys a pacer sent: visible and produced latencies (ms)."""

    def __init__(self) -> None:
        self.pacers: list[Pacer] = []
        self.visible: dict[bytes, int] = {}
        self.produced: dict[bytes, int] = {}
        self.lanes: set[str] = set()

    def __call__(self, topic: str, key: bytes | None, ts: int, received: float) -> None:
        if topic not in self.lanes or key is None or key in self.visible:
            return
        for pacer in self.pacers:
            at = pacer.sent.get(key)
            if at is not None:
                self.visible[key] = int(received * 1000) - at
                self.produced[key] = ts - at
                return

    def of(self, pacer: Pacer) -> tuple[list[int], list[int]]:
        keys = [k for k in pacer.sent if k in self.visible]
        return [self.visible[k] for k in keys], [self.produced[k] for k in keys]


def sustained_rate(args: argparse.Namespace) -> float:
    if args.rate:
        return float(args.rate)
    doc = load_result("throughput") or {}
    value = doc.get("figures", {}).get(SUSTAINED, {}).get("value")
    return float(value) if value else 500.0


def level(run: Run, arrivals: Arrivals, fraction: float, rate: float, seconds: float, seed: int,
          result: Result, suffix: str = "") -> None:
    pacer = Pacer(run, Generator(seed=seed), fraction * rate, seconds)
    arrivals.pacers.append(pacer)
    pacer.start()
    assert run.tally is not None
    while pacer.thread.is_alive():
        run.tally.poll(0.5)
    pacer.join()
    routed = int(len(pacer.sent) * 0.79)  # ~79 % of the mix reaches a lane; wait for stragglers a while
    end = time.monotonic() + 30
    while time.monotonic() < end:
        run.tally.poll(1.0)
        got = len(arrivals.of(pacer)[0])
        if got >= routed and time.monotonic() > end - 27:
            break
    visible, produced = arrivals.of(pacer)
    vis, prod = percentiles(visible), percentiles(produced)
    pct = f"{fraction * 100:.0f} %{suffix}"
    note = f"{pacer.achieved:,.0f}/s sent for {seconds:.0f} s, {vis['n']:,} lane arrivals"
    for q in ("p50", "p90", "p99", "max"):
        result.add(f"{q} at {pct} load", vis[q], "ms", note if q == "p50" else "")
    result.add(f"p99 at {pct} load (worker's produce timestamp)", prod["p99"], "ms",
               "reported_at -> the lane record's timestamp, without the reader's fetch")
    result.details[f"level {pct}"] = {"rate": fraction * rate, "achieved": pacer.achieved, "visible": vis,
                                      "produced": prod, "sent": len(pacer.sent)}
    console.print(f"  {pct}: {pacer.achieved:,.0f}/s -> p50 {vis['p50']} p99 {vis['p99']} max {vis['max']} ms "
                  f"({vis['n']:,} arrivals)")


STAGES = ("to intake's send", "to routing's send", "to visible")


def stages(sent: Mapping[str, int], candidate_at: Mapping[str, int], routed_at: Mapping[str, int],
           visible_ms: Mapping[str, int]) -> dict[str, dict[str, float | int | None]]:
    """Where each referral's time to the lane went, hop by hop (ms; percentiles of each stage over the
    referrals seen at every step): from reported_at to intake's send of its candidate (the pack's
    timestamp in internal.dedup[.urgent]), then to routing's send of the lane record (its
    timestamp: this includes waiting for intake's transaction to commit), then to being visible
    to a read_committed reader (routing's commit and the reader's fetch)."""
    rows = [(at, candidate_at[rid], routed_at[rid], at + visible_ms[rid]) for rid, at in sent.items()
            if rid in candidate_at and rid in routed_at and rid in visible_ms]
    return {name: percentiles([row[i + 1] - row[i] for row in rows]) for i, name in enumerate(STAGES)}


def critical_stages(run: Run, arrivals: Arrivals, critical: Pacer) -> dict[str, dict[str, float | int | None]]:
    """`stages` of the critical referrals, from the topics' record timestamps."""
    from streams.codec import default_codec

    codec = default_codec()
    sent = {key.decode(): at for key, at in critical.sent.items()}

    def first_timestamps(topics: list[str]) -> dict[str, int]:
        return {rid: m.timestamp()[1] for rid, m in kafkaio.first_seen(run.settings, topics, codec).items()
                if rid in sent}

    visible = {key.decode(): ms for key, ms in arrivals.visible.items() if key in critical.sent}
    return stages(sent, first_timestamps(run.names.candidates), first_timestamps([run.names.lane("google", "CRITICAL")]),
                  visible)


def critical_phase(run: Run, arrivals: Arrivals, args: argparse.Namespace, rate: float, result: Result) -> None:
    standard = run.names.lane("google", "STANDARD")
    assert run.tally is not None
    backlog_gen = Generator(mix=Mix(duplicates=0, labelled=0, critical=0, malformed=0, unroutable=0), seed=41,
                            hosts=(0,))
    before = run.tally.by_topic[standard].count
    kafkaio.preload(run.settings, run.names, backlog_gen.records(args.backlog, now_ms()))
    end = time.monotonic() + 120
    while run.tally.by_topic[standard].count < before + args.backlog and time.monotonic() < end:
        run.tally.poll(1.0)
    queued = run.tally.by_topic[standard].count
    run.wait_lag("worker", 120)  # the worker is done with the backlog (reactions included): only the lane holds it
    console.print(f"  google's standard lane holds {queued:,} referrals; operator starts")

    crit_gen = Generator(mix=Mix(duplicates=0, labelled=0, critical=1.0, malformed=0, unroutable=0), seed=43,
                         hosts=(0,))
    critical = Pacer(run, crit_gen, args.critical_rate, args.seconds)
    background = Pacer(run, Generator(seed=47), args.background * rate, args.seconds)
    out = run.tmp / "operator.json"
    probe = procs.Proc([sys.executable, "-m", "bench.operator_probe", "google", str(args.seconds + 20),
                        str(args.standard_ms), str(out)], procs.env_for(run.settings), run.tmp / "operator.log").start()
    try:
        time.sleep(4)  # the operator is assigned and busy with the backlog
        arrivals.pacers += [background, critical]
        background.start()
        critical.start()
        while critical.thread.is_alive():
            run.tally.poll(0.5)
        background.join()
        critical.join()
        assert probe.proc is not None
        probe.proc.wait(args.seconds + 60)
    finally:
        probe.stop()
    report: dict[str, Any] = json.loads(out.read_text()) if out.exists() else {"critical": [], "other": 0}
    latencies = [ms for rid, ms in report["critical"] if rid.encode() in critical.sent]
    handled = {"standard": int(report["other"]), "critical": len(report["critical"])}
    backlog_left = run.tally.by_topic[standard].count - handled["standard"]
    lat = percentiles(latencies)
    in_lane = percentiles(arrivals.of(critical)[0])
    note = (f"{lat['n']} of {len(critical.sent)} critical referrals; operator handled {handled['standard']:,} standard "
            f"meanwhile, {backlog_left:,} still queued at the end")
    for q in ("p50", "p90", "p99", "max"):
        result.add(f"critical {q} under backlog (to the operator)", lat[q], "ms", note if q == "p50" else "")
    result.add("critical p99 under backlog (visible in the lane)", in_lane["p99"], "ms",
               "reported_at -> visible in operator.google.critical")
    by_stage = critical_stages(run, arrivals, critical)
    for name, pct in by_stage.items():
        result.add(f"critical p99 under backlog, {name}", pct["p99"], "ms",
                   "hop by hop: reported_at -> intake's send -> routing's send -> visible in the lane"
                   if name == STAGES[0] else "")
    result.details["critical under backlog"] = {"operator": lat, "lane": in_lane, "queued_at_start": queued,
                                                "left_at_end": backlog_left, "handled": handled,
                                                "background_rate": args.background * rate, "stages": by_stage}
    console.print(f"  critical under backlog: p50 {lat['p50']} p99 {lat['p99']} max {lat['max']} ms; "
                  f"{backlog_left:,} standard still queued; by hop (p50 / p99): "
                  + ", ".join(f"{name} {pct['p50']} / {pct['p99']}" for name, pct in by_stage.items()))


def warm_up(run: Run, rate: float) -> Arrivals:
    """Start the worker and wait until it routes a paced trickle: the levels then time a warm pipeline."""
    arrivals = Arrivals()
    arrivals.lanes = set(run.lanes)
    tally = run.open_tally(on_message=arrivals, batch_wait=0.005)
    run.start()
    warm = Pacer(run, Generator(seed=5), 50, 4)
    arrivals.pacers.append(warm)
    warm.start()
    end = time.monotonic() + 120
    while len(arrivals.of(warm)[0]) < 0.7 * len(warm.sent) or warm.thread.is_alive():
        tally.poll(0.5)
        run.check_alive()
        if time.monotonic() > end:
            raise RuntimeError("the worker routed nothing in 120 s")
    console.print(f"  worker ready after {time.monotonic() - run.started_at:.1f} s; levels of {rate:,.0f}/s")
    return arrivals


def run(args: argparse.Namespace) -> Result:
    rate = sustained_rate(args)
    result = Result("latency", "Latency: reported_at -> lane, paced load; critical under a standard backlog",
                    {"sustained_rate": rate, "levels": LEVELS, "seconds_per_level": args.seconds,
                     "backlog": args.backlog, "critical_rate": args.critical_rate, "standard_ms": args.standard_ms,
                     "background": args.background,
                     "sink": not args.no_sink, "mix": Mix().as_dict()})
    with Run("lat", workers=1, sink=not args.no_sink) as run:
        arrivals = warm_up(run, rate)
        guarantee = run.settings.guarantee
        result.parameters["guarantee"] = guarantee
        for i, fraction in enumerate(LEVELS):
            level(run, arrivals, fraction, rate, args.seconds, 100 + i, result)
            time.sleep(2)
        critical_phase(run, arrivals, args, rate, result)
    if args.other_guarantee and guarantee == "exactly_once":
        # the same levels at at-least-once: what the transactions' commit interval costs in latency
        console.print("  the same levels under at_least_once")
        with Run("lat", workers=1, sink=not args.no_sink, worker_env={"SIGNALEMENT_GUARANTEE": "at_least_once"}) as run:
            arrivals = warm_up(run, rate)
            for i, fraction in enumerate(LEVELS):
                level(run, arrivals, fraction, rate, args.seconds, 100 + i, result, ", at_least_once")
                time.sleep(2)
    p99 = result.figures["p99 at 50 % load"].value
    result.target("p99 at 50 % load", "<= 100 ms", f"{p99} ms", p99 is not None and p99 <= 100)
    crit = result.figures["critical p99 under backlog (to the operator)"].value
    result.target("critical p99 under backlog", "<= 250 ms", f"{crit} ms", crit is not None and crit <= 250)
    return result
