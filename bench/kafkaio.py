"""Kafka I/O of the benchmarks: preload, watermarks, group lag, and a tally of what came out.

The tally reads output topics from the beginning with `read_committed` (so transactional output
counts only once committed), keeps per topic the count, the first and last message timestamps
(set by the worker's producer when it sent the record) and, for lanes, the distinct keys (the
referral_id): an escalation re-issues a key in a second lane, so distinct keys count items.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaException, Message, Producer, TopicPartition

from bench.load import Record
from clients.kafka import producer_config
from streams.codec import Codec, default_codec
from streams.config import Settings
from streams.packs import PACK, is_pack
from streams.topics import Topics


def fast_producer(settings: Settings, **extra: object) -> Producer:
    """The project's producer settings (idempotent, acks=all, murmur2, no compression), larger batches."""
    conf = producer_config(settings, **{"linger.ms": 20, "batch.size": 1_000_000, "queue.buffering.max.messages": 500_000,
                                        "queue.buffering.max.kbytes": 1_048_576})
    conf.update(extra)
    return Producer(conf)


def produce(producer: Producer, topic: str, key: bytes | None, value: bytes | None,
            on_delivery: Callable[..., None] | None = None) -> None:
    while True:
        try:
            if on_delivery is None:
                producer.produce(topic, value, key)
            else:
                producer.produce(topic, value, key, on_delivery=on_delivery)
            return
        except BufferError:
            producer.poll(0.05)


def topic_for(names: Topics, rec: Record, fast_path: bool = True) -> str:
    """The reporter's topic for `rec`, as its client chooses (clients.reporter): removal orders and
    emergencies on reports.<id>.urgent; `fast_path=False`, every record on reports.<id>."""
    return names.reports_urgent(rec.reporter) if fast_path and rec.urgent else names.reports(rec.reporter)


def preload(settings: Settings, names: Topics, records: Iterable[Record]) -> dict[str, int]:
    """Send every record to its reporter's topic (`topic_for`); wait for all deliveries. Returns counts by kind."""
    p = fast_producer(settings)
    counts: dict[str, int] = {}
    errors: list[str] = []

    def failed(err: object, _msg: object) -> None:
        if err is not None:
            errors.append(str(err))

    for n, rec in enumerate(records):
        produce(p, topic_for(names, rec), rec.key, rec.value, failed)
        counts[rec.kind] = counts.get(rec.kind, 0) + 1
        if n % 1000 == 0:
            p.poll(0)
    if p.flush(120) or errors:
        raise RuntimeError(f"preload failed: {len(errors)} errors, e.g. {errors[:3]}")
    return counts


def consumer(settings: Settings, **extra: object) -> Consumer:
    conf = settings.confluent(**{"group.id": f"bench-reader-{time.time_ns()}", "enable.auto.commit": False,
                                 "isolation.level": "read_committed", "fetch.wait.max.ms": 10,
                                 "enable.partition.eof": False, "log_level": 0})
    conf.update(extra)
    return Consumer(conf)


def partitions(c: Consumer, topics: Iterable[str]) -> list[TopicPartition]:
    out = []
    for topic in topics:
        meta = c.list_topics(topic, timeout=10).topics[topic]
        out += [TopicPartition(topic, p) for p in sorted(meta.partitions)]
    return out


def end_offsets(c: Consumer, parts: list[TopicPartition]) -> dict[tuple[str, int], int]:
    """High watermarks (transaction markers included)."""
    return {(tp.topic, tp.partition): c.get_watermark_offsets(tp, timeout=10, cached=False)[1] for tp in parts}


def group_lag(c: Consumer, group: str, parts: list[TopicPartition], settings: Settings) -> int:
    """Messages (and markers) of parts not yet committed by consumer group `group`."""
    g = Consumer(settings.confluent(**{"group.id": group, "enable.auto.commit": False, "log_level": 0}))
    try:
        committed = g.committed([TopicPartition(tp.topic, tp.partition) for tp in parts], timeout=10)
    except KafkaException:
        return -1
    finally:
        g.close()
    ends = end_offsets(c, parts) if settings.guarantee != "exactly_once" else committed_ends(parts, settings)
    return sum(max(0, ends[(tp.topic, tp.partition)] - max(tp.offset, 0)) for tp in committed)


def group_assigned(admin: Any, group: str) -> tuple[str, int]:
    """The group's state (e.g. "STABLE") and how many of its members hold partitions (`admin`: a
    confluent-kafka AdminClient, streams.admin.admin_client)."""
    try:
        desc = admin.describe_consumer_groups([group], request_timeout=10)[group].result()
    except KafkaException:
        return "UNKNOWN", 0
    holding = sum(1 for m in desc.members if m.assignment is not None and m.assignment.topic_partitions)
    return desc.state.name, holding


def committed_ends(parts: list[TopicPartition], settings: Settings) -> dict[tuple[str, int], int]:
    """1 + the offset of each partition's last committed record: under exactly-once a partition
    written in transactions ends with a commit marker that no consumer ever commits past."""
    from faust.types import TP

    from streams.eos import last_records

    ends = last_records(settings.confluent(), [TP(tp.topic, tp.partition) for tp in parts], timeout_s=30)
    return {(tp.topic, tp.partition): end for tp, end in ends.items()}


def describe(value: bytes) -> dict[str, Any]:
    r = default_codec().decode(value, "RoutedReferral")
    return {k: r[k] for k in ("referral_id", "reporter_id", "normalized_url", "operator_id", "priority", "escalated",  # type: ignore[literal-required]
                              "version", "routed_at", "reported_at")}


def escalated(value: bytes) -> bool:
    return bool(default_codec().decode(value, "RoutedReferral")["escalated"])


@dataclass
class TopicTally:
    count: int = 0
    first_ts: int | None = None
    last_ts: int | None = None
    last_seen: float = 0.0  # monotonic time this reader last got a message of the topic


@dataclass
class Tally:
    """Reads output topics from the beginning, incrementally (call `poll` until satisfied)."""

    settings: Settings
    topics: list[str]
    keyed: set[str] = field(default_factory=set)  # topics whose distinct keys are kept
    on_message: Callable[[str, bytes | None, int, float], None] | None = None  # (topic, key, ts_ms, received)
    batch_wait: float = 0.2  # consume() returns after this long or 10,000 messages: short when timing arrivals
    distinct: set[str] = field(default_factory=set)  # other topics whose distinct keys are counted (rejected)

    def __post_init__(self) -> None:
        self.c = consumer(self.settings)
        self.parts = partitions(self.c, self.topics)
        self.c.assign([TopicPartition(tp.topic, tp.partition, OFFSET_BEGINNING) for tp in self.parts])
        self.by_topic = {t: TopicTally() for t in self.topics}
        self.shown_twice: list[list[dict[str, Any]]] = []
        self.keys: dict[bytes, list[bytes]] = {}  # lane keys -> the lane records seen with them
        self.repeated = 0
        self.repeated_not_escalated = 0  # a referral in a lane twice without being escalated: shown twice
        self.distinct_keys: dict[str, set[bytes]] = {t: set() for t in self.distinct}

    def poll(self, seconds: float) -> int:
        """Read for up to `seconds`; returns how many messages were read."""
        end, got = time.monotonic() + seconds, 0
        keyed, by_topic, keys, hook = self.keyed, self.by_topic, self.keys, self.on_message
        while True:
            left = end - time.monotonic()
            if left <= 0:
                return got
            msgs = self.c.consume(10_000, min(left, self.batch_wait))
            now = time.monotonic()
            for m in msgs:
                if m.error():
                    continue
                topic = str(m.topic())
                t = by_topic[topic]
                ts = m.timestamp()[1]
                t.count += 1
                if t.first_ts is None or ts < t.first_ts:
                    t.first_ts = ts
                if t.last_ts is None or ts > t.last_ts:
                    t.last_ts = ts
                t.last_seen = now
                if topic in keyed:
                    # a referral is in the lanes once, plus once more if escalated: the same (key,
                    # escalated) twice is a referral shown twice, whichever lane is read first
                    # (decoded only on a repeat: the tally shares the cores with the worker)
                    k = m.key() or b""
                    seen = keys.get(k)
                    if seen is None:
                        keys[k] = [m.value() or b""]
                    else:
                        self.repeated += 1
                        flags = [escalated(v) for v in seen]
                        if escalated(m.value() or b"") in flags:
                            self.repeated_not_escalated += 1
                            if len(self.shown_twice) < 5:  # what they were, for the JSON
                                self.shown_twice.append([describe(v) for v in [*seen, m.value() or b""]])
                        seen.append(m.value() or b"")
                elif topic in self.distinct_keys:
                    self.distinct_keys[topic].add(m.key() or b"")
                if hook is not None:
                    hook(topic, m.key(), ts, time.time())
            got += len(msgs)

    def total(self, topics: Iterable[str] | None = None) -> int:
        return sum(self.by_topic[t].count for t in (topics or self.topics))

    def span(self, topics: Iterable[str] | None = None) -> tuple[int | None, int | None]:
        """(first, last) message timestamp over topics."""
        tallies = [self.by_topic[t] for t in (topics or self.topics)]
        firsts = [t.first_ts for t in tallies if t.first_ts is not None]
        lasts = [t.last_ts for t in tallies if t.last_ts is not None]
        return (min(firsts) if firsts else None, max(lasts) if lasts else None)

    def close(self) -> None:
        self.c.close()


def lane_topics(names: Topics, operators: Iterable[str]) -> list[str]:
    return [names.lane(op, p) for op in sorted(operators) for p in ("CRITICAL", "HIGH", "STANDARD")]


def messages(settings: Settings, topics: list[str], timeout: float = 60.0) -> Iterator[Message]:
    """Every record of some topics, read from the beginning up to their current end (read_committed)."""
    c = consumer(settings)
    try:
        parts = partitions(c, topics)
        ends = end_offsets(c, parts)
        c.assign([TopicPartition(tp.topic, tp.partition, OFFSET_BEGINNING) for tp in parts])
        done: set[tuple[str, int]] = {k for k, v in ends.items() if v == 0}
        end = time.monotonic() + timeout
        while len(done) < len(ends) and time.monotonic() < end:
            for m in c.consume(10_000, 0.2):
                if m.error():
                    continue
                yield m
                if int(m.offset() or 0) + 1 >= ends[(str(m.topic()), int(m.partition() or 0))]:
                    done.add((str(m.topic()), int(m.partition() or 0)))
            for (topic, partition), high in ends.items():  # transaction markers end some partitions
                if (topic, partition) not in done and c.position([TopicPartition(topic, partition)])[0].offset >= high:
                    done.add((topic, partition))
    finally:
        c.close()


def referral_ids(value: bytes | None, codec: Codec) -> list[str]:
    """The referral ids a record stands for: a referral's, a pack's items', a duplicate's own, a
    rejection's original record's; none for bytes that do not decode (a malformed report)."""
    if value is None:
        return []
    try:
        if is_pack(value, codec):
            return [i for item in codec.decode(value, PACK)["items"] for i in referral_ids(item["value"], codec)]
        _name, record = codec.decode_any(value)
    except Exception:
        return []
    fields: Mapping[str, Any] = record  # type: ignore[assignment]
    if "error_code" in fields:  # a Rejection: what was refused
        return referral_ids(fields.get("value"), codec)
    rid = fields.get("referral_id")
    return [rid] if isinstance(rid, str) and rid else []


def first_seen(settings: Settings, topics: list[str], codec: Codec, timeout: float = 60.0) -> dict[str, Message]:
    """The first record each referral id appears in (`referral_ids`), over some topics (`messages`)."""
    seen: dict[str, Message] = {}
    for m in messages(settings, topics, timeout):
        for rid in referral_ids(m.value(), codec):
            seen.setdefault(rid, m)
    return seen


def keys_by_topic(settings: Settings, topics: list[str], timeout: float = 60.0) -> dict[str, list[bytes]]:
    """Every key of some topics, read from the beginning up to their current end (read_committed)."""
    out: dict[str, list[bytes]] = {t: [] for t in topics}
    for m in messages(settings, topics, timeout):
        out[str(m.topic())].append(m.key() or b"")
    return out


def rejection_codes(settings: Settings, rejected: str, sources: set[str], timeout: float = 30.0) -> dict[str, int]:
    """Dead letters on `rejected` whose source topic is one of `sources`, counted by error code."""
    codec, out = default_codec(), dict[str, int]()
    c = consumer(settings)
    try:
        parts = partitions(c, [rejected])
        ends = {k: v for k, v in end_offsets(c, parts).items() if v > 0}
        c.assign([TopicPartition(tp.topic, tp.partition, OFFSET_BEGINNING) for tp in parts])
        end = time.monotonic() + timeout
        while time.monotonic() < end and any(c.position([TopicPartition(t, p)])[0].offset < high
                                             for (t, p), high in ends.items()):
            for m in c.consume(10_000, 0.2):
                if m.error():
                    continue
                rec = codec.decode(m.value() or b"", "Rejection")
                if rec["source_topic"] in sources:
                    out[str(rec["error_code"])] = out.get(str(rec["error_code"]), 0) + 1
    finally:
        c.close()
    return out
