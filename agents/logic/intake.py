"""From a decoded Referral to a routing candidate: validate, normalise, route, rank (pure)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import cast

from agents.logic.normalize import normalize
from agents.logic.priority import rank
from agents.logic.routing import HostRouter, resolve_operator
from agents.logic.validate import check_referral
from streams.codec import Codec, Record
from streams.errors import RejectedError
from streams.records import Referral, RoutedReferral
from streams.registry import Registry


@dataclass(frozen=True)
class Intake:
    """Everything intake needs, built once: the registry and its host index."""

    registry: Registry
    router: HostRouter

    @classmethod
    def build(cls, registry: Registry) -> Intake:
        return cls(registry, HostRouter(registry.host_index()))

    def take(self, codec: Codec, data: bytes | None, topic_reporter: str, now_ms: int
             ) -> tuple[Referral, RoutedReferral, bytes]:
        """A report's bytes -> the referral, its routing candidate and the candidate's encoding;
        raise RejectedError with the code for referrals.rejected (BAD_AVRO before any other).

        The referral's canonical-form check compares its bytes with the candidate's, which begin
        with the same fields (streams/codec.py)."""
        ref = cast(Referral, codec.decode(data, "Referral", canonical=False))
        raw, record = cast(bytes, data), cast(Record, ref)  # decoded: bytes
        try:
            cand = self.candidate(ref, topic_reporter, now_ms)
        except RejectedError:
            codec.check_canonical(raw, record)  # bytes that are no valid Avro are said so first
            raise
        encoded = codec.encode("RoutedReferral", cand)
        codec.check_canonical(raw, record, (cand, encoded), "operator_id")
        return ref, cand, encoded

    def candidate(self, ref: Referral, topic_reporter: str, now_ms: int) -> RoutedReferral:
        """Validate and enrich; raise RejectedError with the code for referrals.rejected."""
        reporter = self.registry.reporters.get(topic_reporter)
        if reporter is None:
            raise RejectedError(f"reporter {topic_reporter!r} is not in the registry", "UNKNOWN_REPORTER")
        check_referral(ref, topic_reporter, now_ms)
        normalized, host = normalize(ref["url"])
        operator = resolve_operator(ref["operator_id"], host, self.registry.operators, self.router)
        ranking = rank(ref, reporter)
        return {
            **ref,
            "normalized_url": normalized,
            "operator_id": operator,
            "priority": ranking.priority,
            "label_verified": ranking.label_verified,
            "label_rejected": ranking.label_rejected,
            "routed_at": 0,
            "ack_deadline": 0,
            "decision_deadline": 0,
            "co_reporters": [],
            "escalated": False,
            "version": 0,
        }
