"""What every benchmark shares: the stack's settings, machine and version facts, the git revision,
unique names per run, the result file and its table.

Each benchmark returns a `Result`; `save` writes bench/results/<name>.json and `show` prints the
rich table. Figures are flat (`label -> Figure`), so the docs table and the JSON agree.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import time
import uuid
from dataclasses import dataclass, field, replace
from importlib import metadata
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from streams.config import ROOT, Settings

RESULTS = ROOT / "bench" / "results"
console = Console(highlight=False)


@dataclass
class Figure:
    """One measured number, its unit, and (for throughputs) its ratio to each ceiling."""

    value: float | int | None
    unit: str = ""
    note: str = ""
    ratios: dict[str, float] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"value": self.value, "unit": self.unit}
        if self.note:
            out["note"] = self.note
        if self.ratios:
            out["ratios"] = self.ratios
        return out


@dataclass
class Target:
    """A target of the issue: met or missed, with the measured value."""

    name: str
    limit: str
    measured: str
    met: bool
    why: str = ""


@dataclass
class Result:
    name: str
    title: str
    parameters: dict[str, Any]
    figures: dict[str, Figure] = field(default_factory=dict)
    targets: list[Target] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)
    started: float = field(default_factory=time.time)

    def add(self, label: str, value: float | int | None, unit: str = "", note: str = "",
            ratios: dict[str, float] | None = None) -> None:
        self.figures[label] = Figure(value, unit, note, ratios or {})

    def target(self, name: str, limit: str, measured: str, met: bool, why: str = "") -> None:
        self.targets.append(Target(name, limit, measured, met, why))


def stack_settings() -> Settings:
    """The running stack's settings; started (`signalement stack up`) only if it is not running and healthy.

    Other engineers share the stack: a benchmark never restarts a server that is up."""
    from streams.stack.manager import ensure_up, status

    settings = Settings.from_env()
    try:
        if all(row.alive and row.healthy for row in status(settings, show=False)):
            return settings
    except Exception:  # an unreadable status: let ensure_up say what is wrong
        pass
    return ensure_up(settings)


def unique(kind: str) -> str:
    """'b<kind><hex>.': a topic prefix no other run (or test) uses."""
    return f"b{kind}{uuid.uuid4().hex[:8]}."


def speed_probe_us(repeat: int = 7, number: int = 200) -> float:
    """µs for `sum(range(1000))`, the fastest of `repeat`: how fast one core is right now.

    The hypervisor's cores run at different speeds from one hour to the next (±20-50 % here):
    figures of two runs compare only next to their probes (docs/benchmarks.md, "Reading the
    figures")."""
    import timeit

    return round(min(timeit.repeat("sum(range(1000))", repeat=repeat, number=number)) / number * 1e6, 2)


def machine() -> dict[str, Any]:
    """nproc, memory, CPU model, kernel, the speed probe: what the figures were measured on."""
    mem_kib = 0
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            mem_kib = int(line.split()[1])
    model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("model name")), platform.processor())
    return {"nproc": os.cpu_count(), "memory_gib": round(mem_kib / 2**20, 1), "cpu_model": model,
            "kernel": platform.release(), "machine": platform.machine(),
            "load_average_at_end": [round(x, 2) for x in os.getloadavg()], "speed_probe_us_at_end": speed_probe_us()}


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "-"


def versions(settings: Settings) -> dict[str, str]:
    """Python and library versions, and what the running Kafka and ClickHouse say they are."""
    import confluent_kafka

    out = {"python": platform.python_version()}
    for package in ("faust-streaming", "mode-streaming", "aiokafka", "confluent-kafka", "fastavro", "rocksdict",
                    "clickhouse-driver"):
        out[package] = _version(package)
    out["librdkafka"] = confluent_kafka.libversion()[0]
    try:
        from streams.stack.manager import status

        for row in status(settings, show=False):
            out[row.name.lower()] = row.version
    except Exception as exc:  # the figures stay useful without the servers' versions
        out["stack"] = f"unknown ({type(exc).__name__})"
    return out


def git_revision() -> dict[str, Any]:
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True).stdout.strip()

    dirty = [line[3:] for line in git("status", "--porcelain").splitlines()
             if line[3:].startswith(("agents/", "streams/", "sinks/"))]
    return {"commit": git("rev-parse", "HEAD"), "describe": git("log", "-1", "--format=%h %s"),
            "dirty_pipeline_files": dirty}


def save(result: Result, settings: Settings) -> Path:
    """Write bench/results/<name>.json (atomically) and return its path."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    doc = {
        "benchmark": result.name,
        "title": result.title,
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(result.started)),
        "duration_s": round(time.time() - result.started, 1),
        "machine": machine(),
        "versions": versions(settings),
        "git": git_revision(),
        "parameters": result.parameters,
        "figures": {k: v.as_json() for k, v in result.figures.items()},
        "targets": [t.__dict__ for t in result.targets],
        "details": result.details,
    }
    path = RESULTS / f"{result.name}.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(doc, indent=2, default=str) + "\n")
    tmp.replace(path)
    return path


def _fmt(value: float | int | None) -> str:
    if value is None:
        return "-"
    if isinstance(value, int) or (float(value).is_integer() and abs(value) >= 100):
        return f"{int(value):,}"
    return f"{value:,.3g}" if abs(value) < 100 else f"{value:,.0f}"


def show(result: Result) -> None:
    """The result as a rich table (figures, then targets)."""
    ceilings = sorted({c for f in result.figures.values() for c in f.ratios})
    table = Table(title=result.title, title_justify="left")
    table.add_column("figure")
    table.add_column("value", justify="right")
    table.add_column("unit")
    for c in ceilings:
        table.add_column(f"/ {c}", justify="right")
    table.add_column("note", overflow="fold")
    for label, fig in result.figures.items():
        table.add_row(label, _fmt(fig.value), fig.unit, *[f"{fig.ratios[c]:.2f}" if c in fig.ratios else ""
                                                          for c in ceilings], fig.note)
    console.print(table)
    if result.targets:
        t = Table(title=f"{result.name}: targets", title_justify="left")
        for col in ("target", "limit", "measured", "met", "why"):
            t.add_column(col, overflow="fold")
        for tg in result.targets:
            t.add_row(tg.name, tg.limit, tg.measured, "[green]yes[/]" if tg.met else "[red]no[/]", tg.why)
        console.print(t)


def load_result(name: str) -> dict[str, Any] | None:
    """A saved result (e.g. the ceilings, for ratios), or None."""
    path = RESULTS / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else None


def ceilings_now(settings: Settings) -> dict[str, float]:
    """{'raw': /s, 'faust': /s} from bench/results/ceilings.json (measured earlier in this `all` run)."""
    doc = load_result("ceilings") or {}
    figs = doc.get("figures", {})
    out = {}
    for key, label in (("raw", "raw confluent-kafka pass-through"), ("faust", "Faust agent pass-through")):
        value = figs.get(label, {}).get("value")
        if value:
            out[key] = float(value)
    return out


def ratios(rate: float, ceilings: dict[str, float]) -> dict[str, float]:
    return {k: round(rate / v, 3) for k, v in ceilings.items() if v}


def with_prefix(settings: Settings, prefix: str, tmp: Path, **kw: Any) -> Settings:
    return replace(settings, topic_prefix=prefix, app_id=f"{prefix}app", worker_dir=tmp / "worker", **kw)


