"""The topic catalogue: every topic name of the contract, and how each is created.

Names live here and nowhere else. A prefix (SIGNALEMENT_TOPIC_PREFIX, empty in production)
lets tests run side by side on one broker. Every topic that agents join by referral_id has
the same partition count, so one referral stays on one partition number across them.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from streams.registry import Registry

DAY_MS = 86_400_000
LANES = ("critical", "high", "standard")
LANE_OF_PRIORITY = {"CRITICAL": "critical", "HIGH": "high", "STANDARD": "standard"}
# Record size limits (max.message.bytes). The broker refuses a bigger record on a topic written from
# outside (reports, decisions); the dead letter of the biggest one (its key and value plus < 10 KiB)
# must still fit on referrals.rejected, and in the worker's producer requests (streams.app).
EXTERNAL_MAX_BYTES = 1_048_576
REJECTED_MAX_BYTES = 4 * EXTERNAL_MAX_BYTES
URGENT_SUFFIX = ".urgent"  # reports.<reporter_id>.urgent: a reporter's removal orders and emergencies


@dataclass(frozen=True)
class TopicSpec:
    """One topic: its name, value schema and creation config."""

    name: str
    value_schema: str
    partitions: int
    replication: int = 1
    retention_ms: int = 30 * DAY_MS
    cleanup_policy: str = "delete"
    description: str = ""
    max_message_bytes: int | None = None  # None: the broker's default

    def config(self) -> dict[str, str]:
        conf = {"retention.ms": str(self.retention_ms), "cleanup.policy": self.cleanup_policy}
        if self.max_message_bytes is not None:
            conf["max.message.bytes"] = str(self.max_message_bytes)
        return conf


@dataclass(frozen=True)
class Topics:
    """Topic names for one prefix, and the full catalogue for one registry."""

    prefix: str = ""
    partitions: int = 4
    replication: int = 1

    def reports(self, reporter_id: str) -> str:
        return f"{self.prefix}reports.{reporter_id}"

    def reports_urgent(self, reporter_id: str) -> str:
        """A reporter's fast lane into the pipeline: its removal orders and emergencies.

        Kafka serves a partition in order, so a report waits behind every report before it in its
        topic; during a crisis that is minutes of a reporter's own referrals. On this topic, with
        its own intake and routing agents, a removal order passes them (docs/reporters.md)."""
        return f"{self.prefix}reports.{reporter_id}{URGENT_SUFFIX}"

    def intake_topics(self, reporters: Iterable[str]) -> tuple[list[str], list[str]]:
        """(every reporter's topic, every reporter's urgent topic), in a stable order."""
        ids = sorted(reporters)
        return [self.reports(r) for r in ids], [self.reports_urgent(r) for r in ids]

    def lane(self, operator_id: str, priority: str) -> str:
        return f"{self.prefix}operator.{operator_id}.{LANE_OF_PRIORITY[priority]}"

    def decisions(self, operator_id: str) -> str:
        return f"{self.prefix}operator.{operator_id}.decisions"

    @property
    def accepted(self) -> str:
        return f"{self.prefix}referrals.accepted"

    @property
    def duplicates(self) -> str:
        return f"{self.prefix}referrals.duplicates"

    @property
    def rejected(self) -> str:
        return f"{self.prefix}referrals.rejected"

    @property
    def unroutable(self) -> str:
        return f"{self.prefix}referrals.unroutable"

    @property
    def overdue(self) -> str:
        return f"{self.prefix}referrals.overdue"

    @property
    def reactions(self) -> str:
        return f"{self.prefix}reactions"

    @property
    def windows(self) -> str:
        return f"{self.prefix}reaction.windows"

    @property
    def dedup_items(self) -> str:
        """Internal: routed candidates keyed by dedup identity (operator + normalised URL)."""
        return f"{self.prefix}signalement.internal.dedup"

    @property
    def dedup_urgent(self) -> str:
        """Internal: the candidates of urgent priorities (policy.yaml), keyed like dedup_items.

        Their own topic so that under exactly-once nothing else holds them back: a consumer at
        read_committed sees a partition only up to its first record of a transaction still open,
        and internal.dedup takes records from every intake transaction, committed at the interval;
        this topic only from transactions that hold an urgent record, committed at once."""
        return f"{self.prefix}signalement.internal.dedup.urgent"

    @property
    def candidates(self) -> list[str]:
        """Internal: both topics of routed candidates (routing reads them; checks count them together)."""
        return [self.dedup_items, self.dedup_urgent]

    @property
    def routed(self) -> str:
        """Internal: what routing writes to referrals.accepted, again, packed by the partition of its
        referral_id (streams/packs.py), for the reactions agent: one record per unit of routing's
        work instead of one per routed referral (referrals.accepted is the contract's, per event)."""
        return f"{self.prefix}signalement.internal.routed"

    @property
    def window_input(self) -> str:
        """Internal: reactions re-keyed by (operator, priority) for the window aggregation."""
        return f"{self.prefix}signalement.internal.windows"

    @property
    def ticks(self) -> str:
        """Internal: one tick per partition per interval, so timers act inside a partition's stream."""
        return f"{self.prefix}signalement.internal.ticks"

    def reporter_of(self, topic: str) -> str | None:
        """'reports.pharos' and 'reports.pharos.urgent' -> 'pharos'; None if not a reports topic."""
        head = f"{self.prefix}reports."
        if not topic.startswith(head):
            return None
        rest = topic[len(head):]
        return rest[:-len(URGENT_SUFFIX)] if rest.endswith(URGENT_SUFFIX) else rest

    def operator_of_decisions(self, topic: str) -> str | None:
        head, tail = f"{self.prefix}operator.", ".decisions"
        if topic.startswith(head) and topic.endswith(tail):
            return topic[len(head):-len(tail)]
        return None

    def _spec(self, name: str, schema: str, desc: str, **kw: object) -> TopicSpec:
        return TopicSpec(name, schema, self.partitions, self.replication, description=desc, **kw)  # type: ignore[arg-type]

    def catalogue(self, registry: Registry) -> list[TopicSpec]:
        """Every topic of the contract for this registry, in a stable order."""
        specs = [self._spec(self.reports(r), "Referral", f"referrals from {r}", max_message_bytes=EXTERNAL_MAX_BYTES)
                 for r in sorted(registry.reporters)]
        specs += [self._spec(self.reports_urgent(r), "Referral", f"removal orders and emergencies from {r}",
                             max_message_bytes=EXTERNAL_MAX_BYTES) for r in sorted(registry.reporters)]
        specs += [
            self._spec(self.accepted, "RoutedReferral", "every routed referral, latest version wins"),
            self._spec(self.duplicates, "DuplicateReferral", "referrals of an item already routed"),
            self._spec(self.rejected, "Rejection", "dead letters with the original bytes", retention_ms=90 * DAY_MS,
                       max_message_bytes=REJECTED_MAX_BYTES),
            self._spec(self.unroutable, "RoutedReferral", "referrals whose host no operator answers for"),
            self._spec(self.overdue, "OverdueAlert", "deadline breaches as they happen"),
            self._spec(self.reactions, "Reaction", "reaction of an operator to a referral"),
            self._spec(self.windows, "ReactionWindow", "rolling reaction-time windows", cleanup_policy="compact"),
            self._spec(self.dedup_items, "RecordPack", "internal: candidates packed by the partition of their "
                       "dedup identity, and ItemDecided keyed by it", retention_ms=7 * DAY_MS),
            self._spec(self.dedup_urgent, "RecordPack", "internal: urgent candidates, packed like internal.dedup",
                       retention_ms=7 * DAY_MS),
            self._spec(self.routed, "RecordPack", "internal: referrals.accepted packed, for the reactions agent",
                       retention_ms=7 * DAY_MS),
            self._spec(self.window_input, "Reaction", "internal: keyed by operator and priority", retention_ms=7 * DAY_MS),
            self._spec(self.ticks, "", "internal: partition ticks for deadlines and windows", retention_ms=3_600_000),
        ]
        for op in sorted(registry.operators):
            specs += [self._spec(self.lane(op, p), "RoutedReferral", f"{op}'s {p.lower()} lane")
                      for p in LANE_OF_PRIORITY]
            specs.append(self._spec(self.decisions(op), "OperatorDecision", f"decisions published by {op}",
                                    max_message_bytes=EXTERNAL_MAX_BYTES))
        return specs
