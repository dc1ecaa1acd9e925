"""Reactions: internal.routed (referrals.accepted, packed) + operator.*.decisions + ticks -> reactions, referrals.overdue,
internal.windows, internal.dedup (ItemDecided) | referrals.rejected.

Everything about one referral is keyed by its referral_id on the same partition number, so the
reactions table joins routed referrals and decisions locally. Deadlines and held decisions are
indexed in memory per partition (rebuilt from the tables after a restart) and looked at on the
partition's ticks, so the tables are modified only inside their partition's stream. The ticks
also forget decided referrals a dedup horizon after their last change (`logic.settled`), so the
table, and the scan that rebuilds the index at each start, do not grow with every referral ever
routed.
"""

from __future__ import annotations

import base64
import logging
from collections import defaultdict
from types import SimpleNamespace
from typing import Any

import orjson

from agents.logic import reactions as logic
from agents.logic.dedup import dedup_key
from agents.logic.overdue import DeadlineIndex, overdue_alert
from agents.logic.validate import check_decision
from agents.sweep import Sweeper
from agents.ticks import register_ticks
from streams.app import BATCH, Pipeline, now_ms
from streams.errors import RejectedError
from streams.packs import PACK, unpack
from streams.records import OperatorDecision, Reaction, RoutedReferral

log = logging.getLogger("signalement.reactions")
HELD = "HELD"  # index kind for a decision waiting for its referral
MAX_HELD = 16  # decisions held per unknown referral; more are rejected at once (UNKNOWN_REFERRAL)
RECHECK_MS = 1_000  # a held decision not yet allowed to expire is looked at again after this
MAX_HELD_KEY = 256  # bytes of message key a held decision may carry (a referral_id is 36)


class Reactor:
    """The reactions agent's per-worker state and steps (the agent body only dispatches)."""

    def __init__(self, pipe: Pipeline, table: Any, pending: Any) -> None:
        self.pipe, self.table, self.pending = pipe, table, pending
        retention = pipe.policy.dedup_horizon_ms
        # decided referrals are forgotten a horizon after their last change (logic.settled)
        self.sweeper = Sweeper(pipe, table, lambda _key, raw, now: _settled(raw, now, retention), retention,
                               counter="reactions_forgotten")
        self.index: dict[int, DeadlineIndex] = defaultdict(lambda: DeadlineIndex())
        self.built: set[int] = set()
        # per partition: newest referrals.accepted record timestamp handled, and when (held decisions wait for it)
        self.accepted_seen_until: dict[int, int] = defaultdict(int)
        self.accepted_last: dict[int, int] = defaultdict(now_ms)

    def _save(self, key: bytes, state: dict[str, Any]) -> None:
        self.table[key] = orjson.dumps(state)

    def _load(self, key: bytes) -> dict[str, Any] | None:
        raw = self.table.read_for_update(key)
        return orjson.loads(raw) if raw is not None else None

    async def on_routed(self, msg: Any) -> None:
        key, now = msg.key, now_ms()
        self.accepted_last[msg.partition] = now
        timestamp = getattr(msg, "timestamp", None)  # seconds (Faust's message), the record's create time
        if timestamp is not None:
            stamp = int(timestamp * 1000)
            if stamp > self.accepted_seen_until[msg.partition]:
                self.accepted_seen_until[msg.partition] = stamp
        routed: RoutedReferral = self.pipe.codec.decode(msg.value, "RoutedReferral")  # type: ignore[assignment]
        state = self._load(key)
        if state is None and routed["version"] > 0:
            # a new version comes after version 0 on this partition: its state was forgotten, the
            # referral decided long ago (`logic.settled`); a new reaction would owe alerts again
            self.pipe.counters["versions_of_forgotten"] += 1
            return
        if state is None:
            state = {"r": logic.new_reaction(routed, now), "k": dedup_key(routed["operator_id"], routed["normalized_url"]),
                     "v": routed["version"], "p": msg.partition, "alerts": []}
        elif routed["version"] > state["v"]:
            state["r"], state["v"] = logic.apply_reissue(state["r"], routed, now), routed["version"]
        else:
            return
        self._save(key, state)
        self._index(msg.partition, state)
        held = self.pending.read(key)
        if held is not None:
            del self.pending[key]
            self.index[msg.partition].remove(key.decode(), HELD)
            for h in orjson.loads(held)["held"]:
                try:
                    await self.on_decision(_message(h), held_since=h["at"])
                except RejectedError as exc:  # e.g. NOT_YOUR_REFERRAL: the decision's fault, not the referral's
                    await self.pipe.reject(_message(h), exc.code, exc.message)

    def _index(self, partition: int, state: dict[str, Any]) -> None:
        r: Reaction = state["r"]
        idx = self.index[partition]
        # a late act still owes its alert (the deadline was missed): keep it indexed
        owed = dict(logic.owed_alerts(r, state["alerts"]))
        for kind in ("ACK", "DECISION"):
            if kind in owed:
                idx.add(r["referral_id"], kind, owed[kind])
            else:
                idx.remove(r["referral_id"], kind)

    async def on_decision(self, msg: Any, held_since: int | None = None) -> None:
        operator = self.pipe.names.operator_of_decisions(msg.topic) or ""
        decision: OperatorDecision = self.pipe.codec.decode(msg.value, "OperatorDecision")  # type: ignore[assignment]
        check_decision(decision, operator, now_ms())
        key = decision["referral_id"].encode()
        state = self._load(key)
        if state is None:
            self._hold(msg, key, held_since)
            return
        new = logic.apply_decision(state["r"], decision, now_ms())
        if new is None:
            return
        state["r"] = new
        self._save(key, state)
        self._index(msg.partition, state)
        value = self.pipe.codec.encode("Reaction", new)
        await self.pipe.send(self.pipe.names.reactions, key, value)
        self.pipe.counters["reactions"] += 1
        await self.pipe.send(self.pipe.names.window_input, f"{new['operator_id']}|{new['priority']}".encode(), value)
        if new["decided_at"] is not None:
            decided = {"dedup_key": state["k"], "referral_id": new["referral_id"], "decided_at": new["decided_at"]}
            await self.pipe.send(self.pipe.names.dedup_items, state["k"].encode(),
                                 self.pipe.codec.encode("ItemDecided", decided))

    def _hold(self, msg: Any, key: bytes, held_since: int | None) -> None:
        raw = self.pending.read(key)
        held = orjson.loads(raw) if raw is not None else {"p": msg.partition, "held": []}
        # a flood about one unknown referral, or a huge key, must not grow a table value without bound
        if len(held["held"]) >= MAX_HELD:
            raise RejectedError(f"no referral {key.decode()!r} is known and {MAX_HELD} decisions about it already wait",
                                "UNKNOWN_REFERRAL")
        if len(msg.key or b"") > MAX_HELD_KEY:
            raise RejectedError(f"no referral {key.decode()!r} is known; a decision keyed with {len(msg.key)} bytes "
                                "is not held", "UNKNOWN_REFERRAL")
        at = held_since if held_since is not None else now_ms()
        held["held"].append({"t": msg.topic, "pt": msg.partition, "o": msg.offset, "at": at,
                             "k": _b64(msg.key), "v": _b64(msg.value)})
        self.pending[key] = orjson.dumps(held)
        self.index[msg.partition].add(key.decode(), HELD, at + self.pipe.policy.unknown_grace_ms)

    async def on_tick(self, partition: int) -> None:
        if partition not in self.built:
            self._rebuild(partition)
        try:
            self.sweeper.sweep(partition, now_ms())
        except Exception:  # retention is housekeeping: it must never stop the reactions
            log.exception("reactions sweep failed on partition %s", partition)
        now, grace = now_ms(), self.pipe.policy.unknown_grace_ms
        for referral_id, kind, _deadline in self.index[partition].due(now):
            key = referral_id.encode()
            if kind == HELD:
                raw = self.pending.read(key)
                if raw is None:
                    continue
                held_at = min(h["at"] for h in orjson.loads(raw)["held"])
                if logic.held_may_expire(held_at, now, self.accepted_seen_until[partition],
                                         self.accepted_last[partition], grace):
                    await self._expire_held(key)
                else:  # its routing record may still be in the backlog of referrals.accepted: look again
                    self.index[partition].add(referral_id, HELD, now + RECHECK_MS)
                continue
            state = self._load(key)
            if state is None or kind in state["alerts"]:
                continue
            alert = overdue_alert(state["r"], kind, now)
            if alert is None:
                continue
            state["alerts"].append(kind)
            self._save(key, state)
            await self.pipe.send(self.pipe.names.overdue, key, self.pipe.codec.encode("OverdueAlert", alert))
            self.pipe.counters["overdue"] += 1

    async def _expire_held(self, key: bytes) -> None:
        raw = self.pending.read(key)
        if raw is None:
            return
        del self.pending[key]
        for h in orjson.loads(raw)["held"]:
            await self.pipe.reject(_message(h), "UNKNOWN_REFERRAL",
                                   f"no referral {key.decode()!r} was routed within the grace period")

    def _rebuild(self, partition: int) -> None:
        """After a (re)start: index what this partition's tables hold (once, not per tick)."""
        for _key, raw in self.table.items():
            state = orjson.loads(raw)
            if state["p"] == partition:
                self._index(partition, state)
        for key, raw in self.pending.items():
            held = orjson.loads(raw)
            if held["p"] == partition:
                first = min(h["at"] for h in held["held"])
                self.index[partition].add(key.decode(), HELD, first + self.pipe.policy.unknown_grace_ms)
        self.built.add(partition)


def _settled(raw: bytes, now: int, retention_ms: int) -> bool:
    state = orjson.loads(raw)
    return logic.settled(state["r"], state["alerts"], now, retention_ms)


def _b64(data: bytes | None) -> str | None:
    return None if data is None else base64.b64encode(data).decode()


def _message(h: dict[str, Any]) -> Any:
    """A held decision, shaped like the Kafka message it came from."""
    return SimpleNamespace(topic=h["t"], partition=h["pt"], offset=h["o"],
                           key=None if h["k"] is None else base64.b64decode(h["k"]), value=base64.b64decode(h["v"]))


def register(pipe: Pipeline) -> Any:
    """The reactions agent over accepted referrals, every operator's decisions, and ticks."""
    reactor = Reactor(pipe, pipe.table("reactions"), pipe.table("held-decisions"))
    names = pipe.names
    decisions = {names.decisions(op) for op in pipe.registry.operators}
    source = pipe.source(names.routed, *sorted(decisions), names.ticks)
    register_ticks(pipe)

    @pipe.app.agent(source, name="signalement.reactions")
    async def reactions(stream: Any) -> None:
        """internal.routed + decisions + ticks -> reactions, overdue, internal.windows | rejected"""
        async for events in stream.take_events(BATCH, pipe.settings.batch_within):
            await pipe.each_partition(events, handle)

    async def handle(msg: Any) -> None:
        if msg.topic != names.routed:
            await step(msg)
            return
        try:
            items = unpack(pipe.codec.decode(msg.value, PACK), msg)
        except Exception as exc:  # internal records are ours: a bad one is a bug, dead-lettered
            log.exception("reactions cannot read %s/%s/%s", msg.topic, msg.partition, msg.offset)
            await pipe.reject(msg, "INTERNAL_ERROR", f"{type(exc).__name__}: {exc}")
            return
        for item in items:  # each item of a pack as the record it stands for
            await step(item)

    async def step(msg: Any) -> None:
        try:
            if msg.topic == names.ticks:
                await reactor.on_tick(msg.partition)
            elif msg.topic == names.routed:
                await reactor.on_routed(msg)
            else:
                await reactor.on_decision(msg)
        except RejectedError as exc:
            await pipe.reject(msg, exc.code, exc.message)
        except Exception as exc:  # a bug must cost one record, never the stream
            log.exception("reactions failed on %s/%s/%s", msg.topic, msg.partition, msg.offset)
            await pipe.reject(msg, "INTERNAL_ERROR", f"{type(exc).__name__}: {exc}")

    return reactions
