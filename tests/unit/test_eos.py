"""Exactly-once helpers: the undo journal (after a kill, the tables go back to their state at the last
commit), commit statistics, urgent-commit freshness, aiokafka's coordinator lookup retried."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest
from rocksdict import Options, Rdict

from streams.eos import JOURNAL, STAGED, UNSTAGED, Staged, UndoJournal, restore_committed, settle

pytestmark = pytest.mark.unit


def table(path: Path) -> Rdict:
    return Rdict(str(path), options=Options(raw_mode=True))


def test_a_killed_transaction_is_undone_and_a_committed_one_kept(tmp_path: Path) -> None:
    p0, p1 = tmp_path / "t-dedup-0.db", tmp_path / "t-dedup-1.db"
    t0, t1 = table(p0), table(p1)
    t0.put(b"kept", b"v0")
    t0.put(b"changed", b"before")
    journal = UndoJournal(tmp_path / JOURNAL)
    # transaction A (partition 0): changes `changed`, adds `added`, deletes `kept`, changes `changed` again
    for key, value in ((b"changed", b"after"), (b"added", b"new"), (b"kept", None), (b"changed", b"after2")):
        journal.remember("app-0-0", str(p0).encode(), t0, key)
        if value is None:
            t0.delete(key)
        else:
            t0.put(key, value)
    # transaction B (partition 1) commits: its journal is forgotten, its writes stay
    journal.remember("app-0-1", str(p1).encode(), t1, b"b")
    t1.put(b"b", b"committed")
    journal.forget("app-0-1")
    # the kill: nothing closed cleanly
    journal.close()
    t0.close()
    t1.close()

    assert restore_committed(tmp_path) == 3
    t0, t1 = table(p0), table(p1)
    assert dict(t0.items()) == {b"kept": b"v0", b"changed": b"before"}
    assert dict(t1.items()) == {b"b": b"committed"}
    assert not (tmp_path / JOURNAL).exists()
    t0.close()
    t1.close()
    assert restore_committed(tmp_path) == 0  # nothing left to undo


def test_a_before_image_read_by_the_caller_is_saved_without_reading_again(tmp_path: Path) -> None:
    """TransactionalTable.read_for_update hands the journal the value it just read."""
    path = tmp_path / "t-dedup-0.db"
    t0 = table(path)
    t0.put(b"k", b"committed")

    class Unread:
        def get(self, key: bytes) -> bytes:
            raise AssertionError("the journal read the table again")

    journal = UndoJournal(tmp_path / JOURNAL)
    journal.remember("app-0-0", str(path).encode(), Unread(), b"k", b"committed")
    journal.remember("app-0-0", str(path).encode(), Unread(), b"new", None)
    journal.remember("app-0-0", str(path).encode(), t0, b"k")  # saved already in this transaction: no second read
    t0.put(b"k", b"uncommitted")
    t0.put(b"new", b"uncommitted")
    journal.close()
    t0.close()
    assert restore_committed(tmp_path) == 2
    t0 = table(path)
    assert dict(t0.items()) == {b"k": b"committed"}
    t0.close()


class Watched:
    """A table partition's RocksDB that checks, when a batch is written to it, that the journal
    already holds the before-image of every key in it."""

    def __init__(self, db: Rdict, journal: UndoJournal, path: Path) -> None:
        self.db, self.journal, self.path, self.batches = db, journal, str(path).encode(), 0

    def get(self, key: bytes) -> bytes | None:
        return self.db.get(key)

    def write(self, batch: Any) -> None:
        self.batches += 1
        saved = {k for k, _ in self.journal.db().items()}
        for key in (b"k", b"new"):
            assert self.path + b"\0" + key in saved, "a table write reached RocksDB before its before-image"
        self.db.write(batch)


def test_a_unit_of_work_writes_its_journal_then_its_table_writes_at_its_end(tmp_path: Path) -> None:
    """Staged: reads of the unit see its writes; RocksDB gets them at the end, before-images first;
    a kill after that still undoes them."""
    path = tmp_path / "t-dedup-0.db"
    t0 = table(path)
    t0.put(b"k", b"committed")
    t0.put(b"gone", b"committed")
    journal = UndoJournal(tmp_path / JOURNAL)
    db = Watched(t0, journal, path)
    staged = Staged(journal)
    token = STAGED.set(staged)
    try:
        for key, value in ((b"k", b"first"), (b"new", b"v"), (b"k", b"second")):
            journal.remember("app-0-0", db.path, db, key)
            staged.put(db, key, value)
        journal.remember("app-0-0", db.path, db, b"gone")
        staged.put(db, b"gone", None)
        assert staged.lookup(db, b"k") == b"second"
        assert staged.lookup(db, b"gone") is None  # deleted by the unit
        assert staged.lookup(db, b"other") is UNSTAGED
        assert t0.get(b"k") == b"committed" and t0.get(b"new") is None  # nothing written yet
        assert list(journal.db().keys()) == []
        settle()  # a read that does not look at the stage
    finally:
        STAGED.reset(token)
    assert db.batches == 1
    assert (t0.get(b"k"), t0.get(b"new"), t0.get(b"gone")) == (b"second", b"v", None)
    assert staged.lookup(db, b"k") is UNSTAGED  # flushed: RocksDB answers
    staged.flush()  # nothing left: no empty batch
    assert db.batches == 1
    journal.close()  # the kill, before the transaction committed
    t0.close()
    assert restore_committed(tmp_path) == 3
    t0 = table(path)
    assert dict(t0.items()) == {b"k": b"committed", b"gone": b"committed"}
    t0.close()


def test_an_unreadable_journal_wipes_the_tables(tmp_path: Path) -> None:
    tables = tmp_path / "tables"
    (tables / JOURNAL).mkdir(parents=True)
    (tables / JOURNAL / "CURRENT").write_text("garbage")
    (tables / "t-dedup-0.db").mkdir()
    assert restore_committed(tables) == -1
    assert not tables.exists()


def test_commit_stats_log_the_share_of_time_commits_held_the_pipeline(caplog: pytest.LogCaptureFixture) -> None:
    from streams.eos import CommitStats

    stats = CommitStats(every_s=3600)
    stats.add(0.010)
    stats.add(0.030)
    assert (stats.count, round(stats.total_s, 3), stats.max_s) == (2, 0.04, 0.03)
    assert not caplog.records  # not a minute yet
    stats.every_s = 0.0
    with caplog.at_level(logging.INFO, logger="signalement.eos"):
        stats.add(0.020)
    line = caplog.records[-1].getMessage()
    assert "committed=3 mean_ms=20.0 max_ms=30.0" in line and "busy_pct=" in line
    assert stats.count == 0 and stats.max_s == 0.0  # a new minute starts


def test_urgent_commits_only_for_fresh_records() -> None:
    from streams.app import URGENT_MAX_AGE_S, is_fresh

    now = 1_800_000_000.0
    assert is_fresh(now - 0.01, now) and is_fresh(now - URGENT_MAX_AGE_S, now)
    assert not is_fresh(now - URGENT_MAX_AGE_S - 0.001, now)  # behind a backlog
    assert is_fresh(now + 2.0, now)  # a reporter's clock ahead: a commit too many, never a delay
    assert not is_fresh(None, now)


def test_a_coordinator_lookup_that_loses_its_connection_is_retried(monkeypatch: pytest.MonkeyPatch) -> None:
    """aiokafka ends the producer's sender on a lost connection during a coordinator lookup; patched, it retries."""
    import asyncio

    from aiokafka.errors import KafkaConnectionError, KafkaError
    from aiokafka.producer.sender import Sender

    from streams import eos

    monkeypatch.setattr(Sender, "_find_coordinator", Sender._find_coordinator)  # restored after the test
    monkeypatch.setattr(eos, "CONNECTION_RETRY_S", 0.0)
    eos.patch_coordinator_lookup()

    class Client:
        def __init__(self, failures: list[Exception]) -> None:
            self.failures, self.lookups = failures, 0

        async def coordinator_lookup(self, _type: Any, _key: Any) -> int:
            self.lookups += 1
            if self.failures:
                raise self.failures.pop(0)
            return 1

        async def ready(self, _node: Any, group: Any = None) -> bool:
            return True

    def sender(failures: list[Exception]) -> Any:
        s = Sender.__new__(Sender)
        s.client, s._coordinators, s._retry_backoff = Client(failures), {}, 0.0
        s._txn_manager = type("Txn", (), {"transactional_id": "t"})()
        return s

    s = sender([KafkaConnectionError("closed"), KafkaConnectionError("closed")])
    assert asyncio.run(s._find_coordinator(0, "group")) == 1 and s.client.lookups == 3
    other = sender([KafkaError("boom")])  # any other error still ends it, as aiokafka meant
    with pytest.raises(KafkaError):
        asyncio.run(other._find_coordinator(0, "group"))


def test_the_pipeline_keeps_up_while_intake_takes_recent_reports() -> None:
    """Urgent commits hold for every hop only while intake's reports are recent (`Pipeline.arrived`)."""
    import time
    from types import SimpleNamespace

    from streams.app import URGENT_MAX_AGE_S, Pipeline

    pipe = SimpleNamespace(keeping_up=True)
    Pipeline.arrived(pipe, SimpleNamespace(timestamp=time.time() - 10 * URGENT_MAX_AGE_S))  # type: ignore[arg-type]
    assert pipe.keeping_up is False
    Pipeline.arrived(pipe, SimpleNamespace(timestamp=time.time()))  # type: ignore[arg-type]
    assert pipe.keeping_up is True


def test_periodic_commits_slow_down_only_behind_a_backlog(monkeypatch: pytest.MonkeyPatch) -> None:
    """`Pace`: the periodic commit waits only while an agent took old events lately and the last
    commit was less than the backlog interval ago; a backlog interval of 0 never waits."""
    from streams import eos

    clock = [1000.0]
    monkeypatch.setattr(eos.time, "monotonic", lambda: clock[0])
    pace = eos.Pace(backlog_interval=1.0)
    assert not pace.wait(last_commit_end=999.95)  # keeping up: every commit interval
    pace.saw_backlog()
    assert pace.wait(last_commit_end=999.95)  # behind, committed 50 ms ago
    assert not pace.wait(last_commit_end=998.9)  # behind, but the backlog interval has passed
    clock[0] += eos.Pace.BEHIND_HOLD_S + 0.01  # no old event since: keeping up again
    assert not pace.wait(last_commit_end=clock[0] - 0.05)
    off = eos.Pace(backlog_interval=0.0)
    off.saw_backlog()
    assert not off.wait(last_commit_end=clock[0])


def test_only_the_periodic_commit_is_paced() -> None:
    """A rebalance's or a stop's commit (no new transaction) and a commit of chosen topics run at
    once; the periodic one waits, before Faust takes its acknowledgements (nothing is lost)."""
    import asyncio

    from streams import eos

    calls: list[tuple[Any, bool]] = []

    class Base:
        transactions: Any = None

        async def commit(self, topics: Any = None, start_new_transaction: bool = True) -> bool:
            calls.append((topics, start_new_transaction))
            return True

    pace = eos.Pace(backlog_interval=10.0)
    pace.saw_backlog()
    consumer = eos.paced_consumer(Base, pace)()
    consumer.transactions = eos.PartitionTransactions.__new__(eos.PartitionTransactions)
    consumer.transactions.last_commit_end = eos.time.monotonic()
    assert asyncio.run(consumer.commit()) is False and calls == []  # periodic, behind: waits
    assert asyncio.run(consumer.commit(start_new_transaction=False)) is True  # rebalance / stop
    assert asyncio.run(consumer.commit({"t"})) is True  # chosen topics
    assert calls == [(None, False), ({"t"}, True)]
    pace.behind_until = 0.0  # caught up: the periodic commit runs
    assert asyncio.run(consumer.commit()) is True and calls[-1] == (None, True)


def test_a_batch_of_old_events_is_a_backlog() -> None:
    """An agent's batch whose first event is older than BACKLOG_AGE_S marks a backlog (`is_backlog`)."""
    from types import SimpleNamespace

    from streams.app import BACKLOG_AGE_S, is_backlog

    now = 1_800_000_000.0

    def event(stamp: float | None) -> Any:
        return SimpleNamespace(message=SimpleNamespace(timestamp=stamp))

    assert is_backlog([event(now - BACKLOG_AGE_S - 1), event(now)], now)
    assert not is_backlog([event(now - 0.1), event(now - 10 * BACKLOG_AGE_S)], now)  # the first decides
    assert not is_backlog([], now) and not is_backlog([event(None)], now)


def test_a_transaction_sends_only_the_last_write_of_each_key() -> None:
    """latest_writes: a compacted changelog keeps each key's last value, so earlier writes of a key in
    one unit of work are dropped; other keys, deletions and other partitions are kept, in order."""
    from streams.eos import latest_writes

    def w(key: bytes, value: bytes | None, partition: int = 0, topic: str = "app-dedup-items-changelog") -> Any:
        return (topic, key, value, partition, None)

    box = [w(b"a", b"1"), w(b"b", b"1"), w(b"a", b"2"), w(b"a", b"2", partition=1), w(b"c", b"1"),
           w(b"b", None), w(b"a", b"1", topic="app-reactions-changelog"), w(b"a", b"3")]
    assert latest_writes(box) == [w(b"a", b"2", partition=1), w(b"c", b"1"), w(b"b", None),
                                  w(b"a", b"1", topic="app-reactions-changelog"), w(b"a", b"3")]
    distinct = [w(b"a", b"1"), w(b"b", b"1")]
    assert latest_writes(distinct) is distinct and latest_writes([]) == []


def test_a_commit_carries_the_offsets_of_every_event_handled_before_it() -> None:
    """Faust's offsets lag the events handled while the commit waited for the work lock: the
    commit takes the later offset (their outputs are in the transaction), never goes back, and
    keeps Faust's where only Faust has one (the ticks)."""
    from faust.types import TP

    from streams.eos import offsets_to_commit

    reports, dedup, ticks, old = TP("reports.pharos", 2), TP("internal.dedup", 2), TP("ticks", 2), TP("reports.pharos", 3)
    faust = {reports: 777, dedup: 40, ticks: 9, old: 5}
    handled = {reports: 779, dedup: 40, old: 7}
    committed = {dedup: 41, old: 8}
    assert offsets_to_commit(faust, handled, committed) == {reports: 779, ticks: 9}
    assert offsets_to_commit({}, handled, {}) == handled
    assert offsets_to_commit({reports: 780}, handled, {}) == {reports: 780, dedup: 40, old: 7}


def test_the_seek_to_committed_offsets_puts_back_only_stream_partitions_never_committed() -> None:
    """aiokafka seeks only partitions with a committed offset above 0 (tests/integration/test_offsets.py);
    the others go back to their start, except the tables' changelogs, which recovery positions."""
    import asyncio
    from types import SimpleNamespace

    from faust.types import TP

    from streams.eos import patch_stable_seek

    committed = {TP("reports.pharos", 0): None, TP("reports.pharos", 1): 120, TP("internal.dedup", 2): 0,
                 TP("app-dedup-items-changelog", 2): None}
    sought: list[tuple[str, object]] = []

    class Aiokafka:
        def seek(self, tp: Any, offset: int) -> None:
            sought.append((f"{tp.topic}:{tp.partition}", offset))

    class Thread:
        app = SimpleNamespace(tables=SimpleNamespace(changelog_topics={"app-dedup-items-changelog"}),
                              conf=SimpleNamespace(consumer_auto_offset_reset="earliest"))

        def assignment(self) -> set[TP]:
            return set()  # no stable-offsets wait (it needs a broker)

        async def seek_to_committed(self) -> dict[TP, int | None]:
            return dict(committed)

        def _ensure_consumer(self) -> Aiokafka:
            return Aiokafka()

        async def call_thread(self, fun: Any, *args: Any) -> Any:
            return await fun(*args)

    patch_stable_seek(Thread, {}, "app")
    assert asyncio.run(Thread().seek_to_committed()) == committed  # Faust still gets what was committed
    assert sorted(sought) == [("internal.dedup:2", 0), ("reports.pharos:0", 0)]


def test_an_at_least_once_commit_after_a_refused_send_stops_the_worker() -> None:
    import asyncio

    from streams.eos import SendRefused, guarded_consumer, send_refused

    class App:
        def __init__(self) -> None:
            self.crashed: list[BaseException] = []

        async def crash(self, exc: BaseException) -> None:
            self.crashed.append(exc)

    class Base:
        def __init__(self, app: App) -> None:
            self.app, self.committed = app, []  # type: list[Any]

        async def _commit(self, offsets: Any) -> bool:
            self.committed.append(dict(offsets))
            return True

    consumer = guarded_consumer(Base)(App())
    assert asyncio.run(consumer._commit({"tp": 1})) is True  # nothing refused: Faust's commit
    send_refused(consumer.app, RuntimeError("MessageSizeTooLargeError"))
    send_refused(consumer.app, RuntimeError("OutOfOrderSequenceNumber"))  # the first refusal is the cause
    assert asyncio.run(consumer._commit({"tp": 2})) is False
    assert consumer.committed == [{"tp": 1}]
    (exc,) = consumer.app.crashed
    assert isinstance(exc, SendRefused) and "MessageSizeTooLargeError" in str(exc)
    other = guarded_consumer(Base)(App())  # refusals are per app
    assert asyncio.run(other._commit({"tp": 3})) is True
