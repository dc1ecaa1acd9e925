"""A record the broker refuses inside a transaction: nothing of that transaction is committed, the
worker stops, and once the cause is gone a restart delivers everything exactly once.

aiokafka does not abort a transaction when one of its records is refused (Kafka's Java producer
does): before streams.eos.PartitionTransactions.send_failed, the commit went through without the
record, with the offsets of the event that made it, and the record was lost. Here the cause is a
topic whose max.message.bytes is too small for any duplicate record (an operator's mistake); the
first duplicates must then stay uncommitted, and come out once after the limit is raised.
"""

from __future__ import annotations

import time
from pathlib import Path

from confluent_kafka.admin import AdminClient, AlterConfigOpType, ConfigEntry, ConfigResource

from streams.codec import default_codec
from streams.config import Settings
from streams.topics import Topics
from tests.integration import scenario
from tests.integration.kafka_io import WorkerProcess, produce, read_topics, wait_for_count

ITEMS = 10


def set_max_message_bytes(stack: Settings, topic: str, value: int) -> None:
    admin = AdminClient(stack.confluent())
    entry = ConfigEntry("max.message.bytes", str(value), incremental_operation=AlterConfigOpType.SET)
    resource = ConfigResource("topic", topic, incremental_configs=[entry])
    for fut in admin.incremental_alter_configs([resource]).values():
        fut.result(30)


def test_a_refused_record_commits_nothing_and_a_restart_delivers_it(stack: Settings, topics: Topics,
                                                                     tmp_path: Path) -> None:
    names, codec = topics, default_codec()
    firsts = [scenario.referral("pointdecontact", f"https://twitter.com/refused/status/{i}") for i in range(ITEMS)]
    dups = [scenario.referral("ctiru", f["url"]) for f in firsts]  # another reporter: an update each too
    worker = WorkerProcess.for_prefix(stack, topics.prefix, tmp_path)
    worker.start()
    try:
        produce(stack, names.reports("pointdecontact"), [(None, codec.encode("Referral", r)) for r in firsts])
        wait_for_count(stack, names.accepted, ITEMS, worker=worker)
        set_max_message_bytes(stack, names.duplicates, 64)  # smaller than any DuplicateReferral
        produce(stack, names.reports("ctiru"), [(None, codec.encode("Referral", r)) for r in dups])
        assert worker.proc is not None
        worker.proc.wait(120)  # the worker stops by itself
        assert "SendRefused" in worker.log_tail(400), worker.log_tail()
        out = read_topics(stack, [names.accepted, names.duplicates])
        assert len(out[names.duplicates]) == 0
        assert len(out[names.accepted]) == ITEMS, "the updates of the refused transaction were committed"
    finally:
        worker.stop()

    set_max_message_bytes(stack, names.duplicates, 1_048_588)
    again = WorkerProcess.for_prefix(stack, topics.prefix, tmp_path)
    again.start()
    try:
        wait_for_count(stack, names.duplicates, ITEMS, worker=again)
        time.sleep(2.0)  # anything extra would come now
        out = read_topics(stack, [names.accepted, names.duplicates, names.lane("twitter", "STANDARD")])
    finally:
        again.stop()
    recorded = sorted(m.decode()["referral_id"] for m in out[names.duplicates])
    assert recorded == sorted(d["referral_id"] for d in dups)
    assert sorted(m.decode()["referral_id"] for m in out[names.lane("twitter", "STANDARD")]) == sorted(
        f["referral_id"] for f in firsts)
    versions = sorted((m.decode()["referral_id"], m.decode()["version"]) for m in out[names.accepted])
    assert versions == sorted([(f["referral_id"], 0) for f in firsts] + [(f["referral_id"], 1) for f in firsts])
