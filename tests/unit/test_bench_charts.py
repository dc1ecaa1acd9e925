"""The benchmark charts (bench/charts.py): which files make the history, how a figure becomes a
share of its target's floor, and what the charts show."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

from bench import charts

pytestmark = pytest.mark.unit


def result(path: Path, benchmark: str, figures: dict[str, Any]) -> None:
    path.write_text(json.dumps({"benchmark": benchmark, "figures": figures}))


def throughput(sustained: float, faust: float) -> dict[str, Any]:
    return {"sustained referrals/s, 1 worker": {"value": sustained, "ratios": {"faust": faust}},
            "referrals/s, 1 worker": {"value": sustained * 1.25, "ratios": {"faust": faust * 1.25}}}


def test_the_history_is_each_sessions_make_bench_run_then_the_latest(tmp_path: Path) -> None:
    result(tmp_path / "throughput_session12.json", "throughput", throughput(2_000, 0.3))
    result(tmp_path / "throughput_session12_make_bench.json", "throughput", throughput(2_500, 0.35))
    result(tmp_path / "throughput_session9.json", "throughput", throughput(900, 0.25))
    result(tmp_path / "throughput_exactly_once.json", "throughput", throughput(1, 0.1))  # an experiment
    result(tmp_path / "throughput.json", "throughput", throughput(3_000, 0.4))
    result(tmp_path / "profile_session13.json", "profile", {"samples": {"value": 10}})  # no target reads it

    runs = charts.runs(tmp_path)

    assert [label for label, _ in runs] == ["session 9", "session 12", charts.LATEST]  # by number, not by name
    sustained = [run["throughput"]["figures"]["sustained referrals/s, 1 worker"]["value"] for _, run in runs]
    assert sustained == [900, 2_500, 3_000]  # session 12's `make bench` run, not its rerun


def test_a_share_of_the_floor_is_1_when_met_whichever_way_the_target_points() -> None:
    rate, p99 = charts.FLOORS[0], charts.FLOORS[2]
    assert rate.share({"figures": {"sustained referrals/s, 1 worker": {"value": 2_500}}}) == 0.25
    assert p99.share({"figures": {"p99 at 50 % load": {"value": 400}}}) == 0.25  # 100 ms / 400 ms
    assert p99.share({"figures": {"p99 at 50 % load": {"value": 80}}}) == 1.25
    assert p99.share({"figures": {}}) is None and p99.share(None) is None  # not measured: no point


def test_the_slowest_query_is_the_server_median_over_the_whole_period() -> None:
    doc = {"figures": {"query a, server": {"value": 400}, "query a": {"value": 3_000},
                       "query b, server": {"value": 19_000}, "query b, last 24 h, server": {"value": 90_000}}}
    assert charts.slowest_query(doc) == 19_000
    assert charts.slowest_query({"figures": {}}) is None


def test_the_charts_plot_every_run_and_target(tmp_path: Path) -> None:
    result(tmp_path / "throughput_session9.json", "throughput", throughput(900, 0.25))
    result(tmp_path / "throughput.json", "throughput", throughput(3_000, 0.4))
    result(tmp_path / "ceilings.json", "ceilings", {"Faust agent pass-through": {"value": 6_000}})
    result(tmp_path / "crisis.json", "crisis", {"drain rate": {"value": 3_000}})
    levels = {f"{q} at {lv} %{g} load": {"value": v} for lv in (10, 50, 80) for g in ("", ", at_least_once")
              for q, v in (("p50", lv * 3), ("p90", lv * 4), ("p99", lv * 5))}
    result(tmp_path / "latency.json", "latency", levels)

    written = charts.write(tmp_path, tmp_path / "charts")

    assert sorted(p.name for p in written) == ["benchmarks-ceilings.svg", "benchmarks-latency.svg",
                                               "benchmarks-targets.svg"]
    targets = (tmp_path / "charts" / "benchmarks-targets.svg").read_text()
    assert all(f.name.replace("<", "&lt;") in targets for f in charts.FLOORS)
    # throughput's two floors have a point in both runs: s9 at 9 % and 50 %, latest at 30 % and 80 %
    shares = re.findall(r"<title>([^<]*)</title>", targets)
    assert "10,000/s, 1 worker s9: 9 %" in shares and "0.5 of Faust ceiling latest: 80 %" in shares
    latency = (tmp_path / "charts" / "benchmarks-latency.svg").read_text()
    assert "p99 exactly-once 50 %: 250 ms" in re.findall(r"<title>([^<]*)</title>", latency)
    ceilings = (tmp_path / "charts" / "benchmarks-ceilings.svg").read_text()
    assert "crisis burst to the outputs: 50.0 %" in re.findall(r"<title>([^<]*)</title>", ceilings)
