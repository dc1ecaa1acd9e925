"""Flow control at a rebalance: a tick dropped from one agent's queue is acknowledged (the rebalance
would wait for it), an event of any other topic is not (the partition's next owner handles it).
And the fetch rounds: the urgent topics' records first."""

from __future__ import annotations

import asyncio
import contextlib
from types import SimpleNamespace
from typing import Any

import pytest
from faust.events import Event
from faust.types import TP
from faust.types.tuples import ConsumerMessage
from mode.utils.queues import FlowControlEvent, ThrowableQueue

from streams.flow import patch_urgent_first, release_on_clear, rewind

pytestmark = pytest.mark.unit


class Consumer:
    """Faust's `Consumer.ack` as far as a message goes: marked acknowledged, its offset committable."""

    def __init__(self) -> None:
        self.acked: list[Any] = []

    def ack(self, message: Any) -> bool:
        message.acked = True
        self.acked.append((message.topic, message.offset))
        return True


def message(topic: str, offset: int, readers: int) -> ConsumerMessage:
    m = ConsumerMessage(topic, 0, offset, 0.0, 0, None, None, b"v", None)
    m.incref(readers)  # the conductor's reference per agent reading the topic
    return m


def test_a_dropped_tick_is_acknowledged_and_a_dropped_report_is_not() -> None:
    consumer = Consumer()
    app: Any = SimpleNamespace(consumer=consumer, flow_control=FlowControlEvent(initially_suspended=False))
    queues: list[ThrowableQueue[Any]] = [ThrowableQueue(flow_control=app.flow_control, clear_on_resume=True)
                                         for _ in range(3)]
    tick = message("p.internal.ticks", 7, readers=3)
    report = message("p.reports.pharos", 42, readers=1)
    # two agents have handled the tick; the third still has it queued, behind a report
    for _ in range(2):
        Event(app, None, b"tick", None, tick).ack()
    queues[2].put_nowait(Event(app, None, b"tick", None, tick))
    queues[0].put_nowait(Event(app, None, b"v", None, report))
    assert not tick.acked and tick.refcount == 1

    release_on_clear(app, ["p.internal.ticks"])
    app.flow_control.suspend()
    app.flow_control.clear()

    assert all(q.empty() for q in queues)
    assert tick.acked and consumer.acked == [("p.internal.ticks", 7)]  # the rebalance has nothing to wait for
    assert not report.acked and report.refcount == 1  # not committed: handled again after the rebalance


def test_without_release_the_dropped_tick_stays_unacknowledged() -> None:
    """What Faust does alone: the message the rebalance waits for stays unacknowledged."""
    consumer = Consumer()
    app: Any = SimpleNamespace(consumer=consumer, flow_control=FlowControlEvent(initially_suspended=False))
    queue: ThrowableQueue[Any] = ThrowableQueue(flow_control=app.flow_control, clear_on_resume=True)
    tick = message("p.internal.ticks", 7, readers=2)
    Event(app, None, b"tick", None, tick).ack()
    queue.put_nowait(Event(app, None, b"tick", None, tick))
    app.flow_control.clear()
    assert queue.empty() and not tick.acked and consumer.acked == []


class FetchingConsumer:
    """What Faust's `Consumer.getmany` uses of its consumer, with a fetch that may span a rebalance."""

    def __init__(self, records: dict[Any, list[Any]], rebalance_during_fetch: bool) -> None:
        self.app = SimpleNamespace(consumer_generation_id=3, monitor=SimpleNamespace(track_tp_end_offset=lambda *a: None))
        self.records, self.rebalance = records, rebalance_during_fetch
        self.flow_active, self.should_stop = True, False
        self.scheduler = SimpleNamespace(iterate=lambda recs: ((tp, r) for tp, batch in recs.items() for r in batch))
        self._buffered_partitions: set[Any] = set()
        self.seeks = 0

    async def _wait_next_records(self, timeout: float) -> tuple[dict[Any, list[Any]], None]:
        if self.rebalance:  # the group moved on while the fetch was out
            self.app.consumer_generation_id += 1
        return self.records, None

    async def perform_seek(self) -> None:
        self.seeks += 1

    def _to_message(self, tp: Any, record: Any) -> Any:
        return record

    def highwater(self, tp: Any) -> int:
        return 100


async def fetch(consumer: FetchingConsumer) -> list[Any]:
    from faust.transport.consumer import Consumer

    return [message async for _tp, message in Consumer.getmany(consumer, 1.0)]  # type: ignore[arg-type]


def test_records_fetched_across_a_rebalance_are_dropped_and_the_partitions_sought_back() -> None:
    import asyncio

    from streams.flow import patch_stale_fetch

    patch_stale_fetch()
    records = {"reports.pharos-2": [632, 633, 634], "reports.ctiru-0": [335]}
    stale = FetchingConsumer(records, rebalance_during_fetch=True)
    assert asyncio.run(fetch(stale)) == [] and stale.seeks == 1  # read again from the committed offsets
    fresh = FetchingConsumer(records, rebalance_during_fetch=False)
    assert asyncio.run(fetch(fresh)) == [632, 633, 634, 335] and fresh.seeks == 0



def test_events_of_an_earlier_assignment_are_skipped_and_never_committable() -> None:
    """`take_events` keeps its buffer across a rebalance and acknowledges the whole batch after it:
    an event fetched under the old assignment is not handled, and its offset is never counted."""
    from streams.app import current_events, partition_groups

    consumer = Consumer()

    def event(partition: int, offset: int, generation: int) -> Any:
        m = ConsumerMessage("t", partition, offset, 0.0, 0, None, None, b"v", None, generation_id=generation)
        m.incref(1)
        return SimpleNamespace(message=m)

    batch = [event(0, 10, 3), event(1, 20, 3), event(0, 11, 4), event(1, 21, 4), event(0, 12, 4)]
    kept = current_events(batch, generation=4)
    groups = partition_groups(kept)
    assert [[(e.message.partition, e.message.offset) for e in g] for g in groups] == [[(0, 11), (0, 12)], [(1, 21)]]
    for e in batch:  # what take_events does once the batch is handled
        e.message.ack(consumer)
    assert sorted(consumer.acked) == [("t", 11), ("t", 12), ("t", 21)]


class SeekingConsumer:
    """What Faust's `Consumer.perform_seek` uses of its consumer, plus the flow switches."""

    def __init__(self, committed: dict[TP, int]) -> None:
        self.committed = committed
        self._read_offset: dict[TP, int | None] = {}
        self._committed_offset: dict[TP, int | None] = {}
        self.flow_active = True
        self.log: list[str] = []

    async def seek_to_committed(self) -> dict[TP, int]:
        self.log.append("seek")
        return dict(self.committed)

    def stop_flow(self) -> None:
        self.flow_active = False
        self.log.append("stop")

    def resume_flow(self) -> None:
        self.flow_active = True
        self.log.append("resume")


def test_a_seek_waits_for_the_hand_over_in_flight_so_its_offset_cannot_undo_the_seek() -> None:
    """After a restart Faust resumes the partitions, then seeks them to their committed offsets. A
    record being handed over to a full agent queue meanwhile noted its offset as read *after* the
    seek, and the records between the committed offset and it were then dropped when fetched again
    (the kill test's lost items, session 7). The seek now stops the flow and waits for the batch."""
    import asyncio

    from faust.transport.consumer import Consumer

    from streams.flow import between_fetches, patch_quiet_seek

    patch_quiet_seek()
    tp = TP("internal.dedup", 3)
    consumer = SeekingConsumer({tp: 11995})

    async def run() -> None:
        between_fetches(consumer).clear()  # the fetcher is handing a batch over
        seek = asyncio.ensure_future(Consumer.perform_seek(consumer))  # type: ignore[arg-type]
        for _ in range(5):
            await asyncio.sleep(0)
        assert consumer.log == ["stop"]  # no offset read while the hand-over is in flight
        consumer._read_offset[tp] = 11997  # the hand-over ends: its offset noted as read
        between_fetches(consumer).set()  # and the fetcher comes back for more
        await seek

    asyncio.run(run())
    assert consumer.log == ["stop", "seek", "resume"]
    assert consumer._read_offset[tp] == 11995  # the seek decides where reading resumes


def test_a_seek_while_the_flow_is_stopped_is_faust_s() -> None:
    import asyncio

    from faust.transport.consumer import Consumer

    from streams.flow import between_fetches, patch_quiet_seek

    patch_quiet_seek()
    tp = TP("reports.pharos", 0)
    consumer = SeekingConsumer({tp: 7})
    consumer.flow_active = False  # a rebalance stopped it
    between_fetches(consumer).clear()
    asyncio.run(Consumer.perform_seek(consumer))  # type: ignore[arg-type]
    assert consumer.log == ["seek"] and consumer._read_offset[tp] == 7 and not consumer.flow_active


class Fetcher:
    """aiokafka's fetcher as far as a fetch round goes: records held per partition, handed out in the
    order they were fetched, up to `max_records`, only for the partitions asked."""

    def __init__(self, held: dict[TP, list[int]]) -> None:
        self.held, self._closed = held, False
        self._subscriptions = SimpleNamespace(fetch_context=contextlib.nullcontext)

    async def fetched_records(self, partitions: Any, timeout: float = 0, max_records: int | None = None) -> Any:
        out: dict[TP, list[int]] = {}
        left = max_records
        for tp in list(self.held):
            if tp not in partitions or left == 0:
                continue
            take = self.held[tp][:left] if left is not None else self.held[tp]
            out[tp], self.held[tp] = take, self.held[tp][len(take):]
            if not self.held[tp]:
                del self.held[tp]
            left = None if left is None else left - len(take)
        return out


def test_a_round_hands_over_the_urgent_topics_records_first() -> None:
    """A removal order fetched after a backlog is handed over in the next round, not after the
    backlog (streams.flow.patch_urgent_first); without urgent records a round is as before."""
    from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread

    backlog, other, urgent = TP("reports.pharos", 0), TP("signalement.internal.dedup", 1), TP("reports.pharos.urgent", 0)
    app: Any = SimpleNamespace(tables=SimpleNamespace(changelog_topics=set()))
    patch_urgent_first(app, ["reports.pharos.urgent"])
    thread: Any = SimpleNamespace(app=app, consumer=SimpleNamespace(flow_active=True))
    fetcher = Fetcher({backlog: list(range(1200)), other: list(range(300)), urgent: [7]})
    consumer: Any = SimpleNamespace(_closed=False, _fetcher=fetcher)
    active = {backlog, other, urgent}

    def round_() -> dict[TP, list[int]]:
        return asyncio.run(AIOKafkaConsumerThread._fetch_records(thread, consumer, active, timeout=0, max_records=500))

    assert round_() == {urgent: [7]}  # first, though fetched last
    assert round_() == {backlog: list(range(500))}  # then as aiokafka hands them out
    fetcher.held[urgent] = [8, 9]
    assert round_() == {urgent: [8, 9]}
    assert round_() == {backlog: list(range(500, 1000))}
    assert round_() == {backlog: list(range(1000, 1200)), other: list(range(300))}


def test_a_round_hands_over_the_changelogs_records_next_in_rounds_of_their_own() -> None:
    """Changelog records already fetched (a recovery, a standby's copy) go out after the urgent
    records and before the rest, up to CHANGELOG_ROUND at a time, not in the live rounds of 50."""
    from faust.transport.drivers.aiokafka import AIOKafkaConsumerThread

    from streams.flow import CHANGELOG_ROUND

    live, changelog, urgent = TP("reports.pharos", 0), TP("app-dedup-items-changelog", 2), TP("reports.pharos.urgent", 0)
    app: Any = SimpleNamespace(tables=SimpleNamespace(changelog_topics={"app-dedup-items-changelog"}))
    patch_urgent_first(app, ["reports.pharos.urgent"])
    thread: Any = SimpleNamespace(app=app, consumer=SimpleNamespace(flow_active=True))
    n = CHANGELOG_ROUND + 300
    fetcher = Fetcher({live: list(range(120)), changelog: list(range(n)), urgent: [7]})
    consumer: Any = SimpleNamespace(_closed=False, _fetcher=fetcher)
    active = {live, changelog, urgent}

    def round_() -> dict[TP, list[int]]:
        return asyncio.run(AIOKafkaConsumerThread._fetch_records(thread, consumer, active, timeout=0, max_records=50))

    assert round_() == {urgent: [7]}
    assert round_() == {changelog: list(range(CHANGELOG_ROUND))}
    assert round_() == {changelog: list(range(CHANGELOG_ROUND, n))}
    assert round_() == {live: list(range(50))}  # the live topics' rounds stay bounded
    fetcher.held[changelog] = [n]
    assert round_() == {changelog: [n]}
    assert round_() == {live: list(range(50, 100))}


def test_the_worker_consumer_waits_at_most_fetch_max_wait_ms_for_idle_partitions() -> None:
    """Faust builds the worker's aiokafka consumer with a fetch wait of 1,500 ms; the pipeline's
    is FETCH_MAX_WAIT_MS (streams.flow.patch_fetch_wait)."""
    from streams.app import build_pipeline
    from streams.config import Settings
    from streams.flow import FETCH_MAX_WAIT_MS

    async def build() -> Any:
        app = build_pipeline(Settings()).app
        return app.consumer._thread._create_worker_consumer(app.transport)

    consumer = asyncio.run(build())
    assert FETCH_MAX_WAIT_MS == 100
    assert consumer._fetch_max_wait_ms == FETCH_MAX_WAIT_MS


class Seeker:
    """Faust's `Consumer.seek` as a rebalance leaves it: partitions no longer assigned refuse."""

    def __init__(self, assigned: set[TP]) -> None:
        self.assigned = assigned
        self.positions: dict[TP, int] = {}

    async def seek(self, tp: TP, offset: int) -> None:
        if tp not in self.assigned:
            raise RuntimeError(f"IllegalStateError: No current assignment for partition {tp}")
        self.positions[tp] = offset


def test_a_dropped_fetch_is_put_back_on_every_partition_still_ours() -> None:
    gone, kept, other = TP("reports.pharos", 0), TP("reports.pharos", 1), TP("internal.dedup", 1)
    records = {gone: [SimpleNamespace(offset=40)], kept: [SimpleNamespace(offset=o) for o in range(100, 150)],
               other: [SimpleNamespace(offset=7), SimpleNamespace(offset=8)], TP("ticks", 1): []}
    seeker = Seeker({kept, other})
    # the partition no longer assigned comes first: a seek of everything would stop there
    assert asyncio.run(rewind(seeker, records)) == 2
    assert seeker.positions == {kept: 100, other: 7}
    assert asyncio.run(rewind(seeker, None)) == 0

