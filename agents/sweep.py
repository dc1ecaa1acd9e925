"""Expiry of a table's stale entries, a bounded slice of one partition per tick.

Faust has no per-partition key scan, so this walks the partition's RocksDB (the store's `_dbs`,
one rocksdict per partition) from a cursor; deletions happen inside the partition's tick event,
so their tombstones go to the right changelog partition.

A pass over a partition begins at most once per `PASSES`-th of the `period` (an hour for 30
days): an entry past its time only costs disk until it is deleted (readers check their entries'
age themselves, e.g. `dedup.admit`), and re-reading a small table every few ticks cost ~4 µs
per key (its JSON).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

# (key, value, now_ms) -> whether the entry may be deleted
Stale = Callable[[bytes, bytes, int], bool]


class Sweeper:
    """Deletes the entries of `table` that `stale` says are past their time; counts them in `counter`."""

    PASSES = 720  # passes per period, at most

    def __init__(self, pipe: Any, table: Any, stale: Stale, period_ms: int, counter: str = "expired",
                 per_tick: int = 5_000) -> None:
        self.pipe, self.table, self.stale, self.period_ms = pipe, table, stale, period_ms
        self.counter, self.per_tick = counter, per_tick
        self.cursor: dict[int, bytes | None] = {}
        self.next_pass: dict[int, int] = {}  # per partition: no new pass before this time (ms)

    def sweep(self, partition: int, now: int) -> int:
        if self.cursor.get(partition) is None and now < self.next_pass.get(partition, 0):
            return 0
        db = self.table.partition_db(partition)
        if db is None:
            return 0
        expired, seen, last = [], 0, None
        for key, raw in db.items(from_key=self.cursor.get(partition)):
            seen += 1
            last = key
            if key.startswith(b"__faust"):  # the store's own bookkeeping (changelog offset)
                continue
            if self.stale(key, raw, now):
                expired.append(key)
            if seen >= self.per_tick:
                break
        self.cursor[partition] = last + b"\x00" if seen >= self.per_tick and last is not None else None
        if self.cursor[partition] is None:  # the pass is over
            self.next_pass[partition] = now + self.period_ms // self.PASSES
        for key in expired:
            del self.table[key]
        self.pipe.counters[self.counter] += len(expired)
        return len(expired)
