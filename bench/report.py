"""`python -m bench report`: the results in bench/results/*.json as Markdown, written between the
`<!-- results:begin -->` and `<!-- results:end -->` markers (or printed with --print), and their
charts (bench/charts.py) into docs/charts/.

The latest run of each benchmark (`<name>.json`) goes into docs/benchmarks.md; the runs kept under
another name (`throughput_session16_make_bench.json`, ...) into docs/benchmarks-history.md. So the
figures in the docs are exactly those of the JSON files, with their ceiling ratios.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from bench import charts
from bench.common import RESULTS, console
from streams.config import ROOT

DOC = ROOT / "docs" / "benchmarks.md"
HISTORY = ROOT / "docs" / "benchmarks-history.md"
CHARTS = ROOT / "docs" / "charts"
BEGIN, END = "<!-- results:begin -->", "<!-- results:end -->"
ORDER = ("ceilings", "throughput", "latency", "crisis", "state", "analytics", "logic", "tables", "profile", "soak")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--print", action="store_true", help="print the Markdown instead of updating docs/benchmarks.md")


def _value(fig: dict[str, Any]) -> str:
    v = fig.get("value")
    if v is None:
        return "-"
    if isinstance(v, float) and not v.is_integer():
        return f"{v:,.3g}" if abs(v) < 100 else f"{v:,.0f}"
    return f"{int(v):,}"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def section(doc: dict[str, Any]) -> str:
    figs = doc.get("figures", {})
    lines = [f"### {doc['benchmark']}: {doc.get('title', '')}", "",
             f"{doc.get('started_at', '?')}, {doc.get('duration_s', '?')} s, git {doc.get('git', {}).get('describe', '?')}; "
             f"parameters: `{json.dumps(doc.get('parameters', {}), default=str)}`", "",
             "| figure | value | unit | / raw | / Faust | note |", "|---|---:|---|---:|---:|---|"]
    for label, fig in figs.items():
        r = fig.get("ratios", {})
        raw = f"{r['raw']:.3f}" if "raw" in r else ""
        faust = f"{r['faust']:.2f}" if "faust" in r else ""
        lines.append(f"| {_cell(label)} | {_value(fig)} | {fig.get('unit', '')} | {raw} | {faust} | "
                     f"{_cell(fig.get('note', ''))} |")
    targets = doc.get("targets", [])
    if targets:
        lines += ["", "| target | limit | measured | met |", "|---|---|---|---|"]
        for t in targets:
            lines.append(f"| {_cell(t['name'])} | {_cell(t['limit'])} | {_cell(t['measured'])} | "
                         f"{'yes' if t['met'] else '**no**'} |")
    return "\n".join(lines)


def markdown(latest: bool = True) -> str:
    """The latest runs (a file named after its benchmark), or the runs kept under other names."""
    docs = {}
    for path in sorted(RESULTS.glob("*.json")):
        if (path.stem in ORDER) != latest:
            continue
        doc = json.loads(path.read_text())
        # by file: a run kept under another name (throughput_exactly_once.json) has the same "benchmark"
        docs[path.stem] = {**doc, "benchmark": path.stem}
    if not docs:
        return "_No results yet: run `make bench`._"
    any_doc = docs.get("ceilings") or next(iter(docs.values()))
    m, v = any_doc.get("machine", {}), any_doc.get("versions", {})
    head = [f"Machine: {m.get('nproc')} cores ({m.get('cpu_model')}), {m.get('memory_gib')} GiB, kernel "
            f"{m.get('kernel')}. Versions: " + ", ".join(f"{k} {val}" for k, val in v.items()) + ".", ""]
    body = [section(docs[name]) for name in ORDER if name in docs]
    body += [section(doc) for name, doc in docs.items() if name not in ORDER]
    return "\n".join(head) + "\n" + "\n\n".join(body)


def write_between_markers(path: Path, text: str) -> bool:
    """Replace what `path` holds between BEGIN and END with `text`; False if it has no markers."""
    doc = path.read_text() if path.exists() else ""
    if BEGIN not in doc or END not in doc:
        console.print(f"{path} has no {BEGIN} / {END} markers; printing instead")
        print(text)
        return False
    head, rest = doc.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    path.write_text(f"{head}{BEGIN}\n{text}\n{END}{tail}")
    console.print(f"results written into {path.relative_to(ROOT)}")
    return True


def run(args: argparse.Namespace) -> int:
    if args.print:
        print(markdown(latest=True))
        return 0
    write_between_markers(DOC, markdown(latest=True))
    write_between_markers(HISTORY, markdown(latest=False))
    for path in charts.write(RESULTS, CHARTS):
        console.print(f"chart written: {path.relative_to(ROOT)}")
    return 0
