"""`signalement topics create`: every topic of the contract's catalogue, created if missing.

Idempotent: topics that exist are left alone (their partition count is not changed), and a
TOPIC_ALREADY_EXISTS from a concurrent creator counts as success.

Creation returns only once every partition of the new topics is served by its leader (a
ListOffsets answered). The controller accepts a topic before the broker has created its
partitions (0.5 s later and more on a loaded broker), and an idempotent librdkafka producer that
writes in that window can lose its first records *with a successful delivery report*: its first
batches are refused while the partition does not exist yet (a retriable error), a later batch
lands as soon as it does, the broker accepts any first sequence number from a producer it does
not know (KIP-360), and librdkafka then counts the earlier, refused batches as written (its
"implicit ack": a later sequence acknowledged means the earlier ones were written).
The broker-restart test caught it (2 of 1,393 referrals confirmed and missing: a reporter's
partition starting at sequence 2, `kafka.tools.DumpLogSegments`), the pattern of
confluent-kafka-go issue 921.
"""

from __future__ import annotations

import argparse
import socket
import time
from dataclasses import replace

from confluent_kafka import KafkaError, KafkaException, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic, OffsetSpec
from rich.console import Console
from rich.text import Text

from streams.config import Settings
from streams.errors import SignalementError, StackError
from streams.registry import Registry
from streams.topics import Topics, TopicSpec

console = Console(highlight=False)
TIMEOUT = 30.0


def admin_client(settings: Settings) -> AdminClient:
    """An AdminClient on the configured bootstrap; fails at once, quietly, if nothing listens there."""
    host, _, port = settings.bootstrap.split(",")[0].rpartition(":")
    try:
        socket.create_connection((host or "127.0.0.1", int(port)), timeout=3).close()
    except (OSError, ValueError) as exc:
        raise StackError(f"no Kafka broker at {settings.bootstrap} ({exc}): is the stack up? "
                         "`signalement stack up`") from exc
    return AdminClient(settings.confluent(log_level=0))  # type: ignore[arg-type]


def existing_topics(admin: AdminClient, timeout: float = TIMEOUT) -> set[str]:
    """Names of the topics the broker knows."""
    try:
        return set(admin.list_topics(timeout=timeout).topics)
    except KafkaException as exc:
        raise StackError(f"cannot list topics: {exc.args[0]} (is the stack up? `signalement stack up`)") from exc


def create_specs(admin: AdminClient, specs: list[TopicSpec], timeout: float = TIMEOUT) -> list[str]:
    """Create the specs not on the broker yet; return the names this call created."""
    present = existing_topics(admin, timeout)
    missing = [s for s in specs if s.name not in present]
    if not missing:
        return []
    new = [NewTopic(s.name, num_partitions=s.partitions, replication_factor=s.replication, config=s.config())
           for s in missing]
    futures = admin.create_topics(new, request_timeout=timeout, operation_timeout=timeout)
    created = []
    for spec in missing:
        try:
            futures[spec.name].result(timeout)
        except KafkaException as exc:
            if exc.args[0].code() == KafkaError.TOPIC_ALREADY_EXISTS:
                continue
            raise StackError(f"cannot create topic {spec.name}: {exc.args[0].str()}") from exc
        created.append(spec.name)
    await_partitions(admin, {s.name: s.partitions for s in missing}, timeout)
    return created


def await_partitions(admin: AdminClient, topics: dict[str, int], timeout: float = TIMEOUT) -> None:
    """Wait until the leader of every partition of `topics` (name -> partition count) serves it.

    A ListOffsets per partition, asked again for those that fail (NOT_LEADER_OR_FOLLOWER,
    UNKNOWN_TOPIC_OR_PART while the broker creates them) until they all answer; see the module's
    docstring for why a producer must not write before."""
    waiting = [TopicPartition(name, p) for name, n in sorted(topics.items()) for p in range(n)]
    deadline = time.monotonic() + timeout
    last: object = None
    while waiting:
        # fresh metadata first: the client's cache may still say "no leader" for a topic it has just
        # created (seen for 30 s and more after a broker restart: "Failed to query partition leaders")
        existing_topics(admin, timeout)
        futures = admin.list_offsets({tp: OffsetSpec.latest() for tp in waiting}, request_timeout=timeout)
        failed = []
        for tp, future in futures.items():
            try:
                future.result(timeout)
            except KafkaException as exc:
                failed.append(TopicPartition(tp.topic, tp.partition))
                last = exc.args[0]
        waiting = failed
        if waiting and time.monotonic() > deadline:
            raise StackError(f"{len(waiting)} new partition(s) not served after {timeout:.0f} s "
                             f"(e.g. {waiting[0].topic}[{waiting[0].partition}]: {last})")
        if waiting:
            time.sleep(0.1)


def create_topics(settings: Settings, registry: Registry | None = None) -> list[str]:
    """Create the catalogue for settings.topic_prefix and registry; return the names created now."""
    if registry is None:
        registry = Registry.load(settings.reporters_path, settings.operators_path)
    specs = Topics(prefix=settings.topic_prefix, partitions=settings.partitions).catalogue(registry)
    return create_specs(admin_client(settings), specs)


def delete_topics(settings: Settings, prefixes: list[str], timeout: float = TIMEOUT) -> list[str]:
    """Delete every topic whose name starts with one of prefixes (test clean-up); return them."""
    if not [p for p in prefixes if p]:
        raise ValueError("refusing to delete topics without a non-empty prefix")
    admin = admin_client(settings)
    doomed = sorted(t for t in existing_topics(admin, timeout) if any(p and t.startswith(p) for p in prefixes))
    if doomed:
        for name, future in admin.delete_topics(doomed, request_timeout=timeout, operation_timeout=timeout).items():
            try:
                future.result(timeout)
            except KafkaException as exc:
                if exc.args[0].code() != KafkaError.UNKNOWN_TOPIC_OR_PART:
                    raise StackError(f"cannot delete topic {name}: {exc.args[0].str()}") from exc
    return doomed


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("action", choices=["create"], help="create the contract's topics that are missing")
    parser.add_argument("--prefix", default=None, help="topic name prefix (default: SIGNALEMENT_TOPIC_PREFIX)")
    parser.add_argument("--partitions", type=int, default=None,
                        help="partitions of each new topic (default: SIGNALEMENT_PARTITIONS, 4)")


def run(args: argparse.Namespace) -> int:
    settings = Settings.from_env()
    if args.prefix is not None:
        settings = replace(settings, topic_prefix=args.prefix)
    if args.partitions is not None:
        settings = replace(settings, partitions=args.partitions)
    try:
        registry = Registry.load(settings.reporters_path, settings.operators_path)
        total = len(Topics(prefix=settings.topic_prefix).catalogue(registry))
        created = create_topics(settings, registry)
    except SignalementError as exc:
        console.print(Text.assemble(("error: ", "bold red"), str(exc)))
        return 1
    for name in created:
        console.print(f"  created {name}")
    console.print(f"[green]{len(created)} topics created[/], {total - len(created)} already there "
                  f"(bootstrap {settings.bootstrap})")
    return 0
