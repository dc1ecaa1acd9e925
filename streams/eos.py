"""Exactly-once processing: one Kafka transaction per source partition, holding that partition's
outputs, its table changelog records and its consumed offsets.

Faust 0.15.3's `processing_guarantee="exactly_once"` is not exactly-once as shipped; read in
`faust/transport/consumer.py` and `faust/tables/base.py`:

1. `TransactionManager.send` picks the transaction by the *destination* partition, so an event's
   outputs land in other partitions' transactions, committed one after the other: a kill between
   two commits keeps the offset of an event and loses the outputs it made (or the reverse).
2. Table changelog records go through `app.producer.send_soon`, outside any transaction: after a
   kill the table remembers events whose outputs were aborted, and their replay emits nothing.
3. A commit may run while an agent is half-way through an event (it awaits between two sends), so
   one transaction can hold the first half of an event's outputs and the next one the rest.
4. Sends from timers (the ticks) have no source partition and were put in a transaction anyway.
5. Table recovery takes each changelog's end from `last_stable_offset`, which aiokafka knows only
   after a fetch of that partition: right after a restart it is None, the end is taken as -1, and
   the worker either restores nothing or stops on a ConsistencyError. And a changelog written in
   transactions ends with a commit marker, never delivered to a consumer, so recovery waits for
   it until a 2 x 5 s timeout ("Aborted tx until highwater"). We give recovery the offset after
   the last *committed record* of each changelog (`last_records`): exact, and nothing to wait for.

Here every send made while an event is being handled goes to the transaction of the event's own
source partition (Kafka Streams' "task"); table writes are queued during the event and sent into
the same transaction before it is acknowledged; `Pipeline.work` holds `work_lock` for the whole
event, and commits take the same lock, so a transaction always holds whole events and the
offsets of exactly those events. Timer sends go out non-transactionally (a tick repeated or lost
is harmless: every tick-driven step is idempotent).

After a kill the local RocksDB holds the writes of the transactions the kill aborted. Wiping it
would cost a full restore from the changelogs (minutes for a million keys), so every table
write first saves the value it replaces in an undo journal (`UndoJournal`), forgotten when its
transaction commits. Before the next start, `restore_committed` puts the saved values back:
each table is then as of its last commit, and Faust replays the changelog from the offset
persisted at that commit (usually nothing) to the last committed record.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
import weakref
from collections.abc import Callable, Mapping
from contextvars import ContextVar
from functools import partial
from pathlib import Path
from typing import Any, cast

import faust
from faust.streams import current_event
from faust.transport.consumer import TransactionManager
from faust.types import TP
from mode import Service

from streams.appends import Straight
from streams.config import Settings

log = logging.getLogger("signalement.eos")
JOURNAL = "undo-journal.db"
CONNECTION_RETRY_S = 0.5  # a coordinator lookup that lost its connection is retried after this

# Table writes of the event being handled, to be sent in its transaction: (topic, key, value, partition, on_sent).
Outbox = list[tuple[str, bytes, bytes | None, int | None, Any]]
OUTBOX: ContextVar[Outbox | None] = ContextVar("signalement_outbox", default=None)
UNSTAGED = object()  # Staged.lookup: the unit of work has not written the key


class Staged:
    """The RocksDB writes of one unit of work under exactly_once, written at its end (`flush`).

    Written as they came, a table write cost two RocksDB puts, each appending to a RocksDB log:
    the undo journal's before-image, then the value. Staged, a unit's writes cost one batch for
    the journal, then one per table partition, in that order: after a kill, every table value
    written has its before-image in the journal. A unit's own reads see what it staged
    (`TransactionalTable._read`); any other read of a table flushes first (`settle`).
    """

    def __init__(self, journal: UndoJournal) -> None:
        self.journal = journal
        self.before: list[tuple[bytes, bytes]] = []  # (journal key, saved entry)
        self.writes: dict[int, tuple[Any, dict[bytes, bytes | None]]] = {}  # id(db) -> (db, {key: value or None})

    def put(self, db: Any, key: bytes, value: bytes | None) -> None:
        entry = self.writes.get(id(db))
        if entry is None:
            entry = self.writes[id(db)] = (db, {})
        entry[1][key] = value

    def lookup(self, db: Any, key: bytes) -> Any:
        """The value the unit wrote for `key` in `db` (None: deleted), or UNSTAGED."""
        entry = self.writes.get(id(db))
        return UNSTAGED if entry is None else entry[1].get(key, UNSTAGED)

    def flush(self) -> None:
        from rocksdict import WriteBatch

        if self.before:
            self.journal.write(self.before)
            self.before = []
        writes, self.writes = self.writes, {}
        for db, values in writes.values():
            batch = WriteBatch(raw_mode=True)
            for key, value in values.items():
                if value is None:
                    batch.delete(key)
                else:
                    batch.put(key, value)
            db.write(batch)


STAGED: ContextVar[Staged | None] = ContextVar("signalement_staged", default=None)


def settle() -> None:
    """Write what the current unit of work staged, before a read that does not look at the stage."""
    staged = STAGED.get()
    if staged is not None:
        staged.flush()


def latest_writes(box: Outbox) -> Outbox:
    """The outbox without the writes a later write of the same key (same changelog partition)
    replaces: a changelog is compacted and restored to each key's last value, so within one
    transaction only that value needs to reach it. A unit of work of routing holds many
    duplicates of one item during a crisis, each rewriting it."""
    if len(box) < 2:
        return box
    last = {(topic, partition, key): i for i, (topic, key, _v, partition, _cb) in enumerate(box)}
    if len(last) == len(box):
        return box
    return [box[i] for i in sorted(last.values())]


TRACE = os.environ.get("SIGNALEMENT_EOS_TRACE")  # a file: commits, first events and undos as JSON lines


def trace(kind: str, **fields: Any) -> None:
    """One line about the transactions' bookkeeping (for finding races; off unless SIGNALEMENT_EOS_TRACE)."""
    if TRACE:
        with open(TRACE, "a") as f:
            f.write(json.dumps({"t": round(time.time(), 3), "pid": os.getpid(), "k": kind, **fields}, default=str) + "\n")


_locks: weakref.WeakKeyDictionary[Any, asyncio.Lock] = weakref.WeakKeyDictionary()


def work_lock(app: Any) -> asyncio.Lock:
    """The app's event/commit boundary: held while an event is handled and while offsets commit."""
    lock = _locks.get(app)
    if lock is None:
        lock = _locks[app] = asyncio.Lock()
    return lock


class Pace:
    """How often the periodic commit runs: every commit interval while the pipeline keeps up,
    every `backlog_interval` while an agent drains a backlog (it took events older than
    streams.app.BACKLOG_AGE_S in the last BEHIND_HOLD_S). Behind a backlog a record waits
    seconds anyway, and each commit holds every agent (`work_lock`) and costs the worker and the
    broker three requests per transaction plus a marker per partition written: fewer of them
    drain the backlog faster. Rebalances, stops and errors still commit at once, and urgent
    commits only happen while keeping up."""

    BEHIND_HOLD_S = 1.0

    def __init__(self, backlog_interval: float = 0.0) -> None:
        self.backlog_interval = backlog_interval
        self.behind_until = 0.0

    def saw_backlog(self) -> None:
        self.behind_until = time.monotonic() + self.BEHIND_HOLD_S

    def wait(self, last_commit_end: float) -> bool:
        """Whether the periodic commit should wait (behind a backlog, committed recently)."""
        if self.backlog_interval <= 0:
            return False
        now = time.monotonic()
        return now < self.behind_until and now - last_commit_end < self.backlog_interval


_paces: weakref.WeakKeyDictionary[Any, Pace] = weakref.WeakKeyDictionary()


def pace(app: Any) -> Pace:
    """The app's commit pace (`install` sets its backlog interval; none: commits keep the interval)."""
    p = _paces.get(app)
    if p is None:
        p = _paces[app] = Pace()
    return p


def offsets_to_commit(faust: Mapping[TP, int], handled: Mapping[TP, int], committed: Mapping[TP, int]
                      ) -> dict[TP, int]:
    """The offsets a commit sends: per source partition, the later of Faust's (acknowledged events;
    the only ones for the ticks, which several agents read) and the offset after the events handled
    (`PartitionTransactions.handled`), never one not past the last committed.

    Faust takes its offsets before the commit gets the work lock; the unit of work holding the lock
    then ends, its outputs in the transaction. Its events must be in the commit too: with Faust's
    older offsets they were committed without them (566 times in one run of the kill test), and a
    kill before the next commit replayed them, their dead letters twice."""
    out = {tp: offset for tp, offset in faust.items() if offset > committed.get(tp, -1)}
    for tp, offset in handled.items():
        if offset > max(committed.get(tp, -1), out.get(tp, -1)):
            out[tp] = offset
    return out


class SendRefused(Exception):
    """A record the worker sent was refused for good: no offset may be committed after it."""


_refused: weakref.WeakKeyDictionary[Any, BaseException] = weakref.WeakKeyDictionary()


def send_refused(app: Any, exc: BaseException) -> None:
    """A record an agent sent was refused for good (MessageSizeTooLarge, an ACL, a topic gone...).

    aiokafka, unlike Kafka's Java producer, does not make that an abortable error of the
    transaction: the commit went through without the record, with the offsets of the event that
    made it, and the record was lost (the records after it on that partition fail too, with
    OutOfOrderSequence). Faust's at-least-once commit likewise commits after a failed send. From
    now on no commit happens: the next one stops the worker, and its next start handles again
    what was not committed (under exactly_once with the undo journal: this module's doc)."""
    _refused.setdefault(app, exc)


def refusal(app: Any) -> SendRefused | None:
    exc = _refused.get(app)
    if exc is None:
        return None
    return SendRefused(f"a record sent was refused ({type(exc).__name__}: {exc}): nothing more is committed")


def guarded_consumer(base: Any) -> Any:
    """Faust's consumer class whose at-least-once commit stops the worker after a refused send
    (`send_refused`; exactly-once commits check in `PartitionTransactions._commit_one`)."""

    async def _commit(self: Any, offsets: Mapping[TP, int]) -> bool:
        refused = refusal(self.app)
        if refused is not None:
            log.error("%s: the worker stops", refused)
            await self.app.crash(refused)
            return False
        return bool(await base._commit(self, offsets))

    return type("GuardedConsumer", (base,), {"_commit": _commit})


class PartitionTransactions(TransactionManager):
    """Faust's transaction manager, with sends routed to the source partition's transaction."""

    # least seconds from the end of a commit to an urgent one (set by `install`; the default is the setting's)
    urgent_gap: float = Settings.urgent_commit_gap

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._urgent = asyncio.Event()
        self._urgent_tids: set[str] = set()
        self.last_commit_end = 0.0
        self.open: set[str] = set()  # transactions holding records not committed yet
        self.persist: dict[str, dict[TP, tuple[Any, int]]] = {}  # changelog offsets to keep, by transaction
        self.journal = UndoJournal(Path(self.app.conf.tabledir) / JOURNAL)
        self.stats = CommitStats()
        self.handled: dict[TP, int] = {}  # offset after the last event handled, per source partition, until committed
        self.committed: dict[TP, int] = {}  # offsets committed, per source partition
        self._tids: dict[TP, str] = {}
        self.straight = Straight()

    def transactional_id(self, tp: TP) -> str:
        tid = self._tids.get(tp)
        if tid is None:  # once per partition: Faust's settings and assignor lookups were ~5 % of the worker
            group = self.app.assignor.group_for_topic(tp.topic)
            tid = self._tids[tp] = f"{self.app.conf.id}-{group}-{tp.partition}"
        return tid

    async def send(self, topic: str, key: bytes | None, value: bytes | None, partition: int | None,
                   timestamp: float | None, headers: Any, *, transactional_id: str | None = None) -> Any:
        event = current_event()
        if event is None:  # a timer: no source partition, no transaction
            return await self.producer.send(topic, key, value, partition, timestamp, headers)
        tid = self.transactional_id(event.message.tp)
        self.open.add(tid)
        txn = self.producer._transaction_producers.get(tid)  # type: ignore[attr-defined]
        if txn is None or timestamp is not None or headers is not None:
            return await self.producer.send(topic, key, value, partition, timestamp, headers, transactional_id=tid)
        # Straight to the partition's aiokafka producer (streams/appends.py). Faust's send adds a
        # per-transaction lock (commits already exclude sends here: both hold `work_lock`, so an
        # open batch of the producer was opened in this transaction) and a signal.
        return await self.straight.send(txn, topic, key, value, partition)

    def urgent(self, tp: TP) -> None:
        """A record that must not wait for the commit interval is in the transaction of source
        partition `tp` (the policy's `urgent` priorities): commit that transaction soon, at most
        one urgent commit per `urgent_gap`.

        A record is visible downstream only once committed, so each hop adds on average half the
        commit interval (p50 ~200 ms over the two hops to a lane at 100 ms); a critical referral
        then waits for the next batch and one commit instead (docs/benchmarks.md). Only its own
        transaction: each commit makes the broker write markers in every partition written to."""
        self._urgent_tids.add(self.transactional_id(tp))
        self._urgent.set()

    @Service.task
    async def _urgent_commits(self) -> None:
        while not self.should_stop:
            if await self.wait_for_stopped(self._urgent):  # type: ignore[arg-type]
                break
            self._urgent.clear()
            wait = self.last_commit_end + self.urgent_gap - time.monotonic()
            if wait > 0:
                await self.sleep(wait)
            # our commit, not Faust's: Faust's counts only events its streams acknowledged, and a
            # batch is acknowledged after its last event; `handled` has every event handled so far
            tids, self._urgent_tids = self._urgent_tids, set()
            await self.commit({}, only=tids)

    def handled_event(self, tp: TP, offset: int) -> None:
        """An event of `tp` was handled and acknowledged: its outputs are in the partition's transaction."""
        if TRACE and tp not in self.handled and tp not in self.committed:
            trace("first", tp=f"{tp.topic}:{tp.partition}", offset=offset,
                  faust_committed=getattr(self.app.consumer, "_committed_offset", {}).get(tp))
        self.handled[tp] = offset + 1

    async def on_partitions_revoked(self, revoked: set[TP]) -> None:
        """A rebalance takes the partitions: commit what was handled before it, with its offsets.

        Faust forgets its acknowledgements of revoked partitions (with the eager protocol: all of
        them) before the rebalance's last commit, which then commits nothing; the transactions
        stayed open with the records of those events, to be committed later without their
        offsets, and the events were handled again after the rebalance (docs/reliability.md,
        "Rebalances"; the test is on branch wip-rebalance)."""
        await super().on_partitions_revoked(revoked)
        if self.open or self.handled:
            await self.commit({}, start_new_transaction=False)

    async def on_rebalance(self, assigned: set[TP], revoked: set[TP], newly_assigned: set[TP]) -> None:
        """Stop the producers of partitions assigned elsewhere now; begin transactions on ours
        that are not in one (instead of Faust's stop-revoked-then-begin-assigned).

        Faust stops only those of `revoked`, which it computes after the eager protocol has
        already emptied the assignment: none. The producer stayed, the new owner's fenced it, and
        when the partition came back, Faust kept the fenced producer ("IN_TRANSACTION ->
        IN_TRANSACTION"), whose next send or commit failed and stopped the worker."""
        keep = self._tps_to_transactional_ids(assigned)
        self.committed = {tp: offset for tp, offset in self.committed.items() if tp in assigned}
        producers: dict[str, Any] = self.producer._transaction_producers  # type: ignore[attr-defined]
        gone = sorted(tid for tid in producers if tid not in keep)
        if gone:
            log.info("stopping the transactional producers of partitions now elsewhere: %s", ", ".join(gone))
        for tid in gone:
            await self.producer.stop_transaction(tid)
            self.open.discard(tid)
            self.persist.pop(tid, None)
        started = 0
        for tid in sorted(keep):  # a producer still in its transaction goes on (Faust would log an error)
            txn = producers.get(tid)
            if txn is None or not txn._txn_manager.is_in_transaction():
                await self.producer.maybe_begin_transaction(tid)
                started += 1
        log.info("transactional producers: %d for %d assigned partitions (%d begun)", len(keep), len(assigned), started)

    async def commit(self, offsets: Mapping[TP, int], start_new_transaction: bool = True,
                     only: set[str] | None = None) -> bool:
        """Commit every open transaction (or those of `only`), with the offsets of its events."""
        async with work_lock(self.app):
            try:
                started = time.monotonic()
                done = await self._commit(offsets, start_new_transaction, only)
                self.last_commit_end = time.monotonic()
                self.stats.add(self.last_commit_end - started)
            except Exception as exc:  # fenced, or the broker refused: the journal undoes it at the next start
                log.error("transaction commit failed (%s: %s): the worker stops", type(exc).__name__, exc)
                await self.app.crash(exc)
                return False
            return done

    async def _commit(self, offsets: Mapping[TP, int], start_new_transaction: bool, only: set[str] | None = None
                      ) -> bool:
        """Faust's commit, with the ids of `transactional_id` and errors raised, not logged away."""
        # every transaction with records, even without new offsets (a tick's work is committed
        # before all the agents reading that tick have acked it; replaying a tick is harmless)
        by_tid: dict[str, dict[TP, int]] = {tid: {} for tid in self.open}
        for tp, offset in offsets_to_commit(offsets, self.handled, self.committed).items():
            by_tid.setdefault(self.transactional_id(tp), {})[tp] = offset
        if only is not None:
            by_tid = {tid: tp_offsets for tid, tp_offsets in by_tid.items() if tid in only}
        # the transactions are independent (one per partition): commit them together
        await asyncio.gather(*(self._commit_one(tid, tp_offsets, start_new_transaction)
                               for tid, tp_offsets in by_tid.items()))
        return True

    async def _commit_one(self, tid: str, tp_offsets: dict[TP, int], start_new_transaction: bool) -> None:
        producer: Any = self.producer
        txn = producer._transaction_producers.get(tid)
        if txn is None:
            log.warning("commit for %s: no transaction (partition revoked?)", tid)
            for tp in tp_offsets:  # never commit them later, when the partition may be someone else's
                self.handled.pop(tp, None)
            return
        async with producer._trn_locks[tid]:
            if not txn._txn_manager.is_in_transaction():  # ended by a commit that began none (shutdown)
                if not tp_offsets:
                    return
                await txn.begin_transaction()
            if tp_offsets:
                await txn.send_offsets_to_transaction(tp_offsets, self.app.conf.id)
            # the produce responses, which the commit waits for anyway: a refused record is known now
            await txn._message_accumulator.flush_for_commit()
            refused = refusal(self.app)
            if refused is not None:
                raise refused
            await txn.commit_transaction()
            if start_new_transaction:
                await txn.begin_transaction()
        self.open.discard(tid)
        for tp, offset in tp_offsets.items():
            self.committed[tp] = offset
            if self.handled.get(tp, -1) <= offset:
                self.handled.pop(tp, None)
        # this order: a kill between the two leaves the new values with an older persisted offset,
        # and replaying the changelog from there rewrites the same values
        self.journal.forget(tid)
        persisted = self.persist.pop(tid, {})
        for tp, (store, offset) in persisted.items():
            store.set_persisted_offset(tp, offset)
        if TRACE:
            trace("commit", tid=tid, offsets={f"{tp.topic}:{tp.partition}": o for tp, o in tp_offsets.items()},
                  persisted={f"{tp.topic}:{tp.partition}": o for tp, (_, o) in persisted.items()})

    async def on_stop(self) -> None:
        self.journal.close()
        await super().on_stop()


class CommitStats:
    """How long commits hold the pipeline (every agent waits for `work_lock` meanwhile), logged
    once a minute: the cost side of SIGNALEMENT_COMMIT_INTERVAL (docs/benchmarks.md)."""

    def __init__(self, every_s: float = 60.0) -> None:
        self.every_s = every_s
        self.since = time.monotonic()
        self.count, self.total_s, self.max_s = 0, 0.0, 0.0

    def add(self, took_s: float) -> None:
        self.count += 1
        self.total_s += took_s
        self.max_s = max(self.max_s, took_s)
        now = time.monotonic()
        if now - self.since >= self.every_s:
            log.info("transactions committed=%d mean_ms=%.1f max_ms=%.1f busy_pct=%.1f", self.count,
                     1000 * self.total_s / self.count, 1000 * self.max_s, 100 * self.total_s / (now - self.since))
            self.since, self.count, self.total_s, self.max_s = now, 0, 0.0, 0.0


def install(app: faust.App, confluent: dict[str, object], urgent_gap: float = PartitionTransactions.urgent_gap,
            backlog_interval: float = 0.0) -> None:
    """Use `PartitionTransactions` for this app (call before the worker starts).

    `confluent` is the client config (bootstrap, credentials) for reading changelog ends;
    `urgent_gap` the least seconds between the end of a commit and an urgent one;
    `backlog_interval` the least seconds between periodic commits behind a backlog (`Pace`).
    """
    from faust.transport.drivers import aiokafka as driver

    manager = type("PartitionTransactions", (PartitionTransactions,), {"urgent_gap": urgent_gap})
    app.transport.TransactionManager = manager  # type: ignore[misc]
    paced = pace(app)
    paced.backlog_interval = backlog_interval
    app.transport.Consumer = paced_consumer(app.transport.Consumer, paced)  # type: ignore[misc]

    # the pipeline's principal may use groups named after the app only (streams/security.py)
    config = {**confluent, "group.id": f"{app.conf.id}-recovery"}

    async def ends(_thread: Any, partitions: list[TP]) -> Mapping[TP, int]:
        return await asyncio.to_thread(last_records, config, list(partitions))

    driver.AIOKafkaConsumerThread._highwaters = ends  # type: ignore[method-assign,assignment]

    patch_stable_seek(driver.AIOKafkaConsumerThread, confluent, app.conf.id)
    patch_coordinator_lookup()


def patch_stable_seek(thread_class: Any, confluent: dict[str, object], group: str) -> None:
    """Seek to committed offsets only once they are stable (KIP-447's `require_stable`).

    A transaction's offsets become the group's committed offsets only when the broker has written
    its commit markers, a moment *after* the producer's commit returns; until then an offset fetch
    returns the previous offsets. A worker handing partitions over at a rebalance commits and
    leaves, and the next owner fetched the offsets at once: it could get the older ones and handle
    the last events again (the stateless intake would re-key them twice). Kafka Streams asks for
    stable offsets; aiokafka cannot (OffsetFetch v7), so the wait is done here with the admin
    client's `require_stable`, before Faust's own fetch-and-seek. After it, the partitions never
    committed are put back at their start (`reset_uncommitted`), which aiokafka's seek skips."""
    original = thread_class.seek_to_committed
    if getattr(original, "signalement_patched", False):
        return
    admin: list[Any] = []

    async def seek_to_committed(self: Any) -> Any:
        tps = sorted(self.assignment())
        if tps:
            if not admin:
                from confluent_kafka.admin import AdminClient

                admin.append(AdminClient(confluent))  # type: ignore[arg-type]
            waited = await asyncio.to_thread(wait_for_stable_offsets, admin[0], group, tps)
            if waited > 1.0:
                log.info("waited %.1f s for the committed offsets of %d partitions to be stable", waited, len(tps))
        committed = await original(self)
        # the stream partitions only: Faust's table recovery positions the changelogs itself
        changelogs = self.app.tables.changelog_topics
        streams = {tp: offset for tp, offset in committed.items() if tp.topic not in changelogs}
        await self.call_thread(reset_uncommitted, self._ensure_consumer(), streams,
                               self.app.conf.consumer_auto_offset_reset)
        return committed

    seek_to_committed.signalement_patched = True  # type: ignore[attr-defined]
    thread_class.seek_to_committed = seek_to_committed


async def reset_uncommitted(consumer: Any, committed: Mapping[Any, int | None], policy: str = "earliest") -> list[Any]:
    """Put the partitions the group never committed back where a new consumer starts (`policy`);
    returns them.

    aiokafka's `seek_to_committed` seeks only the partitions with a committed offset above 0; the
    others keep their position. Faust drops the records of a fetch that returns across a rebalance
    or a seek, counting on that seek to fetch them again: on a partition never committed (a
    backlog on fresh topics) they were skipped for good. Found in two-worker throughput runs: the
    first 50 reports of one partition (one fetch round, offsets 0-49) never handled, while the
    partition went on from 50 (docs/reliability.md, "Rebalances")."""
    from aiokafka.structs import TopicPartition

    fresh = [TopicPartition(tp.topic, tp.partition) for tp, offset in committed.items() if not offset or offset < 0]
    if fresh and policy == "latest":
        await consumer.seek_to_end(*fresh)
    else:
        # at once: `seek_to_beginning` waits for the fetcher to reset each position, after the fetch
        # in flight (up to Faust's 1.5 s fetch wait: +1.2-1.4 s on every start). Below a partition's
        # first offset (retention), the fetch's OffsetOutOfRange resets it to the earliest.
        for tp in fresh:
            consumer.seek(tp, 0)
    return fresh


def wait_for_stable_offsets(admin: Any, group: str, tps: list[TP], timeout_s: float = 60.0,
                            pause_s: float = 0.05) -> float:
    """Block until no offset of `tps` in `group` is held by an unfinished transaction; seconds waited.

    Gives up after `timeout_s` (an offset left pending that long belongs to a transaction the broker
    is about to abort): the fetch that follows then returns the last stable offsets, which can only
    repeat events, and every stateful step absorbs a repeat."""
    from confluent_kafka import ConsumerGroupTopicPartitions, KafkaError, TopicPartition

    started = time.monotonic()
    request = [ConsumerGroupTopicPartitions(group, [TopicPartition(tp.topic, tp.partition) for tp in tps])]
    while True:
        try:
            result = admin.list_consumer_group_offsets(request, require_stable=True, request_timeout=10)[group].result()
            unstable = [tp for tp in result.topic_partitions
                        if tp.error is not None and tp.error.code() == KafkaError.UNSTABLE_OFFSET_COMMIT]
        except Exception as exc:  # the group may not exist yet; the plain fetch decides
            error = getattr(exc.args[0], "code", lambda: None)() if exc.args else None
            if error != KafkaError.UNSTABLE_OFFSET_COMMIT:
                log.debug("stable offsets of %s not read (%s): seeking as Faust does", group, exc)
                return time.monotonic() - started
            unstable = tps  # type: ignore[assignment]
        waited = time.monotonic() - started
        if not unstable:
            return waited
        if waited > timeout_s:
            log.warning("offsets of %d partitions still unstable after %.0f s: seeking to the last stable ones",
                        len(unstable), waited)
            return waited
        time.sleep(pause_s)


def paced_consumer(base: Any, paced: Pace) -> Any:
    """Faust's consumer class with its periodic commit paced by `paced`."""

    async def commit(self: Any, topics: Any = None, start_new_transaction: bool = True) -> bool:
        # only the periodic commit (all topics, a transaction begun after it) waits, and before
        # Faust takes its acknowledgements, so the next one commits them; a rebalance's, a stop's
        # (no new transaction) or a commit of chosen topics never waits
        txns = self.transactions
        if topics is None and start_new_transaction and isinstance(txns, PartitionTransactions) \
                and paced.wait(txns.last_commit_end):
            return False
        return bool(await base.commit(self, topics, start_new_transaction))

    return type("PacedConsumer", (base,), {"commit": commit})


def patch_coordinator_lookup() -> None:
    """aiokafka's producer retries a coordinator lookup on CoordinatorNotAvailable, NodeNotReady
    and RequestTimedOut, but a *lost connection* (the broker restarting) ends its sender: the
    transaction producer is dead and its next commit stops the worker ("Unexpected error during
    batch delivery", test_broker_restart.py). Retry that too, every CONNECTION_RETRY_S; a broker
    away for longer than the transaction timeout still fences the producer (a clean restart)."""
    from aiokafka.errors import KafkaConnectionError, KafkaError
    from aiokafka.producer.sender import Sender

    if getattr(Sender._find_coordinator, "signalement_patched", False):
        return
    original = Sender._find_coordinator

    async def find_coordinator(self: Any, coordinator_type: Any, coordinator_key: Any) -> Any:
        while True:
            try:
                return await original(self, coordinator_type, coordinator_key)
            except KafkaError as err:
                if not isinstance(err.__cause__, KafkaConnectionError):
                    raise
                log.warning("coordinator lookup lost its connection (%s): retrying in %.1f s", err.__cause__,
                            CONNECTION_RETRY_S)
                await asyncio.sleep(CONNECTION_RETRY_S)

    find_coordinator.signalement_patched = True  # type: ignore[attr-defined]
    Sender._find_coordinator = find_coordinator  # type: ignore[method-assign]


def last_records(confluent: dict[str, object], partitions: list[TP], window: int = 64,
                 timeout_s: float = 120.0) -> dict[TP, int]:
    """For each partition, 1 + the offset of its last committed record (0 if it has none).

    Reads the tail of every partition at once from the last stable offset at read_committed,
    widening the window of those where nothing showed (aborted records and transaction markers
    are skipped by the broker).
    """
    from confluent_kafka import Consumer, TopicPartition

    out: dict[TP, int] = {}
    if not partitions:
        return out
    consumer = Consumer({"group.id": "signalement-recovery", **confluent, "enable.auto.commit": False,
                         "isolation.level": "read_committed", "enable.partition.eof": True,
                         "fetch.wait.max.ms": 10})
    deadline = time.monotonic() + timeout_s
    try:
        bounds = {}
        for tp in partitions:
            bounds[tp] = consumer.get_watermark_offsets(TopicPartition(tp.topic, tp.partition), timeout=30)
        last = {tp: -1 for tp in partitions}
        todo = {tp: window for tp, (low, end) in bounds.items() if end > low}
        while todo:
            starts = {tp: max(bounds[tp][0], bounds[tp][1] - span) for tp, span in todo.items()}
            consumer.assign([TopicPartition(tp.topic, tp.partition, start) for tp, start in starts.items()])
            pending = set(todo)
            while pending:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"reading the end of {len(pending)} changelog partitions timed out")
                for m in consumer.consume(1000, 0.5):
                    tp = TP(m.topic() or "", m.partition() or 0)
                    if m.error():  # end of partition
                        pending.discard(tp)
                        continue
                    offset = m.offset() or 0
                    last[tp] = max(last[tp], offset)
                    if offset >= bounds[tp][1] - 1:
                        pending.discard(tp)
            todo = {tp: span * 8 for tp, span in todo.items() if last[tp] < 0 and starts[tp] > bounds[tp][0]}
        out = {tp: last[tp] + 1 for tp in partitions}
    finally:
        consumer.close()
    return out


class TransactionalTable(faust.Table):  # type: ignore[misc]
    """A table whose changelog records join the current event's transaction (see module doc)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._partition_paths: dict[int, bytes] = {}

    def __setitem__(self, key: Any, value: Any) -> None:
        if not self._stage(key, value):
            super().__setitem__(key, value)

    def __delitem__(self, key: Any) -> None:
        if not self._stage(key, None):
            super().__delitem__(key)

    # Faust's reads (and `get`, through __getitem__) go to RocksDB: what the unit staged goes there first
    def __getitem__(self, key: Any) -> Any:
        settle()
        return super().__getitem__(key)

    def __contains__(self, key: Any) -> bool:
        settle()
        return cast(bool, super().__contains__(key))

    def __iter__(self) -> Any:
        settle()
        return super().__iter__()

    def __len__(self) -> int:
        settle()
        return cast(int, super().__len__())

    def items(self) -> Any:
        settle()
        return super().items()

    def keys(self) -> Any:
        settle()
        return super().keys()

    def values(self) -> Any:
        settle()
        return super().values()

    def partition_db(self, partition: int) -> Any:
        """The RocksDB of one partition of the table, with what the unit staged written (None: not open)."""
        settle()
        return getattr(self.data, "_dbs", {}).get(partition)

    def _stage(self, key: Any, value: bytes | None) -> bool:
        """Under exactly_once, in a unit of work: queue the changelog record and the journal's
        before-image, and stage the write (Staged); False: write as Faust does."""
        staged, event, store = STAGED.get(), current_event(), self.data
        if staged is None or event is None or not hasattr(store, "_db_for_partition"):
            return False
        if value is None:
            self.on_key_del(key)
        else:
            self.on_key_set(key, value)
        staged.put(store._db_for_partition(event.message.partition), key, value)
        return True

    def on_key_set(self, key: Any, value: Any) -> None:
        if not self._queue(key, value):
            trace("faust_set", table=self.name, key=key)
            super().on_key_set(key, value)

    def on_key_del(self, key: Any) -> None:
        if not self._queue(key, None):
            trace("faust_del", table=self.name, key=key)
            super().on_key_del(key)

    def read(self, key: bytes) -> bytes | None:
        """The value of `key` in the current event's partition: one RocksDB read.

        Faust's `get` reads twice when the key is there (`__contains__`, then `__getitem__`) and
        raises and catches a KeyError when it is not."""
        return self._read(key, journal=False)

    def read_for_update(self, key: bytes) -> bytes | None:
        """`read`, for a value the unit of work will probably write: under exactly_once its
        before-image goes to the undo journal now (a no-op if this transaction saved it already),
        so the write does not read it again. Saved and then not written, it is undone to itself."""
        return self._read(key, journal=True)

    def _read(self, key: bytes, journal: bool) -> bytes | None:
        event, store = current_event(), self.data
        if event is None or not hasattr(store, "_db_for_partition"):  # outside an event, or not RocksDB
            return cast(bytes | None, self.get(key))
        partition = event.message.partition
        db = store._db_for_partition(partition)
        staged = STAGED.get()
        if staged is not None:
            value = staged.lookup(db, key)
            if value is not UNSTAGED:  # written by this unit: its before-image is saved already
                return cast(bytes | None, value)
        value = db.get(key)
        transactions = self.app.consumer.transactions
        if journal and OUTBOX.get() is not None and isinstance(transactions, PartitionTransactions):
            transactions.journal.remember(transactions.transactional_id(event.message.tp), self._path(store, partition),
                                          db, key, value)
        return cast(bytes | None, value)

    def _queue(self, key: Any, value: Any) -> bool:
        box = OUTBOX.get()
        if box is None:
            return False
        if not isinstance(key, bytes) or not (value is None or isinstance(value, bytes)):
            raise TypeError(f"table {self.name}: exactly-once tables hold bytes, not {type(key)}/{type(value)}")
        transactions, event = self.app.consumer.transactions, current_event()
        partition = self.partition_for_key(key)
        on_sent: Callable[[Any], None] = _ignore
        if isinstance(transactions, PartitionTransactions) and event is not None:
            tid = transactions.transactional_id(event.message.tp)
            on_sent = partial(self._delivered, transactions, tid)
            store: Any = self.data
            if partition is not None and hasattr(store, "_db_for_partition"):  # RocksDB (the worker's store)
                transactions.journal.remember(tid, self._path(store, partition), store._db_for_partition(partition),
                                              key)
        box.append((self.changelog_topic.get_topic_name(), key, value, partition, on_sent))
        return True

    def _path(self, store: Any, partition: int) -> bytes:
        """The partition's RocksDB folder, encoded once (Faust derives it from its settings on every call)."""
        path = self._partition_paths.get(partition)
        if path is None:
            path = self._partition_paths[partition] = str(store.partition_path(partition)).encode()
        return path

    def _delivered(self, transactions: PartitionTransactions, tid: str, fut: Any) -> None:
        """A changelog record reached the broker: its offset is persisted when `tid` commits."""
        if fut.cancelled() or fut.exception() is not None:
            return
        res = fut.result()
        transactions.persist.setdefault(tid, {})[res.topic_partition] = (self.data, res.offset)


def _ignore(_fut: Any) -> None:
    return None


UNREAD = object()  # UndoJournal.remember: the caller has not read the value


class UndoJournal:
    """Before-images of the table values that uncommitted transactions changed (see module doc).

    One RocksDB (rocksdict, raw) next to the tables; keys are `<table partition path>\\0<key>`,
    values the replaced value after a 1 byte, or a single 0 byte for "absent". Only the first
    change of a key within a transaction is saved: the value as of the last commit.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._db: Any = None
        self.saved: dict[str, set[bytes]] = {}

    def db(self) -> Any:
        if self._db is None:
            from rocksdict import Options, Rdict

            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = Rdict(str(self.path), options=Options(raw_mode=True))
        return self._db

    def remember(self, tid: str, table_path: bytes, table_db: Any, key: bytes, before: Any = UNREAD) -> None:
        """Save `key`'s value in `table_db` (or `before`, the caller's fresh read of it) unless
        transaction `tid` saved it already; `table_path` is the table partition's folder, encoded."""
        jkey = table_path + b"\0" + key
        saved = self.saved.setdefault(tid, set())
        if jkey in saved:
            return
        if before is UNREAD:
            before = table_db.get(key)
        entry = b"\0" if before is None else b"\1" + before
        staged = STAGED.get()
        if staged is not None:  # written with the unit's other before-images, before its table writes
            staged.before.append((jkey, entry))
        else:
            self.db().put(jkey, entry)
        saved.add(jkey)

    def write(self, entries: list[tuple[bytes, bytes]]) -> None:
        """Save before-images `remember` staged, in one batch."""
        from rocksdict import WriteBatch

        batch = WriteBatch(raw_mode=True)
        for jkey, entry in entries:
            batch.put(jkey, entry)
        self.db().write(batch)

    def forget(self, tid: str) -> None:
        saved = self.saved.pop(tid, None)
        if not saved:
            return
        from rocksdict import WriteBatch

        batch = WriteBatch(raw_mode=True)
        for jkey in saved:
            batch.delete(jkey)
        self.db().write(batch)

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None


def restore_committed(tabledir: Path) -> int:
    """Before a worker starts: put back what the journal saved (after a kill); returns how many.

    If the journal cannot be applied the tables are wiped, and Faust restores them in full from
    their changelogs: slower, equally right.
    """
    path = tabledir / JOURNAL
    if not path.exists():
        return 0
    from rocksdict import Options, Rdict

    try:
        journal = Rdict(str(path), options=Options(raw_mode=True))
        by_table: dict[bytes, list[tuple[bytes, bytes]]] = {}
        for jkey, before in journal.items():
            assert isinstance(jkey, bytes) and isinstance(before, bytes)
            table_path, _, key = jkey.partition(b"\0")
            by_table.setdefault(table_path, []).append((key, before))
        for table_path, entries in by_table.items():
            table = Rdict(table_path.decode(), options=Options(raw_mode=True))
            for key, before in entries:
                trace("undo", table=table_path.decode().rsplit("/", 1)[-1], key=key.decode(errors="replace"),
                      before="absent" if before[:1] != b"\1" else before[1:200].decode(errors="replace"))
                if before[:1] == b"\1":
                    table.put(key, before[1:])
                elif key in table:
                    table.delete(key)
            table.close()
        journal.close()
        Rdict.destroy(str(path))
    except Exception:
        log.exception("the undo journal %s could not be applied: wiping %s, the tables restore from their "
                      "changelogs", path, tabledir)
        import shutil

        shutil.rmtree(tabledir, ignore_errors=True)
        return -1
    n = sum(len(v) for v in by_table.values())
    if n:
        log.warning("undid %d table writes of transactions a kill interrupted", n)
    return n
