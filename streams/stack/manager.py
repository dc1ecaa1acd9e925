"""`signalement stack up | down | status`: Kafka and ClickHouse on 127.0.0.1, without Docker.

Python API: `ensure_up(settings)` (idempotent; test fixtures and `make demo` call it),
`down(settings)`, `status(settings)`. A file lock serialises concurrent callers, so two test
sessions starting at once share one stack instead of racing to start two.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import time
from collections.abc import Iterator
from dataclasses import replace

from rich.table import Table
from rich.text import Text

from streams import security
from streams.config import Settings
from streams.errors import SignalementError
from streams.stack import ports, process
from streams.stack.clickhouse import ClickHouse
from streams.stack.kafka import Kafka
from streams.stack.process import console
from streams.stack.secure_kafka import SecureKafka
from streams.stack.service import Service, ServiceStatus

DEFAULT_TIMEOUT = 90.0


def services(settings: Settings) -> list[Service]:
    """The stack's servers, in start order (the secure broker only with settings.secure)."""
    return [Kafka(settings), ClickHouse(settings), *([SecureKafka(settings)] if settings.secure else [])]


def _secure_running(settings: Settings) -> bool:
    return SecureKafka(settings).pid() is not None


@contextlib.contextmanager
def locked(settings: Settings) -> Iterator[None]:
    """Hold <home>/stack.lock: one up or down at a time across processes."""
    settings.home.mkdir(parents=True, exist_ok=True)
    with open(settings.home / "stack.lock", "w") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            console.print("  another `stack up/down` holds the lock: waiting for it")
            fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _with_ports(settings: Settings) -> Settings:
    """Settings with the ports the stack will really use (a busy default port is swapped)."""
    owner = {"kafka_port": Kafka(settings), "controller_port": Kafka(settings),
             "secure_kafka_port": SecureKafka(settings), "secure_controller_port": SecureKafka(settings)}

    def ours(name: str) -> bool:
        return owner.get(name, ClickHouse(settings)).pid() is not None

    return ports.resolve(settings, ours)


def ensure_up(settings: Settings | None = None, timeout: float = DEFAULT_TIMEOUT) -> Settings:
    """Start whatever is not running, wait until both servers pass a real round trip.

    Returns the settings actually in effect (ports may differ from the defaults if those were busy).
    """
    settings = settings or Settings.from_env()
    started = time.monotonic()
    with locked(settings):
        settings = _with_ports(settings)
        stack = services(settings)
        launched = [service.launch() for service in stack]
        for service, new in zip(stack, launched, strict=True):
            if not new and service.healthy():
                console.print(f"  {service.name} already running (pid {service.pid()}), healthy")
                continue
            service.await_ready(timeout)
        if settings.secure:
            users, acls = security.apply(settings)
            console.print(f"  secure Kafka: {users} SCRAM users, {acls} ACL bindings "
                          f"(credentials in {security.secrets_file(settings)})")
    if any(launched):
        console.print(f"[green]stack up[/] in {time.monotonic() - started:.1f} s (home {settings.home})")
    else:
        console.print(f"[green]stack already running[/] (home {settings.home})")
    return settings


def down(settings: Settings | None = None) -> None:
    """Stop the servers we started (by pid file); leave data in place."""
    settings = settings or Settings.from_env()
    with locked(settings):
        stopped = [service.name for service in reversed(services(replace(settings, secure=True))) if service.stop()]
    console.print(f"[green]stopped[/] {', '.join(stopped)}" if stopped else "nothing of ours was running")


def stop_secure(settings: Settings | None = None) -> bool:
    """Stop the secure broker only (the plaintext stack keeps running); True if it ran."""
    settings = settings or Settings.from_env()
    with locked(settings):
        return SecureKafka(settings).stop()


def stop_kafka(settings: Settings | None = None) -> bool:
    """Stop the plaintext broker only (SIGTERM: a controlled shutdown), keeping its data; True if it ran.

    ClickHouse keeps running; `ensure_up` starts the broker again on the same data and ports
    (the broker-restart test stops Kafka under a running pipeline this way)."""
    settings = settings or Settings.from_env()
    with locked(settings):
        return Kafka(settings).stop()


def status(settings: Settings | None = None, show: bool = True) -> list[ServiceStatus]:
    """Version, ports, pid, health and data size of each server; printed as a table if show."""
    settings = settings or Settings.from_env()
    shown = replace(settings, secure=settings.secure or _secure_running(settings))
    rows = [service.status() for service in services(shown)]
    if show:
        console.print(_table(rows, settings))
        for row in rows:
            if row.detail:
                console.print(f"  {row.name}: {row.detail}", markup=False)
    return rows


def _table(rows: list[ServiceStatus], settings: Settings) -> Table:
    table = Table(title="signalement stack", caption=f"home {settings.home}")
    for column in ("service", "version", "ports", "pid", "alive", "healthy", "data"):
        table.add_column(column, no_wrap=True)
    for row in rows:
        table.add_row(row.name, row.version, " ".join(str(p) for p in row.ports.values()), str(row.pid or "-"),
                      _yes(row.alive), _yes(row.healthy), process.human(row.data_bytes))
    return table


def _yes(flag: bool) -> str:
    return "[green]yes[/]" if flag else "[red]no[/]"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("action", choices=["up", "down", "status"], help="start, stop, or describe the stack")
    parser.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT,
                        help="seconds to wait for each server to become healthy (default %(default)s)")
    parser.add_argument("--secure", action="store_true",
                        help="also run the SASL/SCRAM broker with ACLs on its own ports (or SIGNALEMENT_SECURE=1); "
                             "`down` always stops it")


def run(args: argparse.Namespace) -> int:
    try:
        if args.action == "up":
            settings = Settings.from_env()
            settings = ensure_up(replace(settings, secure=settings.secure or args.secure), timeout=args.timeout)
            if settings.secure:
                console.print(f"  clients of the secure broker: SIGNALEMENT_BOOTSTRAP={settings.secure_bootstrap} "
                              "SIGNALEMENT_KAFKA_USER=<pipeline|sink|reporter-<id>|operator-<id>>")
        elif args.action == "down":
            down(Settings.from_env())
        else:
            rows = status(Settings.from_env())
            return 0 if all(row.healthy for row in rows) else 1
    except SignalementError as exc:
        console.print(Text.assemble(("error: ", "bold red"), str(exc)))
        return 1
    except KeyboardInterrupt:
        console.print("[yellow]interrupted[/]")
        return 130
    return 0
