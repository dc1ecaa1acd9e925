"""The dedup sweeper (agents.routing.Sweeper) over a real RocksDB partition: it deletes the items
past the horizon a slice per tick, and begins a new pass at most once per 720th of the horizon."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import rocksdict

from agents.logic import dedup
from agents.routing import Sweeper

pytestmark = pytest.mark.unit

HORIZON = 720_000  # ms: a pass at most every 1,000 ms
NOW = 10_000_000


class Table:
    """What the sweeper uses of the worker's table: one partition's RocksDB, and deletes."""

    def __init__(self, folder: Path) -> None:
        self.db = rocksdict.Rdict(str(folder))

    def partition_db(self, partition: int) -> Any:
        return self.db if partition == 0 else None

    def __setitem__(self, key: bytes, value: bytes) -> None:
        self.db[key] = value

    def __delitem__(self, key: bytes) -> None:
        del self.db[key]

    def keys(self) -> list[bytes]:
        return list(self.db.keys())


def item(routed_at: int) -> bytes:
    return dedup.dumps({"c": {"routed_at": routed_at}, "ids": ["r"], "done": False})


@pytest.fixture
def table(tmp_path: Path) -> Any:
    t = Table(tmp_path / "p0")
    yield t
    t.db.close()


def sweeper(table: Table, per_tick: int = 5_000) -> Sweeper:
    pipe = SimpleNamespace(policy=SimpleNamespace(dedup_horizon_ms=HORIZON), counters=Counter())
    return Sweeper(pipe, table, per_tick)  # type: ignore[arg-type]


def test_a_pass_deletes_the_expired_items_only(table: Table) -> None:
    for n in range(5):
        table[b"old%d" % n] = item(NOW - HORIZON - 1)
    for n in range(3):
        table[b"new%d" % n] = item(NOW - HORIZON)  # exactly at the horizon: still counts
    table[b"__faust\x00offset"] = b"12"  # the store's own bookkeeping is left alone
    s = sweeper(table)
    assert s.sweep(0, NOW) == 5
    assert sorted(table.keys()) == [b"__faust\x00offset", b"new0", b"new1", b"new2"]
    assert s.pipe.counters["expired"] == 5
    assert s.sweep(1, NOW) == 0  # a partition this worker does not hold


def test_a_new_pass_waits_for_its_turn_a_pass_under_way_does_not(table: Table) -> None:
    s = sweeper(table, per_tick=2)
    for n in range(3):
        table[b"a%d" % n] = item(NOW - HORIZON - 1)
    assert s.sweep(0, NOW) == 2  # a slice of 2 keys: the pass goes on at the next tick
    assert s.sweep(0, NOW) == 1  # under way: not held back, and now over
    table[b"b"] = item(NOW - HORIZON - 1)
    assert s.sweep(0, NOW + 999) == 0  # the next pass begins HORIZON / 720 = 1,000 ms after
    assert table.keys() == [b"b"]
    assert s.sweep(0, NOW + 1_000) == 1
    assert table.keys() == []
