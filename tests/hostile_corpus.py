"""A seeded corpus of hostile inputs, each with the error code the pipeline must give it.

Every bad record is built so that its fate is known by construction, not by asking the code
under test: a byte-level mutation of a valid encoding (truncated, bad magic, wrong fingerprint,
invalid UTF-8 inside a string, an enum, union or boolean outside the Avro spec, an impossible
length, an over-long varint, trailing bytes), or a valid encoding whose content breaks a rule
of the contract (sizes, formats, times, identity). Good records are valid but unfriendly:
SQL-looking strings, quotes, backslashes, tabs and newlines where allowed, right-to-left and
astral characters, every size limit reached exactly.

`reports_corpus()` and `decisions_corpus()` give `Case`s; `good_referral()` the good ones.
"""

from __future__ import annotations

import random
import struct
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from streams.codec import MAGIC, Codec

REPORTERS = ("pharos", "eu-iru", "ctiru", "tj-paris", "pointdecontact")
OPERATOR_URLS = {  # operator -> URL pattern (hosts of config/operators.yaml)
    "google": "https://www.youtube.com/watch?v=hostile{i}x{r}",
    "meta": "https://m.facebook.com/hostile/{i}/{r}",
    "twitter": "https://twitter.com/h/status/{i}{r}",
    "apple": "https://www.icloud.com/share/hostile-{i}-{r}",
    "microsoft": "https://github.com/hostile/r{i}-{r}",
}
OPERATORS = tuple(OPERATOR_URLS)
MIN_TIME_MS = 946_684_800_000  # 2000-01-01, the earliest time the pipeline accepts
Y9999_MS = 253_402_300_799_999  # 9999-12-31T23:59:59.999Z
SQL = ("'); DROP TABLE referrals; --", "\"; DELETE FROM signalement.referrals WHERE 1=1; --",
       "1' OR '1'='1", "Robert'); DROP TABLE decisions;--", "\\'; SELECT * FROM system.users; --",
       "' UNION SELECT name, password FROM system.users --", "%s %(x)s {x} ${x} $$ \\N NULL",
       "INSERT INTO referrals VALUES ('x')")
NASTY_TEXT = ("مرحبا بالعالم", "שלום עולם", "蟲子 🐛 \U0001F4A3", "Zażółć gęślą jaźń", "tab\there", "new\nline",
              "crlf\r\nend", "back\\slash", "quote' \"double\" `tick`", "\u200bzero-width", "\ufeffBOM", "'")
INVALID_UTF8 = (b"\xff", b"\xfe", b"\xc0\x80", b"\xed\xa0\x80", b"\xf4\x90\x80\x80", b"\x80", b"\xe2\x82", b"\xc3")
C0_C1 = [chr(c) for c in (*range(0x00, 0x09), 0x0B, 0x0C, *range(0x0E, 0x20), 0x7F, 0x80, 0x85, 0x9B, 0x9F)]
SINGLE_LINE_ONLY = ["\t", "\n", "\r", "\u2028", "\u2029"]


@dataclass(frozen=True)
class Case:
    """One record to publish, and what must become of it."""

    topic_kind: str  # "reports" or "decisions"
    owner: str  # the reporter or operator whose topic it goes to
    key: bytes | None
    value: bytes | None
    code: str  # the expected error code in referrals.rejected
    kind: str  # which generator made it (for per-kind counts)


def zigzag(n: int) -> bytes:
    """Avro's zig-zag varint of a signed 64-bit int."""
    z = ((n << 1) ^ (n >> 63)) & 0xFFFF_FFFF_FFFF_FFFF
    out = bytearray()
    while True:
        byte, z = z & 0x7F, z >> 7
        if z:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def now_ms() -> int:
    import time

    return time.time_ns() // 1_000_000


def good_referral(rnd: random.Random, i: int, reporter: str | None = None, at: int | None = None) -> dict[str, Any]:
    """A valid referral with unfriendly content; its URL is unique (no two good ones are duplicates)."""
    op = OPERATORS[i % len(OPERATORS)]
    variant = i % 6
    reasons = rnd.choice(SQL) if variant in (0, 1) else rnd.choice(NASTY_TEXT)
    if variant == 2:
        reasons = ("\U0001F4A3" * 8192)  # the limit, in 4-byte characters
    elif variant == 3:
        reasons = rnd.choice(SQL) + "\n\t" + rnd.choice(NASTY_TEXT) + "\r\n" + "x" * rnd.randrange(100)
    return {
        "referral_id": str(uuid.UUID(int=rnd.getrandbits(128), version=4)),
        "reporter_id": reporter or REPORTERS[i % len(REPORTERS)],
        "external_ref": [None, rnd.choice(SQL), "é" * 256, "ref-" + str(i)][i % 4],
        "instrument": ["REFERRAL", "NOTICE", "REMOVAL_ORDER"][i % 3],
        "label": ["NONE", "LABELLED"][(i // 3) % 2],
        "emergency": i % 7 == 0,
        "category": ["TERRORIST_PROPAGANDA", "INCITEMENT", "APOLOGY_OF_TERRORISM", "INSTRUCTIONS", "THREAT",
                     "CHILD_SEXUAL_ABUSE", "HATE_SPEECH", "OTHER"][i % 8],
        "url": OPERATOR_URLS[op].format(i=i, r=rnd.getrandbits(32)),
        "operator_id": [None, op, "not-registered"][i % 3],  # an unknown explicit operator falls back to the host
        "content_hashes": [{"algo": "MD5", "value": f"{rnd.getrandbits(128):032x}"},
                           {"algo": "SHA256", "value": f"{rnd.getrandbits(256):064X}"}][: i % 3],
        "legal_basis": ["TCO 2021/784 art. 3", rnd.choice(SQL), "L" * 1024,
                        "LCEN art. 6-1\n" + rnd.choice(NASTY_TEXT)][i % 4],
        "reasons": reasons,
        "jurisdiction": ["FR", "EU", "GB", "DE"][i % 4],
        "language": [None, "fr", "en", "ar"][i % 4],
        "reported_at": (at or now_ms()) - rnd.randrange(0, 3_600_000) if i % 5 else MIN_TIME_MS + i,
    }


def operator_of(ref: dict[str, Any]) -> str:
    """The operator a good referral of this module is routed to (its URL's host)."""
    for op, pattern in OPERATOR_URLS.items():
        if ref["url"].startswith(pattern.split("{", 1)[0]):
            return op
    raise ValueError(ref["url"])


def decision(rid: str, op: str, action: str = "REMOVED", at: int | None = None, **extra: Any) -> dict[str, Any]:
    return {"referral_id": rid, "operator_id": op, "action": action, "acted_at": now_ms() if at is None else at,
            "reason": None, "operator_ref": None, **extra}


# ---- byte-level mutations of a valid encoding: the code is BAD_AVRO or SCHEMA_UNKNOWN by construction ----

def _positions(codec: Codec, name: str, record: dict[str, Any], field: str, a: Any, b: Any) -> int:
    """Where the encodings of record with field=a and field=b first differ (an enum, union or boolean byte)."""
    x = codec.encode(name, {**record, field: a})
    y = codec.encode(name, {**record, field: b})
    return next(i for i, (p, q) in enumerate(zip(x, y, strict=False)) if p != q)


def _splice(data: bytes, at: int, old_len: int, new: bytes) -> bytes:
    return data[:at] + new + data[at + old_len:]


def random_bytes(rnd: random.Random) -> bytes:
    data = rnd.randbytes(rnd.randrange(0, 400))
    return data if data[:2] != MAGIC else b"\x00" + data


def truncated(rnd: random.Random, data: bytes) -> bytes:
    return data[: rnd.randrange(0, len(data))]


def bad_magic(rnd: random.Random, data: bytes) -> bytes:
    magic = rnd.choice([b"\xc3\x00", b"\xc3\x02", b"\x00\x00", b"\x01\xc3", b"{\"", b"\x00\x01", rnd.randbytes(2)])
    return (magic if magic != MAGIC else b"\xc3\x03") + data[2:]


def wrong_fingerprint(rnd: random.Random, data: bytes, codec: Codec) -> bytes:
    while True:
        fp = rnd.randbytes(8)
        if fp not in codec.by_fingerprint:
            return MAGIC + fp + data[10:]


def trailing(rnd: random.Random, data: bytes) -> bytes:
    return data + rnd.randbytes(rnd.randint(1, 24))


def invalid_utf8(rnd: random.Random, codec: Codec, name: str, record: dict[str, Any], fields: list[str]) -> bytes:
    """Valid structure, but one string field holds bytes that are not UTF-8 (same length, so lengths agree)."""
    field = rnd.choice(fields)
    bad = rnd.choice(INVALID_UTF8)
    marker = "Q" * 40
    data = codec.encode(name, {**record, field: marker})
    at = data.index(marker.encode()) + rnd.randrange(0, 40 - len(bad) + 1)
    return _splice(data, at, len(bad), bad)


def bad_index(rnd: random.Random, codec: Codec, name: str, record: dict[str, Any], field: str,
              a: Any, b: Any, valid: int) -> bytes:
    """An enum or union index outside 0..valid-1: negative (fastavro would wrap it) or too big."""
    at = _positions(codec, name, record, field, a, b)
    data = codec.encode(name, {**record, field: a})
    index = rnd.choice([-1, -2, -valid, -(2**31), valid, valid + 1, 127, 2**31 - 1, 2**62])
    return _splice(data, at, 1, zigzag(index))


def bad_boolean(rnd: random.Random, codec: Codec, name: str, record: dict[str, Any], field: str) -> bytes:
    at = _positions(codec, name, record, field, False, True)
    data = codec.encode(name, {**record, field: False})
    return _splice(data, at, 1, bytes([rnd.randrange(2, 256)]))


def overlong_varint(rnd: random.Random, codec: Codec, name: str, record: dict[str, Any], field: str,
                    a: Any, b: Any) -> bytes:
    """The index 0 of an enum or union written in 2..10 bytes (readers accept it; it is not canonical Avro)."""
    at = _positions(codec, name, record, field, a, b)
    data = codec.encode(name, {**record, field: a})
    return _splice(data, at, 1, b"\x80" * rnd.randint(1, 9) + b"\x00")


def bad_length(rnd: random.Random, codec: Codec, name: str, record: dict[str, Any], field: str) -> bytes:
    """A string's length prefix that runs past the end, or is negative."""
    marker = "L" * 50
    data = codec.encode(name, {**record, field: marker})
    at = data.index(marker.encode()) - 1  # 50 is a one-byte varint (0x64)
    length = rnd.choice([-1, -50, -(2**62), 10**6, 2**31, 2**62, 2**63 - 1, len(data)])
    return _splice(data, at, 1, zigzag(length))


# ---- the corpus ----

Maker = Callable[[random.Random, dict[str, Any]], tuple[dict[str, Any] | bytes, str]]


def _referral_makers(codec: Codec, now: int) -> dict[str, Maker]:
    """kind -> maker(rnd, valid referral) -> (record to encode, or raw bytes; expected code)."""
    enc = lambda r: codec.encode("Referral", r)  # noqa: E731
    strings = ["referral_id", "reporter_id", "url", "legal_basis", "reasons", "jurisdiction", "external_ref",
               "operator_id", "language"]

    def oversize(rnd: random.Random, r: dict[str, Any]) -> tuple[dict[str, Any], str]:
        field, limit = rnd.choice([("external_ref", 256), ("legal_basis", 1024), ("reasons", 8192),
                                   ("operator_id", 64), ("url", 4096), ("referral_id", 36)])
        n = limit + rnd.choice([1, 2, 100, limit])
        value = ("https://youtube.com/" + "a" * n) if field == "url" else rnd.choice("xé蟲\U0001F4A3") * n
        return {**r, field: value}, "INVALID_FIELD"

    def control(rnd: random.Random, r: dict[str, Any]) -> tuple[dict[str, Any], str]:
        field = rnd.choice(["external_ref", "operator_id", "legal_basis", "reasons", "url"])
        chars = C0_C1 + (SINGLE_LINE_ONLY if field in ("external_ref", "operator_id", "url") else [])
        text = {"url": "https://youtube.com/watch?v=c", "operator_id": "google"}.get(field, "text")
        pos = rnd.randrange(1, len(text))
        return {**r, field: text[:pos] + rnd.choice(chars) + text[pos:]}, "INVALID_FIELD"

    def bad_uuid(rnd: random.Random, r: dict[str, Any]) -> tuple[dict[str, Any], str]:
        u = r["referral_id"]
        value = rnd.choice(["not-a-uuid", u.replace("-", ""), u + "\n", u[:-1] + "g", "x" * 36, "", " " + u[1:],
                            u[:8] + "_" + u[9:], "'; DROP TABLE referrals; --"])
        return {**r, "referral_id": value}, "INVALID_FIELD"

    def bad_time(rnd: random.Random, r: dict[str, Any]) -> tuple[dict[str, Any], str]:
        value = rnd.choice([Y9999_MS, -1, -rnd.randrange(1, 2**62), -(2**63), 2**63 - 1, 0, MIN_TIME_MS - 1,
                            now + 86_400_000, now + rnd.randrange(3_600_000, 10**12)])
        return {**r, "reported_at": value}, "INVALID_FIELD"

    def bad_format(rnd: random.Random, r: dict[str, Any]) -> tuple[dict[str, Any], str]:
        field, value = rnd.choice([
            ("jurisdiction", "France"), ("jurisdiction", "fr"), ("jurisdiction", "F"), ("jurisdiction", ""),
            ("jurisdiction", "FR\n"), ("jurisdiction", "ÉÉ"), ("language", "fra"), ("language", "FR"),
            ("language", "fr\n"), ("language", ""), ("legal_basis", ""), ("legal_basis", " \n\t "),
            ("content_hashes", [{"algo": "MD5", "value": "ab" * 15 + "a\n"}]),
            ("content_hashes", [{"algo": "SHA256", "value": "zz" * 32}]),
            ("content_hashes", [{"algo": "PDQ", "value": "ab" * 31}]),
            ("content_hashes", [{"algo": "MD5", "value": "ab" * 16}] * 33),
            ("content_hashes", [{"algo": "MD5", "value": "x" * 512}])])
        return {**r, field: value}, "INVALID_FIELD"

    def bad_url(rnd: random.Random, r: dict[str, Any]) -> tuple[dict[str, Any], str]:
        value = rnd.choice(["ftp://youtube.com/a", "javascript:alert(1)", "https://", "", "   ", "youtube.com/watch",
                            "https://user:pw@youtube.com/x", "https://exa mple.com/", "https://youtube..com/",
                            "https://" + "a" * 64 + ".com/", "file:///etc/passwd", "https://[::1/"])
        return {**r, "url": value}, "INVALID_FIELD"

    def identity(rnd: random.Random, r: dict[str, Any]) -> tuple[dict[str, Any], str]:
        own = r["reporter_id"]
        value = rnd.choice([o for o in REPORTERS if o != own] + [own.upper(), own + " ", "", "x" * 64, "' OR 1=1 --"])
        return {**r, "reporter_id": value}, "IDENTITY_MISMATCH"

    def other_schema(rnd: random.Random, r: dict[str, Any]) -> tuple[bytes, str]:
        return codec.encode("OperatorDecision", decision(r["referral_id"], "google", at=now)), "SCHEMA_UNKNOWN"

    return {
        "random_bytes": lambda rnd, r: (random_bytes(rnd), "BAD_AVRO"),
        "truncated": lambda rnd, r: (truncated(rnd, enc(r)), "BAD_AVRO"),
        "bad_magic": lambda rnd, r: (bad_magic(rnd, enc(r)), "BAD_AVRO"),
        "trailing_bytes": lambda rnd, r: (trailing(rnd, enc(r)), "BAD_AVRO"),
        "invalid_utf8": lambda rnd, r: (invalid_utf8(rnd, codec, "Referral", r, strings), "BAD_AVRO"),
        "bad_enum": lambda rnd, r: (_bad_enum(rnd, codec, r), "BAD_AVRO"),
        "bad_union": lambda rnd, r: (_bad_union(rnd, codec, r), "BAD_AVRO"),
        "bad_boolean": lambda rnd, r: (bad_boolean(rnd, codec, "Referral", r, "emergency"), "BAD_AVRO"),
        "overlong_varint": lambda rnd, r: (overlong_varint(rnd, codec, "Referral", r, "instrument", "REMOVAL_ORDER",
                                                           "NOTICE"), "BAD_AVRO"),
        "bad_length": lambda rnd, r: (bad_length(rnd, codec, "Referral", r, rnd.choice(["reasons", "url"])), "BAD_AVRO"),
        "wrong_fingerprint": lambda rnd, r: (wrong_fingerprint(rnd, enc(r), codec), "SCHEMA_UNKNOWN"),
        "other_schema": other_schema,
        "oversize_field": oversize,
        "control_chars": control,
        "bad_uuid": bad_uuid,
        "bad_time": bad_time,
        "bad_format": bad_format,
        "bad_url": bad_url,
        "identity_mismatch": identity,
    }


def _bad_enum(rnd: random.Random, codec: Codec, r: dict[str, Any]) -> bytes:
    field, a, b, n = rnd.choice([("instrument", "REMOVAL_ORDER", "NOTICE", 3), ("label", "NONE", "LABELLED", 2),
                                 ("category", "TERRORIST_PROPAGANDA", "OTHER", 8)])
    return bad_index(rnd, codec, "Referral", r, field, a, b, n)


def _bad_union(rnd: random.Random, codec: Codec, r: dict[str, Any]) -> bytes:
    field, b = rnd.choice([("external_ref", "x"), ("operator_id", "meta"), ("language", "fr")])
    return bad_index(rnd, codec, "Referral", r, field, None, b, 2)


def reports_corpus(codec: Codec, n: int, seed: int, now: int | None = None) -> list[Case]:
    """n bad records for reports.<reporter> topics, cycling through every kind."""
    rnd, now = random.Random(seed), now or now_ms()
    makers = _referral_makers(codec, now)
    kinds = sorted(makers)
    out = []
    for i in range(n):
        kind = kinds[i % len(kinds)]
        base = good_referral(rnd, i, at=now)
        base["reasons"] = base["reasons"][:200]  # small bases keep the corpus light; oversize makes its own
        made, code = makers[kind](rnd, base)
        value = made if isinstance(made, bytes) else codec.encode("Referral", made)
        key = None if i % 4 == 0 else rnd.choice([base["referral_id"].encode(), rnd.randbytes(rnd.randrange(1, 64))])
        out.append(Case("reports", base["reporter_id"], key, value, code, kind))
    return out


def decisions_corpus(codec: Codec, n: int, seed: int, routed: dict[str, str], now: int | None = None) -> list[Case]:
    """n bad decisions, given referrals already routed (referral_id -> operator)."""
    rnd, now = random.Random(seed), now or now_ms()
    rids = sorted(routed)
    enc = lambda d: codec.encode("OperatorDecision", d)  # noqa: E731
    kinds: dict[str, Callable[[str, str], tuple[str, bytes, str]]] = {
        # (rid, its operator) -> (topic operator, value, code)
        "random_bytes": lambda rid, op: (op, random_bytes(rnd), "BAD_AVRO"),
        "truncated": lambda rid, op: (op, truncated(rnd, enc(decision(rid, op, at=now))), "BAD_AVRO"),
        "bad_magic": lambda rid, op: (op, bad_magic(rnd, enc(decision(rid, op, at=now))), "BAD_AVRO"),
        "invalid_utf8": lambda rid, op: (op, invalid_utf8(rnd, codec, "OperatorDecision", decision(rid, op, at=now),
                                                          ["reason", "operator_ref", "referral_id"]), "BAD_AVRO"),
        "bad_enum": lambda rid, op: (op, bad_index(rnd, codec, "OperatorDecision", decision(rid, op, at=now), "action",
                                                   "ACKNOWLEDGED", "REFUSED", 5), "BAD_AVRO"),
        "bad_union": lambda rid, op: (op, bad_index(rnd, codec, "OperatorDecision", decision(rid, op, at=now),
                                                    "reason", None, "r", 2), "BAD_AVRO"),
        "wrong_fingerprint": lambda rid, op: (op, wrong_fingerprint(rnd, enc(decision(rid, op, at=now)), codec),
                                              "SCHEMA_UNKNOWN"),
        "other_schema": lambda rid, op: (op, codec.encode("Referral", good_referral(rnd, 0, at=now)), "SCHEMA_UNKNOWN"),
        "identity_mismatch": lambda rid, op: (rnd.choice([o for o in OPERATORS if o != op]),
                                              enc(decision(rid, op, at=now)), "IDENTITY_MISMATCH"),
        "bad_fields": lambda rid, op: (op, enc(rnd.choice([
            decision("not-a-uuid", op, at=now), decision(rid + "\n", op, at=now), decision(rid, op, at=-1),
            decision(rid, op, at=Y9999_MS), decision(rid, op, at=0), decision(rid, op, at=now, reason="r" * 8193),
            decision(rid, op, at=now, operator_ref="t" * 257), decision(rid, op, at=now, operator_ref="a\x1b[2Jb"),
            decision(rid, op, at=now, reason="nul\x00")])), "INVALID_FIELD"),
        "not_your_referral": lambda rid, op: ((other := rnd.choice([o for o in OPERATORS if o != op])),
                                              enc(decision(rid, other, at=now)), "NOT_YOUR_REFERRAL"),
        "unknown_referral": lambda rid, op: (op, enc(decision(str(uuid.uuid4()), op, at=now)), "UNKNOWN_REFERRAL"),
    }
    names = sorted(kinds)
    out = []
    for i in range(n):
        rid = rids[i % len(rids)]
        kind = names[i % len(names)]
        topic_op, value, code = kinds[kind](rid, routed[rid])
        key = (rid if kind != "unknown_referral" else codec.decode(value, "OperatorDecision")["referral_id"]).encode()
        out.append(Case("decisions", topic_op, key, value, code, kind))
    return out


def flood(codec: Codec, op: str, n: int, now: int | None = None) -> list[Case]:
    """n decisions about one unknown referral (all UNKNOWN_REFERRAL: some held then expired, the rest at once)."""
    rid = str(uuid.uuid4())
    value = codec.encode("OperatorDecision", decision(rid, op, "ACKNOWLEDGED", at=now or now_ms()))
    return [Case("decisions", op, rid.encode(), value, "UNKNOWN_REFERRAL", "unknown_flood") for _ in range(n)]


def huge(codec: Codec, rnd: random.Random, size: int, now: int | None = None) -> list[Case]:
    """Records of about `size` bytes (the largest the broker takes): each must be dead-lettered whole."""
    ref = good_referral(rnd, 1, "pharos", at=now)
    url = "https://youtube.com/" + "u" * (size - 400)
    rid = str(uuid.uuid4())
    big_reason = codec.encode("OperatorDecision", decision(rid, "meta", at=now, reason="r" * (size - 200)))
    big_key = codec.encode("OperatorDecision", decision(rid, "meta", at=now))
    return [Case("reports", "pharos", None, codec.encode("Referral", {**ref, "url": url}), "INVALID_FIELD", "huge_url"),
            Case("reports", "eu-iru", b"k", b"\x00" + rnd.randbytes(size - 300), "BAD_AVRO", "huge_random"),
            Case("decisions", "meta", rid.encode(), big_reason, "INVALID_FIELD", "huge_reason"),
            Case("decisions", "meta", b"K" * (size // 2), big_key, "UNKNOWN_REFERRAL", "huge_key")]


def single_object(codec: Codec, name: str, body: bytes) -> bytes:
    """Header + body (for tests that build bodies by hand)."""
    return MAGIC + struct.pack("<Q", codec.schema(name).fingerprint) + body
