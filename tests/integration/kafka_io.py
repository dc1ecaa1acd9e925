"""Test-side Kafka helpers: produce bytes, read whole topics, run the worker as a process."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, Producer, TopicPartition

from streams.codec import default_codec
from streams.config import ROOT, Settings
from streams.packs import PACK, is_pack

_producers: dict[str, Producer] = {}


def producer(settings: Settings) -> Producer:
    """One idempotent producer per broker for the whole test session (starting one costs seconds)."""
    if settings.bootstrap not in _producers:
        _producers[settings.bootstrap] = _new_producer(settings)
    return _producers[settings.bootstrap]


def _new_producer(settings: Settings) -> Producer:
    return Producer(settings.confluent(**{"partitioner": "murmur2_random", "enable.idempotence": True,
                                          "linger.ms": 5}))


def produce(settings: Settings, topic: str, items: Iterable[tuple[bytes | None, bytes]],
            compression: str | None = None) -> int:
    """Send (key, value) pairs to one topic and wait for every delivery."""
    p = producer(settings) if compression is None else Producer(settings.confluent(**{
        "partitioner": "murmur2_random", "compression.type": compression}))
    errors: list[object] = []
    n = 0
    for key, value in items:
        p.produce(topic, value=value, key=key, on_delivery=lambda err, _m: err and errors.append(err))
        n += 1
        p.poll(0)
    p.flush(30)
    assert not errors, errors
    return n


@dataclass
class Message:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes
    timestamp: int = 0  # the record's timestamp (ms; CreateTime: when its producer took it)

    def decode(self) -> dict[str, Any]:
        return default_codec().decode_any(self.value)[1]


def records(m: Any, raw: bool = False) -> list[Message]:
    """A consumed confluent-kafka message as test Messages: a pack of candidates (streams/packs.py)
    as its items, each addressed like the pack, unless `raw`."""
    msg = Message(m.topic(), m.partition(), m.offset(), m.key(), m.value(), m.timestamp()[1])
    if raw or not is_pack(msg.value, default_codec()):
        return [msg]
    return [Message(msg.topic, msg.partition, msg.offset, item["key"], item["value"], msg.timestamp)
            for item in default_codec().decode(msg.value, PACK)["items"]]


def read_topic(settings: Settings, topic: str, expect: int | None = None, idle_s: float = 3.0,
               timeout_s: float = 60.0) -> list[Message]:
    """Everything in a topic from the beginning: until `expect` messages, else until idle."""
    c = Consumer(settings.confluent(**{"group.id": f"reader-{time.time_ns()}", "enable.auto.commit": False,
                                       "isolation.level": "read_committed"}))
    meta = c.list_topics(topic, timeout=10).topics[topic]
    c.assign([TopicPartition(topic, p, 0) for p in meta.partitions])
    out: list[Message] = []
    start = last = time.monotonic()
    try:
        while time.monotonic() - start < timeout_s:
            if expect is not None and len(out) >= expect:
                # linger a little to catch extras that should not be there
                if time.monotonic() - last > 1.0:
                    break
            elif expect is None and time.monotonic() - last > idle_s:
                break
            m = c.poll(0.2)
            if m is None or m.error():
                continue
            out += records(m)
            last = time.monotonic()
    finally:
        c.close()
    return out


def read_topics(settings: Settings, topics: list[str], idle_s: float = 2.0, timeout_s: float = 60.0,
                raw: bool = False) -> dict[str, list[Message]]:
    """Everything in several topics from the beginning, until nothing new arrives for idle_s (packs
    of candidates as their items, unless `raw`)."""
    c = Consumer(settings.confluent(**{"group.id": f"reader-{time.time_ns()}", "enable.auto.commit": False,
                                       "isolation.level": "read_committed"}))
    parts = []
    for topic in topics:
        meta = c.list_topics(topic, timeout=10).topics[topic]
        parts += [TopicPartition(topic, p, 0) for p in meta.partitions]
    c.assign(parts)
    out: dict[str, list[Message]] = {t: [] for t in topics}
    start = last = time.monotonic()
    try:
        while time.monotonic() - start < timeout_s and time.monotonic() - last < idle_s:
            for m in c.consume(1000, 0.2):
                if m.error():
                    continue
                out[m.topic()] += records(m, raw)
                last = time.monotonic()
    finally:
        c.close()
    return out


def wait_for_count(settings: Settings, topic: str, count: int, timeout_s: float = 120.0,
                   worker: WorkerProcess | None = None) -> list[Message]:
    """Poll a topic until it holds at least `count` messages; fail with the worker's log otherwise."""
    deadline = time.monotonic() + timeout_s
    got: list[Message] = []
    while time.monotonic() < deadline:
        got = read_topics(settings, [topic], idle_s=1.0)[topic]
        if len(got) >= count:
            return got
        if worker is not None and worker.proc is not None and worker.proc.poll() is not None:
            raise AssertionError(f"worker died:\n{worker.log_tail()}")
        time.sleep(1.0)
    tail = worker.log_tail() if worker is not None else ""
    raise AssertionError(f"{topic}: {len(got)} of {count} messages after {timeout_s}s\n{tail}")


@dataclass
class WorkerProcess:
    """`signalement worker` in a subprocess with its own prefix, app id and state folder."""

    settings: Settings
    env: dict[str, str]
    log_path: Path
    proc: subprocess.Popen[bytes] | None = field(default=None)

    @classmethod
    def for_prefix(cls, settings: Settings, prefix: str, tmp: Path, **extra: str) -> WorkerProcess:
        env = dict(os.environ)
        env.update({"SIGNALEMENT_TOPIC_PREFIX": prefix, "SIGNALEMENT_APP_ID": f"{prefix}app",
                    "SIGNALEMENT_HOME": str(settings.home), "SIGNALEMENT_BOOTSTRAP": settings.bootstrap})
        env.update(extra)
        env["SIGNALEMENT_WORKER_DIR"] = str(tmp / "worker")
        return cls(settings, env, tmp / "worker.log")

    def start(self) -> None:
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen([sys.executable, "-m", "streams.cli", "worker"], cwd=ROOT, env=self.env,
                                     stdout=log, stderr=subprocess.STDOUT, start_new_session=True)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        os.killpg(self.proc.pid, sig)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def log_tail(self, n: int = 60) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
