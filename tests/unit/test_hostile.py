"""Hostile input without Kafka: the corpus classified in process, a 5 MB URL, fuzzed bytes, schema size docs.

The same corpus goes through the real worker in tests/integration/test_hostile.py; here every
expectation of the generator is checked against the codec and the pure validation in a second.
"""

from __future__ import annotations

import asyncio
import json
import random
import re
import time
import uuid
from collections import Counter
from types import SimpleNamespace
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from agents.logic import reactions as reaction_logic
from agents.logic.intake import Intake
from agents.logic.validate import LIMITS, check_decision
from agents.reactions import MAX_HELD, Reactor
from streams.codec import SCHEMA_DIR, default_codec
from streams.config import ROOT
from streams.errors import RejectedError
from streams.policy import Policy
from streams.registry import Registry
from streams.topics import Topics
from tests import hostile_corpus as hc

pytestmark = pytest.mark.unit
CODEC = default_codec()
REGISTRY = Registry.load(ROOT / "config" / "reporters.yaml", ROOT / "config" / "operators.yaml")
INTAKE = Intake.build(REGISTRY)


def classify_referral(value: bytes | None, reporter: str) -> str:
    try:
        INTAKE.take(CODEC, value, reporter, hc.now_ms())
    except RejectedError as exc:
        return exc.code
    return "OK"


def classify_decision(value: bytes | None, operator: str, routed: dict[str, str]) -> str:
    """What the reactions agent says, for a decision whose referral is routed (or unknown)."""
    try:
        decision: Any = CODEC.decode(value, "OperatorDecision")
        check_decision(decision, operator, hc.now_ms())
        owner = routed.get(decision["referral_id"])
        if owner is None:
            return "UNKNOWN_REFERRAL"
        reaction = reaction_logic.new_reaction({**ROUTED, "referral_id": decision["referral_id"],  # type: ignore[typeddict-item]
                                                "operator_id": owner}, hc.now_ms())
        reaction_logic.apply_decision(reaction, decision, hc.now_ms())
    except RejectedError as exc:
        return exc.code
    return "OK"


ROUTED: dict[str, Any] = {
    **hc.good_referral(random.Random(0), 0), "normalized_url": "https://youtube.com/watch?v=x", "priority": "HIGH",
    "label_verified": True, "label_rejected": False, "routed_at": hc.now_ms(), "ack_deadline": hc.now_ms() + 10**6,
    "decision_deadline": hc.now_ms() + 10**7, "co_reporters": [], "escalated": False, "version": 0}


def test_every_bad_referral_of_the_corpus_gets_its_code() -> None:
    cases = hc.reports_corpus(CODEC, 10_000, seed=11)
    wrong = Counter((c.kind, c.code, classify_referral(c.value, c.owner)) for c in cases
                    if classify_referral(c.value, c.owner) != c.code)
    assert not wrong, wrong
    assert len({c.kind for c in cases}) >= 19


def test_every_bad_decision_of_the_corpus_gets_its_code() -> None:
    rnd = random.Random(3)
    routed = {str(uuid.UUID(int=rnd.getrandbits(128), version=4)): hc.OPERATORS[i % 5] for i in range(200)}
    cases = hc.decisions_corpus(CODEC, 3_000, seed=12, routed=routed)
    wrong = Counter((c.kind, c.code, got) for c in cases if (got := classify_decision(c.value, c.owner, routed)) != c.code)
    assert not wrong, wrong


def test_good_referrals_pass_with_every_field_intact() -> None:
    rnd = random.Random(5)
    for i in range(600):
        ref = hc.good_referral(rnd, i)
        data = CODEC.encode("Referral", ref)
        back = CODEC.decode(data, "Referral")
        assert back == ref
        cand = INTAKE.candidate(back, ref["reporter_id"], hc.now_ms())  # type: ignore[arg-type]
        assert cand["operator_id"] == hc.operator_of(ref)
        assert {k: cand[k] for k in ref if k != "operator_id"} == {k: v for k, v in ref.items() if k != "operator_id"}


def test_a_5_mb_url_is_refused_quickly_by_size() -> None:
    ref = hc.good_referral(random.Random(1), 1, "pharos")
    ref["url"] = "https://www.youtube.com/watch?v=" + "A" * 5_000_000
    data = CODEC.encode("Referral", ref)
    assert len(data) > 5_000_000
    started = time.perf_counter()
    with pytest.raises(RejectedError) as err:
        INTAKE.candidate(CODEC.decode(data, "Referral"), "pharos", hc.now_ms())  # type: ignore[arg-type]
    assert err.value.code == "INVALID_FIELD" and "at most 4096" in err.value.message
    assert time.perf_counter() - started < 1.0


@pytest.mark.parametrize(("mutate", "why"), [
    (lambda d, at: d[:at] + hc.zigzag(-1) + d[at + 1:], "negative enum index (fastavro reads the last symbol)"),
])
def test_a_negative_enum_index_is_bad_avro(mutate: Any, why: str) -> None:
    ref = hc.good_referral(random.Random(2), 2)
    at = hc._positions(CODEC, "Referral", ref, "category", "TERRORIST_PROPAGANDA", "OTHER")
    data = mutate(CODEC.encode("Referral", {**ref, "category": "TERRORIST_PROPAGANDA"}), at)
    assert classify_referral(data, ref["reporter_id"]) == "BAD_AVRO", why


@pytest.mark.parametrize(("field", "value"), [
    ("jurisdiction", "FR\n"), ("language", "fr\n"), ("content_hashes", [{"algo": "MD5", "value": "ab" * 15 + "a\n"}]),
    ("operator_id", "goo\x85gle"), ("external_ref", "a\u2028b"), ("reasons", "NEL\x85"), ("legal_basis", "C1\x9b"),
])
def test_regressions_newline_before_end_and_c1_controls(field: str, value: Any) -> None:
    ref = {**hc.good_referral(random.Random(4), 4), field: value}
    assert classify_referral(CODEC.encode("Referral", ref), ref["reporter_id"]) == "INVALID_FIELD"


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=300), st.sampled_from(["Referral", "OperatorDecision"]))
def test_arbitrary_bytes_after_a_valid_header_never_crash(body: bytes, name: str) -> None:
    data = hc.single_object(CODEC, name, body)
    try:
        if name == "Referral":
            INTAKE.candidate(CODEC.decode(data, name), "pharos", hc.now_ms())  # type: ignore[arg-type]
        else:
            check_decision(CODEC.decode(data, name), "google", hc.now_ms())  # type: ignore[arg-type]
    except RejectedError:
        pass


@settings(max_examples=400, deadline=None)
@given(st.data())
def test_mutated_valid_referrals_are_rejected_or_valid_never_a_crash(data: st.DataObject) -> None:
    ref = hc.good_referral(random.Random(data.draw(st.integers(0, 10**6))), data.draw(st.integers(0, 100)))
    raw = bytearray(CODEC.encode("Referral", ref))
    for _ in range(data.draw(st.integers(1, 4))):
        at = data.draw(st.integers(10, len(raw) - 1))
        op = data.draw(st.sampled_from(["set", "insert", "delete"]))
        if op == "set":
            raw[at] = data.draw(st.integers(0, 255))
        elif op == "insert":
            raw[at:at] = data.draw(st.binary(min_size=1, max_size=9))
        else:
            del raw[at:at + data.draw(st.integers(1, 9))]
    assert classify_referral(bytes(raw), ref["reporter_id"]) in {"OK", "BAD_AVRO", "INVALID_FIELD", "IDENTITY_MISMATCH"}


def _string_fields(record: dict[str, Any], path: str = "") -> list[tuple[str, str, str]]:
    """(path, field name, doc) of every string-valued field, nested records and arrays included."""
    def is_string(t: Any) -> bool:
        return t == "string" or (isinstance(t, list) and "string" in t) or (
            isinstance(t, dict) and t.get("type") == "array" and is_string(t["items"]))

    out = []
    for f in record["fields"]:
        t = f["type"]
        if isinstance(t, dict) and t.get("type") == "array" and isinstance(t["items"], dict) \
                and t["items"].get("type") == "record":
            out += _string_fields(t["items"], f"{path}{f['name']}[].")
        if is_string(t):
            out.append((path + f["name"], f["name"], f.get("doc", "")))
    return out


def test_every_string_field_of_every_schema_documents_its_size_limit() -> None:
    missing, disagree = [], []
    for path in sorted(SCHEMA_DIR.glob("*.avsc")):
        schema = json.loads(path.read_text())
        for where, name, doc in _string_fields(schema):
            found = re.search(r"at most (\d+) characters", doc, re.IGNORECASE)
            if not found:
                missing.append(f"{schema['name']}.{where}")
            elif schema["name"] in ("Referral", "OperatorDecision") and name in LIMITS \
                    and int(found.group(1)) != LIMITS[name]:
                disagree.append(f"{schema['name']}.{where}: doc {found.group(1)}, validate.py {LIMITS[name]}")
    assert not missing, f"string fields without 'At most N characters' in their doc: {missing}"
    assert not disagree, disagree


class FakePipe:
    """What Reactor uses of a Pipeline, recording sends and rejections."""

    def __init__(self) -> None:
        self.codec, self.names = CODEC, Topics()
        self.policy = Policy.load(ROOT / "config" / "policy.yaml")
        self.counters: Counter[str] = Counter()
        self.sent: list[tuple[str, bytes | None, bytes]] = []
        self.rejected: list[tuple[str, int, bytes, str]] = []

    async def send(self, topic: str, key: bytes | None, value: bytes) -> None:
        self.sent.append((topic, key, value))

    async def reject(self, msg: Any, code: str, error: str) -> None:
        self.rejected.append((msg.topic, msg.offset, msg.value, code))


class Table(dict[bytes, bytes]):
    """A table's interface as the reactions agent uses it (streams.eos.TransactionalTable's reads)."""

    def read(self, key: bytes) -> bytes | None:
        return self.get(key)

    read_for_update = read


def message(topic: str, offset: int, key: bytes | None, value: bytes) -> Any:
    return SimpleNamespace(topic=topic, partition=0, offset=offset, key=key, value=value)


def test_a_held_decision_for_another_operators_referral_is_rejected_with_its_own_bytes() -> None:
    pipe = FakePipe()
    reactor = Reactor(pipe, Table(), Table())  # type: ignore[arg-type]
    rid = ROUTED["referral_id"]
    hostile = CODEC.encode("OperatorDecision", hc.decision(rid, "meta"))
    own = CODEC.encode("OperatorDecision", hc.decision(rid, "google"))
    routed = CODEC.encode("RoutedReferral", {**ROUTED, "operator_id": "google"})

    async def run() -> None:
        await reactor.on_decision(message(pipe.names.decisions("meta"), 7, rid.encode(), hostile))  # held
        await reactor.on_decision(message(pipe.names.decisions("google"), 8, rid.encode(), own))  # held
        await reactor.on_routed(message(pipe.names.accepted, 3, rid.encode(), routed))

    asyncio.run(run())
    assert pipe.rejected == [(pipe.names.decisions("meta"), 7, hostile, "NOT_YOUR_REFERRAL")]
    reactions = [CODEC.decode(v, "Reaction") for t, _k, v in pipe.sent if t == pipe.names.reactions]
    assert [(r["operator_id"], r["action"]) for r in reactions] == [("google", "REMOVED")]  # the held one still counts


def test_decisions_held_for_an_unknown_referral_are_bounded() -> None:
    pipe = FakePipe()
    pending = Table()
    reactor = Reactor(pipe, Table(), pending)  # type: ignore[arg-type]
    rid = str(uuid.uuid4())
    value = CODEC.encode("OperatorDecision", hc.decision(rid, "google", "ACKNOWLEDGED"))
    topic = pipe.names.decisions("google")

    async def run() -> list[str]:
        codes = []
        for i in range(MAX_HELD + 5):
            try:
                await reactor.on_decision(message(topic, i, rid.encode(), value))
                codes.append("HELD")
            except RejectedError as exc:
                codes.append(exc.code)
        try:
            await reactor.on_decision(message(topic, 99, b"K" * 1000, CODEC.encode(
                "OperatorDecision", hc.decision(str(uuid.uuid4()), "google"))))
        except RejectedError as exc:
            codes.append(exc.code)
        return codes

    codes = asyncio.run(run())
    assert codes == ["HELD"] * MAX_HELD + ["UNKNOWN_REFERRAL"] * 6
    assert len(json.loads(pending[rid.encode()])["held"]) == MAX_HELD


def test_a_held_decision_waits_for_the_accepted_backlog_not_only_for_the_clock(monkeypatch: Any) -> None:
    """A decision about a referral whose routing record is still in the reactions agent's backlog of
    referrals.accepted is not rejected when the grace has passed; it is once the accepted records
    read have moved past the moment it was held (its routing record would have been among them)."""
    import agents.reactions as agent

    pipe = FakePipe()
    pending = Table()
    reactor = Reactor(pipe, Table(), pending)  # type: ignore[arg-type]
    grace = pipe.policy.unknown_grace_ms
    clock = [1_000_000_000_000]
    monkeypatch.setattr(agent, "now_ms", lambda: clock[0])
    topic = pipe.names.decisions("google")
    unknown = str(uuid.uuid4())
    value = CODEC.encode("OperatorDecision", {**hc.decision(unknown, "google"), "acted_at": clock[0]})

    def accepted(offset: int, stamp_ms: int) -> Any:
        rid = str(uuid.uuid4())
        routed = CODEC.encode("RoutedReferral", {**ROUTED, "referral_id": rid, "operator_id": "google"})
        m = message(pipe.names.accepted, offset, rid.encode(), routed)
        m.timestamp = stamp_ms / 1000
        return m

    async def run() -> None:
        held_at = clock[0]
        await reactor.on_decision(message(topic, 1, unknown.encode(), value))  # held
        await reactor.on_routed(accepted(0, held_at - 60_000))  # the backlog: routed a minute before
        clock[0] = held_at + grace + 5_000
        await reactor.on_routed(accepted(1, held_at - 30_000))  # still behind the hold
        await reactor.on_tick(0)
        assert pipe.rejected == []  # the grace is over, but the backlog may still hold its routing
        await reactor.on_routed(accepted(2, held_at + 60_000))  # read past the hold
        clock[0] += 2_000
        await reactor.on_tick(0)

    asyncio.run(run())
    assert [(t, o, code) for t, o, _v, code in pipe.rejected] == [(topic, 1, "UNKNOWN_REFERRAL")]


def test_a_new_version_of_a_forgotten_referral_makes_no_reaction() -> None:
    """Version 0 comes first on the referral's partition: a later version with no state is of a
    referral decided and forgotten (reactions.settled), and must not owe its alerts again."""
    pipe = FakePipe()
    table = Table()
    reactor = Reactor(pipe, table, Table())  # type: ignore[arg-type]
    rid = ROUTED["referral_id"]
    update = CODEC.encode("RoutedReferral", {**ROUTED, "operator_id": "google", "version": 1, "co_reporters": ["eu-iru"]})
    first = CODEC.encode("RoutedReferral", {**ROUTED, "operator_id": "google"})

    asyncio.run(reactor.on_routed(message(pipe.names.accepted, 1, rid.encode(), update)))
    assert table == {} and not reactor.index[0].due(2**62)
    assert pipe.counters["versions_of_forgotten"] == 1
    asyncio.run(reactor.on_routed(message(pipe.names.accepted, 2, rid.encode(), first)))
    asyncio.run(reactor.on_routed(message(pipe.names.accepted, 3, rid.encode(), update)))
    assert orjson.loads(table[rid.encode()])["v"] == 1  # the same version after version 0: applied
