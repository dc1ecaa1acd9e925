"""The reporter client: validate a referral locally, then publish it to the reporter's own topic.

    reporter = Reporter(Settings.from_env(), "pharos")
    reporter.submit({"url": "https://www.youtube.com/watch?v=abc", "category": "TERRORIST_PROPAGANDA",
                     "instrument": "REMOVAL_ORDER"})
    summary = reporter.flush(10)     # DeliverySummary(sent=1, failed=[], pending=0)

A reporter writes only to `reports.<reporter_id>` (the topic is its identity), keyed by
referral_id, with an idempotent acks=all producer and the murmur2 partitioner; its removal orders
and emergencies go to `reports.<reporter_id>.urgent`, which the pipeline takes apart, so that they
pass the reporter's own backlog (docs/reporters.md).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import KafkaError, Message, Producer

from agents.logic.priority import claims_urgency
from clients.kafka import load_registry, now_ms, producer_config
from clients.parsing import ReferralError, build_referral
from streams.codec import default_codec
from streams.config import Settings
from streams.errors import ConfigError
from streams.records import Referral
from streams.topics import Topics

log = logging.getLogger("signalement.clients.reporter")


@dataclass
class DeliverySummary:
    """What the broker confirmed so far: sent, failed (referral_id, reason), still pending."""

    sent: int = 0
    failed: list[tuple[str, str]] = field(default_factory=list)
    pending: int = 0

    @property
    def ok(self) -> bool:
        """Every referral queued so far was confirmed by the broker."""
        return not self.failed and not self.pending


class Reporter:
    """Publishes one reporter's referrals; `submit` raises ReferralError before sending a bad one."""

    def __init__(self, settings: Settings, reporter_id: str, topics: Topics | None = None,
                 jurisdiction: str | None = None, producer_extra: Mapping[str, Any] | None = None) -> None:
        self.reporter_id = reporter_id
        self.topics = topics or Topics(prefix=settings.topic_prefix, partitions=settings.partitions)
        self.topic = self.topics.reports(reporter_id)
        self.urgent_topic = self.topics.reports_urgent(reporter_id)
        self.jurisdiction = jurisdiction if jurisdiction is not None else self._registry_jurisdiction(settings)
        self.codec = default_codec()
        self.summary = DeliverySummary()
        self._producer = Producer(producer_config(settings, **(producer_extra or {})))

    def _registry_jurisdiction(self, settings: Settings) -> str:
        """The reporter's jurisdiction from the registry; an unknown reporter is an error here already."""
        registry = load_registry(settings)
        if registry is None:
            return ""
        reporter = registry.reporters.get(self.reporter_id)
        if reporter is None:
            raise ConfigError(f"reporter {self.reporter_id!r} is not in {settings.reporters_path} "
                              f"(known: {', '.join(sorted(registry.reporters))}); the pipeline would reject it all")
        return reporter.jurisdiction

    def prepare(self, referral: Mapping[str, Any]) -> Referral:
        """The referral with its defaults filled, validated as the pipeline will; raises ReferralError."""
        return build_referral(referral, self.reporter_id, self.jurisdiction, now_ms())

    def submit(self, referral: Mapping[str, Any]) -> str:
        """Validate and queue one referral; return its referral_id (delivery is confirmed by flush)."""
        ref = self.prepare(referral)
        self.send(ref)
        return ref["referral_id"]

    def send(self, ref: Referral) -> None:
        """Queue an already prepared referral (waits for room when the local queue is full)."""
        value = self.codec.encode("Referral", ref)
        topic = self.urgent_topic if claims_urgency(ref) else self.topic
        while True:
            try:
                self._producer.produce(topic, value=value, key=ref["referral_id"].encode(),
                                       on_delivery=self._on_delivery)
                break
            except BufferError:
                self._producer.poll(0.1)
        self.summary.pending += 1
        self._producer.poll(0)

    def _on_delivery(self, err: KafkaError | None, msg: Message) -> None:
        self.summary.pending -= 1
        if err is None:
            self.summary.sent += 1
            return
        key = msg.key()
        referral_id = key.decode(errors="replace") if isinstance(key, bytes) else "?"
        self.summary.failed.append((referral_id, err.str()))
        log.warning("delivery failed reporter=%s referral=%s error=%s", self.reporter_id, referral_id, err.str())

    def flush(self, timeout: float = 30.0) -> DeliverySummary:
        """Wait up to `timeout` s for every queued referral; the running totals since creation."""
        self._producer.flush(timeout)
        return self.summary

    def poll(self, timeout: float = 0.0) -> None:
        """Serve delivery reports (a long-running sender calls this now and then)."""
        self._producer.poll(timeout)

    def close(self, timeout: float = 30.0) -> DeliverySummary:
        """Flush before the process ends, so nothing queued is lost silently."""
        return self.flush(timeout)

    def __enter__(self) -> Reporter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


__all__ = ["DeliverySummary", "ReferralError", "Reporter"]
