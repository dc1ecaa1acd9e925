"""The latency benchmark's arithmetic (bench/latency.py): nearest-rank percentiles, and a critical
referral's time split hop by hop."""

from __future__ import annotations

import pytest

from bench.latency import STAGES, percentiles, stages

pytestmark = pytest.mark.unit


def test_percentiles_are_nearest_rank() -> None:
    p = percentiles(list(range(1, 101)))  # 1..100
    assert (p["n"], p["p50"], p["p90"], p["p99"], p["max"]) == (100, 50, 90, 99, 100)
    assert percentiles([7])["p99"] == 7
    assert percentiles([])["p50"] is None


def test_stages_split_each_referral_at_its_hops() -> None:
    sent = {"a": 1_000, "b": 2_000, "c": 3_000}
    candidate_at = {"a": 1_040, "b": 2_010, "c": 3_005}  # intake's send
    routed_at = {"a": 1_100, "b": 2_200}  # c never reached the lane: left out of every stage
    visible_ms = {"a": 130, "b": 260, "c": 50}  # from reported_at

    by_stage = stages(sent, candidate_at, routed_at, visible_ms)

    assert list(by_stage) == list(STAGES)
    assert by_stage[STAGES[0]]["n"] == 2
    assert (by_stage[STAGES[0]]["p50"], by_stage[STAGES[0]]["max"]) == (10, 40)
    assert (by_stage[STAGES[1]]["p50"], by_stage[STAGES[1]]["max"]) == (60, 190)
    assert (by_stage[STAGES[2]]["p50"], by_stage[STAGES[2]]["max"]) == (30, 60)
