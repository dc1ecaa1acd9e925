"""Hopping reaction windows per (operator, priority): assignment, state, emission and closing.

What a window counts (the contract: "hopping windows over the decision time", i.e. over the
``acted_at`` of the operator's events on its decisions topic):

* A Reaction yields up to two window events: its ACK (at ``acked_at``, ``time_to_ack_ms``) and
  its DECISION (at ``decided_at``, ``time_to_decision_ms``, ``decision_on_time``). Each is placed
  in the windows holding its own time. A final action that also acknowledges gives both at once.
* ``decided``/``on_time``/``breached``/``pXX_ms``/``max_ms``/``mean_ms`` are over the DECISION
  events; ``acked``/``ack_p90_ms`` over the ACK events. So a referral acknowledged but not yet
  decided already shows in the ack figures (what a 15-minute ack deadline needs), and the
  ack figures of a window do not wait for decisions that may take 7 days.
* Each (referral_id, kind) counts once: the Reaction is re-emitted on ack and on decision, and
  Kafka may deliver one twice. The agent keeps a bitmask per referral_id (a table keyed like
  the ``reactions`` topic) and calls ``events_of(reaction, mask)``, which returns only the
  events not yet counted and the new mask to store.
* An event is placed under the reaction's priority at the time it is counted (an escalated
  referral's decision counts on its new lane).

Emission (``WindowBook.flush``, called by the agent's timer, e.g. every emit interval):

* a changed window is emitted at most once per ``emit_interval_ms`` (wall clock); changes made
  meanwhile stay pending and go out at a later flush;
* the watermark is the largest event time seen, never ahead of the wall clock given to ``add``
  (an operator clock in the future must not close every window); a window closes when
  ``watermark >= window_end + grace``: it is emitted once more with ``closed=True`` and dropped;
* an event for a window that is already closed (by that rule, so a restart cannot reopen it as
  long as the watermark is restored) is late: ignored for that window and returned to the agent.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable
from dataclasses import dataclass

from agents.logic.sketch import QuantileSketch
from streams.records import Reaction, ReactionWindow

KIND_ACK = "ACK"
KIND_DECISION = "DECISION"
MASK_ACK = 1
MASK_DECISION = 2
QUANTILES = (0.5, 0.9, 0.99)
NO_WATERMARK = -(1 << 62)

WindowKey = tuple[str, str, int]  # (operator_id, priority, window_start)


def windows_for(ts_ms: int, size_ms: int, step_ms: int) -> list[int]:
    """Starts (ascending, multiples of step) of the windows with ``start <= ts < start + size``."""
    if size_ms <= 0 or step_ms <= 0:
        raise ValueError(f"window size and step must be positive: {size_ms}, {step_ms}")
    last = ts_ms - ts_ms % step_ms
    first = -(-(ts_ms - size_ms + 1) // step_ms) * step_ms
    return list(range(first, last + 1, step_ms))


def window_id(operator_id: str, priority: str, start_ms: int, size_ms: int) -> str:
    """The Kafka key of a window aggregate: stable and unique per window."""
    return f"{operator_id}/{priority}/{size_ms}/{start_ms}"


def may_emit(last_emitted_at: int | None, now_ms: int, interval_ms: int) -> bool:
    """Rate limit: a window goes out at most once per interval."""
    return last_emitted_at is None or now_ms - last_emitted_at >= interval_ms


@dataclass(frozen=True, slots=True)
class WindowEvent:
    """One countable fact of a reaction: its acknowledgement or its decision."""

    referral_id: str
    operator_id: str
    priority: str
    kind: str
    at: int
    elapsed_ms: int
    on_time: bool


def events_of(reaction: Reaction, counted: int = 0) -> tuple[list[WindowEvent], int]:
    """The reaction's events not in the ``counted`` bitmask, and the bitmask once they are."""
    events = []
    mask = counted
    acked_at, ack_ms = reaction["acked_at"], reaction["time_to_ack_ms"]
    if not counted & MASK_ACK and acked_at is not None and ack_ms is not None:
        events.append(_event(reaction, KIND_ACK, acked_at, ack_ms, bool(reaction["ack_on_time"])))
        mask |= MASK_ACK
    decided_at, decision_ms = reaction["decided_at"], reaction["time_to_decision_ms"]
    if not counted & MASK_DECISION and decided_at is not None and decision_ms is not None:
        events.append(_event(reaction, KIND_DECISION, decided_at, decision_ms, bool(reaction["decision_on_time"])))
        mask |= MASK_DECISION
    return events, mask


def _event(reaction: Reaction, kind: str, at: int, elapsed_ms: int, on_time: bool) -> WindowEvent:
    """Build one event from a reaction's identity."""
    return WindowEvent(reaction["referral_id"], reaction["operator_id"], reaction["priority"], kind, at,
                       elapsed_ms, on_time)


_STATE = struct.Struct("<BQQQQ")  # version, decided, on_time, breached, acked


class WindowState:
    """Aggregates of one window: counters and sketches of time to decision and to ack."""

    __slots__ = ("ack", "acked", "breached", "decided", "decision", "on_time")

    def __init__(self) -> None:
        self.decided = 0
        self.on_time = 0
        self.breached = 0
        self.acked = 0
        self.decision = QuantileSketch()
        self.ack = QuantileSketch()

    def add_decision(self, time_to_decision_ms: int, on_time: bool) -> None:
        """Count one decided referral."""
        self.decided += 1
        if on_time:
            self.on_time += 1
        else:
            self.breached += 1
        self.decision.add(time_to_decision_ms)

    def add_ack(self, time_to_ack_ms: int) -> None:
        """Count one acknowledged referral."""
        self.acked += 1
        self.ack.add(time_to_ack_ms)

    def add_event(self, event: WindowEvent) -> None:
        """Count one event in this window, by kind."""
        if event.kind == KIND_DECISION:
            self.add_decision(event.elapsed_ms, event.on_time)
        else:
            self.add_ack(event.elapsed_ms)

    @property
    def max_ms(self) -> int:
        """Longest time to decision."""
        return self.decision.max

    @property
    def sum_ms(self) -> int:
        """Total time to decision (for the mean)."""
        return self.decision.sum

    def merge(self, other: WindowState) -> None:
        """Fold another state of the same window in (e.g. two partitions' partial states)."""
        self.decided += other.decided
        self.on_time += other.on_time
        self.breached += other.breached
        self.acked += other.acked
        self.decision.merge(other.decision)
        self.ack.merge(other.ack)

    def to_bytes(self) -> bytes:
        """Serialise for a state table."""
        head = _STATE.pack(1, self.decided, self.on_time, self.breached, self.acked)
        return head + self.decision.to_bytes() + self.ack.to_bytes()

    @classmethod
    def from_bytes(cls, data: bytes) -> WindowState:
        """Inverse of ``to_bytes``."""
        try:
            version, decided, on_time, breached, acked = _STATE.unpack_from(data, 0)
        except struct.error as exc:
            raise ValueError(f"bad window state bytes: {exc}") from exc
        if version != 1:
            raise ValueError(f"unknown window state version {version}")
        state = cls()
        state.decided, state.on_time, state.breached, state.acked = decided, on_time, breached, acked
        state.decision, offset = QuantileSketch.read(data, _STATE.size)
        state.ack, offset = QuantileSketch.read(data, offset)
        if offset != len(data):
            raise ValueError("trailing bytes after window state")
        return state


def to_record(operator_id: str, priority: str, start: int, size: int, state: WindowState, now_ms: int,
              closed: bool) -> ReactionWindow:
    """The ``reaction.windows`` value of a window (quantiles 0 while nothing is decided)."""
    p50, p90, p99 = state.decision.quantiles(QUANTILES)
    return {
        "operator_id": operator_id,
        "priority": priority,
        "window_start": start,
        "window_end": start + size,
        "decided": state.decided,
        "on_time": state.on_time,
        "breached": state.breached,
        "p50_ms": p50,
        "p90_ms": p90,
        "p99_ms": p99,
        "max_ms": state.decision.max,
        "mean_ms": state.decision.mean,
        "acked": state.acked,
        "ack_p90_ms": state.ack.quantile(0.9),
        "updated_at": now_ms,
        "closed": closed,
    }


class WindowBook:
    """The open windows of one agent (partition): add events, flush changed and closed windows."""

    def __init__(self, size_ms: int, step_ms: int, grace_ms: int, emit_interval_ms: int,
                 watermark: int = NO_WATERMARK, wall_clock_lag_ms: int | None = None) -> None:
        """``wall_clock_lag_ms``: if set, flush also moves the watermark to ``now - lag``, so a
        quiet partition still closes its windows."""
        windows_for(0, size_ms, step_ms)  # validates
        self.size_ms = size_ms
        self.step_ms = step_ms
        self.grace_ms = grace_ms
        self.emit_interval_ms = emit_interval_ms
        self.wall_clock_lag_ms = wall_clock_lag_ms
        self.watermark = watermark
        self.late = 0
        self.states: dict[WindowKey, WindowState] = {}
        self._starts: dict[int, set[WindowKey]] = {}
        self._dirty: set[WindowKey] = set()
        self._last_emit: dict[WindowKey, int] = {}

    def is_closed(self, start: int) -> bool:
        """Closed (or due to close) windows accept nothing any more."""
        return start + self.size_ms + self.grace_ms <= self.watermark

    def add(self, event: WindowEvent, now_ms: int) -> list[int]:
        """Count the event in its open windows; returns the starts of the windows it was late for."""
        late = []
        closed_before = self.watermark - self.size_ms - self.grace_ms  # start <= this: closed
        for start in windows_for(event.at, self.size_ms, self.step_ms):
            if start <= closed_before:
                late.append(start)
                continue
            key = (event.operator_id, event.priority, start)
            state = self.states.get(key)
            if state is None:
                state = self.states[key] = WindowState()
                self._starts.setdefault(start, set()).add(key)
            state.add_event(event)
            self._dirty.add(key)
        if late:
            self.late += 1
        self.advance(min(event.at, now_ms))
        return late

    def advance(self, watermark: int) -> None:
        """Move the event-time watermark forward (never back)."""
        if watermark > self.watermark:
            self.watermark = watermark

    def flush(self, now_ms: int) -> list[tuple[WindowKey, ReactionWindow]]:
        """Records to emit now: closing windows (``closed=True``, dropped), then changed ones past their rate limit."""
        if self.wall_clock_lag_ms is not None:
            self.advance(now_ms - self.wall_clock_lag_ms)
        out = self._close(now_ms)
        for key in [k for k in self._dirty if may_emit(self._last_emit.get(k), now_ms, self.emit_interval_ms)]:
            self._dirty.discard(key)
            self._last_emit[key] = now_ms
            out.append((key, self._record(key, self.states[key], now_ms, False)))
        return out

    def _close(self, now_ms: int) -> list[tuple[WindowKey, ReactionWindow]]:
        """Emit and drop every window the watermark has closed."""
        out = []
        for start in sorted(s for s in self._starts if self.is_closed(s)):
            for key in sorted(self._starts.pop(start)):
                out.append((key, self._record(key, self.states.pop(key), now_ms, True)))
                self._dirty.discard(key)
                self._last_emit.pop(key, None)
        return out

    def _record(self, key: WindowKey, state: WindowState, now_ms: int, closed: bool) -> ReactionWindow:
        """The record of a window of this book."""
        return to_record(key[0], key[1], key[2], self.size_ms, state, now_ms, closed)

    def restore(self, items: Iterable[tuple[WindowKey, WindowState]], watermark: int) -> None:
        """Rebuild from a state table at start-up; restored windows are re-emitted (or closed) at next flush."""
        self.advance(watermark)
        for key, state in items:
            self.states[key] = state
            self._starts.setdefault(key[2], set()).add(key)
            self._dirty.add(key)

    @property
    def pending(self) -> int:
        """Changed windows not yet emitted."""
        return len(self._dirty)
