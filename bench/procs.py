"""Processes the benchmarks run and watch: `signalement worker`, `signalement sink`, Faust pass-through.

Each runs in its own session with its own environment (topic prefix, app id, state folder,
ClickHouse database), logs to a file, and is stopped by its process group id. `Proc` reads
/proc/<pid> for peak RSS (VmHWM), current RSS and CPU seconds.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from streams.config import ROOT, Settings

CLK_TCK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds of process `pid` so far (threads included); None if it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLK_TCK
    except (OSError, IndexError, ValueError):
        return None


def env_for(settings: Settings, **extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update({
        "SIGNALEMENT_TOPIC_PREFIX": settings.topic_prefix, "SIGNALEMENT_APP_ID": settings.app_id,
        "SIGNALEMENT_HOME": str(settings.home), "SIGNALEMENT_BOOTSTRAP": settings.bootstrap,
        "SIGNALEMENT_WORKER_DIR": str(settings.worker_dir), "SIGNALEMENT_PARTITIONS": str(settings.partitions),
        "SIGNALEMENT_CLICKHOUSE_DATABASE": settings.clickhouse_database,
        "SIGNALEMENT_POLICY": str(settings.policy_path),
    })
    env.update(extra)
    return env


@dataclass
class Proc:
    """A child process in its own session, stopped by process group."""

    argv: list[str]
    env: dict[str, str]
    log_path: Path
    proc: subprocess.Popen[bytes] | None = field(default=None)
    started_at: float = 0.0

    def start(self) -> Proc:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(self.argv, cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        self.started_at = time.monotonic()
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def status(self) -> dict[str, int]:
        """VmHWM / VmRSS in KiB, from /proc/<pid>/status (0 once the process is gone)."""
        out = {"VmHWM": 0, "VmRSS": 0}
        try:
            for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
                key = line.split(":", 1)[0]
                if key in out:
                    out[key] = int(line.split()[1])
        except (OSError, ValueError):
            pass
        return out

    def cpu_seconds(self) -> float:
        """User + system CPU seconds of the process so far (threads included)."""
        return cpu_seconds(self.pid) or 0.0

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        try:
            os.killpg(self.proc.pid, sig)
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)
        except ProcessLookupError:
            pass

    def log_tail(self, n: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""

    def log_contains(self, text: str) -> bool:
        try:
            return text in self.log_path.read_text(errors="replace")
        except OSError:
            return False


def worker(settings: Settings, tmp: Path, name: str = "worker", **extra: str) -> Proc:
    """`signalement worker` for settings' prefix, app id and worker dir."""
    return Proc([sys.executable, "-m", "streams.cli", "worker"], env_for(settings, **extra),
                tmp / f"{name}.log")


def sink(settings: Settings, tmp: Path, **extra: str) -> Proc:
    """`signalement sink` into settings.clickhouse_database."""
    return Proc([sys.executable, "-m", "streams.cli", "sink"], env_for(settings, **extra), tmp / "sink.log")


def wait_ready(proc: Proc, text: str, timeout: float) -> float:
    """Seconds until `text` shows in the log; raises if the process dies or the time runs out."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if proc.log_contains(text):
            return time.monotonic() - start
        if not proc.alive():
            raise RuntimeError(f"{proc.argv} died:\n{proc.log_tail()}")
        time.sleep(0.2)
    raise RuntimeError(f"{proc.argv}: no {text!r} after {timeout}s:\n{proc.log_tail()}")
