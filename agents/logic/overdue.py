"""Deadline index and overdue alerts: the timer looks only at deadlines already passed.

A deadline is missed when ``now > deadline`` (acting at the deadline instant is on time, as in
``ack_on_time = acked_at <= ack_deadline``). The index buckets entries by
``deadline // bucket_ms``; a min-heap of bucket numbers lets ``due`` pop the passed buckets
without touching the others, so a tick costs O(due + log buckets), never O(referrals).

"At most one alert per referral and kind": ``due`` pops what it returns, and the agent records
the alerted kinds (a bitmask per referral_id in a table, ``ALERT_MASK``) and passes them to
``track`` so a later update (e.g. an escalation) never re-arms a deadline already alerted.
At start-up the index is rebuilt with ``from_items`` from the reactions table.
"""

from __future__ import annotations

import heapq
from collections.abc import Container, Iterable

from streams.records import OverdueAlert, Reaction

KIND_ACK = "ACK"
KIND_DECISION = "DECISION"
KINDS = (KIND_ACK, KIND_DECISION)
ALERT_MASK = {KIND_ACK: 1, KIND_DECISION: 2}
DEFAULT_BUCKET_MS = 1_000

Entry = tuple[str, str]  # (referral_id, kind)
Due = tuple[str, str, int]  # (referral_id, kind, deadline)


class DeadlineIndex:
    """Pending deadlines by time bucket; add/remove O(1), due pops only the passed buckets."""

    def __init__(self, bucket_ms: int = DEFAULT_BUCKET_MS) -> None:
        if bucket_ms <= 0:
            raise ValueError(f"bucket_ms must be positive: {bucket_ms}")
        self.bucket_ms = bucket_ms
        self._deadline: dict[Entry, int] = {}
        self._buckets: dict[int, set[Entry]] = {}
        self._heap: list[int] = []
        self._queued: set[int] = set()  # bucket numbers in the heap, so each is pushed once

    def add(self, referral_id: str, kind: str, deadline: int) -> None:
        """Watch (or move) one deadline."""
        entry = (referral_id, kind)
        old = self._deadline.get(entry)
        if old == deadline:
            return
        if old is not None:
            self._discard(entry, old)
        self._deadline[entry] = deadline
        bucket = deadline // self.bucket_ms
        members = self._buckets.get(bucket)
        if members is None:
            members = self._buckets[bucket] = set()
            if bucket not in self._queued:
                self._queued.add(bucket)
                heapq.heappush(self._heap, bucket)
        members.add(entry)

    def remove(self, referral_id: str, kind: str) -> bool:
        """Stop watching a deadline (it was met); False if it was not watched."""
        entry = (referral_id, kind)
        deadline = self._deadline.pop(entry, None)
        if deadline is None:
            return False
        self._discard(entry, deadline)
        return True

    def _discard(self, entry: Entry, deadline: int) -> None:
        """Take an entry out of its bucket; an emptied bucket stays in the heap until popped."""
        bucket = deadline // self.bucket_ms
        members = self._buckets[bucket]
        members.discard(entry)
        if not members:
            del self._buckets[bucket]

    def due(self, now_ms: int) -> list[Due]:
        """Pop and return every deadline passed at ``now_ms`` (``deadline < now``), by deadline."""
        out: list[Due] = []
        last = (now_ms - 1) // self.bucket_ms  # the bucket of the latest passable deadline
        heap = self._heap
        while heap and heap[0] <= last:
            bucket = heap[0]
            members = self._buckets.get(bucket)
            if members is None:
                self._queued.discard(heapq.heappop(heap))  # emptied by removals
                continue
            passed = [e for e in members if self._deadline[e] < now_ms]
            for entry in passed:
                out.append((entry[0], entry[1], self._deadline.pop(entry)))
                members.discard(entry)
            if members:
                break  # the current bucket keeps deadlines not passed yet
            del self._buckets[bucket]
            self._queued.discard(heapq.heappop(heap))
        out.sort(key=lambda d: (d[2], d[0], d[1]))
        return out

    def track(self, reaction: Reaction, alerted: Container[str] = ()) -> None:
        """Sync the index with a reaction: watch its pending deadlines, drop the met ones."""
        rid = reaction["referral_id"]
        pending = dict(pending_deadlines(reaction))
        for kind in KINDS:
            if kind in pending and kind not in alerted:
                self.add(rid, kind, pending[kind])
            else:
                self.remove(rid, kind)

    def deadline_of(self, referral_id: str, kind: str) -> int | None:
        """The watched deadline, if any."""
        return self._deadline.get((referral_id, kind))

    def __len__(self) -> int:
        return len(self._deadline)

    def __contains__(self, entry: object) -> bool:
        return entry in self._deadline

    @classmethod
    def from_items(cls, items: Iterable[Due], bucket_ms: int = DEFAULT_BUCKET_MS) -> DeadlineIndex:
        """Rebuild at start-up from (referral_id, kind, deadline) triples."""
        index = cls(bucket_ms)
        for referral_id, kind, deadline in items:
            index.add(referral_id, kind, deadline)
        return index


def alerted_kinds(mask: int) -> set[str]:
    """The kinds recorded in an alerted bitmask (``ALERT_MASK``), for ``track``."""
    return {kind for kind, bit in ALERT_MASK.items() if mask & bit}


def pending_deadlines(reaction: Reaction) -> list[tuple[str, int]]:
    """The deadlines a reaction still has to meet: ACK until acknowledged, DECISION until decided."""
    out = []
    if reaction["acked_at"] is None:
        out.append((KIND_ACK, reaction["ack_deadline"]))
    if reaction["decided_at"] is None:
        out.append((KIND_DECISION, reaction["decision_deadline"]))
    return out


def overdue_alert(reaction: Reaction, kind: str, now_ms: int) -> OverdueAlert | None:
    """The alert for a missed deadline, or None when it is not passed or was met in time.

    An act after the deadline still yields an alert (the deadline was missed), so an alert
    delayed by the timer is not lost; the agent's alerted mask keeps it to one per kind.
    """
    if kind == KIND_ACK:
        deadline, done_at = reaction["ack_deadline"], reaction["acked_at"]
    elif kind == KIND_DECISION:
        deadline, done_at = reaction["decision_deadline"], reaction["decided_at"]
    else:
        raise ValueError(f"unknown deadline kind {kind!r}")
    if now_ms <= deadline or (done_at is not None and done_at <= deadline):
        return None
    return {
        "referral_id": reaction["referral_id"],
        "operator_id": reaction["operator_id"],
        "priority": reaction["priority"],
        "deadline_kind": kind,
        "deadline": deadline,
        "detected_at": now_ms,
    }
