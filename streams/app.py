"""The Faust app and what every agent shares: settings, policy, registry, codec, topics.

Agents receive a `Pipeline` (bound-agent style) instead of importing globals, so tests can
build one per topic prefix and the logic stays testable without the app.
"""

from __future__ import annotations

import asyncio
import logging
import time
import weakref
from collections import Counter, defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

import faust
from faust.streams import _current_event, current_event  # the ContextVar Faust's stream iteration sets per event

from streams.appends import Appended, Straight
from streams.codec import Codec, default_codec
from streams.config import Settings
from streams.eos import (
    OUTBOX,
    STAGED,
    Outbox,
    PartitionTransactions,
    Staged,
    TransactionalTable,
    guarded_consumer,
    latest_writes,
    pace,
    send_refused,
    work_lock,
)
from streams.eos import install as install_transactions
from streams.errors import ConfigError
from streams.flow import patch_fetch_wait, patch_quiet_seek, patch_stale_fetch, patch_urgent_first
from streams.packs import Packer, units
from streams.policy import Policy
from streams.records import Rejection
from streams.registry import Registry
from streams.security import faust_credentials
from streams.topics import REJECTED_MAX_BYTES, Topics

log = logging.getLogger("signalement")
# Agents take events in batches (`stream.take_events`): up to BATCH, or what came within
# SIGNALEMENT_BATCH_WITHIN (Settings.batch_within),
# handled partition by partition (`Pipeline.each_partition`): one lock, one outbox flush and one ack
# round per partition group instead of per event. Measured alone it was within noise (Faust still
# iterates each event, docs/benchmarks.md); 10 ms of waiting at low load is small next to the 100 ms
# transaction commits of exactly-once.
BATCH = 500
# Records one fetch round hands to the agents (Faust's default: all it holds, thousands behind a
# backlog). Bounded, a round ends soon and the next starts with the urgent topics' records
# (streams.flow.patch_urgent_first): a removal order during a crisis burst reached the lane in
# 209 / 454 ms (p50 / p99) instead of 11.5 / 17.0 s (bench.crisis, docs/benchmarks.md). 50, not
# BATCH, since the internal topics carry packs of tens of records (streams/packs.py): 500 packs
# made a round of seconds (urgent p99 5.6 s; with 50: 0.96 s; 20: 0.82 s, at more CPU).
MAX_POLL_RECORDS = 50
# Faust's RocksDB defaults (3 x 64 MiB write buffers and a 2 GiB block cache per partition of
# each table: 5 tables x 4 partitions here) let memory grow to gigabytes; cap each database.
ROCKSDB_OPTIONS = {"write_buffer_size": 8 << 20, "max_write_buffer_number": 2,
                   "target_file_size_base": 16 << 20, "block_cache_size": 16 << 20,
                   "block_cache_compressed_size": 4 << 20}


# an event older than this (since its record's timestamp) means a backlog: no urgent commit for it
URGENT_MAX_AGE_S = 0.5
# a fresh report on an urgent topic allows urgent commits for this long, even behind a backlog
FAST_HOLD_S = 1.0
# an agent taking events older than this drains a backlog: periodic commits slow down (streams.eos.Pace)
BACKLOG_AGE_S = 2.0


# the packs of the unit of work running (Pipeline.work, Pipeline.send_packed)
PACKER: ContextVar[Packer | None] = ContextVar("signalement_packer", default=None)


def is_fresh(timestamp: float | None, now: float, max_age_s: float = URGENT_MAX_AGE_S) -> bool:
    """Whether a record stamped `timestamp` (seconds) is recent enough to deserve an urgent commit."""
    return timestamp is not None and now - timestamp <= max_age_s


def is_backlog(events: Sequence[Any], now: float) -> bool:
    """Whether an agent's batch comes from a backlog: its first event is older than BACKLOG_AGE_S."""
    stamp = events[0].message.timestamp if events else None
    return stamp is not None and not is_fresh(stamp, now, BACKLOG_AGE_S)


def now_ms() -> int:
    return time.time_ns() // 1_000_000


@contextmanager
def acting_for(event: Any) -> Iterator[None]:
    """Make `event` the current event while the block runs, as Faust's own stream iteration does, so
    table reads and writes go to its partition (and its changelog partition). For agents that take
    events in batches (`stream.take_events`) and handle them partition by partition."""
    token = _current_event.set(weakref.ref(event))
    try:
        yield
    finally:
        _current_event.reset(token)


def current_events(events: Sequence[Any], generation: int) -> list[Any]:
    """The events of a batch fetched under the consumer's current assignment (`generation`).

    `stream.take_events` keeps its buffer across a rebalance: an event fetched under the old
    assignment may belong to a partition that is another worker's now (its transactional
    producer is gone) or, if still ours, is fetched again from the committed offset (Faust seeks
    there after every assignment). Faust's own per-event iteration skips such events; here they
    are skipped too, and marked acknowledged without being counted (take_events acknowledges its
    whole batch afterwards: a stale event's offset must never become committable)."""
    kept = []
    for event in events:
        if event.message.generation_id == generation:
            kept.append(event)
        else:
            event.message.acked = True
    if len(kept) < len(events):
        log.info("skipped %d events of an earlier assignment (they are fetched again, here or elsewhere)",
                 len(events) - len(kept))
    return kept


def partition_groups(events: Sequence[Any]) -> list[list[Any]]:
    """Split a batch by source partition number, keeping each partition's order.

    All the pipeline's topics are co-partitioned (one assignor group, streams/topics.py), so one
    partition number is one unit of work: one transaction, one changelog partition per table."""
    groups: dict[int, list[Any]] = defaultdict(list)
    for event in events:
        groups[event.message.partition].append(event)
    return list(groups.values())


class RawSchema(faust.Schema):  # type: ignore[misc]
    """Keys and values as the bytes Kafka holds, for every topic the agents read.

    Faust's schema runs each message's key and value through its serializer registry (the "raw"
    codec returns them as they are) behind two try blocks; this makes the event from them
    directly. Sends keep the registry's `dumps` (the ticks' `Topic.send`)."""

    def __init__(self) -> None:
        super().__init__(key_type=bytes, value_type=bytes, key_serializer="raw", value_serializer="raw")

    def compile(self, app: Any, *, on_key_decode_error: Any = None, on_value_decode_error: Any = None,
                default_propagate: bool = False) -> Callable[..., Awaitable[Any]]:
        create_event = app.create_event

        async def decode(message: Any, *, propagate: bool = default_propagate) -> Any:
            return create_event(message.key, message.value, message.headers, message)

        return decode


@dataclass
class Pipeline:
    """Shared, read-mostly state of one worker: built once at start-up."""

    settings: Settings
    policy: Policy
    registry: Registry
    names: Topics
    codec: Codec
    app: faust.App
    counters: Counter[str] = field(default_factory=Counter)
    keeping_up: bool = True  # the last report intake took was recent (`arrived`)
    fast_until: float = 0.0  # monotonic time until which the urgent intake counts as keeping up (`arrived`)
    _topics: dict[str, Any] = field(default_factory=dict)
    _producer: Any = None
    _straight: Straight = field(default_factory=Straight)

    def topic(self, name: str) -> Any:
        """A raw-bytes Faust topic, one object per name."""
        if name not in self._topics:
            self._topics[name] = self.app.topic(name, schema=RawSchema(), partitions=self.settings.partitions)
        return self._topics[name]

    def source(self, *names: str) -> Any:
        """A raw-bytes Faust topic over several topics, for one agent to consume together."""
        return self.app.topic(*names, schema=RawSchema())

    def table(self, name: str) -> Any:
        """A bytes->bytes table on RocksDB, partitioned like the topics it is fed from."""
        return self.app.Table(name, default=None, key_type=bytes, value_type=bytes,
                              partitions=self.settings.partitions, options=dict(ROCKSDB_OPTIONS))

    @property
    def exactly_once(self) -> bool:
        return self.settings.guarantee == "exactly_once"

    @asynccontextmanager
    async def work(self, *events: Any) -> AsyncIterator[list[Any]]:
        """Handle `events` (of one partition) as one unit of work: no commit can split it.

        Yields the events to handle: those fetched under the consumer's current assignment,
        checked once the unit holds the lock (`current_events`: a rebalance may have come while
        the batch waited). Under exactly_once, table writes made in the block are sent into the
        partition's transaction at its end, and the events are acknowledged before a commit can
        run, so a transaction holds whole events with their offsets (streams/eos.py). Under
        at_least_once the block only orders commits after whole events.
        """
        async with work_lock(self.app):
            current = current_events(events, self.app.consumer_generation_id)
            box: Outbox = []
            token = OUTBOX.set(box) if self.exactly_once else None
            txns = self.app.consumer.transactions if self.exactly_once else None
            staged = Staged(txns.journal) if isinstance(txns, PartitionTransactions) else None
            staging = STAGED.set(staged)
            packer = Packer(self.settings.partitions)
            packing = PACKER.set(packer)
            try:
                yield current
            finally:
                PACKER.reset(packing)
                STAGED.reset(staging)
                if staged is not None:  # the unit's table writes, in RocksDB before any commit (streams.eos.Staged)
                    staged.flush()
                if token is not None:
                    OUTBOX.reset(token)
            for pack_topic, pack_partition, pack in packer.drain(self.codec):
                await self.send(pack_topic, None, pack, pack_partition)
            self.counters["packs"] += packer.packs
            self.counters["packed"] += packer.packed
            kept = latest_writes(box)
            self.counters["changelog_coalesced"] += len(box) - len(kept)
            for topic, key, value, partition, on_sent in kept:
                fut = await self.send(topic, key, value, partition)
                fut.add_done_callback(on_sent)
            for event in current:
                # a message other agents also read (the ticks) is left to Faust's count of readers
                if event.message.refcount <= 1:
                    event.ack()
                    if isinstance(txns, PartitionTransactions):
                        txns.handled_event(event.message.tp, event.message.offset)

    async def each_partition(self, events: Sequence[Any], handle: Callable[[Any], Awaitable[None]]) -> None:
        """Handle a batch: each partition's events in units of work (`work`) of at most BATCH records
        (a pack of an internal topic counts its records: streams.packs.units), in order, with the
        unit's last event current (so table writes and sends go to that partition)."""
        if self.exactly_once and is_backlog(events, time.time()):
            pace(self.app).saw_backlog()  # this agent drains a backlog: commits pace down (streams.eos.Pace)
        for group in partition_groups(events):
            for unit in units(group, self.codec, BATCH):
                with acting_for(unit[-1]):
                    async with self.work(*unit) as current:
                        for event in current:
                            await handle(event.message)

    def arrived(self, report: Any, fast: bool = False) -> None:
        """Intake took `report` (a record of reports.*): whether the pipeline keeps up is decided
        here, at its entry, by the report's age, and holds for every hop (`urgent`).

        `fast`: the report came on a reporter's urgent topic (Topics.reports_urgent), which has its
        own agents and passes the other reports' backlog: a fresh one there lets urgent commits
        happen for FAST_HOLD_S even while the rest of the pipeline is behind."""
        fresh = is_fresh(report.timestamp, time.time())
        if not fast:
            self.keeping_up = fresh
        elif fresh:
            self.fast_until = time.monotonic() + FAST_HOLD_S

    def urgent(self, priority: str) -> None:
        """A record of `priority` was just sent: under exactly_once, if the policy marks the
        priority urgent, its transaction commits now rather than at the next interval.

        Only while the pipeline keeps up (the last report intake took was at most
        URGENT_MAX_AGE_S old), or the urgent intake took a fresh report within FAST_HOLD_S:
        behind a backlog an urgent commit saves ~100 ms of a wait of seconds and costs the
        backlog (a 100,000-referral burst drained at half the rate when routing, whose own input
        stays fresh, committed at once for every critical); on the urgent path the wait is not
        seconds, and the commits are as many as the fresh urgent reports allow."""
        keeping_up = self.keeping_up or time.monotonic() < self.fast_until
        if priority in self.policy.urgent and self.exactly_once and keeping_up:
            txns = self.app.consumer.transactions
            if isinstance(txns, PartitionTransactions):
                event = current_event()  # the partition whose transaction the sends went to
                if event is not None:
                    txns.urgent(event.message.tp)

    async def send(self, topic: str, key: bytes | None, value: bytes | None, partition: int | None = None) -> Any:
        """Hand one record to the producer (delivered before the source offset is committed).

        Straight to the app's producer (the transaction manager under exactly_once), as
        `Topic.send` ends up doing: its FutureMessage, channel and sensor steps were ~10 % of the
        worker's time in the profile (docs/benchmarks.md); under at_least_once straight to its
        aiokafka producer (streams/appends.py). Failures are logged and counted, and no commit
        happens after one: the worker stops (`streams.eos.send_refused`).
        """
        producer = self._producer
        if producer is None:
            producer = self._producer = await self.app.maybe_start_producer()
        if self.exactly_once:
            fut = await producer.send(topic, key, value, partition, None, None)
        else:
            fut = await self._straight.send(producer._ensure_producer(), topic, key, value, partition)
        # a record appended to a batch fails with it: its batch's future serves (no closure per record)
        (fut.batch if type(fut) is Appended else fut).add_done_callback(self._delivered)
        return fut

    def send_packed(self, topic: str, key: bytes, value: bytes) -> None:
        """Send a record of an internal topic in a pack (streams/packs.py): with the unit of work's
        other records for the same partition, as one record, when the unit ends (`work`)."""
        packer = PACKER.get()
        if packer is None:
            raise RuntimeError("send_packed outside a unit of work (Pipeline.work)")
        packer.add(topic, key, value)

    def _delivered(self, fut: Any) -> None:
        exc = None if fut.cancelled() else fut.exception()
        if exc is not None:
            self.counters["send_failed"] += 1
            log.error("send failed: %s: %s", type(exc).__name__, exc)
            send_refused(self.app, exc)  # no commit after it (every send here is in a unit of work)

    async def reject(self, message: Any, code: str, error: str) -> None:
        """Dead-letter the original bytes with a precise reason; never raises on bad input."""
        rejection: Rejection = {
            "source_topic": message.topic, "source_partition": message.partition, "source_offset": message.offset,
            "key": message.key if isinstance(message.key, bytes) else None,
            "value": message.value if isinstance(message.value, bytes) else b"",
            "error_code": code, "error": error[:2048], "rejected_at": now_ms(),
        }
        self.counters["rejected"] += 1
        self.counters[f"rejected.{code}"] += 1
        log.info("rejected topic=%s partition=%s offset=%s code=%s error=%s",
                 message.topic, message.partition, message.offset, code, error[:200])
        await self.send(self.names.rejected, message.key if isinstance(message.key, bytes) else None,
                        self.codec.encode("Rejection", rejection))


# Seconds a produced batch lingers for more records. Faust's default is 0: every send became its own
# produce request (aiokafka's request building and socket writes were ~20 % of the worker's CPU).
# At-least-once: 5 ms, each hop's records are visible as soon as written. Exactly-once: 50 ms,
# records are visible only when their transaction commits and a commit sends every lingering batch
# first (aiokafka's flush_for_commit), so waiting longer costs no visibility and makes a tenth of
# the produce requests: -20 to -27 % CPU per referral (docs/benchmarks.md, "What was optimised", 10).
PRODUCER_LINGER_S = 0.005
PRODUCER_LINGER_EOS_S = 0.05
PRODUCER_BATCH_BYTES = 262_144
SESSION_TIMEOUT_S = 10.0


# aiokafka's transaction timeout: the broker aborts (and fences) a transaction open longer
TRANSACTION_TIMEOUT_S = 60.0


def producer_linger(settings: Settings) -> float:
    """Seconds a produced batch lingers: SIGNALEMENT_PRODUCER_LINGER, else the guarantee's default."""
    if settings.producer_linger >= 0:
        return settings.producer_linger
    return PRODUCER_LINGER_EOS_S if settings.guarantee == "exactly_once" else PRODUCER_LINGER_S


EVENT_LOOPS = ("uvloop", "asyncio")


def install_event_loop(settings: Settings) -> str:
    """Make SIGNALEMENT_EVENT_LOOP the process's asyncio loop, before a worker creates it.

    uvloop runs the same coroutines on libuv: the worker's scheduling, futures and sockets cost
    less (docs/benchmarks.md); asyncio's own loop is the fallback where uvloop is missing."""
    if settings.event_loop not in EVENT_LOOPS:
        raise ConfigError(f"SIGNALEMENT_EVENT_LOOP={settings.event_loop!r}: expected one of {', '.join(EVENT_LOOPS)}")
    if settings.event_loop == "uvloop":
        try:
            import uvloop
        except ImportError:
            log.warning("uvloop is not installed: the worker runs on asyncio's own event loop")
            return "asyncio"
        asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())
    return settings.event_loop


def build_app(settings: Settings) -> faust.App:
    if settings.guarantee == "exactly_once" and not 0 < settings.commit_interval <= TRANSACTION_TIMEOUT_S / 2:
        raise ConfigError(f"SIGNALEMENT_COMMIT_INTERVAL={settings.commit_interval:g}: under exactly_once it must be "
                          f"above 0 and at most {TRANSACTION_TIMEOUT_S / 2:g} s (the broker aborts a transaction "
                          f"open for {TRANSACTION_TIMEOUT_S:g} s)")
    if not 0 <= settings.backlog_commit_interval <= TRANSACTION_TIMEOUT_S / 2:
        raise ConfigError(f"SIGNALEMENT_BACKLOG_COMMIT_INTERVAL={settings.backlog_commit_interval:g}: it must be "
                          f"between 0 (off) and {TRANSACTION_TIMEOUT_S / 2:g} s")
    # Faust's consumer as the worker runs it, in the Faust ceiling too (bench.faust_passthrough)
    patch_fetch_wait()  # idle partitions' long poll held busy ones back up to 1.5 s
    app = faust.App(
        settings.app_id,
        broker=settings.kafka_url,
        broker_credentials=faust_credentials(settings),  # SCRAM when SIGNALEMENT_KAFKA_USER is set
        store="rocksdb://",
        datadir=str(settings.worker_dir),
        topic_partitions=settings.partitions,
        topic_replication_factor=1,
        key_serializer="raw",
        value_serializer="raw",
        consumer_auto_offset_reset="earliest",
        web_enabled=False,
        processing_guarantee=settings.guarantee,
        Table=TransactionalTable,  # changelog records in the event's transaction under exactly_once
        table_cleanup_interval=3600.0,
        table_standby_replicas=settings.standby_replicas,
        producer_max_request_size=REJECTED_MAX_BYTES,  # a dead letter carries a whole refused record
        producer_linger=producer_linger(settings),
        producer_max_batch_size=PRODUCER_BATCH_BYTES,
        # a killed worker's partitions wait for its session to expire before anyone resumes them:
        # 10 s instead of Faust's 60 s (heartbeats every 3 s; the broker's minimum is 6 s)
        broker_session_timeout=SESSION_TIMEOUT_S,
        broker_commit_interval=settings.commit_interval,
        broker_max_poll_records=MAX_POLL_RECORDS,
    )
    if settings.guarantee == "exactly_once":
        install_transactions(app, settings.confluent(), settings.urgent_commit_gap, settings.backlog_commit_interval)
    else:
        app.transport.Consumer = guarded_consumer(app.transport.Consumer)  # type: ignore[misc]
    return app


def build_pipeline(settings: Settings | None = None) -> Pipeline:
    settings = settings or Settings.from_env()
    registry = Registry.load(settings.reporters_path, settings.operators_path)
    names = Topics(prefix=settings.topic_prefix, partitions=settings.partitions)
    app = build_app(settings)
    patch_stale_fetch()  # a rebalance must not deliver records fetched before it (streams/flow.py)
    patch_quiet_seek()  # nor a seek to the committed offsets race with records being handed over
    # the urgent topics' records are handed to their agents first (docs/reporters.md)
    patch_urgent_first(app, [*names.intake_topics(registry.reporters)[1], names.dedup_urgent])
    return Pipeline(settings, Policy.load(settings.policy_path), registry, names, default_codec(), app)
