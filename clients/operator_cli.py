"""`signalement operator --id OP`: take an operator's referrals by strict priority, show, export, decide.

Each referral is printed on one line (priority, referral_id, url, time left before the decision
deadline); `--export file.jsonl` appends it to a JSON Lines file (written and flushed before the
offset is committed); `--auto-decide remove|acknowledge` publishes that decision for each one.
Stops on Ctrl-C, after `--max` referrals, after `--timeout` s or `--idle` s without a referral.
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
from collections import Counter
from pathlib import Path
from typing import IO, Any

from rich.console import Console

from clients.kafka import now_ms
from clients.operator import OperatorClient
from streams.config import Settings
from streams.errors import SignalementError

log = logging.getLogger("signalement.clients.operator_cli")
console = Console(highlight=False)
COLOURS = {"CRITICAL": "bold red", "HIGH": "yellow", "STANDARD": "cyan"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of `signalement operator` (registered by streams.cli)."""
    parser.add_argument("--id", required=True, help="your operator id (you read operator.<id>.*)")
    parser.add_argument("--export", type=Path, help="append each referral to this JSON Lines file")
    parser.add_argument("--max", type=int, help="stop after this many referrals")
    parser.add_argument("--auto-decide", choices=("remove", "acknowledge", "none"), default="none",
                        help="publish this decision for every referral (default: none)")
    parser.add_argument("--group", help="consumer group id (default: operator-<id>)")
    parser.add_argument("--timeout", type=float, help="stop after this many seconds")
    parser.add_argument("--idle", type=float, help="stop after this many seconds without a referral")


def time_left(deadline_ms: int, now: int) -> str:
    """'in 59m 58s' or 'overdue by 3m 2s': the time to a deadline, for people."""
    delta = (deadline_ms - now) // 1000
    text = format_seconds(abs(delta))
    return f"in {text}" if delta >= 0 else f"overdue by {text}"


def format_seconds(seconds: int) -> str:
    """'1d 2h', '3m 5s': the two largest units are enough to judge urgency."""
    days, rest = divmod(seconds, 86_400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    parts = [(days, "d"), (hours, "h"), (minutes, "m"), (secs, "s")]
    shown = [f"{v}{u}" for v, u in parts if v][:2]
    return " ".join(shown) or "0s"


def line(referral: dict[str, Any], now: int) -> str:
    """One console line per referral (rich markup)."""
    priority = referral["priority"]
    flag = " [magenta]escalated[/magenta]" if referral.get("escalated") else ""
    return (f"[{COLOURS.get(priority, 'white')}]{priority:<8}[/] {referral['referral_id']} "
            f"{referral['url'][:100]} [dim]decide {time_left(referral['decision_deadline'], now)}[/]{flag}")


class Printer:
    """The default handler: print, export, auto-decide; counts what it did."""

    def __init__(self, client: OperatorClient, export: IO[str] | None, auto: str) -> None:
        self.client, self.export, self.auto = client, export, auto
        self.by_priority: Counter[str] = Counter()

    def __call__(self, referral: dict[str, Any]) -> None:
        console.print(line(referral, now_ms()), soft_wrap=True)
        if self.export is not None:
            self.export.write(json.dumps(referral, ensure_ascii=False) + "\n")
            self.export.flush()
        if self.auto == "remove":
            self.client.remove(referral["referral_id"])
        elif self.auto == "acknowledge":
            self.client.acknowledge(referral["referral_id"])
        self.by_priority[referral["priority"]] += 1


def run(args: argparse.Namespace) -> int:
    """Consume until stopped; exit code 0, or 1 when a decision could not be published."""
    settings = Settings.from_env()
    client = OperatorClient(settings, args.id, None, group_id=args.group)
    export = args.export.open("a", encoding="utf-8") if args.export else None
    printer = Printer(client, export, args.auto_decide)
    client.handler = printer
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: client.stop())
    console.print(f"[bold]{args.id}[/]: lanes {', '.join(client.lane_topics)} (group {client.group_id})",
                  style="dim", soft_wrap=True)
    try:
        client.run(max_messages=args.max, timeout=args.timeout, idle_timeout=args.idle)
    except SignalementError as exc:
        console.print(f"[red]error[/red]: {exc}")
        return 1
    finally:
        client.close()
        if export is not None:
            export.close()
    counts = ", ".join(f"{p.lower()} {n}" for p, n in sorted(printer.by_priority.items())) or "none"
    decided = "" if args.auto_decide == "none" else f", {args.auto_decide} published for each"
    console.print(f"handled {sum(printer.by_priority.values())} referral(s): {counts}{decided}")
    log.info("operator cli done operator=%s handled=%d", args.id, sum(printer.by_priority.values()))
    return 0
