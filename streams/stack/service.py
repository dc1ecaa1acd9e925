"""One local server the stack runs (Kafka, ClickHouse): prepare, launch detached, wait until healthy, stop.

Each service is a config file, a data directory, a log and a pid file under the stack home;
readiness is a list of named checks run in order, so the console says what it waits for.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from string import Template

from streams.config import Settings
from streams.errors import StackError
from streams.stack import process
from streams.stack.process import console

TEMPLATES = Path(__file__).resolve().parent
Check = tuple[str, Callable[[], bool]]


@dataclass(frozen=True)
class ServiceStatus:
    """What `signalement stack status` shows for one service."""

    name: str
    version: str
    ports: dict[str, int]
    pid: int | None
    alive: bool
    healthy: bool
    data_dir: Path
    data_bytes: int
    detail: str = ""


def render(template: str, target: Path, **values: object) -> None:
    """Write a template of this package with its ${placeholders} filled, only when it changed."""
    text = Template((TEMPLATES / template).read_text()).substitute({k: str(v) for k, v in values.items()})
    target.parent.mkdir(parents=True, exist_ok=True)
    if not target.exists() or target.read_text() != text:
        target.write_text(text)


class Service(ABC):
    """A server we start detached and recognise later by its pid file and config path."""

    name = "service"
    stop_timeout = 30.0

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.last_error = ""

    @property
    @abstractmethod
    def dir(self) -> Path: ...

    @property
    @abstractmethod
    def config_file(self) -> Path:
        """The file named on the command line: how we tell our process from a stranger's."""

    @property
    @abstractmethod
    def data_dir(self) -> Path: ...

    @property
    @abstractmethod
    def log_file(self) -> Path:
        """The server's own log, shown when start-up fails."""

    @property
    def out_file(self) -> Path:
        """Where the process's stdout and stderr go."""
        return self.dir / "logs" / f"{self.name.lower()}.out"

    @property
    def pid_file(self) -> Path:
        return self.dir / f"{self.name.lower()}.pid"

    @abstractmethod
    def ports(self) -> dict[str, int]: ...

    @abstractmethod
    def prepare(self) -> None:
        """Install or resolve binaries, write configs, format storage: everything before launch."""

    @abstractmethod
    def command(self) -> list[str]: ...

    @abstractmethod
    def checks(self) -> list[Check]:
        """Named readiness checks, cheapest first; the last one is a real round trip."""

    @abstractmethod
    def version(self) -> str: ...

    def pid(self) -> int | None:
        return process.our_pid(self.pid_file, str(self.config_file))

    def launch(self) -> bool:
        """Start the server unless ours already runs; True if we started it now."""
        pid = self.pid()
        if pid is not None:
            return False
        self.prepare()
        pid = process.spawn(self.command(), self.dir, self.out_file, self.pid_file)
        console.print(f"  started {self.name} (pid {pid}), log {self.log_file}")
        return True

    def await_ready(self, timeout: float) -> None:
        """Run each check until it passes; on timeout or death raise StackError with the log's tail."""
        deadline = time.monotonic() + timeout
        for label, check in self.checks():
            console.print(f"  {self.name}: waiting for {label}")
            while not check():
                if self.pid() is None:
                    self._fail(f"{self.name} exited during start-up")
                if time.monotonic() > deadline:
                    self._fail(f"{self.name} not ready after {timeout:.0f} s (waiting for {label})")
                time.sleep(0.3)
        console.print(f"  [green]{self.name} {self.version()} ready[/] on {self._ports_text()}")

    def healthy(self) -> bool:
        """Every check passes right now (no waiting)."""
        return self.pid() is not None and all(check() for _label, check in self.checks())

    def stop(self) -> bool:
        """Stop our process if it runs; True if there was one."""
        pid = self.pid()
        if pid is not None:
            process.stop(pid, self.name, self.stop_timeout)
        self.pid_file.unlink(missing_ok=True)
        return pid is not None

    def status(self) -> ServiceStatus:
        pid = self.pid()
        healthy = self.healthy() if pid is not None else False
        size = process.disk_usage(self.data_dir) if self.data_dir.exists() else 0
        return ServiceStatus(self.name, self.version(), self.ports(), pid, pid is not None, healthy,
                             self.data_dir, size, self.last_error if pid is not None and not healthy else "")

    def _ports_text(self) -> str:
        return ", ".join(f"{k} {v}" for k, v in self.ports().items())

    def _fail(self, message: str) -> None:
        """Print the last log lines and raise."""
        for path in (self.log_file, self.out_file):
            if path.exists() and path.stat().st_size:
                console.print(f"[bold]--- last 30 lines of {path} ---[/]")
                console.print(process.tail(path, 30), markup=False)
        detail = f": {self.last_error}" if self.last_error else ""
        pid = self.pid()
        still = f" It is still running (pid {pid}): `signalement stack down` stops it." if pid else ""
        raise StackError(f"{message}{detail}. Logs: {self.log_file}.{still}")
