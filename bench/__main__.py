"""`python -m bench <name> [options]` or `python -m bench all`: run benchmarks, print tables, write JSON.

    python -m bench ceilings --n 200000
    python -m bench throughput --workers 1
    python -m bench all            # every benchmark with its default (time-bounded) parameters
    python -m bench report         # the results as Markdown into docs/benchmarks.md
    python -m bench profile        # where the worker's time goes (py-spy; not part of `all`)
    python -m bench soak           # workers started together, again and again: anything lost? (not in `all`)

Results go to bench/results/<name>.json; docs/benchmarks.md explains the method and the figures.
"""

from __future__ import annotations

import argparse
import importlib
import sys
import time

from bench.common import console, save, show, stack_settings

# name -> (module, what it measures); `all` runs them in this order (ceilings first: the others use them)
BENCHMARKS = {
    "ceilings": ("bench.ceilings", "raw confluent-kafka and Faust pass-through on the same payloads"),
    "throughput": ("bench.throughput", "the whole worker + sink draining the realistic mix, 1 and 2 workers"),
    "logic": ("bench.logic", "the pipeline's own code per referral, without Kafka or Faust: a floor for the CPU"),
    "tables": ("bench.tables", "a table read-modify-write in the worker: Faust's path against a staged unit"),
    "latency": ("bench.latency", "reported_at -> lane at 10/50/80 % load; critical under a standard backlog"),
    "crisis": ("bench.crisis", "a burst of 90 % duplicates: time to drain, peak RSS, nothing lost"),
    "state": ("bench.state", "the dedup table on RocksDB at scale: RSS, disk, lookups/s, reopen time"),
    "analytics": ("bench.analytics", "sink rows/s; catalogue query latency over millions of reactions"),
}

# run on demand only: a check of the rebalances at start-up, several minutes, not a rate
SOAK = ("bench.soak", "workers started together on a preloaded backlog, again and again; losses located")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="name", required=True)
    for name, (module, help_text) in BENCHMARKS.items():
        importlib.import_module(module).add_arguments(sub.add_parser(name, help=help_text.replace("%", "%%")))
    sub.add_parser("all", help="every benchmark, defaults, in order")
    from bench import profile, report, soak

    report.add_arguments(sub.add_parser("report", help="the results as Markdown into docs/benchmarks.md"))
    profile.add_arguments(sub.add_parser("profile", help="py-spy samples of the worker, grouped (not in `all`)"))
    soak.add_arguments(sub.add_parser("soak", help=SOAK[1] + " (not in `all`)"))
    return parser


def run_one(name: str, args: argparse.Namespace) -> bool:
    module = importlib.import_module(BENCHMARKS[name][0])
    console.rule(f"[bold]{name}[/]: {BENCHMARKS[name][1]}")
    started = time.monotonic()
    try:
        result = module.run(args)
    except Exception as exc:
        console.print_exception()
        console.print(f"[red]{name} failed: {type(exc).__name__}: {exc}[/]")
        return False
    show(result)
    path = save(result, stack_settings())
    console.print(f"  {name}: {time.monotonic() - started:.0f} s, written to {path}")
    return True


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    if args.name == "report":
        from bench import report

        return report.run(args)
    if args.name == "profile":
        BENCHMARKS["profile"] = ("bench.profile", "py-spy samples of the worker, grouped")
    if args.name == "soak":
        BENCHMARKS["soak"] = SOAK
    if args.name != "all":
        return 0 if run_one(args.name, args) else 1
    started, failed = time.monotonic(), []
    for name in BENCHMARKS:
        defaults = build_parser().parse_args([name])
        if not run_one(name, defaults):
            failed.append(name)
    console.rule(f"all benchmarks in {(time.monotonic() - started) / 60:.1f} min"
                 + (f"; [red]failed: {', '.join(failed)}[/]" if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
