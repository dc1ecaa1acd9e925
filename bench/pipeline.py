"""One isolated pipeline for a benchmark: its own topics, app id, state folders and ClickHouse database;
`signalement worker` processes (one or more, one consumer group) and optionally `signalement sink`.

    with Run("thr", workers=1, sink=True) as run:
        run.preload(records)          # before the workers start: a backlog
        run.start()
        run.wait_outputs(expected, timeout)

Everything is removed afterwards (topics by prefix, the database, the temporary folder).
"""

from __future__ import annotations

import shutil
import tempfile
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import TracebackType
from typing import Any

from bench import kafkaio, procs
from bench.common import console, stack_settings, unique, with_prefix
from bench.load import Record
from sinks.migrate import client_for
from streams.admin import admin_client, create_topics, delete_topics
from streams.config import Settings
from streams.registry import Registry
from streams.topics import Topics


@dataclass
class Outcome:
    """What came out, counted against what went in."""

    sent: int
    items: int  # distinct referral_ids in the lanes and referrals.unroutable
    lane_records: int
    unroutable: int
    duplicates: int
    rejected: int  # distinct rejected records (by key: every benchmark record has its own)
    repeated: int  # lane records of a referral_id already seen (escalations)
    rejected_records: int  # rejections written (a record redelivered after a rebalance is rejected again)
    shown_twice: int  # lane records repeating a referral_id without escalation
    first_ts: int | None
    last_ts: int | None
    complete: bool
    shown_twice_examples: list[Any] = field(default_factory=list)  # up to 5, each the lane records of one id

    @property
    def accounted(self) -> int:
        return self.items + self.duplicates + self.rejected

    @property
    def span_s(self) -> float:
        if self.first_ts is None or self.last_ts is None:
            return 0.0
        return max(1e-3, (self.last_ts - self.first_ts) / 1000)


@dataclass
class Run:
    kind: str
    workers: int = 1
    sink: bool = False
    worker_env: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.base = stack_settings()
        self.prefix = unique(self.kind)
        self.tmp = Path(tempfile.mkdtemp(prefix=f"bench-{self.kind}-"))
        database = f"bench_{uuid.uuid4().hex[:10]}"
        self.settings: Settings = with_prefix(self.base, self.prefix, self.tmp, clickhouse_database=database)
        self.registry = Registry.load(self.settings.reporters_path, self.settings.operators_path)
        self.names = Topics(self.prefix, self.settings.partitions)
        self.lanes = kafkaio.lane_topics(self.names, self.registry.operators)
        self.outputs = [*self.lanes, self.names.unroutable, self.names.duplicates, self.names.rejected]
        self.procs: list[procs.Proc] = []
        self.sink_proc: procs.Proc | None = None
        self.tally: kafkaio.Tally | None = None
        self.started_at = 0.0
        self.last_check_s = 0.0  # how long the last lag read took (wait_lag)

    def __enter__(self) -> Run:
        create_topics(self.settings, self.registry)
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()
        if self.tally is not None:
            self.tally.close()
        try:
            delete_topics(self.base, [self.prefix])
        except Exception as err:  # clean-up must not hide the benchmark's own error
            console.print(f"  could not delete topics {self.prefix}*: {err}")
        if self.sink:
            try:
                client = client_for(self.settings)
                client.execute(f"DROP DATABASE IF EXISTS {self.settings.clickhouse_database}")
                client.disconnect()
            except Exception as err:
                console.print(f"  could not drop {self.settings.clickhouse_database}: {err}")
        if exc is not None:
            for p in self.procs:
                console.print(f"[red]{p.log_path}[/]:\n{p.log_tail(20)}", markup=True)
        shutil.rmtree(self.tmp, ignore_errors=True)

    def preload(self, records: Iterable[Record]) -> dict[str, int]:
        t = time.monotonic()
        counts = kafkaio.preload(self.settings, self.names, records)
        console.print(f"  preloaded {sum(counts.values()):,} referrals in {time.monotonic() - t:.1f} s {counts}")
        return counts

    def open_tally(self, **kw: Any) -> kafkaio.Tally:
        self.tally = kafkaio.Tally(self.settings, self.outputs, keyed={*self.lanes, self.names.unroutable},
                                   distinct={self.names.rejected}, **kw)
        return self.tally

    def start(self) -> None:
        if self.sink:
            self.sink_proc = procs.sink(self.settings, self.tmp).start()
        self.started_at = time.monotonic()
        for i in range(self.workers):
            w = replace(self.settings, worker_dir=self.tmp / f"worker{i}")
            self.procs.append(procs.worker(w, self.tmp, name=f"worker{i}", **self.worker_env).start())

    def stop(self) -> None:
        for p in self.procs:
            p.stop()
        if self.sink_proc is not None:
            self.sink_proc.stop()

    def check_alive(self) -> None:
        for p in self.procs:
            if not p.alive():
                raise RuntimeError(f"worker died:\n{p.log_tail()}")

    def outcome(self, sent: int) -> Outcome:
        t = self.tally
        assert t is not None
        lane_records = t.total(self.lanes)
        first, last = t.span()
        dups, rejected = t.by_topic[self.names.duplicates].count, len(t.distinct_keys[self.names.rejected])
        items = len(t.keys)
        return Outcome(sent, items, lane_records, t.by_topic[self.names.unroutable].count, dups, rejected,
                       t.repeated, t.by_topic[self.names.rejected].count, t.repeated_not_escalated, first, last,
                       items + dups + rejected >= sent, list(t.shown_twice))

    def wait_outputs(self, sent: int, timeout: float, quiet_s: float = 3.0) -> Outcome:
        """Tally outputs until every sent referral is accounted for (or timeout); then a short quiet period
        catches extras that should not be there (`quiet`, which a caller timing the drain calls after)."""
        t = self.tally or self.open_tally()
        end = time.monotonic() + timeout
        next_note = time.monotonic() + 15
        while time.monotonic() < end:
            t.poll(0.2)
            out = self.outcome(sent)
            if out.complete:
                return self.quiet(sent, quiet_s)
            self.check_alive()
            if time.monotonic() > next_note:
                console.print(f"  … {out.accounted:,} of {sent:,} accounted for "
                              f"({time.monotonic() - self.started_at:.0f} s since start)")
                next_note = time.monotonic() + 15
        return self.outcome(sent)

    def quiet(self, sent: int, seconds: float) -> Outcome:
        """Keep tallying for `seconds`: outputs that should not be there (a record shown twice) still come."""
        assert self.tally is not None
        self.tally.poll(seconds)
        return self.outcome(sent)

    def wait_group(self, timeout: float = 120.0) -> float:
        """Seconds until the worker group is stable with every worker holding partitions: the
        join and its rebalances over before a timed run (RuntimeError on timeout)."""
        admin, t0 = admin_client(self.settings), time.monotonic()
        while time.monotonic() - t0 < timeout:
            state, holding = kafkaio.group_assigned(admin, self.settings.app_id)
            if state == "STABLE" and holding >= self.workers:
                return time.monotonic() - t0
            self.check_alive()
            time.sleep(0.2)
        raise RuntimeError(f"worker group not stable with {self.workers} members holding partitions after {timeout:.0f} s")

    def worker_lag(self, topics: list[str] | None = None) -> int:
        """Messages of the worker's source topics (default: reports.*[.urgent], internal.dedup(.urgent),
        internal.routed) its group has not committed yet."""
        t = self.tally or self.open_tally()
        if topics is None:
            main, urgent = self.names.intake_topics(self.registry.reporters)
            topics = [*main, *urgent, *self.names.candidates, self.names.routed]
        return kafkaio.group_lag(t.c, self.settings.app_id, kafkaio.partitions(t.c, topics), self.settings)

    def sink_lag(self) -> int:
        from sinks.clickhouse import routes

        t = self.tally or self.open_tally()
        topics = sorted(routes(self.names, self.registry))
        return kafkaio.group_lag(t.c, f"{self.settings.app_id}-sink", kafkaio.partitions(t.c, topics), self.settings)

    def wait_lag(self, which: str, timeout: float, slack: int = 0, topics: list[str] | None = None,
                 every: float = 0.5) -> float | None:
        """Seconds until the group's lag is at most `slack` (markers, in-flight), None on timeout; the
        lag is read every `every` s (`last_check_s`: how long the read that saw it took)."""
        start, end = time.monotonic(), time.monotonic() + timeout
        while time.monotonic() < end:
            began = time.monotonic()
            lag = self.worker_lag(topics) if which == "worker" else self.sink_lag()
            self.last_check_s = time.monotonic() - began
            if 0 <= lag <= slack:
                return time.monotonic() - start
            time.sleep(every)
        return None
