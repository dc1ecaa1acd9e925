"""Referral payloads for the benchmarks: real Avro single-object bytes, made fast enough to preload millions.

Each kind of referral (reporter, instrument, label, URL spelling, good or broken) is encoded once
with the project's codec as a template holding placeholders; a payload is the template with its
36-character referral_id, its 12-character content token and its reported_at spliced in (the
Referral's last field, so its varint simply ends the bytes). That costs about 1 µs instead of the
13-20 µs of a fastavro encode, and the bytes are identical to the encoder's (`check()` proves it
by decoding samples of every template).

The mix: originals by reporter share, some labelled (HIGH), some removal orders (CRITICAL), a few
on hosts no operator answers for (unroutable), duplicates re-reporting an earlier original's URL in
another spelling from another reporter (never more urgent, so they never escalate), and malformed
records of four kinds (rejected). Counting what comes out against what went in is exact.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass, field

from streams.codec import default_codec

RID = "RRRRRRRR-RRRR-4RRR-8RRR-RRRRRRRRRRRR"
TOKEN = "TTTTTTTTTTTT"
# (operator host template, spellings of the same item used by duplicates); {t} is the 12-char token
HOSTS = (
    ("https://www.youtube.com/watch?v={t}", ("https://youtu.be/{t}?si=share", "http://m.youtube.com/watch?v={t}&utm_source=x")),
    ("https://www.facebook.com/someone/posts/{t}", ("https://m.facebook.com/someone/posts/{t}?fbclid=abc",)),
    ("https://x.com/someone/status/{t}", ("https://twitter.com/someone/status/{t}?s=20",)),
    ("https://www.instagram.com/p/{t}/", ("https://instagram.com/p/{t}?igsh=abc",)),
    ("https://github.com/someone/{t}", ("https://www.github.com/someone/{t}/",)),
    ("https://www.icloud.com/iclouddrive/{t}", ("https://icloud.com/iclouddrive/{t}#x",)),
)
UNROUTABLE = "https://forum.example.net/t/{t}"
LABELLED_REPORTERS = ("pharos", "eu-iru", "ctiru")
STANDARD_REPORTERS = (("pharos", 0.35), ("eu-iru", 0.2), ("ctiru", 0.15), ("pointdecontact", 0.3))
MALFORMED_KINDS = ("bad_uuid", "identity", "bad_scheme", "not_avro")


def zigzag_varint(n: int) -> bytes:
    """Avro's long encoding."""
    z = (n << 1) ^ (n >> 63)
    out = bytearray()
    while z > 0x7F:
        out.append((z & 0x7F) | 0x80)
        z >>= 7
    out.append(z)
    return bytes(out)


@dataclass(frozen=True)
class Template:
    """Encoded bytes around the referral_id and token slots, minus the trailing reported_at."""

    head: bytes
    middle: bytes
    tail: bytes

    def render(self, rid: bytes, token: bytes, reported_at: int) -> bytes:
        return b"".join((self.head, rid, self.middle, token, self.tail, zigzag_varint(reported_at)))


def make_template(reporter: str, url: str, *, instrument: str = "REFERRAL", label: str = "NONE",
                  reporter_field: str | None = None) -> Template:
    record = {
        "referral_id": RID, "reporter_id": reporter_field or reporter, "external_ref": None,
        "instrument": instrument, "label": label, "emergency": False, "category": "TERRORIST_PROPAGANDA",
        "url": url.format(t=TOKEN), "operator_id": None, "content_hashes": [{"algo": "MD5", "value": "ab" * 16}],
        "legal_basis": "Regulation (EU) 2021/784 art. 3" if instrument == "REMOVAL_ORDER" else "LCEN art. 6-1",
        "reasons": "Propaganda video re-uploaded; see the attached hash.", "jurisdiction": "FR", "language": "fr",
        "reported_at": 0,
    }
    data = default_codec().encode("Referral", record)
    assert data.endswith(b"\x00")
    data = data[:-1]
    a = data.index(RID.encode())
    b = data.index(TOKEN.encode())
    return Template(data[:a], data[a + 36:b], data[b + 12:])


def referral_id(salt: int, i: int) -> bytes:
    h = f"{salt:016x}{i:016x}"
    return f"{h[:8]}-{h[8:12]}-4{h[13:16]}-8{h[17:20]}-{h[20:32]}".encode()


@dataclass
class Mix:
    """Shares of the records sent (the rest are STANDARD originals)."""

    duplicates: float = 0.20
    labelled: float = 0.05
    critical: float = 0.02
    malformed: float = 0.01
    unroutable: float = 0.01

    def as_dict(self) -> dict[str, float]:
        return dict(self.__dict__)


@dataclass
class Record:
    reporter: str
    key: bytes
    value: bytes
    kind: str  # standard, labelled, critical, unroutable, duplicate, malformed
    urgent: bool = False  # a removal order or an emergency: the reporter's client sends it to reports.<id>.urgent


@dataclass
class Generator:
    """Seeded, reproducible records of the mix; originals remembered for duplicates to re-report."""

    mix: Mix = field(default_factory=Mix)
    seed: int = 1
    dup_distance: int = 2000  # a duplicate re-reports an original at least this many records back
    hosts: tuple[int, ...] = tuple(range(len(HOSTS)))  # indices into HOSTS originals are drawn from

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)
        self.salt = self.rng.getrandbits(64)
        self.n = 0
        self.originals: list[tuple[int, str, int]] = []  # (host index, reporter, token number)
        self._templates: dict[tuple[str, ...], Template] = {}
        weights = [w for _, w in STANDARD_REPORTERS]
        self._std = [r for r, _ in STANDARD_REPORTERS]
        self._std_weights = weights

    def template(self, *key: str) -> Template:
        t = self._templates.get(key)
        if t is None:
            reporter, url, instrument, label, field_reporter = key
            t = self._templates[key] = make_template(reporter, url, instrument=instrument, label=label,
                                                     reporter_field=field_reporter or None)
        return t

    def token(self, i: int) -> bytes:
        return f"{self.salt & 0xFFFF:04x}{i:08x}".encode()

    def next(self, reported_at: int) -> Record:
        """One record; reported_at is the reporter's clock for it (ms)."""
        i, self.n = self.n, self.n + 1
        rid = referral_id(self.salt, i)
        r = self.rng.random()
        m = self.mix
        if r < m.malformed:
            return self._malformed(i, rid, reported_at)
        r -= m.malformed
        if r < m.duplicates and len(self.originals) > self.dup_distance:
            host, first, token = self.originals[self.rng.randrange(len(self.originals) - self.dup_distance)]
            reporter = "pointdecontact" if first != "pointdecontact" else "eu-iru"
            spelling = self.rng.choice(HOSTS[host][1])
            instrument = "NOTICE" if reporter == "pointdecontact" else "REFERRAL"
            t = self.template(reporter, spelling, instrument, "NONE", "")
            return Record(reporter, rid, t.render(rid, self.token(token), reported_at), "duplicate")
        r -= m.duplicates
        if r < m.unroutable:
            reporter = self.rng.choices(self._std, self._std_weights)[0]
            instrument = "NOTICE" if reporter == "pointdecontact" else "REFERRAL"
            t = self.template(reporter, UNROUTABLE, instrument, "NONE", "")
            return Record(reporter, rid, t.render(rid, self.token(i), reported_at), "unroutable")
        r -= m.unroutable
        host = self.rng.choice(self.hosts)
        if r < m.critical:
            reporter, instrument, label, kind = self.rng.choice(("pharos", "tj-paris")), "REMOVAL_ORDER", "NONE", \
                "critical"
        elif r < m.critical + m.labelled:
            reporter, instrument, label, kind = self.rng.choice(LABELLED_REPORTERS), "REFERRAL", "LABELLED", "labelled"
        else:
            reporter = self.rng.choices(self._std, self._std_weights)[0]
            instrument, label, kind = ("NOTICE" if reporter == "pointdecontact" else "REFERRAL"), "NONE", "standard"
        self.originals.append((host, reporter, i))
        t = self.template(reporter, HOSTS[host][0], instrument, label, "")
        return Record(reporter, rid, t.render(rid, self.token(i), reported_at), kind, instrument == "REMOVAL_ORDER")

    def _malformed(self, i: int, rid: bytes, reported_at: int) -> Record:
        kind = self.rng.choice(MALFORMED_KINDS)
        if kind == "not_avro":
            return Record("eu-iru", rid, b"\xc3\x01" + self.rng.randbytes(8) + b"not avro at all", "malformed")
        if kind == "bad_uuid":
            t = self.template("eu-iru", HOSTS[0][0], "REFERRAL", "NONE", "")
            return Record("eu-iru", rid, t.render(f"case-{i:031d}".encode(), self.token(i), reported_at), "malformed")
        if kind == "identity":
            t = self.template("ctiru", HOSTS[1][0], "REFERRAL", "NONE", "pharos")
            return Record("ctiru", rid, t.render(rid, self.token(i), reported_at), "malformed")
        t = self.template("pointdecontact", "ftp://files.example.org/{t}", "NOTICE", "NONE", "")
        return Record("pointdecontact", rid, t.render(rid, self.token(i), reported_at), "malformed")

    def records(self, n: int, reported_at: int) -> Iterator[Record]:
        for _ in range(n):
            yield self.next(reported_at)


@dataclass
class Crisis:
    """A crisis burst: few items, each re-reported many times across reporters in many spellings.

    With `duplicates=0.9` about one record in ten is the first report of an item; the others are
    re-reports from pharos, eu-iru, ctiru (labelled) and pointdecontact, some of them more urgent
    than the first (labelled or removal orders), so items escalate as in a real crisis.
    """

    duplicates: float = 0.9
    seed: int = 7

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)
        self.salt = self.rng.getrandbits(64)
        self.gen = Generator(seed=self.seed)
        self.n = 0
        self.items = 0

    def next(self, reported_at: int) -> Record:
        i, self.n = self.n, self.n + 1
        rid = referral_id(self.salt, i)
        new = self.items == 0 or self.rng.random() >= self.duplicates
        if new:
            self.items += 1
        item = self.items - 1 if new else self.rng.randrange(self.items)
        host = item % len(HOSTS)
        spellings = (HOSTS[host][0], *HOSTS[host][1])
        url = spellings[0] if new else self.rng.choice(spellings)
        reporter = self.rng.choice(("pharos", "eu-iru", "ctiru", "pointdecontact"))
        if reporter == "pointdecontact":
            instrument, label = "NOTICE", "NONE"
        elif reporter == "pharos" and self.rng.random() < 0.1:
            instrument, label = "REMOVAL_ORDER", "NONE"
        else:
            instrument, label = "REFERRAL", ("LABELLED" if self.rng.random() < 0.3 else "NONE")
        t = self.gen.template(reporter, url, instrument, label, "")
        return Record(reporter, rid, t.render(rid, self.gen.token(item), reported_at), "new" if new else "duplicate",
                      instrument == "REMOVAL_ORDER")


def check(gen: Generator | None = None, samples: int = 2000) -> int:
    """Decode samples of every template with the codec and compare the spliced fields; returns the count."""
    gen = gen or Generator(seed=99)
    codec = default_codec()
    checked = 0
    for rec in gen.records(samples, 1_700_000_000_123):
        if rec.kind == "malformed":
            continue
        ref = codec.decode(rec.value, "Referral")
        assert ref["referral_id"].encode() == rec.key, (ref, rec)
        assert ref["reported_at"] == 1_700_000_000_123
        assert ref["reporter_id"] == rec.reporter
        checked += 1
    return checked
