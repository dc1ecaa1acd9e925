"""Client-side parsing: defaults, types, enums, times, hashes, and the line numbers of submit's readers."""

from __future__ import annotations

import io
import uuid
from pathlib import Path
from typing import Any

import pytest

from clients.operator_cli import format_seconds, time_left
from clients.parsing import LEGAL_BASIS, ReferralError, build_referral, from_csv_row, parse_hashes, parse_time
from clients.submit import csv_rows, file_format, jsonl_rows
from streams.codec import default_codec
from streams.errors import SignalementError

pytestmark = pytest.mark.unit
NOW = 1_767_225_600_000  # 2026-01-01T00:00:00Z
URL = "https://www.youtube.com/watch?v=abc"


def build(**raw: Any) -> dict[str, Any]:
    return dict(build_referral({"url": URL, **raw}, "pharos", "FR", NOW))


def error(**raw: Any) -> ReferralError:
    with pytest.raises(ReferralError) as info:
        build_referral(raw, "pharos", "FR", NOW)
    return info.value


def test_defaults_fill_a_minimal_referral_that_encodes() -> None:
    ref = build()
    assert uuid.UUID(ref["referral_id"]).version == 4
    assert (ref["instrument"], ref["label"], ref["emergency"], ref["category"]) == ("REFERRAL", "NONE", False, "OTHER")
    assert ref["reported_at"] == NOW and ref["jurisdiction"] == "FR" and ref["content_hashes"] == []
    assert ref["legal_basis"] == LEGAL_BASIS["REFERRAL"] and ref["reporter_id"] == "pharos"
    assert default_codec().decode(default_codec().encode("Referral", ref), "Referral") == ref


def test_given_values_are_kept_and_enums_are_case_insensitive() -> None:
    rid = str(uuid.uuid4())
    ref = build(referral_id=rid, instrument="removal_order", label="LABELLED", category="threat", emergency=True,
                legal_basis="LCEN art. 6-1", language="fr", external_ref="PH-1")
    assert (ref["referral_id"], ref["instrument"], ref["category"], ref["emergency"]) == (rid, "REMOVAL_ORDER",
                                                                                           "THREAT", True)
    assert (ref["legal_basis"], ref["language"], ref["external_ref"]) == ("LCEN art. 6-1", "fr", "PH-1")


@pytest.mark.parametrize(("raw", "field", "words"), [
    ({}, "url", "missing"),
    ({"url": ""}, "url", "missing"),
    ({"url": "ftp://x.com/a"}, "url", "scheme"),
    ({"url": 42}, "url", "string"),
    ({"url": URL, "category": "PIRACY"}, "category", "not one of"),
    ({"url": URL, "instrument": "ORDER"}, "instrument", "not one of"),
    ({"url": URL, "reported_at": "yesterday"}, "reported_at", "ISO 8601"),
    ({"url": URL, "reported_at": 1_700_000_000}, "reported_at", "seconds"),
    ({"url": URL, "reported_at": NOW + 3_600_000}, "reported_at", "future"),
    ({"url": URL, "referral_id": "abc"}, "referral_id", "UUID"),
    ({"url": URL, "reporter_id": "eu-iru"}, "reporter_id", "differs"),
    ({"url": URL, "jurisdiction": "FRA"}, "jurisdiction", "3166"),
    ({"url": URL, "emergency": "maybe"}, "emergency", "true or false"),
    ({"url": URL, "content_hashes": "md5:zz"}, "content_hashes", "32 hex"),
    ({"url": URL, "content_hashes": "sha1:" + "a" * 40}, "content_hashes", "not one of"),
])
def test_bad_fields_name_the_field(raw: dict[str, Any], field: str, words: str) -> None:
    exc = error(**raw)
    assert exc.field == field and words in str(exc) and str(exc).startswith(f"{field}: ")


def test_unknown_field_is_an_error_listing_the_known_ones() -> None:
    exc = error(url=URL, urgency="high")
    assert "'urgency'" in str(exc) and "category" in str(exc)


@pytest.mark.parametrize(("value", "ms"), [
    (NOW, NOW), (str(NOW), NOW), (float(NOW), NOW),
    ("2026-01-01T00:00:00Z", NOW), ("2026-01-01T01:00:00+01:00", NOW), ("2026-01-01 00:00:00.250+00:00", NOW + 250),
])
def test_times_accept_ms_and_iso_8601(value: Any, ms: int) -> None:
    assert parse_time(value) == ms


def test_time_without_zone_is_refused() -> None:
    with pytest.raises(ReferralError, match="time zone"):
        parse_time("2026-01-01T00:00:00")


def test_hashes_in_the_csv_form_and_the_json_form() -> None:
    md5, sha = "a" * 32, "b" * 64
    assert parse_hashes(f"md5:{md5}; SHA256:{sha}") == [{"algo": "MD5", "value": md5}, {"algo": "SHA256", "value": sha}]
    assert parse_hashes([{"algo": "pdq", "value": sha}]) == [{"algo": "PDQ", "value": sha}]
    assert parse_hashes("") == [] and parse_hashes(None) == []
    with pytest.raises(ReferralError, match="algo:value"):
        parse_hashes("md5")


def test_csv_row_drops_empty_cells_and_refuses_extra_ones() -> None:
    assert from_csv_row({"url": URL, "category": "", "emergency": "yes"}) == {"url": URL, "emergency": "yes"}
    with pytest.raises(ReferralError, match="more cell"):
        from_csv_row({"url": URL, None: ["x"]})


def test_jsonl_rows_keep_line_numbers_and_skip_blank_lines() -> None:
    rows = list(jsonl_rows(iter(['{"url": "a"}\n', "\n", "{bad\n", "[1]\n", '{"url": "b"}\n'])))
    assert [n for n, _ in rows] == [1, 3, 4, 5]
    assert rows[0][1] == {"url": "a"} and isinstance(rows[1][1], ReferralError) and "invalid JSON" in str(rows[1][1])
    assert isinstance(rows[2][1], ReferralError) and "JSON object" in str(rows[2][1])


def test_csv_rows_number_lines_from_the_row_start_even_with_quoted_newlines() -> None:
    text = 'url,reasons\nhttps://x.com/a,"two\nlines"\n\nhttps://x.com/b,one\nhttps://x.com/c,one,extra\n'
    rows = list(csv_rows(iter(io.StringIO(text, newline=""))))
    assert [n for n, _ in rows] == [2, 5, 6]
    assert rows[0][1] == {"url": "https://x.com/a", "reasons": "two\nlines"}
    assert isinstance(rows[2][1], ReferralError)


def test_csv_header_with_unknown_column_stops_before_any_row() -> None:
    with pytest.raises(SignalementError, match="unknown column"):
        list(csv_rows(iter(["url,colour\n", "https://x.com/a,red\n"])))


def test_format_from_extension_or_flag() -> None:
    assert file_format(Path("a.JSONL"), None) == "jsonl" and file_format(Path("a.csv"), None) == "csv"
    assert file_format(Path("a.txt"), "csv") == "csv"
    with pytest.raises(SignalementError, match="--format"):
        file_format(Path("a.txt"), None)


def test_time_left_for_people() -> None:
    assert time_left(NOW + 3_599_000, NOW) == "in 59m 59s"
    assert time_left(NOW - 90_000, NOW) == "overdue by 1m 30s"
    assert format_seconds(8 * 86_400 + 3 * 3600 + 5) == "8d 3h" and format_seconds(0) == "0s"
