"""bench.cores: CPU seconds per role from /proc, and the cores each role used between two moments."""

from __future__ import annotations

import time

import pytest

from bench import cores

pytestmark = pytest.mark.unit


def test_roles_by_command_line() -> None:
    assert cores.role_of("/x/python -m streams.cli worker", 10, 1) == "worker"
    assert cores.role_of("/x/python -m streams.cli sink", 10, 1) == "sink"
    assert cores.role_of("java -cp /a kafka.Kafka /s/server.properties", 10, 1) == "broker"
    assert cores.role_of("/usr/bin/clickhouse-server --config-file=c.xml", 10, 1) == "clickhouse"
    assert cores.role_of("/x/python -m bench throughput", 1, 1) == "bench"
    assert cores.role_of("sshd", 10, 1) == "other"


def test_the_ledger_counts_running_processes_from_their_first_reading_new_ones_from_their_start() -> None:
    ledger = cores.Ledger()
    ledger.note({1: ("worker", 50.0), 2: ("broker", 100.0)}, new=False)
    ledger.note({1: ("worker", 51.5), 2: ("broker", 100.5), 3: ("worker", 0.25)}, new=True)
    assert ledger.totals()["worker"] == pytest.approx(1.75)
    assert ledger.totals()["broker"] == pytest.approx(0.5)
    ledger.note({2: ("broker", 101.0)}, new=True)  # 1 and 3 are gone: they keep what they used
    assert ledger.totals()["worker"] == pytest.approx(1.75)
    assert ledger.totals()["broker"] == pytest.approx(1.0)


def test_cores_between_two_moments_use_the_samples_around_them() -> None:
    zero = dict.fromkeys(cores.ORDER, 0.0)
    samples = [(t, {**zero, "worker": w, "broker": b})
               for t, w, b in ((0.0, 0.0, 0.0), (1.0, 0.5, 0.5), (2.0, 1.5, 0.75), (3.0, 2.5, 1.0), (4.0, 2.6, 1.1))]
    got = cores.between(samples, 1.5, 2.5)  # the samples at 1.0 and 3.0
    assert got["worker"] == pytest.approx(1.0)
    assert got["broker"] == pytest.approx(0.25)
    assert cores.between(samples[:1], 0, 1) == {}


def test_the_sampler_counts_this_process_cpu_as_the_benchmark_s() -> None:
    """Its reading of /proc matches the CPU time the process measures itself (busy or not)."""
    began = time.process_time()
    sampler = cores.Sampler(every=0.1)
    sampler.start()
    while time.process_time() - began < 0.5:  # half a CPU second of work, whatever the machine's load
        sum(range(1000))
    sampler.stop()
    used = time.process_time() - began
    counted = sampler.samples[-1][1]["bench"]
    assert counted == pytest.approx(used, abs=0.08), (counted, used)
    assert len(sampler.samples) >= 3
    assert "bench" in cores.describe(sampler.cores(sampler.samples[0][0], sampler.samples[-1][0]))
