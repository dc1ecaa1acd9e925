"""Throughput: the whole worker (intake, dedup, priority, routing, reactions, windows) and the ClickHouse
sink, draining a backlog of the realistic mix preloaded into reports.*.

Rate = referrals sent / (last - first output timestamp) over the lanes, referrals.unroutable,
referrals.duplicates and referrals.rejected (the timestamps the worker's producer put on them).
Also: wall time from the worker's start, until the worker group and the sink have committed
everything (the reactions agent included), worker CPU per referral, peak RSS, and the cores each
process used while draining (bench.cores). Run with 1 worker process, then 2 (one consumer group,
partitions shared).

Each run follows a Faust pass-through of as many referrals on the same broker (bench.ceilings),
and its ratios are to that one: the machine's speed drifts by ±20 % within minutes, and a
ceiling measured at the start of `make bench` met another moment than a drain minutes later.
One worker runs `--pairs` times; its figures are the median pair's (by the sustained ratio),
with every pair's ratios in one figure.
"""

from __future__ import annotations

import argparse
import time

from bench import cores, kafkaio
from bench.ceilings import faust_ceiling
from bench.common import Result, ceilings_now, console, ratios
from bench.load import Generator, Mix
from bench.pipeline import Run
from clients.kafka import producer_config
from streams.codec import default_codec
from streams.config import Settings


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--n", type=int, default=60_000, help="referrals preloaded per run (60000)")
    p.add_argument("--workers", default="1,2", help="worker process counts to run, comma-separated (1,2)")
    p.add_argument("--timeout", type=float, default=300.0, help="give up on a run after this many s (300)")
    p.add_argument("--no-sink", action="store_true", help="run without the ClickHouse sink")
    p.add_argument("--decisions", type=int, default=8_000,
                   help="routed referrals acknowledged then removed after the 1-worker drain (8000; 0: none)")
    p.add_argument("--pairs", type=int, default=3,
                   help="Faust pass-through + 1-worker drain pairs; the median pair's figures are kept (3)")


def decisions_phase(run: Run, referrals: int, result: Result, timeout: float) -> None:
    """Operators acknowledge then remove `referrals` routed referrals: reactions, windows, ItemDecided."""
    by_lane = kafkaio.keys_by_topic(run.settings, run.lanes)
    picked: list[tuple[str, bytes]] = []
    chosen: set[bytes] = set()  # an escalated referral is in two lanes: decided once
    lanes = [(lane, keys) for lane, keys in by_lane.items() if keys]
    while len(picked) < referrals and any(keys for _, keys in lanes):
        for lane, keys in lanes:
            if keys and len(picked) < referrals:
                key = keys.pop()
                if key not in chosen:
                    chosen.add(key)
                    picked.append((lane.removeprefix(run.prefix).split(".")[1], key))
    codec = default_codec()
    tally = kafkaio.Tally(run.settings, [run.names.reactions])
    cpu0 = sum(p.cpu_seconds() for p in run.procs)
    producer = kafkaio.Producer(producer_config(run.settings))
    started, now = time.time(), int(time.time() * 1000)
    for operator, key in picked:
        for action in ("ACKNOWLEDGED", "REMOVED"):
            value = codec.encode("OperatorDecision", {"referral_id": key.decode(), "operator_id": operator,
                                                      "action": action, "acted_at": now, "reason": None,
                                                      "operator_ref": None})
            kafkaio.produce(producer, run.names.decisions(operator), key, value)
        producer.poll(0)
    producer.flush(60)
    decisions = 2 * len(picked)
    end = time.monotonic() + timeout
    try:
        while tally.total() < decisions and time.monotonic() < end:
            tally.poll(1.0)
            run.check_alive()
        first, last = tally.span()
    finally:
        tally.close()
    got = tally.by_topic[run.names.reactions].count
    sources = [run.names.decisions(op) for op in sorted(run.registry.operators)]
    if got < decisions:  # say why: decisions the worker dead-lettered, by code
        codes = kafkaio.rejection_codes(run.settings, run.names.rejected, set(sources))
        console.print(f"  decisions: {got:,} reactions of {decisions:,}; dead-lettered: {codes or 'none'}")
        result.details["decisions shortfall"] = {"reactions": got, "rejected": codes}
    run.wait_lag("worker", 120, topics=[*sources, run.names.window_input, *run.names.candidates])
    all_done = time.time() - started
    cpu = sum(p.cpu_seconds() for p in run.procs) - cpu0
    rate = decisions / max(1e-3, ((last or 0) - (first or 0)) / 1000) if got >= decisions else 0.0
    result.add("decisions/s, 1 worker", round(rate), "decisions/s",
               f"{decisions:,} decisions ({len(picked):,} referrals acknowledged, then removed) -> {got:,} reactions; "
               "first -> last reaction")
    result.add("decisions: wall until windows and dedup committed, 1 worker", round(all_done, 1), "s",
               "first decision sent -> the worker group committed decisions, internal.windows and internal.dedup")
    result.add("worker CPU per decision, 1 worker", round(cpu * 1e6 / max(1, decisions)), "µs",
               "reactions + windows (+ the ItemDecided hop through routing)")
    console.print(f"  decisions: {rate:,.0f}/s, {cpu * 1e6 / max(1, decisions):,.0f} µs CPU each")


def commits(settings: Settings) -> str:
    """How the worker commits, for the notes: the interval, and the paced one behind a backlog."""
    text = f"commits every {settings.commit_interval:g} s"
    if settings.guarantee == "exactly_once" and settings.backlog_commit_interval > 0:
        text += f", every {settings.backlog_commit_interval:g} s behind a backlog"
    return text


def one(n: int, workers: int, sink: bool, timeout: float, result: Result, ceilings: dict[str, float],
        decisions: int = 0) -> float:
    """One run; adds its figures to result; returns its referrals/s."""
    tag = f"{workers} worker{'s' if workers > 1 else ''}"
    with Run("thr", workers=workers, sink=sink) as run:
        counts = run.preload(Generator(mix=Mix(), seed=3).records(n, int(time.time() * 1000)))
        run.open_tally()
        sampler = cores.Sampler()
        sampler.start()
        run.start()
        out = run.wait_outputs(n, timeout, quiet_s=0)
        wall_outputs = time.monotonic() - run.started_at
        cpu = sum(p.cpu_seconds() for p in run.procs)
        peak = max(p.status()["VmHWM"] for p in run.procs)
        # the drain ends when the group has committed everything: read the lag at once and often
        # (the end is taken when the read that saw none returns: at most `last_check_s` late)
        lag_s = run.wait_lag("worker", 120, every=0.1)
        wall_worker = time.monotonic() - run.started_at if lag_s is not None else None
        all_done = time.time()
        cpu_all = sum(p.cpu_seconds() for p in run.procs)
        sampler.stop()
        drain = sampler.cores(out.first_ts / 1000, all_done) if out.first_ts is not None else {}
        if out.complete:
            out = run.quiet(n, 3.0)  # then a quiet period catches outputs that should not be there
        sink_s = run.wait_lag("sink", 120) if sink else None
        wall_sink = time.monotonic() - run.started_at if sink_s is not None else None
        rate = n / out.span_s if out.complete else 0.0
        result.add(f"referrals/s, {tag}", round(rate), "referrals/s",
                   f"{n:,} sent, {out.span_s:.1f} s first->last output" if out.complete
                   else f"INCOMPLETE: {out.accounted:,} of {n:,} in {timeout:.0f} s", ratios(rate, ceilings))
        sustained = 0.0
        if out.complete and lag_s is not None and out.first_ts is not None:
            sustained = n / max(1e-3, all_done - out.first_ts / 1000)
        result.add(f"sustained referrals/s, {tag}", round(sustained), "referrals/s",
                   "first output -> the worker group committed every source topic (reactions included; "
                   f"{run.settings.guarantee}, {commits(run.settings)}; lag read in {run.last_check_s:.2f} s)",
                   ratios(sustained, ceilings))
        result.add(f"lane records/s, {tag}", round(out.lane_records / out.span_s), "records/s",
                   f"{out.lane_records:,} lane records")
        result.add(f"wall to last output, {tag}", round(wall_outputs, 1), "s", "from worker start (start-up included)")
        result.add(f"wall until worker group committed all, {tag}",
                   round(wall_worker, 1) if wall_worker else None, "s",
                   f"reactions agent included; {commits(run.settings)}")
        if sink:
            result.add(f"wall until sink committed all, {tag}", round(wall_sink, 1) if wall_sink else None, "s",
                       "rows in ClickHouse")
        result.add(f"worker CPU per referral, {tag}", round(cpu_all * 1e6 / n), "µs",
                   f"{cpu_all:.1f} CPU s over all worker processes until all committed, start-up included "
                   f"({cpu:.1f} s at the last output)")
        result.add(f"worker peak RSS, {tag}", round(peak / 1024), "MiB", "VmHWM, largest worker process")
        result.add(f"cores used by the worker processes while draining, {tag}", drain.get("worker"), "cores",
                   "first output -> all committed, CPU s / wall s from /proc (bench.cores): " + cores.describe(drain))
        result.details[tag] = {"sent": counts, "outcome": out.__dict__, "accounted": out.accounted,
                               "cores while draining": drain}
        ok = out.complete and out.accounted == n
        result.add(f"accounted == sent, {tag}", int(ok), "bool",
                   f"items {out.items:,} + duplicates {out.duplicates:,} + rejected {out.rejected:,} = "
                   f"{out.accounted:,} of {n:,}; {out.repeated} lane records of an id already in a lane "
                   f"({out.repeated - out.shown_twice} escalations, {out.shown_twice} not escalated: shown twice); "
                   f"{out.rejected_records - out.rejected} rejections written twice (records redelivered after a "
                   "rebalance, at_least_once)")
        console.print(f"  {tag}: {rate:,.0f} referrals/s to the outputs, {sustained:,.0f}/s sustained, "
                      f"CPU {cpu_all:.1f} s, peak RSS {peak / 1024:.0f} MiB")
        if decisions and ok:
            decisions_phase(run, decisions, result, timeout)
        return sustained


def paired(args: argparse.Namespace, workers: int, pairs: int, result: Result, raw: float | None) -> float:
    """`pairs` runs of `workers` worker processes, each right after a Faust pass-through of as many
    referrals; the median pair's figures (by the sustained ratio) go into `result` (the decisions'
    from the pair that ran them), with every pair's ratios. Returns the median pair's sustained rate."""
    tag = f"{workers} worker{'s' if workers > 1 else ''}"
    runs = []
    for k in range(pairs):
        faust, cpu = faust_ceiling(args.n, args.timeout)
        console.print(f"  Faust pass-through before {tag} ({k + 1} of {pairs}): {faust:,.0f} msg/s, "
                      f"{cpu * 1e6 / args.n:.0f} µs of CPU per message")
        scratch = Result(result.name, result.title, {})
        decisions = args.decisions if workers == 1 and k == pairs - 1 else 0
        sustained = one(args.n, workers, not args.no_sink, args.timeout, scratch, {"faust": faust, **(
            {"raw": raw} if raw else {})}, decisions)
        runs.append((sustained / faust, faust, sustained, scratch))
    ordered = sorted(runs, key=lambda r: r[0])
    ratio, faust, sustained, median = ordered[len(ordered) // 2]
    for label, fig in median.figures.items():
        if not label.startswith("decisions"):
            result.figures[label] = fig
    for *_, scratch in runs:
        result.figures.update({k: v for k, v in scratch.figures.items() if k.startswith("decisions")})
    result.add(f"Faust pass-through before the drain, {tag}", round(faust), "msg/s",
               f"{args.n:,} referrals forwarded by a Faust agent on the same broker, right before the median pair's drain")
    outputs = [scratch.figures[f"referrals/s, {tag}"].value or 0 for *_, scratch in runs]
    result.add(f"sustained / Faust pass-through, every pair, {tag}", round(ratio, 3), "ratio",
               "median of " + ", ".join(f"{r:.3f} ({s:,.0f} / {f:,.0f})" for r, f, s, _ in runs)
               + "; to the outputs: " + ", ".join(f"{o / f:.3f}" for o, (_, f, _, _) in zip(outputs, runs, strict=True)))
    result.details[f"pairs, {tag}"] = [
        {"faust": f, "sustained": s, "ratio": r, "to the outputs": o,
         "worker CPU per referral": scratch.figures[f"worker CPU per referral, {tag}"].value,
         "cores while draining": scratch.details.get(tag, {}).get("cores while draining")}
        for (r, f, s, scratch), o in zip(runs, outputs, strict=True)]
    for key, value in median.details.items():
        result.details[key] = value
    return sustained


def run(args: argparse.Namespace) -> Result:
    raw = ceilings_now_or_empty().get("raw")
    counts = [int(x) for x in str(args.workers).split(",") if x]
    result = Result("throughput", "Throughput: whole worker + ClickHouse sink, realistic mix",
                    {"n": args.n, "workers": counts, "sink": not args.no_sink, "mix": Mix().as_dict(),
                     "decisions": args.decisions, "pairs": args.pairs, "raw ceiling": raw})
    rates = {w: paired(args, w, args.pairs if w == 1 else 1, result, raw) for w in counts}
    best1 = rates.get(1, 0.0)
    if 1 in rates:
        result.target("throughput, 1 worker (sustained)", ">= 10,000 referrals/s", f"{best1:,.0f}/s",
                      best1 >= 10_000)
        ratio = result.figures["sustained / Faust pass-through, every pair, 1 worker"].value or 0.0
        result.target("ratio to the Faust pass-through", ">= 0.5", f"{ratio:.2f} (median of {args.pairs} pairs)",
                      ratio >= 0.5)
    return result


def ceilings_now_or_empty() -> dict[str, float]:
    from bench.common import stack_settings

    return ceilings_now(stack_settings())
