"""The table sweeper (agents.sweep.Sweeper) over a real RocksDB partition: it deletes the dedup items
past the horizon a slice per tick, and begins a new pass at most once per 720th of the horizon;
with the reactions' predicate, the decided referrals a horizon after their last change."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import rocksdict

from agents.logic import dedup, reactions
from agents.sweep import Sweeper

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
    pipe = SimpleNamespace(counters=Counter())
    return Sweeper(pipe, table, lambda key, raw, now: dedup.stale(key, raw, now, HORIZON), HORIZON, per_tick=per_tick)


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


def reaction_state(routed_at: int, acked_at: int | None, decided_at: int | None, updated_at: int,
                   alerts: list[str] | None = None) -> dict[str, Any]:
    r = {"referral_id": "r", "routed_at": routed_at, "acked_at": acked_at, "decided_at": decided_at,
         "ack_deadline": routed_at + 100, "decision_deadline": routed_at + 1_000, "updated_at": updated_at}
    return {"r": r, "alerts": alerts or [], "p": 0}


def test_a_decided_reaction_is_forgotten_a_horizon_after_its_last_change_an_open_one_never() -> None:
    t0 = NOW - 10 * HORIZON
    on_time = reaction_state(t0, t0 + 50, t0 + 500, t0 + 500)
    r, a = on_time["r"], on_time["alerts"]
    assert not reactions.settled(r, a, t0 + 500 + HORIZON, HORIZON)  # exactly a horizon: kept
    assert reactions.settled(r, a, t0 + 501 + HORIZON, HORIZON)
    late = reaction_state(t0, t0 + 50, t0 + 5_000, t0 + 5_000)  # decided past its deadline
    assert not reactions.settled(late["r"], [], NOW, HORIZON)  # its alert is still owed
    assert reactions.settled(late["r"], ["DECISION"], NOW, HORIZON)  # sent: nothing owed
    open_ = reaction_state(t0, None, None, t0)
    assert not reactions.settled(open_["r"], ["ACK", "DECISION"], NOW, HORIZON)  # undecided: kept for ever
    assert reactions.owed_alerts(open_["r"], ["ACK"]) == [("DECISION", t0 + 1_000)]


def test_the_reactions_sweep_deletes_the_settled_states_only(table: Table) -> None:
    import orjson

    t0 = NOW - 10 * HORIZON
    table[b"settled"] = orjson.dumps(reaction_state(t0, t0 + 50, t0 + 500, t0 + 500))
    table[b"recent"] = orjson.dumps(reaction_state(NOW - 100, NOW - 90, NOW - 50, NOW - 50))
    table[b"open"] = orjson.dumps(reaction_state(t0, t0 + 50, None, t0 + 50))
    pipe = SimpleNamespace(counters=Counter())

    def stale(_key: bytes, raw: bytes, now: int) -> bool:
        state = orjson.loads(raw)
        return reactions.settled(state["r"], state["alerts"], now, HORIZON)

    s = Sweeper(pipe, table, stale, HORIZON, counter="reactions_forgotten")
    assert s.sweep(0, NOW) == 1
    assert sorted(table.keys()) == [b"open", b"recent"]
    assert pipe.counters["reactions_forgotten"] == 1


def test_counted_events_are_forgotten_a_horizon_after_the_last_one(table: Table) -> None:
    from agents.windows import counted_mask, counted_stale

    table[b"old"] = b"3:%d" % (NOW - HORIZON - 1)
    table[b"recent"] = b"1:%d" % (NOW - HORIZON)
    table[b"before-session-20"] = b"3"  # no time: kept
    assert [counted_mask(table.db[k]) for k in (b"old", b"recent", b"before-session-20")] == [3, 1, 3]
    pipe = SimpleNamespace(counters=Counter())
    s = Sweeper(pipe, table, lambda _key, raw, now: counted_stale(raw, now, HORIZON), HORIZON, counter="counted")
    assert s.sweep(0, NOW) == 1
    assert sorted(table.keys()) == [b"before-session-20", b"recent"]
