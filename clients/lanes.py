"""Strict priority over an operator's three lanes, on one confluent-kafka Consumer.

The consumer is assigned every partition of the critical, high and standard lanes. Only a
prefix of the lanes is fetched at a time (the others are paused): the lanes down to the first
one with a backlog. Before a message is handed out, the gate checks that no higher lane has a
backlog (high watermark beyond the next offset to handle, from the watermarks librdkafka
caches from every fetch response); if one has, the message is put back (seek to its offset),
its lane and those below are paused, and the higher lane is served first.

Offsets are tracked here, not taken from librdkafka's position: `pos` is the next offset to
hand out per partition, so a message fetched but put back is never skipped.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from functools import partial
from typing import Any

from confluent_kafka import OFFSET_INVALID, Consumer, IsolationLevel, KafkaError, KafkaException, Message, TopicPartition
from confluent_kafka.admin import AdminClient, OffsetSpec

log = logging.getLogger("signalement.clients.lanes")
Key = tuple[str, int]
BROKER_TIMEOUT = 10.0
RETRIED = {KafkaError.NOT_LEADER_FOR_PARTITION, KafkaError.LEADER_NOT_AVAILABLE, KafkaError.UNKNOWN_TOPIC_OR_PART,
           KafkaError._TIMED_OUT}


def _retrying(call: Callable[[], Any], attempts: int = 50) -> Any:
    """A broker query retried while a new topic's leadership settles (NOT_LEADER, LEADER_NOT_AVAILABLE)."""
    for attempt in range(attempts):
        try:
            return call()
        except KafkaException as exc:
            if attempt == attempts - 1 or (not exc.args[0].retriable() and exc.args[0].code() not in RETRIED):
                raise
            log.info("broker not ready, retrying error=%s", exc.args[0].str())
            time.sleep(0.2)
    raise AssertionError("unreachable")


class Watermarks:
    """The brokers' high watermarks of some partitions, asked every `interval` s without blocking.

    librdkafka shares one queue threshold across the partitions of a consumer: while that queue is
    full of a lower lane's prefetched messages, a higher lane is not fetched, so its cached
    watermark goes stale. This asks the broker directly (one ListOffsets request, answered on the
    admin client's own thread), so a new critical referral is seen within `interval`.
    """

    def __init__(self, admin: AdminClient | None, interval: float) -> None:
        self.admin, self.interval = admin, interval
        self.values: dict[Key, int] = {}
        self._pending: dict[TopicPartition, Future[Any]] = {}
        self._asked_at = 0.0

    def tick(self, keys: list[Key]) -> None:
        """Collect the last answer if it came; ask again if `interval` has passed."""
        if self._pending and all(f.done() for f in self._pending.values()):
            for tp, future in self._pending.items():
                try:
                    self.values[(tp.topic, tp.partition)] = future.result().offset
                except KafkaException as exc:
                    log.debug("list_offsets failed topic=%s partition=%d error=%s", tp.topic, tp.partition, exc)
            self._pending = {}
        if self.admin is None or self._pending or not keys or time.monotonic() - self._asked_at < self.interval:
            return
        self._asked_at = time.monotonic()
        request = {TopicPartition(t, p): OffsetSpec.latest() for t, p in keys}
        try:
            self._pending = self.admin.list_offsets(request, isolation_level=IsolationLevel.READ_COMMITTED,
                                                    request_timeout=BROKER_TIMEOUT)
        except KafkaException as exc:
            log.warning("list_offsets not sent error=%s", exc)


def locate(msg: Message) -> tuple[Key, int]:
    """((topic, partition), offset) of a consumed message (never None for a message, only for errors)."""
    return (msg.topic() or "", msg.partition() or 0), msg.offset() or 0


class LaneGate:
    """Decides which lanes may deliver, and whether a fetched message may be handled now."""

    def __init__(self, consumer: Consumer, lane_topics: Sequence[str], admin: AdminClient | None = None,
                 check_interval: float = 0.05) -> None:
        self.consumer = consumer
        self.watermarks = Watermarks(admin, check_interval)
        self.rank = {topic: i for i, topic in enumerate(lane_topics)}
        self.lanes = len(lane_topics)
        self.tps: dict[Key, TopicPartition] = {}
        self.pos: dict[Key, int] = {}
        self.hwm: dict[Key, int] = {}
        self.rewound: dict[Key, int] = {}
        self.active = self.lanes  # lanes [0, active) are fetched, the others paused

    def _of_lane(self, lane: int) -> list[Key]:
        return [k for k in self.tps if self.rank[k[0]] == lane]

    def start_offsets(self, partitions: list[TopicPartition]) -> list[TopicPartition]:
        """Where each newly assigned partition starts: its committed offset, else the earliest."""
        committed = _retrying(lambda: self.consumer.committed(partitions, timeout=BROKER_TIMEOUT))
        out = []
        for tp in committed:
            key = (tp.topic, tp.partition)
            low, high = _retrying(partial(self.consumer.get_watermark_offsets, tp, BROKER_TIMEOUT, False))
            start = tp.offset if tp.offset >= 0 else low
            self.tps[key] = TopicPartition(tp.topic, tp.partition)
            self.pos[key], self.hwm[key] = max(start, low), high
            out.append(TopicPartition(tp.topic, tp.partition, self.pos[key]))
        return out

    def assigned(self) -> None:
        """After assign(): pause everything below the first lane with a backlog."""
        self.active = self.lanes
        self._apply(self._first_backlog(range(self.lanes), fresh=False), force=True)

    def revoked(self, partitions: list[TopicPartition]) -> None:
        """Forget revoked partitions: another consumer of the group owns them now."""
        for tp in partitions:
            key = (tp.topic, tp.partition)
            for table in (self.tps, self.pos, self.hwm, self.rewound, self.watermarks.values):
                table.pop(key, None)  # type: ignore[attr-defined]

    def backlog(self, key: Key, fresh: bool = False) -> int:
        """Messages of a partition not handed out yet, from the cached (or the broker's) watermark."""
        tp = self.tps[key]
        try:
            _, high = self.consumer.get_watermark_offsets(tp, timeout=BROKER_TIMEOUT, cached=not fresh)
        except KafkaException as exc:
            log.warning("watermark unavailable topic=%s partition=%d error=%s", key[0], key[1], exc)
            high = OFFSET_INVALID
        high = max(high, self.watermarks.values.get(key, OFFSET_INVALID))
        if high >= 0:
            self.hwm[key] = high
        return max(0, self.hwm.get(key, 0) - self.pos[key])

    def tick(self) -> None:
        """Keep the higher lanes' watermarks fresh while a lower lane has a backlog (idle: nothing to ask)."""
        served = next((lane for lane in range(self.active - 1, 0, -1) if self.lane_backlog(lane)), 0)
        self.watermarks.tick([k for k in self.tps if self.rank[k[0]] < served])

    def lane_backlog(self, lane: int, fresh: bool = False) -> int:
        """Messages waiting in one lane's assigned partitions."""
        return sum(self.backlog(k, fresh) for k in self._of_lane(lane))

    def _first_backlog(self, lanes: range, fresh: bool) -> int | None:
        for lane in lanes:
            if self.lane_backlog(lane, fresh):
                return lane
        return None

    def admit(self, msg: Message) -> bool:
        """True if the message is the next to handle; else it is put back for later."""
        key, offset = locate(msg)
        if key not in self.pos:
            return False
        if key in self.rewound:
            if offset != self.rewound[key]:
                return False  # fetched before the seek back: it will come again in order
            del self.rewound[key]
        if offset < self.pos[key]:
            return False
        lane = self.rank[key[0]]
        if lane >= self.active:  # fetched just before its lane was paused
            self.rewind(key, offset)
            return False
        higher = self._first_backlog(range(lane), fresh=False)
        if higher is not None:
            self.rewind(key, offset)
            self._apply(higher)
            return False
        return True

    def handled(self, key: Key, offset: int) -> None:
        """The message was processed: the next one of its partition may go."""
        self.pos[key] = offset + 1

    def end_of_partition(self, key: Key, offset: int) -> None:
        """At the partition's end: skip offsets that hold no message (transaction markers)."""
        if key in self.pos and key not in self.rewound:
            self.pos[key] = max(self.pos[key], offset)

    def rewind(self, key: Key, offset: int) -> None:
        """Fetch the partition again from `offset`, which will be handed out next."""
        self.pos[key] = offset
        self.rewound[key] = offset
        self._seek(key)

    def _seek(self, key: Key) -> None:
        try:
            self.consumer.seek(TopicPartition(key[0], key[1], self.pos[key]))
        except KafkaException as exc:
            log.warning("seek failed topic=%s partition=%d offset=%d error=%s", key[0], key[1], self.pos[key], exc)

    def replan(self) -> None:
        """When the fetched lanes have drained, open the next lane with a backlog (or every lane)."""
        if self._first_backlog(range(self.active), fresh=False) is not None:
            return
        if self.active < self.lanes:
            lane = self._first_backlog(range(self.active, self.lanes), fresh=True)
            self._apply(lane if lane is not None else self.lanes - 1)

    def _apply(self, top: int | None, force: bool = False) -> None:
        """Fetch lanes 0..top, pause the others (putting their partitions back at `pos`)."""
        active = self.lanes if top is None else top + 1
        if active == self.active and not force:
            return
        pause = [k for k in self.tps if self.rank[k[0]] >= active and (force or self.rank[k[0]] < self.active)]
        resume = [k for k in self.tps if self.rank[k[0]] < active and (force or self.rank[k[0]] >= self.active)]
        if pause:
            self.consumer.pause([self.tps[k] for k in pause])
            if not force:  # a fresh assignment already starts at `pos`
                for key in pause:
                    self._seek(key)
        if resume:
            self.consumer.resume([self.tps[k] for k in resume])
        log.debug("lanes active=%d of %d paused=%d resumed=%d", active, self.lanes, len(pause), len(resume))
        self.active = active
