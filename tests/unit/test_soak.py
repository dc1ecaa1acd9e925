"""The soak benchmark's accounting (bench/soak.py): which referral each record stands for, and the
missing ones grouped by the partition they came from."""

from __future__ import annotations

import pytest

from bench.kafkaio import referral_ids
from bench.load import Generator, Mix
from bench.soak import Gap, gaps
from streams.codec import default_codec
from streams.packs import PACK

pytestmark = pytest.mark.unit
CODEC = default_codec()


def test_each_kind_of_record_gives_the_referral_it_stands_for() -> None:
    records = list(Generator(mix=Mix(), seed=5).records(200, 1_790_000_000_000))
    good = [r for r in records if r.kind != "malformed"]
    assert good
    ids = [CODEC.decode(r.value, "Referral")["referral_id"] for r in good[:3]]
    assert [referral_ids(r.value, CODEC) for r in good[:3]] == [[i] for i in ids]
    pack = CODEC.encode(PACK, {"items": [{"key": b"k", "value": r.value} for r in good[:3]]})
    assert referral_ids(pack, CODEC) == ids  # a pack: its items, in order
    rejection = CODEC.encode("Rejection", {"source_topic": "reports.pharos", "source_partition": 1,
                                           "source_offset": 7, "key": None, "value": good[0].value,
                                           "error_code": "INVALID_FIELD", "error": "x", "rejected_at": 0})
    assert referral_ids(rejection, CODEC) == ids[:1]  # a dead letter: the record it refused
    assert referral_ids(None, CODEC) == [] and referral_ids(b"not avro", CODEC) == []


def test_missing_referrals_are_grouped_by_their_source_partition() -> None:
    sources = {f"a{o}": ("reports.eu-iru", 0, o) for o in range(100)}
    sources |= {f"b{o}": ("reports.pharos", 2, o) for o in range(10)}
    out = {f"a{o}" for o in range(50, 100)} | {f"b{o}" for o in range(10) if o != 4}
    rekeyed = {"a3", "a7"}
    assert gaps(sources, out, rekeyed) == [Gap("reports.eu-iru", 0, 0, 49, 50, 2), Gap("reports.pharos", 2, 4, 4, 1, 0)]
    assert gaps(sources, set(sources), set()) == []
