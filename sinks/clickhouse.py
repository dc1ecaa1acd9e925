"""`signalement sink`: the contract's output topics -> the ClickHouse tables, at least once.

One confluent-kafka consumer (group `<app_id>-sink`, no auto-commit) reads the pipeline's topics
and every operator's decisions topic. Messages are decoded, turned into rows (sinks.rows) and
batched by size and time; a batch is inserted table by table and its offsets are committed
synchronously only once every insert succeeded. A ClickHouse error is retried with capped
exponential backoff, forever, without consuming more (past max.poll.interval.ms, 1 h, the group
drops the sink: its commit then fails and the batch is redelivered). A crash between insert and commit
redelivers the batch: the tables are ReplacingMergeTree keyed by event identity, and every
query reads them with FINAL or argMax, so a second copy is never visible.

A broker restart needs nothing from the operator: librdkafka reconnects and the loop goes on (a
commit refused meanwhile only means the batch comes again, hidden by FINAL). A consumer left
without partitions by the restart (streams/groupwatch.py) is replaced after
`groupwatch.REJOIN_LIMIT_S`: the batch in hand is inserted first, its commit tried.

Bad values: a decision is written by an operator, so one that does not decode is skipped and
counted (the pipeline rejects it into referrals.rejected anyway). Every other topic is written
by the pipeline; a value that does not decode there means the sink is older than the pipeline
(or the topic is corrupt): by default the sink stops without committing (`--on-bad-value skip`
to log and skip instead). Tombstones (null values) are skipped.
"""

from __future__ import annotations

import argparse
import logging
import signal
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition

from sinks import rows
from sinks.migrate import check_database, client_for, migrate
from streams.codec import default_codec
from streams.config import Settings
from streams.errors import RejectedError, SignalementError
from streams.groupwatch import GroupWatch
from streams.registry import Registry
from streams.topics import Topics

log = logging.getLogger("signalement.sink")


class SinkError(SignalementError):
    """The sink cannot go on without losing rows (a pipeline topic holds an undecodable value)."""


@dataclass(frozen=True)
class Route:
    """Where the messages of one topic go."""

    table: rows.Table
    schema: str
    to_row: Callable[[rows.Record], rows.Row]
    trusted: bool = True  # written by the pipeline (else: by an operator)


def routes(topics: Topics, registry: Registry) -> dict[str, Route]:
    """topic -> route, for every topic the sink reads."""
    out = {
        topics.accepted: Route(rows.REFERRALS, "RoutedReferral", partial(rows.referral_row, routed=True)),
        topics.unroutable: Route(rows.REFERRALS, "RoutedReferral", partial(rows.referral_row, routed=False)),
        topics.duplicates: Route(rows.DUPLICATES, "DuplicateReferral", rows.DUPLICATES.row),
        topics.rejected: Route(rows.REJECTIONS, "Rejection", rows.REJECTIONS.row),
        topics.overdue: Route(rows.OVERDUE, "OverdueAlert", rows.OVERDUE.row),
        topics.reactions: Route(rows.REACTIONS, "Reaction", rows.REACTIONS.row),
        topics.windows: Route(rows.REACTION_WINDOWS, "ReactionWindow", rows.REACTION_WINDOWS.row),
    }
    for op in sorted(registry.operators):
        out[topics.decisions(op)] = Route(rows.DECISIONS, "OperatorDecision",
                                          partial(rows.decision_row, topic_operator_id=op), trusted=False)
    return out


@dataclass
class Batch:
    """Rows per table and the next offset per partition, since `started`."""

    started: float = field(default_factory=time.monotonic)
    tables: dict[str, list[rows.Row]] = field(default_factory=dict)
    offsets: dict[tuple[str, int], int] = field(default_factory=dict)
    size: int = 0

    def add(self, table: str, row: rows.Row) -> None:
        self.tables.setdefault(table, []).append(row)
        self.size += 1

    def commit_list(self) -> list[TopicPartition]:
        return [TopicPartition(t, p, o) for (t, p), o in sorted(self.offsets.items())]


class Meter:
    """Counts rows and logs the rate once a minute."""

    def __init__(self, every: float = 60.0) -> None:
        self.every, self.counts = every, Counter[str]()
        self._since, self._rows = time.monotonic(), 0

    def add(self, key: str, n: int = 1) -> None:
        self.counts[key] += n

    def inserted(self, n: int) -> None:
        self.counts["rows"] += n
        self._rows += n

    def maybe_log(self) -> None:
        elapsed = time.monotonic() - self._since
        if elapsed >= self.every:
            log.info("sink: %d rows in %.0f s (%.0f rows/s); totals %s", self._rows, elapsed,
                     self._rows / elapsed, dict(self.counts))
            self._since, self._rows = time.monotonic(), 0


class Writer:
    """Inserts into ClickHouse, retrying with capped exponential backoff until it works or stop is set."""

    def __init__(self, settings: Settings, database: str, max_backoff: float = 30.0) -> None:
        self.settings, self.database, self.max_backoff = settings, check_database(database), max_backoff
        self.client = client_for(settings)
        self.retries = 0

    def insert(self, table: rows.Table, batch: list[rows.Row], stop: threading.Event) -> bool:
        """True once inserted; False if stop was set while retrying (nothing committed then)."""
        sql = table.insert_sql(self.database)
        return self._retry(lambda: self.client.execute(sql, batch, types_check=False),
                           f"insert of {len(batch)} rows into {table.name}", stop)

    def migrate(self, stop: threading.Event) -> bool:
        return self._retry(lambda: migrate(self.client, self.database), "migration", stop)

    def _retry(self, action: Callable[[], object], what: str, stop: threading.Event) -> bool:
        delay, attempt = 0.1, 0
        while True:
            try:
                action()
                return True
            except Exception as exc:  # clickhouse-driver raises network, protocol and server errors
                attempt += 1
                self.retries += 1
                log.warning("%s failed (attempt %d: %s: %s); retrying in %.1f s",
                            what, attempt, type(exc).__name__, exc, delay)
                self.client.disconnect()
                if stop.wait(delay):
                    return False
                delay = min(delay * 2, self.max_backoff)

    def close(self) -> None:
        self.client.disconnect()


class ClickHouseSink:
    """The sink loop; `run(stop_event)` for the CLI, `run_until(predicate)` for tests."""

    def __init__(self, settings: Settings, topics: Topics, registry: Registry | None = None, *,
                 batch_rows: int = 10_000, batch_seconds: float = 1.0, max_backoff: float = 30.0,
                 on_bad_value: str = "stop", apply_migrations: bool = True) -> None:
        self.settings, self.topics = settings, topics
        registry = registry or Registry.load(settings.reporters_path, settings.operators_path)
        self.routes = routes(topics, registry)
        self.batch_rows, self.batch_seconds = batch_rows, batch_seconds
        self.on_bad_value, self.apply_migrations = on_bad_value, apply_migrations
        self.writer = Writer(settings, settings.clickhouse_database, max_backoff)
        self.codec = default_codec()
        self.meter = Meter()
        self.watch: GroupWatch | None = None  # the current loop's (tests look at `replaced`)
        self._warned: set[str] = set()

    def consumer(self) -> Consumer:
        conf = self.settings.confluent(**{
            "group.id": f"{self.settings.app_id}-sink", "enable.auto.commit": False,
            "enable.auto.offset.store": False, "auto.offset.reset": "earliest",
            "max.poll.interval.ms": 3_600_000, "topic.metadata.refresh.interval.ms": 10_000,
        })
        consumer = Consumer(conf)
        consumer.subscribe(sorted(self.routes))
        return consumer

    def run(self, stop: threading.Event) -> None:
        self._loop(lambda: False, stop)

    def run_until(self, predicate: Callable[[], bool], timeout: float = 60.0,
                  stop: threading.Event | None = None) -> bool:
        """Consume until predicate() holds (checked between batches); False on timeout."""
        deadline, result = time.monotonic() + timeout, [False]

        def done() -> bool:
            result[0] = predicate()
            return result[0] or time.monotonic() > deadline

        self._loop(done, stop or threading.Event())
        return result[0]

    def _loop(self, done: Callable[[], bool], stop: threading.Event) -> None:
        if self.apply_migrations and not self.writer.migrate(stop):
            return
        consumer = self.consumer()
        batch, checked = Batch(), 0.0
        watch = self.watch = GroupWatch(f"sink {self.settings.app_id}-sink")
        try:
            while not stop.is_set():
                if watch.check(consumer):
                    if batch.offsets and not self.flush(consumer, batch, stop):
                        return
                    batch = Batch()
                    consumer = self._replace(consumer)
                    watch.renewed()
                if not batch.offsets and time.monotonic() - checked >= 0.25:
                    if done():
                        break
                    checked = time.monotonic()
                want = max(1, min(self.batch_rows - batch.size, 10_000))
                for msg in consumer.consume(num_messages=want, timeout=self._wait(batch)):
                    self._add(batch, msg)
                if batch.offsets and (batch.size >= self.batch_rows
                                      or time.monotonic() - batch.started >= self.batch_seconds):
                    if not self.flush(consumer, batch, stop):
                        return
                    batch = Batch()
                self.meter.maybe_log()
            if batch.offsets:
                self.flush(consumer, batch, stop)
        finally:
            consumer.close()

    def _replace(self, consumer: Consumer) -> Consumer:
        """A new consumer of the same group and topics instead of one stranded outside its group."""
        new = self.consumer()
        try:
            consumer.close()
        except Exception as exc:  # it is being dropped: a failure to leave the group changes nothing
            log.warning("closing the stranded consumer: %s", exc)
        return new

    def _wait(self, batch: Batch) -> float:
        if not batch.offsets:
            return 0.2
        return max(0.0, min(0.2, batch.started + self.batch_seconds - time.monotonic()))

    def _add(self, batch: Batch, msg: Message) -> None:
        err = msg.error()
        if err is not None:
            self._kafka_error(err)
            return
        topic, partition, offset = str(msg.topic()), int(msg.partition() or 0), int(msg.offset() or 0)
        batch.offsets[(topic, partition)] = offset + 1
        route = self.routes[topic]
        value = msg.value()
        if value is None:
            self.meter.add("tombstones")
            return
        try:
            record = self.codec.decode(value, route.schema)
        except RejectedError as exc:
            where = f"{topic}[{partition}]@{offset}"
            if route.trusted and self.on_bad_value == "stop":
                raise SinkError(f"{where}: {exc.code}: {exc.message} (nothing committed; "
                                "upgrade the sink or run with --on-bad-value skip)") from exc
            log.warning("skipping %s: %s: %s", where, exc.code, exc.message)
            self.meter.add(f"skipped.{route.table.name}")
            return
        batch.add(route.table.name, route.to_row(record))

    def _kafka_error(self, err: KafkaError) -> None:
        if err.code() == KafkaError._PARTITION_EOF:
            return
        if err.fatal():
            raise KafkaException(err)
        text = str(err)
        if text not in self._warned:  # e.g. a subscribed topic that does not exist yet
            self._warned.add(text)
            log.warning("kafka: %s", text)

    def flush(self, consumer: Consumer, batch: Batch, stop: threading.Event) -> bool:
        """Insert every table of the batch, then commit; False if stopped before all inserts succeeded."""
        for table, table_rows in batch.tables.items():
            if not self.writer.insert(rows.TABLES[table], table_rows, stop):
                log.warning("stopped while retrying: %d rows not committed, they will be redelivered", batch.size)
                return False
            self.meter.add(f"rows.{table}", len(table_rows))
        self.meter.inserted(batch.size)
        try:
            consumer.commit(offsets=batch.commit_list(), asynchronous=False)
        except KafkaException as exc:
            log.warning("offset commit failed (%s): the batch will be redelivered, FINAL hides the copies", exc)
        return True

    def close(self) -> None:
        self.writer.close()


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--batch-rows", type=int, default=10_000, help="insert after this many rows (10000)")
    parser.add_argument("--batch-seconds", type=float, default=1.0, help="or after this many seconds (1)")
    parser.add_argument("--max-backoff", type=float, default=30.0, help="cap of the retry delay in seconds (30)")
    parser.add_argument("--on-bad-value", choices=["stop", "skip"], default="stop",
                        help="an undecodable value on a pipeline topic: stop (default) or skip it")
    parser.add_argument("--no-migrate", action="store_true", help="do not apply pending migrations at start")


def run(args: argparse.Namespace) -> int:
    settings = Settings.from_env()
    logging.basicConfig(level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    topics = Topics(settings.topic_prefix, settings.partitions)
    sink = ClickHouseSink(settings, topics, batch_rows=args.batch_rows, batch_seconds=args.batch_seconds,
                          max_backoff=args.max_backoff, on_bad_value=args.on_bad_value,
                          apply_migrations=not args.no_migrate)
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    log.info("sink: %d topics -> ClickHouse %s:%d/%s", len(sink.routes), settings.clickhouse_host,
             settings.clickhouse_tcp_port, settings.clickhouse_database)
    try:
        sink.run(stop)
    except SinkError as exc:
        log.error("%s", exc)
        return 1
    finally:
        sink.close()
    log.info("sink stopped; totals %s", dict(sink.meter.counts))
    return 0
