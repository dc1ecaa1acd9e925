"""State scale: the dedup table at scale, on the store Faust uses (rocksdict, opened with Faust's
RocksDBOptions and the worker's table options, streams.app.ROCKSDB_OPTIONS), with the worker's real
keys and values (dedup.dumps of an admitted item).

Measured: load rate (WriteBatch of 10,000, as Faust applies a changelog during recovery), disk,
RSS of this process (the table's memory: memtables, block cache, index), random lookups/s of
present and absent keys (a get is what the routing agent does per referral), and the reopen time
(a restart with the local state intact). Then, on a smaller scale, the restart of a real worker
with an empty state folder: Faust rebuilds the table from its changelog topic; the time from the
worker's start until it routes a probe referral is the recovery time.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import tempfile
import time
from pathlib import Path

from faust.stores.rocksdb import RocksDBOptions

from bench import kafkaio
from bench.common import Result, console
from bench.load import HOSTS, Generator, Mix
from bench.pipeline import Run
from streams.app import ROCKSDB_OPTIONS, SESSION_TIMEOUT_S

CHANGELOG_TABLE = "dedup-items"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--keys", type=int, default=10_000_000, help="keys in the table (10000000)")
    p.add_argument("--lookups", type=int, default=200_000, help="random gets timed (200000)")
    p.add_argument("--changelog-keys", type=int, default=200_000,
                   help="keys in the changelog a fresh worker recovers from (200000; 0 to skip)")


def rss_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def du(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def sample_value() -> str:
    """A real dedup item (JSON) as the routing agent stores it, with placeholders for what varies."""
    from agents.logic import dedup
    from agents.logic.intake import Intake
    from streams.codec import default_codec
    from streams.config import Settings
    from streams.policy import Policy
    from streams.records import Referral
    from streams.registry import Registry

    settings = Settings.from_env()
    intake = Intake.build(Registry.load(settings.reporters_path, settings.operators_path))
    rec = Generator(mix=Mix(duplicates=0, malformed=0, unroutable=0), seed=5).next(1_790_000_000_000)
    ref: Referral = default_codec().decode(rec.value, "Referral")  # type: ignore[assignment]
    cand = intake.candidate(ref, rec.reporter, 1_790_000_001_000)
    adm = dedup.admit(None, cand, 1_790_000_001_000, Policy.load(settings.policy_path))
    assert adm.item is not None
    text = dedup.dumps(adm.item).decode()
    rid, token = adm.item["c"]["referral_id"], rec.key.decode()
    return text.replace(rid, "{rid}").replace(token[-12:], "{tok}")


def key_of(i: int) -> bytes:
    return f"{'google' if i % 6 == 0 else 'meta'}|https://youtube.com/watch?v={i:012x}".encode()


def value_of(template: str, i: int) -> bytes:
    return template.replace("{rid}", f"00000000-0000-4000-8000-{i:012x}").replace("{tok}", f"{i:012x}").encode()


def table_scale(args: argparse.Namespace, result: Result) -> None:
    template = sample_value()
    folder = Path(tempfile.mkdtemp(prefix="bench-state-"))
    path = folder / "dedup-items-0.db"
    options = RocksDBOptions(**dict(ROCKSDB_OPTIONS))  # type: ignore[arg-type]  # the worker's table options
    try:
        rss0 = rss_kib()
        db = options.open(path)
        from rocksdict import WriteBatch

        t = time.monotonic()
        batch = WriteBatch(raw_mode=True)
        for i in range(args.keys):
            batch.put(key_of(i), value_of(template, i))
            if len(batch) >= 10_000:
                db.write(batch)
                batch = WriteBatch(raw_mode=True)
        db.write(batch)
        db.flush()
        load_s = time.monotonic() - t
        rss_loaded = rss_kib()
        result.add("keys", args.keys, "", f"value {len(value_of(template, 1))} B (a real dedup item), key ~50 B")
        result.add("load rate", round(args.keys / load_s), "keys/s", f"{load_s:.1f} s in WriteBatches of 10,000")
        rng = random.Random(1)
        present = [key_of(rng.randrange(args.keys)) for _ in range(args.lookups)]
        absent = [key_of(args.keys + rng.randrange(10 * args.keys)) for _ in range(args.lookups // 4)]
        t = time.monotonic()
        hits = sum(1 for k in present if db.get(k) is not None)
        hit_s = time.monotonic() - t
        t = time.monotonic()
        misses = sum(1 for k in absent if db.get(k) is None)
        miss_s = time.monotonic() - t
        assert hits == len(present) and misses == len(absent)
        result.add("lookups/s, present keys", round(len(present) / hit_s), "gets/s", "random keys, one thread")
        result.add("lookups/s, absent keys", round(len(absent) / miss_s), "gets/s", "bloom filter")
        t = time.monotonic()
        for k in present[:20_000]:
            db[k] = db[k]
        rmw = 20_000 / (time.monotonic() - t)
        result.add("get + put/s", round(rmw), "ops/s", "the routing agent's read-modify-write")
        rss_used = rss_kib()
        db.close()
        del db
        disk = du(path)
        t = time.monotonic()
        db = options.open(path)
        db.get(present[0])
        reopen_s = time.monotonic() - t
        t = time.monotonic()
        for k in present[:10_000]:
            db.get(k)
        cold = 10_000 / (time.monotonic() - t)
        db.close()
        result.add("disk", round(disk / 2**20), "MiB", f"{disk / args.keys:.0f} B per key after flush (compressed)")
        result.add("RSS after load", round((rss_loaded - rss0) / 1024), "MiB", "this process, above its start")
        result.add("RSS after lookups", round((rss_used - rss0) / 1024), "MiB", "block cache warm")
        result.add("reopen (restart with local state)", round(reopen_s * 1000), "ms", "open + first get")
        result.add("lookups/s right after reopen", round(cold), "gets/s", "cold block cache")
        result.details["rocksdb_options"] = {k: getattr(options, k, None) for k in
                                             ("max_open_files", "write_buffer_size", "max_write_buffer_number",
                                              "target_file_size_base", "block_cache_size",
                                              "block_cache_compressed_size", "bloom_filter_size")}
        console.print(f"  {args.keys:,} keys: {args.keys / load_s:,.0f} keys/s, disk {disk / 2**20:,.0f} MiB, "
                      f"{len(present) / hit_s:,.0f} gets/s, reopen {reopen_s * 1000:.0f} ms")
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def changelog_recovery(args: argparse.Namespace, result: Result) -> None:
    """A fresh worker (empty state folder) rebuilds the dedup table from a changelog of n keys."""
    n = args.changelog_keys
    template = sample_value()
    with Run("state", workers=1) as run:
        changelog = f"{run.settings.app_id}-{CHANGELOG_TABLE}-changelog"
        from streams.admin import admin_client, create_specs
        from streams.topics import TopicSpec

        create_specs(admin_client(run.settings), [TopicSpec(changelog, "", run.settings.partitions,
                                                            cleanup_policy="compact")])
        p = kafkaio.fast_producer(run.settings, **{"partitioner": "murmur2_random"})
        for i in range(n):
            kafkaio.produce(p, changelog, key_of(i), value_of(template, i))
            if i % 10_000 == 0:
                p.poll(0)
        p.flush(120)
        run.open_tally()
        run.start()
        probe = Generator(mix=Mix(duplicates=0, malformed=0, unroutable=0, labelled=0, critical=0), seed=9,
                          hosts=(0,))
        time.sleep(1)
        kafkaio.preload(run.settings, run.names, probe.records(1, int(time.time() * 1000)))
        out = run.wait_outputs(1, 600, quiet_s=0.1)
        recovered_s = time.monotonic() - run.started_at
        worker_dir = run.tmp / "worker0"
        disk = du(worker_dir) if worker_dir.exists() else 0
        hwm = run.procs[0].status()["VmHWM"]
        assert out.complete, "the probe referral never came out"
        # a kill with the whole table in the worker's state: undo journal + replay since the last
        # commit (streams/eos.py), then the partitions wait for the dead member's session to expire
        time.sleep(2)
        run.procs[0].stop(signal.SIGKILL)
        killed = time.monotonic()
        run.procs[0].start()
        kafkaio.preload(run.settings, run.names, probe.records(1, int(time.time() * 1000)))
        again = run.wait_outputs(2, 600, quiet_s=0.1)
        resumed_s = time.monotonic() - killed
    assert again.complete, "the probe referral sent after the kill never came out"
    result.add("resume after a SIGKILL", round(resumed_s, 1), "s",
               f"{n:,} keys in the worker's state: kill -> restart -> a probe referral routed "
               f"(session timeout {SESSION_TIMEOUT_S:.0f} s included)")
    result.add("recovery from the changelog", round(recovered_s, 1), "s",
               f"fresh worker, {n:,} keys: start -> a probe referral routed ({n / recovered_s:,.0f} keys/s incl. "
               "start-up)")
    result.add("worker peak RSS after recovery", round(hwm / 1024), "MiB", f"state folder {disk / 2**20:.0f} MiB")
    console.print(f"  changelog of {n:,} keys recovered and probe routed in {recovered_s:.1f} s")


def run(args: argparse.Namespace) -> Result:
    result = Result("state", "State scale: the dedup table on RocksDB (rocksdict, Faust's options)",
                    {"keys": args.keys, "lookups": args.lookups, "changelog_keys": args.changelog_keys,
                     "cpu_count": os.cpu_count()})
    table_scale(args, result)
    if args.changelog_keys:
        changelog_recovery(args, result)
    result.details["hosts"] = json.dumps([h for h, _ in HOSTS][:1])
    return result
