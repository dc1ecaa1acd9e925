"""`make demo`: the whole job on the local stack — referrals in, lanes, decisions, reaction
windows in ClickHouse — with time compressed so two hours of activity play in about two minutes.

Steps: stack up, topics, database, a policy scaled to the speed, the worker and the sink as
processes, the simulator (reporters, a crisis burst, operators deciding), then the analyst
tables and report.html. The stack keeps running afterwards; `make stack-down` stops it.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from rich.console import Console

from clients.simulate import SimConfig, simulate, write_policy
from sinks.migrate import client_for, migrate
from streams.admin import create_topics
from streams.config import ROOT, Settings
from streams.stack.manager import ensure_up

console = Console()


def start(name: str, args: list[str], env: dict[str, str], logs: Path) -> subprocess.Popen[bytes]:
    """A pipeline process in its own session, its output in <logs>/<name>.log."""
    out = (logs / f"{name}.log").open("ab")
    return subprocess.Popen([sys.executable, "-m", "streams.cli", *args], cwd=ROOT, env=env, stdout=out,
                            stderr=subprocess.STDOUT, start_new_session=True)


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)


def wait_for_log(path: Path, text: str, timeout: float, proc: subprocess.Popen[bytes]) -> None:
    """Wait until a process says it is ready; fail with its log if it dies or never does."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and text in path.read_text(errors="replace"):
            return
        if proc.poll() is not None:
            break
        time.sleep(0.5)
    tail = "\n".join(path.read_text(errors="replace").splitlines()[-30:]) if path.exists() else ""
    raise SystemExit(f"{path.name}: not ready after {timeout:.0f}s\n{tail}")


def wait_for_sink(settings: Settings, quiet_s: float = 6.0, timeout: float = 90.0) -> int:
    """Until the reactions table stops growing: the sink has caught up."""
    client = client_for(settings, database=settings.clickhouse_database)
    last, since, deadline = -1, time.monotonic(), time.monotonic() + timeout
    while time.monotonic() < deadline:
        n = client.execute("SELECT count() FROM reactions")[0][0]
        if n != last:
            last, since = n, time.monotonic()
        elif time.monotonic() - since > quiet_s:
            break
        time.sleep(1)
    client.disconnect()
    return int(last)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--duration", type=float, default=120.0, help="wall seconds of referrals (120)")
    parser.add_argument("--rate", type=float, default=25.0, help="referrals per second (25)")
    parser.add_argument("--speed", type=float, default=60.0, help="time compression (60: 1 h in 1 min)")
    parser.add_argument("--seed", type=int, default=None, help="default: a new one per run (replays route nothing)")
    args = parser.parse_args(argv)
    began = time.monotonic()
    settings = ensure_up(Settings.from_env())
    demo = settings.home / "demo"
    demo.mkdir(parents=True, exist_ok=True)
    policy = demo / "policy.yaml"
    write_policy(settings.policy_path, policy, args.speed)
    console.print(f"[bold]topics[/]: {len(create_topics(settings))} created; [bold]database[/]: "
                  f"{len(migrate(client_for(settings), settings.clickhouse_database))} migrations applied")
    env = {**os.environ, "SIGNALEMENT_POLICY": str(policy)}
    worker = start("worker", ["worker"], env, demo)
    sink = start("sink", ["sink"], env, demo)
    try:
        console.print("waiting for the worker to be ready (Faust recovery)...")
        wait_for_log(demo / "worker.log", "Worker ready", 120, worker)
        hours = args.duration * args.speed / 3600
        console.print(f"[bold]simulating[/] {args.duration:.0f}s at x{args.speed:g} (~{hours:.1f} h of activity)")
        seed = args.seed if args.seed is not None else int(time.time())
        console.print(f"seed {seed} (rerun with --seed {seed} for the same referrals)")
        summary = simulate(settings, SimConfig(duration=args.duration, rate=args.rate, speed=args.speed,
                                               seed=seed, progress=True, drain=15.0))
        console.print(f"sent {sum(summary.sent.values())} referrals; waiting for the sink to catch up...")
        rows = wait_for_sink(settings)
        console.print(f"reactions in ClickHouse: {rows}")
    finally:
        stop(worker)
        stop(sink)
    subprocess.run([sys.executable, "-m", "streams.cli", "stats", "--limit", "12"], cwd=ROOT, env=env, check=True)
    report = ROOT / "report.html"
    subprocess.run([sys.executable, "-m", "streams.cli", "report", "--out", str(report)], cwd=ROOT, env=env,
                   check=True)
    console.rule("done")
    console.print(f"wall time {time.monotonic() - began:.0f}s\n"
                  f"report:      {report}\n"
                  f"logs:        {demo}/worker.log, {demo}/sink.log, {settings.home}/kafka/logs\n"
                  f"ClickHouse:  clickhouse-client --port {settings.clickhouse_tcp_port} -d "
                  f"{settings.clickhouse_database}\n"
                  f"Kafka:       {settings.bootstrap}\n"
                  f"stop:        make stack-down")
    return 0


if __name__ == "__main__":
    sys.exit(main())
