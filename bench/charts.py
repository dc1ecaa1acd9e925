"""Charts of the benchmark results, for people who would rather look than read tables: where each
target of docs/benchmarks.md stands run after run, and the latest run's latency levels and rates
against the Faust ceiling. Inline SVG (sinks.charts), written by `python -m bench report` into
docs/charts/ and shown in docs/benchmarks.md.

Runs come from the file names in bench/results: `<bench>.json` is the latest run, and
`<bench>_session<N>.json` a run kept from session N (its `make bench` run, `_make_bench`, when that
session kept both). Other kept files (`crisis_1m`, `latency_rerun`...) are one-off experiments and
stay out of the history.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sinks import charts
from sinks.charts import PALETTE, Series

Doc = dict[str, Any]
Run = dict[str, Doc]  # benchmark name -> its result document
KEPT = re.compile(r"^(?P<bench>[a-z]+)_session(?P<n>\d+)(?P<make>_make_bench)?$")
LATEST = "latest"


def figure(name: str, ratio: str | None = None) -> Callable[[Doc], float | None]:
    """A reader of one figure's value (or of its ratio to a ceiling) in a result document."""

    def read(doc: Doc) -> float | None:
        fig = doc.get("figures", {}).get(name)
        if not fig:
            return None
        value = fig.get("ratios", {}).get(ratio) if ratio else fig.get("value")
        return float(value) if isinstance(value, int | float) else None

    return read


def slowest_query(doc: Doc) -> float | None:
    """The slowest catalogue query's median on the server, over the whole generated period (ms)."""
    values = [float(fig["value"]) for name, fig in doc.get("figures", {}).items()
              if name.startswith("query ") and name.endswith(", server") and "last 24 h" not in name
              and isinstance(fig.get("value"), int | float)]
    return max(values) if values else None


@dataclass(frozen=True)
class Floor:
    """A target of issue 6: `floor` in the figure's unit; above it is better unless `at_most`."""

    name: str
    bench: str
    read: Callable[[Doc], float | None]
    floor: float
    at_most: bool = False

    def share(self, doc: Doc | None) -> float | None:
        """How far the run got, as a share of the floor: 1.0 and above is met, whichever way it points."""
        value = self.read(doc) if doc else None
        if value is None:
            return None
        if self.at_most:
            return self.floor / value if value > 0 else None
        return value / self.floor


FLOORS = (
    Floor("10,000/s, 1 worker", "throughput", figure("sustained referrals/s, 1 worker"), 10_000),
    Floor("0.5 of Faust ceiling", "throughput", figure("sustained referrals/s, 1 worker", "faust"), 0.5),
    Floor("p99 100 ms at 50 %", "latency", figure("p99 at 50 % load"), 100, at_most=True),
    Floor("critical p99 250 ms", "latency", figure("critical p99 under backlog (to the operator)"), 250,
          at_most=True),
    Floor("crisis 1M in 180 s", "crisis", figure("1M burst drained in (extrapolated)"), 180, at_most=True),
    Floor("each query 1 s", "analytics", slowest_query, 1_000, at_most=True),
)


def runs(results: Path) -> list[tuple[str, Run]]:
    """(label, run) in order: each kept session's run by session number, then the latest (a session
    is a run only if it kept a benchmark that some target reads)."""
    sessions: dict[int, dict[str, tuple[bool, Doc]]] = {}
    latest: Run = {}
    for path in sorted(results.glob("*.json")):
        doc = json.loads(path.read_text())
        if path.stem == doc.get("benchmark"):
            latest[path.stem] = doc
            continue
        m = KEPT.match(path.stem)
        if not m or m["bench"] not in {floor.bench for floor in FLOORS}:  # e.g. a session's profile: no target
            continue
        kept = sessions.setdefault(int(m["n"]), {})
        make = bool(m["make"])
        if m["bench"] not in kept or (make and not kept[m["bench"]][0]):
            kept[m["bench"]] = (make, doc)
    out = [(f"session {n}", {bench: doc for bench, (_, doc) in kept.items()}) for n, kept in sorted(sessions.items())]
    if latest:
        out.append((LATEST, latest))
    return out


def history(history_runs: list[tuple[str, Run]]) -> str:
    """Each target as a share of its floor, run after run, with the floor's line."""
    series = []
    for i, floor in enumerate(FLOORS):
        points = [(float(x), share) for x, (_, run) in enumerate(history_runs)
                  if (share := floor.share(run.get(floor.bench))) is not None]
        series.append(Series(floor.name, PALETTE[i % len(PALETTE)], points))
    if history_runs:
        series.append(Series("floor (met)", "#444", [(0.0, 1.0), (float(len(history_runs) - 1), 1.0)],
                             dashed=True))
    labels = [label.replace("session ", "s") for label, _ in history_runs]
    return charts.line_chart("Each target, measured / floor (100 % = met), run after run", series,
                             lambda x: labels[int(x)] if 0 <= int(x) < len(labels) else "",
                             lambda v: f"{100 * v:.0f} %", (0.1, 0.2, 0.25, 0.5, 1.0),
                             x_ticks=[float(i) for i in range(len(labels))])


LEVELS = (10, 50, 80)


def latency_levels(doc: Doc) -> str:
    """p50 / p90 / p99 by load level, exactly-once and at-least-once, with the 100 ms target."""
    def points(q: str, guarantee: str = "") -> list[tuple[float, float]]:
        out = []
        for level in LEVELS:
            value = figure(f"{q} at {level} %{guarantee} load")(doc)
            if value is not None:
                out.append((float(level), value))
        return out

    series = [Series(f"{q} exactly-once", PALETTE[i], points(q)) for i, q in enumerate(("p50", "p90", "p99"))]
    series += [Series(f"{q} at-least-once", PALETTE[3 + i], points(q, ", at_least_once"), dashed=True)
               for i, q in enumerate(("p50", "p99"))]
    series = [s for s in series if s.points]
    series.append(Series("target p99", "#444", [(10.0, 100.0), (80.0, 100.0)], dashed=True))
    return charts.line_chart("Lane latency by load (% of the sustained rate), latest run", series,
                             lambda x: f"{x:.0f} %", lambda v: f"{v:,.0f} ms",
                             (50, 100, 200, 250, 500, 1000, 2000, 5000), x_ticks=[float(x) for x in LEVELS])


def ceiling_ratios(run: Run) -> str:
    """The latest rates as shares of the Faust pass-through ceiling measured in the same run."""
    throughput = run.get("throughput", {})
    values: dict[tuple[str, str], float] = {}
    for workers in ("1 worker", "2 workers"):
        for name, prefix in (("to the outputs", ""), ("sustained", "sustained ")):
            ratio = figure(f"{prefix}referrals/s, {workers}", "faust")(throughput)
            if ratio is not None:
                values[(workers, name)] = ratio
    faust = figure("Faust agent pass-through")(run.get("ceilings", {}))
    drain = figure("drain rate")(run.get("crisis", {}))
    if faust and drain is not None:
        values[("crisis burst", "to the outputs")] = drain / faust
    groups = [g for g in ("1 worker", "2 workers", "crisis burst") if any(k[0] == g for k in values)]
    return charts.bar_chart("Rates / the Faust pass-through ceiling, latest run (target: 50 % with 1 worker)",
                            groups, ["to the outputs", "sustained"], values)


def render(results: Path) -> Mapping[str, str]:
    """File name -> SVG, for every chart the results allow."""
    all_runs = runs(results)
    out = {"benchmarks-targets.svg": history(all_runs)}
    latest = all_runs[-1][1] if all_runs and all_runs[-1][0] == LATEST else {}
    if "latency" in latest:
        out["benchmarks-latency.svg"] = latency_levels(latest["latency"])
    if "throughput" in latest:
        out["benchmarks-ceilings.svg"] = ceiling_ratios(latest)
    return out


def write(results: Path, out_dir: Path) -> list[Path]:
    """Render and write the charts; returns the files written."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for name, svg in render(results).items():
        path = out_dir / name
        path.write_text(svg + "\n")
        written.append(path)
    return written
