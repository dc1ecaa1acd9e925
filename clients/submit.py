"""`signalement submit --reporter ID FILE`: publish referrals from JSON Lines or CSV, one per line.

Each row is validated before anything is sent: a bad row (bad JSON, a missing url, an unknown
enum value, a bad timestamp...) is reported with its line number and skipped; the good rows
are published. Exit code 0 when every row was delivered, 1 when a row was skipped or not
delivered, 2 when nothing could be attempted (no file, unknown reporter, bad CSV header).
"""

from __future__ import annotations

import argparse
import csv
import logging
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from clients.parsing import FIELDS, REQUIRED, ReferralError, from_csv_row, from_json_line
from clients.reporter import Reporter
from streams.config import Settings
from streams.errors import SignalementError

log = logging.getLogger("signalement.clients.submit")
console = Console(stderr=True, highlight=False)
FORMATS = {".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "jsonl", ".csv": "csv"}
MAX_PRINTED_ERRORS = 200

Row = tuple[int, dict[str, Any] | ReferralError]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of `signalement submit` (registered by streams.cli)."""
    parser.add_argument("--reporter", required=True, help="your reporter id (you publish to reports.<id>)")
    parser.add_argument("file", type=Path, help="JSON Lines (.jsonl) or CSV (.csv) file, one referral per line")
    parser.add_argument("--format", choices=("jsonl", "csv"), help="override the format guessed from the extension")
    parser.add_argument("--dry-run", action="store_true", help="validate every row, send nothing")
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds to wait for the broker's confirmations")


def file_format(path: Path, forced: str | None) -> str:
    """The format named by --format, else by the extension; a SignalementError if neither says."""
    fmt = forced or FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise SignalementError(f"{path}: cannot tell the format from {path.suffix or 'no extension'!r}; "
                               "use --format jsonl or --format csv")
    return fmt


def jsonl_rows(lines: Iterator[str]) -> Iterator[Row]:
    """(line number, object or error) for every non-blank line."""
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            yield number, from_json_line(line)
        except ReferralError as exc:
            yield number, exc


def csv_rows(lines: Iterator[str]) -> Iterator[Row]:
    """(line number where the row starts, cells by column or error); the header is checked first."""
    reader = csv.reader(lines)
    header = next(reader, None)
    if header is None:
        return
    names = [h.strip() for h in header]
    unknown = [h for h in names if h not in FIELDS]
    if unknown or any(r not in names for r in REQUIRED):
        raise SignalementError(f"line 1: CSV header: unknown column(s) {unknown}, required {list(REQUIRED)}; "
                               f"columns are field names: {', '.join(FIELDS)}")
    for cells in reader:
        if not cells:
            continue
        start = reader.line_num - sum(c.count("\n") for c in cells)
        row: dict[str | None, Any] = dict(zip(names, cells, strict=False))
        if len(cells) > len(names):
            row[None] = cells[len(names):]
        try:
            yield start, from_csv_row(row)
        except ReferralError as exc:
            yield start, exc


@dataclass
class Outcome:
    """What happened to the file's rows."""

    queued: dict[str, int] = field(default_factory=dict)  # referral_id -> line
    skipped: list[tuple[int, str]] = field(default_factory=list)
    reasons: Counter[str] = field(default_factory=Counter)

    def skip(self, line: int, exc: ReferralError) -> None:
        """Record a bad row and print it with its line number (the first ones only)."""
        self.skipped.append((line, str(exc)))
        self.reasons[exc.field or str(exc).split(":")[0][:60]] += 1
        if len(self.skipped) <= MAX_PRINTED_ERRORS:
            console.print(f"[red]line {line}[/red]: {exc}", markup=True, soft_wrap=True)


def process(rows: Iterator[Row], reporter: Reporter, outcome: Outcome, dry_run: bool) -> None:
    """Validate each row, queue the good ones; never send a row that failed a check."""
    for line, raw in rows:
        if isinstance(raw, ReferralError):
            outcome.skip(line, raw)
            continue
        try:
            ref = reporter.prepare(raw)
        except ReferralError as exc:
            outcome.skip(line, exc)
            continue
        first = outcome.queued.get(ref["referral_id"])
        if first is not None:
            outcome.skip(line, ReferralError(f"{ref['referral_id']} already on line {first}", "referral_id"))
            continue
        outcome.queued[ref["referral_id"]] = line
        if not dry_run:
            reporter.send(ref)


def _progress() -> Progress:
    return Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                    TimeRemainingColumn(), console=console, transient=True)


def _counting(lines: Iterator[str], progress: Progress, task: Any) -> Iterator[str]:
    for line in lines:
        progress.advance(task)
        yield line


def summary_table(outcome: Outcome, sent: int, failed: list[tuple[str, str]], pending: int, dry_run: bool) -> Table:
    """The end-of-run table: what was sent, what failed and why rows were skipped."""
    table = Table(title="submit summary", show_header=True)
    table.add_column("outcome")
    table.add_column("rows", justify="right")
    table.add_column("detail")
    table.add_row("valid (not sent: dry run)" if dry_run else "sent", str(len(outcome.queued) if dry_run else sent), "")
    for referral_id, reason in failed[:20]:
        table.add_row("failed", "1", f"line {outcome.queued.get(referral_id, '?')}: {reason}")
    if len(failed) > 20:
        table.add_row("failed", str(len(failed) - 20), "more delivery failures")
    if pending:
        table.add_row("unconfirmed", str(pending), "no confirmation from the broker in time")
    for reason, count in outcome.reasons.most_common():
        table.add_row("skipped", str(count), reason)
    return table


def run(args: argparse.Namespace) -> int:
    """Validate and publish a file; exit 0 all delivered, 1 some rows not, 2 nothing tried."""
    settings = Settings.from_env()
    try:
        fmt = file_format(args.file, args.format)
        total = sum(1 for _ in args.file.open("rb"))
        reporter = Reporter(settings, args.reporter, producer_extra={"message.timeout.ms": int(args.timeout * 1000)})
    except (OSError, SignalementError) as exc:
        console.print(f"[red]error[/red]: {exc}")
        return 2
    outcome = Outcome()
    try:
        with args.file.open(newline="", encoding="utf-8-sig") as handle, _progress() as progress:
            task = progress.add_task(f"{args.file.name} -> {reporter.topic}", total=total)
            lines = _counting(handle, progress, task)
            try:
                process(csv_rows(lines) if fmt == "csv" else jsonl_rows(lines), reporter, outcome, args.dry_run)
            except (UnicodeDecodeError, csv.Error) as exc:
                console.print(f"[red]error[/red]: {exc}; the rest of the file was not read")
                outcome.reasons["unreadable rest of the file"] += 1
                outcome.skipped.append((0, str(exc)))
            progress.update(task, description="waiting for the broker")
            summary = reporter.flush(args.timeout + 5)
    except SignalementError as exc:  # the CSV header: checked before any row is sent
        console.print(f"[red]error[/red]: {exc}; nothing was sent")
        return 2
    Console(highlight=False).print(summary_table(outcome, summary.sent, summary.failed, summary.pending, args.dry_run))
    log.info("submit reporter=%s file=%s sent=%d failed=%d skipped=%d", args.reporter, args.file, summary.sent,
             len(summary.failed), len(outcome.skipped))
    return 0 if not outcome.skipped and summary.ok else 1
