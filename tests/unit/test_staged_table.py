"""The worker's TransactionalTable in a unit of work under exactly_once (streams.eos.Staged): its
writes are held until the unit ends, its own reads see them, Faust's reads write them first.

The table is the worker's own (a pipeline built as the worker builds it, nothing started, no
Kafka), in a subprocess: building the pipeline patches Faust and aiokafka classes for the process.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from streams.config import ROOT

pytestmark = pytest.mark.unit

PROBE = '''
import asyncio, dataclasses, json, sys, weakref
from pathlib import Path
from types import SimpleNamespace
from faust.streams import _current_event
from faust.types import TP
from streams.app import build_pipeline
from streams.config import Settings
from streams.eos import OUTBOX, STAGED, Staged

class Event:
    def __init__(self, message):
        self.message = message

async def main(folder):
    settings = dataclasses.replace(Settings.from_env(), guarantee="exactly_once", worker_dir=Path(folder))
    pipe = build_pipeline(settings)
    table = pipe.table("probe")
    txns = pipe.app.consumer.transactions
    tp = TP(pipe.names.dedup_items, 0)
    txns._tids[tp] = "probe-0"  # no assignor: nothing is subscribed
    event = Event(SimpleNamespace(partition=0, tp=tp, topic=tp.topic))
    _current_event.set(weakref.ref(event))
    db = table.data._db_for_partition(0)
    db.put(b"old", b"committed")
    box, out = [], {}
    OUTBOX.set(box)
    token = STAGED.set(Staged(txns.journal))
    table[b"k"] = b"v1"
    del table[b"old"]
    out["unit reads"] = [table.read(b"k").decode(), table.read_for_update(b"old")]
    out["rocksdb before the end"] = [db.get(b"k"), db.get(b"old").decode()]
    out["faust get"] = table.get(b"k").decode()
    out["rocksdb after faust get"] = [db.get(b"k").decode(), db.get(b"old")]
    table[b"k"] = b"v2"
    out["rocksdb after a later write"] = db.get(b"k").decode()
    out["partition_db"] = table.partition_db(0).get(b"k").decode()
    STAGED.reset(token)
    out["changelog"] = [[k.decode(), v.decode() if v else None] for _t, k, v, _p, _cb in box]
    out["journal"] = sorted(k.rsplit(b"\\0", 1)[1].decode() for k, _ in txns.journal.db().items())
    txns.journal.close()
    print(json.dumps(out))

asyncio.run(main(sys.argv[1]))
'''


def test_a_unit_of_work_reads_its_staged_writes_and_faust_reads_write_them_first(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-c", PROBE, str(tmp_path / "worker")], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["unit reads"] == ["v1", None]  # the unit's own write and delete
    assert out["rocksdb before the end"] == [None, "committed"]  # nothing written yet
    assert out["faust get"] == "v1"
    assert out["rocksdb after faust get"] == ["v1", None]  # Faust's read wrote the stage first
    assert out["rocksdb after a later write"] == "v1"  # staged again
    assert out["partition_db"] == "v2"  # the sweeper's scan writes it first too
    assert out["changelog"] == [["k", "v1"], ["old", None], ["k", "v2"]]  # every write queued for the transaction
    assert out["journal"] == ["k", "old"]  # the before-image of each key, once
