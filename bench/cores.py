"""Who uses the machine's cores while a benchmark runs: CPU seconds per role (the worker processes,
the sink, the broker, ClickHouse, the benchmark itself, everything else), read from /proc.

The worker is one Python process, so one core is all it can use; this says whether it used it,
and what the rest of the machine did with the other (docs/benchmarks.md, "Where the time goes").
A sampler thread notes each role's CPU seconds every second; `cores(start, end)` is the cores each
role used between two moments of the run (CPU seconds / wall seconds).
"""

from __future__ import annotations

import os
import threading
import time

from bench.procs import cpu_seconds
from streams.stack.process import cmdline

# (role, what its command line holds), first match wins
ROLES = (("worker", "streams.cli worker"), ("sink", "streams.cli sink"), ("broker", "kafka.Kafka"),
         ("clickhouse", "clickhouse"))
ORDER = ("worker", "sink", "broker", "clickhouse", "bench", "other")


def role_of(command: str, pid: int, bench_pid: int) -> str:
    if pid == bench_pid:
        return "bench"
    return next((role for role, mark in ROLES if mark in command), "other")


class Ledger:
    """Each role's CPU seconds since the ledger began: a process already running counts from its
    first reading, one started later from its start; a process gone keeps what it had used."""

    def __init__(self) -> None:
        self.first: dict[int, float] = {}
        self.last: dict[int, float] = {}
        self.role: dict[int, str] = {}

    def note(self, readings: dict[int, tuple[str, float]], new: bool) -> None:
        """`readings`: pid -> (role, CPU seconds); `new`: pids not seen before started since."""
        for pid, (role, cpu) in readings.items():
            if pid not in self.first:
                self.first[pid], self.role[pid] = (0.0 if new else cpu), role
            self.last[pid] = cpu

    def totals(self) -> dict[str, float]:
        out = dict.fromkeys(ORDER, 0.0)
        for pid, cpu in self.last.items():
            out[self.role[pid]] += cpu - self.first[pid]
        return out


def between(samples: list[tuple[float, dict[str, float]]], start: float, end: float) -> dict[str, float]:
    """Cores per role between the last sample at or before `start` and the first at or after `end`
    (the nearest ones if the samples do not reach that far)."""
    if len(samples) < 2:
        return {}
    before = max((s for s in samples if s[0] <= start), default=samples[0], key=lambda s: s[0])
    after = min((s for s in samples if s[0] >= end), default=samples[-1], key=lambda s: s[0])
    wall = after[0] - before[0]
    if wall <= 0:
        return {}
    return {role: round((after[1][role] - before[1][role]) / wall, 2) for role in ORDER}


class Sampler(threading.Thread):
    """Notes each role's CPU seconds every `every` s (wall time, time.time()) until `stop()`."""

    def __init__(self, every: float = 1.0) -> None:
        super().__init__(name="cores", daemon=True)
        self.every, self.ledger = every, Ledger()
        self.samples: list[tuple[float, dict[str, float]]] = []
        self._stop_event = threading.Event()
        self._cmd: dict[int, str] = {}
        self._sample(new=False)

    def _sample(self, new: bool) -> None:
        me, readings = os.getpid(), {}
        for name in os.listdir("/proc"):
            if not name.isdigit():
                continue
            pid = int(name)
            cpu = cpu_seconds(pid)
            if cpu is None:
                continue
            if pid not in self._cmd:
                self._cmd[pid] = cmdline(pid)
            readings[pid] = (role_of(self._cmd[pid], pid, me), cpu)
        self.ledger.note(readings, new)
        self.samples.append((time.time(), self.ledger.totals()))

    def run(self) -> None:
        while not self._stop_event.wait(self.every):
            self._sample(new=True)

    def stop(self) -> None:
        self._stop_event.set()
        self.join(5)
        self._sample(new=True)

    def cores(self, start: float, end: float) -> dict[str, float]:
        return between(self.samples, start, end)


def describe(cores: dict[str, float]) -> str:
    """'worker 0.96, broker 0.27, ...' (of the machine's cores)."""
    if not cores:
        return "not sampled"
    return ", ".join(f"{role} {cores[role]:.2f}" for role in ORDER) + f" (of {os.cpu_count()} cores)"
