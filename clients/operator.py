"""The operator client: take referrals from the lanes by strict priority, decide, publish decisions.

    client = OperatorClient(Settings.from_env(), "google", handler=None)
    def handler(referral):                       # a decoded RoutedReferral (dict, times in ms)
        client.remove(referral["referral_id"], ref="TICKET-1")
    client.handler = handler
    client.run(max_messages=100)                 # or run() until stop() / SIGTERM
    client.close()

A referral's offset is committed only after the handler returned (and the decisions it
published were confirmed by the broker); a handler that raises gets the same referral again,
after a back-off, and nothing after it is handed out meanwhile. While the broker is away (a
restart, a network cut) the client keeps running: decisions wait in the producer (librdkafka
retries them for `message.timeout.ms`, 5 minutes by default), offsets wait for them, and both
go out when the broker is back. A consumer the restart left outside its group
(streams/groupwatch.py) is replaced after `groupwatch.REJOIN_LIMIT_S`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition
from confluent_kafka.admin import AdminClient

from agents.logic.validate import check_decision
from clients.kafka import now_ms, producer_config
from clients.lanes import Key, LaneGate, locate
from clients.parsing import ACTIONS
from streams.codec import default_codec
from streams.config import Settings
from streams.errors import RejectedError, SignalementError
from streams.groupwatch import GroupWatch
from streams.policy import PRIORITIES
from streams.records import OperatorDecision
from streams.topics import Topics

log = logging.getLogger("signalement.clients.operator")
Handler = Callable[[dict[str, Any]], Any]
CONSUMER_DEFAULTS: dict[str, Any] = {
    "enable.auto.commit": False,
    "enable.auto.offset.store": False,
    "auto.offset.reset": "earliest",
    "enable.partition.eof": True,
    "isolation.level": "read_committed",
    "queued.min.messages": 10_000,       # a short local queue: put-back messages cost little
    "queued.max.messages.kbytes": 8192,
    "fetch.queue.backoff.ms": 10,        # default 1 s: a higher lane would wait that long after a full queue
    "fetch.wait.max.ms": 10,             # 100: criticals behind a busy lower lane waited up to 0.7 s (bench.operator_lanes)
}
MAX_BACKOFF_S = 5.0
COMMIT_INTERVAL_S = 1.0
COMMIT_WAIT_S = 1.0  # a commit waits this long for the broker to confirm decisions, then tries again later
REVOKE_WAIT_S = 30.0  # ... and this long when its partitions are taken away (after that: handed out again)


class DecisionError(SignalementError):
    """A decision the pipeline would reject, or one the broker did not confirm."""


class OperatorClient:
    """One operator's consumer of its three lanes and producer of its decisions."""

    def __init__(self, settings: Settings, operator_id: str, handler: Handler | None,
                 topics: Topics | None = None, group_id: str | None = None, commit_every: int = 1,
                 poll_timeout: float = 0.1, check_interval: float = 0.05, **consumer_extra: Any) -> None:
        self.operator_id = operator_id
        self.handler = handler
        self.topics = topics or Topics(prefix=settings.topic_prefix, partitions=settings.partitions)
        self.lane_topics = [self.topics.lane(operator_id, p) for p in PRIORITIES]
        self.decisions_topic = self.topics.decisions(operator_id)
        self.group_id = group_id or f"{self.topics.prefix}operator-{operator_id}"
        self.commit_every, self.poll_timeout = max(1, commit_every), poll_timeout
        self.codec = default_codec()
        self._conf = settings.confluent(**{**CONSUMER_DEFAULTS, "group.id": self.group_id, **consumer_extra})
        self._consumer = Consumer(self._conf)
        self._producer = Producer(producer_config(settings))
        self._admin = AdminClient(settings.confluent())  # type: ignore[arg-type]
        self.gate = LaneGate(self._consumer, self.lane_topics, self._admin, check_interval)
        self._to_commit: dict[Key, int] = {}
        self._uncommitted, self._committed_at = 0, time.monotonic()
        self._produced = 0
        self._failed: list[str] = []
        self._failures = 0
        self._deferred_since: float | None = None  # commits wait for unconfirmed decisions since then
        self._stop = False
        self.handled = 0
        self.watch = GroupWatch(f"operator {operator_id} ({self.group_id})")
        self._consumer.subscribe(self.lane_topics, on_assign=self._on_assign, on_revoke=self._on_revoke)

    def _replace_consumer(self) -> None:
        """A new consumer instead of one stranded outside its group (its partitions were revoked already)."""
        try:
            self._consumer.close()
        except Exception as exc:  # it is being dropped: a failure to leave the group changes nothing
            log.warning("closing the stranded consumer operator=%s: %s", self.operator_id, exc)
        self._to_commit.clear()  # offsets of partitions revoked with the lost membership: handed out again
        self.gate.revoked([TopicPartition(t, p) for t, p in list(self.gate.tps)])
        self._consumer = Consumer(self._conf)
        self.gate.consumer = self._consumer
        self._consumer.subscribe(self.lane_topics, on_assign=self._on_assign, on_revoke=self._on_revoke)
        self.watch.renewed()

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        consumer.assign(self.gate.start_offsets(partitions))
        self.gate.assigned()
        log.info("assigned operator=%s partitions=%d active_lanes=%d", self.operator_id, len(partitions),
                 self.gate.active)

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        if not self.commit(REVOKE_WAIT_S):  # not confirmed: their new owner hands them out again (at least once)
            for tp in partitions:
                self._to_commit.pop((tp.topic, tp.partition), None)
        self.gate.revoked(partitions)
        log.info("revoked operator=%s partitions=%d", self.operator_id, len(partitions))

    def stop(self) -> None:
        """Make run() return after the current referral (safe from the handler or a signal handler)."""
        self._stop = True

    def run(self, max_messages: int | None = None, timeout: float | None = None,
            idle_timeout: float | None = None) -> int:
        """Hand referrals to the handler until stop(), `max_messages`, `timeout` s, or `idle_timeout` s idle."""
        self._stop = False
        start = last = time.monotonic()
        count = 0
        while not self._stop and (max_messages is None or count < max_messages):
            now = time.monotonic()
            if (timeout is not None and now - start >= timeout) or (idle_timeout is not None and now - last >= idle_timeout):
                break
            if self.watch.check(self._consumer):
                self._replace_consumer()
            self.gate.tick()
            msg = self._consumer.poll(self.poll_timeout)
            if msg is None:
                self.commit()
                self.gate.replan()
                continue
            if msg.error():
                self._on_error(msg)
                continue
            if self.gate.admit(msg) and self._handle(msg):
                count += 1
                last = time.monotonic()
        self.commit()
        return count

    def _on_error(self, msg: Message) -> None:
        err = msg.error()
        if err is None:
            return
        if err.code() == KafkaError._PARTITION_EOF:
            self.gate.end_of_partition(*locate(msg))
        elif err.fatal():
            raise KafkaException(err)
        elif err.code() == KafkaError.UNKNOWN_TOPIC_OR_PART:
            log.warning("lane missing operator=%s error=%s (create the topics: `signalement topics create`)",
                        self.operator_id, err.str())
        else:
            log.warning("consumer error operator=%s error=%s", self.operator_id, err.str())

    def _handle(self, msg: Message) -> bool:
        """Decode, call the handler, then mark for commit; on a handler error put the referral back."""
        key, offset = locate(msg)
        try:
            referral = self.codec.decode(msg.value(), "RoutedReferral")
        except RejectedError as exc:  # cannot be acted upon: logged, then passed over
            log.error("undecodable lane message topic=%s partition=%d offset=%d error=%s", *key, offset, exc)
            self._done(key, offset)
            return False
        try:
            if self.handler is not None:
                self.handler(referral)
        except Exception as exc:  # the handler is the user's code: any failure means "not processed"
            self._failures += 1
            log.warning("handler failed operator=%s referral=%s attempt=%d error=%r", self.operator_id,
                        referral.get("referral_id"), self._failures, exc)
            self.commit()
            self.gate.rewind(key, offset)
            time.sleep(min(MAX_BACKOFF_S, 0.05 * 2 ** (self._failures - 1)))
            return False
        self._failures = 0
        self._done(key, offset)
        self.handled += 1
        return True

    def _done(self, key: Key, offset: int) -> None:
        self.gate.handled(key, offset)
        self._to_commit[key] = offset + 1
        self._uncommitted += 1
        if self._uncommitted >= self.commit_every or time.monotonic() - self._committed_at >= COMMIT_INTERVAL_S:
            self.commit()

    def commit(self, wait: float = COMMIT_WAIT_S) -> bool:
        """Commit the handled offsets (synchronously) once the broker confirmed every decision published so far.

        Decisions still unconfirmed after `wait` s are not an error: the broker is away or restarting,
        the producer keeps retrying them, and the offsets stay for a later commit (run() calls this
        again at least every COMMIT_INTERVAL_S). This used to wait 30 s and then raise DecisionError
        out of run(), so a broker restart of 30 s or more stopped the client (the broker-restart
        test, tests/integration/test_broker_restart.py). A decision the producer gave up on still
        raises DecisionError. True if nothing is left to commit.
        """
        if not self._to_commit:
            return True
        if not self._decisions_confirmed(wait):
            self._uncommitted, self._committed_at = 0, time.monotonic()  # the next try, as for a commit
            return False
        offsets = [TopicPartition(t, p, o) for (t, p), o in self._to_commit.items()]
        self._to_commit.clear()
        self._uncommitted, self._committed_at = 0, time.monotonic()
        try:
            self._consumer.commit(offsets=offsets, asynchronous=False)
        except KafkaException as exc:
            log.warning("commit failed operator=%s offsets=%d error=%s", self.operator_id, len(offsets), exc)
        return True

    def _decisions_confirmed(self, wait: float) -> bool:
        """Wait up to `wait` s for the decisions in flight; False if some are still unconfirmed.

        Raises DecisionError if the producer reported a decision as not delivered."""
        if self._produced:
            self._produced = self._producer.flush(wait)
        if self._failed:
            failed, self._failed = self._failed, []
            raise DecisionError(f"{len(failed)} decision(s) not delivered: {'; '.join(failed[:5])}")
        if self._produced:
            if self._deferred_since is None:
                self._deferred_since = time.monotonic()
                log.warning("broker not confirming decisions operator=%s unconfirmed=%d: offsets wait for them",
                            self.operator_id, self._produced)
            return False
        if self._deferred_since is not None:
            log.info("decisions confirmed again operator=%s after %.1f s", self.operator_id,
                     time.monotonic() - self._deferred_since)
            self._deferred_since = None
        return True

    # -- decisions ---------------------------------------------------------------------------
    def decide(self, referral_id: str, action: str, reason: str | None = None, ref: str | None = None) -> OperatorDecision:
        """Publish one decision to operator.<id>.decisions, keyed by referral_id, acted_at = now."""
        decision: OperatorDecision = {"referral_id": referral_id, "operator_id": self.operator_id, "action": action,
                                      "acted_at": now_ms(), "reason": reason, "operator_ref": ref}
        if action not in ACTIONS:
            raise DecisionError(f"action {action!r} is not one of {', '.join(ACTIONS)}")
        try:
            check_decision(decision, self.operator_id, decision["acted_at"])
        except RejectedError as exc:
            raise DecisionError(exc.message) from None
        value = self.codec.encode("OperatorDecision", decision)
        while True:
            try:
                self._producer.produce(self.decisions_topic, value=value, key=referral_id.encode(),
                                       on_delivery=self._on_delivery)
                break
            except BufferError:
                self._producer.poll(0.1)
        self._produced += 1
        self._producer.poll(0)
        return decision

    def _on_delivery(self, err: KafkaError | None, msg: Message) -> None:
        if err is not None:
            self._failed.append(f"{msg.key()!r}: {err.str()}")

    def acknowledge(self, referral_id: str, ref: str | None = None) -> OperatorDecision:
        """Acknowledged (not final): it meets the acknowledgement deadline, not the decision's."""
        return self.decide(referral_id, "ACKNOWLEDGED", None, ref)

    def remove(self, referral_id: str, ref: str | None = None, reason: str | None = None) -> OperatorDecision:
        """Removed: a final decision."""
        return self.decide(referral_id, "REMOVED", reason, ref)

    def disable(self, referral_id: str, ref: str | None = None, reason: str | None = None) -> OperatorDecision:
        """Access disabled (e.g. geo-blocked in the requesting state): a final decision."""
        return self.decide(referral_id, "DISABLED", reason, ref)

    def refuse(self, referral_id: str, reason: str, ref: str | None = None) -> OperatorDecision:
        """Refused, with the reason the reporter needs to contest it: a final decision."""
        if not reason or not reason.strip():
            raise DecisionError("a refusal needs a reason")
        return self.decide(referral_id, "REFUSED", reason, ref)

    def already_unavailable(self, referral_id: str, ref: str | None = None) -> OperatorDecision:
        """The content was gone already: a final decision."""
        return self.decide(referral_id, "ALREADY_UNAVAILABLE", None, ref)

    def flush_decisions(self, timeout: float = 30.0) -> None:
        """Wait for the broker to confirm every decision; raise DecisionError if one was lost or is still
        unconfirmed after `timeout` s."""
        if not self._decisions_confirmed(timeout):
            raise DecisionError(f"{self._produced} decision(s) not confirmed by the broker within {timeout} s")

    def backlog(self) -> dict[str, int]:
        """Messages waiting per priority (from cached watermarks; for display)."""
        return {p: self.gate.lane_backlog(i) for i, p in enumerate(PRIORITIES)}

    def close(self) -> None:
        """Wait for the decisions (DecisionError if one is lost or unconfirmed after 30 s: nothing is committed
        then), commit what was handled, leave the group."""
        try:
            self.flush_decisions()
            self.commit()
        finally:
            self._consumer.close()

    def __enter__(self) -> OperatorClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
