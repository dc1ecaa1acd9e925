"""Windows: internal.windows (reactions keyed by operator|priority) + ticks -> reaction.windows.

Window states live in a RocksDB table (one key per window) so a restart resumes them; the
open windows of each partition are also held in a `WindowBook`, which decides what to emit
(at most once per interval per window, and once more, closed, after the grace period).

The agent takes events in batches (`stream.take_events`) and handles each partition's events
together, as that partition's current event (table writes go to its changelog partition):
every event is counted (its mask written) as before, but each window it touched is stored once
per batch instead of once per event, and the book is flushed once per batch. An event touches
12 windows (1 h size, 5 min step), so per-event storage was 13 table writes, i.e. 13 changelog
records, per reaction: the windows agent's share of the profile under decisions
(docs/benchmarks.md). Offsets are committed only after the batch is handled. The ticks also
forget each referral's counted events a dedup horizon after the last one (`counted_stale`).
"""

from __future__ import annotations

import logging
from collections import defaultdict
from typing import Any

from agents.logic import windows as logic
from agents.sweep import Sweeper
from agents.ticks import register_ticks
from streams.app import Pipeline, acting_for, now_ms, partition_groups
from streams.records import Reaction

log = logging.getLogger("signalement.windows")
WATERMARK = "~watermark|{}"
BATCH, BATCH_WITHIN_S = 1000, 0.05  # windows are emitted at most once a second: 50 ms of batching is free


def _key(key: logic.WindowKey) -> bytes:
    return f"{key[0]}|{key[1]}|{key[2]}".encode()


def _parse(raw: bytes) -> logic.WindowKey:
    op, prio, start = raw.decode().rsplit("|", 2)
    return op, prio, int(start)


class Windower:
    """Per-partition window books over the windows table; the agent body only dispatches."""

    def __init__(self, pipe: Pipeline, states: Any, counted: Any) -> None:
        self.pipe, self.states, self.counted = pipe, states, counted
        retention = pipe.policy.dedup_horizon_ms
        # a referral's counted events are forgotten a horizon after the last one (`counted_stale`)
        self.sweeper = Sweeper(pipe, counted, lambda _key, raw, now: counted_stale(raw, now, retention), retention,
                               counter="counted_forgotten")
        self.books: dict[int, logic.WindowBook] = {}
        self.keys_of: dict[int, set[bytes]] = defaultdict(set)

    def book(self, partition: int) -> logic.WindowBook:
        """The partition's book, restored from the table the first time it is needed."""
        if partition not in self.books:
            p = self.pipe.policy
            book = logic.WindowBook(p.window_size_ms, p.window_step_ms, p.window_grace_ms, p.window_emit_interval_ms)
            raw_wm = self.states.get(WATERMARK.format(partition).encode())
            restored = []
            for key, raw in self.states.items():
                if not key.startswith(b"~") and int(raw[:4]) == partition:
                    restored.append((_parse(key), logic.WindowState.from_bytes(raw[4:])))
                    self.keys_of[partition].add(key)
            book.restore(restored, int(raw_wm) if raw_wm is not None else logic.NO_WATERMARK)
            self.books[partition] = book
        return self.books[partition]

    async def on_reaction(self, msg: Any) -> None:
        """Count one reaction, store the windows it touched and flush (one event at a time)."""
        touched: set[logic.WindowKey] = set()
        self._count(msg, touched)
        self._store_touched(msg.partition, touched)
        await self.flush(msg.partition)

    async def on_batch(self, events: list[Any], ticks: str) -> None:
        """Count a batch partition by partition; store each touched window once; flush each partition once."""
        for group in partition_groups(events):
            partition = group[-1].message.partition
            with acting_for(group[-1]):
                async with self.pipe.work(*group) as current:
                    if not current:  # fetched under an earlier assignment (Pipeline.work)
                        continue
                    touched: set[logic.WindowKey] = set()
                    for event in current:
                        msg = event.message
                        if msg.topic == ticks:
                            self._sweep(partition)
                            continue
                        try:
                            self._count(msg, touched)
                        except Exception:  # internal topic: a bug must cost one record, never the stream
                            log.exception("windows failed on %s/%s/%s", msg.topic, msg.partition, msg.offset)
                    try:
                        self._store_touched(partition, touched)
                        await self.flush(partition)
                    except Exception:
                        log.exception("windows: storing or flushing partition %s failed", partition)

    def _count(self, msg: Any, touched: set[logic.WindowKey]) -> None:
        """Add the reaction's uncounted events to the book; note the windows they changed."""
        reaction: Reaction = self.pipe.codec.decode(msg.value, "Reaction")  # type: ignore[assignment]
        rid = reaction["referral_id"].encode()
        raw = self.counted.read(rid)
        events, new_mask = logic.events_of(reaction, counted_mask(raw) if raw is not None else 0)
        if not events:
            return
        self.counted[rid] = b"%d:%d" % (new_mask, now_ms())
        book, now = self.book(msg.partition), now_ms()
        for event in events:
            late = book.add(event, now)
            if late:
                log.info("late event referral=%s kind=%s windows=%s", event.referral_id, event.kind, late)
            for start in logic.windows_for(event.at, book.size_ms, book.step_ms):
                touched.add((event.operator_id, event.priority, start))

    def _sweep(self, partition: int) -> None:
        try:
            self.sweeper.sweep(partition, now_ms())
        except Exception:  # retention is housekeeping: it must never stop the windows
            log.exception("windows: sweeping partition %s failed", partition)

    def _store_touched(self, partition: int, touched: set[logic.WindowKey]) -> None:
        book = self.book(partition)
        for key in sorted(touched):
            state = book.states.get(key)
            if state is not None:
                self._store(partition, key, state)

    def _store(self, partition: int, key: logic.WindowKey, state: logic.WindowState) -> None:
        raw = _key(key)
        self.states[raw] = b"%04d" % partition + state.to_bytes()
        self.keys_of[partition].add(raw)

    async def flush(self, partition: int) -> None:
        """Emit what the book says is due; drop closed windows from the table."""
        book = self.book(partition)
        for key, record in book.flush(now_ms()):
            wid = logic.window_id(key[0], key[1], key[2], book.size_ms).encode()
            await self.pipe.send(self.pipe.names.windows, wid, self.pipe.codec.encode("ReactionWindow", record))
            self.pipe.counters["windows"] += 1
            if record["closed"] and _key(key) in self.keys_of[partition]:
                self.keys_of[partition].discard(_key(key))
                del self.states[_key(key)]
        self.states[WATERMARK.format(partition).encode()] = str(book.watermark).encode()


def counted_mask(raw: bytes) -> int:
    """The events of a referral counted so far: `mask:written_at` (`mask` alone before session 20)."""
    return int(raw.split(b":", 1)[0])


def counted_stale(raw: bytes, now: int, retention_ms: int) -> bool:
    """Whether a referral's counted events may be forgotten: none counted for `retention_ms` (the
    dedup horizon). Its windows closed long before (size + grace), so an event of it seen again
    could not be counted twice; values written before session 20 carry no time and are kept."""
    _mask, sep, at = raw.partition(b":")
    return bool(sep) and now - int(at) > retention_ms


def register(pipe: Pipeline) -> Any:
    """The windows agent and its tables (window states, counted events per referral)."""
    windower = Windower(pipe, pipe.table("window-states"), pipe.table("window-counted"))
    names = pipe.names
    source = pipe.source(names.window_input, names.ticks)
    register_ticks(pipe)

    @pipe.app.agent(source, name="signalement.windows")
    async def windows(stream: Any) -> None:
        """internal.windows + ticks -> reaction.windows"""
        async for events in stream.take_events(BATCH, BATCH_WITHIN_S):
            await windower.on_batch(events, names.ticks)

    return windows
