"""Field checks the Avro schema cannot express: identity, sizes, formats, sane times (pure)."""

from __future__ import annotations

import re

from streams.errors import InvalidFieldError, RejectedError
from streams.records import OperatorDecision, Referral

UUID_RE = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
COUNTRY_RE = re.compile(r"[A-Z]{2}")
LANGUAGE_RE = re.compile(r"[a-z]{2}")
HEX_RE = re.compile(r"[0-9a-fA-F]+")
# Unicode category Cc (C0, DEL, C1) and the line/paragraph separators; multi-line fields keep \t \n \r.
# (Patterns are used with fullmatch, never match + $: `$` also matches before a final newline.)
CONTROL_RE = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")
CONTROL_BUT_LINES_RE = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
HASH_LEN = {"MD5": 32, "SHA256": 64, "PDQ": 64}
MIN_TIME_MS = 946_684_800_000  # 2000-01-01: no referral predates the TCO/LCEN era
MAX_SKEW_MS = 5 * 60_000  # a reporter's clock may run this far ahead of ours

# field -> max characters (also stated in the schemas' docs)
LIMITS = {"referral_id": 36, "reporter_id": 64, "external_ref": 256, "operator_id": 64, "legal_basis": 1024,
          "reasons": 8192, "reason": 8192, "operator_ref": 256, "url": 4096, "jurisdiction": 2, "language": 2}
MULTILINE = {"reasons", "reason", "legal_basis"}
MAX_HASHES = 32


def _strings(record: dict[str, object], names: tuple[str, ...]) -> None:
    for name in names:
        value = record.get(name)
        if value is None:
            continue
        assert isinstance(value, str)
        if len(value) > LIMITS[name]:
            raise InvalidFieldError(f"{name}: {len(value)} characters, at most {LIMITS[name]}")
        pattern = CONTROL_BUT_LINES_RE if name in MULTILINE else CONTROL_RE
        if pattern.search(value):
            raise InvalidFieldError(f"{name}: contains control characters")


def check_time(name: str, value: int, now_ms: int) -> None:
    if value < MIN_TIME_MS or value > now_ms + MAX_SKEW_MS:
        raise InvalidFieldError(f"{name}: {value} ms is before 2000 or in the future")


def check_referral(ref: Referral, topic_reporter: str, now_ms: int) -> None:
    """Raise a RejectedError (with its code) unless the referral may enter the pipeline."""
    if ref["reporter_id"] != topic_reporter:
        raise RejectedError(f"reporter_id {ref['reporter_id'][:64]!r} published on the topic of {topic_reporter!r}",
                            "IDENTITY_MISMATCH")
    _strings(ref, ("referral_id", "reporter_id", "external_ref", "operator_id", "legal_basis", "reasons"))  # type: ignore[arg-type]
    if not UUID_RE.fullmatch(ref["referral_id"]):
        raise InvalidFieldError(f"referral_id: {ref['referral_id']!r} is not a UUID")
    if len(ref["url"]) > LIMITS["url"]:  # the URL's shape is checked by normalize(), after this
        raise InvalidFieldError(f"url: {len(ref['url'])} characters, at most {LIMITS['url']}")
    if not COUNTRY_RE.fullmatch(ref["jurisdiction"]):
        raise InvalidFieldError(f"jurisdiction: {ref['jurisdiction'][:8]!r} is not an ISO 3166-1 alpha-2 code")
    if ref["language"] is not None and not LANGUAGE_RE.fullmatch(ref["language"]):
        raise InvalidFieldError(f"language: {ref['language'][:8]!r} is not an ISO 639-1 code")
    if not ref["legal_basis"].strip():
        raise InvalidFieldError("legal_basis: empty")
    if len(ref["content_hashes"]) > MAX_HASHES:
        raise InvalidFieldError(f"content_hashes: {len(ref['content_hashes'])} hashes, at most {MAX_HASHES}")
    for h in ref["content_hashes"]:
        value = h["value"]
        if len(value) != HASH_LEN[h["algo"]] or not HEX_RE.fullmatch(value):
            raise InvalidFieldError(f"content_hashes: {h['algo']} value must be {HASH_LEN[h['algo']]} hex digits")
    check_time("reported_at", ref["reported_at"], now_ms)


def check_decision(decision: OperatorDecision, topic_operator: str, now_ms: int) -> None:
    """Raise a RejectedError unless the decision may be joined to its referral."""
    if decision["operator_id"] != topic_operator:
        raise RejectedError(f"operator_id {decision['operator_id'][:64]!r} published on the topic of "
                            f"{topic_operator!r}", "IDENTITY_MISMATCH")
    _strings(decision, ("referral_id", "operator_id", "reason", "operator_ref"))  # type: ignore[arg-type]
    if not UUID_RE.fullmatch(decision["referral_id"]):
        raise InvalidFieldError(f"referral_id: {decision['referral_id']!r} is not a UUID")
    check_time("acted_at", decision["acted_at"], now_ms)
