"""Label priority: who gets which lane, and the deadlines that follow (pure)."""

from __future__ import annotations

from dataclasses import dataclass

from streams.policy import Policy
from streams.records import Referral
from streams.registry import Reporter


@dataclass(frozen=True)
class Ranking:
    priority: str
    label_verified: bool
    label_rejected: bool


def rank(referral: Referral, reporter: Reporter) -> Ranking:
    """Apply the policy: entitled removal orders and labelled emergencies are CRITICAL,
    labelled referrals HIGH, the rest STANDARD; unentitled claims are downgraded and flagged."""
    claims_label = referral["label"] == "LABELLED"
    is_order = referral["instrument"] == "REMOVAL_ORDER"
    label_verified = claims_label and reporter.labelled
    rejected = (claims_label and not reporter.labelled) or (is_order and not reporter.removal_orders)
    if (is_order and reporter.removal_orders) or (reporter.labelled and referral["emergency"]):
        priority = "CRITICAL"
    elif label_verified:
        priority = "HIGH"
    else:
        priority = "STANDARD"
    return Ranking(priority, label_verified, rejected)


def claims_urgency(referral: Referral) -> bool:
    """A removal order or an emergency: the claims that can make a referral CRITICAL (`rank`).

    What a reporter sends to its urgent topic (Topics.reports_urgent); the reporter cannot know
    whether the pipeline will grant it, the pipeline ranks it as any other referral."""
    return referral["instrument"] == "REMOVAL_ORDER" or bool(referral["emergency"])


def deadlines(policy: Policy, priority: str, routed_at: int) -> tuple[int, int]:
    """(ack_deadline, decision_deadline) in ms, counted from the moment the lane got it."""
    d = policy.deadlines[priority]
    return routed_at + d.ack_ms, routed_at + d.decide_ms
