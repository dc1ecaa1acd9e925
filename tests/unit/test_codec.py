"""The codec: single-object encoding, the catalogue, the reference library, schema evolution."""

from __future__ import annotations

import io
import json
import random
import struct
from pathlib import Path
from typing import Any

import avro.io
import avro.schema
import fastavro
import pytest

from streams.codec import MAGIC, Codec, _encode_optional_string, _extends, crc64_fingerprint, default_codec
from streams.errors import BadAvroError, SchemaUnknownError
from tests import hostile_corpus as hc

pytestmark = pytest.mark.unit
T = 1_767_225_600_123  # 2026-01-01T00:00:00.123Z
RID = "5f1c7b52-1111-4d2e-9f00-000000000001"

REFERRAL: dict[str, Any] = {
    "referral_id": RID, "reporter_id": "pharos", "external_ref": "PH-2026-1", "instrument": "REMOVAL_ORDER",
    "label": "LABELLED", "emergency": True, "category": "TERRORIST_PROPAGANDA",
    "url": "https://www.youtube.com/watch?v=abc", "operator_id": None,
    "content_hashes": [{"algo": "SHA256", "value": "ab" * 32}, {"algo": "PDQ", "value": "cd" * 32}],
    "legal_basis": "TCO 2021/784 art. 3", "reasons": "incites\nto violence", "jurisdiction": "FR", "language": "fr",
    "reported_at": T,
}
ROUTED = {**REFERRAL, "operator_id": "google", "normalized_url": "https://youtube.com/watch?v=abc",
          "priority": "CRITICAL", "label_verified": True, "label_rejected": False, "routed_at": T + 5,
          "ack_deadline": T + 900_005, "decision_deadline": T + 3_600_005, "co_reporters": ["eu-iru"],
          "escalated": False, "version": 2}
EXAMPLES: dict[str, dict[str, Any]] = {
    "Referral": REFERRAL,
    "RoutedReferral": ROUTED,
    "DuplicateReferral": {"referral_id": RID, "canonical_referral_id": RID.replace("1", "2"), "reporter_id": "eu-iru",
                          "normalized_url": "https://x.com/a", "operator_id": "twitter", "reported_at": T,
                          "priority": "HIGH", "escalated": True, "detected_at": T + 1},
    "Rejection": {"source_topic": "reports.pharos", "source_partition": 3, "source_offset": 42, "key": b"k",
                  "value": b"\xc3\x01garbage\x00", "error_code": "BAD_AVRO", "error": "bad", "rejected_at": T},
    "OperatorDecision": {"referral_id": RID, "operator_id": "google", "action": "REMOVED", "acted_at": T + 60_000,
                         "reason": None, "operator_ref": "T-1"},
    "Reaction": {"referral_id": RID, "operator_id": "google", "reporter_id": "pharos", "priority": "CRITICAL",
                 "category": "THREAT", "reported_at": T, "routed_at": T + 5, "acked_at": T + 10, "decided_at": None,
                 "action": None, "time_to_ack_ms": 5, "time_to_decision_ms": None, "ack_on_time": True,
                 "decision_on_time": None, "ack_deadline": T + 900_005, "decision_deadline": T + 3_600_005,
                 "updated_at": T + 11},
    "ReactionWindow": {"operator_id": "meta", "priority": "HIGH", "window_start": 0, "window_end": 3_600_000,
                       "decided": 10, "on_time": 9, "breached": 1, "p50_ms": 1, "p90_ms": 2, "p99_ms": 3,
                       "max_ms": 4, "mean_ms": 1.5, "acked": 10, "ack_p90_ms": 1, "updated_at": T, "closed": False},
    "OverdueAlert": {"referral_id": RID, "operator_id": "apple", "priority": "STANDARD", "deadline_kind": "ACK",
                     "deadline": T, "detected_at": T + 1000},
    "ItemDecided": {"dedup_key": "google|https://youtube.com/watch?v=abc", "referral_id": RID, "decided_at": T},
    "RecordPack": {"items": [{"key": b"google|https://youtube.com/watch?v=abc", "value": b"\xc3\x01routed"},
                                {"key": b"meta|https://fb.com/x", "value": b""}]},
}


def test_catalogue_has_every_event_of_the_contract() -> None:
    assert set(default_codec().by_name) == set(EXAMPLES)


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_round_trip(name: str) -> None:
    codec = default_codec()
    data = codec.encode(name, EXAMPLES[name])
    assert data[:2] == MAGIC
    assert struct.unpack("<Q", data[2:10])[0] == codec.schema(name).fingerprint
    assert codec.decode_any(data) == (name, EXAMPLES[name])


EMPTY = 0xC15D213AA4D7A795  # the Avro spec's CRC-64-AVRO seed


def spec_crc64(data: bytes) -> int:
    """CRC-64-AVRO exactly as the Avro specification writes it (independent of fastavro)."""
    table = []
    for i in range(256):
        fp = i
        for _ in range(8):
            fp = (fp >> 1) ^ (EMPTY & -(fp & 1))
        table.append(fp)
    fp = EMPTY
    for byte in data:
        fp = (fp >> 8) ^ table[(fp ^ byte) & 0xFF]
    return fp


@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_reference_library_reads_our_bytes(name: str) -> None:
    """Apache's own `avro` package decodes the body; the header carries its schema's fingerprint."""
    codec = default_codec()
    path = Path(__file__).resolve().parents[2] / "schemas" / f"{name}.avsc"
    schema = avro.schema.parse(path.read_text())
    data = codec.encode(name, EXAMPLES[name])
    # avro 1.12's canonical_form keeps {"type":"long"} for logical types, against the spec's
    # [PRIMITIVES] rule (Java's SchemaNormalization writes "long"): apply the rule, then the spec's CRC.
    pcf = schema.canonical_form.replace('{"type":"long"}', '"long"')
    assert data[2:10] == struct.pack("<Q", spec_crc64(pcf.encode()))
    decoded = avro.io.DatumReader(schema).read(avro.io.BinaryDecoder(io.BytesIO(data[10:])))
    expected = EXAMPLES[name]
    for field, value in expected.items():
        got = decoded[field]
        if hasattr(got, "timestamp"):  # avro decodes timestamp-millis to an aware datetime
            got = round(got.timestamp() * 1000)
        assert got == value, field


def test_old_reader_reads_a_record_with_an_added_defaulted_field(tmp_path: Path) -> None:
    """Evolution: a writer adds a field with a default; a reader on the old catalogue resolves by name."""
    import fastavro

    old = json.loads((Path(__file__).resolve().parents[2] / "schemas" / "OperatorDecision.avsc").read_text())
    new = json.loads(json.dumps(old))
    new["fields"].append({"name": "evidence_url", "type": ["null", "string"], "default": None})
    assert crc64_fingerprint(new) != crc64_fingerprint(old)
    buf = io.BytesIO()
    record = {**EXAMPLES["OperatorDecision"], "evidence_url": "https://ticket/1"}
    fastavro.schemaless_writer(buf, fastavro.parse_schema(new), record)
    old_view = fastavro.schemaless_reader(io.BytesIO(buf.getvalue()), fastavro.parse_schema(new),
                                          fastavro.parse_schema(old))
    assert old_view == {**EXAMPLES["OperatorDecision"], "acted_at": old_view["acted_at"]}
    assert "evidence_url" not in old_view
    # and an old writer's bytes are read by the new schema with the default filled in
    buf = io.BytesIO()
    fastavro.schemaless_writer(buf, fastavro.parse_schema(old), EXAMPLES["OperatorDecision"])
    new_view = fastavro.schemaless_reader(io.BytesIO(buf.getvalue()), fastavro.parse_schema(old),
                                          fastavro.parse_schema(new))
    assert new_view["evidence_url"] is None


@pytest.mark.parametrize(("data", "error", "fragment"), [
    (None, BadAvroError, "shorter"),
    (b"\xc3\x01\x00", BadAvroError, "shorter"),
    (b"\x00\x01" + b"\x00" * 20, BadAvroError, "magic"),
    (b"\xc3\x01" + b"\xff" * 8 + b"\x00", SchemaUnknownError, "fingerprint"),
])
def test_clear_errors(data: bytes | None, error: type[Exception], fragment: str) -> None:
    with pytest.raises(error, match=fragment):
        default_codec().decode_any(data)


def test_truncated_and_trailing_bytes_are_bad_avro() -> None:
    codec = default_codec()
    data = codec.encode("Referral", REFERRAL)
    with pytest.raises(BadAvroError, match="cannot decode"):
        codec.decode_any(data[:-20])
    with pytest.raises(BadAvroError, match="trailing"):
        codec.decode_any(data + b"\x00")


def test_decode_checks_the_expected_type() -> None:
    codec = default_codec()
    with pytest.raises(SchemaUnknownError, match="expected a Referral"):
        codec.decode(codec.encode("OverdueAlert", EXAMPLES["OverdueAlert"]), "Referral")


def test_schema_file_name_must_match_record_name(tmp_path: Path) -> None:
    (tmp_path / "Wrong.avsc").write_text(json.dumps({"type": "record", "name": "Other", "fields": []}))
    with pytest.raises(ValueError, match="must equal the file name"):
        Codec(tmp_path)


def test_shared_enums_agree_across_files() -> None:
    """Each .avsc is self-contained; a named enum must have the same symbols everywhere."""
    seen: dict[str, list[str]] = {}

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if node.get("type") == "enum":
                assert seen.setdefault(node["name"], node["symbols"]) == node["symbols"], node["name"]
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    for schema in default_codec().by_name.values():
        walk(schema.raw)
    assert {"Priority", "Category", "Action"} <= set(seen)


# The canonical-form check against an encoding that extends the record (Codec.check_canonical with
# `extended`, as intake uses it with its candidate): same verdict as encoding the record again.

def _verdict(check: Any) -> bool:
    try:
        check()
    except BadAvroError:
        return False
    return True


def _mutations(data: bytes, rnd: Any, ref: dict[str, Any]) -> list[bytes]:
    """`data` with a byte set, some inserted or some deleted, at random places in the body; and
    `ref` encoded in the ways fastavro reads but Avro does not write (tests/hostile_corpus.py)."""
    codec = default_codec()
    out = [hc._bad_enum(rnd, codec, ref), hc._bad_union(rnd, codec, ref),
           hc.bad_boolean(rnd, codec, "Referral", ref, "emergency")]
    out += [hc.overlong_varint(rnd, codec, "Referral", ref, field, a, b)
            for field, a, b in (("instrument", "REFERRAL", "NOTICE"), ("external_ref", None, "x"),
                                ("operator_id", None, "meta"), ("language", None, "fr"))]
    for _ in range(60):
        raw = bytearray(data)
        at = rnd.randrange(10, len(raw))
        op = rnd.randrange(3)
        if op == 0:
            raw[at] = rnd.randrange(256)
        elif op == 1:
            raw[at:at] = bytes(rnd.randrange(256) for _ in range(rnd.randrange(1, 4)))
        else:
            del raw[at:at + rnd.randrange(1, 4)]
        out.append(bytes(raw))
    return out


def test_a_referral_checked_against_its_candidate_gets_the_verdict_of_a_full_check() -> None:
    codec, rnd = default_codec(), random.Random(17)
    schema = codec.schema("Referral")
    compared, fast, refused = 0, 0, 0
    for i in range(300):
        ref = hc.good_referral(rnd, i)
        for data in [codec.encode("Referral", ref), *_mutations(codec.encode("Referral", ref), rnd, ref)]:
            try:
                back = codec.decode(data, "Referral", canonical=False)
            except (BadAvroError, SchemaUnknownError):
                continue
            op = rnd.choice([back["operator_id"], None, "google", "é" * 70])  # kept, or resolved by intake
            cand = {**back, **{k: v for k, v in ROUTED.items() if k not in REFERRAL}, "operator_id": op}
            encoded = codec.encode("RoutedReferral", cand)
            full = _verdict(lambda d=data, b=back: codec.check_canonical(d, b))
            assert _verdict(lambda d=data, b=back, c=cand, e=encoded: codec.check_canonical(
                d, b, (c, e), "operator_id")) == full, (i, data.hex())
            compared += 1
            refused += not full
            fast += _extends(schema, data, back, cand, encoded, "operator_id")
    assert compared > 2_500 and refused > 300  # decoded, then refused as not canonical: the check's work
    assert fast > 300  # every canonical referral takes the comparison, not the encoding


def test_the_sizes_of_a_referrals_leading_fields_are_fastavros() -> None:
    codec = default_codec()
    schema = codec.schema("Referral")
    head = {"type": "record", "name": "Head", "fields": schema.raw["fields"][:8]}  # up to the url
    parsed = fastavro.parse_schema(head)
    for text in ["", "a", "é", "x" * 63, "x" * 64, "é" * 32, "\U0001F4A3" * 2048, "y" * 9000]:
        for ext in (None, text):
            record = {**REFERRAL, "referral_id": text, "external_ref": ext, "url": "https://e.com/" + text}
            buf = io.BytesIO()
            fastavro.schemaless_writer(buf, parsed, record)
            assert schema.size_before(record, "operator_id") == len(buf.getvalue())
            one = io.BytesIO()
            fastavro.schemaless_writer(one, fastavro.parse_schema(["null", "string"]), ext)
            assert _encode_optional_string(ext) == one.getvalue()
    assert schema.size_before(REFERRAL, "reported_at") is None  # content_hashes (an array) is not sized



def test_the_comparison_is_only_made_against_a_schema_that_begins_with_the_records_fields() -> None:
    codec = default_codec()
    data = codec.encode("Referral", REFERRAL)
    routed = codec.encode("RoutedReferral", ROUTED)
    assert codec._begins_with(routed, codec.schema("Referral"))
    duplicate = codec.encode("DuplicateReferral", EXAMPLES["DuplicateReferral"])
    assert not codec._begins_with(duplicate, codec.schema("Referral"))
    # a record of another schema is no evidence: the full check decides (here: canonical, accepted)
    codec.check_canonical(data, dict(REFERRAL), (EXAMPLES["DuplicateReferral"], duplicate), "operator_id")
    bad = hc._bad_enum(random.Random(1), codec, dict(REFERRAL))
    with pytest.raises(BadAvroError):
        codec.check_canonical(bad, codec.decode(bad, "Referral", canonical=False), (ROUTED, routed), "operator_id")
