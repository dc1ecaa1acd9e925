"""Faust's flow control at a rebalance or a stop: events dropped from the agents' queues.

At each revocation (and at shutdown) Faust clears every agent's queue, then waits until every
message it delivered is acknowledged (`Consumer.wait_empty`). A dropped event is normally
forgotten with its message (the consumer tracks messages in a WeakSet). A message read by several
agents (the ticks: routing, reactions and windows) is shared: when one agent has already handled
it and another agent's copy is dropped, the handled copy keeps the message alive with one
reference never acknowledged, and the rebalance waits for it until it times out (seen by
tests/integration/test_rebalance.py; docs/reliability.md, "Rebalances").

`release_on_clear` acknowledges the dropped copies of topics whose events may be skipped: a tick
skipped or repeated is harmless (every tick-driven step is idempotent). Events of other topics
are left as Faust leaves them: not acknowledged, handled again by the partition's next owner.

NOT INSTALLED: in the SIGKILL test (tests/integration/test_crash.py) every run where it released
ticks at a restart's rebalance (2 of 2) ended with the routing agent stalled a few restarts later,
and the run where it released none passed; the cause is not found yet (docs/reliability.md).

Installed: `patch_stale_fetch` (a fetch that spans a rebalance is not handed over) and
`patch_quiet_seek` (a seek to the committed offsets never overlaps a hand-over), both found by
the integration tests that kill and move workers; and `patch_urgent_first` (the records of the
urgent topics are handed over before the others', then the tables' changelog records), for the
urgent path (docs/reporters.md). Every Faust app of ours (`streams.app.build_app`) also gets
`patch_fetch_wait` (a fetch waits 100 ms, not 1.5 s, for idle partitions).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

log = logging.getLogger("signalement.flow")


def release_on_clear(app: Any, topics: Iterable[str]) -> None:
    """Make `app.flow_control.clear()` acknowledge the queued events of `topics` it drops."""
    skippable = frozenset(topics)
    flow = app.flow_control
    clear = flow.clear

    def clear_and_release() -> None:
        released = 0
        for queue in list(flow._queues):
            released += release(getattr(queue, "_queue", ()), skippable)
        if released:
            log.info("released %d queued events of %s dropped by flow control", released, ", ".join(sorted(skippable)))
        clear()

    flow.clear = clear_and_release


def release(queued: Iterable[Any], skippable: frozenset[str]) -> int:
    """Acknowledge the events in `queued` whose message is from a topic of `skippable`."""
    released = 0
    for event in list(queued):
        message = getattr(event, "message", None)
        if message is not None and message.topic in skippable:
            event.ack()
            released += 1
    return released


# How long the broker may hold the worker's fetch when its partitions have no new records. Faust
# fixes 1,500 ms; aiokafka sends a broker one fetch at a time, and once records have waited 100 ms
# for their agents (`prefetch_backoff`) it sends that fetch for the partitions holding none, which
# behind a backlog are the idle ones: the busy partitions then waited up to 1.5 s for their next
# fetch. Rebuilding a table from its changelog stood still ~1.3 s after every ~5,500 records.
FETCH_MAX_WAIT_MS = 100


def patch_fetch_wait() -> None:
    """The worker's consumer with a fetch wait of FETCH_MAX_WAIT_MS instead of Faust's fixed 1,500 ms."""
    from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread

    if getattr(AIOKafkaConsumerThread._create_worker_consumer, "_signalement", False):
        return
    original = AIOKafkaConsumerThread._create_worker_consumer

    def _create_worker_consumer(self: Any, transport: Any) -> Any:
        consumer = original(self, transport)
        consumer._fetch_max_wait_ms = FETCH_MAX_WAIT_MS
        return consumer

    _create_worker_consumer._signalement = True  # type: ignore[attr-defined]
    AIOKafkaConsumerThread._create_worker_consumer = _create_worker_consumer  # type: ignore[method-assign]


def patch_stale_fetch() -> None:
    """Faust's `Consumer.getmany`, with records fetched across a rebalance dropped and the
    partitions sought back to their committed offsets.

    Faust 0.15.3 notes the consumer generation *after* a fetch returns and delivers the records
    if it has not changed since. A fetch begun before a rebalance and returned after it carries
    records of the old assignment, delivered as if they were new; the fetcher then notes their
    offsets as read and drops the same records when they arrive again from the committed offset
    (`_drain_messages`: "DROPPED MESSAGE ROFF"), except the last one. Found by
    tests/integration/test_rebalance.py: after a join/leave/join, two consecutive reports of each
    partition were never handled and one per partition was handled twice (docs/reliability.md).
    Here the generation is noted before the fetch; if it changed, nothing of the new generation
    has been delivered yet by this fetcher, so seeking every partition to its committed offset
    (as Faust does after each rebalance) loses nothing and repeats nothing.
    """
    from faust.transport.consumer import Consumer

    if getattr(Consumer.getmany, "_signalement", False):
        return

    async def getmany(self: Any, timeout: float) -> Any:
        between_fetches(self).set()  # the fetcher has handed over every record it fetched before
        generation_id = self.app.consumer_generation_id
        records, active_partitions = await self._wait_next_records(timeout)
        if records is None or self.should_stop:
            return
        if records and self.app.consumer_generation_id != generation_id:
            log.info("dropped %d records fetched across a rebalance (generation %s -> %s); back to the committed offsets",
                     sum(len(batch) for batch in records.values()), generation_id, self.app.consumer_generation_id)
            await rewind(self, records)
            await self.perform_seek()
            return
        if not self.flow_active:
            # as Faust: a fetch returned during a rebalance is dropped, the positions go back
            rewound = await rewind(self, records)
            try:
                await self.perform_seek()
            except Exception as exc:
                log.warning("seek to the committed offsets while the flow is stopped failed: %s (the %d partitions "
                            "of the dropped fetch still ours were put back where it began)", exc, rewound)
            return
        to_message = self._to_message
        between_fetches(self).clear()
        for tp, record in self.scheduler.iterate(records):
            if not self.flow_active or self.app.consumer_generation_id != generation_id:
                break  # a rebalance began: the rest is fetched again from the committed offsets
            if active_partitions is None or tp in active_partitions or tp in self._buffered_partitions:
                self.app.monitor.track_tp_end_offset(tp, self.highwater(tp))
                yield tp, to_message(tp, record)

    getmany._signalement = True  # type: ignore[attr-defined]
    Consumer.getmany = getmany  # type: ignore[method-assign]


def patch_quiet_seek() -> None:
    """Faust's `Consumer.perform_seek`, run with the flow stopped (see `perform_seek` below).

    Relies on `patch_stale_fetch`'s `getmany`, which tells when a fetched batch is over."""
    from faust.transport.consumer import Consumer

    if getattr(Consumer.perform_seek, "_signalement", False):
        return
    original_seek = Consumer.perform_seek

    async def perform_seek(self: Any) -> None:
        """Faust's seek to the committed offsets, with no record handed over while it runs.

        After a (re)start Faust resumes the stream partitions and *then* seeks them to their
        committed offsets (`Recovery.on_recovery_completed`): records fetched meanwhile are handed
        to the agents, and a hand-over blocked on a full agent queue finishes after the seek and
        notes its offset as read, so when the partition is fetched again from the committed offset
        the fetcher drops the records below it ("DROPPED MESSAGE ROFF"). Found by the kill test
        (`test_crash.py`, session 7): right after a restart behind a backlog, the first records of
        each partition were handled, the next one or two never, and the offsets moved past them
        (7 items never routed, 5 routing records never read by the reactions agent). Here the
        flow stops first, the fetcher's current batch is finished (a hand-over waiting on a queue
        gives up when the flow stops), and only then are the offsets read and sought; records
        handed over before are fetched again and absorbed (every stateful step ignores a repeat)."""
        if not self.flow_active:  # a rebalance stopped the flow already: as Faust
            await original_seek(self)
            return
        self.stop_flow()
        try:
            idle = between_fetches(self)
            try:
                await asyncio.wait_for(idle.wait(), timeout=30.0)
            except TimeoutError:
                log.warning("the fetcher did not finish its batch within 30 s; seeking anyway")
            await original_seek(self)
        finally:
            self.resume_flow()

    perform_seek._signalement = True  # type: ignore[attr-defined]
    Consumer.perform_seek = perform_seek  # type: ignore[method-assign]


async def rewind(consumer: Any, records: Mapping[Any, Sequence[Any]] | None) -> int:
    """Put each partition of a dropped fetch back at its first record, if it is still ours;
    returns how many were.

    Dropping a fetch is safe only if its records are fetched again. The seek to the committed
    offsets that follows seeks every partition of Faust's assignment and stops at the first one
    the consumer no longer has (IllegalStateError, mid-rebalance): the partitions after it kept
    their positions past the dropped records, which were never handled while later ones were,
    and committed (50 referrals, one fetch round, missing in 1 of 2 two-worker throughput runs,
    session 13). Here each partition is put back on its own; one that is no longer ours is left
    to its next owner, who starts from the committed offset."""
    rewound = 0
    for tp, batch in (records or {}).items():
        if not batch:
            continue
        try:
            await consumer.seek(tp, batch[0].offset)
        except Exception as exc:  # not ours any more
            log.debug("rewind %s: %s", tp, exc)
            continue
        rewound += 1
    return rewound


def between_fetches(consumer: Any) -> asyncio.Event:
    """Set while the consumer's fetcher holds no fetched record it has not handed over yet."""
    event = getattr(consumer, "_signalement_between_fetches", None)
    if event is None:
        event = consumer._signalement_between_fetches = asyncio.Event()
        event.set()
    return event


# Changelog records one fetch round hands over (recovery, standbys): they only go into the tables'
# buffers, so a round of them costs little, while rounds of MAX_POLL_RECORDS (50) made a fresh
# worker restore ~3,200 keys/s and a standby's changelog records take the live records' places.
CHANGELOG_ROUND = 2_000


def _changelog_topics(app: Any) -> frozenset[str]:
    """The app's table changelog topics (cached once its tables are known)."""
    known: frozenset[str] | None = getattr(app, "_signalement_changelogs", None)
    if known is None:
        found = frozenset(app.tables.changelog_topics)
        if not found:
            return found
        known = app._signalement_changelogs = found
    return known


def patch_urgent_first(app: Any, topics: Iterable[str]) -> None:
    """Each fetch round of `app`'s consumer hands over the records of `topics` first, if it holds any.

    One consumer feeds every agent, one batch at a time, and a hand-over waits while an agent's
    queue is full: behind a backlog a record waits for every record fetched before it, and aiokafka
    hands out partitions in the order it fetched them, a new record last. Measured in the crisis
    burst (bench.crisis): a removal order on its urgent topic, with agents of its own, still
    reached routing 13 s after it was sent, as late as one on the main topic. Here a round first
    takes only the urgent topics' records already fetched (aiokafka's `fetched_records` for those
    partitions, no wait), else what it would have taken; with the rounds bounded
    (`broker_max_poll_records`) an urgent record waits for one round at most. Strict priority: a
    flood on the urgent topics is served first, as the operators' lanes are.

    Then the tables' changelog records already fetched (a recovery, or the standbys' copies), in
    rounds of up to CHANGELOG_ROUND: they only fill the tables' buffers, and in rounds of 50 a
    standby's records took the live records' places."""
    from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread

    app._signalement_urgent_topics = frozenset(topics)
    if getattr(AIOKafkaConsumerThread._fetch_records, "_signalement", False):
        return
    original = AIOKafkaConsumerThread._fetch_records

    async def _fetch_records(self: Any, consumer: Any, active_partitions: Any, timeout: float | None = None,
                             max_records: int | None = None) -> Any:
        urgent_topics: frozenset[str] = getattr(self.app, "_signalement_urgent_topics", frozenset())
        changelogs = _changelog_topics(self.app)
        urgent, tables = set(), set()
        for tp in active_partitions or ():
            if tp.topic in urgent_topics:
                urgent.add(tp)
            elif tp.topic in changelogs:
                tables.add(tp)
        if (urgent or tables) and self.consumer.flow_active and not consumer._closed and not consumer._fetcher._closed:
            fetcher = consumer._fetcher
            for tps, most in ((urgent, max_records), (tables, CHANGELOG_ROUND)):
                if tps:
                    with fetcher._subscriptions.fetch_context():
                        records = await fetcher.fetched_records(tps, timeout=0, max_records=most)
                    if records:
                        return records
        return await original(self, consumer, active_partitions, timeout=timeout, max_records=max_records)

    _fetch_records._signalement = True  # type: ignore[attr-defined]
    AIOKafkaConsumerThread._fetch_records = _fetch_records  # type: ignore[method-assign]
