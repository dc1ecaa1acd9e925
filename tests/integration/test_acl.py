"""Authentication and ACLs on the secure broker, proved with real clients; ClickHouse's two users.

The secure broker (`stack up --secure`: SASL/SCRAM-SHA-512, StandardAuthorizer, nothing allowed
without an ACL) is started for this module if it is not running, and stopped afterwards if this
module started it. The plaintext broker the other tests use is not touched.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from clickhouse_driver import Client
from clickhouse_driver.errors import ServerException
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AclBindingFilter, AdminClient

from clients.kafka import producer_config
from clients.operator import OperatorClient
from clients.reporter import Reporter
from sinks.clickhouse import ClickHouseSink
from streams import security
from streams.admin import create_topics, delete_topics
from streams.codec import default_codec
from streams.config import Settings
from streams.registry import Registry
from streams.stack.clickhouse import ClickHouse
from streams.stack.manager import ensure_up, stop_secure
from streams.stack.secure_kafka import SecureKafka
from streams.topics import Topics
from tests.integration import scenario
from tests.integration.kafka_io import WorkerProcess

DENIED_TOPIC = KafkaError.TOPIC_AUTHORIZATION_FAILED
DENIED_GROUP = KafkaError.GROUP_AUTHORIZATION_FAILED
READONLY = 164  # ClickHouse: "Cannot execute query in readonly mode"


@pytest.fixture(scope="module")
def secure(stack: Settings) -> Iterator[Settings]:
    """The running stack plus the secure broker (started here unless it already ran; stopped if we started it)."""
    settings = replace(stack, secure=True)
    was_running = SecureKafka(settings).pid() is not None
    settings = ensure_up(settings)
    yield settings
    if not was_running:
        stop_secure(settings)


@pytest.fixture
def sec(secure: Settings, registry: Registry) -> Iterator[Settings]:
    """A topic prefix of its own on the secure broker: its catalogue created and its users and ACLs applied."""
    prefix = f"s{uuid.uuid4().hex[:8]}."
    settings = replace(secure, topic_prefix=prefix, app_id=f"{prefix}app")
    security.apply(settings, registry)
    admin = security.as_user(settings, security.ADMIN)
    create_topics(admin, registry)
    yield settings
    delete_topics(admin, [prefix])
    client = AdminClient(admin.confluent(log_level=0))  # type: ignore[arg-type]
    bindings = security.acl_bindings(registry, Topics(prefix=prefix), settings.app_id)
    filters = [AclBindingFilter(b.restype, b.name, b.resource_pattern_type, b.principal, b.host, b.operation,
                                b.permission_type) for b in bindings if prefix in b.name]
    for future in client.delete_acls(filters, request_timeout=30).values():
        future.result(30)


def names(settings: Settings) -> Topics:
    return Topics(prefix=settings.topic_prefix, partitions=settings.partitions)


def produce_as(settings: Settings, user: str, topic: str, value: bytes = b"x", key: bytes | None = None,
               idempotent: bool = True) -> Any:
    """Produce one record as `user` with the project's producer settings; the error (None: written)."""
    producer = Producer(producer_config(security.as_user(settings, user), **{
        "message.timeout.ms": 20_000, "log_level": 0, "enable.idempotence": idempotent}))
    results: list[Any] = []
    producer.produce(topic, value=value, key=key, on_delivery=lambda err, _m: results.append(err))
    try:
        producer.flush(30)
    except KafkaException as exc:  # fatal: an idempotent producer may not even get a producer id
        return exc.args[0]
    assert results, f"no delivery report from {topic}"
    return results[0]


def consume_as(settings: Settings, user: str, topic: str, group: str, subscribe: bool = True,
               timeout: float = 20.0) -> tuple[list[bytes], int | None]:
    """Read `topic` as `user`: (values read, first error code or None)."""
    conf = security.as_user(settings, user).confluent(**{"group.id": group, "auto.offset.reset": "earliest",
                                                         "enable.auto.commit": False, "log_level": 0})
    consumer = Consumer(conf)
    try:
        if subscribe:
            consumer.subscribe([topic])
        else:
            consumer.assign([TopicPartition(topic, p, 0) for p in range(settings.partitions)])
        values: list[bytes] = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            msg = consumer.poll(0.5)
            if msg is None:
                if values:
                    break
                continue
            if msg.error():
                if msg.error().code() != KafkaError._PARTITION_EOF:
                    return values, msg.error().code()
                continue
            values.append(msg.value())
        return values, None
    finally:
        consumer.close()


def assert_cannot_read(settings: Settings, user: str, topic: str, group: str) -> None:
    """Neither by subscription (TOPIC_AUTHORIZATION_FAILED) nor by assignment (an explicit denial, or
    nothing at all when the user may not even describe the topic) does `user` get the record `topic` holds."""
    values, err = consume_as(settings, user, topic, group)
    assert (values, err) == ([], DENIED_TOPIC), f"{user} subscribed to {topic}"
    values, err = consume_as(settings, user, topic, group, subscribe=False, timeout=8.0)
    assert values == [] and err in (DENIED_TOPIC, None), f"{user} read {topic} by assignment"


def routed_value(operator_id: str) -> bytes:
    ref = scenario.referral("pharos", "https://www.youtube.com/watch?v=acl")
    return default_codec().encode("RoutedReferral", {
        **ref, "operator_id": operator_id, "normalized_url": "https://youtube.com/watch?v=acl", "priority": "CRITICAL",
        "label_verified": True, "label_rejected": False, "routed_at": ref["reported_at"],
        "ack_deadline": ref["reported_at"] + 1, "decision_deadline": ref["reported_at"] + 2, "co_reporters": [],
        "escalated": False, "version": 0})


def test_reporters_write_their_own_topic_only(sec: Settings) -> None:
    t = names(sec)
    assert produce_as(sec, "reporter-pharos", t.reports("pharos")) is None
    assert produce_as(sec, "reporter-pharos", t.reports_urgent("pharos")) is None
    denied = {
        "another reporter's topic": produce_as(sec, "reporter-pharos", t.reports("eu-iru")),
        "another reporter's urgent topic": produce_as(sec, "reporter-pharos", t.reports_urgent("eu-iru")),
        "a lane": produce_as(sec, "reporter-pharos", t.lane("google", "CRITICAL")),
        "an operator's decisions": produce_as(sec, "reporter-pharos", t.decisions("google")),
        "referrals.accepted": produce_as(sec, "reporter-pharos", t.accepted),
    }
    assert {what: err.code() if err else None for what, err in denied.items()} == dict.fromkeys(denied, DENIED_TOPIC)
    values, err = consume_as(sec, "reporter-pharos", t.reports("pharos"), "reporter-reads", subscribe=False)
    # write-only: a reporter does not read even its own topic back (the broker may refuse the
    # group's offset fetch or the topic's fetch first: either denial, and nothing read)
    assert values == [] and err in (DENIED_TOPIC, KafkaError.GROUP_AUTHORIZATION_FAILED)


def test_the_reporter_client_works_with_exactly_these_rights(sec: Settings) -> None:
    with Reporter(security.as_user(sec, "reporter-tj-paris"), "tj-paris") as reporter:
        reporter.submit({"url": "https://www.youtube.com/watch?v=acl-client", "category": "THREAT",
                         "legal_basis": "LCEN art. 6", "reasons": "r", "content_hashes": []})
        assert reporter.flush().ok, reporter.summary
    impostor = Reporter(security.as_user(sec, "reporter-tj-paris"), "pharos")  # the client for another's topic
    impostor.submit({"url": "https://www.youtube.com/watch?v=acl-impostor", "category": "THREAT",
                     "legal_basis": "LCEN art. 6", "reasons": "r", "content_hashes": []})
    summary = impostor.flush()
    assert not summary.ok and "authorization" in summary.failed[0][1].lower(), summary


def test_operators_read_their_own_lanes_and_write_their_own_decisions_only(sec: Settings) -> None:
    t = names(sec)
    admin = security.as_user(sec, security.ADMIN)
    for op in ("google", "meta"):
        assert produce_as(admin, security.ADMIN, t.lane(op, "CRITICAL"), routed_value(op)) is None
    group = security.operator_group(t, "google")
    values, err = consume_as(sec, "operator-google", t.lane("google", "CRITICAL"), group)
    assert err is None and [default_codec().decode(v, "RoutedReferral")["operator_id"] for v in values] == ["google"]
    assert_cannot_read(sec, "operator-google", t.lane("meta", "CRITICAL"), group)  # meta's lane holds one
    _v, err = consume_as(sec, "operator-google", t.lane("google", "CRITICAL"), security.operator_group(t, "meta"))
    assert err == DENIED_GROUP, "google used meta's consumer group"
    assert produce_as(admin, security.ADMIN, t.reports("pharos")) is None
    assert_cannot_read(sec, "operator-google", t.reports("pharos"), group)

    decision = default_codec().encode("OperatorDecision", {
        "referral_id": str(uuid.uuid4()), "operator_id": "google", "action": "REMOVED",
        "acted_at": int(time.time() * 1000), "reason": None, "operator_ref": None})
    assert produce_as(sec, "operator-google", t.decisions("google"), decision) is None
    assert produce_as(sec, "operator-google", t.decisions("meta"), decision).code() == DENIED_TOPIC
    assert produce_as(sec, "operator-google", t.lane("google", "HIGH"), routed_value("google")).code() == DENIED_TOPIC
    assert produce_as(sec, "operator-google", t.reports("pharos")).code() == DENIED_TOPIC


def test_the_sink_reads_only(sec: Settings) -> None:
    t = names(sec)
    admin = security.as_user(sec, security.ADMIN)
    assert produce_as(admin, security.ADMIN, t.accepted, routed_value("apple")) is None
    values, err = consume_as(sec, "sink", t.accepted, security.sink_group(sec.app_id))
    assert err is None and len(values) == 1
    # with no WRITE anywhere an idempotent producer gets no producer id at all; a plain one is refused the topic
    assert produce_as(sec, "sink", t.accepted, b"forged").code() == KafkaError.CLUSTER_AUTHORIZATION_FAILED
    assert produce_as(sec, "sink", t.accepted, b"forged", idempotent=False).code() == DENIED_TOPIC
    assert produce_as(admin, security.ADMIN, t.reports("pharos")) is None
    assert_cannot_read(sec, "sink", t.reports("pharos"), security.sink_group(sec.app_id))


def test_no_password_or_a_wrong_one_gets_nothing(sec: Settings) -> None:
    t = names(sec)
    wrong = replace(security.as_user(sec, "reporter-pharos"), kafka_password="not-the-password")
    errors: list[KafkaError] = []
    deliveries: list[Any] = []
    producer = Producer(wrong.confluent(**{"message.timeout.ms": 5_000, "log_level": 0, "error_cb": errors.append}))
    producer.produce(t.reports("pharos"), b"x", on_delivery=lambda e, _m: deliveries.append(e))
    producer.flush(10)
    assert any(e.code() == KafkaError._AUTHENTICATION for e in errors), errors
    assert deliveries and deliveries[0] is not None
    plaintext = replace(sec, bootstrap=sec.secure_bootstrap, kafka_user="")
    producer = Producer(plaintext.confluent(**{"message.timeout.ms": 5_000, "log_level": 0}))
    results: list[Any] = []
    producer.produce(t.reports("pharos"), b"x", on_delivery=lambda e, _m: results.append(e))
    producer.flush(10)
    assert results and results[0] is not None  # a client without SASL cannot even talk to the listener


def test_the_pipeline_and_the_sink_run_end_to_end_on_their_principals(
        sec: Settings, registry: Registry, tmp_path: Path, ch_client: Client, ch_database: str) -> None:
    """reporter -> worker (as `pipeline`) -> operator's lane -> decision -> reaction -> sink (as `sink`,
    ClickHouse user `sink`) -> read back by ClickHouse user `analyst`."""
    t = names(sec)
    worker = WorkerProcess.for_prefix(replace(sec, bootstrap=sec.secure_bootstrap), sec.topic_prefix, tmp_path,
                                      SIGNALEMENT_KAFKA_USER="pipeline")
    worker.start()
    try:
        with Reporter(security.as_user(sec, "reporter-pharos"), "pharos") as reporter:
            rid = reporter.submit({"url": "https://www.youtube.com/watch?v=acl-e2e", "category": "THREAT",
                                   "legal_basis": "TCO 2021/784 art. 3", "reasons": "'); DROP TABLE referrals; --",
                                   "content_hashes": [], "instrument": "REMOVAL_ORDER"})
            assert reporter.flush().ok
        got: list[str] = []
        client = OperatorClient(security.as_user(sec, "operator-google"), "google", None)
        client.handler = lambda referral: (got.append(referral["referral_id"]), client.remove(referral["referral_id"]))
        try:
            client.run(max_messages=1, timeout=90)
        finally:
            client.close()
        assert got == [rid], worker.log_tail()
        reactions, err = consume_as(sec, "sink", t.reactions, security.sink_group(sec.app_id), timeout=60)
        assert err is None and [default_codec().decode(v, "Reaction")["action"] for v in reactions] == ["REMOVED"], \
            worker.log_tail()
    finally:
        worker.stop()
    assert "AuthorizationFailed" not in worker.log_path.read_text() and "AUTHORIZATION" not in worker.log_tail(400)

    ClickHouse(sec).write_users()
    sink_settings = replace(security.as_user(sec, "sink"), clickhouse_user="sink", clickhouse_database=ch_database,
                            clickhouse_password=security.ensure_passwords(sec, ["clickhouse-sink"])["clickhouse-sink"])
    wait_for_login(sink_settings)
    sink = ClickHouseSink(sink_settings, t, registry, batch_seconds=0.3)
    try:
        assert sink.run_until(lambda: sink.meter.counts["rows.reactions"] >= 1 and
                              sink.meter.counts["rows.referrals"] >= 1, timeout=60), sink.meter.counts
    finally:
        sink.close()
    analyst = analyst_client(sec, ch_database)
    assert analyst.execute("SELECT reasons FROM referrals FINAL") == [("'); DROP TABLE referrals; --",)]
    assert analyst.execute("SELECT action FROM reactions FINAL") == [("REMOVED",)]


def wait_for_login(settings: Settings, timeout: float = 30.0) -> None:
    """ClickHouse re-reads users.xml by itself within seconds: wait until the user can log in."""
    deadline = time.monotonic() + timeout
    while True:
        client = Client(settings.clickhouse_host, port=settings.clickhouse_tcp_port, user=settings.clickhouse_user,
                        password=settings.clickhouse_password, connect_timeout=3)
        try:
            client.execute("SELECT 1")
            return
        except Exception:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)
        finally:
            client.disconnect()


def analyst_client(settings: Settings, database: str = "default") -> Client:
    password = security.ensure_passwords(settings, ["clickhouse-analyst"])["clickhouse-analyst"]
    user = replace(settings, clickhouse_user="analyst", clickhouse_password=password)
    wait_for_login(user)
    return Client(settings.clickhouse_host, port=settings.clickhouse_tcp_port, user="analyst", password=password,
                  database=database, connect_timeout=5)


def test_clickhouse_analyst_reads_only_and_the_sink_writes(stack: Settings, ch_client: Client, ch_database: str) -> None:
    ClickHouse(stack).write_users()
    users_xml = (ClickHouse(stack).dir / "users.xml").read_text()
    passwords = security.ensure_passwords(stack, ["clickhouse-analyst", "clickhouse-sink"])
    assert all(pw not in users_xml for pw in passwords.values())  # only their sha256
    assert security.sha256_hex(passwords["clickhouse-analyst"]) in users_xml
    assert oct(security.secrets_file(stack).stat().st_mode & 0o777) == "0o600"

    sink = replace(stack, clickhouse_user="sink", clickhouse_password=passwords["clickhouse-sink"])
    wait_for_login(sink)
    writer = Client(stack.clickhouse_host, port=stack.clickhouse_tcp_port, user="sink",
                    password=passwords["clickhouse-sink"], database=ch_database)
    writer.execute("CREATE TABLE t (id UInt32, s String) ENGINE = MergeTree ORDER BY id")
    writer.execute("INSERT INTO t VALUES", [(1, "'); DROP TABLE t; --")])
    writer.disconnect()

    analyst = analyst_client(stack, ch_database)
    assert analyst.execute("SELECT s FROM t") == [("'); DROP TABLE t; --",)]
    for statement, rows in (("INSERT INTO t VALUES", [(2, "x")]), ("CREATE TABLE u (id UInt32) ENGINE = Memory", None),
                            ("DROP TABLE t", None), ("ALTER TABLE t DELETE WHERE 1", None),
                            ("CREATE DATABASE analyst_was_here", None), ("SET readonly = 0", None)):
        with pytest.raises(ServerException) as err:
            analyst.execute(statement, rows) if rows else analyst.execute(statement)
        assert err.value.code == READONLY, (statement, err.value)
    assert ch_client.execute(f"SELECT count() FROM {ch_database}.t") == [(1,)]
    with pytest.raises(ServerException):  # and no password, no entry
        Client(stack.clickhouse_host, port=stack.clickhouse_tcp_port, user="analyst", password="wrong").execute("SELECT 1")
