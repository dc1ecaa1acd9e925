"""`signalement simulate`: realistic load for demos and benchmarks, reproducible with --seed.

Reporters publish at `--rate` referrals/s (Poisson arrivals) for `--duration` s, with a crisis
burst a third of the way in; simulated operators consume their lanes by strict priority
(OperatorClient) and decide after log-normal reaction times compressed by `--speed`. The
pipeline worker must be running. Its deadlines come from the policy file, in real time: for a
compressed demo, write a policy scaled by the same speed and give it to the worker:

    signalement simulate --write-policy /tmp/policy-x60.yaml --speed 60
    SIGNALEMENT_POLICY=/tmp/policy-x60.yaml signalement worker &
    signalement simulate --speed 60 --duration 120 --rate 20 --seed 7

Python: `simulate(settings, SimConfig(duration=30, rate=50, seed=1)) -> SimSummary`.
"""

from __future__ import annotations

import argparse
import logging
import random
import signal
import time
from dataclasses import dataclass, fields
from pathlib import Path

import yaml
from rich.console import Console

from clients.simmodel import scale_policy
from clients.simrun import SimSummary, Simulation
from streams.config import Settings
from streams.errors import SignalementError
from streams.policy import Policy
from streams.topics import Topics

log = logging.getLogger("signalement.clients.simulate")
console = Console(highlight=False)


@dataclass(frozen=True)
class SimConfig:
    """What to simulate; every field has a demo-friendly default."""

    duration: float = 60.0          # wall seconds of referrals
    rate: float = 20.0              # referrals per second (Poisson), besides the crisis
    speed: float = 60.0             # 60: an hour of operator activity plays in a minute
    seed: int | None = None         # None: a random seed, reported in the summary
    crisis_size: int = 500          # URLs of the crisis content (0: no crisis)
    crisis_at: float = 0.3          # when the burst starts, as a fraction of the duration
    crisis_span: float = 0.1        # how long it lasts, as a fraction of the duration
    unknown_share: float = 0.01     # URLs on hosts no operator answers for
    malformed_share: float = 0.01   # records broken on purpose (they end in referrals.rejected)
    operators: tuple[str, ...] | None = None  # simulated operators; None: all of the registry, (): none
    reporters: tuple[str, ...] | None = None  # None: every reporter of the registry
    drain: float = 0.0              # seconds operators keep deciding after the last referral
    progress: bool = False          # a live rich display
    topics: Topics | None = None    # default: the settings' prefix

    def checked(self) -> SimConfig:
        """Self, or a SignalementError naming the first impossible value."""
        for name in ("duration", "rate", "speed"):
            if getattr(self, name) <= 0:
                raise SignalementError(f"{name} must be positive, got {getattr(self, name)}")
        for name in ("crisis_at", "crisis_span", "unknown_share", "malformed_share"):
            if not 0 <= getattr(self, name) <= 1:
                raise SignalementError(f"{name} must be within 0..1, got {getattr(self, name)}")
        if self.crisis_size < 0 or self.drain < 0:
            raise SignalementError("crisis_size and drain must not be negative")
        return self


def simulate(settings: Settings, config: SimConfig) -> SimSummary:
    """Run one simulation to its end (or until SIGINT) and return what happened."""
    config = config.checked()
    seed = config.seed if config.seed is not None else random.SystemRandom().randrange(2**31)
    sim = Simulation(settings, config, seed)
    try:
        return sim.run()
    finally:
        sim.close()


def write_policy(source: Path, target: Path, speed: float) -> Policy:
    """Write `source` with every duration divided by `speed`; return it as loaded (so it is valid)."""
    doc = yaml.safe_load(source.read_text())
    scaled = scale_policy(doc, speed)
    header = (f"# {source.name} with every duration divided by {speed:g} (signalement simulate --speed {speed:g}).\n"
              f"# Use it with SIGNALEMENT_POLICY={target} signalement worker\n")
    target.write_text(header + yaml.safe_dump(scaled, sort_keys=False))
    return Policy.load(target)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of `signalement simulate` (registered by streams.cli)."""
    parser.add_argument("--duration", type=float, default=60.0, help="seconds of wall time (default 60)")
    parser.add_argument("--rate", type=float, default=20.0, help="referrals per second (default 20)")
    parser.add_argument("--speed", type=float, default=60.0, help="time compression of reactions (default 60)")
    parser.add_argument("--seed", type=int, help="make the load reproducible")
    parser.add_argument("--crisis", type=int, default=500, dest="crisis_size", help="URLs in the crisis burst (0: none)")
    parser.add_argument("--crisis-at", type=float, default=0.3, help="burst start, fraction of the duration")
    parser.add_argument("--unknown-share", type=float, default=0.01, help="share of URLs on unknown hosts")
    parser.add_argument("--malformed-share", type=float, default=0.01, help="share of malformed records")
    parser.add_argument("--operators", help="comma-separated operators to simulate (default all; 'none': none)")
    parser.add_argument("--reporters", help="comma-separated reporters (default all)")
    parser.add_argument("--drain", type=float, default=0.0, help="seconds operators keep deciding at the end")
    parser.add_argument("--no-progress", action="store_true", help="no live display")
    parser.add_argument("--write-policy", type=Path, metavar="PATH",
                        help="write the policy scaled by --speed to PATH and exit")


def _ids(text: str | None) -> tuple[str, ...] | None:
    if text is None:
        return None
    return () if text.strip() == "none" else tuple(t.strip() for t in text.split(",") if t.strip())


def config_from(args: argparse.Namespace) -> SimConfig:
    """A SimConfig from the parsed command line."""
    names = {f.name for f in fields(SimConfig)}
    values = {k: v for k, v in vars(args).items() if k in names and k not in ("operators", "reporters")}
    return SimConfig(**values, operators=_ids(args.operators), reporters=_ids(args.reporters),
                     progress=not args.no_progress)


def run(args: argparse.Namespace) -> int:
    """Write a scaled policy, or simulate and print the summary; 2 on a configuration error."""
    settings = Settings.from_env()
    try:
        if args.write_policy:
            policy = write_policy(settings.policy_path, args.write_policy, args.speed)
            critical = policy.deadlines["CRITICAL"]
            console.print(f"wrote {args.write_policy}: CRITICAL ack {critical.ack_ms} ms, decide {critical.decide_ms} ms"
                          f"\nrun the worker with: SIGNALEMENT_POLICY={args.write_policy} signalement worker")
            return 0
        config = config_from(args)
        if config.speed != 1:
            console.print(f"[dim]reactions are compressed {config.speed:g}x; the worker's deadlines should be too: "
                          f"`signalement simulate --write-policy PATH --speed {config.speed:g}`, then "
                          "SIGNALEMENT_POLICY=PATH signalement worker[/dim]")
        signal.signal(signal.SIGTERM, signal.default_int_handler)
        started = time.monotonic()
        summary = simulate(settings, config)
    except (SignalementError, OSError) as exc:
        console.print(f"[red]error[/red]: {exc}")
        return 2
    console.print(summary.table())
    if summary.operators and not sum(sum(c.values()) for c in summary.received.values()):
        console.print("[yellow]no referral reached an operator's lane: is the worker running? "
                      "(`signalement worker`)[/yellow]")
    log.info("simulation done seed=%d sent=%d elapsed=%.1f", summary.seed, sum(summary.sent.values()),
             time.monotonic() - started)
    return 0
