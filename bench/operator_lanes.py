"""The operator client alone, no pipeline: how long a critical referral waits for the handler while
the standard lane holds a backlog. `python -m bench.operator_lanes [fetch.wait.max.ms ...]`

For each consumer setting given (default: 100 and 10), on fresh topics: 30,000 standard referrals
in google's standard lane, a handler taking 5 ms per standard referral, and 200 critical referrals
produced into the critical lane at random intervals of 20-180 ms; prints p50 / p90 / p99 / max of
produce call -> handler (docs/benchmarks.md, item 15).
"""

from __future__ import annotations

import random
import sys
import threading
import time
import uuid
from dataclasses import replace
from typing import Any

from confluent_kafka import Producer

from bench.common import console
from bench.latency import percentiles
from clients.kafka import now_ms, producer_config
from clients.operator import OperatorClient
from streams.admin import create_topics, delete_topics
from streams.codec import default_codec
from streams.config import Settings
from streams.topics import Topics

OP, BACKLOG, CRITICALS, STANDARD_S = "google", 30_000, 200, 0.005


def routed(priority: str, n: int) -> dict[str, Any]:
    """A RoutedReferral as the pipeline writes it to a lane."""
    t = now_ms()
    return {
        "referral_id": str(uuid.uuid4()), "reporter_id": "pharos", "external_ref": f"T-{n}", "instrument": "REFERRAL",
        "label": "NONE", "emergency": priority == "CRITICAL", "category": "TERRORIST_PROPAGANDA",
        "url": f"https://www.youtube.com/watch?v=v{n}", "operator_id": OP, "content_hashes": [],
        "legal_basis": "LCEN art. 6-1", "reasons": "bench", "jurisdiction": "FR", "language": "fr", "reported_at": t,
        "normalized_url": f"https://youtube.com/watch?v=v{n}", "priority": priority, "label_verified": False,
        "label_rejected": False, "routed_at": t, "ack_deadline": t + 60_000, "decision_deadline": t + 3_600_000,
        "co_reporters": [], "escalated": False, "version": 0,
    }


def measure(stack: Settings, fetch_wait_ms: int) -> list[float]:
    settings = replace(stack, topic_prefix=f"op{uuid.uuid4().hex[:6]}.")
    create_topics(settings)
    topics = Topics(prefix=settings.topic_prefix, partitions=settings.partitions)
    codec, producer = default_codec(), Producer(producer_config(settings))
    for i in range(BACKLOG):
        ref = routed("STANDARD", i)
        producer.produce(topics.lane(OP, "STANDARD"), key=ref["referral_id"].encode(),
                         value=codec.encode("RoutedReferral", ref))
        if i % 10_000 == 0:
            producer.poll(0)
    producer.flush(30)
    sent_at: dict[str, float] = {}
    latencies: list[float] = []
    done = threading.Event()

    def publish() -> None:
        time.sleep(3)  # the operator is assigned and busy with the backlog
        for n in range(CRITICALS):
            ref = routed("CRITICAL", n)
            sent_at[ref["referral_id"]] = time.perf_counter()
            producer.produce(topics.lane(OP, "CRITICAL"), key=ref["referral_id"].encode(),
                             value=codec.encode("RoutedReferral", ref))
            producer.flush(10)
            time.sleep(random.uniform(0.02, 0.18))
        time.sleep(2)
        done.set()

    def handler(ref: dict[str, Any]) -> None:
        if ref["priority"] == "CRITICAL":
            latencies.append((time.perf_counter() - sent_at[ref["referral_id"]]) * 1000)
        else:
            time.sleep(STANDARD_S)
        if done.is_set():
            client.stop()

    consumer: dict[str, Any] = {"fetch.wait.max.ms": fetch_wait_ms}
    client = OperatorClient(settings, OP, handler, topics=topics, **consumer)
    thread = threading.Thread(target=publish, daemon=True)
    thread.start()
    try:
        client.run(timeout=90)
    finally:
        client.close()
        delete_topics(settings, [settings.topic_prefix])
    return latencies


def main(argv: list[str]) -> int:
    stack = Settings.from_env()
    for wait in [int(a) for a in argv] or [100, 10]:
        q = percentiles(measure(stack, wait))
        if not q["n"]:
            console.print(f"fetch.wait.max.ms={wait}: no critical referral reached the handler")
            continue
        console.print(f"fetch.wait.max.ms={wait}: n={q['n']} p50 {q['p50']:.1f} p90 {q['p90']:.1f} "
                      f"p99 {q['p99']:.1f} max {q['max']:.1f} ms (produce call -> handler)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
