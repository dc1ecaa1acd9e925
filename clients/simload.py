"""The simulator's load, as pure functions of a seeded `random.Random`: who reports what, where.

Reporters follow the registry (pharos, eu-iru and ctiru hold the label; pharos and tj-paris may
issue removal orders; pointdecontact is an NGO without either). URLs are on the operators'
hosts, about 1 % on hosts nobody answers for, and about 1 % of the records are malformed on
purpose (they end in referrals.rejected). A crisis burst re-reports one piece of content at
many URLs, from several services: a flood of duplicates and some escalations.
"""

from __future__ import annotations

import random
import string
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

ALNUM = string.ascii_letters + string.digits
VIDEO_ID = ALNUM + "-_"


@dataclass(frozen=True)
class ReporterProfile:
    """How one reporter writes: its share of the traffic, instruments, label claims and topics."""

    weight: float
    instruments: dict[str, float]
    labelled_share: float
    emergency_share: float
    categories: dict[str, float]
    languages: dict[str, float] = field(default_factory=lambda: {"fr": 1.0})
    legal_basis: dict[str, str] = field(default_factory=dict)


TERROR = {"TERRORIST_PROPAGANDA": 0.35, "APOLOGY_OF_TERRORISM": 0.2, "INCITEMENT": 0.15, "INSTRUCTIONS": 0.1,
          "THREAT": 0.05, "HATE_SPEECH": 0.1, "CHILD_SEXUAL_ABUSE": 0.05}
REPORTERS: dict[str, ReporterProfile] = {
    "pharos": ReporterProfile(0.35, {"REMOVAL_ORDER": 0.25, "REFERRAL": 0.75}, 0.9, 0.03,
                              {**TERROR, "CHILD_SEXUAL_ABUSE": 0.15, "HATE_SPEECH": 0.15},
                              {"fr": 0.8, "ar": 0.1, "en": 0.1},
                              {"REMOVAL_ORDER": "Regulation (EU) 2021/784 art. 3", "REFERRAL": "LCEN art. 6-1"}),
    "eu-iru": ReporterProfile(0.2, {"REFERRAL": 1.0}, 0.95, 0.02, TERROR, {"en": 0.5, "ar": 0.2, "fr": 0.15, "de": 0.15}),
    "ctiru": ReporterProfile(0.15, {"REFERRAL": 1.0}, 0.95, 0.02, TERROR, {"en": 0.9, "ar": 0.1}),
    "tj-paris": ReporterProfile(0.05, {"REMOVAL_ORDER": 1.0}, 0.0, 0.0, TERROR, {"fr": 1.0},
                                {"REMOVAL_ORDER": "Regulation (EU) 2021/784 art. 3; ordonnance du tribunal"}),
    "pointdecontact": ReporterProfile(0.25, {"NOTICE": 1.0}, 0.03, 0.0,
                                      {"HATE_SPEECH": 0.4, "CHILD_SEXUAL_ABUSE": 0.3, "APOLOGY_OF_TERRORISM": 0.2,
                                       "OTHER": 0.1}),
}
GENERIC_REPORTER = ReporterProfile(0.05, {"REFERRAL": 0.8, "NOTICE": 0.2}, 0.0, 0.0, TERROR)
# host -> (weight, URL pattern); {v} a video id, {n} a number, {u} a user, {c} a short code
HOSTS: dict[str, tuple[float, str]] = {
    "youtube.com": (0.22, "https://www.youtube.com/watch?v={v}"),
    "youtu.be": (0.04, "https://youtu.be/{v}?si={c}"),
    "facebook.com": (0.16, "https://www.facebook.com/{u}/posts/{n}"),
    "fb.watch": (0.02, "https://fb.watch/{c}/"),
    "x.com": (0.16, "https://x.com/{u}/status/{n}"),
    "twitter.com": (0.03, "https://twitter.com/{u}/status/{n}?s=20"),
    "instagram.com": (0.1, "https://www.instagram.com/p/{c}/"),
    "threads.net": (0.03, "https://www.threads.net/@{u}/post/{c}"),
    "github.com": (0.04, "https://github.com/{u}/{c}"),
    "linkedin.com": (0.04, "https://www.linkedin.com/posts/{u}_{n}"),
    "icloud.com": (0.03, "https://www.icloud.com/iclouddrive/0{c}"),
    "podcasts.apple.com": (0.02, "https://podcasts.apple.com/fr/podcast/{u}/id{n}"),
    "blogspot.com": (0.03, "https://{u}.blogspot.com/2025/01/{c}.html"),
    "drive.google.com": (0.03, "https://drive.google.com/file/d/{c}/view"),
}
UNKNOWN_HOSTS = ("https://forum-{u}.example.net/t/{n}", "https://{u}.pastes.example.org/{c}",
                 "https://archive.example.com/{c}")
CRISIS_HOSTS = ("youtube.com", "x.com", "facebook.com", "instagram.com", "fb.watch", "threads.net")
CRISIS_REPORTERS = ("pharos", "eu-iru", "ctiru", "pointdecontact")
MALFORMED = ("bad_uuid", "no_legal_basis", "future", "bad_scheme", "identity", "bad_hash", "not_avro")


def pick(rng: random.Random, weights: dict[str, float]) -> str:
    """One key drawn by weight (weights need not sum to 1)."""
    keys = [k for k, w in weights.items() if w > 0]
    return rng.choices(keys, weights=[weights[k] for k in keys])[0]


def token(rng: random.Random, n: int, alphabet: str = ALNUM) -> str:
    """A random string: ids and codes in the generated URLs."""
    return "".join(rng.choice(alphabet) for _ in range(n))


def fill(pattern: str, rng: random.Random) -> str:
    """A URL pattern with fresh random parts."""
    return pattern.format(v=token(rng, 11, VIDEO_ID), n=rng.randrange(10**15, 10**19), c=token(rng, 11),
                          u=token(rng, 8, string.ascii_lowercase + string.digits))


def make_url(rng: random.Random, hosts: Sequence[str], unknown_share: float = 0.01) -> str:
    """A URL on one of the operators' hosts, or (unknown_share of the time) on a host nobody answers for."""
    if rng.random() < unknown_share:
        return fill(rng.choice(UNKNOWN_HOSTS), rng)
    weights = {h: HOSTS[h][0] for h in hosts if h in HOSTS}
    if not weights:  # a registry of other platforms: a plain URL on one of its hosts
        return fill(f"https://{rng.choice(list(hosts))}/content/{{c}}", rng)
    return fill(HOSTS[pick(rng, weights)][1], rng)


def new_id(rng: random.Random) -> str:
    """A version-4 UUID from the seeded generator (reproducible)."""
    return str(uuid.UUID(int=rng.getrandbits(128), version=4))


def referral(rng: random.Random, reporter_id: str, hosts: Sequence[str], now_ms: int,
             unknown_share: float = 0.01) -> dict[str, Any]:
    """One plausible referral from a reporter (a dict for Reporter.submit)."""
    profile = REPORTERS.get(reporter_id, GENERIC_REPORTER)
    instrument = pick(rng, profile.instruments)
    return {
        "referral_id": new_id(rng),
        "external_ref": f"{reporter_id.upper()}-{rng.randrange(10**6):06d}",
        "instrument": instrument,
        "label": "LABELLED" if rng.random() < profile.labelled_share else "NONE",
        "emergency": rng.random() < profile.emergency_share,
        "category": pick(rng, profile.categories),
        "url": make_url(rng, hosts, unknown_share),
        "legal_basis": profile.legal_basis.get(instrument) or "",
        "reasons": "Content reported by the simulator.",
        "language": pick(rng, profile.languages),
        "reported_at": now_ms - rng.randrange(0, 60_000),
    }


def pick_reporter(rng: random.Random, reporters: Sequence[str]) -> str:
    """A reporter drawn by its share of the traffic (an unknown one gets a small share)."""
    return pick(rng, {r: REPORTERS.get(r, GENERIC_REPORTER).weight for r in reporters})


def malformed(rng: random.Random, good: dict[str, Any], other_reporter: str) -> tuple[str, dict[str, Any] | bytes]:
    """(kind, record or raw bytes): a full Referral broken in one way the pipeline must reject."""
    kind = rng.choice(MALFORMED)
    rec = dict(good)
    if kind == "bad_uuid":
        rec["referral_id"] = f"case-{rng.randrange(10**6)}"
    elif kind == "no_legal_basis":
        rec["legal_basis"] = " "
    elif kind == "future":
        rec["reported_at"] = good["reported_at"] + 86_400_000
    elif kind == "bad_scheme":
        rec["url"] = "ftp://" + rec["url"].split("://", 1)[1]
    elif kind == "identity":
        rec["reporter_id"] = other_reporter
    elif kind == "bad_hash":
        rec["content_hashes"] = [{"algo": "SHA256", "value": "not-a-digest"}]
    else:
        return kind, b"\xc3\x01" + rng.randbytes(8) + b"garbage"
    return kind, rec


@dataclass(frozen=True)
class CrisisReport:
    """One report of the crisis content: when (fraction of the burst), by whom, which URL."""

    at: float
    reporter_id: str
    url: str
    instrument: str
    label: str


def crisis(rng: random.Random, size: int, reporters: Sequence[str]) -> list[CrisisReport]:
    """One video re-uploaded at `size` URLs; each URL reported by 1 to 3 services: the duplicates."""
    who = [r for r in CRISIS_REPORTERS if r in reporters] or list(reporters)
    out = []
    for _ in range(size):
        url = fill(HOSTS[rng.choice(CRISIS_HOSTS)][1], rng)
        first = rng.random()
        for reporter_id in rng.sample(who, k=min(len(who), rng.choice((1, 1, 2, 2, 3)))):
            order = reporter_id == "pharos" and rng.random() < 0.5
            label = "LABELLED" if REPORTERS.get(reporter_id, GENERIC_REPORTER).labelled_share > 0.5 else "NONE"
            at = min(1.0, first + rng.expovariate(20.0))
            out.append(CrisisReport(at, reporter_id, url, "REMOVAL_ORDER" if order else
                                    ("NOTICE" if reporter_id == "pointdecontact" else "REFERRAL"), label))
    return sorted(out, key=lambda c: c.at)


def crisis_referral(rng: random.Random, report: CrisisReport, digest: str, now_ms: int) -> dict[str, Any]:
    """The referral of one crisis report: same content hash everywhere, terrorist propaganda."""
    return {
        "referral_id": new_id(rng), "instrument": report.instrument, "label": report.label,
        "emergency": False, "category": "TERRORIST_PROPAGANDA", "url": report.url,
        "content_hashes": [{"algo": "SHA256", "value": digest}],
        "reasons": "Re-upload of the attack video.", "reported_at": now_ms,
    }
