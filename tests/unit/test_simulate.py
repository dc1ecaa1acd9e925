"""The simulator's pure parts: seeded load, URLs that route, malformed records, reactions, schedule, policy."""

from __future__ import annotations

import math
import random
import statistics
from collections import Counter
from pathlib import Path

import pytest
import yaml

from agents.logic.intake import Intake
from agents.logic.normalize import normalize
from agents.logic.routing import HostRouter
from clients.parsing import build_referral
from clients.simload import MALFORMED, crisis, make_url, malformed, pick_reporter, referral
from clients.simmodel import (
    OPERATORS,
    Planned,
    Schedule,
    plan_reaction,
    profile_of,
    reaction_rng,
    sample_delay_s,
    scale_policy,
)
from clients.simulate import SimConfig, write_policy
from streams.config import Settings
from streams.errors import RejectedError, SignalementError
from streams.policy import Policy
from streams.registry import Registry

pytestmark = pytest.mark.unit
NOW = 1_767_225_600_000


@pytest.fixture(scope="module")
def registry() -> Registry:
    s = Settings()
    return Registry.load(s.reporters_path, s.operators_path)


def load(seed: int, registry: Registry, n: int = 200) -> list[dict[str, object]]:
    rng = random.Random(seed)
    hosts, reporters = sorted(registry.host_index()), sorted(registry.reporters)
    return [referral(rng, pick_reporter(rng, reporters), hosts, NOW) for _ in range(n)]


def test_same_seed_same_load_other_seed_other_load(registry: Registry) -> None:
    assert load(7, registry) == load(7, registry)
    assert load(7, registry) != load(8, registry)


def test_generated_referrals_are_valid_and_route_to_their_operator(registry: Registry) -> None:
    rng = random.Random(1)
    hosts, router = sorted(registry.host_index()), HostRouter(registry.host_index())
    routed: Counter[str | None] = Counter()
    for _ in range(3000):
        reporter = pick_reporter(rng, sorted(registry.reporters))
        ref = build_referral(referral(rng, reporter, hosts, NOW), reporter, "FR", NOW)
        routed[router.route(normalize(ref["url"])[1])] += 1
    assert set(routed) - {None} == set(registry.operators)
    assert 0.003 < routed[None] / 3000 < 0.02  # about 1 % on unknown hosts


def test_reporter_mix_follows_the_registry_roles(registry: Registry) -> None:
    refs = load(3, registry, 4000)
    by = Counter(pick for pick in (r["external_ref"].split("-")[0].lower() for r in refs))  # type: ignore[union-attr]
    assert by["pharos"] > by["pointdecontact"] > by["tj"]
    orders = {r["external_ref"].split("-")[0] for r in refs if r["instrument"] == "REMOVAL_ORDER"}  # type: ignore[union-attr]
    assert orders == {"PHAROS", "TJ"}
    assert {r["instrument"] for r in refs if str(r["external_ref"]).startswith("POINTDECONTACT")} == {"NOTICE"}


def test_every_malformed_kind_is_rejected_by_the_pipeline(registry: Registry) -> None:
    intake, rng = Intake.build(registry), random.Random(5)
    seen = set()
    while len(seen) < len(MALFORMED):
        good = build_referral(referral(rng, "pharos", ["youtube.com"], NOW), "pharos", "FR", NOW)
        kind, bad = malformed(rng, dict(good), "eu-iru")
        seen.add(kind)
        if isinstance(bad, bytes):
            continue  # not Avro: the codec rejects it (tested with the codec)
        with pytest.raises(RejectedError):
            intake.candidate(bad, "pharos", NOW)  # type: ignore[arg-type]


def test_crisis_is_many_urls_reported_several_times() -> None:
    reports = crisis(random.Random(2), 1000, ["pharos", "eu-iru", "ctiru", "tj-paris", "pointdecontact"])
    urls = Counter(r.url for r in reports)
    assert len(urls) == 1000 and len(reports) > 1500
    assert {r.reporter_id for r in reports} == {"pharos", "eu-iru", "ctiru", "pointdecontact"}
    assert [r.at for r in reports] == sorted(r.at for r in reports) and 0 <= reports[0].at <= reports[-1].at <= 1
    assert {r.instrument for r in reports if r.reporter_id == "pharos"} == {"REMOVAL_ORDER", "REFERRAL"}


@pytest.mark.parametrize("operator_id", sorted(OPERATORS))
@pytest.mark.parametrize("priority", ["CRITICAL", "HIGH", "STANDARD"])
def test_sampled_medians_match_the_profile(operator_id: str, priority: str) -> None:
    profile, rng = profile_of(operator_id), random.Random(11)
    median = statistics.median(sample_delay_s(rng, profile, priority) for _ in range(4000))
    assert math.isclose(median, profile.medians[priority], rel_tol=0.08)


def test_late_operators_miss_the_critical_hour_on_median() -> None:
    late = {op for op, p in OPERATORS.items() if p.late}
    assert late and all(OPERATORS[op].medians["CRITICAL"] > 3600 for op in late)
    assert all(p.medians["CRITICAL"] < 3600 for op, p in OPERATORS.items() if op not in late)


def test_reaction_plan_is_compressed_by_speed_and_ack_comes_first() -> None:
    plans = [plan_reaction(reaction_rng(1, "google", str(i)), profile_of("google"), str(i), "CRITICAL", NOW, 60)
             for i in range(2000)]
    finals = [p[-1] for p in plans]
    median_s = statistics.median((f.at_ms - NOW) / 1000 for f in finals)
    assert math.isclose(median_s, profile_of("google").medians["CRITICAL"] / 60, rel_tol=0.1)
    acked = [p for p in plans if len(p) == 2]
    assert all(p[0].action == "ACKNOWLEDGED" and p[0].at_ms <= p[1].at_ms for p in acked)
    assert 0.5 < len(acked) / len(plans) < 0.7
    actions = Counter(f.action for f in finals)
    assert actions["REMOVED"] > actions["DISABLED"] > actions["REFUSED"] > 0
    assert all(f.reason for f in finals if f.action == "REFUSED")


def test_reaction_depends_only_on_seed_operator_and_referral() -> None:
    def plan(seed: int) -> list[Planned]:
        return plan_reaction(reaction_rng(seed, "meta", "r1"), profile_of("meta"), "r1", "HIGH", NOW, 1)
    assert plan(1) == plan(1) and plan(1) != plan(2)


def test_schedule_releases_due_decisions_in_time_order() -> None:
    schedule = Schedule()
    for at in (30, 10, 20, 10):
        schedule.add("google", Planned(at, f"r{at}", "REMOVED"))
    assert [p.at_ms for _, p in schedule.due(15)] == [10, 10]
    assert schedule.due(5) == [] and len(schedule) == 2
    assert [p.at_ms for _, p in schedule.due(100)] == [20, 30]


def test_scaled_policy_divides_durations_and_stays_valid(tmp_path: Path) -> None:
    source = Settings().policy_path
    policy, original = write_policy(source, tmp_path / "p.yaml", 60), Policy.load(source)
    assert policy.deadlines["CRITICAL"].ack_ms == original.deadlines["CRITICAL"].ack_ms // 60 == 15_000
    assert policy.deadlines["STANDARD"].decide_ms == original.deadlines["STANDARD"].decide_ms // 60
    assert policy.window_step_ms == 5_000 and policy.window_size_ms == 60_000
    assert policy.dedup_horizon_ms == original.dedup_horizon_ms // 60
    assert 250 <= policy.overdue_check_interval_ms <= original.overdue_check_interval_ms
    assert policy.unknown_grace_ms == 30_000  # a floor: the pipeline's lag does not shrink with speed
    assert policy.urgent == original.urgent == {"CRITICAL"}


def test_scaled_policy_keeps_size_a_multiple_of_step_for_any_speed() -> None:
    doc = yaml.safe_load(Settings().policy_path.read_text())
    for speed in (1, 7, 13.5, 1000):
        win = scale_policy(doc, speed)["windows"]
        size, step = int(win["size"][:-2]), int(win["step"][:-2])
        assert size % step == 0 and size // step == 12


def test_config_checks_values() -> None:
    with pytest.raises(SignalementError, match="rate"):
        SimConfig(rate=0).checked()
    with pytest.raises(SignalementError, match="malformed_share"):
        SimConfig(malformed_share=2).checked()
    assert SimConfig().checked() == SimConfig()


def test_url_on_a_registry_without_known_patterns() -> None:
    url = make_url(random.Random(0), ["video.example"], unknown_share=0)
    assert url.startswith("https://video.example/content/")
