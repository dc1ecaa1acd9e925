"""The worker's collector settings (streams/gctune.py): what `tune` changes, what `GcClock` counts."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from streams.gctune import OLDER, GcClock, tune

pytestmark = pytest.mark.unit


@pytest.fixture
def collector() -> Iterator[None]:
    """Give the test CPython's collector as it was, and put it back after."""
    thresholds = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*thresholds)


def test_zero_leaves_the_collector_alone(collector: None) -> None:
    before = gc.get_threshold(), gc.get_freeze_count()
    tune(0)
    assert (gc.get_threshold(), gc.get_freeze_count()) == before


def test_tune_freezes_what_exists_and_raises_the_first_threshold(collector: None) -> None:
    gc.unfreeze()
    survivor = [object() for _ in range(10)]
    assert any(x is survivor for x in gc.get_objects())  # in a generation: walked by collections
    tune(5_000)
    assert gc.get_threshold() == (5_000, *OLDER)
    assert gc.get_freeze_count() > 0
    assert not any(x is survivor for x in gc.get_objects())  # frozen: in none of them


def test_clock_counts_collections_per_generation_and_resets() -> None:
    clock = GcClock().install()
    try:
        gc.collect(2)
        gc.collect(0)
        assert clock.counts[2] >= 1 and clock.counts[0] >= 1
        assert clock.seconds[2] > 0
        line = clock.take()
        assert line.startswith("gc_ms=") and " gc_collections=" in line
        assert line.split("gc_collections=")[1].split("/")[2] != "0"
        assert clock.counts == [0, 0, 0] and clock.seconds == [0.0, 0.0, 0.0]
    finally:
        gc.callbacks.remove(clock)
    assert clock not in gc.callbacks
    assert clock.install() is clock and gc.callbacks.count(clock) == 1
    clock.install()
    assert gc.callbacks.count(clock) == 1  # installing twice adds it once
    gc.callbacks.remove(clock)
