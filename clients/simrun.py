"""The simulation loop: reporters publishing, the crisis burst, operators deciding on schedule.

One thread does everything in turn (emit the referrals that are due, publish the decisions that
are due, let each operator client take what its lanes hold), so a seeded run sends the same
referrals in the same order every time.
"""

from __future__ import annotations

import contextlib
import logging
import random
import time
from collections import Counter
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING, Any

from confluent_kafka import Producer
from rich.console import Group
from rich.live import Live
from rich.table import Table

from clients.kafka import now_ms, producer_config
from clients.operator import DecisionError, OperatorClient
from clients.parsing import ReferralError
from clients.reporter import Reporter
from clients.simload import CrisisReport, crisis, crisis_referral, malformed, pick_reporter, referral
from clients.simmodel import Schedule, plan_reaction, profile_of, reaction_rng
from streams.codec import default_codec
from streams.config import Settings
from streams.errors import SignalementError
from streams.registry import Registry
from streams.topics import Topics

if TYPE_CHECKING:
    from clients.simulate import SimConfig

log = logging.getLogger("signalement.clients.simulate")
SLICE_S = 0.01  # how long each operator client polls per turn


@dataclass
class SimSummary:
    """What a simulation did: referrals sent per reporter, lanes read and decisions made per operator."""

    seed: int
    operators: tuple[str, ...] = ()
    sent: Counter[str] = field(default_factory=Counter)
    malformed: Counter[str] = field(default_factory=Counter)
    crisis: int = 0
    received: dict[str, Counter[str]] = field(default_factory=dict)
    decisions: dict[str, Counter[str]] = field(default_factory=dict)
    late: Counter[str] = field(default_factory=Counter)
    pending: int = 0
    delivery_failed: int = 0
    elapsed: float = 0.0

    def table(self) -> Group:
        """Two rich tables: reporters, then operators."""
        rep = Table(title=f"reporters (seed {self.seed}, {self.elapsed:.0f} s)")
        for col in ("reporter", "sent", "malformed"):
            rep.add_column(col, justify="left" if col == "reporter" else "right")
        for reporter in sorted(self.sent):
            rep.add_row(reporter, str(self.sent[reporter]), "")
        rep.add_row("total", str(sum(self.sent.values())), str(sum(self.malformed.values())), style="bold")
        ops = Table(title=f"operators: referrals by lane, decisions (crisis reports {self.crisis}, "
                          f"decisions left scheduled {self.pending})")
        for col in ("operator", "crit", "high", "std", "ack", "removed", "disabled", "refused", "gone", "late"):
            ops.add_column(col, justify="left" if col == "operator" else "right")
        for op in self.operators:
            got, dec = self.received.get(op, Counter()), self.decisions.get(op, Counter())
            ops.add_row(op, *(str(got[p]) for p in ("CRITICAL", "HIGH", "STANDARD")),
                        *(str(dec[a]) for a in ("ACKNOWLEDGED", "REMOVED", "DISABLED", "REFUSED", "ALREADY_UNAVAILABLE")),
                        str(self.late[op]))
        return Group(rep, ops)


class Simulation:
    """Reporter clients, a raw producer for the malformed records, and one OperatorClient per operator."""

    def __init__(self, settings: Settings, config: SimConfig, seed: int) -> None:
        self.config, self.seed = config, seed
        registry = Registry.load(settings.reporters_path, settings.operators_path)
        reporters = _known("reporter", config.reporters, registry.reporters)
        operators = _known("operator", config.operators, registry.operators)
        topics = config.topics or Topics(prefix=settings.topic_prefix, partitions=settings.partitions)
        self.topics, self.hosts, self.all_reporters = topics, sorted(registry.host_index()), sorted(registry.reporters)
        self.reporters = {r: Reporter(settings, r, topics) for r in reporters}
        self.raw = Producer(producer_config(settings))
        self.clients = {op: OperatorClient(settings, op, partial(self._on_referral, op), topics=topics,
                                           commit_every=200, poll_timeout=SLICE_S / 2) for op in operators}
        self.arrivals, self.content = random.Random(f"{seed}:arrivals"), random.Random(f"{seed}:content")
        self.crisis_rng = random.Random(f"{seed}:crisis")
        self.crisis = crisis(self.crisis_rng, config.crisis_size, reporters)
        self.digest = self.crisis_rng.randbytes(32).hex()
        self.schedule = Schedule()
        self.summary = SimSummary(seed, tuple(operators), received={op: Counter() for op in operators},
                                  decisions={op: Counter() for op in operators})
        self.deadlines: dict[tuple[str, str], int] = {}
        self.final: set[tuple[str, str]] = set()
        self.acked: set[tuple[str, str]] = set()

    def run(self) -> SimSummary:
        """Emit for `duration` s (plus `drain` s of deciding); Ctrl-C ends it early, cleanly."""
        cfg, start = self.config, time.monotonic()
        end, stop = start + cfg.duration, start + cfg.duration + cfg.drain
        next_at = start + self.arrivals.expovariate(cfg.rate)
        burst_at, burst_len = start + cfg.crisis_at * cfg.duration, cfg.crisis_span * cfg.duration
        burst: list[CrisisReport] = list(reversed(self.crisis))
        display = (Live(self.summary.table(), refresh_per_second=4, transient=True) if cfg.progress
                   else contextlib.nullcontext())
        with display as live:
            try:
                while (now := time.monotonic()) < stop:
                    while next_at <= min(now, end):
                        self._emit()
                        next_at += self.arrivals.expovariate(cfg.rate)
                    while burst and burst_at + burst[-1].at * burst_len <= now:
                        self._emit_crisis(burst.pop())
                    self._publish_due()
                    self._serve_operators()
                    self.summary.elapsed = now - start
                    if live is not None:
                        live.update(self.summary.table())
            except KeyboardInterrupt:
                log.info("simulation interrupted after %.1f s", time.monotonic() - start)
        self.summary.elapsed = time.monotonic() - start
        self.summary.pending = len(self.schedule)
        return self.summary

    def _emit(self) -> None:
        """One referral of the ordinary traffic (about malformed_share of them broken on purpose)."""
        rng = self.content
        reporter_id = pick_reporter(rng, list(self.reporters))
        raw = referral(rng, reporter_id, self.hosts, now_ms(), self.config.unknown_share)
        reporter = self.reporters[reporter_id]
        try:
            if rng.random() < self.config.malformed_share:
                other = rng.choice([r for r in self.all_reporters if r != reporter_id] or [reporter_id + "-x"])
                kind, bad = malformed(rng, dict(reporter.prepare(raw)), other)
                self._send_raw(reporter.topic, bad)
                self.summary.malformed[kind] += 1
                return
            reporter.submit(raw)
            self.summary.sent[reporter_id] += 1
        except ReferralError as exc:  # the generator's own bug: count it, keep going
            log.error("generated referral invalid reporter=%s error=%s", reporter_id, exc)

    def _send_raw(self, topic: str, record: dict[str, Any] | bytes) -> None:
        if isinstance(record, bytes):
            self.raw.produce(topic, value=record, key=None)
        else:
            self.raw.produce(topic, value=default_codec().encode("Referral", record), key=record["referral_id"].encode())
        self.raw.poll(0)

    def _emit_crisis(self, report: CrisisReport) -> None:
        raw = crisis_referral(self.crisis_rng, report, self.digest, now_ms())
        self.reporters[report.reporter_id].submit(raw)
        self.summary.sent[report.reporter_id] += 1
        self.summary.crisis += 1

    def _on_referral(self, operator_id: str, ref: dict[str, Any]) -> None:
        """Handler of a simulated operator: plan its reaction (an escalation gets a new, faster plan)."""
        key = (operator_id, ref["referral_id"])
        self.summary.received[operator_id][ref["priority"]] += 1
        first = key not in self.deadlines
        if key in self.final or not (first or ref.get("escalated")):
            return
        self.deadlines[key] = ref["decision_deadline"]
        rng = reaction_rng(self.seed, operator_id, ref["referral_id"] + ("" if first else ":escalated"))
        for planned in plan_reaction(rng, profile_of(operator_id), ref["referral_id"], ref["priority"],
                                     ref["routed_at"], self.config.speed):
            self.schedule.add(operator_id, planned)

    def _publish_due(self) -> None:
        now = now_ms()
        for operator_id, planned in self.schedule.due(now):
            key = (operator_id, planned.referral_id)
            if key in self.final or (planned.action == "ACKNOWLEDGED" and key in self.acked):
                continue
            (self.acked if planned.action == "ACKNOWLEDGED" else self.final).add(key)
            if planned.action != "ACKNOWLEDGED" and now > self.deadlines.get(key, now):
                self.summary.late[operator_id] += 1
            try:
                self.clients[operator_id].decide(planned.referral_id, planned.action, planned.reason)
            except DecisionError as exc:
                log.error("decision refused locally operator=%s referral=%s error=%s", *key, exc)
                continue
            self.summary.decisions[operator_id][planned.action] += 1

    def _serve_operators(self) -> None:
        if not self.clients:
            time.sleep(SLICE_S)
        for client in self.clients.values():
            client.run(max_messages=500, timeout=SLICE_S)

    def close(self) -> None:
        """Wait for every referral and decision to be confirmed; leave the consumer groups."""
        for reporter in self.reporters.values():
            self.summary.delivery_failed += len(reporter.flush(30).failed)
        self.raw.flush(30)
        for client in self.clients.values():
            try:
                client.close()
            except SignalementError as exc:
                log.error("operator client close failed operator=%s error=%s", client.operator_id, exc)


def _known(kind: str, chosen: tuple[str, ...] | None, registry: dict[str, Any]) -> list[str]:
    """The chosen ids (all of the registry when None), refusing ids the registry does not know."""
    ids = sorted(registry) if chosen is None else list(chosen)
    unknown = [i for i in ids if i not in registry]
    if unknown:
        raise SignalementError(f"unknown {kind}(s) {unknown}; the registry has {sorted(registry)}")
    return ids
