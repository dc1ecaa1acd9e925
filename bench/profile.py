"""`python -m bench profile`: where the worker's time goes, sampled with py-spy (not part of `all`).

A worker drains a backlog of the realistic mix (then, with `--paced`, takes the mix as it arrives at
a steady rate, as in the latency benchmark; then operators decide on part of it) while py-spy
samples it (`py-spy record --format raw`, 100 Hz, all threads). The paced phase also measures the
worker's CPU per referral without py-spy attached, for the first half of its load. The samples are grouped into the
pipeline's own steps and Faust / aiokafka / asyncio machinery; the JSON keeps the top frames.
Needs py-spy (`.venv/bin/pip install py-spy`).
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

from bench.common import Result, console
from bench.load import Generator, Mix
from bench.pipeline import Run

# (category, substring of a frame): the first category whose pattern is in a sample's stack wins
CATEGORIES = (
    ("consumer thread (aiokafka fetches; mostly idle)", "WorkerThread.run"),
    ("intake agent (decode, validate, normalise, encode, send)", "register.<locals>.intake "),
    ("routing agent (decode, dedup table, encode, sends)", "register.<locals>.routing "),
    ("reactions agent", "register.<locals>.reactions "),
    ("windows agent", "register.<locals>.windows "),
    ("Faust fetcher and conductor (per message in)", "Fetcher._fetcher"),
    ("Faust changelog buffer (table writes out)", "ProducerBuffer"),
    ("aiokafka produce requests and sender", "Sender._"),
    ("Faust changelog bookkeeping (persisted offsets)", "set_persisted_offset"),
    ("idle (event loop select)", "EpollSelector.select"),
)


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--n", type=int, default=40_000, help="referrals in the backlog (40000)")
    p.add_argument("--decisions", type=int, default=6_000, help="referrals then acknowledged and removed (6000)")
    p.add_argument("--seconds", type=int, default=30, help="seconds sampled per phase (30)")
    p.add_argument("--paced", type=float, default=0.0,
                   help="also sample while the mix arrives paced at this many referrals/s (0: no)")
    p.add_argument("--raw", type=Path, default=None, help="also keep py-spy's raw samples in this folder")


def summarise(raw: Path, top: int = 25) -> dict[str, object]:
    cats: Counter[str] = Counter()
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        n = int(count)
        total += n
        frames = stack.split(";")
        own[frames[-1]] += n
        for func in {f.split(" (")[0] + " (" + f.split(" (")[-1].split(":")[0] + ")" for f in frames}:
            inclusive[func] += n
        cats[next((name for name, pat in CATEGORIES if pat in stack), "other (asyncio, Faust streams, sensors)")] += n
    share = {k: round(100 * v / max(1, total), 1) for k, v in cats.most_common()}
    return {"samples": total, "categories_pct": share,
            "top_self_pct": {k: round(100 * v / max(1, total), 1) for k, v in own.most_common(top)},
            "top_inclusive_pct": {k: round(100 * v / max(1, total), 1) for k, v in inclusive.most_common(2 * top)}}


def spy(pid: int, out: Path, seconds: int) -> subprocess.Popen[bytes]:
    exe = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    return subprocess.Popen([exe, "record", "-o", str(out), "-f", "raw", "-r", "100", "-d", str(seconds), "--pid",
                             str(pid)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def keep(raw: Path, folder: Path | None) -> None:
    if folder is not None:
        folder.mkdir(parents=True, exist_ok=True)
        shutil.copy(raw, folder / raw.name)


def paced_phase(run: Run, args: argparse.Namespace, result: Result) -> None:
    """The mix at `args.paced`/s for twice `args.seconds`: CPU per referral in the first half, samples in the second."""
    from bench.latency import Pacer

    worker = run.procs[0]
    pacer = Pacer(run, Generator(mix=Mix(), seed=5), args.paced, 2 * args.seconds + 1).start()
    time.sleep(0.5)
    cpu0, t0 = worker.cpu_seconds(), time.monotonic()
    time.sleep(args.seconds)
    cpu, wall = worker.cpu_seconds() - cpu0, time.monotonic() - t0
    raw = run.tmp / "paced.txt"
    spy(worker.pid, raw, args.seconds).wait()
    pacer.join()
    per = 1e6 * cpu / max(1.0, args.paced * wall)
    result.add("paced: worker CPU per referral", round(per), "µs",
               f"{args.paced:,.0f}/s for {wall:.1f} s: {cpu:.2f} CPU s ({100 * cpu / wall:.0f} % of a core), no py-spy")
    result.details["paced"] = {**summarise(raw), "rate": args.paced, "cpu_s": round(cpu, 2), "wall_s": round(wall, 1)}
    keep(raw, args.raw)


def run(args: argparse.Namespace) -> Result:
    from bench.throughput import decisions_phase

    if not (shutil.which("py-spy") or Path(sys.executable).with_name("py-spy").exists()):
        raise RuntimeError("py-spy is not installed: .venv/bin/pip install py-spy")
    result = Result("profile", "Profile: where the worker's time goes (py-spy samples)",
                    {"n": args.n, "decisions": args.decisions, "seconds": args.seconds, "paced": args.paced})
    with Run("prof", workers=1, sink=True) as run:
        run.preload(Generator(mix=Mix(), seed=3).records(args.n, int(time.time() * 1000)))
        run.open_tally()
        run.start()
        time.sleep(8)  # past start-up
        raw = run.tmp / "referrals.txt"
        proc = spy(run.procs[0].pid, raw, args.seconds)
        run.wait_outputs(args.n, 600)
        run.wait_lag("worker", 120)
        proc.wait()
        result.details["referrals"] = summarise(raw)
        keep(raw, args.raw)
        if args.paced:
            paced_phase(run, args, result)
        if args.decisions:
            raw = run.tmp / "decisions.txt"
            proc = spy(run.procs[0].pid, raw, args.seconds)
            decisions_phase(run, args.decisions, result, 300)
            proc.wait()
            result.details["decisions"] = summarise(raw)
            keep(raw, args.raw)
    for phase in ("referrals", "paced", "decisions"):
        summary = result.details.get(phase)
        if isinstance(summary, dict):
            for name, pct in summary["categories_pct"].items():
                result.add(f"{phase}: {name}", pct, "% of samples")
    console.print(result.details)
    return result
