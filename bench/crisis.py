"""Crisis burst: referrals of a few items re-reported across reporters (90 % duplicates), sent as fast as
one producer can while the worker (and the sink) run.

Meanwhile (unless --critical-rate 0) fresh removal orders trickle in, half on the reporters'
urgent topics (as their client sends them) and half on their main topics (a client that does not),
and each one's latency is timed from reported_at to its arrival in a lane: what the urgent path is
for, a removal order that does not wait behind the crisis.

Measured: the producer's rate, time from the first send to the last output record, the worker's
peak RSS (VmHWM), and the count: distinct referral_ids in the lanes and referrals.unroutable +
referrals.duplicates + referrals.rejected must equal what was sent. The default size is what fits
the suite's time budget on this machine; `--size 1000000` runs the full burst, and the report
gives the 1M figure extrapolated from the measured rate (linear: the dedup state of a crisis is
small, see bench.state for how the table behaves at scale).
"""

from __future__ import annotations

import argparse
import threading
import time

from bench import cores, kafkaio
from bench.common import Result, console
from bench.latency import Arrivals, Pacer, percentiles
from bench.load import Crisis, Generator, Mix
from bench.pipeline import Run

FULL = 1_000_000


class BurstEnd:
    """The newest output record of the burst, the removal orders paced over it aside (their keys
    are their pacers'), passing every record on to the latency tally."""

    def __init__(self, arrivals: Arrivals) -> None:
        self.arrivals = arrivals
        self.last_ts = 0

    def __call__(self, topic: str, key: bytes | None, ts: int, received: float) -> None:
        self.arrivals(topic, key, ts, received)
        if ts > self.last_ts and not any(key in p.sent for p in self.arrivals.pacers):
            self.last_ts = ts


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--size", type=int, default=100_000, help=f"referrals in the burst (100000; the issue's: {FULL})")
    p.add_argument("--duplicates", type=float, default=0.9, help="share of re-reports (0.9)")
    p.add_argument("--timeout", type=float, default=420.0, help="give up after this many s (420)")
    p.add_argument("--no-sink", action="store_true", help="run without the ClickHouse sink")
    p.add_argument("--workers", type=int, default=1, help="worker processes (1); the group is stable before the burst")
    p.add_argument("--standby", type=int, default=None,
                   help="table standby replicas of the workers (SIGNALEMENT_STANDBY_REPLICAS; default: the setting's)")
    p.add_argument("--critical-rate", type=float, default=4.0,
                   help="removal orders/s during the burst, on each path (4; 0: none)")
    p.add_argument("--critical-after", type=float, default=5.0, help="s into the burst the removal orders start (5)")
    p.add_argument("--critical-seconds", type=float, default=25.0, help="s the removal orders last (25)")


def run(args: argparse.Namespace) -> Result:
    result = Result("crisis", "Crisis burst: 90 % duplicates across reporters, as fast as the producer can",
                    {"size": args.size, "duplicates": args.duplicates, "sink": not args.no_sink, "workers": args.workers,
                     "standby": args.standby,
                     "critical_rate": args.critical_rate, "critical_after": args.critical_after,
                     "critical_seconds": args.critical_seconds})
    env = {} if args.standby is None else {"SIGNALEMENT_STANDBY_REPLICAS": str(args.standby)}
    with Run("crisis", workers=args.workers, sink=not args.no_sink, worker_env=env) as run:
        arrivals = Arrivals()
        arrivals.lanes = set(run.lanes)
        burst_end = BurstEnd(arrivals)
        run.open_tally(on_message=burst_end, batch_wait=0.005)  # arrival times within ~5 ms
        run.start()
        warm = Crisis(duplicates=0.0, seed=3)
        kafkaio.preload(run.settings, run.names, (warm.next(int(time.time() * 1000)) for _ in range(20)))
        out = run.wait_outputs(20, 120, quiet_s=0.5)
        run.wait_group()
        console.print(f"  worker group ready after {time.monotonic() - run.started_at:.1f} s")
        cpu_ready = sum(p.cpu_seconds() for p in run.procs)  # start-up, joins and the warm-up
        gen = Crisis(duplicates=args.duplicates, seed=17)
        sent: dict[str, float] = {}

        def burst() -> None:
            sent["start"] = time.time()
            now = int(sent["start"] * 1000)
            counts = kafkaio.preload(run.settings, run.names, (gen.next(now) for _ in range(args.size)))
            sent["end"] = time.time()
            sent.update(counts)

        producer = threading.Thread(target=burst, daemon=True)
        # fresh removal orders on new items (google), on each path: the urgent topics and the main ones
        orders = {fast: Pacer(run, Generator(mix=Mix(duplicates=0, labelled=0, critical=1.0, malformed=0,
                                                     unroutable=0), seed=61 + fast, hosts=(0,)),
                              args.critical_rate, args.critical_seconds, fast_path=bool(fast))
                  for fast in (1, 0)} if args.critical_rate > 0 else {}
        arrivals.pacers += orders.values()
        sampler = cores.Sampler()
        sampler.start()
        producer.start()
        started = time.monotonic()
        rss_peak = 0
        end = time.monotonic() + args.timeout
        total = 20 + args.size
        while time.monotonic() < end:
            assert run.tally is not None
            run.tally.poll(2.0)
            if time.monotonic() - started >= args.critical_after:
                for pacer in orders.values():
                    if pacer.thread.ident is None:  # not started yet
                        pacer.start()
            rss_peak = max(rss_peak, *(p.status()["VmRSS"] for p in run.procs))
            pacing = any(p.thread.ident is None or p.thread.is_alive() for p in orders.values())
            out = run.outcome(total + sum(len(p.sent) for p in orders.values()))
            if out.complete and not producer.is_alive() and not pacing:
                run.tally.poll(2.0)
                break
            run.check_alive()
        producer.join(60)
        for pacer in orders.values():
            if pacer.thread.is_alive():
                pacer.join()
        total += sum(len(p.sent) for p in orders.values())
        out = run.outcome(total)
        hwm = max(p.status()["VmHWM"] for p in run.procs)
        cpu = sum(p.cpu_seconds() for p in run.procs)
        sampler.stop()
    assert out.last_ts is not None
    produce_s = sent.get("end", 0) - sent.get("start", 0)
    # to the burst's own last output: the removal orders paced over it end ~30 s in, whatever the burst does
    drain_s = burst_end.last_ts / 1000 - sent["start"]
    rate = args.size / drain_s if out.complete else 0.0
    result.add("producer rate", round(args.size / max(produce_s, 1e-3)), "referrals/s",
               f"{args.size:,} sent in {produce_s:.1f} s (one confluent-kafka producer)")
    result.add("burst drained in", round(drain_s, 1) if out.complete else None, "s",
               "first send -> the burst's last output record (the paced removal orders aside)" if out.complete else
               f"INCOMPLETE after {args.timeout:.0f} s: {out.accounted:,} of {total:,}")
    result.add("drain rate", round(rate), "referrals/s")
    used = sampler.cores(sent["start"], burst_end.last_ts / 1000)
    result.add("cores used by the worker processes during the burst", used.get("worker"), "cores",
               "first send -> the burst's last output, CPU s / wall s from /proc (bench.cores): "
               + cores.describe(used))
    result.details["cores during the burst"] = used
    for fast, pacer in orders.items():
        path = "urgent topic" if fast else "main topic"
        visible, produced = arrivals.of(pacer)
        lat = percentiles(visible)
        routed = percentiles(produced)  # to the lane record's timestamp: routing sent it (no commit, no reader)
        note = (f"{lat['n']} of {len(pacer.sent)} removal orders at {args.critical_rate:g}/s from "
                f"{args.critical_after:g} s into the burst; reported_at -> visible in the lane")
        for q in ("p50", "p99", "max"):
            result.add(f"removal order during the burst, {path}, {q}", lat[q], "ms", note if q == "p50" else "")
        for q in ("p50", "p99"):
            result.add(f"removal order during the burst, {path}, {q} to routing", routed[q], "ms",
                       "reported_at -> the lane record's timestamp (routing sent it; before any commit)" if q == "p50"
                       else "")
        result.details[f"removal orders, {path}"] = {"visible": lat, "routed": routed}
    result.add("1M burst drained in (extrapolated)", round(FULL / rate, 0) if rate else None, "s",
               "linear from the measured rate" if args.size < FULL else "measured")
    result.add("worker peak RSS", round(max(hwm, rss_peak) / 1024), "MiB",
               "VmHWM of the worker process" + ("es (largest)" if args.workers > 1 else ""))
    plural = "es" if args.workers > 1 else ""
    result.add("worker CPU per referral", round(cpu * 1e6 / total), "µs",
               f"{cpu:.1f} CPU s over {args.workers} worker process{plural}, start-up included")
    result.add("worker CPU per referral, the burst alone", round((cpu - cpu_ready) * 1e6 / (total - 20)), "µs",
               f"{cpu - cpu_ready:.1f} CPU s from the group ready to the end ({cpu_ready:.1f} s before)")
    result.add("items routed", out.items, "", f"{out.lane_records:,} lane records, {out.repeated:,} of an id already "
               f"in a lane ({out.shown_twice} of them not escalated)")
    result.add("duplicates recorded", out.duplicates)
    result.add("rejected", out.rejected)
    lost = total - out.accounted
    result.add("lost (sent - accounted)", lost, "", f"{total:,} sent incl. 20 warm-up")
    result.details["outcome"] = out.__dict__
    result.details["sent"] = {k: v for k, v in sent.items() if k not in ("start", "end")}
    full = FULL / rate if rate else None
    result.target("crisis 1M drained", "<= 180 s", f"{full:.0f} s" + (" (extrapolated)" if args.size < FULL else "")
                  if full else "incomplete", full is not None and full <= 180)
    result.target("worker RSS during the burst", "<= 1024 MiB", f"{max(hwm, rss_peak) / 1024:.0f} MiB",
                  max(hwm, rss_peak) <= 1024 * 1024)
    result.target("nothing lost", "accounted == sent", f"{out.accounted:,} of {total:,}", lost == 0)
    return result
