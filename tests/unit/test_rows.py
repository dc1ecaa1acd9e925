"""sinks.rows: every event maps to its table's row, column for column."""

from __future__ import annotations

from typing import Any

import pytest

from sinks import rows
from streams.codec import default_codec

pytestmark = pytest.mark.unit

T0 = 1_700_000_000_123


def routed(**over: Any) -> dict[str, Any]:
    ev: dict[str, Any] = {
        "referral_id": "0b8f7a52-3c1e-4c53-9b0e-1f2d3c4b5a69", "reporter_id": "pharos", "external_ref": None,
        "instrument": "REFERRAL", "label": "LABELLED", "emergency": False, "category": "TERRORIST_PROPAGANDA",
        "url": "https://www.YouTube.com/watch?v=x", "operator_id": "google",
        "content_hashes": [{"algo": "MD5", "value": "abc"}, {"algo": "PDQ", "value": "f00"}],
        "legal_basis": "art. 6-1 LCEN", "reasons": "propaganda", "jurisdiction": "FR", "language": "fr",
        "reported_at": T0, "normalized_url": "https://youtube.com/watch?v=x", "priority": "HIGH",
        "label_verified": True, "label_rejected": False, "routed_at": T0 + 5, "ack_deadline": T0 + 3_600_005,
        "decision_deadline": T0 + 86_400_005, "co_reporters": ["iru"], "escalated": False, "version": 2,
    }
    ev.update(over)
    return ev


def reaction(**over: Any) -> dict[str, Any]:
    ev: dict[str, Any] = {
        "referral_id": "r1", "operator_id": "meta", "reporter_id": "pharos", "priority": "CRITICAL",
        "category": "THREAT", "reported_at": T0, "routed_at": T0 + 1, "acked_at": T0 + 10, "decided_at": None,
        "action": None, "time_to_ack_ms": 9, "time_to_decision_ms": None, "ack_on_time": True,
        "decision_on_time": None, "ack_deadline": T0 + 900_001, "decision_deadline": T0 + 3_600_001,
        "updated_at": T0 + 11,
    }
    ev.update(over)
    return ev


def test_referral_row_flattens_hashes_and_flags_routing() -> None:
    row = rows.row_as_event(rows.REFERRALS, rows.referral_row(routed()))
    assert row["content_hashes.algo"] == ["MD5", "PDQ"]
    assert row["content_hashes.value"] == ["abc", "f00"]
    assert row["routed"] == 1
    assert row["version"] == 2
    assert row["co_reporters"] == ["iru"]
    assert row["routed_at"] == T0 + 5
    plain = set(rows.REFERRALS.columns) - {"content_hashes.algo", "content_hashes.value", "routed"}
    assert all(row[c] == routed()[c] for c in plain)


def test_unroutable_referral_keeps_null_operator() -> None:
    row = rows.row_as_event(rows.REFERRALS, rows.referral_row(routed(operator_id=None, content_hashes=[]),
                                                               routed=False))
    assert row["operator_id"] is None
    assert row["routed"] == 0
    assert row["content_hashes.algo"] == [] and row["content_hashes.value"] == []


def test_referral_version_defaults_to_zero() -> None:
    ev = routed()
    del ev["version"]
    assert rows.row_as_event(rows.REFERRALS, rows.referral_row(ev))["version"] == 0


def test_reaction_row_is_the_fields_in_order() -> None:
    ev = reaction()
    assert rows.REACTIONS.row(ev) == tuple(ev[c] for c in rows.REACTIONS.columns)
    assert rows.REACTIONS.columns == tuple(ev)  # same order as the Avro schema


def test_decision_row_records_the_topic_operator() -> None:
    ev = {"referral_id": "r1", "operator_id": "meta", "action": "REMOVED", "acted_at": T0, "reason": None,
          "operator_ref": "T-1"}
    row = rows.row_as_event(rows.DECISIONS, rows.decision_row(ev, "google"))
    assert row == {**ev, "topic_operator_id": "google"}


def test_rejection_keeps_raw_bytes() -> None:
    ev = {"source_topic": "reports.pharos", "source_partition": 3, "source_offset": 42, "key": None,
          "value": b"\xc3\x01\x00\xff", "error_code": "BAD_AVRO", "error": "boom", "rejected_at": T0}
    assert rows.REJECTIONS.row(ev) == tuple(ev.values())


def test_duplicate_detected_at_defaults() -> None:
    ev = {"referral_id": "d", "canonical_referral_id": "c", "reporter_id": "iru", "normalized_url": "u",
          "operator_id": "google", "reported_at": T0, "priority": "STANDARD", "escalated": True}
    assert rows.row_as_event(rows.DUPLICATES, rows.DUPLICATES.row(ev))["detected_at"] == 0


def test_every_table_covers_its_schema_fields() -> None:
    codec = default_codec()
    for name, table in rows.TABLES.items():
        fields = [f["name"] for f in codec.schema(rows.SCHEMA_OF[name]).raw["fields"]]
        flat = [c.split(".")[0] for c in table.columns]
        missing = [f for f in fields if f not in flat]
        assert not missing, f"{name} lacks columns for {missing}"


def test_insert_sql_quotes_nested_columns() -> None:
    sql = rows.REFERRALS.insert_sql("signalement")
    assert sql.startswith("INSERT INTO signalement.referrals (`referral_id`, ")
    assert "`content_hashes.algo`" in sql and sql.endswith("VALUES")


def test_extractor_for_unknown_column_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown columns"):
        rows.Table("t", ("a",), {"b": lambda e: 1})


def test_roundtrip_through_the_codec() -> None:
    codec = default_codec()
    ev = reaction(decided_at=T0 + 50, action="REMOVED", time_to_decision_ms=49, decision_on_time=True)
    decoded = codec.decode(codec.encode("Reaction", ev), "Reaction")
    assert rows.REACTIONS.row(decoded) == rows.REACTIONS.row(ev)
