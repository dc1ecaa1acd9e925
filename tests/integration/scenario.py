"""A deterministic referral scenario and the model of what the pipeline must make of it."""

from __future__ import annotations

import random
import time
import uuid
from dataclasses import dataclass, field
from typing import Any

from streams.codec import default_codec

# reporter -> (labelled, removal orders), as in config/reporters.yaml
REPORTERS = {"pharos": (True, True), "eu-iru": (True, False), "ctiru": (True, False),
             "tj-paris": (False, True), "pointdecontact": (False, False)}
HOSTS = [("google", "https://www.youtube.com/watch?v=vid{i}&utm_source=x"), ("meta", "https://m.facebook.com/post/{i}"),
         ("twitter", "https://twitter.com/user/status/{i}"), ("apple", "https://www.icloud.com/share/{i}"),
         ("microsoft", "https://github.com/evil/repo{i}"), ("google", "https://youtu.be/short{i}"),
         (None, "https://unknown-host.example/{i}")]


def referral(reporter: str, url: str, *, rid: str | None = None, instrument: str = "REFERRAL", label: str = "NONE",
             emergency: bool = False, **extra: Any) -> dict[str, Any]:
    ref = {"referral_id": rid or str(uuid.uuid4()), "reporter_id": reporter, "external_ref": None,
           "instrument": instrument, "label": label, "emergency": emergency, "category": "TERRORIST_PROPAGANDA",
           "url": url, "operator_id": None, "content_hashes": [{"algo": "MD5", "value": "ab" * 16}],
           "legal_basis": "TCO 2021/784 art. 3", "reasons": "propaganda video", "jurisdiction": "FR",
           "language": "fr", "reported_at": time.time_ns() // 1_000_000}
    ref.update(extra)
    return ref


def expected_priority(ref: dict[str, Any]) -> tuple[str, bool]:
    labelled, orders = REPORTERS[ref["reporter_id"]]
    claims, is_order = ref["label"] == "LABELLED", ref["instrument"] == "REMOVAL_ORDER"
    rejected = (claims and not labelled) or (is_order and not orders)
    if (is_order and orders) or (labelled and ref["emergency"]):
        return "CRITICAL", rejected
    return ("HIGH" if claims and labelled else "STANDARD"), rejected


@dataclass
class Scenario:
    """Waves of (topic reporter, value bytes), and what each must become."""

    canonical: dict[str, dict[str, Any]] = field(default_factory=dict)  # rid -> referral (+ op)
    operator: dict[str, str | None] = field(default_factory=dict)
    duplicates: dict[str, str] = field(default_factory=dict)  # dup rid -> canonical rid
    co_reporters: dict[str, set[str]] = field(default_factory=dict)
    bad: list[tuple[str, bytes, str]] = field(default_factory=list)  # (reporter topic, bytes, code)
    waves: list[list[tuple[str, bytes]]] = field(default_factory=list)


def build(n: int = 240, seed: int = 7) -> Scenario:
    rnd, codec, sc = random.Random(seed), default_codec(), Scenario()
    reporters = sorted(REPORTERS)
    wave1: list[tuple[str, bytes]] = []
    for i in range(n):
        op, pattern = HOSTS[i % len(HOSTS)]
        reporter = reporters[i % len(reporters)]
        ref = referral(reporter, pattern.format(i=i), label="LABELLED" if i % 3 == 0 else "NONE",
                       instrument="REMOVAL_ORDER" if i % 11 == 0 else "REFERRAL", emergency=i % 13 == 0)
        sc.canonical[ref["referral_id"]] = ref
        sc.operator[ref["referral_id"]] = op
        sc.co_reporters[ref["referral_id"]] = set()
        wave1.append((reporter, codec.encode("Referral", ref)))
    # duplicates across reporters (other spellings of the same URL), never of higher priority
    wave2: list[tuple[str, bytes]] = []
    routable = [r for r in sc.canonical.values() if sc.operator[r["referral_id"]] is not None]
    for ref in rnd.sample(routable, 40):
        other = "pointdecontact" if ref["reporter_id"] != "pointdecontact" else "eu-iru"
        dup = referral(other, ref["url"].replace("https://", "http://") + ("&" if "?" in ref["url"] else "?") + "fbclid=z")
        sc.duplicates[dup["referral_id"]] = ref["referral_id"]
        sc.co_reporters[ref["referral_id"]].add(other)
        wave2.append((other, codec.encode("Referral", dup)))
    wave2 += rnd.sample(wave1, 15)  # replays: the same bytes again
    sc.bad = bad_records(codec, rnd)
    wave2 += [(topic, value) for topic, value, _ in sc.bad]
    rnd.shuffle(wave2)
    sc.waves = [wave1, wave2]
    return sc


def bad_records(codec: Any, rnd: random.Random) -> list[tuple[str, bytes, str]]:
    """~5 % malformed: every rejection code intake can give."""
    good = referral("pharos", "https://youtube.com/watch?v=bad")
    body = codec.encode("Referral", good)
    out = [("pharos", bytes(rnd.randrange(256) for _ in range(40)), "BAD_AVRO"),
           ("pharos", b"\xc3\x01" + b"\x00" * 8 + body[10:], "SCHEMA_UNKNOWN"),
           ("eu-iru", body[:30], "BAD_AVRO"),
           ("eu-iru", b"", "BAD_AVRO"),
           ("ctiru", codec.encode("OperatorDecision", {"referral_id": str(uuid.uuid4()), "operator_id": "meta",
                                                       "action": "REMOVED", "acted_at": 1, "reason": None,
                                                       "operator_ref": None}), "SCHEMA_UNKNOWN"),
           ("ctiru", codec.encode("Referral", referral("pharos", "https://x.com/a")), "IDENTITY_MISMATCH"),
           ("pharos", codec.encode("Referral", referral("pharos", "ftp://x.com/a")), "INVALID_FIELD"),
           ("pharos", codec.encode("Referral", referral("pharos", "https://x.com/a", rid="not-a-uuid")), "INVALID_FIELD"),
           ("pharos", codec.encode("Referral", referral("pharos", "https://x.com/a", reported_at=253402300799000)),
            "INVALID_FIELD"),
           ("pharos", codec.encode("Referral", referral("pharos", "https://x.com/a", jurisdiction="France")),
            "INVALID_FIELD"),
           ("tj-paris", codec.encode("Referral", referral("tj-paris", "https://x.com/\x00a")), "INVALID_FIELD"),
           ("tj-paris", body + b"\x00", "BAD_AVRO"),
           ("pointdecontact", b"\xc3\x02" + body[2:], "BAD_AVRO")]
    return out
