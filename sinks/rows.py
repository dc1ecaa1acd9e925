"""Event dict -> row tuple, one table at a time. Pure: no I/O, no clock.

Each table's columns are declared once, here, in the order of the INSERT; a column is either
the event field of the same name or computed by an extractor listed next to the columns.
MATERIALIZED columns (`*_dt`, `value_length`) are left to ClickHouse. The migrations create
the same columns (tests/unit/test_queries_modern.py checks both agree).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from operator import itemgetter
from typing import Any

Record = Mapping[str, Any]
Row = tuple[Any, ...]
Extract = Callable[[Record], Any]

# Source flags: the sink adds these to an event from what the topic says, not the payload.
ROUTED = "routed"                        # referrals: 1 from referrals.accepted, 0 from .unroutable
TOPIC_OPERATOR_ID = "topic_operator_id"  # decisions: the operator whose decisions topic carried it


def _default(field: str, value: Any) -> Extract:
    return lambda e: e.get(field, value)


@dataclass(frozen=True)
class Table:
    """One ClickHouse table: its columns in insert order and how to get each from an event."""

    name: str
    columns: tuple[str, ...]
    computed: Mapping[str, Extract]

    def __post_init__(self) -> None:
        unknown = set(self.computed) - set(self.columns)
        if unknown:
            raise ValueError(f"{self.name}: extractors for unknown columns {sorted(unknown)}")
        if self.computed:
            getters = [self.computed.get(c) or itemgetter(c) for c in self.columns]
            object.__setattr__(self, "_row", lambda e: tuple(g(e) for g in getters))
        else:  # every column is a field: one C call builds the whole tuple
            object.__setattr__(self, "_row", itemgetter(*self.columns))

    def row(self, event: Record) -> Row:
        return self._row(event)  # type: ignore[attr-defined, no-any-return]

    def insert_sql(self, database: str) -> str:
        cols = ", ".join(f"`{c}`" for c in self.columns)
        return f"INSERT INTO {database}.{self.name} ({cols}) VALUES"


REFERRALS = Table(
    "referrals",
    ("referral_id", "reporter_id", "external_ref", "instrument", "label", "emergency", "category", "url",
     "operator_id", "content_hashes.algo", "content_hashes.value", "legal_basis", "reasons", "jurisdiction",
     "language", "reported_at", "normalized_url", "priority", "label_verified", "label_rejected", "routed_at",
     "ack_deadline", "decision_deadline", "co_reporters", "escalated", "version", ROUTED),
    {
        "content_hashes.algo": lambda e: [h["algo"] for h in e["content_hashes"]],
        "content_hashes.value": lambda e: [h["value"] for h in e["content_hashes"]],
        "version": _default("version", 0),
        ROUTED: lambda e: int(e.get(ROUTED, e.get("operator_id") is not None)),
    },
)

DUPLICATES = Table(
    "duplicates",
    ("referral_id", "canonical_referral_id", "reporter_id", "normalized_url", "operator_id", "reported_at",
     "priority", "escalated", "detected_at"),
    {"detected_at": _default("detected_at", 0)},
)

REJECTIONS = Table(
    "rejections",
    ("source_topic", "source_partition", "source_offset", "key", "value", "error_code", "error", "rejected_at"),
    {},
)

DECISIONS = Table(
    "decisions",
    ("referral_id", "operator_id", "action", "acted_at", "reason", "operator_ref", TOPIC_OPERATOR_ID),
    {TOPIC_OPERATOR_ID: lambda e: e.get(TOPIC_OPERATOR_ID, e["operator_id"])},
)

OVERDUE = Table(
    "overdue",
    ("referral_id", "operator_id", "priority", "deadline_kind", "deadline", "detected_at"),
    {},
)

REACTIONS = Table(
    "reactions",
    ("referral_id", "operator_id", "reporter_id", "priority", "category", "reported_at", "routed_at", "acked_at",
     "decided_at", "action", "time_to_ack_ms", "time_to_decision_ms", "ack_on_time", "decision_on_time",
     "ack_deadline", "decision_deadline", "updated_at"),
    {},
)

REACTION_WINDOWS = Table(
    "reaction_windows",
    ("operator_id", "priority", "window_start", "window_end", "decided", "on_time", "breached", "p50_ms", "p90_ms",
     "p99_ms", "max_ms", "mean_ms", "acked", "ack_p90_ms", "updated_at", "closed"),
    {},
)

TABLES: dict[str, Table] = {t.name: t for t in (REFERRALS, DUPLICATES, REJECTIONS, DECISIONS, OVERDUE,
                                                 REACTIONS, REACTION_WINDOWS)}

# Avro record name each table is fed from.
SCHEMA_OF: dict[str, str] = {
    "referrals": "RoutedReferral",
    "duplicates": "DuplicateReferral",
    "rejections": "Rejection",
    "decisions": "OperatorDecision",
    "overdue": "OverdueAlert",
    "reactions": "Reaction",
    "reaction_windows": "ReactionWindow",
}


def referral_row(event: Record, routed: bool = True) -> Row:
    """A RoutedReferral from referrals.accepted (routed) or referrals.unroutable (not routed)."""
    return REFERRALS.row({**event, ROUTED: int(routed)})


def decision_row(event: Record, topic_operator_id: str) -> Row:
    """An OperatorDecision, with the operator its topic belongs to."""
    return DECISIONS.row({**event, TOPIC_OPERATOR_ID: topic_operator_id})


def row_as_event(table: Table, row: Row) -> dict[str, Any]:
    """The inverse, for tests and tools: a row back to a dict by column name."""
    return dict(zip(table.columns, row, strict=True))
