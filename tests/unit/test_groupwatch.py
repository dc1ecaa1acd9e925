"""GroupWatch: when a consumer that held partitions has been without any for too long (streams/groupwatch.py)."""

from __future__ import annotations

from typing import Any

from streams.groupwatch import GroupWatch


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def watch(clock: Clock) -> GroupWatch:
    return GroupWatch("test", limit=60.0, every=1.0, clock=clock)


def test_a_member_that_never_had_partitions_is_left_alone() -> None:
    clock = Clock()
    w = watch(clock)
    for _ in range(10):
        clock.now += 100
        assert not w.stuck(0)


def test_lost_partitions_count_only_after_the_limit_and_regaining_them_resets() -> None:
    clock = Clock()
    w = watch(clock)
    assert not w.stuck(12)
    clock.now += 1
    assert not w.stuck(0)  # lost now
    clock.now += 59
    assert not w.stuck(0)
    clock.now += 1
    assert w.stuck(0)  # 60 s without partitions
    assert not w.stuck(12)  # back: all forgiven
    clock.now += 30
    assert not w.stuck(0)
    clock.now += 59
    assert not w.stuck(0)


def test_a_replacement_gets_the_limit_to_be_assigned_then_is_replaced_in_turn() -> None:
    clock = Clock()
    w = watch(clock)
    w.stuck(4)
    w.stuck(0)
    clock.now += 60
    assert w.stuck(0)
    w.renewed()
    clock.now += 59
    assert not w.stuck(0)
    clock.now += 1
    assert w.stuck(0)
    assert w.replaced == 1


class Consumer:
    def __init__(self, parts: list[Any]) -> None:
        self.parts = parts

    def assignment(self) -> list[Any]:
        if self.parts is None:
            raise RuntimeError("Consumer closed")
        return self.parts


def test_check_asks_the_consumer_at_most_every_second_and_a_broken_one_holds_nothing() -> None:
    clock = Clock()
    w = watch(clock)
    c = Consumer([1, 2])
    assert not w.check(c)
    c.parts = []
    clock.now += 0.5
    assert not w.check(c)  # not asked yet
    assert w.lost_since is None
    clock.now += 0.5
    assert not w.check(c)
    assert w.lost_since == clock.now
    c.parts = None  # type: ignore[assignment]
    clock.now += 60
    assert w.check(c)


class SinkConsumer:
    """Held partitions for its first calls, then none (stranded); consume() returns nothing."""

    made: list[SinkConsumer] = []

    def __init__(self, stranded_after: int) -> None:
        self.calls, self.stranded_after, self.closed = 0, stranded_after, False
        SinkConsumer.made.append(self)

    def assignment(self) -> list[str]:
        self.calls += 1
        return [] if self.calls > self.stranded_after else ["referrals.accepted[0]"]

    def consume(self, num_messages: int, timeout: float) -> list[Any]:
        return []

    def close(self) -> None:
        self.closed = True


def test_the_sink_replaces_a_stranded_consumer(monkeypatch: Any) -> None:
    import sinks.clickhouse as sink_module
    from sinks.clickhouse import ClickHouseSink
    from streams.config import Settings
    from streams.topics import Topics

    class QuickWatch(GroupWatch):
        def __init__(self, name: str) -> None:
            super().__init__(name, limit=0.3, every=0.0)

    monkeypatch.setattr(sink_module, "GroupWatch", QuickWatch)
    SinkConsumer.made = []
    sink = ClickHouseSink(Settings(), Topics(), apply_migrations=False)
    monkeypatch.setattr(sink, "consumer", lambda: SinkConsumer(stranded_after=3 if not SinkConsumer.made else 10**9))
    assert sink.run_until(lambda: len(SinkConsumer.made) == 2, timeout=10)
    first, second = SinkConsumer.made
    assert first.closed and second.closed  # the stranded one when replaced, the new one when the loop ended
    assert sink.watch is not None and sink.watch.replaced == 1
