"""Typed shapes of the contract's events, as the codec hands them out (dicts, times in ms).

TypedDicts cost nothing at run time: the hot path keeps plain dicts from fastavro, and
mypy still checks every field name.
"""

from __future__ import annotations

from typing import TypedDict


class ContentHash(TypedDict):
    algo: str
    value: str


class Referral(TypedDict):
    referral_id: str
    reporter_id: str
    external_ref: str | None
    instrument: str
    label: str
    emergency: bool
    category: str
    url: str
    operator_id: str | None
    content_hashes: list[ContentHash]
    legal_basis: str
    reasons: str
    jurisdiction: str
    language: str | None
    reported_at: int


class RoutedReferral(Referral):
    normalized_url: str
    priority: str
    label_verified: bool
    label_rejected: bool
    routed_at: int
    ack_deadline: int
    decision_deadline: int
    co_reporters: list[str]
    escalated: bool
    version: int


class DuplicateReferral(TypedDict):
    referral_id: str
    canonical_referral_id: str
    reporter_id: str
    normalized_url: str
    operator_id: str
    reported_at: int
    priority: str
    escalated: bool
    detected_at: int


class Rejection(TypedDict):
    source_topic: str
    source_partition: int
    source_offset: int
    key: bytes | None
    value: bytes
    error_code: str
    error: str
    rejected_at: int


class OperatorDecision(TypedDict):
    referral_id: str
    operator_id: str
    action: str
    acted_at: int
    reason: str | None
    operator_ref: str | None


class Reaction(TypedDict):
    referral_id: str
    operator_id: str
    reporter_id: str
    priority: str
    category: str
    reported_at: int
    routed_at: int
    acked_at: int | None
    decided_at: int | None
    action: str | None
    time_to_ack_ms: int | None
    time_to_decision_ms: int | None
    ack_on_time: bool | None
    decision_on_time: bool | None
    ack_deadline: int
    decision_deadline: int
    updated_at: int


class ReactionWindow(TypedDict):
    operator_id: str
    priority: str
    window_start: int
    window_end: int
    decided: int
    on_time: int
    breached: int
    p50_ms: int
    p90_ms: int
    p99_ms: int
    max_ms: int
    mean_ms: float
    acked: int
    ack_p90_ms: int
    updated_at: int
    closed: bool


class OverdueAlert(TypedDict):
    referral_id: str
    operator_id: str
    priority: str
    deadline_kind: str
    deadline: int
    detected_at: int


class ItemDecided(TypedDict):
    dedup_key: str
    referral_id: str
    decided_at: int
