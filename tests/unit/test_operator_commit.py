"""The operator client while the broker restarts (fake librdkafka clients).

A broker away must not stop the client: offsets wait for their decisions, then go. A decision the
producer gave up on must still fail loudly, with nothing committed. A consumer left outside its
group is replaced by a new one (streams/groupwatch.py).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

import clients.operator as operator
from clients.operator import DecisionError, OperatorClient
from streams.config import Settings

LANE = ("operator.google.standard", 0)


class FakeProducer:
    """Queues produced messages; delivers them on flush only while `reachable`."""

    def __init__(self, _conf: object) -> None:
        self.reachable = True
        self.error: Any = None  # delivered as this error instead (a decision given up on)
        self.queued: list[tuple[bytes, Callable[[Any, Any], None]]] = []

    def produce(self, _topic: str, value: bytes, key: bytes, on_delivery: Callable[[Any, Any], None]) -> None:
        self.queued.append((key, on_delivery))

    def poll(self, _timeout: float = 0) -> int:
        return 0

    def flush(self, _timeout: float = 0) -> int:
        if self.reachable or self.error is not None:
            queued, self.queued = self.queued, []
            for key, on_delivery in queued:
                on_delivery(self.error, FakeMessage(key))
        return len(self.queued)


class FakeMessage:
    def __init__(self, key: bytes) -> None:
        self._key = key

    def key(self) -> bytes:
        return self._key


class FakeError:
    def str(self) -> str:
        return "Local: Message timed out"


class FakeConsumer:
    made: list[FakeConsumer] = []

    def __init__(self, _conf: object) -> None:
        self.commits: list[list[tuple[str, int, int]]] = []
        self.parts: list[Any] = []
        self.subscribed: list[str] = []
        self.closed = False
        FakeConsumer.made.append(self)

    def subscribe(self, topics: list[str], **_kw: object) -> None:
        self.subscribed = topics

    def assignment(self) -> list[Any]:
        return self.parts

    def poll(self, _timeout: float) -> None:
        return None

    def commit(self, offsets: list[Any], asynchronous: bool) -> None:
        assert asynchronous is False
        self.commits.append([(tp.topic, tp.partition, tp.offset) for tp in offsets])

    def close(self) -> None:
        self.closed = True


@pytest.fixture
def client(monkeypatch: pytest.MonkeyPatch) -> OperatorClient:
    FakeConsumer.made = []
    monkeypatch.setattr(operator, "Consumer", FakeConsumer)
    monkeypatch.setattr(operator, "Producer", FakeProducer)
    monkeypatch.setattr(operator, "AdminClient", lambda _conf: None)
    return OperatorClient(Settings(), "google", handler=None, commit_every=1000)


def handled(client: OperatorClient, offset: int, referral_id: str) -> None:
    """What _handle does for a referral whose handler removed it."""
    client.remove(referral_id)
    client._done(LANE, offset)


def test_offsets_wait_for_unconfirmed_decisions_then_go(client: OperatorClient) -> None:
    producer, consumer = client._producer, client._consumer
    assert isinstance(producer, FakeProducer) and isinstance(consumer, FakeConsumer)
    producer.reachable = False  # the broker is restarting
    handled(client, 5, "6f1c1a52-6a7e-4f37-9a45-3c0d8f1f9a01")
    assert client.commit(wait=0.0) is False  # no error: run() goes on
    handled(client, 6, "6f1c1a52-6a7e-4f37-9a45-3c0d8f1f9a02")
    assert client.commit(wait=0.0) is False
    assert consumer.commits == []  # nothing committed ahead of its decision
    producer.reachable = True  # the broker is back
    assert client.commit(wait=0.0) is True
    assert consumer.commits == [[(*LANE, 7)]]


def test_a_decision_given_up_on_raises_and_commits_nothing(client: OperatorClient) -> None:
    producer, consumer = client._producer, client._consumer
    assert isinstance(producer, FakeProducer) and isinstance(consumer, FakeConsumer)
    producer.reachable = False
    handled(client, 5, "6f1c1a52-6a7e-4f37-9a45-3c0d8f1f9a01")
    assert client.commit(wait=0.0) is False
    producer.error = FakeError()  # message.timeout.ms passed
    with pytest.raises(DecisionError, match="not delivered"):
        client.commit(wait=0.0)
    assert consumer.commits == []


def test_close_raises_if_decisions_stay_unconfirmed(client: OperatorClient) -> None:
    producer, consumer = client._producer, client._consumer
    assert isinstance(producer, FakeProducer) and isinstance(consumer, FakeConsumer)
    producer.reachable = False
    handled(client, 5, "6f1c1a52-6a7e-4f37-9a45-3c0d8f1f9a01")
    with pytest.raises(DecisionError, match="not confirmed"):
        client.close()
    assert consumer.commits == []


def test_a_consumer_stranded_outside_its_group_is_replaced(client: OperatorClient) -> None:
    now = [0.0]
    client.watch.clock = lambda: now[0]
    client.watch.every = 0.0
    first = client._consumer
    assert isinstance(first, FakeConsumer)
    first.parts = ["lane partitions"]
    client.run(max_messages=1, timeout=0.05)  # holds partitions
    first.parts = []  # session lost, partitions revoked, no rejoin
    client.run(max_messages=1, timeout=0.05)
    now[0] += operator.GroupWatch("x").limit
    client.run(max_messages=1, timeout=0.05)
    second = client._consumer
    assert second is not first and isinstance(second, FakeConsumer)
    assert first.closed and not second.closed
    assert second.subscribed == client.lane_topics and client.gate.consumer is second
    assert client.watch.replaced == 1
    client.run(max_messages=1, timeout=0.05)
    assert client._consumer is second  # the new one gets its own time to be assigned
