"""From what a reporter writes (a dict, a JSON line, a CSV row) to a valid Referral, or a clear error.

Everything here is pure: the reporter client and `signalement submit` call it before sending, so
a mistake is reported on the reporter's side, with the field's name, instead of ending in
`referrals.rejected`. The checks are the pipeline's own (agents.logic.validate, normalize), plus
the type and enum checks the Avro encoder would otherwise fail on with a cryptic message.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from agents.logic.normalize import normalize
from agents.logic.validate import MIN_TIME_MS, check_referral
from streams.codec import default_codec
from streams.errors import RejectedError, SignalementError
from streams.records import ContentHash, Referral


def _symbols(record: str, field: str) -> tuple[str, ...]:
    """Enum symbols read from the schema catalogue, so the client never drifts from the contract."""
    for f in default_codec().schema(record).raw["fields"]:
        if f["name"] == field:
            node = f["type"]
            if node.get("type") == "array":
                node = next(g for g in node["items"]["fields"] if g["name"] == "algo")["type"]
            return tuple(node["symbols"])
    raise KeyError(f"{record}.{field}")


INSTRUMENTS = _symbols("Referral", "instrument")
LABELS = _symbols("Referral", "label")
CATEGORIES = _symbols("Referral", "category")
HASH_ALGOS = _symbols("Referral", "content_hashes")
ACTIONS = _symbols("OperatorDecision", "action")
FIELDS = tuple(f["name"] for f in default_codec().schema("Referral").raw["fields"])
REQUIRED = ("url",)
NULLABLE = ("external_ref", "operator_id", "language")
STRINGS = ("referral_id", "reporter_id", "url", "legal_basis", "reasons", "jurisdiction", *NULLABLE)
ENUMS = {"instrument": INSTRUMENTS, "label": LABELS, "category": CATEGORIES}
TRUE = frozenset({"true", "1", "yes", "y", "t"})
FALSE = frozenset({"false", "0", "no", "n", "f", ""})
# The legal basis a referral gets when the reporter gives none; reporters should state their own.
LEGAL_BASIS = {
    "REMOVAL_ORDER": "Regulation (EU) 2021/784 (TCO) art. 3",
    "REFERRAL": "Regulation (EU) 2022/2065 (DSA) art. 22",
    "NOTICE": "Regulation (EU) 2022/2065 (DSA) art. 16",
}


class ReferralError(SignalementError):
    """A referral the pipeline would reject; `field` names the culprit when there is one."""

    def __init__(self, message: str, field: str | None = None) -> None:
        super().__init__(f"{field}: {message}" if field else message)
        self.field = field


def parse_time(value: Any, field: str = "reported_at") -> int:
    """ms since the epoch from an int (ms), a string of digits (ms) or ISO 8601 with a time zone."""
    if isinstance(value, bool):
        raise ReferralError(f"expected ms since the epoch or ISO 8601, got {value!r}", field)
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value.strip())
    if isinstance(value, int):
        if 0 < value < MIN_TIME_MS // 1000 * 10:
            raise ReferralError(f"{value} looks like seconds; milliseconds since the epoch are expected", field)
        return value
    if not isinstance(value, str):
        raise ReferralError(f"expected ms since the epoch or ISO 8601, got {type(value).__name__}", field)
    try:
        moment = datetime.fromisoformat(value.strip())
    except ValueError:
        raise ReferralError(f"{value[:40]!r} is neither ms since the epoch nor ISO 8601", field) from None
    if moment.tzinfo is None:
        raise ReferralError(f"{value[:40]!r} has no time zone: add Z or +hh:mm", field)
    return int(moment.timestamp() * 1000)


def parse_bool(value: Any, field: str) -> bool:
    """A JSON boolean, or the usual spellings in a CSV cell (true/false, 1/0, yes/no; empty is false)."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in TRUE | FALSE:
        return value.strip().lower() in TRUE
    raise ReferralError(f"expected true or false, got {value!r}"[:120], field)


def parse_hashes(value: Any) -> list[ContentHash]:
    """A list of {algo, value}, or the CSV form `algo:value;algo:value`."""
    if value is None or value == "":
        return []
    if isinstance(value, str):
        pairs = [part.strip().partition(":") for part in value.split(";") if part.strip()]
        if any(not sep for _, sep, _ in pairs):
            raise ReferralError("expected algo:value;algo:value", "content_hashes")
        value = [{"algo": a.strip(), "value": v.strip()} for a, _, v in pairs]
    if not isinstance(value, list):
        raise ReferralError(f"expected a list of {{algo, value}}, got {type(value).__name__}", "content_hashes")
    out: list[ContentHash] = []
    for item in value:
        if not isinstance(item, Mapping) or set(item) != {"algo", "value"} or not isinstance(item["value"], str):
            raise ReferralError("each hash must be {\"algo\": ..., \"value\": \"...\"}", "content_hashes")
        algo = str(item["algo"]).upper()
        if algo not in HASH_ALGOS:
            raise ReferralError(f"algo {item['algo']!r} is not one of {', '.join(HASH_ALGOS)}", "content_hashes")
        out.append({"algo": algo, "value": item["value"]})
    return out


def _check_shape(raw: Mapping[str, Any]) -> None:
    """Unknown fields, missing required ones and wrong types, before any default is filled."""
    unknown = sorted(set(raw) - set(FIELDS))
    if unknown:
        raise ReferralError(f"unknown field(s) {', '.join(map(repr, unknown))}; known: {', '.join(FIELDS)}")
    for name in REQUIRED:
        if raw.get(name) in (None, ""):
            raise ReferralError("missing (required)", name)
    for name in STRINGS:
        if raw.get(name) is not None and not isinstance(raw[name], str):
            raise ReferralError(f"expected a string, got {type(raw[name]).__name__}", name)


def _enum(raw: Mapping[str, Any], name: str, default: str) -> str:
    value = raw.get(name)
    if value in (None, ""):
        return default
    text = str(value).strip().upper()
    if text not in ENUMS[name]:
        raise ReferralError(f"{str(value)[:40]!r} is not one of {', '.join(ENUMS[name])}", name)
    return text


def build_referral(raw: Mapping[str, Any], reporter_id: str, jurisdiction: str = "", now_ms: int = 0) -> Referral:
    """Fill the defaults of a reporter's referral and validate it as the pipeline will."""
    _check_shape(raw)
    if raw.get("reporter_id") not in (None, "", reporter_id):
        raise ReferralError(f"{raw['reporter_id']!r} differs from the publishing reporter {reporter_id!r}",
                            "reporter_id")
    instrument = _enum(raw, "instrument", "REFERRAL")
    now = now_ms or time.time_ns() // 1_000_000
    ref: Referral = {
        "referral_id": raw.get("referral_id") or str(uuid.uuid4()),
        "reporter_id": reporter_id,
        "external_ref": raw.get("external_ref") or None,
        "instrument": instrument,
        "label": _enum(raw, "label", "NONE"),
        "emergency": parse_bool(raw.get("emergency", False), "emergency"),
        "category": _enum(raw, "category", "OTHER"),
        "url": raw["url"].strip(),
        "operator_id": raw.get("operator_id") or None,
        "content_hashes": parse_hashes(raw.get("content_hashes")),
        "legal_basis": raw.get("legal_basis") or LEGAL_BASIS[instrument],
        "reasons": raw.get("reasons") or "",
        "jurisdiction": (raw.get("jurisdiction") or jurisdiction).upper(),
        "language": raw.get("language") or None,
        "reported_at": now if raw.get("reported_at") in (None, "") else parse_time(raw["reported_at"]),
    }
    validate(ref, reporter_id, now)
    return ref


def validate(ref: Referral, reporter_id: str, now_ms: int) -> None:
    """The pipeline's own checks (identity, sizes, formats, times, the URL), as a ReferralError."""
    try:
        check_referral(ref, reporter_id, now_ms)
    except RejectedError as exc:
        field, sep, rest = exc.message.partition(": ")
        if sep and field in FIELDS:
            raise ReferralError(rest, field) from None
        raise ReferralError(exc.message) from None
    try:
        normalize(ref["url"])
    except RejectedError as exc:
        raise ReferralError(exc.message.removeprefix("url: "), "url") from None


def from_json_line(line: str) -> dict[str, Any]:
    """One JSON Lines record: a JSON object, else a ReferralError saying what was found."""
    try:
        value = json.loads(line)
    except json.JSONDecodeError as exc:
        raise ReferralError(f"invalid JSON: {exc.msg} at column {exc.colno}") from None
    if not isinstance(value, dict):
        raise ReferralError(f"expected a JSON object, got {type(value).__name__}")
    return value


def from_csv_row(row: Mapping[str | None, Any]) -> dict[str, Any]:
    """One CSV row (columns = field names): empty cells are absent, extra cells are an error."""
    if None in row:
        raise ReferralError(f"{len(row[None])} more cell(s) than columns in the header")
    return {str(k).strip(): v for k, v in row.items() if v not in (None, "")}
