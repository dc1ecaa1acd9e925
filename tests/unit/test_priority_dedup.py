"""Label priority, deadlines, dedup/replay/escalation and field validation: pure, table-driven."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from agents.logic import dedup
from agents.logic.intake import Intake
from agents.logic.priority import claims_urgency, deadlines, rank
from agents.logic.validate import check_decision, check_referral
from streams.config import ROOT
from streams.errors import ConfigError, RejectedError
from streams.policy import Policy
from streams.registry import Registry, Reporter

pytestmark = pytest.mark.unit
POLICY = Policy.load(ROOT / "config" / "policy.yaml")
REGISTRY = Registry.load(ROOT / "config" / "reporters.yaml", ROOT / "config" / "operators.yaml")
NOW = 1_767_225_600_000
LABELLED_ORDERS = Reporter("pharos", "PHAROS", labelled=True, removal_orders=True)
LABELLED = Reporter("eu-iru", "EU IRU", labelled=True, removal_orders=False)
ORDERS = Reporter("tj-paris", "Tribunal", labelled=False, removal_orders=True)
NOBODY = Reporter("ngo", "NGO", labelled=False, removal_orders=False)


def referral(**kw: Any) -> Any:
    base = {"referral_id": "5f1c7b52-1111-4d2e-9f00-000000000001", "reporter_id": "pharos", "external_ref": None,
            "instrument": "REFERRAL", "label": "NONE", "emergency": False, "category": "TERRORIST_PROPAGANDA",
            "url": "https://www.youtube.com/watch?v=abc", "operator_id": None, "content_hashes": [],
            "legal_basis": "TCO", "reasons": "r", "jurisdiction": "FR", "language": "fr", "reported_at": NOW}
    base.update(kw)
    return base


@pytest.mark.parametrize(("reporter", "instrument", "label", "emergency", "expected"), [
    (LABELLED_ORDERS, "REMOVAL_ORDER", "NONE", False, ("CRITICAL", False, False)),
    (LABELLED_ORDERS, "REMOVAL_ORDER", "LABELLED", False, ("CRITICAL", True, False)),
    (LABELLED_ORDERS, "REFERRAL", "LABELLED", False, ("HIGH", True, False)),
    (LABELLED_ORDERS, "REFERRAL", "LABELLED", True, ("CRITICAL", True, False)),
    (LABELLED_ORDERS, "NOTICE", "NONE", False, ("STANDARD", False, False)),
    (LABELLED, "REFERRAL", "LABELLED", False, ("HIGH", True, False)),
    (LABELLED, "REFERRAL", "NONE", True, ("CRITICAL", False, False)),
    (LABELLED, "REMOVAL_ORDER", "LABELLED", False, ("HIGH", True, True)),  # forged order: downgraded
    (LABELLED, "REMOVAL_ORDER", "NONE", False, ("STANDARD", False, True)),
    (ORDERS, "REMOVAL_ORDER", "NONE", False, ("CRITICAL", False, False)),
    (ORDERS, "REFERRAL", "LABELLED", False, ("STANDARD", False, True)),  # forged label
    (ORDERS, "REFERRAL", "NONE", True, ("STANDARD", False, False)),  # emergency needs the label
    (NOBODY, "REFERRAL", "LABELLED", True, ("STANDARD", False, True)),
    (NOBODY, "REMOVAL_ORDER", "LABELLED", False, ("STANDARD", False, True)),
    (NOBODY, "NOTICE", "NONE", False, ("STANDARD", False, False)),
])
def test_rank(reporter: Reporter, instrument: str, label: str, emergency: bool, expected: tuple[str, bool, bool]) -> None:
    r = rank(referral(instrument=instrument, label=label, emergency=emergency), reporter)
    assert (r.priority, r.label_verified, r.label_rejected) == expected


@pytest.mark.parametrize("reporter", [LABELLED_ORDERS, LABELLED, ORDERS, NOBODY], ids=lambda r: r.id)
def test_every_critical_referral_claims_urgency(reporter: Reporter) -> None:
    """The reporter's client sends what claims urgency to its urgent topic: no referral the policy
    ranks CRITICAL may miss it, and nothing else is sent there."""
    for instrument in ("REMOVAL_ORDER", "REFERRAL", "NOTICE"):
        for label in ("NONE", "LABELLED"):
            for emergency in (False, True):
                ref = referral(instrument=instrument, label=label, emergency=emergency)
                if rank(ref, reporter).priority == "CRITICAL":
                    assert claims_urgency(ref), (instrument, label, emergency)
                assert claims_urgency(ref) == (instrument == "REMOVAL_ORDER" or emergency)


def test_reporter_topics_and_back() -> None:
    from streams.topics import Topics

    names = Topics(prefix="t.")
    assert names.reports_urgent("tj-paris") == "t.reports.tj-paris.urgent"
    assert names.reporter_of("t.reports.tj-paris.urgent") == names.reporter_of("t.reports.tj-paris") == "tj-paris"
    assert names.reporter_of("t.referrals.accepted") is None
    main, urgent = names.intake_topics(["pharos", "eu-iru"])
    assert main == ["t.reports.eu-iru", "t.reports.pharos"]
    assert urgent == ["t.reports.eu-iru.urgent", "t.reports.pharos.urgent"]
    assert {s.name for s in names.catalogue(REGISTRY)} >= {names.reports_urgent(r) for r in REGISTRY.reporters}


@pytest.mark.parametrize(("priority", "ack", "decide"), [
    ("CRITICAL", 15 * 60_000, 3_600_000), ("HIGH", 3_600_000, 86_400_000), ("STANDARD", 86_400_000, 7 * 86_400_000)])
def test_deadlines_from_routed_at(priority: str, ack: int, decide: int) -> None:
    assert deadlines(POLICY, priority, NOW) == (NOW + ack, NOW + decide)


def candidate(rid: str, reporter: str = "pharos", priority: str = "STANDARD", url: str = "https://x.com/a") -> Any:
    return {**referral(referral_id=rid, reporter_id=reporter), "normalized_url": url, "operator_id": "twitter",
            "priority": priority, "label_verified": False, "label_rejected": False, "routed_at": 0,
            "ack_deadline": 0, "decision_deadline": 0, "co_reporters": [], "escalated": False, "version": 0}


def test_new_item_is_routed_with_deadlines() -> None:
    adm = dedup.admit(None, candidate("a"), NOW, POLICY)
    assert adm.route is not None and adm.duplicate is None and adm.update is None
    assert (adm.route["routed_at"], adm.route["ack_deadline"]) == (NOW, NOW + 86_400_000)
    assert adm.item is not None and adm.item["ids"] == ["a"]


def test_replay_changes_nothing() -> None:
    item = dedup.admit(None, candidate("a"), NOW, POLICY).item
    assert dedup.admit(item, candidate("a"), NOW + 5, POLICY) == dedup.Admission()


def test_duplicate_from_another_reporter_adds_a_co_reporter() -> None:
    item = dedup.admit(None, candidate("a"), NOW, POLICY).item
    adm = dedup.admit(item, candidate("b", reporter="eu-iru"), NOW + 5, POLICY)
    assert adm.route is None and adm.duplicate is not None and adm.update is not None
    assert adm.duplicate["canonical_referral_id"] == "a" and not adm.duplicate["escalated"]
    assert adm.update["co_reporters"] == ["eu-iru"] and adm.update["version"] == 1
    same = dedup.admit(adm.item, candidate("c", reporter="eu-iru"), NOW + 6, POLICY)
    assert same.update is None and same.duplicate is not None  # no new co-reporter, no new version


def test_escalation_happens_once_and_not_after_the_decision() -> None:
    item = dedup.admit(None, candidate("a"), NOW, POLICY).item
    up = dedup.admit(item, candidate("b", reporter="eu-iru", priority="HIGH"), NOW + 10, POLICY)
    assert up.route is not None and up.route["priority"] == "HIGH" and up.route["escalated"]
    assert up.route["routed_at"] == NOW + 10 and up.route["ack_deadline"] == NOW + 10 + 3_600_000
    assert up.duplicate is not None and up.duplicate["escalated"]
    again = dedup.admit(up.item, candidate("c", reporter="tj-paris", priority="CRITICAL"), NOW + 20, POLICY)
    assert again.route is None and again.duplicate is not None and not again.duplicate["escalated"]
    decided = dedup.mark_decided(dedup.admit(None, candidate("x"), NOW, POLICY).item)
    late = dedup.admit(decided, candidate("y", reporter="eu-iru", priority="CRITICAL"), NOW + 1, POLICY)
    assert late.route is None and late.duplicate is not None
    assert dedup.mark_decided(decided) is None


def test_items_expire_after_the_horizon() -> None:
    item = dedup.admit(None, candidate("a"), NOW, POLICY).item
    assert item is not None
    assert not dedup.expired(item, NOW + POLICY.dedup_horizon_ms, POLICY.dedup_horizon_ms)
    assert dedup.expired(item, NOW + POLICY.dedup_horizon_ms + 1, POLICY.dedup_horizon_ms)
    again = dedup.admit(item, candidate("b"), NOW + POLICY.dedup_horizon_ms + 1, POLICY)
    assert again.route is not None and again.route["referral_id"] == "b"


def test_state_round_trips_through_json() -> None:
    item = dedup.admit(None, candidate("a"), NOW, POLICY).item
    assert item is not None and dedup.loads(dedup.dumps(item)) == item


@pytest.mark.parametrize(("url", "operator"), [
    ("https://www.youtube.com/watch?v=1", "google"), ("https://m.facebook.com/p/1", "meta"),
    ("https://mobile.twitter.com/u/status/1", "twitter"), ("https://podcasts.apple.com/x", "apple"),
    ("https://gist.github.com/x", "microsoft"), ("https://unknown.example/x", None)])
def test_intake_routes_by_host(url: str, operator: str | None) -> None:
    cand = Intake.build(REGISTRY).candidate(referral(url=url), "pharos", NOW)
    assert cand["operator_id"] == operator


def test_intake_explicit_operator_wins() -> None:
    cand = Intake.build(REGISTRY).candidate(referral(operator_id="meta"), "pharos", NOW)
    assert cand["operator_id"] == "meta"


@pytest.mark.parametrize(("change", "topic", "code"), [
    ({}, "nobody", "UNKNOWN_REPORTER"),
    ({"reporter_id": "eu-iru"}, "pharos", "IDENTITY_MISMATCH"),
    ({"referral_id": "x"}, "pharos", "INVALID_FIELD"),
    ({"referral_id": "5f1c7b52-1111-4d2e-9f00-00000000000\n"}, "pharos", "INVALID_FIELD"),
    ({"jurisdiction": "fr"}, "pharos", "INVALID_FIELD"),
    ({"language": "fra"}, "pharos", "INVALID_FIELD"),
    ({"legal_basis": " "}, "pharos", "INVALID_FIELD"),
    ({"reported_at": -1}, "pharos", "INVALID_FIELD"),
    ({"reported_at": 253_402_300_799_000}, "pharos", "INVALID_FIELD"),
    ({"reasons": "x" * 8193}, "pharos", "INVALID_FIELD"),
    ({"external_ref": "a\x00b"}, "pharos", "INVALID_FIELD"),
    ({"content_hashes": [{"algo": "MD5", "value": "zz"}]}, "pharos", "INVALID_FIELD"),
    ({"url": "ftp://x.com/a"}, "pharos", "INVALID_FIELD"),
    ({"url": "https://x.com/" + "a" * 5_000_000}, "pharos", "INVALID_FIELD"),
])
def test_intake_rejects_with_a_precise_code(change: dict[str, Any], topic: str, code: str) -> None:
    with pytest.raises(RejectedError) as info:
        Intake.build(REGISTRY).candidate(referral(**change), topic, NOW)
    assert info.value.code == code


def test_valid_referral_and_decision_pass(tmp_path: Path) -> None:
    check_referral(referral(reasons="line one\nline two"), "pharos", NOW)
    check_decision({"referral_id": "5f1c7b52-1111-4d2e-9f00-000000000001", "operator_id": "meta",
                    "action": "REMOVED", "acted_at": NOW, "reason": None, "operator_ref": None}, "meta", NOW)
    with pytest.raises(RejectedError, match="published on the topic"):
        check_decision({"referral_id": "5f1c7b52-1111-4d2e-9f00-000000000001", "operator_id": "meta",
                        "action": "REMOVED", "acted_at": NOW, "reason": None, "operator_ref": None}, "google", NOW)


def test_policy_urgent_priorities(tmp_path: Path) -> None:
    assert POLICY.urgent == {"CRITICAL"}
    text = (ROOT / "config" / "policy.yaml").read_text()
    path = tmp_path / "policy.yaml"
    path.write_text(text.replace("urgent: true", "urgent: false"))
    assert Policy.load(path).urgent == frozenset()
    path.write_text(text.replace("urgent: true", "urgent: soon"))
    with pytest.raises(ConfigError, match="CRITICAL: urgent must be true or false"):
        Policy.load(path)


def _merge(n: int, start: int = 0) -> tuple[dict[str, Any], dict[bytes, bytes], list[dedup.Admission]]:
    """An item of n referrals ("r0" first), the spilled ids written as the agent writes them."""
    item = dedup.admit(None, candidate(f"r{start}"), NOW, POLICY).item
    assert item is not None
    table: dict[bytes, bytes] = {}
    adms = []
    for i in range(start + 1, start + n):
        adm = dedup.admit(item, candidate(f"r{i}", reporter="eu-iru"), NOW + i, POLICY,
                          lambda rid: table.get(dedup.spill_key(b"k", rid)))
        assert adm.item is not None and adm.duplicate is not None
        if adm.spill is not None:
            table[dedup.spill_key(b"k", adm.spill[0])] = adm.spill[1]
        item = adm.item
        adms.append(adm)
    return item, table, adms


def test_an_item_keeps_its_latest_ids_and_spills_the_older_ones() -> None:
    n = dedup.KEEP_IDS + 500
    item, table, adms = _merge(n)
    assert item["ids"] == [f"r{i}" for i in range(n - dedup.KEEP_IDS, n)]
    assert sorted(table) == sorted(dedup.spill_key(b"k", f"r{i}") for i in range(n - dedup.KEEP_IDS))
    assert item["n"] == n - dedup.KEEP_IDS and item["s"] == NOW + dedup.KEEP_IDS  # epoch: the first spill
    assert [a.spill is not None for a in adms].count(True) == n - dedup.KEEP_IDS
    assert len(dedup.dumps(item)) < 4_000  # bounded: 64 ids and the canonical referral


def test_replays_of_spilled_and_kept_ids_change_nothing_and_new_ones_are_duplicates() -> None:
    item, table, _ = _merge(dedup.KEEP_IDS + 10)
    lookups: list[str] = []

    def lookup(rid: str) -> bytes | None:
        lookups.append(rid)
        return table.get(dedup.spill_key(b"k", rid))

    for rid in ("r0", "r5", f"r{dedup.KEEP_IDS + 9}"):  # spilled first, spilled, the latest
        assert dedup.admit(item, candidate(rid, reporter="ctiru"), NOW + 10_000, POLICY, lookup) == dedup.Admission()
    new = dedup.admit(item, candidate("fresh", reporter="ctiru"), NOW + 10_000, POLICY, lookup)
    assert new.duplicate is not None and new.duplicate["referral_id"] == "fresh"
    assert lookups == ["r0", "r5", "fresh"]  # a kept id needs no lookup


def test_an_item_that_never_spilled_looks_nothing_up() -> None:
    item = dedup.admit(None, candidate("a"), NOW, POLICY).item

    def lookup(rid: str) -> bytes | None:
        raise AssertionError(f"looked up {rid}")

    assert item is not None
    adm = dedup.admit(item, candidate("b", reporter="eu-iru"), NOW + 1, POLICY, lookup)
    assert adm.duplicate is not None and adm.spill is None and "n" not in adm.item  # type: ignore[operator]


def test_ids_spilled_by_an_expired_item_are_not_replays_of_the_next_one() -> None:
    old, table, _ = _merge(dedup.KEEP_IDS + 5)
    later = NOW + POLICY.dedup_horizon_ms + 10_000
    again = dedup.admit(old, candidate("new-first"), later, POLICY, lambda rid: table.get(dedup.spill_key(b"k", rid)))
    assert again.route is not None and again.item is not None  # the old item expired: a new one
    item = again.item
    for i in range(dedup.KEEP_IDS + 1):  # the new item spills too, under its own epoch
        adm = dedup.admit(item, candidate(f"n{i}", reporter="eu-iru"), later + i, POLICY)
        assert adm.item is not None
        item = adm.item
    assert item["s"] != old["s"]
    # "r0" was spilled by the old item: reported again, it is a duplicate of the new one
    adm = dedup.admit(item, candidate("r0", reporter="ctiru"), later + 100, POLICY,
                      lambda rid: table.get(dedup.spill_key(b"k", rid)))
    assert adm.duplicate is not None and adm.duplicate["canonical_referral_id"] == "new-first"


def test_the_sweeper_keeps_spilled_ids_for_two_horizons() -> None:
    h = POLICY.dedup_horizon_ms
    item, table, _ = _merge(dedup.KEEP_IDS + 1)
    (key, value), = table.items()
    assert dedup.is_spill_key(key) and not dedup.is_spill_key(b"twitter|https://x.com/a")
    spilled_at = NOW + dedup.KEEP_IDS
    assert not dedup.stale(key, value, spilled_at + 2 * h, h)
    assert dedup.stale(key, value, spilled_at + 2 * h + 1, h)
    routed_at = item["c"]["routed_at"]
    assert not dedup.stale(b"k", dedup.dumps(item), routed_at + h, h)
    assert dedup.stale(b"k", dedup.dumps(item), routed_at + h + 1, h)
