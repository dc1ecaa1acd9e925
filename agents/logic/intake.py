"""From a decoded Referral to a routing candidate: validate, normalise, route, rank (pure)."""

from __future__ import annotations

from dataclasses import dataclass

from agents.logic.normalize import normalize
from agents.logic.priority import rank
from agents.logic.routing import HostRouter, resolve_operator
from agents.logic.validate import check_referral
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
